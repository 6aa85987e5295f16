r"""Pretrains a zoo model in float on an upstream dataset and saves a
checkpoint (pipeline.pretrain, pipeline/checkpoint.py).

    python tools/pretrain.py --model ds_cnn --dataset speech_commands12 \
        --epochs 30
    python tools/pretrain.py --model mobilenet_v2 --width 0.35 \
        --dataset tinyimagenet32 --epochs 10 --weights_dtype float16
    python tools/pretrain.py --model mcunet --dataset my_data.npz \
        --config last_channels=128 --config dropout=0.1 --out /tmp/mine

Datasets are names in --data_dir (default ../shared/data) or .npz paths in
the same layout.
"""

import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from absl import app, flags

import pipeline  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

# isort: split
import tensorflow as tf

from pipeline import checkpoint, pretrain, zoo
from pipeline import data as datasets

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_enum("model", "ds_cnn", sorted(zoo.MODELS), "Zoo model.")
    flags.DEFINE_string(
        "dataset", "speech_commands12", "Dataset name in --data_dir, or a .npz path."
    )
    flags.DEFINE_string("data_dir", datasets.SHARED_DATA_DIR, "Folder of the named datasets.")
    flags.DEFINE_float(
        "width", None, "Width multiplier (alpha for mobilenet_v2); default: the config default."
    )
    flags.DEFINE_multi_string(
        "config",
        [],
        "Another config field, field=value (a Python literal); "
        "repeat the flag, e.g. --config last_channels=256 --config "
        '"stages=((1, 16, 1, 1), (6, 24, 2, 2))".',
    )
    flags.DEFINE_integer("epochs", 10, "Training epochs.")
    flags.DEFINE_integer("batch_size", 64, "Batch size.")
    flags.DEFINE_float("learning_rate", 3e-3, "Peak Adam learning rate (cosine decay to 0).")
    flags.DEFINE_string("augment", "auto", "auto, flip_crop, time_shift or none.")
    flags.DEFINE_integer("max_train_samples", None, "Train on a random subset.")
    flags.DEFINE_integer("seed", 20261122, "Random seed.")
    flags.DEFINE_string(
        "out", None, "Checkpoint prefix; default pipeline/checkpoints/<model>_<dataset>."
    )
    flags.DEFINE_enum(
        "weights_dtype", "float32", ["float32", "float16"], "Storage type of the weights file."
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError("unexpected arguments: %s" % argv[1:])
    tf.config.experimental.enable_op_determinism()
    dataset = datasets.load(FLAGS.dataset, FLAGS.data_dir)
    config = pretrain.model_config(
        FLAGS.model, dataset, FLAGS.width, zoo.parse_overrides(FLAGS.config)
    )
    prefix = FLAGS.out or pretrain.default_prefix(FLAGS.model, dataset.name)
    info = pretrain.pretrain(
        FLAGS.model,
        dataset,
        config,
        epochs=FLAGS.epochs,
        batch_size=FLAGS.batch_size,
        learning_rate=FLAGS.learning_rate,
        augment=FLAGS.augment,
        seed=FLAGS.seed,
        max_train_samples=FLAGS.max_train_samples,
        prefix=prefix,
        weights_dtype=FLAGS.weights_dtype,
        log=print,
        command=" ".join(["python tools/pretrain.py"] + sys.argv[1:]),
    )
    print(
        "%s: test accuracy %.4f (chance %.4f); %d s wall, %d s CPU; "
        "wrote %s (%d bytes)"
        % (
            prefix,
            info["test_accuracy"],
            info["chance"],
            info["wall_seconds"],
            info["cpu_seconds"],
            checkpoint.paths(prefix)[0],
            info["weights_bytes"],
        )
    )


if __name__ == "__main__":
    define_flags()
    app.run(main)
