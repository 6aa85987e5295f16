"""The learner firmware (boards/app/learner_app.c): build it for a board,
and run it in QEMU as a device a host talks to over its UART.

Only the model, the plan and code go into flash, plus whole pages at the
end of flash for two slots of learned state; RAM holds the training arena,
one frame buffer and the held-out samples. Samples arrive at run time
(tflm_training.learner speaks the protocol; tools/learn.py drives it).
"""

import ctypes
import dataclasses
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import numpy as np

import tflm_training
from tflm_training import learner
from tools import board_config, emulation, firmware_build, training_firmware

APP = "learner_app"
PARTS = ("link", "flash_store")
DEFAULT_HELDOUT_SAMPLES = 10
# The frame buffer also carries INFO (96 bytes + 8 per plan layer) and
# PULL answers; it is at least this big.
MIN_PAYLOAD = 256


@dataclasses.dataclass(frozen=True)
class LearnerLayout:
    """Where the learner's bytes go, from the host build of the runtime."""

    arena_bytes: int
    state_bytes: int  # the learned state payload
    state_region_bytes: int  # flash for two slots, whole pages
    buffer_bytes: int  # the largest frame
    heldout_bytes: int
    input_bytes: int
    undo_bytes: int = 0  # > 0: every training step is all or nothing

    @property
    def ram_bytes(self):
        return self.arena_bytes + self.buffer_bytes + self.heldout_bytes + self.undo_bytes


def buffer_bytes(input_bytes, plan_layers):
    """The frame buffer: a sample with its header, or INFO / PULL answers."""
    payload = max(input_bytes + 8, MIN_PAYLOAD + 8 * plan_layers)
    return -(-(payload + 16) // 4) * 4


def ram_besides_arena(input_bytes, plan_layers, heldout_samples=DEFAULT_HELDOUT_SAMPLES):
    """RAM the learner needs besides the training arena: the frame buffer
    and the held-out samples (each with its int32 label)."""
    return buffer_bytes(input_bytes, plan_layers) + heldout_samples * (input_bytes + 4)


def layout(
    model_bytes, plan_bytes, board, heldout_samples=DEFAULT_HELDOUT_SAMPLES, atomic_steps=False
):
    try:
        trainer = tflm_training.Trainer(model_bytes, plan_bytes)
    except (tflm_training.TflmTrainingError, ValueError) as e:
        raise firmware_build.BuildError(f"the runtime cannot train the model: {e}") from None
    facts = firmware_build.model_facts(model_bytes)
    input_bytes = int(np.prod(facts.input_shape)) * facts.input_dtype.itemsize
    page = int(board.data["flash_store"]["page_bytes"])
    return LearnerLayout(
        trainer.arena_used_bytes(),
        trainer.state_bytes(),
        learner.region_bytes(trainer.state_bytes(), page),
        buffer_bytes(input_bytes, len(trainer.plan.layers)),
        int(heldout_samples) * (input_bytes + 4),
        input_bytes,
        learner.undo_bytes(trainer.state_bytes()) if atomic_steps else 0,
    )


def build_learner_firmware(
    board_name,
    model_bytes,
    plan,
    out_dir=None,
    heldout_samples=DEFAULT_HELDOUT_SAMPLES,
    verbose=False,
    atomic_steps=False,
):
    """Builds the learner app; returns (Firmware, LearnerLayout).
    atomic_steps: True gives it an undo buffer (the learned state's size in
    RAM again) so every training step is all or nothing; without one a
    diverged step restores the saved state. "auto": with one when the
    firmware still fits the board."""
    if atomic_steps == "auto":
        try:
            return _build(board_name, model_bytes, plan, out_dir, heldout_samples, verbose, True)
        except firmware_build.OverLimitError:
            return _build(board_name, model_bytes, plan, out_dir, heldout_samples, verbose, False)
    return _build(
        board_name, model_bytes, plan, out_dir, heldout_samples, verbose, bool(atomic_steps)
    )


def _build(board_name, model_bytes, plan, out_dir, heldout_samples, verbose, atomic_steps):
    board = board_config.load_board(board_name)
    model_bytes = bytes(model_bytes)
    plan_bytes = training_firmware.resolve_plan(plan, model_bytes)
    if not isinstance(heldout_samples, int) or heldout_samples < 0:
        raise firmware_build.BuildError(
            f"held-out samples must be an integer >= 0, got {heldout_samples!r}"
        )
    for part in PARTS:
        if not board.data.get(part):
            raise firmware_build.BuildError(
                f'board {board.name} has no "{part}" in its board.json, which the learner '
                "firmware needs (see boards/README.md)"
            )
    sizes = layout(model_bytes, plan_bytes, board, heldout_samples, atomic_steps)
    out_dir = pathlib.Path(out_dir or firmware_build.default_out_dir(board.name, APP)).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "model.tflite").write_bytes(model_bytes)
    (out_dir / "plan.bin").write_bytes(plan_bytes)
    defines = [
        f"-DAPP_ARENA_BYTES={sizes.arena_bytes}",
        f"-DAPP_BUFFER_BYTES={sizes.buffer_bytes}",
        f"-DAPP_HELDOUT_BYTES={max(4, sizes.heldout_bytes)}",
        f"-DAPP_UNDO_BYTES={sizes.undo_bytes}",
    ]
    embedded = {
        "model": len(model_bytes),
        "plan": len(plan_bytes),
        "learned state (2 slots)": sizes.state_region_bytes,
        "arena": sizes.arena_bytes,
        "held-out samples": sizes.heldout_bytes,
        "undo buffer": sizes.undo_bytes,
    }
    firmware = firmware_build.build_app(
        board_name,
        APP,
        out_dir,
        defines=defines,
        with_runtime=True,
        embedded=embedded,
        verbose=verbose,
        parts=PARTS,
        state_bytes=sizes.state_region_bytes,
        kernels=firmware_build.kernel_symbols(model_bytes, training=True),
        gradient_bits=training_firmware.gradient_bits(plan_bytes),
    )
    firmware.summary.update(
        {
            "model_bytes": len(model_bytes),
            "plan_bytes": len(plan_bytes),
            "image_bytes": firmware.bin.stat().st_size,
            **dataclasses.asdict(sizes),
        }
    )
    (out_dir / "build.json").write_text(json.dumps(firmware.summary, indent=2) + "\n")
    return firmware, sizes


# -- the emulated device ----------------------------------------------------------


def _die_with_parent():
    """In the QEMU child: the kernel kills it when the host tool dies, even
    by SIGKILL, so no emulated device lingers on its flash file."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class EmulatedLearner:
    """The learner firmware running in QEMU: its UART is this object's link
    (a Unix socket), or with serial="pty" a pseudo-terminal at .pty_path
    that a serial-port client (pyserial) opens. Its flash persists in
    `flash_path`. close() is a power cut at an arbitrary instant; a new
    EmulatedLearner on the same flash file is the next power-up.

    cut: power fails at that flash event (tt_flash_ram.h); the firmware then
    exits with status 71. worn_page: that page of the state region no
    longer programs or erases.
    """

    def __init__(
        self,
        elf,
        flash_path,
        board_name="mps2_an386",
        cut=None,
        worn_page=None,
        serial="socket",
        connect_timeout=30.0,
    ):
        if shutil.which(emulation.QEMU) is None:
            raise emulation.EmulationError(
                f"{emulation.QEMU} not found on PATH. {emulation.QEMU_HINT}"
            )
        board, _ = emulation.resolve_board(board_name)
        emulation.check_elf(elf, board)
        self._dir = tempfile.TemporaryDirectory(prefix="tt-learner-")
        socket_path = os.path.join(self._dir.name, "uart")
        flash_path = str(pathlib.Path(flash_path).resolve())
        if " " in flash_path:
            raise emulation.EmulationError(
                f"the emulated flash file {flash_path} has a space in its path, which QEMU's "
                "semihosting command line cannot carry; use a path without spaces (--out)"
            )
        # QEMU's option syntax doubles a comma inside a value.
        args = ["learner", "flash=" + flash_path.replace(",", ",,")]
        if cut is not None:
            args.append(f"cut={int(cut)}")
        if worn_page is not None:
            args.append(f"worn_page={int(worn_page)}")
        if serial == "socket":
            uart = [
                "-chardev",
                f"socket,id=link,path={socket_path},server=on,wait=on",
                "-serial",
                "chardev:link",
            ]
        elif serial == "pty":
            uart = ["-serial", "pty"]
        else:
            raise ValueError(f"serial must be 'socket' or 'pty', not {serial!r}")
        qemu = board.qemu
        command = [
            emulation.QEMU,
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
            *uart,
            "-semihosting-config",
            "enable=on,target=native," + ",".join(f"arg={a}" for a in args),
        ]
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=_die_with_parent,
        )
        self.pty_path = None
        self._socket = None
        deadline = time.monotonic() + connect_timeout
        if serial == "pty":
            self.pty_path = self._read_pty_path(deadline)
        else:
            self._socket = self._connect(socket_path, deadline)

    def _connect(self, path, deadline):
        while True:
            if self.process.poll() is not None:
                raise emulation.EmulationError(
                    f"QEMU exited with {self.process.returncode}: "
                    f"{self.process.stderr.read().decode(errors='replace')[-500:]}"
                )
            try:
                link = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                link.connect(path)
                return link
            except (FileNotFoundError, ConnectionRefusedError):
                link.close()
                if time.monotonic() > deadline:
                    raise emulation.EmulationError("QEMU did not open its UART socket")
                time.sleep(0.01)

    def _read_pty_path(self, deadline):
        seen = b""  # QEMU names the pty on its standard output
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            seen += line
            found = re.search(rb"(/dev/pts/\d+)", line)
            if found:
                return found.group(1).decode()
            if not line and self.process.poll() is not None:
                break
        raise emulation.EmulationError(f"QEMU gave no pty: {seen.decode(errors='replace')}")

    def write(self, data):
        self._socket.sendall(data)

    def read(self, size, timeout):
        self._socket.settimeout(max(timeout, 0.001))
        try:
            data = self._socket.recv(size)
        except socket.timeout:
            return b""
        if not data:
            raise ConnectionError(self.exit_note())
        return data

    def wait(self, timeout):
        """QEMU's exit status (the firmware's), or None while it runs."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def exit_note(self):
        code = self.process.poll()
        if code is None:
            return "the emulated device closed its UART"
        return f"the emulated device stopped (exit status {code})"

    def close(self):
        """Power off, now."""
        if self._socket is not None:
            self._socket.close()
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            stream.close()
        self._dir.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
