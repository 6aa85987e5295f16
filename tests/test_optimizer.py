"""The optimizer step (tt_update_channel) and the loss math (tt_math.h,
tt_loss.h), called directly in the host library."""

import ctypes

import numpy as np
import pytest

from tflm_training import _native

F32P = ctypes.POINTER(ctypes.c_float)
TT_OK, TT_ERR_DIVERGED = 0, 8
BIAS, WEIGHTS = 0, 1


class LayerUpdate(ctypes.Structure):
    """Mirror of tt_layer_update (tt_optimizer.h)."""

    _fields_ = (
        [
            ("kind", ctypes.c_int32),
            ("num_channels", ctypes.c_int32),
            ("channels", ctypes.POINTER(ctypes.c_int32)),
            ("weights_per_channel", ctypes.c_int32),
            ("learning_rate", ctypes.c_float),
            ("momentum", ctypes.c_float),
            ("qas", ctypes.c_bool),
            ("apply", ctypes.c_bool),
            ("restored_on_failure", ctypes.c_bool),
            ("batch_scale", ctypes.c_float),
        ]
        + [
            (name, F32P)
            for name in (
                "weight_residual",
                "weight_velocity",
                "weight_accumulator",
                "bias_residual",
                "bias_velocity",
                "bias_accumulator",
            )
        ]
        + [
            ("error", ctypes.POINTER(_native.ErrorRecord)),
            ("probe", ctypes.c_bool),
            ("probe_weight_sq", F32P),
            ("probe_bias_sq", F32P),
        ]
    )


class ChannelParams(ctypes.Structure):
    """Mirror of tt_channel_params (tt_optimizer.h)."""

    _fields_ = [
        ("weights", ctypes.POINTER(ctypes.c_int8)),
        ("weight_stride", ctypes.c_int32),
        ("bias", ctypes.POINTER(ctypes.c_int32)),
        ("weight_scale", ctypes.c_float),
        ("bias_scale", ctypes.c_float),
    ]


def _ptr(array, ctype):
    return array.ctypes.data_as(ctypes.POINTER(ctype))


class Layer:
    """One channel of `n` weights (stride 2) and a bias, with its state."""

    def __init__(
        self, n=4, kind=WEIGHTS, lr=0.1, momentum=0.0, batch=1, qas=True, restored_on_failure=False
    ):
        self.weights = np.zeros(2 * n, np.int8)
        self.bias = np.zeros(1, np.int32)
        self.state = {
            name: np.zeros(n if name.startswith("weight") else 1, np.float32)
            for name, _ in LayerUpdate._fields_[10:16]
        }
        self.channels = np.array([5], np.int32)
        self.error = _native.ErrorRecord()
        self.update = LayerUpdate(
            kind,
            1,
            _ptr(self.channels, ctypes.c_int32),
            n,
            lr,
            momentum,
            qas,
            True,
            restored_on_failure,
            1.0 / batch,
        )
        for name, array in self.state.items():
            uses = (
                name.endswith("residual")
                or (momentum > 0 and name.endswith("velocity"))
                or (batch > 1 and name.endswith("accumulator"))
            )
            setattr(self.update, name, _ptr(array, ctypes.c_float) if uses else None)
        self.update.error = ctypes.pointer(self.error)
        self.batch = batch

    def step(self, weight_grad, bias_grad, scale=0.01, bias_scale=0.001, apply=True):
        self.update.apply = apply
        params = ChannelParams(
            _ptr(self.weights, ctypes.c_int8), 2, _ptr(self.bias, ctypes.c_int32), scale, bias_scale
        )
        grad = np.asarray(weight_grad, np.float32)
        return _native.library().tt_update_channel(
            ctypes.byref(self.update),
            0,
            ctypes.byref(params),
            _ptr(grad, ctypes.c_float),
            ctypes.c_float(bias_grad),
        )

    @property
    def message(self):
        return self.error.message.decode()


@pytest.fixture(scope="module", autouse=True)
def _declare():
    lib = _native.library()
    lib.tt_update_channel.restype = ctypes.c_int
    lib.tt_update_channel.argtypes = [
        ctypes.c_void_p,
        ctypes.c_int32,
        ctypes.c_void_p,
        F32P,
        ctypes.c_float,
    ]
    for name in ("tt_expf", "tt_logf"):
        getattr(lib, name).restype = ctypes.c_float
        getattr(lib, name).argtypes = [ctypes.c_float]
    lib.tt_softmax_cross_entropy.restype = ctypes.c_float
    lib.tt_softmax_cross_entropy.argtypes = [
        ctypes.c_void_p,
        ctypes.c_int32,
        ctypes.c_float,
        ctypes.c_int32,
        F32P,
    ]
    lib.tt_crc32.restype = ctypes.c_uint32
    lib.tt_crc32.argtypes = [ctypes.c_char_p, ctypes.c_uint32]


def test_qas_divides_by_the_scale_and_no_qas_multiplies():
    grads, scale = [0.1, -0.2, 0.05, 0.0], 0.01
    on, off = Layer(lr=0.001, qas=True), Layer(lr=0.001, qas=False)
    assert on.step(grads, 0.3, scale) == TT_OK and off.step(grads, 0.3, scale) == TT_OK
    np.testing.assert_allclose(
        on.state["weight_residual"], -0.001 * np.float32(grads) / scale, rtol=1e-6
    )
    np.testing.assert_allclose(
        off.state["weight_residual"], on.state["weight_residual"] * scale**2, rtol=1e-5
    )
    np.testing.assert_allclose(
        off.state["bias_residual"], on.state["bias_residual"] * 0.001**2, rtol=1e-5
    )


def test_whole_steps_move_into_the_integers_and_the_rest_stays_in_the_residual():
    layer = Layer(lr=1.0)
    # QAS: r = -lr * g / s
    assert (
        layer.step([0.013, -0.026, 0.004, -0.0149], -0.0017, scale=0.01, bias_scale=0.001) == TT_OK
    )
    np.testing.assert_array_equal(layer.weights[::2], [-1, 3, 0, 1])
    np.testing.assert_array_equal(layer.weights[1::2], 0)  # the stride is respected
    np.testing.assert_allclose(layer.state["weight_residual"], [-0.3, -0.4, -0.4, 0.49], atol=1e-5)
    assert layer.bias[0] == 2 and layer.state["bias_residual"][0] == pytest.approx(-0.3, abs=1e-5)
    assert np.all(np.abs(layer.state["weight_residual"]) <= 0.5)


def test_integers_saturate():
    layer = Layer(lr=1.0)
    layer.weights[:] = [120, 0, -120, 0, 0, 0, 0, 0]
    layer.bias[0] = 2**31 - 5
    assert layer.step([-1.0, 1.0, -1e6, 1e6], -1.0, scale=0.01, bias_scale=0.1) == TT_OK
    np.testing.assert_array_equal(layer.weights[::2], [127, -127, 127, -127])
    assert layer.bias[0] == 2**31 - 1


def test_momentum_and_batch_accumulation():
    layer = Layer(lr=0.01, momentum=0.5, batch=2)
    assert layer.step([1.0] * 4, 1.0, scale=1.0, bias_scale=1.0, apply=False) == TT_OK
    np.testing.assert_array_equal(layer.state["weight_accumulator"], 1.0)
    assert not layer.state["weight_residual"].any()
    assert layer.step([3.0] * 4, 3.0, scale=1.0, bias_scale=1.0, apply=True) == TT_OK
    np.testing.assert_array_equal(layer.state["weight_accumulator"], 0.0)
    np.testing.assert_allclose(layer.state["weight_velocity"], 2.0)  # mean of 1 and 3
    np.testing.assert_allclose(layer.state["weight_residual"], -0.02)
    layer.step([0.0] * 4, 0.0, scale=1.0, bias_scale=1.0, apply=False)
    layer.step([0.0] * 4, 0.0, scale=1.0, bias_scale=1.0, apply=True)
    np.testing.assert_allclose(layer.state["weight_velocity"], 1.0)
    np.testing.assert_allclose(layer.state["weight_residual"], -0.03)


def test_bias_only_leaves_the_weights_alone():
    layer = Layer(kind=BIAS, lr=1.0)
    assert layer.step([1e30] * 4, -0.01, scale=0.01, bias_scale=0.001) == TT_OK
    assert not layer.weights.any() and layer.bias[0] == 10


@pytest.mark.parametrize(
    "weight_grad, bias_grad, lr",
    [
        ([0.1, float("nan"), 0.0, 0.0], 0.0, 0.1),
        ([0.1, 0.0, 0.0, 0.0], float("inf"), 0.1),
        ([0.1, 0.0, 0.0, 0.0], 0.0, 3e38),  # the step overflows
    ],
)
def test_nan_or_infinity_diverges_and_leaves_the_channel_untouched(weight_grad, bias_grad, lr):
    layer = Layer(lr=lr, momentum=0.9)
    layer.weights[:] = 7
    layer.state["weight_residual"][:] = 0.25
    assert layer.step(weight_grad, bias_grad) == TT_ERR_DIVERGED
    assert "output channel 5 is NaN or infinite; lower the learning rate" in layer.message
    assert np.all(layer.weights == 7) and layer.bias[0] == 0
    assert np.all(layer.state["weight_residual"] == 0.25)
    assert not layer.state["weight_velocity"].any() and not layer.state["bias_residual"].any()


def test_exp_and_log_are_accurate_and_handle_the_edges():
    lib = _native.library()
    xs = np.concatenate([np.linspace(-87, 88, 20001), [0.0, 1e-8, -1e-8, 0.5, -0.5]])
    got = np.array([lib.tt_expf(float(np.float32(x))) for x in xs], np.float64)
    want = np.exp(np.float32(xs).astype(np.float64))
    assert np.max(np.abs(got - want) / want) < 4e-7
    assert lib.tt_expf(89.0) == float("inf") and lib.tt_expf(-88.0) == 0.0
    ys = np.concatenate([np.geomspace(1e-37, 3e38, 20001), [1.0, 0.5, 2.0, 1.5e-45]])
    got = np.array([lib.tt_logf(float(np.float32(y))) for y in ys], np.float64)
    want = np.log(np.float32(ys).astype(np.float64))
    assert np.max(np.abs(got - want) / np.maximum(np.abs(want), 1.0)) < 4e-7
    assert lib.tt_logf(1.0) == 0.0 and lib.tt_logf(0.0) == float("-inf")
    assert np.isnan(lib.tt_logf(-1.0))


def test_softmax_cross_entropy_matches_numpy():
    lib = _native.library()
    rng = np.random.default_rng(3)
    for _ in range(50):
        n = int(rng.integers(2, 50))
        q = rng.integers(-128, 128, n).astype(np.int8)
        scale, label = float(np.float32(rng.uniform(0.001, 0.5))), int(rng.integers(n))
        grad = np.zeros(n, np.float32)
        loss = lib.tt_softmax_cross_entropy(
            q.ctypes.data, n, scale, label, _ptr(grad, ctypes.c_float)
        )
        z = scale * q.astype(np.float64)
        p = np.exp(z - z.max())
        p /= p.sum()
        assert loss == pytest.approx(-np.log(p[label]), rel=1e-5, abs=1e-6)
        p[label] -= 1
        np.testing.assert_allclose(grad, p, atol=1e-6)


def test_crc32_equals_zlib():
    import zlib

    lib = _native.library()
    for data in (b"", b"a", bytes(range(256)) * 3):
        assert lib.tt_crc32(data, len(data)) == zlib.crc32(data)


@pytest.mark.parametrize("momentum,batch", [(0.0, 1), (0.9, 1), (0.9, 3)])
def test_one_pass_update_gives_the_two_pass_bits(momentum, batch):
    """With restored_on_failure (the trainer's undo buffer) a channel is
    updated in one pass; the values are the same bits."""
    rng = np.random.default_rng(7)
    layers = [
        Layer(n=64, lr=0.3, momentum=momentum, batch=batch, restored_on_failure=flag)
        for flag in (False, True)
    ]
    for step in range(12):
        grads = rng.normal(0, 2.0, 64).astype(np.float32)
        bias_grad = float(rng.normal(0, 0.1))
        apply = (step + 1) % batch == 0
        assert [layer.step(grads, bias_grad, apply=apply) for layer in layers] == [TT_OK, TT_OK]
    two_pass, one_pass = layers
    assert np.array_equal(two_pass.weights, one_pass.weights) and two_pass.weights.any()
    assert np.array_equal(two_pass.bias, one_pass.bias)
    for name, values in two_pass.state.items():
        assert values.tobytes() == one_pass.state[name].tobytes(), name


def test_one_pass_update_reports_a_divergence():
    layer = Layer(n=4, restored_on_failure=True)
    assert layer.step([1.0, np.inf, 1.0, 1.0], 0.0) == TT_ERR_DIVERGED
    assert "diverged" in layer.message
