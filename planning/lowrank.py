"""Low-rank gradient plans under a memory budget (Gooneratne et al. 2020;
GaLore, Zhao et al. 2024; runtime/optimizer/tt_lowrank.h).

    result = plan_for_budget(model_bytes, budget_bytes, learning_rate=0.02)
    result.plan      # a TrainingPlan: "lowrank" layers + the classifier

Which layers: FULLY_CONNECTED and pointwise (1x1, one group) CONV_2D
layers before the classifier that feed the logits: the layers whose weight
gradient is a matrix the runtime can project. The classifier (the layer
computing the logits) always trains fully by SGD, like in every other
scheme.

How they are chosen: from the layer nearest the logits backwards (going
deeper makes the backward pass, and so the saved activations and gradient
buffers, longer), each layer joins with the largest rank in
{max_rank, max_rank/2, ..., 1} (capped by the layer's min(C_out, C_in))
whose whole training arena (memory_model, to the byte) fits the budget.
The first layer that fits at no rank ends the search.

Learning rates: Adam's step is about one learning rate per weight and
update whatever the gradient's scale, in quantization steps, so the
low-rank layers get their own rate, `adam_learning_rate`, through their
lr_scale (the plan's rate is the classifier's SGD rate).
"""

import dataclasses

from planning import contribution
from tflm_training import memory_model, tflite_graph
from tflm_training import plan as plan_lib
from tflm_training.errors import TflmTrainingError

MAX_RANK = 16
REFRESH_STEPS = 10
ADAM_LEARNING_RATE = 0.02


class InfeasibleBudgetError(ValueError):
    """The budget cannot hold the classifier and one rank-1 layer."""


@dataclasses.dataclass
class LowRankPlan:
    plan: plan_lib.TrainingPlan
    ranks: dict  # operator index -> rank
    arena: int  # training arena bytes (memory_model)
    budget: int
    skipped: list  # candidate operators left out, nearest the logits first

    def describe(self):
        layers = ", ".join(f"op {op} rank {rank}" for op, rank in sorted(self.ranks.items()))
        return [
            f"low-rank plan: {layers or 'no low-rank layer'} + the classifier; training "
            f"arena {self.arena} bytes of a {self.budget}-byte budget"
        ]


def candidate_layers(model_bytes):
    """Operator indices of the FULLY_CONNECTED and pointwise CONV_2D layers
    before the classifier that feed the logits, nearest the logits first."""
    graph = tflite_graph.read_graph(model_bytes)
    classifier = contribution.classifier_operator(model_bytes)
    result = []
    for op, _, _ in contribution.candidate_layers(model_bytes):
        if op != classifier and _is_projectable(graph, graph.operators[op]):
            result.append(op)
    return sorted(result, reverse=True)


def _is_projectable(graph, op):
    if op.builtin_code == tflite_graph.FULLY_CONNECTED:
        return True
    if op.builtin_code != tflite_graph.CONV_2D:
        return False
    shape = graph.tensors[op.inputs[1]].shape
    return (
        len(shape) == 4
        and tuple(shape[1:3]) == (1, 1)
        and graph.tensors[op.inputs[0]].shape[-1] == shape[3]
    )


def largest_rank(model_bytes, op):
    """min(C_out, C_in) of a projectable layer."""
    layout = plan_lib.parameter_layout(tflite_graph.read_graph(model_bytes), op)
    return min(layout["channels"], layout["weights_per_channel"])


def make_plan(
    model_bytes,
    ranks,
    *,
    learning_rate,
    adam_learning_rate=ADAM_LEARNING_RATE,
    refresh_steps=REFRESH_STEPS,
    **settings,
):
    """The TrainingPlan training `ranks` ({operator: rank}) low-rank and the
    classifier fully."""
    classifier = contribution.classifier_operator(model_bytes)
    scale = adam_learning_rate / learning_rate
    layers = [
        plan_lib.LayerPlan(
            op, "lowrank", None, lr_scale=scale, rank=rank, refresh_steps=refresh_steps
        )
        for op, rank in ranks.items()
    ]
    layers.append(plan_lib.LayerPlan(classifier, "weights"))
    return plan_lib.TrainingPlan.for_model(
        model_bytes, layers, learning_rate=learning_rate, **settings
    )


def _arena(model_bytes, plan):
    """(training arena bytes, None), or (None, why) when the runtime cannot
    train the plan."""
    try:
        return memory_model.training_memory(model_bytes, plan).total, None
    except TflmTrainingError as error:
        return None, str(error)


def plan_for_budget(
    model_bytes,
    budget_bytes,
    *,
    max_rank=MAX_RANK,
    learning_rate=0.02,
    adam_learning_rate=ADAM_LEARNING_RATE,
    refresh_steps=REFRESH_STEPS,
    **settings,
):
    """The LowRankPlan under budget_bytes (the whole training arena)."""
    model_bytes = bytes(model_bytes)
    budget = int(budget_bytes)
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    options = dict(
        learning_rate=learning_rate,
        adam_learning_rate=adam_learning_rate,
        refresh_steps=refresh_steps,
        **settings,
    )
    candidates = candidate_layers(model_bytes)
    if not candidates:
        raise ValueError(
            "the model has no FULLY_CONNECTED or pointwise CONV_2D layer before "
            "the classifier; low-rank training needs one"
        )
    ranks, arena = {}, None
    for index, op in enumerate(candidates):
        chosen = None
        rank = min(max_rank, largest_rank(model_bytes, op))
        while rank >= 1:
            trial = {**ranks, op: rank}
            total, why = _arena(model_bytes, make_plan(model_bytes, trial, **options))
            if why is not None:
                raise ValueError(f"operator {op} cannot train low-rank: {why}")
            if total <= budget:
                chosen = (rank, total)
                break
            rank //= 2
        if chosen is None:
            if not ranks:
                _raise_infeasible(model_bytes, op, budget, options)
            return LowRankPlan(
                make_plan(model_bytes, ranks, **options), ranks, arena, budget, candidates[index:]
            )
        ranks[op], arena = chosen
    return LowRankPlan(make_plan(model_bytes, ranks, **options), ranks, arena, budget, [])


def _raise_infeasible(model_bytes, op, budget, options):
    need, _ = _arena(model_bytes, make_plan(model_bytes, {op: 1}, **options))
    raise InfeasibleBudgetError(
        f"budget {budget} bytes ({budget / 1024:.1f} KB) cannot hold a low-rank plan: the "
        f"classifier and operator {op} at rank 1 need a {need}-byte training arena "
        f"({need / 1024:.1f} KB); give a budget of at least {need} bytes"
    )
