"""A new classifier head for a downstream task, quantized for the head it
will become through on-device training.

Float models:

    down = replace_head(upstream_model, num_classes=10)

QAT models (the usual path: the upstream model was quantization-aware
trained, the device trains the new head):

    qat_down, report = new_head_qat(float_up, qat_up, 10, x_calib, y_calib)
    tflite = qat.convert(qat_down, input_shape, x_representative)
    check_head_quantization(describe_head(tflite), report)

Why the calibration: the trainer (quantization-aware scaling, QAS) never
changes a scale, so the int8 head must be quantized for a TRAINED head, not
for its tiny initial weights. A head quantized from its init would get a
weight scale ~50x too fine (trained weights saturate at +-127 almost at
once) and a logits range of about +-1 (the loss could never see a confident
prediction). So a float linear probe (softmax regression) is fitted on the
backbone's features of a calibration split, and the head's fake-quant
ranges are set from it: weights +-weight_margin x the probe's largest
|weight| (per tensor, symmetric, as tfmot quantizes Dense), logits
logit_margin x the probe's logit range. The int32 bias has scale
s_feature * s_weight, which has room for any trained value.
"""

import numpy as np
import tf_keras as keras
from tensorflow_model_optimization.python.core.quantization.keras import (
    quantize_layer as tfmot_quantize_layer,
)

from pipeline import qat as qat_lib
from tflm_training import tflite_graph

L = keras.layers

HEAD_NAME = "head"
HEAD_INIT_STDDEV = 0.05
WEIGHT_MARGIN = 2.0
LOGIT_MARGIN = 1.5
PROBE_L2 = 1e-3
PROBE_EPOCHS = 40


# --------------------------------------------------------------------------
# Float models
# --------------------------------------------------------------------------


def feature_layer_name(model, feature_layer=None):
    """The layer whose output the classifier reads: `feature_layer`, else
    the input of the model's last Dense, past any Dropout."""
    if feature_layer is not None:
        model.get_layer(feature_layer)  # ValueError when absent
        return feature_layer
    dense = [layer for layer in model.layers if isinstance(layer, L.Dense)]
    if not dense:
        raise ValueError("model %r has no Dense classifier; name the feature layer" % model.name)
    layer = dense[-1]
    while True:
        node = layer._inbound_nodes[0]
        inbound = node.inbound_layers
        if isinstance(inbound, list):
            if len(inbound) != 1:
                raise ValueError(
                    "cannot find the features of %r: %r has "
                    "%d inputs" % (model.name, layer.name, len(inbound))
                )
            inbound = inbound[0]
        if not isinstance(inbound, L.Dropout):
            return inbound.name
        layer = inbound


def replace_head(
    model,
    num_classes,
    feature_layer=None,
    head_name=HEAD_NAME,
    init_stddev=HEAD_INIT_STDDEV,
    activation="softmax",
    seed=None,
):
    """A copy of `model` (own weights, same layer names) up to its features,
    with a new Dense(num_classes) head named `head_name` whose kernel AND
    bias are drawn from RandomNormal(init_stddev). (An all-zero bias would
    be folded away by the converter, leaving a FULLY_CONNECTED without a
    bias tensor the trainer could update.) seed: of the two initializers
    (the bias uses seed + 1)."""
    qat_lib.require_tf_keras(model)
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    features = copy.get_layer(feature_layer_name(model, feature_layer)).output
    head = L.Dense(
        num_classes,
        activation=activation,
        name=head_name,
        kernel_initializer=head_initializer(init_stddev, seed),
        bias_initializer=head_initializer(init_stddev, None if seed is None else seed + 1),
    )
    return keras.Model(copy.inputs, head(features), name="%s_%d" % (model.name, num_classes))


def head_initializer(stddev=HEAD_INIT_STDDEV, seed=None):
    """RandomNormal for a new head's kernel or bias: one instance each."""
    return keras.initializers.RandomNormal(stddev=stddev, seed=seed)


# --------------------------------------------------------------------------
# QAT models
# --------------------------------------------------------------------------


def _source_layer(source, layer):
    if isinstance(layer, tfmot_quantize_layer.QuantizeLayer):
        return next(
            other
            for other in source.layers
            if isinstance(other, tfmot_quantize_layer.QuantizeLayer)
        )
    return source.get_layer(layer.name)


def transfer_qat_weights(source_qat, target_qat, head_name=HEAD_NAME):
    """Copies every weight of the source QAT model, with its quantizer state
    (weight ranges, activation ranges, the input quantizer), into the
    layers of the target QAT model of the same name, except the head.
    Returns how many layers were copied."""
    copied = 0
    for layer in target_qat.layers:
        if not layer.weights or layer.name == "quant_" + head_name:
            continue
        layer.set_weights(_source_layer(source_qat, layer).get_weights())
        copied += 1
    return copied


def feature_model(qat_model, feature_layer="features"):
    """The QAT model up to its (fake-quantized) features."""
    names = {layer.name for layer in qat_model.layers}
    name = "quant_" + feature_layer
    return keras.Model(
        qat_model.inputs, qat_model.get_layer(name if name in names else feature_layer).output
    )


def fit_linear_probe(
    features,
    labels,
    num_classes,
    seed=0,
    l2=PROBE_L2,
    epochs=PROBE_EPOCHS,
    learning_rate=1e-2,
    batch_size=32,
):
    """Float softmax regression on frozen features (Adam; by default a mild
    L2, as an early-stopped trained head would be; l2=0 for none). Returns
    (kernel, bias)."""
    keras.utils.set_random_seed(seed)
    probe = keras.Sequential(
        [
            keras.Input(features.shape[1:]),
            L.Dense(
                num_classes,
                activation="softmax",
                kernel_regularizer=keras.regularizers.l2(l2) if l2 else None,
            ),
        ]
    )
    probe.compile(
        optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy"
    )
    probe.fit(features, labels, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0)
    kernel, bias = probe.layers[-1].get_weights()
    return kernel, bias


def linear_accuracy(kernel, bias, features, labels):
    return float(np.mean(np.argmax(features @ kernel + bias, 1) == labels))


def head_ranges(kernel, bias, features, weight_margin=WEIGHT_MARGIN, logit_margin=LOGIT_MARGIN):
    """(weight_max, logit_min, logit_max, logits) for the int8 head, from a
    trained (probe) head and the calibration features."""
    logits = features @ kernel + bias
    weight_max = weight_margin * float(np.max(np.abs(kernel)))
    logit_min = logit_margin * float(min(logits.min(), 0.0))
    logit_max = logit_margin * float(max(logits.max(), 0.0))
    return weight_max, logit_min, logit_max, logits


def set_head_quantization(qat_model, head_name, weight_max, logit_min, logit_max):
    """Fixes the head's fake-quant ranges: tfmot's Dense kernel quantizer is
    per tensor and symmetric (the converter takes the range from these
    variables); the logits (the Dense output before softmax) are quantized
    by the 'pre_activation' range (or 'post_activation' without softmax).
    Only inference or conversion may follow: training would move them."""
    variables = head_variables(qat_model, head_name)
    act = "pre_activation" if "pre_activation_min" in variables else "post_activation"
    values = {
        "kernel_min": -weight_max,
        "kernel_max": weight_max,
        act + "_min": logit_min,
        act + "_max": logit_max,
    }
    missing = sorted(set(values) - set(variables))
    if missing:
        raise ValueError("head %r has no quantizer variables %s" % (head_name, missing))
    for key, value in values.items():
        var = variables[key]
        var.assign(np.full(var.shape, value, np.float32))


def head_variables(qat_model, head_name=HEAD_NAME):
    """{'kernel', 'bias', 'kernel_min', ...: variable} of a QAT head."""
    wrapper = qat_model.get_layer("quant_" + head_name)
    return {_short_name(v): v for v in wrapper.weights}


def _short_name(variable):
    return variable.name.split("/")[-1].split(":")[0]


def new_head_qat(
    float_model,
    qat_model,
    num_classes,
    x_calib,
    y_calib,
    *,
    feature_layer=None,
    head_name=HEAD_NAME,
    head_init="random",
    init_stddev=HEAD_INIT_STDDEV,
    weight_margin=WEIGHT_MARGIN,
    logit_margin=LOGIT_MARGIN,
    probe_epochs=PROBE_EPOCHS,
    probe_l2=PROBE_L2,
    seed=0,
):
    """The downstream QAT model: the (QAT-trained) backbone of `qat_model`
    with every quantizer range, and a new head with calibrated ranges.

    float_model: the float model `qat_model` was quantized from (it gives
    the architecture). x_calib (float inputs), y_calib: downstream
    calibration data, kept apart from the data the device will train and
    test on. head_init: 'random' (untrained, RandomNormal(init_stddev)) or
    'probe' (the fitted linear probe's weights). Returns (QAT model,
    report dict).
    """
    features_name = feature_layer_name(float_model, feature_layer)
    down = replace_head(float_model, num_classes, features_name, head_name, init_stddev, seed=seed)
    qat_down = qat_lib.quantize(down)
    copied = transfer_qat_weights(qat_model, qat_down, head_name)
    features = feature_model(qat_model, features_name).predict(x_calib, batch_size=256, verbose=0)
    features = features.reshape(len(features), -1)
    kernel, bias = fit_linear_probe(features, y_calib, num_classes, seed, probe_l2, probe_epochs)
    if head_init == "probe":
        variables = head_variables(qat_down, head_name)
        variables["kernel"].assign(kernel)
        variables["bias"].assign(bias)
    elif head_init != "random":
        raise ValueError("head_init must be 'random' or 'probe', got %r" % head_init)
    weight_max, logit_min, logit_max, logits = head_ranges(
        kernel, bias, features, weight_margin, logit_margin
    )
    set_head_quantization(qat_down, head_name, weight_max, logit_min, logit_max)
    return qat_down, {
        "feature_layer": features_name,
        "backbone_layers_copied": copied,
        "head_init": head_init,
        "probe_calibration_accuracy": round(linear_accuracy(kernel, bias, features, y_calib), 4),
        "probe_kernel_abs_max": round(float(np.abs(kernel).max()), 4),
        "probe_logits_calibration": [round(float(logits.min()), 3), round(float(logits.max()), 3)],
        "weight_range": [-weight_max, weight_max],
        "logits_range_set": [logit_min, logit_max],
        "weight_margin": weight_margin,
        "logit_margin": logit_margin,
    }


# --------------------------------------------------------------------------
# The converted head
# --------------------------------------------------------------------------


def _quant(tensor):
    return float(tensor.scales[0]), int(tensor.zero_points[0])


def describe_head(buf):
    """Indices and quantization of the head of a converted model: the last
    FULLY_CONNECTED, the SOFTMAX reading it, the operator before it and the
    last CONV_2D."""
    graph = tflite_graph.read_graph(bytes(buf))
    ops, tensors = graph.operators, graph.tensors
    fc = [op for op in ops if op.builtin_code == tflite_graph.FULLY_CONNECTED]
    if not fc:
        raise ValueError("the model has no FULLY_CONNECTED head")
    fc = fc[-1]
    softmax = [
        op
        for op in ops
        if op.builtin_code == tflite_graph.SOFTMAX and op.inputs[0] == fc.outputs[0]
    ]
    if not softmax:
        raise ValueError("no SOFTMAX reads the head FULLY_CONNECTED output")
    if len(fc.inputs) < 3 or fc.inputs[2] < 0:
        raise ValueError("the head FULLY_CONNECTED has no bias tensor")
    feature_op = ops[graph.producer(fc.inputs[0])]
    convs = [op for op in ops if op.builtin_code == tflite_graph.CONV_2D]
    weights, bias = tensors[fc.inputs[1]], tensors[fc.inputs[2]]
    feature_scale, feature_zp = _quant(tensors[fc.inputs[0]])
    logit_scale, logit_zp = _quant(tensors[fc.outputs[0]])
    return {
        "head_operator_index": fc.index,
        "logits_tensor": fc.outputs[0],
        "logits_scale": logit_scale,
        "logits_zero_point": logit_zp,
        "logits_range": [logit_scale * (-128 - logit_zp), logit_scale * (127 - logit_zp)],
        "output_tensor": softmax[0].outputs[0],
        "feature_operator": "%d %s" % (feature_op.index, feature_op.name),
        "feature_tensor": fc.inputs[0],
        "feature_scale": feature_scale,
        "feature_zero_point": feature_zp,
        "head_weights_tensor": fc.inputs[1],
        "head_weights_shape": list(weights.shape),
        "head_weights_scales": [float(s) for s in weights.scales],
        "head_bias_tensor": fc.inputs[2],
        "head_bias_scales": [float(s) for s in bias.scales],
        "last_conv_operator_index": convs[-1].index if convs else None,
    }


def check_head_quantization(head, report):
    """Raises AssertionError unless the converter kept the ranges set (the
    weight scale exactly, the logits range up to one step of the grid the
    converter nudges it to)."""
    want_w = report["weight_range"][1] / 127.0
    got_w = head["head_weights_scales"]
    want_lo, want_hi = report["logits_range_set"]
    got_lo, got_hi = head["logits_range"]
    step = head["logits_scale"]
    if (
        len(got_w) != 1
        or abs(got_w[0] / want_w - 1) > 1e-3
        or abs(got_lo - want_lo) > 1.01 * step
        or abs(got_hi - want_hi) > 1.01 * step
    ):
        raise AssertionError(
            "converted head quantization differs from the ranges set: "
            "weight scales %s (want %.6f), logits [%.3f, %.3f] (want "
            "[%.3f, %.3f])" % (got_w, want_w, got_lo, got_hi, want_lo, want_hi)
        )
