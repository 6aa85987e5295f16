"""The models that TensorFlow Lite Micro's own repository ships, against the
tflite_micro runtime.

tests/models/tflm/ holds copies of them (origin, commit and licence in its
README.md). Each one our runtime supports loads and gives every operator's
output tensor bit-exactly like tflite_micro on seeded random inputs of its
input type, with preserve_all_tensors and with the planned arena. Each one
it does not support is one that tflite_micro loads, and our runtime
refuses it with an UnsupportedModelError naming the feature (a variable
tensor and its operator, a custom operator's name, int16 activations,
float kernels, an operator it lacks), never a CorruptModelError or a crash;
the Python reader and the memory model read it without crashing too.

Quirks that TFLM accepts are also reproduced on edited models: a bias
whose quantized dimension lies outside its rank (as in
models/person_detect.tflite), one zero point for per-channel weights, and
packed INT4 weights (refused as unsupported, not as corrupt).

With TFLM_CHECKOUT=/path/to/tflite-micro set (a checkout of
github.com/tensorflow/tflite-micro), test_every_model_of_a_tflm_checkout
runs every .tflite of that tree the same way.
"""

import os
import pathlib
import re
import sys

import numpy as np
import pytest

import tflm_training
from tflm_training import errors, memory_model, tflite_graph

TESTS = pathlib.Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

import golden
import model_edits

TFLM_DIR = TESTS / "models" / "tflm"
SUPPORTED = sorted(TFLM_DIR.rglob("*.tflite"))
REFUSED_DIR = TFLM_DIR / "refused"
SEEDS = (0, 1, 2)

# Each refused fixture: what the message must say (every listed piece).
REFUSED = {
    "trained_lstm_int8": ["variable tensor", "LSTM and SVDF", "stateful models are not supported"],
    "keyword_scrambled_8bit": [
        "variable tensor",
        "LSTM and SVDF",
        "stateful models are not supported",
    ],
    "audio_preprocessor_int8": ["operator 0", "custom operator 'SignalWindow'"],
    "hello_world_float": [
        "operator 0 (FULLY_CONNECTED)",
        "FLOAT32",
        "float kernels are not supported",
    ],
    "seanet_conv0": ["operator 0 (CONV_2D)", "INT16", "16-bit activations are not supported"],
    "seanet_add0": ["operator 0 (ADD)", "INT16", "int16 activations are not supported"],
    "seanet_sub0": ["operator 0 (SUB)", "INT16", "int16 activations are not supported"],
    "seanet_leaky_relu0": [
        "operator 0 (LEAKY_RELU)",
        "INT16",
        "int16 activations are not supported",
    ],
    "seanet_pad0": ["operator 0 (PAD)", "INT16", "int16 activations are not supported"],
    "seanet_quantize0": ["operator 0 (QUANTIZE)", "got INT32"],
    "seanet_quantize1": ["operator 0 (QUANTIZE)", "INT16", "int16 activations are not supported"],
    "seanet_transpose_conv4": ["operator 0 is TRANSPOSE_CONV", "does not support"],
}


def _refused_path(name):
    return REFUSED_DIR / f"{name}.tflite.refused"


def _golden(buf):
    # tflite_micro's default arena is too small for some of these models.
    return golden.GoldenModel(buf, arena_size=max(1 << 20, 16 * len(buf)))


def _random_inputs(g, seed):
    rng = np.random.default_rng(seed)
    inputs = []
    for i in range(len(g.input_indices)):
        details = g.input_details(i)
        dtype = np.dtype(details["dtype"])
        shape = tuple(int(d) for d in details["shape"])
        if dtype.kind == "f":
            inputs.append(rng.standard_normal(shape).astype(dtype))
        else:
            info = np.iinfo(dtype)
            inputs.append(rng.integers(info.min, int(info.max) + 1, size=shape, dtype=dtype))
    return inputs


def _difference(ours, ref):
    ours, ref = np.asarray(ours), np.asarray(ref)
    if ours.dtype != ref.dtype:
        return f"dtype {ours.dtype}, tflite_micro has {ref.dtype}"
    if ours.size != ref.size:
        return f"shape {ours.shape}, tflite_micro has {ref.shape}"
    bad = np.flatnonzero(ours.ravel() != ref.ravel())
    if bad.size:
        k = int(bad[0])
        return (
            f"{bad.size} of {ours.size} values differ (first at {k}: ours "
            f"{ours.ravel()[k]}, tflite_micro {ref.ravel()[k]})"
        )
    return None


def assert_bit_exact(buf, label, seeds=SEEDS):
    """Every operator output (preserve_all_tensors) and every model output
    (planned arena too) equal tflite_micro's on seeded random inputs."""
    g = _golden(buf)
    ours = tflm_training.Interpreter(buf, preserve_all_tensors=True)
    planned = tflm_training.Interpreter(buf)
    lines = golden.describe_ops(buf)
    ops = golden.list_ops(buf)
    problems = []
    for seed in seeds:
        xs = _random_inputs(g, seed)
        ref = g.run_all(xs)
        for i, x in enumerate(xs):
            ours.set_input(x, i)
            planned.set_input(x, i)
        ours.invoke()
        planned.invoke()
        for t in g.input_indices:
            msg = _difference(ours.get_tensor(t), ref[t])
            if msg:
                problems.append(f"seed {seed}, input tensor {t}: {msg}")
        for op_index, _, outputs in ops:
            for t in outputs:
                msg = _difference(ours.get_tensor(t), ref[t])
                if msg:
                    problems.append(
                        f"seed {seed}, op {op_index} {lines[op_index]}, tensor {t}: {msg}"
                    )
        for k in range(len(g.output_indices)):
            for which, it in (("preserve_all", ours), ("planned", planned)):
                msg = _difference(it.get_output(k), g.outputs()[k])
                if msg:
                    problems.append(f"seed {seed}, output {k} ({which}): {msg}")
    assert not problems, f"{label} differs from tflite_micro:\n" + "\n".join(problems[:10])


def assert_refused_precisely(buf, label):
    """tflm_training refuses with UnsupportedModelError (returned) whose
    message names an operator or tensor; the Python reader and the memory
    model read the file without crashing (their own errors are
    TflmTrainingErrors)."""
    with pytest.raises(errors.UnsupportedModelError) as raised:
        tflm_training.Interpreter(buf)
    message = str(raised.value)
    assert re.search(r"\b(operator|tensor) \d+", message), (label, message)
    for reader in (tflite_graph.read_graph, memory_model.inference_arena):
        try:
            reader(buf)
        except errors.TflmTrainingError:
            pass
    return message


# -- the committed copies ---------------------------------------------------------


def test_fixtures_are_all_listed():
    refused = sorted(
        p.name[: -len(".tflite.refused")]
        for p in REFUSED_DIR.iterdir()
        if p.name.endswith(".tflite.refused")
    )
    assert refused == sorted(REFUSED)
    assert len(SUPPORTED) >= 7, SUPPORTED
    # tests/models/**/*.tflite globs (test_memory_model.py, test_fuzz.py)
    # must not see the refused ones.
    assert not list(REFUSED_DIR.rglob("*.tflite"))


@pytest.mark.parametrize("path", SUPPORTED, ids=lambda p: p.stem)
def test_supported_tflm_model_is_bit_exact(path):
    assert_bit_exact(path.read_bytes(), path.name)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_tflm_model_names_the_feature(name):
    buf = _refused_path(name).read_bytes()
    _golden(buf)  # tflite_micro loads it: a feature, not a corrupt file
    message = assert_refused_precisely(buf, name)
    for piece in REFUSED[name]:
        assert piece in message, (name, piece, message)


# -- their quirks, on edited models -------------------------------------------------


@pytest.mark.parametrize("dimension", [3, 7, -1])
def test_bias_quantized_dimension_outside_its_rank_is_accepted(dimension):
    """models/person_detect.tflite gives its rank-1 conv biases quantized
    dimension 3; TFLM copies the field unchecked (micro_allocator.cc) and
    uses only a per-channel filter's."""
    model = model_edits.load("tflm/micro_speech_quantized")
    _, op = model_edits.first_operator_with(
        model, golden.schema_fb.BuiltinOperator.DEPTHWISE_CONV_2D
    )
    bias = model.subgraphs[0].tensors[op.inputs[2]]
    bias.quantization.quantizedDimension = dimension
    buf = model_edits.pack(model)
    assert_bit_exact(buf, f"bias quantized dimension {dimension}", seeds=(0,))
    assert (
        memory_model.inference_arena(buf).total == tflm_training.Interpreter(buf).arena_used_bytes()
    )


@pytest.mark.parametrize(
    "model_name,builtin",
    [
        ("tflm/micro_speech_quantized", "DEPTHWISE_CONV_2D"),
        ("tflm/extra_ops/person_detect", "CONV_2D"),
    ],
)
def test_one_zero_point_for_per_channel_weights_is_accepted(model_name, builtin):
    """TFLM (micro_allocator.cc) gives every channel zero point 0 when a
    tensor has fewer zero points than scales."""
    model = model_edits.load(model_name)
    _, op = model_edits.first_operator_with(
        model, getattr(golden.schema_fb.BuiltinOperator, builtin)
    )
    weights = model.subgraphs[0].tensors[op.inputs[1]]
    assert len(weights.quantization.scale) > 1
    weights.quantization.zeroPoint = np.zeros(1, np.int64)
    buf = model_edits.pack(model)
    assert_bit_exact(buf, f"{builtin} weights with one zero point", seeds=(0,))
    assert (
        memory_model.inference_arena(buf).total == tflm_training.Interpreter(buf).arena_used_bytes()
    )


def test_packed_int4_weights_are_unsupported_not_corrupt():
    """TFLM's FULLY_CONNECTED takes INT4 weights packed two per byte."""
    model = model_edits.load("tflm/extra_ops/hello_world_int8")
    _, op = model_edits.first_operator_with(model, golden.schema_fb.BuiltinOperator.FULLY_CONNECTED)
    weights = model.subgraphs[0].tensors[op.inputs[1]]
    values = np.frombuffer(bytes(model.buffers[weights.buffer].data), np.int8)
    nibbles = np.clip(values, -8, 7).astype(np.uint8) & 0xF
    if nibbles.size % 2:
        nibbles = np.append(nibbles, 0)
    model.buffers[weights.buffer].data = (nibbles[0::2] | (nibbles[1::2] << 4)).astype(np.uint8)
    weights.type = golden.schema_fb.TensorType.INT4
    buf = model_edits.pack(model)
    g = _golden(buf)
    g.run(_random_inputs(g, 0))  # tflite_micro runs it
    message = assert_refused_precisely(buf, "INT4 weights")
    assert f"tensor {op.inputs[1]} is a constant of type INT4" in message, message
    assert "4-bit weights" in message, message


# -- a whole checkout, when there is one -------------------------------------------


def _checkout_models():
    root = os.environ.get("TFLM_CHECKOUT")
    if not root:
        return []
    return sorted(pathlib.Path(root).rglob("*.tflite"))


# Collected only when TFLM_CHECKOUT names a tflite-micro checkout (the
# fixtures above are its files that may be committed).
if os.environ.get("TFLM_CHECKOUT"):

    @pytest.mark.parametrize("path", _checkout_models(), ids=str)
    def test_every_model_of_a_tflm_checkout(path):
        """Bit-exact where we load it; otherwise an UnsupportedModelError
        that names an operator or tensor, whether or not tflite_micro
        loads it."""
        buf = path.read_bytes()
        try:
            tflm_training.Interpreter(buf)
        except errors.UnsupportedModelError:
            assert_refused_precisely(buf, path.name)
            return
        assert_bit_exact(buf, path.name, seeds=(0,))
