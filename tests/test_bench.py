"""The bench's original-style step must do the same work as RSIS's, or its ratio means nothing."""

from __future__ import annotations

import sys

import pytest
import torch

from rsis.core.criterion import RSISCriterion
from rsis.core.matcher import HungarianMatcher
from rsis.core.model import RSISOutput

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


def test_paired_rates_take_turns_and_take_the_median(monkeypatch):
    """Mask R-CNN and RSIS alternate call by call (a slow moment of the host falls on both), and one
    slow call does not move a rate: the median of its calls is read."""
    now, calls = [0.0], []
    seconds = {"a": [9, 1, 1, 50, 1], "b": [9, 2, 2, 2, 2]}  # per call, warm-up first; one slow call of a

    def run(name):
        def call():
            calls.append(name)
            now[0] += seconds[name].pop(0)
        return call

    monkeypatch.setattr(compare.time, "perf_counter", lambda: now[0])
    rates = compare.paired_images_per_s([run("a"), run("b")], images=8, iters=4, device=torch.device("cpu"))
    assert calls == ["a", "b"] + ["a", "b"] * 4  # warm-up, then turns
    assert rates == [8.0, 4.0]


def test_results_md_gathers_every_bench_json(tmp_path):
    """bench/RESULTS.md is rendered from results.json plus throughput.json and queue.json when present,
    so one bench script's rerun does not drop the others' figures."""
    import json

    import bench

    document = {"machine": {}, "results": [], "inference_vs_maskrcnn": [], "training_step_vs_original": [],
                "data_loading": [], "repro_stages": []}
    (tmp_path / "results.json").write_text(json.dumps(document))
    bench.render(tmp_path)
    assert "CPU training step" not in (tmp_path / "RESULTS.md").read_text()
    (tmp_path / "throughput.json").write_text(json.dumps({"rows": [
        {"config": "default", "threads": 2, "adam": "fused", "batch": 8, "seconds_per_step": 0.31,
         "images_per_s": 25.8, "note": "now"},  # written before the kernels column: read as native
        {"config": "default", "threads": 2, "adam": "fused", "kernels": "AVX2 (pinned)", "batch": 8,
         "seconds_per_step": 0.4, "images_per_s": 20.0, "note": "train.reproducible"}]}))
    (tmp_path / "queue.json").write_text(json.dumps({"experiments": 2, "epochs": 1, "sequential_s": 300.0,
                                                     "queue_j2_threads1_s": 200.0, "speedup": 1.5, "cpu_count": 2}))
    bench.render(tmp_path)
    text = (tmp_path / "RESULTS.md").read_text()
    assert "| default | 2 | fused | native | 0.31 | 25.8 | now |" in text
    assert "| default | 2 | fused | AVX2 (pinned) | 0.4 | 20.0 | train.reproducible |" in text
    assert "| 300.0 s | 200.0 s | 1.5x |" in text


def test_ablation_collect_reports_a_stopped_run(tmp_path, monkeypatch):
    """A long run stopped before its last epoch still yields its learning curve and says it stopped."""
    import pandas as pd

    import ablation

    (tmp_path / "out" / "paper").mkdir(parents=True)
    pd.DataFrame([{"epoch": 1, "updates": 400, "AP50": 0.1}, {"epoch": 3, "updates": 800, "AP50": 0.2}]).to_csv(
        tmp_path / "out" / "paper" / "curve.csv", index=False)
    report = tmp_path / "LONG.md"
    monkeypatch.setattr(sys, "argv", ["ablation.py", "--only", "paper", "--curve", "2", "--collect",
                                      "--out", str(tmp_path / "out"), "--report", str(report)])
    ablation.main()
    assert "paper (stopped; its curve reaches 800 updates)" in report.read_text()
    curve = pd.read_csv(report.with_suffix(".curve.csv"))
    assert list(curve["updates"]) == [400, 800] and set(curve["variant"]) == {"paper"}


def test_ablation_workers_train_on_the_params_of_the_start(tmp_path, monkeypatch):
    """Each variant's params are resolved and written when the run starts, and its worker reads them from
    there: editing params.yaml during a long ablation changes nothing in it (it used to crash the run)."""
    import json
    import subprocess

    import ablation

    (tmp_path / "out" / "data").mkdir(parents=True)
    (tmp_path / "out" / "data" / "test.json").write_text("{}")  # no conversion
    started = []

    class Finished:
        returncode = 0

        def __init__(self, command, **kwargs):
            started.append(command)

        def poll(self):
            return 0

    monkeypatch.setattr(subprocess, "Popen", Finished)
    monkeypatch.setattr(ablation.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(sys, "argv", ["ablation.py", "--only", "paper", "default", "--set", "train.epochs=3",
                                      "--out", str(tmp_path / "out"), "--report", str(tmp_path / "A.md")])
    ablation.main()
    assert [c[c.index("--worker") + 1] for c in started] == ["paper", "default"]
    assert all("--set" not in c for c in started)  # the workers' params come from the snapshot alone
    paper = json.loads(ablation.snapshot_file(tmp_path / "out", "paper").read_text())
    default = json.loads(ablation.snapshot_file(tmp_path / "out", "default").read_text())
    assert paper["train"]["epochs"] == default["train"]["epochs"] == 3
    assert paper["model"]["canvas"] is False and default["model"]["canvas"] is True
    assert ablation.sections(paper)["train"].epochs == 3


def test_a_preset_is_a_variant_not_a_set(monkeypatch):
    """``--set preset=paper`` used to be applied after the preset and change nothing: both bench/ablation.py
    and bench/speedup.py refuse it, and speedup.py's --variant trains the paper configuration on both sides."""
    import ablation
    import speedup

    with pytest.raises(ValueError, match="'preset=paper'.*SECTION.KEY=VALUE"):
        ablation.variant_params("default", ["preset=paper"])
    paper = ablation.variant_params("paper", [])
    assert paper["train"].batch_size == 8 and paper["model"].canvas is False  # presets/paper.yaml's values
    monkeypatch.setattr(sys, "argv", ["speedup.py", "--old", "HEAD", "--set-new", "preset=paper"])
    with pytest.raises(SystemExit):
        speedup.main()
    started = []
    monkeypatch.setattr(speedup.subprocess, "Popen", lambda command, **kwargs: started.append(command) or 1 / 0)
    with pytest.raises(ZeroDivisionError):
        speedup.start_worker(REPO, REPO / "data", False, "paper", ["train.threads=1"])
    assert started[0][-3:] == ["pinned", "paper", "train.threads=1"]


def test_results_md_shows_the_side_by_side_ratio_and_flop_account(tmp_path):
    """bench/speedup.py's JSON renders as the old/new table, the ratio and where the new step's time goes."""
    import json

    import bench

    (tmp_path / "results.json").write_text(json.dumps({"machine": {}, "results": [], "inference_vs_maskrcnn": [],
                                                       "training_step_vs_original": [], "data_loading": [],
                                                       "repro_stages": []}))
    side = {"batch": 16, "threads": 2, "kernels": "AVX2", "weights_sha256": "ab"}
    (tmp_path / "speedup.json").write_text(json.dumps({
        "batches_timed": 20, "wall_s": 60.0, "ratio": 1.2, "same_weights_after_training": False,
        "ratio_per_batch": {"median": 1.19, "min": 1.0, "max": 1.4},
        "old": {**side, "revision": "a" * 40, "channels_last": False, "seconds_per_step": 0.48, "images_per_s": 33.3},
        "new": {**side, "revision": "b" * 40 + "+changes", "channels_last": True, "seconds_per_step": 0.4,
                "images_per_s": 40.0},
        "new_step_account": {"gflop_per_step": 20.0, "gflop_by_operator": {"convolution": 7.0,
                                                                           "convolution_backward": 13.0},
                             "seconds_per_step_profiled": 0.5, "aten_calls_per_step": 9000,
                             "seconds_by_kind": {"convolution forward": 0.1, "convolution backward": 0.15,
                                                 "other operators (elementwise, cat, copies, indexing)": 0.25},
                             "achieved_gflop_s": 40.0, "convolution_gflop_s": 80.0, "sgemm_2048_gflop_s": 150.0,
                             "loading_seconds_per_batch": 0.01}}))
    smaller = json.loads((tmp_path / "speedup.json").read_text())  # a params change of one commit (--set-new)
    smaller["new"].update(revision="a" * 40, overrides=["model.hidden_dim=32"])
    smaller["ratio"] = 1.3
    (tmp_path / "speedup_smaller.json").write_text(json.dumps(smaller))
    paper = {**json.loads((tmp_path / "speedup.json").read_text()), "variant": "paper",  # --variant paper
             "machine": {"processor": "AMD EPYC (cpu family 25, model 1)"}}
    (tmp_path / "speedup_paper.json").write_text(json.dumps(paper))
    bench.render(tmp_path)
    text = (tmp_path / "RESULTS.md").read_text()
    assert f"| new | `{'b' * 12}+changes`, AVX2 kernels, channels_last True | 0.4 | 40.0 |" in text
    assert "**Ratio new / old: 1.2x**" in text and "**20.0 GFLOP/step**" in text
    assert "| convolution backward | 0.15 | 30% |" in text
    default_section, rest = text.split("## Old and new default")[1].split("## The paper configuration's")
    assert "2 threads of AMD EPYC (cpu family 25, model 1), 60.0 s wall" in rest and "EPYC" not in default_section
    assert "variant" not in default_section and f"`{'b' * 12}+changes`, AVX2 kernels, channels_last True, variant `paper`" in rest
    smaller_section = rest.split("## The fastest step")[1]
    assert "**Ratio new / old: 1.2x**" in default_section and "hidden_dim" not in default_section
    assert (f"| new | `{'a' * 12}`, AVX2 kernels, channels_last True, `model.hidden_dim=32` | 0.4 | 40.0 |"
            in smaller_section and "**Ratio new / old: 1.3x**" in smaller_section)


def test_seeds_table_summarises_the_runs(monkeypatch):
    import seeds  # bench/seeds.py

    monkeypatch.setattr(seeds.os, "cpu_count", lambda: 2)

    rows = [{"seed": s, "AP50": ap, "agnostic_AP50": ap + 0.03, "AR@10@0.5": ap + 0.05, "AP": ap - 0.01,
             "best_val_loss": 2.0 + s / 10, "train_seconds": 700.0, "AP50_ci": "0.80-0.90",
             "agnostic_AP50_ci": "", "AR@10@0.5_ci": ""} for s, ap in ((0, 0.85), (1, 0.87), (2, 0.89))]
    stats = seeds.summary(rows)
    assert stats["AP50"]["mean"] == pytest.approx(0.87) and stats["AP50"]["std"] == pytest.approx(0.02)
    assert (stats["AP50"]["min"], stats["AP50"]["max"]) == (0.85, 0.89)
    text = seeds.markdown(rows, 1234.0, 2, "abc1234")
    assert "| 1 | 0.870 | 0.80-0.90 | 0.900 |" in text and "| **std** | 0.020 |" in text
    assert "1234 s wall" in text and "commit abc1234" in text
    assert "2 at a time with 1 thread each on a 2-core CPU" in text
    assert "1 at a time with 2 threads each on a 2-core CPU" in seeds.markdown(rows, 1234.0, 1, "abc1234")


def test_seeds_add_keeps_the_same_commits_rows_and_the_earlier_recipes_section(tmp_path):
    import seeds  # bench/seeds.py

    def row(seed, commit, ap):
        return {"seed": seed, "commit": commit, "AP50": ap, "agnostic_AP50": ap, "AR@10@0.5": ap, "AP": ap,
                "best_val_loss": 2.0, "train_seconds": 700.0, "AP50_ci": "0.80-0.90", "agnostic_AP50_ci": "",
                "AR@10@0.5_ci": ""}

    out = tmp_path / "SEEDS.md"
    out.write_text("# old table\n\n## Earlier recipes\n\nwritten by hand\n")
    seeds.write(out, [row(0, "abc1234", 0.85), row(1, "abc1234", 0.87), row(0, "fff0000", 0.5)], 100.0, 2,
                "abc1234", [0, 1])
    kept = seeds.earlier_rows(tmp_path / "seeds.csv", "abc1234", [1, 2])  # seed 1 trained again: not kept
    assert kept == [row(0, "abc1234", 0.85)]
    seeds.write(out, kept + [row(1, "abc1234", 0.89), row(2, "abc1234", 0.91)], 300.0, 2, "abc1234", [1, 2])
    text = out.read_text()
    assert "| 1 | 0.890 |" in text and "| 0 | 0.850 |" in text and "| **mean** | 0.883 |" in text
    assert "300 s wall for seeds 1, 2, the others from an earlier run on the same commit" in text
    assert text.endswith("## Earlier recipes\n\nwritten by hand\n") and "# old table" not in text
    (tmp_path / "seeds.csv").write_text("seed,AP50\n0,0.8\n")  # written before the commit column
    with pytest.raises(SystemExit, match="no 'commit' column"):
        seeds.earlier_rows(tmp_path / "seeds.csv", "abc1234", [1])


def test_inference_sweep_scores_each_checkpoint_at_each_setting(tmp_path, data_cfg, tiny_paths, tiny_model_cfg,
                                                                eval_cfg):
    """bench/inference_sweep.py: one row per checkpoint and combination of settings, from the evaluate
    stage's scoring; a lower stop threshold emits at least as many masks, and (the extra steps ranking
    last) no lower class-agnostic recall; the mask score leaves the masks as they are."""
    import dataclasses

    import inference_sweep
    from rsis.config import to_dict
    from rsis.core.checkpoint import save_checkpoint
    from rsis.core.model import RSIS
    from rsis.datasets.convert import convert

    convert(data_cfg, tiny_paths.data)
    torch.manual_seed(0)
    checkpoint = tmp_path / "best.pt"
    save_checkpoint(checkpoint, {"model": RSIS(tiny_model_cfg, num_classes=5).state_dict(),
                                 "model_config": to_dict(tiny_model_cfg), "num_classes": 5, "epoch": 0})
    cfg = dataclasses.replace(eval_cfg, mask_threshold=0.0, min_area_fraction=0.0)  # untrained: keep its masks
    rows = inference_sweep.sweep([str(checkpoint)], tiny_paths.data, "val", cfg,
                                 {"stop_threshold": [1.0, 0.0], "mask_score": [0, 1]})
    assert [(r["stop_threshold"], r["mask_score"]) for r in rows] == [(1.0, False), (1.0, True), (0.0, False),
                                                                      (0.0, True)]
    assert {(r["seed_scale"], r["mask_threshold"], r["test_flips"]) for r in rows} == {(None, 0.0, "none")}  # cfg's
    assert [r["masks"] for r in rows] == [0, 0, 6 * 4, 6 * 4]  # 4 validation images, every one of the 6 steps
    assert rows[2]["AR@10@0.5"] >= rows[0]["AR@10@0.5"]
    assert "| None | 0.0 | 0.0 | True | none | 0.5 | 24 |" in inference_sweep.table(rows)
    # a flipped view adds only masks no earlier one overlaps: an untrained model's near-identical masks add none
    flipped = inference_sweep.sweep([str(checkpoint)], tiny_paths.data, "val", cfg,
                                    {"stop_threshold": [0.0], "test_flips": [(), ("vertical", "horizontal")]})
    assert [r["test_flips"] for r in flipped] == ["none", "vertical,horizontal"]
    assert flipped[1]["masks"] >= flipped[0]["masks"] == 24
    assert inference_sweep.flip_setting("vertical,horizontal") == ("vertical", "horizontal")
    assert inference_sweep.flip_setting("none") == ()


def test_batch_scaling_fits_the_per_step_and_per_image_parts(tmp_path):
    """bench/batch_scaling.py: the line through the new step's time in old steps, what it says an
    infinite batch and a target ratio need, and its section of RESULTS.md."""
    import json

    import batch_scaling
    import bench

    fixed, per_image = 0.2, 0.03  # new step = 0.2 + B * 0.03 old steps (old batch 16)
    runs = {b: {"old": {"batch": 16, "seconds_per_step": 0.5, "revision": "a" * 40},
                "new": {"batch": b, "seconds_per_step": round(0.5 * (fixed + b * per_image), 4), "revision": "b" * 40},
                "ratio": round(b / 16 / (fixed + b * per_image), 2), "machine": {"processor": "AMD EPYC"}}
            for b in (8, 16, 32)}
    d = batch_scaling.summarise(runs, 2.0)
    assert d["fixed_old_steps"] == pytest.approx(fixed) and d["per_image_old_steps"] == pytest.approx(per_image)
    assert d["ratio_infinite_batch"] == pytest.approx(1 / (16 * per_image), abs=0.01)  # 2.08x
    # 2x at batch 16 = a step of 0.5 old steps: 0.5 - 16 * 0.03 = 0.02 of the 0.2 per-step part left (90% cut),
    # or the per-image part at (0.5 - 0.2) / 16 = 0.01875 of 0.03 (37.5% cut)
    assert d["fixed_cut_needed"] == pytest.approx(0.9) and d["per_image_cut_needed"] == pytest.approx(0.375, abs=1e-3)
    assert [r["batch"] for r in d["rows"]] == [8, 16, 32]
    (tmp_path / "results.json").write_text(json.dumps({"machine": {}, "results": [], "inference_vs_maskrcnn": [],
                                                       "training_step_vs_original": [], "data_loading": [],
                                                       "repro_stages": []}))
    (tmp_path / "batch_scaling.json").write_text(json.dumps({
        "machine": {"processor": "AMD EPYC"}, "old": "a" * 40, "new": "b" * 40, "batches_timed": 12, **d}))
    bench.render(tmp_path)
    text = (tmp_path / "RESULTS.md").read_text()
    assert "t(B) = 0.2 + B x 0.03" in text and "| 16 | 1.47x | 0.68 | 0.5 | 0.34 |" in text
    assert "**2.08x**" in text and "90% of the per-step part gone, or 38% of the per-image part" in text
