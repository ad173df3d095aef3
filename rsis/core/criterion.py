"""The RSIS loss terms on the Hungarian-matched sequence. Returns UNWEIGHTED terms; the
training engine weights and sums them (weights come from params.yaml)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import generalized_box_iou_loss

from rsis.core.matcher import HungarianMatcher, soft_iou
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
        """``matches``: an assignment made elsewhere (rsis.core.matcher.StepMatcher); default: Hungarian."""
        if matches is None:
            matches = self.matcher(outputs.mask_logits, targets)
        steps = outputs.mask_logits.shape[1]
        bce_terms, aux_terms = [], []
        mask_terms, box_terms, class_logits, class_targets, stop_logits, stop_targets = [], [], [], [], [], []
        for b, (target, (rows, cols)) in enumerate(zip(targets, matches)):
            t_g = len(rows)
            if t_g:
                probs = outputs.mask_logits[b, rows].sigmoid()  # [T_g, H, W]
                valid = 1.0 - target["ignore"] if "ignore" in target else None
                gt = target["masks"][cols].to(probs.dtype)  # [T_g, H, W]
                iou = soft_iou(probs, gt, valid).diagonal()  # [T_g]
                mask_terms.append(1.0 - iou)
                if outputs.aux_mask_logits:  # [T_g] mean over levels of 1 - soft IoU with the area-resized target
                    aux_terms.append(torch.stack([
                        1.0 - soft_iou(level[b, rows].sigmoid(), _resize(gt, level), _resize(valid, level)).diagonal()
                        for level in outputs.aux_mask_logits]).mean(0))
                bce = F.binary_cross_entropy_with_logits(outputs.mask_logits[b, rows], gt, reduction="none")
                bce_terms.append((bce * valid).mean((1, 2)) if valid is not None else bce.mean((1, 2)))  # [T_g]
                heads = cols
                if self.head_targets == "overlap":  # [T_g] the instance each step's mask overlaps most
                    heads = soft_iou(probs.detach(), target["masks"], valid).argmax(1).to(cols.device)
                class_logits.append(outputs.class_logits[b, rows])  # [T_g, C]
                class_targets.append(target["labels"][heads])  # [T_g]
                if "boxes" in target:
                    pred, gt = outputs.boxes[b, rows].float(), target["boxes"][heads]  # [T_g, 4] each
                    box_terms.append((pred - gt).abs().sum(-1) + generalized_box_iou_loss(pred, gt))  # [T_g]
            n_stop = min(t_g + 1, steps)
            stop_logits.append(outputs.stop_logits[b, :n_stop])  # [n_stop]
            stop_targets.append((torch.arange(n_stop, device=outputs.stop_logits.device) < t_g).float())
        zero = outputs.mask_logits.sum() * 0.0  # keeps the graph when a batch has no instances

        def pairs_mean(terms: list[torch.Tensor]) -> torch.Tensor:
            return torch.cat(terms).mean() if terms else zero

        losses = {
            "mask": pairs_mean(mask_terms),
            "bce": pairs_mean(bce_terms),
            "cls": F.cross_entropy(torch.cat(class_logits), torch.cat(class_targets)) if class_logits else zero,
            "stop": F.binary_cross_entropy_with_logits(torch.cat(stop_logits), torch.cat(stop_targets)),
            "box": pairs_mean(box_terms),
            "aux_mask": pairs_mean(aux_terms),
            "embedding": embedding_loss(outputs.embedding, targets) if outputs.embedding is not None else zero,
        }
        return losses


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
    pushed 2 * PUSH_MARGIN apart, mean over images that have instances."""
    terms = []
    for b, target in enumerate(targets):
        masks = target["masks"].to(embedding.dtype).flatten(1)  # [N, H*W]
        if masks.shape[0] == 0:
            continue
        e = embedding[b].flatten(1)  # [E, H*W]
        area = masks.sum(1).clamp_min(1.0)  # [N]
        means = (masks @ e.T) / area[:, None]  # [N, E]
        spread = torch.cdist(means, e.T)  # [N, H*W] distance of every pixel to every mean
        pull = ((spread - PULL_MARGIN).clamp_min(0.0).pow(2) * masks).sum(1) / area  # [N]
        term = pull.mean()
        if means.shape[0] > 1:
            apart = torch.cdist(means, means)  # [N, N]
            off = ~torch.eye(means.shape[0], dtype=torch.bool, device=means.device)
            term = term + (2 * PUSH_MARGIN - apart[off]).clamp_min(0.0).pow(2).mean()
        terms.append(term + 0.001 * means.norm(dim=1).mean())
    return torch.stack(terms).mean() if terms else embedding.sum() * 0.0


def weighted_total(losses: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """sum_k weights[k] * losses[k] over the weighted terms (a term without a weight is not trained)."""
    return sum(w * losses[k] for k, w in weights.items())
