"""A new classifier head on an int8 .tflite, in pure Python (no TensorFlow).

    model, head = new_head.replace_head(model_bytes, x, y, num_classes=10)

The classifier is the FULLY_CONNECTED or 1x1 CONV_2D that computes the
logits (the input of the final SOFTMAX, else graph output 0), possibly
through RESHAPE / SQUEEZE. It gets `num_classes` output channels:

* weights [num_classes, depth] (FULLY_CONNECTED) or [num_classes, 1, 1,
  depth] (CONV_2D): a seeded normal init with stddev INIT_STDDEV,
  quantized symmetrically (zero point 0) with the scale the head will need
  once trained (below); per-channel when the old head's weights were
  (quantized dimension 0), else per-tensor;
* bias: int32 zeros, scale = feature scale * weight scale (per channel);
* logits: int8 scale and zero point calibrated on the user's data.

Why calibrate for a TRAINED head (as pipeline/heads.py does with QAT): the
trainer never changes a scale, so ranges fitted to the tiny init would pin
trained weights at +-127 at once and cap the logits near +-1. So the
features of the given samples (the classifier's input, from
tflm_training.Interpreter with preserve_all_tensors) fit a float linear
probe (softmax regression, numpy), and the weight scale is WEIGHT_MARGIN x
the probe's largest |weight| / 127, the logits' range LOGIT_MARGIN x the
probe's logit range (with 0). The probe only sets ranges; the device
trains the head from the small init.

Every tensor after the classifier whose shape holds the class count (the
SOFTMAX, RESHAPE, SQUEEZE, QUANTIZE or DEQUANTIZE outputs, the graph
output) gets the new count, and so do a RESHAPE's shape tensor and its
new_shape option. The file is rewritten with tflite_writer: every other
table and buffer stays byte for byte.
"""

import dataclasses
import struct

import numpy as np

from tflm_training import plan as plan_module
from tflm_training import tflite_graph as tg
from tflm_training import tflite_writer as tw
from tflm_training.errors import UnsupportedModelError
from tflm_training.interpreter import Interpreter

INIT_STDDEV = 0.05
WEIGHT_MARGIN = 2.0
LOGIT_MARGIN = 1.5
PROBE_L2 = 1e-3
PROBE_STEPS = 300
RESHAPE, SQUEEZE, QUANTIZE, DEQUANTIZE = 22, 43, 114, 6
# Operators between the classifier and the graph output that keep the class axis.
FOLLOWERS = (tg.SOFTMAX, RESHAPE, SQUEEZE, QUANTIZE, DEQUANTIZE)
_SHAPE_ONLY = (RESHAPE, SQUEEZE)  # may sit between the classifier and the logits


class NoClassifierError(UnsupportedModelError):
    """The model has no classifier this module can replace."""


@dataclasses.dataclass
class NewHead:
    operator: int  # the classifier's operator index
    operator_name: str
    old_classes: int
    num_classes: int
    depth: int  # features per sample
    weight_scales: tuple
    logits_scale: float
    logits_zero_point: int
    samples: int  # calibration samples
    probe_accuracy: float  # the float probe's accuracy on them

    def describe(self):
        return (
            f"new head: {self.old_classes} -> {self.num_classes} classes (operator "
            f"{self.operator} {self.operator_name}, {self.depth} features; ranges "
            f"calibrated on {self.samples} training samples, linear probe accuracy "
            f"{self.probe_accuracy:.3f})"
        )


def find_classifier(model_bytes):
    """(graph, classifier operator index): the FULLY_CONNECTED or 1x1 CONV_2D
    computing the logits; NoClassifierError with what was found instead."""
    graph = tg.read_graph(model_bytes)
    tensor = plan_module.find_logits(graph)
    producer = graph.producer(tensor)
    while producer is not None and graph.operators[producer].builtin_code in _SHAPE_ONLY:
        tensor = graph.operators[producer].inputs[0]
        producer = graph.producer(tensor)
    if producer is None:
        raise NoClassifierError(
            f"no operator computes the logits (tensor {tensor}), so there "
            "is no classifier to replace"
        )
    op = graph.operators[producer]
    weights = graph.tensors[op.inputs[1]] if len(op.inputs) > 1 else None
    pointwise = (
        op.builtin_code == tg.CONV_2D
        and weights is not None
        and len(weights.shape) == 4
        and tuple(weights.shape[1:3]) == (1, 1)
    )
    if op.builtin_code != tg.FULLY_CONNECTED and not pointwise:
        what = "a CONV_2D with a larger kernel" if op.builtin_code == tg.CONV_2D else op.name
        raise NoClassifierError(
            f"the logits are computed by operator {producer} ({what}), not "
            "by a FULLY_CONNECTED or 1x1 CONV_2D classifier, so there is no "
            "head to replace"
        )
    if not weights.is_constant or weights.type != tg.INT8:
        raise NoClassifierError(
            f"the classifier (operator {producer} {op.name}) has no constant int8 weights"
        )
    if graph.tensors[op.outputs[0]].num_elements != weights.shape[0]:
        raise NoClassifierError(
            f"the classifier (operator {producer} {op.name}) computes "
            f"{graph.tensors[op.outputs[0]].num_elements} values per sample, "
            f"not one per class ({weights.shape[0]}): it is not a head"
        )
    return graph, producer


def _followers(graph, classifier):
    """(class-axis tensors after the classifier, operators computing them)."""
    tensors, ops = {graph.operators[classifier].outputs[0]}, []
    for op in graph.operators[classifier + 1 :]:
        if not tensors & set(op.inputs):
            continue
        if op.builtin_code not in FOLLOWERS or op.inputs[0] not in tensors:
            raise NoClassifierError(
                f"operator {op.index} ({op.name}) uses the classifier's "
                "output; only SOFTMAX, RESHAPE, SQUEEZE, QUANTIZE and "
                "DEQUANTIZE may follow a head that is replaced"
            )
        tensors.update(op.outputs)
        ops.append(op.index)
    return tensors, ops


def _with_classes(dims, old, new):
    """dims with the last entry equal to `old` set to `new`."""
    dims = list(dims)
    for i in reversed(range(len(dims))):
        if dims[i] == old:
            dims[i] = new
            return dims
    raise NoClassifierError(
        f"a tensor after the classifier has shape {tuple(dims)}, with no axis of the {old} classes"
    )


def features(model_bytes, graph, classifier, x):
    """The classifier's float inputs for samples x (N, *input shape)."""
    op = graph.operators[classifier]
    feature = graph.tensors[op.inputs[0]]
    if feature.type != tg.INT8 or not feature.scales:
        raise NoClassifierError("the classifier's input is not a quantized int8 tensor")
    interpreter = Interpreter.from_bytes(model_bytes, preserve_all_tensors=True)
    rows = []
    for sample in x:
        interpreter.set_input(sample[None], 0)
        interpreter.invoke()
        rows.append(interpreter.get_tensor(feature.index).reshape(-1))
    q = np.stack(rows).astype(np.float32)
    return (q - feature.zero_points[0]) * np.float32(feature.scales[0])


def fit_probe(f, y, num_classes, steps=PROBE_STEPS, l2=PROBE_L2):
    """Softmax regression by full-batch gradient descent: (W [C, D], b [C])."""
    f = f.astype(np.float64)
    n, depth = f.shape
    w, b = np.zeros((num_classes, depth)), np.zeros(num_classes)
    onehot = np.eye(num_classes)[y]
    # Step 1/L, L bounding the loss's curvature.
    rate = 1.0 / (0.5 * (np.linalg.norm(f, 2) ** 2 / n + 1.0) + l2)
    for _ in range(steps):
        z = f @ w.T + b
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        g = (p - onehot) / n
        w -= rate * (g.T @ f + l2 * w)
        b -= rate * g.sum(axis=0)
    return w, b


def replace_head(model_bytes, x, y, num_classes, seed=0):
    """(new model bytes, NewHead). x: samples in the model input's dtype and
    shape (N, ...), y: their labels 0..num_classes-1, for calibration."""
    model_bytes = bytes(model_bytes)
    if num_classes < 2:
        raise UnsupportedModelError(f"a classifier needs at least 2 classes, not {num_classes}")
    graph, classifier = find_classifier(model_bytes)
    op = graph.operators[classifier]
    weights = graph.tensors[op.inputs[1]]
    old_classes, depth = weights.shape[0], weights.num_elements // weights.shape[0]
    followers, follower_ops = _followers(graph, classifier)
    f = features(model_bytes, graph, classifier, x)
    if f.shape[1] != depth:
        raise NoClassifierError(
            f"the classifier reads {f.shape[1]} features per sample but its weights have {depth}"
        )
    y = np.asarray(y, np.int64)
    w_probe, b_probe = fit_probe(f, y, num_classes)
    logits = f @ w_probe.T + b_probe
    accuracy = float(np.mean(np.argmax(logits, axis=1) == y))

    per_channel = len(weights.scales) > 1
    largest = np.abs(w_probe).max(axis=1) if per_channel else np.abs(w_probe).max().reshape(1)
    w_scales = np.maximum(WEIGHT_MARGIN * largest / 127.0, 1e-6).astype(np.float32)
    init = np.random.default_rng(seed).normal(0.0, INIT_STDDEV, (num_classes, depth))
    q_weights = np.clip(
        np.round(init / (w_scales[:, None] if per_channel else w_scales[0])), -127, 127
    ).astype(np.int8)
    f_scale = np.float32(graph.tensors[op.inputs[0]].scales[0])
    low = LOGIT_MARGIN * min(float(logits.min()), 0.0)
    high = max(LOGIT_MARGIN * max(float(logits.max()), 0.0), low + 1e-3)
    l_scale = np.float32((high - low) / 255.0)
    l_zero = int(np.clip(np.round(-128 - low / l_scale), -128, 127))

    head = NewHead(
        classifier,
        op.name,
        old_classes,
        num_classes,
        depth,
        tuple(float(s) for s in w_scales),
        float(l_scale),
        l_zero,
        len(y),
        accuracy,
    )
    w_shape = (
        [num_classes, depth]
        if op.builtin_code == tg.FULLY_CONNECTED
        else [num_classes, 1, 1, depth]
    )
    bias = op.inputs[2] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
    return _rewrite(
        model_bytes,
        graph,
        op,
        followers,
        follower_ops,
        old_classes,
        num_classes,
        (w_shape, q_weights, w_scales),
        None if bias is None else (bias, w_scales * f_scale),
        (l_scale, l_zero),
    ), head


def _rewrite(model_bytes, graph, op, followers, follower_ops, old, new, weights, bias, logits):
    original = tw.Original(model_bytes)
    r, b = original.reader, tw.Builder(model_bytes)
    new_buffers = []  # Buffer table references, appended after the old ones

    def buffer(data):
        new_buffers.append(b.table({0: (tw.OFFSET, b.vector("B", data, align=16))}))
        return len(original.buffers) + len(new_buffers) - 1

    def quantization(scales, zero_points):
        return b.table(
            {
                2: (tw.OFFSET, b.vector("f", [float(s) for s in scales])),
                3: (tw.OFFSET, b.vector("q", [int(z) for z in zero_points])),
                6: ("i", 0),
            }
        )

    def tensor(index, shape=None, buffer_index=None, quant=None):
        table = original.tensors[index]
        fields = original.fields(table, tw.TENSOR, "Tensor")
        if shape is not None:
            fields[0] = (tw.OFFSET, b.vector("i", shape))
            if 7 in fields:  # shape_signature: the same axis
                signature = r.numbers(table, 7, "<i")
                fields[7] = (tw.OFFSET, b.vector("i", _with_classes(signature, old, new)))
        if buffer_index is not None:
            fields[2] = ("I", buffer_index)
        if quant is not None:
            fields[4] = (tw.OFFSET, quant)
        return b.table(fields)

    changed = {}
    w_shape, q_weights, w_scales = weights
    changed[op.inputs[1]] = tensor(
        op.inputs[1],
        w_shape,
        buffer(q_weights.tobytes()),
        quantization(w_scales, [0] * len(w_scales)),
    )
    if bias is not None:
        index, scales = bias
        changed[index] = tensor(
            index, [new], buffer(bytes(4 * new)), quantization(scales, [0] * len(scales))
        )
    logits_tensor = op.outputs[0]
    for index in sorted(followers):
        dims = _with_classes(graph.tensors[index].shape, old, new)
        changed[index] = tensor(
            index,
            dims,
            quant=quantization([logits[0]], [logits[1]]) if index == logits_tensor else None,
        )
    operators = {}
    for index in follower_ops:
        if graph.operators[index].builtin_code == RESHAPE:
            operators[index] = _reshape(
                original, b, graph, index, old, new, buffer, tensor, changed
            )

    subgraph = original.fields(original.subgraph, tw.SUBGRAPH, "SubGraph")
    subgraph[0] = (
        tw.OFFSET,
        b.offsets([changed.get(i, original.ref(t)) for i, t in enumerate(original.tensors)]),
    )
    if operators:
        subgraph[3] = (
            tw.OFFSET,
            b.offsets(
                [operators.get(i, original.ref(t)) for i, t in enumerate(original.operators)]
            ),
        )
    subgraph_ref = b.table(subgraph)
    model = original.fields(original.model, tw.MODEL, "Model")
    model[2] = (tw.OFFSET, b.offsets([subgraph_ref]))
    model[4] = (tw.OFFSET, b.offsets([original.ref(t) for t in original.buffers] + new_buffers))
    return b.finish(b.table(model))


def _reshape(original, b, graph, index, old, new, buffer, tensor, changed):
    """A RESHAPE after the classifier: its shape tensor and new_shape option
    with the new class count; returns its new Operator table."""
    op = graph.operators[index]
    if len(op.inputs) > 1 and op.inputs[1] >= 0:
        shape = graph.tensors[op.inputs[1]]
        if shape.is_constant:
            if shape.type != tg.INT32:
                raise NoClassifierError(
                    f"RESHAPE operator {index} has a shape tensor that is not int32"
                )
            dims = struct.unpack_from(
                f"<{shape.num_elements}i", original.reader.data, shape.data_pos
            )
            data = struct.pack(f"<{len(dims)}i", *_with_classes(dims, old, new))
            changed[shape.index] = tensor(shape.index, buffer_index=buffer(data))
    fields = original.fields(original.operators[index], tw.OPERATOR, "Operator")
    kind, options = original.option(index)
    if options is not None and kind != 0:
        dims = original.reader.numbers(options, 0, "<i")
        if dims:
            fields[4] = (
                tw.OFFSET,
                b.table({0: (tw.OFFSET, b.vector("i", _with_classes(dims, old, new)))}),
            )
    return b.table(fields)
