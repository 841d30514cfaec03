"""Which pte_same() checks can tell that the table changed.

A pte_same() check after taking the lock compares the entry as it is now
with an entry read earlier.  It detects a table that was freed and replaced
only when that earlier entry cannot be none: an empty table put in the
place of another empty table compares equal.  The entry cannot be none when,
between the call and the check, the function has left on a test that
catches a none entry: "if (pte_none(e)) return/goto ...", or
"if (!pte_present(e)) ...".  A test that leaves when the entry is NOT none
("if (!pte_none(e)) goto out") proves the opposite.

The test must enclose the check structurally: it stands in a block that
also holds the check (or the call of the helper that checks), after the
call and before the check.  That is dominance for structured code; a goto
that jumps past the test into that block would defeat it, and is not looked
for.
"""

from __future__ import annotations

from dataclasses import dataclass

from rewriter.recipe import Knowledge
from rewriter.clex import closing, split_top, tokens

Pos = tuple[int, int]


@dataclass(frozen=True)
class Exit:
    """An if statement whose branch leaves the function, testing an entry."""

    line: int
    entry: tuple[str, ...]  # the tested expression, as tokens
    proves: str  # "not_none" (after it the entry is not none) or "none"
    block: tuple[int, int]  # the lines of the { } block holding the if


def exits(source: str, first_line: int, last_line: int, api: Knowledge) -> list[Exit]:
    """The leaving tests of entries in the lines first..last of source."""
    toks = [t for t in tokens(source) if not t.preproc and t.kind != "comment"]
    out = []
    blocks = _blocks(toks)
    for i, t in enumerate(toks):
        if t.text != "if" or not first_line <= t.line <= last_line:
            continue
        if i + 1 >= len(toks) or toks[i + 1].text != "(":
            continue
        close = closing(toks, i + 1)
        if close is None:
            continue
        cond = [x.text for x in toks[i + 2:close]]
        branch_end = _statement_end(toks, close + 1)
        if branch_end is None or not _leaves(toks, close + 1, branch_end):
            continue
        a, b = max((b for b in blocks if b[0] < i < b[1]), key=lambda b: b[0], default=(0, len(toks) - 1))
        for entry, proves in _tests(cond, api):
            out.append(Exit(t.line, entry, proves, (toks[a].line, toks[b].line)))
    return out


def encloses(ex: Exit, line: int) -> bool:
    """The block that holds the test also holds line, after the test."""
    first, last = ex.block
    return first <= line <= last and line > ex.line


def _tests(cond: list[str], api: Knowledge) -> list[tuple[tuple[str, ...], str]]:
    """(entry, what leaving on this condition proves of it after the if)."""
    cond = _strip(cond)
    out = []
    for part in split_top(cond, "||"):
        part = _strip(part)
        negated = False
        while part[:1] == ["!"]:
            negated = not negated
            part = _strip(part[1:])
        if len(part) < 4 or part[1] != "(" or part[-1] != ")":
            continue
        name, arg = part[0], tuple(part[2:-1])
        if name in api.none_if_true:
            out.append((arg, "none" if negated else "not_none"))
        elif name in api.not_none_if_true and negated:
            out.append((arg, "not_none"))
    if len(split_top(cond, "||")) > 1:
        # leaving when any part holds: a part that proves "none" proves nothing
        out = [(e, p) for e, p in out if p == "not_none"]
    return out


def _strip(toks: list[str]) -> list[str]:
    """Drop likely()/unlikely() and parentheses around the whole."""
    while True:
        if len(toks) >= 3 and toks[0] in ("likely", "unlikely") and toks[1] == "(" and toks[-1] == ")" \
                and _closing(toks, 1) == len(toks) - 1:
            toks = toks[2:-1]
        elif len(toks) >= 2 and toks[0] == "(" and _closing(toks, 0) == len(toks) - 1:
            toks = toks[1:-1]
        else:
            return toks


def _closing(toks: list[str], i: int) -> int | None:
    depth = 0
    for j in range(i, len(toks)):
        if toks[j] == "(":
            depth += 1
        elif toks[j] == ")":
            depth -= 1
            if depth == 0:
                return j
    return None


def _statement_end(toks, i: int) -> int | None:
    """Index of the last token of the statement starting at i."""
    if i >= len(toks):
        return None
    if toks[i].text == "{":
        return closing(toks, i)
    depth = 0
    for j in range(i, len(toks)):
        if toks[j].text in ("(", "["):
            depth += 1
        elif toks[j].text in (")", "]"):
            depth -= 1
        elif toks[j].text == ";" and depth == 0:
            return j
        elif toks[j].text == "{" and depth == 0:
            return None  # a nested compound statement: not followed
    return None


def _leaves(toks, start: int, end: int) -> bool:
    """The statement start..end ends in return or goto."""
    if toks[start].text == "{":
        inner_end = end - 1  # the last token before "}"
        if inner_end <= start or toks[inner_end].text != ";":
            return False
        # the start of the last statement: after the previous ; { or } at depth 0
        depth = 0
        k = inner_end - 1
        while k > start:
            x = toks[k].text
            if x in (")", "]"):
                depth += 1
            elif x in ("(", "["):
                depth -= 1
            elif depth == 0 and x in (";", "{", "}"):
                break
            k -= 1
        return toks[k + 1].text in ("return", "goto")
    return toks[start].text in ("return", "goto")


def _blocks(toks) -> list[tuple[int, int]]:
    out = []
    stack = []
    for i, t in enumerate(toks):
        if t.text == "{":
            stack.append(i)
        elif t.text == "}" and stack:
            out.append((stack.pop(), i))
    return out
