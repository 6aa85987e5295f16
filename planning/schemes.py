"""The update schemes: one name -> one plan builder, for tools/deploy.py,
tools/analyze.py and the benchmarks alike.

    inputs = schemes.Inputs(settings, budget=budget, ranking=ranking, seed=0)
    built = schemes.build("trady", model_bytes, inputs)
    built.plan                 # the TrainingPlan
    built.describe()           # lines for people ([] for the fixed schemes)

Fixed schemes (no budget, no samples):

- classifier: the layer computing the logits, weights and biases of every
  channel;
- classifier-bias: the classifier's biases only;
- bias: the biases of every layer with a bias (the classifier's included);
- full: every channel of every trainable layer;
- sparse: the classifier plus the first 1/SPARSE_FRACTION of the channels
  of the trainable layer before it.

Schemes fitted to a training-arena budget:

- last-biases: the classifier plus the biases of the last k layers with a
  bias before it, k as large as the budget allows;
- sparse-search: the evolutionary sparse-update search
  (planning.sparse_search) over a contribution table measured on the
  training samples, optionally followed by real runs of its finalists
  (planning.search_trials);
- trady: TraDy's sampled plan (planning.trady) of a layer ranking measured
  on the training samples; the device redraws the channels every epoch;
- lowrank: Adam on low-rank projected gradients of the FC / pointwise
  layers nearest the logits, the classifier by SGD (planning.lowrank).

A budget a scheme cannot meet raises one of BUDGET_ERRORS.
"""

import dataclasses

import tflm_training
from planning import contribution, lowrank, search_trials, sparse_search, trady
from tflm_training import memory_model
from tflm_training import plan as plan_lib

SPARSE_FRACTION = 4  # sparse trains 1/SPARSE_FRACTION of the last layer's channels


class InfeasibleBudgetError(ValueError):
    """The budget is below the smallest last-biases plan (the classifier alone)."""


BUDGET_ERRORS = (
    InfeasibleBudgetError,
    sparse_search.InfeasibleBudgetError,
    trady.InfeasibleBudgetError,
    lowrank.InfeasibleBudgetError,
)


@dataclasses.dataclass(frozen=True)
class Inputs:
    """What a scheme's plan is built from; each scheme reads the fields its
    Scheme.needs names, besides settings and seed."""

    settings: dict  # TrainingPlan settings (learning_rate, ..., gradient_bits);
    # trady's plan takes its ranking's
    budget: int = None  # training-arena bytes
    seed: int = 0
    contributions: object = None  # contribution.Contributions (sparse-search)
    trials: tuple = None  # (data, top, cache_path) for search_trials.verify, or None
    ranking: object = None  # trady.Ranking (trady)
    adam_learning_rate: float = lowrank.ADAM_LEARNING_RATE  # of lowrank's factors
    log: object = None  # callable for progress lines (search trials), or None


@dataclasses.dataclass
class Built:
    """A scheme's plan; `result` is the fitting module's result
    (sparse_search.SearchResult, trady.TradyPlan, lowrank.LowRankPlan,
    LastBiases), None for the fixed schemes. `searched`: sparse-search's
    result before its trials."""

    plan: object
    result: object = None
    searched: object = None

    def describe(self):
        return self.result.describe() if self.result is not None else []


@dataclasses.dataclass(frozen=True)
class Scheme:
    name: str
    build: object  # build(model_bytes, Inputs) -> Built
    needs: tuple = ()  # Inputs fields it reads besides settings and seed


@dataclasses.dataclass
class LastBiases:
    """last-biases' fit: how many layers' biases train, and the arena."""

    depth: int
    arena: int

    def describe(self):
        return [
            f"last-biases plan: the classifier and the biases of the last {self.depth} "
            f"layers; arena {self.arena} bytes"
        ]


# -- fixed schemes ---------------------------------------------------------------------


def _classifier(model_bytes, inputs):
    return Built(tflm_training.TrainingPlan.classifier_only(model_bytes, **inputs.settings))


def _classifier_bias(model_bytes, inputs):
    return Built(
        tflm_training.TrainingPlan.classifier_only(model_bytes, update="bias", **inputs.settings)
    )


def _bias(model_bytes, inputs):
    return Built(tflm_training.TrainingPlan.bias_only(model_bytes, **inputs.settings))


def _full(model_bytes, inputs):
    return Built(
        tflm_training.TrainingPlan.for_model(
            model_bytes,
            {op: None for op, *_ in plan_lib.trainable_operators(model_bytes)},
            **inputs.settings,
        )
    )


def _sparse(model_bytes, inputs):
    classifier = tflm_training.TrainingPlan.classifier_only(model_bytes).layers[0].operator_index
    before = [
        (op, channels)
        for op, _, channels, _ in plan_lib.trainable_operators(model_bytes)
        if op < classifier
    ]
    chosen = {classifier: None}
    if before:
        op, channels = before[-1]
        chosen[op] = range(max(1, channels // SPARSE_FRACTION))
    return Built(tflm_training.TrainingPlan.for_model(model_bytes, chosen, **inputs.settings))


# -- schemes fitted to a budget -----------------------------------------------------------


def last_biases_plan(model_bytes, depth, settings):
    """The classifier plus the biases of the last `depth` layers with a
    bias before it."""
    classifier = contribution.classifier_operator(model_bytes)
    with_bias = [op for op, _, has_bias in contribution.candidate_layers(model_bytes) if has_bias]
    chosen = with_bias[len(with_bias) - depth :] if depth else []
    layers = [plan_lib.LayerPlan(op, "bias") for op in chosen]
    layers.append(plan_lib.LayerPlan(classifier, "weights"))
    return tflm_training.TrainingPlan.for_model(model_bytes, layers, **settings)


def _last_biases(model_bytes, inputs):
    """The deepest last-biases plan within the budget (a deeper plan may
    fit where a shallower one does not: every depth is tried)."""
    with_bias = [op for op, _, has_bias in contribution.candidate_layers(model_bytes) if has_bias]
    best = None
    for depth in range(len(with_bias) + 1):
        try:
            plan = last_biases_plan(model_bytes, depth, inputs.settings)
            need = memory_model.training_memory(bytes(model_bytes), plan).total
        except (tflm_training.BadPlanError, tflm_training.UnsupportedModelError, ValueError):
            if best is None:
                raise
            break
        if need > inputs.budget:
            if best is None:
                raise InfeasibleBudgetError(
                    f"the classifier alone needs a {need}-byte arena, {need - inputs.budget} "
                    "bytes over the budget"
                )
            continue
        best = Built(plan, LastBiases(depth, need))
    return best


def _sparse_search(model_bytes, inputs):
    searched = sparse_search.search(
        model_bytes, inputs.contributions, inputs.budget, seed=inputs.seed, **inputs.settings
    )
    result = searched
    if inputs.trials is not None:
        data, top, cache_path = inputs.trials
        result = search_trials.verify(
            model_bytes,
            inputs.contributions,
            searched,
            data,
            top=top,
            cache_path=cache_path,
            log=inputs.log,
        )
    return Built(result.plan, result, searched)


def _trady(model_bytes, inputs):
    result = trady.plan_for_budget(model_bytes, inputs.ranking, inputs.budget, seed=inputs.seed)
    return Built(result.plan, result)


def _lowrank(model_bytes, inputs):
    result = lowrank.plan_for_budget(
        model_bytes, inputs.budget, adam_learning_rate=inputs.adam_learning_rate, **inputs.settings
    )
    return Built(result.plan, result)


SCHEMES = {
    scheme.name: scheme
    for scheme in (
        Scheme("classifier", _classifier),
        Scheme("classifier-bias", _classifier_bias),
        Scheme("bias", _bias),
        Scheme("full", _full),
        Scheme("sparse", _sparse),
        Scheme("last-biases", _last_biases, ("budget",)),
        Scheme("sparse-search", _sparse_search, ("budget", "contributions")),
        Scheme("trady", _trady, ("budget", "ranking")),
        Scheme("lowrank", _lowrank, ("budget",)),
    )
}


def build(name, model_bytes, inputs):
    """The Built plan of scheme `name` (a KeyError names the schemes)."""
    if name not in SCHEMES:
        raise KeyError(f"unknown scheme {name!r}; pick one of {', '.join(SCHEMES)}")
    scheme = SCHEMES[name]
    missing = [need for need in scheme.needs if getattr(inputs, need) is None]
    if missing:
        raise ValueError(f"the {name} scheme needs {', '.join(missing)}")
    return scheme.build(model_bytes, inputs)
