"""Test-session setup: the host library (built by `pip install -e .` or
`python tools/build.py --host`) is checked first, so no test ever runs
against a missing or out-of-date build: the run stops with the command that
rebuilds it. A test module marked `tensorflow` is not collected when -m
leaves out all its tests (tiers.py), so the quick loop never imports
TensorFlow."""

import pathlib
import sys

import pytest

TESTS = pathlib.Path(__file__).resolve().parent
REPO = TESTS.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import tiers
from tflm_training import _native
from tflm_training.errors import LibraryNotBuiltError


@pytest.fixture(scope="session", autouse=True)
def host_library():
    try:
        _native.check_built()
    except LibraryNotBuiltError as error:
        pytest.exit(str(error), returncode=1)


def pytest_ignore_collect(collection_path, config):
    """A test module marked `tensorflow` as a whole is not collected, so not
    imported (nor is TensorFlow), when the -m expression can select none of
    its tests (tiers.py)."""
    markexpr = config.option.markexpr
    if not markexpr or collection_path.suffix != ".py":
        return None
    if not collection_path.name.startswith("test_") or collection_path.resolve().parent != TESTS:
        return None
    marks = tiers.module_marks(collection_path)
    if "tensorflow" not in marks:
        return None
    try:
        selectable = tiers.may_select(markexpr, marks)
    except Exception:  # a bad expression: pytest reports it when it deselects
        return None
    return None if selectable else True
