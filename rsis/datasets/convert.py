"""The convert stage's work: parse a dataset into records and write the converted format."""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from rsis.config import DataConfig
from rsis.datasets import cityscapes, coco, cvppp, leaves, shapes, voc
from rsis.datasets.format import CHALLENGE, write_split
from rsis.datasets.record import DataError, InstanceRecord
from rsis.files import atomic_directory, write_json

SPLITS = ("train", "val", "test")
SKIPPED_REPORT = "skipped.json"  # per split, the bad items left out under data.on_error = skip


def _splits(cfg: DataConfig, raw: Path, skipped: dict[str, list[dict[str, str]]]
            ) -> tuple[tuple[str, ...], dict[str, tuple[Iterable[InstanceRecord], int]]]:
    """The dataset's category names and, per split, its records and their count; items left out
    under ``data.on_error = skip`` are appended to ``skipped[split]``."""
    if cfg.dataset == "shapes":
        return cfg.shapes.classes, {s: (shapes.generate_split(cfg.shapes, cfg.seed, s), getattr(cfg.shapes, s))
                                    for s in SPLITS}
    if cfg.dataset == "leaves":
        return leaves.CLASSES, {s: (leaves.generate_split(cfg.leaves, cfg.seed, s), getattr(cfg.leaves, s))
                                for s in SPLITS}
    if cfg.dataset == "voc":
        ids = voc.split_ids(raw, cfg.seed, cfg.voc.val_fraction)
        return voc.CLASSES, {s: (voc.load_records(raw, ids[s]), len(ids[s])) for s in SPLITS}
    if cfg.dataset == "cvppp":
        source = cvppp.find_source(raw / "cvppp")
        names = cvppp.split_names(cvppp.plant_names(source), cfg.seed, cfg.cvppp.val_count)
        splits = {s: (cvppp.load_records(source, names[s]), len(names[s])) for s in SPLITS}
        if (raw / "cvppp-test").exists():
            test_source = cvppp.find_source(raw / "cvppp-test")
            test_names = cvppp.plant_names(test_source)
            splits[CHALLENGE] = (cvppp.load_records(test_source, test_names, labelled=False), len(test_names))
        return cvppp.CLASSES, splits
    if cfg.dataset == "cityscapes":
        items = cityscapes.split_names(raw, cfg.seed, cfg.cityscapes.val_count)
        return cityscapes.CLASSES, {s: (cityscapes.load_records(raw, items[s]), len(items[s])) for s in SPLITS}
    if cfg.dataset == "coco":
        sources = {s: getattr(cfg.coco, s) for s in SPLITS}
        cocos = {s: coco.load(src.json) for s, src in sources.items()}
        classes = coco.category_names(cocos["train"])
        for s, split_coco in cocos.items():
            if coco.category_names(split_coco) != classes:
                raise ValueError(f"{sources[s].json}: categories {list(coco.category_names(split_coco))} differ from "
                                 f"the train split's {list(classes)}")
        return classes, {s: (coco.load_records(cocos[s], sources[s].json, sources[s].images, cfg.on_error,
                                               skipped[s], cfg.high_bit_depth), len(cocos[s].getImgIds()))
                         for s in SPLITS}
    raise ValueError(f"data.dataset = {cfg.dataset!r}: no converter")  # the params schema prevents this


def convert(cfg: DataConfig, out_dir: str | Path, raw: str | Path = "data/raw",
            limits: dict[str, int] | None = None) -> dict[str, dict[str, Any]]:
    """Write every split of ``cfg.dataset`` to ``out_dir`` (replaced atomically on success),
    reading downloaded datasets from ``raw`` (what the download stage unpacked).

    Returns per split the counts of images, instances, images without instances, items skipped as
    bad (``data.on_error = skip``: images, and annotations whose image was kept), annotations that
    rasterise to no pixel (each listed with its reason in <out_dir>/skipped.json), the largest
    instance count of an image, the histogram of instance counts (``instances_histogram[k]`` = images
    with k instances) and, for each of ``limits`` (e.g. ``{"train.max_objects": 10}``), how many
    images hold more instances than it (``over_train_max_objects``). A split left without images is
    an error: nothing is replaced.
    """
    skipped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    classes, splits = _splits(cfg, Path(raw), skipped)
    with atomic_directory(out_dir) as tmp:
        stats = {}
        for split, (records, total) in splits.items():
            counts = write_split(records, tmp, split, classes, total=total)
            items = skipped[split]
            if counts["images"] == 0:
                bad = [i for i in items if "annotation_id" not in i]
                reason = f"split {split!r} has no images" + (f" ({len(bad)} skipped as bad, first: "
                                                             f"{bad[0]['path']}: {bad[0]['reason']})" if bad else "")
                raise DataError(Path(out_dir) / f"{split}.json", reason)
            stats[split] = split_stats(counts, items, limits or {})
        write_json(tmp / SKIPPED_REPORT, {split: skipped[split] for split in splits})
    for split, items in skipped.items():
        for item in items:
            kind = "empty" if item.get("empty") else "skipped"
            print(f"{kind} ({split}): {item['path']}: {item['reason']}", file=sys.stderr)
    for split, split_counts in stats.items():
        for key, limit in (limits or {}).items():
            over = split_counts[over_key(key)]
            if over:
                print(f"warning ({split}): {over} of {split_counts['images']} images hold more than {key} = {limit} "
                      f"instances (up to {split_counts['max_instances']}): the extra ones are never "
                      f"{'trained on' if key == 'train.max_objects' else 'reachable'}", file=sys.stderr)
    return stats


def over_key(limit: str) -> str:
    """The convert metric counting a split's images over ``limit`` (a params key): over_train_max_objects."""
    return f"over_{limit.replace('.', '_')}"


def split_stats(counts: dict[str, Any], items: list[dict[str, Any]], limits: dict[str, int]) -> dict[str, Any]:
    """The convert metrics of one split from write_split's counts and its skipped.json items."""
    per_image = np.asarray(counts["instances_per_image"], dtype=np.int64)
    out = {key: counts[key] for key in ("images", "instances", "without_instances")}
    out["skipped"] = sum(1 for i in items if "annotation_id" not in i)
    out["skipped_annotations"] = sum(1 for i in items if "annotation_id" in i and not i.get("empty"))
    out["empty_annotations"] = sum(1 for i in items if i.get("empty"))
    out["max_instances"] = int(per_image.max(initial=0))
    out["instances_histogram"] = np.bincount(per_image).tolist()
    for key, limit in limits.items():
        out[over_key(key)] = int((per_image > limit).sum())
    return out
