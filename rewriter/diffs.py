"""Unified diffs of a conversion, parsed with unidiff before they are shown."""

from __future__ import annotations

import difflib

import unidiff

from rewriter.errors import RewriterError


def common_ends(a: list, b: list) -> tuple[int, int]:
    """How many lines a and b share at the start, and then at the end.

    The edits of a conversion sit in a few functions of a long file: the
    unchanged head and tail are matched directly, so that difflib
    (quadratic at worst) only sees the part between them."""
    head = 0
    while head < min(len(a), len(b)) and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < min(len(a), len(b)) - head and a[len(a) - 1 - tail] == b[len(b) - 1 - tail]:
        tail += 1
    return head, tail


def unified(changes: dict[str, tuple[bytes, bytes]]) -> unidiff.PatchSet:
    """One git-style diff for all changed files, in path order."""
    chunks: list[str] = []
    for path in sorted(changes):
        old, new = changes[path]
        if old == new:
            continue
        a = old.decode("utf-8", errors="surrogateescape").splitlines(keepends=True)
        b = new.decode("utf-8", errors="surrogateescape").splitlines(keepends=True)
        body = list(difflib.unified_diff(a, b, f"a/{path}", f"b/{path}", n=3))
        for i, line in enumerate(body):
            if not line.endswith("\n"):
                body[i] = line + "\n\\ No newline at end of file\n"
        chunks.append(f"diff --git a/{path} b/{path}\n")
        chunks.extend(body)
    text = "".join(chunks)
    try:
        patch = unidiff.PatchSet(text)
    except unidiff.UnidiffParseError as exc:  # would be a bug in the diff writer
        raise RewriterError(f"internal error: the generated diff does not parse ({exc})") from None
    return patch


COLOURS = {"+": "\033[32m", "-": "\033[31m", "@": "\033[36m", "d": "\033[1m"}
RESET = "\033[0m"


def render(patch: unidiff.PatchSet, colour: bool) -> str:
    text = str(patch)
    if not colour:
        return text
    out = []
    for line in text.splitlines(keepends=True):
        if line.startswith(("+++", "---", "diff ")):
            out.append(COLOURS["d"] + line.rstrip("\n") + RESET + "\n")
        elif line[:1] in ("+", "-", "@"):
            out.append(COLOURS[line[0]] + line.rstrip("\n") + RESET + "\n")
        else:
            out.append(line)
    return "".join(out)
