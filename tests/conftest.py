"""Test-session setup: the host library is rebuilt first when any runtime
source is newer than it, so no test ever runs against a stale build (and a
build failure fails the run)."""

import pathlib
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tools import host_build


@pytest.fixture(scope="session", autouse=True)
def host_library():
    return host_build.build_host_if_stale()
