"""Encoder activations vs the predicted order (Table 7): pooling, planted orders, the rebuilt
initial network, and which images the qualitative figures pick."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rsis.analysis.activations import (BLOCKS, ImageActivations, activation_maps, activation_taus, object_activations,
                                      summary_rows)
from rsis.analysis.run import select_images
from rsis.config import ModelConfig
from rsis.core.model import initial_model


class BrightnessEncoder(nn.Module):
    """Five 'blocks' that see the image's brightness at strides 32..2, as a ResNet's f0..f4 do."""

    def forward(self, x):
        grey = x.mean(dim=1, keepdim=True)
        return [F.avg_pool2d(grey, s).repeat(1, c, 1, 1) for s, c in ((32, 8), (16, 4), (8, 4), (4, 2), (2, 2))]


class FakeModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = BrightnessEncoder()


def _planted_scene(brightness: list[float], side: int = 128) -> tuple[torch.Tensor, list[np.ndarray]]:
    """Square objects of the given brightness on black, left to right, 32 px apart."""
    image = torch.zeros(1, 3, side, side)
    masks = []
    for k, value in enumerate(brightness):
        mask = np.zeros((side, side), dtype=bool)
        mask[48:80, 32 * k: 32 * k + 32] = True
        image[0, :, torch.from_numpy(mask)] = value
        masks.append(mask)
    return image, masks


def test_pooling_is_the_mean_of_each_blocks_map_over_the_mask():
    maps = np.stack([np.arange(16, dtype=float).reshape(4, 4) * (b + 1) for b in range(5)])  # [5, 4, 4]
    mask = np.zeros((4, 4), dtype=bool)
    mask[0, :2] = True  # values 0 and 1
    other = np.zeros((4, 4), dtype=bool)
    other[3, 3] = True  # value 15
    acts = object_activations(maps, [mask, other])
    assert acts.shape == (2, 5)
    np.testing.assert_allclose(acts[0], [0.5 * (b + 1) for b in range(5)])
    np.testing.assert_allclose(acts[1], [15.0 * (b + 1) for b in range(5)])
    with pytest.raises(ValueError, match="does not match"):
        object_activations(maps, [np.zeros((3, 3), dtype=bool)])


@pytest.mark.parametrize("planted, expected", [([1.0, 0.75, 0.5, 0.25], 1.0), ([0.25, 0.5, 0.75, 1.0], -1.0)])
def test_a_planted_activation_order_is_recovered_in_every_block(planted, expected):
    image, masks = _planted_scene(planted)
    maps = activation_maps(FakeModel(), image)[0].numpy()  # [5, 128, 128]
    acts = object_activations(maps, masks)
    assert np.all(np.diff(acts, axis=0) < 0) == (expected == 1.0)  # strictly brighter first, in every block
    assert activation_taus(acts) == pytest.approx([expected] * len(BLOCKS))


def test_a_partly_shuffled_order_gives_the_hand_computed_tau():
    # brightness ranks in predicted order: 2, 0, 3, 1 -> 3 concordant and 3 discordant pairs -> tau 0;
    # the bilinear upsampling blurs neighbours together but keeps the order of the objects' means
    image, masks = _planted_scene([0.5, 1.0, 0.25, 0.75])
    acts = object_activations(activation_maps(FakeModel(), image)[0].numpy(), masks)
    assert activation_taus(acts) == pytest.approx([0.0] * len(BLOCKS))


def test_summary_rows_average_over_images_with_two_or_more_objects():
    up = np.array([[3.0] * 5, [2.0] * 5, [1.0] * 5])
    images = [ImageActivations(1, {"before": up, "after": up}),
              ImageActivations(2, {"before": up[::-1], "after": up}),
              ImageActivations(3, {"before": up[:1], "after": up[:1]})]  # one object: not counted
    rows = {(r["block"], r["model"]): r for r in summary_rows(images)}
    assert rows[("f0", "before")]["tau_mean"] == pytest.approx(0.0)
    assert rows[("f0", "before")]["tau_std"] == pytest.approx(1.0)
    assert rows[("f4", "after")]["tau_mean"] == pytest.approx(1.0)
    assert rows[("f0", "after")]["images"] == 2


def test_the_initial_network_is_rebuilt_exactly_from_config_and_seed():
    cfg = ModelConfig(backbone="resnet18", pretrained="none", hidden_dim=16, max_steps=3, skip_mode="concat",
                      image_size=32)
    a, b, c = initial_model(cfg, 3, seed=5), initial_model(cfg, 3, seed=5), initial_model(cfg, 3, seed=6)
    for (name, pa), pb, pc in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.encoder.stem[0].weight, c.encoder.stem[0].weight)


def test_selected_images_are_the_best_per_strategy_and_a_seeded_random_set():
    rows = [{"objects": n, "tau_r2l": r, "tau_b2t": b, "tau_l2s": l}
            for n, r, b, l in [(4, 1.0, -1.0, 0.0), (3, 0.5, 1.0, 0.2), (2, 1.0, 1.0, 1.0),  # 2 objects: too few
                               (5, -0.2, 0.9, 1.0), (1, None, None, None), (6, 0.9, 0.1, 0.8)]]
    chosen = select_images(rows, count=2, seed=0)
    assert chosen["r2l"] == [0, 5]
    assert chosen["b2t"] == [1, 3]
    assert chosen["l2s"] == [2]  # 3 and 5 are already in the r2l / b2t figures: the one image left
    assert not set(chosen["r2l"]) & set(chosen["b2t"]) and not set(chosen["l2s"]) & set(chosen["r2l"] + chosen["b2t"])
    assert chosen["random"] == select_images(rows, count=2, seed=0)["random"]
    assert len(set(chosen["random"])) == 2
    assert select_images(rows, count=5, seed=0)["r2l"][:3] == [0, 2, 5]  # too few rich images: all with a tau


def test_step_markers_of_nearby_centres_are_spread_apart():
    from rsis.analysis.figures import _spread
    placed = _spread([(10.0, 10.0), (11.0, 10.5), (40.0, 40.0)], gap=4.0)
    assert placed[0] == (10.0, 10.0) and placed[2] == (40.0, 40.0)
    assert ((placed[1][0] - 10) ** 2 + (placed[1][1] - 10) ** 2) ** 0.5 >= 4.0
