"""Ablation: the paper's configuration, each extension alone on top of it, and the default, trained
on the same converted data for the same number of updates and scored with the evaluate stage's code.

    python bench/ablation.py                          # every variant, test split, table -> bench/ABLATION.md
    python bench/ablation.py --split val --only paper default --set train.epochs=4
    python bench/ablation.py --only paper --set train.epochs=60 --curve --report bench/LONG_RUN.md

A variant is a set of params overrides: ``paper`` is params.yaml with ``preset: paper`` (every
extension at the paper's value, the default data and budget); ``+x`` adds one extension to it;
``default`` is params.yaml as it is. ``--jobs 2`` runs two variants at once with one thread each
(on 2 cores, two torch processes with all threads each slow each other far more than 2x).
``--curve [N]`` evaluates the last checkpoint every N epochs (AP50 and losses vs updates, written
to <out>/<variant>/curve.csv). Each variant's params are resolved when the run starts and written
to <out>/<variant>.params.json, which its worker trains on: params.yaml may be edited meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from rsis.config import SECTIONS, apply_preset, merge, from_dict, read_params
from rsis.core.checkpoint import LAST
from rsis.datasets.convert import convert
from rsis.evaluation.run import evaluate
from rsis.training import distributed
from rsis.training.fit import fit

PAPER = {"preset": "paper"}
VARIANTS: dict[str, dict[str, Any]] = {  # each extension alone on top of the paper, then the default
    "paper": PAPER,
    "+stride16": {**PAPER, "model": {"output_stride": 16}},
    "+coord": {**PAPER, "model": {"coord": True}},
    "+canvas": {**PAPER, "model": {"canvas": True}},
    "+canvas+gate": {**PAPER, "model": {"canvas": True, "canvas_gate": True}},
    "+top-down": {**PAPER, "train": {"matching": "top-down"}},
    "+canvas+top-down+teacher": {**PAPER, "model": {"canvas": True},
                                 "train": {"matching": "top-down", "teacher_forcing_epochs": 3}},
    "+maskpool": {**PAPER, "model": {"head_pool": "max+mask"}},
    "+image-skip": {**PAPER, "model": {"image_skip": True}},
    "+aux-masks": {**PAPER, "model": {"aux_masks": True}, "train": {"loss_weights": {"aux_mask": 1.0}}},
    "+embedding": {**PAPER, "model": {"instance_embedding": True}, "train": {"loss_weights": {"embedding": 1.0}}},
    "+bce": {**PAPER, "train": {"loss_weights": {"bce": 1.0}}},
    "+class-weight": {**PAPER, "train": {"loss_weights": {"cls": 1.0}}},
    "+overlap-targets": {**PAPER, "train": {"head_targets": "overlap"}},
    "+grad-clip": {**PAPER, "train": {"grad_clip": 1.0}},
    "default": {},
}
ROOT = Path(__file__).resolve().parent.parent


def variant_params(name: str, sets: list[str]) -> dict[str, Any]:
    """params.yaml with the variant's preset and overrides, then ``--set section.key=value`` items."""
    return sections(resolved_params(name, sets))


def sections(raw: dict[str, Any]) -> dict[str, Any]:
    """The config dataclass of every params section of ``raw`` (a resolved params mapping)."""
    return {section: from_dict(cls, raw[section], section) for section, cls in SECTIONS.items()}


def check_set(item: str) -> None:
    """``item`` must be SECTION.KEY=VALUE: a preset or overrides key set here would come after the preset
    was applied and change nothing (bench/speedup.py checks its --set-old/--set-new with this too)."""
    key = item.partition("=")[0]
    if "." not in key or key.split(".")[0] not in SECTIONS:
        raise ValueError(f"--set {item!r}: expected SECTION.KEY=VALUE with SECTION one of {sorted(SECTIONS)}; "
                         f"a preset is a variant's (VARIANTS, e.g. 'paper'), not a --set")


def resolved_params(name: str, sets: list[str]) -> dict[str, Any]:
    """:func:`variant_params` as a plain mapping (preset, overrides and ``sets`` applied)."""
    raw = read_params(ROOT / "params.yaml")
    spec = dict(VARIANTS[name])
    raw["preset"] = spec.pop("preset", raw.get("preset", "none"))
    raw, _ = apply_preset(raw, ROOT / "params.yaml")
    raw = merge(raw, spec)
    for item in sets:
        check_set(item)
        key, _, value = item.partition("=")
        *parents, leaf = key.split(".")
        node = raw
        for part in parents:
            node = node[part]
        node[leaf] = yaml.safe_load(value)
    return raw


def snapshot_file(out: Path, name: str) -> Path:
    """Where the master writes a variant's params, resolved when the run started: the worker trains on
    that, so editing params.yaml or the code's params keys while a long ablation runs changes nothing in it."""
    return out / f"{name}.params.json"


def run_variant(name: str, out: Path, split: str, curve: int) -> dict[str, Any]:
    """Train one variant (params from its :func:`snapshot_file`) into <out>/<name> and evaluate its best
    checkpoint on ``split``."""
    cfg = sections(json.loads(snapshot_file(out, name).read_text()))
    folder = out / name
    paths = cfg["paths"].__class__(raw=str(out / "raw"), data=str(out / "data"), models=str(folder / "models"),
                                   predictions=str(folder / "predictions.json"), evaluation=str(folder / "evaluation"),
                                   metrics=str(folder), figures=str(folder / "figures"))
    train_cfg = cfg["train"]
    points: list[dict[str, Any]] = []

    def log_epoch(epoch: int, row: dict[str, float]) -> None:
        if curve and ((epoch + 1) % curve == 0 or epoch + 1 == train_cfg.epochs):
            scores = evaluate(paths, cfg["evaluate"], cfg["data"].dataset, split=split, device=train_cfg.device,
                              checkpoint=LAST)
            points.append({"epoch": epoch, "updates": (epoch + 1) * updates_per_epoch, **_summary(scores),
                           "val_mask": row["val_mask"], "val_cls": row["val_cls"], "val_total": row["val_total"]})
            pd.DataFrame(points).to_csv(folder / "curve.csv", index=False, float_format="%.4f")

    n_train = len(json.loads((out / "data" / "train.json").read_text())["images"])
    updates_per_epoch = n_train // train_cfg.batch_size
    result = fit(paths, cfg["model"], train_cfg, log_epoch=log_epoch)
    if not distributed.is_main_process():  # train.launcher torchrun: rank 0 evaluates and writes
        return {}
    scores = evaluate(paths, cfg["evaluate"], cfg["data"].dataset, split=split, device=train_cfg.device)
    last = result.history.iloc[-1]
    row = {"variant": name, "updates": len(result.history) * updates_per_epoch, **_summary(scores),
           "val_mask": round(float(last["val_mask"]), 3), "val_cls": round(float(last["val_cls"]), 3),
           "train_seconds": round(result.seconds, 1),
           "images_per_s": round(len(result.history) * updates_per_epoch * train_cfg.batch_size
                                 / result.history["epoch_seconds"].sum(), 1)}
    (folder / "result.json").write_text(json.dumps(row, indent=2))
    return row


def _summary(scores: dict[str, Any]) -> dict[str, float]:
    return {"AP50": round(scores["segm"]["AP50"], 3), "AP": round(scores["segm"]["AP"], 3),
            "agnostic_AP50": round(scores["segm_class_agnostic"]["AP50"], 3),
            "AR@10@0.5": round(scores["proposals"]["AR@10@0.5"], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--split", default="test", choices=["val", "test"])
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="applied to every variant after its overrides, e.g. train.epochs=4")
    parser.add_argument("--jobs", type=int, default=1, help="variants at once, one thread each when > 1")
    parser.add_argument("--curve", type=int, nargs="?", const=1, default=0, metavar="EPOCHS",
                        help="evaluate the last checkpoint every EPOCHS epochs (default 1): AP50 vs updates")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "ablation")
    parser.add_argument("--report", type=Path, default=ROOT / "bench" / "ABLATION.md")
    parser.add_argument("--collect", action="store_true",
                        help="train nothing: write the report from what --out holds (e.g. after stopping a long run)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_variant(args.worker, args.out, args.split, args.curve)
        return

    start = time.perf_counter()
    data_cfg = variant_params("default", args.sets)["data"]
    if not args.collect and not (args.out / "data" / "test.json").is_file():
        convert(data_cfg, args.out / "data", args.out / "raw")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    sets = list(args.sets)
    if args.jobs > 1:
        env["OMP_NUM_THREADS"] = "1"
        sets.append("train.threads=1")
    pending, running = ([] if args.collect else list(args.only)), []
    snapshots = {name: resolved_params(name, sets) for name in pending}  # every variant's params, checked now
    args.out.mkdir(parents=True, exist_ok=True)
    trains = {name: sections(raw)["train"] for name, raw in snapshots.items()}  # a bad value stops here
    for name, raw in snapshots.items():
        snapshot_file(args.out, name).write_text(json.dumps(raw, indent=1))
    while pending or running:
        while pending and len(running) < args.jobs:
            name = pending.pop(0)
            train = trains[name]
            launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                        f"--nproc_per_node={train.nproc_per_node}"] if train.launcher == "torchrun" else [sys.executable]
            command = [*launcher, __file__, "--worker", name, "--split", args.split, "--out", str(args.out),
                       *(["--curve", str(args.curve)] if args.curve else [])]
            log = open(args.out / f"{name}.log", "w")
            running.append((name, subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT), log))
            print(f"started {name} (log: {args.out / f'{name}.log'})", flush=True)
        time.sleep(2)
        for item in list(running):
            name, proc, log = item
            if proc.poll() is not None:
                running.remove(item)
                log.close()
                print(f"{name}: {'done' if proc.returncode == 0 else f'FAILED (exit {proc.returncode})'}", flush=True)
    rows = [json.loads((args.out / n / "result.json").read_text()) for n in args.only
            if (args.out / n / "result.json").is_file()]
    table = pd.DataFrame(rows)
    print(table.to_string(index=False))
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.with_suffix(".csv").write_text(table.to_csv(index=False))
    curves = [pd.read_csv(args.out / n / "curve.csv").assign(variant=n) for n in args.only
              if args.curve and (args.out / n / "curve.csv").is_file()]
    if curves:  # one learning curve file for all variants (a DVC plot)
        args.report.with_suffix(".curve.csv").write_text(pd.concat(curves).to_csv(index=False))
    unfinished = [f"{c['variant'].iloc[0]} (stopped; its curve reaches {int(c['updates'].max())} updates)"
                  for c in curves if not (args.out / c["variant"].iloc[0] / "result.json").is_file()]
    wall = "collected from " + str(args.out) if args.collect else f"{time.perf_counter() - start:.0f} s wall"
    args.report.write_text(
        f"# Ablation ({args.split} split)\n\nCommand: `python bench/ablation.py {' '.join(sys.argv[1:])}`"
        f" ({wall}, {args.jobs} job(s) at once)\n\n"
        f"{markdown(table) if rows else 'no variant finished'}\n"
        + (f"\nNot finished: {', '.join(unfinished)}.\n" if unfinished else ""))


def markdown(table: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(map(str, table.columns)) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
