"""`Interpreter`: runs an int8 .tflite model in the C runtime, shaped like
`tflite_micro.runtime.Interpreter`."""

from __future__ import annotations

import ctypes
import numbers
import os
import pathlib

import numpy as np
import numpy.typing as npt

from tflm_training import _checks, _native
from tflm_training.errors import (
    ArenaTooSmallError,
    BadStateError,
    InputMismatchError,
    InvalidArgumentError,
    error_for_status,
)

# tt_tensor_type -> numpy dtype (types the runtime can hold).
_DTYPES = {
    0: np.float32,
    1: np.float16,
    2: np.int32,
    3: np.uint8,
    4: np.int64,
    6: np.bool_,
    7: np.int16,
    9: np.int8,
}
_TYPE_CODES = {np.dtype(v): k for k, v in _DTYPES.items()}

_DATA_NONE, _DATA_MODEL, _DATA_ARENA = 0, 1, 2
_ALIGNMENT = 16
# Used to measure a model's arena need when the caller gives no size; pages
# that planning never touches are not committed by the OS.
_PROBE_ARENA_BYTES = 256 << 20


def measure_arena(init, arena_used, what):
    """Runs init(probe size) and returns the bytes it really used."""
    try:
        init(_PROBE_ARENA_BYTES)
    except ArenaTooSmallError as error:
        raise ArenaTooSmallError(
            f"{error} ({what} needs more than {_PROBE_ARENA_BYTES} bytes; "
            "pass arena_size explicitly)"
        ) from None
    return arena_used()


def builtin_name(code: int) -> str:
    """The runtime's name of builtin operator `code` (e.g. 18: "MUL"), from
    its schema table (tt_builtin_names.c), the names its kernels carry."""
    code = _checks.c_int(code, "the builtin operator code", 0, _checks.INT32_MAX)
    return _native.library().tt_builtin_name(code).decode()


def dsp_paths_enabled() -> bool:
    """Whether the loaded runtime library runs the Cortex-M4 DSP kernel
    paths: never in the normal host build; in the one `python
    tools/build.py --host --emulate_dsp` makes (TFLM_TRAINING_LIBRARY)."""
    return bool(_native.library().tt_dsp_paths_enabled())


def raise_for_status(status, error_record):
    """The exception for a failed runtime call, with the runtime's message."""
    if status != 0:
        message = error_record().contents.message
        raise error_for_status(status, message.decode("utf-8", "replace"))


def _aligned_bytes(data, size):
    """A zeroed uint8 array of `size` bytes holding `data`, 16-byte aligned."""
    raw = np.zeros(size + _ALIGNMENT, dtype=np.uint8)
    start = (-raw.ctypes.data) % _ALIGNMENT
    view = raw[start : start + size]
    if data is not None:
        view[: len(data)] = np.frombuffer(data, dtype=np.uint8)
    return view


class Interpreter:
    """Loads a model into a static arena and runs it.

    `arena_size=None` sizes the arena to exactly what the model needs.
    `preserve_all_tensors=True` keeps every intermediate tensor for
    `get_tensor()` after `invoke()` (TFLM's kPreserveAllTensors).
    """

    def __init__(self, model_data, arena_size=None, preserve_all_tensors=False):
        if not isinstance(model_data, (bytes, bytearray, memoryview)):
            raise InvalidArgumentError(f"model_data must be bytes, got {type(model_data).__name__}")
        self._lib = _native.library()
        model_data = bytes(model_data)
        self._model = _aligned_bytes(model_data, len(model_data))
        self._model_bytes = model_data
        self._preserve = bool(preserve_all_tensors)
        self._activations_valid = True
        self._persistent_tensors = frozenset()
        arena_size = _checks.arena_size(arena_size)
        if arena_size is None:
            arena_size = self._measure_arena()
        self._init(arena_size)

    @classmethod
    def from_file(
        cls,
        model_path: str | os.PathLike,
        arena_size: int | None = None,
        preserve_all_tensors: bool = False,
    ) -> Interpreter:
        path = pathlib.Path(model_path)
        if not path.is_file():
            raise InvalidArgumentError(f"model file {path} does not exist")
        return cls(path.read_bytes(), arena_size, preserve_all_tensors)

    @classmethod
    def from_bytes(
        cls,
        model_data: bytes | bytearray | memoryview,
        arena_size: int | None = None,
        preserve_all_tensors: bool = False,
    ) -> Interpreter:
        return cls(model_data, arena_size, preserve_all_tensors)

    @classmethod
    def _attach(cls, state, model, model_bytes, persistent_tensors, owner, lib):
        """A view of an interpreter the runtime set up inside another object
        (the trainer): `state` is the address of its tt_interpreter, made by
        the loaded library `lib`; `persistent_tensors` keep their arena bytes
        across training steps."""
        self = cls.__new__(cls)
        self._lib = lib
        self._state = state
        self._model = model
        self._model_bytes = model_bytes
        self._preserve = False
        self._activations_valid = True
        self._persistent_tensors = frozenset(persistent_tensors)
        self._owner = owner  # keeps the arena alive
        return self

    # -- setup ---------------------------------------------------------------

    def _init(self, arena_size):
        self._arena = _aligned_bytes(None, arena_size)
        self._state = ctypes.create_string_buffer(self._lib.tt_sizeof_interpreter())
        options = _native.InterpreterOptions(preserve_all_tensors=self._preserve)
        status = self._lib.tt_interpreter_init(
            self._state,
            self._model.ctypes.data,
            len(self._model),
            self._arena.ctypes.data,
            arena_size,
            ctypes.byref(options),
        )
        self._check(status)

    def _measure_arena(self):
        return measure_arena(self._init, self.arena_used_bytes, "the model")

    def _check(self, status):
        raise_for_status(status, lambda: self._lib.tt_interpreter_error(self._state))

    # -- running -------------------------------------------------------------

    def set_input(self, input_data: npt.ArrayLike, index: int) -> None:
        index = _checks.c_int(index, "the input index", 0, _checks.INT32_MAX)
        details = self.get_input_details(index)
        array = np.asarray(input_data)
        shape = tuple(int(d) for d in details["shape"])
        if array.dtype != details["dtype"] or tuple(array.shape) != shape:
            raise InputMismatchError(
                f"input {index} must have shape {shape} and dtype "
                f"{np.dtype(details['dtype']).name}, got shape {tuple(array.shape)} and "
                f"dtype {array.dtype.name}; for int8 inputs quantize with the scale and "
                f"zero point in get_input_details({index})"
            )
        array = np.ascontiguousarray(array)
        self._check(
            self._lib.tt_interpreter_set_input(
                self._state, index, array.ctypes.data, array.nbytes, _TYPE_CODES[array.dtype]
            )
        )

    def invoke(self) -> None:
        self._check(self._lib.tt_interpreter_invoke(self._state))
        self._activations_valid = True

    def get_output(self, index: int) -> np.ndarray:
        return self.get_tensor(self._graph_tensor(index, output=True))

    def get_tensor(self, tensor_index: int) -> np.ndarray:
        """A copy of any tensor: constants, inputs, outputs, intermediates."""
        record = self._record(tensor_index)
        if record.location == _DATA_NONE:
            raise InvalidArgumentError(
                f"tensor {tensor_index} is not used by any operator and holds no data"
            )
        if (
            record.location == _DATA_ARENA
            and not self._activations_valid
            and tensor_index not in self._persistent_tensors
        ):
            raise BadStateError(
                f"tensor {tensor_index}'s memory was reused by a training step; run "
                "invoke() (or the trainer's predict()) first"
            )
        if record.location == _DATA_ARENA and not self._preserve and not record.intact_after_invoke:
            raise InvalidArgumentError(
                f"tensor {tensor_index}'s memory is reused by later operators; create "
                "the Interpreter with preserve_all_tensors=True to inspect it"
            )
        address = self._lib.tt_interpreter_tensor_data(self._state, int(tensor_index))
        dtype = np.dtype(_DTYPES[record.type])
        raw = ctypes.string_at(address, record.num_bytes)
        return np.frombuffer(raw, dtype=dtype).reshape(self._shape(record)).copy()

    # -- introspection -------------------------------------------------------

    def get_input_details(self, index: int) -> dict:
        return self._details(self._graph_tensor(index, output=False))

    def get_output_details(self, index: int) -> dict:
        return self._details(self._graph_tensor(index, output=True))

    def arena_used_bytes(self) -> int:
        return int(self._lib.tt_interpreter_arena_used(self._state))

    @property
    def num_tensors(self) -> int:
        return int(self._lib.tt_interpreter_num_tensors(self._state))

    @property
    def num_inputs(self) -> int:
        return int(self._lib.tt_interpreter_num_inputs(self._state))

    @property
    def num_outputs(self) -> int:
        return int(self._lib.tt_interpreter_num_outputs(self._state))

    def _graph_tensor(self, index, output):
        kind = "output" if output else "input"
        index = _checks.c_int(index, f"the {kind} index", 0, _checks.INT32_MAX)
        lookup = (
            self._lib.tt_interpreter_output_tensor
            if output
            else self._lib.tt_interpreter_input_tensor
        )
        tensor = lookup(self._state, index)
        if tensor < 0:
            raise InvalidArgumentError(f"the model has no {kind} {index}")
        return tensor

    def _record(self, tensor_index):
        count = self.num_tensors
        if (
            isinstance(tensor_index, numbers.Integral)
            and not isinstance(tensor_index, bool)
            and not 0 <= tensor_index < count
        ):
            raise InvalidArgumentError(
                f"tensor {tensor_index} does not exist; the model has {count} tensors "
                f"(0 to {count - 1})"
            )
        tensor_index = _checks.c_int(tensor_index, "the tensor index", 0, count - 1)
        pointer = self._lib.tt_interpreter_tensor(self._state, tensor_index)
        if not pointer:
            raise InvalidArgumentError(f"tensor {tensor_index} does not exist")
        return pointer.contents

    @staticmethod
    def _shape(record):
        return tuple(record.dims[: record.rank])

    def _details(self, tensor_index):
        record = self._record(tensor_index)
        model = self._model_bytes
        name = model[record.name_pos : record.name_pos + record.name_length].decode(
            "utf-8", "replace"
        )
        scales = np.frombuffer(
            model, dtype="<f4", count=record.num_scales, offset=record.scales_pos
        ).astype(np.float32)
        zero_points = np.frombuffer(
            model, dtype="<i8", count=record.num_zero_points, offset=record.zero_points_pos
        ).astype(np.int32)
        if record.type not in _DTYPES:
            raise InvalidArgumentError(f"tensor {tensor_index} has an unsupported type")
        return {
            "name": name,
            "index": tensor_index,
            "shape": np.array(self._shape(record), dtype=np.int32),
            "dtype": _DTYPES[record.type],
            "quantization_parameters": {
                "scales": scales,
                "zero_points": zero_points,
                "quantized_dimension": int(record.quantized_dimension),
            },
        }
