"""End to end: the real dvc.yaml and stage scripts, run by `dvc repro` in a temporary git repo
with a tiny params file; then every output, the metrics and the MLflow runs are checked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image

from conftest import REPO
from projects import tiny_params
from rsis.analysis.run import FIGURES, TABLES

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def _tiny_params() -> dict:
    params = tiny_params(epochs=2, lr_decay_epochs=[1])
    params["data"]["shapes"].update(train=16, test=6)
    # untrained heads: keep every step, and the faint masks, so that the analyses have sequences to look at
    params["evaluate"].update(batch_size=4, stop_threshold=0.0, mask_threshold=0.1)
    params["analyze"].update(figure_images=2, batch_size=4)
    return params


def _run(cmd: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("pipeline")
    for name in ("stages", "rsis", "presets"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", ".dvcignore", ".gitignore"):
        shutil.copy(REPO / name, root / name)
    (root / "params.yaml").write_text(yaml.safe_dump(_tiny_params(), sort_keys=False))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "DVC_NO_ANALYTICS": "1",
           "MLFLOW_DISABLE_TELEMETRY": "true", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    env.pop("DVC_ROOT", None)
    _run(["git", "init", "-q"], root, env)
    _run(["dvc", "init", "-q"], root, env)
    _run(["git", "add", "-A"], root, env)
    _run(["git", "commit", "-qm", "tiny pipeline"], root, env)
    _run(["dvc", "repro"], root, env)
    return root, env


def test_every_output_exists(repo):
    root, _ = repo
    for split in ("train", "val", "test"):
        assert (root / "data/converted" / f"{split}.json").is_file()
    assert len(list((root / "data/converted/train").glob("*.png"))) == 16
    for name in ("best.pt", "last.pt"):
        assert (root / "models" / name).is_file()
    assert (root / "outputs/predictions.json").is_file()
    assert len(list((root / "outputs/evaluation/instance_maps").glob("test_*_label.png"))) == 6
    assert json.loads((root / "data/raw/manifest.json").read_text())["archives"] == []  # shapes: nothing fetched
    assert (root / "metrics/paper_comparison.md").read_text().startswith("# This run vs. the paper")
    for name in ("r2l", "b2t", "l2s", "random"):
        assert (root / f"metrics/figures/sequences_{name}.png").stat().st_size > 10_000
    assert (root / "dvc.lock").is_file()


def test_metrics_files(repo):
    root, _ = repo
    evaluate = json.loads((root / "metrics/evaluate.json").read_text())
    for key in ("AP", "AP50", "AP75", "AP@0.5", "AP@0.6", "AP@0.7", "AP@0.8", "AP@0.9"):
        assert 0.0 <= evaluate["segm"][key] <= 1.0
    assert evaluate["counts"]["images"] == 6
    assert set(evaluate["segm_per_class_AP50"]) <= {"disc", "square", "triangle", "ring"}
    assert set(evaluate["proposals"]) == {f"AR@{m}@{t}" for m in (10, 50) for t in ("0.5", "0.7", "0.85")}
    analyze = json.loads((root / "metrics/analyze.json").read_text())
    assert {"tau_r2l", "tau_b2t", "tau_l2s", "images_counted", "pairs_r2l", "false_positives", "false_negatives",
            "mean_matched_iou"} <= set(analyze)
    assert {f"activation_tau_{b}_{m}" for b in ("f0", "f1", "f2", "f3", "f4") for m in ("before", "after")} <= set(analyze)
    activations = pd.read_csv(root / "metrics/analysis/activations.csv")
    assert len(activations) == 10 and set(activations["model"]) == {"before", "after"}
    for name in ("tau_histogram", "consecutive_pairs", "errors", "activation_taus", "activations", "sequences_random"):
        with Image.open(root / f"metrics/figures/{name}.png") as im:
            assert im.size[0] > 300 and im.size[1] > 200
    steps = pd.read_csv(root / "metrics/analysis/errors_by_step.csv")
    objects = pd.read_csv(root / "metrics/analysis/errors_by_object.csv")
    # the analysis reads the model's own sequences; evaluation also scores what the flipped views added
    predicted = [inst for image in json.loads((root / "outputs/predictions.json").read_text())["images"]
                 for inst in image["instances"]]
    assert len(predicted) == evaluate["counts"]["predicted_instances"]
    assert steps["predictions"].sum() == sum(inst["view"] == "image" for inst in predicted)
    assert len(objects) == evaluate["counts"]["gt_instances"]
    train = json.loads((root / "metrics/train.json").read_text())
    assert train["best_epoch"] in (0, 1)
    history = (root / "metrics/train_history.csv").read_text().splitlines()
    assert history[0].startswith("epoch,") and len(history) == 3


def test_checkpoint_holds_config_and_revision(repo):
    import torch

    root, _ = repo
    state = torch.load(root / "models/best.pt", weights_only=True)
    assert state["model_config"]["hidden_dim"] == 16
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
    assert state["git_revision"] == head


def test_repro_is_up_to_date_afterwards(repo):
    root, env = repo
    status = _run(["dvc", "status"], root, env)
    assert "up to date" in status.stdout, status.stdout


def test_mlflow_has_one_run_per_stage(repo):
    root, _ = repo
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("rsis")
    runs = client.search_runs([experiment.experiment_id])
    by_stage = {r.data.tags["stage"]: r for r in runs}
    assert sorted(by_stage) == ["analyze", "convert", "download", "evaluate", "train"]
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI opens on the runs
    assert all(r.info.status == "FINISHED" for r in runs)
    train = by_stage["train"]
    assert train.data.params["train.epochs"] == "2"
    cls_weight = yaml.safe_load((root / "params.yaml").read_text())["train"]["loss_weights"]["cls"]
    assert train.data.params["train.loss_weights.cls"] == str(cls_weight)
    assert len(client.get_metric_history(train.info.run_id, "val_total")) == 2
    assert "segm.AP50" in by_stage["evaluate"].data.metrics
    assert len(by_stage["train"].data.tags["git_revision"]) == 40
    artifacts = [a.path for a in client.list_artifacts(by_stage["analyze"].info.run_id, "figures")]
    assert sorted(artifacts) == sorted(f"figures/{name}" for name in FIGURES)
    tables = [a.path for a in client.list_artifacts(by_stage["analyze"].info.run_id, "tables")]
    assert sorted(tables) == sorted(f"tables/{name}" for name in TABLES)


def test_dvc_plots_show_renders_every_plot(repo):
    root, env = repo
    _run(["dvc", "plots", "show"], root, env)
    html = (root / "dvc_plots/index.html").read_text()
    for name in (*FIGURES, "loss", "false_positives_by_step", "iou_vs_size", "activation_tau"):
        assert name in html, name


def test_plots_diff_between_two_experiments_shows_both_versions(repo):
    """Runs last: two experiments change the workspace's analysis outputs."""
    root, env = repo
    _run(["git", "add", "-A"], root, env)
    _run(["git", "commit", "-qm", "baseline results"], root, env)
    for name, threshold, seed in (("pairs-10", "0.1", "1"), ("pairs-30", "0.3", "2")):
        _run(["dvc", "exp", "run", "-n", name, "-S", f"analyze.pair_threshold={threshold}", "-S",
              f"analyze.seed={seed}"], root, env)
    shown = _run(["dvc", "exp", "show", "--csv"], root, env).stdout
    assert "pairs-10" in shown and "pairs-30" in shown
    _run(["dvc", "plots", "diff", "pairs-10", "pairs-30", "-o", "diff_plots"], root, env)
    html = (root / "diff_plots/index.html").read_text()
    static = sorted(p.name for p in (root / "diff_plots/static").iterdir())
    for figure in FIGURES:
        versions = [name for name in static if name.endswith(figure.replace("/", "_"))]
        assert {"pairs-10", "pairs-30"} <= {v.split("_")[0] for v in versions}, (figure, static)
        assert all(v in html for v in versions)


def _exp_metrics(node, found: dict) -> dict:
    """name -> (params, metrics) of every experiment in `dvc exp show --json` output."""
    if isinstance(node, dict):
        data = node.get("data")
        if node.get("name") and isinstance(data, dict) and "metrics" in data:
            params = {k: v for f in (data.get("params") or {}).values() for k, v in (f.get("data") or {}).items()}
            metrics = {path: f.get("data") for path, f in (data.get("metrics") or {}).items()}
            found[node["name"]] = (params, metrics)
        for value in node.values():
            _exp_metrics(value, found)
    elif isinstance(node, list):
        for value in node:
            _exp_metrics(value, found)
    return found


def test_four_queued_experiments_on_two_workers_keep_their_own_metrics(repo):
    """dvc queue start -j 2: every experiment lands in `dvc exp show` and as its own MLflow runs,
    with the metrics its own run computed (runs after the plots-diff test, on its baseline)."""
    root, env = repo
    seeds = {f"seed-{s}": s for s in (11, 12, 13, 14)}
    for name, seed in seeds.items():
        _run(["dvc", "exp", "run", "--queue", "-n", name, "-S", f"train.seed={seed}"], root, env)
    _run(["dvc", "queue", "start", "-j", "2"], root, env)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        status = _run(["dvc", "queue", "status"], root, env).stdout
        if not any(word in status for word in ("Queued", "Running")):
            break
        time.sleep(3)
    assert status.count("Success") >= 4, status
    found = _exp_metrics(json.loads(_run(["dvc", "exp", "show", "--json"], root, env).stdout), {})
    assert set(seeds) <= set(found), sorted(found)

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("rsis").experiment_id], max_results=1000)
    aps = set()
    for name, seed in seeds.items():
        params, metrics = found[name]
        assert params["train"]["seed"] == seed
        mine = [r for r in runs if r.data.tags.get("dvc_experiment") == name]
        # download reruns in each queued workspace (its manifest is not in git); convert is up to date
        assert sorted(r.data.tags["stage"] for r in mine) == ["analyze", "download", "evaluate", "train"], name
        by_stage = {r.data.tags["stage"]: r for r in mine}
        assert all(r.info.status == "FINISHED" for r in mine)
        assert by_stage["train"].data.params["train.seed"] == str(seed)
        evaluate = metrics["metrics/evaluate.json"]
        assert by_stage["evaluate"].data.metrics["segm.AP"] == pytest.approx(evaluate["segm"]["AP"])
        assert by_stage["train"].data.metrics["best_val_loss"] == pytest.approx(
            metrics["metrics/train.json"]["best_val_loss"])
        aps.add(round(metrics["metrics/train.json"]["best_val_loss"], 6))
    assert len(aps) == len(seeds), "different seeds should give different validation losses"

    # make bench's "make repro by stage" reads the workspace's last run of each stage, not the experiments'
    sys.path.insert(0, str(REPO / "bench"))
    import compare  # bench/compare.py

    workspace = {r.data.tags["stage"]: r for r in sorted(runs, key=lambda r: r.info.start_time)
                 if not r.data.tags.get("dvc_experiment")}  # the last of each stage wins
    stages = compare.repro_breakdown(root / "mlflow.db")
    assert [row["stage"] for row in stages] == ["convert", "train", "evaluate", "analyze"]
    train = workspace["train"].info
    assert stages[1]["seconds"] == round((train.end_time - train.start_time) / 1000, 1)
