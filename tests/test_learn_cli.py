"""tools/learn.py: stream a dataset to a learner device (the emulated
nRF52840), keep what it learned across runs, and give the model back."""

import json
import shutil
import subprocess
import sys

import pytest

import training_helpers as th
from tflm_training import Interpreter, TrainingPlan

pytestmark = pytest.mark.skipif(
    shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
    reason="needs qemu-system-arm and gcc-arm-none-eabi (bash tools/install.sh)",
)

MODEL = th.TRANSFER_MODEL


def _learn(*args):
    return subprocess.run(
        [sys.executable, "tools/learn.py", *args],
        cwd=th.TESTS.parent,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.firmware
def test_a_second_session_goes_on_from_the_saved_state(tmp_path):
    common = [
        "--model",
        str(MODEL),
        "--train_samples",
        "20",
        "--test_samples",
        "20",
        "--heldout_samples",
        "4",
        "--epochs",
        "1",
        "--out",
        str(tmp_path),
    ]
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


@pytest.mark.slow
def test_bad_invocations_say_what_to_do(tmp_path):
    result = _learn("--out", str(tmp_path))
    assert result.returncode == 2 and "give the model with --model" in result.stderr
    result = _learn("--model", str(MODEL), "--port", "/dev/no-such-port", "--out", str(tmp_path))
    assert result.returncode == 2 and "cannot open serial port /dev/no-such-port" in result.stderr
    assert "Traceback" not in result.stderr


def _tree(folder):
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.mark.firmware
def test_a_saturating_session_is_refused_and_the_device_keeps_its_flash(tmp_path):
    """A plan whose rate pins the classifier: accepted with --max_saturation
    1 (a warning), refused by default, and the refused session's device
    flash never replaces the last one (--out stays as it was)."""
    model = MODEL.read_bytes()
    plan = tmp_path / "hot_plan.bin"
    plan.write_bytes(TrainingPlan.classifier_only(model, learning_rate=1e6).to_bytes())
    out = tmp_path / "out"
    common = [
        "--model",
        str(MODEL),
        "--plan",
        str(plan),
        "--train_samples",
        "10",
        "--test_samples",
        "10",
        "--heldout_samples",
        "2",
        "--epochs",
        "1",
        "--atomic_steps",
        "on",
        "--out",
        str(out),
    ]
    first = _learn(*common, "--max_saturation", "1")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "warning: training saturated operator 10" in first.stdout
    report = json.loads((out / "learn.json").read_text())
    assert report["undo_bytes"] > 0 and report["saturation"][0]["weights_newly_pinned"] > 0.5
    before = _tree(out)
    second = _learn(*common)
    assert second.returncode == 2, second.stdout[-3000:] + second.stderr[-3000:]
    assert second.stderr.startswith("error: training saturated the model: operator 10")
    assert second.stderr.count("\n") == 1 and "Traceback" not in second.stderr
    assert _tree(out) == before
