"""Builds .tflite models holding exactly one builtin operator.

Not a test module: tests/test_random_ops.py uses it to write random
single-operator models straight from the schema that ships with
tflite_micro (no TensorFlow, no converter).

    x = Tensor((1, 8, 8, 3), scale=0.02, zero_point=-5)
    w = Tensor((4, 3, 3, 3), scale=[0.01] * 4, quantized_dimension=0,
               data=np.ones((4, 3, 3, 3), np.int8))
    y = Tensor((1, 8, 8, 4), scale=0.1, zero_point=3)
    buf = build_model("CONV_2D", [x, w, None], [y],
                      options("Conv2D", padding=0, strideH=1, strideW=1))

Every operator input that is not a constant (has no `data`) becomes a model
input, in order; every operator output is a model output. `None` in the
operator's inputs is an omitted optional input (index -1).
"""

from dataclasses import dataclass
from typing import Optional, Sequence

import flatbuffers
import numpy as np
from tflite_micro.tensorflow.lite.micro.python import (
    schema_py_generated as schema,
)

TensorType = schema.TensorType

# Builtin codes above this are stored in builtinCode only; the deprecated
# int8 field then holds PLACEHOLDER_FOR_GREATER_OP_CODES.
_PLACEHOLDER_OP_CODE = 127


@dataclass
class Tensor:
    """One tensor of the model.

    `scale` and `zero_point` are a number (per tensor) or a sequence (per
    channel along `quantized_dimension`); `scale=None` leaves the tensor
    unquantized. A zero point left as None is 0 for every scale. `data`
    makes the tensor a constant stored in the model.
    """

    shape: Sequence[int]
    dtype: int = TensorType.INT8
    scale: object = None
    zero_point: object = None
    quantized_dimension: int = 0
    data: Optional[np.ndarray] = None
    name: str = ""


def builtin_code(op_name):
    """The BuiltinOperator value of an operator name such as 'CONV_2D'."""
    return getattr(schema.BuiltinOperator, op_name)


def _options_type(options):
    """BuiltinOptions member for an options object, from its class name
    (Conv2DOptionsT -> BuiltinOptions.Conv2DOptions)."""
    if options is None:
        return schema.BuiltinOptions.NONE
    name = type(options).__name__
    assert name.endswith("T"), name
    return getattr(schema.BuiltinOptions, name[:-1])


def _quantization(tensor):
    if tensor.scale is None:
        return None
    scales = np.atleast_1d(np.asarray(tensor.scale, np.float32))
    zero_points = tensor.zero_point
    if zero_points is None:
        zero_points = np.zeros(len(scales), np.int64)
    q = schema.QuantizationParametersT()
    q.scale = scales
    q.zeroPoint = np.atleast_1d(np.asarray(zero_points, np.int64))
    q.quantizedDimension = int(tensor.quantized_dimension)
    return q


def _buffer(data):
    """A buffer holding `data`'s bytes. Without bytes (no data, or an empty
    array) the tensor is not a constant: TFLite marks constants by a
    non-empty buffer."""
    buffer = schema.BufferT()
    if data is not None:
        raw = np.ascontiguousarray(data).tobytes()
        buffer.data = np.frombuffer(raw, np.uint8) if raw else None
    return buffer


def _tensor(tensor, index, buffer_index):
    t = schema.TensorT()
    t.shape = np.asarray(tensor.shape, np.int32)
    t.type = tensor.dtype
    t.buffer = buffer_index
    t.name = (tensor.name or "t%d" % index).encode()
    t.quantization = _quantization(tensor)
    return t


def _operator_code(op_name):
    code = schema.OperatorCodeT()
    code.builtinCode = builtin_code(op_name)
    code.deprecatedBuiltinCode = min(code.builtinCode, _PLACEHOLDER_OP_CODE)
    code.version = 1
    return code


def build_model(op_name, inputs, outputs, options=None):
    """The .tflite bytes of a model running `op_name` once.

    `inputs`: Tensor or None per operator input; `outputs`: Tensor per
    operator output; `options`: the schema's options object (e.g.
    Conv2DOptionsT) or None.
    """
    model = schema.ModelT()
    model.version = 3
    model.description = b"single-op test model"
    model.operatorCodes = [_operator_code(op_name)]
    model.buffers = [schema.BufferT()]  # buffer 0: the empty sentinel

    tensors, op_inputs, op_outputs, graph_inputs = [], [], [], []
    for is_output, tensor in [(False, t) for t in inputs] + [(True, t) for t in outputs]:
        if tensor is None:  # an omitted optional input
            op_inputs.append(-1)
            continue
        index = len(tensors)
        model.buffers.append(_buffer(tensor.data))
        tensors.append(_tensor(tensor, index, len(model.buffers) - 1))
        if is_output:
            op_outputs.append(index)
        else:
            op_inputs.append(index)
            if tensor.data is None:
                graph_inputs.append(index)

    op = schema.OperatorT()
    op.opcodeIndex = 0
    op.inputs = np.asarray(op_inputs, np.int32)
    op.outputs = np.asarray(op_outputs, np.int32)
    op.builtinOptionsType = _options_type(options)
    op.builtinOptions = options

    subgraph = schema.SubGraphT()
    subgraph.tensors = tensors
    subgraph.operators = [op]
    subgraph.inputs = np.asarray(graph_inputs, np.int32)
    subgraph.outputs = np.asarray(op_outputs, np.int32)
    subgraph.name = b"main"
    model.subgraphs = [subgraph]

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def options(kind, **fields):
    """A schema options object, e.g. options('Pool2D', padding=1,
    strideW=2): the class `<kind>OptionsT` with the given fields set."""
    obj = getattr(schema, kind + "OptionsT")()
    for name, value in fields.items():
        if not hasattr(obj, name):
            raise AttributeError("%sOptionsT has no field %r" % (kind, name))
        setattr(obj, name, value)
    return obj
