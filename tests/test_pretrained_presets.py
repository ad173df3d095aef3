"""Pretrained encoder weights (a local state_dict, torchvision's cache, a clear error without it)
and the paper's presets as params overlays."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torchvision
import yaml

from conftest import REPO
from rsis.config import ConfigError, load_section
from rsis.core.model import RSIS, initial_model, load_pretrained


def _cfg(tiny_model_cfg, pretrained):
    return dataclasses.replace(tiny_model_cfg, pretrained=pretrained)


def _pretrained(tiny_model_cfg, pretrained):
    return load_pretrained(RSIS(_cfg(tiny_model_cfg, pretrained), num_classes=3), pretrained)


def test_constructing_the_network_reads_no_weights(tiny_model_cfg):
    """RSIS(cfg) is plain construction: a config naming a missing file still builds (evaluation
    rebuilds trained networks from their checkpoint's config); load_pretrained reads the file."""
    model = RSIS(_cfg(tiny_model_cfg, "no/such/file.pt"), num_classes=3)
    with pytest.raises(FileNotFoundError, match="no/such/file.pt"):
        load_pretrained(model, "no/such/file.pt")


def test_state_dict_file_is_loaded_into_the_encoder(tmp_path, tiny_model_cfg):
    source = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pt"
    torch.save(source.state_dict(), path)
    model = _pretrained(tiny_model_cfg, str(path))
    assert torch.equal(model.encoder.layer4[1].conv2.weight, source.layer4[1].conv2.weight)
    assert torch.equal(model.encoder.stem[0].weight, source.conv1.weight)


def test_wrong_state_dict_is_refused(tmp_path, tiny_model_cfg):
    path = tmp_path / "resnet50.pt"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    with pytest.raises(Exception, match="resnet18"):
        _pretrained(tiny_model_cfg, str(path))


def test_imagenet_reads_the_torch_cache(tmp_path, monkeypatch, tiny_model_cfg):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    cached = tmp_path / "hub" / "checkpoints" / weights.url.rsplit("/", 1)[-1]
    with pytest.raises(FileNotFoundError) as missing:
        _pretrained(tiny_model_cfg, "imagenet")
    assert str(cached) in str(missing.value) and weights.url in str(missing.value)
    cached.parent.mkdir(parents=True)
    source = torchvision.models.resnet18(weights=None)  # stands in for the real file, which is not offline
    torch.save(source.state_dict(), cached)
    model = _pretrained(tiny_model_cfg, "imagenet")
    assert torch.equal(model.encoder.layer1[0].conv1.weight, source.layer1[0].conv1.weight)


def test_initial_model_loads_the_configured_weights(tmp_path, tiny_model_cfg):
    source = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pt"
    torch.save(source.state_dict(), path)
    model = initial_model(_cfg(tiny_model_cfg, str(path)), num_classes=3, seed=0)
    assert torch.equal(model.encoder.layer2[0].downsample[0].weight, source.layer2[0].downsample[0].weight)
    with pytest.raises(FileNotFoundError, match="no/such/file.pt"):
        initial_model(_cfg(tiny_model_cfg, "no/such/file.pt"), num_classes=3, seed=0)


@pytest.mark.parametrize("preset,size,steps,batch,curriculum", [
    ("pascal", (256, 256), 10, 28, False),
    ("cvppp", (400, 400), 20, 20, True),
    ("cityscapes", (256, 512), 20, 32, True),
])
def test_presets_overlay_params(tmp_path, preset, size, steps, batch, curriculum):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["preset"] = preset
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "presets").symlink_to(REPO / "presets")
    model, train = load_section("model", tmp_path / "params.yaml"), load_section("train", tmp_path / "params.yaml")
    assert model.input_size == size and model.max_steps == steps and model.backbone == "resnet101"
    assert train.batch_size == batch and train.schedule.curriculum == curriculum and train.augment.enabled
    assert params["train"]["augment"]["vflip"] > 0 and train.augment.vflip == 0  # the paper's augmentation has no vertical flip
    assert train.epochs == params["train"]["epochs"]  # keys the preset does not set come from params.yaml
    # evaluation as params.yaml but for the paper's thresholds, score and single reading (the default keeps the
    # low-objectness tail and more of each mask, weighs each score by its mask's maskness, reads flipped images too)
    paper_protocol = dataclasses.replace(load_section("evaluate", REPO / "params.yaml"), stop_threshold=0.5,
                                         mask_threshold=0.5, mask_score=False, test_flips=())
    assert load_section("evaluate", tmp_path / "params.yaml") == paper_protocol


def test_unknown_preset_lists_the_available_ones(tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["preset"] = "voc"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "presets").symlink_to(REPO / "presets")
    with pytest.raises(ConfigError, match=r"unknown preset 'voc'.*pascal"):
        load_section("train", tmp_path / "params.yaml")


def test_overrides_win_over_the_preset(tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["preset"] = "cvppp"
    params["overrides"] = {"model": {"pretrained": "none", "backbone": "resnet18"}, "train": {"epochs": 2}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "presets").symlink_to(REPO / "presets")
    model, train = load_section("model", tmp_path / "params.yaml"), load_section("train", tmp_path / "params.yaml")
    assert (model.pretrained, model.backbone, model.max_steps) == ("none", "resnet18", 20)  # T still the preset's
    assert train.epochs == 2 and train.schedule.curriculum
    params["overrides"] = {"modle": {"pretrained": "none"}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError, match="overrides must map params sections"):
        load_section("model", tmp_path / "params.yaml")
