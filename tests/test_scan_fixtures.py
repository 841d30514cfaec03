"""`rewriter scan` on the fixture tree (tests/fixtures/tree).

The expected verdicts live in tests/fixtures/expected.toml; call lines and
function extents are computed from the fixture sources (conftest.SourceTree).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

API = "pte_offset_map_nolock"
SHA_RE = re.compile(r"[0-9a-f]{40}")
VERDICTS = {"ro", "rw"}
RECHECKS = {"pmd_same", "dummy"}
MENTION_KINDS = {"declaration", "definition", "documentation", "comment", "other"}
SITE_KEYS = {"file", "line", "function", "call", "verdict", "recheck",
             "review", "reasons", "evidence"}

# Appended to mm/fixture_basic.c in a later commit by test_rev_*.
ADDED_LATER = """
static void fixture_added_later(struct mm_struct *mm, pmd_t *pmd,
\t\t\t\tunsigned long addr)
{
\tspinlock_t *ptl;
\tpte_t *pte;

\tpte = pte_offset_map_nolock(mm, pmd, addr, &ptl);
\tif (!pte)
\t\treturn;
\tspin_lock(ptl);
\tpte_clear(mm, addr, pte);
\tpte_unmap_unlock(pte, ptl);
}
"""

# Never committed: must not show up in a scan of HEAD.
UNCOMMITTED = """// SPDX-License-Identifier: GPL-2.0

static void fixture_not_committed(struct mm_struct *mm, pmd_t *pmd,
\t\t\t\t  unsigned long addr)
{
\tspinlock_t *ptl;
\tpte_t *pte;

\tpte = pte_offset_map_nolock(mm, pmd, addr, &ptl);
\tif (!pte)
\t\treturn;
\tspin_lock(ptl);
\tptep_clear(mm, addr, pte);
\tpte_unmap_unlock(pte, ptl);
}
"""


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def norm(text: str) -> str:
    return " ".join(text.split())


def sites_by_function(data: dict) -> dict[tuple[str, str], list[dict]]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for site in data["sites"]:
        groups.setdefault((site["file"], site["function"]), []).append(site)
    for sites in groups.values():
        sites.sort(key=lambda s: s["line"])
    return groups


def find_site(data: dict, expected) -> dict:
    sites = sites_by_function(data).get((expected.file, expected.function), [])
    if expected.index >= len(sites):
        pytest.fail(
            f"no site #{expected.index} in {expected.file}:{expected.function}"
            f" (scan reported {len(sites)} there)")
    return sites[expected.index]


def mention_set(data: dict) -> set[tuple[str, int, str]]:
    return {(m["file"], m["line"], m["kind"]) for m in data["mentions"]}


def site_key(site: dict) -> tuple:
    return (site["file"], site["line"], site["function"])


def scan_ok(result) -> dict:
    assert result.data is not None, \
        "scan did not print one JSON object\n" + result.describe()
    assert result.returncode == 0, result.describe()
    return result.data


def evidence_points_at_source(ev: dict, lines: list[str]) -> bool:
    """The evidence text is (part of) the source line it names, or the
    statement starting there."""
    text = norm(ev["text"])
    src = norm(lines[ev["line"] - 1])
    return bool(text) and bool(src) and (text in src or src in text)


def count_near(labels: str, number: int, text: str) -> bool:
    """*number* next to one of *labels* on one line ("ro: 7", "7 ro", ...)."""
    return re.search(
        rf"(?:\b(?:{labels})\b[^\d\n]*\b{number}\b)"
        rf"|(?:\b{number}\b[^\d\n]*\b(?:{labels})\b)", text) is not None


# --------------------------------------------------------------------------
# the fixtures themselves (no rewriter needed)
# --------------------------------------------------------------------------

@pytest.mark.unit
def test_manifest_matches_fixture_sources(manifest, fixture_sources):
    """Every call in the tree has exactly one manifest entry, and every other
    line naming the API is a manifest mention."""
    seen = set()
    call_lines: set[tuple[str, int]] = set()
    functions = {(s.file, s.function) for s in manifest.sites}
    for site in manifest.sites:
        assert site.id not in seen, f"duplicate manifest entry {site.id}"
        seen.add(site.id)
        assert site.verdict in VERDICTS, site
        if site.verdict == "ro":
            assert site.recheck is None and not site.review, site
        else:
            assert site.recheck in RECHECKS, site
    for file, function in functions:
        lines = fixture_sources.call_lines(file, function)
        indices = sorted(s.index for s in manifest.sites
                         if (s.file, s.function) == (file, function))
        assert indices == list(range(len(lines))), \
            f"{file}:{function} has {len(lines)} calls, manifest has {indices}"
        call_lines.update((file, line) for line in lines)

    mention_lines = set()
    for mention in manifest.mentions:
        assert mention.kind in MENTION_KINDS, mention
        mention_lines.add(
            (mention.file, fixture_sources.mention_line(mention.file, mention.match)))
    assert len(mention_lines) == len(manifest.mentions)
    assert not call_lines & mention_lines

    occurrences = fixture_sources.occurrences()
    assert occurrences == call_lines | mention_lines, (
        f"lines naming {API} that the manifest does not cover: "
        f"{sorted(occurrences - call_lines - mention_lines)}; "
        f"manifest lines without the name: "
        f"{sorted((call_lines | mention_lines) - occurrences)}")


@pytest.mark.unit
def test_broken_fixture_names_the_api(tools):
    text = (tools.BROKEN_DIR / "mm" / "fixture_broken.c").read_text()
    assert f"{API}(" in text
    assert text.count("{") != text.count("}")


# --------------------------------------------------------------------------
# the scan of the fixture repository
# --------------------------------------------------------------------------

def test_scan_succeeds_with_one_json_object(fixture_scan):
    scan_ok(fixture_scan)


def test_scan_header(scan_data, fixture_repo, tools):
    assert scan_data["function"] == API
    assert isinstance(scan_data["tree"], str)
    assert Path(scan_data["tree"]).resolve() == fixture_repo.resolve()
    assert SHA_RE.fullmatch(scan_data["rev"]), scan_data["rev"]
    assert scan_data["rev"] == tools.head_sha(fixture_repo)
    assert scan_data["errors"] == []
    assert isinstance(scan_data["sites"], list)
    assert isinstance(scan_data["mentions"], list)


def test_site_schema(scan_data):
    assert scan_data["sites"], "no sites reported"
    for site in scan_data["sites"]:
        assert SITE_KEYS <= set(site), f"missing keys in {site}"
        assert isinstance(site["file"], str) and not site["file"].startswith("/")
        assert "\\" not in site["file"]
        assert isinstance(site["line"], int) and site["line"] >= 1
        assert isinstance(site["function"], str) and site["function"]
        assert f"{API}(" in site["call"], site
        assert site["verdict"] in VERDICTS, site
        if site["verdict"] == "ro":
            assert site["recheck"] is None, site
        else:
            assert site["recheck"] in RECHECKS, site
        assert isinstance(site["review"], bool), site
        assert isinstance(site["reasons"], list), site
        assert all(isinstance(r, str) for r in site["reasons"]), site
        assert isinstance(site["evidence"], list) and site["evidence"], site
        for ev in site["evidence"]:
            assert isinstance(ev["line"], int) and ev["line"] >= 1, site
            assert isinstance(ev["text"], str), site


def test_site_count_matches_manifest(scan_data, manifest):
    reported = sorted(site_key(s) for s in scan_data["sites"])
    assert len(reported) == len(set(reported)), "a call is reported twice"
    expected_functions = {(s.file, s.function) for s in manifest.sites}
    unexpected = [s for s in scan_data["sites"]
                  if (s["file"], s["function"]) not in expected_functions]
    assert not unexpected, f"sites outside the manifest: {unexpected}"
    assert len(scan_data["sites"]) == len(manifest.sites)


def test_site_matches_manifest(scan_data, expected_site, fixture_sources):
    site = find_site(scan_data, expected_site)
    file, function = expected_site.file, expected_site.function

    # Where: the line where the name appears, inside the right function.
    call_line = fixture_sources.call_lines(file, function)[expected_site.index]
    assert site["line"] == call_line
    assert f"{API}(" in site["call"]
    assert API in fixture_sources.lines(file)[site["line"] - 1]

    # What.
    assert (site["verdict"], site["recheck"], site["review"]) == (
        expected_site.verdict, expected_site.recheck, expected_site.review), site
    if site["review"]:
        assert any(r.strip() for r in site["reasons"]), \
            f"review requested without a reason: {site}"

    # Why: evidence lines inside the function, pointing at real source.
    span = fixture_sources.function(file, function)
    lines = fixture_sources.lines(file)
    assert site["evidence"], f"no evidence for {site}"
    for ev in site["evidence"]:
        # Or in a function of the file the evidence names: the caller that
        # takes a lock this function hands out.
        named = [fixture_sources.function(file, n) for n in re.findall(r"(\w+)\(\)", ev["text"])
                 if n != function and fixture_sources.has_function(file, n)]
        assert ev["line"] in span or any(ev["line"] in other for other in named), \
            f"evidence line {ev['line']} outside {function}() " \
            f"({span.first_line}-{span.last_line}): {ev}"
        assert evidence_points_at_source(ev, lines), \
            f"evidence {ev} does not match line {ev['line']}: " \
            f"{lines[ev['line'] - 1]!r}"
    for needle in expected_site.evidence:
        assert any(needle in ev["text"] or needle in lines[ev["line"] - 1]
                   for ev in site["evidence"]), \
            f"no evidence mentions {needle!r}: {site['evidence']}"
    if site["recheck"] == "dummy":
        # Either half of the rule: a pte_same() guard, or the write-locked chains.
        assert any("pte_same" in lines[ev["line"] - 1] or "holds the mmap_lock for write" in ev["text"]
                   for ev in site["evidence"]), \
            f"dummy recheck without the pte_same() guard or the write-locked chains in evidence: {site}"


def test_mentions(scan_data, manifest, fixture_sources):
    expected = {(m.file, fixture_sources.mention_line(m.file, m.match), m.kind)
                for m in manifest.mentions}
    reported = mention_set(scan_data)
    for mention in scan_data["mentions"]:
        assert mention["kind"] in MENTION_KINDS, mention
    missing = expected - reported
    assert not missing, f"mentions not reported (or with another kind): {sorted(missing)}"
    extra = reported - expected
    assert not extra, f"unexpected mentions: {sorted(extra)}"

    site_lines = {(s["file"], s["line"]) for s in scan_data["sites"]}
    mention_lines = {(f, line) for f, line, _ in reported}
    assert not site_lines & mention_lines, "a line is both a site and a mention"


@pytest.mark.parametrize("file,kind", [
    ("include/linux/mm.h", "declaration"),
    ("mm/pgtable-generic.c", "definition"),
    ("mm/pgtable-generic.c", "comment"),
    ("Documentation/mm/split_page_table_lock.rst", "documentation"),
])
def test_standard_mentions(scan_data, file, kind):
    assert any(m["file"] == file and m["kind"] == kind
               for m in scan_data["mentions"]), scan_data["mentions"]
    # None of these files calls the function.
    assert not [s for s in scan_data["sites"] if s["file"] == file]


def test_comments_are_not_sites(scan_data, manifest, fixture_sources):
    comment_lines = {(m.file, fixture_sources.mention_line(m.file, m.match))
                     for m in manifest.mentions if m.kind == "comment"}
    assert len(comment_lines) >= 2
    for site in scan_data["sites"]:
        assert (site["file"], site["line"]) not in comment_lines, site


# --------------------------------------------------------------------------
# git object store, revisions, bare repositories
# --------------------------------------------------------------------------

def test_scan_reads_git_objects_not_work_tree(scratch_repo, tools):
    repo = scratch_repo
    before = scan_ok(tools.scan_json(repo))

    # Uncommitted changes of every kind: deleted, edited, shifted, new
    # untracked and new staged files.
    (repo / "mm" / "fixture_helpers.c").unlink()
    basic = repo / "mm" / "fixture_basic.c"
    text = basic.read_text()
    assert "\tset_pte_at(mm, addr, pte, newpte);\n" in text
    basic.write_text(text.replace("\tset_pte_at(mm, addr, pte, newpte);\n",
                                  "\tnewpte = ptep_get(pte);\n"))
    young = repo / "arch" / "x86" / "mm" / "fixture_young.c"
    young.write_text("/* shifted */\n\n\n" + young.read_text())
    (repo / "mm" / "fixture_untracked.c").write_text(UNCOMMITTED)
    (repo / "mm" / "fixture_staged.c").write_text(
        UNCOMMITTED.replace("fixture_not_committed", "fixture_only_staged"))
    tools.git(repo, "add", "mm/fixture_staged.c")
    assert tools.git(repo, "status", "--porcelain")

    after = scan_ok(tools.scan_json(repo))
    assert after == before


def test_rev_selects_older_commit(scratch_repo, scan_data, tools):
    repo = scratch_repo
    old_sha = tools.head_sha(repo)

    basic = repo / "mm" / "fixture_basic.c"
    basic.write_text(basic.read_text() + ADDED_LATER)
    (repo / "arch" / "x86" / "mm" / "fixture_young.c").unlink()
    new_sha = tools.commit_all(repo, "Add one caller, drop the x86 fixtures")

    new = scan_ok(tools.scan_json(repo))
    assert new["rev"] == new_sha
    assert not [s for s in new["sites"] if s["file"].startswith("arch/x86/")]
    added = [s for s in new["sites"] if s["function"] == "fixture_added_later"]
    assert len(added) == 1, new["sites"]
    line = tools.SourceTree(repo).call_lines("mm/fixture_basic.c",
                                             "fixture_added_later")[0]
    assert (added[0]["file"], added[0]["line"]) == ("mm/fixture_basic.c", line)
    assert (added[0]["verdict"], added[0]["recheck"]) == ("rw", "pmd_same")

    for rev in ("HEAD~1", old_sha[:12], old_sha):
        old = scan_ok(tools.scan_json(repo, "--rev", rev))
        assert old["rev"] == old_sha, rev
        assert old["sites"] == scan_data["sites"], rev
        assert mention_set(old) == mention_set(scan_data), rev
        assert old["errors"] == []


def test_default_rev_is_head(scratch_repo, tools):
    repo = scratch_repo
    basic = repo / "mm" / "fixture_basic.c"
    basic.write_text(basic.read_text() + ADDED_LATER)
    sha = tools.commit_all(repo, "Add one caller")
    default = scan_ok(tools.scan_json(repo))
    explicit = scan_ok(tools.scan_json(repo, "--rev", "HEAD"))
    assert default["rev"] == explicit["rev"] == sha
    assert default["sites"] == explicit["sites"]


def test_bare_clone_gives_same_sites(fixture_repo, scan_data, tmp_path, tools):
    bare = tmp_path / "linux.git"
    tools.git(tmp_path, "clone", "-q", "--bare", str(fixture_repo), str(bare))
    assert not (bare / "mm").exists()
    result = scan_ok(tools.scan_json(bare))
    assert result["rev"] == scan_data["rev"]
    assert result["sites"] == scan_data["sites"]
    assert mention_set(result) == mention_set(scan_data)
    assert result["errors"] == []


# --------------------------------------------------------------------------
# table output
# --------------------------------------------------------------------------

def test_table_format(fixture_repo, manifest, tools):
    rc, out, err = tools.run_rewriter("scan", "--tree", str(fixture_repo),
                                      "--format", "table")
    assert rc == 0, err
    lines = out.splitlines()
    functions = {s.function for s in manifest.sites}

    def is_site_line(line: str) -> bool:
        # indented lines ("    review: ...") belong to the row above
        return not line[:1].isspace() and any(re.search(rf"\b{f}\b", line) for f in functions)

    site_lines = [line for line in lines if is_site_line(line)]
    assert len(site_lines) == len(manifest.sites), "\n".join(site_lines)

    by_function = {}
    for site in manifest.sites:
        by_function.setdefault((site.file, site.function), []).append(site)
    for (file, function), sites in by_function.items():
        rows = [line for line in site_lines
                if file in line and re.search(rf"\b{function}\b", line)]
        assert len(rows) == len(sites), f"{file}:{function}: {rows}"
        verdicts = []
        for row in rows:
            found = [v for v in sorted(VERDICTS) if re.search(rf"\b{v}\b", row)]
            assert len(found) == 1, f"no single verdict in {row!r}"
            verdicts += found
        assert sorted(verdicts) == sorted(s.verdict for s in sites), rows

    summary = "\n".join(line for line in lines if not is_site_line(line))
    n_ro = sum(1 for s in manifest.sites if s.verdict == "ro")
    n_rw = sum(1 for s in manifest.sites if s.verdict == "rw")
    assert count_near("ro|read-only|readonly", n_ro, summary), summary
    assert count_near("rw|read-write|may-write|writ\\w*", n_rw, summary), summary
    assert re.search(rf"\b{len(manifest.sites)}\b", summary), summary


def test_table_rows_carry_line_numbers(fixture_repo, fixture_sources, manifest,
                                       tools):
    rc, out, err = tools.run_rewriter("scan", "--tree", str(fixture_repo),
                                      "--format", "table")
    assert rc == 0, err
    for site in manifest.sites:
        line = fixture_sources.call_lines(site.file, site.function)[site.index]
        assert any(site.file in row and re.search(rf"(?<!\d){line}(?!\d)", row)
                   and re.search(rf"\b{site.function}\b", row)
                   for row in out.splitlines()), f"no row for {site.id} line {line}"


# --------------------------------------------------------------------------
# parse errors
# --------------------------------------------------------------------------

def test_unparsable_file_is_reported(scratch_repo, scan_data, tools):
    repo = scratch_repo
    shutil.copytree(tools.BROKEN_DIR, repo, dirs_exist_ok=True)
    tools.commit_all(repo, "Add a file spatch cannot parse")
    broken = "mm/fixture_broken.c"

    result = tools.scan_json(repo)
    assert result.returncode == 1, result.describe()
    assert result.data is not None, \
        "scan must still print its JSON object\n" + result.describe()
    errors = result.data["errors"]
    assert {e["file"] for e in errors} == {broken}, errors
    for error in errors:
        assert isinstance(error["message"], str) and error["message"].strip()
    assert broken in result.stderr, result.stderr

    good = [s for s in result.data["sites"] if s["file"] != broken]
    assert good == scan_data["sites"]
    assert mention_set(scan_data) <= mention_set(result.data)



def test_tree_without_the_function_is_refused(tmp_path, run_rewriter):
    """A tree that never names the function: one line on stderr, exit 3."""
    from conftest import commit_all, git
    repo = tmp_path / "empty"
    (repo / "mm").mkdir(parents=True)
    (repo / "mm" / "other.c").write_text("int other(void)\n{\n\treturn 0;\n}\n")
    git(repo, "init", "-q", "-b", "main")
    commit_all(repo, "no callers here")
    code, out, err = run_rewriter("scan", "--tree", repo, "--format", "json")
    assert code == 3
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "does not occur" in lines[0]


def test_not_a_repository_is_refused(tmp_path, run_rewriter):
    code, out, err = run_rewriter("scan", "--tree", tmp_path)
    assert code == 3 and out == ""
    assert len(err.strip().splitlines()) == 1 and "not a git repository" in err


def test_unknown_revision_is_refused(fixture_repo, run_rewriter):
    code, out, err = run_rewriter("scan", "--tree", fixture_repo, "--rev", "no-such-rev")
    assert code == 3 and out == ""
    assert len(err.strip().splitlines()) == 1 and "unknown revision" in err


# A helper that takes the lock itself, annotated for sparse between its
# parameters and its body, as the kernel writes lock helpers.
SELF_LOCKED_HELPER = """// SPDX-License-Identifier: GPL-2.0

static void fixture_pt_lock(spinlock_t *ptl)
\t__acquires(ptl)
{
\tspin_lock(ptl);
}

static int fixture_move_one(struct mm_struct *mm, unsigned long addr,
\t\t\t    pte_t *ptep, pte_t orig, spinlock_t *ptl)
\t__must_hold(mm)
{
\tfixture_pt_lock(ptl);
\tif (!pte_same(ptep_get(ptep), orig)) {
\t\tspin_unlock(ptl);
\t\treturn -EAGAIN;
\t}
\tset_pte_at(mm, addr, ptep, pte_mkold(orig));
\tspin_unlock(ptl);
\treturn 0;
}

static int fixture_move_via_self_locked(struct mm_struct *mm, pmd_t *pmd,
\t\t\t\t\tunsigned long addr)
{
\tspinlock_t *ptl;
\tpte_t *pte;
\tpte_t orig;
\tint err;

\tpte = pte_offset_map_nolock(mm, pmd, addr, &ptl);
\tif (!pte)
\t\treturn -EAGAIN;
\torig = ptep_get_lockless(pte);
\tif (pte_none(orig)) {
\t\tpte_unmap(pte);
\t\treturn 0;
\t}
\terr = fixture_move_one(mm, addr, pte, orig, ptl);
\tpte_unmap(pte);
\treturn err;
}
"""


def test_helper_that_takes_the_lock_behind_annotations(scratch_repo, tools):
    """The write is in a helper that locks through another helper, both
    defined with annotations (__acquires(), __must_hold()) between the
    parameters and the body; its pte_same() check guards the write."""
    site = _self_locked_site(scratch_repo, tools, SELF_LOCKED_HELPER)
    assert (site["verdict"], site["recheck"]) == ("rw", "dummy"), site["reasons"]
    assert any("fixture_move_one() takes the lock itself" in r for r in site["reasons"]), site["reasons"]
    assert any("pte_same() check" in r for r in site["reasons"]), site["reasons"]


def test_helper_guard_on_an_entry_that_may_be_none(scratch_repo, tools):
    """As above, without the pte_none() exit before the helper: the helper's
    pte_same() compares an entry that may be none, which an emptied and
    replaced table matches, so the call needs the pmd_same() recheck."""
    maybe_none = SELF_LOCKED_HELPER.replace("""\tif (pte_none(orig)) {
\t\tpte_unmap(pte);
\t\treturn 0;
\t}
""", "")
    assert maybe_none != SELF_LOCKED_HELPER
    site = _self_locked_site(scratch_repo, tools, maybe_none)
    assert (site["verdict"], site["recheck"]) == ("rw", "pmd_same"), site["reasons"]
    assert any("which may be none" in r for r in site["reasons"]), site["reasons"]


def test_path_questions_are_asked_file_by_file_when_a_run_of_many_fails(fixture_repo, scan_data, monkeypatch):
    """One spatch run takes each path question for many one-function files,
    and one takes the facts of every file; when such a run fails, the
    question is asked again of each file of the tree as a whole, the facts
    file by file, and the verdicts are the same."""
    from rewriter import recipe, scan
    from rewriter.runner import FileResult, Runner
    from rewriter.tree import open_tree

    monkeypatch.setenv("REWRITER_CACHE", "off")
    failed = []

    def failing(self, cocci_text, files, marker, label, jobs=1, timeout=None):
        failed.append((label, sorted(files)))
        return FileResult(label, (), error="spatch failed: injected")

    monkeypatch.setattr(Runner, "run_together", failing)
    result = scan.scan(open_tree(fixture_repo), Runner(), recipe.find(None))
    assert any(label != "facts" and len(files) > 1 for label, files in failed)
    assert any(label == "facts" and len(files) > 1 for label, files in failed)
    assert not result.errors
    assert ({(s.file, s.line, s.verdict.verdict, s.verdict.recheck) for s in result.sites}
            == {(s["file"], s["line"], s["verdict"], s["recheck"]) for s in scan_data["sites"]})


def test_helper_that_takes_the_lock_and_writes_unchecked(scratch_repo, tools):
    """As above, without the helper's pte_same() check: the helper's own
    paths (a function with no call of its own) show the write unguarded."""
    unchecked = SELF_LOCKED_HELPER.replace("""\tif (!pte_same(ptep_get(ptep), orig)) {
\t\tspin_unlock(ptl);
\t\treturn -EAGAIN;
\t}
""", "")
    assert unchecked != SELF_LOCKED_HELPER
    site = _self_locked_site(scratch_repo, tools, unchecked)
    assert (site["verdict"], site["recheck"]) == ("rw", "pmd_same"), site["reasons"]


def _self_locked_site(repo, tools, text: str) -> dict:
    """The scan's entry for fixture_move_via_self_locked() once text is
    committed as mm/fixture_self_locked.c."""
    (repo / "mm" / "fixture_self_locked.c").write_text(text)
    tools.commit_all(repo, "a caller whose helper takes the lock itself")
    code, out, err = tools.run_rewriter("scan", "--tree", repo, "--format", "json")
    assert code == 0, err
    import json
    return next(s for s in json.loads(out)["sites"] if s["function"] == "fixture_move_via_self_locked")


def test_verdicts_do_not_depend_on_a_symlink_in_tmpdir(fixture_repo, scan_data, tmp_path, run_rewriter, monkeypatch):
    """spatch runs in a scratch directory under TMPDIR and the path
    questions name files relative to it: a TMPDIR reached through a
    symbolic link (as /tmp is on some systems) must not change an answer."""
    real = tmp_path / "real-tmp"
    real.mkdir()
    (tmp_path / "tmp-link").symlink_to(real)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp-link"))
    monkeypatch.setenv("REWRITER_CACHE", "off")
    code, out, err = run_rewriter("scan", "--tree", fixture_repo, "--format", "json")
    assert code == 0, err
    import json
    got = {(s["file"], s["line"], s["verdict"], s["recheck"]) for s in json.loads(out)["sites"]}
    assert got == {(s["file"], s["line"], s["verdict"], s["recheck"]) for s in scan_data["sites"]}
