"""Trees made without an index: the ids rewriter computes are git's."""

from __future__ import annotations

import os
import subprocess

import pytest

from conftest import commit_all, git, git_env
from rewriter.gitstore import Git, Trees

# Names whose order in a tree is not plain string order: git sorts a
# directory as if its name ended in "/", so "a.c" < "a" (dir) < "a0".
FILES = {"a.c": "1\n", "a/inner.c": "2\n", "a0": "3\n", "a-b/x.c": "4\n", "deep/er/still/f.c": "5\n",
         "run.sh": "#!/bin/sh\n"}


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "repo"
    for path, text in FILES.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    os.chmod(root / "run.sh", 0o755)
    git(tmp_path, "init", "-q", "-b", "main", str(root))
    commit_all(root, "base")
    return root


def _with_index(repo, base: str, files: dict[str, tuple[str, str]], index) -> str:
    """The same tree made the ordinary way, through an index."""
    env = dict(git_env(), GIT_INDEX_FILE=str(index))
    subprocess.run(["git", "read-tree", base], cwd=repo, env=env, check=True)
    for path, (mode, blob) in files.items():
        subprocess.run(["git", "update-index", "--add", "--cacheinfo", f"{mode},{blob},{path}"],
                       cwd=repo, env=env, check=True)
    return subprocess.run(["git", "write-tree"], cwd=repo, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


def test_trees_have_the_ids_git_gives_them(repo, tmp_path):
    store = Git(repo / ".git")
    base = store.tree_id("HEAD")
    b1, b2, b3 = store.blobs([b"new\n", b"changed\n", b"x\n"])
    steps = [
        {"a/inner.c": ("100644", b2), "a.c": ("100644", b1)},
        {"deep/er/still/f.c": ("100644", b3), "deep/er/new.c": ("100644", b1), "a-b/y.c": ("100644", b2)},
        {"run.sh": ("100755", b2), "new/dir/file.c": ("100644", b3)},
    ]
    trees = Trees(store)
    made = []
    tree = base
    for files in steps:
        tree = trees.with_files(tree, files)
        made.append((files, tree))
    trees.write()
    expected = base
    for n, (files, tree) in enumerate(made):
        expected = _with_index(repo, expected, files, tmp_path / f"index{n}")
        assert tree == expected
        assert git(repo, "cat-file", "-t", tree) == "tree"
    assert git(repo, "fsck", "--no-dangling", "--strict") == ""


def test_blobs_are_written_as_they_are(repo):
    store = Git(repo / ".git")
    (repo / ".gitattributes").write_text("* text=auto eol=crlf\n")  # no filter may apply
    data = [b"", b"a\r\nb\n", b"a\nb\n", bytes(range(256))]
    blobs = store.blobs(data)
    assert blobs == [store.blob(raw) for raw in data]
    for blob, raw in zip(blobs, data):
        assert subprocess.run(["git", "cat-file", "blob", blob], cwd=repo, capture_output=True,
                              check=True).stdout == raw


def test_migrate_takes_an_object_directory_made_meanwhile(repo, monkeypatch):
    """Another git (another rewriter series) makes objects/xx/ between
    migrate()'s look and its mkdir: the object goes in all the same, and
    unmigrate() leaves the directory, which is not its own (issue #17: the
    FileExistsError was reported as "-o DIR: cannot write the series
    there (File exists)")."""
    from pathlib import Path

    g = Git(repo / ".git")
    with g.quarantine():
        blob = g.blob(b"made in quarantine\n")
        target = Path(g.objects_dir()) / blob[:2]
        real_is_dir = Path.is_dir

        def made_meanwhile(self):
            if self == target:
                self.mkdir(exist_ok=True)
                return False
            return real_is_dir(self)

        monkeypatch.setattr(Path, "is_dir", made_meanwhile)
        added = g.migrate()
        monkeypatch.setattr(Path, "is_dir", real_is_dir)
    assert added == [target / blob[2:]]
    assert git(repo, "cat-file", "-t", blob) == "blob"
    g.unmigrate(added)
    assert target.is_dir() and not (target / blob[2:]).exists()
