"""The benchmark's models and inputs: the committed test models (and the
transfer-learning models of tests/models/transfer; the manifests' "file"
entries say where each is, examples/ for those the tools read by default),
real inputs from their datasets (tests/data, or examples/), MAC counts read
from the flatbuffer, and a one-operator model that measures the cost of an
invoke() call itself."""

import dataclasses
import json
import pathlib

import flatbuffers
import numpy as np
from tflite_micro.tensorflow.lite.micro.python import (
    schema_py_generated as schema,
)

REPO = pathlib.Path(__file__).resolve().parents[1]
MODELS_DIR = REPO / "tests" / "models"
DATA_DIR = REPO / "tests" / "data"
# The datasets the tools read by default live in examples/, not tests/data.
EXAMPLES_DIR = REPO / "examples"
MANIFEST_PATH = MODELS_DIR / "manifest.json"
TRANSFER_DIR = MODELS_DIR / "transfer"
TRANSFER_MANIFEST_PATH = TRANSFER_DIR / "manifest.json"

# Operators whose multiply-accumulates are counted.
MAC_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")

_OP_NAMES = {
    value: name
    for name, value in vars(schema.BuiltinOperator).items()
    if not name.startswith("_") and isinstance(value, int)
}


@dataclasses.dataclass(frozen=True)
class BenchModel:
    name: str
    path: pathlib.Path
    dataset: str
    buffer: bytes


def manifest():
    return json.loads(MANIFEST_PATH.read_text())["models"]


def transfer_manifest():
    """The transfer models' manifest entries ({} when there are none)."""
    if not TRANSFER_MANIFEST_PATH.is_file():
        return {}
    return json.loads(TRANSFER_MANIFEST_PATH.read_text())["models"]


def _entries(include_transfer):
    """{name: (folder, manifest entry)}."""
    entries = {name: (MODELS_DIR, entry) for name, entry in manifest().items()}
    if include_transfer:
        entries.update({name: (TRANSFER_DIR, entry) for name, entry in transfer_manifest().items()})
    return entries


def load_models(names=None, include_transfer=False):
    """The manifest's models (all, or `names` in the given order);
    include_transfer also knows the models of tests/models/transfer."""
    entries = _entries(include_transfer)
    names = list(names) if names else sorted(entries)
    unknown = [n for n in names if n not in entries]
    if unknown:
        raise ValueError(f"unknown models {unknown}; known: {sorted(entries)}")
    models = []
    for name in names:
        folder, entry = entries[name]
        path = (folder / entry["file"]).resolve()  # "file" may lead to examples/
        models.append(BenchModel(name, path, entry["dataset"], path.read_bytes()))
    return models


def _prepared(x, details):
    """Raw uint8 dataset samples as the model's input 0 takes them."""
    shape = tuple(int(d) for d in details["shape"])
    x = (x.astype(np.float32) / np.float32(255.0)).reshape((len(x),) + shape)
    dtype = np.dtype(details["dtype"])
    if dtype == np.float32:
        return x
    quant = details["quantization_parameters"]
    info = np.iinfo(dtype)
    q = np.round(x / quant["scales"][0]) + quant["zero_points"][0]
    return np.clip(q, info.min, info.max).astype(dtype)


def dataset_path(name):
    """examples/<name>.npz if the dataset is kept there, else tests/data/."""
    path = EXAMPLES_DIR / f"{name}.npz"
    return path if path.is_file() else DATA_DIR / f"{name}.npz"


def dataset_inputs(model, details, count):
    """The first `count` test samples of the model's dataset, prepared as
    tests/models/README.md says: x / 255, then quantized with the input's
    scale and zero point for integer inputs. Shape (count, *input shape)."""
    x = np.load(dataset_path(model.dataset))["x_test"][:count]
    return _prepared(x, details)


def labelled_samples(model, details, count):
    """(x, y): `count` test samples spread evenly over the model's dataset
    (the subsets are stored class by class, so the first few would share
    a label), prepared like dataset_inputs; y the integer labels."""
    with np.load(dataset_path(model.dataset)) as data:
        x, y = data["x_test"], data["y_test"]
    chosen = np.linspace(0, len(y) - 1, count).round().astype(np.int64)
    return _prepared(x[chosen], details), y[chosen].astype(np.int64)


def read_model(buffer):
    """The flatbuffer as tflite_micro's schema object tree (ModelT)."""
    return schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(bytearray(buffer), 0))


def op_name(model, op):
    """The builtin operator name of `op` (an OperatorT of `model`)."""
    code = model.operatorCodes[op.opcodeIndex]
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    return _OP_NAMES.get(builtin, f"BUILTIN_{builtin}")


def op_macs(name, output_shape, weight_shape):
    """Nominal MACs of one operator, taps on padding included."""
    outputs = int(np.prod(output_shape, dtype=np.int64))
    if name == "CONV_2D":  # filter [C_out, KH, KW, C_in / groups]
        return outputs * int(np.prod(weight_shape[1:], dtype=np.int64))
    if name == "DEPTHWISE_CONV_2D":  # filter [1, KH, KW, C_out]
        return outputs * int(weight_shape[1]) * int(weight_shape[2])
    if name == "FULLY_CONNECTED":  # weights [units, inputs]
        return outputs * int(weight_shape[1])
    return 0


def mac_counts(buffer):
    """{operator name: MACs per inference} for MAC_OPS, from subgraph 0."""
    model = read_model(buffer)
    subgraph = model.subgraphs[0]
    counts = {}
    for op in subgraph.operators or []:
        name = op_name(model, op)
        if name not in MAC_OPS:
            continue
        output = subgraph.tensors[op.outputs[0]].shape
        weights = subgraph.tensors[op.inputs[1]].shape
        counts[name] = counts.get(name, 0) + op_macs(name, output, weights)
    return counts


def _int8_tensor(name):
    tensor = schema.TensorT()
    tensor.name = name
    tensor.shape = [1, 1]
    tensor.type = schema.TensorType.INT8
    tensor.buffer = 0
    tensor.quantization = schema.QuantizationParametersT()
    tensor.quantization.scale = [1.0]
    tensor.quantization.zeroPoint = [0]
    return tensor


def tiny_model():
    """A valid model with one RELU on one int8 value: invoking it costs
    little more than the Python binding and the interpreter's dispatch."""
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.RELU
    code.version = 1
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0], [1]
    subgraph = schema.SubGraphT()
    subgraph.name = "main"
    subgraph.tensors = [_int8_tensor("x"), _int8_tensor("y")]
    subgraph.inputs, subgraph.outputs, subgraph.operators = [0], [1], [op]
    model = schema.ModelT()
    model.version = 3
    model.description = "benchmarks: one RELU on one int8 value"
    model.operatorCodes, model.subgraphs = [code], [subgraph]
    model.buffers = [schema.BufferT()]
    builder = flatbuffers.Builder(256)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
