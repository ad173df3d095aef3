"""The staged training schedule as a pure function of progress and config.

The paper switches its loss terms on in stages (mask only, then the class loss, then the stop
loss), starts fine-tuning the encoder at some point, and (for long sequences) unrolls only a few
decoder steps at first, adding more each time the validation loss stops improving. All of it is
the state below, advanced once per epoch by :func:`advance` from the epoch's validation loss.
Nothing here touches a model: :mod:`rsis.training.fit` reads the state to pick loss weights, the
number of unrolled steps, the learning rates and whether the encoder trains.

A *plateau* is ``patience`` epochs in a row without a validation loss below the best so far
(by more than ``min_delta``). On a plateau, the first of these that applies happens (one per epoch):

1. the encoder starts training   (when ``encoder_from`` is null, i.e. "on a plateau");
2. the class loss switches on    (when ``class_loss_from`` is null);
3. the curriculum adds ``steps_cl`` unrolled steps (when enabled and below the maximum);
4. the stop loss switches on     (when ``stop_loss_from`` is null), but only once the unrolled
   length exceeds ``min_steps`` under the curriculum.

Terms with an epoch number switch on at the start of that epoch. Every change of phase resets
the best-loss tracker (the validation loss of a different phase is not comparable) and, with
``reload_best_on_switch``, asks the trainer to reload the best checkpoint first (as the authors'
scripts did when a loss term switched on).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from rsis.config import ScheduleConfig


@dataclass(frozen=True)
class ScheduleState:
    epoch: int  # the epoch about to run
    class_on: bool
    stop_on: bool
    encoder_on: bool
    steps: int  # decoder steps unrolled in training and validation
    best_loss: float  # best validation loss in the current phase
    epochs_since_best: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ScheduleState:
        return cls(**data)

    @property
    def phase(self) -> str:
        """A short readable name, e.g. 'mask+cls, steps 3, encoder frozen'."""
        terms = "+".join(t for t, on in (("mask", True), ("cls", self.class_on), ("stop", self.stop_on)) if on)
        return f"{terms}, steps {self.steps}, encoder {'training' if self.encoder_on else 'frozen'}"


@dataclass(frozen=True)
class Transition:
    """What :func:`advance` changed at an epoch boundary."""

    events: tuple[str, ...]  # e.g. ("class loss on",) or ("steps 2 -> 3",)
    reload_best: bool  # the trainer should reload the best checkpoint before the next epoch


def initial_state(cfg: ScheduleConfig, max_steps: int) -> ScheduleState:
    steps = min(cfg.start_steps, max_steps) if cfg.curriculum else max_steps
    return ScheduleState(
        epoch=0,
        class_on=cfg.class_loss_from == 0,
        stop_on=cfg.stop_loss_from == 0 and _stop_allowed(cfg, steps),
        encoder_on=cfg.encoder_from == 0,
        steps=steps,
        best_loss=math.inf,
        epochs_since_best=0,
    )


def _stop_allowed(cfg: ScheduleConfig, steps: int) -> bool:
    return not cfg.curriculum or steps > cfg.min_steps


def advance(state: ScheduleState, val_loss: float, cfg: ScheduleConfig, max_steps: int
            ) -> tuple[ScheduleState, Transition]:
    """The state for the next epoch, given the validation loss of the epoch that just ended."""
    improved = val_loss < state.best_loss - cfg.min_delta
    best = val_loss if improved else state.best_loss
    since = 0 if improved else state.epochs_since_best + 1
    nxt = state.epoch + 1
    changes: dict = {}
    events: list[str] = []
    switched_term = False

    # Terms scheduled by epoch number.
    if not state.encoder_on and cfg.encoder_from is not None and nxt >= cfg.encoder_from:
        changes["encoder_on"] = True
        events.append("encoder training")
    if not state.class_on and cfg.class_loss_from is not None and nxt >= cfg.class_loss_from:
        changes["class_on"] = True
        events.append("class loss on")
        switched_term = True
    if (not state.stop_on and cfg.stop_loss_from is not None and nxt >= cfg.stop_loss_from
            and _stop_allowed(cfg, state.steps)):
        changes["stop_on"] = True
        events.append("stop loss on")
        switched_term = True

    # One plateau-triggered change, in the documented order.
    if since >= cfg.patience and not events:
        if not state.encoder_on and cfg.encoder_from is None:
            changes["encoder_on"] = True
            events.append("encoder training (plateau)")
        elif not state.class_on and cfg.class_loss_from is None:
            changes["class_on"] = True
            events.append("class loss on (plateau)")
            switched_term = True
        elif cfg.curriculum and state.steps < max_steps:
            steps = min(state.steps + cfg.steps_cl, max_steps)
            changes["steps"] = steps
            events.append(f"steps {state.steps} -> {steps} (plateau)")
            if (not state.stop_on and cfg.stop_loss_from is not None and nxt >= cfg.stop_loss_from
                    and _stop_allowed(cfg, steps)):
                changes["stop_on"] = True
                events.append("stop loss on")
                switched_term = True
        elif not state.stop_on and cfg.stop_loss_from is None and _stop_allowed(cfg, state.steps):
            changes["stop_on"] = True
            events.append("stop loss on (plateau)")
            switched_term = True

    if events:  # a new phase: its validation losses start a new comparison
        best, since = math.inf, 0
    new = dataclasses.replace(state, epoch=nxt, best_loss=best, epochs_since_best=since, **changes)
    return new, Transition(events=tuple(events), reload_best=switched_term and cfg.reload_best_on_switch)


def loss_weights(state: ScheduleState, weights: dict[str, float]) -> dict[str, float]:
    """The configured weights with the terms that are not yet on set to 0."""
    on = {"mask": True, "box": True, "cls": state.class_on, "stop": state.stop_on}
    return {k: (w if on.get(k, True) else 0.0) for k, w in weights.items()}


def learning_rates(epoch: int, base_encoder: float, base_decoder: float, decay_epochs: tuple[int, ...],
                   encoder_on: bool) -> tuple[float, float]:
    """(encoder lr, decoder lr) for an epoch: x0.1 at each decay epoch reached; 0 for a frozen encoder."""
    factor = 0.1 ** sum(epoch >= e for e in decay_epochs)
    return (base_encoder * factor if encoder_on else 0.0), base_decoder * factor
