"""A small C lexer, for reading (never editing) C.

spatch prints expressions as space-separated tokens ("vmf -> pte"); the
analysis compares such expressions token by token.  The same lexer tells
whether a line that mentions a name is code, a comment or a macro body.
"""

from __future__ import annotations

import hashlib
import marshal
import re
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from rewriter import cache

_TOKEN = re.compile(
    r"""
    (?P<comment>/\*.*?\*/|//[^\n]*)
  | (?P<string>"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')
  | (?P<ident>[A-Za-z_]\w*)
  | (?P<number>\.?\d(?:[\w.]|[eEpP][+-])*)
  | (?P<punct>->|\+\+|--|<<=|>>=|<<|>>|<=|>=|==|!=|&&|\|\||[-+*/%&|^!=<>]=|\.\.\.|\#\#|[][(){}.,;:?~!%^&*+\-=<>/|\#])
  | (?P<newline>\n)
  | (?P<space>[ \t\r\f\v]+|\\\n)
    """,
    re.VERBOSE | re.DOTALL,
)


class Token(NamedTuple):
    # A named tuple rather than a dataclass: a kernel file has tens of
    # thousands of tokens, and a tuple is made several times faster.
    kind: str  # comment, string, ident, number, punct
    text: str
    line: int  # 1-based line where the token starts
    preproc: bool  # inside a preprocessor directive (#define ...)
    offset: int = 0  # where the token starts in the source string


# Lexing a kernel file in Python takes a tenth of a second or more, and
# every run lexes each file with a call: files this long are kept in the
# cache directory (marshal: plain data, nothing to execute when read back),
# keyed by their text and by this module's own source.
_STORED_FROM = 16384
_SELF = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()


@lru_cache(maxsize=128)
def tokens(source: str) -> tuple[Token, ...]:
    """The tokens of source.  Remembered: the scan and the rewrite read the
    same files and expressions many times over."""
    entry = (cache.entry("tokens", _SELF.encode(), source.encode("utf-8", "surrogateescape"))
             if len(source) >= _STORED_FROM else None)
    if entry is None:
        return _lex(source)
    try:
        return tuple(Token._make(t) for t in marshal.loads(entry.read_bytes()))
    except (OSError, EOFError, ValueError, TypeError):
        pass  # not there yet, or damaged: lex again
    found = _lex(source)
    cache.store(entry, marshal.dumps([tuple(t) for t in found]))
    return found


def _lex(source: str) -> tuple[Token, ...]:
    out: list[Token] = []
    append = out.append
    line = 1
    at_line_start = True
    in_directive = False
    # finditer passes over a stray byte that no token matches: it is only read.
    for m in _TOKEN.finditer(source):
        kind = m.lastgroup
        if kind == "newline":
            line += 1
            at_line_start = True
            in_directive = False
        elif kind == "space":
            text = m.group()
            if "\n" in text:
                line += text.count("\n")
        else:
            text = m.group()
            if at_line_start and text == "#":
                in_directive = True
            at_line_start = False
            append(Token(kind, text, line, in_directive, m.start()))
            if kind == "comment" and "\n" in text:
                line += text.count("\n")
    return tuple(out)


@lru_cache(maxsize=4096)
def expr_tokens(text: str) -> tuple[str, ...]:
    """The code tokens of an expression, as a tuple usable as a key."""
    return tuple(t.text for t in tokens(text) if t.kind != "comment")


def split_args(text: str | None) -> list[tuple[str, ...]]:
    """Split an argument list "a , f ( b , c ) , d" at top-level commas."""
    if not text or text == "None":
        return []
    return [tuple(a) for a in split_top(expr_tokens(text), ",")]


def split_top(texts, sep: str) -> list[list[str]]:
    """The token texts split at each sep outside brackets ("," between
    arguments, "||" between the parts of a condition)."""
    parts: list[list[str]] = [[]]
    depth = 0
    for tok in texts:
        if tok in ("(", "[", "{"):
            depth += 1
        elif tok in (")", "]", "}"):
            depth -= 1
        if tok == sep and depth == 0:
            parts.append([])
        else:
            parts[-1].append(tok)
    return parts


def find(haystack: tuple[str, ...], needle: tuple[str, ...]) -> list[int]:
    """Start indexes where needle occurs in haystack as whole tokens.

    An occurrence followed by "->" or "." is a different object (pte is not
    pte->field) only when needle itself is a member access; a plain pointer
    name followed by [ or + is still the same table.
    """
    n = len(needle)
    hits = []
    for i in range(len(haystack) - n + 1):
        if haystack[i:i + n] != needle:
            continue
        # "a -> pte" must not match inside "b -> a -> pte" or "x . a"
        if i > 0 and haystack[i - 1] in ("->", "."):
            continue
        hits.append(i)
    return hits


def mentions(haystack: tuple[str, ...], needle: tuple[str, ...]) -> bool:
    return bool(find(haystack, needle))


def in_call(haystack: tuple[str, ...], index: int) -> bool:
    """The token at index is inside the argument list of a call."""
    stack: list[bool] = []
    for j in range(index):
        tok = haystack[j]
        if tok == "(":
            stack.append(j > 0 and re.fullmatch(r"[A-Za-z_]\w*", haystack[j - 1]) is not None)
        elif tok == ")" and stack:
            stack.pop()
    return any(stack)


def outside_calls(haystack: tuple[str, ...], needle: tuple[str, ...]) -> bool:
    """needle occurs in haystack other than as (part of) a call's argument.

    "pte + i" and "(pte_t *) pte" carry the table; "ptep_get ( pte )" is a
    value read from it.
    """
    return any(not in_call(haystack, i) for i in find(haystack, needle))


def ref_fields(arg: tuple[str, ...], base: tuple[str, ...]) -> set[str | None]:
    """How arg refers to base: None for base itself (or pointer arithmetic
    on it), a field name for base->field / base.field."""
    found: set[str | None] = set()
    for i in find(arg, base):
        after = arg[i + len(base):i + len(base) + 2]
        if len(after) == 2 and after[0] in ("->", "."):
            found.add(after[1])
        elif not in_call(arg, i):
            found.add(None)
    return found


def render(toks: tuple[str, ...]) -> str:
    """Tokens back to kernel-style text: "vmf->pte", "&ptl", "pte + i"."""
    out = ""
    prev = ""
    for i, tok in enumerate(toks):
        glue = False
        if not out:
            glue = True
        elif tok in ("->", ".", ")", "]", ",", ";", "++", "--") and not (tok in ("++", "--") and prev in ("(", ",")):
            glue = True
        elif prev in ("->", ".", "(", "[", "!", "~"):
            glue = True
        elif prev in ("&", "*", "-") and (i < 2 or toks[i - 2] in ("(", ",", "=", "return", "!", "&&", "||", "?", ":")):
            glue = True  # unary
        elif tok in ("(", "[") and re.fullmatch(r"[A-Za-z_]\w*|\)|\]", prev) and prev not in ("if", "for", "while", "switch", "return", "sizeof"):
            glue = True
        if tok == "," or prev == ",":
            out += tok if tok == "," else " " + tok
        else:
            out += tok if glue else " " + tok
        prev = tok
    return out


def keep_functions(source: str, keep: set[str]) -> str:
    """source with the bodies of all other function definitions blanked.

    Lines and columns stay where they were, so positions found in the
    result are positions in source.  Used to let a path query look only at
    the functions it is about.
    """
    # Every body blanked (once per file), with the bodies kept put back:
    # blanking keeps the length, so the offsets of the two texts agree.
    toks = tokens(source)
    blank = _all_bodies_blanked(source)
    parts = []
    done = 0
    for name, open_brace, close in _definitions_of(source):
        if name in keep:
            first, last = toks[open_brace].offset + 1, toks[close].offset
            parts += [blank[done:first], source[first:last]]
            done = last
    parts.append(blank[done:])
    return "".join(parts)


@lru_cache(maxsize=32)
def _all_bodies_blanked(source: str) -> str:
    """source with everything strictly between the braces of each function
    body made spaces, newlines kept."""
    toks = tokens(source)
    parts = []
    done = 0
    for _name, open_brace, close in _definitions_of(source):
        first, last = toks[open_brace].offset + 1, toks[close].offset
        parts += [source[done:first], _NOT_NEWLINE.sub(" ", source[first:last])]
        done = last
    parts.append(source[done:])
    return "".join(parts)


def function_spans(source: str, names: set[str]) -> list[tuple[int, int]]:
    """The lines (first, last) of the bodies of the functions named, from
    the line of "{" to the line of "}"."""
    toks = tokens(source)
    return [(toks[o].line, toks[c].line) for name, o, c in _definitions_of(source) if name in names]


def definition_spans(source: str, names: set[str]) -> list[tuple[int, int]]:
    """The lines (first, last) of the definitions of the functions named,
    from the first line of their declaration (its return type; comments
    before it are not part of it) to the line of "}"."""
    toks = tokens(source)
    out = []
    for name, open_brace, close in _definitions_of(source):
        if name not in names:
            continue
        k = open_brace
        while k > 0 and toks[k - 1].text not in (";", "}") and not toks[k - 1].preproc:
            k -= 1
        while toks[k].kind == "comment":
            k += 1
        out.append((toks[k].line, toks[close].line))
    return out


@lru_cache(maxsize=128)
def body_names(source: str) -> dict[str | None, frozenset[str]]:
    """{function: the identifiers its body names} for each function defined
    in source (all its definitions together).  Remembered, and so shared:
    do not change it."""
    toks = tokens(source)
    named: dict[str | None, set[str]] = {}
    for fn, open_brace, close in _definitions_of(source):
        named.setdefault(fn, set()).update(t.text for t in toks[open_brace:close] if t.kind == "ident")
    return {fn: frozenset(idents) for fn, idents in named.items()}


def functions_reaching(source: str, name: str) -> set[str]:
    """The functions defined in source whose bodies name `name`, and every
    function defined in source that those name, and so on: all that an
    analysis of those bodies can follow a call (or a pointer) into."""
    named = body_names(source)
    todo = [fn for fn, idents in named.items() if name in idents]
    seen = set(todo)
    while todo:
        for callee in named[todo.pop()] & named.keys():
            if callee not in seen:
                seen.add(callee)
                todo.append(callee)
    return seen


@lru_cache(maxsize=128)
def _definitions_of(source: str) -> tuple[tuple[str | None, int, int], ...]:
    """_definitions() of source's tokens, remembered: the scan asks for the
    functions of the same file once for each function it narrows it to."""
    return tuple(_definitions(tokens(source)))


_NOT_NEWLINE = re.compile(r"[^\n]")


def _definitions(toks: tuple[Token, ...]) -> list[tuple[str | None, int, int]]:
    """(name, index of "{", index of "}") of each function definition."""
    out = []
    depth = 0
    i = 0
    n = len(toks)
    while i < n:
        t = toks[i]
        if t.kind == "punct" and not t.preproc and t.text == "{":
            if depth == 0 and i > 0 and toks[i - 1].text == ")":
                close = _closing_brace(toks, i)
                if close is not None:
                    out.append((_definition_name(toks, i - 1), i, close))
                    i = close + 1
                    continue
            depth += 1
        elif t.kind == "punct" and not t.preproc and t.text == "}":
            depth -= 1
        i += 1
    return out


def _definition_name(toks, close_paren: int) -> str | None:
    """The name of the function whose parameter list (or last annotation)
    closes at close_paren.  Annotations with arguments may come between the
    parameters and the body ("__acquires(ptl1) __acquires(ptl2) {"): each
    "ident ( ... )" right after another ")" is one, so the name is the one
    before the first group of the run."""
    j = close_paren
    while True:
        depth = 0
        k = j
        while k >= 0:
            if toks[k].text == ")":
                depth += 1
            elif toks[k].text == "(":
                depth -= 1
                if depth == 0:
                    break
            k -= 1
        if k < 1 or toks[k - 1].kind != "ident":
            return None
        if k >= 2 and toks[k - 2].text == ")":
            j = k - 2  # toks[k - 1] was an annotation: go on to the group before it
            continue
        return toks[k - 1].text


def _closing_brace(toks: list[Token], open_brace: int) -> int | None:
    depth = 0
    for j in range(open_brace, len(toks)):
        if toks[j].preproc or toks[j].kind != "punct":
            continue
        if toks[j].text == "{":
            depth += 1
        elif toks[j].text == "}":
            depth -= 1
            if depth == 0:
                return j
    return None


def defines_static(source: str, name: str) -> bool:
    """A definition of name in source is declared static."""
    toks = tokens(source)
    for fn, open_brace, _close in _definitions_of(source):
        if fn != name:
            continue
        # the declaration's words, back to the end of the one before
        k = open_brace
        while k > 0 and toks[k - 1].text not in (";", "}") and not toks[k - 1].preproc:
            k -= 1
            if toks[k].text == "static":
                return True
    return False


def closing(toks, i: int) -> int | None:
    """Index of the bracket that closes the one at toks[i] (any of ( [ {)."""
    depth = 0
    for j in range(i, len(toks)):
        if toks[j].text in ("(", "[", "{"):
            depth += 1
        elif toks[j].text in (")", "]", "}"):
            depth -= 1
            if depth == 0:
                return j
    return None


def column(source: str, token: Token) -> int:
    """The token's column as spatch counts it (from 0; a tab is one)."""
    return token.offset - (source.rfind("\n", 0, token.offset) + 1)
