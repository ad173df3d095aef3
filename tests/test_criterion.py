import torch
from torchvision.ops import masks_to_boxes

from rsis.core.criterion import RSISCriterion, weighted_total
from rsis.core.model import RSISOutput


def _target(n: int, size: int = 16, num_classes: int = 4) -> dict:
    masks = torch.zeros(n, size, size)
    for k in range(n):
        masks[k, k * (size // max(n, 1)):(k + 1) * (size // max(n, 1))] = 1.0
    boxes = masks_to_boxes(masks) if n else torch.zeros(0, 4)  # pixel indices of the extreme pixels
    boxes[:, 2:] += 1  # box edges: the far side of the last pixel
    return {"masks": masks, "labels": torch.arange(n) % (num_classes - 1) + 1, "ignore": torch.zeros(size, size),
            "boxes": boxes / size}


def _perfect_output(targets: list[dict], steps: int, num_classes: int = 4) -> RSISOutput:
    size = targets[0]["masks"].shape[-1]
    masks = torch.full((len(targets), steps, size, size), -30.0)
    classes = torch.zeros(len(targets), steps, num_classes)
    stops = torch.full((len(targets), steps), -30.0)
    boxes = torch.tensor([0.0, 0.0, 0.5, 0.5]).repeat(len(targets), steps, 1)
    for b, t in enumerate(targets):
        n = t["masks"].shape[0]
        masks[b, :n] = (t["masks"] * 2 - 1) * 30.0
        classes[b, torch.arange(n), t["labels"]] = 30.0
        stops[b, :n] = 30.0
        boxes[b, :n] = t["boxes"]
    return RSISOutput(masks, classes, stops, boxes)


def test_perfect_prediction_has_near_zero_loss():
    targets = [_target(3), _target(1), _target(0)]
    losses = RSISCriterion()(_perfect_output(targets, steps=5), targets)
    for name, value in losses.items():
        assert value.item() < 1e-4, name


def test_wrong_prediction_has_positive_loss_in_every_term():
    targets = [_target(2)]
    output = _perfect_output(targets, steps=4)
    wrong = RSISOutput(torch.full_like(output.mask_logits, -30.0), output.class_logits.roll(1, dims=-1),
                       -output.stop_logits, output.boxes.flip(1))
    losses = RSISCriterion()(wrong, targets)
    assert losses["mask"].item() > 0.9
    assert losses["cls"].item() > 10
    assert losses["stop"].item() > 10
    assert losses["box"].item() > 0.5  # the two boxes swapped: disjoint, so GIoU loss > 1 plus L1


def test_loss_is_permutation_invariant_over_steps():
    targets = [_target(3)]
    output = _perfect_output(targets, steps=4)
    shuffled = RSISOutput(output.mask_logits[:, [2, 0, 1, 3]], output.class_logits[:, [2, 0, 1, 3]],
                          output.stop_logits, output.boxes[:, [2, 0, 1, 3]])
    losses = RSISCriterion()(shuffled, targets)
    assert losses["mask"].item() < 1e-4 and losses["cls"].item() < 1e-4 and losses["box"].item() < 1e-4


def test_stop_targets_end_after_last_object():
    """Stop BCE covers T_g + 1 steps: steps after the first 'stop' step carry no loss."""
    targets = [_target(1)]
    output = _perfect_output(targets, steps=4)
    stops = output.stop_logits.clone()
    stops[0, 2:] = 30.0  # steps beyond T_g + 1 = 2 say "object": no stop loss there
    assert RSISCriterion()(output._replace(stop_logits=stops), targets)["stop"].item() < 1e-4


def test_gradient_flows_and_weights_apply():
    targets = [_target(2)]
    output = _perfect_output(targets, steps=3)
    mask_logits = (output.mask_logits * 0.01).requires_grad_()
    losses = RSISCriterion()(output._replace(mask_logits=mask_logits), targets)
    total = weighted_total(losses, {"mask": 2.0, "cls": 0.0, "stop": 0.0, "box": 0.0})
    total.backward()
    assert torch.isclose(total, 2 * losses["mask"])
    assert mask_logits.grad.abs().sum() > 0
