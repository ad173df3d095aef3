"""Hungarian matching between predicted steps and ground-truth instances on the soft-IoU cost."""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment
from torch import nn


def _counted(probs: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor | None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """``probs`` and ``targets`` [*, H, W] flattened to [*, H*W] in the probabilities' dtype, zero
    where ``valid`` ([H, W] for all, or [P, H, W] one per row) marks a pixel as ignored."""
    p, g = probs.flatten(1), targets.flatten(1).to(probs.dtype)
    if valid is not None:
        v = valid.flatten(-2).to(p.dtype)  # [H*W] or [P, H*W]
        p, g = p * v, g * v
    return p, g


def soft_iou(probs: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Pairwise soft IoU between every prediction and every target.

    probs [P, H, W] in [0, 1], targets [N, H, W] in {0, 1}, valid [H, W] (1 = counted pixel).
    Returns [P, N]: sum(p*g) / sum(p + g - p*g), ignored pixels excluded.
    """
    p, g = _counted(probs, targets, valid)  # [P, H*W], [N, H*W]
    inter = p @ g.T  # [P, N]
    union = p.sum(1, keepdim=True) + g.sum(1)[None, :] - inter  # [P, N]
    return inter / union.clamp_min(1e-6)


def paired_soft_iou(probs: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Soft IoU of each prediction with its own target: probs [P, H, W] in [0, 1], targets [P, H, W] in
    {0, 1}, valid [P, H, W] or None. Returns [P], the diagonal of :func:`soft_iou` without the rest."""
    p, g = _counted(probs, targets, valid)  # [P, H*W] each
    inter = (p * g).sum(1)
    return inter / (p.sum(1) + g.sum(1) - inter).clamp_min(1e-6)


class HungarianMatcher(nn.Module):
    """Assigns each ground-truth instance to one of the first min(N, T) decoder steps.

    For an image with N targets and T unrolled steps, the first T_g = min(N, T) steps are
    matched to T_g of the N targets (all of them when N <= T) by minimising 1 - soft IoU.
    """

    @torch.no_grad()
    def forward(self, mask_logits: torch.Tensor, targets: list[dict]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """mask_logits [B, T, H, W]; targets[b]["masks"] [N_b, H, W].

        Returns per image (step_indices [K], target_indices [K]) with K = min(N_b, T),
        step_indices sorted ascending.
        """
        steps = mask_logits.shape[1]
        matches = []
        for b, target in enumerate(targets):
            n = target["masks"].shape[0]
            t_g = min(n, steps)
            if t_g == 0:
                empty = torch.empty(0, dtype=torch.long)
                matches.append((empty, empty))
                continue
            valid = 1.0 - target["ignore"] if "ignore" in target else None
            probs = mask_logits[b, :t_g].sigmoid()  # [T_g, H, W]
            cost = 1.0 - soft_iou(probs, target["masks"], valid)  # [T_g, N]
            rows, cols = linear_sum_assignment(cost.float().cpu().numpy())
            matches.append((torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long)))
        return matches


class StepMatcher:
    """Assigns ground truth to decoder steps one step at a time, during the unroll, and decides the
    canvas each next step sees: ``train.matching: top-down``, the alternative to the Hungarian
    matcher. Step t <-> the t-th target by the top edge of its box (then the left edge): one stable
    order the decoder can learn, known before the step runs.

    As with the Hungarian matcher only the first T_g = min(N, T) steps are assigned. ``forcing``
    [B] bool marks the images that are teacher-forced: their next step sees the union of the
    targets assigned so far instead of the model's own canvas. Passed to ``RSIS.forward`` as its
    ``feedback``; afterwards :meth:`matches` gives the assignment in the Hungarian matcher's format.
    """

    def __init__(self, targets: list[dict], forcing: torch.Tensor) -> None:
        self.targets, self.forcing = targets, forcing
        self.order: list[list[int]] = []  # the target of each step, per image
        for target in targets:
            if target["masks"].shape[0]:  # by the box's top edge, then its left edge
                keys = target["boxes"][:, 1] * 4.0 + target["boxes"][:, 0] / 4.0
                self.order.append(torch.argsort(keys, stable=True).tolist())
            else:
                self.order.append([])
        self.steps = 0  # steps seen so far
        self.truth: torch.Tensor | None = None  # [B, 1, H, W] union of the assigned targets
        self.ordered: torch.Tensor | None = None  # [B, N, H, W] each image's targets in step order, empty padded

    @torch.no_grad()
    def __call__(self, step: int, mask_logits: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
        """mask_logits [n, H, W] of ``step``; own [n, 1, H, W]: the model's canvas, for the first n images
        (those still unrolled: ``RSIS.forward``'s ``lengths``). Returns the next canvas of those n."""
        self.steps = max(self.steps, step + 1)
        if not self.forcing.any():
            return own
        n = own.shape[0]
        if self.truth is None:  # the forced images' targets in step order, once per batch (all images at once after)
            self.truth = own.new_zeros(len(self.targets), *own.shape[1:])
            widest = max(len(order) for order in self.order)
            self.ordered = own.new_zeros(len(self.targets), widest, *own.shape[-2:])
            for b, (target, order) in enumerate(zip(self.targets, self.order)):
                if order and self.forcing[b]:
                    self.ordered[b, :len(order)] = target["masks"][order].to(own.dtype)
        if step < self.ordered.shape[1]:
            self.truth = torch.maximum(self.truth, self.ordered[:, step, None])
        return torch.where(self.forcing[:n].view(-1, 1, 1, 1).to(own.device), self.truth[:n], own)

    def matches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per image (step_indices [K], target_indices [K]), steps ascending, as HungarianMatcher."""
        assigned = [order[:self.steps] for order in self.order]
        return [(torch.arange(len(a), dtype=torch.long), torch.as_tensor(a, dtype=torch.long)) for a in assigned]
