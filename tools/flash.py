"""Builds a board's firmware and flashes it the way that board is flashed.

  python tools/flash.py --board nrf52840dk            # pyocd, through the DK's J-Link
  python tools/flash.py --board arduino_nano33ble     # bossac, through the Arduino bootloader
  python tools/flash.py --board feather_nrf52840      # firmware.uf2 onto FTHR840BOOT
  python tools/flash.py --board xiao_nrf52840 --dry_run
  python tools/flash.py --board nrf52840dk --firmware build/firmware/nrf52840dk

The build takes tools/build.py's flags (--app, --model, --inputs, --plan, ...,
--out); --firmware flashes a folder that build already made instead.
boards/<board>/board.json's "flash_tool" says how: "pyocd" (hex through a
debug probe), "bossac" (the .bin through a SAM-BA bootloader's serial port)
or "uf2" (tools/uf2.py's file copied to the bootloader's USB drive).
--dry_run prints the commands and the copy and touches no device.
"""

import json
import os
import pathlib
import re
import shlex
import shutil
import struct
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from absl import app, flags

from tflm_training import host_build
from tools import board_config, build, firmware_build, output_folder, uf2

# tools/build.py's flags build the firmware; these show in --help (its
# --host and the host library's flags do not apply here).
for _name in (
    "board",
    "app",
    "model",
    "inputs",
    "plan",
    "train",
    "test",
    "epochs",
    "dump_parameters",
    "out",
    "arena_bytes",
    "heldout_samples",
    "verbose",
):
    flags.declare_key_flag(_name)
_DRY_RUN = flags.DEFINE_bool(
    "dry_run",
    False,
    "Build (unless --firmware), then print the flashing commands "
    "instead of running them; no probe, port or drive is touched.",
)
_FIRMWARE = flags.DEFINE_string(
    "firmware",
    None,
    "A folder tools/build.py made for --board (firmware.elf, .hex, "
    ".bin, build.json): flash it without building.",
)
_PORT = flags.DEFINE_string(
    "port",
    None,
    "bossac boards: the bootloader's serial port (default: the one USB port with the board's IDs).",
)
_DRIVE = flags.DEFINE_string(
    "drive",
    None,
    "uf2 boards: where the bootloader's drive is mounted (default: "
    "the mounted drive whose INFO_UF2.TXT names the board).",
)
_PROBE = flags.DEFINE_string(
    "probe",
    None,
    "pyocd boards: the debug probe's unique ID (default: pyocd's choice when one is connected).",
)

FLAGS = flags.FLAGS
IMAGES = ("firmware.elf", "firmware.hex", "firmware.bin")
UF2_NAME = "firmware.uf2"
BOOTLOADER_WAIT_S = 10
PYOCD_LIST_TIMEOUT_S = 60
PYOCD_HINT = (
    "pip install pyocd (a J-Link probe, as on the nRF52840-DK, also needs "
    "SEGGER's J-Link Software and Documentation Pack)"
)
BOSSAC_HINT = (
    "install Arduino's bossac 1.9.1-arduino2 or later, which knows the nRF52840: "
    "arduino-cli core install arduino:mbed_nano puts it under "
    "~/.arduino15/packages/arduino/tools/bossac/ (found there on its own), or "
    "get it from https://github.com/arduino/BOSSA/releases and put it on PATH"
)
# Where the Arduino IDE and arduino-cli install their tools.
ARDUINO15 = (
    pathlib.Path.home() / ".arduino15",
    pathlib.Path.home() / "Library" / "Arduino15",
    pathlib.Path(os.environ.get("LOCALAPPDATA", "/nonexistent")) / "Arduino15",
)


class FlashError(RuntimeError):
    """Something to fix before flashing (exit status 2)."""


class ToolFailed(RuntimeError):
    """The flashing program ran and failed (exit status 1)."""


def pin_name(pin):
    return f"P{pin // 32}.{pin % 32:02d}"


def flash_tool(board):
    if board.qemu:
        raise FlashError(
            f"board {board.name} is QEMU's machine, nothing to flash: run its "
            "firmware with tools/emulate.py"
        )
    tool = board.data.get("flash_tool")
    if not isinstance(tool, dict):
        raise FlashError(f'boards/{board.name}/board.json has no "flash_tool" object')
    if tool.get("tool") not in FLASHERS:
        raise FlashError(
            f'boards/{board.name}/board.json: flash_tool "{tool.get("tool")}" '
            f"is not one of {', '.join(sorted(FLASHERS))}"
        )
    return tool


def vector_table_problem(image, board):
    """None when the image's first two words are an initial stack pointer
    in the board's RAM and a Thumb reset address inside the image."""
    if len(image) < 8:
        return f"the image has {len(image)} bytes, too few for a vector table"
    stack, reset = struct.unpack_from("<II", image)
    flash, ram = board.flash, board.ram
    if not ram.origin < stack <= ram.end:
        return (
            f"its initial stack pointer {stack:#010x} is outside RAM {ram.origin:#x}..{ram.end:#x}"
        )
    if not reset & 1 or not flash.origin <= reset - 1 < flash.origin + len(image):
        return (
            f"its reset vector {reset:#010x} is not a Thumb address inside the image "
            f"at {flash.origin:#x}..{flash.origin + len(image):#x}"
        )
    return None


def firmware_folder(board):
    """The build's folder: --firmware, else a fresh build (tools/build.py)."""
    if _FIRMWARE.value is None:
        build.build_board()
        folder = pathlib.Path(FLAGS.out or firmware_build.default_out_dir(board.name, FLAGS.app))
    else:
        folder = pathlib.Path(_FIRMWARE.value)
        missing = [n for n in (*IMAGES, "build.json") if not (folder / n).is_file()]
        if missing:
            raise FlashError(
                f"--firmware {folder} lacks {', '.join(missing)}: give a folder "
                f"that tools/build.py --board {board.name} made"
            )
        try:
            built_for = json.loads((folder / "build.json").read_text()).get("board")
        except (json.JSONDecodeError, AttributeError):
            raise FlashError(
                f"--firmware {folder}: build.json is not tools/build.py's; rebuild the folder"
            ) from None
        if built_for != board.name:
            raise FlashError(
                f"--firmware {folder} was built for board {built_for}, not "
                f"{board.name}: rebuild with tools/build.py --board {board.name}"
            )
    problem = vector_table_problem((folder / "firmware.bin").read_bytes(), board)
    if problem:
        raise FlashError(
            f"{folder / 'firmware.bin'} is not an image for {board.name} at "
            f"{board.flash.origin:#x}: {problem}; rebuild it"
        )
    return folder.resolve()


def show(command):
    print(f"$ {shlex.join(map(str, command))}", flush=True)


def run(command):
    show(command)
    result = subprocess.run(list(map(str, command)), check=False)
    if result.returncode != 0:
        raise ToolFailed(f"{command[0]} failed (exit status {result.returncode})")


# ---------------------------------------------------------------- pyocd


def pyocd_command(tool, folder):
    command = ["pyocd", "flash", "--target", tool.get("target", "nrf52840")]
    if _PROBE.value:
        command += ["--uid", _PROBE.value]
    return command + [folder / "firmware.hex"]


def flash_pyocd(board, tool, folder, dry_run):
    command = pyocd_command(tool, folder)
    if dry_run:
        show(command)
        return
    try:
        listing = subprocess.run(
            ["pyocd", "list"],
            capture_output=True,
            text=True,
            check=False,
            timeout=PYOCD_LIST_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise FlashError(
            f"pyocd list did not answer within {PYOCD_LIST_TIMEOUT_S} s: "
            "unplug the probe, plug it in again and retry"
        ) from None
    if listing.returncode != 0 or "No available debug probes" in listing.stdout + listing.stderr:
        raise FlashError(
            f"pyocd finds no debug probe: connect the {board.name}'s J-Link USB "
            "port (the nRF52840-DK's J2, the interface MCU) and switch the board "
            "on; a J-Link also needs SEGGER's J-Link software installed"
        )
    run(command)


# ---------------------------------------------------------------- bossac


def _version_key(path):
    return [int(n) for n in re.findall(r"\d+", path.parent.name)]


def find_bossac():
    """Arduino's bossac: the newest under an Arduino15 tools folder, else PATH."""
    found = [
        p
        for root in ARDUINO15
        for p in (root / "packages" / "arduino" / "tools" / "bossac").glob("*/bossac*")
        if p.is_file() and p.stem == "bossac" and "arduino" in p.parent.name
    ]
    if found:
        return max(found, key=_version_key)
    on_path = shutil.which("bossac")
    return pathlib.Path(on_path) if on_path else None


def _number(text):
    return int(str(text), 0)


def board_ports(tool):
    """Serial ports whose USB IDs are the board's: [(device, pid)]."""
    try:
        from serial.tools import list_ports
    except ImportError:
        raise FlashError("pyserial is not installed: pip install pyserial") from None
    vid = _number(tool["usb_vid"])
    pids = {_number(p) for p in tool.get("usb_pids", [])}
    return [
        (port.device, port.pid)
        for port in list_ports.comports()
        if port.vid == vid and (not pids or port.pid in pids)
    ]


def bootloader_port(board, tool):
    """The bootloader's port: --port, else the one port with the board's
    USB IDs, after a 1200-baud touch that restarts a running sketch into
    the bootloader (as the Arduino IDE does)."""
    if _PORT.value:
        return _PORT.value
    ports = board_ports(tool)
    ids = f"USB {_number(tool['usb_vid']):04x}:" + "/".join(
        f"{_number(p):04x}" for p in tool.get("usb_pids", [])
    )
    if not ports:
        raise FlashError(
            f"no serial port of a {board.name} ({ids}) is connected: plug it in "
            "by USB and double-tap its reset button (the orange LED pulses: "
            "the bootloader is running), then run this again; or give --port"
        )
    if len(ports) > 1:
        raise FlashError(
            f"{len(ports)} ports look like a {board.name} "
            f"({', '.join(d for d, _ in ports)}): choose one with --port"
        )
    device, pid = ports[0]
    wanted = tool.get("bootloader_usb_pid")
    wanted = None if wanted is None else _number(wanted)
    if not tool.get("touch_1200bps") or pid == wanted:
        return device
    touch_1200bps(device)
    deadline = time.monotonic() + BOOTLOADER_WAIT_S
    while time.monotonic() < deadline:
        time.sleep(0.5)
        ports = [d for d, p in board_ports(tool) if wanted is None or p == wanted]
        if len(ports) == 1:
            return ports[0]
    raise FlashError(
        f"the {board.name}'s bootloader port did not appear within "
        f"{BOOTLOADER_WAIT_S} s of a 1200-baud touch on {device}: double-tap "
        "its reset button and run this again"
    )


def touch_1200bps(device):
    """Opening the sketch's port at 1200 baud and dropping DTR restarts
    an Arduino sketch into its bootloader."""
    import serial

    print(f"# 1200-baud touch on {device}: the sketch restarts into the bootloader", flush=True)
    try:
        with serial.Serial(device, 1200) as port:
            port.dtr = False
    except (serial.SerialException, OSError) as e:
        raise FlashError(
            f"cannot open {device}: {e} (on Linux, join the dialout group: "
            "sudo usermod -aG dialout $USER, then log in again)"
        ) from None


def bossac_command(bossac, port, folder):
    # ArduinoCore-mbed platform.txt's upload pattern: -U native USB, -i
    # info, -e erase, -w write, -R reset. The bootloader places the .bin at
    # the app offset (0x10000) itself, so no --offset.
    return [bossac, f"--port={port}", "-U", "-i", "-e", "-w", folder / "firmware.bin", "-R"]


def flash_bossac(board, tool, folder, dry_run):
    bossac = find_bossac()
    if dry_run:
        port = _PORT.value or "<port>"
        if tool.get("touch_1200bps") and not _PORT.value:
            print(
                f"# the port is the {board.name}'s (USB {tool['usb_vid']}), found when "
                "flashing; a running sketch gets a 1200-baud touch first",
                flush=True,
            )
        if bossac is None:
            print(f"# bossac is not installed: {BOSSAC_HINT}", flush=True)
        show(bossac_command(bossac or "bossac", port, folder))
        return
    if bossac is None:
        raise FlashError(f"bossac is not installed: {BOSSAC_HINT}")
    run(bossac_command(bossac, bootloader_port(board, tool), folder))


# ---------------------------------------------------------------- uf2


def read_info(drive):
    """INFO_UF2.TXT's "Key: value" lines."""
    info = {}
    try:
        text = (drive / "INFO_UF2.TXT").read_text(errors="replace")
    except OSError:
        return info
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info[key.strip()] = value.strip()
    return info


def mounted_dirs():
    """Mount points (Linux /proc/mounts) and the usual removable-drive
    folders of Linux, macOS and Windows."""
    dirs = []
    mounts = pathlib.Path("/proc/mounts")
    if mounts.is_file():
        for line in mounts.read_text().splitlines():
            fields = line.split()
            if len(fields) > 1:
                dirs.append(pathlib.Path(fields[1].replace("\\040", " ")))
    user = os.environ.get("USER", "")
    for parent in ("/Volumes", f"/media/{user}", f"/run/media/{user}", "/media", "/mnt"):
        if os.path.isdir(parent):
            dirs += sorted(pathlib.Path(parent).iterdir())
    if os.name == "nt":
        dirs += [pathlib.Path(f"{letter}:\\") for letter in "DEFGHIJKLMNOPQRSTUVWXYZ"]
    return dirs


def uf2_drive(board, tool, uf2_path):
    """The mounted bootloader drive: --drive, else the one whose
    INFO_UF2.TXT names the board; its SoftDevice must be the one the image
    was linked behind."""
    volume = tool.get("volume", "bootloader")
    candidates = [pathlib.Path(_DRIVE.value)] if _DRIVE.value else mounted_dirs()
    drives = []
    for path in dict.fromkeys(candidates):
        try:
            if (path / "INFO_UF2.TXT").is_file():
                drives.append(path)
        except OSError:
            continue
    if _DRIVE.value and not drives:
        raise FlashError(
            f"--drive {_DRIVE.value} has no INFO_UF2.TXT: it is not a UF2 bootloader's drive"
        )
    board_id = tool.get("board_id", "")
    mine = [d for d in drives if read_info(d).get("Board-ID", "").startswith(board_id)]
    if not mine:
        others = "".join(f"; {d} is a {read_info(d).get('Board-ID', '?')}" for d in drives)
        raise FlashError(
            f"no {volume} drive of a {board.name} is mounted{others}: "
            "double-tap the board's reset button so the drive appears, then run "
            f"this again, or copy {uf2_path} onto it yourself"
        )
    if len(mine) > 1:
        raise FlashError(
            f"{len(mine)} {board.name} drives are mounted "
            f"({', '.join(map(str, mine))}): choose one with --drive"
        )
    softdevice = read_info(mine[0]).get("SoftDevice", "")
    wanted = tool.get("softdevice")
    if wanted and softdevice.split()[:2] != wanted.split()[:2]:
        raise FlashError(
            f'the bootloader on {mine[0]} reports SoftDevice "{softdevice}", but '
            f"{board.name}'s image starts at {board.flash.origin:#x}, behind "
            f"{wanted}: update the bootloader (with its SoftDevice) or pick "
            "the board that matches"
        )
    return mine[0]


def flash_uf2(board, tool, folder, dry_run):
    uf2_path = folder / UF2_NAME
    family = _number(tool.get("family_id", uf2.NRF52840_FAMILY_ID))
    size = uf2.write(folder / "firmware.bin", uf2_path, board.flash.origin, family)
    print(
        f"built {uf2_path} ({size // uf2.BLOCK_BYTES} blocks from "
        f"{board.flash.origin:#x}, family {family:#x})",
        flush=True,
    )
    if dry_run:
        target = _DRIVE.value or f"<the {tool.get('volume', 'bootloader')} drive>"
        show(["cp", uf2_path, f"{target}/{UF2_NAME}"])
        return
    drive = uf2_drive(board, tool, uf2_path)
    show(["cp", uf2_path, drive / UF2_NAME])
    try:
        shutil.copyfile(uf2_path, drive / UF2_NAME)
        if hasattr(os, "sync"):
            os.sync()
    except OSError as e:
        raise ToolFailed(
            f"copying to {drive} failed: {e} (a bootloader that restarts as the "
            "last block lands can cut the copy short: if the drive is gone and "
            "the board runs, it was flashed)"
        ) from None
    print("# the bootloader writes the image and restarts the board", flush=True)


FLASHERS = {"pyocd": flash_pyocd, "bossac": flash_bossac, "uf2": flash_uf2}


def check_installed(tool):
    """Raises FlashError when the flashing program is missing."""
    if tool == "pyocd" and shutil.which("pyocd") is None:
        raise FlashError(f"pyocd is not installed: {PYOCD_HINT}")
    if tool == "bossac" and find_bossac() is None:
        raise FlashError(f"bossac is not installed: {BOSSAC_HINT}")


def console_note(board):
    console = board.data.get("console", {})
    if console.get("kind") != "uarte0":
        return None
    return (
        f"# console: UARTE0, TX {pin_name(console['tx_pin'])} and RX "
        f"{pin_name(console['rx_pin'])}, {console.get('baudrate', 115200)} 8N1 "
        f"(boards/{board.name}/board.json)"
    )


def flash(board_name, dry_run):
    board = board_config.load_board(board_name)
    tool = flash_tool(board)
    if not dry_run:  # before a build that would be for nothing
        check_installed(tool["tool"])
    folder = firmware_folder(board)
    FLASHERS[tool["tool"]](board, tool, folder, dry_run)
    note = console_note(board)
    if note:
        print(note)


def main(argv):
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}; flags only (see --help)", file=sys.stderr)
        return 2
    if not FLAGS.board or FLAGS.host:
        print(
            "error: pass --board NAME (one of "
            f"{', '.join(board_config.board_names())}); --host is tools/build.py's",
            file=sys.stderr,
        )
        return 2
    try:
        flash(FLAGS.board, _DRY_RUN.value)
    except (FlashError, board_config.BoardError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except firmware_build.OverLimitError as e:
        print(e.report)
        print(f"error: {output_folder.with_notes(str(e), e)}", file=sys.stderr)
        return 1
    except (
        ToolFailed,
        host_build.BuildError,
        firmware_build.BuildError,
        output_folder.OutputFolderError,
    ) as e:
        print(f"error: {output_folder.with_notes(str(e), e)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    app.run(main)
