"""The greedy buffer planner: the C runtime's placement is valid, and the
Python mirror (used by the memory cost model) reproduces it exactly."""

import ctypes

import numpy as np
import pytest

from tflm_training import _native, buffer_planner


class _CBuffer(ctypes.Structure):
    _fields_ = [
        ("size", ctypes.c_int32),
        ("first", ctypes.c_int32),
        ("last", ctypes.c_int32),
        ("offset", ctypes.c_int32),
    ]


def _plan_in_c(buffers, sequential):
    lib = _native.library()
    lib.tt_plan_buffers.restype = ctypes.c_uint64
    lib.tt_plan_buffers.argtypes = [ctypes.c_void_p, ctypes.c_int32, ctypes.c_void_p, ctypes.c_bool]
    array = (_CBuffer * len(buffers))(*[_CBuffer(b.size, b.first, b.last, -1) for b in buffers])
    order = (ctypes.c_int32 * max(1, len(buffers)))()
    region = lib.tt_plan_buffers(array, len(buffers), order, sequential)
    return region, [b.offset for b in array]


def _random_buffers(rng, count):
    buffers = []
    for _ in range(count):
        first = int(rng.integers(0, 40))
        size = int(rng.choice([0, 1, 16, 100, 1000, 4096, int(rng.integers(1, 50000))]))
        buffers.append(buffer_planner.Buffer(size, first, first + int(rng.integers(0, 10))))
    return buffers


@pytest.mark.parametrize("sequential", [False, True])
def test_python_mirror_equals_the_c_planner(sequential):
    rng = np.random.default_rng(7)
    for _ in range(300):
        buffers = _random_buffers(rng, int(rng.integers(0, 60)))
        c_region, c_offsets = _plan_in_c(buffers, sequential)
        py_region = buffer_planner.plan_buffers(buffers, sequential)
        assert (py_region, [b.offset for b in buffers]) == (c_region, c_offsets)


def test_placement_is_valid_and_aligned():
    rng = np.random.default_rng(11)
    for _ in range(200):
        buffers = _random_buffers(rng, int(rng.integers(1, 60)))
        region, offsets = _plan_in_c(buffers, False)
        for i, a in enumerate(buffers):
            assert offsets[i] % buffer_planner.ALIGNMENT == 0
            assert offsets[i] + a.size <= region
            for j in range(i):
                b = buffers[j]
                live_together = a.first <= b.last and b.first <= a.last
                share_bytes = offsets[i] < offsets[j] + b.size and offsets[j] < offsets[i] + a.size
                assert not (live_together and share_bytes), (a, b)


def test_buffers_with_disjoint_lifetimes_share_memory():
    buffers = [
        buffer_planner.Buffer(1000, 0, 1),
        buffer_planner.Buffer(1000, 2, 3),
        buffer_planner.Buffer(500, 1, 2),
    ]
    region, offsets = _plan_in_c(buffers, False)
    assert offsets[0] == offsets[1] == 0 and region == 1008 + 512
