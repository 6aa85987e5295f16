"""Streams a dataset to a learner device that trains on it, keeps what it
learned in flash, and gives the adapted model back.

  python tools/learn.py --model M.tflite --plan P.bin --dataset fsdd
  python tools/learn.py --model M.tflite --plan P.bin --dataset D.npz --port /dev/ttyACM0

Without --port the device is the learner firmware in QEMU (built for the
model and plan unless --elf names one), its flash kept in --out/flash.bin
across runs. Every step's loss and the final parameters are checked bit
for bit against the host Trainer fed the same stream; the adapted model is
written as --out/trained_device.tflite, a standard .tflite, and the
session's numbers as --out/learn.json. --out is replaced whole when the
session has run to its end (flash.bin carried over from the last run), and
left as it was when it fails (tools/output_folder.py).
"""

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
from tools import deploy_steps as steps
from tools import (
    emulation,
    firmware_build,
    learner_firmware,
    learning,
    output_folder,
    training_firmware,
)

_MODEL = flags.DEFINE_string("model", None, "The int8 .tflite the device trains.")
_PLAN = flags.DEFINE_string(
    "plan",
    "classifier_only",
    f"A plan file (plan.bin, e.g. from deploy.py) or {' / '.join(training_firmware.PLAN_PRESETS)}.",
)
_DATASET = flags.DEFINE_string(
    "dataset",
    "fsdd",
    f"A built-in dataset ({', '.join(steps.DATASETS)}) or an .npz with "
    "x_train, y_train, x_test, y_test.",
)
_TRAIN_SAMPLES = flags.DEFINE_integer(
    "train_samples", 300, "Samples streamed per epoch.", lower_bound=1
)
_TEST_SAMPLES = flags.DEFINE_integer(
    "test_samples", 100, "Samples evaluated before and after.", lower_bound=0
)
_HELDOUT_SAMPLES = flags.DEFINE_integer(
    "heldout_samples",
    learner_firmware.DEFAULT_HELDOUT_SAMPLES,
    "Training-set samples (not trained on) the device keeps for guarded saves.",
    lower_bound=0,
)
_EPOCHS = flags.DEFINE_integer("epochs", 2, "Passes over the streamed samples.", lower_bound=1)
_SAVE_EVERY = flags.DEFINE_integer(
    "save_every", 0, "Save every N steps (0: once, at the end).", lower_bound=0
)
_GUARD = flags.DEFINE_enum(
    "guard",
    "none",
    list(learning.GUARDS),
    "A save must not lower held-out "
    "accuracy (by more than --max_drop samples) / let the held-out "
    "loss diverge; otherwise the device rolls back.",
)
_MAX_DROP = flags.DEFINE_integer(
    "max_drop", 0, "Held-out samples a guarded save may lose.", lower_bound=0
)
_PORT = flags.DEFINE_string(
    "port",
    None,
    "A board's serial port (e.g. /dev/ttyACM0) running "
    "the learner firmware, or socket://HOST:PORT (the learner under "
    "Renode, tools/renode.py); without it the device is emulated.",
)
_BAUDRATE = flags.DEFINE_integer("baudrate", 115200, "With --port.", lower_bound=1)
_ELF = flags.DEFINE_string(
    "elf", None, "Emulation: learner firmware to run (default: build it for --model and --plan)."
)
_FACTORY_RESET = flags.DEFINE_bool(
    "factory_reset",
    False,
    "Start from the model's own weights (erases the device's learned state).",
)
_POWER_CYCLE = flags.DEFINE_bool(
    "power_cycle", True, "Emulation: power-cycle after the last save and check the state came back."
)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the sample subsets and their order.")
_TIMEOUT = flags.DEFINE_float("timeout", 60.0, "Seconds to wait for one answer.")
_ATOMIC_STEPS = flags.DEFINE_enum(
    "atomic_steps",
    "auto",
    ["auto", "on", "off"],
    "Emulation: give the learner firmware an "
    "undo buffer so a diverged training step changes nothing (auto: when it fits the "
    "board); without one a diverged step sends the device back to its saved state.",
)
_MAX_SATURATION = flags.DEFINE_float(
    "max_saturation",
    saturation.DEFAULT_LIMIT,
    "Fail when training pinned more than this "
    "share of a layer's trained weights or biases at their integer limits; 1 never fails.",
)
_OUT = flags.DEFINE_string("out", "build/learn", "Output folder.")


def log(message):
    print(message, flush=True)


def split_stream(samples, heldout):
    """The last `heldout` of the (shuffled) training samples stay out of training."""
    keep = len(samples.train_y) - heldout
    return learning.Stream(
        samples.train_x[:keep],
        samples.train_y[:keep],
        samples.test_x,
        samples.test_y,
        samples.train_x[keep:],
        samples.train_y[keep:],
    )


def check_flags():
    """Every flag, before any work; returns --out as an absolute path."""
    steps.check_positive("timeout", _TIMEOUT.value)
    steps.check_seed(_SEED.value)
    steps.check_share("max_saturation", _MAX_SATURATION.value)
    if _MODEL.value is None:
        raise learning.SessionError("give the model with --model (the .tflite the device runs)")
    for flag, path in (("--model", _MODEL.value), ("--elf", _ELF.value)):
        if path is not None and not pathlib.Path(path).is_file():
            raise learning.SessionError(f"{flag} {path} does not exist")
    out = output_folder.check(_OUT.value)
    plan_file = None if _PLAN.value in training_firmware.PLAN_PRESETS else _PLAN.value
    dataset_file = None if _DATASET.value in steps.DATASETS else _DATASET.value
    output_folder.check_inputs_outside(
        out,
        {
            "--model": _MODEL.value,
            "--plan": plan_file,
            "--dataset": dataset_file,
            "--elf": _ELF.value,
        },
    )
    return out


def load_plan(model):
    """--plan's bytes, checked against the model."""
    try:
        plan = training_firmware.resolve_plan(_PLAN.value, model)
        tflm_training.TrainingPlan.from_bytes(plan).check_model(model)
    except firmware_build.BuildError as e:
        raise learning.SessionError(str(e)) from None
    except tflm_training.TflmTrainingError as e:
        raise learning.SessionError(
            f"--plan {_PLAN.value} cannot train --model {_MODEL.value}: {e}"
        ) from None
    return plan


def load_stream(model):
    """The dataset checked against the model: the stream of samples."""
    info = steps.model_input(model)
    steps.check_learner_input(info)
    samples = steps.prepare_samples(
        steps.load_dataset(_DATASET.value),
        info,
        _TRAIN_SAMPLES.value + _HELDOUT_SAMPLES.value,
        max(_TEST_SAMPLES.value, 1),
        _SEED.value,
    )
    stream = split_stream(samples, _HELDOUT_SAMPLES.value)
    if _TEST_SAMPLES.value == 0:
        stream.test_x, stream.test_y = stream.test_x[:0], stream.test_y[:0]
    return stream


def learn():
    """Checks every input before any work, then runs the session in a
    private folder that replaces --out when it has run to its end (the
    emulated device's flash.bin is carried over from the last run)."""
    start = time.monotonic()
    out = check_flags()
    model = pathlib.Path(_MODEL.value).read_bytes()
    stream = load_stream(model)
    plan = load_plan(model)
    with output_folder.transaction(out, carry=["flash.bin"]) as tx:
        return run_session(model, plan, stream, tx, start)


def run_session(model, plan, stream, tx, start):
    elf = _ELF.value
    if _PORT.value is None and elf is None:
        log("building the learner firmware (emulated nrf52840) ...")
        firmware, _ = learner_firmware.build_learner_firmware(
            "mps2_an386",
            model,
            plan,
            tx.work / "firmware",
            heldout_samples=max(_HELDOUT_SAMPLES.value, 1),
            atomic_steps={"auto": "auto", "on": True, "off": False}[_ATOMIC_STEPS.value],
        )
        elf = firmware.elf
    device = learning.Device(
        elf=elf,
        flash_path=tx.work / "flash.bin",
        port=_PORT.value,
        baudrate=_BAUDRATE.value,
        timeout=_TIMEOUT.value,
    )
    try:
        session = learning.Session(device, model, plan, log)
        settings = learning.JobSettings(
            epochs=_EPOCHS.value,
            save_every=_SAVE_EVERY.value,
            guard=learning.GUARDS[_GUARD.value],
            max_drop=_MAX_DROP.value,
            power_cycle=_POWER_CYCLE.value,
            factory_reset=_FACTORY_RESET.value,
        )
        report = learning.run_job(session, stream, settings, tx.work, log)
    finally:
        device.close()
    report["wall_seconds"] = time.monotonic() - start
    report["trained_device_tflite"] = str(tx.final(report["trained_device_tflite"]))
    (tx.work / "learn.json").write_text(json.dumps(report, indent=2) + "\n")
    before, after = report["before"], report["after"]
    if before["accuracy"] is not None:
        log(
            f"device accuracy {before['accuracy']:.3f} -> {after['accuracy']:.3f} on "
            f"{len(stream.test_y)} test samples"
        )
    log(
        f"{report['samples_per_second']:.1f} samples/s; device == host bit for bit: "
        f"{'yes' if report['bit_identical'] else 'NO'}"
    )
    for mismatch in report["mismatches"]:
        log(f"  mismatch: {mismatch}")
    learning.check_saturation(report["saturation"], _MAX_SATURATION.value, log)
    log(f"wrote {report['trained_device_tflite']} and {tx.out / 'learn.json'}")
    return 0 if report["bit_identical"] else 1


# What a user can cause or fix; anything else is a bug and keeps its traceback.
USER_ERRORS = (
    learning.SessionError,
    steps.DeployError,
    output_folder.OutputFolderError,
    firmware_build.BuildError,
    emulation.EmulationError,
    tflm_training.TflmTrainingError,
)


def main(argv):
    return steps.run_tool(learn, argv, USER_ERRORS, log)


def run(argv):
    """learn.py in-process: argv as on the command line (argv[0] the program
    name); returns the exit status."""
    return steps.run_in_process(main, argv)


if __name__ == "__main__":
    app.run(main, flags_parser=steps.exit_on_bad_flags)
