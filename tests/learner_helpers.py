"""Shared by the learner tests: the transfer DS-CNN, its plans of every
update kind, and FSDD samples quantized for it."""

import tflm_training
from tflm_training import learner
from training_helpers import TRANSFER_MODEL, quantized_split, shuffled

MODEL = TRANSFER_MODEL.read_bytes()
SETTINGS = {"learning_rate": 0.02, "momentum": 0.9, "batch_size": 3}


def plans():
    """{name: plan bytes}: every kind of update the runtime has."""
    P = tflm_training.TrainingPlan
    return {
        "classifier": P.classifier_only(MODEL, **SETTINGS).to_bytes(),
        "bias": P.bias_only(MODEL, first_operator=6, **SETTINGS).to_bytes(),
        "bias_16_bit": P.bias_only(
            MODEL, first_operator=6, gradient_bits=16, **SETTINGS
        ).to_bytes(),
        "sparse": P.for_model(MODEL, {8: range(16), 10: None}, **SETTINGS).to_bytes(),
        "sampled": P.sampled(MODEL, [6, 8], 6000, seed=3, **SETTINGS).to_bytes(),
        "lowrank": P.lowrank(
            MODEL, {8: 4}, refresh_steps=2, static={10: None}, learning_rate=0.02, batch_size=3
        ).to_bytes(),
    }


def samples(count=40, seed=0):
    x, y = quantized_split("fsdd", "train", (1, 49, 40, 1))
    x, y = shuffled(x, y, seed)
    return x[:count], y[:count]


def blank_flash(plan, pages_extra=0):
    state = tflm_training.Trainer(MODEL, plan).state_bytes()
    return bytearray(b"\xff" * (learner.region_bytes(state) + 4096 * pages_extra))
