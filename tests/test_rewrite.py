"""`rewriter plan` and `rewriter diff` on the fixture tree and the real tree."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path

import pytest
import unidiff

from harness import UNPLACEABLE, set_in_plan, settle_reviews

API = "pte_offset_map_nolock"


def _plan(tools, repo: Path, tmp_path: Path) -> Path:
    out = tmp_path / "plan.toml"
    code, _out, err = tools.run_rewriter("plan", "--tree", repo, "-o", out)
    assert code == 0, err
    return out


@pytest.fixture
def workable_plan(tools, fixture_repo, tmp_path) -> Path:
    """The default plan, with the one call that needs a person's decision
    (it hands the table back unlocked) set to a dummy pmdval."""
    path = _plan(tools, fixture_repo, tmp_path)
    path.write_text(settle_reviews(set_in_plan(path.read_text(), UNPLACEABLE, "recheck", '"dummy"')))
    return path


def test_plan_lists_every_call(tools, fixture_repo, tmp_path, scan_data):
    text = _plan(tools, fixture_repo, tmp_path).read_text()
    assert text.count("\n[[call]]\n") == len(scan_data["sites"])
    for site in scan_data["sites"]:
        assert f'function = "{site["function"]}"' in text
    assert f'rev = "{scan_data["rev"]}"' in text


def test_default_plan_leaves_the_calls_to_review(tools, fixture_repo, tmp_path):
    """Without a plan that settles them, diff leaves the calls marked for
    review as they are and says so in one note; series refuses, naming the
    first of them and its question."""
    code, out, err = tools.run_rewriter("diff", "--tree", fixture_repo)
    assert code == 0 and out.startswith("diff --git"), err
    assert err.startswith("rewriter: note: ") and "need review and are left as they are" in err, err
    assert "fixture_map_for_caller()" in err and len(err.strip().splitlines()) == 1, err
    assert "-\tpte = pte_offset_map_nolock(mm, pmd, addr, ptlp);" not in out  # fixture_map_for_caller's call
    code, out, err = tools.run_rewriter("series", "--tree", fixture_repo, "-o", tmp_path / "out",
                                        "--author", "A U Thor <author@example.org>")
    assert code == 3 and out == "", err
    assert "needs review: " in err and "decision" in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace('function = "fixture_zap_via_helper"', 'function = "fixture_gone"', 1), "stale"),
    (lambda t: t.replace('\nverdict = "ro"', '\nverdict = "maybe"', 1), "unknown verdict"),
    (lambda t: t.replace('\nrecheck = "pmd_same"', '\nrecheck = "pmdsame"', 1), "needs recheck"),
    (lambda t: t.replace("\nindex = 0", "\nindex = -1", 1), "whole number"),
    (lambda t: t.replace("\nverdict =", "\nverdict ==", 1), "not a valid TOML plan"),
])
def test_bad_plans_are_refused_with_their_line(tools, fixture_repo, workable_plan, edit, message):
    text = workable_plan.read_text()
    workable_plan.write_text(edit(text))
    code, out, err = tools.run_rewriter("diff", "--tree", fixture_repo, "--plan", workable_plan)
    assert code == 3 and out == ""
    assert message in err
    assert re.search(re.escape(str(workable_plan)) + r":\d+", err), err
    assert len(err.strip().splitlines()) == 1


def test_plan_missing_a_call_is_refused(tools, fixture_repo, workable_plan):
    text = workable_plan.read_text()
    head, first, rest = text.partition("\n[[call]]\n")
    _dropped, second, tail = rest.partition("\n[[call]]\n")
    workable_plan.write_text(head + second + tail)
    code, _out, err = tools.run_rewriter("diff", "--tree", fixture_repo, "--plan", workable_plan)
    assert code == 3 and "no entry for the call" in err


@pytest.fixture(scope="module")
def full_diff(tools, tmp_path_factory):
    repo = tools.make_git_repo(tools.FIXTURE_TREE, tmp_path_factory.mktemp("diff") / "linux")
    plan = tmp_path_factory.mktemp("plan") / "plan.toml"
    code, _o, err = tools.run_rewriter("plan", "--tree", repo, "-o", plan)
    assert code == 0, err
    plan.write_text(settle_reviews(set_in_plan(plan.read_text(), UNPLACEABLE, "recheck", '"dummy"')))
    code, out, err = tools.run_rewriter("diff", "--tree", repo, "--plan", plan)
    assert code == 0, err
    return repo, plan, out


def test_diff_parses_and_applies(full_diff, tools, tmp_path):
    repo, _plan_path, out = full_diff
    patch = unidiff.PatchSet(out)
    files = {p.path for p in patch}
    assert "include/linux/mm.h" in files and "mm/pgtable-generic.c" in files
    assert "Documentation/mm/split_page_table_lock.rst" in files
    # Apply in a clone, as a reviewer would.
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    subprocess.run(["git", "apply", "--whitespace=error-all", "-"], input=out, text=True,
                   cwd=clone, check=True)
    tools.commit_all(clone, "converted")
    # No call is left; every call the scan found has its new name.
    code, sout, serr = tools.run_rewriter("scan", "--tree", clone, "--format", "json")
    if code == 0:
        import json
        assert json.loads(sout)["sites"] == []
    else:
        assert code == 3 and "does not occur" in serr
    grep = subprocess.run(["git", "grep", "-n", "-w", API, "--", "*.h", "*.rst"], cwd=clone,
                          capture_output=True, text=True)
    leftover = [l for l in grep.stdout.splitlines() if not l.split(":", 2)[2].lstrip().startswith(("*", "/*", "//"))]
    assert leftover == [], leftover


def test_diff_edits_follow_the_plan(full_diff, scan_data):
    _repo, _plan_path, out = full_diff
    patch = unidiff.PatchSet(out)
    added = {p.path: [l.value for h in p for l in h if l.is_added] for p in patch}
    for site in scan_data["sites"]:
        lines = added.get(site["file"], [])
        new = "pte_offset_map_readonly_nolock(" if site["verdict"] == "ro" else "pte_offset_map_maywrite_nolock("
        assert any(new in l for l in lines), (site["function"], new)
    for path, lines in added.items():
        text = "".join(lines)
        for line in lines:
            assert not line.rstrip("\n").endswith((" ", "\t")), (path, line)
            if path.endswith((".c", ".h")):  # kernel style: indent with tabs
                assert not re.match(r"^ {2,}", line), (path, line)
        if "maywrite_nolock(" in text and path.endswith(".c") and "pgtable-generic" not in path:
            assert "pmd_t " in text, path


def test_pmd_same_recheck_after_the_lock(full_diff):
    _repo, _plan_path, out = full_diff
    patch = unidiff.PatchSet(out)
    fx = next(p for p in patch if p.path == "mm/fixture_locks.c")
    body = "".join(str(h) for h in fx)
    assert "if (unlikely(!pmd_same(pmdval, pmdp_get_lockless(pmd)))) {" in body
    assert "pte_unmap_unlock(pte, ptl);" in body


def test_dummy_calls_share_one_local_and_carry_a_comment(full_diff):
    _repo, _plan_path, out = full_diff
    patch = unidiff.PatchSet(out)
    fault = next(p for p in patch if p.path == "mm/fixture_fault.c")
    added = [l.value for h in fault for l in h if l.is_added]
    assert any("pmd_t dummy_pmdval;" in l for l in added)
    assert any("pte_same()" in l for l in added)


def _snapshot(repo: Path) -> dict:
    def run(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout

    files = {}
    for root, dirs, names in os.walk(repo):
        if ".git" in dirs:
            dirs.remove(".git")
        for n in names:
            p = Path(root) / n
            files[str(p.relative_to(repo))] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode)
    git_dir = repo / ".git"
    return {
        "files": files,
        "index": hashlib.sha256((git_dir / "index").read_bytes()).hexdigest(),
        "head": (git_dir / "HEAD").read_text(),
        "refs": run("for-each-ref", "--format=%(refname) %(objectname)"),
        "stash": run("stash", "list"),
        "config": (git_dir / "config").read_text(),
        "status": run("status", "--porcelain=v1", "--untracked-files=all"),
    }


def test_diff_changes_nothing_in_a_dirty_repository(tools, scratch_repo, tmp_path):
    repo = scratch_repo
    (repo / "mm" / "fixture_basic.c").write_text((repo / "mm" / "fixture_basic.c").read_text() + "\n/* wip */\n")
    tools.git(repo, "stash", "-q")
    (repo / "mm" / "fixture_locks.c").write_text((repo / "mm" / "fixture_locks.c").read_text() + "\n/* staged */\n")
    tools.git(repo, "add", "mm/fixture_locks.c")
    (repo / "untracked.txt").write_text("keep me\n")
    plan = _plan(tools, repo, tmp_path)
    plan.write_text(settle_reviews(set_in_plan(plan.read_text(), UNPLACEABLE, "recheck", '"dummy"')))
    before = _snapshot(repo)
    code, out, err = tools.run_rewriter("diff", "--tree", repo, "--plan", plan, "--emit-cocci", tmp_path / "cocci")
    assert code == 0, err
    assert out.startswith("diff --git")
    assert _snapshot(repo) == before


def test_names_ro_rw_and_bad_names(tools, fixture_repo, workable_plan):
    code, out, err = tools.run_rewriter("diff", "--tree", fixture_repo, "--plan", workable_plan,
                                        "--names", "ro,rw", "--site", "mm/fixture_locks.c:fixture_trylock_wrprotect")
    assert code == 0, err
    assert "pte_offset_map_rw_nolock(" in out and "maywrite" not in out
    for bad in ("ro", "a-b,c", "x,x"):
        code, out, err = tools.run_rewriter("diff", "--tree", fixture_repo, "--names", bad)
        assert code == 3 and out == "" and len(err.strip().splitlines()) == 1, (bad, err)


def test_names_that_exist_are_refused(tools, scratch_repo):
    (scratch_repo / "mm" / "taken.c").write_text("int pte_offset_map_ro_nolock;\n")
    tools.commit_all(scratch_repo, "take the name")
    code, out, err = tools.run_rewriter("diff", "--tree", scratch_repo, "--names", "ro,rw")
    assert code == 3 and out == ""
    assert "already occurs" in err and "mm/taken.c" in err


def test_site_filter_touches_one_function(tools, fixture_repo, workable_plan):
    code, out, err = tools.run_rewriter("diff", "--tree", fixture_repo, "--plan", workable_plan,
                                        "--site", "mm/fixture_basic.c:fixture_decl_init_rw")
    assert code == 0, err
    patch = unidiff.PatchSet(out)
    assert [p.path for p in patch] == ["mm/fixture_basic.c"]
    code, _out, err = tools.run_rewriter("diff", "--tree", fixture_repo, "--site", "mm/none.c:nothing")
    assert code == 3 and "no call" in err


def test_emitted_semantic_patches_run_by_hand(tools, fixture_repo, workable_plan, tmp_path):
    out_dir = tmp_path / "cocci"
    code, _out, err = tools.run_rewriter("diff", "--tree", fixture_repo, "--plan", workable_plan,
                                         "--emit-cocci", out_dir)
    assert code == 0, err
    rules = sorted(out_dir.glob("*.cocci"))
    assert rules
    # A file edited in several rounds has one rule per round, applied in order.
    mine = [r for r in rules if r.name.startswith("mm__fixture_basic.c")]
    mine.sort(key=lambda r: int(r.name.split(".")[-2]) if r.name.split(".")[-2].isdigit() else 0)
    src = tmp_path / "fixture_basic.c"
    original = (fixture_repo / "mm" / "fixture_basic.c").read_bytes()
    src.write_bytes(original)
    for rule in mine:
        proc = subprocess.run(["spatch", "--very-quiet", "--no-includes", "--in-place", "--sp-file", str(rule),
                               str(src)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    by_hand = src.read_text()
    assert by_hand != original.decode()
    calls = [l for l in by_hand.splitlines()
             if API + "(" in l and not l.startswith("pte_t") and not l.lstrip().startswith(("*", "/*"))]
    assert calls == [], calls


@pytest.mark.kernel
def test_whole_conversion_of_the_real_tree(tools, kernel_tree, tmp_path):
    """The demo plan's conversion: every call but the one it keeps has its
    new name, and the old function stays for that one."""
    plan = Path(__file__).resolve().parent.parent / "demo" / "linux-6.12.plan.toml"
    code, out, err = tools.run_rewriter("diff", "--tree", kernel_tree, "--plan", plan,
                                        timeout=tools.KERNEL_SCAN_TIMEOUT)
    assert code == 0, err
    patch = unidiff.PatchSet(out)
    files = {p.path for p in patch}
    assert len(files) == 12, sorted(files)
    # Apply to a scratch index (no checkout of the kernel) and look for the old name.
    env = dict(os.environ, GIT_INDEX_FILE=str(tmp_path / "index"))
    subprocess.run(["git", "read-tree", "HEAD"], cwd=kernel_tree, env=env, check=True)
    subprocess.run(["git", "apply", "--cached", "-"], input=out, text=True, cwd=kernel_tree, env=env, check=True)
    grep = subprocess.run(["git", "grep", "--cached", "-n", "-w", API, "--", "*.c", "*.h", "*.rst"],
                          cwd=kernel_tree, env=env, capture_output=True, text=True)
    calls = [l for l in grep.stdout.splitlines() if l.startswith(("mm/userfaultfd.c", "arch/", "mm/memory.c"))]
    assert len(calls) == 1 and "dst_pte = pte_offset_map_nolock(" in calls[0], grep.stdout
    assert any(l.startswith("include/linux/mm.h:") for l in grep.stdout.splitlines())  # kept for that call
    added = "".join(l.value for p in patch for h in p for l in h if l.is_added)
    assert added.count("if (unlikely(!pmd_same(") == 6  # adjust_pte, collapse x2, map_pte + walk, walk_pte_range
    assert added.count("pmd_t dummy_pmdval;") == 4


NO_FAILURE_CHECK = """\
static void fixture_unchecked_clear(struct mm_struct *mm, pmd_t *pmd,
\t\t\t\t    unsigned long addr)
{
\tspinlock_t *ptl;
\tpte_t *pte;

\tpte = pte_offset_map_nolock(mm, pmd, addr, &ptl);
\tspin_lock(ptl);
\tpte_clear(mm, addr, pte);
\tpte_unmap_unlock(pte, ptl);
}
"""


def test_recheck_without_a_failure_action_needs_the_plan(tools, scratch_repo, tmp_path):
    """No 'if (!pte)' after the call: the tool stops, naming the call, until
    the plan says what to do; then it writes exactly that."""
    (scratch_repo / "mm" / "fixture_unchecked.c").write_text(NO_FAILURE_CHECK)
    tools.commit_all(scratch_repo, "a caller that never checks the mapping")
    plan = _plan(tools, scratch_repo, tmp_path)
    plan.write_text(settle_reviews(set_in_plan(plan.read_text(), UNPLACEABLE, "recheck", '"dummy"')))
    key = "mm/fixture_unchecked.c:fixture_unchecked_clear:0"
    code, out, err = tools.run_rewriter("diff", "--tree", scratch_repo, "--plan", plan,
                                        "--site", "mm/fixture_unchecked.c:fixture_unchecked_clear")
    assert code == 3 and out == ""
    assert key in err and "on_recheck_fail" in err
    # The plan's body replaces the whole failure path: it releases what is held itself.
    plan.write_text(set_in_plan(plan.read_text(), key, "on_recheck_fail", '"pte_unmap_unlock(pte, ptl);\\nreturn;"'))
    code, out, err = tools.run_rewriter("diff", "--tree", scratch_repo, "--plan", plan,
                                        "--site", "mm/fixture_unchecked.c:fixture_unchecked_clear")
    assert code == 0, err
    added = [l.value.rstrip("\n") for p in unidiff.PatchSet(out) for h in p for l in h if l.is_added]
    assert "\tif (unlikely(!pmd_same(pmdval, pmdp_get_lockless(pmd)))) {" in added
    assert added.count("\t\tpte_unmap_unlock(pte, ptl);") == 1
    assert "\t\treturn;" in added


TWO_FAILURE_CHECKS = """\
static int fixture_two_checks_clear(struct mm_struct *mm, pmd_t *pmd,
\t\t\t\t    unsigned long addr, bool wait)
{
\tspinlock_t *ptl;
\tpte_t *pte;

\tpte = pte_offset_map_nolock(mm, pmd, addr, &ptl);
\tif (wait) {
\t\tif (!pte)
\t\t\treturn -EAGAIN;
\t} else {
\t\tif (!pte)
\t\t\treturn -ENOMEM;
\t}
\tspin_lock(ptl);
\tpte_clear(mm, addr, pte);
\tpte_unmap_unlock(pte, ptl);
\treturn 0;
}
"""


def test_paths_to_different_failure_checks_need_the_plan(tools, scratch_repo, tmp_path):
    """The check of the mapping differs with the path taken: there is no one
    failure action to copy, so the tool asks the plan for it."""
    (scratch_repo / "mm" / "fixture_two_checks.c").write_text(TWO_FAILURE_CHECKS)
    tools.commit_all(scratch_repo, "a caller that checks the mapping in two places")
    plan = _plan(tools, scratch_repo, tmp_path)
    plan.write_text(set_in_plan(plan.read_text(), UNPLACEABLE, "recheck", '"dummy"'))
    key = "mm/fixture_two_checks.c:fixture_two_checks_clear:0"
    site = "mm/fixture_two_checks.c:fixture_two_checks_clear"
    code, out, err = tools.run_rewriter("diff", "--tree", scratch_repo, "--plan", plan, "--site", site)
    assert code == 3 and out == ""
    assert key in err and "different 'if (!pte)' checks" in err and "on_recheck_fail" in err
    plan.write_text(set_in_plan(plan.read_text(), key, "on_recheck_fail", '"return -EAGAIN;"'))
    code, out, err = tools.run_rewriter("diff", "--tree", scratch_repo, "--plan", plan, "--site", site)
    assert code == 0, err
    added = [l.value.rstrip("\n") for p in unidiff.PatchSet(out) for h in p for l in h if l.is_added]
    assert "\t\treturn -EAGAIN;" in added
