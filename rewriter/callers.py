"""Walk the callers of a function across the tree, to tell whether every
call chain that reaches it holds the mmap_lock for write.

A chain is followed up, caller by caller, until a function holds the lock
for write on every path to the call of the one below it (the chain is
covered there), or until it cannot be followed: a function with no caller
in the tree (an entry point), a function that is also used as a value
(a function pointer, an ops table), named in a macro, exported to modules,
or the depth limit.  Those chains are not covered, and say why.

Which callers a function has is read from the source at the revision
(git grep, then the C lexer); whether a caller holds the lock on every
path to its call is asked of spatch (cocci/writelocked.cocci.j2), one
one-function file per call, many to a run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rewriter import cocci
from rewriter.recipe import Knowledge
from rewriter.clex import _definitions_of, body_names, column, defines_static, keep_functions, tokens
from rewriter.runner import Background, Runner
from rewriter.tree import FIXED_WORDS, Tree

MARKER = "@@REWRITER-WRITELOCKED@@"
DEPTH = 8  # callers above the function with the call; --caller-depth
# The walk follows calls in C sources only: the grep reads no other file
# (an assembly caller, in a .S, was never followed; the pathspec only
# spares git the reading of the files whose hits were dropped).
C_SUFFIXES = (".c", ".h")


@dataclass(frozen=True)
class Chain:
    """One way up from the function with the call.  functions: (name, file)
    from that function up to where the walk stopped."""

    functions: tuple[tuple[str, str], ...]
    covered: bool
    why: str  # covered: "takes it" / "asserts it"; otherwise why the walk stopped there

    @property
    def top(self) -> tuple[str, str]:
        return self.functions[-1]


@dataclass(frozen=True)
class WriteLock:
    """The answer for one function: every chain, and whether all hold the lock."""

    chains: tuple[Chain, ...]

    @property
    def held(self) -> bool:
        return bool(self.chains) and all(c.covered for c in self.chains)

    @property
    def holders(self) -> tuple[tuple[str, str], ...]:
        return tuple(dict.fromkeys(c.top for c in self.chains if c.covered))

    @property
    def open_chains(self) -> tuple[Chain, ...]:
        return tuple(c for c in self.chains if not c.covered)


@dataclass(frozen=True)
class _Ref:
    file: str
    function: str | None  # enclosing function, None at file scope
    line: int
    col: int
    kind: str  # call, value, macro, export


class Walker:
    """One walk per scan: callers and answers are remembered across calls."""

    def __init__(self, tree: Tree, runner: Runner, api: Knowledge, depth: int = DEPTH):
        self.tree = tree
        self.api = api
        self.runner = runner
        self.depth = depth
        self._texts: dict[str, str] = {}
        self._refs: dict[tuple[str, str], list[_Ref]] = {}
        self._held: dict[tuple[str, int, int], bool] = {}
        self.files_read: set[str] = set()
        self.grepped: dict[str, list] = {}  # name -> the grep hits its callers were found from
        self.spatch_runs = 0
        self._ahead: Background | None = None
        self._read_for: set[tuple[str, str]] = set()  # (function, file) pairs read ahead for
        # The names whose callers are still wanted, once the walk knows
        # (None: all): the reading ahead skips the files of the others.
        self._wanted: set[str] | None = None

    # ------------------------------------------------------------ reading ahead

    def read_ahead(self, functions) -> None:
        """Start, in a thread of its own, what finding the callers of these
        (function, file) pairs will need: the git grep for the names that
        are not static, and the files it finds them in, read and lexed.
        It only fills the memos of the tree and the lexer, so the walk
        answers and records the same with it or without it; it overlaps
        the spatch runs of the scan, which leave the GIL free.  (Reading
        ahead at each level of the walk, beside its spatch question, did
        not pay: the last level's grep is mostly wasted, and on a bare
        clone one grep costs seconds.)  Any failure here only means that
        the walk does that work itself."""
        todo = sorted(set(functions) - self._read_for)
        if not todo:
            return
        self.wait_ahead()
        self._read_for.update(todo)
        self._wanted = None
        self._ahead = Background(lambda: self._read_ahead(todo), name="rewriter-callers")

    def wait_ahead(self) -> None:
        """Join the reading ahead (even through an interrupt, which is
        raised once it has stopped: it may be writing a cache entry)."""
        if self._ahead is not None:
            ahead, self._ahead = self._ahead, None
            ahead.join()

    def close(self) -> None:
        """Stop reading ahead."""
        self.wait_ahead()

    def _read_ahead(self, todo: list[tuple[str, str]]) -> None:
        try:
            tree = self.tree  # the gateway's blob reader takes one thread at a time

            def lexed(path: str) -> str:
                text = tree.read(path).decode("utf-8", errors="surrogateescape")
                _definitions_of(text)  # and so its tokens
                return text

            names = sorted({fn for fn, path in todo if not defines_static(lexed(path), fn)})
            if not names or len(names) > FIXED_WORDS:
                return  # a grep for many words costs seconds: only for names known to be needed
            hits = tree.grep_words(names, C_SUFFIXES)
            files: dict[str, set[str]] = {}  # file -> the names found in it
            for name, found in hits.items():
                for h in found:
                    files.setdefault(h[0], set()).add(name)
            tree.blob_ids(sorted(files))  # one ls-tree for all of them
            for path, found_names in sorted(files.items()):
                wanted = self._wanted
                if wanted is None or found_names & wanted:
                    lexed(path)
        except Exception:  # noqa: BLE001 - the walk does it again and reports what fails
            pass

    def depends_on(self) -> tuple:
        """What the answers were read from beyond the files that name the
        function: the grep hits of each name walked, and every file read
        (path, blob id).  A stored scan holds for a tree where both are
        the same (rewriter.scan)."""
        ids = self.tree.blob_ids(sorted(self.files_read)) or {}
        return (tuple(sorted((name, tuple(map(tuple, hits))) for name, hits in self.grepped.items())),
                tuple(sorted(ids.items())))

    def text(self, path: str) -> str:
        if path not in self._texts:
            self._texts[path] = self.tree.read(path).decode("utf-8", errors="surrogateescape")
            self.files_read.add(path)
        return self._texts[path]

    def write_locked(self, items: list[tuple[str, str, tuple[int, int]]]) -> dict[tuple[str, str, tuple[int, int]], WriteLock]:
        """For each (file, function, position of a call in it): every chain
        of callers that reaches that call, and whether each holds the
        mmap_lock for write.  All items are walked level by level together,
        so that each level is one git grep and one spatch run."""
        # A frontier entry: (item, chain so far, the call its top function
        # makes).  An item stops at its first chain that is not covered:
        # one is enough for the verdict, and it is the one named.
        frontier = [(item, ((item[1], item[0]),), (item[0], item[1], item[2])) for item in items]
        done: dict = {item: [] for item in items}
        seen: dict = {item: {item} for item in items}  # calls asked about, per item
        stopped: set = set()
        level = 0
        while frontier:
            held = self._ask([call for _i, _c, call in frontier])
            # Only the callers of those that do not hold it are looked for:
            # reading ahead (read_ahead(), started by the scan) skips the
            # files of the others from now on.
            self._wanted = {call[1] for item, _c, call in frontier if not held.get(call) and item not in stopped}
            self.wait_ahead()
            nxt = []
            need_refs = []
            for item, chain, call in frontier:
                if item in stopped:
                    continue
                if held.get(call):
                    done[item].append(Chain(chain, True, "takes or asserts it"))
                elif level >= self.depth:
                    done[item].append(Chain(chain, False, f"the walk stops after {self.depth} callers "
                                                          f"(--caller-depth)"))
                    stopped.add(item)
                else:
                    need_refs.append((item, chain, call))
            need_refs = [n for n in need_refs if n[0] not in stopped]
            self._find_refs({(call[1], call[0]) for _i, _c, call in need_refs})
            for item, chain, call in need_refs:
                if item in stopped:
                    continue
                fn, path = call[1], call[0]
                refs = self._refs[(fn, path)]
                stops = [r for r in refs if r.kind != "call"]
                calls = [r for r in refs if r.kind == "call" and r.function]
                if stops or not calls:
                    why = (_why(fn, stops[0]) if stops else f"{fn}() does not hold it and has no caller in the tree")
                    done[item].append(Chain(chain, False, why))
                    stopped.add(item)
                    continue
                for r in calls:
                    up = (r.file, r.function, (r.line, r.col))
                    if up in seen[item]:  # reached by another chain, or recursion: asked already
                        continue
                    seen[item].add(up)
                    nxt.append((item, chain + ((self._shown(r.function, r.file), r.file),), up))
            frontier = [f for f in nxt if f[0] not in stopped]
            level += 1
        return {item: WriteLock(tuple(chains)) for item, chains in done.items()}

    # ------------------------------------------------------------ callers

    def _find_refs(self, functions: set[tuple[str, str]]) -> None:
        todo = [(fn, path) for fn, path in functions if (fn, path) not in self._refs]
        if not todo:
            return
        global_names = [fn for fn, path in todo if not self._is_static(fn, path)]
        hits = {}
        if global_names:
            # A grep that must be made takes along, while it stays one of
            # few words, the names later levels will grep for after a climb
            # through static callers: a pass over the tree fewer for each.
            # Only the walk's own names are recorded as read.
            ahead: list[str] = []
            if not all(self.tree.remembered(name, C_SUFFIXES) for name in global_names):
                ahead = [name for name in self._static_climb([f for f in todo if f[0] not in global_names])
                         if name not in global_names]
            room = max(0, FIXED_WORDS - len(global_names))
            hits = self.tree.grep_words(global_names + ahead[:room], C_SUFFIXES)
            hits = {name: hits[name] for name in global_names}
        self.grepped.update(hits)
        for fn, path in todo:
            if fn in global_names:
                files = sorted({h[0] for h in hits.get(fn, [])})
                # A file with a static function of the same name calls its own.
                files = [f for f in files if f == path or not self._is_static(fn, f)]
            else:
                files = [path]
            refs: list[_Ref] = []
            for f in files:
                refs.extend(self._refs_in(fn, f, path))
            self._refs[(fn, path)] = refs

    def _static_climb(self, functions: list[tuple[str, str]]) -> list[str]:
        """The functions that are not static that the walk reaches from
        these static ones through static callers only, none of which names
        a taker of the lock (one that does may hold it, and then the walk
        stops there), at most depth callers up: the names a later level
        will grep for.  Only files read already are read."""
        takers = set(self.api.write_lock_takers)
        found: list[str] = []
        seen: set[tuple[str, str]] = set()
        level = [f for f in functions if self._is_static(*f)]
        for _up in range(self.depth):
            nxt = []
            for fn, path in level:
                if (fn, path) in seen:
                    continue
                seen.add((fn, path))
                text = self.text(path)
                for r in refs_in(text, fn, path, path, self.api.exporters):
                    if r.kind != "call" or not r.function or _names_any(text, r.function, takers):
                        continue
                    if self._is_static(r.function, path):
                        nxt.append((r.function, path))
                    elif r.function not in found:
                        found.append(r.function)
            level = nxt
        return found

    def _is_static(self, fn: str, path: str) -> bool:
        return defines_static(self.text(path), fn)

    def _refs_in(self, fn: str, path: str, home: str) -> list[_Ref]:
        return refs_in(self.text(path), fn, path, home, self.api.exporters)

    def _shown(self, fn: str, path: str) -> str:
        """How a function is named to people: SYSCALL_DEFINE5(mremap, ...)
        defines sys_mremap()."""
        if not re.fullmatch(r"(COMPAT_)?SYSCALL_DEFINE\d", fn):
            return fn
        toks = tokens(self.text(path))
        for i, t in enumerate(toks[:-2]):
            if t.text == fn and toks[i + 1].text == "(" and toks[i + 2].kind == "ident":
                return ("compat_sys_" if fn.startswith("COMPAT") else "sys_") + toks[i + 2].text
        return fn

    # ------------------------------------------------------------ spatch

    def _ask(self, calls: list[tuple[str, str, tuple[int, int]]]) -> dict:
        """{(file, function, pos): held} for each call, asked of spatch."""
        todo = [c for c in dict.fromkeys(calls) if (c[0], *c[2]) not in self._held]
        # A function that names no taker of the lock cannot hold it: every
        # path to its call is one the rule's "unlocked" reports, so spatch
        # is not asked.  (It is more careful than spatch, which finds no
        # path at all to a call it cannot reach, and then says held.)
        takers = set(self.api.write_lock_takers)
        for path, fn, pos in todo:
            if not _names_any(self.text(path), fn, takers):
                self._held[(path, *pos)] = False
        todo = [c for c in todo if (c[0], *c[2]) not in self._held]
        if todo:
            units = {}
            targets = {}
            callees = set()
            for n, (path, fn, pos) in enumerate(todo):
                name = f"w{n}/{path}"
                units[name] = keep_functions(self.text(path), {fn}).encode("utf-8", errors="surrogateescape")
                targets[name] = {pos}
                callees.add(self._callee_at(path, pos))
            res = self.runner.run_together(_rule(targets, callees, self.api), units, MARKER, label="writelocked")
            self.spatch_runs += 1
            failing = {(r["file"], tuple(r["at"])) for r in res.records}
            for n, (path, fn, pos) in enumerate(todo):
                if res.error:  # asked again on its own, so that one bad file costs only its answer
                    self._held[(path, *pos)] = self._ask_one(path, fn, pos)
                else:
                    self._held[(path, *pos)] = (f"w{n}/{path}", pos) not in failing
        return {c: self._held[(c[0], *c[2])] for c in calls}

    def _ask_one(self, path: str, fn: str, pos: tuple[int, int]) -> bool:
        """The question for one call, of its file alone; no answer (an
        error) counts as not held, which only costs a recheck."""
        data = keep_functions(self.text(path), {fn}).encode("utf-8", errors="surrogateescape")
        res = self.runner.quiet().run(_rule({path: {pos}}, {self._callee_at(path, pos)}, self.api), {path: data}, MARKER)[0]
        self.spatch_runs += 1
        return not res.error and not res.records

    def _callee_at(self, path: str, pos: tuple[int, int]) -> str:
        text = self.text(path)
        for t in tokens(text):
            if t.line == pos[0] and t.kind == "ident" and column(text, t) == pos[1]:
                return t.text
        raise KeyError(pos)


def refs_in(text: str, fn: str, path: str, home: str, exporters) -> list[_Ref]:
    """Where text, the file path, names fn: its calls, each with the
    function it is in, and the uses the walk cannot follow.  home: the
    file of the fn walked, whose recursive calls are no new way in."""
    toks = tokens(text)
    bodies = [(name, o, c) for name, o, c in _definitions_of(text)]
    out = []
    for i, t in enumerate(toks):
        if t.kind != "ident" or t.text != fn:
            continue
        if t.preproc:
            out.append(_Ref(path, None, t.line, 0, "macro"))
            continue
        owner = next((name for name, o, c in bodies if o < i < c), None)
        nxt = toks[i + 1].text if i + 1 < len(toks) else ""
        prev = toks[i - 1].text if i else ""
        if owner is None:
            if prev == "(" and i >= 2 and toks[i - 2].text in exporters:
                out.append(_Ref(path, None, t.line, 0, "export"))
            elif nxt != "(" and prev == "(" and i >= 2 and toks[i - 2].kind == "ident":
                out.append(_Ref(path, None, t.line, 0, "macro:" + toks[i - 2].text))
            elif nxt != "(" and prev in _VALUE_BEFORE:
                out.append(_Ref(path, None, t.line, 0, "value"))  # an initializer at file scope
            continue  # its definition, a prototype, or another thing of that name
        if owner == fn and path == home:
            # a recursive call is no new way in
            continue
        if nxt == "(" and prev not in (".", "->"):
            out.append(_Ref(path, owner, t.line, column(text, t), "call"))
        elif prev in _VALUE_BEFORE or prev == "return":
            out.append(_Ref(path, owner, t.line, 0, "value"))
        # else a member, a local or a parameter that has the same name
    return out


# What comes before a function's name when the function is used as a value:
# "= fn", ".op = fn", "{ fn, ...}", "f(fn)", "&fn", "c ? fn : g".
_VALUE_BEFORE = ("=", ",", "{", "(", "&", "?", ":")


def _names_any(text: str, fn: str, names: set[str]) -> bool:
    """Whether a definition of fn in text names one of names."""
    return not body_names(text).get(fn, frozenset()).isdisjoint(names)


def _why(fn: str, ref: _Ref) -> str:
    if ref.kind.startswith("macro:"):
        return f"{fn} is named in {ref.kind[6:]}() in {ref.file}, which the walk does not expand"
    return {"value": f"{fn}() does not hold it and is used as a value in {ref.file} (a function pointer "
                     f"or ops table), whose callers the walk cannot follow",
            "macro": f"{fn}() does not hold it and is named in a macro in {ref.file}",
            "export": f"{fn}() does not hold it and is exported, so callers outside the tree may reach it"}[ref.kind]


def _rule(targets: dict[str, set], callees: set[str], api: Knowledge) -> str:
    """writelocked.cocci.j2 for the calls in targets ({file: {(line, col)}})."""
    return cocci.render("writelocked.cocci.j2", marker=MARKER, targets=_table(targets),
                        takers=list(api.write_lock_takers), droppers=list(api.write_lock_droppers),
                        callees=sorted(callees))


def _table(targets: dict[str, set]) -> str:
    return "{" + ", ".join(f"{name!r}: {{" + ", ".join(f"({l}, {c})" for l, c in sorted(pos)) + "}"
                           for name, pos in targets.items()) + "}"
