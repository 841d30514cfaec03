"""rewriter.helpers: the names of the two new functions, adding them next to
pte_offset_map_nolock() (introduce) and taking the old function out again
(remove), on the fixture tree and on the real Linux 6.12 tree.

The diffs are parsed with unidiff; the lines added and removed are compared
with the exact lines expected.
"""

from __future__ import annotations

import difflib
import os
import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest
import unidiff

from rewriter import helpers
from rewriter.errors import InputError
from rewriter import recipe
from rewriter.recipe import Names

RECIPE = recipe.find(None)
HEADER, SOURCE, DOC = FILES = RECIPE.files
from rewriter.runner import FileResult, Runner
from rewriter.tree import open_tree

OLD = "pte_offset_map_nolock"
DEFAULT = Names("pte_offset_map_readonly_nolock", "pte_offset_map_maywrite_nolock")
SHORT = Names("pte_offset_map_ro_nolock", "pte_offset_map_rw_nolock")

# What introduce() adds to the fixture tree with the default names.
FIXTURE_PROTOTYPES = [
    "pte_t *pte_offset_map_readonly_nolock(struct mm_struct *mm, pmd_t *pmd,",
    "\t\t\t\t      unsigned long addr, spinlock_t **ptlp);",
    "pte_t *pte_offset_map_maywrite_nolock(struct mm_struct *mm, pmd_t *pmd,",
    "\t\t\t\t      unsigned long addr, pmd_t *pmdvalp,",
    "\t\t\t\t      spinlock_t **ptlp);",
]

OLD_BODY = [
    "\tpmd_t pmdval;",
    "\tpte_t *pte;",
    "",
    "\tpte = __pte_offset_map(pmd, addr, &pmdval);",
    "\tif (likely(pte))",
    "\t\t*ptlp = pte_lockptr(mm, &pmdval);",
    "\treturn pte;",
]

MAYWRITE_BODY = [
    "\tpte_t *pte;",
    "",
    "\tVM_WARN_ON_ONCE(!pmdvalp);",
    "\tpte = __pte_offset_map(pmd, addr, pmdvalp);",
    "\tif (likely(pte))",
    "\t\t*ptlp = pte_lockptr(mm, pmdvalp);",
    "\treturn pte;",
]

DEFINITIONS = [
    "pte_t *pte_offset_map_readonly_nolock(struct mm_struct *mm, pmd_t *pmd,",
    "\t\t\t\t      unsigned long addr, spinlock_t **ptlp)",
    "{",
    *OLD_BODY,
    "}",
    "",
    "pte_t *pte_offset_map_maywrite_nolock(struct mm_struct *mm, pmd_t *pmd,",
    "\t\t\t\t      unsigned long addr, pmd_t *pmdvalp,",
    "\t\t\t\t      spinlock_t **ptlp)",
    "{",
    *MAYWRITE_BODY,
    "}",
    "",
]

# The fixture's comment is 74 columns wide.
FIXTURE_PARAGRAPHS = [
    " *",
    " * pte_offset_map_readonly_nolock(mm, pmd, addr, ptlp) is like",
    " * pte_offset_map(); but when successful, it also outputs a pointer to",
    " * the spinlock in ptlp - as pte_offset_map_lock() does, but without",
    " * locking it.  It is for callers that only read the page table entries.",
    " * Such a caller may take the lock to read entries that are stable, but",
    " * must not change any entry, nor remove the table, even while it holds",
    " * the lock: by then the table may have been removed from *pmd.  The",
    " * rcu_read_lock() taken by the mapping keeps even a removed table valid",
    " * (though empty and disconnected) until pte_unmap(), which is enough for",
    " * reading.",
    " *",
    " * pte_offset_map_maywrite_nolock(mm, pmd, addr, pmdvalp, ptlp) is like",
    " * pte_offset_map_readonly_nolock(); but when successful, it also outputs",
    " * in *pmdvalp the pmd value that the page table was found through",
    " * (pmdvalp must not be NULL), and the spinlock pointer in ptlp is the",
    " * one for that value.  It is for callers that will change entries, or",
    " * remove the table, once they hold the lock.  After taking the lock, and",
    " * before writing, such a caller must make sure that the table is stable,",
    " * that is, still the one at *pmd: by holding the mmap_lock for write, or",
    " * with pte_same() on an entry that it read earlier and that is not none",
    " * (an empty table put in this one's place compares equal to a none",
    " * entry), or by rechecking the pmd with",
    " * pmd_same(pmdval, pmdp_get_lockless(pmd)), where pmdval is the value",
    " * returned in *pmdvalp; and if that fails, unlock and retry or give up.",
    " * The first two need no pmdval: such a caller may pass a dummy one.",
]

DOC_ENTRIES = [
    " - pte_offset_map_readonly_nolock()",
    "\tmaps PTE, returns pointer to PTE with pointer to its PTE table lock",
    "\t(not taken), or returns NULL if no PTE table; for callers that only",
    "\tread the PTEs;",
    " - pte_offset_map_maywrite_nolock()",
    "\tmaps PTE, returns pointer to PTE with pointer to its PTE table lock",
    "\t(not taken) and the value of the PMD entry in pmdvalp, or returns",
    "\tNULL if no PTE table; for callers that may modify the PTEs, which",
    "\tmust recheck the PMD entry with pmd_same() or a PTE with pte_same()",
    "\tafter taking the lock;",
]

# What remove() takes out of the fixture tree after introduce().
FIXTURE_OLD_PROTOTYPE = [
    "pte_t *pte_offset_map_nolock(struct mm_struct *mm, pmd_t *pmd, unsigned long addr, spinlock_t **ptlp);",
]
OLD_DEFINITION = [
    "pte_t *pte_offset_map_nolock(struct mm_struct *mm, pmd_t *pmd,",
    "\t\t\t     unsigned long addr, spinlock_t **ptlp)",
    "{",
    *OLD_BODY,
    "}",
    "",
]
FIXTURE_OLD_PARAGRAPH = [
    " * pte_offset_map_nolock(mm, pmd, addr, ptlp) maps the PTE table like",
    " * pte_offset_map() does, and on success also stores the address of the",
    " * table's spinlock in *ptlp, exactly as pte_offset_map_lock() would, but",
    " * without taking that lock.  A caller that goes on to take the lock must",
    " * check afterwards that the pmd still points at the same table (or that",
    " * the entry it cares about is unchanged) before modifying anything.",
    " *",
]
FIXTURE_OLD_DOC = [
    " - pte_offset_map_nolock()",
    "\tmaps the PTE table and reports its lock without taking it; the",
    "\tcaller takes the lock itself and must recheck the table afterwards;",
]


# --------------------------------------------------------------------------
# helpers of the tests
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def runner() -> Runner:
    return Runner(jobs=2)


def patched(before: bytes, after: bytes, path: str) -> unidiff.PatchedFile:
    """The unified diff from before to after, parsed."""
    text = "".join(difflib.unified_diff(
        before.decode().splitlines(keepends=True), after.decode().splitlines(keepends=True),
        f"a/{path}", f"b/{path}"))
    patch = unidiff.PatchSet(text)
    assert len(patch) == 1, f"{path}: no change"
    return patch[0]


def added(pf: unidiff.PatchedFile) -> list[str]:
    return [line.value.rstrip("\n") for hunk in pf for line in hunk if line.is_added]


def removed(pf: unidiff.PatchedFile) -> list[str]:
    return [line.value.rstrip("\n") for hunk in pf for line in hunk if line.is_removed]


def text_of(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


def check_inserted(before: bytes, after: bytes, path: str,
                   inserts: list[tuple[list[str], list[str]]]) -> None:
    """after is before with each block inserted right after its anchor
    lines, and nothing else changed; the diff adds exactly those lines."""
    pf = patched(before, after, path)
    assert removed(pf) == [], f"{path}: lines removed"
    assert Counter(added(pf)) == Counter(line for _anchor, block in inserts for line in block)
    expected = before.decode()
    for anchor, block in inserts:
        assert expected.count(text_of(anchor)) == 1, f"{path}: anchor not unique: {anchor[0]!r}"
        expected = expected.replace(text_of(anchor), text_of(anchor) + text_of(block))
    assert after.decode() == expected


def check_removed(before: bytes, after: bytes, path: str,
                  removals: list[tuple[list[str], list[str]]]) -> None:
    """after is before without each block, which followed its anchor lines;
    the diff removes exactly those lines."""
    pf = patched(before, after, path)
    assert added(pf) == [], f"{path}: lines added"
    assert Counter(removed(pf)) == Counter(line for _anchor, block in removals for line in block)
    expected = before.decode()
    for anchor, block in removals:
        assert expected.count(text_of(anchor + block)) == 1, f"{path}: block not found: {block[0]!r}"
        expected = expected.replace(text_of(anchor + block), text_of(anchor))
    assert after.decode() == expected


def originals(repo: Path) -> dict[str, bytes]:
    tree = open_tree(repo)
    return {path: tree.read(path) for path in FILES}


def only_old_out_and_new_in(orig: dict[str, bytes], intro: dict[str, bytes],
                            gone: dict[str, bytes]) -> None:
    """remove(introduce(x)) is x without the old things and with the new ones."""
    for path in FILES:
        step1 = patched(orig[path], intro[path], path)
        step2 = patched(intro[path], gone[path], path)
        assert removed(step1) == [], f"{path}: introduce() removed lines"
        assert added(step2) == [], f"{path}: remove() added lines"
        whole = patched(orig[path], gone[path], path)
        assert Counter(removed(whole)) <= Counter(removed(step2)), path
        assert Counter(added(whole)) <= Counter(added(step1)), path
        assert not any(re.search(rf"\b{OLD}\b", line) for line in added(whole)), path


def diff_check(tmp_path: Path, tools, before: dict[str, bytes], after: dict[str, bytes]) -> str:
    """git diff --check from before to after, in a throw-away repository."""
    repo = tmp_path / "check"
    for path, data in before.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_bytes(data)
    tools.git(repo.parent, "init", "-q", "-b", "main", str(repo))
    tools.commit_all(repo, "before")
    for path, data in after.items():
        (repo / path).write_bytes(data)
    proc = subprocess.run(["git", "diff", "--check"], cwd=repo, capture_output=True, text=True,
                          env=_git_env(), check=False)
    assert proc.returncode == 0 or proc.stdout, proc.stderr
    return proc.stdout


def _git_env() -> dict[str, str]:
    env = dict(os.environ)
    env["GIT_CONFIG_GLOBAL"] = os.devnull
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    return env


# --------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------

@pytest.mark.parametrize("text, readonly, maywrite", [
    ("readonly,maywrite", "pte_offset_map_readonly_nolock", "pte_offset_map_maywrite_nolock"),
    ("ro,rw", "pte_offset_map_ro_nolock", "pte_offset_map_rw_nolock"),
    ("r1,w_2", "pte_offset_map_r1_nolock", "pte_offset_map_w_2_nolock"),
    (" ro , rw ", "pte_offset_map_ro_nolock", "pte_offset_map_rw_nolock"),
])
@pytest.mark.unit
def test_names_parse(text, readonly, maywrite):
    assert RECIPE.names(text) == Names(readonly, maywrite)


@pytest.mark.unit
def test_default_names():
    assert RECIPE.default_names == RECIPE.names("readonly,maywrite") == DEFAULT


@pytest.mark.parametrize("text, message", [
    ("ro", "give two different words separated by a comma"),
    ("ro,rw,x", "give two different words separated by a comma"),
    ("ro,", "give two different words separated by a comma"),
    (",rw", "give two different words separated by a comma"),
    ("", "give two different words separated by a comma"),
    ("r-o,rw", "'pte_offset_map_r-o_nolock' is not a C identifier"),
    ("ro,r w", "'pte_offset_map_r w_nolock' is not a C identifier"),
    ("ro,rw()", "'pte_offset_map_rw()_nolock' is not a C identifier"),
    ("ro,r\u00e9", "is not a C identifier"),
    ("ro,ro", "both functions would be called pte_offset_map_ro_nolock"),
])
@pytest.mark.unit
def test_names_parse_refuses(text, message):
    with pytest.raises(InputError) as info:
        RECIPE.names(text)
    shown = str(info.value)
    assert message in shown
    assert f"names {text!r}" in shown
    assert "\n" not in shown


def test_check_names_free(scratch_repo, tools):
    helpers.check_names_free(open_tree(scratch_repo), DEFAULT)
    helpers.check_names_free(open_tree(scratch_repo), SHORT)
    note = scratch_repo / "mm" / "notes.txt"
    note.write_text("one\npte_offset_map_rw_nolock() is taken\n")
    tools.commit_all(scratch_repo, "take a name")
    helpers.check_names_free(open_tree(scratch_repo), DEFAULT)
    with pytest.raises(InputError) as info:
        helpers.check_names_free(open_tree(scratch_repo), SHORT)
    assert str(info.value).startswith("pte_offset_map_rw_nolock already occurs in ")
    assert "(mm/notes.txt:2)" in str(info.value)
    # Only the revision counts, not the work tree.
    note.unlink()
    with pytest.raises(InputError):
        helpers.check_names_free(open_tree(scratch_repo), SHORT)
    helpers.check_names_free(open_tree(scratch_repo, "HEAD~1"), SHORT)


# --------------------------------------------------------------------------
# Runner.transform
# --------------------------------------------------------------------------

def test_transform_returns_new_contents(runner):
    rule = "@@\n@@\n- foo();\n+ bar();\n"
    files = {"a/one.c": b"void f(void)\n{\n\tfoo();\n}\n", "b/two.c": b"void g(void)\n{\n}\n"}
    out = runner.transform(rule, files)
    assert out == {"a/one.c": b"void f(void)\n{\n\tbar();\n}\n", "b/two.c": files["b/two.c"]}


def test_transform_reports_failures(runner):
    out = runner.transform("@@\n@@\n- foo(\n", {"one.c": b"int x;\n"})
    assert isinstance(out["one.c"], FileResult)
    assert out["one.c"].error.startswith("spatch failed")


# --------------------------------------------------------------------------
# introduce and remove on the fixture tree
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fixture_run(tmp_path_factory, tools):
    """(originals, introduce() result, remove() result) on the fixture tree."""
    repo = tools.make_git_repo(tools.FIXTURE_TREE, tmp_path_factory.mktemp("helpers") / "linux")
    run = Runner(jobs=2)
    orig = originals(repo)
    intro = helpers.introduce(open_tree(repo), run, DEFAULT, RECIPE)
    gone = helpers.remove({**orig, **intro}, run, DEFAULT, RECIPE)
    return orig, intro, gone


def test_introduce_changes_three_files(fixture_run):
    orig, intro, _gone = fixture_run
    assert sorted(intro) == sorted(FILES)
    for path in FILES:
        assert intro[path] != orig[path]


def test_introduce_prototypes(fixture_run):
    orig, intro, _gone = fixture_run
    check_inserted(orig[HEADER], intro[HEADER], HEADER, [(FIXTURE_OLD_PROTOTYPE, FIXTURE_PROTOTYPES)])


def test_introduce_definitions_and_comment(fixture_run):
    orig, intro, _gone = fixture_run
    # The definitions come right after the old one, the paragraphs right
    # after the old one's paragraph.
    check_inserted(orig[SOURCE], intro[SOURCE], SOURCE, [
        (FIXTURE_OLD_PARAGRAPH[:-1], FIXTURE_PARAGRAPHS),
        (OLD_DEFINITION, DEFINITIONS),
    ])


def test_introduce_documentation(fixture_run):
    orig, intro, _gone = fixture_run
    check_inserted(orig[DOC], intro[DOC], DOC, [(FIXTURE_OLD_DOC, DOC_ENTRIES)])


def test_introduce_is_clean(fixture_run, tmp_path, tools):
    orig, intro, _gone = fixture_run
    assert diff_check(tmp_path, tools, orig, intro) == ""
    for path in FILES:
        for line in added(patched(orig[path], intro[path], path)):
            assert len(line.expandtabs()) <= 80, (path, line)


def test_introduce_short_names(scratch_repo, runner):
    intro = helpers.introduce(open_tree(scratch_repo), runner, SHORT, RECIPE)
    orig = originals(scratch_repo)
    assert added(patched(orig[HEADER], intro[HEADER], HEADER)) == [
        "pte_t *pte_offset_map_ro_nolock(struct mm_struct *mm, pmd_t *pmd,",
        "\t\t\t\tunsigned long addr, spinlock_t **ptlp);",
        "pte_t *pte_offset_map_rw_nolock(struct mm_struct *mm, pmd_t *pmd,",
        "\t\t\t\tunsigned long addr, pmd_t *pmdvalp,",
        "\t\t\t\tspinlock_t **ptlp);",
    ]
    source = added(patched(orig[SOURCE], intro[SOURCE], SOURCE))
    assert "pte_t *pte_offset_map_ro_nolock(struct mm_struct *mm, pmd_t *pmd," in source
    assert " * pte_offset_map_rw_nolock(mm, pmd, addr, pmdvalp, ptlp) is like" in source
    assert not any("readonly" in line or "maywrite" in line for line in source)
    doc = added(patched(orig[DOC], intro[DOC], DOC))
    assert [line for line in doc if line.startswith(" - ")] == [
        " - pte_offset_map_ro_nolock()", " - pte_offset_map_rw_nolock()"]


def test_remove(fixture_run):
    _orig, intro, gone = fixture_run
    assert sorted(gone) == sorted(FILES)
    check_removed(intro[HEADER], gone[HEADER], HEADER, [(["}", ""], FIXTURE_OLD_PROTOTYPE)])
    check_removed(intro[SOURCE], gone[SOURCE], SOURCE, [
        (["/*"], FIXTURE_OLD_PARAGRAPH),
        ([" */"], OLD_DEFINITION),
    ])
    check_removed(intro[DOC], gone[DOC], DOC, [([], FIXTURE_OLD_DOC)])


def test_remove_keeps_the_layout_around(fixture_run):
    _orig, _intro, gone = fixture_run
    header = gone[HEADER].decode()
    # The blank line in front of the old prototype stays.
    assert "}\n\n" + FIXTURE_PROTOTYPES[0] + "\n" in header
    source = gone[SOURCE].decode()
    # The comment in front of the old definition stays, right above the
    # definition that now follows it.
    assert FIXTURE_PARAGRAPHS[-1] + "\n */\n" + DEFINITIONS[0] + "\n" in source
    assert "/*\n" + FIXTURE_PARAGRAPHS[1] + "\n" in source


def test_remove_undoes_only_the_old(fixture_run, tmp_path, tools):
    orig, intro, gone = fixture_run
    only_old_out_and_new_in(orig, intro, gone)
    assert diff_check(tmp_path, tools, intro, gone) == ""


# --------------------------------------------------------------------------
# refusals
# --------------------------------------------------------------------------

def edit(repo: Path, tools, path: str, old: str, new: str) -> None:
    file = repo / path
    text = file.read_text()
    assert old in text
    file.write_text(text.replace(old, new))
    tools.commit_all(repo, f"edit {path}")


def test_introduce_refuses_taken_names(scratch_repo, runner, tools):
    edit(scratch_repo, tools, DOC, " - pte_unmap_unlock()", " - pte_offset_map_ro_nolock()")
    with pytest.raises(InputError, match=r"^pte_offset_map_ro_nolock already occurs in .*"
                                         r"\(Documentation/mm/split_page_table_lock.rst:\d+\)"):
        helpers.introduce(open_tree(scratch_repo), runner, SHORT, RECIPE)


def test_introduce_refuses_a_tree_without_the_prototype(scratch_repo, runner, tools):
    edit(scratch_repo, tools, HEADER, FIXTURE_OLD_PROTOTYPE[0] + "\n", "")
    with pytest.raises(InputError, match=r"^include/linux/mm.h: no prototype of pte_offset_map_nolock\(\)"):
        helpers.introduce(open_tree(scratch_repo), runner, DEFAULT, RECIPE)


def test_introduce_refuses_another_signature(scratch_repo, runner, tools):
    edit(scratch_repo, tools, SOURCE, "\t\t\t     unsigned long addr, spinlock_t **ptlp)\n{",
         "\t\t\t     unsigned int addr, spinlock_t **ptlp)\n{")
    with pytest.raises(InputError, match=r"^mm/pgtable-generic.c:\d+: pte_offset_map_nolock\(\) does not take"):
        helpers.introduce(open_tree(scratch_repo), runner, DEFAULT, RECIPE)


def test_introduce_without_a_paragraph_writes_kerneldoc(scratch_repo, runner, tools):
    # A tree with no paragraph to put the new text after (as Linux 6.5) is
    # no longer refused: tests/test_shapes.py tests what it gets instead.
    edit(scratch_repo, tools, SOURCE, " * pte_offset_map_nolock(mm, pmd, addr, ptlp) maps",
         " * This function maps")
    intro = helpers.introduce(open_tree(scratch_repo), runner, DEFAULT, RECIPE)
    source = intro[SOURCE].decode()
    for name in (DEFAULT.readonly, DEFAULT.maywrite):
        assert f"/**\n * {name} - " in source
    assert FIXTURE_PARAGRAPHS[1] + "\n" not in source


def test_introduce_refuses_overlong_lines(scratch_repo, runner):
    word = "x" * 60
    with pytest.raises(InputError, match=r"columns wide \(at most 100\); choose shorter names"):
        helpers.introduce(open_tree(scratch_repo), runner, RECIPE.names(f"ro,{word}"), RECIPE)


def test_remove_refuses_before_introduce(fixture_run, runner):
    orig, _intro, _gone = fixture_run
    with pytest.raises(InputError, match="pte_offset_map_readonly_nolock is not there yet"):
        helpers.remove(orig, runner, DEFAULT, RECIPE)


def test_remove_refuses_while_still_used(fixture_run, runner):
    _orig, intro, _gone = fixture_run
    caller = (b"\nint still_a_caller(struct mm_struct *mm, pmd_t *pmd, spinlock_t **ptlp)\n{\n"
              b"\treturn pte_offset_map_nolock(mm, pmd, 0, ptlp) != NULL;\n}\n")
    files = {**intro, SOURCE: intro[SOURCE] + caller}
    with pytest.raises(InputError, match=r"^mm/pgtable-generic.c:\d+: pte_offset_map_nolock is still named"):
        helpers.remove(files, runner, DEFAULT, RECIPE)


def test_remove_needs_the_c_files_but_not_the_documentation(fixture_run, runner):
    _orig, intro, gone = fixture_run
    with pytest.raises(InputError, match="without mm/pgtable-generic.c"):
        helpers.remove({HEADER: intro[HEADER], DOC: intro[DOC]}, runner, DEFAULT, RECIPE)
    # Without the documentation file, the rest is removed as before.
    assert helpers.remove({HEADER: intro[HEADER], SOURCE: intro[SOURCE]}, runner, DEFAULT, RECIPE) == {
        HEADER: gone[HEADER], SOURCE: gone[SOURCE]}


# --------------------------------------------------------------------------
# the real tree
# --------------------------------------------------------------------------

KERNEL_OLD_PROTOTYPE = [
    "pte_t *pte_offset_map_nolock(struct mm_struct *mm, pmd_t *pmd,",
    "\t\t\tunsigned long addr, spinlock_t **ptlp);",
]

KERNEL_OLD_PARAGRAPH = [
    " * pte_offset_map_nolock(mm, pmd, addr, ptlp), above, is like pte_offset_map();",
    " * but when successful, it also outputs a pointer to the spinlock in ptlp - as",
    " * pte_offset_map_lock() does, but in this case without locking it.  This helps",
    " * the caller to avoid a later pte_lockptr(mm, *pmd), which might by that time",
    " * act on a changed *pmd: pte_offset_map_nolock() provides the correct spinlock",
    " * pointer for the page table that it returns.  In principle, the caller should",
    " * recheck *pmd once the lock is taken; in practice, no callsite needs that -",
    " * either the mmap_lock for write, or pte_same() check on contents, is enough.",
    " *",
]

# The kernel's comment is 80 columns wide.
KERNEL_PARAGRAPHS = [
    " *",
    " * pte_offset_map_readonly_nolock(mm, pmd, addr, ptlp) is like pte_offset_map();",
    " * but when successful, it also outputs a pointer to the spinlock in ptlp - as",
    " * pte_offset_map_lock() does, but without locking it.  It is for callers that",
    " * only read the page table entries.  Such a caller may take the lock to read",
    " * entries that are stable, but must not change any entry, nor remove the table,",
    " * even while it holds the lock: by then the table may have been removed from",
    " * *pmd.  The rcu_read_lock() taken by the mapping keeps even a removed table",
    " * valid (though empty and disconnected) until pte_unmap(), which is enough for",
    " * reading.",
    " *",
    " * pte_offset_map_maywrite_nolock(mm, pmd, addr, pmdvalp, ptlp) is like",
    " * pte_offset_map_readonly_nolock(); but when successful, it also outputs in",
    " * *pmdvalp the pmd value that the page table was found through (pmdvalp must",
    " * not be NULL), and the spinlock pointer in ptlp is the one for that value.  It",
    " * is for callers that will change entries, or remove the table, once they hold",
    " * the lock.  After taking the lock, and before writing, such a caller must make",
    " * sure that the table is stable, that is, still the one at *pmd: by holding the",
    " * mmap_lock for write, or with pte_same() on an entry that it read earlier and",
    " * that is not none (an empty table put in this one's place compares equal to a",
    " * none entry), or by rechecking the pmd with",
    " * pmd_same(pmdval, pmdp_get_lockless(pmd)), where pmdval is the value returned",
    " * in *pmdvalp; and if that fails, unlock and retry or give up.  The first two",
    " * need no pmdval: such a caller may pass a dummy one.",
]

KERNEL_OLD_DOC = [
    " - pte_offset_map_nolock()",
    "\tmaps PTE, returns pointer to PTE with pointer to its PTE table",
    "\tlock (not taken), or returns NULL if no PTE table;",
]


@pytest.fixture(scope="module")
def kernel_run(kernel_tree):
    run = Runner()
    tree = open_tree(kernel_tree)
    orig = {path: tree.read(path) for path in FILES}
    intro = helpers.introduce(tree, run, DEFAULT, RECIPE)
    gone = helpers.remove({**orig, **intro}, run, DEFAULT, RECIPE)
    return orig, intro, gone


def bad_lines(tmp_path: Path, name: str, data: bytes) -> Counter:
    """The lines that spatch --parse-c cannot parse, counted."""
    tmp_path.mkdir(exist_ok=True)
    file = tmp_path / name
    file.write_bytes(data)
    proc = subprocess.run(["spatch", "--parse-c", str(file)], capture_output=True, text=True,
                          errors="replace", check=False, timeout=600)
    assert "NB total files = 1" in proc.stdout + proc.stderr, proc.stderr[-2000:]
    return Counter(line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("bad:"))


@pytest.mark.kernel
def test_kernel_introduce(kernel_run):
    orig, intro, _gone = kernel_run
    check_inserted(orig[HEADER], intro[HEADER], HEADER, [(KERNEL_OLD_PROTOTYPE, FIXTURE_PROTOTYPES)])
    check_inserted(orig[SOURCE], intro[SOURCE], SOURCE, [
        (OLD_DEFINITION, DEFINITIONS),
        (KERNEL_OLD_PARAGRAPH[-2:-1], KERNEL_PARAGRAPHS),
    ])
    check_inserted(orig[DOC], intro[DOC], DOC, [(KERNEL_OLD_DOC, DOC_ENTRIES)])
    text = intro[SOURCE].decode()
    assert text.index(KERNEL_PARAGRAPHS[-1]) < text.index(" * Note that free_pgtables()")


@pytest.mark.kernel
def test_kernel_remove(kernel_run, tmp_path, tools):
    orig, intro, gone = kernel_run
    check_removed(intro[HEADER], gone[HEADER], HEADER, [(["}", ""], KERNEL_OLD_PROTOTYPE)])
    check_removed(intro[SOURCE], gone[SOURCE], SOURCE, [
        (["}", ""], OLD_DEFINITION),
        ([" * afterwards.", " *"], KERNEL_OLD_PARAGRAPH),
    ])
    check_removed(intro[DOC], gone[DOC], DOC, [([], KERNEL_OLD_DOC)])
    only_old_out_and_new_in(orig, intro, gone)
    assert diff_check(tmp_path / "one", tools, orig, intro) == ""
    assert diff_check(tmp_path / "two", tools, intro, gone) == ""


@pytest.mark.kernel
def test_kernel_result_still_parses(kernel_run, tmp_path):
    orig, intro, gone = kernel_run
    for path in (HEADER, SOURCE):
        name = Path(path).name
        before = bad_lines(tmp_path / "orig", name, orig[path])
        for stage, files in (("intro", intro), ("gone", gone)):
            after = bad_lines(tmp_path / stage, name, files[path])
            assert after - before == Counter(), f"{stage} {path}: new lines spatch cannot parse"


@pytest.mark.kernel
def test_kernel_old_name_is_gone(kernel_run, tmp_path, tools):
    _orig, _intro, gone = kernel_run
    repo = tmp_path / "gone"
    for path, data in gone.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_bytes(data)
    tools.git(tmp_path, "init", "-q", "-b", "main", str(repo))
    tools.commit_all(repo, "removed")
    proc = subprocess.run(["git", "grep", "-n", "-w", "-F", "-e", OLD, "HEAD", "--"], cwd=repo,
                          capture_output=True, text=True, env=_git_env(), check=False)
    assert proc.returncode == 1 and proc.stdout == "", proc.stdout
    for name in (DEFAULT.readonly, DEFAULT.maywrite):
        hits = subprocess.run(["git", "grep", "-l", "-w", "-F", "-e", name, "HEAD", "--"], cwd=repo,
                              capture_output=True, text=True, env=_git_env(), check=False).stdout.split()
        assert sorted(hits) == sorted(f"HEAD:{path}" for path in FILES)
