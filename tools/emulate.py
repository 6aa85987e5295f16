"""Runs firmware in QEMU, streaming its console; exits with the firmware's
exit status.

  python tools/emulate.py [--board nrf52840]   # builds the default firmware, then runs it
  python tools/emulate.py [--board mps2_an386] [--elf build/firmware/mps2_an386/firmware.elf]
  python tools/emulate.py --app training_app   # build/firmware/mps2_an386-training_app

mps2_an386 is the one emulated board; --board nrf52840 runs it (it carries
the nRF52840's memory layout and limits). Instructions are counted exactly
with QEMU's -icount (boards/README.md).
"""
import json
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from tools import board_config
from tools import emulation
from tools import firmware_build
from tools import training_firmware

_BOARD = flags.DEFINE_string("board", "mps2_an386", "Board to emulate.")
_APP = flags.DEFINE_string(
    "app", firmware_build.APP, "The app the default --elf was built with.")
_ELF = flags.DEFINE_string(
    "elf", None, "Firmware ELF (default build/firmware/<emulated board>/firmware.elf, "
    "or build/firmware/<emulated board>-<app>/firmware.elf for other apps).")
_TIMEOUT = flags.DEFINE_float("timeout", 60.0, "Seconds before QEMU is stopped.")
_QUIET = flags.DEFINE_bool("quiet", False, "Do not echo the console.")
_EVENTS_OUT = flags.DEFINE_string(
    "events_out", None, "Write the parsed events to this JSON file.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        board, note = emulation.resolve_board(_BOARD.value)
        if note:
            print(f"note: {note}", file=sys.stderr)
        elf = _ELF.value
        if elf is None and _APP.value == firmware_build.APP:
            # The default demo always runs the current sources (the build
            # is cached, so this costs little when nothing changed).
            firmware = firmware_build.build_firmware(board.name)
            print(firmware.report, file=sys.stderr)
            elf = firmware.elf
        elif elf is None:
            elf = firmware_build.default_out_dir(board.name, _APP.value) / "firmware.elf"
        result = emulation.run_firmware(
            elf, board.name, timeout=_TIMEOUT.value,
            echo=None if _QUIET.value else lambda line: print(line, flush=True))
    except (emulation.EmulationError, board_config.BoardError,
            firmware_build.BuildError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if _EVENTS_OUT.value:
        pathlib.Path(_EVENTS_OUT.value).write_text(json.dumps(result.log.events, indent=1))
    if result.status == 0 and result.log.named("training_init"):
        print(training_firmware.TrainingRun.from_log(result.log).summary(), file=sys.stderr)
    if result.note:
        print(f"note: {result.note}", file=sys.stderr)
    print(f"firmware exit status {result.status}", file=sys.stderr)
    return result.status


if __name__ == "__main__":
    app.run(main)
