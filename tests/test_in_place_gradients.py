"""Gradients written in place: an operator whose kernel can (RELU, RELU6,
QUANTIZE, RESHAPE / SQUEEZE / EXPAND_DIMS, ADD / SUB whose input 0 is not
broadcast, a 1x1 CONV_2D with stride 1 or a stride-1 DEPTHWISE_CONV_2D
with multiplier 1 keeping the image size, whose weights do not train) writes
its input 0's gradient over its output gradient, and the trainer shares the
two buffers when that makes the training region smaller.

Sharing must not change one bit of training: each kernel's in-place
result equals its separate-buffer result, the trainer's losses and trained
bytes equal digests recorded with separate buffers (commit 862500b, before
sharing existed), the firmware trains a sharing plan bit-identically with
the host, and the memory model predicts the shared layout to the byte
(tests/test_memory_model.py covers the random plans)."""

import hashlib

import numpy as np
import pytest

import backward_kernels as bk
import single_op_models as som
import training_helpers as th
from backward_kernels import (
    INT32,
    TT_OK,
    UPDATE_BIAS,
    UPDATE_WEIGHTS,
    OneOp,
    T,
    aligned_floats,
    make_update,
    rand_grad,
    rand_int8,
    rand_scale,
)
from test_firmware_training import train_on_mcu
from tflm_training import Trainer, TrainingPlan, memory_model, tflite_graph
from tflm_training.plan import LayerPlan, find_logits

# The native library fixture (backward_kernels): pytest finds fixtures by
# name in the module's namespace.
lib = bk.lib

RELU = 1


def _pointwise(lib, rng, in_c, out_c, groups=1, with_bias=True):
    """A 1x1 CONV_2D over a 1x3x4 image, fused RELU."""
    depth = in_c // groups
    x_scale = np.float32(0.05)
    w_scale = rand_scale(rng, out_c)
    q_w = rand_int8(rng, (out_c, 1, 1, depth), -127, 127)
    inputs = [
        T((1, 3, 4, in_c), scale=x_scale, zero_point=4),
        T((out_c, 1, 1, depth), scale=w_scale, quantized_dimension=0, data=q_w),
    ]
    if with_bias:
        inputs.append(
            T(
                (out_c,),
                INT32,
                scale=x_scale * w_scale,
                data=rng.integers(-500, 500, out_c).astype(np.int32),
            )
        )
    options = som.options("Conv2D", padding=0, strideH=1, strideW=1, fusedActivationFunction=RELU)
    outputs = [T((1, 3, 4, out_c), scale=np.float32(0.1), zero_point=-10)]
    return OneOp(lib, rng, "CONV_2D", inputs, outputs, options, extra_arena=4096)


def _in_place_equals_separate(one, dy, needs, update=None):
    """Runs the backward kernel into a zeroed separate buffer and in place
    over a buffer holding dy; both must give the same bits."""
    x_elements = one.tensor(0).size
    separate = np.zeros(x_elements, np.float32)
    assert one.backward(dy, [separate], update) == TT_OK, one.error()
    shared = np.zeros(max(x_elements, dy.size), np.float32)
    shared[: dy.size] = dy.reshape(-1)
    scratch = aligned_floats(max(1, needs.in_place_scratch_bytes // 4))
    assert one.backward(shared, [shared], update, scratch, in_place=True) == TT_OK, one.error()
    assert shared[:x_elements].view(np.uint32).tolist() == separate.view(np.uint32).tolist()
    return separate


@pytest.mark.parametrize(
    "in_c,out_c,groups",
    [(4, 8, 1), (8, 3, 1), (6, 6, 1), (6, 4, 2)],
    ids=["widening", "narrowing", "square", "grouped"],
)
def test_pointwise_conv_input_grad_in_place_is_bit_identical(lib, in_c, out_c, groups):
    rng = np.random.default_rng([21, in_c, out_c, groups])
    one = _pointwise(lib, rng, in_c, out_c, groups)
    status, needs = one.prepare()
    assert status == TT_OK, one.error()
    assert needs.in_place and needs.in_place_scratch_bytes == 4 * out_c
    dy = rand_grad(rng, one.tensor(3).shape)
    dy.reshape(-1)[::5] = 0.0  # zero gradients skip, as in the separate loop
    dy.reshape(-1)[1] = -0.0
    _in_place_equals_separate(one, dy, needs)


def test_pointwise_bias_update_in_place_reads_the_gradient_before_it_is_overwritten(lib):
    rng = np.random.default_rng(22)
    one = _pointwise(lib, rng, 5, 7)
    one.move_to_arena([1, 2])
    update = make_update(UPDATE_BIAS, [0, 3, 6], 5)
    status, needs = one.prepare(update)
    assert status == TT_OK and needs.in_place, one.error()
    dy = rand_grad(rng, one.tensor(3).shape)
    separate_update = make_update(UPDATE_BIAS, [0, 3, 6], 5)
    x_elements = one.tensor(0).size
    separate = np.zeros(x_elements, np.float32)
    assert one.backward(dy, [separate], separate_update) == TT_OK, one.error()
    shared = np.zeros(max(x_elements, dy.size), np.float32)
    shared[: dy.size] = dy.reshape(-1)
    scratch = aligned_floats(7)
    assert one.backward(shared, [shared], update, scratch, in_place=True) == TT_OK
    assert shared[:x_elements].view(np.uint32).tolist() == separate.view(np.uint32).tolist()
    np.testing.assert_array_equal(
        update.keep["bias_accumulator"], separate_update.keep["bias_accumulator"]
    )


def test_only_layers_whose_weights_stay_and_whose_pixels_map_to_themselves_offer_it(lib):
    rng = np.random.default_rng(23)
    one = _pointwise(lib, rng, 4, 6)
    status, needs = one.prepare(make_update(UPDATE_WEIGHTS, [1], 4))
    assert status == TT_OK and not needs.in_place
    # A 3x3 window gathers neighbours: no.
    q_w = rand_int8(rng, (6, 3, 3, 4), -127, 127)
    three = OneOp(
        lib,
        rng,
        "CONV_2D",
        [
            T((1, 5, 5, 4), scale=np.float32(0.05)),
            T((6, 3, 3, 4), scale=rand_scale(rng, 6), quantized_dimension=0, data=q_w),
        ],
        [T((1, 5, 5, 6), scale=np.float32(0.1))],
        som.options("Conv2D", padding=0, strideH=1, strideW=1),
    )
    status, needs = three.prepare()
    assert status == TT_OK and not needs.in_place
    # ADD: input 0 broadcast over the output cannot take its place.
    s = np.float32(0.05)
    broadcast = OneOp(
        lib,
        rng,
        "ADD",
        [T((1, 4), scale=s), T((3, 4), scale=s)],
        [T((3, 4), scale=2 * s)],
        som.options("Add"),
    )
    status, needs = broadcast.prepare()
    assert status == TT_OK and not needs.in_place


@pytest.mark.parametrize(
    "filter_hw,dilation,batches",
    [((3, 3), 1, 1), ((5, 3), 1, 2), ((3, 2), 2, 1), ((1, 4), 1, 1), ((4, 4), 1, 1)],
    ids=["3x3", "5x3-batch2", "3x2-dilated", "1x4", "4x4-uneven-padding"],
)
def test_depthwise_input_grad_in_place_is_bit_identical(lib, filter_hw, dilation, batches):
    rng = np.random.default_rng([26, *filter_hw, dilation, batches])
    kh, kw = filter_hw
    channels = 5
    q_w = rand_int8(rng, (1, kh, kw, channels), -127, 127)
    w_scale = rand_scale(rng, channels)
    x_scale = np.float32(0.05)
    one = OneOp(
        lib,
        rng,
        "DEPTHWISE_CONV_2D",
        [
            T((batches, 6, 5, channels), scale=x_scale, zero_point=3),
            T((1, kh, kw, channels), scale=w_scale, quantized_dimension=3, data=q_w),
            T(
                (channels,),
                INT32,
                scale=x_scale * w_scale,
                data=rng.integers(-500, 500, channels).astype(np.int32),
            ),
        ],
        [T((batches, 6, 5, channels), scale=np.float32(0.1), zero_point=-10)],
        som.options(
            "DepthwiseConv2D",
            padding=0,
            strideH=1,
            strideW=1,
            depthMultiplier=1,
            dilationHFactor=dilation,
            dilationWFactor=dilation,
            fusedActivationFunction=RELU,
        ),
        extra_arena=4096,
    )
    status, needs = one.prepare()
    assert status == TT_OK, one.error()
    span = (kh - 1) * dilation
    assert needs.in_place
    assert needs.in_place_scratch_bytes == 4 * (span - span // 2 + 1) * 5 * channels
    dy = rand_grad(rng, one.tensor(3).shape)
    dy.reshape(-1)[::7] = 0.0
    dy.reshape(-1)[2] = -0.0
    _in_place_equals_separate(one, dy, needs)
    one.move_to_arena([1, 2])
    update = make_update(UPDATE_BIAS, [1, 4], kh * kw)
    status, needs = one.prepare(update)
    assert status == TT_OK and needs.in_place, one.error()
    _in_place_equals_separate(one, dy, needs, update)


def test_depthwise_with_a_stride_or_a_multiplier_keeps_separate_buffers(lib):
    rng = np.random.default_rng(27)
    for multiplier, stride, out_shape in ((2, 1, (1, 6, 5, 6)), (1, 2, (1, 3, 3, 3))):
        q_w = rand_int8(rng, (1, 3, 3, 3 * multiplier), -127, 127)
        one = OneOp(
            lib,
            rng,
            "DEPTHWISE_CONV_2D",
            [
                T((1, 6, 5, 3), scale=np.float32(0.05)),
                T(
                    (1, 3, 3, 3 * multiplier),
                    scale=rand_scale(rng, 3 * multiplier),
                    quantized_dimension=3,
                    data=q_w,
                ),
            ],
            [T(out_shape, scale=np.float32(0.1))],
            som.options(
                "DepthwiseConv2D",
                padding=0,
                strideH=stride,
                strideW=stride,
                depthMultiplier=multiplier,
            ),
        )
        status, needs = one.prepare()
        assert status == TT_OK and not needs.in_place, one.error()


@pytest.mark.parametrize("op_name", ["ADD", "SUB"])
def test_add_sub_in_place_is_bit_identical(lib, op_name):
    rng = np.random.default_rng([24, len(op_name)])
    s = np.float32(0.05)
    options = som.options("Add" if op_name == "ADD" else "Sub")
    for second in ((2, 3, 4), (3, 1), (4,)):
        one = OneOp(
            lib,
            rng,
            op_name,
            [T((2, 3, 4), scale=s), T(second, scale=s)],
            [T((2, 3, 4), scale=2 * s)],
            options,
        )
        status, needs = one.prepare()
        assert status == TT_OK and needs.in_place, one.error()
        dy = rand_grad(rng, (2, 3, 4))
        dy.reshape(-1)[2] = -0.0
        for dx2_start in (np.zeros(second, np.float32), -np.zeros(second, np.float32)):
            separate1, separate2 = np.zeros((2, 3, 4), np.float32), dx2_start.copy()
            assert one.backward(dy, [separate1, separate2]) == TT_OK, one.error()
            shared, shared2 = dy.copy(), dx2_start.copy()
            assert one.backward(shared, [shared, shared2], in_place=True) == TT_OK
            assert shared.view(np.uint32).tolist() == separate1.view(np.uint32).tolist()
            assert shared2.view(np.uint32).tolist() == separate2.view(np.uint32).tolist()


@pytest.mark.parametrize("op_name,options", [("RELU", None), ("RESHAPE", None)])
def test_unary_kernels_in_place_are_bit_identical(lib, op_name, options):
    rng = np.random.default_rng(25)
    shape = (2, 6) if op_name == "RELU" else (3, 4)
    one = OneOp(
        lib,
        rng,
        op_name,
        [T((2, 6), scale=np.float32(0.05))],
        [T(shape, scale=np.float32(0.05))],
        options,
    )
    status, needs = one.prepare()
    assert status == TT_OK and needs.in_place, one.error()
    dy = rand_grad(rng, shape)
    dy.reshape(-1)[3] = -0.0
    _in_place_equals_separate(one, dy, needs)


# -- the trainer --------------------------------------------------------------------

# sha256 (first 16 hex digits) of the trained bytes and the float32 losses
# after one pass over 8 random samples, measured with every gradient in its
# own buffer (commit 862500b). Plans: every bias ("bias_all"); the first
# layer's bias and the classifier with the layers between frozen
# ("frozen_between"); the biases of all but the first layer and the
# classifier, momentum 0.9, batches of 2 ("bias_momentum").
SEPARATE_BUFFER_DIGESTS = {
    ("transfer/ds_cnn_fsdd", "bias_all"): "a40b551bbebda017",
    ("transfer/ds_cnn_fsdd", "frozen_between"): "ab5aa5a5ba8aa757",
    ("transfer/ds_cnn_fsdd", "bias_momentum"): "370bce2d142b1b19",
    ("mobilenet_v2_block", "bias_all"): "ec456d7d7d0f786d",
    ("mobilenet_v2_block", "frozen_between"): "3f27d227afd45c1e",
    ("mobilenet_v2_block", "bias_momentum"): "01735e64947aa570",
    ("residual_relu", "bias_all"): "398d91b0f213a0f6",
    ("residual_relu", "frozen_between"): "b8593708e9bce2d5",
    ("residual_relu", "bias_momentum"): "8df089eb377e3e25",
    ("reshape_dense", "bias_all"): "16f8d013f3565607",
    ("reshape_dense", "frozen_between"): "98f5eee1a81255dc",
    ("reshape_dense", "bias_momentum"): "13f83da201a14ca1",
    ("ds_cnn", "bias_all"): "7fd1a32807af5227",
    ("ds_cnn", "frozen_between"): "a718ddcceb5af6ab",
    ("ds_cnn", "bias_momentum"): "27f310e15e8c5cb0",
}


def _plan(model, kind):
    graph = tflite_graph.read_graph(model)
    classifier = graph.producer(find_logits(graph))
    biased = [
        op.index
        for op in graph.operators
        if op.builtin_code in (3, 4, 9)
        and len(op.inputs) > 2
        and op.inputs[2] >= 0
        and op.index != classifier
    ]
    if kind == "bias_all":
        return TrainingPlan.bias_only(model, learning_rate=0.05)
    if kind == "frozen_between":
        return TrainingPlan.for_model(
            model,
            [LayerPlan(biased[0], "bias"), LayerPlan(classifier, "weights")],
            learning_rate=0.05,
        )
    return TrainingPlan.for_model(
        model,
        [LayerPlan(i, "bias") for i in biased[1:]] + [LayerPlan(classifier, "weights")],
        learning_rate=0.05,
        momentum=0.9,
        batch_size=2,
    )


def _random_samples(model, count, seed):
    graph = tflite_graph.read_graph(model)
    shape = graph.tensors[graph.inputs[0]].shape
    classes = graph.tensors[find_logits(graph)].shape[-1]
    rng = np.random.default_rng(seed)
    return (
        rng.integers(-128, 128, size=(count,) + tuple(shape[1:]), dtype=np.int8),
        rng.integers(0, classes, size=count),
    )


@pytest.mark.parametrize("name,kind", sorted(SEPARATE_BUFFER_DIGESTS))
def test_sharing_gradients_leaves_every_trained_bit_as_it_was(name, kind):
    model = th.model_bytes(name)
    plan = _plan(model, kind)
    trainer = Trainer(model, plan)
    trainer.train_step(*_random_samples(model, 8, 7))
    digest = hashlib.sha256(
        trainer.trained_bytes() + np.array(trainer.losses, np.float32).tobytes()
    ).hexdigest()
    assert digest[:16] == SEPARATE_BUFFER_DIGESTS[name, kind]


@pytest.mark.parametrize(
    "name,kind,saving",
    [
        ("transfer/ds_cnn_fsdd", "bias_momentum", 0.30),
        ("reshape_dense", "bias_all", 0.25),
        ("ds_cnn", "bias_all", 0.35),
        ("mobilenet_v2_block", "bias_all", 0.04),
    ],
)
def test_sharing_is_chosen_where_it_makes_the_arena_smaller(name, kind, saving):
    model = th.model_bytes(name)
    memory = memory_model.training_memory(model, _plan(model, kind))
    shared = [p for p in memory.placements if p.shared_by]
    assert shared
    separate_total = memory.total - memory.region_size + memory.separate_region
    assert memory.total <= (1 - saving) * separate_total
    assert Trainer(model, _plan(model, kind)).arena_used_bytes() == memory.total


def test_a_plan_where_sharing_does_not_help_keeps_separate_buffers():
    """depth_multiplier: its pointwise layer could write in place, but the
    region's peak is in the forward pass, so sharing saves nothing and a
    tie keeps separate buffers."""
    model = th.model_bytes("depth_multiplier")
    memory = memory_model.training_memory(model, _plan(model, "bias_all"))
    assert not any(p.shared_by for p in memory.placements)
    assert memory.region_size == memory.separate_region


@pytest.mark.firmware
def test_the_firmware_trains_a_sharing_plan_bit_identically_with_the_host(tmp_path):
    """ds_cnn_fsdd, biases of the layers after the first and the
    classifier with momentum in batches of 2: the gradients of the
    pointwise layers share buffers (a third less arena)."""
    model = th.model_bytes("transfer/ds_cnn_fsdd")
    plan = _plan(model, "bias_momentum")
    assert any(p.shared_by for p in memory_model.training_memory(model, plan).placements)
    x, y = _random_samples(model, 4, 8)
    _, result, run = train_on_mcu(model, plan.to_bytes(), (x, y), None, tmp_path, 1)
    trainer = Trainer(model, plan)
    losses = np.array([trainer.train_step(x[i], y[i]) for i in range(len(y))], np.float32)
    assert result.log.errors == []
    assert run.init["arena_used"] == trainer.arena_used_bytes()
    assert run.losses.view(np.uint32).tolist() == losses.view(np.uint32).tolist()
    assert sorted(run.parameters) == trainer.parameter_tensors
    for tensor, event in run.parameters.items():
        assert event["data"] == trainer.get_tensor(tensor).tobytes(), f"tensor {tensor}"
