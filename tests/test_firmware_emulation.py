"""The firmware, run in QEMU, computes exactly what the host runtime does.

Every committed model (tests/models/manifest.json) is built into the
mps2_an386 firmware with two real test inputs from its dataset and run
under QEMU; every output must equal the host runtime's bit for bit, and the
arena bytes the firmware reports must equal the host's. Also: the counter
gives exact instruction counts, the stack and counts are reported, runs are
deterministic, and runtime errors reach the console and the exit status.
"""

import json
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import training_helpers as th
from tflm_training import host_build
from tools import emulation, firmware_build, firmware_console

BOARD = "mps2_an386"
MODELS_DIR = REPO / "tests" / "models"
MANIFEST = json.loads((MODELS_DIR / "manifest.json").read_text())["models"]
INPUTS_PER_MODEL = 2
TIMEOUT_S = 60
TT_ERR_ARENA_TOO_SMALL = 4


def _interpreter(model_path):
    import tflm_training  # after the host library is built

    return tflm_training.Interpreter.from_file(model_path)


def _dataset_inputs(spec, details, count):
    """The first test samples of the model's dataset, prepared as in
    tests/models/README.md: x / 255, quantized for int8 inputs."""
    x = np.load(th.data_path(spec["dataset"]))["x_test"][:count]
    x = x.astype(np.float32) / np.float32(255.0)
    x = x.reshape((count,) + tuple(int(d) for d in details["shape"][1:]))
    if np.dtype(details["dtype"]) == np.float32:
        return x
    q = details["quantization_parameters"]
    info = np.iinfo(details["dtype"])
    return np.clip(np.round(x / q["scales"][0]) + q["zero_points"][0], info.min, info.max).astype(
        details["dtype"]
    )


def _run(elf):
    result = emulation.run_firmware(elf, BOARD, timeout=TIMEOUT_S)
    assert not result.timed_out, result.note
    return result


def _host_outputs(interpreter, sample):
    import tflm_training

    interpreter.set_input(sample[np.newaxis], 0)
    interpreter.invoke()
    outputs = []
    while True:
        try:
            outputs.append(interpreter.get_output(len(outputs)))
        except tflm_training.InvalidArgumentError:  # no such output: all collected
            return outputs


@pytest.mark.firmware
@pytest.mark.parametrize("model", sorted(MANIFEST))
def test_outputs_and_arena_bytes_equal_the_host_runtime(model, tmp_path):
    model_path = MODELS_DIR / MANIFEST[model]["file"]
    interpreter = _interpreter(model_path)
    inputs = _dataset_inputs(MANIFEST[model], interpreter.get_input_details(0), INPUTS_PER_MODEL)
    firmware = firmware_build.build_firmware(BOARD, model_path, inputs, out_dir=tmp_path)
    result = _run(firmware.elf)

    assert result.status == 0, (result.log.errors, result.note)
    assert result.qemu_returncode == 0
    assert result.log.arena_used == interpreter.arena_used_bytes()
    assert result.log.init["arena_size"] == interpreter.arena_used_bytes()
    outputs = result.log.outputs()
    assert sorted(outputs) == list(range(INPUTS_PER_MODEL))
    for index, sample in enumerate(inputs):
        expected = _host_outputs(interpreter, sample)
        assert len(outputs[index]) == len(expected)
        for got, want in zip(outputs[index], expected):
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_array_equal(got, want, err_msg=f"{model} input {index}")


@pytest.fixture(scope="module")
def default_firmware(tmp_path_factory):
    """The default build: ds_cnn with the committed boards/app inputs."""
    return firmware_build.build_firmware(BOARD, out_dir=tmp_path_factory.mktemp("default"))


@pytest.mark.firmware
def test_reports_instructions_and_stack_high_water(default_firmware):
    log = _run(default_firmware.elf).log
    assert log.bad_lines == [] and log.errors == []
    num_inputs = len(np.load(firmware_build.DEFAULT_INPUTS))
    counts = log.counts()
    assert sorted(counts) == list(range(num_inputs))
    assert log.counter_unit == "instructions"
    assert all(isinstance(c, int) and c > 0 for c in counts.values()), counts
    stack = log.named("stack")[-1]
    assert 0 < stack["used"] < stack["size"]
    assert stack["size"] == default_firmware.usage.stack_bytes


def _defined_kernels(elf):
    """The forward and backward kernel objects an image defines."""
    result = subprocess.run(
        [firmware_build.NM, str(elf)], capture_output=True, text=True, check=True
    )
    names = {line.split()[-1] for line in result.stdout.splitlines()}
    return {
        n
        for n in names
        if n.startswith(("tt_kernel_", "tt_backward_"))
        and n not in ("tt_kernel_find", "tt_kernel_at", "tt_backward_find")
    }


EXTRA_OPS = MODELS_DIR / "extra_ops"


def test_every_kernel_is_named_as_the_build_asks_for_it():
    """kernel_symbols names tt_kernel_<op> / tt_backward_<op> by the
    runtime's operator names: every kernel the runtime defines must carry
    its operator's name, or no image would link it."""
    import tflm_training.interpreter  # after the host library is built

    schema = (host_build.RUNTIME / "model" / "tt_schema.h").read_text()
    codes = {name: int(value) for name, value in re.findall(r"TT_OP_(\w+)\s*=\s*(\d+)", schema)}
    defined = []
    for source in sorted(firmware_build.KERNELS_DIR.glob("*.c")):
        defined += re.findall(
            r"const tt_(?:backward_)?kernel tt_(?:kernel|backward)_(\w+) = "
            r"\{\s*TT_OP_(\w+)",
            source.read_text(),
        )
    assert len(defined) > 40
    for suffix, op in defined:
        assert tflm_training.interpreter.builtin_name(codes[op]).lower() == suffix, op


@pytest.mark.firmware
@pytest.mark.parametrize(
    "name",
    [
        "activations",
        "expand_dims",
        "resize_nearest_neighbor",
        "split",
        "squeeze_excite",
        "strided_slice",
        "transpose",
        "unary_ops",
    ],
)
def test_extra_operators_run_in_the_firmware_like_on_the_host(name, tmp_path):
    """Each image links its own operators' kernels (MUL, LOGISTIC, TANH,
    HARD_SWISH, SPLIT, TRANSPOSE, ...), and computes what the host does."""
    model_path = EXTRA_OPS / f"{name}.tflite"
    interpreter = _interpreter(model_path)
    details = interpreter.get_input_details(0)
    inputs = np.random.default_rng(0).integers(
        -128, 128, (INPUTS_PER_MODEL, *details["shape"][1:]), dtype=np.int8
    )
    firmware = firmware_build.build_firmware(BOARD, model_path, inputs, out_dir=tmp_path)
    result = _run(firmware.elf)
    assert result.status == 0, (result.log.errors, result.note)
    outputs = result.log.outputs()
    for index, sample in enumerate(inputs):
        for got, want in zip(outputs[index], _host_outputs(interpreter, sample), strict=True):
            np.testing.assert_array_equal(got, want, err_msg=f"{name} input {index}")


@pytest.mark.firmware
def test_an_image_links_only_the_kernels_of_its_model(default_firmware, tmp_path):
    """ds_cnn's six operators, no other kernel and no backward one; an image
    with every kernel holds more code for the same model and runs it alike."""
    linked = _defined_kernels(default_firmware.elf)
    assert linked == {
        "tt_kernel_average_pool_2d",
        "tt_kernel_conv_2d",
        "tt_kernel_depthwise_conv_2d",
        "tt_kernel_fully_connected",
        "tt_kernel_quantize",
        "tt_kernel_softmax",
    }
    assert set(firmware_build.kernel_symbols(firmware_build.DEFAULT_MODEL.read_bytes())) == linked
    for name in ("model.tflite", "inputs.bin"):
        (tmp_path / name).write_bytes((default_firmware.out_dir / name).read_bytes())
    everything = firmware_build.build_app(
        BOARD,
        firmware_build.APP,
        tmp_path,
        defines=[f"-DAPP_ARENA_BYTES={default_firmware.summary['arena_bytes']}"],
        with_runtime=True,
    )
    assert _defined_kernels(everything.elf) > linked | {"tt_kernel_add", "tt_kernel_mul"}
    assert everything.summary["code_bytes"] > default_firmware.summary["code_bytes"] + 10000
    assert _run(everything.elf).log.events == _run(default_firmware.elf).log.events


@pytest.mark.firmware
def test_runs_are_deterministic(default_firmware):
    first, second = _run(default_firmware.elf).log, _run(default_firmware.elf).log
    assert first.events == second.events


@pytest.mark.firmware
def test_counter_counts_instructions_exactly(tmp_path):
    firmware = firmware_build.build_app(BOARD, "counter_selftest", out_dir=tmp_path)
    result = _run(firmware.elf)
    assert result.status == 0
    checks = result.log.named("counter_check")
    assert len(checks) > 40  # every phase of a 40-instruction SysTick tick
    assert [c["count"] for c in checks] == [c["nops"] for c in checks]


@pytest.mark.firmware
def test_runtime_error_is_reported_and_becomes_the_exit_status(tmp_path):
    need = _interpreter(firmware_build.DEFAULT_MODEL).arena_used_bytes()
    firmware = firmware_build.build_firmware(BOARD, out_dir=tmp_path, arena_bytes=need - 16)
    result = _run(firmware.elf)
    assert result.status == TT_ERR_ARENA_TOO_SMALL
    assert result.qemu_returncode == TT_ERR_ARENA_TOO_SMALL
    (error,) = result.log.errors
    assert error["stage"] == "init" and error["code"] == TT_ERR_ARENA_TOO_SMALL
    assert "too small" in error["message"]
    assert result.log.exit_status == TT_ERR_ARENA_TOO_SMALL

    cli = subprocess.run(
        [sys.executable, "tools/emulate.py", f"--elf={firmware.elf}", "--quiet"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert cli.returncode == TT_ERR_ARENA_TOO_SMALL, cli.stderr


@pytest.mark.firmware
def test_emulate_cli_maps_nrf52840_to_its_emulator(default_firmware, tmp_path):
    events = tmp_path / "events.json"
    cli = subprocess.run(
        [
            sys.executable,
            "tools/emulate.py",
            "--board=nrf52840",
            f"--elf={default_firmware.elf}",
            f"--events_out={events}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert cli.returncode == 0, cli.stderr
    assert "mps2_an386" in cli.stderr
    assert cli.stdout.count(firmware_console.PREFIX + '{"event":"output"') == len(
        np.load(firmware_build.DEFAULT_INPUTS)
    )
    assert json.loads(events.read_text())[-1] == {"event": "exit", "status": 0}


@pytest.mark.firmware
def test_readme_demo_builds_the_default_firmware_and_runs_it(tmp_path):
    """`python tools/emulate.py --board nrf52840`, the README's main command."""
    events = tmp_path / "events.json"
    cli = subprocess.run(
        [
            sys.executable,
            "tools/emulate.py",
            "--board=nrf52840",
            "--quiet",
            f"--events_out={events}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S + 120,
    )
    assert cli.returncode == 0, cli.stderr
    assert "Sketch uses" in cli.stderr and "Maximum is 262144 bytes" in cli.stderr
    log = json.loads(events.read_text())
    outputs = [e for e in log if e["event"] == "output"]
    assert len(outputs) == len(np.load(firmware_build.DEFAULT_INPUTS))
    assert log[-1] == {"event": "exit", "status": 0}


def test_console_parser():
    log = firmware_console.ConsoleLog.from_text(
        "boot noise\n"
        'TT {"event":"output","index":0,"output":0,"type":"float32","shape":[1,2],'
        '"values":[1065353216,3221225472]}\r\n'
        'TT {"event":"invoke","index":0,"counter":"cycles","count":null}\n'
        'TT {"event":"exit","status":3}\n'
        'TT {"event":"out\n'
    )
    np.testing.assert_array_equal(log.outputs()[0][0], np.array([[1.0, -2.0]], np.float32))
    assert log.counts() == {0: None} and log.counter_unit == "cycles"
    assert log.exit_status == 3 and log.other_lines == ["boot noise"]
    assert log.bad_lines == ['TT {"event":"out']
    with pytest.raises(firmware_console.ConsoleFormatError):
        firmware_console.parse_line("TT {not json")
