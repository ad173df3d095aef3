import numpy as np
import torch

from rsis.datasets.convert import convert
from rsis.datasets.dataset import InstanceDataset
from rsis.datasets.format import decode_mask
from rsis.datasets.shapes import generate_image
from rsis.files import read_json


def test_generator_is_deterministic(shapes_cfg):
    a = generate_image(shapes_cfg, 7, "train", 3)
    b = generate_image(shapes_cfg, 7, "train", 3)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.masks, b.masks)
    assert np.array_equal(a.labels, b.labels)
    c = generate_image(shapes_cfg, 8, "train", 3)
    assert not np.array_equal(a.image, c.image)


def test_masks_are_consistent_with_the_image(shapes_cfg):
    """Visible masks are disjoint, large enough, and each covers one uniformly coloured object
    that differs from the background around it."""
    for index in range(20):
        record = generate_image(shapes_cfg, 0, "test", index)
        assert shapes_cfg.min_objects >= 1 and len(record.labels) <= shapes_cfg.max_objects
        assert (record.masks.sum(0) <= 1).all(), "visible masks overlap"
        assert (record.masks.sum((1, 2)) >= shapes_cfg.min_visible_pixels).all()
        assert set(record.labels.tolist()) <= set(range(1, len(shapes_cfg.classes) + 1))
        image = record.image.astype(float) / 255
        background = record.masks.sum(0) == 0
        for mask in record.masks:
            pixels = image[mask]
            assert pixels.std(0).max() < 0.08, "an object's pixels should share one colour"
            if background.any():
                gap = np.abs(pixels.mean(0) - image[background].mean(0)).max()
                assert gap > 0.05, "object indistinguishable from background"


def test_convert_round_trip(data_cfg, tiny_paths):
    stats = convert(data_cfg, tiny_paths.data)
    assert stats["train"]["images"] == data_cfg.shapes.train
    coco = read_json(f"{tiny_paths.data}/test.json")
    assert [c["name"] for c in coco["categories"]] == list(data_cfg.shapes.classes)
    first = generate_image(data_cfg.shapes, data_cfg.seed, "test", 0)
    anns = [a for a in coco["annotations"] if a["image_id"] == 1]
    assert len(anns) == len(first.labels)
    for ann, mask, label in zip(anns, first.masks, first.labels):
        assert np.array_equal(decode_mask(ann["segmentation"]), mask)
        assert ann["category_id"] == label and ann["iscrowd"] == 0


def test_dataset_items_align_image_and_masks(data_cfg, tiny_paths):
    convert(data_cfg, tiny_paths.data)
    dataset = InstanceDataset(tiny_paths.data, "train", image_size=32, max_objects=2)
    assert dataset.num_classes == len(data_cfg.shapes.classes) + 1
    image, target = dataset[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    n = target["masks"].shape[0]
    assert n <= 2 and target["labels"].shape == (n,)
    assert target["masks"].shape == (n, 32, 32) and set(target["masks"].unique().tolist()) <= {0.0, 1.0}
    areas = target["masks"].sum((1, 2))
    assert (areas[:-1] >= areas[1:]).all(), "instances sorted large-to-small"
    assert target["orig_size"] == (64, 64)
