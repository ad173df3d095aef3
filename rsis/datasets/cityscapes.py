"""Cityscapes fine annotations, instance level: 8 classes (person, rider, car, truck, bus, train,
motorcycle, bicycle; label ids 24, 25, 26, 27, 28, 31, 32, 33).

Raw layout (the two archives, each unpacked into its own folder under the raw folder)::

    cityscapes-gt/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_instanceIds.png   16-bit
    cityscapes-img/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png

In instanceIds a pixel of an instance holds ``label_id * 1000 + k``; values below 1000 are plain
label ids, which for the 8 classes mark *groups* (e.g. a crowd of people): those pixels become
the ignore region. Splits: the official test labels are hidden, so the local test split is the
official val (500 images) and ``val_count`` images of the official train (shuffled with the
seed) are held out for validation.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from rsis.datasets.record import InstanceRecord

CLASSES = ("person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")
LABEL_IDS = (24, 25, 26, 27, 28, 31, 32, 33)
GT_DIR, IMG_DIR = Path("cityscapes-gt/gtFine"), Path("cityscapes-img/leftImg8bit")
GT_SUFFIX, IMG_SUFFIX = "_gtFine_instanceIds.png", "_leftImg8bit.png"
PACKAGES = ("gtFine_trainvaltest.zip", "leftImg8bit_trainvaltest.zip")


def gt_file(raw: Path, official_split: str, name: str) -> Path:
    return raw / GT_DIR / official_split / name.split("_")[0] / f"{name}{GT_SUFFIX}"


def _names(raw: Path, official_split: str) -> list[str]:
    folder = raw / GT_DIR / official_split
    names = sorted(p.name.removesuffix(GT_SUFFIX) for p in folder.glob(f"*/*{GT_SUFFIX}"))
    if not names:
        raise FileNotFoundError(f"no *{GT_SUFFIX} files under {folder}: is {PACKAGES[0]} unpacked into "
                                f"{raw / GT_DIR.parent}?")
    return names


def split_names(raw: Path, seed: int, val_count: int) -> dict[str, list[tuple[str, str]]]:
    """Per local split, (official split, image name) pairs."""
    train = _names(raw, "train")
    if not 0 < val_count < len(train):
        raise ValueError(f"data.cityscapes.val_count = {val_count} but {raw / GT_DIR / 'train'} has {len(train)} images")
    order = np.asarray(train)[np.random.default_rng(seed).permutation(len(train))]
    held = set(order[:val_count].tolist())
    return {"train": [("train", n) for n in train if n not in held], "val": [("train", n) for n in sorted(held)],
            "test": [("val", n) for n in _names(raw, "val")]}


def instances(ids: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(masks [N, H, W], labels [N] in 1..8, ignore [H, W]) from an instanceIds array."""
    if ids.ndim != 2:
        raise ValueError(f"{where}: instanceIds must be a single-channel 16-bit image, got shape {ids.shape}")
    masks, labels = [], []
    for value in np.unique(ids[ids >= 1000]).tolist():
        label_id = value // 1000
        if label_id in LABEL_IDS:
            masks.append(ids == value)
            labels.append(LABEL_IDS.index(label_id) + 1)
    ignore = np.isin(ids, LABEL_IDS)  # group regions of the instance classes
    mask_array = np.stack(masks) if masks else np.zeros((0, *ids.shape), bool)
    return mask_array, np.asarray(labels, dtype=np.int64), ignore


def load_records(raw: Path, items: list[tuple[str, str]]) -> Iterator[InstanceRecord]:
    for official_split, name in items:
        gt_path = gt_file(raw, official_split, name)
        image_path = raw / IMG_DIR / official_split / name.split("_")[0] / f"{name}{IMG_SUFFIX}"
        if not image_path.is_file():
            raise FileNotFoundError(f"{image_path} not found (the image of {gt_path}): is {PACKAGES[1]} unpacked "
                                    f"into {raw / IMG_DIR.parent}?")
        with Image.open(gt_path) as im:
            ids = np.asarray(im).astype(np.int64)
        with Image.open(image_path) as im:
            image = np.asarray(im.convert("RGB"))
        if image.shape[:2] != ids.shape:
            raise ValueError(f"{gt_path} is {ids.shape} but its image {image_path} is {image.shape[:2]}")
        masks, labels, ignore = instances(ids, str(gt_path))
        yield InstanceRecord(name=name, image=image, masks=masks, labels=labels, ignore=ignore)
