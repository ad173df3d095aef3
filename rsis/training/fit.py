"""The train stage's work as a function: data, model, optimiser, the staged schedule, epochs,
checkpoints (every epoch, atomic), resume after a crash, and DDP when launched by torchrun.

``fit`` returns its final metrics and takes a ``log_epoch`` callback, so it runs the same way
from the stage script (which logs to MLflow) and from tests (which do not).

Determinism and resume: the shuffling order and the augmentation randomness of epoch e are
functions of (seed, e) alone, and ``last.pt`` holds everything else that changes (weights,
optimiser, schedule state, history). A run killed at any point and started again with the same
config continues after the last completed epoch and ends with the same weights as a run that
was never interrupted (on CPU).
"""

from __future__ import annotations

import hashlib
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from rsis.config import ModelConfig, PathsConfig, TrainConfig, to_dict
from rsis.core.checkpoint import BEST, LAST, load_checkpoint, save_checkpoint
from rsis.core.criterion import RSISCriterion
from rsis.core.model import RSIS, initial_model
from rsis.datasets.dataset import InstanceDataset, collate
from rsis.datasets.format import annotation_file
from rsis.files import atomic_path
from rsis.reproducible import process_threads
from rsis.runtime import git_revision, seed_everything, select_device
from rsis.training import distributed, schedule
from rsis.training.engine import SlowdownMonitor, place_model, train_one_epoch, validation_loss

HISTORY_FILE = "train_history.csv"  # = PathsConfig.history


@dataclass(frozen=True)
class TrainResult:
    best_epoch: int
    best_val_loss: float
    history: pd.DataFrame  # one row per epoch
    seconds: float
    device: str
    resumed_from: int | None  # the epoch last.pt had completed when training resumed, else None


def build_loaders(paths: PathsConfig, model_cfg: ModelConfig, cfg: TrainConfig, dist: distributed.DistInfo
                  ) -> tuple[DataLoader, DataLoader, DistributedSampler]:
    """The train loader gives each process batch_size / world_size images per step; together the
    processes see the same global batches, in the same order, as one process would."""
    train_set = InstanceDataset(paths.data, "train", model_cfg.input_size, cfg.max_objects, augment=cfg.augment)
    val_set = InstanceDataset(paths.data, "val", model_cfg.input_size, cfg.max_objects)
    if len(train_set) < cfg.batch_size:
        raise ValueError(f"{annotation_file(paths.data, 'train')}: {len(train_set)} training images, fewer than "
                         f"train.batch_size = {cfg.batch_size}")
    sampler = DistributedSampler(train_set, num_replicas=dist.world_size, rank=dist.rank, shuffle=True,
                                 seed=cfg.seed, drop_last=True)
    common = {"collate_fn": collate, "num_workers": cfg.num_workers, "pin_memory": torch.cuda.is_available(),
              "persistent_workers": cfg.num_workers > 0}
    train_loader = DataLoader(train_set, batch_size=cfg.batch_size // dist.world_size, sampler=sampler,
                              drop_last=True, **common)
    val_loader = DataLoader(val_set, batch_size=cfg.batch_size, shuffle=False, **common)
    return train_loader, val_loader, sampler


def build_optimizer(model: RSIS, cfg: TrainConfig) -> torch.optim.Adam:
    """Adam with the paper's two learning rates: encoder (group 0) vs. everything else (group 1).
    The fused implementation: one kernel over all tensors (on a CPU a step of ResNet-18's Adam
    takes 10 ms instead of 100 ms with the per-tensor loop)."""
    return torch.optim.Adam([
        {"params": model.encoder.parameters(), "lr": cfg.lr_encoder},
        {"params": model.decoder_parameters(), "lr": cfg.lr_decoder},
    ], weight_decay=cfg.weight_decay, fused=True)


def run_fingerprint(paths: PathsConfig, model_cfg: ModelConfig, cfg: TrainConfig, world_size: int) -> dict[str, Any]:
    """What must match for last.pt to be resumed: the configs, the process count and the data."""
    train = {k: v for k, v in to_dict(cfg).items() if k not in ("resume", "num_workers", "launcher")}
    digest = hashlib.sha256()
    for split in ("train", "val"):
        digest.update(annotation_file(paths.data, split).read_bytes())
    return {"model": to_dict(model_cfg), "train": train, "world_size": world_size, "data": digest.hexdigest()}


def _resume_state(path: Path, fingerprint: dict[str, Any], cfg: TrainConfig) -> dict[str, Any] | None:
    if not cfg.resume or not path.is_file():
        return None
    state = load_checkpoint(path)
    if state.get("fingerprint") != fingerprint:
        print(f"{path} was written by a different config or dataset: training from scratch", flush=True)
        return None
    return state


def teacher_forcing(epoch: int, epochs: float) -> tuple[float, float]:
    """Teacher-forcing probability at the start and the end of ``epoch``: 1 at the start of
    training, falling linearly to 0 after ``epochs`` epochs (scheduled sampling); 0 = never."""
    if epochs <= 0:
        return 0.0, 0.0
    return max(0.0, 1.0 - epoch / epochs), max(0.0, 1.0 - (epoch + 1) / epochs)


def fit(paths: PathsConfig, model_cfg: ModelConfig, cfg: TrainConfig,
        log_epoch: Callable[[int, dict[str, float]], None] | None = None) -> TrainResult:
    """Train, validating every epoch; write best.pt/last.pt under paths.models (rank 0) and the
    history CSV under paths.metrics. Resumes from last.pt when ``cfg.resume`` and it matches."""
    start = time.perf_counter()
    for line in config_warnings(cfg):
        print(f"warning: {line}", file=sys.stderr)
    if cfg.threads:
        torch.set_num_threads(process_threads(cfg.threads))
    device = select_device(cfg.device)
    dist = distributed.setup(device.type)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    try:
        return _fit(paths, model_cfg, cfg, log_epoch, device, dist, start)
    finally:
        distributed.teardown(dist)


def config_warnings(cfg: TrainConfig) -> list[str]:
    """Settings that are valid but probably not what was meant."""
    late = [e for e in cfg.lr_decay_epochs if e >= cfg.epochs]
    if late:
        return [f"train.lr_decay_epochs {list(cfg.lr_decay_epochs)}: {late} at or past train.epochs = {cfg.epochs} "
                f"never apply (the learning rate is never lowered there); lower them with the epochs, e.g. "
                f"-S train.lr_decay_epochs=[{max(1, cfg.epochs - 2)}]"]
    return []


def _fit(paths: PathsConfig, model_cfg: ModelConfig, cfg: TrainConfig,
         log_epoch: Callable[[int, dict[str, float]], None] | None, device: torch.device,
         dist: distributed.DistInfo, start: float) -> TrainResult:
    seed_everything(cfg.seed)
    train_loader, val_loader, sampler = build_loaders(paths, model_cfg, cfg, dist)
    num_classes = train_loader.dataset.num_classes
    net = place_model(initial_model(model_cfg, num_classes, cfg.seed), device, cfg.channels_last)
    optimizer = build_optimizer(net, cfg)
    criterion = RSISCriterion(head_targets=cfg.head_targets)
    base_weights = to_dict(cfg.loss_weights)
    fingerprint = run_fingerprint(paths, model_cfg, cfg, dist.world_size)
    meta = {"model_config": to_dict(model_cfg), "train_config": to_dict(cfg), "num_classes": num_classes,
            "categories": [c["name"] for c in train_loader.dataset.categories], "git_revision": git_revision(),
            "fingerprint": fingerprint}
    models_dir = Path(paths.models)

    state = schedule.initial_state(cfg.schedule, model_cfg.max_steps)
    rows: list[dict[str, Any]] = []
    best_epoch, best_loss = -1, float("inf")
    resumed = _resume_state(models_dir / LAST, fingerprint, cfg)
    if resumed is not None:
        net.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        state = schedule.ScheduleState.from_dict(resumed["schedule"])
        rows, best_epoch, best_loss = list(resumed["history"]), resumed["best_epoch"], resumed["best_val_loss"]
        if dist.is_main:
            print(f"resuming after epoch {resumed['epoch']} ({state.phase})", flush=True)

    model = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None) \
        if dist.enabled else net
    monitor = SlowdownMonitor()  # hints at CPU contention in the progress output
    for epoch in range(state.epoch, cfg.epochs):
        epoch_start = time.perf_counter()
        weights = schedule.loss_weights(state, base_weights)
        lr_encoder, lr_decoder = schedule.learning_rates(epoch, cfg.lr_encoder, cfg.lr_decoder, cfg.lr_decay_epochs,
                                                         state.encoder_on)
        optimizer.param_groups[0]["lr"], optimizer.param_groups[1]["lr"] = lr_encoder, lr_decoder
        sampler.set_epoch(epoch)  # the shuffle of epoch e depends on (seed, e) only
        torch.manual_seed(cfg.seed * 100_003 + epoch * 1_009 + dist.rank)  # augmentation randomness likewise
        train = train_one_epoch(model, criterion, train_loader, optimizer, device, weights, epoch, state.steps,
                                amp=cfg.amp, channels_last=cfg.channels_last, show_progress=dist.is_main,
                                matching=cfg.matching, forcing=teacher_forcing(epoch, cfg.teacher_forcing_epochs),
                                grad_clip=cfg.grad_clip, monitor=monitor)
        train = distributed.mean_over_processes(dist, train, len(sampler))  # the whole batch's loss under DDP
        distributed.check_replicas(dist, net, f"after epoch {epoch}")
        val = None
        if dist.is_main:
            val = validation_loss(net, criterion, val_loader, device, weights, steps=state.steps, amp=cfg.amp,
                                  channels_last=cfg.channels_last, matching=cfg.matching)
        val = distributed.broadcast_from_main(dist, val)
        if not math.isfinite(val["total"]):  # diverged weights: keep last.pt and best.pt as they are
            raise FloatingPointError(f"non-finite validation loss at epoch {epoch}: {val}; the checkpoints in "
                                     f"{models_dir} are from the last good epoch (lower the learning rates)")

        row = {"epoch": epoch, **{f"train_{k}": v for k, v in train.items()},
               **{f"val_{k}": v for k, v in val.items()},
               "lr_encoder": lr_encoder, "lr_decoder": lr_decoder,
               "steps": state.steps, "class_on": int(state.class_on), "stop_on": int(state.stop_on),
               "encoder_on": int(state.encoder_on), "epoch_seconds": time.perf_counter() - epoch_start}
        rows.append(row)
        improved = val["total"] < state.best_loss  # best within the current phase of the schedule
        if improved:
            best_epoch, best_loss = epoch, val["total"]
        state, transition = schedule.advance(state, val["total"], cfg.schedule, model_cfg.max_steps)

        snapshot = {"model": net.state_dict(), "epoch": epoch, "val_loss": val["total"], **meta}
        if dist.is_main and improved:
            save_checkpoint(models_dir / BEST, snapshot)
        if transition.reload_best:  # before last.pt is written, so a resumed run sees the reloaded weights
            distributed.barrier(dist)
            net.load_state_dict(load_checkpoint(models_dir / BEST, map_location=device)["model"])
        if dist.is_main:
            snapshot["model"] = net.state_dict()  # after a reload of best.pt these are the reloaded weights
            save_checkpoint(models_dir / LAST, {**snapshot, "optimizer": optimizer.state_dict(),
                                                "schedule": state.to_dict(), "history": rows,
                                                "best_epoch": best_epoch, "best_val_loss": best_loss})
            if log_epoch is not None:
                log_epoch(epoch, row)
            print(f"epoch {epoch}: train {train['total']:.4f} val {val['total']:.4f} "
                  f"(mask {val['mask']:.3f} bce {val['bce']:.3f} cls {val['cls']:.3f} stop {val['stop']:.3f} box {val['box']:.3f}) "
                  f"{row['epoch_seconds']:.0f}s" + (f"  [{'; '.join(transition.events)}]" if transition.events else ""),
                  flush=True)

    history = pd.DataFrame(rows)
    if dist.is_main:
        with atomic_path(paths.history) as tmp:
            history.to_csv(tmp, index=False, float_format="%.6g")
    return TrainResult(best_epoch=best_epoch, best_val_loss=best_loss, history=history,
                       seconds=time.perf_counter() - start, device=str(device),
                       resumed_from=None if resumed is None else int(resumed["epoch"]))
