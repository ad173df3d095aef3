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
    return evaluate_with_classes(ground_truth, detections, iou_type, class_agnostic)[0]


def per_class_ap(ground_truth: COCO, detections: list[dict], iou: float = 0.5) -> dict[str, float]:
    """Segm AP at one IoU threshold per category name (0 for a category with no detection;
    categories without ground truth are left out)."""
    return evaluate_with_classes(ground_truth, detections, "segm", iou=iou)[1]


def evaluate_with_classes(ground_truth: COCO, detections: list[dict], iou_type: str = "segm",
                          class_agnostic: bool = False, iou: float = 0.5) -> tuple[dict[str, float], dict[str, float]]:
    """:func:`evaluate_segm`'s metrics and the AP at ``iou`` per category name (0 for a category with
    no detection; categories without ground truth left out; none when ``class_agnostic``), from
    one COCOeval run."""
    keys = ["AP", "AP50", "AP75"] + [f"AP@{t:.1f}" for t in REPORTED_IOUS]
    names = {c["id"]: c["name"] for c in ground_truth.loadCats(ground_truth.getCatIds())}
    present = {a["category_id"] for a in ground_truth.loadAnns(ground_truth.getAnnIds()) if not a["iscrowd"]}
    if not detections:
        return dict.fromkeys(keys, 0.0), ({} if class_agnostic else {names[c]: 0.0 for c in sorted(present)})
    evaluator = run_cocoeval(ground_truth, detections, iou_type, use_cats=not class_agnostic)  # loadRes copies the dicts
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.summarize()
    precision = evaluator.eval["precision"]  # [IoU, recall, class, area, maxDets]
    metrics = {"AP": float(evaluator.stats[0]), "AP50": float(evaluator.stats[1]), "AP75": float(evaluator.stats[2])}
    for t in REPORTED_IOUS:
        index = int(np.argmin(np.abs(evaluator.params.iouThrs - t)))
        p = precision[index, :, :, 0, -1]  # all classes, all areas, maxDets=100
        metrics[f"AP@{t:.1f}"] = float(p[p > -1].mean()) if (p > -1).any() else 0.0
    per_class = {}
    if not class_agnostic:
        index = int(np.argmin(np.abs(evaluator.params.iouThrs - iou)))
        for k, cat_id in enumerate(evaluator.params.catIds):
            if cat_id in present:
                p = precision[index, :, k, 0, -1]
                per_class[names[cat_id]] = float(p[p > -1].mean()) if (p > -1).any() else 0.0
    return metrics, per_class


def run_cocoeval(ground_truth: COCO, detections: list[dict], iou_type: str, use_cats: bool,
                 configure=None) -> COCOeval:
    """COCOeval evaluated and accumulated, quietly; ``configure(params)`` may change its parameters first."""
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(ground_truth, ground_truth.loadRes([dict(d) for d in detections]), iouType=iou_type)
        evaluator.params.useCats = int(use_cats)
        if configure is not None:
            configure(evaluator.params)
        evaluator.evaluate()
        evaluator.accumulate()
    return evaluator


def recall_params(ious: tuple[float, ...], max_dets: tuple[int, ...]):
    """COCOeval parameters for :func:`proposal_recall`: recall at these IoUs and detection counts."""
    def configure(params) -> None:
        params.iouThrs = np.array(ious, dtype=float)
        params.maxDets = list(max_dets)
    return configure


def proposal_recall(ground_truth: COCO, detections: list[dict], ious: tuple[float, ...] = (0.5, 0.7, 0.85),
                    max_dets: tuple[int, ...] = (10, 50)) -> dict[str, float]:
    """Class-agnostic average recall of the masks as proposals (the paper's AR@10/AR@50 at IoU
    0.5/0.7/0.85): keys 'AR@<n>@<iou>'. ``detections`` should hold one entry per mask."""
    keys = [f"AR@{m}@{t:g}" for m in max_dets for t in ious]
    if not detections:
        return dict.fromkeys(keys, 0.0)

    recall = run_cocoeval(ground_truth, detections, "segm", use_cats=False,
                          configure=recall_params(ious, max_dets)).eval["recall"]  # [T,K,A,M]
    out = {}
    for mi, m in enumerate(max_dets):
        for ti, t in enumerate(ious):
            value = recall[ti, 0, 0, mi]
            out[f"AR@{m}@{t:g}"] = float(max(value, 0.0))
    return out
