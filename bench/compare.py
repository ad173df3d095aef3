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
import time
from pathlib import Path

import torch
import torchvision
from torch.utils.data import DataLoader
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

from rsis.criterion import RSISCriterion, weighted_total
from rsis.datasets.dataset import InstanceDataset, collate
from rsis.engine import _float, prepare_images, steps_for, to_device
from rsis.matcher import HungarianMatcher
from rsis.model import RSIS


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _images_per_s(run, images: int, iters: int, device: torch.device) -> float:
    run()  # warm-up
    sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        run()
    sync(device)
    return images * iters / (time.perf_counter() - start)


@torch.no_grad()
def inference_vs_maskrcnn(model_cfg, num_classes: int, device: torch.device, size: int, batch: int, iters: int
                          ) -> list[dict]:
    """Images/s of RSIS and Mask R-CNN on the same random batch at ``size`` x ``size``."""
    torch.manual_seed(0)
    images = torch.rand(batch, 3, size, size, device=device)
    rows = []
    for depth in dict.fromkeys((model_cfg.backbone, "resnet50")):
        rsis = RSIS(dataclasses.replace(model_cfg, backbone=depth, pretrained="none", image_size=size),
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
        rsis_rate = _images_per_s(lambda: rsis(images), batch, iters, device)
        rcnn_rate = _images_per_s(lambda: rcnn(listed), batch, iters, device)
        detections = sum(len(d["masks"]) for d in rcnn(listed)) / batch
        rows.append({"backbone": depth, "input": size, "batch": batch, "device": str(device),
                     "rsis_images_per_s": round(rsis_rate, 2), "maskrcnn_images_per_s": round(rcnn_rate, 2),
                     "ratio": round(rsis_rate / rcnn_rate, 2), "maskrcnn_detections_per_image": round(detections, 1)})
    return rows


class OriginalStyleMatcher(HungarianMatcher):
    """The matching as the original code wrote it: for each step, its mask repeated N times and
    compared with the N ground-truth masks pair by pair, the cost matrix filled on the host, and
    the assignment from the pure-Python Munkres of the `munkres` package."""

    seconds = 0.0

    @torch.no_grad()
    def forward(self, mask_logits, targets):
        from munkres import Munkres

        start = time.perf_counter()
        steps = mask_logits.shape[1]
        matches = []
        for b, target in enumerate(targets):
            masks = target["masks"].float()
            n = masks.shape[0]
            t_g = min(n, steps)
            if t_g == 0:
                empty = torch.empty(0, dtype=torch.long)
                matches.append((empty, empty))
                continue
            valid = 1.0 - target["ignore"]
            cost = []
            for t in range(t_g):
                repeated = mask_logits[b, t].sigmoid().unsqueeze(0).repeat(n, 1, 1)  # [N, H, W]
                row = []
                for k in range(n):
                    p, g = repeated[k] * valid, masks[k] * valid
                    inter = (p * g).sum()
                    row.append(float(1.0 - inter / (p + g - p * g).sum().clamp_min(1e-6)))  # a host sync per pair
                cost.append(row)
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


def training_step_vs_original(model_cfg, train_cfg, data_root: Path, device: torch.device, batch: int, steps: int
                              ) -> dict:
    """Seconds per training step (forward, matching + losses, backward, Adam) with each matcher,
    on the same batches from the same initial weights."""
    dataset = InstanceDataset(data_root, "train", model_cfg.input_size, train_cfg.max_objects)
    loader = DataLoader(dataset, batch_size=batch, shuffle=False, collate_fn=collate, drop_last=True)
    batches = [b for _, b in zip(range(steps + 1), loader)]
    weights = dataclasses.asdict(train_cfg.loss_weights)
    out = {"device": str(device), "batch": batch, "input": list(model_cfg.input_size),
           "max_steps": model_cfg.max_steps, "steps_timed": len(batches) - 1}
    for name, matcher in (("rsis", TimedMatcher()), ("original_style", OriginalStyleMatcher())):
        torch.manual_seed(0)
        model = RSIS(dataclasses.replace(model_cfg, pretrained="none"), dataset.num_classes).to(device).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        criterion = RSISCriterion(matcher)

        def step(images, targets):
            images, targets = prepare_images(images, device, False), to_device(targets, device)
            outputs = model(images, steps=steps_for(targets, model.max_steps))
            total = weighted_total(criterion(_float(outputs), targets), weights)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()

        step(*batches[0])
        sync(device)
        type(matcher).seconds = 0.0
        start = time.perf_counter()
        for images, targets in batches[1:]:
            step(images, targets)
        sync(device)
        elapsed = time.perf_counter() - start
        out[f"{name}_step_s"] = round(elapsed / (len(batches) - 1), 4)
        out[f"{name}_matching_s"] = round(type(matcher).seconds / (len(batches) - 1), 4)
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
    """Wall seconds of the latest finished run of each stage in the project's MLflow store (the
    last `make repro` when nothing ran since), in pipeline order."""
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
                                  "attributes.status = 'FINISHED'", order_by=["attributes.start_time DESC"],
                                  max_results=1)
        if runs:
            info = runs[0].info
            rows.append({"stage": stage, "seconds": round((info.end_time - info.start_time) / 1000, 1),
                         "git_revision": runs[0].data.tags.get("git_revision", "")[:10]})
    return rows
