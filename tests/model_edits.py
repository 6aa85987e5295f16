"""Small edits of committed .tflite models, for tests of bad input: they use
the flatbuffer schema shipped with tflite_micro to rewrite a model."""

import pathlib

import flatbuffers
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

import training_helpers

MODELS = pathlib.Path(__file__).resolve().parent / "models"


def model_bytes(name):
    return training_helpers.model_path(name).read_bytes()


def load(name):
    buf = model_bytes(name)
    return schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(buf, 0))


def pack(model):
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def operator_codes(model):
    return [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]


def first_operator_with(model, builtin_code):
    """(operator index, operator) of the first operator with builtin_code."""
    codes = operator_codes(model)
    subgraph = model.subgraphs[0]
    for index, op in enumerate(subgraph.operators):
        if codes[op.opcodeIndex] == builtin_code:
            return index, op
    raise LookupError(f"no operator with builtin code {builtin_code}")
