"""Hostile bytes: thousands of mutated models against an ASan + UBSan build.

The driver (tests/fuzz/fuzz_models.c) aborts on any out-of-bounds access or
undefined behaviour; the timeout catches hangs. The run is bounded by both an
iteration count and seconds, and seeded, so it is reproducible.
"""

import pathlib
import re
import subprocess

from tools import host_build

FUZZ_DIR = pathlib.Path(__file__).resolve().parent / "fuzz"
MODELS = sorted((pathlib.Path(__file__).resolve().parent / "models").glob("*.tflite"))
ITERATIONS = 4000
SECONDS = 60


def _build_fuzzer(out_dir):
    binary = out_dir / "fuzz_models"
    flags = [f for f in host_build.COMMON_FLAGS if f not in ("-shared", "-fPIC")]
    command = ["gcc", *flags, *host_build.SANITIZE_FLAGS,
               *[f"-I{d}" for d in host_build.include_dirs()],
               "-o", str(binary), str(FUZZ_DIR / "fuzz_models.c"),
               *map(str, host_build.runtime_sources())]
    subprocess.run(command, check=True, capture_output=True, text=True)
    return binary


def test_mutated_models_never_crash_the_runtime(tmp_path):
    binary = _build_fuzzer(tmp_path)
    result = subprocess.run(
        [str(binary), str(SECONDS), str(ITERATIONS), "20261122", *map(str, MODELS)],
        capture_output=True, text=True, timeout=SECONDS + 120)
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    counts = dict(re.findall(r"(\w+)=(\d+)", result.stdout))
    assert int(counts["iterations"]) >= 1000, result.stdout
    # Mutations must exercise both paths: models init rejects and ones it runs.
    assert int(counts["accepted"]) > 0 and int(counts["rejected"]) > 0, result.stdout
