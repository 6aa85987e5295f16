"""Renode scripts for the nRF52840 firmware itself (its UARTE0 console,
DWT cycle counter and NVMC flash), written for a built ELF:

  <name>.resc   for `renode <name>.resc`: the machine, the ELF, an analyzer
                on the console UART (or, for the learner, a TCP socket that
                `tools/learn.py --port socket://localhost:<port>` talks to)
  <name>.robot  for `renode-test <name>.robot`: waits, in order, for every
                console line the firmware must print

The lines the Renode run must print are derived from the events of a QEMU
run of the same model and inputs (tools/emulation.py, firmware_console.py):
what the firmware computed must appear verbatim; what depends on the board
(its counter's unit and counts, stack and static RAM) as a pattern. The
same expectations are checked against QEMU's output by `unmatched`, which
follows Renode's terminal tester: a line matches when the regular
expression is found in it, CR and NUL are dropped, and each match
consumes every line up to the matched one.

Renode facts (renode/renode, renode/renode-infrastructure): boards/README.md.
"""

import dataclasses
import json
import pathlib
import re
import shutil

from tools import firmware_console

RENODE = "renode"
RENODE_TEST = "renode-test"
RENODE_HINT = (
    "install Renode from https://renode.io (the portable Linux package "
    "or the .deb provides both `renode` and `renode-test`) and put it on PATH, "
    "or pass --renode_scripts_only to only write the scripts"
)
DEFAULT_BOARD = "nrf52840"
DEFAULT_LEARNER_PORT = 3456
DEFAULT_TIMEOUT_S = 120
LEARNER_APP = "learner_app"


class RenodeError(RuntimeError):
    pass


@dataclasses.dataclass(frozen=True)
class Platform:
    """A board's Renode platform: its .repl and the UART peripheral at each
    base address (platforms/cpus/nrf52840.repl)."""

    repl: str
    uarts: dict
    cpu_hz: int


_NRF52840 = Platform(
    "platforms/cpus/nrf52840.repl",
    {0x40002000: "sysbus.uart0", 0x40028000: "sysbus.uart1"},
    64_000_000,
)
# Boards whose image starts at 0x0, as Renode's CPU does; behind a
# bootloader (app_offset) the image would need the bootloader too.
PLATFORMS = {"nrf52840": _NRF52840, "nrf52840dk": _NRF52840}

# Registers of the NVMC (the learner's flash store, flash_store_nvmc.c),
# which platforms/cpus/nrf52840.repl does not model.
NVMC_BASE = 0x4001E000
NVMC_READY = 0x400
NVMC_ERASEPAGE = 0x508
DWT_BASE = 0xE0001000


# -- the lines the firmware must print ---------------------------------------------

# Fields of an event whose values come from the board that ran the firmware,
# not from what it computed. Any event with a "counter" also carries the
# board's counter unit and a "count" (an integer, or null on overflow).
BOARD_FIELDS = {"stack": ("used",), "ram": ("static", "stack_used", "peak")}
_INTEGER = r"-?[0-9]+"
_COUNT = r"(-?[0-9]+|null)"
# Metacharacters of both .NET's (Renode's) and Python's regular expressions.
_REGEX_SPECIAL = set("\\.^$|?*+()[]{}")


def regex_escape(text):
    """`text` as a literal in a regular expression, the same in .NET and Python."""
    return "".join("\\" + c if c in _REGEX_SPECIAL else c for c in text)


def _quoted(text):
    """A string as the firmware writes it (boards/common/report.c): quote and
    backslash escaped, any other byte outside printable ASCII as \\u00xx."""
    out = []
    for c in text:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 0x20 or 0x7F <= ord(c) <= 0xFF:
            out.append(f"\\u00{ord(c):02x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _value_text(value):
    if isinstance(value, str):
        return _quoted(value)
    if isinstance(value, list):
        return "[" + ",".join(_value_text(v) for v in value) + "]"
    return json.dumps(value)


def event_line(event):
    """The console line of an event, as the firmware prints it."""
    return (
        firmware_console.PREFIX
        + "{"
        + ",".join(f"{_quoted(k)}:{_value_text(v)}" for k, v in event.items())
        + "}"
    )


@dataclasses.dataclass(frozen=True)
class Expectation:
    """One line the firmware must print: `pattern` (a regular expression)
    is found in it. `line` is the reference line it stands for."""

    pattern: str
    line: str


def expectation(event, board):
    """The line `board` prints for `event` (from a run on any board)."""
    varying = BOARD_FIELDS.get(event.get("event"), ())
    parts = []
    for key, value in event.items():
        if "counter" in event and key == "counter":
            value_pattern = regex_escape(_quoted(board.part("counter")["unit"]))
        elif "counter" in event and key == "count":
            value_pattern = _COUNT
        elif key in varying:
            value_pattern = _INTEGER
        else:
            value_pattern = regex_escape(_value_text(value))
        parts.append(regex_escape(_quoted(key) + ":") + value_pattern)
    pattern = "^" + regex_escape(firmware_console.PREFIX + "{") + ",".join(parts) + r"\}$"
    return Expectation(pattern, event_line(event))


def expectations_from_events(events, board):
    """Every line `board` must print, in order, given the events of a run of
    the same firmware (model, inputs) on another board, e.g. QEMU's."""
    if not events:
        raise RenodeError("the reference run has no events to expect")
    if events[-1].get("event") != "exit":
        raise RenodeError(f"the reference run did not end with an exit event: {events[-1]}")
    return [expectation(e, board) for e in events]


def exit_expectations(status=0):
    """Only the exit line: what is known without a reference run."""
    return [
        Expectation(
            "^" + regex_escape(event_line({"event": "exit", "status": status})) + "$",
            event_line({"event": "exit", "status": status}),
        )
    ]


def load_events(path):
    """Events written by `tools/emulate.py --events_out`."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise RenodeError(
            f"--expect_events {path} does not exist; write it with "
            "`python tools/emulate.py --events_out FILE` (QEMU)"
        )
    try:
        events = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RenodeError(f"--expect_events {path} is not JSON: {e}") from None
    if not isinstance(events, list) or not all(
        isinstance(e, dict) and isinstance(e.get("event"), str) for e in events
    ):
        raise RenodeError(
            f"--expect_events {path} is not a list of events "
            "(as `tools/emulate.py --events_out` writes)"
        )
    return events


def unmatched(expectations, lines):
    """The expectations a console's `lines` do not meet, checked as Renode's
    terminal tester waits for them (in order, each match consuming the
    lines up to it); after the first unmet one all the rest are unmet."""
    remaining = [line.replace("\r", "").replace("\0", "").rstrip("\n") for line in lines]
    for i, expected in enumerate(expectations):
        regex = re.compile(expected.pattern)
        found = next((j for j, line in enumerate(remaining) if regex.search(line)), None)
        if found is None:
            return list(expectations[i:])
        remaining = remaining[found + 1 :]
    return []


def failing_patterns(expectations):
    """Console events that end the Robot test at once: an error or a fault
    the reference run did not have."""
    expected = " ".join(e.line for e in expectations)
    return [
        regex_escape(firmware_console.PREFIX + '{"event":"' + name + '"')
        for name in ("error", "fault")
        if f'"event":"{name}"' not in expected
    ]


# -- the machine -----------------------------------------------------------------


def platform_of(board):
    platform = PLATFORMS.get(board.name)
    if platform is None:
        raise RenodeError(
            f"board {board.name} has no Renode platform here; tools/renode.py "
            f"knows {', '.join(sorted(PLATFORMS))} (try --board {DEFAULT_BOARD})"
        )
    return platform


def uart_of(board, part):
    """The Renode UART peripheral of the board's console or link."""
    platform = platform_of(board)
    entry = board.part(part)
    if entry["kind"] != "uarte0":
        raise RenodeError(
            f"board {board.name}: its {part} is {entry['kind']!r}; the Renode "
            'scripts need a UARTE console (kind "uarte0")'
        )
    base = int(entry["base"], 0) if isinstance(entry["base"], str) else int(entry["base"])
    if base not in platform.uarts:
        raise RenodeError(
            f"board {board.name}: no UART of {platform.repl} is at {base:#x}, its {part}'s base"
        )
    return platform.uarts[base]


def check_elf(elf, board):
    elf = pathlib.Path(elf)
    if not elf.is_file():
        raise RenodeError(
            f"firmware {elf} does not exist; build it with "
            f"`python tools/build.py --board {board.name}`"
        )
    if re.search(r"[\s\"'@$]", str(elf.resolve())):
        raise RenodeError(
            f"the firmware path {elf.resolve()} has a space, quote, @ or $, "
            "which the scripts cannot pass to Renode's monitor; move it"
        )
    summary = elf.parent / "build.json"
    if summary.is_file():
        built_for = json.loads(summary.read_text()).get("board")
        if built_for and built_for != board.name:
            raise RenodeError(
                f"{elf} was built for {built_for}, not {board.name}, whose "
                f"machine Renode runs; build it with `python tools/build.py "
                f"--board {board.name}`"
            )
    return elf.resolve()


def built_app(elf):
    """The app the ELF was built as (its build.json), or None."""
    summary = pathlib.Path(elf).parent / "build.json"
    if not summary.is_file():
        return None
    return json.loads(summary.read_text()).get("app")


def _nvmc_script(page_bytes):
    """A Python peripheral for the NVMC registers flash_store_nvmc.c uses:
    READY reads 1 (every operation is done at once); ERASEPAGE fills the
    page with 0xFF. Word writes land in flash as plain stores (flash is
    MappedMemory in the platform), so NOR programming (1 -> 0 only) is not
    modelled."""
    return (
        f"if request.IsRead:\n"
        f"    request.Value = 1 if request.Offset == {NVMC_READY:#x} else 0\n"
        f"elif request.IsWrite and request.Offset == {NVMC_ERASEPAGE:#x}:\n"
        f"    bus = self.GetMachine().SystemBus\n"
        f"    page = int(request.Value) - int(request.Value) % {page_bytes}\n"
        f"    for address in range(page, page + {page_bytes}, 4):\n"
        f"        bus.WriteDoubleWord(address, 0xFFFFFFFF)\n"
    )


def machine_commands(elf, board):
    """Monitor commands that create the board's machine and load the ELF."""
    platform = platform_of(board)
    commands = [f'mach create "{board.name}"', f"machine LoadPlatformDescription @{platform.repl}"]
    if board.part("counter")["kind"] == "dwt_cycles":
        commands.append(
            f'machine LoadPlatformDescriptionFromString "dwt: Miscellaneous.DWT @ sysbus '
            f'0x{DWT_BASE:08X} {{ frequency: {platform.cpu_hz} }}"'
        )
    store = board.data.get("flash_store")
    if store and store.get("kind") == "nvmc" and built_app(elf) == LEARNER_APP:
        # The script starts at column 0, as in Renode's own .repl files.
        script = _nvmc_script(int(store["page_bytes"]))
        commands.append(
            'machine LoadPlatformDescriptionFromString """\n'
            f"nvmc: Python.PythonPeripheral @ sysbus {NVMC_BASE:#x}\n"
            "    size: 0x1000\n"
            "    initable: false\n"
            "    script: '''\n" + script + "'''\n"
            '"""'
        )
    commands.append(f"sysbus LoadELF @{elf}")
    return commands


# -- the scripts -----------------------------------------------------------------


def console_resc(elf, board):
    """`renode <this>`: the firmware with an analyzer on its console UART."""
    uart = uart_of(board, "console")
    return "\n".join(
        [
            f":name: {board.name} firmware",
            f":description: {pathlib.Path(elf).name} on {platform_of(board).repl}, its console "
            f"on {uart} (written by tools/renode.py)",
            "",
            *machine_commands(elf, board),
            f"showAnalyzer {uart}",
            "start",
            "",
        ]
    )


def learner_resc(elf, board, port=DEFAULT_LEARNER_PORT):
    """`renode <this>`: the learner firmware, its link UART on TCP `port`
    (raw bytes: no telnet negotiation) for `tools/learn.py --port
    socket://localhost:<port>`."""
    if not 0 < int(port) < 65536:
        raise RenodeError(f"the learner's TCP port must be 1..65535, got {port}")
    uart = uart_of(board, "link")
    return "\n".join(
        [
            f":name: {board.name} learner",
            f":description: {pathlib.Path(elf).name} on {platform_of(board).repl}, its link "
            f"{uart} on TCP port {port} (written by tools/renode.py); then run "
            f"python tools/learn.py --port socket://localhost:{port} ...",
            "",
            *machine_commands(elf, board),
            f'emulation CreateServerSocketTerminal {int(port)} "learner_link" false',
            f"connector Connect {uart} learner_link",
            "start",
            "",
        ]
    )


_ROBOT_SPECIAL = set("$@&%#=|")


def robot_escape(text):
    """`text` as one literal argument of a space-separated Robot Framework
    line: backslashes doubled, variable, comment, named-argument and pipe
    characters escaped, whitespace that would separate cells written as
    escapes or ${SPACE}."""
    out = []
    for i, c in enumerate(text):
        if c == "\\":
            out.append("\\\\")
        elif c in _ROBOT_SPECIAL:
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif c == "\r":
            out.append("\\r")
        elif c == "\t":
            out.append("\\t")
        elif c == " " and (i == 0 or i == len(text) - 1 or text[i + 1] == " "):
            out.append("${SPACE}")
        else:
            out.append(c)
    return "".join(out)


def _robot_line(*cells):
    return "    " + "    ".join(cells)


def robot_suite(elf, board, expectations, timeout_s=DEFAULT_TIMEOUT_S):
    """`renode-test <this>`: one test that runs the firmware and waits, in
    order, for each expected console line (renode-test adds the suite and
    test setups itself)."""
    if not expectations:
        raise RenodeError("no console lines to wait for")
    uart = uart_of(board, "console")
    lines = [
        "*** Comments ***",
        f"Written by tools/renode.py: {pathlib.Path(elf).name} on {board.name} must print "
        f"{len(expectations)} console lines on {uart}. Run: renode-test <this file>",
        "",
        "*** Test Cases ***",
        "Firmware Prints Its Results On The Console",
    ]
    for command in machine_commands(elf, board):
        lines.append(_robot_line("Execute Command", robot_escape(command)))
    lines.append(
        _robot_line("Create Terminal Tester", robot_escape(uart), f"timeout={int(timeout_s)}")
    )
    for pattern in failing_patterns(expectations):
        lines.append(
            _robot_line("Register Failing Uart String", robot_escape(pattern), "treatAsRegex=true")
        )
    lines.append(_robot_line("Start Emulation"))
    for expected in expectations:
        lines.append(
            _robot_line(
                "Wait For Line On Uart", robot_escape(expected.pattern), "treatAsRegex=true"
            )
        )
    return "\n".join(lines) + "\n"


@dataclasses.dataclass
class Scripts:
    resc: pathlib.Path
    robot: pathlib.Path = None  # None for the learner (the host drives it)
    port: int = None  # the learner's TCP port


def write_scripts(
    out_dir, elf, board, expectations=None, port=DEFAULT_LEARNER_PORT, timeout_s=DEFAULT_TIMEOUT_S
):
    """Writes <out_dir>/firmware.resc and .robot, or learner.resc for the
    learner firmware; returns their paths."""
    elf = check_elf(elf, board)
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if built_app(elf) == LEARNER_APP:
        resc = out_dir / "learner.resc"
        resc.write_text(learner_resc(elf, board, port))
        return Scripts(resc, port=int(port))
    resc, robot = out_dir / "firmware.resc", out_dir / "firmware.robot"
    resc.write_text(console_resc(elf, board))
    robot.write_text(robot_suite(elf, board, expectations or exit_expectations(), timeout_s))
    return Scripts(resc, robot)


def find(tool):
    """The path of `renode` or `renode-test`; RenodeError if not on PATH."""
    path = shutil.which(tool)
    if path is None:
        raise RenodeError(f"{tool} not found on PATH; {RENODE_HINT}")
    return path


def robot_command(robot, results_dir):
    return [find(RENODE_TEST), "-r", str(results_dir), str(robot)]


def renode_command(resc):
    return [find(RENODE), "--console", "--disable-gui", str(resc)]
