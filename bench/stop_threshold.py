"""Validation metrics of trained checkpoints at several stop thresholds (inference only, no retraining).

    python bench/stop_threshold.py models/best.pt outputs/speed/hs7_s*/default/models/best.pt \\
        --thresholds 0.5 0.4 0.3 0.2 0.1 0.05 --out bench/stop_threshold.csv

A sequence ends at the first step whose objectness is under ``evaluate.stop_threshold``. Every other
evaluate setting is params.yaml's. Each checkpoint predicts ``--split`` of ``--data`` (default the
converted data of params.yaml; the ablation runs of bench/ablation.py generate the same validation
images) once per threshold, scored with the evaluate stage's code: per-class AP50, class-agnostic AP50,
AR@10@0.5 and the masks emitted. Prints a Markdown table of the means over checkpoints per threshold
and writes one CSV row per checkpoint and threshold (docs/research-log.md, row STOP, was made so).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from rsis.config import EvaluateConfig, load_section  # noqa: E402
from rsis.core.checkpoint import load_model  # noqa: E402
from rsis.datasets.dataset import InstanceDataset, collate  # noqa: E402
from rsis.evaluation.coco import load_ground_truth  # noqa: E402
from rsis.evaluation.inference import infer, postprocess  # noqa: E402
from rsis.evaluation.run import score  # noqa: E402
from rsis.datasets.format import annotation_file  # noqa: E402

COLUMNS = ["checkpoint", "stop_threshold", "masks", "AP50", "agnostic_AP50", "AR@10@0.5"]


def sweep(checkpoints: list[str], data: str, split: str, thresholds: list[float], cfg: EvaluateConfig
          ) -> list[dict]:
    """One row per checkpoint and threshold: the metrics of its predictions at that stop threshold."""
    rows = []
    device = torch.device("cpu")
    ground_truth = load_ground_truth(annotation_file(data, split))
    for path in checkpoints:
        model, _ = load_model(path, device)
        dataset = InstanceDataset(data, split, model.input_size)
        loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=False, collate_fn=collate)
        with torch.no_grad():  # the network once; only the post-processing depends on the threshold
            batches = [(infer(model, images, cfg), targets) for images, targets in loader]
        for threshold in thresholds:
            at = dataclasses.replace(cfg, stop_threshold=threshold)
            sequences = [seq for outputs, targets in batches for seq in postprocess(
                outputs, [t["orig_size"] for t in targets], [t["image_id"] for t in targets], at)]
            with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints every summary
                metrics = score(ground_truth, sequences, dataset)
            rows.append({"checkpoint": path, "stop_threshold": threshold,
                         "masks": metrics["counts"]["predicted_instances"], "AP50": metrics["segm"]["AP50"],
                         "agnostic_AP50": metrics["segm_class_agnostic"]["AP50"],
                         "AR@10@0.5": metrics["proposals"]["AR@10@0.5"]})
    return rows


def table(rows: list[dict]) -> str:
    """Markdown: per threshold, the masks emitted (summed) and each metric's mean over checkpoints."""
    lines = ["| stop threshold | masks (all checkpoints) | AP50 (mean) | class-agnostic AP50 (mean) | AR@10@0.5 (mean) |",
             "|---|---|---|---|---|"]
    for threshold in dict.fromkeys(r["stop_threshold"] for r in rows):
        group = [r for r in rows if r["stop_threshold"] == threshold]
        mean = {k: sum(r[k] for r in group) / len(group) for k in ("AP50", "agnostic_AP50", "AR@10@0.5")}
        lines.append(f"| {threshold} | {sum(r['masks'] for r in group)} | {mean['AP50']:.3f} | "
                     f"{mean['agnostic_AP50']:.3f} | {mean['AR@10@0.5']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", help="best.pt files of trained runs")
    parser.add_argument("--data", default=None, help="converted dataset folder (default: paths.data of params.yaml)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
    parser.add_argument("--out", type=Path, default=None, help="CSV of every checkpoint's rows")
    args = parser.parse_args(argv)
    for path in args.checkpoints:
        if not Path(path).is_file():
            parser.error(f"checkpoint {path} does not exist")
    rows = sweep(args.checkpoints, args.data or load_section("paths").data, args.split, args.thresholds,
                 load_section("evaluate"))
    if args.out is not None:
        with args.out.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
