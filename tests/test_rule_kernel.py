"""The locking rule on the real 6.12 tree: each call's verdict, the half of
the rule that decides it, and the converted code the reviewed demo plan
gives.  These are the results an mm reviewer checked by eye; a change to
the analysis that moves any of them must be looked at again."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parent.parent
DEMO_PLAN = ROOT / "demo" / "linux-6.12.plan.toml"

# (file, function, index): (verdict, recheck, basis, review)
RULE = {
    ("arch/arm/mm/fault-armv.c", "adjust_pte", 0): ("rw", "pmd_same", "pmd_same", False),
    ("arch/powerpc/mm/pgtable.c", "assert_pte_locked", 0): ("ro", None, "reads", False),
    ("mm/filemap.c", "filemap_fault_recheck_pte_none", 0): ("ro", None, "reads", False),
    ("mm/khugepaged.c", "__collapse_huge_page_swapin", 0): ("ro", None, "reads", False),
    # relocked after pte_unmap(): the body of that recheck is the reviewer's
    ("mm/khugepaged.c", "collapse_pte_mapped_thp", 0): ("rw", "pmd_same", "review", True),
    # dup_mmap() takes the mmap_lock for write
    ("mm/memory.c", "copy_pte_range", 0): ("rw", "dummy", "mmap_write", False),
    # pte_same() on vmf->orig_pte, which is present on the way
    ("mm/memory.c", "handle_pte_fault", 0): ("rw", "dummy", "pte_same", False),
    # mremap and setup_arg_pages() hold the mmap_lock for write
    ("mm/mremap.c", "move_ptes", 0): ("rw", "dummy", "mmap_write", False),
    # the pmd value is carried to page_vma_mapped_walk()
    ("mm/page_vma_mapped.c", "map_pte", 0): ("rw", "pmd_same", "pmd_same", False),
    # dst: pte_same() on an entry that must be none; locked only in helpers
    ("mm/userfaultfd.c", "move_pages_pte", 0): ("rw", "pmd_same", "review", True),
    # src: pte_same() on an entry that is not none
    ("mm/userfaultfd.c", "move_pages_pte", 1): ("rw", "dummy", "pte_same", False),
    ("mm/vmscan.c", "walk_pte_range", 0): ("rw", "pmd_same", "pmd_same", False),
}


@pytest.fixture(scope="module")
def sites(kernel_tree, tools):
    result = tools.scan_json(kernel_tree, timeout=tools.KERNEL_SCAN_TIMEOUT)
    assert result.data is not None, result.describe()
    out = {}
    for s in result.data["sites"]:
        index = sum(1 for o in result.data["sites"]
                    if o["file"] == s["file"] and o["function"] == s["function"] and o["line"] < s["line"])
        out[(s["file"], s["function"], index)] = s
    return out


@pytest.fixture(scope="module")
def demo_diff(kernel_tree, tools) -> str:
    rc, out, err = tools.run_rewriter("diff", "--tree", str(kernel_tree), "--plan", str(DEMO_PLAN),
                                      "--color", "never", timeout=tools.KERNEL_SCAN_TIMEOUT)
    assert rc == 0, err
    return out


def test_every_call_as_the_rule_gives_it(sites):
    got = {k: (s["verdict"], s["recheck"], s["basis"], s["review"]) for k, s in sites.items()}
    assert got == RULE


def test_write_locked_chains_are_named(sites):
    copy = sites[("mm/memory.c", "copy_pte_range", 0)]
    assert [w["function"] for w in copy["write_locked_by"]] == ["dup_mmap"]
    assert any("copy_pmd_range() <- copy_pud_range() <- copy_p4d_range() <- copy_page_range() <- dup_mmap()"
               in e["text"] for e in copy["evidence"])
    move = sites[("mm/mremap.c", "move_ptes", 0)]
    assert {w["function"] for w in move["write_locked_by"]} >= {"setup_arg_pages"}
    assert all("mmap_lock for write" in e["text"] for e in move["evidence"] if "caller chain" in e["text"])


def test_evidence_belongs_to_its_own_call(sites):
    """The dst call's evidence names no pte_same() of the src entry, and the
    other way round."""
    dst = sites[("mm/userfaultfd.c", "move_pages_pte", 0)]
    src = sites[("mm/userfaultfd.c", "move_pages_pte", 1)]
    assert not any("orig_src_pte" in e["text"] for e in dst["evidence"] if "pte_same" in e["text"]), dst
    assert any("orig_dst_pte, which may be none" in e["text"] for e in dst["evidence"]), dst
    assert not any("orig_dst_pte" in e["text"] for e in src["evidence"] if "pte_same" in e["text"]), src
    assert "move_zeropage_pte()" in dst["question"]


def _function(diff: str, file: str, name: str) -> str:
    """The new text of the hunks of file that mention name."""
    part = diff.split(f"diff --git a/{file} b/{file}\n", 1)[1].split("\ndiff --git ", 1)[0]
    return part


def test_map_pte_leaves_no_stale_ptl_and_the_walk_rechecks(demo_diff):
    part = _function(demo_diff, "mm/page_vma_mapped.c", "map_pte")
    assert "+static bool map_pte(struct page_vma_mapped_walk *pvmw, pmd_t *pmdvalp," in part
    # the lock is taken through *ptlp; pvmw->ptl is set only after the recheck passed
    assert re.search(r"\+\tspin_lock\(\*ptlp\);\n\+\tif \(unlikely\(!pmd_same\(\*pmdvalp, pmdp_get_lockless"
                     r"\(pvmw->pmd\)\)\)\) \{\n\+\t\tpte_unmap_unlock\(pvmw->pte, \*ptlp\);\n\+\t\tpvmw->pte = NULL;"
                     r"\n\+\t\treturn false;\n\+\t\}\n \tpvmw->ptl = \*ptlp;\n-\tspin_lock\(pvmw->ptl\);", part), part
    # the walk's own lock site on the handed-out table
    assert re.search(r"\+\t\t\tspin_lock\(ptl\);\n\+\t\t\tif \(unlikely\(!pmd_same\(pmdval, pmdp_get_lockless"
                     r"\(pvmw->pmd\)\)\)\) \{\n\+\t\t\t\tpte_unmap_unlock\(pvmw->pte, ptl\);\n\+\t\t\t\tpvmw->pte = "
                     r"NULL;\n\+\t\t\t\tgoto restart;\n\+\t\t\t\}\n \t\t\tpvmw->ptl = ptl;", part), part
    assert "-\t\tif (!map_pte(pvmw, &ptl)) {\n+\t\tif (!map_pte(pvmw, &pmdval, &ptl)) {" in part


def test_collapse_rechecks_at_both_lock_sites(demo_diff):
    part = _function(demo_diff, "mm/khugepaged.c", "collapse_pte_mapped_thp")
    assert part.count("pmd_same(start_pmdval, pmdp_get_lockless(pmd))") == 2, part
    assert "+\tif (unlikely(!pmd_same(start_pmdval, pmdp_get_lockless(pmd))))\n+\t\tgoto abort;" in part
    assert "+\t\t\tgoto maybe_install_pmd;" in part


def test_write_locked_calls_get_a_dummy_that_says_why(demo_diff):
    memory = _function(demo_diff, "mm/memory.c", "copy_pte_range")
    comment = " ".join(line.strip("+\t */") for line in memory.splitlines() if line.startswith("+\t *"))
    assert "Every caller holds the mmap_lock for write (dup_mmap()), which keeps the page table stable" \
        in comment, comment
    assert "pte_offset_map_maywrite_nolock(src_mm, src_pmd, addr,\n+\t\t\t\t\t\t &dummy_pmdval, &src_ptl);" \
        in memory
    assert not re.search(r"^\+\s*if \(unlikely\(!pmd_same", memory, flags=re.M), memory


def test_kept_call_keeps_the_old_function(demo_diff):
    """The plan keeps the dst call of move_pages_pte(): it stays as it is,
    and so does pte_offset_map_nolock() itself."""
    assert "+\tdst_pte = pte_offset_map_nolock(" not in demo_diff
    assert "-\tdst_pte = pte_offset_map_nolock(" not in demo_diff
    assert "-pte_t *pte_offset_map_nolock(" not in demo_diff
