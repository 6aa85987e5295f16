"""Kernel benchmark: instructions per MAC of single-operator models on the
emulated Cortex-M4, against issue 14's per-kernel targets.

  python benchmarks/kernels.py [--out benchmarks/results/kernels.md]

Each model holds one CONV_2D, DEPTHWISE_CONV_2D or FULLY_CONNECTED with
random int8 weights (seeded); the inference firmware runs it on two random
inputs under QEMU -icount and reports the instructions of one invoke, net
of an empty call (results/inference.md says how they are counted). Every
output is checked against tflite_micro on the host. Writes a markdown
report (--out) and the raw numbers (the same path with .json). Exits 1
when an output differs.
"""

import json
import pathlib
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]
for path in (REPO, REPO / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import numpy as np
from absl import app, flags
from tflite_micro.python.tflite_micro import runtime as tflm_runtime

from benchmarks import environment, report
from single_op_models import Tensor, TensorType, build_model, options
from tools import board_config, emulation, firmware_build

_OUT = flags.DEFINE_string(
    "out", str(REPO / "benchmarks" / "results" / "kernels.md"), "Markdown report."
)
_BOARD = flags.DEFINE_string("board", "mps2_an386", "Emulated board.")
SEED = 20261207
SAME = 0  # the schema's Padding.SAME


def _weights(rng, shape):
    return rng.integers(-127, 128, size=shape, dtype=np.int8)


def _bias(rng, channels):
    return Tensor(
        [channels],
        TensorType.INT32,
        [2e-4] * channels,
        [0] * channels,
        data=rng.integers(-2000, 2000, channels).astype(np.int32),
    )


def conv(rng, size, in_c, out_c, kernel, stride=1):
    out = (size + stride - 1) // stride
    x = Tensor([1, size, size, in_c], TensorType.INT8, 0.02, -5)
    w = Tensor(
        [out_c, kernel, kernel, in_c],
        TensorType.INT8,
        [0.01] * out_c,
        [0] * out_c,
        data=_weights(rng, [out_c, kernel, kernel, in_c]),
    )
    y = Tensor([1, out, out, out_c], TensorType.INT8, 0.1, 3)
    model = build_model(
        "CONV_2D",
        [x, w, _bias(rng, out_c)],
        [y],
        options("Conv2D", padding=SAME, strideH=stride, strideW=stride, fusedActivationFunction=1),
    )
    return model, out * out * out_c * kernel * kernel * in_c


def depthwise(rng, size, in_c, kernel, multiplier=1):
    out_c = in_c * multiplier
    x = Tensor([1, size, size, in_c], TensorType.INT8, 0.02, -5)
    w = Tensor(
        [1, kernel, kernel, out_c],
        TensorType.INT8,
        [0.01] * out_c,
        [0] * out_c,
        quantized_dimension=3,
        data=_weights(rng, [1, kernel, kernel, out_c]),
    )
    y = Tensor([1, size, size, out_c], TensorType.INT8, 0.1, 3)
    model = build_model(
        "DEPTHWISE_CONV_2D",
        [x, w, _bias(rng, out_c)],
        [y],
        options(
            "DepthwiseConv2D",
            padding=SAME,
            strideH=1,
            strideW=1,
            depthMultiplier=multiplier,
            fusedActivationFunction=1,
        ),
    )
    return model, size * size * out_c * kernel * kernel


def fully_connected(rng, depth, units, batches=1):
    x = Tensor([batches, depth], TensorType.INT8, 0.02, -5)
    w = Tensor(
        [units, depth],
        TensorType.INT8,
        [0.01] * units,
        [0] * units,
        data=_weights(rng, [units, depth]),
    )
    y = Tensor([batches, units], TensorType.INT8, 0.1, 3)
    model = build_model(
        "FULLY_CONNECTED",
        [x, w, _bias(rng, units)],
        [y],
        options("FullyConnected", fusedActivationFunction=1),
    )
    return model, batches * depth * units


# name: (kind, builder, arguments, target instructions per MAC)
CASES = {
    "pointwise 16x16x64 -> 64": ("CONV_2D 1x1", conv, (16, 64, 64, 1), 1.3),
    "pointwise 25x20x48 -> 48 (ds_cnn)": ("CONV_2D 1x1", conv, (20, 48, 48, 1), 1.3),
    "conv 3x3 16x16x32 -> 32": ("CONV_2D", conv, (16, 32, 32, 3), 1.3),
    "conv 3x3 32x32x3 -> 16 (first layer)": ("CONV_2D", conv, (32, 3, 16, 3), 1.3),
    "depthwise 3x3 16x16x64": ("DEPTHWISE_CONV_2D", depthwise, (16, 64, 3), 2.5),
    "depthwise 3x3 20x20x48 (ds_cnn)": ("DEPTHWISE_CONV_2D", depthwise, (20, 48, 3), 2.5),
    "depthwise 3x3 16x16x16, multiplier 2": ("DEPTHWISE_CONV_2D", depthwise, (16, 16, 3, 2), 4.0),
    "depthwise 3x3 16x16x4, multiplier 8": ("DEPTHWISE_CONV_2D", depthwise, (16, 4, 3, 8), 4.0),
    "fully connected 512 -> 256": ("FULLY_CONNECTED", fully_connected, (512, 256), 1.3),
    "fully connected 1024 -> 128": ("FULLY_CONNECTED", fully_connected, (1024, 128), 1.3),
    "fully connected 64 -> 43": ("FULLY_CONNECTED", fully_connected, (64, 43), None),
}


def _tflm_output(model, sample):
    interpreter = tflm_runtime.Interpreter.from_bytes(model, arena_size=1 << 22)
    interpreter.set_input(sample, 0)
    interpreter.invoke()
    return np.array(interpreter.get_output(0))


def _floor(out_dir):
    """Instructions of the firmware's smallest invoke (one RELU)."""
    x = Tensor([1, 1], TensorType.INT8, 0.1, 0)
    y = Tensor([1, 1], TensorType.INT8, 0.1, 0)
    model = build_model("RELU", [x], [y])
    counts, _ = _run(model, np.array([[[3]], [[-3]]], dtype=np.int8), out_dir, "floor")
    return min(counts)


def _run(model, samples, out_dir, name):
    path = out_dir / f"{name}.tflite"
    path.write_bytes(model)
    built = firmware_build.build_firmware(_BOARD.value, path, samples, out_dir=out_dir / name)
    result = emulation.run_firmware(built.elf, _BOARD.value, timeout=300)
    counts = result.log.counts()
    outputs = result.log.outputs()
    return [counts[i] for i in range(len(samples))], [outputs[i][0] for i in range(len(samples))]


def measure(out_dir):
    floor = _floor(out_dir)
    rows = {}
    for index, (name, (kind, builder, arguments, target)) in enumerate(CASES.items()):
        rng = np.random.default_rng([SEED, index])
        model, macs = builder(rng, *arguments)
        shape = tflm_runtime.Interpreter.from_bytes(model, arena_size=1 << 22).get_input_details(0)[
            "shape"
        ]
        samples = rng.integers(-128, 128, size=(2, *shape), dtype=np.int8)
        print(f"[{name}]", flush=True)
        counts, outputs = _run(model, samples, out_dir, f"case{index}")
        identical = all(np.array_equal(o, _tflm_output(model, s)) for o, s in zip(outputs, samples))
        net = [c - floor for c in counts]
        rows[name] = {
            "kind": kind,
            "macs": macs,
            "counts": counts,
            "net": net,
            "per_mac": float(np.mean(net)) / macs,
            "target": target,
            "identical_to_tflm": identical,
        }
    return {"floor": floor, "cases": rows}


def render(data):
    lines = [
        "# Kernel benchmark results",
        "",
        "Generated by `benchmarks/kernels.py`. Reproduce from the repository root with:",
        "",
        "```",
        "python benchmarks/kernels.py",
        "```",
        "",
        "One operator per model, random int8 weights and inputs (seeded), run by the "
        "inference firmware under QEMU `-icount` on the emulated Cortex-M4 "
        f"({data['board']}, which has the DSP extension, so the DSP paths run). "
        "Instructions of one invoke, net of the firmware's smallest invoke "
        f"({data['floor']} instructions, one RELU), averaged over two inputs, divided by "
        "the MACs (output elements x window x depth). Targets are issue 14's per-kernel "
        "ones. Every output was compared with tflite_micro on the host.",
        "",
    ]
    rows = []
    for name, r in data["cases"].items():
        met = "" if r["target"] is None else ("yes" if r["per_mac"] <= r["target"] else "no")
        rows.append(
            [
                name,
                r["kind"],
                report.fmt_int(r["macs"]),
                report.fmt_int(int(np.mean(r["net"]))),
                f"{r['per_mac']:.2f}",
                "" if r["target"] is None else f"{r['target']:.1f}",
                met,
                "yes" if r["identical_to_tflm"] else "NO",
            ]
        )
    lines.append(
        report.table(
            [
                "case",
                "operator",
                "MACs",
                "instructions",
                "instructions / MAC",
                "target",
                "met",
                "identical to tflite_micro",
            ],
            rows,
        )
    )
    env = data["environment"]
    changed = env.get("runtime_uncommitted") or []
    lines += [
        "",
        "## Environment",
        f"- Date: {env['date_utc']}",
        f"- Source: commit {env['git_commit']}"
        + (f"; uncommitted runtime changes: {', '.join(changed)}" if changed else ""),
        f"- arm-none-eabi-gcc: {env['arm_none_eabi_gcc']} (firmware flags: "
        f"`{env['firmware_cflags']}` + the board's CPU flags; the code that runs once "
        "is built with -Os, tools/firmware_build.py)",
        f"- QEMU: {env['qemu']}",
        "",
    ]
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        board = board_config.load_board(_BOARD.value)
    except board_config.BoardError as error:
        raise app.UsageError(str(error)) from None
    if not board.emulates:
        raise app.UsageError(
            f"board {board.name} is not emulated; use an emulated board such as mps2_an386"
        )
    environment.require_host_library()
    load = environment.load_average()
    with tempfile.TemporaryDirectory(prefix="tt_kernels_") as tmp:
        data = measure(pathlib.Path(tmp))
    data.update(
        board=_BOARD.value,
        environment=environment.describe(load),
        command=environment.command_line(),
    )
    out = pathlib.Path(_OUT.value)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(data))
    out.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {out}")
    if not all(r["identical_to_tflm"] for r in data["cases"].values()):
        print("error: some outputs differ from tflite_micro", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    app.run(main)
