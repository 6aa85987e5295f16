"""The runtime's include graph, checked against its layers.

  python tools/include_graph.py   # which layers each layer includes; exit 1 on a violation

Every runtime file belongs to one layer (LAYERS, bottom first; the layers
and why are in tflm_training/runtime/README.md). A file may include files
of its own layer and of layers below it, never above; every include of a
runtime header names it from the runtime root (`#include "math/tt_quant.h"`,
one -I), and tt_records.h includes only standard headers.
"""

import pathlib
import re
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from absl import app

from tflm_training import host_build

RUNTIME = host_build.RUNTIME
RECORDS = "tt_records.h"

# (layer, the runtime-root paths in it: folders end in "/"), bottom first.
LAYERS = (
    ("records", (RECORDS,)),
    ("status", ("tt_status.h", "tt_status.c")),
    ("model", ("model/",)),
    ("math", ("math/",)),
    ("memory", ("memory/",)),
    ("optimizer", ("optimizer/",)),
    ("kernels", ("kernels/",)),
    ("interpreter", ("tt_interpreter.h", "interpreter/")),
    ("training", ("tt_trainer.h", "training/")),
    ("learner", ("tt_learner.h", "tt_flash.h", "learner/")),
)

_INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)


def layer_of(path):
    """The index in LAYERS of a runtime-root path, or None."""
    for index, (_, members) in enumerate(LAYERS):
        for member in members:
            if path == member or (member.endswith("/") and path.startswith(member)):
                return index
    return None


def runtime_files(runtime=RUNTIME):
    return sorted(
        p.relative_to(runtime).as_posix() for p in runtime.rglob("*") if p.suffix in (".c", ".h")
    )


def includes(runtime=RUNTIME):
    """{file: [(quoted, included path)]} for every runtime source and header."""
    return {
        f: [(m.group(1) == '"', m.group(2)) for m in _INCLUDE.finditer((runtime / f).read_text())]
        for f in runtime_files(runtime)
    }


def problems(runtime=RUNTIME):
    """What breaks the layering, one line each (empty when nothing does)."""
    graph = includes(runtime)
    found = []
    for path in graph:
        if layer_of(path) is None:
            found.append(f"{path}: in no layer (tools/include_graph.py LAYERS)")
    for path, targets in graph.items():
        for quoted, target in targets:
            if not quoted:
                continue
            if path == RECORDS:
                found.append(f"{RECORDS} includes {target}: it may include only standard headers")
            elif target not in graph:
                found.append(f"{path} includes {target}: not a path from the runtime root")
            elif (
                layer_of(path) is not None
                and layer_of(target) is not None
                and layer_of(target) > layer_of(path)
            ):
                found.append(
                    f"{path} ({LAYERS[layer_of(path)][0]}) includes {target} "
                    f"({LAYERS[layer_of(target)][0]}): an upward include"
                )
    return found


def layer_edges(runtime=RUNTIME):
    """{layer: the other layers its files include}, bottom first."""
    edges = {name: set() for name, _ in LAYERS}
    for path, targets in includes(runtime).items():
        for quoted, target in targets:
            a, b = layer_of(path), layer_of(target)
            if quoted and a is not None and b is not None and a != b:
                edges[LAYERS[a][0]].add(LAYERS[b][0])
    return {name: sorted(targets) for name, targets in edges.items() if targets}


def graph_text(runtime=RUNTIME):
    """layer_edges as the runtime's README shows them, one layer a line."""
    width = max(len(name) for name, _ in LAYERS)
    return "\n".join(
        f"{name:<{width}} -> {', '.join(targets)}" for name, targets in layer_edges(runtime).items()
    )


def main(argv):
    del argv
    print(graph_text())
    found = problems()
    for line in found:
        print(f"error: {line}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    app.run(main)
