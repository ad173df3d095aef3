"""How the new training step's cost splits into a part per step and a part per image: the default
trained at several batch sizes, each run side by side against the old default at its own batch
(``bench/speedup.py --set-new train.batch_size=B``), and a line fitted through the new side's step
time in units of the old step, t(B) = fixed + B * per_image.

    python bench/batch_scaling.py --old 34c2d6d --out bench/batch_scaling.json

What it answers: how far from the old step's images/s the new step could get if everything paid
once per step (operator dispatch, Python, the autograd engine, Adam) cost nothing (the ratio at an
infinite batch, 1 / (old batch * per_image)), and what a given ratio at the default batch needs of
either part. Each batch size is one speedup.py run (two worker processes taking turns), so a shared
host's drifting speed cancels within a run; the fit is over ratios, not seconds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least-squares line through (batch, time) points: (intercept, slope)."""
    slope, intercept = np.polyfit([b for b, _ in points], [t for _, t in points], 1)
    return float(intercept), float(slope)


def summarise(runs: dict[int, dict], target: float) -> dict:
    """The fit over ``runs`` (batch size -> speedup.py result) and what ``target`` x at the old side's
    batch needs. Times are in units of the old step (its batch of images)."""
    old_batch = next(iter(runs.values()))["old"]["batch"]
    points = [(b, run["new"]["seconds_per_step"] / run["old"]["seconds_per_step"]) for b, run in sorted(runs.items())]
    fixed, per_image = fit(points)
    at_default = fixed + old_batch * per_image  # the new step at the old side's batch, fitted
    goal = 1.0 / target  # the new step's time for old_batch images at the target ratio
    return {
        "old_batch": old_batch,
        "rows": [{"batch": b, "ratio": runs[b]["ratio"], "new_over_old_step": round(t, 4),
                  "old_seconds_per_step": runs[b]["old"]["seconds_per_step"],
                  "new_seconds_per_step": runs[b]["new"]["seconds_per_step"]} for b, t in points],
        "fixed_old_steps": round(fixed, 4),
        "per_image_old_steps": round(per_image, 5),
        "fixed_share_at_old_batch": round(fixed / at_default, 3),
        "ratio_infinite_batch": round(1.0 / (old_batch * per_image), 2),
        "target": target,
        "fixed_cut_needed": round(1.0 - (goal - old_batch * per_image) / fixed, 3),
        "per_image_cut_needed": round(1.0 - (goal - fixed) / (old_batch * per_image), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, help="commit of the old step (its own default batch)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16, 32, 64],
                        help="new side's batch sizes (64 at most: speedup.py's data)")
    parser.add_argument("--batches", type=int, default=12, help="timed batches per side and run")
    parser.add_argument("--target", type=float, default=2.0, help="the ratio asked for at the old batch")
    parser.add_argument("--out", type=Path, help="write the result here (JSON); bench/batch_scaling.json also "
                        "renders into bench/RESULTS.md")
    args = parser.parse_args()
    if len(set(args.batch_sizes)) < 2 or max(args.batch_sizes) > 64 or min(args.batch_sizes) < 1:
        parser.error(f"--batch-sizes needs two or more sizes in 1..64, got {args.batch_sizes}")
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for batch in sorted(set(args.batch_sizes)):
            out = Path(tmp) / f"b{batch}.json"
            print(f"batch {batch}: bench/speedup.py --old {args.old} --set-new train.batch_size={batch}",
                  file=sys.stderr, flush=True)
            subprocess.run([sys.executable, str(ROOT / "bench" / "speedup.py"), "--old", args.old,
                            "--batches", str(args.batches), "--set-new", f"train.batch_size={batch}",
                            "--out", str(out)], check=True, stdout=subprocess.DEVNULL)
            runs[batch] = json.loads(out.read_text())
    first = runs[min(runs)]
    result = {"machine": first["machine"], "old": first["old"]["revision"], "new": first["new"]["revision"],
              "batches_timed": args.batches, **summarise(runs, args.target)}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
        if args.out.resolve() == ROOT / "bench" / "batch_scaling.json":
            sys.path.insert(0, str(ROOT / "bench"))
            from bench import render  # bench/bench.py
            render()


if __name__ == "__main__":
    main()
