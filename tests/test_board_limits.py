"""The nrf52840 firmware fits the board, and one that does not fails to
build with a clear message. Limits come from boards/nrf52840/board.json;
the report is parsed from build.py's arduino-cli style output."""

import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tools import board_config, elf_sizes, firmware_build

BOARD = "nrf52840"
SKETCH = re.compile(
    r"^Sketch uses (\d+) bytes \((\d+)%\) of program storage space\. "
    r"Maximum is (\d+) bytes\.$",
    re.M,
)
GLOBALS = re.compile(
    r"^Global variables use (\d+) bytes \((\d+)%\) of dynamic memory, "
    r"leaving (\d+) bytes for local variables\. Maximum is (\d+) bytes\.$",
    re.M,
)


def build(*flags, env=None):
    return subprocess.run(
        [sys.executable, "tools/build.py", f"--board={BOARD}", *flags],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.fixture(scope="module")
def nrf52840_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("nrf52840")
    result = build(f"--out={out}")
    assert result.returncode == 0, result.stderr
    return out, result.stdout


@pytest.mark.firmware
def test_nrf52840_firmware_fits_the_board(nrf52840_build):
    out, report = nrf52840_build
    board = board_config.load_board(BOARD)
    flash_used, flash_percent, flash_max = map(int, SKETCH.search(report).groups())
    ram_used, ram_percent, ram_left, ram_max = map(int, GLOBALS.search(report).groups())
    assert (flash_max, ram_max) == (1024 * 1024, 256 * 1024)
    assert (flash_max, ram_max) == (board.flash.size, board.ram.size)
    assert 0 < flash_used <= flash_max and flash_percent == flash_used * 100 // flash_max
    assert ram_percent == ram_used * 100 // ram_max and ram_left == ram_max - ram_used
    assert ram_used + board.stack_size <= ram_max
    for name in ("firmware.elf", "firmware.hex", "firmware.bin"):
        assert (out / name).stat().st_size > 0
    # The embedded model and the exactly sized arena are in there.
    model_bytes = firmware_build.DEFAULT_MODEL.stat().st_size
    assert flash_used > model_bytes
    assert ram_used > board.stack_size // 4


@pytest.mark.firmware
def test_report_agrees_with_arm_none_eabi_size(nrf52840_build):
    out, report = nrf52840_build
    flash_used = int(SKETCH.search(report).group(1))
    ram_used = int(GLOBALS.search(report).group(1))
    berkeley = subprocess.run(
        ["arm-none-eabi-size", str(out / "firmware.elf")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    text, data, bss = map(int, berkeley.splitlines()[1].split()[:3])
    stack = board_config.load_board(BOARD).stack_size
    assert flash_used == text + data
    assert ram_used == data + bss - stack


@pytest.mark.firmware
def test_memory_layout_follows_board_json(nrf52840_build):
    out, _ = nrf52840_build
    board = board_config.load_board(BOARD)
    sections = {s.name: s for s in elf_sizes.read_sections((out / "firmware.elf").read_bytes())}
    assert sections[".text"].address == board.flash.origin  # vector table at 0x0
    stack = sections[".stack"]
    assert stack.address == board.ram.origin and stack.size == board.stack_size
    for section in sections.values():
        region = board.flash if board.flash.contains(section.address) else board.ram
        assert region.contains(section.address + section.size - 1), section


def test_emulator_board_carries_the_nrf52840_limits():
    real, emulated = board_config.load_board(BOARD), board_config.load_board("mps2_an386")
    assert emulated.emulates == BOARD
    assert (emulated.flash, emulated.ram, emulated.stack_size, emulated.cpu_flags) == (
        real.flash,
        real.ram,
        real.stack_size,
        real.cpu_flags,
    )
    assert board_config.emulator_board(BOARD).name == "mps2_an386"


@pytest.mark.firmware
def test_oversized_arena_fails_with_a_clear_error(tmp_path):
    result = build("--arena_bytes=300000", f"--out={tmp_path}")
    assert result.returncode != 0
    assert "does not fit the nrf52840" in result.stderr
    assert "RAM needs" in result.stderr and "arena 300000 bytes" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.firmware
def test_oversized_inputs_fail_with_a_clear_error(tmp_path):
    one = np.load(firmware_build.DEFAULT_INPUTS)[:1]
    too_many = np.repeat(one, (1024 * 1024) // one.nbytes + 1, axis=0)
    path = tmp_path / "inputs.npy"
    np.save(path, too_many)
    result = build(f"--inputs={path}", f"--out={tmp_path / 'out'}")
    assert result.returncode != 0
    assert "does not fit the nrf52840" in result.stderr
    assert "program storage needs" in result.stderr
    assert re.search(r"Sketch uses \d+ bytes \(1\d\d%\)", result.stdout)
    assert not (tmp_path / "out" / "firmware.elf").exists()


@pytest.mark.slow
def test_missing_toolchain_names_the_debian_packages(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))  # no arm-none-eabi-* here
    result = build(f"--out={tmp_path / 'out'}", env=env)
    assert result.returncode != 0
    assert "arm-none-eabi-gcc" in result.stderr
    assert "apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi" in result.stderr
