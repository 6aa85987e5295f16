"""Writes the training benchmark's results as markdown."""

from benchmarks import report
from benchmarks.report import NA, fmt_int, fmt_ratio, table
from planning import schemes

_MEMORY_PARTS = (
    "interpreter_tables",
    "trainer_tables",
    "weight_copies",
    "optimizer_state",
    "planned_region",
)


def _plan_rows(data):
    """(model name, plan kind, model result, plan result) of every plan
    that could be made."""
    for name, result in data["models"].items():
        for kind, plan in result["plans"].items():
            yield name, kind, result, plan


def _training_firmware(plan):
    """The training firmware metrics of a plan, or None if it did not
    run to the end."""
    fw = plan.get("firmware")
    return fw if fw and "losses" in fw else None


def _inference_firmware(result):
    fw = result.get("inference_firmware")
    return fw if fw and "error" not in fw and fw["status"] == 0 else None


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _percent(numerator, denominator):
    if numerator is None or not denominator:
        return NA
    return f"{100 * numerator / denominator:.1f}%"


def _kib(value):
    return NA if value is None else f"{value / 1024:,.0f}"


# -- plans --------------------------------------------------------------------


def _plan_cell(plan):
    if "error" in plan:
        return f"cannot be made: {plan['error']}"
    layers = plan["layers"]
    if len(layers) <= 3:
        return "; ".join(layers)
    kinds = sorted({line.split()[3] for line in layers})
    return f"{len(layers)} layers, {' and '.join(kinds)}: " + "; ".join(
        " ".join(line.split()[1:3] + line.split()[4:]) for line in layers
    )


def plans_section(data):
    rows = [[name, kind, _plan_cell(plan)] for name, kind, _, plan in _plan_rows(data)]
    return "\n\n".join(
        [
            "## Plans",
            "Every plan is SGD with the `TrainingPlan` defaults (learning rate "
            "0.05, batch size 1, QAS). `classifier`: the layer computing the "
            "logits (`TrainingPlan.classifier_only`). `bias`: the biases of "
            "every layer (`TrainingPlan.bias_only`); the gradient then flows "
            "back to the first layer. `sparse`: the classifier plus the first "
            f"1/{schemes.SPARSE_FRACTION} of the output channels (weights and "
            "bias) of the trainable layer before it. `full`: every channel of "
            "every CONV_2D, "
            "DEPTHWISE_CONV_2D and FULLY_CONNECTED layer (full "
            "backpropagation). Layers are written `op <index> <operator> "
            "<update> <trained channels>/<channels>`.",
            table(["model", "plan", "trained layers"], rows, left=3),
        ]
    )


# -- host memory --------------------------------------------------------------


def host_memory_section(data):
    rows = []
    for name, kind, result, plan in _plan_rows(data):
        if "error" in plan:
            continue
        memory = plan["memory"]
        rows.append(
            [
                name,
                kind,
                fmt_int(result["inference_arena"]),
                fmt_int(plan["arena_used"]),
                fmt_ratio(plan["arena_used"], result["inference_arena"]),
                *(fmt_int(memory[part]) for part in _MEMORY_PARTS),
            ]
        )
    headers = [
        "model",
        "plan",
        "inference arena",
        "training arena",
        "training / inference",
        "interpreter tables",
        "trainer tables",
        "weight copies",
        "optimizer state",
        "planned region",
    ]
    return "\n\n".join(
        [
            "## Peak training SRAM (bytes)",
            "The training arena is `Trainer.arena_used_bytes()`: everything a "
            "training step needs, at its peak, in one static arena (the host "
            "and the MCU need the same bytes; the firmware reports the same "
            "number). The inference arena is `Interpreter.arena_used_bytes()` "
            "of the same model. The breakdown is `Trainer.memory()` "
            "(runtime/tt_trainer.h): the interpreter's tables and kernel data; "
            "the trainer's tables; RAM copies of the trained weight and bias "
            "tensors (the model itself stays in flash); the optimizer state of "
            "the selected channels (QAS residuals, float, one per trained "
            "weight and bias); and the planned region, where activations, the "
            "activations kept for the backward pass, 1-bit clamp masks, float "
            "gradients and kernel scratch share memory by lifetime.",
            table(headers, rows, left=2),
        ]
    )


# -- firmware memory ----------------------------------------------------------


def _fits_cell(fw, plan):
    if fw is None:
        firmware = plan.get("firmware") or {}
        return firmware.get("error") or firmware.get("over_limit") or NA
    return "yes" if fw["fits"] else "**no** (4 MB emulator)"


def firmware_memory_section(data):
    rows = []
    for name, kind, result, plan in _plan_rows(data):
        if "error" in plan or "firmware" not in plan:
            continue
        fw = _training_firmware(plan)
        inference = _inference_firmware(result)
        inference_peak = inference["ram_bytes"] + inference["stack_used"] if inference else None
        ram = fw["ram"] if fw else {}
        rows.append(
            [
                name,
                kind,
                _fits_cell(fw, plan),
                fmt_int(ram.get("static")),
                fmt_int(ram.get("arena_size")),
                fmt_int(ram.get("stack_used")),
                fmt_int(ram.get("peak")),
                fmt_int(inference_peak),
                fmt_ratio(ram.get("peak"), inference_peak),
            ]
        )
    if not rows:
        return ""
    limit = data["board_limits"]["ram_size"]
    headers = [
        "model",
        "plan",
        f"fits {fmt_int(limit)} B RAM",
        "static RAM (globals)",
        "of which arena",
        "stack high-water",
        "peak RAM",
        "inference firmware peak RAM",
        "training / inference",
    ]
    return "\n\n".join(
        [
            f"## Emulated Cortex-M4 ({data['config']['board']}): peak RAM (bytes)",
            "Reported by the training firmware (boards/app/training_app.c, its "
            "`ram` event): static RAM is `.data` + `.bss` (the arena, the "
            "trainer struct, the runtime's and board's globals), the stack "
            "high-water mark is measured by stack painting over the whole run "
            "(init, predictions, training steps, reporting), and peak RAM is "
            "their sum. The inference firmware column is the inference app's "
            "globals + stack high-water for the same model "
            "(`benchmarks/inference.py` measures it the same way). Plans that "
            "do not fit the board's RAM "
            f"({fmt_int(limit)} bytes, the nRF52840's) are built again for "
            "the same emulated machine with its 4 MB of RAM (`--roomy`), so "
            "that their RAM and instructions are still measured; they would "
            "not run on the real part.",
            table(headers, rows, left=2),
        ]
    )


# -- instructions -------------------------------------------------------------


def _backward_macs(plan):
    macs = plan["gradient_macs"]
    return macs["weight"] + macs["input"]


def instructions_section(data):
    steps = data["config"]["firmware_steps"]
    rows = []
    for name, kind, result, plan in _plan_rows(data):
        fw = _training_firmware(plan)
        if fw is None:
            continue
        step = _mean(fw["step_counts"])
        predict = fw["count_per_inference"]
        inference = _inference_firmware(result)
        invoke = _mean(inference["counts"]) if inference else None
        macs = result["macs_total"] + _backward_macs(plan)
        extra = step - predict if step and predict else None
        rows.append(
            [
                name,
                kind,
                fmt_int(round(step)) if step else NA,
                " / ".join(fmt_int(c) for c in fw["step_counts"]),
                fmt_int(round(predict)) if predict else NA,
                fmt_int(round(invoke)) if invoke else NA,
                fmt_ratio(step, predict),
                fmt_int(macs),
                fmt_ratio(step, macs, 1),
                fmt_int(plan["trained_parameters"]),
                fmt_ratio(extra, plan["trained_parameters"], 0),
            ]
        )
    if not rows:
        return ""
    headers = [
        "model",
        "plan",
        "instructions per step (mean)",
        "each step",
        "per inference (trainer predict)",
        "per inference (inference app)",
        "step / inference",
        "forward + gradient MACs",
        "instructions / MAC",
        "trained parameters",
        "(step - inference) / trained parameter",
    ]
    return "\n\n".join(
        [
            f"## Emulated Cortex-M4 ({data['config']['board']}): instructions per training step",
            "Exact counts under QEMU `-icount shift=0` (boards/README.md), net "
            "of an empty call: one `tt_trainer_step` (copy the input, int8 "
            "forward pass to the logits, loss, backward pass, SGD update of "
            f"every trained channel), over {steps} steps on different test "
            "samples, from the model's weights; and one `tt_trainer_predict` "
            "(the forward pass and an argmax) in the same firmware, averaged "
            "over the predictions before and after training. The inference "
            "app column is one `tt_interpreter_invoke` of the inference "
            "firmware on the same test sample. Instructions, not cycles (see "
            "`results/inference.md` for why no time is derived). Instructions "
            "/ MAC charges every operator, forward and backward, to the "
            "forward MACs plus the gradient MACs of the next section. The last "
            "column charges everything a step adds to an inference (loss, "
            "backward pass, update) to the weights and biases it updates: for "
            "the classifier plans, whose backward work is a few hundred MACs, "
            "it is close to what the optimizer's update of one parameter "
            "costs.",
            table(headers, rows, left=2),
        ]
    )


# -- gradient MACs ------------------------------------------------------------


def macs_section(data):
    rows = []
    for name, kind, result, plan in _plan_rows(data):
        if "error" in plan:
            continue
        macs = plan["gradient_macs"]
        full = result["plans"].get("full", {}).get("gradient_macs")
        forward = result["macs_total"]
        rows.append(
            [
                name,
                kind,
                fmt_int(macs["weight"]),
                _percent(macs["weight"], full["weight"]) if full else NA,
                fmt_int(macs["input"]),
                fmt_int(forward),
                fmt_ratio(forward + macs["weight"] + macs["input"], forward),
            ]
        )
    headers = [
        "model",
        "plan",
        "weight-gradient MACs",
        "of full backprop's",
        "input-gradient MACs",
        "forward MACs",
        "(forward + gradients) / forward",
    ]
    return "\n\n".join(
        [
            "## Gradient MACs per training step",
            "From the tensor shapes, nominal like the inference MACs (filter "
            "taps on padding included). A trained channel's weight gradient "
            "costs that channel's forward MACs: CONV_2D out_h x out_w x KH x "
            "KW x filter depth, DEPTHWISE_CONV_2D out_h x out_w x KH x KW, "
            "FULLY_CONNECTED rows x input features; a bias-only layer "
            "computes no weight gradient (its bias gradient is a sum). A "
            "layer's input gradient costs its whole forward MACs and is "
            "computed when the backward pass must continue below it (some "
            "earlier layer trains), whatever channels the layer itself "
            "trains. The operators the backward pass visits follow the "
            "trainer's rule (`tt_trainer_setup.c: find_backward_path`). The "
            "forward pass of a training step costs the forward MACs.",
            table(headers, rows, left=2),
        ]
    )


# -- TensorFlow ---------------------------------------------------------------


def _tf_views(result):
    tf_result = result.get("tensorflow") or {}
    allocator = tf_result.get("allocator") or {}
    default = tf_result.get("default_allocator") or {}
    return (
        allocator if "error" not in allocator else {},
        default if "error" not in default else {},
    )


def _rss_growth(call):
    if not call or call.get("rss_peak") is None:
        return None
    return call["rss_peak"] - call["rss_before"]


def _largest(values):
    values = [v for v in values if v is not None]
    return max(values) if values else None


def _later_peaks(view, name):
    """The largest tensors peak over the later calls, and 'min-max'."""
    peaks = [c.get("tensors_peak") for c in view.get(name) or []]
    peaks = [p for p in peaks if p is not None]
    if not peaks:
        return None, NA
    return max(peaks), f"{fmt_int(min(peaks))}-{fmt_int(max(peaks))}"


def _tf_row(name, result):
    allocator, default = _tf_views(result)
    ours = result["plans"].get("full", {}).get("arena_used")
    later, spread = _later_peaks(allocator, "train_later")
    first = (allocator.get("train_first") or {}).get("tensors_peak")
    forward, _ = _later_peaks(allocator, "forward_later")
    weights = allocator.get("float_parameter_bytes")
    activations = forward - weights if forward is not None and weights is not None else None
    rss_later = _largest(_rss_growth(c) for c in default.get("train_later") or [])
    return [
        name,
        fmt_int(ours),
        fmt_int(later),
        fmt_ratio(later, ours, 1),
        spread,
        fmt_int(first),
        fmt_int(allocator.get("float_parameter_bytes")),
        _kib(_rss_growth(default.get("train_first"))),
        _kib(rss_later),
        fmt_int(result["inference_arena"]),
        fmt_int(forward),
        fmt_int(activations),
        fmt_ratio(activations, result["inference_arena"], 1),
    ]


def _tf_errors(data):
    errors = []
    for name, result in data["models"].items():
        for view, value in (result.get("tensorflow") or {}).items():
            if isinstance(value, dict) and "error" in value:
                errors.append(f"{name} ({view}): {value['error']}")
    return "TensorFlow measurements failed for: " + "; ".join(errors) if errors else ""


def tensorflow_section(data):
    rows = [
        _tf_row(name, result) for name, result in data["models"].items() if result.get("tensorflow")
    ]
    if not rows:
        return ""
    later = data["config"]["tf_later_calls"]
    headers = [
        "model",
        "ours: full plan arena",
        "TF tensors at peak, training step",
        "TF / ours",
        f"TF peak range over {later} later steps",
        "TF tensors at peak, first step",
        "TF float weights",
        "TF process RSS growth, first step (KiB)",
        "TF RSS growth, later steps (KiB)",
        "ours: inference arena",
        "TF tensors at peak, forward only",
        "the same without the float weights",
        "TF without weights / ours (inference)",
    ]
    parts = [
        "## TensorFlow's host memory for one full-backprop step (bytes)",
        "The same model in float32, built from the .tflite file by "
        "`benchmarks/float_graph.py` (dequantized weights and biases as "
        "tf.Variables; CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, ADD, "
        "pooling, MEAN, RESHAPE, PAD, CONCATENATION, ...; QUANTIZE is an "
        "identity), trained like our `full` plan: batch 1, softmax "
        "cross-entropy on the logits, gradients of every weight and bias "
        "by `tf.GradientTape`, an SGD update, all in one `tf.function`. "
        "`benchmarks/tf_step.py` runs in a fresh child process per model "
        "and memory view, calls the forward pass and then the step "
        f"{1 + later} times each, and measures each call.",
        "**TF tensors at peak** is the peak of TensorFlow's CPU allocator "
        "during the call (`tf.config.experimental.get_memory_info('CPU:0')`"
        ", which keeps statistics only with the BFC allocator, "
        "`TF_CPU_ALLOCATOR_USE_BFC=true`; reset just before the call): "
        "every tensor alive at the worst moment, the float weights and the "
        "input included, the activations kept for the gradient, the "
        "gradients and the kernels' temporaries that go through the "
        "allocator, rounded up as the BFC allocator rounds (256-byte "
        "granules). It leaves out memory TensorFlow allocates elsewhere "
        "(oneDNN and Eigen scratch, the graph, kernel objects, thread "
        "stacks). 'Training step' is the largest peak of the calls after "
        "the first (the peak varies from call to call with the order "
        "TensorFlow's threads run operators in; the range is shown); the "
        "first call also builds and optimizes the graph. The forward-only "
        "peak is measured the same way; our inference arena holds no "
        "weights (they stay in flash), so the inference ratio leaves "
        "TensorFlow's float weights out. Our training number is the arena "
        "of the `full` plan, which holds all of that (int8 weight copies, "
        "float optimizer state, activations and float gradients) except "
        "the model in flash. Two structural differences: TensorFlow holds "
        "every weight gradient (float32, as large as the weights) at once "
        "before the update and keeps float32 activations for the backward "
        "pass; our trainer applies each channel's gradient right after "
        "computing it and keeps int8 activations, but holds a float QAS "
        "residual (4 bytes) per trained parameter and float activation "
        "gradients.",
        "**TF process RSS growth** is a process-level cross-check with "
        "TensorFlow's default CPU allocator: the resident set's high-water "
        "mark during the call (VmHWM, reset through /proc/self/clear_refs "
        "just before it) minus the resident set just before it. The first "
        "step's growth includes one-time costs (code paged in, graph "
        "optimization, kernel and thread-pool state); a later step reuses "
        "memory the process already holds, so its growth understates what "
        "the step uses (the largest over the later steps is shown). The "
        "process itself holds about 600 MB after "
        "`import tensorflow`.",
        table(headers, rows),
        _tf_errors(data),
        _logits_check_section(data),
    ]
    return "\n\n".join(part for part in parts if part)


def _logits_check_section(data):
    rows = []
    for name, result in data["models"].items():
        check = (result.get("tensorflow") or {}).get("logits_check")
        if not check:
            continue
        worst = check["max_abs_diff_unsaturated"]
        rows.append(
            [
                name,
                "yes" if check["argmax_equal"] else "**no**",
                NA if worst is None else f"{worst:.3f}",
                f"{check['logits_scale']:.4f}",
                f"{check['saturated']}/{check['classes']}",
            ]
        )
    if not rows:
        return ""
    return "\n\n".join(
        [
            "**Is the float graph the same model?** Its logits for the "
            "measured sample against our int8 logits (dequantized), before any "
            "training: the same top class, and the largest difference over the "
            "logits that are not saturated at the int8 range's ends, in real "
            "units next to one int8 step (the logits' scale). Differences come "
            "from int8 rounding and clamping of every activation.",
            table(
                [
                    "model",
                    "same top class",
                    "largest abs(float - int8), unsaturated",
                    "int8 logits scale",
                    "saturated logits",
                ],
                rows,
            ),
        ]
    )


# -- the rest -----------------------------------------------------------------


def check_section(data):
    verdict = (
        "The firmware's losses (bit for bit) and arena equal the "
        "host trainer's for every plan it ran, and the inference "
        "firmware's outputs equal the host's."
        if data["firmware_agrees_with_host"]
        else "**The firmware disagrees with the host: see the .json file.**"
    )
    return "## Check\n\n" + verdict


def _skipped_note(data):
    config = data["config"]
    notes = []
    if not config["firmware"]:
        notes.append("Firmware measurements were skipped (--nofirmware).")
    if not config["tensorflow"]:
        notes.append("TensorFlow measurements were skipped (--notensorflow).")
    errors = [
        f"{name} {kind}: {plan['firmware']['error']}"
        for name, kind, _, plan in _plan_rows(data)
        if "error" in (plan.get("firmware") or {})
    ]
    if errors:
        notes.append("Firmware measurements failed for: " + "; ".join(errors))
    return " ".join(notes)


def environment_section(data):
    env = data["environment"]
    return "\n".join(
        [
            report.environment_section(data),
            f"- TensorFlow {env['tensorflow']}, tf_keras {env['tf_keras']} (the float reference)",
        ]
    )


def render(data):
    """The whole results file."""
    parts = [
        "# Training benchmark results",
        "Generated by `benchmarks/training.py` (see benchmarks/README.md). "
        "Reproduce from the repository root with:",
        f"```\n{data['command']}\n```",
        _skipped_note(data),
        check_section(data) if data["config"]["firmware"] else "",
        plans_section(data),
        host_memory_section(data),
        firmware_memory_section(data),
        instructions_section(data),
        macs_section(data),
        tensorflow_section(data),
        environment_section(data),
    ]
    return "\n\n".join(part for part in parts if part) + "\n"
