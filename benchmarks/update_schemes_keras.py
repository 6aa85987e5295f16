"""The TensorFlow steps of the update-scheme benchmark, run as a child
process so that the benchmark's own process (and its worker processes)
never import TensorFlow:

  convert:  pipeline checkpoint -> QAT on upstream data -> a new head for
            the downstream classes, its int8 ranges calibrated on the
            task's calibration split (pipeline.heads) -> int8 .tflite
  finetune: the float reference: the float checkpoint with a new head,
            every layer trained in TensorFlow on one seed's training
            samples, accuracy on the test samples

  python benchmarks/update_schemes_keras.py --mode convert --task fsdd --out_dir DIR
  python benchmarks/update_schemes_keras.py --mode finetune --task fsdd --samples S.npz \
      --seed 0 --epochs 3 --out R.json
"""

import json
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np
from absl import app, flags, logging

from benchmarks import update_schemes_tasks as tasks

_MODE = flags.DEFINE_enum("mode", None, ["convert", "finetune"], "What to do.")
_TASK = flags.DEFINE_enum("task", None, list(tasks.TASK_NAMES), "A built-in task.")
_TASK_SPEC = flags.DEFINE_string(
    "task_spec", None, "A command-line task, as the JSON of its fields (update_schemes_tasks.Task)."
)
_VISION = flags.DEFINE_enum(
    "vision_backbone",
    tasks.VISION_BACKBONES[0],
    list(tasks.VISION_BACKBONES),
    "Checkpoint of the image tasks.",
)
_DATA_DIR = flags.DEFINE_string("data_dir", str(tasks.DEFAULT_DATA_DIR), "Datasets folder.")
_OUT_DIR = flags.DEFINE_string(
    "out_dir", None, "convert: folder for model.tflite and convert.json."
)
_SAMPLES = flags.DEFINE_string(
    "samples", None, "finetune: a samples .npz (update_schemes_tasks.Samples)."
)
_SEED = flags.DEFINE_integer("seed", 0, "finetune: the seed (head init, shuffling).")
_EPOCHS = flags.DEFINE_integer("epochs", 3, "finetune: epochs.")
_BATCH = flags.DEFINE_integer("batch_size", 8, "finetune: batch size.")
_LR = flags.DEFINE_float("learning_rate", 1e-3, "finetune: Adam learning rate.")
_OUT = flags.DEFINE_string("out", None, "finetune: result .json.")
_THREADS = flags.DEFINE_integer("threads", 1, "TensorFlow's intra-op threads.")

HEAD_SEED = 20261124  # the converted model's head init (the same for all seeds)
QAT_SEED = 20261122
REPRESENTATIVE = 200


def _setup():
    logging.set_verbosity(logging.WARNING)
    import tensorflow as tf

    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(_THREADS.value)
    tf.get_logger().setLevel("ERROR")
    return tf


def convert(task, data_dir, out_dir):
    """Writes out_dir/model.tflite and out_dir/convert.json."""
    tf = _setup()
    import tf_keras as keras

    from pipeline import checkpoint, heads, qat
    from pipeline import data as datasets

    started, cpu = time.time(), time.process_time()
    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(QAT_SEED)
    rng = np.random.RandomState(QAT_SEED)
    float_model, info = checkpoint.load(str(tasks.CHECKPOINTS / task.checkpoint))
    up_x, up_y, _, _ = tasks.load_arrays(data_dir, task.upstream)
    up_x, up_y = datasets.subset(up_x, up_y, task.qat_samples, rng)
    augment = datasets.augmenter("auto", tuple(up_x.shape[1:]))
    qat_up = qat.quantization_aware_training(
        float_model,
        up_x if augment else datasets.to_float(up_x),
        up_y,
        epochs=task.qat_epochs,
        augment=augment,
        rng=rng,
        log=lambda *a: None,
    )
    x_train, y_train, _, _ = tasks.load_downstream(task, data_dir)
    calibration, _ = tasks.split_rows(task, y_train)
    x_calib = datasets.to_float(x_train[calibration])
    y_calib = y_train[calibration]
    num_classes = int(y_train.max()) + 1
    qat_down, report = heads.new_head_qat(
        float_model, qat_up, num_classes, x_calib, y_calib, seed=HEAD_SEED
    )
    tflite = qat.convert(qat_down, tuple(x_train.shape[1:]), x_calib[:REPRESENTATIVE])
    qat.check_converted(tflite)
    head = heads.describe_head(tflite)
    heads.check_head_quantization(head, report)
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    key, _ = tasks.model_key(task, data_dir)
    (out_dir / "model.tflite").write_bytes(tflite)
    meta = {
        "key": key,
        "checkpoint_upstream_test_accuracy": info.get("test_accuracy"),
        "qat": {"epochs": task.qat_epochs, "samples": int(len(up_y))},
        "calibration_rows": int(len(calibration)),
        "head_seed": HEAD_SEED,
        "head": report,
        "model_bytes": len(tflite),
        "wall_seconds": round(time.time() - started, 1),
        "cpu_seconds": round(time.process_time() - cpu, 1),
    }
    (out_dir / "convert.json").write_text(json.dumps(meta, indent=1, default=float) + "\n")
    print(json.dumps({"model": str(out_dir / "model.tflite"), "seconds": meta["wall_seconds"]}))


def finetune(task, samples_path, seed, epochs, batch_size, learning_rate, out):
    """Float full fine-tuning: every Conv/Dense weight trains (Adam);
    BatchNormalization layers are frozen in inference mode (their
    statistics and affine parameters stay: the int8 model folds them into
    the convolutions, and batches this small would wreck the statistics)."""
    tf = _setup()
    import tf_keras as keras

    from pipeline import checkpoint, heads
    from pipeline import data as datasets

    started, cpu = time.time(), time.process_time()
    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(seed)
    with np.load(samples_path) as data:
        x_train = datasets.to_float(data["train_u8"])
        y_train = data["train_y"].astype(np.int64)
        x_test = datasets.to_float(data["test_u8"])
        y_test = data["test_y"].astype(np.int64)
    float_model, _ = checkpoint.load(str(tasks.CHECKPOINTS / task.checkpoint))
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    model = heads.replace_head(float_model, num_classes, seed=HEAD_SEED + seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    before = float(
        np.mean(np.argmax(model.predict(x_test, batch_size=256, verbose=0), 1) == y_test)
    )
    history = model.fit(
        x_train, y_train, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0
    )
    after = float(np.mean(np.argmax(model.predict(x_test, batch_size=256, verbose=0), 1) == y_test))
    result = {
        "accuracy_before": before,
        "accuracy": after,
        "losses": [float(v) for v in history.history["loss"]],
        "trainable_weights": int(sum(int(np.prod(w.shape)) for w in model.trainable_weights)),
        "all_weights": int(sum(int(np.prod(w.shape)) for w in model.weights)),
        "wall_seconds": round(time.time() - started, 1),
        "cpu_seconds": round(time.process_time() - cpu, 1),
    }
    pathlib.Path(out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({"accuracy": after}))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _MODE.value is None or (_TASK.value is None) == (_TASK_SPEC.value is None):
        raise app.UsageError("--mode and one of --task and --task_spec are required")
    if _TASK_SPEC.value:
        task = tasks.Task(**json.loads(_TASK_SPEC.value))
    else:
        task = tasks.make_tasks(_VISION.value)[_TASK.value]
    if _MODE.value == "convert":
        if not _OUT_DIR.value:
            raise app.UsageError("convert needs --out_dir")
        convert(task, _DATA_DIR.value, _OUT_DIR.value)
    else:
        if not (_SAMPLES.value and _OUT.value):
            raise app.UsageError("finetune needs --samples and --out")
        finetune(
            task, _SAMPLES.value, _SEED.value, _EPOCHS.value, _BATCH.value, _LR.value, _OUT.value
        )


if __name__ == "__main__":
    app.run(main)
