"""Carry the pmd value to the callers that lock a handed-out table.

A function may map the table, keep it where its caller sees it
(pvmw->pte) and hand back the lock pointer through a parameter
(spinlock_t **ptlp), returning on some path with the table mapped and the
lock not taken; its caller may take that lock later and change the table
(page_vma_mapped_walk() after map_pte()).  That lock site needs a recheck
of its own, so the pmd value goes to the caller as a kernel developer
would pass it: a "pmd_t *pmdvalp" parameter before the lock parameter,
filled by the may-write call, and a pmd_t local in the caller.

This module finds, from the C tokens of the file, what that takes:
the callers (the function must be static: callers elsewhere are not
seen), each call's lock argument (&local), the lock sites on that local
(also through "member = local; spin_lock(member)"), and what the caller
does when the mapping failed ("if (!fn(...)) { if (!table) ACTION ... }").
Anything else gives a question for review instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from rewriter.recipe import Knowledge
from rewriter.clex import _definitions_of, closing, column, defines_static, render, split_top, tokens


@dataclass(frozen=True)
class CallerLock:
    """One lock site in a caller, and what its recheck needs."""

    function: str  # the caller
    call: tuple[int, int]  # the call of the handing-out function
    call_args: tuple[str, ...]  # its arguments, as written
    lock: tuple[int, int]  # the lock call, a statement of its own
    lock_expr: str  # what the lock call takes as written (pvmw->ptl)
    local: str  # the caller's lock pointer local (ptl)
    moved: tuple[tuple[int, int], str, str] | None  # (pos, lhs, rhs) of "lhs = local;" before the lock
    pmd: str  # the pmd expression in the caller's terms
    table: str  # where the caller sees the table (pvmw->pte)
    action: str  # what the caller does when the mapping failed


@dataclass(frozen=True)
class Carry:
    function: str  # the function with the call, which gets the parameter
    param_index: int  # the lock parameter's index: pmdvalp goes before it
    lock_param: str
    sites: tuple[CallerLock, ...]


def plan(text: str, function: str, params: dict[int, tuple[str, str]], ptlp: tuple[str, ...],
         pmd: tuple[str, ...], table: tuple[str, ...], api: Knowledge) -> Carry | str:
    """The carry for function, or a question saying why it cannot be made."""
    names = {name: i for i, (name, _t) in params.items()}
    if len(ptlp) != 1 or ptlp[0] not in names:
        return (f"{function}() hands its lock out through {render(ptlp)}, not through a parameter of its own, "
                f"so the tool cannot carry the pmd value to the caller that takes it")
    k = names[ptlp[0]]
    toks = [t for t in tokens(text) if t.kind != "comment"]
    defs = _definitions_of(text)
    all_toks = tokens(text)
    if not defines_static(text, function):
        return (f"{function}() is not static, so callers in other files may take the lock it hands out; "
                f"the tool carries the pmd value only to callers in the same file")
    bodies = [(name, all_toks[o].offset, all_toks[c].offset) for name, o, c in defs]
    for i, t in enumerate(toks):
        if t.text == function and not any(a < t.offset < b for _n, a, b in bodies) and i + 1 < len(toks) \
                and toks[i + 1].text == "(" and toks[_match(toks, i + 1) + 1].text == ";":
            return (f"{function}() has a prototype at line {t.line}; the tool adds the pmdvalp parameter "
                    f"only to a definition")
    sites: list[CallerLock] = []
    for i, t in enumerate(toks):
        if t.kind != "ident" or t.text != function or t.preproc:
            continue
        owner = next((name for name, a, b in bodies if a < t.offset < b), None)
        if owner is None or owner == function:
            continue
        if i + 1 >= len(toks) or toks[i + 1].text != "(":
            return f"{function}() is used as a value in {owner}(), so not every caller can be followed"
        close = _match(toks, i + 1)
        args = _split_args(toks[i + 2:close])
        if k >= len(args) or len(args[k]) != 2 or args[k][0] != "&":
            return (f"{owner}() passes {render(tuple(args[k])) if k < len(args) else 'nothing'} as the lock "
                    f"pointer of {function}(); the tool carries the pmd value only to a local passed as &local")
        local = args[k][1]
        subst = {params[j][0]: tuple(a) for j, a in enumerate(args) if j in params}
        c_pmd = render(_substitute(pmd, subst))
        c_table = render(_substitute(table, subst))
        if any(p in (c_pmd + " " + c_table).split() for p in names if p not in subst):
            return f"the pmd of {function}() is not visible in {owner}()"
        body = next((a, b) for name, a, b in bodies if name == owner)
        action = _failure_action(toks, i, body, c_table)
        if action is None:
            return (f"{owner}() does not say what it does when {function}() fails with "
                    f"'if (!{c_table})', so the action for a changed pmd there is unknown")
        for lock in _lock_sites(text, toks, body, local, api):
            sites.append(CallerLock(owner, _pos(text, t), tuple(render(tuple(a)) for a in args), *lock,
                                    pmd=c_pmd, table=c_table, action=action))
    if not sites:
        return f"no caller of {function}() in this file takes the lock it hands out"
    for s in sites:
        if s.lock == (0, 0):
            return (f"{s.function}() takes the lock of {function}() inside a condition; the tool places a "
                    f"recheck only after a lock statement")
    return Carry(function, k, ptlp[0], tuple(sites))


def _pos(text: str, t) -> tuple[int, int]:
    return (t.line, column(text, t))


def _match(toks, i: int) -> int:
    found = closing(toks, i)
    return len(toks) - 1 if found is None else found


def _split_args(toks) -> list[list[str]]:
    return split_top([t.text for t in toks], ",")


def _substitute(expr: tuple[str, ...], subst: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    out: list[str] = []
    for i, x in enumerate(expr):
        if x in subst and (i == 0 or expr[i - 1] not in (".", "->")):
            value = subst[x]
            out.extend(value if len(value) == 1 else ("(", *value, ")"))
        else:
            out.append(x)
    return tuple(out)


def _failure_action(toks, call: int, body: tuple[int, int], table: str) -> str | None:
    """In "if (!fn(...)) { if (!TABLE) ACTION ... }", ACTION."""
    if call < 3 or toks[call - 1].text != "!" or toks[call - 2].text != "(" or toks[call - 3].text != "if":
        return None
    cond_close = _match(toks, call - 2)
    if toks[cond_close + 1].text != "{":
        return None
    block_end = _match(toks, cond_close + 1)
    want = [t.text for t in tokens(table)]
    j = cond_close + 2
    while j < block_end:
        if toks[j].text == "if" and toks[j + 1].text == "(" and toks[j + 2].text == "!":
            close = _match(toks, j + 1)
            if [t.text for t in toks[j + 3:close]] == want:
                end = close + 1
                while end < block_end and toks[end].text != ";":
                    end += 1
                words = [t.text for t in toks[close + 1:end + 1]]
                if words and words[0] in ("goto", "return"):
                    return render(tuple(words))
        j += 1
    return None


def _lock_sites(text: str, toks, body: tuple[int, int], local: str, api: Knowledge):
    """(lock pos, lock expr, local, moved) for each lock call on local, or
    on a member assigned from it just before ("m = local; spin_lock(m);")."""
    a, b = body
    inside = [i for i, t in enumerate(toks) if a < t.offset < b]
    if not inside:
        return
    first, last = inside[0], inside[-1]
    text_of = lambda i, j: [t.text for t in toks[i:j]]  # noqa: E731
    for i in range(first, last):
        t = toks[i]
        if t.kind != "ident" or t.text not in api.lockers or toks[i + 1].text != "(":
            continue
        close = _match(toks, i + 1)
        arg = _split_args(toks[i + 2:close])[api.lockers[t.text]]
        statement = toks[i - 1].text in (";", "{", "}", ":") and toks[close + 1].text == ";"
        pos = _pos(text, toks[i])
        if arg == [local]:
            yield ((pos if statement else (0, 0)), local, local, None)
            continue
        # "arg = local;" as the statement right before the lock
        k = i - 1
        if toks[k].text != ";":
            continue
        start = k - 1
        while start > first and toks[start - 1].text not in (";", "{", "}"):
            start -= 1
        words = text_of(start, k)
        if words[:len(arg)] == arg and words[len(arg):] == ["=", local]:
            moved = (_pos(text, toks[start]), render(tuple(arg)), local)
            yield ((pos if statement else (0, 0)), render(tuple(arg)), local, moved)

