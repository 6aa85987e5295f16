"""Datasets and augmentation for the Keras stage.

Datasets are `.npz` archives in the layout of ../shared/data (see its
README): uint8 `x_train`, `x_test` in NHWC, int `y_train`, `y_test` in
0..C-1, and `class_names`. Models take `x / 255` as float input, so the
int8 model input is exactly `x_uint8 - 128` (scale 1/255, zero point -128).
Nothing here downloads anything.
"""

import dataclasses
import os

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA_DIR = os.path.normpath(os.path.join(REPO_ROOT, "..", "shared", "data"))


@dataclasses.dataclass
class Dataset:
    name: str
    path: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list

    @property
    def num_classes(self):
        return len(self.class_names)

    @property
    def input_shape(self):
        return tuple(int(d) for d in self.x_train.shape[1:])


def dataset_path(name_or_path, data_dir=SHARED_DATA_DIR):
    """A .npz path as given, else `<data_dir>/<name>.npz`."""
    if name_or_path.endswith(".npz"):
        return name_or_path
    return os.path.join(data_dir, name_or_path + ".npz")


def load(name_or_path, data_dir=SHARED_DATA_DIR):
    """Loads a dataset by name (from data_dir) or by .npz path."""
    path = dataset_path(name_or_path, data_dir)
    if not os.path.exists(path):
        raise FileNotFoundError(
            "dataset %s not found; pass a .npz path, or a name in %s "
            "(x_train, y_train, x_test, y_test, class_names)" % (path, data_dir)
        )
    with np.load(path) as d:
        missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in d]
        if missing:
            raise ValueError("%s lacks %s" % (path, ", ".join(missing)))
        y_train = d["y_train"].astype(np.int64)
        names = (
            list(d["class_names"])
            if "class_names" in d
            else [str(c) for c in range(int(y_train.max()) + 1)]
        )
        data = Dataset(
            os.path.basename(path)[: -len(".npz")],
            path,
            _nhwc(d["x_train"]),
            y_train,
            _nhwc(d["x_test"]),
            d["y_test"].astype(np.int64),
            [str(n) for n in names],
        )
    return data


def _nhwc(x):
    """Adds a channel axis to (N, H, W) arrays."""
    return x[..., None] if x.ndim == 3 else x


def to_float(x_uint8):
    """Model input: uint8 values scaled to [0, 1]."""
    return np.asarray(x_uint8, np.float32) / np.float32(255.0)


def subset(x, y, count, rng):
    """`count` rows of (x, y) drawn without replacement (all when count is
    None or too large)."""
    if count is None or count >= len(y):
        return x, y
    rows = np.sort(rng.choice(len(y), count, replace=False))
    return x[rows], y[rows]


# --------------------------------------------------------------------------
# Augmentation: each returns a new array; one draw per sample.
# --------------------------------------------------------------------------


def flip_and_crop(x, rng, pad=4):
    """Images (N, H, W, C): random horizontal flip, then a random crop of
    the original size from the image zero-padded by `pad` pixels."""
    n, height, width = x.shape[:3]
    flipped = np.where(rng.rand(n)[:, None, None, None] < 0.5, x[:, :, ::-1], x)
    padded = np.pad(flipped, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    dy = rng.randint(0, 2 * pad + 1, n)
    dx = rng.randint(0, 2 * pad + 1, n)
    out = np.empty_like(x)
    for k in range(n):
        out[k] = padded[k, dy[k] : dy[k] + height, dx[k] : dx[k] + width]
    return out


def time_shift_and_gate(x, rng, max_shift=6, gate_probability=0.5):
    """Log-mel clips (N, frames, bins, 1), 0 = the -100 dB floor: a random
    time shift of up to max_shift frames (vacated frames become 0), then,
    with gate_probability, a noise gate zeroing the frames quieter than a
    random 10-60th percentile of the clip's frame energies (so a backbone
    trained on noisy clips also sees the digital silence of zero-padded
    recordings)."""
    out = np.zeros_like(x)
    frames = x.shape[1]
    for k in range(len(x)):
        shift = rng.randint(-max_shift, max_shift + 1)
        clip = np.roll(x[k], shift, axis=0)
        if shift > 0:
            clip[:shift] = 0
        elif shift < 0:
            clip[frames + shift :] = 0
        if rng.rand() < gate_probability:
            energy = clip.mean(axis=tuple(range(1, clip.ndim)))
            clip[energy < np.percentile(energy, rng.uniform(10, 60))] = 0
        out[k] = clip
    return out


AUGMENTATIONS = {
    "flip_crop": flip_and_crop,
    "time_shift": time_shift_and_gate,
    "none": None,
}


def default_augmentation(input_shape):
    """'flip_crop' for RGB images, 'time_shift' for one-channel
    spectrograms with more than 32 frames, else 'none'."""
    if len(input_shape) == 3 and input_shape[-1] == 3:
        return "flip_crop"
    if len(input_shape) == 3 and input_shape[-1] == 1 and input_shape[0] > 32:
        return "time_shift"
    return "none"


def augmenter(name, input_shape):
    """The augmentation function for a name ('auto' picks one by input
    shape); None for 'none'."""
    if name == "auto":
        name = default_augmentation(input_shape)
    if name not in AUGMENTATIONS:
        raise ValueError(
            "unknown augmentation %r; known: auto, %s" % (name, ", ".join(AUGMENTATIONS))
        )
    return AUGMENTATIONS[name]
