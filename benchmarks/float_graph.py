"""The float32 TensorFlow model equivalent to an int8 .tflite file, for the
training benchmark's TensorFlow reference (benchmarks/tf_step.py).

Every int8 / int32 constant is dequantized (per channel where the file
says so) and the weights and biases of CONV_2D, DEPTHWISE_CONV_2D and
FULLY_CONNECTED become tf.Variables, stored in TensorFlow's layout. The
forward pass runs the model's operators in order with tf.nn ops, up to the
tensor the final SOFTMAX reads (the logits); QUANTIZE and DEQUANTIZE are
identities. Fused activations are applied in float, so the graph computes
what the int8 model approximates (no fake quantization).
"""

import numpy as np
import tensorflow as tf

from benchmarks import models
from tflm_training import plan as tt_plan
from tflm_training import tflite_graph

TRAINABLE = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
_PADDING = {0: "SAME", 1: "VALID"}
_ACTIVATIONS = {
    0: lambda x: x,
    1: tf.nn.relu,
    2: lambda x: tf.clip_by_value(x, -1.0, 1.0),
    3: tf.nn.relu6,
    4: tf.tanh,
}
_INT_TYPES = {2: np.int32, 4: np.int64}  # TensorType INT32, INT64


class UnsupportedModel(ValueError):
    """The model has an operator or option this graph builder lacks."""


def _activation(options):
    code = getattr(options, "fusedActivationFunction", 0) if options else 0
    if code not in _ACTIVATIONS:
        raise UnsupportedModel(f"fused activation {code}")
    return _ACTIVATIONS[code]


def _buffer_bytes(model, tensor):
    data = model.buffers[tensor.buffer].data
    if data is None or len(data) == 0:
        return None
    return np.asarray(data, dtype=np.uint8).tobytes()


def _dtype(tensor):
    if tensor.type == tflite_graph.INT8:
        return np.int8
    if tensor.type == tflite_graph.FLOAT32:
        return np.float32
    if tensor.type in _INT_TYPES:
        return _INT_TYPES[tensor.type]
    raise UnsupportedModel(f"constant of tensor type {tensor.type}")


def raw_constant(model, tensor):
    """A constant tensor's stored values, shaped; None if not constant."""
    data = _buffer_bytes(model, tensor)
    if data is None:
        return None
    values = np.frombuffer(data, dtype=_dtype(tensor))
    return values.reshape(tuple(tensor.shape) if tensor.shape is not None else values.shape)


def real_constant(model, tensor):
    """A constant's real value (float32): scale * (q - zero point), per
    channel along quantizedDimension when there are several scales."""
    values = raw_constant(model, tensor)
    quant = tensor.quantization
    if values.dtype == np.float32 or quant is None or quant.scale is None:
        return values.astype(np.float32)
    scales = np.asarray(quant.scale, dtype=np.float64)
    zeros = np.asarray(quant.zeroPoint if quant.zeroPoint is not None else [0], dtype=np.float64)
    if scales.size > 1:
        shape = [1] * values.ndim
        shape[quant.quantizedDimension] = -1
        scales = scales.reshape(shape)
        zeros = zeros.reshape(shape) if zeros.size > 1 else zeros
    return (scales * (values.astype(np.float64) - zeros)).astype(np.float32)


def _tf_layout(name, weights, input_channels):
    """TFLite weights in the layout tf.nn wants."""
    if name == "CONV_2D":  # [O, KH, KW, I] -> [KH, KW, I, O]
        if weights.shape[3] != input_channels:
            raise UnsupportedModel("grouped CONV_2D")
        return np.transpose(weights, (1, 2, 3, 0))
    if name == "DEPTHWISE_CONV_2D":  # [1, KH, KW, C*M] -> [KH, KW, C, M]
        _, height, width, channels = weights.shape
        return weights.reshape(height, width, input_channels, channels // input_channels)
    return np.transpose(weights)  # FULLY_CONNECTED [U, I] -> [I, U]


def _conv_2d(node, x, w, b=None):
    o = node.options
    y = tf.nn.conv2d(
        x,
        w,
        strides=[1, o.strideH, o.strideW, 1],
        padding=_PADDING[o.padding],
        dilations=[1, o.dilationHFactor, o.dilationWFactor, 1],
    )
    return _activation(o)(y if b is None else y + b)


def _depthwise_conv_2d(node, x, w, b=None):
    o = node.options
    if o.strideH != o.strideW:
        raise UnsupportedModel("DEPTHWISE_CONV_2D with unequal strides")
    y = tf.nn.depthwise_conv2d(
        x,
        w,
        strides=[1, o.strideH, o.strideW, 1],
        padding=_PADDING[o.padding],
        dilations=[o.dilationHFactor, o.dilationWFactor],
    )
    return _activation(o)(y if b is None else y + b)


def _fully_connected(node, x, w, b=None):
    y = tf.matmul(tf.reshape(x, [-1, w.shape[0]]), w)
    y = y if b is None else y + b
    return _activation(node.options)(tf.reshape(y, node.output_shape))


def _pool(function):
    def pool(node, x):
        o = node.options
        y = function(
            x,
            ksize=[o.filterHeight, o.filterWidth],
            strides=[o.strideH, o.strideW],
            padding=_PADDING[o.padding],
        )
        return _activation(o)(y)

    return pool


def _mean(node, x, axis):
    return tf.reduce_mean(
        x, axis=node.constant(1).reshape(-1).tolist(), keepdims=bool(node.options.keepDims)
    )


def _reshape(node, x, *unused):
    return tf.reshape(x, node.output_shape)


def _pad(node, x, *unused):
    value = 0.0
    if len(node.inputs) > 2 and node.inputs[2] >= 0:
        value = float(node.real_constant(2).reshape(-1)[0])
    return tf.pad(x, node.constant(1).tolist(), constant_values=value)


def _concatenation(node, *inputs):
    return _activation(node.options)(tf.concat(inputs, node.options.axis))


def _binary(function):
    def binary(node, a, b):
        return _activation(node.options)(function(a, b))

    return binary


def _identity(node, x):
    return x


def _hard_swish(node, x):
    return x * tf.nn.relu6(x + 3.0) / 6.0


_OPS = {
    "CONV_2D": _conv_2d,
    "DEPTHWISE_CONV_2D": _depthwise_conv_2d,
    "FULLY_CONNECTED": _fully_connected,
    "AVERAGE_POOL_2D": _pool(tf.nn.avg_pool2d),
    "MAX_POOL_2D": _pool(tf.nn.max_pool2d),
    "MEAN": _mean,
    "RESHAPE": _reshape,
    "SQUEEZE": _reshape,
    "EXPAND_DIMS": _reshape,
    "PAD": _pad,
    "PADV2": _pad,
    "CONCATENATION": _concatenation,
    "ADD": _binary(tf.add),
    "SUB": _binary(tf.subtract),
    "MUL": _binary(tf.multiply),
    "QUANTIZE": _identity,
    "DEQUANTIZE": _identity,
    "RELU": lambda node, x: tf.nn.relu(x),
    "RELU6": lambda node, x: tf.nn.relu6(x),
    "LOGISTIC": lambda node, x: tf.sigmoid(x),
    "TANH": lambda node, x: tf.tanh(x),
    "HARD_SWISH": _hard_swish,
}
# Inputs that are operator settings, not data (read with node.constant).
_SETTING_INPUTS = {"MEAN": (1,), "RESHAPE": (1,), "EXPAND_DIMS": (1,), "PAD": (1,), "PADV2": (1, 2)}


class _Node:
    """One operator of the model, with what its function needs."""

    def __init__(self, model, op):
        self.model = model
        self.name = models.op_name(model, op)
        self.options = op.builtinOptions
        self.inputs = [int(i) for i in op.inputs]
        self.output = int(op.outputs[0])
        tensors = model.subgraphs[0].tensors
        self.output_shape = [int(d) for d in tensors[self.output].shape]

    def tensor(self, position):
        return self.model.subgraphs[0].tensors[self.inputs[position]]

    def constant(self, position):
        return raw_constant(self.model, self.tensor(position))

    def real_constant(self, position):
        return real_constant(self.model, self.tensor(position))


class FloatModel:
    """The model's float graph; `variables` are the trainable parameters
    (weights and biases of every CONV_2D, DEPTHWISE_CONV_2D and
    FULLY_CONNECTED), everything else constant."""

    def __init__(self, buffer):
        self._model = models.read_model(buffer)
        subgraph = self._model.subgraphs[0]
        graph = tflite_graph.read_graph(buffer)
        self.logits_tensor = tt_plan.find_logits(graph)
        last = graph.producer(self.logits_tensor)
        self.input_tensor = int(subgraph.inputs[0])
        self._nodes = [_Node(self._model, op) for op in subgraph.operators[: last + 1]]
        unsupported = sorted({n.name for n in self._nodes} - set(_OPS))
        if unsupported:
            raise UnsupportedModel(f"operators {', '.join(unsupported)}")
        self._values = {}
        self.variables = []
        for node in self._nodes:
            self._add_parameters(node)

    def _add_parameters(self, node):
        if node.name not in TRAINABLE:
            return
        input_channels = node.tensor(0).shape[-1]
        weights = _tf_layout(node.name, node.real_constant(1), input_channels)
        self._variable(node.inputs[1], weights)
        if len(node.inputs) > 2 and node.inputs[2] >= 0:
            self._variable(node.inputs[2], node.real_constant(2))

    def _variable(self, index, value):
        # tf.constant may alias a numpy array's memory instead of copying
        # it (when the array happens to be aligned enough), and a variable
        # may adopt that buffer: TensorFlow's allocator would then not see
        # the weights. The result of an op always comes from the allocator.
        initial = tf.add(tf.constant(value), 0.0)
        variable = tf.Variable(initial, name=f"t{index}")
        self._values[index] = variable
        self.variables.append(variable)

    def _value(self, index, computed):
        if index in computed:
            return computed[index]
        if index not in self._values:
            tensor = self._model.subgraphs[0].tensors[index]
            self._values[index] = tf.constant(real_constant(self._model, tensor))
        return self._values[index]

    def _inputs(self, node, computed):
        settings = _SETTING_INPUTS.get(node.name, ())
        return [
            None if index < 0 or position in settings else self._value(index, computed)
            for position, index in enumerate(node.inputs)
        ]

    def logits(self, x):
        """The logits for input `x` (real-valued, the input's shape)."""
        computed = {self.input_tensor: x}
        for node in self._nodes:
            inputs = self._inputs(node, computed)
            computed[node.output] = _OPS[node.name](node, *inputs)
        return tf.reshape(computed[self.logits_tensor], [1, -1])

    def loss(self, x, label):
        """Softmax cross-entropy of one sample."""
        return tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=tf.reshape(label, [1]), logits=self.logits(x)
            )
        )

    def parameter_bytes(self):
        return sum(int(np.prod(v.shape)) * 4 for v in self.variables)

    def activation_bytes(self):
        """float32 bytes of every operator output up to the logits."""
        tensors = self._model.subgraphs[0].tensors
        return sum(4 * int(np.prod(tensors[n.output].shape)) for n in self._nodes)
