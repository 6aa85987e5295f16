"""The training plans the training benchmark compares, and their gradient
multiply-accumulates counted from the model's tensor shapes.

Plans (all SGD with the TrainingPlan defaults: learning rate 0.05, batch
size 1, QAS). The fixed ones are planning.schemes' plans of the same name,
the registry tools/deploy.py uses:

- classifier: the layer computing the logits, weights and biases of every
  output channel;
- bias: the bias of every layer that has one;
- sparse: the classifier, plus weights and biases of the first
  1/schemes.SPARSE_FRACTION of the output channels of the trainable layer
  just before it;
- full: weights and biases of every channel of every CONV_2D,
  DEPTHWISE_CONV_2D and FULLY_CONNECTED layer (full backpropagation);
- trady_64k: TraDy (planning/trady.py, the deploy default's scheme, with
  its settings there: learning rate 0.02, momentum 0.9, batch size 5) for
  a training arena of the inference arena plus 64 KB, its layers ranked on
  RANK_SAMPLES labelled samples of the model's dataset.
"""

from benchmarks import models
from planning import schemes
from tflm_training import Interpreter, tflite_graph
from tflm_training import plan as tt_plan

FIXED_KINDS = ("classifier", "bias", "sparse", "full")
PLAN_KINDS = (*FIXED_KINDS, "trady_64k")
TRADY_EXTRA_BYTES = 64 * 1024
TRADY_SETTINGS = {"learning_rate": 0.02, "momentum": 0.9, "batch_size": 5}
RANK_SAMPLES = 100


def _classifier_operator(graph):
    return graph.producer(tt_plan.find_logits(graph))


def _trady_plan(buffer, labelled):
    from planning import trady

    if labelled is None:
        raise ValueError("trady_64k needs labelled samples to rank the layers")
    x, y = labelled
    ranking = trady.rank_layers(buffer, x, y, samples=len(y), seed=0, **TRADY_SETTINGS)
    arena = Interpreter.from_bytes(buffer).arena_used_bytes()
    return trady.plan_for_budget(buffer, ranking, arena + TRADY_EXTRA_BYTES, seed=0).plan


def make_plan(kind, buffer, labelled=None):
    """The TrainingPlan of one of PLAN_KINDS for the model `buffer`;
    `labelled` = (x, y) samples for the plans chosen from data."""
    if kind == "trady_64k":
        return _trady_plan(buffer, labelled)
    if kind in FIXED_KINDS:
        return schemes.build(kind, buffer, schemes.Inputs({})).plan
    raise ValueError(f"unknown plan kind {kind!r}; known: {PLAN_KINDS}")


def describe(plan, buffer):
    """One line per trained layer: 'op 11 FULLY_CONNECTED weights 12/12'."""
    graph = tflite_graph.read_graph(buffer)
    lines = []
    for layer in plan.layers:
        op = graph.operators[layer.operator_index]
        total = tt_plan.parameter_layout(graph, op.index)["channels"]
        lines.append(f"op {op.index} {op.name} {layer.update} {len(layer.channels)}/{total}")
    return lines


def trained_parameters(buffer, plan):
    """How many weights and biases the plan updates per step."""
    graph = tflite_graph.read_graph(buffer)
    total = 0
    for layer in plan.layers:
        layout = tt_plan.parameter_layout(graph, layer.operator_index)
        channels = len(layer.channels)
        if layer.update == "weights":
            weights = graph.tensors[layout["weights"]].num_elements
            total += weights // layout["channels"] * channels
        if layout["bias"] is not None:
            total += channels
    return total


def _loss_ancestors(graph, logits):
    """Tensors the logits depend on (the logits included)."""
    needed = {logits}
    for op in reversed(graph.operators):
        if needed.intersection(op.outputs):
            needed.update(i for i in op.inputs if i >= 0)
    return needed


def _backward_operators(graph, plan):
    """Operators the trainer's backward pass visits, in forward order, with
    whether each input gets a gradient: those the plan trains or that a
    gradient reaches from one it trains, and whose output feeds the
    logits (the rule of tt_trainer_setup.c: find_backward_path)."""
    logits = plan.logits_tensor
    feeds_loss = _loss_ancestors(graph, logits)
    trained = {layer.operator_index for layer in plan.layers}
    has_grad, visited = set(), []
    for op in graph.operators[: _classifier_operator(graph) + 1]:
        inputs_with_grad = [i for i in op.inputs if i in has_grad]
        needed = op.index in trained or bool(inputs_with_grad)
        if needed and feeds_loss.intersection(op.outputs):
            visited.append((op, set(inputs_with_grad)))
            has_grad.update(op.outputs)
    return visited


def _forward_macs(graph, op):
    name = op.name
    output = graph.tensors[op.outputs[0]].shape
    weights = graph.tensors[op.inputs[1]].shape
    return models.op_macs(name, output, weights)


def gradient_macs(buffer, plan):
    """{"weight": MACs of the weight gradients the plan computes, "input":
    MACs of the input gradients its backward pass computes, "per_layer":
    [...]}, nominal (taps on padding included, like models.mac_counts).

    A selected channel's weight gradient costs the forward MACs of that
    channel (CONV_2D: out_h * out_w * KH * KW * filter depth; DEPTHWISE:
    out_h * out_w * KH * KW; FULLY_CONNECTED: rows * input features); a
    bias-only layer computes none. A layer's input gradient costs its
    forward MACs, and is computed when its input carries a gradient (an
    earlier layer trains)."""
    graph = tflite_graph.read_graph(buffer)
    layers = {layer.operator_index: layer for layer in plan.layers}
    totals = {"weight": 0, "input": 0, "per_layer": []}
    for op, inputs_with_grad in _backward_operators(graph, plan):
        if op.name not in models.MAC_OPS:
            continue
        forward = _forward_macs(graph, op)
        channels = tt_plan.parameter_layout(graph, op.index)["channels"]
        layer = layers.get(op.index)
        selected = len(layer.channels) if layer and layer.update == "weights" else 0
        weight = forward // channels * selected
        data_input = forward if op.inputs[0] in inputs_with_grad else 0
        totals["weight"] += weight
        totals["input"] += data_input
        totals["per_layer"].append(
            {"operator": op.index, "name": op.name, "weight_macs": weight, "input_macs": data_input}
        )
    return totals
