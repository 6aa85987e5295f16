r"""Quantization-aware training of a float checkpoint and full-integer
conversion to the int8 .tflite tflm_training runs (pipeline.qat), with
the int8 test accuracy and the model's footprint on the board.

    python tools/qat.py \
        --checkpoint pipeline/checkpoints/ds_cnn_speech_commands12 \
        --dataset speech_commands12 --epochs 2 --out /tmp/ds_cnn.tflite
"""

import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from absl import app, flags, logging

import pipeline  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

# isort: split
import numpy as np
import tensorflow as tf
import tf_keras as keras

from pipeline import checkpoint, qat
from pipeline import data as datasets
from planning import footprint

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("checkpoint", None, "Float checkpoint prefix (pipeline/checkpoint.py).")
    flags.DEFINE_string(
        "dataset",
        None,
        "Dataset name in --data_dir or a .npz path; default: the checkpoint's dataset.",
    )
    flags.DEFINE_string("data_dir", datasets.SHARED_DATA_DIR, "Folder of the named datasets.")
    flags.DEFINE_integer("epochs", 2, "QAT epochs.")
    flags.DEFINE_integer("batch_size", 32, "QAT batch size.")
    flags.DEFINE_float("learning_rate", 3e-4, "QAT Adam learning rate.")
    flags.DEFINE_string("augment", "auto", "auto, flip_crop, time_shift or none.")
    flags.DEFINE_integer("max_train_samples", None, "QAT on a random subset of the training data.")
    flags.DEFINE_integer(
        "representative_samples", 200, "Converter calibration samples (training data)."
    )
    flags.DEFINE_integer("eval_samples", 1000, "Test samples for the int8 accuracy.")
    flags.DEFINE_integer("seed", 20261122, "Random seed.")
    flags.DEFINE_string("out", None, "Output .tflite path.")
    flags.mark_flags_as_required(["checkpoint", "out"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError("unexpected arguments: %s" % argv[1:])
    t0 = time.time()
    logging.set_verbosity(logging.WARNING)  # the converter's SavedModel logs
    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(FLAGS.seed)
    rng = np.random.RandomState(FLAGS.seed)
    float_model, info = checkpoint.load(FLAGS.checkpoint)
    data = datasets.load(FLAGS.dataset or info["dataset"], FLAGS.data_dir)
    x_train, y_train = datasets.subset(data.x_train, data.y_train, FLAGS.max_train_samples, rng)
    augment = datasets.augmenter(FLAGS.augment, data.input_shape)
    qat_model = qat.quantization_aware_training(
        float_model,
        x_train if augment else datasets.to_float(x_train),
        y_train,
        epochs=FLAGS.epochs,
        batch_size=FLAGS.batch_size,
        learning_rate=FLAGS.learning_rate,
        augment=augment,
        rng=rng,
        log=print,
    )
    rows = rng.permutation(len(y_train))[: FLAGS.representative_samples]
    buf = qat.convert(qat_model, data.input_shape, datasets.to_float(x_train[rows]))
    qat.check_converted(buf)
    with open(FLAGS.out, "wb") as f:
        f.write(buf)
    n = min(FLAGS.eval_samples, len(data.y_test))
    accuracy = qat.evaluate_tflite(buf, data.x_test[:n], data.y_test[:n])
    print("int8 accuracy %.4f on %d %s test samples" % (accuracy, n, data.name))
    for line in footprint.describe(footprint.measure(buf)):
        print(line)
    print("wrote %s (%d bytes) in %.0f s" % (FLAGS.out, len(buf), time.time() - t0))


if __name__ == "__main__":
    define_flags()
    app.run(main)
