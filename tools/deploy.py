"""Adapts a pretrained int8 model to a new task ON the board, end to end.

  python tools/deploy.py --board nrf52840

With no other flags: the DS-CNN pretrained on Speech Commands with a new
10-class head (examples/ds_cnn_fsdd.tflite) learns spoken
digits (FSDD, the committed subsets in examples/) with TraDy, the best update
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

Every input is checked before any work (a bad one is exit status 2 and one
line on stderr); --out is replaced whole when the job has run to its end,
and left as it was when it fails (tools/output_folder.py).
"""

import dataclasses
import json
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from absl import app, flags

import tflm_training
from tflm_training import saturation
from tools import board_config, emulation, layer_profile, learner_firmware, learning, output_folder
from tools import deploy_steps as steps

_BOARD = flags.DEFINE_string(
    "board", "nrf52840", f"Target board ({', '.join(board_config.board_names())})."
)
_MODEL = flags.DEFINE_string(
    "model",
    str(steps.DEFAULT_MODEL.relative_to(REPO)),
    "An int8 .tflite, or a pipeline checkpoint (prefix, e.g. "
    "pipeline/checkpoints/ds_cnn_speech_commands12: QAT and a new head, needs TensorFlow).",
)
_DATASET = flags.DEFINE_string(
    "dataset",
    "fsdd",
    f"A built-in dataset ({', '.join(steps.DATASETS)}) or an .npz with "
    "x_train, y_train, x_test, y_test (x: uint8 0-255, fed as x / 255; floats, the real "
    "values; or already in the input's dtype).",
)
_HEAD = flags.DEFINE_enum(
    "head",
    "auto",
    ["auto", "keep", "new"],
    "A .tflite's classifier (the FULLY_CONNECTED or "
    "1x1 CONV_2D computing the logits): auto replaces it with a fresh one for the dataset's "
    "classes (its largest label + 1) when their number differs from the model's outputs, "
    "int8 ranges calibrated on the training samples (tflm_training.new_head; no TensorFlow); "
    "keep never replaces it (labels beyond the model's classes are refused); new always "
    "does.",
)
_RESIZE = flags.DEFINE_enum(
    "resize",
    None,
    list(steps.RESIZE_METHODS),
    "Resize image samples (N, height, width, "
    "channels) to the model's input height and width: nearest or bilinear (half-pixel "
    "centres, as tf.image.resize). Without it, samples must have the model's input shape.",
)
_SCHEME = flags.DEFINE_enum(
    "scheme",
    "auto",
    ("auto",) + steps.SCHEMES,
    "What trains: auto (trady when it fits "
    "the budget, else every bias, else the classifier's biases); the classifier; every bias; "
    "sparse (classifier + a quarter of the channels of the layer before it); full "
    "(every layer, only when it fits); sparse-search (contribution analysis + "
    "evolutionary search for the budget); trady (layers ranked by relative gradient norm, "
    "channels resampled on the device every epoch within the budget); lowrank (Adam on "
    "low-rank projected gradients of FC / pointwise layers).",
)
_BUDGET_KB = flags.DEFINE_float(
    "budget_kb",
    None,
    "Training arena budget in KB (checked with tflm_training.memory_model; default: the "
    "board's RAM less its stack and 4 KB of other globals). The searched schemes find the "
    "best plan for it.",
)
_METRIC = flags.DEFINE_enum(
    "contribution_metric",
    "accuracy",
    ["accuracy", "loss"],
    "sparse-search: what a "
    "contribution is, the held-out accuracy gain or the drop of the held-out loss.",
)
_SEARCH_TRIALS = flags.DEFINE_integer(
    "search_trials",
    4,
    "sparse-search: train the search's best plans of N shapes and the best "
    "bias-only plan on the training samples like the analysis runs and keep the best "
    "measured (0: the search's best predicted plan).",
    lower_bound=0,
)
_EPOCHS = flags.DEFINE_integer("epochs", 2, "Passes over the training samples.", lower_bound=1)
_TRAIN_SAMPLES = flags.DEFINE_integer(
    "train_samples", 300, "Training samples (class-balanced subset).", lower_bound=1
)
_TEST_SAMPLES = flags.DEFINE_integer(
    "test_samples", 100, "Test samples (class-balanced subset).", lower_bound=1
)
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 0.02, "SGD learning rate.")
_GRADIENT_BITS = flags.DEFINE_enum(
    "gradient_bits",
    "32",
    ["32", "16"],
    "Bits of a stored activation gradient on the device: "
    "16 (bfloat16) halves the gradient buffers, so the budget holds deeper plans; the "
    "gradients then differ from float32's by a few parts in a thousand.",
)
_HELDOUT_SAMPLES = flags.DEFINE_integer(
    "heldout_samples",
    learner_firmware.DEFAULT_HELDOUT_SAMPLES,
    "Training samples (not trained on) the device keeps to guard its saves (--guard).",
    lower_bound=0,
)
_SAVE_EVERY = flags.DEFINE_integer(
    "save_every",
    0,
    "The device saves its learned state every N steps (0: once, at the end).",
    lower_bound=0,
)
_GUARD = flags.DEFINE_enum(
    "guard",
    "none",
    list(learning.GUARDS),
    "A save must not lower "
    "held-out accuracy / let the held-out loss diverge, else the "
    "device rolls back to its saved state.",
)
_EMULATE = flags.DEFINE_bool(
    "emulate",
    True,
    "Run the learner firmware in QEMU (no board attached). --noemulate "
    "builds the firmware for the real board and says how to flash it.",
)
_PORT = flags.DEFINE_string(
    "port",
    None,
    "With --noemulate: the serial port of a board "
    "already flashed with the learner firmware (e.g. /dev/ttyACM0); "
    "the job runs on it.",
)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the sample subsets and their order.")
_TIMEOUT = flags.DEFINE_float("timeout", 60.0, "Seconds to wait for one answer from the device.")
_ATOMIC_STEPS = flags.DEFINE_enum(
    "atomic_steps",
    "auto",
    ["auto", "on", "off"],
    "Give the learner firmware an undo buffer "
    "(the learned state's size in RAM again) so a training step that diverges changes "
    "nothing; auto: when the firmware still fits the board. Without one a diverged step "
    "sends the device back to its saved state.",
)
_MAX_SATURATION = flags.DEFINE_float(
    "max_saturation",
    saturation.DEFAULT_LIMIT,
    "Refuse the adapted model when training "
    "pinned more than this share of a layer's trained weights or biases at their integer "
    "limits (the sign of a learning rate too large); 1 never refuses.",
)
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
        log(
            f"  sampled channels' optimizer state: {report['sample_budget']} bytes per epoch "
            f"(seed {report['seed']})"
        )
    log(
        f"  samples: {report['train_samples']} streamed x {report['epochs']} epochs, "
        f"{report['heldout_samples']} held out on the device, {report['test_samples']} "
        f"test; lr {report['learning_rate']:g}"
    )
    device = report.get("device")
    if device:
        host = report["host"]
        log(f"  host   accuracy: {host['accuracy_before']:.3f} -> {host['accuracy_after']:.3f}")
        where = (
            report.get("emulated_board")
            and f"emulated {report['emulated_board']}"
            or report.get("port")
        )
        log(
            f"  device accuracy: {device['accuracy_before']:.3f} -> "
            f"{device['accuracy_after']:.3f} ({where}; the adapted model on the test "
            "samples)"
        )
        held = device["heldout_before"], device["heldout_after"]
        if held[0]["count"]:
            log(
                f"  device held-out: {held[0]['correct']}/{held[0]['count']} -> "
                f"{held[1]['correct']}/{held[1]['count']} correct (evaluated on the device)"
            )
        comparison = report["comparison"]
        for t in comparison["tensors"]:
            log(
                f"    tensor {t['tensor']} ({t['bytes']} bytes): device crc32 "
                f"{t['device_crc32']:#010x}, host {t['host_crc32']:#010x} "
                f"{'equal' if t['equal'] else 'DIFFERENT'}"
            )
        verdict = "bit-identical" if comparison["weights_bit_identical"] else "DIFFERENT"
        log(
            f"  device weights vs host: {verdict}; losses "
            f"{'identical' if comparison['losses_bit_identical'] else 'DIFFERENT'}"
        )
        if device["diverged_steps"]:
            log(
                f"  {device['diverged_steps']} training steps diverged and changed nothing"
                if device["undo_bytes"]
                else f"  {device['diverged_steps']} training steps diverged; each sent the device "
                "back to its saved state"
            )
        log(
            f"  training steps all or nothing on the device (a {device['undo_bytes']}-byte undo "
            "buffer)"
            if device["undo_bytes"]
            else "  no RAM for an undo buffer on the device: "
            "a diverged step would send it back to its saved state"
        )
        for layer in saturation.from_dicts(device["saturation"]):
            log(f"  saturation: {layer.describe()}")
        for save in device["saves"]:
            log(
                f"  save: state {save['sequence']}, {save['bytes_written']} bytes written, "
                f"{save['pages_erased']} pages erased"
                + ("" if save["saved"] else f" -> rolled back: {save['reason']}")
            )
        cycle = device.get("power_cycle")
        if cycle:
            log(
                f"  power cycle: the saved state "
                f"{'came back' if cycle['state_came_back'] else 'DID NOT come back'} "
                f"(state {cycle['state_sequence']}, restored in {cycle['restore_count']:,} "
                "instructions)"
            )
        per_step = device["instructions_per_step"]
        log(
            f"  streamed {device['samples_per_second']:.1f} samples/s; instructions per "
            f"training step: {per_step:,}"
            if per_step
            else f"  streamed {device['samples_per_second']:.1f} samples/s"
        )
        log(f"  adapted model: {device['trained_device_tflite']}")
    memory = report["memory"]
    log(
        f"  {memory['board']} firmware: flash {_percent(memory['flash_used'], memory['flash_max'])}"
        f" (incl. {memory['state_flash']} for two learned-state slots), "
        f"RAM {_percent(memory['ram_static'] + memory['ram_stack'], memory['ram_max'])} "
        f"(globals {memory['ram_static']} incl. arena {report['arena_bytes']}, "
        f"stack {memory['ram_stack']}); {'fits' if memory['fits'] else 'DOES NOT FIT'}"
    )
    log(f"  wall time: {report['wall_seconds']:.1f} s; report: {report['report_path']}")


def flash_instructions(hex_path, board):
    """The tools/flash.py command that flashes the built learner onto the
    board (pyocd, bossac or a UF2 copy, as the board is flashed)."""
    return f"flash it with: python tools/flash.py --board {board.name} --firmware {hex_path.parent}"


def plan_for(scheme, model, samples, board, reserved, work):
    if scheme in steps.SEARCHED_SCHEMES:
        return steps.search_plan(
            model,
            scheme,
            samples,
            steps.budget_bytes(board, _BUDGET_KB.value, reserved),
            _LEARNING_RATE.value,
            _SEED.value,
            work,
            log,
            metric=_METRIC.value,
            trials=_SEARCH_TRIALS.value,
            gradient_bits=int(_GRADIENT_BITS.value),
        )
    return steps.make_plan(model, scheme, _LEARNING_RATE.value, int(_GRADIENT_BITS.value))


def choose_plan(model, samples, board, reserved, work):
    """(scheme, plan): --scheme's, or for auto the best that fits: TraDy,
    else every bias, else the classifier's biases."""
    if _SCHEME.value != "auto":
        return _SCHEME.value, plan_for(_SCHEME.value, model, samples, board, reserved, work)
    for scheme in ("trady", "bias"):
        try:
            plan = plan_for(scheme, model, samples, board, reserved, work)
            steps.check_budget(model, plan, scheme, board, _BUDGET_KB.value, reserved)
            return scheme, plan
        except steps.DeployError as e:
            log(f"auto: {scheme} does not fit ({e}); trying a smaller scheme")
    return "classifier-bias", steps.make_plan(
        model, "classifier-bias", _LEARNING_RATE.value, int(_GRADIENT_BITS.value)
    )


def run_on_device(device, model, plan, samples, out, log_fn=log):
    """The learning job on a learner device; (device report, session)."""
    stream = learning.Stream(
        samples.train_x,
        samples.train_y,
        samples.test_x,
        samples.test_y,
        samples.heldout_x,
        samples.heldout_y,
    )
    settings = learning.JobSettings(
        epochs=_EPOCHS.value,
        save_every=_SAVE_EVERY.value,
        guard=learning.GUARDS[_GUARD.value],
        power_cycle=device.emulated,
        factory_reset=True,
    )
    session = learning.Session(device, model, plan, log_fn)
    return learning.run_job(session, stream, settings, out, log_fn), session


def check_flags():
    """Every flag, before any work; returns --out as an absolute path."""
    steps.check_learning_rate(_LEARNING_RATE.value)
    steps.check_positive("budget_kb", _BUDGET_KB.value)
    steps.check_positive("timeout", _TIMEOUT.value)
    steps.check_seed(_SEED.value)
    steps.check_share("max_saturation", _MAX_SATURATION.value)
    if _PORT.value is not None and _EMULATE.value:
        raise steps.DeployError("--port runs the job on a real board: pass --noemulate too")
    out = output_folder.check(_OUT.value)
    _, model_path = steps.model_source(_MODEL.value)
    dataset_path = None if _DATASET.value in steps.DATASETS else _DATASET.value
    output_folder.check_inputs_outside(out, {"--model": model_path, "--dataset": dataset_path})
    kind, _ = steps.model_source(_MODEL.value)
    if _HEAD.value == "new" and kind != "tflite":
        raise steps.DeployError(
            f"--head new replaces the classifier of a .tflite; a {kind} "
            "--model gets a new head for the dataset when it is converted: "
            "leave out --head"
        )
    return out


@dataclasses.dataclass
class Job:
    """What the firmware and the device run, checked and planned."""

    board: board_config.Board
    dataset_name: str
    model: bytes
    model_name: str
    info: steps.ModelInput
    samples: steps.Samples
    scheme: str
    plan: object  # tflm_training.TrainingPlan
    arena: int
    new_head: object = None  # tflm_training.new_head.NewHead, when the head was replaced


def prepare(board, dataset, work):
    """The model (converted into work when it is not a .tflite), the
    samples checked against it, and the plan for the budget."""
    model, model_name = steps.load_model(_MODEL.value, dataset, work, log)
    info = steps.model_input(model)
    steps.check_learner_input(info)
    dataset = steps.resize_dataset(dataset, info, _RESIZE.value)
    head = None
    if steps.wants_new_head(_HEAD.value, steps.model_source(_MODEL.value)[0], dataset, info):
        model, head = steps.new_head(model, dataset, info, _SEED.value, log)
        info = steps.model_input(model)
    samples = steps.prepare_samples(
        dataset,
        info,
        _TRAIN_SAMPLES.value,
        _TEST_SAMPLES.value,
        _SEED.value,
        heldout_samples=_HELDOUT_SAMPLES.value,
    )
    reserved = steps.learner_ram(model, info, _HELDOUT_SAMPLES.value, board)
    steps.check_model_trains_on(model, board, reserved)
    scheme, plan = choose_plan(model, samples, board, reserved, work)
    arena = steps.check_budget(model, plan, scheme, board, _BUDGET_KB.value, reserved)
    return Job(board, dataset.name, model, model_name, info, samples, scheme, plan, arena, head)


def write_plan(job, work):
    """The int8 model, the plan the runtime reads, and a summary; the
    report's start."""
    trained = steps.describe_plan(job.model, job.plan)
    (work / "model.tflite").write_bytes(job.model)
    (work / "plan.bin").write_bytes(job.plan.to_bytes())
    (work / "plan.txt").write_text(steps.plan_summary(job.model_name, job.plan, trained, job.arena))
    samples = job.samples
    return {
        "board": job.board.name,
        "model": job.model_name,
        "dataset": job.dataset_name,
        "scheme": job.scheme,
        "requested_scheme": _SCHEME.value,
        "trained": trained,
        "epochs": _EPOCHS.value,
        "learning_rate": _LEARNING_RATE.value,
        "momentum": steps.MOMENTUM,
        "batch_size": steps.BATCH_SIZE,
        "gradient_bits": job.plan.gradient_bits,
        "train_samples": len(samples.train_y),
        "heldout_samples": len(samples.heldout_y),
        "test_samples": len(samples.test_y),
        "arena_bytes": job.arena,
        "budget_bytes": None if _BUDGET_KB.value is None else int(_BUDGET_KB.value * 1024),
        "sample_budget": job.plan.sample_budget,
        "seed": _SEED.value,
        "new_head": job.new_head and dataclasses.asdict(job.new_head),
        "resize": _RESIZE.value,
    }


def layer_report(job, work):
    """The plan per operator (planning.layer_report) in work/layers/
    (layers.md, .png, .json): with the emulator, the instructions of each
    operator's forward and backward work measured over a few steps."""
    rows = layer_profile.write_report(
        job.model,
        job.plan,
        job.samples.train_x,
        job.samples.train_y,
        work / "layers",
        f"{job.model_name}, {job.scheme} plan, per layer",
        job.board.name,
        emulate=_EMULATE.value,
    )
    return [row.as_dict() for row in rows]


def build_firmware(job, tx, report):
    """The learner firmware for the board, into work/<board>."""
    log(f"building the {job.board.name} learner firmware ...")
    atomic = {"auto": "auto", "on": True, "off": False}[_ATOMIC_STEPS.value]
    real, sizes = steps.build_learner(
        job.board.name,
        job.model,
        job.plan,
        tx.work / job.board.name,
        _HELDOUT_SAMPLES.value,
        log,
        atomic_steps=atomic,
    )
    log(real.report)
    report["memory"] = steps.memory_report(real, job.board)
    report["memory"]["state_flash"] = sizes.state_region_bytes
    report["memory"]["undo_bytes"] = sizes.undo_bytes
    return real


def open_device(job, real, tx, report):
    """The emulated device (a fresh folder: its flash starts erased), the
    board on --port, or None (--noemulate alone: say how to flash)."""
    if _EMULATE.value:
        emulated, note = steps.emulator_board(job.board)
        if note:
            log(f"note: {note}")
        firmware = (
            real
            if emulated.name == job.board.name
            else steps.build_learner(
                emulated.name,
                job.model,
                job.plan,
                tx.work / emulated.name,
                _HELDOUT_SAMPLES.value,
                log,
                atomic_steps=report["memory"]["undo_bytes"] > 0,
            )[0]
        )
        report["emulated_board"] = emulated.name
        return learning.Device(
            elf=firmware.elf, flash_path=tx.work / "flash.bin", timeout=_TIMEOUT.value
        )
    if _PORT.value is not None:
        report["port"] = _PORT.value
        return learning.Device(port=_PORT.value, timeout=_TIMEOUT.value)
    report["flash"] = flash_instructions(tx.final(real.hex), job.board)
    return None


def run_device(job, device, tx, report):
    """The learning job on the device; its results into the report."""
    try:
        job_report, session = run_on_device(
            device, job.model, job.plan.to_bytes(), job.samples, tx.work
        )
    finally:
        device.close()
    # Saturation is judged once the report is written (produce).
    (tx.work / "trained_host.tflite").write_bytes(session.host.export(force=True))
    report["host"] = {
        "accuracy_before": job_report["before"]["host_accuracy"],
        "accuracy_after": job_report["after"]["host_accuracy"],
    }
    report["device"] = {
        "accuracy_before": job_report["before"]["accuracy"],
        "accuracy_after": job_report["after"]["accuracy"],
        "instructions_per_step": job_report["counter_per_step"],
        "heldout_before": job_report["before"]["heldout"],
        "heldout_after": job_report["after"]["heldout"],
        **{
            k: job_report[k]
            for k in (
                "samples_per_second",
                "saves",
                "losses_mean_per_epoch",
                "loss_curve",
                "diverged_steps",
                "saturation",
                "undo_bytes",
                "state_sequence",
            )
        },
        "trained_device_tflite": str(tx.final(job_report["trained_device_tflite"])),
        "power_cycle": job_report.get("power_cycle"),
    }
    report["comparison"] = {
        "tensors": job_report["tensors"],
        "weights_bit_identical": job_report["parameters_bit_identical"],
        "losses_bit_identical": job_report["losses_bit_identical"],
        "predictions_identical": job_report["before"]["predictions_match_host"]
        and job_report["after"]["predictions_match_host"],
        "mismatches": job_report["mismatches"],
    }


def produce(board, dataset, tx, start):
    """The whole job, writing into tx.work; returns the exit status."""
    job = prepare(board, dataset, tx.work)
    log(
        f"model {job.model_name}: input {job.info.shape} {job.info.dtype.name}, "
        f"{job.info.num_classes} classes; {job.scheme} plan, training arena {job.arena} bytes"
    )
    report = write_plan(job, tx.work)
    report["layers"] = layer_report(job, tx.work)
    real = build_firmware(job, tx, report)
    device = open_device(job, real, tx, report)
    if device is not None:
        run_device(job, device, tx, report)
    report["wall_seconds"] = time.monotonic() - start
    report["report_path"] = str(tx.out / "report.json")
    (tx.work / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print_report(report)
    if device is None:
        log(f"built {tx.final(real.hex)}; {report['flash']}")
        log(
            "then run the job on it: python tools/deploy.py --noemulate --port /dev/ttyACM0 "
            "(same flags), or stream your own data with tools/learn.py --port"
        )
    if device is not None:
        check_training_was_sound(report)
    comparison = report.get("comparison")
    if comparison and comparison["mismatches"]:
        raise DeviceMismatchError(
            "the device differs from the host: " + "; ".join(comparison["mismatches"])
        )
    return 0


def check_training_was_sound(report):
    """Refuses a run whose learning rate made steps diverge (each changed
    nothing) or saturated the model past --max_saturation."""
    device = report["device"]
    if device["diverged_steps"]:
        raise steps.DeployError(
            f"{device['diverged_steps']} of {report['train_samples'] * report['epochs']} "
            "training steps diverged (NaN or infinity; each changed nothing): the learning "
            "rate is too large for this model; lower --learning_rate"
        )
    try:
        learning.check_saturation(device["saturation"], _MAX_SATURATION.value, log)
    except tflm_training.SaturationError as e:
        raise steps.DeployError(
            f"{e} (--learning_rate), or accept it with a higher --max_saturation"
        ) from None


class DeviceMismatchError(RuntimeError):
    """The device computed other bits than the host (exit status 1)."""


def deploy():
    """Checks every input before any work, then runs the job in a private
    folder that replaces --out only when the job has run to its end."""
    start = time.monotonic()
    out = check_flags()
    board = steps.load_board(_BOARD.value)
    steps.check_tools(board, _EMULATE.value)
    dataset = steps.load_dataset(_DATASET.value)
    with output_folder.transaction(out, carry=[steps.CONTRIBUTIONS_FILE]) as tx:
        return produce(board, dataset, tx, start)


# What a user can cause or fix; anything else is a bug and keeps its traceback.
USER_ERRORS = (
    steps.DeployError,
    output_folder.OutputFolderError,
    learning.SessionError,
    emulation.EmulationError,
    tflm_training.TflmTrainingError,
)


def main(argv):
    try:
        return steps.run_tool(deploy, argv, USER_ERRORS, log)
    except DeviceMismatchError as e:
        steps.fail(e, log)
        return 1


def run(argv):
    """deploy.py in-process: argv as on the command line (argv[0] the program
    name); returns the exit status."""
    return steps.run_in_process(main, argv)


if __name__ == "__main__":
    app.run(main, flags_parser=steps.exit_on_bad_flags)
