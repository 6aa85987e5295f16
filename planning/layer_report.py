"""The per-layer report of a model and a training plan, for people.

One row per operator of a training step (those up to the logits): its
forward MACs, the MACs of its backward work (weight gradients of the
channels it trains and the input gradient when the gradient flows on),
the training arena live while it runs forward and backward (everything
persistent plus the planned region's buffers live at that step, from
tflm_training.memory_model, exact), what it trains, and, from an emulated
profiling run (tools/training_firmware.py, profile_operators), the
instructions of its forward and backward work per step.

    rows = layer_report.layer_rows(model_bytes, plan, profile)
    print(layer_report.markdown(rows))
    layer_report.plot(rows, "layers.png", "ds_cnn, TraDy")
"""

import dataclasses

from tflm_training import memory_model, tflite_graph
from tflm_training.plan import TrainingPlan, parameter_layout

_MAC_OPERATORS = (
    tflite_graph.CONV_2D,
    tflite_graph.DEPTHWISE_CONV_2D,
    tflite_graph.FULLY_CONNECTED,
)


@dataclasses.dataclass(frozen=True)
class LayerRow:
    operator: int
    name: str
    forward_macs: int
    backward_macs: int  # 0 when the backward pass does not visit it
    trains: str  # e.g. "weights 12/48", "bias 48/48", "" (frozen)
    arena_forward: int  # bytes live while it runs forward
    arena_backward: int = None  # while it runs backward; None: not visited
    instructions_forward: float = None  # per step, emulated; None: not profiled
    instructions_backward: float = None

    def as_dict(self):
        return dataclasses.asdict(self)


def forward_macs(graph, op):
    """Nominal MACs of a CONV_2D, DEPTHWISE_CONV_2D or FULLY_CONNECTED
    (taps on padding included); 0 for other operators."""
    if op.builtin_code not in _MAC_OPERATORS:
        return 0
    outputs = graph.tensors[op.outputs[0]].num_elements
    weights = graph.tensors[op.inputs[1]].shape
    if op.builtin_code == tflite_graph.CONV_2D:  # [C_out, KH, KW, depth]
        return outputs * weights[1] * weights[2] * weights[3]
    if op.builtin_code == tflite_graph.DEPTHWISE_CONV_2D:  # [1, KH, KW, C_out]
        return outputs * weights[1] * weights[2]
    return outputs * weights[1]  # FULLY_CONNECTED: [units, depth]


def _trains(graph, layer):
    if layer is None:
        return ""
    channels = parameter_layout(graph, layer.operator_index)["channels"]
    return f"{layer.update} {len(layer.channels)}/{channels}"


def _live_bytes(memory, step):
    """The arena in use at a step: the persistent part and the planned
    region's buffers live then."""
    live = sum(p.size for p in memory.placements if p.first <= step <= p.last)
    return memory.region_offset + live


def layer_rows(model_bytes, plan, profile=None):
    """LayerRows of every operator up to the logits. `profile`: {operator:
    {"forward": instructions, "backward": instructions}} per step (an
    emulated profiling run), or None."""
    if not isinstance(plan, TrainingPlan):
        plan = TrainingPlan.from_bytes(plan)
    graph = tflite_graph.read_graph(model_bytes)
    memory = memory_model.training_memory(model_bytes, plan)
    with_gradient = {
        index
        for p in memory.placements
        if p.kind == "gradient"
        for index in (p.index,) + p.shared_by
    }
    layers = {layer.operator_index: layer for layer in plan.layers}
    loss_node = graph.producer(plan.logits_tensor)
    steps = 2 * len(graph.operators)
    profile = profile or {}
    rows = []
    for op in graph.operators[: loss_node + 1]:
        visited = op.outputs[0] in with_gradient
        macs = forward_macs(graph, op)
        layer = layers.get(op.index)
        backward = 0
        if visited and macs:
            if layer is not None and layer.update != "bias":
                channels = parameter_layout(graph, op.index)["channels"]
                backward += macs // channels * len(layer.channels)
            if op.inputs[0] in with_gradient:
                backward += macs
        measured = profile.get(op.index, {})
        rows.append(
            LayerRow(
                op.index,
                op.name,
                macs,
                backward,
                _trains(graph, layer),
                _live_bytes(memory, op.index),
                _live_bytes(memory, steps - op.index) if visited else None,
                measured.get("forward"),
                measured.get("backward") if visited else None,
            )
        )
    return rows


def _number(value):
    if value is None:
        return ""
    return f"{value:,.0f}"


def markdown(rows):
    """The rows as a markdown table."""
    header = (
        "| op | operator | trains | forward MACs | backward MACs | arena forward "
        "(bytes) | arena backward (bytes) | instructions forward | instructions "
        "backward |"
    )
    lines = [header, "| ---: | :--- | :--- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(
            f"| {r.operator} | {r.name} | {r.trains} | {_number(r.forward_macs)} | "
            f"{_number(r.backward_macs)} | {_number(r.arena_forward)} | "
            f"{_number(r.arena_backward)} | {_number(r.instructions_forward)} | "
            f"{_number(r.instructions_backward)} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows, path, title):
    """A PNG at `path`: per operator, instructions (or MACs when not
    profiled) forward and backward, and the arena live at each step."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    labels = [f"{r.operator} {r.name}{' *' if r.trains else ''}" for r in rows]
    profiled = any(r.instructions_forward is not None for r in rows)
    if profiled:
        work = (
            [r.instructions_forward or 0 for r in rows],
            [r.instructions_backward or 0 for r in rows],
            "instructions per step",
        )
    else:
        work = ([r.forward_macs for r in rows], [r.backward_macs for r in rows], "MACs")
    figure, (top, bottom) = pyplot.subplots(
        2, 1, figsize=(max(8, 0.45 * len(rows)), 8), sharex=True
    )
    positions = range(len(rows))
    top.bar([p - 0.2 for p in positions], work[0], 0.4, label="forward")
    top.bar([p + 0.2 for p in positions], work[1], 0.4, label="backward")
    top.set_ylabel(work[2])
    top.set_title(f"{title} (* trains)")
    top.legend()
    bottom.plot(list(positions), [r.arena_forward for r in rows], "o-", label="forward")
    bottom.plot(list(positions), [r.arena_backward for r in rows], "s-", label="backward")
    bottom.set_ylabel("training arena live (bytes)")
    bottom.legend()
    bottom.set_xticks(list(positions))
    bottom.set_xticklabels(labels, rotation=75, ha="right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    pyplot.close(figure)
