"""The CVPPP leaf segmentation metrics, implemented from the challenge's definitions (its official
code is MATLAB): per image, on instance label maps (0 = background, k = instance k).

* Dice(a, b) = 2 |a ∩ b| / (|a| + |b|)
* BestDice(A, B) = mean over the labels a of A of max over the labels b of B of Dice(a, b)
  (0 when A has no label and B has; 1 when neither has)
* SBD (symmetric best Dice) = min(BestDice(pred, gt), BestDice(gt, pred)), higher is better
* DiC = #labels(pred) - #labels(gt); |DiC| its absolute value, lower is better
* FBD (foreground-background Dice) = Dice(pred > 0, gt > 0)

Reported as mean and standard deviation over images, as the challenge does; the standard
deviation divides by N - 1, as the official kit's MATLAB ``std`` does. Differences from the kit,
which take effect only on unusual maps: the kit takes each map's lowest value as background (here
0 is; CVPPP's ground truth and our maps both use 0); it scores a constant map SBD 0 and foreground
Dice 0/0, where an empty prediction of an empty plant scores 1 here; and its summary prints percent
where these are fractions.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def label_map(masks: Sequence[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Paint masks into one uint16 label map with consecutive labels 1..N in order; a pixel
    claimed twice keeps the first (earlier decoder steps win, as the sequence is emitted), and a
    mask wholly covered by earlier ones gets no label. The official CVPPP evaluation loops over
    every id from min to max, so a gap (ids 1, 2, 4) would count as an empty leaf."""
    out = np.zeros(shape, dtype=np.uint16)
    label = 0
    for mask in masks:
        visible = (out == 0) & mask
        if visible.any():
            label += 1
            out[visible] = label
    return out


def save_label_map(labels: np.ndarray, path: str | Path) -> None:
    """A label map as the CVPPP submission format wants it: an 8-bit PNG, 16-bit past 255 labels."""
    Image.fromarray(labels.astype(np.uint8) if labels.max() < 256 else labels).save(path)


def _dice_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dice between every label of a (rows) and of b (columns), via one joint histogram."""
    la, lb = np.unique(a[a > 0]), np.unique(b[b > 0])
    ia, ib = np.searchsorted(la, a), np.searchsorted(lb, b)
    joint = np.zeros((len(la) + 1, len(lb) + 1), dtype=np.int64)
    fa, fb = (a > 0).ravel(), (b > 0).ravel()
    np.add.at(joint, (np.where(fa, ia.ravel() + 1, 0), np.where(fb, ib.ravel() + 1, 0)), 1)
    inter = joint[1:, 1:]
    size_a, size_b = joint[1:, :].sum(1), joint[:, 1:].sum(0)
    return 2.0 * inter / np.maximum(size_a[:, None] + size_b[None, :], 1)


def best_dice(a: np.ndarray, b: np.ndarray) -> float:
    """BestDice(A, B) for label maps of the same shape."""
    dice = _dice_matrix(a, b)
    if dice.shape[0] == 0:
        return 1.0 if dice.shape[1] == 0 else 0.0
    if dice.shape[1] == 0:
        return 0.0
    return float(dice.max(axis=1).mean())


def image_scores(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    if pred.shape != gt.shape:
        raise ValueError(f"prediction is {pred.shape} but the ground truth is {gt.shape}")
    fg_p, fg_g = pred > 0, gt > 0
    fbd = 1.0 if not fg_p.any() and not fg_g.any() else 2.0 * (fg_p & fg_g).sum() / (fg_p.sum() + fg_g.sum())
    dic = len(np.unique(pred[fg_p])) - len(np.unique(gt[fg_g]))
    return {"SBD": min(best_dice(pred, gt), best_dice(gt, pred)), "DiC": float(dic), "absDiC": float(abs(dic)),
            "FBD": float(fbd)}


def summarize(per_image: Sequence[dict[str, float]]) -> dict[str, float]:
    """{metric}_mean and {metric}_std (sample standard deviation, N - 1) over images."""
    out = {}
    for key in ("SBD", "DiC", "absDiC", "FBD"):
        values = np.array([s[key] for s in per_image], dtype=float)
        out[f"{key}_mean"] = float(values.mean()) if len(values) else 0.0
        out[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0  # N - 1, as the kit
    return out
