"""Training plans: the Python format owner round-trips, and every way a plan
can be wrong fails with a message that says what and what to do, in Python
(ValueError) and in the C runtime (BadPlanError, for bytes written behind
Python's back)."""

import struct
import zlib

import pytest
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

import model_edits
import training_helpers as th
from tflm_training import BadPlanError, LayerPlan, Trainer, TrainingPlan, errors, tflite_graph
from tflm_training.plan import trainable_operators

MLP = th.model_bytes("mlp")


def _mlp_plan(**settings):
    layers = settings.pop("layers", [LayerPlan(2, "weights", [1, 5, 6]), LayerPlan(3, "bias")])
    return TrainingPlan.for_model(MLP, layers, **settings)


def _trainer(plan_bytes, model=MLP):
    return Trainer(model, plan_bytes, arena_size=1 << 20)


def _layer_field(plan_bytes, layer, field):
    """Offset of a layer-table field (0 operator, 1 kind, 2 count, 3 lr,
    4 channel_cost, 5 rank, 6 refresh_steps, 7 reserved)."""
    return 80 + 32 * layer + 4 * field


def _sampled_plan(**settings):
    """mlp: operators 1 and 2 sampled, the classifier static."""
    settings.setdefault("momentum", 0.9)
    return TrainingPlan.sampled(
        MLP, {1: None, 2: range(0, 32, 2)}, budget_bytes=4000, seed=5, **settings
    )


# -- the format --------------------------------------------------------------


def test_round_trip_and_layout_match_the_c_header():
    plan = _mlp_plan(learning_rate=0.02, momentum=0.5, batch_size=4, qas=False)
    data = plan.to_bytes()
    assert TrainingPlan.from_bytes(data) == plan
    assert data[:4] == b"TTPL" and struct.unpack_from("<iI", data, 4) == (2, len(data))
    assert struct.unpack_from("<I", data, 12)[0] == zlib.crc32(data[16:])
    assert struct.unpack_from("<I", data, 16)[0] == zlib.crc32(MLP)
    assert struct.unpack_from("<5i", data, 20) == (13, 5, 11, 10, 4)
    assert struct.unpack_from("<iffiiIifff", data, 40) == (
        0,
        plan.learning_rate,
        0.5,
        0,
        2,
        0,
        0,
        0.0,
        0.0,
        0.0,
    )
    assert len(data) == 80 + 32 * 2 + 4 * (3 + 10)
    assert struct.unpack_from("<iifiiiii", data, 84) == (1, 3, 1.0, 0, 0, 0, 0, 3)
    assert struct.unpack_from("<3i", data, 144) == (1, 5, 6)


def test_a_sampled_plan_round_trips_with_its_costs_seed_and_budget():
    plan = _sampled_plan(batch_size=2)
    data = plan.to_bytes()
    assert TrainingPlan.from_bytes(data) == plan
    assert struct.unpack_from("<Ii", data, 60) == (5, 4000)
    # Layer 0 (operator 1, 784 weights per channel, a bias): residual,
    # velocity and accumulator, 4 bytes each per weight and bias.
    assert struct.unpack_from("<iiifiiii", data, 80) == (1, 2, 64, 1.0, 12 * 785, 0, 0, 0)
    assert struct.unpack_from("<iiifiiii", data, 112) == (2, 2, 16, 1.0, 12 * 65, 0, 0, 0)
    assert struct.unpack_from("<iiifiiii", data, 144) == (3, 1, 10, 1.0, 0, 0, 0, 0)
    assert [(layer.operator_index, layer.update) for layer in plan.layers] == [
        (1, "sampled"),
        (2, "sampled"),
        (3, "weights"),
    ]
    assert len(data) == 80 + 32 * 3 + 4 * (64 + 16 + 10)


def test_helpers_select_the_classifier_and_all_biases():
    plan = TrainingPlan.classifier_only(MLP)
    assert [(layer.operator_index, layer.update, layer.channels) for layer in plan.layers] == [
        (3, "weights", list(range(10)))
    ]
    assert plan.logits_tensor == 11 and plan.num_classes == 10
    bias = TrainingPlan.bias_only(MLP, first_operator=2)
    assert [(layer.operator_index, layer.update) for layer in bias.layers] == [
        (2, "bias"),
        (3, "bias"),
    ]
    assert trainable_operators(MLP) == [
        (1, "FULLY_CONNECTED", 64, True),
        (2, "FULLY_CONNECTED", 32, True),
        (3, "FULLY_CONNECTED", 10, True),
    ]


def test_damaged_bytes_are_rejected_by_from_bytes():
    data = _mlp_plan().to_bytes()
    with pytest.raises(ValueError, match="checksum"):
        TrainingPlan.from_bytes(data[:-1] + b"\x01")
    with pytest.raises(ValueError, match="not a training plan"):
        TrainingPlan.from_bytes(b"XXXX" + data[4:])
    with pytest.raises(ValueError, match="header says"):
        TrainingPlan.from_bytes(data + b"\x00\x00\x00\x00")


# -- Python-side checks ------------------------------------------------------


@pytest.mark.parametrize(
    "layers, message",
    [
        ({7: None}, "operator 7 does not exist"),
        ({0: None}, r"operator 0 \(RESHAPE\) has no trainable parameters"),
        ({4: None}, r"operator 4 \(SOFTMAX\) has no trainable parameters"),
        (
            {3: [0, 10]},
            r"channel 10 is out of range; operator 3 \(FULLY_CONNECTED\) has "
            "output channels 0 to 9",
        ),
        ({3: [4, 2]}, "ascending and unique"),
        ({3: [2, 2]}, "ascending and unique"),
        ({3: []}, "no channels selected"),
        ([], "trains no layers"),
        ([LayerPlan(3, "everything")], "update must be 'weights', 'bias', 'sampled' or 'lowrank'"),
        ([LayerPlan(3, "lowrank", rank=0, refresh_steps=10)], "rank must be an int >= 1"),
        ([LayerPlan(3, lr_scale=0.0)], "lr_scale"),
        ([LayerPlan(3, channel_cost=4)], "channel_cost is for 'sampled' layers"),
        ([LayerPlan(3, rank=1)], "rank and refresh_steps are for 'lowrank' layers"),
        ([LayerPlan(3, "sampled", channel_cost=0)], "channel_cost must be a positive int"),
    ],
)
def test_python_rejects_bad_layers(layers, message):
    with pytest.raises(ValueError, match=message):
        _mlp_plan(layers=layers)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"learning_rate": float("nan")}, "learning_rate"),
        ({"momentum": 1.0}, "momentum"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_python_rejects_bad_settings(settings, message):
    with pytest.raises(ValueError, match=message):
        _mlp_plan(**settings)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"sample_budget": 0}, "sample_budget 0 bytes is less than the cheapest sampled channel"),
        ({"sample_budget": 779}, "sample_budget 779 bytes is less than the cheapest"),
        ({"seed": -1}, r"seed must be an int in \[0, 2\*\*32\)"),
        ({"seed": 2**32}, r"seed must be an int in \[0, 2\*\*32\)"),
        ({"adam_beta1": 0.9}, "adam_beta1, adam_beta2 and adam_epsilon are for 'lowrank'"),
        (
            {
                "layers": [LayerPlan(1, "sampled", [0, 1], channel_cost=12 * 785 - 1)],
                "sample_budget": 20000,
            },
            r"layer 0: channel_cost 9419 must be at least 9420 bytes",
        ),
    ],
)
def test_python_rejects_bad_sampling_settings(change, message):
    plan = _sampled_plan(batch_size=2)
    for name, value in change.items():
        setattr(plan, name, value)
    with pytest.raises(ValueError, match=message):
        plan.check_model(MLP)


def test_python_rejects_a_budget_without_sampled_layers_and_too_many_candidates():
    plan = _mlp_plan()
    plan.sample_budget = 64
    with pytest.raises(ValueError, match="sample_budget is 64 but no layer is 'sampled'"):
        plan.validate()
    plan = _sampled_plan()
    plan.layers[0].channels = list(range(70000))
    with pytest.raises(ValueError, match="70016 candidate channels in all; at most 65535"):
        plan.validate()


def test_sampled_helper_keeps_the_classifier_static_and_checks_candidates():
    plan = TrainingPlan.sampled(MLP, [2], budget_bytes=1000, residual=False)
    assert [(layer.operator_index, layer.update, layer.channel_cost) for layer in plan.layers] == [
        (2, "sampled", 1),
        (3, "weights", 0),
    ]  # no state at all: the minimum cost is 1
    alone = TrainingPlan.sampled(MLP, [3], budget_bytes=1000, classifier=False)
    assert [(layer.operator_index, layer.update) for layer in alone.layers] == [(3, "sampled")]
    with pytest.raises(ValueError, match="operator 3 computes the logits and trains fully"):
        TrainingPlan.sampled(MLP, [2, 3], budget_bytes=1000)
    costly = TrainingPlan.sampled(
        MLP, [LayerPlan(2, "sampled", [4, 9], channel_cost=300)], budget_bytes=600
    )
    assert (costly.layers[0].channels, costly.layers[0].channel_cost) == ([4, 9], 300)


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
    with pytest.raises(
        BadPlanError,
        match=r"operator 3 \(FULLY_CONNECTED\) has no bias, so "
        "a bias-only update cannot train it",
    ):
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
    _c_rejects(data[:40], "shorter than the 80-byte header")
    _c_rejects(b"NOPE" + data[4:], "not a training plan")
    _c_rejects(th.patched_plan(data, 4, "<i", 1), "version 1; this runtime reads version 2")
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


@pytest.mark.parametrize(
    "offset, fmt, value, message",
    [
        (28, "<i", 99, "logits tensor 99 does not exist"),
        (28, "<i", 4, "logits tensor 4 is INT32"),
        (28, "<i", 0, "logits tensor 0 is not computed by an operator"),
        (32, "<i", 11, "has 10 values but the plan says 11 classes"),
        (36, "<i", 0, "batch size 0 must be at least 1"),
        (40, "<i", 1, "optimizer 1 is unknown"),
        (44, "<f", float("inf"), "learning rate must be a positive finite number"),
        (44, "<f", -0.1, "learning rate must be a positive finite number"),
        (48, "<f", 1.0, r"momentum must be in \[0, 1\)"),
        (52, "<i", 9, "unknown bits"),
        (64, "<i", 1, "sample_budget is 1 but no layer is sampled .update kind 2.; set it to 0"),
        (68, "<f", 0.9, "adam_beta1, adam_beta2 and adam_epsilon are for low-rank layers"),
        (76, "<f", 1e-8, "adam_beta1, adam_beta2 and adam_epsilon are for low-rank layers"),
        (56, "<i", 3, "3 layers do not fit|take .* bytes"),
    ],
)
def test_c_checks_the_settings(offset, fmt, value, message):
    _c_rejects(th.patched_plan(_mlp_plan().to_bytes(), offset, fmt, value), message)


@pytest.mark.parametrize(
    "layer, field, fmt, value, message",
    [
        (0, 0, "<i", 9, "layer 0: operator 9 does not exist"),
        (1, 0, "<i", 2, "layer 1: operator 2 does not come after operator 2"),
        (0, 0, "<i", 0, r"layer 0: operator 0 \(RESHAPE\) has no trainable parameters"),
        (1, 0, "<i", 4, r"operator 4 \(SOFTMAX\) has no trainable parameters"),
        (0, 1, "<i", 5, "update kind 5 is unknown"),
        (
            0,
            1,
            "<i",
            3,
            "layer 0: a low-rank layer trains all 32 output channels of operator 2 "
            r"\(FULLY_CONNECTED\), but 3 are listed; list them all",
        ),
        (0, 3, "<f", float("nan"), "lr_scale must be a positive finite number"),
        (0, 2, "<i", 0, "layer 0 selects 0 channels"),
        (1, 4, "<i", 8, "layer 1: channel_cost 8 is for sampled layers .kind 2.; set it to 0"),
        (0, 5, "<i", 2, "layer 0: rank 2 and refresh_steps 0 are for low-rank layers"),
        (0, 6, "<i", 9, "layer 0: rank 0 and refresh_steps 9 are for low-rank layers"),
        (1, 7, "<i", 1, "layer 1: the reserved field must be 0"),
    ],
)
def test_c_checks_the_layer_table(layer, field, fmt, value, message):
    data = _mlp_plan().to_bytes()
    _c_rejects(th.patched_plan(data, _layer_field(data, layer, field), fmt, value), message)


def test_c_checks_the_channel_lists():
    data = _mlp_plan().to_bytes()  # layer 0: channels 1, 5, 6 at byte 144
    _c_rejects(
        th.patched_plan(data, 152, "<i", 32),
        "layer 0: channel 32 is out of range; operator 2 has output channels 0 to 31",
    )
    _c_rejects(th.patched_plan(data, 152, "<i", -1), "channel -1 is out of range")
    _c_rejects(
        th.patched_plan(data, 152, "<i", 5), "channel 5 follows 5; list channels in ascending order"
    )


def test_c_checks_sampled_layers():
    data = _sampled_plan(batch_size=2).to_bytes()  # costs 9420 (operator 1) and 780
    _trainer(data)
    _c_rejects(
        th.patched_plan(data, _layer_field(data, 0, 4), "<i", 9419),
        "layer 0: channel_cost 9419 must be at least 9420 bytes .the optimizer state "
        "of one of its channels",
    )
    _c_rejects(
        th.patched_plan(data, _layer_field(data, 1, 4), "<i", 0),
        "layer 1: channel_cost 0 must be at least 780 bytes",
    )
    _c_rejects(
        th.patched_plan(data, _layer_field(data, 1, 4), "<i", -5),
        "layer 1: channel_cost -5 must be at least 780 bytes",
    )
    _c_rejects(
        th.patched_plan(data, 64, "<i", 779),
        "sample_budget 779 bytes is less than the cheapest sampled channel "
        ".channel_cost 780.: no channel could ever train",
    )
    _c_rejects(th.patched_plan(data, 64, "<i", 0), "sample_budget 0 bytes is less than")
    _c_rejects(th.patched_plan(data, 64, "<i", -(2**31)), "sample_budget -2147483648 bytes")
    _c_rejects(
        th.patched_plan(data, _layer_field(data, 2, 4), "<i", 780),
        "layer 2: channel_cost 780 is for sampled layers",
    )
    # Without residual, momentum or batches a channel keeps no state: 1 byte.
    light = TrainingPlan.sampled(MLP, [2], budget_bytes=1, residual=False).to_bytes()
    _trainer(light)
    _c_rejects(
        th.patched_plan(light, _layer_field(light, 0, 4), "<i", 0),
        "channel_cost 0 must be at least 1 bytes",
    )


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
        [(len(codes) - 2, [original], [f]), (len(codes) - 1, [f], [q])]
    ):
        op = schema.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = code, inputs, outputs
        subgraph.operators.insert(op_index + 1 + position, op)
    consumer = subgraph.operators[op_index + 3]
    consumer.inputs = [q if t == original else t for t in consumer.inputs]
    return model_edits.pack(model)


def test_gradient_path_through_an_operator_without_backward_is_refused():
    model = _with_float_round_trip_after(2)  # 2 FC, 3 DEQUANTIZE, 4 QUANTIZE, 5 FC, 6 SOFTMAX
    plan = TrainingPlan.for_model(model, {1: None})
    with pytest.raises(
        BadPlanError,
        match=r"operator 3 \(DEQUANTIZE\) has no backward kernel, "
        r"but gradients must pass through it to reach "
        r"trained operators \(from operator 1\); train "
        "only operators after 3",
    ):
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
    interesting = [0, 1, -1, 2, 3, 4, 5, 9, 10, 11, 12, 31, 32, 64, 2**31 - 1, -(2**31)]
    accepted = 0
    for _ in range(300):
        offset = 16 + 4 * int(rng.integers((len(data) - 16) // 4))
        value = (
            int(rng.choice(interesting))
            if rng.random() < 0.7
            else int(rng.integers(-(2**31), 2**31))
        )
        try:
            _trainer(th.patched_plan(data, offset, "<i", value))
            accepted += 1
        except (BadPlanError, errors.UnsupportedModelError):
            pass
    assert accepted > 0
