"""Stage 3: verdicts.  Decide, from the facts and the paths, what each call
does with the table it maps.

The decision is made from the code alone:
  * what the mapped pointer (and every variable or member it is copied into)
    is passed to, by the recipe's API knowledge (rewriter.recipe.Knowledge)
    or by a function of the same file whose own effect on its parameters is
    summarised first;
  * where the lock handed back through ptlp is taken and dropped;
  * which of these events can follow the call, which run with the lock held,
    and which writes no pte_same() check guards (paths.cocci, control flow).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rewriter.recipe import Knowledge
from rewriter.clex import find, mentions, outside_calls, ref_fields, render
from rewriter.facts import Assign, Call, FileFacts, Pos, SiteFact

# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class Evidence:
    line: int
    text: str


@dataclass(frozen=True)
class Verdict:
    verdict: str  # "ro" or "rw"
    recheck: str | None  # "pmd_same", "dummy" or None
    review: bool
    reasons: tuple[str, ...]
    evidence: tuple[Evidence, ...]
    # For the rewrite: where the lock is taken on the way to a write (or to
    # handing the table back), and where this function drops it.
    lock_points: tuple[Pos, ...] = ()
    unlock_points: tuple[Pos, ...] = ()
    # Why the verdict and recheck hold, for the commit messages:
    #   "reads"      ro: nothing changes the table under the lock;
    #   "pmd_same"   rw: the caller rechecks the pmd after taking the lock;
    #   "pte_same"   rw + dummy: a pte_same() check on an entry that cannot
    #                be none guards every write;
    #   "mmap_write" rw + dummy: every caller chain holds mmap_lock for write;
    #   "review"     the rule does not decide: see question.
    basis: str = ""
    # For "mmap_write": (function, file) where each chain takes or asserts
    # the mmap_lock for write.
    write_locked_by: tuple[tuple[str, str], ...] = ()
    # For review: the one-line question a person must answer in the plan.
    question: str = ""
    # Lock sites (among lock_points) where the lock is taken again after
    # the table was unmapped: their failure body cannot be derived.
    relocks: tuple[Pos, ...] = ()
    # Assignments the caller sees, made between the call and a lock site
    # (position, lhs, rhs, the lock call whose argument is lhs or None):
    # a failed recheck must not leave them behind.
    exposed: tuple[tuple[Pos, str, str, Pos | None], ...] = ()
    # The table can be handed to the caller mapped and unlocked (the line
    # of such a return), and how the pmd value reaches the callers that
    # lock it (rewriter.carry.Carry), when the tool can carry it.
    hands_out: int = 0
    carry: object = None


# ---------------------------------------------------------------- helpers


def _aliases(seeds: set[tuple[str, ...]], assigns: list[Assign], api: Knowledge,
             exact: bool = False) -> set[tuple[str, ...]]:
    """seeds and every lvalue that an assignment copies one of them into.

    A pointer travels through "p = pte", "p = pte + i", "vmf.pte = pte";
    "ent = ptep_get(pte)" copies a value, not the table (exact=True: the
    right-hand side must be the seed itself, as for a lock pointer).
    """
    found = set(seeds)
    changed = True
    while changed:
        changed = False
        for a in assigns:
            if a.lhs in found:
                continue
            rhs = _assigned_value(a.rhs)
            for s in list(found):
                hit = (rhs == s) if exact else outside_calls(rhs, s)
                if hit and not _is_mapping_call(a.rhs, api):
                    found.add(a.lhs)
                    changed = True
                    break
    return found


def _assigned_value(rhs: tuple[str, ...]) -> tuple[str, ...]:
    """The value of "a = b = VALUE": a chained assignment's right-hand
    side is itself an assignment, and only its value is copied."""
    depth = 0
    last = -1
    for i, t in enumerate(rhs):
        if t in ("(", "[", "{"):
            depth += 1
        elif t in (")", "]", "}"):
            depth -= 1
        elif t == "=" and depth == 0:
            last = i
    return rhs[last + 1:]


def _is_base_of(arg: tuple[str, ...], member: tuple[str, ...]) -> bool:
    """arg is the structure (or its address) that holds member."""
    if len(member) < 3 or member[-2] not in ("->", "."):
        return False
    base = member[:-2]
    return arg == base or arg == ("&",) + base


def _is_mapping_call(rhs: tuple[str, ...], api: Knowledge) -> bool:
    """rhs maps a table of its own: its value is not a copy of a pointer."""
    return bool(rhs) and rhs[0].startswith(api.mapper_prefixes)


@dataclass
class HelperSummary:
    """What a function of the file does to the objects its parameters point to.

    Keys are (parameter index, field): field None is the parameter itself,
    a name is the member param->name.
    """

    writes: dict[tuple[int, str | None], str] = field(default_factory=dict)
    locks: set[tuple[int, str | None]] = field(default_factory=set)
    unlocks: set[tuple[int, str | None]] = field(default_factory=set)
    lock_calls: set[Pos] = field(default_factory=set)
    write_calls: set[Pos] = field(default_factory=set)


def _param_refs(arg: tuple[str, ...], aliases: set[tuple[str, ...]]) -> set[str | None]:
    refs: set[str | None] = set()
    for a in aliases:
        refs |= ref_fields(arg, a)
    return refs


def summarise_helpers(facts: FileFacts, api: Knowledge) -> dict[str, HelperSummary]:
    """Effects of every function of the file on its parameters, to a fixpoint
    (so helper chains of any depth in the same file are followed)."""
    summaries = {name: HelperSummary() for name in facts.params}
    aliases = {}
    for name, params in facts.params.items():
        assigns = facts.assigns_in(name)
        aliases[name] = {i: _aliases({(p,)}, assigns, api) for i, (p, _t) in params.items()}
    calls_by_fn: dict[str, list[Call]] = {}
    for c in facts.calls:
        calls_by_fn.setdefault(c.function, []).append(c)
    # Where a helper maps a table of its own into a parameter's member
    # (vmf->pte = pte_offset_map_lock(...)), the writes after that line go
    # to the new mapping, not to the caller's.
    remapped: dict[str, dict[tuple[str, ...], int]] = {}
    for a in facts.assigns:
        if _is_mapping_call(a.rhs, api):
            line = remapped.setdefault(a.function, {}).get(a.lhs, a.pos[0])
            remapped[a.function][a.lhs] = min(line, a.pos[0])
    changed = True
    while changed:
        changed = False
        for name, params in facts.params.items():
            s = summaries[name]
            before = (len(s.writes), len(s.locks), len(s.unlocks))
            for c in calls_by_fn.get(name, []):
                fresh = {lhs for lhs, line in remapped.get(name, {}).items() if line < c.pos[0]}
                if fresh and any(mentions(arg, lhs) or _is_base_of(arg, lhs) for arg in c.args for lhs in fresh):
                    continue
                for i, al in aliases[name].items():
                    _summarise_call(c, i, al, summaries, s, api)
            if (len(s.writes), len(s.locks), len(s.unlocks)) != before:
                changed = True
    return summaries


def _summarise_call(c: Call, i: int, al: set[tuple[str, ...]], summaries: dict[str, HelperSummary],
                    s: HelperSummary, api: Knowledge) -> None:
    name = c.name
    if name is None:
        return
    if name in api.writers and len(c.args) > api.writers[name]:
        for f in _param_refs(c.args[api.writers[name]], al):
            s.writes.setdefault((i, f), f"{name}() at line {c.pos[0]}")
            s.write_calls.add(c.pos)
    for table, dest in ((api.lockers, s.locks), (api.unlockers, s.unlocks)):
        if name in table and len(c.args) > table[name]:
            arg = c.args[table[name]]
            for a in al:
                if arg == a:
                    dest.add((i, None))
                elif len(arg) == len(a) + 2 and arg[:len(a)] == a and arg[len(a)] in ("->", "."):
                    dest.add((i, arg[-1]))
            if dest is s.locks and any(k[0] == i for k in dest):
                s.lock_calls.add(c.pos)
    callee = summaries.get(name)
    if callee is None:
        return
    for j, arg in enumerate(c.args):
        for a in al:
            direct = outside_calls(arg, a) and (arg == a or not any(
                len(arg) > k + len(a) and arg[k + len(a)] in ("->", ".") for k in find(arg, a)))
            member = arg if len(arg) == len(a) + 2 and arg[:len(a)] == a and arg[len(a)] in ("->", ".") else None
            for (pj, f), how in list(callee.writes.items()):
                if pj != j:
                    continue
                if direct:
                    s.writes.setdefault((i, f), f"{name}() ({how})")
                    s.write_calls.add(c.pos)
                elif member is not None and f is None:
                    s.writes.setdefault((i, member[-1]), f"{name}() ({how})")
                    s.write_calls.add(c.pos)
            for src, dest in ((callee.locks, s.locks), (callee.unlocks, s.unlocks)):
                for pj, f in list(src):
                    if pj != j:
                        continue
                    if arg == a:
                        dest.add((i, f))
                    elif member is not None and f is None:
                        dest.add((i, member[-1]))
                    else:
                        continue
                    if dest is s.locks:
                        s.lock_calls.add(c.pos)


# ---------------------------------------------------------------- events


@dataclass(frozen=True)
class Event:
    pos: Pos
    kind: str  # lock, unlock, write, unseen, read, return, guard
    text: str  # what it is, for evidence and reasons
    self_locked: bool = False  # a helper write that takes the lock itself
    helper: str | None = None
    drops: bool = False  # the call drops the lock (a helper that unlocks)


@dataclass(frozen=True)
class SiteContext:
    """One call and the names its table and lock go by in its function."""

    site: SiteFact
    pointers: frozenset[tuple[str, ...]]
    locks: frozenset[tuple[str, ...]]
    pmd: tuple[str, ...]
    returned: bool  # the call's value is returned as it is
    api: Knowledge = field(compare=False, repr=False)


def site_context(facts: FileFacts, site: SiteFact, function: str, api: Knowledge) -> SiteContext:
    """function: the name being converted, as it appears at the call."""
    assigns = facts.assigns_in(site.function)
    mm, pmd, addr, ptlp = site.args
    lock = ptlp[1:] if ptlp[:1] == ("&",) else ("*",) + ptlp
    pointers = _aliases({site.target}, assigns, api) if site.target else set()
    locks = _aliases({lock}, assigns, api, exact=True)
    # "return <call>;": the returned expression starts at the call.
    returned = any(r.pos == site.pos or (r.value[:1] == (function,) and r.pos[0] == site.pos[0])
                   for r in facts.returns_in(site.function))
    return SiteContext(site, frozenset(pointers), frozenset(locks), pmd, returned, api)


def _refs_table(arg: tuple[str, ...], ctx: SiteContext) -> set[str | None]:
    """How arg refers to the mapped table: None (the pointer itself), or the
    name of the member that holds it when arg is the structure."""
    refs: set[str | None] = set()
    for p in ctx.pointers:
        if outside_calls(arg, p) and not ref_fields(arg, p) - {None}:
            refs.add(None)
        if len(p) >= 3 and p[-2] in ("->", "."):
            base = p[:-2]
            if arg == base or arg == ("&",) + base:
                refs.add(p[-1])
    return refs


def _refs_lock(arg: tuple[str, ...], ctx: SiteContext) -> set[str | None]:
    refs: set[str | None] = set()
    for l in ctx.locks:
        if arg == l:
            refs.add(None)
        if len(l) >= 3 and l[-2] in ("->", "."):
            base = l[:-2]
            if arg == base or arg == ("&",) + base:
                refs.add(l[-1])
    return refs


def site_events(facts: FileFacts, ctx: SiteContext, summaries: dict[str, HelperSummary]) -> list[Event]:
    api = ctx.api
    fn = ctx.site.function
    events: list[Event] = []
    for c in facts.calls_in(fn):
        if c.pos == ctx.site.pos:
            continue
        name = c.name
        shown = render(c.callee) + "()"
        if name in api.comparators:
            events.append(Event(c.pos, "guard", f"{shown} compares the entry with one read earlier"))
            continue
        if name in api.lockers and len(c.args) > api.lockers[name] and _refs_lock(c.args[api.lockers[name]], ctx) & {None}:
            events.append(Event(c.pos, "lock", f"takes the lock: {shown}"))
            continue
        if name in api.unlockers and len(c.args) > api.unlockers[name] and _refs_lock(c.args[api.unlockers[name]], ctx) & {None}:
            events.append(Event(c.pos, "unlock", f"drops the lock: {shown}"))
            continue
        if name in api.writers and len(c.args) > api.writers[name]:
            if None in _refs_table(c.args[api.writers[name]], ctx):
                events.append(Event(c.pos, "write", f"writes an entry: {shown}"))
                continue
        if name in api.table_removers and len(c.args) > api.table_removers[name]:
            if c.args[api.table_removers[name]] == ctx.pmd:
                events.append(Event(c.pos, "write", f"removes the page table: {shown}"))
                continue
        table_args = [(j, _refs_table(a, ctx)) for j, a in enumerate(c.args)]
        table_args = [(j, r) for j, r in table_args if r]
        lock_args = [(j, _refs_lock(a, ctx)) for j, a in enumerate(c.args)]
        lock_args = [(j, r) for j, r in lock_args if r]
        helper = summaries.get(name) if name else None
        if helper is not None:
            takes = any((j, f) in helper.locks for j, refs in lock_args for f in refs)
            drops = any((j, f) in helper.unlocks for j, refs in lock_args for f in refs)
            writes = [helper.writes[(j, f)] for j, refs in table_args for f in refs if (j, f) in helper.writes]
            if writes:
                events.append(Event(c.pos, "write", f"writes through {shown}, which calls {writes[0]}",
                                    self_locked=takes, helper=name, drops=drops))
                continue
            if takes:
                events.append(Event(c.pos, "lock", f"takes the lock in {shown}"))
                continue
            if drops:
                events.append(Event(c.pos, "unlock", f"drops the lock in {shown}"))
                continue
            if table_args:
                events.append(Event(c.pos, "read", f"passes the table to {shown}, which only reads it"))
            continue
        if not table_args:
            continue
        if name is not None and (name in api.readers or name in api.transparent or name in api.writers or name in api.lock_assertions
                                 or api.is_debug_macro(name) or name in api.lockers or name in api.unlockers):
            events.append(Event(c.pos, "read", f"reads: {shown}"))
            continue
        if name is None:
            events.append(Event(c.pos, "unseen", f"passes the table to a function pointer, {shown}"))
        else:
            events.append(Event(c.pos, "unseen", f"passes the table to {shown}, which is not in this file"))
    for r in facts.returns_in(fn):
        if any(outside_calls(r.value, p) and not ref_fields(r.value, p) - {None} for p in ctx.pointers) or (
                ctx.returned and r.pos == ctx.site.pos):
            events.append(Event(r.pos, "return", "returns the mapped table to the caller"))
        else:
            events.append(Event(r.pos, "exit", "returns"))
    return events


def _caller_visible(lhs: tuple[str, ...], params: set[str]) -> bool:
    """lhs is *param or param->member...: the caller sees it after the call."""
    return (len(lhs) == 2 and lhs[0] == "*" and lhs[1] in params) or (
        len(lhs) >= 3 and lhs[0] in params and lhs[1] == "->")


def exposed_assignments(facts: FileFacts, ctx: SiteContext, lock_points: tuple[Pos, ...]) -> tuple:
    """The caller-visible assignments between the call and its first lock
    site, other than the table itself, with the lock call that takes the
    assigned value as its lock (pvmw->ptl = *ptlp; spin_lock(pvmw->ptl))."""
    api = ctx.api
    if not lock_points:
        return ()
    params = {p for p, _t in facts.params.get(ctx.site.function, {}).values()}
    first = min(lock_points)
    lock_calls = {c.pos: c for c in facts.calls_in(ctx.site.function) if c.pos in lock_points}
    out = []
    for a in facts.assigns_in(ctx.site.function):
        if not (ctx.site.pos < a.pos < first) or a.lhs in ctx.pointers or not _caller_visible(a.lhs, params):
            continue
        if a.pos[0] == ctx.site.pos[0]:
            continue  # the assignment of the call's own result
        taker = next((c.pos for c in lock_calls.values()
                      if c.name in api.lockers and len(c.args) > api.lockers[c.name]
                      and c.args[api.lockers[c.name]] == a.lhs), None)
        out.append((a.pos, render(a.lhs), render(a.rhs), taker))
    return tuple(out)


def stored_for_caller(facts: FileFacts, ctx: SiteContext) -> str | None:
    """The table is kept where the caller sees it: *param or param->member."""
    params = {p for p, _t in facts.params.get(ctx.site.function, {}).values()}
    return next((render(p) for p in ctx.pointers if _caller_visible(p, params)), None)


# ---------------------------------------------------------------- verdict


@dataclass(frozen=True)
class Paths:
    """Answers of paths.cocci for one file."""

    reach: frozenset[tuple[Pos, Pos]] = frozenset()
    after: frozenset[tuple[Pos, Pos]] = frozenset()  # lock -> lock
    held: frozenset[tuple[Pos, Pos]] = frozenset()
    unguarded: frozenset[tuple[Pos, Pos]] = frozenset()


@dataclass(frozen=True)
class Guard:
    """A pte_same() check on this call's table: where it is (the check, or
    the call of the helper that makes it), the entry it compares against,
    and whether that entry cannot be none there."""

    pos: Pos
    entry: tuple[str, ...]
    not_none: bool
    text: str
    proof: int = 0  # the line of the test that leaves when the entry is none


def _fresh_side(arg: tuple[str, ...], tables: set[tuple[str, ...]], api: Knowledge) -> bool:
    """arg reads an entry of one of tables now: ptep_get(pte), ptep_get(pte + i)."""
    if not arg or arg[0] not in api.entry_readers or arg[1:2] != ("(",):
        return False
    inner = arg[2:-1]
    return any(outside_calls(inner, t) or inner == t for t in tables)


def _entry_aliases(entry: tuple[str, ...], assigns: list[Assign]) -> set[tuple[str, ...]]:
    """entry and the plain copies it was made from or into (entry = vmf->orig_pte)."""
    found = {entry}
    changed = True
    while changed:
        changed = False
        for a in assigns:
            if a.lhs in found and a.rhs not in found and all(t.isidentifier() or t in ("->", ".") for t in a.rhs):
                found.add(a.rhs)
                changed = True
            elif a.rhs in found and a.lhs not in found:
                found.add(a.lhs)
                changed = True
    return found


def site_guards(facts: FileFacts, ctx: SiteContext, events: list[Event], source: str) -> list[Guard]:
    """The pte_same() checks that compare an entry of this call's table, in
    its function or in a helper it hands the table to, and whether the
    entry compared cannot be none there (rewriter.guards)."""
    api = ctx.api
    from rewriter import guards as g

    site = ctx.site
    fn_calls = facts.calls_in(site.function)
    body = [c.pos[0] for c in fn_calls] + [site.pos[0]]
    exits = g.exits(source, site.pos[0], max(body), api)
    assigns = facts.assigns_in(site.function)
    found: list[Guard] = []

    def judge(pos: Pos, entry: tuple[str, ...], text: str) -> None:
        names = _entry_aliases(entry, assigns)
        tests = [x for x in exits if x.entry in names and x.line >= site.pos[0] and g.encloses(x, pos[0])]
        not_none = any(x.proves == "not_none" for x in tests) and not any(x.proves == "none" for x in tests)
        proof = next((x.line for x in tests if x.proves == "not_none"), 0) if not_none else 0
        found.append(Guard(pos, entry, not_none, text, proof))

    for c in fn_calls:
        if c.name in api.comparators and len(c.args) == 2 and c.pos > site.pos:
            for fresh, other in ((0, 1), (1, 0)):
                if _fresh_side(c.args[fresh], set(ctx.pointers), ctx.api):
                    judge(c.pos, c.args[other], f"{c.name}() compares the entry with {render(c.args[other])}")
                    break
    for e in events:
        if not e.self_locked or e.helper is None:
            continue
        call = next((c for c in fn_calls if c.pos == e.pos), None)
        params = facts.params.get(e.helper, {})
        if call is None:
            continue
        by_name = {name: i for i, (name, _t) in params.items()}
        for c in facts.calls_in(e.helper):
            if c.name not in api.comparators or len(c.args) != 2:
                continue
            for fresh, other in ((0, 1), (1, 0)):
                f_arg, o_arg = c.args[fresh], c.args[other]
                if not (f_arg[:1] and f_arg[0] in api.entry_readers):
                    continue
                inner = f_arg[2:-1]
                j = by_name.get(inner[0]) if len(inner) == 1 else None
                k = by_name.get(o_arg[0]) if len(o_arg) == 1 else None
                if j is None or k is None or j >= len(call.args) or k >= len(call.args):
                    continue
                if call.args[j] in ctx.pointers:
                    judge(e.pos, call.args[k], f"{e.helper}() compares the entry with {render(call.args[k])}")
                break
    return found


def _helper_guards(facts: FileFacts, ctx: SiteContext, e: Event) -> list[Call]:
    """The pte_same() checks in the helper of e that read this call's table."""
    api = ctx.api
    call = next((c for c in facts.calls_in(ctx.site.function) if c.pos == e.pos), None)
    if call is None or e.helper is None:
        return []
    by_name = {name: i for i, (name, _t) in facts.params.get(e.helper, {}).items()}
    out = []
    for c in facts.calls_in(e.helper):
        if c.name not in api.comparators:
            continue
        for arg in c.args:
            inner = arg[2:-1] if arg[:1] and arg[0] in api.entry_readers else ()
            j = by_name.get(inner[0]) if len(inner) == 1 else None
            if j is not None and j < len(call.args) and call.args[j] in ctx.pointers:
                out.append(c)
                break
    return out


def decide(facts: FileFacts, ctx: SiteContext, events: list[Event], paths: Paths,
           summaries: dict[str, HelperSummary], lines: list[str], guards: list[Guard] | None = None) -> Verdict:
    site, api = ctx.site, ctx.api
    guards = guards or []
    reach = {e.pos for e in events if (site.pos, e.pos) in paths.reach}
    after = [e for e in events if e.pos in reach]
    locks = [e for e in after if e.kind == "lock"]
    evidence: list[Evidence] = [Evidence(site.pos[0], _line(lines, site.pos[0]))]
    reasons: list[str] = []
    review = False
    guarded_all = True
    writes_seen = False

    def held_by(e: Event) -> list[Event]:
        return [l for l in locks if (l.pos, e.pos) in paths.held]

    for l in locks:
        evidence.append(Evidence(l.pos[0], f"{l.text}: {_line(lines, l.pos[0])}"))
    for e in after:
        if e.kind == "write":
            writes_seen = True
            holders = held_by(e)
            evidence.append(Evidence(e.pos[0], f"{e.text}: {_line(lines, e.pos[0])}"))
            if e.self_locked:
                inner = summaries[e.helper]
                if any(gd.pos == e.pos for gd in guards):
                    for c in _helper_guards(facts, ctx, e):
                        evidence.append(Evidence(c.pos[0], f"{e.helper}() checks {c.name}() after taking the lock: "
                                                 f"{_line(lines, c.pos[0])}"))
                unguarded_inside = any((lp, wp) in paths.unguarded
                                       for lp in inner.lock_calls for wp in inner.write_calls)
                outside_ok = holders and all((l.pos, e.pos) not in paths.unguarded for l in holders)
                if unguarded_inside and not outside_ok:
                    guarded_all = False
                reasons.append(f"{e.text}; {e.helper}() takes the lock itself")
            elif holders:
                if any((l.pos, e.pos) in paths.unguarded for l in holders):
                    guarded_all = False
                reasons.append(f"{e.text} with the lock held")
            else:
                guarded_all = False
                review = True
                reasons.append(f"{e.text} without taking the lock here")
        elif e.kind == "unseen":
            if held_by(e):
                review = True
                guarded_all = False
                evidence.append(Evidence(e.pos[0], f"{e.text}, with the lock held: {_line(lines, e.pos[0])}"))
                reasons.append(f"{e.text}, with the lock held: check that it does not change the table")
            else:
                evidence.append(Evidence(e.pos[0], f"{e.text}, without the lock held: {_line(lines, e.pos[0])}"))
        elif e.kind == "guard" and any(gd.pos == e.pos for gd in guards):
            evidence.append(Evidence(e.pos[0], f"{e.text}: {_line(lines, e.pos[0])}"))
    handed_back = None
    returns = [e for e in after if e.kind == "return"]
    if returns or ctx.returned:
        handed_back = "returns the mapped table to its caller"
    else:
        stored = stored_for_caller(facts, ctx)
        if stored:
            handed_back = f"leaves the mapped table in {stored} for its caller"
    if handed_back:
        exits = [e for e in after if e.kind in ("return", "exit")]
        # "return helper(vmf);" where the helper drops the lock hands back nothing locked.
        dropping = {e.pos for e in events if e.kind == "unlock" or e.drops}
        locked_exit = [x for x in exits if held_by(x) and x.pos not in dropping]
        if locked_exit:
            reasons.append(f"{handed_back} with the lock held")
            evidence.append(Evidence(locked_exit[0].pos[0], f"{handed_back} with the lock held: "
                                     f"{_line(lines, locked_exit[0].pos[0])}"))
        elif returns or ctx.returned:
            review = True
            reasons.append(f"{handed_back}, with its lock pointer; the caller may change it: check the callers")
        else:
            handed_back = None
        if handed_back:
            guarded_all = False
    if writes_seen or handed_back or review:
        weak = [gd for gd in guards if not gd.not_none]
        if writes_seen and guarded_all and not review and guards and weak:
            guarded_all = False
            for gd in weak:
                evidence.append(Evidence(gd.pos[0], f"{gd.text}, which may be none there: "
                                                    f"{_line(lines, gd.pos[0])}"))
            reasons.append(f"the {api.comparators[0]}() check compares {render(weak[0].entry)}, which may be none on "
                           f"the way to it; an empty table that replaced this one compares equal")
        elif writes_seen and guarded_all and not guards:
            guarded_all = False  # the checks seen compare entries of another table
        recheck = "dummy" if (writes_seen and guarded_all and not review) else "pmd_same"
        basis = "pte_same" if recheck == "dummy" else "pmd_same"
        if recheck == "dummy":
            for gd in guards:
                evidence.append(Evidence(gd.proof, f"{render(gd.entry)} cannot be none after this test: "
                                                   f"{_line(lines, gd.proof)}"))
            entries = sorted({render(gd.entry) for gd in guards})
            reasons.append(f"a {api.comparators[0]}() check after taking the lock guards every write, and the entry it "
                           f"compares ({', '.join(entries)}) cannot be none there")
        ends = [e for e in after if e.kind in ("write", "unseen", "return", "exit")]
        # The recheck belongs after the first time the lock is taken: a lock
        # that can only follow another one comes after that recheck.
        holding = [l for l in locks if any((l.pos, e.pos) in paths.held for e in ends)]
        first = [l for l in holding if not any(o.pos != l.pos and (o.pos, l.pos) in paths.after for o in holding)]
        lock_points = tuple(sorted({l.pos for l in first}))
        unlock_points = tuple(sorted(e.pos for e in after if e.kind == "unlock"))
        question = ""
        hands_out = 0
        relocks: tuple[Pos, ...] = ()
        if recheck == "pmd_same":
            # Once the table is unmapped, the mapping's RCU protection is
            # gone: a later lock on it needs a recheck of its own.
            unmaps = [c.pos for c in facts.calls_in(site.function)
                      if c.name == api.unmap and c.args and None in _refs_table(c.args[0], ctx)]
            relocks = tuple(sorted({l.pos for l in holding if l.pos not in lock_points
                                    and any(o < u < l.pos for o in lock_points for u in unmaps)}))
            if relocks:
                review = True
                lock_points = tuple(sorted(set(lock_points) | set(relocks)))
                r = relocks[0]
                question = (f"{site.function}() takes the lock again at line {r[0]} after unmapping the table, "
                            f"and changes it there: that lock needs its own pmd_same() recheck, whose failure "
                            f"body the tool cannot derive; write one body per lock site as the list "
                            f"on_recheck_fail and set decision = \"convert\", or decision = \"keep\"")
                reasons.append(f"takes the lock again at line {r[0]} after the table was unmapped")
            helpers_locking = sorted({e.helper for e in after if e.kind == "write" and e.self_locked and e.helper})
            if not lock_points and helpers_locking:
                review = True
                question = (f"{site.function}() takes the lock only inside {', '.join(h + '()' for h in helpers_locking)}: "
                            f"the pmd value must be carried into {'them' if len(helpers_locking) > 1 else 'it'} "
                            f"for the recheck, which the tool does not do; convert it by hand, or set "
                            f"decision = \"keep\" to leave the call as it is")
            if handed_back and stored_for_caller(facts, ctx):
                target = render(site.target) if site.target else ""
                # An exit right after the table is unmapped hands nothing out.
                released = [c.pos[0] for c in facts.calls_in(site.function)
                            if c.name in (api.unmap, api.unmap_unlock) and c.args
                            and None in _refs_table(c.args[0], ctx)]
                open_exits = [x for x in (e for e in after if e.kind in ("return", "exit"))
                              if not held_by(x) and not _failure_exit(lines, x.pos[0], target)
                              and not any(x.pos[0] - 3 <= r <= x.pos[0] for r in released)]
                if open_exits:
                    # scan.py asks rewriter.carry whether the pmd value can
                    # be carried to the callers that lock it; if not, review.
                    hands_out = open_exits[0].pos[0]
                    reasons.append("can return the table mapped and unlocked to a caller that may lock it")
        exposed = exposed_assignments(facts, ctx, lock_points) if recheck == "pmd_same" else ()
        stuck = [x for x in exposed if x[3] is None]
        if stuck and not question:
            review = True
            pos, lhs, rhs, _t = stuck[0]
            question = (f"{site.function}() sets {lhs} at line {pos[0]}, between the call and the lock, where "
                        f"its caller sees it; a failed recheck cannot undo that: write the whole failure body "
                        f"as on_recheck_fail and set decision = \"convert\", or decision = \"keep\"")
        return Verdict("rw", recheck, review, tuple(reasons), tuple(_dedupe(evidence)), lock_points, unlock_points,
                       basis="review" if review else basis, question=question, relocks=relocks,
                       exposed=exposed, hands_out=hands_out)
    reads = [e for e in after if e.kind in ("read", "unseen")]
    for e in reads:
        if e.kind == "read":
            evidence.append(Evidence(e.pos[0], f"{e.text}: {_line(lines, e.pos[0])}"))
    if locks:
        reasons.append("only reads entries, with or without the lock; nothing changes the table")
    else:
        reasons.append("only reads entries without taking the lock; nothing changes the table")
    return Verdict("ro", None, False, tuple(reasons), tuple(_dedupe(evidence)), basis="reads")


def _failure_exit(lines: list[str], line: int, target: str) -> bool:
    """The exit of the function's own check of a failed mapping."""
    around = " ".join(lines[max(0, line - 2):line]).replace(" ", "")
    t = target.replace(" ", "")
    return bool(t) and (f"!{t})" in around or f"{t}==NULL" in around)


def _dedupe(evidence: list[Evidence]) -> list[Evidence]:
    seen = set()
    out = []
    for e in sorted(evidence, key=lambda e: e.line):
        if (e.line, e.text) in seen:
            continue
        seen.add((e.line, e.text))
        out.append(e)
    return out


def _line(lines: list[str], n: int) -> str:
    return lines[n - 1].strip() if 0 < n <= len(lines) else ""
