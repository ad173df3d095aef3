"""Two experiments through `dvc queue -j 2` (one thread each) against the same two run one after the other.

    python bench/dvc_queue.py                 # after `make repro`; -> bench/queue.json, rendered into bench/RESULTS.md
    python bench/dvc_queue.py --epochs 2

Both arms run the same two experiments (``train.seed`` 1 and 2, ``train.epochs`` = --epochs) with
`dvc exp run`, outside the workspace (`--temp` one after the other with every core; queued,
`dvc queue start -j 2` with ``train.threads=1`` each), so the workspace, dvc.lock and metrics/ are
left as they were. Wall time is from the first command to the last experiment finishing. Each
experiment reruns train, evaluate and analyze (convert comes from the cache).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEEDS = (1, 2)


def _dvc(*args: str) -> str:
    out = subprocess.run(["dvc", *args], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"dvc {' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out.stdout


def _sets(seed: int, epochs: int, threads: int) -> list[str]:
    return ["-S", f"train.seed={seed}", "-S", f"train.epochs={epochs}", "-S", f"train.threads={threads}"]


def sequential(epochs: int) -> float:
    start = time.perf_counter()
    for seed in SEEDS:
        _dvc("exp", "run", "--temp", *_sets(seed, epochs, 0))
    return time.perf_counter() - start


def queued(epochs: int, poll_s: float = 5.0) -> float:
    start = time.perf_counter()
    for seed in SEEDS:
        _dvc("exp", "run", "--queue", *_sets(seed, epochs, 1))
    _dvc("queue", "start", "-j", "2")
    while True:
        status = _dvc("queue", "status")
        if "Failed" in status:
            sys.exit(f"a queued experiment failed:\n{status}\nsee `dvc queue logs <name>`")
        if "Queued" not in status and "Running" not in status:
            return time.perf_counter() - start
        time.sleep(poll_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "queue.json")
    args = parser.parse_args()
    if not (ROOT / "dvc.lock").exists():
        sys.exit("bench/dvc_queue.py: run `make repro` first (the experiments reuse its converted data)")
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"  # queue workers spawn dvc
    seq = sequential(args.epochs)
    print(f"one after the other, all cores each: {seq:.0f} s", flush=True)
    par = queued(args.epochs)
    print(f"dvc queue start -j 2, train.threads=1 each: {par:.0f} s", flush=True)
    row = {"experiments": len(SEEDS), "epochs": args.epochs, "sequential_s": round(seq, 1),
           "queue_j2_threads1_s": round(par, 1), "speedup": round(seq / par, 2), "cpu_count": os.cpu_count()}
    args.out.write_text(json.dumps(row, indent=2) + "\n")
    sys.path.insert(0, str(ROOT / "bench"))
    from bench import render  # noqa: E402 (bench/bench.py)
    render()
    print(f"wrote {args.out} and bench/RESULTS.md")


if __name__ == "__main__":
    main()
