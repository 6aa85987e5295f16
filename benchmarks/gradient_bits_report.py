"""The comparison benchmarks/gradient_bits.py writes: two update-scheme
runs that differ only in --gradient_bits, row by row, and its report."""

import json
import pathlib

from benchmarks import report
from benchmarks import update_schemes_methods as methods

# Settings that must agree for the comparison to mean anything.
SHARED = (
    "tasks",
    "methods",
    "budgets_kb",
    "seeds",
    "epochs",
    "train_samples",
    "test_samples",
    "analysis_samples",
    "analysis_val_samples",
    "analysis_epochs",
    "analysis_layers",
    "analysis_bias_layers",
    "search_trials",
    "trady_samples",
    "trady_layers",
)


class MismatchError(ValueError):
    """A file that is not a run of the width asked for, or two runs that
    cannot be compared."""


def load(path, bits):
    try:
        data = json.loads(pathlib.Path(path).read_text())
    except json.JSONDecodeError as error:
        raise MismatchError(f"{path} is not an update-scheme run's .json: {error}") from None
    _check_run(path, data)
    methods.with_current_names(data)
    got = data["config"]["settings"].get("gradient_bits", 32)
    if got != bits:
        raise MismatchError(f"{path} is a run with {got}-bit gradients, not {bits}")
    return data


def _check_run(path, data):
    """The parts of a run that compare() reads, there and of the right kind."""

    def bad(what):
        return MismatchError(f"{path} is not an update-scheme run's .json: {what}")

    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        raise bad("no config")
    if not isinstance(data["config"].get("settings"), dict):
        raise bad("no config.settings")
    if not isinstance(data.get("records"), list):
        raise bad("no records")
    for i, record in enumerate(data["records"]):
        keys = ("task", "method", "budget_kb", "seed", "accuracy")
        if not isinstance(record, dict) or any(k not in record for k in keys):
            raise bad(f"record {i} lacks one of {', '.join(keys)}")
        metrics = record.get("metrics")
        if record["accuracy"] is not None and not (
            isinstance(metrics, dict) and "training_arena" in metrics
        ):
            raise bad(f"record {i} has an accuracy but no metrics.training_arena")


def check_same_settings(wide, narrow):
    for key in SHARED:
        if wide["config"].get(key) != narrow["config"].get(key):
            raise MismatchError(
                f"the two runs differ in {key}: {wide['config'].get(key)!r} "
                f"and {narrow['config'].get(key)!r}"
            )
    settings = [
        {k: v for k, v in run["config"]["settings"].items() if k != "gradient_bits"}
        for run in (wide, narrow)
    ]
    if settings[0] != settings[1]:
        raise MismatchError(f"the two runs train differently: {settings[0]} and {settings[1]}")


def _records(data):
    """{(task, method, budget_kb, seed): record} of the runs that trained."""
    return {
        (r["task"], r["method"], r["budget_kb"], r["seed"]): r
        for r in data["records"]
        if not r.get("backbone")
    }


def compare(wide, narrow):
    """One row per task, method, budget and seed, and the summary."""
    a, b = _records(wide), _records(narrow)
    rows = []
    for key in sorted(set(a) | set(b), key=lambda k: (k[0], k[1], k[2] or 0, k[3])):
        ra, rb = a.get(key), b.get(key)
        row = {"task": key[0], "method": key[1], "budget_kb": key[2], "seed": key[3]}
        for name, record in (("wide", ra), ("narrow", rb)):
            trained = record is not None and record["accuracy"] is not None
            row[name] = (
                None
                if not trained
                else {
                    "accuracy": record["accuracy"],
                    "arena": record["metrics"]["training_arena"],
                    "layers": record["metrics"].get("layers", []),
                }
            )
        if row["wide"] and row["narrow"]:
            row["same_layers"] = row["wide"]["layers"] == row["narrow"]["layers"]
            row["accuracy_change"] = row["narrow"]["accuracy"] - row["wide"]["accuracy"]
        rows.append(row)
    both = [r for r in rows if r["wide"] and r["narrow"]]
    same = [r for r in both if r["same_layers"]]

    def mean(values):
        values = list(values)
        return sum(values) / len(values) if values else None

    summary = {
        "compared": len(both),
        "same_layers": len(same),
        "mean_change_same_layers": mean(r["accuracy_change"] for r in same),
        "worst_change_same_layers": min((r["accuracy_change"] for r in same), default=None),
        "mean_change_all": mean(r["accuracy_change"] for r in both),
        "arena_saving_same_layers": mean(
            1 - r["narrow"]["arena"] / r["wide"]["arena"] for r in same
        ),
        "only_16_bit": sum(1 for r in rows if r["narrow"] and not r["wide"]),
    }
    return rows, summary


def _pct(value):
    return "-" if value is None else f"{100 * value:+.1f} pt"


def render(rows, summary, wide, narrow):
    lines = [
        "# 16-bit gradients on the update-scheme benchmark",
        "",
        "Generated by `benchmarks/gradient_bits.py` from two runs of "
        "`benchmarks/update_schemes.py` that differ only in `--gradient_bits` (see the "
        "script's docstring for the commands):",
        "",
        "```",
        wide.get("command", "?"),
        narrow.get("command", "?"),
        "```",
        "",
        "Every int8 scheme trains with 32-bit (float32) or 16-bit (bfloat16, rounded to "
        "nearest even, `runtime/math/tt_grad.h`) activation gradients; weight gradients and "
        "optimizer state stay float32. Budgets are extra training memory beyond the "
        "model's inference arena; with 16-bit gradients a scheme may pick more layers "
        "within the same budget. Accuracy is on the task's test samples after training "
        "(one run per seed: differences of a few points are within the seed-to-seed "
        "spread, a standard deviation of up to 0.11 over three seeds in the update-scheme "
        "run of benchmarks/reference/update_schemes_9cb413e.json).",
        "",
        "## Summary",
        "",
    ]
    lines += [
        f"- Runs compared: {summary['compared']}; the same layers trained at both "
        f"widths in {summary['same_layers']} of them.",
        f"- Same layers: accuracy change {_pct(summary['mean_change_same_layers'])} "
        f"on average (worst {_pct(summary['worst_change_same_layers'])}), training "
        "arena "
        + (
            "-"
            if summary["arena_saving_same_layers"] is None
            else f"{summary['arena_saving_same_layers']:.1%}"
        )
        + " smaller.",
        f"- All compared runs: accuracy change {_pct(summary['mean_change_all'])} on average.",
        f"- Budgets only 16-bit gradients can train in: {summary['only_16_bit']}.",
        "",
    ]
    table = []
    for r in rows:

        def cell(side):
            return (
                ("-", "-", "-")
                if r[side] is None
                else (
                    f"{r[side]['accuracy']:.3f}",
                    report.fmt_int(r[side]["arena"]),
                    str(len(r[side]["layers"])),
                )
            )

        wa, wb = cell("wide"), cell("narrow")
        table.append(
            [
                r["task"],
                r["method"],
                "-" if r["budget_kb"] is None else f"+{r['budget_kb']} KB",
                r["seed"],
                *wa,
                *wb,
                "-" if "same_layers" not in r else ("yes" if r["same_layers"] else "no"),
                _pct(r.get("accuracy_change")),
            ]
        )
    lines += [
        "## Runs",
        "",
        report.table(
            [
                "task",
                "scheme",
                "budget",
                "seed",
                "accuracy, 32-bit",
                "arena, 32-bit",
                "layers, 32-bit",
                "accuracy, 16-bit",
                "arena, 16-bit",
                "layers, 16-bit",
                "same layers",
                "accuracy change",
            ],
            table,
            left=2,
        ),
        "",
    ]
    lines.append("## Environment")
    for bits, run in ((16, narrow), (32, wide)):
        env = run.get("environment") or {}
        lines.append(f"- {bits}-bit run: {env.get('date_utc')}, commit {env.get('git_commit')}")
    lines.append("")
    return "\n".join(lines)
