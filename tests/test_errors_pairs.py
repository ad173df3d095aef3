"""Consecutive-pair rule and error analysis against hand-built answers."""

import numpy as np
import pytest

from rsis.analysis.error_analysis import by_object, by_step, image_errors
from rsis.analysis.ordering import ObjectGeometry, consecutive_pair_shares, pair_follows


def test_fifteen_percent_rule_at_the_boundary():
    a = ObjectGeometry(x=50.0, y=50.0, area=100.0)
    assert pair_follows(a, ObjectGeometry(34.9, 50, 100), "r2l", width=100, height=100)  # 15.1 px left
    assert not pair_follows(a, ObjectGeometry(35.0, 50, 100), "r2l", width=100, height=100)  # exactly 15%: no
    assert not pair_follows(a, ObjectGeometry(70.0, 50, 100), "r2l", width=100, height=100)  # to the right
    assert pair_follows(a, ObjectGeometry(50, 20.0, 100), "b2t", width=100, height=200) is False  # 30 px < 15% of 200
    assert pair_follows(a, ObjectGeometry(50, 19.0, 100), "b2t", width=100, height=200)
    assert pair_follows(a, ObjectGeometry(50, 50, 84.0), "l2s", 100, 100)
    assert not pair_follows(a, ObjectGeometry(50, 50, 85.0), "l2s", 100, 100)


def test_pair_shares_per_category_pair_with_a_minimum_count():
    right, middle, left = ObjectGeometry(90, 50, 10), ObjectGeometry(50, 50, 10), ObjectGeometry(10, 50, 10)
    sequences = [([right, middle, left], ["car", "car", "dog"], 100, 100)] * 3 + [([left, right], ["dog", "car"], 100, 100)]
    rows = consecutive_pair_shares(sequences, min_count=2)
    assert rows == [{"first": "car", "second": "car", "count": 3, "r2l": 1.0, "b2t": 0.0, "l2s": 0.0},
                    {"first": "car", "second": "dog", "count": 3, "r2l": 1.0, "b2t": 0.0, "l2s": 0.0}]
    assert len(consecutive_pair_shares(sequences, min_count=1)) == 3  # dog->car seen once


def _square(r0, c0, side, shape=(20, 20)):
    m = np.zeros(shape, bool)
    m[r0:r0 + side, c0:c0 + side] = True
    return m


def test_error_counts_on_a_hand_built_image():
    gt = [_square(0, 0, 10), _square(12, 12, 4)]  # 100 px (25%) and 16 px (4%)
    pred = [_square(0, 0, 10), _square(0, 10, 5), _square(12, 12, 2)]  # exact, nowhere, 4 of 16 px
    errors = [image_errors(pred, [0, 1, 2], gt)]
    assert by_step(errors) == [{"step": 1, "predictions": 1, "false_positives": 0, "mean_matched_iou": 1.0},
                               {"step": 2, "predictions": 1, "false_positives": 1, "mean_matched_iou": None},
                               {"step": 3, "predictions": 1, "false_positives": 1, "mean_matched_iou": None}]
    assert by_object(errors) == [{"size_pct": 25.0, "iou": 1.0, "found": 1}, {"size_pct": 4.0, "iou": 0.0, "found": 0}]


def test_matching_is_one_to_one():
    gt = [_square(0, 0, 10)]
    errors = image_errors([_square(0, 0, 10), _square(0, 0, 10)], [0, 1], gt)  # a duplicate is a false positive
    assert errors.matched_iou == [1.0, None] and errors.gt_iou == [1.0]
    empty = image_errors([], [], gt)
    assert empty.gt_iou == [0.0] and by_step([empty]) == []
    assert image_errors([_square(0, 0, 3)], [0], []).matched_iou == [None]
    assert image_errors([_square(0, 0, 10)], [0], [_square(0, 0, 10)]).gt_size_pct == pytest.approx([25.0])
