"""Property tests: call sites generated from a few fixture shapes.

Each example is a small C file, mm/prop.c, in a throw-away repository that
also holds the three files that get the new helpers (copied from the
fixture tree), so that the whole conversion runs.  A shape is written
twice, with two independent sets of names, and the example checks that

* every call gets a verdict, the one the shape calls for;
* the verdict does not change when the variables are renamed;
* the output of `rewriter diff` applies with git apply, leaves no call of
  the old function, and the result still parses (spatch --parse-c reports
  no bad line).

Variants: renamed variables and parameters, extra statements around the
call and the lock, other lock calls (spin_lock, spin_lock_nested,
spin_lock_irq), braces or none around the bodies of the checks, the call
in a declaration or an assignment, void or int functions.

Each example costs a scan and a diff (a few seconds), so the number of
examples is kept small.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import FIXTURE_TREE, commit_all, git, git_env
from harness import run

pytestmark = pytest.mark.slow  # generates trees and runs scan and diff on each

API = "pte_offset_map_nolock"
HELPER_FILES = ("include/linux/mm.h", "mm/pgtable-generic.c", "Documentation/mm/split_page_table_lock.rst")

# What each shape does with the table, and the verdict that calls for.
EXPECTED = {
    "read_locked": ("ro", None),  # reads an entry under the lock
    "read_lockless": ("ro", None),  # reads an entry without the lock
    "write_locked": ("rw", "pmd_same"),  # writes an entry under the lock
    "write_checked": ("rw", "dummy"),  # writes only after pte_same() under the lock, of a non-none entry
}
LOCKS = {  # lock call -> how the function unlocks and unmaps
    "spin_lock({ptl})": "pte_unmap_unlock({pte}, {ptl});",
    "spin_lock_nested({ptl}, SINGLE_DEPTH_NESTING)": "pte_unmap_unlock({pte}, {ptl});",
    "spin_lock_irq({ptl})": "spin_unlock_irq({ptl});\n\tpte_unmap({pte});",
}
EXTRAS = ("", "{nr}++;", "barrier();", "cpu_relax();")
ROLES = ("mm", "pmd", "addr", "pte", "ptl", "entry", "orig", "nr")
IDENTIFIERS = ("pte", "ptep", "start_pte", "mapped", "table", "ptl", "lock", "ptlock", "mm", "owner",
               "pmd", "pmdp", "dir", "addr", "address", "va", "entry", "old", "val", "orig", "want",
               "nr", "count", "n", "k", "pmdval", "dummy_pmdval")


@dataclass(frozen=True)
class Variant:
    shape: str
    lock: str
    declared: bool  # pte_t *pte = call; instead of an assignment
    braces: bool  # { } around the bodies of the checks
    returns_int: bool
    extras: tuple[str, str, str, str]  # before the call, after the check, after the lock, before the unlock

    def render(self, function: str, names: dict[str, str]) -> str:
        n = names
        fail = "return -EAGAIN;" if self.returns_int else "return;"
        done = "return 0;" if self.returns_int else "return;"
        body_if = (lambda cond, stmt: f"\tif ({cond}) {{\n\t\t{stmt}\n\t}}\n" if self.braces
                   else f"\tif ({cond})\n\t\t{stmt}\n")
        extra = [f"\t{e.format(**n)}\n" if e else "" for e in self.extras]
        params = f"struct mm_struct *{n['mm']}, pmd_t *{n['pmd']}, unsigned long {n['addr']}"
        if self.shape == "write_checked":
            params += f", pte_t {n['orig']}"
        call = f"{API}({n['mm']}, {n['pmd']}, {n['addr']}, &{n['ptl']})"
        out = [f"static {'int' if self.returns_int else 'void'} {function}({params})\n{{\n",
               f"\tspinlock_t *{n['ptl']};\n"]
        out.append(f"\tpte_t *{n['pte']} = {call};\n" if self.declared else f"\tpte_t *{n['pte']};\n")
        out.append(f"\tpte_t {n['entry']};\n\tint {n['nr']} = 0;\n\n")
        if not self.declared:
            out.append(extra[0])
            out.append(f"\t{n['pte']} = {call};\n")
        out.append(body_if(f"!{n['pte']}", fail))
        if self.shape == "write_checked":
            # the entry the check compares cannot be none past this (the rule's pte_same() half)
            out.append(f"\tif (pte_none({n['orig']})) {{\n\t\tpte_unmap({n['pte']});\n\t\t{fail}\n\t}}\n")
        out.append(extra[1])
        if self.shape == "read_lockless":
            out.append(f"\t{n['entry']} = ptep_get_lockless({n['pte']});\n\tpte_unmap({n['pte']});\n")
        else:
            out.append(f"\t{self.lock.format(**n)};\n")
            out.append(extra[2])
            if self.shape == "read_locked":
                out.append(f"\t{n['entry']} = ptep_get({n['pte']});\n")
            elif self.shape == "write_locked":
                out.append(f"\tpte_clear({n['mm']}, {n['addr']}, {n['pte']});\n")
            else:
                out.append(body_if(f"!pte_same(ptep_get({n['pte']}), {n['orig']})", "goto out;"))
                out.append(f"\tset_pte_at({n['mm']}, {n['addr']}, {n['pte']}, pte_mkyoung({n['orig']}));\n")
            out.append(extra[3])
            if self.shape == "write_checked":
                out.append("out:\n")
            out.append(f"\t{LOCKS[self.lock].format(**n)}\n")
        if self.shape.startswith("read") and self.returns_int:
            out.append(f"\treturn pte_none({n['entry']}) + {n['nr']};\n")
        elif self.returns_int:
            out.append(f"\t{done}\n")
        else:
            out.append(f"\t(void){n['nr']};\n")
        out.append("}\n")
        return "".join(out)


variants = st.builds(
    Variant,
    shape=st.sampled_from(sorted(EXPECTED)),
    lock=st.sampled_from(sorted(LOCKS)),
    declared=st.booleans(),
    braces=st.booleans(),
    returns_int=st.booleans(),
    extras=st.tuples(*[st.sampled_from(EXTRAS)] * 4),
)
name_sets = st.permutations(IDENTIFIERS).map(lambda ids: dict(zip(ROLES, ids)))
examples = st.lists(st.tuples(variants, name_sets, name_sets), min_size=1, max_size=3)


def _source(example) -> tuple[str, dict[str, tuple[int, str]]]:
    """The C file, and for each function (shape number, copy a or b)."""
    parts = ["// SPDX-License-Identifier: GPL-2.0\n"]
    functions = {}
    for i, (variant, names_a, names_b) in enumerate(example):
        for copy, names in (("a", names_a), ("b", names_b)):
            function = f"prop_{i}_{copy}"
            functions[function] = (i, copy)
            parts.append("\n" + variant.render(function, names))
    return "".join(parts), functions


def _bad_lines(path: Path) -> int:
    proc = subprocess.run(["spatch", "--parse-c", str(path)], capture_output=True, text=True, cwd=path.parent)
    counts = re.findall(r"nb bad = (\d+)", proc.stdout + proc.stderr)
    assert counts, f"spatch --parse-c {path} printed no count:\n{proc.stdout}\n{proc.stderr}"
    return sum(int(c) for c in counts)


def _repo(base: Path, source: str) -> Path:
    repo = base / "linux"
    for rel in HELPER_FILES:
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(FIXTURE_TREE / rel, repo / rel)
    (repo / "mm" / "prop.c").write_text(source)
    git(repo, "init", "-q", "-b", "main")
    commit_all(repo, "generated callers")
    return repo


def test_generated_shapes_parse():
    """The generator itself writes C that spatch parses, for every shape."""
    with tempfile.TemporaryDirectory() as tmp:
        names = dict(zip(ROLES, IDENTIFIERS[::3]))
        for shape in EXPECTED:
            for lock in LOCKS:
                path = Path(tmp) / f"{shape}.c"
                path.write_text(Variant(shape, lock, False, True, True, ("{nr}++;",) * 4).render("f", names))
                assert _bad_lines(path) == 0, path.read_text()


@settings(max_examples=15, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(example=examples)
def test_every_call_gets_a_verdict_and_converts(example):
    source, functions = _source(example)
    with tempfile.TemporaryDirectory(prefix="rewriter-prop-") as tmp:
        base = Path(tmp)
        repo = _repo(base, source)
        scan = run(["scan", "--tree", repo, "--format", "json"], base / "scan")
        assert scan.code == 0, scan.describe() + "\n" + source
        data = json.loads(scan.out)
        sites = {s["function"]: s for s in data["sites"] if s["file"] == "mm/prop.c"}
        assert set(sites) == set(functions), (sorted(sites), source)
        for function, (i, copy) in functions.items():
            got = (sites[function]["verdict"], sites[function]["recheck"])
            assert got == EXPECTED[example[i][0].shape], (function, got, sites[function]["reasons"], source)
            twin = sites[f"prop_{i}_{'b' if copy == 'a' else 'a'}"]
            assert ((sites[function]["verdict"], sites[function]["recheck"], sites[function]["review"])
                    == (twin["verdict"], twin["recheck"], twin["review"])), (function, source)

        diff = run(["diff", "--tree", repo], base / "diff")
        assert diff.code == 0, diff.describe() + "\n" + source
        subprocess.run(["git", "apply", "--whitespace=error-all", "-"], input=diff.out, cwd=repo,
                       env=git_env(), check=True, capture_output=True)
        converted = (repo / "mm" / "prop.c").read_text()
        assert not re.search(rf"\b{API}\b", converted), converted
        for rel in ("mm/prop.c", "mm/pgtable-generic.c", "include/linux/mm.h"):
            assert _bad_lines(repo / rel) == 0, (rel, (repo / rel).read_text())
