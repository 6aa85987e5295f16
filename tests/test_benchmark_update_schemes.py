"""The update-scheme benchmark's pieces (benchmarks/update_schemes*.py) on a
tiny committed case, so the harness cannot rot: the DS-CNN transfer model
(examples/ds_cnn_fsdd.tflite) and a few FSDD clips of examples/fsdd*.npz.
No TensorFlow, no timing assertions."""

import copy
import dataclasses
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from benchmarks import update_schemes_methods as methods
from benchmarks import update_schemes_report as report
from benchmarks import update_schemes_runs as runs
from benchmarks import update_schemes_tasks as tasks
from planning import datasets
from tflm_training import memory_model

TESTS = pathlib.Path(__file__).resolve().parent
EXAMPLES = TESTS.parent / "examples"
MODEL = (EXAMPLES / "ds_cnn_fsdd.tflite").read_bytes()
CLASSIFIER = 10
SETTINGS = methods.Settings()
CONFIG = {
    "epochs": 1,
    "train_samples": 30,
    "test_samples": 30,
    "settings": dataclasses.asdict(SETTINGS),
    "analysis_samples": 16,
    "analysis_val_samples": 10,
    "analysis_epochs": 1,
    "analysis_layers": 1,
    "search_trials": 2,
    "trady_samples": 8,
    "trady_layers": 2,
}


@pytest.fixture(scope="module")
def samples():
    with (
        np.load(EXAMPLES / "fsdd_train.npz") as train,
        np.load(EXAMPLES / "fsdd.npz") as test,
    ):
        x_train, y_train = train["x_train"], train["y_train"].astype(np.int64)
        x_test, y_test = test["x_test"], test["y_test"].astype(np.int64)
    train_rows = datasets.balanced_subset(y_train, 30, np.random.default_rng(0))
    test_rows = tasks.test_rows(y_test, 30)
    scale = 1.0 / 255.0
    return tasks.Samples(
        x_train[train_rows],
        tasks.quantize(x_train[train_rows], scale, -128),
        y_train[train_rows],
        x_test[test_rows],
        tasks.quantize(x_test[test_rows], scale, -128),
        y_test[test_rows],
    )


def test_balanced_rows_are_balanced_and_unique():
    y = np.repeat(np.arange(5), [10, 2, 8, 8, 8])
    rows = datasets.balanced_subset(y, 20, np.random.default_rng(1))
    assert len(set(rows.tolist())) == 20
    counts = np.bincount(y[rows], minlength=5)
    assert counts[1] == 2 and counts.min() >= 2 and counts.max() - np.sort(counts)[1] <= 1
    assert len(datasets.balanced_subset(y, None, np.random.default_rng(1))) == len(y)


def test_splits_keep_calibration_apart():
    y = np.repeat(np.arange(10), 30)
    task = tasks.Task("t", "c", "up", "down", 50, 1, None)
    calibration, pool = tasks.split_rows(task, y)
    assert len(calibration) == 50 and np.bincount(y[calibration]).tolist() == [5] * 10
    assert not set(calibration) & set(pool) and len(calibration) + len(pool) == len(y)
    first = tasks.train_rows(y, pool, 40, seed=0)
    assert set(first) <= set(pool)
    assert not np.array_equal(first, tasks.train_rows(y, pool, 40, seed=1))


def test_quantize_is_x_minus_128():
    x = np.array([0, 1, 128, 255], np.uint8)
    assert tasks.quantize(x, 1.0 / 255.0, -128).tolist() == [-128, -127, 0, 127]


def test_classifier_metrics():
    scheme = methods.classifier_scheme(MODEL, SETTINGS)
    metrics = methods.plan_metrics(MODEL, scheme.plan, SETTINGS, methods.board_room())
    assert metrics["training_arena"] == memory_model.training_memory(MODEL, scheme.plan).total
    assert metrics["fits_nrf52840"]
    # 10 classes x 64 features, one output position.
    assert metrics["weight_derivative_macs"] == 640
    assert metrics["trained_weights"] == 640 and metrics["trained_biases"] == 10
    assert metrics["weight_derivative_sparsity"] == pytest.approx(
        1 - 640 / methods.all_weights(MODEL)
    )
    assert 0.9 < metrics["activation_sparsity"] <= 1.0


def test_full_backprop_has_no_sparsity():
    plan = methods.full_plan(MODEL, SETTINGS)
    metrics = methods.plan_metrics(MODEL, plan, SETTINGS, methods.board_room())
    assert metrics["activation_sparsity"] == 0.0
    assert metrics["weight_derivative_sparsity"] == 0.0
    assert metrics["saved_activation_bytes"] > 0


def test_last_biases_scheme_goes_deeper_with_more_memory():
    inference = methods.inference_arena(MODEL)
    depths = []
    for extra_kb in (16, 64, 256):
        scheme = methods.last_biases_scheme(MODEL, inference + extra_kb * 1024, SETTINGS)
        assert scheme.available
        assert methods.training_arena(MODEL, scheme.plan) <= inference + extra_kb * 1024
        assert scheme.plan.layers[-1].operator_index == CLASSIFIER
        assert scheme.plan.layers[-1].update == "weights"
        assert all(layer.update == "bias" for layer in scheme.plan.layers[:-1])
        depths.append(scheme.info["bias_layers"])
    assert depths == sorted(depths) and depths[-1] > depths[0]
    too_small = methods.last_biases_scheme(MODEL, inference, SETTINGS)
    assert not too_small.available and too_small.over_budget


def test_train_and_evaluate_is_reproducible(samples):
    scheme = methods.classifier_scheme(MODEL, SETTINGS)
    first = methods.train_and_evaluate(MODEL, scheme, samples, 1, seed=3)
    second = methods.train_and_evaluate(MODEL, scheme, samples, 1, seed=3)
    assert first == second
    assert 0.0 <= first["accuracy"] <= 1.0 and len(first["losses"]) == 1


def _job(method, budgets=()):
    return runs.Job("fsdd", method, 0, tuple(budgets), 1.0)


@pytest.mark.slow
def test_int8_records_classifier_and_last_biases(samples, tmp_path):
    records = runs.int8_records(_job("classifier"), MODEL, samples, CONFIG, tmp_path)
    assert len(records) == 1 and records[0]["available"]
    assert 0.0 <= records[0]["accuracy_before"] <= 1.0
    records = runs.int8_records(_job("last-biases", (0, 64)), MODEL, samples, CONFIG, tmp_path)
    assert [r["budget_kb"] for r in records] == [0, 64]
    assert not records[0]["available"] and records[0]["over_budget"]
    assert records[1]["available"] and records[1]["metrics"]["training_arena"] <= (
        methods.inference_arena(MODEL) + 64 * 1024
    )


@pytest.mark.slow
@pytest.mark.parametrize("method", ["sparse-search", "trady", "lowrank"])
def test_int8_records_other_schemes(method, samples, tmp_path):
    records = runs.int8_records(_job(method, (64,)), MODEL, samples, CONFIG, tmp_path)
    assert len(records) == 1
    record = records[0]
    assert record["available"], record["reason"]
    assert 0.0 <= record["accuracy"] <= 1.0
    assert record["metrics"]["training_arena"] <= methods.inference_arena(MODEL) + 64 * 1024
    if method == "sparse-search":  # the best measured of the search's 2 best and bias-only plans
        trials = record["info"]["trials"]
        assert 2 <= len(trials) <= 3
        assert trials[0]["genome"] == record["info"]["searched_genome"]
        best = max(
            (t for t in trials if t["measured"] is not None),
            key=lambda t: (t["measured"], t["predicted"], -t["arena"]),
        )
        assert record["info"]["genome"] == best["genome"]


def _record(method, budget_kb, seed, accuracy, arena):
    return {
        "task": "fsdd",
        "method": method,
        "budget_kb": budget_kb,
        "seed": seed,
        "available": True,
        "reason": None,
        "over_budget": False,
        "accuracy": accuracy,
        "metrics": {
            "training_arena": arena,
            "fits_nrf52840": True,
            "weight_derivative_macs": 10,
            "activation_sparsity": 0.5,
            "weight_derivative_sparsity": 0.9,
            "trained_weights": 5,
            "layers": ["op 10 FULLY_CONNECTED weights 10/10"],
        },
    }


def _data(tmp_path):
    inference = 1000
    records = [_record("classifier", None, s, 0.5 + s / 10, inference + 40 * 1024) for s in (0, 1)]
    records += [
        _record("last-biases", kb, s, 0.6, inference + kb * 512) for kb in (16, 64) for s in (0, 1)
    ]
    records += [
        {
            "task": "fsdd",
            "method": "float_full",
            "budget_kb": None,
            "seed": s,
            "available": True,
            "reason": None,
            "accuracy": 0.9,
            "metrics": {"training_arena": None, "fits_nrf52840": None},
        }
        for s in (0, 1)
    ]
    records.append(
        {
            "task": "fsdd",
            "method": "lowrank",
            "budget_kb": 16,
            "seed": 0,
            "available": False,
            "reason": "missing",
            "over_budget": False,
            "accuracy": None,
            "metrics": None,
        }
    )
    summary = runs.aggregate(records, [16, 64], {"fsdd": inference})
    model = {
        "title": "speech_commands12 → fsdd",
        "checkpoint": "ds_cnn",
        "model_bytes": 1,
        "inference_arena": inference,
        "classifier_arena": 2,
        "full_backprop_arena": 3,
        "all_weights": 100,
        "convert": {
            "checkpoint_upstream_test_accuracy": 0.9,
            "head": {"probe_calibration_accuracy": 0.8},
        },
    }
    env = {
        "cpu_model": "cpu",
        "cpus_usable": 2,
        "load_average_at_start": [1, 1, 1],
        "load_average_at_end": [1, 1, 1],
        "python": "3",
        "numpy": "2",
        "tensorflow": "2",
        "tf_keras": "2",
        "host_cflags": "-O2",
        "git_commit": "abc",
        "runtime_uncommitted": [],
        "date_utc": "today",
    }
    config = {
        "methods": ["float_full", "classifier", "last-biases", "lowrank"],
        "budgets_kb": [16, 64],
        "seeds": [0, 1],
        "epochs": 1,
        "train_samples": 2,
        "test_samples": 2,
        "jobs": 2,
        "vision_backbone": "mcunet_tinyimagenet32",
        "settings": CONFIG["settings"],
        "float": {"learning_rate": 1e-3, "batch_size": 8},
        "analysis_samples": 1,
        "analysis_val_samples": 1,
        "analysis_epochs": 1,
        "analysis_layers": 1,
    }
    return {
        "command": "python benchmarks/update_schemes.py",
        "config": config,
        "environment": env,
        "board_room": 245760,
        "wall_seconds": {"total": 60, "conversion": 0, "jobs": 60},
        "models": {"fsdd": model},
        "backbone_comparison": [],
        "summary": summary,
        "accuracy_before": {"fsdd": 0.1},
        "records": records,
        "outputs": {"png": str(tmp_path / "u.png")},
    }


def test_aggregate_marks_budgets(tmp_path):
    summary = _data(tmp_path)["summary"]["fsdd"]
    classifier = summary["classifier"]
    assert classifier["16"]["fits_budget"] is False and classifier["64"]["fits_budget"]
    assert classifier["16"]["accuracy_mean"] == pytest.approx(0.55)
    assert classifier["16"]["accuracy_std"] == pytest.approx(0.05)
    assert summary["last-biases"]["64"]["fits_budget"]
    assert summary["float_full"]["none"]["accuracy_mean"] == pytest.approx(0.9)
    assert not summary["lowrank"]["16"]["available"]


def test_report_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    data = _data(tmp_path)
    text = report.render(data)
    assert "0.550 ± 0.050" in text and "over budget" in text
    assert "## Definitions" in text and "## What is weak" in text
    report.plot(data, tmp_path / "u.png")
    assert (tmp_path / "u.png").stat().st_size > 0
    json.dumps(data)  # the report's data stays JSON


# -- a task given on the command line -------------------------------------------------------

REPO = TESTS.parent
SCRIPT = REPO / "benchmarks" / "update_schemes.py"


def _digits(tmp_path, shape=None, labels=None):
    """The committed FSDD subset as a task dataset (optionally reshaped or
    relabelled)."""
    with np.load(EXAMPLES / "fsdd.npz") as data:
        arrays = {k: data[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    if shape is not None:
        arrays["x_train"] = arrays["x_train"].reshape((len(arrays["x_train"]),) + shape)
    if labels is not None:
        arrays["y_train"] = arrays["y_train"] % labels + (labels - 10 if labels > 10 else 0)
    path = tmp_path / "digits.npz"
    np.savez(path, **arrays)
    return path


def _run_benchmark(tmp_path, *args):
    return subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            *args,
            "--seeds",
            "0",
            "--budgets_kb",
            "32",
            "--train_samples",
            "30",
            "--test_samples",
            "30",
            "--epochs",
            "1",
            "--jobs",
            "1",
            "--cache_dir",
            str(tmp_path / "cache"),
            "--out",
            str(tmp_path / "report.md"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.firmware
def test_every_scheme_runs_on_a_task_given_on_the_command_line(tmp_path):
    data = _digits(tmp_path)
    model = EXAMPLES / "ds_cnn_fsdd.tflite"
    result = _run_benchmark(
        tmp_path,
        "--task_model",
        str(model),
        "--task_data",
        str(data),
        "--methods",
        "float_full,classifier,last-biases",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["config"]["tasks"] == ["digits"]
    assert report["config"]["user_task"]["model_file"] == str(model)
    assert report["models"]["digits"]["model_sha256"] == tasks.file_sha256(model)
    by_method = {r["method"]: r for r in report["records"]}
    assert set(by_method) == {"float_full", "classifier", "last-biases"}
    assert by_method["float_full"]["accuracy"] is None
    assert "needs a Keras checkpoint" in by_method["float_full"]["reason"]
    for method in ("classifier", "last-biases"):
        assert 0.0 <= by_method[method]["accuracy"] <= 1.0
        assert by_method[method]["metrics"]["training_arena"] > 0
    text = (tmp_path / "report.md").read_text()
    assert "ds_cnn_fsdd.tflite → digits" in text and "Before training" in text


@pytest.mark.slow
@pytest.mark.parametrize(
    "problem,message",
    [
        ("shape", "shaped (49, 40, 1)"),
        ("labels", "outputs but the labels"),
        ("no data", "--task_model and --task_data go together"),
        ("not a model", "neither an int8 .tflite file nor a checkpoint"),
    ],
)
def test_a_task_that_does_not_fit_its_model_is_refused_with_the_reason(tmp_path, problem, message):
    model = str(EXAMPLES / "ds_cnn_fsdd.tflite")
    if problem == "shape":
        args = ["--task_model", model, "--task_data", str(_digits(tmp_path, shape=(40, 49, 1)))]
    elif problem == "labels":
        args = ["--task_model", model, "--task_data", str(_digits(tmp_path, labels=12))]
    elif problem == "no data":
        args = ["--task_model", model]
    else:
        args = ["--task_model", "no_such_model", "--task_data", str(_digits(tmp_path))]
    result = _run_benchmark(tmp_path, *args, "--methods", "classifier")
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "report.md").exists()


def test_results_written_before_the_registry_names_read_under_todays_names():
    """Results written before the benchmark took planning.schemes' names
    (benchmarks/reference/update_schemes_9cb413e.json, one such run) call
    the searched scheme "sparse" and last-biases "bias"; read back, they
    carry today's names."""
    old = json.loads(
        (TESTS.parent / "benchmarks" / "reference" / "update_schemes_9cb413e.json").read_text()
    )
    for legacy, current in (("sparse", "sparse-search"), ("bias", "last-biases")):
        count = sum(r["method"] == legacy for r in old["records"])
        data = methods.with_current_names(copy.deepcopy(old))
        assert legacy not in data["config"]["methods"]
        assert current in data["config"]["methods"]
        assert sum(r["method"] == current for r in data["records"]) == count > 0
        assert all(
            current in by_method and legacy not in by_method
            for by_method in data["summary"].values()
        )
    assert "sparse (searched)" in report.render(data)
    assert "last biases" in report.render(data)
    old["command"] = "benchmarks/update_schemes.py --methods classifier,bias,sparse --seeds 0"
    assert methods.with_current_names(old)["command"] == (
        "benchmarks/update_schemes.py --methods classifier,last-biases,sparse-search --seeds 0"
    )


def test_an_old_method_name_is_refused_with_its_new_name(tmp_path):
    result = _run_benchmark(tmp_path, "--methods", "classifier,bias")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "unknown methods ['bias'] (bias is now last-biases)" in result.stderr


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"config": ', "is not an update-scheme run's .json: Expecting value"),
        ("[1, 2]", "is not an update-scheme run's .json: no config"),
        ('{"config": {"settings": {}}, "records": []}', "lacks part of what the report reads"),
        (None, "No such file"),
    ],
)
def test_from_json_refuses_a_file_no_run_wrote_and_writes_nothing(tmp_path, content, message):
    given = tmp_path / "run.json"
    if content is not None:
        given.write_text(content)
    out = tmp_path / "out" / "report.md"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--from_json", str(given), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not out.parent.exists()
