"""`rewriter check --boot`: the workload, the injection, the initramfs, the
console reader, the refusals, and the boots.

What fits the CI budget runs here: the workload built and run on the host,
the injection applied to C text, the console of a lockdep report read back
and blamed on the right function, the refusals.  A boot needs a kernel: the
test that boots one uses the kernel `make verify` leaves in the build
cache and is skipped, with the reason, when there is none (a cold build
takes far longer than the suite may).  The check on a series with a known
locking bug builds two kernels; it runs under `make verify`
(REWRITER_BOOT_TESTS=1) and is skipped otherwise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from rewriter import boot, inject, kbuild

BOOT_TESTS = os.environ.get("REWRITER_BOOT_TESTS") == "1"
BUGGY_MAP_PTE = "pte_unmap_unlock(pvmw->pte, pvmw->ptl);\npvmw->pte = NULL;\nreturn false;"


# --------------------------------------------------------------------------
# the workload on the host
# --------------------------------------------------------------------------

def _static_gcc_or_skip(tmp_path: Path) -> str:
    gcc = shutil.which("gcc")
    if not gcc:
        pytest.skip("no gcc (Debian package gcc)")
    probe = tmp_path / "probe.c"
    probe.write_text("int main(void) { return 0; }\n")
    if subprocess.run([gcc, "-static", "-o", str(tmp_path / "probe"), str(probe)], capture_output=True).returncode:
        pytest.skip("gcc cannot link a static program here (Debian package libc6-dev)")
    return gcc


def test_workload_checks_its_data_on_the_host(tmp_path):
    """Every phase the host kernel allows runs and finds its data intact;
    the others say why they were skipped."""
    gcc = _static_gcc_or_skip(tmp_path)
    exe = boot.build_workload(tmp_path, gcc)
    proc = subprocess.run([str(exe), "-r", "2", "-t", "1", "-d", str(tmp_path)], capture_output=True, text=True,
                          timeout=300)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert lines[-1].startswith("rwl end errors=0"), lines[-1]
    results = {m.group(1): m.group(2) for l in lines if (m := re.match(r"^rwl (\S+) (ok|skip|FAIL)", l))}
    # the phases that need nothing special of the kernel always run
    for phase in ("fork_anon", "fork_file", "wp_fault", "mremap", "file_fault", "race"):
        assert results.get(phase) == "ok", (phase, proc.stdout)
    assert len(results) == 13, results
    for line in lines:
        if " skip " in line:
            assert re.match(r"^rwl \S+ skip \S", line), line  # a reason is given


def test_workload_runs_only_the_phases_named(tmp_path):
    gcc = _static_gcc_or_skip(tmp_path)
    exe = boot.build_workload(tmp_path, gcc)
    proc = subprocess.run([str(exe), "-r", "1", "wp_fault"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert [l.split()[1] for l in proc.stdout.splitlines() if l.startswith("rwl ")] == ["wp_fault", "wp_fault", "end"]


# --------------------------------------------------------------------------
# the injection
# --------------------------------------------------------------------------

CALLER = """\
static int walker(struct mm_struct *mm, pmd_t *pmd, unsigned long addr)
{
	spinlock_t *ptl;
	pmd_t pmdval;
	pte_t *pte;

	pte = pte_offset_map_maywrite_nolock(mm, pmd, addr, &pmdval, &ptl);
	if (!pte)
		return -EAGAIN;
	spin_lock(ptl);
	if (unlikely(!pmd_same(pmdval, pmdp_get_lockless(pmd)))) {
		pte_unmap_unlock(pte, ptl);
		return -EAGAIN;
	}
	pte_unmap_unlock(pte, ptl);
	return 0;
}

static void reader(struct mm_struct *mm, pmd_t *pmd, unsigned long addr)
{
	spinlock_t *ptl;
	pte_t *pte = pte_offset_map_readonly_nolock(mm, pmd, addr, &ptl);

	if (pte)
		pte_unmap(pte);
}
"""


def test_injection_hooks_the_recheck_and_counts_the_calls():
    got = inject.inject({"mm/walker.c": CALLER.encode()}, "pte_offset_map_readonly_nolock",
                        "pte_offset_map_maywrite_nolock")
    assert not got.errors
    assert [(s.function, s.kind) for s in got.sites] == [("walker", "rw"), ("walker", "recheck"), ("reader", "ro")]
    text = got.files["mm/walker.c"].decode()
    assert text.startswith("#include <linux/rewriter_inject.h>")
    rw, recheck, ro = (s.id for s in got.sites)
    flat = " ".join(text.split())
    assert f"rwi_recheck({recheck}, !pmd_same(pmdval, pmdp_get_lockless(pmd)))" in flat
    assert f"(rwi_call({rw}), pte_offset_map_maywrite_nolock(mm, pmd, addr, &pmdval, &ptl))" in flat
    assert f"(rwi_call({ro}), pte_offset_map_readonly_nolock(mm, pmd, addr, &ptl))" in flat
    assert "RWI_" not in text
    # the rest of the function is untouched
    assert text.count("pte_unmap_unlock(pte, ptl);") == 2


@pytest.mark.unit
def test_injection_semantic_patch_has_the_kernel_header():
    rule = inject.semantic_patch("pte_offset_map_readonly_nolock", "pte_offset_map_maywrite_nolock")
    head = rule.splitlines()
    assert head[0].startswith("/// ")
    assert any(l.startswith("// Confidence: ") for l in head[:20])
    assert any(l.startswith("// Options: ") for l in head[:20])


@pytest.mark.unit
def test_kernel_side_lists_every_site_and_wires_the_makefile():
    sites = [inject.Site(0, "mm/a.c", "f", "rw"), inject.Site(1, "mm/a.c", "f", "recheck")]
    files = inject.kernel_files(sites, b"obj-y := memory.o\n", every=3, delay_us=100)
    c = files[inject.KERNEL_C].decode()
    assert "#define RWI_SITES 2" in c
    assert '"mm/a.c:f:recheck",' in c
    assert "static int every = 3;" in c
    assert files[inject.MAKEFILE].decode() == "obj-y := memory.o\n" + inject.MAKEFILE_LINE
    again = inject.kernel_files(sites, files[inject.MAKEFILE], every=3, delay_us=100)
    assert again[inject.MAKEFILE] == files[inject.MAKEFILE]  # added once


@pytest.mark.kernel
def test_injection_on_the_real_tree(kernel_tree, tmp_path):
    """The calls of the real 6.12 tree, renamed as the series renames them,
    all get their hooks; so does the recheck the series adds to map_pte()."""
    text = subprocess.run(["git", "show", "HEAD:mm/page_vma_mapped.c"], cwd=kernel_tree, capture_output=True,
                          check=True).stdout.decode()
    text = text.replace("pte_offset_map_nolock(pvmw->vma->vm_mm, pvmw->pmd,\n\t\t\t\t\t  pvmw->address, ptlp);",
                        "pte_offset_map_maywrite_nolock(pvmw->vma->vm_mm, pvmw->pmd,\n"
                        "\t\t\t\t\t  pvmw->address, &pmdval, ptlp);")
    text = text.replace("\tspin_lock(pvmw->ptl);\n\treturn true;",
                        "\tspin_lock(pvmw->ptl);\n\tif (unlikely(!pmd_same(pmdval, pmdp_get_lockless(pvmw->pmd)))) {\n"
                        "\t\tpte_unmap_unlock(pvmw->pte, pvmw->ptl);\n\t\treturn false;\n\t}\n\treturn true;")
    assert "pte_offset_map_maywrite_nolock" in text and "pmd_same" in text
    got = inject.inject({"mm/page_vma_mapped.c": text.encode()}, "pte_offset_map_readonly_nolock",
                        "pte_offset_map_maywrite_nolock")
    assert [(s.function, s.kind) for s in got.sites] == [("map_pte", "rw"), ("map_pte", "recheck")]
    assert "page_vma_mapped_walk" in inject.defined_functions(text)


# --------------------------------------------------------------------------
# initramfs, console, refusals
# --------------------------------------------------------------------------

def test_initramfs_is_a_newc_archive(tmp_path):
    wl = tmp_path / "workload"
    wl.write_bytes(b"\x7fELF-not-really")
    bb = tmp_path / "busybox"
    bb.write_bytes(b"busybox-bytes")
    dest = tmp_path / "initramfs.cpio"
    boot.make_initramfs(dest, str(bb), wl, "#!/bin/busybox sh\necho hi\n")
    data = dest.read_bytes()
    names, pos = [], 0
    while True:
        assert data[pos:pos + 6] == b"070701"
        size, namesize = int(data[pos + 54:pos + 62], 16), int(data[pos + 94:pos + 102], 16)
        name = data[pos + 110:pos + 110 + namesize - 1].decode()
        names.append(name)
        pos += 110 + namesize
        pos += -pos % 4
        pos += size + (-size % 4)
        if name == "TRAILER!!!":
            break
    assert pos == len(data)
    assert {"init", "bin/busybox", "bin/workload", "dev/console"} <= set(names)
    if shutil.which("cpio"):
        listed = subprocess.run(["cpio", "-t"], input=data, capture_output=True, check=True).stdout.decode().split()
        assert "init" in listed


LOCKDEP_REPORT = """\
[   31.402217] rwl race start
[   33.118836] =====================================
[   33.119080] WARNING: bad unlock balance detected!
[   33.119290] 6.12.0 #1 Not tainted
[   33.119446] -------------------------------------
[   33.119656] workload/87 is trying to release lock (ptlock_ptr(ptdesc)) at:
[   33.119979] [<ffffffff811c4f2a>] page_vma_mapped_walk+0x3ba/0x6f0
[   33.120270] but there are no more locks to release!
[   33.120489]
[   33.120489] other info that might help us debug this:
[   33.120842] 1 lock held by workload/87:
[   33.121027]  #0: ffff888004a7c0b8 (&anon_vma->rwsem){++++}-{4:4}, at: rmap_walk_anon+0x1d4/0x220
[   33.121490]
[   33.121490] stack backtrace:
[   33.121713] CPU: 1 UID: 0 PID: 87 Comm: workload Not tainted 6.12.0 #1
[   33.122024] Call Trace:
[   33.122155]  <TASK>
[   33.122269]  dump_stack_lvl+0x5d/0x80
[   33.122455]  lock_release+0x23f/0x2b0
[   33.122640]  _raw_spin_unlock+0x16/0x40
[   33.122828]  page_vma_mapped_walk+0x3ba/0x6f0
[   33.123043]  try_to_migrate_one+0x17d/0xb80
[   33.123249]  rmap_walk_anon+0xf5/0x220
[   33.123442]  </TASK>
rwl race ok 120 walks=120 zaps=3000
rwi 13 calls=0 evals=300 real=0 forced=100 mm/page_vma_mapped.c:map_pte:recheck
rwb: done
"""


@pytest.mark.unit
def test_console_splat_is_read_and_blamed_on_map_pte():
    splats, phases, counts, marks = boot.parse_console(LOCKDEP_REPORT)
    assert [s.title for s in splats] == ["WARNING: bad unlock balance detected!"]
    assert phases["race"][0] == "ok"
    assert counts[13]["forced"] == 100
    assert marks["finished"]
    fn = boot.Function("mm/page_vma_mapped.c", "map_pte", "pmd_same", True, forced=100)
    other = boot.Function("mm/memory.c", "copy_pte_range", "pmd_same", True)
    boot.attribute(splats[0], [fn, other], {"mm/page_vma_mapped.c": {"map_pte", "page_vma_mapped_walk"},
                                            "mm/memory.c": {"copy_pte_range"}})
    assert len(splats[0].functions) == 1
    assert splats[0].functions[0].startswith("map_pte() (mm/page_vma_mapped.c, forced 100 times)")


@pytest.mark.unit
def test_splat_titles_compare_across_runs():
    a = boot._title("BUG: spinlock already unlocked on CPU#1, workload/87")
    b = boot._title("BUG: spinlock already unlocked on CPU#0, workload/91")
    assert a == b


def _path_without(tmp_path: Path, missing: str) -> str:
    """A PATH with the tools check --boot looks for, except missing."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for prog in ("git", "gcc", "make", "qemu-system-x86_64", "busybox", "spatch", "perl", "bash", "env", "sh"):
        found = shutil.which(prog)
        if found and prog != missing:
            (bindir / prog).symlink_to(found)
    return str(bindir)


@pytest.mark.parametrize("missing,package", [("qemu-system-x86_64", "qemu-system-x86"),
                                             ("busybox", "busybox-static"), ("gcc", "gcc")])
def test_missing_tool_is_one_line_naming_the_package(fixture_repo, tmp_path, missing, package):
    # the tools are looked for in order: the ones before this one must be there
    for prog in boot.PACKAGES:
        if prog == missing:
            break
        if not shutil.which(prog):
            pytest.skip(f"no {prog} on this machine (Debian package {boot.PACKAGES[prog]}), which is looked "
                        f"for before {missing}")
    env = dict(os.environ, PATH=_path_without(tmp_path, missing))
    proc = subprocess.run([sys.executable, "-m", "rewriter", "check", "--tree",
                           str(fixture_repo), "--boot"], capture_output=True, text=True, env=env,
                          cwd=Path(__file__).resolve().parent.parent, timeout=120)
    assert proc.returncode == 4, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rewriter: "), lines
    assert missing in lines[0] and package in lines[0]


def test_dynamic_busybox_is_refused(tmp_path, monkeypatch):
    ls = shutil.which("ls")
    if not ls or not boot._is_dynamic(ls):
        pytest.skip("no dynamically linked program to stand in for busybox")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "busybox").symlink_to(ls)
    for prog in ("gcc", "make", "qemu-system-x86_64"):
        if not shutil.which(prog):
            pytest.skip(f"no {prog}")
        (bindir / prog).symlink_to(shutil.which(prog))
    monkeypatch.setenv("PATH", str(bindir))
    with pytest.raises(boot.ToolError, match="busybox-static"):
        boot.require_tools()


# --------------------------------------------------------------------------
# boots
# --------------------------------------------------------------------------

def _cached_kernel() -> Path | None:
    """The newest base kernel a `make verify` left in the build cache."""
    images = sorted(kbuild.default_cache().glob("boot-x86_64-base-*/arch/x86/boot/bzImage"),
                    key=lambda p: p.stat().st_mtime)
    return images[-1] if images else None


def test_a_cached_kernel_boots_and_runs_the_workload(tmp_path):
    """A boot of the base kernel that `make verify` built: the workload
    finishes with its data intact and lockdep says nothing.  A cold kernel
    build (some 20 minutes on 2 CPUs, see bench/RESULTS.md) does not fit
    the CI budget, so without that kernel the test is skipped."""
    kernel = _cached_kernel()
    if kernel is None:
        pytest.skip(f"no base kernel in {kbuild.default_cache()} (boot-x86_64-base-*): a cold build does not "
                    f"fit the CI budget; 'make verify' builds it")
    try:
        tools = boot.require_tools()
    except boot.ToolError as exc:
        pytest.skip(str(exc))
    exe = boot.build_workload(tmp_path, tools["gcc"])
    initrd = tmp_path / "initramfs.cpio"
    boot.make_initramfs(initrd, tools["busybox"], exe, boot.init_script(1, 2))
    log = tmp_path / "console.log"
    ok, _why = boot.kvm_usable()
    rc, err, _times = boot.run_qemu(tools["qemu-system-x86_64"], kernel, initrd, boot.KERNEL_ARGS, log,
                                    "kvm" if ok else "tcg", 1200, 300, lambda m: None, "base")
    text = log.read_text(errors="replace")
    if ok and "rwb: boot ok" not in text:  # KVM that does not work here: TCG
        rc, err, _times = boot.run_qemu(tools["qemu-system-x86_64"], kernel, initrd, boot.KERNEL_ARGS, log,
                                        "tcg", 1800, 600, lambda m: None, "base")
        text = log.read_text(errors="replace")
    splats, phases, _counts, marks = boot.parse_console(text)
    assert marks["boot"] and marks["finished"], text[-3000:]
    assert not splats, [s.lines for s in splats]
    assert not [p for p, (status, _d) in phases.items() if status == "FAIL"], phases


@pytest.mark.kernel
@pytest.mark.skipif(not BOOT_TESTS, reason="builds two kernels (about 40 minutes cold on 2 CPUs): "
                                           "run by 'make verify' (REWRITER_BOOT_TESTS=1)")
def test_boot_catches_the_map_pte_that_leaves_ptl_set(tools, kernel_tree, tmp_path):
    """A plan whose map_pte() failure body unlocks and leaves pvmw->ptl
    pointing at the released lock: the check must fail and name map_pte().

    The plan's on_recheck_fail is the whole failure body (the semantics
    where it replaces the tool's own unlock); with the older semantics,
    where it is appended to the tool's unlock, the body unlocks twice,
    which the check must catch just the same."""
    repo = tmp_path / "linux"
    subprocess.run(["git", "clone", "-q", "--shared", str(kernel_tree), str(repo)], check=True)
    tools.git(repo, "config", "user.name", "Rewriter Tests")
    tools.git(repo, "config", "user.email", "rewriter-tests@example.invalid")
    plan = tmp_path / "plan.toml"
    code, _out, err = tools.run_rewriter("plan", "--tree", repo, "-o", plan, timeout=3600)
    assert code == 0, err
    blocks = plan.read_text().split("\n[[call]]\n")
    hits = 0
    for i, b in enumerate(blocks):
        if 'file = "mm/page_vma_mapped.c"' in b and 'function = "map_pte"' in b:
            b = re.sub(r"^on_recheck_fail = .*\n", "", b, flags=re.M)
            blocks[i] = re.sub(r'^(recheck = "pmd_same"\n)', lambda m: m.group(1) + "on_recheck_fail = "
                               + json.dumps(BUGGY_MAP_PTE) + "\n", b, count=1, flags=re.M)
            hits += 1
    assert hits == 1
    plan.write_text("\n[[call]]\n".join(blocks))
    out = tmp_path / "outgoing"
    code, _out, err = tools.run_rewriter("series", "--tree", repo, "--plan", plan, "-o", out, "--author",
                                         "Rewriter Tests <rewriter-tests@example.invalid>", timeout=3600)
    assert code == 0, err
    patch = next(p for p in out.glob("*.patch") if "map_pte" in p.name).read_text()
    assert "+\t\tpvmw->pte = NULL;" in patch and "pvmw->ptl = NULL" not in patch
    code, data_text, err = tools.run_rewriter("check", "--tree", repo, "--series", out, "--boot", "--json",
                                              timeout=4 * 3600)
    data = json.loads(data_text)
    assert code == 1, err
    assert data["boot"]["failed"]
    problems = " ".join(data["boot"]["problems"])
    assert "map_pte()" in problems, problems
    assert re.search(r"bad unlock balance|spinlock already unlocked|spinlock wrong|workload", problems), problems


def test_series_without_x86_code_is_reported_not_failed(tools, tmp_path):
    """A series that changes only an arm file: nothing to boot, and no failure."""
    if not shutil.which("spatch"):
        pytest.skip("no spatch (Debian package coccinelle)")
    try:
        boot.require_tools()
    except boot.ToolError as exc:
        pytest.skip(str(exc))
    src = tmp_path / "src"
    (src / "arch/arm/mm").mkdir(parents=True)
    (src / "include/linux").mkdir(parents=True)
    (src / "include/linux/pgtable.h").write_text(
        "pte_t *pte_offset_map_nolock(struct mm_struct *mm, pmd_t *pmd, unsigned long addr, spinlock_t **ptlp);\n")
    (src / "arch/arm/mm/fault-armv.c").write_text(CALLER.replace("pte_offset_map_maywrite_nolock(mm, pmd, addr, "
                                                                 "&pmdval, &ptl)", "pte_offset_map_nolock(mm, pmd, addr, &ptl)"))
    repo = tools.make_git_repo(src, tmp_path / "linux")
    base = tools.head_sha(repo)
    (repo / "include/linux/pgtable.h").write_text(
        "pte_t *pte_offset_map_readonly_nolock(struct mm_struct *mm, pmd_t *pmd, unsigned long addr,\n"
        "\t\t\t\t      spinlock_t **ptlp);\n"
        "pte_t *pte_offset_map_maywrite_nolock(struct mm_struct *mm, pmd_t *pmd, unsigned long addr,\n"
        "\t\t\t\t      pmd_t *pmdvalp, spinlock_t **ptlp);\n")
    (repo / "arch/arm/mm/fault-armv.c").write_text(CALLER)
    tools.commit_all(repo, "arm: convert")
    head = tools.head_sha(repo)
    patch = SimpleNamespace(commit=head, files=["include/linux/pgtable.h", "arch/arm/mm/fault-armv.c"])
    series = SimpleNamespace(clone=repo, base=base, patches=[patch], commits=[head],
                             touched=lambda: patch.files)
    report = boot.boot_series(series, cache=tmp_path / "cache")
    assert not report.failed()
    assert "no call that x86_64 builds" in report.nothing_to_boot
    assert [(f.name, f.x86, f.status()) for f in report.functions] == [
        ("walker", False, "not run on x86"), ("reader", False, "not run on x86")]
    assert not report.runs  # nothing was built or booted
    assert any("not run on x86" in line for line in report.render_lines())


def test_overlay_writes_only_what_differs_and_undoes_the_rest(tools, tmp_path):
    """The series' source: the base export with the final files and the
    hooks over it; a file already right keeps its time stamp, a file of an
    earlier run that is not wanted now goes back to the base."""
    src = tmp_path / "src"
    (src / "mm").mkdir(parents=True)
    (src / "Makefile").write_text("all:\n")
    (src / "mm/a.c").write_text("base a\n")
    (src / "mm/b.c").write_text("base b\n")
    repo = tools.make_git_repo(src, tmp_path / "linux")
    base = tools.head_sha(repo)
    (repo / "mm/a.c").write_text("final a\n")
    final = tools.commit_all(repo, "a")
    export = kbuild.Source(repo, base, tmp_path / "cache", prefix="boot-series")
    boot.overlay(export, final, ["mm/a.c"], {"mm/b.c": b"hooked b\n", "mm/new.c": b"new\n"})
    assert (export.dir / "mm/a.c").read_text() == "final a\n"
    assert (export.dir / "mm/b.c").read_text() == "hooked b\n"
    assert (export.dir / "mm/new.c").read_text() == "new\n"
    stamp = (export.dir / "mm/a.c").stat().st_mtime_ns
    boot.overlay(export, final, ["mm/a.c"], {})
    assert (export.dir / "mm/a.c").stat().st_mtime_ns == stamp  # unchanged: not written
    assert (export.dir / "mm/b.c").read_text() == "base b\n"  # back to the base
    assert not (export.dir / "mm/new.c").exists()  # not in the base: removed
