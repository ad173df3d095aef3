"""CVPPP Leaf Segmentation Challenge, subset A1 (Arabidopsis): one class, "leaf".

Two releases are read:

* the 2014 PNG layout: ``.../A1/plantNNN_rgb.png`` (RGBA) with ``plantNNN_label.png`` (indexed:
  0 = background, k = leaf k; a colour-coded RGB label image is also accepted, one colour per
  leaf, black = background);
* the 2017 HDF5 files: ``A1/plantNNN/rgb`` (H x W x 4) and ``A1/plantNNN/label`` (H x W).

Registration is required, so nothing is downloaded: the download stage takes the archive the
user put at ``data.cvppp.archive`` (a .zip/.tar of either layout, or the .h5 file itself).
Split: the 128 labelled plants, sorted by name and shuffled with the seed, give ``val_count``
validation images and the rest for training (96/32 as the authors); the organisers keep the test
labels, so the local test split is the validation images (stated in every report). Unlabelled
test images, when ``data.cvppp.test_archive`` is given, become the split ``challenge``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from rsis.datasets.record import InstanceRecord

CLASSES = ("leaf",)
SUBSET = "A1"
REGISTRATION = ("CVPPP LSC data need registration: request them at https://www.plant-phenotyping.org/datasets-download "
                "(the 2017 release CVPPP2017_training_images.h5 / CVPPP2017_testing_images.h5, or the 2014 zip "
                "with A1/plantNNN_rgb.png and plantNNN_label.png)")


def label_to_instances(label: np.ndarray, where: str) -> np.ndarray:
    """[N, H, W] bool masks from an indexed [H, W] or colour-coded [H, W, 3] label image."""
    if label.ndim == 3:
        colours, index = np.unique(label[..., :3].reshape(-1, 3), axis=0, return_inverse=True)
        index = index.reshape(label.shape[:2])
        ids = [i for i, c in enumerate(colours) if c.any()]  # black is background
        return np.stack([index == i for i in ids]) if ids else np.zeros((0, *label.shape[:2]), bool)
    if label.ndim != 2:
        raise ValueError(f"{where}: label image must be [H, W] or [H, W, 3], got shape {label.shape}")
    ids = [k for k in np.unique(label).tolist() if k != 0]
    return np.stack([label == k for k in ids]) if ids else np.zeros((0, *label.shape), bool)


def _record(name: str, rgb: np.ndarray, label: np.ndarray | None, where: str) -> InstanceRecord:
    if rgb.ndim != 3 or rgb.shape[2] not in (3, 4):
        raise ValueError(f"{where}: rgb image must be [H, W, 3 or 4], got shape {rgb.shape}")
    image = np.ascontiguousarray(rgb[..., :3]).astype(np.uint8)
    masks = label_to_instances(label, where) if label is not None else np.zeros((0, *image.shape[:2]), bool)
    if masks.shape[1:] != image.shape[:2]:
        raise ValueError(f"{where}: label is {masks.shape[1:]} but the image is {image.shape[:2]}")
    return InstanceRecord(name=name, image=image, masks=masks, labels=np.ones(len(masks), dtype=np.int64),
                          ignore=np.zeros(image.shape[:2], bool))


def find_source(folder: Path) -> Path:
    """The .h5 file or the A1 folder of PNGs inside an unpacked archive (or the file itself)."""
    if folder.is_file():
        return folder
    h5 = sorted(folder.rglob("*.h5"))
    if h5:
        return h5[0]
    a1 = sorted(p.parent for p in folder.rglob(f"{SUBSET}/plant*_rgb.png"))
    if a1:
        return a1[0]
    raise FileNotFoundError(f"{folder}: no CVPPP data found (expected an .h5 file or {SUBSET}/plantNNN_rgb.png files)")


def plant_names(source: Path) -> list[str]:
    if source.suffix == ".h5":
        import h5py  # only CVPPP's 2017 release needs it

        with h5py.File(source, "r") as f:
            if SUBSET not in f:
                raise ValueError(f"{source}: no group {SUBSET!r} (found {sorted(f.keys())})")
            return sorted(f[SUBSET].keys())
    return sorted(p.name.removesuffix("_rgb.png") for p in source.glob("plant*_rgb.png"))


def load_records(source: Path, names: list[str], labelled: bool = True) -> Iterator[InstanceRecord]:
    if source.suffix == ".h5":
        import h5py

        with h5py.File(source, "r") as f:
            for name in names:
                group, where = f[SUBSET][name], f"{source}:{SUBSET}/{name}"
                if labelled and "label" not in group:
                    raise ValueError(f"{where}: no 'label' dataset")
                yield _record(name, np.asarray(group["rgb"]), np.asarray(group["label"]) if labelled else None, where)
        return
    for name in names:
        rgb_path, label_path = source / f"{name}_rgb.png", source / f"{name}_label.png"
        with Image.open(rgb_path) as im:
            rgb = np.asarray(im.convert("RGB"))
        label = None
        if labelled:
            if not label_path.is_file():
                raise FileNotFoundError(f"{label_path} not found (the label of {rgb_path})")
            with Image.open(label_path) as im:
                label = np.asarray(im if im.mode in ("P", "L", "I", "I;16") else im.convert("RGB"))
        yield _record(name, rgb, label, str(label_path if labelled else rgb_path))


def split_names(names: list[str], seed: int, val_count: int) -> dict[str, list[str]]:
    if not 0 < val_count < len(names):
        raise ValueError(f"data.cvppp.val_count = {val_count} but the archive has {len(names)} labelled plants")
    order = np.asarray(sorted(names))[np.random.default_rng(seed).permutation(len(names))]
    val = sorted(order[:val_count].tolist())
    return {"train": sorted(order[val_count:].tolist()), "val": val, "test": val}
