"""Training that cannot quietly wreck a model: a step is all or nothing,
saturation is measured and refused at export, and every value crossing
into C is checked first (issue 13)."""

import ast
import builtins
import pathlib
import struct

import numpy as np
import pytest

import tflm_training
from learner_helpers import MODEL, samples
from tflm_training import (
    BadPlanError,
    CorruptModelError,
    DivergedError,
    InvalidArgumentError,
    SaturationError,
    Trainer,
    TrainingPlan,
    saturation,
)

PACKAGE = pathlib.Path(tflm_training.__file__).parent
CLASSIFIER = 10  # operator computing the logits of the transfer DS-CNN
# This plan's first step on samples()[0] overflows in a deeper layer after
# the classifier's biases were already updated (checked below).
CROSS_LAYER_LR = 1e35


def _crafted_velocity_state(trainer, channel, value):
    """The trainer's state with the momentum of one classifier bias set to
    `value` (bias-only classifier plan: residuals then velocities)."""
    state = bytearray(trainer.state())
    memory = trainer.memory()
    floats_at = 16 + memory["weight_copies"]
    velocity = floats_at + 4 * (10 + channel)
    state[velocity : velocity + 4] = struct.pack("<f", value)
    return bytes(state)


@pytest.mark.parametrize("atomic", [True, False])
def test_a_step_that_overflows_halfway_changes_nothing(atomic):
    x, y = samples(1)
    plan = TrainingPlan.classifier_only(MODEL, update="bias", learning_rate=10, momentum=0.9)
    trainer = Trainer(MODEL, plan, atomic_steps=atomic)
    # Channels 0-8 update fine; channel 9's momentum overflows lr * v.
    trainer.load_state(_crafted_velocity_state(trainer, 9, 3e38))
    before = trainer.state()
    with pytest.raises(DivergedError, match="output channel 9 is NaN or infinite"):
        trainer.train_step(x, y)
    assert np.isnan(trainer.losses[-1])
    # Without the undo buffer channels 0-8 keep their update: what atomic steps prevent.
    assert (trainer.state() == before) == atomic


@pytest.mark.parametrize("atomic", [True, False])
def test_a_step_that_diverges_in_a_deeper_layer_changes_no_layer(atomic):
    x, y = samples(1)
    plan = TrainingPlan.bias_only(MODEL, learning_rate=CROSS_LAYER_LR)
    trainer = Trainer(MODEL, plan, atomic_steps=atomic)
    before = trainer.state()
    # Channel 11: a layer before the classifier, whose 10 biases came first.
    with pytest.raises(DivergedError, match="output channel 11 "):
        trainer.train_step(x, y)
    assert (trainer.state() == before) == atomic
    assert (trainer.export(force=True) == MODEL) == atomic


def test_the_steps_before_a_diverged_sample_keep_their_updates():
    x, y = samples(3)
    plan = TrainingPlan.classifier_only(MODEL, update="bias", learning_rate=10, momentum=0.9)
    trainer = Trainer(MODEL, plan)
    trainer.train_step(x[:2], y[:2])
    after_two = trainer.state()
    trainer.load_state(_crafted_velocity_state(trainer, 9, 3e38))
    crafted = trainer.state()
    with pytest.raises(DivergedError):
        trainer.train_step(x[2:], y[2:])
    assert trainer.state() == crafted != after_two
    assert len(trainer.losses) == 3 and np.isfinite(trainer.losses[:2]).all()


def test_an_undo_buffer_must_be_big_enough_and_outside_the_arena():
    lib = tflm_training._native.library()
    trainer = Trainer(MODEL, TrainingPlan.classifier_only(MODEL), atomic_steps=False)
    need = lib.tt_trainer_undo_bytes(trainer._state)
    assert need == trainer.state_bytes() - 16
    small = np.zeros(need - 1, np.uint8)
    assert lib.tt_trainer_set_undo(trainer._state, small.ctypes.data, len(small)) == 1
    arena = trainer._arena
    assert lib.tt_trainer_set_undo(trainer._state, arena.ctypes.data, need) == 1


def test_a_rate_that_saturates_the_classifier_is_measured_and_refused_at_export():
    x, y = samples(20)
    plan = TrainingPlan.classifier_only(MODEL, learning_rate=1e6)
    trainer = Trainer(MODEL, plan)
    trainer.train_step(x, y)
    assert np.isfinite(trainer.losses).all()  # nothing diverged: it saturated
    (layer,) = trainer.saturation()
    assert layer.operator == CLASSIFIER and layer.weights == 640 and layer.biases == 10
    assert layer.weights_newly_pinned > 0.5
    assert layer.weights_pinned >= layer.weights_newly_pinned
    with pytest.raises(
        SaturationError,
        match=r"operator 10: \d+% of 640 trained weights newly "
        r"pinned at \+-127.*lower the learning rate",
    ):
        trainer.export()
    assert trainer.export(force=True) != MODEL
    trainer.max_saturation = 1.0
    assert trainer.export() == trainer.export(force=True)


def test_a_sane_rate_leaves_the_model_unsaturated():
    x, y = samples(20)
    trainer = Trainer(MODEL, TrainingPlan.classifier_only(MODEL, learning_rate=0.02))
    trainer.train_step(x, y)
    (layer,) = trainer.saturation()
    assert layer.weights_newly_pinned < 0.02 and layer.biases_newly_pinned == 0
    trainer.export()


def test_saturation_counts_only_the_trained_channels():
    x, y = samples(10)
    plan = TrainingPlan.for_model(MODEL, {CLASSIFIER: [2, 5]}, learning_rate=1e6)
    trainer = Trainer(MODEL, plan)
    trainer.train_step(x, y)
    (layer,) = saturation.measure(MODEL, trainer.export(force=True), trainer.plan)
    assert layer.weights == 2 * 64 and layer.biases == 2
    saturation.check([layer], limit=1.0)
    with pytest.raises(SaturationError):
        saturation.check([layer], limit=0.0)


@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan"), "0.5", None])
def test_max_saturation_is_a_share(value):
    with pytest.raises(InvalidArgumentError, match="max_saturation"):
        Trainer(MODEL, TrainingPlan.classifier_only(MODEL), max_saturation=value)


# -- values crossing into C ----------------------------------------------------------


def test_integers_are_range_checked_before_ctypes_could_truncate_them():
    x, y = samples(2)
    trainer = Trainer(MODEL, TrainingPlan.classifier_only(MODEL))
    with pytest.raises(InvalidArgumentError, match="tensor 4294967297 does not exist"):
        trainer.get_tensor(2**32 + 1)
    with pytest.raises(InvalidArgumentError, match="tensor -1 does not exist"):
        trainer.get_tensor(-1)
    with pytest.raises(InvalidArgumentError, match="must be an int"):
        trainer.get_tensor(True)
    with pytest.raises(InvalidArgumentError, match="label 4294967299 is outside"):
        trainer.train_step(x[0], 2**32 + 3)
    with pytest.raises(InvalidArgumentError, match="label -1 is outside"):
        trainer.train_step(x[0], -1)
    with pytest.raises(InvalidArgumentError, match=r"input index must be in \[0, 2147483647\]"):
        trainer.interpreter.get_input_details(2**32)
    with pytest.raises(InvalidArgumentError, match=r"epoch must be an int in \[0, 2\*\*32\)"):
        trainer.begin_epoch(2**32)
    assert trainer.losses == []  # nothing ran


@pytest.mark.parametrize("size", [2**32 + 64, 0, -5, True, 1.5])
def test_arena_sizes_are_uint32_byte_counts(size):
    with pytest.raises(InvalidArgumentError, match="arena_size"):
        Trainer(MODEL, TrainingPlan.classifier_only(MODEL), arena_size=size)
    with pytest.raises(InvalidArgumentError, match="arena_size"):
        tflm_training.Interpreter(MODEL, arena_size=size)


def test_an_empty_batch_is_refused_not_divided_by_zero():
    x, y = samples(1)
    trainer = Trainer(MODEL, TrainingPlan.classifier_only(MODEL))
    for call in (
        lambda: trainer.train_step(x[:0], y[:0]),
        lambda: trainer.evaluate(x[:0], y[:0]),
        lambda: trainer.gradient_norms(x[:0], y[:0]),
    ):
        with pytest.raises(InvalidArgumentError, match="no samples"):
            call()


def test_float_samples_must_be_finite():
    model = (pathlib.Path(__file__).parent / "models" / "float_io.tflite").read_bytes()
    interpreter = tflm_training.Interpreter(model)
    shape = tuple(interpreter.get_input_details(0)["shape"])
    trainer = Trainer(model, TrainingPlan.classifier_only(model))
    x = np.zeros(shape, np.float32)
    x.flat[0] = np.nan
    with pytest.raises(tflm_training.InputMismatchError, match="NaN or infinity"):
        trainer.train_step(x, 0)


@pytest.mark.parametrize("rate", [1e39, float("inf"), float("nan"), -1.0, 0.0, "0.1"])
def test_learning_rates_must_be_positive_float32_numbers(rate):
    with pytest.raises(BadPlanError, match="learning_rate must be a positive finite float32"):
        TrainingPlan.classifier_only(MODEL, learning_rate=rate).to_bytes()


def test_plan_fields_that_do_not_fit_their_binary_form_are_refused():
    plan = TrainingPlan.classifier_only(MODEL)
    for field, value in (
        ("batch_size", 2**31),
        ("num_classes", 2**40),
        ("model_crc32", -1),
        ("logits_tensor", 2**31),
    ):
        broken = TrainingPlan.from_bytes(plan.to_bytes())
        setattr(broken, field, value)
        with pytest.raises(BadPlanError, match=field):
            broken.to_bytes()
    broken = TrainingPlan.from_bytes(plan.to_bytes())
    broken.layers[0].channels = [0, 2**31]
    with pytest.raises(BadPlanError, match="int32 channel indices"):
        broken.to_bytes()


def test_plan_and_model_errors_are_the_library_errors():
    with pytest.raises(BadPlanError, match="not a training plan"):
        TrainingPlan.from_bytes(b"x" * 100)
    with pytest.raises(CorruptModelError, match="not a .tflite model"):
        TrainingPlan.classifier_only(b"\0" * 64)
    with pytest.raises(BadPlanError, match="does not exist"):
        TrainingPlan.for_model(MODEL, {99: None})


def test_every_error_the_package_raises_is_a_library_error():
    """No module of the package raises a builtin exception (ValueError,
    OverflowError, ...): callers catch TflmTrainingError and its kinds."""
    raised = {}
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                name = getattr(node.exc.func, "id", getattr(node.exc.func, "attr", None))
                raised.setdefault(name, path.name)
    builtin = {
        name: where
        for name, where in raised.items()
        if isinstance(getattr(builtins, name, None), type)
        and issubclass(getattr(builtins, name), BaseException)
    }
    assert not builtin, f"builtin exceptions raised: {builtin}"
    assert {"BadPlanError", "InvalidArgumentError", "CorruptModelError"} <= set(raised)
