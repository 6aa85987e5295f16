"""What a result was measured on: machine, tool versions, source state."""

import datetime
import importlib
import importlib.metadata
import os
import platform
import shlex
import subprocess
import sys

from tflm_training import _native, host_build
from tflm_training.errors import LibraryNotBuiltError
from tools import emulation, firmware_build

REPO = host_build.REPO


def require_host_library():
    """Exits with the fix, before any measuring, when the host library
    (built by `pip install -e .`) is missing or out of date."""
    try:
        _native.check_built()
    except LibraryNotBuiltError as error:
        sys.exit(f"error: {error}")


def _first_line(command):
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unavailable ({error.__class__.__name__})"
    text = (result.stdout or result.stderr).strip()
    return text.splitlines()[0] if text else "unavailable"


def cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _tflite_micro_version():
    version = importlib.metadata.version("tflite_micro")
    try:
        build = importlib.import_module("tflite_micro.python.tflite_micro._version").__version__
    except (ImportError, AttributeError):
        return version
    return f"{version} ({build})"


def package_version(name):
    """The installed version of a Python distribution, or a note."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _git(*args):
    return _first_line(["git", "-C", str(REPO), *args])


def _runtime_changes():
    """Uncommitted changes to the C runtime (others may be editing it)."""
    result = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--", "tflm_training/runtime"],
        capture_output=True,
        text=True,
        check=False,
    )
    return [line[3:] for line in result.stdout.splitlines()]


def load_average():
    """The 1, 5 and 15 minute load averages (other work on the machine
    shows up in the host times, mostly in the p90)."""
    return [round(value, 2) for value in os.getloadavg()]


def describe(load_at_start):
    """A dict of everything the results depend on besides the code."""
    return {
        "load_average_at_start": load_at_start,
        "load_average_at_end": load_average(),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": importlib.metadata.version("numpy"),
        "tflite_micro": _tflite_micro_version(),
        "gcc": _first_line(["gcc", "--version"]),
        "arm_none_eabi_gcc": _first_line([firmware_build.GCC, "--version"]),
        "qemu": _first_line([emulation.QEMU, "--version"]),
        "host_cflags": " ".join(host_build.COMMON_FLAGS),
        "firmware_cflags": " ".join(firmware_build.C_FLAGS),
        "git_commit": _git("rev-parse", "HEAD"),
        "runtime_uncommitted": _runtime_changes(),
    }


def command_line():
    """The command that reproduces this run, from the repository root."""
    script = os.path.relpath(os.path.abspath(sys.argv[0]), REPO)
    return shlex.join(["python", script, *sys.argv[1:]])
