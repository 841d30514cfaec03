"""What the safety, bad-input and property tests share.

* COMMANDS: the commands under test and how to call them.  A new command
  (series, check) is tested by the parametrized tests once it is listed
  here.
* run(): one run of the tool with a private TMPDIR and an empty working
  directory, output captured as bytes, and what it left behind in both.
* snapshot(): everything a run could change in a repository, to compare
  before and after.
* assert_refused(): the shape of every refusal: exit code, nothing on
  standard output, one line on standard error that starts with
  "rewriter: ", no traceback, nothing left behind.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from conftest import FIXTURE_SCAN_TIMEOUT, PROJECT_ROOT, git_env

# The call the default plan cannot convert without a person's decision; a
# plan that sets it to a dummy pmdval converts the whole fixture tree.
UNPLACEABLE = "mm/fixture_return.c:fixture_map_for_caller:0"


@dataclass(frozen=True)
class Command:
    """A rewriter command as the parametrized tests call it.

    args(tree, plan): the command line for the repository at tree; plan is
    a plan file that converts the whole tree, passed to commands that take
    --plan.  scan_errors: the exit code when the scan finds a file it
    cannot analyse (scan reports it and finishes; the commands that need
    every call refuse).
    """

    name: str
    args: Callable[[Path, Path | None], list[str]]
    takes_plan: bool = False
    converts: bool = False  # rewrites calls: refuses what it cannot edit byte for byte
    scan_errors: int = 3

    def __str__(self) -> str:
        return self.name


def _with_plan(plan: Path | None) -> list[str]:
    return ["--plan", str(plan)] if plan is not None else []


COMMANDS: tuple[Command, ...] = (
    Command("scan", lambda tree, plan: ["scan", "--tree", str(tree), "--format", "json"], scan_errors=1),
    Command("plan", lambda tree, plan: ["plan", "--tree", str(tree)]),
    Command("diff", lambda tree, plan: ["diff", "--tree", str(tree), *_with_plan(plan)],
            takes_plan=True, converts=True),
)
PLAN_COMMANDS = tuple(c for c in COMMANDS if c.takes_plan)
CONVERTING_COMMANDS = tuple(c for c in COMMANDS if c.converts)


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


def run(args: list, scratch: Path, env: dict[str, str | None] | None = None,
        timeout: float = FIXTURE_SCAN_TIMEOUT, stdout=None) -> Run:
    """``python -m rewriter ARGS`` with TMPDIR=scratch/tmp, run from the
    empty directory scratch/cwd.  stdout: a file to write the output to
    instead of capturing it."""
    tmp = scratch / "tmp"
    cwd = scratch / "cwd"
    tmp.mkdir(parents=True, exist_ok=True)
    cwd.mkdir(parents=True, exist_ok=True)
    tmp_before, cwd_before = set(os.listdir(tmp)), set(os.listdir(cwd))
    proc = subprocess.run(
        [sys.executable, "-m", "rewriter", *[str(a) for a in args]],
        cwd=cwd, env=tool_env({"TMPDIR": str(tmp), **(env or {})}),
        stdout=stdout if stdout is not None else subprocess.PIPE, stderr=subprocess.PIPE,
        timeout=timeout, check=False)
    return Run(proc.returncode, proc.stdout or b"", proc.stderr,
               sorted(set(os.listdir(tmp)) - tmp_before), sorted(set(os.listdir(cwd)) - cwd_before))


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
    return entries


def assert_unchanged(before: dict, after: dict) -> None:
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, "changed in the repository: " + ", ".join(
        f"{k}: {before.get(k)!r} -> {after.get(k)!r}" for k in changed[:10])


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


def workable_plan(repo: Path, scratch: Path) -> Path:
    """The default plan of repo, with UNPLACEABLE set to a dummy pmdval."""
    result = run(["plan", "--tree", repo], scratch)
    assert result.code == 0, result.describe()
    plan = scratch / "plan.toml"
    plan.write_text(set_in_plan(result.stdout, UNPLACEABLE, "recheck", '"dummy"'))
    return plan
