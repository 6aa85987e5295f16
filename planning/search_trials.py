"""The sparse-update search proposes, short real runs decide.

The search (planning/sparse_search.py) scores a plan by adding gains that
the contribution analysis measured one part at a time. Parts do not add
up: deep biases trained together with weight channels buy less than the
sum of their separate gains (tinyimagenet32 -> gtsrb32 at +128 KB, seed 0:
the searched plan was predicted to drop the held-out loss by 0.64 and
dropped it by 0.31, less than a plan ranked fourth). So before a plan is
chosen, the finalists are trained for real:

    data = contribution.prepare_data(x, y, samples=600, val_samples=200)
    table = contribution.analyze(model_bytes, x, y, samples=600, val_samples=200, ...)
    found = sparse_search.search(model_bytes, table, budget)
    chosen = search_trials.verify(model_bytes, table, found, data, top=4)
    chosen.plan, chosen.trials

Finalists: the search's best plans of `top` different SHAPES (a shape is
the bias depth and the set of layers whose weights train,
sparse_search.genome_shape: genomes that differ only in how many channels
of those layers train, or in the biases of layers whose weights train
anyway, are one finalist, the best-ranked genome of the shape among all
the search evaluated stands for it; SearchResult.finalists) and the
best bias-only genome that fits the budget (the measured bias depth with
the largest gain, 0 = the classifier alone; ties: the smaller arena), all
within the budget under the search's settings. Each is measured like a
contribution-analysis run (contribution.run_plan: the same training and
held-out samples, which must be the ones the table was measured on, the
same settings, epochs and seeds). A finalist whose plan is one the
analysis ran (the biases of the last k layers alone, or one layer's weights
alone) is not run again: the runs are deterministic, so its table entry is
its measurement. The finalist with the largest measured gain in the
table's metric wins; ties go to the larger predicted gain, then the
smaller arena. A finalist the runtime cannot train or that diverges is
reported, never chosen; when no finalist could be measured, the search's
best predicted plan stays. Runs are cached in the contribution cache under
the table's key and the plan's layers.
"""

import dataclasses
import hashlib
import json

from planning import contribution, sparse_search


@dataclasses.dataclass(frozen=True)
class Trial:
    """One finalist's run."""

    genome: tuple
    predicted: float  # the search's additive gain
    measured: float  # the run's gain (the table's metric), None if unavailable
    arena: int
    run: dict  # contribution.run_plan's record
    origin: str  # 'search #i' or 'bias only'

    def as_dict(self):
        """For JSON reports (without the run's details)."""
        return {
            "genome": list(self.genome),
            "origin": self.origin,
            "predicted": self.predicted,
            "measured": self.measured,
            "arena": self.arena,
        }


def _plan_key(table, genome):
    return tuple(
        (
            layer.operator_index,
            layer.update,
            None if layer.channels is None else tuple(layer.channels),
        )
        for layer in sparse_search.genome_layers(table, genome)
    )


def finalists(model_bytes, table, result, top):
    """([(genome, origin)], the search's Problem): see the module doc."""
    problem = sparse_search.Problem(model_bytes, table, result.budget, result.settings, result.grid)
    zero = problem.zero()
    if not problem.feasible(zero):
        raise ValueError(
            "the search result does not fit its own budget under its settings "
            "(%d bytes); search again" % result.budget
        )
    chosen, shapes = [], set()
    for genome in result.finalists:
        if len(chosen) == top:
            break
        shape = sparse_search.genome_shape(table, genome)
        if shape not in shapes and problem.feasible(genome):
            shapes.add(shape)
            chosen.append((genome, "search #%d" % (len(chosen) + 1)))
    bias_only = [(k,) + zero[1:] for k in problem.choices[0]]
    best = max(
        [g for g in bias_only if problem.feasible(g)],
        key=lambda g: (problem.fitness(g), -problem.cost(g)),
    )
    if sparse_search.genome_shape(table, best) not in shapes:
        chosen.append((best, "bias only"))
    return chosen, problem


def _check_data(model_bytes, table, data, settings):
    key = contribution.cache_key(
        model_bytes,
        data,
        settings,
        table.layers,
        table.bias_analysed,
        table.bias_depths,
        table.ratios,
    )
    if key != table.key:
        raise ValueError(
            "these samples are not the ones the contribution table was measured "
            "on; make `data` with contribution.prepare_data and the same x, y "
            "(x_val, y_val), samples, val_samples and holdout that analyze() "
            "was given"
        )


def _table_run(table, genome):
    """The analysis's own run of a genome whose plan is one of its plans
    (the biases of the last k layers, or one layer's weights), else None."""
    zeros = (0.0,) * len(table.layers)
    ran = {
        (k,) + zeros: table.baseline if k == 0 else table.bias[table.bias_depths.index(k)]
        for k in [0] + list(table.bias_depths)
    }
    for i, op in enumerate(table.layers):
        for ratio, run in zip(table.ratios, table.weight[op]):
            ran[(0,) + zeros[:i] + (ratio,) + zeros[i + 1 :]] = run
    plan = _plan_key(table, genome)
    return next((run for analysed, run in ran.items() if _plan_key(table, analysed) == plan), None)


def _measure(model_bytes, table, genome, data, settings, cache_path):
    run = _table_run(table, genome)
    if run is not None:
        return run
    digest = hashlib.sha256(b"search trial\0")
    digest.update(table.key.encode())
    digest.update(json.dumps(_plan_key(table, genome)).encode())
    key = "trial-" + digest.hexdigest()
    if cache_path:
        run = contribution.read_cache(cache_path).get(key)
        if run is not None:
            return run
    run = contribution.run_plan(
        model_bytes, sparse_search.genome_layers(table, genome), data, settings
    )
    if cache_path:
        contribution.write_cache(cache_path, key, run)
    return run


def verify(
    model_bytes, table, result, data, *, top=4, cache_path=contribution.DEFAULT_CACHE, log=None
):
    """The SearchResult of the finalist with the best measured gain (see
    the module doc), its `trials` filled in. data: contribution.prepare_data
    of the samples the table was measured on. The chosen plan has the
    search's settings; the runs use the table's, as the analysis did."""
    if top < 1:
        raise ValueError("verify needs top >= 1 finalists from the search, got %r" % (top,))
    model_bytes = bytes(model_bytes)
    run_settings = contribution.Settings.from_dict(table.settings)
    _check_data(model_bytes, table, data, run_settings)
    say = log or (lambda line: None)
    candidates, problem = finalists(model_bytes, table, result, top)
    trials = []
    for genome, origin in candidates:
        say("search trial: %s, %s" % (origin, sparse_search.describe_genome(table.layers, genome)))
        run = _measure(model_bytes, table, genome, data, run_settings, cache_path)
        trials.append(
            Trial(
                genome, problem.fitness(genome), table.gain(run), problem.cost(genome), run, origin
            )
        )
    measured = [t for t in trials if t.measured is not None]
    if not measured:
        return dataclasses.replace(result, trials=trials)
    best = max(measured, key=lambda t: (t.measured, t.predicted, -t.arena))
    plan = sparse_search.genome_plan(model_bytes, table, best.genome, **result.settings)
    return dataclasses.replace(
        result, plan=plan, genome=best.genome, score=best.predicted, arena=best.arena, trials=trials
    )
