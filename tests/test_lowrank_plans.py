"""Low-rank plans under a budget (planning/lowrank.py) on the committed
DS-CNN transfer model: which layers, which ranks, and that the arena the
runtime measures fits the budget."""

import pathlib

import numpy as np
import pytest

from planning import contribution, lowrank
from tflm_training import Trainer, UnsupportedModelError, memory_model, tflite_graph
from tflm_training.plan import parameter_layout

TESTS = pathlib.Path(__file__).resolve().parent
EXAMPLES = TESTS.parent / "examples"
MODEL = (EXAMPLES / "ds_cnn_fsdd.tflite").read_bytes()
SETTINGS = {"learning_rate": 0.02, "momentum": 0.9, "batch_size": 5}
INFERENCE = memory_model.inference_arena(MODEL).total


def test_candidates_are_the_pointwise_convolutions_nearest_the_logits_first():
    graph = tflite_graph.read_graph(MODEL)
    candidates = lowrank.candidate_layers(MODEL)
    assert candidates == sorted(candidates, reverse=True)
    assert contribution.classifier_operator(MODEL) not in candidates
    for op in candidates:
        shape = graph.tensors[graph.operators[op].inputs[1]].shape
        assert graph.operators[op].builtin_code == tflite_graph.CONV_2D
        assert tuple(shape[1:3]) == (1, 1)
    # The DS-CNN's first convolution is 10x4 and every other one pointwise.
    assert candidates == [8, 6, 4, 2]


@pytest.mark.parametrize("extra_kb", [64, 128])
def test_plan_fits_the_budget_as_the_runtime_measures_it(extra_kb):
    budget = INFERENCE + extra_kb * 1024
    result = lowrank.plan_for_budget(MODEL, budget, **SETTINGS)
    assert result.ranks and result.arena <= budget
    assert Trainer(MODEL, result.plan).arena_used_bytes() == result.arena
    graph = tflite_graph.read_graph(MODEL)
    for layer in result.plan.layers:
        if layer.update == "lowrank":
            layout = parameter_layout(graph, layer.operator_index)
            assert layer.rank == result.ranks[layer.operator_index]
            assert (
                1
                <= layer.rank
                <= min(lowrank.MAX_RANK, layout["channels"], layout["weights_per_channel"])
            )
            assert np.isclose(
                layer.lr_scale * result.plan.learning_rate, lowrank.ADAM_LEARNING_RATE, rtol=1e-6
            )
        else:
            assert layer.operator_index == contribution.classifier_operator(MODEL)
            assert layer.update == "weights"
    # The greedy rule: the next rank up of any chosen layer would not fit.
    for op, rank in result.ranks.items():
        if rank < min(lowrank.MAX_RANK, lowrank.largest_rank(MODEL, op)):
            bigger = lowrank.make_plan(MODEL, {**result.ranks, op: rank * 2}, **SETTINGS)
            assert memory_model.training_memory(MODEL, bigger).total > budget


def test_a_larger_budget_trains_more():
    small = lowrank.plan_for_budget(MODEL, INFERENCE + 64 * 1024, **SETTINGS)
    large = lowrank.plan_for_budget(MODEL, INFERENCE + 128 * 1024, **SETTINGS)
    assert sum(large.ranks.values()) > sum(small.ranks.values())


def test_too_small_a_budget_names_the_minimum_which_is_then_enough():
    with pytest.raises(lowrank.InfeasibleBudgetError, match=r"at least (\d+) bytes") as error:
        lowrank.plan_for_budget(MODEL, INFERENCE, **SETTINGS)
    minimum = int(error.value.args[0].split("at least ")[1].split(" bytes")[0])
    result = lowrank.plan_for_budget(MODEL, minimum, **SETTINGS)
    assert result.ranks == {8: 1} and result.arena == minimum


@pytest.mark.slow
def test_a_low_rank_plan_trains():
    with np.load(EXAMPLES / "fsdd_train.npz") as data:
        x = contribution.quantize_samples(MODEL, data["x_train"][:40])
        y = data["y_train"][:40].astype(np.int64)
    # A large Adam rate, so that three passes move whole quantization steps.
    result = lowrank.plan_for_budget(
        MODEL, INFERENCE + 64 * 1024, adam_learning_rate=0.5, **SETTINGS
    )
    trainer = Trainer(MODEL, result.plan)
    op = max(result.ranks)
    weights = parameter_layout(tflite_graph.read_graph(MODEL), op)["weights"]
    before = trainer.get_tensor(weights).copy()
    losses = [trainer.train_step(x, y) for _ in range(3)]
    assert losses[-1] < losses[0]
    assert not np.array_equal(trainer.get_tensor(weights), before)


def test_a_layer_the_runtime_cannot_train_is_named_not_reported_as_a_budget(monkeypatch):
    def refuse(model_bytes, plan):
        raise UnsupportedModelError("operator 8 (CONV_2D): not in this build")

    monkeypatch.setattr(memory_model, "training_memory", refuse)
    with pytest.raises(
        ValueError,
        match="operator 8 cannot train low-rank: operator 8 "
        r"\(CONV_2D\): not in this build",
    ) as error:
        lowrank.plan_for_budget(MODEL, INFERENCE + 64 * 1024, **SETTINGS)
    assert not isinstance(error.value, lowrank.InfeasibleBudgetError)
