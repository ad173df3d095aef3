"""The default training step of two commits side by side, on the same CPU, in one run: images/s and
their ratio (new / old). Noise in a shared machine's speed hits both alike.

    python bench/speedup.py --old <commit>              # the working tree against <commit>
    python bench/speedup.py --old <commit> --new <commit> --batches 20 --out bench/speedup.json
    python bench/speedup.py --old HEAD --new HEAD --set-new model.hidden_dim=32   # a params change
    python bench/speedup.py --old 2a05f90 --new HEAD --variant paper   # the paper configuration's step

Each side is its own tree (``git archive`` of the commit; the working tree for ``--new`` unset) and
its own long-lived worker process, started with that tree's ``rsis`` on its path and the CPU
environment its params.yaml asks for (``train.reproducible``: AVX2 kernels, ``train.threads``). Both
train their tree's default (params.yaml as it is: model, optimiser, loss weights, teacher forcing,
memory format), or with ``--variant`` another of that tree's bench/ablation.py variants (``paper``: params.yaml
under ``preset: paper``), from the same seed on the same batches of one converted dataset, one batch at a time,
taking turns (which goes first alternates); the first two batches are warm-up. Each figure is the
median over the timed batches of the real training step (``rsis.training.engine.train_one_epoch``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WARMUP = 2
ACCOUNT = 3  # batches of the new side's FLOP account and profile, after the timed ones


def worker(tree: Path, data: Path, native: bool, variant: str, overrides: list[str]) -> None:
    """Serve 'step I' lines on stdin with one training step on batch I, answering its seconds;
    'account I' answers the FLOP account and profile of steps on batches I, I+1, ... (:func:`account`)
    and 'checksum' a digest of the trained weights. ``native``: leave the CPU kernels unpinned;
    ``variant``: which of that tree's bench/ablation.py variants to train; ``overrides``: SECTION.KEY=VALUE
    over it (bench/ablation.py's --set)."""
    sys.path[:0] = [str(tree), str(tree / "bench")]
    if not native:
        from rsis.reproducible import pin_cpu
        pin_cpu(tree / "params.yaml")
    import torch
    from torch.utils.data import DataLoader, Subset

    from ablation import variant_params  # that tree's bench/ablation.py
    from rsis.config import to_dict
    from rsis.core.criterion import RSISCriterion
    from rsis.core.model import initial_model
    from rsis.datasets.dataset import InstanceDataset, collate
    from rsis.training import engine, fit, schedule

    params = variant_params(variant, overrides)
    model_cfg, cfg = params["model"], params["train"]
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dataset = InstanceDataset(data, "train", model_cfg.input_size, cfg.max_objects)
    device = torch.device("cpu")
    model = initial_model(model_cfg, dataset.num_classes, cfg.seed)
    place = getattr(engine, "place_model", None)  # commits before it kept CPU models in NCHW
    if place is not None:
        model = place(model, device, cfg.channels_last)
    optimizer = fit.build_optimizer(model, cfg)
    weights = schedule.loss_weights(schedule.initial_state(cfg.schedule, model_cfg.max_steps), to_dict(cfg.loss_weights))
    criterion = RSISCriterion(head_targets=cfg.head_targets)
    forcing = fit.teacher_forcing(1, cfg.teacher_forcing_epochs)
    print(json.dumps({"batch": cfg.batch_size, "threads": torch.get_num_threads(),
                      "kernels": torch.backends.cpu.get_cpu_capability(),
                      "channels_last": bool(place is not None and cfg.channels_last)}), flush=True)

    def train(index: int) -> float:
        batch = Subset(dataset, range(index * cfg.batch_size, (index + 1) * cfg.batch_size))
        loader = DataLoader(batch, batch_size=cfg.batch_size, collate_fn=collate)
        start = time.perf_counter()
        engine.train_one_epoch(model, criterion, loader, optimizer, device, weights, 1, model_cfg.max_steps,
                               channels_last=cfg.channels_last, show_progress=False, matching=cfg.matching,
                               forcing=forcing, grad_clip=cfg.grad_clip)
        return time.perf_counter() - start

    for line in sys.stdin:
        command, *rest = line.split()
        if command == "step":
            answer = {"seconds": train(int(rest[0]))}
        elif command == "account":
            augmented = InstanceDataset(data, "train", model_cfg.input_size, cfg.max_objects, cfg.augment)
            answer = account(train, int(rest[0]), augmented, cfg.batch_size)
        else:  # checksum
            digest = hashlib.sha256()
            for tensor in model.state_dict().values():
                digest.update(tensor.detach().contiguous().numpy().tobytes())
            answer = {"weights_sha256": digest.hexdigest()[:16]}
        print(json.dumps(answer), flush=True)


def account(train, first: int, dataset, batch_size: int, steps: int = 3) -> dict:
    """Where one training step's time goes, over batches ``first`` ... ``first + steps - 1``: FLOPs per
    step (torch.utils.flop_counter), the profiler's self time per step by kind of operator, the host's measured fp32 matrix
    multiply rate (the practical peak), and the data loader's cost per step (augmented ``dataset``)."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:  # FLOPs depend on the batch only (its decoder steps), not on the weights
        for k in range(steps):
            train(first + k)
    flops = {str(op).replace("aten.", ""): n / steps for op, n in counter.get_flop_counts()["Global"].items()}
    with profile(activities=[ProfilerActivity.CPU]) as prof:  # the same batches again
        wall = sum(train(first + k) for k in range(steps))
    kinds = {"convolution forward": ("aten::mkldnn_convolution", "aten::convolution", "aten::_convolution"),
             "convolution backward": ("aten::convolution_backward",),
             "matrix multiply": ("aten::mm", "aten::addmm", "aten::bmm"),
             "bilinear/area resampling": ("aten::upsample_bilinear2d", "aten::upsample_bilinear2d_backward",
                                          "aten::_adaptive_avg_pool2d", "aten::_adaptive_avg_pool2d_backward"),
             "Adam and clipping": ("aten::_fused_adam_", "aten::_foreach_norm", "aten::_foreach_mul_")}
    seconds = {kind: 0.0 for kind in kinds}
    seconds["other operators (elementwise, cat, copies, indexing)"] = 0.0
    calls = 0
    for event in prof.key_averages():
        if not event.key.startswith("aten::"):
            continue
        calls += event.count
        kind = next((k for k, names in kinds.items() if event.key in names), None)
        seconds[kind or "other operators (elementwise, cat, copies, indexing)"] += event.self_cpu_time_total / 1e6
    per_step = wall / steps
    breakdown = {k: round(v / steps, 4) for k, v in seconds.items()}
    breakdown["outside operators (Python, autograd engine, loader)"] = round(per_step - sum(breakdown.values()), 4)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    start = time.perf_counter()
    for _ in range(5):
        a @ b
    gemm = 5 * 2 * 2048 ** 3 / (time.perf_counter() - start)
    start = time.perf_counter()
    for index in range(4 * batch_size):
        dataset[index]
    load = (time.perf_counter() - start) / 4
    total = sum(flops.values())
    return {"gflop_per_step": round(total / 1e9, 2),
            "gflop_by_operator": {k: round(v / 1e9, 3) for k, v in sorted(flops.items(), key=lambda kv: -kv[1])},
            "seconds_per_step_profiled": round(per_step, 4), "seconds_by_kind": breakdown,
            "aten_calls_per_step": round(calls / steps),  # nested calls included
            "achieved_gflop_s": round(total / per_step / 1e9, 1),
            "convolution_gflop_s": round(sum(v for k, v in flops.items() if "convolution" in k) / 1e9
                                         / (breakdown["convolution forward"] + breakdown["convolution backward"]), 1),
            "sgemm_2048_gflop_s": round(gemm / 1e9, 1),
            "loading_seconds_per_batch": round(load, 4)}


def export(commit: str, into: Path) -> Path:
    """The tree of ``commit`` (as git archive writes it) under ``into``."""
    archive = into / f"{commit}.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", "-o", str(archive), commit], check=True)
    tree = into / commit
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    return tree


def start_worker(tree: Path, data: Path, native: bool, variant: str, overrides: list[str],
                 extra_env: list[str] = ()) -> tuple[subprocess.Popen, dict]:
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR",
                                                          "OMP_NUM_THREADS", "MKL_NUM_THREADS", "PYTHONPATH")}
    env.update(item.split("=", 1) for item in extra_env)
    proc = subprocess.Popen([sys.executable, __file__, "--worker", str(tree), str(data), "native" if native else "pinned",
                             variant, *overrides],
                            cwd=tree, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    first = proc.stdout.readline()
    if not first:  # its own error (a bad override, a tree that does not import) is on stderr above
        raise RuntimeError(f"worker for {tree} with overrides {overrides} exited with {proc.wait()} before its first step")
    return proc, json.loads(first)


def ask(proc: subprocess.Popen, command: str) -> dict:
    proc.stdin.write(command + "\n")
    proc.stdin.flush()
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"worker {proc.args[3]} exited with {proc.wait()} at {command!r}")
    return json.loads(line)


def revision(commit: str | None) -> str:
    """``commit`` as a full hash; the working tree as HEAD's hash, with "+changes" when it differs."""
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", commit or "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    if commit is None and subprocess.run(["git", "-C", str(ROOT), "diff", "--quiet", "HEAD", "--", "rsis", "params.yaml",
                                          "bench"]).returncode:
        head += "+changes"
    return head


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", help="commit of the old step (required)")
    parser.add_argument("--new", help="commit of the new step (default: the working tree)")
    parser.add_argument("--batches", type=int, default=16, help="timed batches per side")
    parser.add_argument("--native", choices=("old", "new"), help="leave this side's CPU kernels unpinned "
                        "(train.reproducible's AVX2 pin off): with --new equal to --old, what the pin costs")
    parser.add_argument("--variant", default="default", help="the bench/ablation.py variant both sides train "
                        "(paper: params.yaml under preset: paper); each side reads its own tree's")
    parser.add_argument("--out", type=Path, help="write the result here (JSON); bench/speedup.json also renders "
                        "into bench/RESULTS.md")
    for side in ("old", "new"):
        parser.add_argument(f"--set-{side}", action="append", default=[], metavar="SECTION.KEY=VALUE",
                            help=f"params override of the {side} side only (repeatable), e.g. with --new equal to "
                            f"--old: what a model change does to the step (model.hidden_dim=32)")
        parser.add_argument(f"--env-{side}", action="append", default=[], metavar="NAME=VALUE",
                            help=f"environment variable of the {side} side's worker only (repeatable), e.g. "
                            f"MALLOC_ARENA_MAX=1: what a process setting does to the step")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(Path(args.worker[0]), Path(args.worker[1]), args.worker[2] == "native", args.worker[3], args.worker[4:])
        return
    if not args.old:
        parser.error("--old COMMIT is required")
    sys.path.insert(0, str(ROOT / "bench"))
    from ablation import check_set, variant_params  # noqa: E402

    for item in args.set_old + args.set_new:  # checked here: an older tree's ablation.py would ignore a preset=
        try:
            check_set(item)
        except ValueError as error:
            parser.error(f"{error} (a preset on both sides: --variant, e.g. --variant paper)")

    from rsis.datasets.convert import convert  # noqa: E402
    from rsis.runtime import cpu_model  # noqa: E402 (hosts of one name differ: AMD EPYC family 25 model 1 and 17)
    import dataclasses

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        revisions = {"old": revision(args.old), "new": revision(args.new)}
        overrides = {"old": args.set_old, "new": args.set_new}
        envs = {"old": args.env_old, "new": args.env_new}
        for item in envs["old"] + envs["new"]:
            if "=" not in item:
                parser.error(f"--env-old/--env-new take NAME=VALUE, got {item!r}")
        trees = {"old": export(args.old, tmp), "new": export(args.new, tmp) if args.new else ROOT}
        data_cfg = variant_params(args.variant, [])["data"]
        n = 64 * (args.batches + WARMUP + ACCOUNT)  # enough for either side's batch size up to 64
        convert(dataclasses.replace(data_cfg, shapes=dataclasses.replace(data_cfg.shapes, train=n, val=1, test=1)),
                tmp / "data", tmp / "raw")
        workers, info = {}, {}
        for side, tree in trees.items():
            workers[side], info[side] = start_worker(tree, tmp / "data", args.native == side, args.variant,
                                                     overrides[side], envs[side])
        seconds: dict[str, list[float]] = {"old": [], "new": []}
        for index in range(args.batches + WARMUP):
            for side in (("old", "new") if index % 2 == 0 else ("new", "old")):
                s = ask(workers[side], f"step {index}")["seconds"]
                if index >= WARMUP:
                    seconds[side].append(s)
            print(f"batch {index}: old {seconds['old'][-1] if index >= WARMUP else '-'} "
                  f"new {seconds['new'][-1] if index >= WARMUP else '-'}", file=sys.stderr, flush=True)
        checksums = {side: ask(proc, "checksum")["weights_sha256"] for side, proc in workers.items()}
        where = ask(workers["new"], f"account {args.batches + WARMUP}")
        for proc in workers.values():
            proc.stdin.close()
            proc.wait()
    result = {"machine": {"platform": platform.platform(), "processor": cpu_model(), "cpu_count": os.cpu_count(),
                          "python": platform.python_version()},
              "variant": args.variant, "batches_timed": args.batches, "wall_s": round(time.perf_counter() - started, 1)}
    for side in ("old", "new"):
        median = statistics.median(seconds[side])
        result[side] = {"revision": revisions[side], "overrides": overrides[side], "environment": envs[side], **info[side],
                        "weights_sha256": checksums[side],
                        "seconds_per_step": round(median, 4),
                        "images_per_s": round(info[side]["batch"] / median, 1)}
    per_batch = [o / info["old"]["batch"] / (n_ / info["new"]["batch"]) for o, n_ in zip(seconds["old"], seconds["new"])]
    result["ratio"] = round(result["new"]["images_per_s"] / result["old"]["images_per_s"], 2)
    result["ratio_per_batch"] = {"median": round(statistics.median(per_batch), 2), "min": round(min(per_batch), 2),
                                 "max": round(max(per_batch), 2)}
    result["same_weights_after_training"] = checksums["old"] == checksums["new"]
    result["new_step_account"] = where
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
        if args.out.resolve().parent == ROOT / "bench":  # speedup*.json there are sections of bench/RESULTS.md
            from bench import render  # bench/bench.py, on the path as this script's folder
            render()


if __name__ == "__main__":
    main()
