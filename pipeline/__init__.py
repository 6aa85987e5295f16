"""The Keras stage: model zoo, pretraining, quantization-aware training,
classifier heads and full-integer conversion to the int8 .tflite files the
tflm_training runtime runs.

Everything here is Keras 2 (`tf_keras`): tensorflow-model-optimization 0.8.1
cannot quantize Keras 3 models. Importing this package sets
TF_USE_LEGACY_KERAS=1 (unless already set) so that code importing
TensorFlow afterwards also gets Keras 2 from `tf.keras`.

Data flows one way: pipeline -> artifacts (.tflite, plan) -> runtime. This
package may import tflm_training; tflm_training never imports it.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
