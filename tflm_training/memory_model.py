"""The arena cost model: exactly how many bytes the C runtime's arena needs
for a model (inference) or for a model and a training plan, predicted in
pure Python (no C calls, no TensorFlow) in about a millisecond.

    inference_arena(model_bytes).total        == Interpreter.arena_used_bytes()
    training_memory(model_bytes, plan).as_dict() == Trainer.memory()

It mirrors the C code step by step: the persistent allocations in the order
the runtime makes them (runtime/memory/tt_arena.c rounds each start up to 8
bytes), the size of every arena record (all fields are 4 bytes, so host
and Cortex-M4 agree), each forward kernel's op data and each backward
kernel's needs (KERNELS, one row per operator), and the greedy planner on
the training timeline (buffer_planner.py mirrors tt_buffer_planner.c).
Supporting a new kernel means adding a row to KERNELS (and its op-data
struct to the list below; tests/test_memory_model.py checks every struct
size against the C compilers).

The prediction is for models and plans the runtime accepts. Plan problems
that the runtime reports while laying out memory (operators without a
backward kernel on the gradient path, a trained operator that does not
feed the logits, ...) raise BadPlanError / UnsupportedModelError as the
runtime would, so a search can treat them as infeasible. The byte counts
are measured from the runtime's 16-byte aligned arena start: a caller whose
buffer is not 16-byte aligned needs up to 15 bytes more.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import zlib

import numpy as np

from tflm_training import buffer_planner, tflite_graph
from tflm_training.errors import BadPlanError, UnsupportedModelError
from tflm_training.plan import UPDATE_KINDS, TrainingPlan, channel_state_bytes, lowrank_state_bytes

PERSISTENT_ALIGNMENT = 8  # TT_PERSISTENT_ALIGNMENT (tt_arena.h)
ARENA_ALIGNMENT = 16  # TT_ARENA_ALIGNMENT (tt_records.h)
MAX_RANK = 6  # TT_MAX_RANK (tt_records.h)
_PAD_MAX_RANK = 5  # PAD_MAX_RANK (kernels/pad.c)
_STATE_COUNT = 6  # TT_STATE_COUNT (tt_trainer_internal.h)
_MAX_BACKWARD_INPUTS = 8  # TT_BACKWARD_MAX_INPUTS (tt_backward.h)
_UPDATE_BIAS = UPDATE_KINDS["bias"]
_UPDATE_WEIGHTS = UPDATE_KINDS["weights"]
_WEIGHT_UPDATES = ("weights", "sampled", "lowrank")  # copy and train the weights

# TensorType -> bytes per element (tt_type_size, model/tt_types.c).
_TYPE_SIZES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 9: 1}
_INT8, _INT32 = 9, 2


# -- the C structs the arena holds ---------------------------------------------


@dataclasses.dataclass(frozen=True)
class CStruct:
    """A C struct stored in the arena: its name, the runtime file (under
    tflm_training/runtime/) defining it, and its size. Every field is a
    4-byte int32 / uint32 / float (no pointers, no padding), so the size
    is the same on the host and on the Cortex-M4."""

    name: str
    source: str
    size: int


def _words(count):
    return 4 * count


# Records of the interpreter, the planner and the trainer.
TENSOR_RECORD = CStruct("tt_tensor", "tt_records.h", _words(18 + MAX_RANK))
NODE_RECORD = CStruct("tt_node", "tt_records.h", _words(9 + 4))  # + tt_fb_table
PLAN_BUFFER = CStruct("tt_plan_buffer", "memory/tt_buffer_planner.h", _words(4))
TRAIN_TENSOR = CStruct("tt_train_tensor", "training/tt_trainer_internal.h", _words(4))
TRAIN_NODE = CStruct("tt_train_node", "training/tt_trainer_internal.h", _words(8))
# + 4 words of channel sampling, + 3 of low-rank layers.
TRAIN_LAYER = CStruct(
    "tt_train_layer", "training/tt_trainer_internal.h", _words(7 + _STATE_COUNT + 4 + 3)
)

# Forward kernels' op data (what each prepare() passes to
# tt_node_alloc_op_data).
_BROADCAST_WORDS = 2 + 3 * MAX_RANK  # tt_broadcast_params
_STRIDED_COPY_WORDS = 3 + 2 * MAX_RANK  # tt_strided_copy_params
_CONV_QUANT_WORDS = 4  # tt_conv_quant
_CONV_WINDOW_WORDS = 6  # tt_conv_window
POOL_PARAMS = CStruct("tt_pool_params", "kernels/common/tt_pool_params.h", _words(14))
CONV_OP_DATA = CStruct(
    "tt_conv_op_data",
    "kernels/common/tt_conv_op_data.h",
    _words(11 + _CONV_WINDOW_WORDS + _CONV_QUANT_WORDS + 1),
)
DEPTHWISE_OP_DATA = CStruct(
    "tt_depthwise_op_data",
    "kernels/common/tt_conv_op_data.h",
    _words(10 + _CONV_WINDOW_WORDS + _CONV_QUANT_WORDS + 1),
)
FC_OP_DATA = CStruct(
    "tt_fc_op_data", "kernels/common/tt_conv_op_data.h", _words(4 + _CONV_QUANT_WORDS + 1)
)
ADD_SUB_DATA = CStruct(
    "add_sub_data", "kernels/common/tt_elementwise.c", _words(12 + _BROADCAST_WORDS)
)
CONCATENATION_DATA = CStruct("concatenation_data", "kernels/concatenation.c", _words(3))
DEQUANTIZE_DATA = CStruct("dequantize_data", "kernels/dequantize.c", _words(3))
EXPAND_DIMS_DATA = CStruct(
    "expand_dims_data", "kernels/expand_dims.c", _words(1 + _STRIDED_COPY_WORDS)
)
HARD_SWISH_DATA = CStruct("hard_swish_data", "kernels/hard_swish.c", _words(7))
LEAKY_RELU_DATA = CStruct("leaky_relu_data", "kernels/leaky_relu.c", _words(8))
LOGISTIC_TANH_DATA = CStruct("logistic_tanh_data", "kernels/logistic_tanh.c", _words(5))
MAXIMUM_MINIMUM_DATA = CStruct(
    "maximum_minimum_data", "kernels/maximum_minimum.c", _words(_BROADCAST_WORDS)
)
MEAN_DATA = CStruct("mean_data", "kernels/mean.c", _words(4 * MAX_RANK + 9))
MUL_DATA = CStruct("mul_data", "kernels/mul.c", _words(7 + _BROADCAST_WORDS))
PAD_DATA = CStruct("pad_data", "kernels/pad.c", _words(4 * _PAD_MAX_RANK + 3))
QUANTIZE_DATA = CStruct("quantize_data", "kernels/quantize.c", _words(7))
RELU_DATA = CStruct("relu_data", "kernels/relu.c", _words(7))
RESHAPE_DATA = CStruct("reshape_data", "kernels/reshape.c", _words(1))
RESIZE_DATA = CStruct("resize_data", "kernels/resize_nearest_neighbor.c", _words(9))
SOFTMAX_DATA = CStruct("softmax_data", "kernels/softmax.c", _words(6))
SPLIT_DATA = CStruct("split_data", "kernels/split.c", _words(4))
STRIDED_SLICE_DATA = CStruct(
    "strided_slice_data", "kernels/strided_slice.c", _words(1 + _STRIDED_COPY_WORDS)
)
TRANSPOSE_DATA = CStruct("transpose_data", "kernels/transpose.c", _words(1 + _STRIDED_COPY_WORDS))


def _align(value, alignment):
    """tt_align_up (tt_arena.h)."""
    return (value + alignment - 1) // alignment * alignment


# -- the model as the runtime sees it ------------------------------------------


@dataclasses.dataclass
class _Tensor:
    """The fields of a tt_tensor record that memory depends on, filled as
    tt_model_reader.c's read_tensor() fills them."""

    type: int
    dims: tuple
    num_elements: int
    num_bytes: int
    constant: bool  # location TT_DATA_MODEL
    scales: tuple
    scale: float  # scales[0], 0 when unquantized
    zero_point: int  # zero_points[0], 0 when absent
    first_op: int = -1  # lifetime (tt_plan_lifetimes, tt_activation_planner.c)
    last_op: int = -1

    @classmethod
    def read(cls, tensor):
        elements = math.prod(tensor.shape)
        num_bytes = elements * _TYPE_SIZES.get(tensor.type, 0)
        # read_buffer(): buffer 0 is the empty sentinel; an empty buffer
        # makes a constant only of a zero-byte tensor.
        constant = tensor.buffer != 0 and (tensor.data_size > 0 or num_bytes == 0)
        return cls(
            tensor.type,
            tuple(tensor.shape),
            elements,
            num_bytes,
            constant,
            tuple(tensor.scales),
            tensor.scales[0] if tensor.scales else 0.0,
            int(tensor.zero_points[0]) if tensor.zero_points else 0,
        )

    @property
    def in_arena(self):
        """location TT_DATA_ARENA after tt_plan_lifetimes."""
        return not self.constant and self.first_op >= 0

    def channel_scale(self, channel):
        """tt_tensor_channel_scale (tt_kernel_helpers.c)."""
        if channel <= 0 or channel >= len(self.scales):
            return self.scale
        return self.scales[channel]


@dataclasses.dataclass
class _Operator:
    index: int
    code: int
    inputs: tuple  # -1 for an absent optional input
    outputs: tuple
    activation: int = 0  # fused activation, read only where a kernel needs it
    # (stride_h, stride_w, dilation_h, dilation_w), read only for
    # DEPTHWISE_CONV_2D (its in-place backward depends on them)
    window: tuple = ()

    def input(self, i):
        """tt_node_input_index: -1 when absent or past the list."""
        return self.inputs[i] if i < len(self.inputs) else -1


@dataclasses.dataclass(frozen=True)
class _Update:
    """What tt_train_layer_update tells a trained operator's backward
    prepare (tt_layer_update, tt_optimizer.h)."""

    kind: int
    channels: tuple
    weights_per_channel: int


@dataclasses.dataclass(frozen=True)
class BackwardNeeds:
    """tt_backward_needs (tt_backward.h), as far as memory goes."""

    saved_inputs: int = 0  # bit i: forward input i is kept until backward
    scratch_bytes: int = 0
    has_clamp: bool = False  # a 1-bit mask of the output is kept
    in_place: bool = False  # input 0's gradient can take the output gradient's place
    in_place_scratch_bytes: int = 0
    # and this many stored gradients (sizeof(tt_grad): the plan's gradient_bits)
    in_place_scratch_grads: int = 0


# -- backward kernels: needs ----------------------------------------------------


def _no_needs(model, op, update):
    """Backward kernels that move values only: nothing saved, no clamp
    (concatenation, pad)."""
    return BackwardNeeds()


def _copy_needs(model, op, update):
    """kernels/reshape_backward.c (reshape / squeeze / expand_dims): nothing
    saved, no clamp, in place."""
    return BackwardNeeds(in_place=True)


def _relu_needs(model, op, update):
    """kernels/relu_backward.c: a clamp, in place."""
    return BackwardNeeds(has_clamp=True, in_place=True)


def _add_sub_needs(model, op, update):
    """kernels/add_backward.c: the fused activation's clamp; in place when
    input 0 is as large as the output (not broadcast)."""
    return BackwardNeeds(
        has_clamp=True,
        in_place=(
            model.tensors[op.inputs[0]].num_elements == model.tensors[op.outputs[0]].num_elements
        ),
    )


def _requantize_clamp(input_tensor, output_tensor):
    """tt_backward_clamp_requantize (tt_backward_helpers.c): a clamp unless
    input and output share scale and zero point."""
    same = (
        input_tensor.scale == output_tensor.scale
        and input_tensor.zero_point == output_tensor.zero_point
    )
    return not same


def _mean_needs(model, op, update):
    """kernels/mean_backward.c."""
    return BackwardNeeds(
        has_clamp=_requantize_clamp(model.tensors[op.inputs[0]], model.tensors[op.outputs[0]])
    )


def _quantize_needs(model, op, update):
    """kernels/quantize_backward.c: int8 inputs requantize, others always
    clamp at -128 / 127."""
    source, output = model.tensors[op.inputs[0]], model.tensors[op.outputs[0]]
    if source.type == _INT8:
        return BackwardNeeds(has_clamp=_requantize_clamp(source, output), in_place=True)
    return BackwardNeeds(has_clamp=True, in_place=True)


def _pool_needs(saves_input):
    """kernels/average_pool_2d_backward.c (nothing saved) and
    max_pool_2d_backward.c (input 0 saved): tt_backward_clamp_activation on
    the fused activation's range, a clamp only where it narrows int8."""

    def needs(model, op, update):
        output = model.tensors[op.outputs[0]]
        low, high = _activation_range(op.activation, output.scale, output.zero_point)
        return BackwardNeeds(
            saved_inputs=1 if saves_input else 0, has_clamp=low > -128 or high < 127
        )

    return needs


def _conv_like_needs(channel_count, weights_per_channel, in_place=None):
    """conv_2d / depthwise_conv_2d / fully_connected backward prepare: a
    clamp to the fused activation always; for a trained operator
    tt_backward_prepare_update (tt_backward_helpers.c), which for a weights
    update keeps input 0 and asks scratch for one channel's float weight
    gradient. `in_place(model, op)`: the in-place scratch of a layer that
    can write its input gradient in place unless its weights train, as
    (float bytes, stored gradients), or None."""

    def needs(model, op, update):
        frozen_or_bias = update is None or update.kind == _UPDATE_BIAS
        scratch = in_place(model, op) if in_place and frozen_or_bias else None
        clamp = BackwardNeeds(
            has_clamp=True,
            in_place=scratch is not None,
            in_place_scratch_bytes=scratch[0] if scratch else 0,
            in_place_scratch_grads=scratch[1] if scratch else 0,
        )
        if update is None:
            return clamp
        weights = model.tensors[op.input(1)]
        per_channel = weights_per_channel(weights)
        _check_update(model, op, update, weights, channel_count(model, op), per_channel)
        if update.kind == _UPDATE_BIAS:
            return clamp
        return BackwardNeeds(saved_inputs=1, scratch_bytes=4 * per_channel, has_clamp=True)

    return needs


def _depthwise_in_place(model, op):
    """depthwise_backward_prepare (kernels/depthwise_conv_2d_backward.c):
    multiplier 1, stride 1 and the image size kept; scratch for
    tt_depthwise_in_place_rows rows of out_w * C gradients."""
    weights = model.tensors[op.input(1)]
    source, output = model.tensors[op.input(0)], model.tensors[op.outputs[0]]
    stride_h, stride_w, dilation_h, _ = op.window
    if (
        source.dims[3] != output.dims[3]
        or (stride_h, stride_w) != (1, 1)
        or source.dims[1:3] != output.dims[1:3]
    ):
        return None
    span = (weights.dims[1] - 1) * dilation_h
    rows = span - span // 2 + 1  # tt_window_padding: the leading half
    return 0, rows * output.dims[2] * output.dims[3]


def _pointwise_in_place(model, op):
    """conv_backward_prepare (kernels/conv_2d_backward.c): a 1x1 filter
    keeping the image size; scratch for one pixel's C_out gradients."""
    weights = model.tensors[op.input(1)]
    source, output = model.tensors[op.input(0)], model.tensors[op.outputs[0]]
    if weights.dims[1:3] == (1, 1) and source.dims[1:3] == output.dims[1:3]:
        return 4 * output.dims[3], 0
    return None


def _check_update(model, op, update, weights, num_channels, weights_per_channel):
    """The checks of tt_backward_prepare_update that can fail a plan."""
    if update.channels[-1] >= num_channels:
        raise _plan_error(
            op, f"{len(update.channels)} channels selected; the layer has {num_channels}"
        )
    for channel in update.channels:
        scale = weights.channel_scale(channel)
        if not 0.0 < scale <= 3.40282347e38:
            raise UnsupportedModelError(
                f"operator {op.index} ({_name(op.code)}): weight scale of selected channel "
                f"{channel} is not a positive finite number"
            )
    if update.kind == _UPDATE_BIAS and op.input(2) < 0:
        raise _plan_error(op, "the plan trains biases but the operator has none")
    if update.kind == _UPDATE_WEIGHTS and update.weights_per_channel != weights_per_channel:
        raise _plan_error(
            op,
            f"the update has {update.weights_per_channel} weights per "
            f"channel; the layer has {weights_per_channel}",
        )
    if update.kind == _UPDATE_WEIGHTS and 4 * weights_per_channel > 0xFFFFFFFF // 2:
        raise UnsupportedModelError(
            f"operator {op.index} ({_name(op.code)}): "
            f"{weights_per_channel} weights per output channel is "
            "too many"
        )


def _round_float(x):
    """tt_round_float (tt_quant.c): half away from zero, in float32."""
    x = np.float32(x)
    if not -8388608.0 < x < 8388608.0:
        return x
    whole = np.float32(int(x))
    rest = np.float32(x - whole)
    if rest >= 0.5:
        return np.float32(whole + np.float32(1))
    if rest <= -0.5:
        return np.float32(whole - np.float32(1))
    return whole


def _quantize_value(scale, zero_point, value):
    """quantize_value (tt_quant.c); None where the runtime fails."""
    with np.errstate(all="ignore"):
        rounded = _round_float(np.float32(value) / np.float32(scale))
    if not -2147483648.0 <= rounded <= 2147483520.0:
        return None
    q = zero_point + int(rounded)
    return q if -(2**31) <= q < 2**31 else None


def _activation_range(activation, scale, zero_point):
    """tt_activation_range_quantized (tt_quant.c) on int8 [-128, 127]."""
    low, high = -128, 127
    if activation == 0:  # NONE
        return low, high
    bounds = {1: (0.0, None), 2: (-1.0, 1.0), 3: (0.0, 6.0)}.get(activation)
    if bounds is None:
        raise UnsupportedModelError(f"fused activation {activation} is not supported")
    values = [_quantize_value(scale, zero_point, v) if v is not None else high for v in bounds]
    if None in values:
        raise UnsupportedModelError(f"fused activation {activation} has no int8 range")
    return max(values[0], low), min(values[1], high)


# -- the kernel table -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Kernel:
    """One builtin operator the runtime registers (tt_kernel_registry.c).

    op_data: the struct its prepare() allocates (tt_node_alloc_op_data).
    channel_axis: for CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED, the
    filter axis of the output channels: their op data is followed by an
    int32 multiplier per filter scale, then an int8 shift per filter scale.
    backward(model, operator, update) -> BackwardNeeds, or None when it has
    no backward kernel (tt_backward_registry.c); update is None for a
    frozen operator. has_parameters: a plan may train it.
    """

    name: str
    op_data: CStruct
    channel_axis: int = None
    backward: object = None
    has_parameters: bool = False

    def op_data_bytes(self, model, op):
        """The size prepare() passes to tt_node_alloc_op_data; for the
        convolution-like kernels tt_conv_alloc_op_data (tt_conv_params.c)
        with tt_conv_multiplier_count: an int32 multiplier and an int8 shift
        for a per-tensor filter, else one of each per output channel."""
        if self.channel_axis is None:
            return self.op_data.size
        weights = model.tensors[op.input(1)]
        count = 1 if len(weights.scales) == 1 else weights.dims[self.channel_axis]
        return self.op_data.size + 5 * count


def _conv_channels(model, op):
    """Output channels: filter dimension 0 (CONV_2D, FULLY_CONNECTED)."""
    return model.tensors[op.input(1)].dims[0]


def _depthwise_channels(model, op):
    """Output channels of DEPTHWISE_CONV_2D: the output's depth."""
    return model.tensors[op.outputs[0]].dims[3]


def _conv_weights_per_channel(weights):
    """filter_h * filter_w * filter_depth (kernels/conv_2d_backward.c)."""
    return weights.dims[1] * weights.dims[2] * weights.dims[3]


def _depthwise_weights_per_channel(weights):
    """filter_h * filter_w (kernels/depthwise_conv_2d_backward.c)."""
    return weights.dims[1] * weights.dims[2]


def _fc_weights_per_channel(weights):
    """accum_depth (kernels/fully_connected_backward.c)."""
    return weights.dims[1]


KERNELS = {
    0: Kernel("ADD", ADD_SUB_DATA, backward=_add_sub_needs),
    1: Kernel("AVERAGE_POOL_2D", POOL_PARAMS, backward=_pool_needs(saves_input=False)),
    2: Kernel("CONCATENATION", CONCATENATION_DATA, backward=_no_needs),
    3: Kernel(
        "CONV_2D",
        CONV_OP_DATA,
        channel_axis=0,
        has_parameters=True,
        backward=_conv_like_needs(_conv_channels, _conv_weights_per_channel, _pointwise_in_place),
    ),
    4: Kernel(
        "DEPTHWISE_CONV_2D",
        DEPTHWISE_OP_DATA,
        channel_axis=3,
        has_parameters=True,
        backward=_conv_like_needs(
            _depthwise_channels, _depthwise_weights_per_channel, _depthwise_in_place
        ),
    ),
    6: Kernel("DEQUANTIZE", DEQUANTIZE_DATA),
    9: Kernel(
        "FULLY_CONNECTED",
        FC_OP_DATA,
        channel_axis=0,
        has_parameters=True,
        backward=_conv_like_needs(_conv_channels, _fc_weights_per_channel),
    ),
    14: Kernel("LOGISTIC", LOGISTIC_TANH_DATA),
    17: Kernel("MAX_POOL_2D", POOL_PARAMS, backward=_pool_needs(saves_input=True)),
    18: Kernel("MUL", MUL_DATA),
    19: Kernel("RELU", RELU_DATA, backward=_relu_needs),
    21: Kernel("RELU6", RELU_DATA, backward=_relu_needs),
    22: Kernel("RESHAPE", RESHAPE_DATA, backward=_copy_needs),
    25: Kernel("SOFTMAX", SOFTMAX_DATA),
    28: Kernel("TANH", LOGISTIC_TANH_DATA),
    34: Kernel("PAD", PAD_DATA, backward=_no_needs),
    39: Kernel("TRANSPOSE", TRANSPOSE_DATA),
    40: Kernel("MEAN", MEAN_DATA, backward=_mean_needs),
    41: Kernel("SUB", ADD_SUB_DATA, backward=_add_sub_needs),
    43: Kernel("SQUEEZE", RESHAPE_DATA, backward=_copy_needs),
    45: Kernel("STRIDED_SLICE", STRIDED_SLICE_DATA),
    49: Kernel("SPLIT", SPLIT_DATA),
    55: Kernel("MAXIMUM", MAXIMUM_MINIMUM_DATA),
    57: Kernel("MINIMUM", MAXIMUM_MINIMUM_DATA),
    60: Kernel("PADV2", PAD_DATA, backward=_no_needs),
    70: Kernel("EXPAND_DIMS", EXPAND_DIMS_DATA, backward=_copy_needs),
    97: Kernel("RESIZE_NEAREST_NEIGHBOR", RESIZE_DATA),
    98: Kernel("LEAKY_RELU", LEAKY_RELU_DATA),
    102: Kernel("SPLIT_V", SPLIT_DATA),
    114: Kernel("QUANTIZE", QUANTIZE_DATA, backward=_quantize_needs),
    117: Kernel("HARD_SWISH", HARD_SWISH_DATA),
}
# Every struct the model assumes a size for (tests check them against C).
C_STRUCTS = tuple(
    dict.fromkeys(
        (TENSOR_RECORD, NODE_RECORD, PLAN_BUFFER, TRAIN_TENSOR, TRAIN_NODE, TRAIN_LAYER)
        + tuple(kernel.op_data for kernel in KERNELS.values())
    )
)
# Operators whose option table memory depends on: field of the fused
# activation (Pool2DOptions.fused_activation_function, TT_POOL_ACTIVATION).
_ACTIVATION_OPTION = {1: 5, 17: 5}
# DepthwiseConv2DOptions fields stride_h, stride_w, dilation_h, dilation_w
# and their defaults (kernels/depthwise_conv_2d.c).
_DEPTHWISE_WINDOW = ((2, 0), (1, 0), (6, 1), (5, 1))


def _name(code):
    kernel = KERNELS.get(code)
    return kernel.name if kernel else tflite_graph.operator_name(code)


def _plan_error(op, message):
    return BadPlanError(f"training plan: operator {op.index} ({_name(op.code)}) {message}")


# -- results ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Allocation:
    """One persistent allocation (tt_arena_alloc_persistent): what it holds
    (for the operator or tensor `index`, -1 when neither), its arena
    offset and size; `padding` bytes before it round its start up to 8."""

    what: str
    index: int
    offset: int
    size: int
    padding: int


@dataclasses.dataclass(frozen=True)
class Placement:
    """One buffer of a planned region: `kind` is "activation" or
    "gradient" (index: tensor), "mask" or "scratch" (index: operator);
    live from step `first` to `last`; `offset` is from the arena start.
    A gradient buffer also holds, in place, the gradients of the tensors
    in `shared_by`."""

    kind: str
    index: int
    size: int
    first: int
    last: int
    offset: int
    shared_by: tuple = ()


@dataclasses.dataclass(frozen=True)
class InferenceArena:
    """What tt_interpreter_init lays out. total == tt_interpreter_arena_used.

    tables: tensor and operator tables and index lists; kernel_data: every
    operator's op data; alignment: up to the 16-byte aligned activation
    region; activations: the region (tt_interpreter.activations_size).
    Each part includes the padding before its allocations, so the four
    add up to total. op_data lists (operator, name, offset, bytes)."""

    tables: int
    kernel_data: int
    alignment: int
    activations: int
    total: int
    persistent_used: int  # tt_interpreter.persistent_used
    activations_offset: int
    op_data: tuple
    allocations: tuple
    placements: tuple

    def as_dict(self):
        return {
            name: getattr(self, name)
            for name in ("tables", "kernel_data", "alignment", "activations", "total")
        }


@dataclasses.dataclass(frozen=True)
class TrainingMemory:
    """What tt_trainer_init lays out: the seven fields of tt_training_memory
    (tt_trainer_memory, tt_trainer.c) plus where everything went."""

    interpreter_tables: int
    trainer_tables: int
    weight_copies: int
    optimizer_state: int
    sampled_state: int  # the state pool of sampled layers (sample_budget)
    planned_region: int
    total: int
    persistent_used: int  # tt_interpreter.persistent_used
    region_offset: int
    region_size: int
    allocations: tuple
    placements: tuple
    # The planned region with every gradient in its own buffer, which
    # tt_train_plan_region compares with the shared layout (region_size
    # when that one is not smaller).
    separate_region: int

    FIELDS = (
        "interpreter_tables",
        "trainer_tables",
        "weight_copies",
        "optimizer_state",
        "sampled_state",
        "planned_region",
        "total",
    )

    def as_dict(self):
        """The same dict as Trainer.memory()."""
        return {name: getattr(self, name) for name in self.FIELDS}


# -- the persistent allocator ----------------------------------------------------


class _Persistent:
    """tt_arena_alloc_persistent (tt_arena.c): each allocation starts at
    the next multiple of 8 after the previous one."""

    def __init__(self, used=0, allocations=()):
        self.used = used
        self.allocations = list(allocations)

    def alloc(self, size, what, index=-1):
        start = _align(self.used, PERSISTENT_ALIGNMENT)
        self.allocations.append(Allocation(what, index, start, size, start - self.used))
        self.used = start + size
        return start

    def copy(self):
        return _Persistent(self.used, self.allocations)


def region_lists(count):
    """Bytes of the planner's lists for `count` buffers: the records and
    tt_plan_order_bytes."""
    return count * (PLAN_BUFFER.size + 4)


def _plan_region(persistent_used, buffers, sequential=False):
    """tt_plan_activations (tt_activation_planner.c) / tt_train_plan_region
    (tt_trainer_region.c): the region starts 16-byte aligned and is at
    least as large as the planner's own lists, which live there while it
    runs. Returns (region offset, region size)."""
    start = _align(persistent_used, ARENA_ALIGNMENT)
    planned = buffer_planner.plan_buffers(buffers, sequential)
    return start, max(planned, region_lists(len(buffers)))


# -- one model ---------------------------------------------------------------------


class MemoryModel:
    """The cost model of one .tflite model: reads it once, then predicts
    the inference arena and the training memory of any number of plans."""

    def __init__(self, model_bytes):
        model_bytes = bytes(model_bytes)
        self.crc32 = zlib.crc32(model_bytes)
        graph = tflite_graph.read_graph(model_bytes)
        self.tensors = [_Tensor.read(t) for t in graph.tensors]
        self.operators = [
            _Operator(op.index, op.builtin_code, tuple(op.inputs), tuple(op.outputs))
            for op in graph.operators
        ]
        self.inputs, self.outputs = tuple(graph.inputs), tuple(graph.outputs)
        for op in self.operators:
            if op.code not in KERNELS:
                raise UnsupportedModelError(
                    f"operator {op.index} is {_name(op.code)} (builtin code {op.code}), "
                    "which tflm_training does not support yet"
                )
            if op.code in _ACTIVATION_OPTION:
                op.activation = tflite_graph.builtin_option(
                    model_bytes, op.index, _ACTIVATION_OPTION[op.code], "<b", 0
                )
            if op.code == tflite_graph.DEPTHWISE_CONV_2D:
                op.window = tuple(
                    tflite_graph.builtin_option(model_bytes, op.index, field, "<i", default)
                    for field, default in _DEPTHWISE_WINDOW
                )
        self._set_lifetimes()
        self._loaded, self.op_data = self._load()
        self._frozen_needs = {}

    # -- tt_interpreter_load ---------------------------------------------------------

    def _set_lifetimes(self):
        """tt_plan_lifetimes (tt_activation_planner.c): from the writing operator (0
        for graph inputs) to the last reader (the end for graph outputs)."""
        for index in self.inputs:
            self.tensors[index].first_op = self.tensors[index].last_op = 0
        for op in self.operators:
            for index in op.inputs:
                if index >= 0 and not self.tensors[index].constant:
                    self.tensors[index].last_op = op.index
            for index in op.outputs:
                self.tensors[index].first_op = self.tensors[index].last_op = op.index
        end = max(len(self.operators) - 1, 0)
        for index in self.outputs:
            if not self.tensors[index].constant:
                self.tensors[index].last_op = end

    def _load(self):
        """tt_model_read (tt_model_reader.c), then every kernel's prepare
        in operator order (prepare_nodes, tt_interpreter.c)."""
        arena = _Persistent()
        arena.alloc(len(self.tensors) * TENSOR_RECORD.size, "tensor table")
        arena.alloc(len(self.operators) * NODE_RECORD.size, "operator table")
        for op in self.operators:
            arena.alloc(4 * len(op.inputs), "operator inputs", op.index)
            arena.alloc(4 * len(op.outputs), "operator outputs", op.index)
        arena.alloc(4 * len(self.inputs), "graph inputs")
        arena.alloc(4 * len(self.outputs), "graph outputs")
        self._tables_end = arena.used
        op_data = []
        for op in self.operators:
            size = KERNELS[op.code].op_data_bytes(self, op)
            offset = arena.alloc(size, "operator data", op.index)
            op_data.append((op.index, _name(op.code), offset, size))
        return arena, tuple(op_data)

    def _activation_buffers(self, keep_until=None):
        """The arena tensors in index order, as both planners list them."""
        buffers = []
        for index, t in enumerate(self.tensors):
            if t.in_arena:
                last = t.last_op if keep_until is None else keep_until(index)
                buffers.append((index, buffer_planner.Buffer(t.num_bytes, t.first_op, last)))
        return buffers

    # -- inference --------------------------------------------------------------------

    def inference_arena(self, preserve_all_tensors=False):
        """tt_interpreter_init (tt_interpreter.c): the loaded tables and op
        data, then tt_plan_activations (tt_activation_planner.c)."""
        arena = self._loaded
        activations = self._activation_buffers()
        start, region = _plan_region(
            arena.used, [b for _, b in activations], sequential=preserve_all_tensors
        )
        placements = tuple(
            Placement("activation", index, b.size, b.first, b.last, start + b.offset)
            for index, b in activations
        )
        return InferenceArena(
            tables=self._tables_end,
            kernel_data=arena.used - self._tables_end,
            alignment=start - arena.used,
            activations=region,
            total=start + region,
            persistent_used=arena.used,
            activations_offset=start,
            op_data=self.op_data,
            allocations=tuple(arena.allocations),
            placements=placements,
        )

    # -- training -----------------------------------------------------------------------

    def training_memory(self, plan):
        """tt_trainer_init (tt_trainer.c): the interpreter's tables, the
        trainer's tables, parameter copies, optimizer state of static
        layers, the state pool of sampled layers, then the planned training
        region. `plan`: a TrainingPlan or its bytes."""
        if not isinstance(plan, TrainingPlan):
            plan = TrainingPlan.from_bytes(plan)
        plan.validate()
        self._check_plan(plan)
        arena = self._loaded.copy()
        interpreter_tables = arena.used
        graph = _BackwardGraph(self, plan)
        tables = self._alloc_trainer_tables(arena, plan)
        copies = self._alloc_parameter_copies(arena, plan)
        state = self._alloc_optimizer_state(arena, plan)
        pool = self._alloc_sample_pool(arena, plan)
        buffers = graph.buffers(in_place=False)
        start, region = _plan_region(arena.used, [b for _, _, b in buffers])
        separate_region, sharing = region, False
        if graph.in_place:
            # tt_train_plan_region: gradients share in place only where that
            # makes the region smaller; it still held the separate lists.
            shared = graph.buffers(in_place=True)
            _, shared_region = _plan_region(arena.used, [b for _, _, b in shared])
            if shared_region < region:
                region = max(shared_region, region_lists(len(buffers)))
                buffers, sharing = shared, True
        total = start + region
        placements = tuple(
            Placement(
                kind,
                index,
                b.size,
                b.first,
                b.last,
                start + b.offset,
                tuple(graph.sharing_chain(index)) if sharing and kind == "gradient" else (),
            )
            for kind, index, b in buffers
        )
        return TrainingMemory(
            interpreter_tables=interpreter_tables,
            trainer_tables=tables,
            weight_copies=copies,
            optimizer_state=state,
            sampled_state=pool,
            planned_region=total - interpreter_tables - tables - copies - state - pool,
            total=total,
            persistent_used=arena.used,
            region_offset=start,
            region_size=region,
            separate_region=separate_region,
            allocations=tuple(arena.allocations),
            placements=placements,
        )

    def _alloc_trainer_tables(self, arena, plan):
        """alloc_tables (tt_trainer_setup.c); returns the bytes they add."""
        before = arena.used
        arena.alloc(len(self.tensors) * TRAIN_TENSOR.size, "trainer tensor table")
        arena.alloc(len(self.operators) * TRAIN_NODE.size, "trainer operator table")
        arena.alloc(len(plan.layers) * TRAIN_LAYER.size, "trainer layer table")
        # Each layer's plan list; a sampled layer's selection list after it.
        lists = sum(
            len(layer.channels) * (2 if layer.update == "sampled" else 1) for layer in plan.layers
        )
        arena.alloc(4 * lists, "channel lists")
        candidates = _sampled_candidates(plan)
        if candidates:
            arena.alloc(2 * candidates, "channel sampler shuffle")
        return arena.used - before

    def _alloc_parameter_copies(self, arena, plan):
        """tt_train_copy_parameters (tt_trainer_setup.c): weights of
        weight updates and every trained bias, each tensor once."""
        before = arena.used
        copied = set()
        for layer in plan.layers:
            op = self.operators[layer.operator_index]
            wanted = [op.input(1)] if layer.update in _WEIGHT_UPDATES else []
            wanted += [op.input(2)] if op.input(2) >= 0 else []
            for index in wanted:
                if index not in copied:
                    copied.add(index)
                    arena.alloc(self.tensors[index].num_bytes, "parameter copy", index)
        return arena.used - before

    def _alloc_optimizer_state(self, arena, plan):
        """tt_train_alloc_state (tt_trainer_setup.c): per static trained
        layer a residual (unless the plan drops it), plus a velocity with
        momentum and an accumulator with batches, for the selected channels'
        weights and biases. Sampled layers keep theirs in the pool."""
        before = arena.used
        arrays = ["residual"] * plan.residual + ["velocity"] * (plan.momentum > 0)
        arrays += ["accumulator"] * (plan.batch_size > 1)
        for layer in plan.layers:
            if layer.update == "sampled":
                continue
            op = self.operators[layer.operator_index]
            channels = len(layer.channels)
            counts = []
            if UPDATE_KINDS[layer.update] == _UPDATE_WEIGHTS:
                counts.append(("weight", channels * self._weights_per_channel(op)))
            if layer.update == "lowrank":
                self._alloc_lowrank_state(arena, plan, layer, op)
            if op.input(2) >= 0:
                counts.append(("bias", channels))
            for what, count in counts:
                for array in arrays:
                    arena.alloc(4 * count, f"{what} {array}", op.index)
        return arena.used - before

    def _alloc_lowrank_state(self, arena, plan, layer, op):
        """tt_train_lowrank_alloc (tt_trainer_lowrank.c): a low-rank layer's
        weight residual (C x D floats, unless the plan drops it) and its
        state block (tt_lowrank_state_bytes: 32 + 4 (2 C r + 4 r D))."""
        rows, cols = len(layer.channels), self._weights_per_channel(op)
        if plan.residual:
            arena.alloc(4 * rows * cols, "weight residual", op.index)
        arena.alloc(lowrank_state_bytes(rows, cols, layer.rank), "low-rank state", op.index)

    @staticmethod
    def _alloc_sample_pool(arena, plan):
        """The end of tt_train_alloc_state: one pool of sample_budget bytes
        for the state of the sampled channels (tt_channel_sampler.h)."""
        if not _sampled_candidates(plan):
            return 0
        before = arena.used
        arena.alloc(plan.sample_budget, "sampled state pool")
        return arena.used - before

    def _weights_per_channel(self, op):
        """tt_param_layout_of (tt_training_plan.c)."""
        weights = self.tensors[op.input(1)]
        return weights.num_elements // self._channels(op)

    def _channels(self, op):
        weights = self.tensors[op.input(1)]
        return weights.dims[-1 if op.code == 4 else 0]

    def backward_needs(self, op, update):
        """The backward kernel's needs for operator `op` (cached for frozen
        operators, whose needs do not depend on the plan)."""
        kernel = KERNELS[op.code]
        if update is not None:
            return kernel.backward(self, op, update)
        if op.index not in self._frozen_needs:
            self._frozen_needs[op.index] = kernel.backward(self, op, None)
        return self._frozen_needs[op.index]

    # -- plan checks (tt_plan_parse, tt_training_plan.c) ------------------------------------------

    def _check_plan(self, plan):
        """The checks of tt_plan_parse that the model decides."""
        if plan.model_crc32 != self.crc32:
            raise BadPlanError("training plan: made for another model (CRC-32 differs)")
        if (plan.num_tensors, plan.num_operators) != (len(self.tensors), len(self.operators)):
            raise BadPlanError(
                "training plan: made for a model with other tensor and operator counts"
            )
        if len(self.inputs) != 1:
            raise UnsupportedModelError(
                f"training needs a model with one input; this one has {len(self.inputs)}"
            )
        self._check_logits(plan.logits_tensor, plan.num_classes)
        for i, layer in enumerate(plan.layers):
            self._check_layer(plan, i, layer)

    def _check_logits(self, index, num_classes):
        """check_logits (tt_training_plan.c)."""
        if not 0 <= index < len(self.tensors):
            raise BadPlanError(f"training plan: logits tensor {index} does not exist")
        t = self.tensors[index]
        produced = any(index in op.outputs for op in self.operators)
        if t.type != _INT8 or not t.scales or not 0 < t.scale < math.inf:
            raise BadPlanError(
                f"training plan: logits tensor {index} is not a quantized int8 tensor"
            )
        if not t.in_arena or not produced:
            raise BadPlanError(
                f"training plan: logits tensor {index} is not computed by an operator"
            )
        if num_classes < 2 or t.num_elements != num_classes:
            raise BadPlanError(
                f"training plan: logits tensor {index} has {t.num_elements} "
                f"values but the plan says {num_classes} classes"
            )

    def _check_layer(self, plan, i, layer):
        """check_layer and tt_param_layout_of (tt_training_plan.c)."""
        if not 0 <= layer.operator_index < len(self.operators):
            raise BadPlanError(
                f"training plan: layer {i}: operator {layer.operator_index} does not exist"
            )
        op = self.operators[layer.operator_index]
        if not KERNELS[op.code].has_parameters:
            raise BadPlanError(
                f"training plan: layer {i}: operator {op.index} "
                f"({_name(op.code)}) has no trainable parameters"
            )
        weights = self.tensors[op.input(1)] if op.input(1) >= 0 else None
        if weights is None or not weights.constant or weights.type != _INT8 or not weights.dims:
            raise BadPlanError(
                f"training plan: operator {op.index} has no constant int8 "
                "weights (input 1) to train"
            )
        channels = self._channels(op)
        bias = self.tensors[op.input(2)] if op.input(2) >= 0 else None
        if channels < 1 or (
            bias is not None
            and (not bias.constant or bias.type != _INT32 or bias.num_elements != channels)
        ):
            raise BadPlanError(
                f"training plan: operator {op.index} has no output channels "
                "or a bias that is not a constant int32 one per channel"
            )
        if layer.update == "bias" and bias is None:
            raise BadPlanError(f"training plan: layer {i}: operator {op.index} has no bias")
        if layer.channels[-1] >= channels:
            raise BadPlanError(
                f"training plan: layer {i}: channel {layer.channels[-1]} is "
                f"out of range; operator {op.index} has {channels}"
            )
        if layer.update == "sampled":
            need = max(
                1, channel_state_bytes(plan, self._weights_per_channel(op), bias is not None)
            )
            if layer.channel_cost < need:
                raise BadPlanError(
                    f"training plan: layer {i}: channel_cost "
                    f"{layer.channel_cost} must be at least {need} bytes"
                )
        if layer.update == "lowrank":
            self._check_lowrank(i, layer, op, channels)

    def _check_lowrank(self, i, layer, op, channels):
        """check_lowrank (tt_training_plan.c)."""
        weights = self.tensors[op.input(1)]
        if op.code == tflite_graph.CONV_2D:
            source = self.tensors[op.input(0)] if op.input(0) >= 0 else None
            if len(weights.dims) != 4 or weights.dims[1:3] != (1, 1):
                raise BadPlanError(
                    f"training plan: layer {i}: operator {op.index} (CONV_2D) "
                    "is not pointwise; low-rank updates need a 1x1 filter"
                )
            if source is None or not source.dims or source.dims[-1] != weights.dims[3]:
                raise BadPlanError(
                    f"training plan: layer {i}: operator {op.index} (CONV_2D) "
                    "is grouped; low-rank updates need one group"
                )
        elif op.code != tflite_graph.FULLY_CONNECTED:
            raise BadPlanError(
                f"training plan: layer {i}: operator {op.index} "
                f"({_name(op.code)}) cannot train low-rank"
            )
        if len(layer.channels) != channels:
            raise BadPlanError(
                f"training plan: layer {i}: a low-rank layer trains all {channels} output channels"
            )
        if not 1 <= layer.rank <= min(channels, self._weights_per_channel(op)):
            raise BadPlanError(f"training plan: layer {i}: rank {layer.rank} is out of range")
        if layer.refresh_steps < 1:
            raise BadPlanError(f"training plan: layer {i}: refresh_steps must be at least 1")


class _BackwardGraph:
    """Which operators the backward pass visits and which buffers the
    training region holds: find_backward_path and prepare_backward
    (tt_trainer_setup.c), keep_until and walk_buffers
    (tt_trainer_region.c)."""

    def __init__(self, model, plan):
        self.model = model
        self.logits = plan.logits_tensor
        self.steps = 2 * len(model.operators)
        self.grad_bytes = plan.gradient_bits // 8  # sizeof(tt_grad)
        self.layers = {layer.operator_index: layer for layer in plan.layers}
        self.first = plan.layers[0].operator_index
        self.loss_node = next(op.index for op in model.operators if self.logits in op.outputs)
        self.feeds_loss = self._loss_ancestors()
        self.visited, self.has_grad, self.grad_writer = self._backward_path()
        self.needs = {n: self._needs(n) for n in self.visited}
        self.in_place = {n for n in self.visited if self._can_share_input_grad(n)}
        self.producer = {o: op.index for op in model.operators for o in op.outputs}

    def _loss_ancestors(self):
        """mark_loss_ancestors: tensors the logits depend on."""
        feeds = {self.logits}
        for op in reversed(self.model.operators):
            if feeds.intersection(op.outputs):
                feeds.update(i for i in op.inputs if i >= 0 and self.model.tensors[i].in_arena)
        return feeds

    def _backward_path(self):
        """find_backward_path: operators that are trained or get a gradient
        and feed the logits; each gradient's writer is its latest visiting
        consumer (the loss for the logits)."""
        visited, has_grad, grad_writer = [], set(), {}
        for op in self.model.operators:
            trained = op.index in self.layers
            needed = trained or any(i in has_grad for i in op.inputs)
            feeds = bool(self.feeds_loss.intersection(op.outputs))
            if trained and not feeds:
                raise _plan_error(
                    op,
                    f"does not feed the logits (tensor {self.logits}), so "
                    "training it cannot change the loss",
                )
            if not (needed and feeds):
                continue
            self._check_visited(op)
            visited.append(op.index)
            has_grad.add(op.outputs[0])
            for i in op.inputs:
                if i in has_grad:
                    grad_writer[i] = op.index
        grad_writer[self.logits] = len(self.model.operators)
        return visited, has_grad, grad_writer

    def _check_visited(self, op):
        """check_visited."""
        if KERNELS[op.code].backward is None:
            raise _plan_error(
                op,
                "has no backward kernel, but gradients must pass through "
                f"it to reach trained operators (from operator "
                f"{self.first}); train only operators after {op.index}",
            )
        if len(op.outputs) != 1 or len(op.inputs) > _MAX_BACKWARD_INPUTS:
            raise _plan_error(
                op,
                f"has {len(op.outputs)} outputs and {len(op.inputs)} "
                "inputs; the backward pass supports one output and up to "
                "8 inputs",
            )

    def _needs(self, n):
        """prepare_backward for operator n."""
        model, op = self.model, self.model.operators[n]
        layer = self.layers.get(n)
        update = None
        if layer is not None:
            # A sampled layer is checked for all its candidates, as weights.
            kind = _UPDATE_WEIGHTS if layer.update == "sampled" else UPDATE_KINDS[layer.update]
            update = _Update(kind, tuple(layer.channels), model._weights_per_channel(op))
        needs = model.backward_needs(op, update)
        if needs.has_clamp and model.tensors[op.outputs[0]].type != _INT8:
            raise UnsupportedModelError(
                f"operator {n} ({_name(op.code)}): its backward clamps the gradient, which "
                "needs an int8 output"
            )
        return needs

    def _can_share_input_grad(self, n):
        """can_share_input_grad (tt_trainer_setup.c)."""
        needs, op = self.needs[n], self.model.operators[n]
        if not needs.in_place or needs.scratch_bytes or not op.inputs:
            return False
        source = op.inputs[0]
        return (
            source >= 0
            and source in self.has_grad
            and self.grad_writer[source] == n
            and source not in op.inputs[1:]
            and (
                self.model.tensors[source].num_elements
                >= self.model.tensors[op.outputs[0]].num_elements
            )
        )

    def sharing_chain(self, tensor):
        """next_sharing (tt_trainer_region.c) from `tensor`: the tensors whose
        gradients take its gradient's place, nearest the logits first."""
        chain = []
        while self.producer.get(tensor) in self.in_place:
            tensor = self.model.operators[self.producer[tensor]].inputs[0]
            chain.append(tensor)
        return chain

    def keep_until(self, tensor):
        """keep_until: the last step a tensor's int8 values are read."""
        last = self.model.tensors[tensor].last_op
        if tensor == self.logits and last < len(self.model.operators):
            last = len(self.model.operators)
        for n in self.visited:
            saved = self.needs[n].saved_inputs
            inputs = self.model.operators[n].inputs
            for i in range(min(len(inputs), 32)):
                if saved >> i & 1 and inputs[i] == tensor and self.steps - n > last:
                    last = self.steps - n
        return last

    def buffers(self, in_place):
        """walk_buffers: (kind, index, Buffer) for activations and
        gradients (by tensor), masks and scratch (by operator). With
        `in_place`, the operators of self.in_place write input 0's gradient
        over their output gradient: a chain of such gradients is one buffer
        (add_gradient), named after the tensor nearest the logits."""
        model, steps = self.model, self.steps
        saved = {
            i for n in self.visited if self.needs[n].saved_inputs for i in model.operators[n].inputs
        }
        result = [
            ("activation", index, buffer)
            for index, buffer in model._activation_buffers(
                lambda t: (
                    self.keep_until(t)
                    if t in saved or t == self.logits
                    else model.tensors[t].last_op
                )
            )
        ]
        sharing = self.in_place if in_place else set()
        shared = {model.operators[n].inputs[0] for n in sharing}
        for index in sorted(self.has_grad - shared):
            chain = [index] + (self.sharing_chain(index) if in_place else [])
            result.append(
                (
                    "gradient",
                    index,
                    buffer_planner.Buffer(
                        max(self.grad_bytes * model.tensors[t].num_elements for t in chain),
                        steps - self.grad_writer[index],
                        steps - self.producer[chain[-1]],
                    ),
                )
            )
        for n in self.visited:
            if self.needs[n].has_clamp:
                elements = model.tensors[model.operators[n].outputs[0]].num_elements
                result.append(("mask", n, buffer_planner.Buffer((elements + 7) // 8, n, steps - n)))
        for n in self.visited:
            needs = self.needs[n]
            scratch = (
                needs.in_place_scratch_bytes + self.grad_bytes * needs.in_place_scratch_grads
                if n in self.in_place
                else needs.scratch_bytes
            )
            if scratch and (n not in self.in_place or in_place):
                result.append(("scratch", n, buffer_planner.Buffer(scratch, steps - n, steps - n)))
        return result


def _sampled_candidates(plan):
    """Candidates of all sampled layers: the sampler's shuffle length."""
    return sum(len(layer.channels) for layer in plan.layers if layer.update == "sampled")


# -- the module's entry points -------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _cached_model(model_bytes):
    return MemoryModel(model_bytes)


def for_model(model_bytes):
    """The (cached) MemoryModel of a .tflite model."""
    return _cached_model(bytes(model_bytes))


def inference_arena(model_bytes: bytes, preserve_all_tensors: bool = False) -> InferenceArena:
    """The arena tt_interpreter_init uses for the model, to the byte
    (InferenceArena.total == Interpreter.arena_used_bytes())."""
    return for_model(model_bytes).inference_arena(preserve_all_tensors)


def training_memory(model_bytes: bytes, plan: TrainingPlan | bytes) -> TrainingMemory:
    """The arena tt_trainer_init uses for the model and plan, to the byte
    (TrainingMemory.as_dict() == Trainer.memory())."""
    return for_model(model_bytes).training_memory(plan)
