"""Checks of Python values before they cross into C, where ctypes would
silently truncate them."""

import numbers

from tflm_training.errors import InvalidArgumentError

INT32_MAX = 2**31 - 1
UINT32_MAX = 2**32 - 1


def c_int(value, what, low, high):
    """`value` as a Python int when it is an integer in [low, high]."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise InvalidArgumentError(f"{what} must be an int, got {value!r}")
    if not low <= value <= high:
        raise InvalidArgumentError(f"{what} must be in [{low}, {high}], got {value}")
    return int(value)


def arena_size(value):
    """A caller's arena size: None (measure it) or a uint32 byte count."""
    if value is None:
        return None
    return c_int(value, "arena_size (bytes)", 1, UINT32_MAX)
