"""The embedded synthetic dataset: coloured shapes on a textured background.

Every image is a pure function of (seed, split, index), so a split can be regenerated, in
any order or in parallel, bit for bit. Objects are painted one after another; later ones hide
earlier ones, so each visible mask is what remains of an object after the later paints. Objects
with fewer than ``min_visible_pixels`` visible pixels (fully hidden ones included) are dropped.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from rsis.config import ShapesConfig
from rsis.datasets.record import InstanceRecord

SPLIT_IDS = {"train": 0, "val": 1, "test": 2}


def generate_split(cfg: ShapesConfig, seed: int, split: str) -> Iterator[InstanceRecord]:
    """Yield the records of one split, ``getattr(cfg, split)`` of them."""
    count = getattr(cfg, split)
    for index in range(count):
        yield generate_image(cfg, seed, split, index)


def generate_image(cfg: ShapesConfig, seed: int, split: str, index: int) -> InstanceRecord:
    """One image with its visible instance masks, deterministic in its arguments."""
    rng = np.random.default_rng([seed, SPLIT_IDS[split], index])
    size = cfg.image_size
    image = _background(rng, size, cfg.noise)  # [H, W, 3] float in [0, 1]
    owner = np.full((size, size), -1, dtype=np.int64)  # index of the object painted last at each pixel

    n_objects = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    labels = []
    for k in range(n_objects):
        class_index = int(rng.integers(len(cfg.classes)))
        shape = _draw_shape(rng, cfg.classes[class_index], size, cfg.min_object_size, cfg.max_object_size)
        colour = _object_colour(rng)
        shade = 1.0 + rng.normal(0.0, 0.04, size=(size, size, 1))  # mild texture inside objects
        image[shape] = np.clip(colour * shade[shape], 0.0, 1.0)
        owner[shape] = k
        labels.append(class_index + 1)  # category ids start at 1; 0 is <eos>/background

    masks, kept_labels = [], []
    for k, label in enumerate(labels):
        visible = owner == k
        if visible.sum() >= cfg.min_visible_pixels:
            masks.append(visible)
            kept_labels.append(label)
    mask_array = np.stack(masks) if masks else np.zeros((0, size, size), dtype=bool)
    return InstanceRecord(
        name=f"{split}_{index:06d}",
        image=(image * 255.0 + 0.5).astype(np.uint8),
        masks=mask_array,
        labels=np.asarray(kept_labels, dtype=np.int64),
        ignore=np.zeros((size, size), dtype=bool),
    )


def _background(rng: np.random.Generator, size: int, noise: float) -> np.ndarray:
    """A smooth random colour gradient plus low-frequency blotches and pixel noise."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = rng.uniform(0.25, 0.75, size=3)
    slope = rng.uniform(-0.25, 0.25, size=(2, 3))
    image = base + xx[..., None] * slope[0] + yy[..., None] * slope[1]
    coarse = rng.normal(0.0, 0.08, size=(size // 16 + 1, size // 16 + 1, 3))
    image = image + np.kron(coarse, np.ones((16, 16, 1)))[:size, :size]
    image = image + rng.normal(0.0, noise, size=(size, size, 3))
    return np.clip(image, 0.0, 1.0)


def _object_colour(rng: np.random.Generator) -> np.ndarray:
    """A saturated colour: one channel high, one low, one anywhere."""
    channels = rng.permutation(3)
    colour = np.empty(3)
    colour[channels[0]] = rng.uniform(0.75, 1.0)
    colour[channels[1]] = rng.uniform(0.0, 0.25)
    colour[channels[2]] = rng.uniform(0.0, 1.0)
    return colour


def _draw_shape(rng: np.random.Generator, kind: str, size: int, min_size: int, max_size: int) -> np.ndarray:
    """Boolean [H, W] mask of one shape of side ``s`` centred anywhere in the image."""
    s = float(rng.uniform(min_size, max_size))
    cx, cy = rng.uniform(s / 4, size - s / 4, size=2)  # may be partly cut by the border
    angle = float(rng.uniform(0, 2 * np.pi))
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    dx, dy = xx - cx, yy - cy
    r = s / 2
    if kind == "disc":
        return dx**2 + dy**2 <= r**2
    if kind == "ring":
        d2 = dx**2 + dy**2
        return (d2 <= r**2) & (d2 >= (0.55 * r) ** 2)
    if kind == "square":
        u = dx * np.cos(angle) + dy * np.sin(angle)
        v = -dx * np.sin(angle) + dy * np.cos(angle)
        half = r / np.sqrt(2) * 1.15
        return (np.abs(u) <= half) & (np.abs(v) <= half)
    if kind == "triangle":
        inside = np.ones((size, size), dtype=bool)
        for j in range(3):  # an equilateral triangle is 3 half-planes at distance r/2 from its centre
            a = angle + j * 2 * np.pi / 3
            inside &= dx * np.cos(a) + dy * np.sin(a) <= r / 2 * 1.2
        return inside
    raise ValueError(f"unknown shape class {kind!r}")
