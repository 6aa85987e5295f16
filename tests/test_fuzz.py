"""Hostile bytes: thousands of mutated models and training plans against an
ASan + UBSan build.

The driver (tests/fuzz/fuzz_models.c) aborts on any out-of-bounds access or
undefined behaviour; the timeout catches hangs. Runs are bounded by both an
iteration count and seconds, and seeded, so they are reproducible.
"""

import pathlib
import re
import subprocess

import pytest

import training_helpers as th
from tflm_training import host_build
from tflm_training import plan as training_plan

pytestmark = pytest.mark.slow

TESTS = pathlib.Path(__file__).resolve().parent
MODELS = th.every_model()
SECONDS = 45
PLAN_SEEDS = {
    "mlp": {2: range(0, 32, 3), 3: None},
    "conv_stack": {5: range(10), 7: None},
    "mobilenet_v2_block": {12: [1, 5, 7], 13: range(8), 17: None},
    "residual_relu": {14: range(0, 48, 2), 17: None},
    "ds_cnn": {7: range(20), 8: range(4), 11: None},
}
# Low-rank seeds, {operator: rank}: the fuzzer's second step refreshes the
# projectors (refresh_steps 1).
LOWRANK_SEEDS = {"mlp": {2: 4, 3: 3}, "mobilenet_v2_block": {13: 4, 17: 2}, "ds_cnn": {8: 8, 11: 4}}


def _sampled(model_bytes, layers):
    """The seed's layers sampled (the logits layer static), a budget of
    about a third of their candidates, residual and momentum state."""
    plan = training_plan.TrainingPlan.for_model(
        model_bytes,
        [
            training_plan.LayerPlan(op, "sampled", channels, channel_cost=None)
            for op, channels in layers.items()
            if channels is not None
        ]
        + [training_plan.LayerPlan(op) for op, channels in layers.items() if channels is None],
        momentum=0.9,
        seed=7,
        sample_budget=1 << 30,
    )
    sampled = [layer for layer in plan.layers if layer.update == "sampled"]
    plan.sample_budget = sum(layer.channel_cost * len(layer.channels) for layer in sampled) // 3
    return plan


def _build_fuzzer(directory, extra_flags=()):
    binary = directory / "fuzz_models"
    flags = [f for f in host_build.COMMON_FLAGS if f not in ("-shared", "-fPIC")]
    command = [
        "gcc",
        *flags,
        *host_build.SANITIZE_FLAGS,
        *extra_flags,
        *[f"-I{d}" for d in host_build.include_dirs()],
        "-o",
        str(binary),
        str(TESTS / "fuzz" / "fuzz_models.c"),
        *map(str, host_build.runtime_sources()),
    ]
    subprocess.run(command, check=True, capture_output=True, text=True)
    return binary


@pytest.fixture(scope="module")
def fuzzer(tmp_path_factory):
    return _build_fuzzer(tmp_path_factory.mktemp("fuzz"))


@pytest.fixture(scope="module")
def dsp_fuzzer(tmp_path_factory):
    """The fuzzer with the Cortex-M4 DSP kernel paths, emulated in C."""
    return _build_fuzzer(tmp_path_factory.mktemp("fuzz_dsp"), host_build.EMULATE_DSP_FLAGS)


def _run(fuzzer, mode, iterations, files):
    result = subprocess.run(
        [str(fuzzer), mode, str(SECONDS), str(iterations), "20261122", *map(str, files)],
        capture_output=True,
        text=True,
        timeout=SECONDS + 120,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    counts = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", result.stdout)}
    # Mutations must exercise both paths: inputs init rejects and ones it runs.
    assert counts["accepted"] > 0 and counts["rejected"] > 0, result.stdout
    return counts


def test_mutated_models_never_crash_the_runtime(fuzzer):
    counts = _run(fuzzer, "models", 6000, MODELS)
    assert counts["iterations"] >= 1000


def test_mutated_models_never_crash_the_dsp_paths(dsp_fuzzer):
    counts = _run(dsp_fuzzer, "models", 6000, MODELS)
    assert counts["iterations"] >= 1000


def test_mutated_plans_never_crash_the_trainer(fuzzer, tmp_path):
    files = []
    for name, layers in PLAN_SEEDS.items():
        model = th.model_path(name)
        model_bytes = model.read_bytes()
        plans = [
            training_plan.TrainingPlan.for_model(model_bytes, layers, momentum=0.9),
            training_plan.TrainingPlan.bias_only(model_bytes, batch_size=2),
            _sampled(model_bytes, layers),
        ]
        for k, plan in enumerate(plans):
            path = tmp_path / f"{name}_{k}.bin"
            path.write_bytes(plan.to_bytes())
            files += [model, path]
    for name, ranks in LOWRANK_SEEDS.items():
        model = th.model_path(name)
        plan = training_plan.TrainingPlan.lowrank(model.read_bytes(), ranks, refresh_steps=1)
        path = tmp_path / f"{name}_lowrank.bin"
        path.write_bytes(plan.to_bytes())
        files += [model, path]
    counts = _run(fuzzer, "plans", 20000, files)
    assert counts["iterations"] >= 1000
