"""Pure-Python mirror of the runtime's greedy buffer planner
(runtime/memory/tt_buffer_planner.c): the memory cost model uses it to predict the
runtime's arena to the byte without running the runtime."""

import dataclasses

from tflm_training.errors import UnsupportedModelError

ALIGNMENT = 16
_MAX_REGION = 0x7FFFFFFF


@dataclasses.dataclass
class Buffer:
    size: int  # bytes
    first: int  # first step the buffer is live
    last: int  # last step it is live (inclusive)
    offset: int = -1


def _padded(size):
    return (size + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def plan_buffers(buffers, sequential=False):
    """Assigns every buffer's offset; returns the region size in bytes.

    Largest first (ties: earlier first step, then lower index), each at the
    lowest offset free for its whole lifetime; `sequential` gives every
    buffer its own bytes, in index order.
    """
    for b in buffers:
        b.offset = -1
    if sequential:
        order = range(len(buffers))
    else:
        order = sorted(range(len(buffers)), key=lambda i: (-buffers[i].size, buffers[i].first, i))
    placed = []  # indices in increasing offset order
    region = 0
    for index in order:
        b = buffers[index]
        offset = region if sequential else _lowest_free_offset(buffers, b, placed)
        if offset + _padded(b.size) > _MAX_REGION:
            raise UnsupportedModelError("the planned region would exceed 2 GB")
        b.offset = offset
        position = len(placed)
        while position > 0 and buffers[placed[position - 1]].offset > offset:
            position -= 1
        placed.insert(position, index)
        region = max(region, offset + _padded(b.size))
    return region


def _lowest_free_offset(buffers, b, placed):
    candidate = 0
    for j in placed:
        p = buffers[j]
        if not (p.first <= b.last and b.first <= p.last):
            continue
        if p.offset >= candidate + _padded(b.size):
            break
        candidate = max(candidate, p.offset + _padded(p.size))
    return candidate
