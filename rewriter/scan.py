"""Stage 2: sites.  Find every call in the tree, classify it, and list the
other mentions of the name.

tree -> candidate files (git grep on the revision) -> facts.cocci ->
paths.cocci -> verdicts -> Scan.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import re
from dataclasses import dataclass, field

from rewriter import cache, callers, carry, cocci, verdicts
from rewriter.errors import InputError
from rewriter.clex import body_names, function_spans, functions_reaching, keep_functions, render, tokens
from rewriter.facts import FileFacts, parse
from rewriter.recipe import Recipe
from rewriter.runner import FileResult, Runner
from rewriter.tree import Tree
from rewriter.verdicts import Paths, Verdict

FACT = "@@REWRITER-FACT@@"
PATH = "@@REWRITER-PATH@@"
C_SUFFIXES = (".c", ".h")


@dataclass(frozen=True)
class Site:
    file: str
    line: int
    column: int
    function: str
    call: str
    index: int  # of the call within its function, in source order
    verdict: Verdict
    # What the rewrite needs to know: the names the table, its lock and its
    # pmd go by at this call (not part of the JSON report).
    context: verdicts.SiteContext | None = field(default=None, compare=False, repr=False)

    @property
    def key(self) -> str:
        return f"{self.file}:{self.function}:{self.index}"


@dataclass(frozen=True)
class Mention:
    file: str
    line: int
    kind: str  # declaration, definition, documentation, comment, other


@dataclass(frozen=True)
class FileError:
    file: str
    message: str


@dataclass(frozen=True)
class Scan:
    tree: str
    rev: str
    function: str
    sites: tuple[Site, ...]
    mentions: tuple[Mention, ...]
    errors: tuple[FileError, ...]
    # Calls a person decided to leave as they are (plan: decision = "keep");
    # not among sites, and while there are any the old function stays.
    kept: tuple[Site, ...] = ()
    # The recipe the scan was made with: the stages after it follow it.
    recipe: Recipe | None = field(default=None, compare=False, repr=False)

    def to_json(self) -> dict:
        return {
            "tree": self.tree,
            "rev": self.rev,
            "function": self.function,
            "sites": [
                {
                    "file": s.file, "line": s.line, "function": s.function, "call": s.call,
                    "verdict": s.verdict.verdict, "recheck": s.verdict.recheck,
                    "review": s.verdict.review, "question": s.verdict.question,
                    "basis": s.verdict.basis,
                    "write_locked_by": [{"function": f, "file": p} for f, p in s.verdict.write_locked_by],
                    "reasons": list(s.verdict.reasons),
                    "evidence": [{"line": e.line, "text": e.text} for e in s.verdict.evidence],
                }
                for s in self.sites
            ],
            "mentions": [{"file": m.file, "line": m.line, "kind": m.kind} for m in self.mentions],
            "errors": [{"file": e.file, "message": e.message} for e in self.errors],
        }


def scan(tree: Tree, runner: Runner, recipe: Recipe, depth: int = callers.DEPTH) -> Scan:
    runner.check_spatch()
    function = recipe.function
    hits = grep(tree, runner, (function,))[function]
    if not hits:
        raise InputError(f"{function} does not occur in {tree.path} at {tree.rev[:12]}; "
                         f"nothing to convert (check --tree and --rev)")
    files = sorted({path for path, _n, _t in hits})
    c_files = [f for f in files if f.endswith(C_SUFFIXES)]
    tree.blob_ids(c_files)  # one ls-tree for all of them
    sources = {f: tree.read(f) for f in c_files}
    # A scan is a function of the files that name the function, the
    # rewriter's own code and templates and the spatch version, and of
    # what the caller walk read: the grep hits of the names it walked and
    # the files it read.  A scan whose walk reads the same in this tree
    # is read back whole.
    entry = _stored_scan_entry(runner, recipe, hits, sources, str(depth))
    stored = _load_scan(entry)
    if stored is not None and _same_walk(tree, stored[1]):
        return dataclasses.replace(stored[0], tree=tree.path, rev=tree.rev, recipe=recipe)
    result, walked = _scan(tree, runner, recipe, hits, files, sources, depth)
    if entry is not None and not result.errors:  # errors may be timeouts: ask again next time
        cache.store(entry, pickle.dumps((dataclasses.replace(result, recipe=None), walked),
                                        protocol=pickle.HIGHEST_PROTOCOL))
    return dataclasses.replace(result, recipe=recipe)


def _same_walk(tree: Tree, walked: tuple) -> bool:
    grepped, files = walked
    names = [name for name, _hits in grepped]
    now = tree.grep_words(names, callers.C_SUFFIXES) if names else {}
    if any(tuple(map(tuple, now.get(name, []))) != hits for name, hits in grepped):
        return False
    return not files or tree.blob_ids([p for p, _id in files]) == dict(files)


def _stored_scan_entry(runner: Runner, recipe: Recipe, hits: list, sources: dict[str, bytes], walk: str):
    if runner.cache is None:
        return None
    parts = [part.encode("utf-8", "surrogateescape")
             for part in (cache.code_digest(), runner.cache.version, recipe.digest, json.dumps(hits), walk)]
    parts += [path.encode("utf-8", "surrogateescape") + b"\0" + sources[path] for path in sorted(sources)]
    return cache.entry("scans", *parts)


def _load_scan(entry) -> tuple[Scan, tuple] | None:
    return cache.load_pickle(entry, lambda stored: isinstance(stored, tuple) and len(stored) == 2
                             and isinstance(stored[0], Scan))


def _carry(text: str, facts: FileFacts, ctx: verdicts.SiteContext, v: Verdict, recipe: Recipe) -> Verdict:
    """A call whose table can reach its caller mapped and unlocked: carry
    the pmd value to the callers' lock sites (rewriter.carry), or make the
    call a review that says why the tool cannot."""
    site = ctx.site
    found = carry.plan(text, site.function, facts.params.get(site.function, {}), site.args[3], ctx.pmd,
                       site.target or (), ctx.api)
    if isinstance(found, carry.Carry):
        where = ", ".join(sorted({f"{c.function}()" for c in found.sites}))
        lines = text.splitlines()
        evidence = v.evidence + tuple(
            verdicts.Evidence(c.lock[0], f"{c.function}() takes the lock {site.function}() hands out: "
                                         f"{lines[c.lock[0] - 1].strip()}") for c in found.sites)
        return dataclasses.replace(v, carry=found, evidence=evidence, reasons=v.reasons + (
            f"the pmd value goes to {where} through a new {recipe.inserted['name']} parameter, for a recheck where "
            f"{'they take' if len(found.sites) > 1 else 'it takes'} the lock",))
    question = (f"{site.function}() can return at line {v.hands_out} with the table still mapped and its lock "
                f"not taken, so a caller that takes the lock later needs a recheck with the pmd value carried "
                f"to it, and {found}; convert it and its callers by hand, or set decision = \"keep\"")
    return dataclasses.replace(v, review=True, basis="review", question=v.question or question)


def _write_locked(walker: callers.Walker, runner: Runner, sites: list[Site],
                  recipe: Recipe) -> tuple[list[Site], tuple]:
    """The first half of the rule: a may-write call whose every caller chain
    holds the mmap_lock for write needs no pmd_same() recheck (the table
    cannot be freed under that lock), so it gets a dummy pmdval.  Only the
    calls that would otherwise need the recheck are walked."""
    asked = [s for s in sites if s.verdict.verdict == "rw" and s.verdict.recheck == "pmd_same"]
    if not asked:
        return sites, ((), ())
    if runner.progress:
        runner.progress("callers", 0, 1, "walks")
    found = walker.write_locked([(s.file, s.function, (s.line, s.column)) for s in asked])
    if runner.progress:
        runner.progress("callers", 1, 1, "walks")
    out = []
    lock = recipe.write_lock  # "the mmap_lock": how the texts name the lock the walk looks for
    for s in sites:
        answer = found.get((s.file, s.function, (s.line, s.column)))
        if answer is None:
            out.append(s)
            continue
        v = s.verdict
        evidence = list(v.evidence)
        at = next((e.text for e in v.evidence if e.line == s.line), "")
        for chain in answer.chains:
            path = " <- ".join(f"{fn}()" for fn, _f in chain.functions)
            top, top_file = chain.top
            if chain.covered:
                evidence.append(verdicts.Evidence(s.line, f"caller chain {path}: {top}() in {top_file} holds "
                                                     f"{lock} for write: {at}"))
            else:
                evidence.append(verdicts.Evidence(s.line, f"caller chain {path}: not known to hold {lock} "
                                                     f"for write, {chain.why}: {at}"))
        if answer.held and not v.review:
            holders = answer.holders
            where = ", ".join(f"{fn}() in {f}" for fn, f in holders)
            reasons = v.reasons + (f"every caller chain holds {lock} for write ({where}), so the "
                                   f"table cannot be freed or replaced under the lock",)
            v = dataclasses.replace(v, recheck="dummy", reasons=reasons, evidence=tuple(evidence),
                                    basis="mmap_write", write_locked_by=holders)
        else:
            v = dataclasses.replace(v, evidence=tuple(evidence))
        out.append(dataclasses.replace(s, verdict=v))
    return out, walker.depends_on()


def _scan(tree: Tree, runner: Runner, recipe: Recipe, hits: list, files: list[str],
          sources: dict[str, bytes], depth: int = callers.DEPTH) -> tuple[Scan, tuple]:
    walker = callers.Walker(tree, runner, recipe.api, depth)
    try:
        return _scan_with(walker, tree, runner, recipe, hits, sources, depth)
    finally:
        walker.close()


def _calling_functions(text: str, function: str) -> set[str]:
    """The functions defined in text whose bodies name function."""
    return {fn for fn, idents in body_names(text).items() if fn and function in idents}


def _scan_with(walker: callers.Walker, tree: Tree, runner: Runner, recipe: Recipe, hits: list,
               sources: dict[str, bytes], depth: int) -> tuple[Scan, tuple]:
    function, api = recipe.function, recipe.api
    texts = {f: data.decode("utf-8", errors="replace") for f, data in sources.items()}
    facts_rule = cocci.render("facts.cocci.j2", name=function, marker=FACT)
    # Only the functions with a call, and the same-file functions they can
    # reach, matter to the verdicts: spatch need not walk the rest (lines
    # and columns stay where they are).
    exact = {f: data.decode("utf-8", "surrogateescape") for f, data in sources.items()}
    narrowed = {f: keep_functions(text, functions_reaching(text, function)).encode("utf-8", "surrogateescape")
                for f, text in exact.items()}
    if depth > 0:
        # The walk starts from functions with a call: the grep for their
        # callers and the reading of those files go on beside the spatch
        # runs of the scan (rewriter.callers, Walker.read_ahead).
        walker.read_ahead((fn, f) for f, text in exact.items() for fn in _calling_functions(text, function))
    results = runner.run_dir(facts_rule, narrowed, FACT, step="facts")
    errors: list[FileError] = []
    all_facts: dict[str, FileFacts] = {}
    for res in results:
        if res.error:
            errors.append(FileError(res.path, res.error))
            continue
        all_facts[res.path] = parse(res.path, res.records)

    # What each file's calls and helpers do, before asking about paths.
    prepared = {}
    path_inputs = {}
    for path, facts in all_facts.items():
        if not facts.sites:
            continue
        summaries = verdicts.summarise_helpers(facts, api)
        contexts = [verdicts.site_context(facts, s, function, api) for s in facts.sites]
        events = [verdicts.site_events(facts, ctx, summaries) for ctx in contexts]
        prepared[path] = (facts, summaries, contexts, events)
        sites = {s.pos for s in facts.sites}
        locks = {e.pos for evs in events for e in evs if e.kind == "lock"}
        unlocks = {e.pos for evs in events for e in evs if e.kind == "unlock"}
        # The ends each question needs (see verdicts.decide): every event
        # after a call; after a lock, what may be done with it held (writes,
        # unseen calls, returns); and the writes a check must guard.
        ends = {"reach": {e.pos for evs in events for e in evs} | locks,
                "held": {e.pos for evs in events for e in evs if e.kind in ("write", "unseen", "return", "exit")},
                "unguarded": {e.pos for evs in events for e in evs if e.kind == "write"}}
        # Helpers that take the lock and write themselves: their own paths
        # tell whether a pte_same() check guards those writes.
        for name in {e.helper for evs in events for e in evs if e.self_locked}:
            locks |= summaries[name].lock_calls
            for kind in ends:
                ends[kind] |= summaries[name].write_calls
        functions = {s.function for s in facts.sites}
        functions |= {e.helper for evs in events for e in evs if e.self_locked}
        callee = {c.pos: c.name for c in facts.calls}
        path_inputs[path] = (sites, locks, ends, unlocks, functions, callee)

    paths_by_file = _ask_paths(runner, sources, path_inputs, function, errors, api.comparators)

    # Calls in the body of a #define cannot be converted like the others:
    # they are errors, named by file and line, and neither sites nor mentions.
    in_macros = {path: _macro_lines(text, function) for path, text in texts.items()}
    for path, found in sorted(in_macros.items()):
        for line, (macro, start) in sorted(found.items()):
            errors.append(FileError(path, f"line {line}: {function}() is named in the body of the macro "
                                          f"{macro} (#define at line {start}); rewriter does not convert "
                                          f"calls inside macro definitions: convert it by hand, or make "
                                          f"the macro a function"))

    sites_out: list[Site] = []
    for path, (facts, summaries, contexts, events) in prepared.items():
        if path not in paths_by_file:  # its control flow could not be analysed: reported above
            continue
        lines = texts[path].splitlines()
        per_fn: dict[str, int] = {}
        for ctx, evs in sorted(zip(contexts, events), key=lambda ce: ce[0].site.pos):
            if ctx.site.pos[0] in in_macros[path]:
                continue
            guards = verdicts.site_guards(facts, ctx, evs, texts[path])
            v = verdicts.decide(facts, ctx, evs, paths_by_file.get(path, Paths()), summaries, lines, guards)
            if v.hands_out:
                v = _carry(texts[path], facts, ctx, v, recipe)
            idx = per_fn.get(ctx.site.function, 0)
            per_fn[ctx.site.function] = idx + 1
            sites_out.append(Site(path, ctx.site.pos[0], ctx.site.pos[1], ctx.site.function,
                                  _call_text(function, ctx.site.args), idx, v, ctx))

    sites_out, walked = _write_locked(walker, runner, sites_out, recipe)

    mentions, missed = _mentions(hits, function, texts, sites_out)
    mentions = [m for m in mentions if m.line not in in_macros.get(m.file, {})]
    for path, line in missed:
        # A file whose control flow could not be analysed is reported once, above.
        if path in all_facts and not (path in prepared and path not in paths_by_file):
            errors.append(FileError(path, f"line {line}: spatch could not parse the code around this call of "
                                          f"{function}(); fix the syntax or report it"))
    sites_out.sort(key=lambda s: (s.file, s.line, s.column))
    return Scan(tree.path, tree.rev, function, tuple(sites_out), tuple(mentions),
                tuple(sorted(errors, key=lambda e: e.file))), walked


def grep(tree: Tree, runner: Runner, words) -> dict:
    """tree.grep_words(words), shown as a step of its own on a terminal: on
    a kernel tree it takes seconds unless the cache has the answer."""
    if runner.progress:
        runner.progress("grep", 0, 1, "passes over the tree")
    found = tree.grep_words(words)
    if runner.progress:
        runner.progress("grep", 1, 1, "passes over the tree")
    return found


# How many one-function files one spatch run may take (see _ask_paths):
# the run's timeout is a file's, and a run that fails is made again file
# by file.
TOGETHER = 16


def _ask_paths(runner: Runner, sources: dict[str, bytes], inputs: dict, function: str,
               errors: list[FileError], comparators: tuple[str, ...]) -> dict[str, Paths]:
    """The answers of paths.cocci for each file with calls.

    Paths do not leave a function, so each question is asked of one file
    per function asked about (that function kept, every other body blanked
    in place), and one spatch run takes many such files (--dir): no pairs
    of ends in two functions, and one start of spatch per question and
    TOGETHER files.  A run that fails or times out is made again per
    file of the tree, as one file each, so that the file to blame is named.
    """
    units: dict[str, tuple[str, bytes, list[tuple[str, str]], dict]] = {}  # name -> (path, data, queries, values)
    per_file: dict[str, tuple[bytes, list[tuple[str, str]], dict]] = {}
    uncovered: set[str] = set()
    for path, (sites, locks, ends, unlocks, functions, callee) in sorted(inputs.items()):
        text = sources[path].decode("utf-8", errors="surrogateescape")
        narrowed = keep_functions(text, functions).encode("utf-8", errors="surrogateescape")
        per_file[path] = (narrowed, *_questions(path, sites, locks, ends, unlocks, callee))
        covered: set = set()
        for fn in sorted(functions):
            spans = function_spans(text, {fn})

            def inside(positions: set) -> set:
                return {p for p in positions if any(a <= p[0] <= b for a, b in spans)}

            name = f"u{len(units)}/{path}"
            queries, values = _questions(name, inside(sites), inside(locks),
                                         {kind: inside(v) for kind, v in ends.items()}, inside(unlocks), callee)
            if queries:
                units[name] = (path, keep_functions(text, {fn}).encode("utf-8", errors="surrogateescape"),
                               queries, values)
                covered |= values["sites_set"]
        if covered != sites:  # a call the functions' bodies do not hold: ask of the file as it is
            uncovered.add(path)

    # Every question, with the one-function files it is asked of, in runs
    # of TOGETHER at most; the runs that take longest first.
    work: dict[tuple[tuple[str, str], int], list[str]] = {}
    asked = sorted({q for _p, _d, queries, _v in units.values() for q in queries})
    for q in asked:
        names = [n for n, (_p, _d, queries, _v) in units.items() if q in queries]
        names.sort(key=lambda n: -_pairs(units[n][3], q))
        for k in range(0, len(names), TOGETHER):
            work[(q, k // TOGETHER)] = names[k:k + TOGETHER]

    def ask(key) -> FileResult:
        q, _chunk = key
        names = work[key]
        rule = cocci.render("paths.cocci.j2", query=q, **_merged([units[n][3] for n in names], function, q, comparators))
        return runner.run_together(rule, {n: units[n][1] for n in names}, PATH, label=f"{q[0]}/{q[1]}")

    # spatch checks each pair of ends on its own: the runs with the most
    # pairs go first, so that the last to end is a short one.
    order = sorted(work, key=lambda key: -sum(_pairs(units[n][3], key[0]) for n in work[key]))
    answers = runner.map(ask, order, "paths", unit="questions")

    found: dict[str, dict[str, set]] = {path: _no_answers() for path in per_file}
    redo: set[tuple[str, tuple[str, str]]] = set()  # (path, query)
    for key, res in answers.items():
        if res.error:
            redo |= {(units[n][0], key[0]) for n in work[key]}
            continue
        for r in res.records:
            _answer(found, units[r["file"]][0], r)
    for path in uncovered:
        redo |= {(path, q) for q in per_file[path][1]}
    failed: set[str] = set()
    if redo:
        quiet = runner.quiet()
        again = runner.map(
            lambda key: quiet.run(cocci.render("paths.cocci.j2", query=key[1],
                                               **_merged([per_file[key[0]][2]], function, key[1], comparators)),
                                  {key[0]: per_file[key[0]][0]}, PATH)[0],
            sorted(redo), "paths, file by file", unit="questions")
        for (path, _q), res in sorted(again.items()):
            if res.error:
                if path not in failed:
                    errors.append(FileError(path, f"control-flow analysis: {res.error}"))
                failed.add(path)
                continue
            for r in res.records:
                _answer(found, path, r)
    return {path: Paths(frozenset(k["reach"]), frozenset(k["after"]), frozenset(k["held"]),
                        frozenset(k["unguarded"]))
            for path, k in found.items() if path not in failed}


def _no_answers() -> dict[str, set]:
    return {"reach": set(), "after": set(), "held": set(), "unguarded": set()}


def _answer(found: dict[str, dict[str, set]], path: str, record: dict) -> None:
    found[path][record["kind"]].add((tuple(record["from"]), tuple(record["to"])))


def _questions(name: str, sites: set, locks: set, ends: dict[str, set], unlocks: set,
               callee: dict) -> tuple[list[tuple[str, str]], dict]:
    """The questions to ask of one file (named as spatch will see it) and
    what paths.cocci.j2 needs to know of it: ends holds the positions each
    kind of question ends at (reach, held, unguarded)."""
    # The names called at each kind of position let spatch narrow the
    # matching itself; calls through a pointer have no name.
    def named(positions: set) -> list[str]:
        return sorted({callee[p] for p in positions if callee.get(p)})

    values = dict(name=name, sites_set=sites, locks_set=locks, unlocks_set=unlocks, ends=ends,
                  lock_names=named(locks), unlock_names=named(unlocks),
                  event_names={kind: named(v) for kind, v in ends.items()},
                  pointer_events={kind: any(p in callee and callee[p] is None for p in v) for kind, v in ends.items()})

    def kinds_of_end(kind: str) -> list[str]:
        return ((["call"] if values["event_names"][kind] else [])
                + (["pointer_call"] if values["pointer_events"][kind] else []))

    # A function without a call may still take the lock and write (a
    # helper that locks for its caller): its own paths are asked about.
    queries = [("reach", e) for e in kinds_of_end("reach") + ["returned"]] if sites else []
    if values["lock_names"]:
        queries += [("after", "relock")]
        if ends["held"]:
            queries += [("held", e) for e in kinds_of_end("held") + ["returned"]]
        queries += [("unguarded", e) for e in kinds_of_end("unguarded")]
    return queries, values


def _pairs(values: dict, query: tuple[str, str]) -> int:
    """How many pairs of ends a question makes in one file."""
    kind = query[0]
    if kind == "after":
        return len(values["locks_set"]) ** 2
    first = values["sites_set"] if kind == "reach" else values["locks_set"]
    return len(first) * len(values["ends"][kind])


def _merged(values: list[dict], function: str, query: tuple[str, str], comparators) -> dict:
    """paths.cocci.j2's values for one question, for several files at once."""
    kind = "reach" if query[0] == "after" else query[0]  # after: ends are locks

    def table(sets) -> str:
        return "{" + ", ".join(f"{v['name']!r}: {_pyset(s)}" for v, s in zip(values, sets)) + "}"

    def union(lists) -> list[str]:
        return sorted({n for names in lists for n in names})

    return dict(marker=PATH, comparators=list(comparators), function=function,
                sites=table(v["sites_set"] for v in values), locks=table(v["locks_set"] for v in values),
                events=table(v["ends"][kind] for v in values), unlocks=table(v["unlocks_set"] for v in values),
                lock_names=union(v["lock_names"] for v in values),
                event_names=union(v["event_names"][kind] for v in values),
                unlock_names=union(v["unlock_names"] for v in values),
                pointer_events=any(v["pointer_events"][kind] for v in values))


def _pyset(positions: set) -> str:
    return "{" + ", ".join(f"({l}, {c})" for l, c in sorted(positions)) + "}" if positions else "set()"


def _call_text(function: str, args: tuple[tuple[str, ...], ...]) -> str:
    return f"{function}(" + ", ".join(render(a) for a in args) + ")"


def _mentions(hits: list[tuple[str, int, str]], function: str, texts: dict[str, str],
              sites: list[Site]) -> tuple[list[Mention], list[tuple[str, int]]]:
    """Every line naming the function that is not one of the sites.

    A line of code that names it and is not a site is a call spatch did not
    see: it is returned in the second list so that it is never dropped
    silently.
    """
    site_lines = {(s.file, s.line) for s in sites}
    mentions: list[Mention] = []
    missed: list[tuple[str, int]] = []
    by_file: dict[str, list[int]] = {}
    for path, line, _text in hits:
        by_file.setdefault(path, []).append(line)
    for path, lines in sorted(by_file.items()):
        if not path.endswith(C_SUFFIXES):
            kind = "documentation" if path.startswith("Documentation/") or path.endswith((".rst", ".txt")) else "other"
            mentions.extend(Mention(path, n, kind) for n in lines)
            continue
        kinds = _classify_c_lines(texts.get(path, ""), function)
        for n in lines:
            if (path, n) in site_lines:
                continue
            kind = kinds.get(n, "other")
            if kind == "code":
                missed.append((path, n))
                kind = "other"
            mentions.append(Mention(path, n, kind))
    return mentions, missed


def _macro_lines(text: str, function: str) -> dict[int, tuple[str, int]]:
    """Lines where function is named in the body of a #define (not as the
    name the #define defines): line -> (macro name, line of its #define)."""
    lines = text.split("\n")
    out: dict[int, tuple[str, int]] = {}
    for t in tokens(text):
        if t.kind != "ident" or t.text != function or not t.preproc:
            continue
        start = t.line
        while start > 1 and lines[start - 2].rstrip().endswith("\\"):
            start -= 1
        m = re.match(r"\s*#\s*define\s+(\w+)", lines[start - 1])
        if m and m.group(1) != function:
            out[t.line] = (m.group(1), start)
    return out


def _classify_c_lines(text: str, function: str) -> dict[int, str]:
    """For each line where the name occurs: comment, declaration, definition,
    macro (a #define) or code."""
    toks = tokens(text)
    kinds: dict[int, str] = {}
    for i, t in enumerate(toks):
        if t.kind == "comment" and function in t.text:
            for k, line_text in enumerate(t.text.splitlines()):
                if function in line_text:
                    kinds.setdefault(t.line + k, "comment")
            continue
        if t.kind != "ident" or t.text != function:
            continue
        if t.preproc:
            kinds[t.line] = "other"
            continue
        if i + 1 < len(toks) and toks[i + 1].text == "(" and _at_file_scope(toks, i):
            close = _matching(toks, i + 1)
            nxt = toks[close + 1].text if close + 1 < len(toks) else ""
            kinds[t.line] = "definition" if nxt == "{" else "declaration" if nxt == ";" else "code"
        else:
            kinds[t.line] = "code"
    return kinds


def _at_file_scope(toks, i: int) -> bool:
    depth = 0
    for t in toks[:i]:
        if t.kind == "punct" and not t.preproc:
            if t.text == "{":
                depth += 1
            elif t.text == "}":
                depth -= 1
    return depth == 0


def _matching(toks, i: int) -> int:
    depth = 0
    for j in range(i, len(toks)):
        if toks[j].text == "(":
            depth += 1
        elif toks[j].text == ")":
            depth -= 1
            if depth == 0:
                return j
    return len(toks) - 1
