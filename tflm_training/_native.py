"""Loads the host build of the C runtime and declares its functions."""

import ctypes
import os
import pathlib

from tflm_training import host_build
from tflm_training.errors import LibraryNotBuiltError

LIBRARY_ENV = "TFLM_TRAINING_LIBRARY"
DEFAULT_LIBRARY = host_build.library_path()
# The runtime built with 16-bit gradients (TT_GRADIENT_BITS=16), for plans
# that ask for them; its own environment variable overrides it.
GRADIENTS_16_LIBRARY_ENV = "TFLM_TRAINING_LIBRARY_GRADIENTS_16"
GRADIENTS_16_LIBRARY = host_build.library_path(gradient_bits=16)

MAX_RANK = 6
ERROR_MESSAGE_SIZE = 200


class TensorRecord(ctypes.Structure):
    """Mirror of tt_tensor (tt_records.h)."""

    _fields_ = [
        ("type", ctypes.c_int32),
        ("rank", ctypes.c_int32),
        ("dims", ctypes.c_int32 * MAX_RANK),
        ("num_elements", ctypes.c_int32),
        ("num_bytes", ctypes.c_int32),
        ("location", ctypes.c_int32),
        ("data_offset", ctypes.c_int32),
        ("scale", ctypes.c_float),
        ("zero_point", ctypes.c_int32),
        ("num_scales", ctypes.c_int32),
        ("scales_pos", ctypes.c_int32),
        ("num_zero_points", ctypes.c_int32),
        ("zero_points_pos", ctypes.c_int32),
        ("quantized_dimension", ctypes.c_int32),
        ("name_pos", ctypes.c_int32),
        ("name_length", ctypes.c_int32),
        ("first_op", ctypes.c_int32),
        ("last_op", ctypes.c_int32),
        ("intact_after_invoke", ctypes.c_int32),
    ]


class ErrorRecord(ctypes.Structure):
    """Mirror of tt_error (tt_status.h)."""

    _fields_ = [("code", ctypes.c_int), ("message", ctypes.c_char * ERROR_MESSAGE_SIZE)]


class InterpreterOptions(ctypes.Structure):
    """Mirror of tt_interpreter_options (tt_interpreter.h)."""

    _fields_ = [("preserve_all_tensors", ctypes.c_bool)]


class TrainingMemory(ctypes.Structure):
    """Mirror of tt_training_memory (tt_trainer.h)."""

    _fields_ = [
        (name, ctypes.c_uint32)
        for name in (
            "interpreter_tables",
            "trainer_tables",
            "weight_copies",
            "optimizer_state",
            "sampled_state",
            "planned_region",
            "total",
        )
    ]


# tt_link's callbacks (tt_learner.h), for tt_host_learner_serve_one.
READ_BYTE = ctypes.CFUNCTYPE(
    ctypes.c_bool, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint8), ctypes.c_uint32
)
WRITE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint8), ctypes.c_uint32)

_libraries = {}


def _declare(lib):
    u8p, u32, i32, vp = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int32, ctypes.c_void_p
    signatures = {
        "tt_interpreter_init": (ctypes.c_int, [vp, u8p, u32, u8p, u32, vp]),
        "tt_interpreter_invoke": (ctypes.c_int, [vp]),
        "tt_interpreter_set_input": (ctypes.c_int, [vp, i32, vp, u32, i32]),
        "tt_interpreter_input_tensor": (i32, [vp, i32]),
        "tt_interpreter_output_tensor": (i32, [vp, i32]),
        "tt_interpreter_tensor": (ctypes.POINTER(TensorRecord), [vp, i32]),
        "tt_interpreter_tensor_data": (vp, [vp, i32]),
        "tt_interpreter_arena_used": (u32, [vp]),
        "tt_interpreter_num_tensors": (i32, [vp]),
        "tt_interpreter_num_inputs": (i32, [vp]),
        "tt_interpreter_num_outputs": (i32, [vp]),
        "tt_interpreter_error": (ctypes.POINTER(ErrorRecord), [vp]),
        "tt_builtin_name": (ctypes.c_char_p, [i32]),
        "tt_sizeof_interpreter": (u32, []),
        "tt_sizeof_tensor": (u32, []),
        "tt_dsp_paths_enabled": (i32, []),
        "tt_gradient_bits": (i32, []),
        "tt_trainer_init": (ctypes.c_int, [vp, u8p, u32, u8p, u32, u8p, u32]),
        "tt_trainer_step": (ctypes.c_int, [vp, vp, u32, i32, ctypes.POINTER(ctypes.c_float)]),
        "tt_trainer_predict": (ctypes.c_int, [vp, vp, u32, ctypes.POINTER(i32)]),
        "tt_trainer_begin_epoch": (ctypes.c_int, [vp, u32]),
        "tt_trainer_layer_channels": (ctypes.POINTER(i32), [vp, i32, ctypes.POINTER(i32)]),
        "tt_trainer_selected_slots": (i32, [vp]),
        "tt_trainer_gradient_norms": (
            ctypes.c_int,
            [vp, vp, u32, i32, vp, vp, ctypes.POINTER(ctypes.c_float)],
        ),
        "tt_trainer_interpreter": (vp, [vp]),
        "tt_trainer_arena_used": (u32, [vp]),
        "tt_trainer_memory": (None, [vp, ctypes.POINTER(TrainingMemory)]),
        "tt_trainer_error": (ctypes.POINTER(ErrorRecord), [vp]),
        "tt_sizeof_trainer": (u32, []),
        "tt_trainer_state_bytes": (u32, [vp]),
        "tt_trainer_state_write": (ctypes.c_int, [vp, vp, u32]),
        "tt_trainer_state_load": (ctypes.c_int, [vp, vp, u32]),
        "tt_trainer_trained_tensor": (i32, [vp, i32]),
        "tt_trainer_undo_bytes": (u32, [vp]),
        "tt_trainer_set_undo": (ctypes.c_int, [vp, vp, u32]),
        "tt_sizeof_host_learner": (u32, []),
        "tt_host_learner_init": (
            ctypes.c_int,
            [
                vp,
                vp,
                u32,
                vp,
                u32,
                vp,
                u32,
                vp,
                u32,
                u32,
                ctypes.c_int64,
                i32,
                vp,
                u32,
                u32,
                vp,
                u32,
            ],
        ),
        "tt_host_learner_error": (ctypes.c_char_p, [vp]),
        "tt_host_learner_serve_one": (None, [vp, READ_BYTE, WRITE, u32, vp, u32]),
        "tt_host_learner_flash_events": (ctypes.c_int64, [vp]),
        "tt_host_learner_powered_off": (ctypes.c_bool, [vp]),
    }
    for name, (restype, argtypes) in signatures.items():
        function = getattr(lib, name)
        function.restype = restype
        function.argtypes = argtypes
    if lib.tt_sizeof_tensor() != ctypes.sizeof(TensorRecord):
        raise LibraryNotBuiltError(
            "the tflm_training host library does not match this Python package "
            "(tt_tensor layout differs); rebuild it with `python tools/build.py --host`"
        )


def library(gradient_bits=32):
    """The loaded shared library whose activation gradients have
    `gradient_bits` (32, or 16 for plans that ask for 16-bit gradients).
    Builds nothing: a library that is missing, or was built from other
    runtime sources than this package's, is refused with the command that
    rebuilds it. One named by its environment variable is loaded as it is."""
    if gradient_bits not in _libraries:
        if gradient_bits == 16:
            variable, default = GRADIENTS_16_LIBRARY_ENV, GRADIENTS_16_LIBRARY
        else:
            variable, default = LIBRARY_ENV, DEFAULT_LIBRARY
        how = host_build.REBUILD_HINT
        path = pathlib.Path(os.environ.get(variable, default))
        if not path.is_file():
            raise LibraryNotBuiltError(
                f"the tflm_training host library is not built ({path} is missing); "
                f"run `{how}` from the repository root (or `pip install -e .`)"
            )
        if variable not in os.environ:
            stale = host_build.staleness(
                path, host_build.compile_flags(gradient_bits=gradient_bits)
            )
            if stale:
                raise LibraryNotBuiltError(
                    f"the tflm_training host library is out of date: {stale}; rebuild it "
                    f"with `{how}` from the repository root (or `pip install -e .`)"
                )
        try:
            lib = ctypes.CDLL(str(path))
        except OSError as error:
            raise LibraryNotBuiltError(
                f"{path} cannot be loaded ({error}); rebuild it with `{how}`"
            ) from None
        _declare(lib)
        if lib.tt_gradient_bits() != gradient_bits:
            raise LibraryNotBuiltError(
                f"{path} stores gradients in {lib.tt_gradient_bits()} bits, not "
                f"{gradient_bits}; rebuild it with `{how}`"
            )
        _libraries[gradient_bits] = lib
    return _libraries[gradient_bits]


def check_built():
    """Loads the library of every gradient width: LibraryNotBuiltError, with
    the command that fixes it, when one is missing or out of date."""
    for bits in host_build.GRADIENT_BITS:
        library(bits)
