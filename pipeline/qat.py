r"""Quantization-aware training (tfmot, int8 with per-channel weights) and
full-integer conversion to the .tflite files tflm_training runs.

    qat_model = quantize(float_model)                 # checks as it goes
    init_activation_ranges(qat_model, float_model, x_calib)
    ... qat_model.compile(...); qat_model.fit(...) ...
    check_weights_fake_quantized(float_model, qat_model)
    tflite = convert(qat_model, input_shape, x_representative)
    check_converted(tflite)

or all of it at once: `quantization_aware_training(...)`. As a program:
tools/qat.py.

Why the checks: tfmot silently leaves some layers unquantized. A Conv2D,
DepthwiseConv2D or Dense directly followed by a standalone ReLU layer gets
a no-op quantize config, so its weights are never fake-quantized during QAT
and the int8 model differs from what QAT trained. `quantize` and
`check_weights_fake_quantized` find such layers and raise
FakeQuantizationError naming each and saying how to fix the model. tfmot
also starts every activation range at [-6, 6] and moves it with a slow
moving average; `init_activation_ranges` starts them from the float model's
statistics instead, and `set_input_range` pins the input's range to [0, 1]
(inputs are x_uint8 / 255), so the int8 input is exactly x_uint8 - 128.
"""

import sys

import pipeline  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

# isort: split
import numpy as np
import tensorflow as tf
import tensorflow_model_optimization as tfmot
import tf_keras as keras
from tensorflow_model_optimization.python.core.quantization.keras import (
    quantize_layer as tfmot_quantize_layer,
)
from tensorflow_model_optimization.python.core.quantization.keras import (
    quantize_wrapper as tfmot_quantize_wrapper,
)
from tensorflow_model_optimization.python.core.quantization.keras import (
    quantizers as tfmot_quantizers,
)
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
    default_8bit_quantize_configs as tfmot_configs,
)

import tflm_training
from pipeline import data as datasets
from tflm_training import tflite_graph

# tfmot and Keras keep the quantizer state and the layer graph this module
# reads in private attributes.

WEIGHT_LAYERS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)
ACTIVATION_LAYERS = (
    keras.layers.ReLU,
    keras.layers.Activation,
    keras.layers.LeakyReLU,
    keras.layers.PReLU,
    keras.layers.ELU,
    keras.layers.Softmax,
)


class Keras3ModelError(TypeError):
    """The model is a Keras 3 model; tfmot 0.8.1 needs Keras 2 (tf_keras)."""


class FakeQuantizationError(ValueError):
    """A layer's weights are not (or were not) fake-quantized by QAT."""


# --------------------------------------------------------------------------
# Quantizing a model
# --------------------------------------------------------------------------


def require_tf_keras(model):
    """Raises Keras3ModelError unless `model` is a tf_keras (Keras 2) model."""
    if isinstance(model, keras.Model):
        return
    module = type(model).__module__
    if module.split(".")[0] == "keras":
        version = getattr(sys.modules.get("keras"), "__version__", "3")
        raise Keras3ModelError(
            "model %r is a Keras %s model (%s); tfmot 0.8.1 quantizes only "
            "Keras 2 models: build it with `import tf_keras as keras` (or "
            "run with TF_USE_LEGACY_KERAS=1 set before TensorFlow is "
            "imported and use tf.keras)"
            % (getattr(model, "name", "?"), version, type(model).__name__)
        )
    raise TypeError("expected a tf_keras Model, got %s.%s" % (module, type(model).__name__))


def quantize(float_model):
    """tfmot.quantization.keras.quantize_model (default 8-bit scheme: int8,
    per-channel Conv2D weights), after checking the model is Keras 2 and
    then that every weight layer got a real weight quantizer."""
    require_tf_keras(float_model)
    if not isinstance(float_model, keras.Sequential) and not getattr(
        float_model, "_is_graph_network", False
    ):
        raise TypeError(
            "model %r is a subclassed Keras model; tfmot "
            "quantizes only Sequential and functional models" % float_model.name
        )
    problems = lint(float_model)
    if problems:
        raise FakeQuantizationError(_problems_message(float_model, problems))
    qat_model = tfmot.quantization.keras.quantize_model(float_model)
    check_weights_fake_quantized(float_model, qat_model, trained=False)
    return qat_model


def lint(float_model):
    """Problems tfmot would have with the float model, found from its graph
    alone (fast, no quantize_model): each Conv2D / DepthwiseConv2D / Dense
    feeding a standalone activation layer. Returns strings; [] if none."""
    problems = []
    for layer in float_model.layers:
        if (
            isinstance(layer, WEIGHT_LAYERS)
            and _standalone_activation(float_model, layer) is not None
        ):
            problems.append(
                "layer '%s' (%s) %s"
                % (layer.name, type(layer).__name__, _no_op_cause(float_model, layer))
            )
    return problems


def _problems_message(float_model, problems):
    return (
        "%d layer(s) of %r would not be fake-quantized by QAT, so the "
        "int8 model would differ from the trained one:\n  %s"
        % (len(problems), float_model.name, "\n  ".join(problems))
    )


def _wrappers(qat_model):
    return [
        layer
        for layer in qat_model.layers
        if isinstance(layer, tfmot_quantize_wrapper.QuantizeWrapper)
    ]


def _range_variables(wrapper):
    """The [min, max] variable dicts quantizing a wrapper's output: the
    post-activation range of its activation, or its output quantizer's."""
    found = []
    activations = wrapper._quantize_activations
    for act in activations:
        variables = getattr(act, "_post_activation_vars", None)
        if variables:
            found.append(variables)
    if getattr(wrapper, "_output_quantizers", None):
        found.append(wrapper._output_quantizer_vars)
    return found


def init_activation_ranges(qat_model, float_model, x_calib, batch=32):
    """Starts QAT's moving-average activation ranges at calibrated values.

    tfmot initialises every activation range at [-6, 6] and moves it with an
    EMA (decay 0.999), so a QAT of a few hundred steps would convert with
    ranges still dominated by the initial +-6 (zero points far from -128 after
    ReLU). Here every range variable that quantizes a wrapped layer's output
    (post_activation or output quantizer) is set to the mean per-batch min/max
    of the same layer's output in the trained float model -- the fixed point
    the EMA converges to. QAT then refines them. Ranges on the pre-activation
    of softmax (logits) are left to the EMA. Returns how many ranges were set.
    """
    targets = [(w, v) for w in _wrappers(qat_model) for v in _range_variables(w)]
    if not targets:
        return 0
    names = sorted({w.layer.name for w, _ in targets})
    lows, highs = _output_statistics(float_model, names, x_calib, batch)
    for w, v in targets:
        lo = min(float(np.mean(lows[w.layer.name])), 0.0)
        hi = max(float(np.mean(highs[w.layer.name])), 0.0)
        v["min_var"].assign(np.full(v["min_var"].shape, lo, np.float32))
        v["max_var"].assign(np.full(v["max_var"].shape, hi, np.float32))
    return len(targets)


def _output_statistics(float_model, names, x_calib, batch):
    """Per-batch minima and maxima of the named layers' outputs."""
    probe = keras.Model(float_model.inputs, [float_model.get_layer(n).output for n in names])
    lows = {n: [] for n in names}
    highs = {n: [] for n in names}
    for start in range(0, len(x_calib) - batch + 1, batch):
        outputs = probe(x_calib[start : start + batch], training=False)
        if len(names) == 1:
            outputs = [outputs]
        for n, o in zip(names, outputs):
            o = o.numpy()
            lows[n].append(o.min())
            highs[n].append(o.max())
    return lows, highs


def set_input_range(qat_model, low=0.0, high=1.0):
    """Pins the model input's quantization range (tfmot's QuantizeLayer,
    which otherwise tracks the training batches' min/max with a moving
    average). For inputs x_uint8 / 255, [0, 1] makes the int8 input exactly
    x_uint8 - 128 (scale 1/255, zero point -128): lossless, and all the
    device has to do. Returns how many input quantizers were set."""
    count = 0
    for layer in qat_model.layers:
        if isinstance(layer, tfmot_quantize_layer.QuantizeLayer):
            for var in layer.weights:
                if var.name.split(":")[0].endswith("_min"):
                    var.assign(np.full(var.shape, low, np.float32))
                elif var.name.split(":")[0].endswith("_max"):
                    var.assign(np.full(var.shape, high, np.float32))
            count += 1
    return count


# --------------------------------------------------------------------------
# The fake-quantization check
# --------------------------------------------------------------------------


def check_weights_fake_quantized(float_model, qat_model, trained=True):
    """Checks every Conv2D / DepthwiseConv2D / Dense kernel is (and, when
    `trained`, was) fake-quantized; returns one human-readable line per
    layer, or raises FakeQuantizationError naming each failing layer with
    its cause and the fix.

    Per layer: (1) a QuantizeWrapper wraps it with a quantize config that is
    not tfmot's NoOp config; (2) the config gives its kernel a real
    (non-NoOp) quantizer with range variables; (3) with `trained`, those
    variables moved away from their initial +-6 (tfmot's weight quantizers
    write the kernel's current min/max on every training step), i.e. the
    fake-quant op ran in training.
    """
    wrapped = {w.layer.name: w for w in _wrappers(qat_model)}
    lines, problems = [], []
    for layer in float_model.layers:
        if not isinstance(layer, WEIGHT_LAYERS):
            continue
        line, problem = _check_layer(float_model, layer, wrapped.get(layer.name), trained)
        if problem:
            problems.append(problem)
        else:
            lines.append(line)
    if problems:
        raise FakeQuantizationError(_problems_message(float_model, problems))
    return lines


def _check_layer(float_model, layer, wrapper, trained):
    """(line, None) when the layer is fine, else (None, problem)."""
    kind = type(layer).__name__
    where = "layer '%s' (%s)" % (layer.name, kind)
    if wrapper is None:
        return None, "%s is not wrapped by a tfmot QuantizeWrapper" % where
    if isinstance(wrapper.quantize_config, tfmot_configs.NoOpQuantizeConfig):
        return None, "%s %s" % (where, _no_op_cause(float_model, layer))
    kernel_name = "depthwise_kernel" if kind == "DepthwiseConv2D" else "kernel"
    weight_vars = wrapper._weight_vars
    found = [
        (quantizer, variables)
        for weight, quantizer, variables in weight_vars
        if _short_name(weight) == kernel_name
    ]
    if not found:
        return None, "%s: its kernel has no quantizer" % where
    quantizer, variables = found[-1]
    if isinstance(quantizer, tfmot_quantizers.NoQuantizer) or not variables:
        return None, "%s: its kernel quantizer is %s" % (where, type(quantizer).__name__)
    kmin = variables["min_var"].numpy().ravel()
    kmax = variables["max_var"].numpy().ravel()
    if trained and np.all(kmin == -6.0) and np.all(kmax == 6.0):
        return None, (
            "%s: its kernel range is still the initial +-6, so the "
            "fake-quant op never ran in training; train the QAT "
            "model (fit) before converting" % where
        )
    return (
        "%-22s %-16s %s, %d range(s), |w|max %.3f"
        % (
            layer.name,
            kind,
            type(quantizer).__name__,
            kmin.size,
            float(np.max(np.maximum(-kmin, kmax))),
        )
    ), None


def _short_name(weight):
    return weight.name.split("/")[-1].split(":")[0]


def _consumers(model, layer):
    """The layers of `model` that read `layer`'s output."""
    members = {id(member) for member in model.layers}
    nodes = layer._outbound_nodes
    return [node.outbound_layer for node in nodes if id(node.outbound_layer) in members]


def _standalone_activation(model, layer):
    """The standalone activation layer that alone reads `layer`'s output
    (the pattern tfmot fuses without quantizing the weights), or None."""
    consumers = _consumers(model, layer)
    if len(consumers) == 1 and isinstance(consumers[0], ACTIVATION_LAYERS):
        return consumers[0]
    return None


def _no_op_cause(float_model, layer):
    """Why tfmot gives `layer` a no-op config, and the fix (a phrase that
    follows the layer's name)."""
    act = _standalone_activation(float_model, layer)
    if act is None:
        consumers = _consumers(float_model, layer)
        return (
            "got a no-op quantize config from tfmot, so its weights are "
            "NOT fake-quantized during QAT (it feeds %s); use the "
            "patterns Conv -> BatchNormalization -> ReLU or "
            "activation=" % (", ".join("'%s'" % c.name for c in consumers) or "nothing")
        )
    kind = type(layer).__name__
    if (
        isinstance(act, keras.layers.ReLU)
        and act.max_value is None
        and not act.negative_slope
        and not act.threshold
    ):
        fix = (
            "use activation='relu' on '%s' instead, or put a "
            "BatchNormalization between them (%s -> BatchNormalization "
            "-> ReLU)" % (layer.name, kind)
        )
    else:
        fix = (
            "put a BatchNormalization between them (%s -> "
            "BatchNormalization -> %s); activation= supports only some "
            "activations in tfmot (relu6 is not one)" % (kind, type(act).__name__)
        )
    return (
        "is followed by a standalone %s layer '%s': tfmot then gives "
        "'%s' a no-op quantize config and its weights are NOT "
        "fake-quantized during QAT; %s" % (type(act).__name__, act.name, layer.name, fix)
    )


# --------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------


def quantization_aware_training(
    float_model,
    x,
    y,
    *,
    epochs=2,
    batch_size=32,
    learning_rate=3e-4,
    x_calib=None,
    augment=None,
    input_range=(0.0, 1.0),
    rng=None,
    log=None,
):
    """quantize -> init_activation_ranges -> fit -> set_input_range ->
    check. Returns the trained QAT model.

    x: float inputs, or uint8 when `augment` is given (then each epoch
    trains on augment(x, rng) / 255). x_calib: float calibration inputs
    (default: up to 50 batches of x). input_range: the fixed input range
    (None keeps tfmot's moving average).
    """
    rng = rng or np.random.RandomState(0)
    qat_model = quantize(float_model)
    if x_calib is None:
        rows = rng.permutation(len(x))[: 50 * batch_size]
        x_calib = x[rows] if augment is None else datasets.to_float(x[rows])
    init_activation_ranges(qat_model, float_model, x_calib, batch_size)
    qat_model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    for epoch in range(epochs):
        epoch_x = x if augment is None else datasets.to_float(augment(x, rng))
        history = qat_model.fit(
            epoch_x, y, batch_size=batch_size, epochs=1, shuffle=True, verbose=0
        )
        if log:
            log(
                "QAT epoch %d/%d: loss %.3f, accuracy %.3f"
                % (epoch + 1, epochs, history.history["loss"][-1], history.history["accuracy"][-1])
            )
    if input_range is not None:
        set_input_range(qat_model, *input_range)
    check_weights_fake_quantized(float_model, qat_model)
    return qat_model


# --------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------


def convert(qat_model, input_shape, x_representative, float_io=False):
    """Full-integer conversion (TFLITE_BUILTINS_INT8, batch size 1) with a
    representative dataset of float inputs; int8 input and output unless
    float_io. Returns the .tflite bytes."""
    spec = tf.TensorSpec((1,) + tuple(input_shape), tf.float32)

    @tf.function(input_signature=[spec])
    @tf.autograph.experimental.do_not_convert
    def serve(x):
        return qat_model(x, training=False)

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [serve.get_concrete_function()], qat_model
    )
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]

    def representative():
        for k in range(len(x_representative)):
            yield [x_representative[k : k + 1]]

    converter.representative_dataset = representative
    io_type = tf.float32 if float_io else tf.int8
    converter.inference_input_type = io_type
    converter.inference_output_type = io_type
    return converter.convert()


_TYPE_NAMES = {
    tflite_graph.FLOAT32: "FLOAT32",
    tflite_graph.INT32: "INT32",
    tflite_graph.INT8: "INT8",
}
_WEIGHT_OPS = (tflite_graph.CONV_2D, tflite_graph.DEPTHWISE_CONV_2D, tflite_graph.FULLY_CONNECTED)
_DEQUANTIZE = 6


def _type_name(code):
    return _TYPE_NAMES.get(code, "type %d" % code)


def converted_problems(buf, float_io=False):
    """Why `buf` is not a full-integer model: a list of strings (empty when
    it is): int8 weights and int32 biases, int8 activations, int8 (or with
    float_io, float32) model input and output."""
    graph = tflite_graph.read_graph(bytes(buf))
    tensors = graph.tensors
    problems = []
    for op in graph.operators:
        if op.builtin_code in _WEIGHT_OPS:
            problems += _weight_problems(op, tensors)
        want = tflite_graph.FLOAT32 if op.builtin_code == _DEQUANTIZE else tflite_graph.INT8
        for t in op.outputs:
            if tensors[t].type != want:
                problems.append(
                    "op %d %s: output %d is %s"
                    % (op.index, op.name, t, _type_name(tensors[t].type))
                )
    want = tflite_graph.FLOAT32 if float_io else tflite_graph.INT8
    for kind, index in (("input", graph.inputs[0]), ("output", graph.outputs[0])):
        if tensors[index].type != want:
            problems.append(
                "model %s is %s, expected %s"
                % (kind, _type_name(tensors[index].type), _type_name(want))
            )
    return problems


def _weight_problems(op, tensors):
    problems = []
    if tensors[op.inputs[1]].type != tflite_graph.INT8:
        problems.append(
            "op %d %s: weights %s" % (op.index, op.name, _type_name(tensors[op.inputs[1]].type))
        )
    if (
        len(op.inputs) > 2
        and op.inputs[2] >= 0
        and tensors[op.inputs[2]].type != tflite_graph.INT32
    ):
        problems.append(
            "op %d %s: bias %s" % (op.index, op.name, _type_name(tensors[op.inputs[2]].type))
        )
    return problems


def check_converted(buf, float_io=False):
    """Raises AssertionError unless `buf` is a full-integer model."""
    problems = converted_problems(buf, float_io)
    if problems:
        raise AssertionError("converted model is not full-integer:\n  " + "\n  ".join(problems))


def evaluate_tflite(buf, x_uint8, y):
    """Accuracy of an int8-input .tflite on uint8 samples, run by
    tflm_training (bit-exact with TFLite Micro)."""
    interpreter = tflm_training.Interpreter.from_bytes(bytes(buf))
    details = interpreter.get_input_details(0)
    correct = 0
    for k in range(len(y)):
        interpreter.set_input(quantize_input(x_uint8[k : k + 1], details), 0)
        interpreter.invoke()
        correct += int(np.argmax(interpreter.get_output(0)) == y[k])
    return correct / max(1, len(y))


def quantize_input(x_uint8, details):
    """uint8 samples as the model input: x / 255 quantized with the input
    tensor's scale and zero point (float32 inputs are returned as is)."""
    x = datasets.to_float(x_uint8).reshape(details["shape"])
    if np.dtype(details["dtype"]) == np.float32:
        return x
    q = details["quantization_parameters"]
    scale, zero_point = float(q["scales"][0]), int(q["zero_points"][0])
    return np.clip(np.round(x / scale) + zero_point, -128, 127).astype(np.int8)
