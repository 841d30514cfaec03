"""The series and b4 (https://b4.docs.kernel.org), with the real b4.

* `rewriter series --b4` makes the branch as `b4 prep` keeps it: b4 finds
  the cover letter, `b4 prep --check` finds nothing that checkpatch in
  `rewriter check` does not, and `b4 send --dry-run` makes the 13 mails (the demo plan keeps one
  call, so the old function stays and no patch removes it).
* `b4 am` of the mbox that `rewriter check --mail` receives gives back the
  series' commits: the same trees, authors and messages.

b4 runs with HOME, XDG_* and the global git config in a scratch
directory (it never reads or writes the user's), in offline mode, with
the one setting send needs pointed at 127.0.0.1 through GIT_CONFIG_*:
nothing goes to the network.  The real tree gives checkpatch.pl and the
MAINTAINERS these tests need: they carry the kernel marker.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rewriter import series

pytestmark = pytest.mark.kernel

AUTHOR = ("B4 Tester", "b4-tester@example.org")
BRANCH = "b4/pte-split"
B4 = shutil.which("b4", path=str(Path(sys.executable).parent)) or shutil.which("b4")
PROJECT_ROOT = Path(__file__).resolve().parent.parent
# What checkpatch.pl wants to find to know it runs at the top of a kernel
# tree, and what the series touches: all a sparse checkout needs.
SPARSE = ["/*", "!/*/", "/scripts/", "/drivers/Makefile", "/fs/Makefile", "/init/Makefile", "/ipc/Makefile",
          "/kernel/Makefile", "/lib/Makefile", "/mm/", "/include/linux/mm.h", "/arch/arm/mm/",
          "/arch/powerpc/mm/", "/Documentation/mm/"]


def run(cmd: list[str], cwd: Path, env: dict, timeout: float = 1800) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))}: {proc.stdout[-2000:]}{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> dict:
    """An environment with its own HOME and git config, for b4 and git."""
    root = tmp_path_factory.mktemp("b4home")
    (root / ".gitconfig").write_text(f"[user]\n\tname = {AUTHOR[0]}\n\temail = {AUTHOR[1]}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "XDG_", "EMAIL"))}
    env.update(HOME=str(root), GIT_CONFIG_GLOBAL=str(root / ".gitconfig"), GIT_CONFIG_NOSYSTEM="1",
               XDG_CONFIG_HOME=str(root / "config"), XDG_CACHE_HOME=str(root / "cache"),
               XDG_DATA_HOME=str(root / "data"), LC_ALL="C.UTF-8",
               # b4 send sends through SMTP when sendemail.smtpserver is
               # set (else through a web endpoint); --dry-run never connects.
               GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="sendemail.smtpserver", GIT_CONFIG_VALUE_0="127.0.0.1",
               PYTHONPATH=str(PROJECT_ROOT))
    return env


@pytest.fixture(scope="module")
def made(kernel_tree, home, tmp_path_factory):
    """The real tree's series with --b4, in a sparse clone on its branch."""
    assert B4, "b4 is not installed: pip install -e '.[test]'"
    top = tmp_path_factory.mktemp("b4")
    repo = top / "linux"
    run(["git", "clone", "-q", "--shared", "--no-checkout", str(kernel_tree), str(repo)], top, home)
    run(["git", "sparse-checkout", "set", "--no-cone", *SPARSE], repo, home)
    run(["git", "checkout", "-q"], repo, home)
    base = run(["git", "rev-parse", "HEAD"], repo, home).stdout.strip()
    out = top / "outgoing"
    # the plan a reviewer settled the 6.12 review calls in, as make demo uses it
    run([sys.executable, "-m", "rewriter", "series", "--tree", str(repo), "-o", str(out), "--b4",
         "--plan", str(PROJECT_ROOT / "demo" / "linux-6.12.plan.toml"), "--branch", BRANCH],
        repo, home, timeout=3600)
    run(["git", "checkout", "-q", BRANCH], repo, home)
    return repo, out, base


def test_the_branch_is_b4s(made, home):
    repo, out, base = made
    commits = run(["git", "rev-list", "--reverse", f"{base}..{BRANCH}"], repo, home).stdout.split()
    assert len(commits) == 13
    cover = run(["git", "log", "-1", "--format=%B", commits[0]], repo, home).stdout
    assert run(["git", "diff", "--name-only", base, commits[0]], repo, home).stdout == ""  # empty
    text, _, tracking = cover.partition(series.B4_MARKER + "\n")
    data = json.loads(tracking[tracking.index("{"):])
    assert data["series"]["revision"] == 1 and data["series"]["prefixes"] == ["RFC"]
    assert re.fullmatch(r"\d{8}-[a-z0-9-]+-[0-9a-f]{12}", data["series"]["change-id"])
    assert text.startswith("mm: split pte_offset_map_nolock() into read-only and may-write variants\n\n")
    assert "\nTo: Andrew Morton <akpm@linux-foundation.org>\n" in text and "\nCc: linux-mm@kvack.org\n" in text
    # The same changes and messages as the patch files.
    record = json.loads(run(["git", "cat-file", "blob", "refs/rewriter/versions/v1:record.json"], repo,
                            home).stdout)
    assert record["change_id"] == data["series"]["change-id"]
    for sha, p in zip(commits[1:], record["patches"]):
        assert run(["git", "rev-parse", f"{sha}^{{tree}}"], repo, home).stdout == \
            run(["git", "rev-parse", f"{p['commit']}^{{tree}}"], repo, home).stdout
        assert run(["git", "log", "-1", "--format=%B", sha], repo, home).stdout == \
            run(["git", "log", "-1", "--format=%B", p["commit"]], repo, home).stdout


def test_b4_prep_check_finds_nothing_new(made, home):
    repo, out, _base = made
    proc = run([B4, "--offline-mode", "prep", "--check"], repo, home)
    log = proc.stdout + proc.stderr
    m = re.search(r"Success: (\d+), Warning: (\d+), Error: (\d+)", log)
    assert m, log
    # What rewriter check's checkpatch finds in the same patches.
    report = json.loads(run([sys.executable, "-m", "rewriter", "check", "--tree", str(repo), "--series",
                             str(out), "--json"], repo, home).stdout)
    warned = sum(1 for p in report["patches"][1:] if p["checkpatch"]["warnings"] or p["checkpatch"]["checks"])
    failed = sum(1 for p in report["patches"][1:] if p["checkpatch"]["errors"])
    assert (int(m.group(2)), int(m.group(3))) == (warned, failed) == (0, 0), log
    assert int(m.group(1)) == 12, log


def test_b4_send_dry_run(made, home):
    repo, _out, _base = made
    proc = run([B4, "--offline-mode", "send", "--dry-run", "--no-sign"], repo, home)
    log = proc.stdout + proc.stderr
    assert "Would have sent 13 messages" in log, log[-3000:]
    subjects = re.findall(r"^    \| Subject: (.*)$", log, re.M)
    assert subjects[0].startswith("[PATCH RFC 00/12] mm: split pte_offset_map_nolock()"), subjects
    assert len(re.findall(r"^    \| To: Andrew Morton <akpm@linux-foundation.org>", log, re.M)) == 13


def test_b4_am_of_the_mails_gives_the_series_back(made, home, tmp_path):
    repo, out, base = made
    mbox = tmp_path / "received.mbox"
    run([sys.executable, "-m", "rewriter", "check", "--tree", str(repo), "--series", str(out), "--mail",
         "--mbox", str(mbox)], repo, home)
    am_dir = tmp_path / "am"
    run([B4, "--offline-mode", "am", "--no-cache", "-m", str(mbox), "-o", str(am_dir)], tmp_path, home)
    mbx = sorted(am_dir.glob("*.mbx"))
    assert len(mbx) == 1, list(am_dir.iterdir())
    work = tmp_path / "work"
    run(["git", "clone", "-q", "--shared", "--no-checkout", str(repo), str(work)], tmp_path, home)
    run(["git", "sparse-checkout", "set", "--no-cone", *SPARSE], work, home)
    run(["git", "checkout", "-q", "-b", "applied", base], work, home)
    run(["git", "am", "-q", str(mbx[0])], work, home)
    record = json.loads(run(["git", "cat-file", "blob", "refs/rewriter/versions/v1:record.json"], repo,
                            home).stdout)
    applied = run(["git", "rev-list", "--reverse", f"{base}..HEAD"], work, home).stdout.split()
    assert len(applied) == len(record["patches"]) == 12
    for sha, p in zip(applied, record["patches"]):
        for fmt in ("%T", "%an <%ae>", "%B"):
            assert run(["git", "log", "-1", f"--format={fmt}", sha], work, home).stdout == \
                run(["git", "log", "-1", f"--format={fmt}", p["commit"]], repo, home).stdout, (p["subject"], fmt)
