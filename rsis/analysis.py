"""The analyze stage's work: sorting patterns of the predicted sequences and their figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from rsis.datasets.coco_format import annotation_file, decode_mask
from rsis.figures import draw_sequences
from rsis.io import read_json
from rsis.sorting import ObjectGeometry, geometry, sorting_summary

SEQUENCES_FIGURE = "sequences.png"


def load_sequences(predictions_path: str | Path) -> list[dict[str, Any]]:
    """Per image of the predictions file: image_id, file_name and masks in predicted order."""
    document = read_json(predictions_path)
    images = []
    for entry in document["images"]:
        instances = sorted(entry["instances"], key=lambda inst: inst["step"])
        images.append({"image_id": entry["image_id"], "file_name": entry["file_name"],
                       "masks": [decode_mask(inst["segmentation"]) for inst in instances]})
    return images


def analyze(data_root: str | Path, predictions_path: str | Path, figures_dir: str | Path,
            num_figure_images: int, columns: int, split: str = "test") -> dict[str, float]:
    """Kendall tau per strategy (mean over images) and a figure of predicted sequences."""
    images = load_sequences(predictions_path)
    geometries: list[list[ObjectGeometry]] = [[geometry(m) for m in im["masks"]] for im in images]
    summary = sorting_summary(geometries)
    summary["mean_sequence_length"] = float(np.mean([len(g) for g in geometries])) if geometries else 0.0

    gt = read_json(annotation_file(data_root, split))
    gt_masks: dict[int, list[np.ndarray]] = {}
    for ann in sorted(gt["annotations"], key=lambda a: -a["area"]):
        if not ann["iscrowd"]:
            gt_masks.setdefault(ann["image_id"], []).append(decode_mask(ann["segmentation"]))
    panels = []
    for im, geo in list(zip(images, geometries))[:num_figure_images]:
        panels.append({"image": np.asarray(Image.open(Path(data_root) / im["file_name"]).convert("RGB")),
                       "gt_masks": gt_masks.get(im["image_id"], []), "pred_masks": im["masks"],
                       "centres": [(g.x, g.y) for g in geo],
                       "caption": f"predicted sequence ({len(geo)})"})
    draw_sequences(panels, Path(figures_dir) / SEQUENCES_FIGURE, columns,
                   title="RSIS predicted sequences: colour and number give the step; line = route")
    return summary
