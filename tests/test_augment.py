"""Augmentation moves image, masks and boxes together; ground truth stays sorted large-to-small."""

import pytest
import torch
from torchvision.ops import masks_to_boxes

from conftest import augment_cfg
from rsis.datasets.convert import convert
from rsis.datasets.dataset import InstanceDataset


def test_horizontal_flip_flips_everything(data_cfg, tiny_paths):
    convert(data_cfg, tiny_paths.data)
    plain = InstanceDataset(tiny_paths.data, "train", 32, 10)
    flip_only = augment_cfg(enabled=True, hflip=1.0, rotation=0.0, translate=0.0, shear=0.0, scale=(1.0, 1.0))
    flipped = InstanceDataset(tiny_paths.data, "train", 32, 10, augment=flip_only)
    for index in range(4):
        (image, target), (image_f, target_f) = plain[index], flipped[index]
        assert torch.allclose(image.flip(-1), image_f, atol=1e-5)
        assert torch.equal(target["masks"].flip(-1), target_f["masks"])
        assert torch.equal(target["labels"], target_f["labels"])
        x0, y0, x1, y1 = target["boxes"].unbind(-1)
        assert torch.allclose(torch.stack([1 - x1, y0, 1 - x0, y1], -1), target_f["boxes"], atol=1e-5)


def test_vertical_flip_flips_everything(data_cfg, tiny_paths):
    convert(data_cfg, tiny_paths.data)
    plain = InstanceDataset(tiny_paths.data, "train", 32, 10)
    vflip_only = augment_cfg(enabled=True, hflip=0.0, vflip=1.0, rotation=0.0, translate=0.0, shear=0.0,
                             scale=(1.0, 1.0))
    flipped = InstanceDataset(tiny_paths.data, "train", 32, 10, augment=vflip_only)
    for index in range(4):
        (image, target), (image_f, target_f) = plain[index], flipped[index]
        assert torch.allclose(image.flip(-2), image_f, atol=1e-5)
        assert torch.equal(target["masks"].flip(-2), target_f["masks"])
        x0, y0, x1, y1 = target["boxes"].unbind(-1)
        assert torch.allclose(torch.stack([x0, 1 - y1, x1, 1 - y0], -1), target_f["boxes"], atol=1e-5)


def test_affine_keeps_masks_inside_boxes_and_sorted(data_cfg, tiny_paths):
    convert(data_cfg, tiny_paths.data)
    dataset = InstanceDataset(tiny_paths.data, "train", 64, 3, augment=augment_cfg(enabled=True))
    torch.manual_seed(0)
    changed = 0
    for index in range(len(dataset)):
        image, target = dataset[index]
        masks, boxes = target["masks"], target["boxes"] * 64
        assert masks.shape[0] == boxes.shape[0] == target["labels"].shape[0] <= 3
        areas = masks.sum((1, 2))
        assert (areas > 0).all() and (areas[:-1] >= areas[1:]).all()
        if len(masks):
            tight = masks_to_boxes(masks)  # [N, 4] pixel indices
            slack = 0.2 * 64  # the affine-transformed box encloses the rotated original box
            assert (tight[:, :2] >= boxes[:, :2] - 1.5).all() and (tight[:, 2:] + 1 <= boxes[:, 2:] + 1.5).all()
            assert ((boxes[:, :2] - tight[:, :2]).abs() < slack).all()
        changed += not torch.equal(image, InstanceDataset(tiny_paths.data, "train", 64, 3)[index][0])
    assert changed == len(dataset)


@pytest.mark.parametrize("flips", [{"hflip": 0.5}, {"hflip": 0.5, "vflip": 0.5}, {"hflip": 0.0, "vflip": 1.0}])
def test_flips_on_plain_tensors_match_the_v2_pipeline(data_cfg, tiny_paths, flips):
    """Images at the network size that are flipped at most skip v2's transforms for torchvision's kernels:
    the same items, draw for draw, as the v2 pipeline gives (itself checked above)."""
    convert(data_cfg, tiny_paths.data)
    augment = augment_cfg(enabled=True, rotation=0.0, translate=0.0, shear=0.0, scale=(1.0, 1.0), **flips)
    for split, aug in (("train", augment), ("val", None)):
        fast = InstanceDataset(tiny_paths.data, split, 64, 3, augment=aug)
        v2_only = InstanceDataset(tiny_paths.data, split, 64, 3, augment=aug)
        assert fast.flips is not None
        v2_only.flips = None  # what every item took before: build_transform's v2.Compose
        for index in range(len(fast)):
            torch.manual_seed(index)
            image, target = fast[index]
            next_draw = torch.rand(1)
            torch.manual_seed(index)
            image_v2, target_v2 = v2_only[index]
            assert torch.equal(next_draw, torch.rand(1))  # as many random draws
            assert torch.equal(image, image_v2)
            for key in ("masks", "labels", "boxes", "ignore"):
                assert target[key].dtype == target_v2[key].dtype and torch.equal(target[key], target_v2[key]), key
    assert InstanceDataset(tiny_paths.data, "train", 64, 3, augment=augment_cfg(enabled=True)).flips is None  # warps


def test_flip_only_skips_the_affine_warp():
    from torchvision.transforms import v2

    from rsis.datasets.dataset import build_transform
    flip_only = augment_cfg(enabled=True, rotation=0.0, translate=0.0, shear=0.0, scale=(1.0, 1.0))
    kinds = [type(t) for t in build_transform((32, 32), flip_only).transforms]
    assert v2.RandomHorizontalFlip in kinds and v2.RandomAffine not in kinds
    assert v2.RandomAffine in [type(t) for t in build_transform((32, 32), augment_cfg(enabled=True)).transforms]
