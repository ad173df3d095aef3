"""The paper-comparison report."""

import typing

import pytest

from rsis.config import DataConfig
from rsis.evaluation.report import paper_comparison

DATASETS = typing.get_args(typing.get_type_hints(DataConfig)["dataset"])  # what params.yaml accepts


def test_pascal_row_shows_percentages_next_to_the_paper():
    metrics = {"segm": {"AP@0.5": 0.5, "AP@0.6": 0.4, "AP@0.7": 0.3, "AP@0.8": 0.2},
               "proposals": {"AR@10@0.5": 0.7}, "counts": {"images": 3, "gt_instances": 9}, "checkpoint_epoch": 4}
    text = paper_comparison("voc", metrics)
    assert "| AP@0.5 | 50.0 | n/a | 57.6 |" in text and "| class-agnostic AR@10 at IoU 0.5 | 70.0 | n/a | 68.2 |" in text
    assert "Test images: 3" in text


def test_intervals_are_shown_beside_their_metric():
    metrics = {"segm": {"AP@0.5": 0.5, "AP@0.6": 0.4}, "proposals": {"AR@10@0.5": 0.7},
               "intervals": {"resamples": 1000, "confidence": 0.95, "seed": 0,
                             "segm": {"AP50": {"low": 0.42, "high": 0.58, "se": 0.04}},
                             "proposals": {"AR@10@0.5": {"low": 0.65, "high": 0.751, "se": 0.03}}}}
    text = paper_comparison("shapes", metrics)
    assert "| AP@0.5 | 50.0 | 42.0-58.0 | 57.6 |" in text and "| AP@0.6 | 40.0 | n/a | 52.5 |" in text
    assert "| class-agnostic AR@10 at IoU 0.5 | 70.0 | 65.0-75.1 | 68.2 |" in text
    assert "95% percentile bootstrap" in text and "1000 resamples" in text


def test_cvppp_counts_are_not_percentages_and_missing_values_say_so():
    text = paper_comparison("leaves", {"cvppp": {"SBD_mean": 0.5, "absDiC_mean": 2.25}})
    assert "| SBD | 50.0 | n/a | 70.6 |" in text and "| SBD std | n/a | n/a | 11.2 |" in text
    assert r"| \|DiC\| (count error) | 2.25 | n/a | 1.2 |" in text
    assert "for scale only" in text


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_dataset_has_a_report(dataset):
    assert paper_comparison(dataset, {}).startswith("# This run vs. the paper")
