"""The boards people own: each one's image is linked where its bootloader
starts it, the .hex and .uf2 files say so record by record and block by
block, and tools/flash.py prints (or runs) the command that board is
flashed with, or says in one line what to connect or install.

The facts below (app start, usable flash and RAM, console pins, flashing
method) are the ones boards/README.md gives sources for.
"""

import os
import pathlib
import stat
import struct
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tools import board_config, elf_sizes, firmware_build, uf2

# board: (app start, end of the image's flash, RAM origin, console TX, RX, tool)
FACTS = {
    "nrf52840dk": (0x0, 0x100000, 0x20000000, 6, 8, "pyocd"),  # P0.06, P0.08
    "arduino_nano33ble": (0x10000, 0x100000, 0x20000000, 35, 42, "bossac"),  # P1.03, P1.10
    "feather_nrf52840": (0x26000, 0xEA000, 0x20000008, 25, 24, "uf2"),  # P0.25, P0.24
    "xiao_nrf52840": (0x27000, 0xEA000, 0x20000008, 43, 44, "uf2"),  # P1.11, P1.12
}
BOARDS = sorted(FACTS)
UF2_BOARDS = [b for b in BOARDS if FACTS[b][5] == "uf2"]
RAM_END = 0x20040000


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """{board: Firmware}: the default inference app, built by the functions
    tools/build.py uses."""
    root = tmp_path_factory.mktemp("flash")
    return {board: firmware_build.build_firmware(board, out_dir=root / board) for board in BOARDS}


def flash(*args, env=None):
    return subprocess.run(
        [sys.executable, "tools/flash.py", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def one_line_error(result, *words):
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def commands(stdout):
    return [line[2:] for line in stdout.splitlines() if line.startswith("$ ")]


def bare_env(tmp_path, path_dirs=()):
    """No flashing program on PATH and no Arduino15 folder in HOME."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    empty = tmp_path / "empty_bin"
    empty.mkdir(exist_ok=True)
    return {
        **os.environ,
        "HOME": str(home),
        "LOCALAPPDATA": str(home),
        "PATH": os.pathsep.join([*map(str, path_dirs), str(empty)]),
    }


def fake_tool(folder, name, script):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


# ------------------------------------------------------------ board data


@pytest.mark.parametrize("board_name", BOARDS)
def test_board_json_holds_the_verified_facts(board_name):
    start, end, ram_origin, tx, rx, tool = FACTS[board_name]
    board = board_config.load_board(board_name)
    assert (board.flash.origin, board.flash.end) == (start, end)
    assert (board.ram.origin, board.ram.end) == (ram_origin, RAM_END)
    for part in ("console", "link"):
        assert board.part(part)["kind"] == "uarte0"
        assert (board.part(part)["tx_pin"], board.part(part)["rx_pin"]) == (tx, rx)
    assert board.data["flash_tool"]["tool"] == tool
    assert board.cpu_flags == board_config.load_board("nrf52840").cpu_flags
    assert board.emulates is None and board.qemu is None


def test_the_bare_nrf52840_is_unchanged():
    board = board_config.load_board("nrf52840")
    assert (board.flash.origin, board.flash.size) == (0, 1 << 20)
    assert (board.ram.origin, board.ram.size) == (0x20000000, 256 << 10)
    assert board.data["flash_tool"] == {"tool": "pyocd", "target": "nrf52840"}


# ------------------------------------------------------------ images


@pytest.mark.firmware
@pytest.mark.parametrize("board_name", BOARDS)
def test_vector_table_sits_at_the_app_offset(images, board_name):
    firmware = images[board_name]
    board = board_config.load_board(board_name)
    start, end, ram_origin = FACTS[board_name][:3]
    sections = {s.name: s for s in elf_sizes.read_sections(firmware.elf.read_bytes())}
    assert sections[".text"].address == start
    assert sections[".stack"].address == ram_origin  # the stack at the bottom of RAM

    image = firmware.bin.read_bytes()
    assert start + len(image) <= end
    stack_pointer, reset = struct.unpack_from("<II", image)
    assert ram_origin < stack_pointer <= RAM_END
    assert stack_pointer == ram_origin + board.stack_size
    assert reset & 1, "the reset vector must be a Thumb address"
    assert start <= reset - 1 < start + len(image)
    symbols = subprocess.run(
        [firmware_build.NM, str(firmware.elf)], capture_output=True, text=True, check=True
    ).stdout.split()
    handler = int(symbols[symbols.index("board_reset_handler") - 2], 16)
    assert reset == handler | 1


def read_hex(text):
    """{address: byte} from Intel HEX, checking every record; also the
    upper-address records met, as (type, base)."""
    memory, bases, base, ended = {}, [], 0, False
    for number, line in enumerate(text.splitlines(), 1):
        assert not ended, f"line {number}: a record after the end-of-file record"
        assert line.startswith(":"), f"line {number} does not start with ':'"
        raw = bytes.fromhex(line[1:])
        count, address, kind = raw[0], int.from_bytes(raw[1:3], "big"), raw[3]
        assert len(raw) == count + 5, f"line {number}: byte count {count} is wrong"
        assert sum(raw) % 256 == 0, f"line {number}: bad checksum"
        data = raw[4:-1]
        if kind == 0x00:
            for offset, byte in enumerate(data):
                memory[base + address + offset] = byte
        elif kind == 0x01:
            assert count == 0
            ended = True
        elif kind in (0x02, 0x04):  # extended segment / extended linear address
            assert count == 2 and address == 0
            value = int.from_bytes(data, "big")
            base = value << 4 if kind == 0x02 else value << 16
            bases.append((kind, base))
        elif kind in (0x03, 0x05):  # start address (CS:IP / EIP)
            assert count == 4
        else:
            raise AssertionError(f"line {number}: unknown record type {kind:#04x}")
    assert ended, "no end-of-file record"
    return memory, bases


@pytest.mark.firmware
@pytest.mark.parametrize("board_name", BOARDS)
def test_hex_records_are_well_formed_and_start_at_the_app_offset(images, board_name):
    firmware = images[board_name]
    start = FACTS[board_name][0]
    memory, bases = read_hex(firmware.hex.read_text())
    image = firmware.bin.read_bytes()
    assert min(memory) == start
    assert bytes(memory.get(start + i, 0xFF) for i in range(len(image))) == image
    assert max(memory) < start + len(image)
    if start >= 0x10000:  # 16-bit record addresses need an upper-address record
        assert bases and bases[0][1] <= start < bases[0][1] + 0x10000


@pytest.mark.firmware
@pytest.mark.parametrize("board_name", UF2_BOARDS)
def test_uf2_blocks_write_the_image_from_the_app_address(images, board_name, tmp_path):
    firmware = images[board_name]
    start, end = FACTS[board_name][:2]
    path = tmp_path / "firmware.uf2"
    size = uf2.write(firmware.bin, path, start)
    data = path.read_bytes()
    image = firmware.bin.read_bytes()
    count = -(-len(image) // 256)
    assert size == len(data) == count * 512

    for index in range(count):
        block = data[index * 512 : (index + 1) * 512]
        magic0, magic1, flags, address, payload, number, total, family = struct.unpack_from(
            "<8I", block
        )
        assert (magic0, magic1) == (0x0A324655, 0x9E5D5157)
        assert struct.unpack_from("<I", block, 508)[0] == 0x0AB16F30
        assert flags == 0x00002000 and family == 0xADA52840
        assert address == start + 256 * index and address % 256 == 0
        assert start <= address and address + 256 <= end  # the bootloader's app space
        assert (payload, number, total) == (256, index, count)
        chunk = image[index * 256 : (index + 1) * 256]
        assert block[32 : 32 + len(chunk)] == chunk
        assert block[32 + len(chunk) : 288] == b"\xff" * (256 - len(chunk))
        assert block[288:508] == bytes(220)
    assert uf2.validate(data, start) == image.ljust(count * 256, b"\xff")


def test_uf2_validator_names_what_is_wrong():
    image = bytes(range(256)) * 3 + b"\x01\x02"
    good = uf2.from_bin(image, 0x26000)
    assert uf2.validate(good, 0x26000)[: len(image)] == image

    def patched(block, offset, value):
        data = bytearray(good)
        struct.pack_into("<I", data, block * 512 + offset, value)
        return bytes(data)

    cases = [
        (good[:-1], "whole 512-byte blocks"),
        (patched(1, 0, 0x12345678), "wrong magic"),
        (patched(2, 508, 0), "wrong magic"),
        (patched(0, 8, 0), "family-ID flag"),
        (patched(3, 28, 0xE48BFF56), "family ID 0xe48bff56"),
        (patched(1, 12, 0x26200), "target address 0x26200, expected 0x26100"),
        (patched(2, 20, 7), "numbered 7 of 4"),
        (patched(0, 24, 5), "numbered 0 of 5"),
        (patched(1, 16, 128), "payload of 128 bytes"),
        (patched(1, 16, 477), "payload size 477"),
    ]
    for data, message in cases:
        with pytest.raises(uf2.Uf2Error, match=message):
            uf2.validate(data, 0x26000)
    with pytest.raises(uf2.Uf2Error, match="expected 0x27000"):
        uf2.validate(good, 0x27000)
    with pytest.raises(uf2.Uf2Error, match="not a multiple of 256"):
        uf2.from_bin(image, 0x26080)
    with pytest.raises(uf2.Uf2Error, match="empty"):
        uf2.from_bin(b"", 0x26000)


# ------------------------------------------------------------ tools/flash.py


@pytest.fixture(scope="module")
def folders(images):
    return {board: firmware.out_dir for board, firmware in images.items()}


@pytest.mark.firmware
def test_dry_run_dk_prints_pyocd_flash_of_the_hex(folders, tmp_path):
    result = flash(
        "--board",
        "nrf52840dk",
        "--firmware",
        folders["nrf52840dk"],
        "--dry_run",
        env=bare_env(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert commands(result.stdout) == [
        f"pyocd flash --target nrf52840 {folders['nrf52840dk']}/firmware.hex"
    ]
    assert "TX P0.06 and RX P0.08" in result.stdout


@pytest.mark.firmware
def test_dry_run_nano_prints_bossac_without_an_offset(folders, tmp_path):
    folder = folders["arduino_nano33ble"]
    env = bare_env(tmp_path)
    tools = pathlib.Path(env["HOME"]) / ".arduino15/packages/arduino/tools/bossac"
    fake_tool(tools / "1.7.0-arduino3", "bossac", "exit 1\n")  # no nRF52 support
    newest = fake_tool(tools / "1.9.1-arduino2", "bossac", "exit 1\n")
    result = flash(
        "--board",
        "arduino_nano33ble",
        "--firmware",
        folder,
        "--dry_run",
        "--port",
        "/dev/ttyACM7",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert commands(result.stdout) == [
        f"{newest} --port=/dev/ttyACM7 -U -i -e -w {folder}/firmware.bin -R"
    ]
    assert "TX P1.03 and RX P1.10" in result.stdout


@pytest.mark.firmware
@pytest.mark.parametrize(
    "board_name,volume", [("feather_nrf52840", "FTHR840BOOT"), ("xiao_nrf52840", "XIAO-BOOT")]
)
def test_dry_run_uf2_boards_write_the_uf2_and_print_the_copy(folders, tmp_path, board_name, volume):
    folder = folders[board_name]
    (folder / "firmware.uf2").unlink(missing_ok=True)
    result = flash("--board", board_name, "--firmware", folder, "--dry_run", env=bare_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert commands(result.stdout) == [
        f"cp {folder}/firmware.uf2 '<the {volume} drive>/firmware.uf2'"
    ]
    image = (folder / "firmware.bin").read_bytes()
    written = uf2.validate((folder / "firmware.uf2").read_bytes(), FACTS[board_name][0])
    assert written[: len(image)] == image


@pytest.mark.firmware
def test_dry_run_builds_first(tmp_path):
    out = tmp_path / "out"
    result = flash(
        "--board",
        "xiao_nrf52840",
        "--dry_run",
        "--out",
        out,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    assert "Sketch uses" in result.stdout
    assert commands(result.stdout) == [
        f"cp {out.resolve()}/firmware.uf2 '<the XIAO-BOOT drive>/firmware.uf2'"
    ]
    for name in ("firmware.elf", "firmware.hex", "firmware.bin", "firmware.uf2"):
        assert (out / name).is_file()


def bootloader_drive(tmp_path, board_id, softdevice):
    drive = tmp_path / "drive"
    drive.mkdir()
    (drive / "INFO_UF2.TXT").write_text(
        f"UF2 Bootloader 0.6.2\r\nModel: test\r\nBoard-ID: {board_id}\r\n"
        f"SoftDevice: {softdevice}\r\n"
    )
    return drive


@pytest.mark.firmware
def test_uf2_copy_onto_the_bootloader_drive(folders, tmp_path):
    folder = folders["feather_nrf52840"]
    drive = bootloader_drive(tmp_path, "nRF52840-Feather-revE", "S140 6.1.1")
    result = flash(
        "--board",
        "feather_nrf52840",
        "--firmware",
        folder,
        "--drive",
        drive,
        env=bare_env(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert (drive / "firmware.uf2").read_bytes() == (folder / "firmware.uf2").read_bytes()


@pytest.mark.firmware
def test_uf2_refuses_a_bootloader_with_another_softdevice(folders, tmp_path):
    drive = bootloader_drive(tmp_path, "nRF52840-SeeedXiao-v1", "S140 6.1.1")
    result = flash(
        "--board",
        "xiao_nrf52840",
        "--firmware",
        folders["xiao_nrf52840"],
        "--drive",
        drive,
        env=bare_env(tmp_path),
    )
    one_line_error(result, "S140 6.1.1", "0x27000", "S140 7.3.0")
    assert not (drive / "firmware.uf2").exists()


@pytest.mark.firmware
def test_uf2_refuses_another_boards_drive(folders, tmp_path):
    drive = bootloader_drive(tmp_path, "nRF52840-SeeedXiao-v1", "S140 7.3.0")
    result = flash(
        "--board",
        "feather_nrf52840",
        "--firmware",
        folders["feather_nrf52840"],
        "--drive",
        drive,
        env=bare_env(tmp_path),
    )
    one_line_error(result, "FTHR840BOOT", "nRF52840-SeeedXiao-v1", "double-tap")


@pytest.mark.firmware
def test_uf2_without_a_drive_says_to_double_tap_and_where_the_file_is(folders, tmp_path):
    folder = folders["xiao_nrf52840"]
    result = flash("--board", "xiao_nrf52840", "--firmware", folder, env=bare_env(tmp_path))
    one_line_error(result, "no XIAO-BOOT drive", "double-tap", f"{folder}/firmware.uf2")


@pytest.mark.firmware
def test_uf2_drive_flag_must_be_a_bootloader_drive(folders, tmp_path):
    result = flash(
        "--board",
        "xiao_nrf52840",
        "--firmware",
        folders["xiao_nrf52840"],
        "--drive",
        tmp_path,
        env=bare_env(tmp_path),
    )
    one_line_error(result, "no INFO_UF2.TXT")


@pytest.mark.firmware
def test_pyocd_runs_flash_when_a_probe_is_listed(folders, tmp_path):
    log = tmp_path / "pyocd.log"
    bin_dir = tmp_path / "bin"
    fake_tool(
        bin_dir,
        "pyocd",
        'if [ "$1" = list ]; then\n'
        '  echo "  0   Segger J-Link OB   683000000   n/a"; exit 0\nfi\n'
        f'echo "$@" > {log}\n',
    )
    folder = folders["nrf52840dk"]
    result = flash(
        "--board",
        "nrf52840dk",
        "--firmware",
        folder,
        "--probe",
        "683000000",
        env=bare_env(tmp_path, [bin_dir]),
    )
    assert result.returncode == 0, result.stderr
    assert log.read_text().split() == [
        "flash",
        "--target",
        "nrf52840",
        "--uid",
        "683000000",
        f"{folder}/firmware.hex",
    ]


@pytest.mark.firmware
def test_pyocd_without_a_probe_says_what_to_connect(folders, tmp_path):
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir, "pyocd", 'echo "No available debug probes are connected"\n')
    result = flash(
        "--board",
        "nrf52840dk",
        "--firmware",
        folders["nrf52840dk"],
        env=bare_env(tmp_path, [bin_dir]),
    )
    one_line_error(result, "no debug probe", "J-Link USB")


@pytest.mark.firmware
def test_bossac_runs_on_the_given_port(folders, tmp_path):
    log = tmp_path / "bossac.log"
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir, "bossac", f'echo "$@" > {log}\n')
    folder = folders["arduino_nano33ble"]
    result = flash(
        "--board",
        "arduino_nano33ble",
        "--firmware",
        folder,
        "--port",
        "/dev/ttyACM3",
        env=bare_env(tmp_path, [bin_dir]),
    )
    assert result.returncode == 0, result.stderr
    assert log.read_text().split() == [
        "--port=/dev/ttyACM3",
        "-U",
        "-i",
        "-e",
        "-w",
        f"{folder}/firmware.bin",
        "-R",
    ]


@pytest.mark.firmware
def test_a_failing_flasher_exits_1(folders, tmp_path):
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir, "bossac", "exit 3\n")
    result = flash(
        "--board",
        "arduino_nano33ble",
        "--firmware",
        folders["arduino_nano33ble"],
        "--port",
        "/dev/ttyACM3",
        env=bare_env(tmp_path, [bin_dir]),
    )
    assert result.returncode == 1
    assert "bossac failed (exit status 3)" in result.stderr


@pytest.mark.firmware
@pytest.mark.parametrize(
    "board_name,words",
    [
        ("nrf52840dk", ("pyocd is not installed", "pip install pyocd")),
        ("arduino_nano33ble", ("bossac is not installed", "1.9.1-arduino2", "arduino:mbed_nano")),
    ],
)
def test_missing_flashing_program_is_one_line(folders, tmp_path, board_name, words):
    result = flash("--board", board_name, "--firmware", folders[board_name], env=bare_env(tmp_path))
    one_line_error(result, *words)


@pytest.mark.slow
@pytest.mark.parametrize(
    "args,words",
    [
        (
            ("--board", "nrf52840_nope", "--dry_run"),
            ("unknown board 'nrf52840_nope'", "feather_nrf52840"),
        ),
        (("--dry_run",), ("pass --board NAME",)),
        (("--board", "mps2_an386", "--dry_run"), ("QEMU", "tools/emulate.py")),
        (("--board", "xiao_nrf52840", "--dry_run", "stray"), ("unexpected arguments",)),
    ],
)
def test_bad_invocations_are_one_line(tmp_path, args, words):
    one_line_error(flash(*args, env=bare_env(tmp_path)), *words)


@pytest.mark.firmware
def test_firmware_of_another_board_is_refused(folders, tmp_path):
    result = flash(
        "--board",
        "xiao_nrf52840",
        "--firmware",
        folders["feather_nrf52840"],
        "--dry_run",
        env=bare_env(tmp_path),
    )
    one_line_error(
        result, "built for board feather_nrf52840", "tools/build.py --board xiao_nrf52840"
    )


@pytest.mark.firmware
def test_image_linked_elsewhere_is_refused(folders, tmp_path):
    folder = tmp_path / "moved"
    folder.mkdir()
    for name in ("firmware.elf", "firmware.hex", "firmware.bin"):
        (folder / name).write_bytes((folders["feather_nrf52840"] / name).read_bytes())
    (folder / "build.json").write_text('{"board": "xiao_nrf52840"}\n')
    result = flash(
        "--board", "xiao_nrf52840", "--firmware", folder, "--dry_run", env=bare_env(tmp_path)
    )
    one_line_error(result, "reset vector", "not an image for xiao_nrf52840")
