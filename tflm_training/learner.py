"""The learner's wire protocol (runtime/tt_learner.h, runtime/learner/tt_frame.h)
and a client for it, plus `HostLearner`: the same C learner running in
this process over a RAM flash (runtime/learner/tt_flash_ram.h), so the protocol,
the state store and power cuts can be exercised without a device.

A link is anything with `write(data)` and `read(size, timeout)` (which
returns fewer bytes when the timeout passes): a serial port, a socket, or
`HostLearner`.
"""

import collections
import ctypes
import dataclasses
import functools
import struct
import time
import zlib

import numpy as np

from tflm_training import _native
from tflm_training.errors import TflmTrainingError
from tflm_training.interpreter import _aligned_bytes
from tflm_training.plan import TrainingPlan, gradient_bits_of

VERSION = 1
MAGIC = b"TL"
HEADER = struct.Struct("<2sBBHHI")  # magic, version, command, sequence, 0, payload bytes
ERROR = 0xFF
BAD_FRAME = 1  # tt_wire_error: the device received a broken frame
COMMANDS = {
    "INFO": 0x01,
    "TRAIN": 0x02,
    "PREDICT": 0x03,
    "EVALUATE": 0x04,
    "BEGIN_EPOCH": 0x05,
    "SAVE": 0x06,
    "PULL": 0x07,
    "FACTORY_RESET": 0x08,
    "HOLDOUT": 0x09,
    "PULL_STATE": 0x0A,
}
WIRE_ERRORS = {
    1: "bad frame",
    2: "unknown command",
    3: "bad request",
    4: "bad sample",
    5: "bad label",
    6: "nothing trained",
    7: "flash",
    8: "runtime",
    9: "held-out buffer full",
    10: "diverged",
    11: "no flash",
}
SLOT_STATUS = {
    0: "valid",
    1: "empty",
    2: "corrupt",
    3: "another model or plan",
    4: "another format",
}
UPDATE_KINDS = {0: "bias", 1: "weights", 2: "sampled", 3: "lowrank"}
# TFLite type codes of sample data (the TensorType enum); a dtype without
# one is sent as UNKNOWN_TYPE, which the device refuses.
UNKNOWN_TYPE = 0xFF
TYPE_CODES = {
    np.dtype(np.float32): 0,
    np.dtype(np.uint8): 3,
    np.dtype(np.int16): 7,
    np.dtype(np.int8): 9,
}
STATE_COUNTERS_BYTES = 16  # TT_STATE_COUNTERS_BYTES
GUARD_ACCURACY = 1
GUARD_LOSS = 2
SAVE_REASONS = {
    0: "",
    1: "held-out accuracy dropped",
    2: "held-out loss diverged",
    4: "the state held NaN or infinity",
}


class DeviceError(TflmTrainingError):
    """The device answered with an ERROR frame: `code` (tt_wire_error) and
    its message."""

    def __init__(self, code, message):
        super().__init__(f"device: {message} ({WIRE_ERRORS.get(code, 'error')} {code})")
        self.code = code
        self.device_message = message


class LinkError(TflmTrainingError):
    """No (intact) answer came over the link."""


def encode(command, sequence, payload=b""):
    frame = HEADER.pack(MAGIC, VERSION, command, sequence & 0xFFFF, 0, len(payload)) + payload
    return frame + struct.pack("<I", zlib.crc32(frame))


def sample_payload(x, label=-1):
    x = np.ascontiguousarray(x)
    code = TYPE_CODES.get(x.dtype, UNKNOWN_TYPE)
    return struct.pack("<B3xi", code, int(label)) + x.tobytes()


@dataclasses.dataclass
class Info:
    protocol_version: int
    state_format: int
    firmware_crc32: int
    model_crc32: int
    plan_crc32: int
    arena_bytes: int
    arena_used: int
    input_bytes: int
    input_type: int
    restored: bool
    num_classes: int
    max_payload: int
    state_bytes: int
    slot_bytes: int
    state_sequence: int
    state_crc32: int
    steps: int
    epoch: int
    samples_in_batch: int
    steps_since_save: int
    heldout_count: int
    heldout_capacity: int
    slot_status: tuple
    trained_bytes: int
    restore_count: int
    link_rx_buffer: int  # > a frame: the next request may be sent early
    undo_bytes: int  # > 0: every step is all or nothing; 0: a diverged one restores the save
    layers: list  # (operator, update kind, channels trained now)

    FORMAT = struct.Struct("<HHIIIIIIBBHIIIIIIIIIHHBBHIqII")
    LAYERS_FIELD = 24  # FORMAT's u16 count of plan layers

    @classmethod
    def decode(cls, payload):
        if (
            len(payload) < cls.FORMAT.size
            or len(payload)
            != cls.FORMAT.size + 8 * cls.FORMAT.unpack_from(payload)[cls.LAYERS_FIELD]
        ):
            raise LinkError(
                f"the device's INFO answer has {len(payload)} bytes; this host "
                f"reads {cls.FORMAT.size} + 8 per plan layer: the device runs "
                "learner firmware of another version; build and flash it again "
                "(tools/deploy.py --noemulate)"
            )
        fixed = cls.FORMAT.unpack_from(payload)
        (
            protocol,
            fmt,
            fw,
            model,
            plan,
            arena,
            used,
            input_bytes,
            input_type,
            restored,
            classes,
            max_payload,
            state_bytes,
            slot_bytes,
            sequence,
            state_crc,
            steps,
            epoch,
            in_batch,
            since,
            held,
            capacity,
            slot0,
            slot1,
            num_layers,
            trained,
            restore,
            rx_buffer,
            undo,
        ) = fixed
        layers = []
        for i in range(num_layers):
            op, kind, _, channels = struct.unpack_from("<iBBH", payload, cls.FORMAT.size + 8 * i)
            layers.append((op, UPDATE_KINDS.get(kind, kind), channels))
        return cls(
            protocol,
            fmt,
            fw,
            model,
            plan,
            arena,
            used,
            input_bytes,
            input_type,
            bool(restored),
            classes,
            max_payload,
            state_bytes,
            slot_bytes,
            sequence,
            state_crc,
            steps,
            epoch,
            in_batch,
            since,
            held,
            capacity,
            (SLOT_STATUS.get(slot0, slot0), SLOT_STATUS.get(slot1, slot1)),
            trained,
            restore,
            rx_buffer,
            undo,
            layers,
        )


@dataclasses.dataclass
class SaveResult:
    saved: bool  # False: rolled back to the saved state
    reason: str
    sequence: int
    pages_erased: int
    bytes_written: int
    heldout_count: int
    correct: int
    saved_correct: int
    loss: float
    saved_loss: float
    count: int  # board counter units the save took; -1 unknown

    @classmethod
    def decode(cls, payload):
        (
            outcome,
            reason,
            _,
            sequence,
            pages,
            written,
            held,
            correct,
            saved_correct,
            loss,
            saved_loss,
            count,
        ) = struct.unpack("<BBHIIIIIIffq", payload)
        return cls(
            outcome == 0,
            SAVE_REASONS.get(reason, str(reason)),
            sequence,
            pages,
            written,
            held,
            correct,
            saved_correct,
            loss,
            saved_loss,
            count,
        )


@dataclasses.dataclass
class StepResult:
    loss: np.float32
    steps: int
    count: int  # board counter units of the step; -1 unknown


def _step(answer):
    loss, steps, count = struct.unpack("<fIq", answer)
    return np.float32(loss), steps, count


class LearnerClient:
    """Requests to a learner over `link`, one answer per request."""

    def __init__(self, link, timeout=30.0):
        self.link = link
        self.timeout = timeout
        self._sequence = 0
        self._info = None

    # -- frames --------------------------------------------------------------

    def request(self, command, payload=b"", timeout=None, retries=2):
        """Sends one request and returns the answer's payload; raises
        DeviceError for an ERROR answer. A frame the device received
        broken was not acted on, so it is sent again (`retries` times)."""
        for attempt in range(retries + 1):
            self._sequence = (self._sequence + 1) & 0xFFFF
            self.link.write(encode(command, self._sequence, payload))
            try:
                return self.receive(command, self._sequence, timeout)
            except DeviceError as error:
                if error.code != BAD_FRAME or attempt == retries:
                    raise

    def receive(self, command, sequence, timeout=None):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            answer_command, answer_sequence, payload = self._read_frame(deadline)
            if answer_sequence != sequence:
                continue  # an answer to an earlier request that was given up on
            if answer_command == ERROR:
                (code,) = struct.unpack_from("<H", payload)
                raise DeviceError(code, payload[4:].decode("utf-8", "replace"))
            if answer_command != command | 0x80:
                raise LinkError(f"answer {answer_command:#04x} to request {command:#04x}")
            return payload

    def _read(self, size, deadline):
        data = b""
        while len(data) < size:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LinkError(
                    f"no answer from the device within {self.timeout:g} s "
                    f"({len(data)} of {size} bytes came)"
                )
            try:
                data += self.link.read(size - len(data), min(left, 1.0))
            except OSError as error:  # the device's end closed (ConnectionError too)
                raise LinkError(f"the link to the device closed: {error}") from None
        return data

    def _read_frame(self, deadline):
        window = b""
        while window != MAGIC:  # skip anything before a frame
            window = (window + self._read(1, deadline))[-2:]
        rest = self._read(HEADER.size - 2, deadline)
        _, version, command, sequence, _, length = HEADER.unpack(MAGIC + rest)
        if version != VERSION or length > (1 << 24):
            raise LinkError(f"a malformed answer (version {version}, {length} bytes)")
        body = self._read(length + 4, deadline)
        frame = MAGIC + rest + body[:-4]
        if zlib.crc32(frame) != struct.unpack("<I", body[-4:])[0]:
            raise LinkError("an answer's CRC-32 does not match: the link corrupts bytes")
        return command, sequence, body[:-4]

    # -- commands --------------------------------------------------------------

    def info(self):
        self._info = Info.decode(self.request(COMMANDS["INFO"]))
        return self._info

    def train(self, x, label):
        return StepResult(*_step(self.request(COMMANDS["TRAIN"], sample_payload(x, label))))

    def train_many(self, xs, ys):
        """TRAIN for each sample in order; yields a StepResult or the
        DeviceError each got. When the device's link buffers a whole frame
        while it computes (Info.link_rx_buffer), the next sample is sent
        before this one's answer, so the link and the training overlap."""
        info = self._info or self.info()
        frame_bytes = len(encode(0, 0, sample_payload(xs[0], 0))) if len(ys) else 0
        window = 2 if info.link_rx_buffer >= frame_bytes else 1
        pending = collections.deque()
        sent = 0
        while sent < len(ys) or pending:
            while sent < len(ys) and len(pending) < window:
                self._sequence = (self._sequence + 1) & 0xFFFF
                self.link.write(
                    encode(COMMANDS["TRAIN"], self._sequence, sample_payload(xs[sent], ys[sent]))
                )
                pending.append((sent, self._sequence))
                sent += 1
            i, sequence = pending.popleft()
            try:
                yield StepResult(*_step(self.receive(COMMANDS["TRAIN"], sequence)))
            except DeviceError as error:
                if error.code != BAD_FRAME:
                    yield error
                    continue
                # The device dropped this frame and drained the line after
                # it, most likely with the frame sent behind it.
                for later, later_sequence in pending:
                    try:
                        self.receive(COMMANDS["TRAIN"], later_sequence, timeout=1.0)
                        raise LinkError(
                            f"sample {later} trained before sample {i}, which "
                            "arrived broken: the stream is out of order"
                        ) from None
                    except (LinkError, DeviceError) as late:
                        if isinstance(late, LinkError) and "out of order" in str(late):
                            raise
                sent = i  # send them again, this one first
                pending.clear()

    def predict(self, x):
        answer = self.request(COMMANDS["PREDICT"], sample_payload(x))
        return struct.unpack_from("<i", answer)[0], np.frombuffer(answer[4:], np.int8)

    def evaluate(self, x, label):
        """(predicted class, loss) of one labelled sample; nothing trains."""
        predicted, loss = struct.unpack(
            "<if", self.request(COMMANDS["EVALUATE"], sample_payload(x, label))
        )
        return predicted, np.float32(loss)

    def evaluate_heldout(self):
        """(correct, count, mean loss) on the device's held-out samples."""
        correct, count, loss = struct.unpack("<IIf", self.request(COMMANDS["EVALUATE"]))
        return correct, count, np.float32(loss)

    def begin_epoch(self, epoch):
        return struct.unpack("<I", self.request(COMMANDS["BEGIN_EPOCH"], struct.pack("<I", epoch)))[
            0
        ]

    def save(self, guard=0, max_drop=0):
        return SaveResult.decode(
            self.request(COMMANDS["SAVE"], struct.pack("<BxH", guard, max_drop))
        )

    def pull(self, chunk=None):
        """The trained parameter bytes (every trained tensor, plan order)."""
        info = self._info or self.info()
        return self._pull("PULL", info.trained_bytes, chunk or info.max_payload)

    def pull_state(self, chunk=None):
        """The learned state in the device's RAM (Trainer.load_state takes it)."""
        info = self._info or self.info()
        return self._pull("PULL_STATE", info.state_bytes, chunk or info.max_payload)

    def _pull(self, command, total, chunk):
        data = b""
        while len(data) < total:
            length = min(chunk, total - len(data))
            data += self.request(COMMANDS[command], struct.pack("<II", len(data), length))
        return data

    def factory_reset(self):
        return struct.unpack("<I", self.request(COMMANDS["FACTORY_RESET"]))[0]

    def holdout(self, x, label):
        """Adds a held-out sample; (count, capacity)."""
        return struct.unpack("<HH", self.request(COMMANDS["HOLDOUT"], sample_payload(x, label)))

    def clear_heldout(self):
        return struct.unpack("<HH", self.request(COMMANDS["HOLDOUT"]))


@functools.lru_cache(maxsize=16)
def _sizes(model_bytes, plan_bytes):
    """(arena, state, input bytes, plan layers) of a model and plan."""
    from tflm_training.trainer import Trainer

    probe = Trainer(model_bytes, plan_bytes)
    details = probe.interpreter.get_input_details(0)
    input_bytes = np.dtype(details["dtype"]).itemsize * int(np.prod(details["shape"]))
    return probe.arena_used_bytes(), probe.state_bytes(), input_bytes, len(probe.plan.layers)


class HostLearner:
    """The C learner in this process: a device whose flash is `flash` (a
    bytearray that outlives it, so a new HostLearner over the same bytes
    is the device after a power cycle). It is its own link."""

    def __init__(
        self,
        model_bytes,
        plan,
        flash=None,
        page_bytes=4096,
        cut_at=-1,
        worn_page=-1,
        heldout_samples=8,
        idle_ms=1,
        firmware_crc32=0,
        atomic_steps=False,
    ):
        if isinstance(plan, TrainingPlan):
            plan = plan.to_bytes()
        lib = _native.library(gradient_bits_of(bytes(plan)))
        self._lib = lib
        self._model = _aligned_bytes(bytes(model_bytes), len(model_bytes))
        self._plan = bytes(plan)
        self.arena_bytes, self.state_bytes, input_bytes, layers = _sizes(
            bytes(model_bytes), self._plan
        )
        self.buffer_bytes = max(input_bytes + 8, 256 + 8 * layers) + 16
        self._arena = _aligned_bytes(None, self.arena_bytes)
        self._buffer = (ctypes.c_uint8 * self.buffer_bytes)()
        self._heldout = (ctypes.c_uint8 * max(1, heldout_samples * (input_bytes + 4)))()
        self._undo = (ctypes.c_uint8 * undo_bytes(self.state_bytes))() if atomic_steps else None
        self.flash = flash
        self._flash_buffer = None
        if flash is not None:
            self._flash_buffer = (ctypes.c_uint8 * len(flash)).from_buffer(flash)
        self._state = ctypes.create_string_buffer(lib.tt_sizeof_host_learner())
        self._incoming = collections.deque()
        self._outgoing = bytearray()
        self._read_byte = _native.READ_BYTE(self._next_byte)
        self._write = _native.WRITE(self._take)
        self.idle_ms = idle_ms
        plan_array = np.frombuffer(self._plan, np.uint8)
        status = lib.tt_host_learner_init(
            self._state,
            self._model.ctypes.data,
            len(self._model),
            plan_array.ctypes.data,
            len(self._plan),
            self._arena.ctypes.data,
            self.arena_bytes,
            self._flash_buffer,
            len(flash) if flash is not None else 0,
            page_bytes,
            cut_at,
            worn_page,
            self._heldout,
            ctypes.sizeof(self._heldout),
            firmware_crc32,
            self._undo,
            ctypes.sizeof(self._undo) if atomic_steps else 0,
        )
        if status != 0:
            from tflm_training.errors import error_for_status

            raise error_for_status(status, lib.tt_host_learner_error(self._state).decode())

    def _next_byte(self, _, byte, timeout_ms):
        if not self._incoming:
            return False
        byte[0] = self._incoming.popleft()
        return True

    def _take(self, _, data, size):
        self._outgoing += ctypes.string_at(data, size)

    # -- the link ----------------------------------------------------------------

    def write(self, data):
        self._incoming.extend(data)
        while self._incoming:
            self._lib.tt_host_learner_serve_one(
                self._state,
                self._read_byte,
                self._write,
                self.idle_ms,
                self._buffer,
                self.buffer_bytes,
            )

    def read(self, size, timeout):
        data, self._outgoing = bytes(self._outgoing[:size]), self._outgoing[size:]
        return data

    @property
    def flash_events(self):
        return int(self._lib.tt_host_learner_flash_events(self._state))

    @property
    def powered_off(self):
        return bool(self._lib.tt_host_learner_powered_off(self._state))


def undo_bytes(state_bytes):
    """RAM of the undo buffer that makes a learner's steps all or nothing:
    the learned state less its counters (tt_trainer_undo_bytes)."""
    return state_bytes - STATE_COUNTERS_BYTES


def region_bytes(state_bytes, page_bytes=4096):
    """Flash the state store needs: two slots of header + payload in whole
    pages (tt_state_slot_bytes)."""
    slot = -(-(32 + state_bytes) // page_bytes) * page_bytes
    return 2 * slot
