"""The two functions that replace the recipe's old one.

introduce() adds them next to the old function, in the files that the
recipe says declare, define and document it (for pte_offset_map_nolock():
include/linux/mm.h, mm/pgtable-generic.c and
Documentation/mm/split_page_table_lock.rst), in whatever shape the tree
has them:

* the header: their prototypes, right after the old prototype;
* the source: their definitions, right after the old definition.  When a
  block comment there has a paragraph about the old function (as from
  Linux 6.6), a paragraph for each new one follows it; otherwise (as in
  6.5) each new definition gets a kernel-doc comment of its own;
* the documentation: an entry for each, right after the old entry, when
  the file is there and has one.

What the new comments say is said only when the tree makes it true: the
recipe's facts (for pte_offset_map_nolock(), that the mapping holds
rcu_read_lock() until pte_unmap()) are read from the tree's own code by
code_facts().

remove() takes the old function out again once no caller is left, with
whatever of its paragraph, kernel-doc comment and documentation entry the
tree has (old_parts says which).

The C is changed by the semantic patches cocci/introduce.cocci.j2 and
cocci/remove.cocci.j2, each run in two steps: "find" reports where the old
function is (and, for introduce, its parameter names and body), "apply"
changes exactly those places.  The C of the new functions comes from the
recipe's templates in helpers/.  When spatch removes a top-level item it
also takes the blank line or the comment in front of it; remove() puts
that back (see _keep_layout_before), after checking that spatch cut out
the item and nothing else.  The comments and the documentation entries
are prose, so they are edited here as text, line by line, and nothing else
in those files is touched.

Both functions are pure: they take file contents and return new contents
(tree-relative path -> bytes); spatch works on copies in a scratch
directory, and nothing in the tree is written.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from rewriter import cocci
from rewriter.errors import InputError, RewriterError
from rewriter.recipe import Names, Recipe
from rewriter.runner import Background, FileResult, Runner
from rewriter.tree import Tree

FIND = "@@REWRITER-HELPERS@@"
MAX_COLUMNS = 100  # no added line may be longer than this
COMMENT_WIDTH = (72, 80)  # prose is wrapped to its comment's width, within these bounds


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TYPEDEF_NAME = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*_t\b")


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

    prototype_line: int  # in the header
    definition_line: int  # in the source
    params: dict[str, str]  # template name -> parameter name in the tree
    body: str  # the lines between the braces of the definition


def introduce(tree: Tree, runner: Runner, names: Names, recipe: Recipe) -> dict[str, bytes]:
    """The new contents of the files that get the two new functions.

    The originals are read from tree at its revision; the result maps each
    changed tree-relative path to its new bytes.  Names that the tree
    already uses are refused (check_names_free).
    """
    runner.check_spatch()
    check_names_free(tree, names)
    old, (header_path, source_path, doc_path) = recipe.function, recipe.files
    files = {path: _read(tree, path) for path in recipe.c_files}
    doc = _read_if_there(tree, doc_path)
    found = _find_old(runner, files, recipe)
    facts = code_facts(tree, recipe)
    values = dict(found.params, **{recipe.inserted["name"]: recipe.inserted["name"]}, **facts)
    c_text = {
        "readonly_prototype": _render(recipe, "helpers/readonly.c.j2", name=names.readonly, prototype=True, **values),
        "maywrite_prototype": _render(recipe, "helpers/maywrite.c.j2", name=names.maywrite, prototype=True, **values),
        "readonly_definition": _render(recipe, "helpers/readonly.c.j2", name=names.readonly, prototype=False,
                                       body=found.body, **values),
        "maywrite_definition": _render(recipe, "helpers/maywrite.c.j2", name=names.maywrite, prototype=False, **values),
    }
    typedefs = set(recipe.typedefs) | set(_TYPEDEF_NAME.findall(found.body))
    rule = cocci.render("introduce.cocci.j2", step="apply", old=old, returns=_signature(recipe)["returns"],
                        readonly=names.readonly, maywrite=names.maywrite,
                        prototypes=repr({(header_path, found.prototype_line)}),
                        definitions=repr({(source_path, found.definition_line)}),
                        typedefs=sorted(typedefs), **c_text)
    out = _transform(runner, rule, files, "introduce", recipe.c_files)
    block = "{\n" + found.body + "\n}\n"
    if _text(out[source_path]).count(block) != _text(files[source_path]).count(block) + 1:
        raise RewriterError(f"{source_path}: spatch changed the layout of the body of {old}() when it copied it "
                            f"into {names.readonly}(); the definition needs to be added by hand")
    for path in recipe.c_files:
        _check_added_lines(path, files[path], out[path])

    if _paragraphs(source_path, _lines(_text(files[source_path])), old):
        comment = _render(recipe, "helpers/comment.txt.j2", readonly=names.readonly, maywrite=names.maywrite,
                          **values)
        out[source_path] = _add_paragraphs(source_path, out[source_path], old, comment.split("\n\n"))
    else:
        # Nothing to put the new text after: each function gets its own.
        for function, name in (("readonly", names.readonly), ("maywrite", names.maywrite)):
            text = _render(recipe, "helpers/kerneldoc.txt.j2", function=function, readonly=names.readonly,
                           maywrite=names.maywrite, **values)
            out[source_path] = _add_kerneldoc(source_path, out[source_path], name, text)
    if doc is not None and _doc_entries(doc_path, _lines(_text(doc)), old):
        entries = _render(recipe, "helpers/doc.rst.j2", readonly=names.readonly, maywrite=names.maywrite, **values)
        out[doc_path] = _add_doc_entries(doc_path, doc, old, entries)
    return out


def _find_old(runner: Runner, files: dict[str, bytes], recipe: Recipe) -> _Old:
    old, (header_path, source_path) = recipe.function, recipe.c_files
    rule = cocci.render("introduce.cocci.j2", step="find", old=old, marker=FIND, **_signature(recipe))
    results = runner.run(rule, {path: files[path] for path in recipe.c_files}, FIND, step="find")
    records: dict[str, list[dict]] = {}
    for res in results:
        if res.error:
            raise RewriterError(f"{res.path}: {res.error}")
        records[res.path] = list(res.records)

    prototypes = sorted({r["line"] for r in records[header_path] if r["kind"] == "prototype"})
    if not prototypes:
        raise InputError(f"{header_path}: no prototype of {old}(); the new prototypes go right after it")
    if len(prototypes) > 1:
        raise InputError(f"{header_path}: {len(prototypes)} prototypes of {old}() (lines "
                         f"{', '.join(map(str, prototypes))}); expected one")

    # "other" is any definition of the name, whatever its parameters.
    others = sorted({r["line"] for r in records[source_path] if r["kind"] == "other"})
    if not others:
        raise InputError(f"{source_path}: no definition of {old}(); the new definitions go right after it")
    if len(others) > 1:
        raise InputError(f"{source_path}: {len(others)} definitions of {old}() (lines "
                         f"{', '.join(map(str, others))}); expected one")
    definitions = [r for r in records[source_path] if r["kind"] == "definition"]
    if not definitions:
        raise InputError(f"{source_path}:{others[0]}: {old}() does not take "
                         f"({', '.join(p.type for p in recipe.params)}), which the new functions are written for")
    rec = definitions[0]
    line = rec["line"]
    body = _body(_text(files[source_path]), rec["open"], rec["close"], line, old, source_path)
    return _Old(prototypes[0], line, dict(zip((p.name for p in recipe.params), rec["params"])), body)


def _signature(recipe: Recipe) -> dict[str, object]:
    """The old function's return type and parameter list, as introduce.cocci
    matches them (metavariables MM, PMD, ADDR, PTLP in the roles' order)."""
    names = ("MM", "PMD", "ADDR", "PTLP")
    spaced = [t if t.endswith("*") else t + " " for t in (recipe.returns, *(p.type for p in recipe.params))]
    return {"returns": spaced[0], "signature": ", ".join(t + n for t, n in zip(spaced[1:], names)),
            "typedefs": sorted(recipe.typedefs)}


def _body(text: str, open_pos: list[int], close_pos: list[int], line: int, old: str, source: str) -> str:
    """The lines strictly between the braces, which must be on lines of their own."""
    lines = text.split("\n")
    (open_line, open_col), (close_line, close_col) = open_pos, close_pos
    if (lines[open_line - 1][open_col + 1:].strip() or lines[close_line - 1][:close_col].strip()
            or close_line - open_line < 2):
        raise InputError(f"{source}:{line}: the braces of {old}() are not on lines of their own, "
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

def beside(tree: Tree, runner: Runner, names: Names, recipe: Recipe) -> Background:
    """introduce() and then remove() in a thread of their own, while the
    calls are converted: they need nothing of that.  result() gives
    (introduced, removed) or raises what they raised; join() only waits,
    for a caller that fails first."""
    def work() -> tuple[dict[str, bytes], dict[str, bytes]]:
        introduced = introduce(tree, runner, names, recipe)
        return introduced, remove(introduced, runner, names, recipe)

    return Background(work, name="rewriter-helpers")


def remove(files: dict[str, bytes], runner: Runner, names: Names, recipe: Recipe) -> dict[str, bytes]:
    """Take the old function out of files, the contents after introduce().

    Removes its prototype and its definition, and whatever else of it the
    files have (old_parts): its paragraph of the block comment, its
    kernel-doc comment, its documentation entry.  Every other byte stays.
    The documentation may be left out of files when the tree has no entry for it.
    """
    old, (header_path, source_path, doc_path), c_files = recipe.function, recipe.files, recipe.c_files
    missing = [path for path in c_files if path not in files]
    if missing:
        raise InputError(f"cannot remove {old}() without {', '.join(missing)}")
    parts = old_parts(files, recipe)
    for path in c_files + ((doc_path,) if parts.doc else ()):
        for name in (names.readonly, names.maywrite):
            if not re.search(rf"\b{re.escape(name)}\b", _text(files[path])):
                raise InputError(f"{path}: {name} is not there yet; introduce the new functions "
                                 f"before removing {old}()")
    runner.check_spatch()
    spans = _find_removals(runner, files, old, recipe.c_files)
    rule = cocci.render("remove.cocci.j2", step="apply", old=old,
                        prototypes=repr({(header_path, *spans[header_path].at)}),
                        definitions=repr({(source_path, *spans[source_path].at)}))
    out = _transform(runner, rule, files, "remove", recipe.c_files)
    for path, span in spans.items():
        out[path] = _keep_layout_before(path, files[path], out[path], span, old)
    if parts.kerneldoc:
        out[source_path] = _remove_kerneldoc(source_path, files[source_path], out[source_path],
                                             spans[source_path].start[0] - 1, old)
    if parts.paragraph:
        out[source_path] = _remove_paragraph(source_path, out[source_path], old)
    if parts.doc:
        out[doc_path] = _remove_doc_entry(doc_path, files[doc_path], old)
    word = re.compile(rf"\b{re.escape(old)}\b")
    for path in recipe.files:
        if path not in files:
            continue
        for n, line in enumerate(_text(out.get(path, files[path])).split("\n"), 1):
            if word.search(line):
                raise InputError(f"{path}:{n}: {old} is still named after removing it; "
                                 f"convert what uses it first")
    return out


@dataclass(frozen=True)
class OldParts:
    """What documents the old function in the files, besides its prototype
    and definition: what remove() takes out with them."""

    paragraph: bool  # a paragraph about it in a block comment in the source
    comment_above: str  # the function defined right after that comment ("" if none)
    kerneldoc: bool  # a kernel-doc comment right above its definition
    doc: str  # the documentation file with an entry for it, or ""


def old_parts(files: dict[str, bytes], recipe: Recipe) -> OldParts:
    """What of the old function files (path -> contents) hold, besides its
    prototype and definition."""
    old, source_path, doc_path = recipe.function, recipe.define, recipe.document
    lines = _lines(_text(files[source_path]))
    paragraphs = _paragraphs(source_path, lines, old)
    above = ""
    if paragraphs and paragraphs[0].closing + 1 < len(lines):
        name = re.match(r"^(?:[A-Za-z_][^;{}#\n=(]*[\s*])?([A-Za-z_]\w*)\s*\(", lines[paragraphs[0].closing + 1])
        above = name.group(1) if name else ""
    definitions = _definitions(_text(files[source_path]), old)
    kerneldoc = len(definitions) == 1 and _old_kerneldoc(lines, definitions[0][0], old) is not None
    doc = doc_path if doc_path in files and _doc_entries(doc_path, _lines(_text(files[doc_path])), old) else ""
    return OldParts(bool(paragraphs), above, kerneldoc, doc)


@dataclass(frozen=True)
class _Span:
    """One top-level item that remove.cocci takes out."""

    kind: str  # prototype or definition
    at: tuple[int, int]  # line and column of the position the apply step checks
    start: tuple[int, int]  # line (from 1) and column (from 0) of its first character
    end: tuple[int, int]  # line and column just after its last character


def _find_removals(runner: Runner, files: dict[str, bytes], old: str, c_files: tuple[str, str]) -> dict[str, _Span]:
    rule = cocci.render("remove.cocci.j2", step="find", old=old, marker=FIND)
    header_path, source_path = c_files
    results = runner.run(rule, {path: files[path] for path in c_files}, FIND, step="find")
    found: dict[str, set[_Span]] = {path: set() for path in c_files}
    for res in results:
        if res.error:
            raise RewriterError(f"{res.path}: {res.error}")
        for r in res.records:
            found[res.path].add(_Span(r["kind"], (r["line"], r["col"]), tuple(r["start"]), tuple(r["end"])))
    spans = {}
    for path, kind in ((header_path, "prototype"), (source_path, "definition")):
        mine = sorted((s for s in found[path] if s.kind == kind), key=lambda s: s.start)
        if len(mine) != 1:
            lines = f" (lines {', '.join(str(s.start[0]) for s in mine)})" if mine else ""
            raise InputError(f"{path}: {len(mine)} {kind}s of {old}(){lines}; expected one to remove")
        spans[path] = mine[0]
    for path in c_files:
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
    # around it; find an a that explains its output.  Where the text
    # around the cut repeats (a comment above the item that starts like
    # the one above the next item), several do, and one within the
    # item's space is enough.
    explained = [a for a in range(prefix, max(end - removed, 0) - 1, -1) if text[a + removed:] == cut[a:]]
    if not explained:
        raise RewriterError(f"{where}: spatch changed more than the {span.kind} of {old}()")
    if not any(a + removed <= last and not _strip_comments(text[a:first]).strip() for a in explained):
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


def _read_if_there(tree: Tree, path: str) -> bytes | None:
    try:
        return tree.read(path)
    except KeyError:
        return None


def _render(recipe: Recipe, template: str, **values: object) -> str:
    return recipe.render(template, **values).strip("\n")


def _text(data: bytes) -> str:
    # surrogateescape: any byte that is not UTF-8 comes back unchanged.
    return data.decode("utf-8", errors="surrogateescape")


def _lines(text: str) -> list[str]:
    """The lines of text, each with its newline; only "\\n" ends a line."""
    return re.findall(r"[^\n]*\n|[^\n]+$", text)


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", errors="surrogateescape")


def _transform(runner: Runner, rule: str, files: dict[str, bytes], what: str,
               c_files: tuple[str, str]) -> dict[str, bytes]:
    """Run rule on the C files; each of them must change."""
    results = runner.transform(rule, {path: files[path] for path in c_files}, step=what)
    out = {}
    for path in c_files:
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


def _paragraphs(path: str, lines: list[str], old: str) -> list[_Paragraph]:
    """The paragraphs of block comments that start by naming old(...).

    A kernel-doc comment ("/**") documents one function; it is not a
    comment that paragraphs about other functions could be added to.
    """
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
        if lines[opening].lstrip().startswith("/**"):
            continue
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
    if len(found) > 1:
        raise InputError(f"{path}: {len(found)} comment paragraphs start with {old}(...) (lines "
                         f"{', '.join(str(p.first + 1) for p in found)}); expected one")
    return found


def _find_paragraph(path: str, lines: list[str], old: str) -> _Paragraph:
    """The paragraph of a block comment that starts by naming old(...)."""
    found = _paragraphs(path, lines, old)
    if not found:
        raise InputError(f"{path}: no comment paragraph starts with {old}(...); "
                         f"nothing to put the new paragraphs after")
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


def _wrap(text: str, width: int, prefix: str, more: str | None = None) -> list[str]:
    """Fill text into lines of at most width columns (unless one word is
    longer), the first starting with prefix and the others with more
    (prefix too if more is None)."""
    lines: list[str] = []
    current = ""

    def lead() -> str:
        return prefix if not lines or more is None else more

    for word, gap in _words(text):
        if current and len((lead() + current + word).expandtabs()) > width:
            lines.append(lead() + current.rstrip(" "))
            current = ""
        current += word + gap
    if current:
        lines.append(lead() + current.rstrip(" "))
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
# kernel-doc comments
# --------------------------------------------------------------------------

def _add_kerneldoc(path: str, data: bytes, name: str, text: str) -> bytes:
    """Put the kernel-doc comment written in text right above the definition
    of name.  In text, blocks are separated by an empty line and each line
    is one item ("name - what it does", "@arg: ...", a paragraph,
    "Context: ..."), filled to the kernel's 80 columns; the lines that
    continue an "@arg:" item are indented by a tab."""
    lines = _lines(_text(data))
    at = [line for line, _body in _definitions(_text(data), name)]
    if len(at) != 1:
        raise RewriterError(f"{path}: {len(at)} definitions of {name}() to document; expected one")
    eol = _eol(lines[at[0]])
    new = ["/**"]
    for n, block in enumerate(text.split("\n\n")):
        if n:
            new.append(" *")
        for item in block.split("\n"):
            new.extend(_wrap(item, COMMENT_WIDTH[1], " * ", " *\t" if item.startswith("@") else " * "))
    new.append(" */")
    lines[at[0]:at[0]] = [line + eol for line in new]
    return _bytes("".join(lines))


def _old_kerneldoc(lines: list[str], definition: int, old: str) -> tuple[int, int] | None:
    """(first, last) line indexes of the kernel-doc comment of old() that
    ends right above its definition, which starts at line index definition."""
    last = definition - 1
    if last < 1 or lines[last].strip() != "*/":
        return None
    first = last - 1
    while first >= 0 and not lines[first].lstrip().startswith("/*"):
        first -= 1
    if first < 0 or lines[first].strip() != "/**" or first + 1 == last:
        return None
    return (first, last) if re.match(rf" \* {re.escape(old)}(\(\))?\s+-", lines[first + 1]) else None


def _remove_kerneldoc(path: str, before: bytes, after: bytes, definition: int, old: str) -> bytes:
    """after (before without the definition of old, which started at line
    index definition) without the kernel-doc comment above it."""
    span = _old_kerneldoc(_lines(_text(before)), definition, old)
    lines = _lines(_text(after))
    if span is None or lines[span[0]:span[1] + 1] != _lines(_text(before))[span[0]:span[1] + 1]:
        raise RewriterError(f"{path}:{definition + 1}: the kernel-doc comment of {old}() is not where "
                            f"it was before its definition was removed")
    del lines[span[0]:span[1] + 1]
    return _bytes("".join(lines))


# --------------------------------------------------------------------------
# facts from the tree's code
# --------------------------------------------------------------------------

_C_NOISE = re.compile(r"/\*.*?\*/|//[^\n]*|\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'", re.S)


def _code(text: str) -> str:
    """text with its comments and literals blanked out, lines kept."""
    return _C_NOISE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)


def _matching(code: str, at: int, opening: str, closing: str) -> int | None:
    depth = 0
    for i in range(at, len(code)):
        if code[i] == opening:
            depth += 1
        elif code[i] == closing:
            depth -= 1
            if depth == 0:
                return i
    return None


def _definitions(text: str, name: str) -> list[tuple[int, str]]:
    """(index of its first line, its body) for each definition of name in
    the C text: a function whose header starts its line (kernel style), or
    a function-like macro; comments are not part of a body."""
    code = _code(text)
    found = []
    word = re.escape(name)
    for m in re.finditer(rf"^[^\S\n]*#[^\S\n]*define[^\S\n]+{word}\((?:[^\n]*\\\n)*[^\n]*", code, re.M):
        found.append((code.count("\n", 0, m.start()), m.group(0)))
    for m in re.finditer(rf"^(?:[A-Za-z_][^;{{}}#\n=(]*[\s*])?{word}\s*\(", code, re.M):
        close = _matching(code, m.end() - 1, "(", ")")
        if close is None:
            continue
        rest = code[close + 1:]
        opening = close + 1 + len(rest) - len(rest.lstrip())
        if not rest.lstrip().startswith("{"):
            continue  # a prototype
        end = _matching(code, opening, "{", "}")
        if end is not None:
            found.append((code.count("\n", 0, m.start()), code[opening:end + 1]))
    return sorted(found)


def _calls(body: str, callee: str) -> bool:
    return re.search(rf"\b{re.escape(callee)}\s*\(", body) is not None


def code_facts(tree: Tree, recipe: Recipe) -> dict[str, bool]:
    """The recipe's facts as the tree's code has them (facts_hold)."""
    return facts_hold(recipe, lambda path: _read_if_there(tree, path))


def facts_hold(recipe: Recipe, read) -> dict[str, bool]:
    """The recipe's facts ([facts] of recipe.toml) as the code that read
    (path -> bytes, or None when there is no such file) gives has them.  A
    fact holds when each of its needs does:
      {function, file, calls}: the function is defined in the file and
        every definition calls what calls names;
      {function, file, lacks}: it is defined there and no definition calls it;
      {file, comment}: a comment in the file says the text (white space
        aside).
    Comments are not code (Linux 6.5 has "rcu_read_lock() to be added
    later" where 6.6 calls it), and a missing file or definition makes the
    fact false."""
    out = {}
    for fact, needs in recipe.facts.items():
        holds = True
        for need in needs:
            data = read(need["file"])
            if data is None:
                holds = False
            elif "comment" in need:
                comments = " ".join(" ".join(c.split()) for c in re.findall(r"/\*.*?\*/", _text(data), re.S))
                comments = re.sub(r"\s*\*\s*", " ", comments)
                holds = holds and re.sub(r"\s*\*\s*", " ", " ".join(need["comment"].split())) in comments
            else:
                bodies = _definitions(_text(data), need["function"])
                holds = (holds and bool(bodies)
                         and all(_calls(body, need["calls"]) for _line, body in bodies if "calls" in need)
                         and not any(_calls(body, need["lacks"]) for _line, body in bodies if "lacks" in need))
        out[fact] = holds
    return out


# --------------------------------------------------------------------------
# the documentation
# --------------------------------------------------------------------------

def _doc_entries(path: str, lines: list[str], old: str) -> list[tuple[int, int]]:
    """(first, last) line indexes of the entry " - old()" and its description,
    if the list has one."""
    head = re.compile(rf" - {re.escape(old)}\(\)\s*$")
    found = [i for i, line in enumerate(lines) if head.match(line)]
    if len(found) > 1:
        raise InputError(f"{path}: {len(found)} entries ' - {old}()' (lines "
                         f"{', '.join(str(i + 1) for i in found)}); expected one")
    spans = []
    for first in found:
        last = first
        while last + 1 < len(lines) and lines[last + 1].startswith("\t"):
            last += 1
        spans.append((first, last))
    return spans


def _find_doc_entry(path: str, lines: list[str], old: str) -> tuple[int, int]:
    found = _doc_entries(path, lines, old)
    if not found:
        raise InputError(f"{path}: no entry ' - {old}()'; nothing to put the new entries after")
    return found[0]


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
