"""Saturation of a trained model: how many of the parameters training
touched sit at the ends of their integer range.

An update that overshoots moves an int8 weight to -127 / 127 (the
optimizer's clamp, tt_optimizer.h) or an int32 bias to its limits, and
stops there: the model still runs, losses may even look finite, but the
layer has stopped learning and usually predicts worse. A pretrained model
already has some weights at +-127 (per-channel quantization maps each
channel's largest weight there), so what counts is the share pinned now
that was not pinned before training.

    report = saturation.measure(model_bytes, trained_model_bytes, plan)
    saturation.check(report, limit=0.25)  # SaturationError past the limit
"""

import dataclasses

import numpy as np

from tflm_training import plan as plan_module
from tflm_training import tflite_graph
from tflm_training.errors import SaturationError

WEIGHT_LIMIT = 127  # the optimizer clamps int8 weights to [-127, 127]
BIAS_LIMITS = (np.iinfo(np.int32).min, np.iinfo(np.int32).max)
# Default of check(): more than this share of a layer's trained weights or
# biases newly pinned flags the model.
DEFAULT_LIMIT = 0.25
# More than this share newly pinned is worth a warning (tools report it).
WARNING_SHARE = 0.02


@dataclasses.dataclass
class LayerSaturation:
    operator: int
    weights: int  # trained weights (0 for a bias-only layer)
    weights_pinned: float  # share at +-127 now
    weights_newly_pinned: float  # share at +-127 now, not before
    biases: int
    biases_pinned: float
    biases_newly_pinned: float

    @property
    def worst(self):
        return max(self.weights_newly_pinned, self.biases_newly_pinned)

    def describe(self):
        parts = []
        if self.weights:
            parts.append(
                f"{self.weights_newly_pinned:.0%} of {self.weights} trained weights "
                f"newly pinned at +-{WEIGHT_LIMIT}"
            )
        if self.biases:
            parts.append(
                f"{self.biases_newly_pinned:.0%} of {self.biases} biases newly "
                "pinned at the int32 limits"
            )
        return f"operator {self.operator}: " + ", ".join(parts)


def _values(model_bytes, tensor):
    dtype = np.int8 if tensor.type == tflite_graph.INT8 else np.int32
    count = tensor.data_size // np.dtype(dtype).itemsize
    return np.frombuffer(model_bytes, dtype=dtype, count=count, offset=tensor.data_pos).reshape(
        tensor.shape
    )


def _shares(before, after, pinned):
    now, was = pinned(after), pinned(before)
    count = now.size
    if count == 0:
        return 0, 0.0, 0.0
    return count, float(now.mean()), float((now & ~was).mean())


def measure(model_bytes, trained_model_bytes, plan):
    """[LayerSaturation] per plan layer, over the channels it trains (a
    sampled layer: all its candidates), comparing the trained model with
    the model it started from."""
    graph = tflite_graph.read_graph(model_bytes)
    report = []
    for layer in plan.layers:
        layout = plan_module.parameter_layout(graph, layer.operator_index)
        op = graph.operators[layer.operator_index]
        axis = -1 if op.builtin_code == tflite_graph.DEPTHWISE_CONV_2D else 0
        channels = np.asarray(layer.channels, dtype=np.int64)
        weights = (0, 0.0, 0.0)
        if layer.update != "bias":
            tensor = graph.tensors[layout["weights"]]
            before, after = (
                np.take(_values(m, tensor), channels, axis=axis)
                for m in (model_bytes, trained_model_bytes)
            )
            weights = _shares(before, after, lambda w: np.abs(w.astype(np.int32)) >= WEIGHT_LIMIT)
        biases = (0, 0.0, 0.0)
        if layout["bias"] is not None:
            tensor = graph.tensors[layout["bias"]]
            before, after = (
                _values(m, tensor).reshape(-1)[channels] for m in (model_bytes, trained_model_bytes)
            )
            biases = _shares(before, after, lambda b: np.isin(b, BIAS_LIMITS))
        report.append(LayerSaturation(layer.operator_index, *weights, *biases))
    return report


def worst(report):
    """The largest newly pinned share of any layer (0 for an empty report)."""
    return max((layer.worst for layer in report), default=0.0)


def check(report, limit=DEFAULT_LIMIT):
    """SaturationError when a layer's newly pinned share exceeds `limit`."""
    over = [layer for layer in report if layer.worst > limit]
    if over:
        raise SaturationError(
            "training saturated the model: "
            + "; ".join(layer.describe() for layer in over)
            + f" (more than {limit:.0%}); lower the learning rate"
        )


def as_dicts(report):
    return [dataclasses.asdict(layer) for layer in report]


def from_dicts(dicts):
    return [LayerSaturation(**entry) for entry in dicts]
