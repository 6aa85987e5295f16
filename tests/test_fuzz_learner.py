"""Hostile bytes for the learner: its wire frames, the learned states it
loads and the flash store that keeps them, against an ASan + UBSan build.

The driver (tests/fuzz/fuzz_learner.c) checks the learner's documented
answers and state invariants itself and exits 1 on a broken one; the
sanitizers abort on any out-of-bounds access or undefined behaviour; the
timeout catches hangs (a serve loop waiting forever on a quiet line is one
the driver reports). Runs are seeded and bounded by iteration counts, so
every run is the same run. The three modes run side by side (about 15 s
in all on 2 cores, the build included).
"""

import concurrent.futures
import os
import pathlib
import re
import shutil
import subprocess

import pytest

from tflm_training import host_build
from tflm_training import plan as training_plan

TESTS = pathlib.Path(__file__).resolve().parent
EXAMPLES = TESTS.parent / "examples"
MLP = TESTS / "models" / "mlp.tflite"
DS_CNN = EXAMPLES / "ds_cnn_fsdd.tflite"
SEED = 20261206
# Iterations per mode, each a few CPU seconds under the sanitizers.
ITERATIONS = {"frames": 1200, "state": 300, "store": 900}
TIMEOUT = 180
SANITIZER_REPORT = re.compile(r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:")

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")]


def _plans():
    """(model, plan) pairs: the first (small, fast) is the one the frames
    mode serves most; the others add sampled and low-rank layers (the
    ds_cnn operators near its end) and steps that diverge."""
    mlp, ds_cnn = MLP.read_bytes(), DS_CNN.read_bytes()
    trainable = [op for op, *_ in training_plan.trainable_operators(ds_cnn)]
    assert {6, 8} <= set(trainable), trainable
    return [
        (MLP, training_plan.TrainingPlan.classifier_only(mlp, momentum=0.9, batch_size=2)),
        (MLP, training_plan.TrainingPlan.lowrank(mlp, {2: 4}, refresh_steps=1, batch_size=2)),
        (
            DS_CNN,
            training_plan.TrainingPlan.sampled(
                ds_cnn, [6, 8], 16384, seed=3, momentum=0.9, batch_size=2
            ),
        ),
        (DS_CNN, training_plan.TrainingPlan.lowrank(ds_cnn, {8: 4}, refresh_steps=1, batch_size=2)),
        # Its steps overflow: diverged answers, with and without an undo buffer.
        (MLP, training_plan.TrainingPlan.bias_only(mlp, learning_rate=3e38)),
    ]


def _build(directory):
    """The driver and every runtime source, as the host library is built
    but with the sanitizers at -O1, compiled in parallel."""
    flags = [
        {"-O2": "-O1"}.get(f, f) for f in host_build.COMMON_FLAGS if f not in ("-shared", "-fPIC")
    ]
    flags += [*host_build.SANITIZE_FLAGS, *[f"-I{d}" for d in host_build.include_dirs()]]
    sources = [TESTS / "fuzz" / "fuzz_learner.c", *host_build.runtime_sources()]
    objects = [directory / f"{k}_{source.stem}.o" for k, source in enumerate(sources)]

    def compile_one(pair):
        source, obj = pair
        return subprocess.run(
            ["gcc", *flags, "-c", str(source), "-o", str(obj)], capture_output=True, text=True
        )

    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        for result in pool.map(compile_one, zip(sources, objects)):
            assert result.returncode == 0, result.stdout + result.stderr
    binary = directory / "fuzz_learner"
    subprocess.run(
        ["gcc", *host_build.SANITIZE_FLAGS, "-o", str(binary), *map(str, objects)],
        check=True,
        capture_output=True,
        text=True,
    )
    return binary


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{mode: (exit status, stdout, stderr, counts)}, the modes run at once."""
    directory = tmp_path_factory.mktemp("fuzz_learner")
    binary = _build(directory)
    files = []
    for k, (model, plan) in enumerate(_plans()):
        path = directory / f"plan_{k}.bin"
        path.write_bytes(plan.to_bytes())
        files += [model, path]
    processes = {
        mode: subprocess.Popen(
            [str(binary), mode, str(SEED), str(n), *map(str, files)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for mode, n in ITERATIONS.items()
    }
    results = {}
    try:
        for mode, process in processes.items():
            stdout, stderr = process.communicate(timeout=TIMEOUT)
            counts = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", stdout)}
            results[mode] = (process.returncode, stdout, stderr, counts)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    return results


@pytest.mark.parametrize("mode", ITERATIONS)
def test_hostile_input_never_breaks_the_learner(runs, mode):
    status, stdout, stderr, _ = runs[mode]
    assert status == 0, stdout + stderr[-6000:]
    assert not SANITIZER_REPORT.search(stderr), stderr[-6000:]


def test_the_fuzzer_reached_every_path(runs):
    """Each mode ran to its end and met both the answers it should give
    and the refusals it should make, so the first test cannot pass for
    doing nothing."""
    frames, state, store = (runs[mode][3] for mode in ("frames", "state", "store"))
    assert frames["streams"] == ITERATIONS["frames"], frames
    for name in (
        "ok_train",
        "ok_save",
        "ok_predict",
        "ok_evaluate",
        "ok_pull",
        "ok_holdout",
        "ok_begin_epoch",
        "ok_factory_reset",
        "error_bad_frame",
        "error_unknown_command",
        "error_bad_request",
        "error_bad_sample",
        "error_bad_label",
        "error_nothing_trained",
        "error_flash",
        "error_heldout_full",
        "error_diverged",
        "saved",
        "restored_boots",
        "power_cuts",
    ):
        assert frames[name] > 0, (name, frames)
    # Most answers were checked against what tt_learner.h promises.
    assert frames["expected_checked"] > frames["frames_served"] // 2, frames
    assert state["state_loads"] == ITERATIONS["state"], state
    assert state["state_accepted"] > 0 and state["state_refused"] > 0, state
    for name in (
        "store_opened",
        "store_refused",
        "store_newest",
        "store_saves",
        "store_save_failures",
        "store_stages",
        "store_erases",
        "store_recoveries",
        "boot_restored",
        "boot_refused",
    ):
        assert store[name] > 0, (name, store)
