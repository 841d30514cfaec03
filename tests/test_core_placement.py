"""Where the conversion puts the pmd_same() recheck, the pmdval local and
the dummy's comment: rewrite.plan_file() in-process, on the sites replayed
from the recorded facts and the recorded shape.cocci records, under the
plan a reviewer settled (the fixture's as the tests settle it, 6.12's
demo plan)."""

from __future__ import annotations

from pathlib import Path

import pytest

import recorded
from harness import UNPLACEABLE, set_in_plan, settle_reviews
from rewriter import plan, rewrite

pytestmark = pytest.mark.unit

DEMO_PLAN = Path(__file__).resolve().parent.parent / "demo" / "linux-6.12.plan.toml"


def scanned(name: str):
    return recorded.scanned(name)


def settled(tmp_path, name: str, text: str | None = None) -> plan.Plan:
    """The fixture plan as the tests settle it (harness.workable_plan), or
    6.12's demo plan; text: the plan text to load instead."""
    if name == "linux-6.12" and text is None:
        return plan.load(str(DEMO_PLAN), scanned(name))
    if text is None:
        sc = scanned(name)
        text = settle_reviews(set_in_plan(plan.dump(plan.from_scan(sc), sc), UNPLACEABLE, "recheck", '"dummy"'))
    path = tmp_path / "plan.toml"
    path.write_text(text)
    return plan.load(str(path), scanned(name))


def edits(name: str, path: str, chosen: plan.Plan) -> tuple[rewrite.FileEdits, list[str]]:
    """plan_file() for one recorded file; and the file's lines."""
    rec = recorded.load(name)
    f = rec.file(path)
    keep = plan.kept(chosen)
    sites = [s for s in scanned(name).sites if s.file == path and s.key not in keep]
    shapes = recorded.shapes_from_records(f.shape or [])
    for s in sites:
        shapes.setdefault(s.function, rewrite.Shape())
    return rewrite.plan_file(path, f.source, sites, chosen, shapes, recorded.RECIPE), f.source.split("\n")


def of(items, function: str) -> list[dict]:
    return [i for i in items if i["function"] == function]


def test_recheck_follows_the_lock_and_does_what_the_failed_mapping_does(tmp_path):
    e, lines = edits("fixture", "mm/fixture_basic.c", settled(tmp_path, "fixture"))
    [insert] = of(e.inserts, "fixture_decl_init_rw")
    assert insert["pos"] == (63, 1) and lines[62] == "\tspin_lock(ptl);"
    # "if (!pte) return -EAGAIN;" is the action; the function unlocks with pte_unmap_unlock(pte, ptl)
    assert lines[60:62] == ["\tif (!pte)", "\t\treturn -EAGAIN;"]
    assert insert["code"] == ("if (unlikely(!pmd_same(pmdval, pmdp_get_lockless(pmd)))) {\n"
                              "\tpte_unmap_unlock(pte, ptl);\n\treturn -EAGAIN;\n}")
    # "pte_t *pte = <call>;": the local goes before that declaration's
    [decl] = of(e.decls, "fixture_decl_init_rw")
    assert (decl["pos"], decl["code"], lines[56]) == ((57, 1), "pmd_t pmdval;", "\tspinlock_t *ptl;")
    [call] = of(e.calls, "fixture_decl_init_rw")
    assert (call["verdict"], call["recheck"], call["pmdval_arg"], call["form"]) == ("rw", "pmd_same", "&pmdval",
                                                                                  "declared")
    # a read-only call is only renamed
    [ro] = of(e.calls, "fixture_pte_young_ro")
    assert (ro["verdict"], ro["pmdval_arg"]) == ("ro", None) and not of(e.inserts + e.decls, "fixture_pte_young_ro")


def test_recheck_inside_the_block_that_takes_the_lock(tmp_path):
    e, lines = edits("fixture", "mm/fixture_locks.c", settled(tmp_path, "fixture"))
    [branch] = of(e.inserts, "fixture_lock_one_branch")
    assert branch["pos"] == (75, 2) and lines[74] == "\t\tspin_lock(ptl);"
    # the lock taken by the if's condition: the recheck goes after the whole if
    [trylock] = of(e.inserts, "fixture_trylock_wrprotect")
    assert trylock["pos"] == (35, 1) and lines[34] == "\tif (!spin_trylock(ptl)) {"
    assert trylock["code"].endswith("\treturn false;\n}")
    # a helper of the file takes it: the recheck follows the helper's call
    [helper] = of(e.inserts, "fixture_lock_via_helper")
    assert helper["pos"] == (55, 1) and lines[54] == "\tfixture_pt_lock(ptl);"


def test_a_dummy_pmdval_with_the_plans_reason_as_its_comment(tmp_path):
    e, lines = edits("fixture", "mm/fixture_guard_present.c", settled(tmp_path, "fixture"))
    assert e.inserts == ()
    [decl] = e.decls
    # beside the declaration of the table's variable
    assert (decl["code"], lines[decl["pos"][0] - 1]) == ("pmd_t dummy_pmdval;", "\tpte_t *pte;")
    [call] = e.calls
    assert (call["pmdval_arg"], call["indent"]) == ("&dummy_pmdval", "\t")
    comment = call["comment"].split("\n")
    assert comment[0] == "/*" and comment[-1] == " */"
    assert " ".join(l[3:] for l in comment[1:-1]).startswith("The pte_same() check after taking the lock compares "
                                                            "an entry that is not none")
    assert all(len(l.expandtabs(8)) + 8 <= 80 for l in comment)


def test_each_lock_site_gets_a_recheck_and_the_relock_the_plans_body(tmp_path):
    e, lines = edits("fixture", "mm/fixture_relock.c", settled(tmp_path, "fixture"))
    first, again = e.inserts
    assert (first["pos"], again["pos"]) == ((21, 1), (32, 1))
    assert lines[20] == lines[31] == "\tspin_lock(ptl);"
    assert first["code"] == ("if (unlikely(!pmd_same(start_pmdval, pmdp_get_lockless(pmd)))) {\n"
                             "\tspin_unlock(ptl);\n\tpte_unmap(start_pte);\n\treturn -EAGAIN;\n}")
    # the plan's body, as the list on_recheck_fail gives it for lock site 2
    assert again["code"] == ("if (unlikely(!pmd_same(start_pmdval, pmdp_get_lockless(pmd)))) {\n"
                             "\tspin_unlock(ptl);\n\treturn -EAGAIN;\n}")


def test_the_relock_without_a_body_is_refused(tmp_path):
    sc = scanned("fixture")
    text = set_in_plan(plan.dump(plan.from_scan(sc), sc), "mm/fixture_relock.c:fixture_relock_collapse:0",
                       "decision", '"convert"')
    with pytest.raises(rewrite.RewriteError, match=r"taken again at line 32 after the table was unmapped, .* "
                                                   r"give it as item 2 of the list on_recheck_fail"):
        edits("fixture", "mm/fixture_relock.c", settled(tmp_path, "fixture", text))


def test_a_call_that_never_locks_has_no_place_for_a_recheck(tmp_path):
    sc = scanned("fixture")
    text = set_in_plan(plan.dump(plan.from_scan(sc), sc), UNPLACEABLE, "decision", '"convert"')
    with pytest.raises(rewrite.RewriteError, match=r"the lock is not taken in this function on the way to the "
                                                   r"write, so there is no place for a pmd_same\(\) recheck"):
        edits("fixture", "mm/fixture_return.c", settled(tmp_path, "fixture", text))


def test_the_carried_pmd_value_is_rechecked_where_the_caller_locks(tmp_path):
    e, lines = edits("fixture", "mm/fixture_handout.c", settled(tmp_path, "fixture"))
    [param] = e.params
    assert (param["function"], param["index"], param["code"]) == ("fx_map_pte", 1, "pmd_t *pmdvalp")
    [own] = of(e.inserts, "fx_map_pte")
    assert own["code"].startswith("if (unlikely(!pmd_same(*pmdvalp, pmdp_get_lockless(pvmw->pmd)))) {")
    # pvmw->ptl is set only once the recheck passed, as the caller sees it
    assert own["code"].endswith("}\npvmw->ptl = *ptlp;")
    [caller] = of(e.inserts, "fx_page_vma_mapped_walk")
    assert "\tgoto restart;\n}" in caller["code"] and caller["pos"][0] == 78
    [edit] = e.call_edits
    assert (edit["callee"], edit["new_meta"]) == ("fx_map_pte", ["A1", "&pmdval", "A2"])
    assert lines[edit["pos"][0] - 1].strip().startswith("if (!fx_map_pte(pvmw, &ptl))")


def test_kernel_collapse_gets_one_recheck_per_lock_statement():
    """collapse_pte_mapped_thp(): locks at 1610 and 1612 are one if/else
    statement; the relock at 1660 has the demo plan's body."""
    chosen = plan.load(str(DEMO_PLAN), scanned("linux-6.12"))
    e, lines = edits("linux-6.12", "mm/khugepaged.c", chosen)
    first, relock = of(e.inserts, "collapse_pte_mapped_thp")
    assert first["pos"] == (1609, 1) and lines[1608] == "\tif (!pml)"
    assert first["code"] == ("if (unlikely(!pmd_same(start_pmdval, pmdp_get_lockless(pmd))))\n\tgoto abort;")
    assert relock["pos"][0] == 1659 and "\tgoto maybe_install_pmd;\n}" in relock["code"]
    [decl] = e.decls
    assert (decl["code"], lines[decl["pos"][0] - 1]) == ("pmd_t start_pmdval;", "\tpte_t *start_pte, *pte;")


def test_kernel_kept_call_is_left_out():
    chosen = plan.load(str(DEMO_PLAN), scanned("linux-6.12"))
    assert plan.kept(chosen) == {"mm/userfaultfd.c:move_pages_pte:0"}
    e, _lines = edits("linux-6.12", "mm/userfaultfd.c", chosen)
    [call] = e.calls
    assert (call["key"], call["recheck"], call["pmdval_arg"]) == ("mm/userfaultfd.c:move_pages_pte:1", "dummy",
                                                                 "&dummy_pmdval")
