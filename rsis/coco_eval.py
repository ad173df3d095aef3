"""COCO segmentation and box AP with pycocotools, as one call over ground truth and detections."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

# IoU thresholds the paper reports (COCOeval evaluates 0.50:0.05:0.95)
REPORTED_IOUS = (0.5, 0.6, 0.7, 0.8, 0.9)


def load_ground_truth(annotation_path: str | Path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(annotation_path))


def evaluate_segm(ground_truth: COCO, detections: list[dict], iou_type: str = "segm",
                  class_agnostic: bool = False) -> dict[str, float]:
    """AP, AP50, AP75 and AP at each of REPORTED_IOUS, in [0, 1], for ``iou_type`` 'segm' or 'bbox'.

    ``class_agnostic`` ignores categories (COCOeval useCats=0): it measures masks and ranking alone.
    With no detections at all every AP is 0.
    """
    keys = ["AP", "AP50", "AP75"] + [f"AP@{t:.1f}" for t in REPORTED_IOUS]
    if not detections:
        return dict.fromkeys(keys, 0.0)
    with contextlib.redirect_stdout(io.StringIO()):
        results = ground_truth.loadRes([dict(d) for d in detections])  # loadRes adds keys in place
        evaluator = COCOeval(ground_truth, results, iouType=iou_type)
        evaluator.params.useCats = 0 if class_agnostic else 1
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    precision = evaluator.eval["precision"]  # [IoU, recall, class, area, maxDets]
    metrics = {"AP": float(evaluator.stats[0]), "AP50": float(evaluator.stats[1]), "AP75": float(evaluator.stats[2])}
    for t in REPORTED_IOUS:
        index = int(np.argmin(np.abs(evaluator.params.iouThrs - t)))
        p = precision[index, :, :, 0, -1]  # all classes, all areas, maxDets=100
        metrics[f"AP@{t:.1f}"] = float(p[p > -1].mean()) if (p > -1).any() else 0.0
    return metrics
