"""The project's one converted format: per split, a folder of PNG images and a COCO-style
instances JSON (``<root>/<split>.json``) with RLE masks, categories and iscrowd ignore regions.

Layout::

    <root>/<split>.json          images, annotations (RLE, iscrowd), categories
    <root>/<split>/<name>.png    RGB images

Instances are stored as annotations with ``iscrowd: 0``; pixels to be ignored (void) are one
annotation per image with ``iscrowd: 1`` and ``category_id`` of the first category, which
pycocotools' evaluation also treats as "ignore".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
from tqdm import tqdm

from rsis.datasets.record import InstanceRecord
from rsis.files import write_json

CHALLENGE = "challenge"  # a split of unlabelled test images (CVPPP): predicted and written for submission only


def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    """RLE of a boolean [H, W] mask, JSON-serialisable (counts as str)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def decode_mask(rle: dict[str, Any]) -> np.ndarray:
    """Boolean [H, W] mask from an RLE (str or bytes counts)."""
    return mask_utils.decode(rle).astype(bool)


def write_split(records: Iterable[InstanceRecord], root: Path, split: str, categories: Sequence[str],
                total: int | None = None) -> dict[str, int]:
    """Write one split's images and instances JSON under ``root``. Returns counts: images,
    instances, images without instances and the instance count of every image (in id order)."""
    image_dir = root / split
    image_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for image_id, record in enumerate(tqdm(records, total=total, desc=f"convert {split}", unit="img", disable=None), start=1):
        file_name = f"{split}/{record.name}.png"
        Image.fromarray(record.image).save(root / file_name)
        h, w = record.image.shape[:2]
        images.append({"id": image_id, "file_name": file_name, "height": h, "width": w})
        for mask, label in zip(record.masks, record.labels):
            annotations.append(_annotation(len(annotations) + 1, image_id, int(label), mask, iscrowd=0))
        if record.ignore.any():
            annotations.append(_annotation(len(annotations) + 1, image_id, 1, record.ignore, iscrowd=1))
    coco = {
        "info": {"description": f"rsis converted split {split}"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": name} for i, name in enumerate(categories, start=1)],
    }
    write_json(root / f"{split}.json", coco)
    per_image = np.bincount([a["image_id"] for a in annotations if not a["iscrowd"]], minlength=len(images) + 1)[1:]
    return {"images": len(images), "instances": int(per_image.sum()),
            "without_instances": int((per_image == 0).sum()), "instances_per_image": per_image.tolist()}


def _annotation(ann_id: int, image_id: int, category_id: int, mask: np.ndarray, iscrowd: int) -> dict[str, Any]:
    rle = encode_mask(mask)
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "segmentation": rle,
        "area": float(mask_utils.area(mask_utils.encode(np.asfortranarray(mask.astype(np.uint8))))),
        "bbox": [float(v) for v in mask_utils.toBbox(rle)],
        "iscrowd": iscrowd,
    }


def annotation_file(root: str | Path, split: str) -> Path:
    """Path of a split's instances JSON, with a clear error if the split was never converted."""
    path = Path(root) / f"{split}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run the convert stage (dvc repro convert) first")
    return path
