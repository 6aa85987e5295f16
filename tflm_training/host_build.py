"""Builds the runtime as a host shared library for the Python binding.

The package build (setup.py) runs build_host_if_stale() for every gradient
width, so `pip install -e .` leaves a loadable library; `python
tools/build.py --host` rebuilds it by hand. Beside each library lies the
SHA-256 of the sources and flags it was built from and of the library file
itself, which tflm_training._native compares before loading it: a library
built from other sources, or damaged since, is refused, never loaded by
mistake (the loader cannot survive a truncated one).

Standard library only: setup.py loads this file before any dependency is
installed.
"""

import contextlib
import fcntl
import hashlib
import pathlib
import shutil
import subprocess
import tempfile

PACKAGE = pathlib.Path(__file__).resolve().parent
REPO = PACKAGE.parent
RUNTIME = PACKAGE / "runtime"
BUILD_DIR = PACKAGE / "_build"
LIBRARY_NAME = "libtflm_training.so"
DIGEST_SUFFIX = ".sources"  # beside the library: what it was built from, and its own digest
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
# Builds the Cortex-M4 DSP paths on C definitions of the instructions
# (tt_dsp.h), so that the host can test them against the portable ones.
EMULATE_DSP_FLAGS = ["-DTT_EMULATE_DSP=1"]

GRADIENT_BITS = (32, 16)
REBUILD_HINT = "python tools/build.py --host"


class BuildError(RuntimeError):
    pass


@contextlib.contextmanager
def file_lock(path):
    """An exclusive fcntl lock on `path` (created if missing) while inside."""
    with open(path, "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def runtime_sources():
    """Every C source of the runtime, in a stable order."""
    return sorted(RUNTIME.rglob("*.c"))


def include_dirs():
    return [RUNTIME]


def gradient_flags(gradient_bits):
    """Compiler flags for activation gradients of `gradient_bits`
    (runtime/math/tt_grad.h); none for the default 32."""
    if gradient_bits not in GRADIENT_BITS:
        raise BuildError(f"gradients are stored in 32 or 16 bits, not {gradient_bits}")
    return [] if gradient_bits == 32 else [f"-DTT_GRADIENT_BITS={gradient_bits}"]


def library_path(sanitize=False, emulate_dsp=False, gradient_bits=32, build_dir=None):
    """Where the library of these options goes: `build_dir` (default
    BUILD_DIR) for the default, a subfolder per variant (the 16-bit one
    where tflm_training._native looks for it)."""
    folder = pathlib.Path(build_dir or BUILD_DIR)
    if sanitize:
        folder = folder / "sanitize"
    if emulate_dsp:
        folder = folder / "emulated_dsp"
    if gradient_bits != 32:
        folder = folder / f"gradients_{gradient_bits}"
    return folder / LIBRARY_NAME


def compile_flags(sanitize=False, emulate_dsp=False, gradient_bits=32):
    flags = list(COMMON_FLAGS)
    if sanitize:
        flags += SANITIZE_FLAGS
    if emulate_dsp:
        flags += EMULATE_DSP_FLAGS
    return flags + gradient_flags(gradient_bits)


def sources_digest(flags):
    """SHA-256 over the compiler flags and every runtime source and header
    (path and bytes): equal digests, equal libraries."""
    digest = hashlib.sha256("\0".join(flags).encode())
    for path in sorted([*RUNTIME.rglob("*.c"), *RUNTIME.rglob("*.h")]):
        digest.update(b"\0" + path.relative_to(RUNTIME).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _digest_path(library):
    return library.with_name(library.name + DIGEST_SUFFIX)


def _file_digest(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def built_record(library):
    """(sources digest, library digest) recorded when `library` was built,
    or None (no record of it, or not one this module wrote)."""
    try:
        lines = _digest_path(pathlib.Path(library)).read_text().split()
    except (OSError, UnicodeDecodeError):
        return None
    return tuple(lines) if len(lines) == 2 else None


def staleness(library, flags):
    """Why `library` is not the build of these sources with `flags`, intact,
    or None when it is. A package without its runtime sources (an installed
    wheel) has nothing to compare the sources with: its library is only
    checked to be the file that was built."""
    library = pathlib.Path(library)
    if not library.is_file():
        return f"{library} is missing"
    record = built_record(library)
    if record is None:
        return f"{library} has no record of the sources it was built from"
    if RUNTIME.is_dir() and record[0] != sources_digest(flags):
        return (
            f"{library} was built from other runtime sources than those in {RUNTIME} "
            "(a runtime file changed since it was built)"
        )
    if record[1] != _file_digest(library):
        return f"{library} is not the file that was built (damaged or replaced since)"
    return None


def build_host(
    sanitize=False,
    compiler="gcc",
    verbose=False,
    emulate_dsp=False,
    gradient_bits=32,
    build_dir=None,
):
    """Compiles and links all runtime sources; returns the library path."""
    out = library_path(sanitize, emulate_dsp, gradient_bits, build_dir)
    with _locked(build_dir):
        return _build(out, compiler, verbose, compile_flags(sanitize, emulate_dsp, gradient_bits))


def build_host_if_stale(sanitize=False, emulate_dsp=False, gradient_bits=None, build_dir=None):
    """Builds the library unless it is already the build of today's sources.
    Under the build lock, so a process waiting on another's build finds it
    current. gradient_bits None: the library of every gradient width (a plan
    picks its own); returns the default's path."""
    if gradient_bits is None:
        for bits in reversed(GRADIENT_BITS):
            out = build_host_if_stale(sanitize, emulate_dsp, bits, build_dir)
        return out
    out = library_path(sanitize, emulate_dsp, gradient_bits, build_dir)
    flags = compile_flags(sanitize, emulate_dsp, gradient_bits)
    if staleness(out, flags) is None:
        return out
    with _locked(build_dir):
        if staleness(out, flags) is None:
            return out
        return _build(out, "gcc", False, flags)


def _locked(build_dir):
    folder = pathlib.Path(build_dir or BUILD_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    return file_lock(folder / LOCK_NAME)


def _build(out, compiler, verbose, flags):
    if shutil.which(compiler) is None:
        raise BuildError(f"C compiler '{compiler}' not found (Debian: apt-get install gcc)")
    sources = runtime_sources()
    if not sources:
        raise BuildError(f"no C sources under {RUNTIME}")
    digest = sources_digest(flags)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=".build-", dir=out.parent))
    try:
        tmp = staging / out.name
        command = [compiler, *flags, *(f"-I{d}" for d in include_dirs())]
        # Missing symbols fail here, by name, rather than at ctypes load time.
        command += ["-Wl,--no-undefined", "-o", str(tmp), *map(str, sources)]
        if verbose:
            print(" ".join(command))
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        if result.returncode != 0:
            raise BuildError(f"host build failed:\n{result.stdout}{result.stderr}")
        # Renames, so a concurrently loading process never sees a half-written
        # file; the digest last, so a cut between the two leaves a library
        # that reads as stale and is rebuilt, never a stale one read as current.
        built = _file_digest(tmp)
        tmp.replace(out)
        record = staging / (out.name + DIGEST_SUFFIX)
        record.write_text(f"{digest}\n{built}\n")
        record.replace(_digest_path(out))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
