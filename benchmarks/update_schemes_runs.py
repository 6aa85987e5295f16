"""The update-scheme benchmark's jobs: one job trains one scheme (at every
budget) of one task and seed, or fine-tunes the float model in TensorFlow
(a child process); the harness runs them in a process pool and
aggregates their records.

A record: {"task", "method", "budget_kb" (None: no budget), "seed",
"available", "reason", "metrics", "info", "accuracy", "losses", "seconds"}.
"""

import dataclasses
import hashlib
import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np

from benchmarks import update_schemes_extra as extra
from benchmarks import update_schemes_methods as methods
from benchmarks import update_schemes_tasks as tasks

REPO = tasks.REPO
KERAS_SCRIPT = REPO / "benchmarks" / "update_schemes_keras.py"


@dataclasses.dataclass(frozen=True)
class Job:
    task: str
    method: str
    seed: int
    budgets_kb: tuple  # () for budget-free methods (classifier, float_full)
    cost: float  # estimated relative cost, for scheduling (largest first)
    backbone: str = None  # another vision checkpoint than the config's (comparison)


def make_jobs(task_names, method_names, seeds, budgets_kb):
    jobs = []
    weight = {
        "float_full": 1.5,
        "classifier": 1.0,
        "last-biases": 4.0,
        "sparse-search": 8.0,
        "trady": 5.0,
        "lowrank": 5.0,
    }
    for task in task_names:
        for seed in seeds:
            for method in method_names:
                budgets = tuple(budgets_kb) if method in methods.BUDGETED else ()
                jobs.append(Job(task, method, seed, budgets, weight.get(method, 1.0)))
    return sorted(jobs, key=lambda j: -j.cost)


# -- the shared context of a job ------------------------------------------------------


def load_model(config, task_name, vision_backbone=None):
    """(task, model bytes, model folder) of a converted task model."""
    task = tasks.task_of(config, task_name, vision_backbone)
    folder = tasks.model_dir(config["cache_dir"], task, config["data_dir"])
    return task, (folder / "model.tflite").read_bytes(), folder


def input_quantization(model_bytes):
    import tflm_training

    details = tflm_training.Interpreter.from_bytes(model_bytes).get_input_details(0)
    quant = details["quantization_parameters"]
    return float(quant["scales"][0]), int(quant["zero_points"][0])


def samples_for(config, task, model_bytes, seed):
    return tasks.load_samples(
        task,
        config["data_dir"],
        input_quantization(model_bytes),
        config["train_samples"],
        config["test_samples"],
        seed,
        config["cache_dir"],
    )


def settings_of(config):
    return methods.Settings(**config["settings"])


# -- int8 jobs ---------------------------------------------------------------------------


def _record(job, budget_kb, scheme=None, **fields):
    record = {
        "task": job.task,
        "method": job.method,
        "budget_kb": budget_kb,
        "seed": job.seed,
        "backbone": job.backbone,
        "available": scheme is not None and scheme.available,
        "reason": None if scheme is None else scheme.reason,
        "over_budget": scheme is not None and scheme.over_budget,
        "metrics": None,
        "info": {},
        "accuracy": None,
        "losses": [],
        "seconds": None,
    }
    record.update(fields)
    return record


def _metrics(model_bytes, scheme, settings, room, epochs):
    if scheme.schedule is not None:
        per_epoch = [
            methods.plan_metrics(model_bytes, p, settings, room)
            for p in scheme.schedule.epoch_plans(epochs)
        ]
        metrics = methods.mean_metrics(per_epoch)
        real = methods.plan_metrics(model_bytes, scheme.schedule.plan, settings, room)
        # The arena and saved activations are those of the real (sampled) plan.
        for key in (
            "training_arena",
            "memory",
            "fits_nrf52840",
            "saved_activation_bytes",
            "activation_sparsity",
            "layers",
        ):
            metrics[key] = real[key]
        return metrics
    return methods.plan_metrics(model_bytes, scheme.plan, settings, room)


def _train(job, budget_kb, model_bytes, scheme, samples, config, room):
    settings = settings_of(config)
    if not scheme.available:
        return _record(job, budget_kb, scheme)
    metrics = _metrics(model_bytes, scheme, settings, room, config["epochs"])
    started = time.process_time()
    result = methods.train_and_evaluate(model_bytes, scheme, samples, config["epochs"], job.seed)
    info = {k: v for k, v in scheme.info.items() if k != "plan"}
    return _record(
        job,
        budget_kb,
        scheme,
        metrics=metrics,
        info=info,
        accuracy=result["accuracy"],
        losses=result["losses"],
        diverged=result.get("diverged"),
        seconds=round(time.process_time() - started, 2),
    )


def _schemes(job, model_bytes, samples, config, folder):
    """[(budget_kb, Scheme)] of an int8 job (budget_kb None for classifier)."""
    settings = settings_of(config)
    if job.method == "classifier":
        return [(None, methods.classifier_scheme(model_bytes, settings))]
    inference = methods.inference_arena(model_bytes)
    budgets = [(kb, inference + kb * 1024) for kb in job.budgets_kb]
    if job.method == "last-biases":
        return [(kb, methods.last_biases_scheme(model_bytes, b, settings)) for kb, b in budgets]
    if job.method == "sparse-search":
        cache = folder / "contribution" / f"seed{job.seed}-{_config_digest(config)}.json"
        table = extra.contribution_table(model_bytes, samples, settings, config, job.seed, cache)
        top = config.get("search_trials", 0)
        trials = (extra.analysis_data(samples, config), top, cache) if top else None
        return [
            (kb, extra.sparse_search_scheme(model_bytes, b, settings, table, job.seed, trials))
            for kb, b in budgets
        ]
    if job.method == "trady":
        ranking = extra.trady_ranking(model_bytes, samples, settings, config, job.seed)
        return [(kb, extra.trady_scheme(model_bytes, b, ranking, job.seed)) for kb, b in budgets]
    if job.method == "lowrank":
        return [(kb, extra.lowrank_scheme(model_bytes, b, settings)) for kb, b in budgets]
    raise ValueError(f"unknown method {job.method!r}")


def _config_digest(config):
    keys = (
        "train_samples",
        "test_samples",
        "settings",
        "analysis_samples",
        "analysis_val_samples",
        "analysis_epochs",
        "analysis_layers",
        "analysis_bias_layers",
    )
    values = {k: config.get(k) for k in keys}
    # The analysis trains with float32 gradients whatever the schemes use.
    values["settings"] = {
        k: v for k, v in (values["settings"] or {}).items() if k != "gradient_bits"
    }
    text = json.dumps(values, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def run_int8_job(job, config):
    task, model_bytes, folder = load_model(config, job.task, job.backbone)
    samples = samples_for(config, task, model_bytes, job.seed)
    return int8_records(job, model_bytes, samples, config, folder)


def int8_records(job, model_bytes, samples, config, folder):
    """The records of an int8 job on `samples` (update_schemes_tasks.Samples);
    `folder` holds the job's caches (the contribution analysis)."""
    room = methods.board_room()
    started = time.process_time()
    try:
        schemes = _schemes(job, model_bytes, samples, config, folder)
    except Exception as error:
        # A scheme module's failure must not take the benchmark down.
        reason = f"{type(error).__name__}: {error}"
        return [
            _record(job, kb, methods.Scheme(job.method, None, None, reason=reason))
            for kb in (job.budgets_kb or (None,))
        ]
    setup = round(time.process_time() - started, 2)
    records = []
    for budget_kb, scheme in schemes:
        record = _train(job, budget_kb, model_bytes, scheme, samples, config, room)
        record["setup_seconds"] = setup
        records.append(record)
    if job.method == "classifier":
        import tflm_training

        trainer = tflm_training.Trainer(model_bytes, schemes[0][1].plan)
        records[0]["accuracy_before"] = trainer.evaluate(samples.test_x, samples.test_y)
    return records


# -- the float reference --------------------------------------------------------------


def _task_args(task):
    """How the Keras script is told the task: by name, or whole (a
    command-line task)."""
    if task.data_file:
        return ["--task_spec", json.dumps(dataclasses.asdict(task))]
    return ["--task", task.name]


def run_float_job(job, config):
    task, model_bytes, _ = load_model(config, job.task)
    if task.model_file:
        return [
            _record(
                job,
                None,
                methods.Scheme(
                    "float_full",
                    None,
                    None,
                    reason="the float reference needs a Keras checkpoint; "
                    "this task's model is a .tflite",
                ),
            )
        ]
    samples_for(config, task, model_bytes, job.seed)  # makes sure the cache file exists
    samples_path = _samples_path(config, task, model_bytes, job.seed)
    out = (
        pathlib.Path(config["cache_dir"])
        / task.name
        / "float"
        / (f"seed{job.seed}-{_float_digest(config, samples_path)}.json")
    )
    if not (config["reuse_float"] and out.is_file()):
        out.parent.mkdir(parents=True, exist_ok=True)
        float_config = config["float"]
        command = [
            sys.executable,
            str(KERAS_SCRIPT),
            "--mode",
            "finetune",
            *_task_args(task),
            "--vision_backbone",
            config["vision_backbone"],
            "--samples",
            str(samples_path),
            "--seed",
            str(job.seed),
            "--epochs",
            str(config["epochs"]),
            "--batch_size",
            str(float_config["batch_size"]),
            "--learning_rate",
            str(float_config["learning_rate"]),
            "--out",
            str(out),
        ]
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            check=False,
            cwd=REPO,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
        )
        if result.returncode != 0:
            tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
            return [
                _record(
                    job,
                    None,
                    methods.Scheme("float_full", None, None, reason=f"TensorFlow failed: {tail}"),
                )
            ]
    data = json.loads(out.read_text())
    metrics = {
        "training_arena": None,
        "fits_nrf52840": None,
        "trained_weights": data["trainable_weights"],
    }
    return [
        _record(
            job,
            None,
            methods.Scheme("float_full", None, "tensorflow"),
            metrics=metrics,
            accuracy=data["accuracy"],
            losses=data["losses"],
            seconds=data["cpu_seconds"],
            accuracy_before=data["accuracy_before"],
        )
    ]


def _samples_path(config, task, model_bytes, seed):
    return tasks.samples_path(
        task,
        config["data_dir"],
        input_quantization(model_bytes),
        config["train_samples"],
        config["test_samples"],
        seed,
        config["cache_dir"],
    )


def _float_digest(config, samples_path):
    text = json.dumps(
        [str(samples_path.name), config["epochs"], config["float"], config["vision_backbone"]],
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def run_job(job, config):
    """A job's records (called in a worker process)."""
    started = time.time()
    if job.method == "float_full":
        records = run_float_job(job, config)
    else:
        records = run_int8_job(job, config)
    for record in records:
        record["job_wall_seconds"] = round(time.time() - started, 1)
    return records


# -- aggregation --------------------------------------------------------------------------


def _mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return float(np.mean(values)), float(np.std(values))


def aggregate(records, budgets_kb, inference_arenas):
    """{task: {method: {budget label: summary}}}; budget label is the KB
    number as a string, or "none" (float_full). Budget-free int8 methods
    (classifier) appear under every budget, with whether they fit it."""
    table = {}
    for record in records:
        table.setdefault(record["task"], {}).setdefault(record["method"], []).append(record)
    result = {}
    for task, by_method in table.items():
        result[task] = {}
        for method, rows in by_method.items():
            groups = {}
            for row in rows:
                groups.setdefault(row["budget_kb"], []).append(row)
            entries = {}
            for budget_kb, group in groups.items():
                if budget_kb is None and method != "float_full":
                    for kb in budgets_kb:
                        entries[str(kb)] = _summary(group, inference_arenas[task] + kb * 1024)
                else:
                    label = "none" if budget_kb is None else str(budget_kb)
                    budget = (
                        None if budget_kb is None else (inference_arenas[task] + budget_kb * 1024)
                    )
                    entries[label] = _summary(group, budget)
            result[task][method] = entries
    return result


def _summary(group, budget):
    group = sorted(group, key=lambda r: r["seed"])
    accuracies = [r["accuracy"] for r in group if r["available"]]
    mean, std = _mean_std(accuracies)
    metrics = [r["metrics"] for r in group if r["metrics"]]
    summary = {
        "available": any(r["available"] for r in group),
        "over_budget": any(r.get("over_budget") for r in group),
        "reasons": sorted({r["reason"] for r in group if r["reason"]}),
        "seeds": [r["seed"] for r in group],
        "accuracies": [r["accuracy"] for r in group],
        "accuracy_mean": mean,
        "accuracy_std": std,
        "budget_bytes": budget,
    }
    if metrics:
        arenas = [m["training_arena"] for m in metrics if m.get("training_arena") is not None]
        summary["training_arena_max"] = max(arenas) if arenas else None
        summary["fits_budget"] = None if budget is None or not arenas else max(arenas) <= budget
        fits = [m.get("fits_nrf52840") for m in metrics]
        summary["fits_nrf52840"] = None if None in fits else all(fits)
        for key in (
            "weight_derivative_macs",
            "activation_sparsity",
            "weight_derivative_sparsity",
            "trained_weights",
        ):
            values = [m[key] for m in metrics if m.get(key) is not None]
            summary[key] = float(np.mean(values)) if values else None
        summary["layers"] = metrics[0].get("layers")
    return summary


def ensure_model(cfg, task_name, backbone):
    """The converted model's folder (converting in a TensorFlow child
    process when it is not cached; a .tflite task's model is copied)."""
    task = tasks.task_of(cfg, task_name, backbone)
    folder = tasks.model_dir(cfg["cache_dir"], task, cfg["data_dir"])
    if (folder / "model.tflite").is_file() and (folder / "convert.json").is_file():
        return folder
    if task.model_file:
        model = pathlib.Path(task.model_file).read_bytes()
        check_task_model(task, model, cfg["data_dir"])
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model.tflite").write_bytes(model)
        (folder / "convert.json").write_text(
            json.dumps(
                {"key": tasks.model_key(task, cfg["data_dir"])[0], "source": task.model_file},
                indent=1,
            )
        )
        return folder
    print(f"[{task_name}] converting {task.checkpoint} (QAT, new head; TensorFlow)", flush=True)
    command = [
        sys.executable,
        str(KERAS_SCRIPT),
        "--mode",
        "convert",
        *_task_args(task),
        "--vision_backbone",
        backbone,
        "--data_dir",
        cfg["data_dir"],
        "--out_dir",
        str(folder),
        f"--threads={cfg['jobs']}",
    ]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"converting {task.checkpoint} for {task_name} failed:\n"
            + "\n".join(result.stderr.strip().splitlines()[-15:])
        )
    return folder


def check_task_model(task, model_bytes, data_dir):
    """A .tflite task's model against its data: one int8 input shaped like
    the samples, as many logits as the labels need. Raises tasks.TaskError."""
    import tflm_training

    try:
        interpreter = tflm_training.Interpreter.from_bytes(model_bytes)
    except tflm_training.TflmTrainingError as e:
        raise tasks.TaskError(f"--task_model {task.model_file}: {e}") from None
    details = interpreter.get_input_details(0)
    x_train, y_train, _, y_test = tasks.load_downstream(task, data_dir)
    expected = tuple(int(d) for d in details["shape"][1:])
    if details["dtype"] != np.int8 or tuple(x_train.shape[1:]) != expected:
        raise tasks.TaskError(
            f"--task_model {task.model_file} takes {np.dtype(details['dtype'])} inputs shaped "
            f"{expected}, but --task_data {task.data_file} has x_train samples shaped "
            f"{tuple(x_train.shape[1:])} ({x_train.dtype}); give data shaped like the model's "
            "input (uint8 samples, quantized as x / 255)"
        )
    classes = int(np.prod(interpreter.get_output_details(0)["shape"]))
    labels = int(max(y_train.max(), y_test.max())) + 1
    if labels > classes:
        raise tasks.TaskError(
            f"--task_model {task.model_file} has {classes} outputs but the labels of "
            f"--task_data {task.data_file} go up to {labels - 1}; give a model with "
            f"{labels} outputs, or a checkpoint (which gets a new head)"
        )
