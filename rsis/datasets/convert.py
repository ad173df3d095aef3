"""The convert stage's work: parse a dataset into records and write the converted format."""

from __future__ import annotations

from pathlib import Path

from rsis.config import DataConfig
from rsis.datasets import shapes
from rsis.datasets.coco_format import write_split
from rsis.io import atomic_directory

SPLITS = ("train", "val", "test")


def convert(cfg: DataConfig, out_dir: str | Path) -> dict[str, dict[str, int]]:
    """Write every split of ``cfg.dataset`` to ``out_dir`` (replaced atomically on success).
    The params schema admits only datasets implemented here (today: ``shapes``).

    Returns per-split counts of images and instances.
    """
    stats = {}
    with atomic_directory(out_dir) as tmp:
        for split in SPLITS:
            records = shapes.generate_split(cfg.shapes, cfg.seed, split)
            stats[split] = write_split(records, tmp, split, cfg.shapes.classes, total=getattr(cfg.shapes, split))
    return stats
