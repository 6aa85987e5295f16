"""The update schemes the benchmark compares, each fitted to a memory
budget, and the metrics of their training plans (no TensorFlow here).

A budget is a training arena in bytes: the model's inference arena plus the
EXTRA bytes training may use (tflm_training.memory_model gives both, to the
byte). Every int8 scheme trains with the same Settings.

Schemes:

- classifier: the layer computing the logits, weights and biases of every
  channel (one plan for every budget; marked over budget where it does not
  fit).
- last-biases: the classifier (weights and biases) plus the biases of
  the last k trainable layers before it, k as large as the budget allows.
- sparse-search, trady, lowrank: planning.schemes' plans of those names
  (benchmarks/update_schemes_extra.py).

Results written before the benchmark took the registry's names call
last-biases "bias" and sparse-search "sparse" (LEGACY_METHODS); they are
read under today's names.

Every plan is built by planning.schemes, the registry tools/deploy.py and
tools/analyze.py use.

Metrics of a plan (see weight_metrics, activation_metrics):

- training arena: memory_model.training_memory(...).total, and whether it
  fits the nRF52840's RAM less its stack;
- weight-derivative MACs per sample: for each layer whose weights train,
  trained output channels x weights per channel x output positions
  (CONV_2D: out_h * out_w; DEPTHWISE_CONV_2D: out_h * out_w; FULLY_CONNECTED:
  rows), i.e. the forward MACs of the trained channels;
- weight-derivative sparsity: 1 - trained weights / all weights (weight
  tensor elements of every CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED;
  biases not counted);
- activation sparsity: 1 - saved activation bytes / those of full
  backpropagation (every channel of every layer trains), where saved
  activation bytes are the int8 activations the plan keeps past their
  inference lifetime for the backward pass plus the 1-bit clamp masks
  (memory_model's placements).
"""

import dataclasses
import json
import pathlib
import re

import numpy as np

import tflm_training
from planning import cost_model, schemes
from tflm_training import memory_model, tflite_graph
from tflm_training import plan as tt_plan

METHODS = ("float_full", "classifier", "last-biases", "sparse-search", "trady", "lowrank")
INT8_METHODS = METHODS[1:]
BUDGETED = ("last-biases", "sparse-search", "trady", "lowrank")
# The method keys of results written before the benchmark named its methods
# as planning.schemes does.
LEGACY_METHODS = {"bias": "last-biases", "sparse": "sparse-search"}
UNTRAINABLE = (tflm_training.BadPlanError, tflm_training.UnsupportedModelError, ValueError)


@dataclasses.dataclass(frozen=True)
class Settings:
    """How every int8 scheme trains (the low-rank scheme uses Adam for its
    factors; the rest of its plan follows these)."""

    learning_rate: float = 0.02
    momentum: float = 0.0
    batch_size: int = 1
    qas: bool = True
    residual: bool = True
    lowrank_learning_rate: float = 0.02  # Adam's rate of "lowrank" layers
    gradient_bits: int = 32  # of the stored activation gradients (32 or 16)

    def plan_settings(self):
        """TrainingPlan settings (SGD)."""
        settings = dataclasses.asdict(self)
        del settings["lowrank_learning_rate"]
        return settings


def board_room(board="nrf52840"):
    """Bytes an arena may use on the board (planning.cost_model.ram_room:
    RAM less the stack and the firmware's other globals)."""
    return cost_model.ram_room(board)


def inference_arena(model_bytes):
    return memory_model.inference_arena(bytes(model_bytes)).total


def training_arena(model_bytes, plan):
    return memory_model.training_memory(bytes(model_bytes), plan).total


# -- schemes --------------------------------------------------------------------------


@dataclasses.dataclass
class Scheme:
    """One scheme at one budget: `plan` (None when nothing fits, with
    `reason`), or a `schedule` whose plan changes at each epoch (TraDy).

    schedule: an object with plans(epochs, seed) -> [plan per epoch] and
    trainer(plan) / begin_epoch(trainer, epoch, seed) hooks, or None."""

    method: str
    budget: int = None
    plan: object = None
    reason: str = None
    schedule: object = None
    info: dict = dataclasses.field(default_factory=dict)
    over_budget: bool = False  # no plan: the budget is too small for any

    @property
    def available(self):
        return self.plan is not None or self.schedule is not None


class RunFileError(ValueError):
    """A file that is not an update-scheme run's .json."""


def load_run(path):
    """The run written to `path` (its .json), checked for the parts the
    reports read and under today's method names."""
    try:
        data = json.loads(pathlib.Path(path).read_text())
    except json.JSONDecodeError as error:
        raise RunFileError(f"{path} is not an update-scheme run's .json: {error}") from None
    _check_run(path, data)
    return with_current_names(data)


def _check_run(path, data):
    def bad(what):
        return RunFileError(f"{path} is not an update-scheme run's .json: {what}")

    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        raise bad("no config")
    if not isinstance(data["config"].get("settings"), dict):
        raise bad("no config.settings")
    if not isinstance(data.get("records"), list):
        raise bad("no records")
    if not isinstance(data.get("summary", {}), dict):
        raise bad("its summary is not a table")
    for i, record in enumerate(data["records"]):
        keys = ("task", "method", "budget_kb", "seed", "accuracy")
        if not isinstance(record, dict) or any(k not in record for k in keys):
            raise bad(f"record {i} lacks one of {', '.join(keys)}")
        metrics = record.get("metrics")
        if record["accuracy"] is not None and not (
            isinstance(metrics, dict) and "training_arena" in metrics
        ):
            raise bad(f"record {i} has an accuracy but no metrics.training_arena")


def with_current_names(data):
    """A results file's data with its method keys (config["methods"],
    summary[task], records' "method") named as the benchmark names them
    now (LEGACY_METHODS)."""

    def name(method):
        return LEGACY_METHODS.get(method, method)

    if "methods" in data["config"]:
        data["config"]["methods"] = [name(m) for m in data["config"]["methods"]]
    if "summary" in data:
        data["summary"] = {
            task: {name(m): entry for m, entry in by_method.items()}
            for task, by_method in data["summary"].items()
        }
    for record in data["records"]:
        record["method"] = name(record["method"])
    if isinstance(data.get("command"), str):  # the report's "reproduce with" line must run today
        data["command"] = re.sub(
            r"(--methods[ =])(\S+)",
            lambda m: m.group(1) + ",".join(name(x) for x in m.group(2).split(",")),
            data["command"],
        )
    return data


def classifier_scheme(model_bytes, settings):
    plan = schemes.build("classifier", model_bytes, schemes.Inputs(settings.plan_settings())).plan
    return Scheme("classifier", None, plan)


def last_biases_scheme(model_bytes, budget, settings):
    """The deepest last-biases plan within `budget` bytes (arena)."""
    inputs = schemes.Inputs(settings.plan_settings(), budget=budget)
    try:
        built = schemes.build("last-biases", model_bytes, inputs)
    except schemes.InfeasibleBudgetError as error:
        return Scheme("last-biases", budget, None, over_budget=True, reason=str(error))
    except UNTRAINABLE as error:
        return Scheme("last-biases", budget, None, reason=str(error))
    return Scheme(
        "last-biases",
        budget,
        built.plan,
        info={"bias_layers": built.result.depth, "arena": built.result.arena},
    )


# -- metrics ----------------------------------------------------------------------------


def _graph(model_bytes):
    return tflite_graph.read_graph(bytes(model_bytes))


def _output_positions(graph, op):
    """Output positions per channel: out_h * out_w (conv), rows (FC)."""
    output = graph.tensors[op.outputs[0]]
    return output.num_elements // tt_plan.parameter_layout(graph, op.index)["channels"]


def all_weights(model_bytes):
    graph = _graph(model_bytes)
    return sum(
        graph.tensors[tt_plan.parameter_layout(graph, op)["weights"]].num_elements
        for op, *_ in tt_plan.trainable_operators(model_bytes)
    )


def weight_metrics(model_bytes, plan):
    """{"weight_derivative_macs", "trained_weights", "trained_biases",
    "projection_macs", "weight_derivative_sparsity"} of a plan. Low-rank
    layers compute every channel's weight gradient (row by row) and update
    every weight; projection_macs is the extra projection onto their rank.
    A "sampled" layer counts all its candidates (TraDy's metrics use each
    epoch's drawn channels instead)."""
    graph = _graph(model_bytes)
    macs = weights = biases = projection = 0
    for layer in plan.layers:
        op = graph.operators[layer.operator_index]
        layout = tt_plan.parameter_layout(graph, op.index)
        per_channel = graph.tensors[layout["weights"]].num_elements // layout["channels"]
        channels = len(layer.channels)
        if layout["bias"] is not None:
            biases += channels
        if layer.update not in ("weights", "lowrank", "sampled"):
            continue
        weights += channels * per_channel
        macs += channels * per_channel * _output_positions(graph, op)
        if layer.update == "lowrank":
            # R += outer(P[c, :], G[c, :]) per channel (tt_lowrank.h).
            projection += channels * layer.rank * per_channel
    return {
        "weight_derivative_macs": int(macs),
        "trained_weights": int(weights),
        "trained_biases": int(biases),
        "projection_macs": int(projection),
        "weight_derivative_sparsity": 1.0 - weights / all_weights(model_bytes),
    }


def full_plan(model_bytes, settings):
    return schemes.build("full", model_bytes, schemes.Inputs(settings.plan_settings())).plan


def saved_activation_bytes(model_bytes, plan):
    """Bytes of int8 activations kept past their inference lifetime for the
    backward pass, plus the clamp masks (memory_model placements)."""
    model = memory_model.for_model(bytes(model_bytes))
    memory = model.training_memory(plan)
    total = 0
    for p in memory.placements:
        if p.kind == "activation" and p.last > model.tensors[p.index].last_op:
            total += p.size
        elif p.kind == "mask":
            total += p.size
    return total


def activation_metrics(model_bytes, plan, settings):
    full = saved_activation_bytes(model_bytes, full_plan(model_bytes, settings))
    saved = saved_activation_bytes(model_bytes, plan)
    return {
        "saved_activation_bytes": int(saved),
        "full_saved_activation_bytes": int(full),
        "activation_sparsity": 1.0 - saved / full if full else 0.0,
    }


def plan_metrics(model_bytes, plan, settings, room):
    memory = memory_model.training_memory(bytes(model_bytes), plan)
    result = {
        "training_arena": memory.total,
        "memory": memory.as_dict(),
        "fits_nrf52840": memory.total <= room,
    }
    result.update(weight_metrics(model_bytes, plan))
    result.update(activation_metrics(model_bytes, plan, settings))
    result["layers"] = describe(model_bytes, plan)
    return result


def describe(model_bytes, plan):
    """One line per trained layer: 'op 11 FULLY_CONNECTED weights 12/12'."""
    graph = _graph(model_bytes)
    lines = []
    for layer in plan.layers:
        op = graph.operators[layer.operator_index]
        total = tt_plan.parameter_layout(graph, op.index)["channels"]
        if layer.update == "sampled":
            lines.append(f"op {op.index} {op.name} sampled from {len(layer.channels)}/{total}")
        elif layer.update == "lowrank":
            lines.append(
                f"op {op.index} {op.name} lowrank rank {layer.rank} {len(layer.channels)}/{total}"
            )
        else:
            lines.append(f"op {op.index} {op.name} {layer.update} {len(layer.channels)}/{total}")
    return lines


def mean_metrics(per_epoch):
    """Metrics of a schedule: the largest arena (fits if that fits), the
    mean of the per-sample and sparsity numbers over the epochs' plans."""
    result = {
        "training_arena": max(m["training_arena"] for m in per_epoch),
        "fits_nrf52840": all(m["fits_nrf52840"] for m in per_epoch),
    }
    for key in (
        "weight_derivative_macs",
        "trained_weights",
        "trained_biases",
        "weight_derivative_sparsity",
        "saved_activation_bytes",
        "activation_sparsity",
    ):
        result[key] = float(np.mean([m[key] for m in per_epoch]))
    result["full_saved_activation_bytes"] = per_epoch[0]["full_saved_activation_bytes"]
    result["layers"] = per_epoch[0]["layers"]
    result["per_epoch"] = [
        {k: m[k] for k in ("training_arena", "weight_derivative_macs", "trained_weights")}
        for m in per_epoch
    ]
    return result


# -- one training run --------------------------------------------------------------------


def train_and_evaluate(model_bytes, scheme, samples, epochs, seed):
    """Trains the scheme on the seed's samples (one shuffled pass per epoch,
    the order drawn from the seed, the same for every scheme) and returns
    {"accuracy", "losses", ...} on the test samples."""
    rng = np.random.default_rng(seed)
    schedule = scheme.schedule
    if schedule is None:
        trainer = tflm_training.Trainer(model_bytes, scheme.plan)
    else:
        trainer = schedule.trainer(seed)
    losses = []
    try:
        for epoch in range(epochs):
            order = rng.permutation(len(samples.train_y))
            if schedule is not None:
                trainer = schedule.begin_epoch(trainer, epoch, seed)
            losses.append(trainer.train_step(samples.train_x[order], samples.train_y[order]))
    except tflm_training.DivergedError as error:
        return {"accuracy": None, "diverged": str(error), "losses": losses}
    accuracy = trainer.evaluate(samples.test_x, samples.test_y)
    return {
        "accuracy": accuracy,
        "losses": [float(v) for v in losses],
        "arena_used": trainer.arena_used_bytes(),
    }
