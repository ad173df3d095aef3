"""The common in-memory representation every dataset parser produces for conversion."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

T = TypeVar("T")


class DataError(ValueError):
    """One bad input item (an image or an annotation): names the file and what is wrong with it."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


def guarded(items: Iterable[T], load: Callable[[T], InstanceRecord], on_error: str,
            skipped: list[dict[str, str]]) -> Iterator[InstanceRecord]:
    """``load`` each item; a :class:`DataError` stops the conversion (``on_error = stop``) or is
    recorded in ``skipped`` as {path, reason} and the item left out (``skip``)."""
    for item in items:
        try:
            yield load(item)
        except DataError as exc:
            if on_error != "skip":
                raise
            skipped.append({"path": exc.path, "reason": exc.reason})


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
