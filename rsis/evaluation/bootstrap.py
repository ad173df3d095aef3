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

COCO AP is not a mean over images, so each draw re-accumulates the per-image matches
(``COCOeval.evalImgs``) of the drawn images, duplicates included, exactly as pycocotools'
``accumulate`` does (:class:`Resampler`): matching is per image, so an image drawn twice counts its
detections and ground truth twice. Matching is done once. With the identity draw the values equal
the point metrics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from rsis.evaluation.coco import recall_params, run_cocoeval

PROPOSAL_IOU, PROPOSAL_DETS = 0.5, 10  # the interval of AR@10@0.5


class Resampler:
    """One evaluated COCOeval, re-accumulated over any multiset of its images (area range 'all').

    :meth:`accumulate` is pycocotools' ``COCOeval.accumulate`` for one area range and one detection
    limit, done with whole-array numpy instead of its Python loops (a test checks that the two give
    bit-identical arrays): each draw concatenates the drawn images' per-image matches in draw order,
    sorts them by score with the same stable sort, and takes the same cumulative sums, precision
    envelope and recall thresholds. 1,000 draws of the three evaluators cost under 1 s instead of ~9 s."""

    def __init__(self, evaluator: COCOeval) -> None:
        params = evaluator._paramsEval
        self.image_ids = list(params.imgIds)
        n_images, n_areas = len(self.image_ids), len(params.areaRng)
        area = params.areaRngLbl.index("all")
        n_cats = len(params.catIds) if params.useCats else 1
        max_det = params.maxDets[-1]  # the summaries read only the most detections
        self.iou_thresholds = np.asarray(params.iouThrs)
        self._recall_thresholds = np.asarray(params.recThrs)
        # evalImgs is laid out [category][area][image]; per category, the area-'all' matches of every
        # image flattened into one run of detections, with where each image's part starts
        # (an image without this category's ground truth or detections has no entry: None)
        self._per_cat = []
        n_t = len(self.iou_thresholds)
        for k in range(n_cats):
            per_image = evaluator.evalImgs[(k * n_areas + area) * n_images:(k * n_areas + area + 1) * n_images]
            kept = [e for e in per_image if e is not None]
            lengths = np.array([len(e["dtScores"][:max_det]) if e is not None else 0 for e in per_image])
            scores = np.concatenate([np.asarray(e["dtScores"][:max_det], dtype=float) for e in kept] or [np.zeros(0)])
            matched = np.concatenate([e["dtMatches"][:, :max_det] for e in kept] or [np.zeros((n_t, 0))], axis=1)
            ignored = np.concatenate([e["dtIgnore"][:, :max_det] for e in kept] or [np.zeros((n_t, 0))], axis=1)
            self._per_cat.append({
                "starts": np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64),
                "lengths": lengths.astype(np.int64),
                "scores": scores,
                "tps": np.logical_and(matched, np.logical_not(ignored)),
                "fps": np.logical_and(np.logical_not(matched), np.logical_not(ignored)),
                "npig": np.array([np.count_nonzero(np.asarray(e["gtIgnore"]) == 0) if e is not None else 0
                                  for e in per_image], dtype=np.int64),
            })

    def accumulate(self, positions: Sequence[int]) -> dict[str, np.ndarray]:
        """pycocotools' precision [T, R, K, 1, 1] and recall [T, K, 1, 1] of the images at
        ``positions`` (indices into :attr:`image_ids`, repeats allowed), at the evaluator's largest
        detection limit (its last maxDets: each limit is accumulated on its own, so these are the
        values a full accumulate gives there)."""
        positions = np.asarray(positions, dtype=np.int64)
        n_t, n_r, n_k = len(self.iou_thresholds), len(self._recall_thresholds), len(self._per_cat)
        precision = -np.ones((n_t, n_r, n_k, 1, 1))
        recall = -np.ones((n_t, n_k, 1, 1))
        for k, cat in enumerate(self._per_cat):
            npig = int(cat["npig"][positions].sum())
            if npig == 0:
                continue  # no ground truth of this category drawn: undefined (-1), as pycocotools leaves it
            lengths = cat["lengths"][positions]
            ends = np.cumsum(lengths)
            nd = int(ends[-1])
            if nd == 0:
                precision[:, :, k, 0, 0], recall[:, k, 0, 0] = 0.0, 0.0
                continue
            detections = np.repeat(cat["starts"][positions] - (ends - lengths), lengths) + np.arange(nd)
            order = np.argsort(-cat["scores"][detections], kind="mergesort")
            detections = detections[order]
            tp = np.cumsum(cat["tps"][:, detections], axis=1).astype(float)
            fp = np.cumsum(cat["fps"][:, detections], axis=1).astype(float)
            rc = tp / npig
            pr = tp / (fp + tp + np.spacing(1))
            recall[:, k, 0, 0] = rc[:, -1]
            pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # the envelope: best precision to the right
            for t in range(n_t):
                at = np.searchsorted(rc[t], self._recall_thresholds, side="left")
                precision[t, :, k, 0, 0] = np.where(at < nd, pr[t, np.minimum(at, nd - 1)], 0.0)
        return {"precision": precision, "recall": recall}


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
        ious = segm.iou_thresholds
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
