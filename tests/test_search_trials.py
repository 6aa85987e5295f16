"""planning.search_trials: the search's finalists are trained for real and
the best measured one is chosen."""

import dataclasses
import pathlib

import numpy as np
import pytest

from planning import contribution, cost_model, search_trials, sparse_search
from tflm_training import memory_model

pytestmark = pytest.mark.slow

TESTS = pathlib.Path(__file__).resolve().parent
EXAMPLES = TESTS.parent / "examples"
MODEL = (EXAMPLES / "ds_cnn_fsdd.tflite").read_bytes()
SETTINGS = {"learning_rate": 0.02, "momentum": 0.9, "batch_size": 5}
ANALYSIS = dict(samples=30, val_samples=30)
BUDGET = cost_model.inference_arena(MODEL) + 32 * 1024


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    """(x, y, table, search result) of a small real analysis on FSDD clips
    (weights of ops 7 and 8, bias depths over all 9 layers)."""
    with np.load(EXAMPLES / "fsdd_train.npz") as data:
        x = contribution.quantize_samples(MODEL, data["x_train"])
        y = data["y_train"]
    table = contribution.analyze(
        MODEL,
        x,
        y,
        epochs=1,
        max_layers=2,
        seeds=(0,),
        metric="loss",
        cache_path=str(tmp_path_factory.mktemp("cache") / "cache.json"),
        **ANALYSIS,
        **SETTINGS,
    )
    found = sparse_search.search(MODEL, table, BUDGET, population=12, generations=4, seed=1)
    return x, y, table, found


def _data(x, y):
    return contribution.prepare_data(x, y, **ANALYSIS)


def _plan(table, genome):
    return [
        (layer.operator_index, layer.update, layer.channels)
        for layer in sparse_search.genome_layers(table, genome)
    ]


def _shape(table, genome):
    return [(op, update) for op, update, _ in _plan(table, genome)]


def test_trials_are_real_runs_and_the_best_measured_wins(analysed, tmp_path):
    x, y, table, found = analysed
    chosen = search_trials.verify(
        MODEL, table, found, _data(x, y), top=3, cache_path=str(tmp_path / "trials.json")
    )
    trials = chosen.trials
    # The search's 3 best plans of distinct shapes (bias depth and layers
    # whose weights train), best first.
    distinct = []
    for genome in found.finalists:
        if _shape(table, genome) not in [_shape(table, g) for g in distinct]:
            distinct.append(genome)
    assert [t.genome for t in trials[:3]] == distinct[:3]
    assert trials[0].genome == found.genome
    settings = contribution.Settings.from_dict(table.settings)
    for trial in trials:
        run = contribution.run_plan(
            MODEL, sparse_search.genome_layers(table, trial.genome), _data(x, y), settings
        )
        assert trial.measured == pytest.approx(table.gain(run))
        assert trial.arena <= BUDGET
    # The best-predicted bias-only genome is always among the finalists.
    no_weights = (0.0,) * len(table.layers)
    fitting = [
        k
        for k in [0] + table.bias_depths
        if memory_model.training_memory(
            MODEL, sparse_search.genome_plan(MODEL, table, (k,) + no_weights)
        ).total
        <= BUDGET
    ]
    assert max(t.predicted for t in trials if not any(t.genome[1:])) == pytest.approx(
        max(table.delta_bias(k) for k in fitting)
    )
    best = max(trials, key=lambda t: (t.measured, t.predicted, -t.arena))
    assert chosen.genome == best.genome and chosen.arena == best.arena
    assert chosen.plan.to_bytes() == sparse_search.genome_plan(MODEL, table, best.genome).to_bytes()
    assert memory_model.training_memory(MODEL, chosen.plan).total == chosen.arena
    lines = chosen.describe()
    assert sum("<- chosen" in line for line in lines) == 1
    assert len([line for line in lines if line.startswith("  trial")]) == len(trials)


def test_genomes_making_one_plan_are_one_trial_and_analysis_plans_are_not_rerun(
    analysed, monkeypatch
):
    """(1, 0, 1) and (0, 0, 1) both train op 8's weights (with its bias) and
    the classifier; (0, 0, 1) and (2, 0, 0) are plans the analysis ran."""
    x, y, table, found = analysed
    same = [(1, 0.0, 1.0), (0, 0.0, 1.0)]
    assert _plan(table, same[0]) == _plan(table, same[1])
    result = dataclasses.replace(found, finalists=same + [(2, 0.0, 0.0)], budget=10**6)

    def no_runs(*args, **kwargs):
        raise AssertionError("a plan the analysis ran was trained again")

    monkeypatch.setattr(contribution, "run_plan", no_runs)
    chosen = search_trials.verify(MODEL, table, result, _data(x, y), top=3, cache_path=None)
    trials = {t.genome: t for t in chosen.trials}
    assert (1, 0.0, 1.0) in trials and (0, 0.0, 1.0) not in trials
    assert trials[(2, 0.0, 0.0)].run is table.bias[table.bias_depths.index(2)]
    assert trials[(2, 0.0, 0.0)].measured == table.delta_bias(2)


def test_plans_differing_only_in_channel_counts_are_one_trial(analysed, monkeypatch):
    """The grid makes neighbours of every plan (op 8 at 15/16, 7/8, ...):
    the finalists are the best plan of each shape, so the trials still
    compare different ideas."""
    x, y, table, found = analysed
    finalists = [(0, 0.0, 1.0), (0, 0.0, 0.9375), (0, 0.0, 0.875), (1, 0.5, 0.0), (0, 0.4375, 0.0)]
    result = dataclasses.replace(found, finalists=finalists, budget=10**6)
    monkeypatch.setattr(search_trials, "_measure", _fake_measure({}))
    chosen = search_trials.verify(MODEL, table, result, _data(x, y), top=3, cache_path=None)
    assert [t.genome for t in chosen.trials][:3] == [(0, 0.0, 1.0), (1, 0.5, 0.0), (0, 0.4375, 0.0)]


def test_trials_are_cached_under_the_table_and_the_plan(analysed, tmp_path, monkeypatch):
    x, y, table, found = analysed
    cache = str(tmp_path / "trials.json")
    result = dataclasses.replace(found, finalists=[(3, 0.0, 0.25), (1, 0.5, 0.0)], budget=10**6)
    first = search_trials.verify(MODEL, table, result, _data(x, y), top=2, cache_path=cache)
    assert [t.origin for t in first.trials][:2] == ["search #1", "search #2"]
    assert len(contribution.read_cache(cache)) == 2  # two plans the analysis did not run

    def no_runs(*args, **kwargs):
        raise AssertionError("a cached trial ran again")

    monkeypatch.setattr(contribution, "run_plan", no_runs)
    again = search_trials.verify(MODEL, table, result, _data(x, y), top=2, cache_path=cache)
    assert again.trials == first.trials and again.genome == first.genome


def _fake_measure(runs):
    def measure(model_bytes, table, genome, data, settings, cache_path):
        return runs.get(genome, table.baseline)

    return measure


def test_a_finalist_that_measures_better_beats_the_predicted_best(analysed, monkeypatch):
    """Measurements overrule the additive prediction; an unavailable
    finalist is reported, never chosen."""
    x, y, table, found = analysed
    finalists, _ = search_trials.finalists(MODEL, table, found, 3)
    assert len(finalists) >= 2
    favourite, broken = finalists[-1][0], finalists[0][0]
    baseline = table.baseline
    monkeypatch.setattr(
        search_trials,
        "_measure",
        _fake_measure(
            {
                broken: {"available": False, "reason": "diverged"},
                favourite: dict(baseline, accuracy=1.0, loss=baseline["loss"] - 1.0),
            }
        ),
    )
    chosen = search_trials.verify(MODEL, table, found, _data(x, y), top=3, cache_path=None)
    assert chosen.genome == favourite
    assert chosen.trials[0].measured is None
    assert "n/a (diverged)" in chosen.describe()[1]


def test_when_no_finalist_can_be_measured_the_search_plan_stays(analysed, monkeypatch):
    x, y, table, found = analysed
    finalists, _ = search_trials.finalists(MODEL, table, found, 2)
    monkeypatch.setattr(
        search_trials,
        "_measure",
        _fake_measure(
            {genome: {"available": False, "reason": "diverged"} for genome, _ in finalists}
        ),
    )
    chosen = search_trials.verify(MODEL, table, found, _data(x, y), top=2, cache_path=None)
    assert chosen.genome == found.genome and chosen.plan is found.plan
    assert all(t.measured is None for t in chosen.trials)
    assert not any("<- chosen" in line for line in chosen.describe())


def test_trials_keep_the_search_settings_and_its_budget(analysed, monkeypatch):
    """A search with other plan settings (a different optimizer state, so
    other arenas) is verified under those settings."""
    x, y, table, _ = analysed
    found = sparse_search.search(
        MODEL, table, BUDGET, population=12, generations=4, seed=1, batch_size=1, momentum=0.0
    )
    monkeypatch.setattr(search_trials, "_measure", _fake_measure({}))
    chosen = search_trials.verify(MODEL, table, found, _data(x, y), top=4, cache_path=None)
    assert all(t.arena <= BUDGET for t in chosen.trials)
    assert (chosen.plan.batch_size, chosen.plan.momentum) == (1, 0.0)
    assert memory_model.training_memory(MODEL, chosen.plan).total == chosen.arena <= BUDGET


def test_trials_refuse_samples_the_table_was_not_measured_on(analysed):
    x, y, table, found = analysed
    other = contribution.prepare_data(x, y, samples=31, val_samples=30)
    with pytest.raises(ValueError, match="not the ones the contribution table was measured"):
        search_trials.verify(MODEL, table, found, other, cache_path=None)
    with pytest.raises(ValueError, match="top >= 1"):
        search_trials.verify(MODEL, table, found, _data(x, y), top=0, cache_path=None)
