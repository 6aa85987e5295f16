"""Update-scheme benchmark: accuracy against training memory of the ways to
choose what trains on the device, on three transfer tasks, at budgets of
extra training memory beyond the model's inference arena.

  python benchmarks/update_schemes.py            # the full benchmark (30-45 min, 2 cores)
  python benchmarks/update_schemes.py --quick    # a smoke run (a few minutes)
  python benchmarks/update_schemes.py --task_model my.tflite --task_data my.npz
                                                 # every scheme on your own task

Tasks: tinyimagenet32 -> gtsrb32, tinyimagenet32 -> flowers32 (the
--vision_backbone checkpoint) and speech_commands12 -> fsdd (the DS-CNN
checkpoint), from pipeline/checkpoints and --data_dir; or one task of your
own (--task_model: an int8 .tflite trained as it is, or a checkpoint given a
new head; --task_data: its .npz). Methods: float full
fine-tuning in TensorFlow (the reference, no budget), and in the int8
runtime (tflm_training.Trainer on the host, bit-identical to the device):
classifier-only, bias-only, searched sparse update, TraDy, low-rank.
See benchmarks/README.md and its results (README.md, "Measurements").

Writes a markdown report (--out), the raw numbers (--json_out, default
--out with .json) and a plot (--png_out, default --out with .png).
Converted models and prepared samples are cached under --cache_dir.
"""

import dataclasses
import json
import multiprocessing
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from absl import app, flags

from benchmarks import environment
from benchmarks import report as common
from benchmarks import update_schemes_methods as methods
from benchmarks import update_schemes_report as report
from benchmarks import update_schemes_runs as runs
from benchmarks import update_schemes_tasks as tasks
from planning import contribution

RESULTS = REPO / "benchmarks" / "results"

_TASKS = flags.DEFINE_list(
    "tasks", list(tasks.TASK_NAMES), f"Tasks, any of {', '.join(tasks.TASK_NAMES)}."
)
_TASK_MODEL = flags.DEFINE_string(
    "task_model",
    None,
    "Your own task instead of the built-in ones: an int8 .tflite "
    "(trained as it is; no float reference) or the name of a checkpoint in "
    "pipeline/checkpoints (QAT on its upstream dataset from --data_dir and a new head). "
    "Needs --task_data.",
)
_TASK_DATA = flags.DEFINE_string(
    "task_data",
    None,
    "Your task's dataset: an .npz with x_train, y_train, x_test, y_test "
    "(uint8 samples shaped like the model's input, quantized as x / 255).",
)
_TASK_NAME = flags.DEFINE_string(
    "task_name", None, "Your task's name in the report (default: the --task_data file's stem)."
)
_METHODS = flags.DEFINE_list(
    "methods", list(methods.METHODS), f"Methods, any of {', '.join(methods.METHODS)}."
)
_BUDGETS = flags.DEFINE_list(
    "budgets_kb",
    ["16", "32", "64", "128"],
    "Extra training memory beyond the inference arena, in KB (1024 bytes).",
)
_SEEDS = flags.DEFINE_list(
    "seeds",
    ["0", "1", "2"],
    "Seeds (training samples, their order, the float head's init, the searches' draws).",
)
_EPOCHS = flags.DEFINE_integer(
    "epochs", 4, "Passes over the training samples (every method).", lower_bound=1
)
_TRAIN = flags.DEFINE_integer(
    "train_samples",
    800,
    "Training samples per seed (class-balanced, from the train split less the calibration split).",
    lower_bound=1,
)
_TEST = flags.DEFINE_integer(
    "test_samples",
    500,
    "Test samples (class-balanced subset of the test split; the same for all seeds).",
    lower_bound=1,
)
_LR = flags.DEFINE_float("learning_rate", 0.02, "SGD learning rate of the int8 schemes.")
_MOMENTUM = flags.DEFINE_float("momentum", 0.0, "SGD momentum of the int8 schemes.")
_BATCH = flags.DEFINE_integer("batch_size", 1, "Batch size of the int8 schemes.", lower_bound=1)
_GRADIENT_BITS = flags.DEFINE_enum(
    "gradient_bits",
    "32",
    ["32", "16"],
    "Bits of the int8 schemes' stored activation "
    "gradients: 16 (bfloat16) halves their buffers, so budgets hold deeper plans "
    "(benchmarks/gradient_bits.py compares a run of each).",
)
_LOWRANK_LR = flags.DEFINE_float(
    "lowrank_learning_rate",
    0.02,
    "Adam learning rate of the low-rank layers (in "
    "quantization steps per Adam step, QAS; planning.lowrank).",
)
_FLOAT_LR = flags.DEFINE_float(
    "float_learning_rate", 1e-3, "Adam learning rate of the float fine-tuning."
)
_FLOAT_BATCH = flags.DEFINE_integer(
    "float_batch_size", 8, "Batch size of the float fine-tuning.", lower_bound=1
)
_ANALYSIS_SAMPLES = flags.DEFINE_integer(
    "analysis_samples",
    600,
    "Training samples of each contribution-analysis run (drawn from the seed's training samples).",
    lower_bound=1,
)
_ANALYSIS_VAL = flags.DEFINE_integer(
    "analysis_val_samples",
    200,
    "Held-out samples of the contribution analysis (also "
    "from the seed's TRAINING samples; never the test split).",
    lower_bound=1,
)
_ANALYSIS_EPOCHS = flags.DEFINE_integer(
    "analysis_epochs", 3, "Epochs of each contribution-analysis run.", lower_bound=1
)
_ANALYSIS_METRIC = flags.DEFINE_enum(
    "analysis_metric",
    "loss",
    ["loss", "accuracy"],
    "What a contribution is: the drop of the held-out loss or the held-out accuracy gain.",
)
_ANALYSIS_LAYERS = flags.DEFINE_integer(
    "analysis_layers",
    16,
    "Trainable layers before "
    "the classifier whose weight ratios the analysis "
    "(and the search) considers.",
    lower_bound=1,
)
_ANALYSIS_BIAS_LAYERS = flags.DEFINE_integer(
    "analysis_bias_layers",
    0,
    "Trainable layers before the classifier the analysis's bias "
    "depths (and the search's) reach over (0: all).",
    lower_bound=0,
)
_SEARCH_TRIALS = flags.DEFINE_integer(
    "search_trials",
    4,
    "The searched sparse plan is the best measured of the search's "
    "best plans of N shapes and the best bias-only plan, each trained like an analysis run "
    "(planning.search_trials); 0: the search's best predicted plan.",
    lower_bound=0,
)
_TRADY_SAMPLES = flags.DEFINE_integer(
    "trady_samples",
    128,
    "Training samples TraDy ranks the layers' gradient norms on "
    "(from the seed's training samples).",
    lower_bound=1,
)
_TRADY_LAYERS = flags.DEFINE_integer(
    "trady_layers", 0, "Trainable layers before the classifier TraDy ranks (0: all).", lower_bound=0
)
_VISION = flags.DEFINE_enum(
    "vision_backbone",
    tasks.VISION_BACKBONES[0],
    list(tasks.VISION_BACKBONES),
    "Checkpoint of the image tasks.",
)
_COMPARE = flags.DEFINE_bool(
    "compare_backbones",
    True,
    "Also measure the other vision checkpoint (classifier-only, seed 0) to justify the choice.",
)
_JOBS = flags.DEFINE_integer("jobs", 2, "Worker processes.", lower_bound=1)
_DATA_DIR = flags.DEFINE_string(
    "data_dir", str(tasks.DEFAULT_DATA_DIR), "Folder of the datasets (../shared/data)."
)
_CACHE_DIR = flags.DEFINE_string(
    "cache_dir", str(tasks.DEFAULT_CACHE_DIR), "Converted models, samples, analyses."
)
_REUSE_FLOAT = flags.DEFINE_bool(
    "reuse_float",
    False,
    "Reuse cached float fine-tuning results with the same samples and settings.",
)
_QUICK = flags.DEFINE_bool(
    "quick",
    False,
    "Smoke run: seed 0, budgets 32 and 128 KB, "
    "60 training and 60 test samples, 1 epoch, a small analysis, "
    "no backbone comparison; writes under --cache_dir unless "
    "--out is given.",
)
_OUT = flags.DEFINE_string(
    "out", None, "Markdown report (default benchmarks/results/update_schemes.md)."
)
_JSON_OUT = flags.DEFINE_string("json_out", None, "Raw numbers (default: --out with .json).")
_PNG_OUT = flags.DEFINE_string("png_out", None, "Plot (default: --out with .png).")
_FROM_JSON = flags.DEFINE_string(
    "from_json",
    None,
    "Only write the report and plot again from the raw numbers of an earlier run (its .json).",
)

QUICK = {
    "seeds": [0],
    "budgets_kb": [32, 128],
    "train_samples": 60,
    "test_samples": 60,
    "epochs": 1,
    "analysis_samples": 40,
    "analysis_val_samples": 20,
    "analysis_layers": 2,
    "analysis_bias_layers": 4,
    "search_trials": 2,
    "trady_samples": 20,
    "compare_backbones": False,
}


def user_task():
    """The command-line task as a dict of Task fields, or None."""
    if _TASK_MODEL.value is None and _TASK_DATA.value is None:
        return None
    if _TASK_MODEL.value is None or _TASK_DATA.value is None:
        raise tasks.TaskError("--task_model and --task_data go together: give both")
    task = tasks.user_task(_TASK_MODEL.value, _TASK_DATA.value, _TASK_NAME.value)
    return dataclasses.asdict(task)


def config():
    user = user_task()
    result = {
        "tasks": [user["name"]] if user else list(_TASKS.value),
        "user_task": user,
        "methods": list(_METHODS.value),
        "budgets_kb": [int(b) for b in _BUDGETS.value],
        "seeds": [int(s) for s in _SEEDS.value],
        "epochs": _EPOCHS.value,
        "train_samples": _TRAIN.value,
        "test_samples": _TEST.value,
        "settings": {
            "learning_rate": _LR.value,
            "momentum": _MOMENTUM.value,
            "batch_size": _BATCH.value,
            "qas": True,
            "residual": True,
            "lowrank_learning_rate": _LOWRANK_LR.value,
            "gradient_bits": int(_GRADIENT_BITS.value),
        },
        "float": {
            "learning_rate": _FLOAT_LR.value,
            "batch_size": _FLOAT_BATCH.value,
            "optimizer": "Adam",
        },
        "analysis_samples": _ANALYSIS_SAMPLES.value,
        "analysis_val_samples": _ANALYSIS_VAL.value,
        "analysis_epochs": _ANALYSIS_EPOCHS.value,
        "analysis_layers": _ANALYSIS_LAYERS.value,
        "analysis_bias_layers": _ANALYSIS_BIAS_LAYERS.value,
        "analysis_metric": _ANALYSIS_METRIC.value,
        "search_trials": _SEARCH_TRIALS.value,
        "trady_samples": _TRADY_SAMPLES.value,
        "trady_layers": _TRADY_LAYERS.value,
        "vision_backbone": _VISION.value,
        "compare_backbones": _COMPARE.value and user is None,
        "jobs": _JOBS.value,
        "data_dir": str(pathlib.Path(_DATA_DIR.value).resolve()),
        "cache_dir": str(pathlib.Path(_CACHE_DIR.value).resolve()),
        "reuse_float": _REUSE_FLOAT.value,
        "quick": _QUICK.value,
    }
    if _QUICK.value:
        result.update(QUICK)
    return result


def _check_flags():
    for name, given, known in (
        ("tasks", _TASKS.value, tasks.TASK_NAMES),
        ("methods", _METHODS.value, methods.METHODS),
    ):
        unknown = sorted(set(given) - set(known))
        renamed = [
            f"{m} is now {methods.LEGACY_METHODS[m]}"
            for m in unknown
            if m in methods.LEGACY_METHODS
        ]
        if unknown:
            hint = f" ({'; '.join(renamed)})" if renamed else ""
            raise app.UsageError(f"unknown {name} {unknown}{hint}; known: {list(known)}")


def output_paths(cfg):
    if _OUT.value:
        out = pathlib.Path(_OUT.value)
    elif cfg["quick"]:
        out = pathlib.Path(cfg["cache_dir"]) / "quick" / "update_schemes.md"
    else:
        out = RESULTS / "update_schemes.md"
    return (
        out,
        pathlib.Path(_JSON_OUT.value or out.with_suffix(".json")),
        pathlib.Path(_PNG_OUT.value or out.with_suffix(".png")),
    )


# -- models --------------------------------------------------------------------------


def model_summary(cfg, task_name, backbone):
    import hashlib

    task = tasks.task_of(cfg, task_name, backbone)
    folder = tasks.model_dir(cfg["cache_dir"], task, cfg["data_dir"])
    model = (folder / "model.tflite").read_bytes()
    convert = json.loads((folder / "convert.json").read_text())
    classifier = methods.classifier_scheme(model, runs.settings_of(cfg)).plan
    return {
        "checkpoint": task.checkpoint,
        "title": task.title,
        "model_bytes": len(model),
        "model_sha256": hashlib.sha256(model).hexdigest(),
        "inference_arena": methods.inference_arena(model),
        "classifier_arena": methods.training_arena(model, classifier),
        "full_backprop_arena": methods.training_arena(
            model, methods.full_plan(model, runs.settings_of(cfg))
        ),
        "all_weights": methods.all_weights(model),
        "trainable_layers": len(contribution.candidate_layers(model)) + 1,
        "convert": convert,
        "path": str(folder / "model.tflite"),
    }


# -- running ------------------------------------------------------------------------


def _run_one(args):
    job, cfg = args
    return runs.run_job(job, cfg)


def run_jobs(cfg, jobs):
    records = []
    started = time.time()
    context = multiprocessing.get_context("fork")
    with context.Pool(cfg["jobs"], maxtasksperchild=1) as pool:
        for i, result in enumerate(pool.imap_unordered(_run_one, [(j, cfg) for j in jobs])):
            records.extend(result)
            first = result[0]
            done = [
                f"{r['budget_kb'] or '-'}:"
                + ("n/a" if r["accuracy"] is None else f"{r['accuracy']:.3f}")
                for r in result
            ]
            print(
                f"[{time.time() - started:6.0f} s] {i + 1}/{len(jobs)} {first['task']} "
                f"{first['method']} seed {first['seed']}: {' '.join(done)}",
                flush=True,
            )
    return records


def preload():
    """Loads the runtime library before the workers fork (the scheme
    modules are imported already), so that every job runs the same code
    even if the files change during the run (other work may rebuild the
    library)."""
    from tflm_training import _native

    _native.library()
    _native.library(16)


def run_all(cfg):
    started = time.time()
    load_at_start = environment.load_average()
    environment.require_host_library()
    for name in cfg["tasks"]:
        runs.ensure_model(cfg, name, cfg["vision_backbone"])
    other = [b for b in tasks.VISION_BACKBONES if b != cfg["vision_backbone"]]
    compare = (
        [n for n in cfg["tasks"] if n in ("gtsrb32", "flowers32")]
        if cfg["compare_backbones"]
        else []
    )
    for name in compare:
        runs.ensure_model(cfg, name, other[0])
    converted = time.time()
    preload()
    jobs = runs.make_jobs(cfg["tasks"], cfg["methods"], cfg["seeds"], cfg["budgets_kb"])
    jobs += [
        runs.Job(name, "classifier", cfg["seeds"][0], (), 1.0, backbone)
        for name in compare
        for backbone in other
    ]
    records = run_jobs(cfg, jobs)
    main_records = [r for r in records if not r.get("backbone")]
    models = {name: model_summary(cfg, name, cfg["vision_backbone"]) for name in cfg["tasks"]}
    inference = {name: m["inference_arena"] for name, m in models.items()}
    env = environment.describe(load_at_start)
    env.update(
        {
            name: environment.package_version(name)
            for name in ("tensorflow", "tf_keras", "tensorflow-model-optimization")
        }
    )
    return {
        "command": environment.command_line(),
        "config": cfg,
        "environment": env,
        "board_room": methods.board_room(),
        "wall_seconds": {
            "total": round(time.time() - started, 1),
            "conversion": round(converted - started, 1),
            "jobs": round(time.time() - converted, 1),
        },
        "models": models,
        "backbone_comparison": backbone_comparison(cfg, records, compare, other),
        "summary": runs.aggregate(main_records, cfg["budgets_kb"], inference),
        "accuracy_before": accuracy_before(main_records),
        "records": records,
    }


def accuracy_before(records):
    """{task: mean test accuracy of the untrained new head over the seeds}."""
    values = {}
    for r in records:
        if r["method"] == "classifier" and r.get("accuracy_before") is not None:
            values.setdefault(r["task"], []).append(r["accuracy_before"])
    return {task: sum(v) / len(v) for task, v in values.items()}


def backbone_comparison(cfg, records, compare, other):
    rows = []
    for name in compare:
        for backbone in [cfg["vision_backbone"]] + other:
            summary = model_summary(cfg, name, backbone)
            hit = [
                r
                for r in records
                if r["task"] == name
                and r["method"] == "classifier"
                and r["seed"] == cfg["seeds"][0]
                and (r.get("backbone") or cfg["vision_backbone"]) == backbone
            ]
            rows.append(
                {
                    "task": name,
                    "checkpoint": backbone,
                    "upstream_accuracy": summary["convert"]["checkpoint_upstream_test_accuracy"],
                    "probe_calibration_accuracy": summary["convert"]["head"][
                        "probe_calibration_accuracy"
                    ],
                    "inference_arena": summary["inference_arena"],
                    "classifier_arena": summary["classifier_arena"],
                    "model_bytes": summary["model_bytes"],
                    "classifier_accuracy": hit[0]["accuracy"] if hit else None,
                }
            )
    return rows


def write_results(data, paths):
    """The report, its numbers and its plot, each written whole (beside,
    then renamed), all made before the first is written."""
    out, json_out, png_out = paths
    data["outputs"] = {"markdown": str(out), "json": str(json_out), "png": str(png_out)}
    text = report.render(data)
    numbers = json.dumps(data, indent=1, default=_json_default) + "\n"
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
    plot = png_out.with_name(png_out.name + ".part")
    try:
        report.plot(data, plot)
        plot.replace(png_out)
    finally:
        plot.unlink(missing_ok=True)
    common.write_whole(out, text)
    common.write_whole(json_out, numbers)
    print(f"wrote {out}, {json_out} and {png_out}")


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    _check_flags()
    if _FROM_JSON.value:
        try:
            data = methods.load_run(_FROM_JSON.value)
            write_results(data, output_paths(data["config"]))
        except (OSError, methods.RunFileError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        except (KeyError, TypeError, ValueError) as error:
            print(
                f"error: {_FROM_JSON.value} lacks part of what the report reads "
                f"({type(error).__name__}: {error}); give the .json an update-scheme run wrote",
                file=sys.stderr,
            )
            return 2
        return 0
    try:
        cfg = config()
        paths = output_paths(cfg)
        data = run_all(cfg)
    except tasks.TaskError as e:  # a command-line task that does not fit its model
        print(f"error: {e}", file=sys.stderr)
        return 2
    write_results(data, paths)
    return 0


if __name__ == "__main__":
    app.run(main)
