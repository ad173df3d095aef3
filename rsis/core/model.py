"""The RSIS network: ResNet encoder, skip projections, a 5-layer ConvLSTM decoder unrolled over
T steps, a mask head at input resolution and class/stop heads on max-pooled hidden states.

A box head (the paper's later versions) regresses one box per step from the same pooled features.

Decoder widths follow the authors' code: ConvLSTM_i has D / 2**i channels (D, D/2, .., D/16);
skip projections map f0..f4 to D, D, D/2, D/4, D/8 so that ``sum`` and ``mul`` skip modes add
or multiply tensors of equal width.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from rsis.config import ModelConfig

NUM_LAYERS = 5
MASK_PRIOR_LOGIT = -2.0
IMAGE_SKIP_WIDTH = 16  # channels of the full-resolution mask head (model.image_skip)
EMBEDDING_WIDTH = 8  # per-pixel instance embedding (model.instance_embedding)
SHAPE_WIDTH = 64  # features the heads get from the step's mask and image over its box (model.head_shape)
EMBEDDING_RADIUS = 1.5  # initial squared distance at which the seed term is 0 (between the loss's margins)


class RSISOutput(NamedTuple):
    mask_logits: torch.Tensor  # [B, T, H, W] at input resolution
    class_logits: torch.Tensor  # [B, T, C] (C includes <eos>/background at index 0)
    stop_logits: torch.Tensor  # [B, T] objectness: sigmoid >= threshold means "an object"
    boxes: torch.Tensor  # [B, T, 4] x0, y0, x1, y1 as fractions of the image side, in [0, 1]
    # model.aux_masks only: each step's mask logits read off ConvLSTM_0..3, [B, T, h_i, w_i]
    aux_mask_logits: tuple[torch.Tensor, ...] = ()
    # model.instance_embedding only: per-pixel instance embedding, [B, E, H, W]
    embedding: torch.Tensor | None = None

    def float(self) -> RSISOutput:
        """Every tensor in float32 (losses and matching whatever the autocast dtype)."""
        return RSISOutput(self.mask_logits.float(), self.class_logits.float(), self.stop_logits.float(),
                          self.boxes.float(), tuple(a.float() for a in self.aux_mask_logits),
                          None if self.embedding is None else self.embedding.float())


def pretrained_state_dict(backbone: str, pretrained: str) -> dict[str, torch.Tensor] | None:
    """The ResNet weights ``model.pretrained`` asks for, or None for 'none'.

    'imagenet' reads torchvision's IMAGENET1K_V1 file from the torch hub cache only (nothing is
    downloaded at run time): when it is missing this fails at once naming the URL and the path.
    Anything else is a path to a state_dict saved with ``torch.save(resnet.state_dict(), path)``.
    """
    if pretrained == "none":
        return None
    if pretrained == "imagenet":
        weights = torchvision.models.get_model_weights(backbone).IMAGENET1K_V1
        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name
        if not path.is_file():
            raise FileNotFoundError(
                f"model.pretrained = imagenet: {path} is missing and nothing is downloaded at run time. "
                f"Download {weights.url} and put it at {path} (or point TORCH_HOME at a cache that has it), "
                f"or set model.pretrained to a state_dict path or to none")
    else:
        path = Path(pretrained)
        if not path.is_file():
            raise FileNotFoundError(f"model.pretrained: state_dict file {path} not found "
                                    f"(expected none, imagenet or the path of a saved ResNet state_dict)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state_dict (a mapping of tensor names to tensors)")
    return state


# block type and blocks per stage of torchvision's ResNets
RESNET_LAYOUTS = {"resnet18": (BasicBlock, [2, 2, 2, 2]), "resnet34": (BasicBlock, [3, 4, 6, 3]),
                  "resnet50": (Bottleneck, [3, 4, 6, 3]), "resnet101": (Bottleneck, [3, 4, 23, 3])}


class ScaledResNet(torchvision.models.ResNet):
    """torchvision's ResNet with the last stage's width set on its own (``layer4_width`` planes
    instead of the ResNet's own); the stem and stages 1-3 are torchvision's."""

    def __init__(self, name: str, layer4_width: int) -> None:
        self.layer4_width, self.stages_built = layer4_width, 0
        block, layers = RESNET_LAYOUTS[name]
        super().__init__(block, layers)

    def _make_layer(self, block: type[nn.Module], planes: int, blocks: int, stride: int = 1,
                    dilate: bool = False) -> nn.Sequential:
        self.stages_built += 1  # torchvision builds layer1..layer4 in order
        return super()._make_layer(block, self.layer4_width if self.stages_built == 4 else planes, blocks, stride, dilate)


class ResNetEncoder(nn.Module):
    """torchvision ResNet truncated before pooling. Returns [f0..f4], deepest first."""

    def __init__(self, name: str, output_stride: int = 32, layer4_width: int | None = None) -> None:
        super().__init__()
        if layer4_width is None:
            net = getattr(torchvision.models, name)(weights=None)
        else:
            net = ScaledResNet(name, layer4_width)
        if output_stride == 16:  # layer4 without its stride (same weights, so pretrained files still load)
            block = net.layer4[0]
            first = block.conv2 if hasattr(block, "conv3") else block.conv1  # the strided conv of the block
            first.stride, block.downsample[0].stride = (1, 1), (1, 1)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu)  # stride 2
        self.pool = net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        # channels of f0..f4: what each stage's last BatchNorm normalises
        self.channels = tuple([m for m in stage.modules() if isinstance(m, nn.BatchNorm2d)][-1].num_features
                              for stage in (self.layer4, self.layer3, self.layer2, self.layer1, self.stem))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f4 = self.stem(x)  # [B, 64, H/2, W/2]
        f3 = self.layer1(self.pool(f4))  # [B, 64e, H/4, W/4]
        f2 = self.layer2(f3)  # [B, 128e, H/8, W/8]
        f1 = self.layer3(f2)  # [B, 256e, H/16, W/16]
        f0 = self.layer4(f1)  # [B, 512e, H/32, W/32] (H/16 with output stride 16)
        return [f0, f1, f2, f3, f4]


class ConvLSTMCell(nn.Module):
    """A convolutional LSTM cell: all four gates from one 3x3 conv over [fixed | step | hidden].

    ``fixed`` inputs are the same at every decoder step (skip features, coordinates): their share of
    the gate conv is computed once per image by :meth:`fixed_gates` (a conv is linear in its input
    channels), and each step convolves only its ``step`` inputs and the hidden state.
    """

    def __init__(self, fixed_channels: int, step_channels: int, hidden_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.fixed_channels, self.step_channels, self.hidden_channels = fixed_channels, step_channels, hidden_channels
        self.gates = nn.Conv2d(fixed_channels + step_channels + hidden_channels, 4 * hidden_channels, kernel_size,
                               padding=kernel_size // 2)

    def fixed_gates(self, fixed: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
        """The gates' bias plus the conv of the fixed inputs [B, F, h, w]: [B, 4 * hidden, h, w]
        (``like`` [B, *, h, w] gives the shape when there are no fixed inputs)."""
        if fixed is None:
            return self.gates.bias.view(1, -1, 1, 1).expand(like.shape[0], -1, *like.shape[-2:])
        return F.conv2d(fixed, self.gates.weight[:, :self.fixed_channels], self.gates.bias,
                        padding=self.gates.padding)

    def forward(self, fixed_gates: torch.Tensor, x: torch.Tensor | None,
                state: tuple[torch.Tensor, torch.Tensor] | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``fixed_gates`` from :meth:`fixed_gates`; ``x`` [B, step_channels, h, w] (None when 0);
        ``state`` (h, c) of the previous step, None at the first (zeros)."""
        start, parts = self.fixed_channels, []
        if x is not None:
            parts.append(x)
        else:
            start += self.step_channels
        if state is not None:
            parts.append(state[0])
        gates = fixed_gates
        if parts:
            stop = self.fixed_channels + self.step_channels + (self.hidden_channels if state is not None else 0)
            gates = gates + F.conv2d(torch.cat(parts, dim=1) if len(parts) > 1 else parts[0],
                                     self.gates.weight[:, start:stop], padding=self.gates.padding)
        i, f, o, g = gates.chunk(4, dim=1)
        c = torch.sigmoid(i) * torch.tanh(g)
        if state is not None:
            c = c + torch.sigmoid(f) * state[1]
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


# Called after every decoder step with (step t, that step's mask logits [B, H, W], the model's own
# canvas after the step [B, 1, H, W]); returns the canvas the next step sees. Training passes a
# rsis.core.matcher.StepMatcher here (per-step assignment and teacher forcing); inference passes none.
Feedback = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]


def coordinates(like: torch.Tensor) -> torch.Tensor:
    """CoordConv channels for a [B, C, h, w] tensor: x and y in [-1, 1], [B, 2, h, w]."""
    b, _, h, w = like.shape
    ys = torch.linspace(-1.0, 1.0, h, device=like.device, dtype=like.dtype)
    xs = torch.linspace(-1.0, 1.0, w, device=like.device, dtype=like.dtype)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"))  # [2, h, w]: x then y
    return grid.expand(b, 2, h, w)


def mask_pool(features: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Average of ``features`` [B, C, h, w] weighted by ``weights`` [B, 1, H, W] (area-resized): [B, C]."""
    w = F.interpolate(weights, size=features.shape[-2:], mode="area")  # [B, 1, h, w]
    return (features * w).sum((2, 3)) / w.sum((2, 3)).clamp_min(1e-6)


def mask_boxes(probability: torch.Tensor) -> torch.Tensor:
    """Bounding boxes (x0, y0, x1, y1 in pixels, edges) of probability >= 0.5 in [B, 1, H, W]; the whole
    image where no pixel reaches it: [B, 4]."""
    foreground = probability[:, 0] >= 0.5  # [B, H, W]
    boxes = []
    for covered in (foreground.any(1), foreground.any(2)):  # columns [B, W], rows [B, H]
        side = covered.shape[1]
        first = covered.float().argmax(1)  # first maximal value: the first covered index
        end = side - covered.flip(1).float().argmax(1)
        empty = ~covered.any(1)
        boxes += [torch.where(empty, 0, first), torch.where(empty, side, end)]
    x0, x1, y0, y1 = boxes
    return torch.stack([x0, y0, x1, y1], 1).to(probability.dtype)


def shape_grid(probability: torch.Tensor, images: torch.Tensor, size: int) -> torch.Tensor:
    """The step's mask probability and the image, bilinearly sampled on a ``size`` x ``size`` grid over
    the mask's box (RoIAlign): what the object looks like, whatever its size and place. [B, 4 * size^2]."""
    boxes = mask_boxes(probability)
    rois = torch.cat([torch.arange(len(boxes), device=boxes.device, dtype=boxes.dtype)[:, None], boxes], 1)
    grid = torchvision.ops.roi_align(torch.cat([probability, images], 1), rois, size, sampling_ratio=2,
                                     aligned=True)  # [B, 4, size, size]
    return grid.flatten(1)


def gated_logits(logits: torch.Tensor, canvas: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """The logits of sigmoid(logits) * (1 - canvas): pixels the canvas covers fall to probability 0."""
    return (logits.sigmoid() * (1.0 - canvas)).clamp(eps, 1.0 - eps).logit()


def initial_model(cfg: ModelConfig, num_classes: int, seed: int) -> RSIS:
    """The network training starts from: weights drawn right after ``torch.manual_seed(seed)``,
    then the encoder from ``cfg.pretrained`` when set. The analyze stage rebuilds it as "before training"."""
    torch.manual_seed(seed)
    return load_pretrained(RSIS(cfg, num_classes), cfg.pretrained)


# torchvision's ResNet names -> ResNetEncoder's (the stem is one Sequential; fc is dropped)
_TORCHVISION_NAMES = {"conv1.": "stem.0.", "bn1.": "stem.1."}


def load_pretrained(model: RSIS, pretrained: str) -> RSIS:
    """Copy the ResNet weights ``model.pretrained`` names (none | imagenet | a state_dict path) into
    the encoder, in place, and return the model. Constructing RSIS never reads a file: evaluation
    rebuilds a trained network from its checkpoint's config without looking for these weights."""
    state = pretrained_state_dict(model.backbone, pretrained)
    if state is None:
        return model

    def rename(key: str) -> str:
        for old, new in _TORCHVISION_NAMES.items():
            if key.startswith(old):
                return new + key[len(old):]
        return key

    state = {rename(k): v for k, v in state.items() if not k.startswith("fc.")}
    expected = {k: v.shape for k, v in model.encoder.state_dict().items()}
    found = {k: v.shape for k, v in state.items()}
    if found != expected:
        wrong = sorted(k for k in expected.keys() | found.keys() if expected.get(k) != found.get(k))
        raise ValueError(f"model.pretrained = {pretrained}: not a {model.backbone} state_dict "
                         f"({len(wrong)} missing, unexpected or mis-shaped tensors, e.g. {wrong[:3]})")
    model.encoder.load_state_dict(state)
    return model


class RSIS(nn.Module):
    def __init__(self, cfg: ModelConfig, num_classes: int) -> None:
        super().__init__()
        d = cfg.hidden_dim
        self.max_steps = cfg.max_steps
        self.input_size = cfg.input_size  # (height, width) the data pipeline resizes images to
        self.skip_mode = cfg.skip_mode
        self.coord, self.canvas, self.canvas_gate, self.head_pool = cfg.coord, cfg.canvas, cfg.canvas_gate, cfg.head_pool
        self.backbone = cfg.backbone
        self.encoder = ResNetEncoder(cfg.backbone, cfg.output_stride, cfg.layer4_width)  # random: see load_pretrained
        skip_widths = (d, d, d // 2, d // 4, d // 8)
        hidden_widths = tuple(d // 2**i for i in range(NUM_LAYERS))  # D, D/2, D/4, D/8, D/16
        self.skips = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out))
            for c_in, c_out in zip(self.encoder.channels, skip_widths)
        )
        # ConvLSTM_i input: fixed [S_i (level 0, or concat skips) | x, y] and per step [upsampled h_{i-1}
        # (or h_{i-1} summed with / multiplied by S_i) | canvas]
        coord, canvas = 2 * cfg.coord, int(cfg.canvas)
        cells = [ConvLSTMCell(skip_widths[0] + coord, canvas, hidden_widths[0])]
        for i in range(1, NUM_LAYERS):
            fixed_skip = skip_widths[i] if cfg.skip_mode == "concat" else 0
            cells.append(ConvLSTMCell(fixed_skip + coord, hidden_widths[i - 1] + canvas, hidden_widths[i]))
        self.cells = nn.ModuleList(cells)
        self.image_skip = cfg.image_skip
        if cfg.image_skip:  # mask head: ReLU(1x1 conv of upsampled h_4 + 3x3 conv of the image), then 1x1 conv
            # (1x1 convs at full resolution: a few-channel 3x3 conv there costs 10x more on a CPU)
            self.image_features = nn.Conv2d(3, IMAGE_SKIP_WIDTH, 3, padding=1)  # computed once per image
            self.mask_features = nn.Conv2d(hidden_widths[-1], IMAGE_SKIP_WIDTH, 1, bias=False)
            self.mask_head = nn.Conv2d(IMAGE_SKIP_WIDTH, 1, 1)
        else:
            self.mask_head = nn.Conv2d(hidden_widths[-1], 1, 3, padding=1)
        # Prior-probability init (as RetinaNet's classifier): masks start near p = 0.12 instead of
        # 0.5 everywhere, where the soft-IoU gradient is weak; training leaves this plateau sooner.
        nn.init.constant_(self.mask_head.bias, MASK_PRIOR_LOGIT)
        pooled = sum(hidden_widths) + (sum(skip_widths) if cfg.head_pool == "max+mask" else 0)
        self.head_shape = cfg.head_shape
        if cfg.head_shape:  # the step's mask and the image over the mask's box, through one hidden layer
            self.shape_head = nn.Sequential(nn.Linear(4 * cfg.head_shape**2, SHAPE_WIDTH), nn.ReLU())
            pooled += SHAPE_WIDTH
        self.class_head = nn.Linear(pooled, num_classes)
        self.stop_head = nn.Linear(pooled, 1)
        self.box_head = nn.Linear(pooled, 4)  # centre x, y and width, height (sigmoid: fractions of the side)
        self.instance_embedding = cfg.instance_embedding
        if cfg.instance_embedding:  # per-pixel embedding from [3x3 conv of the image | upsampled S_3, S_4]
            self.embedding_image = nn.Conv2d(3, IMAGE_SKIP_WIDTH, 3, padding=1)
            self.embedding_head = nn.Sequential(
                nn.Conv2d(IMAGE_SKIP_WIDTH + skip_widths[3] + skip_widths[4], 32, 1), nn.ReLU(),
                nn.Conv2d(32, EMBEDDING_WIDTH, 1))
            # the seed's similarity term: logit += scale * (radius - squared distance to the seed's embedding)
            self.seed_scale = nn.Parameter(torch.tensor(-2.0))  # softplus: 0.13, grows as the embedding learns
            self.seed_radius = nn.Parameter(torch.tensor(EMBEDDING_RADIUS))
        self.aux_masks = cfg.aux_masks
        if cfg.aux_masks:  # deep supervision of the decoder: a 1x1 conv mask head on ConvLSTM_0..3
            self.aux_heads = nn.ModuleList(nn.Conv2d(w, 1, 1) for w in hidden_widths[:-1])
            for head in self.aux_heads:
                nn.init.constant_(head.bias, MASK_PRIOR_LOGIT)

    def decoder_parameters(self) -> list[nn.Parameter]:
        """Everything but the encoder: skip projections, ConvLSTMs and heads."""
        encoder = {id(p) for p in self.encoder.parameters()}
        return [p for p in self.parameters() if id(p) not in encoder]

    def forward(self, images: torch.Tensor, steps: int | None = None, feedback: Feedback | None = None,
                seed_scale: float | None = None, seed_radius: float | None = None,
                lengths: list[int] | None = None) -> RSISOutput:
        """Unroll ``steps`` decoder steps (default: ``max_steps``) over ``images`` [B, 3, H, W].

        ``feedback`` (training) decides the canvas each next step sees; without it the canvas is
        the model's own: the union of its masks so far, thresholded at probability 0.5 as inference
        emits them (binary, like a teacher-forced canvas of ground truth).
        ``seed_scale`` / ``seed_radius`` (model.instance_embedding only; None = the trained values):
        the seed term ``logit += seed_scale * (seed_radius - squared distance to the seed's embedding)``
        at inference (``evaluate.seed_scale``, ``evaluate.seed_radius``).
        ``lengths`` (training): the steps each image needs, non-increasing along the batch. Image b
        stops at step lengths[b]: later steps run on the images still going only (a prefix of the
        batch), and its outputs there are zeros. The decoder has no batch statistics, so each image's
        first lengths[b] steps are what a full unroll gives it; the losses read no later step.
        """
        steps = self.max_steps if steps is None else steps
        active = _active_counts(lengths, images.shape[0], steps)  # images unrolled at each step
        blocks = self.encoder(images)  # f0..f4
        skips = [proj(f) for proj, f in zip(self.skips, blocks)]  # S_0..S_4
        fixed_gates = []  # per level: the gate share of the inputs that are the same at every step
        for i, (cell, skip) in enumerate(zip(self.cells, skips)):
            fixed = [skip] if i == 0 or self.skip_mode == "concat" else []
            if self.coord:
                fixed.append(coordinates(skip))
            fixed_gates.append(cell.fixed_gates(torch.cat(fixed, dim=1) if fixed else None, skip))
        image_features = self.image_features(images) if self.image_skip else None  # [B, 16, H, W]
        embedding = None
        if self.instance_embedding:
            scale = F.softplus(self.seed_scale) if seed_scale is None else seed_scale
            radius = self.seed_radius if seed_radius is None else seed_radius
            full = images.shape[-2:]
            embedding = self.embedding_head(torch.cat(
                [self.embedding_image(images)]
                + [F.interpolate(s, size=full, mode="bilinear", align_corners=False) for s in skips[3:]], dim=1))
            flat_embedding = embedding.flatten(2)  # [B, E, H*W]
        states: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * NUM_LAYERS
        masks: list[torch.Tensor] = []  # per step [n_t, H, W]
        # What the heads read, kept per step and read once after the unroll: nothing the heads compute
        # feeds the next step, and one pass over every (step, image) pair makes ~4,000 fewer small
        # operator calls per training step than a pass per step (1.05x images/s, docs/benchmarks.md).
        hidden: list[list[torch.Tensor]] = [[] for _ in range(NUM_LAYERS)]  # per level, per step [n_t, C_i, h_i, w_i]
        probabilities: list[torch.Tensor | None] = []  # per step [n_t, 1, H, W]
        unrolled: list[int] = []  # n_t: the images step t ran on (a prefix of the batch)
        all_skips = skips  # the whole batch's; the loop slices ``skips`` to the images still going
        canvas = own = images.new_zeros(images.shape[0], 1, *images.shape[-2:])  # [B, 1, H, W]
        for t in range(steps):
            n = active[t]
            if n == 0:  # every image has stopped: the rest of the outputs are zeros
                break
            if n < canvas.shape[0]:  # images past their length leave the batch (a prefix stays)
                states = [None if s is None else (s[0][:n], s[1][:n]) for s in states]
                skips, fixed_gates = [s[:n] for s in skips], [g[:n] for g in fixed_gates]
                canvas, own = canvas[:n], own[:n]
                image_features = None if image_features is None else image_features[:n]
                flat_embedding = None if embedding is None else flat_embedding[:n]
            x = None
            for i, (cell, skip) in enumerate(zip(self.cells, skips)):
                step_inputs = []
                if i > 0:
                    up = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
                    step_inputs.append(self._merge(up, skip))
                if self.canvas:
                    step_inputs.append(F.interpolate(canvas, size=skip.shape[-2:], mode="area"))  # covered share
                x = torch.cat(step_inputs, dim=1) if len(step_inputs) > 1 else step_inputs[0] if step_inputs else None
                states[i] = cell(fixed_gates[i], x, states[i])
                x = states[i][0]
                hidden[i].append(x)
            up = F.interpolate(x, size=images.shape[-2:], mode="bilinear", align_corners=False)
            if self.image_skip:
                mask = self.mask_head(F.relu(self.mask_features(up) + image_features))  # [B, 1, H, W]
            else:
                mask = self.mask_head(up)  # [B, 1, H, W]
            if embedding is not None:  # + similarity to the embedding at the step's most confident free pixel
                free = gated_logits(mask, canvas) if self.canvas_gate else mask
                seed = free.detach().flatten(1).argmax(1)  # [B]
                query = flat_embedding.gather(2, seed.view(-1, 1, 1).expand(-1, flat_embedding.shape[1], 1))  # [B, E, 1]
                distance = (flat_embedding - query).pow(2).sum(1).view_as(mask[:, 0])  # [B, H, W]
                mask = mask + (scale * (radius - distance))[:, None]
            if self.canvas_gate:  # p = sigmoid(mask) * (1 - canvas), back to a logit
                mask = gated_logits(mask, canvas)
            masks.append(mask[:, 0])  # [B, H, W]
            # [n, 1, H, W]: what the heads read of the step's own mask (no gradient into the mask from them)
            probability = mask.detach().sigmoid() if self.head_pool == "max+mask" or self.head_shape else None
            probabilities.append(probability)
            unrolled.append(n)
            own = torch.maximum(own, (mask.detach() >= 0.0).to(own.dtype))  # emitted: probability >= 0.5
            canvas = own if feedback is None else feedback(t, mask[:, 0].detach(), own)
        rows = _Rows(unrolled, images.shape[0], steps, images.device)
        classes, stops, boxes, aux = self._heads(images, all_skips, hidden, probabilities, rows)
        return RSISOutput(
            mask_logits=rows.per_step(torch.cat(masks)),  # [B, T, H, W]
            class_logits=classes,  # [B, T, C]
            stop_logits=stops,  # [B, T]
            boxes=boxes,  # [B, T, 4]
            aux_mask_logits=aux,
            embedding=embedding,
        )

    def _heads(self, images: torch.Tensor, skips: list[torch.Tensor], hidden: list[list[torch.Tensor]],
               probabilities: list[torch.Tensor | None], rows: _Rows
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
        """Class, stop and box of every step, and the auxiliary masks, from what each step left:
        ``hidden[i][t]`` ConvLSTM_i's state [n_t, C_i, h_i, w_i], ``probabilities[t]`` the step's
        detached mask probability [n_t, 1, H, W] (None when no head reads it). Every (step, image)
        pair is one row of one batch (``rows``); returns [B, T, C], [B, T], [B, T, 4] and per level
        [B, T, h_i, w_i], zeros where an image had stopped."""
        image, per_step = rows.image, rows.per_step
        levels = [torch.cat(states) for states in hidden]  # per level [P, C_i, h_i, w_i]
        pooled = [torch.amax(h, dim=(2, 3)) for h in levels]  # [P, C_i]
        probability = torch.cat(probabilities) if probabilities[0] is not None else None  # [P, 1, H, W]
        if self.head_pool == "max+mask":  # what the step's own mask covers, in every skip level
            pooled += [mask_pool(s.index_select(0, image), probability) for s in skips]
        if self.head_shape:
            pooled.append(self.shape_head(shape_grid(probability, images.index_select(0, image), self.head_shape)))
        features = torch.cat(pooled, dim=1)  # [P, sum(widths)]
        boxes = torchvision.ops.box_convert(self.box_head(features).sigmoid(), "cxcywh", "xyxy")
        aux = tuple(per_step(head(h)[:, 0]) for head, h in zip(self.aux_heads, levels)) if self.aux_masks else ()
        return per_step(self.class_head(features)), per_step(self.stop_head(features)[:, 0]), per_step(boxes), aux

    def _merge(self, up: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """The per-step part of ConvLSTM_i's input from h_{i-1} (concat: S_i is a fixed input)."""
        if self.skip_mode == "concat":
            return up
        if self.skip_mode == "sum":
            return up + skip
        if self.skip_mode == "mul":
            return up * skip
        return up  # "none"


def _active_counts(lengths: list[int] | None, batch: int, steps: int) -> list[int]:
    """How many images (a prefix of the batch) each of ``steps`` steps unrolls: all of them without
    ``lengths``, else those whose length exceeds the step (a length above ``steps`` runs them all).
    ``lengths`` must be non-increasing, >= 1."""
    if lengths is None:
        return [batch] * steps
    if len(lengths) != batch or any(a < b for a, b in zip(lengths, lengths[1:])) or min(lengths, default=1) < 1:
        raise ValueError(f"lengths must hold one count >= 1 per image, non-increasing; got {lengths} for {batch} images")
    return [sum(length > t for length in lengths) for t in range(steps)]


class _Rows:
    """The (step, image) pairs an unroll ran, step by step: ``unrolled[t]`` = n_t, step t ran on the
    first n_t images. Per-step outputs concatenated in that order are rows [P, ...]; ``per_step``
    puts them at [image, step] of a [batch, steps, ...] tensor, zeros where an image had stopped (and at
    steps that did not run: all images had)."""

    def __init__(self, unrolled: list[int], batch: int, steps: int, device: torch.device) -> None:
        self.batch, self.steps = batch, steps
        self.image = torch.cat([torch.arange(n, device=device) for n in unrolled])  # [P] each row's image
        self.step = torch.cat([torch.full((n,), t, device=device, dtype=torch.long) for t, n in enumerate(unrolled)])

    def per_step(self, rows: torch.Tensor) -> torch.Tensor:
        """[P, ...] -> [batch, steps, ...]."""
        return rows.new_zeros(self.batch, self.steps, *rows.shape[1:]).index_put((self.image, self.step), rows)
