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
from typing import Any

import numpy as np
from pycocotools.coco import COCO

from rsis.datasets.images import read_rgb
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
                 skipped: list[dict[str, Any]] | None = None, high_bit_depth: str = "range"
                 ) -> Iterator[InstanceRecord]:
    """One record per image, in id order. A bad image (missing or unreadable file, size differing
    from the declared one) raises :class:`DataError` naming the file, or with ``on_error = skip`` is
    listed in ``skipped`` and left out. A bad annotation (malformed polygon or RLE, a mask of another
    size, an unknown category) raises the same way naming the file and annotation id, or with
    ``skip`` is listed (with its ``annotation_id``) and left out while its image is kept. Annotations
    that rasterise to no pixel are always left out and listed (``"empty": true``)."""
    index = {cat_id: k for k, cat_id in enumerate(sorted(coco.getCatIds()), start=1)}
    skipped = [] if skipped is None else skipped
    return guarded(sorted(coco.getImgIds()),
                   lambda image_id: _record(coco, image_id, Path(json_path), Path(images), index, on_error, skipped,
                                            high_bit_depth),
                   on_error, skipped)


def _record(coco: COCO, image_id: int, json_path: Path, images: Path, index: dict[int, int], on_error: str,
            skipped: list[dict[str, Any]], high_bit_depth: str) -> InstanceRecord:
    info = coco.loadImgs([image_id])[0]
    path = images / info["file_name"]
    if not path.is_file():
        raise DataError(path, f"image file missing (image id {image_id} in {json_path})")
    image = read_rgb(path, high_bit_depth)
    h, w = image.shape[:2]
    if (info.get("height", h), info.get("width", w)) != (h, w):
        raise DataError(path, f"is {h}x{w} but image id {image_id} in {json_path} declares "
                              f"{info['height']}x{info['width']}")
    masks, labels, ignore = [], [], np.zeros((h, w), bool)
    for ann in coco.loadAnns(coco.getAnnIds(imgIds=[image_id])):
        try:
            mask = _annotation_mask(coco, ann, path, json_path, (h, w), index)
        except DataError as exc:
            if on_error != "skip":
                raise
            skipped.append({"path": exc.path, "annotation_id": ann.get("id"), "reason": exc.reason})
            continue
        if not mask.any():
            skipped.append({"path": str(path), "annotation_id": ann.get("id"), "empty": True,
                            "reason": f"annotation {ann.get('id')} rasterises to no pixel on the {h}x{w} image"})
        elif ann.get("iscrowd", 0):
            ignore |= mask
        else:
            masks.append(mask)
            labels.append(index[ann["category_id"]])
    return InstanceRecord(name=f"{image_id:012d}_{Path(info['file_name']).stem}", image=image,
                          masks=np.stack(masks) if masks else np.zeros((0, h, w), bool),
                          labels=np.asarray(labels, dtype=np.int64), ignore=ignore)


def _annotation_mask(coco: COCO, ann: dict[str, Any], path: Path, json_path: Path, size: tuple[int, int],
                     index: dict[int, int]) -> np.ndarray:
    """The [H, W] bool mask of one annotation; anything pycocotools would misread or reject raises
    :class:`DataError` naming the file, the annotation id and what was expected."""
    h, w = size
    where = f"annotation {ann.get('id')} of {path.name} in {json_path}"
    if ann.get("category_id") not in index:
        raise DataError(path, f"{where} has category_id {ann.get('category_id')}, not among the categories "
                              f"{sorted(index)}")
    segm = ann.get("segmentation")
    if isinstance(segm, list):
        if not segm:
            raise DataError(path, f"{where} has an empty polygon list (expected [[x1, y1, x2, y2, x3, y3, ...], ...])")
        for k, polygon in enumerate(segm):
            if (not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in polygon)):
                what = (f"{len(polygon)} numbers" if isinstance(polygon, list) else type(polygon).__name__)
                raise DataError(path, f"{where}: polygon {k} has {what}; expected an even count of at least 6 "
                                      f"numbers (x, y of 3 or more points)")
    elif isinstance(segm, dict):
        if "counts" not in segm or "size" not in segm:
            raise DataError(path, f"{where}: RLE segmentation without 'counts' and 'size' (found keys {sorted(segm)})")
        size_ok = isinstance(segm["size"], (list, tuple)) and len(segm["size"]) == 2
        if not size_ok:
            raise DataError(path, f"{where}: RLE 'size' is {segm['size']!r}; expected [height, width]")
        if list(segm["size"]) != [h, w]:
            raise DataError(path, f"{where} is a {segm['size'][0]}x{segm['size'][1]} mask on a {h}x{w} image")
    else:
        raise DataError(path, f"{where} has segmentation of type {type(segm).__name__}; expected a list of "
                              f"polygons or an RLE object")
    try:
        mask = coco.annToMask(ann).astype(bool)
    except Exception as exc:  # noqa: BLE001 - pycocotools raises bare Exception for unsupported inputs
        raise DataError(path, f"{where} has an unreadable segmentation ({type(exc).__name__}: {exc})") from None
    if mask.shape != (h, w):
        raise DataError(path, f"{where} is a {mask.shape[0]}x{mask.shape[1]} mask on a {h}x{w} image")
    return mask
