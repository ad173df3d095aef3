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


def _reference_losses(outputs: RSISOutput, targets: list[dict], matches, head_targets: str) -> dict[str, float]:
    """The loss terms' definition written image by image, pair by pair (the criterion computes them
    for the whole batch at once)."""
    import torch.nn.functional as F
    from torchvision.ops import generalized_box_iou_loss

    def iou(p, g, v):  # soft IoU of one prediction with one target
        if v is not None:
            p, g = p * v, g * v
        inter = (p * g).sum()
        return inter / (p.sum() + g.sum() - inter).clamp_min(1e-6)

    def area(x, like):
        return F.interpolate(x[None, None], size=like.shape[-2:], mode="area")[0, 0]

    terms = {k: [] for k in ("mask", "bce", "aux_mask", "box", "cls_logits", "cls_targets", "stop_logits", "stop_targets")}
    steps = outputs.mask_logits.shape[1]
    for b, (target, (rows, cols)) in enumerate(zip(targets, matches)):
        valid = 1.0 - target["ignore"] if "ignore" in target else None
        for step, k in zip(rows.tolist(), cols.tolist()):
            logit, gt = outputs.mask_logits[b, step], target["masks"][k].float()
            p = logit.sigmoid()
            terms["mask"].append(1 - iou(p, gt, valid))
            bce = F.binary_cross_entropy_with_logits(logit, gt, reduction="none")
            terms["bce"].append((bce * valid).mean() if valid is not None else bce.mean())
            if outputs.aux_mask_logits:
                terms["aux_mask"].append(torch.stack([
                    1 - iou(level[b, step].sigmoid(), area(gt, level), None if valid is None else area(valid, level))
                    for level in outputs.aux_mask_logits]).mean())
            head = k
            if head_targets == "overlap":
                head = int(torch.stack([iou(p, m.float(), valid) for m in target["masks"]]).argmax())
            terms["cls_logits"].append(outputs.class_logits[b, step])
            terms["cls_targets"].append(target["labels"][head])
            if "boxes" in target:
                pred, box = outputs.boxes[b, step][None], target["boxes"][head][None]
                terms["box"].append(((pred - box).abs().sum() + generalized_box_iou_loss(pred, box).sum()))
        for step in range(min(len(rows) + 1, steps)):
            terms["stop_logits"].append(outputs.stop_logits[b, step])
            terms["stop_targets"].append(float(step < len(rows)))
    mean = lambda xs: float(torch.stack(xs).mean()) if xs else 0.0  # noqa: E731
    return {"mask": mean(terms["mask"]), "bce": mean(terms["bce"]), "aux_mask": mean(terms["aux_mask"]),
            "box": mean(terms["box"]),
            "cls": float(F.cross_entropy(torch.stack(terms["cls_logits"]), torch.stack(terms["cls_targets"])))
            if terms["cls_logits"] else 0.0,
            "stop": float(F.binary_cross_entropy_with_logits(torch.stack(terms["stop_logits"]),
                                                             torch.tensor(terms["stop_targets"])))}


def _random_batch(seed: int, ignore: str, boxes: str):
    """Random outputs (with aux masks) and targets of 0-4 instances; ``ignore`` / ``boxes``: all | some | none."""
    g = torch.Generator().manual_seed(seed)
    size, steps, batch = 12, 5, 6
    targets = []
    for b in range(batch):
        n = [0, 1, 3, 4, 2, 5][b]
        masks = (torch.rand(n, size, size, generator=g) > 0.6).float()
        target = {"masks": masks, "labels": torch.randint(1, 4, (n,), generator=g)}
        if ignore == "all" or (ignore == "some" and b % 2):
            target["ignore"] = (torch.rand(size, size, generator=g) > 0.8).float()
        if boxes == "all" or (boxes == "some" and b % 2 == 0):
            corners = torch.rand(n, 2, 2, generator=g).sort(1).values
            target["boxes"] = corners.transpose(1, 2).reshape(n, 4)[:, [0, 2, 1, 3]]
        targets.append(target)
    outputs = RSISOutput(torch.randn(batch, steps, size, size, generator=g), torch.randn(batch, steps, 4, generator=g),
                         torch.randn(batch, steps, generator=g), torch.rand(batch, steps, 4, generator=g).sort(-1).values,
                         (torch.randn(batch, steps, 3, 3, generator=g), torch.randn(batch, steps, 6, 6, generator=g)))
    return outputs, targets


def test_batched_terms_equal_the_image_by_image_definition():
    from rsis.core.matcher import StepMatcher

    for seed, ignore, boxes in [(0, "none", "all"), (1, "all", "all"), (2, "some", "some"), (3, "some", "none")]:
        outputs, targets = _random_batch(seed, ignore, boxes)
        for head_targets in ("matched", "overlap"):
            criterion = RSISCriterion(head_targets=head_targets)
            hungarian = criterion.matcher(outputs.mask_logits, targets)
            order = StepMatcher([t if "boxes" in t else {**t, "boxes": torch.rand(len(t["masks"]), 4)} for t in targets],
                                torch.zeros(len(targets), dtype=torch.bool))
            for step in range(3):  # top-down, 3 steps seen of 5: fewer pairs than targets in some images
                order(step, outputs.mask_logits[:, step], torch.zeros(len(targets), 1, 12, 12))
            for matches in (hungarian, order.matches()):
                got = criterion(outputs, targets, matches=matches)
                want = _reference_losses(outputs, targets, matches, head_targets)
                for name, value in want.items():
                    assert abs(got[name].item() - value) < 1e-5, (seed, ignore, boxes, head_targets, name)
