"""The real training function on tiny data: checkpoints, history, and CPU determinism."""

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from rsis.datasets.convert import convert
from rsis.evaluation.run import evaluate
from rsis.training.fit import HISTORY_FILE, fit


def test_fit_writes_checkpoints_and_is_deterministic(data_cfg, tiny_paths, tiny_model_cfg, tiny_train_cfg, eval_cfg):
    convert(data_cfg, tiny_paths.data)
    first = fit(tiny_paths, tiny_model_cfg, tiny_train_cfg)
    assert len(first.history) == tiny_train_cfg.epochs
    best = torch.load(f"{tiny_paths.models}/best.pt", weights_only=True)
    assert best["epoch"] == first.best_epoch and best["num_classes"] == 5
    assert best["train_config"]["seed"] == tiny_train_cfg.seed
    saved = pd.read_csv(f"{tiny_paths.metrics}/{HISTORY_FILE}")
    assert list(saved["epoch"]) == list(range(tiny_train_cfg.epochs))
    metrics = evaluate(tiny_paths, eval_cfg, "shapes", device="cpu")
    assert "cvppp" not in metrics  # leaf metrics only for data.dataset leaves and cvppp
    assert len(list(Path(tiny_paths.evaluation, "instance_maps").glob("test_*_label.png"))) == data_cfg.shapes.test

    again_paths = dataclasses.replace(tiny_paths, models=tiny_paths.models + "2", metrics=tiny_paths.metrics + "2",
                                      predictions=tiny_paths.predictions + "2",
                                      evaluation=tiny_paths.evaluation + "2")
    second = fit(again_paths, tiny_model_cfg, tiny_train_cfg)
    losses = ["train_total", "val_total", "val_mask", "val_cls", "val_stop"]
    pd.testing.assert_frame_equal(first.history[losses], second.history[losses])
    assert evaluate(again_paths, eval_cfg, "shapes", device="cpu")["segm"] == metrics["segm"]


def test_other_seed_changes_the_run(data_cfg, tiny_paths, tiny_model_cfg, tiny_train_cfg):
    convert(data_cfg, tiny_paths.data)
    cfg = dataclasses.replace(tiny_train_cfg, epochs=1)
    a = fit(tiny_paths, tiny_model_cfg, cfg)
    b = fit(tiny_paths, tiny_model_cfg, dataclasses.replace(cfg, seed=1))
    assert a.history["train_total"][0] != b.history["train_total"][0]


def test_leaf_dataset_gets_cvppp_metrics_and_label_maps(data_cfg, tiny_paths, tiny_model_cfg, tiny_train_cfg,
                                                        eval_cfg):
    convert(dataclasses.replace(data_cfg, dataset="leaves"), tiny_paths.data)
    fit(tiny_paths, tiny_model_cfg, dataclasses.replace(tiny_train_cfg, epochs=1, batch_size=2))
    # the metrics follow data.dataset, not the category names: your own COCO data with a "leaf" class
    # gets COCO AP only
    assert "cvppp" not in evaluate(tiny_paths, eval_cfg, "coco", device="cpu")
    metrics = evaluate(tiny_paths, dataclasses.replace(eval_cfg, stop_threshold=0.0), "leaves", device="cpu")
    assert set(metrics["cvppp"]) == {f"{k}_{s}" for k in ("SBD", "DiC", "absDiC", "FBD") for s in ("mean", "std")}
    assert 0.0 <= metrics["cvppp"]["SBD_mean"] <= 1.0
    maps = sorted(Path(tiny_paths.evaluation, "instance_maps").glob("*_label.png"))
    assert [p.name for p in maps] == [f"test_{i:06d}_label.png" for i in range(3)]
    with Image.open(maps[0]) as im:
        assert im.size == (64, 64) and np.asarray(im).max() <= tiny_model_cfg.max_steps


def test_the_slowdown_monitor_hints_at_contention_only_when_steps_slow_down():
    from rsis.training.engine import SlowdownMonitor
    monitor = SlowdownMonitor(window=5, factor=3.0)
    assert [monitor.step(0.3) for _ in range(10)] == [None] * 10  # steady
    hints = [monitor.step(1.2) for _ in range(5)]
    assert hints[:4] == [None] * 4 and "4.0x slower" in hints[4] and "CPU cores" in hints[4]
    assert [monitor.step(0.5) for _ in range(5)][-1] is None  # 1.7x: within what load varies


def test_channels_last_on_cpu_trains_the_same_function(data_cfg, tiny_paths, tiny_model_cfg):
    """train.channels_last (the default) on a CPU: weights and inputs in the NHWC layout, and one
    training step gives the NCHW step's loss and gradients up to float rounding."""
    from rsis.core.criterion import RSISCriterion, weighted_total
    from rsis.core.model import RSIS
    from rsis.datasets.dataset import InstanceDataset, collate
    from rsis.training.engine import forward_with_loss, place_model, prepare_images

    convert(data_cfg, tiny_paths.data)
    dataset = InstanceDataset(tiny_paths.data, "train", tiny_model_cfg.input_size, 6)
    images, targets = collate([dataset[i] for i in range(4)])
    cpu = torch.device("cpu")
    results = []
    for channels_last in (False, True):
        torch.manual_seed(0)
        model = place_model(RSIS(tiny_model_cfg, dataset.num_classes), cpu, channels_last)
        conv = next(p for p in model.parameters() if p.dim() == 4)
        assert conv.is_contiguous(memory_format=torch.channels_last) == channels_last
        losses = forward_with_loss(model, RSISCriterion(), prepare_images(images, cpu, channels_last), targets, 6)
        total = weighted_total(losses, {"mask": 1.0, "cls": 1.0, "stop": 0.5, "box": 0.5})
        total.backward()
        results.append((total.item(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (nchw, nchw_grads), (nhwc, nhwc_grads) = results
    assert abs(nhwc - nchw) < 1e-4 * abs(nchw)
    assert len(nchw_grads) == len(nhwc_grads)
    for a, b in zip(nchw_grads, nhwc_grads):
        assert (a - b).norm() <= 1e-3 * a.norm() + 1e-7, (a - b).abs().max()
