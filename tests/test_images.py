"""Reading images: 8-bit as they are, 16-bit (microscopy PNG/TIFF) scaled by a stated rule, never clipped."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from rsis.datasets.images import read_rgb
from rsis.datasets.record import DataError


def _ramp16(path, top=23_500):
    values = np.linspace(0, top, 30 * 40).reshape(30, 40).astype(np.uint16)
    Image.fromarray(values).save(path)
    return values


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_a_dim_16_bit_image_keeps_its_grey_levels(tmp_path, suffix):
    values = _ramp16(tmp_path / f"cells{suffix}")
    full = read_rgb(tmp_path / f"cells{suffix}", "range")
    assert full.shape == (30, 40, 3) and full.dtype == np.uint8
    assert full.max() == round(23_500 * 255 / 65535) and len(np.unique(full)) > 80  # Pillow's convert: 2 levels
    np.testing.assert_array_equal(full[..., 0], np.rint(values * (255 / 65535)).astype(np.uint8))
    stretched = read_rgb(tmp_path / f"cells{suffix}", "minmax")
    assert stretched.min() == 0 and stretched.max() == 255 and len(np.unique(stretched)) > 200


def test_8_bit_images_are_read_unchanged(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (12, 9, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "grey.png")
    np.testing.assert_array_equal(read_rgb(tmp_path / "a.png"), rgb)
    np.testing.assert_array_equal(read_rgb(tmp_path / "grey.png"), np.repeat(rgb[..., :1], 3, axis=2))


def test_a_float_image_needs_minmax_and_says_which_param(tmp_path):
    Image.fromarray(np.linspace(-1, 3, 20).reshape(4, 5).astype(np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(DataError, match=r"f\.tif: mode F image .* set data\.high_bit_depth: minmax"):
        read_rgb(tmp_path / "f.tif", "range")
    out = read_rgb(tmp_path / "f.tif", "minmax")
    assert out.min() == 0 and out.max() == 255


def test_unreadable_and_missing_files_are_named(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"bad\.jpg: unreadable image"):
        read_rgb(tmp_path / "bad.jpg")
    with pytest.raises(DataError, match=r"nope\.png: image file missing"):
        read_rgb(tmp_path / "nope.png")
