"""Adapts a pretrained int8 model to a new task ON the board, end to end.

  python tools/deploy.py --board nrf52840

With no other flags: the DS-CNN pretrained on Speech Commands with a new
10-class head (tests/models/transfer/ds_cnn_fsdd.tflite) learns spoken
digits (FSDD, the committed tests/data subsets) with TraDy, the best update
scheme that fits the board's RAM, on the emulated nRF52840 (QEMU): the
learner firmware (only the model, the plan and code in flash) receives the
samples over its UART, trains, saves its learned state to flash, is
power-cycled and must come back with it, is evaluated, and gives back the
adapted model (trained_device.tflite). The host Trainer replays every step;
the report compares losses and trained parameters bit for bit, accuracy
before/after, RAM and flash against the board's limits, and instructions
per training step. Everything also goes to --out/report.json. With
--noemulate it builds the firmware for the real board and says how to
flash it; --port then runs the same job on the board.
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
from tools import emulation
from tools import learner_firmware
from tools import learning

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
    "scheme", "auto", ("auto",) + steps.SCHEMES, "What trains: auto (trady when it fits "
    "the budget, else every bias, else the classifier's biases); the classifier; every bias; "
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
_EPOCHS = flags.DEFINE_integer("epochs", 2, "Passes over the training samples.",
                               lower_bound=1)
_TRAIN_SAMPLES = flags.DEFINE_integer(
    "train_samples", 300, "Training samples (class-balanced subset).", lower_bound=1)
_TEST_SAMPLES = flags.DEFINE_integer(
    "test_samples", 100, "Test samples (class-balanced subset).", lower_bound=1)
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 0.02, "SGD learning rate.")
_HELDOUT_SAMPLES = flags.DEFINE_integer(
    "heldout_samples", learner_firmware.DEFAULT_HELDOUT_SAMPLES, "Training samples (not "
    "trained on) the device keeps to guard its saves (--guard).", lower_bound=0)
_SAVE_EVERY = flags.DEFINE_integer("save_every", 0, "The device saves its learned state "
                                   "every N steps (0: once, at the end).", lower_bound=0)
_GUARD = flags.DEFINE_enum("guard", "none", list(learning.GUARDS), "A save must not lower "
                           "held-out accuracy / let the held-out loss diverge, else the "
                           "device rolls back to its saved state.")
_EMULATE = flags.DEFINE_bool(
    "emulate", True, "Run the learner firmware in QEMU (no board attached). --noemulate "
    "builds the firmware for the real board and says how to flash it.")
_PORT = flags.DEFINE_string("port", None, "With --noemulate: the serial port of a board "
                            "already flashed with the learner firmware (e.g. /dev/ttyACM0); "
                            "the job runs on it.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the sample subsets and their order.")
_TIMEOUT = flags.DEFINE_float("timeout", 60.0, "Seconds to wait for one answer from the "
                              "device.")
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
    log(f"  samples: {report['train_samples']} streamed x {report['epochs']} epochs, "
        f"{report['heldout_samples']} held out on the device, {report['test_samples']} "
        f"test; lr {report['learning_rate']:g}")
    device = report.get("device")
    if device:
        host = report["host"]
        log(f"  host   accuracy: {host['accuracy_before']:.3f} -> {host['accuracy_after']:.3f}")
        where = report.get("emulated_board") and f"emulated {report['emulated_board']}" or \
            report.get("port")
        log(f"  device accuracy: {device['accuracy_before']:.3f} -> "
            f"{device['accuracy_after']:.3f} ({where}; the adapted model on the test "
            "samples)")
        held = device["heldout_before"], device["heldout_after"]
        if held[0]["count"]:
            log(f"  device held-out: {held[0]['correct']}/{held[0]['count']} -> "
                f"{held[1]['correct']}/{held[1]['count']} correct (evaluated on the device)")
        comparison = report["comparison"]
        for t in comparison["tensors"]:
            log(f"    tensor {t['tensor']} ({t['bytes']} bytes): device crc32 "
                f"{t['device_crc32']:#010x}, host {t['host_crc32']:#010x} "
                f"{'equal' if t['equal'] else 'DIFFERENT'}")
        verdict = "bit-identical" if comparison["weights_bit_identical"] else "DIFFERENT"
        log(f"  device weights vs host: {verdict}; losses "
            f"{'identical' if comparison['losses_bit_identical'] else 'DIFFERENT'}")
        for save in device["saves"]:
            log(f"  save: state {save['sequence']}, {save['bytes_written']} bytes written, "
                f"{save['pages_erased']} pages erased" + ("" if save["saved"] else
                                                          f" -> rolled back: {save['reason']}"))
        cycle = device.get("power_cycle")
        if cycle:
            log(f"  power cycle: the saved state "
                f"{'came back' if cycle['state_came_back'] else 'DID NOT come back'} "
                f"(state {cycle['state_sequence']}, restored in {cycle['restore_count']:,} "
                "instructions)")
        per_step = device["instructions_per_step"]
        log(f"  streamed {device['samples_per_second']:.1f} samples/s; instructions per "
            f"training step: {per_step:,}" if per_step else
            f"  streamed {device['samples_per_second']:.1f} samples/s")
        log(f"  adapted model: {device['trained_device_tflite']}")
    memory = report["memory"]
    log(f"  {memory['board']} firmware: flash {_percent(memory['flash_used'], memory['flash_max'])}"
        f" (incl. {memory['state_flash']} for two learned-state slots), "
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


def plan_for(scheme, model, samples, board, reserved, out):
    if scheme in steps.SEARCHED_SCHEMES:
        return steps.search_plan(model, scheme, samples,
                                 steps.budget_bytes(board, _BUDGET_KB.value, reserved),
                                 _LEARNING_RATE.value, _SEED.value, out, log,
                                 metric=_METRIC.value, trials=_SEARCH_TRIALS.value)
    return steps.make_plan(model, scheme, _LEARNING_RATE.value)


def choose_plan(model, samples, board, reserved, out):
    """(scheme, plan): --scheme's, or for auto the best that fits: TraDy,
    else every bias, else the classifier's biases."""
    if _SCHEME.value != "auto":
        return _SCHEME.value, plan_for(_SCHEME.value, model, samples, board, reserved, out)
    for scheme in ("trady", "bias"):
        try:
            plan = plan_for(scheme, model, samples, board, reserved, out)
            steps.check_budget(model, plan, scheme, board, _BUDGET_KB.value, reserved)
            return scheme, plan
        except steps.DeployError as e:
            log(f"auto: {scheme} does not fit ({e}); trying a smaller scheme")
    return "classifier-bias", steps.make_plan(model, "classifier-bias", _LEARNING_RATE.value)


def run_on_device(device, model, plan, samples, out, log_fn=log):
    """The learning job on a learner device; (device report, session)."""
    stream = learning.Stream(samples.train_x, samples.train_y, samples.test_x,
                             samples.test_y, samples.heldout_x, samples.heldout_y)
    settings = learning.JobSettings(epochs=_EPOCHS.value, save_every=_SAVE_EVERY.value,
                                    guard=learning.GUARDS[_GUARD.value],
                                    power_cycle=device.emulated, factory_reset=True)
    session = learning.Session(device, model, plan, log_fn)
    return learning.run_job(session, stream, settings, out, log_fn), session


def deploy():
    start = time.monotonic()
    out = pathlib.Path(_OUT.value).resolve()
    out.mkdir(parents=True, exist_ok=True)
    board = steps.load_board(_BOARD.value)
    steps.check_tools(board, _EMULATE.value)
    if _PORT.value is not None and _EMULATE.value:
        raise steps.DeployError("--port runs the job on a real board: pass --noemulate too")

    dataset = steps.load_dataset(_DATASET.value)
    model, model_name = steps.load_model(_MODEL.value, dataset, out, log)
    info = steps.model_input(model)
    heldout = _HELDOUT_SAMPLES.value
    samples = steps.prepare_samples(dataset, info, _TRAIN_SAMPLES.value, _TEST_SAMPLES.value,
                                    _SEED.value, heldout_samples=heldout)
    reserved = steps.learner_ram(model, info, heldout, board)
    steps.check_model_trains_on(model, board, reserved)
    scheme, plan = choose_plan(model, samples, board, reserved, out)
    arena = steps.check_budget(model, plan, scheme, board, _BUDGET_KB.value, reserved)
    trained = steps.describe_plan(model, plan)
    plan_bytes = plan.to_bytes()
    report = {
        "board": board.name, "model": model_name, "dataset": dataset.name,
        "scheme": scheme, "requested_scheme": _SCHEME.value, "trained": trained,
        "epochs": _EPOCHS.value,
        "learning_rate": _LEARNING_RATE.value, "momentum": steps.MOMENTUM,
        "batch_size": steps.BATCH_SIZE, "train_samples": len(samples.train_y),
        "heldout_samples": len(samples.heldout_y),
        "test_samples": len(samples.test_y), "arena_bytes": arena,
        "budget_bytes": None if _BUDGET_KB.value is None else int(_BUDGET_KB.value * 1024),
        "sample_budget": plan.sample_budget, "seed": _SEED.value,
    }
    log(f"model {model_name}: input {info.shape} {info.dtype.name}, {info.num_classes} "
        f"classes; {scheme} plan, training arena {arena} bytes")
    # The artifacts: the int8 model, the plan the runtime reads, and a summary.
    learning.write_atomically(out / "model.tflite", model)
    learning.write_atomically(out / "plan.bin", plan_bytes)
    learning.write_atomically(out / "plan.txt", steps.plan_summary(model_name, plan, trained,
                                                                   arena))

    log(f"building the {board.name} learner firmware ...")
    real, sizes = steps.build_learner(board.name, model, plan, out / board.name, heldout)
    log(real.report)
    report["memory"] = steps.memory_report(real, board)
    report["memory"]["state_flash"] = sizes.state_region_bytes

    device = None
    if _EMULATE.value:
        emulated, note = steps.emulator_board(board)
        if note:
            log(f"note: {note}")
        firmware = real if emulated.name == board.name else steps.build_learner(
            emulated.name, model, plan, out / emulated.name, heldout)[0]
        flash = out / "flash.bin"
        flash.unlink(missing_ok=True)  # a new device: erased flash
        report["emulated_board"] = emulated.name
        device = learning.Device(elf=firmware.elf, flash_path=flash, timeout=_TIMEOUT.value)
    elif _PORT.value is not None:
        report["port"] = _PORT.value
        device = learning.Device(port=_PORT.value, timeout=_TIMEOUT.value)
    else:
        report["flash"] = flash_instructions(real, board)
    if device is not None:
        try:
            job, session = run_on_device(device, model, plan_bytes, samples, out)
        finally:
            device.close()
        learning.write_atomically(out / "trained_host.tflite", session.host.export())
        report["host"] = {"accuracy_before": job["before"]["host_accuracy"],
                          "accuracy_after": job["after"]["host_accuracy"]}
        report["device"] = {
            "accuracy_before": job["before"]["accuracy"],
            "accuracy_after": job["after"]["accuracy"],
            "instructions_per_step": job["counter_per_step"],
            "heldout_before": job["before"]["heldout"], "heldout_after": job["after"]["heldout"],
            **{k: job[k] for k in ("samples_per_second", "saves", "losses_mean_per_epoch",
                                   "trained_device_tflite", "state_sequence")},
            "power_cycle": job.get("power_cycle"),
        }
        report["comparison"] = {
            "tensors": job["tensors"], "weights_bit_identical": job["parameters_bit_identical"],
            "losses_bit_identical": job["losses_bit_identical"],
            "predictions_identical": job["before"]["predictions_match_host"]
            and job["after"]["predictions_match_host"],
            "mismatches": job["mismatches"]}
    report["wall_seconds"] = time.monotonic() - start
    report["report_path"] = str(out / "report.json")
    learning.write_atomically(out / "report.json", json.dumps(report, indent=2) + "\n")
    print_report(report)
    if device is None:
        log(f"built {real.hex}; {report['flash']}")
        log(f"then run the job on it: python tools/deploy.py --noemulate --port /dev/ttyACM0 "
            f"(same flags), or stream your own data with tools/learn.py --port")
    comparison = report.get("comparison")
    if comparison and comparison["mismatches"]:
        log("error: the device differs from the host: " + "; ".join(comparison["mismatches"]))
        return 1
    return 0


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        return deploy()
    except (steps.DeployError, learning.SessionError, emulation.EmulationError,
            learning.wire.DeviceError, learning.wire.LinkError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    app.run(main)
