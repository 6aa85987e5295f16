"""Float checkpoints of zoo models: `<prefix>.weights.npz` (every weight of
the model, trainable or not, keyed by its Keras name, e.g.
`b3_dw/depthwise_kernel:0`) and `<prefix>.json` (the zoo config, to
rebuild the model, plus whatever metadata the caller adds: dataset,
accuracy, command line).

    save(model, config, 'pipeline/checkpoints/ds_cnn_speech_commands12',
         metadata={'dataset': 'speech_commands12'})
    model, info = load('pipeline/checkpoints/ds_cnn_speech_commands12')

Weights can be stored as float16 to halve the file; `load` casts them back
to float32.
"""

import hashlib
import json
import os

import numpy as np

from pipeline import zoo

FORMAT_VERSION = 1


def paths(prefix):
    """(weights .npz path, metadata .json path) of a checkpoint prefix."""
    return prefix + ".weights.npz", prefix + ".json"


def weights_dict(model):
    """{weight name: value} of every weight (BN statistics included)."""
    names = [w.name for w in model.weights]
    if len(set(names)) != len(names):
        raise ValueError(
            "model %r has duplicate weight names; name its layers uniquely" % model.name
        )
    return {w.name: w.numpy() for w in model.weights}


def save(model, config, prefix, metadata=None, dtype="float32"):
    """Writes the checkpoint; returns the metadata written."""
    weights_path, json_path = paths(prefix)
    directory = os.path.dirname(weights_path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    arrays = {name: value.astype(dtype) for name, value in weights_dict(model).items()}
    np.savez_compressed(weights_path, **arrays)
    info = dict(metadata or {})
    info.update(
        {
            "format_version": FORMAT_VERSION,
            "weights_file": os.path.basename(weights_path),
            "weights_dtype": str(np.dtype(dtype)),
            "weights_sha256": _sha256(weights_path),
            "weights_bytes": os.path.getsize(weights_path),
            "params": int(model.count_params()),
        }
    )
    info.update(zoo.config_to_dict(config))
    with open(json_path, "w") as f:
        json.dump(info, f, indent=1)
        f.write("\n")
    return info


def load_info(prefix):
    with open(paths(prefix)[1]) as f:
        info = json.load(f)
    if info.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            "%s: checkpoint format %s, this code reads %d"
            % (prefix, info.get("format_version"), FORMAT_VERSION)
        )
    return info


def load(prefix, **config_overrides):
    """(model, metadata): the zoo model rebuilt from the stored config (with
    overrides, e.g. dropout=0.0) and the stored weights set."""
    info = load_info(prefix)
    data = {"model": info["model"], "config": dict(info["config"])}
    data["config"].update(config_overrides)
    model = zoo.build(zoo.config_from_dict(data))
    set_weights(model, paths(prefix)[0])
    return model, info


def set_weights(model, weights_path):
    """Sets every weight of `model` from a .weights.npz, by name; the names
    must match exactly."""
    with np.load(weights_path) as stored:
        names = {w.name for w in model.weights}
        missing = sorted(names - set(stored.files))
        unexpected = sorted(set(stored.files) - names)
        if missing or unexpected:
            raise ValueError(
                "%s does not fit model %r: missing %s; unexpected %s"
                % (weights_path, model.name, missing[:5] or "none", unexpected[:5] or "none")
            )
        for weight in model.weights:
            value = stored[weight.name]
            if tuple(value.shape) != tuple(weight.shape):
                raise ValueError(
                    "%s: %s has shape %s, the model %s"
                    % (weights_path, weight.name, value.shape, weight.shape)
                )
            weight.assign(value.astype(np.float32))


def _sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()
