"""deploy.py with a user's own tf_keras model file: it gets an int8 backbone
and a new head for the dataset, trains on the emulated board, and matches the
host bit for bit; a model tfmot cannot quantize is refused naming the layer."""

import json
import pathlib
import subprocess
import sys

import pytest
import tf_keras as keras

from pipeline import checkpoint
from tools import deploy_steps

pytestmark = pytest.mark.tensorflow

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def user_model(tmp_path_factory):
    """The pretrained DS-CNN, saved the way a user saves a Keras model."""
    model, _ = checkpoint.load(str(REPO / "pipeline" / "checkpoints" / "ds_cnn_speech_commands12"))
    path = tmp_path_factory.mktemp("user") / "my_kws.keras"
    model.save(path)
    return path


@pytest.mark.firmware
def test_a_keras_model_file_trains_on_the_emulated_board(user_model, tmp_path):
    out = tmp_path / "deploy"
    cli = subprocess.run(
        [
            sys.executable,
            "tools/deploy.py",
            "--board=nrf52840",
            f"--model={user_model}",
            "--train_samples=60",
            "--epochs=2",
            "--test_samples=50",
            f"--out={out}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert cli.returncode == 0, cli.stdout[-3000:] + cli.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["comparison"]["weights_bit_identical"]
    assert report["comparison"]["losses_bit_identical"]
    device = report["device"]
    assert device["accuracy_after"] > device["accuracy_before"]
    assert report["device"]["accuracy_after"] == report["host"]["accuracy_after"]
    assert report["memory"]["fits"]


def test_a_model_tfmot_cannot_quantize_is_refused_naming_the_layer(tmp_path):
    inputs = keras.Input((49, 40, 1))
    x = keras.layers.Conv2D(8, 3, name="conv_a")(inputs)
    x = keras.layers.ReLU(name="relu_a")(x)
    x = keras.layers.GlobalAveragePooling2D(name="features")(x)
    outputs = keras.layers.Dense(12, activation="softmax")(x)
    path = tmp_path / "bad.keras"
    keras.Model(inputs, outputs).save(path)
    dataset = deploy_steps.load_dataset("fsdd")
    with pytest.raises(deploy_steps.DeployError, match="conv_a"):
        deploy_steps.load_model(path, dataset, tmp_path)
