import numpy as np

from rsis.datasets.convert import convert
from rsis.evaluation.coco import evaluate_segm, load_ground_truth
from rsis.files import read_json


def _gt_detections(coco: dict) -> list[dict]:
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "segmentation": a["segmentation"],
             "score": 1.0} for a in coco["annotations"] if not a["iscrowd"]]


def test_ground_truth_as_predictions_scores_one(data_cfg, tiny_paths):
    convert(data_cfg, tiny_paths.data)
    path = f"{tiny_paths.data}/test.json"
    metrics = evaluate_segm(load_ground_truth(path), _gt_detections(read_json(path)))
    for key, value in metrics.items():
        assert value == 1.0, key


def test_shuffled_masks_score_less(data_cfg, tiny_paths):
    convert(data_cfg, tiny_paths.data)
    path = f"{tiny_paths.data}/test.json"
    detections = _gt_detections(read_json(path))
    rng = np.random.default_rng(0)
    segms = [d["segmentation"] for d in detections]
    order = rng.permutation(len(segms))
    shuffled = [{**d, "segmentation": segms[j]} for d, j in zip(detections, order)]
    metrics = evaluate_segm(load_ground_truth(path), shuffled)
    assert metrics["AP50"] < 0.6
    assert metrics["AP"] < 1.0


def test_no_detections_scores_zero(data_cfg, tiny_paths):
    convert(data_cfg, tiny_paths.data)
    assert evaluate_segm(load_ground_truth(f"{tiny_paths.data}/test.json"), [])["AP50"] == 0.0


def test_class_agnostic_ignores_wrong_labels(data_cfg, tiny_paths):
    convert(data_cfg, tiny_paths.data)
    path = f"{tiny_paths.data}/test.json"
    relabelled = [{**d, "category_id": d["category_id"] % 4 + 1} for d in _gt_detections(read_json(path))]
    gt = load_ground_truth(path)
    assert evaluate_segm(gt, relabelled)["AP50"] == 0.0
    assert evaluate_segm(gt, relabelled, class_agnostic=True)["AP50"] == 1.0


def test_ground_truth_boxes_score_one_and_shifted_boxes_less(data_cfg, tiny_paths):
    convert(data_cfg, tiny_paths.data)
    path = f"{tiny_paths.data}/test.json"
    boxes = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
             for a in read_json(path)["annotations"] if not a["iscrowd"]]
    assert evaluate_segm(load_ground_truth(path), boxes, iou_type="bbox")["AP50"] == 1.0
    shifted = [{**b, "bbox": [b["bbox"][0] + b["bbox"][2] * 0.6, *b["bbox"][1:]]} for b in boxes]
    assert evaluate_segm(load_ground_truth(path), shifted, iou_type="bbox")["AP50"] < 0.5


def test_one_evaluation_gives_the_metrics_and_the_per_class_ap(data_cfg, tiny_paths):
    from rsis.evaluation.coco import evaluate_with_classes
    convert(data_cfg, tiny_paths.data)
    path = f"{tiny_paths.data}/test.json"
    gt, detections = load_ground_truth(path), _gt_detections(read_json(path))
    without_squares = [d for d in detections if gt.cats[d["category_id"]]["name"] != "square"]
    metrics, per_class = evaluate_with_classes(gt, without_squares)
    assert metrics == evaluate_segm(gt, without_squares)
    present = {gt.cats[a["category_id"]]["name"] for a in read_json(path)["annotations"] if not a["iscrowd"]}
    assert set(per_class) == present and "square" in present
    assert per_class["square"] == 0.0 and all(v == 1.0 for k, v in per_class.items() if k != "square")
