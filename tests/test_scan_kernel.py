"""`rewriter scan` on the real kernel tree named by REWRITER_KERNEL_TREE.

Only the shape of the answer is checked here (how many calls, where, and
that each one comes with a verdict and evidence); the per-function verdicts
are checked by a separate, reviewed test.
"""

from __future__ import annotations

import re
import subprocess

import pytest

pytestmark = pytest.mark.kernel

API = "pte_offset_map_nolock"

EXPECTED_SITES = 12
EXPECTED_FUNCTIONS = 11
EXPECTED_FILES = 9

EXPECTED_MENTIONS = [
    ("include/linux/mm.h", "declaration"),
    ("mm/pgtable-generic.c", "definition"),
    ("Documentation/mm/split_page_table_lock.rst", "documentation"),
]


@pytest.fixture(scope="module")
def kernel_scan(kernel_tree, tools):
    result = tools.scan_json(kernel_tree, timeout=tools.KERNEL_SCAN_TIMEOUT)
    assert result.data is not None, \
        "scan did not print one JSON object\n" + result.describe()
    return result


@pytest.fixture(scope="module")
def kernel_data(kernel_scan):
    return kernel_scan.data


def show(tree, rev: str, path: str) -> list[str]:
    proc = subprocess.run(["git", "-C", str(tree), "show", f"{rev}:{path}"],
                          capture_output=True, text=True, check=True)
    return proc.stdout.split("\n")


def test_scan_exits_cleanly(kernel_scan):
    assert kernel_scan.returncode == 0, kernel_scan.describe()
    assert kernel_scan.data["errors"] == []


def test_header(kernel_data):
    assert kernel_data["function"] == API
    assert re.fullmatch(r"[0-9a-f]{40}", kernel_data["rev"]), kernel_data["rev"]


def test_site_counts(kernel_data):
    sites = kernel_data["sites"]
    listing = "\n".join(f"{s['file']}:{s['line']} {s['function']}" for s in sites)
    assert len(sites) == EXPECTED_SITES, listing
    assert len({(s["file"], s["function"]) for s in sites}) == EXPECTED_FUNCTIONS, listing
    assert len({s["file"] for s in sites}) == EXPECTED_FILES, listing
    assert len({(s["file"], s["line"]) for s in sites}) == EXPECTED_SITES, listing


def test_every_site_has_verdict_and_evidence(kernel_data):
    for site in kernel_data["sites"]:
        assert site["verdict"] in ("ro", "rw"), site
        if site["verdict"] == "ro":
            assert site["recheck"] is None, site
        else:
            assert site["recheck"] in ("pmd_same", "dummy"), site
        assert isinstance(site["review"], bool), site
        if site["review"]:
            assert any(r.strip() for r in site["reasons"]), site
        assert f"{API}(" in site["call"], site
        assert site["evidence"], site
        for ev in site["evidence"]:
            assert isinstance(ev["line"], int) and ev["line"] >= 1, site
            assert isinstance(ev["text"], str) and ev["text"].strip(), site


def test_sites_point_at_the_calls(kernel_tree, kernel_data):
    """Each line is where the name appears at that revision of the file."""
    rev = kernel_data["rev"]
    files: dict[str, list[str]] = {}
    for site in kernel_data["sites"]:
        lines = files.setdefault(site["file"], show(kernel_tree, rev, site["file"]))
        assert 1 <= site["line"] <= len(lines), site
        assert API in lines[site["line"] - 1], site
        for ev in site["evidence"]:
            assert 1 <= ev["line"] <= len(lines), site


@pytest.mark.parametrize("file,kind", EXPECTED_MENTIONS)
def test_mentions(kernel_data, file, kind):
    assert any(m["file"] == file and m["kind"] == kind
               for m in kernel_data["mentions"]), \
        [m for m in kernel_data["mentions"] if m["file"] == file]


def test_mentions_are_not_sites(kernel_data):
    sites = {(s["file"], s["line"]) for s in kernel_data["sites"]}
    for mention in kernel_data["mentions"]:
        assert (mention["file"], mention["line"]) not in sites, mention
