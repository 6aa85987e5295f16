"""Backward kernels (tflm_training/runtime/kernels/*_backward.c) on the host,
without TensorFlow (tests/test_backward_ops.py compares their arithmetic
against TensorFlow autodiff).

The kernels themselves run through tt_backward_run_node /
tt_backward_prepare_node on one-operator models: their input gradients must
equal the pure functions' (tt_backward_math.h) bit for bit, the gradients
they hand the optimizer for the selected channels must be the pure
functions' too, and prepare must report the minimal saved inputs, scratch
and the clamp range the output's gradient passes through. The pure
functions add input gradients to what the buffer holds, and
tt_grad_scaled_add is exact.
"""

import ctypes

import numpy as np
import pytest

import backward_kernels as bk
import single_op_models as som
from backward_kernels import (
    INT32,
    RELU,
    TT_ERR_BAD_PLAN,
    TT_ERR_BAD_STATE,
    TT_OK,
    UPDATE_BIAS,
    UPDATE_WEIGHTS,
    ConvShape,
    ConvWindow,
    DepthwiseShape,
    OneOp,
    PoolParams,
    T,
    aligned_floats,
    assert_grad_close,
    broadcast_params,
    c_array,
    conv_like_model,
    fc_case,
    make_update,
    ptr,
    rand_grad,
    scales_arg,
)

# The native library fixture, shared with test_backward_ops and
# test_in_place_gradients: pytest finds fixtures by name in the module's
# namespace.
lib = bk.lib


def test_fully_connected_input_grad_accumulates(lib):
    """Input gradients are added to what the buffer holds (summed in the
    same fixed order, starting from the value already there)."""
    c = fc_case(99)
    scales, step = scales_arg(c["w_scale"])
    args = (
        c["batches"],
        c["depth"],
        c["units"],
        ptr(c["q_w"]),
        c["filter_offset"],
        ptr(scales),
        step,
        ptr(c["dy"]),
    )
    once = np.zeros((c["batches"], c["depth"]), np.float32)
    lib.tt_fc_input_grad(*args, ptr(once))
    twice = np.ones_like(once)
    lib.tt_fc_input_grad(*args, ptr(twice))
    magnitude = 1.0 + np.abs(c["dy"]).astype(np.float64) @ np.abs(c["w_real"])
    assert_grad_close(twice, 1.0 + once.astype(np.float64), magnitude, 2 * c["units"], "FC dX += ")


def test_scaled_add(lib):
    rng = np.random.default_rng(10)
    dy = rand_grad(rng, (37,))
    dx = rng.standard_normal(37).astype(np.float32)
    expected = dx + np.float32(1.5) * dy
    lib.tt_grad_scaled_add(37, 1.5, ptr(dy), ptr(dx))
    np.testing.assert_array_equal(dx, expected)


@pytest.mark.parametrize("op_name", ["FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_kernel_with_parameters(lib, op_name, per_channel):
    rng = np.random.default_rng([11, len(op_name), per_channel])
    one, q_w, w_scales, dim = conv_like_model(lib, rng, op_name, per_channel)
    x, y = one.tensor(0), one.tensor(3)
    channels = q_w.shape[dim]
    per = q_w.size // channels
    y_zp = -10

    # prepare: clamp = the fused RELU's range; saved input and scratch only
    # when weights train.
    status, frozen = one.prepare()
    assert status == TT_OK, one.error()
    assert (frozen.saved_inputs, frozen.scratch_bytes) == (0, 0)
    assert frozen.has_clamp and (frozen.clamp_min, frozen.clamp_max) == (y_zp, 127)
    status, bias_only = one.prepare(make_update(UPDATE_BIAS, [1, 3], per))
    assert status == TT_OK, one.error()
    assert (bias_only.saved_inputs, bias_only.scratch_bytes) == (0, 0)
    selected = [0, 2, channels - 1]
    update = make_update(UPDATE_WEIGHTS, selected, per)
    status, needs = one.prepare(update)
    assert status == TT_OK, one.error()
    assert (needs.saved_inputs, needs.scratch_bytes) == (1, 4 * per)

    # Frozen: the input gradient only, equal to the pure function's.
    dy = rand_grad(rng, y.shape)
    dx = np.zeros(x.shape, np.float32)
    assert one.backward(dy, [dx]) == TT_OK, one.error()
    expected = np.zeros(x.shape, np.float32)
    scales, step = scales_arg(w_scales if per_channel else w_scales[0])
    if op_name == "FULLY_CONNECTED":
        lib.tt_fc_input_grad(3, 6, 5, ptr(q_w), 0, ptr(scales), step, ptr(dy), ptr(expected))
    elif op_name == "CONV_2D":
        s = ConvShape(1, 5, 5, 4, 3, 3, 2, 3, 3, 6, 3)
        w = ConvWindow(2, 2, 1, 1, 1, 1)
        lib.tt_conv_input_grad(
            ctypes.byref(s), ctypes.byref(w), ptr(q_w), ptr(scales), step, ptr(dy), ptr(expected)
        )
    else:
        s = DepthwiseShape(1, 5, 4, 3, 3, 2, 2, 5, 4, 6)
        w = ConvWindow(1, 1, 1, 1, 1, 0)
        lib.tt_depthwise_input_grad(
            ctypes.byref(s), ctypes.byref(w), ptr(q_w), ptr(scales), step, ptr(dy), ptr(expected)
        )
    np.testing.assert_array_equal(dx, expected)

    # Training weights needs RAM copies of the filter and bias.
    scratch = aligned_floats(per)
    assert one.backward(dy, [None], update, scratch) == TT_ERR_BAD_STATE
    assert b"RAM copy" in one.error()
    one.move_to_arena([1, 2])
    dx2 = np.zeros(x.shape, np.float32)
    assert one.backward(dy, [dx2], update, scratch) == TT_OK, one.error()
    np.testing.assert_array_equal(dx2, expected)

    # What reached the optimizer, per selected channel: s_W * dL/dW and
    # s_W s_x * dL/db.
    x_scale, x_zp = np.float32(0.05), 4
    accumulated_w = update.keep["weight_accumulator"].reshape(len(selected), per)
    accumulated_b = update.keep["bias_accumulator"]
    for slot, ch in enumerate(selected):
        grad = np.zeros(per, np.float32)
        bias = ctypes.c_float()
        if op_name == "FULLY_CONNECTED":
            lib.tt_fc_channel_grad(
                3, 6, 5, ch, ptr(x), x_zp, x_scale, ptr(dy), ptr(grad), ctypes.byref(bias)
            )
        else:
            channel_grad = (
                lib.tt_conv_channel_grad if op_name == "CONV_2D" else lib.tt_depthwise_channel_grad
            )
            channel_grad(
                ctypes.byref(s),
                ctypes.byref(w),
                ch,
                ptr(x),
                x_zp,
                x_scale,
                ptr(dy),
                ptr(grad),
                ctypes.byref(bias),
            )
        np.testing.assert_array_equal(accumulated_w[slot], grad * w_scales[ch])
        assert accumulated_b[slot] == np.float32(bias.value) * (w_scales[ch] * x_scale)

    # Applied, the steps land on the selected channels' weights (where the
    # filter layout puts them) against the gradient, and nowhere else.
    before = one.tensor(1).copy()
    step = make_update(
        UPDATE_WEIGHTS,
        selected,
        per,
        apply=True,
        learning_rate=float(3.0 / np.abs(accumulated_w).max()),
    )
    assert one.backward(dy, [None], step, scratch) == TT_OK, one.error()
    after = one.tensor(1)
    moved = np.moveaxis(after.astype(int) - before, dim, 0).reshape(channels, per)
    unselected = [c for c in range(channels) if c not in selected]
    assert not moved[unselected].any()
    assert np.all(moved[selected] * np.sign(accumulated_w) <= 0)
    assert np.count_nonzero(moved[selected]) >= len(selected)

    # Bias-only training reads neither the input nor the weights.
    bias_update = make_update(UPDATE_BIAS, [channels - 1], per)
    assert one.backward(dy, [None], bias_update) == TT_OK, one.error()
    assert bias_update.keep["bias_accumulator"][0] == accumulated_b[-1]


@pytest.mark.parametrize("op_name", ["FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D"])
def test_prepare_rejects_bad_updates(lib, op_name):
    rng = np.random.default_rng(12)
    one, q_w, _, dim = conv_like_model(lib, rng, op_name, True, with_bias=False)
    channels = q_w.shape[dim]
    per = q_w.size // channels
    cases = [
        (make_update(UPDATE_WEIGHTS, [channels], per), b"out of range"),
        (make_update(UPDATE_WEIGHTS, [2, 1], per), b"increasing"),
        (make_update(UPDATE_WEIGHTS, [0], per + 1), b"weights per channel"),
        (make_update(UPDATE_BIAS, [0], per), b"has none"),
        (make_update(5, [0], per), b"update kind"),
    ]
    for update, message in cases:
        status, _ = one.prepare(update)
        assert status == TT_ERR_BAD_PLAN, message
        assert message in one.error(), one.error()


def _run_and_compare(one, dy, grads, expected):
    assert one.backward(dy, grads) == TT_OK, one.error()
    for grad, want in zip(grads, expected):
        if want is not None:
            np.testing.assert_array_equal(grad, want)


def test_kernels_without_parameters(lib):
    """The glue of the other kernels: the right shapes and gains reach the
    pure functions, and prepare says what the output clamp and saved
    inputs are."""
    rng = np.random.default_rng(13)
    s = np.float32(0.05)

    # ADD with broadcasting and RELU6: clamp = the activation's range.
    one = OneOp(
        lib,
        rng,
        "ADD",
        [T((2, 3, 4), scale=s, zero_point=1), T((3, 1), scale=0.07, zero_point=-2)],
        [T((2, 3, 4), scale=0.1, zero_point=-20)],
        som.options("Add", fusedActivationFunction=3),
    )
    status, needs = one.prepare()
    assert status == TT_OK, one.error()
    assert (needs.saved_inputs, needs.has_clamp, needs.clamp_min, needs.clamp_max) == (
        0,
        True,
        -20,
        40,
    )
    dy = rand_grad(rng, (2, 3, 4))
    params, _ = broadcast_params((2, 3, 4), (3, 1))
    e1, e2 = np.zeros((2, 3, 4), np.float32), np.zeros((3, 1), np.float32)
    lib.tt_add_sub_grad(ctypes.byref(params), 0, ptr(dy), ptr(e1), ptr(e2))
    _run_and_compare(one, dy, [np.zeros_like(e1), np.zeros_like(e2)], [e1, e2])

    # Pools: max pool keeps its input; RELU narrows the clamp's low end.
    for op_name in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
        one = OneOp(
            lib,
            rng,
            op_name,
            [T((1, 5, 5, 2), scale=s, zero_point=-3)],
            [T((1, 3, 3, 2), scale=s, zero_point=-3)],
            som.options(
                "Pool2D",
                padding=0,
                strideH=2,
                strideW=2,
                filterHeight=3,
                filterWidth=2,
                fusedActivationFunction=RELU,
            ),
        )
        status, needs = one.prepare()
        assert status == TT_OK, one.error()
        assert needs.saved_inputs == (1 if op_name == "MAX_POOL_2D" else 0)
        assert (needs.has_clamp, needs.clamp_min, needs.clamp_max) == (True, -3, 128)
        p = PoolParams(1, 5, 5, 2, 3, 3, 2, 2, 3, 2, 1, 0, -3, 127)
        dy = rand_grad(rng, (1, 3, 3, 2))
        expected = np.zeros((1, 5, 5, 2), np.float32)
        if op_name == "MAX_POOL_2D":
            lib.tt_max_pool_grad(ctypes.byref(p), ptr(one.tensor(0)), 1.0, ptr(dy), ptr(expected))
        else:
            lib.tt_average_pool_grad(ctypes.byref(p), 1.0, ptr(dy), ptr(expected))
        _run_and_compare(one, dy, [np.zeros_like(expected)], [expected])

    # MEAN over a negative axis, requantizing: int8 saturation clamps.
    axis = np.array([-1, 1], np.int32)
    one = OneOp(
        lib,
        rng,
        "MEAN",
        [T((2, 3, 4), scale=s, zero_point=0), T((2,), INT32, data=axis)],
        [T((2,), scale=0.02, zero_point=5)],
        som.options("Reducer", keepDims=False),
    )
    status, needs = one.prepare()
    assert status == TT_OK, one.error()
    assert (needs.has_clamp, needs.clamp_min, needs.clamp_max) == (True, -128, 127)
    dy = rand_grad(rng, (2,))
    expected = np.zeros((2, 3, 4), np.float32)
    lib.tt_mean_grad(3, c_array([2, 3, 4], np.int32), 0b110, ptr(dy), ptr(expected))
    _run_and_compare(one, dy, [np.zeros_like(expected)], [expected])

    # PADV2 with a non-constant fill value, output scale twice the input's.
    paddings = np.array([[0, 1], [2, 0], [1, 1]], np.int32)
    one = OneOp(
        lib,
        rng,
        "PADV2",
        [
            T((2, 2, 3), scale=s, zero_point=0),
            T((3, 2), INT32, data=paddings),
            T((1,), scale=2 * s, zero_point=0),
        ],
        [T((3, 4, 5), scale=2 * s, zero_point=0)],
    )
    status, needs = one.prepare()
    assert status == TT_OK and not needs.has_clamp, one.error()
    dy = rand_grad(rng, (3, 4, 5))
    expected = np.zeros((2, 2, 3), np.float32)
    value = np.zeros(1, np.float32)
    lib.tt_pad_grad(
        3,
        c_array([2, 2, 3], np.int32),
        c_array([0, 2, 1], np.int32),
        c_array([1, 0, 1], np.int32),
        2.0,
        ptr(dy),
        ptr(expected),
        ptr(value),
    )
    _run_and_compare(
        one, dy, [np.zeros_like(expected), None, np.zeros(1, np.float32)], [expected, None, value]
    )

    # CONCATENATION along a negative axis: each input gets its slice.
    one = OneOp(
        lib,
        rng,
        "CONCATENATION",
        [T((2, 1, 3), scale=s), T((2, 2, 3), scale=s)],
        [T((2, 3, 3), scale=s)],
        som.options("Concatenation", axis=-2),
    )
    status, needs = one.prepare()
    assert status == TT_OK and not needs.has_clamp, one.error()
    dy = rand_grad(rng, (2, 3, 3))
    _run_and_compare(
        one,
        dy,
        [np.zeros((2, 1, 3), np.float32), np.zeros((2, 2, 3), np.float32)],
        [dy[:, :1], dy[:, 1:]],
    )

    # Copies and activations: gains and clamps.
    cases = [
        # op, input (scale, zp), output (scale, zp), gain, clamp
        ("RESHAPE", (s, 2), (2 * s, 2), 2.0, None),
        ("QUANTIZE", (s, 2), (s, 2), 1.0, None),
        ("QUANTIZE", (s, 2), (0.5 * s, 0), 1.0, (-128, 127)),
        ("RELU", (s, 2), (s, 2), 1.0, (2, 128)),
        ("RELU", (s, 2), (0.5 * s, -7), 1.0, (-7, 127)),
        ("RELU6", (s, 2), (s, 2), 1.0, (2, 122)),
        ("RELU6", (0.01, -100), (0.02, -100), 2.0, (-100, 127)),
    ]
    for op_name, (s_in, zp_in), (s_out, zp_out), gain, clamp in cases:
        inputs = [T((2, 5), scale=s_in, zero_point=zp_in)]
        if op_name == "RESHAPE":
            inputs.append(T((2,), INT32, data=np.array([5, 2], np.int32)))
        shape = (5, 2) if op_name == "RESHAPE" else (2, 5)
        one = OneOp(lib, rng, op_name, inputs, [T(shape, scale=s_out, zero_point=zp_out)])
        status, needs = one.prepare()
        assert status == TT_OK, one.error()
        assert needs.saved_inputs == 0 and needs.scratch_bytes == 0
        assert needs.has_clamp == (clamp is not None), op_name
        if clamp is not None:
            assert (needs.clamp_min, needs.clamp_max) == clamp, op_name
        dy = rand_grad(rng, shape)
        base = rng.standard_normal((2, 5)).astype(np.float32)
        grad = base.copy()
        assert one.backward(dy, [grad]) == TT_OK, one.error()
        np.testing.assert_array_equal(grad, base + np.float32(gain) * dy.reshape(2, 5), op_name)


def test_operator_without_backward_kernel(lib):
    rng = np.random.default_rng(14)
    one = OneOp(
        lib,
        rng,
        "SOFTMAX",
        [T((1, 4), scale=0.1, zero_point=0)],
        [T((1, 4), scale=1 / 256, zero_point=-128)],
        som.options("Softmax", beta=1.0),
    )
    status, _ = one.prepare()
    assert status == 3  # TT_ERR_UNSUPPORTED
    assert b"no backward kernel" in one.error()
