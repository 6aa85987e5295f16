"""Contribution analysis (Lin et al. 2022, "On-Device Training Under 256KB
Memory", section 3.2): how much accuracy each part of a sparse update buys,
measured with the runtime that will train on the board.

    x, y = quantize_samples(model_bytes, x_uint8), labels  # the USER's data
    table = analyze(model_bytes, x, y, epochs=1, samples=200, max_layers=4)
    table.baseline                # int8 accuracy after training the classifier only
    table.bias_depths             # the measured bias depths: 1..8, then a geometric grid
    table.delta_bias(k)           # gain of also updating the biases of the last k layers
                                  # (k in table.bias_depths; another k raises ValueError)
    table.delta_weight(op, 0.25)  # gain of also updating op's weights, 1/4 of its channels

Every number is the held-out int8 accuracy after a short fine-tuning run of
the int8 model in tflm_training.Trainer (the C runtime, bit-exact with the
board), with the deploy settings (SGD, learning rate, momentum, batch size,
QAS). Two sets of layers are analysed, both counted back from the
classifier among the trainable layers before it that feed the logits
(candidate_layers): the bias-analysed layers, the last max_bias_layers
(default every one, as the paper searches the bias depth over the whole
network), and the weight-analysed layers, the last max_layers (default
every one). The runs:

* baseline: the classifier (the operator computing the logits) trains its
  weights and biases, every channel; nothing else trains.
* bias[k], k in bias_depths(L) (every depth 1..8, then 10, 12, 16, 20,
  24, 32, ..., x1.2 to x1.33 per step, and L itself; L = the number of
  bias-analysed layers): the classifier plus the biases (every channel) of
  the last k bias-analysed layers, i.e. the k trainable layers nearest the
  classifier. Layers without a bias add nothing to deeper k (a depth
  training the same biases as the depth measured before it reuses its
  run).
* weight[i, r], r in RATIOS = (1/8, 1/4, 1/2, 1), i a weight-analysed
  layer: the classifier plus layer i's weights on its FIRST ceil(r * C)
  output channels (channels 0 .. ceil(r * C) - 1 of the C output channels;
  at least one). Our runtime selects output channels, and a "weights"
  update also trains the bias of each selected channel.

Δ values (gains) are, with metric='accuracy' (the paper's), mean held-out
accuracy of the run minus that of the baseline; with metric='loss', the
baseline's mean held-out cross-entropy (Trainer.evaluate_loss) minus the
run's (means over the same seeds). Accuracy on a few hundred held-out
samples moves in steps of 1/N and mostly measures which samples happen to
flip; the loss sees every sample's confidence, so its gains grow smoothly
with depth and ratio where accuracy's jump around (the update-scheme
benchmark uses it, benchmarks/update_schemes.py). It is not always
the better guide: it also rewards confidence that does not change a
decision (on deploy's default FSDD task it picked a weaker plan before
the search trials, 0.75 against 0.85; with them it picks the better one,
0.85 against 0.82), so accuracy, the paper's metric, stays the default.
A plan the runtime cannot train (memory_model raises
BadPlanError / UnsupportedModelError, or the plan is invalid) or a run that
diverges is recorded as unavailable with the reason, never a crash.

Data: the user's samples (x, y) are split, class-balanced and seeded, into
a training part and a held-out part (`holdout`), unless x_val / y_val are
given. Seeds change the order of the training samples (a fresh permutation
per epoch); with several seeds every accuracy is the mean over them.

Results are cached in a JSON file (cache_path) under a SHA-256 of the model
bytes, the training and held-out samples, the settings, the analysed layers
and the measured depths: the same inputs read the cache, anything different
recomputes.
"""

import dataclasses
import fractions
import hashlib
import json
import math
import os

import numpy as np

import tflm_training
from planning import datasets
from tflm_training import memory_model, tflite_graph
from tflm_training import plan as plan_lib

RATIOS = (0.125, 0.25, 0.5, 1.0)
METRICS = {
    "accuracy": "gain = Δheld-out accuracy in points",
    "loss": "gain = drop of the held-out mean cross-entropy in hundredths of a nat",
}
DEFAULT_CACHE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "build", "contribution_cache.json"
)
CACHE_VERSION = 3
_UNTRAINABLE = (tflm_training.BadPlanError, tflm_training.UnsupportedModelError, ValueError)


# -- the model's layers ---------------------------------------------------------


def classifier_operator(model_bytes):
    """The operator computing the logits (the classifier)."""
    graph = tflite_graph.read_graph(model_bytes)
    producer = graph.producer(plan_lib.find_logits(graph))
    if (
        producer is None
        or graph.operators[producer].builtin_code not in plan_lib.TRAINABLE_OPERATORS
    ):
        raise ValueError(
            "the logits are not computed by a CONV_2D, DEPTHWISE_CONV_2D or "
            "FULLY_CONNECTED layer, so there is no classifier to fine-tune"
        )
    return producer


def candidate_layers(model_bytes, max_layers=None):
    """[(operator, output channels, has bias)] of the trainable layers
    before the classifier that feed the logits, ascending; the last
    max_layers of them when given."""
    graph = tflite_graph.read_graph(model_bytes)
    logits = plan_lib.find_logits(graph)
    classifier = classifier_operator(model_bytes)
    layers = [
        (op, channels, bias)
        for op, _, channels, bias in plan_lib.trainable_operators(model_bytes)
        if op < classifier and plan_lib.feeds(graph, op, logits)
    ]
    if max_layers is not None:
        if max_layers < 1:
            raise ValueError("max_layers must be at least 1, got %r" % (max_layers,))
        layers = layers[-max_layers:]
    return layers


def ratio_channels(ratio, channels):
    """The channel rule: the first ceil(ratio * channels) output channels
    (at least one, at most all)."""
    count = min(channels, max(1, math.ceil(ratio * channels)))
    return list(range(count))


def bias_depths(layers):
    """The bias depths the analysis measures over `layers` bias-analysed
    layers, ascending: every depth 1..min(8, layers), then the grid 10, 12,
    16, 20, 24, 32, 40, 48, 64, ... (5, 6 and 8 times a power of two, x1.2
    to x1.33 per step) below `layers`, then `layers` itself."""
    depths = list(range(1, min(8, layers) + 1))
    scale = 2
    while 5 * scale < layers:
        depths.extend(m * scale for m in (5, 6, 8) if m * scale < layers)
        scale *= 2
    if layers > 8:
        depths.append(layers)
    return depths


# -- samples --------------------------------------------------------------------


def quantize_samples(model_bytes, x):
    """uint8 samples (0-255, fed to the float model as x / 255) quantized
    as the model's input 0; samples already in the input's dtype are
    returned as they are."""
    interpreter = tflm_training.Interpreter.from_bytes(bytes(model_bytes))
    details = interpreter.get_input_details(0)
    dtype = np.dtype(details["dtype"])
    shape = tuple(int(d) for d in details["shape"][1:])
    x = np.asarray(x)
    if x.ndim < 1 or int(np.prod(x.shape[1:])) != int(np.prod(shape)):
        raise ValueError(
            "samples have shape %s but the model takes (N, %s); give data made "
            "for this model" % (x.shape, ", ".join(map(str, shape)))
        )
    x = x.reshape((len(x),) + shape)
    if x.dtype == dtype:
        return np.ascontiguousarray(x)
    if x.dtype != np.uint8:
        raise ValueError(
            "samples have dtype %s; give uint8 (0-255, fed as x / 255) or %s "
            "(already quantized)" % (x.dtype, dtype.name)
        )
    quantization = details["quantization_parameters"]
    scale = float(quantization["scales"][0]) if len(quantization["scales"]) else 1.0
    zero_point = int(quantization["zero_points"][0]) if len(quantization["zero_points"]) else 0
    q = np.round(x.astype(np.float32) / np.float32(255.0) / np.float32(scale)) + zero_point
    limits = np.iinfo(dtype)
    return np.clip(q, limits.min, limits.max).astype(dtype)


def balanced_split(y, holdout, rng):
    """(train rows, held-out rows): about `holdout` of each class held out
    (at least one per class with two or more samples)."""
    y = np.asarray(y)
    train, held = [], []
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c))
        n = int(round(holdout * len(rows)))
        if len(rows) >= 2:
            n = min(max(n, 1), len(rows) - 1)
        held.extend(rows[:n])
        train.extend(rows[n:])
    return rng.permutation(np.array(train, np.int64)), rng.permutation(np.array(held, np.int64))


# -- settings and one run --------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Settings:
    """How every run trains (the deploy settings by default)."""

    learning_rate: float = 0.02
    momentum: float = 0.9
    batch_size: int = 5
    qas: bool = True
    epochs: int = 1
    seeds: tuple = (0,)

    def plan_settings(self):
        return {
            "learning_rate": self.learning_rate,
            "momentum": self.momentum,
            "batch_size": self.batch_size,
            "qas": self.qas,
        }

    def as_dict(self):
        return {
            "learning_rate": self.learning_rate,
            "momentum": self.momentum,
            "batch_size": self.batch_size,
            "qas": self.qas,
            "epochs": self.epochs,
            "seeds": list(self.seeds),
        }

    @classmethod
    def from_dict(cls, data):
        """The inverse of as_dict (a table's settings)."""
        return cls(
            float(data["learning_rate"]),
            float(data["momentum"]),
            int(data["batch_size"]),
            bool(data["qas"]),
            int(data["epochs"]),
            tuple(int(s) for s in data["seeds"]),
        )


def make_plan(model_bytes, layers, settings):
    """A checked TrainingPlan from [LayerPlan] with the settings."""
    return tflm_training.TrainingPlan.for_model(model_bytes, layers, **settings.plan_settings())


def train_and_evaluate(model_bytes, plan, data, settings, seed):
    """(held-out accuracy, held-out mean cross-entropy or None when the
    logits cannot be read) after `settings.epochs` passes over data's
    training samples, in an order drawn from `seed`."""
    trainer = tflm_training.Trainer(model_bytes, plan)
    rng = np.random.default_rng(seed)
    for _ in range(settings.epochs):
        order = rng.permutation(len(data["y_train"]))
        trainer.train_step(data["x_train"][order], data["y_train"][order])
    accuracy = trainer.evaluate(data["x_val"], data["y_val"])
    try:
        loss = trainer.evaluate_loss(data["x_val"], data["y_val"])
    except (tflm_training.InvalidArgumentError, tflm_training.BadStateError):
        loss = None  # the logits are not readable after inference in this model
    return accuracy, loss


def run_plan(model_bytes, layers, data, settings):
    """{'available', 'accuracy', 'runs', 'loss', 'loss_runs', 'arena',
    'reason'} of one plan."""
    try:
        plan = make_plan(model_bytes, layers, settings)
        arena = memory_model.training_memory(model_bytes, plan).total
    except _UNTRAINABLE as error:
        return {"available": False, "reason": str(error)}
    try:
        runs = [
            train_and_evaluate(model_bytes, plan, data, settings, seed) for seed in settings.seeds
        ]
    except tflm_training.DivergedError as error:
        return {"available": False, "reason": "training diverged: %s" % error}
    except (tflm_training.BadPlanError, tflm_training.UnsupportedModelError) as error:
        return {"available": False, "reason": str(error)}
    accuracies, losses = zip(*runs)
    readable = None not in losses
    return {
        "available": True,
        "accuracy": float(np.mean(accuracies)),
        "runs": [float(r) for r in accuracies],
        "loss": float(np.mean(losses)) if readable else None,
        "loss_runs": [float(r) for r in losses] if readable else None,
        "arena": arena,
    }


# -- the table --------------------------------------------------------------------


@dataclasses.dataclass
class Contributions:
    """The measured table (see the module doc). bias[j] is the run for
    depth bias_depths[j]; weight[op][j] the run for RATIOS[j]; each run a
    dict with 'available', 'accuracy', 'runs', 'loss', 'loss_runs', 'arena'
    or 'reason'. metric: what a gain is (METRICS)."""

    key: str
    settings: dict
    classifier: int
    layers: list  # weight-analysed operators, ascending
    bias_analysed: list  # bias-analysed operators, ascending: depth k = the last k
    channels: dict  # operator -> output channels (every analysed operator)
    has_bias: dict  # operator -> bool (every analysed operator)
    ratios: list
    before: float  # held-out accuracy of the model as given
    baseline: dict  # the classifier-only run
    bias_depths: list  # the measured depths, ascending
    bias: list  # their runs
    weight: dict
    train_samples: int = 0
    val_samples: int = 0
    from_cache: bool = False
    metric: str = "accuracy"  # not cached: every run holds both metrics

    @property
    def baseline_accuracy(self):
        return self.baseline["accuracy"] if self.baseline.get("available") else None

    def gain(self, run):
        """The run's gain over the baseline in the table's metric, None
        when either is unavailable."""
        if not run.get("available") or not self.baseline.get("available"):
            return None
        if self.metric == "loss":
            if run["loss"] is None or self.baseline["loss"] is None:
                return None
            return self.baseline["loss"] - run["loss"]
        return run["accuracy"] - self.baseline["accuracy"]

    def delta_bias(self, k):
        """Gain (the metric's) of also training the biases of the last k
        layers; 0 for k = 0, None when unavailable; a depth the analysis
        did not measure raises ValueError."""
        if k == 0:
            return 0.0
        if k not in self.bias_depths:
            raise ValueError(
                "bias depth %r was not measured; the contribution analysis "
                "measured depths %s" % (k, self.bias_depths)
            )
        return self.gain(self.bias[self.bias_depths.index(k)])

    def delta_weight(self, operator, ratio):
        """Gain (the metric's) of also training `operator`'s weights on the
        first ceil(ratio * C) channels; 0 for ratio 0, None when
        unavailable."""
        if ratio == 0:
            return 0.0
        return self.gain(self.weight[operator][self.ratios.index(ratio)])

    def bias_layers(self, k):
        """The operators whose biases depth k trains (the last k
        bias-analysed layers that have a bias), k in 0..len(bias_analysed)."""
        if not 0 <= k <= len(self.bias_analysed):
            raise ValueError(
                "bias depth %r is outside 0..%d, the bias-analysed layers"
                % (k, len(self.bias_analysed))
            )
        return (
            [op for op in self.bias_analysed[len(self.bias_analysed) - k :] if self.has_bias[op]]
            if k
            else []
        )

    def depth(self, operator):
        """The bias depth reaching `operator` (down to it), None when it is
        not bias-analysed."""
        if operator not in self.bias_analysed:
            return None
        return len(self.bias_analysed) - self.bias_analysed.index(operator)

    def as_json(self):
        return {
            "version": CACHE_VERSION,
            "key": self.key,
            "settings": self.settings,
            "classifier": self.classifier,
            "layers": self.layers,
            "bias_analysed": self.bias_analysed,
            "channels": {str(k): v for k, v in self.channels.items()},
            "has_bias": {str(k): v for k, v in self.has_bias.items()},
            "ratios": self.ratios,
            "before": self.before,
            "baseline": self.baseline,
            "bias_depths": self.bias_depths,
            "bias": self.bias,
            "metric": self.metric,
            "weight": {str(k): v for k, v in self.weight.items()},
            "train_samples": self.train_samples,
            "val_samples": self.val_samples,
        }

    @classmethod
    def from_json(cls, data, from_cache=False):
        return cls(
            key=data["key"],
            settings=data["settings"],
            classifier=data["classifier"],
            layers=list(data["layers"]),
            bias_analysed=list(data["bias_analysed"]),
            channels={int(k): v for k, v in data["channels"].items()},
            has_bias={int(k): v for k, v in data["has_bias"].items()},
            ratios=list(data["ratios"]),
            before=data["before"],
            baseline=data["baseline"],
            bias_depths=list(data["bias_depths"]),
            bias=list(data["bias"]),
            weight={int(k): v for k, v in data["weight"].items()},
            train_samples=data["train_samples"],
            val_samples=data["val_samples"],
            metric=data.get("metric", "accuracy"),
            from_cache=from_cache,
        )

    def rows(self):
        """[(operator, channels, Δbias at the depth reaching it, [Δweight per
        ratio])] for tables, last layer first: the weight-analysed layers
        and the bias-analysed layers at a measured depth; None where
        unavailable or not measured."""
        rows = []
        for op in sorted(set(self.layers) | set(self.bias_analysed), reverse=True):
            depth = self.depth(op)
            measured = depth in self.bias_depths
            if not measured and op not in self.layers:
                continue
            weights = [self.delta_weight(op, r) if op in self.layers else None for r in self.ratios]
            rows.append(
                (op, self.channels[op], self.delta_bias(depth) if measured else None, weights)
            )
        return rows

    def describe(self):
        """The table as lines for people (gains x100: accuracy points, or
        hundredths of a nat of held-out loss)."""

        def fmt(v):
            return "   n/a" if v is None else "%+6.1f" % (100 * v)

        base = self.baseline_accuracy
        lines = [
            "contribution analysis: %d training / %d held-out samples, %s"
            % (
                self.train_samples,
                self.val_samples,
                ", ".join("%s %s" % (k, v) for k, v in self.settings.items()),
            ),
            "held-out accuracy: as given %.3f, classifier only (baseline) %s%s"
            % (
                self.before,
                "n/a" if base is None else "%.3f" % base,
                ""
                if self.baseline.get("loss") is None
                else ", its loss %.3f" % self.baseline["loss"],
            ),
            "biases: depths %s of the last %d layers; weights: the last %d layers"
            % (
                ", ".join(map(str, self.bias_depths)) or "none",
                len(self.bias_analysed),
                len(self.layers),
            ),
            "%s vs the baseline; bias@k = biases of the last k layers (down to this "
            "one); w r = weights of the first ceil(r*C) channels" % METRICS[self.metric],
            "  op  C    k  bias@k " + " ".join("w %-5s" % ratio_name(r) for r in self.ratios),
        ]
        for op, channels, bias, weights in self.rows():
            depth = self.depth(op)
            lines.append(
                "%4d %3d %4s  %s  " % (op, channels, "-" if depth is None else depth, fmt(bias))
                + " ".join("%6s " % fmt(w).strip() if w is not None else "   n/a " for w in weights)
            )
        unavailable = [
            (name, run["reason"]) for name, run in self._all_runs() if not run.get("available")
        ]
        for name, reason in unavailable:
            lines.append("unavailable: %s: %s" % (name, reason))
        return lines

    def _all_runs(self):
        yield "baseline", self.baseline
        for k, run in zip(self.bias_depths, self.bias):
            yield "bias@%d" % k, run
        for op in self.layers:
            for r, run in zip(self.ratios, self.weight[op]):
                yield "op %d weights %s" % (op, ratio_name(r)), run


def ratio_name(r):
    """ "1/8" for 0.125, "7/16" for 0.4375 and so on ("%g" unless a
    fraction over at most 64 is exact)."""
    fraction = fractions.Fraction(r).limit_denominator(64)
    return str(fraction) if fraction == r else "%g" % r


# -- the cache ------------------------------------------------------------------------


def cache_key(model_bytes, data, settings, layers, bias_analysed, depths, ratios):
    digest = hashlib.sha256()
    digest.update(b"contribution v%d\0" % CACHE_VERSION)
    digest.update(bytes(model_bytes))
    for name in ("x_train", "y_train", "x_val", "y_val"):
        array = np.ascontiguousarray(data[name])
        digest.update(("%s %s %s\0" % (name, array.dtype.str, array.shape)).encode())
        digest.update(array.tobytes())
    digest.update(
        json.dumps(
            {
                "settings": settings.as_dict(),
                "layers": layers,
                "bias_analysed": bias_analysed,
                "bias_depths": depths,
                "ratios": list(ratios),
            },
            sort_keys=True,
        ).encode()
    )
    return digest.hexdigest()


def read_cache(path):
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_cache(path, key, entry):
    entries = read_cache(path)
    entries[key] = entry
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temporary = "%s.%d.tmp" % (path, os.getpid())
    with open(temporary, "w") as f:
        json.dump(entries, f, indent=1, sort_keys=True)
    os.replace(temporary, path)


# -- the analysis -----------------------------------------------------------------------


def prepare_data(
    x, y, x_val=None, y_val=None, *, samples=None, val_samples=None, holdout=0.25, split_seed=0
):
    """{'x_train', 'y_train', 'x_val', 'y_val'}: the held-out split (unless
    given) and class-balanced subsets of at most samples / val_samples."""
    x, y = np.asarray(x), np.asarray(y).astype(np.int64).reshape(-1)
    if len(x) != len(y):
        raise ValueError("%d samples but %d labels" % (len(x), len(y)))
    rng = np.random.default_rng(split_seed)
    if x_val is None:
        if not 0 < holdout < 1:
            raise ValueError("holdout must be in (0, 1), got %r" % (holdout,))
        train, held = balanced_split(y, holdout, rng)
        x, y, x_val, y_val = x[train], y[train], x[held], y[held]
    else:
        x_val = np.asarray(x_val)
        y_val = np.asarray(y_val).astype(np.int64).reshape(-1)
    train = datasets.balanced_subset(y, samples, rng)
    val = datasets.balanced_subset(y_val, val_samples, rng)
    data = {
        "x_train": np.ascontiguousarray(x[train]),
        "y_train": y[train],
        "x_val": np.ascontiguousarray(x_val[val]),
        "y_val": y_val[val],
    }
    if not len(data["y_train"]) or not len(data["y_val"]):
        raise ValueError(
            "contribution analysis needs training and held-out samples; got "
            "%d and %d" % (len(data["y_train"]), len(data["y_val"]))
        )
    return data


def analyze(
    model_bytes,
    x,
    y,
    x_val=None,
    y_val=None,
    *,
    learning_rate=0.02,
    momentum=0.9,
    batch_size=5,
    qas=True,
    epochs=1,
    samples=None,
    val_samples=None,
    holdout=0.25,
    seeds=(0,),
    max_layers=None,
    max_bias_layers=None,
    ratios=RATIOS,
    metric="accuracy",
    cache_path=DEFAULT_CACHE,
    log=None,
):
    """The Contributions table of `model_bytes` on the user's samples.

    x, y: samples quantized as the model's input 0 (quantize_samples) and
    integer labels; x_val / y_val: the held-out samples (default: `holdout`
    of x, y, class-balanced). samples / val_samples: at most this many
    (class-balanced). epochs: passes per run. seeds: one run per seed,
    results averaged. max_layers: measure the weight ratios of only the
    last N trainable layers before the classifier (default all).
    max_bias_layers: measure the bias depths over only the last N of them
    (default all), at bias_depths(N). metric: what a gain is, 'accuracy'
    (the paper's: held-out accuracy) or 'loss' (the drop of the held-out
    mean cross-entropy; see the module doc); every run records both, so
    the cache serves either. cache_path: the
    JSON cache (None: no cache). log: a function taking progress lines.
    """
    if metric not in METRICS:
        raise ValueError("metric must be one of %s, got %r" % (", ".join(METRICS), metric))
    model_bytes = bytes(model_bytes)
    settings = Settings(
        float(learning_rate),
        float(momentum),
        int(batch_size),
        bool(qas),
        int(epochs),
        tuple(int(s) for s in seeds),
    )
    if settings.epochs < 1 or not settings.seeds:
        raise ValueError("contribution analysis needs epochs >= 1 and at least one seed")
    data = prepare_data(
        x, y, x_val, y_val, samples=samples, val_samples=val_samples, holdout=holdout
    )
    classifier = classifier_operator(model_bytes)
    layers = candidate_layers(model_bytes, max_layers)
    bias_analysed = candidate_layers(model_bytes, max_bias_layers)
    depths = bias_depths(len(bias_analysed))
    ratios = [float(r) for r in ratios]
    key = cache_key(
        model_bytes,
        data,
        settings,
        [op for op, _, _ in layers],
        [op for op, _, _ in bias_analysed],
        depths,
        ratios,
    )
    if cache_path:
        entry = read_cache(cache_path).get(key)
        if entry is not None and entry.get("version") == CACHE_VERSION:
            if log:
                log("contribution analysis: read from %s" % cache_path)
            return dataclasses.replace(
                Contributions.from_json(entry, from_cache=True), metric=metric
            )
    say = log or (lambda line: None)
    classifier_layer = plan_lib.LayerPlan(classifier, "weights")

    try:
        before = tflm_training.Trainer(
            model_bytes, make_plan(model_bytes, [classifier_layer], settings)
        ).evaluate(data["x_val"], data["y_val"])
    except _UNTRAINABLE as error:
        raise ValueError(
            "the runtime cannot train even the classifier (operator %d) of this "
            "model, so there is nothing to analyse: %s" % (classifier, error)
        ) from None
    say("contribution: baseline (classifier only)")
    baseline = run_plan(model_bytes, [classifier_layer], data, settings)
    bias_runs, previous = [], None
    for k in depths:
        ops = [op for op, _, has_bias in bias_analysed[len(bias_analysed) - k :] if has_bias]
        if ops == previous:
            bias_runs.append(dict(bias_runs[-1]))
            continue
        say("contribution: biases of the last %d layers" % k)
        bias_runs.append(
            run_plan(
                model_bytes,
                [plan_lib.LayerPlan(op, "bias") for op in ops] + [classifier_layer],
                data,
                settings,
            )
            if ops
            else dict(baseline)
        )
        previous = ops
    weight_runs = {}
    for op, channels, _ in layers:
        weight_runs[op] = []
        for r in ratios:
            say("contribution: op %d weights, %s of %d channels" % (op, ratio_name(r), channels))
            weight_runs[op].append(
                run_plan(
                    model_bytes,
                    [
                        plan_lib.LayerPlan(op, "weights", ratio_channels(r, channels)),
                        classifier_layer,
                    ],
                    data,
                    settings,
                )
            )
    analysed = layers + bias_analysed
    table = Contributions(
        key=key,
        settings=settings.as_dict(),
        classifier=classifier,
        layers=[op for op, _, _ in layers],
        bias_analysed=[op for op, _, _ in bias_analysed],
        channels={op: c for op, c, _ in analysed},
        has_bias={op: bool(b) for op, _, b in analysed},
        ratios=ratios,
        before=before,
        baseline=baseline,
        bias_depths=depths,
        bias=bias_runs,
        weight=weight_runs,
        train_samples=int(len(data["y_train"])),
        val_samples=int(len(data["y_val"])),
        metric=metric,
    )
    if cache_path:
        write_cache(cache_path, key, table.as_json())
    return table
