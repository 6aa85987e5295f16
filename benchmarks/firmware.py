"""Firmware measurements: builds the inference app (tools/firmware_build.py)
or the training app (tools/training_firmware.py) for an emulated board with
one model and a few inputs, runs it in QEMU (tools/emulation.py) and reads
its console events (tools/firmware_console.py)."""

import contextlib
import json
import pathlib
import tempfile

import numpy as np

from benchmarks import host
from tools import board_config, emulation, firmware_build, training_firmware

# Errors that mean "the firmware part cannot run here", not a bug.
UNAVAILABLE = (firmware_build.BuildError, emulation.EmulationError, board_config.BoardError)

# RAM of QEMU's mps2-an385/an386 machines at the RAM origin.
EMULATOR_RAM_BYTES = 4 << 20


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
        if (
            got is not None
            and len(got) == len(expected)
            and all(np.array_equal(g, e) and g.dtype == e.dtype for g, e in zip(got, expected))
        ):
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
        "code_bytes": built.summary["code_bytes"],
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
        board, model.path, np.ascontiguousarray(samples), out_dir=pathlib.Path(out_dir) / model.name
    )
    result = emulation.run_firmware(built.elf, board, timeout=timeout)
    metrics = _metrics(built, result, host_outputs)
    metrics["inputs_bytes"] = int(samples.nbytes)
    return metrics


def measure_inference(board, model, interpreter, samples, out_dir, timeout):
    """measure() with the outputs `interpreter` (ours, on the host) gives
    for `samples`; {"error": why} when the firmware cannot be built or
    run."""
    count = interpreter.num_outputs
    expected = [host.run_outputs(interpreter, s, count) for s in samples]
    try:
        return measure(board, model, samples, expected, out_dir, timeout)
    except UNAVAILABLE as error:
        return {"error": str(error).splitlines()[0]}


def _training_metrics(built, result):
    run = training_firmware.TrainingRun.from_log(result.log)
    return {
        "status": result.status,
        "note": result.note,
        "errors": result.log.errors,
        "counter": run.steps[0]["counter"] if run.steps else None,
        "step_counts": run.step_counts,
        "losses": [float(loss) for loss in run.losses],
        "count_per_inference": run.count_per_inference(),
        "init": {k: v for k, v in run.init.items() if k != "event"},
        "ram": {k: v for k, v in run.ram.items() if k != "event"},
        "flash_bytes": built.usage.flash_bytes,
        "ram_bytes": built.usage.ram_bytes,
        "stack_reserved": built.usage.stack_bytes,
        "board": built.board,
    }


def measure_training(board, model, plan_bytes, train, test, out_dir, timeout):
    """Builds and emulates the training app: `train` = (x, y) samples it
    trains on one step each, `test` = (x, y) it predicts before and after.
    Returns a dict of metrics; raises firmware_build.OverLimitError when it
    does not fit the board, UNAVAILABLE errors when it cannot be built."""
    built = training_firmware.build_training_firmware(
        board, model.buffer, plan_bytes, train[0], train[1], out_dir, test_x=test[0], test_y=test[1]
    )
    result = emulation.run_firmware(built.elf, board, timeout=timeout)
    if result.status != 0:
        return {
            "status": result.status,
            "note": result.note,
            "errors": result.log.errors,
            "board": built.board,
        }
    return _training_metrics(built, result)


def _roomy_board_data(board_name, ram_bytes):
    """board.json of a copy of `board_name` with `ram_bytes` of RAM."""
    board = board_config.load_board(board_name)
    if not board.qemu:
        raise board_config.BoardError(f"board {board_name} is not emulated")
    data = json.loads((board.path / "board.json").read_text())
    data["name"] = f"{board_name}_roomy"
    data["description"] = (
        f"{board_name} with {ram_bytes} bytes of RAM: measures what does not fit the real board"
    )
    memory = {
        "flash": {"origin": board.flash.origin, "size": board.flash.size},
        "ram": {"origin": board.ram.origin, "size": ram_bytes},
    }
    data["memory"] = memory
    data.pop("app_offset", None)
    return data


@contextlib.contextmanager
def roomy_board(board_name, ram_bytes=EMULATOR_RAM_BYTES):
    """Yields the name of a temporary board: `board_name` (an emulated
    board) with `ram_bytes` of RAM instead of its real limit, so that
    firmware too big for the real part still runs in QEMU (whose machine
    has more memory). The boards/ folder is left alone: board_config reads
    a temporary copy of it (links to the real boards plus the new one)
    while the context is open."""
    data = _roomy_board_data(board_name, ram_bytes)
    real_dir = board_config.BOARDS_DIR
    with tempfile.TemporaryDirectory(prefix="tt_bench_boards_") as tmp:
        boards = pathlib.Path(tmp)
        for entry in real_dir.iterdir():
            (boards / entry.name).symlink_to(entry)
        (boards / data["name"]).mkdir()
        (boards / data["name"] / "board.json").write_text(json.dumps(data))
        board_config.BOARDS_DIR = boards
        try:
            yield data["name"]
        finally:
            board_config.BOARDS_DIR = real_dir


def run_with_firmware_dir(run_all, enabled, keep_dir, prefix):
    """run_all(folder for the firmware builds, or None without firmware):
    in keep_dir when given, else in a temporary folder deleted afterwards."""
    if not enabled:
        return run_all(None)
    if keep_dir:
        return run_all(pathlib.Path(keep_dir).resolve())
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        return run_all(pathlib.Path(tmp))
