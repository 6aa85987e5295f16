"""Writes the inference benchmark's results as markdown."""

import json
import pathlib

NA = "n/a"


def table(headers, rows, left=1):
    """A markdown table; the first `left` columns left-aligned, the rest
    right."""
    align = [":---"] * left + ["---:"] * (len(headers) - left)
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _us(value):
    return NA if value is None else f"{value:,.1f}"


def fmt_int(value):
    return NA if value is None else f"{value:,}"


def fmt_ratio(numerator, denominator, digits=2):
    if numerator is None or not denominator:
        return NA
    return f"{numerator / denominator:.{digits}f}"


def _firmware(result):
    """The firmware metrics of a model result, or None if it did not run."""
    firmware = result.get("firmware")
    return firmware if firmware and "error" not in firmware else None


_CLOCK_TEXT = {
    "wall": "wall-clock time, `time.perf_counter_ns`",
    "thread_cpu": "this thread's CPU time, `time.thread_time_ns`, which "
    "leaves out time spent descheduled; reading it costs about "
    "1 us, included below",
}


def _host_time_rows(results):
    rows = []
    for name, result in results.items():
        ours = result["host_time"]["tflm_training"]
        tflm = result["host_time"]["tflite_micro"]
        rows.append(
            [
                name,
                _us(ours["median_us"]),
                _us(ours["p90_us"]),
                _us(tflm["median_us"]),
                _us(tflm["p90_us"]),
                fmt_ratio(ours["median_us"], tflm["median_us"]),
            ]
        )
    return rows


def host_time_section(data):
    config = data["config"]
    floor = data["call_floor"]
    ours, tflm = floor["tflm_training"], floor["tflite_micro"]
    headers = [
        "model",
        "ours median",
        "ours p90",
        "tflite_micro median",
        "tflite_micro p90",
        "ours / tflite_micro (median)",
    ]
    return "\n\n".join(
        [
            "## Host: time per invoke() in microseconds",
            f"{config['repeats']} timed invokes per runtime and model after "
            f"{config['warmup']} warm-up invokes, cycling through the first "
            f"{config['host_inputs']} test samples of the model's dataset. Only "
            f"`invoke()` is inside the timer ({_CLOCK_TEXT[config['clock']]}); "
            "`set_input()` is not. The two runtimes alternate invoke by invoke, "
            "so both see the same machine state. The garbage collector is off "
            "while timing. Other work on the machine (see the load average "
            "under Environment) disturbs the times, wall-clock times most; the "
            "ratios are more stable than the times because both runtimes share "
            "the disturbance. Every timed invoke is in the .json file.",
            table(headers, _host_time_rows(data["models"])),
            "**Call overhead.** Each number above includes the cost of the "
            "Python call itself (ours: a Python method and a ctypes call; "
            "tflite_micro: a Python method and a pybind11 call) plus the "
            "timer. A model with a single RELU on one int8 value "
            "(`benchmarks/models.py: tiny_model`) measures that floor: "
            f"ours median {_us(ours['median_us'])} us (p90 "
            f"{_us(ours['p90_us'])}), tflite_micro median "
            f"{_us(tflm['median_us'])} us (p90 {_us(tflm['p90_us'])}). "
            "Nothing is subtracted from the table.",
        ]
    )


def arena_section(data):
    rows = []
    for name, result in data["models"].items():
        arena = result["arena"]
        firmware = _firmware(result)
        rows.append(
            [
                name,
                fmt_int(arena["ours_arena_used"]),
                fmt_int(firmware["arena_used"]) if firmware else NA,
                fmt_int(arena["tflm_recorded_total"]),
                fmt_int(arena["tflm_minimal_arena_size"]),
            ]
        )
    headers = [
        "model",
        "ours (host)",
        "ours (Cortex-M4 firmware)",
        "tflite_micro recorded total (x86-64)",
        "tflite_micro smallest working arena_size (x86-64)",
    ]
    return "\n\n".join(
        [
            "## Arena bytes",
            "Ours: `Interpreter.arena_used_bytes()`, the exact need (the arena "
            "holds no pointers, so host and MCU need the same bytes; the "
            "firmware column is the `arena_used` its `init` event reports). "
            "tflite_micro's Python API has no call that returns arena usage: "
            "`print_allocations()` only prints the RecordingMicroAllocator's "
            "totals to stderr, and the 'recorded total' column is parsed from "
            "that text. The last column is the smallest `arena_size` with which "
            "`Interpreter.from_bytes` and one `invoke()` succeed (found by "
            "bisection). Both tflite_micro columns come from its x86-64 build: "
            "its arena holds pointer-sized structures, so on a 32-bit MCU it "
            "would need less than shown.",
            table(headers, rows),
        ]
    )


def _count_cells(firmware, samples):
    counts = list(firmware["counts"]) + [None] * samples
    return [fmt_int(count) for count in counts[:samples]]


def instructions_section(data):
    samples = data["config"]["firmware_inputs"]
    rows = []
    for name, result in data["models"].items():
        firmware = _firmware(result)
        macs = result["macs_total"]
        if firmware is None:
            rows.append([name, *([NA] * samples), fmt_int(macs), NA])
            continue
        counts = [c for c in firmware["counts"] if c is not None]
        mean = sum(counts) / len(counts) if counts else None
        rows.append(
            [name, *_count_cells(firmware, samples), fmt_int(macs), fmt_ratio(mean, macs, 1)]
        )
    headers = (
        ["model"]
        + [f"instructions, input {i}" for i in range(samples)]
        + ["MACs", "instructions / MAC"]
    )
    return "\n\n".join(
        [
            f"## Emulated Cortex-M4 ({data['config']['board']}): instructions per inference",
            "Counted exactly by the firmware under QEMU `-icount shift=0` "
            "(boards/README.md): the instructions of one `tt_interpreter_invoke` "
            "call, net of an empty call. These are instructions, not cycles, "
            "and no time in milliseconds is estimated from them: on a Cortex-M4 "
            "loads and stores usually take 2 cycles, a taken branch refills the "
            "pipeline, divisions take up to 12 cycles, and code and constants "
            "read from flash may add wait states, so cycles per instruction "
            "depend on the code and the part (measure on hardware: the "
            "nrf52840 firmware reports DWT cycles). Instructions / MAC uses "
            "the mean over the inputs and charges every operator (pooling, "
            "softmax, ...) to the MACs.",
            table(headers, rows),
            _firmware_floor_note(data),
        ]
    )


REFERENCE = pathlib.Path(__file__).resolve().parent / "reference" / "tflm_cmsis_nn.json"


def reference_section(data):
    """Our instruction counts against TFLM + CMSIS-NN's (quoted figures)."""
    reference = json.loads(REFERENCE.read_text())
    rows = []
    for name, theirs in reference["instructions"].items():
        firmware = _firmware(data["models"].get(name, {}))
        counts = [c for c in (firmware or {}).get("counts", []) if c is not None]
        if not counts:
            continue
        ours = counts[0]
        rows.append(
            [
                name,
                fmt_int(ours),
                fmt_int(theirs),
                fmt_ratio(ours, theirs),
                "yes" if ours < theirs else "no",
            ]
        )
    if not rows:
        return ""
    return "\n\n".join(
        [
            "## Against TFLM + CMSIS-NN",
            f"{reference['what']} Source: {reference['source']}. Ours: input 0 above.",
            table(["model", "ours", "TFLM + CMSIS-NN", "ours / theirs", "fewer"], rows),
        ]
    )


def _firmware_floor_note(data):
    firmware = _firmware(data["call_floor"])
    if firmware is None:
        return ""
    counts = ", ".join(fmt_int(c) for c in firmware["counts"])
    return (
        "**Invoke floor.** The one-RELU model (one int8 value) takes "
        f"{counts} instructions per invoke on the same firmware: the "
        "fixed cost of an invoke, included in every count above."
    )


def macs_section(data):
    rows = []
    for name, result in data["models"].items():
        macs = result["macs"]
        rows.append(
            [
                name,
                fmt_int(macs.get("CONV_2D", 0)),
                fmt_int(macs.get("DEPTHWISE_CONV_2D", 0)),
                fmt_int(macs.get("FULLY_CONNECTED", 0)),
                fmt_int(result["macs_total"]),
            ]
        )
    headers = ["model", "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "total"]
    return "\n\n".join(
        [
            "## MACs per inference",
            "From the model's tensor shapes: CONV_2D output elements x KH x KW x "
            "filter depth; DEPTHWISE_CONV_2D output elements x KH x KW; "
            "FULLY_CONNECTED output elements x input features. Nominal counts: "
            "filter taps that fall on padding are included (the kernels skip "
            "them).",
            table(headers, rows),
        ]
    )


def memory_section(data):
    rows = []
    for name, result in data["models"].items():
        firmware = _firmware(result)
        if firmware is None:
            rows.append([name] + [NA] * 8)
            continue
        rows.append(
            [
                name,
                fmt_int(firmware["flash_bytes"]),
                fmt_int(firmware["ram_bytes"]),
                fmt_int(firmware["stack_used"]),
                fmt_int(firmware["stack_size"]),
                fmt_int(firmware["model_bytes"]),
                fmt_int(firmware["inputs_bytes"]),
                fmt_int(
                    firmware["flash_bytes"] - firmware["model_bytes"] - firmware["inputs_bytes"]
                ),
                fmt_int(firmware.get("code_bytes")),
            ]
        )
    headers = [
        "model",
        "flash (program storage)",
        "RAM (globals)",
        "stack high-water",
        "stack reserved",
        "of flash: model",
        "of flash: inputs",
        "of flash: the rest (code, constants)",
        "of the rest: code (functions; the image links only its model's kernels)",
    ]
    return "\n\n".join(
        [
            "## Firmware image and stack",
            "Flash and RAM as `tools/elf_sizes.py` counts them (arduino-cli "
            "style: flash = sections in flash + `.data`'s initial values; RAM = "
            "`.data` + `.bss`, which holds the static arena; the stack is "
            "reserved on its own). Limits: flash "
            f"{fmt_int(data['board_limits']['flash_size'])} bytes, RAM "
            f"{fmt_int(data['board_limits']['ram_size'])} bytes (the nRF52840's). "
            "The stack high-water mark is measured by stack painting over the "
            "whole run (init, every invoke, reporting).",
            table(headers, rows),
        ]
    )


def _check_cells(result):
    check = result["check"]
    host = f"{check['host_inputs'] - check['host_mismatches']}/{check['host_inputs']}"
    firmware = _firmware(result)
    if firmware is None:
        return [host, NA]
    return [host, f"{firmware['outputs_equal_host']}/{firmware['outputs_compared']}"]


def check_section(data):
    rows = [[name, *_check_cells(result)] for name, result in data["models"].items()]
    rows.append(["tiny_relu (call floor)", *_check_cells(data["call_floor"])])
    verdict = (
        "All outputs are identical."
        if data["all_outputs_identical"]
        else "**Some outputs differ: see the table.**"
    )
    return "\n\n".join(
        [
            "## Output check",
            "Every output tensor compared bit for bit (dtype, shape, values): "
            "tflm_training vs tflite_micro on the host benchmark inputs, and the "
            "Cortex-M4 firmware vs tflm_training on the inputs embedded in the "
            f"firmware. {verdict}",
            table(["model", "host: ours == tflite_micro", "firmware == host (ours)"], rows),
        ]
    )


def _load(values):
    return ", ".join(f"{value:.2f}" for value in values)


def environment_section(data):
    env = data["environment"]
    lines = [
        "## Environment",
        f"- Date: {env['date_utc']}",
        f"- CPU: {env['cpu_model']}, {env['cpu_count']} cores "
        f"({env['cpus_usable']} usable by this process); {env['platform']}",
        "- Load average (1, 5, 15 min) at start "
        f"{_load(env['load_average_at_start'])}, at end "
        f"{_load(env['load_average_at_end'])}",
        f"- Python {env['python']}, numpy {env['numpy']}",
        f"- tflite-micro wheel: {env['tflite_micro']}",
        f"- gcc: {env['gcc']} (host library flags: `{env['host_cflags']}`)",
        f"- arm-none-eabi-gcc: {env['arm_none_eabi_gcc']} (firmware flags: "
        f"`{env['firmware_cflags']}` + the board's CPU flags)",
        f"- QEMU: {env['qemu']}",
        f"- Source: commit {env['git_commit']}; models of the tests/models manifests "
        "(their sha256 are in the .json file)",
    ]
    changed = env["runtime_uncommitted"]
    if changed:
        lines.append(
            "- Uncommitted changes in the C runtime when measured: "
            + ", ".join(f"`{path}`" for path in changed)
        )
    return "\n".join(lines)


def _skipped_note(data):
    skipped = {
        name: result["firmware"]["error"]
        for name, result in data["models"].items()
        if result.get("firmware") and "error" in result["firmware"]
    }
    if not data["config"]["firmware"]:
        return "Firmware measurements were skipped (--nofirmware)."
    if skipped:
        return "Firmware measurements failed for: " + "; ".join(
            f"{name}: {error}" for name, error in skipped.items()
        )
    return ""


def render(data):
    """The whole results file."""
    parts = [
        "# Inference benchmark results",
        "Generated by `benchmarks/inference.py` (see benchmarks/README.md). "
        "Reproduce from the repository root with:",
        f"```\n{data['command']}\n```",
        _skipped_note(data),
        check_section(data),
        host_time_section(data),
        arena_section(data),
        instructions_section(data),
        reference_section(data),
        macs_section(data),
        memory_section(data),
        environment_section(data),
    ]
    return "\n\n".join(part for part in parts if part) + "\n"


def write_whole(path, text):
    """Writes beside `path`, then renames: a run cut short leaves the old
    file or the new one, never half of one."""
    path = pathlib.Path(path)
    part = path.with_name(path.name + ".part")
    part.write_text(text)
    part.replace(path)
