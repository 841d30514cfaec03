"""What the commit messages say, as values for templates/series/*.txt.j2.

A commit message says what a function does with the PTE table once it
holds the lock, which variant it gets, and why: the write, and either the
pmd_same() recheck or why a dummy pmdval is enough.  It is built from the
Verdict's fields (verdict, recheck, basis, write_locked_by, question) and
the plan's entry; of the scan's reasons only the names of the functions
they mention are used (which kernel API writes an entry or removes the
table, through which helper), never their words or line numbers: those
are for `rewriter scan` and the plan.

The subject prefixes are here too (SUBJECT_PREFIXES).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import PurePosixPath


# --------------------------------------------------------------------------
# subject prefixes
# --------------------------------------------------------------------------

# The prefix each file's changes carry in the kernel's log, for a tree
# without the history to learn it from (rewriter's own test trees, or a
# tree imported as one commit, like the 6.12 tree of `make kernel`).
# Where they come from:
#   * the subjects of the upstream series that made this very change in
#     v6.13 ("introduce pte_offset_map_{ro|rw}_nolock()", Qi Zheng,
#     September 2024), read from a stored copy of its cover letter:
#     "mm: pgtable:" (mm/pgtable-generic.c), "mm: copy_pte_range() ..."
#     and "mm: handle_pte_fault() ..." (mm/memory.c is plain "mm:", not
#     "mm: memory:"), "mm: khugepaged:", "mm: mremap:", "mm: userfaultfd:",
#     "mm: filemap:", "mm: page_vma_mapped_walk:";
#   * for the rest, the usual style of those directories' logs, not
#     checked against `git log` here (the search tool reads files, not
#     history): "mm: vmscan:" (upstream titled walk_pte_range()
#     "mm: multi-gen LRU:", a prefix of that part of the file, not of the
#     file), "ARM:" for arch/arm (Russell King's tree; its patch-tracker
#     numbers "ARM: 9350/1:" are not part of the prefix), "powerpc/mm:",
#     "x86/mm:", "arm64: mm:", "s390/mm:", "riscv: mm:".
# A file's own history wins when LEARN_AGREEING of its last commits agree.
# Exact paths first, then directories (longest first).
SUBJECT_PREFIXES: dict[str, str] = {
    "mm/memory.c": "mm:",
    "mm/khugepaged.c": "mm: khugepaged:",
    "mm/mremap.c": "mm: mremap:",
    "mm/userfaultfd.c": "mm: userfaultfd:",
    "mm/filemap.c": "mm: filemap:",
    "mm/vmscan.c": "mm: vmscan:",
    "mm/page_vma_mapped.c": "mm: page_vma_mapped_walk:",
    "mm/pgtable-generic.c": "mm: pgtable:",
    "include/linux/mm.h": "mm:",
    "include/linux/mm_types.h": "mm:",
    "include/linux/pgtable.h": "mm:",
    "Documentation/mm/": "mm:",
    "arch/arm/": "ARM:",
    "arch/arm64/": "arm64: mm:",
    "arch/powerpc/": "powerpc/mm:",
    "arch/x86/": "x86/mm:",
    "arch/s390/": "s390/mm:",
    "arch/riscv/": "riscv: mm:",
    "mm/": "mm:",
}

# Learned prefixes need this many of the file's last commits to agree.
LEARN_AGREEING = 3
# A subsystem prefix: "mm:", "mm: khugepaged:", "x86/mm:", "ARM: 9350/1:"
# is taken as "ARM:" (the patch tracker's number is not a prefix).
_PREFIX = re.compile(r"^((?:[A-Za-z0-9_][\w.+/-]*: ){1,2})")
_ARM_TRACKER = re.compile(r"^(ARM: )\d+/\d+: ")


def path_prefix(path: str) -> str:
    """The prefix from SUBJECT_PREFIXES; for other paths: arch/X/... ->
    "X:", mm/foo.c -> "mm: foo:", include/.../foo.h -> "foo:",
    DIR/.../foo.c -> "DIR: foo:"."""
    if path in SUBJECT_PREFIXES:
        return SUBJECT_PREFIXES[path]
    dirs = sorted((k for k in SUBJECT_PREFIXES if k.endswith("/") and path.startswith(k)), key=len, reverse=True)
    parts = path.split("/")
    stem = PurePosixPath(path).stem
    if parts[0] == "mm" and len(parts) == 2:
        return f"mm: {stem}:"
    if dirs:
        return SUBJECT_PREFIXES[dirs[0]]
    if parts[0] == "arch" and len(parts) > 2:
        return f"{parts[1]}:"
    if parts[0] == "include":
        return f"{stem}:"
    if len(parts) == 1:
        return f"{stem}:"
    return f"{parts[0]}: {stem}:"


def is_local(subject: str, body: str) -> bool:
    """A commit that did not come from the kernel's log: no Signed-off-by:,
    or a subject without a subsystem prefix ("test: ..." is one only when
    it is signed off)."""
    return "Signed-off-by:" not in body or not _PREFIX.match(subject)


def learned_prefix(commits: list[tuple[str, str]]) -> str | None:
    """The prefix that at least LEARN_AGREEING of the commits (subject,
    body; newest first) agree on, leaving out merges, reverts and local
    commits; of several, the most common, then the most recent."""
    counts: Counter[str] = Counter()
    first: dict[str, int] = {}
    for i, (subject, body) in enumerate(commits):
        if subject.startswith(("Merge ", "Revert ")) or is_local(subject, body):
            continue
        m = _PREFIX.match(_ARM_TRACKER.sub(r"\1", subject))
        if not m:
            continue
        prefix = m.group(1).strip()
        counts[prefix] += 1
        first.setdefault(prefix, i)
    agreed = [p for p, n in counts.items() if n >= LEARN_AGREEING]
    if not agreed:
        return None
    return max(agreed, key=lambda p: (counts[p], -first[p]))


# --------------------------------------------------------------------------
# what a call does with the table
# --------------------------------------------------------------------------

_NAME = re.compile(r"\b([A-Za-z_]\w*)\(\)")


@dataclass
class Facts:
    """What the code does with the table, as names only."""

    writers: list[str] = field(default_factory=list)  # kernel API it calls itself to change an entry
    removers: list[str] = field(default_factory=list)  # kernel API that removes the table
    helpers: list[str] = field(default_factory=list)  # functions of the file it writes through
    self_locked: list[str] = field(default_factory=list)  # helpers that take the lock themselves
    handed_back: bool = False  # the table goes back to the caller, locked

    def add(self, other: Facts) -> None:
        for name in ("writers", "removers", "helpers", "self_locked"):
            mine = getattr(self, name)
            mine.extend(x for x in getattr(other, name) if x not in mine)
        self.handed_back = self.handed_back or other.handed_back


def facts_of(reasons: tuple[str, ...] | list[str], api) -> Facts:
    """The names in the scan's reasons, sorted by what they are."""
    f = Facts()
    for reason in reasons:
        names = _NAME.findall(reason)
        if "for its caller" in reason or "for the caller" in reason:
            f.handed_back = True
        through = reason.startswith("writes through")
        for k, name in enumerate(names):
            if through and k > 0:
                continue  # what the helper calls: the helper is what this function does
            if name in api.writers:
                if name not in f.writers:
                    f.writers.append(name)
            elif name in api.table_removers:
                if name not in f.removers:
                    f.removers.append(name)
            elif k == 0 and reason.startswith("writes through"):
                if name not in f.helpers:
                    f.helpers.append(name)
                if f"{name}() takes the lock itself" in reason and name not in f.self_locked:
                    f.self_locked.append(name)
    return f


def basis_of(verdict: str, recheck: str | None, basis: str, reasons) -> str:
    """The Verdict's basis, or one worked out from verdict and recheck."""
    if basis:
        return basis
    if verdict == "ro":
        return "reads"
    if recheck == "pmd_same":
        return "pmd_same"
    if any("pte_same()" in r for r in reasons):
        return "pte_same"
    return "review"


def call_values(site, entry, default_reason: str, api) -> dict:
    """What the templates say about one call (no line numbers)."""
    v = site.verdict
    overridden = (entry.verdict, entry.recheck) != (v.verdict, v.recheck)
    own_reason = overridden or (entry.reason and entry.reason != default_reason)
    target = pmd = ptl = None
    context = getattr(site, "context", None)
    if context is not None:
        from rewriter.clex import render
        if getattr(context.site, "target", None):
            target = render(context.site.target)
        args = getattr(context.site, "args", ())
        if len(args) == 4:
            pmd = render(args[1])
            ptl = render(args[3][1:]) if args[3][:1] == ("&",) else f"*{render(args[3])}"
    basis = basis_of(v.verdict, v.recheck, getattr(v, "basis", ""), v.reasons)
    return {
        "key": site.key,
        "target": target,
        "pmd": pmd,  # the pmd pointer the call is given
        "ptl": ptl,  # the lock it hands back
        "verdict": entry.verdict,
        "recheck": entry.recheck,
        "basis": "plan" if overridden else basis,
        "scan_verdict": v.verdict,
        "scan_recheck": v.recheck,
        "overridden": overridden,
        "reason": entry.reason if own_reason else "",
        "on_recheck_fail": entry.on_recheck_fail,
        # a lock taken again after the table was unmapped, rechecked too
        "relocked": bool(getattr(v, "relocks", ())),
        # callers the pmd value is carried to, for a recheck at their lock
        "carried_to": sorted({c.function for c in v.carry.sites}) if getattr(v, "carry", None) else [],
        "write_locked_by": [{"function": fn, "file": file} for fn, file in getattr(v, "write_locked_by", ())],
        "question": getattr(v, "question", "") if v.review else "",
        "review": v.review,
        "facts": facts_of(v.reasons, api),
    }


def groups_of(calls: list[dict]) -> list[dict]:
    """The calls that get the same variant for the same reason."""
    out: dict[tuple, dict] = {}
    for c in calls:
        locked = tuple((w["function"], w["file"]) for w in c["write_locked_by"])
        key = (c["verdict"], c["recheck"], c["basis"], c["reason"], c["on_recheck_fail"], locked,
               c["relocked"], tuple(c["carried_to"]))
        g = out.setdefault(key, {k: c[k] for k in ("verdict", "recheck", "basis", "reason", "on_recheck_fail",
                                                  "write_locked_by", "question", "relocked", "carried_to")}
                           | {"targets": [], "pmds": [], "ptls": [], "facts": Facts(), "count": 0})
        g["count"] += 1
        for name in ("target", "pmd", "ptl"):
            if c[name] and c[name] not in g[name + "s"]:
                g[name + "s"].append(c[name])
        g["facts"].add(c["facts"])
        if c["question"] and not g["question"]:
            g["question"] = c["question"]
    return list(out.values())


def word_count(text: str) -> int:
    """Words of a commit message body, without its trailers."""
    body = "\n".join(l for l in text.splitlines() if not re.match(r"^[A-Z][\w-]*: \S", l))
    return len(body.split())
