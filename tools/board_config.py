"""Reads boards/<name>/board.json, the one place that holds a board's facts.

A board with "emulates": "<other>" takes every key it does not set itself
from the other board's board.json (so the emulator carries the real
board's memory limits and CPU flags).
"""

import dataclasses
import json
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]
BOARDS_DIR = REPO / "boards"


class BoardError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class Region:
    origin: int
    size: int

    @property
    def end(self):
        return self.origin + self.size

    def contains(self, address):
        return self.origin <= address < self.end


def _number(value, what):
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value, 0)
        except ValueError:
            pass
    raise BoardError(f'{what} must be an integer or a "0x..." string, got {value!r}')


@dataclasses.dataclass(frozen=True)
class Board:
    name: str
    path: pathlib.Path  # the board's folder
    data: dict  # board.json, merged with the board it emulates

    def _get(self, key):
        if key not in self.data:
            raise BoardError(f'{self.path / "board.json"} has no "{key}"')
        return self.data[key]

    @property
    def cpu_flags(self):
        return list(self._get("cpu_flags"))

    def memory(self, region):
        entry = self._get("memory").get(region)
        if entry is None:
            raise BoardError(f'board {self.name} has no "{region}" memory')
        return Region(
            _number(entry["origin"], f"{region} origin"), _number(entry["size"], f"{region} size")
        )

    @property
    def flash(self):
        """The part of flash the firmware image may use: all of it after
        app_offset (which leaves room for a bootloader)."""
        whole = self.memory("flash")
        offset = _number(self.data.get("app_offset", 0), "app_offset")
        if not 0 <= offset < whole.size:
            raise BoardError(f"board {self.name}: app_offset {offset:#x} is outside flash")
        return Region(whole.origin + offset, whole.size - offset)

    @property
    def ram(self):
        return self.memory("ram")

    @property
    def stack_size(self):
        return _number(self._get("stack_size"), "stack_size")

    def part(self, name):
        """The "console", "exit" or "counter" object; "kind" names its driver."""
        entry = self._get(name)
        if "kind" not in entry:
            raise BoardError(f'board {self.name}: "{name}" has no "kind"')
        return entry

    @property
    def emulates(self):
        return self.data.get("emulates")

    @property
    def qemu(self):
        return self.data.get("qemu")


def board_names():
    return sorted(p.parent.name for p in BOARDS_DIR.glob("*/board.json"))


def _read(name):
    path = BOARDS_DIR / name / "board.json"
    if not path.is_file():
        raise BoardError(f"unknown board {name!r}; boards: {', '.join(board_names())}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise BoardError(f"{path}: {e}") from None


def load_board(name):
    data = _read(name)
    if "emulates" in data:
        merged = _read(data["emulates"])
        merged.pop("emulates", None)
        merged.update(data)
        data = merged
    return Board(name=name, path=BOARDS_DIR / name, data=data)


def emulator_board(name):
    """The board QEMU runs for `name`: itself, or the board emulating it."""
    board = load_board(name)
    if board.qemu:
        return board
    for other in board_names():
        candidate = load_board(other)
        if candidate.qemu and candidate.emulates == name:
            return candidate
    raise BoardError(f'no board emulates {name!r} (none has "qemu" and "emulates": "{name}")')
