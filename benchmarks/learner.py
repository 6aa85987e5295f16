"""Learner benchmark: the learner firmware (boards/app/learner_app.c) on
the emulated nRF52840 (QEMU mps2-an386, -icount shift=0).

  python benchmarks/learner.py [--cuts 1000] [--workers 2]
      [--out benchmarks/results/learner.md]

Measures, for the default deploy task (DS-CNN with a new head on FSDD):
samples streamed and trained per second over the emulated UART; exact
instructions per training step, streamed and with the same samples
embedded in the training firmware (boards/app/training_app.c); flash bytes
written and pages erased per save, instructions per save and per boot-time
restore; firmware flash with and without samples; and power cuts: the
learner's save is cut at --cuts distinct flash events (every erase, both
halves of each, and a stride through the word writes), the device booted
again, and its state must be the old or the new one byte for byte, with
the next training step equal to the host's. Writes --out and the raw
numbers beside it (.json). Exits 1 when a state is lost or differs.
"""

import concurrent.futures
import json
import pathlib
import sys
import tempfile
import time
import zlib

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np
from absl import app, flags

import tflm_training
from benchmarks import environment
from tflm_training import learner
from tools import deploy_steps, emulation, learner_firmware, training_firmware

_CUTS = flags.DEFINE_integer("cuts", 1000, "Distinct power-cut points (at least).")
_WORKERS = flags.DEFINE_integer("workers", 2, "Emulators run at once for the cuts.")
_STREAM = flags.DEFINE_integer("stream_samples", 200, "Samples streamed for the rate.")
_OUT = flags.DEFINE_string(
    "out",
    str(REPO / "benchmarks" / "results" / "learner.md"),
    "Markdown report; the JSON goes beside it.",
)

MODEL = deploy_steps.DEFAULT_MODEL.read_bytes()
SETTINGS = {"learning_rate": 0.02, "momentum": 0.9, "batch_size": 5}
SEQUENTIAL = 10  # samples sent one request at a time before the pipelined rest


def task_samples(count):
    dataset = deploy_steps.load_dataset("fsdd")
    info = deploy_steps.model_input(MODEL)
    samples = deploy_steps.prepare_samples(dataset, info, count, 10, 0)
    return samples.train_x, samples.train_y


def plans():
    """The plans measured: the default deploy's (TraDy for the board's RAM)
    and the classifier alone (small state: the power-cut sweep's)."""
    x, y = task_samples(100)
    from planning import trady

    board = deploy_steps.load_board("nrf52840")
    info = deploy_steps.model_input(MODEL)
    reserved = deploy_steps.learner_ram(
        MODEL, info, learner_firmware.DEFAULT_HELDOUT_SAMPLES, board
    )
    ranking = trady.rank_layers(MODEL, x, y, samples=100, seed=0, **SETTINGS)
    plan = trady.plan_for_budget(
        MODEL, ranking, deploy_steps.budget_bytes(board, None, reserved), seed=0
    ).plan
    return {
        "trady (deploy default)": plan.to_bytes(),
        "classifier": tflm_training.TrainingPlan.classifier_only(MODEL, **SETTINGS).to_bytes(),
    }


def stream_and_save(name, plan, x, y, work):
    """Streams x, y into a fresh learner, saves, power-cycles; the same
    samples through the embedded-samples training firmware."""
    firmware, sizes = learner_firmware.build_learner_firmware(
        "mps2_an386", MODEL, plan, work / "learner"
    )
    flash = work / "flash.bin"
    host = tflm_training.Trainer(MODEL, plan)
    device = learner_firmware.EmulatedLearner(firmware.elf, flash)
    try:
        client = learner.LearnerClient(device, timeout=60)
        client.begin_epoch(0)
        host.begin_epoch(0)
        # The first samples one request at a time (nothing arrives during a
        # step), the rest pipelined (the next sample arrives during it).
        start = time.monotonic()
        steps = [client.train(x[i], y[i]) for i in range(SEQUENTIAL)]
        steps += list(client.train_many(x[SEQUENTIAL:], y[SEQUENTIAL:]))
        seconds = time.monotonic() - start
        losses_equal = all(
            s.loss.view(np.uint32) == np.float32(host.train_step(x[i], y[i])).view(np.uint32)
            for i, s in enumerate(steps)
        )
        save = client.save()
    finally:
        device.close()
    device = learner_firmware.EmulatedLearner(firmware.elf, flash)
    try:
        info = learner.LearnerClient(device).info()
    finally:
        device.close()
    embedded = training_firmware.build_training_firmware(
        "mps2_an386", MODEL, plan, x, y, work / "embedded", epochs=1
    )
    run = training_firmware.TrainingRun.from_log(
        emulation.run_firmware(embedded.elf, "mps2_an386", timeout=600).log
    )
    streamed_counts = [s.count for s in steps]
    return {
        "plan": name,
        "samples": len(y),
        "seconds": seconds,
        "samples_per_second": len(y) / seconds,
        "instructions_per_step_streamed": int(np.mean(streamed_counts[SEQUENTIAL:])),
        "instructions_per_step_embedded": int(np.mean(run.step_counts[SEQUENTIAL:])),
        # One request at a time, each step costs exactly what it costs with
        # the samples embedded: the differences are all 0.
        "sequential_minus_embedded": sorted(
            {a - b for a, b in zip(streamed_counts[:SEQUENTIAL], run.step_counts[:SEQUENTIAL])}
        ),
        "streamed_counts": streamed_counts,
        "embedded_counts": run.step_counts,
        "uart_interrupt_instructions_per_step": int(
            np.mean(streamed_counts[SEQUENTIAL:]) - np.mean(run.step_counts[SEQUENTIAL:])
        ),
        "losses_equal_host": losses_equal,
        "state_bytes": sizes.state_bytes,
        "state_flash_bytes": sizes.state_region_bytes,
        "save_bytes_written": save.bytes_written,
        "save_pages_erased": save.pages_erased,
        "save_instructions": save.count,
        "restore_instructions": info.restore_count,
        "restored_equal_host": info.restored and info.state_crc32 == zlib.crc32(host.state()),
        "learner_image_bytes": firmware.bin.stat().st_size,
        "embedded_image_bytes": embedded.bin.stat().st_size,
        "learner_flash_used": firmware.usage.flash_bytes,
        "learner_ram_globals": firmware.usage.ram_bytes,
    }


class CutSweep:
    """A classifier-plan device with one saved state, 3 more steps, then a
    save cut at a given flash event."""

    def __init__(self, plan, work):
        self.plan = plan
        self.firmware, _ = learner_firmware.build_learner_firmware(
            "mps2_an386", MODEL, plan, work / "cuts"
        )
        self.x, self.y = task_samples(10)
        host = tflm_training.Trainer(MODEL, plan)
        self.base = work / "base.bin"
        device = learner_firmware.EmulatedLearner(self.firmware.elf, self.base)
        try:
            client = learner.LearnerClient(device)
            for i in range(3):
                client.train(self.x[i], self.y[i])
                host.train_step(self.x[i], self.y[i])
            client.save()
        finally:
            device.close()
        self.old = host.state()
        for i in range(3, 6):
            host.train_step(self.x[i], self.y[i])
        self.new = host.state()
        self.next_loss = np.float32(host.train_step(self.x[6], self.y[6]))
        old_host = tflm_training.Trainer(MODEL, plan)
        old_host.load_state(self.old)
        self.next_loss_old = np.float32(old_host.train_step(self.x[6], self.y[6]))
        words = -(-(32 + len(self.new)) // 4)
        self.pages = -(-(32 + len(self.new)) // 4096)
        self.events = 2 * (self.pages + words)

    def points(self, count):
        erases = set(range(0, 2 * self.pages))
        header = set(range(self.events - 16, self.events + 1))  # + no cut at all
        stride = max(1, self.events // count)
        return sorted(erases | header | set(range(0, self.events, stride)))

    def run(self, cut):
        with tempfile.TemporaryDirectory() as tmp:
            flash = pathlib.Path(tmp) / "flash.bin"
            flash.write_bytes(self.base.read_bytes())
            device = learner_firmware.EmulatedLearner(self.firmware.elf, flash, cut=cut)
            try:
                client = learner.LearnerClient(device, timeout=30)
                for i in range(3, 6):
                    client.train(self.x[i], self.y[i])
                try:
                    client.save()
                    status = 0
                except learner.LinkError:
                    status = device.wait(10)
            finally:
                device.close()
            device = learner_firmware.EmulatedLearner(self.firmware.elf, flash)
            try:
                client = learner.LearnerClient(device, timeout=30)
                info = client.info()
                which = {zlib.crc32(self.old): "old", zlib.crc32(self.new): "new"}.get(
                    info.state_crc32, "lost"
                )
                step = client.train(self.x[6], self.y[6])
                expected = {"old": self.next_loss_old, "new": self.next_loss}.get(which)
                next_equal = expected is not None and step.loss.view(np.uint32) == expected.view(
                    np.uint32
                )
            finally:
                device.close()
        return {"cut": cut, "exit_status": status, "state": which, "next_step_equal": next_equal}


def markdown(results):
    env = results["environment"]
    lines = [
        "# Learner benchmark",
        "",
        f"`{env['command']}`, {env['date_utc']}, {results['seconds']:.0f} s on "
        f"{env['cpus_usable']} cores ({env['cpu_model']}); QEMU mps2-an386 with the "
        "nRF52840's memory (`-icount shift=0`: counts are exact instructions); the "
        "DS-CNN with a new head (`examples/ds_cnn_fsdd.tflite`) on FSDD.",
        "",
        "## Streaming, saving, restoring",
        "",
        "| plan | samples/s streamed + trained | instructions / step streamed "
        "(pipelined) | with the samples embedded | UART interrupt share | one request "
        "at a time − embedded, every step | save: bytes written | pages erased | "
        "instructions / save | instructions / boot restore | state restored == host |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["streams"]:
        lines.append(
            f"| {r['plan']} | {r['samples_per_second']:.1f} | "
            f"{r['instructions_per_step_streamed']:,} | {r['instructions_per_step_embedded']:,} | "
            f"{r['uart_interrupt_instructions_per_step']:,} | "
            f"{', '.join(str(d) for d in r['sequential_minus_embedded'])} | "
            f"{r['save_bytes_written']:,} | "
            f"{r['save_pages_erased']} | {r['save_instructions']:,} | "
            f"{r['restore_instructions']:,} | {'yes' if r['restored_equal_host'] else 'NO'} |"
        )
    lines += [
        "",
        "Pipelined, the host sends the next sample while the device trains, and "
        "the UART's receive interrupt (a few instructions per byte) runs inside the "
        "measured step. One request at a time, every step takes exactly the "
        "instructions it takes with the samples embedded in the firmware.",
        "",
        "## Firmware flash",
        "",
        "| plan | learner image (no samples) | training firmware with the same "
        "samples embedded | learner flash incl. two state slots | RAM globals |",
        "|---|---|---|---|---|",
    ]
    for r in results["streams"]:
        lines.append(
            f"| {r['plan']} | {r['learner_image_bytes']:,} | "
            f"{r['embedded_image_bytes']:,} ({r['samples']} samples) | "
            f"{r['learner_flash_used']:,} | {r['learner_ram_globals']:,} |"
        )
    cuts = results["cuts"]
    lines += [
        "",
        "## Power cuts",
        "",
        f"The classifier plan's save ({cuts['events']} flash events: "
        f"{cuts['pages']} page erases and the word writes, each cut before it starts "
        "and halfway through) cut at every erase event, the header's last 16 events "
        "and a stride through the rest, and once not at all; after each cut the "
        "device boots again and must hold the state saved before the cut (old) or "
        "the one being saved (new), and its next training step must equal the "
        "host's from that state. The new state counts only once its header's last "
        "word is whole, so cuts before it leave the old one.",
        "",
        "| cuts tried | old state | new state | states lost | next step == host |",
        "|---|---|---|---|---|",
        f"| {cuts['tried']} | {cuts['old']} | {cuts['new']} | {cuts['lost']} | "
        f"{cuts['next_step_equal']}/{cuts['tried']} |",
        "",
    ]
    return "\n".join(lines)


def main(argv):
    del argv
    load_at_start = environment.load_average()
    start = time.monotonic()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = pathlib.Path(tmp)
        x, y = task_samples(_STREAM.value)
        results["streams"] = []
        measured_plans = plans()
        for name, plan in measured_plans.items():
            print(f"streaming {len(y)} samples with the {name} plan ...", flush=True)
            folder = work / name.split()[0]
            folder.mkdir()
            results["streams"].append(stream_and_save(name, plan, x, y, folder))
        sweep = CutSweep(measured_plans["classifier"], work)
        points = sweep.points(_CUTS.value)
        print(f"cutting the power at {len(points)} of {sweep.events} flash events ...", flush=True)
        with concurrent.futures.ThreadPoolExecutor(_WORKERS.value) as pool:
            outcomes = list(pool.map(sweep.run, points))
    cuts = {
        "events": sweep.events,
        "pages": sweep.pages,
        "tried": len(outcomes),
        "old": sum(o["state"] == "old" for o in outcomes),
        "new": sum(o["state"] == "new" for o in outcomes),
        "lost": sum(o["state"] == "lost" for o in outcomes),
        "next_step_equal": sum(bool(o["next_step_equal"]) for o in outcomes),
        "outcomes": outcomes,
    }
    results["cuts"] = cuts
    results["environment"] = environment.describe(load_at_start)
    results["environment"]["command"] = environment.command_line()
    results["seconds"] = time.monotonic() - start
    out = pathlib.Path(_OUT.value)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown(results))
    out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(markdown(results))
    bad = (
        cuts["lost"]
        or cuts["next_step_equal"] != cuts["tried"]
        or not all(
            r["losses_equal_host"]
            and r["restored_equal_host"]
            and r["sequential_minus_embedded"] == [0]
            for r in results["streams"]
        )
    )
    return 1 if bad else 0


if __name__ == "__main__":
    app.run(main)
