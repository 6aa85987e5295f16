"""The Renode scripts (tools/renode.py, tools/emulate.py --emulator renode).

Renode is not installed here: the generated .resc/.robot are checked for
what can be checked without it, and the lines the .robot waits for are
checked against QEMU's run of the same model and inputs, both in Python
and by running the very .robot suite (Robot Framework, a test dependency)
with stand-in Renode keywords that replay QEMU's console.
"""

import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import threading

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tools import board_config, emulation, firmware_build, learning, renode

TIMEOUT_S = 60
NRF = board_config.load_board("nrf52840")
EMULATOR = board_config.load_board("mps2_an386")


@pytest.fixture(scope="module")
def qemu_run(tmp_path_factory):
    """The default firmware on QEMU's board: its events and its raw lines."""
    firmware = firmware_build.build_firmware(EMULATOR.name, out_dir=tmp_path_factory.mktemp("qemu"))
    lines = []
    result = emulation.run_firmware(
        firmware.elf, EMULATOR.name, timeout=TIMEOUT_S, echo=lines.append
    )
    assert result.status == 0 and not result.timed_out, result.note
    return result.log.events, lines


@pytest.fixture(scope="module")
def nrf_firmware(tmp_path_factory):
    """The same model and inputs built for the nRF52840 (UARTE0 console)."""
    return firmware_build.build_firmware(NRF.name, out_dir=tmp_path_factory.mktemp("nrf"))


@pytest.fixture()
def learner_elf(nrf_firmware, tmp_path):
    """An nRF52840 ELF whose build.json names the learner app (the scripts
    read only that and the path; the learner build itself is tested in
    test_learner_firmware.py)."""
    folder = tmp_path / "learner"
    folder.mkdir()
    shutil.copy(nrf_firmware.elf, folder / "firmware.elf")
    (folder / "build.json").write_text(json.dumps({"board": NRF.name, "app": "learner_app"}))
    return folder / "firmware.elf"


def _event_lines(lines):
    return [line for line in lines if line.startswith("TT ")]


# -- the expectations against QEMU ---------------------------------------------------


@pytest.mark.firmware
def test_qemu_run_meets_the_expectations_derived_from_its_own_events(qemu_run):
    events, lines = qemu_run
    expectations = renode.expectations_from_events(events, EMULATOR)
    assert [e.line for e in expectations] == _event_lines(lines)
    assert renode.unmatched(expectations, lines) == []


@pytest.mark.firmware
def test_nrf52840_expects_its_cycle_counter_where_qemu_counts_instructions(qemu_run):
    events, lines = qemu_run
    expectations = renode.expectations_from_events(events, NRF)
    missing = renode.unmatched(expectations, lines)
    assert missing and missing[0].line.startswith('TT {"event":"invoke","index":0,')
    assert '"counter":"cycles"' in missing[0].pattern


@pytest.mark.firmware
def test_a_different_output_value_is_not_accepted(qemu_run):
    events, lines = qemu_run
    changed = json.loads(json.dumps(events))
    output = next(e for e in changed if e["event"] == "output")
    output["values"][0] += 1
    missing = renode.unmatched(renode.expectations_from_events(changed, EMULATOR), lines)
    assert missing and missing[0].line == renode.event_line(output)


def test_lines_must_come_in_order():
    first = renode.expectation({"event": "a", "n": 1}, NRF)
    second = renode.expectation({"event": "b", "n": 2}, NRF)
    lines = [second.line, first.line]
    assert renode.unmatched([first, second], lines) == [second]
    assert renode.unmatched([second], ["noise\r", second.line + "\r"]) == []


def test_board_dependent_fields_are_patterns_and_strings_are_quoted_like_the_firmware():
    stack = renode.expectation({"event": "stack", "used": 4984, "size": 16384}, NRF)
    assert renode.unmatched([stack], ['TT {"event":"stack","used":5100,"size":16384}']) == []
    assert renode.unmatched([stack], ['TT {"event":"stack","used":5100,"size":8192}'])
    error = {"event": "error", "message": 'bad "x"\\ \u00e9\n'}
    assert renode.event_line(error) == (
        'TT {"event":"error","message":"bad \\"x\\"\\\\ \\u00e9\\u000a"}'
    )
    assert renode.unmatched([renode.expectation(error, NRF)], [renode.event_line(error)]) == []


def test_reference_runs_without_an_exit_are_refused():
    with pytest.raises(renode.RenodeError, match="exit"):
        renode.expectations_from_events([{"event": "init"}], NRF)
    with pytest.raises(renode.RenodeError, match="no events"):
        renode.expectations_from_events([], NRF)


# -- the scripts -------------------------------------------------------------------


@pytest.mark.firmware
def test_resc_runs_the_elf_on_the_nrf52840_platform_with_its_uart0_console(nrf_firmware):
    resc = renode.console_resc(renode.check_elf(nrf_firmware.elf, NRF), NRF).splitlines()
    assert "machine LoadPlatformDescription @platforms/cpus/nrf52840.repl" in resc
    assert f"sysbus LoadELF @{nrf_firmware.elf.resolve()}" in resc
    assert (
        'machine LoadPlatformDescriptionFromString "dwt: Miscellaneous.DWT @ sysbus '
        '0xE0001000 { frequency: 64000000 }"'
    ) in resc
    assert resc.index("showAnalyzer sysbus.uart0") < resc.index("start")
    assert not any("nvmc" in line for line in resc)  # only the learner has a flash store


@pytest.mark.firmware
def test_robot_waits_for_every_expected_line_in_order(nrf_firmware, qemu_run):
    expectations = renode.expectations_from_events(qemu_run[0], NRF)
    suite = renode.robot_suite(nrf_firmware.elf.resolve(), NRF, expectations).splitlines()
    waits = [line for line in suite if line.strip().startswith("Wait For Line On Uart")]
    assert waits == [
        f"    Wait For Line On Uart    {renode.robot_escape(e.pattern)}    treatAsRegex=true"
        for e in expectations
    ]
    assert any("Create Terminal Tester    sysbus.uart0" in line for line in suite)
    assert waits[-1].split("    ")[2] == r'^TT \\{"event":"exit","status":0\\}\$'


def test_robot_escape():
    assert renode.robot_escape(r"a\{b}$") == r"a\\{b}\$"
    assert renode.robot_escape("${x} @{y} &{z} %{w}") == r"\${x} \@{y} \&{z} \%{w}"
    assert renode.robot_escape("#c k=v a|b") == r"\#c k\=v a\|b"
    assert renode.robot_escape(" two  spaces ") == "${SPACE}two${SPACE} spaces${SPACE}"
    assert renode.robot_escape("x\ny\tz\r") == r"x\ny\tz\r"


def test_robot_escape_round_trips_through_robot_framework(tmp_path):
    from robot import running as robot

    texts = [r"^TT \{\}$", "${x} @{y} #z k=v", " a  b ", "l1\nl2\t|", "(-?[0-9]+|null)"]
    suite_file = tmp_path / "escape.robot"
    suite_file.write_text(
        "*** Test Cases ***\nT\n"
        + "".join(f"    Record    {renode.robot_escape(t)}\n" for t in texts)
    )
    calls = _run_robot(robot, suite_file, tmp_path, lines=[])
    assert calls[-1] == ["return_code", 0]
    assert [c[1] for c in calls[:-1]] == texts


# A stand-in for Renode's keywords: the monitor commands are recorded, and
# the UART is QEMU's console, consumed as Renode's terminal tester does.
_FAKE_RENODE = """
import json
import re


class FakeRenode:
    ROBOT_LIBRARY_SCOPE = "SUITE"

    def __init__(self, calls, lines):
        self.calls_path = calls
        self.lines = json.load(open(lines))
        self.calls = []
        self.failing = []

    def _record(self, *call):
        self.calls.append(call)
        with open(self.calls_path, "w") as f:
            json.dump(self.calls, f)

    def record(self, text):
        self._record("record", text)

    def execute_command(self, command):
        self._record("execute", command)

    def create_terminal_tester(self, uart, timeout=None):
        self._record("tester", uart)

    def register_failing_uart_string(self, pattern, treatAsRegex=False):
        self._record("failing", pattern)
        self.failing.append(pattern if treatAsRegex else re.escape(pattern))

    def start_emulation(self):
        self._record("start")

    def wait_for_line_on_uart(self, content, treatAsRegex=False):
        self._record("wait", content)
        for i, line in enumerate(self.lines):
            for failing in self.failing:
                if re.search(failing, line):
                    raise AssertionError("failing string on the UART: " + line)
            if re.search(content if treatAsRegex else re.escape(content), line):
                self.lines = self.lines[i + 1:]
                return line
        raise AssertionError("no line matches " + content)
"""


def _run_robot(robot, suite_file, tmp_path, lines):
    library = tmp_path / "FakeRenode.py"
    library.write_text(_FAKE_RENODE)
    (tmp_path / "lines.json").write_text(json.dumps(lines))
    calls = tmp_path / "calls.json"
    calls.write_text("[]")
    suite = robot.TestSuite.from_file_system(str(suite_file))
    suite.resource.imports.library(str(library), args=[str(calls), str(tmp_path / "lines.json")])
    with open(tmp_path / "robot.out", "w") as out:
        result = suite.run(output=None, log=None, report=None, stdout=out, stderr=out)
    recorded = json.loads(calls.read_text())
    recorded.append(["return_code", result.return_code])
    return recorded


@pytest.mark.firmware
def test_robot_suite_passes_on_qemus_console_and_fails_on_a_wrong_line(
    nrf_firmware, qemu_run, tmp_path
):
    """The generated suite, run by Robot Framework against QEMU's console;
    the expectations follow QEMU's board (its counter counts instructions)."""
    from robot import running as robot

    events, lines = qemu_run
    elf = nrf_firmware.elf.resolve()
    suite_file = tmp_path / "firmware.robot"
    suite_file.write_text(
        renode.robot_suite(elf, NRF, renode.expectations_from_events(events, EMULATOR))
    )
    calls = _run_robot(robot, suite_file, tmp_path, lines)
    assert calls[-1] == ["return_code", 0]
    assert ["execute", f"sysbus LoadELF @{elf}"] in calls
    assert ["execute", "machine LoadPlatformDescription @platforms/cpus/nrf52840.repl"] in calls
    assert ["tester", "sysbus.uart0"] in calls
    assert [c[1] for c in calls if c[0] == "wait"] == [
        e.pattern for e in renode.expectations_from_events(events, EMULATOR)
    ]

    suite_file.write_text(
        renode.robot_suite(elf, NRF, renode.expectations_from_events(events, NRF))
    )  # "cycles": not what QEMU prints
    assert _run_robot(robot, suite_file, tmp_path, lines)[-1] == ["return_code", 1]


@pytest.mark.firmware
def test_learner_resc_puts_its_uart_on_a_raw_tcp_socket(learner_elf, tmp_path):
    scripts = renode.write_scripts(tmp_path / "out", learner_elf, NRF, port=4567)
    assert scripts.robot is None and scripts.port == 4567
    resc = scripts.resc.read_text()
    lines = resc.splitlines()
    assert 'emulation CreateServerSocketTerminal 4567 "learner_link" false' in lines
    assert lines.index("connector Connect sysbus.uart0 learner_link") < lines.index("start")
    assert f"sysbus LoadELF @{learner_elf.resolve()}" in lines
    assert "nvmc: Python.PythonPeripheral @ sysbus 0x4001e000" in lines
    script = resc.split("script: '''\n")[1].split("'''")[0]
    compile(script, "nvmc", "exec")  # the peripheral's script is valid Python
    assert "request.Offset == 0x508" in script and "% 4096" in script
    with pytest.raises(renode.RenodeError, match="1..65535"):
        renode.learner_resc(learner_elf, NRF, port=70000)


@pytest.mark.firmware
def test_boards_without_a_renode_platform_or_uarte_console_are_refused(nrf_firmware):
    with pytest.raises(renode.RenodeError, match="no Renode platform"):
        renode.console_resc(nrf_firmware.elf, EMULATOR)
    semihosting = dict(NRF.data, console={"kind": "semihosting"})
    with pytest.raises(renode.RenodeError, match="need a UARTE console"):
        renode.console_resc(nrf_firmware.elf, board_config.Board(NRF.name, NRF.path, semihosting))
    with pytest.raises(renode.RenodeError, match="was built for nrf52840"):
        renode.check_elf(nrf_firmware.elf, board_config.Board("other", NRF.path, NRF.data))


def test_serial_link_takes_a_socket_url_as_learn_py_port():
    """learn.py --port socket://HOST:PORT reaches a TCP server such as
    Renode's socket terminal."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def echo():
        connection, _ = server.accept()
        with connection:
            connection.sendall(connection.recv(16)[::-1])

    with pytest.raises(learning.SessionError, match="cannot open serial port foo://x"):
        learning.SerialLink("foo://x")
    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    link = learning.SerialLink(f"socket://127.0.0.1:{server.getsockname()[1]}")
    try:
        link.write(b"\x01\x02\x03")
        received = b""
        while len(received) < 3:
            chunk = link.read(3 - len(received), timeout=5)
            assert chunk, "the server did not answer"
            received += chunk
        assert received == b"\x03\x02\x01"
    finally:
        link.close()
        server.close()


# -- the CLI -----------------------------------------------------------------------


def _emulate(*args, path=None):
    env = dict(os.environ)
    if path is not None:
        env["PATH"] = str(path)
    return subprocess.run(
        [sys.executable, "tools/emulate.py", "--emulator=renode", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S * 3,
        env=env,
    )


def _one_line_error(cli, text):
    assert cli.returncode == 2, cli.stderr
    assert cli.stderr.count("\n") == 1 and cli.stderr.startswith("error: "), cli.stderr
    assert text in cli.stderr and "Traceback" not in cli.stderr


@pytest.mark.firmware
def test_cli_without_renode_says_what_to_install(nrf_firmware, learner_elf, tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    cli = _emulate(f"--elf={nrf_firmware.elf}", path=empty)
    _one_line_error(cli, "renode-test not found on PATH; install Renode")
    cli = _emulate(f"--elf={learner_elf}", path=empty)
    _one_line_error(cli, "renode not found on PATH")


@pytest.mark.firmware
def test_cli_writes_the_scripts_expecting_qemus_lines(nrf_firmware, qemu_run, tmp_path):
    events, _ = qemu_run
    events_file = tmp_path / "events.json"
    events_file.write_text(json.dumps(events))
    out = tmp_path / "scripts"
    cli = _emulate(
        "--renode_scripts_only",
        f"--elf={nrf_firmware.elf}",
        f"--expect_events={events_file}",
        f"--renode_out={out}",
    )
    assert cli.returncode == 0, cli.stderr
    robot = (out / "firmware.robot").read_text()
    assert robot.count("Wait For Line On Uart") == len(events)
    assert renode.robot_escape(renode.expectations_from_events(events, NRF)[1].pattern) in robot
    assert f"sysbus LoadELF @{nrf_firmware.elf.resolve()}" in (out / "firmware.resc").read_text()

    cli = _emulate(
        "--renode_scripts_only", f"--elf={nrf_firmware.elf}", f"--renode_out={out}"
    )  # no reference: only the exit line
    assert cli.returncode == 0 and "only the exit line" in cli.stderr
    assert (out / "firmware.robot").read_text().count("Wait For Line On Uart") == 1


@pytest.mark.firmware
def test_cli_learner_scripts_name_the_socket_for_learn_py(learner_elf, tmp_path):
    cli = _emulate(
        "--renode_scripts_only",
        f"--elf={learner_elf}",
        "--learner_port=4100",
        f"--renode_out={tmp_path}",
    )
    assert cli.returncode == 0, cli.stderr
    assert "--port socket://localhost:4100" in cli.stderr
    assert "CreateServerSocketTerminal 4100" in (tmp_path / "learner.resc").read_text()


@pytest.mark.firmware
def test_cli_bad_inputs_are_one_line_errors(nrf_firmware, qemu_run, tmp_path):
    _one_line_error(_emulate("--renode_scripts_only", "--board=mps2_an386"), "no Renode platform")
    _one_line_error(
        _emulate("--renode_scripts_only", f"--elf={tmp_path / 'no.elf'}"), "does not exist"
    )
    _one_line_error(
        _emulate(
            "--renode_scripts_only",
            f"--elf={nrf_firmware.elf}",
            f"--expect_events={tmp_path / 'none.json'}",
        ),
        "does not exist",
    )
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    _one_line_error(
        _emulate("--renode_scripts_only", f"--elf={nrf_firmware.elf}", f"--expect_events={bad}"),
        "is not JSON",
    )
    bad.write_text('[{"event":"init"}]')
    _one_line_error(
        _emulate("--renode_scripts_only", f"--elf={nrf_firmware.elf}", f"--expect_events={bad}"),
        "did not end with an exit event",
    )
    emulator_elf = firmware_build.build_firmware(EMULATOR.name, out_dir=tmp_path / "q").elf
    _one_line_error(
        _emulate("--renode_scripts_only", f"--elf={emulator_elf}"), "was built for mps2_an386"
    )
    _one_line_error(_emulate("--learner_port=0"), "--learner_port")
