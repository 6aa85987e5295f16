"""benchmarks/training_memory.py on the committed test models (no task
models, so no TensorFlow): every data-independent plan's arena now, before
the memory cuts and with 16-bit gradients."""

import json
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def test_the_test_models_report_every_plan_and_the_cuts_never_cost(tmp_path):
    out = tmp_path / "training_memory.md"
    result = subprocess.run(
        [sys.executable, "benchmarks/training_memory.py", "--tasks=", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(out.with_suffix(".json").read_text())
    assert set(data["models"]) == {
        "examples/ds_cnn.tflite",
        "tests/models/mobilenet_v2_block.tflite",
    }
    for title, model in data["models"].items():
        names = [row["plan"] for row in model["plans"]]
        assert names[0] == "classifier" and "full backpropagation" in names
        assert "biases of 1 layer" in names
        for row in model["plans"]:
            assert row["arena_16"] <= row["arena"] <= row["arena_before"], (title, row)
        assert f"## {title}" in out.read_text()
