import torch

from rsis.core.matcher import HungarianMatcher, soft_iou


def _disjoint_masks(n: int, size: int = 16) -> torch.Tensor:
    """n non-overlapping horizontal bands, [n, size, size]."""
    masks = torch.zeros(n, size, size)
    band = size // n
    for k in range(n):
        masks[k, k * band:(k + 1) * band] = 1.0
    return masks


def _logits_for(masks: torch.Tensor) -> torch.Tensor:
    return (masks * 2 - 1) * 20.0  # sigmoid ~ 0/1


def test_soft_iou_of_identical_and_disjoint_masks():
    masks = _disjoint_masks(3)
    iou = soft_iou(masks, masks)
    assert torch.allclose(iou, torch.eye(3), atol=1e-6)


def test_soft_iou_ignores_pixels():
    pred = torch.zeros(1, 4, 4)
    pred[0, :, :2] = 1.0
    target = torch.zeros(1, 4, 4)
    target[0, :, :1] = 1.0
    valid = torch.ones(4, 4)
    assert soft_iou(pred, target, valid).item() == 0.5
    valid[:, 1] = 0.0  # ignore the column where they disagree
    assert soft_iou(pred, target, valid).item() == 1.0


def test_matcher_recovers_known_permutation():
    targets_masks = _disjoint_masks(4)
    perm = torch.tensor([2, 0, 3, 1])  # step t predicts target perm[t]
    mask_logits = _logits_for(targets_masks[perm])[None]  # [1, 4, H, W]
    (rows, cols), = HungarianMatcher()(mask_logits, [{"masks": targets_masks}])
    assert rows.tolist() == [0, 1, 2, 3]
    assert cols.tolist() == perm.tolist()


def test_matcher_uses_only_first_n_steps():
    targets_masks = _disjoint_masks(2)
    logits = torch.full((1, 5, 16, 16), -20.0)
    logits[0, 4] = _logits_for(targets_masks[0])  # a perfect match at step 4 must be ignored
    (rows, cols), = HungarianMatcher()(logits, [{"masks": targets_masks}])
    assert rows.tolist() == [0, 1]
    assert sorted(cols.tolist()) == [0, 1]


def test_matcher_handles_zero_targets():
    (rows, cols), = HungarianMatcher()(torch.randn(1, 3, 8, 8), [{"masks": torch.zeros(0, 8, 8)}])
    assert rows.numel() == 0 and cols.numel() == 0


def test_matcher_more_targets_than_steps_picks_best_subset():
    targets_masks = _disjoint_masks(4)
    logits = _logits_for(targets_masks[[3, 1]])[None]  # 2 steps predicting targets 3 and 1
    (rows, cols), = HungarianMatcher()(logits, [{"masks": targets_masks}])
    assert rows.tolist() == [0, 1]
    assert cols.tolist() == [3, 1]


def test_matcher_batch_with_different_target_counts():
    a, b = _disjoint_masks(3), _disjoint_masks(1)
    logits = torch.stack([_logits_for(a[[1, 2, 0]]), torch.full((3, 16, 16), -20.0)])
    matches = HungarianMatcher()(logits, [{"masks": a}, {"masks": b}])
    assert matches[0][1].tolist() == [1, 2, 0]
    assert matches[1][0].tolist() == [0] and matches[1][1].tolist() == [0]
