"""facts.parse(): the records facts.cocci prints, as the analysis reads
them; on literal records and on the ones recorded from the fixture tree."""

from __future__ import annotations

import json
from collections import Counter

import pytest

import recorded
from rewriter.facts import parse

pytestmark = pytest.mark.unit


def _r(kind: str, line: int, col: int, function: str = "f", **fields) -> dict:
    return {"kind": kind, "line": line, "col": col, "function": function, **fields}


RECORDS = [
    _r("param", 1, 5, name="f", index=0, param="mm", type="struct mm_struct *"),
    _r("param", 1, 5, name="f", index=1, param="pmd", type="pmd_t *"),
    _r("site", 9, 8, args=["mm", "pmd", "addr", "& ptl"]),
    _r("site", 4, 2, args=["vma -> vm_mm", "pmd", "addr", "ptlp"]),
    _r("site", 4, 2, args=["vma -> vm_mm", "pmd", "addr", "ptlp"]),  # two rules saw it
    _r("target", 4, 2, target="walk -> pte"),
    _r("declared", 9, 8, target="start_pte"),
    _r("call", 7, 2, callee="set_pte_at", args="mm , addr , pte , entry"),
    _r("call", 7, 2, callee="set_pte_at", args="mm , addr , pte , entry"),
    _r("call", 6, 3, callee="ops -> fn", args="pte"),
    _r("call", 5, 3, callee="None", args=""),
    _r("assign", 8, 1, lhs="entry", rhs="ptep_get ( pte )"),
    _r("assign", 8, 1, lhs="entry", rhs="ptep_get ( pte )"),
    _r("assign", 3, 1, lhs="pte", rhs="start_pte + i"),
    _r("return", 10, 9, value="pte"),
]


def test_sites_in_order_once_each_with_their_target():
    facts = parse("mm/x.c", RECORDS)
    assert [(s.pos, s.function) for s in facts.sites] == [((4, 2), "f"), ((9, 8), "f")]
    first, second = facts.sites
    assert first.args == (("vma", "->", "vm_mm"), ("pmd",), ("addr",), ("ptlp",))
    assert (first.target, first.declared) == (("walk", "->", "pte"), False)
    assert second.args[3] == ("&", "ptl")
    assert (second.target, second.declared) == (("start_pte",), True)


def test_calls_assignments_and_returns():
    facts = parse("mm/x.c", RECORDS)
    # a duplicate is dropped, a call with no callee ("None") too; a call
    # through a pointer has no name
    assert [(c.pos, c.callee, c.name) for c in facts.calls] == [
        ((6, 3), ("ops", "->", "fn"), None), ((7, 2), ("set_pte_at",), "set_pte_at")]
    assert facts.calls[1].args == (("mm",), ("addr",), ("pte",), ("entry",))
    assert [(a.pos, a.lhs, a.rhs) for a in facts.assigns] == [
        ((3, 1), ("pte",), ("start_pte", "+", "i")), ((8, 1), ("entry",), ("ptep_get", "(", "pte", ")"))]
    assert [(r.pos, r.value) for r in facts.returns] == [((10, 9), ("pte",))]
    assert facts.params == {"f": {0: ("mm", "struct mm_struct *"), 1: ("pmd", "pmd_t *")}}
    assert facts.calls_in("f") == facts.calls and facts.calls_in("g") == []


def test_a_site_without_a_target():
    facts = parse("mm/x.c", [_r("site", 2, 9, args=["mm", "pmd", "addr", "ptlp"])])
    assert (facts.sites[0].target, facts.sites[0].declared) == (None, False)


def test_recorded_facts_of_the_fixture_tree():
    """Every recorded file: one site per call the scan reported, duplicates
    of the rules' overlapping matches dropped."""
    rec = recorded.load("fixture")
    reported = Counter(s["file"] for s in rec.report["sites"])
    for path, f in rec.files.items():
        facts = f.parsed()
        assert len(facts.sites) == reported[path], path
        lines = f.source.split("\n")
        for s in facts.sites:
            assert rec.function in lines[s.pos[0] - 1], (path, s.pos)
            assert len(s.args) == 4
        calls = [json.dumps([r["line"], r["col"]]) for r in f.facts if r["kind"] == "call" and r["callee"] != "None"]
        assert len(facts.calls) == len(set(calls)), path
        assert facts.calls == sorted(facts.calls, key=lambda c: c.pos)
