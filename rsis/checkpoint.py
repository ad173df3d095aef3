"""Checkpoints: atomic writes, safe loads (weights_only), config and git revision inside."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from rsis.datasets.record import DataError
from rsis.io import atomic_path


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """torch.save to a temporary file, then rename: a crash never corrupts the previous file."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found: run the train stage first")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError or pickle's UnpicklingError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise DataError(path, f"not a readable checkpoint ({type(exc).__name__}: {first})") from None
