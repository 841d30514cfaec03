"""The commit messages and the cover letter's parts, from Verdicts made
here: their shape does not depend on what the scan says today."""

from __future__ import annotations

import re
import statistics

import pytest

from rewriter import changelog, series
from rewriter import recipe
from rewriter.plan import Entry, default_reason
from rewriter.scan import Site
from rewriter.verdicts import Evidence, Verdict

pytestmark = pytest.mark.unit

OLD = "pte_offset_map_nolock"
RECIPE = recipe.find(None)
NAMES = RECIPE.names("readonly,maywrite")
RACE = "khugepaged's retract_page_tables() can free a PTE table without holding mmap_lock"


def site(function: str, verdict: Verdict, index: int = 0, file: str = "mm/memory.c") -> Site:
    return Site(file, 100 + index, 1, function, "pte_offset_map_nolock(mm, pmd, addr, &ptl)", index, verdict)


def entry(s: Site, verdict: str | None = None, recheck: str | None = "same", reason: str | None = None) -> Entry:
    v = s.verdict
    e = Entry(s.file, s.function, s.index, verdict or v.verdict, v.recheck if recheck == "same" else recheck, "")
    return Entry(e.file, e.function, e.index, e.verdict, e.recheck,
                 reason if reason is not None else default_reason(s, RECIPE))


def message(function: str, calls, file: str = "mm/memory.c", prefix: str = "mm:") -> tuple[str, str]:
    return series.convert_message(RECIPE, prefix, function, file, calls, NAMES)


def flat(text: str) -> str:
    return " ".join(text.split())


# The scan's reasons carry line numbers: none may reach a message.
RO = Verdict("ro", None, False, ("only reads entries, with or without the lock; nothing changes the table",),
             (Evidence(12, "reads: unlikely(): if (unlikely(!ptep))"),), basis="reads")
PMD = Verdict("rw", "pmd_same", False,
              ("writes an entry: pte_clear() with the lock held", "writes an entry: set_pte_at() with the lock held",
               "removes the page table: pmdp_collapse_flush() with the lock held"),
              (Evidence(213, "writes an entry: pte_clear(): pte_clear(mm, new_addr, new_pte);"),), basis="pmd_same")
PTE = Verdict("rw", "dummy", False,
              ("writes through do_wp_page(), which calls set_pte_at() at line 3678 with the lock held",
               "writes an entry: ptep_set_access_flags() with the lock held",
               "a pte_same() check after taking the lock guards every write"), (), basis="pte_same")
MMAP = Verdict("rw", "dummy", False,
               ("writes through copy_present_ptes(), which calls __copy_present_ptes() (wrprotect_ptes() at "
                "line 958) with the lock held",), (), basis="mmap_write",
               write_locked_by=(("dup_mmap", "kernel/fork.c"),))
HELPERS = Verdict("rw", "dummy", False,
                  ("writes through move_present_pte(), which calls set_pte_at() at line 1070; move_present_pte() "
                   "takes the lock itself",
                   "writes through move_swap_pte(), which calls set_pte_at() at line 1134; move_swap_pte() takes "
                   "the lock itself",
                   "a pte_same() check after taking the lock guards every write"), (), basis="pte_same")
REVIEW = Verdict("rw", "pmd_same", True, ("passes the table to a function pointer with the lock held",), (),
                 basis="review", question="Does the callback change entries of the table?")


def test_read_only():
    s = site("filemap_fault_recheck_pte_none", RO)
    subject, body = message(s.function, [(s, entry(s))], "mm/filemap.c", "mm: filemap:")
    # "mm: filemap:" would make it longer than 75 characters.
    assert subject == "mm: filemap_fault_recheck_pte_none() use pte_offset_map_readonly_nolock()"
    assert flat(body) == ("filemap_fault_recheck_pte_none() maps the PTE table with pte_offset_map_nolock() only "
                          "to read entries: it changes none of them and does not remove the table. Use "
                          "pte_offset_map_readonly_nolock().")


def test_pmd_same_says_what_it_writes_and_how_it_rechecks():
    s = site("collapse_pte_mapped_thp", PMD)
    _subject, body = message(s.function, [(s, entry(s))])
    text = flat(body)
    assert text.startswith("collapse_pte_mapped_thp() maps the PTE table with pte_offset_map_nolock() and, once "
                           "it holds the lock, changes entries with pte_clear() and set_pte_at() and removes "
                           "the table with pmdp_collapse_flush(). " + RACE)
    assert ("Use pte_offset_map_maywrite_nolock() to get the value the PMD had when the table was mapped, and "
            "once the lock is held recheck it with pmd_same() against pmdp_get_lockless(); if it changed, unlock, "
            "unmap the table and take the way out that collapse_pte_mapped_thp() takes when the mapping fails."
            ) in text


def test_on_recheck_fail_is_said():
    s = site("move_ptes", PMD)
    e = entry(s)
    e = Entry(e.file, e.function, e.index, e.verdict, e.recheck, e.reason, "goto out")
    # the plan's body replaces the whole failure path, unlock and unmap included
    assert 'if it changed, run "goto out".' in flat(message(s.function, [(s, e)])[1])


def test_dummy_on_a_pte_same_guard():
    s = site("handle_pte_fault", PTE)
    text = flat(message(s.function, [(s, entry(s))])[1])
    assert "changes entries with ptep_set_access_flags() and through do_wp_page()" in text
    assert RACE in text
    assert ("Use pte_offset_map_maywrite_nolock() with a dummy pmdval and no pmd_same() recheck: after taking "
            "the lock, handle_pte_fault() compares the entry with one read earlier using pte_same(), and as that "
            "entry is not none, the check fails if the table was replaced.") in text


def test_dummy_on_the_write_locked_chain():
    s = site("copy_pte_range", MMAP)
    text = flat(message(s.function, [(s, entry(s))])[1])
    assert "changes entries through copy_present_ptes()" in text
    assert ("copy_pte_range() runs with mmap_lock held for write, taken by dup_mmap() in kernel/fork.c, which is "
            "enough to keep the PMD entry from changing, as the comment above pte_offset_map_nolock() says."
            ) in text
    assert RACE not in text  # it would speak against the reason


def test_two_calls_through_helpers_that_lock_themselves():
    a, b = site("move_pages_pte", HELPERS, 0), site("move_pages_pte", HELPERS, 1)
    text = flat(message("move_pages_pte", [(a, entry(a)), (b, entry(b))], "mm/userfaultfd.c")[1])
    assert text.startswith("move_pages_pte() maps the PTE tables with pte_offset_map_nolock() and then changes "
                           "entries through move_present_pte() and move_swap_pte(), which take the locks "
                           "themselves.")
    assert text.count(RACE) == 1 and text.count("Use pte_offset_map_maywrite_nolock()") == 1
    assert "move_present_pte() and move_swap_pte() compare the entry" in text


def test_basis_missing_falls_back_to_verdict_and_recheck():
    old_style = Verdict("rw", "dummy", False, PTE.reasons, ())
    s = site("handle_pte_fault", old_style)
    assert "using pte_same()" in flat(message(s.function, [(s, entry(s))])[1])
    s = site("reader", Verdict("ro", None, False, RO.reasons, ()))
    assert "only to read entries" in flat(message(s.function, [(s, entry(s))])[1])


def test_the_plan_overriding_the_rule_gives_the_reason():
    s = site("fixture_map_for_caller", PMD)
    e = entry(s, "rw", "dummy", "the caller takes the lock and checks the entry with pte_same() before it writes")
    text = flat(message(s.function, [(s, e)])[1])
    assert ("Use pte_offset_map_maywrite_nolock() with a dummy pmdval and no pmd_same() recheck: the caller "
            "takes the lock and checks the entry with pte_same() before it writes.") in text
    s = site("reader", PMD)
    text = flat(message(s.function, [(s, entry(s, "ro", None, "it only looks at the young bits"))])[1])
    assert text == ("reader() maps the PTE table with pte_offset_map_nolock(). Use "
                    "pte_offset_map_readonly_nolock(): it only looks at the young bits.")


@pytest.mark.parametrize("verdict", [RO, PMD, PTE, MMAP, HELPERS, REVIEW])
def test_no_line_numbers_nothing_about_the_tool_nothing_twice(verdict):
    s = site("some_function", verdict)
    subject, body = message(s.function, [(s, entry(s))])
    assert len(subject) <= 75
    assert not re.search(r"\bline\b|\d{2,}", body), body
    assert not re.search(r"\b(scan|plan|rewriter|evidence|verdict)\b", body, re.I), body
    sentences = re.split(r"(?<=[.:;]) ", flat(body))
    assert len(sentences) == len(set(sentences)), body
    assert all(len(line) <= 75 for line in body.splitlines())
    assert 20 <= changelog.word_count(body) <= 120, (changelog.word_count(body), body)


def test_word_counts_of_a_series_like_the_kernel_one():
    counts = []
    for v in (RO, RO, RO, PMD, PMD, MMAP, PTE, MMAP, PMD, HELPERS, PMD):
        s = site("f", v)
        counts.append(changelog.word_count(message("f", [(s, entry(s))])[1]))
    assert statistics.median(counts) <= 100 and max(counts) <= 220, counts


def test_review_questions_go_to_the_cover_letter():
    from types import SimpleNamespace

    from rewriter import versions
    s = site("walk_fn", REVIEW)
    o = site("fixture_map_for_caller", PMD, file="mm/fixture_return.c")
    patches = [series.Patch("introduce", {}),
               series.Patch("convert", {}, s.file, s.function, ((s, entry(s)),)),
               series.Patch("convert", {}, o.file, o.function,
                            ((o, entry(o, "rw", "dummy", "the caller checks the entry with pte_same()")),)),
               series.Patch("remove", {})]
    scan = SimpleNamespace(function=OLD, mentions=(), sites=(), kept=(), recipe=RECIPE)
    record = versions.Record(1, "b", "0" * 40, "1" * 40, {}, "RFC PATCH", "", [], [])
    values = series.cover_values(scan, NAMES, patches, record, None, None, spatch="1.1.1")
    assert values["questions"] == [
        "walk_fn() in mm/memory.c (patch 2): Does the callback change entries of the table?",
        "fixture_map_for_caller() in mm/fixture_return.c (patch 3): the rule gives rw with pmd_same; the series "
        "makes it rw with dummy: the caller checks the entry with pte_same(). Is that right?"]
    assert [r["why"] for r in values["rows"]] == ["to review", "settled by hand"]
    assert values["testing"] == []


def test_testing_from_a_check_report():
    report = {
        "patches": [{"number": 0, "checkpatch": {"errors": 0, "warnings": 0, "checks": 0}},
                    {"number": 1, "checkpatch": {"errors": 0, "warnings": 1, "checks": 2},
                     "build": {"status": "built"}},
                    {"number": 2, "checkpatch": {"errors": 0, "warnings": 0, "checks": 0},
                     "build": {"status": "built"}}],
        "build": {"configs": [{"arch": "x86_64", "defconfig": "defconfig", "files": ["mm/memory.o"]},
                              {"arch": "arm", "defconfig": "multi_v7_defconfig", "files": ["x.o"]},
                              {"arch": "arm", "defconfig": "multi_v5_defconfig", "files": []}],
                  "failed": False},
        "mail": {"sent": 3, "received": 3, "tree_matches": True},
        "boot": {"runs": [{"arch": "x86_64", "status": "passed", "tests": "mm selftests: 12 of 12"},
                          "garbage"]},
        "unknown": {"anything": 1},
    }
    lines = series.testing_lines(report)
    assert lines == [
        "scripts/checkpatch.pl on all 3 patches: 0 errors, 1 warnings, 2 checks.",
        "Build of the objects each commit changes, built (arm: multi_v7_defconfig; x86_64: defconfig): every "
        "commit builds, with no new warnings.",
        "Boot, x86_64: passed (mm selftests: 12 of 12).",
        "git send-email to a local SMTP server: 3 of 3 mails arrived; the series applies with git am to the "
        "same tree."]
    assert series.testing_lines({}) == []
    failed = dict(report, patches=[{"number": 4, "build": {"status": "failed"}}])
    assert "FAILED at patch 4" in series.testing_lines(failed)[0]


def test_prefix_table_is_one_place():
    """Every rule the path fallback uses is a row of SUBJECT_PREFIXES."""
    for path, prefix in changelog.SUBJECT_PREFIXES.items():
        probe = path + "x.c" if path.endswith("/") else path
        if path == "mm/":
            continue
        assert changelog.path_prefix(probe) == prefix, path
