"""Training plans: the Python format owner round-trips, and every way a plan
can be wrong fails with a message that says what and what to do, in Python
(ValueError) and in the C runtime (BadPlanError, for bytes written behind
Python's back)."""

import struct
import zlib

import pytest

import model_edits
import training_helpers as th
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema
from tflm_training import BadPlanError, LayerPlan, Trainer, TrainingPlan, errors, tflite_graph
from tflm_training.plan import trainable_operators

MLP = th.model_bytes("mlp")


def _mlp_plan(**settings):
    layers = settings.pop("layers", [LayerPlan(2, "weights", [1, 5, 6]), LayerPlan(3, "bias")])
    return TrainingPlan.for_model(MLP, layers, **settings)


def _trainer(plan_bytes, model=MLP):
    return Trainer(model, plan_bytes, arena_size=1 << 20)


def _layer_field(plan_bytes, layer, field):
    """Offset of a layer-table field (0 operator, 1 kind, 2 count, 3 lr)."""
    return 64 + 16 * layer + 4 * field


# -- the format --------------------------------------------------------------

def test_round_trip_and_layout_match_the_c_header():
    plan = _mlp_plan(learning_rate=0.02, momentum=0.5, batch_size=4, qas=False)
    data = plan.to_bytes()
    assert TrainingPlan.from_bytes(data) == plan
    assert data[:4] == b"TTPL" and struct.unpack_from("<iI", data, 4) == (1, len(data))
    assert struct.unpack_from("<I", data, 12)[0] == zlib.crc32(data[16:])
    assert struct.unpack_from("<I", data, 16)[0] == zlib.crc32(MLP)
    assert struct.unpack_from("<5i", data, 20) == (13, 5, 11, 10, 4)
    assert struct.unpack_from("<iffiii", data, 40) == (0, plan.learning_rate, 0.5, 0, 2, 0)
    assert len(data) == 64 + 16 * 2 + 4 * (3 + 10)
    assert struct.unpack_from("<3i", data, 96) == (1, 5, 6)


def test_helpers_select_the_classifier_and_all_biases():
    plan = TrainingPlan.classifier_only(MLP)
    assert [(l.operator_index, l.update, l.channels) for l in plan.layers] == [
        (3, "weights", list(range(10)))]
    assert plan.logits_tensor == 11 and plan.num_classes == 10
    bias = TrainingPlan.bias_only(MLP, first_operator=2)
    assert [(l.operator_index, l.update) for l in bias.layers] == [(2, "bias"), (3, "bias")]
    assert trainable_operators(MLP) == [(1, "FULLY_CONNECTED", 64, True),
                                        (2, "FULLY_CONNECTED", 32, True),
                                        (3, "FULLY_CONNECTED", 10, True)]


def test_damaged_bytes_are_rejected_by_from_bytes():
    data = _mlp_plan().to_bytes()
    with pytest.raises(ValueError, match="checksum"):
        TrainingPlan.from_bytes(data[:-1] + b"\x01")
    with pytest.raises(ValueError, match="not a training plan"):
        TrainingPlan.from_bytes(b"XXXX" + data[4:])
    with pytest.raises(ValueError, match="header says"):
        TrainingPlan.from_bytes(data + b"\x00\x00\x00\x00")


# -- Python-side checks ------------------------------------------------------

@pytest.mark.parametrize("layers, message", [
    ({7: None}, "operator 7 does not exist"),
    ({0: None}, r"operator 0 \(RESHAPE\) has no trainable parameters"),
    ({4: None}, r"operator 4 \(SOFTMAX\) has no trainable parameters"),
    ({3: [0, 10]}, r"channel 10 is out of range; operator 3 \(FULLY_CONNECTED\) has "
                   "output channels 0 to 9"),
    ({3: [4, 2]}, "ascending and unique"),
    ({3: [2, 2]}, "ascending and unique"),
    ({3: []}, "no channels selected"),
    ([], "trains no layers"),
    ([LayerPlan(3, "everything")], "update must be 'weights' or 'bias'"),
    ([LayerPlan(3, lr_scale=0.0)], "lr_scale"),
])
def test_python_rejects_bad_layers(layers, message):
    with pytest.raises(ValueError, match=message):
        _mlp_plan(layers=layers)


@pytest.mark.parametrize("settings, message", [
    ({"learning_rate": 0.0}, "learning_rate"),
    ({"learning_rate": float("nan")}, "learning_rate"),
    ({"momentum": 1.0}, "momentum"),
    ({"batch_size": 0}, "batch_size"),
])
def test_python_rejects_bad_settings(settings, message):
    with pytest.raises(ValueError, match=message):
        _mlp_plan(**settings)


def test_python_rejects_a_plan_for_another_model():
    plan = _mlp_plan()
    with pytest.raises(ValueError, match="another model"):
        plan.check_model(th.model_bytes("conv_stack"))


def _without_classifier_bias():
    model = model_edits.load("mlp")
    op = model.subgraphs[0].operators[3]
    op.inputs = op.inputs[:2]
    return model_edits.pack(model)


def test_bias_only_on_a_layer_without_bias_is_refused_in_python_and_c():
    model = _without_classifier_bias()
    with pytest.raises(ValueError, match=r"operator 3 \(FULLY_CONNECTED\) has no bias"):
        TrainingPlan.for_model(model, [LayerPlan(3, "bias")])
    good = TrainingPlan.for_model(model, [LayerPlan(3, "weights")]).to_bytes()
    bad = th.patched_plan(good, _layer_field(good, 0, 1), "<i", 0)
    with pytest.raises(BadPlanError, match=r"operator 3 \(FULLY_CONNECTED\) has no bias, so "
                                           "a bias-only update cannot train it"):
        _trainer(bad, model)
    Trainer(model, good).train_step(*th.quantized_split("mnist", "train", (1, 28, 28, 1), 2))


# -- C-side checks: the runtime trusts nothing it is given -------------------

def _c_rejects(data, message, model=MLP):
    with pytest.raises(BadPlanError, match=message) as raised:
        _trainer(data, model)
    assert raised.value.status == 7
    assert str(raised.value).startswith("training plan: ")


def test_c_checks_the_envelope():
    data = _mlp_plan().to_bytes()
    _c_rejects(data[:40], "shorter than the 64-byte header")
    _c_rejects(b"NOPE" + data[4:], "not a training plan")
    _c_rejects(th.patched_plan(data, 4, "<i", 2), "version 2; this runtime reads version 1")
    _c_rejects(data + b"\x00" * 4, "the header says")
    _c_rejects(data[:-4] + struct.pack("<i", 7), "checksum mismatch .* damaged; regenerate")


def test_c_checks_the_model():
    data = _mlp_plan().to_bytes()
    _c_rejects(data, "made for another model", th.model_bytes("conv_stack"))
    _c_rejects(th.patched_plan(data, 20, "<i", 14), "14 tensors and 5 operators")
    # A model that differs in one weight is another model.
    edited = bytearray(MLP)
    edited[tflite_graph.read_graph(MLP).tensors[3].data_pos] ^= 1
    _c_rejects(data, "model CRC-32", bytes(edited))


@pytest.mark.parametrize("offset, fmt, value, message", [
    (28, "<i", 99, "logits tensor 99 does not exist"),
    (28, "<i", 4, "logits tensor 4 is INT32"),
    (28, "<i", 0, "logits tensor 0 is not computed by an operator"),
    (32, "<i", 11, "has 10 values but the plan says 11 classes"),
    (36, "<i", 0, "batch size 0 must be at least 1"),
    (40, "<i", 1, "optimizer 1 is unknown"),
    (44, "<f", float("inf"), "learning rate must be a positive finite number"),
    (44, "<f", -0.1, "learning rate must be a positive finite number"),
    (48, "<f", 1.0, r"momentum must be in \[0, 1\)"),
    (52, "<i", 6, "unknown bits"),
    (60, "<i", 1, "reserved"),
    (56, "<i", 3, "3 layers do not fit|take .* bytes"),
])
def test_c_checks_the_settings(offset, fmt, value, message):
    _c_rejects(th.patched_plan(_mlp_plan().to_bytes(), offset, fmt, value), message)


@pytest.mark.parametrize("layer, field, fmt, value, message", [
    (0, 0, "<i", 9, "layer 0: operator 9 does not exist"),
    (1, 0, "<i", 2, "layer 1: operator 2 does not come after operator 2"),
    (0, 0, "<i", 0, r"layer 0: operator 0 \(RESHAPE\) has no trainable parameters"),
    (1, 0, "<i", 4, r"operator 4 \(SOFTMAX\) has no trainable parameters"),
    (0, 1, "<i", 5, "update kind 5 is unknown"),
    (0, 3, "<f", float("nan"), "lr_scale must be a positive finite number"),
    (0, 2, "<i", 0, "layer 0 selects 0 channels"),
])
def test_c_checks_the_layer_table(layer, field, fmt, value, message):
    data = _mlp_plan().to_bytes()
    _c_rejects(th.patched_plan(data, _layer_field(data, layer, field), fmt, value), message)


def test_c_checks_the_channel_lists():
    data = _mlp_plan().to_bytes()  # layer 0: channels 1, 5, 6 at byte 96
    _c_rejects(th.patched_plan(data, 104, "<i", 32),
               "layer 0: channel 32 is out of range; operator 2 has output channels 0 to 31")
    _c_rejects(th.patched_plan(data, 104, "<i", -1), "channel -1 is out of range")
    _c_rejects(th.patched_plan(data, 104, "<i", 5), "channel 5 follows 5; list channels in "
                                                    "ascending order")


def _with_float_round_trip_after(op_index):
    """mlp with DEQUANTIZE -> QUANTIZE inserted after operator op_index:
    the same values, through an operator without a backward kernel."""
    model = model_edits.load("mlp")
    subgraph = model.subgraphs[0]
    codes = model.operatorCodes
    for code in (schema.BuiltinOperator.DEQUANTIZE, schema.BuiltinOperator.QUANTIZE):
        entry = schema.OperatorCodeT()
        entry.builtinCode, entry.deprecatedBuiltinCode, entry.version = code, min(code, 127), 1
        codes.append(entry)
    original = subgraph.operators[op_index].outputs[0]
    as_float = schema.TensorT()
    as_float.shape, as_float.type, as_float.buffer = list(subgraph.tensors[original].shape), 0, 0
    as_float.name = b"as_float"
    requantized = schema.TensorT()
    requantized.shape = list(subgraph.tensors[original].shape)
    requantized.type, requantized.buffer = schema.TensorType.INT8, 0
    requantized.quantization = subgraph.tensors[original].quantization
    requantized.name = b"requantized"
    subgraph.tensors += [as_float, requantized]
    f, q = len(subgraph.tensors) - 2, len(subgraph.tensors) - 1
    for position, (code, inputs, outputs) in enumerate(
            [(len(codes) - 2, [original], [f]), (len(codes) - 1, [f], [q])]):
        op = schema.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = code, inputs, outputs
        subgraph.operators.insert(op_index + 1 + position, op)
    consumer = subgraph.operators[op_index + 3]
    consumer.inputs = [q if t == original else t for t in consumer.inputs]
    return model_edits.pack(model)


def test_gradient_path_through_an_operator_without_backward_is_refused():
    model = _with_float_round_trip_after(2)  # 2 FC, 3 DEQUANTIZE, 4 QUANTIZE, 5 FC, 6 SOFTMAX
    plan = TrainingPlan.for_model(model, {1: None})
    with pytest.raises(BadPlanError, match=r"operator 3 \(DEQUANTIZE\) has no backward kernel, "
                                           r"but gradients must pass through it to reach "
                                           r"trained operators \(from operator 1\); train "
                                           "only operators after 3"):
        Trainer(model, plan)
    x, y = th.quantized_split("mnist", "train", (1, 28, 28, 1), 3)
    Trainer(model, TrainingPlan.for_model(model, {5: None})).train_step(x, y)


def test_arena_too_small_says_how_many_bytes_are_needed():
    plan = _mlp_plan()
    need = Trainer(MLP, plan).arena_used_bytes()
    assert Trainer(MLP, plan, arena_size=need).arena_used_bytes() == need
    for size in (need - 16, 2000, 64):
        with pytest.raises(errors.ArenaTooSmallError, match=f"need exactly {need} bytes"):
            Trainer(MLP, plan, arena_size=size)


def test_random_plan_fields_are_rejected_cleanly():
    """Any int32 in any field (CRC fixed up, so every check is reached):
    either a valid plan or BadPlanError, never a crash."""
    import numpy as np
    rng = np.random.default_rng(11)
    data = _mlp_plan().to_bytes()
    interesting = [0, 1, -1, 2, 3, 4, 5, 9, 10, 11, 12, 31, 32, 64, 2**31 - 1, -2**31]
    accepted = 0
    for _ in range(300):
        offset = 16 + 4 * int(rng.integers((len(data) - 16) // 4))
        value = int(rng.choice(interesting)) if rng.random() < 0.7 else int(
            rng.integers(-2**31, 2**31))
        try:
            _trainer(th.patched_plan(data, offset, "<i", value))
            accepted += 1
        except (BadPlanError, errors.UnsupportedModelError):
            pass
    assert accepted > 0
