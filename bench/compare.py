"""Side-by-side measurements for bench.py: RSIS against what a user would otherwise run.

- inference: RSIS vs torchvision's Mask R-CNN (FPN, random weights) at the same input resolution,
  with ResNet-50 (torchvision's maskrcnn_resnet50_fpn) and with RSIS's own ResNet depth;
- a training step: RSIS's matcher (one [T, N] soft-IoU matrix per image from one matrix product,
  scipy's linear_sum_assignment) vs the same step with the matching written the way the original
  code did it (each step's mask repeated against every ground truth, pair by pair, and the
  pure-Python Munkres of the `munkres` package);
- data loading images/s vs what a training step consumes;
- the wall time of each stage of the last `make repro`, from its MLflow runs.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path

import torch
import torchvision
from torch.utils.data import DataLoader
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

from rsis.core.criterion import RSISCriterion
from rsis.core.matcher import HungarianMatcher
from rsis.core.model import RSIS
from rsis.datasets.dataset import InstanceDataset, collate
from rsis.training.engine import place_model, prepare_images, steps_for, to_device, training_step


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def paired_images_per_s(runs: list, images: int, iters: int, device: torch.device) -> list[float]:
    """Images/s of each of ``runs`` (callables over the same batch of ``images``): one warm-up call
    each, then ``iters`` rounds calling each once in turn; the median seconds of each. Taking turns,
    a slow moment of a shared host falls on all of them rather than on whichever ran then."""
    seconds: list[list[float]] = [[] for _ in runs]
    for run in runs:
        run()  # warm-up
    for _ in range(iters):
        for run, times in zip(runs, seconds):
            sync(device)
            start = time.perf_counter()
            run()
            sync(device)
            times.append(time.perf_counter() - start)
    return [images / statistics.median(times) for times in seconds]


@torch.no_grad()
def inference_vs_maskrcnn(model_cfg, num_classes: int, device: torch.device, size: int, batch: int, iters: int
                          ) -> list[dict]:
    """Images/s of RSIS and Mask R-CNN on the same random batch at ``size`` x ``size``, taking turns
    (:func:`paired_images_per_s`)."""
    torch.manual_seed(0)
    images = torch.rand(batch, 3, size, size, device=device)
    rows = []
    for depth in dict.fromkeys((model_cfg.backbone, "resnet50")):
        rsis = RSIS(dataclasses.replace(model_cfg, backbone=depth, image_size=size),
                    num_classes).to(device).eval()
        if depth == "resnet50":
            rcnn = torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None,
                                                                      num_classes=num_classes, min_size=size,
                                                                      max_size=size)
        else:
            backbone = resnet_fpn_backbone(backbone_name=depth, weights=None, trainable_layers=5)
            rcnn = MaskRCNN(backbone, num_classes=num_classes, min_size=size, max_size=size)
        rcnn = rcnn.to(device).eval()
        listed = list(images)
        rsis_rate, rcnn_rate = paired_images_per_s([lambda: rsis(images), lambda: rcnn(listed)], batch, iters, device)
        detections = sum(len(d["masks"]) for d in rcnn(listed)) / batch
        rows.append({"backbone": depth, "input": size, "batch": batch, "device": str(device),
                     "rsis_images_per_s": round(rsis_rate, 2), "maskrcnn_images_per_s": round(rcnn_rate, 2),
                     "ratio": round(rsis_rate / rcnn_rate, 2), "maskrcnn_detections_per_image": round(detections, 1)})
    return rows


class OriginalStyleMatcher(HungarianMatcher):
    """The matching as the original code wrote it: inside the loop over steps, the step's mask of
    every image repeated once per ground-truth slot (targets zero-padded to the batch's largest N),
    one soft IoU over the repeated tensors and one host copy of that step's costs; then, per image,
    the pure-Python Munkres of the `munkres` package. It solves the same problem as
    HungarianMatcher (the first min(N, T) steps against the N targets), so the two give the same
    losses and gradients and only their cost differs."""

    seconds = 0.0

    @torch.no_grad()
    def forward(self, mask_logits, targets):
        from munkres import Munkres

        start = time.perf_counter()
        batch, steps = mask_logits.shape[:2]
        slots = max(t["masks"].shape[0] for t in targets)
        gt = mask_logits.new_zeros(batch, slots, *mask_logits.shape[-2:])  # padded ground truth
        valid = torch.ones_like(mask_logits[:, 0])
        for b, target in enumerate(targets):
            gt[b, : target["masks"].shape[0]] = target["masks"].float()
            if "ignore" in target:
                valid[b] = 1.0 - target["ignore"]
        gt = (gt * valid[:, None]).flatten(2)  # [B, N, H*W]
        costs = torch.empty(batch, slots, steps)  # on the host, filled one step at a time
        for t in range(steps):
            repeated = (mask_logits[:, t].sigmoid() * valid).flatten(1)[:, None].repeat(1, slots, 1)  # [B, N, H*W]
            inter = (repeated * gt).sum(-1)
            union = (repeated + gt - repeated * gt).sum(-1).clamp_min(1e-6)
            costs[:, :, t] = (1.0 - inter / union).cpu()  # a host sync per step
        matches = []
        for b, target in enumerate(targets):
            n = target["masks"].shape[0]
            t_g = min(n, steps)
            if t_g == 0:
                empty = torch.empty(0, dtype=torch.long)
                matches.append((empty, empty))
                continue
            cost = costs[b, :n, :t_g].T.tolist()  # [T_g][N] Python lists, as the original passed them
            pairs = sorted(Munkres().compute(cost))
            matches.append((torch.tensor([r for r, _ in pairs], dtype=torch.long),
                            torch.tensor([c for _, c in pairs], dtype=torch.long)))
        OriginalStyleMatcher.seconds += time.perf_counter() - start
        return matches


class TimedMatcher(HungarianMatcher):
    seconds = 0.0

    def forward(self, mask_logits, targets):
        start = time.perf_counter()
        result = super().forward(mask_logits, targets)
        TimedMatcher.seconds += time.perf_counter() - start
        return result


PHASES = ("forward", "matching", "losses", "backward_and_adam")


class Trainer:
    """One model, optimizer and criterion for a variant of the training step, timing its phases
    (PHASES). ``unroll(targets, max_steps)`` gives the decoder steps to run; ``amp`` applies on CUDA
    only and ``channels_last`` on every device, as in training."""

    def __init__(self, model_cfg, num_classes: int, device: torch.device, matcher: HungarianMatcher, unroll,
                 weights: dict, amp: bool = False, channels_last: bool = False) -> None:
        torch.manual_seed(0)
        self.channels_last = channels_last
        self.model = place_model(RSIS(model_cfg, num_classes), device, channels_last).train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-4)
        self.matcher, self.criterion = matcher, RSISCriterion(matcher)
        self.device, self.unroll, self.weights, self.amp = device, unroll, weights, amp

    def step(self, images, targets) -> dict[str, float]:
        """One update through training's own step (rsis.training.engine.training_step), timed per phase."""
        device, timer = self.device, type(self.matcher)
        images, targets = prepare_images(images, device, self.channels_last), to_device(targets, device)
        marks: list[float] = []

        def mark(_phase: str) -> None:
            sync(device)
            marks.append(time.perf_counter())

        mark("start")
        matched = timer.seconds
        training_step(self.model, self.criterion, self.optimizer, images, targets, self.weights,
                      self.unroll(targets, self.model.max_steps), amp=self.amp, mark=mark)
        matching = timer.seconds - matched
        t0, t1, t2, t3 = marks
        return dict(zip(PHASES, (t1 - t0, matching, t2 - t1 - matching, t3 - t2)))


def training_step_vs_original(model_cfg, train_cfg, data_root: Path, device: torch.device, batch: int, steps: int,
                              label: str = "default") -> dict:
    """Seconds per training step (forward, matching, losses, backward + Adam) of RSIS and of the same
    step written the way the original code did it, on the same batches from the same initial weights.

    RSIS unrolls only as many decoder steps as the batch's largest T_g needs plus its stop step (later
    steps get no gradient) and matches with HungarianMatcher; the original-style step unrolls all T
    steps, as the original's `for t in range(T)` loop did, and matches with OriginalStyleMatcher.
    The two run alternately, batch by batch (which goes first alternates too), and each figure is the
    median over the timed batches, so drift in a shared machine's speed hits both alike.
    """
    dataset = InstanceDataset(data_root, "train", model_cfg.input_size, train_cfg.max_objects)
    loader = DataLoader(dataset, batch_size=batch, shuffle=False, collate_fn=collate, drop_last=True)
    batches = [b for _, b in zip(range(steps + 1), loader)]
    weights = dataclasses.asdict(train_cfg.loss_weights)
    objects = [t["masks"].shape[0] for _, targets in batches[1:] for t in targets]
    trainers = {"rsis": Trainer(model_cfg, dataset.num_classes, device, TimedMatcher(), steps_for, weights),
                "original_style": Trainer(model_cfg, dataset.num_classes, device, OriginalStyleMatcher(),
                                           lambda _targets, max_steps: max_steps, weights)}
    timings = {name: [] for name in trainers}
    for i, (images, targets) in enumerate(batches):
        order = list(trainers) if i % 2 == 0 else list(reversed(trainers))
        for name in order:
            phases = trainers[name].step(images, targets)
            if i > 0:  # batch 0 is the warm-up
                timings[name].append(phases)
    out = {"label": label, "device": str(device), "batch": batch, "input": list(model_cfg.input_size),
           "max_steps": model_cfg.max_steps, "objects_per_image": round(sum(objects) / len(objects), 1),
           "steps_timed": len(batches) - 1}
    for name, rows in timings.items():
        out[f"{name}_step_s"] = round(statistics.median(sum(r.values()) for r in rows), 4)
        out[f"{name}_phases_s"] = {p: round(statistics.median(r[p] for r in rows), 4) for p in PHASES}
        out[f"{name}_matching_s"] = out[f"{name}_phases_s"]["matching"]
    out["step_ratio"] = round(out["original_style_step_s"] / out["rsis_step_s"], 2)
    out["matching_ratio"] = round(out["original_style_matching_s"] / max(out["rsis_matching_s"], 1e-9), 1)
    return out


def loading_throughput(data_root: Path, input_size, max_objects: int, augment, batch: int, workers: int,
                       pin_memory: bool, batches: int) -> float:
    """Images/s the DataLoader delivers (decoding PNG + RLE, resizing, augmenting) on its own."""
    dataset = InstanceDataset(data_root, "train", input_size, max_objects, augment=augment)
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, collate_fn=collate, num_workers=workers,
                        pin_memory=pin_memory, drop_last=True, generator=torch.Generator().manual_seed(0))
    it = iter(loader)
    next(it)  # worker start-up is not throughput
    start = time.perf_counter()
    n = 0
    for _, (images, _targets) in zip(range(batches), it):
        n += images.shape[0]
    return n / (time.perf_counter() - start)


def repro_breakdown(db: Path) -> list[dict]:
    """Wall seconds of the latest finished run of each stage in the project's MLflow store that ran
    in the workspace (the last `make repro` or `dvc repro`; runs of `dvc exp run`, e.g. `make seeds`,
    carry the experiment's name in their `dvc_experiment` tag and are left out), in pipeline order."""
    if not db.is_file():
        return []
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{db.resolve()}")
    experiment = client.get_experiment_by_name("rsis")
    if experiment is None:
        return []
    rows = []
    for stage in ("convert", "train", "evaluate", "analyze"):
        runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.stage = '{stage}' and "
                                  "tags.dvc_experiment = '' and attributes.status = 'FINISHED'",
                                  order_by=["attributes.start_time DESC"], max_results=1)
        if runs:
            info = runs[0].info
            rows.append({"stage": stage, "seconds": round((info.end_time - info.start_time) / 1000, 1),
                         "git_revision": runs[0].data.tags.get("git_revision", "")[:10]})
    return rows
