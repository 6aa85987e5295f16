"""Training benchmark: memory and compute of on-device training with
several training plans per model, on the host, on the emulated Cortex-M4
firmware, and against TensorFlow training the equivalent float model.

  python benchmarks/training.py [--models ds_cnn,mlp] [--plans full,bias]
      [--out benchmarks/results/training.md] [--nofirmware] [--notensorflow]

Writes a markdown report (--out) and the raw numbers (--json_out, default
the same path with .json). Exits with status 1 if the firmware's losses or
arena differ from the host trainer's. See benchmarks/README.md.
"""

import concurrent.futures
import hashlib
import json
import os
import pathlib
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np
from absl import app, flags

import tflm_training
from benchmarks import environment, firmware, models, training_plans, training_report
from planning import schemes
from tflm_training import plan as tt_plan
from tflm_training import tflite_graph
from tools import board_config, firmware_build

DEFAULT_MODELS = ("ds_cnn", "mobilenet_v2_block", "conv_stack", "mlp")
DEFAULT_TRANSFER_MODELS = ("ds_cnn_fsdd",)
TF_STEP = REPO / "benchmarks" / "tf_step.py"
# The two memory views of the TensorFlow step (benchmarks/tf_step.py):
# TensorFlow's BFC allocator on the CPU, which keeps statistics, and the
# default CPU allocator, as TensorFlow normally runs, for the process RSS.
TF_VIEWS = {"allocator": {"TF_CPU_ALLOCATOR_USE_BFC": "true"}, "default_allocator": {}}

_MODELS = flags.DEFINE_list(
    "models",
    None,
    "Models to run: names from tests/models/manifest.json "
    "or tests/models/transfer/manifest.json (default: "
    f"{','.join(DEFAULT_MODELS + DEFAULT_TRANSFER_MODELS)}, the transfer "
    "model when it exists).",
)
_PLANS = flags.DEFINE_list(
    "plans",
    list(training_plans.PLAN_KINDS),
    f"Training plans to measure: any of {training_plans.PLAN_KINDS}.",
)
_TENSORFLOW = flags.DEFINE_bool(
    "tensorflow",
    True,
    "Measure TensorFlow's memory for a full-backprop "
    "step of the float model (two child processes per model).",
)
_TF_LATER_CALLS = flags.DEFINE_integer(
    "tf_later_calls",
    5,
    "TensorFlow steps (and forward passes) measured "
    "after the first one; the report shows their largest peak.",
    lower_bound=1,
)
_FIRMWARE = flags.DEFINE_bool(
    "firmware",
    True,
    "Build and emulate the inference and training "
    "firmware (needs arm-none-eabi-gcc and qemu-system-arm).",
)
_ROOMY = flags.DEFINE_bool(
    "roomy",
    True,
    "Plans whose firmware does not fit the board's RAM are "
    "built again with the emulator's 4 MB of RAM, to count their "
    "instructions anyway (reported as not fitting).",
)
_FIRMWARE_STEPS = flags.DEFINE_integer(
    "firmware_steps",
    2,
    "Training steps per firmware run (one test sample each, spread over the dataset).",
    lower_bound=1,
)
_FIRMWARE_TESTS = flags.DEFINE_integer(
    "firmware_tests",
    1,
    "Test samples the training firmware predicts "
    "before and after training (its instructions per inference).",
    lower_bound=1,
)
_BOARD = flags.DEFINE_string("board", "mps2_an386", "Emulated board.")
_EMULATION_TIMEOUT = flags.DEFINE_float(
    "emulation_timeout", 300.0, "Seconds before QEMU is stopped."
)
_TF_TIMEOUT = flags.DEFINE_float(
    "tf_timeout", 300.0, "Seconds before a TensorFlow child is stopped."
)
_FIRMWARE_DIR = flags.DEFINE_string(
    "firmware_dir",
    None,
    "Keep the firmware builds here (default: a temporary folder, deleted afterwards).",
)
_OUT = flags.DEFINE_string(
    "out", str(REPO / "benchmarks" / "results" / "training.md"), "Markdown report."
)
_JSON_OUT = flags.DEFINE_string(
    "json_out", None, "Raw numbers (default: --out with a .json suffix)."
)


def config():
    return {
        "plans": list(_PLANS.value),
        "tensorflow": _TENSORFLOW.value,
        "tf_later_calls": _TF_LATER_CALLS.value,
        "firmware": _FIRMWARE.value,
        "roomy": _ROOMY.value,
        "firmware_steps": _FIRMWARE_STEPS.value,
        "firmware_tests": _FIRMWARE_TESTS.value,
        "board": _BOARD.value,
        "sparse_fraction": schemes.SPARSE_FRACTION,
    }


def model_names():
    if _MODELS.value:
        return list(_MODELS.value)
    transfer = models.transfer_manifest()
    return list(DEFAULT_MODELS) + [n for n in DEFAULT_TRANSFER_MODELS if n in transfer]


# -- host ---------------------------------------------------------------------


def host_plan(model, plan, train):
    """The trainer's arena for `plan` and its losses on the `train`
    samples, one step each, from the model's weights."""
    trainer = tflm_training.Trainer(model.buffer, plan)
    losses = [trainer.train_step(x, int(y)) for x, y in zip(*train)]
    return {
        "layers": training_plans.describe(plan, model.buffer),
        "arena_used": trainer.arena_used_bytes(),
        "memory": trainer.memory(),
        "host_losses": losses,
        "gradient_macs": training_plans.gradient_macs(model.buffer, plan),
        "trained_parameters": training_plans.trained_parameters(model.buffer, plan),
    }


def int8_logits(model, sample):
    """The dequantized logits our interpreter computes for `sample`, and
    which of them sit on the int8 range's ends."""
    buffer = model.buffer
    graph = tflite_graph.read_graph(buffer)
    logits = tt_plan.find_logits(graph)
    interpreter = tflm_training.Interpreter(buffer, preserve_all_tensors=True)
    interpreter.set_input(sample, 0)
    interpreter.invoke()
    q = interpreter.get_tensor(logits).astype(np.float64).reshape(-1)
    tensor = graph.tensors[logits]
    real = tensor.scales[0] * (q - tensor.zero_points[0])
    return real, (q <= -128) | (q >= 127), tensor.scales[0]


# -- firmware -----------------------------------------------------------------


def _training_firmware(model, plan_bytes, samples, out_dir):
    """measure_training on the board, or on the roomy board when it does
    not fit (with "fits": False and the build's complaint)."""
    train, test = samples
    try:
        result = firmware.measure_training(
            _BOARD.value, model, plan_bytes, train, test, out_dir, _EMULATION_TIMEOUT.value
        )
        result["fits"] = True
        return result
    except firmware_build.OverLimitError as error:
        over = str(error).splitlines()[0]
        if not _ROOMY.value:
            return {"fits": False, "over_limit": over}
    with firmware.roomy_board(_BOARD.value) as roomy:
        result = firmware.measure_training(
            roomy, model, plan_bytes, train, test, out_dir, _EMULATION_TIMEOUT.value
        )
    result.update({"fits": False, "over_limit": over})
    return result


def training_firmware(model, plan_bytes, samples, out_dir):
    """_training_firmware, or {"error": why} when it cannot run here."""
    try:
        return _training_firmware(model, plan_bytes, samples, out_dir)
    except firmware.UNAVAILABLE as error:
        return {"error": str(error).splitlines()[0]}


def inference_firmware(model, test_x, out_dir):
    interpreter = tflm_training.Interpreter.from_bytes(model.buffer)
    return firmware.measure_inference(
        _BOARD.value, model, interpreter, test_x, out_dir / "inference", _EMULATION_TIMEOUT.value
    )


# -- TensorFlow ---------------------------------------------------------------


def _real_input(model, sample):
    interpreter = tflm_training.Interpreter.from_bytes(model.buffer)
    details = interpreter.get_input_details(0)
    if sample.dtype == np.float32:
        return sample
    quant = details["quantization_parameters"]
    real = quant["scales"][0] * (sample.astype(np.float64) - quant["zero_points"][0])
    return real.astype(np.float32)


def _run_tf_child(model, sample_path, view):
    env = dict(os.environ, **TF_VIEWS[view])
    command = [
        sys.executable,
        str(TF_STEP),
        "--model",
        str(model.path),
        "--sample",
        str(sample_path),
        f"--later_calls={_TF_LATER_CALLS.value}",
    ]
    try:
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=env,
            timeout=_TF_TIMEOUT.value,
            check=False,
            cwd=REPO,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {_TF_TIMEOUT.value:g} s"}
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit status {result.returncode}: {tail}"}
    return json.loads(lines[-1])


def _logits_check(model, sample, views):
    float_logits = next((v["logits"] for v in views.values() if "logits" in v), None)
    if float_logits is None:
        return None
    real, saturated, scale = int8_logits(model, sample)
    diff = np.abs(np.asarray(float_logits) - real)[~saturated]
    return {
        "argmax_equal": bool(np.argmax(float_logits) == np.argmax(real)),
        "max_abs_diff_unsaturated": float(diff.max()) if diff.size else None,
        "logits_scale": float(scale),
        "saturated": int(saturated.sum()),
        "classes": int(real.size),
    }


def tensorflow_step(model, sample, label):
    """Both memory views of TensorFlow's float training step (child
    processes, run side by side), and a check that the float graph
    computes what the int8 model does."""
    with tempfile.TemporaryDirectory(prefix="tt_bench_tf_") as tmp:
        sample_path = pathlib.Path(tmp) / "sample.npz"
        np.savez(sample_path, x=_real_input(model, sample), label=label)
        with concurrent.futures.ThreadPoolExecutor(len(TF_VIEWS)) as pool:
            futures = {
                view: pool.submit(_run_tf_child, model, sample_path, view) for view in TF_VIEWS
            }
            views = {view: f.result() for view, f in futures.items()}
    views["logits_check"] = _logits_check(model, sample, views)
    return views


# -- per model ----------------------------------------------------------------


def measure_plans(model, samples, out_dir):
    train, _ = samples
    results = {}
    for kind in _PLANS.value:
        print(f"[{model.name}] plan {kind}", flush=True)
        try:
            plan = training_plans.make_plan(kind, model.buffer, rank_samples(model, kind))
        except ValueError as error:
            results[kind] = {"error": str(error)}
            continue
        result = host_plan(model, plan, train)
        if out_dir is not None:
            result["firmware"] = training_firmware(model, plan.to_bytes(), samples, out_dir / kind)
        results[kind] = result
    return results


def rank_samples(model, kind):
    """The labelled samples a data-chosen plan kind ranks layers on."""
    if kind != "trady_64k":
        return None
    details = tflm_training.Interpreter.from_bytes(model.buffer).get_input_details(0)
    return models.labelled_samples(model, details, training_plans.RANK_SAMPLES)


def model_samples(model):
    """((train x, y), (test x, y)) spread over the dataset's test split."""
    interpreter = tflm_training.Interpreter.from_bytes(model.buffer)
    details = interpreter.get_input_details(0)
    steps, tests = _FIRMWARE_STEPS.value, _FIRMWARE_TESTS.value
    x, y = models.labelled_samples(model, details, steps + tests)
    return (x[:steps], y[:steps]), (x[steps:], y[steps:])


def measure_model(model, firmware_dir):
    samples = model_samples(model)
    out_dir = None if firmware_dir is None else firmware_dir / model.name
    result = {
        "model_bytes": len(model.buffer),
        "model_sha256": hashlib.sha256(model.buffer).hexdigest(),
        "inference_arena": tflm_training.Interpreter.from_bytes(model.buffer).arena_used_bytes(),
        "macs": models.mac_counts(model.buffer),
    }
    result["macs_total"] = sum(result["macs"].values())
    if out_dir is not None:
        print(f"[{model.name}] inference firmware", flush=True)
        result["inference_firmware"] = inference_firmware(model, samples[1][0], out_dir)
    result["plans"] = measure_plans(model, samples, out_dir)
    if _TENSORFLOW.value:
        print(f"[{model.name}] TensorFlow", flush=True)
        train_x, train_y = samples[0]
        result["tensorflow"] = tensorflow_step(model, train_x[0], int(train_y[0]))
    return result


def _firmware_agrees(plan_result):
    """The firmware ran to the end, and its losses and arena equal the
    host trainer's (True when there is no firmware result to compare)."""
    fw = plan_result.get("firmware")
    if fw is None or "error" in fw:
        return True
    if "losses" not in fw:
        return False  # it was built but failed
    host_losses = np.float32(plan_result["host_losses"])
    same_losses = np.array_equal(np.float32(fw["losses"]), host_losses)
    return same_losses and fw["init"]["arena_used"] == plan_result["arena_used"]


def _inference_agrees(model_result):
    fw = model_result.get("inference_firmware")
    if fw is None or "error" in fw:
        return True
    return fw["status"] == 0 and (fw["outputs_equal_host"] == fw["outputs_compared"])


def _all_agree(results):
    return all(
        _inference_agrees(model)
        and all(_firmware_agrees(plan) for plan in model["plans"].values() if "error" not in plan)
        for model in results.values()
    )


def run_all(firmware_dir):
    load_at_start = environment.load_average()
    results = {
        m.name: measure_model(m, firmware_dir)
        for m in models.load_models(model_names(), include_transfer=True)
    }
    board = board_config.load_board(_BOARD.value)
    env = environment.describe(load_at_start)
    env.update({name: environment.package_version(name) for name in ("tensorflow", "tf_keras")})
    return {
        "command": environment.command_line(),
        "config": config(),
        "environment": env,
        "board_limits": {"flash_size": board.flash.size, "ram_size": board.ram.size},
        "firmware_agrees_with_host": _all_agree(results),
        "models": results,
    }


def write_results(data):
    out = pathlib.Path(_OUT.value)
    json_out = pathlib.Path(_JSON_OUT.value or out.with_suffix(".json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    json_out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(training_report.render(data))
    json_out.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {out} and {json_out}")


def _check_flags():
    unknown = set(_PLANS.value) - set(training_plans.PLAN_KINDS)
    if unknown:
        raise app.UsageError(f"unknown plans {sorted(unknown)}; known: {training_plans.PLAN_KINDS}")
    try:
        models.load_models(model_names(), include_transfer=True)
    except ValueError as error:
        raise app.UsageError(str(error)) from None


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    _check_flags()
    environment.require_host_library()
    data = firmware.run_with_firmware_dir(
        run_all, _FIRMWARE.value, _FIRMWARE_DIR.value, "tt_bench_training_"
    )
    write_results(data)
    if not data["firmware_agrees_with_host"]:
        print(
            "error: the firmware's losses or arena differ from the host trainer's (see the report)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    app.run(main)
