"""The spatch result cache: a warm run gives the same answer without spatch."""

from __future__ import annotations

import os
import stat


def _fake_spatch(directory):
    """A spatch that knows its version and fails at everything else."""
    directory.mkdir()
    fake = directory / "spatch"
    fake.write_text("#!/bin/sh\n"
                    "if [ \"$1\" = --version ]; then echo 'spatch version 1.1.1 compiled with OCaml'; exit 0; fi\n"
                    "echo 'fake spatch: should not run' >&2; exit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return directory


def test_warm_scan_needs_no_spatch_run(tools, fixture_repo, tmp_path, monkeypatch):
    monkeypatch.setenv("REWRITER_CACHE", str(tmp_path / "cache"))
    code, cold, err = tools.run_rewriter("scan", "--tree", fixture_repo, "--format", "json")
    assert code == 0, err
    entries = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert entries and not any(p.name.startswith(".tmp-") for p in entries)
    fake = _fake_spatch(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    code, warm, err = tools.run_rewriter("scan", "--tree", fixture_repo, "--format", "json")
    assert code == 0, err
    assert warm == cold


def test_damaged_entries_are_recomputed(tools, fixture_repo, tmp_path, monkeypatch):
    monkeypatch.setenv("REWRITER_CACHE", str(tmp_path / "cache"))
    code, cold, err = tools.run_rewriter("scan", "--tree", fixture_repo, "--format", "json")
    assert code == 0, err
    for p in (tmp_path / "cache").rglob("*"):
        if p.is_file():
            p.write_bytes(b"not json\n")
    code, again, err = tools.run_rewriter("scan", "--tree", fixture_repo, "--format", "json")
    assert code == 0, err
    assert again == cold


def test_cache_off_writes_nothing(tools, fixture_repo, tmp_path, monkeypatch):
    monkeypatch.setenv("REWRITER_CACHE", "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    code, _out, err = tools.run_rewriter("scan", "--tree", fixture_repo, "--format", "json")
    assert code == 0, err
    assert not (tmp_path / "xdg").exists() and not (tmp_path / "home" / ".cache").exists()


def test_a_stored_scan_is_not_used_for_changed_files(tools, scratch_repo, tmp_path, monkeypatch):
    """The whole scan is kept, keyed by the files that name the function:
    a commit that changes one of them is scanned again, and a commit that
    changes nothing they contain gives the stored scan, at its own rev."""
    import json

    monkeypatch.setenv("REWRITER_CACHE", str(tmp_path / "cache"))
    code, out, err = tools.run_rewriter("scan", "--tree", scratch_repo, "--format", "json")
    assert code == 0, err
    before = json.loads(out)
    assert len(list((tmp_path / "cache" / "scans").iterdir())) == 1
    # A file that does not name the function: the stored scan is used.
    (scratch_repo / "mm" / "unrelated.c").write_text("// SPDX-License-Identifier: GPL-2.0\nint unrelated;\n")
    rev = tools.commit_all(scratch_repo, "a file without a call")
    code, out, err = tools.run_rewriter("scan", "--tree", scratch_repo, "--format", "json")
    assert code == 0, err
    same = json.loads(out)
    assert same["rev"] == rev != before["rev"]
    assert same["sites"] == before["sites"]
    # One more call in a file with calls: scanned again.
    basic = scratch_repo / "mm" / "fixture_basic.c"
    basic.write_text(basic.read_text() + """
static void fixture_one_more(struct mm_struct *mm, pmd_t *pmd, unsigned long addr)
{
\tspinlock_t *ptl;
\tpte_t *pte;

\tpte = pte_offset_map_nolock(mm, pmd, addr, &ptl);
\tif (!pte)
\t\treturn;
\tpte_unmap(pte);
}
""")
    tools.commit_all(scratch_repo, "one more call")
    code, out, err = tools.run_rewriter("scan", "--tree", scratch_repo, "--format", "json")
    assert code == 0, err
    after = json.loads(out)
    assert len(after["sites"]) == len(before["sites"]) + 1
    assert any(s["function"] == "fixture_one_more" and s["verdict"] == "ro" for s in after["sites"])
    assert len(list((tmp_path / "cache" / "scans").iterdir())) == 2


def test_a_stored_scan_is_not_used_when_the_walk_reads_differently(tools, scratch_repo, tmp_path, monkeypatch):
    """The caller walk reads files that do not name the function: a new
    caller of a function it walked, in a file of its own, changes the
    verdict, and the stored scan must not hide that."""
    import json

    monkeypatch.setenv("REWRITER_CACHE", str(tmp_path / "cache"))

    def recheck_of_the_write_locked_call() -> str:
        code, out, err = tools.run_rewriter("scan", "--tree", scratch_repo, "--format", "json")
        assert code == 0, err
        site, = [s for s in json.loads(out)["sites"] if s["function"] == "fixture_wl_move"]
        return site["recheck"]

    assert recheck_of_the_write_locked_call() == "dummy"
    (scratch_repo / "kernel" / "fixture_wl_reader.c").write_text(
        "// SPDX-License-Identifier: GPL-2.0\n\n"
        "void fixture_wl_reader(struct mm_struct *mm, pmd_t *pmd, unsigned long addr)\n{\n"
        "\tmmap_read_lock(mm);\n\tfixture_wl_move(mm, pmd, addr);\n\tmmap_read_unlock(mm);\n}\n")
    tools.commit_all(scratch_repo, "a caller under the read lock")
    assert recheck_of_the_write_locked_call() == "pmd_same"
