"""The forward kernels' model rules against TensorFlow Lite Micro's
(tests/models/tflm/RULES.md holds the audit).

A model TFLM's Prepare refuses stays a CorruptModelError. A model TFLM
loads and runs deterministically is either accepted and bit-exact with
tflite_micro, or, where our kernels do not reproduce TFLM's behaviour,
refused with an UnsupportedModelError naming the feature, never as corrupt.
A model on which TFLM would read or write out of bounds stays corrupt.
"""

import pathlib
import sys

import numpy as np
import pytest

import tflm_training
from tflm_training import errors, memory_model

TESTS = pathlib.Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

import golden
from single_op_models import Tensor, build_model, options
from test_tflm_models import assert_bit_exact, assert_refused_precisely

INT32 = golden.schema_fb.TensorType.INT32


def act(shape, scale=0.05, zero_point=0):
    return Tensor(shape, scale=scale, zero_point=zero_point)


def weights(shape, scale=0.01, quantized_dimension=0):
    data = (np.arange(int(np.prod(shape))) % 7 - 3).astype(np.int8).reshape(shape)
    zero_point = None if np.isscalar(scale) else [0] * len(scale)
    return Tensor(
        shape,
        scale=scale,
        zero_point=zero_point,
        quantized_dimension=quantized_dimension,
        data=data,
    )


def bias(n, scale=0.0005):
    return Tensor((n,), dtype=INT32, scale=scale, data=np.arange(n, dtype=np.int32) * 10)


def conv(inputs, output, **fields):
    return build_model(
        "CONV_2D",
        inputs,
        [output],
        options("Conv2D", **{"padding": 1, "strideH": 1, "strideW": 1, **fields}),
    )


def depthwise(inputs, output, **fields):
    return build_model(
        "DEPTHWISE_CONV_2D",
        inputs,
        [output],
        options(
            "DepthwiseConv2D",
            **{"padding": 1, "strideH": 1, "strideW": 1, "depthMultiplier": 2, **fields},
        ),
    )


def fully_connected(inputs, output, **fields):
    return build_model("FULLY_CONNECTED", inputs, [output], options("FullyConnected", **fields))


def _tflm_runs(buf):
    g = golden.GoldenModel(buf, arena_size=1 << 20)
    rng = np.random.default_rng(0)
    xs = [
        rng.integers(-128, 128, size=tuple(g.input_details(i)["shape"]), dtype=np.int8)
        for i in range(len(g.input_indices))
    ]
    g.run(xs)


def _tflm_refuses(buf):
    with pytest.raises(RuntimeError):
        golden.GoldenModel(buf, arena_size=1 << 20)


# -- (b) accepted: TFLM runs it and so do we, bit for bit ----------------------------


def test_conv_filter_quantized_along_another_dimension_of_the_same_size():
    """kernel_util.cc (PopulateConvolutionQuantizationParams) checks only
    that the quantized dimension holds one value per output channel; scale
    i goes to output channel i."""
    buf = conv(
        [act((1, 5, 5, 3)), weights((3, 3, 3, 3), [0.01, 0.02, 0.03], 3), bias(3)],
        act((1, 3, 3, 3), 0.1),
    )
    assert_bit_exact(buf, "conv filter quantized along dimension 3", seeds=(0, 1))
    assert (
        memory_model.inference_arena(buf).total == tflm_training.Interpreter(buf).arena_used_bytes()
    )


# -- (b) refused as unsupported: TFLM runs it, we name the feature --------------------

UNSUPPORTED = {
    "zero point outside int8": (
        lambda: conv(
            [act((1, 5, 5, 2)), weights((3, 3, 3, 2)), bias(3)], act((1, 3, 3, 3), 0.1, 200)
        ),
        "outside the int8 range; such zero points are not supported",
    ),
    "input scale zero": (
        lambda: conv(
            [act((1, 5, 5, 2), 0.0), weights((3, 3, 3, 2)), bias(3)], act((1, 3, 3, 3), 0.1)
        ),
        "such scales are not supported",
    ),
    "negative filter scale": (
        lambda: conv(
            [act((1, 5, 5, 2)), weights((3, 3, 3, 2), [0.01, -0.02, 0.01]), bias(3)],
            act((1, 3, 3, 3), 0.1),
        ),
        "such scales are not supported",
    ),
    "stride 0": (
        lambda: conv(
            [act((1, 5, 5, 2)), weights((3, 3, 3, 2)), bias(3)], act((1, 3, 3, 3), 0.1), strideH=0
        ),
        "below 1 are not supported",
    ),
    "VALID filter larger than the input": (
        lambda: conv([act((1, 2, 5, 2)), weights((3, 3, 3, 2)), bias(3)], act((1, 1, 3, 3), 0.1)),
        "such windows are not supported",
    ),
    "output size that is not the window's": (
        lambda: conv([act((1, 5, 5, 2)), weights((3, 3, 3, 2)), bias(3)], act((1, 4, 3, 3), 0.1)),
        "outputs whose size differs from the window's are not supported",
    ),
    "unknown padding": (
        lambda: conv(
            [act((1, 5, 5, 2)), weights((3, 3, 3, 2)), bias(3)], act((1, 3, 3, 3), 0.1), padding=2
        ),
        "unknown padding is not supported",
    ),
    "input depth not a multiple of the filter depth": (
        lambda: conv([act((1, 5, 5, 3)), weights((3, 3, 3, 2)), bias(3)], act((1, 3, 3, 3), 0.1)),
        "such grouped convolutions are not supported",
    ),
    "depthwise filter dimension 0 above 1": (
        lambda: depthwise(
            [act((1, 5, 5, 2)), weights((2, 3, 3, 4), [0.01] * 4, 3), bias(4)],
            act((1, 3, 3, 4), 0.1),
        ),
        "filters whose dimension 0 is not 1 are not supported",
    ),
    "fully connected filter zero point outside int8": (
        lambda: fully_connected(
            [
                act((2, 6)),
                Tensor((3, 6), scale=0.01, zero_point=200, data=np.ones((3, 6), np.int8)),
                bias(3),
            ],
            act((2, 3), 0.1),
        ),
        "such zero points are not supported",
    ),
    "fully connected input not whole rows": (
        lambda: fully_connected([act((2, 7)), weights((3, 6)), bias(3)], act((2, 3), 0.1)),
        "not a multiple of the filter depth",
    ),
    "fully connected output with fewer rows": (
        lambda: fully_connected([act((2, 6)), weights((3, 6)), bias(3)], act((1, 3), 0.1)),
        "output has 3 elements",
    ),
    "conv bias with more values than channels": (
        lambda: conv([act((1, 5, 5, 2)), weights((3, 3, 3, 2)), bias(4)], act((1, 3, 3, 3), 0.1)),
        "values past the channels are not supported",
    ),
    "fully connected keep_num_dims with other leading dimensions": (
        lambda: fully_connected(
            [act((2, 2, 6)), weights((3, 6)), bias(3)], act((1, 4, 3), 0.1), keepNumDims=True
        ),
        "with keep_num_dims",
    ),
}


@pytest.mark.parametrize("name", sorted(UNSUPPORTED))
def test_model_tflm_runs_is_unsupported_not_corrupt(name):
    make, piece = UNSUPPORTED[name]
    buf = make()
    _tflm_runs(buf)
    message = assert_refused_precisely(buf, name)
    assert "operator 0" in message and piece in message, message


# -- (a) and (c): refused as corrupt ----------------------------------------------


def test_filter_scale_count_tflm_refuses_stays_corrupt():
    buf = conv(
        [act((1, 5, 5, 2)), weights((3, 3, 3, 2), [0.01, 0.02]), bias(3)], act((1, 3, 3, 3), 0.1)
    )
    _tflm_refuses(buf)
    with pytest.raises(errors.CorruptModelError, match="2 scales but 3 output channels"):
        tflm_training.Interpreter(buf)


def test_depthwise_quantized_dimension_of_another_size_stays_corrupt():
    buf = depthwise(
        [act((1, 5, 5, 2)), weights((1, 3, 3, 4), [0.01] * 4, 0), bias(4)], act((1, 3, 3, 4), 0.1)
    )
    _tflm_refuses(buf)
    with pytest.raises(errors.CorruptModelError, match="quantized along dimension 0"):
        tflm_training.Interpreter(buf)


@pytest.mark.parametrize(
    "make,piece",
    [
        # TFLM would write 3 rows of 3 into a 6-value output / read a third row.
        (
            lambda: fully_connected([act((2, 6)), weights((3, 6)), bias(3)], act((3, 3), 0.1)),
            "output has 9 elements",
        ),
        (
            lambda: fully_connected([act((2, 6)), weights((3, 6)), bias(3)], act((3, 2), 0.1)),
            "must end in the filter's 3 units",
        ),
        # TFLM would read input channels past the end (group index = groups).
        (
            lambda: conv(
                [act((1, 5, 5, 4)), weights((3, 3, 3, 2)), bias(3)], act((1, 3, 3, 3), 0.1)
            ),
            "do not split into 2 groups",
        ),
    ],
)
def test_out_of_bounds_for_tflm_stays_corrupt(make, piece):
    with pytest.raises(errors.CorruptModelError, match=piece):
        tflm_training.Interpreter(make())
