"""Random CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED models shaped to
reach every branch of the kernels' Cortex-M4 DSP paths (tt_conv_dsp.c,
tt_depthwise_dsp.c) and their fallbacks.

Not a test module: tests/test_dsp_paths.py runs these cases through the
host library, its emulated-DSP build and the firmware, against
tflite_micro. Compared with tests/test_random_ops.py, the shapes here are
wider: channel counts with every remainder modulo 4, windows deeper than
the DSP buffers (512 values, 256 depthwise taps), odd and even pixel and
batch counts, depth multipliers 1, 2, 3, 4 and 8, and requantization
shifts of 0, 1 and more (the special cases of the fused rounding).
"""

import math
from dataclasses import dataclass

import numpy as np

from single_op_models import Tensor, TensorType, build_model, options

SEED = 20261207
OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
SAME, VALID = 0, 1
# NONE, RELU, RELU_N1_TO_1, RELU6
ACTIVATIONS = (0, 1, 2, 3)
CONV_DSP_MAX_DEPTH = 512
DEPTHWISE_DSP_MAX_TAPS = 256


@dataclass
class KernelCase:
    op: str
    config: dict
    model: bytes
    feeds: list  # one int8 array per model input, batch included


def _pick(rng, values):
    return values[int(rng.integers(len(values)))]


def _int8(rng, shape):
    return rng.integers(-128, 128, size=shape, dtype=np.int8)


def _scales(rng, depth, count):
    """(input scale, filter scales, output scale): a requantization
    multiplier that is usually typical, sometimes above 1 (a left shift)
    or in [0.5, 1) (a right shift of 0 or 1)."""
    input_scale = float(np.float32(10.0 ** rng.uniform(-3, -1)))
    filter_scales = [float(np.float32(10.0 ** rng.uniform(-3, -1.5))) for _ in range(count)]
    regime = _pick(rng, ("typical",) * 6 + ("above_one", "half_to_one"))
    if regime == "typical":
        multiplier = 10.0 ** -rng.uniform(-0.5, 1.5) / (127 * math.sqrt(depth))
    elif regime == "above_one":
        multiplier = 2.0 ** rng.uniform(0, 6)
    else:
        multiplier = rng.uniform(0.26, 0.99)
    output_scale = float(np.float32(input_scale * float(np.median(filter_scales)) / multiplier))
    return input_scale, filter_scales, output_scale, regime


def _bias(rng, input_scale, filter_scales, channels):
    values = rng.normal(0, 5000, size=channels).astype(np.int32)
    return Tensor(
        [channels],
        TensorType.INT32,
        [input_scale * s for s in filter_scales],
        [0] * len(filter_scales),
        data=values,
        name="bias",
    )


def _quantized(rng, depth, channels, per_channel_dim):
    per_channel = channels > 1 and rng.random() < 0.8
    input_scale, filter_scales, output_scale, regime = _scales(
        rng, depth, channels if per_channel else 1
    )
    return dict(
        per_channel=per_channel,
        in_scale=input_scale,
        in_zp=int(_pick(rng, (-128, 127, 0, int(rng.integers(-128, 128))))),
        filter_scales=filter_scales,
        out_scale=output_scale,
        out_zp=int(rng.integers(-128, 128)),
        regime=regime,
        activation=int(_pick(rng, ACTIVATIONS)),
        bias=bool(rng.random() < 0.85),
        quantized_dimension=per_channel_dim,
    )


def _output_size(padding, size, kernel, stride, dilation):
    if padding == SAME:
        return (size + stride - 1) // stride
    return (size - ((kernel - 1) * dilation + 1) + stride) // stride


def _window(rng, max_kernel):
    while True:
        k_h, k_w = (int(rng.integers(1, max_kernel + 1)) for _ in range(2))
        stride_h, stride_w = (int(_pick(rng, (1, 1, 1, 2, 3))) for _ in range(2))
        dil_h, dil_w = (int(_pick(rng, (1, 1, 1, 1, 2))) for _ in range(2))
        in_h, in_w = (int(rng.integers(1, 10)) for _ in range(2))
        padding = int(_pick(rng, (SAME, SAME, VALID)))
        out_h = _output_size(padding, in_h, k_h, stride_h, dil_h)
        out_w = _output_size(padding, in_w, k_w, stride_w, dil_w)
        if out_h >= 1 and out_w >= 1:
            return dict(
                k_h=k_h,
                k_w=k_w,
                stride_h=stride_h,
                stride_w=stride_w,
                dil_h=dil_h,
                dil_w=dil_w,
                in_h=in_h,
                in_w=in_w,
                padding=padding,
                out_h=out_h,
                out_w=out_w,
            )


def _io(rng, q, in_shape, out_shape):
    x = Tensor(in_shape, TensorType.INT8, q["in_scale"], q["in_zp"], name="input")
    y = Tensor(out_shape, TensorType.INT8, q["out_scale"], q["out_zp"], name="output")
    return x, y


def _filter(rng, q, shape, zero_point=0):
    return Tensor(
        shape,
        TensorType.INT8,
        q["filter_scales"],
        [zero_point] * len(q["filter_scales"]),
        quantized_dimension=q["quantized_dimension"],
        data=_int8(rng, shape),
        name="filter",
    )


def _conv(rng):
    w = _window(rng, max_kernel=5)
    if rng.random() < 0.1:  # deeper than the DSP column: the portable path
        in_c = int(
            rng.integers(
                CONV_DSP_MAX_DEPTH // (w["k_h"] * w["k_w"]) + 1,
                CONV_DSP_MAX_DEPTH // (w["k_h"] * w["k_w"]) + 40,
            )
        )
    else:
        in_c = int(_pick(rng, (1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 16, 17, 24, 32, 48)))
    groups = 2 if in_c % 2 == 0 and rng.random() < 0.1 else 1
    out_c = groups * int(_pick(rng, (1, 2, 3, 4, 5, 7, 8, 12, 16, 17)))
    batches = int(_pick(rng, (1, 1, 2)))
    depth = w["k_h"] * w["k_w"] * (in_c // groups)
    q = _quantized(rng, depth, out_c, 0)
    x, y = _io(
        rng, q, [batches, w["in_h"], w["in_w"], in_c], [batches, w["out_h"], w["out_w"], out_c]
    )
    inputs = [x, _filter(rng, q, [out_c, w["k_h"], w["k_w"], in_c // groups])]
    if q["bias"]:
        inputs.append(_bias(rng, q["in_scale"], q["filter_scales"], out_c))
    opts = options(
        "Conv2D",
        padding=w["padding"],
        strideH=w["stride_h"],
        strideW=w["stride_w"],
        dilationHFactor=w["dil_h"],
        dilationWFactor=w["dil_w"],
        fusedActivationFunction=q["activation"],
    )
    config = dict(
        w,
        **q,
        in_c=in_c,
        out_c=out_c,
        groups=groups,
        batches=batches,
        depth=depth,
        dsp=groups == 1 and depth <= CONV_DSP_MAX_DEPTH,
    )
    return config, build_model("CONV_2D", inputs, [y], opts), x.shape


def _depthwise(rng):
    w = _window(rng, max_kernel=5)
    if rng.random() < 0.05:  # more taps than the DSP buffer holds
        w.update(
            k_h=17,
            k_w=17,
            dil_h=1,
            dil_w=1,
            padding=SAME,
            out_h=(w["in_h"] + w["stride_h"] - 1) // w["stride_h"],
            out_w=(w["in_w"] + w["stride_w"] - 1) // w["stride_w"],
        )
    in_c = int(_pick(rng, (1, 2, 3, 4, 5, 7, 8, 12, 16, 33, 48)))
    multiplier = int(_pick(rng, (1, 1, 1, 2, 2, 3, 4, 8)))
    out_c = in_c * multiplier
    batches = int(_pick(rng, (1, 1, 2)))
    q = _quantized(rng, w["k_h"] * w["k_w"], out_c, 3)
    x, y = _io(
        rng, q, [batches, w["in_h"], w["in_w"], in_c], [batches, w["out_h"], w["out_w"], out_c]
    )
    inputs = [x, _filter(rng, q, [1, w["k_h"], w["k_w"], out_c])]
    if q["bias"]:
        inputs.append(_bias(rng, q["in_scale"], q["filter_scales"], out_c))
    opts = options(
        "DepthwiseConv2D",
        padding=w["padding"],
        strideH=w["stride_h"],
        strideW=w["stride_w"],
        depthMultiplier=multiplier,
        dilationHFactor=w["dil_h"],
        dilationWFactor=w["dil_w"],
        fusedActivationFunction=q["activation"],
    )
    taps = w["k_h"] * w["k_w"]
    dsp = (
        (multiplier in (1, 2) or multiplier % 4 == 0)
        and out_c >= 4
        and taps <= DEPTHWISE_DSP_MAX_TAPS
    )
    config = dict(w, **q, in_c=in_c, out_c=out_c, multiplier=multiplier, batches=batches, dsp=dsp)
    return config, build_model("DEPTHWISE_CONV_2D", inputs, [y], opts), x.shape


def _fully_connected(rng):
    depth = int(_pick(rng, (1, 3, 4, 5, 7, 8, 16, 48, 64, 100, 512, 513, 700, 1024, 1025, 1100)))
    units = int(_pick(rng, (1, 2, 3, 4, 5, 10, 33)))
    batches = int(_pick(rng, (1, 1, 2, 3)))
    q = _quantized(rng, depth, units, 0)
    x, y = _io(rng, q, [batches, depth], [batches, units])
    # A per-tensor filter may have a zero point here (the DSP path adds its
    # share to each row's sums).
    filter_zero_point = 0
    if not q["per_channel"] and rng.random() < 0.4:
        filter_zero_point = int(rng.integers(-20, 21))
    inputs = [x, _filter(rng, q, [units, depth], filter_zero_point)]
    if q["bias"]:
        inputs.append(_bias(rng, q["in_scale"], q["filter_scales"], units))
    opts = options("FullyConnected", fusedActivationFunction=q["activation"])
    config = dict(
        q,
        depth=depth,
        units=units,
        batches=batches,
        filter_zero_point=filter_zero_point,
        dsp=depth <= 2 * CONV_DSP_MAX_DEPTH,
    )
    return config, build_model("FULLY_CONNECTED", inputs, [y], opts), x.shape


GENERATORS = {
    "CONV_2D": _conv,
    "DEPTHWISE_CONV_2D": _depthwise,
    "FULLY_CONNECTED": _fully_connected,
}


def make_case(op, index, seed=SEED):
    """Case `index` of `op`: the same bytes and inputs on every call."""
    rng = np.random.default_rng([seed, OPS.index(op), index])
    config, model, input_shape = GENERATORS[op](rng)
    return KernelCase(op, config, model, [_int8(rng, input_shape)])
