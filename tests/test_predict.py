"""The predict command: a trained checkpoint on a folder of new images."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO
from rsis.config import to_dict
from rsis.core.checkpoint import save_checkpoint
from rsis.core.model import RSIS
from rsis.predict import main


@pytest.fixture
def checkpoint(tmp_path, tiny_model_cfg):
    torch.manual_seed(0)
    model = RSIS(tiny_model_cfg, num_classes=3)
    path = tmp_path / "best.pt"
    save_checkpoint(path, {"model": model.state_dict(), "model_config": to_dict(tiny_model_cfg), "num_classes": 3,
                           "categories": ["cat", "dog"], "epoch": 4})
    return path


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(folder / "a.png")
    Image.fromarray(rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)).save(folder / "b.jpg")
    Image.fromarray(rng.integers(0, 23_500, (36, 28), dtype=np.uint16)).save(folder / "c.tif")  # 16-bit grey
    (folder / "broken.png").write_bytes(b"\x89PNG truncated")
    (folder / "notes.txt").write_text("not an image: ignored in a folder")
    return folder


def test_predict_writes_three_outputs_per_image_and_counts_the_unreadable(tmp_path, checkpoint, images, capsys):
    out = tmp_path / "out"
    # untrained weights: thresholds that keep every step, so there is something to write
    code = main([str(images), "--checkpoint", str(checkpoint), "--out", str(out), "--device", "cpu",
                 "--stop-threshold", "0", "--mask-threshold", "0", "--min-area-fraction", "0"])
    assert code == 0
    err = capsys.readouterr().err
    assert sum("broken.png" in line for line in err.splitlines()) == 1 and "unreadable" in err
    for stem, (h, w) in {"a": (40, 50), "b": (30, 30), "c": (36, 28)}.items():
        results = json.loads((out / f"{stem}.json").read_text())
        labels = np.asarray(Image.open(out / f"{stem}_label.png"))
        assert labels.shape == (h, w) and len(results) == 6  # T = 6 steps, none dropped at these thresholds
        assert [r["step"] for r in results] == list(range(6))
        assert {r["category"] for r in results} <= {"cat", "dog"} and all(0 <= r["score"] <= 1 for r in results)
        assert set(np.unique(labels)) <= set(range(7))
        assert Image.open(out / f"{stem}_overlay.png").size[0] > 100
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 3 and summary["unreadable"] == 1 and summary["failed"][0]["path"].endswith("broken.png")


def test_predict_errors_are_one_line(tmp_path, checkpoint, images):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "rsis.predict", *args], cwd=REPO, capture_output=True, text=True,
                              timeout=300)

    result = run(str(tmp_path / "nowhere"), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and result.stderr.strip() == f"error: {tmp_path / 'nowhere'}: no such image file or folder"
    (tmp_path / "junk.pt").write_bytes(b"junk")
    result = run(str(images), "--checkpoint", str(tmp_path / "junk.pt"), "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "junk.pt: not a readable checkpoint" in result.stderr
    result = run(str(images / "broken.png"), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o"))
    assert result.returncode == 1 and "broken.png: unreadable image" in result.stderr


def test_predict_seed_term_flags_reach_the_model_and_the_summary(tmp_path, tiny_model_cfg, images, monkeypatch, capsys):
    """--seed-scale / --seed-radius set the inference seed term (evaluate.seed_scale / seed_radius)
    of an instance-embedding model; without them and without a params.yaml the trained term is used."""
    import dataclasses

    torch.manual_seed(0)
    cfg = dataclasses.replace(tiny_model_cfg, instance_embedding=True, image_skip=True)
    path = tmp_path / "embedding.pt"
    save_checkpoint(path, {"model": RSIS(cfg, num_classes=3).state_dict(), "model_config": to_dict(cfg),
                           "num_classes": 3, "categories": ["cat", "dog"], "epoch": 1})
    monkeypatch.chdir(tmp_path)  # no params.yaml here: the paper protocol and the trained seed term
    keep_all = ["--device", "cpu", "--stop-threshold", "0", "--min-area-fraction", "0"]
    runs = {}
    for name, flags in {"trained": [], "set": ["--seed-scale", "2", "--seed-radius", "2.25"],
                        "low": ["--mask-threshold", "0.05"],
                        "scored": ["--mask-threshold", "0.05", "--mask-score"],
                        "flipped": ["--mask-threshold", "0.05", "--test-flips", "vertical"]}.items():
        out = tmp_path / name
        assert main([str(images / "a.png"), "--checkpoint", str(path), "--out", str(out), *keep_all, *flags]) == 0
        runs[name] = (json.loads((out / "summary.json").read_text()), json.loads((out / "a.json").read_text()))
    assert (runs["trained"][0]["seed_scale"], runs["trained"][0]["seed_radius"]) == (None, None)
    assert (runs["set"][0]["seed_scale"], runs["set"][0]["seed_radius"]) == (2.0, 2.25)
    assert [r["segmentation"] for r in runs["set"][1]] != [r["segmentation"] for r in runs["trained"][1]]
    # --mask-score: each score also weighs its mask's maskness (the same masks as without it)
    assert (runs["low"][0]["mask_score"], runs["scored"][0]["mask_score"]) == (False, True)
    assert [r["segmentation"] for r in runs["scored"][1]] == [r["segmentation"] for r in runs["low"][1]]
    assert all(r["maskness"] == 1.0 for r in runs["low"][1]) and runs["scored"][1]
    for plain, scored in zip(runs["low"][1], runs["scored"][1]):
        assert 0.0 < scored["maskness"] < 1.0 and scored["score"] == pytest.approx(plain["score"] * scored["maskness"])
    # --test-flips: the flipped image's sequence may add masks, after the image's own (the same first ones)
    assert (runs["low"][0]["test_flips"], runs["flipped"][0]["test_flips"]) == ([], ["vertical"])
    own = [r["segmentation"] for r in runs["low"][1]]
    assert [r["segmentation"] for r in runs["flipped"][1]][:len(own)] == own
    assert main([str(images / "a.png"), "--checkpoint", str(path), "--out", str(tmp_path / "bad"),
                 "--seed-scale", "-1"]) == 2
    assert "evaluate.seed_scale must be > 0 or null" in capsys.readouterr().err
