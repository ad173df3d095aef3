"""Cityscapes: 16-bit instanceIds in the real layout, zipped as the official packages, converted,
and scored by the official cityscapesscripts evaluation (numpy 2, outputs kept in our folder)."""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import CITYSCAPES
from rsis.datasets import cityscapes
from rsis.datasets.convert import convert
from rsis.datasets.format import decode_mask
from rsis.datasets.sources import download
from rsis.evaluation import cityscapes as cityscapes_eval
from rsis.evaluation.inference import PredictedInstance

H, W = 64, 128
CAR, PERSON, ROAD = 26, 24, 7


def _ids(k: int) -> np.ndarray:
    """Road everywhere, two cars, one person, and a person *group* (label id only: ignore)."""
    ids = np.full((H, W), ROAD, np.uint16)
    ids[5:20, 5:25] = CAR * 1000 + 0
    ids[30:50, 10:30] = CAR * 1000 + 1
    ids[10:40, 60:70 + k] = PERSON * 1000 + 0
    ids[45:60, 90:120] = PERSON  # a group
    return ids


def _packages(tmp_path: Path) -> tuple[Path, Path]:
    gt_zip, img_zip = tmp_path / "gtFine_trainvaltest.zip", tmp_path / "leftImg8bit_trainvaltest.zip"
    with zipfile.ZipFile(gt_zip, "w") as gz, zipfile.ZipFile(img_zip, "w") as iz:
        for split, city, count in (("train", "aachen", 5), ("val", "lindau", 2)):
            for i in range(count):
                name = f"{city}_{i:06d}_000019"
                ids_png, img_png = tmp_path / "ids.png", tmp_path / "img.png"
                Image.fromarray(_ids(i)).save(ids_png)  # uint16 array -> 16-bit PNG
                Image.fromarray(np.random.default_rng(i).integers(0, 255, (H, W, 3), np.uint8)).save(img_png)
                gz.write(ids_png, f"gtFine/{split}/{city}/{name}_gtFine_instanceIds.png")
                iz.write(img_png, f"leftImg8bit/{split}/{city}/{name}_leftImg8bit.png")
    return gt_zip, img_zip


@pytest.fixture
def converted(tmp_path, data_cfg):
    gt_zip, img_zip = _packages(tmp_path)
    cfg = dataclasses.replace(data_cfg, dataset="cityscapes", cityscapes=dataclasses.replace(
        CITYSCAPES, gt_archive=str(gt_zip), images_archive=str(img_zip), val_count=2))
    download(cfg, tmp_path / "raw", progress=False)
    stats = convert(cfg, tmp_path / "data", tmp_path / "raw")
    return tmp_path, stats


def test_instances_groups_and_splits(converted):
    root, stats = converted
    assert {s: v["images"] for s, v in stats.items()} == {"train": 3, "val": 2, "test": 2}
    doc = json.loads((root / "data/test.json").read_text())
    assert [Path(i["file_name"]).stem for i in doc["images"]] == ["lindau_000000_000019", "lindau_000001_000019"]
    first = [a for a in doc["annotations"] if a["image_id"] == doc["images"][0]["id"]]
    cats = {c["id"]: c["name"] for c in doc["categories"]}
    assert sorted(cats[a["category_id"]] for a in first if not a["iscrowd"]) == ["car", "car", "person"]
    crowd = [a for a in first if a["iscrowd"]]
    assert len(crowd) == 1 and decode_mask(crowd[0]["segmentation"]).sum() == 15 * 30  # the group, not the road


def test_missing_archives_explain_the_login(tmp_path, data_cfg, monkeypatch):
    monkeypatch.delenv("CITYSCAPES_USERNAME", raising=False)
    cfg = dataclasses.replace(data_cfg, dataset="cityscapes", cityscapes=dataclasses.replace(
        CITYSCAPES, gt_archive=str(tmp_path / "gtFine_trainvaltest.zip")))
    with pytest.raises(FileNotFoundError) as err:
        download(cfg, tmp_path / "raw")
    message = str(err.value)
    assert "cityscapes-dataset.com/downloads" in message and "CITYSCAPES_USERNAME" in message
    assert str(tmp_path / "gtFine_trainvaltest.zip") in message


def _sequences(raw: Path, names: list[str], drop_person: bool) -> list[list[PredictedInstance]]:
    sequences = []
    for image_id, name in enumerate(names, start=1):
        with Image.open(cityscapes.gt_file(raw, "val", name)) as im:
            masks, labels, _ = cityscapes.instances(np.asarray(im).astype(np.int64), name)
        sequence = []
        for step, (mask, label) in enumerate(zip(masks, labels)):
            if drop_person and label == 1:
                continue
            probs = tuple(1.0 if c == label else 0.0 for c in range(9))
            sequence.append(PredictedInstance(image_id, step, mask, 1.0, probs, (0, 0, 1, 1)))
        sequences.append(sequence)
    return sequences


def test_official_evaluation_of_the_ground_truth_and_of_a_worse_prediction(converted, monkeypatch):
    root, _ = converted
    raw = root / "raw"
    names = ["lindau_000000_000019", "lindau_000001_000019"]
    gt_files = [cityscapes.gt_file(raw, "val", n) for n in names]
    monkeypatch.chdir(root)  # the official script would drop matches.json here: it must not
    perfect = cityscapes_eval.evaluate(gt_files, _sequences(raw, names, False), names, root / "eval")
    assert perfect["AP"] == pytest.approx(1.0) and perfect["per_class"]["car"]["AP50"] == pytest.approx(1.0)
    assert perfect["per_class"]["bus"]["AP"] is None  # no bus in the ground truth
    worse = cityscapes_eval.evaluate(gt_files, _sequences(raw, names, True), names, root / "eval2")
    assert worse["per_class"]["person"]["AP"] == 0.0 and worse["AP"] < perfect["AP"]
    assert not (root / "matches.json").exists() and (root / "eval" / "matches.json").is_file()
    assert (root / "eval" / "gtInstances.json").is_file()
    package = Path(cityscapes_eval.__file__)  # nothing written into the installed package
    import cityscapesscripts.evaluation as cs_eval
    assert not (Path(cs_eval.__file__).parent / "gtInstances.json").exists(), package
    lines = (root / "eval/predictions" / f"{names[0]}.txt").read_text().splitlines()
    assert lines[0].split(" ")[1] in {"24", "26"} and os.path.isfile(root / "eval/predictions" / lines[0].split(" ")[0])


def test_evaluate_stage_runs_the_official_evaluation(converted, tiny_paths, tiny_model_cfg, tiny_train_cfg, eval_cfg):
    from rsis.evaluation.run import evaluate
    from rsis.evaluation.report import paper_comparison
    from rsis.training.fit import fit

    fit(tiny_paths, tiny_model_cfg, dataclasses.replace(tiny_train_cfg, epochs=1, batch_size=2))
    metrics = evaluate(tiny_paths, dataclasses.replace(eval_cfg, stop_threshold=0.0), "cityscapes", device="cpu")
    assert set(metrics["cityscapes"]) == {"AP", "AP50", "per_class"} and 0.0 <= metrics["cityscapes"]["AP"] <= 1.0
    assert (Path(tiny_paths.evaluation) / "cityscapes/resultInstanceLevelSemanticLabeling.json").is_file()
    assert "| AP (official cityscapesscripts) |" in paper_comparison("cityscapes", metrics)
