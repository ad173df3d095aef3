"""Which order does the model emit objects in? Kendall tau of the predicted order against
right-to-left, bottom-to-top and large-to-small orders (the paper's Table 6).

An object's location is the centre of mass of its predicted mask and its size the pixel count.
For a strategy with key k (larger k first), tau is computed between the predicted positions
0..n-1 and the rank each object has when sorted by k, descending; tau = 1 means the model
follows the strategy exactly, -1 the reverse. Images with fewer than two objects are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import kendalltau

STRATEGIES = ("r2l", "b2t", "l2s")


@dataclass(frozen=True)
class ObjectGeometry:
    x: float  # centre of mass, column (pixels)
    y: float  # centre of mass, row (pixels; grows downwards)
    area: float  # pixel count


def geometry(mask: np.ndarray) -> ObjectGeometry:
    """Centre of mass and size of a boolean [H, W] mask."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        raise ValueError("empty mask has no centre of mass")
    return ObjectGeometry(x=float(xs.mean()), y=float(ys.mean()), area=float(len(xs)))


def strategy_key(objects: list[ObjectGeometry], strategy: str) -> np.ndarray:
    """Per object, the value the strategy sorts by, descending (first = largest key)."""
    if strategy == "r2l":
        return np.array([o.x for o in objects])  # rightmost first
    if strategy == "b2t":
        return np.array([o.y for o in objects])  # bottom-most (largest row) first
    if strategy == "l2s":
        return np.array([o.area for o in objects])  # largest first
    raise ValueError(f"unknown sorting strategy {strategy!r}; expected one of {STRATEGIES}")


def descending_rank(key: np.ndarray) -> np.ndarray:
    """Position of each value when sorted largest first (0 = first); ties share the mean rank."""
    key = -np.asarray(key, dtype=float)
    order = np.argsort(key, kind="stable")
    ranks = np.empty(len(key), dtype=float)
    ranks[order] = np.arange(len(key))
    for value in np.unique(key):  # average ranks of ties, as Kendall's tau-b expects
        tied = key == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def descending_tau(key: np.ndarray) -> float | None:
    """Kendall tau between list order and the order of decreasing ``key``: 1 when the list is
    sorted largest first, -1 when smallest first; None for fewer than two items or all tied."""
    if len(key) < 2:
        return None
    tau = kendalltau(np.arange(len(key)), descending_rank(key)).statistic
    return None if np.isnan(tau) else float(tau)


def sequence_tau(objects: list[ObjectGeometry], strategy: str) -> float | None:
    """Kendall tau between predicted order (list order) and the strategy's order; None if n < 2
    or undefined (all objects tied under the strategy)."""
    return descending_tau(strategy_key(objects, strategy))


def sorting_summary(sequences: list[list[ObjectGeometry]]) -> dict[str, float | None]:
    """Mean and std of tau per strategy over images with at least two objects (None when no image
    qualifies), and how many images counted."""
    summary: dict[str, float | None] = {}
    for strategy in STRATEGIES:
        taus = [t for t in (sequence_tau(s, strategy) for s in sequences) if t is not None]
        summary[f"tau_{strategy}"] = float(np.mean(taus)) if taus else None
        summary[f"tau_{strategy}_std"] = float(np.std(taus)) if taus else None
    summary["images_counted"] = sum(1 for s in sequences if len(s) >= 2)
    return summary


# --------------------------------------------------------------------------- consecutive pairs (Figure 7)

PAIR_RULES = {
    "r2l": "the second object's centre is left of the first's by more than threshold x image width",
    "b2t": "the second object's centre is above the first's by more than threshold x image height",
    "l2s": "the second object is smaller than the first by more than threshold x the first's size",
}


def pair_follows(first: ObjectGeometry, second: ObjectGeometry, strategy: str, width: int, height: int,
                 threshold: float = 0.15) -> bool:
    """Does the consecutive pair (first, second) follow the strategy under the paper's 15% rule
    (``PAIR_RULES``; l2s is our analogue on size)."""
    if strategy == "r2l":
        return first.x - second.x > threshold * width
    if strategy == "b2t":
        return first.y - second.y > threshold * height
    if strategy == "l2s":
        return first.area - second.area > threshold * first.area
    raise ValueError(f"unknown sorting strategy {strategy!r}; expected one of {STRATEGIES}")


def consecutive_pair_shares(sequences: list[tuple[list[ObjectGeometry], list[str], int, int]],
                            threshold: float = 0.15, min_count: int = 20) -> list[dict]:
    """Per (first category, second category) pair seen at least ``min_count`` times among
    consecutive predictions: the count and the share following each strategy. Each sequence is
    (objects in predicted order, their category names, image width, image height)."""
    counts: dict[tuple[str, str], list[int]] = {}
    for objects, names, width, height in sequences:
        for k in range(len(objects) - 1):
            row = counts.setdefault((names[k], names[k + 1]), [0] * (1 + len(STRATEGIES)))
            row[0] += 1
            for j, strategy in enumerate(STRATEGIES, start=1):
                row[j] += pair_follows(objects[k], objects[k + 1], strategy, width, height, threshold)
    return [{"first": a, "second": b, "count": row[0],
             **{strategy: row[j] / row[0] for j, strategy in enumerate(STRATEGIES, start=1)}}
            for (a, b), row in sorted(counts.items()) if row[0] >= min_count]
