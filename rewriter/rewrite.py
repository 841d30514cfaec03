"""Stage 5: edits.  Convert every call as the plan says, with one generated
semantic patch per file (cocci/convert.cocci.j2).

Python decides what goes where, from the scan and from the shape of each
function (cocci/shape.cocci.j2): which statement the recheck follows, what
it releases, what it then does, and where the pmd_t local is declared.
spatch makes every edit.  Anything that cannot be decided from the code
stops the rewrite with a message that names the call and what to put in
the plan.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache

from rewriter import cocci, prose
from rewriter.clex import (_definitions_of, definition_spans, expr_tokens, function_spans, keep_functions,
                           render, tokens)
from rewriter.diffs import common_ends
from rewriter.errors import InputError, RewriterError
from rewriter.recipe import Names, Recipe
from rewriter.plan import Entry, Plan
from rewriter.runner import TRANSFORM, Background, FileResult, Runner
from rewriter.scan import Scan, Site
from rewriter.tree import Tree

SHAPE = "@@REWRITER-SHAPE@@"
Pos = tuple[int, int]


class RewriteError(RewriterError):
    """A call the tool will not convert without help from the plan."""


@dataclass(frozen=True)
class Stmt:
    start: Pos
    end: Pos  # exclusive

    def contains(self, pos: Pos) -> bool:
        return self.start <= pos < self.end

    def size(self) -> tuple[int, int]:
        return (self.end[0] - self.start[0], self.end[1] - self.start[1])


@dataclass
class Shape:
    """Statements and declarations of one function, and failure bodies."""

    statements: list[Stmt] = field(default_factory=list)
    declarations: list[Stmt] = field(default_factory=list)
    failures: dict[Pos, Stmt | None] = field(default_factory=dict)  # site -> body; None: not one

    def tokens(self, source: str, extra_lines: int = 0) -> list:
        """The tokens of source on the lines of this function's body."""
        spans = self.statements + self.declarations
        if not spans:
            return []
        first = min(s.start[0] for s in spans)
        last = max(s.end[0] for s in spans) + extra_lines
        return [t for t in tokens(source) if first <= t.line <= last]


@dataclass(frozen=True)
class FileEdits:
    """What convert.cocci.j2 is rendered with for one file."""

    inserts: tuple[dict, ...]
    decls: tuple[dict, ...]
    first_stmt_decls: tuple[dict, ...]
    calls: tuple[dict, ...]
    removals: tuple[dict, ...] = ()  # assignments moved after a recheck: removed where they were
    lock_args: tuple[dict, ...] = ()  # a lock call's argument replaced by the moved assignment's value
    params: tuple[dict, ...] = ()  # a pmd_t *pmdvalp parameter added to a function that hands out the table
    call_edits: tuple[dict, ...] = ()  # a call of such a function, passing &pmdval


def convert(tree: Tree, runner: Runner, scan: Scan, plan: Plan, names: Names,
            only: set[str] | None = None) -> dict[str, bytes]:
    """New contents of every file with a call, all calls converted.

    only: keys (file:function:index) of the calls to convert; None for all.
    """
    by_file, sources, edits = _file_rules(tree, runner, scan, plan, names, only)
    # Files in parallel, each file's runs in order; progress is per file.
    rounds_runner = runner.quiet()

    def rounds(path: str, data: bytes) -> bytes:
        return _converted(rounds_runner, path, data, edits[path], sources[path])

    def one_file(path: str) -> bytes:
        original = sources[path]
        # spatch edits only the functions with a call: it is given the file
        # with every other body blanked in place (a whole kernel file costs
        # it seconds a round), and its edits are put into the original.
        text_ = original.decode("utf-8", errors="surrogateescape")
        keep = edited_functions(by_file[path])
        narrowed = keep_functions(text_, keep).encode("utf-8", errors="surrogateescape")
        # (A new parameter is an edit of the function's declaration.)
        data = splice(original, narrowed, rounds(path, narrowed), definition_spans(text_, keep))
        if data is None:  # an edit outside those functions: do it on the whole file
            data = rounds(path, original)
        verify(path, original, data, by_file[path], plan, names, scan.function)
        return data

    return runner.map(one_file, sorted(edits), "rewrite")


def splice(original: bytes, before: bytes, after: bytes, spans: list[tuple[int, int]]) -> bytes | None:
    """original with the edits that turned before into after, or None when
    an edit falls outside spans (1-based line ranges).  before is original
    with some function bodies blanked, line for line, so an unchanged line
    of before stands for the same line of original."""
    o = original.split(b"\n")
    b = before.split(b"\n")
    a = after.split(b"\n")
    if len(o) != len(b):
        return None

    def inside(first: int, last: int) -> bool:  # lines first..last of before
        return any(start <= first and last <= end for start, end in spans)

    out = []
    for kind, i1, i2, j1, j2 in _line_edits(before, after):
        if kind == "equal":
            out.extend(o[i1:i2])
        elif not inside(*_edited_lines(i1, i2)):
            return None
        else:
            out.extend(a[j1:j2])
    return b"\n".join(out)


@lru_cache(maxsize=32)
def _line_edits(before: bytes, after: bytes) -> tuple[tuple[str, int, int, int, int], ...]:
    """difflib's opcodes for the lines of two texts, the common head and
    tail trimmed first (a file's edits are a few lines in thousands).
    Remembered: a series takes each file's edits once per commit."""
    b = before.split(b"\n")
    a = after.split(b"\n")
    head, tail = common_ends(b, a)
    out = [("equal", 0, head, 0, head)] if head else []
    middle = difflib.SequenceMatcher(None, b[head:len(b) - tail], a[head:len(a) - tail], autojunk=False)
    out += [(kind, i1 + head, i2 + head, j1 + head, j2 + head) for kind, i1, i2, j1, j2 in middle.get_opcodes()]
    if tail:
        out.append(("equal", len(b) - tail, len(b), len(a) - tail, len(a)))
    return tuple(out)


def _edited_lines(i1: int, i2: int) -> tuple[int, int]:
    """The 1-based lines (first, last) of before an edit touches: lines
    i1+1..i2 replaced or removed, or for an insertion the two lines it goes
    between, which must both be in the same function."""
    return (i1 + 1, i2) if i2 > i1 else (i1, i1 + 1)


def partial(original: bytes, converted: bytes, spans: dict[str, list[tuple[int, int]]],
            keep: set[str]) -> bytes | None:
    """original with the edits of converted that fall in the functions
    named in keep, and none of the others; or None when an edit is not
    inside the body of one of the functions of spans ({name: [(first,
    last line of a body)]}).  So a series' commits take a file's full
    conversion function by function, instead of converting it again for
    each commit."""
    o = original.split(b"\n")
    a = converted.split(b"\n")

    def owner(first: int, last: int) -> str | None:  # lines first..last of original
        found = {name for name, where in spans.items()
                 if any(start <= first and last <= end for start, end in where)}
        return found.pop() if len(found) == 1 else None

    out = []
    for kind, i1, i2, j1, j2 in _line_edits(original, converted):
        if kind == "equal":
            out.extend(o[i1:i2])
            continue
        name = owner(*_edited_lines(i1, i2))
        if name is None:
            return None
        out.extend(a[j1:j2] if name in keep else o[i1:i2])
    return b"\n".join(out)


def conversion(tree: Tree, runner: Runner, scan: Scan, plan: Plan, names: Names,
               only: set[str] | None = None, beside: Background | None = None) -> dict[str, tuple[bytes, bytes]]:
    """The whole conversion as (old, new) contents per changed file: the
    helpers introduced, every call converted, the old helper removed.  With
    only (call keys), just those calls are converted.  beside: the helpers'
    work (helpers.beside) if the caller started it already."""
    from rewriter import helpers

    check_editable(tree, edited_files(scan, only))
    if only is not None:
        return {path: (tree.read(path), new) for path, new in convert(tree, runner, scan, plan, names, only).items()}
    if beside is None:
        beside = helpers.beside(tree, runner, names, scan.recipe)
    try:
        converted = convert(tree, runner, scan, plan, names)
    finally:
        beside.join()
    changes = {path: (tree.read(path), new) for path, new in converted.items()}
    introduced, removed = beside.result()
    clash = sorted(set(introduced) & set(converted))
    if clash:
        raise RewriteError(f"{clash[0]}: calls {scan.function}() and also gets the new helpers; "
                           f"rewriter cannot do both in one file yet: convert its calls by hand first")
    # The helper files end with the old function removed, or, while a call
    # is left as it is and still needs it, with the new ones introduced.
    for path, new in (introduced if scan.kept else removed).items():
        changes[path] = (tree.read(path), new)
    return changes


def edited_files(scan: Scan, only: set[str] | None = None) -> set[str]:
    """The files a conversion edits: those with a call to convert and, for
    the whole conversion, the files that get the new helpers."""
    files = {s.file for s in scan.sites if only is None or s.key in only}
    return files | set(scan.recipe.files) if only is None else files


def check_editable(tree: Tree, paths: set[str]) -> None:
    """Refuse files whose bytes an edit could change unasked.

    spatch writes the lines it adds with LF ends and reads the file as
    text, so a file with CR LF line ends, or with bytes that are not UTF-8,
    would come back with mixed line ends or changed bytes.  Such a file is
    refused, with the line of its first such byte, before anything runs.
    """
    for path in sorted(paths):
        try:
            data = tree.read(path)
        except KeyError:
            continue  # not in the tree: the step that needs it says so
        cr = data.find(b"\r")
        if cr >= 0:
            line = data.count(b"\n", 0, cr) + 1
            raise InputError(f"{path}:{line}: this line ends in CR LF (or holds a carriage return); rewriter "
                             f"edits only files with LF line ends, so that no line end changes: convert "
                             f"the file to LF line ends and commit it first")
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            column = exc.start - data.rfind(b"\n", 0, exc.start)
            raise InputError(f"{path}:{line}: byte 0x{data[exc.start]:02x} at column {column} is not UTF-8; "
                             f"rewriter edits only UTF-8 files, so that no byte changes: convert the file "
                             f"to UTF-8 and commit it first") from None


def emit_rules(tree: Tree, runner: Runner, scan: Scan, plan: Plan, names: Names) -> dict[str, str]:
    """The semantic patch for each file, for --emit-cocci: FILE, or FILE.N
    for the N-th of several runs."""
    _by_file, sources, per_file = _file_rules(tree, runner, scan, plan, names, None)
    rules = {}
    for path, edits in per_file.items():
        runs = _runs(edits, sources[path])
        for n, run in enumerate(runs, 1):
            rules[f"{path}.{n}" if len(runs) > 1 else path] = run.text
    return rules


def _file_rules(tree: Tree, runner: Runner, scan: Scan, plan: Plan, names: Names, only: set[str] | None):
    """Sites, sources and the rounds of rendered rules, per file."""
    by_file: dict[str, list[Site]] = {}
    for s in scan.sites:
        if only is None or s.key in only:
            by_file.setdefault(s.file, []).append(s)
    tree.blob_ids(by_file)  # one ls-tree for all of them
    sources = {f: tree.read(f) for f in by_file}
    # A read-only call is only renamed: its function's shape is not needed.
    placed = {f: sites for f, sites in by_file.items() if any(plan.entry(s).verdict != "ro" for s in sites)}
    shapes = _shapes(runner, sources, placed, scan.function)
    for path, sites in by_file.items():
        shapes.setdefault(path, {s.function: Shape() for s in sites})
    per_file: dict[str, FileEdits] = {}
    for path, sites in by_file.items():
        source = sources[path].decode("utf-8", errors="surrogateescape")
        edits = plan_file(path, source, sites, plan, shapes[path], scan.recipe)
        per_file[path] = _Named(edits, scan.function, names)
    return by_file, sources, per_file


@dataclass(frozen=True)
class _Named:
    """A file's edits, with the names the rules are rendered with."""

    edits: FileEdits
    old: str
    names: Names


@dataclass(frozen=True)
class _Run:
    """One spatch run of convert.cocci.j2, and the rules it must apply."""

    text: str
    rules: frozenset[str]


# The fields of FileEdits, each with the name of its macro in convert.cocci.j2.
_KINDS = (("inserts", "insert"), ("decls", "decl"), ("first_stmt_decls", "first_decl"), ("calls", "call"),
          ("removals", "remove"), ("lock_args", "lock_arg"), ("params", "param"), ("call_edits", "call_edit"))


def _render(named: _Named, tagged: list[tuple[str, dict]], relative: bool) -> _Run:
    """The rule for edits tagged with their kind, from the bottom of the
    file up: an edit moves only the lines below it, which the edits before
    it have done already."""
    tagged = sorted(tagged, key=lambda ke: tuple(ke[1]["pos"]), reverse=True)
    steps = [{"kind": kind, "edit": e, "name": f"{kind}_{n}", "table": f"AT_{n}"}
             for n, (kind, e) in enumerate(tagged, 1)]
    text = cocci.render("convert.cocci.j2", old=named.old, readonly=named.names.readonly,
                        maywrite=named.names.maywrite, marker=TRANSFORM, steps=steps, relative=relative,
                        functions=sorted({e["function"] for _k, e in tagged}))
    return _Run(text, frozenset(s["name"] for s in steps))


def _tagged(edits: FileEdits) -> list[tuple[str, dict]]:
    return [(kind, e) for field_, kind in _KINDS for e in getattr(edits, field_)]


def _runs(named: _Named, source: bytes) -> list[_Run]:
    """One run for every edit of the file: its positions are taken relative
    to the first line of their function (convert.cocci.j2, START), which
    names the function; so each edited function must be defined once in
    the file.  Otherwise the edits go in rounds (_rounds)."""
    tagged = _tagged(named.edits)
    defined = Counter(name for name, _o, _c in _definitions_of(source.decode("utf-8", errors="surrogateescape")))
    if all(defined[e["function"]] == 1 for _k, e in tagged):
        return [_render(named, tagged, relative=True)]
    return _rounds(named)


def _rounds(named: _Named) -> list[_Run]:
    """The edits of a file in several runs of spatch, bottom-up, at most one
    edit per function in each, with the file's own line numbers: a later
    rule of a run does not match in a function an earlier one changed,
    since spatch then parses it again with lines counted from elsewhere."""
    rounds: list[list[tuple[str, dict]]] = []
    functions: set[str] = set()
    for kind, e in sorted(_tagged(named.edits), key=lambda ke: tuple(ke[1]["pos"]), reverse=True):
        if not rounds or e["function"] in functions:
            rounds.append([])
            functions = set()
        rounds[-1].append((kind, e))
        functions.add(e["function"])
    return [_render(named, r, relative=False) for r in rounds]


def _converted(runner: Runner, path: str, data: bytes, named: _Named, source: bytes) -> bytes:
    """data with every edit made.  One run makes them all (see _runs); a
    file where a rule of it did not match is edited again from data in
    rounds, one edit per function in each; a rule that matches in neither
    stops the conversion."""
    first = _apply(runner, path, data, _runs(named, source))
    if first is not None:
        return first
    again = _apply(runner, path, data, _rounds(named))
    if again is None:
        raise RewriteError(f"{path}: spatch did not make every planned edit (a rule of the conversion "
                           f"did not match); report this with the output of --emit-cocci")
    return again


def _apply(runner: Runner, path: str, data: bytes, runs: list[_Run]) -> bytes | None:
    """data after the runs, in order; None when a rule did not make its edit."""
    for run in runs:
        res = runner.edit(run.text, {path: data})[path]
        if isinstance(res, FileResult):
            raise RewriteError(f"{path}: {res.error}")
        if {r.get("applied") for r in res.records} != run.rules:
            return None
        data = res.data
    return data


# ------------------------------------------------------------------ shape


def edited_functions(sites: list[Site]) -> set[str]:
    """The functions a conversion of sites edits: theirs, and the callers
    the pmd value is carried to."""
    out = {s.function for s in sites}
    for s in sites:
        if s.verdict.carry is not None:
            out |= {c.function for c in s.verdict.carry.sites}
    return out


def _shapes(runner: Runner, sources: dict[str, bytes], by_file: dict[str, list[Site]],
            function: str) -> dict[str, dict[str, Shape]]:
    """The shapes of the edited functions of each file, from one run of
    shape.cocci.j2 for all the files (Runner.run_dir)."""
    files: dict[str, bytes] = {}
    sites: dict[str, set] = {}
    functions: dict[str, list[str]] = {}
    for path, file_sites in by_file.items():
        edited = edited_functions(file_sites)
        text_ = sources[path].decode("utf-8", errors="surrogateescape")
        files[path] = keep_functions(text_, edited).encode("utf-8", errors="surrogateescape")
        sites[path] = {(s.line, s.column) for s in file_sites}
        functions[path] = sorted(edited)
    if not files:
        return {}
    table = "{" + ", ".join(f"{path!r}: {{" + ", ".join(f"({l}, {c})" for l, c in sorted(pos)) + "}"
                            for path, pos in sorted(sites.items())) + "}"
    rule = cocci.render("shape.cocci.j2", name=function, marker=SHAPE, sites=table, functions=repr(functions))
    out: dict[str, dict[str, Shape]] = {}
    for res in runner.run_dir(rule, files, SHAPE, step="shape"):
        if res.error:
            raise RewriteError(f"{res.path}: {res.error}")
        out[res.path] = shapes_from_records(res.records, {s.function: Shape() for s in by_file[res.path]})
    return out


def shapes_from_records(records, shapes: dict[str, Shape] | None = None) -> dict[str, Shape]:
    """The functions' shapes from shape.cocci's records (added to shapes)."""
    shapes = {} if shapes is None else shapes
    for r in records:
        sh = shapes.setdefault(r["function"], Shape())
        st = Stmt(tuple(r["start"]), tuple(r["end"]))
        if r["kind"] == "statement":
            sh.statements.append(st)
        elif r["kind"] == "declaration":
            sh.declarations.append(st)
        elif r["kind"] == "failure":
            site = tuple(r["site"])
            # Two checks on different paths: no one failure action.
            sh.failures[site] = st if sh.failures.get(site, st) == st else None
    return shapes


# ------------------------------------------------------------------ planning


def plan_file(path: str, source: str, sites: list[Site], plan: Plan,
              shapes: dict[str, Shape], recipe: Recipe) -> FileEdits:
    lines = source.splitlines()
    new = recipe.inserted  # the parameter the may-write variant adds, and the callers' locals
    inserts: list[dict] = []
    decls: list[dict] = []
    first_stmt_decls: list[dict] = []
    calls: list[dict] = []
    removals: list[dict] = []
    lock_args: list[dict] = []
    params: list[dict] = []
    call_edits: list[dict] = []
    locals_done: dict[tuple[str, str], str] = {}  # (function, kind) -> name
    taken: dict[str, set[str]] = {}
    for site in sorted(sites, key=lambda s: (s.line, s.column)):
        entry = plan.entry(site)
        shape = shapes[site.function]
        call = {"key": site.key, "pos": (site.line, site.column), "verdict": entry.verdict,
                "function": site.function,
                "recheck": entry.recheck, "comment": None, "indent": "", "pmdval": None, "form": _form(site)}
        calls.append(call)
        if entry.verdict == "ro":
            continue
        used = taken.setdefault(site.function, _identifiers(source, shape))
        if entry.recheck == "dummy":
            kind = "dummy"
            name = locals_done.get((site.function, kind))
            if name is None:
                name = _fresh(new["dummy_local"], used)
                locals_done[(site.function, kind)] = name
                _declare(site, shape, lines, name, decls, first_stmt_decls, new["local_type"])
            call["pmdval"] = name
            if call["form"] in ("assign", "declared"):
                indent = _indent_width(lines[site.line - 1])
                sentence = prose.sentence(entry.reason)
                call["comment"] = recipe.render("c/dummy_comment.c.j2", sentence=sentence,
                                              width=max(40, 80 - indent - 3)).rstrip("\n")
                line = lines[site.line - 1]
                call["indent"] = line[:len(line) - len(line.lstrip())]
            continue
        # rw + pmd_same
        # The callers' lock sites get their recheck whatever the plan writes
        # for this function's own: a plan's body replaces only that.
        carried = site.verdict.carry
        if carried is not None:
            # The value comes in through a new parameter and goes on to
            # the callers that lock the table this function hands out.
            name = _fresh(new["name"], used)
            call["pmdval_arg"] = name
            inserts.extend(_rechecks(path, source, lines, site, entry, shape, "*" + name, recipe))
            params.append({"pos": _definition_pos(source, site.function), "function": site.function,
                           "index": carried.param_index, "code": f"{new['type']}{name}"})
            for cl in carried.sites:
                _carry_to(cl, carried, shapes[cl.function], source, taken, locals_done, decls, first_stmt_decls,
                          inserts, removals, lock_args, call_edits, recipe)
        else:
            name = _fresh(_local_name(site, new), used)
            _declare(site, shape, lines, name, decls, first_stmt_decls, new["local_type"])
            call["pmdval"] = name
            inserts.extend(_rechecks(path, source, lines, site, entry, shape, name, recipe))
        for pos, lhs, rhs, taker in _moved(site, entry):
            removals.append({"pos": pos, "function": site.function, "code": f"{lhs} = {rhs};"})
            lock_args.append({"pos": taker, "function": site.function, "old": lhs, "new": rhs})
    # One recheck per statement, even when two lock calls share it.
    seen: set[Pos] = set()
    unique = []
    for ins in inserts:
        if ins["pos"] in seen:
            continue
        seen.add(ins["pos"])
        unique.append(ins)
    for c in calls:
        c.setdefault("pmdval_arg", f"&{c['pmdval']}" if c["pmdval"] else None)
    return FileEdits(tuple(unique), tuple(decls), tuple(first_stmt_decls), tuple(calls), tuple(removals),
                     tuple(lock_args), tuple(params), tuple(call_edits))


def _definition_pos(source: str, function: str) -> Pos:
    """Where the function's definition starts, for ordering its edits."""
    first, _last = function_spans(source, {function})[0]
    return (max(1, first - 1), 0)


def _carry_to(cl, carried, shape: Shape, source: str, taken: dict[str, set[str]],
              locals_done: dict[tuple[str, str], str], decls: list[dict], first_stmt_decls: list[dict],
              inserts: list[dict], removals: list[dict], lock_args: list[dict], call_edits: list[dict],
              recipe: Recipe) -> None:
    """The caller's side of a carried pmd value: a pmd_t local, passed to
    the call, and a recheck after the caller takes the handed-out lock."""
    used = taken.setdefault(cl.function, _identifiers(source, shape))
    key = (cl.function, "carry")
    if key not in locals_done:  # one local per caller, however many lock sites it has
        locals_done[key] = _fresh(recipe.inserted["local"], used)
        _declare_at_top(cl.function, shape, f"{recipe.inserted['local_type']} {locals_done[key]};", decls,
                        first_stmt_decls)
    name = locals_done[key]
    if not any(e["pos"] == cl.call for e in call_edits):
        meta = [f"A{i + 1}" for i in range(len(cl.call_args))]
        meta.insert(carried.param_index, f"&{name}")
        call_edits.append({"pos": cl.call, "function": cl.function, "callee": carried.function,
                           "old": list(cl.call_args), "new_meta": meta})
    stmt = next((st for st in shape.statements if st.start == cl.lock), None)
    if stmt is None:
        raise RewriteError(f"{cl.function}(): cannot place the recheck after the lock at line {cl.lock[0]}")
    release = [f"{recipe.release['unmap_unlock']}({cl.table}, {cl.local});", f"{cl.table} = NULL;"]
    code = recipe.render("c/recheck.c.j2", value=name, parent=cl.pmd, release=release, action=[cl.action])
    if cl.moved is not None:
        pos, lhs, rhs = cl.moved
        removals.append({"pos": pos, "function": cl.function, "code": f"{lhs} = {rhs};"})
        lock_args.append({"pos": cl.lock, "function": cl.function, "old": lhs, "new": rhs})
        code = code.rstrip("\n") + f"\n{lhs} = {rhs};"
    inserts.append({"pos": cl.lock, "code": code.rstrip("\n"), "function": cl.function,
                    "why": f"{cl.function}(): recheck the pmd of the table {carried.function}() handed out"})


def _moved(site: Site, entry: Entry) -> list[tuple]:
    """The caller-visible assignments of a lock pointer that go after the
    recheck (pvmw->ptl = *ptlp; spin_lock(pvmw->ptl)): the lock is taken
    through the value, and the caller sees the member set only once the
    recheck passed.  None when the plan writes the failure body itself."""
    if entry.on_recheck_fail is not None:
        return []
    return [x for x in site.verdict.exposed if x[3] is not None]


def _form(site: Site) -> str:
    ctx = site.context
    if ctx is None or ctx.site.target is None:
        return "other"
    return "declared" if ctx.site.declared else "assign"


def _identifiers(source: str, shape: Shape) -> set[str]:
    return {t.text for t in shape.tokens(source) if t.kind == "ident"}


def _fresh(base: str, used: set[str]) -> str:
    name = base
    n = 2
    while name in used:
        name = f"{base}{n}"
        n += 1
    used.add(name)
    return name


def _local_name(site: Site, new: dict) -> str:
    """The recipe's local name (pmdval), or, when the table's variable
    has the recipe's table suffix, the same stem with it (src_pte ->
    src_pmdval): the name follows the table's."""
    target = site.context.site.target if site.context else None
    if target and len(target) == 1:
        m = re.fullmatch(r"([a-z0-9]+)" + re.escape(new["table_suffix"]), target[0])
        if m:
            return f"{m.group(1)}_{new['local']}"
    return new["local"]


def _indent_width(line: str) -> int:
    return len(line.expandtabs(8)) - len(line.expandtabs(8).lstrip())


def _declare(site: Site, shape: Shape, lines: list[str], name: str, decls: list[dict],
             first_stmt_decls: list[dict], local_type: str) -> None:
    """Place "TYPE NAME;" beside the declaration of the table's variable, or
    after the function's own declarations, or first in the function."""
    code = f"{local_type} {name};"
    target = site.context.site.target if site.context else None
    top = sorted(_top_level(shape.declarations), key=lambda d: d.start)
    if site.context and site.context.site.declared:
        # "pte_t *pte = <call>;" uses it: it goes after the declaration
        # before that one, or first in the function.
        for n, d in enumerate(top):
            if d.start[0] <= site.line <= d.end[0]:
                if n:
                    decls.append({"pos": top[n - 1].start, "code": code, "function": site.function})
                else:
                    first_stmt_decls.append({"pos": d.start, "code": code, "function": site.function})
                return
    if target and len(target) == 1:
        for d in top:
            decl_text = _slice(lines, d)
            if target[0] in expr_tokens(decl_text) and "(" not in decl_text:
                decls.append({"pos": d.start, "code": code, "function": site.function})
                return
    _declare_at_top(site.function, shape, code, decls, first_stmt_decls, f"{site.file}:{site.line}: ")


def _declare_at_top(function: str, shape: Shape, code: str, decls: list[dict], first_stmt_decls: list[dict],
                    where: str = "") -> None:
    """Place the declaration code after the function's own declarations,
    or first in its body."""
    top = sorted(_top_level(shape.declarations), key=lambda d: d.start)
    if top:
        decls.append({"pos": top[-1].start, "code": code, "function": function})
        return
    outer = _top_level(shape.statements)
    if not outer:
        raise RewriteError(f"{where}{function}(): cannot find where to declare {code}")
    first_stmt_decls.append({"pos": min(outer, key=lambda s: s.start).start, "code": code, "function": function})


def _top_level(spans: list[Stmt]) -> list[Stmt]:
    """Spans not inside a statement of the same function (the function's
    own block).  Declarations inside nested blocks are left alone."""
    return [d for d in spans if d.start[1] <= 1]


def _slice(lines: list[str], st: Stmt) -> str:
    (l1, c1), (l2, c2) = st.start, st.end
    if l1 == l2:
        return lines[l1 - 1][c1:c2]
    parts = [lines[l1 - 1][c1:]] + lines[l1:l2 - 1] + [lines[l2 - 1][:c2]]
    return "\n".join(parts)


def _statements_of(body: str) -> list[str]:
    """A failure body as a list of statement texts (lines joined by \\n)."""
    b = body.strip()
    if b.startswith("{") and b.endswith("}"):
        inner = b[1:-1]
        lines = [l for l in inner.split("\n") if l.strip()]
        if not lines:
            return []
        common = min(len(l) - len(l.lstrip("\t ")) for l in lines)
        return ["\n".join(l[common:].rstrip() for l in lines)]
    return [b]


def _insertion_point(shape: Shape, lock: Pos, lines: list[str]) -> Stmt | None:
    """The statement after which the lock is held: the child, of the
    innermost { } block around the lock, that contains the lock."""
    around = [s for s in shape.statements if s.contains(lock)]
    if not around:
        return None
    blocks = [s for s in around if _slice(lines, s).startswith("{")]
    inner_block = min(blocks, key=lambda s: (s.end[0] - s.start[0], s.end[1] - s.start[1]), default=None)
    inside = [s for s in around if inner_block is None or (s != inner_block and inner_block.start <= s.start and s.end <= inner_block.end)]
    if not inside:
        return None
    # the outermost statement within that block
    return max(inside, key=lambda s: (s.end[0] - s.start[0], -s.start[0], s.end[1] - s.start[1]))


def _rechecks(path: str, source: str, lines: list[str], site: Site, entry: Entry, shape: Shape,
              pmdval: str, recipe: Recipe) -> list[dict]:
    where = f"{site.file}:{site.line}: {site.function}()"
    ctx = site.context
    v = site.verdict
    if not v.lock_points:
        raise RewriteError(f"{where}: the lock is not taken in this function on the way to the write, so "
                           f"there is no place for a pmd_same() recheck; set recheck = \"dummy\" with a reason "
                           f"for {entry.key} in the plan")
    target = render(ctx.site.target) if ctx and ctx.site.target else None
    if target is None:
        raise RewriteError(f"{where}: the mapped table is not kept in a variable, so it cannot be released "
                           f"after a failed recheck; convert {entry.key} by hand or mark it ro/dummy in the plan")
    pmd = render(ctx.pmd)
    moved = _moved(site, entry)
    if entry.on_recheck_fail is None:
        for pos, lhs, rhs, taker in v.exposed:
            if taker is None:
                raise RewriteError(f"{where}: '{lhs} = {rhs};' is set between the call and the lock, where the "
                                   f"caller sees it, and a failed recheck would leave it set; move it after the "
                                   f"lock, or write the whole failure body as on_recheck_fail for {entry.key} "
                                   f"in the plan")
    out = []
    for n, lock in enumerate(v.lock_points):
        stmt = _insertion_point(shape, lock, lines)
        if stmt is None:
            raise RewriteError(f"{where}: cannot place the recheck after the lock at line {lock[0]}")
        given = entry.body_for(n)
        if given is not None:
            # The plan's body replaces the tool's own: release and action.
            release, action = [], _statements_of("{\n" + given.strip() + "\n}")
        elif lock in v.relocks:
            raise RewriteError(f"{where}: the lock is taken again at line {lock[0]} after the table was unmapped, "
                               f"so the body of its recheck cannot be derived; give it as item {n + 1} of the "
                               f"list on_recheck_fail for {entry.key} in the plan")
        else:
            action = _failure_action(lines, site, shape, target, where, entry)
            release = _release(source, lines, site, shape, lock, action, target, recipe.release)
            for _pos, lhs, rhs, taker in moved:  # the lock is now taken through the value
                release = [_replace_expr(r, lhs, rhs) for r in release]
        code = recipe.render("c/recheck.c.j2", value=pmdval, parent=pmd, release=release, action=action)
        for _pos, lhs, rhs, taker in moved:
            if taker == lock:  # set once the recheck at its lock passed
                code = code.rstrip("\n") + f"\n{lhs} = {rhs};"
        out.append({"pos": stmt.start, "code": code.rstrip("\n"), "function": site.function,
                    "why": f"{site.key}: recheck the pmd after the lock at line {lock[0]}"})
    return out


def _replace_expr(stmt: str, old: str, new: str) -> str:
    """stmt with the expression old (compared token by token) replaced by new."""
    texts = [t.text for t in tokens(stmt)]
    want = [t.text for t in tokens(old)]
    out = []
    i = 0
    while i < len(texts):
        if texts[i:i + len(want)] == want and (i == 0 or texts[i - 1] in ("(", ",", "=")):
            out.append(new)
            i += len(want)
        else:
            out.append(texts[i])
            i += 1
    return render(tuple(out))


def _failure_action(lines: list[str], site: Site, shape: Shape, target: str, where: str, entry: Entry) -> list[str]:
    """What the function does when the mapping fails: the body of its check."""
    body = shape.failures.get((site.line, site.column))
    if body is None:
        found = ("the paths from the call reach different 'if (!" + target + ")' checks"
                 if (site.line, site.column) in shape.failures
                 else f"no 'if (!{target})' check follows the call")
        raise RewriteError(f"{where}: {found}, so the action for a changed pmd is unknown; "
                           f"set on_recheck_fail (the whole failure body) for {entry.key} in the plan")
    return _statements_of(_slice(lines, body))


def _release(source: str, lines: list[str], site: Site, shape: Shape, lock: Pos, action: list[str],
             target: str, release: dict[str, str]) -> list[str]:
    """Unlock and unmap as the function itself does, unless the failure
    action jumps to a label whose code does that already."""
    joined = " ".join(action)
    m = re.fullmatch(r"goto (\w+);", joined.strip())
    unlocks = [u for u in site.verdict.unlock_points if u > lock]
    if m:
        label_line = _label_line(source, m.group(1), shape)
        if label_line is not None:
            after_label = [u for u in site.verdict.unlock_points if u[0] > label_line]
            if after_label:
                return []
    out: list[str] = []
    lock_stmt = _call_stmt(shape, lock, lines)
    lock_text = _slice(lines, lock_stmt) if lock_stmt else ""
    if unlocks:
        u = unlocks[0]
        stmt = _insertion_point(shape, u, lines)
        stmt_text = _slice(lines, stmt) if stmt else ""
        # "out: pte_unmap_unlock(pte, ptl);" releases; the label stays put.
        stmt_text = re.sub(r"^(?!default\b)[A-Za-z_]\w*\s*:(?!:)\s*", "", stmt_text)
        m2 = re.fullmatch(re.escape(release["unmap_unlock"]) + r"\((.*),\s*(.*)\);", " ".join(stmt_text.split()))
        if m2:
            out.append(f"{release['unmap_unlock']}({target}, {m2.group(2)});")
        elif stmt_text:
            out.extend(_statements_of(stmt_text))
            out.append(f"{release['unmap']}({target});")
    else:
        lock_arg = re.search(r"\(\s*([^,()]+(?:->\w+)*)", lock_text)
        lock_expr = lock_arg.group(1).strip() if lock_arg else render(site.context.locks and sorted(site.context.locks)[0] or ())
        out.append(f"{release['unmap_unlock']}({target}, {lock_expr});")
    if site.context and site.context.site.target and len(site.context.site.target) > 1:
        # The caller sees the member: leave it as a failed mapping leaves it.
        out.append(f"{target} = NULL;")
    return out


def _call_stmt(shape: Shape, pos: Pos, lines: list[str]) -> Stmt | None:
    around = [s for s in shape.statements if s.contains(pos)]
    return min(around, key=lambda s: (s.end[0] - s.start[0], s.end[1] - s.start[1]), default=None)


def _label_line(source: str, label: str, shape: Shape) -> int | None:
    # A label on the body's last line ends no statement: take one line more.
    toks = shape.tokens(source, extra_lines=1)
    for i, t in enumerate(toks[:-1]):
        if t.kind == "ident" and t.text == label and toks[i + 1].text == ":" and (i == 0 or toks[i - 1].text in (";", "}", "{", ":")):
            return t.line
    return None


# ------------------------------------------------------------------ checks


def verify(path: str, before: bytes, new: bytes, sites: list[Site], plan: Plan, names: Names, old: str) -> None:
    """Every planned edit landed: each converted call is gone and has its
    new name; other mentions of the old name are left as they were."""
    def count(data: bytes, name: str) -> int:
        text_ = data.decode("utf-8", errors="surrogateescape")
        return sum(1 for t in tokens(text_) if t.kind == "ident" and t.text == name)

    want_ro = sum(1 for s in sites if plan.entry(s).verdict == "ro")
    want_rw = len(sites) - want_ro
    left = count(new, old) - (count(before, old) - len(sites))
    got_ro = count(new, names.readonly) - count(before, names.readonly)
    got_rw = count(new, names.maywrite) - count(before, names.maywrite)
    if left or got_ro != want_ro or got_rw != want_rw:
        raise RewriteError(f"{path}: spatch did not make every planned edit ({left} calls of {old}() left, "
                           f"{got_ro}/{want_ro} read-only and {got_rw}/{want_rw} may-write calls made); "
                           f"report this with the output of --emit-cocci")
