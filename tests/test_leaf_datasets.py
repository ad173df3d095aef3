"""CVPPP A1 in both real layouts (2014 PNGs in a zip, 2017 HDF5) and the synthetic leaf dataset."""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from conftest import CVPPP, LEAVES
from rsis.datasets import leaves
from rsis.datasets.convert import convert
from rsis.datasets.sources import download

N_PLANTS, H, W = 10, 24, 28


def _plant(k: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(k)
    rgba = rng.integers(0, 255, (H, W, 4), dtype=np.uint8)
    label = np.zeros((H, W), np.uint8)
    for leaf in range(1, 2 + k % 4):  # 1..4 leaves, each a horizontal band
        label[leaf * 4:leaf * 4 + 3, 3:25] = leaf
    return rgba, label


def _png_zip(path: Path, colour_labels: bool = False) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for k in range(1, N_PLANTS + 1):
            rgba, label = _plant(k)
            for name, array in ((f"plant{k:03d}_rgb.png", rgba), (f"plant{k:03d}_label.png", label)):
                if name.endswith("_label.png") and colour_labels:
                    palette = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0]], np.uint8)
                    image = Image.fromarray(palette[array])
                else:
                    image = Image.fromarray(array)
                    if name.endswith("_label.png"):
                        image.putpalette([v for i in range(256) for v in (i * 40 % 256, i * 90 % 256, i * 10 % 256)])
                tmp = path.parent / name
                image.save(tmp)
                zf.write(tmp, f"CVPPP2014_LSC_training_data/A1/{name}")
                tmp.unlink()
    return path


def _h5(path: Path, labelled: bool = True) -> Path:
    with h5py.File(path, "w") as f:
        for k in range(1, N_PLANTS + 1):
            rgba, label = _plant(k)
            group = f.create_group(f"A1/plant{k:03d}")
            group["rgb"] = rgba
            if labelled:
                group["label"] = label
                group["fg"] = (label > 0).astype(np.uint8)
    return path


def _convert(tmp_path: Path, data_cfg, archive: Path, test_archive: Path | None = None) -> Path:
    cfg = dataclasses.replace(data_cfg, dataset="cvppp", cvppp=dataclasses.replace(
        CVPPP, archive=str(archive), test_archive=None if test_archive is None else str(test_archive), val_count=3))
    download(cfg, tmp_path / "raw", progress=False)
    convert(cfg, tmp_path / "data", tmp_path / "raw")
    return tmp_path / "data"


def _instances(root: Path, split: str) -> dict[str, int]:
    doc = json.loads((root / f"{split}.json").read_text())
    names = {i["id"]: Path(i["file_name"]).stem for i in doc["images"]}
    counts = dict.fromkeys(names.values(), 0)
    for a in doc["annotations"]:
        counts[names[a["image_id"]]] += 1
    return counts


@pytest.mark.parametrize("layout", ["png", "png-colour", "h5"])
def test_cvppp_layouts_convert_to_the_same_instances(tmp_path, data_cfg, layout):
    archive = _h5(tmp_path / "train.h5") if layout == "h5" else \
        _png_zip(tmp_path / "train.zip", colour_labels=layout == "png-colour")
    root = _convert(tmp_path, data_cfg, archive)
    train, val, test = (_instances(root, s) for s in ("train", "val", "test"))
    assert len(train) == N_PLANTS - 3 and len(val) == 3 and test == val  # labelled test = the held-out plants
    for name, n in {**train, **val}.items():
        assert n == 1 + int(name.removeprefix("plant")) % 4
    doc = json.loads((root / "train.json").read_text())
    assert doc["categories"] == [{"id": 1, "name": "leaf"}]


def test_cvppp_split_is_reproducible_and_layout_independent(tmp_path, data_cfg):
    a = _instances(_convert(tmp_path / "a", data_cfg, _h5(tmp_path / "t.h5")), "val")
    b = _instances(_convert(tmp_path / "b", data_cfg, _png_zip(tmp_path / "t.zip")), "val")
    assert a == b


def test_cvppp_unlabelled_test_images_become_the_challenge_split(tmp_path, data_cfg):
    root = _convert(tmp_path, data_cfg, _h5(tmp_path / "train.h5"), _h5(tmp_path / "test.h5", labelled=False))
    challenge = _instances(root, "challenge")
    assert len(challenge) == N_PLANTS and set(challenge.values()) == {0}


def test_missing_cvppp_archive_says_what_to_download_and_where(tmp_path, data_cfg):
    cfg = dataclasses.replace(data_cfg, dataset="cvppp",
                              cvppp=dataclasses.replace(CVPPP, archive=str(tmp_path / "absent.h5")))
    with pytest.raises(FileNotFoundError) as err:
        download(cfg, tmp_path / "raw")
    message = str(err.value)
    assert str(tmp_path / "absent.h5") in message and "plant-phenotyping.org" in message
    assert "data.cvppp.archive" in message


def test_leaves_are_deterministic_one_class_and_within_the_counts(tmp_path, data_cfg):
    a = list(leaves.generate_split(LEAVES, 0, "train"))
    b = list(leaves.generate_split(LEAVES, 0, "train"))
    assert all(np.array_equal(x.image, y.image) and np.array_equal(x.masks, y.masks) for x, y in zip(a, b))
    for record in a:
        assert LEAVES.min_leaves - 2 <= len(record.masks) <= LEAVES.max_leaves  # a few may hide behind others
        assert set(record.labels.tolist()) == {1}
        assert not (record.masks.sum(0) > 1).any()  # visible masks do not overlap
        green = record.image[..., 1].astype(int) - record.image[..., 0]
        assert green[record.masks.any(0)].mean() > green[~record.masks.any(0)].mean() + 50  # leaves are green
    cfg = dataclasses.replace(data_cfg, dataset="leaves")
    stats = convert(cfg, tmp_path / "data", tmp_path / "raw")
    assert {s: v["images"] for s, v in stats.items()} == {"train": 6, "val": 3, "test": 3}


def test_evaluate_writes_submission_label_maps_for_the_challenge_split(tmp_path, data_cfg, tiny_paths,
                                                                       tiny_model_cfg, tiny_train_cfg, eval_cfg):
    from rsis.evaluation.run import evaluate
    from rsis.training.fit import fit

    _convert(tmp_path, data_cfg, _h5(tmp_path / "train.h5"), _h5(tmp_path / "test.h5", labelled=False))
    fit(tiny_paths, tiny_model_cfg, dataclasses.replace(tiny_train_cfg, epochs=1, batch_size=2))
    metrics = evaluate(tiny_paths, dataclasses.replace(eval_cfg, stop_threshold=0.0), "leaves", device="cpu")
    assert "cvppp" in metrics
    maps = sorted((Path(tiny_paths.evaluation) / "challenge_maps").glob("*_label.png"))
    assert [p.name for p in maps] == [f"plant{k:03d}_label.png" for k in range(1, N_PLANTS + 1)]
    with Image.open(maps[0]) as im:
        assert im.size == (W, H)
