"""Pascal VOC 2012 + SBD, merged as the RSIS authors did.

Raw layout (each archive extracted into its own folder under the raw folder)::

    voc/VOCdevkit/VOC2012/JPEGImages/<id>.jpg
    voc/VOCdevkit/VOC2012/SegmentationObject/<id>.png   palette PNG: 0 background, k = instance k, 255 void
    voc/VOCdevkit/VOC2012/SegmentationClass/<id>.png    palette PNG: class index per pixel, 255 void
    voc/VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val}.txt
    sbd/benchmark_RELEASE/dataset/img/<id>.jpg
    sbd/benchmark_RELEASE/dataset/inst/<id>.mat         GTinst.Segmentation (k = instance k), GTinst.Categories
    sbd/benchmark_RELEASE/dataset/{train,val}.txt

Splits: test = VOC 2012 segmentation val; the training pool is VOC seg train ∪ SBD train ∪ SBD
val minus VOC seg val, sorted and shuffled with the seed, then cut 90/10 into train/val. Where an
image has both annotations the VOC one wins; VOC void pixels (255 in SegmentationObject or in
SegmentationClass) become the ignore region. An
instance's class is the most frequent class of its pixels in SegmentationClass (VOC) or its entry
in GTinst.Categories (SBD).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from rsis.datasets.record import InstanceRecord

CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
           "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")
VOID = 255
VOC_DIR = Path("voc/VOCdevkit/VOC2012")  # VOCtrainval_11-May-2012.tar extracted into <raw>/voc
SBD_DIR = Path("sbd/benchmark_RELEASE/dataset")  # benchmark.tgz extracted into <raw>/sbd


def _read_ids(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is the raw folder an extracted VOC 2012 / SBD archive?")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def split_ids(raw: Path, seed: int, val_fraction: float = 0.1) -> dict[str, list[str]]:
    """{'train', 'val', 'test'} -> image ids, reproducible from the seed."""
    voc_train = _read_ids(raw / VOC_DIR / "ImageSets/Segmentation/train.txt")
    voc_val = _read_ids(raw / VOC_DIR / "ImageSets/Segmentation/val.txt")
    sbd = _read_ids(raw / SBD_DIR / "train.txt") + _read_ids(raw / SBD_DIR / "val.txt")
    pool = np.array(sorted((set(voc_train) | set(sbd)) - set(voc_val)))
    pool = pool[np.random.default_rng(seed).permutation(len(pool))]
    n_val = int(round(val_fraction * len(pool)))
    return {"train": sorted(pool[n_val:].tolist()), "val": sorted(pool[:n_val].tolist()), "test": sorted(voc_val)}


def _palette_png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        if im.mode != "P" and im.mode != "L":
            raise ValueError(f"{path}: expected a palette (indexed) PNG, got mode {im.mode}")
        return np.asarray(im)


def _image(raw: Path, image_id: str) -> np.ndarray:
    for path in (raw / VOC_DIR / "JPEGImages" / f"{image_id}.jpg", raw / SBD_DIR / "img" / f"{image_id}.jpg"):
        if path.is_file():
            with Image.open(path) as im:
                return np.asarray(im.convert("RGB"))
    raise FileNotFoundError(f"image {image_id}.jpg is in neither {raw / VOC_DIR / 'JPEGImages'} "
                            f"nor {raw / SBD_DIR / 'img'}")


def _voc_instances(raw: Path, image_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    obj_path = raw / VOC_DIR / "SegmentationObject" / f"{image_id}.png"
    if not obj_path.is_file():
        return None
    objects = _palette_png(obj_path)
    classes = _palette_png(raw / VOC_DIR / "SegmentationClass" / f"{image_id}.png")
    if classes.shape != objects.shape:
        raise ValueError(f"{obj_path}: size {objects.shape} differs from its SegmentationClass {classes.shape}")
    masks, labels = [], []
    for k in sorted(set(np.unique(objects).tolist()) - {0, VOID}):
        mask = objects == k
        pixels = classes[mask]
        votes = np.bincount(pixels[(pixels != 0) & (pixels != VOID)], minlength=len(CLASSES) + 1)
        if votes.sum() == 0:
            raise ValueError(f"{obj_path}: instance {k} has no class in SegmentationClass")
        masks.append(mask)
        labels.append(int(votes.argmax()))
    # void: 255 in either file (annotation tools often mark it in SegmentationClass only)
    void = (objects == VOID) | ((classes == VOID) & (objects == 0))
    return _stack(masks, objects.shape), np.asarray(labels, dtype=np.int64), void


def _sbd_instances(raw: Path, image_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    path = raw / SBD_DIR / "inst" / f"{image_id}.mat"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (image {image_id} has no VOC SegmentationObject either)")
    inst = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)["GTinst"]
    segmentation = np.asarray(inst.Segmentation)
    categories = np.atleast_1d(np.asarray(inst.Categories)).astype(np.int64)
    masks, labels = [], []
    for k in range(1, len(categories) + 1):
        mask = segmentation == k
        if mask.any():
            masks.append(mask)
            labels.append(int(categories[k - 1]))
    if any(not 1 <= c <= len(CLASSES) for c in labels):
        raise ValueError(f"{path}: GTinst.Categories {categories.tolist()} outside 1..{len(CLASSES)}")
    return _stack(masks, segmentation.shape), np.asarray(labels, dtype=np.int64), np.zeros(segmentation.shape, bool)


def _stack(masks: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    return np.stack(masks) if masks else np.zeros((0, *shape), dtype=bool)


def load_record(raw: Path, image_id: str) -> InstanceRecord:
    """One image with its instances: VOC's annotation when it has one, else SBD's."""
    found = _voc_instances(raw, image_id)
    masks, labels, ignore = found if found is not None else _sbd_instances(raw, image_id)
    image = _image(raw, image_id)
    if image.shape[:2] != masks.shape[1:]:
        raise ValueError(f"image {image_id}: picture is {image.shape[:2]} but its annotation is {masks.shape[1:]}")
    return InstanceRecord(name=image_id, image=image, masks=masks, labels=labels, ignore=ignore)


def load_records(raw: Path, image_ids: list[str]) -> Iterator[InstanceRecord]:
    for image_id in image_ids:
        yield load_record(raw, image_id)
