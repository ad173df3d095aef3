"""Figures, drawn with matplotlib's object API (no pyplot state, no backend switching)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

from rsis.io import atomic_path

PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
           "#fabed4", "#469990", "#dcbeff", "#9a6324", "#fffac8", "#800000", "#aaffc3")


def overlay(image: np.ndarray, masks: list[np.ndarray], alpha: float = 0.55) -> np.ndarray:
    """Masks [H, W] bool painted over an RGB uint8 image in palette order (step 0 first)."""
    out = image.astype(float) / 255.0
    for k, mask in enumerate(masks):
        colour = np.array(to_rgb(PALETTE[k % len(PALETTE)]))
        out[mask] = (1 - alpha) * out[mask] + alpha * colour
    return out


def draw_sequences(panels: list[dict], path: str | Path, columns: int, title: str) -> None:
    """One row pair per image: ground truth, then the predicted sequence with step numbers and
    the route through the centres of mass in prediction order.

    Each panel: {"image": [H, W, 3] uint8, "gt_masks": [bool masks], "pred_masks": [bool masks]
    in predicted order, "centres": [(x, y)] of the predicted masks, "caption": str}.
    """
    columns = max(1, min(columns, len(panels)))
    rows = int(np.ceil(len(panels) / columns)) if panels else 1
    fig = Figure(figsize=(2.6 * columns, 2.9 * 2 * rows), dpi=100)
    FigureCanvasAgg(fig)
    for i, panel in enumerate(panels):
        r, c = divmod(i, columns)
        gt_ax = fig.add_subplot(2 * rows, columns, 2 * r * columns + c + 1)
        gt_ax.imshow(overlay(panel["image"], panel["gt_masks"]))
        gt_ax.set_title(f"ground truth ({len(panel['gt_masks'])})", fontsize=8)
        pred_ax = fig.add_subplot(2 * rows, columns, (2 * r + 1) * columns + c + 1)
        pred_ax.imshow(overlay(panel["image"], panel["pred_masks"]))
        if panel["centres"]:
            xs, ys = zip(*panel["centres"])
            pred_ax.plot(xs, ys, "-", color="white", linewidth=1.2, alpha=0.9)
            for k, (x, y) in enumerate(panel["centres"]):
                pred_ax.text(x, y, str(k + 1), color="black", fontsize=8, ha="center", va="center",
                             bbox={"boxstyle": "circle,pad=0.15", "fc": "white", "ec": PALETTE[k % len(PALETTE)]})
        pred_ax.set_title(panel["caption"], fontsize=8)
        for ax in (gt_ax, pred_ax):
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
