"""Time to accuracy: RSIS (the default configuration of params.yaml) and torchvision's Mask R-CNN
(its own training recipe, a ResNet-18 FPN from scratch: no pretrained weights exist here) trained
on the same converted train split for the same CPU wall-clock budget, both evaluated at the same
moments on the same test split by the same function (score_detections).

    python bench/time_to_accuracy.py                          # shapes: table, plot, CSV under bench/
    python bench/time_to_accuracy.py --dataset leaves         # adds SBD and |DiC| (CVPPP's metrics)

RSIS runs its default recipe unchanged (train.epochs epochs); its training seconds, validation
included, set the budget, and each of its epochs is one evaluation point. Mask R-CNN then trains
for the same seconds and is evaluated at the same marks (every K-th with --every K). The clock
counts training only: the evaluations are paused out. Mask R-CNN's recipe is torchvision's reference (SGD, momentum 0.9,
weight decay 1e-4, lr 0.02 per 16 images, linear warm-up over the first epoch - at least 99 updates, shorter ones
diverged from scratch -, x0.1 at 16/26 and 22/26 of the schedule),
with the schedule laid over the wall-clock budget; from scratch it needs trainable BatchNorm
(torchvision's frozen BatchNorm suits pretrained weights only) and, at 64 px, anchors of 8-128 px
instead of 32-512. Both read 64 x 64 images (model.image_size) and run under the same CPU settings
(train.threads, train.reproducible). Writes bench/TIME_TO_ACCURACY_<dataset>.md (tables) and, under
bench/time_to_accuracy/, <dataset>_rsis.csv, <dataset>_maskrcnn.csv and <dataset>.png. On the 2-core
CPU a Mask R-CNN update of 16 images takes ~6.5 s (RSIS ~0.5 s) and each of its test evaluations
~2-3.5 min of wall time, so `--every 3` keeps a shapes run near 45 minutes (leaves: ~6).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import tempfile
import time
from pathlib import Path
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
if __name__ == "__main__":
    from rsis.reproducible import pin_cpu

    pin_cpu(ROOT / "params.yaml")  # the default run's CPU settings, before torch is imported

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from pycocotools.coco import COCO  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from torchvision.models.detection import MaskRCNN  # noqa: E402
from torchvision.models.detection.anchor_utils import AnchorGenerator  # noqa: E402
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone  # noqa: E402
from torchvision.ops import masks_to_boxes  # noqa: E402

from rsis.config import load_section  # noqa: E402
from rsis.core.checkpoint import LAST, load_model  # noqa: E402
from rsis.datasets.convert import convert  # noqa: E402
from rsis.datasets.dataset import InstanceDataset, collate  # noqa: E402
from rsis.datasets.format import annotation_file, decode_mask, encode_mask  # noqa: E402
from rsis.evaluation.coco import evaluate_segm, load_ground_truth  # noqa: E402
from rsis.evaluation.inference import predict, to_coco_detections  # noqa: E402
from rsis.evaluation.leaf_metrics import image_scores, label_map, summarize  # noqa: E402
from rsis.training.fit import fit  # noqa: E402

MASK_THRESHOLD = 0.5  # both models: a pixel belongs to a mask at probability >= 0.5 (evaluate.mask_threshold)
# torchvision's RoI sampling is sized for 800 px COCO images: 2000 proposals and 512 sampled RoIs per
# image make its per-RoI box and mask heads cost ~10 s per batch of 8 here (measured). For 64 px
# images with at most 6 objects a user would sample far fewer (the heads then cost ~1/6).
SMALL_IMAGE_SAMPLING = {"rpn_pre_nms_top_n_train": 600, "rpn_post_nms_top_n_train": 300,
                        "rpn_pre_nms_top_n_test": 300, "rpn_post_nms_top_n_test": 150,
                        "rpn_batch_size_per_image": 64, "box_batch_size_per_image": 64}
CSV_NAMES = {"RSIS": "rsis", "Mask R-CNN": "maskrcnn"}
MIN_WARMUP_EPOCH = 100  # Mask R-CNN's warm-up: the first epoch, counted as at least this many batches
LEAF_SCORE = 0.5  # Mask R-CNN detections kept for a label map (SBD, |DiC|): score >= 0.5, best first


def score_detections(ground_truth: COCO, detections: list[dict], label_maps: dict[int, np.ndarray] | None = None
                     ) -> dict[str, float]:
    """The one evaluation both models' predictions go through: COCO segm AP (pycocotools, as the
    evaluate stage) of ``detections``, and CVPPP's SBD and |DiC| of ``label_maps`` (image id ->
    predicted instance label map) when given."""
    segm = evaluate_segm(ground_truth, detections)
    out = {"AP50": segm["AP50"], "AP": segm["AP"]}
    if label_maps is not None:
        scores = []
        for image_id, predicted in label_maps.items():
            gt = [decode_mask(a["segmentation"]) for a in ground_truth.imgToAnns[image_id] if not a["iscrowd"]]
            scores.append(image_scores(predicted, label_map(gt, predicted.shape)))
        summary = summarize(scores)
        out.update(SBD=summary["SBD_mean"], absDiC=summary["absDiC_mean"])
    return out


# ---------------------------------------------------------------------------------------------- RSIS
def rsis_predictions(paths, eval_cfg, leaves: bool) -> tuple[list[dict], dict[int, np.ndarray] | None, float, float]:
    """COCO detections (as the evaluate stage makes them) of last.pt on the test split, label maps
    (the sequence painted in step order), images/s of the forward passes, detections per image."""
    model, _ = load_model(Path(paths.models) / LAST, torch.device("cpu"))
    dataset = InstanceDataset(paths.data, "test", model.input_size)
    loader = DataLoader(dataset, batch_size=eval_cfg.batch_size, shuffle=False, collate_fn=collate)
    start = time.perf_counter()
    sequences = predict(model, loader, torch.device("cpu"), eval_cfg, desc="rsis test")
    rate = len(dataset) / (time.perf_counter() - start)
    maps = None
    if leaves:
        maps = {info["id"]: label_map([inst.mask for inst in seq], (info["height"], info["width"]))
                for info, seq in zip(dataset.images, sequences)}
    kept = sum(len(s) for s in sequences) / len(sequences)
    return to_coco_detections(sequences, dataset.num_classes), maps, rate, kept


def train_rsis(paths, model_cfg, train_cfg, eval_cfg, ground_truth: COCO, leaves: bool
               ) -> tuple[list[dict], list[float], dict]:
    """The default recipe (fit, unchanged), evaluated after every epoch; returns the rows, the
    cumulative training seconds at each epoch's end, and the inference figures of the last model."""
    rows, marks = [], []

    def log_epoch(epoch: int, row: dict[str, float]) -> None:
        marks.append((marks[-1] if marks else 0.0) + row["epoch_seconds"])
        detections, maps, _, _ = rsis_predictions(paths, eval_cfg, leaves)
        rows.append({"model": "RSIS", "seconds": round(marks[-1], 1), "epoch": epoch,
                     **score_detections(ground_truth, detections, maps)})
        print(f"RSIS      {marks[-1]:7.1f} s  AP50 {rows[-1]['AP50']:.3f}", flush=True)

    fit(paths, model_cfg, dataclasses.replace(train_cfg, resume=False), log_epoch=log_epoch)
    _, _, rate, kept = rsis_predictions(paths, eval_cfg, leaves)
    return rows, marks, {"model": "RSIS", "images_per_s": rate, "detections_per_image": kept}


# ----------------------------------------------------------------------------------------- Mask R-CNN
def build_maskrcnn(num_classes: int, size: int) -> MaskRCNN:
    """torchvision's Mask R-CNN with a ResNet-18 FPN from scratch (trainable BatchNorm), at ``size``
    px, anchors scaled to the image; images arrive normalised already (InstanceDataset)."""
    backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=5,
                                   norm_layer=torch.nn.BatchNorm2d)
    anchors = AnchorGenerator(sizes=((8,), (16,), (32,), (64,), (128,)), aspect_ratios=((0.5, 1.0, 2.0),) * 5)
    return MaskRCNN(backbone, num_classes=num_classes, min_size=size, max_size=size, image_mean=[0.0] * 3,
                    image_std=[1.0] * 3, rpn_anchor_generator=anchors, **SMALL_IMAGE_SAMPLING)


def maskrcnn_targets(targets: list[dict]) -> list[dict]:
    """InstanceDataset targets as Mask R-CNN's: pixel boxes from the masks, uint8 masks."""
    out = []
    for t in targets:
        masks = t["masks"] > 0.5
        boxes = masks_to_boxes(masks) if len(masks) else torch.zeros(0, 4)
        boxes[:, 2:] += 1.0  # masks_to_boxes gives the last pixel; a box ends after it
        out.append({"boxes": boxes, "labels": t["labels"], "masks": masks.to(torch.uint8)})
    return out


def maskrcnn_lr(fraction: float, base: float, update: int, warmup_updates: int) -> float:
    """torchvision's reference schedule: a linear warm-up from 0.001 x over the first epoch's updates
    (at most 1,000), and x0.1 at 16/26 and x0.01 at 22/26 of the schedule, here of the time budget.
    (A warm-up over 5% of the budget, 11 updates, diverged to NaN at batch 16 and lr 0.02.)"""
    if update < warmup_updates:
        return base * (0.001 + (1 - 0.001) * update / warmup_updates)
    return base * 0.1 ** ((fraction >= 16 / 26) + (fraction >= 22 / 26))


@torch.no_grad()
def maskrcnn_predictions(model: MaskRCNN, dataset: InstanceDataset, batch: int, leaves: bool
                         ) -> tuple[list[dict], dict[int, np.ndarray] | None, float, float]:
    """COCO detections (one per kept box, its mask at >= 0.5 at the image's size), label maps
    (detections with score >= LEAF_SCORE painted best first), images/s, detections per image."""
    model.eval()
    detections, maps, kept, seconds = [], {} if leaves else None, 0, 0.0
    loader = DataLoader(dataset, batch_size=batch, shuffle=False, collate_fn=collate)
    for images, targets in loader:
        start = time.perf_counter()
        outputs = model(list(images))
        seconds += time.perf_counter() - start
        for out, target in zip(outputs, targets):
            h, w = target["orig_size"]
            probs = F.interpolate(out["masks"], size=(h, w), mode="bilinear", align_corners=False)[:, 0]
            masks = (probs >= MASK_THRESHOLD).numpy()
            kept += len(masks)
            for mask, label, score in zip(masks, out["labels"].tolist(), out["scores"].tolist()):
                detections.append({"image_id": target["image_id"], "category_id": label, "score": score,
                                   "segmentation": encode_mask(mask)})
            if leaves:
                confident = [m for m, s in zip(masks, out["scores"].tolist()) if s >= LEAF_SCORE]
                maps[target["image_id"]] = label_map(confident, (h, w))
    model.train()
    return detections, maps, len(dataset) / seconds, kept / len(dataset)


def train_maskrcnn(paths, model_cfg, train_cfg, eval_batch: int, ground_truth: COCO, marks: list[float],
                   leaves: bool, seed: int = 0) -> tuple[list[dict], dict]:
    """Mask R-CNN's recipe over the budget marks[-1] seconds (batch train.batch_size, the same
    augmentation), evaluated at each mark."""
    batch = train_cfg.batch_size
    train_set = InstanceDataset(paths.data, "train", model_cfg.input_size, augment=train_cfg.augment)
    test_set = InstanceDataset(paths.data, "test", model_cfg.input_size)
    torch.manual_seed(seed)
    model = build_maskrcnn(train_set.num_classes, model_cfg.image_size).train()
    base = 0.02 * batch / 16
    optimizer = torch.optim.SGD(model.parameters(), lr=base, momentum=0.9, weight_decay=1e-4)
    loader = DataLoader(train_set, batch_size=batch, shuffle=True, collate_fn=collate, drop_last=True,
                        generator=torch.Generator().manual_seed(seed))
    budget, rows, clock, updates, pending = marks[-1], [], 0.0, 0, list(marks)
    # the reference warms up over its first epoch, min(1000, batches - 1) updates; from scratch a short
    # epoch is not enough (leaves' 6-batch epoch diverged to NaN after 6 updates): at least 100 batches
    warmup = min(1000, max(len(loader), MIN_WARMUP_EPOCH) - 1)
    while pending:
        for images, targets in loader:
            start = time.perf_counter()
            for group in optimizer.param_groups:
                group["lr"] = maskrcnn_lr(clock / budget, base, updates, warmup)
            losses = model(list(images), maskrcnn_targets(targets))
            total = sum(losses.values())
            if not math.isfinite(float(total.detach())):
                raise FloatingPointError(f"Mask R-CNN: non-finite loss after {updates} updates: "
                                         f"{ {k: float(v) for k, v in losses.items()} }")
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            updates += 1
            clock += time.perf_counter() - start
            if clock >= pending[0]:
                mark = pending.pop(0)
                detections, maps, _, _ = maskrcnn_predictions(model, test_set, batch, leaves)
                rows.append({"model": "Mask R-CNN", "seconds": round(clock, 1), "mark": round(mark, 1),
                             "updates": updates,
                             **score_detections(ground_truth, detections, maps)})
                print(f"MaskRCNN  {clock:7.1f} s  AP50 {rows[-1]['AP50']:.3f}  ({updates} updates)", flush=True)
                if not pending:
                    break
    _, _, rate, kept = maskrcnn_predictions(model, test_set, eval_batch, leaves)
    return rows, {"model": "Mask R-CNN", "images_per_s": rate, "detections_per_image": kept}


# ------------------------------------------------------------------------------------------- report
def leader(curves: pd.DataFrame, metric: str, higher: bool = True) -> list[str]:
    """One line per evaluation mark: who is ahead there, by how much."""
    lines = []
    rsis_at = {row["seconds"]: row for _, row in curves[curves.model == "RSIS"].iterrows()}
    for _, rcnn in curves[curves.model == "Mask R-CNN"].iterrows():
        rsis = rsis_at[rcnn["mark"]]  # the RSIS epoch whose end set this evaluation point
        a, b = rsis[metric], rcnn[metric]
        ahead = "RSIS" if (a > b) == higher else "Mask R-CNN"
        lines.append(f"| {rsis['seconds']:.0f} | {a:.3f} | {b:.3f} | {ahead if a != b else 'tie'} |")
    return lines


def write_report(curves: pd.DataFrame, inference: list[dict], dataset: str, out: Path, command: str,
                 batch: int) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stem, folder = f"TIME_TO_ACCURACY_{dataset}", out / "time_to_accuracy"
    folder.mkdir(parents=True, exist_ok=True)
    for model, part in curves.groupby("model"):  # one CSV per model: dvc.yaml's plots overlay them
        part.dropna(axis=1, how="all").to_csv(folder / f"{dataset}_{CSV_NAMES[model]}.csv", index=False,
                                               float_format="%.4f")
    metrics = ["AP50", "AP"] + (["SBD", "absDiC"] if "SBD" in curves else [])
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for model, style in (("RSIS", "o-"), ("Mask R-CNN", "s--")):
            part = curves[curves.model == model]
            ax.plot(part["seconds"], part[metric], style, label=model, markersize=4)
        ax.set_xlabel("training seconds (2-core CPU)")
        ax.set_title(f"test {metric}" + (" (lower is better)" if metric == "absDiC" else ""), fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].legend()
    fig.suptitle(f"{dataset}: same train split, same budget, same evaluation", fontsize=11)
    fig.tight_layout()
    fig.savefig(folder / f"{dataset}.png", dpi=110)
    plt.close(fig)

    lines = [f"# Time to accuracy on `{dataset}`: RSIS vs Mask R-CNN", "",
             f"`{command}` (bench/time_to_accuracy.py's docstring has the recipes). Test split, "
             "pycocotools segm AP through one function for both; seconds of training on this machine, "
             "evaluations paused out.", "", f"![curves](time_to_accuracy/{dataset}.png)", ""]
    for metric, higher in [("AP50", True), ("AP", True)] + ([("SBD", True), ("absDiC", False)] if "SBD" in curves
                                                             else []):
        lines += [f"| seconds | RSIS {metric} | Mask R-CNN {metric} | ahead |", "|---|---|---|---|",
                  *leader(curves, metric, higher), ""]
    lines += ["Inference of the trained models on the test split (same input size, batch "
              f"{batch}, one process, forward passes only):", "",
              "| model | images/s | detections kept per image |", "|---|---|---|"]
    lines += [f"| {r['model']} | {r['images_per_s']:.1f} | {r['detections_per_image']:.1f} |" for r in inference]
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="shapes", choices=["shapes", "leaves"])
    parser.add_argument("--out", type=Path, default=ROOT / "bench")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--every", type=int, default=1, metavar="K",
                        help="evaluate Mask R-CNN at every K-th RSIS epoch end (and the last): each of its "
                             "evaluations takes minutes on a CPU (100 detections per image through the mask head)")
    args = parser.parse_args()
    data_cfg, eval_cfg = load_section("data"), load_section("evaluate")
    model_cfg, train_cfg = load_section("model"), load_section("train")
    leaves = args.dataset == "leaves"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        paths = dataclasses.replace(load_section("paths"), raw=str(work / "raw"), data=str(work / "data"),
                                    models=str(work / "models"), metrics=str(work / "metrics"),
                                    predictions=str(work / "predictions.json"), evaluation=str(work / "evaluation"))
        convert(dataclasses.replace(data_cfg, dataset=args.dataset), paths.data)
        ground_truth = load_ground_truth(annotation_file(paths.data, "test"))
        rsis_rows, marks, rsis_inference = train_rsis(paths, model_cfg, train_cfg, eval_cfg, ground_truth, leaves)
        points = sorted(set(marks[args.every - 1::args.every]) | {marks[-1]})
        rcnn_rows, rcnn_inference = train_maskrcnn(paths, model_cfg, train_cfg, eval_cfg.batch_size, ground_truth,
                                                   points, leaves, args.seed)
    curves = pd.DataFrame(rsis_rows + rcnn_rows)
    command = ("python bench/time_to_accuracy.py" + (f" --dataset {args.dataset}" if leaves else "")
               + (f" --every {args.every}" if args.every != 1 else ""))
    write_report(curves, [rsis_inference, rcnn_inference], args.dataset, args.out, command, eval_cfg.batch_size)
    print(f"wrote {args.out}/TIME_TO_ACCURACY_{args.dataset}.md", flush=True)


if __name__ == "__main__":
    main()
