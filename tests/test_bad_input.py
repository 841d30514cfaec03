"""Bad input: one line on standard error that says what is wrong and what
to do, the exit code the README documents, and nothing written.

tests/test_scan_fixtures.py and tests/test_rewrite.py already cover some
cases for one command (a scan of a file spatch cannot parse, bad --names,
plan values that are refused with their line); the tests here cover the
rest, for every command in harness.COMMANDS that the case applies to.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from harness import (COMMANDS, CONVERTING_COMMANDS, PLAN_COMMANDS, SCANNING_COMMANDS, SERIES_BRANCH,
                     SERIES_OUT, SERIES_RECORD, assert_refused, assert_unchanged, run, snapshot, workable_plan)

API = "pte_offset_map_nolock"
by_name = pytest.mark.parametrize  # the commands are parametrized with ids=str


@pytest.fixture(scope="module")
def plan_file(tools, fixture_repo, tmp_path_factory) -> Path:
    return workable_plan(fixture_repo, tmp_path_factory.mktemp("plan"))


def _repo_with(tools, base: Path, files: dict[str, bytes | str], message: str = "add files") -> Path:
    """A committed copy of the fixture tree with files added or replaced."""
    repo = tools.make_git_repo(tools.FIXTURE_TREE, base / "linux")
    for rel, data in files.items():
        path = repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
    tools.commit_all(repo, message)
    return repo


# --------------------------------------------------------------------------
# the repository and the revision
# --------------------------------------------------------------------------

@by_name("command", COMMANDS, ids=str)
def test_not_a_git_repository(command, tmp_path):
    plain = tmp_path / "plain"
    (plain / "mm").mkdir(parents=True)
    (plain / "mm" / "x.c").write_text(f"void f(void) {{ {API}(0, 0, 0, 0); }}\n")
    assert_refused(run(command.args(plain, None), tmp_path / "run"), 3, "not a git repository", "--tree")
    assert_refused(run(command.args(tmp_path / "missing", None), tmp_path / "run"), 3,
                   "no such directory", "--tree")


@by_name("command", COMMANDS, ids=str)
def test_unknown_revision(command, fixture_repo, tmp_path):
    args = command.args(fixture_repo, None)
    before = snapshot(fixture_repo)
    for rev in ("no-such-rev", "HEAD~99", "HEAD^{tree}"):
        result = run([*args, command.rev_option, rev], tmp_path / "run")
        assert_refused(result, 3, rev, "unknown revision", command.rev_option)
    assert_unchanged(before, snapshot(fixture_repo))


@by_name("command", COMMANDS, ids=str)
def test_repository_without_commits(command, tools, tmp_path):
    repo = tmp_path / "new"
    repo.mkdir()
    tools.git(repo, "init", "-q", "-b", "main")
    assert_refused(run(command.args(repo, None), tmp_path / "run"), 3, "no commits")


@by_name("command", COMMANDS, ids=str)
def test_tree_without_the_function(command, tools, tmp_path):
    command.applies("scan")
    repo = tmp_path / "other"
    (repo / "mm").mkdir(parents=True)
    (repo / "mm" / "other.c").write_text("int other(void)\n{\n\treturn 0;\n}\n")
    tools.git(repo, "init", "-q", "-b", "main")
    tools.commit_all(repo, "no callers")
    assert_refused(run(command.args(repo, None), tmp_path / "run"), 3, API, "does not occur")


@by_name("command", COMMANDS, ids=str)
def test_bad_jobs(command, fixture_repo, tmp_path):
    for jobs in ("0", "-2"):
        result = run([*command.args(fixture_repo, None), "-j", jobs], tmp_path / "run")
        assert_refused(result, 3, f"--jobs {jobs}")


# --------------------------------------------------------------------------
# spatch
# --------------------------------------------------------------------------

def _bin_with(tmp_path: Path, spatch: str | None) -> Path:
    """A directory for PATH with git, and a fake spatch script if given."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "git").symlink_to(shutil.which("git"))
    if spatch is not None:
        fake = bin_dir / "spatch"
        fake.write_text(spatch)
        fake.chmod(0o755)
    return bin_dir


@by_name("command", COMMANDS, ids=str)
def test_spatch_missing(command, fixture_repo, tmp_path):
    command.applies("spatch")
    bin_dir = _bin_with(tmp_path, None)
    result = run(command.args(fixture_repo, None), tmp_path / "run", env={"PATH": str(bin_dir)})
    assert_refused(result, 4, "spatch not found", "install")


@by_name("command", COMMANDS, ids=str)
def test_spatch_too_old(command, fixture_repo, tmp_path):
    command.applies("spatch")
    bin_dir = _bin_with(tmp_path, "#!/bin/sh\necho 'spatch version 1.0.8 compiled with OCaml version 4.11.1'\n")
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    result = run(command.args(fixture_repo, None), tmp_path / "run", env={"PATH": path})
    assert_refused(result, 4, "1.0.8", "too old", "1.1.1")


@by_name("command", COMMANDS, ids=str)
def test_spatch_without_a_version(command, fixture_repo, tmp_path):
    command.applies("spatch")
    bin_dir = _bin_with(tmp_path, "#!/bin/sh\necho 'something else'\n")
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    result = run(command.args(fixture_repo, None), tmp_path / "run", env={"PATH": path})
    assert_refused(result, 4, "version")


# --------------------------------------------------------------------------
# files the tool cannot analyse or convert
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def broken_repo(tools, tmp_path_factory) -> Path:
    broken = (tools.BROKEN_DIR / "mm" / "fixture_broken.c").read_text()
    return _repo_with(tools, tmp_path_factory.mktemp("broken"), {"mm/fixture_broken.c": broken})


@by_name("command", [c for c in COMMANDS if c.scan_errors != 1], ids=str)
def test_file_spatch_cannot_parse(command, broken_repo, plan_file, tmp_path):
    """scan reports it (tests/test_scan_fixtures.py); the others refuse."""
    command.applies("scan")
    before = snapshot(broken_repo)
    result = run(command.args(broken_repo, None), tmp_path / "run")
    assert_refused(result, command.scan_errors, "mm/fixture_broken.c", "spatch")
    assert_unchanged(before, snapshot(broken_repo))


MACRO_C = f"""// SPDX-License-Identifier: GPL-2.0

#define fixture_map(mm, pmd, addr, ptlp) \\
\t{API}(mm, pmd, addr, ptlp)

static void fixture_uses_macro(struct mm_struct *mm, pmd_t *pmd,
\t\t\t       unsigned long addr)
{{
\tspinlock_t *ptl;
\tpte_t *pte;

\tpte = fixture_map(mm, pmd, addr, &ptl);
\tif (!pte)
\t\treturn;
\tspin_lock(ptl);
\tpte_clear(mm, addr, pte);
\tpte_unmap_unlock(pte, ptl);
}}
"""

MACRO_H = f"""/* SPDX-License-Identifier: GPL-2.0 */
#ifndef _LINUX_FIXTURE_MACRO_H
#define _LINUX_FIXTURE_MACRO_H

#define FIXTURE_MAP_STMT(mm, pmd, addr, ptlp, pte)\t\t\\
\tdo {{\t\t\t\t\t\t\t\\
\t\tpte = {API}(mm, pmd, addr, ptlp);\t\\
\t}} while (0)

#endif
"""


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.split("\n"), 1) if needle in line)


@pytest.fixture(scope="module")
def macro_repo(tools, tmp_path_factory) -> Path:
    return _repo_with(tools, tmp_path_factory.mktemp("macro"),
                      {"mm/fixture_macro.c": MACRO_C, "include/linux/fixture_macro.h": MACRO_H})


@by_name("command", COMMANDS, ids=str)
def test_call_inside_a_macro_definition(command, macro_repo, scan_data, tmp_path):
    command.applies("scan")
    c_line = _line_of(MACRO_C, f"\t{API}(")
    h_line = _line_of(MACRO_H, f"= {API}(")
    before = snapshot(macro_repo)
    result = run(command.args(macro_repo, None), tmp_path / "run")
    assert_unchanged(before, snapshot(macro_repo))
    if command.scan_errors == 1:
        assert result.code == 1, result.describe()
        data = json.loads(result.out)
        errors = {(e["file"], e["message"].split(":")[0]) for e in data["errors"]}
        assert errors == {("mm/fixture_macro.c", f"line {c_line}"),
                          ("include/linux/fixture_macro.h", f"line {h_line}")}, data["errors"]
        assert all("macro" in e["message"] for e in data["errors"])
        # Neither a site nor a mention; every other call is still there.
        assert data["sites"] == scan_data["sites"]
        assert not [m for m in data["mentions"] if "fixture_macro" in m["file"]]
        assert len(result.stderr.strip().splitlines()) == 2
        return
    line = assert_refused(result, command.scan_errors, "include/linux/fixture_macro.h",
                          f"line {h_line}", "FIXTURE_MAP_STMT", "macro", "and 1 more")
    assert "by hand" in line


# CR LF line ends and bytes that are not UTF-8 are refused by the commands
# that rewrite: spatch would write its lines with LF ends, or change the
# bytes.  The commands that only read take such files as they are.

def _crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


@pytest.fixture(scope="module")
def crlf_repo(tools, tmp_path_factory) -> Path:
    text = (tools.FIXTURE_TREE / "mm" / "fixture_basic.c").read_text()
    return _repo_with(tools, tmp_path_factory.mktemp("crlf"), {"mm/fixture_basic.c": _crlf(text)})


def _latin1_repo(tools, base: Path) -> tuple[Path, int]:
    text = (tools.FIXTURE_TREE / "mm" / "fixture_locks.c").read_text()
    line = _line_of(text, "The different ways")
    data = text.replace("The different ways", "The diff\xe9rent ways", 1).encode("latin-1")
    return _repo_with(tools, base, {"mm/fixture_locks.c": data}), line


@by_name("command", CONVERTING_COMMANDS, ids=str)
def test_crlf_file_is_refused_by_commands_that_convert(command, crlf_repo, plan_file, tmp_path):
    before = snapshot(crlf_repo)
    result = run(command.args(crlf_repo, plan_file if command.takes_plan else None), tmp_path / "run")
    assert_refused(result, 3, "mm/fixture_basic.c:1:", "CR LF", "LF")
    assert_unchanged(before, snapshot(crlf_repo))


@by_name("command", CONVERTING_COMMANDS, ids=str)
def test_crlf_header_of_the_helpers_is_refused(command, tools, plan_file, tmp_path):
    text = (tools.FIXTURE_TREE / "include" / "linux" / "mm.h").read_text()
    lines = text.split("\n")
    lines[4] += "\r"
    repo = _repo_with(tools, tmp_path, {"include/linux/mm.h": "\n".join(lines)})
    result = run(command.args(repo, plan_file if command.takes_plan else None), tmp_path / "run")
    assert_refused(result, 3, "include/linux/mm.h:5:", "CR LF")


@by_name("command", CONVERTING_COMMANDS, ids=str)
def test_bytes_that_are_not_utf8_are_refused_by_commands_that_convert(command, tools, plan_file, tmp_path):
    repo, line = _latin1_repo(tools, tmp_path)
    result = run(command.args(repo, plan_file if command.takes_plan else None), tmp_path / "run")
    assert_refused(result, 3, f"mm/fixture_locks.c:{line}:", "0xe9", "not UTF-8")


def test_reading_commands_take_crlf_files_as_they_are(crlf_repo, scan_data, tmp_path):
    for command in SCANNING_COMMANDS:
        if command.converts:
            continue
        result = run(command.args(crlf_repo, None), tmp_path / command.name)
        assert result.code == 0, result.describe()
        if command.name == "scan":
            data = json.loads(result.out)
            assert data["sites"] == scan_data["sites"] and data["errors"] == []


# --------------------------------------------------------------------------
# plans
# --------------------------------------------------------------------------

# name -> (the plan's bytes from the good plan's bytes, what the line says)
NEW_PLAN = "'rewriter plan'"
MALFORMED = {
    "call-not-a-list": (lambda b: b'version = 1\nfunction = "pte_offset_map_nolock"\ncall = 3\n',
                        ("list of [[call]]", NEW_PLAN)),
    "call-a-table": (lambda b: b'version = 1\n[call]\nfile = "mm/x.c"\n', ("list of [[call]]", NEW_PLAN)),
    "version": (lambda b: b.replace(b"version = 1", b"version = 2", 1), ("version 2", NEW_PLAN)),
    "number-for-a-string": (lambda b: b.replace(b'\nreason = "', b'\nreason = 5\n# "', 1),
                            ("reason must be a string in double quotes",)),
    "empty": (lambda b: b"", ("no entry for the call", NEW_PLAN)),
    "not-utf8": (lambda b: b.replace(b'reason = "', b'reason = "\xe9', 1), ("not a valid TOML plan", NEW_PLAN)),
    "other-function": (lambda b: b.replace(b'function = "pte_offset_map_nolock"',
                                           b'function = "pte_offset_map"', 1),
                       ("not pte_offset_map_nolock", NEW_PLAN)),
    "unknown-verdict": (lambda b: b.replace(b'\nverdict = "ro"\n', b'\nverdict = "readonly"\n', 1),
                        ("unknown verdict 'readonly'", 'use "ro" or "rw"')),
    "rev-not-a-string": (lambda b: re.sub(rb'(?m)^rev = .*$', b"rev = 12", b, count=1),
                         ("rev must be a string", "rewriter plan")),
}


@by_name("command", PLAN_COMMANDS, ids=str)
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_plan(command, case, fixture_repo, plan_file, tmp_path):
    edit, needles = MALFORMED[case]
    bad = tmp_path / "bad.toml"
    bad.write_bytes(edit(plan_file.read_bytes()))
    before = snapshot(fixture_repo)
    result = run(command.args(fixture_repo, bad), tmp_path / "run")
    line = assert_refused(result, 3, str(bad), *needles)
    if case == "unknown-verdict":  # the line of the [[call]] that holds it
        text = bad.read_text().split("\n")
        changed = next(i for i, t in enumerate(text) if t == 'verdict = "readonly"')
        header = max(i for i in range(changed) if text[i] == "[[call]]") + 1
        assert line.startswith(f"{bad}:{header}: "), line
    assert_unchanged(before, snapshot(fixture_repo))


@by_name("command", PLAN_COMMANDS, ids=str)
def test_plan_that_is_no_file(command, fixture_repo, tmp_path):
    for plan in (tmp_path, tmp_path / "missing.toml"):
        result = run(command.args(fixture_repo, plan), tmp_path / "run")
        assert_refused(result, 3, str(plan), "cannot read the plan")


@by_name("command", PLAN_COMMANDS, ids=str)
def test_stale_plan_after_the_tree_moved_on(command, tools, tmp_path):
    """A plan written before a commit that moved one call to another
    function and removed another: refused, naming the call."""
    repo = tools.make_git_repo(tools.FIXTURE_TREE, tmp_path / "linux")
    plan = workable_plan(repo, tmp_path / "plan")
    basic = repo / "mm" / "fixture_basic.c"
    basic.write_text(basic.read_text().replace("fixture_decl_init_ro(", "fixture_decl_init_ro_moved(", 1))
    tools.commit_all(repo, "move a call")
    result = run(command.args(repo, plan), tmp_path / "run")
    assert_refused(result, 3, "mm/fixture_basic.c:fixture_decl_init_ro:0", "stale", str(plan))

    (repo / "mm" / "fixture_helpers.c").unlink()
    basic.write_text(basic.read_text().replace("fixture_decl_init_ro_moved(", "fixture_decl_init_ro(", 1))
    tools.commit_all(repo, "drop the calls of one file")
    result = run(command.args(repo, plan), tmp_path / "run")
    assert_refused(result, 3, "mm/fixture_helpers.c:", "stale", str(plan))


SWAPPED_KEY = "mm/fixture_basic.c:fixture_decl_init_ro:0"
SWAPPED_OLD = "\tpte_t *pte = pte_offset_map_nolock(mm, pmd, addr, &ptl);\n"
SWAPPED_NEW = "\tpte_t *pte = pte_offset_map_nolock(mm, pmd, addr & PMD_MASK, &ptl);\n"


def _call_header_line(plan_text: str, key: str) -> int:
    """The line of the [[call]] of key in a plan."""
    file, function, index = key.split(":")
    lines = plan_text.split("\n")
    for n, line in enumerate(lines):
        if line == "[[call]]" and lines[n + 1:n + 4] == [f'file = "{file}"', f'function = "{function}"',
                                                           f"index = {index}"]:
            return n + 1
    raise AssertionError(f"no [[call]] for {key}")


@by_name("command", PLAN_COMMANDS, ids=str)
def test_plan_from_another_revision_with_another_call_at_the_same_place(command, tools, tmp_path):
    """The same file, function and index, but not the call the plan was
    written for: refused, with both calls and both revisions."""
    repo = tools.make_git_repo(tools.FIXTURE_TREE, tmp_path / "linux")
    plan = workable_plan(repo, tmp_path / "plan")
    made = tools.head_sha(repo)
    basic = repo / "mm" / "fixture_basic.c"
    text = basic.read_text()
    assert text.count(SWAPPED_OLD) == 1
    basic.write_text(text.replace(SWAPPED_OLD, SWAPPED_NEW))
    now = tools.commit_all(repo, "map another address")
    old_line = text[:text.index(SWAPPED_OLD)].count("\n") + 1
    before = snapshot(repo)
    result = run(command.args(repo, plan), tmp_path / "run")
    header = _call_header_line(plan.read_text(), SWAPPED_KEY)
    line = assert_refused(result, 3, f"{plan}:{header}: {SWAPPED_KEY}",
                          f"'pte_offset_map_nolock(mm, pmd, addr, &ptl)' at line {old_line}",
                          f"'pte_offset_map_nolock(mm, pmd, addr & PMD_MASK, &ptl)' at line {old_line}",
                          f"(made at {made[:12]}, tree is at {now[:12]})")
    assert line.endswith("; run 'rewriter plan' again"), line
    assert_unchanged(before, snapshot(repo))


@by_name("command", PLAN_COMMANDS, ids=str)
def test_plan_from_an_earlier_revision_whose_calls_are_the_same(command, tools, tmp_path):
    """Lines moved and a file added since the plan was written, but every
    call is the one it was written for: the plan is followed, with a note,
    and gives what a plan written now gives."""
    repo = tools.make_git_repo(tools.FIXTURE_TREE, tmp_path / "linux")
    plan = workable_plan(repo, tmp_path / "plan")
    made = tools.head_sha(repo)
    basic = repo / "mm" / "fixture_basic.c"
    first, rest = basic.read_text().split("\n", 1)
    basic.write_text(f"{first}\n/*\n * Three lines more above every call.\n */\n{rest}")
    (repo / "mm" / "unrelated.c").write_text("int unrelated;\n")
    now = tools.commit_all(repo, "move the calls down")
    again = tmp_path / "again"  # the same commits, for a second run that makes a branch
    tools.git(tmp_path, "clone", "-q", str(repo), str(again))
    fresh = workable_plan(again, tmp_path / "fresh")

    result = run(command.args(repo, plan), tmp_path / "old-plan")
    assert result.code == 0, result.describe()
    calls = plan.read_text().count("\n[[call]]\n")
    assert result.stderr == (f"rewriter: note: {plan} was made at {made[:12]}; the tree is at {now[:12]}, where "
                             f"its {calls} calls are the same, so it was followed as it is\n")
    second = run(command.args(again, fresh), tmp_path / "new-plan")
    assert second.code == 0 and second.err == b"", second.describe()
    assert result.out == second.out and result.out
    for name in command.makes:
        first_files = {f.name: f.read_bytes() for f in (result.cwd / name).iterdir()}
        assert first_files and first_files == {f.name: f.read_bytes() for f in (second.cwd / name).iterdir()}


# --------------------------------------------------------------------------
# outputs
# --------------------------------------------------------------------------

def test_emit_cocci_must_be_new_or_empty(fixture_repo, plan_file, tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    (full / "mine.cocci").write_text("keep\n")
    a_file = tmp_path / "a-file"
    a_file.write_text("keep\n")
    for target, message in ((full, "not empty"), (a_file, "not a directory")):
        result = run(["diff", "--tree", fixture_repo, "--plan", plan_file, "--emit-cocci", target],
                     tmp_path / "run")
        assert_refused(result, 3, "--emit-cocci", str(target), message)
    assert os.listdir(full) == ["mine.cocci"] and (full / "mine.cocci").read_text() == "keep\n"
    assert a_file.read_text() == "keep\n"


def test_output_that_is_not_a_file_name(fixture_repo, tmp_path):
    for target, message in (("", "give the name"), (str(tmp_path), "is a directory")):
        result = run(["plan", "--tree", fixture_repo, "-o", target], tmp_path / "run")
        assert_refused(result, 3, "-o", message)


@contextlib.contextmanager
def _read_only(path: Path):
    """path and everything under it read-only: chmod -R a-w, and for root,
    whom modes do not stop, a read-only bind mount as well."""
    modes = {}
    for root, dirs, files in os.walk(path):
        for name in [".", *dirs, *files]:
            p = Path(root) / name
            if not p.is_symlink():
                modes[p] = p.stat().st_mode
                p.chmod(stat.S_IMODE(p.stat().st_mode) & ~0o222)
    mounted = False
    try:
        if os.geteuid() == 0:
            bind = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True, text=True)
            if bind.returncode != 0:
                pytest.skip(f"running as root, and a read-only bind mount is not allowed here: {bind.stderr.strip()}")
            mounted = True
            ro = subprocess.run(["mount", "-o", "remount,ro,bind", str(path)], capture_output=True, text=True)
            if ro.returncode != 0:
                pytest.skip(f"cannot remount the bind mount read-only: {ro.stderr.strip()}")
        yield
    finally:
        if mounted:
            subprocess.run(["umount", str(path)], check=True)
        for p, mode in modes.items():
            p.chmod(stat.S_IMODE(mode))


def test_read_only_repository(tools, fixture_repo, plan_file, tmp_path):
    """scan, plan, diff and check write nothing in the repository, so they
    work in a read-only one; series, which adds its branch there, and
    plan -o into it are refused with one line, before any work."""
    repo = tmp_path / "linux"
    shutil.copytree(fixture_repo, repo, symlinks=True)
    with _read_only(repo):
        probe = repo / "probe"
        with pytest.raises(OSError):
            probe.write_text("x")
        before = snapshot(repo)
        for command in COMMANDS:
            result = run(command.args(repo, plan_file if command.takes_plan else None), tmp_path / command.name)
            if command.writes_repo:
                assert_refused(result, 3, f"{repo}: cannot write in {repo}/.git/objects", "read-only",
                               "run rewriter on a clone")
            elif command.checkpatch:
                # The fixture base has no checkpatch.pl: check has cloned
                # the repository and applied the series, and stops there.
                assert_refused(result, 3, "has no scripts/checkpatch.pl")
            else:
                assert result.code == 0, result.describe()
        result = run(["plan", "--tree", repo, "-o", repo / "plan.toml"], tmp_path / "run")
        assert_refused(result, 3, str(repo / "plan.toml"), "cannot write", "-o")
        assert_unchanged(before, snapshot(repo))


@pytest.fixture
def full_tmpfs(tmp_path):
    """A 64 KiB tmpfs, filled up; skipped where it cannot be mounted."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {proc.stderr.strip()}; "
                    f"test_output_to_dev_full covers a full device")
    try:
        with open(mount_point / "filler", "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_no_space_left_for_the_plan(fixture_repo, full_tmpfs, tmp_path):
    result = run(["plan", "--tree", fixture_repo, "-o", full_tmpfs / "plan.toml"], tmp_path / "run")
    assert_refused(result, 3, str(full_tmpfs / "plan.toml"), "No space left")
    assert os.listdir(full_tmpfs) == ["filler"]


def test_no_space_left_for_the_semantic_patches(fixture_repo, plan_file, full_tmpfs, tmp_path):
    target = full_tmpfs / "rules" / "cocci"
    result = run(["diff", "--tree", fixture_repo, "--plan", plan_file, "--emit-cocci", target,
                  "--site", "mm/fixture_basic.c:fixture_decl_init_rw"], tmp_path / "run")
    assert_refused(result, 3, "--emit-cocci", "No space left")
    assert os.listdir(full_tmpfs) == ["filler"]


def test_no_space_left_for_the_series(scratch_repo, plan_file, full_tmpfs, tmp_path):
    target = full_tmpfs / "series" / SERIES_OUT
    before = snapshot(scratch_repo)
    result = run([*SERIES.args(scratch_repo, plan_file), "-o", target], tmp_path / "run")
    assert_refused(result, 3, f"-o {target}", "No space left", "choose another place with -o")
    assert os.listdir(full_tmpfs) == ["filler"]
    assert_unchanged(before, snapshot(scratch_repo))


@pytest.mark.skipif(not Path("/dev/full").is_char_device(), reason="no /dev/full here")
def test_output_to_dev_full(fixture_repo, tmp_path):
    result = run(["plan", "--tree", fixture_repo, "-o", "/dev/full"], tmp_path / "run")
    assert_refused(result, 3, "/dev/full", "No space left")
    assert Path("/dev/full").is_char_device(), "the tool replaced /dev/full"
    with open("/dev/full", "wb") as full:
        result = run(["scan", "--tree", fixture_repo, "--format", "json"], tmp_path / "run", stdout=full)
    assert_refused(result, 3, "cannot write the output", "No space left")


# --------------------------------------------------------------------------
# series: what it makes must not exist yet, and it must be able to make it
# --------------------------------------------------------------------------

SERIES = next(c for c in COMMANDS if c.writes_repo)
BRANCH_NAME = SERIES_BRANCH.removeprefix("refs/heads/")


def test_series_branch_or_version_that_exists(tools, scratch_repo, plan_file, tmp_path):
    for ref, needles in ((SERIES_BRANCH, (f"branch {BRANCH_NAME} already exists", "--branch", "--force")),
                         (SERIES_RECORD, ("version 1 of the series is already recorded", SERIES_RECORD, "-v 2",
                                          "--force"))):
        tools.git(scratch_repo, "update-ref", ref, "HEAD")
        before = snapshot(scratch_repo)
        assert_refused(run(SERIES.args(scratch_repo, plan_file), tmp_path / "run"), 3, *needles)
        assert_unchanged(before, snapshot(scratch_repo))
        tools.git(scratch_repo, "update-ref", "-d", ref)


def test_series_output_that_cannot_be_made(scratch_repo, plan_file, tmp_path):
    before = snapshot(scratch_repo)
    # Not empty: the default -o in the working directory.
    old = tmp_path / "run" / "cwd" / SERIES_OUT
    old.mkdir(parents=True)
    (old / "v0-0001-mine.patch").write_text("keep\n")
    result = run(SERIES.args(scratch_repo, plan_file), tmp_path / "run")
    assert_refused(result, 3, f"-o {old}", "not empty", "--force")
    assert os.listdir(old) == ["v0-0001-mine.patch"] and (old / "v0-0001-mine.patch").read_text() == "keep\n"
    # A file, or a file on the way.
    a_file = tmp_path / "a-file"
    a_file.write_text("keep\n")
    for target, needles in ((a_file, ("not a directory",)), (a_file / "out", (f"{a_file} is not a directory",))):
        result = run([*SERIES.args(scratch_repo, plan_file), "-o", target], tmp_path / "run")
        assert_refused(result, 3, f"-o {target}", *needles)
    assert a_file.read_text() == "keep\n"
    # A place that cannot be written.
    place = tmp_path / "read-only"
    place.mkdir()
    with _read_only(place):
        result = run([*SERIES.args(scratch_repo, plan_file), "-o", place / "deeper" / "out"], tmp_path / "run")
        assert_refused(result, 3, f"cannot write in {place}", "choose another place with -o")
        assert os.listdir(place) == []
    assert_unchanged(before, snapshot(scratch_repo))


@by_name("command", CONVERTING_COMMANDS, ids=str)
def test_names_that_cannot_be_used(command, tools, plan_file, tmp_path):
    repo = _repo_with(tools, tmp_path, {"mm/taken.c": "int pte_offset_map_ro_nolock;\n"})
    before = snapshot(repo)
    for names, needles in (("ro,r-w", ("'pte_offset_map_r-w_nolock' is not a C identifier",)),
                           ("ro", ("give two different words",)),
                           ("rw,rw", ("both functions would be called pte_offset_map_rw_nolock",)),
                           ("ro,rw", ("pte_offset_map_ro_nolock already occurs", "mm/taken.c:1",
                                      "choose other names with --names"))):
        result = run([*command.args(repo, plan_file), "--names", names], tmp_path / "run")
        assert_refused(result, 3, *needles)
    assert_unchanged(before, snapshot(repo))


# --------------------------------------------------------------------------
# bugs
# --------------------------------------------------------------------------

def _boom(*_args, **_kwargs):
    raise ZeroDivisionError("a bug\nover two lines")


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "REWRITER_DEBUG=1"])
@pytest.mark.unit
def test_internal_error_is_one_line_and_exit_70(monkeypatch, capsys, debug):
    from rewriter import check, cli

    monkeypatch.setattr(cli, "open_tree", _boom)
    monkeypatch.setattr(check, "load_series", _boom)
    if debug:
        monkeypatch.setenv("REWRITER_DEBUG", "1")
    else:
        monkeypatch.delenv("REWRITER_DEBUG", raising=False)
    for command in COMMANDS:
        code = cli.main(command.args(Path("/nowhere"), None))
        out, err = capsys.readouterr()
        assert code == 70 and out == ""
        lines = err.strip().splitlines()
        assert lines[-1].startswith("rewriter: internal error: ZeroDivisionError: a bug over two lines")
        assert "report" in lines[-1] and "REWRITER_DEBUG=1" in lines[-1]
        if debug:
            assert lines[0] == "Traceback (most recent call last):"
        else:
            assert len(lines) == 1
