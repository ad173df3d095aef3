"""The bench's original-style step must do the same work as RSIS's, or its ratio means nothing."""

from __future__ import annotations

import sys

import pytest
import torch

from rsis.criterion import RSISCriterion
from rsis.matcher import HungarianMatcher
from rsis.model import RSISOutput

from conftest import REPO

pytest.importorskip("munkres")
sys.path.insert(0, str(REPO / "bench"))
import compare  # noqa: E402 (bench/compare.py)


def _problem(seed: int):
    """A batch of 4 images with 0, 2, 5 and 9 targets (more than the 6 steps), soft random masks and
    an ignore region, so the assignment is unique and every branch of the matchers runs."""
    gen = torch.Generator().manual_seed(seed)
    steps, size = 6, 12
    logits = torch.randn(4, steps, size, size, generator=gen) * 3
    targets = []
    for n in (0, 2, 5, 9):
        ignore = torch.zeros(size, size)
        ignore[:2] = 1.0
        targets.append({"masks": (torch.rand(n, size, size, generator=gen) > 0.6).to(torch.uint8),
                        "labels": torch.randint(1, 4, (n,), generator=gen), "ignore": ignore})
    return logits, targets


@pytest.mark.parametrize("seed", range(5))
def test_original_style_matcher_finds_the_same_assignment(seed):
    logits, targets = _problem(seed)
    ours = HungarianMatcher()(logits, targets)
    original = compare.OriginalStyleMatcher()(logits, targets)
    assert [len(rows) for rows, _ in ours] == [0, 2, 5, 6]
    for (rows_a, cols_a), (rows_b, cols_b) in zip(ours, original):
        assert rows_a.tolist() == rows_b.tolist()
        assert cols_a.tolist() == cols_b.tolist()


def test_both_steps_give_the_same_losses():
    logits, targets = _problem(7)
    batch, steps = logits.shape[:2]
    gen = torch.Generator().manual_seed(1)
    outputs = RSISOutput(mask_logits=logits, class_logits=torch.randn(batch, steps, 4, generator=gen),
                         stop_logits=torch.randn(batch, steps, generator=gen),
                         boxes=torch.rand(batch, steps, 4, generator=gen).sort(-1).values)
    ours = RSISCriterion(HungarianMatcher())(outputs, targets)
    original = RSISCriterion(compare.OriginalStyleMatcher())(outputs, targets)
    assert ours.keys() == original.keys()
    for name in ours:
        assert torch.equal(ours[name], original[name]), name
