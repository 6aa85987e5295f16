"""Builds the runtime: the host shared library, or a board's firmware.

  python tools/build.py --host [--sanitize] [--emulate_dsp] [--gradient_bits 32|16]
  python tools/build.py --board nrf52840 [--model M.tflite --inputs I.npy --out DIR]
  python tools/build.py --board mps2_an386 --app training_app --model M.tflite \
      --plan P.bin --train TRAIN.npz [--test TEST.npz] [--epochs E]
  python tools/build.py --board nrf52840 --app learner_app --model M.tflite --plan P.bin

The firmware build prints flash/RAM use the way arduino-cli does and fails
when the firmware does not fit the board (limits from boards/<board>/board.json).
"""

import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from absl import app, flags

from tflm_training import host_build
from tools import board_config, firmware_build, learner_firmware, output_folder, training_firmware

_HOST = flags.DEFINE_bool("host", False, "Build the host shared library.")
_SANITIZE = flags.DEFINE_bool(
    "sanitize",
    False,
    f"With --host: an ASan+UBSan build, into {host_build.library_path(True).relative_to(REPO)}.",
)
_EMULATE_DSP = flags.DEFINE_bool(
    "emulate_dsp",
    False,
    "With --host: build the Cortex-M4 DSP kernel paths on C "
    "definitions of the DSP instructions (to test them on the host), into "
    f"{host_build.library_path(False, True).relative_to(REPO)}; use it by setting "
    "TFLM_TRAINING_LIBRARY to that path.",
)
_GRADIENT_BITS = flags.DEFINE_enum(
    "gradient_bits",
    None,
    ["32", "16"],
    "With --host: build only the runtime whose stored activation gradients have "
    "these bits (default: both, as installing the package does; 16 is the runtime "
    "that trains plans made with gradient_bits=16, in "
    f"{host_build.library_path(gradient_bits=16).relative_to(REPO)}). Firmware takes "
    "the plan's.",
)
_BOARD = flags.DEFINE_string(
    "board", None, f"Build firmware for this board ({', '.join(board_config.board_names())})."
)
_APP = flags.DEFINE_string(
    "app",
    firmware_build.APP,
    "With --board: the firmware app (boards/app/<app>.c); "
    "--inputs applies to the inference app; --plan, --train, --test, --epochs and "
    f"--dump_parameters to {training_firmware.APP}.",
)
_MODEL = flags.DEFINE_string(
    "model",
    None,
    f"The .tflite model to embed (default {firmware_build.DEFAULT_MODEL.relative_to(REPO)}).",
)
_INPUTS = flags.DEFINE_string(
    "inputs",
    None,
    "A .npy of inputs to embed: (N, *input shape), in the input's "
    f"dtype (default {firmware_build.DEFAULT_INPUTS.relative_to(REPO)}).",
)
_PLAN = flags.DEFINE_string(
    "plan",
    None,
    f"With --app {training_firmware.APP} or {learner_firmware.APP}: the "
    "training plan file "
    "(TrainingPlan.to_bytes()), or "
    f"{' or '.join(training_firmware.PLAN_PRESETS)} to make one from the model.",
)
_TRAIN = flags.DEFINE_string(
    "train",
    None,
    f"With --app {training_firmware.APP}: a .npz with `x` (quantized "
    "samples, the input's dtype) and `y` (integer labels) to train on, in order.",
)
_TEST = flags.DEFINE_string(
    "test",
    None,
    f"With --app {training_firmware.APP}: a .npz like --train to "
    "evaluate before and after training (default: the training samples).",
)
_EPOCHS = flags.DEFINE_integer(
    "epochs",
    1,
    f"With --app {training_firmware.APP}: passes over the training samples.",
    lower_bound=1,
)
_DUMP_PARAMETERS = flags.DEFINE_bool(
    "dump_parameters",
    False,
    f"With --app {training_firmware.APP}: report the "
    "trained weight and bias bytes (hex) besides their CRC-32.",
)
_OUT = flags.DEFINE_string(
    "out",
    None,
    "Output folder (default build/firmware/<board>, or "
    "build/firmware/<board>-<app> for other apps).",
)
_ARENA_BYTES = flags.DEFINE_integer(
    "arena_bytes",
    None,
    "Override the static arena size (default: exactly what the "
    "model needs, as measured by the host runtime).",
)
_HELDOUT_SAMPLES = flags.DEFINE_integer(
    "heldout_samples",
    learner_firmware.DEFAULT_HELDOUT_SAMPLES,
    f"With --app {learner_firmware.APP}: room for this many held-out samples.",
    lower_bound=0,
)
_VERBOSE = flags.DEFINE_bool("verbose", False, "Print compiler commands.")


def build_host():
    widths = host_build.GRADIENT_BITS if _GRADIENT_BITS.value is None else [_GRADIENT_BITS.value]
    for bits in widths:
        path = host_build.build_host(
            sanitize=_SANITIZE.value,
            verbose=_VERBOSE.value,
            emulate_dsp=_EMULATE_DSP.value,
            gradient_bits=int(bits),
        )
        print(f"built {path.relative_to(REPO)}")


def build_board():
    """Into --out as one transaction (output_folder) when it is given, else
    into the board's default folder under build/firmware."""
    if _OUT.value is None:
        firmware = build_app_into(None)
        paths = (firmware.elf, firmware.hex, firmware.bin)
    else:
        with output_folder.transaction(_OUT.value) as tx:
            firmware = build_app_into(tx.work)
            paths = [tx.final(p) for p in (firmware.elf, firmware.hex, firmware.bin)]
    print(firmware.report)
    for path in paths:
        print(f"built {path}")


def build_app_into(out_dir):
    if _APP.value == firmware_build.APP:
        return firmware_build.build_firmware(
            _BOARD.value,
            _MODEL.value,
            _INPUTS.value,
            out_dir=out_dir,
            arena_bytes=_ARENA_BYTES.value,
            verbose=_VERBOSE.value,
        )
    if _APP.value == training_firmware.APP:
        return training_firmware.build_from_files(
            _BOARD.value,
            _MODEL.value,
            _PLAN.value,
            _TRAIN.value,
            _TEST.value,
            out_dir=out_dir,
            epochs=_EPOCHS.value,
            dump_parameters=_DUMP_PARAMETERS.value,
            arena_bytes=_ARENA_BYTES.value,
            verbose=_VERBOSE.value,
        )
    if _APP.value == learner_firmware.APP:
        if _MODEL.value is None or _PLAN.value is None:
            raise firmware_build.BuildError(
                f"--app {learner_firmware.APP} needs --model and --plan"
            )
        model = pathlib.Path(_MODEL.value)
        if not model.is_file():
            raise firmware_build.BuildError(f"model file {model} does not exist")
        return learner_firmware.build_learner_firmware(
            _BOARD.value,
            model.read_bytes(),
            _PLAN.value,
            out_dir=out_dir,
            heldout_samples=_HELDOUT_SAMPLES.value,
            verbose=_VERBOSE.value,
        )[0]
    return firmware_build.build_app(
        _BOARD.value, _APP.value, out_dir=out_dir, verbose=_VERBOSE.value
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _HOST.value == bool(_BOARD.value):
        raise app.UsageError("pass exactly one of --host or --board")
    try:
        if _HOST.value:
            build_host()
        else:
            build_board()
    except firmware_build.OverLimitError as e:
        print(e.report)
        print(f"error: {output_folder.with_notes(str(e), e)}", file=sys.stderr)
        return 1
    except (
        host_build.BuildError,
        firmware_build.BuildError,
        board_config.BoardError,
        output_folder.OutputFolderError,
    ) as e:
        print(f"error: {output_folder.with_notes(str(e), e)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    app.run(main)
