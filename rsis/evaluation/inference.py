"""The paper's inference protocol: from network outputs to a sequence of instances per image.

Steps are read in order; the sequence ends at the first step whose objectness sigmoid(stop) is
below ``stop_threshold``. Each kept step's mask is upsampled to the original image size and
thresholded at ``mask_threshold``; masks covering less than ``min_area_fraction`` of the image are
dropped. The detection score for class c is p(c) * objectness, times the mask's maskness (the mean
probability over the pixels the mask keeps) when ``mask_score`` is set: of two steps equally sure
an object is there, the one with the crisper mask ranks first (SOLO, Wang et al. 2020).

Flip test (``test_flips``): the network also reads the image flipped along each axis named. Each
view's sequence is flipped back and adds, after the image's own sequence, the masks that no mask
kept so far overlaps by IoU over 0.5, their scores x ``flip_score``. A sequence is read top-down by
the default's model, so the vertically flipped image brings the bottom objects, the ones the
image's own sequence reaches last or never, to its first steps.
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
    view: str = "image"  # "image", or the flip of evaluate.test_flips whose sequence added it
    view_weight: float = 1.0  # evaluate.flip_score for a flipped view's addition, else 1

    @property
    def score(self) -> float:
        """Class-agnostic confidence: objectness, times maskness under evaluate.mask_score, times
        flip_score for what a flipped view added."""
        return self.objectness * self.maskness * self.view_weight

    @property
    def label(self) -> int:
        """Most likely non-background category id."""
        return int(np.argmax(self.class_probs[1:])) + 1

    def to_json(self) -> dict:
        return {"image_id": self.image_id, "step": self.step, "segmentation": encode_mask(self.mask),
                "objectness": self.objectness, "maskness": self.maskness, "class_probs": list(self.class_probs),
                "label": self.label, "box": list(self.box), "view": self.view, "view_weight": self.view_weight}

    @property
    def coco_bbox(self) -> list[float]:
        x0, y0, x1, y1 = self.box
        return [x0, y0, x1 - x0, y1 - y0]


FLIP_DIMS = {"vertical": -2, "horizontal": -1}  # evaluate.test_flips: the image axis each flips
FLIP_OVERLAP = 0.5  # a flipped view's mask is another object when its IoU with every mask kept so far is at most this


def postprocess(outputs: RSISOutput, orig_sizes: list[tuple[int, int]], image_ids: list[int],
                cfg: EvaluateConfig, view: str = "image") -> list[list[PredictedInstance]]:
    """Per image, the predicted sequence in step order. ``view``: the flip (of FLIP_DIMS) the outputs
    were computed on; masks and boxes are flipped back to the image's own coordinates."""
    objectness = outputs.stop_logits.sigmoid()  # [B, T]
    class_probs = outputs.class_logits.softmax(-1)  # [B, T, C]
    boxes = outputs.boxes.float().cpu()  # [B, T, 4] x0, y0, x1, y1, fractions of the side
    if view != "image":  # the flipped axis's edges swap places: x0 <- 1 - x1, x1 <- 1 - x0 (y likewise)
        low, high = (1, 3) if view == "vertical" else (0, 2)
        boxes = boxes.clone()
        boxes[..., [low, high]] = 1.0 - boxes[..., [high, low]]
    sequences = []
    for b, ((h, w), image_id) in enumerate(zip(orig_sizes, image_ids)):
        below = (objectness[b] < cfg.stop_threshold).nonzero()
        length = int(below[0]) if len(below) else objectness.shape[1]
        sequence = []
        if length:
            logits = F.interpolate(outputs.mask_logits[b, :length, None].float(), size=(h, w),
                                   mode="bilinear", align_corners=False)[:, 0]  # [L, h, w]
            if view != "image":
                logits = logits.flip(FLIP_DIMS[view])
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
                    maskness=float(maskness[t]) if cfg.mask_score else 1.0, view=view,
                    view_weight=1.0 if view == "image" else cfg.flip_score))
        sequences.append(sequence)
    return sequences


def infer(model: RSIS, images: torch.Tensor, cfg: EvaluateConfig) -> RSISOutput:
    """The network's outputs for ``images`` under the inference settings of ``cfg`` (the seed term)."""
    return model(images, seed_scale=cfg.seed_scale, seed_radius=cfg.seed_radius)


def infer_views(model: RSIS, images: torch.Tensor, cfg: EvaluateConfig) -> list[tuple[str, RSISOutput]]:
    """The network's outputs for ``images`` as they are ("image"), then flipped along each axis of
    ``cfg.test_flips``, each named by its view."""
    return [("image", infer(model, images, cfg))] + [
        (axis, infer(model, images.flip(FLIP_DIMS[axis]), cfg)) for axis in cfg.test_flips]


def read_views(views: list[tuple[str, RSISOutput]], orig_sizes: list[tuple[int, int]], image_ids: list[int],
               cfg: EvaluateConfig) -> list[list[PredictedInstance]]:
    """Per image, the sequence of its own view, then what each flipped view adds in turn: its masks
    (in its step order) that overlap no mask kept so far by IoU over FLIP_OVERLAP."""
    (_, own), *flipped = views
    sequences = postprocess(own, orig_sizes, image_ids, cfg)
    for name, outputs in flipped:
        for sequence, extra in zip(sequences, postprocess(outputs, orig_sizes, image_ids, cfg, view=name)):
            for inst in extra:
                if all(_iou(inst.mask, kept.mask) <= FLIP_OVERLAP for kept in sequence):
                    sequence.append(inst)
    return sequences


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


@torch.no_grad()
def predict(model: RSIS, loader: DataLoader, device: torch.device, cfg: EvaluateConfig,
            desc: str = "predict") -> list[list[PredictedInstance]]:
    """Run the model over a loader; return the predicted sequence of every image, in loader order."""
    model.eval()
    sequences = []
    for images, targets in tqdm(loader, desc=desc, unit="batch", leave=False, disable=None):
        views = infer_views(model, images.to(device), cfg)
        sequences += read_views(views, [t["orig_size"] for t in targets], [t["image_id"] for t in targets], cfg)
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
