"""The two functions that replace pte_offset_map_nolock().

introduce() adds them next to the old function, in the three files that
define and document it:

* include/linux/mm.h: their prototypes, right after the old prototype;
* mm/pgtable-generic.c: their definitions, right after the old definition,
  and a paragraph for each in the block comment that explains the old one;
* Documentation/mm/split_page_table_lock.rst: an entry for each, right after
  the old entry.

remove() takes the old function out again once no caller is left.

The C is changed by the semantic patches cocci/introduce.cocci.j2 and
cocci/remove.cocci.j2, each run in two steps: "find" reports where the old
function is (and, for introduce, its parameter names and body), "apply"
changes exactly those places.  The C of the new functions comes from the
templates in templates/helpers/.  When spatch removes a top-level item it
also takes the blank line or the comment in front of it; remove() puts
that back (see _keep_layout_before), after checking that spatch cut out
the item and nothing else.  The comment paragraphs and the documentation
entries are prose, so they are edited here as text, line by line, and
nothing else in those files is touched.

Both functions are pure: they take file contents and return new contents
(tree-relative path -> bytes); spatch works on copies in a scratch
directory, and nothing in the tree is written.
"""

from __future__ import annotations

import difflib
import re
import threading
from dataclasses import dataclass

from rewriter import cocci
from rewriter import text as templates
from rewriter.errors import InputError, RewriterError
from rewriter.runner import FileResult, Runner
from rewriter.tree import Tree

OLD = "pte_offset_map_nolock"
HEADER = "include/linux/mm.h"
SOURCE = "mm/pgtable-generic.c"
DOC = "Documentation/mm/split_page_table_lock.rst"
FILES = (HEADER, SOURCE, DOC)
C_FILES = (HEADER, SOURCE)

FIND = "@@REWRITER-HELPERS@@"
PMDVALP = "pmdvalp"  # the parameter the may-write variant adds
PARAMS = ("mm", "pmd", "addr", "ptlp")  # as the templates call the old parameters
BASE_TYPEDEFS = ("pmd_t", "pte_t", "spinlock_t")
MAX_COLUMNS = 100  # no added line may be longer than this
COMMENT_WIDTH = (72, 80)  # prose is wrapped to its comment's width, within these bounds


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TYPEDEF_NAME = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*_t\b")


@dataclass(frozen=True)
class Names:
    """The full names of the read-only and of the may-write variant."""

    readonly: str
    maywrite: str

    @classmethod
    def parse(cls, text: str) -> Names:
        """'A,B' -> pte_offset_map_A_nolock, pte_offset_map_B_nolock."""
        hint = "give two different words separated by a comma, such as 'readonly,maywrite' or 'ro,rw'"
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 2 or not all(parts):
            raise InputError(f"names {text!r}: {hint}")
        full = [f"pte_offset_map_{word}_nolock" for word in parts]
        for word, name in zip(parts, full):
            if not _IDENTIFIER.fullmatch(name):
                raise InputError(f"names {text!r}: {name!r} is not a C identifier; "
                                 f"use only letters, digits and '_' in {word!r}")
        if full[0] == full[1]:
            raise InputError(f"names {text!r}: both functions would be called {full[0]}; {hint}")
        return cls(*full)


DEFAULT_NAMES = Names("pte_offset_map_readonly_nolock", "pte_offset_map_maywrite_nolock")


def check_names_free(tree: Tree, names: Names) -> None:
    """Refuse names that the tree already uses, at the tree's revision."""
    for name in (names.readonly, names.maywrite):
        hits = tree.grep_lines(name)
        if hits:
            path, line, _text = hits[0]
            more = f" and {len(hits) - 1} more lines" if len(hits) > 1 else ""
            raise InputError(f"{name} already occurs in {tree.path} at {tree.rev[:12]} "
                             f"({path}:{line}{more}); choose other names with --names")


# --------------------------------------------------------------------------
# introduce
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class _Old:
    """Where the old function is, as the find step of introduce.cocci saw it."""

    prototype_line: int  # in HEADER
    definition_line: int  # in SOURCE
    params: dict[str, str]  # template name -> parameter name in the tree
    body: str  # the lines between the braces of the definition


def introduce(tree: Tree, runner: Runner, names: Names, old: str = OLD) -> dict[str, bytes]:
    """The new contents of the files that get the two new functions.

    The originals are read from tree at its revision; the result maps each
    changed tree-relative path to its new bytes.  Names that the tree
    already uses are refused (check_names_free).
    """
    runner.check_spatch()
    check_names_free(tree, names)
    files = {path: _read(tree, path) for path in FILES}
    found = _find_old(runner, files, old)
    values = dict(found.params, pmdvalp=PMDVALP)
    c_text = {
        "readonly_prototype": _render("helpers/readonly.c.j2", name=names.readonly, prototype=True, **values),
        "maywrite_prototype": _render("helpers/maywrite.c.j2", name=names.maywrite, prototype=True, **values),
        "readonly_definition": _render("helpers/readonly.c.j2", name=names.readonly, prototype=False,
                                       body=found.body, **values),
        "maywrite_definition": _render("helpers/maywrite.c.j2", name=names.maywrite, prototype=False, **values),
    }
    typedefs = set(BASE_TYPEDEFS) | set(_TYPEDEF_NAME.findall(found.body))
    rule = cocci.render("introduce.cocci.j2", step="apply", old=old,
                        readonly=names.readonly, maywrite=names.maywrite,
                        prototypes=repr({(HEADER, found.prototype_line)}),
                        definitions=repr({(SOURCE, found.definition_line)}),
                        typedefs=sorted(typedefs), **c_text)
    out = _transform(runner, rule, files, "introduce")
    block = "{\n" + found.body + "\n}\n"
    if _text(out[SOURCE]).count(block) != _text(files[SOURCE]).count(block) + 1:
        raise RewriterError(f"{SOURCE}: spatch changed the layout of the body of {old}() when it copied it "
                            f"into {names.readonly}(); the definition needs to be added by hand")
    for path in C_FILES:
        _check_added_lines(path, files[path], out[path])

    comment = _render("helpers/comment.txt.j2", readonly=names.readonly, maywrite=names.maywrite, **values)
    out[SOURCE] = _add_paragraphs(SOURCE, out[SOURCE], old, comment.split("\n\n"))
    entries = _render("helpers/doc.rst.j2", readonly=names.readonly, maywrite=names.maywrite, **values)
    out[DOC] = _add_doc_entries(DOC, files[DOC], old, entries)
    return out


def _find_old(runner: Runner, files: dict[str, bytes], old: str) -> _Old:
    rule = cocci.render("introduce.cocci.j2", step="find", old=old, marker=FIND)
    results = runner.run(rule, {path: files[path] for path in C_FILES}, FIND, step="find")
    records: dict[str, list[dict]] = {}
    for res in results:
        if res.error:
            raise RewriterError(f"{res.path}: {res.error}")
        records[res.path] = list(res.records)

    prototypes = sorted({r["line"] for r in records[HEADER] if r["kind"] == "prototype"})
    if not prototypes:
        raise InputError(f"{HEADER}: no prototype of {old}(); the new prototypes go right after it")
    if len(prototypes) > 1:
        raise InputError(f"{HEADER}: {len(prototypes)} prototypes of {old}() (lines "
                         f"{', '.join(map(str, prototypes))}); expected one")

    # "other" is any definition of the name, whatever its parameters.
    others = sorted({r["line"] for r in records[SOURCE] if r["kind"] == "other"})
    if not others:
        raise InputError(f"{SOURCE}: no definition of {old}(); the new definitions go right after it")
    if len(others) > 1:
        raise InputError(f"{SOURCE}: {len(others)} definitions of {old}() (lines "
                         f"{', '.join(map(str, others))}); expected one")
    definitions = [r for r in records[SOURCE] if r["kind"] == "definition"]
    if not definitions:
        raise InputError(f"{SOURCE}:{others[0]}: {old}() does not take (struct mm_struct *, pmd_t *, "
                         f"unsigned long, spinlock_t **), which the new functions are written for")
    rec = definitions[0]
    line = rec["line"]
    body = _body(_text(files[SOURCE]), rec["open"], rec["close"], line, old)
    return _Old(prototypes[0], line, dict(zip(PARAMS, rec["params"])), body)


def _body(text: str, open_pos: list[int], close_pos: list[int], line: int, old: str) -> str:
    """The lines strictly between the braces, which must be on lines of their own."""
    lines = text.split("\n")
    (open_line, open_col), (close_line, close_col) = open_pos, close_pos
    if (lines[open_line - 1][open_col + 1:].strip() or lines[close_line - 1][:close_col].strip()
            or close_line - open_line < 2):
        raise InputError(f"{SOURCE}:{line}: the braces of {old}() are not on lines of their own, "
                         f"as the kernel style has them; lay the function out that way first")
    return "\n".join(lines[open_line:close_line - 1])


def _check_added_lines(path: str, before: bytes, after: bytes) -> None:
    """spatch only added lines, with no trailing white space, none overlong."""
    for n, line in _added_lines(path, _text(before), _text(after)):
        if line != line.rstrip():
            raise RewriterError(f"{path}:{n}: spatch left white space at the end of an added line")
        if len(line.expandtabs()) > MAX_COLUMNS:
            raise InputError(f"{path}:{n}: an added line is {len(line.expandtabs())} columns wide "
                             f"(at most {MAX_COLUMNS}); choose shorter names with --names")


def _added_lines(path: str, before: str, after: str) -> list[tuple[int, str]]:
    a, b = before.split("\n"), after.split("\n")
    added = []
    for tag, i1, _i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag in ("delete", "replace"):
            raise RewriterError(f"{path}:{i1 + 1}: spatch changed a line that was to stay as it is")
        if tag == "insert":
            added.extend((j + 1, b[j]) for j in range(j1, j2))
    return added


# --------------------------------------------------------------------------
# remove
# --------------------------------------------------------------------------

class Beside:
    """introduce() and then remove() in a thread of their own, while the
    calls are converted: they need nothing of that.  result() gives
    (introduced, removed) or raises what they raised; wait() only joins,
    for a caller that fails first."""

    def __init__(self, tree: Tree, runner: Runner, names: Names, old: str = OLD):
        self._tree = tree
        self._done: list[dict[str, bytes]] = []
        self._failure: list[BaseException] = []

        def work() -> None:
            try:
                introduced = introduce(self._tree, runner, names, old=old)
                self._done[:] = [introduced, remove(introduced, runner, names, old=old)]
            except BaseException as exc:  # raised again in the caller's thread
                self._failure.append(exc)

        self._worker = threading.Thread(target=work, name="rewriter-helpers", daemon=True)
        self._worker.start()

    def wait(self) -> None:
        """Join the thread even when an interrupt comes meanwhile, and raise
        the interrupt once it has stopped: a daemon thread is stopped dead
        when the command exits, and would leave its scratch directory in
        TMPDIR."""
        interrupted: KeyboardInterrupt | None = None
        while True:
            try:
                self._worker.join()
                break
            except KeyboardInterrupt as exc:
                interrupted = exc
        if interrupted is not None:
            raise interrupted

    def result(self) -> tuple[dict[str, bytes], dict[str, bytes]]:
        self.wait()
        if self._failure:
            raise self._failure[0]
        introduced, removed = self._done
        return introduced, removed


def remove(files: dict[str, bytes], runner: Runner, names: Names, old: str = OLD) -> dict[str, bytes]:
    """Take the old function out of files, the contents after introduce().

    Removes its prototype, its definition, its paragraph of the block
    comment and its documentation entry; every other byte stays.
    """
    missing = [path for path in FILES if path not in files]
    if missing:
        raise InputError(f"cannot remove {old}() without {', '.join(missing)}")
    for path in FILES:
        for name in (names.readonly, names.maywrite):
            if not re.search(rf"\b{re.escape(name)}\b", _text(files[path])):
                raise InputError(f"{path}: {name} is not there yet; introduce the new functions "
                                 f"before removing {old}()")
    runner.check_spatch()
    spans = _find_removals(runner, files, old)
    rule = cocci.render("remove.cocci.j2", step="apply", old=old,
                        prototypes=repr({(HEADER, *spans[HEADER].at)}),
                        definitions=repr({(SOURCE, *spans[SOURCE].at)}))
    out = _transform(runner, rule, files, "remove")
    for path, span in spans.items():
        out[path] = _keep_layout_before(path, files[path], out[path], span, old)
    out[SOURCE] = _remove_paragraph(SOURCE, out[SOURCE], old)
    out[DOC] = _remove_doc_entry(DOC, files[DOC], old)
    word = re.compile(rf"\b{re.escape(old)}\b")
    for path in FILES:
        for n, line in enumerate(_text(out[path]).split("\n"), 1):
            if word.search(line):
                raise InputError(f"{path}:{n}: {old} is still named after removing it; "
                                 f"convert what uses it first")
    return out


@dataclass(frozen=True)
class _Span:
    """One top-level item that remove.cocci takes out."""

    kind: str  # prototype or definition
    at: tuple[int, int]  # line and column of the position the apply step checks
    start: tuple[int, int]  # line (from 1) and column (from 0) of its first character
    end: tuple[int, int]  # line and column just after its last character


def _find_removals(runner: Runner, files: dict[str, bytes], old: str) -> dict[str, _Span]:
    rule = cocci.render("remove.cocci.j2", step="find", old=old, marker=FIND)
    results = runner.run(rule, {path: files[path] for path in C_FILES}, FIND, step="find")
    found: dict[str, set[_Span]] = {path: set() for path in C_FILES}
    for res in results:
        if res.error:
            raise RewriterError(f"{res.path}: {res.error}")
        for r in res.records:
            found[res.path].add(_Span(r["kind"], (r["line"], r["col"]), tuple(r["start"]), tuple(r["end"])))
    spans = {}
    for path, kind in ((HEADER, "prototype"), (SOURCE, "definition")):
        mine = sorted((s for s in found[path] if s.kind == kind), key=lambda s: s.start)
        if len(mine) != 1:
            lines = f" (lines {', '.join(str(s.start[0]) for s in mine)})" if mine else ""
            raise InputError(f"{path}: {len(mine)} {kind}s of {old}(){lines}; expected one to remove")
        spans[path] = mine[0]
    for path in C_FILES:
        for s in found[path]:
            if s != spans[path]:
                raise InputError(f"{path}:{s.start[0]}: a {s.kind} of {old}() where none was expected; "
                                 f"remove it by hand")
    return spans


def _keep_layout_before(path: str, before: bytes, after: bytes, span: _Span, old: str) -> bytes:
    """Put back the layout in front of an item that spatch removed.

    When spatch removes a top-level item, it also drops the white space,
    and any comment, between the item and the code before it, and keeps the
    white space after it.  The item's own lines are to go, with the blank
    line after them if there is one, and everything before them is to stay:
    a blank line in front of the old prototype, and the block comment in
    front of the old definition when there is one.  spatch's output is
    checked to be exactly the original with one piece cut out, which holds
    the whole item and reaches no further than that; the result is then
    the original without the item's lines.
    """
    text, cut = _text(before), _text(after)
    offsets = [0]
    for line in _lines(text):
        offsets.append(offsets[-1] + len(line))
    start = offsets[span.start[0] - 1] + span.start[1]
    end = offsets[span.end[0] - 1] + span.end[1]
    first = offsets[span.start[0] - 1]  # the item's first line
    last = offsets[span.end[0]]  # just after the item's last line
    where = f"{path}:{span.start[0]}"
    if not start < end or old not in text[start:end]:
        raise RewriterError(f"{where}: spatch reported a {span.kind} of {old}() that is not there")
    if text[first:start].strip() or text[end:last].strip():
        raise RewriterError(f"{where}: the {span.kind} of {old}() shares a line with other code; "
                            f"remove it by hand")
    if span.end[0] < len(offsets) - 1 and not text[last:offsets[span.end[0] + 1]].strip():
        last = offsets[span.end[0] + 1]  # the blank line after it
    removed = len(text) - len(cut)
    prefix = 0
    limit = min(len(text), len(cut), first)
    while prefix < limit and text[prefix] == cut[prefix]:
        prefix += 1
    # spatch cut text[a:a + removed], the whole item and perhaps what is
    # around it; find the a that explains its output.
    for a in range(prefix, max(end - removed, 0) - 1, -1):
        if text[a + removed:] == cut[a:]:
            break
    else:
        raise RewriterError(f"{where}: spatch changed more than the {span.kind} of {old}()")
    if a + removed > last or _strip_comments(text[a:first]).strip():
        raise RewriterError(f"{where}: spatch did not cut exactly the {span.kind} of {old}() "
                            f"and the space around it")
    return _bytes(text[:first] + text[last:])


def _strip_comments(text: str) -> str:
    return re.sub(r"/\*.*?\*/|//[^\n]*", "", text, flags=re.S)


# --------------------------------------------------------------------------
# shared
# --------------------------------------------------------------------------

def _read(tree: Tree, path: str) -> bytes:
    try:
        return tree.read(path)
    except KeyError:
        raise InputError(f"{path} is not in {tree.path} at {tree.rev[:12]}; "
                         f"is this a Linux tree?") from None


def _render(template: str, **values: object) -> str:
    return templates.render(template, **values).strip("\n")


def _text(data: bytes) -> str:
    # surrogateescape: any byte that is not UTF-8 comes back unchanged.
    return data.decode("utf-8", errors="surrogateescape")


def _lines(text: str) -> list[str]:
    """The lines of text, each with its newline; only "\\n" ends a line."""
    return re.findall(r"[^\n]*\n|[^\n]+$", text)


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", errors="surrogateescape")


def _transform(runner: Runner, rule: str, files: dict[str, bytes], what: str) -> dict[str, bytes]:
    """Run rule on the C files; each of them must change."""
    results = runner.transform(rule, {path: files[path] for path in C_FILES}, step=what)
    out = {}
    for path in C_FILES:
        value = results[path]
        if isinstance(value, FileResult):
            raise RewriterError(f"{path}: {value.error}")
        if value == files[path]:
            raise RewriterError(f"{path}: cocci/{what}.cocci changed nothing")
        out[path] = value
    return out


# --------------------------------------------------------------------------
# the block comment
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class _Paragraph:
    first: int  # index of its first line
    last: int  # index of its last line
    opening: int  # index of the "/*" line of its comment
    closing: int  # index of the " */" line of its comment


def _find_paragraph(path: str, lines: list[str], old: str) -> _Paragraph:
    """The paragraph of a block comment that starts by naming old(...)."""
    start = re.compile(rf" \* {re.escape(old)}\(")
    found = []
    opening = None
    for i, raw in enumerate(lines):
        line = raw.rstrip("\n")
        if opening is None:
            if line.lstrip().startswith("/*") and "*/" not in line:
                opening = i
            continue
        if "*/" in line:
            opening = None
            continue
        before = lines[i - 1].rstrip("\n")
        if start.match(line) and (before == " *" or i - 1 == opening):
            last = i
            while last + 1 < len(lines) and lines[last + 1].startswith(" * ") and "*/" not in lines[last + 1]:
                last += 1
            closing = last + 1
            while closing < len(lines) and "*/" not in lines[closing]:
                closing += 1
            if closing == len(lines):
                raise InputError(f"{path}:{opening + 1}: a comment that does not end")
            found.append(_Paragraph(i, last, opening, closing))
    if not found:
        raise InputError(f"{path}: no comment paragraph starts with {old}(...); "
                         f"nothing to put the new paragraphs after")
    if len(found) > 1:
        raise InputError(f"{path}: {len(found)} comment paragraphs start with {old}(...) (lines "
                         f"{', '.join(str(p.first + 1) for p in found)}); expected one")
    return found[0]


def _add_paragraphs(path: str, data: bytes, old: str, paragraphs: list[str]) -> bytes:
    lines = _lines(_text(data))
    para = _find_paragraph(path, lines, old)
    widest = max(len(line.rstrip("\n").expandtabs()) for line in lines[para.opening:para.closing + 1])
    width = min(max(widest, COMMENT_WIDTH[0]), COMMENT_WIDTH[1])
    eol = _eol(lines[para.last])
    new = []
    for text in paragraphs:
        new.append(" *" + eol)
        new.extend(line + eol for line in _wrap(text, width, " * "))
    lines[para.last + 1:para.last + 1] = new
    return _bytes("".join(lines))


def _remove_paragraph(path: str, data: bytes, old: str) -> bytes:
    lines = _lines(_text(data))
    para = _find_paragraph(path, lines, old)
    first, last = para.first, para.last
    if lines[last + 1].rstrip("\n") == " *":
        last += 1  # the empty comment line after it
    elif lines[first - 1].rstrip("\n") == " *":
        first -= 1  # it is the last paragraph: the empty line before it
    else:
        first, last = para.opening, para.closing  # it is the whole comment
    del lines[first:last + 1]
    return _bytes("".join(lines))


def _wrap(text: str, width: int, prefix: str) -> list[str]:
    """Fill text into lines of at most width columns (unless one word is
    longer), each starting with prefix."""
    lines: list[str] = []
    current = ""
    for word, gap in _words(text):
        if current and len((prefix + current + word).expandtabs()) > width:
            lines.append(prefix + current.rstrip(" "))
            current = ""
        current += word + gap
    if current:
        lines.append(prefix + current.rstrip(" "))
    return lines


def _words(text: str) -> list[tuple[str, str]]:
    """(word, space after it) for every word of text.

    A word does not end inside the parentheses of a call: "f(a, b)" is one
    word.  Words are one space apart, but two after the end of a sentence,
    as in the comments of mm/pgtable-generic.c.
    """
    words: list[str] = []
    word = ""
    depth = 0
    for ch in " ".join(text.split()):
        if ch == " " and depth == 0:
            words.append(word)
            word = ""
            continue
        if ch == "(" and (depth or re.search(r"\w$", word)):
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        word += ch
    if word:
        words.append(word)
    out = []
    for i, w in enumerate(words):
        following = words[i + 1] if i + 1 < len(words) else ""
        end_of_sentence = re.search(r"[.?!]\)?$", w) and following[:1].isupper()
        out.append((w, "  " if end_of_sentence else " " if following else ""))
    return out


def _eol(line: str) -> str:
    return line[len(line.rstrip("\r\n")):] or "\n"


# --------------------------------------------------------------------------
# the documentation
# --------------------------------------------------------------------------

def _find_doc_entry(path: str, lines: list[str], old: str) -> tuple[int, int]:
    """(first, last) line indexes of the entry " - old()" and its description."""
    head = re.compile(rf" - {re.escape(old)}\(\)\s*$")
    found = [i for i, line in enumerate(lines) if head.match(line)]
    if not found:
        raise InputError(f"{path}: no entry ' - {old}()'; nothing to put the new entries after")
    if len(found) > 1:
        raise InputError(f"{path}: {len(found)} entries ' - {old}()' (lines "
                         f"{', '.join(str(i + 1) for i in found)}); expected one")
    first = last = found[0]
    while last + 1 < len(lines) and lines[last + 1].startswith("\t"):
        last += 1
    return first, last


def _add_doc_entries(path: str, data: bytes, old: str, entries: str) -> bytes:
    lines = _lines(_text(data))
    first, last = _find_doc_entry(path, lines, old)
    # The width of the list the entry belongs to.
    top, bottom = first, last
    while top > 0 and lines[top - 1].startswith((" - ", "\t")):
        top -= 1
    while bottom + 1 < len(lines) and lines[bottom + 1].startswith((" - ", "\t")):
        bottom += 1
    width = max(len(line.rstrip("\r\n").expandtabs()) for line in lines[top:bottom + 1])
    eol = _eol(lines[last])
    new = []
    for line in entries.split("\n"):
        if line.startswith("\t"):
            new.extend(wrapped + eol for wrapped in _wrap(line[1:], width, "\t"))
        else:
            new.append(line + eol)
    lines[last + 1:last + 1] = new
    return _bytes("".join(lines))


def _remove_doc_entry(path: str, data: bytes, old: str) -> bytes:
    lines = _lines(_text(data))
    first, last = _find_doc_entry(path, lines, old)
    del lines[first:last + 1]
    return _bytes("".join(lines))
