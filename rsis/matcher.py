"""Hungarian matching between predicted steps and ground-truth instances on the soft-IoU cost."""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment
from torch import nn


def soft_iou(probs: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Pairwise soft IoU between every prediction and every target.

    probs [P, H, W] in [0, 1], targets [N, H, W] in {0, 1}, valid [H, W] (1 = counted pixel).
    Returns [P, N]: sum(p*g) / sum(p + g - p*g), ignored pixels excluded.
    """
    p = probs.flatten(1)  # [P, H*W]
    g = targets.flatten(1).to(p.dtype)  # [N, H*W]
    if valid is not None:
        v = valid.flatten().to(p.dtype)  # [H*W]
        p, g = p * v, g * v
    inter = p @ g.T  # [P, N]
    union = p.sum(1, keepdim=True) + g.sum(1)[None, :] - inter  # [P, N]
    return inter / union.clamp_min(1e-6)


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
