"""Pascal VOC 2012 + SBD end to end on miniature archives in the real formats: palette PNGs with
void borders, SBD .mat files from scipy.io.savemat, served by a loopback HTTP server, downloaded,
checked, unpacked and converted."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from conftest import VOC
from loopback import serve
from rsis.datasets.convert import convert
from rsis.datasets.format import decode_mask
from rsis.datasets.sources import download
from rsis.datasets.voc import CLASSES

H, W = 20, 24
VOC_TRAIN, VOC_VAL = ["2007_000001", "2007_000002"], ["2007_000010", "2007_000011"]
SBD_TRAIN, SBD_VAL = ["2007_000001", "2008_000100", "2008_000101"], ["2008_000102", "2007_000010"]
PERSON, DOG = CLASSES.index("person") + 1, CLASSES.index("dog") + 1


def _palette_png(path: Path, array: np.ndarray) -> None:
    im = Image.fromarray(array.astype(np.uint8))
    im.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])  # L -> P, as VOC's files
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)


def _jpeg(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (H, W, 3), dtype=np.uint8)).save(path, quality=95)


def _voc_annotation(root: Path, image_id: str) -> None:
    """Two instances with 255 borders; instance 1 is mostly person with a few dog pixels."""
    obj, cls = np.zeros((H, W), np.uint8), np.zeros((H, W), np.uint8)
    obj[2:8, 2:10], cls[2:8, 2:10] = 1, PERSON
    cls[2, 2] = DOG  # a minority label: the instance's class is the majority one
    obj[10:16, 12:20], cls[10:16, 12:20] = 2, DOG
    for lab in (obj, cls):  # void outlines around both objects
        lab[1, 1:11], lab[9, 1:11], lab[9:17, 11], lab[16, 11:21] = 255, 255, 255, 255
    _palette_png(root / "SegmentationObject" / f"{image_id}.png", obj)
    _palette_png(root / "SegmentationClass" / f"{image_id}.png", cls)


def _sbd_annotation(root: Path, image_id: str, n: int) -> None:
    seg = np.zeros((H, W), np.uint8)
    for k in range(1, n + 1):
        seg[k * 3:k * 3 + 2, 2:20] = k
    (root / "inst").mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(root / "inst" / f"{image_id}.mat", {"GTinst": {
        "Segmentation": seg, "Categories": np.array([[PERSON if k % 2 else DOG] for k in range(1, n + 1)], np.uint8)}})


def _archives(tmp_path: Path) -> Path:
    src, www = tmp_path / "src", tmp_path / "www"
    voc = src / "VOCdevkit/VOC2012"
    for i, image_id in enumerate(VOC_TRAIN + VOC_VAL):
        _jpeg(voc / "JPEGImages" / f"{image_id}.jpg", i)
        _voc_annotation(voc, image_id)
    (voc / "ImageSets/Segmentation").mkdir(parents=True)
    (voc / "ImageSets/Segmentation/train.txt").write_text("\n".join(VOC_TRAIN) + "\n")
    (voc / "ImageSets/Segmentation/val.txt").write_text("\n".join(VOC_VAL) + "\n")
    sbd = src / "benchmark_RELEASE/dataset"
    for i, image_id in enumerate(SBD_TRAIN + SBD_VAL):
        _jpeg(sbd / "img" / f"{image_id}.jpg", 100 + i)
        _sbd_annotation(sbd, image_id, n=1 + i % 3)
    (sbd / "train.txt").write_text("\n".join(SBD_TRAIN) + "\n")
    (sbd / "val.txt").write_text("\n".join(SBD_VAL) + "\n")
    www.mkdir()
    with tarfile.open(www / "VOCtrainval_11-May-2012.tar", "w") as tar:
        tar.add(src / "VOCdevkit", arcname="VOCdevkit")
    with tarfile.open(www / "benchmark.tgz", "w:gz") as tar:
        tar.add(src / "benchmark_RELEASE", arcname="benchmark_RELEASE")
    return www


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def converted(tmp_path, data_cfg):
    www = _archives(tmp_path)
    with serve(www) as server:
        voc = dataclasses.replace(VOC, voc_url=f"{server.url}/VOCtrainval_11-May-2012.tar",
                                  voc_md5=_md5(www / "VOCtrainval_11-May-2012.tar"),
                                  sbd_url=f"{server.url}/benchmark.tgz", sbd_md5=_md5(www / "benchmark.tgz"),
                                  val_fraction=0.2)
        cfg = dataclasses.replace(data_cfg, dataset="voc", voc=voc)
        manifest = download(cfg, tmp_path / "raw", progress=False)
        stats = convert(cfg, tmp_path / "data", tmp_path / "raw")
    return tmp_path / "data", stats, manifest


def _split(root: Path, split: str) -> dict:
    return json.loads((root / f"{split}.json").read_text())


def test_splits_follow_the_authors_recipe(converted):
    root, stats, manifest = converted
    assert [a["extracted_to"].split("/")[-1] for a in manifest["archives"]] == ["voc", "sbd"]
    names = {s: sorted(Path(i["file_name"]).stem for i in _split(root, s)["images"]) for s in ("train", "val", "test")}
    assert names["test"] == sorted(VOC_VAL)  # test = VOC 2012 seg val
    pool = sorted((set(VOC_TRAIN) | set(SBD_TRAIN) | set(SBD_VAL)) - set(VOC_VAL))
    assert sorted(names["train"] + names["val"]) == pool and len(names["val"]) == 1  # 20% of 5
    assert stats["test"]["images"] == 2
    assert [c["name"] for c in _split(root, "train")["categories"]] == list(CLASSES)


def test_voc_annotation_wins_keeps_void_and_takes_the_majority_class(converted):
    root = converted[0]
    split = next(s for s in ("train", "val") if any("2007_000001" in i["file_name"] for i in _split(root, s)["images"]))
    doc = _split(root, split)
    image = next(i for i in doc["images"] if "2007_000001" in i["file_name"])
    anns = [a for a in doc["annotations"] if a["image_id"] == image["id"]]
    instances = [a for a in anns if not a["iscrowd"]]
    assert sorted(a["category_id"] for a in instances) == sorted([PERSON, DOG])  # VOC's two, not SBD's one
    person = next(a for a in instances if a["category_id"] == PERSON)
    assert decode_mask(person["segmentation"]).sum() == 6 * 8  # incl. the one minority-labelled pixel
    ignore = [a for a in anns if a["iscrowd"]]
    assert len(ignore) == 1 and decode_mask(ignore[0]["segmentation"]).sum() == 10 + 10 + 8 + 10 - 1  # (16, 11) is on two outlines


def test_sbd_only_images_use_gtinst(converted):
    root = converted[0]
    docs = [_split(root, s) for s in ("train", "val")]
    doc = next(d for d in docs if any("2008_000101" in i["file_name"] for i in d["images"]))
    image = next(i for i in doc["images"] if "2008_000101" in i["file_name"])
    instances = [a for a in doc["annotations"] if a["image_id"] == image["id"]]
    assert [a["category_id"] for a in instances] == [PERSON, DOG, PERSON]  # SBD_TRAIN[2]: 3 instances
    assert all(not a["iscrowd"] for a in instances)


def test_missing_annotation_is_a_clear_error(tmp_path, data_cfg, converted):
    raw = tmp_path / "raw"
    (raw / "sbd/benchmark_RELEASE/dataset/inst/2008_000100.mat").unlink()
    cfg = dataclasses.replace(data_cfg, dataset="voc", voc=dataclasses.replace(VOC, val_fraction=0.2))
    with pytest.raises(FileNotFoundError, match="2008_000100.mat not found"):
        convert(cfg, tmp_path / "data2", raw)
    assert not (tmp_path / "data2").exists()


def test_void_marked_only_in_segmentation_class_is_still_ignored(tmp_path, data_cfg, converted):
    """Annotation tools often write 255 in SegmentationClass and 0 in SegmentationObject."""
    raw = tmp_path / "raw"
    obj_path = raw / "voc/VOCdevkit/VOC2012/SegmentationObject/2007_000001.png"
    with Image.open(obj_path) as im:
        obj = np.asarray(im).copy()
    obj[obj == 255] = 0
    _palette_png(obj_path, obj)
    cfg = dataclasses.replace(data_cfg, dataset="voc", voc=dataclasses.replace(VOC, val_fraction=0.2))
    convert(cfg, tmp_path / "data2", raw)
    split = next(s for s in ("train", "val")
                 if any("2007_000001" in i["file_name"] for i in _split(tmp_path / "data2", s)["images"]))
    doc = _split(tmp_path / "data2", split)
    image = next(i for i in doc["images"] if "2007_000001" in i["file_name"])
    ignore = [a for a in doc["annotations"] if a["image_id"] == image["id"] and a["iscrowd"]]
    assert len(ignore) == 1 and decode_mask(ignore[0]["segmentation"]).sum() == 10 + 10 + 8 + 10 - 1
