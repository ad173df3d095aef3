"""The analyze stage's work: sorting patterns of the predicted sequences (Table 6 and Figure 7 of
the paper), error analysis (Figure 3) and their figures and tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from rsis import errors
from rsis.datasets.coco_format import annotation_file, decode_mask
from rsis.figures import draw_errors, draw_pair_bars, draw_sequences, draw_tau_histogram
from rsis.io import atomic_path, read_json
from rsis.sorting import STRATEGIES, ObjectGeometry, consecutive_pair_shares, geometry, sequence_tau, sorting_summary

SEQUENCES_FIGURE = "sequences.png"
FIGURES = (SEQUENCES_FIGURE, "tau_histogram.png", "consecutive_pairs.png", "errors.png")
TABLES = ("taus.csv", "consecutive_pairs.csv", "errors_by_step.csv", "errors_by_object.csv")


def load_sequences(predictions_path: str | Path) -> list[dict[str, Any]]:
    """Per image of the predictions file: image_id, file_name and masks in predicted order."""
    document = read_json(predictions_path)
    images = []
    for entry in document["images"]:
        instances = sorted(entry["instances"], key=lambda inst: inst["step"])
        images.append({"image_id": entry["image_id"], "file_name": entry["file_name"],
                       "masks": [decode_mask(inst["segmentation"]) for inst in instances],
                       "steps": [inst["step"] for inst in instances], "labels": [inst["label"] for inst in instances]})
    return images


def _write_csv(rows: list[dict], path: Path, columns: list[str]) -> None:
    with atomic_path(path) as tmp:
        pd.DataFrame(rows, columns=columns).to_csv(tmp, index=False, float_format="%.6g")


def analyze(data_root: str | Path, predictions_path: str | Path, figures_dir: str | Path, tables_dir: str | Path,
            num_figure_images: int, columns: int, pair_threshold: float = 0.15, min_pair_count: int = 20,
            split: str = "test") -> dict[str, float]:
    """Kendall tau per strategy (mean over images), consecutive-pair shares, error analysis; the
    figures under ``figures_dir`` and their data as CSV under ``tables_dir``."""
    figures_dir, tables_dir = Path(figures_dir), Path(tables_dir)
    images = load_sequences(predictions_path)
    geometries: list[list[ObjectGeometry]] = [[geometry(m) for m in im["masks"]] for im in images]
    summary = sorting_summary(geometries)
    summary["mean_sequence_length"] = float(np.mean([len(g) for g in geometries])) if geometries else 0.0

    gt = read_json(annotation_file(data_root, split))
    names = {c["id"]: c["name"] for c in gt["categories"]}
    info = {im["id"]: im for im in gt["images"]}
    tau_rows = [{"image_id": im["image_id"], "objects": len(geo),
                 **{f"tau_{s}": sequence_tau(geo, s) for s in STRATEGIES}} for im, geo in zip(images, geometries)]
    _write_csv(tau_rows, tables_dir / "taus.csv", ["image_id", "objects"] + [f"tau_{s}" for s in STRATEGIES])
    draw_tau_histogram({s: [r[f"tau_{s}"] for r in tau_rows if r[f"tau_{s}"] is not None] for s in STRATEGIES},
                       figures_dir / "tau_histogram.png")

    labelled = [(geo, [names[label] for label in im["labels"]], info[im["image_id"]]["width"],
                 info[im["image_id"]]["height"]) for im, geo in zip(images, geometries)]
    pair_rows = consecutive_pair_shares(labelled, threshold=pair_threshold, min_count=min_pair_count)
    _write_csv(pair_rows, tables_dir / "consecutive_pairs.csv", ["first", "second", "count", *STRATEGIES])
    draw_pair_bars(pair_rows, STRATEGIES, figures_dir / "consecutive_pairs.png", min_pair_count)
    all_pairs = consecutive_pair_shares([(geo, ["any"] * len(geo), w, h) for geo, _, w, h in labelled],
                                        threshold=pair_threshold, min_count=1)  # all category pairs together
    for strategy in STRATEGIES:
        summary[f"pairs_{strategy}"] = all_pairs[0][strategy] if all_pairs else None
    gt_masks: dict[int, list[np.ndarray]] = {}
    for ann in sorted(gt["annotations"], key=lambda a: -a["area"]):
        if not ann["iscrowd"]:
            gt_masks.setdefault(ann["image_id"], []).append(decode_mask(ann["segmentation"]))
    image_errors = [errors.image_errors(im["masks"], im["steps"], gt_masks.get(im["image_id"], []))
                     for im in images]
    step_rows, object_rows = errors.by_step(image_errors), errors.by_object(image_errors)
    _write_csv(step_rows, tables_dir / "errors_by_step.csv", ["step", "predictions", "false_positives",
                                                              "mean_matched_iou"])
    _write_csv(object_rows, tables_dir / "errors_by_object.csv", ["size_pct", "iou", "found"])
    draw_errors(step_rows, object_rows, figures_dir / "errors.png")
    summary["false_positives"] = sum(r["false_positives"] for r in step_rows)
    summary["false_negatives"] = sum(1 - r["found"] for r in object_rows)
    matched = [i for e in image_errors for i in e.matched_iou if i is not None]
    summary["mean_matched_iou"] = float(np.mean(matched)) if matched else None

    panels = []
    for im, geo in list(zip(images, geometries))[:num_figure_images]:
        panels.append({"image": np.asarray(Image.open(Path(data_root) / im["file_name"]).convert("RGB")),
                       "gt_masks": gt_masks.get(im["image_id"], []), "pred_masks": im["masks"],
                       "centres": [(g.x, g.y) for g in geo],
                       "caption": f"predicted sequence ({len(geo)})"})
    draw_sequences(panels, Path(figures_dir) / SEQUENCES_FIGURE, columns,
                   title="RSIS predicted sequences: colour and number give the step; line = route")
    return summary
