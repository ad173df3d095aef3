"""Typed, frozen configuration for every params.yaml section.

Each stage loads only the sections it needs with :func:`load_section`. Loading validates
the section against its dataclass: an unknown key, a missing key, a wrong type or a value
out of range raises :class:`ConfigError` naming the file and the dotted key, before any work.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml

T = TypeVar("T")

SHAPE_CLASSES = ("disc", "square", "triangle", "ring")
PRESET_KEY = "preset"  # top-level params key: a file under PRESETS_DIR merged over the sections
PRESETS_DIR = "presets"
OVERRIDES_KEY = "overrides"  # top-level params key: sections merged last, over the preset too


class ConfigError(ValueError):
    """A params file does not match the expected schema."""


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class PathsConfig:
    """Every path the pipeline reads or writes, written once (dvc.yaml reuses them)."""

    raw: str  # downloaded or user-supplied archives (<raw>/archives) and what they unpack to
    data: str  # converted dataset: <data>/<split>.json + <data>/<split>/*.png
    models: str  # checkpoints: best.pt, last.pt
    predictions: str  # per-step predictions of the test split (JSON)
    evaluation: str  # evaluate's files: instance_maps/ (label PNG per test image), cityscapes/ (official eval)
    metrics: str  # metric JSON files and the training history
    figures: str  # PNG figures

    @property
    def history(self) -> Path:
        """The training history CSV (one row per epoch), written by train and drawn by analyze."""
        return Path(self.metrics) / "train_history.csv"


@dataclass(frozen=True)
class ShapesConfig:
    """The embedded synthetic dataset (see rsis.datasets.shapes)."""

    image_size: int
    min_objects: int
    max_objects: int
    min_object_size: int  # bounding-square side in pixels
    max_object_size: int
    min_visible_pixels: int  # objects hidden below this many visible pixels are dropped
    classes: tuple[str, ...]
    noise: float  # std of the background pixel noise, in [0, 1]
    train: int  # split sizes
    val: int
    test: int

    def __post_init__(self) -> None:
        _check_positive(self, "image_size", "min_objects", "max_objects", "min_object_size",
                        "max_object_size", "min_visible_pixels", "train", "val", "test")
        if self.min_objects > self.max_objects:
            raise ConfigError(f"data.shapes.min_objects ({self.min_objects}) must be <= max_objects ({self.max_objects})")
        if self.min_object_size > self.max_object_size:
            raise ConfigError("data.shapes.min_object_size must be <= max_object_size")
        if self.max_object_size > self.image_size:
            raise ConfigError("data.shapes.max_object_size must be <= image_size")
        unknown = [c for c in self.classes if c not in SHAPE_CLASSES]
        if unknown or len(self.classes) < 1 or len(set(self.classes)) != len(self.classes):
            raise ConfigError(f"data.shapes.classes must be distinct names from {SHAPE_CLASSES}, got {list(self.classes)}")
        if not 0.0 <= self.noise <= 1.0:
            raise ConfigError(f"data.shapes.noise must be in [0, 1], got {self.noise}")


@dataclass(frozen=True)
class LeavesConfig:
    """The synthetic leaf dataset (see rsis.datasets.leaves), a stand-in for CVPPP A1."""

    image_size: int
    min_leaves: int
    max_leaves: int
    min_length: float  # leaf length as a fraction of the image side
    max_length: float
    width_ratio: float  # leaf width / length
    min_visible_pixels: int
    noise: float
    train: int
    val: int
    test: int

    def __post_init__(self) -> None:
        _check_positive(self, "image_size", "min_leaves", "max_leaves", "min_length", "max_length", "width_ratio",
                        "min_visible_pixels", "train", "val", "test")
        if self.min_leaves > self.max_leaves or self.min_length > self.max_length:
            raise ConfigError("data.leaves: min_leaves/min_length must be <= max_leaves/max_length")
        if self.max_length > 0.5:
            raise ConfigError(f"data.leaves.max_length must be <= 0.5 (leaves grow from near the centre), "
                              f"got {self.max_length}")
        if not 0.0 <= self.noise <= 1.0:
            raise ConfigError(f"data.leaves.noise must be in [0, 1], got {self.noise}")


@dataclass(frozen=True)
class CvpppConfig:
    """CVPPP LSC A1 (see rsis.datasets.cvppp): archives the user downloaded after registering."""

    archive: str  # .h5 (2017) or .zip/.tar holding A1/plantNNN_{rgb,label}.png (2014) or the .h5
    test_archive: str | None  # optional unlabelled test images -> split "challenge"
    val_count: int  # labelled plants held out for validation (the authors: 32 of 128)

    def __post_init__(self) -> None:
        if self.val_count <= 0:
            raise ConfigError(f"data.cvppp.val_count must be > 0, got {self.val_count}")


@dataclass(frozen=True)
class CityscapesConfig:
    """Cityscapes fine instances (see rsis.datasets.cityscapes): archives need a login."""

    gt_archive: str  # gtFine_trainvaltest.zip
    images_archive: str  # leftImg8bit_trainvaltest.zip
    val_count: int  # official-train images held out for validation (the official val is the test split)

    def __post_init__(self) -> None:
        if self.val_count <= 0:
            raise ConfigError(f"data.cityscapes.val_count must be > 0, got {self.val_count}")


@dataclass(frozen=True)
class CocoSplit:
    json: str  # COCO instances JSON
    images: str  # folder the JSON's file_name entries are relative to


@dataclass(frozen=True)
class CocoConfig:
    """A user's own COCO-format dataset (see rsis.datasets.coco)."""

    train: CocoSplit
    val: CocoSplit
    test: CocoSplit


@dataclass(frozen=True)
class VocConfig:
    """Pascal VOC 2012 + SBD (see rsis.datasets.voc): where to download them and the val share."""

    voc_url: str
    voc_md5: str
    sbd_url: str
    sbd_md5: str
    val_fraction: float  # share of the training pool held out for validation

    def __post_init__(self) -> None:
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"data.voc.val_fraction must be in (0, 1), got {self.val_fraction}")


@dataclass(frozen=True)
class DataConfig:
    dataset: Literal["shapes", "leaves", "voc", "cvppp", "cityscapes", "coco"]
    seed: int
    on_error: Literal["stop", "skip"]  # a bad image or annotation: stop converting, or leave it out and report it
    shapes: ShapesConfig
    leaves: LeavesConfig
    voc: VocConfig
    cvppp: CvpppConfig
    cityscapes: CityscapesConfig
    coco: CocoConfig
    high_bit_depth: Literal["range", "minmax"] = "range"  # 16-bit images to 8 bits (rsis/datasets/images.py)


@dataclass(frozen=True)
class ModelConfig:
    backbone: Literal["resnet18", "resnet34", "resnet50", "resnet101"]
    pretrained: str  # none | imagenet (torchvision's cached weights) | path to a state_dict file
    hidden_dim: int  # decoder width D
    max_steps: int  # decoder steps T at inference
    skip_mode: Literal["concat", "sum", "mul", "none"]
    image_size: int | tuple[int, ...]  # network input: side, or [height, width]
    # Extensions beyond the paper; each default is the paper's behaviour (README "Deviations").
    layer4_width: int | None = None  # planes of the last ResNet stage; None = the ResNet's own (512 for ResNet-18)
    output_stride: Literal[32, 16] = 32  # 16: the last ResNet stage keeps its input resolution
    coord: bool = False  # CoordConv: x and y channels into every ConvLSTM input
    canvas: bool = False  # the union of earlier steps' masks (detached) into every ConvLSTM input
    canvas_gate: bool = False  # mask probability x (1 - canvas): a step cannot claim pixels already covered
    head_pool: Literal["max", "max+mask"] = "max"  # heads' features: max-pooled hidden states
    # (+ the skip projections averaged under the step's mask)
    head_shape: int = 0  # k > 0: the heads also see the step's mask and the image on a k x k grid over the mask's box
    image_skip: bool = False  # the input image at full resolution into the mask head (a 2-layer conv head)
    instance_embedding: bool = False  # per-pixel embedding; each step's mask + similarity to its seed pixel
    aux_masks: bool = False  # deep supervision: each step's mask also read off ConvLSTM_0..3 (loss_weights.aux_mask)

    def __post_init__(self) -> None:
        _check_positive(self, "hidden_dim", "max_steps")
        if self.head_shape < 0:
            raise ConfigError(f"model.head_shape must be >= 0 (0 = off, k = a k x k grid), got {self.head_shape}")
        if self.layer4_width is not None:
            _check_positive(self, "layer4_width")
            if self.pretrained != "none":
                raise ConfigError(f"model.layer4_width = {self.layer4_width}: pretrained ResNet weights exist only for "
                                  f"the ResNet's own last stage (set model.pretrained to none or layer4_width to null)")
        if self.hidden_dim % 16:
            raise ConfigError(f"model.hidden_dim must be a multiple of 16 (widths D..D/16), got {self.hidden_dim}")
        sides = (self.image_size,) if isinstance(self.image_size, int) else self.image_size
        if len(sides) not in (1, 2) or any(side < 32 for side in sides):
            raise ConfigError(f"model.image_size must be a side or [height, width], each >= 32, got {self.image_size}")

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the network input."""
        if isinstance(self.image_size, int):
            return self.image_size, self.image_size
        return (self.image_size[0], self.image_size[-1])


@dataclass(frozen=True)
class LossWeights:
    mask: float
    cls: float
    stop: float
    box: float
    bce: float = 0.0  # pixel BCE on matched pairs next to the soft IoU (an extension; paper: 0)
    aux_mask: float = 0.0  # soft IoU of model.aux_masks' coarse masks on the matched pairs (an extension; paper: 0)
    embedding: float = 0.0  # discriminative loss of model.instance_embedding (an extension; paper: 0)

    def __post_init__(self) -> None:
        for name in ("mask", "cls", "stop", "box", "bce", "aux_mask", "embedding"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.loss_weights.{name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class ScheduleConfig:
    """The staged schedule (see rsis.training.schedule). An epoch number switches a term on at that epoch;
    null switches it on at a validation plateau."""

    class_loss_from: int | None
    stop_loss_from: int | None
    encoder_from: int | None
    patience: int  # epochs without improvement that make a plateau
    min_delta: float  # an improvement must beat the best loss by more than this
    curriculum: bool  # unroll start_steps at first, + steps_cl per plateau, up to model.max_steps
    start_steps: int
    steps_cl: int
    min_steps: int  # under the curriculum the stop loss waits until more steps than this are unrolled
    reload_best_on_switch: bool

    def __post_init__(self) -> None:
        _check_positive(self, "patience", "start_steps", "steps_cl")
        for name in ("class_loss_from", "stop_loss_from", "encoder_from"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"train.schedule.{name} must be >= 0 or null, got {value}")
        if self.min_delta < 0 or self.min_steps < 0:
            raise ConfigError("train.schedule.min_delta and min_steps must be >= 0")


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation, applied jointly to image, masks and boxes."""

    enabled: bool
    hflip: float  # probability of a horizontal flip
    rotation: float  # degrees, uniform in [-rotation, rotation]
    translate: float  # fraction of the image side
    shear: float  # degrees
    scale: tuple[float, ...]  # (min, max) zoom
    vflip: float = 0.0  # probability of a vertical flip (not in the paper)

    def __post_init__(self) -> None:
        for name in ("hflip", "vflip"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"train.augment.{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.translate <= 1.0:
            raise ConfigError(f"train.augment.translate must be in [0, 1], got {self.translate}")
        if self.rotation < 0 or self.shear < 0:
            raise ConfigError("train.augment.rotation and shear must be >= 0")
        if len(self.scale) != 2 or not 0 < self.scale[0] <= self.scale[1]:
            raise ConfigError(f"train.augment.scale must be [min, max] with 0 < min <= max, got {list(self.scale)}")


@dataclass(frozen=True)
class TrainConfig:
    seed: int
    epochs: int
    batch_size: int
    lr_decoder: float
    lr_encoder: float
    weight_decay: float
    lr_decay_epochs: tuple[int, ...]  # epochs at which both learning rates are divided by 10
    max_objects: int  # ground truth is sorted large-to-small and truncated to this many
    loss_weights: LossWeights
    schedule: ScheduleConfig
    augment: AugmentConfig
    num_workers: int
    device: Literal["auto", "cpu", "cuda"]
    amp: bool  # bf16 autocast on CUDA (ignored on CPU)
    channels_last: bool  # channels_last memory format (CPU and CUDA)
    launcher: Literal["none", "torchrun"]  # torchrun: DDP over nproc_per_node processes
    nproc_per_node: int
    resume: bool  # continue from <models>/last.pt when it was written with the same config
    # Extensions beyond the paper; each default is the paper's behaviour (README "Deviations").
    matching: Literal["hungarian", "top-down"] = "hungarian"  # how steps are assigned to targets
    teacher_forcing_epochs: float = 0.0  # canvas from the matched ground truth with probability 1 -> 0 over these epochs
    grad_clip: float = 0.0  # max global gradient norm, 0 = no clipping
    head_targets: Literal["matched", "overlap"] = "matched"  # class/box target: matched GT, or the GT the mask overlaps most
    threads: int = 0  # torch CPU threads of the training (under torchrun shared by its processes), 0 = torch's default
    reproducible: bool = True  # pin the CPU math libraries' ISA (and threads): rsis/reproducible.py

    def __post_init__(self) -> None:
        _check_positive(self, "epochs", "batch_size", "max_objects", "nproc_per_node")
        if self.teacher_forcing_epochs < 0 or self.grad_clip < 0 or self.threads < 0:
            raise ConfigError("train.teacher_forcing_epochs, train.grad_clip and train.threads must be >= 0")
        if self.teacher_forcing_epochs and self.matching == "hungarian":
            raise ConfigError("train.teacher_forcing_epochs > 0 needs train.matching top-down: the Hungarian "
                              "assignment is known only after the whole sequence, too late to feed a step its canvas")
        if self.batch_size % self.nproc_per_node:
            raise ConfigError(f"train.batch_size ({self.batch_size}) must be divisible by "
                              f"train.nproc_per_node ({self.nproc_per_node}): it is the global batch")
        for name in ("lr_decoder", "lr_encoder", "weight_decay", "num_workers"):
            if getattr(self, name) < 0:
                raise ConfigError(f"train.{name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class EvaluateConfig:
    batch_size: int
    stop_threshold: float
    mask_threshold: float
    min_area_fraction: float  # masks smaller than this share of the image are dropped
    # model.instance_embedding only, None = the trained values: the seed term at inference,
    # logit += seed_scale * (seed_radius - squared embedding distance to the step's seed pixel)
    seed_scale: float | None = None
    seed_radius: float | None = None
    # detection score p(c) * objectness, times the mask's maskness when true: the mean probability
    # over the pixels its mask keeps (SOLO's mask scoring); false = the paper's score
    mask_score: bool = False
    # flip test: the network also reads the image flipped along each of these axes; each view's
    # sequence, flipped back, adds the masks no earlier mask covers (IoU <= 0.5), after the image's
    # own sequence, their scores x flip_score. () = the paper's single reading
    test_flips: tuple[Literal["vertical", "horizontal"], ...] = ()
    flip_score: float = 0.5
    # confidence intervals by bootstrap over test images (rsis/evaluation/bootstrap.py); 0 resamples = none
    bootstrap_resamples: int = 1000
    bootstrap_seed: int = 0
    confidence: float = 0.95

    def __post_init__(self) -> None:
        _check_positive(self, "batch_size")
        if self.bootstrap_resamples < 0 or self.bootstrap_resamples == 1:
            raise ConfigError(f"evaluate.bootstrap_resamples must be 0 (no intervals) or at least 2, "
                              f"got {self.bootstrap_resamples}")
        if not 0.0 < self.confidence < 1.0:
            raise ConfigError(f"evaluate.confidence must be in (0, 1), got {self.confidence}")
        for name in ("stop_threshold", "mask_threshold", "min_area_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"evaluate.{name} must be in [0, 1], got {value}")
        if not 0.0 < self.flip_score <= 1.0:
            raise ConfigError(f"evaluate.flip_score must be in (0, 1], got {self.flip_score}")
        if len(set(self.test_flips)) != len(self.test_flips):
            raise ConfigError(f"evaluate.test_flips names an axis twice: {list(self.test_flips)}")
        for name in ("seed_scale", "seed_radius"):
            value = getattr(self, name)
            if value is not None and not value > 0.0:
                raise ConfigError(f"evaluate.{name} must be > 0 or null (the trained value), got {value}")


@dataclass(frozen=True)
class AnalyzeConfig:
    figure_images: int  # images per qualitative figure (best per strategy, random) and in activations.png
    seed: int  # which images the "random" figures show
    pair_threshold: float  # the consecutive-pair rule: a shift of more than this share of the image (paper: 15%)
    min_pair_count: int  # category pairs seen fewer times are left out of the pair chart (paper: 20)
    activation_block: Literal["f0", "f1", "f2", "f3", "f4"]  # encoder block whose maps activations.png shows (paper, Figure 8: f0)
    batch_size: int  # images per encoder forward pass

    def __post_init__(self) -> None:
        _check_positive(self, "figure_images", "min_pair_count", "batch_size")
        if not 0.0 <= self.pair_threshold <= 1.0:
            raise ConfigError(f"analyze.pair_threshold must be in [0, 1], got {self.pair_threshold}")


SECTIONS: dict[str, type] = {
    "paths": PathsConfig,
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "evaluate": EvaluateConfig,
    "analyze": AnalyzeConfig,
}


# --------------------------------------------------------------------------- loading


def read_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Read a params file as a mapping, with errors that name the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read params file {path}: {exc.strerror}") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of sections, got {type(raw).__name__}")
    return raw


def preset_file(path: str | Path, name: str) -> Path:
    return Path(path).parent / PRESETS_DIR / f"{name}.yaml"


def apply_preset(raw: dict[str, Any], path: str | Path) -> tuple[dict[str, Any], str]:
    """params with the overlay ``presets/<preset>.yaml`` merged in (its values win), then the
    ``overrides`` mapping (its values win over both, e.g. ``-S overrides.model.pretrained=none``
    to run a preset without ImageNet weights), and a label for error messages."""
    overrides = raw.get(OVERRIDES_KEY) or {}
    if not isinstance(overrides, dict) or set(overrides) - set(SECTIONS):
        raise ConfigError(f"{path}: {OVERRIDES_KEY} must map params sections ({sorted(SECTIONS)}) to values, "
                          f"got {overrides!r}")
    raw, where = _with_preset(raw, path)
    if overrides:
        raw, where = merge(raw, overrides), f"{where} with overrides"
    return raw, where


def _with_preset(raw: dict[str, Any], path: str | Path) -> tuple[dict[str, Any], str]:
    name = raw.get(PRESET_KEY, "none")
    if name == "none":
        return raw, str(path)
    if not isinstance(name, str):
        raise ConfigError(f"{path}: preset must be a string (a file name under {PRESETS_DIR}/ or none), got {name!r}")
    file = preset_file(path, name)
    if not file.is_file():
        available = sorted(p.stem for p in file.parent.glob("*.yaml")) if file.parent.is_dir() else []
        raise ConfigError(f"{path}: unknown preset {name!r}: {file} does not exist (available: {available + ['none']})")
    overlay = read_params(file)
    unknown = sorted(set(overlay) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{file}: unknown section(s) {unknown}; known: {sorted(SECTIONS)}")
    return merge(raw, overlay), f"{path} with preset {name} ({file})"


def merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overlay`` merged in recursively (overlay values win)."""
    merged = dict(base)
    for key, value in overlay.items():
        merged[key] = merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return merged


def load_section(name: str, path: str | Path = "params.yaml", raw: dict[str, Any] | None = None) -> Any:
    """Load and validate one params section as its frozen dataclass (after applying the preset)."""
    if name not in SECTIONS:
        raise ConfigError(f"unknown params section {name!r}; known: {sorted(SECTIONS)}")
    raw, where = apply_preset(read_params(path) if raw is None else raw, path)
    if name not in raw:
        raise ConfigError(f"{where}: missing section {name!r}")
    try:
        return from_dict(SECTIONS[name], raw[name], name)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_all(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Validate every known section (and reject unknown top-level sections)."""
    raw = read_params(path)
    unknown = sorted(set(raw) - set(SECTIONS) - {PRESET_KEY, OVERRIDES_KEY})
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {unknown}; known: {sorted(SECTIONS)}")
    return {name: load_section(name, path, raw) for name in SECTIONS}


def from_dict(cls: type[T], data: Any, where: str) -> T:
    """Build dataclass ``cls`` from ``data``, checking keys and types recursively."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {_type_name(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key {where}.{unknown[0]} (expected one of {sorted(fields)})")
    missing = [n for n, f in fields.items() if n not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"missing key {where}.{missing[0]}")
    values = {name: _coerce(hints[name], data[name], f"{where}.{name}") for name in data}
    return cls(**values)


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(f"{where} must be one of {list(choices)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in get_args(tp):
            try:
                return _coerce(option, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: {'; '.join(errors)}")
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"{where} must be null, got {value!r}")
        return None
    if origin is tuple:
        (item_type, _ellipsis) = get_args(tp)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where} must be a list, got {_type_name(value)}")
        return tuple(_coerce(item_type, v, f"{where}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp!r} at {where}")  # a bug in this module


def _check_positive(obj: Any, *names: str) -> None:
    section = {PathsConfig: "paths", ShapesConfig: "data.shapes", LeavesConfig: "data.leaves", ModelConfig: "model", TrainConfig: "train",
               EvaluateConfig: "evaluate", AnalyzeConfig: "analyze", ScheduleConfig: "train.schedule"}.get(type(obj), type(obj).__name__)
    for name in names:
        if getattr(obj, name) <= 0:
            raise ConfigError(f"{section}.{name} must be > 0, got {getattr(obj, name)}")


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def to_dict(config: Any) -> dict[str, Any]:
    """A plain nested dict of a config dataclass (for checkpoints and tracking)."""
    return dataclasses.asdict(config)
