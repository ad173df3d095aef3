"""Bit-identical CPU results on machines of one CPU model (``train.reproducible``, on by default).

Float results on a CPU depend on which kernels the math libraries pick for the machine they run
on (ATen's vectorised kernels, oneDNN convolutions and MKL matrix products each dispatch on the
instruction set: AVX-512 here, AVX2 elsewhere) and on the number of threads that split a
reduction. Measured on this project's 2-core AVX-512 machine (one epoch of the default model):
capping only ATen, only oneDNN, or ATen + oneDNN + MKL at AVX2 each changes the trained weights,
and so do 1 vs 2 threads. So, when ``train.reproducible`` is true, every torch stage runs with

    ATEN_CPU_CAPABILITY=avx2  ONEDNN_MAX_CPU_ISA=AVX2  MKL_CBWR=AVX2    (the ISA every x86-64 CPU
                                                                        since 2013-15 has)
    OMP_NUM_THREADS=MKL_NUM_THREADS=train.threads                     (when train.threads > 0; a
                                                                        share of it per process
                                                                        under torchrun)

set before torch is imported, so the same params give the same bits on machines of one CPU model
with the same software (requirements.lock, torch build) and threads. Across CPU models they need
not: an Intel Xeon and an AMD EPYC host give different bits under the same pin, although each
reproduces its own (docs/reproducibility.md). Not covered: GPUs (CUDA kernels differ by device and
version), other CPU architectures (ARM), another torch or MKL version.
The price is speed where AVX-512 would have been used (README, "Reproducibility").
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PINNED_ISA = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def process_threads(threads: int) -> int:
    """This process's share of ``train.threads`` (the CPU threads of the whole training): all of it,
    or under torchrun, which sets LOCAL_WORLD_SIZE, an equal share per process on this machine (at
    least 1). 0 stays 0 (torch's default). Two independent one-thread processes on two cores train
    ~1.6x more images/s together than one two-thread process, but two one-thread DDP processes of one
    training measured level with it (README "CPU training speed")."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, threads // max(1, local)) if threads > 0 else 0


def cpu_environment(train: dict) -> dict[str, str]:
    """The environment variables ``train`` (the raw params section) asks for; empty when off."""
    if train.get("reproducible", True) is not True:
        return {}
    env = dict(PINNED_ISA)
    threads = train.get("threads", 0)
    if isinstance(threads, int) and not isinstance(threads, bool) and threads > 0:
        env.update(dict.fromkeys(THREAD_VARIABLES, str(process_threads(threads))))
    return env


def pin_cpu(params: str | Path = "params.yaml") -> dict[str, str]:
    """Set :func:`cpu_environment` of the params file (preset and overrides applied) in this
    process, which must not have imported torch yet; returns what was set. A params file that
    cannot be read sets nothing: the stage's own validation reports it with the key."""
    from rsis.config import ConfigError, apply_preset, read_params

    if "torch" in sys.modules:
        raise RuntimeError("rsis.reproducible.pin_cpu() must run before torch is imported")
    try:
        raw, _ = apply_preset(read_params(params), params)
    except (ConfigError, OSError, TypeError, KeyError):
        return {}
    train = raw.get("train")
    env = cpu_environment(train) if isinstance(train, dict) else {}
    os.environ.update(env)
    return env
