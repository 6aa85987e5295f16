"""tools/learn.py: stream a dataset to a learner device (the emulated
nRF52840), keep what it learned across runs, and give the model back."""
import json
import shutil
import subprocess
import sys

import pytest

import training_helpers as th
from tflm_training import Interpreter

pytestmark = pytest.mark.skipif(
    shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
    reason="needs qemu-system-arm and gcc-arm-none-eabi (bash tools/install.sh)")

MODEL = th.MODELS / "transfer" / "ds_cnn_fsdd.tflite"


def _learn(*args):
    return subprocess.run([sys.executable, "tools/learn.py", *args], cwd=th.TESTS.parent,
                          capture_output=True, text=True, timeout=600)


def test_a_second_session_goes_on_from_the_saved_state(tmp_path):
    common = ["--model", str(MODEL), "--train_samples", "20", "--test_samples", "20",
              "--heldout_samples", "4", "--epochs", "1", "--out", str(tmp_path)]
    first = _learn(*common, "--save_every", "8", "--guard", "none")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    report = json.loads((tmp_path / "learn.json").read_text())
    assert report["bit_identical"] and report["parameters_bit_identical"]
    assert [s["sequence"] for s in report["saves"]] == [1, 2, 3]  # 8, 16, then the end
    assert report["power_cycle"]["state_came_back"]
    model = (tmp_path / "trained_device.tflite").read_bytes()
    assert model != MODEL.read_bytes()
    Interpreter.from_bytes(model).invoke()
    second = _learn(*common)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "the device holds learned state 3 (20 steps)" in second.stdout
    report = json.loads((tmp_path / "learn.json").read_text())
    assert report["bit_identical"] and report["state_sequence"] == 4
    assert "device == host bit for bit: yes" in second.stdout


def test_bad_invocations_say_what_to_do(tmp_path):
    result = _learn("--out", str(tmp_path))
    assert result.returncode == 2 and "give the model with --model" in result.stderr
    result = _learn("--model", str(MODEL), "--port", "/dev/no-such-port", "--out",
                    str(tmp_path))
    assert result.returncode == 2 and "cannot open serial port /dev/no-such-port" in result.stderr
    assert "Traceback" not in result.stderr
