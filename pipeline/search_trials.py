"""The sparse-update search proposes, short real runs decide.

The search (pipeline/sparse_search.py) scores a plan by adding gains that
the contribution analysis measured one part at a time. Parts do not add
up exactly: deep biases trained together with weight channels buy less
than the sum of their separate gains (tinyimagenet32 -> gtsrb32 at +128 KB:
the searched plan of deep biases and four layers' weight channels reached
0.274 where the deepest bias-only plan reached 0.299). So before a plan
is chosen, the finalists are trained for real:

    data = contribution.prepare_data(x, y, samples=600, val_samples=200)
    table = contribution.analyze(model_bytes, x, y, samples=600, val_samples=200, ...)
    found = sparse_search.search(model_bytes, table, budget)
    chosen = search_trials.verify(model_bytes, table, found, data, top=4)
    chosen.plan, chosen.trials

Finalists: the search's best `top` distinct genomes (its last population,
best first) and the best bias-only genome that fits the budget (the
measured bias depth with the largest gain). Each is run exactly like a
contribution-analysis run (contribution.run_plan: the same training and
held-out samples, which must be the ones the table was measured on, the
same settings, epochs and seeds), and the finalist with the largest
measured gain in the table's metric wins; ties go to the larger predicted
gain, then the smaller arena. A finalist the runtime cannot train or that
diverges is reported, never chosen. The runs are cached in the
contribution cache under the table's key and the plan's bytes.
"""

import dataclasses
import hashlib

import tflm_training

from pipeline import contribution
from pipeline import sparse_search


@dataclasses.dataclass(frozen=True)
class Trial:
    """One finalist's run."""

    genome: tuple
    predicted: float        # the search's additive gain
    measured: float         # the run's gain (the table's metric), None if unavailable
    arena: int
    run: dict               # contribution.run_plan's record
    origin: str             # 'search #i' or 'bias only'

    def as_dict(self):
        """For JSON reports (without the run's details)."""
        return {'genome': list(self.genome), 'origin': self.origin,
                'predicted': self.predicted, 'measured': self.measured, 'arena': self.arena}


def finalists(model_bytes, table, result, top, **settings):
    """([(genome, origin)], the search's Problem): the search's best `top`
    distinct genomes and the best bias-only genome within result.budget
    (when not among them)."""
    chosen = [(genome, 'search #%d' % (i + 1))
              for i, genome in enumerate(dict.fromkeys(result.finalists))][:top]
    problem = sparse_search.Problem(model_bytes, table, result.budget, settings)
    zero = problem.zero()
    bias_only = [(k,) + zero[1:] for k in problem.choices[0]]
    bias_only = [g for g in bias_only if problem.feasible(g)]
    best = max(bias_only, key=lambda g: (problem.fitness(g), -problem.cost(g)))
    if best not in [genome for genome, _ in chosen]:
        chosen.append((best, 'bias only'))
    return chosen, problem


def _check_data(model_bytes, table, data, settings):
    key = contribution.cache_key(model_bytes, data, settings, table.layers,
                                 table.bias_analysed, table.bias_depths, table.ratios)
    if key != table.key:
        raise ValueError('these samples are not the ones the contribution table was measured '
                         'on; make `data` with contribution.prepare_data and the same x, y, '
                         'samples, val_samples and holdout that analyze() was given')


def _trial_key(table, plan):
    digest = hashlib.sha256(b'search trial\0')
    digest.update(table.key.encode())
    digest.update(plan.to_bytes())
    return 'trial-' + digest.hexdigest()


def _measure(model_bytes, table, genome, data, settings, cache_path):
    layers = sparse_search.genome_layers(table, genome)
    key = _trial_key(table, contribution.make_plan(model_bytes, layers, settings))
    if cache_path:
        run = contribution.read_cache(cache_path).get(key)
        if run is not None:
            return run
    run = contribution.run_plan(model_bytes, layers, data, settings)
    if cache_path:
        contribution.write_cache(cache_path, key, run)
    return run


def verify(model_bytes, table, result, data, *, top=4, cache_path=contribution.DEFAULT_CACHE,
           log=None, **settings):
    """The SearchResult of the finalist with the best measured gain (see
    the module doc), its `trials` filled in. data: contribution.prepare_data
    of the samples the table was measured on. settings: the plan settings
    given to search() (they set the chosen plan's; the runs use the
    table's, as the analysis did)."""
    if top < 1:
        raise ValueError('verify needs top >= 1 finalists from the search, got %r' % (top,))
    model_bytes = bytes(model_bytes)
    run_settings = contribution.Settings.from_dict(table.settings)
    _check_data(model_bytes, table, data, run_settings)
    say = log or (lambda line: None)
    candidates, problem = finalists(model_bytes, table, result, top, **settings)
    trials = []
    for genome, origin in candidates:
        say('search trial: %s, %s' % (origin, sparse_search.describe_genome(table.layers, genome)))
        try:
            run = _measure(model_bytes, table, genome, data, run_settings, cache_path)
        except (tflm_training.BadPlanError, tflm_training.UnsupportedModelError,
                ValueError) as error:
            run = {'available': False, 'reason': str(error)}
        trials.append(Trial(genome, problem.fitness(genome), table.gain(run),
                            problem.cost(genome), run, origin))
    measured = [t for t in trials if t.measured is not None]
    if not measured:
        return dataclasses.replace(result, trials=trials)
    best = max(measured, key=lambda t: (t.measured, t.predicted, -t.arena))
    plan = sparse_search.genome_plan(model_bytes, table, best.genome, **settings)
    return dataclasses.replace(result, plan=plan, genome=best.genome, score=best.predicted,
                               arena=best.arena, trials=trials)

