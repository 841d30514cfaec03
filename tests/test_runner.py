"""The runner's per-file timeout: a file that spatch takes too long on is
stopped, named, and does not hold up the others."""

from __future__ import annotations

import json

# One function whose analysis takes spatch minutes (thousands of branches
# after the call); with --timeout 1 it is stopped after a second.
SLOW_BODY = "".join(f"\tif (addr & {i})\n\t\tcount += pte_val(ptep_get(pte + {i % 64}));\n" for i in range(3000))
SLOW_FILE = f"""// SPDX-License-Identifier: GPL-2.0

static unsigned long fixture_huge_reader(struct mm_struct *mm, pmd_t *pmd,
\t\t\t\t\t unsigned long addr)
{{
\tunsigned long count = 0;
\tspinlock_t *ptl;
\tpte_t *pte;

\tpte = pte_offset_map_nolock(mm, pmd, addr, &ptl);
\tif (!pte)
\t\treturn 0;
{SLOW_BODY}\tpte_unmap(pte);
\treturn count;
}}
"""


def test_a_slow_file_is_stopped_and_named(scratch_repo, fixture_scan, tools, tmp_path, monkeypatch):
    monkeypatch.setenv("REWRITER_CACHE", str(tmp_path / "cache"))
    (scratch_repo / "mm" / "fixture_huge.c").write_text(SLOW_FILE)
    tools.commit_all(scratch_repo, "a function spatch needs minutes for")
    code, out, err = tools.run_rewriter("scan", "--tree", scratch_repo, "--format", "json", "--timeout", "1")
    assert code == 1, err  # the scan finished, with an error to report
    data = json.loads(out)
    assert [e["file"] for e in data["errors"]] == ["mm/fixture_huge.c"]
    assert "timed out after 1s" in data["errors"][0]["message"]
    # Every other call was analysed as usual.
    expected = {(s["file"], s["line"], s["verdict"], s["recheck"]) for s in fixture_scan.data["sites"]}
    assert {(s["file"], s["line"], s["verdict"], s["recheck"]) for s in data["sites"]} == expected
    # The refusal of a command that needs every call names the file too.
    code, _out, err = tools.run_rewriter("plan", "--tree", scratch_repo, "--timeout", "1")
    assert code != 0 and "mm/fixture_huge.c" in err and "timed out" in err


def test_timeout_must_be_positive(fixture_repo, tools):
    code, out, err = tools.run_rewriter("scan", "--tree", fixture_repo, "--timeout", "0")
    assert code == 3 and out == ""  # as for -j 0: a bad value, refused by rewriter itself
    assert err.startswith("rewriter: --timeout 0: ") and err.count("\n") == 1
