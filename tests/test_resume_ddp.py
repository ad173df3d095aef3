"""Real training subprocesses: resume after SIGKILL, and DDP (gloo, 2 processes) vs 1 process.

Each test runs the real ``stages/train.py`` in a temporary project with a tiny params file.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from projects import stage_env as _env
from projects import tiny_project as _project

pytestmark = pytest.mark.slow


def _train(root: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "stages/train.py"], cwd=root, env=_env(), capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model"]


def test_sigkill_then_rerun_reaches_the_same_weights(tmp_path):
    straight = _project(tmp_path / "straight")
    _train(straight)

    killed = _project(tmp_path / "killed")
    last = killed / "models/last.pt"
    proc = subprocess.Popen([sys.executable, "stages/train.py"], cwd=killed, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if last.is_file() and torch.load(last, weights_only=True)["epoch"] >= 1:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "training ended before it could be killed: make the run longer"
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    epoch_at_kill = torch.load(last, weights_only=True)["epoch"]
    assert epoch_at_kill < 5

    rerun = _train(killed)
    assert f"resuming after epoch {epoch_at_kill}" in rerun.stdout
    assert not list((killed / "models").glob("*.tmp*")), "a temporary checkpoint was left behind"
    a, b = _weights(straight / "models/last.pt"), _weights(last)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert torch.equal(_weights(straight / "models/best.pt")["class_head.weight"],
                       _weights(killed / "models/best.pt")["class_head.weight"])
    history = ["train_total", "val_total"]
    pd.testing.assert_frame_equal(pd.read_csv(straight / "metrics/train_history.csv")[history],
                                  pd.read_csv(killed / "metrics/train_history.csv")[history])


def test_changed_config_does_not_resume(tmp_path):
    root = _project(tmp_path / "p", epochs=1)
    _train(root)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"]["lr_decoder"] = 0.01
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = _train(root).stdout
    assert "different config" in out and "resuming" not in out


DDP_TOLERANCE = 0.05  # relative difference of per-epoch mean losses, 2 processes vs 1


def test_ddp_two_processes_match_one(tmp_path):
    """Same global batch (4 = 2 x 2): the loss curves agree within DDP_TOLERANCE. They are not
    identical because BatchNorm statistics are per process (2 images instead of 4) and each
    process averages its loss over its own matched pairs."""
    single = _project(tmp_path / "single", epochs=3)
    ddp = _project(tmp_path / "ddp", epochs=3, launcher="torchrun", nproc_per_node=2)
    for root in (single, ddp):  # random flips are drawn per process: they would differ between the two
        params = yaml.safe_load((root / "params.yaml").read_text())
        params["train"]["augment"]["enabled"] = False
        # the rate the tolerance was measured at: at the default's 3e-3 on 2-image BatchNorm batches the
        # first epochs of this tiny run are chaotic (val loss 36.7 vs 12.5), which says nothing about DDP
        params["train"].update(lr_encoder=1e-3, lr_decoder=1e-3)
        # and without gradient clipping, as measured: with the default's clip at norm 1 the training
        # losses still agreed within the tolerance, but the 4-image validation loss of epoch 2 moved
        # 15% (7.76 vs 6.73; fresh-clone make test of 1026026): every update then has the same
        # length, so the per-process BatchNorm differences steer this tiny run further apart
        params["train"]["grad_clip"] = 0.0
        # and in the NCHW layout the tolerance was measured in: with channels_last (the default since
        # it applies on the CPU) the last bits differ from the first step, and this 4-image run's
        # validation loss of epoch 2 drifted 6.9% apart (7.36 vs 6.88; training losses within 5%),
        # against at most 3.3% in NCHW: chaos of the tiny run (DDP all-reduces the gradients whatever their layout)
        params["train"]["channels_last"] = False
        # and at the ResNet last-stage width it was measured at: with the default's 128 (commit 44c2f1b)
        # the training losses still agreed within the tolerance, but the 4-image validation loss of epoch 2
        # moved 7.8% apart (6.72 vs 7.24; fresh-clone make test of d37587f), the same chaos as above
        params["model"]["layer4_width"] = 256
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _train(single)
    out = _train(ddp)
    assert "torch.distributed.run" in out.stdout
    a = pd.read_csv(single / "metrics/train_history.csv")
    b = pd.read_csv(ddp / "metrics/train_history.csv")
    for column in ("train_total", "val_total"):
        relative = ((a[column] - b[column]).abs() / a[column]).max()
        assert relative < DDP_TOLERANCE, (column, list(a[column]), list(b[column]))
    assert (ddp / "models/last.pt").is_file()
    assert len(list((ddp / "metrics").glob("train.json"))) == 1
