"""Faults, with real processes and real signals: SIGTERM/SIGKILL during download, conversion,
training and evaluation; a non-finite loss; a write that fails for lack of space; a malicious
checkpoint. Each must leave the previous outputs intact and the next run able to finish."""

from __future__ import annotations

import copy
import hashlib
import math
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from loopback import serve
from projects import run_stage, stage_env, tiny_params, tiny_project, write_params
from rsis.config import load_section
from rsis.core.checkpoint import load_checkpoint, save_checkpoint
from rsis.datasets.fetch import fetch, md5sum
from rsis.files import atomic_path
from rsis.runtime import run_stage as run_in_process
from rsis.training import engine
from rsis.training.fit import fit

pytestmark = pytest.mark.slow

SIGTERM_EXIT = 128 + signal.SIGTERM


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _start(root: Path, stage: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, f"stages/{stage}.py"], cwd=root, env=stage_env(),
                            stdout=log.open("w"), stderr=subprocess.STDOUT)


def _wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        assert proc.poll() is None, f"the process ended before {what}"
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"timed out waiting for {what}")


def _temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*.tmp")]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_killed_conversion_keeps_the_previous_data_and_the_rerun_finishes(tmp_path, sig):
    root = tiny_project(tmp_path / "p")
    before = _digest(root / "data/converted/train.json")
    params = tiny_params()
    params["data"]["seed"] = 1
    params["data"]["shapes"]["train"] = 4000  # long enough to be killed in the middle
    write_params(root, params)
    proc = _start(root, "convert", tmp_path / "log")
    _wait_for(lambda: any(len(list(t.glob("train/*.png"))) > 20 for t in (root / "data").glob(".converted.*.tmp")),
              proc, "conversion wrote images")
    proc.send_signal(sig)
    assert proc.wait() == (SIGTERM_EXIT if sig == signal.SIGTERM else -sig)
    assert _digest(root / "data/converted/train.json") == before
    leftovers = list((root / "data").glob(".converted.*.tmp"))
    assert (leftovers == []) == (sig == signal.SIGTERM)  # SIGTERM cleans up; SIGKILL cannot
    params["data"]["shapes"]["train"] = 40
    write_params(root, params)
    rerun = run_stage(root, "convert")
    assert rerun.returncode == 0, rerun.stderr
    assert not list((root / "data").glob(".converted.*.tmp"))  # the killed run's folder is gone too
    assert _digest(root / "data/converted/train.json") != before


def test_sigterm_during_training_keeps_a_loadable_checkpoint_and_the_rerun_resumes(tmp_path):
    root = tiny_project(tmp_path / "p")
    last = root / "models/last.pt"
    proc = _start(root, "train", tmp_path / "log")
    _wait_for(lambda: last.is_file() and torch.load(last, weights_only=True)["epoch"] >= 1, proc, "epoch 1 ended")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait() == SIGTERM_EXIT
    epoch = load_checkpoint(last)["epoch"]
    assert not _temporaries(root / "models")
    rerun = run_stage(root, "train")
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming after epoch {epoch}" in rerun.stdout


@pytest.fixture(scope="module")
def evaluated_project(tmp_path_factory) -> tuple[Path, dict]:
    """A tiny project trained for one epoch and evaluated once, on 600 test images (prediction takes
    seconds, time to be killed in); shared by the kill tests below, each of which works on a copy."""
    root = tiny_project(tmp_path_factory.mktemp("evaluated") / "p", epochs=1)
    params = tiny_params(epochs=1)
    params["data"]["shapes"]["test"] = 600
    params["evaluate"].update(bootstrap_resamples=0, test_flips=[])  # one pass, no intervals: not what is killed here
    write_params(root, params)
    assert run_stage(root, "convert").returncode == 0
    assert run_stage(root, "train").returncode == 0
    first = run_stage(root, "evaluate")
    assert first.returncode == 0, first.stderr
    return root, params


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_killed_evaluation_keeps_the_previous_predictions(tmp_path, evaluated_project, sig):
    # the copy gets its own MLflow store (the original's experiment names the original's artifact folder)
    root = Path(shutil.copytree(evaluated_project[0], tmp_path / "p",
                                ignore=shutil.ignore_patterns("mlflow.db*", "mlruns")))
    params = copy.deepcopy(evaluated_project[1])
    outputs = [root / "outputs/predictions.json", root / "metrics/evaluate.json",
               *sorted((root / "outputs/evaluation/instance_maps").iterdir())[:3]]
    before = [_digest(p) for p in outputs]
    params["evaluate"].update(stop_threshold=0.0, mask_threshold=0.1)  # a different, non-empty result
    write_params(root, params)
    log = tmp_path / "log"
    proc = _start(root, "evaluate", log)
    _wait_for(lambda: "predict test" in log.read_text(errors="replace"), proc, "prediction started")
    time.sleep(0.5)
    proc.send_signal(sig)
    assert proc.wait() == (SIGTERM_EXIT if sig == signal.SIGTERM else -sig)
    assert [_digest(p) for p in outputs] == before
    rerun = run_stage(root, "evaluate")
    assert rerun.returncode == 0, rerun.stderr
    assert _digest(root / "outputs/predictions.json") != before[0]
    assert not _temporaries(root / "outputs") and not _temporaries(root / "metrics")


def test_a_download_killed_mid_transfer_resumes_from_its_partial_file(tmp_path):
    served = tmp_path / "site"
    served.mkdir()
    payload = bytes(range(256)) * 4096 * 4  # 4 MiB: the client writes whole 1 MiB blocks
    (served / "a.tar").write_bytes(payload)
    dest = tmp_path / "raw/a.tar"
    md5 = hashlib.md5(payload).hexdigest()
    with serve(served) as server:
        server.stall_after = 3_000_000
        script = (f"from rsis.datasets.fetch import fetch; "
                  f"fetch({server.url + '/a.tar'!r}, {str(dest)!r}, {md5!r}, progress=False)")
        proc = subprocess.Popen([sys.executable, "-c", script], env=stage_env())
        part = dest.with_name("a.tar.part")
        _wait_for(lambda: server.stalled.is_set() and part.is_file() and part.stat().st_size > 0, proc,
                  "part of the body arrived")
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
        server.stall_after = None
        kept = part.stat().st_size
        assert not dest.exists() and 0 < kept <= 3_000_000
        fetch(server.url + "/a.tar", dest, md5, progress=False)
        assert server.requests[-1][1] == f"bytes={kept}-"
    assert md5sum(dest) == md5 and not part.exists()


def test_a_non_finite_loss_stops_training_with_a_message_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch,
                                                                                            capsys):
    root = tiny_project(tmp_path / "p", epochs=3)
    monkeypatch.chdir(root)
    real = engine.weighted_total
    calls = {"n": 0}

    def poisoned(losses, weights):  # the 8 training batches of epoch 0 are fine, then the loss turns NaN
        total = real(losses, weights)
        if not torch.is_grad_enabled():  # validation
            return total
        calls["n"] += 1
        return total * math.nan if calls["n"] > 8 else total

    monkeypatch.setattr(engine, "weighted_total", poisoned)
    paths, model_cfg, cfg = load_section("paths"), load_section("model"), load_section("train")
    with pytest.raises(SystemExit) as exit_info:
        run_in_process(lambda: fit(paths, model_cfg, cfg))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "non-finite training loss at epoch 1" in err and "Traceback" not in err
    last = load_checkpoint(root / "models/last.pt")
    assert last["epoch"] == 0 and all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())
    assert load_checkpoint(root / "models/best.pt")["epoch"] == 0


def _write_limited(limit: int, script: str) -> subprocess.CompletedProcess:
    """Run ``script`` with files limited to ``limit`` bytes (RLIMIT_FSIZE; SIGXFSZ ignored, so a
    write past the limit fails with EFBIG as it would with ENOSPC on a full disk)."""
    def limit_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run([sys.executable, "-c", script], env=stage_env(), capture_output=True, text=True,
                          preexec_fn=limit_files, timeout=120)


def test_a_checkpoint_write_that_runs_out_of_space_leaves_the_previous_checkpoint_intact(tmp_path):
    path = tmp_path / "models/last.pt"
    save_checkpoint(path, {"model": {"w": torch.arange(1000.0)}, "epoch": 3})
    before = _digest(path)
    result = _write_limited(200_000, (
        "import torch; from rsis.core.checkpoint import save_checkpoint\n"
        f"save_checkpoint({str(path)!r}, {{'model': {{'w': torch.zeros(1_000_000)}}, 'epoch': 4}})"))
    assert result.returncode != 0 and "Error" in result.stderr, result.stderr
    assert _digest(path) == before
    assert load_checkpoint(path)["epoch"] == 3
    assert not _temporaries(path.parent)


def test_checkpoints_are_loaded_without_unpickling_arbitrary_objects(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": Exploit()}, path)
    with pytest.raises(Exception, match="(?i)weights.only|unpickl"):
        load_checkpoint(path)
    assert not marker.exists()


def test_the_package_never_unpickles(tmp_path):
    """Static guard: every torch.load is weights_only, and nothing uses pickle or allow_pickle."""
    package = Path(__file__).resolve().parents[1] / "rsis"
    for source in package.rglob("*.py"):
        text = source.read_text()
        assert "import pickle" not in text and "allow_pickle=True" not in text, source
        for line in text.splitlines():
            if "torch.load(" in line:
                assert "weights_only=True" in line, f"{source}: {line.strip()}"


def test_atomic_write_removes_a_killed_writers_temporary(tmp_path):
    target = tmp_path / "out.json"
    proc = subprocess.run([sys.executable, "-c", (
        "import os, signal; from rsis.files import atomic_path\n"
        f"with atomic_path({str(target)!r}) as tmp:\n"
        "    tmp.write_text('half')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)")], env=stage_env())
    assert proc.returncode == -signal.SIGKILL
    assert len(_temporaries(tmp_path)) == 1 and not target.exists()
    with atomic_path(target) as tmp:
        tmp.write_text("whole")
    assert target.read_text() == "whole" and not _temporaries(tmp_path)
