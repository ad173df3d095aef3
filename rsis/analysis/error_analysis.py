"""Error analysis of predicted sequences (the paper's later Figure 3).

Per image, predictions and ground-truth instances are matched one to one (Hungarian on mask IoU;
a pair counts only at IoU >= ``iou_threshold``). From the matches:

* false positives per time step: predictions at step t with no match;
* IoU of the matched predictions per time step;
* false negatives: ground-truth objects with no match, with their size (% of the image);
* IoU vs object size: for every ground-truth object, the IoU of its match (0 when unmatched).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from rsis.core.matcher import soft_iou


@dataclass(frozen=True)
class ImageErrors:
    steps: list[int]  # step of each prediction
    matched_iou: list[float | None]  # per prediction: IoU with its ground-truth match, None = false positive
    gt_size_pct: list[float]  # per ground-truth object: area as % of the image
    gt_iou: list[float]  # per ground-truth object: IoU of its match, 0 = false negative


def mask_iou(pred: list[np.ndarray], gt: list[np.ndarray]) -> np.ndarray:
    """[P, N] IoU of boolean masks (the matcher's soft IoU, exact on binary masks)."""
    if not pred or not gt:
        return np.zeros((len(pred), len(gt)))
    return soft_iou(torch.from_numpy(np.stack(pred)).double(), torch.from_numpy(np.stack(gt))).numpy()


def image_errors(pred: list[np.ndarray], steps: list[int], gt: list[np.ndarray], iou_threshold: float = 0.5
                 ) -> ImageErrors:
    iou = mask_iou(pred, gt)
    matched_pred: list[float | None] = [None] * len(pred)
    gt_iou = [0.0] * len(gt)
    if iou.size:
        rows, cols = linear_sum_assignment(-iou)
        for r, c in zip(rows, cols):
            if iou[r, c] >= iou_threshold:
                matched_pred[r] = gt_iou[c] = float(iou[r, c])
    pixels = gt[0].size if gt else 1
    return ImageErrors(steps=list(steps), matched_iou=matched_pred,
                       gt_size_pct=[100.0 * float(m.sum()) / pixels for m in gt], gt_iou=gt_iou)


def by_step(errors: list[ImageErrors]) -> list[dict]:
    """Rows per time step: predictions, false positives, mean IoU of the matched ones."""
    steps = sorted({s for e in errors for s in e.steps})
    rows = []
    for step in steps:
        ious = [i for e in errors for s, i in zip(e.steps, e.matched_iou) if s == step]
        matched = [i for i in ious if i is not None]
        rows.append({"step": step + 1, "predictions": len(ious), "false_positives": len(ious) - len(matched),
                     "mean_matched_iou": float(np.mean(matched)) if matched else None})
    return rows


def by_object(errors: list[ImageErrors]) -> list[dict]:
    """Rows per ground-truth object: size in % of the image, IoU of its match, found or not."""
    return [{"size_pct": size, "iou": iou, "found": int(iou > 0)}
            for e in errors for size, iou in zip(e.gt_size_pct, e.gt_iou)]
