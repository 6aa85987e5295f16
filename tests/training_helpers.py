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


def model_bytes(name):
    return (MODELS / f"{name}.tflite").read_bytes()


def quantized_split(dataset, split, shape, count=None):
    """(x, y) of a dataset split as int8 inputs (x_uint8 - 128, i.e. x / 255
    quantized with scale 1/255 and zero point -128, as every int8 test model
    expects) shaped (N, *shape[1:])."""
    data = np.load(DATA / f"{dataset}.npz")
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
