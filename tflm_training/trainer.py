"""`Trainer`: on-device training of an int8 .tflite model in the C runtime
(runtime/tt_trainer.h), following a TrainingPlan."""

from __future__ import annotations

import ctypes
import numbers

import numpy as np
import numpy.typing as npt

from tflm_training import _checks, _native, saturation, tflite_graph
from tflm_training.errors import ArenaTooSmallError, InputMismatchError, InvalidArgumentError
from tflm_training.interpreter import Interpreter, _aligned_bytes, measure_arena, raise_for_status
from tflm_training.plan import TrainingPlan, gradient_bits_of, parameter_layout


class Trainer:
    """Trains `model_bytes` as `plan` (a TrainingPlan or its bytes) says,
    in one static arena.

    `arena_size=None` sizes the arena to exactly what training needs;
    `memory()` says where the bytes go. Samples are quantized exactly like
    the model's input 0 (same dtype), one at a time or as a batch along a
    leading axis.

    Every step is all or nothing (`atomic_steps`, runtime
    tt_trainer_set_undo): a step that diverges raises DivergedError and
    leaves every weight, bias and optimizer value as it was. `losses`
    holds every step's loss (NaN for a diverged one). `export()` refuses a
    model whose training pinned more than `max_saturation` of a layer's
    trained weights or biases at their integer limits (saturation.py).
    """

    def __init__(
        self,
        model_bytes,
        plan,
        arena_size=None,
        atomic_steps=True,
        max_saturation=saturation.DEFAULT_LIMIT,
    ):
        if not isinstance(model_bytes, (bytes, bytearray, memoryview)):
            raise InvalidArgumentError(
                f"model_bytes must be bytes, got {type(model_bytes).__name__}"
            )
        self._model_bytes = bytes(model_bytes)
        self._model = _aligned_bytes(self._model_bytes, len(self._model_bytes))
        if isinstance(plan, TrainingPlan):
            plan = plan.to_bytes()
        if not isinstance(plan, (bytes, bytearray, memoryview)):
            raise InvalidArgumentError(
                f"plan must be a TrainingPlan or bytes, got {type(plan).__name__}"
            )
        self._plan_bytes = bytes(plan)
        # The runtime built for the plan's gradient width; a damaged plan
        # goes to the default one, whose parser says what is wrong.
        self._lib = _native.library(gradient_bits_of(self._plan_bytes))
        if (
            not isinstance(max_saturation, numbers.Real)
            or isinstance(max_saturation, bool)
            or not 0 <= max_saturation <= 1
        ):
            raise InvalidArgumentError(
                f"max_saturation must be a share in [0, 1], got {max_saturation!r}"
            )
        self.max_saturation = float(max_saturation)
        arena_size = _checks.arena_size(arena_size)
        if arena_size is None:
            arena_size = self._measure_arena()
        try:
            self._init(arena_size)
        except ArenaTooSmallError as error:
            need = self._measure_arena()
            raise ArenaTooSmallError(
                f"{error}; this model and plan need exactly {need} bytes"
            ) from None
        self.plan = TrainingPlan.from_bytes(self._plan_bytes)
        self._graph = tflite_graph.read_graph(self._model_bytes)
        self._parameters = self._parameter_tensors()
        address = self._lib.tt_trainer_interpreter(self._state)
        self.interpreter = Interpreter._attach(
            address, self._model, self._model_bytes, self._parameters, self, self._lib
        )
        details = self.interpreter.get_input_details(0)
        self._input_shape = tuple(int(d) for d in details["shape"])
        self._input_dtype = np.dtype(details["dtype"])
        self._undo = None
        if atomic_steps:
            self._undo = np.zeros(
                max(1, self._lib.tt_trainer_undo_bytes(self._state)), dtype=np.uint8
            )
            self._check(
                self._lib.tt_trainer_set_undo(self._state, self._undo.ctypes.data, len(self._undo))
            )
        self.losses = []

    # -- setup ---------------------------------------------------------------

    def _init(self, arena_size):
        self._arena = _aligned_bytes(None, arena_size)
        self._state = ctypes.create_string_buffer(self._lib.tt_sizeof_trainer())
        plan = np.frombuffer(self._plan_bytes, dtype=np.uint8)
        status = self._lib.tt_trainer_init(
            self._state,
            self._model.ctypes.data,
            len(self._model),
            plan.ctypes.data,
            len(self._plan_bytes),
            self._arena.ctypes.data,
            arena_size,
        )
        self._check(status)

    def _measure_arena(self):
        return measure_arena(self._init, self.arena_used_bytes, "training")

    def _check(self, status):
        raise_for_status(status, lambda: self._lib.tt_trainer_error(self._state))

    def _parameter_tensors(self):
        """Tensors the trainer copies into the arena and updates."""
        tensors = []
        for layer in self.plan.layers:
            layout = parameter_layout(self._graph, layer.operator_index)
            if layer.update in ("weights", "sampled", "lowrank"):
                tensors.append(layout["weights"])
            if layout["bias"] is not None:
                tensors.append(layout["bias"])
        return sorted(set(tensors))

    # -- training ------------------------------------------------------------

    def train_step(self, x: npt.ArrayLike, y: npt.ArrayLike) -> float:
        """One training step per sample, in order; returns the mean loss.
        A sample whose step diverges raises DivergedError: that step
        changed nothing, the samples before it keep their steps."""
        samples, labels = self._samples(x, y)
        loss = ctypes.c_float()
        total = 0.0
        self.interpreter._activations_valid = False
        for sample, label in zip(samples, labels):
            status = self._lib.tt_trainer_step(
                self._state, sample.ctypes.data, sample.nbytes, int(label), ctypes.byref(loss)
            )
            self.losses.append(loss.value if status == 0 else float("nan"))
            self._check(status)
            total += loss.value
        return total / len(samples)

    def begin_epoch(self, epoch: int) -> None:
        """Starts epoch `epoch` (an int in [0, 2**32)): every "sampled"
        layer draws the channels it trains until the next call and restarts
        their optimizer state (runtime/training/tt_channel_sampler.h; the same draw
        as channel_sampler.sample_channels(plan, epoch)). The constructor
        draws epoch 0. Call it at the start of every epoch, as the firmware
        does; plans without sampled layers are unaffected. With sampled
        layers an epoch starts on a batch boundary (BadStateError
        otherwise)."""
        if (
            not isinstance(epoch, numbers.Integral)
            or isinstance(epoch, bool)
            or not 0 <= epoch < 2**32
        ):
            raise InvalidArgumentError(f"epoch must be an int in [0, 2**32), got {epoch!r}")
        self._check(self._lib.tt_trainer_begin_epoch(self._state, int(epoch)))

    def selected_channels(self) -> dict[int, list[int]]:
        """{operator index: [output channels it trains now]}, read from the
        trainer's arena: the plan's channels for static layers, this
        epoch's draw for sampled ones."""
        result = {}
        count = ctypes.c_int32()
        for i, layer in enumerate(self.plan.layers):
            pointer = self._lib.tt_trainer_layer_channels(self._state, i, ctypes.byref(count))
            result[layer.operator_index] = [int(pointer[k]) for k in range(count.value)]
        return result

    def gradient_norms(
        self, x: npt.ArrayLike, y: npt.ArrayLike, bias: bool = False
    ) -> dict[int, np.ndarray]:
        """The gradient probe: {operator index: squared L2 norms} of the
        real-valued gradient dL/dW of each channel the layer trains now
        (selected_channels() order), summed over the samples; with
        bias=True, of dL/db instead. Runs forward and backward per sample
        and changes nothing: weights, biases, optimizer state and batch
        progress stay as they were. Bias-only layers have no weight
        gradient (zeros)."""
        samples, labels = self._samples(x, y)
        slots = int(self._lib.tt_trainer_selected_slots(self._state))
        weights = np.zeros(max(slots, 1), dtype=np.float32)
        biases = np.zeros(max(slots, 1), dtype=np.float32)
        total = np.zeros(slots, dtype=np.float64)
        self.interpreter._activations_valid = False
        for sample, label in zip(samples, labels):
            weights[:] = 0
            biases[:] = 0
            self._check(
                self._lib.tt_trainer_gradient_norms(
                    self._state,
                    sample.ctypes.data,
                    sample.nbytes,
                    int(label),
                    weights.ctypes.data,
                    biases.ctypes.data,
                    None,
                )
            )
            total += (biases if bias else weights)[:slots]
        result, start = {}, 0
        for op, channels in self.selected_channels().items():
            result[op] = total[start : start + len(channels)]
            start += len(channels)
        return result

    def predict(self, x: npt.ArrayLike) -> int | np.ndarray:
        """The class with the largest logit: an int for one sample, an array
        for a batch."""
        samples, single = self._as_samples(x)
        classes = np.empty(len(samples), dtype=np.int64)
        predicted = ctypes.c_int32()
        for i, sample in enumerate(samples):
            self._check(
                self._lib.tt_trainer_predict(
                    self._state, sample.ctypes.data, sample.nbytes, ctypes.byref(predicted)
                )
            )
            classes[i] = predicted.value
        self.interpreter._activations_valid = True
        return int(classes[0]) if single else classes

    def evaluate(self, x: npt.ArrayLike, y: npt.ArrayLike) -> float:
        """Fraction of samples whose predicted class is the label."""
        samples, labels = self._samples(x, y)
        return float(np.mean(self.predict(samples) == labels))

    def logits(self, x: npt.ArrayLike) -> np.ndarray:
        """The logits the loss reads (the output of the layer computing
        them, before SOFTMAX), dequantized: float64, (samples, classes)."""
        samples, _ = self._as_samples(x)
        index = self.plan.logits_tensor
        tensor = self._graph.tensors[index]
        scale = float(tensor.scales[0]) if len(tensor.scales) else 1.0
        zero_point = int(tensor.zero_points[0]) if len(tensor.zero_points) else 0
        rows = np.empty((len(samples), tensor.num_elements), dtype=np.float64)
        for i, sample in enumerate(samples):
            self.predict(sample)
            rows[i] = self.get_tensor(index).reshape(-1)
        return (rows - zero_point) * scale

    def evaluate_loss(self, x: npt.ArrayLike, y: npt.ArrayLike) -> float:
        """Mean softmax cross-entropy (natural log) of the logits against
        the labels."""
        samples, labels = self._samples(x, y)
        logits = self.logits(samples)
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return float(-np.mean(log_probabilities[np.arange(len(labels)), labels]))

    # -- learned state (runtime/training/tt_trainer_state.h) -------------------------

    def state_bytes(self) -> int:
        """Bytes of the learned state: counters, trained parameters,
        optimizer state."""
        return int(self._lib.tt_trainer_state_bytes(self._state))

    def state(self) -> bytes:
        """The learned state, as a device saves it to flash."""
        out = (ctypes.c_uint8 * self.state_bytes())()
        self._check(self._lib.tt_trainer_state_write(self._state, out, len(out)))
        return bytes(out)

    def load_state(self, state: bytes) -> None:
        """Continues from a learned state (of this model and plan)."""
        data = np.frombuffer(bytes(state), dtype=np.uint8)
        self._check(self._lib.tt_trainer_state_load(self._state, data.ctypes.data, len(data)))
        self.interpreter._activations_valid = False

    def trained_tensors(self) -> list[int]:
        """The trained tensors in the runtime's order (plan order, weights
        before bias): the order a device's PULL answer concatenates them."""
        tensors = []
        while True:
            index = self._lib.tt_trainer_trained_tensor(self._state, len(tensors))
            if index < 0:
                return tensors
            tensors.append(int(index))

    def trained_bytes(self) -> bytes:
        """Every trained tensor's bytes, concatenated as PULL gives them."""
        return b"".join(self.get_tensor(t).tobytes() for t in self.trained_tensors())

    def split_trained_bytes(self, data: bytes) -> dict[int, bytes]:
        """{tensor index: bytes} of a PULL answer (trained_bytes' layout)."""
        parts, position = {}, 0
        for index in self.trained_tensors():
            size = self.get_tensor(index).nbytes
            parts[index] = bytes(data[position : position + size])
            position += size
        if position != len(data):
            raise InvalidArgumentError(
                f"{len(data)} parameter bytes; this model and plan train {position}"
            )
        return parts

    # -- inspection ----------------------------------------------------------

    def memory(self) -> dict[str, int]:
        """The arena breakdown (tt_training_memory) in bytes."""
        record = _native.TrainingMemory()
        self._lib.tt_trainer_memory(self._state, ctypes.byref(record))
        return {name: int(getattr(record, name)) for name, _ in record._fields_}

    def arena_used_bytes(self) -> int:
        return int(self._lib.tt_trainer_arena_used(self._state))

    @property
    def parameter_tensors(self) -> list[int]:
        """Indices of the weight and bias tensors training updates."""
        return list(self._parameters)

    def get_tensor(self, tensor_index: int) -> np.ndarray:
        """Any tensor; trained weights and biases hold their current values."""
        return self.interpreter.get_tensor(tensor_index)

    def saturation(self, parameters: dict[int, bytes] | None = None) -> list:
        """[saturation.LayerSaturation] of the trained layers now (or of
        `parameters`, as for export)."""
        return saturation.measure(self._model_bytes, self._exported(parameters), self.plan)

    def export(self, parameters: dict[int, bytes] | None = None, force: bool = False) -> bytes:
        """The original .tflite file with the trained weight and bias bytes
        written in place: a standard model any TFLite runtime runs.

        parameters: {tensor index: bytes} to write instead of this
        trainer's own values (e.g. what a device's PULL gave). A model
        whose training saturated a layer past max_saturation raises
        SaturationError unless force=True.
        """
        model = self._exported(parameters)
        if not force:
            saturation.check(
                saturation.measure(self._model_bytes, model, self.plan), self.max_saturation
            )
        return model

    def _exported(self, parameters):
        out = bytearray(self._model_bytes)
        for index in self._parameters:
            tensor = self._graph.tensors[index]
            sharing = [
                t.index
                for t in self._graph.tensors
                if t.buffer == tensor.buffer and t.index != index
            ]
            if sharing:
                raise InvalidArgumentError(
                    f"tensor {index} shares its buffer with tensor {sharing[0]}; exporting "
                    "it in place would change both"
                )
            values = self.get_tensor(index).tobytes()
            if parameters is not None:
                values = bytes(parameters[index])
            if len(values) != tensor.data_size:
                raise InvalidArgumentError(
                    f"tensor {index} has {len(values)} bytes but its buffer {tensor.data_size}"
                )
            out[tensor.data_pos : tensor.data_pos + tensor.data_size] = values
        return bytes(out)

    # -- samples ---------------------------------------------------------------

    def _as_samples(self, x):
        """(contiguous samples shaped like input 0, whether x was one)."""
        array = np.asarray(x)
        shape = self._input_shape
        if array.dtype != self._input_dtype:
            raise InputMismatchError(
                f"samples must have dtype {self._input_dtype.name}, got {array.dtype.name}; "
                "quantize them with the scale and zero point of input 0"
            )
        if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
            raise InputMismatchError("samples hold NaN or infinity; give finite values")
        if array.shape == shape or (shape[:1] == (1,) and array.shape == shape[1:]):
            return [np.ascontiguousarray(array.reshape(shape))], True
        if array.ndim >= 1 and (
            array.shape[1:] == shape or (shape[:1] == (1,) and array.shape[1:] == shape[1:])
        ):
            if len(array) == 0:
                raise InvalidArgumentError("the batch holds no samples; give at least one")
            return [np.ascontiguousarray(s.reshape(shape)) for s in array], False
        raise InputMismatchError(
            f"samples must have shape {shape} (one) or (N, {', '.join(map(str, shape[1:]))}) "
            f"(a batch), got {array.shape}"
        )

    def _samples(self, x, y):
        samples, _ = self._as_samples(x)
        labels = np.atleast_1d(np.asarray(y))
        if not np.issubdtype(labels.dtype, np.integer) or labels.ndim != 1:
            raise InvalidArgumentError("labels must be integers, one per sample")
        if len(labels) != len(samples):
            raise InvalidArgumentError(f"{len(samples)} samples but {len(labels)} labels")
        classes = self.plan.num_classes
        outside = labels[(labels < 0) | (labels >= classes)]
        if len(outside):
            raise InvalidArgumentError(
                f"label {outside[0]} is outside the model's classes 0 to {classes - 1}"
            )
        return samples, labels.astype(np.int64)
