"""Process-level helpers: seeding, device choice, project root and git revision."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (shuffling is seeded separately, per epoch, by the sampler)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def select_device(requested: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU. 'cuda' without a GPU is an error."""
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
