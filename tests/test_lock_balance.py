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
    cc = subprocess.run([GCC, *CFLAGS, f"-I{LB_DIR}", f'-DLB_UNDER_TEST="{under}"', "-o", str(binary),
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
