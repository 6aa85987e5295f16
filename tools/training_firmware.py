"""The training firmware (boards/app/training_app.c): packaging and results.

Builds it with a model, a training plan, and labelled training and test
samples embedded (boards/app/training_app_data.S .incbin's the files written
here), the arena sized exactly by the host build of the same runtime; and
reads its console events back into a TrainingRun.

  python tools/build.py --board mps2_an386 --app training_app --model M.tflite \\
      --plan P.bin --train TRAIN.npz --test TEST.npz --epochs 3
  python tools/emulate.py --app training_app
"""

import dataclasses
import json
import pathlib

import numpy as np

import tflm_training
from tools import board_config, firmware_build

APP = "training_app"
# --plan may name one of these instead of a plan file: the plan is then
# made from the model with the TrainingPlan defaults.
PLAN_PRESETS = ("classifier_only", "bias_only")


def gradient_bits(plan_bytes):
    """The runtime's gradient width the plan needs (runtime/math/tt_grad.h)."""
    return tflm_training.plan.gradient_bits_of(plan_bytes)


def resolve_plan(plan, model_bytes):
    """Plan bytes from bytes, a TrainingPlan, a preset name or a file path."""
    if isinstance(plan, tflm_training.TrainingPlan):
        return plan.to_bytes()
    if isinstance(plan, (bytes, bytearray)):
        return bytes(plan)
    if plan in PLAN_PRESETS:
        try:
            return getattr(tflm_training.TrainingPlan, plan)(model_bytes).to_bytes()
        except ValueError as e:
            raise firmware_build.BuildError(f"cannot make a {plan} plan: {e}") from None
    path = pathlib.Path(plan)
    if not path.is_file():
        raise firmware_build.BuildError(
            f"plan {plan} is neither a file nor one of {', '.join(PLAN_PRESETS)}"
        )
    return path.read_bytes()


def training_arena_bytes(model_bytes, plan_bytes):
    """What the trainer needs, measured by the host build (arena records
    hold no pointers, so the MCU needs exactly the same)."""
    try:
        return tflm_training.Trainer(model_bytes, plan_bytes).arena_used_bytes()
    except (tflm_training.TflmTrainingError, ValueError) as e:
        raise firmware_build.BuildError(f"the runtime cannot train the model: {e}") from None


def load_samples(path):
    """(x, y) from a .npz holding `x` (quantized samples, the model input's
    dtype) and `y` (integer labels)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise firmware_build.BuildError(f"samples file {path} does not exist")
    with np.load(path, allow_pickle=False) as data:
        missing = {"x", "y"} - set(data.files)
        if missing:
            raise firmware_build.BuildError(
                f"{path} lacks {', '.join(sorted(missing))}: it must hold `x` (quantized "
                "samples) and `y` (integer labels)"
            )
        return data["x"], data["y"]


def _labels(y, count, what):
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.integer):
        raise firmware_build.BuildError(f"{what} labels must be integers, got {y.dtype}")
    y = y.reshape(-1)
    if len(y) != count:
        raise firmware_build.BuildError(f"{count} {what} samples but {len(y)} labels")
    if len(y) and (y.min() < 0 or y.max() > np.iinfo(np.int32).max):
        raise firmware_build.BuildError(f"{what} labels must be class indices (>= 0)")
    return y.astype("<i4")


def build_training_firmware(
    board_name,
    model_bytes,
    plan,
    train_x,
    train_y,
    out_dir=None,
    test_x=None,
    test_y=None,
    epochs=1,
    dump_parameters=False,
    arena_bytes=None,
    verbose=False,
    profile_operators=False,
):
    """Builds the training app.

    plan: its bytes, a TrainingPlan, a preset name or a file path.
    train_x, test_x: (N, *input shape) quantized samples; train_y, test_y:
    N class indices. Without a test set the firmware evaluates the training
    samples. The firmware trains on the samples in the given order, `epochs`
    times; dump_parameters adds the trained tensors' bytes to its report;
    profile_operators measures each operator's forward and backward work
    (TrainingRun.operator_profile).
    """
    model_bytes = bytes(model_bytes)
    plan_bytes = resolve_plan(plan, model_bytes)
    if not isinstance(epochs, int) or epochs < 1:
        raise firmware_build.BuildError(f"epochs must be an integer >= 1, got {epochs!r}")
    facts = firmware_build.model_facts(model_bytes)
    train_x = firmware_build.input_samples(train_x, facts)
    train_y = _labels(train_y, len(train_x), "training")
    if len(train_x) == 0:
        raise firmware_build.BuildError("no training samples")
    if (test_x is None) != (test_y is None):
        raise firmware_build.BuildError("give both test samples and test labels, or neither")
    if test_x is None:
        test_x = train_x[:0]
        test_y = train_y[:0]
    else:
        test_x = firmware_build.input_samples(test_x, facts)
        test_y = _labels(test_y, len(test_x), "test")
    if arena_bytes is None:
        arena_bytes = training_arena_bytes(model_bytes, plan_bytes)

    board = board_config.load_board(board_name)
    out_dir = pathlib.Path(out_dir or firmware_build.default_out_dir(board.name, APP)).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "model.tflite": model_bytes,
        "plan.bin": plan_bytes,
        "train_inputs.bin": np.ascontiguousarray(train_x).tobytes(),
        "train_labels.bin": train_y.tobytes(),
        "test_inputs.bin": np.ascontiguousarray(test_x).tobytes(),
        "test_labels.bin": test_y.tobytes(),
    }
    for name, data in files.items():
        (out_dir / name).write_bytes(data)
    embedded = {
        "model": len(model_bytes),
        "plan": len(plan_bytes),
        "training samples": train_x.nbytes + train_y.nbytes,
        "test samples": test_x.nbytes + test_y.nbytes,
        "arena": arena_bytes,
    }
    defines = [
        f"-DAPP_ARENA_BYTES={int(arena_bytes)}",
        f"-DAPP_EPOCHS={epochs}",
        f"-DAPP_DUMP_PARAMETERS={int(bool(dump_parameters))}",
        f"-DAPP_PROFILE_OPERATORS={int(bool(profile_operators))}",
    ]
    firmware = firmware_build.build_app(
        board_name,
        APP,
        out_dir,
        defines=defines,
        with_runtime=True,
        embedded=embedded,
        verbose=verbose,
        kernels=firmware_build.kernel_symbols(model_bytes, training=True),
        gradient_bits=gradient_bits(plan_bytes),
    )
    firmware.summary.update(
        {
            "model_bytes": len(model_bytes),
            "plan_bytes": len(plan_bytes),
            "train_samples": int(len(train_x)),
            "test_samples": int(len(test_x)),
            "epochs": epochs,
            "dump_parameters": bool(dump_parameters),
            "profile_operators": bool(profile_operators),
            "input_shape": list(facts.input_shape),
            "input_dtype": facts.input_dtype.name,
            "arena_bytes": int(arena_bytes),
        }
    )
    (out_dir / "build.json").write_text(json.dumps(firmware.summary, indent=2) + "\n")
    return firmware


def build_from_files(
    board_name,
    model_path,
    plan,
    train_path,
    test_path=None,
    out_dir=None,
    epochs=1,
    dump_parameters=False,
    arena_bytes=None,
    verbose=False,
):
    """build_training_firmware from files (tools/build.py --app training_app)."""
    if model_path is None or plan is None or train_path is None:
        raise firmware_build.BuildError(
            f"--app {APP} needs --model, --plan and --train (and usually --test)"
        )
    model_path = pathlib.Path(model_path)
    if not model_path.is_file():
        raise firmware_build.BuildError(f"model file {model_path} does not exist")
    train_x, train_y = load_samples(train_path)
    test_x = test_y = None
    if test_path is not None:
        test_x, test_y = load_samples(test_path)
    return build_training_firmware(
        board_name,
        model_path.read_bytes(),
        plan,
        train_x,
        train_y,
        out_dir=out_dir,
        test_x=test_x,
        test_y=test_y,
        epochs=epochs,
        dump_parameters=dump_parameters,
        arena_bytes=arena_bytes,
        verbose=verbose,
    )


# -- reading the console ------------------------------------------------------


@dataclasses.dataclass
class TrainingRun:
    """The training app's events (firmware_console.ConsoleLog), decoded."""

    init: dict
    before: dict  # "evaluation" events: correct, total, counter, count
    after: dict
    steps: list  # "train_step" events
    predictions: list  # after training, one class per evaluated sample
    parameters: dict  # {tensor: "parameters" event (+ "data": bytes if dumped)}
    stack: dict
    ram: dict
    # {operator: "operator_profile" event} of a profiling build: instructions
    # of its forward and backward work summed over `steps` steps.
    operator_profile: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def from_log(cls, log):
        def single(name, **match):
            found = [e for e in log.named(name) if all(e.get(k) == v for k, v in match.items())]
            if len(found) != 1:
                raise ValueError(f"expected one {name} event {match or ''}, got {len(found)}")
            return found[0]

        parameters = {}
        for event in log.named("parameters"):
            event = dict(event)
            if "hex" in event:
                event["data"] = bytes.fromhex(event["hex"])
            parameters[event["tensor"]] = event
        return cls(
            single("training_init"),
            single("evaluation", phase="before"),
            single("evaluation", phase="after"),
            log.named("train_step"),
            [e["class"] for e in log.named("prediction")],
            parameters,
            single("stack"),
            single("ram"),
            {e["operator"]: e for e in log.named("operator_profile")},
        )

    @property
    def losses(self):
        """Per-step losses, exactly (float32)."""
        return np.array([s["loss_bits"] for s in self.steps], dtype=np.uint32).view(np.float32)

    @property
    def step_counts(self):
        return [s["count"] for s in self.steps]

    def accuracy(self, phase):
        event = self.before if phase == "before" else self.after
        return event["correct"] / event["total"]

    def count_per_inference(self):
        """Mean instructions (or cycles) of one prediction, over both phases;
        None if the counter overflowed."""
        counts = [self.before["count"], self.after["count"]]
        if None in counts:
            return None
        return sum(counts) / (self.before["total"] + self.after["total"])

    def summary(self):
        """A few human-readable lines."""
        epochs = self.init["epochs"]
        losses = self.losses.reshape(epochs, -1).astype(np.float64).mean(axis=1)
        counts = [c for c in self.step_counts if c is not None]
        unit = self.steps[0]["counter"] if self.steps else "instructions"
        per_step = f"{sum(counts) // len(counts):,}" if counts else "n/a"
        per_inference = self.count_per_inference()
        per_inference = "n/a" if per_inference is None else f"{int(per_inference):,}"
        arena = self.ram["arena_size"]
        return "\n".join(
            [
                f"training: {len(self.steps)} steps ({epochs} epochs x "
                f"{self.init['train_samples']} samples); mean loss per epoch "
                + " -> ".join(f"{loss:.4f}" for loss in losses),
                f"{self.init['test_set']} accuracy: {self.before['correct']}/"
                f"{self.before['total']} before, {self.after['correct']}/"
                f"{self.after['total']} after",
                f"{unit}: {per_step} per training step, {per_inference} per inference",
                f"peak RAM {self.ram['peak']} bytes = static {self.ram['static']} (arena "
                f"{arena}, other {self.ram['static'] - arena}) + stack high-water "
                f"{self.ram['stack_used']}",
            ]
        )
