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


def test_mask_score_ranks_each_step_by_objectness_times_its_masks_mean_probability():
    """evaluate.mask_score: maskness is the mean probability over the pixels the mask keeps (at
    evaluate.mask_threshold), and every detection's score is multiplied by it; off, the paper's
    p(c) * objectness and maskness 1."""
    import math

    import torch

    from rsis.config import EvaluateConfig
    from rsis.core.model import RSISOutput
    from rsis.evaluation.inference import postprocess

    logits = torch.full((1, 2, 4, 4), -6.0)
    logits[0, 0, :2, :2] = 4.0  # a crisp mask: four pixels at p = 0.982
    logits[0, 1, 2:, 2:] = 0.2  # a vague one: four pixels at p = 0.550 ...
    logits[0, 1, 2, 1] = -0.4  # ... and one at p = 0.401, kept at mask threshold 0.3 only
    outputs = RSISOutput(mask_logits=logits, class_logits=torch.tensor([[[0.0, 2.0, 0.0], [0.0, 0.0, 2.0]]]),
                         stop_logits=torch.logit(torch.tensor([[0.6, 0.7]])), boxes=torch.zeros(1, 2, 4))
    paper = EvaluateConfig(batch_size=1, stop_threshold=0.5, mask_threshold=0.5, min_area_fraction=0.0)
    [plain] = postprocess(outputs, [(4, 4)], [1], paper)
    assert [inst.maskness for inst in plain] == [1.0, 1.0]
    assert [inst.score for inst in plain] == pytest.approx([0.6, 0.7])
    assert [int(inst.mask.sum()) for inst in plain] == [4, 4]
    scored = EvaluateConfig(batch_size=1, stop_threshold=0.5, mask_threshold=0.3, min_area_fraction=0.0,
                            mask_score=True)
    [sequence] = postprocess(outputs, [(4, 4)], [1], scored)
    sigmoid = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    assert [int(inst.mask.sum()) for inst in sequence] == [4, 5]
    assert sequence[0].maskness == pytest.approx(sigmoid(4.0), rel=1e-5)
    assert sequence[1].maskness == pytest.approx((4 * sigmoid(0.2) + sigmoid(-0.4)) / 5, rel=1e-5)
    # the crisp step now outranks the vaguer one the network was surer of, in both rankings
    agnostic = to_coco_detections([sequence], 3, class_agnostic=True)
    assert [d["score"] for d in agnostic] == pytest.approx([0.6 * sequence[0].maskness, 0.7 * sequence[1].maskness])
    assert agnostic[0]["score"] > agnostic[1]["score"]
    per_class = to_coco_detections([sequence], 3)
    first = [d for d in per_class if d["category_id"] == 1][0]
    assert first["score"] == pytest.approx(sequence[0].class_probs[1] * 0.6 * sequence[0].maskness)
    assert sequence[0].to_json()["maskness"] == sequence[0].maskness


def test_flip_test_adds_what_a_flipped_view_finds_and_nothing_it_repeats(tmp_path):
    """evaluate.test_flips: each flipped view's sequence is flipped back (masks and boxes) and adds,
    after the image's own sequence, the masks no kept mask overlaps by IoU over 0.5, scored x flip_score;
    the analysis reads only the image's own sequence."""
    import torch

    from rsis.analysis.run import load_sequences
    from rsis.config import EvaluateConfig
    from rsis.core.model import RSISOutput
    from rsis.evaluation.inference import read_views

    def outputs(blocks, boxes):  # one image, one step per (rows, cols) block of confident pixels
        logits = torch.full((1, len(blocks), 6, 6), -6.0)
        for t, (rows, cols) in enumerate(blocks):
            logits[0, t, rows, cols] = 6.0
        return RSISOutput(mask_logits=logits, class_logits=torch.zeros(1, len(blocks), 3),
                          stop_logits=torch.full((1, len(blocks)), 3.0), boxes=torch.tensor([boxes]))

    top, bottom = (slice(0, 2), slice(0, 3)), (slice(4, 6), slice(0, 3))
    own = outputs([top], [[0.0, 0.0, 0.5, 1 / 3]])
    # the vertically flipped image: its first step is the bottom object (seen at the top of the flipped
    # image), its second the top object again, already kept
    vertical = outputs([top, bottom], [[0.0, 0.0, 0.5, 1 / 3], [0.0, 2 / 3, 0.5, 1.0]])
    cfg = EvaluateConfig(batch_size=1, stop_threshold=0.5, mask_threshold=0.5, min_area_fraction=0.0,
                         test_flips=("vertical",), flip_score=0.5)
    [sequence] = read_views([("image", own), ("vertical", vertical)], [(6, 6)], [1], cfg)
    assert [inst.view for inst in sequence] == ["image", "vertical"]
    expected = np.zeros((6, 6), bool)
    expected[4:6, 0:3] = True  # the flipped view's top block is the image's bottom one
    assert (sequence[1].mask == expected).all() and (sequence[0].mask == np.flipud(expected)).all()
    assert sequence[1].box == pytest.approx((0.0, 4.0, 3.0, 6.0))  # y edges flipped back: 1 - y1, 1 - y0
    assert sequence[1].score == pytest.approx(0.5 * sequence[0].score)
    assert [d["score"] for d in to_coco_detections([sequence], 3, class_agnostic=True)] == pytest.approx(
        [sequence[0].score, 0.5 * sequence[0].score])
    # off: the image's own sequence alone
    [alone] = read_views([("image", own)], [(6, 6)], [1], cfg)
    assert len(alone) == 1
    # the analysis stage reads the model's own steps only
    document = {"images": [{"image_id": 1, "file_name": "a.png", "instances": [
        {**inst.to_json(), "label": 1} for inst in sequence]}]}
    path = tmp_path / "predictions.json"
    path.write_text(json.dumps(document))
    [analysed] = load_sequences(path)
    assert analysed["steps"] == [0] and len(analysed["masks"]) == 1
