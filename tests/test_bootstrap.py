"""Bootstrap confidence intervals of the test metrics (rsis/evaluation/bootstrap.py)."""

import contextlib
import copy
import io

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from rsis.evaluation.bootstrap import Resampler, average_precision, bootstrap_intervals
from rsis.evaluation.coco import evaluate_segm, proposal_recall, recall_params, run_cocoeval

SIDE, CLASSES = 48, 3


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode()
    return rle


def _box(y: int, x: int, h: int, w: int) -> np.ndarray:
    mask = np.zeros((SIDE, SIDE), dtype=bool)
    mask[y:y + h, x:x + w] = True
    return mask


def noisy_split(n_images: int, seed: int = 0) -> tuple[COCO, list[dict], list[dict]]:
    """Ground truth of ``n_images`` images (1-4 rectangles each) and an imperfect model's detections:
    some masks right, some shifted, some of the wrong class, some missed, some false positives."""
    rng = np.random.default_rng(seed)
    images, annotations, detections = [], [], []
    for image_id in range(1, n_images + 1):
        images.append({"id": image_id, "width": SIDE, "height": SIDE, "file_name": f"{image_id}.png"})
        for _ in range(rng.integers(1, 5)):
            y, x, h, w = rng.integers(0, SIDE // 2, 2).tolist() + rng.integers(8, SIDE // 2, 2).tolist()
            gt, cat = _box(y, x, h, w), int(rng.integers(1, CLASSES + 1))
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cat,
                                "segmentation": _rle(gt), "area": int(gt.sum()), "bbox": [x, y, w, h], "iscrowd": 0})
            fate = rng.random()
            if fate < 0.15:
                continue  # missed
            mask = _box(y + h // 2, x + w // 2, h, w) if fate < 0.35 else gt  # shifted: IoU < 0.5
            label = cat % CLASSES + 1 if fate > 0.85 else cat  # wrong class
            detections.append({"image_id": image_id, "category_id": label, "segmentation": _rle(mask),
                               "score": float(rng.uniform(0.3, 1.0))})
        if rng.random() < 0.3:  # a false positive
            y, x = rng.integers(0, SIDE // 2, 2).tolist()
            detections.append({"image_id": image_id, "category_id": int(rng.integers(1, CLASSES + 1)),
                               "segmentation": _rle(_box(y, x, 10, 10)), "score": float(rng.uniform(0.0, 0.8))})
    ground_truth = COCO()
    ground_truth.dataset = {"images": images, "annotations": annotations,
                            "categories": [{"id": c, "name": f"c{c}"} for c in range(1, CLASSES + 1)]}
    with contextlib.redirect_stdout(io.StringIO()):
        ground_truth.createIndex()
    proposals = [{**d, "category_id": 1} for d in detections]
    return ground_truth, detections, proposals


def test_the_identity_draw_gives_the_point_metrics_exactly():
    ground_truth, detections, proposals = noisy_split(30)
    everything = list(range(30))
    segm = Resampler(run_cocoeval(ground_truth, detections, "segm", use_cats=True))
    precision, ious = segm.accumulate(everything)["precision"], segm.iou_thresholds
    point = evaluate_segm(ground_truth, detections)
    assert average_precision(precision, ious, 0.5) == point["AP50"]
    assert average_precision(precision, ious) == point["AP"]
    agnostic = Resampler(run_cocoeval(ground_truth, proposals, "segm", use_cats=False))
    assert (average_precision(agnostic.accumulate(everything)["precision"], ious, 0.5)
            == evaluate_segm(ground_truth, proposals, class_agnostic=True)["AP50"])


def test_an_image_drawn_twice_counts_as_two_copies_of_it():
    ground_truth, detections, _ = noisy_split(3, seed=5)
    segm = Resampler(run_cocoeval(ground_truth, detections, "segm", use_cats=True))
    ious = segm.iou_thresholds
    drawn = segm.accumulate([0, 0, 2])["precision"]
    # the same split written out: image 1 and a copy of it (id 4), image 3; image 2 left out
    data = ground_truth.dataset
    copy_of = {**data["images"][0], "id": 4}
    anns = [a for a in data["annotations"] if a["image_id"] in (1, 3)]
    anns += [{**a, "id": 1000 + a["id"], "image_id": 4} for a in data["annotations"] if a["image_id"] == 1]
    written = COCO()
    written.dataset = {"images": [data["images"][0], data["images"][2], copy_of], "annotations": anns,
                       "categories": data["categories"]}
    with contextlib.redirect_stdout(io.StringIO()):
        written.createIndex()
    dets = [d for d in detections if d["image_id"] in (1, 3)] + [{**d, "image_id": 4} for d in detections
                                                                 if d["image_id"] == 1]
    expected = evaluate_segm(written, dets)
    assert average_precision(drawn, ious, 0.5) == pytest.approx(expected["AP50"], abs=1e-12)
    assert average_precision(drawn, ious) == pytest.approx(expected["AP"], abs=1e-12)


def _pycocotools_accumulate(evaluator, positions: list[int]) -> dict:
    """pycocotools' own accumulate over the images at ``positions`` (area 'all', the last limit)."""
    params = evaluator._paramsEval
    n_images, n_areas = len(params.imgIds), len(params.areaRng)
    area = params.areaRngLbl.index("all")
    n_cats = len(params.catIds) if params.useCats else 1
    reference = COCOeval(iouType=params.iouType)
    p = copy.deepcopy(params)
    p.areaRng, p.areaRngLbl, p.maxDets = [params.areaRng[area]], ["all"], [params.maxDets[-1]]
    p.imgIds = list(range(len(positions)))
    reference.params, reference._paramsEval = p, copy.copy(p)
    reference.evalImgs = [evaluator.evalImgs[(k * n_areas + area) * n_images + i]
                          for k in range(n_cats) for i in positions]
    with contextlib.redirect_stdout(io.StringIO()):
        reference.accumulate()
    return reference.eval


@pytest.mark.parametrize("use_cats, configure", [(True, None), (False, None),
                                                 (False, recall_params((0.5,), (10,)))])
def test_the_resampler_gives_pycocotools_accumulate_bit_for_bit(use_cats, configure):
    ground_truth, detections, _ = noisy_split(40, seed=7)
    rng = np.random.default_rng(0)
    for d in detections[::3]:  # tied scores across images: the stable sort's order decides between them
        d["score"] = 0.5
    for d in detections[1::7]:
        d["score"] = 1.0
    if not use_cats:
        detections = [{**d, "category_id": 1} for d in detections]
    evaluator = run_cocoeval(ground_truth, detections, "segm", use_cats=use_cats, configure=configure)
    resampler = Resampler(evaluator)
    draws = [list(range(40)), [3], [5, 5, 5], list(range(39, -1, -1))] + [rng.integers(0, 40, 40).tolist()
                                                                        for _ in range(20)]
    for positions in draws:
        expected, got = _pycocotools_accumulate(evaluator, positions), resampler.accumulate(positions)
        assert np.array_equal(got["precision"], expected["precision"]), positions
        assert np.array_equal(got["recall"], expected["recall"]), positions


def _width(bounds: dict) -> float:
    return bounds["high"] - bounds["low"]


def test_intervals_cover_the_point_values_and_narrow_with_more_images():
    widths = {}
    for n in (40, 320):
        ground_truth, detections, proposals = noisy_split(n, seed=n)
        out = bootstrap_intervals(ground_truth, detections, proposals, resamples=300, seed=0)
        point = {("segm", "AP50"): evaluate_segm(ground_truth, detections)["AP50"],
                 ("segm", "AP"): evaluate_segm(ground_truth, detections)["AP"],
                 ("segm_class_agnostic", "AP50"): evaluate_segm(ground_truth, proposals, class_agnostic=True)["AP50"],
                 ("proposals", "AR@10@0.5"): proposal_recall(ground_truth, proposals)["AR@10@0.5"]}
        for (section, key), value in point.items():
            bounds = out[section][key]
            assert bounds["low"] <= value <= bounds["high"], (n, section, key, value, bounds)
            assert 0.0 < _width(bounds) and 0.0 < bounds["se"]
            widths[n, section, key] = _width(bounds)
    for section, key in point:
        # 8x the images: the width shrinks about sqrt(8) = 2.8x; ask for 1.8x
        assert widths[320, section, key] < widths[40, section, key] / 1.8, (section, key, widths)


def test_intervals_are_deterministic_and_follow_the_seed():
    ground_truth, detections, proposals = noisy_split(40)
    first = bootstrap_intervals(ground_truth, detections, proposals, resamples=50, seed=3)
    assert first == bootstrap_intervals(ground_truth, detections, proposals, resamples=50, seed=3)
    assert first != bootstrap_intervals(ground_truth, detections, proposals, resamples=50, seed=4)
    assert (first["resamples"], first["confidence"], first["seed"]) == (50, 0.95, 3)


def test_cvppp_means_get_intervals_too():
    ground_truth, detections, proposals = noisy_split(40)
    rng = np.random.default_rng(1)
    scores = {i: {"SBD": rng.uniform(0.6, 0.9), "DiC": float(rng.integers(-2, 3)), "absDiC": 0.0,
                  "FBD": rng.uniform(0.8, 1.0)} for i in ground_truth.getImgIds()}
    out = bootstrap_intervals(ground_truth, detections, proposals, leaf_scores=scores, resamples=200)
    sbd = np.mean([s["SBD"] for s in scores.values()])
    assert out["cvppp"]["SBD_mean"]["low"] < sbd < out["cvppp"]["SBD_mean"]["high"]
    assert out["cvppp"]["absDiC_mean"] == {"low": 0.0, "high": 0.0, "se": 0.0}  # constant: no spread
    with pytest.raises(ValueError, match="CVPPP scores missing for 1 test images"):
        bootstrap_intervals(ground_truth, detections, proposals, leaf_scores=dict(list(scores.items())[1:]),
                            resamples=5)


def test_no_detections_give_no_ap_intervals():
    ground_truth, _, _ = noisy_split(5)
    out = bootstrap_intervals(ground_truth, [], [], resamples=5)
    assert "segm" not in out and out["resamples"] == 5
