"""The per-layer report (planning/layer_report.py, tools/layer_profile.py):
per operator of a training step, its MACs forward and backward, the
training arena live while it runs (memory_model, exact), what it trains,
and the instructions of its forward and backward work measured by the
training firmware's operator hook (tt_trainer_set_operator_hook) under
QEMU; the hook leaves every trained bit as it was."""

import numpy as np
import pytest

import training_helpers as th
from benchmarks import models as benchmark_models
from planning import layer_report
from tflm_training import LayerPlan, Trainer, TrainingPlan, memory_model, tflite_graph
from tools import emulation, layer_profile, training_firmware

MODEL = th.model_bytes("transfer/ds_cnn_fsdd")


@pytest.fixture(scope="module")
def plan():
    """Biases from operator 2 on, the classifier's weights: the pointwise
    and depthwise layers pass gradients, operators 0 and 1 are frozen."""
    return TrainingPlan.for_model(
        MODEL,
        [LayerPlan(op, "bias") for op in range(2, 9)] + [LayerPlan(10, "weights")],
        learning_rate=0.05,
    )


def test_rows_give_each_operator_its_macs_memory_and_training(plan):
    rows = layer_report.layer_rows(MODEL, plan)
    graph = tflite_graph.read_graph(MODEL)
    assert [r.operator for r in rows] == list(range(11))  # up to the logits
    memory = memory_model.training_memory(MODEL, plan)
    steps = 2 * len(graph.operators)
    for row, op in zip(rows, graph.operators):
        macs = (
            benchmark_models.op_macs(
                op.name, graph.tensors[op.outputs[0]].shape, graph.tensors[op.inputs[1]].shape
            )
            if op.name in benchmark_models.MAC_OPS
            else 0
        )
        assert (row.name, row.forward_macs) == (op.name, macs)
        live = sum(p.size for p in memory.placements if p.first <= op.index <= p.last)
        assert row.arena_forward == memory.region_offset + live
        assert row.instructions_forward is None and row.instructions_backward is None
        visited = op.index >= 2
        assert (row.arena_backward is not None) == visited
        if visited:
            live = sum(p.size for p in memory.placements if p.first <= steps - op.index <= p.last)
            assert row.arena_backward == memory.region_offset + live
    assert rows[2].trains == "bias 64/64" and rows[9].trains == ""
    assert rows[10].trains == "weights 10/10"
    # Biases need no MACs; operator 2's input gradient is not needed
    # (operator 1 is frozen), operator 3's is; the classifier computes its
    # weight gradients and its input gradient.
    assert rows[2].backward_macs == 0 and rows[3].backward_macs == rows[3].forward_macs
    assert rows[10].backward_macs == 2 * rows[10].forward_macs
    assert rows[0].backward_macs == rows[1].backward_macs == 0
    assert max(max(r.arena_forward, r.arena_backward or 0) for r in rows) <= memory.total


@pytest.mark.slow
def test_markdown_and_plot(plan, tmp_path):
    rows = layer_report.layer_rows(MODEL, plan, {0: {"forward": 1234.0, "backward": None}})
    text = layer_report.markdown(rows)
    assert text.count("\n") == 2 + len(rows)
    assert "| 0 | CONV_2D |  | 1,280,000 | 0 |" in text and "| 1,234 |" in text
    layer_report.plot(rows, tmp_path / "layers.png", "ds_cnn_fsdd")
    assert (tmp_path / "layers.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.firmware
def test_the_firmware_measures_every_operator_and_trains_the_same_bits(plan, tmp_path):
    x, y = th.quantized_split("fsdd", "train", (1, 49, 40, 1), 3)
    firmware = training_firmware.build_training_firmware(
        "mps2_an386", MODEL, plan, x, y, out_dir=tmp_path, profile_operators=True
    )
    result = emulation.run_firmware(firmware.elf, "mps2_an386", timeout=300)
    assert result.status == 0, result.log.errors
    run = training_firmware.TrainingRun.from_log(result.log)
    trainer = Trainer(MODEL, plan)
    losses = np.array([trainer.train_step(x[i], y[i]) for i in range(3)], np.float32)
    assert run.losses.view(np.uint32).tolist() == losses.view(np.uint32).tolist()
    profile = run.operator_profile
    assert sorted(profile) == list(range(11))
    assert all(e["steps"] == 3 and e["forward"] > 0 for e in profile.values())
    assert [op for op, e in profile.items() if e["backward"] > 0] == list(range(2, 11))
    # A step's forward work is an inference plus the clamp masks (a few
    # instructions per output value of each masked operator).
    forward = sum(e["forward"] for e in profile.values()) / 3
    assert run.count_per_inference() < forward < 1.1 * run.count_per_inference()
    assert sum(s["count"] for s in run.steps) == sum(
        e["forward"] + e["backward"] for e in profile.values()
    )


@pytest.mark.firmware
def test_write_report_puts_the_measured_counts_in_the_rows(plan, tmp_path):
    x, y = th.quantized_split("fsdd", "train", (1, 49, 40, 1), 2)
    rows = layer_profile.write_report(MODEL, plan, x, y, tmp_path, "ds_cnn_fsdd")
    assert all(r.instructions_forward > 0 for r in rows)
    assert [r.operator for r in rows if r.instructions_backward] == list(range(2, 11))
    for name in ("layers.md", "layers.json", "layers.png"):
        assert (tmp_path / name).is_file()
