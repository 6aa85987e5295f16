"""Firmware measurements: builds the inference app for an emulated board
with one model and a few inputs (tools/firmware_build.py), runs it in QEMU
(tools/emulation.py) and reads its console events
(tools/firmware_console.py)."""

import pathlib

import numpy as np

from tools import board_config
from tools import emulation
from tools import firmware_build

# Errors that mean "the firmware part cannot run here", not a bug.
UNAVAILABLE = (firmware_build.BuildError, emulation.EmulationError,
               board_config.BoardError)


def _last(log, name):
    events = log.named(name)
    return events[-1] if events else None


def _outputs_match(log, host_outputs):
    """Inputs whose firmware outputs equal the host's, and how many were
    compared."""
    firmware_outputs = log.outputs()
    same = 0
    for index, expected in enumerate(host_outputs):
        got = firmware_outputs.get(index)
        if got is not None and len(got) == len(expected) and all(
                np.array_equal(g, e) and g.dtype == e.dtype
                for g, e in zip(got, expected)):
            same += 1
    return same, len(host_outputs)


def _metrics(built, result, host_outputs):
    log = result.log
    init = log.init or {}
    stack = _last(log, "stack") or {}
    counts = log.counts()
    same, compared = _outputs_match(log, host_outputs)
    return {
        "status": result.status,
        "note": result.note,
        "errors": log.errors,
        "counter": log.counter_unit,
        "counts": [counts.get(i) for i in range(len(host_outputs))],
        "stack_used": stack.get("used"),
        "stack_size": stack.get("size"),
        "arena_used": init.get("arena_used"),
        "arena_size": init.get("arena_size"),
        "flash_bytes": built.usage.flash_bytes,
        "ram_bytes": built.usage.ram_bytes,
        "stack_reserved": built.usage.stack_bytes,
        "flash_size": built.summary["flash_size"],
        "ram_size": built.summary["ram_size"],
        "model_bytes": built.summary["model_bytes"],
        "outputs_equal_host": same,
        "outputs_compared": compared,
    }


def measure(board, model, samples, host_outputs, out_dir, timeout):
    """Builds and emulates `model` (a models.BenchModel) with `samples`
    embedded; returns a dict of metrics. `host_outputs[i]` are the host
    runtime's outputs for samples[i]."""
    built = firmware_build.build_firmware(
        board, model.path, np.ascontiguousarray(samples),
        out_dir=pathlib.Path(out_dir) / model.name)
    result = emulation.run_firmware(built.elf, board, timeout=timeout)
    metrics = _metrics(built, result, host_outputs)
    metrics["inputs_bytes"] = int(samples.nbytes)
    return metrics
