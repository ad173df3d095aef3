"""This run's numbers next to the paper's (RSIS, ResNet-101: its Pascal VOC, CVPPP A1 and Cityscapes tables), as Markdown.

Each dataset is compared on its benchmark's protocol. The synthetic datasets have no published
numbers: ``shapes`` is shown under the Pascal protocol and ``leaves`` under the CVPPP one, with
the paper's figures for scale only.
"""

from __future__ import annotations

from typing import Any

# (label, path into metrics/evaluate.json, paper value in the metric's own unit, scale to display)
PASCAL = [("AP@0.5", ("segm", "AP@0.5"), 57.6), ("AP@0.6", ("segm", "AP@0.6"), 52.5),
          ("AP@0.7", ("segm", "AP@0.7"), 43.3), ("AP@0.8", ("segm", "AP@0.8"), 38.1),
          ("class-agnostic AR@10 at IoU 0.5", ("proposals", "AR@10@0.5"), 68.2)]
CVPPP = [("SBD", ("cvppp", "SBD_mean"), 70.6), ("SBD std", ("cvppp", "SBD_std"), 11.2),
         (r"\|DiC\| (count error)", ("cvppp", "absDiC_mean"), 1.2)]  # pipes escaped inside a Markdown table
CITYSCAPES = [("AP (official cityscapesscripts)", ("cityscapes", "AP"), 5.8),
              ("AP50 (official cityscapesscripts)", ("cityscapes", "AP50"), 13.8)]

INTERVAL_KEYS = {"AP@0.5": "AP50"}  # the row's key -> its key under "intervals" (rsis/evaluation/bootstrap.py)

BENCHMARKS = {
    "voc": ("Pascal VOC 2012 val", PASCAL, ""),
    "shapes": ("the synthetic shapes test split, Pascal protocol", PASCAL,
               "The paper has no synthetic benchmark: its Pascal VOC figures are shown for scale only."),
    "cvppp": ("CVPPP A1", CVPPP,
              "The paper's figures are on the organisers' test set; this run's are on the 32 held-out "
              "labelled plants (the test labels are not public)."),
    "leaves": ("the synthetic leaves test split, CVPPP protocol", CVPPP,
               "The paper has no synthetic benchmark: its CVPPP A1 figures are shown for scale only."),
    "cityscapes": ("Cityscapes", CITYSCAPES, "The paper's figures are on the test server; this run's on val."),
    "coco": ("your own COCO-format test split, Pascal protocol", PASCAL,
             "The paper has no figures on this data: its Pascal VOC figures are shown for scale only."),
}


def _lookup(metrics: dict[str, Any], path: tuple[str, str]) -> float | None:
    value = metrics.get(path[0], {}).get(path[1])
    return None if value is None else float(value)


def _show(label: str, value: float | None) -> str:
    """AP and recall are stored in [0, 1] and reported in % like the paper; counts as they are."""
    return "n/a" if value is None else (f"{value:.2f}" if "DiC" in label else f"{100 * value:.1f}")


def paper_comparison(dataset: str, metrics: dict[str, Any]) -> str:
    if dataset not in BENCHMARKS:
        raise ValueError(f"data.dataset = {dataset!r}: no paper comparison (known: {sorted(BENCHMARKS)})")
    title, rows, note = BENCHMARKS[dataset]
    counts = metrics.get("counts", {})
    lines = [f"# This run vs. the paper: {title}", "",
             f"Test images: {counts.get('images', '?')}, ground-truth instances: {counts.get('gt_instances', '?')}, "
             f"checkpoint epoch: {metrics.get('checkpoint_epoch', '?')}.", ""]
    if note:
        lines += [note, ""]
    intervals = metrics.get("intervals", {})
    if intervals:
        lines += [f"Intervals: {100 * intervals['confidence']:g}% percentile bootstrap over the test images "
                  f"({intervals['resamples']} resamples): how far the metric would move on another test sample "
                  "of the same size, not across training seeds.", ""]
    lines += ["| metric | this run | interval | paper (RSIS, ResNet-101) |", "|---|---|---|---|"]
    for label, path, paper in rows:
        bounds = intervals.get(path[0], {}).get(INTERVAL_KEYS.get(path[1], path[1]))
        span = f"{_show(label, bounds['low'])}-{_show(label, bounds['high'])}" if bounds else "n/a"
        lines.append(f"| {label} | {_show(label, _lookup(metrics, path))} | {span} | {paper} |")
    return "\n".join(lines) + "\n"
