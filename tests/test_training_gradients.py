"""The trainer's first update equals a float64 numpy reference of the
straight-through backward pass: softmax cross-entropy on the dequantized
logits, each operator's output gradient masked where its int8 output sits
on a clamp (fused activation or saturation), real-valued chain rule, then
QAS SGD (k = round(-lr * dL/dW / s_W)). The int8 activations come from our
runtime with preserve_all_tensors (bit-exact with TFLM).

Besides the FULLY_CONNECTED chain of mlp, a residual variant checks that a
tensor read by two operators (RELU and ADD) gets the sum of both
gradients: the later consumer zeroes the buffer, both add into it."""

import numpy as np
import pytest
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

import model_edits
import training_helpers as th
from tflm_training import Interpreter, Trainer, TrainingPlan, tflite_graph

LR = 0.05


def _residual_mlp():
    """mlp with r = RELU(h2) and a = ADD(h2, r) before the classifier: h2
    (FC2's output) has two consumers. a gets scale 2 s(h2), so a = h2 in
    int8 and the classifier's bias scale stays within TFLM's tolerance."""
    model = model_edits.load("mlp")
    subgraph = model.subgraphs[0]
    h2 = subgraph.operators[2].outputs[0]
    codes = {}
    for code in (schema.BuiltinOperator.RELU, schema.BuiltinOperator.ADD):
        entry = schema.OperatorCodeT()
        entry.builtinCode, entry.deprecatedBuiltinCode, entry.version = code, code, 1
        model.operatorCodes.append(entry)
        codes[code] = len(model.operatorCodes) - 1
    source = subgraph.tensors[h2]
    new = []
    for name, scale in (
        (b"relu", source.quantization.scale[0]),
        (b"residual", 2 * source.quantization.scale[0]),
    ):
        tensor = schema.TensorT()
        tensor.shape, tensor.type, tensor.buffer, tensor.name = list(source.shape), 9, 0, name
        tensor.quantization = schema.QuantizationParametersT()
        tensor.quantization.scale = [scale]
        tensor.quantization.zeroPoint = list(source.quantization.zeroPoint)
        subgraph.tensors.append(tensor)
        new.append(len(subgraph.tensors) - 1)
    relu, add = schema.OperatorT(), schema.OperatorT()
    relu.opcodeIndex, relu.inputs, relu.outputs = codes[schema.BuiltinOperator.RELU], [h2], [new[0]]
    add.opcodeIndex, add.inputs = codes[schema.BuiltinOperator.ADD], [h2, new[0]]
    add.outputs = [new[1]]
    subgraph.operators[3:3] = [relu, add]
    subgraph.operators[5].inputs = [new[1]] + list(subgraph.operators[5].inputs[1:])
    return model_edits.pack(model)


def _real(graph, tensors, index):
    t = graph.tensors[index]
    return t.scales[0] * (tensors[index].astype(np.float64) - t.zero_points[0])


def _passes(q, low, high):
    return ((q > low) & (q < high)).astype(np.float64)


def _reference_grads(model, sample, label):
    """{operator index: (dL/dW, dL/db)} for every FULLY_CONNECTED, by the
    straight-through rules the backward kernels implement."""
    graph = tflite_graph.read_graph(model)
    interpreter = Interpreter(model, preserve_all_tensors=True)
    interpreter.set_input(sample, 0)
    interpreter.invoke()
    tensors = {
        i: interpreter.get_tensor(i)
        for i in range(len(graph.tensors))
        if graph.tensors[i].type != tflite_graph.INT32 or graph.tensors[i].is_constant
    }
    ops = graph.operators
    softmax = ops[-1]
    z = _real(graph, tensors, softmax.inputs[0]).reshape(-1)
    grads = {
        softmax.inputs[0]: (
            np.exp(z - z.max()) / np.exp(z - z.max()).sum() - np.eye(len(z))[label]
        ).reshape(tensors[softmax.inputs[0]].shape)
    }
    result = {}
    for op in reversed(ops[:-1]):
        out = op.outputs[0]
        if out not in grads:
            continue
        q = tensors[out].astype(np.int32)
        zp = graph.tensors[out].zero_points[0]
        if op.builtin_code == tflite_graph.FULLY_CONNECTED:
            g = grads[out] * _passes(q, -128, 127)  # mlp's ReLUs clamp at zp = -128
            weights = graph.tensors[op.inputs[1]]
            w_real = weights.scales[0] * tensors[op.inputs[1]].astype(np.float64)
            x_real = _real(graph, tensors, op.inputs[0]).reshape(g.shape[0], -1)
            result[op.index] = (g.T @ x_real, g.sum(axis=0))
            inputs = {op.inputs[0]: (g @ w_real).reshape(tensors[op.inputs[0]].shape)}
        elif op.builtin_code == 19:  # RELU, same scale in and out
            inputs = {op.inputs[0]: grads[out] * _passes(q, zp, 128)}
        elif op.builtin_code == 0:  # ADD
            g = grads[out] * _passes(q, -128, 127)
            inputs = {op.inputs[0]: g, op.inputs[1]: g}
        else:
            continue  # RESHAPE before the first trained layer: not needed
        for tensor, g in inputs.items():
            grads[tensor] = grads.get(tensor, 0) + g.reshape(tensors[tensor].shape)
    return graph, tensors, result


def _loss(model, sample, label):
    interpreter = Interpreter(model)
    interpreter.set_input(sample, 0)
    interpreter.invoke()
    return -np.log(interpreter.get_output(0).reshape(-1)[label] + 129.0)


def _round(x):
    return np.where(np.abs(x - np.trunc(x)) >= 0.5, np.trunc(x) + np.sign(x), np.trunc(x))


@pytest.mark.parametrize("variant", ["chain", "residual"])
def test_first_update_equals_the_reference_backward_pass(variant):
    model = th.model_bytes("mlp") if variant == "chain" else _residual_mlp()
    classifier = 3 if variant == "chain" else 5
    channels = [0, 2, 3, 7, 11, 20, 31]
    plan = TrainingPlan.for_model(model, {1: [5], 2: channels, classifier: None}, learning_rate=LR)
    x, y = th.quantized_split("mnist", "train", (1, 28, 28, 1), 20)
    # The sample the model finds hardest, so that many weights move.
    worst = max(range(20), key=lambda i: _loss(model, x[i : i + 1], int(y[i])))
    sample, label = x[worst : worst + 1], int(y[worst])
    graph, tensors, grads = _reference_grads(model, sample, label)
    trainer = Trainer(model, plan)
    trainer.train_step(sample, label)

    moved = 0
    for op_index, selected in ((1, [5]), (2, channels), (classifier, range(10))):
        op = graph.operators[op_index]
        weights, bias = (graph.tensors[i] for i in op.inputs[1:3])
        d_w, d_b = grads[op_index]
        want_w = np.clip(tensors[weights.index] + _round(-LR * d_w / weights.scales[0]), -127, 127)
        # The forward adds the int32 bias to an accumulator of scale
        # s_W * s_x, whatever scale the bias tensor declares.
        bias_scale = np.float32(weights.scales[0]) * np.float32(
            graph.tensors[op.inputs[0]].scales[0]
        )
        want_b = tensors[bias.index] + _round(-LR * d_b / bias_scale)
        got_w = trainer.get_tensor(weights.index).astype(np.float64)
        got_b = trainer.get_tensor(bias.index).astype(np.float64)
        rows = list(selected)
        # float32 against float64: a value within rounding of k + 0.5 may
        # land on the other side; nothing else may differ.
        assert np.count_nonzero(got_w[rows] != want_w[rows]) <= 2
        assert np.all(np.abs(got_w[rows] - want_w[rows]) <= 1)
        np.testing.assert_array_equal(got_b[rows], want_b[rows])
        others = [r for r in range(len(got_w)) if r not in rows]
        np.testing.assert_array_equal(got_w[others], tensors[weights.index][others])
        moved += np.count_nonzero(got_w[rows] != tensors[weights.index][rows])
    assert moved > 100
