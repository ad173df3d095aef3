"""Confidence intervals of the test metrics by bootstrap over test images.

A test split is a sample of images; the metrics computed on it would move if another sample of
the same size were drawn. The percentile bootstrap estimates how far: draw the split's images with
replacement ``resamples`` times, recompute each metric on every draw, and report the central
``confidence`` share of the values (e.g. the 2.5th and 97.5th percentiles) and their standard
deviation (the bootstrap standard error). Every metric uses the same draws, so the intervals of
AP50, class-agnostic AP50, AR@10 and the CVPPP metrics are of the same resampled splits.

The interval is about the test sample only: it says how much a metric would move on other test
images for the same trained model, not how much retraining with another seed moves it (that is
the seed spread, ``make seeds``).

COCO AP is not a mean over images, so each draw re-runs pycocotools' own ``accumulate`` on the
per-image matches (``COCOeval.evalImgs``) of the drawn images, duplicates included: matching is
per image, so an image drawn twice counts its detections and ground truth twice. Matching is done
once; a draw costs one ``accumulate``. With the identity draw the values equal the point metrics.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from rsis.evaluation.coco import recall_params, run_cocoeval

PROPOSAL_IOU, PROPOSAL_DETS = 0.5, 10  # the interval of AR@10@0.5


class Resampler:
    """One evaluated COCOeval, re-accumulated over any multiset of its images (area range 'all')."""

    def __init__(self, evaluator: COCOeval) -> None:
        params = evaluator._paramsEval
        self.image_ids = list(params.imgIds)
        n_images, n_areas = len(self.image_ids), len(params.areaRng)
        area = params.areaRngLbl.index("all")
        n_cats = len(params.catIds) if params.useCats else 1
        # evalImgs is laid out [category][area][image]; keep area 'all', as [category][image]
        self._per_cat = [evaluator.evalImgs[(k * n_areas + area) * n_images:(k * n_areas + area + 1) * n_images]
                         for k in range(n_cats)]
        self._evaluator = COCOeval(iouType=params.iouType)
        p = copy.deepcopy(params)
        p.areaRng, p.areaRngLbl = [params.areaRng[area]], ["all"]
        # only the most detections: the summaries read nothing else, and accumulate's cost is per limit
        p.maxDets = [params.maxDets[-1]]
        self._evaluator.params = p

    def accumulate(self, positions: Sequence[int]) -> dict[str, np.ndarray]:
        """pycocotools' precision [T, R, K, 1, 1] and recall [T, K, 1, 1] of the images at
        ``positions`` (indices into :attr:`image_ids`, repeats allowed), at the evaluator's largest
        detection limit (its last maxDets: each limit is accumulated on its own, so these are the
        values a full accumulate gives there)."""
        ev = self._evaluator
        ev.params.imgIds = list(range(len(positions)))
        ev._paramsEval = copy.copy(ev.params)
        ev.evalImgs = [per_image[i] for per_image in self._per_cat for i in positions]
        with contextlib.redirect_stdout(io.StringIO()):
            ev.accumulate()
        return ev.eval


def average_precision(precision: np.ndarray, iou_thresholds: np.ndarray, iou: float | None = None) -> float:
    """COCO's summary AP from a precision array: the mean of the defined entries at area 'all' and
    the most detections, at one IoU threshold or, with ``iou`` None, over all of them."""
    p = precision[..., 0, -1]
    if iou is not None:
        p = p[int(np.argmin(np.abs(iou_thresholds - iou)))]
    return float(p[p > -1].mean()) if (p > -1).any() else 0.0


def draws(n_images: int, resamples: int, seed: int) -> np.ndarray:
    """``resamples`` bootstrap draws of ``n_images`` image positions each, with replacement."""
    return np.random.default_rng(seed).integers(0, n_images, size=(resamples, n_images))


def interval(values: np.ndarray, confidence: float) -> dict[str, float]:
    """The percentile interval and the standard deviation of bootstrap values."""
    low, high = np.quantile(values, [(1 - confidence) / 2, (1 + confidence) / 2])
    return {"low": float(low), "high": float(high), "se": float(np.std(values, ddof=1))}


def bootstrap_intervals(ground_truth: COCO, detections: list[dict], proposals: list[dict],
                        leaf_scores: Mapping[int, Mapping[str, float]] | None = None,
                        resamples: int = 1000, seed: int = 0, confidence: float = 0.95) -> dict[str, Any]:
    """Intervals of segm AP and AP50 (``detections``, per class), class-agnostic AP50 and AR@10@0.5
    (``proposals``, one per mask) and, given ``leaf_scores`` (image id -> that image's CVPPP scores),
    the CVPPP means, laid out as metrics/evaluate.json is: ``{"segm": {"AP50": {"low", "high", "se"}}, ...}``."""
    image_ids = sorted(ground_truth.getImgIds())
    picks = draws(len(image_ids), resamples, seed)
    values: dict[tuple[str, str], list[float]] = {}

    def record(section: str, key: str, value: float) -> None:
        values.setdefault((section, key), []).append(value)

    if detections:  # no detection: every AP is 0 on every draw, nothing to resample
        segm = Resampler(run_cocoeval(ground_truth, detections, "segm", use_cats=True))
        agnostic = Resampler(run_cocoeval(ground_truth, proposals, "segm", use_cats=False))
        recall = Resampler(run_cocoeval(ground_truth, proposals, "segm", use_cats=False,
                                        configure=recall_params((PROPOSAL_IOU,), (PROPOSAL_DETS,))))
        assert segm.image_ids == agnostic.image_ids == recall.image_ids == image_ids
        ious = segm._evaluator.params.iouThrs
        for positions in picks:
            precision = segm.accumulate(positions)["precision"]
            record("segm", "AP", average_precision(precision, ious))
            record("segm", "AP50", average_precision(precision, ious, 0.5))
            record("segm_class_agnostic", "AP50",
                   average_precision(agnostic.accumulate(positions)["precision"], ious, 0.5))
            record("proposals", f"AR@{PROPOSAL_DETS}@{PROPOSAL_IOU:g}",
                   max(float(recall.accumulate(positions)["recall"][0, 0, 0, 0]), 0.0))
    if leaf_scores:
        missing = [i for i in image_ids if i not in leaf_scores]
        if missing:
            raise ValueError(f"CVPPP scores missing for {len(missing)} test images (first: id {missing[0]})")
        for key in ("SBD", "DiC", "absDiC", "FBD"):
            per_image = np.array([leaf_scores[i][key] for i in image_ids], dtype=float)
            for mean in per_image[picks].mean(axis=1):
                record("cvppp", f"{key}_mean", float(mean))
    out: dict[str, Any] = {"resamples": resamples, "confidence": confidence, "seed": seed}
    for (section, key), series in values.items():
        out.setdefault(section, {})[key] = interval(np.array(series), confidence)
    return out
