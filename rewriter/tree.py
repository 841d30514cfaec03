"""Stage 1: the tree.  Read a kernel git repository at one revision.

Everything is read from the object store (GitPython, git grep on the
revision), never from the working tree, so a dirty or a bare repository
gives the same answer and nothing in it is touched.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import git

from rewriter.errors import InputError


@dataclass(frozen=True)
class Tree:
    """A repository pinned to one commit."""

    path: str  # the repository as the user named it
    rev: str  # full sha of the commit
    repo: git.Repo

    def read(self, relpath: str) -> bytes:
        """The blob of relpath at this commit."""
        blob = self.repo.commit(self.rev).tree / relpath
        return blob.data_stream.read()

    def grep_lines(self, word: str) -> list[tuple[str, int, str]]:
        """(file, line, text) of every line at this commit with word in it."""
        try:
            out = self.repo.git.grep("-n", "-w", "-F", "-e", word, self.rev, "--")
        except git.GitCommandError as exc:
            if exc.status == 1:
                return []
            raise
        hits = []
        prefix = self.rev + ":"
        for line in out.splitlines():
            if not line.startswith(prefix):
                continue
            path, lineno, text = line[len(prefix):].split(":", 2)
            hits.append((path, int(lineno), text))
        return hits


def open_tree(path: str | os.PathLike[str], rev: str = "HEAD") -> Tree:
    """Open the repository at path and pin rev; clear errors for bad input."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{path}: no such directory; pass --tree with the path of a kernel git repository")
    try:
        repo = git.Repo(p, search_parent_directories=False)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise InputError(f"{path}: not a git repository; pass --tree with the path of a kernel git repository") from None
    try:
        commit = repo.commit(rev)
    except (git.BadName, ValueError, git.GitCommandError):
        if rev == "HEAD" and not repo.head.is_valid():
            raise InputError(f"{path}: the repository has no commits yet; commit the kernel source "
                             f"first, or pass --rev with a commit") from None
        raise InputError(f"{rev}: unknown revision in {path}; pass --rev with a commit, branch or tag that exists") from None
    return Tree(path=str(path), rev=commit.hexsha, repo=repo)
