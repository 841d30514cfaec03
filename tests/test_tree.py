"""git grep of the checked-out files instead of the revision's blobs: only
when they are the revision's to the byte, and with the same answers."""

from __future__ import annotations

import subprocess

import pytest

from rewriter import recipe
from rewriter import scan as scan_mod
from rewriter.runner import Runner
from rewriter.tree import Tree, open_tree

WORDS = ["pte_offset_map_nolock", "fixture_pt_lock", "spin_lock"]


def _grep(tree: Tree, on_disk: bool, monkeypatch) -> dict:
    monkeypatch.setattr(Tree, "work_tree_is_rev", lambda self: on_disk)
    return tree._grep(WORDS)


def test_a_clean_checkout_is_grepped_with_the_same_answers(scratch_repo, monkeypatch):
    tree = open_tree(scratch_repo)
    assert tree.work_tree_is_rev()
    from_disk = _grep(tree, True, monkeypatch)
    assert from_disk == _grep(tree, False, monkeypatch)
    assert from_disk["pte_offset_map_nolock"]


def test_the_same_scan_either_way(scratch_repo, monkeypatch):
    monkeypatch.setenv("REWRITER_CACHE", "off")
    results = []
    for on_disk in (True, False):
        monkeypatch.setattr(Tree, "work_tree_is_rev", lambda self, v=on_disk: v)
        results.append(scan_mod.scan(open_tree(scratch_repo), Runner(), recipe.find(None)).to_json())
    assert results[0] == results[1]


@pytest.mark.parametrize("change", ["dirty", "staged", "other_rev", "filter", "crlf", "skip_worktree", "bare"])
def test_any_doubt_reads_the_object_store(scratch_repo, tools, tmp_path, change):
    repo = scratch_repo
    rev = "HEAD"
    if change == "dirty":
        (repo / "mm" / "fixture_basic.c").write_text("/* pte_offset_map_nolock */\n")
    elif change == "staged":
        (repo / "mm" / "fixture_basic.c").write_text("/* pte_offset_map_nolock */\n")
        tools.git(repo, "add", "mm/fixture_basic.c")
    elif change == "other_rev":
        (repo / "mm" / "new.c").write_text("int x;\n")
        tools.commit_all(repo, "one more")
        rev = "HEAD~1"
    elif change == "filter":
        (repo / ".gitattributes").write_text("*.c filter=lfs\n")
        tools.commit_all(repo, "a filter")
    elif change == "crlf":
        tools.git(repo, "config", "core.autocrlf", "true")
    elif change == "skip_worktree":
        tools.git(repo, "update-index", "--skip-worktree", "mm/fixture_basic.c")
    elif change == "bare":
        bare = tmp_path / "bare.git"
        subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(bare)], check=True)
        repo = bare
    assert not open_tree(repo, rev).work_tree_is_rev()
