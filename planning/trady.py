"""TraDy (Quélennec et al. 2025): rank layers by their channels' relative
gradient norms on the user's data, keep the layers that matter, and train
channels drawn anew every epoch within a fixed memory budget.

    ranking = rank_layers(model_bytes, x, y, samples=64)
    result = plan_for_budget(model_bytes, ranking, budget_bytes, seed=0)
    result.plan      # a TrainingPlan with "sampled" layers (+ the classifier)

Relative gradient norm, adapted to our runtime. The paper scores input
channels of a weight tensor; our runtime trains (and samples) OUTPUT
channels, so the score is per output channel c of layer i:

    RGN_c = ||dL/dW_i||_{c,2} / (C_W + C_A)

* ||dL/dW_i||_{c,2} = sqrt(sum over samples of the squared L2 norm of the
  real-valued gradient of channel c's weights), from
  Trainer.gradient_norms(x, y) (which returns those summed squares) under a
  probe plan that trains every channel of every ranked layer and the
  classifier ("weights" updates; on the host memory is no concern);
* C_W = the weights of one output channel: C_in * D_h * D_w for CONV_2D,
  D_h * D_w for DEPTHWISE_CONV_2D, C_in for FULLY_CONNECTED
  (plan.parameter_layout's weights_per_channel);
* C_A = H_out * W_out, the size of that channel's output map (1 for
  FULLY_CONNECTED): the activation the channel's update involves.

Layer score = sum_c RGN_c. The classifier always trains fully and is not
ranked. Layers are ranked by score (ties: the later operator first), and
the top K whose cumulative share of the total score first reaches
`coverage` (97%) are the candidates.

Fitting a budget (total training arena, memory_model, to the byte): the
arena of a sampled plan is the candidates' fixed part (tables incl. the
channel lists and the sampler's shuffle array, weight and bias copies,
saved activations, gradients, masks and scratch of the backward pass down
to the earliest candidate, and the classifier's static state: everything
that does not change with the number of sampled channels) plus the pool of
sample_budget bytes. The pool is budget - fixed part, made exact against
memory_model (its 8- and 16-byte alignments included); it must hold one
channel of the costliest candidate (channel_cost = the runtime's minimum,
that channel's optimizer state: 4 bytes per array (residual, velocity with
momentum, accumulator with batches) per weight and bias,
plan.channel_state_bytes).

Which candidates: each further candidate adds its score but also fixed
bytes (a deeper backward pass, its channel list), which the pool loses, so
every channel is drawn less often. A set of candidates is worth its
expected score drawn per epoch,

    (sum of the layers' scores) * min(1, pool / (their channels' bytes))

(channels are drawn uniformly until the pool is full, so each is drawn with
probability about pool / all candidates' channel bytes). plan_for_budget
first tries the paper's order: the top k layers for every k (down to the
coverage), and keeps the k with the largest expected score among those
whose pool holds at least MIN_DRAWN_SHARE (1/8) of their channels' bytes.
Below that share a channel is drawn less than once in 8 epochs, so on a
few epochs on the device most channels never train; this happens when the
budget barely holds the top-ranked layer's backward pass. The arena is
not monotonic in depth (a deep layer may need less than a shallow one
whose backward pass crosses a wide activation): tinyimagenet32 ->
flowers32 at +16 KB, op 32 (ranked first) leaves a 304-byte pool, op 21
(ranked fifth) alone 3.5 KB. So when no top-k set holds that share, the
sets considered are the top-k sets and the greedy path, which starts from
nothing and adds, one at a time, the layer that raises the expected score
most, until none does; the largest expected score wins. (The greedy path
is not used when the top k qualify: on tinyimagenet32 -> gtsrb32 at +128
KB it prefers ops 32, 39 and 21 to ops 32 and 35 for their larger drawn
share, and reaches 0.27 where ops 32 and 35 reach 0.31.) Ties go to fewer
layers, then to the top-k sets. The layers within the coverage left out
are reported as dropped. The pool never exceeds the candidates' channel
bytes (then every channel is drawn every epoch, and the arena stays below
the budget). No layer fits: InfeasibleBudgetError with the bytes the
cheapest one needs.
"""

import dataclasses

import numpy as np

import tflm_training
from planning import contribution, datasets
from tflm_training import memory_model, tflite_graph
from tflm_training import plan as plan_lib

COVERAGE = 0.97
MIN_DRAWN_SHARE = 1 / 8


class InfeasibleBudgetError(ValueError):
    """The budget cannot hold the fixed part of any TraDy plan and a pool."""


@dataclasses.dataclass(frozen=True)
class LayerScore:
    """One ranked layer."""

    operator: int
    name: str
    channels: int
    score: float  # sum of RGN_c
    share: float  # score / the total of all ranked layers
    cumulative: float  # share of this layer and every better one
    weights_per_channel: int  # C_W
    map_size: int  # C_A
    channel_cost: int  # bytes of one channel's optimizer state (sample pool)
    selected: bool  # within the coverage


@dataclasses.dataclass
class Ranking:
    """Layers best first, and what produced them."""

    layers: list  # LayerScore, best first
    rgn: dict  # operator -> RGN per output channel (np.ndarray)
    norms: dict  # operator -> summed squared gradient norms per channel
    classifier: int
    coverage: float
    settings: dict
    samples: int

    @property
    def selected(self):
        """The candidate operators, best first."""
        return [layer.operator for layer in self.layers if layer.selected]

    def describe(self):
        lines = [
            "TraDy layer ranking (%d samples; RGN per output channel = gradient L2 norm "
            "/ (C_W + C_A); classifier op %d always trains):" % (self.samples, self.classifier),
            " rank   op  name                 C    score    share  cumul.  C_W+C_A  bytes/ch",
        ]
        for rank, layer in enumerate(self.layers, start=1):
            lines.append(
                "%5d %4d  %-18s %3d  %8.3g  %5.1f%%  %5.1f%%  %7d  %8d%s"
                % (
                    rank,
                    layer.operator,
                    layer.name,
                    layer.channels,
                    layer.score,
                    100 * layer.share,
                    100 * layer.cumulative,
                    layer.weights_per_channel + layer.map_size,
                    layer.channel_cost,
                    "  *" if layer.selected else "",
                )
            )
        lines.append(
            "* = candidates: the top %d layers cover %.0f%% of the score"
            % (len(self.selected), 100 * self.coverage)
        )
        return lines


def _settings(learning_rate, momentum, batch_size, qas, residual=True, gradient_bits=32):
    return {
        "learning_rate": learning_rate,
        "momentum": momentum,
        "batch_size": batch_size,
        "qas": qas,
        "residual": residual,
        "gradient_bits": gradient_bits,
    }


def probe_plan(model_bytes, layers, **settings):
    """The probe: every channel of `layers` and of the classifier, "weights"."""
    classifier = contribution.classifier_operator(model_bytes)
    return tflm_training.TrainingPlan.for_model(
        model_bytes,
        [plan_lib.LayerPlan(op, "weights") for op in sorted(layers)]
        + [plan_lib.LayerPlan(classifier, "weights")],
        **settings,
    )


def gradient_norms(model_bytes, x, y, layers, **settings):
    """{operator: summed squared gradient norm per output channel} from
    Trainer.gradient_norms under the probe plan (classifier excluded)."""
    trainer = tflm_training.Trainer(model_bytes, probe_plan(model_bytes, layers, **settings))
    norms = trainer.gradient_norms(x, y)
    return {op: np.asarray(norms[op], np.float64) for op in layers}


def channel_sizes(model_bytes, operator):
    """(C_W, C_A) of an operator's output channels (see the module doc)."""
    graph = tflite_graph.read_graph(model_bytes)
    layout = plan_lib.parameter_layout(graph, operator)
    output = graph.tensors[graph.operators[operator].outputs[0]]
    map_size = output.num_elements // layout["channels"]
    return layout["weights_per_channel"], map_size


def relative_gradient_norms(model_bytes, norms):
    """{operator: RGN_c per output channel} from summed squared norms."""
    result = {}
    for op, squared in norms.items():
        c_w, c_a = channel_sizes(model_bytes, op)
        result[op] = np.sqrt(np.asarray(squared, np.float64)) / (c_w + c_a)
    return result


def rank_layers(
    model_bytes,
    x,
    y,
    *,
    samples=None,
    max_layers=None,
    coverage=COVERAGE,
    learning_rate=0.02,
    momentum=0.9,
    batch_size=5,
    qas=True,
    seed=0,
    gradient_bits=32,
):
    """The Ranking of the trainable layers before the classifier (the last
    max_layers of them when given) on the user's samples (x quantized as
    the model's input, y labels; a class-balanced subset of `samples` of
    them, drawn with `seed`). The settings only set the probe plan's (and
    so the channel costs')."""
    model_bytes = bytes(model_bytes)
    if not 0 < coverage <= 1:
        raise ValueError("coverage must be in (0, 1], got %r" % (coverage,))
    x, y = np.asarray(x), np.asarray(y).astype(np.int64).reshape(-1)
    rows = datasets.balanced_subset(y, samples, np.random.default_rng(seed))
    x, y = np.ascontiguousarray(x[rows]), y[rows]
    if not len(y):
        raise ValueError("the TraDy ranking needs at least one sample")
    classifier = contribution.classifier_operator(model_bytes)
    candidates = contribution.candidate_layers(model_bytes, max_layers)
    if not candidates:
        raise ValueError("the model has no trainable layer before the classifier to rank")
    settings = _settings(learning_rate, momentum, batch_size, qas, gradient_bits=gradient_bits)
    ops = [op for op, _, _ in candidates]
    norms = gradient_norms(model_bytes, x, y, ops, **settings)
    rgn = relative_gradient_norms(model_bytes, norms)
    return make_ranking(model_bytes, norms, rgn, classifier, coverage, settings, len(y))


def make_ranking(model_bytes, norms, rgn, classifier, coverage, settings, samples):
    """The Ranking from per-channel norms and RGNs."""
    graph = tflite_graph.read_graph(model_bytes)
    probe = probe_plan(model_bytes, list(rgn), **settings)
    scores = {op: float(np.sum(values)) for op, values in rgn.items()}
    total = sum(scores.values())
    order = sorted(scores, key=lambda op: (-scores[op], -op))
    layers, cumulative, reached = [], 0.0, False
    for op in order:
        share = scores[op] / total if total > 0 else 0.0
        cumulative += share
        layout = plan_lib.parameter_layout(graph, op)
        c_w, c_a = channel_sizes(model_bytes, op)
        cost = max(
            1,
            plan_lib.channel_state_bytes(
                probe, layout["weights_per_channel"], layout["bias"] is not None
            ),
        )
        selected = not reached and share > 0
        reached = reached or cumulative >= coverage - 1e-12
        layers.append(
            LayerScore(
                op,
                graph.operators[op].name,
                layout["channels"],
                scores[op],
                share,
                cumulative,
                c_w,
                c_a,
                cost,
                selected,
            )
        )
    return Ranking(
        layers=layers,
        rgn=rgn,
        norms=norms,
        classifier=classifier,
        coverage=coverage,
        settings=dict(settings),
        samples=samples,
    )


# -- fitting the budget -------------------------------------------------------------------


@dataclasses.dataclass
class TradyPlan:
    """The sampled plan under a budget."""

    plan: object  # TrainingPlan ("sampled" candidates + the classifier)
    candidates: list  # sampled operators, best first
    dropped: list  # ranked candidates left out, best first
    fixed: int  # arena bytes besides the pool
    pool: int  # the plan's sample_budget
    arena: int  # the whole training arena (memory_model)
    budget: int

    def describe(self):
        costs = {layer.operator_index: layer.channel_cost for layer in self.plan.layers}
        return [
            "TraDy plan: sampled ops %s (%s bytes per channel), classifier op %d fully; "
            "pool %d bytes (%.1f KB) + fixed %d bytes = arena %d bytes (%.1f KB) of "
            "budget %d (%.1f KB); seed %d%s"
            % (
                ", ".join(map(str, self.candidates)),
                ", ".join(str(costs[op]) for op in self.candidates),
                self.plan.layers[-1].operator_index,
                self.pool,
                self.pool / 1024,
                self.fixed,
                self.arena,
                self.arena / 1024,
                self.budget,
                self.budget / 1024,
                self.plan.seed,
                "; left out: ops %s" % ", ".join(map(str, self.dropped)) if self.dropped else "",
            )
        ]


def _sampled_plan(model_bytes, candidates, pool, seed, settings):
    return tflm_training.TrainingPlan.sampled(
        model_bytes, sorted(candidates), pool, seed, **settings
    )


def _largest_pool(model_bytes, candidates, budget, seed, settings, smallest, largest):
    """(plan, arena) with the largest sample_budget in smallest..largest
    whose arena fits `budget`, or None."""
    model = memory_model.for_model(model_bytes)

    def arena(pool):
        plan = _sampled_plan(model_bytes, candidates, pool, seed, settings)
        return plan, model.training_memory(plan).total

    plan, total = arena(smallest)
    if total > budget:
        return None
    pool = min(largest, smallest + (budget - total))  # the arena grows by the pool
    plan, total = arena(pool)
    while total > budget:
        pool -= 1
        plan, total = arena(pool)
    while pool < largest:  # the alignment may leave a few bytes
        bigger, bigger_total = arena(pool + 1)
        if bigger_total > budget:
            break
        pool, plan, total = pool + 1, bigger, bigger_total
    return plan, total


def channel_bytes(ranking, candidates):
    """Bytes of the optimizer state of every channel of the candidates:
    the largest pool that can be used (all of them drawn)."""
    layers = {layer.operator: layer for layer in ranking.layers}
    return sum(layers[op].channels * layers[op].channel_cost for op in candidates)


def expected_score(ranking, candidates, pool):
    """The RGN score drawn per epoch on average: the candidates' summed
    score times the share of their channels a pool of `pool` bytes holds."""
    if not candidates:
        return 0.0
    layers = {layer.operator: layer for layer in ranking.layers}
    score = sum(layers[op].score for op in candidates)
    return score * min(1.0, pool / channel_bytes(ranking, candidates))


def _trady_plan(ranking, budget, selected, candidates, fitted):
    plan, total = fitted[candidates][1]
    return TradyPlan(
        plan=plan,
        candidates=list(candidates),
        dropped=[op for op in selected if op not in candidates],
        fixed=total - plan.sample_budget,
        pool=plan.sample_budget,
        arena=total,
        budget=budget,
    )


def plan_for_budget(model_bytes, ranking, budget_bytes, seed=0):
    """The TradyPlan under budget_bytes (the whole training arena) with the
    ranking's settings: the top-k candidates with the largest
    expected_score among those whose pool holds MIN_DRAWN_SHARE of their
    channels; when none does, the best of every top-k set that fits and
    the greedy path (see the module doc)."""
    model_bytes = bytes(model_bytes)
    budget = int(budget_bytes)
    settings = {
        k: ranking.settings[k]
        for k in ("learning_rate", "momentum", "batch_size", "qas", "residual")
    }
    settings["gradient_bits"] = ranking.settings.get("gradient_bits", 32)
    costs = {layer.operator: layer.channel_cost for layer in ranking.layers}
    selected = ranking.selected
    if not selected:
        raise ValueError(
            "no layer has a nonzero gradient on these samples, so TraDy has no "
            "candidates; check the labels and the model, or rank on more samples"
        )
    fitted = {}

    def fit(candidates):
        """(expected score, (plan, arena)) of a set, None when it does not fit."""
        key = tuple(sorted(candidates, key=selected.index))
        if key not in fitted:
            found = _largest_pool(
                model_bytes,
                list(key),
                budget,
                seed,
                settings,
                max(costs[op] for op in key),
                channel_bytes(ranking, key),
            )
            fitted[key] = (
                None
                if found is None
                else (expected_score(ranking, key, found[0].sample_budget), found)
            )
        return fitted[key]

    def drawn_share(key):
        return fitted[key][1][0].sample_budget / channel_bytes(ranking, key)

    top = [tuple(selected[:k]) for k in range(1, len(selected) + 1)]
    qualified = [key for key in top if fit(key) is not None and drawn_share(key) >= MIN_DRAWN_SHARE]
    if qualified:
        return _trady_plan(
            ranking,
            budget,
            selected,
            max(qualified, key=lambda key: (fitted[key][0], -len(key))),
            fitted,
        )
    path, reached = [], 0.0
    while True:
        options = [
            (fit(path + [op])[0], op)
            for op in selected
            if op not in path and fit(path + [op]) is not None
        ]
        best = max(options, key=lambda option: option[0], default=None)  # ties: better rank
        if best is None or best[0] <= reached:
            break
        reached = best[0]
        path.append(best[1])
    feasible = [key for key, value in fitted.items() if value is not None]
    if feasible:
        return _trady_plan(
            ranking,
            budget,
            selected,
            max(feasible, key=lambda key: (fitted[key][0], -len(key))),
            fitted,
        )
    needs = {
        op: memory_model.training_memory(
            model_bytes, _sampled_plan(model_bytes, [op], costs[op], seed, settings)
        ).total
        for op in selected
    }
    cheapest = min(selected, key=lambda op: (needs[op], selected.index(op)))
    need = needs[cheapest]
    classifier = memory_model.training_memory(
        model_bytes, tflm_training.TrainingPlan.classifier_only(model_bytes, **settings)
    ).total
    raise InfeasibleBudgetError(
        "budget %d bytes (%.1f KB) cannot hold a TraDy plan: the cheapest candidate layer, "
        "op %d, sampled with a pool for one channel (%d bytes) and the classifier need a "
        "%d-byte training arena (%.1f KB); give a budget of at least %d bytes (the cheapest "
        "plan, the classifier alone, needs %d bytes)"
        % (budget, budget / 1024, cheapest, costs[cheapest], need, need / 1024, need, classifier)
    )
