"""A user's own dataset: a COCO-format instances JSON (polygons or RLE, iscrowd regions) and its
image folder, per split.

Categories are renumbered 1..C in the order of their COCO ids (names kept); every split must list
the same categories. Crowd annotations become the ignore region. Images are read from
``<images>/<file_name>``; annotations that do not fit their image are reported with the file.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools.coco import COCO

from rsis.datasets.record import DataError, InstanceRecord, guarded

REQUIRED_LISTS = ("images", "annotations", "categories")


def load(json_path: str | Path) -> COCO:
    """Read and index a COCO instances JSON; a file that is not one raises DataError naming it."""
    json_path = Path(json_path)
    if not json_path.is_file():
        raise FileNotFoundError(f"COCO annotation file {json_path} not found")
    try:
        doc = json.loads(json_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(json_path, f"not a COCO instances JSON (invalid JSON: {exc})") from None
    if not isinstance(doc, dict) or not all(isinstance(doc.get(key), list) for key in REQUIRED_LISTS):
        found = sorted(doc) if isinstance(doc, dict) else type(doc).__name__
        raise DataError(json_path, f"not a COCO instances JSON (expected an object with lists {list(REQUIRED_LISTS)}, "
                                   f"found {found})")
    coco = COCO()
    coco.dataset = doc
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
    except (KeyError, TypeError, AttributeError) as exc:  # entries without their ids
        raise DataError(json_path, f"not a COCO instances JSON ({type(exc).__name__}: {exc})") from None
    return coco


def category_names(coco: COCO) -> tuple[str, ...]:
    return tuple(c["name"] for c in sorted(coco.loadCats(coco.getCatIds()), key=lambda c: c["id"]))


def load_records(coco: COCO, json_path: str | Path, images: str | Path, on_error: str = "stop",
                 skipped: list[dict[str, str]] | None = None) -> Iterator[InstanceRecord]:
    """One record per image, in id order. A bad image or annotation (missing or unreadable file,
    size differing from the declared one, a mask of another size, an unknown category) raises
    :class:`DataError` naming the file, or with ``on_error = skip`` is listed in ``skipped``."""
    index = {cat_id: k for k, cat_id in enumerate(sorted(coco.getCatIds()), start=1)}
    skipped = [] if skipped is None else skipped
    return guarded(sorted(coco.getImgIds()), lambda image_id: _record(coco, image_id, Path(json_path), Path(images), index),
                   on_error, skipped)


def _record(coco: COCO, image_id: int, json_path: Path, images: Path, index: dict[int, int]) -> InstanceRecord:
    info = coco.loadImgs([image_id])[0]
    path = images / info["file_name"]
    if not path.is_file():
        raise DataError(path, f"image file missing (image id {image_id} in {json_path})")
    try:
        with Image.open(path) as im:
            image = np.asarray(im.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as exc:  # PIL: unidentified, truncated or corrupt files
        raise DataError(path, f"unreadable image ({type(exc).__name__}: {exc})") from None
    h, w = image.shape[:2]
    if (info.get("height", h), info.get("width", w)) != (h, w):
        raise DataError(path, f"is {h}x{w} but image id {image_id} in {json_path} declares "
                              f"{info['height']}x{info['width']}")
    masks, labels, ignore = [], [], np.zeros((h, w), bool)
    for ann in coco.loadAnns(coco.getAnnIds(imgIds=[image_id])):
        where = f"annotation {ann.get('id')} of {path.name} in {json_path}"
        if ann.get("category_id") not in index:
            raise DataError(path, f"{where} has category_id {ann.get('category_id')}, not among the categories "
                                  f"{sorted(index)}")
        try:
            mask = coco.annToMask(ann).astype(bool)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise DataError(path, f"{where} has an unreadable segmentation ({type(exc).__name__}: {exc})") from None
        if mask.shape != (h, w):
            raise DataError(path, f"{where} is a {mask.shape[0]}x{mask.shape[1]} mask on a {h}x{w} image")
        if ann.get("iscrowd", 0):
            ignore |= mask
        elif mask.any():
            masks.append(mask)
            labels.append(index[ann["category_id"]])
    return InstanceRecord(name=f"{image_id:012d}_{Path(info['file_name']).stem}", image=image,
                          masks=np.stack(masks) if masks else np.zeros((0, h, w), bool),
                          labels=np.asarray(labels, dtype=np.int64), ignore=ignore)
