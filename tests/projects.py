"""A tiny project in a temporary folder: the real stage scripts and presets, a small params file
and converted shapes data, for tests that run stages as real subprocesses."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import REPO
from rsis.config import DataConfig, from_dict
from rsis.datasets.convert import convert


def tiny_params(**train_changes) -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["shapes"].update(image_size=64, min_object_size=12, max_object_size=30, min_visible_pixels=20,
                                    max_objects=4, train=32, val=4, test=4)
    params["model"].update(hidden_dim=16, max_steps=5, image_size=32)
    # one thread: a model this small gains nothing from a second, and under `make test` (two pytest workers) the
    # processes of two tests, or of two queued experiments, each keep a core instead of contending for both
    params["train"].update({"epochs": 6, "batch_size": 4, "lr_decay_epochs": [4], "max_objects": 5, "device": "cpu",
                            "threads": 1, **train_changes})
    return params


def write_params(root: Path, params: dict) -> None:
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def tiny_project(root: Path, convert_data: bool = True, **train_changes) -> Path:
    params = tiny_params(**train_changes)
    root.mkdir(parents=True, exist_ok=True)
    write_params(root, params)
    shutil.copytree(REPO / "stages", root / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "presets", root / "presets")
    if convert_data:
        convert(from_dict(DataConfig, params["data"], "data"), root / "data/converted")
    return root


def stage_env() -> dict:
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONUNBUFFERED": "1"}
    env.pop("DVC_ROOT", None)
    return env


def run_stage(root: Path, stage: str, timeout: float = 600, python_flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Run stages/<stage>.py in ``root`` (``python_flags``: the interpreter's own, e.g. ("-X", "importtime"));
    the result, whatever its exit status."""
    return subprocess.run([sys.executable, *python_flags, f"stages/{stage}.py"], cwd=root, env=stage_env(),
                          capture_output=True, text=True, timeout=timeout)
