"""Compiled objects shared between firmware builds (different models,
inputs or output folders recompile nothing else).

An entry is keyed by the exact compile command and stays valid while the
source and every header it included (from gcc -MMD) hash the same.
"""

import hashlib
import json
import os
import pathlib
import shutil
import tempfile


def _digest(path):
    try:
        return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def _dependencies(depfile_text):
    """Paths listed in a make-style dependency file (`obj: src hdr ...`)."""
    text = depfile_text.replace("\\\n", " ")
    paths = []
    for rule in text.splitlines():
        _, _, prerequisites = rule.partition(": ")
        paths += prerequisites.split()
    return sorted(set(paths))


class ObjectCache:
    def __init__(self, root):
        self.root = pathlib.Path(root)

    def compile(self, command, obj, run):
        """command: a compile command without -o; run(command) runs it or raises.
        Leaves the object at `obj`."""
        key = hashlib.sha256(json.dumps(command).encode()).hexdigest()[:32]
        entry = self.root / key
        if _restore(entry, obj):
            return
        depfile = pathlib.Path(f"{obj}.d")
        run([*command, "-MMD", "-MF", str(depfile), "-o", str(obj)])
        deps = {path: _digest(path) for path in _dependencies(depfile.read_text())}
        self.root.mkdir(parents=True, exist_ok=True)
        staging = pathlib.Path(tempfile.mkdtemp(dir=self.root, prefix=".new-"))
        shutil.copyfile(obj, staging / "object.o")
        (staging / "deps.json").write_text(json.dumps(deps))
        try:
            os.rename(staging, entry)  # atomic; fails when the entry exists
        except OSError:
            _replace(staging, entry)
        shutil.rmtree(staging, ignore_errors=True)


def _restore(entry, obj):
    """Copies the entry's object to obj when it is still valid; False otherwise
    (absent, stale, or replaced by another build while we read it)."""
    try:
        deps = json.loads((entry / "deps.json").read_text())
        if not deps or not all(_digest(path) == digest for path, digest in deps.items()):
            return False
        shutil.copyfile(entry / "object.o", obj)
        return True
    except (OSError, ValueError):
        return False


def _replace(staging, entry):
    """Swaps staging in for an existing entry with renames, so a concurrent
    reader sees the old entry or the new one, never a half-deleted one."""
    aside = tempfile.mkdtemp(dir=entry.parent, prefix=".old-")
    try:
        os.rename(entry, aside)  # onto an empty folder: allowed, atomic
        os.rename(staging, entry)
    except OSError:
        pass  # another build replaced it meanwhile: theirs stays
    shutil.rmtree(aside, ignore_errors=True)
