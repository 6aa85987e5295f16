"""Random single-operator models: our runtime against tflite_micro.

For every operator the runtime registers, a seeded generator draws many
valid configurations (shapes, strides, padding, dilation, groups, depth
multipliers, axes, per-tensor and per-channel scales, zero points, fused
activations, ...), writes each as a one-operator .tflite model
(tests/single_op_models.py) and runs it with random inputs through
tflite_micro (the golden reference) and through tflm_training. The outputs
must be bit-identical.

A few configurations per operator are deliberately at or past the edge of
what TFLM accepts (they carry an 'edge' or 'bad_scale' entry in their
configuration). Whenever exactly one runtime rejects a model (its prepare
or invoke fails), the case fails unless it matches an entry of
DIFFERENCES, the documented, deliberate differences between the two;
rejected by both is fine. Configurations on which TFLM might abort the
process are marked `risky` and run in a forked child (os.fork: POSIX).
A test also checks that every operator the runtime registers has a
generator here.

Reproducing a failure: every case is drawn from its own generator seeded
with (SEED, operator, index), so the index in the failure message is
enough; `_make_case("ADD", 17)` rebuilds it and `case.model` holds the
.tflite bytes. `pytest tests/test_random_ops.py -k CONV_2D` runs one
operator; set TFLM_RANDOM_OPS_SEED to explore other seeds and
TFLM_RANDOM_OPS_SCALE (e.g. 10) to draw more cases.

tests/conftest.py builds the host library first.
"""

import ctypes
import faulthandler
import math
import os
import pickle
import sys
import tempfile
import zlib
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import pytest
from tflite_micro.python.tflite_micro import (
    runtime as tflm_runtime,
)

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)
from single_op_models import Tensor, TensorType, build_model, options

SEED = int(os.environ.get("TFLM_RANDOM_OPS_SEED", "20260501"))
SCALE = float(os.environ.get("TFLM_RANDOM_OPS_SCALE", "1"))
DEFAULT_CASES = 150
# Share of cases that must run on both runtimes (the rest being rejected by
# both or documented differences), so a generator cannot drift into
# producing only invalid models.
MIN_COMPARED_FRACTION = 0.6

SAME, VALID = 0, 1  # schema Padding
NONE, RELU, RELU_N1_TO_1, RELU6 = 0, 1, 2, 3  # schema ActivationFunctionType
ACTIVATIONS = (NONE, RELU, RELU_N1_TO_1, RELU6)


# -- cases --------------------------------------------------------------------


@dataclass
class Case:
    """One single-operator model and what it was drawn from."""

    op: str
    config: dict
    inputs: list  # Tensor, or None for an omitted optional input
    outputs: list
    options: object = None
    risky: bool = False  # TFLM may abort on it: run TFLM in a child process
    float_scale: float = 1.0  # typical size of float32 input values / 200
    model: bytes = field(default=b"", repr=False)

    def build(self):
        self.model = build_model(self.op, self.inputs, self.outputs, self.options)
        return self


GENERATORS = {}
CASE_COUNTS = {}


def generator(op, cases=DEFAULT_CASES):
    """Registers `fn(rng) -> Case` as the generator for `op`."""

    def register(fn):
        GENERATORS[op] = fn
        CASE_COUNTS[op] = cases
        return fn

    return register


def _case_rng(op, index, stream=0):
    """The generator of case `index` of `op`: stream 0 draws the model,
    stream 1 the input values."""
    return np.random.default_rng([SEED, zlib.crc32(op.encode()), index, stream])


def _make_case(op, index):
    rng = _case_rng(op, index)
    return _maybe_break_a_scale(rng, GENERATORS[op](rng)).build()


# -- random draws -------------------------------------------------------------


def _scale(rng, low=-3.0, high=0.0):
    """A positive float32 scale, log-uniform in [10^low, 10^high]."""
    return float(np.float32(10.0 ** rng.uniform(low, high)))


def _zero_point(rng):
    return int(rng.integers(-128, 128))


def _pick(rng, values):
    return values[int(rng.integers(len(values)))]


def _dims(rng, rank, low=1, high=5):
    return [int(d) for d in rng.integers(low, high + 1, size=rank)]


def _chance(rng, p):
    return bool(rng.random() < p)


def _regime(rng, regimes):
    """One name of ((name, probability), ...)."""
    names, odds = zip(*regimes)
    return names[int(rng.choice(len(names), p=odds))]


def _int8_tensor(rng, shape, scale=None, zero_point=None, name=""):
    """An int8 activation tensor with a random (or given) quantization."""
    return Tensor(
        shape,
        TensorType.INT8,
        _scale(rng) if scale is None else scale,
        _zero_point(rng) if zero_point is None else zero_point,
        name=name,
    )


def _int8_data(rng, shape):
    """Random int8 values; sometimes biased to the saturating extremes."""
    data = rng.integers(-128, 128, size=shape, dtype=np.int8)
    if data.size and _chance(rng, 0.2):
        mask = rng.random(data.shape) < 0.3
        data[mask] = rng.choice(np.array([-128, 127], np.int8), mask.sum())
    return data


def _feed(rng, tensor, float_scale=1.0):
    """Random model-input data for a tensor."""
    shape = tuple(tensor.shape)
    if tensor.dtype == TensorType.INT8:
        return _int8_data(rng, shape)
    if tensor.dtype == TensorType.FLOAT32:
        # For QUANTIZE, float_scale is the output scale: round(x / scale)
        # then covers and exceeds the int8 range, yet stays far inside
        # int32 (beyond it C leaves the float-to-int conversion undefined,
        # so the two runtimes could only agree by accident of the host).
        # Some values lie halfway between two steps (exactly, for a power
        # of two scale), where rounding must go away from zero.
        values = rng.standard_normal(shape) * 200.0
        ties = rng.random(shape) < 0.3
        values = np.where(ties, np.round(values) + 0.5, values)
        return (values * float_scale).astype(np.float32)
    if tensor.dtype == TensorType.INT16:
        return rng.integers(-32768, 32768, size=shape, dtype=np.int16)
    if tensor.dtype == TensorType.INT32:
        return rng.integers(-(2**31), 2**31, size=shape, dtype=np.int32)
    raise ValueError("no feed for tensor type %d" % tensor.dtype)


def _feeds(rng, case):
    return [
        _feed(rng, t, case.float_scale) for t in case.inputs if t is not None and t.data is None
    ]


def _rescale(rng):
    """A requantization multiplier (input scale / output scale): usually
    within a decade of 1, sometimes far from it (flushed to zero below
    2^-31, a left shift above 1), sometimes exactly 1."""
    regime = _regime(rng, (("near", 0.7), ("far", 0.25), ("one", 0.05)))
    if regime == "one":
        return 1.0
    if regime == "near":
        return float(10.0 ** rng.uniform(-1, 1))
    return float(10.0 ** rng.uniform(-11, 6))


def _window_output(padding, size, kernel, stride, dilation=1):
    effective = (kernel - 1) * dilation + 1
    if padding == SAME:
        return (size + stride - 1) // stride
    return (size - effective + stride) // stride


def _window(rng, max_size=10, max_kernel=5, max_stride=3, dilate=False):
    """Input height/width, kernel, stride, dilation and padding with a
    non-empty output: a dict, plus the output height and width."""
    while True:
        w = dict(
            in_h=int(rng.integers(1, max_size + 1)),
            in_w=int(rng.integers(1, max_size + 1)),
            k_h=int(rng.integers(1, max_kernel + 1)),
            k_w=int(rng.integers(1, max_kernel + 1)),
            stride_h=int(rng.integers(1, max_stride + 1)),
            stride_w=int(rng.integers(1, max_stride + 1)),
            dil_h=1,
            dil_w=1,
            padding=_pick(rng, (SAME, VALID)),
        )
        if dilate and _chance(rng, 0.4):
            w["dil_h"] = int(rng.integers(1, 4))
            w["dil_w"] = int(rng.integers(1, 4))
        out_h = _window_output(w["padding"], w["in_h"], w["k_h"], w["stride_h"], w["dil_h"])
        out_w = _window_output(w["padding"], w["in_w"], w["k_w"], w["stride_w"], w["dil_w"])
        if out_h >= 1 and out_w >= 1:
            return w, out_h, out_w


# -- convolutions and fully connected -----------------------------------------


def _filter_scales(rng, count):
    scales = [_scale(rng, -4.0, -1.0) for _ in range(count)]
    if _chance(rng, 0.05):
        scales[int(rng.integers(count))] = 0.0  # a dead channel
    return scales


# Requantization multiplier (input scale * filter scale / output scale)
# regimes for convolutions and fully connected, with their odds. Typical
# multipliers are far below 1; the others reach TFLM's left-shift path,
# its flush to zero below 2^-31 and exact powers of two. 'huge' ones
# (2^31 and up) are a documented difference.
MULTIPLIER_REGIMES = (
    ("typical", 0.84),
    ("above_one", 0.05),
    ("tiny", 0.04),
    ("huge", 0.04),
    ("power_of_two", 0.03),
)


def _conv_like_scales(rng, regime, depth, count):
    """(input scale, filter scales, output scale) for `count` filter
    scales in a multiplier regime."""
    if regime == "power_of_two":
        # Exact powers of two all the way: the multiplier is one too.
        input_scale = 2.0 ** -int(rng.integers(1, 11))
        filter_scales = [2.0 ** -int(rng.integers(5, 13)) for _ in range(count)]
        output_scale = input_scale * filter_scales[0] * 2.0 ** int(rng.integers(-3, 25))
        return input_scale, filter_scales, output_scale
    input_scale = _scale(rng)
    filter_scales = _filter_scales(rng, count)
    reference = float(np.median([f for f in filter_scales if f > 0] or [1e-3]))
    if regime == "typical":
        multiplier = 10.0 ** -rng.uniform(-1.0, 1.5) / (127 * math.sqrt(depth))
    else:
        low, high = dict(above_one=(0, 29), tiny=(-34, -29), huge=(31, 34))[regime]
        multiplier = 2.0 ** rng.uniform(low, high)
    output_scale = float(np.float32(input_scale * reference / multiplier))
    return input_scale, filter_scales, output_scale


def _bias(rng, input_scale, filter_scales, channels):
    """An int32 bias tensor: moderate values, or (rarely) the full range,
    whose sums with the accumulator wrap around."""
    if _chance(rng, 0.1):
        values = rng.integers(-(2**31), 2**31, size=channels, dtype=np.int64)
    else:
        values = rng.normal(0, 3000, size=channels)
    scales = [input_scale * s for s in filter_scales]
    return Tensor(
        [channels],
        TensorType.INT32,
        scales,
        [0] * len(scales),
        data=values.astype(np.int32),
        name="bias",
    )


def _multipliers(input_scale, filter_scales, output_scale):
    return [input_scale * s / output_scale for s in filter_scales]


def _conv_like_config(rng, window, depth, out_c):
    """Per-channel choice, filter scales, input and output quantization."""
    per_channel = out_c > 1 and _chance(rng, 0.7)
    regime = _regime(rng, MULTIPLIER_REGIMES)
    input_scale, filter_scales, output_scale = _conv_like_scales(
        rng, regime, depth, out_c if per_channel else 1
    )
    multipliers = _multipliers(input_scale, filter_scales, output_scale)
    return dict(
        window,
        per_channel=per_channel,
        filter_scales=filter_scales,
        in_scale=input_scale,
        in_zp=_zero_point(rng),
        out_scale=output_scale,
        out_zp=_zero_point(rng),
        activation=_pick(rng, ACTIVATIONS),
        regime=regime,
        max_multiplier=max(multipliers),
    )


@generator("CONV_2D", cases=250)
def gen_conv_2d(rng):
    w, out_h, out_w = _window(rng, dilate=True)
    groups = _pick(rng, (1, 1, 1, 2, 3, 4))
    filter_depth = int(rng.integers(1, 6))
    in_c = filter_depth * groups
    out_c = groups * int(rng.integers(1, 4))
    batches = int(rng.integers(1, 3))
    cfg = _conv_like_config(rng, w, w["k_h"] * w["k_w"] * filter_depth, out_c)
    cfg.update(
        batches=batches,
        in_c=in_c,
        out_c=out_c,
        groups=groups,
        bias=_pick(rng, ("int32",) * 6 + ("none", "omitted")),
    )
    filter_shape = [out_c, w["k_h"], w["k_w"], filter_depth]
    weights = Tensor(
        filter_shape,
        TensorType.INT8,
        cfg["filter_scales"],
        quantized_dimension=0,
        data=_int8_data(rng, filter_shape),
        name="filter",
    )
    inputs = [
        _int8_tensor(rng, [batches, w["in_h"], w["in_w"], in_c], cfg["in_scale"], cfg["in_zp"]),
        weights,
    ]
    if cfg["bias"] == "int32":
        inputs.append(_bias(rng, cfg["in_scale"], cfg["filter_scales"], out_c))
    elif cfg["bias"] == "omitted":
        inputs.append(None)
    output = _int8_tensor(rng, [batches, out_h, out_w, out_c], cfg["out_scale"], cfg["out_zp"])
    opts = options(
        "Conv2D",
        padding=w["padding"],
        strideH=w["stride_h"],
        strideW=w["stride_w"],
        dilationHFactor=w["dil_h"],
        dilationWFactor=w["dil_w"],
        fusedActivationFunction=cfg["activation"],
    )
    return Case("CONV_2D", cfg, inputs, [output], opts, risky=cfg["max_multiplier"] >= 2.0**30)


@generator("DEPTHWISE_CONV_2D", cases=250)
def gen_depthwise_conv_2d(rng):
    w, out_h, out_w = _window(rng, dilate=True)
    in_c = int(rng.integers(1, 7))
    multiplier = int(rng.integers(1, 4))
    out_c = in_c * multiplier
    batches = int(rng.integers(1, 3))
    cfg = _conv_like_config(rng, w, w["k_h"] * w["k_w"], out_c)
    # No omitted (-1) bias: TFLM's depthwise kernel crashes on it.
    cfg.update(
        batches=batches,
        in_c=in_c,
        depth_multiplier=multiplier,
        bias=_pick(rng, ("int32",) * 6 + ("none",)),
    )
    filter_shape = [1, w["k_h"], w["k_w"], out_c]
    weights = Tensor(
        filter_shape,
        TensorType.INT8,
        cfg["filter_scales"],
        quantized_dimension=3,
        data=_int8_data(rng, filter_shape),
        name="filter",
    )
    inputs = [
        _int8_tensor(rng, [batches, w["in_h"], w["in_w"], in_c], cfg["in_scale"], cfg["in_zp"]),
        weights,
    ]
    if cfg["bias"] == "int32":
        inputs.append(_bias(rng, cfg["in_scale"], cfg["filter_scales"], out_c))
    output = _int8_tensor(rng, [batches, out_h, out_w, out_c], cfg["out_scale"], cfg["out_zp"])
    opts = options(
        "DepthwiseConv2D",
        padding=w["padding"],
        strideH=w["stride_h"],
        strideW=w["stride_w"],
        dilationHFactor=w["dil_h"],
        dilationWFactor=w["dil_w"],
        depthMultiplier=multiplier,
        fusedActivationFunction=cfg["activation"],
    )
    return Case(
        "DEPTHWISE_CONV_2D", cfg, inputs, [output], opts, risky=cfg["max_multiplier"] >= 2.0**30
    )


def _fc_input_shape(rng, depth, keep_num_dims):
    """(input shape, rows): the last dimension is the depth, or (without
    keep_num_dims) any shape whose size is a multiple of it."""
    rows = int(rng.integers(1, 5))
    if keep_num_dims or _chance(rng, 0.5):
        lead = _dims(rng, int(rng.integers(0, 4)), 1, 3)
        return lead + [depth], int(np.prod(lead, dtype=np.int64))
    total = rows * depth
    first = _pick(rng, [d for d in range(1, total + 1) if total % d == 0])
    shape = [first, total // first] if _chance(rng, 0.5) else [total]
    return shape, rows


@generator("FULLY_CONNECTED", cases=250)
def gen_fully_connected(rng):
    depth = int(rng.integers(1, 40))
    units = int(rng.integers(1, 12))
    keep_num_dims = _chance(rng, 0.3)
    in_shape, rows = _fc_input_shape(rng, depth, keep_num_dims)
    out_shape = in_shape[:-1] + [units] if keep_num_dims else [rows, units]
    cfg = _conv_like_config(rng, {}, depth, units)
    per_tensor = not cfg["per_channel"]
    filter_zp = 0
    if per_tensor and _chance(rng, 0.3):
        filter_zp = int(rng.integers(-20, 21))  # only per-tensor uses it
    cfg.update(
        in_shape=in_shape,
        out_shape=out_shape,
        units=units,
        keep_num_dims=keep_num_dims,
        filter_zp=filter_zp,
        edge=None,
        bias=_pick(rng, ("int32",) * 4 + ("none",)),
    )
    weights = Tensor(
        [units, depth],
        TensorType.INT8,
        cfg["filter_scales"],
        [filter_zp] * len(cfg["filter_scales"]),
        data=_int8_data(rng, [units, depth]),
        name="filter",
    )
    inputs = [_int8_tensor(rng, in_shape, cfg["in_scale"], cfg["in_zp"]), weights]
    if cfg["bias"] == "int32":
        bias = _bias(rng, cfg["in_scale"], cfg["filter_scales"], units)
        if per_tensor and _chance(rng, 0.1):
            # TFLM checks a per-tensor bias scale against input * filter.
            bias.scale = [bias.scale[0] * 10.0 ** rng.uniform(-1, 1)]
            cfg["edge"] = "bias_scale"
        cfg["bias_scale"] = bias.scale
        inputs.append(bias)
    output = _int8_tensor(rng, out_shape, cfg["out_scale"], cfg["out_zp"])
    opts = options(
        "FullyConnected", keepNumDims=keep_num_dims, fusedActivationFunction=cfg["activation"]
    )
    return Case(
        "FULLY_CONNECTED", cfg, inputs, [output], opts, risky=cfg["max_multiplier"] >= 2.0**30
    )


# -- elementwise --------------------------------------------------------------


def _broadcast_shapes(rng, rank):
    """Two input shapes that broadcast to a random output shape."""
    out = _dims(rng, rank, 1, 4)
    shapes = []
    for _ in range(2):
        shape = [d if _chance(rng, 0.6) else 1 for d in out]
        drop = int(rng.integers(0, rank + 1)) if _chance(rng, 0.3) else 0
        shapes.append(shape[drop:])
    if _chance(rng, 0.4):
        shapes[1] = list(shapes[0])  # no broadcasting
    out_rank = max(len(shapes[0]), len(shapes[1]))
    aligned = [[1] * (out_rank - len(s)) + s for s in shapes]
    return shapes[0], shapes[1], [max(a, b) for a, b in zip(*aligned)]


def _binary_tensors(rng, scale1, scale2, out_scale):
    """Inputs and output of a broadcasting binary op; now and then one
    input is a constant (a bias, a learned offset or gate)."""
    rank = int(rng.integers(0, 6))
    shape1, shape2, out_shape = _broadcast_shapes(rng, rank)
    inputs = [_int8_tensor(rng, shape1, scale1), _int8_tensor(rng, shape2, scale2)]
    constant = int(rng.integers(2)) if _chance(rng, 0.3) else None
    if constant is not None:
        inputs[constant].data = _int8_data(rng, inputs[constant].shape)
    output = _int8_tensor(rng, out_shape, out_scale)
    cfg = dict(
        shape1=shape1,
        shape2=shape2,
        out_shape=out_shape,
        scale1=scale1,
        scale2=scale2,
        out_scale=out_scale,
        constant=constant,
        zero_points=[t.zero_point for t in inputs + [output]],
    )
    return cfg, inputs, output


def _add_sub(rng, op):
    scale1, scale2 = _scale(rng), _scale(rng)
    if _chance(rng, 0.2):
        scale2 = scale1
    # TFLM aborts unless 2 * max input scale < 2^20 * output scale.
    out_scale = _scale(rng, -5.0, 1.5) * max(scale1, scale2)
    cfg, inputs, output = _binary_tensors(rng, scale1, scale2, out_scale)
    cfg["activation"] = _pick(rng, ACTIVATIONS)
    kind = "Add" if op == "ADD" else "Sub"
    return Case(op, cfg, inputs, [output], options(kind, fusedActivationFunction=cfg["activation"]))


@generator("ADD", cases=200)
def gen_add(rng):
    return _add_sub(rng, "ADD")


@generator("SUB")
def gen_sub(rng):
    return _add_sub(rng, "SUB")


@generator("MUL")
def gen_mul(rng):
    scale1, scale2 = _scale(rng), _scale(rng)
    # Usually around the range of the product; sometimes any multiplier.
    if _chance(rng, 0.8):
        multiplier = 10.0 ** rng.uniform(-5, 0.5)
    else:
        multiplier = _rescale(rng)
    out_scale = scale1 * scale2 / multiplier
    cfg, inputs, output = _binary_tensors(rng, scale1, scale2, out_scale)
    cfg["activation"] = _pick(rng, ACTIVATIONS)
    return Case(
        "MUL", cfg, inputs, [output], options("Mul", fusedActivationFunction=cfg["activation"])
    )


def _maximum_minimum(rng, op):
    # TFLM compares the stored values; the converter gives all three one
    # quantization, but nothing requires it.
    scale, scales = _scale(rng), None
    if _chance(rng, 0.2):
        scales = [_scale(rng) for _ in range(3)]
    cfg, inputs, output = _binary_tensors(rng, *(scales or [scale] * 3))
    if scales is None:
        zero_point = _zero_point(rng)
        for t in inputs + [output]:
            t.zero_point = zero_point
        cfg["zero_points"] = [zero_point] * 3
    return Case(op, cfg, inputs, [output], options("MaximumMinimum"))


@generator("MAXIMUM")
def gen_maximum(rng):
    return _maximum_minimum(rng, "MAXIMUM")


@generator("MINIMUM")
def gen_minimum(rng):
    return _maximum_minimum(rng, "MINIMUM")


def _unary(rng, op, same_quantization, rank_range=(1, 5)):
    """A one-input, one-output elementwise case of a random shape."""
    shape = _dims(rng, int(rng.integers(*rank_range)), 1, 5)
    x = _int8_tensor(rng, shape)
    if same_quantization:
        y = _int8_tensor(rng, shape, x.scale, x.zero_point)
    else:
        y = _int8_tensor(rng, shape, x.scale / _rescale(rng))
    cfg = dict(
        shape=shape, in_scale=x.scale, in_zp=x.zero_point, out_scale=y.scale, out_zp=y.zero_point
    )
    return Case(op, cfg, [x], [y])


@generator("RELU")
def gen_relu(rng):
    return _unary(rng, "RELU", same_quantization=_chance(rng, 0.4))


@generator("RELU6")
def gen_relu6(rng):
    # Input scales up to 0.1 so that 6.0 is often inside the int8 range.
    case = _unary(rng, "RELU6", same_quantization=_chance(rng, 0.7))
    scale = _scale(rng, -2.5, -0.5)
    case.inputs[0].scale = case.config["in_scale"] = scale
    return case


def _unary_with_output(rng, op, in_scale, out_scale, out_zp, opts=None):
    """A one-input elementwise case with the given scales (a zero point of
    None is random)."""
    shape = _dims(rng, int(rng.integers(1, 5)), 1, 5)
    x = _int8_tensor(rng, shape, in_scale)
    y = _int8_tensor(rng, shape, out_scale, out_zp)
    cfg = dict(
        shape=shape,
        in_scale=x.scale,
        in_zp=x.zero_point,
        out_scale=y.scale,
        out_zp=y.zero_point,
        edge=None,
    )
    return Case(op, cfg, [x], [y], opts)


@generator("LOGISTIC")
def gen_logistic(rng):
    # The output is scale 1/256, zero point -128; TFLM reads (and checks)
    # only the zero point.
    out_scale, out_zp = 1.0 / 256, -128
    if _chance(rng, 0.1):
        out_scale = _scale(rng)
    case = _unary_with_output(rng, "LOGISTIC", _scale(rng, -4.0, 1.0), out_scale, out_zp)
    if _chance(rng, 0.05):
        case.outputs[0].zero_point = case.config["out_zp"] = 0
        case.config["edge"] = "output_zero_point"
    return case


@generator("TANH")
def gen_tanh(rng):
    # The output is scale 1/128, zero point 0; TFLM reads neither.
    in_scale = _scale(rng, -4.0, 1.0)
    if _chance(rng, 0.85):
        return _unary_with_output(rng, "TANH", in_scale, 1.0 / 128, 0)
    return _unary_with_output(rng, "TANH", in_scale, _scale(rng), None)


@generator("HARD_SWISH")
def gen_hard_swish(rng):
    in_scale = _scale(rng, -3.0, 0.0)
    # TFLM needs input scale / 128 <= output scale.
    edge = _chance(rng, 0.05)
    out_scale = in_scale * 10.0 ** (rng.uniform(-4, -2.2) if edge else rng.uniform(-2, 1.5))
    case = _unary_with_output(rng, "HARD_SWISH", in_scale, out_scale, None, options("HardSwish"))
    case.config["edge"] = "small_output_scale" if edge else None
    return case


@generator("LEAKY_RELU")
def gen_leaky_relu(rng):
    regime = _regime(rng, (("small", 0.8), ("negative", 0.1), ("above_one", 0.1)))
    alpha = float(
        np.float32(
            dict(
                small=10.0 ** rng.uniform(-3, 0),
                negative=-rng.uniform(0, 1),
                above_one=rng.uniform(1, 5),
            )[regime]
        )
    )
    case = _unary(rng, "LEAKY_RELU", same_quantization=_chance(rng, 0.4))
    case.options = options("LeakyRelu", alpha=alpha)
    case.config["alpha"] = alpha
    return case


# -- pooling ------------------------------------------------------------------


def _pool(rng, op):
    w, out_h, out_w = _window(rng, max_kernel=6)
    batches, channels = int(rng.integers(1, 3)), int(rng.integers(1, 7))
    x = _int8_tensor(rng, [batches, w["in_h"], w["in_w"], channels])
    y = _int8_tensor(rng, [batches, out_h, out_w, channels], x.scale, x.zero_point)
    cfg = dict(
        w,
        batches=batches,
        channels=channels,
        scale=x.scale,
        zp=x.zero_point,
        activation=_pick(rng, ACTIVATIONS),
        edge=None,
    )
    if _chance(rng, 0.05):
        # TFLM pools in the input's quantized domain and rejects this.
        y.zero_point = cfg["out_zp"] = (x.zero_point + 1) % 128
        cfg["edge"] = "output_quantization"
    opts = options(
        "Pool2D",
        padding=w["padding"],
        strideH=w["stride_h"],
        strideW=w["stride_w"],
        filterHeight=w["k_h"],
        filterWidth=w["k_w"],
        fusedActivationFunction=cfg["activation"],
    )
    return Case(op, cfg, [x], [y], opts)


@generator("AVERAGE_POOL_2D")
def gen_average_pool_2d(rng):
    return _pool(rng, "AVERAGE_POOL_2D")


@generator("MAX_POOL_2D")
def gen_max_pool_2d(rng):
    return _pool(rng, "MAX_POOL_2D")


# -- reductions and softmax ---------------------------------------------------


@generator("MEAN", cases=200)
def gen_mean(rng):
    rank = int(rng.integers(1, 6))
    shape = _dims(rng, rank, 1, 5)
    count = int(rng.integers(1, rank + 1))
    axes = [int(a) for a in rng.choice(rank, size=count, replace=False)]
    axes = [a - rank if _chance(rng, 0.3) else a for a in axes]
    if _chance(rng, 0.1):
        axes.append(axes[0])  # repeated axes count once
    keep_dims = _chance(rng, 0.5)
    reduced = {a % rank for a in axes}
    out_shape = [
        1 if d in reduced else n for d, n in enumerate(shape) if keep_dims or d not in reduced
    ]
    x = _int8_tensor(rng, shape)
    quantization = _pick(rng, ("equal", "different", "different"))
    if quantization == "equal":
        y = _int8_tensor(rng, out_shape, x.scale, x.zero_point)
    else:
        y = _int8_tensor(rng, out_shape, x.scale / _rescale(rng))
    axis = Tensor([len(axes)], TensorType.INT32, data=np.array(axes, np.int32), name="axis")
    cfg = dict(
        shape=shape,
        axes=axes,
        keep_dims=keep_dims,
        quantization=quantization,
        in_scale=x.scale,
        in_zp=x.zero_point,
        out_scale=y.scale,
        out_zp=y.zero_point,
    )
    return Case("MEAN", cfg, [x, axis], [y], options("Reducer", keepDims=keep_dims))


@generator("SOFTMAX")
def gen_softmax(rng):
    shape = _dims(rng, int(rng.integers(1, 5)), 1, 4)
    shape[-1] = int(rng.integers(1, 41 if _chance(rng, 0.9) else 300))
    # beta * input scale * 2^26 must exceed 1 (TFLM aborts otherwise); the
    # upper end reaches the 2^31 - 1 cap on the input multiplier.
    if _chance(rng, 0.9):
        in_scale = _scale(rng, -3.0, 0.5)
    else:
        in_scale = _scale(rng, 1.0, 2.0)
    beta = 1.0 if _chance(rng, 0.5) else float(10.0 ** rng.uniform(-1, 0.5))
    int16 = _chance(rng, 0.25)
    cfg = dict(
        shape=shape, in_scale=in_scale, beta=beta, output="int16" if int16 else "int8", edge=None
    )
    x = _int8_tensor(rng, shape, in_scale)
    cfg["in_zp"] = x.zero_point
    if int16:
        y = Tensor(shape, TensorType.INT16, 1.0 / 65536, -32768)
    else:
        y = Tensor(shape, TensorType.INT8, 1.0 / 256, -128)
    if _chance(rng, 0.05):
        # TFLM only takes its fixed output quantization.
        y.zero_point = 0
        cfg["edge"] = "output_quantization"
    return Case("SOFTMAX", cfg, [x], [y], options("Softmax", beta=beta))


# -- data movement ------------------------------------------------------------


def _paddings(rng, rank):
    return rng.integers(0, 4, size=(rank, 2)).astype(np.int32)


def _pad(rng, op):
    # TFLM pads at most 5 dimensions (edge: 6).
    rank = int(rng.integers(1, 6)) if _chance(rng, 0.95) else 6
    shape = _dims(rng, rank, 1, 4)
    paddings = _paddings(rng, rank)
    out_shape = [int(n + p.sum()) for n, p in zip(shape, paddings)]
    x = _int8_tensor(rng, shape)
    same = _chance(rng, 0.8)  # TFLM copies bytes: any output quantization
    y = _int8_tensor(rng, out_shape, x.scale if same else None, x.zero_point if same else None)
    cfg = dict(
        shape=shape,
        paddings=paddings.tolist(),
        in_zp=x.zero_point,
        out_scale=y.scale,
        out_zp=y.zero_point,
        value="none",
        edge="rank6" if rank == 6 else None,
    )
    inputs = [x, Tensor([rank, 2], TensorType.INT32, data=paddings, name="paddings")]
    if _chance(rng, 0.8 if op == "PADV2" else 0.1):
        cfg["value"] = _pick(rng, ("constant", "constant", "input"))
        value = Tensor(_pick(rng, ([], [1])), TensorType.INT8, y.scale, y.zero_point, name="value")
        if cfg["value"] == "constant":
            value.data = _int8_data(rng, value.shape)
        if _chance(rng, 0.05):
            value.zero_point = (y.zero_point + 1) % 128
            cfg["edge"] = "value_quantization"
        inputs.append(value)
    kind = "PadV2" if op == "PADV2" else "Pad"
    return Case(op, cfg, inputs, [y], options(kind))


@generator("PAD")
def gen_pad(rng):
    return _pad(rng, "PAD")


@generator("PADV2")
def gen_padv2(rng):
    return _pad(rng, "PADV2")


@generator("CONCATENATION")
def gen_concatenation(rng):
    rank = int(rng.integers(1, 6))
    shape = _dims(rng, rank, 1, 4)
    axis = int(rng.integers(-rank, rank))
    count = int(rng.integers(1, 5)) if _chance(rng, 0.95) else 11
    sizes = [int(s) for s in rng.integers(1, 4, size=count)]
    cfg = dict(shape=shape, axis=axis, sizes=sizes, constants=[], edge=None, activation=NONE)
    y_shape = list(shape)
    y_shape[axis] = sum(sizes)
    y = _int8_tensor(rng, y_shape)
    inputs = []
    for k, size in enumerate(sizes):
        x_shape = list(shape)
        x_shape[axis] = size
        x = _int8_tensor(rng, x_shape, y.scale, y.zero_point)
        if _chance(rng, 0.2):
            x.data = _int8_data(rng, x_shape)
            cfg["constants"].append(k)
        inputs.append(x)
    if count > 10:
        cfg["edge"] = "too_many_inputs"  # TFLM takes at most 10
    elif _chance(rng, 0.05):
        inputs[-1].zero_point = (y.zero_point + 1) % 128  # TFLM: no rescale
        cfg["edge"] = "input_quantization"
    elif _chance(rng, 0.04):
        cfg["activation"] = RELU  # TFLM: no fused activation
        cfg["edge"] = "activation"
    if all(t.data is not None for t in inputs):
        inputs[0].data = None  # keep one model input
        cfg["constants"] = [k for k in cfg["constants"] if k]
    opts = options("Concatenation", axis=axis, fusedActivationFunction=cfg["activation"])
    return Case("CONCATENATION", cfg, inputs, [y], opts)


def _random_shape_of_size(rng, total, max_rank=5):
    """A random shape (rank up to max_rank) holding `total` elements."""
    dims = []
    rest = total
    for _ in range(int(rng.integers(0, max_rank))):
        divisors = [d for d in range(1, rest + 1) if rest % d == 0]
        d = _pick(rng, divisors)
        dims.append(d)
        rest //= d
    if rest > 1 or not dims:
        dims.append(rest)
    order = rng.permutation(len(dims))
    return [dims[i] for i in order]


COPY_TYPES = (TensorType.FLOAT32, TensorType.INT16, TensorType.INT32)


def _copy_tensors(rng, in_shape, out_shapes, other_types=COPY_TYPES):
    """Input and outputs of a data-moving op: mostly int8, all with one
    quantization, sometimes another of the types the op takes. One output
    shape gives one output tensor, a list of them a list."""
    several = bool(out_shapes) and isinstance(out_shapes[0], (list, tuple))
    shapes = out_shapes if several else [out_shapes]
    dtype = _pick(rng, (TensorType.INT8,) * 5 + tuple(other_types))
    if dtype == TensorType.INT8:
        x = _int8_tensor(rng, in_shape)
        ys = [_int8_tensor(rng, s, x.scale, x.zero_point) for s in shapes]
    else:
        x, ys = Tensor(in_shape, dtype), [Tensor(s, dtype) for s in shapes]
    return x, (ys if several else ys[0])


@generator("RESHAPE")
def gen_reshape(rng):
    in_shape = _dims(rng, int(rng.integers(0, 6)), 1, 4)
    total = int(np.prod(in_shape, dtype=np.int64))
    out_shape = _random_shape_of_size(rng, total)
    if total == 1 and _chance(rng, 0.2):
        out_shape = []  # a scalar
    x, y = _copy_tensors(rng, in_shape, out_shape)
    new_shape = list(out_shape)
    if new_shape and _chance(rng, 0.3):
        new_shape[int(rng.integers(len(new_shape)))] = -1
    spec = _pick(rng, ("input", "input", "options", "none"))
    if not new_shape:
        spec = "none"  # an empty constant would have no data at all
    cfg = dict(
        in_shape=in_shape, out_shape=out_shape, dtype=x.dtype, new_shape=new_shape, spec=spec
    )
    inputs, opts = [x], None
    if spec == "input":
        inputs.append(
            Tensor(
                [len(new_shape)], TensorType.INT32, data=np.array(new_shape, np.int32), name="shape"
            )
        )
    elif spec == "options":
        opts = options("Reshape", newShape=new_shape)
    return Case("RESHAPE", cfg, inputs, [y], opts)


@generator("SQUEEZE")
def gen_squeeze(rng):
    rank = int(rng.integers(1, 7))
    shape = [1 if _chance(rng, 0.5) else int(rng.integers(2, 5)) for _ in range(rank)]
    ones = [d for d, n in enumerate(shape) if n == 1]
    edge = None
    if ones and _chance(rng, 0.6):
        dims = sorted(
            int(d)
            for d in rng.choice(ones, size=int(rng.integers(1, len(ones) + 1)), replace=False)
        )
    else:
        dims = []  # squeeze every size-1 dimension
    squeezed = set(dims) if dims else set(ones)
    out_shape = [n for d, n in enumerate(shape) if d not in squeezed]
    if len(ones) < rank and _chance(rng, 0.05):
        dims = dims + [next(d for d in range(rank) if shape[d] != 1)]
        edge = "squeeze_non_unit"  # TFLM rejects before it checks shapes
    dims = [d - rank if _chance(rng, 0.3) else d for d in dims]
    x, y = _copy_tensors(rng, shape, out_shape)
    cfg = dict(shape=shape, squeeze_dims=dims, dtype=x.dtype, edge=edge)
    return Case("SQUEEZE", cfg, [x], [y], options("Squeeze", squeezeDims=dims))


def _index_tensor(values, name):
    """A constant int32 vector (begin, end, perm, size, ...)."""
    return Tensor([len(values)], TensorType.INT32, data=np.array(values, np.int32), name=name)


def _slice_dimension(rng, size, shrink_edge):
    """(begin, end, stride, begin masked, end masked, shrink, count) of
    one dimension of a strided slice that keeps at least one element."""
    while True:
        stride = _pick(rng, (1, 1, 1, 2, 3, -1, -2))
        begin = int(rng.integers(-size - 2, size + 3))
        end = int(rng.integers(-size - 2, size + 3))
        begin_masked, end_masked = _chance(rng, 0.2), _chance(rng, 0.2)
        shrink = _chance(rng, 0.15)
        if shrink:
            # The single element at begin; TFLM leaves the output undefined
            # for a backward stride (edge) or a begin outside the dimension.
            begin_masked = False
            begin = int(rng.integers(-size, size))
            stride = -1 if shrink_edge else 1
            return begin, end, stride, False, end_masked, True, 1
        start = None if begin_masked else begin
        stop = None if end_masked else end
        count = len(range(*slice(start, stop, stride).indices(size)))
        if count >= 1:
            return begin, end, stride, begin_masked, end_masked, False, count


@generator("STRIDED_SLICE", cases=200)
def gen_strided_slice(rng):
    # TFLM slices at most 4 dimensions (edge: 5).
    rank = int(rng.integers(1, 5)) if _chance(rng, 0.95) else 5
    shape = _dims(rng, rank, 1, 6)
    shrink_edge = _chance(rng, 0.04)
    per_dimension = [_slice_dimension(rng, n, shrink_edge) for n in shape]
    begin, end, strides, begin_m, end_m, shrink, counts = (list(v) for v in zip(*per_dimension))
    out_shape = [c for c, s in zip(counts, shrink) if not s]

    def mask(bits):
        return sum(1 << d for d, bit in enumerate(bits) if bit)

    x, y = _copy_tensors(rng, shape, out_shape, COPY_TYPES)
    edge = "rank5" if rank == 5 else None
    if shrink_edge and any(shrink):
        edge = "shrink_backward"
    cfg = dict(
        shape=shape,
        begin=begin,
        end=end,
        strides=strides,
        begin_mask=mask(begin_m),
        end_mask=mask(end_m),
        shrink_axis_mask=mask(shrink),
        dtype=x.dtype,
        edge=edge,
    )
    inputs = [
        x,
        _index_tensor(begin, "begin"),
        _index_tensor(end, "end"),
        _index_tensor(strides, "strides"),
    ]
    opts = options(
        "StridedSlice",
        beginMask=cfg["begin_mask"],
        endMask=cfg["end_mask"],
        shrinkAxisMask=cfg["shrink_axis_mask"],
    )
    return Case("STRIDED_SLICE", cfg, inputs, [y], opts)


@generator("TRANSPOSE")
def gen_transpose(rng):
    # TFLM transposes at most 5 dimensions (edge: 6).
    rank = int(rng.integers(1, 6)) if _chance(rng, 0.95) else 6
    shape = _dims(rng, rank, 1, 4)
    perm = [int(p) for p in rng.permutation(rank)]
    x, y = _copy_tensors(
        rng, shape, [shape[p] for p in perm], (TensorType.FLOAT32, TensorType.INT16)
    )
    cfg = dict(shape=shape, perm=perm, dtype=x.dtype, edge="rank6" if rank == 6 else None)
    return Case("TRANSPOSE", cfg, [x, _index_tensor(perm, "perm")], [y], options("Transpose"))


@generator("RESIZE_NEAREST_NEIGHBOR")
def gen_resize_nearest_neighbor(rng):
    batches, channels = int(rng.integers(1, 3)), int(rng.integers(1, 4))
    in_h, in_w = int(rng.integers(1, 9)), int(rng.integers(1, 9))
    out_h, out_w = int(rng.integers(1, 17)), int(rng.integers(1, 17))
    align_corners, half_pixel = _chance(rng, 0.3), _chance(rng, 0.3)
    x, y = _copy_tensors(
        rng,
        [batches, in_h, in_w, channels],
        [batches, out_h, out_w, channels],
        (TensorType.FLOAT32, TensorType.INT16),
    )
    cfg = dict(
        input=x.shape,
        size=[out_h, out_w],
        dtype=x.dtype,
        align_corners=align_corners,
        half_pixel_centers=half_pixel,
    )
    opts = options("ResizeNearestNeighbor", alignCorners=align_corners, halfPixelCenters=half_pixel)
    return Case(
        "RESIZE_NEAREST_NEIGHBOR", cfg, [x, _index_tensor([out_h, out_w], "size")], [y], opts
    )


def _axis_tensor(rng, axis):
    """A constant int32 axis: a scalar or a one-element vector."""
    shape = _pick(rng, ([], [1]))
    return Tensor(
        shape, TensorType.INT32, data=np.array(axis, np.int32).reshape(shape), name="axis"
    )


def _split_shapes(shape, axis, sizes):
    shapes = []
    for size in sizes:
        piece = list(shape)
        piece[axis] = size
        shapes.append(piece)
    return shapes


@generator("SPLIT")
def gen_split(rng):
    rank = int(rng.integers(1, 5))
    shape = _dims(rng, rank, 1, 4)
    axis = int(rng.integers(-rank, rank))
    count, size = int(rng.integers(1, 5)), int(rng.integers(1, 4))
    shape[axis] = count * size
    x, ys = _copy_tensors(rng, shape, _split_shapes(shape, axis, [size] * count))
    cfg = dict(shape=shape, axis=axis, num_splits=count, dtype=x.dtype)
    return Case("SPLIT", cfg, [_axis_tensor(rng, axis), x], ys, options("Split", numSplits=count))


@generator("SPLIT_V")
def gen_split_v(rng):
    rank = int(rng.integers(1, 5))
    shape = _dims(rng, rank, 1, 4)
    axis = int(rng.integers(-rank, rank))
    sizes = [int(n) for n in rng.integers(1, 4, size=int(rng.integers(1, 5)))]
    shape[axis] = sum(sizes)
    size_splits = list(sizes)
    if _chance(rng, 0.3):
        size_splits[int(rng.integers(len(sizes)))] = -1  # "the rest"
    x, ys = _copy_tensors(rng, shape, _split_shapes(shape, axis, sizes))
    cfg = dict(shape=shape, axis=axis, size_splits=size_splits, dtype=x.dtype)
    inputs = [x, _index_tensor(size_splits, "size_splits"), _axis_tensor(rng, axis)]
    return Case("SPLIT_V", cfg, inputs, ys, options("SplitV", numSplits=len(sizes)))


@generator("EXPAND_DIMS")
def gen_expand_dims(rng):
    rank = int(rng.integers(0, 5))
    shape = _dims(rng, rank, 1, 4)
    axis = int(rng.integers(-rank - 1, rank + 1))
    out_shape = list(shape)
    out_shape.insert(axis % (rank + 1), 1)
    x, y = _copy_tensors(rng, shape, out_shape, (TensorType.FLOAT32, TensorType.INT16))
    cfg = dict(shape=shape, axis=axis, dtype=x.dtype)
    return Case("EXPAND_DIMS", cfg, [x, _axis_tensor(rng, axis)], [y], options("ExpandDims"))


# -- quantization -------------------------------------------------------------


@generator("QUANTIZE")
def gen_quantize(rng):
    shape = _dims(rng, int(rng.integers(1, 5)), 1, 6)
    from_float = _chance(rng, 0.6)
    y = _int8_tensor(rng, shape)
    if _chance(rng, 0.3):
        y.scale = 2.0 ** -int(rng.integers(0, 12))  # exact rounding ties
    if from_float:
        x = Tensor(shape, TensorType.FLOAT32)
    else:
        x = _int8_tensor(rng, shape, y.scale * _rescale(rng))
    cfg = dict(
        shape=shape,
        source="float32" if from_float else "int8",
        in_scale=x.scale,
        in_zp=x.zero_point,
        out_scale=y.scale,
        out_zp=y.zero_point,
        edge=None,
    )
    if _chance(rng, 0.05):
        # TFLM quantizes per tensor only.
        y.scale = [y.scale, y.scale * 2]
        y.zero_point = [y.zero_point, y.zero_point]
        y.quantized_dimension = len(shape) - 1
        y.shape = shape[:-1] + [2]
        x.shape = list(y.shape)
        cfg["edge"] = "per_channel_output"
    return Case("QUANTIZE", cfg, [x], [y], float_scale=float(np.atleast_1d(y.scale)[0]))


@generator("DEQUANTIZE")
def gen_dequantize(rng):
    shape = _dims(rng, int(rng.integers(1, 5)), 1, 6)
    x = _int8_tensor(rng, shape, _scale(rng, -4.0, 1.0))
    y = Tensor(shape, TensorType.FLOAT32)
    cfg = dict(shape=shape, scale=x.scale, zp=x.zero_point, edge=None)
    if _chance(rng, 0.05):
        # Per-channel along the last dimension: a documented difference.
        channels = shape[-1]
        x.scale = [_scale(rng, -4.0, 1.0) for _ in range(channels)]
        x.zero_point = [_zero_point(rng) for _ in range(channels)]
        x.quantized_dimension = len(shape) - 1
        cfg.update(scale=x.scale, zp=x.zero_point, edge="per_channel")
    return Case("DEQUANTIZE", cfg, [x], [y])


# -- every op: a broken scale -------------------------------------------------

BAD_SCALES = (0.0, -0.5, math.inf, math.nan)


def _maybe_break_a_scale(rng, case, chance=0.03):
    """Now and then (edge 'bad_scale') gives one per-tensor int8 tensor a
    zero, negative, infinite or NaN scale."""
    if not _chance(rng, chance):
        return case
    tensors = [
        (role, k, t)
        for role, group in (("input", case.inputs), ("output", case.outputs))
        for k, t in enumerate(group)
        if t is not None and t.dtype == TensorType.INT8 and isinstance(t.scale, float)
    ]
    if not tensors:
        return case
    role, k, tensor = tensors[int(rng.integers(len(tensors)))]
    tensor.scale = _pick(rng, BAD_SCALES)
    case.config["bad_scale"] = "%s %d: %r" % (role, k, tensor.scale)
    case.risky = True
    return case


# -- documented differences ---------------------------------------------------


@dataclass
class Difference:
    """A deliberate, documented disagreement about accepting a model."""

    name: str
    ops: tuple
    ours_rejects: bool  # True: ours rejects what TFLM runs; else the reverse
    applies: Callable[[dict], bool]
    reason: str


DIFFERENCES = [
    Difference(
        "requantization multiplier of 2^30 or more",
        ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"),
        True,
        lambda c: c.get("max_multiplier", 0.0) >= 2.0**30,
        "input scale * filter scale / output scale >= 2^30 makes TFLM's "
        "MultiplyByQuantizedMultiplier shift an int32 left by 31 or more "
        "bits (undefined behaviour, garbage outputs); ours rejects the "
        "model in prepare.",
    ),
    Difference(
        "scale that is not a positive finite number",
        tuple(GENERATORS),
        True,
        lambda c: "bad_scale" in c,
        "ours rejects int8 activation tensors whose scale is zero, "
        "negative, infinite or NaN; TFLM divides by it and runs.",
    ),
    Difference(
        "per-channel DEQUANTIZE input",
        ("DEQUANTIZE",),
        True,
        lambda c: c.get("edge") == "per_channel",
        "TFLM's DEQUANTIZE reads only the tensor-wide scale and zero point, "
        "which for a per-channel tensor are channel 0's, and applies them "
        "to every element; ours rejects the model rather than produce "
        "those values.",
    ),
    Difference(
        "shrunk STRIDED_SLICE dimension with a backward stride",
        ("STRIDED_SLICE",),
        True,
        lambda c: c.get("edge") == "shrink_backward",
        "for a shrunk dimension TFLM loops from begin to begin + 1 by the "
        "stride, which never runs when the stride is negative: it writes "
        "nothing and the output is whatever the arena held; ours rejects "
        "the model.",
    ),
]


def _documented_difference(case, ours_rejects):
    for diff in DIFFERENCES:
        if case.op in diff.ops and diff.ours_rejects == ours_rejects and diff.applies(case.config):
            return diff
    return None


# -- running ------------------------------------------------------------------


@dataclass
class Outcome:
    """What a runtime did with a model: its outputs, or why it refused."""

    outputs: Optional[list] = None
    error: Optional[str] = None

    @property
    def rejected(self):
        return self.error is not None


def _tflm_arena_size(case):
    total = 0
    for t in case.inputs + case.outputs:
        if t is not None:
            total += int(np.prod(t.shape, dtype=np.int64)) * 4
    return (1 << 20) + 8 * total


def _run_tflm(case, feeds):
    try:
        interpreter = tflm_runtime.Interpreter.from_bytes(
            case.model, arena_size=_tflm_arena_size(case)
        )
        for i, x in enumerate(feeds):
            interpreter.set_input(x, i)
        interpreter.invoke()
        return Outcome(
            [np.array(interpreter.get_output(i), copy=True) for i in range(len(case.outputs))]
        )
    except RuntimeError as e:
        return Outcome(error="TFLM: %s" % e)


def _run_tflm_isolated(case, feeds):
    """_run_tflm in a forked child, so that an abort inside TFLM shows up as
    a rejection instead of killing the test process."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            faulthandler.disable()  # an abort here is expected, not news
            os.close(read_fd)
            with os.fdopen(write_fd, "wb") as pipe:
                pipe.write(pickle.dumps(_run_tflm(case, feeds)))
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    if data:
        return pickle.loads(data)
    return Outcome(error="TFLM crashed (wait status %d)" % status)


def _tflm_log(run, case, feeds):
    """What TFLM printed (to file descriptor 2) while running the case:
    why it rejected a model, which its Python error does not say."""
    with tempfile.TemporaryFile() as log:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(log.fileno(), 2)
        try:
            run(case, feeds)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        log.seek(0)
        lines = log.read().decode(errors="replace").splitlines()
        return " | ".join(line for line in lines if line.strip())


def _run_ours(runtime, case, feeds):
    try:
        interpreter = runtime.Interpreter.from_bytes(case.model)
        for i, x in enumerate(feeds):
            interpreter.set_input(x, i)
        interpreter.invoke()
        return Outcome(
            [np.array(interpreter.get_output(i), copy=True) for i in range(interpreter.num_outputs)]
        )
    except runtime.TflmTrainingError as e:
        return Outcome(error="ours: %s: %s" % (type(e).__name__, e))


def _bits(array):
    """The array's values as unsigned integers of the same width, so that
    floats compare bit for bit."""
    array = np.ascontiguousarray(array)
    return array.view(np.dtype("u%d" % array.dtype.itemsize))


def _output_mismatch(expected, actual):
    """None when every output is bit-identical, else a description."""
    if len(expected) != len(actual):
        return "%d outputs, TFLM has %d" % (len(actual), len(expected))
    for k, (a, b) in enumerate(zip(expected, actual)):
        if a.dtype != b.dtype or a.shape != b.shape:
            return "output %d is %s%s, TFLM's is %s%s" % (k, b.dtype, b.shape, a.dtype, a.shape)
        differ = _bits(a) != _bits(b)
        if differ.any():
            first = tuple(int(i) for i in np.argwhere(differ)[0])
            largest = np.max(np.abs(a[differ].astype(np.float64) - b[differ].astype(np.float64)))
            return (
                "output %d: %d of %d values differ, by up to %g; first "
                "at %s: TFLM %r, ours %r"
                % (k, int(differ.sum()), a.size, largest, first, a[first].item(), b[first].item())
            )
    return None


def _registered_ops():
    """Names of the operators the built runtime has kernels for."""
    from tflm_training import _native

    class KernelHead(ctypes.Structure):  # the start of tt_kernel
        _fields_ = [("builtin_code", ctypes.c_int32), ("name", ctypes.c_char_p)]

    kernel_at = _native.library().tt_kernel_at
    kernel_at.restype = ctypes.POINTER(KernelHead)
    kernel_at.argtypes = [ctypes.c_int32]
    names = []
    for index in range(1000):
        kernel = kernel_at(index)
        if not kernel:
            break
        names.append(kernel.contents.name.decode())
    return names


# -- tests --------------------------------------------------------------------


def _check_case(runtime, op, index, tally):
    """Runs case `index` of `op` on both runtimes; returns a failure text or
    None, and counts the outcome in `tally`."""
    case = _make_case(op, index)
    feeds = _feeds(_case_rng(op, index, stream=1), case)
    run = _run_tflm_isolated if case.risky else _run_tflm
    golden, ours = run(case, feeds), _run_ours(runtime, case, feeds)
    where = "%s case %d %r" % (op, index, case.config)
    if golden.rejected and ours.rejected:
        tally["rejected by both"] += 1
        return None
    if golden.rejected != ours.rejected:
        diff = _documented_difference(case, ours.rejected)
        if diff is not None:
            tally["documented: " + diff.name] += 1
            return None
        if ours.rejected:
            return "%s\n  TFLM runs it, ours rejects it: %s" % (where, ours.error)
        return "%s\n  ours runs it, TFLM rejects it: %s" % (
            where,
            _tflm_log(run, case, feeds) or golden.error,
        )
    mismatch = _output_mismatch(golden.outputs, ours.outputs)
    if mismatch:
        return "%s\n  %s" % (where, mismatch)
    tally["identical"] += 1
    return None


@pytest.mark.slow
@pytest.mark.parametrize("op", sorted(GENERATORS))
def test_random_configurations(op):
    import tflm_training as runtime

    assert op in _registered_ops(), "%s has a generator but no kernel" % op
    count = max(1, int(CASE_COUNTS[op] * SCALE))
    tally = {"identical": 0, "rejected by both": 0}
    for diff in DIFFERENCES:
        tally["documented: " + diff.name] = 0
    failures = [f for f in (_check_case(runtime, op, k, tally) for k in range(count)) if f]
    summary = ", ".join("%s %d" % kv for kv in tally.items() if kv[1])
    if failures:
        pytest.fail(
            "%d of %d %s cases fail (%s):\n%s"
            % (len(failures), count, op, summary, "\n".join(failures[:8])),
            pytrace=False,
        )
    if tally["identical"] < MIN_COMPARED_FRACTION * count:
        pytest.fail(
            "only %d of %d %s cases ran on both runtimes (%s); the "
            "generator makes too many invalid models" % (tally["identical"], count, op, summary),
            pytrace=False,
        )


def test_every_registered_op_has_a_generator():
    missing = sorted(set(_registered_ops()) - set(GENERATORS))
    assert not missing, (
        "the runtime registers kernels with no random-configuration "
        "generator in %s: %s" % (os.path.basename(__file__), ", ".join(missing))
    )
