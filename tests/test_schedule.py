"""The staged schedule as a pure function: no model, no training."""

import math

from conftest import schedule_cfg
from rsis.training.schedule import ScheduleState, advance, initial_state, learning_rates, loss_weights

WEIGHTS = {"mask": 1.0, "cls": 0.1, "stop": 0.5, "box": 0.5}


def _run(cfg, losses, max_steps=10):
    """States after each epoch's validation loss, and the events of each transition."""
    state = initial_state(cfg, max_steps)
    states, events = [state], []
    for loss in losses:
        state, transition = advance(state, loss, cfg, max_steps)
        states.append(state)
        events.append(transition.events)
    return states, events


def test_everything_on_from_the_start_never_changes():
    cfg = schedule_cfg()
    states, events = _run(cfg, [1.0, 1.0, 1.0, 1.0, 1.0])
    assert all(s.class_on and s.stop_on and s.encoder_on and s.steps == 10 for s in states)
    assert all(e == () for e in events)
    assert loss_weights(states[0], WEIGHTS) == WEIGHTS


def test_terms_switch_on_at_their_epochs():
    cfg = schedule_cfg(class_loss_from=2, stop_loss_from=4, encoder_from=1)
    states, events = _run(cfg, [5.0, 4.0, 3.0, 2.0, 1.0])
    assert [s.encoder_on for s in states] == [False, True, True, True, True, True]
    assert [s.class_on for s in states] == [False, False, True, True, True, True]
    assert [s.stop_on for s in states] == [False, False, False, False, True, True]
    assert loss_weights(states[0], WEIGHTS) == {"mask": 1.0, "cls": 0.0, "stop": 0.0, "box": 0.5}
    assert events[1] == ("class loss on",) and events[3] == ("stop loss on",)


def test_plateau_switches_class_then_stop_and_resets_the_tracker():
    cfg = schedule_cfg(class_loss_from=None, stop_loss_from=None, patience=2)
    # improves, then 2 epochs without improvement -> class on; again -> stop on
    states, events = _run(cfg, [3.0, 2.0, 2.5, 2.5, 1.0, 1.5, 1.5])
    assert events[3] == ("class loss on (plateau)",)
    assert states[4].class_on and not states[4].stop_on
    assert states[4].best_loss == math.inf and states[4].epochs_since_best == 0
    assert events[6] == ("stop loss on (plateau)",)
    assert states[7].stop_on


def test_min_delta_counts_tiny_improvements_as_no_improvement():
    cfg = schedule_cfg(class_loss_from=None, patience=2, min_delta=0.1)
    _, events = _run(cfg, [1.0, 0.95, 0.93])
    assert events[2] == ("class loss on (plateau)",)


def test_curriculum_grows_steps_on_plateaus_and_gates_the_stop_loss():
    cfg = schedule_cfg(curriculum=True, start_steps=2, steps_cl=2, min_steps=5, patience=1)
    states, events = _run(cfg, [1.0] * 10, max_steps=7)
    assert [s.steps for s in states] == [2, 2, 4, 4, 6, 6, 7, 7, 7, 7, 7]  # capped at max_steps
    # stop_loss_from = 0 but the stop loss waits until more than min_steps = 5 steps unroll
    assert [s.stop_on for s in states] == [False] * 4 + [True] * 7
    assert events[1] == ("steps 2 -> 4 (plateau)",)
    assert events[3] == ("steps 4 -> 6 (plateau)", "stop loss on")
    assert events[5] == ("steps 6 -> 7 (plateau)",)
    assert all(e == () for e in events[6:])  # nothing left to switch on: plateaus change nothing


def test_encoder_on_plateau_comes_first():
    cfg = schedule_cfg(encoder_from=None, class_loss_from=None, patience=1)
    states, events = _run(cfg, [1.0, 1.0, 1.0, 1.0])
    assert events[1] == ("encoder training (plateau)",) and events[3] == ("class loss on (plateau)",)
    assert learning_rates(0, 1e-3, 1e-2, (), states[0].encoder_on) == (0.0, 1e-2)


def test_reload_is_requested_only_when_a_loss_term_switches_on():
    cfg = schedule_cfg(class_loss_from=1, curriculum=True, start_steps=2, patience=1, reload_best_on_switch=True)
    state = initial_state(cfg, 5)
    state, t1 = advance(state, 1.0, cfg, 5)
    assert t1.events == ("class loss on",) and t1.reload_best
    state, t2 = advance(state, 1.0, cfg, 5)  # first epoch of the new phase: an improvement by definition
    assert t2.events == ()
    state, t3 = advance(state, 1.0, cfg, 5)
    assert t3.events == ("steps 2 -> 3 (plateau)",) and not t3.reload_best


def test_learning_rate_decay_and_state_round_trip():
    assert learning_rates(0, 1e-3, 1e-2, (2, 4), True) == (1e-3, 1e-2)
    enc, dec = learning_rates(4, 1e-3, 1e-2, (2, 4), True)
    assert math.isclose(enc, 1e-5) and math.isclose(dec, 1e-4)
    state = initial_state(schedule_cfg(curriculum=True), 6)
    assert ScheduleState.from_dict(state.to_dict()) == state
    assert state.phase == "mask+cls, steps 2, encoder training"
