r"""Pretrains a zoo model in float on an upstream dataset and saves a
checkpoint (pipeline/checkpoint.py).

    info = pretrain('ds_cnn', dataset, model_config('ds_cnn', dataset),
                    epochs=30, batch_size=64, learning_rate=3e-3,
                    prefix=default_prefix('ds_cnn', dataset.name))

As a program: tools/pretrain.py.

Datasets are names in data_dir (default ../shared/data) or .npz paths in
the same layout. Training is CPU-friendly: Adam with cosine decay, one
freshly augmented copy of the training set per epoch (random flip + crop
for RGB images, time shift + noise gate for log-mel clips; `augment`).
The test accuracy reported and stored is that of the weights as saved
(after the optional float16 rounding), re-loaded from the checkpoint.
"""

import os
import time

import pipeline  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

# isort: split
import numpy as np
import tensorflow as tf
import tf_keras as keras

from pipeline import checkpoint, zoo
from pipeline import data as datasets


def model_config(name, dataset, width=None, overrides=None):
    """The zoo config for a dataset: its input shape and class count."""
    fields = dict(overrides or {})
    fields.update(input_shape=dataset.input_shape, num_classes=dataset.num_classes)
    if width is not None:
        fields[zoo.WIDTH_FIELDS[name]] = width
    return zoo.make_config(name, **fields)


def compile_for_training(model, learning_rate, total_steps):
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, max(1, total_steps))
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


def train(model, x_uint8, y, epochs, batch_size, augment, rng, log=None):
    """One freshly augmented copy of the training set per epoch; returns
    the last epoch's training accuracy (on augmented data). log: a
    callable for a line per epoch, or None."""
    accuracy = 0.0
    for epoch in range(epochs):
        t0 = time.time()
        x = x_uint8 if augment is None else augment(x_uint8, rng)
        history = model.fit(
            datasets.to_float(x), y, batch_size=batch_size, epochs=1, shuffle=True, verbose=0
        )
        accuracy = float(history.history["accuracy"][-1])
        if log:
            log(
                "epoch %d/%d: loss %.3f, train accuracy %.3f (%.0f s)"
                % (epoch + 1, epochs, history.history["loss"][-1], accuracy, time.time() - t0)
            )
    return accuracy


def evaluate(model, x_uint8, y):
    return float(model.evaluate(datasets.to_float(x_uint8), y, batch_size=256, verbose=0)[1])


def default_prefix(model_name, dataset_name):
    return os.path.join(
        datasets.REPO_ROOT, "pipeline", "checkpoints", "%s_%s" % (model_name, dataset_name)
    )


def pretrain(
    name,
    dataset,
    config,
    *,
    epochs,
    batch_size,
    learning_rate,
    augment="auto",
    seed=0,
    max_train_samples=None,
    prefix,
    weights_dtype="float32",
    command=None,
    log=None,
):
    """Builds, trains, saves, re-loads and evaluates; returns the metadata
    stored with the checkpoint (`command`: the command line that ran it)."""
    t0, cpu0 = time.time(), time.process_time()
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    rng = np.random.RandomState(seed)
    x_train, y_train = datasets.subset(dataset.x_train, dataset.y_train, max_train_samples, rng)
    model = zoo.build(config)
    summary = zoo.summary(model)
    if log:
        log(
            "%s: %d params, %.2f M MACs; %s: %d train, %d test samples"
            % (
                name,
                summary["params"],
                summary["macs"] / 1e6,
                dataset.name,
                len(y_train),
                len(dataset.y_test),
            )
        )
    steps = epochs * ((len(y_train) + batch_size - 1) // batch_size)
    compile_for_training(model, learning_rate, steps)
    augment_fn = datasets.augmenter(augment, dataset.input_shape)
    train_acc = train(model, x_train, y_train, epochs, batch_size, augment_fn, rng, log)
    metadata = {
        "dataset": dataset.name,
        "dataset_file": os.path.basename(dataset.path),
        "class_names": dataset.class_names,
        "train_samples": int(len(y_train)),
        "test_samples": int(len(dataset.y_test)),
        "preprocess": "x_uint8 / 255.0 (float input in [0, 1])",
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "optimizer": "Adam, cosine decay to 0",
        "augment": augment
        if augment != "auto"
        else datasets.default_augmentation(dataset.input_shape),
        "seed": seed,
        "train_accuracy_augmented_last_epoch": round(train_acc, 4),
        "macs": summary["macs"],
        "versions": {"tensorflow": tf.__version__, "tf_keras": keras.__version__},
        "command": command,
    }
    checkpoint.save(model, config, prefix, metadata, weights_dtype)
    loaded, _ = checkpoint.load(prefix)
    loaded.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    metadata["test_accuracy"] = round(evaluate(loaded, dataset.x_test, dataset.y_test), 4)
    metadata["chance"] = round(1.0 / dataset.num_classes, 4)
    metadata["wall_seconds"] = round(time.time() - t0)
    metadata["cpu_seconds"] = round(time.process_time() - cpu0)
    return checkpoint.save(model, config, prefix, metadata, weights_dtype)
