"""How convert.cocci.j2 is run: one spatch run makes every edit of a file,
its positions taken relative to the first line of their function; rounds
only where a function name is defined twice; and every rule must report
that it made its edit."""

from __future__ import annotations

import pytest

from rewriter import rewrite
from rewriter.recipe import Names
from rewriter.rewrite import FileEdits, _apply, _Named, _render, _rounds, _runs, _tagged
from rewriter.runner import Runner

pytestmark = pytest.mark.spatch

OLD = "pte_offset_map_nolock"
NAMES = Names("pte_offset_map_readonly_nolock", "pte_offset_map_maywrite_nolock")

# Lines 1-4 come before the function, so that spatch, which parses a changed
# function again from a copy of its own, counts its lines from elsewhere.
SOURCE = """\
#include <linux/mm.h>

static int before;

static int adjust(struct mm_struct *mm, pmd_t *pmd, unsigned long addr)
{
\tspinlock_t *ptl;
\tpte_t *pte;

\tpte = pte_offset_map_nolock(mm, pmd, addr, &ptl);
\tif (!pte)
\t\treturn 0;
\tspin_lock(ptl);
\tset_pte(pte);
\tpte_unmap_unlock(pte, ptl);
\treturn 1;
}
"""

RECHECK = ("if (unlikely(!pmd_same(pmdval, pmdp_get_lockless(pmd)))) {\n"
           "\tpte_unmap_unlock(pte, ptl);\n\treturn 0;\n}")


def _edits(function: str = "adjust") -> FileEdits:
    """Three edits in one function: the pmd_t local after the last
    declaration (line 8), the call (line 10), the recheck after the lock
    (line 13); each below the one before moves its lines."""
    call = {"key": f"f.c:{function}:0", "pos": (10, 7), "verdict": "rw", "function": function,
            "recheck": "pmd_same", "comment": None, "indent": "", "pmdval": "pmdval", "form": "assign",
            "pmdval_arg": "&pmdval"}
    decl = {"pos": (8, 1), "code": "pmd_t pmdval;", "function": function}
    insert = {"pos": (13, 1), "code": RECHECK, "function": function, "why": "recheck after the lock"}
    return FileEdits(inserts=(insert,), decls=(decl,), first_stmt_decls=(), calls=(call,))


def _counting(monkeypatch) -> list[str]:
    """The rules of every spatch run of runner.edit, in order."""
    seen: list[str] = []
    real = Runner.edit

    def edit(self, text, files, *args, **kwargs):
        seen.append(text)
        return real(self, text, files, *args, **kwargs)

    monkeypatch.setattr(Runner, "edit", edit)
    return seen


def _expect_all(out: bytes) -> None:
    text = out.decode()
    assert "\tpmd_t pmdval;\n" in text
    assert "pte_offset_map_maywrite_nolock(mm, pmd, addr, &pmdval, &ptl);" in text
    assert OLD + "(" not in text
    # the recheck follows the lock, and the lines after it are untouched
    assert "\tspin_lock(ptl);\n\tif (unlikely(!pmd_same(pmdval, pmdp_get_lockless(pmd)))) {" in text
    assert text.endswith("\tset_pte(pte);\n\tpte_unmap_unlock(pte, ptl);\n\treturn 1;\n}\n")


def test_one_run_makes_every_edit_of_a_function(monkeypatch):
    runs = _counting(monkeypatch)
    named = _Named(_edits(), OLD, NAMES)
    planned = _runs(named, SOURCE.encode())
    assert len(planned) == 1 and planned[0].rules == {"insert_1", "call_2", "decl_3"}
    out = _apply(Runner(jobs=1), "mm/f.c", SOURCE.encode(), planned)
    assert out is not None and len(runs) == 1
    _expect_all(out)


def test_rounds_give_the_same_file():
    """The old way, one edit per function in each run, is the fallback: it
    must give the very same bytes."""
    named = _Named(_edits(), OLD, NAMES)
    one = _apply(Runner(jobs=1), "mm/f.c", SOURCE.encode(), _runs(named, SOURCE.encode()))
    rounds = _rounds(named)
    assert len(rounds) == 3
    assert _apply(Runner(jobs=1), "mm/f.c", SOURCE.encode(), rounds) == one


def test_a_rule_that_does_not_match_is_caught():
    """The check the single run rests on: with the file's own line numbers
    (no START), the rules after the first edit of a function no longer
    match, and _apply says so instead of returning a half-edited file."""
    named = _Named(_edits(), OLD, NAMES)
    wrong = _render(named, _tagged(named.edits), relative=False)
    assert _apply(Runner(jobs=1), "mm/f.c", SOURCE.encode(), [wrong]) is None


def test_a_function_defined_twice_goes_in_rounds(monkeypatch):
    """START is keyed by the function's name: with two definitions of it
    (one per #ifdef branch) the edits go in rounds."""
    twice = SOURCE.replace("static int before;\n", "#ifdef CONFIG_X\nstatic int adjust(void) { return 0; }\n"
                                                   "#else\n#endif\n")
    # the definition now starts one line lower: the edits follow it
    shifted = FileEdits(*(tuple(dict(e, pos=(e["pos"][0] + 3, e["pos"][1])) for e in getattr(_edits(), f))
                          for f in ("inserts", "decls", "first_stmt_decls", "calls")))
    named = _Named(shifted, OLD, NAMES)
    planned = _runs(named, twice.encode())
    assert len(planned) == 3
    out = _apply(Runner(jobs=1), "mm/f.c", twice.encode(), planned)
    assert out is not None
    _expect_all(out)


def test_a_missed_rule_falls_back_to_rounds(monkeypatch):
    """_converted, which convert() calls per file: when the single run
    misses a rule (here made to, by taking the file's own line numbers), the
    file is edited again from the start in rounds, to the same bytes."""
    named = _Named(_edits(), OLD, NAMES)
    good = _apply(Runner(jobs=1), "mm/f.c", SOURCE.encode(), _runs(named, SOURCE.encode()))
    monkeypatch.setattr(rewrite, "_runs", lambda named, source: [
        _render(named, _tagged(named.edits), relative=False)])
    runs = _counting(monkeypatch)
    out = rewrite._converted(Runner(jobs=1), "mm/f.c", SOURCE.encode(), named, SOURCE.encode())
    assert out == good and len(runs) == 1 + 3


def test_a_rule_that_matches_nowhere_stops_the_conversion():
    named = _Named(FileEdits(*(tuple(dict(e, pos=(e["pos"][0] + 40, e["pos"][1])) for e in getattr(_edits(), f))
                               for f in ("inserts", "decls", "first_stmt_decls", "calls"))), OLD, NAMES)
    with pytest.raises(rewrite.RewriteError, match="did not make every planned edit"):
        rewrite._converted(Runner(jobs=1), "mm/f.c", SOURCE.encode(), named, SOURCE.encode())
