"""The Keras stage (pipeline/): zoo models build and quantize cleanly; QAT +
full-integer conversion gives int8 models that tflm_training runs bit for
bit like tflite_micro; the fake-quantization check names a layer followed
by a standalone ReLU and says what to do; Keras 3 models get a clear error;
a new classifier head has the requested classes and the calibrated ranges;
checkpoints round-trip; the committed checkpoints load and classify real
test samples well above chance.

Tiny models and a few training steps on the committed data subsets
(tests/data and examples/) keep this fast.
"""

import hashlib
import json
import os

import numpy as np
import pytest

import pipeline  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

# isort: split
import tf_keras as keras

import golden
import tflm_training
import training_helpers as th
from pipeline import checkpoint, heads, pretrain, qat, zoo
from pipeline import data as datasets
from planning import footprint

pytestmark = pytest.mark.tensorflow

L = keras.layers
TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
CHECKPOINTS_DIR = os.path.join(os.path.dirname(TESTS_DIR), "pipeline", "checkpoints")

TINY = {
    "ds_cnn": dict(width=0.125, block_strides=(1, 2)),
    "mcunet": dict(
        input_shape=(16, 16, 3),
        num_classes=5,
        width=0.5,
        blocks=((3, 1, 8, 1), (5, 3, 8, 2), (7, 3, 8, 1)),
        last_channels=32,
    ),
    "mobilenet_v2": dict(
        input_shape=(16, 16, 3),
        num_classes=5,
        stages=((1, 16, 1, 1), (6, 24, 2, 2)),
        last_channels=32,
    ),
}
TINY_DATA = {"ds_cnn": "speech_commands12", "mcunet": "flowers32", "mobilenet_v2": "flowers32"}


def _dataset(name, input_shape):
    """A committed subset, images cropped to the tiny input size."""
    data = datasets.load(str(th.data_path(name)))
    height, width = input_shape[:2]
    data.x_train = data.x_train[:, :height, :width]
    data.x_test = data.x_test[:, :height, :width]
    return data


def _quantized_model(name):
    """(float model, QAT model, .tflite bytes, dataset) of a tiny zoo model
    after one QAT epoch on a committed data subset."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(1)
    model = zoo.build(zoo.make_config(name, **TINY[name]))
    data = _dataset(TINY_DATA[name], model.input_shape[1:])
    x = datasets.to_float(data.x_train)
    qat_model = qat.quantization_aware_training(
        model, x, data.y_train, epochs=1, batch_size=32, log=lambda _: None
    )
    buf = qat.convert(qat_model, x.shape[1:], x[:16])
    return model, qat_model, buf, data


@pytest.fixture(scope="module")
def tiny_ds_cnn():
    return _quantized_model("ds_cnn")


def _assert_bit_exact(buf, x_uint8):
    """Every operator output of tflm_training equals tflite_micro's."""
    ours = tflm_training.Interpreter.from_bytes(buf, preserve_all_tensors=True)
    ref = golden.GoldenModel(buf)
    ops = golden.list_ops(buf)
    for k in range(len(x_uint8)):
        x = golden.prepare_input(x_uint8[k : k + 1], ref.input_details(0))
        ref.run([x])
        ours.set_input(x, 0)
        ours.invoke()
        for index, name, outputs in ops:
            for t in outputs:
                np.testing.assert_array_equal(
                    ours.get_tensor(t),
                    ref.tensor(t),
                    "sample %d, op %d %s, tensor %d" % (k, index, name, t),
                )


# --------------------------------------------------------------------------
# Zoo
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(zoo.MODELS))
def test_zoo_default_model_builds(name):
    keras.backend.clear_session()
    config = zoo.make_config(name)
    model = zoo.build(config)
    assert model.output_shape == (None, config.num_classes)
    assert model.input_shape == (None,) + tuple(config.input_shape)
    assert model.get_layer("features") and model.get_layer("logits")
    size = zoo.summary(model)
    # int8 weights must leave most of the 1 MB flash to the firmware.
    assert 10000 < size["params"] < 600000, size
    assert qat.lint(model) == []


@pytest.mark.parametrize("name", sorted(zoo.MODELS))
def test_zoo_blocks_are_fully_fake_quantized(name):
    """tfmot gives every Conv2D / DepthwiseConv2D / Dense of each zoo
    architecture (tiny, same blocks) a real weight quantizer."""
    keras.backend.clear_session()
    model = zoo.build(zoo.make_config(name, **TINY[name]))
    lines = qat.check_weights_fake_quantized(model, qat.quantize(model), trained=False)
    assert len(lines) == sum(isinstance(layer, qat.WEIGHT_LAYERS) for layer in model.layers)


def test_zoo_config_round_trips_through_json():
    config = zoo.make_config("mcunet", width=0.5, num_classes=7)
    data = json.loads(json.dumps(zoo.config_to_dict(config)))
    assert zoo.config_from_dict(data) == config
    with pytest.raises(ValueError, match="no field"):
        zoo.make_config("ds_cnn", alpha=0.5)
    with pytest.raises(ValueError, match="unknown model"):
        zoo.make_config("resnet50")


def test_mixed_kernels_and_expansions_in_mcunet():
    model = zoo.build(zoo.make_config("mcunet"))
    kernels = {layer.kernel_size for layer in model.layers if isinstance(layer, L.DepthwiseConv2D)}
    expansions = {
        layer.filters // layer.input_shape[-1]
        for layer in model.layers
        if layer.name.endswith("_expand")
    }
    assert {(3, 3), (5, 5), (7, 7)} <= kernels
    assert len(expansions) >= 2


# --------------------------------------------------------------------------
# QAT and conversion
# --------------------------------------------------------------------------


def test_ds_cnn_qat_converts_to_full_int8_and_runs_bit_exact(tiny_ds_cnn):
    model, _, buf, data = tiny_ds_cnn
    qat.check_converted(buf)
    details = tflm_training.Interpreter.from_bytes(buf).get_input_details(0)
    assert np.dtype(details["dtype"]) == np.int8
    q = details["quantization_parameters"]
    assert abs(q["scales"][0] - 1 / 255) < 1e-6
    assert q["zero_points"][0] == -128
    _assert_bit_exact(buf, data.x_test[:3])
    ops = [name for _, name, _ in golden.list_ops(buf)]
    assert ops.count("DEPTHWISE_CONV_2D") == 2 and ops[-1] == "SOFTMAX"


def test_mcunet_qat_converts_and_runs_bit_exact():
    _, _, buf, data = _quantized_model("mcunet")
    qat.check_converted(buf)
    ops = [name for _, name, _ in golden.list_ops(buf)]
    assert "ADD" in ops  # the residual block
    _assert_bit_exact(buf, data.x_test[:3])


def test_converted_problems_reports_float_model():
    _, _, buf, _ = _tiny_float_io_model()
    problems = qat.converted_problems(buf)
    assert any("model input is FLOAT32" in p for p in problems), problems
    assert qat.converted_problems(buf, float_io=True) == []


def _tiny_float_io_model():
    keras.backend.clear_session()
    i = keras.Input((8, 8, 1))
    x = L.Conv2D(4, 3, activation="relu", name="c")(i)
    x = L.Flatten()(x)
    o = L.Dense(3, activation="softmax", name="d")(x)
    model = keras.Model(i, o)
    x = np.random.RandomState(0).rand(64, 8, 8, 1).astype(np.float32)
    q = qat.quantization_aware_training(model, x, np.arange(64) % 3, epochs=1, log=lambda _: None)
    return model, q, qat.convert(q, (8, 8, 1), x[:8], float_io=True), x


def test_footprint_of_a_converted_model(tiny_ds_cnn):
    buf = tiny_ds_cnn[2]
    fp = footprint.measure(buf)
    assert fp["model_bytes"] == len(buf)
    assert 0 < fp["inference_arena"] < fp["train_last_two"]["total"]
    assert len(fp["train_classifier"]["layers"]) == 1
    assert len(fp["train_last_two"]["layers"]) == 2
    assert footprint.check_fits(fp) == []
    assert footprint.describe(fp)[-1].endswith("yes")


# --------------------------------------------------------------------------
# The fake-quantization check
# --------------------------------------------------------------------------


def _model_with_standalone_relu(max_value=None):
    keras.backend.clear_session()
    i = keras.Input((16, 16, 3))
    x = zoo.conv_bn_relu(i, 8, 3, name="conv1")
    x = L.Conv2D(8, 3, padding="same", name="conv2", activation="relu")(x)
    x = L.Conv2D(8, 3, padding="same", name="conv3")(x)
    x = L.ReLU(max_value, name="relu3")(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(i, L.Dense(4, activation="softmax", name="out")(x))


def test_standalone_relu_is_caught_and_named():
    model = _model_with_standalone_relu()
    with pytest.raises(qat.FakeQuantizationError) as error:
        qat.quantize(model)
    message = str(error.value)
    assert "layer 'conv3' (Conv2D) is followed by" in message
    assert "standalone ReLU layer 'relu3'" in message
    assert "activation='relu'" in message
    assert "conv1" not in message and "conv2" not in message


def test_standalone_relu6_fix_suggests_batch_norm():
    with pytest.raises(qat.FakeQuantizationError, match=r"'conv3'.*BatchNormalization"):
        qat.quantize(_model_with_standalone_relu(6.0))


def test_untrained_qat_model_fails_the_trained_check():
    keras.backend.clear_session()
    model = zoo.build(zoo.make_config("ds_cnn", **TINY["ds_cnn"]))
    with pytest.raises(qat.FakeQuantizationError, match="never ran"):
        qat.check_weights_fake_quantized(model, qat.quantize(model))


def test_keras3_model_gets_a_clear_error():
    import keras as keras3

    assert keras3.__version__.startswith("3.")
    inputs = keras3.Input((4,))
    model = keras3.Model(inputs, keras3.layers.Dense(2)(inputs))
    with pytest.raises(qat.Keras3ModelError, match="tf_keras"):
        qat.quantize(model)
    with pytest.raises(qat.Keras3ModelError):
        heads.replace_head(model, 3)


# --------------------------------------------------------------------------
# Heads
# --------------------------------------------------------------------------


def test_replace_head_float():
    keras.backend.clear_session()
    model = zoo.build(zoo.make_config("ds_cnn", **TINY["ds_cnn"]))
    down = heads.replace_head(model, 10)
    assert down.output_shape == (None, 10)
    assert heads.feature_layer_name(model) == "features"  # past Dropout
    assert down.get_layer("head").bias.numpy().any()
    # Own weights: the upstream model is untouched by the copy.
    down.get_layer("conv1").kernel.assign_add(
        np.ones(down.get_layer("conv1").kernel.shape, np.float32)
    )
    assert not np.array_equal(
        down.get_layer("conv1").kernel.numpy(), model.get_layer("conv1").kernel.numpy()
    )


def test_new_head_qat_has_classes_and_calibrated_ranges(tiny_ds_cnn):
    model, qat_model, _, _ = tiny_ds_cnn
    fsdd = datasets.load(str(th.data_path("fsdd")))
    x_calib = datasets.to_float(fsdd.x_train)
    down, report = heads.new_head_qat(model, qat_model, 10, x_calib, fsdd.y_train, probe_epochs=20)
    assert down.output_shape == (None, 10)
    assert report["backbone_layers_copied"] > 5
    buf = qat.convert(down, x_calib.shape[1:], x_calib[:16])
    qat.check_converted(buf)
    head = heads.describe_head(buf)
    assert head["head_weights_shape"][0] == 10
    heads.check_head_quantization(head, report)
    # The backbone is the upstream one: same feature tensor values.
    up = heads.feature_model(qat_model).predict(x_calib, verbose=0)
    new = heads.feature_model(down).predict(x_calib, verbose=0)
    np.testing.assert_array_equal(up, new)
    lo, hi = head["logits_range"]
    probe_lo, probe_hi = report["probe_logits_calibration"]
    assert lo <= 1.4 * min(probe_lo, 0) and hi >= 1.4 * max(probe_hi, 0)
    _assert_bit_exact(buf, fsdd.x_test[:2])
    plan = tflm_training.TrainingPlan.classifier_only(buf)
    assert plan.num_classes == 10
    assert plan.logits_tensor == head["logits_tensor"]


def test_head_ranges_come_from_the_trained_probe():
    rng = np.random.RandomState(0)
    features = rng.rand(100, 8).astype(np.float32)
    kernel = rng.randn(8, 3).astype(np.float32)
    bias = np.array([0.5, -0.5, 0.0], np.float32)
    weight_max, lo, hi, logits = heads.head_ranges(kernel, bias, features, 2.0, 1.5)
    assert weight_max == pytest.approx(2 * np.abs(kernel).max())
    assert lo == pytest.approx(1.5 * min(logits.min(), 0))
    assert hi == pytest.approx(1.5 * max(logits.max(), 0))
    assert lo <= 0 <= hi


# --------------------------------------------------------------------------
# Checkpoints and pretraining
# --------------------------------------------------------------------------


def test_pretrain_saves_a_checkpoint_that_loads(tmp_path):
    data = datasets.load(str(th.data_path("speech_commands12")))
    config = pretrain.model_config("ds_cnn", data, 0.125, {"block_strides": (2,)})
    prefix = str(tmp_path / "tiny")
    info = pretrain.pretrain(
        "ds_cnn",
        data,
        config,
        epochs=1,
        batch_size=32,
        learning_rate=3e-3,
        seed=3,
        prefix=prefix,
        weights_dtype="float16",
        log=lambda _: None,
    )
    assert 0.0 <= info["test_accuracy"] <= 1.0
    model, stored = checkpoint.load(prefix)
    assert stored["weights_dtype"] == "float16"
    assert model.output_shape == (None, 12)
    assert zoo.config_from_dict(stored) == config


def _committed_checkpoints():
    if not os.path.isdir(CHECKPOINTS_DIR):
        return []
    return sorted(f[: -len(".json")] for f in os.listdir(CHECKPOINTS_DIR) if f.endswith(".json"))


@pytest.mark.parametrize("name", _committed_checkpoints())
def test_committed_checkpoint_loads(name):
    keras.backend.clear_session()
    prefix = os.path.join(CHECKPOINTS_DIR, name)
    model, info = checkpoint.load(prefix)
    with open(checkpoint.paths(prefix)[0], "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == info["weights_sha256"]
    assert model.count_params() == info["params"]
    assert model.output_shape == (None, len(info["class_names"]))
    assert info["test_accuracy"] > 2 * info["chance"]
    x = np.random.RandomState(0).rand(2, *model.input_shape[1:])
    np.testing.assert_allclose(model.predict(x, verbose=0).sum(1), 1.0, rtol=1e-4)


def _checkpoints_with_subset():
    """Committed checkpoints whose dataset has a committed test subset
    (tinyimagenet32 has none: ImageNet terms)."""
    found = []
    for name in _committed_checkpoints():
        with open(os.path.join(CHECKPOINTS_DIR, name + ".json")) as f:
            dataset = json.load(f)["dataset"]
        if th.data_path(dataset).is_file():
            found.append(name)
    return found


@pytest.mark.parametrize("name", _checkpoints_with_subset())
def test_committed_checkpoint_beats_chance_on_real_data(name):
    keras.backend.clear_session()
    model, info = checkpoint.load(os.path.join(CHECKPOINTS_DIR, name))
    data = datasets.load(str(th.data_path(info["dataset"])))
    predictions = model.predict(datasets.to_float(data.x_test), verbose=0)
    accuracy = float(np.mean(predictions.argmax(1) == data.y_test))
    assert accuracy > 5 * info["chance"], accuracy
