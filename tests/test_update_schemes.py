"""Memory-budgeted update schemes: the cost model (planning/cost_model.py)
against the runtime, the contribution analysis (planning/contribution.py),
the evolutionary sparse-update search (planning/sparse_search.py) and the
TraDy plan (planning/trady.py), on the committed DS-CNN transfer model."""

import dataclasses
import functools
import itertools
import json
import pathlib
import subprocess
import sys
import zlib

import matplotlib
import matplotlib.image
import numpy as np
import pytest

import tflm_training
from planning import contribution, cost_model, datasets, sparse_search, trady
from tflm_training import (
    BadPlanError,
    Interpreter,
    LayerPlan,
    Trainer,
    TrainingPlan,
    memory_model,
    tflite_graph,
)
from tflm_training.plan import find_logits, trainable_operators

TESTS = pathlib.Path(__file__).resolve().parent
EXAMPLES = TESTS.parent / "examples"
REPO = TESTS.parent
MODEL_PATH = EXAMPLES / "ds_cnn_fsdd.tflite"
MODEL = MODEL_PATH.read_bytes()
CLASSIFIER = 10
SETTINGS = {"learning_rate": 0.02, "momentum": 0.9, "batch_size": 5}
COST_MODELS = [
    MODEL_PATH,
    TESTS / "models" / "residual_relu.tflite",
    TESTS / "models" / "mobilenet_v2_block.tflite",
]


@pytest.fixture(scope="module")
def fsdd():
    """The committed FSDD training clips quantized for the model."""
    with np.load(EXAMPLES / "fsdd_train.npz") as data:
        return contribution.quantize_samples(MODEL, data["x_train"]), data["y_train"]


# -- cost model -----------------------------------------------------------------------------


def _channel_subset(rng, channels):
    kind = rng.integers(3)
    if kind == 0:
        return list(range(channels))
    if kind == 1:
        return list(range(int(rng.integers(1, channels + 1))))
    count = int(rng.integers(1, channels + 1))
    return sorted(int(c) for c in rng.choice(channels, count, replace=False))


def _random_static_plan(rng, model):
    """1 to 4 trainable layers (weights or bias, random channel subsets),
    momentum on or off, batch 1 or more, residual on or off."""
    graph = tflite_graph.read_graph(model)
    logits = find_logits(graph)
    trainable = trainable_operators(model)
    chosen = sorted(rng.choice(len(trainable), int(rng.integers(1, 5)), replace=False))
    layers = []
    for k in chosen:
        op, _, channels, has_bias = trainable[k]
        update = "bias" if has_bias and rng.random() < 0.35 else "weights"
        layers.append(LayerPlan(op, update, _channel_subset(rng, channels)))
    return TrainingPlan(
        zlib.crc32(model),
        len(graph.tensors),
        len(graph.operators),
        logits,
        graph.tensors[logits].num_elements,
        layers,
        learning_rate=0.01,
        momentum=float(rng.choice([0.0, 0.9])),
        batch_size=int(rng.choice([1, 1, 5, 32])),
        residual=bool(rng.random() < 0.75),
    )


@pytest.mark.slow
@pytest.mark.parametrize("path", COST_MODELS, ids=lambda p: p.stem)
def test_cost_model_equals_trainer_over_random_static_plans(path):
    model = path.read_bytes()
    rng = np.random.default_rng(7)
    inference = Interpreter.from_bytes(model).arena_used_bytes()
    for _ in range(40):
        plan = _random_static_plan(rng, model)
        trainer = Trainer(model, plan)
        cost = cost_model.plan_cost(model, plan, board=None)
        assert cost.total == trainer.arena_used_bytes()
        assert cost.parts == trainer.memory()
        assert cost.inference == inference
        assert cost.extra == cost.total - inference
        assert (
            cost.tables
            + cost.parameter_copies
            + cost.optimizer_state
            + cost.sampled_pool
            + sum(cost.other_parts.values())
            + cost.planned_region
        ) == cost.total
        assert 0 < sum(cost.region_peak.values()) <= cost.planned_region
        assert cost_model.training_arena(model, plan) == cost.total


def test_cost_model_board_room_follows_board_json():
    from planning import footprint

    limits = footprint.board_limits("nrf52840")
    room = limits["ram"] - limits["stack"] - footprint.RAM_RESERVE
    assert cost_model.ram_room("nrf52840") == room
    small = cost_model.plan_cost(MODEL, TrainingPlan.classifier_only(MODEL, **SETTINGS))
    assert small.room == room and small.fits
    everything = TrainingPlan.for_model(
        MODEL, {op: None for op, *_ in trainable_operators(MODEL)}, **SETTINGS
    )
    big = cost_model.plan_cost(MODEL, everything)
    assert big.total > room and not big.fits
    assert any("does NOT fit" in line for line in big.describe())
    assert json.loads(json.dumps(big.as_dict()))["fits"] is False


# -- contribution analysis ------------------------------------------------------------------


def _small_analysis(fsdd, tmp_path, **overrides):
    x, y = fsdd
    options = dict(
        samples=20,
        val_samples=20,
        epochs=1,
        max_layers=2,
        seeds=(0,),
        cache_path=str(tmp_path / "cache.json"),
        **SETTINGS,
    )
    options.update(overrides)
    return contribution.analyze(MODEL, x, y, **options)


@pytest.mark.slow
def test_contribution_runs_are_the_trainer_runs(fsdd, tmp_path):
    table = _small_analysis(fsdd, tmp_path, seeds=(0, 1), metric="loss")
    assert table.classifier == CLASSIFIER and table.layers == [7, 8]
    # Bias depths over all 9 layers before the classifier by default.
    assert table.bias_analysed == list(range(9)) and table.bias_depths == list(range(1, 10))
    assert table.ratios == list(contribution.RATIOS) and not table.from_cache
    data = contribution.prepare_data(*fsdd, samples=20, val_samples=20)
    settings = contribution.Settings(seeds=(0, 1), **SETTINGS)

    def measured(layers):
        """(accuracy, loss) of the plan, means over the seeds."""
        plan = contribution.make_plan(MODEL, layers, settings)
        runs = [
            contribution.train_and_evaluate(MODEL, plan, data, settings, seed) for seed in (0, 1)
        ]
        return tuple(np.mean(values) for values in zip(*runs))

    def accuracy(layers):
        return measured(layers)[0] - measured([head])[0]

    def loss_drop(layers):
        return measured([head])[1] - measured(layers)[1]

    head = LayerPlan(CLASSIFIER, "weights")
    assert table.metric == "loss"
    assert table.baseline_accuracy == pytest.approx(measured([head])[0])
    assert table.baseline["loss"] == pytest.approx(measured([head])[1])
    assert table.delta_bias(0) == 0.0
    assert table.delta_bias(1) == pytest.approx(loss_drop([LayerPlan(8, "bias"), head]))
    assert table.delta_bias(2) == pytest.approx(
        loss_drop([LayerPlan(7, "bias"), LayerPlan(8, "bias"), head])
    )
    all_biases = [LayerPlan(op, "bias") for op in range(9)] + [head]
    assert table.delta_bias(9) == pytest.approx(loss_drop(all_biases))
    by_accuracy = _small_analysis(fsdd, tmp_path, seeds=(0, 1), metric="accuracy")
    assert by_accuracy.from_cache and by_accuracy.metric == "accuracy"
    assert by_accuracy.delta_bias(9) == pytest.approx(accuracy(all_biases))
    assert by_accuracy.delta_weight(7, 0.125) == pytest.approx(
        accuracy([LayerPlan(7, "weights", range(8)), head])
    )
    # ceil(r * 64) first channels: 1/8 -> channels 0..7.
    assert contribution.ratio_channels(0.125, 64) == list(range(8))
    assert contribution.ratio_channels(0.125, 10) == [0, 1]
    assert table.delta_weight(7, 0.125) == pytest.approx(
        loss_drop([LayerPlan(7, "weights", range(8)), head])
    )
    assert table.delta_weight(8, 0) == 0.0
    assert all(len(run["runs"]) == 2 for run in table.weight[8])
    assert (
        table.weight[8][-1]["arena"]
        == memory_model.training_memory(
            MODEL, contribution.make_plan(MODEL, [LayerPlan(8, "weights"), head], settings)
        ).total
    )
    lines = table.describe()
    assert any(line.split()[:2] == ["8", "64"] for line in lines)
    assert any(
        line.split()[:4] == ["0", "64", "9", "%+.1f" % (100 * table.delta_bias(9))]
        and line.split()[4:] == ["n/a"] * 4
        for line in lines
    )


def test_contribution_metric_must_be_known(fsdd, tmp_path):
    with pytest.raises(ValueError, match="metric must be one of accuracy, loss"):
        _small_analysis(fsdd, tmp_path, metric="f1")


def test_bias_depths_are_every_depth_to_8_then_a_geometric_grid():
    assert contribution.bias_depths(0) == []
    assert contribution.bias_depths(6) == [1, 2, 3, 4, 5, 6]
    assert contribution.bias_depths(9) == list(range(1, 10))
    assert contribution.bias_depths(17) == list(range(1, 9)) + [10, 12, 16, 17]
    assert contribution.bias_depths(30) == list(range(1, 9)) + [10, 12, 16, 20, 24, 30]
    assert contribution.bias_depths(40) == list(range(1, 9)) + [10, 12, 16, 20, 24, 32, 40]
    assert contribution.bias_depths(100)[-5:] == [48, 64, 80, 96, 100]
    for layers in range(1, 300):
        depths = contribution.bias_depths(layers)
        assert depths[:8] == list(range(1, min(8, layers) + 1)) and depths[-1] == layers
        assert all(a < b <= 4 * a / 3 for a, b in zip(depths[7:], depths[8:]))


@pytest.mark.slow
def test_contribution_measures_bias_depths_beyond_the_weight_layers(tmp_path, monkeypatch):
    """mobilenet_v2_block has 13 trainable layers before its classifier:
    biases at depths 1..8, 10, 12 and 13 over all of them, weights of the
    last 2 only."""
    model = (TESTS / "models" / "mobilenet_v2_block.tflite").read_bytes()
    ops = [op for op, _, _ in contribution.candidate_layers(model)]
    assert len(ops) == 13
    x = np.random.default_rng(0).integers(0, 256, (40, 32, 32, 3), np.uint8)
    y = np.arange(40) % 5
    trained = []
    real = contribution.train_and_evaluate

    def recording(model_bytes, plan, data, settings, seed):
        trained.append(sorted((layer.operator_index, layer.update) for layer in plan.layers))
        return real(model_bytes, plan, data, settings, seed)

    monkeypatch.setattr(contribution, "train_and_evaluate", recording)
    table = contribution.analyze(
        model, contribution.quantize_samples(model, x), y, max_layers=2, cache_path=None, **SETTINGS
    )
    assert table.layers == ops[-2:] and table.bias_analysed == ops
    assert table.bias_depths == list(range(1, 9)) + [10, 12, 13]
    head = (table.classifier, "weights")
    assert trained[0] == [head]
    assert trained[1 : 1 + len(table.bias_depths)] == [
        sorted([(op, "bias") for op in ops[-k:]] + [head]) for k in table.bias_depths
    ]
    assert len(trained) == 1 + len(table.bias_depths) + 2 * len(table.ratios)
    assert table.bias_layers(10) == ops[-10:] and table.bias_layers(0) == []
    assert table.delta_bias(12) is not None
    for depth in (9, 11, 14):
        with pytest.raises(ValueError, match=f"bias depth {depth} was not measured"):
            table.delta_bias(depth)
    rows = table.rows()
    assert [op for op, *_ in rows] == [ops[-k] for k in table.bias_depths]
    assert [bias for _, _, bias, _ in rows] == [table.delta_bias(k) for k in table.bias_depths]
    assert all(weights == [None] * 4 for _, _, _, weights in rows[2:])
    assert rows[0][3] == [table.delta_weight(ops[-1], r) for r in table.ratios]
    assert (
        "biases: depths 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 13 of the last 13 layers; "
        "weights: the last 2 layers" in table.describe()
    )


@pytest.mark.slow
def test_contribution_cache_reads_same_inputs_and_recomputes_others(fsdd, tmp_path, monkeypatch):
    first = _small_analysis(fsdd, tmp_path, max_layers=1, max_bias_layers=3)
    assert not first.from_cache and first.bias_depths == [1, 2, 3]
    assert first.bias_analysed == [6, 7, 8] and first.layers == [8]
    round_trip = contribution.Contributions.from_json(json.loads(json.dumps(first.as_json())))
    assert round_trip == first

    def no_training(*args, **kwargs):
        raise AssertionError("a cached analysis must not train")

    monkeypatch.setattr(contribution, "train_and_evaluate", no_training)
    again = _small_analysis(fsdd, tmp_path, max_layers=1, max_bias_layers=3)
    assert again.from_cache and again.as_json() == first.as_json()
    assert dataclasses.replace(again, from_cache=False) == first
    monkeypatch.undo()
    other_lr = _small_analysis(fsdd, tmp_path, max_layers=1, max_bias_layers=3, learning_rate=0.05)
    assert not other_lr.from_cache and other_lr.key != first.key
    x, y = fsdd
    other_data = _small_analysis(
        (x[::-1].copy(), y[::-1].copy()), tmp_path, max_layers=1, max_bias_layers=3
    )
    assert not other_data.from_cache and other_data.key != first.key
    deeper = _small_analysis(fsdd, tmp_path, max_layers=1, max_bias_layers=4)
    assert not deeper.from_cache and deeper.key != first.key
    assert deeper.bias[:3] == first.bias
    entries = json.loads((tmp_path / "cache.json").read_text())
    assert set(entries) == {first.key, other_lr.key, other_data.key, deeper.key}


@pytest.mark.slow
def test_untrainable_plans_are_recorded_unavailable(fsdd, tmp_path, monkeypatch):
    real = memory_model.training_memory

    def refuses_op_7_weights(model, plan):
        if any(layer.operator_index == 7 and layer.update == "weights" for layer in plan.layers):
            raise BadPlanError("training plan: operator 7 refused by this test")
        return real(model, plan)

    monkeypatch.setattr(contribution.memory_model, "training_memory", refuses_op_7_weights)
    table = _small_analysis(fsdd, tmp_path, cache_path=None)
    assert all(
        not run["available"] and "refused by this test" in run["reason"] for run in table.weight[7]
    )
    assert all(table.delta_weight(7, r) is None for r in contribution.RATIOS)
    assert table.delta_bias(2) is not None and table.delta_weight(8, 1.0) is not None
    assert any("unavailable: op 7 weights" in line for line in table.describe())
    # The search never picks an unavailable choice.
    result = sparse_search.search(MODEL, table, 10**6, population=10, generations=3)
    assert result.genome[1] == 0


# -- sparse search ----------------------------------------------------------------------------


def _synthetic_run(delta):
    """A run 0.5 + delta accurate whose loss is 2 - delta (the same gain in
    both metrics)."""
    return {
        "available": True,
        "accuracy": 0.5 + delta,
        "runs": [0.5 + delta],
        "loss": 2.0 - delta,
        "loss_runs": [2.0 - delta],
    }


def _synthetic_table(layers, seed, bias_analysed=None, depths=None):
    """A Contributions table with random gains (larger for more channels)
    over `layers` of the DS-CNN (weights) and bias depths `depths`
    (default contribution.bias_depths) over `bias_analysed` (default
    `layers`)."""
    rng = np.random.default_rng(seed)
    bias_analysed = list(layers if bias_analysed is None else bias_analysed)
    depths = contribution.bias_depths(len(bias_analysed)) if depths is None else list(depths)
    weight = {op: [_synthetic_run(d) for d in np.sort(rng.uniform(-0.02, 0.1, 4))] for op in layers}
    bias = [_synthetic_run(d) for d in rng.uniform(-0.02, 0.06, len(depths))]
    analysed = set(layers) | set(bias_analysed)
    return contribution.Contributions(
        key="synthetic",
        settings=dict(SETTINGS, qas=True, epochs=1, seeds=[0]),
        classifier=CLASSIFIER,
        layers=list(layers),
        bias_analysed=bias_analysed,
        channels={op: 64 for op in analysed},
        has_bias={op: True for op in analysed},
        ratios=list(contribution.RATIOS),
        before=0.1,
        baseline=_synthetic_run(0.0),
        bias_depths=depths,
        bias=bias,
        weight=weight,
    )


def _all_genomes(table, grid):
    return itertools.product(
        [0] + table.bias_depths,
        *[sparse_search.weight_choices(table, op, grid) for op in table.layers],
    )


def _brute_force(table, budget, grid=sparse_search.GRID):
    best = None
    for genome in _all_genomes(table, grid):
        plan = sparse_search.genome_plan(MODEL, table, genome)
        if memory_model.training_memory(MODEL, plan).total > budget:
            continue
        score = table.delta_bias(genome[0]) + sum(
            sparse_search.predicted_weight_gain(table, op, r)
            for op, r in zip(table.layers, genome[1:])
        )
        if best is None or score > best[0] + 1e-12:
            best = (score, genome)
    return best


BUDGET = cost_model.inference_arena(MODEL) + 32 * 1024


@pytest.mark.slow
@pytest.mark.parametrize(
    "seed, bias_analysed, depths, grid",
    [
        (1, None, None, 0),
        (2, None, None, 8),
        (1, range(9), [1, 2, 4, 6, 9], 4),
        (2, range(9), [1, 3, 5, 6, 9], 0),
    ],
)
def test_search_finds_the_brute_force_optimum(seed, bias_analysed, depths, grid):
    table = _synthetic_table([6, 7, 8], seed, bias_analysed, depths)
    best_score, _ = _brute_force(table, BUDGET, grid)
    result = sparse_search.search(
        MODEL, table, BUDGET, population=20, generations=15, parents=5, seed=seed, grid=grid
    )
    assert result.score == pytest.approx(best_score)
    assert result.arena <= BUDGET
    assert result.genome[0] in [0] + table.bias_depths
    # The finalists: the best genome of each shape, the result first.
    shapes = [sparse_search.genome_shape(table, g) for g in result.finalists]
    assert result.finalists[0] == result.genome and len(set(shapes)) == len(shapes) > 1
    assert all(
        memory_model.training_memory(MODEL, sparse_search.genome_plan(MODEL, table, g)).total
        <= BUDGET
        for g in result.finalists
    )


@pytest.mark.slow
def test_search_chooses_deep_biases_beyond_the_weight_layers():
    """Bias depths over all 9 layers before the classifier, weights of the
    last 2: where deeper biases gain more than any weights, the search
    trains biases far below the weight-analysed layers."""
    table = _synthetic_table([7, 8], 4, bias_analysed=range(9))
    assert table.bias_depths == list(range(1, 10))
    table.bias = [_synthetic_run(0.1 * k) for k in table.bias_depths]
    best_score, _ = _brute_force(table, BUDGET)
    result = sparse_search.search(MODEL, table, BUDGET, population=20, generations=10)
    assert result.score == pytest.approx(best_score) and result.arena <= BUDGET
    k, ratios = result.genome[0], result.genome[1:]
    assert k > len(table.layers)
    weights = {op for op, r in zip(table.layers, ratios) if r}
    assert {layer.operator_index for layer in result.plan.layers if layer.update == "bias"} == set(
        table.bias_layers(k)
    ) - weights
    # With room for everything, the deepest biases (all 9 layers).
    everything = sparse_search.search(MODEL, table, 10**6, population=20, generations=10)
    assert everything.genome[0] == 9
    weights = {op for op, r in zip(table.layers, everything.genome[1:]) if r}
    assert {
        layer.operator_index for layer in everything.plan.layers if layer.update == "bias"
    } == set(range(9)) - weights
    assert "bias depth 9" in everything.describe()[0]
    assert "predicted Δaccuracy" in everything.describe()[0]
    by_loss = sparse_search.search(
        MODEL, dataclasses.replace(table, metric="loss"), 10**6, population=20, generations=10
    )
    assert by_loss.metric == "loss" and by_loss.genome == everything.genome
    assert (
        "predicted held-out loss drop %+.1f hundredths of a nat" % (100 * by_loss.score)
        in by_loss.describe()[0]
    )


@pytest.mark.slow
def test_search_is_feasible_reproducible_and_beats_single_layers():
    table = _synthetic_table([1, 2, 3, 4, 5, 6, 7, 8], 3)
    result = sparse_search.search(MODEL, table, BUDGET, seed=5)
    assert result.arena <= BUDGET
    trainer = Trainer(MODEL, result.plan)
    assert trainer.arena_used_bytes() == result.arena
    assert result.plan.layers[-1].operator_index == CLASSIFIER
    assert result.plan.layers[-1].update == "weights"
    assert len(result.plan.layers[-1].channels) == 10
    assert result.history == sorted(result.history)
    again = sparse_search.search(MODEL, table, BUDGET, seed=5)
    assert (again.genome, again.score, again.arena) == (result.genome, result.score, result.arena)
    assert again.plan.to_bytes() == result.plan.to_bytes()
    zero = (0,) + (0.0,) * len(table.layers)
    singles = [
        zero[: 1 + i] + (r,) + zero[2 + i :]
        for i in range(len(table.layers))
        for r in contribution.RATIOS
    ] + [(k,) + zero[1:] for k in table.bias_depths]
    for genome in singles:
        plan = sparse_search.genome_plan(MODEL, table, genome)
        if memory_model.training_memory(MODEL, plan).total <= BUDGET:
            score = table.delta_bias(genome[0]) + sum(
                table.delta_weight(op, r) for op, r in zip(table.layers, genome[1:])
            )
            assert result.score >= score - 1e-12


def test_unmeasured_ratios_are_predicted_on_the_line_between_measured_ones():
    table = _synthetic_table([7, 8], 6)
    gain = {r: table.delta_weight(8, r) for r in contribution.RATIOS}
    predict = functools.partial(sparse_search.predicted_weight_gain, table, 8)
    assert predict(0.0) == 0.0 and predict(0.25) == gain[0.25]
    assert predict(1 / 16) == pytest.approx(gain[0.125] / 2)  # 4 of 64 channels
    assert predict(3 / 16) == pytest.approx((gain[0.125] + gain[0.25]) / 2)
    assert predict(0.875) == pytest.approx(gain[0.5] + 0.75 * (gain[1.0] - gain[0.5]))
    # 16 grid ratios on 64 channels: one ratio per channel count, from the
    # smallest measured (1/8) to 1.
    assert sparse_search.weight_choices(table, 8) == [0.0] + [j / 16 for j in range(2, 17)]
    assert sparse_search.weight_choices(table, 8, grid=0) == [0.0] + list(contribution.RATIOS)
    # On 40 channels the line runs over channel counts: 5/16 trains 13,
    # between 1/4's 10 and 1/2's 20.
    table.channels[8] = 40
    assert predict(5 / 16) == pytest.approx(gain[0.25] + 0.3 * (gain[0.5] - gain[0.25]))
    # On 10 channels the grid's ratios collapse to one per count, the
    # measured ratio standing for its count.
    table.channels[8] = 10
    choices = sparse_search.weight_choices(table, 8)
    counts = [len(contribution.ratio_channels(r, 10)) if r else 0 for r in choices]
    assert counts == [0] + list(range(2, 11))
    assert set(contribution.RATIOS) <= set(choices)
    # An unavailable measurement takes the ratios next to it out too.
    table.channels[8] = 64
    table.weight[8][2] = {"available": False, "reason": "diverged"}
    assert predict(0.5) is None and predict(7 / 16) is None and predict(9 / 16) is None
    assert predict(0.25) == gain[0.25] and predict(1.0) == gain[1.0]
    assert sparse_search.weight_choices(table, 8) == [0.0] + [j / 16 for j in range(2, 5)] + [1.0]


def test_search_uses_the_room_the_measured_ratios_leave():
    """A budget between op 8's 1/4 and 1/2 (gains rising with channels):
    the measured ratios stop at 1/4; the grid trains as many channels as fit."""
    table = _synthetic_table([8], 7, bias_analysed=[8], depths=[1])
    table.bias = [_synthetic_run(-0.05)]
    cost = {
        r: memory_model.training_memory(
            MODEL, sparse_search.genome_plan(MODEL, table, (0, r))
        ).total
        for r in (0.25, 7 / 16, 0.5)
    }
    assert cost[0.25] < cost[7 / 16] < cost[0.5]
    coarse = sparse_search.search(MODEL, table, cost[7 / 16], grid=0, population=8, generations=3)
    assert coarse.genome == (0, 0.25)
    fine = sparse_search.search(MODEL, table, cost[7 / 16], population=8, generations=3)
    assert fine.genome == (0, 7 / 16) and fine.arena == cost[7 / 16]
    assert fine.score == pytest.approx(sparse_search.predicted_weight_gain(table, 8, 7 / 16))
    assert "op 8 weights 7/16" in fine.describe()[0]
    assert [contribution.ratio_name(r) for r in (0.125, 1.0, 0.3)] == ["1/8", "1", "0.3"]
    assert [len(layer.channels) for layer in fine.plan.layers] == [28, 10]
    with pytest.raises(ValueError, match="grid must be a positive whole number"):
        sparse_search.search(MODEL, table, cost[0.5], grid=2.5)


def test_search_refuses_an_impossible_budget_with_the_minimum():
    table = _synthetic_table([7, 8], 0)
    need = memory_model.training_memory(
        MODEL, TrainingPlan.classifier_only(MODEL, **SETTINGS)
    ).total
    with pytest.raises(sparse_search.InfeasibleBudgetError) as error:
        sparse_search.search(MODEL, table, need - 1)
    assert f"at least {need} bytes" in str(error.value)
    assert "biases only" in str(error.value)
    result = sparse_search.search(MODEL, table, need, population=6, generations=2)
    assert result.arena == need and result.genome == (0, 0.0, 0.0)


# -- cost model of sampled plans ----------------------------------------------------------------


def test_cost_model_equals_trainer_over_random_sampled_plans():
    rng = np.random.default_rng(11)
    trainable = [op for op, *_ in trainable_operators(MODEL) if op != CLASSIFIER]
    for _ in range(20):
        ops = sorted(
            int(op) for op in rng.choice(trainable, int(rng.integers(1, 4)), replace=False)
        )
        candidates = {op: _channel_subset(rng, 64) for op in ops}
        settings = {
            "momentum": float(rng.choice([0.0, 0.9])),
            "batch_size": int(rng.choice([1, 5])),
            "residual": bool(rng.random() < 0.75),
        }
        cheapest = min(
            max(
                1,
                tflm_training.plan.channel_state_bytes(
                    TrainingPlan(0, 0, 0, 0, 2, [LayerPlan(0)], **settings),
                    _weights_per_channel(op),
                    True,
                ),
            )
            for op in ops
        )
        plan = TrainingPlan.sampled(
            MODEL,
            candidates,
            cheapest + int(rng.integers(0, 9000)),
            seed=int(rng.integers(2**32)),
            **settings,
        )
        cost = cost_model.plan_cost(MODEL, plan, board=None)
        trainer = Trainer(MODEL, plan)
        assert cost.total == trainer.arena_used_bytes()
        assert cost.parts == trainer.memory()
        assert cost.sampled_pool >= plan.sample_budget > 0
        assert sum(v for k, v in cost.parts.items() if k != "total") == cost.total
        assert any("sampled from" in line for line in cost.describe())


def _weights_per_channel(op):
    graph = tflite_graph.read_graph(MODEL)
    return tflm_training.plan.parameter_layout(graph, op)["weights_per_channel"]


# -- TraDy --------------------------------------------------------------------------------------

# DS-CNN shapes: (C_W, C_A) per trainable operator before the classifier.
DS_CNN_SIZES = {
    0: (10 * 4 * 1, 25 * 20),
    1: (9, 25 * 20),
    2: (64, 25 * 20),
    3: (9, 13 * 10),
    4: (64, 13 * 10),
    5: (9, 13 * 10),
    6: (64, 13 * 10),
    7: (9, 13 * 10),
    8: (64, 13 * 10),
}
RANK_SAMPLES = 24


@pytest.fixture(scope="module")
def ranking(fsdd):
    return trady.rank_layers(MODEL, *fsdd, samples=RANK_SAMPLES, seed=3, **SETTINGS)


@pytest.mark.slow
def test_trady_ranking_matches_numpy_from_gradient_norms(fsdd, ranking):
    x, y = fsdd
    rows = datasets.balanced_subset(np.asarray(y), RANK_SAMPLES, np.random.default_rng(3))
    probe = TrainingPlan.for_model(
        MODEL, {op: None for op in list(DS_CNN_SIZES) + [10]}, **SETTINGS
    )
    norms = Trainer(MODEL, probe).gradient_norms(x[rows], y[rows])
    scores = {
        op: float(np.sum(np.sqrt(norms[op]) / (c_w + c_a)))
        for op, (c_w, c_a) in DS_CNN_SIZES.items()
    }
    order = sorted(scores, key=lambda op: -scores[op])
    assert [layer.operator for layer in ranking.layers] == order
    assert CLASSIFIER not in [layer.operator for layer in ranking.layers]
    total = sum(scores.values())
    cumulative = np.cumsum([scores[op] / total for op in order])
    keep = int(np.argmax(cumulative >= 0.97)) + 1
    assert ranking.selected == order[:keep]
    for layer, cum in zip(ranking.layers, cumulative):
        assert layer.score == pytest.approx(scores[layer.operator], rel=1e-9)
        assert layer.cumulative == pytest.approx(cum)
        assert (layer.weights_per_channel, layer.map_size) == DS_CNN_SIZES[layer.operator]
        np.testing.assert_array_equal(ranking.norms[layer.operator], norms[layer.operator])
    again = trady.rank_layers(MODEL, x, y, samples=RANK_SAMPLES, seed=3, **SETTINGS)
    assert again.describe() == ranking.describe()
    assert [layer.score for layer in again.layers] == [layer.score for layer in ranking.layers]


@pytest.mark.parametrize("extra_kb,fills", [(32, True), (80, False)])
def test_trady_plan_fills_the_budget_or_holds_every_channel(ranking, extra_kb, fills):
    budget = cost_model.inference_arena(MODEL) + extra_kb * 1024
    result = trady.plan_for_budget(MODEL, ranking, budget, seed=4)
    plan = result.plan
    assert plan.layers[-1].operator_index == CLASSIFIER
    assert plan.layers[-1].update == "weights" and len(plan.layers[-1].channels) == 10
    assert [layer.operator_index for layer in plan.layers[:-1]] == sorted(result.candidates)
    assert all(layer.update == "sampled" for layer in plan.layers[:-1])
    assert sorted(result.candidates + result.dropped) == sorted(ranking.selected)
    assert result.candidates == sorted(result.candidates, key=ranking.selected.index)
    assert plan.seed == 4 and plan.sample_budget == result.pool
    trainer = Trainer(MODEL, plan)
    assert trainer.arena_used_bytes() == result.arena <= budget
    assert memory_model.training_memory(MODEL, plan).total == result.arena
    assert result.fixed + result.pool == result.arena
    everything = trady.channel_bytes(ranking, result.candidates)
    assert (result.pool < everything) == fills
    if fills:
        bigger = dataclasses.replace(plan, sample_budget=plan.sample_budget + 1)
        assert memory_model.training_memory(MODEL, bigger).total > budget
    else:  # room for every channel: the pool holds exactly them, the arena stays below
        assert result.pool == everything and result.arena < budget
    # The pool holds a channel of every candidate.
    assert result.pool >= max(layer.channel_cost for layer in plan.layers[:-1])
    # Training draws channels within the pool.
    trainer.begin_epoch(1)
    drawn = trainer.selected_channels()
    spent = sum(len(drawn[layer.operator_index]) * layer.channel_cost for layer in plan.layers[:-1])
    assert 0 < spent <= result.pool


def _largest_pool(candidates, costs, budget):
    """The largest sample pool whose sampled plan fits `budget`, or None."""

    def arena(pool):
        plan = TrainingPlan.sampled(MODEL, sorted(candidates), pool, 4, **SETTINGS)
        return memory_model.training_memory(MODEL, plan).total

    pool = max(costs[op] for op in candidates)
    if arena(pool) > budget:
        return None
    while arena(pool + 1) <= budget:
        pool += max(1, (budget - arena(pool + 1)) // 2)
    while arena(pool) > budget:
        pool -= 1
    return pool


def _fit(ranking, candidates, budget):
    """(Σscore x min(1, pool / channel bytes), pool / channel bytes) of a
    set, (-1, 0) when it does not fit."""
    layers = {layer.operator: layer for layer in ranking.layers}
    costs = {op: layer.channel_cost for op, layer in layers.items()}
    pool = _largest_pool(candidates, costs, budget)
    channel_bytes = sum(layers[op].channels * costs[op] for op in candidates)
    if pool is None:
        return -1.0, 0.0
    share = pool / channel_bytes
    return sum(layers[op].score for op in candidates) * min(1.0, share), share


# 12 KB: op 6 (ranked first) does not fit; 16 KB: it fits with a pool for 4% of its
# channels, so the greedy path (op 5 alone) is taken.
@pytest.mark.slow
@pytest.mark.parametrize(
    "extra_kb,kind", [(12, "greedy"), (16, "greedy"), (96, "top-k"), (128, "top-k"), (200, "top-k")]
)
def test_trady_keeps_the_candidates_that_draw_the_most_score(ranking, extra_kb, kind):
    """The top k with the largest expected score among those whose pool
    holds 1/8 of their channels; when none does, the best of the top-k
    sets and the greedy path (each step adds the layer that raises the
    expected score most)."""
    budget = cost_model.inference_arena(MODEL) + extra_kb * 1024
    selected = ranking.selected
    sets = [selected[:k] for k in range(1, len(selected) + 1)]
    fits = [_fit(ranking, chosen, budget) for chosen in sets]
    qualified = [i for i, (_, share) in enumerate(fits) if share >= 1 / 8]
    if not qualified:
        path, reached = [], 0.0
        while True:
            steps = [
                (_fit(ranking, path + [op], budget)[0], op) for op in selected if op not in path
            ]
            value, op = max(steps, key=lambda step: step[0], default=(-1.0, None))
            if value <= reached:
                break
            path, reached = path + [op], value
            sets.append(sorted(path, key=selected.index))
            fits.append(_fit(ranking, sets[-1], budget))
        qualified = range(len(sets))
    best = max(qualified, key=lambda i: (fits[i][0], -len(sets[i]), -i))
    assert (best < len(selected)) == (kind == "top-k")
    if extra_kb == 32:
        assert 0 < fits[0][1] < 1 / 8  # the top layer fits, with too small a pool
        assert sets[best] == [5]
    result = trady.plan_for_budget(MODEL, ranking, budget, seed=4)
    assert result.candidates == sets[best]
    assert result.dropped == [op for op in selected if op not in sets[best]]
    layers = {layer.operator: layer for layer in ranking.layers}
    assert result.pool == min(
        _largest_pool(sets[best], {op: layer.channel_cost for op, layer in layers.items()}, budget),
        trady.channel_bytes(ranking, sets[best]),
    )
    assert trady.expected_score(ranking, result.candidates, result.pool) == pytest.approx(
        fits[best][0]
    )


@pytest.mark.slow
def test_trady_prefers_a_top_k_set_whose_pool_holds_an_eighth_of_its_channels(ranking):
    """With op 4's score raised a thousandfold, ops 6 and 4 draw the most
    expected score at +52 KB, but their pool holds under 1/8 of their
    channels, so op 6 alone (a pool for half of its channels) is kept."""
    boosted = dataclasses.replace(
        ranking,
        layers=[
            dataclasses.replace(layer, score=layer.score * (1000 if layer.operator == 4 else 1))
            for layer in ranking.layers
        ],
    )
    assert boosted.selected[:2] == [6, 4]
    budget = cost_model.inference_arena(MODEL) + 52 * 1024
    both, both_share = _fit(boosted, [6, 4], budget)
    alone, alone_share = _fit(boosted, [6], budget)
    assert both > alone and 0 < both_share < 1 / 8 <= alone_share
    result = trady.plan_for_budget(MODEL, boosted, budget)
    assert result.candidates == [6]


@pytest.mark.slow
def test_trady_refuses_a_too_small_budget(ranking):
    with pytest.raises(trady.InfeasibleBudgetError) as error:
        trady.plan_for_budget(MODEL, ranking, cost_model.inference_arena(MODEL))
    message = str(error.value)
    need = int(message.split("at least ")[1].split(" bytes")[0])
    cheapest = int(message.split("cheapest candidate layer, op ")[1].split(",")[0])
    needs = [
        memory_model.training_memory(
            MODEL, TrainingPlan.sampled(MODEL, [op], layer.channel_cost, 0, **SETTINGS)
        ).total
        for op, layer in ((ranked.operator, ranked) for ranked in ranking.layers if ranked.selected)
    ]
    assert need == min(needs) and cheapest in ranking.selected
    assert "classifier alone" in message
    result = trady.plan_for_budget(MODEL, ranking, need)
    assert result.candidates == [cheapest] and result.arena == need
    with pytest.raises(trady.InfeasibleBudgetError):
        trady.plan_for_budget(MODEL, ranking, need - 1)


def test_trady_without_candidates_says_the_gradients_are_zero(ranking):
    none = dataclasses.replace(
        ranking, layers=[dataclasses.replace(layer, selected=False) for layer in ranking.layers]
    )
    with pytest.raises(ValueError, match="no layer has a nonzero gradient"):
        trady.plan_for_budget(MODEL, none, 10**6)


# -- tools/analyze.py ---------------------------------------------------------------------------


def _run_analyze(out, *flags):
    command = [
        sys.executable,
        str(REPO / "tools" / "analyze.py"),
        "--samples",
        "20",
        "--val_samples",
        "20",
        "--rank_samples",
        "16",
        "--epochs",
        "1",
        "--max_layers",
        "2",
        "--cache",
        "none",
        "--out",
        str(out),
        *flags,
    ]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)


@pytest.mark.firmware
def test_analyze_tool_prints_the_ranking_and_writes_plots(tmp_path):
    result = _run_analyze(tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    from tools import deploy_steps

    samples = deploy_steps.prepare_samples(
        deploy_steps.load_dataset("fsdd"), deploy_steps.model_input(MODEL), None, None, 0
    )
    expected = trady.rank_layers(
        MODEL, samples.train_x, samples.train_y, samples=16, max_layers=2, seed=0, **SETTINGS
    )
    lines = result.stdout.splitlines()
    start = lines.index(expected.describe()[0])
    assert lines[start : start + len(expected.describe())] == expected.describe()
    assert any(line.startswith("searched sparse plan: ") for line in lines)
    assert sum(line.endswith("<- chosen") for line in lines) == 1  # --search_trials 4
    assert any(line.startswith("TraDy plan: sampled ops ") for line in lines)
    assert any(line.split()[:2] == ["8", "64"] for line in lines)  # contribution table row
    for name in ("ranking.png", "contribution.png", "plans.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        image = matplotlib.image.imread(str(tmp_path / name))
        assert image.shape[0] > 100 and image.shape[1] > 100
    report = json.loads((tmp_path / "analysis.json").read_text())
    budget = cost_model.inference_arena(MODEL) + 32 * 1024
    assert report["budget_bytes"] == budget
    trials = report["sparse-search"]["trials"]
    assert 4 <= len(trials) <= 5 and report["sparse-search"]["genome"] in [
        t["genome"] for t in trials
    ]
    for name in ("sparse-search", "trady"):
        plan = TrainingPlan.from_bytes((tmp_path / f"{name}_plan.bin").read_bytes())
        assert Trainer(MODEL, plan).arena_used_bytes() == report[name]["arena"] <= budget
        # Its per-layer report, instructions measured on the emulated board.
        rows = report[name]["layers"]
        assert [r["operator"] for r in rows] == list(range(CLASSIFIER + 1))
        assert {r["operator"] for r in rows if r["trains"]} == {
            layer.operator_index for layer in plan.layers
        }
        assert all(r["instructions_forward"] > 0 for r in rows)
        assert all(r["instructions_backward"] > 0 for r in rows if r["arena_backward"] is not None)
        assert (tmp_path / f"layers_{name}" / "layers.png").is_file()
        assert (
            "| 10 | FULLY_CONNECTED | weights 10/10 |"
            in (tmp_path / f"layers_{name}" / "layers.md").read_text()
        )


@pytest.mark.slow
def test_analyze_tool_says_the_minimum_for_a_too_small_budget(tmp_path):
    result = _run_analyze(tmp_path, "--budget_kb", "60")
    assert result.returncode == 1
    need = memory_model.training_memory(
        MODEL, TrainingPlan.classifier_only(MODEL, **SETTINGS)
    ).total
    assert f"give a budget of at least {need} bytes" in result.stderr
    assert "contribution analysis" not in result.stdout
