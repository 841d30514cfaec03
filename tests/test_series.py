"""`rewriter series`: the bisectable branch, the patch files, the versions.

Most tests share one run of the command on a repository made from the
fixture tree with a few more commits (so that subject prefixes can be
learned from history) and a MAINTAINERS file.  The run is made twice, in
two clones, at the same time: the outputs must be the same bytes.  One
test runs the command on a throw-away clone of the real tree.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import unidiff

import harness
from rewriter import changelog, maintainers, mail, prose, series

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The plan a reviewer settled the real tree's review calls in (make demo's).
DEMO_PLAN = PROJECT_ROOT / "demo" / "linux-6.12.plan.toml"
API = "pte_offset_map_nolock"
UNPLACEABLE = harness.UNPLACEABLE
CHANGED = "mm/fixture_basic.c:fixture_decl_init_ro:0"  # flipped to rw for v2
BRANCH = "rewriter/pte-map-readonly-maywrite-v1"
IDENTITY = ("Series Tester", "series-tester@example.org")
SIGNER = f"{IDENTITY[0]} <{IDENTITY[1]}>"
TIMEOUT = 1800

MAINTAINERS = """\
List of maintainers (fixture)
-----------------------------

Descriptions of section entries:

\tM: *Mail* patches to: FullName <address@domain>
\tF: *Files* and directories

MEMORY MANAGEMENT
M:\tAndrew Fixture <akpm@example.org>
R:\tRita Reviewer <rita@example.org>
L:\tlinux-mm@example.org
S:\tMaintained
F:\tinclude/linux/mm.h
F:\tmm/
F:\tDocumentation/mm

X86 MM
M:\tXavier Eightysix <x86@example.org>
L:\tx86-list@example.org
S:\tMaintained
F:\tarch/x86/mm/

THE REST
M:\tLinus Fixture <linus@example.org>
L:\tlinux-kernel@example.org
S:\tBuried alive in reporters
F:\t*
F:\t*/
"""

# (file, text appended, subject, signed off): the history the prefixes are
# learned from.  mm/fixture_basic.c: three kernel commits agree on
# "mm: basic:"; the newest three are local ("test:" and unsigned) and must
# change nothing.  The other files have too little history to learn from.
HISTORY = [
    ("mm/pgtable-generic.c", "/* The lockless mapping is described above. */\n",
     "mm: pgtable: note where the lockless mapping is described", True),
    ("mm/fixture_basic.c", "/* Read-only callers come first. */\n", "mm: basic: note the read-only callers", True),
    ("mm/fixture_basic.c", "/* Writers come next. */\n", "mm: basic: note the writers", True),
    ("mm/fixture_basic.c", "/* One more note. */\n", "mm/basic: one more note", True),
    ("mm/fixture_basic.c", "/* And one more. */\n", "mm: basic: and one more note", True),
    ("arch/x86/mm/fixture_young.c", "/* The young bits. */\n", "x86/mm: note the young bits", True),
    ("mm/fixture_basic.c", "/* local 1 */\n", "test: try the series", False),
    ("mm/fixture_basic.c", "/* local 2 */\n", "test: try the series again", False),
    ("mm/fixture_basic.c", "/* local 3 */\n", "test: and again", False),
]


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    for k in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "SOURCE_DATE_EPOCH"):
        env.pop(k, None)
    return env


def start(*args, stdout=subprocess.PIPE, env: dict | None = None) -> subprocess.Popen:
    """`python -m rewriter ARGS` in the background."""
    return subprocess.Popen([sys.executable, "-m", "rewriter", *[str(a) for a in args]], env={**_env(), **(env or {})},
                            stdout=stdout, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = TIMEOUT) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out or "", err


def run(*args, timeout: float = TIMEOUT) -> tuple[int, str, str]:
    return finish(start(*args), timeout)


def git(repo: Path, *args: str, env: dict | None = None, input: str | None = None) -> str:
    full = dict(os.environ, GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1",
                GIT_AUTHOR_NAME="Fixture", GIT_AUTHOR_EMAIL="fixture@example.org",
                GIT_COMMITTER_NAME="Fixture", GIT_COMMITTER_EMAIL="fixture@example.org",
                GIT_AUTHOR_DATE="2024-11-18T12:00:00+00:00", GIT_COMMITTER_DATE="2024-11-18T12:00:00+00:00")
    for k in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        full.pop(k, None)
    full.update(env or {})
    proc = subprocess.run(["git", *args], cwd=repo, env=full, capture_output=True, text=True, input=input)
    if proc.returncode:
        raise AssertionError(f"git {' '.join(args)} in {repo}: {proc.stderr}")
    return proc.stdout.strip()


def clone(origin: Path, dest: Path, *options: str) -> Path:
    git(origin.parent, "clone", "-q", *options, str(origin), str(dest))
    git(dest, "config", "user.name", IDENTITY[0])
    git(dest, "config", "user.email", IDENTITY[1])
    return dest


def snapshot(repo: Path) -> dict:
    files = {}
    for root, dirs, names in os.walk(repo):
        if ".git" in dirs:
            dirs.remove(".git")
        for n in names:
            p = Path(root) / n
            files[str(p.relative_to(repo))] = hashlib.sha256(p.read_bytes()).hexdigest()
    git_dir = repo / ".git"
    refs = dict(line.split(" ", 1)[::-1] for line in
                git(repo, "for-each-ref", "--format=%(objectname) %(refname)").splitlines())
    return {
        "files": files,
        "index": hashlib.sha256((git_dir / "index").read_bytes()).hexdigest(),
        "head": (git_dir / "HEAD").read_text(),
        "refs": refs,
        "stash": git(repo, "stash", "list"),
        "config": (git_dir / "config").read_text(),
        "status": git(repo, "status", "--porcelain=v1", "--untracked-files=all"),
    }


def headers(path: Path) -> dict[str, str]:
    """The mail headers of a patch file, unfolded (name in lower case)."""
    head = path.read_text().split("\n\n", 1)[0].split("\n")[1:]
    out: dict[str, str] = {}
    last = None
    for line in head:
        if line[:1] in (" ", "\t") and last:
            out[last] += " " + line.strip()
        else:
            name, _, value = line.partition(":")
            last = name.lower()
            out[last] = value.strip()
    return out


def patch_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.patch"))


# --------------------------------------------------------------------------
# the shared runs
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def origin(tools, tmp_path_factory) -> Path:
    """The fixture tree, a little history, and a MAINTAINERS file."""
    repo = tools.make_git_repo(tools.FIXTURE_TREE, tmp_path_factory.mktemp("series") / "origin")
    for path, text, subject, signed in HISTORY:
        with open(repo / path, "a") as f:
            f.write(text)
        git(repo, "commit", "-q", "-a", *(["-s"] if signed else []), "-m", subject)
    (repo / "MAINTAINERS").write_text(MAINTAINERS)
    git(repo, "add", "MAINTAINERS")
    git(repo, "commit", "-q", "-s", "-m", "MAINTAINERS: the sections of the fixture tree")
    return repo


@pytest.fixture(scope="module")
def plan_v1(origin, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("plans") / "plan.toml"
    code, _out, err = run("plan", "--tree", origin, "-o", path)
    assert code == 0, err
    text = harness.settle_reviews(harness.set_in_plan(path.read_text(), UNPLACEABLE, "recheck", '"dummy"'))
    text = harness.set_in_plan(text, UNPLACEABLE, "reason",
                     '"the caller takes the lock and checks the entry with pte_same() before it writes"')
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def runs(origin, plan_v1, tmp_path_factory):
    """v1 in two clones at once (one of them dirty), and `rewriter diff`."""
    top = tmp_path_factory.mktemp("runs")
    a = clone(origin, top / "a")
    b = clone(origin, top / "b")
    # A dirty repository: a stash, a staged and an unstaged change, an
    # untracked file.  None of it may matter, and none of it may change.
    with open(a / "mm/fixture_basic.c", "a") as f:
        f.write("/* stashed */\n")
    git(a, "stash", "-q")
    with open(a / "mm/fixture_locks.c", "a") as f:
        f.write("/* staged */\n")
    git(a, "add", "mm/fixture_locks.c")
    with open(a / "mm/fixture_fault.c", "a") as f:
        f.write("/* unstaged */\n")
    (a / "notes.txt").write_text("untracked\n")
    before = snapshot(a)
    diff_file = top / "diff.patch"
    with open(diff_file, "w") as out:
        procs = [start("series", "--tree", a, "--plan", plan_v1, "-o", top / "out-a", "--cc", "Extra <extra@example.org>"),
                 start("series", "--tree", b, "--plan", plan_v1, "-o", top / "out-b", "--cc", "Extra <extra@example.org>"),
                 start("diff", "--tree", origin, "--plan", plan_v1, stdout=out)]
        t0 = time.monotonic()
        results = [finish(p) for p in procs]
    for code, _out, err in results:
        assert code == 0, err
    return SimpleNamespace(origin=origin, a=a, b=b, out_a=top / "out-a", out_b=top / "out-b",
                           before=before, after=snapshot(a), diff=diff_file.read_text(),
                           seconds=time.monotonic() - t0, stdout=results[0][1], top=top)


@pytest.fixture(scope="module")
def v2(runs, plan_v1, tmp_path_factory):
    """Version 2 in clone a, with one verdict changed in the plan."""
    path = tmp_path_factory.mktemp("plan2") / "plan.toml"
    text = harness.set_in_plan(plan_v1.read_text(), CHANGED, "verdict", '"rw"')
    text = harness.set_in_plan(text, CHANGED, "recheck", '"dummy"')
    text = harness.set_in_plan(text, CHANGED, "reason", '"its caller checks the entry with pte_same() under the lock"')
    path.write_text(text)
    out = runs.top / "out-a-v2"
    code, stdout, err = run("series", "--tree", runs.a, "--plan", path, "-v", "2", "-o", out)
    assert code == 0, err
    return SimpleNamespace(out=out, plan=path)


def _expected_patches(runs) -> int:
    data = json.loads(git(runs.a, "cat-file", "blob", "refs/rewriter/versions/v1:record.json"))
    functions = {(c["file"], c["function"]) for c in data["calls"]}
    return len(functions) + 2


# --------------------------------------------------------------------------
# the files
# --------------------------------------------------------------------------

def test_files_cover_letter_and_one_patch_per_commit(runs):
    files = patch_files(runs.out_a)
    n = _expected_patches(runs)
    assert len(files) == n + 1
    assert files[0].name == "0000-cover-letter.patch"  # v1 is not named, as git and b4 do
    for k, f in enumerate(files):
        subject = headers(f)["subject"]
        assert subject.startswith(f"[RFC PATCH {k:02d}/{n}] "), subject
        assert "***" not in f.read_text(), f.name
    log = git(runs.a, "log", "--format=%s", "--reverse", f"main..{BRANCH}").splitlines()
    assert len(log) == n
    assert [headers(f)["subject"].split("] ", 1)[1] for f in files[1:]] == log


def test_the_cover_letter_is_complete(runs):
    cover = (runs.out_a / "0000-cover-letter.patch").read_text()
    h = headers(runs.out_a / "0000-cover-letter.patch")
    # "mm: pgtable:" would make it longer than 75 characters.
    assert h["subject"].endswith("] mm: split pte_offset_map_nolock() into read-only and may-write variants")
    base = git(runs.a, "rev-parse", "main")
    assert f"\nbase-commit: {base}\n" in cover
    # Every call in the table, with its patch, verdict and recheck.
    data = json.loads(git(runs.a, "cat-file", "blob", "refs/rewriter/versions/v1:record.json"))
    total = len(data["patches"])
    for c in data["calls"]:
        assert re.search(rf"^  {c['patch']}/{total} +{re.escape(c['file'])} +{re.escape(c['function'])}\(\)"
                         rf"(, \S+)? +{c['verdict']} +{re.escape(c['recheck'] or '-')} ", cover, re.M), c
    # In order: why, the rule, the calls, open questions, testing, how it was made.
    blurb = cover.split("\n\n", 1)[1]
    order = ["This series prepares for freeing empty PTE tables.", "Split pte_offset_map_nolock() in two:",
             "Patch  File", "Open questions:", "Testing:", "How the series was made:", f"{IDENTITY[0]} ("]
    at = [blurb.find(x) for x in order]
    assert -1 not in at and at == sorted(at), dict(zip(order, at))
    # The plan settles fixture_map_for_caller() against the rule: an open question.
    flat = " ".join(blurb.split())
    assert re.search(r"- fixture_map_for_caller\(\) in mm/fixture_return.c \(patch \d+\): the rule gives rw "
                     r"with pmd_same; the series makes it rw with dummy: the caller takes the lock and checks "
                     r"the entry with pte_same\(\) before it writes\. Is that right\?", flat), flat
    assert 'Not run yet. Before sending, run "rewriter check --build --boot --mail --json > REPORT.json"' in flat
    assert "rewriter 0.1.0 found every call" in flat and "refs/rewriter/versions/v1:plan.toml" in flat
    assert re.search(r"^    rewriter series --rev [0-9a-f]{12} --plan plan.toml$", cover, re.M)
    # git's shortlog and diffstat follow the blurb.
    assert f"{IDENTITY[0]} ({len(data['patches'])}):" in cover
    assert re.search(r"^ \d+ files changed, \d+ insertions\(\+\), \d+ deletions\(-\)$", cover, re.M)
    assert "Changes in" not in cover


def test_threading_and_message_ids(runs):
    files = patch_files(runs.out_a)
    cover_id = headers(files[0])["message-id"]
    assert re.fullmatch(r"<rewriter\.v1\.00\.[0-9a-f]{20}@example\.org>", cover_id)
    assert "in-reply-to" not in headers(files[0])
    ids = {cover_id}
    for f in files[1:]:
        h = headers(f)
        assert h["in-reply-to"] == cover_id and h["references"] == cover_id
        ids.add(h["message-id"])
    assert len(ids) == len(files)
    record = json.loads(git(runs.a, "cat-file", "blob", "refs/rewriter/versions/v1:record.json"))
    assert record["message_ids"]["cover"] == cover_id
    assert record["message_ids"]["patches"] == [headers(f)["message-id"] for f in files[1:]]


def test_recipients_from_maintainers(runs):
    files = patch_files(runs.out_a)
    by_subject = {headers(f)["subject"]: headers(f) for f in files}
    # An x86 patch goes to the x86 people and to those of the API's files
    # (include/linux/mm.h, mm/pgtable-generic.c: MEMORY MANAGEMENT).
    x86 = next(h for s, h in by_subject.items() if "fixture_x86_count_present()" in s)
    assert x86["to"].split(", ") == ["Xavier Eightysix <x86@example.org>", "Andrew Fixture <akpm@example.org>"]
    assert x86["cc"].split(", ") == ["x86-list@example.org", "linux-kernel@example.org",
                                     "Rita Reviewer <rita@example.org>", "linux-mm@example.org",
                                     "Extra <extra@example.org>"]
    basic = next(h for s, h in by_subject.items() if "fixture_pte_young_ro()" in s)
    assert basic["to"] == "Andrew Fixture <akpm@example.org>"
    assert "Rita Reviewer <rita@example.org>" in basic["cc"] and "linux-mm@example.org" in basic["cc"]
    for h in by_subject.values():
        assert "linus@example.org" not in h["to"] + h.get("cc", "")  # THE REST's maintainer is left out
        assert "Andrew Fixture <akpm@example.org>" in h["to"] and "linux-mm@example.org" in h["cc"]
    # The cover letter goes to the API's maintainers, copied to everyone else.
    cover = headers(files[0])
    assert cover["to"] == "Andrew Fixture <akpm@example.org>"
    for a in ("Xavier Eightysix <x86@example.org>", "x86-list@example.org", "linux-mm@example.org",
              "Rita Reviewer <rita@example.org>", "Extra <extra@example.org>"):
        assert a in cover["cc"]
    # The fixture's history has no commit that changed the definition's
    # lines and is signed off: no author to copy.
    assert "Fixture <fixture@example.org>" not in cover["cc"]


def test_subject_prefixes_learned_from_history(runs):
    subjects = [headers(f)["subject"].split("] ", 1)[1] for f in patch_files(runs.out_a)[1:]]
    # mm/pgtable-generic.c: one commit is too few to learn from; the table says "mm: pgtable:".
    assert subjects[0] == "mm: pgtable: introduce pte_offset_map_{readonly|maywrite}_nolock()"
    assert subjects[-1] == "mm: pgtable: remove pte_offset_map_nolock()"
    # mm/fixture_basic.c: "mm: basic:" three times and "mm/basic:" once,
    # under three newer local "test:" commits that count for nothing.
    assert "mm: basic: fixture_pte_young_ro() use pte_offset_map_readonly_nolock()" in subjects
    assert not any(s.startswith("test:") for s in subjects), subjects
    # One x86 commit is too few: from the path, as the x86 log has it.
    assert "x86/mm: fixture_x86_count_present() use pte_offset_map_readonly_nolock()" in subjects
    # No history: from the path, with the second part dropped when too long.
    assert "fixture_pt: fixture_pt_entry_present() use pte_offset_map_readonly_nolock()" in subjects
    assert "mm: fixture_trylock_wrprotect() use pte_offset_map_maywrite_nolock()" in subjects
    for s in subjects:
        assert len(s) <= 75 or "{readonly|maywrite}" in s, s


def test_series_order_and_commit_messages(runs):
    record = json.loads(git(runs.a, "cat-file", "blob", "refs/rewriter/versions/v1:record.json"))
    patches = record["patches"]
    assert patches[0]["kind"] == "introduce" and patches[-1]["kind"] == "remove"
    calls = {c["key"]: c for c in record["calls"]}
    kinds = []
    for p in patches[1:-1]:
        verdicts = {calls[k]["verdict"] for k in p["keys"]}
        kinds.append("rw" in verdicts)
        assert {calls[k]["function"] for k in p["keys"]} == {p["function"]}
    assert kinds == sorted(kinds), "read-only conversions come first"
    ro = [p for p in patches[1:-1] if not any(calls[k]["verdict"] == "rw" for k in p["keys"])]
    assert [(p["file"], calls[p["keys"][0]]["line"]) for p in ro] == sorted(
        (p["file"], calls[p["keys"][0]]["line"]) for p in ro)
    # The two calls of one function are one patch.
    two = [p for p in patches if len(p["keys"]) == 2]
    assert [p["function"] for p in two] == ["fixture_x86_copy_tables"]
    for p in patches:
        msg = git(runs.a, "log", "-1", "--format=%B", p["commit"])
        body = msg.split("\n", 2)[2]
        assert msg.rstrip().endswith(f"Signed-off-by: {SIGNER}")
        for line in body.splitlines():
            assert len(line) <= 75, (p["subject"], line)
    dummy = git(runs.a, "log", "-1", "--format=%B", patches[[p["function"] for p in patches].index(
        "fixture_map_for_caller")]["commit"])
    # The plan overrides the rule: its reason is the message's reason.
    assert ("Use pte_offset_map_maywrite_nolock() with a dummy pmdval and no pmd_same() recheck: the caller "
            "takes the lock and checks the entry with pte_same() before it writes.") in " ".join(dummy.split())
    recheck = git(runs.a, "log", "-1", "--format=%B", patches[[p["function"] for p in patches].index(
        "fixture_collapse_retract")]["commit"])
    flat = " ".join(recheck.split())
    assert re.search(r"once \S+ is held recheck it with pmd_same\(\) against pmdp_get_lockless\(\S+\);", flat), flat
    assert "removes the table with pmdp_collapse_flush()" in flat
    for p in patches:
        assert_kernel_style(git(runs.a, "log", "-1", "--format=%B", p["commit"]))


def assert_kernel_style(message: str) -> None:
    """What a commit message of the series never says."""
    body = message.split("\n", 2)[2]
    assert not re.search(r"\bline \d+|\blines \d+|:\d+\b", body), body
    assert not re.search(r"\b(scan|plan|rewriter)\b", body, re.I), body
    paragraphs = [" ".join(p.split()) for p in body.split("\n\n") if p.strip()]
    assert len(paragraphs) == len(set(paragraphs)), body
    sentences = [x for p in paragraphs for x in re.split(r"(?<=\.) ", p) if len(x.split()) > 4]
    assert len(sentences) == len(set(sentences)), body


def test_every_commit_builds_on_the_last(runs):
    """The helpers come first, each caller is converted in its own commit,
    the old helper goes last: no commit calls a function that is not there."""
    commits = git(runs.a, "rev-list", "--reverse", f"main..{BRANCH}").splitlines()
    record = json.loads(git(runs.a, "cat-file", "blob", "refs/rewriter/versions/v1:record.json"))
    for n, sha in enumerate(commits):
        header = git(runs.a, "show", f"{sha}:include/linux/mm.h")
        assert "pte_offset_map_readonly_nolock(" in header and "pte_offset_map_maywrite_nolock(" in header
        assert (f"{API}(" in header) == (n < len(commits) - 1)
        changed = git(runs.a, "diff", "--name-only", f"{sha}~1", sha).splitlines()
        p = record["patches"][n]
        if p["kind"] == "convert":
            assert changed == [p["file"]]
            removed = [l for l in git(runs.a, "diff", f"{sha}~1", sha).splitlines()
                       if l.startswith("-") and f"{API}(" in l]
            assert len(removed) == len(p["keys"])
    grep = subprocess.run(["git", "grep", "-n", "-E", rf"(^|[^_[:alnum:]]){API}\(", commits[-1], "--", "*.c", "*.h"],
                          cwd=runs.a, capture_output=True, text=True)
    # What is left is declarations (at the start of a line) and comments.
    calls = [l for l in grep.stdout.splitlines()
             if re.match(r"^[^:]+:[^:]+:\d+:\s", l) and not re.search(r":\d+:\s*(\*|/\*|//)", l)]
    assert calls == [], calls


def test_final_tree_is_rewriter_diff(runs, tmp_path):
    """The branch ends where `rewriter diff` goes, file by file."""
    base = git(runs.a, "rev-parse", "main")
    ours = unidiff.PatchSet(git(runs.a, "diff", base, BRANCH) + "\n")
    theirs = unidiff.PatchSet(runs.diff)
    assert {p.path for p in ours} == {p.path for p in theirs}
    index = {"GIT_INDEX_FILE": str(tmp_path / "index")}
    git(runs.a, "read-tree", base, env=index)
    git(runs.a, "apply", "--cached", "-", env=index, input=runs.diff)
    assert git(runs.a, "write-tree", env=index) == git(runs.a, "rev-parse", f"{BRANCH}^{{tree}}")


def test_git_am_round_trip(runs, tmp_path):
    repo = clone(runs.origin, tmp_path / "am")
    git(repo, "am", "-q", *[str(f) for f in patch_files(runs.out_a)[1:]])
    assert git(repo, "rev-parse", "HEAD^{tree}") == git(runs.a, "rev-parse", f"{BRANCH}^{{tree}}")
    # The commit messages survive the mail, Signed-off-by and all.
    assert git(repo, "log", "--format=%B", "-1") == git(runs.a, "log", "--format=%B", "-1", BRANCH)


def test_two_runs_are_byte_identical(runs):
    a = patch_files(runs.out_a)
    b = patch_files(runs.out_b)
    assert [f.name for f in a] == [f.name for f in b]
    for x, y in zip(a, b):
        assert x.read_bytes() == y.read_bytes(), x.name
    assert git(runs.a, "rev-parse", BRANCH) == git(runs.b, "rev-parse", BRANCH)
    assert git(runs.a, "rev-parse", "refs/rewriter/versions/v1") == git(runs.b, "rev-parse", "refs/rewriter/versions/v1")


def test_nothing_else_in_the_repository_changes(runs):
    before, after = runs.before, runs.after
    new_refs = set(after["refs"]) - set(before["refs"])
    assert new_refs == {f"refs/heads/{BRANCH}", "refs/rewriter/versions/v1"}
    assert {r: after["refs"][r] for r in before["refs"]} == before["refs"]
    for key in ("files", "index", "head", "stash", "config", "status"):
        assert after[key] == before[key], key


def test_version_record(runs):
    ref = "refs/rewriter/versions/v1"
    record = json.loads(git(runs.a, "cat-file", "blob", f"{ref}:record.json"))
    assert record["version"] == 1 and record["branch"] == BRANCH
    assert record["base"] == git(runs.a, "rev-parse", "main")
    assert record["tip"] == git(runs.a, "rev-parse", BRANCH) == git(runs.a, "rev-parse", f"{ref}^")
    assert record["names"] == {"readonly": "pte_offset_map_readonly_nolock",
                               "maywrite": "pte_offset_map_maywrite_nolock"}
    plan = git(runs.a, "cat-file", "blob", f"{ref}:plan.toml")
    assert "fixture_map_for_caller" in plan and 'recheck = "dummy"' in plan


# --------------------------------------------------------------------------
# version 2
# --------------------------------------------------------------------------

def test_v2_changes_in_the_cover_letter_and_the_changed_patch(runs, v2):
    files = patch_files(v2.out)
    assert files[0].name == "v2-0000-cover-letter.patch"
    cover = files[0].read_text()
    blurb = " ".join(cover.split("Changes in v2:", 1)[1].split(f"{IDENTITY[0]} (")[0].split())
    assert ("fixture_decl_init_ro() at mm/fixture_basic.c:37: verdict ro -> rw; recheck none -> dummy; "
            'new reason: "its caller checks the entry with pte_same() under the lock".') in blurb
    v1_cover = headers(patch_files(runs.out_a)[0])["message-id"]
    assert f"v1: Message-Id {v1_cover}" in blurb
    changed = next(f for f in files if "fixture_decl_init_ro" in f.name)
    body = changed.read_text()
    notes = body.split("\n---\n", 1)[1].split("\n\n", 1)[0]
    assert notes.startswith("Changes in v2:\n- fixture_decl_init_ro() at mm/fixture_basic.c:37: verdict ro -> rw")
    assert "in v1; changed: the subject, the commit message" in " ".join(notes.split())
    assert "use pte_offset_map_maywrite_nolock()" in headers(changed)["subject"]
    # A patch of another file that did not change carries no notes.
    same = next(f for f in files if "fixture_x86_clear_range" in f.name)
    assert "Changes in v2" not in same.read_text()
    assert headers(same)["subject"].startswith("[RFC PATCH v2 ")
    record = json.loads(git(runs.a, "cat-file", "blob", "refs/rewriter/versions/v2:record.json"))
    assert record["version"] == 2 and record["branch"] == "rewriter/pte-map-readonly-maywrite-v2"
    assert git(runs.a, "rev-parse", BRANCH) == json.loads(
        git(runs.a, "cat-file", "blob", "refs/rewriter/versions/v1:record.json"))["tip"]


# --------------------------------------------------------------------------
# refusals: one line, exit 3, nothing made
# --------------------------------------------------------------------------

@pytest.fixture
def fresh(origin, tmp_path) -> Path:
    return clone(origin, tmp_path / "repo")


def _refused(repo: Path, out: Path, *args: str, message: str) -> None:
    before = snapshot(repo)
    listing = sorted(os.listdir(out.parent))
    code, stdout, err = run("series", "--tree", repo, "-o", out, *args, timeout=120)
    assert code == 3, err
    assert stdout == "" and message in err and len(err.strip().splitlines()) == 1, err
    assert snapshot(repo) == before
    assert sorted(os.listdir(out.parent)) == listing


def test_existing_branch_is_refused(fresh, tmp_path):
    git(fresh, "branch", BRANCH)
    _refused(fresh, tmp_path / "out", message=f"branch {BRANCH} already exists")


def test_non_empty_output_directory_is_refused(fresh, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.patch").write_text("keep\n")
    _refused(fresh, tmp_path / "out", message="not empty")


@pytest.mark.parametrize("option, value", [
    ("--to", "Someone <a@example.org>\nBcc: evil@example.org"),
    ("--cc", "b@example.org\r\nX-Injected: yes"),
    ("--cc", "no address here"),
    ("--author", "Name <n@example.org>\nFrom: evil@example.org"),
])
def test_bad_addresses_are_refused(fresh, tmp_path, option, value):
    _refused(fresh, tmp_path / "out", option, value, message=option)


def test_version_2_without_version_1_is_refused(fresh, tmp_path):
    _refused(fresh, tmp_path / "out", "-v", "2", message="no version 1 of the series is recorded")


def test_the_checked_out_branch_is_not_moved_even_with_force(fresh, tmp_path):
    git(fresh, "checkout", "-q", "-b", "work")
    _refused(fresh, tmp_path / "out", "--branch", "work", "--force", message="is checked out")


# --------------------------------------------------------------------------
# Ctrl-C at any moment
# --------------------------------------------------------------------------

SEED = 20241118
WARM_TRIALS = 24  # with the spatch cache: anywhere in the whole run
COLD_TRIALS = 6  # without it: while spatch runs (the scan, the first conversions)
COLD_WINDOW = 12.0  # seconds of such a run that the cold trials spread over
STARTUP = 0.05  # before this Python itself is starting, and SIGINT kills it as it would any program


def _forget_series(repo: Path) -> None:
    git(repo, "update-ref", "-d", harness.SERIES_BRANCH)
    git(repo, "update-ref", "-d", harness.SERIES_RECORD)


# The branch's directories under .git that a git update-ref makes for it.
SERIES_BRANCH_NAME = harness.SERIES_BRANCH.rsplit("/", 1)[1]
SERIES_BRANCH_PATHS = (harness.SERIES_BRANCH.rsplit("/", 1)[0], "logs/" + harness.SERIES_BRANCH.rsplit("/", 1)[0])


def test_ctrl_c_as_the_refs_are_written_does_not_stop_git_halfway(origin, plan_v1, tmp_path):
    """Under load, Ctrl-C (SIGINT to the process group) reached the git
    update-ref that writes the branch and the version record: stopped
    halfway, it left refs/heads/rewriter/ and an empty reflog behind, and
    the run said "nothing was changed".  That git now runs in a session of
    its own.  Here a git on PATH does what that git did before it died (the
    directories, the empty reflog), then waits for the signal, then writes
    the refs: the run must end a success with the whole series, or, were
    git stopped, what it left would show."""
    import shutil
    import textwrap

    repo = clone(origin, tmp_path / "repo")
    real_git = shutil.which("git")
    marker = tmp_path / "update-ref-started"
    fake = tmp_path / "bin"
    fake.mkdir()
    branch, log = SERIES_BRANCH_PATHS
    (fake / "git").write_text(textwrap.dedent(f"""\
        #!/bin/sh
        for a in "$@"; do
            case "$a" in
            --git-dir=*) dir="${{a#--git-dir=}}" ;;
            update-ref)
                mkdir -p "$dir/{branch}" "$dir/{log}"
                : > "$dir/{log}/{SERIES_BRANCH_NAME}"
                : > "{marker}"
                sleep 2
                ;;
            esac
        done
        exec "{real_git}" "$@"
        """))
    (fake / "git").chmod(0o755)
    args = ["series", "--tree", repo, "--plan", plan_v1]
    scratch = tmp_path / "run"
    proc = harness.start(args, scratch, env={"PATH": f"{fake}{os.pathsep}{os.environ['PATH']}"})
    try:
        deadline = time.monotonic() + harness.FIXTURE_SCAN_TIMEOUT
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert marker.exists(), "the run never wrote its refs"
        harness.signal_tool(proc, signal.SIGINT, True)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0 and err == b"", (proc.returncode, err)
    result = harness.Run(0, out, err, [], sorted(os.listdir(scratch / "cwd")), scratch / "cwd")
    assert len(harness.assert_series_written(result, repo)) > 2
    assert os.listdir(scratch / "tmp") == []


def test_sigint_at_random_points_leaves_nothing(origin, plan_v1, tmp_path):
    """SIGINT at random moments of `rewriter series`, to the tool alone or
    to its process group (as Ctrl-C does, stopping spatch and git too).
    Interrupted: exit 130, one line, and nothing anywhere: no branch, no
    version record, no object, no output or scratch directory, nothing in
    TMPDIR.  Finished first: exit 0 and the whole series, the same bytes
    as an uninterrupted run."""
    repo = clone(origin, tmp_path / "repo")
    args = ["series", "--tree", repo, "--plan", plan_v1]  # -o: the default, in the run's working directory
    # A whole run (which fills the spatch cache, if the tests before have
    # not), then the run that is timed and that the trials are compared with.
    for n in range(2):
        t0 = time.monotonic()
        whole = harness.run(args, tmp_path / f"whole{n}")
        duration = time.monotonic() - t0
        assert whole.code == 0, whole.describe()
        reference = {f.name: f.read_bytes() for f in harness.assert_series_written(whole, repo)}
        _forget_series(repo)

    # Each trial's moment is a seeded fraction of how long such a run
    # takes: at first the timed run (or COLD_WINDOW), then the quickest
    # trial that ended before its signal.  On a loaded machine (load 8 on
    # 2 CPUs) the timed run took 1.2-1.9 s and the trials 0.85-1.0 s, and a
    # third of the trials ended before their signal.
    rng = random.Random(SEED)
    trials = ([(rng.random(), True) for _ in range(WARM_TRIALS)]
              + [(rng.random(), False) for _ in range(COLD_TRIALS)])
    window = {True: 1.1 * duration, False: COLD_WINDOW}
    counts = Counter()
    early = []  # the trials that ended before their signal: n:delay/seconds taken
    slowest = 0.0
    for n, (fraction, cached) in enumerate(trials):
        delay = STARTUP + fraction * (window[cached] - STARTUP)
        group = n % 2 == 0
        what = (f"trial {n}: SIGINT to the {'process group' if group else 'tool'} after {delay:.2f}s "
                f"of a run {'with' if cached else 'without'} the spatch cache")
        scratch = tmp_path / f"trial{n}"
        before = harness.snapshot(repo)
        proc = harness.start(args, scratch, env=None if cached else {"REWRITER_CACHE": "off"})
        started = time.monotonic()
        try:
            try:
                proc.wait(timeout=delay)
                sent = None
                took = time.monotonic() - started
                early.append(f"{n}:{delay:.2f}/{took:.2f}{'' if cached else 'cold'}")
                window[cached] = min(window[cached], max(took, 2 * STARTUP))
            except subprocess.TimeoutExpired:
                harness.signal_tool(proc, signal.SIGINT, group)
                sent = time.monotonic()
            out, err = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if sent is not None:
            slowest = max(slowest, time.monotonic() - sent)
        after = harness.snapshot(repo)
        cwd = scratch / "cwd"
        assert os.listdir(scratch / "tmp") == [], what
        if proc.returncode == 130:
            assert sent is not None, what
            assert (out, err) == (b"", b"rewriter: interrupted; nothing was changed\n"), (what, out, err)
            harness.assert_nothing_left(before, after)
            assert os.listdir(cwd) == [], what
            counts["interrupted"] += 1
        else:
            assert proc.returncode == 0 and err == b"", (what, proc.returncode, err)
            result = harness.Run(0, out, err, [], sorted(os.listdir(cwd)), cwd)
            assert result.cwd_left == [harness.SERIES_OUT], what
            harness.assert_series_added(before, after, repo)
            files = harness.assert_series_written(result, repo)
            assert {f.name: f.read_bytes() for f in files} == reference, what
            counts["finished before the signal" if sent is None else "finished, the signal ignored"] += 1
            _forget_series(repo)
    print(f"\nSIGINT trials: {dict(counts)}; a whole run took {duration:.1f}s with the cache; "
          f"the slowest stop took {slowest:.1f}s; ended before the signal: {' '.join(early)}")
    assert counts["interrupted"] >= len(trials) * 2 // 3, counts
    assert slowest < 30, f"took {slowest:.1f}s to stop"


# --------------------------------------------------------------------------
# the parts
# --------------------------------------------------------------------------

SIGNED = "\n\nSigned-off-by: A <a@example.org>\n"


@pytest.mark.unit
def test_learned_prefix():
    def signed(*subjects):
        return [(x, SIGNED) for x in subjects]

    assert series.learned_prefix(signed("mm: basic: a", "mm/basic: b", "mm: basic: c", "Merge x: y",
                                        "mm: basic: d")) == "mm: basic:"
    # Fewer than three agree: nothing is learned.
    assert series.learned_prefix(signed("mm: basic: a", "mm/basic: b", "mm: basic: c")) is None
    assert series.learned_prefix(signed("x86/mm: a", "x86/mm: b", "x86/mm: c", "mm: b", "mm: c", "mm: d")) \
        == "x86/mm:"  # a tie: the newest
    assert series.learned_prefix(signed("Linux 6.12", "Import the tree")) is None
    # ARM's patch tracker numbers are not part of the prefix.
    assert series.learned_prefix(signed("ARM: 9431/1: fix a", "ARM: 9350/1: b", "ARM: c")) == "ARM:"


@pytest.mark.unit
def test_local_commits_change_no_prefix():
    """Commits without Signed-off-by, or whose subject has no subsystem
    prefix, are local: "test: ..." at the top of a file's history changes
    nothing, however many there are."""
    kernel = [("mm: basic: a", SIGNED)] * 3
    local = [("test: try it", "no sign-off\n")] * 5 + [("wip", SIGNED)] * 5
    assert series.learned_prefix(local + kernel) == "mm: basic:"
    assert series.learned_prefix(local) is None


def test_local_commits_in_a_repository(tmp_path):
    """The same through git: three kernel commits, then five local ones."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "mm").mkdir()
    for k in range(3):
        (repo / "mm" / "memory.c").write_text(f"int a{k};\n")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-s", "-m", f"mm: change {k}")
    for k in range(5):
        (repo / "mm" / "memory.c").write_text(f"int b{k};\n")
        git(repo, "commit", "-q", "-a", "-m", f"test: local change {k}")
    g = maintainers.Git(repo / ".git")
    assert series.subject_prefix(g, "HEAD", ["mm/memory.c"]) == "mm:"
    # Without the kernel commits, the path's prefix.
    assert series.subject_prefix(g, "HEAD", ["mm/mremap.c"]) == "mm: mremap:"


@pytest.mark.unit
def test_prefix_from_the_path():
    # The rules of rewriter.changelog.SUBJECT_PREFIXES, as the kernel's log has them.
    assert series.path_prefix("mm/memory.c") == "mm:"
    assert series.path_prefix("mm/khugepaged.c") == "mm: khugepaged:"
    assert series.path_prefix("mm/mremap.c") == "mm: mremap:"
    assert series.path_prefix("mm/userfaultfd.c") == "mm: userfaultfd:"
    assert series.path_prefix("mm/filemap.c") == "mm: filemap:"
    assert series.path_prefix("mm/vmscan.c") == "mm: vmscan:"
    assert series.path_prefix("mm/page_vma_mapped.c") == "mm: page_vma_mapped_walk:"
    assert series.path_prefix("mm/pgtable-generic.c") == "mm: pgtable:"
    assert series.path_prefix("include/linux/mm.h") == "mm:"
    assert series.path_prefix("Documentation/mm/split_page_table_lock.rst") == "mm:"
    assert series.path_prefix("arch/arm/mm/fault-armv.c") == "ARM:"
    assert series.path_prefix("arch/powerpc/mm/pgtable.c") == "powerpc/mm:"
    assert series.path_prefix("mm/new_file.c") == "mm: new_file:"
    assert series.path_prefix("fs/proc/task_mmu.c") == "fs: task_mmu:"
    assert series.shorter_prefixes("mm: khugepaged:") == ["mm: khugepaged:", "mm:"]
    assert series.shorter_prefixes("x86/mm:") == ["x86/mm:", "x86:"]


@pytest.mark.unit
def test_braced_names_and_default_branch():
    assert series.braced("pte_offset_map_ro_nolock", "pte_offset_map_rw_nolock") == "pte_offset_map_{ro|rw}_nolock"
    from rewriter import recipe
    r = recipe.find(None)
    assert r.branch_name(r.names("ro,rw"), 3) == "rewriter/pte-map-ro-rw-v3"


@pytest.mark.unit
def test_reflow_wraps_paragraphs_and_lists_and_keeps_tables():
    text = ("word " * 30 + "\n\nLead:\n- " + "item " * 20 + "\n- short\n\n  a  b\n  c  d\n")
    out = prose.reflow(text)
    lines = out.splitlines()
    assert all(len(l) <= 75 for l in lines)
    assert "  a  b\n  c  d" in out
    assert any(l.startswith("- item") for l in lines) and any(l.startswith("  item") for l in lines)


@pytest.mark.unit
def test_maintainers_patterns():
    sections = maintainers.parse(MAINTAINERS)
    assert [s.title for s in sections] == ["MEMORY MANAGEMENT", "X86 MM", "THE REST"]
    dirs = {"mm", "arch", "arch/x86", "arch/x86/mm", "Documentation", "Documentation/mm", "include", "include/linux"}
    to, cc = maintainers._from_sections(sections, dirs, ["Documentation/mm/split_page_table_lock.rst"])
    assert to == ["Andrew Fixture <akpm@example.org>"]  # "F: Documentation/mm" is a directory
    to, cc = maintainers._from_sections(sections, dirs, ["README"])
    assert to == [] and cc == ["linux-kernel@example.org"]


ROLES_MAINTAINERS = """\
MEMORY MANAGEMENT
M:\tAndrew Fixture <akpm@example.org>
M:\tRita Reviewer <rita@example.org>
L:\tlinux-mm@example.org
S:\tMaintained
F:\tmm/

MM FIXTURE A
M:\tAlice Odd <alice@example.org>
R:\tRita Reviewer <rita@example.org>
R:\tBob Reviewer <bob@example.org>
L:\ta-list@example.org (moderated for non-subscribers)
S:\tOdd Fixes
F:\tmm/a.c

THE REST
M:\tLinus Torvalds <torvalds@linux-foundation.org>
L:\tlinux-kernel@example.org
S:\tBuried alive in reporters
F:\t*
F:\t*/
"""


@pytest.mark.kernel
def test_maintainers_roles_from_the_script(kernel_tree, tmp_path, monkeypatch):
    """The tree's get_maintainer.pl runs once per patch and its roles sort
    To: from Cc:.  It names a person once, with the first role it meets: a
    reviewer of mm/a.c who also maintains mm/ is asked about again, with
    one run for To: and one for Cc:, and ends up in To:."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    (repo / "mm").mkdir()
    (repo / maintainers.SCRIPT).write_bytes((kernel_tree / maintainers.SCRIPT).read_bytes())
    (repo / "MAINTAINERS").write_text(ROLES_MAINTAINERS)
    for name in ("a.c", "b.c"):
        (repo / "mm" / name).write_text("int x;\n")
    git(tmp_path, "init", "-q", str(repo))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    base = git(repo, "rev-parse", "HEAD")
    for name in ("a.c", "b.c"):
        (repo / "mm" / name).write_text("int y;\n")
        git(repo, "commit", "-q", "-a", "-m", f"mm: change {name}")
    patches = sorted(Path(p) for p in git(repo, "format-patch", "-o", str(tmp_path / "out"),
                                          f"{base}..HEAD").split())
    runs = Counter()
    real_run = subprocess.run

    def counting(cmd, *args, **kw):
        if Path(cmd[0]).name == "perl":
            runs[Path(cmd[-1]).read_text().split("Subject: ", 1)[1].split("\n", 1)[0]] += 1
        return real_run(cmd, *args, **kw)

    monkeypatch.setenv("REWRITER_CACHE", "off")
    monkeypatch.setattr(maintainers.subprocess, "run", counting)
    (a_to, a_cc), (b_to, b_cc) = maintainers.for_patches(maintainers.Git(repo / ".git"), base, patches)
    assert a_to == ["Alice Odd <alice@example.org>", "Andrew Fixture <akpm@example.org>",
                    "Rita Reviewer <rita@example.org>"]
    assert a_cc == ["Rita Reviewer <rita@example.org>", "Bob Reviewer <bob@example.org>", "a-list@example.org",
                    "linux-mm@example.org", "linux-kernel@example.org"]  # Rita leaves Cc: when mail is made
    assert b_to == ["Andrew Fixture <akpm@example.org>", "Rita Reviewer <rita@example.org>"]
    assert b_cc == ["linux-mm@example.org", "linux-kernel@example.org"]
    assert runs == {"[PATCH 1/2] mm: change a.c": 3, "[PATCH 2/2] mm: change b.c": 1}


@pytest.mark.unit
def test_addresses():
    assert mail.check_address(' "Morton, A." <a@example.org> ', "--to") == '"Morton, A." <a@example.org>'
    for bad in ("a@example.org, b@example.org", "x\n@y", "nobody"):
        with pytest.raises(Exception):
            mail.check_address(bad, "--to")


@pytest.mark.unit
def test_mail_headers_are_edited_in_place():
    raw = (b"From 0123 Mon Sep 17 00:00:00 2001\nMessage-Id: <old@x>\nFrom: A <a@example.org>\n"
           b"Date: Mon, 18 Nov 2024 12:00:00 +0000\nSubject: [RFC PATCH v1 01/13] mm: memory: copy_pte_range() use\n"
           b" pte_offset_map_maywrite_nolock()\n\nBody.\n\nSigned-off-by: A <a@example.org>\n---\n a | 1 +\n")
    m = mail.Message(raw)
    assert m.get("subject") == "[RFC PATCH v1 01/13] mm: memory: copy_pte_range() use pte_offset_map_maywrite_nolock()"
    m.set("Message-Id", "<new@x>")
    m.set("To", '"Morton, A." <a@example.org>, B <b@example.org>', after="Subject")
    m.body = mail.insert_notes(m.body, "Changes in v2:\n- one\n")
    out = m.to_bytes().decode()
    assert out.startswith("From 0123 Mon Sep 17 00:00:00 2001\nMessage-Id: <new@x>\nFrom: A")
    assert ("Subject: [RFC PATCH v1 01/13] mm: memory: copy_pte_range() use\n pte_offset_map_maywrite_nolock()\n"
            "To: \"Morton, A.\" <a@example.org>,\n    B <b@example.org>\n\nBody.") in out
    assert out.endswith("---\nChanges in v2:\n- one\n\n a | 1 +\n")


@pytest.mark.unit
def test_source_date_epoch(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert str(series.series_date(None, "unused")) == "@1700000000 +0000"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "tomorrow")
    with pytest.raises(Exception, match="SOURCE_DATE_EPOCH"):
        series.series_date(None, "unused")


# --------------------------------------------------------------------------
# the real tree
# --------------------------------------------------------------------------

@pytest.mark.kernel
def test_real_tree_series(kernel_tree, tmp_path):
    """12 patches and a cover letter (the demo plan keeps one call, so the
    old function stays and no patch removes it); they apply with git am,
    in order, to the tree the branch ends at, which is the tree `rewriter
    diff` shows."""
    t0 = time.monotonic()
    repo = clone(kernel_tree, tmp_path / "linux", "--no-checkout")
    out = tmp_path / "outgoing"
    diff_file = tmp_path / "diff.patch"
    with open(diff_file, "w") as f:
        procs = [start("series", "--tree", repo, "-o", out, "--plan", DEMO_PLAN),
                 start("diff", "--tree", repo, "--plan", DEMO_PLAN, stdout=f)]
        results = [finish(p, timeout=3600) for p in procs]
    for code, _o, err in results:
        assert code == 0, err
    files = patch_files(out)
    assert len(files) == 13, [f.name for f in files]
    subjects = [headers(f)["subject"] for f in files]
    for k, s in enumerate(subjects):
        assert s.startswith(f"[RFC PATCH {k:02d}/12] "), s
    assert subjects[1].endswith("mm: pgtable: introduce pte_offset_map_{readonly|maywrite}_nolock()")
    assert not any(s.endswith("remove pte_offset_map_nolock()") for s in subjects)
    assert any(s.endswith("ARM: adjust_pte() use pte_offset_map_maywrite_nolock()") for s in subjects)
    assert any(s.startswith("powerpc/mm: ", s.index("] ") + 2) for s in subjects)
    for f in files:
        assert "***" not in f.read_text()
    # Every patch reaches the mm list and the mm maintainer, the arm and
    # powerpc ones too; each also goes to its own maintainers.
    for f in files:
        h = headers(f)
        assert "linux-mm@kvack.org" in h["to"] + h["cc"] and "Andrew Morton" in h["to"], f.name
    arm = headers(next(f for f in files if "adjust_pte" in f.name))
    assert "Russell King" in arm["to"] and "linux-arm-kernel@lists.infradead.org" in arm["cc"]
    assert headers(files[0])["to"] == "Andrew Morton <akpm@linux-foundation.org>"
    base = git(repo, "rev-parse", "HEAD")
    # The commit messages: the kernel's style, and its lengths.
    record = json.loads(git(repo, "cat-file", "blob", "refs/rewriter/versions/v1:record.json"))
    words = []
    for p in record["patches"]:
        message = git(repo, "log", "-1", "--format=%B", p["commit"])
        assert_kernel_style(message)
        words.append(changelog.word_count(message.split("\n", 2)[2]))
        if p["file"] == "mm/memory.c":
            assert p["subject"].startswith("mm: ") and not p["subject"].startswith("mm: memory:"), p["subject"]
    assert sorted(words)[len(words) // 2] <= 100 and max(words) <= 220, words
    # No paragraph is copied across patches, but for the one sentence
    # about the race that the may-write patches share.
    seen: dict[str, str] = {}
    for p in record["patches"]:
        message = git(repo, "log", "-1", "--format=%B", p["commit"]).split("\n", 2)[2]
        for para in message.split("\n\n"):
            text = re.sub(r"khugepaged's retract_page_tables\(\) can free [^.]*\.", "", " ".join(para.split()))
            if text.strip() and not text.startswith("Signed-off-by:"):
                assert seen.setdefault(text.strip(), p["subject"]) == p["subject"], (text, p["subject"])
    print(f"real tree: commit messages of {min(words)} to {max(words)} words, median {sorted(words)[len(words) // 2]}")
    branch_tree = git(repo, "rev-parse", f"{BRANCH}^{{tree}}")
    # git am, in order, onto the base, in a scratch clone that checks out
    # only the files the series touches.
    touched = sorted({m for f in files[1:] for m in re.findall(r"^diff --git a/(\S+) ", f.read_text(), re.M)})
    am = clone(kernel_tree, tmp_path / "am", "--no-checkout")
    git(am, "sparse-checkout", "set", "--no-cone", *[f"/{p}" for p in touched])
    git(am, "checkout", "-q", base)
    git(am, "am", "-q", *[str(f) for f in files[1:]])
    assert git(am, "rev-list", "--count", f"{base}..HEAD") == "12"
    assert git(am, "rev-parse", "HEAD^{tree}") == branch_tree
    # The tree `rewriter diff` shows, applied to a scratch index.
    index = {"GIT_INDEX_FILE": str(tmp_path / "index")}
    git(repo, "read-tree", base, env=index)
    git(repo, "apply", "--cached", str(diff_file), env=index)
    assert git(repo, "write-tree", env=index) == branch_tree
    print(f"real tree: series, diff and git am in {time.monotonic() - t0:.0f}s")


def test_authors_of_the_definition_are_copied(tmp_path):
    """git log -L on the definition's lines: the authors of the last three
    kernel commits that changed them, not of local commits, not of
    commits elsewhere in the file, not the sender."""
    repo = tmp_path / "repo"
    (repo / "mm").mkdir(parents=True)
    git(tmp_path, "init", "-q", str(repo))
    source = repo / "mm" / "pgtable-generic.c"
    body = ["pte_t *pte_offset_map_nolock(struct mm_struct *mm, pmd_t *pmd,", "{", "\treturn NULL;", "}"]

    def commit(lines, who, subject, signed=True, head="/* head */"):
        source.write_text("\n".join([head, "", *lines, "", "int other;"]) + "\n")
        git(repo, "add", "-A")
        env = {"GIT_AUTHOR_NAME": who.split(" <")[0], "GIT_AUTHOR_EMAIL": who.split("<")[1].rstrip(">")}
        git(repo, "commit", "-q", "--allow-empty", *(["-s"] if signed else []), "-m", subject, env=env)

    commit(body, "Old Author <old@example.org>", "mm: add it")
    for k, who in enumerate(["Ann A <ann@example.org>", "Bob B <bob@example.org>", "Series Tester <series-tester@example.org>",
                             "Cid C <cid@example.org>"]):
        commit(body[:2] + [f"\t/* {k} */", "\treturn NULL;", "}"], who, f"mm: pgtable: change {k}")
        body = body[:2] + [f"\t/* {k} */", "\treturn NULL;", "}"]
    commit(body, "Local Me <me@example.org>", "test: mine", signed=False)  # no change to the lines
    commit(body + ["/* x */"], "Local Me <me@example.org>", "wip", signed=False)
    commit(body, "Far Away <far@example.org>", "mm: elsewhere", head="/* another head */")
    scan = SimpleNamespace(mentions=[SimpleNamespace(kind="definition", file="mm/pgtable-generic.c", line=3)])
    sender = series.parse_ident("Series Tester <series-tester@example.org>")
    authors = series.api_authors(maintainers.Git(repo / ".git"), "HEAD", scan, sender)
    assert authors == ["Cid C <cid@example.org>", "Bob B <bob@example.org>"], authors


def test_testing_from_a_report_and_a_bad_report(fresh, plan_v1, tmp_path):
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"patches": [{"number": 1, "checkpatch": {"errors": 0, "warnings": 0, "checks": 0}}],
                                  "boot": {"ok": True}}))
    out = tmp_path / "out"
    code, _o, err = run("series", "--tree", fresh, "--plan", plan_v1, "-o", out, "--testing", report)
    assert code == 0, err
    cover = " ".join((out / "0000-cover-letter.patch").read_text().split())
    assert ("Testing: - scripts/checkpatch.pl on all 1 patches: 0 errors, 0 warnings, 0 checks. - Boot: ok. "
            "How the series was made") in cover
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    _refused(fresh, tmp_path / "out2", "--branch", "other", "--testing", bad,
             message="not a 'rewriter check --json' report")
