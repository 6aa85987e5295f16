"""pipeline.search_trials: the search's finalists are trained for real and
the best measured one is chosen."""

import pathlib

import numpy as np
import pytest

from tflm_training import memory_model

from pipeline import contribution, cost_model, search_trials, sparse_search

TESTS = pathlib.Path(__file__).resolve().parent
MODEL = (TESTS / "models" / "transfer" / "ds_cnn_fsdd.tflite").read_bytes()
SETTINGS = {"learning_rate": 0.02, "momentum": 0.9, "batch_size": 5}
ANALYSIS = dict(samples=30, val_samples=30)
BUDGET = cost_model.inference_arena(MODEL) + 32 * 1024


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    """(x, y, table, search result) of a small real analysis on FSDD clips."""
    with np.load(TESTS / "data" / "fsdd_train.npz") as data:
        x = contribution.quantize_samples(MODEL, data["x_train"])
        y = data["y_train"]
    table = contribution.analyze(
        MODEL, x, y, epochs=1, max_layers=2, seeds=(0,), metric="loss",
        cache_path=str(tmp_path_factory.mktemp("cache") / "cache.json"), **ANALYSIS,
        **SETTINGS)
    found = sparse_search.search(MODEL, table, BUDGET, population=12, generations=4, seed=1)
    return x, y, table, found


def _data(x, y):
    return contribution.prepare_data(x, y, **ANALYSIS)


def test_trials_are_real_runs_and_the_best_measured_wins(analysed, tmp_path):
    x, y, table, found = analysed
    chosen = search_trials.verify(MODEL, table, found, _data(x, y), top=3,
                                  cache_path=str(tmp_path / "trials.json"))
    trials = chosen.trials
    assert [t.genome for t in trials[:3]] == list(dict.fromkeys(found.finalists))[:3]
    assert trials[0].genome == found.genome
    settings = contribution.Settings.from_dict(table.settings)
    for trial in trials:
        run = contribution.run_plan(MODEL, sparse_search.genome_layers(table, trial.genome),
                                    _data(x, y), settings)
        assert trial.measured == pytest.approx(table.gain(run))
        assert trial.arena <= BUDGET
    # The best-predicted bias-only genome is always among the finalists.
    no_weights = (0.0,) * len(table.layers)
    fitting = [k for k in [0] + table.bias_depths if memory_model.training_memory(
        MODEL, sparse_search.genome_plan(MODEL, table, (k,) + no_weights)).total <= BUDGET]
    assert max(t.predicted for t in trials if not any(t.genome[1:])) == pytest.approx(
        max(table.delta_bias(k) for k in fitting))
    best = max(trials, key=lambda t: (t.measured, t.predicted, -t.arena))
    assert chosen.genome == best.genome and chosen.arena == best.arena
    assert chosen.plan.to_bytes() == sparse_search.genome_plan(MODEL, table,
                                                               best.genome).to_bytes()
    assert memory_model.training_memory(MODEL, chosen.plan).total == chosen.arena
    lines = chosen.describe()
    assert sum("<- chosen" in line for line in lines) == 1
    assert len([line for line in lines if line.startswith("  trial")]) == len(trials)


def test_trials_are_cached_under_the_table_and_the_plan(analysed, tmp_path, monkeypatch):
    x, y, table, found = analysed
    cache = str(tmp_path / "trials.json")
    first = search_trials.verify(MODEL, table, found, _data(x, y), top=2, cache_path=cache)

    def no_runs(*args, **kwargs):
        raise AssertionError("a cached trial ran again")

    monkeypatch.setattr(contribution, "run_plan", no_runs)
    again = search_trials.verify(MODEL, table, found, _data(x, y), top=2, cache_path=cache)
    assert again.trials == first.trials and again.genome == first.genome


def test_a_finalist_that_measures_better_beats_the_predicted_best(analysed, monkeypatch):
    """Measurements overrule the additive prediction; an unavailable
    finalist is reported, never chosen."""
    x, y, table, found = analysed
    finalists, _ = search_trials.finalists(MODEL, table, found, 3)
    assert len(finalists) >= 2
    favourite, broken = finalists[-1][0], finalists[0][0]
    baseline = table.baseline

    def fake_run(model_bytes, layers, data, settings):
        ops = [(l.operator_index, l.update, tuple(l.channels or ())) for l in layers]
        if ops == _ops(table, broken):
            return {"available": False, "reason": "diverged"}
        if ops == _ops(table, favourite):
            return dict(baseline, accuracy=1.0, loss=baseline["loss"] - 1.0)
        return dict(baseline)

    monkeypatch.setattr(contribution, "run_plan", fake_run)
    chosen = search_trials.verify(MODEL, table, found, _data(x, y), top=3, cache_path=None)
    assert chosen.genome == favourite
    assert chosen.trials[0].measured is None
    assert "n/a (diverged)" in chosen.describe()[1]


def _ops(table, genome):
    return [(l.operator_index, l.update, tuple(l.channels or ()))
            for l in sparse_search.genome_layers(table, genome)]


def test_trials_refuse_samples_the_table_was_not_measured_on(analysed):
    x, y, table, found = analysed
    other = contribution.prepare_data(x, y, samples=31, val_samples=30)
    with pytest.raises(ValueError, match="not the ones the contribution table was measured"):
        search_trials.verify(MODEL, table, found, other, cache_path=None)
    with pytest.raises(ValueError, match="top >= 1"):
        search_trials.verify(MODEL, table, found, _data(x, y), top=0, cache_path=None)

