"""The memory cost model (tflm_training/memory_model.py) against the C
runtime, to the byte.

Every comparison covers the whole layout, not only the totals: the six
fields of Trainer.memory(), the arena offset of every persistent
allocation (tables, index lists, each operator's op data, the trainer's
tables, parameter copies, each optimizer state array) and of every planned
buffer (activations, gradients, clamp masks, scratch), all read back from
the runtime's own records in the arena. Models: every .tflite under
tests/models/ and those kept in examples/ for inference (also with preserve_all_tensors), random
single-operator models of every kernel, and several hundred seeded random
training plans (layers, update kinds, channel subsets, momentum, batch
size) over the models with trainable layers. A plan the runtime rejects
must be rejected by the model too, and the other way round.

The struct sizes the model assumes are checked against the host C
compiler and the Cortex-M4 cross compiler with _Static_assert.
"""

import ctypes
import dataclasses
import pathlib
import shutil
import subprocess
import sys
import zlib

import numpy as np
import pytest

import training_helpers as th
from tflm_training import (
    Interpreter,
    LayerPlan,
    TflmTrainingError,
    Trainer,
    TrainingPlan,
    _native,
    memory_model,
    tflite_graph,
)
from tflm_training.plan import (
    channel_state_bytes,
    find_logits,
    parameter_layout,
    trainable_operators,
)

TESTS = pathlib.Path(__file__).resolve().parent
REPO = TESTS.parent
RUNTIME = REPO / "tflm_training" / "runtime"
MODELS = th.every_model()
TRAINING_MODELS = [p for p in MODELS if "extra_ops" not in p.parts]
PLANS_PER_MODEL = 60
SEED = 20260601
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))


# -- what the runtime laid out, read from its records ---------------------------


class _FbBuffer(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("size", ctypes.c_uint32)]


class _CInterpreter(ctypes.Structure):
    """Mirror of tt_interpreter (tt_records.h), host layout."""

    _fields_ = [
        ("model", _FbBuffer),
        ("arena", ctypes.c_void_p),
        ("arena_size", ctypes.c_uint32),
        ("persistent_used", ctypes.c_uint32),
        ("activations_offset", ctypes.c_uint32),
        ("activations_size", ctypes.c_uint32),
        ("tensors", ctypes.c_void_p),
        ("num_tensors", ctypes.c_int32),
        ("nodes", ctypes.c_void_p),
        ("num_nodes", ctypes.c_int32),
        ("inputs_offset", ctypes.c_int32),
        ("num_inputs", ctypes.c_int32),
        ("outputs_offset", ctypes.c_int32),
        ("num_outputs", ctypes.c_int32),
        ("current_node", ctypes.c_int32),
        ("ready", ctypes.c_bool),
        ("error", _native.ErrorRecord),
    ]


class _CTrainer(ctypes.Structure):
    """Mirror of tt_trainer (tt_trainer.h), host layout."""

    _fields_ = (
        [("interpreter", _CInterpreter)]
        + [
            (name, ctypes.c_int32)
            for name in (
                "layers_offset",
                "num_layers",
                "tensor_info_offset",
                "node_info_offset",
                "first_backward_node",
                "loss_node",
            )
        ]
        + [
            (name, ctypes.c_uint32)
            for name in (
                "interpreter_tables_bytes",
                "trainer_tables_bytes",
                "weight_copies_bytes",
                "optimizer_state_bytes",
            )
        ]
        + [
            ("samples_in_batch", ctypes.c_int32),
            ("steps", ctypes.c_uint32),
            ("learning_rate", ctypes.c_float),
            ("momentum", ctypes.c_float),
            ("batch_size", ctypes.c_int32),
            ("flags", ctypes.c_int32),
            ("logits_tensor", ctypes.c_int32),
            ("num_classes", ctypes.c_int32),
        ]
        + [(name, ctypes.c_float) for name in ("adam_beta1", "adam_beta2", "adam_epsilon")]
        + [
            (name, ctypes.c_int32)
            for name in (
                "sample_order_offset",
                "sample_pool_offset",
                "sampled_candidates",
                "sample_budget",
            )
        ]
        + [(name, ctypes.c_uint32) for name in ("sampled_state_bytes", "seed", "epoch")]
        + [
            ("probe_weight_sq", ctypes.c_void_p),
            ("probe_bias_sq", ctypes.c_void_p),
            ("probing", ctypes.c_bool),
            ("ready", ctypes.c_bool),
            ("undo", ctypes.c_void_p),
            ("operator_hook", ctypes.c_void_p),
            ("operator_hook_context", ctypes.c_void_p),
        ]
    )


_STATE_NAMES = (
    "weight residual",
    "weight velocity",
    "weight accumulator",
    "bias residual",
    "bias velocity",
    "bias accumulator",
)
_DATA_ARENA = 2
_PARAM_COPY = 4
_SAMPLED = 2  # TT_UPDATE_SAMPLED
LAYER_WORDS = memory_model.TRAIN_LAYER.size // 4  # tt_train_layer (size checked below)


@dataclasses.dataclass
class Layout:
    """Where things are: {(what, index): arena offset} for persistent
    allocations and {(kind, index): arena offset} for planned buffers."""

    allocations: dict
    placements: dict
    persistent_used: int
    region: tuple  # (offset, size)


def _words(arena, offset, count, width):
    """Records of `width` int32 words at an arena offset, as a 2-D array."""
    data = np.frombuffer(arena, dtype=np.uint8, count=4 * count * width, offset=offset)
    return data.view("<i4").reshape(count, width)


def _interpreter_layout(c_it, arena, param_copies=frozenset()):
    """The interpreter's allocations and activation placements, from the
    tt_interpreter struct and the tensor and operator records."""
    base = c_it.arena
    tensors_at, nodes_at = c_it.tensors - base, c_it.nodes - base
    tensors = _words(arena, tensors_at, c_it.num_tensors, 24)
    nodes = _words(arena, nodes_at, c_it.num_nodes, 13)
    allocations = {
        ("tensor table", -1): tensors_at,
        ("operator table", -1): nodes_at,
        ("graph inputs", -1): c_it.inputs_offset,
        ("graph outputs", -1): c_it.outputs_offset,
    }
    for n, node in enumerate(nodes):
        allocations[("operator inputs", n)] = int(node[8])
        allocations[("operator outputs", n)] = int(node[10])
        allocations[("operator data", n)] = int(node[12])
    placements = {}
    for i, record in enumerate(tensors):
        if record[10] == _DATA_ARENA:
            key = ("parameter copy" if i in param_copies else "activation", i)
            (allocations if i in param_copies else placements)[key] = int(record[11])
    return Layout(
        allocations,
        placements,
        c_it.persistent_used,
        (c_it.activations_offset, c_it.activations_size),
    )


def measured_inference(interpreter):
    c_it = _CInterpreter.from_buffer(interpreter._state)
    return _interpreter_layout(c_it, interpreter._arena)


def measured_training(trainer):
    """The trainer's layout: the interpreter's, plus its tables, parameter
    copies, optimizer state arrays, gradients, masks and scratch."""
    c_tr = _CTrainer.from_buffer(trainer._state)
    arena = trainer._arena
    num_tensors, num_nodes = c_tr.interpreter.num_tensors, c_tr.interpreter.num_nodes
    info = _words(arena, c_tr.tensor_info_offset, num_tensors, 4)
    nodes = _words(arena, c_tr.node_info_offset, num_nodes, 8)
    layers = _words(arena, c_tr.layers_offset, c_tr.num_layers, LAYER_WORDS)
    copies = {i for i in range(num_tensors) if info[i][0] & _PARAM_COPY}
    layout = _interpreter_layout(c_tr.interpreter, arena, copies)
    layout.allocations.update(
        {
            ("trainer tensor table", -1): c_tr.tensor_info_offset,
            ("trainer operator table", -1): c_tr.node_info_offset,
            ("trainer layer table", -1): c_tr.layers_offset,
            ("channel lists", -1): int(layers[0][13]),
        }
    )  # layer 0's candidates_offset
    if c_tr.sampled_candidates:
        layout.allocations[("channel sampler shuffle", -1)] = c_tr.sample_order_offset
        layout.allocations[("sampled state pool", -1)] = c_tr.sample_pool_offset
    for layer in layers:
        if layer[1] == _SAMPLED:
            continue  # its state lies in the pool (test_channel_sampling.py)
        for slot, name in enumerate(_STATE_NAMES):
            if layer[7 + slot] >= 0:
                layout.allocations[(name, int(layer[0]))] = int(layer[7 + slot])
        if layer[17] >= 0:  # lowrank_offset
            layout.allocations[("low-rank state", int(layer[0]))] = int(layer[17])
    for i, record in enumerate(info):
        if record[2] >= 0:
            layout.placements[("gradient", i)] = int(record[2])
    for n, record in enumerate(nodes):
        if record[2] >= 0:
            layout.placements[("mask", n)] = int(record[2])
        if record[5] >= 0:
            layout.placements[("scratch", n)] = int(record[5])
    return layout


def predicted_layout(prediction):
    """The same view of an InferenceArena or a TrainingMemory."""
    allocations = {(a.what, a.index): a.offset for a in prediction.allocations}
    placements = {
        (p.kind, index): p.offset
        for p in prediction.placements
        for index in (p.index,) + p.shared_by
    }
    if isinstance(prediction, memory_model.InferenceArena):
        region = (prediction.activations_offset, prediction.activations)
    else:
        region = (prediction.region_offset, prediction.region_size)
    return Layout(allocations, placements, prediction.persistent_used, region)


# -- comparisons ------------------------------------------------------------------


def assert_same_training(predicted, trainer):
    """Every field of Trainer.memory() and the whole layout."""
    measured = trainer.memory()
    assert predicted.as_dict() == measured
    assert predicted.total == trainer.arena_used_bytes()
    assert predicted_layout(predicted) == measured_training(trainer)


def assert_same_inference(predicted, interpreter):
    assert predicted.total == interpreter.arena_used_bytes()
    parts = predicted.as_dict()
    assert parts.pop("total") == sum(parts.values())
    assert predicted_layout(predicted) == measured_inference(interpreter)


def test_test_mirrors_of_the_c_structs_match_the_library():
    lib = _native.library()
    assert ctypes.sizeof(_CInterpreter) == lib.tt_sizeof_interpreter()
    assert ctypes.sizeof(_CTrainer) == lib.tt_sizeof_trainer()


# -- inference ----------------------------------------------------------------------


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.stem)
@pytest.mark.parametrize("preserve", [False, True], ids=["planned", "preserve_all"])
def test_inference_arena_equals_the_runtime(path, preserve):
    model = path.read_bytes()
    interpreter = Interpreter(model, preserve_all_tensors=preserve)
    predicted = memory_model.inference_arena(model, preserve_all_tensors=preserve)
    assert_same_inference(predicted, interpreter)


@pytest.mark.slow
def test_inference_arena_of_random_single_operator_models():
    """Every kernel the runtime registers, in many random configurations
    (tests/test_random_ops.py's generators): the op data of each, the
    index lists and the planner, for every model the runtime accepts."""
    random_ops = _random_ops_module()
    compared = {}
    for op in sorted(random_ops.GENERATORS):
        for index in range(20):
            model = random_ops._make_case(op, index).model
            try:
                interpreter = Interpreter(model)
            except TflmTrainingError:
                continue
            assert_same_inference(memory_model.inference_arena(model), interpreter)
            compared[op] = compared.get(op, 0) + 1
    assert set(compared) == set(random_ops.GENERATORS), "an operator was never accepted"
    assert {memory_model.KERNELS[code].name for code in memory_model.KERNELS} == set(compared)


def _random_ops_module():
    import test_random_ops  # the generators of every operator

    return test_random_ops


# -- training -------------------------------------------------------------------------


def _channel_subset(rng, channels):
    mode = rng.integers(4)
    if mode == 0:
        return list(range(channels))
    if mode == 1:
        return [int(rng.integers(channels))]
    if mode == 2:
        start = int(rng.integers(channels))
        return list(range(start, int(rng.integers(start + 1, channels + 1))))
    count = int(rng.integers(1, channels + 1))
    return sorted(int(c) for c in rng.choice(channels, count, replace=False))


def random_plan(rng, model):
    """A random plan: 1 to 4 trainable layers (not necessarily feeding the
    logits, so that some plans must be rejected), each with a random update
    kind (bias, weights, sampled with a channel_cost at or above its
    minimum, or lowrank with a rank up to one too many, on any layer) and
    channel subset (all channels for most lowrank layers); momentum on or
    off; batch size 1 or more; with or without residuals; a random sample
    budget and seed."""
    graph = tflite_graph.read_graph(model)
    logits = find_logits(graph)
    plan = TrainingPlan(
        zlib.crc32(model),
        len(graph.tensors),
        len(graph.operators),
        logits,
        graph.tensors[logits].num_elements,
        [],
        learning_rate=0.01,
        momentum=float(rng.choice([0.0, 0.0, 0.9])),
        batch_size=int(rng.choice([1, 1, 2, 4, 32])),
        qas=bool(rng.integers(2)),
        residual=bool(rng.random() < 0.75),
        seed=int(rng.integers(2**32)),
    )
    trainable = trainable_operators(model)
    count = int(rng.integers(1, min(4, len(trainable)) + 1))
    chosen = sorted(rng.choice(len(trainable), count, replace=False))
    for k in chosen:
        op, _, channels, has_bias = trainable[k]
        kind = rng.random()
        update = "bias" if has_bias and kind < 0.3 else "sampled" if kind > 0.7 else "weights"
        cost = 0
        if update == "sampled":
            per_channel = parameter_layout(graph, op)["weights_per_channel"]
            cost = max(1, channel_state_bytes(plan, per_channel, has_bias))
            cost += int(rng.choice([0, 0, 1, 3, 100]))
        subset = _channel_subset(rng, channels)
        rank = refresh = 0
        if update == "weights" and rng.random() < 0.3:
            update, refresh = "lowrank", int(rng.integers(1, 20))
            most = min(channels, parameter_layout(graph, op)["weights_per_channel"])
            rank = int(rng.integers(1, most + 2))
            subset = list(range(channels)) if rng.random() < 0.8 else subset
        plan.layers.append(
            LayerPlan(
                op,
                update,
                subset,
                lr_scale=float(rng.choice([0.5, 1.0, 2.0])),
                channel_cost=cost,
                rank=rank,
                refresh_steps=refresh,
            )
        )
    sampled = [layer for layer in plan.layers if layer.update == "sampled"]
    if sampled:
        everything = sum(layer.channel_cost * len(layer.channels) for layer in sampled)
        cheapest = min(layer.channel_cost for layer in sampled)
        plan.sample_budget = int(rng.integers(cheapest, everything + 2))
    if any(layer.update == "lowrank" for layer in plan.layers):
        plan.adam_beta1, plan.adam_beta2, plan.adam_epsilon = 0.9, 0.999, 1e-8
    return plan


def run_both(model, plan):
    """(predicted, trainer), or the exceptions each raised."""
    results = []
    for run in (lambda: memory_model.training_memory(model, plan), lambda: Trainer(model, plan)):
        try:
            results.append(run())
        except TflmTrainingError as error:
            results.append(error)
    return results


def check_plan(model, plan):
    """Both accept and agree to the byte, or both reject with the same
    kind of error. Returns whether the plan was accepted."""
    predicted, trainer = run_both(model, plan)
    if isinstance(trainer, Exception) or isinstance(predicted, Exception):
        assert type(predicted) is type(trainer), (plan, predicted, trainer)
        return False
    assert_same_training(predicted, trainer)
    return True


def _model_seed(path):
    return [SEED, zlib.crc32(path.name.encode())]


@pytest.mark.slow
@pytest.mark.parametrize("path", TRAINING_MODELS, ids=lambda p: p.stem)
def test_training_memory_of_random_plans(path):
    model = path.read_bytes()
    rng = np.random.default_rng(_model_seed(path))
    plans = [TrainingPlan.classifier_only(model), TrainingPlan.bias_only(model)]
    plans += [random_plan(rng, model) for _ in range(PLANS_PER_MODEL)]
    accepted = sum(check_plan(model, plan) for plan in plans)
    assert accepted >= len(plans) // 2, f"only {accepted} of {len(plans)} plans accepted"


@pytest.mark.parametrize(
    "path",
    [p for p in MODELS if "extra_ops" in p.parts and trainable_operators(p.read_bytes())],
    ids=lambda p: p.stem,
)
def test_extra_op_models_accept_and_reject_plans_like_the_runtime(path):
    """Operators without a backward kernel (MUL, HARD_SWISH, ...) on the
    gradient path make the runtime reject a plan: so must the model."""
    model = path.read_bytes()
    rng = np.random.default_rng(_model_seed(path))
    for _ in range(8):
        check_plan(model, random_plan(rng, model))


def _with_pool_activation(name, builtin_code, activation):
    """A committed model with the first pooling operator's fused
    activation replaced (the runtime masks its gradient where the
    activation narrows int8)."""
    import model_edits

    model = model_edits.load(name)
    _, op = model_edits.first_operator_with(model, builtin_code)
    op.builtinOptions.fusedActivationFunction = activation
    return model_edits.pack(model)


@pytest.mark.parametrize("name,code", [("conv_stack", 17), ("ds_cnn", 1)])
@pytest.mark.parametrize("activation", [1, 2, 3], ids=["relu", "relu_n1_to_1", "relu6"])
def test_pool_activations_decide_the_gradient_mask(name, code, activation):
    model = _with_pool_activation(name, code, activation)
    rng = np.random.default_rng([SEED, code, activation])
    pool = next(
        op.index for op in tflite_graph.read_graph(model).operators if op.builtin_code == code
    )
    first = trainable_operators(model)[0][0]
    plan = TrainingPlan.for_model(model, {first: None})
    assert check_plan(model, plan)
    masked = ("mask", pool) in predicted_layout(
        memory_model.training_memory(model, plan)
    ).placements
    output = tflite_graph.read_graph(model).operators[pool].outputs[0]
    tensor = tflite_graph.read_graph(model).tensors[output]
    low, high = memory_model._activation_range(activation, tensor.scales[0], tensor.zero_points[0])
    assert masked == (low > -128 or high < 127)
    for _ in range(5):
        check_plan(model, random_plan(rng, model))


def test_an_exact_arena_fits_and_one_byte_less_does_not():
    model = (TESTS / "models" / "conv_stack.tflite").read_bytes()
    plan = TrainingPlan.for_model(model, {0: [1, 2], 5: None}, momentum=0.9, batch_size=4)
    size = memory_model.training_memory(model, plan).total
    assert Trainer(model, plan, arena_size=size).arena_used_bytes() == size
    with pytest.raises(TflmTrainingError):
        Trainer(model, plan, arena_size=size - 1)
    inference = memory_model.inference_arena(model).total
    assert Interpreter(model, arena_size=inference).arena_used_bytes() == inference
    with pytest.raises(TflmTrainingError):
        Interpreter(model, arena_size=inference - 1)


# -- the checks themselves catch wrong predictions ------------------------------------


def test_a_wrong_field_is_caught_even_when_the_total_is_right():
    model = (TESTS / "models" / "mlp.tflite").read_bytes()
    plan = TrainingPlan.classifier_only(model)
    predicted = memory_model.training_memory(model, plan)
    trainer = Trainer(model, plan)
    assert_same_training(predicted, trainer)
    fields = memory_model.TrainingMemory.FIELDS[:-1]
    for wrong, compensating in zip(fields, fields[1:] + fields[:1]):
        shifted = dataclasses.replace(
            predicted,
            **{
                wrong: getattr(predicted, wrong) + 8,
                compensating: getattr(predicted, compensating) - 8,
            },
        )
        assert shifted.total == predicted.total
        with pytest.raises(AssertionError):
            assert_same_training(shifted, trainer)


def test_a_wrong_placement_is_caught_even_when_every_field_is_right():
    model = (TESTS / "models" / "conv_stack.tflite").read_bytes()
    plan = TrainingPlan.for_model(model, {3: None, 7: None})
    predicted = memory_model.training_memory(model, plan)
    trainer = Trainer(model, plan)
    swapped = list(predicted.placements)
    swapped[0], swapped[1] = (
        dataclasses.replace(swapped[0], offset=swapped[1].offset),
        dataclasses.replace(swapped[1], offset=swapped[0].offset),
    )
    with pytest.raises(AssertionError):
        assert_same_training(dataclasses.replace(predicted, placements=tuple(swapped)), trainer)


@pytest.mark.parametrize("mistake", ["struct size", "kernel row"])
def test_a_wrong_fact_in_the_model_is_caught(monkeypatch, mistake):
    """A struct 4 bytes too large, or a backward kernel that saves one
    input fewer than the C one, makes the comparison fail."""
    model = (TESTS / "models" / "conv_stack.tflite").read_bytes()
    # Two layers (one alone would hide a 4-byte error in the 8-byte
    # alignment); the gradient passes MAX_POOL_2D, which saves its input.
    plan = TrainingPlan.for_model(model, {0: None, 3: [0, 5]})
    if mistake == "struct size":
        monkeypatch.setattr(
            memory_model,
            "TRAIN_LAYER",
            dataclasses.replace(memory_model.TRAIN_LAYER, size=memory_model.TRAIN_LAYER.size + 4),
        )
    else:
        row = memory_model.KERNELS[17]
        monkeypatch.setitem(
            memory_model.KERNELS,
            17,
            dataclasses.replace(row, backward=memory_model._pool_needs(saves_input=False)),
        )
    predicted = memory_model.MemoryModel(model).training_memory(plan)
    with pytest.raises(AssertionError):
        assert_same_training(predicted, Trainer(model, plan))


# -- the C structs ------------------------------------------------------------------------

_M4_FLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]


@pytest.mark.parametrize(
    "compiler,flags",
    [("gcc", []), pytest.param("arm-none-eabi-gcc", _M4_FLAGS, marks=pytest.mark.firmware)],
    ids=["host", "cortex-m4"],
)
def test_struct_sizes_match_the_c_compilers(tmp_path, compiler, flags):
    """One translation unit per defining file, each asserting the sizes
    the model assumes (struct definitions private to a .c file are reached
    by including that file)."""
    assert shutil.which(compiler), f"{compiler} is not installed: run tools/install.sh"
    by_source = {}
    for struct in memory_model.C_STRUCTS:
        by_source.setdefault(struct.source, []).append(struct)
    probes = []
    for k, (source, structs) in enumerate(sorted(by_source.items())):
        lines = [f'#include "{RUNTIME / source}"']
        lines += [f'_Static_assert(sizeof({s.name}) == {s.size}, "{s.name}");' for s in structs]
        probe = tmp_path / f"probe_{k}.c"
        probe.write_text("\n".join(lines) + "\n")
        probes.append(str(probe))
    result = subprocess.run(
        [compiler, "-std=c11", "-fsyntax-only", *flags, f"-I{RUNTIME}", *probes],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_every_registered_kernel_has_a_row():
    registry = (RUNTIME / "kernels" / "common" / "tt_kernel_registry.c").read_text()
    backward = (RUNTIME / "kernels" / "common" / "tt_backward_registry.c").read_text()
    names = {k.name for k in memory_model.KERNELS.values()}
    for name in names:
        assert f"&tt_kernel_{name.lower()}" in registry
    assert registry.count("&tt_kernel_") == len(names)
    with_backward = {k.name for k in memory_model.KERNELS.values() if k.backward}
    assert backward.count("&tt_backward_") == len(with_backward)
    for name in with_backward:
        assert f"&tt_backward_{name.lower()}" in backward
