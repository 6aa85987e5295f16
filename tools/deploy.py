"""Adapts a pretrained int8 model to a new task ON the board, end to end.

  python tools/deploy.py --board nrf52840

With no other flags: the DS-CNN pretrained on Speech Commands with a new
10-class head (tests/models/transfer/ds_cnn_fsdd.tflite) learns spoken
digits (FSDD, the committed tests/data subsets) on the emulated nRF52840
(QEMU); the host Trainer replays the same steps, and the report compares
accuracy before/after on both, the trained weights (CRC-32 per tensor), RAM
and flash against the board's limits, and instructions per training step.
Everything also goes to --out/report.json. With --noemulate it builds the
firmware for the real board and says how to flash it.
"""
import json
import pathlib
import shutil
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from tools import board_config
from tools import deploy_steps as steps

_BOARD = flags.DEFINE_string(
    "board", "nrf52840", f"Target board ({', '.join(board_config.board_names())}).")
_MODEL = flags.DEFINE_string(
    "model", str(steps.DEFAULT_MODEL.relative_to(REPO)),
    "An int8 .tflite, or a pipeline checkpoint (prefix, e.g. "
    "pipeline/checkpoints/ds_cnn_speech_commands12: QAT and a new head, needs TensorFlow).")
_DATASET = flags.DEFINE_string(
    "dataset", "fsdd", f"A built-in dataset ({', '.join(steps.DATASETS)}) or an .npz with "
    "x_train, y_train, x_test, y_test (x uint8 0-255, or already in the input's dtype).")
_SCHEME = flags.DEFINE_enum(
    "scheme", "classifier", steps.SCHEMES, "What trains: the classifier; every bias; "
    "sparse (classifier + a quarter of the channels of the layer before it); full "
    "(every layer, only when it fits); sparse-search (contribution analysis + "
    "evolutionary search for the budget); trady (layers ranked by relative gradient norm, "
    "channels resampled on the device every epoch within the budget); lowrank (Adam on "
    "low-rank projected gradients of FC / pointwise layers).")
_BUDGET_KB = flags.DEFINE_float(
    "budget_kb", None, "Training arena budget in KB (checked with "
    "tflm_training.memory_model; default: the board's RAM less its stack and 4 KB of other globals). The searched "
    "schemes find the best plan for it.")
_METRIC = flags.DEFINE_enum(
    "contribution_metric", "accuracy", ["accuracy", "loss"], "sparse-search: what a "
    "contribution is, the held-out accuracy gain or the drop of the held-out loss.")
_SEARCH_TRIALS = flags.DEFINE_integer(
    "search_trials", 4, "sparse-search: train the search's best plans of N shapes and the best "
    "bias-only plan on the training samples like the analysis runs and keep the best "
    "measured (0: the search's best predicted plan).", lower_bound=0)
_EPOCHS = flags.DEFINE_integer("epochs", 4, "Passes over the training samples.",
                               lower_bound=1)
_TRAIN_SAMPLES = flags.DEFINE_integer(
    "train_samples", 300, "Training samples (class-balanced subset).", lower_bound=1)
_TEST_SAMPLES = flags.DEFINE_integer(
    "test_samples", 100, "Test samples (class-balanced subset).", lower_bound=1)
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 0.02, "SGD learning rate.")
_EMULATE = flags.DEFINE_bool(
    "emulate", True, "Run the training in QEMU (no board attached). --noemulate builds "
    "the firmware for the real board and says how to flash it.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the sample subsets and their order.")
_TIMEOUT = flags.DEFINE_float("timeout", 600.0, "Seconds before QEMU is stopped.")
_OUT = flags.DEFINE_string("out", "build/deploy", "Output folder (report.json, firmware).")


def log(message):
    print(message, flush=True)


def _percent(used, limit):
    return f"{used} / {limit} bytes ({used * 100 // limit}%)"


def print_report(report):
    log("")
    log("=" * 72)
    log(f"deploy report: {report['model']} on {report['dataset']} ({report['board']})")
    trained = ", ".join(steps.describe_layer(entry) for entry in report["trained"])
    log(f"  trained ({report['scheme']}): {trained}")
    if report.get("sample_budget"):
        log(f"  sampled channels' optimizer state: {report['sample_budget']} bytes per epoch "
            f"(seed {report['seed']})")
    log(f"  samples: {report['train_samples']} train x {report['epochs']} epochs, "
        f"{report['test_samples']} test; lr {report['learning_rate']:g}")
    host = report["host"]
    log(f"  host   accuracy: {host['accuracy_before']:.3f} -> {host['accuracy_after']:.3f}")
    device = report.get("device")
    if device:
        log(f"  device accuracy: {device['accuracy_before']:.3f} -> "
            f"{device['accuracy_after']:.3f} (emulated {report['emulated_board']})")
        comparison = report["comparison"]
        for t in comparison["tensors"]:
            log(f"    tensor {t['tensor']} ({t['kind']}, {t['bytes']} bytes): device crc32 "
                f"{t['device_crc32']:#010x}, host {t['host_crc32']:#010x} "
                f"{'equal' if t['equal'] else 'DIFFERENT'}")
        verdict = "bit-identical" if comparison["weights_bit_identical"] else "DIFFERENT"
        log(f"  device weights vs host: {verdict}; losses "
            f"{'identical' if comparison['losses_bit_identical'] else 'DIFFERENT'}")
        log(f"  instructions per training step: {device['instructions_per_step']:,}, "
            f"per inference: {device['instructions_per_inference']:,}")
        log(f"  peak RAM (emulated, stack measured): {_percent(device['peak_ram'], report['memory']['ram_max'])}")
    memory = report["memory"]
    log(f"  {memory['board']} firmware: flash {_percent(memory['flash_used'], memory['flash_max'])}, "
        f"RAM {_percent(memory['ram_static'] + memory['ram_stack'], memory['ram_max'])} "
        f"(globals {memory['ram_static']} incl. arena {report['arena_bytes']}, "
        f"stack {memory['ram_stack']}); {'fits' if memory['fits'] else 'DOES NOT FIT'}")
    log(f"  wall time: {report['wall_seconds']:.1f} s; report: {report['report_path']}")


def flash_instructions(firmware, board):
    tool = board.data.get("flash_tool", {})
    name, target = tool.get("tool", "pyocd"), tool.get("target", board.name)
    command = f"pyocd flash --target {target} {firmware.hex}"
    if shutil.which(name) is None:
        return (f"to flash it, install {name} (pip install {name}) and connect a debug "
                f"probe, then run: {command}")
    return f"flash it with: {command}"


def deploy():
    start = time.monotonic()
    out = pathlib.Path(_OUT.value).resolve()
    out.mkdir(parents=True, exist_ok=True)
    board = steps.load_board(_BOARD.value)
    steps.check_tools(board, _EMULATE.value)

    dataset = steps.load_dataset(_DATASET.value)
    model, model_name = steps.load_model(_MODEL.value, dataset, out, log)
    info = steps.model_input(model)
    samples = steps.prepare_samples(dataset, info, _TRAIN_SAMPLES.value,
                                    _TEST_SAMPLES.value, _SEED.value)
    if _SCHEME.value in steps.SEARCHED_SCHEMES:
        plan = steps.search_plan(model, _SCHEME.value, samples,
                                 steps.budget_bytes(board, _BUDGET_KB.value),
                                 _LEARNING_RATE.value, _SEED.value, out, log,
                                 metric=_METRIC.value, trials=_SEARCH_TRIALS.value)
    else:
        plan = steps.make_plan(model, _SCHEME.value, _LEARNING_RATE.value)
    arena = steps.check_budget(model, plan, _SCHEME.value, board, _BUDGET_KB.value)
    trained = steps.describe_plan(model, plan)
    epochs = _EPOCHS.value
    report = {
        "board": board.name, "model": model_name, "dataset": dataset.name,
        "scheme": _SCHEME.value, "trained": trained, "epochs": epochs,
        "learning_rate": _LEARNING_RATE.value, "momentum": steps.MOMENTUM,
        "batch_size": steps.BATCH_SIZE, "train_samples": len(samples.train_y),
        "test_samples": len(samples.test_y), "arena_bytes": arena,
        "budget_bytes": None if _BUDGET_KB.value is None else int(_BUDGET_KB.value * 1024),
        "sample_budget": plan.sample_budget, "seed": _SEED.value,
    }
    log(f"model {model_name}: input {info.shape} {info.dtype.name}, {info.num_classes} "
        f"classes; {_SCHEME.value} plan, training arena {arena} bytes")
    # The artifacts: the int8 model, the plan the runtime reads, and a summary.
    (out / "model.tflite").write_bytes(model)
    (out / "plan.bin").write_bytes(plan.to_bytes())
    (out / "plan.txt").write_text(steps.plan_summary(model_name, plan, trained, arena))

    log(f"host: training {len(samples.train_y)} samples x {epochs} epochs ...")
    host = steps.host_training(model, plan, samples, epochs)
    report["host"] = {k: host[k] for k in ("accuracy_before", "accuracy_after", "seconds")}
    report["host"]["crc32"] = {str(t): c for t, c in steps.host_crcs(host["trainer"]).items()}
    (out / "trained_host.tflite").write_bytes(host["trainer"].export())

    log(f"building the {board.name} firmware ...")
    real = steps.build(board.name, model, plan, samples, epochs, out / board.name)
    log(real.report)
    report["memory"] = steps.memory_report(real, board)

    if _EMULATE.value:
        emulated, note = steps.emulator_board(board)
        if note:
            log(f"note: {note}")
        firmware = real if emulated.name == board.name else steps.build(
            emulated.name, model, plan, samples, epochs, out / emulated.name)
        total = epochs * len(samples.train_y)
        log(f"emulating: {total} training steps + {2 * len(samples.test_y)} "
            "inferences in QEMU ...")
        run = steps.emulate(firmware, emulated.name, total, _TIMEOUT.value, log)
        counts = [c for c in run.step_counts if c is not None]
        report["emulated_board"] = emulated.name
        report["device"] = {
            "accuracy_before": run.accuracy("before"), "accuracy_after": run.accuracy("after"),
            "instructions_per_step": sum(counts) // len(counts) if counts else None,
            "instructions_per_inference": int(run.count_per_inference() or 0),
            "peak_ram": run.ram["peak"], "stack_used": run.ram["stack_used"],
            "arena_bytes": run.ram["arena_size"],
        }
        report["comparison"] = steps.compare(run, host)
    else:
        report["flash"] = flash_instructions(real, board)
    report["wall_seconds"] = time.monotonic() - start
    report["report_path"] = str(out / "report.json")
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print_report(report)
    if not _EMULATE.value:
        log(f"built {real.hex}; {report['flash']}")
    comparison = report.get("comparison")
    if comparison and not comparison["weights_bit_identical"]:
        log("error: the device's trained weights differ from the host's")
        return 1
    return 0


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        return deploy()
    except steps.DeployError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    app.run(main)
