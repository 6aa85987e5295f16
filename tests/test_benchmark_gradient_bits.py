"""benchmarks/gradient_bits_report.py: the comparison of two update-scheme runs
that differ only in the gradients' width."""

import json

import pytest

from benchmarks import gradient_bits_report as gradient_bits


def _record(task, method, budget, accuracy, arena, layers):
    return {
        "task": task,
        "method": method,
        "budget_kb": budget,
        "seed": 0,
        "backbone": None,
        "accuracy": accuracy,
        "metrics": None if accuracy is None else {"training_arena": arena, "layers": layers},
    }


def _run(bits, records, **config):
    settings = {"learning_rate": 0.02, "momentum": 0.0, "gradient_bits": bits}
    return {
        "command": f"python benchmarks/update_schemes.py --gradient_bits {bits}",
        "config": {
            "tasks": ["fsdd"],
            "seeds": [0],
            "budgets_kb": [32, 64],
            "settings": settings,
            **config,
        },
        "environment": {"date_utc": "today", "git_commit": "abc"},
        "records": records,
    }


WIDE = _run(
    32,
    [
        _record("fsdd", "last-biases", 32, 0.80, 120_000, ["a", "b"]),
        _record("fsdd", "last-biases", 64, 0.82, 150_000, ["a", "b", "c"]),
        _record("fsdd", "trady", 32, None, None, None),
    ],
)
NARROW = _run(
    16,
    [
        _record("fsdd", "last-biases", 32, 0.78, 90_000, ["a", "b"]),
        _record("fsdd", "last-biases", 64, 0.86, 110_000, ["a", "b", "c", "d"]),
        _record("fsdd", "trady", 32, 0.70, 100_000, ["t"]),
    ],
)


def test_compare_separates_same_plans_from_deeper_ones():
    rows, summary = gradient_bits.compare(WIDE, NARROW)
    assert len(rows) == 3
    assert summary["compared"] == 2 and summary["same_layers"] == 1
    assert summary["mean_change_same_layers"] == pytest.approx(-0.02)
    assert summary["worst_change_same_layers"] == pytest.approx(-0.02)
    assert summary["mean_change_all"] == pytest.approx((-0.02 + 0.04) / 2)
    assert summary["arena_saving_same_layers"] == pytest.approx(0.25)
    assert summary["only_16_bit"] == 1
    text = gradient_bits.render(rows, summary, WIDE, NARROW)
    assert (
        "| fsdd | last-biases | +32 KB | 0 | 0.800 | 120,000 | 2 | 0.780 | 90,000 | 2 | yes |"
        in text
    )


def _write(tmp_path, name, data):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def test_runs_of_the_wrong_width_or_other_settings_are_refused(tmp_path):
    with pytest.raises(gradient_bits.MismatchError, match="16-bit gradients, not 32"):
        gradient_bits.load(_write(tmp_path, "a.json", NARROW), 32)
    other = _run(16, NARROW["records"], seeds=[1])
    with pytest.raises(gradient_bits.MismatchError, match="differ in seeds"):
        gradient_bits.check_same_settings(WIDE, other)
    faster = json.loads(json.dumps(NARROW))
    faster["config"]["settings"]["learning_rate"] = 0.05
    with pytest.raises(gradient_bits.MismatchError, match="train differently"):
        gradient_bits.check_same_settings(WIDE, faster)


def test_a_file_that_is_not_a_whole_run_is_refused_in_one_line(tmp_path):
    whole = json.dumps(NARROW)
    truncated = tmp_path / "truncated.json"
    truncated.write_text(whole[: len(whole) // 2])
    with pytest.raises(gradient_bits.MismatchError, match="not an update-scheme run's .json"):
        gradient_bits.load(str(truncated), 16)
    with pytest.raises(gradient_bits.MismatchError, match="no config"):
        gradient_bits.load(_write(tmp_path, "list.json", [1, 2]), 16)
    broken = json.loads(whole)
    broken["records"][0]["metrics"] = None
    with pytest.raises(gradient_bits.MismatchError, match="record 0 has an accuracy but no"):
        gradient_bits.load(_write(tmp_path, "broken.json", broken), 16)
