"""The backward kernels' C interface, for tests (no TensorFlow): the
ctypes structs and signatures of tt_backward_math.h and tt_backward.h, the
`lib` fixture, random quantized data, the float32 error bound of a
gradient, and one-operator models loaded in the interpreter with helpers to
call their backward kernel.

Not a test module: tests/test_backward_ops.py compares the pure functions
against TensorFlow autodiff with these; tests/test_backward_kernels.py and
tests/test_in_place_gradients.py run the kernels on the host only.
"""

import ctypes

import numpy as np
import pytest

import single_op_models as som
from tflm_training import _native
from tflm_training.interpreter import Interpreter

EPS32 = float(np.finfo(np.float32).eps)  # 2^-23
MAX_RANK = 6
MAX_INPUTS = 8
UPDATE_BIAS, UPDATE_WEIGHTS = 0, 1
TT_OK, TT_ERR_BAD_STATE, TT_ERR_BAD_PLAN = 0, 6, 7

i32 = ctypes.c_int32
f32 = ctypes.c_float
vp = ctypes.c_void_p


def _struct(name, fields):
    return type(name, (ctypes.Structure,), {"_fields_": fields})


def _ints(*names):
    return [(n, i32) for n in names]


ConvShape = _struct(
    "ConvShape",
    _ints(
        "batches",
        "in_h",
        "in_w",
        "in_c",
        "filter_h",
        "filter_w",
        "filter_depth",
        "out_h",
        "out_w",
        "out_c",
        "filters_per_group",
    ),
)
ConvWindow = _struct(
    "ConvWindow", _ints("stride_h", "stride_w", "dilation_h", "dilation_w", "pad_h", "pad_w")
)
DepthwiseShape = _struct(
    "DepthwiseShape",
    _ints(
        "batches",
        "in_h",
        "in_w",
        "in_c",
        "filter_h",
        "filter_w",
        "depth_multiplier",
        "out_h",
        "out_w",
        "out_c",
    ),
)
PoolParams = _struct(
    "PoolParams",
    _ints(
        "batches",
        "input_height",
        "input_width",
        "depth",
        "output_height",
        "output_width",
        "stride_height",
        "stride_width",
        "filter_height",
        "filter_width",
        "padding_height",
        "padding_width",
        "activation_min",
        "activation_max",
    ),
)
BroadcastParams = _struct(
    "BroadcastParams",
    [
        ("num_elements", i32),
        ("broadcast", i32),
        ("dims", i32 * MAX_RANK),
        ("strides1", i32 * MAX_RANK),
        ("strides2", i32 * MAX_RANK),
    ],
)
BackwardNeeds = _struct(
    "BackwardNeeds",
    [
        ("saved_inputs", ctypes.c_uint32),
        ("scratch_bytes", ctypes.c_uint32),
        ("has_clamp", ctypes.c_bool),
        ("clamp_min", i32),
        ("clamp_max", i32),
        ("in_place", ctypes.c_bool),
        ("in_place_scratch_bytes", ctypes.c_uint32),
    ],
)
BackwardIO = _struct(
    "BackwardIO",
    [
        ("output_grad", vp),
        ("input_grads", vp * MAX_INPUTS),
        ("scratch", vp),
        ("update", vp),
        ("in_place", ctypes.c_bool),
    ],
)
LayerUpdate = _struct(
    "LayerUpdate",
    [
        ("kind", i32),
        ("num_channels", i32),
        ("channels", vp),
        ("weights_per_channel", i32),
        ("learning_rate", f32),
        ("momentum", f32),
        ("qas", ctypes.c_bool),
        ("apply", ctypes.c_bool),
        ("batch_scale", f32),
        ("weight_residual", vp),
        ("weight_velocity", vp),
        ("weight_accumulator", vp),
        ("bias_residual", vp),
        ("bias_velocity", vp),
        ("bias_accumulator", vp),
        ("error", vp),
        ("probe", ctypes.c_bool),
        ("probe_weight_sq", vp),
        ("probe_bias_sq", vp),
    ],
)

_P = ctypes.POINTER
# Small int32 arrays are passed as numpy arrays, which the call keeps alive.
INT32_ARRAY = np.ctypeslib.ndpointer(np.int32, flags="C_CONTIGUOUS")
_SIGNATURES = {
    "tt_grad_scaled_add": [i32, f32, vp, vp],
    "tt_fc_input_grad": [i32, i32, i32, vp, i32, vp, i32, vp, vp],
    "tt_fc_channel_grad": [i32, i32, i32, i32, vp, i32, f32, vp, vp, vp],
    "tt_conv_input_grad": [_P(ConvShape), _P(ConvWindow), vp, vp, i32, vp, vp],
    "tt_conv_channel_grad": [_P(ConvShape), _P(ConvWindow), i32, vp, i32, f32, vp, vp, vp],
    "tt_depthwise_input_grad": [_P(DepthwiseShape), _P(ConvWindow), vp, vp, i32, vp, vp],
    "tt_depthwise_channel_grad": [
        _P(DepthwiseShape),
        _P(ConvWindow),
        i32,
        vp,
        i32,
        f32,
        vp,
        vp,
        vp,
    ],
    "tt_add_sub_grad": [_P(BroadcastParams), i32, vp, vp, vp],
    "tt_average_pool_grad": [_P(PoolParams), f32, vp, vp],
    "tt_max_pool_grad": [_P(PoolParams), vp, f32, vp, vp],
    "tt_mean_grad": [i32, INT32_ARRAY, ctypes.c_uint32, vp, vp],
    "tt_pad_grad": [i32, INT32_ARRAY, INT32_ARRAY, INT32_ARRAY, f32, vp, vp, vp],
    "tt_concatenation_grad": [i32, i32, i32, i32, vp, vp],
    "tt_backward_prepare_node": [vp, i32, vp, _P(BackwardNeeds)],
    "tt_backward_run_node": [vp, i32, _P(BackwardIO)],
}


@pytest.fixture(scope="module")
def lib():
    library = _native.library()
    for name, argtypes in _SIGNATURES.items():
        function = getattr(library, name)
        function.argtypes = argtypes
        function.restype = ctypes.c_int if name.startswith("tt_backward") else None
    return library


def ptr(array):
    """Address of a numpy array (None stays NULL)."""
    return None if array is None else array.ctypes.data


def c_array(values, dtype):
    return np.ascontiguousarray(np.asarray(values, dtype=dtype))


def aligned_floats(count):
    """A zeroed float32 array whose data is 16-byte aligned."""
    raw = np.zeros(count + 4, np.float32)
    start = ((-raw.ctypes.data) % 16) // 4
    return raw[start : start + count]


# ---------------------------------------------------------------------------
# Random quantized data.


def rand_int8(rng, shape, low=-128, high=127):
    return rng.integers(low, high + 1, size=shape).astype(np.int8)


def rand_scale(rng, count=None):
    if count is None:
        return np.float32(rng.uniform(0.002, 0.05))
    return rng.uniform(0.002, 0.05, size=count).astype(np.float32)


def dequantize(q, scale, zero_point=0):
    return np.asarray(scale, np.float64) * (q.astype(np.float64) - zero_point)


def rand_grad(rng, shape):
    """float32 dL/dy with about a third of it masked to zero."""
    dy = np.asarray(rng.standard_normal(shape), np.float32)
    dy[np.asarray(rng.random(shape)) < 0.33] = 0.0
    return dy


def assert_grad_close(ours, ref, magnitude, terms, what):
    ours = np.asarray(ours, np.float64)
    assert ours.shape == ref.shape, (what, ours.shape, ref.shape)
    bound = (terms + 2) * EPS32 * magnitude
    error = np.abs(ours - ref)
    worst = np.argmax(error - bound) if error.size else 0
    assert np.all(error <= bound), (
        f"{what}: |ours - TF| = {error.flat[worst]:.3e} exceeds the bound "
        f"{bound.flat[worst]:.3e} at flat index {worst} ({terms} terms; "
        f"ours {ours.flat[worst]!r}, TF {ref.flat[worst]!r})"
    )


def scales_arg(scales):
    """(array, step) as the C functions read per-channel scales."""
    scales = c_array(np.atleast_1d(scales), np.float32)
    return scales, (4 if scales.size > 1 else 0)


def fc_case(seed):
    rng = np.random.default_rng([1, seed])
    batches, depth, units = (
        int(rng.integers(1, 5)),
        int(rng.integers(1, 41)),
        int(rng.integers(1, 13)),
    )
    per_channel = bool(rng.random() < 0.5)
    q_w = rand_int8(rng, (units, depth), -127, 127)
    if per_channel:
        w_scale, filter_offset = rand_scale(rng, units), 0
    else:
        w_scale, filter_offset = rand_scale(rng), -int(rng.integers(-5, 6))
    q_x = rand_int8(rng, (batches, depth))
    x_scale, x_zp = rand_scale(rng), int(rng.integers(-20, 21))
    dy = rand_grad(rng, (batches, units))
    w_real = np.asarray(w_scale, np.float64).reshape(-1, 1) * (
        q_w.astype(np.float64) + filter_offset
    )
    return dict(
        rng=rng,
        batches=batches,
        depth=depth,
        units=units,
        q_w=q_w,
        w_scale=w_scale,
        filter_offset=filter_offset,
        q_x=q_x,
        x_scale=x_scale,
        x_zp=x_zp,
        dy=dy,
        w_real=w_real,
        x_real=dequantize(q_x, x_scale, x_zp),
    )


def broadcast_params(shape1, shape2):
    """tt_broadcast_params for two shapes (tt_broadcast_prepare's rule)."""
    rank = max(len(shape1), len(shape2))
    a = (1,) * (MAX_RANK - len(shape1)) + tuple(shape1)
    b = (1,) * (MAX_RANK - len(shape2)) + tuple(shape2)
    out = tuple(max(x, y) for x, y in zip(a, b))
    p = BroadcastParams()
    p.num_elements = int(np.prod(out))
    p.broadcast = int(tuple(shape1) != tuple(shape2) or len(shape1) != len(shape2))
    stride1 = stride2 = 1
    for d in range(MAX_RANK - 1, -1, -1):
        p.dims[d] = out[d]
        p.strides1[d] = 0 if (a[d] == 1 and out[d] != 1) else stride1
        p.strides2[d] = 0 if (b[d] == 1 and out[d] != 1) else stride2
        stride1 *= a[d]
        stride2 *= b[d]
    return p, out[MAX_RANK - rank :]


# ---------------------------------------------------------------------------
# One-operator models.

T = som.Tensor
INT32 = som.TensorType.INT32


class OneOp:
    """A one-operator model loaded in the interpreter, run forward once on
    random inputs, with helpers to call its backward kernel."""

    def __init__(self, lib, rng, op_name, inputs, outputs, options=None, extra_arena=0):
        self.lib = lib
        self.inputs, self.outputs = inputs, outputs
        model = som.build_model(op_name, inputs, outputs, options)
        probe = Interpreter(model, preserve_all_tensors=True)
        self.interp = Interpreter(
            model, arena_size=probe.arena_used_bytes() + extra_arena + 64, preserve_all_tensors=True
        )
        graph_input = 0
        for tensor in inputs:
            if tensor is not None and tensor.data is None:
                data = rand_int8(rng, tensor.shape)
                self.interp.set_input(data, graph_input)
                graph_input += 1
        self.interp.invoke()
        self.state = self.interp._state
        self.index = {}
        n = 0
        for i, tensor in enumerate(list(inputs) + list(outputs)):
            if tensor is not None:
                self.index[i] = n
                n += 1

    def tensor(self, position):
        """Values of operator input `position` (outputs follow inputs)."""
        return self.interp.get_tensor(self.index[position])

    def record(self, position):
        return self.lib.tt_interpreter_tensor(self.state, self.index[position]).contents

    def prepare(self, update=None):
        needs = BackwardNeeds()
        address = None if update is None else ctypes.addressof(update)
        status = self.lib.tt_backward_prepare_node(self.state, 0, address, ctypes.byref(needs))
        return status, needs

    def backward(self, dy, input_grads, update=None, scratch=None, in_place=False):
        io = BackwardIO()
        io.output_grad = ptr(dy)
        for i, grad in enumerate(input_grads):
            io.input_grads[i] = ptr(grad)
        io.scratch = ptr(scratch)
        io.update = None if update is None else ctypes.addressof(update)
        io.in_place = in_place
        return self.lib.tt_backward_run_node(self.state, 0, ctypes.byref(io))

    def error(self):
        return self.lib.tt_interpreter_error(self.state).contents.message

    def move_to_arena(self, positions):
        """Gives constant tensors a copy at the end of the arena, as the
        trainer's RAM copies of trainable weights are."""
        arena = self.interp._arena
        offset = (self.interp.arena_used_bytes() + 15) // 16 * 16
        for position in positions:
            record = self.record(position)
            data = self.tensor(position).tobytes()
            arena[offset : offset + len(data)] = np.frombuffer(data, np.uint8)
            record.location, record.data_offset = 2, offset
            assert (
                self.lib.tt_interpreter_tensor_data(self.state, self.index[position])
                == arena.ctypes.data + offset
            )
            offset = (offset + len(data) + 15) // 16 * 16
        assert offset <= arena.size


def make_update(kind, channels, weights_per_channel, apply=False, learning_rate=1.0):
    """A plain SGD update. With apply false the optimizer only adds each
    channel's quantized-domain gradient, s_W * dL/dW (s_W s_x * dL/db for
    the bias), to the accumulators, which the test reads back."""
    channels = c_array(channels, np.int32)
    count = len(channels)
    arrays = dict(
        channels=channels,
        weight_residual=np.zeros(count * weights_per_channel, np.float32),
        weight_accumulator=np.zeros(count * weights_per_channel, np.float32),
        bias_residual=np.zeros(count, np.float32),
        bias_accumulator=np.zeros(count, np.float32),
        error=ctypes.create_string_buffer(ctypes.sizeof(_native.ErrorRecord)),
    )
    update = LayerUpdate(
        kind=kind,
        num_channels=count,
        channels=ptr(channels),
        weights_per_channel=weights_per_channel,
        learning_rate=learning_rate,
        momentum=0.0,
        qas=False,
        apply=apply,
        batch_scale=1.0,
    )
    for name in ("weight_residual", "weight_accumulator", "bias_residual", "bias_accumulator"):
        setattr(update, name, ptr(arrays[name]))
    update.error = ctypes.addressof(arrays["error"])
    update.keep = arrays  # keeps the buffers alive
    return update


RELU = 1


def conv_like_model(lib, rng, op_name, per_channel, with_bias=True):
    """(OneOp, filter, channel scales, weights per channel, layout) for a
    small FULLY_CONNECTED, CONV_2D or DEPTHWISE_CONV_2D with a fused RELU."""
    x_scale, y_scale = np.float32(0.05), np.float32(0.2)
    if op_name == "FULLY_CONNECTED":
        x_shape, w_shape, y_shape, channels = (3, 6), (5, 6), (3, 5), 5
        dim = 0
        options = som.options("FullyConnected", fusedActivationFunction=RELU)
    elif op_name == "CONV_2D":
        x_shape, w_shape, y_shape, channels = ((1, 5, 5, 4), (6, 3, 3, 2), (1, 3, 3, 6), 6)
        dim = 0
        options = som.options(
            "Conv2D", padding=0, strideH=2, strideW=2, fusedActivationFunction=RELU
        )
    else:
        x_shape, w_shape, y_shape, channels = ((1, 5, 4, 3), (1, 3, 2, 6), (1, 5, 4, 6), 6)
        dim = 3
        options = som.options(
            "DepthwiseConv2D",
            padding=0,
            strideH=1,
            strideW=1,
            depthMultiplier=2,
            fusedActivationFunction=RELU,
        )
    w_scale = rand_scale(rng, channels) if per_channel else rand_scale(rng)
    q_w = rand_int8(rng, w_shape, -127, 127)
    bias_scale = np.float32(x_scale) * np.atleast_1d(w_scale)
    inputs = [
        T(x_shape, scale=x_scale, zero_point=4),
        T(w_shape, scale=w_scale, quantized_dimension=dim, data=q_w),
    ]
    if with_bias:
        inputs.append(
            T(
                (channels,),
                INT32,
                scale=np.broadcast_to(bias_scale, (channels,)),
                data=rng.integers(-500, 500, channels).astype(np.int32),
            )
        )
    outputs = [T(y_shape, scale=y_scale, zero_point=-10)]
    one = OneOp(lib, rng, op_name, inputs, outputs, options, extra_arena=4096)
    return one, q_w, np.broadcast_to(np.float32(w_scale), (channels,)), dim
