"""The extensions beyond the paper (README "Deviations"): each is one parameter whose paper value
leaves the model and loss as the paper has them."""

import dataclasses
import re

import pytest
import torch
import torch.nn.functional as F
import torchvision

from rsis.config import ConfigError, ModelConfig, load_section
from rsis.core.criterion import RSISCriterion, embedding_loss, weighted_total
from rsis.core.matcher import StepMatcher
from rsis.core.model import RSIS, coordinates, gated_logits, mask_boxes, mask_pool, shape_grid
from rsis.training.engine import forward_with_loss
from rsis.training.fit import teacher_forcing
from conftest import REPO

PAPER = ModelConfig(backbone="resnet18", pretrained="none", hidden_dim=16, max_steps=4, skip_mode="concat",
                    image_size=32)
ALL = dataclasses.replace(PAPER, output_stride=16, coord=True, canvas=True, head_pool="max+mask")


def _bands(n: int, size: int = 32) -> torch.Tensor:
    """n disjoint horizontal bands, [n, size, size]."""
    masks = torch.zeros(n, size, size)
    for k in range(n):
        masks[k, k * size // n:(k + 1) * size // n] = 1.0
    return masks


def _target(masks: torch.Tensor, tops: bool = False) -> dict:
    """One image's targets; ``tops``: each box's top edge is its mask's (so top-down order = index order)."""
    n = masks.shape[0]
    boxes = torch.tensor([[0.1, 0.1, 0.9, 0.9]] * n).reshape(n, 4)
    if tops:
        boxes[:, 1] = torch.arange(n) / n
    return {"masks": masks, "labels": torch.ones(n, dtype=torch.long), "boxes": boxes}


def test_teacher_forced_canvas_is_union_of_matched_truth_without_gradient():
    masks = _bands(3)
    recorded = []

    class Recorder(StepMatcher):
        def __call__(self, step, mask_logits, own):
            canvas = super().__call__(step, mask_logits, own)
            recorded.append(canvas)
            return canvas

    torch.manual_seed(0)
    model = RSIS(ALL, num_classes=2)
    matcher = Recorder([_target(masks, tops=True)], torch.tensor([True]))
    model(torch.randn(1, 3, 32, 32), steps=4, feedback=matcher)
    for t, canvas in enumerate(recorded):
        expected = masks[: t + 1].amax(0) if t < 3 else masks.amax(0)  # step 3 has no target: unchanged
        assert torch.equal(canvas[0, 0], expected)
        assert not canvas.requires_grad
    assert [c.tolist() for c in matcher.matches()[0]] == [[0, 1, 2], [0, 1, 2]]


def test_unforced_canvas_is_the_models_own_running_max():
    matcher = StepMatcher([_target(_bands(2))], torch.tensor([False]))
    own = torch.rand(1, 1, 32, 32)
    assert torch.equal(matcher(0, torch.zeros(1, 32, 32), own), own)


def test_canvas_reaches_later_steps_only():
    torch.manual_seed(0)
    model = RSIS(dataclasses.replace(PAPER, canvas=True), num_classes=2).eval()
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        empty = model(images, steps=3, feedback=lambda t, logits, own: torch.zeros_like(own))
        full = model(images, steps=3, feedback=lambda t, logits, own: torch.ones_like(own))
    assert torch.equal(empty.mask_logits[:, 0], full.mask_logits[:, 0])
    assert not torch.allclose(empty.mask_logits[:, 1], full.mask_logits[:, 1])


def test_paper_values_build_the_paper_network():
    """With every switch at its paper value the decoder's inputs and heads have the paper's widths."""
    model = RSIS(PAPER, num_classes=3)
    assert model.cells[0].gates.in_channels == 16 + 16  # S_0 + hidden
    assert model.class_head.in_features == 16 + 8 + 4 + 2 + 1
    extended = RSIS(ALL, num_classes=3)
    assert extended.cells[0].gates.in_channels == 16 + 3 + 16  # + x, y, canvas
    assert extended.class_head.in_features == 31 + (16 + 16 + 8 + 4 + 2)


def test_output_stride_16_halves_the_deepest_stride_and_keeps_the_weights():
    paper, os16 = RSIS(PAPER, 2).encoder, RSIS(ALL, 2).encoder
    x = torch.randn(1, 3, 64, 64)
    assert paper(x)[0].shape[-1] == 2 and os16(x)[0].shape[-1] == 4
    assert paper.state_dict().keys() == os16.state_dict().keys()


def test_coordinates_span_minus_one_to_one():
    grid = coordinates(torch.zeros(2, 5, 3, 4))
    assert grid.shape == (2, 2, 3, 4)
    assert grid[0, 0, 0].tolist() == pytest.approx([-1, -1 / 3, 1 / 3, 1])  # x along the width
    assert grid[0, 1, :, 0].tolist() == pytest.approx([-1, 0, 1])  # y along the height


def test_mask_pool_averages_under_the_mask():
    features = torch.arange(16.0).view(1, 1, 4, 4)
    weights = torch.zeros(1, 1, 8, 8)
    weights[..., :2, :2] = 1.0  # the top-left feature cell only
    assert mask_pool(features, weights).item() == 0.0
    assert mask_pool(features, torch.ones(1, 1, 8, 8)).item() == pytest.approx(7.5)


def test_shape_grid_sees_an_object_whatever_its_place_and_size():
    def square(top: int, left: int, side: int, hole: int = 0) -> torch.Tensor:
        mask = torch.zeros(1, 1, 32, 32)
        mask[..., top:top + side, left:left + side] = 1.0
        if hole:  # a ring: the middle left out
            mask[..., top + hole:top + side - hole, left + hole:left + side - hole] = 0.0
        return mask

    assert mask_boxes(square(4, 6, 8)).tolist() == [[6.0, 4.0, 14.0, 12.0]]  # x0, y0, x1, y1: pixel edges
    assert mask_boxes(torch.zeros(1, 1, 32, 32)).tolist() == [[0.0, 0.0, 32.0, 32.0]]  # nothing: the image
    images = torch.zeros(1, 3, 32, 32)
    small, moved, large = (shape_grid(m, images, 4) for m in (square(4, 6, 8), square(18, 20, 8), square(8, 8, 16)))
    assert small.shape == (1, 4 * 16)
    torch.testing.assert_close(moved, small)
    torch.testing.assert_close(large, small)
    assert (shape_grid(square(8, 8, 16, hole=4), images, 4) - large).abs().max() > 0.5  # a ring is not a disc


def test_head_shape_must_not_be_negative():
    with pytest.raises(ConfigError, match="model.head_shape"):
        dataclasses.replace(PAPER, head_shape=-1)


def test_bce_term_is_zero_for_a_perfect_mask_and_skips_ignored_pixels():
    masks = _bands(2)
    targets = [_target(masks)]
    logits = ((masks * 2 - 1) * 30)[None]  # [1, 2, H, W]
    out = RSIS(PAPER, 2).eval()(torch.zeros(1, 3, 32, 32), steps=2)._replace(mask_logits=logits)
    assert RSISCriterion()(out, targets)["bce"].item() < 1e-6
    wrong = logits.clone()
    wrong[0, 0, :4] *= -1  # wrong rows...
    assert RSISCriterion()(out._replace(mask_logits=wrong), targets)["bce"].item() > 0.1
    targets[0]["ignore"] = torch.zeros(32, 32)
    targets[0]["ignore"][:4] = 1.0  # ...that are ignored
    assert RSISCriterion()(out._replace(mask_logits=wrong), targets)["bce"].item() < 1e-6


def test_paper_loss_weights_leave_bce_out():
    losses = {"mask": torch.tensor(0.5), "bce": torch.tensor(3.0)}
    assert weighted_total(losses, {"mask": 1.0, "bce": 0.0}).item() == 0.5


def test_criterion_uses_the_assignment_it_is_given():
    torch.manual_seed(0)
    model = RSIS(PAPER, num_classes=2).eval()
    images, targets = torch.randn(2, 3, 32, 32), [_target(_bands(3)), _target(_bands(2))]
    criterion = RSISCriterion()
    with torch.no_grad():
        out = model(images, steps=4)
        hungarian = criterion(out, targets)
        same = criterion(out, targets, matches=criterion.matcher(out.mask_logits, targets))
        top_down = forward_with_loss(model, criterion, images, targets, 4, "top-down")
    assert {k: v.item() for k, v in same.items()} == {k: v.item() for k, v in hungarian.items()}
    assert top_down["stop"].item() == pytest.approx(hungarian["stop"].item())  # same number of steps per image
    # the Hungarian assignment is optimal on the mask cost: no per-step assignment beats it
    assert hungarian["mask"].item() <= top_down["mask"].item() + 1e-6


def test_teacher_forcing_schedule():
    assert teacher_forcing(0, 0) == (0.0, 0.0)
    assert teacher_forcing(0, 2) == (1.0, 0.5)
    assert teacher_forcing(1, 2) == (0.5, 0.0)
    assert teacher_forcing(5, 2) == (0.0, 0.0)


def test_teacher_forcing_needs_a_step_matcher(tmp_path):
    text = re.sub(r"matching: \S+", "matching: hungarian", (REPO / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(ConfigError, match="teacher_forcing_epochs > 0 needs train.matching"):
        load_section("train", tmp_path / "params.yaml")


def test_paper_preset_sets_every_extension_to_the_paper_value(tmp_path):
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "paper.yaml").write_text((REPO / "presets" / "paper.yaml").read_text())
    text = (REPO / "params.yaml").read_text().replace("preset: none", "preset: paper")
    (tmp_path / "params.yaml").write_text(text)
    model, train = load_section("model", tmp_path / "params.yaml"), load_section("train", tmp_path / "params.yaml")
    defaults = {f.name: f.default for f in dataclasses.fields(ModelConfig) if f.default is not dataclasses.MISSING}
    assert {k: getattr(model, k) for k in defaults} == defaults
    assert (train.matching, train.teacher_forcing_epochs, train.grad_clip) == ("hungarian", 0.0, 0.0)
    assert train.channels_last is False  # a speed setting, not the paper's: NCHW is this model's faster CPU step
    weights = train.loss_weights
    assert (weights.cls, weights.bce, weights.aux_mask) == (0.1, 0.0, 0.0)
    protocol = load_section("evaluate", tmp_path / "params.yaml")
    assert (protocol.stop_threshold, protocol.mask_threshold, protocol.mask_score, protocol.test_flips) == (
        0.5, 0.5, False, ())  # the paper's protocol


def test_canvas_gate_zeroes_covered_pixels_and_keeps_the_rest():
    logits = torch.tensor([[[[2.0, -1.0], [0.5, 3.0]]]])
    canvas = torch.tensor([[[[1.0, 0.0], [0.5, 0.0]]]])
    probs = gated_logits(logits, canvas).sigmoid()
    expected = logits.sigmoid() * (1 - canvas)
    assert torch.allclose(probs, expected.clamp_min(1e-6), atol=1e-6)


def test_gated_step_cannot_claim_what_the_teacher_covered():
    torch.manual_seed(0)
    model = RSIS(dataclasses.replace(ALL, canvas_gate=True), num_classes=2)
    masks = _bands(2)
    out = model(torch.randn(1, 3, 32, 32), steps=3,
                feedback=StepMatcher([_target(masks, tops=True)], torch.tensor([True])))
    assert out.mask_logits[0, 1][masks[0].bool()].sigmoid().max() < 1e-5  # step 1 sees target 0 covered
    assert out.mask_logits[0, 2][masks.amax(0).bool()].sigmoid().max() < 1e-5


def test_own_canvas_is_the_binary_union_of_the_emitted_masks():
    torch.manual_seed(0)
    model = RSIS(dataclasses.replace(ALL, canvas_gate=False), num_classes=2).eval()
    torch.nn.init.zeros_(model.mask_head.bias)  # not the -2 prior: about half the pixels over 0.5
    seen = []

    def record(t, logits, own):
        seen.append(own.clone())
        return own

    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32), steps=3, feedback=record)
    for t, own in enumerate(seen):
        expected = (out.mask_logits[:, : t + 1] >= 0).any(1, keepdim=True).float()  # probability >= 0.5
        assert torch.equal(own, expected)
    assert 0 < float(seen[-1].mean()) < 1  # a real mix of covered and free pixels, not a trivial case


def test_image_skip_feeds_the_image_to_the_mask_head_only():
    torch.manual_seed(0)
    paper, skip = RSIS(PAPER, 2), RSIS(dataclasses.replace(PAPER, image_skip=True), 2)
    added = set(skip.state_dict()) - set(paper.state_dict())
    assert added == {"image_features.weight", "image_features.bias", "mask_features.weight"}
    assert skip.image_features.in_channels == 3 and skip.mask_head.kernel_size == (1, 1)
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        before = skip.eval()(images, steps=2)
        skip.image_features.weight.zero_()
        after = skip(images, steps=2)
    assert torch.equal(before.class_logits, after.class_logits)  # heads and decoder do not see it...
    assert not torch.allclose(before.mask_logits, after.mask_logits)  # ...the mask does


def test_aux_masks_give_one_coarse_mask_per_step_and_level_and_a_loss_that_can_fail():
    torch.manual_seed(0)
    model = RSIS(dataclasses.replace(PAPER, aux_masks=True), num_classes=2).eval()
    out = model(torch.zeros(1, 3, 32, 32), steps=2)
    assert [tuple(a.shape) for a in out.aux_mask_logits] == [(1, 2, 1, 1), (1, 2, 2, 2), (1, 2, 4, 4), (1, 2, 8, 8)]
    assert RSIS(PAPER, 2).eval()(torch.zeros(1, 3, 32, 32), steps=2).aux_mask_logits == ()
    masks = _bands(2)
    targets = [_target(masks)]
    right = tuple(F.interpolate(masks[None], size=a.shape[-2:], mode="area").clamp(1e-6, 1 - 1e-6).logit()
                  for a in out.aux_mask_logits)  # each level's probability = the target's covered share
    good = RSISCriterion()(out._replace(aux_mask_logits=right), targets, matches=[(torch.arange(2), torch.arange(2))])
    bad = RSISCriterion()(out._replace(aux_mask_logits=right), targets, matches=[(torch.arange(2), torch.tensor([1, 0]))])
    # a coarse cell half covered cannot score IoU 1 (the 1x1 level), hence not ~0
    assert good["aux_mask"].item() < 0.2 < 0.8 < bad["aux_mask"].item()


def test_top_down_matching_assigns_targets_by_their_top_edge():
    masks = _bands(3)
    target = {"masks": masks, "labels": torch.ones(3, dtype=torch.long),
              "boxes": torch.tensor([[0.1, 0.5, 0.3, 0.9], [0.6, 0.1, 0.9, 0.4], [0.0, 0.3, 0.2, 0.6]])}
    matcher = StepMatcher([target], torch.tensor([True]))
    own = torch.zeros(1, 1, 32, 32)
    canvases = [matcher(step, torch.zeros(1, 32, 32), own) for step in range(3)]
    assert matcher.matches()[0][1].tolist() == [1, 2, 0]  # top edges 0.1, 0.3, 0.5
    assert torch.equal(canvases[0][0, 0], masks[1])  # teacher-forced canvas follows the same order


def test_layer4_width_narrows_only_the_last_stage_and_refuses_pretrained_weights():
    paper = RSIS(PAPER, 2).encoder
    narrow = RSIS(dataclasses.replace(PAPER, layer4_width=128), 2).encoder
    assert narrow.channels == (128, 256, 128, 64, 64)
    assert [f.shape[1] for f in narrow(torch.randn(1, 3, 64, 64))] == list(narrow.channels)
    # stages 1-3 and the stem are torchvision's, tensor for tensor; only layer4 is narrower
    shapes = {k: v.shape for k, v in paper.state_dict().items()}
    for key, value in narrow.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        assert (value.shape == shapes[key]) == (not key.startswith("layer4.")), key
    assert narrow.layer4[0].conv1.weight.shape == (128, 256, 3, 3)
    full = sum(p.numel() for p in paper.parameters())  # no layer4_width: torchvision's network itself
    assert full == sum(p.numel() for n, p in torchvision.models.resnet18().named_parameters() if not n.startswith("fc."))
    with pytest.raises(ConfigError, match="layer4_width"):
        dataclasses.replace(PAPER, layer4_width=256, pretrained="imagenet")
    with pytest.raises(ConfigError, match="layer4_width"):
        dataclasses.replace(PAPER, layer4_width=0)


def test_overlap_head_targets_train_the_class_of_the_object_the_mask_covers():
    masks = _bands(2)
    target = {"masks": masks, "labels": torch.tensor([1, 2]), "boxes": torch.tensor([[0, 0, 1, 0.5], [0, 0.5, 1, 1.0]])}
    out = RSIS(PAPER, 3).eval()(torch.zeros(1, 3, 32, 32), steps=1)
    # step 0 emits band 1 and says class 2, but an imposed order matched it to band 0 (class 1)
    out = out._replace(mask_logits=((masks[1] * 2 - 1) * 30)[None, None], class_logits=torch.tensor([[[0.0, 0.0, 9.0]]]),
                       boxes=torch.tensor([[[0, 0.5, 1, 1.0]]]))
    matches = [(torch.tensor([0]), torch.tensor([0]))]
    matched = RSISCriterion(head_targets="matched")(out, [target], matches=matches)
    overlap = RSISCriterion(head_targets="overlap")(out, [target], matches=matches)
    assert overlap["cls"].item() < 0.01 < 5 < matched["cls"].item()
    assert overlap["box"].item() < 1e-4 < matched["box"].item()
    assert overlap["mask"].item() == matched["mask"].item()  # the mask still trains towards the matched target


def test_embedding_loss_is_low_for_separated_instances_and_high_for_one_blob():
    masks = _bands(3)
    target = _target(masks)
    separated = torch.einsum("nhw,ne->ehw", masks, torch.eye(3) * 4.0)[None]  # instance k at 4 * e_k
    assert embedding_loss(separated, [target]).item() < 0.02
    blob = torch.zeros(1, 3, 32, 32)  # every pixel at the same point: the means are not pushed apart
    assert embedding_loss(blob, [target]).item() == pytest.approx((2 * 1.5) ** 2, rel=1e-3)


def test_embedding_loss_of_a_batch_is_the_mean_of_its_images_losses_with_finite_gradients():
    """Images with 0, 1 and several instances in one batch (padded inside the loss): the batch's loss
    is the mean over the images that have instances of each image's own loss."""
    torch.manual_seed(0)
    targets = [_target(_bands(n)) for n in (3, 0, 1, 2)]
    embedding = torch.randn(4, 5, 32, 32, requires_grad=True)
    loss = embedding_loss(embedding, targets)
    alone = [embedding_loss(embedding[b:b + 1], [t]) for b, t in enumerate(targets) if len(t["masks"])]
    assert loss.item() == pytest.approx(torch.stack(alone).mean().item(), rel=1e-5)
    loss.backward()
    assert torch.isfinite(embedding.grad).all() and embedding.grad[1].abs().sum() == 0  # no instances: no gradient
    assert embedding_loss(embedding, [_target(_bands(0))] * 4).item() == 0.0


def test_seeded_mask_follows_the_embedding_of_its_most_confident_pixel():
    torch.manual_seed(0)
    cfg = dataclasses.replace(PAPER, instance_embedding=True, image_skip=True)
    model = RSIS(cfg, 2).eval()
    masks = _bands(2)
    with torch.no_grad():
        base = model(torch.zeros(1, 3, 32, 32), steps=1)
        # replace the embedding by one that separates the two bands, and boost the seed term
        model.embedding_head[-1].weight.zero_()
        model.embedding_head[-1].bias.zero_()
        model.seed_scale.fill_(5.0)
        separated = torch.einsum("nhw,ne->ehw", masks, torch.eye(2, 8) * 4.0)[None]
        model.embedding_head.register_forward_hook(lambda module, args, out: separated)
        model.mask_head.bias.fill_(0.0)
        out = model(torch.zeros(1, 3, 32, 32), steps=1)
    assert base.embedding.shape == (1, 8, 32, 32)
    seed = out.mask_logits[0, 0].flatten().argmax()
    band = int(masks[:, seed // 32, seed % 32].argmax())  # the band the seed lies in
    assert out.mask_logits[0, 0][masks[band].bool()].min() > 0 > out.mask_logits[0, 0][masks[1 - band].bool()].max()


@pytest.mark.parametrize("clip", [0.0, 0.05])
def test_grad_clip_bounds_the_global_norm_of_the_update(clip):
    """train.grad_clip: with SGD at rate 1 a step moves the weights by the gradient, so the norm of
    the move is the clipped global gradient norm (unclipped, it is far larger here)."""
    from rsis.training.engine import training_step

    torch.manual_seed(0)
    model = RSIS(ALL, num_classes=2).train()
    images, targets = torch.randn(2, 3, 32, 32), [_target(_bands(3)), _target(_bands(2))]
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    weights = {"mask": 1.0, "cls": 1.0, "stop": 0.5, "box": 0.5}
    training_step(model, RSISCriterion(), optimizer, images, targets, weights, 4, "hungarian", grad_clip=clip)
    moved = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.detach() - b)
                                                  for p, b in zip(model.parameters(), before)]))
    if clip:
        assert moved.item() == pytest.approx(clip, rel=1e-3)
    else:
        assert moved.item() > 1.0


def test_inference_seed_term_replaces_the_trained_scale_and_radius():
    """evaluate.seed_scale / seed_radius: at inference the seed term uses them instead of the trained
    values. With a weak trained scale a mask the decoder spreads over two instances the embedding
    separates stays whole; with the evaluate stage's values it is cut to the seed's instance."""
    from rsis.config import EvaluateConfig
    from rsis.evaluation.inference import infer

    torch.manual_seed(0)
    model = RSIS(dataclasses.replace(PAPER, instance_embedding=True, image_skip=True), 2).eval()
    masks = _bands(2)
    separated = torch.einsum("nhw,ne->ehw", masks, torch.eye(2, 8) * 2.0)[None]  # squared distance 8 apart
    images = torch.zeros(1, 3, 32, 32)
    with torch.no_grad():
        model.embedding_head.register_forward_hook(lambda module, args, out: separated)
        model.mask_head.weight.zero_()
        model.mask_head.bias.fill_(3.0)  # the decoder claims every pixel
        model.seed_scale.fill_(-2.0)  # trained scale softplus(-2) = 0.13
        trained = model(images, steps=1).mask_logits[0, 0]
        same = model(images, steps=1, seed_scale=F.softplus(model.seed_scale).item(),
                     seed_radius=model.seed_radius.item()).mask_logits[0, 0]
        cfg = EvaluateConfig(batch_size=1, stop_threshold=0.5, mask_threshold=0.5, min_area_fraction=0.0,
                             seed_scale=2.0, seed_radius=2.25)
        cut = infer(model, images, cfg).mask_logits[0, 0]
    torch.testing.assert_close(same, trained)
    assert trained.min() > 0  # both bands kept: one mask over two instances
    seed = int(cut.flatten().argmax())
    band = int(masks[:, seed // 32, seed % 32].argmax())
    assert cut[masks[band].bool()].min() > 0 > cut[masks[1 - band].bool()].max()


@pytest.mark.parametrize("key", ["seed_scale", "seed_radius"])
def test_inference_seed_term_must_be_positive_or_null(key):
    from rsis.config import EvaluateConfig

    base = {"batch_size": 1, "stop_threshold": 0.5, "mask_threshold": 0.5, "min_area_fraction": 0.0}
    assert getattr(EvaluateConfig(**base, **{key: None}), key) is None
    with pytest.raises(ConfigError, match=f"evaluate.{key} must be > 0"):
        EvaluateConfig(**base, **{key: 0.0})


@pytest.mark.parametrize("key, value", [("model.output_stride", "8"), ("model.head_pool", "max+encoder"),
                                        ("train.matching", "greedy"), ("train.matching", "fixed")])
def test_removed_options_are_refused_by_name(tmp_path, key, value):
    """Options measured without gain and removed (docs/research-log.md) fail with the key, not silently."""
    section, name = key.split(".")
    text = re.sub(rf"(\n  {name}: )\S+", rf"\g<1>{value}", (REPO / "params.yaml").read_text(), count=1)
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_section(section, tmp_path / "params.yaml")


EVERY = dataclasses.replace(ALL, canvas_gate=True, image_skip=True, instance_embedding=True, aux_masks=True,
                            head_shape=3)


def test_a_shorter_unroll_per_image_gives_the_full_unrolls_first_steps():
    torch.manual_seed(0)
    model = RSIS(EVERY, num_classes=3).eval()
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        full = model(images, steps=4)
        short = model(images, steps=4, lengths=[4, 2, 1])
    for name in ("mask_logits", "class_logits", "stop_logits", "boxes"):
        a, b = getattr(full, name), getattr(short, name)
        assert a.shape == b.shape
        for image, length in enumerate([4, 2, 1]):
            torch.testing.assert_close(b[image, :length], a[image, :length], rtol=1e-5, atol=1e-5)
            assert not b[image, length:].any()  # zeros where the image had stopped
    for a, b in zip(full.aux_mask_logits, short.aux_mask_logits):
        torch.testing.assert_close(b[1, :2], a[1, :2], rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # lengths all below steps: the steps no image needs are zeros
        shorter = model(images, steps=4, lengths=[2, 2, 1])
    assert shorter.mask_logits.shape == full.mask_logits.shape and not shorter.mask_logits[:, 2:].any()
    torch.testing.assert_close(shorter.stop_logits[:2, :2], full.stop_logits[:2, :2], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="non-increasing"):
        model(images, steps=4, lengths=[1, 2, 1])


def test_the_heads_of_a_step_read_that_step_and_that_image_only():
    """The heads run once after the unroll over every (step, image) pair: each row must land on its own
    step and image, so a step's outputs do not change with how many steps follow it or which images
    share its batch."""
    torch.manual_seed(0)
    model = RSIS(EVERY, num_classes=3).eval()
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        full = model(images, steps=4)
        first_two = model(images, steps=2)
        alone = model(images[2:], steps=4)
    for name in ("class_logits", "stop_logits", "boxes"):
        a = getattr(full, name)
        torch.testing.assert_close(getattr(first_two, name), a[:, :2], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(getattr(alone, name)[0], a[2], rtol=1e-5, atol=1e-5)
        assert not torch.equal(a[:, 0], a[:, 1])  # the steps differ, so a mix-up would show
    for a, b, c in zip(full.aux_mask_logits, first_two.aux_mask_logits, alone.aux_mask_logits):
        torch.testing.assert_close(b, a[:, :2], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(c[0], a[2], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("matching,forced", [("hungarian", False), ("top-down", False), ("top-down", True)])
def test_training_losses_and_gradients_are_those_of_the_full_unroll(matching, forced):
    """forward_with_loss unrolls each image T_g + 1 steps (the batch reordered, most objects first):
    the losses and every gradient are what the whole batch unrolled to its longest image gives."""
    torch.manual_seed(0)
    model = RSIS(EVERY, num_classes=2)  # training mode: the encoder's BatchNorm uses batch statistics
    images = torch.randn(4, 3, 32, 32)
    targets = [_target(_bands(n), tops=True) for n in (1, 3, 0, 2)]
    criterion = RSISCriterion(head_targets="overlap")

    def gradients(losses):
        model.zero_grad()
        weighted_total(losses, dict.fromkeys(losses, 1.0)).backward()
        return [p.grad.clone() for p in model.parameters()]

    matcher = StepMatcher(targets, torch.full((4,), forced)) if matching == "top-down" else None
    out = model(images, steps=4, feedback=matcher)
    full = criterion(out, targets, matches=None if matcher is None else matcher.matches())
    full_grads = gradients(full)
    short = forward_with_loss(model, criterion, images, targets, 4, matching, float(forced))
    for key in full:
        torch.testing.assert_close(short[key], full[key], rtol=1e-4, atol=1e-6)
    for a, b in zip(gradients(short), full_grads):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-6)
