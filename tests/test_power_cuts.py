"""Power cuts during a save (runtime/learner/tt_state_store.h), at every flash
event: before each erase and word write, and halfway through each (a
half-erased page, a half-programmed word). After every cut the device
boots with EITHER the state saved before OR the new one, byte for byte,
and one more training step is bit-identical to the host's from that state.
(In-process here, with the firmware's own C code over a RAM flash;
tests/test_learner_firmware.py cuts the emulated board's flash file.)"""

import zlib

import numpy as np
import pytest

import tflm_training
from learner_helpers import MODEL, blank_flash, samples
from tflm_training.learner import DeviceError, HostLearner, LearnerClient

SMALL = tflm_training.TrainingPlan.classifier_only(
    MODEL, update="bias", learning_rate=0.02, momentum=0.9, batch_size=2
).to_bytes()
LARGE = tflm_training.TrainingPlan.classifier_only(
    MODEL, learning_rate=0.02, momentum=0.9, batch_size=2
).to_bytes()
X, Y = samples(12)


def _client(flash, plan, cut=-1):
    return LearnerClient(HostLearner(MODEL, plan, flash=flash, cut_at=cut))


def _train(client, host, first, count):
    for i in range(first, first + count):
        client.train(X[i], Y[i])
        host.train_step(X[i], Y[i])


class Scenario:
    """A device that saved `saves` states, then trains 3 more steps and
    saves again: the save the cuts interrupt."""

    def __init__(self, plan, saves):
        self.plan = plan
        self.flash = blank_flash(plan)
        client = _client(self.flash, plan)
        host = tflm_training.Trainer(MODEL, plan)
        for k in range(saves):
            _train(client, host, 3 * k, 3)
            client.save()
        self.saves = saves
        self.old = host.state()
        _train(client, host, 3 * saves, 3)
        self.new = host.state()
        self.first_step = 3 * saves + 3

    def run(self, cut):
        """Cuts the save at event `cut`; (state found at boot, whether the
        save had finished)."""
        flash = bytearray(self.flash)
        client = _client(flash, self.plan, cut)
        host = tflm_training.Trainer(MODEL, self.plan)
        if self.saves:
            host.load_state(self.old)
        _train(client, host, 3 * self.saves, 3)
        try:
            client.save()
            finished = True
        except DeviceError as error:
            assert error.code == 7  # the flash stopped answering
            finished = False
        booted = _client(flash, self.plan)
        return booted, finished, client.link.flash_events


def _check_after_cut(scenario, cut):
    booted, finished, events = scenario.run(cut)
    info = booted.info()
    states = {
        zlib.crc32(scenario.old): (scenario.old, scenario.saves),
        zlib.crc32(scenario.new): (scenario.new, scenario.saves + 1),
    }
    assert info.state_crc32 in states, f"cut {cut}: a state that is neither old nor new"
    state, sequence = states[info.state_crc32]
    assert info.state_sequence == sequence
    if finished:
        assert state == scenario.new
    # One more step from the state found: the host's, bit for bit.
    host = tflm_training.Trainer(MODEL, scenario.plan)
    host.load_state(state)
    i = scenario.first_step
    step = booted.train(X[i], Y[i])
    assert step.loss.view(np.uint32) == np.float32(host.train_step(X[i], Y[i])).view(np.uint32)
    assert booted.pull_state() == host.state()
    return finished, events


@pytest.mark.slow
@pytest.mark.parametrize("saves", [0, 1, 2])
def test_every_cut_of_a_small_save_leaves_the_old_or_the_new_state(saves):
    scenario = Scenario(SMALL, saves)
    cut, outcomes = 0, []
    while True:
        finished, events = _check_after_cut(scenario, cut)
        outcomes.append(finished)
        if finished:
            break
        cut += 1
    # Every event of the save was a cut point, each operation at both its
    # events; only a cut past the last one lets the save finish.
    assert cut == events and events % 2 == 0 and events >= 2 * (1 + 16)
    assert outcomes == [False] * cut + [True]


@pytest.mark.slow
def test_cuts_across_a_large_save_leave_the_old_or_the_new_state():
    scenario = Scenario(LARGE, 1)
    _, _, events = scenario.run(10**9)
    # The erases, the first and last 40 events (the header's among them) and
    # a stride through the payload's words: with the small saves' every
    # event, well over a thousand cut points in all.
    cuts = set(range(0, 40)) | set(range(events - 40, events)) | set(range(0, events, 8))
    assert len(cuts) > 500
    for cut in sorted(cuts):
        finished, _ = _check_after_cut(scenario, cut)
        assert not finished


def test_cuts_during_a_factory_reset_leave_the_newest_state_or_none():
    scenario = Scenario(SMALL, 2)
    factory = zlib.crc32(tflm_training.Trainer(MODEL, SMALL).state())
    cut, seen = 0, set()
    while True:
        flash = bytearray(scenario.flash)
        client = _client(flash, SMALL, cut)
        try:
            client.factory_reset()
            done = True
        except DeviceError:
            done = False
        crc = _client(flash, SMALL).info().state_crc32
        assert crc in (zlib.crc32(scenario.old), factory)
        seen.add(crc)
        if done:
            assert crc == factory
            break
        cut += 1
    assert seen == {zlib.crc32(scenario.old), factory}
