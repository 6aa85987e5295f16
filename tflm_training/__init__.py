"""tflm_training: run and (later) train int8 TFLite models in a C runtime that
is bit-exact with TensorFlow Lite Micro, on the host and on microcontrollers.

Only numpy is needed: this package never imports TensorFlow.
"""

from tflm_training.errors import (ArenaTooSmallError, BadStateError,
                                  CorruptModelError, InputMismatchError,
                                  InvalidArgumentError, LibraryNotBuiltError,
                                  TflmTrainingError, UnsupportedModelError)
from tflm_training.interpreter import Interpreter

__all__ = [
    "Interpreter", "TflmTrainingError", "InvalidArgumentError", "CorruptModelError",
    "UnsupportedModelError", "ArenaTooSmallError", "InputMismatchError",
    "BadStateError", "LibraryNotBuiltError",
]
