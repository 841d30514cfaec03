"""Stage 4: the plan.  The scan's verdicts as an editable TOML file, and the
checks that a user's edited plan still fits the tree."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass

from rewriter import text
from rewriter.errors import InputError
from rewriter.recipe import Recipe
from rewriter.scan import Scan, Site

VERDICTS = ("ro", "rw")
RECHECKS = ("pmd_same", "dummy")
KEYS = {"file", "function", "index", "verdict", "recheck", "reason", "on_recheck_fail", "decision"}
# How a person settles a call the scan marked for review: convert it as
# the entry says, or keep it as it is (the old function then stays).
DECISIONS = ("convert", "keep")


@dataclass(frozen=True)
class Entry:
    file: str
    function: str
    index: int
    verdict: str
    recheck: str | None
    reason: str
    # The whole failure body of the pmd_same() recheck, replacing the
    # tool's own: one text for every lock site, or one per lock site in
    # the order of the lock sites.
    on_recheck_fail: str | tuple[str, ...] | None = None
    decision: str | None = None  # "convert" or "keep": a review settled by a person

    def body_for(self, n: int) -> str | None:
        """The plan's failure body for the n-th lock site, if it gives one."""
        if isinstance(self.on_recheck_fail, tuple):  # "" keeps the tool's own body for that site
            return (self.on_recheck_fail[n] or None) if n < len(self.on_recheck_fail) else None
        return self.on_recheck_fail

    @property
    def key(self) -> str:
        return f"{self.file}:{self.function}:{self.index}"


@dataclass(frozen=True)
class Plan:
    function: str
    rev: str
    entries: tuple[Entry, ...]
    made_at: str = ""  # the revision a loaded plan file was written for ("" when it does not say)

    def entry(self, site: Site) -> Entry:
        for e in self.entries:
            if e.key == site.key:
                return e
        raise KeyError(site.key)


def unsettled(plan: Plan, scan: Scan) -> list[Site]:
    """The calls the scan marked for review that the plan does not settle."""
    return [s for s in scan.sites if s.verdict.review and plan.entry(s).decision is None]


def kept(plan: Plan) -> set[str]:
    """Keys of the calls a person decided to leave as they are."""
    return {e.key for e in plan.entries if e.decision == "keep"}


def default_reason(site: Site, recipe: Recipe) -> str:
    """The reason a plan gives for the scan's verdict, in the recipe's words."""
    v = site.verdict
    if v.verdict == "ro":
        return recipe.reasons["reads"]
    if v.recheck == "dummy" and v.basis == "mmap_write":
        return recipe.reasons["write_locked"].format(holders=", ".join(f"{fn}()" for fn, _f in v.write_locked_by))
    if v.recheck == "dummy":
        return recipe.reasons["guarded"]
    return v.reasons[0] if v.reasons else recipe.reasons["writes"]


def recorded_recipe(path: str) -> str | None:
    """The recipe a plan file says it was made with; None when it says
    none or cannot be read (load() then says what is wrong with it)."""
    try:
        with open(path, "rb") as f:
            name = tomllib.load(f).get("recipe")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    return name if isinstance(name, str) else None


def from_scan(scan: Scan) -> Plan:
    return Plan(scan.function, scan.rev, tuple(
        Entry(s.file, s.function, s.index, s.verdict.verdict, s.verdict.recheck, default_reason(s, scan.recipe))
        for s in scan.sites))


def dump(plan: Plan, scan: Scan) -> str:
    sites = {s.key: s for s in scan.sites}
    calls = []
    for e in plan.entries:
        s = sites[e.key]
        calls.append({
            "file": e.file, "function": e.function, "index": e.index, "verdict": e.verdict,
            "recheck": e.recheck, "reason": e.reason, "on_recheck_fail": e.on_recheck_fail,
            "decision": e.decision,
            "line": s.line, "call": s.call, "review": s.verdict.review, "question": s.verdict.question,
            "lock_sites": [(n + 1, pos[0], pos in s.verdict.relocks)
                           for n, pos in enumerate(s.verdict.lock_points)] if s.verdict.recheck == "pmd_same" else [],
            "evidence": [{"line": ev.line, "text": ev.text} for ev in s.verdict.evidence],
        })
    return text.render("plan.toml.j2", recipe=scan.recipe.name, function=plan.function, tree=scan.tree,
                       rev=scan.rev, calls=calls)


def load(path: str, scan: Scan) -> Plan:
    """Read an edited plan; refuse it, with its line number, if it does not fit."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the plan ({exc.strerror}); write one with 'rewriter plan -o {path}'") from None
    try:
        source = raw.decode("utf-8")
        data = tomllib.loads(source)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        m = re.search(r"line (\d+)", str(exc))
        where = f"{path}:{m.group(1)}" if m else path
        raise InputError(f"{where}: not a valid TOML plan ({exc}); fix it or write a new one with 'rewriter plan'") from None
    header_lines = [i + 1 for i, line in enumerate(source.splitlines()) if line.strip() == "[[call]]"]
    calls = data.get("call", [])
    if data.get("version", 1) != 1:
        raise InputError(f"{path}: plan version {data.get('version')!r} is not one this rewriter reads (1); "
                         f"write a new plan with 'rewriter plan'")
    if not isinstance(calls, list) or not all(isinstance(c, dict) for c in calls):
        raise InputError(f"{path}: 'call' must be a list of [[call]] tables, one per call; "
                         f"write a new plan with 'rewriter plan'")
    if scan.recipe is not None and data.get("recipe", scan.recipe.name) != scan.recipe.name:
        raise InputError(f"{path}: the plan was made with the recipe {data.get('recipe')!r}, not "
                         f"{scan.recipe.name!r}; pass --recipe {data.get('recipe')} or write a plan with this one")
    if data.get("function", scan.function) != scan.function:
        raise InputError(f"{path}: the plan is for {data.get('function')}(), not {scan.function}(); "
                         f"write a plan for it with 'rewriter plan'")
    entries: list[Entry] = []
    sites = {s.key: s for s in scan.sites}
    for n, c in enumerate(calls):
        line = header_lines[n] if n < len(header_lines) else 0
        where = f"{path}:{line}"
        unknown = set(c) - KEYS
        if unknown:
            raise InputError(f"{where}: unknown key {sorted(unknown)[0]!r}; the keys are {', '.join(sorted(KEYS))}")
        for k in ("file", "function", "index", "verdict"):
            if k not in c:
                raise InputError(f"{where}: this call has no {k!r}; every [[call]] needs file, function, index and verdict")
        for k in sorted(KEYS - {"index", "on_recheck_fail"}):
            if k in c and not isinstance(c[k], str):
                raise InputError(f"{where}: {k} must be a string in double quotes, not {c[k]!r}")
        if not isinstance(c["index"], int) or isinstance(c["index"], bool) or c["index"] < 0:
            raise InputError(f"{where}: index must be a whole number from 0, not {c['index']!r}")
        verdict = c["verdict"]
        if verdict not in VERDICTS:
            raise InputError(f"{where}: unknown verdict {verdict!r}; use \"ro\" or \"rw\"")
        recheck = c.get("recheck") or None
        if verdict == "rw" and recheck not in RECHECKS:
            raise InputError(f"{where}: a rw call needs recheck = \"pmd_same\" or \"dummy\", not {recheck!r}")
        if verdict == "ro" and recheck is not None:
            raise InputError(f"{where}: a ro call takes no recheck (found {recheck!r}); set recheck = \"\"")
        fail = c.get("on_recheck_fail") or None
        if isinstance(fail, list) and all(isinstance(x, str) for x in fail):
            fail = tuple(fail)
        elif fail is not None and not isinstance(fail, str):
            raise InputError(f"{where}: on_recheck_fail must be a string, or a list of strings (one failure "
                             f"body per lock site), not {fail!r}")
        if fail is not None and (verdict != "rw" or recheck != "pmd_same"):
            raise InputError(f"{where}: on_recheck_fail only applies to rw calls with recheck = \"pmd_same\"")
        decision = c.get("decision") or None
        if decision is not None and decision not in DECISIONS:
            raise InputError(f"{where}: unknown decision {decision!r}; use \"convert\" (convert as this entry "
                             f"says) or \"keep\" (leave the call as it is)")
        entry = Entry(str(c["file"]), str(c["function"]), c["index"], verdict, recheck,
                      str(c.get("reason") or ""), fail, decision)
        if entry.key not in sites:
            raise InputError(f"{where}: the plan names {entry.key}, which is not a call at {scan.rev[:12]}; "
                             f"the plan is stale: write a new one with 'rewriter plan'")
        if any(e.key == entry.key for e in entries):
            raise InputError(f"{where}: {entry.key} is named twice; keep one entry per call")
        if not entry.reason:
            entry = Entry(entry.file, entry.function, entry.index, verdict, recheck,
                          default_reason(sites[entry.key], scan.recipe), fail, decision)
        entries.append(entry)
    planned = {e.key for e in entries}
    for s in scan.sites:
        if s.key not in planned:
            raise InputError(f"{path}: the plan has no entry for the call at {s.file}:{s.line} in {s.function}() "
                             f"({s.key}); the plan is stale: write a new one with 'rewriter plan'")
    made_at = data.get("rev", "")
    if not isinstance(made_at, str):
        raise InputError(f"{path}: rev must be a string in double quotes, not {made_at!r}; "
                         f"it is the commit 'rewriter plan' wrote the plan for")
    if made_at and made_at != scan.rev:
        _check_same_calls(path, source, header_lines, entries, sites, made_at, scan.rev)
    return Plan(scan.function, scan.rev, tuple(entries), made_at)


_RECORDED = re.compile(r"^# line (\d+): (.*)$")


def _recorded_calls(source: str, header_lines: list[int]) -> list[tuple[int, str] | None]:
    """For each [[call]], the "# line N: CALL" comment 'rewriter plan'
    wrote below it: the line and the text of the call at the plan's rev."""
    lines = source.splitlines()
    out: list[tuple[int, str] | None] = []
    for n, first in enumerate(header_lines):
        last = header_lines[n + 1] - 1 if n + 1 < len(header_lines) else len(lines)
        found = None
        for line_text in lines[first:last]:
            m = _RECORDED.match(line_text)
            if m:
                found = (int(m.group(1)), m.group(2))
                break
        out.append(found)
    return out


def _check_same_calls(path: str, source: str, header_lines: list[int], entries: list[Entry],
                      sites: dict[str, Site], made_at: str, rev: str) -> None:
    """A plan written at another revision: each call it names must still
    be the call it was written for, not another one that took its place
    (the same file, function and index)."""
    recorded = _recorded_calls(source, header_lines)
    for n, entry in enumerate(entries):
        if n >= len(recorded) or recorded[n] is None:
            continue  # a hand-written entry: its key is all there is to check
        line, call = recorded[n]
        site = sites[entry.key]
        if " ".join(call.split()) != " ".join(site.call.split()):
            raise InputError(f"{path}:{header_lines[n]}: {entry.key} was '{call}' at line {line}, but the call "
                             f"there now is '{site.call}' at line {site.line}; the plan is stale "
                             f"(made at {made_at[:12]}, tree is at {rev[:12]}); run 'rewriter plan' again")
