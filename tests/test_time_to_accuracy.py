"""bench/time_to_accuracy.py: RSIS and Mask R-CNN are trained on the same split and both scored by
the one evaluation function, at the same clock marks."""

from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest

from conftest import REPO
from rsis.datasets.convert import convert
from rsis.datasets.format import annotation_file
from rsis.evaluation.coco import load_ground_truth


def _module():
    spec = importlib.util.spec_from_file_location("time_to_accuracy", REPO / "bench" / "time_to_accuracy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_both_models_go_through_the_same_evaluation(data_cfg, tiny_paths, tiny_model_cfg, tiny_train_cfg,
                                                    eval_cfg, monkeypatch):
    """On leaves, so that the label-map metrics (SBD, |DiC|) run as well as COCO AP."""
    tta = _module()
    convert(dataclasses.replace(data_cfg, dataset="leaves"), tiny_paths.data)
    ground_truth = load_ground_truth(annotation_file(tiny_paths.data, "test"))
    calls = []
    real = tta.score_detections

    def spy(gt, detections, label_maps=None):
        calls.append((gt, label_maps is not None, {d["image_id"] for d in detections}))
        return real(gt, detections, label_maps)

    monkeypatch.setattr(tta, "score_detections", spy)
    leaves = True
    train_cfg = dataclasses.replace(tiny_train_cfg, epochs=2, batch_size=2)
    rsis_rows, marks, rsis_inference = tta.train_rsis(tiny_paths, tiny_model_cfg, train_cfg, eval_cfg, ground_truth,
                                                      leaves)
    assert len(rsis_rows) == 2 and len(marks) == 2 and marks[0] < marks[1]
    rcnn_rows, rcnn_inference = tta.train_maskrcnn(tiny_paths, tiny_model_cfg, train_cfg, eval_cfg.batch_size,
                                                   ground_truth, [0.5, 1.0], leaves)
    assert [r["model"] for r in rsis_rows + rcnn_rows] == ["RSIS"] * 2 + ["Mask R-CNN"] * 2
    assert len(calls) == 4 and all(gt is ground_truth and maps is leaves for gt, maps, _ in calls)
    test_ids = set(ground_truth.getImgIds())
    assert all(ids <= test_ids for _, _, ids in calls)  # test-split detections only, for both models
    assert all(np.isfinite(r["AP50"]) and 0.0 <= r["AP50"] <= 1.0 for r in rsis_rows + rcnn_rows)
    assert rcnn_rows[0]["seconds"] >= 0.5 and rcnn_rows[1]["seconds"] >= 1.0
    assert all("SBD" in r and "absDiC" in r for r in rsis_rows + rcnn_rows)
    assert rsis_inference["images_per_s"] > 0 and rcnn_inference["detections_per_image"] >= 0


def test_maskrcnn_schedule_is_torchvisions_over_the_budget():
    tta = _module()
    assert tta.maskrcnn_lr(0.0, 0.01, 0, 99) == pytest.approx(1e-5)  # warm-up over the first epoch's updates
    assert tta.maskrcnn_lr(0.3, 0.01, 50, 99) == pytest.approx(0.01 * (0.001 + 0.999 * 50 / 99))
    assert tta.maskrcnn_lr(0.5, 0.01, 99, 99) == pytest.approx(0.01)
    assert tta.maskrcnn_lr(0.7, 0.01, 150, 99) == pytest.approx(0.001)
    assert tta.maskrcnn_lr(0.9, 0.01, 200, 99) == pytest.approx(0.0001)
