import pytest
import torch

from rsis.config import ModelConfig
from rsis.core.model import RSIS


@pytest.mark.parametrize("skip_mode", ["concat", "sum", "mul", "none"])
@pytest.mark.parametrize("steps", [1, 3, 7])
def test_output_shapes(skip_mode, steps):
    cfg = ModelConfig(backbone="resnet18", pretrained="none", hidden_dim=16, max_steps=steps, skip_mode=skip_mode,
                      image_size=64)
    model = RSIS(cfg, num_classes=5).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    assert out.mask_logits.shape == (2, steps, 64, 64)
    assert out.class_logits.shape == (2, steps, 5)
    assert out.stop_logits.shape == (2, steps)


def test_steps_override_and_non_square_input():
    cfg = ModelConfig(backbone="resnet18", pretrained="none", hidden_dim=32, max_steps=4, skip_mode="concat",
                      image_size=64)
    model = RSIS(cfg, num_classes=3).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 96), steps=2)
    assert out.mask_logits.shape == (1, 2, 64, 96)


def test_steps_are_recurrent_not_copies():
    """Hidden state carries over: step outputs differ even though the input is the same."""
    cfg = ModelConfig(backbone="resnet18", pretrained="none", hidden_dim=16, max_steps=3, skip_mode="concat",
                      image_size=32)
    torch.manual_seed(0)
    model = RSIS(cfg, num_classes=3).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 32, 32))
    assert not torch.allclose(out.mask_logits[0, 0], out.mask_logits[0, 1])


@pytest.mark.parametrize("backbone,channels", [("resnet34", 512), ("resnet50", 2048)])
def test_deeper_backbones(backbone, channels):
    cfg = ModelConfig(backbone=backbone, pretrained="none", hidden_dim=16, max_steps=2, skip_mode="sum",
                      image_size=32)
    model = RSIS(cfg, num_classes=3).eval()
    assert model.encoder.channels[0] == channels
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).mask_logits.shape == (1, 2, 32, 32)


def test_decoder_parameters_exclude_encoder():
    cfg = ModelConfig(backbone="resnet18", pretrained="none", hidden_dim=16, max_steps=2, skip_mode="concat",
                      image_size=32)
    model = RSIS(cfg, num_classes=3)
    n_all = sum(p.numel() for p in model.parameters())
    n_enc = sum(p.numel() for p in model.encoder.parameters())
    assert sum(p.numel() for p in model.decoder_parameters()) == n_all - n_enc
