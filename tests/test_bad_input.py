"""Bad data and bad params: every bad item is named with its file and reason, conversion stops
(or skips and reports, per data.on_error), and a bad params value stops a stage before any work."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import COCO
from projects import run_stage, tiny_params, tiny_project, write_params
from rsis.config import CocoSplit
from rsis.datasets.convert import SKIPPED_REPORT, convert
from rsis.datasets.format import encode_mask
from rsis.datasets.record import DataError

SQUARE = [[2, 2, 8, 2, 8, 6, 2, 6]]


def _png(path: Path, h: int = 16, w: int = 20, value: int = 90) -> bytes:
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(path)
    return path.read_bytes()


def _ann(ann_id: int, image_id: int, segmentation, category_id: int = 1) -> dict:
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "iscrowd": 0, "area": 24.0,
            "bbox": [2, 2, 6, 4], "segmentation": segmentation}


def _bad_split(root: Path, name: str) -> CocoSplit:
    """One good image, one without instances, and six bad ones, one per kind of fault."""
    folder = root / name
    folder.mkdir(parents=True)
    _png(folder / "good.png")
    _png(folder / "empty.png")
    (folder / "truncated.png").write_bytes(_png(folder / "truncated.png")[:60])
    (folder / "corrupt.png").write_bytes(b"\x89PNG not really an image" * 4)
    _png(folder / "small.png", 10, 10)
    _png(folder / "rle.png")
    _png(folder / "classy.png")
    images = [(1, "truncated.png"), (2, "good.png"), (3, "corrupt.png"), (4, "small.png"), (5, "rle.png"),
              (6, "missing.png"), (7, "classy.png"), (8, "empty.png")]
    doc = {"images": [{"id": i, "file_name": f, "height": 16, "width": 20} for i, f in images],
           "annotations": [_ann(1, 1, SQUARE), _ann(2, 2, SQUARE), _ann(3, 3, SQUARE), _ann(4, 4, SQUARE),
                           _ann(5, 5, encode_mask(np.ones((8, 8), bool))),  # RLE of another size
                           _ann(6, 6, SQUARE), _ann(7, 7, SQUARE, category_id=99)],
           "categories": [{"id": 1, "name": "thing"}]}
    (root / f"{name}.json").write_text(json.dumps(doc))
    return CocoSplit(json=str(root / f"{name}.json"), images=str(folder))


def _good_split(root: Path, name: str) -> CocoSplit:
    folder = root / name
    folder.mkdir(parents=True)
    _png(folder / "good.png")
    doc = {"images": [{"id": 1, "file_name": "good.png", "height": 16, "width": 20}],
           "annotations": [_ann(1, 1, SQUARE)], "categories": [{"id": 1, "name": "thing"}]}
    (root / f"{name}.json").write_text(json.dumps(doc))
    return CocoSplit(json=str(root / f"{name}.json"), images=str(folder))


def _cfg(data_cfg, root: Path, on_error: str, train=None):
    coco = dataclasses.replace(COCO, train=train or _bad_split(root, "train"), val=_good_split(root, "val"),
                               test=_good_split(root, "test"))
    return dataclasses.replace(data_cfg, dataset="coco", coco=coco, on_error=on_error)


EXPECTED_REASONS = {  # file -> what the report must say about it
    "truncated.png": "unreadable image",
    "corrupt.png": "unreadable image",
    "small.png": "is 10x10 but image id 4",
    "rle.png": "is a 8x8 mask on a 16x20 image",
    "missing.png": "image file missing",
    "classy.png": "category_id 99",
}


def test_skip_leaves_out_each_bad_item_and_reports_its_file_and_reason(tmp_path, data_cfg):
    cfg = _cfg(data_cfg, tmp_path / "src", "skip")
    stats = convert(cfg, tmp_path / "out", tmp_path / "raw")
    # 4 bad images left out; the 2 bad annotations are left out and their images (rle, classy) kept
    assert {k: stats["train"][k] for k in ("images", "instances", "without_instances", "skipped",
                                           "skipped_annotations", "empty_annotations")} == {
        "images": 4, "instances": 1, "without_instances": 3, "skipped": 4, "skipped_annotations": 2,
        "empty_annotations": 0}
    report = json.loads((tmp_path / "out" / SKIPPED_REPORT).read_text())
    assert report["val"] == [] and len(report["train"]) == 6
    for item in report["train"]:
        name = Path(item["path"]).name
        assert EXPECTED_REASONS[name] in item["reason"], item
    assert {Path(i["path"]).name for i in report["train"]} == set(EXPECTED_REASONS)
    assert {i["annotation_id"] for i in report["train"] if "annotation_id" in i} == {5, 7}


def _crowded_split(root: Path, bad_segmentation) -> CocoSplit:
    """One image with 12 good squares and one bad annotation (id 99)."""
    folder = root / "crowded"
    folder.mkdir(parents=True)
    _png(folder / "crowd.png", 40, 60)
    good = [_ann(k + 1, 1, [[x, y, x + 3, y, x + 3, y + 3, x, y + 3]])
            for k, (x, y) in enumerate((4 * i + 1, 10 * j + 2) for i in range(6) for j in range(2))]
    doc = {"images": [{"id": 1, "file_name": "crowd.png", "height": 40, "width": 60}],
           "annotations": good + [_ann(99, 1, bad_segmentation)], "categories": [{"id": 1, "name": "thing"}]}
    (root / "crowded.json").write_text(json.dumps(doc))
    return CocoSplit(json=str(root / "crowded.json"), images=str(folder))


MALFORMED = [  # segmentation, words the error must contain
    ([[2, 2, 8, 2, 8]], "polygon 0 has 5 numbers; expected an even count of at least 6"),  # pycocotools: bare Exception
    ([[2, 2, 8, 6]], "polygon 0 has 4 numbers"),  # pycocotools would read it as a box
    ([], "empty polygon list"),
    ([[2, 2, 8, "x", 8, 6]], "polygon 0 has 6 numbers"),
    ({"counts": "abc"}, "RLE segmentation without 'counts' and 'size'"),
    ({"counts": "abc", "size": 40}, "RLE 'size' is 40; expected [height, width]"),
    ("a string", "segmentation of type str"),
    ({"counts": "\xff\xff", "size": [40, 60]}, "unreadable segmentation"),
]


@pytest.mark.parametrize("segmentation, words", MALFORMED)
def test_a_malformed_annotation_names_file_and_id_or_is_skipped_alone(tmp_path, data_cfg, segmentation, words):
    src = tmp_path / "src"
    cfg = _cfg(data_cfg, src, "stop", train=_crowded_split(src, segmentation))
    with pytest.raises(DataError, match=r"crowd\.png: annotation 99 of crowd\.png in .*crowded\.json") as err:
        convert(cfg, tmp_path / "out", tmp_path / "raw")
    assert words in str(err.value) and "\n" not in str(err.value)
    stats = convert(dataclasses.replace(cfg, on_error="skip"), tmp_path / "out", tmp_path / "raw")
    assert stats["train"]["images"] == 1 and stats["train"]["instances"] == 12  # the image and its good ones kept
    assert stats["train"]["skipped"] == 0 and stats["train"]["skipped_annotations"] == 1
    report = json.loads((tmp_path / "out" / SKIPPED_REPORT).read_text())["train"]
    assert len(report) == 1 and report[0]["annotation_id"] == 99 and words in report[0]["reason"]


def test_an_annotation_with_no_pixel_is_counted_and_listed(tmp_path, data_cfg):
    src = tmp_path / "src"
    outside = [[100, 100, 110, 100, 110, 110]]  # entirely off the 40x60 image
    cfg = _cfg(data_cfg, src, "stop", train=_crowded_split(src, outside))
    stats = convert(cfg, tmp_path / "out", tmp_path / "raw")  # not an error, even under stop
    assert stats["train"]["instances"] == 12 and stats["train"]["empty_annotations"] == 1
    report = json.loads((tmp_path / "out" / SKIPPED_REPORT).read_text())["train"]
    assert report == [{"path": str(Path(cfg.coco.train.images) / "crowd.png"), "annotation_id": 99, "empty": True,
                       "reason": "annotation 99 rasterises to no pixel on the 40x60 image"}]


def test_convert_reports_instance_counts_against_the_limits(tmp_path, data_cfg):
    src = tmp_path / "src"
    cfg = _cfg(data_cfg, src, "stop", train=_crowded_split(src, SQUARE))
    stats = convert(cfg, tmp_path / "out", tmp_path / "raw", {"train.max_objects": 10, "model.max_steps": 12})
    train = stats["train"]
    assert train["max_instances"] == 13 and train["instances_histogram"] == [0] * 13 + [1]
    assert train["over_train_max_objects"] == 1 and train["over_model_max_steps"] == 1
    assert stats["val"]["over_train_max_objects"] == 0 and stats["val"]["instances_histogram"] == [0, 1]


def test_stop_raises_on_the_first_bad_item_and_keeps_the_previous_output(tmp_path, data_cfg):
    out = tmp_path / "out"
    out.mkdir()
    (out / "previous.json").write_text("{}")
    with pytest.raises(DataError, match=r"truncated\.png: unreadable image"):
        convert(_cfg(data_cfg, tmp_path / "src", "stop"), out, tmp_path / "raw")
    assert (out / "previous.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]  # no temporary folder left


def test_an_empty_split_is_an_error_even_when_skipping(tmp_path, data_cfg):
    src = tmp_path / "src"
    src.mkdir()
    (src / "nothing").mkdir()
    (src / "nothing.json").write_text(json.dumps({"images": [], "annotations": [],
                                                  "categories": [{"id": 1, "name": "thing"}]}))
    cfg = _cfg(data_cfg, src, "skip", train=CocoSplit(json=str(src / "nothing.json"), images=str(src / "nothing")))
    with pytest.raises(DataError, match="split 'train' has no images"):
        convert(cfg, tmp_path / "out", tmp_path / "raw")


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"images": 3}'])
def test_an_invalid_coco_json_is_named(tmp_path, data_cfg, text):
    src = tmp_path / "src"
    src.mkdir()
    (src / "broken.json").write_text(text)
    cfg = _cfg(data_cfg, src, "stop", train=CocoSplit(json=str(src / "broken.json"), images=str(src)))
    with pytest.raises(DataError, match=r"broken\.json: not a COCO instances JSON"):
        convert(cfg, tmp_path / "out", tmp_path / "raw")


def test_the_convert_stage_reports_bad_data_in_one_line_and_exits_2(tmp_path):
    root = tiny_project(tmp_path / "p")
    before = (root / "data/converted/train.json").read_bytes()
    src = root / "src"
    src.mkdir()
    splits = {"train": _bad_split(src, "train"), "val": _good_split(src, "val"), "test": _good_split(src, "test")}
    params = tiny_params()
    params["data"].update(dataset="coco", on_error="stop")
    params["data"]["coco"] = {s: {"json": c.json, "images": c.images} for s, c in splits.items()}
    write_params(root, params)
    result = run_stage(root, "convert")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "truncated.png: unreadable image" in result.stderr.strip().splitlines()[-1]
    assert (root / "data/converted/train.json").read_bytes() == before

    params["data"]["on_error"] = "skip"
    write_params(root, params)
    result = run_stage(root, "convert")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("skipped (train): ") == 6
    stats = json.loads((root / "metrics/convert.json").read_text())
    assert stats["train_split"]["skipped"] == 4 and stats["train_split"]["skipped_annotations"] == 2
    assert stats["train_split"]["images"] == 4


BAD_PARAMS = [  # (stage, section, key, value, words the error must contain)
    ("train", "train", "epochs", "ten", "train.epochs"),
    ("train", "model", "image_size", -64, "model.image_size"),
    ("convert", "data", "dataset", "imagenet", "data.dataset"),
    ("train", None, "preset", "nosuch", "unknown preset 'nosuch'"),
    ("evaluate", "evaluate", "stop_threshold", 1.5, "evaluate.stop_threshold must be in [0, 1]"),
    ("convert", "analyze", "pair_threshold", -0.1, "analyze.pair_threshold must be in [0, 1]"),  # another stage's
    ("train", "train", "batch_size", 0, "train.batch_size"),
]


@pytest.mark.parametrize("stage, section, key, value, words", BAD_PARAMS)
def test_a_bad_params_value_stops_the_stage_before_any_work(tmp_path, stage, section, key, value, words):
    root = tiny_project(tmp_path / "p", convert_data=False)
    params = tiny_params()
    (params if section is None else params[section])[key] = value
    write_params(root, params)
    result = run_stage(root, stage, python_flags=("-X", "importtime"))  # Python logs each import to stderr
    assert result.returncode == 2, result.stdout + result.stderr
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")]
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("import time:")]
    assert len(lines) == 1 and lines[0].startswith("error: params.yaml") and words in lines[0], result.stderr
    assert sorted(p.name for p in root.iterdir()) == ["params.yaml", "presets", "stages"]  # nothing written
    # and it failed at once: before the stage imported what its work needs (torch alone takes ~2 s)
    assert "rsis" in imported and not {"torch", "scipy", "mlflow"} & set(imported), sorted(imported)
