"""The learner firmware on the emulated nRF52840 (QEMU mps2-an386, the
nRF52840's memory layout): samples streamed over its UART, the learned
state in its flash (a host file, so it survives the emulator), power
cycles and power cuts, bad bytes on the wire, and a serial-port client
(pyserial) through a pty. The device's losses, state and parameters must
equal the host Trainer's bit for bit."""

import shutil
import zlib

import numpy as np
import pytest

import tflm_training
from learner_helpers import MODEL, plans, samples
from tflm_training import learner
from tflm_training.learner import COMMANDS, DeviceError, LearnerClient
from tools import learner_firmware, learning

pytestmark = [
    pytest.mark.firmware,
    pytest.mark.skipif(
        shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
        reason="needs qemu-system-arm and gcc-arm-none-eabi (bash tools/install.sh)",
    ),
]

PLAN = plans()["sampled"]
X, Y = samples(16)


@pytest.fixture(scope="module")
def firmware(tmp_path_factory):
    out = tmp_path_factory.mktemp("learner")
    built, sizes = learner_firmware.build_learner_firmware(
        "mps2_an386", MODEL, PLAN, out, heldout_samples=4
    )
    return built, sizes


def _boot(firmware, flash, **kwargs):
    device = learner_firmware.EmulatedLearner(firmware[0].elf, flash, **kwargs)
    return device, LearnerClient(device, timeout=30)


def _train(client, host, first, count, epoch=None):
    if epoch is not None:
        client.begin_epoch(epoch)
        host.begin_epoch(epoch)
    for i in range(first, first + count):
        step = client.train(X[i], Y[i])
        assert step.loss.view(np.uint32) == np.float32(host.train_step(X[i], Y[i])).view(np.uint32)
        assert step.count > 0  # instructions, counted exactly in QEMU
    return step


def test_the_image_holds_no_samples_and_reserves_two_slots(firmware):
    built, sizes = firmware
    image = built.bin.read_bytes()
    assert len(image) == built.summary["image_bytes"] < len(MODEL) + 128 * 1024
    assert MODEL in image and X[0].tobytes() not in image
    assert sizes.state_region_bytes == 2 * -(-(32 + sizes.state_bytes) // 4096) * 4096
    assert built.usage.flash_bytes <= 1048576
    assert built.usage.ram_bytes + built.usage.stack_bytes <= 262144


def test_streamed_learning_survives_a_power_cycle_bit_for_bit(firmware, tmp_path):
    flash = tmp_path / "flash.bin"
    host = tflm_training.Trainer(MODEL, PLAN)
    device, client = _boot(firmware, flash)
    try:
        info = client.info()
        assert info.firmware_crc32 == zlib.crc32(firmware[0].bin.read_bytes())
        assert info.state_crc32 == zlib.crc32(host.state()) and not info.restored
        _train(client, host, 0, 6, epoch=0)
        _train(client, host, 6, 6, epoch=1)
        result = client.save()
        assert result.saved and result.sequence == 1 and result.count > 0
    finally:
        device.close()
    assert flash.stat().st_size == firmware[1].state_region_bytes
    device, client = _boot(firmware, flash)
    try:
        info = client.info()
        assert info.restored and info.state_sequence == 1 and info.steps == 12
        assert info.state_crc32 == zlib.crc32(host.state()) and info.restore_count > 0
        _train(client, host, 12, 3)
        assert client.pull() == host.trained_bytes()
        assert client.pull_state() == host.state()
        device_model = host.export(host.split_trained_bytes(client.pull()))
        assert device_model == host.export()
    finally:
        device.close()


def test_power_cuts_in_the_emulated_flash_leave_the_old_or_the_new_state(firmware, tmp_path):
    flash = tmp_path / "flash.bin"
    host = tflm_training.Trainer(MODEL, PLAN)
    device, client = _boot(firmware, flash)
    try:
        _train(client, host, 0, 3, epoch=0)
        client.save()
    finally:
        device.close()
    old = host.state()
    saved_flash = flash.read_bytes()
    _train_host = tflm_training.Trainer(MODEL, PLAN)
    _train_host.load_state(old)
    for i in range(3, 6):
        _train_host.train_step(X[i], Y[i])
    new = _train_host.state()
    pages = -(-(32 + len(new)) // 4096)
    events = 2 * (pages + -(-(len(new) + 32) // 4))
    # Mid-erase, the first payload word (both halves), mid-payload, the
    # header's last word (torn and not), and past the end.
    for cut in (
        0,
        1,
        2 * pages - 1,
        2 * pages,
        2 * pages + 1,
        events // 2 + 1,
        events - 2,
        events - 1,
        events,
    ):
        flash.write_bytes(saved_flash)
        device, client = _boot(firmware, flash, cut=cut)
        try:
            for i in range(3, 6):
                client.train(X[i], Y[i])
            try:
                client.save()
                finished = True
            except learner.LinkError:
                finished = False
            if not finished:
                assert device.wait(10) == 71, f"cut {cut}: the power cut did not stop the device"
        finally:
            device.close()
        assert finished == (cut >= events), f"cut {cut} of {events} events"
        device, client = _boot(firmware, flash)
        try:
            info = client.info()
            assert info.state_crc32 in (zlib.crc32(old), zlib.crc32(new)), f"cut {cut}"
            state = old if info.state_crc32 == zlib.crc32(old) else new
            assert info.state_sequence == (1 if state is old else 2)
            check = tflm_training.Trainer(MODEL, PLAN)
            check.load_state(state)
            step = client.train(X[6], Y[6])
            assert step.loss.view(np.uint32) == np.float32(check.train_step(X[6], Y[6])).view(
                np.uint32
            )
        finally:
            device.close()


def test_worn_flash_and_another_plans_state(firmware, tmp_path):
    flash = tmp_path / "flash.bin"
    device, client = _boot(firmware, flash)
    try:
        client.train(X[0], Y[0])
        client.save()
    finally:
        device.close()
    device, client = _boot(firmware, flash, worn_page=firmware[1].state_region_bytes // 8192)
    try:
        client.train(X[1], Y[1])
        with pytest.raises(DeviceError, match="worn flash") as caught:
            client.save()
        assert caught.value.code == 7
        assert client.info().state_sequence == 1
    finally:
        device.close()
    other_plan = plans()["classifier"]
    other, _ = learner_firmware.build_learner_firmware(
        "mps2_an386", MODEL, other_plan, tmp_path / "other"
    )
    device = learner_firmware.EmulatedLearner(other.elf, flash)
    try:
        info = LearnerClient(device).info()
        assert not info.restored and info.state_sequence == 0 and info.steps == 0
        assert "another model or plan" in info.slot_status
    finally:
        device.close()


def test_bad_bytes_on_the_uart_get_an_error_and_lose_nothing(firmware, tmp_path):
    device, client = _boot(firmware, tmp_path / "flash.bin")
    try:
        client.train(X[0], Y[0])
        before = client.info()
        frame = learner.encode(COMMANDS["TRAIN"], 77, learner.sample_payload(X[1], Y[1]))
        # Truncated: the device notices the silence after the last byte.
        device.write(frame[:-100])
        with pytest.raises(DeviceError, match="truncated frame") as caught:
            client.receive(COMMANDS["TRAIN"], 77, timeout=20)
        assert caught.value.code == 1
        corrupt = bytearray(frame)
        corrupt[500] ^= 1
        device.write(bytes(corrupt))
        with pytest.raises(DeviceError, match="CRC-32 does not match"):
            client.receive(COMMANDS["TRAIN"], 77, timeout=20)
        device.write(learner.encode(COMMANDS["TRAIN"], 78, bytes(6000)))
        with pytest.raises(DeviceError, match="oversized frame.*6000 bytes"):
            client.receive(COMMANDS["TRAIN"], 78, timeout=60)
        with pytest.raises(DeviceError, match="label 12 is not a class"):
            client.train(X[1], 12)
        after = client.info()
        assert (after.state_crc32, after.steps) == (before.state_crc32, before.steps)
        assert client.train(X[1], Y[1]).steps == 2
    finally:
        device.close()


def test_a_serial_port_client_through_a_pty(firmware, tmp_path):
    pytest.importorskip("serial")
    device = learning.Device(
        elf=firmware[0].elf, flash_path=tmp_path / "flash.bin", serial="pty", timeout=30
    )
    try:
        assert device.emulator.pty_path.startswith("/dev/pts/")
        host = tflm_training.Trainer(MODEL, PLAN)
        _train(device.client, host, 0, 3, epoch=0)
        assert device.client.save().saved
        device.power_cycle()
        info = device.client.info()
        assert info.restored and info.state_crc32 == zlib.crc32(host.state())
    finally:
        device.close()
