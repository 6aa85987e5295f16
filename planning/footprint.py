r"""Does an int8 model fit the board? Flash and RAM measured with the
tflm_training runtime itself (its arena needs the same bytes on the host
and on the MCU), against the board's limits from boards/<board>/board.json.

    fp = measure(tflite_bytes)            # inference and training arenas
    problems = check_fits(fp, 'nrf52840') # [] when it fits
    lines = describe(fp)                  # for people

What counts: flash = the .tflite bytes + FLASH_RESERVE (firmware code);
RAM = the arena + the board's stack + RAM_RESERVE (other globals). Two
training plans are measured: the classifier only, and the classifier with
the trainable layer before it (the "last layers").
"""

import tflm_training
from planning.cost_model import RAM_RESERVE, board_limits
from tflm_training import plan as plan_lib
from tflm_training import tflite_graph

# The nRF52840 firmware (runtime, kernels incl. backward, app) measured
# about 50 KB of code; keep room for growth.
FLASH_RESERVE = 128 * 1024


def last_layers_plan(buf, count=2):
    """A plan training the last `count` trainable operators (weights and
    biases, every channel) that feed the logits."""
    graph = tflite_graph.read_graph(buf)
    logits = plan_lib.find_logits(graph)
    ops = [
        op.index
        for op in graph.operators
        if op.builtin_code in plan_lib.TRAINABLE_OPERATORS
        and plan_lib.feeds(graph, op.index, logits)
    ]
    return tflm_training.TrainingPlan.for_model(buf, {op: None for op in ops[-count:]})


def measure(buf):
    """{'model_bytes', 'inference_arena', 'train_classifier',
    'train_last_two'}: the two training entries are the trainer's memory
    breakdown (tt_training_memory; 'total' is its arena)."""
    buf = bytes(buf)
    interpreter = tflm_training.Interpreter.from_bytes(buf)
    result = {"model_bytes": len(buf), "inference_arena": interpreter.arena_used_bytes()}
    plans = {
        "train_classifier": tflm_training.TrainingPlan.classifier_only(buf),
        "train_last_two": last_layers_plan(buf, 2),
    }
    for key, plan in plans.items():
        result[key] = tflm_training.Trainer(buf, plan).memory()
        result[key]["layers"] = [layer.operator_index for layer in plan.layers]
    return result


def check_fits(fp, board="nrf52840"):
    """Problems (strings) with running and training `fp` on the board;
    [] when everything fits."""
    limits = board_limits(board)
    flash = fp["model_bytes"] + FLASH_RESERVE
    problems = []
    if flash > limits["flash"]:
        problems.append(
            "flash: model %d + firmware %d > %d bytes"
            % (fp["model_bytes"], FLASH_RESERVE, limits["flash"])
        )
    ram_left = limits["ram"] - limits["stack"] - RAM_RESERVE
    for key in ("inference_arena", "train_classifier", "train_last_two"):
        arena = fp[key] if isinstance(fp[key], int) else fp[key]["total"]
        if arena > ram_left:
            problems.append(
                "RAM: %s arena %d > %d bytes left (%d RAM - %d "
                "stack - %d other)"
                % (key, arena, ram_left, limits["ram"], limits["stack"], RAM_RESERVE)
            )
    return problems


def describe(fp, board="nrf52840"):
    """Human-readable lines."""
    limits = board_limits(board)
    lines = [
        "flash: model %.1f KB (+%d KB firmware) of %d KB"
        % (fp["model_bytes"] / 1024, FLASH_RESERVE // 1024, limits["flash"] // 1024),
        "RAM: inference arena %.1f KB" % (fp["inference_arena"] / 1024),
    ]
    for key in ("train_classifier", "train_last_two"):
        m = fp[key]
        lines.append(
            "RAM: %s (ops %s) arena %.1f KB = tables %.1f + weight copies "
            "%.1f + optimizer %.1f + planned %.1f"
            % (
                key,
                m["layers"],
                m["total"] / 1024,
                (m["interpreter_tables"] + m["trainer_tables"]) / 1024,
                m["weight_copies"] / 1024,
                m["optimizer_state"] / 1024,
                m["planned_region"] / 1024,
            )
        )
    lines.append("fits %s: %s" % (board, "; ".join(check_fits(fp, board)) or "yes"))
    return lines
