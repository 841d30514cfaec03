"""`rewriter check`: checkpatch, the mail round trip and the build.

checkpatch.pl and the files it reads come from the real kernel tree (the
fixture tree has no scripts/), so these tests carry the kernel marker.
The series is made by `rewriter series` once tests/test_series.py is in
the repository; before that, `rewriter diff` is committed in a throw-away
clone and written out with git format-patch.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import harness
from rewriter import kbuild

TESTS_DIR = Path(__file__).resolve().parent
CHECKPATCH_FILES = ("scripts/checkpatch.pl", "scripts/spelling.txt", "scripts/const_structs.checkpatch")
UNPLACEABLE = ("mm/fixture_return.c", "fixture_map_for_caller")
TO = "Linux MM <linux-mm@kvack.org>"
CC = "Fixture Maintainer <maintainer@example.org>"
AUTHOR = "Rewriter Tests <rewriter-tests@example.invalid>"


def _kernel_file(kernel: Path, path: str) -> bytes:
    return subprocess.run(["git", "show", f"HEAD:{path}"], cwd=kernel, capture_output=True, check=True).stdout


def _dummy_plan(tools, repo: Path, path: Path) -> Path:
    """The default plan, with the one call that needs a person's decision
    given a dummy pmdval."""
    code, _out, err = tools.run_rewriter("plan", "--tree", repo, "-o", path)
    assert code == 0, err
    blocks = path.read_text().split("\n[[call]]\n")
    for i, b in enumerate(blocks):
        if f'file = "{UNPLACEABLE[0]}"' in b and f'function = "{UNPLACEABLE[1]}"' in b:
            blocks[i] = re.sub(r"^recheck = .*$", 'recheck = "dummy"', b, count=1, flags=re.M)
    path.write_text(harness.settle_reviews("\n[[call]]\n".join(blocks)))
    return path


def _series_by_hand(tools, repo: Path, plan: Path, out: Path) -> None:
    """One commit with the whole conversion, and a cover letter."""
    code, diff, err = tools.run_rewriter("diff", "--tree", repo, "--plan", plan)
    assert code == 0, err
    work = repo.parent / "by-hand"
    subprocess.run(["git", "clone", "-q", str(repo), str(work)], check=True)
    subprocess.run(["git", "apply", "-"], input=diff, text=True, cwd=work, check=True)
    tools.git(work, "add", "-A")
    tools.git(work, "commit", "-q", "-s", "-m",
              "mm: split pte_offset_map_nolock()\n\nEvery caller now says whether it only reads the PTEs.")
    tools.git(work, "format-patch", "-q", "--cover-letter", "--thread=shallow", "--numbered",
              "--subject-prefix=RFC PATCH", "--base=HEAD~1", f"--to={TO}", f"--cc={CC}", "-o", str(out), "HEAD~1")
    cover = next(out.glob("0000-*.patch"))
    cover.write_text(cover.read_text().replace("*** SUBJECT HERE ***", "mm: split pte_offset_map_nolock()")
                     .replace("*** BLURB HERE ***", "The fixture series."))
    tools.git(repo, "fetch", "-q", str(work), "HEAD:refs/heads/converted")


def _series_with_rewriter(tools, repo: Path, plan: Path, out: Path) -> None:
    code, _out, err = tools.run_rewriter("series", "--tree", repo, "--plan", plan, "-o", out, "--to", TO,
                                         "--cc", CC, "--author", AUTHOR, "--branch", "converted")
    assert code == 0, err


@pytest.fixture(scope="module")
def series(tools, kernel_tree, tmp_path_factory):
    """A fixture repository whose base carries checkpatch.pl, and its series."""
    root = tmp_path_factory.mktemp("check")
    src = root / "src"
    shutil.copytree(tools.FIXTURE_TREE, src)
    for path in CHECKPATCH_FILES:
        (src / path).parent.mkdir(parents=True, exist_ok=True)
        (src / path).write_bytes(_kernel_file(kernel_tree, path))
    repo = tools.make_git_repo(src, root / "linux")
    tools.git(repo, "config", "user.name", "Rewriter Tests")
    tools.git(repo, "config", "user.email", "rewriter-tests@example.invalid")
    plan = _dummy_plan(tools, repo, root / "plan.toml")
    out = root / "outgoing"
    if (TESTS_DIR / "test_series.py").exists():
        _series_with_rewriter(tools, repo, plan, out)
    else:
        _series_by_hand(tools, repo, plan, out)
    return repo, out


def _check(tools, repo: Path, *args) -> tuple[int, dict | None, str]:
    code, out, err = tools.run_rewriter("check", "--tree", repo, *args, "--json")
    try:
        data = json.loads(out)
    except json.JSONDecodeError:
        data = None
    return code, data, err


def _checkpatch_by_hand(kernel: Path, patch: Path, tmp: Path) -> tuple[int, int]:
    for path in CHECKPATCH_FILES:
        (tmp / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp / path).write_bytes(_kernel_file(kernel, path))
    proc = subprocess.run(["perl", str(tmp / CHECKPATCH_FILES[0]), "--no-tree", str(patch)], cwd=tmp,
                          capture_output=True, text=True)
    m = re.search(r"^total: (\d+) errors, (\d+) warnings", proc.stdout, re.M)
    assert m, proc.stdout + proc.stderr
    return int(m.group(1)), int(m.group(2))


@pytest.mark.kernel
def test_checkpatch_runs_on_every_patch(tools, series, kernel_tree, tmp_path):
    repo, out = series
    code, data, err = _check(tools, repo, "--series", out)
    assert data is not None, err
    patches = [p for p in data["patches"] if p["number"] != 0]
    files = sorted(p for p in out.glob("*.patch") if not re.search(r"(^|-)0000-", p.name))
    assert [p["file"] for p in patches] == [f.name for f in files]
    for entry, path in zip(patches, files):
        assert "checkpatch" in entry, entry
        got = (entry["checkpatch"]["errors"], entry["checkpatch"]["warnings"])
        assert got == _checkpatch_by_hand(kernel_tree, path, tmp_path / path.stem), path.name
    clean = all(p["checkpatch"]["errors"] == 0 and p["checkpatch"]["warnings"] == 0 for p in patches)
    assert code == (0 if clean else 1), err
    assert data["ok"] is clean


@pytest.mark.kernel
def test_checkpatch_finds_a_missing_sign_off(tools, series, tmp_path):
    repo, out = series
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    victim = sorted(p for p in bad.glob("*.patch") if not re.search(r"(^|-)0000-", p.name))[0]
    text = victim.read_text()
    assert "Signed-off-by:" in text
    victim.write_text(re.sub(r"^Signed-off-by: .*\n", "", text, flags=re.M))
    code, data, err = _check(tools, repo, "--series", bad)
    assert code == 1, err
    entry = next(p for p in data["patches"] if p["file"] == victim.name)
    assert entry["checkpatch"]["errors"] >= 1
    assert any("MISSING_SIGN_OFF" in m for m in entry["checkpatch"]["messages"])
    assert data["ok"] is False
    code, text_out, _err = tools.run_rewriter("check", "--tree", repo, "--series", bad)
    assert code == 1
    assert "summary:" in text_out and "result: FAILED" in text_out


def _snapshot(repo: Path) -> tuple[str, str, str]:
    def run(*args):
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout
    objects = subprocess.run(["git", "count-objects", "-v"], cwd=repo, capture_output=True, text=True).stdout
    return run("for-each-ref"), run("status", "--porcelain", "--untracked-files=all"), objects


@pytest.mark.kernel
def test_mail_round_trip(tools, series, tmp_path):
    repo, out = series
    before = _snapshot(repo)
    mbox = tmp_path / "sent.mbox"
    code, data, err = _check(tools, repo, "--series", out, "--mail", "--mbox", mbox)
    assert data is not None, err
    mail = data["mail"]
    files = sorted(out.glob("*.patch"))
    assert mail["sent"] == mail["received"] == len(files), mail
    assert mail["applied"] and mail["tree_matches"], mail
    assert mail["problems"] == [] and mail["ok"], mail
    assert all(p["mail"]["problems"] == [] for p in data["patches"]), data["patches"]
    assert "linux-mm@kvack.org" in mail["recipients"] and "maintainer@example.org" in mail["recipients"]
    text = mbox.read_text()
    assert text.count("\nFrom MAILER-DAEMON ") + text.startswith("From MAILER-DAEMON ") == len(files)
    # Threading, as a mail reader sees it.
    import mailbox
    msgs = list(mailbox.mbox(str(mbox)))
    cover_id = msgs[0]["Message-Id"]
    assert all(m["In-Reply-To"] == cover_id for m in msgs[1:])
    assert _snapshot(repo) == before, "check changed the repository"


@pytest.mark.kernel
def test_mail_finds_a_broken_thread(tools, series, tmp_path):
    repo, out = series
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    victim = sorted(p for p in bad.glob("*.patch") if not re.search(r"(^|-)0000-", p.name))[-1]
    text = victim.read_text()
    head, sep, body = text.partition("\n\n")
    head = re.sub(r"^(In-Reply-To|References): .*\n(?:[ \t].*\n)*", "", head + "\n", flags=re.M).rstrip("\n")
    head += "\nIn-Reply-To: <somewhere-else@example.org>\nReferences: <somewhere-else@example.org>"
    victim.write_text(head + sep + body)
    code, data, err = _check(tools, repo, "--series", bad, "--mail", "--mbox", tmp_path / "m.mbox")
    assert code == 1, err
    entry = next(p for p in data["patches"] if p["file"] == victim.name)
    assert any("not the cover letter" in p for p in entry["mail"]["problems"]), entry


@pytest.mark.kernel
def test_branch_is_checked_like_its_patches(tools, series):
    repo, _out = series
    code, data, err = _check(tools, repo, "--branch", "converted", "--base", "main")
    assert data is not None, err
    assert data["source"] == "branch converted"
    assert len([p for p in data["patches"] if p["number"] != 0]) >= 1
    assert all("checkpatch" in p for p in data["patches"] if p["number"] != 0)


def test_bad_inputs_are_refused(tools, fixture_repo, tmp_path):
    code, _out, err = tools.run_rewriter("check", "--tree", fixture_repo, "--series", tmp_path / "none")
    assert code == 3 and "no such directory" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _out, err = tools.run_rewriter("check", "--tree", fixture_repo, "--series", empty)
    assert code == 3 and "no .patch files" in err
    code, _out, err = tools.run_rewriter("check", "--tree", tmp_path, "--series", empty)
    assert code == 3 and "not a git repository" in err
    code, _out, err = tools.run_rewriter("check", "--tree", fixture_repo, "--branch", "no-such-branch")
    assert code == 3 and "unknown revision" in err


# --------------------------------------------------------------------------
# reading the build configuration from the code
# --------------------------------------------------------------------------

def _reader(kernel: Path):
    def read(path: str) -> str | None:
        proc = subprocess.run(["git", "show", f"HEAD:{path}"], cwd=kernel, capture_output=True)
        return proc.stdout.decode("utf-8", "replace") if proc.returncode == 0 else None
    return read


@pytest.mark.kernel
@pytest.mark.parametrize("path, options", [
    ("mm/khugepaged.c", {"CONFIG_TRANSPARENT_HUGEPAGE"}),
    ("mm/userfaultfd.c", {"CONFIG_USERFAULTFD"}),
    ("mm/memory.c", {"CONFIG_MMU"}),  # mmu-$(CONFIG_MMU) := ... memory.o ... obj-y += $(mmu-y)
    ("mm/vmscan.c", set()),
    ("arch/arm/mm/fault-armv.c", {"CONFIG_MMU"}),
    ("arch/powerpc/mm/pgtable.c", set()),
])
def test_makefile_line_names_the_options(kernel_tree, path, options):
    got, notes = kbuild.makefile_options(_reader(kernel_tree), path)
    assert got == options and notes == []


@pytest.mark.kernel
@pytest.mark.parametrize("path, function, option", [
    ("arch/powerpc/mm/pgtable.c", "assert_pte_locked", "CONFIG_DEBUG_VM"),
    ("mm/vmscan.c", "walk_pte_range", "CONFIG_LRU_GEN"),
])
def test_ifdef_around_the_changed_lines_names_the_option(kernel_tree, path, function, option):
    text = _reader(kernel_tree)(path)
    line = next(i for i, l in enumerate(text.split("\n"), 1) if re.match(rf"^\w.*\b{function}\(", l))
    on, _off = kbuild.ifdef_options(text, {line + 3})
    assert option in on


@pytest.mark.unit
def test_ifdef_options_follow_else_and_negation():
    text = "\n".join([
        "#ifdef CONFIG_A",        # 1
        "a();",                   # 2
        "#else",                  # 3
        "b();",                   # 4
        "#endif",                 # 5
        "#if IS_ENABLED(CONFIG_B) && !defined(CONFIG_C)",  # 6
        "c();",                   # 7
        "#endif",                 # 8
        "#if __LINUX_ARM_ARCH__ < 6",  # 9
        "d();",                   # 10
        "#endif",                 # 11
    ])
    assert kbuild.ifdef_options(text, {2}) == ({"CONFIG_A"}, set())
    assert kbuild.ifdef_options(text, {4}) == (set(), {"CONFIG_A"})
    assert kbuild.ifdef_options(text, {7}) == ({"CONFIG_B"}, {"CONFIG_C"})
    assert kbuild.ifdef_options(text, {10}) == (set(), set())


@pytest.mark.unit
def test_compiler_output_is_split_per_object(tmp_path):
    src = tmp_path / "src-0123456789abcdef"
    builder = kbuild.Builder.__new__(kbuild.Builder)
    builder.src = type("S", (), {"dir": src})()
    out = "\n".join([
        "  CC      mm/memory.o",
        f"{src}/mm/memory.c:12:5: warning: unused variable 'x' [-Wunused-variable]",
        "  CC      mm/vmscan.o",
        f"{src}/include/linux/mm.h:3:1: error: expected ';' before '}}' token",
        "make[3]: *** [scripts/Makefile.build:229: mm/vmscan.o] Error 1",
        "  CC      mm/other.o",
    ])
    blocks, failed = builder._split(out, {"mm/memory.o", "mm/vmscan.o"})
    assert failed == {"mm/vmscan.o"}
    assert [builder._diag(l) for l in blocks["mm/memory.o"]] == [
        ("warning", "mm/memory.c: warning: unused variable 'x' [-Wunused-variable]")]
    assert builder._diag(blocks["mm/vmscan.o"][0])[0] == "error"


# Recorded: `make O=... ARCH=x86_64 defconfig` of Linux 6.12 in a source
# tree with a .config at its top (standard error; standard output empty).
NOT_CLEAN = """\
***
*** The source tree is not clean, please run 'make ARCH=x86_64 mrproper'
*** in /tmp/rel-k
***
make[1]: *** [/tmp/rel-k/Makefile:659: outputmakefile] Error 1
make: *** [Makefile:236: __sub-make] Error 2
"""
# Recorded: the same in a tree without arch/x86.
NO_RULE = """\
/tmp/rel-k/Makefile:700: /tmp/rel-k/arch/x86/Makefile: No such file or directory
make[1]: *** No rule to make target '/tmp/rel-k/arch/x86/Makefile'.  Stop.
make: *** [Makefile:236: __sub-make] Error 2
"""
# gcc's form of a compile error under Kbuild, a warning first.
COMPILE = """\
  CC      mm/fixture.o
mm/fixture.c: In function 'f':
mm/fixture.c:2:13: warning: unused variable 'z' [-Wunused-variable]
mm/fixture.c:3:9: error: 'y' undeclared (first use in this function)
mm/fixture.c:3:9: note: each undeclared identifier is reported only once for each function it appears in
mm/fixture.c:4:1: error: expected ';' before '}' token
make[4]: *** [scripts/Makefile.build:229: mm/fixture.o] Error 1
make[3]: *** [scripts/Makefile.build:478: mm] Error 2
make[1]: *** [/src/Makefile:224: __sub-make] Error 2
make: *** [Makefile:224: __sub-make] Error 2
"""


@pytest.mark.parametrize("err, out, line", [
    (NOT_CLEAN, "", "The source tree is not clean, please run 'make ARCH=x86_64 mrproper' in /tmp/rel-k"),
    (NO_RULE, "", "No rule to make target '/tmp/rel-k/arch/x86/Makefile'.  Stop."),
    (COMPILE, "", "mm/fixture.c:3:9: error: 'y' undeclared (first use in this function)"),
    # Kconfig's news on standard output is no error; make's last line is all there is.
    ("make: *** [Makefile:224: __sub-make] Error 2\n", "*** Default configuration is based on 'x86_64_defconfig'\n",
     "make: *** [Makefile:224: __sub-make] Error 2"),
    ("", "scripts/kconfig/conf: error: no such file\n", "scripts/kconfig/conf: error: no such file"),
    ("", "", "no message"),
], ids=["not-clean", "no-rule", "compile", "summary-only", "stdout", "nothing"])
@pytest.mark.unit
def test_first_error_line_of_make(err, out, line):
    """Issue #16: a failed make was shown by its last line ("make: ***
    [Makefile:234: __sub-make] Error 2"), not by the one that says why."""
    assert kbuild.first_error(err, out) == line


# The check of the kernel's top Makefile before an out-of-tree build.
CLEAN_CHECK_MAKEFILE = """\
srctree := $(CURDIR)
all:
\t@if [ -f $(srctree)/.config -o -d $(srctree)/include/config ]; then \\
\t\techo >&2 "***"; \\
\t\techo >&2 "*** The source tree is not clean, please run 'make mrproper'"; \\
\t\techo >&2 "*** in $(srctree)"; \\
\t\techo >&2 "***"; \\
\t\tfalse; \\
\tfi
\t@mkdir -p $(O) && echo built > $(O)/done
"""


def test_export_leaves_out_build_products(tools, tmp_path):
    """Issue #16: a 6.5 tree with a .config committed at its top could not
    be built out of tree ("The source tree is not clean").  The export
    that check --build builds from holds none of what a build in the source
    tree leaves there, and an export made before that rule loses them too."""
    src = tmp_path / "src"
    files = {"Makefile": CLEAN_CHECK_MAKEFILE, ".config": "CONFIG_MMU=y\n", ".config.old": "",
             "include/config/auto.conf": "CONFIG_MMU=y\n", "include/generated/autoconf.h": "",
             "include/linux/mm.h": "/* kept */\n", "arch/x86/include/generated/asm/a.h": "",
             "arch/x86/include/asm/b.h": "/* kept */\n", "mm/fixture.c": "int x;\n"}
    for path, text in files.items():
        (src / path).parent.mkdir(parents=True, exist_ok=True)
        (src / path).write_text(text)
    repo = tools.make_git_repo(src, tmp_path / "linux")
    assert tools.git(repo, "ls-files", ".config") == ".config"
    exported = kbuild.Source(repo, "HEAD", tmp_path / "cache").dir
    left = sorted(p.relative_to(exported).as_posix() for p in exported.rglob("*") if p.is_file())
    assert left == ["Makefile", "arch/x86/include/asm/b.h", "include/linux/mm.h", "mm/fixture.c"]
    assert not (exported / "include/config").exists() and not (exported / "include/generated").exists()
    if shutil.which("make"):
        proc = subprocess.run(["make", "-C", str(exported), f"O={tmp_path / 'out'}"], capture_output=True,
                              text=True)
        assert proc.returncode == 0, kbuild.first_error(proc.stderr, proc.stdout)
    # An export of the same base made by an earlier rewriter, with them in.
    (exported / ".config").write_text("CONFIG_MMU=y\n")
    (exported / "include/config").mkdir()
    again = kbuild.Source(repo, "HEAD", tmp_path / "cache").dir
    assert again == exported and not (again / ".config").exists() and not (again / "include/config").exists()


@pytest.mark.unit
def test_watched_names():
    pat = kbuild.watched_pattern("pte_offset_map_nolock")
    text = ("/* pte_offset_map_ro_nolock() */ x = pte_offset_map_readonly_nolock(mm, pmd, a, &ptl);\n"
            "y = pte_offset_map_nolock(mm, pmd, a, &ptl); z = pte_offset_map(pmd, a);")
    assert kbuild.code_mentions(text, pat) == {"pte_offset_map_readonly_nolock", "pte_offset_map_nolock"}


# --------------------------------------------------------------------------
# one small build (make verify builds the whole series)
# --------------------------------------------------------------------------

def _commit_file(repo: Path, path: str, data: bytes, message: str, tmp: Path) -> str:
    """A commit on HEAD that changes one file, made without a checkout."""
    env = {"GIT_INDEX_FILE": str(tmp / "index")}

    def git(*args, input=None):
        proc = subprocess.run(["git", *args], cwd=repo, input=input, capture_output=True, check=True,
                              env={**__import__("os").environ, **env})
        return proc.stdout.decode().strip()

    blob = git("hash-object", "-w", "--stdin", input=data)
    git("read-tree", "HEAD")
    git("update-index", "--cacheinfo", f"100644,{blob},{path}")
    tree = git("write-tree")
    return git("-c", "user.name=Rewriter Tests", "-c", "user.email=rewriter-tests@example.invalid",
               "commit-tree", tree, "-p", "HEAD", "-m", message)


@pytest.mark.kernel
def test_build_reports_a_new_warning(tools, kernel_tree, tmp_path):
    """One commit that adds an unused variable to mm/fadvise.c (a small
    obj-y file): its object is built at the base and at the commit, and
    the warning is new.  Needs the exported base that make verify leaves in
    the build cache; a cold cache would take longer than this suite allows."""
    tree_id = tools.git(kernel_tree, "rev-parse", "HEAD^{tree}")
    src = kbuild.default_cache() / f"src-{tree_id[:16]}"
    if not (src / "Makefile").exists():
        pytest.skip(f"the kernel build cache is cold ({src} missing): run 'make verify' once")
    clone = tmp_path / "linux"
    subprocess.run(["git", "clone", "-q", "--shared", "--no-checkout", str(kernel_tree), str(clone)], check=True)
    text = _kernel_file(kernel_tree, "mm/fadvise.c").decode()
    anchor = "int generic_fadvise(struct file *file, loff_t offset, loff_t len, int advice)\n{\n"
    assert anchor in text
    text = text.replace(anchor, anchor + "\tint rewriter_test_unused;\n", 1)
    commit = _commit_file(clone, "mm/fadvise.c", text.encode(),
                          "mm: fadvise: add an unused variable\n\nSigned-off-by: Rewriter Tests "
                          "<rewriter-tests@example.invalid>", tmp_path)
    tools.git(clone, "branch", "warn", commit)
    import time
    t0 = time.monotonic()
    code, data, err = _check(tools, clone, "--branch", "warn", "--base", "HEAD", "--build")
    seconds = time.monotonic() - t0
    assert data is not None, err
    assert code == 1, err
    (patch,) = [p for p in data["patches"] if p["number"] != 0]
    build = patch["build"]
    assert build["status"] == "new warnings", build
    (obj,) = build["objects"]
    assert obj["source"] == "mm/fadvise.c" and obj["why"] == "touched"
    assert any("unused variable 'rewriter_test_unused'" in w for w in obj["new_warnings"]), obj
    assert [c["defconfig"] for c in data["build"]["configs"] if c["files"]] == ["defconfig"]
    assert seconds < 300, f"the one-object build took {seconds:.0f}s"
