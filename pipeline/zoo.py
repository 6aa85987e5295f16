"""Model zoo: MCU-sized, QAT-friendly tf_keras (Keras 2) networks.

Each model comes in three separate parts, as Keras does it:

* a config: a frozen dataclass holding every architecture choice
  (MobileNetV2Config, MCUNetConfig, DSCNNConfig). `config_to_dict` and
  `config_from_dict` round-trip it through JSON, which is how checkpoints
  remember what to rebuild;
* a builder: `build(config)` returns a functional keras.Model (tfmot
  quantizes only Sequential and functional Keras 2 models); each model's
  `<name>_backbone(inputs, config)` gives its pooled features alone, for
  other heads;
* calling: the model itself, `model(x)` or `model.predict(x)`.

`mobilenet_v2(...)`, `mcunet(...)` and `ds_cnn(...)` are shortcuts: a config
from keyword arguments, then `build`.

Every model takes float input in [0, 1] (a dataset's uint8 values / 255, so
the int8 input is exactly `x_uint8 - 128`), ends with GlobalAveragePooling2D
named `features`, optional Dropout, and Dense(num_classes, softmax) named
`logits` (FULLY_CONNECTED + SOFTMAX in the .tflite: the trainer's loss reads
the FULLY_CONNECTED output).

Rules every block follows so that QAT fake-quantizes every weight (see
qat.check_weights_fake_quantized and ../shared/KNOWN.md): Conv2D /
DepthwiseConv2D / Dense never feed a standalone ReLU layer (always Conv ->
BatchNormalization -> ReLU, or activation=); a BatchNormalization after
every DepthwiseConv2D (so its weight ranges are per channel); no bias before
a BatchNormalization.
"""

import ast
import dataclasses

import numpy as np
import tf_keras as keras

L = keras.layers


# --------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------


def make_divisible(value, divisor=8):
    """Rounds a channel count to a multiple of `divisor`, never going more
    than 10% below `value` (the MobileNet rule)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def _suffixed(name, suffix):
    return None if name is None else name + suffix


def conv_bn_relu(x, filters, kernel, strides=1, max_value=None, name=None):
    """Conv2D (no bias, SAME) -> BatchNormalization -> ReLU (ReLU6 with
    max_value=6). The converter folds the BN into the conv and fuses the
    ReLU: one CONV_2D with per-channel weights."""
    x = L.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=name)(x)
    x = L.BatchNormalization(name=_suffixed(name, "_bn"))(x)
    return L.ReLU(max_value, name=_suffixed(name, "_relu"))(x)


def depthwise_bn_relu(x, kernel, strides=1, max_value=None, name=None, relu_suffix="_relu"):
    """DepthwiseConv2D (no bias, SAME) -> BatchNormalization -> ReLU."""
    x = L.DepthwiseConv2D(kernel, strides=strides, padding="same", use_bias=False, name=name)(x)
    x = L.BatchNormalization(name=_suffixed(name, "_bn"))(x)
    return L.ReLU(max_value, name=_suffixed(name, relu_suffix))(x)


def inverted_residual(x, expand, out_ch, stride, name, kernel_size=3):
    """MobileNetV2 / MBConv block: 1x1 expand (skipped when expand == 1),
    depthwise kernel_size x kernel_size, 1x1 linear projection, each with BN;
    ReLU6 after the first two; residual ADD when the shape is unchanged."""
    in_ch = x.shape[-1]
    y = x
    if expand != 1:
        y = L.Conv2D(in_ch * expand, 1, use_bias=False, name=name + "_expand")(y)
        y = L.BatchNormalization(name=name + "_expand_bn")(y)
        y = L.ReLU(6.0, name=name + "_expand_relu6")(y)
    y = depthwise_bn_relu(y, kernel_size, stride, 6.0, name + "_dw", relu_suffix="_relu6")
    y = L.Conv2D(out_ch, 1, use_bias=False, name=name + "_project")(y)
    y = L.BatchNormalization(name=name + "_project_bn")(y)  # linear
    if stride == 1 and in_ch == out_ch:
        y = L.Add(name=name + "_add")([x, y])
    return y


def pooled_features(x):
    """GlobalAveragePooling2D named 'features' (MEAN in the .tflite, which
    takes its own output scale without an extra QUANTIZE op)."""
    return L.GlobalAveragePooling2D(name="features")(x)


def classifier(x, num_classes, dropout=0.0, name="logits"):
    """Dropout, then Dense(num_classes) + softmax, on pooled features."""
    if dropout:
        x = L.Dropout(dropout, name="dropout")(x)
    return L.Dense(num_classes, activation="softmax", name=name)(x)


# --------------------------------------------------------------------------
# MobileNetV2
# --------------------------------------------------------------------------

# (expansion t, channels c, repeats n, first stride s): the MobileNetV2
# paper's table. With a stride-1 stem on 32x32 input the maps go 32, 16, 8,
# 4, 4, 2, 2. (The CIFAR habit of also keeping the 24-channel stage at full
# resolution triples the MACs, to 14 M, and needs 52 KB more RAM: its
# 32x32x48 expansions are the largest activations.)
MOBILENET_V2_STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


@dataclasses.dataclass(frozen=True)
class MobileNetV2Config:
    """MobileNetV2 (Sandler et al. 2018) scaled for MCUs.

    alpha: width multiplier on every stage (channels rounded to 8).
    stem_stride: 1 for 32x32 input, 2 for larger images.
    stages: (t, c, n, s) rows; c before alpha.
    last_channels: the 1x1 conv before pooling. The paper's 1280 (kept by
      Keras for alpha <= 1) would make the head alone 1280 x classes int8
      weights and their RAM copies during training; None uses
      make_divisible(1280 * alpha).
    """

    input_shape: tuple = (32, 32, 3)
    num_classes: int = 200
    alpha: float = 0.35
    stem_stride: int = 1
    stages: tuple = MOBILENET_V2_STAGES
    last_channels: int = None
    dropout: float = 0.2


def mobilenet_v2_backbone(inputs, config):
    """The pooled features ('features') of MobileNetV2 on `inputs`."""
    c = config
    x = conv_bn_relu(inputs, make_divisible(32 * c.alpha), 3, c.stem_stride, 6.0, name="stem")
    block = 0
    for t, channels, repeats, stride in c.stages:
        out_ch = make_divisible(channels * c.alpha)
        for k in range(repeats):
            block += 1
            x = inverted_residual(x, t, out_ch, stride if k == 0 else 1, "b%d" % block)
    last = c.last_channels or make_divisible(1280 * c.alpha)
    x = conv_bn_relu(x, last, 1, max_value=6.0, name="last_conv")
    return pooled_features(x)


def build_mobilenet_v2(config):
    inputs = keras.Input(config.input_shape)
    outputs = classifier(mobilenet_v2_backbone(inputs, config), config.num_classes, config.dropout)
    return keras.Model(inputs, outputs, name="mobilenet_v2")


# --------------------------------------------------------------------------
# MCUNet / ProxylessNAS-style network
# --------------------------------------------------------------------------

# (kernel, expansion, channels, stride): mixed kernel sizes and expansion
# ratios per block, as a NAS (ProxylessNAS, MCUNet's TinyNAS) picks them;
# small kernels and expansions early where the maps are large, larger ones
# late where they are cheap. Sized for 32x32 input.
MCUNET_BLOCKS = (
    (3, 1, 8, 1),
    (5, 3, 16, 2),
    (3, 3, 16, 1),
    (7, 3, 24, 2),
    (3, 4, 24, 1),
    (5, 3, 24, 1),
    (5, 4, 40, 2),
    (3, 4, 40, 1),
    (7, 3, 40, 1),
    (5, 4, 64, 1),
    (3, 4, 64, 1),
)


@dataclasses.dataclass(frozen=True)
class MCUNetConfig:
    """An MCUNet (Lin et al. 2020) / ProxylessNAS-style network: a stem, then
    MBConv inverted residual blocks whose kernel size (3/5/7) and expansion
    (1-6) vary block by block, a 1x1 conv and the classifier.

    width: multiplier on every channel count (rounded to 8).
    blocks: (kernel, expansion, channels, stride) rows.
    """

    input_shape: tuple = (32, 32, 3)
    num_classes: int = 200
    width: float = 1.0
    stem_channels: int = 16
    stem_stride: int = 1
    blocks: tuple = MCUNET_BLOCKS
    last_channels: int = 160
    dropout: float = 0.2


def mcunet_backbone(inputs, config):
    """The pooled features ('features') of the MCUNet-style net."""
    c = config
    x = conv_bn_relu(
        inputs, make_divisible(c.stem_channels * c.width), 3, c.stem_stride, 6.0, name="stem"
    )
    for k, (kernel, expand, channels, stride) in enumerate(c.blocks):
        x = inverted_residual(
            x,
            expand,
            make_divisible(channels * c.width),
            stride,
            "b%d" % (k + 1),
            kernel_size=kernel,
        )
    x = conv_bn_relu(
        x, make_divisible(c.last_channels * c.width), 1, max_value=6.0, name="last_conv"
    )
    return pooled_features(x)


def build_mcunet(config):
    inputs = keras.Input(config.input_shape)
    outputs = classifier(mcunet_backbone(inputs, config), config.num_classes, config.dropout)
    return keras.Model(inputs, outputs, name="mcunet")


# --------------------------------------------------------------------------
# DS-CNN keyword spotting
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DSCNNConfig:
    """DS-CNN keyword spotting (Zhang et al., Hello Edge, 2017) on a 49x40x1
    log-mel "image": Conv first_kernel / first_stride + BN + ReLU, then one
    block per entry of block_strides (depthwise 3x3 + BN + ReLU, pointwise
    1x1 + BN + ReLU), GlobalAveragePooling2D (MEAN), Dense.

    width: multiplier on `channels` (rounded to 8).
    """

    input_shape: tuple = (49, 40, 1)
    num_classes: int = 12
    width: float = 1.0
    channels: int = 64
    first_kernel: tuple = (10, 4)
    first_stride: int = 2
    block_strides: tuple = (1, 2, 1, 1)
    dropout: float = 0.2


def ds_cnn_backbone(inputs, config):
    """The pooled features ('features') of DS-CNN on `inputs`."""
    c = config
    channels = make_divisible(c.channels * c.width)
    x = conv_bn_relu(inputs, channels, c.first_kernel, c.first_stride, name="conv1")
    for k, stride in enumerate(c.block_strides):
        name = "b%d" % (k + 1)
        x = depthwise_bn_relu(x, 3, stride, name=name + "_dw")
        x = conv_bn_relu(x, channels, 1, name=name + "_pw")
    return pooled_features(x)


def build_ds_cnn(config):
    inputs = keras.Input(config.input_shape)
    outputs = classifier(ds_cnn_backbone(inputs, config), config.num_classes, config.dropout)
    return keras.Model(inputs, outputs, name="ds_cnn")


# --------------------------------------------------------------------------
# Registry, shortcuts, configs as dicts
# --------------------------------------------------------------------------

MODELS = {
    "mobilenet_v2": (MobileNetV2Config, build_mobilenet_v2),
    "mcunet": (MCUNetConfig, build_mcunet),
    "ds_cnn": (DSCNNConfig, build_ds_cnn),
}


# The config field each model's width multiplier lives in.
WIDTH_FIELDS = {"mobilenet_v2": "alpha", "mcunet": "width", "ds_cnn": "width"}


def make_config(name, **overrides):
    """The named model's config with some fields changed."""
    if name not in MODELS:
        raise ValueError("unknown model %r; the zoo has: %s" % (name, ", ".join(sorted(MODELS))))
    config_class = MODELS[name][0]
    known = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(
            "%s has no field %s; its fields: %s"
            % (config_class.__name__, ", ".join(unknown), ", ".join(sorted(known)))
        )
    return config_class(**_tupled(overrides))


def build(config):
    """A functional tf_keras model from any zoo config."""
    for config_class, builder in MODELS.values():
        if isinstance(config, config_class):
            return builder(config)
    raise TypeError("not a zoo config: %r" % (config,))


def model_name(config):
    for name, (config_class, _) in MODELS.items():
        if isinstance(config, config_class):
            return name
    raise TypeError("not a zoo config: %r" % (config,))


def mobilenet_v2(input_shape=(32, 32, 3), num_classes=200, alpha=0.35, **overrides):
    return build(
        make_config(
            "mobilenet_v2",
            input_shape=input_shape,
            num_classes=num_classes,
            alpha=alpha,
            **overrides,
        )
    )


def mcunet(input_shape=(32, 32, 3), num_classes=200, width=1.0, **overrides):
    return build(
        make_config(
            "mcunet", input_shape=input_shape, num_classes=num_classes, width=width, **overrides
        )
    )


def ds_cnn(input_shape=(49, 40, 1), num_classes=12, width=1.0, **overrides):
    return build(
        make_config(
            "ds_cnn", input_shape=input_shape, num_classes=num_classes, width=width, **overrides
        )
    )


def parse_overrides(items):
    """Config fields from 'field=value' strings (values are Python
    literals, else strings): ['dropout=0.1', 'stages=((1, 16, 1, 1),)']."""
    overrides = {}
    for item in items:
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError("expected field=value, got %r" % item)
        try:
            overrides[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            overrides[key.strip()] = value.strip()
    return overrides


def config_to_dict(config):
    """{'model': name, 'config': {field: value}}, JSON-serialisable."""
    return {"model": model_name(config), "config": _listed(dataclasses.asdict(config))}


def config_from_dict(data):
    return make_config(data["model"], **data["config"])


def _tupled(value):
    """Lists (from JSON) back to the tuples configs hold."""
    if isinstance(value, dict):
        return {k: _tupled(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return tuple(_tupled(v) for v in value)
    return value


def _listed(value):
    if isinstance(value, dict):
        return {k: _listed(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_listed(v) for v in value]
    return value


# --------------------------------------------------------------------------
# Size
# --------------------------------------------------------------------------


def multiply_accumulates(model):
    """Multiply-accumulates of one inference in the Conv2D, DepthwiseConv2D
    and Dense layers (the rest is small): output positions x kernel size."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, (L.Conv2D, L.DepthwiseConv2D, L.Dense)):
            positions = int(np.prod(layer.output.shape[1:-1]))
            total += positions * int(np.prod(layer.weights[0].shape))
    return total


def summary(model):
    """{'params', 'macs'} of a model."""
    return {"params": int(model.count_params()), "macs": multiply_accumulates(model)}
