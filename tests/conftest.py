"""Test-session setup: the host library is rebuilt first when any runtime
source is newer than it, so no test ever runs against a stale build (and a
build failure fails the run); and a test module marked `tensorflow` is not
collected when -m leaves out all its tests (tiers.py), so the quick loop
never imports TensorFlow."""

import pathlib
import sys

import pytest

TESTS = pathlib.Path(__file__).resolve().parent
REPO = TESTS.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import tiers
from tools import host_build


@pytest.fixture(scope="session", autouse=True)
def host_library():
    return host_build.build_host_if_stale()


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
