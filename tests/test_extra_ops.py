"""Bit-exactness of the added kernels against tflite_micro.

The models in tests/models/extra_ops/ (built by
tests/fixtures/make_extra_op_models.py; see the README there) exercise MUL,
SUB, LOGISTIC, TANH, HARD_SWISH, LEAKY_RELU, MAXIMUM, MINIMUM,
STRIDED_SLICE, TRANSPOSE, RESIZE_NEAREST_NEIGHBOR, SPLIT, SPLIT_V and
EXPAND_DIMS as the TFLite converter emits them from tf_keras layers. Each is
run with tflite_micro (kPreserveAllTensors, the golden reference) and with
our runtime (preserve_all_tensors=True) and EVERY operator output tensor
must be identical:

  * as converted, on seeded random int8 inputs over the full range (and,
    for unary_ops, whose activations read the model input directly, on
    every int8 value);
  * in quantization variants: the scales and zero points of the
    non-constant tensors are rewritten at random (scales times 2^[-5, 5]),
    which moves every requantization multiplier, shift and saturation
    radius. A variant that tflite_micro rejects must be rejected by our
    runtime too.
"""

import os
import sys
import zlib

import flatbuffers
import numpy as np
import pytest

import tflm_training

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)
import golden

MODELS_DIR = os.path.join(TESTS_DIR, "models", "extra_ops")
MODEL_NAMES = sorted(f[: -len(".tflite")] for f in os.listdir(MODELS_DIR) if f.endswith(".tflite"))

NEW_OPS = {
    "MUL",
    "SUB",
    "LOGISTIC",
    "TANH",
    "HARD_SWISH",
    "LEAKY_RELU",
    "MAXIMUM",
    "MINIMUM",
    "STRIDED_SLICE",
    "TRANSPOSE",
    "RESIZE_NEAREST_NEIGHBOR",
    "SPLIT",
    "SPLIT_V",
    "EXPAND_DIMS",
}
# Operators each model must contain (so a regenerated model that lost one,
# e.g. to a converter change, is noticed).
EXPECTED_OPS = {
    "unary_ops": {"LOGISTIC", "TANH", "HARD_SWISH", "LEAKY_RELU"},
    "binary_ops": {"MUL", "SUB", "MAXIMUM", "MINIMUM"},
    "binary_all_pairs": {"ADD", "SUB", "MUL", "MAXIMUM", "MINIMUM"},
    "squeeze_excite": {"HARD_SWISH", "MUL", "LOGISTIC", "ADD", "MEAN"},
    "activations": {"TANH", "LOGISTIC", "HARD_SWISH", "LEAKY_RELU", "MAXIMUM", "MINIMUM"},
    "strided_slice": {"STRIDED_SLICE"},
    "transpose": {"TRANSPOSE"},
    "resize_nearest_neighbor": {"RESIZE_NEAREST_NEIGHBOR"},
    "split": {"SPLIT", "SPLIT_V"},
    "expand_dims": {"EXPAND_DIMS"},
}
N_RANDOM_INPUTS = 4
N_VARIANTS = 12
SCALE_LOG2_RANGE = 5.0
GOLDEN_ARENA_SIZE = 4 << 20


def _bytes(name):
    with open(os.path.join(MODELS_DIR, name + ".tflite"), "rb") as f:
        return f.read()


def _inputs(buf, seed):
    """Seeded int8 arrays for every model input, over the full int8 range."""
    rng = np.random.default_rng(seed)
    m = golden.read_model(buf)
    sg = m.subgraphs[0]
    xs = []
    for t in sg.inputs:
        tensor = sg.tensors[t]
        assert golden.TYPE_NAMES[tensor.type] == "INT8"
        xs.append(rng.integers(-128, 128, size=tuple(tensor.shape), dtype=np.int64).astype(np.int8))
    return xs


def _all_values(buf):
    """Every int8 value in each input, for models whose inputs all have 256
    elements (unary_ops; binary_all_pairs, whose [1,256,1] and [1,1,256]
    inputs then broadcast to every pair of values); else None."""
    sg = golden.read_model(buf).subgraphs[0]
    shapes = [tuple(sg.tensors[t].shape) for t in sg.inputs]
    if any(int(np.prod(s)) != 256 for s in shapes):
        return None
    ramp = np.arange(-128, 128, dtype=np.int64).astype(np.int8)
    return [ramp.reshape(s) for s in shapes]


def _input_sets(buf, seeds):
    sets = [_inputs(buf, seed) for seed in seeds]
    every_value = _all_values(buf)
    if every_value is not None:
        sets.append(every_value)
    return sets


def _describe(ours, ref):
    if ours.shape != ref.shape:
        return "shape %s, tflite_micro has %s" % (ours.shape, ref.shape)
    a = ours.astype(np.int64).ravel()
    b = ref.astype(np.int64).ravel()
    bad = np.flatnonzero(a != b)
    return "%d of %d values differ, max |diff| %d (first at %d: ours %d, tflite_micro %d)" % (
        bad.size,
        a.size,
        np.abs(a - b).max(),
        bad[0],
        a[bad[0]],
        b[bad[0]],
    )


def _compare(buf, input_sets, label):
    """Runs both runtimes on each input set; returns a list of problems."""
    g = golden.GoldenModel(buf, arena_size=GOLDEN_ARENA_SIZE)
    ours = tflm_training.Interpreter.from_bytes(buf, preserve_all_tensors=True)
    ops = golden.list_ops_full(buf)
    op_lines = golden.describe_ops(buf)
    problems = []
    for k, xs in enumerate(input_sets):
        ref = g.run_all(xs)
        for i, x in enumerate(xs):
            ours.set_input(x, i)
        ours.invoke()
        for op_index, _, _, outputs in ops:
            for t in outputs:
                mine = ours.get_tensor(t)
                if (
                    mine.dtype != ref[t].dtype
                    or mine.shape != ref[t].shape
                    or not np.array_equal(mine, ref[t])
                ):
                    problems.append(
                        "%s, input set %d, op %d (%s), tensor %d: %s"
                        % (label, k, op_index, op_lines[op_index], t, _describe(mine, ref[t]))
                    )
    return problems


def test_models_cover_every_new_operator():
    assert sorted(EXPECTED_OPS) == MODEL_NAMES, "tests/models/extra_ops and EXPECTED_OPS disagree"
    seen = set()
    for name in MODEL_NAMES:
        ops = {op for _, op, _ in golden.list_ops(_bytes(name))}
        assert EXPECTED_OPS[name] <= ops, (name, sorted(EXPECTED_OPS[name] - ops))
        seen |= ops
    assert NEW_OPS <= seen, sorted(NEW_OPS - seen)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_tensor_matches_tflite_micro(name):
    buf = _bytes(name)
    problems = _compare(buf, _input_sets(buf, range(N_RANDOM_INPUTS)), name)
    assert not problems, "%d tensors differ:\n%s" % (len(problems), "\n".join(problems[:10]))


def _variant(buf, seed):
    """buf with the quantization of every non-constant tensor rewritten at
    random: scale times 2^u, u in [-5, 5], zero point in [-128, 127]. Most
    LOGISTIC outputs keep zero point -128 (tflite_micro rejects others)."""
    rng = np.random.default_rng(seed)
    m = golden.read_model(buf)
    sg = m.subgraphs[0]
    logistic_outputs = {outs[0] for _, op, _, outs in golden.list_ops_full(m) if op == "LOGISTIC"}
    for k, t in enumerate(sg.tensors):
        q = t.quantization
        constant = m.buffers[t.buffer].data is not None
        if constant or q is None or q.scale is None or len(q.scale) != 1:
            continue
        factor = 2.0 ** rng.uniform(-SCALE_LOG2_RANGE, SCALE_LOG2_RANGE)
        q.scale = np.array([q.scale[0] * factor], np.float32)
        zero_point = int(rng.integers(-128, 128))
        if k in logistic_outputs and rng.random() < 0.9:
            zero_point = -128
        q.zeroPoint = np.array([zero_point], np.int64)
    return _pack(m)


def _pack(model):
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@pytest.mark.slow
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_quantization_variants_match_tflite_micro(name):
    problems = []
    compared = 0
    for variant in range(N_VARIANTS):
        buf = _variant(_bytes(name), seed=1000 * variant + 7)
        label = "%s variant %d" % (name, variant)
        try:
            golden.GoldenModel(buf, arena_size=GOLDEN_ARENA_SIZE)
        except Exception as e:
            # tflite_micro rejects this variant: so must we.
            try:
                tflm_training.Interpreter.from_bytes(buf)
            except tflm_training.TflmTrainingError:
                continue
            problems.append(
                "%s: tflite_micro rejects it (%s) but our runtime "
                "accepts it" % (label, str(e).splitlines()[0])
            )
            continue
        try:
            problems += _compare(buf, _input_sets(buf, [100 + variant]), label)
        except tflm_training.TflmTrainingError as e:
            problems.append("%s: tflite_micro runs it, our runtime fails: %s" % (label, e))
        compared += 1
    assert not problems, "%d problems:\n%s" % (len(problems), "\n".join(problems[:10]))
    assert compared >= N_VARIANTS // 2, "%s: only %d of %d variants ran in tflite_micro" % (
        name,
        compared,
        N_VARIANTS,
    )


# Quantization at which deriving a requantization multiplier from float
# rather than double quotients of the scales (or the reverse) changes a few
# outputs, found by emulating both: (model, operator, its LEAKY_RELU alpha
# or None, (scale, zero point) of each model input, (scale, zero point) of
# the operator's output). The tflite_micro build compared with computes
# these quotients in double, although TFLM's SUB, HARD_SWISH and LEAKY_RELU
# sources once divided in float.
SCALE_ARITHMETIC_CASES = {
    "add": (
        "binary_all_pairs",
        "ADD",
        None,
        [(0.011619295924901962, 1), (0.17784370481967926, -126)],
        (0.1711745709180832, -124),
    ),
    "sub": (
        "binary_all_pairs",
        "SUB",
        None,
        [(0.1889697164297104, 13), (0.06725471466779709, 93)],
        (0.2903970777988434, 20),
    ),
    "hard_swish": (
        "unary_ops",
        "HARD_SWISH",
        None,
        [(0.06252771615982056, -72)],
        (0.03068973682820797, -126),
    ),
    "leaky_relu_identity": (
        "unary_ops",
        "LEAKY_RELU",
        0.2,
        [(0.08119545131921768, -128)],
        (0.05869117006659508, -128),
    ),
    "leaky_relu_alpha": (
        "unary_ops",
        "LEAKY_RELU",
        0.2,
        [(0.07497628033161163, 127)],
        (0.06194404140114784, 127),
    ),
}


@pytest.mark.parametrize("case", sorted(SCALE_ARITHMETIC_CASES))
def test_scale_arithmetic_matches_tflite_micro(case):
    """The model requantized to the case, fed every int8 value (every pair
    for binary_all_pairs): each output must be TFLM's."""
    model, op_name, alpha, inputs, output = SCALE_ARITHMETIC_CASES[case]
    m = golden.read_model(_bytes(model))
    sg = m.subgraphs[0]
    (out,) = [
        outs[0]
        for k, op, _, outs in golden.list_ops_full(m)
        if op == op_name
        and (alpha is None or np.float32(sg.operators[k].builtinOptions.alpha) == np.float32(alpha))
    ]
    for t, (scale, zero_point) in list(zip(sg.inputs, inputs)) + [(out, output)]:
        sg.tensors[t].quantization.scale = np.array([scale], np.float32)
        sg.tensors[t].quantization.zeroPoint = np.array([zero_point], np.int64)
    buf = _pack(m)
    problems = _compare(buf, [_all_values(buf)], case)
    assert not problems, "\n".join(problems[:10])


# ---------------------------------------------------------------------------
# Random configurations of the data-movement operators: the constant inputs
# (begin/end/strides, perm, size, axis), options and output shapes of the
# models' operators are rewritten at random.
# ---------------------------------------------------------------------------

N_CONFIGS = 40


def _const_i32(m, values, shape):
    """Appends a constant int32 tensor (with its own buffer); its index."""
    schema = golden.schema_fb
    buffer = schema.BufferT()
    buffer.data = np.asarray(values, "<i4").view(np.uint8)
    m.buffers.append(buffer)
    tensor = schema.TensorT()
    tensor.shape = np.array(shape, np.int32)
    tensor.type = schema.TensorType.INT32
    tensor.buffer = len(m.buffers) - 1
    tensor.name = b"random_config_%d" % len(m.subgraphs[0].tensors)
    m.subgraphs[0].tensors.append(tensor)
    return len(m.subgraphs[0].tensors) - 1


def _set_shape(m, t, shape):
    m.subgraphs[0].tensors[t].shape = np.array(shape, np.int32)
    m.subgraphs[0].tensors[t].shapeSignature = None


def _first_op(m, name):
    for k, op, ins, outs in golden.list_ops_full(m):
        if op == name:
            return m.subgraphs[0].operators[k], list(ins), list(outs)
    raise LookupError(name)


def _strided_slice_config(m, rng):
    """Random begin/end/strides and masks; shrunk axes step by 1 (as the
    converter writes them) except sometimes by -1. Returns True when TFLM
    would leave the output unwritten (a shrunk axis whose begin is past the
    end, or that steps backward), which our runtime rejects instead."""
    op, ins, outs = _first_op(m, "STRIDED_SLICE")
    shape = list(m.subgraphs[0].tensors[ins[0]].shape)
    rank = len(shape)
    o = op.builtinOptions
    while True:
        begin = rng.integers(-8, 9, rank)
        end = rng.integers(-8, 9, rank)
        strides = rng.choice([-3, -2, -1, 1, 1, 2, 3], rank)
        o.beginMask = int(rng.integers(0, 1 << rank))
        o.endMask = int(rng.integers(0, 1 << rank))
        o.shrinkAxisMask = int(rng.integers(0, 1 << rank)) if rng.random() < 0.4 else 0
        out_shape, undefined = [], False
        for d in range(rank):
            b = None if (o.beginMask >> d) & 1 else int(begin[d])
            if (o.shrinkAxisMask >> d) & 1:
                strides[d] = -1 if rng.random() < 0.1 else 1
                start = 0 if b is None else (b + shape[d] if b < 0 else b)
                undefined |= strides[d] < 0 or start >= shape[d]
                continue
            e = None if (o.endMask >> d) & 1 else int(end[d])
            out_shape.append(len(range(shape[d])[slice(b, e, int(strides[d]))]))
        if min(out_shape, default=1) > 0:  # TFLM rejects empty outputs
            break
    op.inputs = np.array(
        [
            ins[0],
            _const_i32(m, begin, [rank]),
            _const_i32(m, end, [rank]),
            _const_i32(m, strides, [rank]),
        ],
        np.int32,
    )
    _set_shape(m, outs[0], out_shape)
    return undefined


def _transpose_config(m, rng):
    op, ins, outs = _first_op(m, "TRANSPOSE")
    shape = list(m.subgraphs[0].tensors[ins[0]].shape)
    perm = rng.permutation(len(shape))
    op.inputs = np.array([ins[0], _const_i32(m, perm, [len(perm)])], np.int32)
    _set_shape(m, outs[0], [shape[p] for p in perm])


def _resize_config(m, rng):
    op, ins, outs = _first_op(m, "RESIZE_NEAREST_NEIGHBOR")
    shape = list(m.subgraphs[0].tensors[ins[0]].shape)
    size = rng.integers(1, 14, 2)
    op.builtinOptions.alignCorners = bool(rng.random() < 0.5)
    op.builtinOptions.halfPixelCenters = bool(rng.random() < 0.5)
    op.inputs = np.array([ins[0], _const_i32(m, size, [2])], np.int32)
    _set_shape(m, outs[0], [shape[0], int(size[0]), int(size[1]), shape[3]])


def _split_v_config(m, rng):
    op, ins, outs = _first_op(m, "SPLIT_V")
    shape = list(m.subgraphs[0].tensors[ins[0]].shape)
    axes = [a for a in range(len(shape)) if shape[a] >= len(outs)]
    axis = int(rng.choice(axes)) - (len(shape) if rng.random() < 0.5 else 0)
    # Pieces of at least 1: TFLM rejects empty outputs.
    cuts = np.sort(rng.choice(np.arange(1, shape[axis]), len(outs) - 1, replace=False))
    sizes = np.diff(np.concatenate([[0], cuts, [shape[axis]]]))
    op.inputs = np.array(
        [ins[0], _const_i32(m, sizes, [len(sizes)]), _const_i32(m, [axis], [])], np.int32
    )
    for t, size in zip(outs, sizes):
        out_shape = list(shape)
        out_shape[axis] = int(size)
        _set_shape(m, t, out_shape)


def _split_config(m, rng):
    op, ins, outs = _first_op(m, "SPLIT")
    shape = list(m.subgraphs[0].tensors[ins[1]].shape)
    axes = [a for a in range(len(shape)) if shape[a] % len(outs) == 0]
    axis = int(rng.choice(axes)) - (len(shape) if rng.random() < 0.5 else 0)
    op.inputs = np.array([_const_i32(m, [axis], []), ins[1]], np.int32)
    for t in outs:
        out_shape = list(shape)
        out_shape[axis] //= len(outs)
        _set_shape(m, t, out_shape)


def _expand_dims_config(m, rng):
    op, ins, outs = _first_op(m, "EXPAND_DIMS")
    shape = list(m.subgraphs[0].tensors[ins[0]].shape)
    axis = int(rng.integers(-len(shape) - 1, len(shape) + 1))
    op.inputs = np.array([ins[0], _const_i32(m, [axis], [1])], np.int32)
    out_shape = list(shape)
    out_shape.insert(axis if axis >= 0 else axis + len(shape) + 1, 1)
    _set_shape(m, outs[0], out_shape)


RANDOM_CONFIGS = {
    "STRIDED_SLICE": ("strided_slice", _strided_slice_config),
    "TRANSPOSE": ("transpose", _transpose_config),
    "RESIZE_NEAREST_NEIGHBOR": ("resize_nearest_neighbor", _resize_config),
    "SPLIT": ("split", _split_config),
    "SPLIT_V": ("split", _split_v_config),
    "EXPAND_DIMS": ("expand_dims", _expand_dims_config),
}


@pytest.mark.slow
@pytest.mark.parametrize("op_name", sorted(RANDOM_CONFIGS))
def test_random_configurations_match_tflite_micro(op_name):
    model, configure = RANDOM_CONFIGS[op_name]
    problems = []
    compared = 0
    for k in range(N_CONFIGS):
        rng = np.random.default_rng([zlib.crc32(op_name.encode()), k])
        m = golden.read_model(_bytes(model))
        undefined_in_tflm = configure(m, rng)
        buf = _pack(m)
        label = "%s configuration %d" % (op_name, k)
        if undefined_in_tflm:
            try:
                tflm_training.Interpreter.from_bytes(buf)
                problems.append(
                    "%s: TFLM leaves the output undefined; our runtime must reject it" % label
                )
            except tflm_training.TflmTrainingError:
                pass
            continue
        try:
            golden.GoldenModel(buf, arena_size=GOLDEN_ARENA_SIZE)
        except Exception as e:
            try:
                tflm_training.Interpreter.from_bytes(buf)
            except tflm_training.TflmTrainingError:
                continue
            problems.append(
                "%s: tflite_micro rejects it (%s) but our runtime "
                "accepts it" % (label, str(e).splitlines()[0])
            )
            continue
        try:
            problems += _compare(buf, _input_sets(buf, [k]), label)
        except tflm_training.TflmTrainingError as e:
            problems.append("%s: tflite_micro runs it, our runtime fails: %s" % (label, e))
        compared += 1
    assert not problems, "%d problems:\n%s" % (len(problems), "\n".join(problems[:10]))
    assert compared >= N_CONFIGS // 2, (op_name, compared)


def test_relu_requantizes_with_the_scale_ratio_in_double():
    """Found by comparing with the tflite-micro wheel: a float division of the
    scales gives 98 here, TFLM's double division 97."""
    import single_op_models as som

    model = som.build_model(
        "RELU",
        [som.Tensor(shape=[1, 2], scale=0.08119545131921768, zero_point=-128)],
        [som.Tensor(shape=[1, 2], scale=0.05869117006659508, zero_point=-128)],
    )
    interpreter = tflm_training.Interpreter.from_bytes(model)
    interpreter.set_input(np.array([[35, 100]], np.int8), 0)
    interpreter.invoke()
    np.testing.assert_array_equal(interpreter.get_output(0), [[97, 127]])
