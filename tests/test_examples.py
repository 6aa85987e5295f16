"""examples/ holds the files the tools read by default (examples/README.md),
and holds them once: the tests read those fixtures from there too, so no
tracked file anywhere else in the repository is a copy of one."""

import json
import pathlib
import subprocess

import pytest

import training_helpers as th
from tools import deploy_steps, firmware_build

REPO = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


def _example_files():
    return sorted(p for p in EXAMPLES.iterdir() if p.name != "README.md")


def _tracked_files():
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, timeout=60
        ).stdout
    except (OSError, subprocess.SubprocessError):
        pytest.skip("not a git checkout: no list of tracked files")
    return [REPO / name for name in listed.decode().split("\0") if name]


def test_the_tools_defaults_are_examples():
    defaults = [
        firmware_build.DEFAULT_MODEL,
        deploy_steps.DEFAULT_MODEL,
        *deploy_steps.DATASETS["fsdd"],
    ]
    for path in defaults:
        assert path.parent == EXAMPLES and path.is_file(), path


def test_every_example_file_is_described():
    files = _example_files()
    assert len(files) >= 5
    readme = (EXAMPLES / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| `")]
    described = {line.split("`")[1] for line in rows}
    assert {p.name for p in files} == described, (
        "examples/README.md's table and the files in examples/ disagree"
    )


def test_no_example_file_has_a_second_copy():
    examples = {p.read_bytes(): p.name for p in _example_files()}
    sizes = {len(data) for data in examples}
    copies = [
        f"{path.relative_to(REPO)} is a copy of examples/{examples[path.read_bytes()]}"
        for path in _tracked_files()
        if path.parent != EXAMPLES
        and path.is_file()
        and path.stat().st_size in sizes
        and path.read_bytes() in examples
    ]
    assert not copies, "\n".join(copies)


def test_the_fixtures_kept_in_examples_are_found_there():
    """The test models' manifests and tests/training_helpers.py point at
    examples/ for the fixtures kept there."""
    for manifest in (th.MODELS / "manifest.json", th.MODELS / "transfer" / "manifest.json"):
        for name, entry in json.loads(manifest.read_text())["models"].items():
            assert (manifest.parent / entry["file"]).is_file(), (manifest, name)
    for path in th.EXAMPLE_MODELS.values():
        assert path.parent == EXAMPLES and path.is_file(), path
    for name in th.EXAMPLE_DATASETS:
        assert th.data_path(name).parent == EXAMPLES and th.data_path(name).is_file(), name
