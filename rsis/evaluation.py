"""The evaluate stage's work: predict the test split with the best checkpoint, write the
predicted sequences, and score them with COCO segm AP."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from rsis.checkpoint import load_checkpoint
from rsis.coco_eval import evaluate_segm, load_ground_truth
from rsis.config import EvaluateConfig, ModelConfig, PathsConfig, from_dict
from rsis.datasets.coco_format import annotation_file
from rsis.datasets.dataset import InstanceDataset, collate
from rsis.inference import PredictedInstance, predict, to_coco_detections
from rsis.io import write_json
from rsis.model import RSIS
from rsis.runtime import select_device

CHECKPOINT = "best.pt"


def load_model(checkpoint_path: str | Path, device: torch.device) -> tuple[RSIS, dict[str, Any]]:
    """Rebuild the model from the config stored in a checkpoint."""
    state = load_checkpoint(checkpoint_path, map_location=device)
    # the checkpoint holds the trained weights: do not look for the initial pretrained ones again
    model_cfg = dataclasses.replace(from_dict(ModelConfig, state["model_config"], "checkpoint.model_config"),
                                    pretrained="none")
    model = RSIS(model_cfg, state["num_classes"]).to(device)
    model.load_state_dict(state["model"])
    model.eval()
    return model, state


def predictions_document(dataset: InstanceDataset, sequences: list[list[PredictedInstance]]) -> dict[str, Any]:
    """The predictions file: per test image, its predicted sequence in step order."""
    return {
        "categories": dataset.categories,
        "images": [{"image_id": info["id"], "file_name": info["file_name"],
                    "instances": [inst.to_json() for inst in seq]}
                   for info, seq in zip(dataset.images, sequences)],
    }


def evaluate(paths: PathsConfig, cfg: EvaluateConfig, split: str = "test", device: str = "auto") -> dict[str, Any]:
    """Predict ``split``, write paths.predictions, return COCO segm metrics and counts."""
    device_t = select_device(device)
    model, state = load_model(Path(paths.models) / CHECKPOINT, device_t)
    dataset = InstanceDataset(paths.data, split, model.input_size)
    if dataset.num_classes != state["num_classes"]:
        raise ValueError(f"{paths.data}/{split}.json has {dataset.num_classes - 1} categories but the checkpoint "
                         f"was trained with {state['num_classes'] - 1}")
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=False, collate_fn=collate)
    sequences = predict(model, loader, device_t, cfg, desc=f"predict {split}")
    write_json(paths.predictions, predictions_document(dataset, sequences))
    ground_truth = load_ground_truth(annotation_file(paths.data, split))
    metrics = evaluate_segm(ground_truth, to_coco_detections(sequences, dataset.num_classes))
    agnostic = evaluate_segm(ground_truth, to_coco_detections(sequences, dataset.num_classes, class_agnostic=True),
                             class_agnostic=True)
    bbox = evaluate_segm(ground_truth, to_coco_detections(sequences, dataset.num_classes, iou_type="bbox"),
                         iou_type="bbox")
    n_pred = sum(len(s) for s in sequences)
    n_gt = sum(len([a for a in anns if not a["iscrowd"]]) for anns in dataset.annotations.values())
    return {"segm": metrics, "segm_class_agnostic": agnostic, "bbox": bbox, "counts": {"images": len(dataset), "predicted_instances": n_pred,
                                        "gt_instances": n_gt},
            "checkpoint_epoch": state["epoch"]}
