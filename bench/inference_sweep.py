"""Validation metrics of trained checkpoints under several inference settings (no retraining).

    python bench/inference_sweep.py models/best.pt outputs/speed/hs7_s*/default/models/best.pt \\
        --seed-scales 2 3 4 6 8 --mask-thresholds 0.5 0.4 0.3 --mask-score 0 1 --out bench/inference_sweep.csv
    python bench/inference_sweep.py <best.pt ...> --stop-thresholds 0.5 0.4 0.3 0.2 0.1 0.05 \\
        --seed-scales 2 --mask-thresholds 0.5 --mask-score 0 --test-flips none --out bench/stop_threshold.csv  # STOP

Each grid axis is an ``evaluate`` setting: ``stop_threshold`` (a sequence ends at the first step whose
objectness is under it), ``mask_threshold``, ``mask_score`` (score x maskness), ``seed_scale`` (the
instance embedding's seed term), ``test_flips`` (``none``, ``vertical``, ``vertical,horizontal``, ...)
and ``flip_score``; an axis not given is params.yaml's value, as is every other evaluate setting. Each
checkpoint predicts ``--split`` of ``--data`` (default the converted data of params.yaml; the ablation
runs of bench/ablation.py generate the same validation images) once per seed scale and view (what the
network itself reads); every other setting post-processes those outputs, scored with
the evaluate stage's code: per-class AP50, class-agnostic AP50, AR@10@0.5, segm AP and the masks
emitted. Prints a Markdown table of the means over checkpoints per setting and writes one CSV row per
checkpoint and setting (docs/research-log.md, rows STOP and MS, were made so).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import io
import itertools
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from rsis.config import EvaluateConfig, load_section  # noqa: E402
from rsis.core.checkpoint import load_model  # noqa: E402
from rsis.datasets.dataset import InstanceDataset, collate  # noqa: E402
from rsis.datasets.format import annotation_file  # noqa: E402
from rsis.evaluation.coco import load_ground_truth  # noqa: E402
from rsis.evaluation.inference import infer_views, read_views  # noqa: E402
from rsis.evaluation.run import score  # noqa: E402

SETTINGS = ["seed_scale", "stop_threshold", "mask_threshold", "mask_score", "test_flips", "flip_score"]
METRICS = ["AP50", "agnostic_AP50", "AR@10@0.5", "AP"]
COLUMNS = ["checkpoint", *SETTINGS, "masks", *METRICS]


def sweep(checkpoints: list[str], data: str, split: str, cfg: EvaluateConfig, grid: dict[str, list]) -> list[dict]:
    """One row per checkpoint and combination of ``grid``'s values (keys: SETTINGS; a key left out
    keeps ``cfg``'s value): the metrics of its predictions under those settings."""
    axes = {key: grid.get(key) or [getattr(cfg, key)] for key in SETTINGS}
    flips = tuple(dict.fromkeys(axis for setting in axes["test_flips"] for axis in setting))  # every view needed
    rows = []
    ground_truth = load_ground_truth(annotation_file(data, split))
    for path in checkpoints:
        model, _ = load_model(path, torch.device("cpu"))
        dataset = InstanceDataset(data, split, model.input_size)
        loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=False, collate_fn=collate)
        for seed_scale in axes["seed_scale"]:
            with torch.no_grad():  # the network once per seed scale and view; the rest is post-processing
                ran = dataclasses.replace(cfg, seed_scale=seed_scale, test_flips=flips)
                batches = [(dict(infer_views(model, images, ran)), targets) for images, targets in loader]
            for stop, mask, mask_score, test_flips, flip_score in itertools.product(
                    axes["stop_threshold"], axes["mask_threshold"], axes["mask_score"], axes["test_flips"],
                    axes["flip_score"]):
                at = dataclasses.replace(ran, stop_threshold=stop, mask_threshold=mask, mask_score=bool(mask_score),
                                         test_flips=tuple(test_flips), flip_score=flip_score)
                sequences = [seq for views, targets in batches for seq in read_views(
                    [(view, views[view]) for view in ("image", *test_flips)], [t["orig_size"] for t in targets],
                    [t["image_id"] for t in targets], at)]
                with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints every summary
                    metrics = score(ground_truth, sequences, dataset)
                rows.append({"checkpoint": path, "seed_scale": seed_scale, "stop_threshold": stop,
                             "mask_threshold": mask, "mask_score": bool(mask_score),
                             "test_flips": ",".join(test_flips) or "none", "flip_score": flip_score,
                             "masks": metrics["counts"]["predicted_instances"], "AP50": metrics["segm"]["AP50"],
                             "agnostic_AP50": metrics["segm_class_agnostic"]["AP50"],
                             "AR@10@0.5": metrics["proposals"]["AR@10@0.5"], "AP": metrics["segm"]["AP"]})
    return rows


def table(rows: list[dict]) -> str:
    """Markdown: per setting, the masks emitted (summed) and each metric's mean over checkpoints."""
    lines = ["| seed scale | stop threshold | mask threshold | mask score | test flips | flip score | "
             "masks (all checkpoints) | AP50 (mean) | class-agnostic AP50 (mean) | AR@10@0.5 (mean) | AP (mean) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for setting in dict.fromkeys(tuple(r[k] for k in SETTINGS) for r in rows):
        group = [r for r in rows if tuple(r[k] for k in SETTINGS) == setting]
        means = " | ".join(f"{sum(r[k] for r in group) / len(group):.3f}" for k in METRICS)
        lines.append(f"| {' | '.join(map(str, setting))} | {sum(r['masks'] for r in group)} | {means} |")
    return "\n".join(lines)


def flip_setting(text: str) -> tuple[str, ...]:
    """'none' -> (); 'vertical,horizontal' -> ('vertical', 'horizontal')."""
    axes = () if text == "none" else tuple(text.split(","))
    if any(axis not in ("vertical", "horizontal") for axis in axes):
        raise argparse.ArgumentTypeError(f"{text!r}: expected none or axes from vertical, horizontal joined by commas")
    return axes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", help="best.pt files of trained runs")
    parser.add_argument("--data", default=None, help="converted dataset folder (default: paths.data of params.yaml)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--seed-scales", type=float, nargs="+", help="evaluate.seed_scale values")
    parser.add_argument("--stop-thresholds", type=float, nargs="+", help="evaluate.stop_threshold values")
    parser.add_argument("--mask-thresholds", type=float, nargs="+", help="evaluate.mask_threshold values")
    parser.add_argument("--mask-score", type=int, nargs="+", choices=(0, 1), help="evaluate.mask_score: 0 off, 1 on")
    parser.add_argument("--test-flips", type=flip_setting, nargs="+",
                        help="evaluate.test_flips settings: none | vertical | horizontal | vertical,horizontal ...")
    parser.add_argument("--flip-scores", type=float, nargs="+", help="evaluate.flip_score values")
    parser.add_argument("--out", type=Path, default=None, help="CSV of every checkpoint's rows")
    args = parser.parse_args(argv)
    for path in args.checkpoints:
        if not Path(path).is_file():
            parser.error(f"checkpoint {path} does not exist")
    grid = {"seed_scale": args.seed_scales, "stop_threshold": args.stop_thresholds,
            "mask_threshold": args.mask_thresholds, "mask_score": args.mask_score, "test_flips": args.test_flips,
            "flip_score": args.flip_scores}
    rows = sweep(args.checkpoints, args.data or load_section("paths").data, args.split, load_section("evaluate"), grid)
    if args.out is not None:
        with args.out.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
