"""The test tiers (README, "Tests"): a test module imports without
TensorFlow, tf_keras or tfmot unless the whole module is marked
`tensorflow` (a test of it that needs them carries the mark itself), so the
quick loop, `-m "not firmware and not tensorflow and not slow"`, leaves
out every test that needs them at import; and the quick loop does not even
collect (import) the modules marked `tensorflow` (conftest.py, tiers.py),
so it runs without TensorFlow."""

import pathlib
import subprocess
import sys

import pytest

from tiers import may_select, module_marks

TESTS = pathlib.Path(__file__).resolve().parent
REPO = TESTS.parent
KERAS_STACK = ("tensorflow", "tf_keras", "tensorflow_model_optimization", "keras")
QUICK = "not firmware and not tensorflow and not slow"

BLOCK_KERAS = """
import sys
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {names!r}:
            raise ImportError(f"{{name}} is blocked (the module is not marked tensorflow)")
sys.meta_path.insert(0, Blocked())
"""
IMPORT_WITHOUT_KERAS = (
    BLOCK_KERAS
    + """
import importlib
sys.path[:0] = [{tests!r}, {repo!r}]
for module in sys.argv[1:]:
    try:
        importlib.import_module(module)
    except ImportError as e:
        print(f"{{module}}: {{e}}")
"""
)


@pytest.mark.slow  # a second: a fresh interpreter imports every module
def test_modules_not_marked_tensorflow_import_without_it():
    modules = sorted(p.stem for p in TESTS.glob("test_*.py") if "tensorflow" not in module_marks(p))
    assert "test_markers" in modules and "test_pipeline" not in modules
    script = IMPORT_WITHOUT_KERAS.format(names=KERAS_STACK, tests=str(TESTS), repo=str(REPO))
    result = subprocess.run(
        [sys.executable, "-c", script, *modules],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == "", (
        "mark these modules pytestmark = pytest.mark.tensorflow, or "
        "import TensorFlow inside the tests that need it:\n" + result.stdout
    )


def test_may_select_tries_every_other_mark_both_ways():
    tf = {"tensorflow"}
    assert not may_select(QUICK, tf)
    assert not may_select("not tensorflow", tf)
    assert not may_select("not (tensorflow or slow)", tf)
    assert not may_select("not firmware", tf | {"firmware"})
    for markexpr in ("tensorflow", "not firmware", "tensorflow and firmware", "slow or not slow"):
        assert may_select(markexpr, tf), markexpr
    assert may_select("not tensorflow or slow", tf)  # a slow test of the module
    assert may_select("not tensorflow or firmware(board=1)", tf)
    assert may_select(QUICK, {"parametrize"})


def test_the_quick_loop_leaves_out_every_module_marked_tensorflow():
    """What conftest.py's pytest_ignore_collect decides for each module."""
    marked = [p.stem for p in TESTS.glob("test_*.py") if "tensorflow" in module_marks(p)]
    assert "test_pipeline" in marked and "test_backward_ops" in marked
    assert not [m for m in marked if may_select(QUICK, module_marks(TESTS / f"{m}.py"))]
    assert all(may_select("tensorflow", module_marks(TESTS / f"{m}.py")) for m in marked)


@pytest.mark.slow
def test_the_quick_loop_collects_with_tensorflow_blocked():
    script = BLOCK_KERAS.format(names=KERAS_STACK) + (
        "import pytest\n"
        f"sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', '--collect-only', '-m', {QUICK!r}, "
        f"{str(TESTS)!r}]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "test_pipeline.py" not in result.stdout and "test_markers.py::" in result.stdout
