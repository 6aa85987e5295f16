"""Runs firmware in QEMU and collects its console events.

QEMU runs with -icount (every guest instruction takes the same virtual
time, so runs are deterministic) and semihosting routed to stdout; the
firmware's exit status (SYS_EXIT_EXTENDED) becomes QEMU's exit code.
"""

import dataclasses
import json
import pathlib
import queue
import shutil
import subprocess
import threading
import time

from tools import board_config, firmware_console

QEMU = "qemu-system-arm"
QEMU_HINT = "On Debian/Ubuntu install it with: sudo apt-get install qemu-system-arm"
TIMED_OUT_STATUS = 124  # as timeout(1) reports it


class EmulationError(RuntimeError):
    pass


@dataclasses.dataclass
class EmulationResult:
    status: int  # the firmware's exit status; TIMED_OUT_STATUS on timeout
    qemu_returncode: int
    timed_out: bool
    log: firmware_console.ConsoleLog
    stderr: str
    note: str = ""  # why status is not the firmware's own, when it is not


def resolve_board(name):
    """(board to run, note): a board without an emulator maps to its emulator."""
    board = board_config.emulator_board(name)
    note = ""
    if board.name != name:
        note = (
            f"{name} has no emulator of its own; running {board.name}, which "
            f"emulates its memory layout and limits"
        )
    return board, note


def check_elf(elf, board):
    elf = pathlib.Path(elf)
    if not elf.is_file():
        raise EmulationError(
            f"firmware {elf} does not exist; build it with "
            f"`python tools/build.py --board {board.name}`"
        )
    summary = elf.parent / "build.json"
    if summary.is_file():
        built_for = json.loads(summary.read_text()).get("board")
        if built_for and built_for != board.name:
            raise EmulationError(
                f"{elf} was built for {built_for}, whose console and exit drivers do not "
                f"exist in QEMU; build it with `python tools/build.py --board {board.name}`"
            )


def qemu_command(board, elf):
    qemu = board.qemu
    console = board.part("console")["kind"]
    if console != "semihosting" or board.part("exit")["kind"] != "semihosting":
        raise EmulationError(
            f"board {board.name}: emulation needs the semihosting console and exit drivers"
        )
    return [
        QEMU,
        "-M",
        qemu["machine"],
        "-kernel",
        str(elf),
        "-icount",
        f"shift={int(qemu['icount_shift'])}",
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        "none",
        "-chardev",
        "stdio,id=console",
        "-semihosting-config",
        "enable=on,target=native,chardev=console",
    ]


def _pump(stream, lines):
    for line in iter(stream.readline, ""):
        lines.put(line)
    lines.put(None)


def run_firmware(elf, board_name="mps2_an386", timeout=60.0, echo=None):
    """Runs `elf` to its exit or for `timeout` seconds.

    echo: called with each output line as it arrives (e.g. print), or None.
    """
    if shutil.which(QEMU) is None:
        raise EmulationError(f"{QEMU} not found on PATH. {QEMU_HINT}")
    board, note = resolve_board(board_name)
    check_elf(elf, board)
    process = subprocess.Popen(
        qemu_command(board, elf),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
    )
    lines = queue.Queue()
    stderr_chunks = []
    threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True).start()
    stderr_thread = threading.Thread(
        target=lambda: stderr_chunks.append(process.stderr.read()), daemon=True
    )
    stderr_thread.start()

    log = firmware_console.ConsoleLog()
    deadline = time.monotonic() + timeout
    timed_out = False
    try:
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                timed_out = True
                break
            if line is None:
                break
            if echo is not None:
                echo(line.rstrip("\n"))
            log.feed(line)
    finally:
        if process.poll() is None:
            process.kill()
    returncode = process.wait()
    stderr_thread.join(timeout=5)
    stderr = "".join(stderr_chunks)

    if timed_out:
        status = TIMED_OUT_STATUS
        note = _join(note, f"timed out after {timeout:g} s")
    elif log.exit_status is None:
        status = returncode if returncode != 0 else 1
        note = _join(
            note,
            f"the firmware reported no exit event; QEMU exited with "
            f"{returncode}: {stderr.strip()[-500:]}",
        )
    else:
        status = log.exit_status
        if status != returncode:
            note = _join(note, f"QEMU exited with {returncode}, not the firmware's {status}")
    return EmulationResult(status, returncode, timed_out, log, stderr, note)


def _join(a, b):
    return f"{a}; {b}" if a else b
