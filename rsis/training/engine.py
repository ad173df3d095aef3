"""One epoch of training and one pass of validation loss; the device is passed in."""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from rsis.core.criterion import RSISCriterion, weighted_total
from rsis.core.matcher import StepMatcher


def steps_for(targets: list[dict], max_steps: int) -> int:
    """Decoder steps to unroll for a batch: enough for the largest T_g plus its stop step."""
    return min(max_steps, max(t["masks"].shape[0] for t in targets) + 1)


def to_device(targets: list[dict], device: torch.device) -> list[dict]:
    return [{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in t.items()} for t in targets]


def autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when ``amp``; a no-op elsewhere."""
    if amp and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def place_model(model: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    """``model`` on ``device``, in the channels_last memory format when asked (``train.channels_last``):
    on a CPU too, where oneDNN's convolutions then skip a layout reorder of every input and gradient
    (bench/speedup.py measures the default step against the NCHW one: bench/RESULTS.md)."""
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def prepare_images(images: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    images = images.to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images


def forward_with_loss(model: nn.Module, criterion: RSISCriterion, images: torch.Tensor, targets: list[dict],
                      steps: int | None, matching: str = "hungarian", forcing: float = 0.0, amp: bool = False,
                      mark: Callable[[str], None] | None = None) -> dict[str, torch.Tensor]:
    """Unroll and compute the unweighted loss terms. ``matching`` hungarian: one assignment after the
    unroll; top-down: a StepMatcher assigns during the unroll, and each image is teacher-forced
    (its canvas built from the matched ground truth) with probability ``forcing``. ``mark("forward")``
    is called between the unroll and the losses (the benchmark times the phases with it).

    Each image is unrolled only as far as its losses read, T_g + 1 steps (its
    objects and its stop step): the batch is put in order of object count, most first, so that the
    images still going at each step are a prefix of it (``RSIS.forward``'s ``lengths``). The losses
    are those of the full unroll (the decoder has no batch statistics; the encoder's BatchNorm sees
    the same images); on shapes the decoder then does ~4.5 image-steps per image instead of ~6.9."""
    # as many steps as the batch's losses read, ``steps`` (default: the model's max_steps) at most
    steps = steps_for(targets, getattr(model, "module", model).max_steps if steps is None else steps)
    counts = [t["masks"].shape[0] for t in targets]
    order = sorted(range(len(targets)), key=lambda b: -counts[b])  # stable: ties keep the loader's order
    if order != list(range(len(targets))):
        reordered = images.index_select(0, torch.tensor(order, device=images.device))
        channels_last = images.is_contiguous(memory_format=torch.channels_last) and not images.is_contiguous()
        images = reordered.contiguous(memory_format=torch.channels_last) if channels_last else reordered
        targets = [targets[b] for b in order]
    lengths = [min(steps, counts[b] + 1) for b in order]
    matcher = None
    if matching != "hungarian":
        matcher = StepMatcher(targets, torch.rand(images.shape[0]) < forcing)
    with autocast(images.device, amp):
        outputs = model(images, steps=steps, feedback=matcher, lengths=lengths)
    if mark is not None:
        mark("forward")
    return criterion(outputs.float(), targets, matches=None if matcher is None else matcher.matches())


class NonFiniteLoss(FloatingPointError):
    """A training step's loss is NaN or infinite (raised before the update)."""

    def __init__(self, values: dict[str, float]) -> None:
        super().__init__(f"non-finite training loss: {values}")
        self.values = values


def training_step(model: nn.Module, criterion: RSISCriterion, optimizer: torch.optim.Optimizer, images: torch.Tensor,
                  targets: list[dict], weights: dict[str, float], steps: int, matching: str = "hungarian",
                  forcing: float = 0.0, amp: bool = False, grad_clip: float = 0.0,
                  mark: Callable[[str], None] | None = None) -> tuple[dict[str, float], float]:
    """One update: unroll ``steps`` decoder steps, the weighted loss, backward, clipping, Adam. Returns
    the unweighted terms and the weighted total as floats. A non-finite loss raises before the update,
    so the weights stay as they were. ``mark(phase)`` is called after "forward", "losses" and
    "backward_and_adam" (bench/compare.py times this very step with it)."""
    losses = forward_with_loss(model, criterion, images, targets, steps, matching, forcing, amp, mark)
    total = weighted_total(losses, weights)
    values = {k: float(v.detach()) for k, v in losses.items()}  # one host sync per batch, for logging
    total_value = float(total.detach())
    if mark is not None:
        mark("losses")
    if not math.isfinite(total_value):
        raise NonFiniteLoss(values)
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    if mark is not None:
        mark("backward_and_adam")
    return values, total_value


class SlowdownMonitor:
    """Notices when training steps become far slower than earlier in the same run, which on a CPU
    almost always means another process is sharing the cores, and says so once per epoch."""

    def __init__(self, window: int = 20, factor: float = 3.0) -> None:
        self.window, self.factor = window, factor
        self.fastest: float | None = None  # mean step time of the fastest full window so far
        self.times: list[float] = []

    def step(self, seconds: float) -> str | None:
        """Record one step's time; returns a hint when the last window is ``factor`` x the fastest."""
        self.times.append(seconds)
        if len(self.times) < self.window:
            return None
        mean = sum(self.times) / len(self.times)
        self.times = []
        if self.fastest is None or mean < self.fastest:
            self.fastest = mean
            return None
        if mean < self.factor * self.fastest:
            return None
        return (f"training steps are {mean / self.fastest:.1f}x slower than earlier in this run ({mean:.2f} s vs "
                f"{self.fastest:.2f} s per batch): another process is probably using the CPU cores (this run: "
                f"{torch.get_num_threads()} threads, {os.cpu_count()} cores; README \"Experiments\" on train.threads)")


def train_one_epoch(model: nn.Module, criterion: RSISCriterion, loader: DataLoader, optimizer: torch.optim.Optimizer,
                    device: torch.device, weights: dict[str, float], epoch: int, steps: int, amp: bool = False,
                    channels_last: bool = False, show_progress: bool = True, matching: str = "hungarian",
                    forcing: tuple[float, float] = (0.0, 0.0), grad_clip: float = 0.0,
                    monitor: SlowdownMonitor | None = None) -> dict[str, float]:
    """Train for one epoch unrolling at most ``steps`` decoder steps; returns the image-weighted mean
    of each loss term and the weighted total (this process's share of the data under DDP).
    ``forcing``: teacher-forcing probability at the epoch's start and end (linear in between).
    ``monitor``: times each step and prints its hint (at most once per epoch) when steps slow down.
    The progress bar shows only when ``show_progress`` and stderr is a terminal."""
    model.train()
    sums: dict[str, float] = defaultdict(float)
    seen = 0
    progress = tqdm(loader, desc=f"epoch {epoch} train", unit="batch", leave=False, disable=None if show_progress else True)
    hinted, tick = False, time.perf_counter()
    for index, (images, targets) in enumerate(progress):
        images, targets = prepare_images(images, device, channels_last), to_device(targets, device)
        p = forcing[0] + (forcing[1] - forcing[0]) * index / max(len(loader), 1)
        try:
            values, total_value = training_step(model, criterion, optimizer, images, targets, weights,
                                                steps_for(targets, steps), matching, p, amp, grad_clip)
        except NonFiniteLoss as exc:
            raise FloatingPointError(f"non-finite training loss at epoch {epoch}: {exc.values}; training stopped "
                                     f"before this step, the checkpoints are from the last good epoch") from None
        n = images.shape[0]
        seen += n
        for k, v in values.items():
            sums[k] += v * n
        sums["total"] += total_value * n
        progress.set_postfix(loss=f"{sums['total'] / seen:.3f}")
        now = time.perf_counter()
        hint = monitor.step(now - tick) if monitor is not None else None
        tick = now
        if hint and not hinted:
            tqdm.write(f"warning: {hint}", file=sys.stderr)
            hinted = True
    return {k: v / seen for k, v in sums.items()}


@torch.no_grad()
def validation_loss(model: nn.Module, criterion: RSISCriterion, loader: DataLoader, device: torch.device,
                    weights: dict[str, float], steps: int | None = None, amp: bool = False,
                    channels_last: bool = False, matching: str = "hungarian") -> dict[str, float]:
    """Mean loss terms over a split, with the model unrolled ``steps`` steps (default: as many as each
    batch's losses read, max_steps at most) on its own canvas (no teacher forcing)."""
    model.eval()
    sums: dict[str, float] = defaultdict(float)
    seen = 0
    for images, targets in tqdm(loader, desc="validate", unit="batch", leave=False, disable=None):
        images, targets = prepare_images(images, device, channels_last), to_device(targets, device)
        losses = forward_with_loss(model, criterion, images, targets, steps, matching, 0.0, amp)
        n = images.shape[0]
        seen += n
        for k, v in losses.items():
            sums[k] += float(v) * n
        sums["total"] += float(weighted_total(losses, weights)) * n
    return {k: v / seen for k, v in sums.items()}
