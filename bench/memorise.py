"""Memorisation check: can a configuration fit a handful of training images exactly?

If model, matcher, loss and inference form a sound chain, training on 16 images and predicting
the same 16 images reaches AP50 ~1. A change that breaks the chain (a matcher that assigns the
wrong step, a loss that ignores a term, an inference that reads the wrong step) fails it.

    python bench/memorise.py                        # default and paper, 16 images, up to 800 updates
    python bench/memorise.py --only paper --images 8 --updates 300 --every 25

It trains with the train stage's own step (rsis.training.engine.train_one_epoch) and scores with the
evaluate stage's own scoring (rsis.evaluation.run.score), at constant learning rates, and reports
the updates each configuration needed to reach AP50 >= --target on the images it trained on.
Results: bench/MEMORISE.md and bench/MEMORISE.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ablation import ROOT, VARIANTS, variant_params  # noqa: E402 (bench/ablation.py)

from rsis.config import to_dict  # noqa: E402
from rsis.core.criterion import RSISCriterion  # noqa: E402
from rsis.core.model import initial_model  # noqa: E402
from rsis.datasets.convert import convert  # noqa: E402
from rsis.datasets.dataset import InstanceDataset, collate  # noqa: E402
from rsis.datasets.format import annotation_file  # noqa: E402
from rsis.evaluation.coco import load_ground_truth  # noqa: E402
from rsis.evaluation.inference import predict  # noqa: E402
from rsis.evaluation.run import score  # noqa: E402
from rsis.training import schedule  # noqa: E402
from rsis.training.engine import train_one_epoch  # noqa: E402
from rsis.training.fit import build_optimizer  # noqa: E402


def memorise(params: dict[str, Any], data_root: Path, updates: int, every: int, target: float,
             log=print, stop_at_target: bool = False) -> dict[str, Any]:
    """Train on every image of ``data_root``'s train split for ``updates`` updates; every ``every``
    updates, predict the same images and score them. Returns the curve and the first update count
    whose AP50 reached ``target`` (None if none did). ``stop_at_target``: end at the first scoring
    where AP50 and class-agnostic AP50 both reach ``target`` (the run up to there is the same: the
    teacher-forcing schedule is laid over ``updates`` either way)."""
    model_cfg, cfg, eval_cfg = params["model"], params["train"], params["evaluate"]
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    dataset = InstanceDataset(data_root, "train", model_cfg.input_size, cfg.max_objects)
    batch = min(cfg.batch_size, len(dataset))
    train_loader = DataLoader(dataset, batch_size=batch, shuffle=True, collate_fn=collate, drop_last=True,
                              generator=torch.Generator().manual_seed(cfg.seed))
    eval_loader = DataLoader(dataset, batch_size=eval_cfg.batch_size, shuffle=False, collate_fn=collate)
    ground_truth = load_ground_truth(annotation_file(data_root, "train"))
    device = torch.device("cpu")
    model = initial_model(model_cfg, dataset.num_classes, cfg.seed)
    optimizer = build_optimizer(model, cfg)
    weights = schedule.loss_weights(schedule.initial_state(cfg.schedule, model_cfg.max_steps), to_dict(cfg.loss_weights))
    criterion = RSISCriterion(head_targets=cfg.head_targets)
    # teacher forcing over the same share of the run as in the configured training
    forcing_share = min(1.0, cfg.teacher_forcing_epochs / cfg.epochs)
    curve, done, start = [], 0, time.perf_counter()
    while done < updates:
        epoch_updates = len(train_loader)
        p0 = max(0.0, 1.0 - done / (forcing_share * updates)) if forcing_share else 0.0
        p1 = max(0.0, 1.0 - (done + epoch_updates) / (forcing_share * updates)) if forcing_share else 0.0
        losses = train_one_epoch(model, criterion, train_loader, optimizer, device, weights, epoch=done, steps=model_cfg.max_steps,
                                 show_progress=False, matching=cfg.matching, forcing=(p0, p1), grad_clip=cfg.grad_clip)
        done += epoch_updates
        if done % every < epoch_updates or done >= updates:
            scores = score(ground_truth, predict(model, eval_loader, device, eval_cfg, desc="memorised"), dataset)
            point = {"updates": done, "loss": round(losses["total"], 4), "AP50": round(scores["segm"]["AP50"], 3),
                     "agnostic_AP50": round(scores["segm_class_agnostic"]["AP50"], 3),
                     "AR@10@0.5": round(scores["proposals"]["AR@10@0.5"], 3),
                     "seconds": round(time.perf_counter() - start, 1)}
            curve.append(point)
            log(f"  {point}")
            if stop_at_target and point["AP50"] >= target and point["agnostic_AP50"] >= target:
                break
    reached = next((p["updates"] for p in curve if p["AP50"] >= target), None)
    return {"images": len(dataset), "updates_to_target": reached, "final": curve[-1], "curve": curve}


def memorisation_data(params: dict[str, Any], images: int, root: Path) -> Path:
    """The first ``images`` training images of the configured dataset (shapes or leaves), converted."""
    data = params["data"]
    source = getattr(data, data.dataset)
    small = dataclasses.replace(source, train=images, val=1, test=1)
    convert(dataclasses.replace(data, **{data.dataset: small}), root, root / "raw")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=list(VARIANTS), default=["default", "paper"])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--updates", type=int, default=800)
    parser.add_argument("--every", type=int, default=50, help="score every this many updates")
    parser.add_argument("--target", type=float, default=0.95, help="AP50 that counts as memorised")
    parser.add_argument("--stop-at-target", action="store_true",
                        help="end a configuration's run once AP50 and class-agnostic AP50 reach --target")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--report", type=Path, default=ROOT / "bench" / "MEMORISE.md")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:
            params = variant_params(name, args.sets)
            root = memorisation_data(params, args.images, Path(tmp) / name)
            print(f"{name}: {args.images} images, {args.updates} updates", flush=True)
            results[name] = memorise(params, root, args.updates, args.every, args.target,
                                     log=lambda line: print(line, flush=True), stop_at_target=args.stop_at_target)
    lines = [f"# Memorisation check\n\nCommand: `python bench/memorise.py {' '.join(sys.argv[1:])}`\n",
             f"Train on {args.images} images, score on the same images (AP50 target {args.target}).\n",
             "| configuration | updates to AP50 >= target | final updates | final loss | AP50 | class-agnostic AP50 "
             "| AR@10@0.5 | seconds |", "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        f = r["final"]
        lines.append(f"| {name} | {r['updates_to_target'] or 'not reached'} | {f['updates']} | {f['loss']} | "
                     f"{f['AP50']} | {f['agnostic_AP50']} | {f['AR@10@0.5']} | {f['seconds']} |")
    args.report.write_text("\n".join(lines) + "\n")
    args.report.with_suffix(".json").write_text(json.dumps(results, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
