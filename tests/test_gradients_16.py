"""16-bit gradients (runtime/math/tt_grad.h): a plan with gradient_bits=16 stores
every activation gradient as bfloat16, rounded to nearest even, in a runtime
built for it. The arena's gradient buffers halve, the memory model follows
to the byte, training follows float training closely, and the firmware
trains such a plan bit-identically with the host."""

import ctypes

import numpy as np
import pytest

import training_helpers as th
from test_firmware_training import train_on_mcu
from test_in_place_gradients import _plan, _random_samples
from test_memory_model import TRAINING_MODELS, _model_seed, check_plan, random_plan
from tflm_training import Trainer, TrainingPlan, _native, memory_model
from tflm_training.errors import BadPlanError
from tflm_training.plan import gradient_bits_of

TT_ERR_BAD_PLAN = 7


def _with_bits(plan, bits):
    plan.gradient_bits = bits
    return plan


def _scaled_write(lib, gain, dy):
    """tt_grad_scaled_write of `lib` on stored gradients: dx = 0 + gain * dy."""
    dtype = np.uint16 if lib.tt_gradient_bits() == 16 else np.float32
    dy = np.ascontiguousarray(dy, dtype)
    dx = np.zeros_like(dy)
    lib.tt_grad_scaled_write.argtypes = [
        ctypes.c_int32,
        ctypes.c_float,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    lib.tt_grad_scaled_write.restype = None
    lib.tt_grad_scaled_write(len(dy), gain, dy.ctypes.data, dx.ctypes.data)
    return dx


def _bfloat16_nearest_even(values):
    """Rounds float32 values to bfloat16 bits, worked out on the integers."""
    bits = np.asarray(values, np.float32).view(np.uint32).astype(np.uint64)
    upper, lower = bits >> 16, bits & 0xFFFF
    up = (lower > 0x8000) | ((lower == 0x8000) & (upper & 1 == 1))
    return (upper + up).astype(np.uint16)


def _bfloat16_value(bits):
    return (np.asarray(bits, np.uint32) << 16).view(np.float32)


def test_the_two_libraries_store_gradients_in_their_width():
    assert _native.library().tt_gradient_bits() == 32
    assert _native.library(16).tt_gradient_bits() == 16


def test_bfloat16_rounds_to_nearest_even():
    lib = _native.library(16)
    rng = np.random.default_rng(3)
    one = _bfloat16_nearest_even([1.0])
    for gain in [1 + 2**-8, 1 + 3 * 2**-8, 1 - 2**-9, 1 + 2**-7 + 2**-9, 0.1, -2.75, 1e-30]:
        got = _scaled_write(lib, gain, np.repeat(one, 1))
        assert got.tolist() == _bfloat16_nearest_even([np.float32(gain)]).tolist(), gain
    dy = _bfloat16_nearest_even(rng.standard_normal(4096).astype(np.float32) * 1e-3)
    for gain in [0.3, 1.7, -123.456]:
        got = _scaled_write(lib, gain, dy)
        want = _bfloat16_nearest_even(np.float32(gain) * _bfloat16_value(dy))
        assert got.tolist() == want.tolist()
    # Ties go to the even neighbour: 1 + 2^-8 lies halfway between 1 and 1 + 2^-7.
    assert _bfloat16_value(_scaled_write(lib, 1 + 2**-8, one))[0] == 1.0
    assert _bfloat16_value(_scaled_write(lib, 1 + 3 * 2**-8, one))[0] == 1 + 2**-6


def test_bfloat16_keeps_infinity_and_nan_apart():
    lib = _native.library(16)
    one = _bfloat16_nearest_even([1.0])
    assert np.isposinf(_bfloat16_value(_scaled_write(lib, np.inf, one))[0])
    assert np.isneginf(_bfloat16_value(_scaled_write(lib, -np.inf, one))[0])
    # The largest float32 rounds up past bfloat16's largest: infinity.
    assert np.isposinf(_bfloat16_value(_scaled_write(lib, 3.4028234e38, one))[0])
    # A NaN whose payload sits in the low half only must stay a NaN.
    quiet_low = np.array([0x7F800001], np.uint32).view(np.float32)[0]
    for nan in [np.nan, quiet_low]:
        assert np.isnan(_bfloat16_value(_scaled_write(lib, nan, one))[0])


def test_the_32_bit_library_is_plain_float():
    dy = np.array([1.0, -3.5, 1e-3, 7e30], np.float32)
    assert (
        _scaled_write(_native.library(), 1 + 2**-8, dy).tolist()
        == (np.float32(0) + np.float32(1 + 2**-8) * dy).tolist()
    )


def test_a_plan_carries_its_gradient_width():
    model = th.model_bytes("mlp")
    plan = TrainingPlan.bias_only(model, gradient_bits=16)
    data = plan.to_bytes()
    assert gradient_bits_of(data) == 16
    assert TrainingPlan.from_bytes(data).gradient_bits == 16
    assert gradient_bits_of(TrainingPlan.bias_only(model).to_bytes()) == 32
    for bad in (8, 24, True, "16"):
        with pytest.raises(BadPlanError, match="gradient_bits must be 32 or 16"):
            _with_bits(TrainingPlan.bias_only(model), bad).to_bytes()


@pytest.mark.parametrize("plan_bits,library_bits", [(16, 32), (32, 16)])
def test_a_runtime_refuses_a_plan_of_the_other_width(plan_bits, library_bits):
    model = th.model_bytes("mlp")
    plan = TrainingPlan.bias_only(model, gradient_bits=plan_bits).to_bytes()
    lib = _native.library(library_bits)
    state = ctypes.create_string_buffer(lib.tt_sizeof_trainer())
    arena = ctypes.create_string_buffer(1 << 20)
    model_buffer = ctypes.create_string_buffer(model, len(model))
    plan_buffer = ctypes.create_string_buffer(plan, len(plan))
    status = lib.tt_trainer_init(
        state,
        ctypes.addressof(model_buffer),
        len(model),
        ctypes.addressof(plan_buffer),
        len(plan),
        ctypes.addressof(arena),
        len(arena),
    )
    assert status == TT_ERR_BAD_PLAN
    message = lib.tt_trainer_error(state).contents.message.decode()
    assert (
        f"stores gradients in {plan_bits} bits, this runtime in {library_bits}; build the "
        f"runtime with TT_GRADIENT_BITS={plan_bits}"
    ) in message


@pytest.mark.parametrize(
    "name,kind,saving",
    [
        ("ds_cnn", "bias_all", 0.30),
        ("conv_stack", "bias_all", 0.30),
        ("transfer/ds_cnn_fsdd", "bias_momentum", 0.20),
        ("residual_relu", "frozen_between", 0.0),
    ],
)
def test_16_bit_gradients_cut_the_arena_and_the_model_follows(name, kind, saving):
    model = th.model_bytes(name)
    wide = Trainer(model, _plan(model, kind))
    narrow = Trainer(model, _with_bits(_plan(model, kind), 16))
    memory = memory_model.training_memory(model, _with_bits(_plan(model, kind), 16))
    assert narrow.arena_used_bytes() == memory.total
    assert narrow.memory() == wide.memory() | {
        "planned_region": narrow.memory()["planned_region"],
        "total": memory.total,
    }
    assert narrow.arena_used_bytes() <= (1 - saving) * wide.arena_used_bytes()


@pytest.mark.parametrize("path", TRAINING_MODELS, ids=lambda p: p.stem)
def test_training_memory_of_random_16_bit_plans(path):
    model = path.read_bytes()
    rng = np.random.default_rng(_model_seed(path) + [16])
    plans = [TrainingPlan.bias_only(model)] + [random_plan(rng, model) for _ in range(20)]
    accepted = sum(check_plan(model, _with_bits(plan, 16)) for plan in plans)
    assert accepted >= len(plans) // 2, f"only {accepted} of {len(plans)} plans accepted"


def test_16_bit_gradients_stay_close_to_float_ones():
    """The gradient probe through both widths, every layer's bias gradient
    per channel: within a few parts in a thousand (bfloat16 keeps 8
    significant bits), but not the same bits."""
    model = th.model_bytes("transfer/ds_cnn_fsdd")
    x, y = _random_samples(model, 12, 5)
    wide, narrow = (
        Trainer(model, _with_bits(_plan(model, "bias_all"), bits)).gradient_norms(x, y, bias=True)
        for bits in (32, 16)
    )
    assert sorted(wide) == sorted(narrow) and len(wide) == 10
    for op in wide:
        a, b = np.sqrt(wide[op]), np.sqrt(narrow[op])
        assert np.array_equal(a == 0, b == 0), op  # channels no gradient reaches
        error = np.abs(b - a)[a > 0] / a[a > 0]
        assert np.median(error) < 0.005 and error.max() < 0.03, op
        assert not np.array_equal(a, b), op


@pytest.mark.firmware
def test_the_firmware_trains_a_16_bit_plan_bit_identically_with_the_host(tmp_path):
    """ds_cnn_fsdd, biases after the first layer and the classifier with
    momentum in batches of 2; its pointwise layers write their input
    gradients in place."""
    model = th.model_bytes("transfer/ds_cnn_fsdd")
    plan = _with_bits(_plan(model, "bias_momentum"), 16)
    assert any(p.shared_by for p in memory_model.training_memory(model, plan).placements)
    x, y = _random_samples(model, 4, 8)
    _, result, run = train_on_mcu(model, plan.to_bytes(), (x, y), None, tmp_path, 1)
    trainer = Trainer(model, plan)
    losses = np.array([trainer.train_step(x[i], y[i]) for i in range(len(y))], np.float32)
    assert result.log.errors == []
    assert run.init["arena_used"] == trainer.arena_used_bytes()
    assert run.losses.view(np.uint32).tolist() == losses.view(np.uint32).tolist()
    for tensor, event in run.parameters.items():
        assert event["data"] == trainer.get_tensor(tensor).tobytes(), f"tensor {tensor}"
