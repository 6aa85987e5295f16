"""Shared by the training tests: real data quantized for a model, a model
whose classifier starts from zero (a new head to learn), and plans written
byte by byte to reach the C runtime's checks behind Python's back."""

import pathlib
import struct
import zlib

import numpy as np

from tflm_training import tflite_graph
from tflm_training.plan import find_logits, parameter_layout

TESTS = pathlib.Path(__file__).resolve().parent
MODELS = TESTS / "models"
DATA = TESTS / "data"
# The fixtures the tools also read by default live once, in examples/
# (examples/README.md); the manifests' "file" entries point there.
EXAMPLES = TESTS.parent / "examples"
EXAMPLE_MODELS = {
    "ds_cnn": EXAMPLES / "ds_cnn.tflite",
    "transfer/ds_cnn_fsdd": EXAMPLES / "ds_cnn_fsdd.tflite",
}
EXAMPLE_DATASETS = ("fsdd", "fsdd_train", "speech_commands12")
TRANSFER_MODEL = EXAMPLE_MODELS["transfer/ds_cnn_fsdd"]


def model_path(name):
    """tests/models/<name>.tflite, or examples/ for the models kept there."""
    return EXAMPLE_MODELS.get(name, MODELS / f"{name}.tflite")


def model_bytes(name):
    return model_path(name).read_bytes()


def data_path(dataset):
    """tests/data/<dataset>.npz, or examples/ for the datasets kept there."""
    return (EXAMPLES if dataset in EXAMPLE_DATASETS else DATA) / f"{dataset}.npz"


def every_model():
    """Every .tflite fixture: tests/models/ and its subfolders, and the
    models kept in examples/."""
    return sorted([*MODELS.rglob("*.tflite"), *EXAMPLE_MODELS.values()])


def quantized_split(dataset, split, shape, count=None):
    """(x, y) of a dataset split as int8 inputs (x_uint8 - 128, i.e. x / 255
    quantized with scale 1/255 and zero point -128, as every int8 test model
    expects) shaped (N, *shape[1:])."""
    data = np.load(data_path(dataset))
    x, y = data[f"x_{split}"][:count], data[f"y_{split}"][:count]
    q = (x.astype(np.int16) - 128).astype(np.int8)
    return q.reshape((len(q),) + tuple(shape[1:])), y.astype(np.int64)


def shuffled(x, y, seed):
    """The subsets are stored class by class: SGD needs them mixed."""
    order = np.random.default_rng(seed).permutation(len(y))
    return x[order], y[order]


def with_zero_classifier(model):
    """The model with the weights and bias of the layer computing the logits
    set to zero, as for a new task: only training can make it classify."""
    graph = tflite_graph.read_graph(model)
    layout = parameter_layout(graph, graph.producer(find_logits(graph)))
    out = bytearray(model)
    for index in (layout["weights"], layout["bias"]):
        tensor = graph.tensors[index]
        out[tensor.data_pos : tensor.data_pos + tensor.data_size] = bytes(tensor.data_size)
    return bytes(out)


def patched_plan(plan_bytes, offset, fmt, value, fix_crc=True):
    """plan_bytes with one field replaced and (by default) the CRC redone,
    so that only the field's own check can fail."""
    out = bytearray(plan_bytes)
    struct.pack_into(fmt, out, offset, value)
    if fix_crc:
        struct.pack_into("<I", out, 12, zlib.crc32(bytes(out[16:])))
    return bytes(out)
