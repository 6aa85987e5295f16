"""Reads what training needs from a .tflite file (operators, tensors and
where each constant's bytes sit), straight from the flatbuffer: no
TensorFlow or flatbuffers package needed. Read-only and bounds-checked; the
C runtime validates the model fully when it loads it."""

import dataclasses
import struct

from tflm_training.errors import CorruptModelError, UnsupportedModelError

# BuiltinOperator codes this module names.
CONV_2D = 3
DEPTHWISE_CONV_2D = 4
FULLY_CONNECTED = 9
SOFTMAX = 25
OPERATOR_NAMES = {
    0: "ADD",
    1: "AVERAGE_POOL_2D",
    2: "CONCATENATION",
    CONV_2D: "CONV_2D",
    DEPTHWISE_CONV_2D: "DEPTHWISE_CONV_2D",
    6: "DEQUANTIZE",
    FULLY_CONNECTED: "FULLY_CONNECTED",
    17: "MAX_POOL_2D",
    19: "RELU",
    21: "RELU6",
    22: "RESHAPE",
    SOFTMAX: "SOFTMAX",
    34: "PAD",
    40: "MEAN",
    43: "SQUEEZE",
    60: "PADV2",
    114: "QUANTIZE",
}
# TensorType codes.
FLOAT32, INT32, INT8 = 0, 2, 9


def operator_name(code):
    return OPERATOR_NAMES.get(code, f"builtin operator {code}")


@dataclasses.dataclass
class Tensor:
    index: int
    name: str
    shape: tuple
    type: int
    buffer: int
    scales: tuple
    zero_points: tuple
    data_pos: int  # file offset of the constant's bytes (-1 when none)
    data_size: int

    @property
    def is_constant(self):
        return self.data_size > 0

    @property
    def num_elements(self):
        count = 1
        for dim in self.shape:
            count *= dim
        return count


@dataclasses.dataclass
class Operator:
    index: int
    builtin_code: int
    inputs: tuple  # tensor indices, -1 for an absent optional input
    outputs: tuple

    @property
    def name(self):
        return operator_name(self.builtin_code)


@dataclasses.dataclass
class Graph:
    tensors: list
    operators: list
    inputs: tuple
    outputs: tuple

    def producer(self, tensor):
        """Index of the operator writing `tensor`, or None."""
        for op in self.operators:
            if tensor in op.outputs:
                return op.index
        return None


class _Reader:
    def __init__(self, data):
        self.data = bytes(data)

    def _unpack(self, fmt, pos):
        size = struct.calcsize(fmt)
        if pos < 0 or pos + size > len(self.data):
            raise CorruptModelError("corrupt .tflite model: an offset points outside the file")
        return struct.unpack_from(fmt, self.data, pos)[0]

    def table(self, pos):
        vtable = pos - self._unpack("<i", pos)
        return pos, vtable, self._unpack("<H", vtable)

    def _field_pos(self, table, field):
        pos, vtable, vtable_size = table
        entry = 4 + 2 * field
        if entry + 2 > vtable_size:
            return None
        offset = self._unpack("<H", vtable + entry)
        return pos + offset if offset else None

    def scalar(self, table, field, fmt, default):
        pos = self._field_pos(table, field)
        return default if pos is None else self._unpack(fmt, pos)

    def _indirect(self, pos):
        return pos + self._unpack("<I", pos)

    def subtable(self, table, field):
        pos = self._field_pos(table, field)
        return None if pos is None else self.table(self._indirect(pos))

    def vector(self, table, field):
        """(position of the first element, element count); (0, 0) if absent."""
        pos = self._field_pos(table, field)
        if pos is None:
            return 0, 0
        start = self._indirect(pos)
        return start + 4, self._unpack("<I", start)

    def tables(self, table, field):
        start, count = self.vector(table, field)
        return [self.table(self._indirect(start + 4 * i)) for i in range(count)]

    def numbers(self, table, field, fmt):
        start, count = self.vector(table, field)
        size = struct.calcsize(fmt)
        if start + size * count > len(self.data):
            raise CorruptModelError("corrupt .tflite model: a vector runs past the end of the file")
        return tuple(struct.unpack_from(f"<{count}{fmt[-1]}", self.data, start)) if count else ()

    def string(self, table, field):
        start, count = self.vector(table, field)
        return self.data[start : start + count].decode("utf-8", "replace")


def read_graph(model_bytes):
    """The single subgraph of a .tflite model."""
    r = _Reader(model_bytes)
    if len(r.data) < 8 or r.data[4:8] != b"TFL3":
        raise CorruptModelError("not a .tflite model (no TFL3 file identifier)")
    model = r.table(r._unpack("<I", 0))
    codes = [max(r.scalar(c, 0, "<b", 0), r.scalar(c, 3, "<i", 0)) for c in r.tables(model, 1)]
    buffers = [r.vector(b, 0) for b in r.tables(model, 4)]
    subgraphs = r.tables(model, 2)
    if len(subgraphs) != 1:
        raise UnsupportedModelError(
            f"the model has {len(subgraphs)} subgraphs; only one is supported"
        )
    subgraph = subgraphs[0]
    tensors = []
    for index, t in enumerate(r.tables(subgraph, 0)):
        quant = r.subtable(t, 4)
        buffer = r.scalar(t, 2, "<I", 0)
        data_pos, data_size = buffers[buffer] if 0 < buffer < len(buffers) else (0, 0)
        tensors.append(
            Tensor(
                index=index,
                name=r.string(t, 3),
                shape=r.numbers(t, 0, "<i"),
                type=r.scalar(t, 1, "<b", FLOAT32),
                buffer=buffer,
                scales=r.numbers(quant, 2, "<f") if quant else (),
                zero_points=r.numbers(quant, 3, "<q") if quant else (),
                data_pos=data_pos if data_size else -1,
                data_size=data_size,
            )
        )
    operators = []
    for index, op in enumerate(r.tables(subgraph, 3)):
        opcode = r.scalar(op, 0, "<I", 0)
        if opcode >= len(codes):
            raise CorruptModelError(f"corrupt .tflite model: operator {index} has no operator code")
        operators.append(
            Operator(index, codes[opcode], r.numbers(op, 1, "<i"), r.numbers(op, 2, "<i"))
        )
    return Graph(tensors, operators, r.numbers(subgraph, 1, "<i"), r.numbers(subgraph, 2, "<i"))


def builtin_option(model_bytes, operator_index, field, fmt, default):
    """Field `field` of operator `operator_index`'s builtin options table,
    read with struct format `fmt` (e.g. "<b"), as the runtime's option
    readers (tt_option_* in runtime/kernels/common/tt_kernel_prepare.c) see it: `default`
    when the operator has no options table, its options type is NONE, or
    the table lacks the field."""
    r = _Reader(model_bytes)
    model = r.table(r._unpack("<I", 0))
    subgraph = r.tables(model, 2)[0]
    operator = r.tables(subgraph, 3)[operator_index]
    options = r.subtable(operator, 4)
    if options is None or r.scalar(operator, 3, "<B", 0) == 0:
        return default
    return r.scalar(options, field, fmt, default)
