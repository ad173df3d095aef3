"""The official Cityscapes instance-level evaluation (cityscapesscripts), fed with our predictions.

Predictions are written in its format: per image ``<name>.txt`` with one line per detection,
``masks/<name>_<k>_<class>.png <label id> <confidence>``, and binary mask PNGs at the ground
truth's resolution. As in the paper's protocol each mask is emitted once per class with
confidence p(class) x objectness (x maskness under evaluate.mask_score).

Two things are adapted without editing the installed package: numpy 2 removed ``np.in1d``, which
the script calls, so its module sees a numpy proxy that provides it; and the script writes its
ground-truth cache inside the package and ``matches.json`` into the working directory, so both
are pointed into ``out_dir`` (its JSON writer is replaced by one that also turns numpy scalars into
plain numbers). AP100m and AP50m need disparity maps, which the official 2.3.0 script does not
evaluate (``distanceAvailable = False``): only AP, AP50 and the per-class values are reported.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from rsis.datasets.cityscapes import LABEL_IDS
from rsis.evaluation.inference import PredictedInstance


class _NumpyWithIn1d:
    """numpy, plus the ``in1d`` the script needs (an alias of ``isin`` for 1-D use)."""

    def __getattr__(self, name: str) -> Any:
        if name == "in1d" and not hasattr(np, "in1d"):
            return lambda a, b, invert=False: np.isin(np.ravel(a), b, invert=invert)
        return getattr(np, name)


def write_predictions(folder: Path, names: list[str], sequences: list[list[PredictedInstance]],
                      min_score: float = 1e-4) -> list[Path]:
    """The prediction .txt files (one per image, in order) and their mask PNGs."""
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    files = []
    for name, sequence in zip(names, sequences):
        lines = []
        for k, inst in enumerate(sequence):
            for c, label_id in enumerate(LABEL_IDS, start=1):
                score = inst.class_probs[c] * inst.score
                if score < min_score:
                    continue
                rel = f"masks/{name}_{k}_{c}.png"
                if not (folder / rel).exists():
                    Image.fromarray(inst.mask.astype(np.uint8) * 255).save(folder / rel)
                lines.append(f"{rel} {label_id} {score:.6f}")
        path = folder / f"{name}.txt"
        path.write_text("".join(line + "\n" for line in lines))
        files.append(path)
    return files


def _json_writer(out_dir: Path):
    def write(obj: Any, file_name: str) -> None:
        path = Path(file_name) if os.path.isabs(file_name) else out_dir / file_name
        path.write_text(json.dumps(obj, default=_plain, sort_keys=True, indent=2))
    return write


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value.__dict__


def evaluate(gt_files: list[Path], sequences: list[list[PredictedInstance]], names: list[str],
             out_dir: str | Path) -> dict[str, Any]:
    """Run the official evaluation; everything it writes stays under ``out_dir``."""
    from cityscapesscripts.evaluation import evalInstanceLevelSemanticLabeling as cs

    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    predictions = write_predictions(out_dir / "predictions", names, sequences)
    args = cs.args
    args.gtInstancesFile = str(out_dir / "gtInstances.json")
    args.exportFile = str(out_dir / "resultInstanceLevelSemanticLabeling.json")
    args.quiet, args.JSONOutput, args.colorized = True, True, False
    args.predictionPath = str(out_dir / "predictions")  # masks must lie under it
    saved = cs.np, cs.writeDict2JSON
    cs.np, cs.writeDict2JSON = _NumpyWithIn1d(), _json_writer(out_dir)
    try:
        if Path(args.gtInstancesFile).exists():  # the cache is only valid for the same ground truth files
            Path(args.gtInstancesFile).unlink()
        result = cs.evaluateImgLists([str(p) for p in predictions], [str(g.resolve()) for g in gt_files], args)
    finally:
        cs.np, cs.writeDict2JSON = saved
    averages = result["averages"]
    return {"AP": _number(averages["allAp"]), "AP50": _number(averages["allAp50%"]),
            "per_class": {name: {"AP": _number(v["ap"]), "AP50": _number(v["ap50%"])}
                          for name, v in averages["classes"].items()}}


def _number(value: Any) -> float | None:
    """A JSON-safe metric: NaN (a class with no ground truth in the split) becomes null."""
    value = float(value)
    return None if np.isnan(value) else value
