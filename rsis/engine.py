"""One epoch of training and one pass of validation loss; the device is passed in."""

from __future__ import annotations

import math
from collections import defaultdict

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from rsis.criterion import RSISCriterion, weighted_total
from rsis.model import RSIS


def steps_for(targets: list[dict], max_steps: int) -> int:
    """Decoder steps to unroll for a batch: enough for the largest T_g plus its stop step."""
    return min(max_steps, max(t["masks"].shape[0] for t in targets) + 1)


def to_device(targets: list[dict], device: torch.device) -> list[dict]:
    return [{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in t.items()} for t in targets]


def train_one_epoch(model: RSIS, criterion: RSISCriterion, loader: DataLoader, optimizer: torch.optim.Optimizer,
                    device: torch.device, weights: dict[str, float], epoch: int) -> dict[str, float]:
    """Train for one epoch; returns the image-weighted mean of each loss term and the total."""
    model.train()
    sums: dict[str, float] = defaultdict(float)
    seen = 0
    progress = tqdm(loader, desc=f"epoch {epoch} train", unit="batch", leave=False)
    for images, targets in progress:
        images, targets = images.to(device, non_blocking=True), to_device(targets, device)
        outputs = model(images, steps=steps_for(targets, model.max_steps))
        losses = criterion(outputs, targets)
        total = weighted_total(losses, weights)
        if not math.isfinite(total.item()):
            raise FloatingPointError(f"non-finite training loss at epoch {epoch}: "
                                     f"{ {k: float(v) for k, v in losses.items()} }")
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        n = images.shape[0]
        seen += n
        for k, v in losses.items():
            sums[k] += float(v) * n
        sums["total"] += float(total) * n
        progress.set_postfix(loss=f"{sums['total'] / seen:.3f}")
    return {k: v / seen for k, v in sums.items()}


@torch.no_grad()
def validation_loss(model: RSIS, criterion: RSISCriterion, loader: DataLoader, device: torch.device,
                    weights: dict[str, float]) -> dict[str, float]:
    """Mean loss terms over a split, with the model unrolled to its full max_steps."""
    model.eval()
    sums: dict[str, float] = defaultdict(float)
    seen = 0
    for images, targets in tqdm(loader, desc="validate", unit="batch", leave=False):
        images, targets = images.to(device), to_device(targets, device)
        losses = criterion(model(images), targets)
        n = images.shape[0]
        seen += n
        for k, v in losses.items():
            sums[k] += float(v) * n
        sums["total"] += float(weighted_total(losses, weights)) * n
    return {k: v / seen for k, v in sums.items()}
