"""The analyze stage's work: sorting patterns of the predicted sequences (Table 6 and Figure 7 of
the paper), encoder activations (Table 7, Figure 8), error analysis (Figure 3), qualitative
sequences (Figures 2, 4, 6), and their figures and tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image

from rsis.analysis import activations, error_analysis
from rsis.config import AnalyzeConfig, ModelConfig, PathsConfig, from_dict
from rsis.core.checkpoint import BEST, load_model
from rsis.datasets.dataset import InstanceDataset
from rsis.datasets.format import annotation_file, decode_mask
from rsis.analysis.figures import (draw_activation_examples, draw_activation_taus, draw_errors, draw_pair_bars,
                                   draw_sequences, draw_tau_histogram, draw_training_curves)
from rsis.analysis.ordering import (STRATEGIES, ObjectGeometry, consecutive_pair_shares, geometry, sequence_tau,
                                    sorting_summary)
from rsis.core.model import RSIS, initial_model
from rsis.files import atomic_path, read_json
from rsis.runtime import select_device

SELECTIONS = (*STRATEGIES, "random")  # qualitative figures: best images per strategy, then random ones
SEQUENCE_FIGURES = tuple(f"sequences_{name}.png" for name in SELECTIONS)
FIGURES = (*SEQUENCE_FIGURES, "tau_histogram.png", "consecutive_pairs.png", "errors.png", "activation_taus.png",
           "activations.png", "training_curves.png")
TABLES = ("taus.csv", "consecutive_pairs.csv", "errors_by_step.csv", "errors_by_object.csv", "activations.csv")
STRATEGY_NAMES = {"r2l": "right to left", "b2t": "bottom to top", "l2s": "large to small"}
MIN_SELECTED_OBJECTS = 3  # an image must have this many predicted objects to illustrate a strategy


def load_sequences(predictions_path: str | Path) -> list[dict[str, Any]]:
    """Per image of the predictions file: image_id, file_name and masks in predicted order. Only the
    model's own sequence: what a flipped view added (evaluate.test_flips) is scored, not analysed."""
    document = read_json(predictions_path)
    images = []
    for entry in document["images"]:
        own = [inst for inst in entry["instances"] if inst.get("view", "image") == "image"]
        instances = sorted(own, key=lambda inst: inst["step"])
        images.append({"image_id": entry["image_id"], "file_name": entry["file_name"],
                       "masks": [decode_mask(inst["segmentation"]) for inst in instances],
                       "steps": [inst["step"] for inst in instances], "labels": [inst["label"] for inst in instances]})
    return images


def _write_csv(rows: list[dict], path: Path, columns: list[str]) -> None:
    with atomic_path(path) as tmp:
        pd.DataFrame(rows, columns=columns).to_csv(tmp, index=False, float_format="%.6g")


def select_images(tau_rows: list[dict], count: int, seed: int) -> dict[str, list[int]]:
    """Indices of the images to draw: per strategy the ``count`` images whose predicted order
    follows it most closely (highest tau, then more objects; at least ``MIN_SELECTED_OBJECTS``
    objects where enough images have them; no image in two strategies' figures), and ``count``
    images drawn at random (seeded)."""
    selected, used = {}, set()
    for strategy in STRATEGIES:  # each image in one strategy's figure at most (the first that ranks it)
        scored = [(r[f"tau_{strategy}"], r["objects"], i) for i, r in enumerate(tau_rows)
                  if r[f"tau_{strategy}"] is not None and i not in used]
        rich = [s for s in scored if s[1] >= MIN_SELECTED_OBJECTS]
        pool = rich if len(rich) >= count else scored
        selected[strategy] = [i for _, _, i in sorted(pool, key=lambda s: (-s[0], -s[1], s[2]))[:count]]
        used.update(selected[strategy])
    rng = np.random.default_rng(seed)
    selected["random"] = sorted(rng.choice(len(tau_rows), size=min(count, len(tau_rows)), replace=False).tolist())
    return selected


def before_and_after(models_dir: str | Path, device: torch.device) -> dict[str, RSIS]:
    """The network at initialisation (rebuilt from the checkpoint's config and seed) and trained."""
    after, state = load_model(Path(models_dir) / BEST, device)
    model_cfg = from_dict(ModelConfig, state["model_config"], "checkpoint.model_config")
    before = initial_model(model_cfg, state["num_classes"], state["train_config"]["seed"]).to(device)
    return {"before": before.eval(), "after": after}


def analyze(paths: PathsConfig, cfg: AnalyzeConfig, split: str = "test", device: str = "auto") -> dict[str, Any]:
    """Every analysis of the predicted sequences of ``split``: the figures under paths.figures,
    their data as CSV under <paths.metrics>/analysis; returns the scalar summary."""
    figures_dir, tables_dir = Path(paths.figures), Path(paths.metrics) / "analysis"
    history = pd.read_csv(paths.history).to_dict("records") if paths.history.is_file() else []
    draw_training_curves(history, figures_dir / "training_curves.png")
    images = load_sequences(paths.predictions)
    geometries: list[list[ObjectGeometry]] = [[geometry(m) for m in im["masks"]] for im in images]
    summary: dict[str, Any] = sorting_summary(geometries)
    summary["mean_sequence_length"] = float(np.mean([len(g) for g in geometries])) if geometries else 0.0

    gt = read_json(annotation_file(paths.data, split))
    names = {c["id"]: c["name"] for c in gt["categories"]}
    info = {im["id"]: im for im in gt["images"]}
    tau_rows = [{"image_id": im["image_id"], "objects": len(geo),
                 **{f"tau_{s}": sequence_tau(geo, s) for s in STRATEGIES}} for im, geo in zip(images, geometries)]
    _write_csv(tau_rows, tables_dir / "taus.csv", ["image_id", "objects"] + [f"tau_{s}" for s in STRATEGIES])
    draw_tau_histogram({s: [r[f"tau_{s}"] for r in tau_rows if r[f"tau_{s}"] is not None] for s in STRATEGIES},
                       figures_dir / "tau_histogram.png")

    labelled = [(geo, [names[label] for label in im["labels"]], info[im["image_id"]]["width"],
                 info[im["image_id"]]["height"]) for im, geo in zip(images, geometries)]
    pair_rows = consecutive_pair_shares(labelled, threshold=cfg.pair_threshold, min_count=cfg.min_pair_count)
    _write_csv(pair_rows, tables_dir / "consecutive_pairs.csv", ["first", "second", "count", *STRATEGIES])
    draw_pair_bars(pair_rows, STRATEGIES, figures_dir / "consecutive_pairs.png", cfg.min_pair_count,
                   cfg.pair_threshold)
    all_pairs = consecutive_pair_shares([(geo, ["any"] * len(geo), w, h) for geo, _, w, h in labelled],
                                        threshold=cfg.pair_threshold, min_count=1)  # all category pairs together
    for strategy in STRATEGIES:
        summary[f"pairs_{strategy}"] = all_pairs[0][strategy] if all_pairs else None

    gt_masks: dict[int, list[np.ndarray]] = {}
    for ann in sorted(gt["annotations"], key=lambda a: -a["area"]):
        if not ann["iscrowd"]:
            gt_masks.setdefault(ann["image_id"], []).append(decode_mask(ann["segmentation"]))
    image_errors = [error_analysis.image_errors(im["masks"], im["steps"], gt_masks.get(im["image_id"], []))
                    for im in images]
    step_rows, object_rows = error_analysis.by_step(image_errors), error_analysis.by_object(image_errors)
    _write_csv(step_rows, tables_dir / "errors_by_step.csv", ["step", "predictions", "false_positives",
                                                              "mean_matched_iou"])
    _write_csv(object_rows, tables_dir / "errors_by_object.csv", ["size_pct", "iou", "found"])
    draw_errors(step_rows, object_rows, figures_dir / "errors.png")
    summary["false_positives"] = sum(r["false_positives"] for r in step_rows)
    summary["false_negatives"] = sum(1 - r["found"] for r in object_rows)
    matched = [i for e in image_errors for i in e.matched_iou if i is not None]
    summary["mean_matched_iou"] = float(np.mean(matched)) if matched else None

    def picture(index: int) -> np.ndarray:
        return np.asarray(Image.open(Path(paths.data) / images[index]["file_name"]).convert("RGB"))

    selected = select_images(tau_rows, cfg.figure_images, cfg.seed)
    for name, indices in selected.items():
        panels = [{"image": picture(i), "gt_masks": gt_masks.get(images[i]["image_id"], []),
                   "pred_masks": images[i]["masks"], "centres": [(g.x, g.y) for g in geometries[i]],
                   "caption": _caption(tau_rows[i])} for i in indices]
        title = ("RSIS on random test images" if name == "random" else
                 f"Test images whose predicted order is closest to {STRATEGY_NAMES[name]} ({name})")
        draw_sequences(panels, figures_dir / f"sequences_{name}.png", cfg.figure_images,
                       title=f"{title}: colour and number give the step, line = route")

    summary.update(_activations(paths, cfg, images, split, select_device(device), figures_dir, tables_dir, picture))
    return summary


def _caption(row: dict) -> str:
    taus = " ".join(f"{s} {row[f'tau_{s}']:+.2f}" for s in STRATEGIES if row[f"tau_{s}"] is not None)
    return f"{row['objects']} predicted" + (f"\ntau {taus}" if taus else "")  # two lines: fits the panel


def _activations(paths: PathsConfig, cfg: AnalyzeConfig, images: list[dict[str, Any]], split: str,
                 device: torch.device, figures_dir: Path, tables_dir: Path, picture) -> dict[str, Any]:
    """Table 7 (tau of the predicted order with each block's activation order, before and after
    training) and Figure 8 (most and least active object on sample images)."""
    models = before_and_after(paths.models, device)
    dataset = InstanceDataset(paths.data, split, models["after"].input_size)
    index = {im["image_id"]: i for i, im in enumerate(images)}
    shown = [im["image_id"] for im in images if len(im["masks"]) >= 2]
    shown = [shown[i] for i in sorted(np.random.default_rng(cfg.seed).permutation(len(shown))[:cfg.figure_images])]
    results = activations.encoder_activations(models, dataset, {im["image_id"]: im["masks"] for im in images}, device,
                                              batch_size=cfg.batch_size, keep_maps=set(shown))
    rows = activations.summary_rows(results)
    _write_csv(rows, tables_dir / "activations.csv", ["block", "model", "label", "tau_mean", "tau_std", "images"])
    draw_activation_taus(rows, figures_dir / "activation_taus.png")
    panels = []
    block = activations.BLOCKS.index(cfg.activation_block)
    for result in results:
        if result.maps is None:
            continue
        im = images[index[result.image_id]]
        panels.append({"image": picture(index[result.image_id]), "masks": im["masks"],
                       **{name: {"map": result.maps[name][block], "activations": result.activations[name][:, block]}
                          for name in activations.MODELS}})
    draw_activation_examples(panels, cfg.activation_block, figures_dir / "activations.png")
    return {f"activation_tau_{r['block']}_{r['model']}": r["tau_mean"] for r in rows}
