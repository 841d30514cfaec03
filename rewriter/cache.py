"""A cache of spatch results, so that a second run over the same tree is cheap.

A result is keyed by everything that decides it: the spatch version, its
options, the rendered semantic patch (so the templates' contents and the
names chosen), the file's path and its bytes (its blob).  Entries are
written whole or not at all (a temporary file renamed into place), so an
interrupted run leaves nothing half-written; a damaged entry is ignored.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pickle
import tempfile
from pathlib import Path


def default_dir() -> Path | None:
    """REWRITER_CACHE, else $XDG_CACHE_HOME/rewriter/spatch; "off" disables it."""
    value = os.environ.get("REWRITER_CACHE")
    if value:
        return None if value == "off" else Path(value)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rewriter" / "spatch"


def entry(kind: str, *parts: bytes) -> Path | None:
    """Where a result of this kind, for these inputs, is kept (a digest of
    them under default_dir()/kind), or None with the cache off."""
    directory = default_dir()
    if directory is None:
        return None
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return directory / kind / h.hexdigest()


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """rewriter's own code and every template it renders, as one digest: a
    stored result made by other code is not one this code would make."""
    from rewriter import resources

    # Named as in a checkout, so that a wheel of the same code gives the same digest.
    named = [(f"rewriter/{p.name}", p) for p in resources.PACKAGE_DIR.glob("*.py")]
    for folder, pattern in (("cocci", "*.j2"), ("templates", "**/*.j2")):
        base = resources.folder(folder)
        named += [(f"{folder}/{p.relative_to(base).as_posix()}", p) for p in base.glob(pattern)]
    h = hashlib.sha256()
    for name, path in sorted(named):
        h.update(name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def jinja_bytecode_cache():
    """Compiled templates, kept beside the spatch results: compiling the
    semantic patch templates costs a warm run more than its cache lookups."""
    import jinja2

    directory = default_dir()
    if directory is None:
        return None
    try:
        (directory / "jinja").mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return jinja2.FileSystemBytecodeCache(str(directory / "jinja"))


class SpatchCache:
    def __init__(self, directory: Path, version: str):
        self.directory = directory
        self.version = version

    def key(self, rule: str, options: list[str], path: str, data: bytes, kind: str) -> str:
        h = hashlib.sha256()
        for part in (self.version, kind, "\0".join(options), rule, path):
            h.update(part.encode("utf-8", errors="surrogateescape"))
            h.update(b"\0\1")
        h.update(data)
        return h.hexdigest()

    def _file(self, key: str) -> Path:
        return self.directory / key[:2] / key[2:]

    def get(self, key: str) -> dict | None:
        try:
            raw = self._file(key).read_bytes()
        except OSError:
            return None
        try:
            head, _, body = raw.partition(b"\n")
            entry = json.loads(head)
        except ValueError:
            return None
        if entry.get("has_body"):
            entry["body"] = body
        return entry

    def put(self, key: str, entry: dict, body: bytes | None = None) -> None:
        """Store entry (JSON) and, for a transformation, the new file."""
        head = dict(entry, has_body=body is not None)
        store(self._file(key), json.dumps(head).encode() + b"\n" + (body or b""))


def load_pickle(target: Path | None, valid) -> object | None:
    """What store() put at target, if valid(it) says it is what the caller
    keeps there; None when it is absent, damaged or written by other code
    (the caller then computes it again)."""
    if target is None:
        return None
    try:
        stored = pickle.loads(target.read_bytes())
    except Exception:
        return None
    return stored if valid(stored) else None


def store(target: Path, data: bytes) -> None:
    """Write a cache entry whole or not at all; a cache that cannot be
    written only costs time, so that is no error."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        pass
