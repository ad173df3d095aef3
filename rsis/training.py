"""The train stage's work as a function: data, model, optimiser, epochs, checkpoints, history.

``fit`` returns its final metrics and takes a ``log_epoch`` callback, so it runs the same way
from the stage script (which logs to MLflow) and from tests (which do not).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch.utils.data import DataLoader

from rsis.checkpoint import save_checkpoint
from rsis.config import ModelConfig, PathsConfig, TrainConfig, to_dict
from rsis.criterion import RSISCriterion
from rsis.datasets.dataset import InstanceDataset, collate
from rsis.engine import train_one_epoch, validation_loss
from rsis.io import atomic_path
from rsis.model import RSIS
from rsis.runtime import git_revision, seed_everything, select_device

HISTORY_FILE = "train_history.csv"


@dataclass(frozen=True)
class TrainResult:
    best_epoch: int
    best_val_loss: float
    history: pd.DataFrame  # one row per epoch
    seconds: float
    device: str


def build_loaders(paths: PathsConfig, model_cfg: ModelConfig, cfg: TrainConfig,
                  generator: torch.Generator) -> tuple[DataLoader, DataLoader, int]:
    train_set = InstanceDataset(paths.data, "train", model_cfg.image_size, cfg.max_objects)
    val_set = InstanceDataset(paths.data, "val", model_cfg.image_size, cfg.max_objects)
    common = {"batch_size": cfg.batch_size, "collate_fn": collate, "num_workers": cfg.num_workers,
              "pin_memory": torch.cuda.is_available(), "persistent_workers": cfg.num_workers > 0}
    train_loader = DataLoader(train_set, shuffle=True, drop_last=True, generator=generator, **common)
    val_loader = DataLoader(val_set, shuffle=False, **common)
    return train_loader, val_loader, train_set.num_classes


def build_optimizer(model: RSIS, cfg: TrainConfig) -> torch.optim.Adam:
    """Adam with the paper's two learning rates: encoder vs. everything else."""
    return torch.optim.Adam([
        {"params": model.encoder.parameters(), "lr": cfg.lr_encoder},
        {"params": model.decoder_parameters(), "lr": cfg.lr_decoder},
    ], weight_decay=cfg.weight_decay)


def fit(paths: PathsConfig, model_cfg: ModelConfig, cfg: TrainConfig,
        log_epoch: Callable[[int, dict[str, float]], None] | None = None) -> TrainResult:
    """Train, validating every epoch; write best.pt/last.pt under paths.models and the history CSV
    under paths.metrics."""
    start = time.perf_counter()
    generator = seed_everything(cfg.seed)
    device = select_device(cfg.device)
    train_loader, val_loader, num_classes = build_loaders(paths, model_cfg, cfg, generator)
    model = RSIS(model_cfg, num_classes).to(device)
    criterion = RSISCriterion()
    optimizer = build_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(cfg.lr_decay_epochs), gamma=0.1)
    weights = {"mask": cfg.loss_weights.mask, "cls": cfg.loss_weights.cls, "stop": cfg.loss_weights.stop}
    meta = {"model_config": to_dict(model_cfg), "train_config": to_dict(cfg), "num_classes": num_classes,
            "categories": [c["name"] for c in train_loader.dataset.categories], "git_revision": git_revision()}

    models_dir = Path(paths.models)
    rows = []
    best_loss, best_epoch = float("inf"), -1
    for epoch in range(cfg.epochs):
        epoch_start = time.perf_counter()
        train = train_one_epoch(model, criterion, train_loader, optimizer, device, weights, epoch)
        val = validation_loss(model, criterion, val_loader, device, weights)
        scheduler.step()
        row = {"epoch": epoch, **{f"train_{k}": v for k, v in train.items()},
               **{f"val_{k}": v for k, v in val.items()},
               "lr_decoder": optimizer.param_groups[1]["lr"], "epoch_seconds": time.perf_counter() - epoch_start}
        rows.append(row)
        state = {"model": model.state_dict(), "epoch": epoch, "val_loss": val["total"], **meta}
        save_checkpoint(models_dir / "last.pt", state)
        if val["total"] < best_loss:
            best_loss, best_epoch = val["total"], epoch
            save_checkpoint(models_dir / "best.pt", state)
        if log_epoch is not None:
            log_epoch(epoch, row)
        print(f"epoch {epoch}: train {train['total']:.4f} val {val['total']:.4f} "
              f"(mask {val['mask']:.3f} cls {val['cls']:.3f} stop {val['stop']:.3f}) "
              f"{row['epoch_seconds']:.0f}s", flush=True)

    history = pd.DataFrame(rows)
    with atomic_path(Path(paths.metrics) / HISTORY_FILE) as tmp:
        history.to_csv(tmp, index=False, float_format="%.6g")
    return TrainResult(best_epoch=best_epoch, best_val_loss=best_loss, history=history,
                       seconds=time.perf_counter() - start, device=str(device))
