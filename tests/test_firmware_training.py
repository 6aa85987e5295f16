"""On-device training on the emulated nRF52840 (mps2_an386 under QEMU).

A real transfer task: a DS-CNN pretrained on Speech Commands gets a new
10-class classifier for the Free Spoken Digit Dataset, and only that layer
trains. The model is the transfer fixture examples/ds_cnn_fsdd.tflite (new
head untrained; tests/models/transfer/manifest.json) with
examples/fsdd_train.npz when they exist; until then, examples/ds_cnn.tflite
with its classifier zeroed (12 outputs, labels 0-9) and the training subset
of examples/fsdd.npz. Test samples come from examples/fsdd.npz x_test
either way.

The firmware (boards/app/training_app.c) embeds the model, the plan and
class-balanced, shuffled subsets; it evaluates the test subset, trains
EPOCHS passes over the training subset, and evaluates again. The host
Trainer replays the same steps on the same samples in the same order, and
every loss, every trained weight and bias byte, the arena and every
prediction must be identical. Test accuracy must rise over the starting
point on both. The same firmware, built for the real nRF52840, must fit its
256 KB of RAM and 1 MB of flash.

QEMU time: (EPOCHS * train + 2 * test) DS-CNN forward passes of about 108 M
instructions each, about 25 s.

A second, small run trains a TraDy plan (mlp on MNIST: two hidden layers
whose channels are redrawn every epoch within a shared state budget, the
classifier static): the channels each epoch draws, every loss and every
trained byte must equal the host's, and the draws equal
channel_sampler.sample_channels (a few seconds of QEMU).
"""

import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

import training_helpers as th
from test_board_limits import GLOBALS, SKETCH
from tflm_training import Interpreter, Trainer, TrainingPlan, tflite_graph
from tflm_training.channel_sampler import sample_channels
from tools import board_config, emulation, firmware_build, firmware_console, training_firmware

BOARD = "mps2_an386"
REAL_BOARD = "nrf52840"
TRANSFER_MODEL = th.TRANSFER_MODEL
TRANSFER_TRAIN = th.data_path("fsdd_train")
FSDD = th.data_path("fsdd")
TRAIN_PER_CLASS = 4
TEST_PER_CLASS = 5
EPOCHS = 3
SETTINGS = {"learning_rate": 0.1, "momentum": 0.9, "batch_size": 5}
SEED = 0
QEMU_TIMEOUT_S = 300


def _quantized(model, path, split, per_class, seed):
    """A class-balanced, shuffled subset of a dataset split, as x / 255
    quantized with the model's input scale and zero point."""
    details = Interpreter.from_bytes(model).get_input_details(0)
    quantization = details["quantization_parameters"]
    with np.load(path) as data:
        x, y = data[f"x_{split}"], data[f"y_{split}"].astype(np.int64)
    rng = np.random.default_rng(seed)
    chosen = np.concatenate(
        [rng.permutation(np.flatnonzero(y == c))[:per_class] for c in np.unique(y)]
    )
    chosen = rng.permutation(chosen)
    real = x[chosen].astype(np.float32) / np.float32(255.0)
    q = np.round(real / quantization["scales"][0]) + quantization["zero_points"][0]
    q = np.clip(q, -128, 127).astype(np.int8)
    return q.reshape((len(chosen),) + tuple(details["shape"][1:])), y[chosen]


@pytest.fixture(scope="module")
def case():
    """(model, plan bytes, (train x, y), (test x, y))."""
    model, train_file = TRANSFER_MODEL.read_bytes(), TRANSFER_TRAIN
    plan = TrainingPlan.classifier_only(model, **SETTINGS).to_bytes()
    train = _quantized(model, train_file, "train", TRAIN_PER_CLASS, SEED)
    test = _quantized(model, FSDD, "test", TEST_PER_CLASS, SEED)
    return model, plan, train, test


def train_on_mcu(model, plan, train, test, out_dir, epochs):
    """(firmware, emulation result, TrainingRun) of one QEMU training run
    on `train` (x, y), evaluated on `test` (x, y) or None."""
    test_x, test_y = test if test is not None else (None, None)
    firmware = training_firmware.build_training_firmware(
        BOARD,
        model,
        plan,
        *train,
        out_dir,
        test_x=test_x,
        test_y=test_y,
        epochs=epochs,
        dump_parameters=True,
    )
    result = emulation.run_firmware(firmware.elf, BOARD, timeout=QEMU_TIMEOUT_S)
    assert result.status == 0, (result.log.errors, result.note)
    return firmware, result, training_firmware.TrainingRun.from_log(result.log)


@pytest.fixture(scope="module")
def mcu(case, tmp_path_factory):
    """(firmware, emulation result, TrainingRun) of one QEMU run."""
    model, plan, train, test = case
    return train_on_mcu(model, plan, train, test, tmp_path_factory.mktemp("training"), EPOCHS)


@pytest.fixture(scope="module")
def host(case):
    """The host Trainer after the firmware's steps, with what it saw."""
    model, plan, (train_x, train_y), (test_x, test_y) = case
    trainer = Trainer(model, plan)
    before = trainer.predict(test_x)
    losses = []
    for epoch in range(EPOCHS):
        trainer.begin_epoch(epoch)  # as the firmware does
        losses += [trainer.train_step(train_x[i], train_y[i]) for i in range(len(train_y))]
    after = trainer.predict(test_x)
    return {
        "trainer": trainer,
        "before": before,
        "after": after,
        "losses": np.array(losses, dtype=np.float32),
    }


@pytest.mark.firmware
def test_events_arrive_complete_and_in_order(mcu, case):
    _, result, _ = mcu
    log = result.log
    assert log.bad_lines == [] and log.errors == []
    names = [e["event"] for e in log.events]
    train, test = len(case[2][1]), len(case[3][1])
    num_parameters = len(log.named("parameters"))
    assert names == (
        ["training_init", "evaluation"]
        + ["train_step"] * (EPOCHS * train)
        + ["prediction"] * test
        + ["evaluation"]
        + ["parameters"] * num_parameters
        + ["stack", "ram", "exit"]
    )


@pytest.mark.firmware
def test_arena_is_exactly_what_the_host_trainer_uses(mcu, host):
    _, _, run = mcu
    trainer = host["trainer"]
    assert run.init["arena_size"] == run.init["arena_used"] == trainer.arena_used_bytes()
    memory = trainer.memory()
    assert {k: run.init[k] for k in memory if k != "total"} == {
        k: v for k, v in memory.items() if k != "total"
    }
    assert run.init["epochs"] == EPOCHS and run.init["test_set"] == "test"


@pytest.mark.firmware
def test_every_loss_is_bit_identical_to_the_host(mcu, host, case):
    _, _, run = mcu
    train = len(case[2][1])
    assert [s["index"] for s in run.steps] == list(range(EPOCHS * train))
    assert [(s["epoch"], s["sample"]) for s in run.steps] == [
        (e, i) for e in range(EPOCHS) for i in range(train)
    ]
    assert run.losses.view(np.uint32).tolist() == host["losses"].view(np.uint32).tolist()
    assert np.all(np.isfinite(run.losses))


@pytest.mark.firmware
def test_trained_weights_and_biases_are_bit_identical_to_the_host(mcu, host, case):
    _, _, run = mcu
    trainer = host["trainer"]
    assert sorted(run.parameters) == trainer.parameter_tensors
    assert {p["kind"] for p in run.parameters.values()} == {"weights", "bias"}
    for tensor, event in run.parameters.items():
        expected = trainer.get_tensor(tensor).tobytes()
        assert event["bytes"] == len(expected)
        assert event["data"] == expected, f"tensor {tensor}"
        assert event["crc32"] == zlib.crc32(expected)
    # Training changed them.
    model = case[0]
    assert any(model.find(p["data"]) < 0 for p in run.parameters.values())


@pytest.mark.firmware
def test_test_accuracy_rises_over_the_starting_point_on_mcu_and_host(mcu, host, case):
    _, _, run = mcu
    test_y = case[3][1]
    assert run.before["total"] == run.after["total"] == len(test_y)
    assert run.before["correct"] == int(np.sum(host["before"] == test_y))
    assert run.predictions == host["after"].tolist()
    assert run.after["correct"] == int(np.sum(host["after"] == test_y))
    assert run.accuracy("after") > run.accuracy("before")


@pytest.mark.firmware
def test_reports_instructions_per_step_and_peak_ram(mcu, host):
    firmware, _, run = mcu
    counts = run.step_counts
    assert all(isinstance(c, int) and c > 0 for c in counts), counts
    assert run.steps[0]["counter"] == "instructions"
    per_inference = run.count_per_inference()
    assert per_inference > 0
    # A step is a forward pass plus the loss and the classifier's backward.
    assert min(counts) > per_inference
    ram = run.ram
    assert ram["static"] == firmware.usage.ram_bytes  # .data + .bss, from the ELF
    assert ram["arena_size"] == ram["arena_used"] == host["trainer"].arena_used_bytes()
    assert ram["static"] >= ram["arena_size"]
    assert 0 < ram["stack_used"] == run.stack["used"] < run.stack["size"]
    assert ram["peak"] == ram["static"] + ram["stack_used"]
    assert ram["peak"] <= board_config.load_board(BOARD).ram.size
    assert "per training step" in run.summary()


@pytest.mark.firmware
def test_nrf52840_training_firmware_fits_the_board(case, tmp_path):
    model, plan, (train_x, train_y), (test_x, test_y) = case
    (tmp_path / "model.tflite").write_bytes(model)
    (tmp_path / "plan.bin").write_bytes(plan)
    np.savez(tmp_path / "train.npz", x=train_x, y=train_y)
    np.savez(tmp_path / "test.npz", x=test_x, y=test_y)
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "tools/build.py",
            f"--board={REAL_BOARD}",
            f"--app={training_firmware.APP}",
            f"--model={tmp_path / 'model.tflite'}",
            f"--plan={tmp_path / 'plan.bin'}",
            f"--train={tmp_path / 'train.npz'}",
            f"--test={tmp_path / 'test.npz'}",
            f"--epochs={EPOCHS}",
            f"--out={out}",
        ],
        cwd=th.TESTS.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    board = board_config.load_board(REAL_BOARD)
    flash_used, _, flash_max = map(int, SKETCH.search(result.stdout).groups())
    ram_used, _, ram_left, ram_max = map(int, GLOBALS.search(result.stdout).groups())
    assert (flash_max, ram_max) == (1024 * 1024, 256 * 1024)
    assert flash_used <= flash_max
    assert ram_used + board.stack_size <= ram_max and ram_left == ram_max - ram_used
    # The model and every sample are in flash; the exact arena is in RAM.
    assert flash_used > len(model) + train_x.nbytes + test_x.nbytes
    assert ram_used >= Trainer(model, plan).arena_used_bytes()
    for name in ("firmware.elf", "firmware.hex", "firmware.bin"):
        assert (out / name).stat().st_size > 0


@pytest.mark.slow
def test_build_names_what_is_missing_or_wrong(case, tmp_path):
    model = tmp_path / "model.tflite"
    model.write_bytes(case[0])
    missing = subprocess.run(
        [
            sys.executable,
            "tools/build.py",
            f"--board={BOARD}",
            f"--app={training_firmware.APP}",
            f"--model={model}",
            "--plan=classifier_only",
            f"--out={tmp_path / 'out'}",
        ],
        cwd=th.TESTS.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert missing.returncode != 0 and "--train" in missing.stderr
    assert "Traceback" not in missing.stderr
    other_plan = TrainingPlan.classifier_only(th.model_bytes("mlp")).to_bytes()
    with pytest.raises(firmware_build.BuildError, match="cannot train"):
        training_firmware.build_training_firmware(
            BOARD, case[0], other_plan, *case[2], tmp_path / "bad"
        )


def test_loss_bits_decode_as_float32():
    log = firmware_console.ConsoleLog.from_text(
        'TT {"event":"training_init","epochs":1,"train_samples":1,"test_set":"train"}\n'
        'TT {"event":"evaluation","phase":"before","correct":0,"total":1,'
        '"counter":"instructions","count":10}\n'
        f'TT {{"event":"train_step","index":0,"epoch":0,"sample":0,'
        f'"loss_bits":{struct.unpack("<I", struct.pack("<f", 2.25))[0]},'
        '"counter":"instructions","count":30}\n'
        'TT {"event":"prediction","index":0,"class":3}\n'
        'TT {"event":"evaluation","phase":"after","correct":1,"total":1,'
        '"counter":"instructions","count":12}\n'
        'TT {"event":"parameters","tensor":5,"operator":1,"kind":"bias","bytes":2,'
        '"crc32":0,"hex":"00ff"}\n'
        'TT {"event":"stack","used":8,"size":16}\n'
        'TT {"event":"ram","static":100,"arena_size":64,"arena_used":64,'
        '"stack_used":8,"peak":108}\n'
    )
    run = training_firmware.TrainingRun.from_log(log)
    assert run.losses.tolist() == [2.25] and run.predictions == [3]
    assert run.parameters[5]["data"] == b"\x00\xff"
    assert run.count_per_inference() == 11 and run.accuracy("after") == 1.0


@pytest.mark.firmware
@pytest.mark.parametrize("problem", ["arena_too_small", "label_out_of_range"])
def test_runtime_errors_reach_the_console_and_the_exit_status(problem, case, tmp_path):
    model, plan, (train_x, train_y), _ = case
    need = Trainer(model, plan).arena_used_bytes()
    label = 99 if problem == "label_out_of_range" else int(train_y[0])
    firmware = training_firmware.build_training_firmware(
        BOARD,
        model,
        plan,
        train_x[:1],
        [label],
        tmp_path,
        arena_bytes=need - 16 if problem == "arena_too_small" else None,
    )
    result = emulation.run_firmware(firmware.elf, BOARD, timeout=60)
    (error,) = result.log.errors
    assert result.status == result.qemu_returncode == error["code"] > 0
    assert error["stage"] == ("init" if problem == "arena_too_small" else "train_step")
    assert error["message"]
    assert result.log.named("exit") == [{"event": "exit", "status": error["code"]}]


# -- a sampled (TraDy) plan ---------------------------------------------------------

SAMPLED_EPOCHS = 3
SAMPLED_TRAIN = 16


@pytest.fixture(scope="module")
def sampled_case():
    """(model, plan, train x, train y): mlp's hidden layers sampled within
    a budget of about 3 channels of operator 1 or 38 of operator 2 (state:
    residual, velocity, accumulator), the classifier static."""
    model = th.model_bytes("mlp")
    plan = TrainingPlan.sampled(
        model, [1, 2], budget_bytes=30000, seed=2024, learning_rate=0.05, momentum=0.9, batch_size=2
    )
    x, y = th.shuffled(*th.quantized_split("mnist", "train", (1, 28, 28, 1)), 1)
    return model, plan, x[:SAMPLED_TRAIN], y[:SAMPLED_TRAIN]


@pytest.fixture(scope="module")
def sampled_runs(sampled_case, tmp_path_factory):
    """(firmware TrainingRun, its log, host results) of the sampled plan."""
    model, plan, x, y = sampled_case
    _, result, run = train_on_mcu(
        model, plan, (x, y), None, tmp_path_factory.mktemp("sampled"), SAMPLED_EPOCHS
    )
    trainer = Trainer(model, plan)
    losses, selections = [], []
    for epoch in range(SAMPLED_EPOCHS):
        trainer.begin_epoch(epoch)
        selections.append(trainer.selected_channels())
        losses += [trainer.train_step(x[i], y[i]) for i in range(len(y))]
    host = {
        "trainer": trainer,
        "losses": np.array(losses, dtype=np.float32),
        "selections": selections,
    }
    return run, result.log, host


@pytest.mark.firmware
def test_sampled_plan_draws_the_same_channels_on_mcu_and_host(sampled_runs, sampled_case):
    _, log, host = sampled_runs
    plan = sampled_case[1]
    events = log.named("selection")
    assert [(e["epoch"], e["operator"]) for e in events] == [
        (epoch, op) for epoch in range(SAMPLED_EPOCHS) for op in (1, 2)
    ]
    for event in events:
        on_host = host["selections"][event["epoch"]]
        assert event["channels"] == on_host[event["operator"]]
        assert event["channels"] == sample_channels(plan, event["epoch"])[event["operator"]]
    # The draws differ between epochs and fill the budget.
    draws = [tuple(tuple(s[op]) for op in (1, 2)) for s in host["selections"]]
    assert len(set(draws)) == SAMPLED_EPOCHS
    costs = {layer.operator_index: layer.channel_cost for layer in plan.layers}
    for selection in host["selections"]:
        used = sum(costs[op] * len(selection[op]) for op in (1, 2))
        assert plan.sample_budget - min(costs[1], costs[2]) < used <= plan.sample_budget
        assert selection[3] == list(range(10))  # the classifier trains fully


@pytest.mark.firmware
def test_sampled_plan_trains_bit_identically_on_mcu_and_host(sampled_runs, sampled_case):
    run, log, host = sampled_runs
    model = sampled_case[0]
    trainer = host["trainer"]
    assert log.bad_lines == [] and log.errors == []
    memory = trainer.memory()
    assert memory["sampled_state"] >= sampled_case[1].sample_budget
    assert {k: run.init[k] for k in memory if k != "total"} == {
        k: v for k, v in memory.items() if k != "total"
    }
    assert run.init["arena_used"] == trainer.arena_used_bytes()
    assert len(run.steps) == SAMPLED_EPOCHS * SAMPLED_TRAIN
    assert run.losses.view(np.uint32).tolist() == host["losses"].view(np.uint32).tolist()
    assert np.all(np.isfinite(run.losses))
    assert sorted(run.parameters) == trainer.parameter_tensors
    for tensor, event in run.parameters.items():
        assert event["data"] == trainer.get_tensor(tensor).tobytes(), f"tensor {tensor}"
    # Every layer's weights moved, the sampled ones only in drawn channels.
    graph = tflite_graph.read_graph(model)
    for op in (1, 2, 3):
        weights = graph.tensors[graph.operators[op].inputs[1]]
        original = np.frombuffer(model, np.int8, weights.data_size, weights.data_pos)
        trained = trainer.get_tensor(weights.index)
        changed = {
            c
            for c in range(trained.shape[0])
            if not np.array_equal(trained[c], original.reshape(trained.shape)[c])
        }
        drawn = set().union(*(s[op] for s in host["selections"]))
        assert changed and changed <= drawn, (op, changed, drawn)
