"""planning/ needs no TensorFlow and stays beside the runtime: every module
imports with TensorFlow, the Keras stage (pipeline) and tools/ blocked."""

import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
BLOCKED = ("tensorflow", "tf_keras", "tensorflow_model_optimization", "keras", "pipeline", "tools")

IMPORT_WITH_BLOCKS = f"""
import importlib, pkgutil, sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ImportError("blocked: " + name)
        return None

sys.meta_path.insert(0, Block())
import planning
for module in pkgutil.iter_modules(planning.__path__):
    importlib.import_module("planning." + module.name)
print(sorted(m.name for m in pkgutil.iter_modules(planning.__path__)))
"""


def test_planning_imports_without_tensorflow_pipeline_or_tools():
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_WITH_BLOCKS],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "'schemes'" in result.stdout and "'trady'" in result.stdout
