"""tflm_training.new_head: a fresh classifier on a .tflite, written in pure
Python, runs in tflm_training and tflite_micro alike, trains, and deploys.

The 2-class model is the committed DS-CNN transfer model (10 classes) with
its head cut to its first 2 classes (tests/model_edits.py); the new head
has the 10 classes of FSDD (examples/fsdd*.npz).
"""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import golden
import model_edits
from tflm_training import Interpreter, Trainer, TrainingPlan, new_head
from tflm_training import tflite_graph as tg

REPO = pathlib.Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
EXAMPLES = REPO / "examples"
FC_OPERATOR = 10  # the DS-CNN transfer model's classifier


def _int32(values):
    return np.array(values, np.int32)


def two_class_model():
    """ds_cnn_fsdd with a head of its first 2 classes (weights, bias, logits
    and the softmax output cut to 2)."""
    model = model_edits.load("transfer/ds_cnn_fsdd")
    subgraph = model.subgraphs[0]
    _, op = model_edits.first_operator_with(model, tg.FULLY_CONNECTED)
    weights, bias = subgraph.tensors[op.inputs[1]], subgraph.tensors[op.inputs[2]]
    data = model.buffers[weights.buffer].data
    model.buffers[weights.buffer].data = np.asarray(data, np.uint8)[: 2 * weights.shape[1]]
    model.buffers[bias.buffer].data = np.asarray(model.buffers[bias.buffer].data, np.uint8)[:8]
    weights.shape = _int32([2, weights.shape[1]])
    bias.shape = _int32([2])
    for index in (op.outputs[0], subgraph.outputs[0]):
        subgraph.tensors[index].shape = _int32([1, 2])
    return model_edits.pack(model)


def with_reshape_after_softmax(name):
    """A model whose SOFTMAX output is reshaped to (1, 1, classes) (a shape
    tensor and a new_shape option holding the class count)."""
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    model = model_edits.load(name)
    subgraph = model.subgraphs[0]
    classes = int(subgraph.tensors[subgraph.outputs[0]].shape[-1])
    reshape_code = model_edits.operator_codes(model).index(22)
    buffer = schema.BufferT()
    buffer.data = _int32([1, 1, classes]).view(np.uint8)
    model.buffers.append(buffer)
    shape = schema.TensorT()
    shape.shape, shape.type, shape.buffer, shape.name = (
        _int32([3]),
        2,
        len(model.buffers) - 1,
        b"head_shape",
    )
    old_out = subgraph.tensors[subgraph.outputs[0]]
    out = schema.TensorT()
    out.shape, out.type, out.name = _int32([1, 1, classes]), old_out.type, b"reshaped"
    out.buffer, out.quantization = 0, old_out.quantization
    subgraph.tensors += [shape, out]
    op = schema.OperatorT()
    op.opcodeIndex = reshape_code
    op.inputs = _int32([subgraph.outputs[0], len(subgraph.tensors) - 2])
    op.outputs = _int32([len(subgraph.tensors) - 1])
    op.builtinOptionsType = schema.BuiltinOptions.ReshapeOptions
    op.builtinOptions = schema.ReshapeOptionsT()
    op.builtinOptions.newShape = [1, 1, classes]
    subgraph.operators.append(op)
    subgraph.outputs = _int32([len(subgraph.tensors) - 1])
    return model_edits.pack(model)


def model_inputs(model, x_uint8):
    details = Interpreter.from_bytes(model).get_input_details(0)
    return np.stack([golden.prepare_input(x, details)[0] for x in x_uint8])


@pytest.fixture(scope="module")
def fsdd():
    with np.load(EXAMPLES / "fsdd_train.npz") as train, np.load(EXAMPLES / "fsdd.npz") as test:
        return train["x_train"][::5], train["y_train"][::5], test["x_test"][:20]


@pytest.fixture(scope="module")
def replaced(fsdd):
    two = two_class_model()
    x, y, _ = fsdd
    model, head = new_head.replace_head(two, model_inputs(two, x), y, 10, seed=3)
    return two, model, head


def test_the_two_class_model_is_a_two_class_model():
    model = two_class_model()
    assert Interpreter.from_bytes(model).get_output_details(0)["shape"].tolist() == [1, 2]


@pytest.mark.slow
def test_every_tensor_matches_tflite_micro_on_real_inputs(replaced, fsdd):
    _, model, head = replaced
    assert (head.old_classes, head.num_classes) == (2, 10)
    ours = Interpreter.from_bytes(model, preserve_all_tensors=True)
    reference = golden.GoldenModel(model)
    compared = 0
    for x in model_inputs(model, fsdd[2]):
        ours.set_input(x[None], 0)
        ours.invoke()
        expected = reference.run_all([x[None]])
        for index, value in expected.items():
            try:
                got = ours.get_tensor(index)
            except Exception:  # unused tensors hold no data
                continue
            assert np.array_equal(got.reshape(-1), value.reshape(-1)), index
            compared += 1
        assert ours.get_output(0).shape == (1, 10)
    assert compared > 20 * 30


def test_the_new_head_is_shaped_and_quantized_as_specified(replaced):
    two, model, head = replaced
    graph = tg.read_graph(model)
    op = graph.operators[FC_OPERATOR]
    features, weights, bias = (graph.tensors[i] for i in op.inputs)
    logits = graph.tensors[op.outputs[0]]
    assert weights.shape == (10, 64) and weights.type == tg.INT8
    assert weights.scales == pytest.approx(head.weight_scales) and weights.zero_points == (0,)
    q = np.frombuffer(model, np.int8, weights.num_elements, weights.data_pos)
    # Small init: normal(0, INIT_STDDEV) in steps of the trained head's scale.
    assert 0 < np.abs(q).max() <= np.ceil(5 * new_head.INIT_STDDEV / weights.scales[0])
    assert bias.shape == (10,) and bias.type == tg.INT32 and bias.zero_points == (0,)
    assert bias.scales[0] == pytest.approx(features.scales[0] * weights.scales[0], rel=1e-6)
    assert not np.frombuffer(model, np.int32, 10, bias.data_pos).any()
    assert logits.shape == (1, 10)
    assert (logits.scales[0], logits.zero_points[0]) == pytest.approx(
        (head.logits_scale, head.logits_zero_point)
    )
    output = graph.tensors[graph.outputs[0]]
    assert output.shape == (1, 10) and output.scales == (1 / 256,) and output.zero_points == (-128,)
    assert head.probe_accuracy > 0.5  # the features separate FSDD's digits
    old = tg.read_graph(two).tensors[op.outputs[0]]
    assert logits.scales != old.scales  # calibrated for this data


def test_untouched_tensors_and_buffers_are_byte_identical(replaced):
    two, model, _ = replaced
    old, new = tg.read_graph(two), tg.read_graph(model)
    op = new.operators[FC_OPERATOR]
    changed = set(op.inputs[1:]) | set(op.outputs) | set(new.outputs)
    assert len(old.tensors) == len(new.tensors) and old.operators == new.operators
    assert (old.inputs, old.outputs) == (new.inputs, new.outputs)
    for a, b in zip(old.tensors, new.tensors):
        if a.index in changed:
            continue
        same = ("name", "shape", "type", "buffer", "scales", "zero_points", "data_size")
        assert [getattr(a, k) for k in same] == [getattr(b, k) for k in same]
        assert (
            two[a.data_pos : a.data_pos + a.data_size]
            == model[b.data_pos : b.data_pos + b.data_size]
        )
    # The original file is kept whole after the new tables; its operators'
    # options are read in place.
    assert model.endswith(two)
    for index, op in enumerate(old.operators):
        assert tg.builtin_option(two, index, 0, "<b", -1) == tg.builtin_option(
            model, index, 0, "<b", -1
        )


@pytest.mark.slow
def test_the_rewrite_is_seeded(replaced, fsdd):
    two, model, _ = replaced
    x, y, _ = fsdd
    inputs = model_inputs(two, x)
    assert new_head.replace_head(two, inputs, y, 10, seed=3)[0] == model
    assert new_head.replace_head(two, inputs, y, 10, seed=4)[0] != model


@pytest.mark.slow
def test_the_new_head_trains_with_a_classifier_plan(replaced, fsdd):
    _, model, _ = replaced
    x, y, _ = fsdd
    plan = TrainingPlan.classifier_only(model, learning_rate=0.02, momentum=0.9, batch_size=5)
    assert [layer.operator_index for layer in plan.layers] == [FC_OPERATOR]
    assert plan.num_classes == 10
    trainer = Trainer(model, plan)
    inputs = model_inputs(model, x)
    before = trainer.evaluate(inputs, y)
    order = np.random.default_rng(0).permutation(len(y))  # the samples are sorted by class
    for _ in range(3):
        for start in range(0, len(y), 5):
            batch = order[start : start + 5]
            trainer.train_step(inputs[batch], y[batch])
    assert trainer.evaluate(inputs, y) > max(before, 0.3)
    trained = trainer.export()
    assert Interpreter.from_bytes(trained).get_output_details(0)["shape"].tolist() == [1, 10]


@pytest.mark.parametrize("name", ["float_io", "mlp"])
def test_followers_of_the_classifier_get_the_class_count(name):
    """float_io: SOFTMAX -> DEQUANTIZE (a float output); mlp with a RESHAPE
    appended: its shape tensor and new_shape option change too."""
    model = (
        model_edits.model_bytes(name) if name == "float_io" else with_reshape_after_softmax(name)
    )
    with np.load(DATA / "mnist.npz") as data:
        x = model_inputs(model, data["x_test"][:30])
    replaced, head = new_head.replace_head(model, x, np.arange(30) % 3, 3)
    assert head.num_classes == 3
    reference = golden.GoldenModel(replaced)
    ours = Interpreter.from_bytes(replaced)
    for sample in x[:5]:
        ours.set_input(sample[None], 0)
        ours.invoke()
        reference.run([sample[None]])
        assert ours.get_output(0).shape[-1] == 3
        assert np.array_equal(ours.get_output(0), reference.outputs()[0])
    graph = tg.read_graph(replaced)
    if name == "mlp":
        reshape = graph.operators[-1]
        shape = graph.tensors[reshape.inputs[1]]
        assert np.frombuffer(replaced, np.int32, 3, shape.data_pos).tolist() == [1, 1, 3]
        assert graph.tensors[graph.outputs[0]].shape == (1, 1, 3)


def test_a_model_without_a_classifier_is_refused():
    model = (REPO / "tests" / "models" / "extra_ops" / "strided_slice.tflite").read_bytes()
    with pytest.raises(new_head.NoClassifierError, match="not by a FULLY_CONNECTED or 1x1"):
        new_head.replace_head(model, np.zeros((2, 6, 6, 4), np.int8), [0, 1], 2)


# -- deploy ------------------------------------------------------------------------


@pytest.mark.firmware
def test_deploy_adapts_a_two_class_model_to_ten_classes_on_the_emulated_board(tmp_path):
    """The issue's command: a 2-class .tflite and the 10-class FSDD; the
    head is replaced because the class counts differ (--head auto)."""
    path = tmp_path / "two_classes.tflite"
    path.write_bytes(two_class_model())
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "tools/deploy.py",
            "--model",
            str(path),
            "--scheme",
            "classifier",
            "--train_samples",
            "100",
            "--epochs",
            "2",
            "--test_samples",
            "50",
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "new head: 2 -> 10 classes (operator 10 FULLY_CONNECTED" in result.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["new_head"]["old_classes"] == 2 and report["new_head"]["num_classes"] == 10
    comparison = report["comparison"]
    assert comparison["weights_bit_identical"] and comparison["losses_bit_identical"]
    assert comparison["predictions_identical"] and comparison["mismatches"] == []
    device, host = report["device"], report["host"]
    assert (device["accuracy_before"], device["accuracy_after"]) == (
        host["accuracy_before"],
        host["accuracy_after"],
    )
    assert device["accuracy_after"] > device["accuracy_before"]
    model = (out / "model.tflite").read_bytes()
    assert Interpreter.from_bytes(model).get_output_details(0)["shape"].tolist() == [1, 10]
