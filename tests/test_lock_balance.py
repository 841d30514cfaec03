"""Lock balance of the converted fixture functions, run as C.

Each driver in tests/lockbalance/drivers/ names, on its first line, the
fixture file and the definitions it needs::

    /* lockbalance: mm/fixture_locks.c: fixture_pt_lock fixture_lock_nested_clear */

The test takes those definitions from the file as the conversion left it
(``rewriter diff`` on a copy of the fixture tree, applied with git apply),
compiles them with the driver against tests/lockbalance/stub.h (a stub
kernel that counts locks and mappings and checks every write), and runs
it.  The driver prints one line per scenario (normal path, failed
mapping, failed recheck, ...); every line must say "ok".  See stub.h for
what each failure tag means.

The recorded tests feed the harness bodies kept in tests/lockbalance/
recorded/ instead: conversions known to be wrong, which the harness must
flag, and their corrections, which must pass.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

import harness
from conftest import (FIXTURE_TREE, SourceTree, _match_close, blank_comments_and_strings, git,
                      make_git_repo)

LB_DIR = Path(__file__).resolve().parent / "lockbalance"
DRIVERS = LB_DIR / "drivers"
RECORDED = LB_DIR / "recorded"
GCC = shutil.which("gcc")

pytestmark = pytest.mark.skipif(GCC is None, reason="gcc is not installed: the harness compiles the "
                                                     "converted functions with the host C compiler")

CFLAGS = ["-std=gnu11", "-O0", "-g", "-Wall", "-Wno-unused-function", "-Wno-unused-variable",
          "-Werror=implicit-function-declaration", "-Werror=incompatible-pointer-types",
          "-Werror=int-conversion", "-Werror=return-type"]

_HEADER = re.compile(r"\A/\* lockbalance: (?P<file>\S+): (?P<items>[^*]+?) \*/")


# --------------------------------------------------------------------------
# the harness
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Driver:
    path: Path
    file: str                # the fixture file the definitions come from
    items: tuple[str, ...]   # function names, or "struct NAME"

    @property
    def name(self) -> str:
        return self.path.stem


def driver(name: str) -> Driver:
    path = DRIVERS / f"{name}.c"
    m = _HEADER.match(path.read_text())
    assert m, f"{path}: the first line must be /* lockbalance: FILE: NAMES */"
    items = re.findall(r"struct \w+|\w+", m["items"])
    return Driver(path, m["file"], tuple(items))


def all_drivers() -> list[str]:
    return sorted(p.stem for p in DRIVERS.glob("*.c"))


def extract(root: Path, rel: str, items: tuple[str, ...]) -> str:
    """The definitions named by items, from root/rel, in file order."""
    sources = SourceTree(root)
    text = sources.text(rel)
    code = blank_comments_and_strings(text)
    pieces = []
    for item in items:
        if item.startswith("struct "):
            m = re.search(rf"^{item}\s*\{{", code, re.M)
            assert m, f"no definition of {item} in {rel}"
            end = code.index(";", _match_close(code, m.end() - 1, "{", "}"))
            pieces.append((m.start(), text[m.start():end + 1]))
        else:
            span = sources.function(rel, item)
            start = sum(len(line) + 1 for line in text.split("\n")[:span.first_line - 1])
            pieces.append((start, text[start:span.body_end + 1]))
    return "\n\n".join(f'#line {text.count(chr(10), 0, start) + 1} "{rel}"\n{piece}'
                       for start, piece in sorted(pieces))


@dataclass
class Outcome:
    returncode: int
    output: str
    source: str

    @property
    def lines(self) -> dict[str, str]:
        """Scenario -> "ok" or the failures."""
        out = {}
        for line in self.output.splitlines():
            m = re.match(r"lb: (.*?): (ok|FAIL .*)$", line)
            if m:
                out[m[1]] = m[2]
        return out

    def failures(self) -> dict[str, str]:
        return {k: v for k, v in self.lines.items() if v != "ok"}

    def describe(self) -> str:
        return f"exit code {self.returncode}\n{self.output}\n--- the code under test ---\n{self.source}"


def run_driver(drv: Driver, root: Path, rel: str | None, work: Path) -> Outcome:
    """Compile drv with its definitions from root/rel (default: the file the
    driver names) and run it."""
    source = extract(root, rel or drv.file, drv.items)
    work.mkdir(parents=True, exist_ok=True)
    under = work / f"{drv.name}.under_test.c"
    under.write_text(source + "\n")
    binary = work / drv.name
    # A function that hands its table out takes the pmd value for its
    # callers once converted (pmd_t *pmdvalp): the driver passes one then.
    carries = ["-DLB_PMDVALP"] if re.search(r"pmd_t \*pmdvalp\b", source) else []
    cc = subprocess.run([GCC, *CFLAGS, *carries, f"-I{LB_DIR}", f'-DLB_UNDER_TEST="{under}"', "-o", str(binary),
                         str(drv.path)], capture_output=True, text=True, check=False)
    if cc.returncode != 0:
        return Outcome(cc.returncode, "does not compile:\n" + cc.stderr, source)
    try:
        proc = subprocess.run([str(binary)], capture_output=True, text=True, timeout=30, check=False)
    except subprocess.TimeoutExpired as exc:
        return Outcome(-1, f"timed out\n{exc.stdout or ''}", source)
    return Outcome(proc.returncode, proc.stdout + proc.stderr, source)


def assert_balanced(outcome: Outcome) -> None:
    assert outcome.lines, outcome.describe()
    assert outcome.returncode == 0 and not outcome.failures(), outcome.describe()


# --------------------------------------------------------------------------
# live: the fixture tree as `rewriter diff` converts it today
# --------------------------------------------------------------------------

# Drivers whose live case fails on today's conversion, and why.  Remove an
# entry once the conversion is right (strict=False: it may pass before).
TODAY_WRONG: dict[str, str] = {}


def _live_param(name: str):
    if name in TODAY_WRONG:
        return pytest.param(name, marks=pytest.mark.xfail(strict=False, reason=TODAY_WRONG[name]))
    return name


@pytest.fixture(scope="module")
def converted_tree(tmp_path_factory) -> Path:
    """A copy of the fixture tree with `rewriter diff` applied (the plan: the
    default one, with the one unplaceable call set to a dummy pmdval)."""
    scratch = tmp_path_factory.mktemp("lockbalance")
    repo = make_git_repo(FIXTURE_TREE, scratch / "linux")
    plan = harness.workable_plan(repo, scratch)
    patch = scratch / "conversion.diff"
    with open(patch, "wb") as out:
        result = harness.run(["diff", "--tree", repo, "--plan", plan, "--color", "never"], scratch, stdout=out)
    assert result.code == 0, result.describe()
    git(repo, "apply", str(patch))
    return repo


@pytest.mark.slow  # a diff of the whole fixture tree, then gcc per driver
@pytest.mark.parametrize("name", [_live_param(n) for n in all_drivers()])
def test_live_conversion_is_lock_balanced(name, converted_tree, tmp_path):
    assert_balanced(run_driver(driver(name), converted_tree, None, tmp_path))


@pytest.mark.unit
def test_every_pmd_same_site_has_a_driver(manifest):
    """Each function the manifest expects a pmd_same() recheck in is run by
    a driver (fixture_map_for_caller takes no lock: nothing to balance)."""
    driven = {(d.file, item) for d in map(driver, all_drivers()) for item in d.items}
    wanted = {(s.file, s.function) for s in manifest.sites
              if s.recheck == "pmd_same" and s.function != "fixture_map_for_caller"}
    assert wanted - driven == set()


def test_drivers_catch_the_unconverted_sources(tmp_path):
    """On the sources before the conversion (no recheck at all) every driver
    of a fixture function fails: each one reaches a write and a recheck."""
    for name in all_drivers():
        outcome = run_driver(driver(name), FIXTURE_TREE, None, tmp_path / name)
        assert outcome.returncode == 1, outcome.describe()
        assert "NO-RECHECK" in outcome.output, outcome.describe()


# --------------------------------------------------------------------------
# recorded: conversions known to be wrong, and their corrections
# --------------------------------------------------------------------------

def test_flags_the_stale_pvmw_ptl_of_map_pte(tmp_path):
    """fx_map_pte() as the tool converted it before the fix: the failed
    recheck releases the lock that pvmw->ptl still names."""
    outcome = run_driver(driver("fx_map_pte"), RECORDED, "fx_map_pte_stale_ptl.c", tmp_path)
    failures = outcome.failures()
    assert outcome.returncode == 1, outcome.describe()
    assert set(failures) == {
        "fx_map_pte: recheck fails (pmd now another table)",
        "fx_map_pte: a failed recheck leaves what a failed mapping leaves",
    }, outcome.describe()
    assert failures["fx_map_pte: recheck fails (pmd now another table)"] == \
        "FAIL STALE-PTL: pvmw->ptl points at ptl of table 0, which is not held", outcome.describe()
    assert "pvmw->ptl=not held}, a failed mapping leaves {ret=0 pvmw->pte=NULL pvmw->ptl=NULL}" \
        in failures["fx_map_pte: a failed recheck leaves what a failed mapping leaves"], outcome.describe()


def test_flags_the_double_unlock_the_stale_ptl_causes_in_the_walk(tmp_path):
    """The same fx_map_pte() under its walk: when the recheck fails because
    the table is gone, the walk ends and unlocks pvmw->ptl again."""
    outcome = run_driver(driver("fx_page_vma_mapped_walk"), RECORDED, "fx_map_pte_stale_ptl.c", tmp_path)
    line = outcome.lines["fx_page_vma_mapped_walk (lock taken in fx_map_pte): recheck fails (pmd now none)"]
    assert line == "FAIL UNLOCK-NOT-HELD: spin_unlock(ptl of table 0), which is not held", outcome.describe()


def test_passes_the_corrected_map_pte(tmp_path):
    outcome = run_driver(driver("fx_map_pte"), RECORDED, "fx_map_pte_fixed.c", tmp_path)
    assert_balanced(outcome)
    walk = run_driver(driver("fx_page_vma_mapped_walk"), RECORDED, "fx_map_pte_fixed.c", tmp_path / "walk")
    # What fx_map_pte() does is right now; the walk's own lock still has no
    # recheck, and the harness says so.
    assert {k for k, v in walk.lines.items() if "in fx_map_pte" in k and v != "ok"} == set(), walk.describe()
    assert "WRITE-UNCHECKED" in walk.lines["fx_page_vma_mapped_walk (lock taken in the walk): normal path"], \
        walk.describe()


def test_flags_a_double_unlock_in_the_failure_body(tmp_path):
    """The tool's release followed by a user-supplied on_recheck_fail that
    releases again."""
    outcome = run_driver(driver("fixture_decl_init_rw"), RECORDED, "double_unlock.c", tmp_path)
    assert outcome.returncode == 1, outcome.describe()
    assert outcome.failures() == {
        "fixture_decl_init_rw: recheck fails (pmd now another table)":
            "FAIL UNLOCK-NOT-HELD: spin_unlock(ptl of table 0), which is not held; "
            "UNMAP-NOT-MAPPED: pte_unmap() of table 0, not mapped",
    }, outcome.describe()
