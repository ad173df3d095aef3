"""Everything a lent GPU should check, in one command (`make gpu-check`, about 10 minutes on an H100):

1. the tests marked ``gpu`` (CUDA forward/backward of the real training step, bf16 autocast,
   channels_last, a one-process NCCL DDP step),
2. ``bench/bench.py --device cuda`` (training and inference throughput -> bench/results.json),
3. a short training of the Pascal preset (ResNet-101, 256x256, D = 128, batch 28, bf16) on
   synthetic shapes rendered at 256 px, from scratch, with its images/s and test AP.

Results go to bench/gpu_check.json and bench/GPU_CHECK.md. Without a CUDA device it says so in one
line and exits 0 (the ``gpu`` tests are skipped, not failed, in ``make test``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ablation import ROOT, variant_params  # noqa: E402 (bench/ablation.py)

from rsis.datasets.convert import convert  # noqa: E402
from rsis.evaluation.run import evaluate  # noqa: E402
from rsis.training.fit import fit  # noqa: E402

def pascal_run(out: Path, epochs: int, images: int, device: str = "cuda") -> dict:
    """Train the Pascal preset for ``epochs`` on ``images`` synthetic 256 px images; score the test split."""
    cfg = _pascal(epochs, device)
    shapes = dataclasses.replace(cfg["data"].shapes, image_size=256, min_object_size=48, max_object_size=120,
                                 train=images, val=64, test=128)
    convert(dataclasses.replace(cfg["data"], dataset="shapes", shapes=shapes), out / "data", out / "raw")
    paths = dataclasses.replace(cfg["paths"], raw=str(out / "raw"), data=str(out / "data"),
                                models=str(out / "models"), predictions=str(out / "predictions.json"),
                                evaluation=str(out / "evaluation"), metrics=str(out), figures=str(out / "figures"))
    result = fit(paths, cfg["model"], cfg["train"])
    scores = evaluate(paths, cfg["evaluate"], cfg["data"].dataset, device=device)
    seconds = float(result.history["epoch_seconds"].sum())
    return {"epochs": epochs, "train_images": images, "image_size": 256, "backbone": cfg["model"].backbone,
            "hidden_dim": cfg["model"].hidden_dim, "batch": cfg["train"].batch_size, "amp": cfg["train"].amp,
            "train_seconds": round(seconds, 1), "train_images_per_s": round(epochs * images / seconds, 1),
            "test_segm_AP50": round(scores["segm"]["AP50"], 4),
            "test_class_agnostic_AP50": round(scores["segm_class_agnostic"]["AP50"], 4),
            "test_AR@10@0.5": round(scores["proposals"]["AR@10@0.5"], 4)}


def _pascal(epochs: int, device: str) -> dict:
    """params.yaml with preset pascal, no ImageNet weights (none can be downloaded), CUDA, every loss
    term from epoch 0 (the preset's switch points are for 100+ epochs), ``epochs`` epochs."""
    import ablation
    ablation.VARIANTS.setdefault("pascal-gpu-check", {"preset": "pascal"})
    return variant_params("pascal-gpu-check", ["model.pretrained=none", f"train.device={device}",
                                               "train.schedule.class_loss_from=0", "train.schedule.stop_loss_from=0",
                                               f"train.epochs={epochs}", "train.lr_decay_epochs=[]"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--out", type=Path, default=ROOT / "bench")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu-check: no CUDA device on this machine: nothing to check (the gpu tests are skipped in make test)")
        return 0
    report: dict = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    start = time.perf_counter()
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests/test_gpu.py"], cwd=ROOT,
                           capture_output=True, text=True)
    report["gpu_tests"] = {"returncode": tests.returncode, "summary": tests.stdout.strip().splitlines()[-1:]}
    print(f"gpu tests: {report['gpu_tests']}", flush=True)
    bench = subprocess.run([sys.executable, "bench/bench.py", "--device", "cuda"], cwd=ROOT, capture_output=True,
                           text=True)
    report["bench_cuda"] = {"returncode": bench.returncode, "tail": bench.stdout.strip().splitlines()[-3:]}
    print(f"bench.py --device cuda: rc {bench.returncode}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        report["pascal_preset"] = pascal_run(Path(tmp), args.epochs, args.images)
    print(f"pascal preset: {report['pascal_preset']}", flush=True)
    report["wall_seconds"] = round(time.perf_counter() - start, 1)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# GPU check (`make gpu-check`)", "", f"Device: {report['device']}, torch {report['torch']}, "
             f"{report['wall_seconds']} s wall.", "", f"- tests marked gpu: rc {tests.returncode}, "
             f"{' '.join(report['gpu_tests']['summary'])}", f"- `bench/bench.py --device cuda`: rc {bench.returncode} "
             "(figures in bench/RESULTS.md)", "- Pascal preset on synthetic 256 px shapes, from scratch:", "",
             "| " + " | ".join(report["pascal_preset"]) + " |", "|" + "---|" * len(report["pascal_preset"]),
             "| " + " | ".join(str(v) for v in report["pascal_preset"].values()) + " |"]
    (args.out / "GPU_CHECK.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out / 'gpu_check.json'} and {args.out / 'GPU_CHECK.md'}")
    return 0 if tests.returncode == 0 and bench.returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
