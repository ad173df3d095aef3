"""Shared fixtures: tiny configs that make real code run in seconds on a CPU."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from rsis.config import (AugmentConfig, CityscapesConfig, CocoConfig, CocoSplit, CvpppConfig, DataConfig, EvaluateConfig, LeavesConfig, LossWeights,
                         ModelConfig, PathsConfig, ScheduleConfig, ShapesConfig, TrainConfig, VocConfig)

REPO = Path(__file__).resolve().parents[1]
# Real download addresses: tests replace them with loopback URLs before anything is fetched.
VOC = VocConfig(voc_url="http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
                voc_md5="6cd6e144f989b92b3379bac3b3de84fd",
                sbd_url="http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz",
                sbd_md5="82b4d87ceb2ed10f6038a1cba92111cb", val_fraction=0.1)
LEAVES = LeavesConfig(image_size=64, min_leaves=5, max_leaves=12, min_length=0.25, max_length=0.45, width_ratio=0.35,
                      min_visible_pixels=15, noise=0.04, train=6, val=3, test=3)
COCO = CocoConfig(**{s: CocoSplit(json=f"data/raw/coco/{s}.json", images=f"data/raw/coco/{s}")
                     for s in ("train", "val", "test")})
CITYSCAPES = CityscapesConfig(gt_archive="data/raw/archives/gtFine_trainvaltest.zip",
                              images_archive="data/raw/archives/leftImg8bit_trainvaltest.zip", val_count=300)
CVPPP = CvpppConfig(archive="data/raw/archives/CVPPP2017_training_images.h5", test_archive=None, val_count=32)


@pytest.fixture
def shapes_cfg() -> ShapesConfig:
    return ShapesConfig(image_size=64, min_objects=1, max_objects=5, min_object_size=12, max_object_size=30,
                        min_visible_pixels=20, classes=("disc", "square", "triangle", "ring"), noise=0.05,
                        train=12, val=4, test=6)


@pytest.fixture
def tiny_paths(tmp_path: Path) -> PathsConfig:
    return PathsConfig(raw=str(tmp_path / "raw"), data=str(tmp_path / "data"), models=str(tmp_path / "models"),
                       predictions=str(tmp_path / "outputs" / "predictions.json"),
                       evaluation=str(tmp_path / "outputs" / "evaluation"),
                       metrics=str(tmp_path / "metrics"), figures=str(tmp_path / "figures"))


@pytest.fixture
def tiny_model_cfg() -> ModelConfig:
    return ModelConfig(backbone="resnet18", pretrained="none", hidden_dim=16, max_steps=6, skip_mode="concat",
                       image_size=32)


@pytest.fixture
def tiny_train_cfg() -> TrainConfig:
    return TrainConfig(seed=0, epochs=2, batch_size=4, lr_decoder=1e-3, lr_encoder=1e-3, weight_decay=0.0,
                       lr_decay_epochs=(1,), max_objects=6,
                       loss_weights=LossWeights(mask=1.0, cls=0.1, stop=0.5, box=0.5),
                       schedule=schedule_cfg(), augment=augment_cfg(), num_workers=0, device="cpu", amp=False,
                       channels_last=False, launcher="none", nproc_per_node=1, resume=True)


def schedule_cfg(**changes) -> ScheduleConfig:
    """Every term on from epoch 0, no curriculum (the default pipeline's schedule)."""
    base = ScheduleConfig(class_loss_from=0, stop_loss_from=0, encoder_from=0, patience=2, min_delta=0.0,
                          curriculum=False, start_steps=2, steps_cl=1, min_steps=3, reload_best_on_switch=False)
    return dataclasses.replace(base, **changes)


def augment_cfg(**changes) -> AugmentConfig:
    base = AugmentConfig(enabled=False, hflip=0.5, rotation=10.0, translate=0.1, shear=5.7, scale=(0.7, 1.4))
    return dataclasses.replace(base, **changes)


@pytest.fixture
def eval_cfg() -> EvaluateConfig:
    return EvaluateConfig(batch_size=4, stop_threshold=0.5, mask_threshold=0.5, min_area_fraction=0.001)


@pytest.fixture
def data_cfg(shapes_cfg: ShapesConfig) -> DataConfig:
    return DataConfig(dataset="shapes", seed=3, on_error="stop", shapes=shapes_cfg, leaves=LEAVES, voc=VOC, cvppp=CVPPP, cityscapes=CITYSCAPES, coco=COCO)


def replace(obj, **changes):
    return dataclasses.replace(obj, **changes)


# `make test` runs two pytest workers, each taking whole files (`--dist loadfile`) in this order as it
# frees up: the slowest files first (the sum of their tests' seconds, serially), so that none of them
# starts last and runs on alone while the other worker has nothing left.
SLOWEST_FILES = ("test_pipeline.py", "test_faults.py", "test_resume_ddp.py", "test_memorise.py", "test_byo.py",
                 "test_time_to_accuracy.py", "test_predict.py", "test_bad_input.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(SLOWEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOWEST_FILES)))  # stable: each file's own order kept
