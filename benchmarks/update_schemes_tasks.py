"""The update-scheme benchmark's tasks, splits and cached artifacts (no
TensorFlow here: the Keras steps run in a child process,
benchmarks/update_schemes_keras.py).

A task is an upstream checkpoint (pipeline/checkpoints) and a downstream
dataset (an .npz in --data_dir). Its downstream train split is cut once,
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

import numpy as np

from pipeline import data as datasets

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
    name: str          # short id: gtsrb32, flowers32, fsdd
    checkpoint: str    # pipeline/checkpoints/<checkpoint>
    upstream: str      # upstream dataset (the checkpoint's)
    downstream: str    # downstream dataset file stem in --data_dir
    calibration: int   # downstream train rows kept for the head's ranges
    qat_epochs: int    # upstream QAT epochs before the new head
    qat_samples: int   # upstream samples QAT trains on (None: all)

    @property
    def title(self):
        return f"{self.upstream} → {self.downstream}"


def make_tasks(vision_backbone):
    vision = vision_backbone
    return {
        "gtsrb32": Task("gtsrb32", vision, "tinyimagenet32", "gtsrb32", 430, 1, 5000),
        "flowers32": Task("flowers32", vision, "tinyimagenet32", "flowers32", 500, 1, 5000),
        "fsdd": Task("fsdd", "ds_cnn_speech_commands12", "speech_commands12", "fsdd",
                     500, 2, None),
    }


TASK_NAMES = ("gtsrb32", "flowers32", "fsdd")


def dataset_path(data_dir, name):
    path = pathlib.Path(data_dir) / f"{name}.npz"
    if not path.is_file():
        raise FileNotFoundError(f"dataset {path} not found; pass --data_dir (the folder of "
                                "../shared/data, see its README.md)")
    return path


def load_arrays(data_dir, name):
    """(x_train, y_train, x_test, y_test) of a dataset, NHWC uint8 and int64."""
    with np.load(dataset_path(data_dir, name)) as data:
        arrays = [data[k] for k in ("x_train", "y_train", "x_test", "y_test")]
    x_train, y_train, x_test, y_test = arrays
    if x_train.ndim == 3:
        x_train, x_test = x_train[..., None], x_test[..., None]
    return x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64)


def split_rows(task, y_train):
    """(calibration rows, training pool rows) of the downstream train split."""
    rng = np.random.default_rng(SPLIT_SEED)
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
    prefix = CHECKPOINTS / task.checkpoint
    info = json.loads(prefix.with_suffix(".json").read_text())
    key = {
        "convert_version": CONVERT_VERSION,
        "task": dataclasses.asdict(task),
        "checkpoint_weights_sha256": info["weights_sha256"],
        "downstream_bytes": dataset_path(data_dir, task.downstream).stat().st_size,
        "upstream_bytes": dataset_path(data_dir, task.upstream).stat().st_size,
        "split_seed": SPLIT_SEED,
    }
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
    key = json.dumps([task.name, task.calibration, SPLIT_SEED, train_count, test_count,
                      seed, float(scale), int(zero_point),
                      dataset_path(data_dir, task.downstream).stat().st_size])
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return pathlib.Path(cache_dir) / task.name / "samples" / f"seed{seed}-{digest}.npz"


def load_samples(task, data_dir, input_quant, train_count, test_count, seed, cache_dir):
    """The seed's Samples (cached as an .npz under cache_dir)."""
    scale, zero_point = input_quant
    path = samples_path(task, data_dir, input_quant, train_count, test_count, seed, cache_dir)
    if path.is_file():
        with np.load(path) as data:
            return Samples(**{k: data[k] for k in data.files})
    x_train, y_train, x_test, y_test = load_arrays(data_dir, task.downstream)
    _, pool = split_rows(task, y_train)
    train = train_rows(y_train, pool, train_count, seed)
    test = test_rows(y_test, test_count)
    samples = Samples(x_train[train], quantize(x_train[train], scale, zero_point),
                      y_train[train], x_test[test], quantize(x_test[test], scale, zero_point),
                      y_test[test])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **dataclasses.asdict(samples))
    tmp.replace(path)
    return samples
