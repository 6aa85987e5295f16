"""Bit-exactness of our runtime (tflm_training) against tflite_micro.

For every model of tests/models/manifest.json (in tests/models/, ds_cnn in
examples/) and N_INPUTS real test samples of the model's dataset (from
tests/data/, or examples/), both
runtimes run the same int8 (or float32, for float_io) input and EVERY
operator output tensor must be identical (np.array_equal). A failure names
the model, the sample, and for each differing operator its index, builtin
name, output tensor, how many values differ and the largest difference; the
first differing operator is the one to look at (later ones inherit its
error).

Also checked: input/output details agree with tflite_micro; the final outputs
agree on the whole committed test subset; and the models behave (accuracy on
the subset is well above chance, with either runtime), which shows the
fixtures are real trained models.

tests/conftest.py rebuilds the host library first when a runtime source is
newer than it.
"""

import json
import os
import sys

import numpy as np
import pytest

import tflm_training

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)
import golden
import training_helpers as th

MODELS_DIR = os.path.join(TESTS_DIR, "models")
N_INPUTS = 8


def _manifest():
    with open(os.path.join(MODELS_DIR, "manifest.json")) as f:
        return json.load(f)


MANIFEST = _manifest()
# tests/models/*.tflite and ds_cnn, kept in examples/ (training_helpers).
MODEL_FILES = sorted(
    [f for f in os.listdir(MODELS_DIR) if f.endswith(".tflite")]
    + [p.name for name, p in th.EXAMPLE_MODELS.items() if "/" not in name]
)
MODEL_NAMES = [f[: -len(".tflite")] for f in MODEL_FILES]

_cache = {}


def _model_bytes(name):
    key = ("bytes", name)
    if key not in _cache:
        _cache[key] = th.model_bytes(name)
    return _cache[key]


def _dataset(name):
    key = ("data", name)
    if key not in _cache:
        _cache[key] = dict(np.load(th.data_path(name)))
    return _cache[key]


def _golden(name):
    key = ("golden", name)
    if key not in _cache:
        _cache[key] = golden.GoldenModel(_model_bytes(name))
    return _cache[key]


def _sample_indices(n_test):
    """N_INPUTS indices spread over the (class-balanced) test subset."""
    return np.unique(np.linspace(0, n_test - 1, N_INPUTS).round().astype(int))


def _test_inputs(name):
    """([model input array per test sample], labels) of the model's test subset."""
    key = ("inputs", name)
    if key not in _cache:
        data = _dataset(MANIFEST["models"][name]["dataset"])
        details = _golden(name).input_details(0)
        xs = [
            golden.prepare_input(data["x_test"][k : k + 1], details)
            for k in range(len(data["y_test"]))
        ]
        _cache[key] = (xs, data["y_test"])
    return _cache[key]


def _ours(name):
    key = ("ours", name)
    if key not in _cache:
        _cache[key] = tflm_training.Interpreter.from_bytes(
            _model_bytes(name), arena_size=None, preserve_all_tensors=True
        )
    return _cache[key]


def _describe(a, b):
    """'k of n values differ, max |diff| d' for two arrays of equal size."""
    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    diff = np.abs(a64 - b64)
    bad = np.flatnonzero(diff != 0)
    if not bad.size:
        return "values equal"
    first = int(bad[0])
    return (
        "%d of %d values differ, max |diff| %g (first at flat index %d: "
        "ours %s, tflite_micro %s)" % (bad.size, a.size, diff.max(), first, a[first], b[first])
    )


def _compare_tensor(ours, ref):
    """None when identical, else a description of the difference."""
    ours = np.asarray(ours)
    if ours.dtype != ref.dtype:
        return "dtype %s, tflite_micro has %s" % (ours.dtype, ref.dtype)
    if ours.shape != ref.shape:
        if ours.size != ref.size:
            return "shape %s, tflite_micro has %s" % (ours.shape, ref.shape)
        if not np.array_equal(ours.ravel(), ref.ravel()):
            return "shape %s vs %s and %s" % (ours.shape, ref.shape, _describe(ours, ref))
        return "shape %s, tflite_micro has %s (values equal)" % (ours.shape, ref.shape)
    if not np.array_equal(ours, ref):
        return _describe(ours, ref)
    return None


# ---------------------------------------------------------------------------
# Fixtures are complete and consistent (no runtime of ours needed).
# ---------------------------------------------------------------------------


def test_manifest_lists_every_model():
    assert sorted(MANIFEST["models"]) == sorted(MODEL_NAMES), (
        "tests/models/manifest.json and the .tflite files disagree; rerun "
        "tests/fixtures/make_models.py"
    )
    assert len(MODEL_NAMES) >= 7


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_fixture_matches_manifest(name):
    import hashlib

    entry = MANIFEST["models"][name]
    buf = _model_bytes(name)
    assert hashlib.sha256(buf).hexdigest() == entry["sha256"], (
        "%s.tflite changed without its manifest entry" % name
    )
    assert [op for _, op, _ in golden.list_ops(buf)] == entry["ops"]
    data = _dataset(entry["dataset"])
    for key in ("x_train", "y_train", "x_test", "y_test", "class_names"):
        assert key in data, "%s.npz lacks %s" % (entry["dataset"], key)
    assert tuple(entry["input_shape"][1:]) == data["x_test"].shape[1:]


@pytest.mark.slow
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_golden_accuracy_above_chance(name):
    """Behaviour check of the fixtures themselves, with tflite_micro."""
    g = _golden(name)
    xs, ys = _test_inputs(name)
    preds = np.array([np.argmax(g.run([x]).ravel()) for x in xs])
    acc = float(np.mean(preds == ys))
    chance = 1.0 / MANIFEST["models"][name]["n_classes"]
    assert acc >= min(0.5, 3 * chance), (
        "%s: tflite_micro accuracy %.3f on the %d-sample test subset is too "
        "close to chance (%.3f)" % (name, acc, len(ys), chance)
    )


# ---------------------------------------------------------------------------
# Our runtime against tflite_micro.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_io_details_match(name):
    it = _ours(name)
    g = _golden(name)
    for which in ("input", "output"):
        ours = getattr(it, "get_%s_details" % which)(0)
        ref = getattr(g, "%s_details" % which)(0)
        assert np.dtype(ours["dtype"]) == np.dtype(ref["dtype"]), which
        assert tuple(ours["shape"]) == tuple(ref["shape"]), which
        qo, qr = ours["quantization_parameters"], ref["quantization_parameters"]
        np.testing.assert_array_equal(
            np.asarray(qo["scales"], np.float32), np.asarray(qr["scales"], np.float32)
        )
        np.testing.assert_array_equal(
            np.asarray(qo["zero_points"], np.int64), np.asarray(qr["zero_points"], np.int64)
        )
    assert it.arena_used_bytes() > 0


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_op_output_bit_exact(name):
    it = _ours(name)
    g = _golden(name)
    buf = _model_bytes(name)
    ops = golden.list_ops(buf)
    op_lines = golden.describe_ops(buf)
    xs, _ = _test_inputs(name)
    failures = []
    for sample in _sample_indices(len(xs)):
        x = xs[sample]
        ref = g.run_all([x])
        it.set_input(x, 0)
        it.invoke()
        checked = set(g.input_indices)
        problems = []
        for t in g.input_indices:
            msg = _compare_tensor(it.get_tensor(t), ref[t])
            if msg:
                problems.append("  model input tensor %d: %s" % (t, msg))
        for op_index, _, outputs in ops:
            for t in outputs:
                checked.add(t)
                try:
                    ours_t = it.get_tensor(t)
                except Exception as e:
                    problems.append(
                        "  op %d %s, output tensor %d: get_tensor raised "
                        "%s: %s" % (op_index, op_lines[op_index], t, type(e).__name__, e)
                    )
                    continue
                msg = _compare_tensor(ours_t, ref[t])
                if msg:
                    problems.append(
                        "  op %d %s, output tensor %d: %s" % (op_index, op_lines[op_index], t, msg)
                    )
        for k in range(len(g.output_indices)):
            msg = _compare_tensor(it.get_output(k), g.outputs()[k])
            if msg:
                problems.append("  get_output(%d): %s" % (k, msg))
        if problems:
            failures.append(
                "sample %d of the %s test subset:\n%s"
                % (sample, MANIFEST["models"][name]["dataset"], "\n".join(problems))
            )
    assert not failures, (
        "%s: our runtime differs from tflite_micro on %d of %d samples (the "
        "first op listed per sample is where the difference starts; ops are "
        '"NAME kernel stride padding [dilation] [mult] [fused act] -> output '
        'shape"):\n%s%s'
        % (
            name,
            len(failures),
            len(_sample_indices(len(xs))),
            "\n".join(failures[:3]),
            "\n(%d more samples differ)" % (len(failures) - 3) if len(failures) > 3 else "",
        )
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_outputs_match_and_accuracy(name):
    """Final outputs on the whole test subset; predictions are sensible."""
    it = _ours(name)
    g = _golden(name)
    xs, ys = _test_inputs(name)
    differing, preds = [], []
    for k, x in enumerate(xs):
        ref = g.run([x])
        it.set_input(x, 0)
        it.invoke()
        out = it.get_output(0)
        if _compare_tensor(out, ref):
            differing.append("sample %d: %s" % (k, _compare_tensor(out, ref)))
        preds.append(int(np.argmax(np.asarray(out).ravel())))
    assert not differing, "%s: %d of %d final outputs differ:\n%s" % (
        name,
        len(differing),
        len(xs),
        "\n".join(differing[:10]),
    )
    acc = float(np.mean(np.array(preds) == ys))
    chance = 1.0 / MANIFEST["models"][name]["n_classes"]
    assert acc >= min(0.5, 3 * chance), (
        "%s: our runtime accuracy %.3f on %d test samples, chance %.3f"
        % (name, acc, len(ys), chance)
    )
