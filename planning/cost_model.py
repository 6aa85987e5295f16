"""What a training plan costs on the board, to the byte, before anything runs.

    cost = plan_cost(model_bytes, plan, board='nrf52840')
    cost.total            # == Trainer(model_bytes, plan).arena_used_bytes()
    cost.parts            # == Trainer(model_bytes, plan).memory()
    cost.extra            # total - the inference arena
    cost.fits             # total <= the board's RAM room
    print('\\n'.join(cost.describe()))

Everything is read from tflm_training.memory_model (the pure-Python mirror
of the C runtime's arena layout); this module only names and groups its
numbers:

* tables: the interpreter's tensor/operator tables and op data, and the
  trainer's tables and channel lists;
* parameter_copies: the RAM ("master") copies of the trained int8 weights
  and int32 biases (the model itself stays in flash);
* optimizer_state: float32 residuals, velocities (momentum > 0) and
  accumulators (batch_size > 1) of the trained channels;
* sampled_pool: the pool of the plan's sample_budget bytes in which
  sampled (TraDy) layers keep the optimizer state of the channels drawn
  each epoch (Trainer.memory()['sampled_state']; 0 without them);
* any further part Trainer.memory() reports (other_parts);
* planned_region: the region the greedy planner lays out on the training
  timeline (forward activations, activations saved for the backward pass,
  float32 gradients, 1-bit clamp masks, one channel's weight-gradient
  scratch). Buffers share bytes when their lifetimes do not overlap, so the
  region is smaller than the sum of its buffers; `region_peak` gives the
  bytes live at the busiest step, by kind.

The board's RAM room (ram_room) is RAM - stack - RAM_RESERVE (the
firmware's other globals), from boards/<board>/board.json; deploy.py,
planning.footprint and the benchmarks use the same rule.
"""

import dataclasses
import functools
import json
import os

from tflm_training import memory_model
from tflm_training import plan as plan_lib

BOARDS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "boards")
# Globals besides the arena (under 1 KB today), beyond the stack.
RAM_RESERVE = 4 * 1024


def board_limits(board="nrf52840"):
    """{'flash', 'ram', 'stack'} bytes of a board (following 'emulates')."""
    with open(os.path.join(BOARDS_DIR, board, "board.json")) as f:
        data = json.load(f)
    if "emulates" in data:
        base = board_limits(data["emulates"])
        memory = data.get("memory", {})
        return {
            "flash": _size(memory.get("flash"), base["flash"]),
            "ram": _size(memory.get("ram"), base["ram"]),
            "stack": int(data.get("stack_size", base["stack"])),
        }
    return {
        "flash": _size(data["memory"]["flash"], None),
        "ram": _size(data["memory"]["ram"], None),
        "stack": int(data.get("stack_size", 16384)),
    }


def _size(region, default):
    if region is None:
        return default
    size = region["size"]
    return int(size, 0) if isinstance(size, str) else int(size)


@functools.lru_cache(maxsize=8)
def ram_room(board="nrf52840"):
    """Bytes a training arena may use on `board`: RAM less the stack and
    RAM_RESERVE."""
    limits = board_limits(board)
    return limits["ram"] - limits["stack"] - RAM_RESERVE


@functools.lru_cache(maxsize=16)
def inference_arena(model_bytes):
    """The inference arena in bytes (== Interpreter.arena_used_bytes())."""
    return memory_model.inference_arena(bytes(model_bytes)).total


def _saved(model, placement):
    """Whether an activation placement outlives its inference lifetime
    (kept for the backward pass)."""
    return placement.last > model.tensors[placement.index].last_op


def _region_peak(model, memory):
    """{kind: bytes} live at the training-timeline step with the most live
    bytes in the planned region (the first such step)."""
    placements = memory.placements
    if not placements:
        return {}
    steps = sorted({p.first for p in placements})
    best, best_live = None, -1
    for step in steps:
        live = [p for p in placements if p.first <= step <= p.last]
        size = sum(p.size for p in live)
        if size > best_live:
            best, best_live = live, size
    peak = {}
    for p in best:
        kind = p.kind
        if kind == "activation":
            kind = "saved_activations" if _saved(model, p) else "activations"
        else:
            kind += "s" if kind != "scratch" else ""
        peak[kind] = peak.get(kind, 0) + p.size
    return peak


@dataclasses.dataclass(frozen=True)
class PlanCost:
    """The training arena of one plan, its parts, and the board check."""

    total: int  # the training arena
    parts: dict  # Trainer.memory(): interpreter_tables, ... total
    inference: int  # the inference arena of the model
    room: int  # the board's RAM room for an arena (None: no board)
    board: str
    region_peak: dict  # planned region: live bytes by kind at the peak step
    layers: tuple  # (operator, update, channels or candidates, channel_cost)

    @property
    def extra(self):
        """Bytes training needs beyond inference."""
        return self.total - self.inference

    @property
    def tables(self):
        return self.parts["interpreter_tables"] + self.parts["trainer_tables"]

    @property
    def parameter_copies(self):
        return self.parts["weight_copies"]

    @property
    def optimizer_state(self):
        return self.parts["optimizer_state"]

    @property
    def planned_region(self):
        return self.parts["planned_region"]

    @property
    def sampled_pool(self):
        """The state pool of sampled layers (the plan's sample_budget, as
        laid out; 0 without sampled layers)."""
        return self.parts.get("sampled_state", 0)

    @property
    def other_parts(self):
        """{name: bytes} of any further part the runtime reports."""
        known = (
            "interpreter_tables",
            "trainer_tables",
            "weight_copies",
            "optimizer_state",
            "sampled_state",
            "planned_region",
            "total",
        )
        return {k: v for k, v in self.parts.items() if k not in known}

    @property
    def fits(self):
        """Whether the arena fits the board's RAM room (True without a board)."""
        return self.room is None or self.total <= self.room

    def as_dict(self):
        return {
            "total": self.total,
            "parts": dict(self.parts),
            "inference": self.inference,
            "extra": self.extra,
            "room": self.room,
            "board": self.board,
            "fits": self.fits,
            "region_peak": dict(self.region_peak),
            "layers": [list(layer) for layer in self.layers],
        }

    def describe(self):
        """Lines for people."""

        def kb(n):
            return "%.1f KB" % (n / 1024)

        lines = [
            "training arena %d bytes (%s) = inference %s + extra %s"
            % (self.total, kb(self.total), kb(self.inference), kb(self.extra))
        ]
        detail = [
            "tables %s" % kb(self.tables),
            "parameter copies %s" % kb(self.parameter_copies),
            "optimizer state %s" % kb(self.optimizer_state),
        ]
        if self.sampled_pool:
            detail.append("sampled-channel pool %s" % kb(self.sampled_pool))
        detail += ["%s %s" % (k.replace("_", " "), kb(v)) for k, v in self.other_parts.items()]
        detail.append("planned region %s" % kb(self.planned_region))
        lines.append("  " + " + ".join(detail))
        if self.region_peak:
            lines.append(
                "  planned region at its busiest step: "
                + ", ".join(
                    "%s %s" % (k.replace("_", " "), kb(v))
                    for k, v in sorted(self.region_peak.items())
                )
            )
        for op, update, channels, channel_cost in self.layers:
            if update == "sampled":
                lines.append(
                    "  op %d: sampled from %d candidate channels, %d bytes each"
                    % (op, channels, channel_cost)
                )
            else:
                lines.append("  op %d: %s, %d channels" % (op, update, channels))
        if self.room is not None:
            lines.append(
                "  %s: %s of %s RAM room -> %s"
                % (
                    self.board,
                    kb(self.total),
                    kb(self.room),
                    "fits"
                    if self.fits
                    else "does NOT fit (%d bytes over)" % (self.total - self.room),
                )
            )
        return lines


def _layer_rows(plan):
    return tuple(
        (layer.operator_index, layer.update, len(layer.channels), int(layer.channel_cost or 0))
        for layer in plan.layers
    )


def plan_cost(model_bytes, plan, board="nrf52840"):
    """The PlanCost of `plan` (a TrainingPlan or its bytes) for the model;
    board=None skips the board check. Raises what memory_model raises for
    a plan the runtime cannot train (BadPlanError, UnsupportedModelError)."""
    model_bytes = bytes(model_bytes)
    if not isinstance(plan, plan_lib.TrainingPlan):
        plan = plan_lib.TrainingPlan.from_bytes(plan)
    model = memory_model.for_model(model_bytes)
    memory = model.training_memory(plan)
    return PlanCost(
        total=memory.total,
        parts=memory.as_dict(),
        inference=inference_arena(model_bytes),
        room=ram_room(board) if board else None,
        board=board,
        region_peak=_region_peak(model, memory),
        layers=_layer_rows(plan),
    )


def training_arena(model_bytes, plan):
    """Only the training arena's total in bytes (fast path for searches)."""
    return memory_model.training_memory(bytes(model_bytes), plan).total
