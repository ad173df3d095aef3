"""The paper's inference protocol: from network outputs to a sequence of instances per image.

Steps are read in order; the sequence ends at the first step whose objectness sigmoid(stop) is
below ``stop_threshold``. Each kept step's mask is upsampled to the original image size and
thresholded at ``mask_threshold``; masks covering less than ``min_area_fraction`` of the image are
dropped. The detection score for class c is p(c) * objectness, times the mask's maskness (the mean
probability over the pixels the mask keeps) when ``mask_score`` is set: of two steps equally sure
an object is there, the one with the crisper mask ranks first (SOLO, Wang et al. 2020).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from rsis.config import EvaluateConfig
from rsis.core.model import RSIS, RSISOutput
from rsis.datasets.format import encode_mask


@dataclass(frozen=True)
class PredictedInstance:
    image_id: int
    step: int  # decoder step, 0-based: the position in the predicted sequence
    mask: np.ndarray  # [H, W] bool at original resolution
    objectness: float
    class_probs: tuple[float, ...]  # softmax over C classes (index 0 = <eos>/background)
    box: tuple[float, float, float, float]  # predicted x0, y0, x1, y1 in original-image pixels
    maskness: float = 1.0  # mean probability over the mask's pixels (evaluate.mask_score), else 1

    @property
    def score(self) -> float:
        """Class-agnostic confidence: objectness, times maskness under evaluate.mask_score."""
        return self.objectness * self.maskness

    @property
    def label(self) -> int:
        """Most likely non-background category id."""
        return int(np.argmax(self.class_probs[1:])) + 1

    def to_json(self) -> dict:
        return {"image_id": self.image_id, "step": self.step, "segmentation": encode_mask(self.mask),
                "objectness": self.objectness, "maskness": self.maskness, "class_probs": list(self.class_probs),
                "label": self.label, "box": list(self.box)}

    @property
    def coco_bbox(self) -> list[float]:
        x0, y0, x1, y1 = self.box
        return [x0, y0, x1 - x0, y1 - y0]


def postprocess(outputs: RSISOutput, orig_sizes: list[tuple[int, int]], image_ids: list[int],
                cfg: EvaluateConfig) -> list[list[PredictedInstance]]:
    """Per image, the predicted sequence in step order."""
    objectness = outputs.stop_logits.sigmoid()  # [B, T]
    class_probs = outputs.class_logits.softmax(-1)  # [B, T, C]
    boxes = outputs.boxes.float().cpu()  # [B, T, 4] fractions of the side
    sequences = []
    for b, ((h, w), image_id) in enumerate(zip(orig_sizes, image_ids)):
        below = (objectness[b] < cfg.stop_threshold).nonzero()
        length = int(below[0]) if len(below) else objectness.shape[1]
        sequence = []
        if length:
            logits = F.interpolate(outputs.mask_logits[b, :length, None].float(), size=(h, w),
                                   mode="bilinear", align_corners=False)[:, 0]  # [L, h, w]
            probability = logits.sigmoid()
            keep = probability >= cfg.mask_threshold
            maskness = (probability * keep).sum((1, 2)) / keep.sum((1, 2)).clamp_min(1)  # [L]
            masks = keep.cpu().numpy()
            for t in range(length):
                if masks[t].sum() < cfg.min_area_fraction * h * w or not masks[t].any():
                    continue
                sequence.append(PredictedInstance(
                    image_id=image_id, step=t, mask=masks[t], objectness=float(objectness[b, t]),
                    class_probs=tuple(float(p) for p in class_probs[b, t]),
                    box=tuple(float(v) * side for v, side in zip(boxes[b, t], (w, h, w, h))),
                    maskness=float(maskness[t]) if cfg.mask_score else 1.0))
        sequences.append(sequence)
    return sequences


def infer(model: RSIS, images: torch.Tensor, cfg: EvaluateConfig) -> RSISOutput:
    """The network's outputs for ``images`` under the inference settings of ``cfg`` (the seed term)."""
    return model(images, seed_scale=cfg.seed_scale, seed_radius=cfg.seed_radius)


@torch.no_grad()
def predict(model: RSIS, loader: DataLoader, device: torch.device, cfg: EvaluateConfig,
            desc: str = "predict") -> list[list[PredictedInstance]]:
    """Run the model over a loader; return the predicted sequence of every image, in loader order."""
    model.eval()
    sequences = []
    for images, targets in tqdm(loader, desc=desc, unit="batch", leave=False, disable=None):
        outputs = infer(model, images.to(device), cfg)
        sequences += postprocess(outputs, [t["orig_size"] for t in targets], [t["image_id"] for t in targets], cfg)
    return sequences


def to_coco_detections(sequences: list[list[PredictedInstance]], num_classes: int,
                       min_score: float = 1e-4, class_agnostic: bool = False, iou_type: str = "segm") -> list[dict]:
    """COCO results: one detection per non-background class per step, score p(c) * objectness
    (times maskness under evaluate.mask_score: :attr:`PredictedInstance.score`).

    ``class_agnostic``: one detection per step instead, scored by objectness (and maskness) alone.
    ``iou_type``: 'segm' gives the mask (RLE), 'bbox' the predicted box (x, y, w, h).
    """
    detections = []
    for sequence in sequences:
        for inst in sequence:
            rle = encode_mask(inst.mask) if iou_type == "segm" else None
            if class_agnostic:
                detections.append(_detection(inst, inst.label, inst.score, rle))
                continue
            for c in range(1, num_classes):
                score = inst.class_probs[c] * inst.score
                if score >= min_score:
                    detections.append(_detection(inst, c, score, rle))
    return detections


def _detection(inst: PredictedInstance, category_id: int, score: float, rle: dict | None) -> dict:
    shape = {"segmentation": rle} if rle is not None else {"bbox": inst.coco_bbox}
    return {"image_id": inst.image_id, "category_id": category_id, "score": score, **shape}
