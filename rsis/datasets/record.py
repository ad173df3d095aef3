"""The common in-memory representation every dataset parser produces for conversion."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class InstanceRecord:
    """One image and its instances, before conversion to the project's COCO-style format.

    image:  [H, W, 3] uint8 RGB
    masks:  [N, H, W] bool, one visible mask per instance (N may be 0)
    labels: [N] int64 category ids, 1..C (0 is reserved for <eos>/background)
    ignore: [H, W] bool, pixels that count neither as object nor as background (e.g. void)
    """

    name: str
    image: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    ignore: np.ndarray

    def __post_init__(self) -> None:
        h, w = self.image.shape[:2]
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise ValueError(f"{self.name}: image must be [H, W, 3] uint8, got {self.image.shape} {self.image.dtype}")
        if self.masks.ndim != 3 or self.masks.shape[1:] != (h, w):
            raise ValueError(f"{self.name}: masks must be [N, {h}, {w}], got {self.masks.shape}")
        if self.labels.shape != (self.masks.shape[0],):
            raise ValueError(f"{self.name}: {self.labels.shape[0]} labels for {self.masks.shape[0]} masks")
        if self.ignore.shape != (h, w):
            raise ValueError(f"{self.name}: ignore must be [{h}, {w}], got {self.ignore.shape}")
