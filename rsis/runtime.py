"""Process-level helpers: seeding, device choice, project root, git revision and the machine."""

from __future__ import annotations

import os
import platform
import random
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch
# torch is imported where it is used: the download and convert stages never need it, and its import
# is ~2 s of their process (run_stage below serves every stage)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (shuffling is seeded separately, per epoch, by the sampler)."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def select_device(requested: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU. 'cuda' without a GPU is an error."""
    import torch

    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is 'cuda' but no CUDA device is available; use 'auto' or 'cpu'")
    return torch.device(requested)


def project_root() -> Path:
    """The DVC project root: DVC_ROOT inside queued experiments, else the git top level, else cwd."""
    if os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"]).resolve()
    try:
        out = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True)
        return Path(out.stdout.strip()).resolve()
    except (OSError, subprocess.CalledProcessError):
        return Path.cwd().resolve()


def git_revision() -> str:
    """The commit the working tree is based on ('unknown' outside git)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_model() -> str:
    """The CPU as /proc/cpuinfo names it on Linux (model name, family/model/stepping, cache size:
    a hypervisor's "AMD EPYC" alone does not tell two generations apart), else what the platform
    module knows."""
    try:
        fields: dict[str, str] = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if not key.strip():
                break  # the first processor's block is enough
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        fields = {}
    if "model name" not in fields:
        return platform.processor() or platform.machine()
    detail = ", ".join(f"{k} {fields[k]}" for k in ("cpu family", "model", "stepping", "cache size") if k in fields)
    return f"{fields['model name']} ({detail})" if detail else fields["model name"]


def machine() -> dict[str, object]:
    """What a CPU result's last bits depend on besides params and seed: the CPU, the kernels torch
    dispatches to (pinned or native, rsis/reproducible.py), the threads, and the math software.
    Recorded next to training and benchmark results, so two runs that differ can be told apart."""
    import torch

    info: dict[str, object] = {
        "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
        "numpy": np.__version__, "processor": cpu_model(), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_kernels": torch.backends.cpu.get_cpu_capability()
        + (" (pinned)" if os.environ.get("ONEDNN_MAX_CPU_ISA") else " (native)"),
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(). SIGTERM (``kill``, a scheduler's stop) exits through the normal
    unwinding, so temporary files are removed and the MLflow run is marked failed; outputs are
    only ever replaced whole (rsis.files). User errors (bad params, bad data, missing inputs, a
    non-finite loss, a failed download) print one clear line and exit 2 instead of a traceback; anything else
    propagates with its traceback."""
    from rsis.config import ConfigError, load_all
    from rsis.datasets.fetch import DownloadError
    from rsis.datasets.record import DataError

    signal.signal(signal.SIGTERM, _terminate)
    try:
        load_all()  # every section, whichever the stage reads: a bad value fails before any stage works
        main()
    except (ConfigError, DataError, DownloadError, FileNotFoundError, FloatingPointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
