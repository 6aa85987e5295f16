"""16-bit against 32-bit gradients on the update-scheme benchmark: accuracy,
training arena and the layers each scheme picks, side by side.

  python benchmarks/update_schemes.py --gradient_bits 32 --out R/update_schemes_32bit.md ...
  python benchmarks/update_schemes.py --gradient_bits 16 --out R/update_schemes_16bit.md ...
  python benchmarks/gradient_bits.py --wide R/update_schemes_32bit.json \
      --narrow R/update_schemes_16bit.json [--out benchmarks/results/gradient_bits.md]

(R = benchmarks/results/gradient_bits; the two runs must share every other
setting.) With 16-bit gradients (runtime/math/tt_grad.h) every activation
gradient is stored as bfloat16, so a budget holds a deeper plan: where a
scheme picks the same layers at both widths, the accuracy difference is
the gradients' precision alone; where it picks others, it is also the
plan's.
"""

import json
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from absl import app, flags

from benchmarks import gradient_bits_report as comparison
from benchmarks import report

RESULTS = REPO / "benchmarks" / "results" / "gradient_bits"
_WIDE = flags.DEFINE_string(
    "wide",
    str(RESULTS / "update_schemes_32bit.json"),
    "The update-scheme run with --gradient_bits 32 (its .json).",
)
_NARROW = flags.DEFINE_string(
    "narrow", str(RESULTS / "update_schemes_16bit.json"), "The same run with --gradient_bits 16."
)
_OUT = flags.DEFINE_string(
    "out", str(REPO / "benchmarks" / "results" / "gradient_bits.md"), "Markdown report."
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        wide, narrow = comparison.load(_WIDE.value, 32), comparison.load(_NARROW.value, 16)
        comparison.check_same_settings(wide, narrow)
    except (OSError, comparison.MismatchError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    rows, summary = comparison.compare(wide, narrow)
    out = pathlib.Path(_OUT.value)
    try:
        report.write_whole(out, comparison.render(rows, summary, wide, narrow))
        numbers = json.dumps({"summary": summary, "rows": rows}, indent=1)
        report.write_whole(out.with_suffix(".json"), numbers + "\n")
    except OSError as error:
        print(f"error: cannot write the report: {error}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    app.run(main)
