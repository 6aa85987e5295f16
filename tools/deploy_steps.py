"""The steps of tools/deploy.py: adapt a pretrained int8 model to a new task
on a board (emulated in QEMU), and check the device against the host.

Each step is a small function that either returns what the next one needs
or raises DeployError with what went wrong and what to do next.
"""

import dataclasses
import itertools
import math
import pathlib
import shutil
import sys
import tokenize
import zipfile
import zlib

import numpy as np
from absl import flags

import tflm_training as tflm
from planning import cost_model, datasets, schemes
from tools import board_config, emulation, firmware_build, learner_firmware, output_folder

REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO / "examples" / "ds_cnn_fsdd.tflite"
DATASETS = {
    # name: (file with x_train/y_train, file with x_test/y_test)
    "fsdd": (REPO / "examples" / "fsdd_train.npz", REPO / "examples" / "fsdd.npz"),
}
# --scheme's choices, named as in planning.schemes.
SCHEMES = ("classifier", "bias", "sparse", "full", "sparse-search", "trady", "lowrank")
# Schemes whose plan is found for the budget on the user's training samples.
SEARCHED_SCHEMES = ("sparse-search", "trady", "lowrank")
# sparse-search's contribution runs, cached in --out across runs.
CONTRIBUTIONS_FILE = "contributions.json"
# Momentum with a small batch: the settings tests/test_firmware_training.py uses.
MOMENTUM = 0.9
BATCH_SIZE = 5
QEMU_PACKAGE = "qemu-system-arm"
TOOLCHAIN_PACKAGES = "gcc-arm-none-eabi libnewlib-arm-none-eabi"


class DeployError(RuntimeError):
    """What went wrong, and the next step."""


# -- command line ------------------------------------------------------------------


def parse_flags(argv):
    """absl's FLAGS(argv); a bad or unknown flag is a one-line DeployError."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        raise DeployError(f"{' '.join(str(e).split())} (--helpfull lists the flags)") from None


def exit_on_bad_flags(argv):
    """app.run's flags_parser: parse_flags; a bad flag exits with status 2."""
    try:
        return parse_flags(argv)
    except DeployError as e:
        sys.exit(fail(e))


def fail(error, log=print):
    """Prints `error: ...` on one line on stderr, with the notes of
    output_folder (where partial files are); the other lines of a
    multi-line message go to stdout through log first. Returns 2."""
    first, *rest = str(error).splitlines() or [type(error).__name__]
    for line in rest:
        log(line)
    message = first + (" (the details are above)" if rest else "")
    print(f"error: {output_folder.with_notes(message, error)}", file=sys.stderr, flush=True)
    return 2


def interrupted(error):
    """Says a run was stopped (Ctrl-C) with --out untouched; returns 130,
    the shell's status for SIGINT."""
    print(
        f"interrupted: {output_folder.with_notes('--out is as it was before this run', error)}",
        file=sys.stderr,
        flush=True,
    )
    return 130


def run_tool(job, argv, user_errors, log=print):
    """A tool's main: job() with no positional arguments; an error the user
    can cause or fix (user_errors) is one line and exit status 2, Ctrl-C
    exit status 130. Anything else is a bug and keeps its traceback."""
    try:
        if len(argv) > 1:
            raise DeployError(
                f"unexpected arguments {argv[1:]}; every option is a --flag (--helpfull lists them)"
            )
        return job()
    except user_errors as e:
        return fail(e, log)
    except KeyboardInterrupt as e:
        return interrupted(e)


def run_in_process(main, argv):
    """A tool's main with its flags parsed from argv (argv[0]: the program
    name), as its command line runs it; returns the exit status. The flags
    are reset afterwards, so each call starts from the defaults."""
    try:
        try:
            rest = parse_flags(argv)
        except DeployError as e:
            return fail(e)
        return main(rest)
    finally:
        flags.FLAGS.unparse_flags()


def check_positive(flag, value):
    """--flag is a finite number > 0 (None: not given)."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise DeployError(f"--{flag} must be a finite number > 0, not {value:g}")


def check_share(flag, value):
    """--flag is a share from 0 to 1."""
    if not (math.isfinite(value) and 0 <= value <= 1):
        raise DeployError(f"--{flag} must be a share from 0 to 1, not {value:g}")


def check_learning_rate(value):
    """Finite, > 0, and a normal float32 (the plan stores it as one)."""
    check_positive("learning_rate", value)
    low, high = float(np.finfo(np.float32).tiny), float(np.finfo(np.float32).max)
    if not low <= value <= high:
        raise DeployError(
            f"--learning_rate {value:g} does not fit a float32, which the plan "
            f"stores; give a value from {low:.3g} to {high:.3g} (e.g. 0.02)"
        )


def check_seed(value):
    if not 0 <= value < 2**32:
        raise DeployError(
            f"--seed must be from 0 to {2**32 - 1} (the plan stores it as a uint32), not {value}"
        )


# -- board and tools -------------------------------------------------------------


def load_board(name):
    try:
        return board_config.load_board(name)
    except board_config.BoardError as e:
        raise DeployError(
            f"{e}. Pick one of the known boards with --board "
            f"(each is a folder under boards/ with a board.json)."
        ) from None


def check_tools(board, emulate):
    """The ARM toolchain always; QEMU when emulating."""
    if shutil.which(firmware_build.GCC) is None or shutil.which(firmware_build.OBJCOPY) is None:
        raise DeployError(
            f"the ARM toolchain ({firmware_build.GCC}) is not installed. Install "
            f"it with: sudo apt-get install {TOOLCHAIN_PACKAGES} "
            "(or run: bash tools/install.sh)"
        )
    try:
        firmware_build.check_toolchain(board.cpu_flags)
    except firmware_build.BuildError as e:
        raise DeployError(str(e)) from None
    if emulate and shutil.which(emulation.QEMU) is None:
        raise DeployError(
            f"{emulation.QEMU} is not installed, so the firmware cannot be "
            f"emulated. Install it with: sudo apt-get install {QEMU_PACKAGE} "
            "(or pass --noemulate to only build the firmware)"
        )


def emulator_board(board):
    try:
        return emulation.resolve_board(board.name)
    except board_config.BoardError as e:
        raise DeployError(
            f"{e}; pass --noemulate to build the firmware for {board.name} without running it"
        ) from None


# -- data ------------------------------------------------------------------------


DATASET_KEYS = ("x_train", "y_train", "x_test", "y_test")
# What numpy and zipfile raise on a damaged .npz: a truncated or bit-flipped
# archive, a mangled array header (parsed as a Python literal), a shape too
# big to allocate, or an object array (pickles are never loaded).
_NPZ_ERRORS = (
    OSError,
    EOFError,
    ValueError,
    KeyError,
    SyntaxError,
    tokenize.TokenError,
    TypeError,
    MemoryError,
    OverflowError,
    zipfile.BadZipFile,
    zlib.error,
)


@dataclasses.dataclass
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray  # (N,) integer class indices >= 0
    x_test: np.ndarray
    y_test: np.ndarray


def load_dataset(name_or_path):
    """A built-in dataset name or an .npz with x_train, y_train, x_test,
    y_test, read and checked (see check_split); every problem is a
    one-line DeployError."""
    if name_or_path in DATASETS:
        train_file, test_file = DATASETS[name_or_path]
        name, arrays = (
            name_or_path,
            {**_read_npz(train_file, DATASET_KEYS[:2]), **_read_npz(test_file, DATASET_KEYS[2:])},
        )
    else:
        path = pathlib.Path(name_or_path)
        if not path.is_file():
            raise DeployError(
                f"dataset {name_or_path!r} is neither a built-in dataset "
                f"({', '.join(DATASETS)}) nor an .npz file"
            )
        name, arrays = path.stem, _read_npz(path, DATASET_KEYS)
    for split in ("train", "test"):
        arrays[f"y_{split}"] = check_split(name, split, arrays[f"x_{split}"], arrays[f"y_{split}"])
    return Dataset(name, **arrays)


def _read_npz(path, keys):
    """{key: array} from an .npz written by numpy.savez."""
    redo = (
        "; write it again with numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)"
    )
    try:
        with open(path, "rb") as f:
            start = f.read(6)
        # np.load takes any other start for a pickle, and says so.
        if start == b"\x93NUMPY":
            raise DeployError(f"{path} holds a single array (.npy), not named arrays{redo}")
        if start[:4] not in (b"PK\x03\x04", b"PK\x05\x06"):
            raise DeployError(
                f"{path} is not an .npz (it does not start like a zip archive: "
                f"damaged, or another format){redo}"
            )
        data = np.load(path, allow_pickle=False)
    except _NPZ_ERRORS as e:
        raise DeployError(f"cannot read {path} as an .npz ({_why(e)}){redo}") from None
    with data:
        missing = [k for k in keys if k not in data.files]
        if missing:
            raise DeployError(
                f"{path} lacks {', '.join(missing)}; it must hold "
                f"{', '.join(keys)} (it has {', '.join(data.files) or 'nothing'})"
            )
        return {key: _read_array(data, key, path, redo) for key in keys}


def _read_array(data, key, path, redo):
    try:
        return data[key]
    except _NPZ_ERRORS as e:
        if isinstance(e, ValueError) and "allow_pickle" in str(e):
            raise DeployError(
                f"{key} in {path} is an object array (Python objects, e.g. "
                "rows of different lengths); give a numeric array of shape "
                f"(N, ...){redo}"
            ) from None
        raise DeployError(
            f"cannot read {key} from {path}: the file is damaged ({_why(e)}){redo}"
        ) from None


def _why(error):
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:160]}" if text else type(error).__name__


def check_split(name, split, x, y):
    """Refuses samples that are not numbers (or not finite) and labels that
    are not one integer class index >= 0 per sample; returns y as (N,)."""
    x_key, y_key = f"x_{split}", f"y_{split}"
    where = f"dataset {name}: "
    if x.ndim == 0:
        raise DeployError(
            f"{where}{x_key} is a single value (a 0-d array); it must hold "
            "samples, shaped (N, *the model's input shape)"
        )
    if x.dtype.kind not in "uif":
        raise DeployError(
            f"{where}{x_key} has dtype {x.dtype}; samples must be numbers: "
            "uint8 (0-255), already in the model input's dtype, or floats"
        )
    if len(x) == 0:
        raise DeployError(f"{where}{x_key} is empty; give at least one sample")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        bad = np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(axis=1))
        raise DeployError(
            f"{where}{x_key} holds NaN or infinite values in {len(bad)} "
            f"samples (the first is sample {bad[0]}); drop or fix them"
        )
    return _check_labels(where, y_key, x_key, y, len(x))


def _check_labels(where, y_key, x_key, y, count):
    if y.ndim == 0:
        raise DeployError(
            f"{where}{y_key} is a single value (a 0-d array); give one "
            "integer class index per sample, shaped (N,)"
        )
    if y.ndim > 2 or (y.ndim == 2 and y.shape[1] != 1):
        raise DeployError(
            f"{where}{y_key} has shape {y.shape}; labels must be (N,) or "
            "(N, 1), one class index per sample (for one-hot labels give "
            f"{y_key}.argmax(axis=1))"
        )
    if y.dtype.kind not in "ui":
        hint = (
            f" ({y_key}.astype(np.int64) if they are whole numbers)" if y.dtype.kind == "f" else ""
        )
        raise DeployError(
            f"{where}{y_key} has dtype {y.dtype}; labels must be integer class indices{hint}"
        )
    y = y.reshape(-1)
    if len(y) != count:
        raise DeployError(
            f"{where}{x_key} has {count} samples but {y_key} has {len(y)} "
            "labels; give one label per sample"
        )
    if y.min() < 0:
        raise DeployError(
            f"{where}{y_key} holds the negative label {int(y.min())}; labels "
            "are class indices 0, 1, ..."
        )
    return y


@dataclasses.dataclass
class ModelInput:
    shape: tuple  # without the batch axis
    dtype: np.dtype
    scale: float
    zero_point: int
    num_classes: int


def model_input(model_bytes):
    try:
        interpreter = tflm.Interpreter.from_bytes(model_bytes)
        details = interpreter.get_input_details(0)
        output = interpreter.get_output_details(0)
    except tflm.TflmTrainingError as e:
        raise DeployError(f"the runtime cannot run the model: {e}") from None
    dtype = np.dtype(details["dtype"])
    if dtype.kind not in "uif":
        raise DeployError(
            f"the model's input is {dtype.name}; deploy feeds integer (quantized) or float32 inputs"
        )
    quantization = details["quantization_parameters"]
    scales, zero_points = quantization["scales"], quantization["zero_points"]
    return ModelInput(
        tuple(int(d) for d in details["shape"][1:]),
        dtype,
        float(scales[0]) if len(scales) else 1.0,
        int(zero_points[0]) if len(zero_points) else 0,
        int(np.prod(output["shape"])),
    )


def check_learner_input(info):
    """Refuses a model whose samples the learner protocol cannot carry."""
    from tflm_training import learner as wire

    if info.dtype not in wire.TYPE_CODES:
        raise DeployError(
            f"the model's input is {info.dtype.name}, which the learner protocol cannot carry "
            f"to the device (it sends {', '.join(d.name for d in wire.TYPE_CODES)}); give a "
            "model with an int8 or float32 input"
        )


def _check_shape(x, shape, key, dataset):
    if x.shape[1:] != shape:
        dims = ", ".join(map(str, shape))
        raise DeployError(
            f"dataset {dataset}: {key} has shape {x.shape}, but the model takes samples of "
            f"shape {shape}, so {key} must be (N, {dims}); " + _shape_hint(x.shape[1:], shape, key)
        )


def _shape_hint(got, shape, key):
    """How to turn samples of shape `got` into `shape`, when it is plain."""
    if len(got) == len(shape) <= 6 and sorted(got) == sorted(shape):
        order = next(
            p
            for p in itertools.permutations(range(len(shape)))
            if tuple(got[i] for i in p) == shape
        )
        axes = ", ".join(str(i + 1) for i in order)
        return f"it looks transposed: np.transpose({key}, (0, {axes}))"
    if got + (1,) == shape:
        return f"add the channel axis: {key}[..., None]"
    if got == shape + (1,):
        return f"drop the last axis: {key}[..., 0]"
    if [d for d in got if d != 1] == [d for d in shape if d != 1]:
        return f"it differs only in size-1 axes: {key}.reshape((-1, {', '.join(map(str, shape))}))"
    if len(got) == len(shape) == 3 and got[2] == shape[2]:
        return (
            f"both are images ({shape[2]} channels): pass --resize nearest or --resize "
            "bilinear to resize them to the model's height and width"
        )
    return "give data made for this model"


def _as_input(x, info, key, dataset):
    """Samples as the model's input: uint8 data is x / 255, float data the
    real values themselves; for an integer (quantized) input both are then
    quantized with its scale and zero point. Data already in the input's
    dtype is used as is."""
    _check_shape(x, info.shape, key, dataset)
    if x.dtype == info.dtype:
        return np.ascontiguousarray(x)
    real = _real_values(x, info, key, dataset)
    if info.dtype.kind == "f":
        return real.astype(info.dtype)
    q = np.round(real / np.float32(info.scale)) + info.zero_point
    limits = np.iinfo(info.dtype)
    return np.clip(q, limits.min, limits.max).astype(info.dtype)


def _real_values(x, info, key, dataset):
    """float32 samples: uint8 data as x / 255, floats as they are."""
    if x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255.0)
    if x.dtype.kind != "f":
        raise DeployError(
            f"dataset {dataset}: {key} has dtype {x.dtype}; the model takes "
            f"{info.dtype.name}: give uint8 (0-255, fed as x / 255), real "
            f"values as floats, or {info.dtype.name} samples as they are"
        )
    with np.errstate(over="ignore"):
        real = x.astype(np.float32)
    if not np.isfinite(real).all():
        raise DeployError(
            f"dataset {dataset}: {key} holds values beyond float32's "
            "range; scale the samples (e.g. to 0-1)"
        )
    return np.ascontiguousarray(real)


def _labels(y, info, key, dataset):
    if y.max() >= info.num_classes:
        raise DeployError(
            f"dataset {dataset}: {key} holds labels {int(y.min())} to "
            f"{int(y.max())}, but the model has {info.num_classes} classes "
            f"(0 to {info.num_classes - 1}); give a model with a head for "
            f"this dataset's classes, or leave out --head keep to replace its "
            f"classifier with a fresh {int(y.max()) + 1}-class one"
        )
    return y.astype(np.int64)


RESIZE_METHODS = ("nearest", "bilinear")
# Samples whose features calibrate a new head (class-balanced, from x_train).
CALIBRATION_SAMPLES = 256


def resize_dataset(dataset, info, method):
    """The dataset's images resized to the model's height and width with
    `method` (None: unchanged). Half-pixel centres, as tf.image.resize
    without antialiasing: nearest takes the pixel whose centre is nearest,
    bilinear interpolates the 4 around (edges clamped). Integer samples
    are rounded back to their dtype."""
    if method is None:
        return dataset
    if method not in RESIZE_METHODS:
        raise DeployError(
            f"--resize {method!r} is not a method; pick one of {', '.join(RESIZE_METHODS)}"
        )
    if len(info.shape) != 3:
        raise DeployError(
            f"--resize resizes images, but the model's input has shape "
            f"{info.shape}, not (height, width, channels); give samples of "
            f"shape (N, {', '.join(map(str, info.shape))}) and leave out --resize"
        )
    arrays = {}
    for key in ("x_train", "x_test"):
        x = getattr(dataset, key)
        if x.ndim != 4 or x.shape[3] != info.shape[2]:
            raise DeployError(
                f"--resize resizes images: dataset {dataset.name}: {key} has shape {x.shape}, "
                f"not (N, height, width, {info.shape[2]}) images like the model's input "
                f"{info.shape}"
            )
        arrays[key] = _resize(x, info.shape[:2], method)
    return dataclasses.replace(dataset, **arrays)


def _resize(x, size, method):
    """(N, h, w, C) -> (N, *size, C) (see resize_dataset)."""
    if x.shape[1:3] == tuple(size):
        return x
    real = x.astype(np.float32)
    for axis, (old, new) in enumerate(zip(x.shape[1:3], size), start=1):
        centres = (np.arange(new, dtype=np.float64) + 0.5) * old / new
        if method == "nearest":
            real = np.take(real, np.minimum(np.floor(centres), old - 1).astype(np.int64), axis=axis)
            continue
        position = np.clip(centres - 0.5, 0, old - 1)
        low = np.floor(position).astype(np.int64)
        high = np.minimum(low + 1, old - 1)
        weight = (
            (position - low).astype(np.float32).reshape([-1 if a == axis else 1 for a in range(4)])
        )
        real = (
            np.take(real, low, axis=axis) * (1 - weight) + np.take(real, high, axis=axis) * weight
        )
    if x.dtype.kind == "f":
        return real.astype(x.dtype)
    limits = np.iinfo(x.dtype)
    return np.clip(np.round(real), limits.min, limits.max).astype(x.dtype)


def dataset_classes(dataset):
    """The class count the dataset's labels need (the largest + 1)."""
    return int(max(dataset.y_train.max(), dataset.y_test.max())) + 1


def wants_new_head(head, model_kind, dataset, info):
    """Whether deploy replaces the classifier (--head): always with "new";
    with "auto", for a .tflite whose outputs are not the dataset's
    classes (a converted checkpoint already has a head for them; labels of
    one class train the head as it is)."""
    if head == "new":
        return True
    classes = dataset_classes(dataset)
    return (
        head == "auto" and model_kind == "tflite" and classes >= 2 and classes != info.num_classes
    )


def new_head(model_bytes, dataset, info, seed, log=print):
    """(the model with a fresh classifier for the dataset's classes, its
    tflm_training.new_head.NewHead), ranges calibrated on a class-balanced
    subset of x_train (tflm_training.new_head)."""
    from tflm_training import new_head as heads

    classes = dataset_classes(dataset)
    if classes < 2:
        raise DeployError(
            f"dataset {dataset.name}: a new head needs at least 2 classes, but every label is 0"
        )
    chosen = datasets.balanced_subset(
        dataset.y_train, CALIBRATION_SAMPLES, np.random.default_rng(seed)
    )
    x = _as_input(dataset.x_train[chosen], info, "x_train", dataset.name)
    try:
        model, head = heads.replace_head(
            model_bytes, x, dataset.y_train[chosen], classes, seed=seed
        )
    except heads.NoClassifierError as e:
        raise DeployError(
            f"cannot replace this model's head for the dataset's {classes} "
            f"classes: {e}; give a model whose outputs are the dataset's classes "
            "(or --head keep to train the head it has)"
        ) from None
    log(head.describe())
    return model, head


@dataclasses.dataclass
class Samples:
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    heldout_x: np.ndarray = None  # training-set samples kept out of training
    heldout_y: np.ndarray = None


def prepare_samples(dataset, info, train_samples, test_samples, seed=0, heldout_samples=0):
    """Checked, quantized, class-balanced and shuffled train and test subsets
    (and heldout_samples more from the training set, not in the train subset)."""
    train_x = _as_input(dataset.x_train, info, "x_train", dataset.name)
    test_x = _as_input(dataset.x_test, info, "x_test", dataset.name)
    train_y = _labels(dataset.y_train, info, "y_train", dataset.name)
    test_y = _labels(dataset.y_test, info, "y_test", dataset.name)
    rng = np.random.default_rng(seed)
    train = datasets.balanced_subset(train_y, train_samples, rng)
    test = datasets.balanced_subset(test_y, test_samples, rng)
    rest = np.setdiff1d(np.arange(len(train_y)), train)
    heldout = (
        rest[datasets.balanced_subset(train_y[rest], heldout_samples, rng)]
        if heldout_samples and len(rest)
        else rest[:0]
    )
    return Samples(
        train_x[train],
        train_y[train],
        test_x[test],
        test_y[test],
        train_x[heldout],
        train_y[heldout],
    )


# -- model -----------------------------------------------------------------------


def _checkpoint_prefix(path):
    """The checkpoint prefix `path` names (prefix, its .json, or a folder with one)."""
    path = pathlib.Path(path)
    if path.is_dir():
        found = sorted(path.glob("*.json"))
        found = [p for p in found if p.with_name(p.stem + ".weights.npz").is_file()]
        if len(found) != 1:
            names = ", ".join(str(p.with_suffix("")) for p in found) or "none"
            raise DeployError(
                f"{path} holds {len(found)} checkpoints ({names}); pass one "
                "checkpoint's prefix with --model"
            )
        return found[0].with_suffix("")
    for suffix in (".json", ".weights.npz"):
        if path.name.endswith(suffix):
            path = path.with_name(path.name[: -len(suffix)])
    if path.with_name(path.name + ".json").is_file():
        return path
    return None


def _pipeline():
    try:
        from pipeline import checkpoint, data, heads, qat
    except ImportError as e:
        raise DeployError(
            f"converting a Keras model needs the pipeline extra ({e}); install "
            "it with: pip install '.[pipeline]', or pass a .tflite"
        ) from None
    return checkpoint, data, heads, qat


def _downstream_float(float_model, dataset, what):
    """The dataset's training inputs as floats in [0, 1], checked against the model."""
    _, data, _, _ = _pipeline()
    x = data.to_float(dataset.x_train)
    if x.shape[1:] != tuple(float_model.input_shape[1:]):
        raise DeployError(
            f"dataset {dataset.name}: samples have shape {x.shape[1:]}, the "
            f"{what} takes {tuple(float_model.input_shape[1:])}"
        )
    return x


def _with_new_head(float_model, qat_model, x, dataset, name, out_dir, log):
    """The QAT backbone with a new head for the dataset's classes, calibrated
    so on-device training has room (pipeline.heads), as an int8 .tflite."""
    _, _, heads, qat = _pipeline()
    num_classes = int(np.max(dataset.y_train)) + 1
    y = np.asarray(dataset.y_train).astype(np.int64)
    qat_down, _ = heads.new_head_qat(float_model, qat_model, num_classes, x, y)
    tflite = qat.convert(qat_down, tuple(float_model.input_shape[1:]), x[:200])
    qat.check_converted(tflite)
    path = pathlib.Path(out_dir) / f"{name}_{dataset.name}.tflite"
    path.write_bytes(tflite)
    log(f"wrote {path} (a new {num_classes}-class head)")
    return tflite


def convert_checkpoint(prefix, dataset, out_dir, log=print):
    """A pipeline checkpoint -> int8 .tflite with a new head for the dataset's
    classes (pipeline.qat + pipeline.heads; needs TensorFlow)."""
    checkpoint, data, _, qat = _pipeline()
    log(
        f"converting checkpoint {prefix}: QAT (1 epoch) and a new head calibrated on "
        f"{dataset.name} (TensorFlow; a few minutes)"
    )
    float_model, info = checkpoint.load(str(prefix))
    x = _downstream_float(float_model, dataset, "checkpoint's model")
    name = info.get("dataset_file", "")
    folders = [REPO / "examples", pathlib.Path(data.SHARED_DATA_DIR)]
    found = [folder / name for folder in folders if name and (folder / name).is_file()]
    if not found:
        raise DeployError(
            f"QAT of checkpoint {prefix} needs its upstream data ({name}) in "
            f"{' or '.join(str(f) for f in folders)}; convert it with "
            "`python tools/qat.py` and pass the .tflite instead"
        )
    upstream = found[0]
    with np.load(upstream) as up:
        qat_up = qat.quantization_aware_training(
            float_model,
            data.to_float(up["x_train"]),
            up["y_train"].astype(np.int64),
            epochs=1,
            log=lambda *a: None,
        )
    return _with_new_head(float_model, qat_up, x, dataset, pathlib.Path(prefix).name, out_dir, log)


def convert_keras_model(path, dataset, out_dir, log=print):
    """A trained tf_keras model file -> int8 .tflite with a new head for the
    dataset's classes. Its upstream data is unknown here, so the backbone is
    not retrained: it is wrapped for QAT as trained (weights fake-quantized,
    activation ranges calibrated on the dataset's samples, input range
    [0, 1]) and only the new head's ranges are fitted."""
    _, _, _, qat = _pipeline()
    import tf_keras

    log(
        f"converting Keras model {path}: int8 backbone as trained and a new head "
        f"calibrated on {dataset.name} (TensorFlow)"
    )
    try:
        float_model = tf_keras.models.load_model(str(path), compile=False)
    except Exception as e:
        raise DeployError(
            f"cannot load {path} with tf_keras ({type(e).__name__}: {e}); "
            "save the model with tf_keras (Keras 2), as tfmot requires"
        ) from None
    x = _downstream_float(float_model, dataset, "Keras model")
    try:
        qat_model = qat.quantize(float_model)
    except (qat.Keras3ModelError, qat.FakeQuantizationError, TypeError) as e:
        raise DeployError(f"{path} cannot be quantized: {e}") from None
    qat.init_activation_ranges(qat_model, float_model, x[:512])
    qat.set_input_range(qat_model, 0.0, 1.0)
    return _with_new_head(float_model, qat_model, x, dataset, path.stem, out_dir, log)


def model_source(path):
    """(kind, path) of --model: ("tflite", file), ("checkpoint", prefix) or
    ("keras", file); refuses what is none of them or does not exist. Cheap:
    nothing is read or converted."""
    path = pathlib.Path(path)
    prefix = None if path.suffix == ".tflite" else _checkpoint_prefix(path)
    if prefix is not None:
        return "checkpoint", prefix
    kind = {".tflite": "tflite", ".keras": "keras", ".h5": "keras"}.get(path.suffix)
    if kind is None:
        raise DeployError(
            f"--model {path} is neither a .tflite file, a Keras model file "
            "(.keras, .h5) nor a pipeline checkpoint (a prefix with .json and "
            ".weights.npz, as in pipeline/checkpoints/)"
        )
    if not path.is_file():
        raise DeployError(
            f"--model {path} does not exist; give an int8 .tflite, a Keras "
            "model file or a pipeline checkpoint"
        )
    return kind, path


def load_model(path, dataset, out_dir, log=print):
    """(model bytes, description) from a .tflite, a pipeline checkpoint or a
    tf_keras model file (.keras / .h5)."""
    kind, path = model_source(path)
    if kind == "tflite":
        return path.read_bytes(), str(path)
    if kind == "checkpoint":
        return convert_checkpoint(path, dataset, out_dir, log), f"checkpoint {path}"
    return convert_keras_model(path, dataset, out_dir, log), f"Keras model {path}"


# -- plan and memory ---------------------------------------------------------------


def plan_settings(learning_rate, gradient_bits=32):
    """The TrainingPlan settings every scheme's plan gets."""
    return {
        "learning_rate": learning_rate,
        "momentum": MOMENTUM,
        "batch_size": BATCH_SIZE,
        "gradient_bits": gradient_bits,
    }


def make_plan(model_bytes, scheme, learning_rate, gradient_bits=32):
    """The TrainingPlan of a scheme that needs no budget or samples
    (planning.schemes)."""
    if scheme not in schemes.SCHEMES or schemes.SCHEMES[scheme].needs:
        raise DeployError(f"unknown scheme {scheme!r}; pick one of {', '.join(SCHEMES)}")
    try:
        return schemes.build(
            scheme, model_bytes, schemes.Inputs(plan_settings(learning_rate, gradient_bits))
        ).plan
    except ValueError as e:
        raise DeployError(f"cannot make a {scheme} plan for this model: {e}") from None


def learner_ram(model_bytes, info, heldout_samples, board):
    """RAM the learner firmware needs besides the arena (frame buffer,
    held-out samples, the link's receive ring on every board it may run
    on), for the largest plan this model can have."""
    from tflm_training import plan as plan_module

    layers = len(plan_module.trainable_operators(model_bytes))
    input_bytes = int(np.prod(info.shape)) * info.dtype.itemsize
    boards = [board]
    try:
        boards.append(emulation.resolve_board(board.name)[0])
    except board_config.BoardError:
        pass
    ring = max(int((b.data.get("link") or {}).get("rx_ring", 0)) for b in boards)
    return learner_firmware.ram_besides_arena(input_bytes, layers, heldout_samples) + ring


def budget_bytes(board, budget_kb, reserved=0):
    """--budget_kb in bytes; the board's room for an arena when not given.
    reserved: RAM the firmware needs besides the arena (learner_ram)."""
    room = cost_model.ram_room(board.name) - reserved
    return room if budget_kb is None else min(room, int(budget_kb * 1024))


def search_plan(
    model_bytes,
    scheme,
    samples,
    budget,
    learning_rate,
    seed,
    out_dir,
    log=print,
    metric="accuracy",
    trials=4,
    gradient_bits=32,
):
    """The plan of a searched scheme for `budget` bytes of training arena,
    found on the training samples only (the test samples stay unseen).

    sparse-search: contribution analysis (short host fine-tuning runs of
    bias depths and weight ratios over every layer before the classifier,
    cached in out_dir; gains by `metric`), the evolutionary search, and
    (trials > 0) real runs of its best plans of `trials` shapes and the
    best bias-only plan, the best measured kept; trady: layers ranked by
    relative gradient norm, channels drawn anew every epoch on the device;
    lowrank: Adam on low-rank projected gradients of the FC and pointwise
    layers nearest the logits. gradient_bits: of the plan's stored
    activation gradients (the contribution analysis trains with 32).
    """
    from planning import contribution, trady

    settings = plan_settings(learning_rate, gradient_bits)
    analysis = {k: v for k, v in settings.items() if k != "gradient_bits"}
    x, y = samples.train_x, samples.train_y
    check_scheme_budget(model_bytes, scheme, budget, learning_rate, gradient_bits)
    if scheme not in SEARCHED_SCHEMES:
        raise DeployError(f"unknown scheme {scheme!r}; pick one of {', '.join(SCHEMES)}")
    inputs = schemes.Inputs(settings, budget=budget, seed=seed, log=log)
    try:
        if scheme == "sparse-search":
            log(
                f"contribution analysis on {len(y)} training samples (cached in --out's "
                f"{CONTRIBUTIONS_FILE}) ..."
            )
            cache = str(pathlib.Path(out_dir) / CONTRIBUTIONS_FILE)
            table = contribution.analyze(
                model_bytes,
                x,
                y,
                epochs=1,
                seeds=(seed,),
                metric=metric,
                cache_path=cache,
                log=log,
                **analysis,
            )
            trial_runs = (contribution.prepare_data(x, y), trials, cache) if trials else None
            inputs = dataclasses.replace(inputs, contributions=table, trials=trial_runs)
        if scheme == "trady":
            if len(y) % BATCH_SIZE:
                # The runtime refuses to redraw inside a batch (tt_trainer.h).
                raise DeployError(
                    f"trady needs whole batches per epoch: give "
                    f"--train_samples as a multiple of {BATCH_SIZE} (the batch "
                    f"size), not {len(y)}"
                )
            ranking = trady.rank_layers(
                model_bytes, x, y, samples=min(len(y), 100), seed=seed, **settings
            )
            _log_lines(log, ranking.describe())
            inputs = dataclasses.replace(inputs, ranking=ranking)
        built = schemes.build(scheme, model_bytes, inputs)
    except schemes.BUDGET_ERRORS as e:
        raise DeployError(f"{scheme}: {e} (--budget_kb)") from None
    except (ValueError, tflm.TflmTrainingError) as e:
        raise DeployError(f"cannot make a {scheme} plan for this model: {e}") from None
    _log_lines(log, built.describe())
    return built.plan


def check_scheme_budget(model_bytes, scheme, budget, learning_rate, gradient_bits=32):
    """Before any analysis: refuses a budget below the smallest plan the
    searched scheme can make."""
    need, what = _scheme_minimum(model_bytes, scheme, learning_rate, gradient_bits)
    if need > budget:
        raise DeployError(
            f"{scheme}: the budget of {budget} bytes ({budget / 1024:.1f} KB) cannot hold its "
            f"smallest plan ({what}), which needs a {need}-byte training arena "
            f"({need / 1024:.1f} KB); give a budget of at least {math.ceil(need / 1024)} KB "
            "(--budget_kb)"
        )


def _scheme_minimum(model_bytes, scheme, learning_rate, gradient_bits=32):
    """(arena bytes, what) of the smallest plan a searched scheme makes.
    Every sparse-search and TraDy plan trains the classifier fully (TraDy
    adds sampled channels, so its real minimum is a little higher); lowrank
    trains the classifier and the nearest projectable layer at rank >= 1."""
    from planning import lowrank

    settings = plan_settings(learning_rate, gradient_bits)
    try:
        if scheme != "lowrank":
            plan = tflm.TrainingPlan.classifier_only(model_bytes, **settings)
            what = "the classifier alone" + (
                ", before any sampled channel" if scheme == "trady" else ""
            )
            return training_arena(model_bytes, plan), what
        candidates = lowrank.candidate_layers(model_bytes)
        if not candidates:
            raise DeployError(
                "lowrank: the model has no FULLY_CONNECTED or pointwise CONV_2D "
                "layer before the classifier to train low-rank; pick another "
                "--scheme"
            )
        plan = lowrank.make_plan(model_bytes, {candidates[0]: 1}, **settings)
    except ValueError as e:
        raise DeployError(f"cannot make a {scheme} plan for this model: {e}") from None
    return (
        training_arena(model_bytes, plan),
        f"the classifier and operator {candidates[0]} at rank 1",
    )


def _log_lines(log, lines):
    for line in lines:
        log(line)


def describe_plan(model_bytes, plan):
    from tflm_training import plan as plan_module

    names = {
        op: (name, channels)
        for op, name, channels, _ in plan_module.trainable_operators(model_bytes)
    }
    trained = []
    for layer in plan.layers:
        entry = {
            "operator": layer.operator_index,
            "name": names[layer.operator_index][0],
            "update": layer.update,
            "channels": len(layer.channels),
            "of_channels": names[layer.operator_index][1],
        }
        if layer.update == "sampled":
            entry["bytes_per_channel"] = layer.channel_cost
        if layer.update == "lowrank":
            entry["rank"] = layer.rank
        trained.append(entry)
    return trained


def describe_layer(entry):
    """One trained layer of describe_plan, for people."""
    what = {
        "sampled": f"channels drawn every epoch from {entry['channels']}/{entry['of_channels']}",
        "lowrank": f"low-rank Adam, rank {entry.get('rank')}, "
        f"{entry['channels']}/{entry['of_channels']} channels",
    }.get(
        entry["update"], f"{entry['update']}, {entry['channels']}/{entry['of_channels']} channels"
    )
    return f"op {entry['operator']} {entry['name']} ({what})"


def plan_summary(model_name, plan, trained, arena):
    """What will train, for people: the text written beside plan.bin."""
    lines = [
        f"training plan for {model_name}",
        f"SGD, learning rate {plan.learning_rate:g}, momentum {plan.momentum:g}, "
        f"batch {plan.batch_size}, QAS {'on' if plan.qas else 'off'}, "
        f"{plan.gradient_bits}-bit gradients",
        f"training arena: {arena} bytes",
    ]
    if plan.sample_budget:
        lines.append(
            f"sampled layers: channels drawn anew every epoch (seed {plan.seed}) "
            f"while their optimizer state fits {plan.sample_budget} bytes"
        )
    for layer, entry in zip(plan.layers, trained):
        lines.append(
            f"operator {entry['operator']} {entry['name']}: "
            f"{_UPDATE_WORDS[entry['update']]} of {entry['channels']}/"
            f"{entry['of_channels']} output channels {list(layer.channels)}" + _layer_detail(layer)
        )
    return "\n".join(lines) + "\n"


_UPDATE_WORDS = {
    "weights": "weights and bias",
    "bias": "bias",
    "sampled": "weights and bias, sampled among",
    "lowrank": "weights (low-rank Adam) and bias",
}


def _layer_detail(layer):
    if layer.update == "sampled":
        return f"; {layer.channel_cost} bytes per sampled channel"
    if layer.update == "lowrank":
        return f"; rank {layer.rank}, projector refreshed every {layer.refresh_steps} updates"
    return ""


def training_arena(model_bytes, plan):
    """Bytes of the trainer's arena (tflm_training.memory_model)."""
    from tflm_training import memory_model

    try:
        return memory_model.training_memory(model_bytes, plan).total
    except tflm.TflmTrainingError as e:
        raise DeployError(f"the runtime cannot train this model with this plan: {e}") from None


def smallest_arena(model_bytes):
    """The training arena of the cheapest plan: the classifier's biases only."""
    try:
        plan = tflm.TrainingPlan.classifier_only(model_bytes, update="bias")
    except ValueError as e:
        raise DeployError(f"cannot make any plan for this model: {e}") from None
    return training_arena(model_bytes, plan)


def check_model_trains_on(model_bytes, board, reserved=0):
    """Refuses a model whose cheapest plan cannot fit the board at all."""
    smallest = smallest_arena(model_bytes)
    room = cost_model.ram_room(board.name) - reserved
    if smallest > room:
        raise DeployError(
            f"this model cannot train on the {board.name}: even its cheapest plan (the "
            f"classifier's biases only) needs a {smallest}-byte training arena "
            f"({math.ceil(smallest / 1024)} KB), and the board's {board.ram.size // 1024} KB "
            f"RAM leaves {room} bytes for it (less the stack, other globals and {reserved} "
            "bytes for the learner's buffers). Use a smaller model or input (e.g. the "
            "pipeline's mcunet or ds_cnn checkpoints)"
        )


def check_budget(model_bytes, plan, scheme, board, budget_kb, reserved=0):
    """The plan's arena against --budget_kb and the board's RAM (less its
    stack, other globals and `reserved`)."""
    need = training_arena(model_bytes, plan)
    room = cost_model.ram_room(board.name) - reserved
    limits = [
        (
            room,
            f"the {board.name}'s {board.ram.size // 1024} KB RAM less its "
            f"{board.stack_size // 1024} KB stack, "
            f"{cost_model.RAM_RESERVE // 1024} KB for the firmware's other globals "
            f"and {reserved} bytes for the learner's frame buffer and held-out "
            "samples",
        )
    ]
    if budget_kb is not None:
        limits.append((int(budget_kb * 1024), f"--budget_kb {budget_kb:g}"))
    for limit, what in limits:
        if need > limit:
            smallest = smallest_arena(model_bytes)
            hint = (
                f"raise --budget_kb to at least {math.ceil(need / 1024)}"
                if "budget" in what
                else "pick a smaller --scheme"
            )
            raise DeployError(
                f"the {scheme} plan needs a {need}-byte training arena "
                f"({math.ceil(need / 1024)} KB) but {what} leaves {limit} bytes; {hint} "
                f"(the smallest plan, the classifier's biases only, needs {smallest} bytes "
                f"= {math.ceil(smallest / 1024)} KB)"
            )
    return need


# -- firmware ------------------------------------------------------------------------


def build_learner(
    board_name, model_bytes, plan, out_dir, heldout_samples, log=print, atomic_steps=False
):
    try:
        return learner_firmware.build_learner_firmware(
            board_name,
            model_bytes,
            plan,
            out_dir,
            heldout_samples=heldout_samples,
            atomic_steps=atomic_steps,
        )
    except firmware_build.OverLimitError as e:
        log(e.report)
        raise DeployError(
            f"{e} Pick a smaller --scheme or --budget_kb, or fewer "
            "--heldout_samples (the size report is above)."
        ) from None
    except (firmware_build.BuildError, board_config.BoardError) as e:
        raise DeployError(str(e)) from None


def memory_report(firmware, board):
    usage = firmware.usage
    return {
        "board": board.name,
        "flash_used": usage.flash_bytes,
        "flash_max": board.flash.size,
        "ram_static": usage.ram_bytes,
        "ram_stack": usage.stack_bytes,
        "ram_max": board.ram.size,
        "fits": (
            usage.flash_bytes <= board.flash.size
            and usage.ram_bytes + usage.stack_bytes <= board.ram.size
        ),
        "size_report": firmware.report,
    }
