"""A synthetic stand-in for the CVPPP leaf benchmark: one class, 5–20 elongated leaves arranged
around a plant centre, touching and overlapping near it, on a noisy soil-coloured background.

Like ``shapes``, every image is a pure function of (seed, split, index). Leaves are painted from
the first to the last (later ones hide earlier ones near the centre, as younger leaves do); the
visible part is the mask; leaves hidden below ``min_visible_pixels`` are dropped.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from rsis.config import LeavesConfig
from rsis.datasets.record import InstanceRecord
from rsis.datasets.shapes import SPLIT_IDS

CLASSES = ("leaf",)


def generate_split(cfg: LeavesConfig, seed: int, split: str) -> Iterator[InstanceRecord]:
    for index in range(getattr(cfg, split)):
        yield generate_image(cfg, seed, split, index)


def leaf_mask(size: int, cx: float, cy: float, angle: float, length: float, width: float) -> np.ndarray:
    """A pointed leaf: the lens between two circular arcs, from (cx, cy) outwards along ``angle``."""
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)  # along the leaf, 0 at the stalk
    v = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
    t = u / length
    half_width = width / 2 * np.sqrt(np.clip(1 - (2 * t - 1) ** 2, 0, None))  # widest in the middle
    return (t >= 0) & (t <= 1) & (np.abs(v) <= half_width)


def generate_image(cfg: LeavesConfig, seed: int, split: str, index: int) -> InstanceRecord:
    rng = np.random.default_rng([seed, SPLIT_IDS[split], index, 7])
    size = cfg.image_size
    soil = rng.uniform([0.25, 0.18, 0.10], [0.45, 0.32, 0.20])
    image = soil + rng.normal(0.0, cfg.noise, size=(size, size, 3))
    cx, cy = rng.uniform(0.4, 0.6, size=2) * size
    n = int(rng.integers(cfg.min_leaves, cfg.max_leaves + 1))
    start = rng.uniform(0, 2 * np.pi)
    owner = np.full((size, size), -1, dtype=np.int64)
    for k in range(n):  # a rosette: evenly spread angles with jitter, older leaves longer
        angle = start + 2 * np.pi * k * 0.382 + rng.normal(0, 0.15)  # golden-angle phyllotaxis
        length = size * rng.uniform(cfg.min_length, cfg.max_length) * (1.0 - 0.4 * k / max(n - 1, 1))
        mask = leaf_mask(size, cx, cy, angle, length, length * cfg.width_ratio * rng.uniform(0.8, 1.2))
        green = np.array([rng.uniform(0.15, 0.4), rng.uniform(0.5, 0.85), rng.uniform(0.1, 0.3)])
        shade = 1.0 + rng.normal(0.0, 0.05, size=(size, size, 1))
        image[mask] = green * shade[mask]
        owner[mask] = k
    masks = [owner == k for k in range(n) if (owner == k).sum() >= cfg.min_visible_pixels]
    mask_array = np.stack(masks) if masks else np.zeros((0, size, size), dtype=bool)
    return InstanceRecord(name=f"{split}_{index:06d}", image=(np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8),
                          masks=mask_array, labels=np.ones(len(masks), dtype=np.int64),
                          ignore=np.zeros((size, size), dtype=bool))
