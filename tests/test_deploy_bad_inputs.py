"""tools/deploy.py refuses bad input at the edge: exit status 2 and one
line `error: ...` on stderr naming the problem, before any expensive work
(model conversion, contribution analysis, TraDy ranking, firmware builds),
with a previous run's --out left byte for byte as it was.

Deploy runs in-process (tools.deploy.run) with the expensive steps replaced
by a tripwire, so a case that gets past validation fails loudly; a few
cases run the real command lines of deploy.py and learn.py. The property
test draws its bad datasets, flags and models from a seeded generator.
"""

import ast
import io
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import tflm_training
from planning import contribution, lowrank, trady
from tools import deploy, deploy_steps, firmware_build, learner_firmware, output_folder

pytestmark = pytest.mark.skipif(
    shutil.which(firmware_build.GCC) is None,
    reason="deploy checks the ARM toolchain first (bash tools/install.sh)",
)

REPO = pathlib.Path(__file__).resolve().parents[1]
MODEL = deploy_steps.DEFAULT_MODEL
FLOAT_MODEL = REPO / "tests" / "models" / "float_io.tflite"
SHAPE = (49, 40, 1)  # the default model's input
CLASSES = 10
BUILD_LEARNER = deploy_steps.build_learner


class ReachedExpensiveWork(Exception):
    """An expensive step ran: validation let the case through."""


@pytest.fixture(autouse=True)
def tripwire(monkeypatch):
    def reached(*args, **kwargs):
        raise ReachedExpensiveWork

    for owner, name in (
        (deploy_steps, "build_learner"),
        (deploy_steps, "convert_checkpoint"),
        (deploy_steps, "convert_keras_model"),
        (contribution, "analyze"),
        (trady, "rank_layers"),
        (lowrank, "plan_for_budget"),
    ):
        monkeypatch.setattr(owner, name, reached)


def tree(folder):
    """{relative path: bytes, or None for a folder} of everything under folder."""
    return {
        str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes()
        for p in sorted(pathlib.Path(folder).rglob("*"))
    }


def leftovers(out):
    return sorted(p.name for p in out.parent.iterdir() if ".partial-" in p.name)


@pytest.fixture
def previous_out(tmp_path):
    """An --out a previous run wrote."""
    out = tmp_path / "out"
    with output_folder.transaction(out) as tx:
        (tx.work / "report.json").write_text('{"from": "a previous run"}\n')
        (tx.work / "nrf52840").mkdir()
        (tx.work / "nrf52840" / "firmware.hex").write_bytes(b":00000001FF\n")
    return out


def deploy_in_process(capsys, *args):
    status = deploy.run(["deploy.py", "--noemulate", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_refused(capsys, out, args, mentions):
    """Exit status 2, one line on stderr naming `mentions`, --out as it was
    and no partial folder beside it; returns the line."""
    before = tree(out)
    status, _, err = deploy_in_process(capsys, "--out", str(out), *args)
    assert status == 2, err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    for word in mentions:
        assert word in err, (word, err)
    assert "Traceback" not in err
    assert tree(out) == before
    assert leftovers(out) == []
    return err


# -- the generator ----------------------------------------------------------------------


def good_arrays(rng):
    n_train, n_test = rng.integers(10, 30), rng.integers(5, 15)
    return {
        "x_train": rng.integers(0, 256, (n_train, *SHAPE), dtype=np.uint8),
        "y_train": np.arange(n_train) % CLASSES,
        "x_test": rng.integers(0, 256, (n_test, *SHAPE), dtype=np.uint8),
        "y_test": np.arange(n_test) % CLASSES,
    }


def _split(rng):
    return str(rng.choice(["train", "test"]))


def wrong_shape(rng, arrays):
    key = f"x_{_split(rng)}"
    while True:
        shape = tuple(int(d) for d in rng.integers(1, 13, rng.integers(1, 4)))
        if sorted(shape) != sorted(SHAPE):
            break
    arrays[key] = rng.integers(0, 256, (len(arrays[key]), *shape), dtype=np.uint8)
    return key, "shape"


def transposed(rng, arrays):
    key = f"x_{_split(rng)}"
    order = [(1, 0, 2), (0, 2, 1), (2, 1, 0), (1, 2, 0), (2, 0, 1)][rng.integers(5)]
    arrays[key] = np.transpose(arrays[key], (0, *(i + 1 for i in order)))
    return key, "looks transposed", "np.transpose"


def no_channel_axis(rng, arrays):
    key = f"x_{_split(rng)}"
    arrays[key] = arrays[key][..., 0]
    return key, f"{key}[..., None]"


def extra_axis(rng, arrays):
    key = f"x_{_split(rng)}"
    arrays[key] = arrays[key][..., None]
    return key, f"{key}[..., 0]"


def sample_dtype(rng, arrays):
    key = f"x_{_split(rng)}"
    # Floats are real values the model's input quantizes: not among them.
    dtype = [
        np.int16,
        np.int32,
        np.uint16,
        np.int64,
        np.uint32,
        np.bool_,
        np.complex64,
        "U3",
        "S3",
        "V4",
        "datetime64[s]",
    ][rng.integers(11)]
    arrays[key] = np.zeros(arrays[key].shape, dtype)
    return key, "dtype"


def not_finite(rng, arrays):
    key = f"x_{_split(rng)}"
    x = rng.random(arrays[key].shape, dtype=np.float32)
    x.reshape(len(x), -1)[rng.integers(len(x)), rng.integers(x[0].size)] = [
        np.nan,
        np.inf,
        -np.inf,
    ][rng.integers(3)]
    arrays[key] = x
    return key, "NaN"


def object_array(rng, arrays):
    key = str(rng.choice(deploy_steps.DATASET_KEYS))
    rows = np.empty(len(arrays[key]), dtype=object)
    rows[:] = [list(range(i % 3)) for i in range(len(rows))]
    arrays[key] = rows
    return key, "object array"


def zero_d(rng, arrays):
    key = str(rng.choice(deploy_steps.DATASET_KEYS))
    arrays[key] = np.array(int(rng.integers(10)))
    return key, "single value"


def missing_key(rng, arrays):
    key = str(rng.choice(deploy_steps.DATASET_KEYS))
    del arrays[key]
    return key, "lacks"


def label_beyond_head(rng, arrays):
    key = f"y_{_split(rng)}"
    arrays[key] = arrays[key].copy()
    arrays[key][rng.integers(len(arrays[key]))] = CLASSES + rng.integers(0, 1000)
    return key, f"{CLASSES} classes"


def negative_label(rng, arrays):
    key = f"y_{_split(rng)}"
    arrays[key] = arrays[key].copy()
    arrays[key][rng.integers(len(arrays[key]))] = -rng.integers(1, 5)
    return key, "negative"


def label_dtype(rng, arrays):
    key = f"y_{_split(rng)}"
    arrays[key] = arrays[key].astype([np.float32, np.float64, np.bool_][rng.integers(3)])
    return key, "integer class indices"


def label_count(rng, arrays):
    key = f"y_{_split(rng)}"
    extra = int(rng.integers(1, 4))
    y = arrays[key]
    arrays[key] = y[:-extra] if rng.integers(2) else np.concatenate([y, y[:extra]])
    return key, "labels"


def label_shape(rng, arrays):
    key = f"y_{_split(rng)}"
    y = arrays[key]
    arrays[key] = [np.stack([y] * int(rng.integers(2, 5)), axis=1), y[:, None, None]][
        rng.integers(2)
    ]
    return key, "shape"


def empty_split(rng, arrays):
    split = _split(rng)
    for key in (f"x_{split}", f"y_{split}"):
        arrays[key] = arrays[key][:0]
    return f"x_{split}", "empty"


DATASET_MUTATIONS = (
    wrong_shape,
    transposed,
    no_channel_axis,
    extra_axis,
    sample_dtype,
    not_finite,
    object_array,
    zero_d,
    missing_key,
    label_beyond_head,
    negative_label,
    label_dtype,
    label_count,
    label_shape,
    empty_split,
)


def npz_bytes(arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def truncated(rng, arrays):
    data = npz_bytes(arrays)
    return data[: rng.integers(4, len(data) - 1)], ("cannot read",)


def bit_flipped(rng, arrays):
    """Bits flipped in one array's stored bytes (its CRC-32 no longer matches)."""
    key = str(rng.choice(deploy_steps.DATASET_KEYS))
    data = bytearray(npz_bytes(arrays))
    start = data.find(np.ascontiguousarray(arrays[key]).tobytes())
    # One or two bits: CRC-32 catches every such change of a long member.
    for offset in rng.choice(arrays[key].nbytes, rng.integers(1, 3), replace=False):
        data[start + offset] ^= 1 << rng.integers(8)
    return bytes(data), (key, "damaged")


def not_an_npz(rng, arrays):
    data = [npz_bytes(arrays)[::-1], b"x_train,y_train\n1,2\n", b"", np.arange(12).tobytes()][
        rng.integers(4)
    ]
    return data, ("not an .npz",)


BYTE_MUTATIONS = (truncated, bit_flipped, not_an_npz)


def one_array_npy(rng, arrays):
    buffer = io.BytesIO()
    np.save(buffer, arrays["x_train"])
    return buffer.getvalue(), ("single array",)


def flag_case(rng, index):
    """(args, mentions) of one bad flag, the index-th kind with drawn values."""
    number = [-1.0, 0.0, float("nan"), float("inf"), float("-inf"), -rng.random() * 1e6]
    cases = [
        ([f"--learning_rate={rng.choice(number + [1e39, 1e-50, 3.5e38])}"], "--learning_rate"),
        ([f"--budget_kb={rng.choice(number)}"], "--budget_kb"),
        ([f"--timeout={rng.choice(number)}"], "--timeout"),
        ([f"--seed={rng.choice([-1, -int(rng.integers(2, 99)), 2**32, 2**40])}"], "--seed"),
        ([f"--train_samples={-rng.integers(0, 5)}"], "--train_samples"),
        ([f"--test_samples={-rng.integers(0, 5)}"], "--test_samples"),
        ([f"--epochs={-rng.integers(0, 5)}"], "--epochs"),
        ([f"--heldout_samples={-rng.integers(1, 5)}"], "--heldout_samples"),
        (["--learning_rate=fast"], "--learning_rate"),
        ([f"--scheme={rng.choice(['sparse_search', 'Trady', 'everything', ''])}"], "--scheme"),
        (["--guard=always"], "--guard"),
        ([f"--board={rng.choice(['nrf52', 'esp32', '../boards'])}"], "--board"),
        (["--emulate", "--port=/dev/ttyACM0"], "--port"),
        ([f"--model=missing{rng.integers(100)}.tflite"], "--model"),
        ([f"--model={REPO / 'tests' / 'models' / 'README.md'}"], "--model"),
        (["--dataset=no_such_dataset"], "no_such_dataset"),
        ([f"--no_such_flag_{rng.integers(100)}=1"], "no_such_flag"),
        # Below the smallest plan of each scheme (tests/test_deploy.py has the numbers).
        (
            [
                f"--scheme={rng.choice(['sparse-search', 'trady'])}",
                f"--budget_kb={rng.integers(1, 81)}",
            ],
            "--budget_kb",
        ),
        (["--scheme=lowrank", f"--budget_kb={rng.integers(1, 104)}"], "--budget_kb"),
        (
            [
                f"--scheme={rng.choice(['classifier', 'sparse'])}",
                f"--budget_kb={rng.integers(1, 73)}",
            ],
            "--budget_kb",
        ),
    ]
    args, mention = cases[index % len(cases)]
    return args, (mention,)


def corrupt_model(rng):
    """A truncated or bit-flipped copy of the default model that the
    runtime refuses (flips it accepts change only weights: no case)."""
    data = MODEL.read_bytes()
    while True:
        if rng.integers(2):
            bad = data[: rng.integers(len(data))]
        else:
            bad = bytearray(data)
            for _ in range(rng.integers(1, 4)):
                bad[rng.integers(len(bad))] ^= 1 << rng.integers(8)
            bad = bytes(bad)
        try:
            tflm_training.Interpreter.from_bytes(bad)
        except tflm_training.TflmTrainingError:
            return bad


CASES = (
    [(kind.__name__, i) for kind in DATASET_MUTATIONS for i in range(8)]
    + [(kind.__name__, i) for kind in BYTE_MUTATIONS for i in range(8)]
    + [("one_array_npy", 0), ("out_is_a_file", 0)]
    + [("flag", i) for i in range(40)]
    + [("corrupt_model", i) for i in range(20)]
)


def make_case(kind, index, folder):
    """(deploy's arguments, words the error must name) for one case."""
    rng = np.random.default_rng([index, sum(map(ord, kind))])
    if kind == "flag":
        return flag_case(rng, index)
    if kind == "corrupt_model":
        path = folder / "corrupt.tflite"
        path.write_bytes(corrupt_model(rng))
        return ["--model", str(path)], ("model",)
    if kind == "out_is_a_file":
        path = folder / "a_file"
        path.write_text("not a folder\n")
        return ["--out", str(path)], ("--out", "is a file")
    path = folder / f"{kind}.npz"
    mutation = globals()[kind]
    arrays = good_arrays(rng)
    if mutation in DATASET_MUTATIONS:
        mentions = mutation(rng, arrays)
        np.savez(path, **arrays)
    else:
        data, mentions = mutation(rng, arrays)
        path.write_bytes(data)
    # Labels beyond the head are refused when the head is kept; by default a
    # .tflite gets a new head for them.
    keep = ["--head", "keep"] if mutation is label_beyond_head else []
    return ["--dataset", str(path), *keep], mentions


@pytest.mark.parametrize("kind,index", CASES, ids=[f"{k}-{i}" for k, i in CASES])
def test_every_bad_input_is_one_line_before_any_work(capsys, tmp_path, previous_out, kind, index):
    args, mentions = make_case(kind, index, tmp_path)
    before = tree(tmp_path)
    assert_refused(capsys, previous_out, args, mentions)
    assert tree(tmp_path) == before  # nothing else written either (a file --out included)


@pytest.mark.slow
def test_unmutated_data_passes_every_check(tmp_path, previous_out):
    """The control: unmutated, the generator's data passes every check, so
    each case above fails for its mutation alone."""
    for index in range(3):
        path = tmp_path / f"good{index}.npz"
        np.savez(path, **good_arrays(np.random.default_rng(index)))
        with pytest.raises(ReachedExpensiveWork):
            deploy.run(
                ["deploy.py", "--noemulate", "--out", str(previous_out), "--dataset", str(path)]
            )
    assert (previous_out / "report.json").read_text() == '{"from": "a previous run"}\n'


# -- the checks one by one ------------------------------------------------------------


@pytest.mark.parametrize(
    "axes", [(0, 2, 1, 3), (0, 1, 3, 2), (0, 3, 2, 1), (0, 2, 3, 1), (0, 3, 1, 2)]
)
def test_transposed_samples_get_the_transpose_that_fixes_them(capsys, tmp_path, previous_out, axes):
    arrays = good_arrays(np.random.default_rng(0))
    arrays["x_train"] = np.transpose(arrays["x_train"], axes)
    np.savez(tmp_path / "t.npz", **arrays)
    err = assert_refused(
        capsys,
        previous_out,
        ["--dataset", str(tmp_path / "t.npz")],
        ["x_train has shape", "(49, 40, 1)"],
    )
    hint = re.search(
        r"it looks transposed: np\.transpose\(x_train, (\(0(, \d)+\))\)$", err.rstrip()
    )
    fixed = np.transpose(arrays["x_train"], ast.literal_eval(hint.group(1)))
    assert fixed.shape[1:] == SHAPE


def test_the_built_in_dataset_feeds_the_default_model_as_it_is():
    dataset = deploy_steps.load_dataset("fsdd")
    info = deploy_steps.model_input(MODEL.read_bytes())
    assert dataset.x_train.shape[1:] == info.shape == SHAPE
    assert dataset.x_train.dtype == np.uint8 and info.dtype == np.int8
    samples = deploy_steps.prepare_samples(dataset, info, 50, 20, 0)
    assert samples.train_x.shape == (50, *SHAPE) and samples.train_x.dtype == np.int8


def test_float_input_models_get_real_valued_samples_the_host_trains_on():
    """uint8 data is fed as x / 255, float data as it is (in float32), and
    the host Trainer trains the float-input model on them."""
    model = FLOAT_MODEL.read_bytes()
    info = deploy_steps.model_input(model)
    assert info.dtype == np.float32 and info.shape == (28, 28, 1)
    x = np.random.default_rng(0).integers(0, 256, (20, 28, 28, 1), dtype=np.uint8)
    y = np.arange(20) % 10
    real = x.astype(np.float32) / np.float32(255)
    for data in (x, real.astype(np.float64)):
        fed = deploy_steps.prepare_samples(
            deploy_steps.Dataset("d", data, y, data, y), info, None, None
        )
        assert fed.train_x.dtype == np.float32
        assert sorted(map(bytes, fed.train_x)) == sorted(map(bytes, real))
    trainer = tflm_training.Trainer(model, tflm_training.TrainingPlan.classifier_only(model))
    losses = [trainer.train_step(fed.train_x[i], fed.train_y[i]) for i in range(len(y))]
    assert np.all(np.isfinite(losses))
    huge = deploy_steps.Dataset("huge", real * np.float64(1e300), y, real, y)
    with pytest.raises(deploy_steps.DeployError, match="beyond float32's range"):
        deploy_steps.prepare_samples(huge, info, None, None)


def test_searched_scheme_budget_is_checked_before_the_analysis(capsys, previous_out):
    err = assert_refused(
        capsys,
        previous_out,
        ["--scheme", "sparse-search", "--budget_kb", "60"],
        ["error: sparse-search:", "(--budget_kb)"],
    )
    model = MODEL.read_bytes()
    need = deploy_steps.training_arena(
        model,
        tflm_training.TrainingPlan.classifier_only(
            model,
            learning_rate=0.02,
            momentum=deploy_steps.MOMENTUM,
            batch_size=deploy_steps.BATCH_SIZE,
        ),
    )
    assert f"needs a {need}-byte training arena" in err
    assert f"at least {-(-need // 1024)} KB" in err


def test_auto_falls_back_when_trady_cannot_fit_without_ranking(capsys, previous_out, monkeypatch):
    """--budget_kb 79 is below every TraDy plan (the classifier alone needs
    79.7 KB): auto goes to every bias without running the TraDy ranking
    (the tripwire), and reaches the firmware build."""
    with pytest.raises(ReachedExpensiveWork):
        deploy.run(["deploy.py", "--noemulate", "--budget_kb", "79", "--out", str(previous_out)])
    assert "auto: trady does not fit" in capsys.readouterr().out


def test_runtime_errors_from_the_job_are_one_line(capsys, previous_out, monkeypatch):
    """A tflm_training error (here the host Trainer's DivergedError) is
    reported like every other error, not as a traceback, with where the
    run's partial files are."""

    def diverges(*args, **kwargs):
        raise tflm_training.DivergedError("training diverged: the loss is not finite")

    monkeypatch.setattr(deploy_steps, "build_learner", diverges)
    before = tree(previous_out)
    status, _, err = deploy_in_process(capsys, "--scheme", "classifier", "--out", str(previous_out))
    assert status == 2 and err.count("\n") == 1 and "Traceback" not in err
    [partial] = leftovers(previous_out)
    assert err == (
        f"error: training diverged: the loss is not finite; partial files of "
        f"this run are in {previous_out.parent / partial}\n"
    )
    assert tree(previous_out) == before


def test_firmware_over_the_board_limits_is_one_line_with_the_report_above(
    capsys, previous_out, monkeypatch
):
    def over_limit(*args, **kwargs):
        raise firmware_build.OverLimitError(
            "the firmware does not fit the nrf52840: RAM needs 300000 bytes.",
            "Sketch uses 1 bytes\nGlobal variables use 300000 bytes",
        )

    monkeypatch.setattr(deploy_steps, "build_learner", BUILD_LEARNER)
    monkeypatch.setattr(learner_firmware, "build_learner_firmware", over_limit)
    before = tree(previous_out)
    status, out, err = deploy_in_process(
        capsys, "--scheme", "classifier", "--out", str(previous_out)
    )
    assert status == 2 and err.count("\n") == 1
    assert "does not fit the nrf52840" in err and "--heldout_samples" in err
    assert "Sketch uses 1 bytes\nGlobal variables use 300000 bytes\n" in out
    assert tree(previous_out) == before


# -- the real command lines -------------------------------------------------------------


def _cli(tool, *args):
    return subprocess.run(
        [sys.executable, f"tools/{tool}", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
@pytest.mark.parametrize("tool", ["deploy.py", "learn.py"])
def test_the_command_lines_refuse_transposed_data_in_one_line(tmp_path, previous_out, tool):
    arrays = good_arrays(np.random.default_rng(1))
    arrays["x_test"] = np.transpose(arrays["x_test"], (0, 2, 1, 3))
    np.savez(tmp_path / "t.npz", **arrays)
    before = tree(previous_out)
    result = _cli(
        tool,
        "--model",
        str(MODEL),
        "--dataset",
        str(tmp_path / "t.npz"),
        "--out",
        str(previous_out),
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert "x_test" in result.stderr and "np.transpose(x_test, (0, 2, 1, 3))" in result.stderr
    assert tree(previous_out) == before and leftovers(previous_out) == []


@pytest.mark.slow
@pytest.mark.parametrize(
    "tool,flag",
    [
        ("deploy.py", "--learning_rate=1e39"),
        ("deploy.py", "--scheme=everything"),
        ("learn.py", "--timeout=-1"),
        ("learn.py", "--seed=-3"),
    ],
)
def test_the_command_lines_refuse_bad_flags_in_one_line(previous_out, tool, flag):
    before = tree(previous_out)
    result = _cli(tool, "--model", str(MODEL), flag, "--out", str(previous_out))
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert flag.split("=")[0] in result.stderr and "Traceback" not in result.stderr
    assert tree(previous_out) == before


@pytest.mark.slow
def test_learn_refuses_a_plan_for_another_model(tmp_path, previous_out):
    plan = tmp_path / "plan.bin"
    plan.write_bytes(
        tflm_training.TrainingPlan.classifier_only(
            (REPO / "tests" / "models" / "mlp.tflite").read_bytes()
        ).to_bytes()
    )
    result = _cli(
        "learn.py", "--model", str(MODEL), "--plan", str(plan), "--out", str(previous_out)
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert f"--plan {plan} cannot train --model {MODEL}" in result.stderr


def test_float_samples_are_real_values_quantized_like_uint8_ones():
    info = deploy_steps.model_input(MODEL.read_bytes())
    assert info.dtype == np.int8
    x = np.random.default_rng(1).integers(0, 256, (20, *info.shape), dtype=np.uint8)
    y = np.arange(20) % 10
    fed = [
        deploy_steps.prepare_samples(deploy_steps.Dataset("d", data, y, data, y), info, None, None)
        for data in (x, x.astype(np.float32) / np.float32(255))
    ]
    assert fed[0].train_x.dtype == fed[1].train_x.dtype == np.int8
    assert np.array_equal(fed[0].train_x, fed[1].train_x)


# -- a new head (--head) and resized images (--resize) ------------------------------


EXTRA_OPS = REPO / "tests" / "models" / "extra_ops"


def test_new_head_on_a_model_without_a_classifier_is_one_line(capsys, tmp_path, previous_out):
    model = EXTRA_OPS / "strided_slice.tflite"  # input (6, 6, 4), logits from STRIDED_SLICE
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "d.npz",
        x_train=rng.integers(0, 256, (12, 6, 6, 4), dtype=np.uint8),
        y_train=np.arange(12) % 3,
        x_test=rng.integers(0, 256, (6, 6, 6, 4), np.uint8),
        y_test=np.arange(6) % 3,
    )
    assert_refused(
        capsys,
        previous_out,
        ["--model", str(model), "--dataset", str(tmp_path / "d.npz")],
        [
            "cannot replace this model's head for the dataset's 3 classes",
            "operator 3",
            "not by a FULLY_CONNECTED or 1x1 CONV_2D classifier",
            "--head keep",
        ],
    )


def test_labels_beyond_a_kept_head_suggest_a_new_one(capsys, tmp_path, previous_out):
    arrays = good_arrays(np.random.default_rng(0))
    arrays["y_train"] = np.arange(len(arrays["y_train"])) % 12
    np.savez(tmp_path / "d.npz", **arrays)
    assert_refused(
        capsys,
        previous_out,
        ["--dataset", str(tmp_path / "d.npz"), "--head", "keep"],
        ["labels 0 to 11", "10 classes", "leave out --head keep", "fresh 12-class one"],
    )


def test_new_head_with_a_single_class_is_one_line(capsys, tmp_path, previous_out):
    arrays = good_arrays(np.random.default_rng(0))
    arrays["y_train"], arrays["y_test"] = (np.zeros_like(arrays[k]) for k in ("y_train", "y_test"))
    np.savez(tmp_path / "d.npz", **arrays)
    assert_refused(
        capsys,
        previous_out,
        ["--head", "new", "--dataset", str(tmp_path / "d.npz")],
        ["a new head needs at least 2 classes"],
    )


def test_new_head_is_only_for_tflite_models(capsys, previous_out):
    checkpoint = REPO / "pipeline" / "checkpoints" / "ds_cnn_speech_commands12"
    assert_refused(
        capsys,
        previous_out,
        ["--head", "new", "--model", str(checkpoint)],
        ["--head new replaces the classifier of a .tflite", "leave out --head"],
    )


def test_resize_on_a_model_that_takes_no_images_states_its_input(capsys, tmp_path, previous_out):
    model = EXTRA_OPS / "unary_ops.tflite"  # input (256,)
    np.savez(
        tmp_path / "d.npz",
        x_train=np.zeros((4, 16, 16), np.uint8),
        y_train=np.arange(4) % 2,
        x_test=np.zeros((2, 16, 16), np.uint8),
        y_test=np.arange(2),
    )
    assert_refused(
        capsys,
        previous_out,
        ["--model", str(model), "--resize", "nearest", "--dataset", str(tmp_path / "d.npz")],
        ["--resize resizes images", "(256,)", "leave out --resize"],
    )


def test_resize_of_samples_that_are_not_images_states_both_shapes(capsys, tmp_path, previous_out):
    arrays = good_arrays(np.random.default_rng(0))
    arrays["x_test"] = arrays["x_test"][..., 0]  # (N, 49, 40): no channel axis
    np.savez(tmp_path / "d.npz", **arrays)
    assert_refused(
        capsys,
        previous_out,
        ["--resize", "bilinear", "--dataset", str(tmp_path / "d.npz")],
        ["x_test has shape", "not (N, height, width, 1) images", "(49, 40, 1)"],
    )


def test_images_of_another_size_without_resize_suggest_it(capsys, tmp_path, previous_out):
    arrays = good_arrays(np.random.default_rng(0))
    arrays["x_train"] = np.zeros((len(arrays["y_train"]), 32, 20, 1), np.uint8)
    np.savez(tmp_path / "d.npz", **arrays)
    assert_refused(
        capsys,
        previous_out,
        ["--dataset", str(tmp_path / "d.npz")],
        ["x_train has shape", "(49, 40, 1)", "--resize nearest", "--resize bilinear"],
    )


@pytest.mark.slow
@pytest.mark.parametrize("method", deploy_steps.RESIZE_METHODS)
def test_resized_images_pass_every_check(tmp_path, previous_out, method):
    arrays = good_arrays(np.random.default_rng(0))
    arrays["x_train"] = np.zeros((len(arrays["y_train"]), 32, 20, 1), np.uint8)
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(ReachedExpensiveWork):
        deploy.run(
            [
                "deploy.py",
                "--noemulate",
                "--out",
                str(previous_out),
                "--resize",
                method,
                "--dataset",
                str(tmp_path / "d.npz"),
            ]
        )


def test_resize_methods_sample_at_half_pixel_centres():
    x = np.arange(4, dtype=np.float32).reshape(1, 1, 4, 1)
    info = deploy_steps.ModelInput((1, 8, 1), np.dtype(np.int8), 1.0, 0, 2)
    data = deploy_steps.Dataset("d", x, np.zeros(1, np.int64), x, np.zeros(1, np.int64))
    nearest = deploy_steps.resize_dataset(data, info, "nearest").x_train.reshape(-1)
    bilinear = deploy_steps.resize_dataset(data, info, "bilinear").x_train.reshape(-1)
    assert nearest.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert bilinear.tolist() == [0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3]
    small = deploy_steps.ModelInput((1, 2, 1), np.dtype(np.int8), 1.0, 0, 2)
    assert deploy_steps.resize_dataset(data, small, "bilinear").x_train.reshape(-1).tolist() == [
        0.5,
        2.5,
    ]
