"""The runtime's requantization arithmetic against TFLM's definition
(gemmlowp's SaturatingRoundingDoublingHighMul and RoundingDivideByPOT),
written here with Python's exact integers: the runtime computes it with a
shift where TFLM divides, and must agree on every input."""

import ctypes

import numpy as np
import pytest

from tflm_training import _native

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def _trunc_div(n, d):
    return -((-n) // d) if n < 0 else n // d


def reference_high_mul(a, b):
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = 2**30 if ab >= 0 else 1 - 2**30
    return _trunc_div(ab + nudge, 2**31)


def reference_divide_by_pot(x, exponent):
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


@pytest.fixture(scope="module")
def lib():
    library = _native.library()
    for name, args in (
        ("tt_saturating_rounding_doubling_high_mul", 2),
        ("tt_rounding_divide_by_pot", 2),
    ):
        function = getattr(library, name)
        function.restype = ctypes.c_int32
        function.argtypes = [ctypes.c_int32] * args
    return library


def _operands(count, seed):
    rng = np.random.default_rng(seed)
    edges = [
        INT32_MIN,
        INT32_MIN + 1,
        -(2**30),
        -1,
        0,
        1,
        2**30 - 1,
        2**30,
        INT32_MAX - 1,
        INT32_MAX,
    ]
    pairs = [(a, b) for a in edges for b in edges]
    # (2k + 1) 2^30 = k 2^31 + 2^30: products exactly halfway, of both
    # signs, and their neighbours.
    for k in range(-6, 6):
        for b in (2**30 - 1, 2**30, 2**30 + 1, -(2**30) + 1, -(2**30), -(2**30) - 1):
            pairs.append((2 * k + 1, b))
    values = rng.integers(INT32_MIN, INT32_MAX, size=(count, 2), endpoint=True)
    small = rng.integers(-70000, 70000, size=(count, 2))
    pairs += [tuple(map(int, v)) for v in np.concatenate([values, small])]
    return pairs


def test_doubling_high_mul_equals_tflm_on_every_operand(lib):
    for a, b in _operands(20000, seed=1):
        assert lib.tt_saturating_rounding_doubling_high_mul(a, b) == reference_high_mul(a, b), (
            a,
            b,
        )


def test_divide_by_power_of_two_equals_tflm(lib):
    rng = np.random.default_rng(2)
    for x in [
        INT32_MIN,
        -1,
        0,
        1,
        INT32_MAX,
        *map(int, rng.integers(INT32_MIN, INT32_MAX, 5000, endpoint=True)),
    ]:
        for exponent in (0, 1, 7, 15, 30, 31):
            assert lib.tt_rounding_divide_by_pot(x, exponent) == reference_divide_by_pot(
                x, exponent
            ), (x, exponent)
