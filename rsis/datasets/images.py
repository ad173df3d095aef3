"""Reading an image file into the [H, W, 3] uint8 RGB array every parser and the predict command use.

8-bit images (grey, palette, RGB, RGBA, ...) are converted to RGB as they are. Images with more
than 8 bits per sample (16-bit grey PNG or TIFF, as microscopes write, 32-bit integer or float
grey) are scaled to 0..255 by the rule ``data.high_bit_depth`` names:

- ``range``: by the type's full range, value * 255 / 65535 for 16-bit (the same mapping for every
  image, so intensities stay comparable across images);
- ``minmax``: each image's own minimum..maximum to 0..255 (a dim 16-bit image that spans 0..23,500
  keeps all its contrast; intensities are no longer comparable across images). Float images need it.

Pillow converts such images to RGB by clipping at 255, which turns a 0..23,500 image into two
grey levels: never used here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from rsis.datasets.record import DataError

HIGH_BIT_DEPTH_RULES = ("range", "minmax")
_FULL_RANGE = {"I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I;16N": 65535}


def read_rgb(path: str | Path, high_bit_depth: str = "range") -> np.ndarray:
    """[H, W, 3] uint8 RGB of an image file; a missing, unreadable or unsupported file raises
    :class:`DataError` naming it."""
    path = Path(path)
    if high_bit_depth not in HIGH_BIT_DEPTH_RULES:
        raise ValueError(f"data.high_bit_depth = {high_bit_depth!r}: expected one of {list(HIGH_BIT_DEPTH_RULES)}")
    if not path.is_file():
        raise DataError(path, "image file missing")
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in _FULL_RANGE or im.mode in ("I", "F"):
                return _scaled(path, np.asarray(im), im.mode, high_bit_depth)
            return np.array(im.convert("RGB"))  # a writable copy
    except DataError:
        raise
    except (OSError, SyntaxError, ValueError) as exc:  # PIL: unidentified, truncated, corrupt or unsupported
        raise DataError(path, f"unreadable image ({type(exc).__name__}: {exc})") from None


def _scaled(path: Path, values: np.ndarray, mode: str, rule: str) -> np.ndarray:
    values = values.astype(np.float64)
    if not np.isfinite(values).all():
        raise DataError(path, f"{mode} image holds NaN or infinite values")
    if rule == "minmax":
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    else:
        full = _FULL_RANGE.get(mode)
        if full is None and mode == "I" and values.min() >= 0 and values.max() <= 65535:
            full = 65535  # Pillow reads some 16-bit PNGs as 32-bit integer mode "I"
        if full is None:
            raise DataError(path, f"mode {mode} image with values {values.min():g}..{values.max():g} has no fixed "
                                  f"range to scale by: set data.high_bit_depth: minmax (each image's min..max)")
        scaled = values * (255.0 / full)
    grey = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)
