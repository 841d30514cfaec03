"""Trees whose definition files have another shape than 6.12's: the
6.5-like tree (no comment paragraph about pte_offset_map_nolock(), no RCU
in the mapping) and a 6.12-like tree without the documentation file, both
under tests/fixtures/shapes/.  rewriter.helpers follows each shape, says
only what the tree's code makes true, and diff, series and check (its
checkpatch step) succeed on them.

Without the shapes (before this file), introduce() refused both trees:
"no comment paragraph starts with pte_offset_map_nolock(...)" and
"Documentation/mm/split_page_table_lock.rst is not in ...".
"""

from __future__ import annotations

import difflib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import harness
from rewriter import helpers, recipe
from rewriter.recipe import Names
from rewriter.runner import Runner
from rewriter.tree import open_tree

RECIPE = recipe.find(None)
HEADER, SOURCE, DOC = RECIPE.files
UNMAP_HEADER = "include/linux/pgtable.h"  # where the recipe's rcu fact finds pte_unmap()
SHAPES = Path(__file__).resolve().parent / "fixtures" / "shapes"
OLD = "pte_offset_map_nolock"
NAMES = Names("pte_offset_map_readonly_nolock", "pte_offset_map_maywrite_nolock")
RCU_SENTENCE = "The rcu_read_lock() taken by the mapping"
CHECKPATCH_FILES = ("scripts/checkpatch.pl", "scripts/spelling.txt", "scripts/const_structs.checkpatch")
BRANCH = "rewriter/pte-map-readonly-maywrite-v1"


def shape_repo(tools, shape: str, dest: Path, extra: dict[str, bytes] | None = None) -> Path:
    """A committed tree: the callers in shapes/common and the definition
    files of shapes/SHAPE, and extra (path -> contents) on top."""
    src = dest.parent / f"{dest.name}-src"
    shutil.copytree(SHAPES / "common", src)
    shutil.copytree(SHAPES / shape, src, dirs_exist_ok=True)
    for path, data in (extra or {}).items():
        (src / path).parent.mkdir(parents=True, exist_ok=True)
        (src / path).write_bytes(data)
    return tools.make_git_repo(src, dest)


def kernel_file(kernel: Path, path: str) -> bytes:
    return subprocess.run(["git", "show", f"HEAD:{path}"], cwd=kernel, capture_output=True, check=True).stdout


def added_lines(before: bytes, after: bytes) -> list[str]:
    return [line[1:] for line in difflib.unified_diff(before.decode().split("\n"), after.decode().split("\n"),
                                                      lineterm="", n=0)
            if line.startswith("+") and not line.startswith("+++")]


def kerneldoc_above(text: str, name: str) -> list[str]:
    """The lines of the /** ... */ comment that ends right above the
    definition of name (which must have one)."""
    lines = text.split("\n")
    at = [i for i, line in enumerate(lines) if line.startswith(f"pte_t *{name}(")]
    assert len(at) == 1, f"{name}: {len(at)} definitions"
    end = at[0] - 1
    assert lines[end] == " */", f"no comment ends right above {name}(): {lines[end]!r}"
    start = end
    while not lines[start].startswith("/*"):
        start -= 1
    return lines[start:end + 1]


def check_kerneldoc_form(comment: list[str], name: str, params: list[str]) -> None:
    """Kernel style: "/**", "name - summary", one "@param:" line for each
    parameter in order, an empty line, the description, and the "Context:"
    and "Return:" sections; every line within 80 columns."""
    assert comment[0] == "/**" and comment[-1] == " */"
    body = comment[1:-1]
    assert all(line == " *" or line.startswith((" * ", " *\t")) for line in body), body
    assert all(len(line.expandtabs()) <= 80 for line in comment), comment
    assert re.fullmatch(rf" \* {name} - \S.*", body[0]), body[0]
    tags = [re.match(r" \* @(\w+): \S", line) for line in body]
    assert [m.group(1) for m in tags if m] == params
    first_tag = next(i for i, m in enumerate(tags) if m)
    last_tag = max(i for i, m in enumerate(tags) if m)
    assert first_tag == 1
    # An @param line may go on, indented by a tab; then an empty line.
    assert all(tags[i] or body[i].startswith(" *\t") for i in range(first_tag, last_tag + 1))
    after = last_tag + 1
    while body[after].startswith(" *\t"):
        after += 1
    assert body[after] == " *"
    sections = [i for i, line in enumerate(body) if re.match(r" \* (Context|Return): \S", line)]
    assert [body[i].split(":")[0] for i in sections] == [" * Context", " * Return"], body
    assert body[sections[0] - 1] == " *" and body[sections[1] - 1] == " *"
    assert sections[0] > after + 1, "no description between the parameters and Context:"


@pytest.fixture(scope="module")
def runner() -> Runner:
    return Runner(jobs=2)


@pytest.fixture(scope="module")
def v65(tools, tmp_path_factory, runner):
    """(repo, originals, introduce() result, remove() result) on the 6.5-like tree."""
    repo = shape_repo(tools, "6.5", tmp_path_factory.mktemp("v65") / "linux")
    tree = open_tree(repo)
    orig = {path: tree.read(path) for path in (HEADER, SOURCE, DOC)}
    intro = helpers.introduce(tree, runner, NAMES, RECIPE)
    gone = helpers.remove(intro, runner, NAMES, RECIPE)
    return repo, orig, intro, gone


@pytest.fixture(scope="module")
def nodoc(tools, tmp_path_factory, runner):
    """(repo, originals, introduce() result, remove() result) on the tree without the documentation."""
    repo = shape_repo(tools, "nodoc", tmp_path_factory.mktemp("nodoc") / "linux")
    tree = open_tree(repo)
    orig = {path: tree.read(path) for path in (HEADER, SOURCE)}
    intro = helpers.introduce(tree, runner, NAMES, RECIPE)
    gone = helpers.remove(intro, runner, NAMES, RECIPE)
    return repo, orig, intro, gone


# --------------------------------------------------------------------------
# the facts, from the code
# --------------------------------------------------------------------------

def _shape_file(shape: str, path: str) -> bytes:
    return (SHAPES / shape / path).read_bytes()


def mapping_holds_rcu(source: bytes, unmap_header: bytes | None) -> bool:
    """The recipe's rcu fact on these two files."""
    files = {SOURCE: source, UNMAP_HEADER: unmap_header}
    return helpers.facts_hold(RECIPE, files.get)["rcu"]


def test_rcu_is_read_from_the_code():
    fixture = Path(__file__).resolve().parent / "fixtures" / "tree"
    assert mapping_holds_rcu((fixture / SOURCE).read_bytes(), (fixture / UNMAP_HEADER).read_bytes())
    assert mapping_holds_rcu(_shape_file("nodoc", SOURCE), _shape_file("nodoc", UNMAP_HEADER))
    # 6.5 names both calls, but only in comments ("to be added later").
    assert b"rcu_read_lock()" in _shape_file("6.5", SOURCE)
    assert not mapping_holds_rcu(_shape_file("6.5", SOURCE), _shape_file("6.5", UNMAP_HEADER))


def test_rcu_needs_both_the_lock_and_every_unlock():
    source, header = _shape_file("nodoc", SOURCE), _shape_file("nodoc", UNMAP_HEADER)
    old_header = _shape_file("6.5", UNMAP_HEADER)
    assert not mapping_holds_rcu(source, old_header)
    assert not mapping_holds_rcu(_shape_file("6.5", SOURCE), header)
    assert not mapping_holds_rcu(source, None)
    # One pte_unmap() that does not unlock (the macro, with CONFIG_HIGHPTE) is enough to say nothing.
    macro_only = header.replace(b"\tkunmap_local((pte));\t\\\n\trcu_read_unlock();", b"\tkunmap_local((pte));")
    assert macro_only != header
    assert not mapping_holds_rcu(source, macro_only)


# --------------------------------------------------------------------------
# the 6.5-like tree
# --------------------------------------------------------------------------

def test_v65_gets_a_kerneldoc_above_each_new_definition(v65):
    _repo, orig, intro, _gone = v65
    text = intro[SOURCE].decode()
    check_kerneldoc_form(kerneldoc_above(text, NAMES.readonly), NAMES.readonly, ["mm", "pmd", "addr", "ptlp"])
    check_kerneldoc_form(kerneldoc_above(text, NAMES.maywrite), NAMES.maywrite,
                         ["mm", "pmd", "addr", "pmdvalp", "ptlp"])
    # The two comments are the only ones added.
    added = added_lines(orig[SOURCE], intro[SOURCE])
    assert sum(line == "/**" for line in added) == 2
    assert not any(line.startswith("/*") and line != "/**" for line in added)


def test_v65_says_nothing_about_rcu(v65):
    _repo, orig, intro, _gone = v65
    added = "\n".join(added_lines(orig[SOURCE], intro[SOURCE]))
    assert "rcu" not in added.lower()


def test_v65_keeps_its_documentation_entry_shape(v65):
    _repo, orig, intro, gone = v65
    entries = [line for line in added_lines(orig[DOC], intro[DOC]) if line.startswith(" - ")]
    assert entries == [f" - {NAMES.readonly}()", f" - {NAMES.maywrite}()"]
    assert f" - {OLD}()" not in gone[DOC].decode()


def test_v65_remove_keeps_the_new_comments(v65):
    _repo, orig, intro, gone = v65
    assert sorted(gone) == sorted([HEADER, SOURCE, DOC])
    for path, data in gone.items():
        assert not re.search(rf"\b{OLD}\b", data.decode()), path
    text = gone[SOURCE].decode()
    assert kerneldoc_above(text, NAMES.readonly) == kerneldoc_above(intro[SOURCE].decode(), NAMES.readonly)
    # The old definition goes with the blank line after it; what was around it stays.
    assert "\n}\n\n/**\n * " + NAMES.readonly in text
    parts = helpers.old_parts(intro, RECIPE)
    assert (parts.paragraph, parts.kerneldoc, parts.doc) == (False, False, DOC)


def test_a_kerneldoc_of_the_old_function_goes_with_it(tools, tmp_path, runner):
    """A tree (say a vendor's) that documents the old function with a
    kernel-doc comment: the new ones get theirs, and remove() takes the
    old one's with its definition."""
    source = _shape_file("6.5", SOURCE).decode()
    own = (f"/**\n * {OLD} - map a PTE table and find its lock\n * @mm: the mm\n * @pmd: the pmd\n"
           f" * @addr: the address\n * @ptlp: the lock, not taken\n */\npte_t *{OLD}(")
    repo = shape_repo(tools, "6.5", tmp_path / "linux", {SOURCE: source.replace(f"pte_t *{OLD}(", own, 1).encode()})
    intro = helpers.introduce(open_tree(repo), runner, NAMES, RECIPE)
    assert helpers.old_parts(intro, RECIPE).kerneldoc
    kerneldoc_above(intro[SOURCE].decode(), NAMES.readonly)
    gone = helpers.remove(intro, runner, NAMES, RECIPE)
    # Exactly the old comment, the old definition and the blank line after it go.
    before = intro[SOURCE].decode()
    start = before.index(f"/**\n * {OLD} - ")
    end = before.index("\n}\n\n", start) + len("\n}\n\n")
    assert gone[SOURCE].decode() == before[:start] + before[end:]


# --------------------------------------------------------------------------
# the tree without the documentation file
# --------------------------------------------------------------------------

def test_nodoc_has_no_documentation_to_change(nodoc):
    _repo, _orig, intro, gone = nodoc
    assert sorted(intro) == sorted(gone) == sorted([HEADER, SOURCE])


def test_nodoc_paragraphs_say_what_its_code_makes_true(nodoc):
    _repo, orig, intro, _gone = nodoc
    added = " ".join(line[3:] for line in added_lines(orig[SOURCE], intro[SOURCE]) if line.startswith(" * "))
    assert f"{NAMES.readonly}(mm, pmd, addr, ptlp) is like" in added
    assert RCU_SENTENCE in added
    assert "/**" not in added_lines(orig[SOURCE], intro[SOURCE])


def test_nodoc_remove_takes_the_old_paragraph(nodoc):
    _repo, _orig, intro, gone = nodoc
    assert not re.search(rf"\b{OLD}\b", gone[SOURCE].decode())
    parts = helpers.old_parts(intro, RECIPE)
    assert (parts.paragraph, parts.comment_above, parts.kerneldoc, parts.doc) == (
        True, "__pte_offset_map_lock", False, "")


def test_kerneldoc_says_rcu_when_the_code_does(tools, tmp_path, runner):
    """The 6.12-like tree with its comment paragraph taken out gets the
    kernel-doc comments, and those say what its mapping does with RCU."""
    source = _shape_file("nodoc", SOURCE).decode()
    paragraph = source[source.index(f" * {OLD}(mm"):source.index(" * pte_offset_map_lock(mm")]
    repo = shape_repo(tools, "nodoc", tmp_path / "linux", {SOURCE: source.replace(paragraph, "").encode()})
    intro = helpers.introduce(open_tree(repo), runner, NAMES, RECIPE)
    comment = kerneldoc_above(intro[SOURCE].decode(), NAMES.readonly)
    check_kerneldoc_form(comment, NAMES.readonly, ["mm", "pmd", "addr", "ptlp"])
    assert RCU_SENTENCE in " ".join(line[3:] for line in comment)


def test_remove_without_the_c_files_is_refused(nodoc, runner):
    _repo, _orig, intro, _gone = nodoc
    with pytest.raises(helpers.InputError, match=rf"^cannot remove {OLD}\(\) without mm/pgtable-generic.c"):
        helpers.remove({HEADER: intro[HEADER]}, runner, NAMES, RECIPE)


# --------------------------------------------------------------------------
# the commands
# --------------------------------------------------------------------------

@pytest.mark.parametrize("shape", ["6.5", "nodoc"])
def test_diff_and_series_succeed(shape, tools, tmp_path):
    repo = shape_repo(tools, shape, tmp_path / "linux")
    code, diff, err = tools.run_rewriter("diff", "--tree", repo)
    assert code == 0, err
    assert f"+pte_t *{NAMES.readonly}(" in diff
    out = tmp_path / "outgoing"
    code, _out, err = tools.run_rewriter("series", "--tree", repo, "-o", out, "--author", harness.AUTHOR)
    assert code == 0, err
    patches = sorted(out.glob("0*.patch"))
    introduce = next(p for p in patches if p.name.startswith("0001-")).read_text()
    remove = patches[-1].read_text()
    assert "remove-pte_offset_map_nolock" in patches[-1].name
    said = " ".join(remove.split("\n\nSigned-off-by:")[0].split("\n\n", 1)[1].split())
    if shape == "6.5":
        assert "\n+/**\n" in introduce and "rcu" not in introduce.split("\n---\n", 1)[1].lower()
        assert said.endswith("Remove its prototype, its definition and its entry in "
                             "Documentation/mm/split_page_table_lock.rst."), said
    else:
        assert RCU_SENTENCE.split(" taken")[0] in introduce and "Documentation/" not in introduce
        assert said.endswith("Remove its prototype, its definition and its paragraph in the comment above "
                             "__pte_offset_map_lock()."), said


@pytest.mark.kernel
@pytest.mark.parametrize("shape", ["6.5", "nodoc"])
def test_check_passes_checkpatch(shape, tools, tmp_path, kernel_tree):
    """The series on each shape is clean to the kernel's own checkpatch.pl."""
    extra = {path: kernel_file(kernel_tree, path) for path in CHECKPATCH_FILES}
    repo = shape_repo(tools, shape, tmp_path / "linux", extra)
    out = tmp_path / "outgoing"
    code, _out, err = tools.run_rewriter("series", "--tree", repo, "-o", out, "--author", harness.AUTHOR)
    assert code == 0, err
    code, report, err = tools.run_rewriter("check", "--tree", repo, "--series", out, "--json")
    assert code == 0, err + report
    data = json.loads(report)
    patches = [p for p in data["patches"] if p["number"] != 0]
    assert len(patches) == 5
    for p in patches:
        assert (p["checkpatch"]["errors"], p["checkpatch"]["warnings"]) == (0, 0), p


@pytest.mark.kernel
def test_kernel_doc_accepts_the_comments(v65, tmp_path, kernel_tree):
    """The kernel's scripts/kernel-doc finds nothing to warn about in the
    new comments, and documents both functions with all their parameters."""
    _repo, _orig, intro, _gone = v65
    script = tmp_path / "kernel-doc"
    script.write_bytes(kernel_file(kernel_tree, "scripts/kernel-doc"))
    source = tmp_path / "pgtable-generic.c"
    source.write_bytes(intro[SOURCE])
    proc = subprocess.run(["perl", str(script), "-none", "-Wall", str(source)], capture_output=True, text=True)
    assert proc.returncode == 0 and "warning" not in proc.stderr.lower(), proc.stderr
    proc = subprocess.run(["perl", str(script), "-rst", str(source)], capture_output=True, text=True)
    for name, params in ((NAMES.readonly, 4), (NAMES.maywrite, 5)):
        block = proc.stdout.split(f".. c:function:: pte_t * {name} (")[1].split(".. c:function::")[0]
        assert block.count("\n  ``") == params, block
        assert "**Context**" in block and "**Return**" in block
    # A parameter left undescribed is what kernel-doc warns about.
    broken = intro[SOURCE].replace(b" * @addr: ", b" * addr: ", 1)
    source.write_bytes(broken)
    proc = subprocess.run(["perl", str(script), "-none", "-Wall", str(source)], capture_output=True, text=True)
    assert "addr" in proc.stderr and "warning" in proc.stderr.lower(), proc.stderr
