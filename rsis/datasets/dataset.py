"""The one dataset class every stage reads the converted format through, and its transforms."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from rsis.datasets.coco_format import annotation_file, decode_mask
from rsis.io import read_json

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build_transform(image_size: int) -> v2.Compose:
    """The shared transform pipeline: resize image and masks jointly, scale and normalise.

    Masks are tv_tensors.Mask, so v2 resizes them with nearest-neighbour interpolation.
    """
    return v2.Compose([
        v2.ToImage(),
        v2.Resize((image_size, image_size), antialias=True),
        v2.ToDtype({tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.float32, "others": None}, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


class InstanceDataset(Dataset):
    """Images and instances of one converted split.

    Item: ``(image [3, S, S] float, target)`` where target is a dict with
    ``masks [N, S, S] float`` (sorted large-to-small, at most ``max_objects``), ``labels [N] long``,
    ``ignore [S, S] float`` (1 = ignored pixel), ``image_id`` int and ``orig_size`` (H, W).
    """

    def __init__(self, root: str | Path, split: str, image_size: int, max_objects: int | None = None) -> None:
        self.root = Path(root)
        self.split = split
        path = annotation_file(root, split)
        coco = read_json(path)
        try:
            self.images = sorted(coco["images"], key=lambda im: im["id"])
            self.categories = sorted(coco["categories"], key=lambda c: c["id"])
            annotations = coco["annotations"]
        except KeyError as exc:
            raise ValueError(f"{path}: missing key {exc.args[0]!r} in COCO instances JSON") from None
        if not self.images:
            raise ValueError(f"{path}: split {split!r} has no images")
        self.annotations: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for ann in annotations:
            self.annotations[ann["image_id"]].append(ann)
        self.max_objects = max_objects
        self.transform = build_transform(image_size)

    @property
    def num_classes(self) -> int:
        """Number of classes including <eos>/background (index 0)."""
        return len(self.categories) + 1

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        info = self.images[index]
        image = np.array(Image.open(self.root / info["file_name"]).convert("RGB"))  # [H, W, 3]
        h, w = info["height"], info["width"]
        anns = self.annotations.get(info["id"], [])
        instances = sorted((a for a in anns if not a["iscrowd"]), key=lambda a: -a["area"])
        if self.max_objects is not None:
            instances = instances[: self.max_objects]
        masks = np.zeros((len(instances) + 1, h, w), dtype=np.uint8)  # last plane: ignore region
        for k, ann in enumerate(instances):
            masks[k] = decode_mask(ann["segmentation"])
        for ann in anns:
            if ann["iscrowd"]:
                masks[-1] |= decode_mask(ann["segmentation"])
        image_t, masks_t = self.transform(tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1)),
                                          tv_tensors.Mask(torch.from_numpy(masks)))
        target = {
            "masks": masks_t[:-1].as_subclass(torch.Tensor),  # [N, S, S]
            "labels": torch.tensor([a["category_id"] for a in instances], dtype=torch.long),  # [N]
            "ignore": masks_t[-1].as_subclass(torch.Tensor),  # [S, S]
            "image_id": info["id"],
            "orig_size": (h, w),
        }
        return image_t.as_subclass(torch.Tensor), target


def collate(batch: list[tuple[torch.Tensor, dict[str, Any]]]) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """Stack images [B, 3, S, S]; keep targets as a list (variable N per image)."""
    images, targets = zip(*batch)
    return torch.stack(images), list(targets)
