"""A small C lexer, for reading (never editing) C.

spatch prints expressions as space-separated tokens ("vmf -> pte"); the
analysis compares such expressions token by token.  The same lexer tells
whether a line that mentions a name is code, a comment or a macro body.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Token:
    kind: str  # comment, string, ident, number, punct
    text: str
    line: int  # 1-based line where the token starts
    preproc: bool  # inside a preprocessor directive (#define ...)
    offset: int = 0  # where the token starts in the source string


def tokens(source: str) -> list[Token]:
    out: list[Token] = []
    line = 1
    pos = 0
    at_line_start = True
    in_directive = False
    while pos < len(source):
        m = _TOKEN.match(source, pos)
        if m is None:  # a stray byte: keep going, it is only read
            pos += 1
            continue
        kind = m.lastgroup
        text = m.group()
        if kind == "newline":
            line += 1
            at_line_start = True
            in_directive = False
        elif kind == "space":
            line += text.count("\n")
        else:
            if at_line_start and text == "#":
                in_directive = True
            at_line_start = False
            out.append(Token(kind, text, line, in_directive, m.start()))
            if kind == "comment":
                line += text.count("\n")
        pos = m.end()
    return out


def expr_tokens(text: str) -> tuple[str, ...]:
    """The code tokens of an expression, as a tuple usable as a key."""
    return tuple(t.text for t in tokens(text) if t.kind != "comment")


def split_args(text: str | None) -> list[tuple[str, ...]]:
    """Split an argument list "a , f ( b , c ) , d" at top-level commas."""
    if not text or text == "None":
        return []
    args: list[list[str]] = [[]]
    depth = 0
    for tok in expr_tokens(text):
        if tok in "([{":
            depth += 1
        elif tok in ")]}":
            depth -= 1
        if tok == "," and depth == 0:
            args.append([])
        else:
            args[-1].append(tok)
    return [tuple(a) for a in args]


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
    toks = tokens(source)
    out = list(source)
    depth = 0
    i = 0
    n = len(toks)
    while i < n:
        t = toks[i]
        if t.kind == "punct" and not t.preproc and t.text == "{":
            if depth == 0 and i > 0 and toks[i - 1].text == ")":
                name = _definition_name(toks, i - 1)
                close = _closing_brace(toks, i)
                if name not in keep and close is not None:
                    _blank(source, out, toks[i], toks[close])
                    i = close + 1
                    continue
            depth += 1
        elif t.kind == "punct" and not t.preproc and t.text == "}":
            depth -= 1
        i += 1
    return "".join(out)


def _definition_name(toks: list[Token], close_paren: int) -> str | None:
    depth = 0
    for j in range(close_paren, -1, -1):
        if toks[j].text == ")":
            depth += 1
        elif toks[j].text == "(":
            depth -= 1
            if depth == 0:
                return toks[j - 1].text if j > 0 and toks[j - 1].kind == "ident" else None
    return None


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


def _blank(source: str, out: list[str], first: Token, last: Token) -> None:
    """Blank everything strictly between two brace tokens, keeping newlines."""
    for k in range(first.offset + 1, last.offset):
        if out[k] != "\n":
            out[k] = " "
