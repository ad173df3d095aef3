"""train.reproducible: the CPU math libraries pinned to AVX2 (and the threads fixed) before torch loads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from rsis.reproducible import PINNED_ISA, cpu_environment, process_threads
from rsis.training.fit import config_warnings

PROBE = ("import os; from rsis.reproducible import pin_cpu; pin_cpu(); import torch; "
         "print(torch.backends.cpu.get_cpu_capability(), torch.get_num_threads(), os.environ.get('ONEDNN_MAX_CPU_ISA'))")


def test_the_environment_follows_the_params():
    assert cpu_environment({"reproducible": True, "threads": 2}) == {**PINNED_ISA, "OMP_NUM_THREADS": "2",
                                                                     "MKL_NUM_THREADS": "2"}
    assert cpu_environment({"threads": 0}) == PINNED_ISA  # on by default; 0 threads = torch's choice
    assert cpu_environment({"reproducible": False, "threads": 2}) == {}


def _probe(tmp_path: Path, reproducible: bool) -> list[str]:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"].update(reproducible=reproducible, threads=1)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}  # no inherited thread or ISA variables
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    return out.stdout.split()


@pytest.mark.skipif("avx2" not in Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else True,
                    reason="needs an x86-64 CPU with AVX2")
def test_a_stage_process_runs_on_the_pinned_kernels(tmp_path):
    assert _probe(tmp_path, True) == ["AVX2", "1", "AVX2"]
    capability, _, onednn = _probe(tmp_path, False)
    assert onednn == "None" and capability in {"AVX2", "AVX512", "DEFAULT"}


@pytest.mark.skipif("avx2" not in Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else True,
                    reason="needs an x86-64 CPU with AVX2")
def test_the_machine_record_names_the_kernels_threads_and_cpu(tmp_path):
    """metrics/train.json's "machine": what a run's last bits depend on besides params and seed."""
    probe = PROBE.replace("print(", "from rsis.runtime import machine; m = machine(); print(m['cpu_kernels'], "
                          "m['torch_threads'], m['processor'] != '', m['torch'] == torch.__version__, ")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for reproducible, kernels in ((True, "AVX2 (pinned) 1 "), (False, "(native) ")):  # threads pinned only when on
        params["train"].update(reproducible=reproducible, threads=1)
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                             env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}, check=True).stdout
        assert kernels in out and " True True " in out


@pytest.mark.parametrize("stage", ["convert", "train", "evaluate", "analyze"])
def test_every_torch_stage_pins_before_importing_anything_else(stage):
    lines = [line for line in (REPO / "stages" / f"{stage}.py").read_text().splitlines()
             if line.startswith(("import ", "from ", "pin_cpu("))]
    assert lines[:3] == ["from pathlib import Path", "from rsis.reproducible import pin_cpu", "pin_cpu()  # before torch "
                         "is imported: train.reproducible pins the math libraries' ISA and threads"]


def test_a_decay_epoch_past_the_end_is_warned_about(tiny_train_cfg):
    import dataclasses
    assert config_warnings(dataclasses.replace(tiny_train_cfg, epochs=2, lr_decay_epochs=(1,))) == []
    (line,) = config_warnings(dataclasses.replace(tiny_train_cfg, epochs=2, lr_decay_epochs=(5,)))
    assert "train.lr_decay_epochs [5]" in line and "never apply" in line


def test_torchrun_processes_share_the_training_threads(monkeypatch):
    """Two torchrun processes with train.threads = 2 on 2 cores get one thread each, not two
    (oversubscribed, both ran several times slower)."""
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert process_threads(2) == 2 and process_threads(0) == 0
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert [process_threads(n) for n in (0, 1, 2, 5)] == [0, 1, 1, 2]
    assert cpu_environment({"threads": 2})["OMP_NUM_THREADS"] == "1"
