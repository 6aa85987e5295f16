r"""Does a model fit the board? Flash and RAM (inference arena, classifier
and last-two-layers training arenas: planning.footprint) of an int8
.tflite, or of a zoo architecture converted with random weights
(pipeline.untrained; needs TensorFlow).

    python tools/footprint.py --model mobilenet_v2 --num_classes 10
    python tools/footprint.py --tflite ds_cnn.tflite
"""

import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from absl import app, flags

from pipeline import untrained, zoo
from planning import footprint

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_enum("model", "ds_cnn", sorted(zoo.MODELS), "Zoo model.")
    flags.DEFINE_integer("num_classes", None, "Classes of the head (default: the config default).")
    flags.DEFINE_multi_string(
        "config", [], "Another config field, field=value (a Python literal); repeatable."
    )
    flags.DEFINE_string("tflite", None, "Measure this .tflite instead.")
    flags.DEFINE_string("board", "nrf52840", "Board (boards/<board>).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError("unexpected arguments: %s" % argv[1:])
    if FLAGS.tflite:
        with open(FLAGS.tflite, "rb") as f:
            buf = f.read()
    else:
        overrides = zoo.parse_overrides(FLAGS.config)
        if FLAGS.num_classes:
            overrides["num_classes"] = FLAGS.num_classes
        config = zoo.make_config(FLAGS.model, **overrides)
        size = zoo.summary(zoo.build(config))
        print("%s: %d params, %.2f M MACs" % (FLAGS.model, size["params"], size["macs"] / 1e6))
        buf = untrained.convert_untrained(config)
    for line in footprint.describe(footprint.measure(buf), FLAGS.board):
        print(line)


if __name__ == "__main__":
    define_flags()
    app.run(main)
