"""Path options as people type them: relative to the directory the command
is run in, wherever the command then runs git (a scratch clone, its
temporary directory).  Issue #17: `rewriter check` right after
`rewriter series -o out` could not open out/v1-0001-....patch, because
git am ran in the scratch clone, where out/ means something else.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from harness import AUTHOR, UNPLACEABLE, run, set_in_plan, settle_reviews

CHECKPATCH_FILES = ("scripts/checkpatch.pl", "scripts/spelling.txt", "scripts/const_structs.checkpatch")


def _repo_with_checkpatch(tools, kernel: Path, root: Path) -> Path:
    """The fixture tree with the kernel's checkpatch.pl, so that check gets
    through all its steps."""
    src = root / "src"
    shutil.copytree(tools.FIXTURE_TREE, src)
    for path in CHECKPATCH_FILES:
        data = subprocess.run(["git", "show", f"HEAD:{path}"], cwd=kernel, capture_output=True, check=True).stdout
        (src / path).parent.mkdir(parents=True, exist_ok=True)
        (src / path).write_bytes(data)
    return tools.make_git_repo(src, root / "linux")


@pytest.mark.kernel
def test_every_command_takes_paths_relative_to_where_it_runs(tools, kernel_tree, tmp_path):
    repo = _repo_with_checkpatch(tools, kernel_tree, tmp_path)
    scratch = tmp_path / "elsewhere"  # run() works in scratch/cwd, with ../../linux for the repository
    cwd = scratch / "cwd"

    result = run(["scan", "--tree", repo, "--format", "json"], scratch)
    assert result.code == 0, result.describe()

    result = run(["plan", "--tree", repo, "-o", cwd / "plan.toml"], scratch)
    assert result.code == 0 and result.cwd_left == ["plan.toml"], result.describe()
    plan = cwd / "plan.toml"
    plan.write_text(settle_reviews(set_in_plan(plan.read_text(), UNPLACEABLE, "recheck", '"dummy"')))

    result = run(["diff", "--tree", repo, "--plan", plan, "--emit-cocci", cwd / "rules", "--color", "never"],
                 scratch)
    assert result.code == 0 and result.stdout.startswith("diff --git"), result.describe()
    assert any((cwd / "rules").glob("*.cocci")), result.describe()

    # series with its default -o outgoing, then check with its default
    # --series outgoing: what `make demo` and `make verify` do.
    result = run(["series", "--tree", repo, "--plan", plan, "--author", AUTHOR], scratch)
    assert result.code == 0 and "patches and a cover letter in outgoing/" in result.stdout, result.describe()
    assert "  outgoing/0000-cover-letter.patch\n" in result.stdout, result.describe()
    result = run(["check", "--tree", repo, "--json"], scratch)
    assert result.code in (0, 1) and result.err == b"", result.describe()
    assert len(json.loads(result.stdout)["patches"]) == len(list((cwd / "outgoing").glob("*.patch")))

    # The same series named by another relative path, and the mbox kept
    # where the relative --mbox says.
    shutil.copytree(cwd / "outgoing", cwd / "out")
    result = run(["check", "--tree", repo, "--series", cwd / "out", "--mail", "--mbox", cwd / "sent.mbox",
                  "--json"], scratch)
    assert result.code in (0, 1) and result.err == b"", result.describe()
    assert json.loads(result.stdout)["mail"]["applied"], result.stdout
    assert (cwd / "sent.mbox").read_text().startswith("From ")
    assert result.tmp_left == [], result.describe()
