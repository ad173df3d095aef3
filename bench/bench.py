"""Training and inference throughput of RSIS, and where a training step spends its time.

    python bench/bench.py [--device cpu|cuda|all] [--out bench]

Configs: the default (params.yaml `model`/`train`) and the paper's Pascal preset (ResNet-101,
256x256, D=128, T=10, random init). Inputs: shapes images generated into a temporary folder.
Writes <out>/results.json and <out>/RESULTS.md with the machine the numbers came from.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from rsis.config import DataConfig, load_section, read_params
from rsis.criterion import RSISCriterion, weighted_total
from rsis.datasets.convert import convert
from rsis.datasets.dataset import InstanceDataset, collate
from rsis.engine import _float, autocast, prepare_images, steps_for, to_device
from rsis.model import RSIS
from rsis import matcher as matcher_module

ROOT = Path(__file__).resolve().parents[1]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class _TimedMatcher(matcher_module.HungarianMatcher):
    seconds = 0.0

    def forward(self, mask_logits, targets):
        start = time.perf_counter()
        result = super().forward(mask_logits, targets)
        _TimedMatcher.seconds += time.perf_counter() - start
        return result


def bench_config(name: str, model_cfg, train_cfg, data_root: Path, device: torch.device, batch: int,
                 train_steps: int, infer_steps: int) -> dict:
    torch.manual_seed(0)
    dataset = InstanceDataset(data_root, "train", model_cfg.input_size, train_cfg.max_objects)
    loader = DataLoader(dataset, batch_size=batch, shuffle=False, collate_fn=collate, drop_last=True)
    batches = [next(iter(loader))] * (train_steps + 1)
    model = RSIS(dataclasses.replace(model_cfg, pretrained="none"), dataset.num_classes).to(device)
    channels_last = train_cfg.channels_last and device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    amp = train_cfg.amp
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    criterion = RSISCriterion(_TimedMatcher())
    weights = dataclasses.asdict(train_cfg.loss_weights)

    def step(images, targets, timings):
        images, targets = prepare_images(images, device, channels_last), to_device(targets, device)
        _sync(device)
        t0 = time.perf_counter()
        with autocast(device, amp):
            outputs = model(images, steps=steps_for(targets, model.max_steps))
        _sync(device)
        t1 = time.perf_counter()
        losses = criterion(_float(outputs), targets)
        total = weighted_total(losses, weights)
        _sync(device)
        t2 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        _sync(device)
        t3 = time.perf_counter()
        timings["forward"] += t1 - t0
        timings["matching_and_losses"] += t2 - t1
        timings["backward_and_step"] += t3 - t2

    model.train()
    warm = {"forward": 0.0, "matching_and_losses": 0.0, "backward_and_step": 0.0}
    step(*batches[0], warm)
    timings = dict.fromkeys(warm, 0.0)
    _TimedMatcher.seconds = 0.0
    for images, targets in batches[1:]:
        step(images, targets, timings)
    train_time = sum(timings.values())

    model.eval()
    images = prepare_images(batches[0][0], device, channels_last)
    with torch.no_grad(), autocast(device, amp):
        model(images)
        _sync(device)
        start = time.perf_counter()
        for _ in range(infer_steps):
            model(images)
        _sync(device)
    infer_time = time.perf_counter() - start
    return {
        "config": name, "device": str(device), "batch": batch, "input_size": list(model_cfg.input_size),
        "backbone": model_cfg.backbone, "hidden_dim": model_cfg.hidden_dim, "max_steps": model_cfg.max_steps,
        "amp_bf16": bool(amp and device.type == "cuda"), "channels_last": channels_last,
        "train_images_per_s": round(batch * train_steps / train_time, 2),
        "inference_images_per_s": round(batch * infer_steps / infer_time, 2),
        "train_time_share": {k: round(v / train_time, 3) for k, v in timings.items()},
        "matching_share": round(_TimedMatcher.seconds / train_time, 3),
    }


def machine() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "processor": platform.processor() or platform.machine()}
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="all", choices=["cpu", "cuda", "all"])
    parser.add_argument("--out", default=str(ROOT / "bench"))
    args = parser.parse_args()
    params = ROOT / "params.yaml"
    model_cfg, train_cfg = load_section("model", params), load_section("train", params)
    raw = read_params(params)
    raw["preset"] = "pascal"
    pascal_model, pascal_train = load_section("model", params, raw), load_section("train", params, raw)
    devices = [torch.device("cpu")] if args.device in ("cpu", "all") else []
    if args.device in ("cuda", "all") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        data = load_section("data", params)
        shapes = dataclasses.replace(data.shapes, train=64, val=1, test=1)
        convert(DataConfig(dataset="shapes", seed=0, shapes=shapes), Path(tmp) / "shapes")
        for device in devices:
            gpu = device.type == "cuda"
            runs = [("default", model_cfg, train_cfg, 32 if gpu else train_cfg.batch_size, 20 if gpu else 5, 20 if gpu else 5),
                    ("pascal", pascal_model, pascal_train, pascal_train.batch_size if gpu else 4, 10 if gpu else 2,
                     10 if gpu else 2)]
            for name, m, t, batch, train_steps, infer_steps in runs:
                result = bench_config(name, m, t, Path(tmp) / "shapes", device, batch, train_steps, infer_steps)
                print(json.dumps(result), flush=True)
                results.append(result)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    document = {"machine": machine(), "results": results}
    (out / "results.json").write_text(json.dumps(document, indent=2) + "\n")
    lines = ["# RSIS throughput", "", f"Machine: `{json.dumps(document['machine'])}`", "",
             "| config | device | batch | input | backbone | train img/s | inference img/s | matching | losses+matching |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['config']} | {r['device']} | {r['batch']} | {r['input_size']} | {r['backbone']} | "
                     f"{r['train_images_per_s']} | {r['inference_images_per_s']} | {r['matching_share']:.1%} | "
                     f"{r['train_time_share']['matching_and_losses']:.1%} |")
    (out / "RESULTS.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'results.json'} and {out / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
