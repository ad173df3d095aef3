"""Run a trained model on new images: ``python -m rsis.predict --checkpoint models/best.pt IMAGES... --out DIR``.

IMAGES are files or folders (a folder: its .png, .jpg, .jpeg, .tif, .tiff and .bmp files, sorted).
Per image ``<stem>``, under DIR:

    <stem>.json          COCO-format results: one detection per kept step (its most likely class),
                         with the step, the class name, p(c) * objectness (x maskness under
                         evaluate.mask_score) as score, RLE and box
    <stem>_label.png     instance label map: labels 1..N in step order (earlier steps win), 0 background
    <stem>_overlay.png   the image with each instance painted and numbered in step order

and ``DIR/summary.json`` (checkpoint, thresholds and seed term, counts, the images that could not be read).
The inference protocol is the evaluate stage's (rsis.evaluation.inference): thresholds come from the
``evaluate`` section of ``--params`` (default params.yaml, when present) and can be overridden.
An unreadable image is reported in one line, counted, and the rest are still predicted; the exit
status is 1 when no image could be predicted, 2 on a bad argument or checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torchvision import tv_tensors
from tqdm import tqdm

from rsis.analysis.figures import draw_prediction
from rsis.config import ConfigError, EvaluateConfig, load_section
from rsis.core.checkpoint import load_model
from rsis.datasets.dataset import build_transform
from rsis.datasets.format import encode_mask
from rsis.datasets.images import HIGH_BIT_DEPTH_RULES, read_rgb
from rsis.datasets.record import DataError
from rsis.evaluation.inference import PredictedInstance, infer_views, read_views
from rsis.evaluation.leaf_metrics import label_map, save_label_map
from rsis.files import write_json
from rsis.runtime import select_device

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
PAPER_PROTOCOL = EvaluateConfig(batch_size=8, stop_threshold=0.5, mask_threshold=0.5, min_area_fraction=0.001)


def image_files(inputs: Sequence[str | Path]) -> list[Path]:
    """The files named, and the image files inside the folders named, in the order given."""
    files = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif item.exists():
            files.append(item)
        else:
            raise FileNotFoundError(f"{item}: no such image file or folder")
    return files


def detections(sequence: list[PredictedInstance], categories: Sequence[str], file_name: str) -> list[dict[str, Any]]:
    """COCO results of one image: per step its most likely class, scored p(c) * objectness (x maskness)."""
    out = []
    for inst in sequence:
        score = inst.class_probs[inst.label] * inst.score
        out.append({"image_id": inst.image_id, "file_name": file_name, "step": inst.step,
                    "category_id": inst.label, "category": categories[inst.label - 1], "score": score,
                    "objectness": inst.objectness, "maskness": inst.maskness,
                    "segmentation": encode_mask(inst.mask), "bbox": inst.coco_bbox})
    return out


def predict_images(checkpoint: str | Path, inputs: Sequence[str | Path], out_dir: str | Path,
                   cfg: EvaluateConfig = PAPER_PROTOCOL, device: str = "auto", high_bit_depth: str = "range",
                   progress: bool = True) -> dict[str, Any]:
    """Predict every image of ``inputs`` with ``checkpoint`` and write the three outputs per image
    under ``out_dir``; returns the summary (also written to out_dir/summary.json)."""
    files = image_files(inputs)
    if not files:
        raise FileNotFoundError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in {', '.join(map(str, inputs))}")
    device_t = select_device(device)
    model, state = load_model(checkpoint, device_t)
    categories = state.get("categories") or [f"class {k}" for k in range(1, state["num_classes"])]
    transform = build_transform(model.input_size)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    failed, counts, stems = [], {"images": 0, "instances": 0}, set()
    for image_id, path in enumerate(tqdm(files, desc="predict", unit="img", disable=None if progress else True), start=1):
        try:
            image = read_rgb(path, high_bit_depth)
        except DataError as exc:
            tqdm.write(f"unreadable, skipped: {exc}", file=sys.stderr)
            failed.append({"path": str(path), "reason": exc.reason})
            continue
        tensor = transform(tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1))).as_subclass(torch.Tensor)
        with torch.no_grad():
            views = infer_views(model, tensor[None].to(device_t), cfg)
        sequence = read_views(views, [image.shape[:2]], [image_id], cfg)[0]
        stem = _unique(path.stem, stems)
        write_json(out / f"{stem}.json", detections(sequence, categories, str(path)))
        labels = label_map([inst.mask for inst in sequence], image.shape[:2])
        save_label_map(labels, out / f"{stem}_label.png")
        draw_prediction(image, [inst.mask for inst in sequence], [categories[inst.label - 1] for inst in sequence],
                        out / f"{stem}_overlay.png", title=path.name)
        counts["images"] += 1
        counts["instances"] += len(sequence)
    summary = {"checkpoint": str(checkpoint), "checkpoint_epoch": state.get("epoch"), "device": str(device_t),
               "stop_threshold": cfg.stop_threshold, "mask_threshold": cfg.mask_threshold,
               "min_area_fraction": cfg.min_area_fraction, "seed_scale": cfg.seed_scale, "seed_radius": cfg.seed_radius,
               "mask_score": cfg.mask_score, "test_flips": list(cfg.test_flips), "flip_score": cfg.flip_score,
               **counts, "unreadable": len(failed), "failed": failed}
    write_json(out / "summary.json", summary)
    return summary


def _unique(stem: str, used: set[str]) -> str:
    """``stem``, or ``stem_2``, ``stem_3``... when two inputs share a name."""
    name, k = stem, 1
    while name in used:
        k += 1
        name = f"{stem}_{k}"
    used.add(name)
    return name


def _protocol(args: argparse.Namespace) -> EvaluateConfig:
    cfg = PAPER_PROTOCOL
    if args.params is not None and Path(args.params).is_file():
        cfg = load_section("evaluate", args.params)
    elif args.params is not None and args.params != "params.yaml":
        raise FileNotFoundError(f"--params {args.params}: no such file")
    changes = {k: v for k, v in (("stop_threshold", args.stop_threshold), ("mask_threshold", args.mask_threshold),
                                 ("min_area_fraction", args.min_area_fraction), ("seed_scale", args.seed_scale),
                                 ("seed_radius", args.seed_radius), ("mask_score", args.mask_score),
                                 ("test_flips", None if args.test_flips is None else tuple(args.test_flips)))
               if v is not None}
    return dataclasses.replace(cfg, **changes)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rsis.predict", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+", help="image files and/or folders of images")
    parser.add_argument("--checkpoint", required=True, help="a checkpoint the train stage wrote (models/best.pt)")
    parser.add_argument("--out", required=True, help="folder for the outputs (created)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--params", default="params.yaml", help="its evaluate section sets the thresholds")
    parser.add_argument("--stop-threshold", type=float)
    parser.add_argument("--mask-threshold", type=float)
    parser.add_argument("--min-area-fraction", type=float)
    parser.add_argument("--seed-scale", type=float, help="the seed term at inference, as evaluate.seed_scale "
                        "(model.instance_embedding only; without it and without --params: the trained value)")
    parser.add_argument("--seed-radius", type=float, help="as evaluate.seed_radius")
    parser.add_argument("--mask-score", action=argparse.BooleanOptionalAction, default=None,
                        help="score x the mask's maskness, as evaluate.mask_score")
    parser.add_argument("--test-flips", nargs="*", choices=("vertical", "horizontal"),
                        help="also read the image flipped along these axes, as evaluate.test_flips (none: off)")
    parser.add_argument("--high-bit-depth", default="range", choices=HIGH_BIT_DEPTH_RULES,
                        help="16-bit images to 8 bits, as data.high_bit_depth (rsis/datasets/images.py)")
    args = parser.parse_args(argv)
    try:
        summary = predict_images(args.checkpoint, args.images, args.out, _protocol(args), args.device,
                                 args.high_bit_depth)
    except (ConfigError, DataError, FileNotFoundError, RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"predicted {summary['images']} images ({summary['instances']} instances) into {args.out}"
          + (f"; {summary['unreadable']} unreadable, skipped (listed in {Path(args.out) / 'summary.json'})"
             if summary["unreadable"] else ""))
    return 0 if summary["images"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
