"""Training and inference throughput of RSIS, where a training step spends its time, and the
same work done the way users would otherwise do it (bench/compare.py).

    python bench/bench.py [--device cpu|cuda|all] [--out bench]      (make bench)

Configs: the default (params.yaml `model`/`train`) and the paper's Pascal preset (ResNet-101,
256x256, D=128, T=10, random init). Inputs: shapes images generated into a temporary folder.
Writes <out>/results.json and <out>/RESULTS.md with the machine the numbers came from.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from rsis.config import load_section, read_params
from rsis.datasets.convert import convert
from rsis.datasets.dataset import InstanceDataset, collate
from rsis.runtime import machine
from rsis.training.engine import autocast, prepare_images, steps_for
import compare  # noqa: E402 (bench/compare.py, next to this script)

ROOT = Path(__file__).resolve().parents[1]


def bench_config(name: str, model_cfg, train_cfg, data_root: Path, device: torch.device, batch: int,
                 train_steps: int, infer_steps: int) -> dict:
    torch.manual_seed(0)
    dataset = InstanceDataset(data_root, "train", model_cfg.input_size, train_cfg.max_objects)
    loader = DataLoader(dataset, batch_size=batch, shuffle=False, collate_fn=collate, drop_last=True)
    batches = [next(iter(loader))] * (train_steps + 1)
    trainer = compare.Trainer(model_cfg, dataset.num_classes, device, compare.TimedMatcher(), steps_for,
                              dataclasses.asdict(train_cfg.loss_weights), train_cfg.amp, train_cfg.channels_last)
    model, channels_last, amp = trainer.model, trainer.channels_last, train_cfg.amp
    trainer.step(*batches[0])  # warm-up
    timings = dict.fromkeys(compare.PHASES, 0.0)
    for images, targets in batches[1:]:
        for phase, seconds in trainer.step(images, targets).items():
            timings[phase] += seconds
    train_time = sum(timings.values())

    model.eval()
    images = prepare_images(batches[0][0], device, channels_last)
    with torch.no_grad(), autocast(device, amp):
        model(images)
        compare.sync(device)
        start = time.perf_counter()
        for _ in range(infer_steps):
            model(images)
        compare.sync(device)
    infer_time = time.perf_counter() - start
    return {
        "config": name, "device": str(device), "batch": batch, "input_size": list(model_cfg.input_size),
        "backbone": model_cfg.backbone, "hidden_dim": model_cfg.hidden_dim, "max_steps": model_cfg.max_steps,
        "amp_bf16": bool(amp and device.type == "cuda"), "channels_last": channels_last,
        "train_images_per_s": round(batch * train_steps / train_time, 2),
        "inference_images_per_s": round(batch * infer_steps / infer_time, 2),
        "train_time_share": {k: round(v / train_time, 3) for k, v in timings.items()},
    }


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
        # enough training images for every timed batch to be a different one: STEP_BATCHES + 1 warm-up of up to 32
        shapes = dataclasses.replace(data.shapes, train=(max(STEP_BATCHES.values()) + 1) * 32, val=1, test=1)
        convert(dataclasses.replace(data, dataset="shapes", seed=0, shapes=shapes), Path(tmp) / "shapes")
        for device in devices:
            gpu = device.type == "cuda"
            runs = [("default", model_cfg, train_cfg, 32 if gpu else train_cfg.batch_size, 20 if gpu else 12, 20 if gpu else 12),
                    ("pascal", pascal_model, pascal_train, pascal_train.batch_size if gpu else 4, 10 if gpu else 2,
                     10 if gpu else 2)]
            for name, m, t, batch, train_steps, infer_steps in runs:
                result = bench_config(name, m, t, Path(tmp) / "shapes", device, batch, train_steps, infer_steps)
                print(json.dumps(result), flush=True)
                results.append(result)
        crowded = dataclasses.replace(shapes, min_objects=20, max_objects=20, min_object_size=12, max_object_size=28)
        convert(dataclasses.replace(data, dataset="shapes", seed=0, shapes=crowded), Path(tmp) / "crowded")
        comparisons = compare_all(devices, model_cfg, train_cfg, Path(tmp))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    document = {"machine": machine(), "results": results, **comparisons}
    (out / "results.json").write_text(json.dumps(document, indent=2) + "\n")
    render(out)
    print(f"wrote {out / 'results.json'} and {out / 'RESULTS.md'}")


def render(folder: Path = ROOT / "bench") -> None:
    """RESULTS.md from results.json and, where they exist, throughput.json (bench/throughput.py),
    queue.json (bench/dvc_queue.py), speedup*.json (bench/speedup.py) and batch_scaling.json
    (bench/batch_scaling.py): each bench script rewrites only its own JSON, then renders."""
    document = json.loads((folder / "results.json").read_text())
    text = report(document)
    if (folder / "throughput.json").exists():
        text += throughput_report(json.loads((folder / "throughput.json").read_text()))
    if (folder / "queue.json").exists():
        text += queue_report(json.loads((folder / "queue.json").read_text()))
    for path in sorted(folder.glob("speedup*.json"), key=lambda p: (p.name != "speedup.json", p.name)):
        text += speedup_report(json.loads(path.read_text()), path.name)
    if (folder / "batch_scaling.json").exists():
        text += batch_scaling_report(json.loads((folder / "batch_scaling.json").read_text()))
    (folder / "RESULTS.md").write_text(text)


def throughput_report(document: dict) -> str:
    lines = ["", "## CPU training step, images/s (`python bench/throughput.py`)", "",
             "The real training step (`rsis.training.engine.train_one_epoch`) on the same batches, each row in a fresh "
             "process; `note` says which rows use the optimiser as it was before (Adam's per-tensor loop) and "
             "which the kernels `train.reproducible` pins (AVX2: the same bits on every machine of one CPU model).", "",
             "| config | threads | Adam | kernels | s/step | train img/s | note |", "|---|---|---|---|---|---|---|"]
    for r in document["rows"]:
        lines.append(f"| {r['config']} | {r['threads']} | {r['adam']} | {r.get('kernels', 'native')} | "
                     f"{r['seconds_per_step']} | {r['images_per_s']} | {r.get('note', '')} |")
    return "\n".join(lines) + "\n"


def speedup_report(d: dict, name: str) -> str:
    """bench/speedup.py's side-by-side run, and the new side's FLOP account."""
    old, new, acc = d["old"], d["new"], d["new_step_account"]
    side = lambda r: (f"`{r['revision'][:12]}{'+changes' if r['revision'].endswith('+changes') else ''}`, "
                      f"{r['kernels']} kernels, channels_last {r['channels_last']}"
                      + (f", variant `{d['variant']}`" if d.get("variant", "default") != "default" else "")
                      + "".join(f", `{o}`" for o in r.get("overrides", [])))
    title = SPEEDUP_TITLES.get(name, "Two default training steps side by side")
    lines = ["", f"## {title} (`python bench/speedup.py ... --out bench/{name}`)",
             "", f"One run, {d['batches_timed']} timed batches per side taking turns, {old['threads']} threads"
             + (f" of {d['machine']['processor']}" if d.get("machine", {}).get("processor") else "") + ", "
             f"{d['wall_s']} s wall; medians.", "",
             "| side | step | s/step | train img/s |", "|---|---|---|---|",
             f"| old | {side(old)} | {old['seconds_per_step']} | {old['images_per_s']} |",
             f"| new | {side(new)} | {new['seconds_per_step']} | {new['images_per_s']} |", "",
             f"**Ratio new / old: {d['ratio']}x** images/s (per batch: median {d['ratio_per_batch']['median']}, "
             f"min {d['ratio_per_batch']['min']}, max {d['ratio_per_batch']['max']}). Same weights after the "
             f"same batches: {'yes' if d['same_weights_after_training'] else 'no'}.", "",
             f"FLOP account of the new step (mean of {ACCOUNT_BATCHES} batches): **{acc['gflop_per_step']} GFLOP/step** "
             f"({', '.join(f'{k} {v}' for k, v in acc['gflop_by_operator'].items() if v >= 0.01)}), "
             f"{acc['seconds_per_step_profiled']} s/step under the profiler: **{acc['achieved_gflop_s']} GFLOP/s "
             f"achieved**, convolutions alone {acc['convolution_gflop_s']} GFLOP/s, against "
             f"{acc['sgemm_2048_gflop_s']} GFLOP/s measured for a 2048x2048 fp32 matrix multiply on the same cores "
             f"(the practical peak). {acc['aten_calls_per_step']} ATen calls per step (nested included); the data "
             f"loader (augmented, in the training process) takes {acc['loading_seconds_per_batch']} s per batch.", "",
             "| where the step's time goes | s/step | share |", "|---|---|---|"]
    total = acc["seconds_per_step_profiled"]
    for kind, seconds in acc["seconds_by_kind"].items():
        lines.append(f"| {kind} | {seconds} | {100 * seconds / total:.0f}% |")
    return "\n".join(lines) + "\n"


def batch_scaling_report(d: dict) -> str:
    """bench/batch_scaling.py: the new step at several batch sizes against the old one, and the line fitted."""
    b, target = d["old_batch"], d["target"]
    lines = ["", "## The new step's cost per step and per image (`python bench/batch_scaling.py ... --out "
             "bench/batch_scaling.json`)", "",
             f"The default (`{d['new'][:12]}`) trained at each batch size side by side with the old default "
             f"(`{d['old'][:12]}`, batch {b}), one `bench/speedup.py` run each ({d['batches_timed']} timed batches per "
             f"side) on {d['machine'].get('processor', 'this CPU')}. The new step's time in old steps: "
             f"t(B) = {d['fixed_old_steps']} + B x {d['per_image_old_steps']} (least squares).", "",
             "| new batch | ratio new / old (images/s) | new step / old step | old s/step | new s/step |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['batch']} | {r['ratio']}x | {r['new_over_old_step']} | {r['old_seconds_per_step']} | "
              f"{r['new_seconds_per_step']} |" for r in d["rows"]]
    lines += ["", f"At batch {b} the part paid once per step is {100 * d['fixed_share_at_old_batch']:.0f}% of the new "
              f"step. With it at zero the ratio would be **{d['ratio_infinite_batch']}x** (an infinite batch). "
              f"{target}x at batch {b} needs {100 * d['fixed_cut_needed']:.0f}% of the per-step part gone, or "
              f"{100 * d['per_image_cut_needed']:.0f}% of the per-image part."]
    return "\n".join(lines) + "\n"


ACCOUNT_BATCHES = 3  # bench/speedup.py ACCOUNT
STEP_BATCHES = {"cpu": 8, "cuda": 10}  # timed batches per side of the step against the original style (64 images gave 3)
SPEEDUP_TITLES = {"speedup.json": "Old and new default training step side by side",
                  "speedup_paper.json": "The paper configuration's training step (`preset=paper`, batch 8) side by "
                                        "side: the code of the 2026-12-02 long run (old, 2a05f90) against the current "
                                        "code (new), as bench/LONG_RUN.md compares them",
                  "speedup_paper_nchw.json": "The paper configuration's training step in NCHW (new, presets/paper.yaml's "
                                             "train.channels_last: false) against channels_last (old, the commit before)",
                  "speedup_pin.json": "What train.reproducible's AVX2 pin costs: one commit, pinned (old) against "
                                      "native kernels (new, `--native new`)",
                  "speedup_smaller.json": "The fastest step of a smaller model: an older default (old) against the "
                                          "current one with every FLOP cut at once (new, `--set-new ...`)"}


def queue_report(row: dict) -> str:
    return "\n".join([
        "", "## Two experiments: `dvc queue start -j 2` vs one after the other (`python bench/dvc_queue.py`)", "",
        f"{row['experiments']} experiments of {row['epochs']} epoch(s) each (train, evaluate, analyze) on "
        f"{row['cpu_count']} cores.", "",
        "| one after the other, all threads each | queued -j 2, `train.threads=1` each | speed-up |", "|---|---|---|",
        f"| {row['sequential_s']} s | {row['queue_j2_threads1_s']} s | {row['speedup']}x |"]) + "\n"


def compare_all(devices: list[torch.device], model_cfg, train_cfg, data: Path) -> dict:
    """The side-by-side measurements of bench/compare.py on every device. ``data`` holds the default
    shapes data (shapes/) and a crowded variant with up to 20 objects per image (crowded/)."""
    data_root = data / "shapes"
    step_configs = [  # (label, model config, train config, data)
        ("default", model_cfg, train_cfg, data_root),
        ("default, 128 px", dataclasses.replace(model_cfg, image_size=128), train_cfg, data_root),
        ("crowded, T=20", dataclasses.replace(model_cfg, max_steps=20), dataclasses.replace(train_cfg, max_objects=20),
         data / "crowded"),
    ]
    num_classes = 5  # the shapes dataset: 4 classes + background
    inference, steps, loading = [], [], []
    for device in devices:
        gpu = device.type == "cuda"
        for size in (128, 256):
            inference += compare.inference_vs_maskrcnn(model_cfg, num_classes, device, size, batch=8,
                                                       iters=20 if gpu else 5)
        for label, m, t, root in step_configs:
            steps.append(compare.training_step_vs_original(m, t, root, device, t.batch_size,
                                                           steps=STEP_BATCHES[device.type],
                                                           label=label))
            print(json.dumps(steps[-1]), flush=True)
        for workers in (0, 2):
            for augment in (False, True):
                rate = compare.loading_throughput(data_root, model_cfg.input_size, train_cfg.max_objects,
                                                  dataclasses.replace(train_cfg.augment, enabled=augment),
                                                  train_cfg.batch_size, workers, pin_memory=gpu, batches=6)
                loading.append({"device": str(device), "workers": workers, "augment": augment,
                                "images_per_s": round(rate, 1)})
    return {"inference_vs_maskrcnn": inference, "training_step_vs_original": steps, "data_loading": loading,
            "repro_stages": compare.repro_breakdown(ROOT / "mlflow.db")}


def report(document: dict) -> str:
    results = document["results"]
    lines = ["# RSIS throughput (written by `make bench`)", "", f"Machine: `{json.dumps(document['machine'])}`", "",
             "## RSIS training and inference", "",
             "| config | device | batch | input | backbone | train img/s | inference img/s | "
             + " | ".join(compare.PHASES) + " |", "|---|---|---|---|---|---|---|" + "---|" * len(compare.PHASES)]
    for r in results:
        lines.append(f"| {r['config']} | {r['device']} | {r['batch']} | {r['input_size']} | {r['backbone']} | "
                     f"{r['train_images_per_s']} | {r['inference_images_per_s']} | "
                     + " | ".join(f"{r['train_time_share'][p]:.1%}" for p in compare.PHASES) + " |")
    lines += ["", "## Inference vs torchvision Mask R-CNN (FPN, random weights, same input, same batch; the two take turns batch by batch, medians)", "",
              "| device | backbone | input | RSIS img/s | Mask R-CNN img/s | RSIS / Mask R-CNN | Mask R-CNN detections/img |",
              "|---|---|---|---|---|---|---|"]
    for r in document["inference_vs_maskrcnn"]:
        lines.append(f"| {r['device']} | {r['backbone']} | {r['input']} | {r['rsis_images_per_s']} | "
                     f"{r['maskrcnn_images_per_s']} | **{r['ratio']}x** | {r['maskrcnn_detections_per_image']} |")
    lines += ["", "## Training step vs the same step written the way the original code did it", "",
              "Original style: all T decoder steps unrolled; per step, masks repeated against every zero-padded "
              "ground-truth slot and one host copy; pure-Python Munkres (`munkres`) per image. RSIS: only the "
              "steps the batch's largest T_g + 1 needs; one [T_g, N] soft-IoU matrix per image from one matrix "
              "product; scipy's linear_sum_assignment. Same batches, same initial weights, same losses; the two alternate batch by batch and the figures are medians.", "",
              "| device | data | input | T | objects/img | s/step RSIS | s/step original style | step ratio | "
              "matching s RSIS | matching s original | matching ratio |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in document["training_step_vs_original"]:
        lines.append(f"| {r['device']} | {r['label']} | {r['input']} | {r['max_steps']} | {r['objects_per_image']} | "
                     f"{r['rsis_step_s']} | {r['original_style_step_s']} | **{r['step_ratio']}x** | "
                     f"{r['rsis_matching_s']} | {r['original_style_matching_s']} | {r['matching_ratio']}x |")
    lines += ["", "Where the time of a step goes (median seconds per step of each phase):", "",
              "| device | data | variant | " + " | ".join(compare.PHASES) + " |", "|---|---|---|" + "---|" * len(compare.PHASES)]
    for r in document["training_step_vs_original"]:
        for variant in ("rsis", "original_style"):
            phases = r[f"{variant}_phases_s"]
            lines.append(f"| {r['device']} | {r['label']} | {variant} | " + " | ".join(str(phases[p]) for p in compare.PHASES)
                         + " |")
    default = next((r for r in results if r["config"] == "default" and r["device"] == "cpu"), None)
    lines += ["", "## Data loading vs training consumption", ""]
    if default:
        lines.append(f"A default training step consumes {default['train_images_per_s']} images/s on the CPU.")
        lines.append("")
    lines += ["| device | workers | augment | loader img/s |", "|---|---|---|---|"]
    lines += [f"| {r['device']} | {r['workers']} | {r['augment']} | {r['images_per_s']} |" for r in document["data_loading"]]
    lines += ["", "## `make repro` by stage (latest finished MLflow run of each stage in the workspace, not in a DVC experiment)", ""]
    if document["repro_stages"]:
        lines += ["The tracked part of each stage: the install, each process's start and imports, the download "
                  "stage and DVC's own work are outside it (README gives `make repro`'s wall time).", ""]
        lines += ["| stage | seconds | git revision |", "|---|---|---|"]
        lines += [f"| {r['stage']} | {r['seconds']} | {r['git_revision']} |" for r in document["repro_stages"]]
        lines.append(f"| total | {sum(r['seconds'] for r in document['repro_stages']):.1f} | |")
    else:
        lines.append("No MLflow runs found: run `make repro` first.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
