"""A user's own dataset: a COCO-format instances JSON (polygons or RLE, iscrowd regions) and its
image folder, per split.

Categories are renumbered 1..C in the order of their COCO ids (names kept); every split must list
the same categories. Crowd annotations become the ignore region. Images are read from
``<images>/<file_name>``; annotations that do not fit their image are reported with the file.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools.coco import COCO

from rsis.datasets.record import InstanceRecord


def load(json_path: str | Path) -> COCO:
    json_path = Path(json_path)
    if not json_path.is_file():
        raise FileNotFoundError(f"COCO annotation file {json_path} not found")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return COCO(str(json_path))
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{json_path} is not a COCO instances JSON ({type(exc).__name__}: {exc})") from None


def category_names(coco: COCO) -> tuple[str, ...]:
    return tuple(c["name"] for c in sorted(coco.loadCats(coco.getCatIds()), key=lambda c: c["id"]))


def load_records(coco: COCO, json_path: str | Path, images: str | Path) -> Iterator[InstanceRecord]:
    images = Path(images)
    index = {cat_id: k for k, cat_id in enumerate(sorted(coco.getCatIds()), start=1)}
    for image_id in sorted(coco.getImgIds()):
        info = coco.loadImgs([image_id])[0]
        path = images / info["file_name"]
        if not path.is_file():
            raise FileNotFoundError(f"{json_path}: image {info['file_name']} (id {image_id}) not found in {images}")
        with Image.open(path) as im:
            image = np.asarray(im.convert("RGB"))
        h, w = image.shape[:2]
        if (info.get("height", h), info.get("width", w)) != (h, w):
            raise ValueError(f"{json_path}: image id {image_id} is declared {info['height']}x{info['width']} but "
                             f"{path} is {h}x{w}")
        masks, labels, ignore = [], [], np.zeros((h, w), bool)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=[image_id])):
            if ann["category_id"] not in index:
                raise ValueError(f"{json_path}: annotation {ann.get('id')} has category_id {ann['category_id']}, "
                                 f"not among the categories {sorted(index)}")
            mask = coco.annToMask(ann).astype(bool)
            if mask.shape != (h, w):
                raise ValueError(f"{json_path}: annotation {ann.get('id')} is {mask.shape}, its image {path} {(h, w)}")
            if ann.get("iscrowd", 0):
                ignore |= mask
            elif mask.any():
                masks.append(mask)
                labels.append(index[ann["category_id"]])
        yield InstanceRecord(name=f"{image_id:012d}_{Path(info['file_name']).stem}", image=image,
                             masks=np.stack(masks) if masks else np.zeros((0, h, w), bool),
                             labels=np.asarray(labels, dtype=np.int64), ignore=ignore)
