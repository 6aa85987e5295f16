"""The Cortex-M4 DSP paths of CONV_2D, DEPTHWISE_CONV_2D and
FULLY_CONNECTED (tt_conv_dsp.c, tt_depthwise_dsp.c) give TFLM's bits.

Three runs of the same cases (tests/kernel_cases.py, shaped to reach every
branch of those paths and their fallbacks), each against tflite_micro:
  - the host library (the portable C);
  - the host library built with TT_EMULATE_DSP (the DSP paths on C
    definitions of the instructions), in a child process that also runs
    tests/test_random_ops.py's cases of these operators and every model of
    tests/test_bit_exact.py;
  - the Cortex-M4 firmware under QEMU (the real SMLAD, SXTAB16, ...).
tests/test_fuzz.py runs hostile models through the emulated DSP paths
under the sanitizers.
"""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from tflite_micro.python.tflite_micro import runtime as tflm_runtime

TESTS = pathlib.Path(__file__).resolve().parent
REPO = TESTS.parent
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(REPO))
import kernel_cases
import training_helpers as th
from tflm_training import host_build
from tools import emulation, firmware_build

HOST_CASES = {"CONV_2D": 300, "DEPTHWISE_CONV_2D": 300, "FULLY_CONNECTED": 150}
FIRMWARE_CASES = {"CONV_2D": 70, "DEPTHWISE_CONV_2D": 70, "FULLY_CONNECTED": 40}
# Of the cases, at least this share must take the DSP path by shape, and
# at least this share must run (not be refused by both runtimes).
MIN_DSP_SHARE = 0.6
MIN_RUN_SHARE = 0.9
BOARD = "mps2_an386"


def _defines(elf, symbol):
    names = subprocess.run(
        [firmware_build.NM, str(elf)], capture_output=True, text=True, check=True
    ).stdout.split()
    return symbol in names


@pytest.mark.firmware
def test_images_link_the_multiplied_depthwise_path_only_when_needed(tmp_path):
    import tflm_training

    for name, needed in (("ds_cnn", False), ("depth_multiplier", True)):
        model = th.model_path(name)
        details = tflm_training.Interpreter.from_bytes(model.read_bytes()).get_input_details(0)
        sample = np.zeros((1, *details["shape"]), details["dtype"])
        built = firmware_build.build_firmware(BOARD, model, sample, out_dir=tmp_path / name)
        assert _defines(built.elf, "tt_depthwise_dsp_group_multiplied") == needed, name


def _tflm(case):
    try:
        interpreter = tflm_runtime.Interpreter.from_bytes(case.model, arena_size=1 << 22)
        interpreter.set_input(case.feeds[0], 0)
        interpreter.invoke()
        return np.array(interpreter.get_output(0), copy=True)
    except RuntimeError:
        return None


def _ours(case):
    import tflm_training  # after conftest built the library

    try:
        interpreter = tflm_training.Interpreter.from_bytes(case.model)
        interpreter.set_input(case.feeds[0], 0)
        interpreter.invoke()
        return np.array(interpreter.get_output(0), copy=True)
    except tflm_training.TflmTrainingError:
        return None


def _cases(counts):
    for op, count in counts.items():
        for index in range(count):
            yield index, kernel_cases.make_case(op, index)


def _check_shares(ran, dsp, total):
    assert ran >= MIN_RUN_SHARE * total, f"only {ran} of {total} cases ran"
    assert dsp >= MIN_DSP_SHARE * total, f"only {dsp} of {total} cases take the DSP path"


@pytest.mark.slow
def test_kernel_cases_match_tflm_on_the_host():
    import tflm_training

    # Set by test_emulated_dsp_build_matches_tflm for its child process.
    expect_dsp = os.environ.get("TFLM_TRAINING_EXPECT_DSP") == "1"
    assert tflm_training.interpreter.dsp_paths_enabled() == expect_dsp
    ran = dsp = total = 0
    failures = []
    for index, case in _cases(HOST_CASES):
        total += 1
        golden, ours = _tflm(case), _ours(case)
        if golden is None and ours is None:
            continue
        where = f"{case.op} case {index} {case.config}"
        if golden is None or ours is None:
            failures.append(f"{where}: only {'TFLM' if ours is None else 'ours'} runs it")
            continue
        ran += 1
        dsp += case.config["dsp"]
        if golden.dtype != ours.dtype or not np.array_equal(golden, ours):
            failures.append(f"{where}: {int(np.sum(golden != ours))} values differ")
    assert not failures, "\n".join(failures[:10])
    _check_shares(ran, dsp, total)


@pytest.mark.slow
def test_emulated_dsp_build_matches_tflm():
    library = host_build.build_host_if_stale(emulate_dsp=True)
    checks = [
        f"{TESTS / 'test_dsp_paths.py'}::test_kernel_cases_match_tflm_on_the_host",
        str(TESTS / "test_bit_exact.py"),
    ]
    checks += [
        f"{TESTS / 'test_random_ops.py'}::test_random_configurations[{op}]"
        for op in kernel_cases.OPS
    ]
    env = dict(os.environ, TFLM_TRAINING_LIBRARY=str(library), TFLM_TRAINING_EXPECT_DSP="1")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *checks],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout, result.stdout[-2000:]


@pytest.mark.firmware
def test_kernel_cases_match_tflm_in_the_firmware(tmp_path):
    """Each case built into the inference firmware (the board's Cortex-M4
    flags select the DSP paths) and run under QEMU."""
    ran = dsp = total = 0
    failures = []
    for index, case in _cases(FIRMWARE_CASES):
        total += 1
        golden = _tflm(case)
        if golden is None or _ours(case) is None:
            continue
        name = f"{case.op.lower()}_{index}"
        model = tmp_path / f"{name}.tflite"
        model.write_bytes(case.model)
        built = firmware_build.build_firmware(
            BOARD, model, case.feeds[0][None], out_dir=tmp_path / name
        )
        if case.op == "DEPTHWISE_CONV_2D" and case.config["multiplier"] > 1:
            # Its DSP path is linked only into images that need it.
            assert _defines(built.elf, "tt_depthwise_dsp_group_multiplied")
        result = emulation.run_firmware(built.elf, BOARD, timeout=60)
        outputs = result.log.outputs().get(0)
        ran += 1
        dsp += case.config["dsp"]
        if result.log.errors or not outputs or not np.array_equal(outputs[0], golden):
            failures.append(
                f"{case.op} case {index} {case.config}: firmware "
                f"{result.status} {result.log.errors} {outputs}"
            )
    assert not failures, "\n".join(failures[:5])
    _check_shares(ran, dsp, total)
