"""tflm_training: run and train int8 TFLite models in a C runtime that is
bit-exact with TensorFlow Lite Micro, on the host and on microcontrollers.

Only numpy is needed: this package never imports TensorFlow.
"""

from tflm_training.errors import (
    ArenaTooSmallError,
    BadPlanError,
    BadStateError,
    CorruptModelError,
    DivergedError,
    InputMismatchError,
    InvalidArgumentError,
    LibraryNotBuiltError,
    SaturationError,
    TflmTrainingError,
    UnsupportedModelError,
)
from tflm_training.interpreter import Interpreter
from tflm_training.plan import LayerPlan, TrainingPlan
from tflm_training.trainer import Trainer

__all__ = [
    "Interpreter",
    "TflmTrainingError",
    "InvalidArgumentError",
    "CorruptModelError",
    "UnsupportedModelError",
    "ArenaTooSmallError",
    "InputMismatchError",
    "BadStateError",
    "LibraryNotBuiltError",
    "BadPlanError",
    "DivergedError",
    "SaturationError",
    "Trainer",
    "TrainingPlan",
    "LayerPlan",
]
