"""Builds the runtime as a host shared library for the Python binding."""
import pathlib
import shutil
import subprocess

REPO = pathlib.Path(__file__).resolve().parents[1]
RUNTIME = REPO / "tflm_training" / "runtime"
BUILD_DIR = REPO / "tflm_training" / "_build"
LIBRARY_NAME = "libtflm_training.so"

COMMON_FLAGS = [
    "-std=c11", "-O2", "-fPIC", "-shared", "-fwrapv", "-ffp-contract=off",
    "-Wall", "-Wextra", "-Werror",
]
SANITIZE_FLAGS = [
    "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
]


class BuildError(RuntimeError):
    pass


def runtime_sources():
    """Every C source of the runtime, in a stable order."""
    return sorted(RUNTIME.rglob("*.c"))


def include_dirs():
    return [RUNTIME]


def library_path(sanitize=False):
    """Where --host (or --host --sanitize) puts the shared library."""
    if sanitize:
        return BUILD_DIR / "sanitize" / LIBRARY_NAME
    return BUILD_DIR / LIBRARY_NAME


def build_host(sanitize=False, compiler="gcc", verbose=False):
    """Compiles and links all runtime sources; returns the library path."""
    if shutil.which(compiler) is None:
        raise BuildError(f"C compiler '{compiler}' not found (Debian: apt-get install gcc)")
    sources = runtime_sources()
    if not sources:
        raise BuildError(f"no C sources under {RUNTIME}")
    out = library_path(sanitize)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    command = [compiler, *COMMON_FLAGS]
    if sanitize:
        command += SANITIZE_FLAGS
    command += [f"-I{d}" for d in include_dirs()]
    # Missing symbols fail here, by name, rather than at ctypes load time.
    command += ["-Wl,--no-undefined", "-o", str(tmp), *map(str, sources)]
    if verbose:
        print(" ".join(command))
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise BuildError(f"host build failed:\n{result.stdout}{result.stderr}")
    # Rename so a concurrently loading process never sees a half-written file.
    tmp.replace(out)
    return out


def build_host_if_stale(sanitize=False):
    """Rebuilds the library when a runtime source or header is newer."""
    out = library_path(sanitize)
    if out.is_file():
        built = out.stat().st_mtime
        inputs = [*runtime_sources(), *RUNTIME.rglob("*.h")]
        if all(p.stat().st_mtime <= built for p in inputs):
            return out
    return build_host(sanitize=sanitize)
