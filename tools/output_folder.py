"""Output folders written whole or not at all.

    with output_folder.transaction(out, carry=("cache.json",)) as tx:
        (tx.work / "report.json").write_text(...)

A run writes everything into a private folder beside --out (same parent,
so the final move is a rename on one filesystem). When the body succeeds,
that folder replaces --out: the old --out is renamed aside, the new one
renamed in, the old one deleted, all under a lock file beside --out, so
concurrent runs never interleave: the last to finish wins and --out always
holds the files of exactly one run. When the body fails (any exception,
KeyboardInterrupt included), --out is left exactly as it was; the private
folder is removed if the run wrote nothing into it, else kept, and the
exception carries a note naming it (with_notes).

Each run replaces --out whole, so a folder these tools did not write (no
MARKER inside, and not empty) is refused rather than deleted.
"""

import contextlib
import dataclasses
import glob
import os
import pathlib
import shutil
import stat
import tempfile

from tflm_training.host_build import file_lock

MARKER = ".tflm_training_output"
_MARKER_TEXT = (
    "Written by a tflm_training tool (tools/output_folder.py). A run of the tool "
    "replaces this whole folder.\n"
)


class OutputFolderError(RuntimeError):
    """--out cannot be used, and what to do."""


@dataclasses.dataclass(frozen=True)
class Transaction:
    out: pathlib.Path  # where the outputs land when the run succeeds
    work: pathlib.Path  # where the run writes them

    def final(self, path):
        """Where `path` (inside work) will be once the run has succeeded."""
        return self.out / pathlib.Path(path).relative_to(self.work)


def check(out):
    """--out as an absolute path, refused when it names a file or a folder
    these tools did not write (a run replaces --out whole)."""
    out = pathlib.Path(out).resolve()
    if out.parent == out:
        raise OutputFolderError(
            f"--out {out} is the filesystem root; give a folder for this run's outputs"
        )
    if _is_other_than_folder(out):
        raise OutputFolderError(
            f"--out {out} is a file, not a folder; give a folder path "
            "(it is created, or replaced whole by this run)"
        )
    if out.is_dir() and not _replaceable(out):
        names = sorted(p.name for p in out.iterdir())
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise OutputFolderError(
            f"--out {out} is a folder these tools did not write (it holds {shown}); a run "
            "replaces --out whole, so give a new or empty folder for this run's outputs"
        )
    return out


def _is_other_than_folder(path):
    """One stat: a run swapping --out may rename it away at any moment."""
    try:
        return not stat.S_ISDIR(os.stat(path).st_mode)
    except FileNotFoundError:
        return False


def _replaceable(folder):
    # One listing: a run swapping --out renames whole folders, so a listing
    # sees the old folder or the new one, never a mix of the two (a marker
    # check and a listing apart could see the old one go and then the new
    # one's files without its marker, and refuse a folder a tool wrote).
    try:
        names = [path.name for path in folder.iterdir()]
    except FileNotFoundError:  # another run is swapping it; _commit checks again
        return True
    return MARKER in names or not names


def check_inputs_outside(out, inputs):
    """Refuses input files inside --out, which a run replaces whole.
    inputs: {flag: path or None}."""
    out = pathlib.Path(out).resolve()
    for flag, path in inputs.items():
        if path is None:
            continue
        path = pathlib.Path(path).resolve()
        if path == out or out in path.parents:
            raise OutputFolderError(
                f"{flag} {path} lies inside --out {out}, which this run replaces whole; "
                "copy it out of that folder first, or give another --out"
            )


def lock_path(out):
    return out.parent / f".{out.name}.lock"


@contextlib.contextmanager
def transaction(out, carry=()):
    """Yields a Transaction whose `work` folder replaces `out` when the body
    succeeds. carry: paths relative to out (caches) copied from the
    previous --out into work first, so a run can read and update them."""
    out = check(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        work = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    except OSError as e:
        raise OutputFolderError(
            f"cannot create a folder beside --out {out}: {e.strerror or e}"
        ) from None
    try:
        _seed(work, out, carry)
    except BaseException as e:
        shutil.rmtree(work, ignore_errors=True)
        if isinstance(e, OSError):
            raise OutputFolderError(
                f"cannot copy the caches of --out {out}: {e.strerror or e}"
            ) from None
        raise
    seeded = _snapshot(work)
    try:
        yield Transaction(out, work)
        _commit(work, out)
    except BaseException as error:
        _abandon(work, seeded, error)
        raise


def _seed(work, out, carry):
    (work / MARKER).write_text(_MARKER_TEXT, encoding="utf-8")
    if not carry or not out.is_dir():
        return
    with file_lock(lock_path(out)):  # no concurrent run swaps --out while we copy
        for name in carry:
            source = out / name
            if source.is_file():
                target = work / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)


def _snapshot(folder):
    """{relative path: (size, mtime)} of every file under folder."""
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = pathlib.Path(root) / name
            stat = path.lstat()
            files[str(path.relative_to(folder))] = (stat.st_size, stat.st_mtime_ns)
    return files


def _commit(work, out):
    with file_lock(lock_path(out)):
        # Another run may have put something else there since we started.
        check(out)
        _remove_stale_asides(out)
        try:
            if out.exists():
                _swap(work, out)
            else:
                os.rename(work, out)
        except OSError as e:
            raise OutputFolderError(f"cannot replace --out {out}: {e.strerror or e}") from None


def _swap(work, out):
    aside = tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent)
    os.rename(out, aside)  # onto an empty folder: allowed, atomic
    try:
        os.rename(work, out)
    except OSError:
        os.rename(aside, out)
        raise
    # The run has succeeded; a leftover is removed by the next commit.
    shutil.rmtree(aside, ignore_errors=True)


def _remove_stale_asides(out):
    """Old folders a killed run left between its two renames (only a lock
    holder renames, so none of them is in use)."""
    pattern = f".{glob.escape(out.name)}.old-*"
    for stale in out.parent.glob(pattern):
        shutil.rmtree(stale, ignore_errors=True)


def _abandon(work, seeded, error):
    if _snapshot(work) == seeded:
        shutil.rmtree(work, ignore_errors=True)
    else:
        _add_note(error, f"partial files of this run are in {work}")


def _add_note(error, text):
    if hasattr(error, "add_note"):
        error.add_note(text)
    else:  # Python 3.10
        error.__notes__ = [*getattr(error, "__notes__", []), text]


def with_notes(message, error):
    """message, then the notes transaction() added to error (where the
    partial files of the run are), on one line."""
    return "; ".join([message, *getattr(error, "__notes__", [])])
