"""Bring your own data: a COCO export with 16-bit images, more objects than T, an RLE-only split and
a malformed annotation goes through convert, train, evaluate and analyze (the stage scripts)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import coco_fixture
from projects import run_stage, tiny_params, tiny_project, write_params

pytestmark = pytest.mark.slow


def test_a_coco_export_goes_through_every_stage(tmp_path):
    root = tiny_project(tmp_path / "p", convert_data=False, epochs=1, lr_decay_epochs=[])
    params = tiny_params(epochs=1, lr_decay_epochs=[])
    params["data"].update(dataset="coco", on_error="skip", coco=coco_fixture.write(tmp_path / "export"))
    params["model"].update(max_steps=5)
    params["evaluate"].update(stop_threshold=0.0, mask_threshold=0.1)  # an untrained model: keep its steps
    params["analyze"].update(figure_images=2, batch_size=4)
    write_params(root, params)
    for stage in ("convert", "train", "evaluate", "analyze"):
        result = run_stage(root, stage)
        assert result.returncode == 0, f"{stage}:\n{result.stdout}\n{result.stderr}"
        if stage == "convert":
            convert_log = result.stderr
        if stage == "evaluate":
            evaluate_log = result.stderr
    stats = {k.removesuffix("_split"): v for k, v in json.loads((root / "metrics/convert.json").read_text()).items()}
    skipped = json.loads((root / "data/converted/skipped.json").read_text())
    assert [i["annotation_id"] for i in skipped["train"]] == [coco_fixture.BAD_ANNOTATION_ID]
    assert stats["train"]["images"] == coco_fixture.SPLIT_SIZES["train"]  # the bad annotation's image kept
    assert stats["train"]["skipped_annotations"] == 1 and stats["train"]["skipped"] == 0
    assert stats["test"]["over_model_max_steps"] == 2 and stats["test"]["max_instances"] == 12
    assert "warning (test): 2 of 6 images hold more than model.max_steps = 5" in convert_log
    evaluation = json.loads((root / "metrics/evaluate.json").read_text())
    assert evaluation["counts"]["gt_beyond_max_steps"] == 14 and evaluation["counts"]["images_over_max_steps"] == 2
    assert "14 of" in evaluate_log and "beyond reach of model.max_steps = 5" in evaluate_log
    first = next((root / "data/converted/train").glob("*.png"))
    assert len(np.unique(np.asarray(Image.open(first)))) > 5  # 16-bit read by range; clipped, all would be 255
    assert "your own COCO-format test split" in (root / "metrics/paper_comparison.md").read_text()
    assert (root / "metrics/analyze.json").is_file()
