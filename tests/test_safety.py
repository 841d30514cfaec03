"""Nothing lost: the commands change nothing in the repository they read
(series: nothing but its new branch and version record), whatever state
it is in, leave no temporary files, give the same bytes on every run, and
leave nothing behind when they are interrupted.

The commands come from harness.COMMANDS, so a new command is covered by
listing it there.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import KERNEL_TREE_ENV, git_env, kernel_tree_or_skip
from harness import (COMMANDS, assert_nothing_left, assert_series_added, assert_series_written, assert_unchanged,
                     run, signal_tool, snapshot, start, workable_plan)

# What check needs at the base besides the series: the kernel's checkpatch
# and the files it reads.  The fixture tree has no scripts/; when the real
# tree is at hand, the repositories below carry its copies.
CHECKPATCH_FILES = ("scripts/checkpatch.pl", "scripts/spelling.txt", "scripts/const_structs.checkpatch")


@functools.cache
def _kernel_scripts() -> dict[str, bytes]:
    kernel = os.environ.get(KERNEL_TREE_ENV, "")
    if not kernel or not Path(kernel).is_dir():
        return {}
    return {path: subprocess.run(["git", "show", f"HEAD:{path}"], cwd=kernel, env=git_env(), capture_output=True,
                                 check=True).stdout
            for path in CHECKPATCH_FILES}


# --------------------------------------------------------------------------
# the repository states
# --------------------------------------------------------------------------

def _clean(tools, base: Path) -> Path:
    scripts = _kernel_scripts()
    if not scripts:
        return tools.make_git_repo(tools.FIXTURE_TREE, base / "linux")
    src = base / "src"
    shutil.copytree(tools.FIXTURE_TREE, src)
    for path, data in scripts.items():
        (src / path).parent.mkdir(parents=True, exist_ok=True)
        (src / path).write_bytes(data)
    repo = tools.make_git_repo(src, base / "linux")
    shutil.rmtree(src)
    return repo


def _dirty(tools, base: Path) -> Path:
    """Edited, staged, untracked and ignored files, a stash entry, an
    executable file and a symbolic link, none of them committed."""
    repo = _clean(tools, base)
    basic = repo / "mm" / "fixture_basic.c"
    basic.write_text(basic.read_text() + "\n/* stashed */\n")
    tools.git(repo, "stash", "-q")
    locks = repo / "mm" / "fixture_locks.c"
    locks.write_text(locks.read_text() + "\n/* staged */\n")
    tools.git(repo, "add", "mm/fixture_locks.c")
    fault = repo / "mm" / "fixture_fault.c"
    fault.write_text(fault.read_text().replace("pte_offset_map_nolock", "pte_offset_map_edited", 1))
    (repo / "untracked.txt").write_text("keep me\n")
    (repo / ".gitignore").write_text("*.o\n")
    (repo / "mm" / "ignored.o").write_bytes(b"\x7fELF")
    script = repo / "scripts" / "run.sh"
    script.parent.mkdir(exist_ok=True)
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    (repo / "link-to-mm").symlink_to("mm")
    return repo


def _rebase(tools, base: Path) -> Path:
    """A git rebase stopped at a conflict: HEAD detached, the index with
    conflict stages, the work tree with conflict markers."""
    repo = _clean(tools, base)
    path = repo / "mm" / "fixture_basic.c"
    original = path.read_text()
    first_line = original.splitlines()[0]  # the SPDX comment
    tools.git(repo, "checkout", "-q", "-b", "topic")
    path.write_text(original.replace(first_line, "/* the topic's version */", 1))
    tools.commit_all(repo, "topic: reword the comment")
    tools.git(repo, "checkout", "-q", "main")
    path.write_text(original.replace(first_line, "/* main's version */", 1))
    tools.commit_all(repo, "main: reword the comment")
    tools.git(repo, "checkout", "-q", "topic")
    proc = subprocess.run(["git", "rebase", "main"], cwd=repo, env=git_env(), capture_output=True, text=True)
    assert proc.returncode != 0, "the rebase was meant to stop at a conflict"
    assert (repo / ".git" / "rebase-merge").is_dir() or (repo / ".git" / "rebase-apply").is_dir()
    assert "<<<<<<<" in path.read_text()
    return repo


def _bare(tools, base: Path) -> Path:
    source = _clean(tools, base / "source")
    bare = base / "linux.git"
    tools.git(base, "clone", "-q", "--bare", str(source), str(bare))
    shutil.rmtree(source.parent)
    return bare


def _detached(tools, base: Path) -> Path:
    repo = _clean(tools, base)
    (repo / "NEWS").write_text("a later commit\n")
    tools.commit_all(repo, "a later commit")
    tools.git(repo, "checkout", "-q", "--detach", "HEAD~1")
    return repo


STATES = {"clean": _clean, "dirty": _dirty, "rebase": _rebase, "bare": _bare, "detached": _detached}

# The first run of each command on the clean repository, for the
# determinism test to compare a second run with.
_first_runs: dict[str, object] = {}


@pytest.fixture(scope="module")
def plan_file(tools, tmp_path_factory) -> Path:
    """A plan that converts the whole fixture tree (every state has the
    fixture tree at HEAD, so the plan fits them all)."""
    scratch = tmp_path_factory.mktemp("plan")
    repo = _clean(tools, scratch / "repo")
    return workable_plan(repo, scratch)


@pytest.fixture(scope="module", params=list(STATES))
def state(request, tools, tmp_path_factory):
    name = request.param
    repo = STATES[name](tools, tmp_path_factory.mktemp(name))
    return name, repo


def _needs_checkpatch(command) -> None:
    """check runs the base's checkpatch: only where the states carry the
    kernel's (skipped without the real tree, failed under CI=true)."""
    if command.checkpatch and not _kernel_scripts():
        kernel_tree_or_skip()


@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_nothing_changes(state, command, plan_file, tmp_path):
    name, repo = state
    _needs_checkpatch(command)
    before = snapshot(repo)
    result = run(command.args(repo, plan_file if command.takes_plan else None), tmp_path)
    assert result.code in command.ok_codes, result.describe()
    assert result.out.strip(), result.describe()
    assert result.tmp_left == [], result.describe()
    assert result.cwd_left == list(command.makes), result.describe()
    if command.writes_repo:
        assert_series_added(before, snapshot(repo), repo)
        assert_series_written(result, repo)
    elif command.freshens:  # after series ran here: the objects of its branch
        assert_nothing_left(before, snapshot(repo))
    else:
        assert_unchanged(before, snapshot(repo))
    if name == "clean":
        _first_runs[command.name] = (repo, result)


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_two_runs_give_the_same_bytes(command, tools, plan_file, tmp_path):
    command.applies("same-bytes")
    _needs_checkpatch(command)
    plan = plan_file if command.takes_plan else None
    if command.name in _first_runs:
        repo, first = _first_runs[command.name]
    else:
        repo = _clean(tools, tmp_path / "repo")
        first = run(command.args(repo, plan), tmp_path / "1")
    if command.writes_repo:  # the second run in a new repository with the same commits
        repo = _clean(tools, tmp_path / "again")
    second = run(command.args(repo, plan), tmp_path / "2")
    assert first.code == second.code == 0, second.describe()
    assert first.out == second.out
    assert first.err == second.err
    for name in command.makes:
        assert _files(first.cwd / name) == _files(second.cwd / name)


def test_plan_file_is_written_whole_and_nothing_else(tools, fixture_repo, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    target = out_dir / "plan.toml"
    result = run(["plan", "--tree", fixture_repo, "-o", target], tmp_path)
    assert result.code == 0, result.describe()
    assert sorted(os.listdir(out_dir)) == ["plan.toml"]
    assert target.read_text().startswith("# rewriter plan")
    assert result.tmp_left == [] and result.cwd_left == []
    # Written again over an existing plan, its mode is kept.
    target.chmod(0o640)
    result = run(["plan", "--tree", fixture_repo, "-o", target], tmp_path)
    assert result.code == 0, result.describe()
    assert sorted(os.listdir(out_dir)) == ["plan.toml"]
    assert target.stat().st_mode & 0o777 == 0o640


# --------------------------------------------------------------------------
# interrupts
# --------------------------------------------------------------------------

def _interrupt(args: list, scratch: Path, sig: int, group: bool) -> tuple[int, str, float]:
    """Start the tool, wait until it is running spatch (a scratch directory
    is in the run's own directory in TMPDIR), send sig, and return (exit
    code, stderr, seconds to exit)."""
    tmp = scratch / "tmp"
    # Without the spatch cache, so that the tool is still running spatch
    # when the signal comes.
    proc = start(args, scratch, env={"REWRITER_CACHE": "off"})
    try:
        deadline = time.monotonic() + 120
        while not any(run_dir.is_dir() and os.listdir(run_dir) for run_dir in tmp.iterdir()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the tool never started spatch"
            time.sleep(0.05)
        time.sleep(0.5)  # well into the spatch runs
        sent = time.monotonic()
        signal_tool(proc, sig, group)  # group: as Ctrl-C in a terminal, spatch gets it too
        _out, err = proc.communicate(timeout=120)
        return proc.returncode, err.decode(), time.monotonic() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.parametrize("sig, group", [(signal.SIGINT, True), (signal.SIGINT, False), (signal.SIGTERM, False)],
                         ids=["ctrl-c", "sigint", "sigterm"])
def test_interrupt_leaves_nothing_behind(fixture_repo, tmp_path, sig, group):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    before = snapshot(fixture_repo)
    code, err, seconds = _interrupt(["plan", "--tree", fixture_repo, "-o", out_dir / "plan.toml", "-j", "1"],
                                    tmp_path, sig, group)
    assert code == 130, err
    assert err.strip().splitlines() == ["rewriter: interrupted; nothing was changed"], err
    assert os.listdir(tmp_path / "tmp") == []
    assert os.listdir(out_dir) == []
    assert seconds < 30, f"took {seconds:.1f}s to stop"
    assert_unchanged(before, snapshot(fixture_repo))


def _main_in_process(argv: list[str], tmp: Path, monkeypatch) -> int:
    """cli.main(argv) in this process, with TMPDIR=tmp; a KeyboardInterrupt
    that escapes it is a failure of the test, not the end of pytest."""
    import sys
    import tempfile

    from rewriter import cli

    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.setattr(sys, "stdout", open(os.devnull, "w"))
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return cli.main([str(a) for a in argv])
    except KeyboardInterrupt:
        pytest.fail("the interrupt escaped cli.main()")
    finally:
        signal.signal(signal.SIGINT, old)
        sys.stdout.close()


def test_interrupt_as_the_scratch_directory_is_made_leaves_nothing(fixture_repo, tmp_path, monkeypatch):
    """Issue #16: SIGINT 0.15 s into a run (a loaded machine) left
    rewriter-XXXXXXXX in TMPDIR: it landed after mkdtemp() had made the
    run's scratch directory and before the block that removes it began.
    Here it comes exactly then, from inside mkdtemp()."""
    import tempfile

    real = tempfile.mkdtemp
    sent = []

    def mkdtemp_then_sigint(*args, **kw):
        path = real(*args, **kw)
        if not sent and os.path.basename(path).startswith("rewriter-"):
            sent.append(path)
            os.kill(os.getpid(), signal.SIGINT)
        return path

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp_then_sigint)
    code = _main_in_process(["scan", "--tree", fixture_repo, "--format", "json"], tmp_path / "tmp", monkeypatch)
    assert sent and code == 130
    assert os.listdir(tmp_path / "tmp") == []


def test_interrupt_as_the_scratch_directory_is_removed_leaves_nothing(fixture_repo, tmp_path, monkeypatch):
    """The other end: SIGINT as the run's work is done and its scratch
    directory is about to be removed, before interrupts are held for it.
    The directory goes all the same (and the finished work stands)."""
    from rewriter import cli

    real = cli._interrupts_held
    sent = []

    def sigint_then_hold():
        if not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGINT)
        return real()

    monkeypatch.setattr(cli, "_interrupts_held", sigint_then_hold)
    code = _main_in_process(["plan", "--tree", fixture_repo, "-o", tmp_path / "plan.toml"], tmp_path / "tmp",
                            monkeypatch)
    assert sent and code in (0, 130)
    assert os.listdir(tmp_path / "tmp") == []


def test_interrupt_while_the_helpers_run_beside_the_scan_leaves_nothing(fixture_repo, tmp_path, monkeypatch):
    """diff starts the helpers' rules in a thread before the scan: SIGINT
    in the scan's first spatch run, while that thread is at work, stops
    both; the run exits 130 with nothing in TMPDIR and no thread left.
    The helpers' thread waits for the signal, so that it is at work then
    whatever the spatch cache holds."""
    import threading
    import time

    from rewriter import helpers, runner

    sent = []
    real_introduce = helpers.introduce

    def introduce_after_the_signal(*args, **kw):
        deadline = time.monotonic() + 30
        while not sent and time.monotonic() < deadline:
            time.sleep(0.01)
        return real_introduce(*args, **kw)

    real_one = runner.Runner._one

    def one_then_sigint(self, sp, src, rel, marker, options, whole_dir=False, **kw):
        if marker.startswith("@@REWRITER-FACT") and not sent:
            sent.append(any(t.name == "rewriter-helpers" and t.is_alive() for t in threading.enumerate()))
            os.kill(os.getpid(), signal.SIGINT)
        return real_one(self, sp, src, rel, marker, options, whole_dir, **kw)

    monkeypatch.setattr(helpers, "introduce", introduce_after_the_signal)
    monkeypatch.setattr(runner.Runner, "_one", one_then_sigint)
    monkeypatch.setenv("REWRITER_CACHE", "off")  # a stored scan would run no spatch at all
    code = _main_in_process(["diff", "--tree", fixture_repo], tmp_path / "tmp", monkeypatch)
    assert sent == [True], "the helpers' thread was at work when the signal came"
    assert code == 130
    assert os.listdir(tmp_path / "tmp") == []
    assert not [t for t in threading.enumerate() if t.name.startswith("rewriter-")]


def test_interrupt_as_a_thread_starts_leaves_nothing(fixture_repo, tmp_path, monkeypatch):
    """CI, under load: SIGINT 0.23 s into a series left rewriter-XXXXXXXX in
    TMPDIR.  An interrupt that lands after a thread has started and before
    its caller holds it (here: as helpers.beside() returns, before the try
    that joins it) left that thread writing into the run's scratch
    directory while it was removed.  The command now waits for every such
    thread first."""
    import threading
    import time

    from rewriter import helpers

    real_introduce, real_beside = helpers.introduce, helpers.beside

    def slow_introduce(*args, **kw):
        time.sleep(0.5)  # still at work when the command ends
        return real_introduce(*args, **kw)

    def beside_then_sigint(*args, **kw):
        real_beside(*args, **kw)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(helpers, "introduce", slow_introduce)
    monkeypatch.setattr(helpers, "beside", beside_then_sigint)
    monkeypatch.setenv("REWRITER_CACHE", "off")
    code = _main_in_process(["diff", "--tree", fixture_repo], tmp_path / "tmp", monkeypatch)
    assert code == 130
    assert not [t for t in threading.enumerate() if t.name.startswith("rewriter-")]
    time.sleep(1)  # what a thread left running would still be writing
    assert os.listdir(tmp_path / "tmp") == []
