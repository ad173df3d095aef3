"""Seed spread: the committed recipe retrained with several ``train.seed`` values, as DVC experiments.

    make seeds                                        # seeds 0 1 2, two at a time, one thread each
    python bench/seeds.py --seeds 0 1 2 3 4 --jobs 2
    python bench/seeds.py --table-only                # redo the table from experiments already run
    python bench/seeds.py --seeds 3 4 --add           # more seeds: merged with bench/seeds.csv's rows of this commit

Each seed is queued as ``dvc exp run --queue -n seed-<S> -S train.seed=<S> -S train.threads=<T>``
(T = cores / jobs) and the queue runs ``--jobs`` at a time (``dvc queue start -j``), outside the
workspace: params.yaml, dvc.lock and metrics/ are left as they are. Each experiment retrains,
evaluates and analyses (convert comes from the run cache). The metrics are read back from the
experiments' git refs and written as bench/seeds.csv (one row per seed) and bench/SEEDS.md (the
rows, then mean, std, min and max, and the test sample's bootstrap interval for comparison).
``--add`` keeps the rows of bench/seeds.csv that ran on the same commit (its ``commit`` column) and
adds the new seeds to them: a spread can grow over several sittings without rerunning the first
seeds. A section of bench/SEEDS.md headed ``## Earlier recipes`` (kept by hand: the spread of
recipes before this one) survives each rewrite.

Read a `dvc metrics diff` against both numbers: the bootstrap interval in metrics/evaluate.json
says how much a metric moves on another test sample for the same model; the seed std here says how
much retraining the same recipe moves it. A change between commits smaller than either is noise.
At two jobs the threads differ from the committed run (1 instead of 2), so seed 0 here is another
sample of the recipe, not the committed bits; ``--jobs 1`` trains at `make repro`'s two threads
(~10 minutes per experiment one after the other, against ~14 for a pair at two jobs).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# (column, file in an experiment, path in the file)
COLUMNS = [("AP50", "metrics/evaluate.json", ("segm", "AP50")),
           ("agnostic_AP50", "metrics/evaluate.json", ("segm_class_agnostic", "AP50")),
           ("AR@10@0.5", "metrics/evaluate.json", ("proposals", "AR@10@0.5")),
           ("AP", "metrics/evaluate.json", ("segm", "AP")),
           ("best_val_loss", "metrics/train.json", ("best_val_loss",)),
           ("train_seconds", "metrics/train.json", ("train_seconds",))]
SUMMARISED = ("AP50", "agnostic_AP50", "AR@10@0.5", "AP", "best_val_loss")
KEPT_SECTION = "## Earlier recipes"  # bench/SEEDS.md from this heading on is kept by each rewrite


def _run(*args: str) -> str:
    out = subprocess.run(list(args), cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out.stdout


def name(seed: int) -> str:
    return f"seed-{seed}"


def threads_per_job(jobs: int) -> int:
    """`train.threads` of each of ``jobs`` experiments at a time: the cores shared out."""
    return max(1, (os.cpu_count() or 1) // jobs)


def queue(seeds: list[int], jobs: int, baseline: str, poll_s: float = 10.0) -> float:
    threads = threads_per_job(jobs)
    start = time.perf_counter()
    for seed in seeds:
        _run("dvc", "exp", "run", "--queue", "-f", "-n", name(seed),
             "-S", f"train.seed={seed}", "-S", f"train.threads={threads}")
    print(f"queued {len(seeds)} experiments (train.threads={threads}); dvc queue start -j {jobs}", flush=True)
    _run("dvc", "queue", "start", "-j", str(jobs))
    done: set[str] = set()
    stalled = 0
    while True:
        status = _run("dvc", "queue", "status")
        if "Failed" in status:
            sys.exit(f"a queued experiment failed:\n{status}\nsee `dvc queue logs <task>`")
        finished = {name(s) for s in seeds if _ref(name(s), baseline) is not None}
        for exp in sorted(finished - done):
            print(f"{exp} finished after {time.perf_counter() - start:.0f} s", flush=True)
        done = finished
        if "Queued" not in status and "Running" not in status:
            return time.perf_counter() - start
        # DVC's workers can stop with tasks still queued (treeverse/dvc#10562): start them again
        stalled = stalled + 1 if "Running" not in status else 0
        if stalled >= 3:
            print("the queue's workers stopped with experiments still queued: dvc queue start again", flush=True)
            _run("dvc", "queue", "start", "-j", str(jobs))
            stalled = 0
        time.sleep(poll_s)


def _ref(exp: str, baseline: str) -> str | None:
    """The git ref of experiment ``exp`` queued on commit ``baseline``, None before it has finished."""
    ref = f"refs/exps/{baseline[:2]}/{baseline[2:]}/{exp}"
    found = subprocess.run(["git", "rev-parse", "--verify", "--quiet", ref], cwd=ROOT, capture_output=True)
    return ref if found.returncode == 0 else None


def collect(seeds: list[int], baseline: str) -> list[dict]:
    rows = []
    for seed in seeds:
        ref = _ref(name(seed), baseline)
        if ref is None:
            sys.exit(f"bench/seeds.py: no experiment {name(seed)} on commit {baseline}: run without --table-only")
        files = {f: json.loads(_run("git", "show", f"{ref}:{f}")) for f in {c[1] for c in COLUMNS}}
        row: dict = {"seed": seed, "commit": baseline[:7]}
        for column, file, path in COLUMNS:
            value = files[file]
            for key in path:
                value = value[key]
            row[column] = value
        intervals = files["metrics/evaluate.json"].get("intervals", {})
        for column, _, path in COLUMNS[:3]:
            bounds = intervals.get(path[0], {}).get(path[1])
            row[f"{column}_ci"] = f"{bounds['low']:.3f}-{bounds['high']:.3f}" if bounds else ""
        rows.append(row)
    return rows


def earlier_rows(table: Path, commit: str, seeds: list[int]) -> list[dict]:
    """The rows of ``table`` (a seeds.csv) trained on ``commit``, but for ``seeds`` (trained again now)."""
    if not table.exists():
        return []
    with open(table, newline="") as f:
        found = list(csv.DictReader(f))
    if found and "commit" not in found[0]:
        sys.exit(f"bench/seeds.py --add: {table} has no 'commit' column (written before --add existed), so its "
                 "rows cannot be matched to a commit; run all the seeds without --add")
    rows = []
    for row in found:
        if row["commit"] != commit or int(row["seed"]) in seeds:
            continue
        rows.append({k: (int(v) if k == "seed" else v if k == "commit" or k.endswith("_ci") else float(v))
                     for k, v in row.items()})
    return rows


def summary(rows: list[dict]) -> dict[str, dict[str, float]]:
    out = {}
    for column in SUMMARISED:
        values = [float(r[column]) for r in rows]
        out[column] = {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                       "min": min(values), "max": max(values)}
    return out


def markdown(rows: list[dict], wall_s: float | None, jobs: int, commit: str, ran: list[int] | None = None) -> str:
    """The table of ``rows``; ``ran``: the seeds this run trained when others were kept (``--add``)."""
    stats, threads = summary(rows), threads_per_job(jobs)
    if wall_s and ran is not None and len(ran) < len(rows):
        wall = (f"; {wall_s:.0f} s wall for seeds {', '.join(map(str, ran))}, the others from an earlier run "
                "on the same commit (`--add`).")
    else:
        wall = f"; {wall_s:.0f} s wall for all of them." if wall_s else "."
    lines = ["# Seed spread of the default recipe", "",
             f"`make seeds` (bench/seeds.py) on commit {commit}: the committed params.yaml with `train.seed` "
             f"{', '.join(str(r['seed']) for r in rows)}, one DVC experiment each, {jobs} at a time with "
             f"{threads} thread{'s' if threads > 1 else ''} each on a {os.cpu_count()}-core CPU" + wall,
             "Test split (200 images); the interval columns are each run's own 95% bootstrap interval over test "
             "images (metrics/evaluate.json `intervals`).", "",
             "| seed | AP50 | interval | class-agnostic AP50 | interval | AR@10@0.5 | interval | AP | "
             "best val loss | train s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['seed']} | {r['AP50']:.3f} | {r['AP50_ci']} | {r['agnostic_AP50']:.3f} | "
                     f"{r['agnostic_AP50_ci']} | {r['AR@10@0.5']:.3f} | {r['AR@10@0.5_ci']} | {r['AP']:.3f} | "
                     f"{r['best_val_loss']:.3f} | {r['train_seconds']:.0f} |")
    for stat in ("mean", "std", "min", "max"):
        lines.append(f"| **{stat}** | {stats['AP50'][stat]:.3f} | | {stats['agnostic_AP50'][stat]:.3f} | | "
                     f"{stats['AR@10@0.5'][stat]:.3f} | | {stats['AP'][stat]:.3f} | "
                     f"{stats['best_val_loss'][stat]:.3f} | |")
    lines += ["", "How to read a `dvc metrics diff` with these: a test-metric change between two commits is "
              "evidence only when it is larger than both the seed std above (retraining noise) and the "
              "bootstrap half-width of `intervals` in metrics/evaluate.json (test-sample noise); otherwise "
              "rerun both sides over several seeds (`python bench/seeds.py --seeds ...` on each commit) and "
              "compare the means.", ""]
    return "\n".join(lines)


def write(out: Path, rows: list[dict], wall_s: float | None, jobs: int, commit: str, ran: list[int]) -> None:
    """``rows`` as seeds.csv next to ``out`` and the table as ``out`` (SEEDS.md), keeping its
    ``## Earlier recipes`` section."""
    with open(out.with_name("seeds.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    previous = out.read_text() if out.exists() else ""
    tail = previous[previous.index(KEPT_SECTION):] if KEPT_SECTION in previous else ""
    out.write_text(markdown(rows, wall_s, jobs, commit, ran) + ("\n" + tail if tail else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2, help="experiments at a time (threads each: cores / jobs)")
    parser.add_argument("--table-only", action="store_true", help="only read the finished experiments back")
    parser.add_argument("--add", action="store_true",
                        help="keep the rows of seeds.csv from the same commit and add these seeds to them")
    parser.add_argument("--baseline", default="HEAD", help="--table-only: the commit the experiments ran on")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "SEEDS.md")
    args = parser.parse_args()
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"  # queue workers spawn dvc
    baseline = _run("git", "rev-parse", args.baseline).strip()  # fixed now: a commit meanwhile changes HEAD
    commit = baseline[:7]
    kept = earlier_rows(args.out.with_name("seeds.csv"), commit, args.seeds) if args.add else []  # before training
    if len(set(args.seeds)) + len(kept) < 2:
        sys.exit("bench/seeds.py: a spread needs at least two different seeds (--seeds, plus the rows --add keeps)")
    wall = None if args.table_only else queue(args.seeds, args.jobs, baseline)
    rows = sorted(kept + collect(args.seeds, baseline), key=lambda r: r["seed"])
    write(args.out, rows, wall, args.jobs, commit, args.seeds)
    print(args.out.read_text())


if __name__ == "__main__":
    main()
