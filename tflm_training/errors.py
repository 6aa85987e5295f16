"""Exceptions raised by tflm_training; each carries the runtime's message."""


class TflmTrainingError(Exception):
    """Base class: `status` is the C runtime's status code (tt_status)."""

    status = None

    def __init__(self, message, status=None):
        super().__init__(message)
        if status is not None:
            self.status = status


class InvalidArgumentError(TflmTrainingError, ValueError):
    status = 1


class CorruptModelError(TflmTrainingError, ValueError):
    status = 2


class UnsupportedModelError(TflmTrainingError, ValueError):
    status = 3


class ArenaTooSmallError(TflmTrainingError, MemoryError):
    status = 4


class InputMismatchError(TflmTrainingError, ValueError):
    status = 5


class BadStateError(TflmTrainingError, RuntimeError):
    status = 6


class BadPlanError(TflmTrainingError, ValueError):
    status = 7


class DivergedError(TflmTrainingError, ArithmeticError):
    status = 8


class SaturationError(TflmTrainingError, ArithmeticError):
    """Training pinned too many trained parameters at their integer limits
    (tflm_training.saturation)."""


class LibraryNotBuiltError(TflmTrainingError, ImportError):
    """The host shared library has not been built yet."""


_BY_STATUS = {
    cls.status: cls
    for cls in (
        InvalidArgumentError,
        CorruptModelError,
        UnsupportedModelError,
        ArenaTooSmallError,
        InputMismatchError,
        BadStateError,
        BadPlanError,
        DivergedError,
    )
}


def error_for_status(status, message):
    """The exception for a non-zero tt_status, with the runtime's message."""
    cls = _BY_STATUS.get(status, TflmTrainingError)
    return cls(message, status)
