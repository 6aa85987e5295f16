"""Builds a board's firmware: the inference app, the runtime, the board's
startup and drivers, with a model and inputs embedded.

The static arena is sized exactly: the host build of the same runtime
reports how many bytes the model needs (arena records hold no pointers, so
the count is the same on the host and on the MCU).
"""

import concurrent.futures
import dataclasses
import json
import os
import pathlib
import re
import shutil
import subprocess

import numpy as np

import tflm_training
from tflm_training import host_build, interpreter, tflite_graph
from tools import board_config, elf_sizes, object_cache

REPO = host_build.REPO
BOARDS_DIR = board_config.BOARDS_DIR
LINKER_SCRIPT = BOARDS_DIR / "common" / "cortex_m.ld"
APP = "inference_app"
DEFAULT_OUT_ROOT = REPO / "build" / "firmware"
OBJECT_CACHE = DEFAULT_OUT_ROOT / ".objects"
DEFAULT_MODEL = REPO / "examples" / "ds_cnn.tflite"
# Three speech_commands12 test clips for ds_cnn (boards/README.md says how
# they were made).
DEFAULT_INPUTS = BOARDS_DIR / "app" / "default_inputs.npy"
# Event helpers every app links (boards/app/app_common.h).
APP_COMMON = BOARDS_DIR / "app" / "app_common.c"

GCC = "arm-none-eabi-gcc"
OBJCOPY = "arm-none-eabi-objcopy"
AR = "arm-none-eabi-ar"
NM = "arm-none-eabi-nm"
# Forward and backward kernels: archived, and linked only when a model uses
# their operator (kernel_symbols; the registries refer to them weakly).
KERNELS_DIR = host_build.RUNTIME / "kernels"
TOOLCHAIN_HINT = (
    "On Debian/Ubuntu install it with: "
    "sudo apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi"
)

# -fno-schedule-insns: GCC's scheduling before register allocation hoists
# the loads of the DSP kernels' unrolled loops and then spills registers
# (5-15% more instructions on every model, measured under QEMU).
C_FLAGS = [
    "-std=c11",
    "-O2",
    "-fno-schedule-insns",
    "-g",
    "-fwrapv",
    "-ffp-contract=off",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-ffunction-sections",
    "-fdata-sections",
]
LINK_FLAGS = ["-nostartfiles", "--specs=nano.specs", "-Wl,--gc-sections"]
# Drivers only some apps need (the learner: its link to the host, its flash).
OPTIONAL_PARTS = ("link", "flash_store")
# Relinking with this much more memory lets an over-limit build report
# how much it would need, instead of only the linker's first complaint.
OVERSIZE_FACTOR = 64


class BuildError(RuntimeError):
    pass


class OverLimitError(BuildError):
    """The firmware does not fit; `report` is the size report it would have."""

    def __init__(self, message, report):
        super().__init__(message)
        self.report = report


@dataclasses.dataclass(frozen=True)
class ModelFacts:
    arena_bytes: int
    input_shape: tuple
    input_dtype: np.dtype


@dataclasses.dataclass(frozen=True)
class Firmware:
    board: str
    out_dir: pathlib.Path
    elf: pathlib.Path
    hex: pathlib.Path
    bin: pathlib.Path
    usage: elf_sizes.Usage
    report: str  # the arduino-style size report
    summary: dict  # also written to build.json


def check_toolchain(cpu_flags):
    missing = [tool for tool in (GCC, OBJCOPY) if shutil.which(tool) is None]
    if missing:
        raise BuildError(
            f"the ARM toolchain is missing: {', '.join(missing)} not found "
            f"on PATH. {TOOLCHAIN_HINT}"
        )
    libc = subprocess.run(
        [GCC, *cpu_flags, "--specs=nano.specs", "-print-file-name=libc_nano.a"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    if not os.path.isabs(libc):
        raise BuildError(f"{GCC} is installed but newlib (the C library) is not. {TOOLCHAIN_HINT}")


def model_facts(model_bytes):
    """Arena bytes and input layout, from the host build of the runtime."""
    try:
        interpreter = tflm_training.Interpreter.from_bytes(model_bytes)
        details = interpreter.get_input_details(0)
    except tflm_training.TflmTrainingError as e:
        raise BuildError(f"the runtime cannot load the model: {e}") from None
    if interpreter.num_inputs != 1:
        raise BuildError("the firmware app feeds models with exactly one input")
    return ModelFacts(
        interpreter.arena_used_bytes(),
        tuple(int(d) for d in details["shape"]),
        np.dtype(details["dtype"]),
    )


def input_samples(inputs, facts):
    """`inputs` as a (N, *input shape) array; accepts one sample too."""
    inputs = np.asarray(inputs)
    shape = facts.input_shape
    if inputs.dtype != facts.input_dtype:
        raise BuildError(
            f"inputs have dtype {inputs.dtype}, the model's input is "
            f"{facts.input_dtype}: quantize them with the input's scale and "
            "zero point first"
        )
    if inputs.shape == shape:
        return inputs[np.newaxis]
    if inputs.shape[1:] == shape:
        return inputs
    if shape and shape[0] == 1 and inputs.shape[1:] == shape[1:]:
        return inputs.reshape((-1,) + shape)
    raise BuildError(
        f"inputs have shape {inputs.shape}; expected {shape} or (N, {', '.join(map(str, shape))})"
    )


def _define(name, value):
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, str) and not re.fullmatch(r"0[xX][0-9a-fA-F]+", value):
        value = json.dumps(value)  # a C string literal
    return f"-D{name}={value}"


def board_defines(board):
    """-DBOARD_<PART>_<KEY> for every scalar in the board's driver parts."""
    defines = []
    for part in ("console", "exit", "counter", "qemu", *OPTIONAL_PARTS):
        for key, value in sorted((board.data.get(part) or {}).items()):
            if key != "kind" and isinstance(value, (int, str)):
                defines.append(_define(f"BOARD_{part.upper()}_{key.upper()}", value))
    return defines


def board_sources(board, parts=()):
    """Startup, common code and the drivers of the console, exit, counter
    and `parts` (of OPTIONAL_PARTS) that board.json picks."""
    sources = sorted((BOARDS_DIR / "common").glob("*.c"))
    drivers = BOARDS_DIR / "drivers"
    for part in ("console", "exit", "counter", *parts):
        if part in OPTIONAL_PARTS and not board.data.get(part):
            raise BuildError(
                f'board {board.name} has no "{part}" in its board.json, which this app needs'
            )
        kind = board.part(part)["kind"]
        found = sorted(
            p
            for p in drivers.iterdir()
            if p.suffix in (".c", ".S")
            and (p.stem == f"{part}_{kind}" or p.stem.startswith(f"{part}_{kind}_"))
        )
        if not found:
            raise BuildError(
                f"board {board.name}: no driver for {part} kind {kind!r} "
                f"(expected {drivers}/{part}_{kind}.c)"
            )
        sources += found
    return sources


def _object_name(source):
    relative = source.relative_to(REPO).with_suffix("")
    return "__".join(relative.parts) + ".o"


def _run(command, what):
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        raise BuildError(
            f"{what} failed:\n{' '.join(map(str, command))}\n{result.stdout}{result.stderr}"
        )
    return result


# Runtime sources whose code runs once (reading the model and the plan,
# planning memory, registries, checks, messages) or off the step's path
# (the CRC-32 of plans, frames and saved states) and the board's common
# support (startup, reports, faults):
# optimized for size, since their speed does not matter and flash does.
# Everything on the per-inference and per-step path stays at -O2.
RUN_ONCE_RUNTIME_SOURCES = frozenset(
    {
        "memory/tt_arena.c",
        "memory/tt_buffer_planner.c",
        "model/tt_builtin_names.c",
        "model/tt_flatbuffer.c",
        "model/tt_types.c",
        "kernels/common/tt_kernel_checks.c",
        "kernels/common/tt_kernel_prepare.c",
        "kernels/common/tt_kernel_registry.c",
        "interpreter/tt_model_reader.c",
        "training/tt_training_plan.c",
        "math/tt_crc.c",
        "memory/tt_activation_planner.c",
        "tt_status.c",
        "training/tt_trainer_setup.c",
        "kernels/common/tt_conv_params.c",
    }
)
SIZE_OPTIMIZATION = "-Os"


def _runtime_path(source):
    """A source's path from the runtime root ("math/tt_crc.c"), or None."""
    if not source.is_relative_to(host_build.RUNTIME):
        return None
    return source.relative_to(host_build.RUNTIME).as_posix()


def _runs_once(source):
    # The apps and the drivers (the instruction counter among them) stay at
    # -O2: what they count must cost the same in every app (the learner
    # benchmark checks a streamed step against the same step with the
    # samples embedded, to the instruction).
    if source.parent == BOARDS_DIR / "common":
        return True
    return _runtime_path(source) in RUN_ONCE_RUNTIME_SOURCES


def compile_all(board, sources, out_dir, defines, app_defines, verbose):
    """Compiles in parallel. App sources also get app_defines and, for the
    assembler's .incbin, out_dir on the include path; everything but the
    app's assembly goes through the object cache."""
    obj_dir = out_dir / "obj"
    obj_dir.mkdir(parents=True, exist_ok=True)
    includes = [
        f"-I{d}"
        for d in (BOARDS_DIR / "common", BOARDS_DIR / "drivers", *host_build.include_dirs())
    ]
    base = [GCC, *board.cpu_flags, *C_FLAGS, *includes, *defines]
    cache = object_cache.ObjectCache(OBJECT_CACHE)
    app_dir = BOARDS_DIR / "app"

    def compile_one(source):
        obj = obj_dir / _object_name(source)

        def run(command):
            if verbose:
                print(" ".join(command))
            _run(command, f"compiling {source.relative_to(REPO)}")

        command = list(base)
        if _runs_once(source):
            command = [SIZE_OPTIMIZATION if f == "-O2" else f for f in command]
        if source.parent == app_dir and source != APP_COMMON:
            command += [*app_defines, f"-Wa,-I{out_dir}"]
        command += ["-c", str(source)]
        if source.suffix == ".S" and source.parent == app_dir:
            run([*command, "-o", str(obj)])
        else:
            cache.compile(command, obj, run)
        return obj

    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        return list(pool.map(compile_one, sources))


def link(board, objects, elf, scale=1, state_bytes=0, required=()):
    """required: symbols to pull from the archives among the objects."""
    flash, ram = board.flash, board.ram
    symbols = {
        "__flash_origin": flash.origin,
        "__flash_size": flash.size * scale,
        "__ram_origin": ram.origin,
        "__ram_size": ram.size * scale,
        "__stack_size": board.stack_size,
        "__state_size": state_bytes,
    }
    command = [
        GCC,
        *board.cpu_flags,
        *LINK_FLAGS,
        "-T",
        str(LINKER_SCRIPT),
        *(f"-Wl,--defsym={k}={v}" for k, v in symbols.items()),
        *(f"-Wl,--undefined={name}" for name in required),
        f"-Wl,-Map={elf.with_suffix('.map')}",
        *map(str, objects),
        "-o",
        str(elf),
    ]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True)


# Runtime parts archived with the kernels, linked only when a model needs
# them: {source: (symbol that pulls it in, test of a graph operator)}.
OPTIONAL_RUNTIME_PARTS = {
    # The DSP path of depthwise layers with a depth multiplier above 1.
    "kernels/common/tt_depthwise_dsp_multiplied.c": (
        "tt_depthwise_dsp_group_multiplied",
        lambda graph, op: _depth_multiplier(graph, op) > 1,
    ),
}


def _depth_multiplier(graph, op):
    """Output over input channels of a DEPTHWISE_CONV_2D (0 for others)."""
    tensors = len(graph.tensors)
    if (
        interpreter.builtin_name(op.builtin_code) != "DEPTHWISE_CONV_2D"
        or len(op.inputs) < 1
        or len(op.outputs) < 1
        or not (0 <= op.inputs[0] < tensors and 0 <= op.outputs[0] < tensors)
    ):
        return 0  # a corrupt model: the runtime says what is wrong with it
    in_shape = graph.tensors[op.inputs[0]].shape
    out_shape = graph.tensors[op.outputs[0]].shape
    if not in_shape or not out_shape or in_shape[-1] <= 0:
        return 0
    return out_shape[-1] // in_shape[-1]


def kernel_symbols(model_bytes, training=False):
    """The kernels a model's operators need (tt_kernel_<op>, and with
    training tt_backward_<op>), named as the registries name them (the
    runtime's operator names, lower case), and the optional runtime parts
    they use; operators the runtime lacks name symbols no archive defines,
    which is harmless."""
    graph = tflite_graph.read_graph(model_bytes)
    names = sorted({interpreter.builtin_name(op.builtin_code).lower() for op in graph.operators})
    prefixes = ("tt_kernel_", "tt_backward_") if training else ("tt_kernel_",)
    symbols = [prefix + name for name in names for prefix in prefixes]
    for symbol, needed in OPTIONAL_RUNTIME_PARTS.values():
        if any(needed(graph, op) for op in graph.operators):
            symbols.append(symbol)
    return symbols


def _archived(source):
    return source.parent == KERNELS_DIR or _runtime_path(source) in OPTIONAL_RUNTIME_PARTS


def _archive_kernels(objects, sources, obj_dir):
    """(the other objects, with the kernel objects and the optional runtime
    parts replaced by one archive)."""
    kernels = [o for o, s in zip(objects, sources) if _archived(s)]
    archive = obj_dir / "libtt_kernels.a"
    archive.unlink(missing_ok=True)
    _run([AR, "rcs", str(archive), *map(str, kernels)], "archiving the kernels")
    return [o for o, s in zip(objects, sources) if not _archived(s)] + [archive]


def code_bytes(elf):
    """Bytes of machine code in the image: the sizes of its functions."""
    result = subprocess.run([NM, "--print-size", str(elf)], capture_output=True, text=True)
    if result.returncode != 0:
        raise BuildError(f"{NM} failed on {elf}: {result.stderr.strip()}")
    total = 0
    for line in result.stdout.splitlines():
        fields = line.split()
        if len(fields) == 4 and fields[2] in ("t", "T"):
            total += int(fields[1], 16)
    return total


def size_report(usage, board):
    flash, ram = board.flash.size, board.ram.size
    left = ram - usage.ram_bytes
    return "\n".join(
        [
            f"Sketch uses {usage.flash_bytes} bytes ({usage.flash_bytes * 100 // flash}%) "
            f"of program storage space. Maximum is {flash} bytes.",
            f"Global variables use {usage.ram_bytes} bytes ({usage.ram_bytes * 100 // ram}%) "
            f"of dynamic memory, leaving {left} bytes for local variables. "
            f"Maximum is {ram} bytes.",
            f"Of the bytes left for local variables, the stack reserves {usage.stack_bytes} "
            f"(stack_size in boards/{board.data.get('emulates', board.name)}/board.json).",
        ]
    )


def over_limit_message(usage, board, parts):
    problems = []
    if usage.flash_bytes > board.flash.size:
        problems.append(
            f"program storage needs {usage.flash_bytes} bytes but the board has "
            f"{board.flash.size} (over by {usage.flash_bytes - board.flash.size})"
        )
    ram_need = usage.ram_bytes + usage.stack_bytes
    if ram_need > board.ram.size:
        problems.append(
            f"RAM needs {ram_need} bytes (globals {usage.ram_bytes} + stack "
            f"{usage.stack_bytes}) but the board has {board.ram.size} "
            f"(over by {ram_need - board.ram.size})"
        )
    message = f"the firmware does not fit the {board.name}: {'; '.join(problems)}"
    if parts:
        message += " (" + ", ".join(f"{k} {v} bytes" for k, v in parts.items()) + ")"
    return message + "."


def app_sources(app):
    """boards/app/<app>.c, its helpers boards/app/<app>_*.c/.S, and the
    helpers every app shares (APP_COMMON)."""
    app_dir = BOARDS_DIR / "app"
    main = app_dir / f"{app}.c"
    if not main.is_file() or main == APP_COMMON:
        raise BuildError(f"no app {app!r} ({main} is missing)")
    helpers = sorted(p for p in app_dir.glob(f"{app}_*") if p.suffix in (".c", ".S"))
    return [main, *helpers, APP_COMMON]


def default_out_dir(board_name, app=APP):
    name = board_name if app == APP else f"{board_name}-{app}"
    return DEFAULT_OUT_ROOT / name


def build_app(
    board_name,
    app,
    out_dir=None,
    defines=(),
    with_runtime=False,
    embedded=None,
    verbose=False,
    parts=(),
    state_bytes=0,
    kernels=None,
    gradient_bits=32,
):
    """Compiles and links one app for a board; checks it fits.

    embedded: {name: byte size} of the big parts, for the over-limit message.
    parts: OPTIONAL_PARTS whose drivers the app needs; state_bytes: flash
    kept at its end for the learned state (whole pages). kernels: with the
    runtime, the kernel symbols to link (kernel_symbols), or None for all.
    gradient_bits: of the runtime's stored activation gradients (the plan's).
    """
    board = board_config.load_board(board_name)
    check_toolchain(board.cpu_flags)
    out_dir = pathlib.Path(out_dir or default_out_dir(board.name, app)).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("firmware.elf", "firmware.hex", "firmware.bin", "build.json"):
        (out_dir / stale).unlink(missing_ok=True)
    sources = [*board_sources(board, parts), *app_sources(app)]
    if with_runtime:
        sources += host_build.runtime_sources()
    objects = compile_all(
        board,
        sources,
        out_dir,
        board_defines(board) + host_build.gradient_flags(gradient_bits),
        defines,
        verbose,
    )
    if with_runtime and kernels is not None:
        objects = _archive_kernels(objects, sources, out_dir / "obj")

    elf = out_dir / "firmware.elf"
    required = kernels or ()
    result = link(board, objects, elf, state_bytes=state_bytes, required=required)
    if result.returncode != 0:
        if "overflowed" not in result.stderr and "will not fit" not in result.stderr:
            raise BuildError(f"linking failed:\n{result.stdout}{result.stderr}")
        probe = out_dir / "oversized.elf"
        if (
            link(
                board,
                objects,
                probe,
                scale=OVERSIZE_FACTOR,
                state_bytes=state_bytes,
                required=required,
            ).returncode
            != 0
        ):
            raise BuildError(f"linking failed:\n{result.stdout}{result.stderr}")
        usage = elf_sizes.usage(probe.read_bytes(), _scaled(board.flash), _scaled(board.ram))
        probe.unlink()
        elf.unlink(missing_ok=True)
        raise OverLimitError(
            over_limit_message(usage, board, embedded or {}), size_report(usage, board)
        )

    usage = elf_sizes.usage(elf.read_bytes(), board.flash, board.ram)
    hex_path, bin_path = elf.with_suffix(".hex"), elf.with_suffix(".bin")
    _run([OBJCOPY, "-O", "ihex", str(elf), str(hex_path)], "objcopy (hex)")
    _run([OBJCOPY, "-O", "binary", str(elf), str(bin_path)], "objcopy (bin)")
    summary = {
        "board": board.name,
        "emulates": board.emulates,
        "app": app,
        "flash_bytes": usage.flash_bytes,
        "code_bytes": code_bytes(elf),
        "ram_bytes": usage.ram_bytes,
        "stack_bytes": usage.stack_bytes,
        "flash_size": board.flash.size,
        "ram_size": board.ram.size,
    }
    (out_dir / "build.json").write_text(json.dumps(summary, indent=2) + "\n")
    return Firmware(
        board.name, out_dir, elf, hex_path, bin_path, usage, size_report(usage, board), summary
    )


def build_firmware(
    board_name, model_path=None, inputs=None, out_dir=None, arena_bytes=None, verbose=False
):
    """The inference app with a model and inputs (a .npy path or an array);
    None means the defaults."""
    board = board_config.load_board(board_name)
    check_toolchain(board.cpu_flags)
    model_path = pathlib.Path(DEFAULT_MODEL if model_path is None else model_path)
    inputs = DEFAULT_INPUTS if inputs is None else inputs
    if not model_path.is_file():
        raise BuildError(f"model file {model_path} does not exist")
    model_bytes = model_path.read_bytes()
    if isinstance(inputs, (str, os.PathLike)):
        if not pathlib.Path(inputs).is_file():
            raise BuildError(f"inputs file {inputs} does not exist")
        inputs = np.load(inputs, allow_pickle=False)
    facts = model_facts(model_bytes)
    samples = input_samples(inputs, facts)
    arena_bytes = facts.arena_bytes if arena_bytes is None else int(arena_bytes)

    out_dir = pathlib.Path(out_dir or default_out_dir(board.name)).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "model.tflite").write_bytes(model_bytes)
    (out_dir / "inputs.bin").write_bytes(np.ascontiguousarray(samples).tobytes())
    embedded = {"model": len(model_bytes), "inputs": samples.nbytes, "arena": arena_bytes}
    firmware = build_app(
        board_name,
        APP,
        out_dir,
        defines=[f"-DAPP_ARENA_BYTES={arena_bytes}"],
        with_runtime=True,
        embedded=embedded,
        verbose=verbose,
        kernels=kernel_symbols(model_bytes),
    )
    firmware.summary.update(
        {
            "model": str(model_path),
            "model_bytes": len(model_bytes),
            "inputs": int(samples.shape[0]),
            "input_shape": list(facts.input_shape),
            "input_dtype": facts.input_dtype.name,
            "arena_bytes": arena_bytes,
        }
    )
    (out_dir / "build.json").write_text(json.dumps(firmware.summary, indent=2) + "\n")
    return firmware


def _scaled(region):
    return board_config.Region(region.origin, region.size * OVERSIZE_FACTOR)
