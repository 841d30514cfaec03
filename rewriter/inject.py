"""The test build of `rewriter check --boot`: hooks that make every pmd_same()
recheck of the series fail now and then, and count every call of the new
functions.  None of it is ever part of a patch.

cocci/inject.cocci.j2 turns, in each .c file the series touches (at its
final commit),

    !pmd_same(X, pmdp_get_lockless(Y))
        -> rwi_recheck(RWI_RECHECK_<function>, !pmd_same(X, pmdp_get_lockless(Y)))
    F(args)   (F: the read-only or the may-write variant)
        -> (rwi_call(RWI_CALL_RO_<function>), F(args))   or RWI_CALL_RW_

and this module numbers the RWI_* names (one site per file, function and
kind), includes <linux/rewriter_inject.h> in the file, and writes the
kernel side: templates/boot/rewriter_inject.c.j2 into mm/, built through a
line added to mm/Makefile, with the header into include/linux/.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from rewriter import cocci, text
from rewriter.errors import RewriterError
from rewriter.runner import FileResult, Runner

TEMPLATE_DIR = text.TEMPLATES_DIR / "boot"
HEADER = "include/linux/rewriter_inject.h"
KERNEL_C = "mm/rewriter_inject.c"
MAKEFILE = "mm/Makefile"
MAKEFILE_LINE = "obj-y += rewriter_inject.o  # rewriter check --boot: test build only\n"
_TOKEN = re.compile(r"\bRWI_(RECHECK|CALL_RO|CALL_RW)_(\w+)\b")
KINDS = {"RECHECK": "recheck", "CALL_RO": "ro", "CALL_RW": "rw"}


@dataclass(frozen=True)
class Site:
    id: int
    file: str
    function: str
    kind: str  # recheck | ro | rw

    @property
    def name(self) -> str:
        return f"{self.file}:{self.function}:{self.kind}"


@dataclass
class Injection:
    files: dict[str, bytes]  # path -> the injected text (only files with sites)
    sites: list[Site]
    errors: dict[str, str]  # path -> why spatch could not inject it

    def functions(self) -> dict[tuple[str, str], set[str]]:
        """(file, function) -> the kinds of hook in it."""
        out: dict[tuple[str, str], set[str]] = {}
        for s in self.sites:
            out.setdefault((s.file, s.function), set()).add(s.kind)
        return out


def semantic_patch(readonly: str, maywrite: str) -> str:
    return cocci.render("inject.cocci.j2", readonly=readonly, maywrite=maywrite)


def inject(files: dict[str, bytes], readonly: str, maywrite: str, runner: Runner | None = None) -> Injection:
    """Apply the injection to files (path -> text at the final commit)."""
    runner = runner or Runner()
    rule = semantic_patch(readonly, maywrite)
    out: dict[str, bytes] = {}
    sites: list[Site] = []
    errors: dict[str, str] = {}
    index: dict[tuple[str, str, str], int] = {}
    for path, result in sorted(runner.transform(rule, files, step="inject").items()):
        if isinstance(result, FileResult):
            errors[path] = result.error or "spatch failed"
            continue
        body = result.decode("utf-8", "replace")

        def number(m: re.Match) -> str:
            key = (path, m.group(2), KINDS[m.group(1)])
            if key not in index:
                index[key] = len(sites)
                sites.append(Site(len(sites), path, m.group(2), KINDS[m.group(1)]))
            return str(index[key])

        numbered = _TOKEN.sub(number, body)
        if numbered != body:
            out[path] = (f"#include <linux/rewriter_inject.h>  /* rewriter check --boot */\n{numbered}").encode()
    return Injection(out, sites, errors)


def kernel_files(sites: list[Site], makefile: bytes, every: int, delay_us: int) -> dict[str, bytes]:
    """The files to write into the test build's source, besides the injected ones."""
    c = text.environment().get_template("boot/rewriter_inject.c.j2").render(sites=[s.name for s in sites], every=every,
                                                                  delay_us=delay_us)
    mk = makefile.decode("utf-8", "replace")
    if MAKEFILE_LINE not in mk:
        mk = mk.rstrip("\n") + "\n" + MAKEFILE_LINE
    return {KERNEL_C: c.encode(), HEADER: (TEMPLATE_DIR / "rewriter_inject.h").read_bytes(), MAKEFILE: mk.encode()}


def variant_names(prototypes: str, candidates: set[str]) -> tuple[str, str]:
    """(read-only, may-write) among candidates: the may-write variant is the
    one whose prototype takes the pmd value pointer (two pmd_t * arguments)."""
    readonly = maywrite = None
    flat = re.sub(r"\s+", " ", prototypes)
    for name in sorted(candidates):
        m = re.search(rf"\b{re.escape(name)}\s*\(([^)]*)\)", flat)
        if not m:
            continue
        if m.group(1).count("pmd_t") >= 2:
            maywrite = name
        else:
            readonly = name
    if not readonly or not maywrite:
        raise RewriterError("check --boot: the series' final tree declares no read-only and may-write variant "
                            f"(looked for the prototypes of {', '.join(sorted(candidates)) or 'none'} in the headers it touches)")
    return readonly, maywrite


def defined_functions(source: str) -> set[str]:
    """Names of the functions a kernel-style C file defines (the name before
    the parameter list of a definition whose body opens at column 0)."""
    names = set()
    lines = source.split("\n")
    for i, line in enumerate(lines):
        if line.startswith("{") and i > 0:
            head = " ".join(lines[max(0, i - 4):i])
            found = re.findall(r"\b([A-Za-z_]\w*)\s*\(", head)
            if found:
                names.add(next((n for n in found if n not in ("__attribute__", "__printf", "__must_hold",
                                                                "__releases", "__acquires")), found[0]))
    return names


def write_files(root: Path, files: dict[str, bytes]) -> None:
    """Write files under root; a file whose bytes are already there is left
    alone, so that make's time stamps stay right."""
    for path, data in files.items():
        target = root / path
        if target.exists() and target.read_bytes() == data:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            target.unlink()  # a new inode: never write through a hard link
        target.write_bytes(data)
