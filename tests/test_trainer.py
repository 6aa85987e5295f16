"""On-device training on the host: real data (tests/data, examples/), real
models (tests/models, examples/). Training lowers the loss and raises test
accuracy, sparse plans touch only what they select, QAS scales updates, the
NaN guard holds, memory adds up, and an exported model runs in tflite_micro
exactly as in our runtime."""

import math

import numpy as np
import pytest

import golden
import training_helpers as th
from tflm_training import (
    BadStateError,
    DivergedError,
    InputMismatchError,
    Interpreter,
    InvalidArgumentError,
    LayerPlan,
    Trainer,
    TrainingPlan,
    memory_model,
    tflite_graph,
)
from tflm_training.plan import find_logits

# model -> (dataset, input shape)
DATA = {
    "mlp": ("mnist", (1, 28, 28, 1)),
    "reshape_dense": ("fsdd", (1, 49, 40, 1)),
    "ds_cnn": ("speech_commands12", (1, 49, 40, 1)),
    "conv_stack": ("gtsrb32", (1, 32, 32, 3)),
}


def _split(model, split, count=None):
    dataset, shape = DATA[model]
    return th.quantized_split(dataset, split, shape, count)


def _train(trainer, x, y, epochs):
    """Mean loss of each epoch, the samples reshuffled every epoch."""
    return [trainer.train_step(*th.shuffled(x, y, epoch)) for epoch in range(epochs)]


def _parameters(model, operator_index):
    graph = tflite_graph.read_graph(model)
    op = graph.operators[operator_index]
    return [graph.tensors[op.inputs[1]], graph.tensors[op.inputs[2]]]


def _original(model, tensor, dtype):
    return np.frombuffer(
        model,
        dtype=dtype,
        count=tensor.data_size // np.dtype(dtype).itemsize,
        offset=tensor.data_pos,
    ).reshape(tensor.shape)


# (model, layers or None for classifier-only, learning rate, epochs)
CASES = {
    "mlp-classifier": ("mlp", None, 0.05, 3),
    "mlp-sparse": ("mlp", {2: list(range(0, 32, 2)), 3: None}, 0.02, 3),
    "reshape_dense-classifier": ("reshape_dense", None, 0.005, 3),
    "reshape_dense-sparse": (
        "reshape_dense",
        {0: [0, 2, 4, 6], 2: list(range(12)), 5: None},
        0.005,
        3,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_training_lowers_the_loss_and_raises_test_accuracy(case):
    name, layers, lr, epochs = CASES[case]
    model = th.with_zero_classifier(th.model_bytes(name))
    if layers is None:
        plan = TrainingPlan.classifier_only(model, learning_rate=lr)
    else:
        plan = TrainingPlan.for_model(model, layers, learning_rate=lr)
    trainer = Trainer(model, plan)
    x_test, y_test = _split(name, "test")
    before = trainer.evaluate(x_test, y_test)
    losses = _train(trainer, *_split(name, "train"), epochs)
    after = trainer.evaluate(x_test, y_test)
    assert before <= 0.15  # a zero classifier ties every class: chance
    assert losses[-1] < 0.5 * losses[0], losses
    assert after >= 0.8, (before, after, losses)


def test_a_sparse_plan_changes_only_the_selected_channels():
    model = th.with_zero_classifier(th.model_bytes("reshape_dense"))
    selected = [1, 4, 7]
    plan = TrainingPlan.for_model(
        model,
        [LayerPlan(0, "weights", selected), LayerPlan(2, "bias", [3, 5]), LayerPlan(5)],
        learning_rate=0.005,
    )
    trainer = Trainer(model, plan)
    _train(trainer, *_split("reshape_dense", "train", 60), 1)
    weights, bias = _parameters(model, 0)
    new_w, old_w = trainer.get_tensor(weights.index), _original(model, weights, np.int8)
    changed = [c for c in range(8) if not np.array_equal(new_w[c], old_w[c])]
    assert changed and set(changed) <= set(selected)
    new_b, old_b = trainer.get_tensor(bias.index), _original(model, bias, "<i4")
    assert set(np.flatnonzero(new_b != old_b)) <= set(selected)
    weights, bias = _parameters(model, 2)
    assert np.array_equal(trainer.get_tensor(weights.index), _original(model, weights, np.int8))
    new_b, old_b = trainer.get_tensor(bias.index), _original(model, bias, "<i4")
    changed = set(np.flatnonzero(new_b != old_b))
    assert changed and changed <= {3, 5}
    weights, _ = _parameters(model, 4)  # between trained layers, frozen
    assert weights.index not in trainer.parameter_tensors


def test_qas_off_makes_updates_s_squared_smaller():
    """Without QAS the int8-domain gradient is s_W^2 times the QAS one: with
    s_W ~ 0.005 one epoch at the same rate moves no weight at all."""
    model = th.with_zero_classifier(th.model_bytes("mlp"))
    x, y = _split("mlp", "train", 100)
    results = {}
    for qas in (True, False):
        trainer = Trainer(model, TrainingPlan.classifier_only(model, learning_rate=0.05, qas=qas))
        trainer.train_step(x, y)
        weights, bias = _parameters(model, 3)
        results[qas] = (
            np.count_nonzero(trainer.get_tensor(weights.index)),
            np.count_nonzero(trainer.get_tensor(bias.index)),
        )
    assert results[True][0] > 100 and results[True][1] == 10
    assert results[False] == (0, 0)


def test_batches_update_once_every_batch_size_samples():
    model = th.with_zero_classifier(th.model_bytes("mlp"))
    plan = TrainingPlan.classifier_only(model, learning_rate=0.05, batch_size=4, momentum=0.9)
    trainer = Trainer(model, plan)
    x, y = _split("mlp", "train", 8)
    weights, bias = _parameters(model, 3)
    trainer.train_step(x[:3], y[:3])
    assert not trainer.get_tensor(weights.index).any()
    assert not trainer.get_tensor(bias.index).any()
    trainer.train_step(x[3], y[3])
    after_one_batch = trainer.get_tensor(weights.index)
    assert after_one_batch.any()
    trainer.train_step(x[4:7], y[4:7])
    assert np.array_equal(trainer.get_tensor(weights.index), after_one_batch)
    # Momentum keeps moving the weights on the next update.
    trainer.train_step(x[7], y[7])
    assert not np.array_equal(trainer.get_tensor(weights.index), after_one_batch)
    memory = trainer.memory()
    # residual + velocity + accumulator, 4 bytes each, per weight and bias
    assert memory["optimizer_state"] == 3 * 4 * (10 * 32 + 10)


def test_nan_guard_raises_and_leaves_the_channel_untouched():
    model = th.with_zero_classifier(th.model_bytes("mlp"))
    plan = TrainingPlan.classifier_only(model, learning_rate=3e38)
    trainer = Trainer(model, plan)
    x, y = _split("mlp", "train", 1)
    with pytest.raises(DivergedError, match="NaN or infinite; lower the learning rate") as raised:
        trainer.train_step(x, y)
    assert raised.value.status == 8
    weights, bias = _parameters(model, 3)
    assert not trainer.get_tensor(weights.index).any()
    assert not trainer.get_tensor(bias.index).any()
    assert trainer.predict(x[0]) == 0  # still runs


def test_export_runs_in_tflite_micro_exactly_like_our_runtime():
    original = th.model_bytes("reshape_dense")
    plan = TrainingPlan.for_model(
        original, {0: [0, 3, 5], 2: list(range(8)), 5: None}, learning_rate=0.005
    )
    trainer = Trainer(original, plan)
    _train(trainer, *_split("reshape_dense", "train", 50), 1)
    exported = trainer.export()
    assert len(exported) == len(original) and exported != original
    graph = tflite_graph.read_graph(original)
    trained = set()
    for index in trainer.parameter_tensors:
        t = graph.tensors[index]
        trained.update(range(t.data_pos, t.data_pos + t.data_size))
    assert all(i in trained for i in range(len(original)) if exported[i] != original[i])

    reference = golden.GoldenModel(exported)
    ours = Interpreter(exported)
    x, _ = _split("reshape_dense", "test", 10)
    for sample in x:
        sample = sample[np.newaxis]
        want = reference.run([sample])
        trainer.interpreter.set_input(sample, 0)
        trainer.interpreter.invoke()
        ours.set_input(sample, 0)
        ours.invoke()
        np.testing.assert_array_equal(trainer.interpreter.get_output(0), want)
        np.testing.assert_array_equal(ours.get_output(0), want)


def test_logits_and_loss_are_those_of_the_trained_model():
    original = th.model_bytes("reshape_dense")
    trainer = Trainer(original, TrainingPlan.classifier_only(original, learning_rate=0.005))
    _train(trainer, *_split("reshape_dense", "train", 50), 1)
    x, y = _split("reshape_dense", "test", 12)
    logits = trainer.logits(x)
    graph = tflite_graph.read_graph(original)
    index = find_logits(graph)
    tensor = graph.tensors[index]
    exported = Interpreter(trainer.export(), preserve_all_tensors=True)
    losses = []
    for sample, label, row in zip(x, y, logits):
        exported.set_input(sample[np.newaxis], 0)
        exported.invoke()
        values = exported.get_tensor(index).reshape(-1).astype(np.float64)
        np.testing.assert_array_equal(row, (values - tensor.zero_points[0]) * tensor.scales[0])
        assert trainer.predict(sample) == int(np.argmax(values))
        losses.append(math.log(sum(math.exp(v) for v in row)) - row[label])
    assert logits.shape == (12, 10)
    assert trainer.evaluate_loss(x, y) == pytest.approx(np.mean(losses), rel=1e-12)
    with pytest.raises(InputMismatchError):
        trainer.logits(x.astype(np.float32))


@pytest.mark.parametrize("name", ["mlp", "reshape_dense", "ds_cnn"])
def test_inference_through_a_trainer_is_bit_exact_with_tflm(name):
    model = th.model_bytes(name)
    trainer = Trainer(model, TrainingPlan.classifier_only(model))
    reference = golden.GoldenModel(model)
    x, _ = _split(name, "test", 4)
    for sample in x:
        sample = sample[np.newaxis]
        want = reference.run([sample])
        trainer.interpreter.set_input(sample, 0)
        trainer.interpreter.invoke()
        np.testing.assert_array_equal(trainer.interpreter.get_output(0), want)
        assert trainer.predict(sample) == int(np.argmax(want))


@pytest.mark.parametrize("name", ["mlp", "reshape_dense", "ds_cnn", "conv_stack"])
def test_memory_breakdown_adds_up_to_the_arena_used(name):
    model = th.model_bytes(name)
    trainer = Trainer(model, TrainingPlan.classifier_only(model))
    memory = trainer.memory()
    parts = [
        memory[k]
        for k in (
            "interpreter_tables",
            "trainer_tables",
            "weight_copies",
            "optimizer_state",
            "planned_region",
        )
    ]
    assert sum(parts) == memory["total"] == trainer.arena_used_bytes()
    assert all(p > 0 for p in parts)
    # The same tables as inference; the classifier's copies are its bytes.
    graph = tflite_graph.read_graph(model)
    weights, bias = (graph.tensors[i] for i in trainer.parameter_tensors)
    assert memory["weight_copies"] >= weights.data_size + bias.data_size
    assert memory["weight_copies"] < weights.data_size + bias.data_size + 16
    # Nothing is kept for the frozen feature extractor: the region is the
    # inference activations plus the classifier's small buffers.
    activations = memory_model.inference_arena(model).activations
    assert activations <= memory["planned_region"] <= activations + 2048


def test_training_the_first_layer_keeps_activations_for_backward():
    model = th.model_bytes("reshape_dense")
    inference = Interpreter(model).arena_used_bytes()
    head = Trainer(model, TrainingPlan.classifier_only(model)).memory()
    deep = Trainer(model, TrainingPlan.for_model(model, {0: [0], 5: None})).memory()
    assert deep["planned_region"] > head["planned_region"]
    assert deep["total"] > inference


def test_samples_and_labels_are_checked():
    model = th.model_bytes("mlp")
    trainer = Trainer(model, TrainingPlan.classifier_only(model))
    x, y = _split("mlp", "train", 2)
    with pytest.raises(InputMismatchError, match="dtype int8"):
        trainer.train_step(x.astype(np.float32), y)
    with pytest.raises(InputMismatchError, match="shape"):
        trainer.train_step(x[:, :27], y)
    with pytest.raises(InvalidArgumentError, match="2 samples but 1 labels"):
        trainer.train_step(x, y[:1])
    with pytest.raises(
        InvalidArgumentError, match="label 10 is outside the model's classes 0 to 9"
    ):
        trainer.train_step(x[0], 10)
    trainer.train_step(x[0], 3)
    with pytest.raises(BadStateError, match="reused by a training step"):
        trainer.get_tensor(11)
    trainer.predict(x[0])
    assert trainer.get_tensor(11).shape == (1, 10)


def test_training_is_deterministic():
    model = th.with_zero_classifier(th.model_bytes("mlp"))
    plan = TrainingPlan.for_model(model, {2: [0, 1, 2], 3: None}, learning_rate=0.05, momentum=0.5)
    x, y = _split("mlp", "train", 40)
    runs = []
    for _ in range(2):
        trainer = Trainer(model, plan)
        runs.append((trainer.train_step(x, y), trainer.export()))
    assert runs[0] == runs[1]


def test_without_residuals_updates_under_half_a_step_are_lost():
    """The master-value choice, measured: with a float residual per parameter
    many small updates add up to whole int8 steps; without one (4 bytes per
    parameter saved) each update rounds on its own and these are lost."""
    model = th.with_zero_classifier(th.model_bytes("mlp"))
    interpreter = Interpreter.from_bytes(model)
    x, y = th.shuffled(
        *th.quantized_split("mnist", "train", interpreter.get_input_details(0)["shape"], 200), 3
    )
    trainers = {}
    for residual in (True, False):
        plan = TrainingPlan.classifier_only(model, learning_rate=1e-4, residual=residual)
        trainers[residual] = Trainer(model, plan)
        for i in range(len(y)):
            trainers[residual].train_step(x[i], y[i])
    weights = {r: t.get_tensor(t.parameter_tensors[0]) for r, t in trainers.items()}
    assert np.count_nonzero(weights[True]) > 0
    assert np.count_nonzero(weights[False]) == 0
    saved = trainers[True].memory()["optimizer_state"] - trainers[False].memory()["optimizer_state"]
    layer = TrainingPlan.classifier_only(model).layers[0]
    parameters = weights[True].size + len(layer.channels)
    assert saved >= 4 * parameters


# -- the gradient probe ----------------------------------------------------------


def _reference_norms(model, x, y):
    """{operator: (sum over samples of |dL/dW_c|^2 per channel c, of
    (dL/db_c)^2)} from the float64 reference backward pass of
    test_training_gradients (every FULLY_CONNECTED)."""
    import test_training_gradients as reference  # its float64 backward

    totals = {}
    for sample, label in zip(x, y):
        _, _, grads = reference._reference_grads(model, sample[np.newaxis], int(label))
        for op, (d_w, d_b) in grads.items():
            w, b = totals.get(op, (0.0, 0.0))
            totals[op] = (w + np.sum(d_w**2, axis=1), b + d_b**2)
    return totals


@pytest.mark.parametrize("variant", ["chain", "residual"])
def test_gradient_norms_equal_the_reference_backward_pass(variant):
    import test_training_gradients as reference

    model = th.model_bytes("mlp") if variant == "chain" else reference._residual_mlp()
    classifier = 3 if variant == "chain" else 5
    selected = {1: [5, 40], 2: [0, 2, 3, 7, 11, 20, 31], classifier: list(range(10))}
    plan = TrainingPlan.for_model(model, selected, learning_rate=0.05)
    trainer = Trainer(model, plan)
    x, y = _split("mlp", "train", 3)
    want = _reference_norms(model, x, y)
    weights = trainer.gradient_norms(x, y)
    biases = trainer.gradient_norms(x, y, bias=True)
    assert list(weights) == list(biases) == sorted(selected)
    for op, channels in selected.items():
        assert weights[op].shape == biases[op].shape == (len(channels),)
        # float32 against float64: about 1e-4 relative where sums cancel.
        for got, expected in (
            (weights[op], want[op][0][channels]),
            (biases[op], want[op][1][channels]),
        ):
            np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-5 * np.max(want[op][0]))
    # Hidden units may be inactive for these samples; most are not.
    assert np.all(weights[classifier] > 0) and np.count_nonzero(weights[2]) >= 4


def test_gradient_norms_change_nothing():
    """Probing between steps leaves weights, biases, optimizer state
    (momentum, residuals) and the batch count as they were: training goes
    on exactly as without the probe."""
    model = th.with_zero_classifier(th.model_bytes("mlp"))
    plan = TrainingPlan.for_model(
        model,
        [LayerPlan(1, "bias"), LayerPlan(2, "weights", [1, 4]), LayerPlan(3)],
        learning_rate=0.05,
        momentum=0.9,
        batch_size=2,
    )
    x, y = _split("mlp", "train", 7)
    probed, plain = Trainer(model, plan), Trainer(model, plan)
    losses = {}
    for name, trainer in (("probed", probed), ("plain", plain)):
        losses[name] = [trainer.train_step(x[:3], y[:3])]
        before = trainer.export()
        if name == "probed":
            norms = trainer.gradient_norms(x[3:], y[3:])
            assert not norms[1].any()  # a bias-only layer has no weight gradient
            assert trainer.gradient_norms(x[3:], y[3:], bias=True)[1].any()
            assert trainer.export() == before
        losses[name].append(trainer.train_step(x[3:], y[3:]))
    assert losses["probed"] == losses["plain"]
    assert probed.export() == plain.export() != model


def test_gradient_norms_check_their_samples():
    model = th.model_bytes("mlp")
    trainer = Trainer(model, TrainingPlan.classifier_only(model))
    x, y = _split("mlp", "train", 2)
    with pytest.raises(InvalidArgumentError, match="label 12 is outside the model's classes"):
        trainer.gradient_norms(x[0], 12)
    with pytest.raises(InputMismatchError, match="shape"):
        trainer.gradient_norms(x[:, :27], y)
