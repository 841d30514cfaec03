"""The classifier and the locking rule, in-process, on the spatch facts
recorded from the fixture tree and from Linux 6.12 (tests/recorded/):
verdicts.decide() with the guards of rewriter/guards.py, the helper
summaries, and the mmap_lock walk's answers as scan.py reads them.

Each rule test changes one input of a recorded call (a line of its source,
a chain of its walk) and checks that the verdict, its basis and its
evidence follow."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

import recorded
from conftest import FIXTURE_TREE, load_manifest
from rewriter import callers, scan, verdicts

pytestmark = pytest.mark.unit


def replayed(name: str) -> dict[str, scan.Site]:
    return {s.key: s for s in recorded.scanned(name).sites}


def classify(name: str, path: str, source: str | None = None, facts: list[dict] | None = None) -> dict:
    """The sites of one recorded file, with its source or facts replaced."""
    rec = recorded.load(name)
    f = rec.file(path)
    if facts is not None:
        f = dataclasses.replace(f, facts=facts)
    return {s.key: s for s in recorded.classify_file(rec, f, source=source)}


def edited(path: str, line: int, old: str, new: str) -> str:
    """The recorded source of path with old replaced by new on one line,
    of the same length, so that every recorded position stays valid."""
    assert len(old) == len(new)
    lines = recorded.load("fixture").file(path).source.split("\n")
    assert old in lines[line - 1], lines[line - 1]
    lines[line - 1] = lines[line - 1].replace(old, new, 1)
    return "\n".join(lines)


def evidence(site: scan.Site) -> list[tuple[int, str]]:
    return [(e.line, e.text) for e in site.verdict.evidence]


# ------------------------------------------------------------ the recordings


def test_fixture_recording_is_of_the_fixture_files():
    """A stale recording would test the rule on code that is gone."""
    rec = recorded.load("fixture")
    stale = [path for path, f in rec.files.items()
             if hashlib.sha256((FIXTURE_TREE / path).read_bytes()).hexdigest() != f.sha256]
    assert not stale, f"{stale} changed since tests/recorded/fixture.json was made: run make record-facts"


@pytest.mark.parametrize("name", ["fixture", "linux-6.12"])
def test_replay_gives_the_scan_spatch_gave(name):
    """Every call, verdict, basis, question, reason and evidence line of the
    recorded scan, from the recorded facts alone."""
    rec = recorded.load(name)
    got = [recorded.site_json(s) for s in replayed(name).values()]
    assert len(got) == len(rec.report["sites"]) > 10
    for mine, theirs in zip(sorted(got, key=lambda s: (s["file"], s["line"])), rec.report["sites"]):
        assert mine == theirs


def test_fixture_calls_as_the_manifest_gives_them():
    """tests/fixtures/expected.toml, which the spatch tests check the same way."""
    sites = replayed("fixture")
    manifest = load_manifest().sites
    assert len(manifest) == len(sites)
    for want in manifest:
        got = sites[want.id]
        assert (got.verdict.verdict, got.verdict.recheck, got.verdict.review) == \
            (want.verdict, want.recheck, want.review), want.id
        lines = recorded.load("fixture").file(want.file).source.split("\n")
        for needle in want.evidence:
            assert any(needle in e.text or needle in lines[e.line - 1] for e in got.verdict.evidence), \
                (want.id, needle, evidence(got))


# The basis of each 6.12 call, as an mm reviewer checked them by eye
# (tests/test_rule_kernel.py checks the same on a scan of the tree).
KERNEL_RULE = {
    "arch/arm/mm/fault-armv.c:adjust_pte:0": ("rw", "pmd_same", "pmd_same"),
    "arch/powerpc/mm/pgtable.c:assert_pte_locked:0": ("ro", None, "reads"),
    "mm/filemap.c:filemap_fault_recheck_pte_none:0": ("ro", None, "reads"),
    "mm/khugepaged.c:__collapse_huge_page_swapin:0": ("ro", None, "reads"),
    "mm/khugepaged.c:collapse_pte_mapped_thp:0": ("rw", "pmd_same", "review"),
    "mm/memory.c:copy_pte_range:0": ("rw", "dummy", "mmap_write"),
    "mm/memory.c:handle_pte_fault:0": ("rw", "dummy", "pte_same"),
    "mm/mremap.c:move_ptes:0": ("rw", "dummy", "mmap_write"),
    "mm/page_vma_mapped.c:map_pte:0": ("rw", "pmd_same", "pmd_same"),
    "mm/userfaultfd.c:move_pages_pte:0": ("rw", "pmd_same", "review"),
    "mm/userfaultfd.c:move_pages_pte:1": ("rw", "dummy", "pte_same"),
    "mm/vmscan.c:walk_pte_range:0": ("rw", "pmd_same", "pmd_same"),
}


def test_kernel_calls_by_the_rule():
    sites = replayed("linux-6.12")
    assert {k: (s.verdict.verdict, s.verdict.recheck, s.verdict.basis) for k, s in sites.items()} == KERNEL_RULE


def test_kernel_pte_same_proof_and_write_locked_chains():
    sites = replayed("linux-6.12")
    fault = sites["mm/memory.c:handle_pte_fault:0"]
    # vmf->orig_pte is proven present before the pte_same() check
    assert any("cannot be none after this test" in text and "vmf->orig_pte" in text for _l, text in evidence(fault))
    fork = sites["mm/memory.c:copy_pte_range:0"]
    assert fork.verdict.write_locked_by == (("dup_mmap", "kernel/fork.c"),)
    assert any("dup_mmap() in kernel/fork.c holds the mmap_lock for write" in t for _l, t in evidence(fork))
    collapse = sites["mm/khugepaged.c:collapse_pte_mapped_thp:0"]
    assert collapse.verdict.relocks == ((1660, 3),)
    assert "at line 1660 after unmapping the table" in collapse.verdict.question


# ------------------------------------------------------------ pte_same: the non-none proof

GP = "mm/fixture_guard_present.c"
GP_KEY = f"{GP}:fixture_gp_wrprotect:0"
GN = "mm/fixture_guard_none.c"
GN_KEY = f"{GN}:fixture_gn_fill:0"


def test_pte_same_on_an_entry_proven_present_is_enough():
    site = replayed("fixture")[GP_KEY]
    v = site.verdict
    assert (v.verdict, v.recheck, v.basis, v.review) == ("rw", "dummy", "pte_same", False)
    assert (19, "orig cannot be none after this test: if (!pte_present(orig)) {") in evidence(site)
    assert any(line == 24 and "pte_same(ptep_get(pte), orig)" in text for line, text in evidence(site))
    assert "cannot be none there" in v.reasons[-1]


def test_pte_same_without_the_proof_needs_pmd_same():
    """The same call with the test that leaves on a none entry made one
    that does not tell none from present (pte_young()): no proof, so the
    check compares an entry that may be none."""
    source = edited(GP, 19, "pte_present(orig)", "pte_young(orig)  ")
    site = classify("fixture", GP, source=source)[GP_KEY]
    v = site.verdict
    assert (v.verdict, v.recheck, v.basis) == ("rw", "pmd_same", "pmd_same")
    assert any(line == 24 and "which may be none there" in text for line, text in evidence(site))
    assert "may be none on the way to it" in v.reasons[-1]


def test_pte_same_on_an_entry_proven_none_is_not_enough():
    site = replayed("fixture")[GN_KEY]
    v = site.verdict
    assert (v.verdict, v.recheck, v.basis) == ("rw", "pmd_same", "pmd_same")
    assert any(line == 24 and "compares the entry with orig, which may be none there" in text
               for line, text in evidence(site))


def test_turning_the_none_test_around_makes_the_proof():
    """if (!pte_none(orig)) leave  ->  if ( pte_none(orig)) leave: orig is
    now not none at the pte_same() check."""
    source = edited(GN, 19, "!pte_none(orig)", " pte_none(orig)")
    site = classify("fixture", GN, source=source)[GN_KEY]
    v = site.verdict
    assert (v.verdict, v.recheck, v.basis) == ("rw", "dummy", "pte_same")
    assert (19, "orig cannot be none after this test: if ( pte_none(orig)) {") in evidence(site)


def test_guards_name_the_check_and_its_proof():
    rec = recorded.load("fixture")
    f = rec.file(GP)
    facts = f.parsed()
    summaries = verdicts.summarise_helpers(facts, recorded.RECIPE.api)
    ctx = verdicts.site_context(facts, facts.sites[0], rec.function, recorded.RECIPE.api)
    events = verdicts.site_events(facts, ctx, summaries)
    [guard] = verdicts.site_guards(facts, ctx, events, f.source)
    assert (guard.pos[0], guard.entry, guard.not_none, guard.proof) == (24, ("orig",), True, 19)


# ------------------------------------------------------------ mmap_write: the caller walk

WL_KEY = "mm/fixture_rule_writelock.c:fixture_wl_move:0"


def _walk_of(key: str):
    rec = recorded.load("fixture")
    site = replayed("fixture")[key]
    item = (site.file, site.function, (site.line, site.column))
    return rec, item, rec.walks[item]


def test_every_chain_write_locked_gives_a_dummy():
    site = replayed("fixture")[WL_KEY]
    v = site.verdict
    assert (v.verdict, v.recheck, v.basis) == ("rw", "dummy", "mmap_write")
    assert v.write_locked_by == (("fixture_wl_syscall", "kernel/fixture_wl_callers.c"),
                                 ("fixture_wl_asserting", "kernel/fixture_wl_callers.c"))
    chains = [t for line, t in evidence(site) if t.startswith("caller chain ")]
    assert len(chains) == 2 and all("holds the mmap_lock for write" in t for t in chains)


def test_one_chain_not_write_locked_keeps_the_pmd_same_recheck():
    rec, item, answer = _walk_of(WL_KEY)
    first, *rest = answer.chains
    opened = dataclasses.replace(first, covered=False, why="reaches a function with no caller in the tree")
    walks = {**rec.walks, item: callers.WriteLock((opened, *rest))}
    before = [s for s in recorded.classify_file(rec, rec.file(item[0]))]
    [site] = [s for s in recorded.with_walks(before, walks) if s.key == WL_KEY]
    v = site.verdict
    assert (v.verdict, v.recheck, v.basis, v.write_locked_by) == ("rw", "pmd_same", "pmd_same", ())
    assert any("not known to hold the mmap_lock for write, reaches a function with no caller in the tree" in t
               for _l, t in evidence(site))


def test_without_a_walk_the_decision_is_pmd_same():
    rec, item, _answer = _walk_of(WL_KEY)
    before = recorded.classify_file(rec, rec.file(item[0]))
    [site] = [s for s in recorded.with_walks(before, {}) if s.key == WL_KEY]
    assert (site.verdict.recheck, site.verdict.basis) == ("pmd_same", "pmd_same")


def test_only_pmd_same_calls_are_walked():
    """A read-only call or a pte_same() dummy asks nothing of the walk."""
    asked = []

    class Asking(recorded.RecordedWalker):
        def write_locked(self, items):
            asked.extend(items)
            return {}

    rec = recorded.load("fixture")
    sites = [s for path in sorted(rec.files) for s in recorded.classify_file(rec, rec.files[path])]
    scan._write_locked(Asking({}), recorded.Runner(jobs=1), sites, recorded.RECIPE)
    by_item = {(s.file, s.function, (s.line, s.column)): s for s in sites}
    assert len(asked) == len(set(asked)) and set(asked) <= by_item.keys()
    assert {by_item[i].key for i in asked} == {s.key for s in sites if s.verdict.recheck == "pmd_same"}
    assert {"mm/fixture_basic.c:fixture_decl_init_rw:0", WL_KEY} <= {by_item[i].key for i in asked}


# ------------------------------------------------------------ review and its question


def test_relock_after_unmap_is_a_review_with_a_question():
    site = replayed("fixture")["mm/fixture_relock.c:fixture_relock_collapse:0"]
    v = site.verdict
    assert (v.verdict, v.recheck, v.review, v.basis) == ("rw", "pmd_same", True, "review")
    assert v.lock_points == ((21, 1), (32, 1)) and v.relocks == ((32, 1),)
    assert v.question.startswith("fixture_relock_collapse() takes the lock again at line 32 after unmapping")
    assert "on_recheck_fail" in v.question


def test_a_table_returned_mapped_and_unlocked_is_a_review():
    site = replayed("fixture")["mm/fixture_return.c:fixture_map_for_caller:0"]
    v = site.verdict
    assert (v.review, v.basis, v.lock_points) == (True, "review", ())
    assert "returns the mapped table to its caller" in " ".join(v.reasons)


def test_an_unseen_call_with_the_lock_held_is_a_review():
    site = replayed("fixture")["mm/fixture_fault.c:fixture_fault_extern_callee:0"]
    v = site.verdict
    assert (v.review, v.basis) == (True, "review")
    assert any("with the lock held" in t for _l, t in evidence(site))


def test_carried_pmd_value_names_the_callers_lock():
    site = replayed("fixture")["mm/fixture_handout.c:fx_map_pte:0"]
    v = site.verdict
    assert (v.recheck, v.basis, v.review) == ("pmd_same", "pmd_same", False)
    assert v.carry is not None and v.hands_out
    assert any("through a new pmdvalp parameter" in r for r in v.reasons)


# ------------------------------------------------------------ helper summaries


def test_helper_summaries_follow_writes_through_the_file():
    facts = recorded.load("fixture").file("mm/fixture_helpers.c").parsed()
    s = verdicts.summarise_helpers(facts, recorded.RECIPE.api)
    assert s["zap_one"].writes == {(2, None): "pte_clear() at line 16"}
    # through zap_one(): the parameter reaches pte_clear() as ptep + i
    assert s["fixture_zap_range"].writes == {(2, None): "zap_one() (pte_clear() at line 16)"}
    assert s["fixture_pte_mapped"].writes == {}
    # a member of the parameter: walk->pte
    assert s["fixture_walk_clear"].writes == {(0, "pte"): "pte_clear() at line 39"}
    # spin_lock(walk->ptl) locks the member ptl of parameter 0
    assert (s["fixture_walk_struct"].locks, s["fixture_walk_struct"].lock_calls) == ({(0, "ptl")}, {(92, 1)})
    assert [n for n, x in s.items() if x.locks or x.unlocks] == ["fixture_walk_struct"]


def test_helper_summaries_see_a_lock_taken_for_the_caller():
    facts = recorded.load("fixture").file("mm/fixture_locks.c").parsed()
    s = verdicts.summarise_helpers(facts, recorded.RECIPE.api)
    assert {n: (x.locks, x.lock_calls) for n, x in s.items() if x.locks} == {"fixture_pt_lock": ({(0, None)},
                                                                                              {(9, 1)})}
    # so the caller's fixture_pt_lock(ptl) is where it takes the lock
    site = replayed("fixture")["mm/fixture_locks.c:fixture_lock_via_helper:0"]
    assert site.verdict.lock_points == ((55, 1),)
    assert any(line == 55 and "fixture_pt_lock(ptl)" in t for line, t in evidence(site))


def test_a_write_through_a_helper_is_an_event_of_the_call():
    rec = recorded.load("fixture")
    facts = rec.file("mm/fixture_helpers.c").parsed()
    summaries = verdicts.summarise_helpers(facts, recorded.RECIPE.api)
    by_fn = {s.function: s for s in facts.sites}
    ctx = verdicts.site_context(facts, by_fn["fixture_zap_via_chain"], rec.function, recorded.RECIPE.api)
    writes = [e for e in verdicts.site_events(facts, ctx, summaries) if e.kind == "write"]
    assert [(e.pos[0], e.helper) for e in writes] == [(67, "fixture_zap_range")]
    ctx = verdicts.site_context(facts, by_fn["fixture_check_via_ro_helper"], rec.function, recorded.RECIPE.api)
    assert not [e for e in verdicts.site_events(facts, ctx, summaries) if e.kind == "write"]
