"""Training plans: which layers of a model train, which of their output
channels, and how. The binary form (version 2, described in
runtime/training/tt_training_plan.h) is what the C trainer reads; this module owns it on the
Python side.

    plan = TrainingPlan.classifier_only(model_bytes, learning_rate=0.05)
    plan = TrainingPlan.for_model(model_bytes, {3: None, 2: range(16)})
    plan = TrainingPlan.sampled(model_bytes, [5, 7], budget_bytes=4096, seed=1)
    plan = TrainingPlan.lowrank(model_bytes, {8: 8, 10: 4}, refresh_steps=10)
    Trainer(model_bytes, plan)

Update kinds: "bias" (biases of the listed channels), "weights" (weights
and biases of the listed channels), "sampled" (weights and biases of
channels drawn from the listed candidates every epoch within the plan's
sample_budget: TraDy, see channel_sampler.py) and "lowrank" (weights by Adam
on a rank-r projection of the gradient, biases by SGD: FULLY_CONNECTED and
pointwise CONV_2D layers, all channels; runtime/optimizer/tt_lowrank.h).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import struct
import zlib

from tflm_training import tflite_graph
from tflm_training.errors import BadPlanError

MAGIC = b"TTPL"
VERSION = 2
HEADER_SIZE = 80
LAYER_SIZE = 32
_HEADER = struct.Struct("<4siIIIiiiiiiffiiIifff")
_LAYER = struct.Struct("<iiifiiii")
_FLAGS_OFFSET = 52
OPTIMIZER_SGD = 0
FLAG_QAS = 1
FLAG_NO_RESIDUAL = 2
FLAG_GRADIENTS_16 = 4
GRADIENT_BITS = (32, 16)
# "weights" trains weights and bias; "sampled" weights and bias of channels
# resampled every epoch; "lowrank" weights by low-rank projected Adam.
UPDATE_KINDS = {"bias": 0, "weights": 1, "sampled": 2, "lowrank": 3}
# Adam settings TrainingPlan.for_model gives plans with low-rank layers.
DEFAULT_ADAM = (0.9, 0.999, 1e-8)
MAX_CANDIDATES = 65535  # TT_PLAN_MAX_CANDIDATES: sampled candidates in all
_INT32_MAX = 2**31 - 1
_FLOAT32_MAX = 3.4028234663852886e38
TRAINABLE_OPERATORS = (
    tflite_graph.CONV_2D,
    tflite_graph.DEPTHWISE_CONV_2D,
    tflite_graph.FULLY_CONNECTED,
)


@dataclasses.dataclass
class LayerPlan:
    """One operator with parameters to train.

    update: "weights" (weights and bias of the channels), "bias", or
    "sampled" (weights and bias of channels drawn from `channels`, the
    candidates, every epoch; see channel_sampler.py).
    channels: the output channels to train (or the candidates), ascending;
    None means all of them (TrainingPlan.for_model fills them in).
    lr_scale: multiplies the plan's learning rate for this layer.
    channel_cost: "sampled" only: bytes of the plan's sample_budget one of
    its channels takes, at least its optimizer state
    (channel_state_bytes); 0 otherwise. None: for_model sets that minimum.
    rank, refresh_steps: "lowrank" only (0 otherwise): the rank r of the
    projected gradient, 1 <= r <= min(output channels, weights per channel),
    and the updates between refreshes of its projector, >= 1. A "lowrank"
    layer trains every output channel (channels None or all of them).
    """

    operator_index: int
    update: str = "weights"
    channels: list = None
    lr_scale: float = 1.0
    channel_cost: int = 0
    rank: int = 0
    refresh_steps: int = 0

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
    seed: int = 0  # of the channel sampling (channel_sampler.py)
    sample_budget: int = 0  # bytes of state the sampled channels share
    adam_beta1: float = 0.0  # Adam settings of low-rank layers (0 without)
    adam_beta2: float = 0.0
    adam_epsilon: float = 0.0
    # Bits of a stored activation gradient: 16 (bfloat16) halves the
    # gradient buffers; it needs the runtime built for it (runtime/math/tt_grad.h).
    gradient_bits: int = 32

    def __post_init__(self):
        # Stored as float32 in the binary form: keep the values it holds.
        self.learning_rate = _float32(self.learning_rate)
        self.momentum = _float32(self.momentum)
        self.adam_beta1 = _float32(self.adam_beta1)
        self.adam_beta2 = _float32(self.adam_beta2)
        self.adam_epsilon = _float32(self.adam_epsilon)

    # -- the binary format ---------------------------------------------------

    def to_bytes(self) -> bytes:
        self.validate()
        body = b"".join(
            _LAYER.pack(
                layer.operator_index,
                UPDATE_KINDS[layer.update],
                len(layer.channels),
                layer.lr_scale,
                layer.channel_cost,
                layer.rank,
                layer.refresh_steps,
                0,
            )
            for layer in self.layers
        )
        body += b"".join(
            struct.pack(f"<{len(layer.channels)}i", *layer.channels) for layer in self.layers
        )
        total = HEADER_SIZE + len(body)
        fields = [
            self.model_crc32,
            self.num_tensors,
            self.num_operators,
            self.logits_tensor,
            self.num_classes,
            self.batch_size,
            OPTIMIZER_SGD,
            self.learning_rate,
            self.momentum,
            self._flags(),
            len(self.layers),
            self.seed,
            self.sample_budget,
            self.adam_beta1,
            self.adam_beta2,
            self.adam_epsilon,
        ]
        tail = _HEADER.pack(MAGIC, VERSION, total, 0, *fields)[16:] + body
        return _HEADER.pack(MAGIC, VERSION, total, zlib.crc32(tail), *fields)[:16] + tail

    def _flags(self):
        return (
            (FLAG_QAS if self.qas else 0)
            | (0 if self.residual else FLAG_NO_RESIDUAL)
            | (FLAG_GRADIENTS_16 if self.gradient_bits == 16 else 0)
        )

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> TrainingPlan:
        data = bytes(data)
        if len(data) < HEADER_SIZE:
            raise BadPlanError(f"a training plan has at least {HEADER_SIZE} bytes, got {len(data)}")
        (
            magic,
            version,
            total,
            crc,
            model_crc,
            num_tensors,
            num_operators,
            logits,
            num_classes,
            batch,
            optimizer,
            lr,
            momentum,
            flags,
            num_layers,
            seed,
            sample_budget,
            beta1,
            beta2,
            epsilon,
        ) = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise BadPlanError("not a training plan (the bytes do not start with TTPL)")
        if version != VERSION:
            raise BadPlanError(f"training plan version {version}; this package reads {VERSION}")
        if total != len(data):
            raise BadPlanError(f"the plan header says {total} bytes but {len(data)} were given")
        if zlib.crc32(data[16:]) != crc:
            raise BadPlanError("training plan checksum mismatch: the plan is damaged")
        if optimizer != OPTIMIZER_SGD or flags & ~(FLAG_QAS | FLAG_NO_RESIDUAL | FLAG_GRADIENTS_16):
            raise BadPlanError("training plan has an unknown optimizer or flags")
        if num_layers < 0 or HEADER_SIZE + LAYER_SIZE * num_layers > total:
            raise BadPlanError(f"training plan: {num_layers} layers do not fit in {total} bytes")
        entries = [
            _LAYER.unpack_from(data, HEADER_SIZE + LAYER_SIZE * i) for i in range(num_layers)
        ]
        pos = HEADER_SIZE + LAYER_SIZE * num_layers
        if any(e[2] < 0 for e in entries) or pos + 4 * sum(e[2] for e in entries) != total:
            raise BadPlanError("training plan: the channel lists do not fill the plan exactly")
        kinds = {v: k for k, v in UPDATE_KINDS.items()}
        layers = []
        for op, kind, count, lr_scale, cost, rank, refresh, reserved in entries:
            if kind not in kinds:
                raise BadPlanError(f"training plan: update kind {kind} is unknown")
            if reserved != 0:
                raise BadPlanError("training plan: a layer's reserved field is not 0")
            channels = list(struct.unpack_from(f"<{count}i", data, pos))
            pos += 4 * count
            layers.append(LayerPlan(op, kinds[kind], channels, lr_scale, cost, rank, refresh))
        plan = cls(
            model_crc,
            num_tensors,
            num_operators,
            logits,
            num_classes,
            layers,
            learning_rate=lr,
            momentum=momentum,
            batch_size=batch,
            qas=bool(flags & FLAG_QAS),
            residual=not flags & FLAG_NO_RESIDUAL,
            seed=seed,
            sample_budget=sample_budget,
            adam_beta1=beta1,
            adam_beta2=beta2,
            adam_epsilon=epsilon,
            gradient_bits=16 if flags & FLAG_GRADIENTS_16 else 32,
        )
        plan.validate()
        return plan

    # -- checks ----------------------------------------------------------------

    def validate(self) -> None:
        """Checks what can be checked without the model; BadPlanError if wrong."""
        if not _is_float32(self.learning_rate):
            raise BadPlanError(
                f"learning_rate must be a positive finite float32 number (at "
                f"most {_FLOAT32_MAX:.4g}), got {self.learning_rate!r}"
            )
        if not (isinstance(self.momentum, (int, float)) and 0 <= self.momentum < 1):
            raise BadPlanError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if not _is_int(self.batch_size) or not 1 <= self.batch_size <= _INT32_MAX:
            raise BadPlanError(f"batch_size must be an int >= 1, got {self.batch_size!r}")
        if not _is_int(self.num_classes) or not 2 <= self.num_classes <= _INT32_MAX:
            raise BadPlanError(
                f"num_classes must be an int of at least 2, got {self.num_classes!r}"
            )
        if not _is_int(self.model_crc32) or not 0 <= self.model_crc32 < 2**32:
            raise BadPlanError(
                f"model_crc32 must be a CRC-32 (an int in [0, 2**32)), got {self.model_crc32!r}"
            )
        for name in ("num_tensors", "num_operators", "logits_tensor"):
            value = getattr(self, name)
            if not _is_int(value) or not 0 <= value <= _INT32_MAX:
                raise BadPlanError(f"{name} must be a non-negative int32, got {value!r}")
        if self.gradient_bits not in GRADIENT_BITS or isinstance(self.gradient_bits, bool):
            raise BadPlanError(f"gradient_bits must be 32 or 16, got {self.gradient_bits!r}")
        if not self.layers:
            raise BadPlanError("the plan trains no layers; give at least one")
        previous = -1
        for i, layer in enumerate(self.layers):
            if layer.operator_index <= previous:
                raise BadPlanError(
                    f"layer {i}: operator {layer.operator_index} does not come after "
                    f"operator {previous}; list layers by ascending operator "
                    "index, each once"
                )
            if not _is_int(layer.operator_index) or not 0 <= layer.operator_index <= _INT32_MAX:
                raise BadPlanError(
                    f"layer {i}: operator_index must be a non-negative int32, "
                    f"got {layer.operator_index!r}"
                )
            previous = layer.operator_index
            if layer.update not in UPDATE_KINDS:
                raise BadPlanError(
                    f"layer {i}: update must be 'weights', 'bias', 'sampled' or "
                    f"'lowrank', got {layer.update!r}"
                )
            if not (
                _is_float32(layer.lr_scale) and _is_float32(self.learning_rate * layer.lr_scale)
            ):
                raise BadPlanError(
                    f"layer {i}: lr_scale must be a positive finite number "
                    "whose product with learning_rate is a float32 number"
                )
            if layer.channels is None or len(layer.channels) == 0:
                raise BadPlanError(f"layer {i}: no channels selected (use for_model to select all)")
            channels = list(layer.channels)
            if not all(_is_int(c) for c in channels) or channels[-1] > _INT32_MAX:
                raise BadPlanError(f"layer {i}: channels must be int32 channel indices")
            if channels != sorted(set(channels)) or channels[0] < 0:
                raise BadPlanError(
                    f"layer {i}: channels must be non-negative, ascending and unique"
                )
            if layer.update != "lowrank" and (layer.rank, layer.refresh_steps) != (0, 0):
                raise BadPlanError(
                    f"layer {i}: rank and refresh_steps are for 'lowrank' layers; set both to 0"
                )
            if layer.update == "lowrank":
                _validate_lowrank(i, layer)
            if layer.update == "sampled":
                if not _is_int(layer.channel_cost) or not 1 <= layer.channel_cost <= _INT32_MAX:
                    raise BadPlanError(
                        f"layer {i}: channel_cost must be a positive int (bytes of "
                        f"the sample budget one channel takes), got "
                        f"{layer.channel_cost!r}"
                    )
            elif layer.channel_cost != 0:
                raise BadPlanError(f"layer {i}: channel_cost is for 'sampled' layers; set it to 0")
        self._validate_sampling()

    def _validate_sampling(self):
        """The header fields of sampled and low-rank layers (check_sampling,
        tt_training_plan.c)."""
        if not _is_int(self.seed) or not 0 <= self.seed < 2**32:
            raise BadPlanError(f"seed must be an int in [0, 2**32), got {self.seed!r}")
        if not _is_int(self.sample_budget) or not -(2**31) <= self.sample_budget <= _INT32_MAX:
            raise BadPlanError(
                f"sample_budget must be an int32 number of bytes, got {self.sample_budget!r}"
            )
        sampled = [layer for layer in self.layers if layer.update == "sampled"]
        if not sampled and self.sample_budget != 0:
            raise BadPlanError(
                f"sample_budget is {self.sample_budget} but no layer is 'sampled'; set it to 0"
            )
        if sampled:
            cheapest = min(layer.channel_cost for layer in sampled)
            if self.sample_budget < cheapest:
                raise BadPlanError(
                    f"sample_budget {self.sample_budget} bytes is less than the "
                    f"cheapest sampled channel (channel_cost {cheapest}): no "
                    "channel could ever train; raise the budget"
                )
            candidates = sum(len(layer.channels) for layer in sampled)
            if candidates > MAX_CANDIDATES:
                raise BadPlanError(
                    f"the sampled layers have {candidates} candidate channels in "
                    f"all; at most {MAX_CANDIDATES} are supported"
                )
        adam = (self.adam_beta1, self.adam_beta2, self.adam_epsilon)
        if not any(layer.update == "lowrank" for layer in self.layers):
            if adam != (0, 0, 0):
                raise BadPlanError(
                    "adam_beta1, adam_beta2 and adam_epsilon are for 'lowrank' "
                    "layers; with none, set them to 0"
                )
            return
        if not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in adam[:2]):
            raise BadPlanError("adam_beta1 and adam_beta2 must be in [0, 1)")
        if not _is_float32(adam[2]):
            raise BadPlanError("adam_epsilon must be a positive finite number")

    def check_model(self, model_bytes: bytes) -> None:
        """Checks the plan against the model it is for; BadPlanError if wrong."""
        self.validate()
        graph = tflite_graph.read_graph(model_bytes)
        if zlib.crc32(bytes(model_bytes)) != self.model_crc32:
            raise BadPlanError(
                "the plan was made for another model (CRC-32 differs); make it "
                "from this .tflite file"
            )
        if (len(graph.tensors), len(graph.operators)) != (self.num_tensors, self.num_operators):
            raise BadPlanError(
                f"the plan is for a model with {self.num_tensors} tensors and "
                f"{self.num_operators} operators, this one has "
                f"{len(graph.tensors)} and {len(graph.operators)}"
            )
        _check_logits(graph, self.logits_tensor, self.num_classes)
        for i, layer in enumerate(self.layers):
            _check_layer(graph, i, layer, self.logits_tensor)
            if layer.update == "lowrank":
                _check_lowrank(graph, i, layer)
            if layer.update == "sampled":
                layout = parameter_layout(graph, layer.operator_index)
                need = max(
                    1,
                    channel_state_bytes(
                        self, layout["weights_per_channel"], layout["bias"] is not None
                    ),
                )
                if layer.channel_cost < need:
                    raise BadPlanError(
                        f"layer {i}: channel_cost {layer.channel_cost} must be at "
                        f"least {need} bytes (the optimizer state of one of its "
                        "channels, and at least 1); raise it"
                    )

    # -- making plans ------------------------------------------------------------

    @classmethod
    def for_model(
        cls,
        model_bytes: bytes,
        layers: list[LayerPlan] | dict[int, object],
        *,
        learning_rate: float = 0.05,
        momentum: float = 0.0,
        batch_size: int = 1,
        qas: bool = True,
        residual: bool = True,
        logits_tensor: int | None = None,
        seed: int = 0,
        sample_budget: int = 0,
        adam_beta1: float | None = None,
        adam_beta2: float | None = None,
        adam_epsilon: float | None = None,
        gradient_bits: int = 32,
    ) -> TrainingPlan:
        """A checked plan for `model_bytes`.

        layers: LayerPlans, or a dict {operator index: channels} (channels
        None for all; update "weights"). A "sampled" layer whose
        channel_cost is None gets the minimum, its channels' optimizer
        state in bytes. logits_tensor defaults to the input of the final
        SOFTMAX, or the graph output if there is none. The Adam settings
        (None: DEFAULT_ADAM with "lowrank" layers, else 0) are for
        "lowrank" layers. gradient_bits: 32, or 16 to store activation
        gradients as bfloat16 (half the gradient memory).
        """
        model_bytes = bytes(model_bytes)
        graph = tflite_graph.read_graph(model_bytes)
        if isinstance(layers, dict):
            layers = [LayerPlan(op, "weights", channels) for op, channels in layers.items()]
        if logits_tensor is None:
            logits_tensor = find_logits(graph)
        lowrank = any(layer.update == "lowrank" for layer in layers)
        defaults = DEFAULT_ADAM if lowrank else (0, 0, 0)
        adam = [
            d if v is None else v for v, d in zip((adam_beta1, adam_beta2, adam_epsilon), defaults)
        ]
        plan = cls(
            zlib.crc32(model_bytes),
            len(graph.tensors),
            len(graph.operators),
            logits_tensor,
            graph.tensors[logits_tensor].num_elements,
            [],
            learning_rate=learning_rate,
            momentum=momentum,
            batch_size=batch_size,
            qas=qas,
            residual=residual,
            seed=seed,
            sample_budget=sample_budget,
            adam_beta1=adam[0],
            adam_beta2=adam[1],
            adam_epsilon=adam[2],
            gradient_bits=gradient_bits,
        )
        for layer in sorted(layers, key=lambda layer_plan: layer_plan.operator_index):
            channels, cost = layer.channels, layer.channel_cost
            if channels is None or (layer.update == "sampled" and cost is None):
                layout = parameter_layout(graph, layer.operator_index)
                if channels is None:
                    channels = range(layout["channels"])
                if layer.update == "sampled" and cost is None:
                    cost = max(
                        1,
                        channel_state_bytes(
                            plan, layout["weights_per_channel"], layout["bias"] is not None
                        ),
                    )
            plan.layers.append(
                dataclasses.replace(layer, channels=[int(c) for c in channels], channel_cost=cost)
            )
        plan.check_model(model_bytes)
        return plan

    @classmethod
    def sampled(
        cls,
        model_bytes: bytes,
        candidates: list[int],
        budget_bytes: int,
        seed: int = 0,
        *,
        classifier: bool = True,
        **settings,
    ) -> TrainingPlan:
        """A TraDy plan: the layers in `candidates` train channels drawn anew
        every epoch (channel_sampler.py) whose optimizer state shares
        `budget_bytes`; the classifier (the layer computing the logits)
        trains fully as a static "weights" layer unless classifier=False.

        candidates: operator indices (all their channels are candidates),
        a dict {operator index: candidate channels or None}, or LayerPlans
        with update "sampled" (to set channel_cost or lr_scale). Each
        channel costs its optimizer state in bytes unless a LayerPlan says
        otherwise. settings: as for for_model.
        """
        graph = tflite_graph.read_graph(model_bytes)
        if isinstance(candidates, dict):
            layers = [
                LayerPlan(op, "sampled", channels, channel_cost=None)
                for op, channels in candidates.items()
            ]
        else:
            layers = [
                c
                if isinstance(c, LayerPlan)
                else LayerPlan(int(c), "sampled", None, channel_cost=None)
                for c in candidates
            ]
        if classifier:
            producer = graph.producer(
                find_logits(graph)
                if settings.get("logits_tensor") is None
                else settings["logits_tensor"]
            )
            if any(layer.operator_index == producer for layer in layers):
                raise BadPlanError(
                    f"operator {producer} computes the logits and trains fully "
                    "(classifier=True); leave it out of the candidates or pass "
                    "classifier=False"
                )
            if (
                producer is None
                or graph.operators[producer].builtin_code not in TRAINABLE_OPERATORS
            ):
                raise BadPlanError(
                    "the logits are not computed by a layer with parameters; pass classifier=False"
                )
            layers.append(LayerPlan(producer, "weights"))
        return cls.for_model(model_bytes, layers, seed=seed, sample_budget=budget_bytes, **settings)

    @classmethod
    def lowrank(
        cls,
        model_bytes: bytes,
        layers: dict[int, int],
        refresh_steps: int = 10,
        *,
        static=(),
        **settings,
    ) -> TrainingPlan:
        """Low-rank layers (runtime/optimizer/tt_lowrank.h): the weights of each layer
        in `layers`, a dict {operator index: rank}, train by Adam on the
        rank-r projection of their gradient (projector refreshed every
        refresh_steps updates), their biases by SGD; every output channel
        trains. static: more layers to train as usual, LayerPlans or a dict
        {operator index: channels}. settings: as for for_model (also
        adam_beta1, adam_beta2, adam_epsilon; the seed picks the initial
        projectors).

        The learning rate is in quantization steps per unit of the Adam step
        (QAS as for SGD), so Adam wants a far smaller rate than SGD, e.g.
        0.01 to 0.1.
        """
        if isinstance(static, dict):
            static = [LayerPlan(op, "weights", channels) for op, channels in static.items()]
        chosen = [
            LayerPlan(int(op), "lowrank", None, rank=rank, refresh_steps=refresh_steps)
            for op, rank in dict(layers).items()
        ]
        clash = {layer.operator_index for layer in chosen} & {
            layer.operator_index for layer in static
        }
        if clash:
            raise BadPlanError(f"operator {min(clash)} is both low-rank and static; list it once")
        return cls.for_model(model_bytes, chosen + list(static), **settings)

    @classmethod
    def classifier_only(
        cls, model_bytes: bytes, update: str = "weights", **settings
    ) -> TrainingPlan:
        """Trains only the operator that computes the logits (every channel)."""
        graph = tflite_graph.read_graph(model_bytes)
        producer = graph.producer(find_logits(graph))
        if producer is None or graph.operators[producer].builtin_code not in TRAINABLE_OPERATORS:
            raise BadPlanError(
                "the logits are not computed by a layer with parameters; name the "
                "layers to train with for_model()"
            )
        return cls.for_model(model_bytes, [LayerPlan(producer, update)], **settings)

    @classmethod
    def bias_only(cls, model_bytes: bytes, first_operator: int = 0, **settings) -> TrainingPlan:
        """Trains the biases of every layer with a bias from first_operator on."""
        graph = tflite_graph.read_graph(model_bytes)
        layers = [
            LayerPlan(op.index, "bias")
            for op in graph.operators
            if op.index >= first_operator
            and op.builtin_code in TRAINABLE_OPERATORS
            and len(op.inputs) > 2
            and op.inputs[2] >= 0
        ]
        return cls.for_model(model_bytes, layers, **settings)


def gradient_bits_of(plan_bytes: bytes) -> int:
    """The activation gradient width plan bytes ask for (32 when they are
    too short to say), read without checking the rest."""
    if len(plan_bytes) < HEADER_SIZE:
        return 32
    flags = struct.unpack_from("<i", plan_bytes, _FLAGS_OFFSET)[0]
    return 16 if flags & FLAG_GRADIENTS_16 else 32


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_float32(value):
    """A positive number the plan's float32 fields hold without overflow."""
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 < value <= _FLOAT32_MAX
    )


def channel_state_bytes(plan, weights_per_channel, has_bias):
    """tt_plan_channel_state_bytes (tt_training_plan.c): optimizer state bytes of one
    output channel (weights and bias) under the plan's settings: a float
    residual unless residual=False, a velocity with momentum, an
    accumulator with batches."""
    arrays = int(plan.residual) + int(plan.momentum > 0) + int(plan.batch_size > 1)
    return 4 * arrays * (weights_per_channel + int(has_bias))


def _float32(value):
    """value rounded to float32 when it is a real number; else unchanged
    (validate() reports it)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return struct.unpack("<f", struct.pack("<f", value))[0]
        except OverflowError:
            return float(value)
    return value


def trainable_operators(model_bytes: bytes) -> list[tuple[int, str, int, bool]]:
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
    layer with parameters; BadPlanError for any other operator."""
    if not 0 <= operator_index < len(graph.operators):
        raise BadPlanError(
            f"operator {operator_index} does not exist (the model has "
            f"{len(graph.operators)} operators)"
        )
    op = graph.operators[operator_index]
    if op.builtin_code not in TRAINABLE_OPERATORS:
        raise BadPlanError(
            f"operator {operator_index} ({op.name}) has no trainable parameters; "
            "only CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED train"
        )
    weights = graph.tensors[op.inputs[1]]
    if not weights.is_constant or weights.type != tflite_graph.INT8:
        raise BadPlanError(f"operator {operator_index} ({op.name}) has no constant int8 weights")
    axis = -1 if op.builtin_code == tflite_graph.DEPTHWISE_CONV_2D else 0
    bias = op.inputs[2] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
    channels = weights.shape[axis]
    return {
        "weights": weights.index,
        "bias": bias,
        "channels": channels,
        "weights_per_channel": weights.num_elements // channels if channels > 0 else 0,
    }


def _check_logits(graph, tensor, num_classes):
    if not 0 <= tensor < len(graph.tensors):
        raise BadPlanError(f"logits tensor {tensor} does not exist")
    t = graph.tensors[tensor]
    if t.type != tflite_graph.INT8 or graph.producer(tensor) is None:
        raise BadPlanError(
            f"logits tensor {tensor} must be an int8 tensor an operator computes "
            "(the input of the final SOFTMAX)"
        )
    if t.num_elements != num_classes:
        raise BadPlanError(
            f"logits tensor {tensor} has {t.num_elements} values, but the plan "
            f"says {num_classes} classes"
        )


def feeds(graph, operator_index, tensor):
    """Whether operator_index's output reaches `tensor`."""
    reached = set(graph.operators[operator_index].outputs)
    for op in graph.operators[operator_index + 1 :]:
        if reached.intersection(op.inputs):
            reached.update(op.outputs)
    return tensor in reached


def _validate_lowrank(i, layer):
    """A "lowrank" layer's own fields (check_lowrank, tt_training_plan.c)."""
    if not _is_int(layer.rank) or not 1 <= layer.rank <= _INT32_MAX:
        raise BadPlanError(
            f"layer {i}: rank must be an int >= 1 (the rank of the projected "
            f"gradient), got {layer.rank!r}"
        )
    if not _is_int(layer.refresh_steps) or not 1 <= layer.refresh_steps <= _INT32_MAX:
        raise BadPlanError(
            f"layer {i}: refresh_steps must be an int >= 1 (updates between "
            f"projector refreshes), got {layer.refresh_steps!r}"
        )


def _check_lowrank(graph, i, layer):
    """check_lowrank (tt_training_plan.c): a FULLY_CONNECTED or pointwise CONV_2D
    with one group, all output channels, rank <= min(C, D)."""
    op = graph.operators[layer.operator_index]
    layout = parameter_layout(graph, op.index)
    if op.builtin_code == tflite_graph.CONV_2D:
        shape = graph.tensors[op.inputs[1]].shape
        if len(shape) != 4 or tuple(shape[1:3]) != (1, 1):
            raise BadPlanError(
                f"layer {i}: operator {op.index} ({op.name}) has a "
                f"{'x'.join(map(str, shape[1:3]))} filter; 'lowrank' trains only "
                "FULLY_CONNECTED and pointwise (1x1) CONV_2D layers, so use "
                "update='weights'"
            )
        if graph.tensors[op.inputs[0]].shape[-1] != shape[3]:
            raise BadPlanError(
                f"layer {i}: operator {op.index} ({op.name}) is a grouped "
                "convolution; 'lowrank' needs one group, so use update='weights'"
            )
    elif op.builtin_code != tflite_graph.FULLY_CONNECTED:
        raise BadPlanError(
            f"layer {i}: operator {op.index} ({op.name}) is not FULLY_CONNECTED or a "
            "pointwise CONV_2D; 'lowrank' trains only those, so use "
            "update='weights'"
        )
    if len(layer.channels) != layout["channels"]:
        raise BadPlanError(
            f"layer {i}: a 'lowrank' layer trains all {layout['channels']} output "
            f"channels of operator {op.index} ({op.name}), but "
            f"{len(layer.channels)} are listed; list them all (channels=None)"
        )
    most = min(layout["channels"], layout["weights_per_channel"])
    if layer.rank > most:
        raise BadPlanError(
            f"layer {i}: rank {layer.rank} must be between 1 and {most}, the "
            f"smaller of operator {op.index}'s {layout['channels']} output "
            f"channels and {layout['weights_per_channel']} weights per channel"
        )


def lowrank_state_bytes(rows, cols, rank):
    """tt_lowrank_state_bytes (tt_lowrank.h): a low-rank layer's state block
    (header, P and Y of C x r floats, R, R_prev, M and V of r x D floats)."""
    return 32 + 4 * (2 * rows * rank + 4 * rank * cols)


def _check_layer(graph, i, layer, logits):
    layout = parameter_layout(graph, layer.operator_index)
    op = graph.operators[layer.operator_index]
    if layer.update == "bias" and layout["bias"] is None:
        raise BadPlanError(
            f"layer {i}: operator {op.index} ({op.name}) has no bias, so a "
            "bias-only update cannot train it; use update='weights'"
        )
    bad = [c for c in layer.channels if not 0 <= c < layout["channels"]]
    if bad:
        raise BadPlanError(
            f"layer {i}: channel {bad[0]} is out of range; operator {op.index} "
            f"({op.name}) has output channels 0 to {layout['channels'] - 1}"
        )
    if not feeds(graph, op.index, logits):
        raise BadPlanError(
            f"layer {i}: operator {op.index} ({op.name}) does not feed the logits "
            f"(tensor {logits}), so training it cannot change the loss"
        )
