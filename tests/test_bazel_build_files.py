"""Bazel cannot fetch its C rules offline here, so this keeps the BUILD
file's source lists true to the real sources instead."""

import ast
import pathlib
import re

REPO = pathlib.Path(__file__).resolve().parents[1]
RUNTIME = REPO / "tflm_training" / "runtime"


def _string_list(build_text, attribute):
    match = re.search(attribute + r"\s*=\s*(\[[^\]]*\])", build_text)
    assert match, f"{attribute} not found in the BUILD file"
    return ast.literal_eval(match.group(1))


def test_runtime_build_lists_every_source_and_header():
    build_text = (RUNTIME / "BUILD").read_text()
    declared = set(_string_list(build_text, "srcs")) | set(_string_list(build_text, "hdrs"))
    on_disk = {str(p.relative_to(RUNTIME)) for p in RUNTIME.rglob("*") if p.suffix in (".c", ".h")}
    assert sorted(on_disk - declared) == [], "sources missing from BUILD"
    assert sorted(declared - on_disk) == [], "BUILD names files that do not exist"


def test_public_headers_are_declared_as_hdrs():
    build_text = (RUNTIME / "BUILD").read_text()
    hdrs = set(_string_list(build_text, "hdrs"))
    assert {"tt_interpreter.h", "tt_status.h", "model/tt_flatbuffer.h"} <= hdrs


def test_bazel_copts_carry_the_flags_bit_exactness_depends_on():
    copts = _string_list((RUNTIME / "BUILD").read_text(), "copts")
    from tflm_training import host_build

    for flag in ("-std=c11", "-fwrapv", "-ffp-contract=off"):
        assert flag in copts and flag in host_build.COMMON_FLAGS, flag


def test_workspace_and_alias_exist():
    assert 'workspace(name = "tflm_training")' in (REPO / "WORKSPACE").read_text()
    assert "//tflm_training/runtime:tflm_training" in (REPO / "BUILD").read_text()
