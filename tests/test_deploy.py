"""tools/deploy.py: the main job end to end (emulated nRF52840) and the
errors users hit first.

The end-to-end run trains the DS-CNN transfer model's classifier on a
reduced FSDD subset in QEMU (about 15 s) and checks the report.
"""
import json
import subprocess
import sys

import numpy as np
import pytest

import training_helpers as th
from tools import board_config

DEPLOY = [sys.executable, "tools/deploy.py"]


def _deploy(*args, timeout=300):
    return subprocess.run([*DEPLOY, *args], cwd=th.TESTS.parent, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("deploy")
    result = _deploy("--board", "nrf52840", "--out", str(out), "--train_samples", "100",
                     "--epochs", "2", "--test_samples", "50")
    return result, out


def test_default_run_adapts_on_device_like_the_host(default_run):
    result, out = default_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    device, host = report["device"], report["host"]
    assert device["accuracy_after"] > device["accuracy_before"]
    assert host["accuracy_after"] > host["accuracy_before"]
    assert (device["accuracy_before"], device["accuracy_after"]) == (
        host["accuracy_before"], host["accuracy_after"])
    comparison = report["comparison"]
    assert comparison["weights_bit_identical"] and comparison["losses_bit_identical"]
    assert comparison["tensors"] and all(
        t["device_crc32"] == t["host_crc32"] for t in comparison["tensors"])
    assert {t["kind"] for t in comparison["tensors"]} == {"weights", "bias"}
    assert device["instructions_per_step"] > 0
    board = board_config.load_board("nrf52840")
    memory = report["memory"]
    assert memory["fits"]
    assert memory["flash_used"] <= memory["flash_max"] == board.flash.size
    assert memory["ram_static"] + memory["ram_stack"] <= memory["ram_max"] == board.ram.size
    assert device["peak_ram"] <= board.ram.size
    assert report["trained"] == [{"operator": 10, "name": "FULLY_CONNECTED",
                                  "update": "weights", "channels": 10, "of_channels": 10}]
    assert "Sketch uses" in result.stdout and "bit-identical" in result.stdout


def test_unknown_board_lists_the_known_ones(tmp_path):
    result = _deploy("--board", "nosuchboard", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "nosuchboard" in result.stderr
    for name in board_config.board_names():
        assert name in result.stderr
    assert "Traceback" not in result.stderr


def test_dataset_with_the_wrong_shape_says_what_is_wrong(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, x_train=np.zeros((20, 32, 32, 3), np.uint8), y_train=np.arange(20) % 10,
             x_test=np.zeros((10, 32, 32, 3), np.uint8), y_test=np.arange(10))
    result = _deploy("--dataset", str(path), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "x_train has shape (20, 32, 32, 3)" in result.stderr
    assert "(49, 40, 1)" in result.stderr and "Traceback" not in result.stderr


def test_dataset_with_labels_beyond_the_head_says_so(tmp_path):
    path = tmp_path / "labels.npz"
    np.savez(path, x_train=np.zeros((20, 49, 40, 1), np.uint8), y_train=np.arange(20),
             x_test=np.zeros((10, 49, 40, 1), np.uint8), y_test=np.arange(10))
    result = _deploy("--dataset", str(path), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "labels 0 to 19" in result.stderr and "10 classes" in result.stderr


def test_budget_too_small_names_the_minimum(tmp_path):
    result = _deploy("--budget_kb", "10", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "--budget_kb 10" in result.stderr
    assert "raise --budget_kb to at least 82" in result.stderr
    assert "the smallest plan, the classifier's biases only, needs" in result.stderr
