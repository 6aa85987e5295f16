"""Backward kernels (tflm_training/runtime/kernels/*_backward.c) against
TensorFlow autodiff.

What is compared. Each backward kernel keeps its arithmetic in exported
pure functions (tt_backward_math.h). For random shapes, strides, paddings,
dilations, groups, depth multipliers, broadcasts and axes, the test draws
int8 tensors with random scales and zero points, dequantizes them exactly
in float64 (x = scale * (q - zero_point), scale a float32 value), draws a
random float32 dL/dy (a third of it zero, as masks leave it) and asks
tf.GradientTape, in float64, for the gradients of the equivalent float op
(tf.nn.conv2d, tf.nn.depthwise_conv2d, x @ W^T + b, tf.nn.avg_pool2d,
tf.nn.max_pool2d, tf.reduce_mean, tf.pad, tf.concat, +, -). Ours get the
very same int8 values, scales and dL/dy. So both sides compute the same
real-valued sums of products: dX (input gradient), dW and db of a random
subset of output channels (the weight gradient is only ever computed per
selected channel).

Why the tolerance is right. An element of ours is a float32 sum of n
terms, each a product of exact values (int8 differences are exact in
float32; dL/dy is the same float32 number on both sides) rounded at most
twice (dy * scale, then * weight; or the final * input scale, or a
division by a window count). With unit roundoff u = 2^-24 the classic
bound for such a sum is |ours - exact| <= gamma_{n+2} * sum|terms|,
gamma_k = k u / (1 - k u) ~ k u. The test allows
    |ours - ref| <= (n + 2) * eps32 * sum|terms|,   eps32 = 2^-23 = 2u,
i.e. twice the worst case, where n is the largest number of terms any
element of that gradient sums (e.g. filters_per_group * KH * KW for a conv
input gradient, batches * OH * OW for a conv weight gradient). The float64
reference is exact to ~n * 2^-53 * sum|terms|, far below that. sum|terms|
comes from TensorFlow too: every gradient here is bilinear in dL/dy and
the weights (or the input), so the same gradient of |inputs| with |dL/dy|
is exactly the sum of the absolute terms (max pool, whose routing depends
on the input values, keeps its input). A wrong index, a missing term or a
wrong scale shows up as an O(1) relative error, far outside the bound.
Gradients that only move values (concatenation, pad, reshape) must be
exact.

The second half runs the backward kernels themselves (through
tt_backward_run_node / tt_backward_prepare_node on one-operator models):
their input gradients must equal the pure functions' bit for bit, the
gradients they hand the optimizer for the selected channels must be the
pure functions' too, and prepare must report the minimal saved inputs,
scratch and the clamp range the output's gradient passes through.
"""

import ctypes
import os
import sys

import numpy as np
import pytest
import tensorflow as tf

from tflm_training import _native
from tflm_training.interpreter import Interpreter

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)
import single_op_models as som

pytestmark = pytest.mark.tensorflow

EPS32 = float(np.finfo(np.float32).eps)  # 2^-23
MAX_RANK = 6
MAX_INPUTS = 8
UPDATE_BIAS, UPDATE_WEIGHTS = 0, 1
TT_OK, TT_ERR_BAD_STATE, TT_ERR_BAD_PLAN = 0, 6, 7

i32 = ctypes.c_int32
f32 = ctypes.c_float
vp = ctypes.c_void_p


def _struct(name, fields):
    return type(name, (ctypes.Structure,), {"_fields_": fields})


def _ints(*names):
    return [(n, i32) for n in names]


ConvShape = _struct(
    "ConvShape",
    _ints(
        "batches",
        "in_h",
        "in_w",
        "in_c",
        "filter_h",
        "filter_w",
        "filter_depth",
        "out_h",
        "out_w",
        "out_c",
        "filters_per_group",
    ),
)
ConvWindow = _struct(
    "ConvWindow", _ints("stride_h", "stride_w", "dilation_h", "dilation_w", "pad_h", "pad_w")
)
DepthwiseShape = _struct(
    "DepthwiseShape",
    _ints(
        "batches",
        "in_h",
        "in_w",
        "in_c",
        "filter_h",
        "filter_w",
        "depth_multiplier",
        "out_h",
        "out_w",
        "out_c",
    ),
)
PoolParams = _struct(
    "PoolParams",
    _ints(
        "batches",
        "input_height",
        "input_width",
        "depth",
        "output_height",
        "output_width",
        "stride_height",
        "stride_width",
        "filter_height",
        "filter_width",
        "padding_height",
        "padding_width",
        "activation_min",
        "activation_max",
    ),
)
BroadcastParams = _struct(
    "BroadcastParams",
    [
        ("num_elements", i32),
        ("broadcast", i32),
        ("dims", i32 * MAX_RANK),
        ("strides1", i32 * MAX_RANK),
        ("strides2", i32 * MAX_RANK),
    ],
)
BackwardNeeds = _struct(
    "BackwardNeeds",
    [
        ("saved_inputs", ctypes.c_uint32),
        ("scratch_bytes", ctypes.c_uint32),
        ("has_clamp", ctypes.c_bool),
        ("clamp_min", i32),
        ("clamp_max", i32),
        ("in_place", ctypes.c_bool),
        ("in_place_scratch_bytes", ctypes.c_uint32),
    ],
)
BackwardIO = _struct(
    "BackwardIO",
    [
        ("output_grad", vp),
        ("input_grads", vp * MAX_INPUTS),
        ("scratch", vp),
        ("update", vp),
        ("in_place", ctypes.c_bool),
    ],
)
LayerUpdate = _struct(
    "LayerUpdate",
    [
        ("kind", i32),
        ("num_channels", i32),
        ("channels", vp),
        ("weights_per_channel", i32),
        ("learning_rate", f32),
        ("momentum", f32),
        ("qas", ctypes.c_bool),
        ("apply", ctypes.c_bool),
        ("batch_scale", f32),
        ("weight_residual", vp),
        ("weight_velocity", vp),
        ("weight_accumulator", vp),
        ("bias_residual", vp),
        ("bias_velocity", vp),
        ("bias_accumulator", vp),
        ("error", vp),
        ("probe", ctypes.c_bool),
        ("probe_weight_sq", vp),
        ("probe_bias_sq", vp),
    ],
)

_P = ctypes.POINTER
# Small int32 arrays are passed as numpy arrays, which the call keeps alive.
INT32_ARRAY = np.ctypeslib.ndpointer(np.int32, flags="C_CONTIGUOUS")
_SIGNATURES = {
    "tt_grad_scaled_add": [i32, f32, vp, vp],
    "tt_fc_input_grad": [i32, i32, i32, vp, i32, vp, i32, vp, vp],
    "tt_fc_channel_grad": [i32, i32, i32, i32, vp, i32, f32, vp, vp, vp],
    "tt_conv_input_grad": [_P(ConvShape), _P(ConvWindow), vp, vp, i32, vp, vp],
    "tt_conv_channel_grad": [_P(ConvShape), _P(ConvWindow), i32, vp, i32, f32, vp, vp, vp],
    "tt_depthwise_input_grad": [_P(DepthwiseShape), _P(ConvWindow), vp, vp, i32, vp, vp],
    "tt_depthwise_channel_grad": [
        _P(DepthwiseShape),
        _P(ConvWindow),
        i32,
        vp,
        i32,
        f32,
        vp,
        vp,
        vp,
    ],
    "tt_add_sub_grad": [_P(BroadcastParams), i32, vp, vp, vp],
    "tt_average_pool_grad": [_P(PoolParams), f32, vp, vp],
    "tt_max_pool_grad": [_P(PoolParams), vp, f32, vp, vp],
    "tt_mean_grad": [i32, INT32_ARRAY, ctypes.c_uint32, vp, vp],
    "tt_pad_grad": [i32, INT32_ARRAY, INT32_ARRAY, INT32_ARRAY, f32, vp, vp, vp],
    "tt_concatenation_grad": [i32, i32, i32, i32, vp, vp],
    "tt_backward_prepare_node": [vp, i32, vp, _P(BackwardNeeds)],
    "tt_backward_run_node": [vp, i32, _P(BackwardIO)],
}


@pytest.fixture(scope="module")
def lib():
    library = _native.library()
    for name, argtypes in _SIGNATURES.items():
        function = getattr(library, name)
        function.argtypes = argtypes
        function.restype = ctypes.c_int if name.startswith("tt_backward") else None
    return library


def ptr(array):
    """Address of a numpy array (None stays NULL)."""
    return None if array is None else array.ctypes.data


def c_array(values, dtype):
    return np.ascontiguousarray(np.asarray(values, dtype=dtype))


def aligned_floats(count):
    """A zeroed float32 array whose data is 16-byte aligned."""
    raw = np.zeros(count + 4, np.float32)
    start = ((-raw.ctypes.data) % 16) // 4
    return raw[start : start + count]


# ---------------------------------------------------------------------------
# Random quantized data and the TensorFlow reference.


def rand_int8(rng, shape, low=-128, high=127):
    return rng.integers(low, high + 1, size=shape).astype(np.int8)


def rand_scale(rng, count=None):
    if count is None:
        return np.float32(rng.uniform(0.002, 0.05))
    return rng.uniform(0.002, 0.05, size=count).astype(np.float32)


def dequantize(q, scale, zero_point=0):
    return np.asarray(scale, np.float64) * (q.astype(np.float64) - zero_point)


def rand_grad(rng, shape):
    """float32 dL/dy with about a third of it masked to zero."""
    dy = np.asarray(rng.standard_normal(shape), np.float32)
    dy[np.asarray(rng.random(shape)) < 0.33] = 0.0
    return dy


def tf_vjp(fn, args, dy):
    """Gradients of <fn(*args), dy> with respect to args, in float64."""
    tensors = [tf.constant(a, tf.float64) for a in args]
    with tf.GradientTape() as tape:
        for t in tensors:
            tape.watch(t)
        y = fn(*tensors)
    grads = tape.gradient(y, tensors, output_gradients=tf.constant(dy, tf.float64))
    return [g.numpy() for g in grads]


def reference(fn, args, dy, keep_sign=()):
    """(gradients, sums of absolute terms): the second is the same VJP of
    |args| (except those in keep_sign) with |dy|."""
    grads = tf_vjp(fn, args, dy)
    magnitude_args = [a if i in keep_sign else np.abs(a) for i, a in enumerate(args)]
    magnitudes = tf_vjp(fn, magnitude_args, np.abs(dy.astype(np.float64)))
    # |.|: SUB's second input has the constant coefficient -1 throughout.
    return grads, [np.abs(m) for m in magnitudes]


def assert_grad_close(ours, ref, magnitude, terms, what):
    ours = np.asarray(ours, np.float64)
    assert ours.shape == ref.shape, (what, ours.shape, ref.shape)
    bound = (terms + 2) * EPS32 * magnitude
    error = np.abs(ours - ref)
    worst = np.argmax(error - bound) if error.size else 0
    assert np.all(error <= bound), (
        f"{what}: |ours - TF| = {error.flat[worst]:.3e} exceeds the bound "
        f"{bound.flat[worst]:.3e} at flat index {worst} ({terms} terms; "
        f"ours {ours.flat[worst]!r}, TF {ref.flat[worst]!r})"
    )


def window_axis(size, padding, kernel, stride, dilation):
    """TensorFlow's output size and (before, after) padding of one axis."""
    effective = (kernel - 1) * dilation + 1
    if padding == "SAME":
        out = -(-size // stride)
    else:
        out = (size - effective) // stride + 1
    total = max((out - 1) * stride + effective - size, 0)
    return out, total // 2, total - total // 2


def draw_window(rng, in_h, in_w, kernel_h, kernel_w, allow_dilation=True):
    stride_h, stride_w = (int(v) for v in rng.integers(1, 4, size=2))
    dilation_h, dilation_w = (1, 1)
    if allow_dilation:
        dilation_h, dilation_w = (int(v) for v in rng.integers(1, 3, size=2))
    padding = "SAME" if rng.random() < 0.5 else "VALID"
    if padding == "VALID" and (
        (kernel_h - 1) * dilation_h + 1 > in_h or (kernel_w - 1) * dilation_w + 1 > in_w
    ):
        padding = "SAME"
    out_h, top, bottom = window_axis(in_h, padding, kernel_h, stride_h, dilation_h)
    out_w, left, right = window_axis(in_w, padding, kernel_w, stride_w, dilation_w)
    return dict(
        stride=(stride_h, stride_w),
        dilation=(dilation_h, dilation_w),
        padding=padding,
        out=(out_h, out_w),
        pads=((top, bottom), (left, right)),
    )


def dilate_filter(w, dilation_h, dilation_w):
    """A [KH, KW, ...] filter with dilation_h - 1 (dilation_w - 1) zero rows
    (columns) between its taps, as a product with 0/1 selection matrices
    (exact in float64, and differentiable). TensorFlow's CPU convolution
    gradients refuse dilations; a dilated filter is what they mean."""
    kernel_h, kernel_w = int(w.shape[0]), int(w.shape[1])
    rows = np.zeros(((kernel_h - 1) * dilation_h + 1, kernel_h))
    rows[np.arange(kernel_h) * dilation_h, np.arange(kernel_h)] = 1.0
    cols = np.zeros(((kernel_w - 1) * dilation_w + 1, kernel_w))
    cols[np.arange(kernel_w) * dilation_w, np.arange(kernel_w)] = 1.0
    return tf.einsum(
        "af,bg,fgio->abio", tf.constant(rows, tf.float64), tf.constant(cols, tf.float64), w
    )


def windowed(op, x, w, win):
    """op(x, w) (tf.nn.conv2d or tf.nn.depthwise_conv2d) over the window
    `win`, with TensorFlow's own strides and padding names. Dilation is
    applied to the filter (dilate_filter). Depthwise convolutions with
    different row and column strides, which TensorFlow does not run, are
    formed from TF ops: explicit zero padding, a stride-1 VALID op and a
    strided slice."""
    (sh, sw), (dh, dw) = win["stride"], win["dilation"]
    if dh > 1 or dw > 1:
        w = dilate_filter(w, dh, dw)
    if op is not tf.nn.depthwise_conv2d or sh == sw:
        return op(x, w, strides=[1, sh, sw, 1], padding=win["padding"])
    padded = tf.pad(x, [[0, 0], list(win["pads"][0]), list(win["pads"][1]), [0, 0]])
    full = op(padded, w, strides=[1, 1, 1, 1], padding="VALID")
    out_h, out_w = win["out"]
    return full[:, : (out_h - 1) * sh + 1 : sh, : (out_w - 1) * sw + 1 : sw, :]


def c_window(win):
    return ConvWindow(
        win["stride"][0],
        win["stride"][1],
        win["dilation"][0],
        win["dilation"][1],
        win["pads"][0][0],
        win["pads"][1][0],
    )


def scales_arg(scales):
    """(array, step) as the C functions read per-channel scales."""
    scales = c_array(np.atleast_1d(scales), np.float32)
    return scales, (4 if scales.size > 1 else 0)


def pick_channels(rng, count):
    k = int(rng.integers(1, count + 1))
    return sorted(int(c) for c in rng.choice(count, size=k, replace=False))


# ---------------------------------------------------------------------------
# FULLY_CONNECTED


def fc_case(seed):
    rng = np.random.default_rng([1, seed])
    batches, depth, units = (
        int(rng.integers(1, 5)),
        int(rng.integers(1, 41)),
        int(rng.integers(1, 13)),
    )
    per_channel = bool(rng.random() < 0.5)
    q_w = rand_int8(rng, (units, depth), -127, 127)
    if per_channel:
        w_scale, filter_offset = rand_scale(rng, units), 0
    else:
        w_scale, filter_offset = rand_scale(rng), -int(rng.integers(-5, 6))
    q_x = rand_int8(rng, (batches, depth))
    x_scale, x_zp = rand_scale(rng), int(rng.integers(-20, 21))
    dy = rand_grad(rng, (batches, units))
    w_real = np.asarray(w_scale, np.float64).reshape(-1, 1) * (
        q_w.astype(np.float64) + filter_offset
    )
    return dict(
        rng=rng,
        batches=batches,
        depth=depth,
        units=units,
        q_w=q_w,
        w_scale=w_scale,
        filter_offset=filter_offset,
        q_x=q_x,
        x_scale=x_scale,
        x_zp=x_zp,
        dy=dy,
        w_real=w_real,
        x_real=dequantize(q_x, x_scale, x_zp),
    )


@pytest.mark.parametrize("seed", range(12))
def test_fully_connected(lib, seed):
    c = fc_case(seed)
    b = np.zeros(c["units"])
    (dx, dw, db), (mx, mw, mb) = reference(
        lambda x, w, b: tf.matmul(x, w, transpose_b=True) + b,
        [c["x_real"], c["w_real"], b],
        c["dy"],
    )

    ours = np.full((c["batches"], c["depth"]), 0.0, np.float32)
    scales, step = scales_arg(c["w_scale"])
    lib.tt_fc_input_grad(
        c["batches"],
        c["depth"],
        c["units"],
        ptr(c["q_w"]),
        c["filter_offset"],
        ptr(scales),
        step,
        ptr(c["dy"]),
        ptr(ours),
    )
    assert_grad_close(ours, dx, mx, c["units"], "FC dX")

    for unit in pick_channels(c["rng"], c["units"]):
        grad = np.zeros(c["depth"], np.float32)
        bias = ctypes.c_float(7.0)
        lib.tt_fc_channel_grad(
            c["batches"],
            c["depth"],
            c["units"],
            unit,
            ptr(c["q_x"]),
            c["x_zp"],
            c["x_scale"],
            ptr(c["dy"]),
            ptr(grad),
            ctypes.byref(bias),
        )
        assert_grad_close(grad, dw[unit], mw[unit], c["batches"], f"FC dW[{unit}]")
        assert_grad_close(
            np.float64(bias.value), db[unit], mb[unit], c["batches"], f"FC db[{unit}]"
        )
        bias_only = ctypes.c_float(0.0)
        lib.tt_fc_channel_grad(
            c["batches"],
            c["depth"],
            c["units"],
            unit,
            None,
            c["x_zp"],
            c["x_scale"],
            ptr(c["dy"]),
            None,
            ctypes.byref(bias_only),
        )
        assert bias_only.value == bias.value


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


# ---------------------------------------------------------------------------
# CONV_2D and DEPTHWISE_CONV_2D


def conv_case(seed):
    rng = np.random.default_rng([2, seed])
    groups = int(rng.choice([1, 1, 2, 3]))
    filter_depth = int(rng.integers(1, 5))
    per_group = int(rng.integers(1, 4))
    kernel_h, kernel_w = (int(v) for v in rng.integers(1, 4, size=2))
    if seed % 4 == 0:
        kernel_h = kernel_w = 1  # pointwise
    batches = int(rng.integers(1, 3))
    in_h, in_w = (int(v) for v in rng.integers(3, 10, size=2))
    win = draw_window(rng, in_h, in_w, kernel_h, kernel_w)
    out_c, in_c = per_group * groups, filter_depth * groups
    shape = ConvShape(
        batches,
        in_h,
        in_w,
        in_c,
        kernel_h,
        kernel_w,
        filter_depth,
        win["out"][0],
        win["out"][1],
        out_c,
        per_group,
    )
    return rng, shape, win, groups


@pytest.mark.parametrize("seed", range(16))
def test_conv_2d(lib, seed):
    rng, s, win, groups = conv_case(seed)
    q_w = rand_int8(rng, (s.out_c, s.filter_h, s.filter_w, s.filter_depth), -127, 127)
    w_scale = rand_scale(rng, s.out_c) if rng.random() < 0.7 else rand_scale(rng)
    q_x = rand_int8(rng, (s.batches, s.in_h, s.in_w, s.in_c))
    x_scale, x_zp = rand_scale(rng), int(rng.integers(-20, 21))
    dy = rand_grad(rng, (s.batches, s.out_h, s.out_w, s.out_c))
    w_real = np.broadcast_to(np.asarray(w_scale, np.float64), (s.out_c,)).reshape(
        -1, 1, 1, 1
    ) * q_w.astype(np.float64)
    x_real = dequantize(q_x, x_scale, x_zp)

    def conv(x, w, b):
        w = tf.transpose(w, [1, 2, 3, 0])  # TFLite OHWI -> TF HWIO
        xs = tf.split(x, groups, axis=3)
        ws = tf.split(w, groups, axis=3)
        ys = [windowed(tf.nn.conv2d, xg, wg, win) for xg, wg in zip(xs, ws)]
        return tf.concat(ys, axis=3) + b

    (dx, dw, db), (mx, mw, mb) = reference(conv, [x_real, w_real, np.zeros(s.out_c)], dy)

    ours = np.zeros(q_x.shape, np.float32)
    scales, step = scales_arg(w_scale)
    window = c_window(win)
    lib.tt_conv_input_grad(
        ctypes.byref(s), ctypes.byref(window), ptr(q_w), ptr(scales), step, ptr(dy), ptr(ours)
    )
    what = f"CONV dX (groups {groups}, {win})"
    assert_grad_close(ours, dx, mx, s.filters_per_group * s.filter_h * s.filter_w, what)

    terms = s.batches * s.out_h * s.out_w
    for oc in pick_channels(rng, s.out_c):
        grad = np.zeros(q_w.shape[1:], np.float32)
        bias = ctypes.c_float()
        lib.tt_conv_channel_grad(
            ctypes.byref(s),
            ctypes.byref(window),
            oc,
            ptr(q_x),
            x_zp,
            x_scale,
            ptr(dy),
            ptr(grad),
            ctypes.byref(bias),
        )
        assert_grad_close(grad, dw[oc], mw[oc], terms, f"CONV dW[{oc}]")
        assert_grad_close(np.float64(bias.value), db[oc], mb[oc], terms, f"CONV db[{oc}]")


def depthwise_case(seed):
    rng = np.random.default_rng([3, seed])
    in_c, multiplier = int(rng.integers(1, 5)), int(rng.integers(1, 4))
    kernel_h, kernel_w = (int(v) for v in rng.integers(1, 4, size=2))
    batches = int(rng.integers(1, 3))
    in_h, in_w = (int(v) for v in rng.integers(3, 10, size=2))
    win = draw_window(rng, in_h, in_w, kernel_h, kernel_w)
    shape = DepthwiseShape(
        batches,
        in_h,
        in_w,
        in_c,
        kernel_h,
        kernel_w,
        multiplier,
        win["out"][0],
        win["out"][1],
        in_c * multiplier,
    )
    return rng, shape, win


@pytest.mark.parametrize("seed", range(16))
def test_depthwise_conv_2d(lib, seed):
    rng, s, win = depthwise_case(seed)
    q_w = rand_int8(rng, (1, s.filter_h, s.filter_w, s.out_c), -127, 127)
    w_scale = rand_scale(rng, s.out_c) if rng.random() < 0.7 else rand_scale(rng)
    q_x = rand_int8(rng, (s.batches, s.in_h, s.in_w, s.in_c))
    x_scale, x_zp = rand_scale(rng), int(rng.integers(-20, 21))
    dy = rand_grad(rng, (s.batches, s.out_h, s.out_w, s.out_c))
    w_real = np.asarray(w_scale, np.float64) * q_w.astype(np.float64)
    x_real = dequantize(q_x, x_scale, x_zp)

    def depthwise(x, w, b):
        # TFLite [1, KH, KW, C * M] -> TF [KH, KW, C, M]: oc = c * M + m.
        w = tf.reshape(w, [s.filter_h, s.filter_w, s.in_c, s.depth_multiplier])
        return windowed(tf.nn.depthwise_conv2d, x, w, win) + b

    (dx, dw, db), (mx, mw, mb) = reference(depthwise, [x_real, w_real, np.zeros(s.out_c)], dy)

    ours = np.zeros(q_x.shape, np.float32)
    scales, step = scales_arg(w_scale)
    window = c_window(win)
    lib.tt_depthwise_input_grad(
        ctypes.byref(s), ctypes.byref(window), ptr(q_w), ptr(scales), step, ptr(dy), ptr(ours)
    )
    assert_grad_close(
        ours,
        dx,
        mx,
        s.depth_multiplier * s.filter_h * s.filter_w,
        f"DEPTHWISE dX (M {s.depth_multiplier}, {win})",
    )

    terms = s.batches * s.out_h * s.out_w
    for oc in pick_channels(rng, s.out_c):
        grad = np.zeros((s.filter_h, s.filter_w), np.float32)
        bias = ctypes.c_float()
        lib.tt_depthwise_channel_grad(
            ctypes.byref(s),
            ctypes.byref(window),
            oc,
            ptr(q_x),
            x_zp,
            x_scale,
            ptr(dy),
            ptr(grad),
            ctypes.byref(bias),
        )
        assert_grad_close(grad, dw[0, :, :, oc], mw[0, :, :, oc], terms, f"DEPTHWISE dW[{oc}]")
        assert_grad_close(np.float64(bias.value), db[oc], mb[oc], terms, f"DEPTHWISE db[{oc}]")


# ---------------------------------------------------------------------------
# Pools


def pool_case(rng):
    batches, depth = int(rng.integers(1, 3)), int(rng.integers(1, 4))
    in_h, in_w = (int(v) for v in rng.integers(2, 9, size=2))
    kernel_h = int(rng.integers(1, min(in_h, 3) + 1))
    kernel_w = int(rng.integers(1, min(in_w, 3) + 1))
    win = draw_window(rng, in_h, in_w, kernel_h, kernel_w, allow_dilation=False)
    params = PoolParams(
        batches,
        in_h,
        in_w,
        depth,
        win["out"][0],
        win["out"][1],
        win["stride"][0],
        win["stride"][1],
        kernel_h,
        kernel_w,
        win["pads"][0][0],
        win["pads"][1][0],
        -128,
        127,
    )
    return params, win


@pytest.mark.parametrize("seed", range(10))
def test_average_pool_2d(lib, seed):
    rng = np.random.default_rng([4, seed])
    p, win = pool_case(rng)
    x_real = dequantize(
        rand_int8(rng, (p.batches, p.input_height, p.input_width, p.depth)), 0.02, 3
    )
    dy = rand_grad(rng, (p.batches, p.output_height, p.output_width, p.depth))
    ksize = [p.filter_height, p.filter_width]
    (dx,), (mx,) = reference(
        lambda x: tf.nn.avg_pool2d(x, ksize, list(win["stride"]), win["padding"]), [x_real], dy
    )
    ours = np.zeros(x_real.shape, np.float32)
    lib.tt_average_pool_grad(ctypes.byref(p), 1.0, ptr(dy), ptr(ours))
    assert_grad_close(ours, dx, mx, p.filter_height * p.filter_width, f"AVERAGE_POOL dX ({win})")


@pytest.mark.parametrize("seed", range(10))
def test_max_pool_2d(lib, seed):
    """Narrow int8 ranges make ties common: the gradient must go where
    TensorFlow sends it (the first maximum of the window)."""
    rng = np.random.default_rng([5, seed])
    p, win = pool_case(rng)
    high = int(rng.choice([-126, 2, 127]))
    q_x = rand_int8(rng, (p.batches, p.input_height, p.input_width, p.depth), -128, high)
    x_real = dequantize(q_x, np.float32(0.02), -3)
    dy = rand_grad(rng, (p.batches, p.output_height, p.output_width, p.depth))
    ksize = [p.filter_height, p.filter_width]
    (dx,), (mx,) = reference(
        lambda x: tf.nn.max_pool2d(x, ksize, list(win["stride"]), win["padding"]),
        [x_real],
        dy,
        keep_sign=(0,),
    )
    ours = np.zeros(x_real.shape, np.float32)
    lib.tt_max_pool_grad(ctypes.byref(p), ptr(q_x), 1.0, ptr(dy), ptr(ours))
    assert_grad_close(ours, dx, mx, p.filter_height * p.filter_width, f"MAX_POOL dX ({win})")


# ---------------------------------------------------------------------------
# ADD / SUB, MEAN, PAD, CONCATENATION, copies


def broadcast_params(shape1, shape2):
    """tt_broadcast_params for two shapes (tt_broadcast_prepare's rule)."""
    rank = max(len(shape1), len(shape2))
    a = (1,) * (MAX_RANK - len(shape1)) + tuple(shape1)
    b = (1,) * (MAX_RANK - len(shape2)) + tuple(shape2)
    out = tuple(max(x, y) for x, y in zip(a, b))
    p = BroadcastParams()
    p.num_elements = int(np.prod(out))
    p.broadcast = int(tuple(shape1) != tuple(shape2) or len(shape1) != len(shape2))
    stride1 = stride2 = 1
    for d in range(MAX_RANK - 1, -1, -1):
        p.dims[d] = out[d]
        p.strides1[d] = 0 if (a[d] == 1 and out[d] != 1) else stride1
        p.strides2[d] = 0 if (b[d] == 1 and out[d] != 1) else stride2
        stride1 *= a[d]
        stride2 *= b[d]
    return p, out[MAX_RANK - rank :]


@pytest.mark.parametrize("seed", range(12))
def test_add_sub(lib, seed):
    rng = np.random.default_rng([6, seed])
    rank = int(rng.integers(1, 5))
    full = [int(v) for v in rng.integers(1, 5, size=rank)]
    shape1 = [d if rng.random() < 0.6 else 1 for d in full]
    shape2 = [d if rng.random() < 0.6 else 1 for d in full]
    shape2 = shape2[int(rng.integers(0, rank)) :]  # maybe lower rank
    if seed % 3 == 0:
        shape2 = list(shape1)  # no broadcast
    subtract = seed % 2
    params, out_shape = broadcast_params(shape1, shape2)
    x1 = dequantize(rand_int8(rng, shape1), 0.03, 1)
    x2 = dequantize(rand_int8(rng, shape2), 0.01, -2)
    dy = rand_grad(rng, out_shape)
    op = tf.subtract if subtract else tf.add
    (d1, d2), (m1, m2) = reference(op, [x1, x2], dy)
    ours1 = np.zeros(shape1, np.float32)
    ours2 = np.zeros(shape2, np.float32)
    lib.tt_add_sub_grad(ctypes.byref(params), subtract, ptr(dy), ptr(ours1), ptr(ours2))
    n1 = params.num_elements // max(ours1.size, 1)
    n2 = params.num_elements // max(ours2.size, 1)
    assert_grad_close(ours1, d1, m1, n1, f"ADD/SUB dX1 {shape1} {shape2}")
    assert_grad_close(ours2, d2, m2, n2, f"ADD/SUB dX2 {shape1} {shape2}")
    only2 = np.zeros(shape2, np.float32)
    lib.tt_add_sub_grad(ctypes.byref(params), subtract, ptr(dy), None, ptr(only2))
    np.testing.assert_array_equal(only2, ours2)


@pytest.mark.parametrize("seed", range(10))
def test_mean(lib, seed):
    rng = np.random.default_rng([7, seed])
    rank = int(rng.integers(1, 5))
    shape = [int(v) for v in rng.integers(1, 6, size=rank)]
    axes = [d for d in range(rank) if rng.random() < 0.5]
    mask = sum(1 << d for d in axes)
    x = dequantize(rand_int8(rng, shape), 0.02, 0)
    out_shape = [d for i, d in enumerate(shape) if i not in axes]
    dy = rand_grad(rng, out_shape)
    (dx,), (mx,) = reference(lambda x: tf.reduce_mean(x, axis=axes), [x], dy)
    ours = np.zeros(shape, np.float32)
    lib.tt_mean_grad(rank, c_array(shape, np.int32), mask, ptr(dy), ptr(ours))
    assert_grad_close(ours, dx, mx, 1, f"MEAN dX {shape} axes {axes}")


@pytest.mark.parametrize("seed", range(10))
def test_pad(lib, seed):
    rng = np.random.default_rng([8, seed])
    rank = int(rng.integers(1, 6))
    shape = [int(v) for v in rng.integers(1, 5, size=rank)]
    before = [int(v) for v in rng.integers(0, 3, size=rank)]
    after = [int(v) for v in rng.integers(0, 3, size=rank)]
    paddings = list(zip(before, after))
    x = dequantize(rand_int8(rng, shape), 0.02, 0)
    out_shape = [s + b + a for s, b, a in zip(shape, before, after)]
    dy = rand_grad(rng, out_shape)
    # The fill value v enters as v * (1 on the padding, 0 inside).
    inside = np.pad(np.zeros(shape), paddings, constant_values=1.0)
    (dx, dv), (mx, mv) = reference(
        lambda x, v: tf.pad(x, paddings) + v * inside, [x, np.float64(0.5)], dy
    )
    ours = np.zeros(shape, np.float32)
    value = ctypes.c_float(0.0)
    lib.tt_pad_grad(
        rank,
        c_array(shape, np.int32),
        c_array(before, np.int32),
        c_array(after, np.int32),
        1.0,
        ptr(dy),
        ptr(ours),
        ctypes.byref(value),
    )
    np.testing.assert_array_equal(ours, dx.astype(np.float32))
    assert_grad_close(np.float64(value.value), dv, mv, dy.size, "PADV2 d(value)")
    # The fill value's gradient is added too.
    again = ctypes.c_float(1.0)
    lib.tt_pad_grad(
        rank,
        c_array(shape, np.int32),
        c_array(before, np.int32),
        c_array(after, np.int32),
        1.0,
        ptr(dy),
        None,
        ctypes.byref(again),
    )
    assert np.float32(again.value) == np.float32(1.0) + np.float32(value.value)
    # A gain (output scale / input scale) multiplies the moved values.
    scaled = np.zeros(shape, np.float32)
    lib.tt_pad_grad(
        rank,
        c_array(shape, np.int32),
        c_array(before, np.int32),
        c_array(after, np.int32),
        0.5,
        ptr(dy),
        ptr(scaled),
        None,
    )
    np.testing.assert_array_equal(scaled, np.float32(0.5) * ours)


@pytest.mark.parametrize("seed", range(10))
def test_concatenation(lib, seed):
    rng = np.random.default_rng([9, seed])
    rank = int(rng.integers(1, 5))
    axis = int(rng.integers(0, rank))
    base = [int(v) for v in rng.integers(1, 4, size=rank)]
    shapes = []
    for _ in range(int(rng.integers(1, 5))):
        shape = list(base)
        shape[axis] = int(rng.integers(0, 4))
        shapes.append(shape)
    xs = [dequantize(rand_int8(rng, s), 0.02, 0) for s in shapes]
    out_shape = list(base)
    out_shape[axis] = sum(s[axis] for s in shapes)
    dy = rand_grad(rng, out_shape)
    grads = (
        tf_vjp(lambda *t: tf.concat(t, axis), xs, dy)
        if np.prod(out_shape)
        else [np.zeros(s) for s in shapes]
    )
    outer = int(np.prod(out_shape[:axis]))
    inner = int(np.prod(out_shape[axis + 1 :]))
    offset = 0
    for shape, ref in zip(shapes, grads):
        chunk = shape[axis] * inner
        ours = np.zeros(shape, np.float32)
        lib.tt_concatenation_grad(outer, out_shape[axis] * inner, offset, chunk, ptr(dy), ptr(ours))
        np.testing.assert_array_equal(ours, np.asarray(ref, np.float32))
        offset += chunk


def test_scaled_add(lib):
    rng = np.random.default_rng(10)
    dy = rand_grad(rng, (37,))
    dx = rng.standard_normal(37).astype(np.float32)
    expected = dx + np.float32(1.5) * dy
    lib.tt_grad_scaled_add(37, 1.5, ptr(dy), ptr(dx))
    np.testing.assert_array_equal(dx, expected)


# ---------------------------------------------------------------------------
# The kernels themselves, on one-operator models.

T = som.Tensor
INT32 = som.TensorType.INT32


class OneOp:
    """A one-operator model loaded in the interpreter, run forward once on
    random inputs, with helpers to call its backward kernel."""

    def __init__(self, lib, rng, op_name, inputs, outputs, options=None, extra_arena=0):
        self.lib = lib
        self.inputs, self.outputs = inputs, outputs
        model = som.build_model(op_name, inputs, outputs, options)
        probe = Interpreter(model, preserve_all_tensors=True)
        self.interp = Interpreter(
            model, arena_size=probe.arena_used_bytes() + extra_arena + 64, preserve_all_tensors=True
        )
        graph_input = 0
        for tensor in inputs:
            if tensor is not None and tensor.data is None:
                data = rand_int8(rng, tensor.shape)
                self.interp.set_input(data, graph_input)
                graph_input += 1
        self.interp.invoke()
        self.state = self.interp._state
        self.index = {}
        n = 0
        for i, tensor in enumerate(list(inputs) + list(outputs)):
            if tensor is not None:
                self.index[i] = n
                n += 1

    def tensor(self, position):
        """Values of operator input `position` (outputs follow inputs)."""
        return self.interp.get_tensor(self.index[position])

    def record(self, position):
        return self.lib.tt_interpreter_tensor(self.state, self.index[position]).contents

    def prepare(self, update=None):
        needs = BackwardNeeds()
        address = None if update is None else ctypes.addressof(update)
        status = self.lib.tt_backward_prepare_node(self.state, 0, address, ctypes.byref(needs))
        return status, needs

    def backward(self, dy, input_grads, update=None, scratch=None, in_place=False):
        io = BackwardIO()
        io.output_grad = ptr(dy)
        for i, grad in enumerate(input_grads):
            io.input_grads[i] = ptr(grad)
        io.scratch = ptr(scratch)
        io.update = None if update is None else ctypes.addressof(update)
        io.in_place = in_place
        return self.lib.tt_backward_run_node(self.state, 0, ctypes.byref(io))

    def error(self):
        return self.lib.tt_interpreter_error(self.state).contents.message

    def move_to_arena(self, positions):
        """Gives constant tensors a copy at the end of the arena, as the
        trainer's RAM copies of trainable weights are."""
        arena = self.interp._arena
        offset = (self.interp.arena_used_bytes() + 15) // 16 * 16
        for position in positions:
            record = self.record(position)
            data = self.tensor(position).tobytes()
            arena[offset : offset + len(data)] = np.frombuffer(data, np.uint8)
            record.location, record.data_offset = 2, offset
            assert (
                self.lib.tt_interpreter_tensor_data(self.state, self.index[position])
                == arena.ctypes.data + offset
            )
            offset = (offset + len(data) + 15) // 16 * 16
        assert offset <= arena.size


def make_update(kind, channels, weights_per_channel, apply=False, learning_rate=1.0):
    """A plain SGD update. With apply false the optimizer only adds each
    channel's quantized-domain gradient, s_W * dL/dW (s_W s_x * dL/db for
    the bias), to the accumulators, which the test reads back."""
    channels = c_array(channels, np.int32)
    count = len(channels)
    arrays = dict(
        channels=channels,
        weight_residual=np.zeros(count * weights_per_channel, np.float32),
        weight_accumulator=np.zeros(count * weights_per_channel, np.float32),
        bias_residual=np.zeros(count, np.float32),
        bias_accumulator=np.zeros(count, np.float32),
        error=ctypes.create_string_buffer(ctypes.sizeof(_native.ErrorRecord)),
    )
    update = LayerUpdate(
        kind=kind,
        num_channels=count,
        channels=ptr(channels),
        weights_per_channel=weights_per_channel,
        learning_rate=learning_rate,
        momentum=0.0,
        qas=False,
        apply=apply,
        batch_scale=1.0,
    )
    for name in ("weight_residual", "weight_accumulator", "bias_residual", "bias_accumulator"):
        setattr(update, name, ptr(arrays[name]))
    update.error = ctypes.addressof(arrays["error"])
    update.keep = arrays  # keeps the buffers alive
    return update


RELU = 1


def conv_like_model(lib, rng, op_name, per_channel, with_bias=True):
    """(OneOp, filter, channel scales, weights per channel, layout) for a
    small FULLY_CONNECTED, CONV_2D or DEPTHWISE_CONV_2D with a fused RELU."""
    x_scale, y_scale = np.float32(0.05), np.float32(0.2)
    if op_name == "FULLY_CONNECTED":
        x_shape, w_shape, y_shape, channels = (3, 6), (5, 6), (3, 5), 5
        dim = 0
        options = som.options("FullyConnected", fusedActivationFunction=RELU)
    elif op_name == "CONV_2D":
        x_shape, w_shape, y_shape, channels = ((1, 5, 5, 4), (6, 3, 3, 2), (1, 3, 3, 6), 6)
        dim = 0
        options = som.options(
            "Conv2D", padding=0, strideH=2, strideW=2, fusedActivationFunction=RELU
        )
    else:
        x_shape, w_shape, y_shape, channels = ((1, 5, 4, 3), (1, 3, 2, 6), (1, 5, 4, 6), 6)
        dim = 3
        options = som.options(
            "DepthwiseConv2D",
            padding=0,
            strideH=1,
            strideW=1,
            depthMultiplier=2,
            fusedActivationFunction=RELU,
        )
    w_scale = rand_scale(rng, channels) if per_channel else rand_scale(rng)
    q_w = rand_int8(rng, w_shape, -127, 127)
    bias_scale = np.float32(x_scale) * np.atleast_1d(w_scale)
    inputs = [
        T(x_shape, scale=x_scale, zero_point=4),
        T(w_shape, scale=w_scale, quantized_dimension=dim, data=q_w),
    ]
    if with_bias:
        inputs.append(
            T(
                (channels,),
                INT32,
                scale=np.broadcast_to(bias_scale, (channels,)),
                data=rng.integers(-500, 500, channels).astype(np.int32),
            )
        )
    outputs = [T(y_shape, scale=y_scale, zero_point=-10)]
    one = OneOp(lib, rng, op_name, inputs, outputs, options, extra_arena=4096)
    return one, q_w, np.broadcast_to(np.float32(w_scale), (channels,)), dim


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
        elif op_name == "CONV_2D":
            lib.tt_conv_channel_grad(
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
        else:
            lib.tt_depthwise_channel_grad(
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
