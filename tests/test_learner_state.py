"""The learned state (runtime/training/tt_trainer_state.h): a trainer restored from
it goes on exactly as the one that saved it, for every kind of update,
and a state that is not this trainer's is refused without changing it."""

import struct

import numpy as np
import pytest

import tflm_training
from learner_helpers import MODEL, plans, samples

PLANS = plans()


def _train(trainer, x, y, first, count, epoch_every=None):
    losses = []
    for i in range(first, first + count):
        if epoch_every and i % epoch_every == 0:
            trainer.begin_epoch(i // epoch_every)
        losses.append(np.float32(trainer.train_step(x[i], y[i])))
    return np.array(losses)


@pytest.mark.parametrize("name", sorted(PLANS))
def test_a_restored_trainer_goes_on_bit_for_bit(name):
    plan = PLANS[name]
    x, y = samples(30)
    first = tflm_training.Trainer(MODEL, plan)
    # 13 steps: the state is saved 1 sample into a batch of 3, in epoch 1.
    _train(first, x, y, 0, 13, epoch_every=12)
    state = first.state()
    second = tflm_training.Trainer(MODEL, plan)
    assert second.state() != state
    second.load_state(state)
    assert second.state() == state
    assert second.selected_channels() == first.selected_channels()
    a = _train(first, x, y, 13, 14, epoch_every=12)
    b = _train(second, x, y, 13, 14, epoch_every=12)
    assert a.view(np.uint32).tolist() == b.view(np.uint32).tolist()
    assert first.state() == second.state()
    assert first.trained_bytes() == second.trained_bytes()


def test_state_layout_is_counters_then_parameters():
    plan = PLANS["classifier"]
    trainer = tflm_training.Trainer(MODEL, plan)
    x, y = samples(5)
    _train(trainer, x, y, 0, 4)
    state = trainer.state()
    steps, epoch, in_batch, reserved = struct.unpack_from("<IIiI", state)
    assert (steps, epoch, in_batch, reserved) == (4, 0, 1, 0)
    # The parameter copies come first in the learned block, in the runtime's
    # order (640 weight bytes, then 40 bias bytes: no alignment padding).
    assert state[16 : 16 + 680] == trainer.trained_bytes()


def _refused(trainer, state, match):
    before = trainer.state()
    with pytest.raises(tflm_training.BadStateError, match=match):
        trainer.load_state(state)
    assert trainer.state() == before


def test_states_that_are_not_this_trainers_are_refused_and_change_nothing():
    x, y = samples(10)
    donor = tflm_training.Trainer(MODEL, PLANS["classifier"])
    _train(donor, x, y, 0, 5)
    state = bytearray(donor.state())
    trainer = tflm_training.Trainer(MODEL, PLANS["classifier"])
    _train(trainer, x, y, 0, 2)
    _refused(trainer, bytes(state[:-4]), "bytes")
    _refused(trainer, bytes(state) + b"\0\0\0\0", "bytes")
    bad = bytearray(state)
    struct.pack_into("<i", bad, 8, 3)  # 3 samples into a batch of 3
    _refused(trainer, bytes(bad), "batch")
    bad = bytearray(state)
    struct.pack_into("<I", bad, 12, 1)
    _refused(trainer, bytes(bad), "batch")
    # A NaN in the optimizer state (the last float: a bias velocity or sum).
    bad = bytearray(state)
    struct.pack_into("<f", bad, len(bad) - 4, float("nan"))
    _refused(trainer, bytes(bad), "finite")
    other = tflm_training.Trainer(MODEL, PLANS["bias"])
    _refused(trainer, other.state(), "bytes")


def test_a_lowrank_state_of_another_shape_is_refused():
    x, y = samples(10)
    trainer = tflm_training.Trainer(MODEL, PLANS["lowrank"])
    _train(trainer, x, y, 0, 6)
    state = bytearray(trainer.state())
    # The low-rank header's rows field: find it by its value (64 rows, 64 cols, rank 4).
    header = struct.pack("<iiii", 64, 64, 4, 2)
    at = bytes(state).find(header)
    assert at > 0
    struct.pack_into("<i", state, at + 8, 5)
    _refused(trainer, bytes(state), "plan")
