"""TraDy channel sampling (runtime/training/tt_channel_sampler.h,
tflm_training/channel_sampler.py): the C runtime and the Python mirror
draw the same channels for every seed, epoch and budget; draws stay within
the budget and fill it; every subset of a layer's candidates is equally
likely; the optimizer state of the drawn channels lies in the pool,
restarts each epoch, and only drawn channels train."""

import ctypes
import itertools
import math

import numpy as np
import pytest

import test_memory_model as layouts
import training_helpers as th
from tflm_training import (
    BadStateError,
    InvalidArgumentError,
    LayerPlan,
    Trainer,
    TrainingPlan,
    _native,
    tflite_graph,
)
from tflm_training.channel_sampler import SplitMix, sample_channels
from tflm_training.plan import channel_state_bytes, parameter_layout

MLP = th.model_bytes("mlp")


def _plan(model, candidates, budget, seed, **settings):
    """A sampled plan; candidates: {operator: (channels or None, cost or None)}."""
    layers = [
        LayerPlan(op, "sampled", channels, channel_cost=cost)
        for op, (channels, cost) in candidates.items()
    ]
    return TrainingPlan.for_model(model, layers, seed=seed, sample_budget=budget, **settings)


def _chi_square_bound(dof):
    """Far above a chi-square of `dof` degrees of freedom: mean dof,
    standard deviation sqrt(2 dof); ten of those above the mean (for these
    dof a tail probability under 1e-9), a test a fair sampler passes and
    any real bias fails by orders of magnitude."""
    return dof + 10 * math.sqrt(2 * dof)


# -- the generator -------------------------------------------------------------


def test_the_generator_is_splitmix64():
    """Published SplitMix64 outputs for state 1234567 (Vigna's
    splitmix64.c); draws are their top 32 bits."""
    rng = SplitMix(0, 0)
    rng.state = 1234567
    want = [
        6457827717110365317,
        3203168211198807973,
        9817491932198370423,
        4593380528125082431,
        16408922859458223821,
    ]
    assert [rng.next32() for _ in want] == [w >> 32 for w in want]


class _CRng(ctypes.Structure):
    _fields_ = [("state", ctypes.c_uint64)]


def test_c_and_python_generators_agree_bit_for_bit():
    lib = _native.library()
    lib.tt_sampler_next.restype = ctypes.c_uint32
    lib.tt_sampler_below.restype = ctypes.c_uint32
    lib.tt_sampler_below.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.tt_sampler_seed.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_uint32]
    # Bounds near 2**32 reject often, so the rejection loop is covered.
    bounds = [1, 2, 3, 7, 100, 65535, 2**31 + 1, 3 * 2**30, 2**32 - 1]
    for seed, epoch in [(0, 0), (1, 0), (0, 1), (2**32 - 1, 2**32 - 1), (123456789, 42)]:
        c_rng = _CRng()
        lib.tt_sampler_seed(ctypes.byref(c_rng), seed, epoch)
        rng = SplitMix(seed, epoch)
        assert c_rng.state == rng.state
        for bound in bounds * 20:
            assert lib.tt_sampler_below(ctypes.byref(c_rng), bound) == rng.below(bound)
            assert lib.tt_sampler_next(ctypes.byref(c_rng)) == rng.next32()


def test_bounded_draws_are_unbiased_where_a_modulo_would_not_be():
    """bound = 3 * 2**30: x % bound would give [0, 2**30) twice the weight
    of the rest (its draws would land below 2**30 half the time)."""
    rng = SplitMix(9, 9)
    draws = np.array([rng.below(3 * 2**30) for _ in range(30000)])
    assert draws.max() < 3 * 2**30
    low = np.count_nonzero(draws < 2**30)
    # Binomial(30000, 1/3): mean 10000, sd 82; a modulo would give 15000.
    assert abs(low - 10000) < 820


# -- the same draw in C and Python ---------------------------------------------------


def _selected(trainer, plan):
    sampled = {layer.operator_index for layer in plan.layers if layer.update == "sampled"}
    return {op: channels for op, channels in trainer.selected_channels().items() if op in sampled}


def _random_sampled_plan(rng, model, operators):
    """Random candidates of `operators`, costs at or above the minimum,
    settings, seed and a budget from the cheapest channel to everything."""
    graph = tflite_graph.read_graph(model)
    momentum = float(rng.choice([0.0, 0.9]))
    batch = int(rng.choice([1, 3]))
    residual = bool(rng.random() < 0.8)
    layers = {}
    probe = TrainingPlan(0, 0, 0, 0, 2, [], momentum=momentum, batch_size=batch, residual=residual)
    for op in operators:
        layout = parameter_layout(graph, op)
        channels, per_channel = layout["channels"], layout["weights_per_channel"]
        subset = sorted(rng.choice(channels, int(rng.integers(1, channels + 1)), replace=False))
        need = max(1, channel_state_bytes(probe, per_channel, True))
        layers[op] = ([int(c) for c in subset], need + int(rng.choice([0, 0, 5, need])))
    total = sum(cost * len(channels) for channels, cost in layers.values())
    cheapest = min(cost for _, cost in layers.values())
    budget = int(rng.integers(cheapest, total + cheapest + 1))
    return _plan(
        model,
        layers,
        budget,
        int(rng.integers(2**32)),
        momentum=momentum,
        batch_size=batch,
        residual=residual,
    )


@pytest.mark.parametrize(
    "name, candidates",
    [
        ("mlp", [1, 2]),
        ("conv_stack", [3, 5, 7]),
        ("ds_cnn", [7, 8, 11]),
        ("mobilenet_v2_block", [11, 12, 13]),
    ],
)
def test_c_draws_what_python_draws_for_many_seeds_epochs_and_budgets(name, candidates):
    model = th.model_bytes(name)
    rng = np.random.default_rng(20261123)
    compared = 0
    for _ in range(12):
        plan = _random_sampled_plan(rng, model, candidates)
        trainer = Trainer(model, plan)
        assert _selected(trainer, plan) == sample_channels(plan, 0)  # init draws epoch 0
        for epoch in [1, 2, 3, 17, 1000, 2**31, 2**32 - 1, 0]:
            trainer.begin_epoch(epoch)
            assert _selected(trainer, plan) == sample_channels(plan, epoch), (plan, epoch)
            compared += 1
    assert compared == 96


def test_draws_stay_within_the_budget_and_fill_it():
    rng = np.random.default_rng(7)
    drawn_nothing = 0
    for _ in range(40):
        plan = _random_sampled_plan(rng, MLP, [1, 2])
        costs = {layer.operator_index: layer.channel_cost for layer in plan.layers}
        for epoch in range(5):
            selection = sample_channels(plan, epoch)
            used = sum(costs[op] * len(channels) for op, channels in selection.items())
            assert used <= plan.sample_budget
            left = plan.sample_budget - used
            for layer in plan.layers:
                taken = selection[layer.operator_index]
                assert taken == sorted(set(taken)) and set(taken) <= set(layer.channels)
                # The walk never stops early: nothing left out still fits.
                untaken = set(layer.channels) - set(taken)
                assert not untaken or layer.channel_cost > left
            drawn_nothing += sum(not channels for channels in selection.values())
    assert drawn_nothing > 0  # layers with no channel in an epoch do occur


# -- uniformity ------------------------------------------------------------------


def test_every_subset_of_a_layer_is_equally_likely():
    """8 candidates, room for 3: each of the 56 subsets should come up
    epochs / 56 times (chi-square, 55 degrees of freedom)."""
    plan = _plan(MLP, {2: ([1, 4, 9, 12, 20, 21, 30, 31], 300)}, 900, seed=77)
    epochs = 5600
    counts = dict.fromkeys(itertools.combinations(plan.layers[0].channels, 3), 0)
    for epoch in range(epochs):
        counts[tuple(sample_channels(plan, epoch)[2])] += 1
    expected = epochs / len(counts)
    statistic = sum((c - expected) ** 2 / expected for c in counts.values())
    assert statistic < _chi_square_bound(len(counts) - 1), statistic


def test_channels_are_equally_likely_within_each_layer_of_a_mixed_plan():
    """Two layers of different costs: a cheaper channel is likelier, but
    within a layer every channel is drawn about equally often (per layer a
    chi-square of its channels' counts against their mean)."""
    plan = _plan(MLP, {1: (None, 4000), 2: (None, 500)}, 12000, seed=3)
    epochs = 3000
    counts = {1: np.zeros(64), 2: np.zeros(32)}
    for epoch in range(epochs):
        for op, channels in sample_channels(plan, epoch).items():
            counts[op][channels] += 1
    for op, count in counts.items():
        p = count.mean() / epochs
        assert 0.02 < p < 0.98
        statistic = np.sum((count - count.mean()) ** 2) / (epochs * p * (1 - p))
        assert statistic < _chi_square_bound(len(count) - 1), (op, statistic)
    assert counts[2].mean() > counts[1].mean()


# -- the trainer -------------------------------------------------------------------


def _pool_layout(plan, selection, model):
    """Where tt_train_resample puts each sampled layer's state arrays:
    {(array name, operator): offset from the pool start}."""
    graph_layers = {layer.operator_index: layer for layer in plan.layers}
    graph = tflite_graph.read_graph(model)
    arrays = [
        ("residual", plan.residual),
        ("velocity", plan.momentum > 0),
        ("accumulator", plan.batch_size > 1),
    ]
    placed, offset = {}, 0
    for op in sorted(selection):
        assert graph_layers[op].update == "sampled"
        layout = parameter_layout(graph, op)
        for what, count in (
            ("weight", len(selection[op]) * layout["weights_per_channel"]),
            ("bias", len(selection[op])),
        ):
            for array, used in arrays:
                if used:
                    placed[(f"{what} {array}", op)] = offset
                    offset += 4 * count
    return placed, offset


def test_sampled_state_lies_in_the_pool_and_restarts_every_epoch():
    plan = _plan(
        MLP,
        {1: ([0, 3, 9, 20, 33], None), 2: (None, None)},
        20000,
        seed=12,
        momentum=0.9,
        batch_size=2,
        learning_rate=0.05,
    )
    plan.layers.append(LayerPlan(3, "weights", list(range(10))))
    trainer = Trainer(MLP, plan)
    c_trainer = layouts._CTrainer.from_buffer(trainer._state)
    memory = trainer.memory()
    # The pool, and the padding that starts it 8-aligned.
    assert plan.sample_budget <= memory["sampled_state"] < plan.sample_budget + 8
    x, y = th.quantized_split("mnist", "train", (1, 28, 28, 1), 6)
    pool = np.frombuffer(trainer._arena, np.uint8, plan.sample_budget, c_trainer.sample_pool_offset)
    for epoch in range(3):
        trainer.begin_epoch(epoch)
        assert not pool.any()  # zeroed
        selection = sample_channels(plan, epoch)
        placed, used = _pool_layout(plan, selection, MLP)
        assert used <= plan.sample_budget
        records = layouts._words(trainer._arena, c_trainer.layers_offset, 3, layouts.LAYER_WORDS)
        for record in records[:2]:
            for slot, name in enumerate(layouts._STATE_NAMES):
                key = (name, int(record[0]))
                if key in placed:
                    assert record[7 + slot] == c_trainer.sample_pool_offset + placed[key]
                else:
                    assert record[7 + slot] == -1
        trainer.train_step(x[:4], y[:4])  # two whole batches: residuals and velocities
        assert pool.any()


def test_only_drawn_channels_train_and_gradients_pass_empty_layers():
    """Operator 2 costs more than the whole budget, so it never gets a
    channel: it stays untouched while operator 1, before it, trains (the
    gradient passes through it); operator 1 changes only in drawn channels."""
    model = th.with_zero_classifier(MLP)
    plan = _plan(model, {1: (None, 3140), 2: (None, 10**6)}, 12000, seed=1, learning_rate=0.05)
    plan.layers.append(LayerPlan(3, "weights", list(range(10))))
    trainer = Trainer(model, plan)
    x, y = th.shuffled(*th.quantized_split("mnist", "train", (1, 28, 28, 1), 60), 0)
    graph = tflite_graph.read_graph(model)

    def weights(op):
        return trainer.get_tensor(graph.operators[op].inputs[1]).copy()

    drawn = set()
    for epoch in range(3):
        trainer.begin_epoch(epoch)
        selection = trainer.selected_channels()
        assert selection[2] == [] and len(selection[1]) == 3 and selection[3] == list(range(10))
        before = weights(1)
        trainer.train_step(x, y)
        changed = {c for c in range(64) if not np.array_equal(weights(1)[c], before[c])}
        assert changed and changed <= set(selection[1])
        drawn |= changed
    assert len(drawn) > 3
    original = np.frombuffer(
        model,
        np.int8,
        graph.tensors[graph.operators[2].inputs[1]].data_size,
        graph.tensors[graph.operators[2].inputs[1]].data_pos,
    )
    assert np.array_equal(weights(2).reshape(-1), original)


def test_a_sampled_plan_learns():
    model = th.with_zero_classifier(MLP)
    plan = TrainingPlan.sampled(model, [1, 2], budget_bytes=40000, seed=5, learning_rate=0.05)
    trainer = Trainer(model, plan)
    x, y = th.quantized_split("mnist", "train", (1, 28, 28, 1))
    x_test, y_test = th.quantized_split("mnist", "test", (1, 28, 28, 1))
    losses = []
    for epoch in range(3):
        trainer.begin_epoch(epoch)
        losses.append(trainer.train_step(*th.shuffled(x, y, epoch)))
    assert losses[-1] < 0.5 * losses[0], losses
    assert trainer.evaluate(x_test, y_test) >= 0.8


def test_begin_epoch_checks_its_argument_and_static_plans_ignore_it():
    trainer = Trainer(MLP, TrainingPlan.classifier_only(MLP))
    for bad in (-1, 2**32, 1.0, True, "1"):
        with pytest.raises(InvalidArgumentError, match=r"epoch must be an int in \[0, 2\*\*32\)"):
            trainer.begin_epoch(bad)
    before = trainer.selected_channels()
    trainer.begin_epoch(5)
    assert trainer.selected_channels() == before == {3: list(range(10))}
    assert trainer.memory()["sampled_state"] == 0


def test_an_epoch_of_a_sampled_plan_must_start_on_a_batch_boundary():
    plan = TrainingPlan.sampled(
        MLP, [1, 2], budget_bytes=30000, seed=3, learning_rate=0.05, batch_size=3
    )
    trainer = Trainer(MLP, plan)
    x, y = th.quantized_split("mnist", "train", (1, 28, 28, 1))
    trainer.train_step(x[:4], y[:4])  # one whole batch and one sample of the next
    selected = trainer.selected_channels()
    with pytest.raises(BadStateError, match="epoch 1 starts 1 samples into a batch of 3"):
        trainer.begin_epoch(1)
    assert trainer.selected_channels() == selected  # nothing redrawn, nothing dropped
    trainer.train_step(x[4:6], y[4:6])
    trainer.begin_epoch(1)
    drawn = trainer.selected_channels()
    assert {op: drawn[op] for op in (1, 2)} == sample_channels(plan, 1)
