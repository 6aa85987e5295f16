"""Memory-budgeted sparse update search (Lin et al. 2022, section 3.2): the
evolutionary search over which biases and which layers' weight channels to
train, scored with the contribution analysis (planning/contribution.py) and
constrained by the EXACT training arena (tflm_training.memory_model).

    table = contribution.analyze(model_bytes, x, y, ...)
    result = search(model_bytes, table, budget_bytes=inference + 32 * 1024, seed=0)
    result.plan, result.score, result.arena

Genome: (k, r_1 .. r_N): k is the bias depth, 0 or one of the depths the
table measured (table.bias_depths: every depth 1..8, then a geometric grid
up to all the bias-analysed layers, so k may reach far deeper than the N
weight-analysed layers); the biases of the last k bias-analysed layers
train. r_i is the share of weight-analysed layer i's output channels whose
weights train (the first ceil(r_i * C_i) channels,
contribution.ratio_channels): 0, a ratio the table measured (1/8, 1/4,
1/2, 1), or a multiple of 1/`grid` (default GRID = 16) between them (not
below the smallest), one ratio per channel count (the measured one where
it selects that count).
The classifier always trains fully (weights and biases, every channel).
The grid lets a plan use the budget the measured ratios leave: at
speech_commands12 -> fsdd +16 KB the last pointwise layer fits 28 of its
64 channels, where the measured ratios stop at 16.

Plan of a genome: the classifier ("weights", every channel); each
weight-analysed layer with r_i > 0: "weights" on its first ceil(r_i * C_i)
channels (which trains those channels' biases too); each other layer
within the bias depth (table.bias_layers(k)): "bias", every channel. A
layer with 0 < r_i < 1 inside the bias depth trains the biases of its
selected channels only (a plan layer has one channel list).

Fitness: Δ_bias[k] + Σ_i Δ_weight[i, r_i] (the paper's additive
approximation; Δ in the table's metric, held-out accuracy gain or loss
drop), over genomes whose training arena (memory_model, to the
byte) is at most budget_bytes. Δ_weight of a ratio the table did not
measure is the straight line between the measured ratios on either side
(0 gains 0; predicted_weight_gain); choices the analysis found
unavailable, and ratios next to them, are never made. pipeline/
search_trials.py measures the finalists before one is chosen.

Search (deterministic from `seed`, numpy's default_rng):
* population (default 40): the first holds the classifier-only genome
  and EVERY feasible one-gene genome (only k, at every measured depth, or
  only one r_i), so the result is never worse than the best bias-only
  plan at a measured depth or the best single-layer plan, plus
  `population` random genomes (each gene uniform over its choices)
  repaired to fit; the best `population` of them start.
* each of `generations` (default 20) generations keeps the best `parents`
  genomes (default a quarter of the population; elitism, ranked by
  fitness, then the smaller arena, then the genome), and fills the
  population with children: a share `crossover` (0.5) of them by
  uniform crossover of two random parents (each gene from either), the
  rest by mutation of one random parent (each gene resampled among its
  choices with probability `mutation_rate`, 0.2); an infeasible child is
  repaired by lowering random genes one step until it fits (k to the
  measured depth below it); at most 2 x population children are tried per
  generation (small feasible sets).
* cost evaluations are memoised per genome (`result.evaluations` counts
  the distinct plans measured).
"""

import dataclasses
import math

import numpy as np

import tflm_training
from planning import contribution
from tflm_training import memory_model
from tflm_training import plan as plan_lib

GRID = 16


class InfeasibleBudgetError(ValueError):
    """The budget is below the cheapest plan the search can make."""


@dataclasses.dataclass
class SearchResult:
    """The best plan found."""

    plan: object  # TrainingPlan
    genome: tuple  # (k, r_1, ..., r_N)
    layers: list  # the weight-analysed operators, r_i belongs to layers[i]
    score: float  # predicted gain vs the classifier-only baseline (table's metric)
    arena: int  # training arena in bytes (memory_model)
    budget: int
    evaluations: int  # distinct plans whose arena was computed
    history: list  # best score after each generation
    metric: str = "accuracy"  # the contribution table's (contribution.METRICS)
    # The best genome of each shape (genome_shape) the search evaluated,
    # best first, at most `population` of them: what search_trials runs.
    finalists: list = dataclasses.field(default_factory=list)
    trials: list = None  # planning.search_trials.Trial per finalist run, when verified
    settings: dict = dataclasses.field(default_factory=dict)  # search()'s plan settings
    grid: int = GRID  # search()'s ratio grid

    def describe(self):
        lines = [
            "searched sparse plan: %s; predicted %s; arena %d bytes "
            "(%.1f KB) of budget %d (%.1f KB)"
            % (
                describe_genome(self.layers, self.genome),
                self._gain(self.score),
                self.arena,
                self.arena / 1024,
                self.budget,
                self.budget / 1024,
            )
        ]
        for trial in self.trials or ():
            chosen = trial.genome == self.genome and trial.measured is not None
            lines.append(
                "  trial %-10s %s: predicted %s, measured %s%s"
                % (
                    trial.origin,
                    describe_genome(self.layers, trial.genome),
                    self._gain(trial.predicted),
                    "n/a (%s)" % trial.run.get("reason")
                    if trial.measured is None
                    else self._gain(trial.measured),
                    "  <- chosen" if chosen else "",
                )
            )
        return lines

    def _gain(self, value):
        return (
            "Δaccuracy %+.1f points"
            if self.metric == "accuracy"
            else "held-out loss drop %+.1f hundredths of a nat"
        ) % (100 * value)


def _count(ratio, channels):
    return len(contribution.ratio_channels(ratio, channels)) if ratio else 0


def predicted_weight_gain(table, operator, ratio):
    """Δ_weight of `operator` at `ratio`: the table's where it measured
    that ratio (or one selecting as many channels), else the straight line,
    over the number of channels, between the measured ratios on either
    side (0 channels gain 0); None when a run it needs was unavailable."""
    if ratio == 0 or ratio in table.ratios:
        return table.delta_weight(operator, ratio)
    channels = table.channels[operator]
    count = _count(ratio, channels)
    points = [(0, 0.0)] + [
        (_count(r, channels), table.delta_weight(operator, r)) for r in table.ratios
    ]
    same = [gain for n, gain in points if n == count]
    if same:
        return same[0]
    below = max((p for p in points if p[0] < count), key=lambda p: p[0])
    above = [p for p in points if p[0] > count]
    if not above:
        return None
    above = min(above, key=lambda p: p[0])
    if below[1] is None or above[1] is None:
        return None
    return below[1] + (above[1] - below[1]) * (count - below[0]) / (above[0] - below[0])


def weight_choices(table, operator, grid=GRID):
    """The ratios the search may give `operator`, ascending: 0, the
    measured ones and the multiples of 1/grid between the smallest and the
    largest measured (below the smallest the gain would be a guess, not a
    line between measurements), one per channel count (the measured ratio
    where it selects that count, else the smallest), those with a
    predicted gain."""
    channels = table.channels[operator]
    low, high = min(table.ratios), max(table.ratios)
    between = [j / grid for j in range(1, grid) if low < j / grid < high] if grid else []
    candidates = sorted(set([0.0] + list(table.ratios) + between))
    by_count = {}
    for ratio in candidates:
        count = _count(ratio, channels)
        if count not in by_count or (ratio in table.ratios and by_count[count] not in table.ratios):
            by_count[count] = ratio
    return [
        r
        for _, r in sorted(by_count.items())
        if predicted_weight_gain(table, operator, r) is not None
    ]


def genome_shape(table, genome):
    """What tells plans apart beyond their channel counts: the layers that
    train and how ((operator, update) pairs), the bias depth included."""
    return tuple((layer.operator_index, layer.update) for layer in genome_layers(table, genome))


def describe_genome(layers, genome):
    """'bias depth 12, op 36 weights 1/2' (layers: the weight-analysed
    operators)."""
    return ", ".join(
        ["bias depth %d" % genome[0]]
        + [
            "op %d weights %s" % (op, contribution.ratio_name(r))
            for op, r in zip(layers, genome[1:])
            if r
        ]
    )


def genome_layers(table, genome, classifier_channels=None):
    """The LayerPlans (ascending) of a genome, classifier included; channel
    lists are filled in when classifier_channels is given (else the
    classifier's and bias layers' channels are None: every channel)."""
    k, ratios = genome[0], genome[1:]
    layers = {}
    for op in table.bias_layers(k):
        layers[op] = plan_lib.LayerPlan(
            op, "bias", None if classifier_channels is None else list(range(table.channels[op]))
        )
    for op, ratio in zip(table.layers, ratios):
        if ratio:
            layers[op] = plan_lib.LayerPlan(
                op, "weights", contribution.ratio_channels(ratio, table.channels[op])
            )
    layers[table.classifier] = plan_lib.LayerPlan(
        table.classifier,
        "weights",
        None if classifier_channels is None else list(range(classifier_channels)),
    )
    return [layers[op] for op in sorted(layers)]


def _settings(table, overrides):
    settings = {
        name: table.settings[name] for name in ("learning_rate", "momentum", "batch_size", "qas")
    }
    settings.update(overrides or {})
    return settings


def genome_plan(model_bytes, table, genome, **settings):
    """The TrainingPlan of a genome (settings default to the table's)."""
    return tflm_training.TrainingPlan.for_model(
        model_bytes, genome_layers(table, genome), **_settings(table, settings)
    )


class Problem:
    """Choices, fitness and memoised cost of the genomes of one table."""

    def __init__(self, model_bytes, table, budget, settings, grid=GRID):
        self.model_bytes = bytes(model_bytes)
        self.table = table
        self.budget = budget
        self.settings = _settings(table, settings)
        self.model = memory_model.for_model(self.model_bytes)
        self.choices = [
            [k for k in [0] + list(table.bias_depths) if table.delta_bias(k) is not None]
        ]
        self.gains = []
        for op in table.layers:
            self.choices.append(weight_choices(table, op, grid))
            self.gains.append({r: predicted_weight_gain(table, op, r) for r in self.choices[-1]})
        self._costs = {}
        # Plans for cost evaluation are made from this checked one by
        # replacing the layers: TrainingPlan.for_model re-reads the model,
        # and memory_model checks every plan against it anyway.
        self.template = tflm_training.TrainingPlan.for_model(
            self.model_bytes, genome_layers(table, self.zero()), **self.settings
        )
        self.classifier_channels = len(self.template.layers[-1].channels)

    def fitness(self, genome):
        total = self.table.delta_bias(genome[0])
        for gains, ratio in zip(self.gains, genome[1:]):
            total += gains[ratio]
        return total

    def cost(self, genome):
        """The training arena (math.inf when the runtime cannot train it)."""
        if genome not in self._costs:
            plan = dataclasses.replace(
                self.template, layers=genome_layers(self.table, genome, self.classifier_channels)
            )
            try:
                self._costs[genome] = self.model.training_memory(plan).total
            except (tflm_training.BadPlanError, tflm_training.UnsupportedModelError, ValueError):
                self._costs[genome] = math.inf
        return self._costs[genome]

    def feasible(self, genome):
        return self.cost(genome) <= self.budget

    @property
    def evaluations(self):
        return len(self._costs)

    def rank_key(self, genome):
        return (-self.fitness(genome), self.cost(genome), genome)

    def best_of_each_shape(self, limit):
        """The best feasible genome of each shape among those evaluated,
        best first, at most `limit`."""
        feasible = sorted(
            (g for g, cost in self._costs.items() if cost <= self.budget), key=self.rank_key
        )
        shapes, best = set(), []
        for genome in feasible:
            shape = genome_shape(self.table, genome)
            if shape not in shapes:
                shapes.add(shape)
                best.append(genome)
                if len(best) == limit:
                    break
        return best

    def zero(self):
        return tuple(options[0] for options in self.choices)

    def random(self, rng):
        return tuple(options[rng.integers(len(options))] for options in self.choices)

    def repair(self, genome, rng):
        """Lowers random non-zero genes one step until the genome fits."""
        genome = list(genome)
        while not self.feasible(tuple(genome)):
            raised = [i for i, g in enumerate(genome) if g != self.choices[i][0]]
            if not raised:
                break
            i = raised[rng.integers(len(raised))]
            genome[i] = self.choices[i][self.choices[i].index(genome[i]) - 1]
        return tuple(genome)


def minimum_arena(model_bytes, table, **settings):
    """The training arena (bytes) of the cheapest plan the search can make:
    the classifier alone."""
    plan = genome_plan(
        model_bytes, table, tuple(0 for _ in range(len(table.layers) + 1)), **settings
    )
    return memory_model.training_memory(bytes(model_bytes), plan).total


def _budget_error(model_bytes, table, budget, settings):
    need = minimum_arena(model_bytes, table, **settings)
    try:
        bias_plan = tflm_training.TrainingPlan.classifier_only(
            model_bytes, update="bias", **_settings(table, settings)
        )
        cheapest = memory_model.training_memory(bytes(model_bytes), bias_plan).total
        other = (
            "; the cheapest plan of all, the classifier's biases only, needs %d bytes" % cheapest
        )
    except (tflm_training.TflmTrainingError, ValueError):
        other = ""
    return InfeasibleBudgetError(
        "budget %d bytes (%.1f KB) is below the smallest plan the search makes: the "
        "classifier (operator %d) alone needs a %d-byte training arena (%.1f KB); give a "
        "budget of at least %d bytes%s"
        % (budget, budget / 1024, table.classifier, need, need / 1024, need, other)
    )


def search(
    model_bytes,
    table,
    budget_bytes,
    *,
    population=40,
    generations=20,
    parents=None,
    mutation_rate=0.2,
    crossover=0.5,
    seed=0,
    grid=GRID,
    **settings,
):
    """The best plan under budget_bytes (a SearchResult); see the module doc.
    grid: weight ratios are multiples of 1/grid besides the measured ones
    (0 or None: the measured ones only). settings (learning_rate,
    momentum, batch_size, qas) default to the contribution table's: they
    change the optimizer state and so the arena."""
    model_bytes = bytes(model_bytes)
    budget = int(budget_bytes)
    if parents is None:
        parents = max(2, population // 4)
    if population < 2 or parents < 1 or parents > population or generations < 0:
        raise ValueError("need population >= 2, 1 <= parents <= population, generations >= 0")
    if not 0 <= mutation_rate <= 1 or not 0 <= crossover <= 1:
        raise ValueError("mutation_rate and crossover are probabilities in [0, 1]")
    if table.baseline_accuracy is None:
        raise ValueError(
            "the contribution table has no baseline (the classifier-only run "
            "was unavailable: %s)" % table.baseline.get("reason")
        )
    if grid and (int(grid) != grid or grid < 1):
        raise ValueError(
            "grid must be a positive whole number (or 0 for the measured "
            "ratios only), got %r" % (grid,)
        )
    grid = int(grid or 0)
    problem = Problem(model_bytes, table, budget, settings, grid)
    zero = problem.zero()
    if not problem.feasible(zero):
        raise _budget_error(model_bytes, table, budget, settings)
    rng = np.random.default_rng(seed)

    pool = [zero]
    for i, options in enumerate(problem.choices):
        for value in options[1:]:
            genome = list(zero)
            genome[i] = value
            genome = tuple(genome)
            if problem.feasible(genome):
                pool.append(genome)
    for _ in range(population):
        pool.append(problem.repair(problem.random(rng), rng))
    current = sorted(set(pool), key=problem.rank_key)[:population]
    history = [problem.fitness(current[0])]

    for _ in range(generations):
        elite = current[:parents]
        children = set(elite)
        for _ in range(2 * population):  # small feasible sets: stop anyway
            if len(children) >= population:
                break
            if rng.random() < crossover and len(elite) > 1:
                a, b = rng.choice(len(elite), 2, replace=False)
                child = tuple(
                    elite[a][i] if rng.random() < 0.5 else elite[b][i] for i in range(len(zero))
                )
            else:
                parent = elite[rng.integers(len(elite))]
                child = tuple(
                    options[rng.integers(len(options))] if rng.random() < mutation_rate else gene
                    for gene, options in zip(parent, problem.choices)
                )
            children.add(problem.repair(child, rng))
        current = sorted(children, key=problem.rank_key)[:population]
        history.append(problem.fitness(current[0]))

    best = current[0]
    plan = genome_plan(model_bytes, table, best, **settings)
    return SearchResult(
        plan=plan,
        genome=best,
        layers=list(table.layers),
        score=problem.fitness(best),
        arena=problem.cost(best),
        budget=budget,
        evaluations=problem.evaluations,
        history=history,
        metric=table.metric,
        finalists=problem.best_of_each_shape(population),
        settings=dict(settings),
        grid=grid,
    )
