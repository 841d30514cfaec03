"""rewriter.git, the one module that runs git: which repository it reads,
the environment it runs in, and how it reports failures."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest

from conftest import commit_all, git, head_sha
from rewriter.errors import InputError, RewriterError
from rewriter.git import Repo, environment, open_repository
from rewriter.gitstore import Git
from rewriter.tree import open_tree

FILE = "mm/fixture_basic.c"
WORD = "pte_offset_map_nolock"


@pytest.fixture
def other_repo(tmp_path) -> Path:
    """A repository with other files, for variables to point at."""
    other = tmp_path / "other"
    (other / "mm").mkdir(parents=True)
    (other / "mm" / "other.c").write_text("int other;\n")
    git(tmp_path, "init", "-q", "-b", "main", str(other))
    commit_all(other, "other")
    return other


def test_the_users_git_variables_do_not_reach_git(scratch_repo, other_repo, monkeypatch):
    """As in a git hook, or a shell that exported GIT_DIR: the tree named
    is the one read, not the one the variables name."""
    expected, head = (scratch_repo / FILE).read_bytes(), head_sha(scratch_repo)
    for name, value in {"GIT_DIR": other_repo / ".git", "GIT_WORK_TREE": other_repo,
                        "GIT_INDEX_FILE": other_repo / ".git" / "index",
                        "GIT_OBJECT_DIRECTORY": other_repo / ".git" / "objects"}.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.setenv("REWRITER_CACHE", "off")
    tree = open_tree(scratch_repo)
    assert tree.rev == head
    assert tree.read(FILE) == expected
    assert tree.work_tree_is_rev()
    assert any(path == FILE for path, _line, _text in tree._grep([WORD])[WORD])
    assert Git(scratch_repo / ".git").resolve("HEAD") == tree.rev


def test_the_environment_has_none_of_the_users_git_variables(monkeypatch):
    monkeypatch.setenv("GIT_DIR", "/nowhere")
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", "'core.bare'='true'")
    monkeypatch.setenv("EMAIL", "someone@example.invalid")
    env = environment({"GIT_COMMITTER_NAME": "x"})
    assert not {"GIT_DIR", "GIT_CONFIG_PARAMETERS", "EMAIL"} & set(env)
    assert env["GIT_COMMITTER_NAME"] == "x" and env["GIT_TERMINAL_PROMPT"] == "0" and env["LC_ALL"] == "C"
    assert "GIT_CONFIG_GLOBAL" not in env
    assert environment(clean_config=True)["GIT_CONFIG_NOSYSTEM"] == "1"


def test_a_directory_inside_a_repository_is_not_one(scratch_repo):
    with pytest.raises(InputError, match=r"^.*/mm: not a git repository; do this$"):
        open_repository(scratch_repo / "mm", "do this")
    with pytest.raises(InputError, match="not a git repository"):
        open_tree(scratch_repo / "mm")


def test_where_the_files_are(scratch_repo, tmp_path):
    checkout = open_repository(scratch_repo, "")
    assert checkout.work_tree == str(scratch_repo) and Path(checkout.git_dir) == scratch_repo / ".git"
    bare = tmp_path / "bare.git"
    git(tmp_path, "clone", "-q", "--bare", str(scratch_repo), str(bare))
    assert open_repository(bare, "").work_tree is None
    # A git directory that is not bare: read without its files.
    assert open_repository(scratch_repo / ".git", "").work_tree is None
    linked = tmp_path / "linked"
    git(scratch_repo, "worktree", "add", "-q", "--detach", str(linked))
    repo = open_repository(linked, "")
    assert repo.work_tree == str(linked) and "worktrees" in repo.git_dir
    for path in (bare, scratch_repo / ".git", linked):
        tree = open_tree(path)
        assert tree.read(FILE) == (scratch_repo / FILE).read_bytes()
    assert open_tree(linked).work_tree_is_rev() and not open_tree(bare).work_tree_is_rev()


def test_a_failure_is_one_line_naming_the_command(scratch_repo):
    repo = Repo(scratch_repo / ".git")
    with pytest.raises(RewriterError) as caught:
        repo.run("-c", "core.pager=cat", "cat-file", "blob", "HEAD:no/such/file")
    message = str(caught.value)
    assert message.startswith("git cat-file failed: fatal: ") and "\n" not in message
    with pytest.raises(RewriterError, match=r"^git rev-parse failed in .*linux: "):
        Repo.at(scratch_repo).run("rev-parse", "--verify", "no-such-branch")


def test_reads(scratch_repo):
    repo = open_repository(scratch_repo, "")
    head = head_sha(scratch_repo)
    assert repo.commit_id("HEAD") == head and repo.resolve("main") == head
    assert repo.commit_id("no-such-branch") is None and repo.commit_id("--all") is None
    assert repo.read_blob("HEAD", FILE) == (scratch_repo / FILE).read_bytes()
    assert repo.read_blob("HEAD", "no/such/file") is None
    mode, kind, oid = repo.ls_tree("HEAD", [FILE])[FILE]
    assert (mode, kind) == ("100644", "blob") and repo.blob(oid) == (scratch_repo / FILE).read_bytes()
    assert repo.grep("-w", "-e", "no_such_word_anywhere", "HEAD", "--") == ""
    assert f"HEAD:{FILE}:" in repo.grep("-n", "-w", "-e", WORD, "HEAD", "--")
    with pytest.raises(RewriterError, match="^git grep failed"):
        repo.grep("-e", WORD, "no-such-branch", "--")


def test_export_and_shared_clone(scratch_repo, tmp_path):
    repo = Repo.at(scratch_repo)
    out = tmp_path / "out"
    out.mkdir()
    repo.export("HEAD", out)
    assert (out / FILE).read_bytes() == (scratch_repo / FILE).read_bytes()
    with pytest.raises(RewriterError, match="cannot export no-such-branch with git archive"):
        repo.export("no-such-branch", out)
    clone = repo.clone_shared(tmp_path / "clone", "--no-checkout")
    assert clone.commit_id("HEAD") == head_sha(scratch_repo)
    alternates = Path(tmp_path / "clone" / ".git" / "objects" / "info" / "alternates").read_text()
    assert str(scratch_repo) in alternates
    assert not (tmp_path / "clone" / FILE).exists()
    # Nothing was written to the source.
    status = subprocess.run(["git", "status", "--porcelain"], cwd=scratch_repo, capture_output=True, text=True)
    assert status.stdout == ""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the repository to another user")
def test_a_repository_of_another_user_is_refused_with_what_to_do(scratch_repo):
    subprocess.run(["chown", "-R", "65534", str(scratch_repo)], check=True)
    with pytest.raises(InputError, match=r"another user owns; if you trust it, run: "
                                         r"git config --global --add safe.directory .*/linux$"):
        open_tree(scratch_repo)


def test_blobs_through_one_cat_file(scratch_repo):
    """blob() keeps one git cat-file --batch; one that died is replaced,
    threads take turns, and a missing blob is git's error."""
    repo = open_repository(scratch_repo, "")
    entries = {p: e[2] for p, e in repo.ls_tree("HEAD", [], "-r").items() if e[1] == "blob"}
    expected = {p: (scratch_repo / p).read_bytes() for p in entries}
    assert repo.blob(entries[FILE]) == expected[FILE]
    first = repo._objects._proc
    first.kill()
    first.wait()
    assert repo.blob(entries[FILE]) == expected[FILE]
    assert repo._objects._proc is not first and repo._objects._proc.poll() is None
    results: dict[str, bytes] = {}

    def read(paths):
        for p in paths:
            results[p] = repo.blob(entries[p])

    paths = sorted(entries)
    threads = [threading.Thread(target=read, args=(paths[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == expected
    with pytest.raises(RewriterError, match="^git cat-file failed"):
        repo.blob("0" * 40)
    proc = repo._objects._proc
    del repo
    assert proc.wait(timeout=5) == 0  # ended with its Repo
