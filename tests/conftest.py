"""Shared fixtures for the rewriter tests.

* Throw-away git repositories built from the fixture trees under
  tests/fixtures/, committed with a fixed identity and date so that the
  tests never depend on the user's git configuration.
* run_rewriter(): runs ``python -m rewriter`` in a subprocess.
* The ``kernel`` marker: tests that need a real Linux tree, found through
  the REWRITER_KERNEL_TREE environment variable.  They are skipped when it
  is missing, except under CI=true, where a missing tree is a failure.
* The markers unit, spatch, kernel and slow (pyproject.toml says what
  each means): a test that uses the kernel_tree fixture is ``kernel``, a
  ``kernel`` test is ``slow``, a test not marked ``unit`` is ``spatch``;
  a ``unit`` test that starts a process fails.
* A small reader for the fixture C sources, so that the tests can work out
  call lines and function extents themselves instead of storing line
  numbers in the manifest.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest

TESTS_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = TESTS_DIR.parent
FIXTURES_DIR = TESTS_DIR / "fixtures"
FIXTURE_TREE = FIXTURES_DIR / "tree"
BROKEN_DIR = FIXTURES_DIR / "broken"
MANIFEST_PATH = FIXTURES_DIR / "expected.toml"

API_NAME = "pte_offset_map_nolock"
KERNEL_TREE_ENV = "REWRITER_KERNEL_TREE"

# Generous: the scan runs spatch over every candidate file.
FIXTURE_SCAN_TIMEOUT = 900
KERNEL_SCAN_TIMEOUT = 3600

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Rewriter Tests",
    "GIT_AUTHOR_EMAIL": "rewriter-tests@example.invalid",
    "GIT_COMMITTER_NAME": "Rewriter Tests",
    "GIT_COMMITTER_EMAIL": "rewriter-tests@example.invalid",
    "GIT_AUTHOR_DATE": "2024-11-18T12:00:00+00:00",
    "GIT_COMMITTER_DATE": "2024-11-18T12:00:00+00:00",
}


# --------------------------------------------------------------------------
# git helpers
# --------------------------------------------------------------------------

def git_env() -> dict[str, str]:
    """Environment for git commands run by the tests themselves."""
    env = dict(os.environ)
    env.update(GIT_IDENTITY)
    # Ignore the user's and the system's configuration (signing, hooks,
    # templates, default branch names ...).
    env["GIT_CONFIG_GLOBAL"] = os.devnull
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    env["GIT_TERMINAL_PROMPT"] = "0"
    env.pop("GIT_DIR", None)
    env.pop("GIT_WORK_TREE", None)
    env.pop("GIT_INDEX_FILE", None)
    return env


def git(repo: Path, *args: str) -> str:
    """Run git in *repo* and return its stripped standard output."""
    proc = subprocess.run(
        ["git", *args],
        cwd=repo,
        env=git_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"git {' '.join(args)} failed in {repo} ({proc.returncode}):\n"
            f"{proc.stdout}\n{proc.stderr}"
        )
    return proc.stdout.strip()


def commit_all(repo: Path, message: str) -> str:
    """Stage everything in the throw-away repository, commit, return the sha."""
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--no-verify", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def make_git_repo(source: Path, dest: Path,
                  message: str = "Import rewriter fixture tree") -> Path:
    """Copy the fixture tree *source* to *dest* and commit it as a new repo."""
    shutil.copytree(source, dest)
    git(dest, "init", "-q", "-b", "main")
    commit_all(dest, message)
    return dest


def head_sha(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD")


# --------------------------------------------------------------------------
# running the tool
# --------------------------------------------------------------------------

def run_rewriter(*args: str, cwd: str | Path | None = None,
                 timeout: float = FIXTURE_SCAN_TIMEOUT) -> tuple[int, str, str]:
    """Run ``python -m rewriter ARGS`` and return (returncode, stdout, stderr).

    The project root is put first on PYTHONPATH, so the package under test
    is used even when it has not been installed.
    """
    env = dict(os.environ)
    paths = [str(PROJECT_ROOT)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    proc = subprocess.run(
        [sys.executable, "-m", "rewriter", *[str(a) for a in args]],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(name="run_rewriter")
def _run_rewriter_fixture():
    """The run_rewriter() helper, for tests that prefer it as a fixture."""
    return run_rewriter


@dataclass
class ScanResult:
    returncode: int
    stdout: str
    stderr: str
    data: dict | None

    def describe(self) -> str:
        return (f"exit code {self.returncode}\n--- stderr ---\n{self.stderr}"
                f"\n--- stdout (first 4000 chars) ---\n{self.stdout[:4000]}")


def scan_json(tree: Path, *extra: str,
              timeout: float = FIXTURE_SCAN_TIMEOUT) -> ScanResult:
    """``rewriter scan --tree TREE EXTRA --format json``, output parsed."""
    rc, out, err = run_rewriter("scan", "--tree", str(tree), *extra,
                                "--format", "json", timeout=timeout)
    try:
        data = json.loads(out)
    except json.JSONDecodeError:
        data = None
    return ScanResult(rc, out, err, data)


@pytest.fixture(name="scan_json")
def _scan_json_fixture():
    return scan_json


# --------------------------------------------------------------------------
# fixture repositories
# --------------------------------------------------------------------------

@pytest.fixture(scope="session")
def fixture_repo(tmp_path_factory) -> Path:
    """A committed copy of tests/fixtures/tree.  Shared: do not modify it."""
    return make_git_repo(FIXTURE_TREE,
                         tmp_path_factory.mktemp("shared") / "linux")


@pytest.fixture
def scratch_repo(tmp_path) -> Path:
    """A committed copy of tests/fixtures/tree that the test may modify."""
    return make_git_repo(FIXTURE_TREE, tmp_path / "linux")


@pytest.fixture(scope="session")
def fixture_scan(fixture_repo) -> ScanResult:
    """The JSON scan of the shared fixture repository, run once."""
    return scan_json(fixture_repo)


@pytest.fixture
def scan_data(fixture_scan) -> dict:
    """The parsed JSON of the shared scan; fails cleanly if there is none."""
    if fixture_scan.data is None:
        pytest.fail("scan did not print a JSON object\n" + fixture_scan.describe())
    return fixture_scan.data


# --------------------------------------------------------------------------
# manifest
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class ExpectedSite:
    file: str
    function: str
    index: int
    verdict: str
    recheck: str | None
    review: bool
    evidence: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.file}:{self.function}:{self.index}"


@dataclass(frozen=True)
class ExpectedMention:
    file: str
    kind: str
    match: str


@dataclass
class Manifest:
    sites: list[ExpectedSite] = field(default_factory=list)
    mentions: list[ExpectedMention] = field(default_factory=list)


def load_manifest(path: Path = MANIFEST_PATH) -> Manifest:
    with open(path, "rb") as fh:
        raw = tomllib.load(fh)
    sites = []
    for entry in raw.get("site", []):
        recheck = entry["recheck"]
        sites.append(ExpectedSite(
            file=entry["file"],
            function=entry["function"],
            index=int(entry["index"]),
            verdict=entry["verdict"],
            recheck=None if recheck in ("null", "none", "") else recheck,
            review=bool(entry["review"]),
            evidence=tuple(entry.get("evidence", ())),
        ))
    mentions = [ExpectedMention(m["file"], m["kind"], m["match"])
                for m in raw.get("mention", [])]
    return Manifest(sites, mentions)


@pytest.fixture(scope="session")
def manifest() -> Manifest:
    return load_manifest()


# --------------------------------------------------------------------------
# reading the fixture sources
# --------------------------------------------------------------------------

_C_TOKENS = re.compile(
    r"""
      (?P<block>/\*.*?\*/)
    | (?P<line>//[^\n]*)
    | (?P<string>"(?:\\.|[^"\\\n])*")
    | (?P<char>'(?:\\.|[^'\\\n])*')
    """,
    re.S | re.X,
)


def blank_comments_and_strings(text: str) -> str:
    """Replace comments and string/char literals by spaces, keeping newlines
    and every other character in place, so offsets and lines still match."""
    def repl(m: re.Match) -> str:
        return re.sub(r"[^\n]", " ", m.group(0))
    return _C_TOKENS.sub(repl, text)


def _match_close(code: str, pos: int, open_ch: str, close_ch: str) -> int:
    """Index of the bracket closing the one at *pos*."""
    depth = 0
    for i in range(pos, len(code)):
        c = code[i]
        if c == open_ch:
            depth += 1
        elif c == close_ch:
            depth -= 1
            if depth == 0:
                return i
    raise ValueError(f"unbalanced {open_ch}{close_ch} from offset {pos}")


@dataclass(frozen=True)
class FunctionSpan:
    name: str
    first_line: int   # first line of the signature
    last_line: int    # line of the closing brace
    body_start: int   # offset of the opening brace
    body_end: int     # offset of the closing brace

    def __contains__(self, line: int) -> bool:
        return self.first_line <= line <= self.last_line


class SourceTree:
    """Line-level facts about a tree of kernel-style sources.

    Function definitions are found the kernel-style way: a signature that
    starts in column 0 and is followed by a brace-delimited body.
    """

    def __init__(self, root: Path):
        self.root = root
        self._text: dict[str, str] = {}
        self._code: dict[str, str] = {}

    def text(self, rel: str) -> str:
        if rel not in self._text:
            self._text[rel] = (self.root / rel).read_text(encoding="utf-8")
        return self._text[rel]

    def lines(self, rel: str) -> list[str]:
        return self.text(rel).split("\n")

    def code(self, rel: str) -> str:
        if rel not in self._code:
            self._code[rel] = blank_comments_and_strings(self.text(rel))
        return self._code[rel]

    @staticmethod
    def _line_of(text: str, offset: int) -> int:
        return text.count("\n", 0, offset) + 1

    def function(self, rel: str, name: str) -> FunctionSpan:
        code = self.code(rel)
        for m in re.finditer(
                rf"^[A-Za-z_][^;{{}}#\n]*?\b{re.escape(name)}\s*\(", code, re.M):
            open_paren = m.end() - 1
            close_paren = _match_close(code, open_paren, "(", ")")
            rest = code[close_paren + 1:]
            stripped = rest.lstrip()
            if not stripped.startswith("{"):
                continue  # a prototype or a call, not the definition
            body_start = close_paren + 1 + (len(rest) - len(stripped))
            body_end = _match_close(code, body_start, "{", "}")
            return FunctionSpan(name, self._line_of(code, m.start()),
                                self._line_of(code, body_end),
                                body_start, body_end)
        raise LookupError(f"no definition of {name}() in {rel}")

    def has_function(self, rel: str, name: str) -> bool:
        try:
            self.function(rel, name)
        except LookupError:
            return False
        return True

    def call_lines(self, rel: str, name: str) -> list[int]:
        """Lines of the API calls inside function *name*, in source order."""
        span = self.function(rel, name)
        code = self.code(rel)
        body = code[span.body_start:span.body_end]
        return [self._line_of(code, span.body_start + m.start())
                for m in re.finditer(rf"\b{API_NAME}\s*\(", body)]

    def mention_line(self, rel: str, match: str) -> int:
        """The single line of *rel* that contains both *match* and the name."""
        hits = [i for i, line in enumerate(self.lines(rel), 1)
                if match in line and API_NAME in line]
        if len(hits) != 1:
            raise LookupError(
                f"{rel}: {match!r} picks {len(hits)} lines naming {API_NAME}")
        return hits[0]

    def files(self) -> list[str]:
        return sorted(p.relative_to(self.root).as_posix()
                      for p in self.root.rglob("*") if p.is_file())

    def occurrences(self) -> set[tuple[str, int]]:
        """Every (file, line) of the tree whose text names the API."""
        found = set()
        for rel in self.files():
            try:
                lines = self.lines(rel)
            except UnicodeDecodeError:
                continue
            for i, line in enumerate(lines, 1):
                if API_NAME in line:
                    found.add((rel, i))
        return found


@pytest.fixture(scope="session")
def fixture_sources() -> SourceTree:
    return SourceTree(FIXTURE_TREE)


@pytest.fixture(scope="session")
def tools() -> SimpleNamespace:
    """The module-level helpers, for test modules (which do not import
    conftest)."""
    return SimpleNamespace(
        git=git,
        commit_all=commit_all,
        make_git_repo=make_git_repo,
        head_sha=head_sha,
        run_rewriter=run_rewriter,
        scan_json=scan_json,
        SourceTree=SourceTree,
        load_manifest=load_manifest,
        API_NAME=API_NAME,
        FIXTURE_TREE=FIXTURE_TREE,
        BROKEN_DIR=BROKEN_DIR,
        KERNEL_SCAN_TIMEOUT=KERNEL_SCAN_TIMEOUT,
    )


def pytest_generate_tests(metafunc):
    """Tests taking ``expected_site`` run once per manifest [[site]]."""
    if "expected_site" in metafunc.fixturenames:
        sites = load_manifest().sites
        metafunc.parametrize(
            "expected_site", sites,
            ids=[s.id for s in sites])


# --------------------------------------------------------------------------
# the real kernel tree
# --------------------------------------------------------------------------

def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def kernel_tree_or_skip() -> Path:
    """The tree named by REWRITER_KERNEL_TREE; skip (fail under CI) otherwise."""
    value = os.environ.get(KERNEL_TREE_ENV, "")
    if not value:
        reason = f"{KERNEL_TREE_ENV} is not set"
    elif not Path(value).is_dir():
        reason = f"{KERNEL_TREE_ENV}={value!r} is not a directory"
    else:
        return Path(value)
    if _ci():
        pytest.fail(f"CI=true but the kernel tree is missing: {reason}",
                    pytrace=False)
    pytest.skip(f"needs the real kernel tree: {reason}")


def pytest_configure(config):
    # One spatch result cache for the session: the fixture tree is scanned by
    # many tests, and a warm scan gives the same answer (tests/test_cache.py).
    if "REWRITER_CACHE" not in os.environ:
        import tempfile
        config._rewriter_cache = tempfile.mkdtemp(prefix="rewriter-test-cache-")
        os.environ["REWRITER_CACHE"] = config._rewriter_cache


def pytest_unconfigure(config):
    made = getattr(config, "_rewriter_cache", None)
    if made:
        shutil.rmtree(made, ignore_errors=True)
        os.environ.pop("REWRITER_CACHE", None)


def pytest_collection_modifyitems(config, items):
    """The marks each test implies (see the module's docstring)."""
    for item in items:
        names = {mark.name for mark in item.iter_markers()}
        if "kernel_tree" in getattr(item, "fixturenames", ()) and "kernel" not in names:
            item.add_marker(pytest.mark.kernel)
            names.add("kernel")
        if "kernel" in names and "slow" not in names:
            item.add_marker(pytest.mark.slow)
            names.add("slow")
        if "unit" in names:
            if names & {"spatch", "kernel", "slow"}:
                raise pytest.UsageError(f"{item.nodeid}: a unit test cannot also be "
                                        f"{', '.join(sorted(names & {'spatch', 'kernel', 'slow'}))}")
        elif "spatch" not in names:
            item.add_marker(pytest.mark.spatch)


class StartedAProcess(AssertionError):
    pass


def _no_process(*_args, **_kwargs):
    raise StartedAProcess("a unit test starts no process (spatch, git or any other): "
                          "test on recorded input, or drop the unit mark")


@pytest.fixture(autouse=True)
def _unit_tests_start_no_process(request, monkeypatch):
    """What makes a test a unit test, enforced: it runs in this process."""
    if request.node.get_closest_marker("unit") is None:
        return
    monkeypatch.setattr(subprocess.Popen, "_execute_child", _no_process)
    for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system", "execv", "execve", "execvp",
                 "execvpe"):
        if hasattr(os, name):
            monkeypatch.setattr(os, name, _no_process)


def pytest_runtest_setup(item):
    if item.get_closest_marker("kernel") is not None:
        kernel_tree_or_skip()


@pytest.fixture(scope="session")
def kernel_tree() -> Path:
    return kernel_tree_or_skip()
