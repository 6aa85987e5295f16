"""Outputs are written whole or not at all (tools/output_folder.py): a run
writes into a private folder beside --out, which replaces --out only when
the run succeeds, under a lock; a failed or interrupted run leaves --out
byte for byte as it was. deploy.py, learn.py, analyze.py and build.py
write their --out this way. The host library and the firmware object cache
replace their files with renames of private temporaries, so concurrent
builds never see each other's half-written files."""

import fcntl
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from tflm_training import _native, host_build
from tflm_training.errors import LibraryNotBuiltError
from tools import deploy, deploy_steps, firmware_build, object_cache, output_folder

REPO = pathlib.Path(__file__).resolve().parents[1]
MARKER = output_folder.MARKER


def tree(folder):
    """{relative path: (bytes, mode), or the mode of a folder} of everything
    under folder: equal trees are equal byte for byte."""
    result = {}
    for path in sorted(pathlib.Path(folder).rglob("*")):
        mode = path.lstat().st_mode
        result[str(path.relative_to(folder))] = mode if path.is_dir() else (path.read_bytes(), mode)
    return result


def hidden_beside(out):
    """The partial and set-aside folders beside out."""
    return sorted(
        p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.") and p.is_dir()
    )


def write_run(folder, name, files=("a.bin", "sub/b.txt")):
    for relative in files:
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{name} {relative}\n")


@pytest.fixture
def previous_out(tmp_path):
    """An --out an earlier run wrote."""
    out = tmp_path / "out"
    with output_folder.transaction(out) as tx:
        write_run(tx.work, "earlier", ("report.json", "nrf52840/firmware.hex", "old_only.txt"))
    return out


# -- output_folder ------------------------------------------------------------------------


def test_a_successful_run_replaces_out_whole(previous_out):
    with output_folder.transaction(previous_out) as tx:
        assert tx.work.parent == previous_out.parent and tx.work.name.startswith(".out.")
        write_run(tx.work, "new")
        assert tx.final(tx.work / "sub" / "b.txt") == previous_out / "sub" / "b.txt"
        assert (previous_out / "old_only.txt").is_file()  # untouched until the end
    assert sorted(tree(previous_out)) == [MARKER, "a.bin", "sub", "sub/b.txt"]
    assert (previous_out / "a.bin").read_text() == "new a.bin\n"
    assert hidden_beside(previous_out) == []


def test_a_new_out_is_created_with_its_parents(tmp_path):
    out = tmp_path / "deep" / "er" / "out"
    with output_folder.transaction(out) as tx:
        write_run(tx.work, "first")
    assert sorted(tree(out)) == [MARKER, "a.bin", "sub", "sub/b.txt"]


@pytest.mark.parametrize(
    "error", [RuntimeError("the build failed"), KeyboardInterrupt(), SystemExit(3)]
)
def test_a_failed_run_leaves_out_as_it_was_and_says_where_its_files_are(previous_out, error):
    before = tree(previous_out)
    with pytest.raises(type(error)) as raised:
        with output_folder.transaction(previous_out) as tx:
            write_run(tx.work, "failed")
            raise error
    assert tree(previous_out) == before
    [partial] = hidden_beside(previous_out)
    partial = previous_out.parent / partial
    assert partial == tx.work and (partial / "a.bin").read_text() == "failed a.bin\n"
    assert output_folder.with_notes("the build failed", raised.value) == (
        f"the build failed; partial files of this run are in {partial}"
    )


def test_a_run_that_wrote_nothing_leaves_no_partial_folder(previous_out):
    before = tree(previous_out)
    with pytest.raises(ValueError) as raised:
        with output_folder.transaction(previous_out, carry=["report.json"]):
            raise ValueError("bad input")
    assert tree(previous_out) == before and hidden_beside(previous_out) == []
    assert output_folder.with_notes("bad input", raised.value) == "bad input"


def test_out_must_be_a_folder_these_tools_wrote(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("mine\n")
    with pytest.raises(output_folder.OutputFolderError, match="is a file, not a folder"):
        with output_folder.transaction(a_file):
            pytest.fail("the body ran")
    foreign = tmp_path / "my_project"
    write_run(foreign, "mine")
    before = tree(tmp_path)
    with pytest.raises(
        output_folder.OutputFolderError,
        match="did not write .it holds a.bin, sub.; a run replaces --out whole",
    ):
        with output_folder.transaction(foreign):
            pytest.fail("the body ran")
    assert tree(tmp_path) == before
    empty = tmp_path / "empty"
    empty.mkdir()
    with output_folder.transaction(empty) as tx:
        write_run(tx.work, "new")
    assert (empty / "a.bin").read_text() == "new a.bin\n"


def test_inputs_inside_out_are_refused(previous_out, tmp_path):
    inside = previous_out / "report.json"
    with pytest.raises(
        output_folder.OutputFolderError, match=f"--model {inside} lies inside --out {previous_out}"
    ):
        output_folder.check_inputs_outside(previous_out, {"--model": inside, "--plan": None})
    output_folder.check_inputs_outside(previous_out, {"--model": tmp_path / "m.tflite"})


def test_carried_caches_are_read_and_updated_by_the_run(previous_out):
    cache = previous_out / "cache.json"
    with output_folder.transaction(previous_out) as tx:
        (tx.work / "cache.json").write_text("v1\n")
    with output_folder.transaction(previous_out, carry=["cache.json", "absent.json"]) as tx:
        assert (tx.work / "cache.json").read_text() == "v1\n"
        assert not (tx.work / "absent.json").exists()
        (tx.work / "cache.json").write_text("v2\n")
    assert cache.read_text() == "v2\n"
    with pytest.raises(RuntimeError):
        with output_folder.transaction(previous_out, carry=["cache.json"]) as tx:
            (tx.work / "cache.json").write_text("v3 of a failed run\n")
            raise RuntimeError("failed")
    assert cache.read_text() == "v2\n"


def test_the_last_run_to_finish_wins_whole(previous_out):
    with output_folder.transaction(previous_out) as first:
        write_run(first.work, "first", ("a.bin", "first_only.txt"))
        with output_folder.transaction(previous_out) as second:
            write_run(second.work, "second", ("a.bin", "second_only.txt"))
        assert (previous_out / "second_only.txt").is_file()
    assert sorted(tree(previous_out)) == [MARKER, "a.bin", "first_only.txt"]
    assert (previous_out / "a.bin").read_text() == "first a.bin\n"
    assert hidden_beside(previous_out) == []


def test_out_is_swapped_under_the_lock(previous_out, monkeypatch):
    real_rename = os.rename
    held = []

    def rename(source, target):
        with open(output_folder.lock_path(previous_out), "a", encoding="utf-8") as other:
            try:
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held.append(False)
            except BlockingIOError:
                held.append(True)
        real_rename(source, target)

    monkeypatch.setattr(output_folder.os, "rename", rename)
    with output_folder.transaction(previous_out) as tx:
        write_run(tx.work, "new")
    assert held == [True, True]  # --out aside, then the new one in
    assert (previous_out / "a.bin").read_text() == "new a.bin\n"


def test_a_left_over_old_folder_is_removed_by_the_next_run(previous_out):
    """A run killed between its two renames leaves the old --out aside."""
    stale = previous_out.parent / ".out.old-killed"
    write_run(stale, "stale")
    with output_folder.transaction(previous_out) as tx:
        write_run(tx.work, "new")
    assert hidden_beside(previous_out) == []


CONCURRENT_RUNS = textwrap.dedent("""
    import pathlib, sys
    sys.path.insert(0, sys.argv[1])
    from tools import output_folder
    out, name = pathlib.Path(sys.argv[2]), sys.argv[3]
    for run in range(int(sys.argv[4])):
        with output_folder.transaction(out, carry=["log.txt"]) as tx:
            log = tx.work / "log.txt"
            log.write_text((log.read_text() if log.exists() else "") + f"{name}-{run}\\n")
            for part in ("a", "b", "c"):
                (tx.work / part).write_text(f"{name}-{run}\\n")
            (tx.work / f"only-{name}-{run}").write_text("")
""")


def test_concurrent_runs_never_interleave(tmp_path):
    out, runs = tmp_path / "out", 6
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT_RUNS, str(REPO), str(out), f"p{i}", str(runs)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    for process in processes:
        assert process.wait() == 0, process.stderr.read()
        process.stderr.close()
    files = tree(out)
    [only] = [name for name in files if name.startswith("only-")]
    winner = only[len("only-") :]
    assert sorted(files) == sorted([MARKER, "a", "b", "c", "log.txt", only])
    assert {(out / part).read_text() for part in "abc"} == {f"{winner}\n"}
    log = (out / "log.txt").read_text().splitlines()
    assert log[-1] == winner and len(log) == len(set(log)) <= 4 * runs
    assert hidden_beside(out) == []


# -- the tools ----------------------------------------------------------------------------


def run_deploy(capsys, *args):
    status = deploy.run(
        [
            "deploy.py",
            "--noemulate",
            "--scheme",
            "classifier",
            "--train_samples",
            "20",
            "--test_samples",
            "10",
            *args,
        ]
    )
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def half_built(
    board_name, model_bytes, plan, out_dir, heldout_samples, log=print, atomic_steps=False
):
    """The firmware build, failing after it has written part of its folder."""
    pathlib.Path(out_dir).mkdir(parents=True)
    (pathlib.Path(out_dir) / "firmware.elf").write_bytes(b"\x7fELF half")
    raise deploy_steps.DeployError("linking failed: out of disk space")


def test_deploy_failing_late_leaves_out_as_it_was(capsys, previous_out, monkeypatch):
    monkeypatch.setattr(deploy_steps, "build_learner", half_built)
    before = tree(previous_out)
    status, _, err = run_deploy(capsys, "--out", str(previous_out))
    assert status == 2 and err.count("\n") == 1
    [partial] = hidden_beside(previous_out)
    partial = previous_out.parent / partial
    assert err == (
        f"error: linking failed: out of disk space; partial files of this run are in {partial}\n"
    )
    assert tree(previous_out) == before
    assert {"model.tflite", "plan.bin", "plan.txt", "nrf52840/firmware.elf"} <= set(tree(partial))


def test_deploy_interrupted_leaves_out_as_it_was(capsys, previous_out, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(deploy_steps, "build_learner", interrupted)
    before = tree(previous_out)
    status, _, err = run_deploy(capsys, "--out", str(previous_out))
    assert tree(previous_out) == before
    [partial] = hidden_beside(previous_out)
    assert status == 130
    assert err == (
        "interrupted: --out is as it was before this run; partial files of this "
        f"run are in {previous_out.parent / partial}\n"
    )


def test_sparse_search_reads_its_cache_from_the_previous_out(capsys, previous_out, monkeypatch):
    from planning import contribution

    with output_folder.transaction(previous_out) as tx:
        (tx.work / deploy_steps.CONTRIBUTIONS_FILE).write_text('{"runs": "earlier"}\n')
    seen = []

    def analyze(*args, cache_path, **kwargs):
        seen.append((pathlib.Path(cache_path), pathlib.Path(cache_path).read_text()))
        raise deploy_steps.DeployError("stopped after reading the cache")

    monkeypatch.setattr(contribution, "analyze", analyze)
    before = tree(previous_out)
    status, _, err = run_deploy(capsys, "--scheme", "sparse-search", "--out", str(previous_out))
    assert status == 2 and "stopped after reading the cache" in err
    [(path, text)] = seen
    assert text == '{"runs": "earlier"}\n' and path.parent != previous_out
    assert path.parent.parent == previous_out.parent
    assert tree(previous_out) == before


@pytest.mark.firmware
@pytest.mark.skipif(shutil.which(firmware_build.GCC) is None, reason="needs arm-none-eabi-gcc")
def test_deploy_replaces_out_whole_and_reports_the_final_paths(capsys, previous_out):
    status, out, err = run_deploy(capsys, "--out", str(previous_out))
    assert status == 0, out[-2000:] + err
    files = set(tree(previous_out))
    assert {"model.tflite", "plan.bin", "plan.txt", "report.json", "nrf52840/firmware.hex"} <= files
    assert "old_only.txt" not in files and hidden_beside(previous_out) == []
    report = json.loads((previous_out / "report.json").read_text())
    assert report["report_path"] == str(previous_out / "report.json")
    hex_file = previous_out / "nrf52840" / "firmware.hex"
    assert f"--firmware {hex_file.parent}" in report["flash"] and f"built {hex_file};" in out


@pytest.mark.firmware
@pytest.mark.skipif(shutil.which(firmware_build.GCC) is None, reason="needs arm-none-eabi-gcc")
def test_build_writes_its_out_as_one_run(tmp_path, previous_out):
    def build(out):
        return subprocess.run(
            [sys.executable, "tools/build.py", "--board=nrf52840", f"--out={out}"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
        )

    result = build(previous_out)
    assert result.returncode == 0, result.stderr
    assert f"built {previous_out / 'firmware.hex'}" in result.stdout
    assert (previous_out / "firmware.elf").is_file()
    assert not (previous_out / "old_only.txt").exists() and hidden_beside(previous_out) == []
    a_file = tmp_path / "a_file"
    a_file.write_text("mine\n")
    result = build(a_file)
    assert result.returncode == 1
    assert (
        result.stderr == f"error: --out {a_file} is a file, not a folder; give a folder "
        "path (it is created, or replaced whole by this run)\n"
    )
    assert a_file.read_text() == "mine\n"


# -- shared build outputs -------------------------------------------------------------------


FAKE_GCC = textwrap.dedent("""\
    #!{python}
    # A compiler that checks the build lock is held, records its -o and
    # writes a library there.
    import fcntl, pathlib, sys
    with open({lock!r}, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = False
        except BlockingIOError:
            held = True
    output = sys.argv[sys.argv.index("-o") + 1]
    with open({log!r}, "a") as log:
        log.write(f"{{held}} {{output}}\\n")
    pathlib.Path(output).write_bytes(b"library")
""")


@pytest.fixture
def fake_host_build(tmp_path, monkeypatch):
    """host_build on a private runtime and build folder, compiled by a fake gcc.
    Returns the fake's log: one line per compile, "<lock held> <-o path>"."""
    runtime, build = tmp_path / "runtime", tmp_path / "_build"
    runtime.mkdir()
    (runtime / "tt_one.c").write_text("int tt_one(void) { return 1; }\n")
    (runtime / "tt_one.h").write_text("int tt_one(void);\n")
    bin_dir, log = tmp_path / "bin", tmp_path / "compiles.log"
    bin_dir.mkdir()
    (bin_dir / "gcc").write_text(
        FAKE_GCC.format(python=sys.executable, lock=str(build / host_build.LOCK_NAME), log=str(log))
    )
    (bin_dir / "gcc").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(host_build, "RUNTIME", runtime)
    monkeypatch.setattr(host_build, "BUILD_DIR", build)
    return log


def test_host_builds_take_turns_and_write_a_private_temporary(fake_host_build):
    library = host_build.build_host()
    assert library.read_bytes() == b"library"
    [line] = fake_host_build.read_text().splitlines()
    held, output = line.split(" ", 1)
    assert held == "True"
    output = pathlib.Path(output)
    assert output.name == library.name and output.parent.parent == library.parent
    assert output.parent.name.startswith(".build-") and not output.parent.exists()


def test_concurrent_stale_checks_build_once(fake_host_build):
    results = []
    threads = [
        threading.Thread(
            target=lambda: results.append(host_build.build_host_if_stale(gradient_bits=32))
        )
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4 and len(set(results)) == 1
    assert len(fake_host_build.read_text().splitlines()) == 1
    assert host_build.build_host_if_stale(gradient_bits=32) == results[0]  # fresh: no compile
    assert len(fake_host_build.read_text().splitlines()) == 1


def test_a_stale_check_builds_the_library_of_each_gradient_width(fake_host_build):
    default = host_build.build_host_if_stale()
    assert default == host_build.library_path()
    outputs = [
        pathlib.Path(line.split(" ", 1)[1]).parent.parent.name
        for line in fake_host_build.read_text().splitlines()
    ]
    assert sorted(outputs) == ["_build", "gradients_16"]
    assert host_build.build_host_if_stale() == default  # both fresh: no compile
    assert len(fake_host_build.read_text().splitlines()) == 2


def fake_compile(source_text):
    """An ObjectCache run() that "compiles" by copying the source to -o and
    lists the source in the depfile; counts its calls."""
    calls = []

    def run(command):
        calls.append(command)
        source = pathlib.Path(command[command.index("-c") + 1])
        obj = pathlib.Path(command[command.index("-o") + 1])
        depfile = pathlib.Path(command[command.index("-MF") + 1])
        obj.write_text(source_text(source))
        depfile.write_text(f"{obj}: {source}\n")

    return run, calls


def test_object_cache_replaces_stale_entries_and_survives_vanished_ones(tmp_path):
    source = tmp_path / "a.c"
    source.write_text("version 1\n")
    cache = object_cache.ObjectCache(tmp_path / "cache")
    run, calls = fake_compile(lambda path: path.read_text())
    command = ["gcc", "-c", str(source)]
    obj = tmp_path / "a.o"
    cache.compile(command, obj, run)
    cache.compile(command, obj, run)
    assert len(calls) == 1 and obj.read_text() == "version 1\n"
    source.write_text("version 2\n")  # stale: compiled again, the entry replaced
    cache.compile(command, obj, run)
    obj.unlink()
    cache.compile(command, obj, run)
    assert len(calls) == 2 and obj.read_text() == "version 2\n"
    [entry] = (tmp_path / "cache").iterdir()  # no staging or set-aside folder left
    (entry / "object.o").unlink()  # as if another build swapped it out mid-read
    cache.compile(command, obj, run)
    assert len(calls) == 3 and obj.read_text() == "version 2\n"


@pytest.mark.firmware
def test_ctrl_c_says_out_is_kept_without_a_traceback(tmp_path):
    """SIGINT while the device trains: exit status 130, one line, --out as
    it was, and the emulated device gone with the tool."""
    out = tmp_path / "out"
    out.mkdir()
    (out / output_folder.MARKER).write_text("")
    (out / "report.json").write_text("{}")
    before = tree(out)
    process = subprocess.Popen(
        [
            sys.executable,
            "tools/deploy.py",
            "--out",
            str(out),
            "--scheme",
            "classifier",
            "--train_samples",
            "300",
            "--epochs",
            "3",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in process.stdout:  # interrupt once samples stream
        if "samples/s" in line:
            break
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert (
        err.startswith(
            "interrupted: --out is as it was before this run; partial files of this run are in "
        )
        and err.count("\n") == 1
    )
    assert tree(out) == before
    partial = pathlib.Path(err.rsplit(" are in ", 1)[1].strip())
    assert (partial / "nrf52840").is_dir()
    assert subprocess.run(["pgrep", "-f", str(partial)], capture_output=True).returncode == 1


def test_a_changed_runtime_file_makes_the_library_stale_and_a_rebuild_current(fake_host_build):
    library = host_build.build_host_if_stale(gradient_bits=32)
    flags = host_build.compile_flags()
    assert host_build.staleness(library, flags) is None
    (host_build.RUNTIME / "tt_one.h").write_text("int tt_one(void); /* changed */\n")
    assert "other runtime sources" in host_build.staleness(library, flags)
    assert "other runtime sources" in host_build.staleness(library, host_build.compile_flags(True))
    host_build.build_host_if_stale(gradient_bits=32)
    assert host_build.staleness(library, flags) is None
    assert len(fake_host_build.read_text().splitlines()) == 2


def test_the_binding_refuses_a_library_built_from_other_sources(fake_host_build, monkeypatch):
    library = host_build.build_host_if_stale(gradient_bits=32)
    (host_build.RUNTIME / "tt_one.c").write_text("int tt_one(void) { return 2; }\n")
    monkeypatch.delenv(_native.LIBRARY_ENV, raising=False)
    monkeypatch.setattr(_native, "DEFAULT_LIBRARY", library)
    monkeypatch.setattr(_native, "_libraries", {})
    with pytest.raises(LibraryNotBuiltError, match="out of date.*python tools/build.py --host"):
        _native.library(32)
    library.with_name(library.name + host_build.DIGEST_SUFFIX).unlink()
    with pytest.raises(LibraryNotBuiltError, match="no record of the sources"):
        _native.library(32)  # no record of its sources: refused too
    library.unlink()
    with pytest.raises(LibraryNotBuiltError, match="is missing.*python tools/build.py --host"):
        _native.library(32)


def test_a_damaged_library_is_refused_before_the_loader_sees_it(fake_host_build, monkeypatch):
    library = host_build.build_host_if_stale(gradient_bits=32)
    library.write_bytes(library.read_bytes()[:3])  # truncated: dlopen would crash on it
    flags = host_build.compile_flags()
    assert "not the file that was built" in host_build.staleness(library, flags)
    monkeypatch.delenv(_native.LIBRARY_ENV, raising=False)
    monkeypatch.setattr(_native, "DEFAULT_LIBRARY", library)
    monkeypatch.setattr(_native, "_libraries", {})
    with pytest.raises(LibraryNotBuiltError, match="damaged or replaced.*python tools/build.py"):
        _native.library(32)
    host_build.build_host_if_stale(gradient_bits=32)  # a stale check rebuilds it
    assert host_build.staleness(library, flags) is None


def test_the_package_build_can_load_the_host_builder_before_any_dependency(tmp_path):
    """setup.py loads tflm_training/host_build.py by path in a build
    environment without numpy or the package: it must need neither."""
    source = str(REPO / "tflm_training" / "host_build.py")
    script = textwrap.dedent(f"""\
        import importlib.util, sys
        sys.modules["numpy"] = None
        sys.modules["tflm_training"] = None
        spec = importlib.util.spec_from_file_location("hb", {source!r})
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        print(module.library_path(build_dir={str(tmp_path)!r}))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / host_build.LIBRARY_NAME)
