"""examples/ holds the files the tools read by default, each a byte-identical
copy of a test fixture (examples/README.md), and the tools' defaults point
there, not into tests/."""

import pathlib

import pytest

from tools import deploy_steps, firmware_build

REPO = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
COPIES = {
    "ds_cnn.tflite": "tests/models/ds_cnn.tflite",
    "ds_cnn_fsdd.tflite": "tests/models/transfer/ds_cnn_fsdd.tflite",
    "fsdd.npz": "tests/data/fsdd.npz",
    "fsdd_train.npz": "tests/data/fsdd_train.npz",
    "speech_commands12.npz": "tests/data/speech_commands12.npz",
}


@pytest.mark.parametrize("name", sorted(COPIES))
def test_each_example_is_a_copy_of_its_fixture(name):
    assert (EXAMPLES / name).read_bytes() == (REPO / COPIES[name]).read_bytes(), (
        f"examples/{name} differs from {COPIES[name]}: copy the fixture again"
    )


def test_every_example_file_is_listed():
    files = {p.name for p in EXAMPLES.iterdir()} - {"README.md"}
    assert files == set(COPIES)
    readme = (EXAMPLES / "README.md").read_text()
    assert all(f"`{name}`" in readme for name in COPIES)


def test_the_tools_defaults_are_examples():
    defaults = [
        firmware_build.DEFAULT_MODEL,
        deploy_steps.DEFAULT_MODEL,
        *deploy_steps.DATASETS["fsdd"],
    ]
    for path in defaults:
        assert path.parent == EXAMPLES and path.is_file(), path
