"""tools/deploy.py: the main job end to end (emulated nRF52840) and the
errors users hit first.

The end-to-end run trains the DS-CNN transfer model's classifier on a
reduced FSDD subset in QEMU (about 15 s) and checks the report.
"""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import training_helpers as th
from planning import cost_model, schemes
from tflm_training import Interpreter, TrainingPlan
from tools import board_config, deploy_steps, emulation, firmware_build

DEPLOY = [sys.executable, "tools/deploy.py"]


FAST = ("--train_samples", "100", "--epochs", "2", "--test_samples", "50")


def _deploy(*args, timeout=300, env=None):
    return subprocess.run(
        [*DEPLOY, *args],
        cwd=th.TESTS.parent,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def _env_without(tmp_path, hidden, extra_dir=None):
    """os.environ with a PATH on which the tools named in `hidden` cannot be
    found: each PATH folder that holds one is replaced by a folder of links to
    everything else in it. The CLI runs with sys.executable, so python stays."""
    hidden = set(hidden)
    entries, seen = [] if extra_dir is None else [str(extra_dir)], set()
    for i, entry in enumerate(os.environ.get("PATH", "").split(os.pathsep)):
        real = pathlib.Path(entry).resolve() if entry else None
        if real is None or not real.is_dir() or real in seen:
            continue
        seen.add(real)
        names = {p.name for p in real.iterdir()}
        if not names & hidden:
            entries.append(str(real))
            continue
        shadow = tmp_path / f"path{i}"
        shadow.mkdir()
        for name in names - hidden:
            (shadow / name).symlink_to(real / name)
        entries.append(str(shadow))
    env = dict(os.environ, PATH=os.pathsep.join(entries))
    for tool in hidden:
        assert shutil.which(tool, path=env["PATH"]) is None, tool
    return env


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("deploy")
    result = _deploy(
        "--board",
        "nrf52840",
        "--out",
        str(out),
        "--train_samples",
        "100",
        "--epochs",
        "2",
        "--test_samples",
        "50",
    )
    return result, out


@pytest.mark.firmware
def test_default_run_learns_on_the_device_like_the_host(default_run):
    result, out = default_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["scheme"] == "trady"  # the default: the best scheme that fits
    device, host = report["device"], report["host"]
    assert device["accuracy_after"] > device["accuracy_before"]
    assert (device["accuracy_before"], device["accuracy_after"]) == (
        host["accuracy_before"],
        host["accuracy_after"],
    )
    comparison = report["comparison"]
    assert comparison["weights_bit_identical"] and comparison["losses_bit_identical"]
    assert comparison["predictions_identical"] and comparison["mismatches"] == []
    assert comparison["tensors"] and all(
        t["device_crc32"] == t["host_crc32"] for t in comparison["tensors"]
    )
    assert device["instructions_per_step"] > 0 and device["samples_per_second"] > 0
    # Saved once, power-cycled, and the state came back from flash.
    assert [s["saved"] for s in device["saves"]] == [True]
    assert device["power_cycle"]["state_came_back"] and device["power_cycle"]["restored"]
    assert device["heldout_after"]["count"] == report["heldout_samples"] == 10
    board = board_config.load_board("nrf52840")
    memory = report["memory"]
    assert memory["fits"] and memory["state_flash"] > 0
    assert memory["flash_used"] <= memory["flash_max"] == board.flash.size
    assert memory["ram_static"] + memory["ram_stack"] <= memory["ram_max"] == board.ram.size
    updates = {t["operator"]: t["update"] for t in report["trained"]}
    assert updates.pop(10) == "weights" and set(updates.values()) == {"sampled"}
    assert "Sketch uses" in result.stdout and "bit-identical" in result.stdout
    assert "the saved state came back" in result.stdout


@pytest.mark.firmware
def test_default_run_writes_the_artifacts(default_run):
    """The int8 model, the plan the runtime reads, a summary of what trains,
    and the adapted models (from the device and from the host replay), all
    standard formats; the device's model runs in TFLM's own runtime."""
    result, out = default_run
    assert result.returncode == 0
    model = (out / "model.tflite").read_bytes()
    plan = TrainingPlan.from_bytes((out / "plan.bin").read_bytes())
    plan.check_model(model)
    assert (
        "operator 10 FULLY_CONNECTED: weights and bias of 10/10" in (out / "plan.txt").read_text()
    )
    device_model = (out / "trained_device.tflite").read_bytes()
    assert device_model == (out / "trained_host.tflite").read_bytes() != model
    trained = Interpreter.from_bytes(device_model)
    assert trained.arena_used_bytes() == Interpreter.from_bytes(model).arena_used_bytes()
    tflm = pytest.importorskip("tflite_micro")
    reference = tflm.runtime.Interpreter.from_bytes(device_model)
    x = np.zeros(trained.get_input_details(0)["shape"], np.int8)
    reference.set_input(x, 0)
    reference.invoke()
    trained.set_input(x, 0)
    trained.invoke()
    assert np.array_equal(reference.get_output(0), trained.get_output(0))


@pytest.mark.firmware
def test_default_run_reports_every_layer(default_run):
    """report.json and layers/ hold the plan per operator, with the
    instructions of each operator's forward and backward work measured on
    the emulated board."""
    result, out = default_run
    report = json.loads((out / "report.json").read_text())
    rows = report["layers"]
    assert [r["operator"] for r in rows] == list(range(11))  # up to the logits
    trained = {t["operator"] for t in report["trained"]}
    assert {r["operator"] for r in rows if r["trains"]} == trained
    assert all(r["instructions_forward"] > 0 for r in rows)
    visited = [r for r in rows if r["arena_backward"] is not None]
    assert visited and all(r["instructions_backward"] > 0 for r in visited)
    assert (
        max(max(r["arena_forward"], r["arena_backward"] or 0) for r in rows)
        <= report["arena_bytes"]
    )
    assert json.loads((out / "layers" / "layers.json").read_text()) == rows
    assert (out / "layers" / "layers.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| 10 | FULLY_CONNECTED | weights 10/10 |" in (out / "layers" / "layers.md").read_text()


@pytest.mark.slow
def test_unknown_board_lists_the_known_ones(tmp_path):
    result = _deploy("--board", "nosuchboard", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "nosuchboard" in result.stderr
    for name in board_config.board_names():
        assert name in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_dataset_with_the_wrong_shape_says_what_is_wrong(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(
        path,
        x_train=np.zeros((20, 32, 32, 3), np.uint8),
        y_train=np.arange(20) % 10,
        x_test=np.zeros((10, 32, 32, 3), np.uint8),
        y_test=np.arange(10),
    )
    result = _deploy("--dataset", str(path), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "x_train has shape (20, 32, 32, 3)" in result.stderr
    assert "(49, 40, 1)" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_dataset_with_labels_beyond_the_head_says_so(tmp_path):
    path = tmp_path / "labels.npz"
    np.savez(
        path,
        x_train=np.zeros((20, 49, 40, 1), np.uint8),
        y_train=np.arange(20),
        x_test=np.zeros((10, 49, 40, 1), np.uint8),
        y_test=np.arange(10),
    )
    result = _deploy("--dataset", str(path), "--head", "keep", "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "labels 0 to 19" in result.stderr and "10 classes" in result.stderr


@pytest.mark.slow
def test_budget_too_small_names_the_minimum(tmp_path):
    result = _deploy("--scheme", "classifier", "--budget_kb", "10", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "--budget_kb 10" in result.stderr
    model = (th.TRANSFER_MODEL).read_bytes()
    need = deploy_steps.training_arena(
        model,
        TrainingPlan.classifier_only(
            model,
            learning_rate=0.02,
            momentum=deploy_steps.MOMENTUM,
            batch_size=deploy_steps.BATCH_SIZE,
        ),
    )
    assert f"raise --budget_kb to at least {-(-need // 1024)} " in result.stderr
    assert "the smallest plan, the classifier's biases only, needs" in result.stderr


@pytest.fixture(scope="module")
def sparse_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("deploy_sparse")
    result = _deploy("--board", "nrf52840", "--scheme", "sparse", "--out", str(out), *FAST)
    return result, out


@pytest.mark.firmware
def test_sparse_trains_the_classifier_and_some_channels_of_an_earlier_layer(sparse_run):
    result, out = sparse_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["scheme"] == "sparse"
    assert len(report["trained"]) == 2
    earlier, classifier = sorted(report["trained"], key=lambda layer: layer["operator"])
    assert classifier == {
        "operator": 10,
        "name": "FULLY_CONNECTED",
        "update": "weights",
        "channels": 10,
        "of_channels": 10,
    }
    assert earlier["operator"] < classifier["operator"] and earlier["update"] == "weights"
    assert 0 < earlier["channels"] < earlier["of_channels"]
    assert earlier["channels"] == earlier["of_channels"] // schemes.SPARSE_FRACTION
    device, host = report["device"], report["host"]
    assert device["accuracy_after"] > device["accuracy_before"]
    assert (device["accuracy_before"], device["accuracy_after"]) == (
        host["accuracy_before"],
        host["accuracy_after"],
    )
    comparison = report["comparison"]
    assert comparison["weights_bit_identical"] and comparison["losses_bit_identical"]
    assert device["power_cycle"]["state_came_back"]
    # Two layers' weights and biases, each equal on the device and the host.
    assert len(comparison["tensors"]) == 4 and all(
        t["equal"] and t["device_crc32"] == t["host_crc32"] for t in comparison["tensors"]
    )
    assert report["memory"]["fits"]
    assert "trained (sparse)" in result.stdout and "bit-identical" in result.stdout


@pytest.mark.firmware
def test_noemulate_builds_the_firmware_and_says_how_to_flash(tmp_path):
    """QEMU hidden: the run must not need it. It flashes nothing (a pyocd on
    PATH is not run) and names the tools/flash.py command, which flashes
    that very build."""
    fake = tmp_path / "fakebin"
    fake.mkdir()
    marker = tmp_path / "pyocd_ran"
    (fake / "pyocd").write_text(f"#!/bin/sh\ntouch {marker}\n")
    (fake / "pyocd").chmod(0o755)
    env = _env_without(tmp_path, {emulation.QEMU}, extra_dir=fake)
    out = tmp_path / "out"
    result = _deploy("--board", "nrf52840", "--noemulate", "--out", str(out), *FAST, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    hex_file = out / "nrf52840" / "firmware.hex"
    assert hex_file.is_file() and hex_file.stat().st_size > 0
    assert "Sketch uses" in result.stdout and "Global variables use" in result.stdout
    assert "emulating" not in result.stdout and "QEMU" not in result.stdout
    command = f"python tools/flash.py --board nrf52840 --firmware {hex_file.parent}"
    assert f"flash it with: {command}" in result.stdout
    report = json.loads((out / "report.json").read_text())
    assert "device" not in report and "comparison" not in report
    assert command in report["flash"]
    assert report["memory"]["fits"] and report["memory"]["board"] == "nrf52840"
    dry = subprocess.run(
        [sys.executable, *command.split()[1:], "--dry_run"],
        cwd=th.TESTS.parent,
        capture_output=True,
        text=True,
        env=env,
    )
    assert dry.returncode == 0, dry.stderr
    assert f"$ pyocd flash --target nrf52840 {hex_file}" in dry.stdout
    assert not marker.exists()


@pytest.mark.slow
@pytest.mark.parametrize("hidden", [firmware_build.GCC, firmware_build.OBJCOPY])
def test_missing_toolchain_names_the_debian_packages(tmp_path, hidden):
    env = _env_without(tmp_path, {hidden})
    result = _deploy("--board", "nrf52840", "--out", str(tmp_path / "out"), *FAST, env=env)
    assert result.returncode != 0
    assert f"the ARM toolchain ({firmware_build.GCC}) is not installed" in result.stderr
    assert "sudo apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_missing_toolchain_is_reported_even_with_noemulate(tmp_path):
    env = _env_without(tmp_path, {firmware_build.GCC, emulation.QEMU})
    result = _deploy("--noemulate", "--out", str(tmp_path / "out"), *FAST, env=env)
    assert result.returncode != 0
    assert "sudo apt-get install gcc-arm-none-eabi" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_missing_qemu_names_the_debian_package_and_noemulate(tmp_path):
    env = _env_without(tmp_path, {emulation.QEMU})
    result = _deploy("--board", "nrf52840", "--out", str(tmp_path / "out"), *FAST, env=env)
    assert result.returncode != 0
    assert f"{emulation.QEMU} is not installed" in result.stderr
    assert "sudo apt-get install qemu-system-arm" in result.stderr
    assert "--noemulate" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_full_scheme_on_the_default_model_is_refused_with_the_sizes(tmp_path):
    board = board_config.load_board("nrf52840")
    result = _deploy("--board", "nrf52840", "--scheme", "full", "--out", str(tmp_path), *FAST)
    assert result.returncode == 2
    message = result.stderr
    assert "the full plan needs a" in message
    need = int(message.split("the full plan needs a ")[1].split("-byte")[0])
    model = deploy_steps.DEFAULT_MODEL.read_bytes()
    reserved = deploy_steps.learner_ram(model, deploy_steps.model_input(model), 10, board)
    assert reserved > 1960 * 10  # the held-out samples, the frame buffer, the UART ring
    limit = board.ram.size - board.stack_size - cost_model.RAM_RESERVE - reserved
    assert need > limit
    assert f"{board.ram.size // 1024} KB RAM" in message
    assert f"and {reserved} bytes for the learner's frame buffer" in message
    assert f"leaves {limit} bytes" in message
    assert "pick a smaller --scheme" in message and "Traceback" not in message
    assert not (tmp_path / "report.json").exists()


SEARCH_BUDGET_KB = "140"  # the DS-CNN's 72 KB inference arena + 68 KB


@pytest.fixture(scope="module", params=["sparse-search", "trady", "lowrank"])
def searched_run(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"deploy_{request.param}")
    result = _deploy(
        "--board",
        "nrf52840",
        "--scheme",
        request.param,
        "--budget_kb",
        SEARCH_BUDGET_KB,
        "--out",
        str(out),
        *FAST,
    )
    return request.param, result, out


@pytest.mark.firmware
def test_searched_schemes_fit_the_budget_and_train_on_device_like_the_host(searched_run):
    scheme, result, out = searched_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["scheme"] == scheme
    assert report["arena_bytes"] <= int(SEARCH_BUDGET_KB) * 1024
    plan = TrainingPlan.from_bytes((out / "plan.bin").read_bytes())
    updates = {layer.operator_index: layer.update for layer in plan.layers}
    assert updates.pop(10) == "weights"  # the classifier always trains fully
    expected = {"sparse-search": {"weights", "bias"}, "trady": {"sampled"}, "lowrank": {"lowrank"}}[
        scheme
    ]
    assert updates and set(updates.values()) <= expected
    if scheme == "trady":
        assert report["sample_budget"] == plan.sample_budget > 0
    if scheme == "sparse-search":  # the finalists ran; one was chosen
        assert result.stdout.count("  trial search #") >= 2
        assert result.stdout.count("<- chosen") == 1
    device, host = report["device"], report["host"]
    assert (device["accuracy_before"], device["accuracy_after"]) == (
        host["accuracy_before"],
        host["accuracy_after"],
    )
    comparison = report["comparison"]
    assert comparison["weights_bit_identical"] and comparison["losses_bit_identical"]
    assert all(t["equal"] for t in comparison["tensors"])
    assert f"trained ({scheme})" in result.stdout


@pytest.mark.firmware
def test_16_bit_gradients_train_on_the_device_like_the_host_in_less_memory(tmp_path):
    result = _deploy(
        "--board",
        "nrf52840",
        "--scheme",
        "bias",
        "--gradient_bits",
        "16",
        "--out",
        str(tmp_path),
        *FAST,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    plan = TrainingPlan.from_bytes((tmp_path / "plan.bin").read_bytes())
    assert plan.gradient_bits == report["gradient_bits"] == 16
    assert "16-bit gradients" in (tmp_path / "plan.txt").read_text()
    wide = deploy_steps.make_plan((tmp_path / "model.tflite").read_bytes(), "bias", 0.02)
    assert report["arena_bytes"] < 0.75 * deploy_steps.training_arena(
        (tmp_path / "model.tflite").read_bytes(), wide
    )
    comparison = report["comparison"]
    assert comparison["weights_bit_identical"] and comparison["losses_bit_identical"]
    assert comparison["predictions_identical"]


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["sparse-search", "trady", "lowrank"])
def test_searched_scheme_with_too_small_a_budget_names_the_minimum(tmp_path, scheme):
    result = _deploy(
        "--scheme", scheme, "--budget_kb", "60", "--out", str(tmp_path), "--noemulate", *FAST
    )
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert f"error: {scheme}:" in result.stderr and "at least" in result.stderr
    assert "(--budget_kb)" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_trady_with_a_partial_last_batch_says_how_many_samples(tmp_path):
    result = _deploy(
        "--scheme", "trady", "--train_samples", "7", "--out", str(tmp_path), "--noemulate"
    )
    assert result.returncode == 2
    assert "multiple of 5" in result.stderr and "not 7" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.firmware
def test_auto_falls_back_to_a_scheme_that_fits_the_budget(tmp_path):
    result = _deploy("--budget_kb", "80", "--noemulate", "--out", str(tmp_path), *FAST)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["requested_scheme"] == "auto"
    assert report["scheme"] in ("bias", "classifier-bias")
    assert report["arena_bytes"] <= 80 * 1024
    assert "auto: trady does not fit" in result.stdout


def _tree(folder):
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


CLASSIFIER_FAST = (
    "--scheme",
    "classifier",
    "--train_samples",
    "30",
    "--epochs",
    "1",
    "--test_samples",
    "20",
)


@pytest.fixture(scope="module")
def previous_out(tmp_path_factory):
    """An --out a successful run wrote."""
    out = tmp_path_factory.mktemp("previous") / "out"
    result = _deploy("--out", str(out), *CLASSIFIER_FAST)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


def _failed_run(previous_out, *args):
    """(result, the partial folder it left) of a run that must fail and
    leave --out exactly as it was."""
    before = _tree(previous_out)
    result = _deploy("--out", str(previous_out), *args)
    assert result.returncode == 2, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert _tree(previous_out) == before
    partial = pathlib.Path(result.stderr.rsplit("partial files of this run are in ", 1)[1].strip())
    return result, partial


@pytest.mark.firmware
def test_a_rate_that_saturates_the_model_is_refused_and_out_kept(previous_out):
    """--learning_rate 1e6 does not diverge: it pins the classifier at +-127.
    The device and the host agree bit for bit, and the run is refused."""
    result, partial = _failed_run(previous_out, *CLASSIFIER_FAST, "--learning_rate", "1e6")
    assert "error: training saturated the model: operator 10:" in result.stderr
    assert "--max_saturation" in result.stderr
    assert "warning: training saturated operator 10" in result.stdout
    report = json.loads((partial / "report.json").read_text())
    (layer,) = report["device"]["saturation"]
    assert layer["operator"] == 10 and layer["weights_newly_pinned"] > 0.5
    assert report["comparison"]["weights_bit_identical"]
    assert len(report["device"]["loss_curve"]["mean_loss"]) == 30
    shutil.rmtree(partial)
    # The user may accept it.
    result = _deploy(
        "--out", str(partial), *CLASSIFIER_FAST, "--learning_rate", "1e6", "--max_saturation", "1"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "warning: training saturated operator 10" in result.stdout


@pytest.mark.firmware
def test_steps_that_diverge_change_nothing_on_the_device(previous_out):
    """At 3e38 the updates overflow: with its undo buffer the device
    changes nothing (as the host), and the run is refused."""
    result, partial = _failed_run(previous_out, *CLASSIFIER_FAST, "--learning_rate", "3e38")
    assert re.search(
        r"error: \d+ of 30 training steps diverged \(NaN or infinity; each "
        r"changed nothing\).*lower --learning_rate",
        result.stderr,
    )
    assert "the step changed nothing" in result.stdout
    report = json.loads((partial / "report.json").read_text())
    assert report["device"]["diverged_steps"] > 0 and report["device"]["undo_bytes"] > 0
    assert report["comparison"]["weights_bit_identical"]
    # Every batch's update diverged: the adapted model is the model itself.
    assert (partial / "trained_device.tflite").read_bytes() == (
        partial / "model.tflite"
    ).read_bytes()


@pytest.mark.firmware
def test_a_float_input_model_learns_on_the_device_like_the_host(tmp_path):
    """float32 in and out (QUANTIZE and DEQUANTIZE at the ends): uint8 data
    is fed as x / 255, sent to the device as float32 samples."""
    out = tmp_path / "float"
    result = _deploy(
        "--model",
        "tests/models/float_io.tflite",
        "--dataset",
        "tests/data/mnist.npz",
        "--out",
        str(out),
        "--scheme",
        "classifier",
        "--train_samples",
        "40",
        "--epochs",
        "1",
        "--test_samples",
        "30",
        "--heldout_samples",
        "4",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["comparison"]["weights_bit_identical"]
    assert report["comparison"]["losses_bit_identical"]
    assert report["comparison"]["predictions_identical"]
    assert report["device"]["accuracy_before"] == report["host"]["accuracy_before"] > 0.5
