"""The learner (runtime/tt_learner.h) over its wire protocol, in-process
(tflm_training.learner.HostLearner: the same C code as the firmware, its
flash a RAM flash with the NVMC's rules): every command against the host
Trainer bit for bit, persistence across power cycles, guarded saves, and
bad input that must change nothing."""

import struct
import zlib

import numpy as np
import pytest

import tflm_training
from learner_helpers import MODEL, blank_flash, plans, samples
from tflm_training import learner
from tflm_training.learner import COMMANDS, DeviceError, HostLearner, LearnerClient

PLANS = plans()
PLAN = PLANS["classifier"]


def _device(flash, plan=PLAN, **kwargs):
    return LearnerClient(HostLearner(MODEL, plan, flash=flash, **kwargs))


def _fresh():
    return tflm_training.Trainer(MODEL, PLAN)


@pytest.mark.parametrize("name", ["classifier", "sampled", "lowrank", "bias_16_bit"])
def test_streamed_training_saved_restored_and_pulled_equals_the_host(name):
    plan = PLANS[name]
    x, y = samples(24)
    flash = blank_flash(plan)
    client = _device(flash, plan)
    host = tflm_training.Trainer(MODEL, plan)
    info = client.info()
    assert (info.model_crc32, info.plan_crc32) == (zlib.crc32(MODEL), zlib.crc32(plan))
    assert info.state_sequence == 0 and not info.restored
    assert info.state_crc32 == zlib.crc32(host.state())
    for epoch in range(2):
        assert client.begin_epoch(epoch) == epoch
        host.begin_epoch(epoch)
        for i in range(12):
            step = client.train(x[i], y[i])
            assert step.loss.view(np.uint32) == np.float32(host.train_step(x[i], y[i])).view(
                np.uint32
            )
    assert step.steps == 24
    result = client.save()
    assert result.saved and result.sequence == 1 and result.pages_erased > 0
    assert client.info().state_crc32 == zlib.crc32(host.state())
    assert client.pull() == host.trained_bytes()
    assert client.pull_state() == host.state()
    # Power cycle: the state comes back; one more step is still the host's.
    client = _device(flash, plan)
    info = client.info()
    assert info.restored and info.state_sequence == 1 and info.steps == 24
    assert info.state_crc32 == zlib.crc32(host.state())
    assert info.slot_status == ("valid", "empty")
    step = client.train(x[20], y[20])
    assert step.loss.view(np.uint32) == np.float32(host.train_step(x[20], y[20])).view(np.uint32)
    predicted, logits = client.predict(x[3])
    assert predicted == host.predict(x[3])
    assert len(logits) == 10 and int(np.argmax(logits)) == predicted
    cls, loss = client.evaluate(x[4], y[4])
    assert cls == host.predict(x[4])
    assert abs(float(loss) - host.evaluate_loss(x[4], y[4])) < 1e-4


def test_saves_alternate_slots_and_the_newest_wins():
    x, y = samples(10)
    flash = blank_flash(PLAN)
    client = _device(flash)
    host = _fresh()
    states = []
    for round_ in range(3):
        for i in range(3):
            client.train(x[i + 3 * round_], y[i + 3 * round_])
            host.train_step(x[i + 3 * round_], y[i + 3 * round_])
        assert client.save().sequence == round_ + 1
        states.append(host.state())
    info = _device(flash).info()
    assert info.state_sequence == 3 and info.state_crc32 == zlib.crc32(states[-1])
    assert info.slot_status == ("valid", "valid")


def test_a_state_saved_for_another_plan_is_refused():
    x, y = samples(4)
    flash = blank_flash(PLANS["lowrank"])  # the largest state
    client = _device(flash)
    client.train(x[0], y[0])
    client.save()
    other = PLANS["sparse"]
    info = _device(flash, other).info()
    assert not info.restored and info.state_sequence == 0 and info.steps == 0
    assert "another model or plan" in info.slot_status
    assert info.state_crc32 == zlib.crc32(tflm_training.Trainer(MODEL, other).state())


def test_factory_reset_forgets_everything():
    x, y = samples(4)
    flash = blank_flash(PLAN)
    client = _device(flash)
    client.train(x[0], y[0])
    client.save()
    assert client.factory_reset() > 0
    info = client.info()
    assert info.steps == 0 and info.state_sequence == 0
    assert info.state_crc32 == zlib.crc32(_fresh().state())
    assert _device(flash).info().state_sequence == 0
    assert set(flash) == {0xFF}


def _unchanged(client, before):
    after = client.info()
    assert (after.state_crc32, after.steps, after.state_sequence) == (
        before.state_crc32,
        before.steps,
        before.state_sequence,
    )


def _error(client, code, match, call):
    before = client.info()
    with pytest.raises(DeviceError, match=match) as caught:
        call()
    assert caught.value.code == code
    _unchanged(client, before)


def test_bad_requests_get_an_error_that_names_the_problem_and_change_nothing():
    x, y = samples(4)
    flash = blank_flash(PLAN)
    client = _device(flash, heldout_samples=2)
    _error(client, 6, "nothing trained yet", client.pull)
    _error(client, 6, "nothing to save", client.save)
    _error(client, 2, "unknown command 66", lambda: client.request(0x42))
    _error(
        client,
        4,
        "uint8 but the model's input is int8",
        lambda: client.train(x[0].view(np.uint8), 1),
    )
    _error(
        client,
        4,
        "float32 but the model's input is int8",
        lambda: client.train(np.zeros(1960 // 4, np.float32), 1),
    )
    _error(
        client,
        4,
        "has 1959 bytes but the model's input has 1960",
        lambda: client.train(x[0].reshape(-1)[:-1], 1),
    )
    _error(client, 5, "label 10 is not a class", lambda: client.train(x[0], 10))
    _error(client, 5, "label -1 is not a class", lambda: client.train(x[0], -1))
    _error(client, 3, "8-byte header", lambda: client.request(COMMANDS["TRAIN"], b"\x09"))
    _error(client, 3, "BEGIN_EPOCH takes", lambda: client.request(COMMANDS["BEGIN_EPOCH"]))
    _error(client, 3, "SAVE takes", lambda: client.request(COMMANDS["SAVE"], b"\0"))
    _error(client, 3, "only bits 0 and 1", lambda: client.request(COMMANDS["SAVE"], b"\x04\0\0\0"))
    _error(
        client,
        3,
        "guarded SAVE needs held-out samples",
        lambda: client.save(learner.GUARD_ACCURACY),
    )
    _error(client, 3, "INFO takes no payload", lambda: client.request(COMMANDS["INFO"], b"x"))
    client.train(x[0], y[0])
    _error(
        client,
        3,
        "PULL of bytes 600..1100",
        lambda: client.request(COMMANDS["PULL"], struct.pack("<II", 600, 500)),
    )
    client.holdout(x[1], y[1])
    client.holdout(x[2], y[2])
    _error(client, 9, "holds 2 samples and is full", lambda: client.holdout(x[3], y[3]))
    assert client.clear_heldout() == (0, 2)


def _raw(device, data):
    """Bytes straight onto the link; the one answer they get."""
    device.write(data)
    answer = device.read(1 << 16, 0)
    assert answer[:2] == b"TL" and zlib.crc32(answer[:-4]) == struct.unpack("<I", answer[-4:])[0]
    command = answer[3]
    (sequence,) = struct.unpack_from("<H", answer, 4)
    (code,) = struct.unpack_from("<H", answer, 12)
    return command, sequence, code, answer[16:-4].decode()


def test_broken_frames_are_answered_with_what_is_wrong():
    x, y = samples(2)
    device = HostLearner(MODEL, PLAN, flash=blank_flash(PLAN))
    client = LearnerClient(device)
    before = client.info()
    good = learner.encode(COMMANDS["TRAIN"], 7, learner.sample_payload(x[0], y[0]))
    flipped = bytearray(good)
    flipped[100] ^= 0x10
    assert _raw(device, bytes(flipped)) == (
        0xFF,
        7,
        1,
        "corrupt frame: its CRC-32 does not match its bytes",
    )
    command, sequence, code, text = _raw(device, good[:-50])
    assert (command, sequence, code) == (0xFF, 7, 1) and text.startswith("truncated frame")
    oversized = learner.encode(COMMANDS["TRAIN"], 8, bytes(5000))
    command, sequence, code, text = _raw(device, oversized)
    assert (sequence, code) == (8, 1) and "oversized frame" in text and "5000 bytes" in text
    command, _, code, text = _raw(device, b"hello, device")
    assert code == 1 and "not a frame" in text
    bad_version = bytearray(learner.encode(COMMANDS["INFO"], 9))
    bad_version[2] = 2
    assert "unknown protocol version" in _raw(device, bytes(bad_version))[3]
    # Noise before a good frame is skipped; the frame is answered.
    device.write(b"\x00\x13garbage" + learner.encode(COMMANDS["INFO"], 11))
    assert device.read(1 << 16, 0)[3] == 0x81
    _unchanged(client, before)
    client.train(x[1], y[1])  # and the device still trains


def test_no_flash_and_too_little_flash_are_refused_clearly():
    client = _device(None)
    with pytest.raises(DeviceError, match="keeps no learned state"):
        x, y = samples(1)
        client.train(x[0], y[0])
        client.save()
    small = bytearray(b"\xff" * 4096)
    with pytest.raises(tflm_training.ArenaTooSmallError, match="reserve more flash"):
        HostLearner(MODEL, PLAN, flash=small)


def test_worn_flash_fails_the_save_and_keeps_the_saved_state():
    x, y = samples(8)
    flash = blank_flash(PLAN)
    client = _device(flash)
    host = _fresh()
    for i in range(3):
        client.train(x[i], y[i])
        host.train_step(x[i], y[i])
    client.save()
    saved = host.state()
    # Slot 1 (the next save's) starts at the region's middle.
    worn = len(flash) // 2 // 4096
    client = _device(flash, worn_page=worn)
    client.train(x[5], y[5])
    with pytest.raises(DeviceError, match=r"read back differs .*worn flash\?.*unchanged") as caught:
        client.save()
    assert caught.value.code == 7
    info = _device(flash).info()
    assert info.state_sequence == 1 and info.state_crc32 == zlib.crc32(saved)


# A bias plan whose first step on samples()[0] overflows in a layer before
# the classifier after the classifier's biases were updated
# (tests/test_training_safety.py).
DIVERGING = tflm_training.TrainingPlan.bias_only(MODEL, learning_rate=1e35).to_bytes()


def test_a_diverged_step_takes_a_device_without_undo_back_to_its_saved_state():
    x, y = samples(1)
    flash = blank_flash(DIVERGING)
    client = _device(flash, DIVERGING)
    assert client.info().undo_bytes == 0
    with pytest.raises(DeviceError, match="channel 11 .*went back to its saved state 0") as caught:
        client.train(x[0], y[0])
    assert caught.value.code == 10
    info = client.info()
    assert info.steps == 0 and info.steps_since_save == 0 and info.state_sequence == 0
    # Not the half-updated model: the model's own weights, as never trained.
    assert info.state_crc32 == zlib.crc32(tflm_training.Trainer(MODEL, DIVERGING).state())
    with pytest.raises(DeviceError, match="nothing to save") as caught:
        client.save()
    assert caught.value.code == 6
    assert set(flash) == {0xFF}


def test_with_an_undo_buffer_a_diverged_step_changes_nothing_on_the_device():
    x, y = samples(1)
    host = tflm_training.Trainer(MODEL, DIVERGING)
    client = _device(blank_flash(DIVERGING), DIVERGING, atomic_steps=True)
    assert client.info().undo_bytes == learner.undo_bytes(host.state_bytes())
    with pytest.raises(DeviceError, match="channel 11 .*the step changed nothing"):
        client.train(x[0], y[0])
    with pytest.raises(tflm_training.DivergedError):
        host.train_step(x[0], y[0])
    assert client.info().state_crc32 == zlib.crc32(host.state())
    assert client.pull_state() == host.state()


def _heldout_results(trainer, x, y):
    return int(np.sum(trainer.predict(x) == y)), trainer.evaluate_loss(x, y)


@pytest.mark.slow
def test_guarded_saves_keep_only_states_that_do_not_lose_held_out_accuracy():
    x, y = samples(80, seed=1)
    heldout_x, heldout_y = x[60:80], y[60:80]
    plan = tflm_training.TrainingPlan.classifier_only(
        MODEL, learning_rate=0.01, momentum=0.5, batch_size=1
    ).to_bytes()
    flash = blank_flash(plan)
    client = _device(flash, plan, heldout_samples=20)
    for i in range(20):
        client.holdout(heldout_x[i], heldout_y[i])
    host = tflm_training.Trainer(MODEL, plan)
    saved = tflm_training.Trainer(MODEL, plan)
    decisions = []
    # Good labels, then wrong labels (which must cost held-out accuracy).
    for labels in (y[:60], (y[:60] + 3) % 10, y[:60]):
        for i in range(60):
            client.train(x[i], labels[i])
            host.train_step(x[i], labels[i])
        now, was = (
            _heldout_results(host, heldout_x, heldout_y),
            _heldout_results(saved, heldout_x, heldout_y),
        )
        result = client.save(learner.GUARD_ACCURACY)
        assert (result.correct, result.saved_correct, result.heldout_count) == (now[0], was[0], 20)
        assert result.saved == (now[0] >= was[0])
        decisions.append(result.saved)
        if result.saved:
            saved.load_state(host.state())
        else:
            assert result.reason == "held-out accuracy dropped"
            host.load_state(saved.state())
        assert client.info().state_crc32 == zlib.crc32(host.state())
    assert decisions[:2] == [True, False]  # the wrong labels were not kept
    assert _device(flash, plan).info().state_crc32 == zlib.crc32(saved.state())


def test_an_info_answer_of_another_firmware_version_is_refused_by_name():
    """A device still running firmware with the 92-byte INFO (before undo
    bytes), or a truncated answer, is not misread."""
    client = _device(blank_flash(PLAN))
    answer = client.request(COMMANDS["INFO"])
    assert learner.Info.decode(answer).num_classes == 10
    for bad in (answer[:92] + answer[96:], answer[:50], answer + bytes(8)):
        with pytest.raises(learner.LinkError, match="learner firmware of another version"):
            learner.Info.decode(bad)
