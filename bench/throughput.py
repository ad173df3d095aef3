"""CPU training throughput of the real training step (rsis.training.engine.train_one_epoch), images/s.

    python bench/throughput.py            # -> bench/throughput.json, rendered into bench/RESULTS.md

Rows: the default and the paper configuration (preset: paper), each with 1 and 2 CPU threads and
with Adam's per-tensor loop (`fused=False`, the optimiser before) and the fused kernel (now), on
the machine's native kernels; then the default with the kernels `train.reproducible` pins (AVX2,
rsis/reproducible.py): the price of bit-identical results across machines. Each row times the
same batches after one warm-up batch, in a fresh process so that the thread count and the
kernel choice really apply.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ablation import ROOT, variant_params  # noqa: E402 (bench/ablation.py)

from rsis.config import to_dict  # noqa: E402
from rsis.core.criterion import RSISCriterion  # noqa: E402
from rsis.core.model import initial_model  # noqa: E402
from rsis.datasets.dataset import InstanceDataset, collate  # noqa: E402
from rsis.reproducible import PINNED_ISA, THREAD_VARIABLES  # noqa: E402
from rsis.training import schedule  # noqa: E402
from rsis.training.engine import train_one_epoch  # noqa: E402
from rsis.training.fit import build_optimizer, teacher_forcing  # noqa: E402


# the default before model.layer4_width: torchvision's last stage (512 planes, 20-27% of a step at 4x4)
LAYER4_BEFORE = "default@model.layer4_width=null"


def measure(variant: str, threads: int, fused: bool, data: Path, batches: int) -> dict:
    """One row; ``variant`` is an ablation variant name, optionally with params after '@' (comma-separated
    section.key=value items, e.g. ``default@model.layer4_width=null``)."""
    torch.set_num_threads(threads)
    name, _, sets = variant.partition("@")
    params = variant_params(name, [s for s in sets.split(",") if s])
    model_cfg, cfg = params["model"], params["train"]
    dataset = InstanceDataset(data, "train", model_cfg.input_size, cfg.max_objects)
    n = cfg.batch_size * (batches + 1)
    warm = DataLoader(Subset(dataset, range(cfg.batch_size)), batch_size=cfg.batch_size, collate_fn=collate)
    timed = DataLoader(Subset(dataset, range(cfg.batch_size, n)), batch_size=cfg.batch_size, collate_fn=collate)
    model = initial_model(model_cfg, dataset.num_classes, cfg.seed)
    optimizer = build_optimizer(model, cfg)
    if not fused:  # the optimiser as it was: Adam's per-tensor loop
        optimizer = torch.optim.Adam(optimizer.param_groups, weight_decay=cfg.weight_decay)
    weights = schedule.loss_weights(schedule.initial_state(cfg.schedule, model_cfg.max_steps), to_dict(cfg.loss_weights))
    kwargs = dict(matching=cfg.matching, forcing=teacher_forcing(1, cfg.teacher_forcing_epochs), grad_clip=cfg.grad_clip,
                  show_progress=False)
    device, criterion = torch.device("cpu"), RSISCriterion()
    train_one_epoch(model, criterion, warm, optimizer, device, weights, 0, model_cfg.max_steps, **kwargs)
    start = time.perf_counter()
    train_one_epoch(model, criterion, timed, optimizer, device, weights, 0, model_cfg.max_steps, **kwargs)
    seconds = time.perf_counter() - start
    return {"config": variant, "threads": threads, "adam": "fused" if fused else "per-tensor",
            "kernels": torch.backends.cpu.get_cpu_capability() + (" (pinned)" if os.environ.get("ONEDNN_MAX_CPU_ISA")
                                                                   else " (native)"),
            "batch": cfg.batch_size, "seconds_per_step": round(seconds / batches, 3),
            "images_per_s": round(batches * cfg.batch_size / seconds, 1),
            "note": "now" if fused else "before: Adam's per-tensor loop"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "throughput.json")
    parser.add_argument("--row", nargs=4, help=argparse.SUPPRESS)  # variant threads fused data: one measurement
    args = parser.parse_args()
    if args.row:
        variant, threads, fused, data = args.row
        print(json.dumps(measure(variant, int(threads), fused == "1", Path(data), args.batches)))
        return
    from rsis.datasets.convert import convert
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data_cfg = variant_params("default", [])["data"]
        import dataclasses
        largest = max(variant_params(v, [])["train"].batch_size for v in ("default", "paper"))
        small = dataclasses.replace(data_cfg.shapes, train=largest * (args.batches + 1), val=1, test=1)
        convert(dataclasses.replace(data_cfg, shapes=small), Path(tmp), Path(tmp) / "raw")
        native = {k: v for k, v in os.environ.items() if k not in (*PINNED_ISA, *THREAD_VARIABLES)}
        runs = [(variant, threads, fused, native) for variant in ("default", "paper") for threads in (1, 2)
                for fused in (False, True)]
        runs += [("default", threads, True, {**native, **PINNED_ISA}) for threads in (1, 2)]
        runs += [(LAYER4_BEFORE, threads, True, {**native, **PINNED_ISA}) for threads in (1, 2)]
        for variant, threads, fused, env in runs:
            out = subprocess.run([sys.executable, __file__, "--batches", str(args.batches), "--row", variant,
                                  str(threads), str(int(fused)), tmp], check=True, capture_output=True, text=True,
                                 env=env)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            if env is not native:
                rows[-1]["note"] = "train.reproducible (the default): AVX2 kernels"
            if variant == LAYER4_BEFORE:
                rows[-1]["note"] = "before: ResNet layer4 at 512 planes (model.layer4_width null), AVX2 kernels"
            print(json.dumps(rows[-1]), flush=True)
    args.out.write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    from bench import render  # bench/bench.py: RESULTS.md from every bench JSON
    render(args.out.parent)
    print(f"wrote {args.out} and {args.out.parent / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
