"""DDP helpers in real gloo process groups (2 processes on the CPU)."""

from __future__ import annotations

import torch.distributed as dist
import torch.multiprocessing as mp

from rsis.training.distributed import DistInfo, mean_over_processes


def _worker(rank: int, store: str, results) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        mine = {"mask": [1.0, 3.0][rank], "total": [2.0, 6.0][rank]}  # this process's means
        results[rank] = mean_over_processes(DistInfo(rank, 2, rank), mine, count=[3, 1][rank])
    finally:
        dist.destroy_process_group()


def test_logged_training_loss_is_the_mean_over_processes(tmp_path):
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_worker, args=(str(tmp_path / "store"), results), nprocs=2, join=True)
        got = dict(results)
    expected = {"mask": (1.0 * 3 + 3.0 * 1) / 4, "total": (2.0 * 3 + 6.0 * 1) / 4}
    assert got == {0: expected, 1: expected}


def test_one_process_keeps_its_values():
    values = {"mask": 0.5}
    assert mean_over_processes(DistInfo(0, 1, 0), values, count=7) is values
