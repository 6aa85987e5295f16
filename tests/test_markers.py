"""The test tiers (README, "Tests"): a test module imports without
TensorFlow, tf_keras or tfmot unless the whole module is marked
`tensorflow` (a test of it that needs them carries the mark itself), so the
quick loop, `-m "not firmware and not tensorflow and not slow"`, leaves
out every test that needs them at import."""

import ast
import pathlib
import subprocess
import sys

TESTS = pathlib.Path(__file__).resolve().parent
REPO = TESTS.parent
KERAS_STACK = ("tensorflow", "tf_keras", "tensorflow_model_optimization", "keras")

IMPORT_WITHOUT_KERAS = """
import importlib, sys
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {names!r}:
            raise ImportError(f"{{name}} is blocked (the module is not marked tensorflow)")
sys.meta_path.insert(0, Blocked())
sys.path[:0] = [{tests!r}, {repo!r}]
for module in sys.argv[1:]:
    try:
        importlib.import_module(module)
    except ImportError as e:
        print(f"{{module}}: {{e}}")
"""


def module_marks(path):
    """The mark names in a module's `pytestmark` (pytest.mark.<name>)."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets
        ):
            return {
                n.attr
                for n in ast.walk(node.value)
                if isinstance(n, ast.Attribute)
                and isinstance(n.value, ast.Attribute)
                and n.value.attr == "mark"
            }
    return set()


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
