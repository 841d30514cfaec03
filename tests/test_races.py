"""Two `rewriter series` at once on one repository, or sharing one cache
directory: exactly one of them takes a branch or a version record, the
other refuses in one line that names what it lost, and nothing is left
half-written (issue #17: both failed, or one blamed its -o directory).

The runs are those of the fixture tree (harness), started at the same
moment; each race is run several times, to make the interleavings likely,
the first race of the same branch with a new cache directory that both
runs fill; the others share the default one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import harness
from conftest import git
from harness import AUTHOR, SERIES_BRANCH, SERIES_RECORD, assert_series_added, snapshot, workable_plan

TRIALS = 4
BRANCH = SERIES_BRANCH.removeprefix("refs/heads/")


@pytest.fixture(scope="module")
def plan(fixture_repo, tmp_path_factory) -> Path:
    return workable_plan(fixture_repo, tmp_path_factory.mktemp("plan"))


def _clone(fixture_repo: Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    git(dest.parent, "clone", "-q", str(fixture_repo), str(dest))
    return dest


def _series(repo: Path, plan: Path, out: Path, *more) -> list:
    return ["series", "--tree", repo, "--plan", plan, "--author", AUTHOR, "-o", out, *more]


def _race(argvs: list[list], top: Path, env: dict | None = None) -> list[harness.Run]:
    """Start the runs together; their results, with what each left in its
    own TMPDIR."""
    procs = [harness.start(argv, top / f"run{n}", env=env) for n, argv in enumerate(argvs)]
    results = []
    for n, proc in enumerate(procs):
        out, err = proc.communicate(timeout=harness.FIXTURE_SCAN_TIMEOUT)
        tmp = top / f"run{n}" / "tmp"
        results.append(harness.Run(proc.returncode, out, err, sorted(os.listdir(tmp)), [], top / f"run{n}" / "cwd"))
    return results


def _one_won(results: list[harness.Run], needles_of_loser: tuple[str, ...]) -> tuple[int, str]:
    """Exactly one run succeeded; the other refused with one line holding
    the needles.  (index of the winner, the loser's line)"""
    codes = [r.code for r in results]
    assert sorted(codes) == [0, 3], "\n".join(r.describe() for r in results)
    winner = codes.index(0)
    loser = results[1 - winner]
    assert loser.out == b"" and loser.tmp_left == [] and results[winner].tmp_left == [], loser.describe()
    lines = loser.stderr.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("rewriter: "), loser.describe()
    for needle in needles_of_loser:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    assert "Traceback" not in loser.stderr
    return winner, lines[0]


def _objects_whole(repo: Path, *refs: str) -> None:
    """Every object the refs hold is there (a loser must not take away an
    object the winner's refs need)."""
    subprocess.run(["git", "rev-list", "--objects", *refs], cwd=repo, check=True, capture_output=True)
    subprocess.run(["git", "fsck", "--connectivity-only", "--no-dangling"], cwd=repo, check=True,
                   capture_output=True)


def _cache_of(trial: int, top: Path) -> dict | None:
    """The first trial of a race: both runs fill one new cache directory
    at once (REWRITER_CACHE); the others share the warm default one."""
    return {"REWRITER_CACHE": str(top / "cache")} if trial == 0 else None


def test_two_runs_with_the_same_branch(fixture_repo, plan, tmp_path):
    """Same branch (the default) and version, -o c and -o d side by side."""
    lines = []
    for trial in range(TRIALS):
        top = tmp_path / f"trial{trial}"
        repo = _clone(fixture_repo, top / "linux")
        before = snapshot(repo)
        outs = [top / "place" / "c", top / "place" / "d"]
        results = _race([_series(repo, plan, out) for out in outs], top, env=_cache_of(trial, top))
        winner, line = _one_won(results, (f"branch {BRANCH}", "--branch"))
        lines.append(line)
        assert_series_added(before, snapshot(repo), repo)
        assert sorted(os.listdir(top / "place")) == [outs[winner].name], f"trial {trial}"
        _objects_whole(repo, SERIES_BRANCH, SERIES_RECORD)
    print("\nthe losers said:\n" + "\n".join(lines))


def test_two_runs_with_other_branches(fixture_repo, plan, tmp_path):
    """Other branches, the same version: both may not record version 1."""
    for trial in range(TRIALS):
        top = tmp_path / f"trial{trial}"
        repo = _clone(fixture_repo, top / "linux")
        refs_before = git(repo, "for-each-ref", "--format=%(refname)").split()
        argvs = [_series(repo, plan, top / "place" / name, "--branch", f"race/{name}") for name in ("c", "d")]
        results = _race(argvs, top)  # the default cache directory, shared
        winner, _line = _one_won(results, ("version 1 of the series", SERIES_RECORD, "-v 2"))
        name = ("c", "d")[winner]
        refs = git(repo, "for-each-ref", "--format=%(refname)").split()
        assert sorted(refs) == sorted([*refs_before, f"refs/heads/race/{name}", SERIES_RECORD]), refs
        assert os.listdir(top / "place") == [name]
        _objects_whole(repo, f"refs/heads/race/{name}", SERIES_RECORD)


def test_two_runs_in_two_repositories_share_one_cache(fixture_repo, plan, tmp_path):
    """Two repositories, one new cache directory that both fill at once:
    both succeed with the same series, and the cache holds whole entries."""
    for trial in range(2):
        top = tmp_path / f"trial{trial}"
        cache = top / "cache"
        repos = [_clone(fixture_repo, top / name) for name in ("a", "b")]
        results = _race([_series(repo, plan, top / "place" / repo.name) for repo in repos], top,
                        env={"REWRITER_CACHE": str(cache)})
        assert [r.code for r in results] == [0, 0], "\n".join(r.describe() for r in results)
        assert all(r.tmp_left == [] for r in results)
        a, b = (sorted((top / "place" / name).iterdir()) for name in ("a", "b"))
        assert [f.read_bytes() for f in a] == [f.read_bytes() for f in b]
        assert not [p for p in cache.rglob(".tmp-*")], "half-written cache entries"
        # ... and a third run reads it back to the same series.
        again = harness.run(_series(repos[0], plan, top / "again", "--branch", "again", "-v", "1", "--force"),
                            top / "run-again", env={"REWRITER_CACHE": str(cache)})
        assert again.code == 0, again.describe()
        assert [f.read_bytes() for f in sorted((top / "again").iterdir())] == [f.read_bytes() for f in a]


def test_the_other_run_takes_the_branch_between_prepare_and_the_end(fixture_repo, plan, tmp_path, monkeypatch):
    """Deterministic: a whole run of series, with the same branch, happens
    after this one has checked its options and before it writes anything
    (at versions.store(), the last step before the end).  This one must
    refuse naming the branch and what to do, leave its -o unmade, and
    leave the winner's series whole."""
    from rewriter import cli, versions

    repo = _clone(fixture_repo, tmp_path / "linux")
    before = snapshot(repo)
    real_store = versions.store
    other: list[harness.Run] = []

    def store_after_the_other_run(*args, **kw):
        other.append(harness.run(_series(repo, plan, tmp_path / "place" / "c"), tmp_path / "other"))
        return real_store(*args, **kw)

    monkeypatch.setattr(versions, "store", store_after_the_other_run)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    monkeypatch.setattr(sys, "stderr", err := _Lines())
    code = cli.main([str(a) for a in _series(repo, plan, tmp_path / "place" / "d")])
    assert other and other[0].code == 0, other[0].describe() if other else "the other run did not run"
    assert code == 3, err.text
    assert err.text.count("\n") == 1 and err.text.startswith(f"rewriter: branch {BRANCH} was created meanwhile"), \
        err.text
    assert "--branch" in err.text and "--force" in err.text, err.text
    assert os.listdir(tmp_path / "place") == ["c"] and os.listdir(tmp_path / "tmp") == []
    assert_series_added(before, snapshot(repo), repo)
    _objects_whole(repo, SERIES_BRANCH, SERIES_RECORD)


class _Lines:
    """A standard error that keeps what is written to it."""

    def __init__(self):
        self.text = ""

    def write(self, s: str) -> int:
        self.text += s
        return len(s)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


@pytest.mark.unit
def test_a_parent_another_run_made_meanwhile_is_no_refusal(tmp_path, monkeypatch):
    """Two runs with -o place/c and -o place/d both make place/: the one that
    loses that race must go on, not blame -o with 'File exists' (and must
    not remove place/ when it fails later, since it did not make it)."""
    from pathlib import Path

    from rewriter import outputs
    from rewriter.errors import InputError

    parent = tmp_path / "place"
    real_mkdir = Path.mkdir

    def other_run_first(self, *args, **kwargs):
        if self == parent and not parent.exists():
            real_mkdir(self)  # the other run's mkdir, between our exists() and mkdir()
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", other_run_first)
    with outputs.parents_made(str(parent / "d"), "refused: {reason}"):
        pass
    assert parent.is_dir()
    (tmp_path / "place2").mkdir()
    parent2 = tmp_path / "place2" / "x"
    try:
        with outputs.parents_made(str(parent2 / "d"), "refused: {reason}"):
            raise OSError(28, "No space left on device")
    except InputError as exc:
        assert "No space left" in str(exc)
    assert not parent2.exists()  # made by this run, removed again
