"""Builds the runtime as a host shared library for the Python binding."""

import pathlib
import shutil
import subprocess
import tempfile

from tools import output_folder

REPO = pathlib.Path(__file__).resolve().parents[1]
RUNTIME = REPO / "tflm_training" / "runtime"
BUILD_DIR = REPO / "tflm_training" / "_build"
LIBRARY_NAME = "libtflm_training.so"
LOCK_NAME = ".lock"  # in BUILD_DIR: builds by concurrent processes take turns

COMMON_FLAGS = [
    "-std=c11",
    "-O2",
    "-fPIC",
    "-shared",
    "-fwrapv",
    "-ffp-contract=off",
    "-Wall",
    "-Wextra",
    "-Werror",
]
SANITIZE_FLAGS = [
    "-g",
    "-fno-omit-frame-pointer",
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
]


class BuildError(RuntimeError):
    pass


def runtime_sources():
    """Every C source of the runtime, in a stable order."""
    return sorted(RUNTIME.rglob("*.c"))


def include_dirs():
    return [RUNTIME]


# Builds the Cortex-M4 DSP paths on C definitions of the instructions
# (tt_dsp.h), so that the host can test them against the portable ones.
EMULATE_DSP_FLAGS = ["-DTT_EMULATE_DSP=1"]

GRADIENT_BITS = (32, 16)


def gradient_flags(gradient_bits):
    """Compiler flags for activation gradients of `gradient_bits`
    (runtime/math/tt_grad.h); none for the default 32."""
    if gradient_bits not in GRADIENT_BITS:
        raise BuildError(f"gradients are stored in 32 or 16 bits, not {gradient_bits}")
    return [] if gradient_bits == 32 else [f"-DTT_GRADIENT_BITS={gradient_bits}"]


def library_path(sanitize=False, emulate_dsp=False, gradient_bits=32):
    """Where --host (or --host --sanitize) puts the shared library; the
    emulated-DSP and 16-bit gradient variants go beside it (the latter where
    tflm_training._native looks for it)."""
    folder = BUILD_DIR
    if sanitize:
        folder = folder / "sanitize"
    if emulate_dsp:
        folder = folder / "emulated_dsp"
    if gradient_bits != 32:
        folder = folder / f"gradients_{gradient_bits}"
    return folder / LIBRARY_NAME


def _locked():
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    return output_folder.file_lock(BUILD_DIR / LOCK_NAME)


def build_host(sanitize=False, compiler="gcc", verbose=False, emulate_dsp=False, gradient_bits=32):
    """Compiles and links all runtime sources; returns the library path."""
    with _locked():
        return _build(sanitize, compiler, verbose, emulate_dsp, gradient_bits)


def _build(sanitize, compiler, verbose, emulate_dsp=False, gradient_bits=32):
    if shutil.which(compiler) is None:
        raise BuildError(f"C compiler '{compiler}' not found (Debian: apt-get install gcc)")
    sources = runtime_sources()
    if not sources:
        raise BuildError(f"no C sources under {RUNTIME}")
    flags = gradient_flags(gradient_bits)
    out = library_path(sanitize, emulate_dsp, gradient_bits)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=".build-", dir=out.parent))
    try:
        tmp = staging / out.name
        command = [compiler, *COMMON_FLAGS]
        if sanitize:
            command += SANITIZE_FLAGS
        if emulate_dsp:
            command += EMULATE_DSP_FLAGS
        command += flags
        command += [f"-I{d}" for d in include_dirs()]
        # Missing symbols fail here, by name, rather than at ctypes load time.
        command += ["-Wl,--no-undefined", "-o", str(tmp), *map(str, sources)]
        if verbose:
            print(" ".join(command))
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        if result.returncode != 0:
            raise BuildError(f"host build failed:\n{result.stdout}{result.stderr}")
        # Rename so a concurrently loading process never sees a half-written file.
        tmp.replace(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _fresh(out):
    if not out.is_file():
        return False
    built = out.stat().st_mtime
    inputs = [*runtime_sources(), *RUNTIME.rglob("*.h")]
    return all(p.stat().st_mtime <= built for p in inputs)


def build_host_if_stale(sanitize=False, emulate_dsp=False, gradient_bits=None):
    """Rebuilds the library when a runtime source or header is newer. Under
    the build lock, so a process waiting on another's build finds it fresh.
    gradient_bits None: the library of every gradient width (a plan picks
    its own); returns the default's path."""
    if gradient_bits is None:
        for bits in reversed(GRADIENT_BITS):
            out = build_host_if_stale(sanitize, emulate_dsp, bits)
        return out
    out = library_path(sanitize, emulate_dsp, gradient_bits)
    if _fresh(out):
        return out
    with _locked():
        if _fresh(out):
            return out
        return _build(sanitize, "gcc", False, emulate_dsp, gradient_bits)
