"""The versions of the series, recorded in the repository.

Each version that `rewriter series` writes is recorded under
refs/rewriter/versions/vN: a commit (whose parent is the series' last
commit, so that it stays reachable) with two files, record.json (version,
branch, base, tip, names, the patches with their subjects, commits and
calls, the Message-Ids) and plan.toml (the plan the version followed).

From the record of version N-1, changes() works out what version N
changes: per call, from the two plans (verdict, recheck, reason,
on_recheck_fail); per patch, from `git range-diff` between the two
series.  Nothing of it is typed by hand.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field

from rewriter import prose
from rewriter.errors import InputError
from rewriter.gitstore import Git, Ident, When

REF_PREFIX = "refs/rewriter/versions/"
RECORD = "record.json"
PLAN = "plan.toml"
FIELDS = ("verdict", "recheck", "reason", "on_recheck_fail")


def ref(version: int) -> str:
    return f"{REF_PREFIX}v{version}"


@dataclass
class Record:
    version: int
    branch: str
    base: str
    tip: str
    names: dict
    subject_prefix: str
    plan: str = field(repr=False)
    calls: list[dict]
    patches: list[dict]
    message_ids: dict = field(default_factory=dict)
    change_id: str = ""  # b4's change-id, when the branch was made with --b4

    @classmethod
    def draft(cls, version: int, branch: str, base: str, tip: str, names, subject_prefix: str,
              plan_text: str, patches) -> Record:
        calls, entries = [], []
        for n, p in enumerate(patches, 1):
            entries.append({"number": n, "kind": p.kind, "subject": p.subject, "commit": p.commit,
                            "file": p.file, "function": p.function, "keys": p.keys})
            for s, e in p.calls:
                calls.append({"key": s.key, "file": s.file, "function": s.function, "index": s.index,
                              "line": s.line, "verdict": e.verdict, "recheck": e.recheck, "reason": e.reason,
                              "on_recheck_fail": e.on_recheck_fail, "patch": n})
        return cls(version, branch, base, tip, {"readonly": names.readonly, "maywrite": names.maywrite},
                   subject_prefix, plan_text, calls, entries)

    def set_message_ids(self, ids: dict) -> None:
        self.message_ids = ids

    def to_json(self) -> bytes:
        data = asdict(self)
        del data["plan"]
        return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def store(git: Git, record: Record, author: Ident, when: When) -> str:
    """The record as a commit object; no ref points at it yet."""
    tree = git.tree_of_files({RECORD: record.to_json(), PLAN: record.plan.encode("utf-8")})
    message = prose.render("series/record.txt.j2", record=record)
    return git.commit(tree, [record.tip], message, author, when)


def load(git: Git, version: int) -> Record | None:
    sha = git.resolve(ref(version))
    if sha is None:
        return None
    raw = git.read_blob(sha, RECORD)
    plan = git.read_blob(sha, PLAN)
    try:
        data = json.loads(raw or b"")
        return Record(plan=(plan or b"").decode("utf-8"), **data)
    except (ValueError, TypeError):
        raise InputError(f"{ref(version)} does not hold a rewriter record; remove it with "
                         f"'git update-ref -d {ref(version)}' and write that version again") from None


# --------------------------------------------------------------------------
# what changed since the previous version
# --------------------------------------------------------------------------

@dataclass
class PatchChange:
    status: str  # "!" changed, ">" only in the new version, "<" only in the old one
    number: int | None
    old_number: int | None
    subject: str
    old_subject: str | None
    sections: list[dict]  # {"name", "lines", "numbers_only"}: what range-diff shows changed
    calls: int = 0  # how many calls the patch converts


@dataclass
class Changes:
    version: int
    previous: Record
    total: int
    calls: list[dict]  # {"key", "file", "line", "function", "kind": new|dropped|changed, "fields"}
    patches: list[PatchChange]
    names: tuple[dict, dict] | None
    base: tuple[str, str] | None

    def values(self) -> dict:
        return {"version": self.version, "previous": self.previous, "total": self.total,
                "old_total": len(self.previous.patches), "names": self.names, "base": self.base}

    def for_cover(self) -> dict:
        return dict(self.values(), scope="cover", calls=self.calls, patches=self.patches)

    def for_patch(self, number: int, keys: list[str]) -> dict | None:
        calls = [c for c in self.calls if c["key"] in keys]
        patches = [p for p in self.patches if p.number == number]
        if not calls and not patches:
            return None
        return dict(self.values(), scope="patch", calls=calls, patches=patches)


def changes(git: Git, previous: Record, current: Record) -> Changes:
    old_calls = {c["key"]: c for c in previous.calls}
    new_calls = {c["key"]: c for c in current.calls}
    calls = []
    for key, c in new_calls.items():
        o = old_calls.get(key)
        if o is None:
            calls.append(dict(c, kind="new", fields=[]))
            continue
        fields = [{"name": f, "old": o.get(f), "new": c.get(f)} for f in FIELDS if o.get(f) != c.get(f)]
        if fields:
            calls.append(dict(c, kind="changed", fields=fields))
    for key, o in old_calls.items():
        if key not in new_calls:
            calls.append(dict(o, kind="dropped", fields=[]))
    names = (previous.names, current.names) if previous.names != current.names else None
    base = (previous.base, current.base) if previous.base != current.base else None
    return Changes(current.version, previous, len(current.patches), calls,
                   range_diff(git, previous, current), names, base)


_PAIR = re.compile(r"^\s*(\d+|-):\s+(?:[0-9a-f]+|-+) ([=!<>])\s+(\d+|-):\s+(?:[0-9a-f]+|-+) (.*)$")


def range_diff(git: Git, old: Record, new: Record) -> list[PatchChange]:
    """The patches that git range-diff finds changed, added or dropped."""
    out = git.out("range-diff", "--no-color", f"{old.base}..{old.tip}", f"{new.base}..{new.tip}",
                  env=git.env(clean_config=True))
    changes: list[PatchChange] = []
    current: PatchChange | None = None
    section = "Metadata"
    counts: dict[str, int] = {}
    lines: dict[str, tuple[list[str], list[str]]] = {}  # section -> (removed, added)

    def close() -> None:
        if current is not None and current.status == "!":
            current.sections = [{"name": n, "lines": k, "numbers_only": _numbers_only(*lines.get(n, ([], [])))}
                                for n, k in counts.items() if k]

    for line in out.splitlines():
        m = _PAIR.match(line)
        if m:
            close()
            a, status, b, subject = m.groups()
            old_n = int(a) if a != "-" else None
            new_n = int(b) if b != "-" else None
            current = PatchChange(status, new_n, old_n, subject, None, [])
            if old_n is not None:
                current.old_subject = old.patches[old_n - 1]["subject"]
            if new_n is not None:
                current.subject = new.patches[new_n - 1]["subject"]
                current.calls = len(new.patches[new_n - 1]["keys"])
            if status != "=":
                changes.append(current)
            section, counts, lines = "Metadata", {}, {}
            continue
        if current is None or not line.startswith("    "):
            continue
        body = line[4:]
        if body.startswith("@@"):
            name = body[2:].strip()
            section = ("Commit message" if name.startswith("Commit message")
                       else "Metadata" if name.startswith("Metadata") or not name
                       else name.split(":")[0].strip())
            continue
        header = re.match(r"^([ +-]) ## (.+) ##$", body)
        if header:
            section = header.group(2)
            if header.group(1) != " ":
                counts[section] = counts.get(section, 0) + 1
            continue
        if body[:1] in ("+", "-"):
            counts[section] = counts.get(section, 0) + 1
            lines.setdefault(section, ([], []))[body[0] == "+"].append(body[1:])
    close()
    return _match_replaced(changes, old, new)


def _numbers_only(removed: list[str], added: list[str]) -> bool:
    """The lines differ in their numbers only (line numbers that moved)."""
    def norm(ls: list[str]) -> list[str]:
        return [re.sub(r"\d+", "N", l) for l in ls]

    return bool(removed) and norm(removed) == norm(added)


def _match_replaced(changes: list[PatchChange], old: Record, new: Record) -> list[PatchChange]:
    """A patch that git range-diff finds too changed to pair with its old
    self ("<" and ">") is paired here by the calls it converts."""
    dropped = [c for c in changes if c.status == "<"]
    out = []
    for c in changes:
        if c.status == "<" and c.old_number is None:
            continue
        if c.status == ">":
            keys = set(new.patches[c.number - 1]["keys"])
            for d in dropped:
                if d.old_number is not None and keys & set(old.patches[d.old_number - 1]["keys"]):
                    c.old_number, c.old_subject = d.old_number, d.old_subject
                    d.old_number = None  # paired: not reported as gone
                    break
        out.append(c)
    return [c for c in out if not (c.status == "<" and c.old_number is None)]
