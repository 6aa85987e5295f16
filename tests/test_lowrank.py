"""Low-rank gradient projection with Adam (runtime/optimizer/tt_lowrank.h): the
correctly rounded square root, the math called directly in the host
library, and low-rank layers in the Trainer (plans, memory, training).

tt_sqrtf was also compared with glibc's sqrtf (the SSE instruction) over all
2^32 float32 bit patterns when it was written: no difference. The test here
takes a large sample against numpy's float32 sqrt.
"""

import ctypes
import pathlib
import struct
import subprocess

import numpy as np
import pytest

import training_helpers as th
from tflm_training import (
    Interpreter,
    Trainer,
    TrainingPlan,
    _native,
    host_build,
    memory_model,
    tflite_graph,
)
from tflm_training.errors import BadPlanError, DivergedError
from tflm_training.plan import LayerPlan, lowrank_state_bytes
from tools import board_config, firmware_build

TESTS = pathlib.Path(__file__).resolve().parent
TRANSFER = th.TRANSFER_MODEL
F32P = ctypes.POINTER(ctypes.c_float)
U = 2.0**-24  # float32 unit roundoff
HEADER_WORDS = 8


class Adam(ctypes.Structure):
    """Mirror of tt_lowrank_adam (tt_lowrank.h)."""

    _fields_ = [
        (name, ctypes.c_float)
        for name in ("learning_rate", "beta1", "beta2", "epsilon", "batch_scale")
    ]


def _lib():
    lib = _native.library()
    vp, i32 = ctypes.c_void_p, ctypes.c_int32
    signatures = {
        "tt_lowrank_state_bytes": (ctypes.c_uint64, [i32, i32, i32]),
        "tt_lowrank_init": (None, [vp, i32, i32, i32, i32, ctypes.c_uint32]),
        "tt_lowrank_refreshing": (ctypes.c_bool, [vp]),
        "tt_lowrank_accumulate": (ctypes.c_bool, [vp, i32, F32P, ctypes.c_float, ctypes.c_bool]),
        "tt_lowrank_apply": (ctypes.c_bool, [vp, ctypes.POINTER(Adam), vp, i32, F32P]),
        "tt_lowrank_discard": (None, [vp]),
        "tt_lowrank_orthonormalize": (ctypes.c_bool, [F32P, i32, i32, F32P]),
    }
    for name, (restype, argtypes) in signatures.items():
        getattr(lib, name).restype = restype
        getattr(lib, name).argtypes = argtypes
    return lib


def _f32p(array):
    return array.ctypes.data_as(F32P)


class State:
    """A low-rank state block in a numpy buffer, with views of its arrays."""

    def __init__(self, rows, cols, rank, refresh_steps=1, seed=1):
        self.lib = _lib()
        size = self.lib.tt_lowrank_state_bytes(rows, cols, rank)
        assert size == 32 + 4 * (2 * rows * rank + 4 * rank * cols)
        self.buffer = np.zeros(size // 4, np.float32)
        self.lib.tt_lowrank_init(self.buffer.ctypes.data, rows, cols, rank, refresh_steps, seed)
        self.rows, self.cols, self.rank = rows, cols, rank
        arrays, cr, rd = self.buffer[HEADER_WORDS:], rows * rank, rank * cols
        self.p = arrays[:cr].reshape(rows, rank)
        self.y = arrays[cr : 2 * cr].reshape(rows, rank)
        self.r, self.r_prev, self.m, self.v = (
            arrays[2 * cr + i * rd : 2 * cr + (i + 1) * rd].reshape(rank, cols) for i in range(4)
        )

    @property
    def header(self):
        words = self.buffer[:HEADER_WORDS]
        ints = words.view(np.int32)
        return {
            "rows": ints[0],
            "cols": ints[1],
            "rank": ints[2],
            "refresh_steps": ints[3],
            "updates": words.view(np.uint32)[4],
            "seed": words.view(np.uint32)[5],
            "beta1_power": words[6],
            "beta2_power": words[7],
        }

    def accumulate(self, grad, scales, qas=True):
        """Every row of a real-valued C x D gradient, one channel at a time."""
        for c in range(self.rows):
            row = np.ascontiguousarray(grad[c], np.float32)
            assert self.lib.tt_lowrank_accumulate(
                self.buffer.ctypes.data, c, _f32p(row), float(scales[c]), qas
            )

    def apply(self, weights, residual, lr, beta1=0.9, beta2=0.999, epsilon=1e-8, batch_scale=1.0):
        adam = Adam(lr, beta1, beta2, epsilon, batch_scale)
        return self.lib.tt_lowrank_apply(
            self.buffer.ctypes.data,
            ctypes.byref(adam),
            weights.ctypes.data,
            weights.shape[1],
            None if residual is None else _f32p(residual),
        )


# -- the square root ---------------------------------------------------------------


@pytest.fixture(scope="module")
def sqrt_sample(tmp_path_factory):
    """sqrt_sample() of tests/lowrank/sqrt_sample.c with runtime/math/tt_sqrt.c,
    built with the runtime's flags."""
    out = tmp_path_factory.mktemp("sqrt") / "libsqrt_sample.so"
    flags = [f for f in host_build.COMMON_FLAGS]
    subprocess.run(
        [
            "gcc",
            *flags,
            f"-I{host_build.RUNTIME}",
            "-o",
            str(out),
            str(TESTS / "lowrank" / "sqrt_sample.c"),
            str(host_build.RUNTIME / "math" / "tt_sqrt.c"),
        ],
        check=True,
    )
    lib = ctypes.CDLL(str(out))
    lib.sqrt_sample.restype = None
    lib.sqrt_sample.argtypes = [F32P, F32P, ctypes.c_size_t]

    def run(values):
        values = np.ascontiguousarray(values, np.float32)
        result = np.empty_like(values)
        lib.sqrt_sample(_f32p(values), _f32p(result), values.size)
        return result

    return run


def _sqrt_inputs():
    """A stride through every positive float32 bit pattern, every exponent's
    first and last 256 mantissas, random bits, and the special values."""
    stride = np.arange(0, 0x7F800000, 251, dtype=np.uint64).astype(np.uint32)
    exponents = np.arange(256, dtype=np.uint32) << 23
    edges = np.concatenate(
        [
            exponents[:, None] + np.arange(256, dtype=np.uint32),
            exponents[:, None] + (0x7FFFFF - np.arange(256, dtype=np.uint32)),
        ]
    )
    rng = np.random.default_rng(0)
    random = rng.integers(0, 2**32, 1 << 20, dtype=np.uint64).astype(np.uint32)
    specials = np.array(
        [
            0,
            0x80000000,
            1,
            0x7F7FFFFF,
            0x7F800000,
            0xFF800000,
            0x7FC00000,
            0xFFC00000,
            0x7F800001,
            0x3F800000,
            0xBF800000,
            0x00800000,
        ],
        dtype=np.uint32,
    )
    return np.concatenate([stride, edges.ravel(), random, specials]).view(np.float32)


@pytest.mark.slow
def test_sqrt_is_correctly_rounded_over_a_large_sample(sqrt_sample):
    x = _sqrt_inputs()
    assert x.size > 9_000_000
    got = sqrt_sample(x)
    with np.errstate(invalid="ignore"):
        expected = np.sqrt(x)
    nan = np.isnan(expected)
    assert np.array_equal(np.isnan(got), nan)
    mismatch = np.flatnonzero(got[~nan].view(np.uint32) != expected[~nan].view(np.uint32))
    assert mismatch.size == 0, [
        (hex(v), g, e)
        for v, g, e in zip(
            x[~nan][mismatch[:5]].view(np.uint32),
            got[~nan][mismatch[:5]],
            expected[~nan][mismatch[:5]],
        )
    ]
    # The signs of zero and the special values.
    special = sqrt_sample(np.array([0.0, -0.0, np.inf, -1.0, -np.inf, np.nan], np.float32))
    assert special[:3].view(np.uint32).tolist() == [0, 0x80000000, 0x7F800000]
    assert np.all(np.isnan(special[3:]))


@pytest.mark.parametrize(
    "compiler, nm, flags",
    [
        ("gcc", "nm", []),
        pytest.param(
            firmware_build.GCC,
            "arm-none-eabi-nm",
            board_config.load_board("nrf52840").cpu_flags + firmware_build.C_FLAGS,
            marks=pytest.mark.firmware,
        ),
    ],
)
def test_sqrt_calls_nothing_on_the_host_or_the_cortex_m4(tmp_path, compiler, nm, flags):
    """The object file of tt_sqrt.c, built with the host library's and the
    firmware's flags, needs no symbol at all: no libm, no libgcc helper, no
    sqrt instruction's library fallback (memcpy is inlined)."""
    out = tmp_path / "tt_sqrt.o"
    subprocess.run(
        [
            compiler,
            *flags,
            "-std=c11",
            "-O2",
            "-fwrapv",
            "-ffp-contract=off",
            "-c",
            f"-I{host_build.RUNTIME}",
            "-o",
            str(out),
            str(host_build.RUNTIME / "math" / "tt_sqrt.c"),
        ],
        check=True,
    )
    symbols = subprocess.run(
        [nm, "-u", str(out)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert symbols == []


# -- the math, called directly ---------------------------------------------------


def test_state_size_and_rank_limits():
    lib = _lib()
    assert lib.tt_lowrank_state_bytes(10, 64, 4) == 32 + 4 * (2 * 10 * 4 + 4 * 4 * 64)
    for rows, cols, rank in [(10, 64, 0), (10, 64, 11), (64, 10, 11), (0, 5, 1), (5, 0, 1)]:
        assert lib.tt_lowrank_state_bytes(rows, cols, rank) == 2**64 - 1


@pytest.mark.parametrize("rows,rank", [(12, 4), (7, 7), (48, 8), (3, 1)])
def test_the_initial_projector_is_orthonormal_and_seeded(rows, rank):
    a, b, c = (
        State(rows, 20, rank, seed=5),
        State(rows, 20, rank, seed=5),
        State(rows, 20, rank, seed=6),
    )
    p = a.p.astype(np.float64)
    np.testing.assert_allclose(p.T @ p, np.eye(rank), atol=1e-6)
    assert np.array_equal(a.buffer, b.buffer) and not np.array_equal(a.p, c.p)
    header = a.header
    assert (header["rows"], header["cols"], header["rank"], header["updates"]) == (
        rows,
        20,
        rank,
        0,
    )
    assert header["beta1_power"] == header["beta2_power"] == 1.0
    assert not a.y.any() and not a.r.any() and not a.m.any() and not a.v.any()


def test_orthonormalize_replaces_dependent_columns():
    lib = _lib()
    y = np.zeros((6, 3), np.float32)
    y[:, 0] = [1, 2, 0, 0, 0, 0]
    y[:, 1] = 2 * y[:, 0]  # dependent: the fallback column stands in
    fallback = np.zeros((6, 3), np.float32)
    fallback[:, 1] = [0, 0, 1, 0, 0, 0]
    fallback[:, 2] = [1, 2, 0, 0, 0, 0]  # dependent too: a unit vector stands in
    assert lib.tt_lowrank_orthonormalize(_f32p(y), 6, 3, _f32p(fallback))
    q = y.astype(np.float64)
    np.testing.assert_allclose(q.T @ q, np.eye(3), atol=1e-6)
    np.testing.assert_allclose(
        np.abs(q[:, 0]), np.array([1, 2, 0, 0, 0, 0]) / np.sqrt(5), atol=1e-7
    )
    np.testing.assert_allclose(q[:, 1], [0, 0, 1, 0, 0, 0], atol=1e-7)
    # e_0 minus its part along column 0.
    assert abs(q[0, 2]) > 0.5 and q[2:, 2].tolist() == [0, 0, 0, 0]


def _adam_reference(m, v, g, t, beta1, beta2, epsilon):
    """One bias-corrected Adam step in float64: (m, v, step n)."""
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    n = (m / (1 - beta1**t)) / (np.sqrt(v / (1 - beta2**t)) + epsilon)
    return m, v, n


@pytest.mark.parametrize("qas", [True, False])
def test_full_rank_with_the_identity_projector_is_adam_on_the_full_gradient(qas):
    """rank = C <= D and P = I (never refreshed): each update equals float64
    Adam on the whole quantized-domain gradient, to within the error of the
    float32 arithmetic, derived per step from the state before it (u = 2^-24):

      g = G / s (QAS) or G s: relative error u (the accumulation into R
          adds exact zeros for the other rows of P);
      M' = b1 M + (1 - b1) g: absolute error <= 3u (|b1 M| + |(1 - b1) g|)
          + the error of g;
      V' (terms >= 0): relative error <= 4u + 2 (error of g);
      c_i = 1 - b_i^t, b_i^t a running float32 product (relative error
          (t - 1) u): relative error e_i <= (t - 1) u b_i^t / c_i + u (the
          cancellation in 1 - b2^t dominates early on);
      n = M'/c1 / (sqrt(V'/c2) + eps): |dn| <= |dM'| / c1 / (sqrt(V'/c2)
          + eps) + |n| (e1 + u + (relative error of V' + e2 + u) / 2 + 3u);
      the weight moves by -lr n into residual + weight: error <= u (0.5 +
          lr |n|) for the rounding of residual - lr n, plus lr |dn|.
    The tolerance used is twice that bound."""
    rows, cols, steps = 5, 8, 12
    # The values the float32 fields hold.
    beta1, beta2, epsilon, lr = (float(np.float32(x)) for x in (0.9, 0.999, 1e-8, 0.3))
    rng = np.random.default_rng(1)
    state = State(rows, cols, rows, refresh_steps=1_000_000)
    state.p[:] = np.eye(rows, dtype=np.float32)
    scales = rng.uniform(0.002, 0.05, rows).astype(np.float32)
    weights = np.zeros((rows, cols), np.int8)
    residual = np.zeros((rows, cols), np.float32)
    for t in range(1, steps + 1):
        grad = (rng.standard_normal((rows, cols)) * 0.01).astype(np.float32)
        m, v = state.m.astype(np.float64), state.v.astype(np.float64)
        g = (
            grad.astype(np.float64) / scales[:, None]
            if qas
            else (grad.astype(np.float64) * scales[:, None])
        )
        m_ref, v_ref, n_ref = _adam_reference(m, v, g, t, beta1, beta2, epsilon)
        before = weights.astype(np.float64) + residual
        state.accumulate(grad, scales, qas)
        assert state.apply(weights, residual, lr, beta1, beta2, epsilon)
        moved = weights.astype(np.float64) + residual - before

        c1, c2 = 1 - beta1**t, 1 - beta2**t
        e1 = (t - 1) * U * beta1**t / c1 + U
        e2 = (t - 1) * U * beta2**t / c2 + U
        err_g = U * np.abs(g)
        err_m = 3 * U * (np.abs(beta1 * m) + np.abs((1 - beta1) * g)) + (1 - beta1) * err_g
        rel_v = 4 * U + 2 * err_g / np.maximum(np.abs(g), 1e-300)
        denominator = np.sqrt(v_ref / c2) + epsilon
        err_n = err_m / c1 / denominator + np.abs(n_ref) * (e1 + U + (rel_v + e2 + U) / 2 + 3 * U)
        tolerance = 2 * (U * (0.5 + lr * np.abs(n_ref)) + lr * err_n)
        assert np.all(np.abs(state.m - m_ref) <= 2 * err_m + 1e-300)
        assert np.all(np.abs(state.v - v_ref) <= 2 * rel_v * v_ref + 1e-300)
        assert np.all(np.abs(moved + lr * n_ref) <= tolerance), t
        assert np.max(tolerance) < 1e-4  # the bound is tight, not vacuous
        assert state.header["updates"] == t
    np.testing.assert_array_equal(state.p, np.eye(rows))  # never refreshed
    assert np.abs(weights).max() > 0 and np.all(np.abs(residual) <= 0.5)


def test_a_general_projector_runs_adam_on_the_projected_gradient():
    """P fixed and not the identity: the update is P adam(P^T G_q)."""
    rows, cols, rank, lr = 9, 6, 3, 0.5
    rng = np.random.default_rng(2)
    state = State(rows, cols, rank, refresh_steps=1_000_000, seed=3)
    p = state.p.astype(np.float64)
    scales = np.full(rows, 0.01, np.float32)
    weights = np.zeros((rows, cols), np.int8)
    residual = np.zeros((rows, cols), np.float32)
    m = v = np.zeros((rank, cols))
    total = np.zeros((rows, cols))
    for t in range(1, 6):
        grad = (rng.standard_normal((rows, cols)) * 0.01).astype(np.float32)
        g = grad.astype(np.float64) / scales[:, None].astype(np.float64)
        settings = (float(np.float32(x)) for x in (0.9, 0.999, 1e-8))
        m, v, n = _adam_reference(m, v, p.T @ g, t, *settings)
        total -= lr * p @ n
        state.accumulate(grad, scales)
        assert state.apply(weights, residual, lr)
    np.testing.assert_allclose(weights + residual.astype(np.float64), total, atol=1e-4)
    np.testing.assert_allclose(state.m, m, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("refresh_steps", [1, 3])
def test_refreshes_find_the_column_space_of_an_exact_rank_r_gradient_stream(refresh_steps):
    """G_t = U S_t with U fixed (C x r): from the first refresh (update
    K + 1) on, P spans U (principal angles ~0), starting from a random P."""
    rows, cols, rank = 24, 16, 3
    rng = np.random.default_rng(3)
    u, _ = np.linalg.qr(rng.standard_normal((rows, rank)))
    state = State(rows, cols, rank, refresh_steps=refresh_steps, seed=9)
    weights = np.zeros((rows, cols), np.int8)
    residual = np.zeros((rows, cols), np.float32)
    scales = np.ones(rows, np.float32)

    def cosines():
        return np.linalg.svd(u.T @ state.p.astype(np.float64), compute_uv=False)

    assert cosines().min() < 0.9  # a random start
    refreshed_at = []
    for update in range(8):
        refreshing = state.lib.tt_lowrank_refreshing(state.buffer.ctypes.data)
        assert refreshing == (update >= 1 and update % refresh_steps == 0)
        grad = (u @ rng.standard_normal((rank, cols))).astype(np.float32)
        state.accumulate(grad, scales)
        assert state.apply(weights, residual, 1e-3)
        if refreshing:
            refreshed_at.append(update)
        if refreshed_at:
            np.testing.assert_allclose(cosines(), 1.0, atol=1e-5)
        p = state.p.astype(np.float64)
        np.testing.assert_allclose(p.T @ p, np.eye(rank), atol=1e-5)
    assert refreshed_at[0] == refresh_steps


def test_a_rank_one_gradient_refreshes_one_direction_and_keeps_the_rest():
    rows, cols, rank = 10, 7, 3
    rng = np.random.default_rng(4)
    u = rng.standard_normal(rows)
    state = State(rows, cols, rank, refresh_steps=1)
    old = state.p.astype(np.float64).copy()
    weights = np.zeros((rows, cols), np.int8)
    residual = np.zeros((rows, cols), np.float32)
    for _ in range(2):
        grad = np.outer(u, rng.standard_normal(cols)).astype(np.float32)
        state.accumulate(grad, np.ones(rows, np.float32))
        assert state.apply(weights, residual, 1e-3)
    p = state.p.astype(np.float64)
    np.testing.assert_allclose(p.T @ p, np.eye(rank), atol=1e-5)
    np.testing.assert_allclose(abs(p[:, 0] @ u) / np.linalg.norm(u), 1.0, atol=1e-6)
    # The other two columns lie in the span of the old P and u.
    basis, _ = np.linalg.qr(np.column_stack([old, u]))
    np.testing.assert_allclose(np.linalg.norm(basis.T @ p[:, 1:], axis=0), 1.0, atol=1e-5)


def test_non_finite_gradients_and_steps_change_nothing():
    state = State(4, 5, 2)
    grad = np.ones(5, np.float32)
    grad[3] = np.nan
    before = state.buffer.copy()
    assert not state.lib.tt_lowrank_accumulate(state.buffer.ctypes.data, 0, _f32p(grad), 1.0, True)
    assert np.array_equal(state.buffer, before, equal_nan=True)
    state.accumulate(np.full((4, 5), 3e38, np.float32), np.ones(4, np.float32))
    weights = np.zeros((4, 5), np.int8)
    residual = np.zeros((4, 5), np.float32)
    before = state.buffer.copy()
    assert not state.apply(weights, residual, 0.1)  # g * g overflows
    assert np.array_equal(state.buffer, before) and not weights.any() and not residual.any()
    state.lib.tt_lowrank_discard(state.buffer.ctypes.data)
    assert not state.r.any() and not state.y.any()


def test_without_a_residual_each_update_rounds_on_its_own_and_weights_saturate():
    state = State(3, 4, 3, refresh_steps=1_000_000)
    state.p[:] = np.eye(3, dtype=np.float32)
    weights = np.full((3, 4), 126, np.int8)
    weights[1] = -126
    grad = np.ones((3, 4), np.float32)
    grad[1] = -1
    grad[2] *= 1e-3
    state.accumulate(-grad, np.ones(3, np.float32))
    # Adam's first step is -lr sign(g): 5 steps up, -5 down, rounded.
    assert state.apply(weights, None, 5.0)
    assert weights[0].tolist() == [127] * 4 and weights[1].tolist() == [-127] * 4
    assert weights[2].tolist() == [127] * 4
    state.accumulate(-grad, np.ones(3, np.float32))
    assert state.apply(weights, None, 0.4)  # 0.4 steps: lost without a residual
    assert weights[0].tolist() == [127] * 4


# -- low-rank layers in the Trainer -------------------------------------------------


def _allocation(model, plan, what, op):
    (found,) = [
        a
        for a in memory_model.training_memory(model, plan).allocations
        if (a.what, a.index) == (what, op)
    ]
    return found


def _arena_floats(trainer, allocation, count=None):
    count = allocation.size // 4 if count is None else count
    return np.frombuffer(trainer._arena, np.float32, count, allocation.offset)


@pytest.mark.parametrize("rank", [10, 3])
def test_one_trainer_step_is_projected_adam_on_the_layer_gradient(rank):
    """mlp's logits layer (10 x 32 weights) low-rank: after one step its
    weights plus residuals moved by -lr P n, n = g / (|g| + eps) (Adam's
    first step) for g = P^T G_q, G_q the QAS gradient worked out here in
    float64 from the forward pass (softmax cross-entropy through the int8
    logits); P is the projector the plan's seed gives; the bias moved by
    SGD with QAS."""
    model = th.model_bytes("mlp")
    graph = tflite_graph.read_graph(model)
    op = graph.operators[3]
    x_tensor, w_tensor = (graph.tensors[i] for i in op.inputs[:2])
    logits_tensor = graph.tensors[op.outputs[0]]
    lr = 0.25
    plan = TrainingPlan.lowrank(model, {3: rank}, refresh_steps=1, learning_rate=lr, seed=77)
    trainer = Trainer(model, plan)
    block = _allocation(model, plan, "low-rank state", 3)
    assert block.size == lowrank_state_bytes(10, 32, rank)
    p = _arena_floats(trainer, block)[HEADER_WORDS : HEADER_WORDS + 10 * rank].reshape(10, rank)
    p = p.astype(np.float64).copy()
    # The documented initial projector: tt_lowrank_init with the layer's seed.
    lib = _lib()
    lib.tt_lowrank_seed.restype = ctypes.c_uint32
    lib.tt_lowrank_seed.argtypes = [ctypes.c_uint32, ctypes.c_int32]
    seed = lib.tt_lowrank_seed(77, 3)
    assert seed == (77 + 0x9E3779B9 * 4) % 2**32
    np.testing.assert_array_equal(p, State(10, 32, rank, seed=seed).p)

    reference = Interpreter.from_bytes(model, preserve_all_tensors=True)
    x, y = th.quantized_split("mnist", "test", reference.get_input_details(0)["shape"], 1)
    reference.set_input(x[0:1], 0)
    reference.invoke()
    q_in = reference.get_tensor(op.inputs[0]).astype(np.float64).ravel()
    q_logits = reference.get_tensor(op.outputs[0]).astype(np.float64).ravel()
    logits = logits_tensor.scales[0] * q_logits
    softmax = np.exp(logits - logits.max())
    softmax /= softmax.sum()
    dy = softmax - np.eye(10)[int(y[0])]
    dy[(q_logits <= -128) | (q_logits >= 127)] = 0.0  # the clamp mask
    s_x, s_w = x_tensor.scales[0], w_tensor.scales[0]
    g_real = np.outer(dy, (q_in - x_tensor.zero_points[0]) * s_x)
    g_q = g_real / s_w  # QAS
    g = p.T @ g_q
    epsilon = float(np.float32(1e-8))
    n = g / (np.abs(g) + epsilon)
    expected = -lr * p @ n

    w_before = trainer.get_tensor(op.inputs[1]).astype(np.float64)
    b_before = trainer.get_tensor(op.inputs[2]).astype(np.float64)
    trainer.train_step(x[0], y[0])
    residual = _arena_floats(trainer, _allocation(model, plan, "weight residual", 3))
    moved = trainer.get_tensor(op.inputs[1]) + residual.reshape(10, 32) - w_before
    # float32 error of g (10 products summed) and its effect on n.
    err_g = 1e-6 * (np.abs(p.T) @ np.abs(g_q)) + 1e-12
    err_n = 2 * err_g / (np.abs(g) + epsilon)
    np.testing.assert_array_less(np.abs(moved - expected), lr * np.abs(p) @ err_n + 1e-5)
    assert np.abs(expected).max() > 0.05
    bias_residual = _arena_floats(trainer, _allocation(model, plan, "bias residual", 3))
    bias_moved = trainer.get_tensor(op.inputs[2]) + bias_residual - b_before
    np.testing.assert_allclose(bias_moved, -lr * dy / (s_w * s_x), rtol=1e-5, atol=1e-6)


def _transfer_case(per_class=10):
    from test_firmware_training import FSDD, TRANSFER_TRAIN, _quantized

    model = TRANSFER.read_bytes()
    return (
        model,
        _quantized(model, TRANSFER_TRAIN, "train", per_class, 0),
        _quantized(model, FSDD, "test", per_class, 0),
    )


@pytest.mark.slow
def test_low_rank_training_of_a_pointwise_conv_and_the_head_reduces_the_loss():
    """The transfer DS-CNN (new 10-class head): its last pointwise CONV_2D
    (64 x 64, rank 8) and its FULLY_CONNECTED head (10 x 64, rank 4) train
    low-rank, in batches of 2, refreshing every 5 updates."""
    model, (x, y), (x_test, y_test) = _transfer_case()
    plan = TrainingPlan.lowrank(
        model, {8: 8, 10: 4}, refresh_steps=5, learning_rate=0.5, batch_size=2
    )
    trainer = Trainer(model, plan)
    before = trainer.evaluate(x_test, y_test)
    epochs = [
        float(np.mean([trainer.train_step(x[i], y[i]) for i in range(len(y))])) for _ in range(3)
    ]
    assert epochs[-1] < 0.9 * epochs[0], epochs
    assert trainer.evaluate(x_test, y_test) >= before + 0.15
    # Both layers' weights changed, and the export carries them.
    original, exported = Interpreter.from_bytes(model), Interpreter.from_bytes(trainer.export())
    for op in (8, 10):
        weights = graph_weights(model, op)
        assert not np.array_equal(trainer.get_tensor(weights), original.get_tensor(weights))
        np.testing.assert_array_equal(exported.get_tensor(weights), trainer.get_tensor(weights))


def graph_weights(model, op):
    return tflite_graph.read_graph(model).operators[op].inputs[1]


@pytest.mark.parametrize("residual, lr", [(True, 0.5), (False, 2.0)])
def test_low_rank_layers_of_a_zeroed_mlp_learn(residual, lr):
    """mlp with its classifier zeroed: the two FULLY_CONNECTED layers after
    the first train low-rank (ranks 4 and 3), with or without float
    residuals (without, each update rounds to whole steps on its own, so it
    needs a larger rate)."""
    model = th.with_zero_classifier(th.model_bytes("mlp"))
    x, y = th.shuffled(*th.quantized_split("mnist", "train", (1, 28, 28, 1)), 0)
    plan = TrainingPlan.lowrank(
        model, {2: 4, 3: 3}, refresh_steps=3, learning_rate=lr, residual=residual
    )
    trainer = Trainer(model, plan)
    first = np.mean([trainer.train_step(x[i], y[i]) for i in range(len(y))])
    second = np.mean([trainer.train_step(x[i], y[i]) for i in range(len(y))])
    assert second < 0.85 * first, (first, second)


def _lowrank_optimizer_state(model, plan):
    """The formula: per low-rank layer (C x D weights, rank r) a residual of
    4 C D bytes (unless residual=False), the state block 32 + 4 (2 C r +
    4 r D), and the bias's SGD arrays (residual, velocity with momentum,
    accumulator with batches: 4 C bytes each); each allocation rounded up
    to 8 bytes."""
    graph = tflite_graph.read_graph(model)
    total = 0

    def align(n):
        return (n + 7) // 8 * 8

    for layer in plan.layers:
        weights = graph.tensors[graph.operators[layer.operator_index].inputs[1]]
        rows = weights.shape[0]
        cols = int(np.prod(weights.shape)) // rows
        total += align(4 * rows * cols) * plan.residual
        total += align(lowrank_state_bytes(rows, cols, layer.rank))
        arrays = int(plan.residual) + int(plan.momentum > 0) + int(plan.batch_size > 1)
        total += arrays * align(4 * rows)
    return total


@pytest.mark.parametrize(
    "settings", [{}, {"residual": False}, {"momentum": 0.9}, {"batch_size": 4, "residual": False}]
)
def test_memory_counts_the_low_rank_state_to_the_byte(settings):
    model = TRANSFER.read_bytes()
    for ranks in ({10: 4}, {8: 8, 10: 10}, {2: 1, 4: 64, 10: 2}):
        plan = TrainingPlan.lowrank(model, ranks, refresh_steps=7, **settings)
        memory = Trainer(model, plan).memory()
        assert memory == memory_model.training_memory(model, plan).as_dict()
        assert memory["optimizer_state"] == _lowrank_optimizer_state(model, plan)
    # Rank 8 of a 64 x 64 layer keeps 2 r (C + D) + 32 = 2080 floats' worth
    # less than the 2 C D of full Adam moments.
    assert lowrank_state_bytes(64, 64, 8) == 32 + 4 * (2 * 64 * 8 + 4 * 8 * 64)


def _plan_bytes(model, ranks, **settings):
    return TrainingPlan.lowrank(model, ranks, refresh_steps=3, **settings).to_bytes()


def _layer_field(layer, field):
    return 80 + 32 * layer + 4 * field


def _c_rejects(model, data, message):
    with pytest.raises(BadPlanError, match=message):
        Trainer(model, data)


@pytest.mark.parametrize(
    "layer, field, fmt, value, message",
    [
        (
            0,
            5,
            "<i",
            0,
            "layer 0: rank 0 must be between 1 and 32, the smaller of operator 2's 32 "
            "output channels and 64 weights per channel",
        ),
        (0, 5, "<i", 33, "layer 0: rank 33 must be between 1 and 32"),
        (1, 5, "<i", 11, "layer 1: rank 11 must be between 1 and 10"),
        (1, 6, "<i", 0, "layer 1: refresh_steps 0 must be at least 1"),
        (1, 6, "<i", -4, "layer 1: refresh_steps -4 must be at least 1"),
    ],
)
def test_c_refuses_bad_low_rank_layers(layer, field, fmt, value, message):
    model = th.model_bytes("mlp")
    data = _plan_bytes(model, {2: 4, 3: 3})
    Trainer(model, data)
    _c_rejects(model, th.patched_plan(data, _layer_field(layer, field), fmt, value), message)


@pytest.mark.parametrize(
    "offset, value, message",
    [
        (68, 1.0, r"adam_beta1 and adam_beta2 must be in \[0, 1\)"),
        (68, -0.1, r"adam_beta1 and adam_beta2 must be in \[0, 1\)"),
        (72, float("nan"), r"adam_beta1 and adam_beta2 must be in \[0, 1\)"),
        (76, 0.0, "adam_epsilon must be a positive finite number"),
        (76, float("inf"), "adam_epsilon must be a positive finite number"),
    ],
)
def test_c_refuses_bad_adam_settings(offset, value, message):
    model = th.model_bytes("mlp")
    data = _plan_bytes(model, {3: 3})
    _c_rejects(model, th.patched_plan(data, offset, "<f", value), message)


def _as_lowrank(data, layer, rank):
    """A weights plan's layer turned low-rank behind Python's back, with
    the Adam settings a low-rank plan needs."""
    for offset, fmt, value in [
        (_layer_field(layer, 1), "<i", 3),
        (_layer_field(layer, 5), "<i", rank),
        (_layer_field(layer, 6), "<i", 1),
        (68, "<f", 0.9),
        (72, "<f", 0.999),
        (76, "<f", 1e-8),
    ]:
        data = th.patched_plan(data, offset, fmt, value)
    return data


def test_c_refuses_low_rank_on_depthwise_and_non_pointwise_layers_and_channel_subsets():
    model = TRANSFER.read_bytes()
    data = TrainingPlan.for_model(model, {0: None, 1: None, 10: None}).to_bytes()
    _c_rejects(
        model,
        _as_lowrank(data, 1, 4),
        r"layer 1: operator 1 is DEPTHWISE_CONV_2D; low-rank updates \(kind 3\) train "
        r"only FULLY_CONNECTED and pointwise \(1x1\) CONV_2D layers, so train it with "
        r"kind 1 \(weights\)",
    )
    _c_rejects(
        model,
        _as_lowrank(data, 0, 1),
        r"layer 0: operator 0 \(CONV_2D\) has a 10x4 filter; low-rank updates",
    )
    Trainer(model, _as_lowrank(data, 2, 4))  # the head is fine
    subset = TrainingPlan.for_model(model, {10: range(6)}).to_bytes()
    _c_rejects(
        model,
        _as_lowrank(subset, 0, 2),
        r"layer 0: a low-rank layer trains all 10 output channels of operator 10 "
        r"\(FULLY_CONNECTED\), but 6 are listed; list them all",
    )


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda m: TrainingPlan.lowrank(m, {1: 4}),
            "is not FULLY_CONNECTED or a pointwise CONV_2D",
        ),
        (lambda m: TrainingPlan.lowrank(m, {0: 4}), "has a 10x4 filter; 'lowrank' trains only"),
        (lambda m: TrainingPlan.lowrank(m, {10: 11}), "rank 11 must be between 1 and 10"),
        (lambda m: TrainingPlan.lowrank(m, {10: 0}), "rank must be an int >= 1"),
        (lambda m: TrainingPlan.lowrank(m, {10: 2.5}), "rank must be an int >= 1"),
        (
            lambda m: TrainingPlan.lowrank(m, {10: 2}, refresh_steps=0),
            "refresh_steps must be an int >= 1",
        ),
        (
            lambda m: TrainingPlan.for_model(
                m, [LayerPlan(10, "lowrank", range(5), rank=2, refresh_steps=1)]
            ),
            "trains all 10 output channels of operator 10",
        ),
        (
            lambda m: TrainingPlan.lowrank(m, {10: 2}, adam_beta1=1.0),
            r"adam_beta1 and adam_beta2 must be in \[0, 1\)",
        ),
        (
            lambda m: TrainingPlan.lowrank(m, {10: 2}, adam_epsilon=0.0),
            "adam_epsilon must be a positive finite number",
        ),
        (
            lambda m: TrainingPlan.lowrank(m, {10: 2}, static={10: None}),
            "operator 10 is both low-rank and static",
        ),
    ],
)
def test_python_refuses_bad_low_rank_plans(make, message):
    with pytest.raises(ValueError, match=message):
        make(TRANSFER.read_bytes())


def test_plans_round_trip_and_mix_low_rank_with_static_layers():
    model = TRANSFER.read_bytes()
    plan = TrainingPlan.lowrank(
        model, {8: 8}, refresh_steps=4, static={10: None}, adam_beta2=0.99, seed=3
    )
    assert [
        (layer.operator_index, layer.update, layer.rank, layer.refresh_steps)
        for layer in plan.layers
    ] == [(8, "lowrank", 8, 4), (10, "weights", 0, 0)]
    assert plan.layers[0].channels == list(range(64))
    assert (plan.adam_beta1, plan.adam_beta2, plan.adam_epsilon) == (
        pytest.approx(0.9),
        pytest.approx(0.99),
        pytest.approx(1e-8),
    )
    again = TrainingPlan.from_bytes(plan.to_bytes())
    assert again == plan
    assert struct.unpack_from("<3f", plan.to_bytes(), 68) == (
        np.float32(0.9),
        np.float32(0.99),
        np.float32(1e-8),
    )
    trainer = Trainer(model, plan)
    assert trainer.parameter_tensors == sorted(
        set(tflite_graph.read_graph(model).operators[8].inputs[1:])
        | set(tflite_graph.read_graph(model).operators[10].inputs[1:])
    )


def test_an_adam_step_out_of_range_is_refused_and_drops_the_batch():
    model, (x, y), _ = _transfer_case(1)
    plan = TrainingPlan.lowrank(model, {10: 4}, learning_rate=1e30)
    trainer = Trainer(model, plan)
    weights = graph_weights(model, 10)
    before = trainer.get_tensor(weights).copy()
    message = r"operator 10 \(FULLY_CONNECTED\).*low-rank Adam step is NaN or infinite"
    with pytest.raises(DivergedError, match=message):
        trainer.train_step(x[0], y[0])
    np.testing.assert_array_equal(trainer.get_tensor(weights), before)
    block = _arena_floats(trainer, _allocation(model, plan, "low-rank state", 10))
    rd, cr = 4 * 64, 10 * 4
    assert not block[HEADER_WORDS + cr : HEADER_WORDS + 2 * cr + rd].any()  # Y and R dropped
    assert block[:HEADER_WORDS].view(np.uint32)[4] == 0  # no update counted


def test_the_gradient_probe_sees_low_rank_weights_and_changes_nothing():
    model, (x, y), _ = _transfer_case(1)
    plan = TrainingPlan.lowrank(model, {10: 4})
    trainer = Trainer(model, plan)
    block = _allocation(model, plan, "low-rank state", 10)
    state = _arena_floats(trainer, block).copy()
    norms = trainer.gradient_norms(x[:3], y[:3])
    assert norms[10].shape == (10,) and np.all(norms[10] > 0)
    np.testing.assert_array_equal(_arena_floats(trainer, block), state)
