"""Test-session setup: the host library (built by `pip install -e .` or
`python tools/build.py --host`) is checked first, so no test ever runs
against a missing or out-of-date build: the run stops with the command that
rebuilds it."""

import pathlib
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tflm_training import _native
from tflm_training.errors import LibraryNotBuiltError


@pytest.fixture(scope="session", autouse=True)
def host_library():
    try:
        _native.check_built()
    except LibraryNotBuiltError as error:
        pytest.exit(str(error), returncode=1)
