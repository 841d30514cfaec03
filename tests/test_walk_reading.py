"""What the caller walk reads, and how: greps of C sources only, one Perl
pattern for many words, and the reading ahead in a thread.  Each is only
faster; the answers must be the ones of the plain way."""

from __future__ import annotations

import re
import subprocess

from rewriter import callers, recipe
from rewriter import scan as scan_mod
from rewriter.runner import Runner
from rewriter.tree import FIXED_WORDS, open_tree


def _names(repo) -> list[str]:
    """More function names of the fixture tree than FIXED_WORDS, and one
    that is a prefix of another (a word match must not stop at the first)."""
    found = set()
    for path in sorted((repo / "mm").glob("*.c")):
        found |= set(re.findall(r"^\w[\w\s*]*?\b(\w+)\(", path.read_text(), re.M))
    names = sorted(found)[:FIXED_WORDS + 4] + ["pte_offset_map", "pte_offset_map_nolock", "spin_lock"]
    assert len(names) > FIXED_WORDS + 2
    return names


def test_one_pattern_for_many_words_finds_what_a_pattern_per_word_finds(scratch_repo):
    tree = open_tree(scratch_repo)
    words = _names(scratch_repo)
    for suffixes in ((), callers.C_SUFFIXES):
        one = tree._grep_with(words, suffixes, True)
        each = tree._grep_with(words, suffixes, False)
        assert one == each
        assert one["pte_offset_map_nolock"] and one["spin_lock"]
    assert tree._grep(words) == tree._grep_with(words, (), False)


def test_the_c_only_grep_is_the_whole_grep_less_other_files(scratch_repo, monkeypatch):
    (scratch_repo / "Documentation").mkdir(exist_ok=True)
    (scratch_repo / "Documentation" / "notes.rst").write_text("spin_lock() and pte_offset_map_nolock()\n")
    (scratch_repo / "mm" / "entry.S").write_text("\tcall spin_lock\n")
    subprocess.run(["git", "-C", str(scratch_repo), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(scratch_repo), "-c", "user.name=t", "-c", "user.email=t@example.invalid",
                    "commit", "-qm", "not C"], check=True)
    tree = open_tree(scratch_repo)
    words = ["spin_lock", "pte_offset_map_nolock"]
    whole = tree._grep(words)
    assert any(h[0].endswith((".rst", ".S")) for hits in whole.values() for h in hits)
    expected = {w: [h for h in hits if h[0].endswith(callers.C_SUFFIXES)] for w, hits in whole.items()}
    assert tree._grep(words, callers.C_SUFFIXES) == expected
    # A literal "*.c" would match no file: then every file is read, and
    # the hits are still kept by their names.
    monkeypatch.setenv("GIT_LITERAL_PATHSPECS", "1")
    assert tree._grep(words, callers.C_SUFFIXES) == expected


def test_reading_ahead_changes_neither_the_scan_nor_what_the_walk_records(scratch_repo, monkeypatch):
    monkeypatch.setenv("REWRITER_CACHE", "off")
    recorded = []
    read_for = []
    depends_on = callers.Walker.depends_on
    monkeypatch.setattr(callers.Walker, "depends_on", lambda self: recorded.append(depends_on(self)) or recorded[-1])
    read_ahead = callers.Walker._read_ahead
    monkeypatch.setattr(callers.Walker, "_read_ahead", lambda self, todo: read_for.append(todo) or read_ahead(self, todo))
    ahead = scan_mod.scan(open_tree(scratch_repo), Runner(), recipe.find(None)).to_json()
    assert read_for and any(walked for walked in recorded[0][0]), "the fixture's walk greps and reads ahead"
    monkeypatch.setattr(callers.Walker, "read_ahead", lambda self, functions: None)
    plain = scan_mod.scan(open_tree(scratch_repo), Runner(), recipe.find(None)).to_json()
    assert ahead == plain
    assert recorded[0] == recorded[1]
    assert any("caller chain" in e["text"] for s in plain["sites"] for e in s["evidence"])


def test_a_caller_that_names_no_taker_is_not_asked(scratch_repo, monkeypatch):
    """A function whose body names none of the lock's takers cannot hold
    it: the walk answers so without a spatch question, and the scan is the
    one it is when every such function is asked."""
    monkeypatch.setenv("REWRITER_CACHE", "off")
    asked: list[list[str]] = []
    run_together = Runner.run_together

    def recording(self, cocci_text, files, marker, label, jobs=1, timeout=None):
        if label == "writelocked":
            asked.append(sorted(files))
        return run_together(self, cocci_text, files, marker, label, jobs, timeout)

    monkeypatch.setattr(Runner, "run_together", recording)
    quick = scan_mod.scan(open_tree(scratch_repo), Runner(), recipe.find(None)).to_json()
    few = sum(map(len, asked))
    asked.clear()
    monkeypatch.setattr(callers, "_names_any", lambda text, fn, names: True)
    every = scan_mod.scan(open_tree(scratch_repo), Runner(), recipe.find(None)).to_json()
    assert quick == every
    assert any("caller chain" in e["text"] and "holds the mmap_lock for write" in e["text"]
               for s in every["sites"] for e in s["evidence"]), "the fixture has a write-locked chain"
    assert 0 < few < sum(map(len, asked))


def test_climbing_static_callers_saves_greps_and_changes_nothing(scratch_repo, monkeypatch):
    """A grep the walk must make takes along the names a later level will
    grep for after a climb through static callers: fewer passes over the
    tree, the same scan and the same record of what was read."""
    from rewriter import tree as tree_mod

    monkeypatch.setenv("REWRITER_CACHE", "off")
    monkeypatch.setattr(callers.Walker, "read_ahead", lambda self, functions: None)
    passes: list[list[str]] = []
    grep_with = tree_mod.Tree._grep_with
    monkeypatch.setattr(tree_mod.Tree, "_grep_with",
                        lambda self, words, suffixes, one: passes.append(list(words)) or grep_with(self, words, suffixes, one))
    recorded = []
    depends_on = callers.Walker.depends_on
    monkeypatch.setattr(callers.Walker, "depends_on", lambda self: recorded.append(depends_on(self)) or recorded[-1])

    def scanned():
        tree_mod._grep_memo.clear()
        passes.clear()
        return scan_mod.scan(open_tree(scratch_repo), Runner(), recipe.find(None)).to_json(), len(passes)

    climbing, fewer = scanned()
    monkeypatch.setattr(callers.Walker, "_static_climb", lambda self, functions: [])
    plain, more = scanned()
    assert climbing == plain
    assert recorded[0] == recorded[1]
    assert fewer < more, (fewer, more)
