"""Writes a changed .tflite in pure Python (no TensorFlow, no flatbuffers
package): new tables are built IN FRONT of the original file, which stays
whole and byte for byte at the end of the new one.

A flatbuffer offset (uoffset) only points forward, so new tables placed
before the original bytes may point at any of its tables, vectors and
strings: a rewrite builds only what changes (a new root Model, SubGraph,
the changed Tensors, their Buffers...) and reuses every other table where
it is, e.g. each operator's builtin options, metadata and signature defs,
untouched. What the new tables no longer reference stays in the file as
unread bytes. The original's offsets are relative, and it starts at a
multiple of 16 bytes in the new file, so its alignment holds.

Builder mirrors the flatbuffers builder: it builds back to front, children
before the tables that point at them. A reference is an int: a new
object's distance before the original's start, or Builder.old(position)
for an object of the original.
"""

import struct

from tflm_training import tflite_graph
from tflm_training.errors import BadStateError, UnsupportedModelError

OFFSET = "o"  # a field or element that is a uoffset to another object
ALIGNMENT = 16  # the original file starts at a multiple of this

# Fields of the tables a rewrite copies: {field index: struct format or OFFSET}
# (tensorflow/lite/schema/schema.fbs).
MODEL = {
    0: "I",
    1: OFFSET,
    2: OFFSET,
    3: OFFSET,
    4: OFFSET,
    5: OFFSET,
    6: OFFSET,
    7: OFFSET,
    8: OFFSET,
    9: OFFSET,
}
SUBGRAPH = {0: OFFSET, 1: OFFSET, 2: OFFSET, 3: OFFSET, 4: OFFSET, 5: "i"}
TENSOR = {
    0: OFFSET,
    1: "b",
    2: "I",
    3: OFFSET,
    4: OFFSET,
    5: "B",
    6: OFFSET,
    7: OFFSET,
    8: "B",
    9: OFFSET,
    10: "I",
}
OPERATOR = {
    0: "I",
    1: OFFSET,
    2: OFFSET,
    3: "B",
    4: OFFSET,
    5: OFFSET,
    6: "b",
    7: OFFSET,
    8: OFFSET,
    9: "Q",
    10: "Q",
    11: "B",
    12: OFFSET,
    13: "i",
}
BUFFER = {0: OFFSET, 1: "Q", 2: "Q"}


def _size(fmt):
    return 4 if fmt == OFFSET else struct.calcsize("<" + fmt)


class Builder:
    """New flatbuffer objects in front of `original` (see the module doc)."""

    def __init__(self, original):
        self._original = bytes(original)
        self._head = bytearray()  # grows at the front

    @staticmethod
    def old(position):
        """A reference to the object at `position` of the original file."""
        return -int(position)

    def _prepend(self, data):
        self._head[:0] = data

    def _pad(self, align, size):
        """Zeros so that `size` more bytes start at a multiple of `align`."""
        self._prepend(bytes(-(len(self._head) + size) % align))

    def vector(self, fmt, values, align=4):
        """A vector of scalars (struct format `fmt`, e.g. "i", "f", "B"); its
        elements start at a multiple of `align` (16 for a Buffer's data)."""
        data = struct.pack(f"<{len(values)}{fmt}", *values)
        self._pad(max(align, 4), len(data))
        self._prepend(data)
        self._prepend(struct.pack("<I", len(values)))
        return len(self._head)

    def offsets(self, refs):
        """A vector of tables (references)."""
        self._pad(4, 4 * len(refs))
        for ref in reversed(refs):
            self._prepend(struct.pack("<I", self._forward(len(self._head) + 4, ref)))
        self._prepend(struct.pack("<I", len(refs)))
        return len(self._head)

    def table(self, fields):
        """A table from {field index: (struct format or OFFSET, value)}; its
        vtable sits right before it."""
        order = sorted(fields, key=lambda i: (-_size(fields[i][0]), i))
        positions, end = {}, 4  # after the soffset to the vtable
        for index in order:
            size = _size(fields[index][0])
            end += -end % size
            positions[index] = end
            end += size
        table_size = end + (-end % 4)
        self._pad(max([4] + [_size(f) for f, _ in fields.values()]), table_size)
        start = len(self._head) + table_size
        body = bytearray(table_size)
        for index, (fmt, value) in fields.items():
            at = positions[index]
            if fmt == OFFSET:
                struct.pack_into("<I", body, at, self._forward(start - at, value))
            else:
                struct.pack_into("<" + fmt, body, at, value)
        count = max(fields) + 1 if fields else 0
        vtable = struct.pack(
            f"<HH{count}H", 4 + 2 * count, table_size, *(positions.get(i, 0) for i in range(count))
        )
        struct.pack_into("<i", body, 0, len(vtable))  # vtable = table - soffset
        self._prepend(body)
        self._prepend(vtable)
        return start

    @staticmethod
    def _forward(at, ref):
        if at - ref <= 0:
            raise BadStateError(
                "tflite_writer: a flatbuffer offset must point forward "
                "(tables are built children first)"
            )
        return at - ref

    def finish(self, root, identifier=b"TFL3"):
        """The whole file: root offset, identifier, the new objects, the original."""
        self._pad(ALIGNMENT, 8)
        start = len(self._head) + 8
        self._prepend(struct.pack("<I", self._forward(start, root)) + identifier)
        return bytes(self._head) + self._original


class Original:
    """The tables of the original file, for copying into a Builder."""

    def __init__(self, model_bytes):
        self.reader = tflite_graph._Reader(model_bytes)
        r = self.reader
        if len(r.data) < 8 or r.data[4:8] != b"TFL3":
            raise UnsupportedModelError("not a .tflite model (no TFL3 file identifier)")
        self.model = r.table(r._unpack("<I", 0))
        subgraphs = r.tables(self.model, 2)
        if len(subgraphs) != 1:
            raise UnsupportedModelError(
                f"the model has {len(subgraphs)} subgraphs; only one can be rewritten"
            )
        self.subgraph = subgraphs[0]
        self.tensors = r.tables(self.subgraph, 0)
        self.operators = r.tables(self.subgraph, 3)
        self.buffers = r.tables(self.model, 4)
        for buffer in self.buffers:
            if r.scalar(buffer, 1, "<Q", 0):
                raise UnsupportedModelError(
                    "the model keeps buffers outside its flatbuffer "
                    "(a model over 2 GB); it cannot be rewritten"
                )

    def fields(self, table, schema, what):
        """{field index: (format, value)} of every field `table` holds, an
        OFFSET's value a Builder.old reference; refuses fields the schema
        does not know (a newer schema: copying them blindly could break)."""
        r = self.reader
        pos, vtable, vtable_size = table
        fields = {}
        for index in range((vtable_size - 4) // 2):
            at = r._field_pos(table, index)
            if at is None:
                continue
            fmt = schema.get(index)
            if fmt is None:
                raise UnsupportedModelError(
                    f"the model's {what} table has field {index}, which "
                    "this rewriter does not know (a newer schema)"
                )
            fields[index] = (
                (OFFSET, Builder.old(r._indirect(at)))
                if fmt == OFFSET
                else (fmt, r._unpack("<" + fmt, at))
            )
        return fields

    @staticmethod
    def ref(table):
        return Builder.old(table[0])

    def option(self, operator_index):
        """(options type, options table) of an operator; (0, None) if none."""
        op = self.operators[operator_index]
        return self.reader.scalar(op, 3, "<B", 0), self.reader.subtable(op, 4)
