"""Recorded spatch facts, and the scan's classification replayed on them
in-process, for the unit tests (tests/test_core_*.py).

tests/record_facts.py runs a real scan over a tree and saves, per file
with calls, what the spatch stages handed the Python analysis:

  facts   the records of facts.cocci (the input of facts.parse());
  paths   the answers of paths.cocci (verdicts.Paths);
  shape   the records of shape.cocci (rewrite's placement of the rechecks);
  source  the file as facts.cocci saw it: the functions with a call, those
          they reach and their same-file callers kept, every other body
          blanked in place (lines and columns unchanged);

and, for the tree, the answers of the caller walk (callers.WriteLock per
call), and the scan's JSON report, which a replay must give back.

replay() runs the same steps as rewriter.scan._scan() after its spatch
runs: summaries, contexts, events, guards, decide(), the carry and the
mmap_lock walk, with the recorded answers in place of spatch.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from rewriter import callers, recipe, rewrite, scan, verdicts
from rewriter.facts import FileFacts, parse
from rewriter.rewrite import Shape
from rewriter.runner import Runner

RECORDED_DIR = Path(__file__).resolve().parent / "recorded"
FORMAT = 1
PATH_KINDS = ("reach", "after", "held", "unguarded")


# --------------------------------------------------------------- the format

# The recipe the recordings were made with.
RECIPE = recipe.find(None)


def paths_to_json(paths: verdicts.Paths) -> dict:
    return {kind: sorted([list(a), list(b)] for a, b in getattr(paths, kind)) for kind in PATH_KINDS}


def paths_from_json(data: dict) -> verdicts.Paths:
    return verdicts.Paths(**{kind: frozenset((tuple(a), tuple(b)) for a, b in data[kind]) for kind in PATH_KINDS})


def walk_to_json(key: tuple[str, str, tuple[int, int]], answer: callers.WriteLock) -> dict:
    file, function, pos = key
    return {"file": file, "function": function, "pos": list(pos),
            "chains": [{"functions": [list(f) for f in c.functions], "covered": c.covered, "why": c.why}
                       for c in answer.chains]}


def walk_from_json(data: dict) -> tuple[tuple[str, str, tuple[int, int]], callers.WriteLock]:
    chains = tuple(callers.Chain(tuple(tuple(f) for f in c["functions"]), c["covered"], c["why"])
                   for c in data["chains"])
    return (data["file"], data["function"], tuple(data["pos"])), callers.WriteLock(chains)


def shapes_from_records(records: list[dict]) -> dict[str, Shape]:
    """What rewrite._shapes() makes of shape.cocci's records."""
    return rewrite.shapes_from_records(records)


# --------------------------------------------------------------- a recording

@dataclass
class RecordedFile:
    path: str
    sha256: str  # of the whole file at the recorded rev
    source: str
    facts: list[dict]
    paths: verdicts.Paths
    shape: list[dict] | None  # None: no call of the file needs a recheck placed

    def parsed(self) -> FileFacts:
        return parse(self.path, self.facts)


@dataclass
class Recording:
    name: str
    rev: str
    function: str
    depth: int
    files: dict[str, RecordedFile]
    walks: dict[tuple[str, str, tuple[int, int]], callers.WriteLock]
    report: dict  # the scan's JSON, without "tree"

    def file(self, path: str) -> RecordedFile:
        return self.files[path]


_loaded: dict[str, Recording] = {}


def load(name: str) -> Recording:
    """tests/recorded/NAME.json, read once per process."""
    if name not in _loaded:
        data = json.loads((RECORDED_DIR / f"{name}.json").read_text(encoding="utf-8"))
        if data.get("format") != FORMAT:
            raise AssertionError(f"tests/recorded/{name}.json has format {data.get('format')}, not {FORMAT}: "
                                 f"record it again (make record-facts)")
        files = {path: RecordedFile(path, f["sha256"], "\n".join(f["source"]), f["facts"], paths_from_json(f["paths"]),
                                    f.get("shape"))
                 for path, f in data["files"].items()}
        walks = dict(walk_from_json(w) for w in data["walks"])
        _loaded[name] = Recording(name, data["rev"], data["function"], data["depth"], files, walks, data["report"])
    return _loaded[name]


# --------------------------------------------------------------- the replay

class RecordedWalker:
    """callers.Walker with the recorded answers: no git grep, no spatch."""

    def __init__(self, answers: dict):
        self.answers = answers

    def write_locked(self, items):
        return {item: self.answers[item] for item in items if item in self.answers}

    def depends_on(self) -> tuple:
        return ((), ())


def classify_file(rec: Recording, f: RecordedFile, paths: verdicts.Paths | None = None,
                  source: str | None = None) -> list[scan.Site]:
    """The sites of one file as rewriter.scan._scan() decides them, before
    the mmap_lock walk; paths and source replace the recorded ones."""
    text = f.source if source is None else source
    facts = f.parsed()
    summaries = verdicts.summarise_helpers(facts, RECIPE.api)
    contexts = [verdicts.site_context(facts, s, rec.function, RECIPE.api) for s in facts.sites]
    events = [verdicts.site_events(facts, ctx, summaries) for ctx in contexts]
    lines = text.splitlines()
    in_macros = scan._macro_lines(text, rec.function)
    out = []
    per_fn: dict[str, int] = {}
    for ctx, evs in sorted(zip(contexts, events), key=lambda ce: ce[0].site.pos):
        if ctx.site.pos[0] in in_macros:
            continue
        guards = verdicts.site_guards(facts, ctx, evs, text)
        v = verdicts.decide(facts, ctx, evs, f.paths if paths is None else paths, summaries, lines, guards)
        if v.hands_out:
            v = scan._carry(text, facts, ctx, v, RECIPE)
        idx = per_fn.get(ctx.site.function, 0)
        per_fn[ctx.site.function] = idx + 1
        out.append(scan.Site(f.path, ctx.site.pos[0], ctx.site.pos[1], ctx.site.function,
                             scan._call_text(rec.function, ctx.site.args), idx, v, ctx))
    return out


def with_walks(sites: list[scan.Site], walks: dict) -> list[scan.Site]:
    """rewriter.scan._write_locked() on sites, with walks as the caller walk's answers."""
    out, _walked = scan._write_locked(RecordedWalker(walks), Runner(jobs=1), sites, RECIPE)
    return out


def replay(rec: Recording) -> scan.Scan:
    """The scan of the recorded tree, from the recording alone."""
    sites = [s for path in sorted(rec.files) for s in classify_file(rec, rec.files[path])]
    sites = with_walks(sites, rec.walks)
    sites.sort(key=lambda s: (s.file, s.line, s.column))
    return scan.Scan("(recorded)", rec.rev, rec.function, tuple(sites), (), (), recipe=RECIPE)


@functools.lru_cache(maxsize=None)
def scanned(name: str) -> scan.Scan:
    """replay() of tests/recorded/NAME.json, once per process (the 6.12
    one costs a few tenths of a second)."""
    return replay(load(name))


def site_json(s: scan.Site) -> dict:
    """A site as the scan's JSON report has it."""
    whole = scan.Scan("", "", "", (s,), (), ()).to_json()
    return whole["sites"][0]
