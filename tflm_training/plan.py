"""Training plans: which layers of a model train, which of their output
channels, and how. The binary form (version 1, described in
runtime/tt_plan.h) is what the C trainer reads; this module owns it on the
Python side.

    plan = TrainingPlan.classifier_only(model_bytes, learning_rate=0.05)
    plan = TrainingPlan.for_model(model_bytes, {3: None, 2: range(16)})
    Trainer(model_bytes, plan)
"""

import dataclasses
import math
import struct
import zlib

from tflm_training import tflite_graph

MAGIC = b"TTPL"
VERSION = 1
HEADER_SIZE = 64
LAYER_SIZE = 16
_HEADER = struct.Struct("<4siIIIiiiiiiffiii")
_LAYER = struct.Struct("<iiif")
OPTIMIZER_SGD = 0
FLAG_QAS = 1
FLAG_NO_RESIDUAL = 2
UPDATE_KINDS = {"bias": 0, "weights": 1}  # "weights" trains weights and bias
TRAINABLE_OPERATORS = (tflite_graph.CONV_2D, tflite_graph.DEPTHWISE_CONV_2D,
                       tflite_graph.FULLY_CONNECTED)


@dataclasses.dataclass
class LayerPlan:
    """One operator with parameters to train.

    update: "weights" (weights and bias of the channels) or "bias".
    channels: the output channels to train, ascending; None means all of
    them (TrainingPlan.for_model fills them in).
    lr_scale: multiplies the plan's learning rate for this layer.
    """

    operator_index: int
    update: str = "weights"
    channels: list = None
    lr_scale: float = 1.0

    def __post_init__(self):
        self.lr_scale = _float32(self.lr_scale)
        if self.channels is not None and not isinstance(self.channels, list):
            self.channels = list(self.channels)


@dataclasses.dataclass
class TrainingPlan:
    """A whole plan; `model_crc32`, `num_tensors` and `num_operators` tie it
    to one .tflite file."""

    model_crc32: int
    num_tensors: int
    num_operators: int
    logits_tensor: int
    num_classes: int
    layers: list
    learning_rate: float = 0.05
    momentum: float = 0.0
    batch_size: int = 1
    qas: bool = True
    residual: bool = True  # keep a float residual per parameter (tt_optimizer.h)

    def __post_init__(self):
        # Stored as float32 in the binary form: keep the values it holds.
        self.learning_rate = _float32(self.learning_rate)
        self.momentum = _float32(self.momentum)

    # -- the binary format ---------------------------------------------------

    def to_bytes(self):
        self.validate()
        body = b"".join(_LAYER.pack(layer.operator_index, UPDATE_KINDS[layer.update],
                                    len(layer.channels), layer.lr_scale)
                        for layer in self.layers)
        body += b"".join(struct.pack(f"<{len(layer.channels)}i", *layer.channels)
                         for layer in self.layers)
        total = HEADER_SIZE + len(body)
        fields = [self.model_crc32, self.num_tensors, self.num_operators,
                  self.logits_tensor, self.num_classes, self.batch_size, OPTIMIZER_SGD,
                  self.learning_rate, self.momentum, self._flags(),
                  len(self.layers), 0]
        tail = _HEADER.pack(MAGIC, VERSION, total, 0, *fields)[16:] + body
        return _HEADER.pack(MAGIC, VERSION, total, zlib.crc32(tail), *fields)[:16] + tail

    def _flags(self):
        return (FLAG_QAS if self.qas else 0) | (0 if self.residual else FLAG_NO_RESIDUAL)

    @classmethod
    def from_bytes(cls, data):
        data = bytes(data)
        if len(data) < HEADER_SIZE:
            raise ValueError(f"a training plan has at least {HEADER_SIZE} bytes, got {len(data)}")
        (magic, version, total, crc, model_crc, num_tensors, num_operators, logits,
         num_classes, batch, optimizer, lr, momentum, flags, num_layers,
         reserved) = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise ValueError("not a training plan (the bytes do not start with TTPL)")
        if version != VERSION:
            raise ValueError(f"training plan version {version}; this package reads {VERSION}")
        if total != len(data):
            raise ValueError(f"the plan header says {total} bytes but {len(data)} were given")
        if zlib.crc32(data[16:]) != crc:
            raise ValueError("training plan checksum mismatch: the plan is damaged")
        if optimizer != OPTIMIZER_SGD or reserved != 0 or flags & ~(FLAG_QAS | FLAG_NO_RESIDUAL):
            raise ValueError("training plan has an unknown optimizer, flags or reserved field")
        if num_layers < 0 or HEADER_SIZE + LAYER_SIZE * num_layers > total:
            raise ValueError(f"training plan: {num_layers} layers do not fit in {total} bytes")
        entries = [_LAYER.unpack_from(data, HEADER_SIZE + LAYER_SIZE * i)
                   for i in range(num_layers)]
        pos = HEADER_SIZE + LAYER_SIZE * num_layers
        if any(e[2] < 0 for e in entries) or pos + 4 * sum(e[2] for e in entries) != total:
            raise ValueError("training plan: the channel lists do not fill the plan exactly")
        kinds = {v: k for k, v in UPDATE_KINDS.items()}
        layers = []
        for op, kind, count, lr_scale in entries:
            if kind not in kinds:
                raise ValueError(f"training plan: update kind {kind} is unknown")
            channels = list(struct.unpack_from(f"<{count}i", data, pos))
            pos += 4 * count
            layers.append(LayerPlan(op, kinds[kind], channels, lr_scale))
        plan = cls(model_crc, num_tensors, num_operators, logits, num_classes, layers,
                   learning_rate=lr, momentum=momentum, batch_size=batch,
                   qas=bool(flags & FLAG_QAS), residual=not flags & FLAG_NO_RESIDUAL)
        plan.validate()
        return plan

    # -- checks ----------------------------------------------------------------

    def validate(self):
        """Checks what can be checked without the model; ValueError if wrong."""
        if not (isinstance(self.learning_rate, (int, float)) and math.isfinite(self.learning_rate)
                and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be a positive finite number, got "
                             f"{self.learning_rate!r}")
        if not (isinstance(self.momentum, (int, float)) and 0 <= self.momentum < 1):
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {self.batch_size!r}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {self.num_classes}")
        if not self.layers:
            raise ValueError("the plan trains no layers; give at least one")
        previous = -1
        for i, layer in enumerate(self.layers):
            if layer.operator_index <= previous:
                raise ValueError(f"layer {i}: operator {layer.operator_index} does not come after "
                                 f"operator {previous}; list layers by ascending operator "
                                 "index, each once")
            previous = layer.operator_index
            if layer.update not in UPDATE_KINDS:
                raise ValueError(f"layer {i}: update must be 'weights' or 'bias', got "
                                 f"{layer.update!r}")
            if not (math.isfinite(layer.lr_scale) and layer.lr_scale > 0):
                raise ValueError(f"layer {i}: lr_scale must be a positive finite number")
            if layer.channels is None or len(layer.channels) == 0:
                raise ValueError(f"layer {i}: no channels selected (use for_model to select all)")
            channels = list(layer.channels)
            if channels != sorted(set(channels)) or channels[0] < 0:
                raise ValueError(f"layer {i}: channels must be non-negative, ascending and "
                                 "unique")

    def check_model(self, model_bytes):
        """Checks the plan against the model it is for; ValueError if wrong."""
        self.validate()
        graph = tflite_graph.read_graph(model_bytes)
        if zlib.crc32(bytes(model_bytes)) != self.model_crc32:
            raise ValueError("the plan was made for another model (CRC-32 differs); make it "
                             "from this .tflite file")
        if (len(graph.tensors), len(graph.operators)) != (self.num_tensors, self.num_operators):
            raise ValueError(f"the plan is for a model with {self.num_tensors} tensors and "
                             f"{self.num_operators} operators, this one has "
                             f"{len(graph.tensors)} and {len(graph.operators)}")
        _check_logits(graph, self.logits_tensor, self.num_classes)
        for i, layer in enumerate(self.layers):
            _check_layer(graph, i, layer, self.logits_tensor)

    # -- making plans ------------------------------------------------------------

    @classmethod
    def for_model(cls, model_bytes, layers, *, learning_rate=0.05, momentum=0.0,
                  batch_size=1, qas=True, residual=True, logits_tensor=None):
        """A checked plan for `model_bytes`.

        layers: LayerPlans, or a dict {operator index: channels} (channels
        None for all; update "weights"). logits_tensor defaults to the input
        of the final SOFTMAX, or the graph output if there is none.
        """
        model_bytes = bytes(model_bytes)
        graph = tflite_graph.read_graph(model_bytes)
        if isinstance(layers, dict):
            layers = [LayerPlan(op, "weights", channels) for op, channels in layers.items()]
        resolved = []
        for layer in sorted(layers, key=lambda l: l.operator_index):
            channels = layer.channels
            if channels is None:
                channels = range(parameter_layout(graph, layer.operator_index)["channels"])
            resolved.append(dataclasses.replace(layer, channels=[int(c) for c in channels]))
        if logits_tensor is None:
            logits_tensor = find_logits(graph)
        plan = cls(zlib.crc32(model_bytes), len(graph.tensors), len(graph.operators),
                   logits_tensor, graph.tensors[logits_tensor].num_elements, resolved,
                   learning_rate=learning_rate, momentum=momentum, batch_size=batch_size,
                   qas=qas, residual=residual)
        plan.check_model(model_bytes)
        return plan

    @classmethod
    def classifier_only(cls, model_bytes, update="weights", **settings):
        """Trains only the operator that computes the logits (every channel)."""
        graph = tflite_graph.read_graph(model_bytes)
        producer = graph.producer(find_logits(graph))
        if producer is None or graph.operators[producer].builtin_code not in TRAINABLE_OPERATORS:
            raise ValueError("the logits are not computed by a layer with parameters; name the "
                             "layers to train with for_model()")
        return cls.for_model(model_bytes, [LayerPlan(producer, update)], **settings)

    @classmethod
    def bias_only(cls, model_bytes, first_operator=0, **settings):
        """Trains the biases of every layer with a bias from first_operator on."""
        graph = tflite_graph.read_graph(model_bytes)
        layers = [LayerPlan(op.index, "bias") for op in graph.operators
                  if op.index >= first_operator and op.builtin_code in TRAINABLE_OPERATORS
                  and len(op.inputs) > 2 and op.inputs[2] >= 0]
        return cls.for_model(model_bytes, layers, **settings)


def _float32(value):
    """value rounded to float32 when it is a real number; else unchanged
    (validate() reports it)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return struct.unpack("<f", struct.pack("<f", value))[0]
        except OverflowError:
            return float(value)
    return value


def trainable_operators(model_bytes):
    """[(operator index, name, output channels, has bias)] of the layers a
    plan can select."""
    graph = tflite_graph.read_graph(model_bytes)
    result = []
    for op in graph.operators:
        if op.builtin_code in TRAINABLE_OPERATORS:
            layout = parameter_layout(graph, op.index)
            result.append((op.index, op.name, layout["channels"], layout["bias"] is not None))
    return result


def find_logits(graph):
    """The input of the last SOFTMAX, else graph output 0."""
    softmaxes = [op for op in graph.operators if op.builtin_code == tflite_graph.SOFTMAX]
    return softmaxes[-1].inputs[0] if softmaxes else graph.outputs[0]


def parameter_layout(graph, operator_index):
    """{"weights": tensor, "bias": tensor or None, "channels": count} of a
    layer with parameters; ValueError for any other operator."""
    if not 0 <= operator_index < len(graph.operators):
        raise ValueError(f"operator {operator_index} does not exist (the model has "
                         f"{len(graph.operators)} operators)")
    op = graph.operators[operator_index]
    if op.builtin_code not in TRAINABLE_OPERATORS:
        raise ValueError(f"operator {operator_index} ({op.name}) has no trainable parameters; "
                         "only CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED train")
    weights = graph.tensors[op.inputs[1]]
    if not weights.is_constant or weights.type != tflite_graph.INT8:
        raise ValueError(f"operator {operator_index} ({op.name}) has no constant int8 weights")
    axis = -1 if op.builtin_code == tflite_graph.DEPTHWISE_CONV_2D else 0
    bias = op.inputs[2] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
    return {"weights": weights.index, "bias": bias, "channels": weights.shape[axis]}


def _check_logits(graph, tensor, num_classes):
    if not 0 <= tensor < len(graph.tensors):
        raise ValueError(f"logits tensor {tensor} does not exist")
    t = graph.tensors[tensor]
    if t.type != tflite_graph.INT8 or graph.producer(tensor) is None:
        raise ValueError(f"logits tensor {tensor} must be an int8 tensor an operator computes "
                         "(the input of the final SOFTMAX)")
    if t.num_elements != num_classes:
        raise ValueError(f"logits tensor {tensor} has {t.num_elements} values, but the plan "
                         f"says {num_classes} classes")


def _feeds(graph, operator_index, tensor):
    """Whether operator_index's output reaches `tensor`."""
    reached = set(graph.operators[operator_index].outputs)
    for op in graph.operators[operator_index + 1:]:
        if reached.intersection(op.inputs):
            reached.update(op.outputs)
    return tensor in reached


def _check_layer(graph, i, layer, logits):
    layout = parameter_layout(graph, layer.operator_index)
    op = graph.operators[layer.operator_index]
    if layer.update == "bias" and layout["bias"] is None:
        raise ValueError(f"layer {i}: operator {op.index} ({op.name}) has no bias, so a "
                         "bias-only update cannot train it; use update='weights'")
    bad = [c for c in layer.channels if not 0 <= c < layout["channels"]]
    if bad:
        raise ValueError(f"layer {i}: channel {bad[0]} is out of range; operator {op.index} "
                         f"({op.name}) has output channels 0 to {layout['channels'] - 1}")
    if not _feeds(graph, op.index, logits):
        raise ValueError(f"layer {i}: operator {op.index} ({op.name}) does not feed the logits "
                         f"(tensor {logits}), so training it cannot change the loss")
