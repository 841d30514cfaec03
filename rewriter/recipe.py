"""A recipe: everything that belongs to one API split, read from a folder.

A recipe folder holds recipe.toml (the function, the roles of its
parameters, the variant names, the inserted parameter, the files that
declare, define and document the function, what a failed recheck releases,
the branch name and the API knowledge of the analysis) and the templates of
its C and its prose.  The engine reads a Recipe and knows no API of its own.
The recipes that come with rewriter are the folders of templates/recipes/.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from rewriter import text
from rewriter.errors import InputError

RECIPES_DIR = text.TEMPLATES_DIR / "recipes"
DEFAULT = "pte_offset_map_nolock"
ROLES = ("owner", "parent", "address", "lock")  # what the engine asks of the split function's parameters
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Knowledge:
    """What the API around the function does with its arguments (see the
    [api] table of a recipe.toml).  Tables map a name to the index of the
    argument that matters."""

    writers: dict[str, int]
    table_removers: dict[str, int]
    readers: dict[str, int]
    lockers: dict[str, int]
    unlockers: dict[str, int]
    lock_assertions: dict[str, int]
    comparators: tuple[str, ...]
    entry_readers: tuple[str, ...]
    none_if_true: tuple[str, ...]
    not_none_if_true: tuple[str, ...]
    transparent: frozenset[str]
    debug_macro_words: tuple[str, ...]
    write_lock_takers: tuple[str, ...]
    write_lock_droppers: tuple[str, ...]
    exporters: tuple[str, ...]
    mapper_prefixes: tuple[str, ...]
    unmap: str  # unmaps the table ([release] of recipe.toml)
    unmap_unlock: str  # unlocks and unmaps it

    def is_debug_macro(self, name: str) -> bool:
        """BUG_ON(), WARN_ON_ONCE() ...: evaluate, never write."""
        return name.isupper() and any(w in name for w in self.debug_macro_words)


@dataclass(frozen=True)
class Param:
    role: str
    name: str  # as the templates call it
    type: str


@dataclass(frozen=True)
class Names:
    """The full names of the read-only and of the may-write variant."""

    readonly: str
    maywrite: str


@dataclass(frozen=True)
class Recipe:
    name: str
    folder: Path
    summary: str
    function: str
    returns: str
    params: tuple[Param, ...]
    pattern: str  # "prefix_{}_suffix": a variant's name from its word
    default_words: tuple[str, str]
    other_words: tuple[tuple[str, str], ...]
    inserted: dict[str, str]  # name, type, before, local_type, local, table_suffix, dummy_local
    declare: str  # the header with the prototype
    define: str  # the source with the definition
    document: str  # the documentation with an entry for it
    typedefs: tuple[str, ...]
    release: dict[str, str]  # unmap_unlock, unmap
    branch: str
    why: dict[str, str]  # the cover letter's word or two for each basis of a verdict
    write_lock: str  # how the analysis' texts name the lock the caller walk looks for ("the mmap_lock")
    reasons: dict[str, str]  # a plan's default reason for each kind of verdict
    boot: bool  # check --boot knows how to exercise this API (its workload is written for page tables)
    facts: dict[str, tuple[dict[str, str], ...]]  # name -> what the code must do for it to hold
    api: Knowledge = field(repr=False)

    # -- names -------------------------------------------------------------

    @property
    def files(self) -> tuple[str, str, str]:
        return (self.declare, self.define, self.document)

    @property
    def c_files(self) -> tuple[str, str]:
        return (self.declare, self.define)

    @property
    def default_names(self) -> Names:
        return Names(*(self.pattern.format(w) for w in self.default_words))

    def names(self, option: str | None) -> Names:
        """'A,B' (--names) -> the variants' full names; None: the default."""
        if option is None:
            return self.default_names
        choices = " or ".join(repr(",".join(w)) for w in (self.default_words, *self.other_words))
        hint = f"give two different words separated by a comma, such as {choices}"
        parts = [p.strip() for p in option.split(",")]
        if len(parts) != 2 or not all(parts):
            raise InputError(f"names {option!r}: {hint}")
        full = [self.pattern.format(word) for word in parts]
        for word, name in zip(parts, full):
            if not _IDENTIFIER.fullmatch(name):
                raise InputError(f"names {option!r}: {name!r} is not a C identifier; "
                                 f"use only letters, digits and '_' in {word!r}")
        if full[0] == full[1]:
            raise InputError(f"names {option!r}: both functions would be called {full[0]}; {hint}")
        return Names(*full)

    def names_option(self, names: Names) -> str:
        """The --names value that gives names ("" for the default)."""
        if names == self.default_names:
            return ""
        return ",".join(self.word(n) for n in (names.readonly, names.maywrite))

    def word(self, name: str) -> str:
        """The word of a variant's full name."""
        head, _, tail = self.pattern.partition("{}")
        return name[len(head):len(name) - len(tail)] if name.startswith(head) and name.endswith(tail) else name

    def branch_name(self, names: Names, version: int) -> str:
        words = [self.word(n).replace("_", "-") for n in (names.readonly, names.maywrite)]
        return self.branch.format(*words, version=version)

    @property
    def digest(self) -> str:
        """Every file of the recipe folder: a stored result made with another
        recipe, or another version of this one, is not this one's."""
        return _digest(self.folder)

    # -- templates ---------------------------------------------------------

    def render(self, template: str, **values: object) -> str:
        """A template of this recipe (or the engine's of that name)."""
        return text.render(template, self.folder, **values)


@functools.lru_cache(maxsize=None)
def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def available() -> list[Path]:
    """The folders of the recipes that come with rewriter, then those in the
    folders that REWRITER_RECIPES names (separated by ':'), by name; a
    name found twice is the first one's."""
    places = [RECIPES_DIR] + [Path(p) for p in os.environ.get("REWRITER_RECIPES", "").split(os.pathsep) if p]
    found: dict[str, Path] = {}
    for place in places:
        for folder in sorted(p.parent for p in place.glob("*/recipe.toml")):
            found.setdefault(folder.name, folder)
    return list(found.values())


def find(choice: str | None) -> Recipe:
    """--recipe NAME (a folder of templates/recipes/) or PATH (a recipe folder)."""
    choice = choice or DEFAULT
    path = Path(choice)
    if "/" in choice or choice.startswith("."):
        if not (path / "recipe.toml").is_file():
            raise InputError(f"--recipe {choice}: no recipe.toml in that folder; give a recipe folder "
                             f"or the name of one of: {', '.join(p.name for p in available())}")
        return load(path)
    for folder in available():
        if folder.name == choice:
            return load(folder)
    raise InputError(f"--recipe {choice}: no such recipe; 'rewriter recipes' lists them "
                     f"({', '.join(p.name for p in available())}), or give the path of a recipe folder")


_loaded: dict[Path, Recipe] = {}


def load(folder: Path) -> Recipe:
    folder = folder.resolve()
    if folder not in _loaded:
        _loaded[folder] = _parse(folder)
    return _loaded[folder]


def _parse(folder: Path) -> Recipe:
    where = folder / "recipe.toml"
    try:
        data = tomllib.loads(where.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"{where}: {exc}; fix the recipe file") from None
    try:
        fn, variants, inserted, files, api = (data["function"], data["variants"], data["inserted"],
                                              data["files"], data["api"])
        params = tuple(Param(p["role"], p["name"], p["type"]) for p in fn["params"])
        if tuple(p.role for p in params) != ROLES:
            raise InputError(f"{where}: [function] params must have the roles {', '.join(ROLES)}, in this order")
        if variants["pattern"].count("{}") != 1:
            raise InputError(f"{where}: [variants] pattern must have one {{}} for the word")
        if inserted["before"] != "lock":
            raise InputError(f"{where}: [inserted] before must be \"lock\": the engine adds the parameter "
                             f"right before the lock pointer")
        knowledge = Knowledge(
            writers=dict(api["writers"]), table_removers=dict(api["table_removers"]),
            readers=dict(api["readers"]), lockers=dict(api["lockers"]), unlockers=dict(api["unlockers"]),
            lock_assertions=dict(api["lock_assertions"]), comparators=tuple(api["comparators"]),
            entry_readers=tuple(api["entry_readers"]), none_if_true=tuple(api["none_if_true"]),
            not_none_if_true=tuple(api["not_none_if_true"]), transparent=frozenset(api["transparent"]),
            debug_macro_words=tuple(api["debug_macro_words"]),
            write_lock_takers=tuple(api["write_lock_takers"]),
            write_lock_droppers=tuple(api["write_lock_droppers"]), exporters=tuple(api["exporters"]),
            mapper_prefixes=tuple(api["mapper_prefixes"]), unmap=data["release"]["unmap"],
            unmap_unlock=data["release"]["unmap_unlock"])
        return Recipe(
            name=data["recipe"]["name"], folder=folder, summary=data["recipe"]["summary"],
            function=fn["name"], returns=fn["returns"], params=params, pattern=variants["pattern"],
            default_words=tuple(variants["default"]), other_words=tuple(tuple(w) for w in variants["others"]),
            inserted=dict(inserted), declare=files["declare"], define=files["define"],
            document=files["document"], typedefs=tuple(files["typedefs"]), release=dict(data["release"]),
            branch=data["series"]["branch"], why=dict(data["series"]["why"]), write_lock=data["recipe"]["write_lock"],
            reasons=dict(data["reasons"]), api=knowledge, boot=bool(data.get("check", {}).get("boot", False)),
            facts={name: tuple(dict(n) for n in needs) for name, needs in data.get("facts", {}).items()})
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{where}: missing or wrong entry {exc}; see "
                         f"{RECIPES_DIR / DEFAULT / 'recipe.toml'} for the form") from None
