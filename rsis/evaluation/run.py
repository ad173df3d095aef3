"""The evaluate stage's work: predict the test split with the best checkpoint, write the
predicted sequences, and score them with COCO segm AP."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from torch.utils.data import DataLoader

from rsis.config import EvaluateConfig, PathsConfig
from rsis.core.checkpoint import BEST, load_model
from rsis.datasets import cityscapes
from rsis.datasets.dataset import InstanceDataset, collate
from rsis.datasets.format import CHALLENGE, annotation_file
from rsis.evaluation import cityscapes as cityscapes_eval
from rsis.evaluation.bootstrap import bootstrap_intervals
from rsis.evaluation.coco import evaluate_segm, evaluate_with_classes, load_ground_truth, proposal_recall
from rsis.evaluation.inference import PredictedInstance, predict, to_coco_detections
from rsis.evaluation.leaf_metrics import image_scores, label_map, save_label_map, summarize
from rsis.files import atomic_directory, write_json
from rsis.runtime import select_device

LEAF_DATASETS = ("cvppp", "leaves")  # data.dataset values the CVPPP leaf metrics apply to


def predictions_document(dataset: InstanceDataset, sequences: list[list[PredictedInstance]]) -> dict[str, Any]:
    """The predictions file: per test image, its predicted sequence in step order."""
    return {
        "categories": dataset.categories,
        "images": [{"image_id": info["id"], "file_name": info["file_name"],
                    "instances": [inst.to_json() for inst in seq]}
                   for info, seq in zip(dataset.images, sequences)],
    }


def evaluate(paths: PathsConfig, cfg: EvaluateConfig, dataset_name: str, split: str = "test", device: str = "auto",
             checkpoint: str = BEST) -> dict[str, Any]:
    """Predict ``split`` with ``<paths.models>/<checkpoint>``, write paths.predictions, return COCO
    segm metrics and counts; ``dataset_name`` (``data.dataset``) adds the official Cityscapes
    evaluation (cityscapes) or the CVPPP leaf metrics (cvppp, leaves)."""
    device_t = select_device(device)
    model, state = load_model(Path(paths.models) / checkpoint, device_t)
    dataset = InstanceDataset(paths.data, split, model.input_size)
    if dataset.num_classes != state["num_classes"]:
        raise ValueError(f"{paths.data}/{split}.json has {dataset.num_classes - 1} categories but the checkpoint "
                         f"was trained with {state['num_classes'] - 1}")
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=False, collate_fn=collate)
    print(f"predict {split}: {len(dataset)} images with {checkpoint} (epoch {state['epoch']})", flush=True)
    sequences = predict(model, loader, device_t, cfg, desc=f"predict {split}")
    write_json(paths.predictions, predictions_document(dataset, sequences))
    ground_truth = load_ground_truth(annotation_file(paths.data, split))
    extra = {}
    with atomic_directory(paths.evaluation) as out:  # replaced as a whole, only when everything succeeded
        maps = write_instance_maps(out / "instance_maps", dataset, sequences)
        if (Path(paths.data) / f"{CHALLENGE}.json").is_file():  # unlabelled test images: label maps to submit
            challenge = InstanceDataset(paths.data, CHALLENGE, model.input_size)
            loader = DataLoader(challenge, batch_size=cfg.batch_size, shuffle=False, collate_fn=collate)
            write_instance_maps(out / f"{CHALLENGE}_maps", challenge,
                                predict(model, loader, device_t, cfg, desc=f"predict {CHALLENGE}"))
        if dataset_name == "cityscapes" and split == "test":
            names = [Path(info["file_name"]).stem for info in dataset.images]
            gt_files = [cityscapes.gt_file(Path(paths.raw), "val", name) for name in names]
            missing = [g for g in gt_files if not g.is_file()]
            if missing:
                raise FileNotFoundError(f"official Cityscapes evaluation: {missing[0]} not found "
                                        f"({len(missing)} of {len(gt_files)} ground-truth files missing under {paths.raw})")
            extra["cityscapes"] = cityscapes_eval.evaluate(gt_files, sequences, names, out / "cityscapes")
    per_image_leaf = leaf_image_scores(ground_truth, dataset, maps) if dataset_name in LEAF_DATASETS else None
    if per_image_leaf is not None:
        extra["cvppp"] = summarize(list(per_image_leaf.values()))
    if cfg.bootstrap_resamples:
        print(f"bootstrap: {cfg.bootstrap_resamples} resamples of the {len(dataset)} {split} images", flush=True)
    metrics = {**score(ground_truth, sequences, dataset, cfg, per_image_leaf), **extra,
               "checkpoint_epoch": state["epoch"]}
    beyond = beyond_reach(dataset, model.max_steps)
    metrics["counts"].update(beyond)
    if beyond["gt_beyond_max_steps"]:
        print(f"warning: {beyond['gt_beyond_max_steps']} of {metrics['counts']['gt_instances']} ground-truth instances "
              f"({beyond['images_over_max_steps']} {split} images) are beyond reach of model.max_steps = "
              f"{model.max_steps} decoder steps: recall cannot reach 1", file=sys.stderr)
    return metrics


def beyond_reach(dataset: InstanceDataset, steps: int) -> dict[str, int]:
    """Ground-truth instances a T-step decoder cannot emit (each image's count past T), and the
    images holding them."""
    counts = [sum(1 for a in dataset.annotations.get(info["id"], []) if not a["iscrowd"]) for info in dataset.images]
    return {"gt_beyond_max_steps": sum(max(0, n - steps) for n in counts),
            "images_over_max_steps": sum(1 for n in counts if n > steps)}


def score(ground_truth: COCO, sequences: list[list[PredictedInstance]], dataset: InstanceDataset,
          cfg: EvaluateConfig | None = None, leaf_scores: dict[int, dict[str, float]] | None = None
          ) -> dict[str, Any]:
    """COCO segm AP (per class and class-agnostic), bbox AP, per-class AP50, proposal recall and
    counts of ``sequences`` (one per image of ``dataset``, in order) against ``ground_truth``; with
    ``cfg.bootstrap_resamples``, their bootstrap ``intervals`` too (and of the CVPPP ``leaf_scores``)."""
    scored = without_ignored_pixels(ground_truth, sequences)
    detections = to_coco_detections(scored, dataset.num_classes)
    proposals = to_coco_detections(scored, dataset.num_classes, class_agnostic=True)
    bbox = evaluate_segm(ground_truth, to_coco_detections(sequences, dataset.num_classes, iou_type="bbox"),
                         iou_type="bbox")
    n_pred = sum(len(s) for s in sequences)
    n_gt = sum(len([a for a in anns if not a["iscrowd"]]) for anns in dataset.annotations.values())
    segm, per_class = evaluate_with_classes(ground_truth, detections, iou=0.5)  # one COCOeval for both
    return {"segm": segm,
            "segm_class_agnostic": evaluate_segm(ground_truth, proposals, class_agnostic=True), "bbox": bbox,
            "segm_per_class_AP50": per_class,
            "proposals": proposal_recall(ground_truth, proposals),
            "counts": {"images": len(dataset), "predicted_instances": n_pred, "gt_instances": n_gt},
            **({"intervals": bootstrap_intervals(ground_truth, detections, proposals, leaf_scores=leaf_scores,
                                                 resamples=cfg.bootstrap_resamples, seed=cfg.bootstrap_seed,
                                                 confidence=cfg.confidence)}
               if cfg is not None and cfg.bootstrap_resamples else {})}


def without_ignored_pixels(ground_truth: COCO, sequences: list[list[PredictedInstance]]
                           ) -> list[list[PredictedInstance]]:
    """The sequences with ignore-region (void) pixels removed from every predicted mask, so that
    mask IoU is computed over the pixels that count (Pascal VOC's protocol). Unchanged when a
    dataset has no ignore regions."""
    out = []
    for sequence in sequences:
        if not sequence:
            out.append(sequence)
            continue
        crowd = [a for a in ground_truth.loadAnns(ground_truth.getAnnIds(imgIds=[sequence[0].image_id]))
                 if a["iscrowd"]]
        if not crowd:
            out.append(sequence)
            continue
        void = np.logical_or.reduce([ground_truth.annToMask(a).astype(bool) for a in crowd])
        out.append([dataclasses.replace(inst, mask=inst.mask & ~void) for inst in sequence])
    return out


def write_instance_maps(folder: str | Path, dataset: InstanceDataset, sequences: list[list[PredictedInstance]]
                        ) -> list[np.ndarray]:
    """Per image, the predicted sequence painted into one label map (labels 1..N in step order, consecutive; earlier
    steps win), saved as ``<folder>/<image name>_label.png`` (the CVPPP submission format: 8-bit,
    16-bit past 255 instances)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    maps = []
    for info, sequence in zip(dataset.images, sequences):
        labels = label_map([inst.mask for inst in sequence], (info["height"], info["width"]))
        maps.append(labels)
        save_label_map(labels, folder / f"{Path(info['file_name']).stem}_label.png")
    return maps


def leaf_image_scores(ground_truth: COCO, dataset: InstanceDataset, maps: list[np.ndarray]
                      ) -> dict[int, dict[str, float]]:
    """Per image id, CVPPP SBD, DiC, |DiC| and foreground Dice of its predicted label map."""
    per_image = {}
    for info, pred in zip(dataset.images, maps):
        anns = [a for a in ground_truth.loadAnns(ground_truth.getAnnIds(imgIds=[info["id"]])) if not a["iscrowd"]]
        gt = label_map([ground_truth.annToMask(a).astype(bool) for a in anns], pred.shape)
        per_image[info["id"]] = image_scores(pred, gt)
    return per_image
