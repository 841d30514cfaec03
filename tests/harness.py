"""What the safety, bad-input and property tests share.

* COMMANDS: the commands under test and how to call them.  A new command
  is tested by the parametrized tests once it is listed here; a case that
  does not apply to a command says why (Command.not_applicable).
* run(), start(): one run of the tool with a private TMPDIR and an empty
  working directory, output captured as bytes, and what it left behind in
  both.
* snapshot(): everything a run could change in a repository, to compare
  before and after; assert_series_added(): the one change 'rewriter
  series' may make (its branch and its version record).
* assert_refused(): the shape of every refusal: exit code, nothing on
  standard output, one line on standard error that starts with
  "rewriter: ", no traceback, nothing left behind.
* series_for(): a patch series written by the tool, for check to read.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from conftest import FIXTURE_SCAN_TIMEOUT, PROJECT_ROOT, git_env

# The call the default plan cannot convert without a person's decision; a
# plan that sets it to a dummy pmdval converts the whole fixture tree.
UNPLACEABLE = "mm/fixture_return.c:fixture_map_for_caller:0"

# series: the author (the fixture repositories have no git identity), where
# the patch files go (relative: in the run's empty working directory), and
# the branch and version record it makes (the defaults: --names
# readonly,maywrite, -v 1).
AUTHOR = "Rewriter Tests <rewriter-tests@example.invalid>"
SERIES_OUT = "outgoing"
SERIES_BRANCH = "refs/heads/rewriter/pte-map-readonly-maywrite-v1"
SERIES_RECORD = "refs/rewriter/versions/v1"


@dataclass(frozen=True)
class Command:
    """A rewriter command as the parametrized tests call it.

    args(tree, plan): the command line for the repository at tree; plan is
    a plan file that converts the whole tree, passed to commands that take
    --plan.  scan_errors: the exit code when the scan finds a file it
    cannot analyse (scan reports it and finishes; the commands that need
    every call refuse).

    series writes its patch files to SERIES_OUT in the run's working
    directory, and its branch and version record to the repository
    (assert_series_added).  check reads the series that series_for()
    makes for the tree's HEAD; its base must carry the kernel's
    checkpatch.pl, so on a fixture tree it gets as far as checkpatch.
    A test that runs a case a command has no part in calls
    command.applies(case), which skips it with the reason given here.
    """

    name: str
    args: Callable[[Path, Path | None], list[str]]
    takes_plan: bool = False
    converts: bool = False  # rewrites calls: refuses what it cannot edit byte for byte
    scan_errors: int = 3
    rev_option: str = "--rev"  # the option that names the revision to work on
    makes: tuple[str, ...] = ()  # what a run that succeeds leaves in its working directory
    writes_repo: bool = False  # adds its branch and version record to the repository
    ok_codes: tuple[int, ...] = (0,)  # the exit codes of a run that did its work
    checkpatch: bool = False  # runs the base's scripts/checkpatch.pl, which the fixture tree does not have
    # Writes objects in a scratch clone that borrows the repository's (git
    # clone --shared): git freshens those of them the repository has.
    freshens: bool = False
    not_applicable: tuple[tuple[str, str], ...] = ()  # (case, why the case does not apply)

    def __str__(self) -> str:
        return self.name

    def applies(self, case: str) -> None:
        """Skip the running test, with the reason, when case does not apply."""
        for name, why in self.not_applicable:
            if name == case:
                pytest.skip(f"does not apply to {self.name}: {why}")


def _with_plan(plan: Path | None) -> list[str]:
    return ["--plan", str(plan)] if plan is not None else []


COMMANDS: tuple[Command, ...] = (
    Command("scan", lambda tree, plan: ["scan", "--tree", str(tree), "--format", "json"], scan_errors=1),
    Command("plan", lambda tree, plan: ["plan", "--tree", str(tree)]),
    Command("diff", lambda tree, plan: ["diff", "--tree", str(tree), *_with_plan(plan)],
            takes_plan=True, converts=True),
    Command("series", lambda tree, plan: ["series", "--tree", str(tree), "-o", SERIES_OUT, "--author", AUTHOR,
                                          *_with_plan(plan if plan is not None else settled_plan_for(tree))],
            takes_plan=True, converts=True, makes=(SERIES_OUT,), writes_repo=True),
    Command("check", lambda tree, plan: ["check", "--tree", str(tree), "--series", str(series_for(tree))],
            rev_option="--base", ok_codes=(0, 1), checkpatch=True, freshens=True, not_applicable=(
                ("scan", "check reads a patch series; it does not look for the calls in the C files"),
                ("spatch", "check runs no spatch"),
                ("same-bytes", "check's report says how many seconds each step took"),
            )),
)
PLAN_COMMANDS = tuple(c for c in COMMANDS if c.takes_plan)
CONVERTING_COMMANDS = tuple(c for c in COMMANDS if c.converts)
SCANNING_COMMANDS = tuple(c for c in COMMANDS if not any(case == "scan" for case, _why in c.not_applicable))


# --------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------

@dataclass
class Run:
    code: int
    out: bytes
    err: bytes
    tmp_left: list[str]  # entries added to the private TMPDIR
    cwd_left: list[str]  # entries added to the working directory
    cwd: Path | None = None  # the working directory, where outputs named by relative paths are

    @property
    def stdout(self) -> str:
        return self.out.decode("utf-8", errors="replace")

    @property
    def stderr(self) -> str:
        return self.err.decode("utf-8", errors="replace")

    def describe(self) -> str:
        return (f"exit code {self.code}\n--- stderr ---\n{self.stderr}\n"
                f"--- stdout (first 2000 chars) ---\n{self.stdout[:2000]}\n"
                f"--- left in TMPDIR: {self.tmp_left}; in the working directory: {self.cwd_left}")


def tool_env(env: dict[str, str | None] | None = None) -> dict[str, str]:
    """The environment of a run: this checkout's package first on
    PYTHONPATH; env sets variables (None unsets one)."""
    out = dict(os.environ)
    out.pop("REWRITER_DEBUG", None)
    out["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), out.get("PYTHONPATH")) if p)
    for key, value in (env or {}).items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def _dirs(scratch: Path) -> tuple[Path, Path]:
    tmp = scratch / "tmp"
    cwd = scratch / "cwd"
    tmp.mkdir(parents=True, exist_ok=True)
    cwd.mkdir(parents=True, exist_ok=True)
    return tmp, cwd


def relative(args: list, cwd: Path) -> list[str]:
    """The arguments as a person types them: every absolute path (a Path,
    or a string that starts with /) relative to the directory the command
    runs in (../../linux rather than /tmp/.../linux)."""
    out = []
    for a in args:
        text = str(a)
        if isinstance(a, Path) or text.startswith("/"):
            text = os.path.relpath(text, cwd)
        out.append(text)
    return out


def run(args: list, scratch: Path, env: dict[str, str | None] | None = None,
        timeout: float = FIXTURE_SCAN_TIMEOUT, stdout=None) -> Run:
    """``python -m rewriter ARGS`` with TMPDIR=scratch/tmp, run from the
    empty directory scratch/cwd, with the paths in ARGS relative to it
    (relative()).  stdout: a file to write the output to instead of
    capturing it."""
    tmp, cwd = _dirs(scratch)
    tmp_before, cwd_before = set(os.listdir(tmp)), set(os.listdir(cwd))
    proc = subprocess.run(
        [sys.executable, "-m", "rewriter", *relative(args, cwd)],
        cwd=cwd, env=tool_env({"TMPDIR": str(tmp), **(env or {})}),
        stdout=stdout if stdout is not None else subprocess.PIPE, stderr=subprocess.PIPE,
        timeout=timeout, check=False)
    return Run(proc.returncode, proc.stdout or b"", proc.stderr,
               sorted(set(os.listdir(tmp)) - tmp_before), sorted(set(os.listdir(cwd)) - cwd_before), cwd)


def _as_in_a_terminal() -> None:
    """SIGINT and SIGTERM as a terminal's foreground job has them, even when
    the tests run where they are ignored (a shell's background job)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def start(args: list, scratch: Path, env: dict[str, str | None] | None = None) -> subprocess.Popen:
    """run() in the background, in a session of its own (so that a test can
    signal the tool and its children together, as Ctrl-C does)."""
    tmp, cwd = _dirs(scratch)
    return subprocess.Popen([sys.executable, "-m", "rewriter", *relative(args, cwd)],
                            cwd=cwd, env=tool_env({"TMPDIR": str(tmp), **(env or {})}),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=_as_in_a_terminal)


def signal_tool(proc: subprocess.Popen, sig: int, group: bool) -> None:
    """Send sig to the tool, or (group) to it and every process it started."""
    if group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)


def assert_refused(result: Run, code: int, *needles: str) -> str:
    """The refusal shape; returns the one line (without "rewriter: ")."""
    assert result.code == code, result.describe()
    assert result.out == b"", result.describe()
    assert "Traceback" not in result.stderr, result.describe()
    lines = result.stderr.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("rewriter: "), result.describe()
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    assert result.tmp_left == [] and result.cwd_left == [], result.describe()
    return lines[0][len("rewriter: "):]


# --------------------------------------------------------------------------
# snapshots
# --------------------------------------------------------------------------

def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, env=git_env(), capture_output=True,
                          text=True, check=False).stdout


def snapshot(repo: Path) -> dict[str, object]:
    """Everything under repo, its git directory included: for each entry its
    type, mode and modification time, a file's contents, a link's target;
    and git's own view of HEAD, the refs, the stash and the config.

    Directory times are included, so a file created and removed again (a
    lock, a temporary file) shows up too.  Only read-only git commands run.
    """
    entries: dict[str, object] = {}
    for root, dirs, files in os.walk(repo):
        dirs.sort()
        for name in [*dirs, *files]:
            path = Path(root) / name
            st = path.lstat()
            rel = path.relative_to(repo).as_posix()
            if stat.S_ISLNK(st.st_mode):
                entries[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                entries[rel] = ("dir", stat.S_IMODE(st.st_mode), st.st_mtime_ns)
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                entries[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_mtime_ns, st.st_size, digest)
    entries["@dir"] = ("dir", stat.S_IMODE(repo.stat().st_mode), repo.stat().st_mtime_ns)
    entries["@HEAD"] = _git(repo, "rev-parse", "--symbolic-full-name", "HEAD") + _git(repo, "rev-parse", "HEAD")
    entries["@refs"] = _git(repo, "for-each-ref", "--format=%(refname) %(objectname) %(symref)")
    entries["@stash"] = _git(repo, "stash", "list", "--format=%H %gs")
    entries["@config"] = _git(repo, "config", "--local", "--list")
    entries["@objects"] = frozenset(_git(repo, "cat-file", "--batch-all-objects", "--batch-check=%(objectname)")
                                    .split())
    return entries


def _changed(before: dict, after: dict) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def _show(before: dict, after: dict, keys: list[str]) -> str:
    def short(v):
        return f"{len(v)} objects" if isinstance(v, frozenset) else repr(v)
    return ", ".join(f"{k}: {short(before.get(k))} -> {short(after.get(k))}" for k in keys[:10])


def assert_unchanged(before: dict, after: dict) -> None:
    changed = _changed(before, after)
    assert not changed, "changed in the repository: " + _show(before, after, changed)


def _freshened(before: dict, after: dict, key: str) -> bool:
    """An object file the repository had, with the same contents and mode
    and a new modification time: git "freshens" an object it is asked to
    write and already has (also in an alternate), so that gc keeps it."""
    old, new = before.get(key), after.get(key)
    return (old is not None and new is not None and old[0] == new[0] == "file" and "/objects/" in f"/{key}"
            and (old[1], old[3], old[4]) == (new[1], new[3], new[4]))


def assert_nothing_left(before: dict, after: dict) -> None:
    """What a run that wrote objects and stopped (an interrupt), or wrote
    them elsewhere with the repository's as alternates, may leave: nothing,
    except that the objects it wrote that the repository had already were
    freshened (see _freshened)."""
    changed = [k for k in _changed(before, after) if not _freshened(before, after, k)]
    assert not changed, "changed in the repository: " + _show(before, after, changed)


def _refs(snap: dict) -> dict[str, str]:
    return {line.split()[0]: line.split()[1] for line in snap["@refs"].splitlines()}


def assert_series_added(before: dict, after: dict, repo: Path) -> None:
    """What 'rewriter series' may change in repo, and nothing else: two new
    refs (its branch and its version record), the branch's reflog, and the
    objects they hold, each of them reachable from the new refs only."""
    old, new = _refs(before), _refs(after)
    assert new == {**old, SERIES_BRANCH: new.get(SERIES_BRANCH), SERIES_RECORD: new.get(SERIES_RECORD)} \
        and SERIES_BRANCH not in old and SERIES_RECORD not in old and None not in new.values(), \
        f"the refs: {old} -> {new}"
    git_dir = "" if (repo / "objects").is_dir() and not (repo / ".git").exists() else ".git/"
    allowed = set()
    for ref in (SERIES_BRANCH, SERIES_RECORD):
        for top in (ref, f"logs/{ref}"):
            parts = top.split("/")
            allowed.update(git_dir + "/".join(parts[:n]) for n in range(1, len(parts) + 1))
    stray = []
    for key in _changed(before, after):
        if key in ("@refs", "@objects"):
            continue
        added_or_dir = key not in before or before[key][0] == "dir" == after.get(key, ("",))[0]
        if added_or_dir and (key in allowed or (key + "/").startswith(git_dir + "objects/")):
            continue
        if _freshened(before, after, key):
            continue
        stray.append(key)
    assert not stray, "changed in the repository besides the series: " + _show(before, after, stray)
    assert before["@objects"] <= after["@objects"]
    added = after["@objects"] - before["@objects"]
    reachable = set(_git(repo, "rev-list", "--objects", "--no-object-names", SERIES_BRANCH, SERIES_RECORD,
                         "--not", *old.values()).split())
    assert added <= reachable, f"{len(added - reachable)} new objects that the series does not hold"


def assert_series_written(result: Run, repo: Path) -> list[Path]:
    """The output of a run of series that succeeded: the cover letter and
    one patch per commit of the new branch, in SERIES_OUT; the files."""
    files = sorted((result.cwd / SERIES_OUT).iterdir())
    record = json.loads(_git(repo, "cat-file", "blob", f"{SERIES_RECORD}:record.json"))
    assert record["tip"] == _git(repo, "rev-parse", SERIES_BRANCH).strip(), record
    commits = _git(repo, "rev-list", f"{record['base']}..{SERIES_BRANCH}").split()
    assert [f.name for f in files][0] == "0000-cover-letter.patch", files
    assert len(files) == len(commits) + 1 > 2, (len(files), len(commits))
    for f in files:
        text = f.read_text()
        assert text.startswith("From ") and "\nSubject: [RFC PATCH " in text, f.name
    assert f"{len(commits)} patches and a cover letter in {SERIES_OUT}/" in result.stdout, result.describe()
    return files


# --------------------------------------------------------------------------
# plans
# --------------------------------------------------------------------------

def set_in_plan(text: str, key: str, field: str, value: str) -> str:
    """Set field (a TOML value) of the [[call]] named by key (file:function:index)."""
    file, function, index = key.split(":")
    blocks = text.split("\n[[call]]\n")
    for i, block in enumerate(blocks):
        if (f'file = "{file}"\n' in block and f'function = "{function}"\n' in block
                and f"index = {index}\n" in block):
            if re.search(rf"^{field} = .*$", block, flags=re.M):
                block = re.sub(rf"^{field} = .*$", lambda _m: f"{field} = {value}", block, count=1, flags=re.M)
            else:
                block = block.replace(f"index = {index}\n", f"index = {index}\n{field} = {value}\n", 1)
            blocks[i] = block
            return "\n[[call]]\n".join(blocks)
    raise AssertionError(f"no call {key} in the plan")


# The failure bodies a person writes for the fixture calls whose lock is
# taken again after the table was unmapped (one per lock site; "" keeps
# the tool's own body).
RELOCK_BODIES = {
    "mm/fixture_relock.c:fixture_relock_collapse:0": '["", "spin_unlock(ptl);\\nreturn -EAGAIN;"]',
    # vmf->orig_pte, set before the lock, is left as it is: the fault is retried
    "mm/fixture_fault.c:fixture_fault_numa_like:0":
        '"pte_unmap_unlock(vmf->pte, vmf->ptl);\\nvmf->pte = NULL;\\nreturn 0;"',
}


def settle_reviews(text: str) -> str:
    """The plan text with every call marked REVIEW settled as a person
    would: decision = "convert", with the bodies of RELOCK_BODIES."""
    for block in text.split("\n[[call]]\n")[1:]:
        if "\n# REVIEW:" not in block:
            continue
        fields = dict(re.findall(r'^(file|function|index) = "?([^"\n]*)"?$', block, flags=re.M))
        key = f"{fields['file']}:{fields['function']}:{fields['index']}"
        text = set_in_plan(text, key, "decision", '"convert"')
        if key in RELOCK_BODIES:
            text = set_in_plan(text, key, "on_recheck_fail", RELOCK_BODIES[key])
    return text


def workable_plan(repo: Path, scratch: Path, rev: str = "HEAD") -> Path:
    """The default plan of repo, with UNPLACEABLE set to a dummy pmdval and
    the calls marked for review settled (settle_reviews)."""
    result = run(["plan", "--tree", repo, "--rev", rev], scratch)
    assert result.code == 0, result.describe()
    plan = scratch / "plan.toml"
    plan.write_text(settle_reviews(set_in_plan(result.stdout, UNPLACEABLE, "recheck", '"dummy"')))
    return plan


_plans_made: dict[tuple[str, str], Path] = {}


def settled_plan_for(tree: Path) -> Path | None:
    """The workable plan of tree's HEAD, made once per commit outside every
    test's scratch directory: 'rewriter series' refuses a tree whose calls
    marked for review no plan settles, and the fixture tree has some.  None
    when tree has no commit to plan (the command refuses such a tree)."""
    tree = Path(tree)
    head = None
    if (tree / ".git").exists() or (tree / "objects").is_dir():
        head = _git(tree, "rev-parse", "-q", "--verify", "HEAD^{commit}").strip()
    if not head:
        return None
    key = (str(tree.absolute()), head)
    if key not in _plans_made:
        if not _series_root:
            _series_root.append(Path(tempfile.mkdtemp(prefix="rewriter-tests-series-")))
            atexit.register(shutil.rmtree, _series_root[0], True)
        work = Path(tempfile.mkdtemp(prefix=f"plan-{head[:12]}-", dir=_series_root[0]))
        result = run(["plan", "--tree", tree, "--rev", head], work)
        if result.code != 0:
            return None
        plan = work / "plan.toml"
        plan.write_text(settle_reviews(set_in_plan(result.stdout, UNPLACEABLE, "recheck", '"dummy"')))
        _plans_made[key] = plan
    return _plans_made[key]


# --------------------------------------------------------------------------
# a series for check to read
# --------------------------------------------------------------------------

_series_made: dict[str, Path] = {}
_series_root: list[Path] = []


def series_for(tree: Path) -> Path:
    """The patch series 'rewriter series' writes for tree's HEAD (with a
    workable plan), made once per commit in a bare repository that holds
    that commit and nothing else (not a series branch tree may have), so
    that tree is only read.  A tree without a commit gets a directory that
    does not exist: check refuses such a tree before it reads a series."""
    tree = Path(tree)
    head = None
    if (tree / ".git").exists() or (tree / "objects").is_dir():
        head = _git(tree, "rev-parse", "-q", "--verify", "HEAD^{commit}").strip()
    if not head:
        return tree / SERIES_OUT
    if head not in _series_made:
        if not _series_root:
            _series_root.append(Path(tempfile.mkdtemp(prefix="rewriter-tests-series-")))
            atexit.register(shutil.rmtree, _series_root[0], True)
        work = Path(tempfile.mkdtemp(prefix=f"{head[:12]}-", dir=_series_root[0]))
        clone = work / "linux.git"
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(clone)], env=git_env(), check=True)
        subprocess.run(["git", "fetch", "-q", str(tree.absolute()), "HEAD:refs/heads/main"],
                       cwd=clone, env=git_env(), check=True)
        plan = workable_plan(clone, work, head)
        result = run(["series", "--tree", clone, "--rev", head, "--plan", plan, "--author", AUTHOR,
                      "-o", work / "outgoing"], work)
        assert result.code == 0, result.describe()
        _series_made[head] = work / "outgoing"
    return _series_made[head]
