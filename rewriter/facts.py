"""The facts facts.cocci prints about one file, in a shape the analysis uses."""

from __future__ import annotations

from dataclasses import dataclass, field

from rewriter.clex import expr_tokens, split_args

Pos = tuple[int, int]  # (line, column) as spatch reports them


@dataclass(frozen=True)
class Call:
    pos: Pos
    function: str  # enclosing function
    callee: tuple[str, ...]
    args: tuple[tuple[str, ...], ...]

    @property
    def name(self) -> str | None:
        """The callee's name, or None for a call through a pointer."""
        return self.callee[0] if len(self.callee) == 1 else None


@dataclass(frozen=True)
class Assign:
    pos: Pos
    function: str
    lhs: tuple[str, ...]
    rhs: tuple[str, ...]


@dataclass(frozen=True)
class Return:
    pos: Pos
    function: str
    value: tuple[str, ...]


@dataclass(frozen=True)
class SiteFact:
    pos: Pos
    function: str
    args: tuple[tuple[str, ...], ...]  # mm, pmd, addr, ptlp
    target: tuple[str, ...] | None
    declared: bool


@dataclass
class FileFacts:
    path: str
    sites: list[SiteFact] = field(default_factory=list)
    params: dict[str, dict[int, tuple[str, str]]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    assigns: list[Assign] = field(default_factory=list)
    returns: list[Return] = field(default_factory=list)

    def calls_in(self, function: str) -> list[Call]:
        return [c for c in self.calls if c.function == function]

    def assigns_in(self, function: str) -> list[Assign]:
        return [a for a in self.assigns if a.function == function]

    def returns_in(self, function: str) -> list[Return]:
        return [r for r in self.returns if r.function == function]


def parse(path: str, records: tuple[dict, ...] | list[dict]) -> FileFacts:
    facts = FileFacts(path)
    targets: dict[Pos, tuple[str, ...]] = {}
    declared: set[Pos] = set()
    raw_sites = []
    seen_calls: set[Pos] = set()
    seen_assigns: set[tuple[Pos, tuple[str, ...]]] = set()
    for r in records:
        pos = (r["line"], r["col"])
        kind = r["kind"]
        fn = r["function"]
        if kind == "site":
            raw_sites.append((pos, fn, tuple(expr_tokens(a) for a in r["args"])))
        elif kind == "target":
            targets[pos] = expr_tokens(r["target"])
        elif kind == "declared":
            targets[pos] = expr_tokens(r["target"])
            declared.add(pos)
        elif kind == "param":
            facts.params.setdefault(r["name"], {})[r["index"]] = (r["param"], r["type"])
        elif kind == "call":
            if pos in seen_calls or r["callee"] == "None":
                continue
            seen_calls.add(pos)
            facts.calls.append(Call(pos, fn, expr_tokens(r["callee"]), tuple(split_args(r["args"]))))
        elif kind == "assign":
            lhs = expr_tokens(r["lhs"])
            if (pos, lhs) in seen_assigns:
                continue
            seen_assigns.add((pos, lhs))
            facts.assigns.append(Assign(pos, fn, lhs, expr_tokens(r["rhs"])))
        elif kind == "return":
            facts.returns.append(Return(pos, fn, expr_tokens(r["value"])))
    seen_sites: set[Pos] = set()
    for pos, fn, args in sorted(raw_sites):
        if pos in seen_sites:
            continue
        seen_sites.add(pos)
        facts.sites.append(SiteFact(pos, fn, args, targets.get(pos), pos in declared))
    facts.calls.sort(key=lambda c: c.pos)
    facts.assigns.sort(key=lambda a: a.pos)
    facts.returns.sort(key=lambda r: r.pos)
    return facts
