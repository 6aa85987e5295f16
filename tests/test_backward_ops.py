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

The kernels themselves (through tt_backward_run_node /
tt_backward_prepare_node on one-operator models), which need no
TensorFlow, are tested in tests/test_backward_kernels.py; the ctypes
interface and the random data are tests/backward_kernels.py.
"""

import ctypes

import numpy as np
import pytest
import tensorflow as tf

import backward_kernels as bk
from backward_kernels import (
    ConvShape,
    ConvWindow,
    DepthwiseShape,
    PoolParams,
    assert_grad_close,
    broadcast_params,
    c_array,
    dequantize,
    fc_case,
    ptr,
    rand_grad,
    rand_int8,
    rand_scale,
    scales_arg,
)

pytestmark = pytest.mark.tensorflow

# The native library fixture (backward_kernels): pytest finds fixtures by
# name in the module's namespace.
lib = bk.lib


# ---------------------------------------------------------------------------
# The TensorFlow reference.


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


def pick_channels(rng, count):
    k = int(rng.integers(1, count + 1))
    return sorted(int(c) for c in rng.choice(count, size=k, replace=False))


# ---------------------------------------------------------------------------
# FULLY_CONNECTED


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
