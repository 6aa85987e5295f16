"""Bad input gets a clear exception (and the C status code), never a crash."""

import numpy as np
import pytest
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

import model_edits
import tflm_training
from tflm_training import errors

OP = schema.BuiltinOperator
TYPE = schema.TensorType


def _interpreter(data, **kwargs):
    return tflm_training.Interpreter.from_bytes(data, **kwargs)


def test_every_truncation_of_a_model_is_rejected_as_corrupt():
    data = model_edits.model_bytes("conv_stack")
    for size in list(range(0, 64)) + list(range(64, len(data), 97)):
        with pytest.raises(errors.CorruptModelError, match="corrupt model"):
            _interpreter(data[:size])


def test_random_bytes_and_wrong_identifier_are_rejected():
    with pytest.raises(errors.CorruptModelError, match="not a .tflite"):
        _interpreter(b"\x00" * 4 + b"NOPE" + bytes(range(200)))
    data = bytearray(model_edits.model_bytes("mlp"))
    data[4:8] = b"XXXX"
    with pytest.raises(errors.CorruptModelError, match="TFL3 file identifier"):
        _interpreter(bytes(data))


def test_unsupported_operator_is_named_with_its_index():
    model = model_edits.load("conv_stack")
    index, op = model_edits.first_operator_with(model, OP.MAX_POOL_2D)
    model.operatorCodes[op.opcodeIndex].builtinCode = OP.L2_POOL_2D
    model.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode = OP.L2_POOL_2D
    with pytest.raises(errors.UnsupportedModelError) as raised:
        _interpreter(model_edits.pack(model))
    assert f"operator {index} is L2_POOL_2D" in str(raised.value)
    assert raised.value.status == 3


def test_custom_operator_is_rejected():
    model = model_edits.load("mlp")
    model.operatorCodes[0].builtinCode = OP.CUSTOM
    model.operatorCodes[0].deprecatedBuiltinCode = OP.CUSTOM
    model.operatorCodes[0].customCode = b"MyOp"
    with pytest.raises(errors.UnsupportedModelError, match="custom operator"):
        _interpreter(model_edits.pack(model))


def test_float_weights_where_int8_is_required_name_the_operator():
    model = model_edits.load("conv_stack")
    index, op = model_edits.first_operator_with(model, OP.CONV_2D)
    weights = model.subgraphs[0].tensors[op.inputs[1]]
    buffer = model.buffers[weights.buffer]
    weights.type = TYPE.FLOAT32
    buffer.data = np.zeros(len(buffer.data), np.float32).view(np.uint8)
    with pytest.raises(errors.UnsupportedModelError) as raised:
        _interpreter(model_edits.pack(model))
    assert f"operator {index} (CONV_2D)" in str(raised.value)
    assert "FLOAT32" in str(raised.value)


def test_buffer_size_that_disagrees_with_the_shape_is_corrupt():
    model = model_edits.load("mlp")
    _, op = model_edits.first_operator_with(model, OP.FULLY_CONNECTED)
    weights = model.subgraphs[0].tensors[op.inputs[1]]
    model.buffers[weights.buffer].data = model.buffers[weights.buffer].data[:-1]
    with pytest.raises(errors.CorruptModelError, match="does not match its shape"):
        _interpreter(model_edits.pack(model))


def test_tensor_index_out_of_range_is_corrupt():
    model = model_edits.load("mlp")
    op = model.subgraphs[0].operators[0]
    op.inputs = np.array(op.inputs, dtype=np.int32)
    op.inputs[0] = 10_000
    with pytest.raises(errors.CorruptModelError, match="tensor 10000"):
        _interpreter(model_edits.pack(model))


def test_arena_too_small_says_how_much_is_needed():
    data = model_edits.model_bytes("ds_cnn")
    needed = _interpreter(data).arena_used_bytes()
    with pytest.raises(errors.ArenaTooSmallError, match=f"needs {needed} bytes"):
        _interpreter(data, arena_size=needed - 16)
    with pytest.raises(errors.ArenaTooSmallError, match="too small"):
        _interpreter(data, arena_size=64)
    assert _interpreter(data, arena_size=needed).arena_used_bytes() == needed


def test_wrong_input_shape_or_dtype_is_rejected_before_running():
    it = _interpreter(model_edits.model_bytes("conv_stack"))
    shape = tuple(int(d) for d in it.get_input_details(0)["shape"])
    with pytest.raises(errors.InputMismatchError, match=r"shape \(1, 32, 32, 3\)"):
        it.set_input(np.zeros(shape[1:], np.int8), 0)
    with pytest.raises(errors.InputMismatchError, match="dtype int8"):
        it.set_input(np.zeros(shape, np.float32), 0)
    with pytest.raises(errors.InvalidArgumentError, match="no input 1"):
        it.set_input(np.zeros(shape, np.int8), 1)


def test_bad_indices_and_arguments():
    it = _interpreter(model_edits.model_bytes("mlp"))
    with pytest.raises(errors.InvalidArgumentError, match="does not exist"):
        it.get_tensor(it.num_tensors)
    with pytest.raises(errors.InvalidArgumentError, match="no output 3"):
        it.get_output(3)
    with pytest.raises(errors.InvalidArgumentError, match="must be bytes"):
        tflm_training.Interpreter.from_bytes("not bytes")
    with pytest.raises(errors.InvalidArgumentError, match="does not exist"):
        tflm_training.Interpreter.from_file("/nonexistent/model.tflite")
    with pytest.raises(errors.InvalidArgumentError, match="arena_size"):
        _interpreter(model_edits.model_bytes("mlp"), arena_size=0)


def test_reused_intermediate_needs_preserve_all_tensors():
    data = model_edits.model_bytes("conv_stack")
    it = _interpreter(data)
    it.set_input(np.zeros(tuple(it.get_input_details(0)["shape"]), np.int8), 0)
    it.invoke()
    reused = [i for i in range(it.num_tensors) if _raises_reused(it, i)]
    assert reused, "a conv stack reuses activation memory"
    preserved = _interpreter(data, preserve_all_tensors=True)
    assert preserved.arena_used_bytes() > it.arena_used_bytes()
    preserved.set_input(np.zeros(tuple(it.get_input_details(0)["shape"]), np.int8), 0)
    preserved.invoke()
    for i in reused:
        preserved.get_tensor(i)
    np.testing.assert_array_equal(preserved.get_output(0), it.get_output(0))


def _raises_reused(it, index):
    try:
        it.get_tensor(index)
    except errors.InvalidArgumentError as error:
        return "reused" in str(error)
    return False
