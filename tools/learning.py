"""A learning session with a learner device (boards/app/learner_app.c):
stream samples, save, power-cycle, pull the adapted model, and check
every loss and parameter bit for bit against the host Trainer fed the
same stream. tools/learn.py and tools/deploy.py drive it.
"""

import dataclasses
import pathlib
import sys
import tempfile
import time
import zlib

import numpy as np

from tflm_training import learner as wire
from tools import learner_firmware

# --guard of learn.py and deploy.py: what a save must not make worse.
GUARDS = {
    "none": 0,
    "accuracy": wire.GUARD_ACCURACY,
    "loss": wire.GUARD_LOSS,
    "both": wire.GUARD_ACCURACY | wire.GUARD_LOSS,
}


class SessionError(RuntimeError):
    """What went wrong, and the next step."""


# -- links -------------------------------------------------------------------------


class SerialLink:
    """A board's serial port (pyserial): the learner's UART. `port` may also
    be a pyserial URL, e.g. socket://localhost:3456 for the learner under
    Renode (tools/renode.py)."""

    def __init__(self, port, baudrate=115200):
        try:
            import serial
        except ImportError:
            raise SessionError(
                "talking to a board needs pyserial: pip install pyserial==3.5 "
                "(or run: bash tools/install.sh)"
            ) from None
        try:
            self.port = serial.serial_for_url(port, baudrate=baudrate, timeout=0.1)
        except (serial.SerialException, OSError, ValueError) as e:  # ValueError: bad URL
            raise SessionError(
                f"cannot open serial port {port}: {e}. Check the board is "
                "connected and the port name (ls /dev/ttyACM* /dev/ttyUSB*), "
                "and that you may use it (group dialout)"
            ) from None

    def write(self, data):
        self.port.write(data)
        self.port.flush()

    def read(self, size, timeout):
        self.port.timeout = max(timeout, 0.001)
        return self.port.read(size)

    def close(self):
        self.port.close()


class Device:
    """A learner device: emulated (QEMU, firmware `elf`, flash in
    `flash_path`) or a real board on a serial `port`."""

    def __init__(
        self, elf=None, flash_path=None, port=None, baudrate=115200, timeout=60.0, serial="socket"
    ):
        self.elf, self.flash_path, self.port = elf, flash_path, port
        self.baudrate, self.timeout, self.serial = baudrate, timeout, serial
        self.emulator = None
        self.link = None
        self.client = None
        self.power_on()

    @property
    def emulated(self):
        return self.port is None

    def power_on(self):
        if self.emulated:
            self.emulator = learner_firmware.EmulatedLearner(
                self.elf, self.flash_path, serial=self.serial
            )
            self.link = self.emulator
            if self.serial == "pty":
                self.link = SerialLink(self.emulator.pty_path, self.baudrate)
        else:
            self.link = SerialLink(self.port, self.baudrate)
        self.client = wire.LearnerClient(self.link, timeout=self.timeout)

    def power_cycle(self):
        """Cuts the power (emulation: kills QEMU) and boots again."""
        if not self.emulated:
            raise SessionError(
                "a real board is power-cycled by hand (or with its reset "
                "button); --power_cycle works in emulation"
            )
        self.close()
        self.power_on()

    def close(self):
        if isinstance(self.link, SerialLink):
            self.link.close()
        if self.emulator is not None:
            self.emulator.close()
            self.emulator = None


# -- progress ---------------------------------------------------------------------


class Progress:
    """One self-rewriting line on a terminal, a line every 10% elsewhere."""

    def __init__(self, total, log, stream=sys.stdout):
        self.total, self.log, self.stream = total, log, stream
        self.tty = stream.isatty()
        self.start = time.monotonic()
        self.last_decile = -1

    def update(self, done, text):
        rate = done / max(time.monotonic() - self.start, 1e-9)
        filled = 30 * done // max(self.total, 1)
        line = (
            f"  [{'#' * filled}{'.' * (30 - filled)}] {done}/{self.total} "
            f"{rate:.1f} samples/s {text}"
        )
        if self.tty:
            self.stream.write("\r" + line)
            self.stream.flush()
            if done == self.total:
                self.stream.write("\n")
        elif 10 * done // max(self.total, 1) > self.last_decile:
            self.last_decile = 10 * done // max(self.total, 1)
            self.log(line)


# -- the session -------------------------------------------------------------------


@dataclasses.dataclass
class Stream:
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    heldout_x: np.ndarray
    heldout_y: np.ndarray


def check_device(client, model_bytes, plan_bytes):
    info = client.info()
    if info.model_crc32 != zlib.crc32(model_bytes) or info.plan_crc32 != zlib.crc32(plan_bytes):
        raise SessionError(
            f"the device runs another model or plan (model CRC {info.model_crc32:#010x}, plan "
            f"{info.plan_crc32:#010x}; these are {zlib.crc32(model_bytes):#010x} and "
            f"{zlib.crc32(plan_bytes):#010x}): flash the learner firmware built for them"
        )
    return info


def evaluate(client, host, x, y, model=None):
    """Accuracy on (x, y) of the device's adapted `model` (as pulled) and of
    the host Trainer, and the device's own answer on its held-out samples.
    The test samples run in the host runtime, which computes what the
    device computes bit for bit, so nothing has to cross the slow link.
    Without `model` (before training, when the device's learned state was
    just checked equal to the host's) the host's predictions stand for
    the device's."""
    result = {"accuracy": None, "host_accuracy": None, "predictions_match_host": True}
    correct, count, loss = client.evaluate_heldout()
    result["heldout"] = {"correct": correct, "count": count, "loss": float(loss)}
    if not len(y):
        return result
    host_predicted = np.atleast_1d(host.predict(x))
    predicted = host_predicted
    if model is not None:
        predicted = predict_with(model, host.plan.logits_tensor, x)
    result.update(
        {
            "accuracy": float(np.mean(predicted == y)),
            "host_accuracy": float(np.mean(host_predicted == y)),
            "predictions_match_host": bool(np.array_equal(predicted, host_predicted)),
        }
    )
    return result


def predict_with(model, logits_tensor, x):
    """The class with the largest logit, as Trainer.predict picks it, for
    each sample of x, run by a .tflite in the host runtime."""
    from tflm_training import Interpreter

    interpreter = Interpreter.from_bytes(model, preserve_all_tensors=True)
    shape = interpreter.get_input_details(0)["shape"]
    classes = []
    for sample in x:
        interpreter.set_input(sample.reshape(shape), 0)
        interpreter.invoke()
        classes.append(int(np.argmax(interpreter.get_tensor(logits_tensor))))
    return np.array(classes)


class Session:
    """Streams a dataset to a learner device while the host Trainer replays
    the same steps, and records everything for the report."""

    def __init__(self, device, model_bytes, plan_bytes, log=print):
        from tflm_training import Trainer

        self.device, self.model_bytes, self.plan_bytes, self.log = (
            device,
            bytes(model_bytes),
            bytes(plan_bytes),
            log,
        )
        self.info = check_device(device.client, self.model_bytes, self.plan_bytes)
        self.host = Trainer(self.model_bytes, self.plan_bytes)
        self.mismatches = []
        self.diverged_steps = 0
        self.saves = []
        self.step_counts = []
        self.saved_state = None  # the host's copy of the device's saved state
        self.train_seconds = 0.0
        self.samples_trained = 0
        if self.info.steps or self.info.state_sequence:
            # The device goes on from what it learned: the host starts there too.
            state = device.client.pull_state()
            self.host.load_state(state)
            self.saved_state = state if self.info.steps_since_save == 0 else None
            log(
                f"the device holds learned state {self.info.state_sequence} "
                f"({self.info.steps} steps); the host mirror starts from it"
            )
        unusable = [s for s in self.info.slot_status if s not in ("valid", "empty")]
        if unusable:
            log(
                f"warning: the device's state slots were {' and '.join(self.info.slot_status)} "
                "at boot; "
                + (
                    "it restored the other one"
                    if self.info.restored
                    else "nothing was restored: it starts from the model's own weights"
                )
            )

    @property
    def client(self):
        return self.device.client

    def factory_reset(self):
        pages = self.client.factory_reset()
        from tflm_training import Trainer

        self.host = Trainer(self.model_bytes, self.plan_bytes)
        self.saved_state = None
        self.info = self.client.info()
        return pages

    def load_heldout(self, x, y):
        self.client.clear_heldout()
        count = capacity = 0
        for i in range(len(y)):
            count, capacity = self.client.holdout(x[i], y[i])
        return count, capacity

    def check_state(self, what):
        info = self.client.info()
        host_crc = zlib.crc32(self.host.state())
        if info.state_crc32 != host_crc:
            self.mismatches.append(
                f"{what}: device state CRC {info.state_crc32:#010x}, host {host_crc:#010x}"
            )
        return info

    def save(self, guard=0, max_drop=0):
        """SAVE, mirrored on the host; None when the device has trained no
        step since its saved state (e.g. a diverged step took it back)."""
        if not self.client.info().steps_since_save:
            self.log("  device: nothing to save since its saved state")
            return None
        result = self.client.save(guard, max_drop)
        if result.saved:
            self.saved_state = self.host.state()
        else:
            self.log(f"  device: rolled back to saved state {result.sequence}: {result.reason}")
            self._host_roll_back()
        self.saves.append(dataclasses.asdict(result))
        self.check_state(f"after save {len(self.saves)}")
        return result

    def _host_roll_back(self):
        if self.saved_state is None:
            from tflm_training import Trainer

            self.host = Trainer(self.model_bytes, self.plan_bytes)
        else:
            self.host.load_state(self.saved_state)

    def train(self, x, y, epochs, save_every=0, guard=0, max_drop=0, first_epoch=0):
        total = epochs * len(y)
        progress = Progress(total, self.log)
        losses, done, since_save = [], 0, 0
        start = time.monotonic()
        for epoch in range(first_epoch, first_epoch + epochs):
            self.client.begin_epoch(epoch)
            self.host.begin_epoch(epoch)
            start_of_chunk = 0
            while start_of_chunk < len(y):
                # A save waits for every step before it: streams end at saves.
                end = (
                    len(y)
                    if not save_every
                    else min(len(y), start_of_chunk + save_every - since_save)
                )
                chunk = slice(start_of_chunk, end)
                for i, step in enumerate(
                    self.client.train_many(x[chunk], y[chunk]), start_of_chunk
                ):
                    self._check_step(step, x[i], y[i], losses)
                    done += 1
                    since_save += 1
                    recent = np.mean(losses[-len(y) :]) if losses else float("nan")
                    progress.update(done, f"epoch {epoch} loss {recent:.4f}")
                if save_every and since_save >= save_every:
                    self.save(guard, max_drop)
                    since_save = 0
                start_of_chunk = end
        self.train_seconds += time.monotonic() - start
        self.samples_trained += done
        return losses

    def _check_step(self, step, x, y, losses):
        """The host replays the step; their losses must be the same bits."""
        if isinstance(step, wire.DeviceError):
            if step.code != 10:  # only a diverged step lets the stream go on
                raise step
            self.log(f"  {step}")
        host_loss = self._host_step(x, y)
        if isinstance(step, wire.DeviceError):
            self._diverged(host_loss)
            return
        losses.append(float(step.loss))
        if step.loss.view(np.uint32) != host_loss.view(np.uint32):
            self.mismatches.append(
                f"step {step.steps}: device loss {step.loss!r}, host {host_loss!r}"
            )
        if step.count >= 0:
            self.step_counts.append(step.count)

    def _diverged(self, host_loss):
        """The device's step diverged. With an undo buffer it changed
        nothing, as the host's all-or-nothing step; without, the device went
        back to its saved state, and so does the host."""
        self.diverged_steps += 1
        if not np.isnan(host_loss):
            self.mismatches.append(
                f"the device diverged on a step the host trained (loss {host_loss!r})"
            )
        if not self.info.undo_bytes:
            self._host_roll_back()

    def _host_step(self, x, y):
        from tflm_training import DivergedError

        try:
            return np.float32(self.host.train_step(x, y))
        except DivergedError:
            return np.float32("nan")

    def power_cycle(self):
        """Power off and on; the device must come back with its saved state."""
        before = self.client.info()
        self.device.power_cycle()
        after = self.client.info()
        expected = zlib.crc32(self.saved_state) if self.saved_state is not None else None
        came_back = (
            after.restored
            and after.state_sequence == before.state_sequence
            and after.state_crc32 == expected
        )
        if not came_back:
            self.mismatches.append(
                f"after the power cycle the device holds state {after.state_sequence} "
                f"(CRC {after.state_crc32:#010x}, restored {after.restored}); it saved "
                f"{before.state_sequence} (CRC {expected or 0:#010x})"
            )
        if self.saved_state is not None:
            self.host.load_state(self.saved_state)
        self.info = after
        return {
            "restored": after.restored,
            "state_sequence": after.state_sequence,
            "state_came_back": came_back,
            "restore_count": after.restore_count,
        }

    def pull_model(self):
        """(the adapted .tflite from the device's parameters, per trained
        tensor: its CRC-32 on the device and on the host)."""
        pulled = self.host.split_trained_bytes(self.client.pull())
        tensors = []
        for index, data in pulled.items():
            host = self.host.get_tensor(index).tobytes()
            tensors.append(
                {
                    "tensor": index,
                    "bytes": len(data),
                    "device_crc32": zlib.crc32(data),
                    "host_crc32": zlib.crc32(host),
                    "equal": data == host,
                }
            )
        if not all(t["equal"] for t in tensors):
            self.mismatches.append("the pulled parameters differ from the host's")
        # Saturation is reported (run_job), not refused, here.
        return self.host.export(pulled, force=True), tensors


def write_atomically(path, data):
    """Writes a whole file or nothing: a killed run leaves the old one, and
    concurrent writers each stage under their own name."""
    path = pathlib.Path(path)
    with tempfile.NamedTemporaryFile(
        dir=path.parent, prefix=f".{path.name}.", delete=False
    ) as staging:
        staging.write(data.encode() if isinstance(data, str) else data)
    staged = pathlib.Path(staging.name)
    staged.chmod(0o644)  # as a plain write would leave it, not the temporary's 0600
    staged.replace(path)


def write_outputs(out_dir, model, state):
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(out_dir / "trained_device.tflite", model)
    if state is not None:
        write_atomically(out_dir / "device_state.bin", state)


def loss_curve(losses, points=100):
    """The training loss for a report: {"steps_per_point": k, "mean_loss":
    the mean of every k consecutive steps}, at most `points` of them."""
    steps = max(1, -(-len(losses) // points))
    means = [float(np.mean(losses[i : i + steps])) for i in range(0, len(losses), steps)]
    return {"steps_per_point": steps, "mean_loss": means}


def check_saturation(layers, limit, log=print):
    """A job report's "saturation": warns about every layer with more than
    saturation.WARNING_SHARE of its trained parameters newly pinned at their
    limits; SaturationError when one exceeds `limit`."""
    from tflm_training import saturation

    layers = saturation.from_dicts(layers)
    for layer in layers:
        if layer.worst > saturation.WARNING_SHARE:
            log(f"warning: training saturated {layer.describe()}")
    saturation.check(layers, limit)


@dataclasses.dataclass
class JobSettings:
    epochs: int = 4
    save_every: int = 0  # steps between saves; 0: one save at the end
    guard: int = 0  # wire.GUARD_* bits for every save
    max_drop: int = 0
    power_cycle: bool = True  # emulation only
    factory_reset: bool = True


def run_job(session, stream, settings, out_dir, log=print):
    """The standard job: held-out samples in, evaluate, stream the training
    samples (saving as asked), save, power-cycle, evaluate, pull the model.
    Returns the report's "device" part; writes trained_device.tflite."""
    report = {}
    if settings.factory_reset:
        report["factory_reset_pages"] = session.factory_reset()
    if len(stream.heldout_y):
        count, capacity = session.load_heldout(stream.heldout_x, stream.heldout_y)
        report["heldout_samples"] = {"count": count, "capacity": capacity}
    session.check_state("before training")
    # Before training the device holds the model's own weights (or, without
    # a factory reset, a state the host mirror loaded): the host's predictions.
    report["before"] = evaluate(session.client, session.host, stream.test_x, stream.test_y)
    first_epoch = session.info.epoch + (1 if session.info.steps else 0)
    log(
        f"device: streaming {len(stream.train_y)} samples x {settings.epochs} epochs "
        f"(host replays every step) ..."
    )
    losses = session.train(
        stream.train_x,
        stream.train_y,
        settings.epochs,
        settings.save_every,
        settings.guard,
        settings.max_drop,
        first_epoch=first_epoch,
    )
    if session.diverged_steps and not losses:
        raise SessionError(
            f"all {session.diverged_steps} training steps diverged (NaN or "
            "infinity), so nothing was learned; lower the learning rate"
        )
    if session.client.info().steps_since_save:
        final = session.save(settings.guard, settings.max_drop)
        log(
            f"device: saved state {final.sequence} ({final.bytes_written} bytes, "
            f"{final.pages_erased} pages erased)"
            if final.saved
            else f"device: the final save rolled back ({final.reason})"
        )
    if settings.power_cycle and session.device.emulated:
        log("device: power cycle ...")
        report["power_cycle"] = session.power_cycle()
        log(
            "device: the saved state came back"
            if report["power_cycle"]["state_came_back"]
            else "device: the saved state did NOT come back"
        )
        if len(stream.heldout_y):  # held-out samples live in RAM
            session.load_heldout(stream.heldout_x, stream.heldout_y)
    model, tensors = session.pull_model()
    write_outputs(out_dir, model, session.saved_state)
    from tflm_training import saturation

    report["saturation"] = saturation.as_dicts(
        saturation.measure(session.model_bytes, model, session.host.plan)
    )
    report["after"] = evaluate(session.client, session.host, stream.test_x, stream.test_y, model)
    counts = session.step_counts
    report.update(
        {
            "losses_mean_per_epoch": [
                float(np.mean(e)) for e in np.array_split(np.array(losses), settings.epochs)
            ]
            if losses
            else [],
            "samples_per_second": session.samples_trained / max(session.train_seconds, 1e-9),
            "counter_per_step": int(np.mean(counts)) if counts else None,
            "loss_curve": loss_curve(losses),
            "diverged_steps": session.diverged_steps,
            "undo_bytes": session.info.undo_bytes,
            "saves": session.saves,
            "tensors": tensors,
            "parameters_bit_identical": all(t["equal"] for t in tensors),
            "losses_bit_identical": not any(m.startswith("step ") for m in session.mismatches),
            "mismatches": session.mismatches,
            "bit_identical": not session.mismatches,
            "state_sequence": session.client.info().state_sequence,
            "trained_device_tflite": str(pathlib.Path(out_dir) / "trained_device.tflite"),
        }
    )
    return report
