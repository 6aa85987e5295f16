"""The runtime's includes never run up its layers (tools/include_graph.py,
tflm_training/runtime/README.md)."""

from tools import include_graph


def test_runtime_includes_follow_the_layers():
    assert include_graph.problems() == []


def test_every_runtime_file_has_a_layer():
    assert [f for f in include_graph.runtime_files() if include_graph.layer_of(f) is None] == []


def _runtime(tmp_path, files):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_an_upward_include_is_found(tmp_path):
    runtime = _runtime(
        tmp_path,
        {
            "math/tt_quant.h": '#include "kernels/common/tt_kernel.h"\n',
            "kernels/common/tt_kernel.h": '#include "math/tt_quant.h"\n',
        },
    )
    assert include_graph.problems(runtime) == [
        "math/tt_quant.h (math) includes kernels/common/tt_kernel.h (kernels): an upward include"
    ]


def test_records_include_only_standard_headers(tmp_path):
    runtime = _runtime(
        tmp_path,
        {
            "tt_records.h": '#include <stdint.h>\n#include "tt_status.h"\n',
            "tt_status.h": '#include "tt_records.h"\n',
        },
    )
    assert include_graph.problems(runtime) == [
        "tt_records.h includes tt_status.h: it may include only standard headers"
    ]


def test_includes_name_paths_from_the_runtime_root(tmp_path):
    runtime = _runtime(
        tmp_path, {"math/tt_quant.h": "", "math/tt_math.c": '#include "tt_quant.h"\n'}
    )
    assert include_graph.problems(runtime) == [
        "math/tt_math.c includes tt_quant.h: not a path from the runtime root"
    ]


def test_a_file_outside_every_layer_is_found(tmp_path):
    runtime = _runtime(tmp_path, {"misc/tt_new.c": ""})
    assert include_graph.problems(runtime) == [
        "misc/tt_new.c: in no layer (tools/include_graph.py LAYERS)"
    ]


def test_the_runtime_readme_shows_todays_graph():
    readme = (include_graph.RUNTIME / "README.md").read_text()
    assert "```\n" + include_graph.graph_text() + "\n```" in readme
