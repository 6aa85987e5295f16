"""The update-scheme benchmark's tasks, splits and cached artifacts (no
TensorFlow here: the Keras steps run in a child process,
benchmarks/update_schemes_keras.py).

A task is an upstream checkpoint (pipeline/checkpoints) and a downstream
dataset (an .npz in --data_dir), or one given on the command line
(user_task: a checkpoint or an int8 .tflite, and an .npz file anywhere). A
.tflite is trained as it is: no QAT, no new head, no float reference. Its
downstream train split is cut once,
class-balanced and seeded, into

- a CALIBRATION split (the new head's quantization ranges are fitted on
  it, pipeline.heads) that no method trains or tests on, and
- the training POOL, from which each seed draws its class-balanced
  training samples;

the test samples are a fixed class-balanced subset of the test split, the
same for every seed and method. Everything derived (the int8 model, the
samples) is cached under --cache_dir, keyed by what it depends on.
"""

import dataclasses
import hashlib
import json
import pathlib
import zipfile

import numpy as np

from planning import datasets

REPO = pathlib.Path(__file__).resolve().parents[1]
CHECKPOINTS = REPO / "pipeline" / "checkpoints"
DEFAULT_DATA_DIR = REPO.parent / "shared" / "data"
DEFAULT_CACHE_DIR = REPO / "build" / "benchmarks" / "update_schemes"
VISION_BACKBONES = ("mcunet_tinyimagenet32", "mobilenet_v2_tinyimagenet32")
SPLIT_SEED = 20261123  # calibration / pool / test cut, the same for all seeds
# Bumped when the conversion recipe changes (invalidates cached models).
CONVERT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Task:
    name: str  # short id: gtsrb32, flowers32, fsdd
    checkpoint: str  # pipeline/checkpoints/<checkpoint>
    upstream: str  # upstream dataset (the checkpoint's)
    downstream: str  # downstream dataset file stem in --data_dir
    calibration: int  # downstream train rows kept for the head's ranges
    qat_epochs: int  # upstream QAT epochs before the new head
    qat_samples: int  # upstream samples QAT trains on (None: all)
    model_file: str = None  # an int8 .tflite used as it is, instead of a checkpoint
    data_file: str = None  # the downstream .npz, instead of --data_dir/<downstream>.npz

    @property
    def title(self):
        source = pathlib.Path(self.model_file).name if self.model_file else self.upstream
        return f"{source} → {self.downstream}"


def make_tasks(vision_backbone):
    vision = vision_backbone
    return {
        "gtsrb32": Task("gtsrb32", vision, "tinyimagenet32", "gtsrb32", 430, 1, 5000),
        "flowers32": Task("flowers32", vision, "tinyimagenet32", "flowers32", 500, 1, 5000),
        "fsdd": Task("fsdd", "ds_cnn_speech_commands12", "speech_commands12", "fsdd", 500, 2, None),
    }


TASK_NAMES = ("gtsrb32", "flowers32", "fsdd")
# A command-line task's calibration split: at most this many rows, at most
# this share of its training split.
USER_CALIBRATION, USER_CALIBRATION_SHARE = 500, 0.2


class TaskError(ValueError):
    """A command-line task that cannot run: the message says why."""


def user_task(model, data, name=None):
    """The Task of --task_model / --task_data: `model` an int8 .tflite
    (trained as it is) or the name of a checkpoint in pipeline/checkpoints
    (QAT on its upstream dataset from --data_dir and a new head, like the
    built-in tasks); `data` an .npz with x_train, y_train, x_test, y_test
    (uint8 samples). Raises TaskError saying what is wrong."""
    data_path = pathlib.Path(data)
    if not data_path.is_file():
        raise TaskError(
            f"--task_data {data} is not a file; give an .npz with x_train, y_train, x_test, y_test"
        )
    try:  # every array read whole: a damaged one fails here, not in a job
        with np.load(data_path) as arrays:
            missing = [
                k for k in ("x_train", "y_train", "x_test", "y_test") if k not in arrays.files
            ]
            read = {k: arrays[k] for k in arrays.files if k not in missing}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise TaskError(f"--task_data {data} is not a readable .npz ({e})") from None
    train_rows = len(read.get("y_train", ()))
    if missing:
        raise TaskError(
            f"--task_data {data} lacks {', '.join(missing)}; it needs x_train, "
            "y_train, x_test, y_test"
        )
    stem = data_path.stem
    name = name or stem
    if str(model).endswith(".tflite"):
        model_path = pathlib.Path(model)
        if not model_path.is_file():
            raise TaskError(f"--task_model {model} is not a file")
        return Task(
            name,
            model_path.stem,
            "",
            stem,
            0,
            0,
            None,
            model_file=str(model_path.resolve()),
            data_file=str(data_path.resolve()),
        )
    info = CHECKPOINTS / f"{model}.json"
    if not info.is_file():
        known = ", ".join(sorted(p.stem for p in CHECKPOINTS.glob("*.json")))
        raise TaskError(
            f"--task_model {model} is neither an int8 .tflite file nor a "
            f"checkpoint in pipeline/checkpoints ({known})"
        )
    calibration = min(USER_CALIBRATION, int(train_rows * USER_CALIBRATION_SHARE))
    return Task(
        name,
        model,
        json.loads(info.read_text())["dataset"],
        stem,
        calibration,
        1,
        5000,
        data_file=str(data_path.resolve()),
    )


def task_of(config, name, vision_backbone=None):
    """The task called `name`: the command-line one (config["user_task"])
    or a built-in one."""
    user = config.get("user_task")
    if user and user["name"] == name:
        return Task(**user)
    return make_tasks(vision_backbone or config["vision_backbone"])[name]


def dataset_path(data_dir, name):
    path = pathlib.Path(data_dir) / f"{name}.npz"
    if not path.is_file():
        raise FileNotFoundError(
            f"dataset {path} not found; pass --data_dir (the folder of "
            "../shared/data, see its README.md)"
        )
    return path


def downstream_path(task, data_dir):
    return (
        pathlib.Path(task.data_file) if task.data_file else dataset_path(data_dir, task.downstream)
    )


def load_arrays(data_dir, name):
    """(x_train, y_train, x_test, y_test) of a dataset, NHWC uint8 and int64."""
    return load_arrays_at(dataset_path(data_dir, name))


def load_downstream(task, data_dir):
    """load_arrays of the task's downstream dataset."""
    return load_arrays_at(downstream_path(task, data_dir))


def load_arrays_at(path):
    with np.load(path) as data:
        arrays = [data[k] for k in ("x_train", "y_train", "x_test", "y_test")]
    x_train, y_train, x_test, y_test = arrays
    if x_train.ndim == 3:
        x_train, x_test = x_train[..., None], x_test[..., None]
    return x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64)


def split_rows(task, y_train):
    """(calibration rows, training pool rows) of the downstream train split."""
    rng = np.random.default_rng(SPLIT_SEED)
    if task.calibration == 0:
        return np.zeros(0, np.int64), np.arange(len(y_train))
    calibration = np.sort(datasets.balanced_subset(y_train, task.calibration, rng))
    pool = np.setdiff1d(np.arange(len(y_train)), calibration)
    return calibration, pool


def train_rows(y_train, pool, count, seed):
    """The seed's class-balanced training rows, in training order."""
    rng = np.random.default_rng([SPLIT_SEED, seed])
    return pool[datasets.balanced_subset(y_train[pool], count, rng)]


def test_rows(y_test, count):
    rng = np.random.default_rng([SPLIT_SEED, 1])
    return np.sort(datasets.balanced_subset(y_test, count, rng))


def file_sha256(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def model_key(task, data_dir):
    """What the converted model depends on, as a dict and a short hash."""
    # The command-line fields only where set: built-in tasks keep their keys.
    fields = {
        k: v
        for k, v in dataclasses.asdict(task).items()
        if v is not None or k not in ("model_file", "data_file")
    }
    key = {
        "convert_version": CONVERT_VERSION,
        "task": fields,
        "downstream_bytes": downstream_path(task, data_dir).stat().st_size,
        "split_seed": SPLIT_SEED,
    }
    if task.model_file:
        key["model_sha256"] = file_sha256(task.model_file)
    else:
        info = json.loads((CHECKPOINTS / task.checkpoint).with_suffix(".json").read_text())
        key["checkpoint_weights_sha256"] = info["weights_sha256"]
        key["upstream_bytes"] = dataset_path(data_dir, task.upstream).stat().st_size
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return key, digest


def model_dir(cache_dir, task, data_dir):
    _, digest = model_key(task, data_dir)
    return pathlib.Path(cache_dir) / task.name / f"{task.checkpoint}-{digest}"


def quantize(x_uint8, scale, zero_point):
    """uint8 samples as the int8 model input: x / 255 quantized."""
    real = x_uint8.astype(np.float32) / np.float32(255.0)
    q = np.round(real / np.float32(scale)) + zero_point
    return np.clip(q, -128, 127).astype(np.int8)


@dataclasses.dataclass
class Samples:
    """One seed's samples: uint8 (for the float model) and int8 (for the
    int8 model) training samples in training order, and the test samples."""

    train_u8: np.ndarray
    train_x: np.ndarray
    train_y: np.ndarray
    test_u8: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def samples_path(task, data_dir, input_quant, train_count, test_count, seed, cache_dir):
    """Where load_samples caches the seed's samples."""
    scale, zero_point = input_quant
    key = json.dumps(
        [
            task.name,
            task.calibration,
            SPLIT_SEED,
            train_count,
            test_count,
            seed,
            float(scale),
            int(zero_point),
            downstream_path(task, data_dir).stat().st_size,
        ]
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return pathlib.Path(cache_dir) / task.name / "samples" / f"seed{seed}-{digest}.npz"


def load_samples(task, data_dir, input_quant, train_count, test_count, seed, cache_dir):
    """The seed's Samples (cached as an .npz under cache_dir)."""
    scale, zero_point = input_quant
    path = samples_path(task, data_dir, input_quant, train_count, test_count, seed, cache_dir)
    if path.is_file():
        with np.load(path) as data:
            return Samples(**{k: data[k] for k in data.files})
    x_train, y_train, x_test, y_test = load_downstream(task, data_dir)
    _, pool = split_rows(task, y_train)
    train = train_rows(y_train, pool, train_count, seed)
    test = test_rows(y_test, test_count)
    samples = Samples(
        x_train[train],
        quantize(x_train[train], scale, zero_point),
        y_train[train],
        x_test[test],
        quantize(x_test[test], scale, zero_point),
        y_test[test],
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **dataclasses.asdict(samples))
    tmp.replace(path)
    return samples
