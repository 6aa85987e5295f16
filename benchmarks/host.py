"""Host measurements: invoke() time of tflm_training.Interpreter and of the
tflite_micro Python runtime on the same inputs, their arena bytes, and
whether their outputs are identical."""

import contextlib
import gc
import os
import re
import sys
import tempfile
import time

import numpy as np
from tflite_micro.python.tflite_micro import runtime as tflm_runtime

import tflm_training

OURS = "tflm_training"
TFLM = "tflite_micro"

_TOTAL_RE = re.compile(r"Arena allocation total (\d+) bytes")

# How invoke() is timed: wall-clock time, or the CPU time of this thread
# (which leaves out time the thread spends descheduled when other work
# competes for the cores, but costs about a microsecond per reading).
CLOCKS = {"wall": time.perf_counter_ns, "thread_cpu": time.thread_time_ns}


def make_interpreters(buffer):
    """{runtime name: interpreter}, both with their default arena: exactly
    what the model needs for ours, 10x the model size for tflite_micro."""
    return {
        OURS: tflm_training.Interpreter.from_bytes(buffer),
        TFLM: tflm_runtime.Interpreter.from_bytes(buffer),
    }


def input_details(interpreters):
    return interpreters[OURS].get_input_details(0)


def _timed_invoke(interpreter, sample, clock):
    interpreter.set_input(sample, 0)
    start = clock()
    interpreter.invoke()
    return clock() - start


def time_invokes(interpreters, samples, repeats, warmup, clock="wall"):
    """{runtime: [ns of each timed invoke]}, timed with CLOCKS[clock].
    Rounds cycle through the samples; in each round every runtime gets the
    same sample, in an order that alternates between rounds. Only invoke()
    is inside the timer; set_input() is not. The garbage collector is off
    while timing."""
    read_clock = CLOCKS[clock]
    names = list(interpreters)
    times = {name: [] for name in names}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for round_index in range(warmup + repeats):
            sample = samples[round_index % len(samples)]
            order = names if round_index % 2 == 0 else names[::-1]
            for name in order:
                elapsed = _timed_invoke(interpreters[name], sample, read_clock)
                if round_index >= warmup:
                    times[name].append(elapsed)
    finally:
        if gc_was_enabled:
            gc.enable()
    return times


def summarize(times_ns):
    """Median, p90, min and mean in microseconds, and the sample count."""
    values = np.asarray(times_ns, dtype=np.float64) / 1e3
    return {
        "median_us": float(np.median(values)),
        "p90_us": float(np.percentile(values, 90)),
        "min_us": float(values.min()),
        "mean_us": float(values.mean()),
        "n": int(values.size),
    }


def _all_outputs(interpreter, count):
    return [np.array(interpreter.get_output(i), copy=True) for i in range(count)]


def run_outputs(interpreter, sample, count):
    """The `count` outputs of one inference on `sample`."""
    interpreter.set_input(sample, 0)
    interpreter.invoke()
    return _all_outputs(interpreter, count)


def outputs_identical(a, b):
    return len(a) == len(b) and all(
        x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, b)
    )


def compare_outputs(interpreters, samples):
    """Runs every sample through both runtimes; returns (ours' outputs per
    sample, number of samples whose outputs differ)."""
    count = interpreters[OURS].num_outputs
    ours_all, mismatches = [], 0
    for sample in samples:
        ours = run_outputs(interpreters[OURS], sample, count)
        theirs = run_outputs(interpreters[TFLM], sample, count)
        mismatches += not outputs_identical(ours, theirs)
        ours_all.append(ours)
    return ours_all, mismatches


@contextlib.contextmanager
def _fd2_captured(lines):
    """Sends file descriptor 2 (the C++ runtime's stderr) to a temporary
    file; appends its text to `lines` on exit."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", "replace")
            lines.extend(text.splitlines())


def tflm_recorded_arena(interpreter):
    """tflite_micro's Python API returns no arena size; print_allocations()
    prints the RecordingMicroAllocator's totals to stderr, which this
    parses. Call after invoke()."""
    lines = []
    with _fd2_captured(lines):
        interpreter.print_allocations()
    for line in lines:
        match = _TOTAL_RE.search(line)
        if match:
            return int(match.group(1))
    return None


def _tflm_runs_with(buffer, arena_size, sample):
    try:
        interpreter = tflm_runtime.Interpreter.from_bytes(buffer, arena_size=arena_size)
        interpreter.set_input(sample, 0)
        interpreter.invoke()
    except RuntimeError:
        return False
    return True


def tflm_minimal_arena(buffer, sample, upper):
    """The smallest arena_size (bytes) with which tflite_micro loads the
    model and invokes it, by bisection below `upper` (which must work).
    Its "allocation failed" messages are swallowed."""
    lines = []
    with _fd2_captured(lines):
        if not _tflm_runs_with(buffer, upper, sample):
            return None
        low, high = 0, upper  # low fails, high works
        while high - low > 1:
            middle = (low + high) // 2
            if _tflm_runs_with(buffer, middle, sample):
                high = middle
            else:
                low = middle
    return high


def arena_bytes(interpreters, buffer, sample):
    """Arena numbers of both runtimes (the tflite_micro interpreter must
    have been invoked already)."""
    recorded = tflm_recorded_arena(interpreters[TFLM])
    upper = max(recorded or 0, 10 * len(buffer)) + 4096
    return {
        "ours_arena_used": interpreters[OURS].arena_used_bytes(),
        "tflm_recorded_total": recorded,
        "tflm_minimal_arena_size": tflm_minimal_arena(buffer, sample, upper),
    }
