"""Figures, drawn with matplotlib's object API (no pyplot state, no backend switching)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from rsis.files import atomic_path

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
    fig = Figure(figsize=(max(2.6 * columns, 0.09 * len(title)), 3.1 * 2 * rows), dpi=100)
    FigureCanvasAgg(fig)
    if not panels:
        _placeholder(fig, "no test image qualifies\n(too few predicted objects)")
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
            side = max(panel["image"].shape[:2])
            for k, (x, y) in enumerate(_spread(panel["centres"], 0.07 * side)):
                pred_ax.text(x, y, str(k + 1), color="black", fontsize=7, ha="center", va="center",
                             bbox={"boxstyle": "circle,pad=0.12", "fc": "white", "ec": PALETTE[k % len(PALETTE)]})
        pred_ax.set_title(panel["caption"], fontsize=8)
        for ax in (gt_ax, pred_ax):
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    _save(fig, path)


def draw_prediction(image: np.ndarray, masks: list[np.ndarray], names: list[str], path: str | Path,
                    title: str = "") -> None:
    """One image with its predicted instances painted in step order, each numbered at its centre
    of mass with its class name (the predict command's overlay)."""
    h, w = image.shape[:2]
    scale = 6.0 / max(h, w)
    fig = Figure(figsize=(max(2.5, w * scale), max(2.5, h * scale) + 0.4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(overlay(image, masks))
    for k, (mask, name) in enumerate(zip(masks, names)):
        ys, xs = np.nonzero(mask)
        ax.text(xs.mean(), ys.mean(), f"{k + 1} {name}", color="black", fontsize=7, ha="center", va="center",
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": PALETTE[k % len(PALETTE)], "alpha": 0.85})
    ax.set_title(f"{title}: {len(masks)} instances, numbered in step order" if title else
                 f"{len(masks)} instances, numbered in step order", fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    _save(fig, path)


def _spread(points: list[tuple[float, float]], gap: float) -> list[tuple[float, float]]:
    """Marker positions: each point, moved down by ``gap`` steps until it is at least ``gap`` from
    every earlier marker (centres of nested or touching masks would otherwise hide each other)."""
    placed: list[tuple[float, float]] = []
    for x, y in points:
        for _ in range(8):
            if all((x - px) ** 2 + (y - py) ** 2 >= gap ** 2 for px, py in placed):
                break
            y += gap
        placed.append((x, y))
    return placed


def _placeholder(fig: Figure, text: str) -> None:
    """A figure with nothing to draw still gets written, saying why it is empty."""
    ax = fig.add_subplot(1, 1, 1)
    ax.text(0.5, 0.5, text, ha="center", va="center")
    ax.set_axis_off()


def _save(fig: Figure, path: str | Path, rect: tuple[float, float, float, float] = (0, 0, 1, 1)) -> None:
    """Lay out and write atomically, so a failed draw never leaves half a PNG."""
    fig.tight_layout(rect=rect)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def draw_tau_histogram(taus: dict[str, list[float]], path: str | Path) -> None:
    """Distribution over images of Kendall tau with each sorting strategy (Table 6 as histograms)."""
    fig = Figure(figsize=(4 * len(taus), 3.2), dpi=100)
    FigureCanvasAgg(fig)
    for k, (strategy, values) in enumerate(taus.items()):
        ax = fig.add_subplot(1, len(taus), k + 1)
        ax.hist(values, bins=np.linspace(-1, 1, 21), color=PALETTE[k], edgecolor="white", label=f"{len(values)} images")
        if values:
            ax.axvline(float(np.mean(values)), color="black", linestyle="--", label=f"mean {np.mean(values):.2f}")
        ax.set_title(f"tau with {strategy}", fontsize=10)
        ax.set_xlabel("Kendall tau (predicted order vs strategy)")
        ax.set_ylabel("images")
        ax.legend(fontsize=8)
    fig.suptitle("Sorting strategies: per-image Kendall tau", fontsize=10)
    _save(fig, path)


def draw_pair_bars(rows: list[dict], strategies: tuple[str, ...], path: str | Path, min_count: int,
                   threshold: float = 0.15) -> None:
    """Share of consecutive predicted pairs following each strategy, per category pair (Figure 7)."""
    fig = Figure(figsize=(max(5.0, 0.6 * len(rows) + 2), 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(strategies)
    x = np.arange(len(rows))
    for k, strategy in enumerate(strategies):
        ax.bar(x + (k - (len(strategies) - 1) / 2) * width, [r[strategy] for r in rows], width,
               color=PALETTE[k], label=strategy)
    ax.set_xticks(x, [f"{r['first']}→{r['second']}\n(n={r['count']})" for r in rows], fontsize=7, rotation=45,
                  ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of consecutive pairs")
    ax.set_xlabel("category pair (first → second)")
    if not rows:
        ax.text(0.5, 0.5, f"no category pair seen {min_count} times", ha="center", va="center", transform=ax.transAxes)
    ax.legend(fontsize=8)
    ax.set_title(f"Consecutive pairs following each strategy ({100 * threshold:g}% rule, pairs seen >= {min_count} times)",
                 fontsize=9)
    _save(fig, path)


def draw_errors(step_rows: list[dict], object_rows: list[dict], path: str | Path) -> None:
    """The four error-analysis panels: FP per step, matched IoU per step, FN sizes, IoU vs size."""
    fig = Figure(figsize=(12, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    steps = [r["step"] for r in step_rows]
    ax = fig.add_subplot(1, 4, 1)
    ax.bar(steps, [r["false_positives"] for r in step_rows], color=PALETTE[0], label="false positives")
    ax.bar(steps, [r["predictions"] - r["false_positives"] for r in step_rows],
           bottom=[r["false_positives"] for r in step_rows], color=PALETTE[1], label="matched")
    ax.set(xlabel="time step", ylabel="predictions", title="False positives per step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=7)
    ax = fig.add_subplot(1, 4, 2)
    pts = [(r["step"], r["mean_matched_iou"]) for r in step_rows if r["mean_matched_iou"] is not None]
    ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=PALETTE[2], label="mean IoU of matches")
    ax.set(xlabel="time step", ylabel="IoU", ylim=(0, 1), title="IoU of matched predictions")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=7)
    ax = fig.add_subplot(1, 4, 3)
    missed = [r["size_pct"] for r in object_rows if not r["found"]]
    found = [r["size_pct"] for r in object_rows if r["found"]]
    bins = np.linspace(0, max([1.0] + missed + found), 16)
    ax.hist([found, missed], bins=bins, stacked=True, color=[PALETTE[1], PALETTE[3]],
            label=[f"found ({len(found)})", f"false negatives ({len(missed)})"])
    ax.set(xlabel="object size (% of image)", ylabel="objects", title="False negatives by size")
    ax.legend(fontsize=7)
    ax = fig.add_subplot(1, 4, 4)
    ax.scatter([r["size_pct"] for r in object_rows], [r["iou"] for r in object_rows], s=6, alpha=0.5,
               color=PALETTE[4], label="ground-truth object")
    ax.set(xlabel="object size (% of image)", ylabel="IoU of its match (0 = missed)", ylim=(-0.02, 1.02),
           title="IoU vs object size")
    ax.legend(fontsize=7)
    fig.suptitle("Error analysis (match at IoU >= 0.5)", fontsize=10)
    _save(fig, path)


def draw_activation_taus(rows: list[dict], path: str | Path) -> None:
    """Table 7 as bars: per encoder block, mean Kendall tau (with std) between the predicted order
    and the order of decreasing activation, at initialisation and after training."""
    fig = Figure(figsize=(6, 3.4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    blocks = list(dict.fromkeys(r["block"] for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    width = 0.8 / max(1, len(models))
    x = np.arange(len(blocks))
    for k, model in enumerate(models):
        by_block = {r["block"]: r for r in rows if r["model"] == model}
        means = [by_block[b]["tau_mean"] if by_block[b]["tau_mean"] is not None else np.nan for b in blocks]
        stds = [by_block[b]["tau_std"] if by_block[b]["tau_std"] is not None else np.nan for b in blocks]
        images = max(r["images"] for r in by_block.values())
        ax.bar(x + (k - (len(models) - 1) / 2) * width, means, width, yerr=stds, capsize=3, color=PALETTE[k + 2],
               label=f"{model} training ({images} images)")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(x, blocks)
    ax.set_ylim(-1, 1)
    ax.set_xlabel("encoder block (f0 deepest)")
    ax.set_ylabel("Kendall tau (mean ± std)")
    ax.legend(fontsize=8)
    ax.set_title("Predicted order vs order of decreasing encoder activation", fontsize=9)
    _save(fig, path)


def draw_activation_examples(panels: list[dict], block: str, path: str | Path) -> None:
    """Figure 8: per image (columns), the block's channel-mean activation over the image with the
    most (solid) and least (dashed) active predicted object outlined, before and after training
    (rows); #k is the object's position in the predicted sequence.

    Each panel: {"image", "masks", "before": {"map", "activations"}, "after": {...}}.
    """
    models = ("before", "after")
    columns = max(2, len(panels))
    fig = Figure(figsize=(2.8 * columns, 3.2 * len(models) + 0.4), dpi=100)
    FigureCanvasAgg(fig)
    if not panels:
        _placeholder(fig, "no test image has two or more predicted objects")
    for c, panel in enumerate(panels):
        for r, model in enumerate(models):
            ax = fig.add_subplot(len(models), columns, r * columns + c + 1)
            values = np.asarray(panel[model]["activations"])
            ax.imshow(panel["image"])
            ax.imshow(panel[model]["map"], cmap="magma", alpha=0.55)
            if len(values):
                most, least = int(np.argmax(values)), int(np.argmin(values))
                ax.contour(panel["masks"][most], levels=[0.5], colors=["#3cb44b"], linewidths=2)
                ax.contour(panel["masks"][least], levels=[0.5], colors=["#42d4f4"], linewidths=2, linestyles="dashed")
                ax.set_title(f"{model} training: most active = #{most + 1},\n"
                             f"least = #{least + 1} of {len(values)} predicted", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    handles = [Line2D([], [], color="#3cb44b", linewidth=2, label="most active object"),
               Line2D([], [], color="#42d4f4", linewidth=2, linestyle="dashed", label="least active object")]
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=8)
    fig.suptitle(f"Encoder block {block}: channel-mean activation (bright = high) and the predicted objects", fontsize=10)
    _save(fig, path, rect=(0, 0.04, 1, 1))


def draw_training_curves(history: list[dict], path: str | Path) -> None:
    """The training history as a static figure (readable offline, unlike the Vega plots): total loss
    (train and validation), the validation loss terms, and the learning rate, per epoch."""
    fig = Figure(figsize=(12, 3.4), dpi=100)
    FigureCanvasAgg(fig)
    epochs = [int(r["epoch"]) for r in history]
    panels = [("Weighted total loss", [("train_total", "train"), ("val_total", "validation")], "loss"),
              ("Validation loss terms (unweighted)",
               [(k, k[4:]) for k in ("val_mask", "val_bce", "val_cls", "val_stop", "val_box", "val_embedding")
                if history and k in history[0]], "loss"),
              ("Learning rate", [("lr_decoder", "decoder"), ("lr_encoder", "encoder")], "learning rate")]
    for k, (title, series, ylabel) in enumerate(panels, start=1):
        ax = fig.add_subplot(1, 3, k)
        for j, (key, label) in enumerate(series):
            if history and key in history[0]:
                ax.plot(epochs, [float(r[key]) for r in history], "o-", markersize=3, color=PALETTE[j], label=label)
        ax.set(xlabel="epoch", ylabel=ylabel, title=title)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ylabel == "learning rate":
            ax.set_yscale("log")
        if not history:
            ax.text(0.5, 0.5, "no training history", ha="center", va="center", transform=ax.transAxes)
        else:
            ax.legend(fontsize=7)
    _save(fig, path)
