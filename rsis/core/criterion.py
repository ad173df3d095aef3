"""The RSIS loss terms on the Hungarian-matched sequence. Returns UNWEIGHTED terms; the
training engine weights and sums them (weights come from params.yaml)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import generalized_box_iou_loss

from rsis.core.matcher import HungarianMatcher, paired_soft_iou, soft_iou
from rsis.core.model import RSISOutput


class RSISCriterion(nn.Module):
    """mask: mean (1 - soft IoU) over matched pairs;
    bce: mean pixel binary cross-entropy over matched pairs (ignored pixels excluded; an extension,
    the paper has none);
    cls: mean NLL of the matched target class over matched pairs;
    stop: mean BCE over the first T_g + 1 steps of each image (target 1 for t < T_g, 0 at t = T_g;
    no stop target at T_g when all T steps are used by objects);
    box: mean over matched pairs of L1 (on normalised x0, y0, x1, y1, summed) + GIoU loss;
    aux_mask (model.aux_masks only; an extension): mean over matched pairs and ConvLSTM levels 0-3 of
    1 - soft IoU between the level's coarse mask and the target area-resized to it (deep supervision).
    """

    def __init__(self, matcher: HungarianMatcher | None = None, head_targets: str = "matched") -> None:
        """``head_targets`` (train.head_targets): ``matched`` (the paper) trains a step's class and box
        on its matched target; ``overlap`` on the ground-truth instance its mask overlaps most, i.e.
        the object the step actually emits (the two differ when the matching imposes an order)."""
        super().__init__()
        if head_targets not in ("matched", "overlap"):
            raise ValueError(f"head_targets must be 'matched' or 'overlap', got {head_targets!r}")
        self.matcher = matcher or HungarianMatcher()
        self.head_targets = head_targets

    def forward(self, outputs: RSISOutput, targets: list[dict],
                matches: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> dict[str, torch.Tensor]:
        """``matches``: an assignment made elsewhere (rsis.core.matcher.StepMatcher); default: Hungarian.

        Every term is computed for all matched pairs of the batch at once (one gather per output,
        not one loop iteration per image): the per-image loop was most of a training step's small
        operator calls (bench/RESULTS.md)."""
        if matches is None:
            matches = self.matcher(outputs.mask_logits, targets)
        device = outputs.mask_logits.device
        batch, steps = outputs.mask_logits.shape[:2]
        counts = [t["masks"].shape[0] for t in targets]
        matched = torch.tensor([len(rows) for rows, _ in matches])  # [B] T_g per image
        offsets = torch.tensor([0] + counts[:-1]).cumsum(0)  # each image's first row in the batch's targets
        # the matched pairs, image by image, steps ascending: image, step and row in the batch's targets
        pair_image = torch.repeat_interleave(torch.arange(batch), matched).to(device)
        pair_step = torch.cat([rows for rows, _ in matches]).to(device, torch.long)
        pair_target = torch.cat([cols + offsets[b] for b, (_, cols) in enumerate(matches)]).to(device, torch.long)
        target_image = torch.repeat_interleave(torch.arange(batch), torch.tensor(counts)).to(device)
        all_masks = torch.cat([t["masks"] for t in targets])  # [N, H, W]
        valid = None  # [B, H, W] 1 = counted pixel
        if any("ignore" in t for t in targets):
            no_ignore = outputs.mask_logits.new_zeros(outputs.mask_logits.shape[-2:], dtype=torch.float)
            valid = 1.0 - torch.stack([t["ignore"].float() if "ignore" in t else no_ignore for t in targets])
        zero = outputs.mask_logits.sum() * 0.0  # keeps the graph when a batch has no instances
        losses = dict.fromkeys(("mask", "bce", "cls", "box", "aux_mask"), zero)
        if len(pair_step):
            logits = outputs.mask_logits[pair_image, pair_step]  # [P, H, W]
            probs = logits.sigmoid()
            gt = all_masks[pair_target].to(probs.dtype)  # [P, H, W]
            pair_valid = None if valid is None else valid[pair_image].to(probs.dtype)
            losses["mask"] = (1.0 - paired_soft_iou(probs, gt, pair_valid)).mean()
            if outputs.aux_mask_logits:  # mean over levels of 1 - soft IoU with the area-resized target
                losses["aux_mask"] = torch.stack([
                    1.0 - paired_soft_iou(level[pair_image, pair_step].sigmoid(), _resize(gt, level),
                                          None if valid is None else _resize(valid, level)[pair_image])
                    for level in outputs.aux_mask_logits]).mean(0).mean()
            bce = F.binary_cross_entropy_with_logits(logits, gt, reduction="none")
            losses["bce"] = (bce * pair_valid if pair_valid is not None else bce).mean((1, 2)).mean()
            heads = pair_target
            if self.head_targets == "overlap":  # the instance of its own image each step's mask overlaps most
                p, g = probs.detach(), all_masks.to(probs.dtype)
                if valid is not None:  # each side's own image's valid pixels (the same image where it counts)
                    p, g = p * pair_valid, g * valid[target_image]
                overlap = soft_iou(p, g)  # [P, N]
                same_image = pair_image[:, None] == target_image[None, :]  # [P, N]
                heads = overlap.masked_fill(~same_image, -1.0).argmax(1)
            losses["cls"] = F.cross_entropy(outputs.class_logits[pair_image, pair_step], torch.cat(
                [t["labels"] for t in targets]).to(device)[heads])
            boxed = torch.tensor(["boxes" in t for t in targets], device=device)[pair_image]  # [P]
            if boxed.any():
                all_boxes = torch.cat([t["boxes"] if "boxes" in t else torch.zeros(n, 4, device=device)
                                       for t, n in zip(targets, counts)]).to(device)
                pred = outputs.boxes[pair_image[boxed], pair_step[boxed]].float()  # [P', 4]
                gt_boxes = all_boxes[heads[boxed]]
                losses["box"] = ((pred - gt_boxes).abs().sum(-1) + generalized_box_iou_loss(pred, gt_boxes)).mean()
        # stop: the first T_g + 1 steps of each image (1 before T_g, 0 at T_g)
        step_index = torch.arange(steps, device=device)[None, :]  # [1, T]
        objects = matched.to(device)[:, None]  # [B, 1] T_g per image, on the device
        scored = step_index < (objects + 1).clamp_max(steps)  # [B, T]
        losses["stop"] = F.binary_cross_entropy_with_logits(outputs.stop_logits[scored],
                                                            (step_index < objects).expand_as(scored)[scored].float())
        losses["embedding"] = embedding_loss(outputs.embedding, targets) if outputs.embedding is not None else zero
        return {k: losses[k] for k in ("mask", "bce", "cls", "stop", "box", "aux_mask", "embedding")}


def _resize(masks: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    """[..., H, W] masks area-resized to the last two sides of ``like`` (the share of each cell)."""
    if masks is None:
        return None
    lead = masks.shape[:-2]
    small = F.interpolate(masks.reshape(-1, 1, *masks.shape[-2:]), size=like.shape[-2:], mode="area")
    return small.reshape(*lead, *like.shape[-2:])


PULL_MARGIN, PUSH_MARGIN = 0.5, 1.5  # De Brabandere et al.'s delta_v and delta_d


def embedding_loss(embedding: torch.Tensor, targets: list[dict]) -> torch.Tensor:
    """The discriminative loss (De Brabandere et al. 2017) of ``embedding`` [B, E, H, W] over each
    image's visible instances: pixels pulled to within PULL_MARGIN of their instance's mean, means
    pushed 2 * PUSH_MARGIN apart, mean over images that have instances. All images at once, their
    instances padded to the batch's largest count with empty masks (which count nowhere)."""
    counts = torch.tensor([t["masks"].shape[0] for t in targets], device=embedding.device)  # [B]
    if not counts.any():
        return embedding.sum() * 0.0
    widest = int(counts.max())
    pixels = embedding.flatten(2).transpose(1, 2)  # [B, H*W, E]
    masks = embedding.new_zeros(len(targets), widest, pixels.shape[1])  # [B, N, H*W]
    for b, target in enumerate(targets):
        masks[b, :counts[b]] = target["masks"].flatten(1).to(embedding.dtype)
    present = torch.arange(widest, device=embedding.device)[None, :] < counts[:, None]  # [B, N]
    area = masks.sum(2).clamp_min(1.0)  # [B, N]
    means = (masks @ pixels) / area[..., None]  # [B, N, E]
    spread = torch.cdist(means, pixels)  # [B, N, H*W] distance of every pixel to every mean
    pull = ((spread - PULL_MARGIN).clamp_min(0.0).pow(2) * masks).sum(2) / area  # [B, N], 0 for padding
    images = counts.clamp_min(1).to(embedding.dtype)
    term = pull.sum(1) / images + 0.001 * (means.norm(dim=2) * present).sum(1) / images  # [B]
    if widest > 1:
        apart = torch.cdist(means, means)  # [B, N, N]
        pairs = present[:, :, None] & present[:, None, :] & ~torch.eye(widest, dtype=torch.bool, device=embedding.device)
        push = ((2 * PUSH_MARGIN - apart).clamp_min(0.0).pow(2) * pairs).sum((1, 2))
        term = term + push / (pairs.sum((1, 2)).clamp_min(1).to(embedding.dtype))
    return term[counts > 0].mean()


def weighted_total(losses: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """sum_k weights[k] * losses[k] over the weighted terms (a term without a weight is not trained)."""
    return sum(w * losses[k] for k, w in weights.items())
