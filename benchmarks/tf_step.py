"""TensorFlow's host memory for one full-backprop training step, at batch
1, of the float model equivalent to an int8 .tflite file
(benchmarks/float_graph.py): softmax cross-entropy, gradients of every
weight and bias by tf.GradientTape, and a plain SGD update, all inside one
tf.function (graph mode, as Keras' fit() runs a step).

benchmarks/training.py runs this as a child process, once per model and
memory view, so that each measurement starts from a fresh TensorFlow:

  python benchmarks/tf_step.py --model tests/models/mlp.tflite \\
      --sample sample.npz          # x: the real-valued input, label: int

It calls the forward pass 1 + --later_calls times, then the training step
as often, and for each call records:

- `tensors_*`: TensorFlow's CPU allocator statistics
  (tf.config.experimental.get_memory_info), which only exist when the
  process starts with TF_CPU_ALLOCATOR_USE_BFC=true: the bytes of every
  tensor TensorFlow allocates (weights, activations kept for the gradient,
  gradients, temporaries), current before the call and peak during it;
- `rss_*`: the process's resident memory (/proc/self/status VmRSS) before
  the call and its high-water mark (VmHWM, reset through
  /proc/self/clear_refs just before the call) during it. This counts
  everything, also memory outside the allocator (oneDNN and Eigen
  scratch, lazily loaded code and kernel state on a first call), and
  misses memory that an earlier call freed but the process kept.

Prints one JSON object as the last line of stdout.
"""

import json
import os
import pathlib
import re
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads

import numpy as np
import tensorflow as tf
from absl import app, flags

from benchmarks import float_graph

_MODEL = flags.DEFINE_string("model", None, ".tflite file.", required=True)
_SAMPLE = flags.DEFINE_string(
    "sample",
    None,
    ".npz with `x` (the real-valued input, shaped like the model's input 0) and `label`.",
    required=True,
)
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 0.05, "SGD step size.")
_LATER_CALLS = flags.DEFINE_integer(
    "later_calls",
    5,
    "Calls of the forward pass and of the step measured "
    "after the first one of each (TensorFlow's peak varies from call to "
    "call with the order its threads run operators in).",
    lower_bound=1,
)

_CPU = "CPU:0"


def _status_bytes(field):
    text = pathlib.Path("/proc/self/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else None


def _reset_peak_rss():
    """Sets VmHWM to the current VmRSS (Linux 4.0 and later)."""
    try:
        pathlib.Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _allocator():
    """(current, peak) bytes of TensorFlow's CPU allocator, or (None,
    None) when it keeps no statistics (the default CPU allocator)."""
    info = tf.config.experimental.get_memory_info(_CPU)
    if not info["current"] and not info["peak"]:
        return None, None
    return int(info["current"]), int(info["peak"])


def measure(function):
    """Runs function() once; returns (its result, memory before and at the
    peak during the call)."""
    peak_reset = _reset_peak_rss()
    tf.config.experimental.reset_memory_stats(_CPU)
    tensors_before, _ = _allocator()
    rss_before = _status_bytes("VmRSS")
    result = function()
    tensors_after, tensors_peak = _allocator()
    memory = {
        "tensors_before": tensors_before,
        "tensors_peak": tensors_peak,
        "tensors_after": tensors_after,
        "rss_before": rss_before,
        "rss_peak": _status_bytes("VmHWM") if peak_reset else None,
        "rss_after": _status_bytes("VmRSS"),
    }
    return result, memory


def _train_step_function(model, learning_rate):
    variables = model.variables

    @tf.function
    def train_step(x, label):
        with tf.GradientTape() as tape:
            loss = model.loss(x, label)
        gradients = tape.gradient(loss, variables)
        for variable, gradient in zip(variables, gradients):
            variable.assign_sub(learning_rate * gradient)
        return loss

    return train_step


def run(model_path, sample_path, learning_rate, later_calls):
    with np.load(sample_path) as sample:
        x = tf.constant(sample["x"].astype(np.float32))
        label = tf.constant(int(sample["label"]), dtype=tf.int32)
    model = float_graph.FloatModel(pathlib.Path(model_path).read_bytes())
    forward = tf.function(model.logits)
    train_step = _train_step_function(model, learning_rate)
    tensors_built, _ = _allocator()
    result = {
        "tensorflow": tf.__version__,
        "allocator_stats": tensors_built is not None,
        "onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
        "float_parameter_bytes": model.parameter_bytes(),
        "float_activation_bytes": model.activation_bytes(),
        "num_variables": len(model.variables),
        "after_build": {
            "tensors": tensors_built,
            "rss": _status_bytes("VmRSS"),
            "rss_peak": _status_bytes("VmHWM"),
        },
    }
    logits, result["forward_first"] = measure(lambda: forward(x).numpy())
    result["forward_later"] = [measure(lambda: forward(x).numpy())[1] for _ in range(later_calls)]
    loss, result["train_first"] = measure(lambda: train_step(x, label).numpy())
    result["train_later"] = [
        measure(lambda: train_step(x, label).numpy())[1] for _ in range(later_calls)
    ]
    result["logits"] = logits.reshape(-1).tolist()
    result["first_loss"] = float(loss)
    return result


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        result = run(_MODEL.value, _SAMPLE.value, _LEARNING_RATE.value, _LATER_CALLS.value)
    except float_graph.UnsupportedModel as error:
        result = {"error": f"unsupported: {error}"}
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
