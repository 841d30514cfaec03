"""Stage 1: the tree.  Read a kernel git repository at one revision.

Everything is read from the object store (git ls-tree, cat-file and grep
on the revision, run by rewriter.git), so a dirty or a bare repository
gives the same answer and nothing in it is touched; only git grep searches
the checked-out files instead, when they are the revision's to the byte
(Tree.work_tree_is_rev).
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from rewriter import cache
from rewriter.errors import InputError, RewriterError
from rewriter.git import Repo, open_repository

Hit = tuple[str, int, str]  # (file, line, text)

# What git grep found, by (git tree id, word, file name suffixes): a tree id names its whole
# content, so an answer never goes stale.  Shared by every Tree of the
# process (the series reads the tree from two threads).
_grep_memo: dict[tuple[str, str, tuple[str, ...]], list[Hit]] = {}
_grep_lock = threading.Lock()
_blob_memo: dict[tuple[str, str, str], bytes] = {}
_id_memo: dict[tuple[str, str, str], str] = {}
_work_tree_memo: dict[tuple[str, str], bool] = {}  # (git dir, rev): the checkout is the revision
_tree_id_memo: dict[tuple[str, str], str] = {}  # (git dir, rev): the commit's tree
_WORD_RUN = re.compile(r"[A-Za-z0-9_]+")
# Up to this many words, one git grep -F -e per word; more, one -P pattern.
FIXED_WORDS = 8
GREP_CONFIG = ("-c", "core.packedGitWindowSize=16m", "-c", "core.packedGitLimit=64m",
               "-c", "core.deltaBaseCacheLimit=16m")


@dataclass(frozen=True)
class Tree:
    """A repository pinned to one commit."""

    path: str  # the repository as the user named it
    rev: str  # full sha of the commit
    repo: Repo

    def read(self, relpath: str) -> bytes:
        """The blob of relpath at this commit (remembered: the stages read
        the same few files again and again).  KeyError if it is not a
        file there."""
        key = (self.repo.git_dir, self.rev, relpath)
        data = _blob_memo.get(key)
        if data is None:
            ids = self.blob_ids([relpath])
            if ids is None:
                raise KeyError(relpath)
            data = _blob_memo[key] = self.repo.blob(ids[relpath])
        return data

    def blob_ids(self, relpaths) -> dict[str, str] | None:
        """{path: blob id} at this commit, or None when one is not a file
        there: ids name contents without reading them.  One ls-tree for
        all of them."""
        paths = list(dict.fromkeys(relpaths))
        missing = [p for p in paths if (self.repo.git_dir, self.rev, p) not in _id_memo]
        if missing:
            for name, (_mode, kind, oid) in self.repo.ls_tree(self.rev, missing, "--full-tree",
                                                              literal=True).items():
                if kind == "blob":
                    _id_memo[(self.repo.git_dir, self.rev, name)] = oid
        ids = {p: _id_memo.get((self.repo.git_dir, self.rev, p)) for p in paths}
        return None if None in ids.values() else ids

    def work_tree_is_rev(self) -> bool:
        """The working tree holds exactly the revision's tracked files: the
        revision is the checked-out commit, the index has its tree, no
        tracked file differs from the index by its stat data, no entry is
        skipped or assumed unchanged, and no attribute or setting converts
        files on checkout.  With any doubt, False (and the object store is
        read).  Only read commands: the index is never refreshed.  Asked
        once per process: the caller walk greps level by level, and each
        grep would run the same git commands again."""
        key = (self.repo.git_dir, self.rev)
        if key not in _work_tree_memo:
            _work_tree_memo[key] = self._work_tree_is_rev()
        return _work_tree_memo[key]

    def _work_tree_is_rev(self) -> bool:
        repo = self.repo
        if repo.work_tree is None or repo.resolve("HEAD") != self.rev:
            return False
        try:
            if not repo.ok("diff-index", "--cached", "--quiet", "--ignore-submodules", "HEAD"):
                return False
            if not repo.ok("diff-files", "--quiet", "--ignore-submodules"):
                return False
            flags = repo.out("ls-files", "-v")
            if re.search(r"^[a-zS]", flags, flags=re.M):  # assume-unchanged (lower case) or skip-worktree
                return False
            config = repo.out("config", "--list", check=False)
            if re.search(r"^(core\.autocrlf=(true|input)|core\.eol=crlf|filter\.|core\.sparsecheckout=true)",
                         config, flags=re.M | re.I):
                return False
            attrs = repo.out("ls-files", "-z", "--", ".gitattributes", "*/.gitattributes")
            for name in filter(None, attrs.split("\0")):
                text = (Path(repo.work_tree) / name).read_text(errors="replace")
                if re.search(r"\b(filter|text|eol|crlf|ident|working-tree-encoding)\b", text):
                    return False
            info = Path(repo.git_dir) / "info" / "attributes"
            if info.exists() and info.read_text(errors="replace").strip():
                return False
        except (RewriterError, OSError, ValueError):
            return False
        return True

    def tree_id(self) -> str:
        """The id of the commit's tree: what the whole tree's contents are."""
        key = (self.repo.git_dir, self.rev)
        if key not in _tree_id_memo:
            _tree_id_memo[key] = self.repo.tree_id(self.rev)
        return _tree_id_memo[key]

    def grep_lines(self, word: str) -> list[Hit]:
        """(file, line, text) of every line at this commit with word in it."""
        return self.grep_words((word,))[word]

    def grep_words(self, words, suffixes: tuple[str, ...] = ()) -> dict[str, list[Hit]]:
        """grep_lines() for several words, with one git grep for all of
        them.  git grep decompresses every blob of the revision, which costs
        seconds on a kernel tree, so answers are remembered for the process
        and in the cache directory (keyed by the git tree id and the word).
        suffixes: only the files whose names end so (the caller walk reads
        only C), which git grep is told too: it then reads fewer files."""
        tree_id = self.tree_id()
        suffixes = tuple(suffixes)
        out: dict[str, list[Hit]] = {}
        with _grep_lock:
            missing = []
            for word in dict.fromkeys(words):
                hits = _known_hits(tree_id, word, suffixes)
                if hits is None:
                    missing.append(word)
                else:
                    out[word] = hits
            if missing:
                for word, hits in self._grep(missing, suffixes).items():
                    _store_hits(tree_id, word, suffixes, hits)
                    _grep_memo[(tree_id, word, suffixes)] = out[word] = hits
        return out

    def remembered(self, word: str, suffixes: tuple[str, ...] = ()) -> bool:
        """Whether grep_words() has the answer for word without a git grep
        (from earlier in this process, or in the cache directory)."""
        tree_id = self.tree_id()
        with _grep_lock:
            return _known_hits(tree_id, word, tuple(suffixes)) is not None

    def _grep(self, words: list[str], suffixes: tuple[str, ...] = ()) -> dict[str, list[Hit]]:
        try:
            return self._grep_with(words, suffixes, len(words) > FIXED_WORDS)
        except RewriterError:
            if len(words) <= FIXED_WORDS:
                raise
            return self._grep_with(words, suffixes, False)  # a git without PCRE: one -e per word

    def _grep_with(self, words: list[str], suffixes: tuple[str, ...], one_pattern: bool) -> dict[str, list[Hit]]:
        if one_pattern:
            # git grep tries each -e on each line in turn: a hundred words
            # cost ten times one.  One Perl pattern costs the same for any
            # number; it is slower than a few -F words.  Word boundaries as
            # -w has them (the gateway runs git with LC_ALL=C: bytes, no UTF-8).
            args = ["-n", "-P", "-e", "(?<![A-Za-z0-9_])(?:" + "|".join(re.escape(w) for w in words)
                    + ")(?![A-Za-z0-9_])"]
        else:
            args = ["-n", "-w", "-F"]
            for word in words:
                args += ["-e", word]
        # The checked-out files are the revision's blobs when nothing says
        # otherwise (work_tree_is_rev): grepping them skips inflating every
        # blob of the pack, several times faster on a kernel tree.
        on_disk = self.work_tree_is_rev()
        # "*.c" matches at any depth: the gateway runs git without the
        # user's GIT_*PATHSPECS variables, which would make it literal.
        pathspecs = [f"*{s}" for s in suffixes]
        # git maps as much of the pack as it may (256 MiB and more on a
        # 64-bit machine); smaller windows cost no time here and keep
        # the peak memory of a whole-tree grep at a fraction of that.
        out = self.repo.grep(*args, *(() if on_disk else (self.rev,)), "--", *pathspecs, config=GREP_CONFIG)
        if on_disk:
            out = "\n".join(f"{self.rev}:{line}" for line in out.splitlines())
        found: dict[str, list[Hit]] = {word: [] for word in words}
        # A line matched at least one word; which, is asked as git -w does:
        # not preceded or followed by a letter, digit or underscore.  A word
        # of those characters only is then one of the line's runs of them
        # (one look-up per line, however many words).
        names = {word for word in words if _WORD_RUN.fullmatch(word)}
        patterns = {word: re.compile(rf"(?<![A-Za-z0-9_]){re.escape(word)}(?![A-Za-z0-9_])")
                    for word in words if word not in names}
        prefix = self.rev + ":"
        for line in out.splitlines():
            if not line.startswith(prefix):
                continue
            path, lineno, text = line[len(prefix):].split(":", 2)
            if suffixes and not path.endswith(suffixes):
                continue
            hit = (path, int(lineno), text)
            for word in names.intersection(_WORD_RUN.findall(text)):
                found[word].append(hit)
            for word, pattern in patterns.items():
                if pattern.search(text):
                    found[word].append(hit)
        return found


def _known_hits(tree_id: str, word: str, suffixes: tuple[str, ...]) -> list[Hit] | None:
    """The hits of word remembered in this process or stored in the cache
    directory (then remembered), or None; the caller holds _grep_lock."""
    key = (tree_id, word, suffixes)
    hits = _grep_memo.get(key)
    if hits is None:
        hits = _load_hits(tree_id, word, suffixes)
        if hits is not None:
            _grep_memo[key] = hits
    return hits


def _hits_file(tree_id: str, word: str, suffixes: tuple[str, ...] = ()) -> Path | None:
    # Whole-tree answers keep the key they always had.
    scope = (b"\0".join(s.encode() for s in suffixes),) if suffixes else ()
    return cache.entry("grep", b"git grep -w -F", tree_id.encode(), word.encode(), *scope)


def _load_hits(tree_id: str, word: str, suffixes: tuple[str, ...] = ()) -> list[Hit] | None:
    path = _hits_file(tree_id, word, suffixes)
    if path is None:
        return None
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
        if entry["tree"] != tree_id or entry["word"] != word or entry.get("suffixes", []) != list(suffixes):
            return None
        return [(str(f), int(n), str(t)) for f, n, t in entry["hits"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent or damaged: grep again


def _store_hits(tree_id: str, word: str, suffixes: tuple[str, ...], hits: list[Hit]) -> None:
    path = _hits_file(tree_id, word, suffixes)
    if path is None:
        return
    entry = {"tree": tree_id, "word": word, "hits": hits, **({"suffixes": list(suffixes)} if suffixes else {})}
    cache.store(path, json.dumps(entry).encode())


def open_tree(path: str | os.PathLike[str], rev: str = "HEAD") -> Tree:
    """Open the repository at path and pin rev; clear errors for bad input."""
    if not Path(path).exists():
        raise InputError(f"{path}: no such directory; pass --tree with the path of a kernel git repository")
    repo = open_repository(path, "pass --tree with the path of a kernel git repository")
    commit = repo.commit_id(rev)
    if commit is None:
        if rev == "HEAD" and repo.resolve("HEAD") is None:
            raise InputError(f"{path}: the repository has no commits yet; commit the kernel source "
                             f"first, or pass --rev with a commit")
        raise InputError(f"{rev}: unknown revision in {path}; pass --rev with a commit, branch or tag that exists")
    return Tree(path=str(path), rev=commit, repo=repo)
