"""A user's own COCO-format dataset: polygons, RLE and crowd regions, renumbered categories."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import COCO
from rsis.config import CocoSplit
from rsis.datasets.convert import convert
from rsis.datasets.format import decode_mask, encode_mask
from rsis.datasets.record import DataError
from rsis.datasets.sources import download

CATEGORIES = [{"id": 7, "name": "zebra"}, {"id": 3, "name": "ant"}]  # renumbered by id: ant -> 1, zebra -> 2


def _split(root: Path, split: str, categories=CATEGORIES) -> CocoSplit:
    folder = root / split
    folder.mkdir(parents=True)
    Image.fromarray(np.full((16, 20, 3), 90, np.uint8)).save(folder / "a.png")
    rle_mask = np.zeros((16, 20), bool)
    rle_mask[10:14, 12:18] = True
    crowd = np.zeros((16, 20), bool)
    crowd[0:2, :] = True
    Image.fromarray(np.full((16, 20, 3), 30, np.uint8)).save(folder / "empty.png")
    doc = {"images": [{"id": 5, "file_name": "a.png", "height": 16, "width": 20},
                      {"id": 9, "file_name": "empty.png", "height": 16, "width": 20}],  # no instances: kept
           "annotations": [
               {"id": 1, "image_id": 5, "category_id": 7, "iscrowd": 0, "area": 24.0, "bbox": [2, 2, 6, 4],
                "segmentation": [[2, 2, 8, 2, 8, 6, 2, 6]]},  # a polygon
               {"id": 2, "image_id": 5, "category_id": 3, "iscrowd": 0, "area": 24.0, "bbox": [12, 10, 6, 4],
                "segmentation": encode_mask(rle_mask)},
               {"id": 3, "image_id": 5, "category_id": 3, "iscrowd": 1, "area": 40.0, "bbox": [0, 0, 20, 2],
                "segmentation": encode_mask(crowd)}],
           "categories": categories}
    (root / f"{split}.json").write_text(json.dumps(doc))
    return CocoSplit(json=str(root / f"{split}.json"), images=str(folder))


def _cfg(data_cfg, root: Path, **overrides):
    splits = {s: _split(root, s) for s in ("train", "val", "test")}
    splits.update(overrides)
    return dataclasses.replace(data_cfg, dataset="coco", coco=dataclasses.replace(COCO, **splits))


def test_coco_json_converts_polygons_rle_and_crowd(tmp_path, data_cfg):
    cfg = _cfg(data_cfg, tmp_path / "src")
    manifest = download(cfg, tmp_path / "raw")
    assert [a["file"] for a in manifest["archives"]] == [cfg.coco.train.json, cfg.coco.val.json, cfg.coco.test.json]
    stats = convert(cfg, tmp_path / "data", tmp_path / "raw")
    assert {k: stats["train"][k] for k in ("images", "instances", "without_instances", "skipped")} == {
        "images": 2, "instances": 2, "without_instances": 1, "skipped": 0}  # the image without instances: kept, counted
    assert stats["train"]["instances_histogram"] == [1, 0, 1]
    doc = json.loads((tmp_path / "data/train.json").read_text())
    assert doc["categories"] == [{"id": 1, "name": "ant"}, {"id": 2, "name": "zebra"}]
    by_cat = {a["category_id"]: a for a in doc["annotations"] if not a["iscrowd"]}
    assert decode_mask(by_cat[1]["segmentation"]).sum() == 24  # the RLE ant
    zebra = decode_mask(by_cat[2]["segmentation"])
    assert zebra[3, 4] and not zebra[10, 14]  # the polygon, rasterised by pycocotools
    crowd = [a for a in doc["annotations"] if a["iscrowd"]]
    assert len(crowd) == 1 and decode_mask(crowd[0]["segmentation"]).sum() == 40


def test_missing_image_names_the_json_and_the_file(tmp_path, data_cfg):
    cfg = _cfg(data_cfg, tmp_path / "src")
    (Path(cfg.coco.val.images) / "a.png").unlink()
    with pytest.raises(DataError, match=r"val/a.png: image file missing \(image id 5 in .*val.json\)"):
        convert(cfg, tmp_path / "data", tmp_path / "raw")
    assert not (tmp_path / "data").exists()


def test_invalid_json_and_mismatched_categories_are_clear_errors(tmp_path, data_cfg):
    cfg = _cfg(data_cfg, tmp_path / "src")
    Path(cfg.coco.test.json).write_text('{"images": [}')
    with pytest.raises(ValueError, match="test.json"):
        convert(cfg, tmp_path / "data", tmp_path / "raw")
    other = _split(tmp_path / "other", "test", categories=[{"id": 3, "name": "ant"}])
    cfg = dataclasses.replace(cfg, coco=dataclasses.replace(cfg.coco, test=other))
    with pytest.raises(ValueError, match="differ from the train split"):
        convert(cfg, tmp_path / "data", tmp_path / "raw")


def test_missing_files_are_named_with_their_param(tmp_path, data_cfg):
    cfg = dataclasses.replace(data_cfg, dataset="coco")
    with pytest.raises(FileNotFoundError, match=r"data/raw/coco/train.json not found \(params data.coco.train.json\)"):
        download(cfg, tmp_path / "raw")
