"""The per-layer report with emulated instructions: the training firmware
built to measure each operator's forward and backward work
(boards/app/training_app.c, APP_PROFILE_OPERATORS) runs a few training
steps of the plan under QEMU, and planning.layer_report puts the counts
beside each operator's MACs, live arena bytes and what it trains.

    rows = layer_profile.write_report(model, plan, x, y, "build/layers", "ds_cnn, TraDy")
"""

import json
import pathlib

from planning import layer_report
from tools import emulation, training_firmware

# Steps measured: the first updates weights the second then reads.
PROFILE_STEPS = 2
PROFILE_TIMEOUT_S = 600.0


def profile(model_bytes, plan, x, y, out_dir, board="mps2_an386", timeout=PROFILE_TIMEOUT_S):
    """{operator: {"forward": instructions, "backward": instructions}} per
    training step, the mean over the steps on the first PROFILE_STEPS of
    the samples (x quantized like the model's input, y class indices) on
    the board's emulator. Raises emulation.EmulationError when the run
    fails."""
    emulator, _ = emulation.resolve_board(board)
    count = min(PROFILE_STEPS, len(y))
    firmware = training_firmware.build_training_firmware(
        emulator.name,
        model_bytes,
        plan,
        x[:count],
        y[:count],
        out_dir=out_dir,
        profile_operators=True,
    )
    result = emulation.run_firmware(firmware.elf, emulator.name, timeout=timeout)
    if result.status != 0 or result.timed_out:
        raise emulation.EmulationError(
            f"the profiling run failed ({result.note or result.log.errors})"
        )
    run = training_firmware.TrainingRun.from_log(result.log)
    per_step = {}
    for operator, event in run.operator_profile.items():
        steps = event["steps"]
        per_step[operator] = {
            phase: None if event[phase] is None else event[phase] / steps
            for phase in ("forward", "backward")
        }
    return per_step


def write_report(model_bytes, plan, x, y, out_dir, title, board="mps2_an386", emulate=True):
    """Profiles the plan (profile(); not when `emulate` is false: MACs and
    memory only), writes layers.md, layers.png and layers.json into
    out_dir, and returns the rows."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = (
        profile(model_bytes, plan, x, y, out_dir / "profile_firmware", board) if emulate else None
    )
    rows = layer_report.layer_rows(model_bytes, plan, counts)
    (out_dir / "layers.md").write_text(f"# {title}\n\n" + layer_report.markdown(rows))
    (out_dir / "layers.json").write_text(
        json.dumps([row.as_dict() for row in rows], indent=1) + "\n"
    )
    layer_report.plot(rows, out_dir / "layers.png", title)
    return rows
