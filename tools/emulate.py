"""Runs firmware in QEMU, streaming its console; exits with the firmware's
exit status. With --emulator renode, writes Renode scripts for the
nRF52840 image itself (tools/renode.py) and runs them with renode-test.

  python tools/emulate.py [--board nrf52840]   # builds the default firmware, then runs it
  python tools/emulate.py [--board mps2_an386] [--elf build/firmware/mps2_an386/firmware.elf]
  python tools/emulate.py --app training_app   # build/firmware/mps2_an386-training_app

mps2_an386 is the one emulated board; --board nrf52840 runs it (it carries
the nRF52840's memory layout and limits). Instructions are counted exactly
with QEMU's -icount (boards/README.md).

  python tools/emulate.py --emulator renode [--renode_scripts_only]
      # builds the nrf52840 image and, as the reference, the mps2_an386 one;
      # the Renode run must print the lines QEMU's run printed
  python tools/emulate.py --emulator renode --elf E.elf --expect_events Q.json
      # Q.json: `--events_out` of a QEMU run of the same model and inputs
  python tools/emulate.py --emulator renode --elf build/.../learner_app/firmware.elf
      # the learner; its UART on TCP --learner_port for learn.py --port socket://...
"""

import json
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from absl import app, flags

from tools import board_config, deploy_steps, emulation, firmware_build, renode, training_firmware

_BOARD = flags.DEFINE_string("board", "mps2_an386", "Board to emulate.")
_APP = flags.DEFINE_string("app", firmware_build.APP, "The app the default --elf was built with.")
_ELF = flags.DEFINE_string(
    "elf",
    None,
    "Firmware ELF (default build/firmware/<emulated board>/firmware.elf, "
    "or build/firmware/<emulated board>-<app>/firmware.elf for other apps).",
)
_TIMEOUT = flags.DEFINE_float("timeout", 60.0, "Seconds before QEMU is stopped.")
_QUIET = flags.DEFINE_bool("quiet", False, "Do not echo the console.")
_EVENTS_OUT = flags.DEFINE_string("events_out", None, "Write the parsed events to this JSON file.")
_EMULATOR = flags.DEFINE_enum(
    "emulator",
    "qemu",
    ["qemu", "renode"],
    "qemu: the emulator board (mps2_an386); "
    "renode: the nrf52840 image itself under Renode (default --board nrf52840).",
)
_SCRIPTS_ONLY = flags.DEFINE_bool(
    "renode_scripts_only", False, "Renode: write the .resc/.robot scripts, do not run them."
)
_RENODE_OUT = flags.DEFINE_string(
    "renode_out",
    None,
    "Renode: folder of the scripts and results (default build/renode/<the ELF's folder name>).",
)
_EXPECT_EVENTS = flags.DEFINE_string(
    "expect_events",
    None,
    "Renode: the events (--events_out of a QEMU run of the same "
    "model and inputs) whose lines the firmware must print; without it and without "
    "--elf the reference is run here.",
)
_LEARNER_PORT = flags.DEFINE_integer(
    "learner_port",
    renode.DEFAULT_LEARNER_PORT,
    "Renode: TCP port of the learner firmware's UART.",
    lower_bound=1,
    upper_bound=65535,
)


def log(message):
    print(message, file=sys.stderr, flush=True)


def reference_events(board):
    """The events of QEMU's run of the default firmware on the board that
    emulates `board`: what the Renode run must print."""
    emulator, _ = emulation.resolve_board(board.name)
    firmware = firmware_build.build_firmware(emulator.name)
    result = emulation.run_firmware(firmware.elf, emulator.name, timeout=_TIMEOUT.value)
    if result.timed_out or result.log.exit_status is None:
        raise emulation.EmulationError(f"the reference run in QEMU failed: {result.note}")
    log(
        f"reference: {len(result.log.events)} console lines from QEMU's {emulator.name} "
        f"run (exit status {result.status})"
    )
    return result.log.events


def run_renode():
    board = board_config.load_board(_BOARD.value if _BOARD.present else renode.DEFAULT_BOARD)
    renode.platform_of(board)
    elf = _ELF.value
    learner = _APP.value == renode.LEARNER_APP or (
        elf is not None and renode.built_app(elf) == renode.LEARNER_APP
    )
    if not _SCRIPTS_ONLY.value:  # before any build
        renode.find(renode.RENODE if learner else renode.RENODE_TEST)
    events = renode.load_events(_EXPECT_EVENTS.value) if _EXPECT_EVENTS.value else None
    if elf is None and _APP.value == firmware_build.APP:
        firmware = firmware_build.build_firmware(board.name)
        log(firmware.report)
        elf = firmware.elf
        if events is None:
            events = reference_events(board)
    elif elf is None:
        elf = firmware_build.default_out_dir(board.name, _APP.value) / "firmware.elf"
    renode.check_elf(elf, board)
    expectations = None
    if events is not None:
        expectations = renode.expectations_from_events(events, board)
    elif not learner:
        log("note: without --expect_events only the exit line is expected")
    out = pathlib.Path(
        _RENODE_OUT.value or REPO / "build" / "renode" / pathlib.Path(elf).resolve().parent.name
    )
    scripts = renode.write_scripts(
        out, elf, board, expectations, port=_LEARNER_PORT.value, timeout_s=_TIMEOUT.value
    )
    for path in (scripts.resc, scripts.robot):
        if path is not None:
            log(f"wrote {path}")
    if scripts.robot is None:
        log(
            f"the learner's UART will be on TCP port {scripts.port}: python tools/learn.py "
            f"--model M.tflite --plan P.bin --port socket://localhost:{scripts.port}"
        )
    if _SCRIPTS_ONLY.value:
        log(
            f"run: {renode.RENODE} {scripts.resc}"
            if scripts.robot is None
            else f"run: {renode.RENODE_TEST} {scripts.robot}   (or {renode.RENODE} {scripts.resc})"
        )
        return 0
    if scripts.robot is None:
        return subprocess.call(renode.renode_command(scripts.resc))
    returncode = subprocess.call(renode.robot_command(scripts.robot, out / "results"))
    log(
        f"renode-test: {'every expected line appeared' if returncode == 0 else 'FAILED'} "
        f"(results in {out / 'results'})"
    )
    return 0 if returncode == 0 else 1


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _EMULATOR.value == "renode":
        try:
            return run_renode()
        except (
            renode.RenodeError,
            emulation.EmulationError,
            board_config.BoardError,
            firmware_build.BuildError,
        ) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
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
            elf,
            board.name,
            timeout=_TIMEOUT.value,
            echo=None if _QUIET.value else lambda line: print(line, flush=True),
        )
    except (emulation.EmulationError, board_config.BoardError, firmware_build.BuildError) as e:
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
    app.run(main, flags_parser=deploy_steps.exit_on_bad_flags)
