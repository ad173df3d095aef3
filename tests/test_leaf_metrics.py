"""CVPPP metrics against values worked out by hand and a direct loop over labels."""

import numpy as np
import pytest

from rsis.evaluation.leaf_metrics import best_dice, image_scores, label_map, summarize


def _loop_best_dice(a, b):
    scores = []
    for la in np.unique(a[a > 0]):
        ma = a == la
        scores.append(max((2 * (ma & (b == lb)).sum() / (ma.sum() + (b == lb).sum()) for lb in np.unique(b[b > 0])),
                          default=0.0))
    return float(np.mean(scores)) if scores else (1.0 if not (b > 0).any() else 0.0)


def test_hand_worked_example():
    gt = np.zeros((4, 6), int)
    gt[:, :3], gt[:, 3:] = 1, 2  # two leaves of 12 pixels
    pred = np.zeros((4, 6), int)
    pred[:, :3] = 5  # leaf 1 exactly, with another label number
    pred[:2, 3:] = 7  # top half of leaf 2
    # BestDice(pred, gt) = (1 + 2*6/(6+12)) / 2 = 5/6 ; BestDice(gt, pred) = same
    s = image_scores(pred, gt)
    assert s["SBD"] == pytest.approx(5 / 6) and s["DiC"] == 0 and s["absDiC"] == 0
    assert s["FBD"] == pytest.approx(2 * 18 / (18 + 24))
    pred[2:, 3:] = 9  # the leaf split in two: DiC = +1, SBD unchanged from the gt side
    s = image_scores(pred, gt)
    assert s["DiC"] == 1 and s["FBD"] == 1.0 and s["SBD"] == pytest.approx(min(5 / 6, (1 + 2 / 3 + 2 / 3) / 3))


def test_best_dice_matches_a_direct_loop_on_random_maps():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.integers(0, 5, (16, 16)), rng.integers(0, 4, (16, 16))
        assert best_dice(a, b) == pytest.approx(_loop_best_dice(a, b))


def test_empty_cases():
    empty, one = np.zeros((3, 3), int), np.ones((3, 3), int)
    assert image_scores(empty, empty) == {"SBD": 1.0, "DiC": 0.0, "absDiC": 0.0, "FBD": 1.0}
    assert image_scores(empty, one)["SBD"] == 0.0 and image_scores(one, empty)["DiC"] == 1.0


def test_label_map_keeps_the_earlier_step_and_summary():
    a, b = np.zeros((2, 2), bool), np.zeros((2, 2), bool)
    a[0] = True
    b[:, 0] = True
    assert label_map([a, b], (2, 2)).tolist() == [[1, 1], [2, 0]]
    summary = summarize([{"SBD": 1.0, "DiC": 1.0, "absDiC": 1.0, "FBD": 1.0},
                         {"SBD": 0.5, "DiC": -1.0, "absDiC": 1.0, "FBD": 0.5}])
    assert summary["SBD_std"] == pytest.approx(0.25 * 2 ** 0.5)  # N - 1, as the official kit (N: 0.25)


def test_identical_labels_give_sbd_one_and_dic_zero_whatever_the_numbering():
    gt = np.random.default_rng(1).integers(0, 6, (12, 12))
    renumbered = np.where(gt > 0, 10 + 3 * gt, 0)
    assert image_scores(renumbered, gt) == {"SBD": 1.0, "DiC": 0.0, "absDiC": 0.0, "FBD": 1.0}


def test_label_map_ids_are_consecutive_when_a_mask_is_hidden():
    """CVPPP's kit counts labels from min to max: a map with ids {1, 2, 4} would score an empty leaf."""
    a = np.zeros((3, 4), bool)
    a[:, :2] = True
    hidden = a.copy()
    hidden[0, 0] = True  # inside a: no pixel left once a is painted
    c = np.zeros((3, 4), bool)
    c[:, 3] = True
    labels = label_map([a, hidden, c], (3, 4))
    assert sorted(np.unique(labels).tolist()) == [0, 1, 2] and labels[0, 3] == 2
