"""Which layers to train on the board, and how: the contribution analysis,
the memory-budgeted sparse-update search (Lin et al. 2022) and the TraDy
layer ranking and sampled plan (Quélennec et al. 2025), for one model and
the user's data, under one training-arena budget.

  python tools/analyze.py --budget_kb 104 --samples 200 --out build/analyze

Prints the TraDy ranking (score, share, cumulative share, per-channel
cost), the contribution table (held-out accuracy gains, or with --metric
loss drops of the held-out loss, of bias depths, over every layer unless
--max_bias_layers, and of weight ratios per layer, measured by short int8
fine-tuning runs in the host Trainer), the searched sparse
plan and the TraDy plan with their exact training arenas
(tflm_training.memory_model) against the budget and the board's RAM, and
writes into --out: ranking.png (bar chart with the 97% cut),
contribution.png (heat map, layers x ratios), plans.png (what each plan
trains and where its bytes go), the plans (sparse-search_plan.bin,
trady_plan.bin), each plan's per-layer report (layers_<plan>/layers.md and
.png: per operator its MACs forward and backward, the training arena live
while it runs, what it trains, and the instructions of its forward and
backward work measured on the emulated board; planning.layer_report) and
analysis.json. Contribution runs are cached in --cache.
"""

import json
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np
from absl import app, flags

import tflm_training
from planning import layer_report
from tools import deploy_steps as steps
from tools import layer_profile, output_folder

_MODEL = flags.DEFINE_string(
    "model", str(steps.DEFAULT_MODEL.relative_to(REPO)), "The int8 .tflite to analyse."
)
_DATASET = flags.DEFINE_string(
    "dataset",
    "fsdd",
    f"A built-in dataset ({', '.join(steps.DATASETS)}) or an .npz with "
    "x_train, y_train, x_test, y_test; only the training part is used (a held-out share "
    "of it scores the contribution runs).",
)
_BUDGET_KB = flags.DEFINE_float(
    "budget_kb", None, "Training arena budget in KB (default: the inference arena + --extra_kb)."
)
_EXTRA_KB = flags.DEFINE_float(
    "extra_kb", 32.0, "Without --budget_kb: KB allowed beyond the inference arena."
)
_BOARD = flags.DEFINE_string("board", "nrf52840", "Board whose RAM the plans must fit.")
_SAMPLES = flags.DEFINE_integer(
    "samples", 200, "Training samples per contribution run (class-balanced).", lower_bound=1
)
_VAL_SAMPLES = flags.DEFINE_integer(
    "val_samples", 100, "Held-out samples scoring each contribution run.", lower_bound=1
)
_RANK_SAMPLES = flags.DEFINE_integer(
    "rank_samples", 100, "Samples of the TraDy gradient probe.", lower_bound=1
)
_EPOCHS = flags.DEFINE_integer("epochs", 2, "Epochs per contribution run.", lower_bound=1)
_SEEDS = flags.DEFINE_multi_integer(
    "seeds", [0], "Seeds of the contribution runs (results averaged); repeatable."
)
_METRIC = flags.DEFINE_enum(
    "metric",
    "accuracy",
    ["accuracy", "loss"],
    "What a contribution is: the drop of "
    "the held-out cross-entropy (loss) or the held-out accuracy gain (accuracy).",
)
_MAX_LAYERS = flags.DEFINE_integer(
    "max_layers",
    None,
    "Rank (TraDy) and measure the weight ratios of (contribution "
    "analysis) only the last N trainable layers before the classifier.",
    lower_bound=1,
)
_MAX_BIAS_LAYERS = flags.DEFINE_integer(
    "max_bias_layers",
    None,
    "Measure the contribution of bias depths over only the last N "
    "trainable layers before the classifier (default all).",
    lower_bound=1,
)
_SEARCH_TRIALS = flags.DEFINE_integer(
    "search_trials",
    4,
    "Train the search's best plans of N shapes and the best bias-only "
    "plan like the contribution runs and keep the best measured (0: the best predicted).",
    lower_bound=0,
)
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 0.02, "SGD learning rate.")
_MOMENTUM = flags.DEFINE_float("momentum", steps.MOMENTUM, "SGD momentum.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", steps.BATCH_SIZE, "Batch size.", lower_bound=1)
_COVERAGE = flags.DEFINE_float("coverage", 0.97, "TraDy: share of the score the kept layers cover.")
_SEED = flags.DEFINE_integer(
    "seed", 0, "Seed of the sample choice, the search and the TraDy channel sampling."
)
_OUT = flags.DEFINE_string("out", "build/analyze", "Output folder (PNG plots, plans, JSON).")
_PROFILE_LAYERS = flags.DEFINE_bool(
    "profile_layers",
    True,
    "Measure each operator's forward and backward instructions "
    "for the per-layer reports: a few training steps of each plan under QEMU (the board's "
    "emulator). Without it the reports give MACs and memory only.",
)
CACHE_NAME = "contribution_cache.json"
_CACHE = flags.DEFINE_string(
    "cache",
    None,
    "Contribution cache (JSON; default <out>/contribution_cache.json; 'none' disables it).",
)


def log(message):
    print(message, flush=True)


def _plot_ranking(plt, ranking, path):
    layers = ranking.layers
    labels = [f"op {layer.operator}\n{layer.name.split('_')[0].lower()}" for layer in layers]
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(layers) + 2), 4))
    colors = ["tab:blue" if layer.selected else "tab:gray" for layer in layers]
    ax.bar(range(len(layers)), [100 * layer.share for layer in layers], color=colors)
    ax2 = ax.twinx()
    ax2.plot(
        range(len(layers)), [100 * layer.cumulative for layer in layers], "o-", color="tab:red"
    )
    ax2.axhline(100 * ranking.coverage, color="tab:red", ls="--", lw=1)
    ax2.set_ylim(0, 105)
    ax2.set_ylabel("cumulative share (%)")
    kept = len(ranking.selected)
    ax.axvline(kept - 0.5, color="k", ls=":", lw=1)
    ax.set_xticks(range(len(layers)), labels, fontsize=8)
    ax.set_ylabel("share of the RGN score (%)")
    ax.set_title(
        f"TraDy layer ranking: top {kept} cover {100 * ranking.coverage:.0f}% "
        f"(classifier op {ranking.classifier} always trains)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_contribution(plt, table, path):
    from planning import contribution

    rows = table.rows()
    columns = ["bias@k"] + [f"w {contribution.ratio_name(r)}" for r in table.ratios]
    values = np.full((len(rows), len(columns)), np.nan)
    for i, (_, _, bias, weights) in enumerate(rows):
        for j, v in enumerate([bias] + weights):
            if v is not None:
                values[i, j] = 100 * v
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.8))
    limit = max(1.0, float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0)
    image = ax.imshow(
        np.ma.masked_invalid(values), cmap="RdYlGn", vmin=-limit, vmax=limit, aspect="auto"
    )
    for i in range(len(rows)):
        for j in range(len(columns)):
            text = "n/a" if np.isnan(values[i, j]) else f"{values[i, j]:+.1f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(columns)), columns)
    ax.set_yticks(range(len(rows)), [f"op {op} ({c} ch)" for op, c, _, _ in rows])
    fig.colorbar(
        image,
        ax=ax,
        label=(
            "Δ accuracy vs classifier only (points)"
            if table.metric == "accuracy"
            else "held-out loss drop vs classifier only (x100 nats)"
        ),
    )
    base = table.baseline_accuracy
    ax.set_title("contribution analysis (baseline %s)" % ("n/a" if base is None else f"{base:.3f}"))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_plans(plt, model, plans, costs, budget, room, inference, path):
    from tflm_training import channel_sampler
    from tflm_training import plan as plan_module

    ops = [(op, channels) for op, _, channels, _ in plan_module.trainable_operators(model)]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    from matplotlib.patches import Patch

    width = 0.8 / max(1, len(plans))
    handles = []
    for k, (name, plan) in enumerate(plans.items()):
        drawn = channel_sampler.sample_channels(plan, 0)
        layers = {layer.operator_index: layer for layer in plan.layers}
        heights, hatches = [], []
        for op, channels in ops:
            layer = layers.get(op)
            if layer is None:
                heights.append(0.0)
                hatches.append("")
            elif layer.update == "sampled":
                heights.append(len(drawn[op]) / channels)
                hatches.append("//")
            elif layer.update == "bias":
                heights.append(0.03)
                hatches.append("..")
            else:
                heights.append(len(layer.channels) / channels)
                hatches.append("")
        x = np.arange(len(ops)) + (k - (len(plans) - 1) / 2) * width
        for xi, h, hatch in zip(x, heights, hatches):
            left.bar(xi, h, width, color=f"C{k}", hatch=hatch, edgecolor="k", lw=0.3)
        handles.append(Patch(facecolor=f"C{k}", edgecolor="k", label=name))
    left.set_xticks(range(len(ops)), [f"op {op}" for op, _ in ops], fontsize=8)
    left.set_ylabel("share of output channels trained")
    left.set_title("what trains (hatched //: sampled, epoch 0; dotted: biases only)", fontsize=9)
    left.legend(handles=handles, fontsize=8)
    parts = [
        ("tables", lambda c: c.tables),
        ("parameter copies", lambda c: c.parameter_copies),
        ("optimizer state", lambda c: c.optimizer_state),
        ("sampled pool", lambda c: c.sampled_pool),
        ("planned region", lambda c: c.planned_region),
    ]
    names = list(costs)
    bottom = np.zeros(len(names))
    for j, (label, part) in enumerate(parts):
        values = np.array([part(costs[n]) for n in names], float) / 1024
        right.bar(names, values, bottom=bottom, label=label, color=f"C{j + 3}")
        bottom += values
    right.axhline(budget / 1024, color="k", ls="--", lw=1, label="budget")
    right.axhline(inference / 1024, color="tab:blue", ls="-.", lw=1, label="inference arena")
    if room is not None:
        right.axhline(room / 1024, color="tab:red", ls=":", lw=1, label="board RAM room")
    right.set_ylabel("training arena (KB)")
    right.set_title("where the bytes go (memory_model, exact)", fontsize=9)
    right.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _cache(out):
    """(cache, carry): --cache's file (None: 'none'). One inside --out is
    given relative to it and carried over from the last run (carry)."""
    if _CACHE.value == "none":
        return None, []
    cache = pathlib.Path(_CACHE.value or out / CACHE_NAME).resolve()
    if out in cache.parents:
        relative = cache.relative_to(out)
        return relative, [relative]
    return cache, []


def analyze():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from planning import contribution, cost_model, schemes, trady

    out = output_folder.check(_OUT.value)
    model_path = pathlib.Path(_MODEL.value)
    if model_path.suffix != ".tflite" or not model_path.is_file():
        raise steps.DeployError(
            f"model {model_path} is not a .tflite file; convert Keras "
            "models first (python tools/qat.py, or tools/deploy.py)"
        )
    dataset_file = None if _DATASET.value in steps.DATASETS else _DATASET.value
    output_folder.check_inputs_outside(out, {"--model": model_path, "--dataset": dataset_file})
    model = model_path.read_bytes()
    dataset = steps.load_dataset(_DATASET.value)
    info = steps.model_input(model)
    samples = steps.prepare_samples(dataset, info, None, None, _SEED.value)
    x, y = samples.train_x, samples.train_y
    settings = {
        "learning_rate": _LEARNING_RATE.value,
        "momentum": _MOMENTUM.value,
        "batch_size": _BATCH_SIZE.value,
    }
    inference = cost_model.inference_arena(model)
    budget = int(
        (_BUDGET_KB.value if _BUDGET_KB.value is not None else inference / 1024 + _EXTRA_KB.value)
        * 1024
    )
    # Every plan of both methods trains the classifier fully: fail fast.
    from tflm_training import TrainingPlan, memory_model

    smallest = memory_model.training_memory(
        model, TrainingPlan.classifier_only(model, **settings)
    ).total
    if budget < smallest:
        print(
            f"error: the budget of {budget} bytes ({budget / 1024:.1f} KB) is below the "
            f"smallest plan either method makes: the classifier alone needs a {smallest}-"
            f"byte training arena; give a budget of at least {smallest} bytes (--budget_kb "
            f"{-(-smallest // 1024)})",
            file=sys.stderr,
        )
        return 1

    cache, carry = _cache(out)
    with output_folder.transaction(out, carry=carry) as tx:
        work = tx.work
        if carry:  # the cache lies in --out: this run reads and updates its copy
            cache = work / cache
        cache = None if cache is None else str(cache)
        room = cost_model.ram_room(_BOARD.value)
        log(
            f"model {model_path} ({len(model)} bytes), dataset {dataset.name} ({len(y)} training "
            f"samples); inference arena {inference} bytes; budget {budget} bytes "
            f"({budget / 1024:.1f} KB); {_BOARD.value} RAM room {room} bytes"
        )
        log("")

        ranking = trady.rank_layers(
            model,
            x,
            y,
            samples=_RANK_SAMPLES.value,
            max_layers=_MAX_LAYERS.value,
            coverage=_COVERAGE.value,
            seed=_SEED.value,
            **settings,
        )
        for line in ranking.describe():
            log(line)
        log("")

        table = contribution.analyze(
            model,
            x,
            y,
            samples=_SAMPLES.value,
            val_samples=_VAL_SAMPLES.value,
            epochs=_EPOCHS.value,
            seeds=tuple(_SEEDS.value),
            max_layers=_MAX_LAYERS.value,
            max_bias_layers=_MAX_BIAS_LAYERS.value,
            metric=_METRIC.value,
            cache_path=cache,
            log=log,
            **settings,
        )
        for line in table.describe():
            log(line)
        log("")

        plans, costs, report = (
            {},
            {},
            {
                "budget_bytes": budget,
                "inference_arena": inference,
                "board": _BOARD.value,
                "ram_room": room,
            },
        )
        trials = None
        if _SEARCH_TRIALS.value:
            trials = (
                contribution.prepare_data(
                    x, y, samples=_SAMPLES.value, val_samples=_VAL_SAMPLES.value
                ),
                _SEARCH_TRIALS.value,
                cache,
            )
        inputs = schemes.Inputs(
            settings,
            budget=budget,
            seed=_SEED.value,
            contributions=table,
            trials=trials,
            ranking=ranking,
            log=log,
        )
        for name, what, summary in (
            ("sparse-search", "searched sparse", _searched_summary),
            ("trady", "TraDy", _trady_summary),
        ):
            try:
                built = schemes.build(name, model, inputs)
            except schemes.BUDGET_ERRORS as error:
                log(f"{what} plan: none: {error}")
                report[name] = {"error": str(error)}
                continue
            plans[name] = built.plan
            for line in built.describe():
                log(line)
            report[name] = summary(built.result)
        for name, plan in plans.items():
            costs[name] = cost_model.plan_cost(model, plan, board=_BOARD.value)
            log(f"{name} plan memory:")
            for line in costs[name].describe():
                log("  " + line)
            (work / f"{name}_plan.bin").write_bytes(plan.to_bytes())
            report[name]["cost"] = costs[name].as_dict()
            report[name]["layers"] = _layer_report(model, plan, x, y, work, name)
        report["ranking"] = [
            {
                "operator": layer.operator,
                "score": layer.score,
                "share": layer.share,
                "cumulative": layer.cumulative,
                "channel_cost": layer.channel_cost,
                "selected": layer.selected,
            }
            for layer in ranking.layers
        ]
        report["contribution"] = table.as_json()

        _plot_ranking(plt, ranking, work / "ranking.png")
        _plot_contribution(plt, table, work / "contribution.png")
        _plot_plans(plt, model, plans, costs, budget, room, inference, work / "plans.png")
        (work / "analysis.json").write_text(json.dumps(report, indent=1) + "\n")
        log("")
        log(
            f"wrote {out}/ranking.png, contribution.png, plans.png, analysis.json, the plans "
            "and their per-layer reports (layers_<plan>/layers.md, .png)"
        )
        if not plans:
            print(
                f"error: no plan fits the budget of {budget} bytes; see above for the minimum",
                file=sys.stderr,
            )
            return 1
        return 0


def _searched_summary(found):
    """analysis.json's entry of the sparse-search plan."""
    return {
        "genome": list(found.genome),
        "layers": found.layers,
        "score": found.score,
        "metric": found.metric,
        "arena": found.arena,
        "trials": [t.as_dict() for t in found.trials or ()],
    }


def _trady_summary(fitted):
    """analysis.json's entry of the TraDy plan."""
    return {
        "candidates": fitted.candidates,
        "dropped": fitted.dropped,
        "pool": fitted.pool,
        "fixed": fitted.fixed,
        "arena": fitted.arena,
    }


def _layer_report(model, plan, x, y, work, name):
    """The plan's per-layer report (planning.layer_report) into
    work/layers_<name>/, with emulated instructions per operator unless
    --noprofile_layers; logged as a table. Returns its rows as dicts."""
    title = f"{name} plan, per layer"
    rows = layer_profile.write_report(
        model,
        plan,
        x,
        y,
        work / f"layers_{name}",
        title,
        _BOARD.value,
        emulate=_PROFILE_LAYERS.value,
    )
    log(f"{title}:")
    log(layer_report.markdown(rows))
    return [row.as_dict() for row in rows]


def main(argv):
    return steps.run_tool(
        analyze,
        argv,
        (
            steps.DeployError,
            output_folder.OutputFolderError,
            tflm_training.TflmTrainingError,
            ValueError,
        ),
        log,
    )


if __name__ == "__main__":
    app.run(main)
