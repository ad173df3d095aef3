"""Checkpoints: atomic writes, safe loads (weights_only), config and git revision inside, and the
trained network rebuilt from one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from rsis.config import ModelConfig, from_dict
from rsis.core.model import RSIS
from rsis.datasets.record import DataError
from rsis.files import atomic_path

BEST, LAST = "best.pt", "last.pt"  # lowest validation loss / the latest epoch (resume)


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


def load_model(checkpoint_path: str | Path, device: torch.device) -> tuple[RSIS, dict[str, Any]]:
    """The trained network from a checkpoint (its stored config and weights), in eval mode, and the
    checkpoint's contents."""
    state = load_checkpoint(checkpoint_path, map_location=device)
    model = RSIS(from_dict(ModelConfig, state["model_config"], "checkpoint.model_config"), state["num_classes"])
    model.load_state_dict(state["model"])
    return model.to(device).eval(), state
