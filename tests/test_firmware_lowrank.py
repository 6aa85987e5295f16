"""Low-rank training (runtime/optimizer/tt_lowrank.h) on the emulated nRF52840
(mps2_an386 under QEMU) is bit-identical to the host Trainer.

The transfer DS-CNN (examples/ds_cnn_fsdd.tflite) trains its
last pointwise CONV_2D (operator 8, 64 x 64 weights, rank 8) and its new
FULLY_CONNECTED head (operator 10, 10 x 64, rank 4) by projected Adam, in
batches of 2 with a projector refresh every 2 updates, so the run covers
accumulation over a batch, the Adam step, the Gram-Schmidt refresh and the
integer square root on the Cortex-M4. The host replays the same steps:
every loss, every trained weight and bias byte and the arena must be the
same.

QEMU time: (EPOCHS * train + 2 * test) DS-CNN forward passes of about 108 M
instructions each, plus the backward passes, about 5 s.
"""

import zlib

import numpy as np
import pytest

from test_firmware_training import FSDD, TRANSFER_MODEL, TRANSFER_TRAIN, _quantized, train_on_mcu
from tflm_training import Trainer, TrainingPlan, memory_model

pytestmark = pytest.mark.firmware

TRAIN_PER_CLASS = 1
TEST_PER_CLASS = 1
EPOCHS = 2
RANKS = {8: 8, 10: 4}
SETTINGS = {"learning_rate": 0.5, "batch_size": 2, "seed": 11}


@pytest.fixture(scope="module")
def case():
    """(model, plan bytes, (train x, y), (test x, y))."""
    model = TRANSFER_MODEL.read_bytes()
    plan = TrainingPlan.lowrank(model, RANKS, refresh_steps=2, **SETTINGS).to_bytes()
    train = _quantized(model, TRANSFER_TRAIN, "train", TRAIN_PER_CLASS, 0)
    test = _quantized(model, FSDD, "test", TEST_PER_CLASS, 0)
    return model, plan, train, test


@pytest.fixture(scope="module")
def mcu(case, tmp_path_factory):
    model, plan, train, test = case
    return train_on_mcu(model, plan, train, test, tmp_path_factory.mktemp("lowrank"), EPOCHS)[2]


@pytest.fixture(scope="module")
def host(case):
    model, plan, (train_x, train_y), (test_x, _) = case
    trainer = Trainer(model, plan)
    losses = []
    for epoch in range(EPOCHS):
        trainer.begin_epoch(epoch)
        losses += [trainer.train_step(train_x[i], train_y[i]) for i in range(len(train_y))]
    return {
        "trainer": trainer,
        "losses": np.array(losses, dtype=np.float32),
        "after": trainer.predict(test_x),
    }


def test_low_rank_training_on_the_emulated_board_is_bit_identical_to_the_host(mcu, host, case):
    model, plan, (_, train_y), _ = case
    trainer = host["trainer"]
    # Ten updates of two samples; the projectors refresh in updates 3, 5, 7, 9.
    assert len(host["losses"]) == EPOCHS * len(train_y) == 20
    assert mcu.losses.view(np.uint32).tolist() == host["losses"].view(np.uint32).tolist()
    assert np.all(np.isfinite(mcu.losses))
    assert sorted(mcu.parameters) == trainer.parameter_tensors
    assert {p["kind"] for p in mcu.parameters.values()} == {"weights", "bias"}
    for tensor, event in mcu.parameters.items():
        expected = trainer.get_tensor(tensor).tobytes()
        assert event["data"] == expected, f"tensor {tensor}"
        assert event["crc32"] == zlib.crc32(expected)
    weights = [p["data"] for p in mcu.parameters.values() if p["kind"] == "weights"]
    assert len(weights) == 2 and all(model.find(w) < 0 for w in weights)  # both trained
    assert mcu.predictions == host["after"].tolist()


def test_the_arena_with_low_rank_state_is_the_same_on_board_host_and_memory_model(mcu, host, case):
    model, plan, _, _ = case
    memory = host["trainer"].memory()
    assert mcu.init["arena_size"] == mcu.init["arena_used"] == memory["total"]
    assert {k: mcu.init[k] for k in memory if k != "total"} == {
        k: v for k, v in memory.items() if k != "total"
    }
    assert memory_model.training_memory(model, plan).as_dict() == memory
