"""Golden reference helpers: the tflite_micro Python runtime and the .tflite
schema that ships in its wheel.

Not a test module. Used by tests/test_bit_exact.py and
tests/fixtures/make_models.py.

    buf = open('tests/models/mlp.tflite', 'rb').read()
    ops = list_ops(buf)          # [(op_index, 'FULLY_CONNECTED', (out, ...)), ...]
    g = GoldenModel(buf)
    x = prepare_input(x_uint8[:1], g.input_details(0))
    tensors = g.run_all([x])     # {tensor_index: np.ndarray} after invoke
    out = g.run([x])             # output 0 only

tflite_micro is used with InterpreterConfig.kPreserveAllTensors, so every
tensor keeps its value after invoke() (no arena reuse), and GetTensor() works
for all of them.
"""

import numpy as np
from tflite_micro.python.tflite_micro import runtime as _tflm

# The schema lives under tensorflow/lite/micro/python in the tflite-micro
# wheel (not tensorflow/lite/python).
from tflite_micro.tensorflow.lite.micro.python import (
    schema_py_generated as schema_fb,
)

BUILTIN_OP_NAMES = {
    v: k
    for k, v in vars(schema_fb.BuiltinOperator).items()
    if not k.startswith("_") and isinstance(v, int)
}
TYPE_NAMES = {
    v: k
    for k, v in vars(schema_fb.TensorType).items()
    if not k.startswith("_") and isinstance(v, int)
}


def read_model(buf):
    """Parses .tflite bytes into the schema's object API (ModelT)."""
    return schema_fb.ModelT.InitFromObj(schema_fb.Model.GetRootAsModel(bytearray(buf), 0))


def _op_name(model, op):
    code = model.operatorCodes[op.opcodeIndex]
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    if builtin == schema_fb.BuiltinOperator.CUSTOM:
        custom = code.customCode
        if isinstance(custom, bytes):
            custom = custom.decode()
        return "CUSTOM:%s" % custom
    return BUILTIN_OP_NAMES.get(builtin, "BUILTIN_%d" % builtin)


def _as_tuple(a):
    return tuple(int(i) for i in (a if a is not None else ()))


def list_ops_full(buf_or_model, subgraph=0):
    """[(op_index, op name, input tensor indices, output tensor indices)]."""
    m = buf_or_model
    if not isinstance(m, schema_fb.ModelT):
        m = read_model(m)
    ops = m.subgraphs[subgraph].operators or []
    return [
        (k, _op_name(m, op), _as_tuple(op.inputs), _as_tuple(op.outputs))
        for k, op in enumerate(ops)
    ]


def list_ops(buf_or_model, subgraph=0):
    """[(op_index, builtin op name, output tensor indices)] in execution order."""
    return [(k, name, outs) for k, name, _, outs in list_ops_full(buf_or_model, subgraph)]


_PADDING = {0: "SAME", 1: "VALID"}
_ACTIVATION = {0: "", 1: "relu", 2: "relu_n1_1", 3: "relu6", 4: "tanh", 5: "sign_bit", 6: "sigmoid"}


def describe_ops(buf_or_model, subgraph=0):
    """One short line per operator: name, kernel/window, strides, padding,
    dilation, depth multiplier, fused activation, output shape; e.g.
    'CONV_2D 3x3 s2 SAME relu -> (1, 17, 17, 16)'."""
    m = buf_or_model
    if not isinstance(m, schema_fb.ModelT):
        m = read_model(m)
    sg = m.subgraphs[subgraph]
    lines = []
    for k, name, ins, outs in list_ops_full(m, subgraph):
        o = sg.operators[k].builtinOptions
        parts = [name]
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D") and o is not None:
            shape = _as_tuple(sg.tensors[ins[1]].shape)
            parts.append("%dx%d" % (shape[1], shape[2]))
            parts.append(
                "s%d" % o.strideH if o.strideH == o.strideW else "s%d,%d" % (o.strideH, o.strideW)
            )
            parts.append(_PADDING.get(o.padding, str(o.padding)))
            if o.dilationHFactor != 1 or o.dilationWFactor != 1:
                parts.append("d%d,%d" % (o.dilationHFactor, o.dilationWFactor))
            if name == "DEPTHWISE_CONV_2D":
                parts.append("mult%d" % o.depthMultiplier)
        elif name in ("MAX_POOL_2D", "AVERAGE_POOL_2D") and o is not None:
            parts.append("%dx%d" % (o.filterHeight, o.filterWidth))
            parts.append(
                "s%d" % o.strideH if o.strideH == o.strideW else "s%d,%d" % (o.strideH, o.strideW)
            )
            parts.append(_PADDING.get(o.padding, str(o.padding)))
        elif name == "FULLY_CONNECTED" and o is not None and o.keepNumDims:
            parts.append("keep_num_dims")
        elif name == "CONCATENATION" and o is not None:
            parts.append("axis%d" % o.axis)
        elif name == "MEAN" and o is not None and o.keepDims:
            parts.append("keep_dims")
        act = getattr(o, "fusedActivationFunction", 0) if o is not None else 0
        if _ACTIVATION.get(act):
            parts.append(_ACTIVATION[act])
        shapes = [_as_tuple(sg.tensors[t].shape) for t in outs]
        lines.append("%s -> %s" % (" ".join(parts), ", ".join(str(s) for s in shapes)))
    return lines


def tensor_infos(buf_or_model, subgraph=0):
    """{tensor_index: dict(name, shape, dtype, scales, zero_points,
    quantized_dimension, constant)} from the schema."""
    m = buf_or_model
    if not isinstance(m, schema_fb.ModelT):
        m = read_model(m)
    out = {}
    for k, t in enumerate(m.subgraphs[subgraph].tensors):
        q = t.quantization
        buf = m.buffers[t.buffer] if t.buffer < len(m.buffers) else None
        name = t.name.decode() if isinstance(t.name, bytes) else t.name
        out[k] = dict(
            name=name,
            shape=_as_tuple(t.shape),
            dtype=TYPE_NAMES.get(t.type, str(t.type)),
            scales=None if q is None or q.scale is None else np.asarray(q.scale, np.float32),
            zero_points=None
            if q is None or q.zeroPoint is None
            else np.asarray(q.zeroPoint, np.int64),
            quantized_dimension=0 if q is None else int(q.quantizedDimension),
            constant=buf is not None and buf.data is not None and len(buf.data) > 0,
        )
    return out


def prepare_input(x_uint8, details):
    """Model input from a dataset's uint8 array: x / 255 as float32, quantized
    with the input tensor's scale/zero point when the input is int8."""
    x = np.asarray(x_uint8, np.float32) / np.float32(255.0)
    dtype = np.dtype(details["dtype"])
    shape = tuple(int(d) for d in details["shape"])
    x = x.reshape(shape)
    if dtype == np.float32:
        return x
    q = details["quantization_parameters"]
    scale = float(q["scales"][0])
    zp = int(q["zero_points"][0])
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zp, info.min, info.max).astype(dtype)


class GoldenModel:
    """A tflite_micro interpreter (kPreserveAllTensors) for one model."""

    def __init__(self, buf, arena_size=None):
        self.buf = bytes(buf)
        self.model = read_model(self.buf)
        sg = self.model.subgraphs[0]
        self.num_tensors = len(sg.tensors)
        self.input_indices = _as_tuple(sg.inputs)
        self.output_indices = _as_tuple(sg.outputs)
        self.interpreter = _tflm.Interpreter.from_bytes(
            self.buf,
            arena_size=arena_size,
            intrepreter_config=_tflm.InterpreterConfig.kPreserveAllTensors,
        )

    def input_details(self, i=0):
        return self.interpreter.get_input_details(i)

    def output_details(self, i=0):
        return self.interpreter.get_output_details(i)

    def _invoke(self, inputs):
        for i, x in enumerate(inputs):
            self.interpreter.set_input(x, i)
        self.interpreter.invoke()

    def run(self, inputs, all_tensors=False):
        """Invokes on `inputs` (one array per model input). Returns output 0, or
        every tensor (see run_all) when all_tensors is True."""
        if all_tensors:
            return self.run_all(inputs)
        self._invoke(inputs)
        return np.array(self.interpreter.get_output(0), copy=True)

    def outputs(self):
        return [
            np.array(self.interpreter.get_output(i), copy=True)
            for i in range(len(self.output_indices))
        ]

    def tensor(self, index):
        """Value of tensor `index` after the last invoke (a copy)."""
        t = self.interpreter.GetTensor(int(index), 0)
        data = t["tensor_data"] if isinstance(t, dict) else t
        return np.array(data, copy=True)

    def run_all(self, inputs):
        """Invokes on `inputs`; returns {tensor_index: np.ndarray} for every
        tensor of subgraph 0 (constants, inputs, intermediates, outputs)."""
        self._invoke(inputs)
        return {k: self.tensor(k) for k in range(self.num_tensors)}


def run_model(buf, inputs):
    """One-shot: loads `buf` into tflite_micro, runs `inputs`, returns
    {tensor_index: np.ndarray} of every tensor after invoke."""
    return GoldenModel(buf).run_all(inputs)
