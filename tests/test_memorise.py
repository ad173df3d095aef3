"""The memorisation check (bench/memorise.py) as a regression test: trained on a few images, the
model must segment those same images. A change that breaks the chain model -> matcher -> loss ->
inference (a wrong assignment, a dropped loss term, inference reading the wrong step) fails it."""

from __future__ import annotations

import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
import memorise  # noqa: E402 (bench/memorise.py)

TINY = ["train.threads=1", "model.hidden_dim=16", "model.image_size=32", "train.batch_size=4", "model.max_steps=6",
        "data.shapes.max_objects=3"]


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["default", "paper"])
def test_a_few_images_are_memorised(tmp_path, variant):
    params = memorise.variant_params(variant, TINY)
    root = memorise.memorisation_data(params, images=4, root=tmp_path)
    result = memorise.memorise(params, root, updates=UPDATES, every=50, target=0.9, log=lambda line: None,
                               stop_at_target=True)
    # at a constant learning rate the score on 4 images moves between evaluations (one object more or
    # less is 0.1-0.2 AP50), so the check is that it gets there, not where it happens to be at the end
    # (the run ends there: what would follow cannot change the verdict)
    assert any(p["AP50"] >= 0.9 and p["agnostic_AP50"] >= 0.9 for p in result["curve"]), result["curve"]


UPDATES = 800  # a margin: on this 2-core CPU (2026-12-07) the default first reached 0.9 at 100 updates, the paper at 450
