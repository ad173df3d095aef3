"""A user's own COCO export as a researcher would bring it: 16-bit grey microscopy-like images (PNG
and TIFF), more objects than the decoder's steps in some images, a split annotated with RLE only,
and one malformed annotation (an odd-length polygon) in the train split.

    python tests/coco_fixture.py DIR     # writes DIR/{train,val,test}.json and DIR/{train,val,test}/
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

SIDE = 48
CATEGORIES = [{"id": 4, "name": "nucleus"}, {"id": 9, "name": "debris"}]
BAD_ANNOTATION_ID = 999_999
SPLIT_SIZES = {"train": 24, "val": 6, "test": 6}


def _encode(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}


def _image(rng: np.random.Generator, n: int) -> tuple[np.ndarray, list[tuple[np.ndarray, list[float], int]]]:
    """A dim 16-bit image (background ~2,000, objects up to ~23,500) and n non-overlapping objects:
    squares (nucleus) or small discs (debris) on a 4x3 grid of cells."""
    values = rng.normal(2000, 300, (SIDE, SIDE)).clip(0, None)
    cells = rng.permutation(12)[:n]
    objects = []
    yy, xx = np.mgrid[:SIDE, :SIDE]
    for cell in cells:
        cy, cx = 6 + 12 * (cell // 4), 6 + 12 * (cell % 4)
        cy, cx = cy + int(rng.integers(-1, 2)), cx + int(rng.integers(-1, 2))
        if rng.random() < 0.6:
            r = int(rng.integers(3, 5))
            mask = (abs(yy - cy) <= r) & (abs(xx - cx) <= r)
            polygon = [cx - r, cy - r, cx + r + 1, cy - r, cx + r + 1, cy + r + 1, cx - r, cy + r + 1]
            category = 4
        else:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= 9
            polygon = []
            category = 9
        values[mask] = rng.uniform(15_000, 23_500)
        objects.append((mask, [float(v) for v in polygon], category))
    return values.astype(np.uint16), objects


def write(root: str | Path) -> dict[str, dict[str, str]]:
    """Write the fixture under ``root``; returns params ``data.coco`` pointing at it."""
    root = Path(root)
    rng = np.random.default_rng(7)
    params = {}
    ann_id = 1
    for split, count in SPLIT_SIZES.items():
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for k in range(count):
            n = 12 if k % 4 == 0 else int(rng.integers(1, 5))  # every 4th image: more than T = 10 (default)
            values, objects = _image(rng, n)
            name = f"cell_{k:03d}.{'tif' if k % 3 == 0 else 'png'}"
            Image.fromarray(values).save(folder / name)
            images.append({"id": k + 1, "file_name": name, "height": SIDE, "width": SIDE})
            for mask, polygon, category in objects:
                # val: RLE only (no polygon anywhere); elsewhere polygons for squares, RLE for discs
                segmentation = polygon and split != "val" and [polygon] or _encode(mask)
                x0, y0 = np.argwhere(mask).min(0)[::-1]
                x1, y1 = np.argwhere(mask).max(0)[::-1] + 1
                annotations.append({"id": ann_id, "image_id": k + 1, "category_id": category, "iscrowd": 0,
                                    "area": float(mask.sum()), "bbox": [float(x0), float(y0), float(x1 - x0),
                                                                        float(y1 - y0)],
                                    "segmentation": segmentation})
                ann_id += 1
        if split == "train":  # a malformed polygon on the first image: 5 numbers
            annotations.append({"id": BAD_ANNOTATION_ID, "image_id": 1, "category_id": 4, "iscrowd": 0,
                                "area": 4.0, "bbox": [1, 1, 2, 2], "segmentation": [[1, 1, 3, 1, 3]]})
        doc = {"images": images, "annotations": annotations, "categories": CATEGORIES}
        (root / f"{split}.json").write_text(json.dumps(doc))
        params[split] = {"json": str(root / f"{split}.json"), "images": str(folder)}
    return params


if __name__ == "__main__":
    print(json.dumps(write(sys.argv[1]), indent=2))
