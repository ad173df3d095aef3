"""Pascal-style scoring: void pixels ignored, per-class AP, class-agnostic proposal recall."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rsis.datasets.format import encode_mask
from rsis.evaluation.coco import evaluate_segm, load_ground_truth, per_class_ap, proposal_recall
from rsis.evaluation.inference import PredictedInstance, to_coco_detections
from rsis.evaluation.run import without_ignored_pixels


def _ground_truth(tmp_path):
    """One 20x20 image: a 'cat' square (rows/cols 2..9), a 'dog' square (12..17), void ring around the cat."""
    cat, dog, void = (np.zeros((20, 20), bool) for _ in range(3))
    cat[2:10, 2:10], dog[12:18, 12:18] = True, True
    void[1:11, 1:11] = True
    void[2:10, 2:10] = False
    anns = []
    for k, (mask, cid, crowd) in enumerate([(cat, 1, 0), (dog, 2, 0), (void, 1, 1)], start=1):
        anns.append({"id": k, "image_id": 1, "category_id": cid, "segmentation": encode_mask(mask),
                     "area": float(mask.sum()), "bbox": [0, 0, 20, 20], "iscrowd": crowd})
    doc = {"images": [{"id": 1, "file_name": "a.png", "height": 20, "width": 20}], "annotations": anns,
           "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "cow"}]}
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(doc))
    return load_ground_truth(path), cat, dog, void


def _inst(step, mask, probs):
    return PredictedInstance(image_id=1, step=step, mask=mask, objectness=0.9, class_probs=probs, box=(0, 0, 20, 20))


def test_void_pixels_do_not_count_against_a_mask(tmp_path):
    gt, cat, dog, void = _ground_truth(tmp_path)
    spill = cat | void  # the cat plus the whole void ring: IoU 64/100 counted naively, 1.0 with void ignored
    seqs = [[_inst(0, spill, (0.0, 1.0, 0.0, 0.0)), _inst(1, dog, (0.0, 0.0, 1.0, 0.0))]]
    naive = evaluate_segm(gt, to_coco_detections(seqs, 4))
    fair = evaluate_segm(gt, to_coco_detections(without_ignored_pixels(gt, seqs), 4))
    assert fair["AP@0.9"] > naive["AP@0.9"] and fair["AP@0.9"] == pytest.approx(1.0, abs=0.01)


def test_per_class_ap_and_proposal_recall(tmp_path):
    gt, cat, dog, _ = _ground_truth(tmp_path)
    half_dog = dog.copy()
    half_dog[12:16] = False  # IoU 12/36
    seqs = [[_inst(0, cat, (0.0, 1.0, 0.0, 0.0)), _inst(1, dog, (0.0, 1.0, 0.0, 0.0))]]  # dog labelled cat
    per_class = per_class_ap(gt, to_coco_detections(seqs, 4))
    assert set(per_class) == {"cat", "dog"}  # no 'cow' in the ground truth
    assert per_class["cat"] == pytest.approx(1.0, abs=0.01) and per_class["dog"] == 0.0
    recall = proposal_recall(gt, to_coco_detections(seqs, 4, class_agnostic=True))
    assert recall["AR@10@0.5"] == 1.0 and recall["AR@50@0.85"] == 1.0  # class-agnostic: both found
    seqs = [[_inst(0, cat, (0.0, 1.0, 0.0, 0.0)), _inst(1, half_dog, (0.0, 0.0, 1.0, 0.0))]]
    recall = proposal_recall(gt, to_coco_detections(seqs, 4, class_agnostic=True))
    assert recall["AR@10@0.5"] == 0.5 and recall["AR@10@0.7"] == 0.5
    assert proposal_recall(gt, []) == dict.fromkeys(recall, 0.0)
