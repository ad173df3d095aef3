"""torch.distributed plumbing for DDP training launched by torchrun.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK in every process; without them training runs as a
single process (world size 1). Multi-node runs are launched by the user with their own
``torchrun --nnodes ...`` command around ``stages/train.py``; single-node runs can let the train
stage start torchrun itself (``train.launcher: torchrun``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def setup(device_type: str) -> DistInfo:
    """Join the process group when launched by torchrun (NCCL on CUDA, gloo on CPU)."""
    if not launched_by_torchrun():
        return DistInfo(rank=0, world_size=1, local_rank=0)
    info = DistInfo(rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]),
                    local_rank=int(os.environ.get("LOCAL_RANK", 0)))
    if info.enabled and not dist.is_initialized():
        if device_type == "cuda":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return info


def teardown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def broadcast_from_main(info: DistInfo, value: Any) -> Any:
    """Rank 0's ``value`` on every rank (any picklable object)."""
    if not info.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def mean_over_processes(info: DistInfo, values: dict[str, float], count: int) -> dict[str, float]:
    """Each key's mean over every process's ``count`` samples (``values`` are this process's means):
    under DDP the logged training loss is the whole batch's, not rank 0's share."""
    if not info.enabled:
        return values
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    totals = torch.tensor([values[k] * count for k in values] + [count], dtype=torch.float64, device=device)
    dist.all_reduce(totals)
    return {k: float(totals[i] / totals[-1]) for i, k in enumerate(values)}


def check_replicas(info: DistInfo, model: torch.nn.Module, when: str) -> None:
    """Raise unless every process holds the same parameters. DDP keeps its replicas identical (the
    same all-reduced gradients, the same optimiser steps), so a difference means some gradients were
    not all-reduced (a parameter used outside DDP's forward, a rank that skipped a step). Each
    parameter's fingerprint is the sum of its float32 bit patterns as integers: exact, and the same
    whatever order a process sums in."""
    if not info.enabled:
        return
    names, params = zip(*model.named_parameters())
    prints = torch.stack([p.detach().float().reshape(-1).view(torch.int32).sum(dtype=torch.int64) for p in params])
    gathered = [torch.empty_like(prints) for _ in range(info.world_size)]
    dist.all_gather(gathered, prints)
    for rank, other in enumerate(gathered[1:], start=1):
        differ = (other != gathered[0]).nonzero().flatten().tolist()
        if differ:
            raise RuntimeError(f"DDP replicas differ {when}: {len(differ)} of {len(names)} parameters of rank {rank} "
                               f"are not rank 0's, first {names[differ[0]]!r}; their gradients were not all-reduced")


def relaunch_with_torchrun(script: str, nproc_per_node: int) -> int:
    """Run ``script`` again under ``torchrun --standalone``; return its exit status."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc_per_node}", script]
    print("launching:", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=False).returncode


def is_main_process() -> bool:
    """Rank 0, or a process not launched by torchrun (before any process group exists)."""
    return int(os.environ.get("RANK", "0")) == 0
