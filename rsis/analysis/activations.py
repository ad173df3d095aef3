"""Encoder activations and the predicted order (the paper's Table 7 and Figure 8).

The paper orders objects "by their activation" in each encoder block without saying how an
object's activation is pooled. Ours: for block f_b (f0 deepest .. f4 shallowest), the activation
map is the mean over channels of f_b, upsampled bilinearly to the image's original size; an
object's activation is the mean of that map over the object's predicted mask. Tau is Kendall's
tau between the predicted order and the order of decreasing activation (``ordering.descending_tau``):
tau = 1 means the model emits the most active object first.

"Before" is the network training started from (``model.initial_model`` with the checkpoint's
config and seed: random weights, or the pretrained encoder when one was configured); "after" is
the trained checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from rsis.analysis.ordering import descending_tau
from rsis.core.model import RSIS
from rsis.datasets.dataset import InstanceDataset, collate

BLOCKS = ("f0", "f1", "f2", "f3", "f4")
MODELS = ("before", "after")


@torch.no_grad()
def activation_maps(model: RSIS, images: torch.Tensor) -> torch.Tensor:
    """Channel-mean activation of each encoder block, upsampled to the input size: [B, 5, H, W]."""
    features = model.encoder(images)
    return torch.stack([F.interpolate(f.float().mean(dim=1, keepdim=True), size=images.shape[-2:], mode="bilinear",
                                      align_corners=False)[:, 0] for f in features], dim=1)


def object_activations(maps: np.ndarray, masks: list[np.ndarray]) -> np.ndarray:
    """Mean of each block's map [blocks, H, W] over each boolean mask [H, W]: [objects, blocks]."""
    if not masks:
        return np.zeros((0, maps.shape[0]))
    for mask in masks:
        if mask.shape != maps.shape[1:]:
            raise ValueError(f"mask of shape {mask.shape} does not match activation maps of shape {maps.shape[1:]}")
    return np.stack([maps[:, mask].mean(axis=1) for mask in masks])


def activation_taus(activations: np.ndarray) -> list[float | None]:
    """Per block, Kendall tau between list order and decreasing activation ([objects, blocks])."""
    return [descending_tau(activations[:, b]) for b in range(activations.shape[1])]


@dataclass
class ImageActivations:
    image_id: int
    activations: dict[str, np.ndarray]  # model -> [objects, blocks], objects in predicted order
    maps: dict[str, np.ndarray] | None = None  # model -> [blocks, H, W] at original size (kept images only)


def encoder_activations(models: dict[str, RSIS], dataset: InstanceDataset, masks: dict[int, list[np.ndarray]],
                        device: torch.device, batch_size: int, keep_maps: set[int] = frozenset()
                        ) -> list[ImageActivations]:
    """Activations of every predicted object (``masks``: image id -> masks in predicted order, at
    original size) under each model, in dataset order; the full maps for the ids in ``keep_maps``."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    results = []
    for model in models.values():
        model.eval()
    for images, targets in tqdm(loader, desc="encoder activations", unit="batch", leave=False, disable=None):
        per_model = {name: activation_maps(model, images.to(device)) for name, model in models.items()}
        for b, target in enumerate(targets):
            image_id, (h, w) = target["image_id"], target["orig_size"]
            full = {name: F.interpolate(maps[b:b + 1], size=(h, w), mode="bilinear", align_corners=False)[0]
                    .cpu().numpy() for name, maps in per_model.items()}
            objects = masks.get(image_id, [])
            results.append(ImageActivations(
                image_id=image_id, activations={name: object_activations(m, objects) for name, m in full.items()},
                maps=full if image_id in keep_maps else None))
    return results


def summary_rows(images: list[ImageActivations]) -> list[dict]:
    """Table 7: per block and model, mean and std of tau over images with two or more objects."""
    rows = []
    for name in MODELS:
        taus = np.array([activation_taus(im.activations[name]) for im in images if len(im.activations[name]) >= 2],
                        dtype=float).reshape(-1, len(BLOCKS))
        for b, block in enumerate(BLOCKS):
            values = taus[:, b][~np.isnan(taus[:, b])]
            rows.append({"block": block, "model": name, "label": f"{block} {name}",
                         "tau_mean": float(values.mean()) if len(values) else None,
                         "tau_std": float(values.std()) if len(values) else None, "images": int(len(values))})
    return rows
