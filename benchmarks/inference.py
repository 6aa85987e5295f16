"""Inference benchmark: tflm_training vs the tflite_micro Python runtime on
the host, and the Cortex-M4 firmware under QEMU, for every test model.

  python benchmarks/inference.py [--models conv_stack,ds_cnn] [--repeats N]
      [--out benchmarks/results/inference.md] [--nofirmware]

Writes a markdown report (--out) and the raw numbers (--json_out, default
the same path with .json). Exits with status 1 if any output differs
between the runtimes. See benchmarks/README.md.
"""

import hashlib
import json
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np
from absl import app, flags

from benchmarks import environment, firmware, host, models, report
from tools import board_config

_MODELS = flags.DEFINE_list(
    "models", None, "Models of tests/models/manifest.json to run (default: all)."
)
_REPEATS = flags.DEFINE_integer(
    "repeats", 500, "Timed invokes per runtime and model.", lower_bound=1
)
_WARMUP = flags.DEFINE_integer(
    "warmup", 10, "Untimed invokes per runtime before timing.", lower_bound=0
)
_CLOCK = flags.DEFINE_enum(
    "clock",
    "thread_cpu",
    sorted(host.CLOCKS),
    "What the host timing "
    "measures: this thread's CPU time (time.thread_time_ns; leaves out time "
    "spent descheduled when other work competes for the cores, and adds "
    "under 1 us of clock reading per invoke), or wall-clock time "
    "(time.perf_counter_ns).",
)
_HOST_INPUTS = flags.DEFINE_integer(
    "host_inputs",
    8,
    "Test samples the host timing cycles through (and the output check compares).",
    lower_bound=1,
)
_FLOOR_REPEATS = flags.DEFINE_integer(
    "floor_repeats",
    2000,
    "Timed invokes of the one-RELU model that measures the call overhead.",
    lower_bound=1,
)
_FIRMWARE = flags.DEFINE_bool(
    "firmware",
    True,
    "Build and emulate the firmware (needs arm-none-eabi-gcc and qemu-system-arm).",
)
_FIRMWARE_INPUTS = flags.DEFINE_integer(
    "firmware_inputs", 2, "Test samples embedded in each firmware image.", lower_bound=1
)
_BOARD = flags.DEFINE_string("board", "mps2_an386", "Emulated board.")
_EMULATION_TIMEOUT = flags.DEFINE_float(
    "emulation_timeout", 120.0, "Seconds before QEMU is stopped."
)
_FIRMWARE_DIR = flags.DEFINE_string(
    "firmware_dir",
    None,
    "Keep the firmware builds here (default: a temporary folder, deleted afterwards).",
)
_OUT = flags.DEFINE_string(
    "out", str(REPO / "benchmarks" / "results" / "inference.md"), "Markdown report."
)
_JSON_OUT = flags.DEFINE_string(
    "json_out", None, "Raw numbers (default: --out with a .json suffix)."
)


def config():
    return {
        "repeats": _REPEATS.value,
        "warmup": _WARMUP.value,
        "clock": _CLOCK.value,
        "host_inputs": _HOST_INPUTS.value,
        "floor_repeats": _FLOOR_REPEATS.value,
        "firmware": _FIRMWARE.value,
        "firmware_inputs": _FIRMWARE_INPUTS.value,
        "board": _BOARD.value,
    }


def call_floor():
    """Invoke time of a one-RELU model in both runtimes (the overhead of
    the call itself); outputs checked to be identical."""
    interpreters = host.make_interpreters(models.tiny_model())
    samples = [np.array([[value]], dtype=np.int8) for value in (-3, 5)]
    _, mismatches = host.compare_outputs(interpreters, samples)
    times = host.time_invokes(
        interpreters, samples, _FLOOR_REPEATS.value, _WARMUP.value, _CLOCK.value
    )
    floor = {name: host.summarize(t) for name, t in times.items()}
    floor["check"] = {"host_inputs": len(samples), "host_mismatches": mismatches}
    return floor


def firmware_floor(firmware_dir):
    """Firmware metrics of the one-RELU model: the instructions an invoke
    costs with (almost) no work."""
    buffer = models.tiny_model()
    path = firmware_dir / "tiny_relu.tflite"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer)
    model = models.BenchModel("tiny_relu", path, None, buffer)
    interpreter = host.make_interpreters(buffer)[host.OURS]
    samples = np.array([[[-3]], [[5]]], dtype=np.int8)
    return measure_firmware(model, interpreter, samples, firmware_dir)


def measure_host(model, interpreters, samples):
    """Output check, invoke times and arena bytes on the host."""
    _, mismatches = host.compare_outputs(interpreters, samples)
    times = host.time_invokes(interpreters, samples, _REPEATS.value, _WARMUP.value, _CLOCK.value)
    return {
        "check": {"host_inputs": len(samples), "host_mismatches": mismatches},
        "host_time": {name: host.summarize(t) for name, t in times.items()},
        "host_time_raw_ns": times,
        "arena": host.arena_bytes(interpreters, model.buffer, samples[0]),
    }


def measure_firmware(model, interpreter, samples, out_dir):
    """Firmware metrics, or {"error": why} when it cannot be built or run."""
    return firmware.measure_inference(
        _BOARD.value, model, interpreter, samples, out_dir, _EMULATION_TIMEOUT.value
    )


def measure_model(model, firmware_dir):
    print(f"[{model.name}] host", flush=True)
    interpreters = host.make_interpreters(model.buffer)
    details = host.input_details(interpreters)
    wanted = max(_HOST_INPUTS.value, _FIRMWARE_INPUTS.value)
    samples = models.dataset_inputs(model, details, wanted)
    result = measure_host(model, interpreters, samples[: _HOST_INPUTS.value])
    result["model_bytes"] = len(model.buffer)
    result["model_sha256"] = hashlib.sha256(model.buffer).hexdigest()
    result["macs"] = models.mac_counts(model.buffer)
    result["macs_total"] = sum(result["macs"].values())
    if firmware_dir is not None:
        print(f"[{model.name}] firmware", flush=True)
        result["firmware"] = measure_firmware(
            model, interpreters[host.OURS], samples[: _FIRMWARE_INPUTS.value], firmware_dir
        )
    return result


def _model_identical(result):
    if result["check"]["host_mismatches"]:
        return False
    fw = result.get("firmware")
    if not fw or "error" in fw:
        return True
    return fw["outputs_equal_host"] == fw["outputs_compared"] and fw["status"] == 0


def run_all(firmware_dir):
    load_at_start = environment.load_average()
    results = {m.name: measure_model(m, firmware_dir) for m in models.load_models(_MODELS.value)}
    board = board_config.load_board(_BOARD.value)
    floor = call_floor()
    if firmware_dir is not None:
        print("[tiny_relu] firmware", flush=True)
        floor["firmware"] = firmware_floor(firmware_dir)
    return {
        "command": environment.command_line(),
        "config": config(),
        "environment": environment.describe(load_at_start),
        "board_limits": {"flash_size": board.flash.size, "ram_size": board.ram.size},
        "call_floor": floor,
        "all_outputs_identical": all(_model_identical(r) for r in [floor, *results.values()]),
        "models": results,
    }


def write_results(data):
    out = pathlib.Path(_OUT.value)
    json_out = pathlib.Path(_JSON_OUT.value or out.with_suffix(".json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    json_out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report.render(data))
    json_out.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {out} and {json_out}")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        models.load_models(_MODELS.value)
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    environment.require_host_library()
    data = firmware.run_with_firmware_dir(
        run_all, _FIRMWARE.value, _FIRMWARE_DIR.value, "tt_bench_firmware_"
    )
    write_results(data)
    if not data["all_outputs_identical"]:
        print("error: some outputs differ between the runtimes (see the report)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    app.run(main)
