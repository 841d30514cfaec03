"""rewriter as an installed tool: a wheel built from the project, installed
into a fresh virtual environment (no system site-packages), run from a
directory outside the checkout with no PYTHONPATH.  Its scan, diff and
series on the fixture tree are the checkout's.

The wheel's dependencies come from pip's own configuration (the index, or
PIP_NO_INDEX and PIP_FIND_LINKS for a machine without one).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import FIXTURE_SCAN_TIMEOUT, PROJECT_ROOT, git_env
from harness import AUTHOR, UNPLACEABLE, run, set_in_plan, settle_reviews

pytestmark = [pytest.mark.slow, pytest.mark.spatch]

# What setuptools needs to build the wheel; nothing else of the checkout.
PROJECT_FILES = ("pyproject.toml", "rewriter", "cocci", "templates")
DATA_FOLDERS = ("cocci", "templates")


def _data_files() -> list[str]:
    """Every file of the data folders, as the checkout has them."""
    return sorted(p.relative_to(PROJECT_ROOT).as_posix()
                  for folder in DATA_FOLDERS for p in (PROJECT_ROOT / folder).rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts)


def _pip(python: Path, *args: str, cwd: Path) -> None:
    proc = subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, f"pip {' '.join(args)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """The wheel and a venv with it installed: {"wheel", "venv", "bin", "env", "cwd"}."""
    root = tmp_path_factory.mktemp("install")
    # A copy, so that setuptools' build/ and egg-info are not left in the
    # checkout and nothing stale in them reaches the wheel.
    src = root / "src"
    src.mkdir()
    for name in PROJECT_FILES:
        source = PROJECT_ROOT / name
        if source.is_dir():
            shutil.copytree(source, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, src / name)
    dist = root / "dist"
    _pip(Path(sys.executable), "wheel", "--no-deps", "-q", "-w", str(dist), str(src), cwd=root)
    wheels = list(dist.glob("rewriter-*.whl"))
    assert len(wheels) == 1, wheels
    venv = root / "venv"
    proc = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    _pip(venv / "bin" / "python", "install", "-q", str(wheels[0]), cwd=root)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    # A cold cache: the installed tool runs spatch over its own rendered rules.
    env["REWRITER_CACHE"] = "off"
    env.update(git_env())  # the fixed test identity, no user configuration
    env.pop("PYTHONPATH", None)
    cwd = root / "elsewhere"
    cwd.mkdir()
    return {"wheel": wheels[0], "venv": venv, "bin": venv / "bin", "env": env, "cwd": cwd}


def _tool(installed: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(installed["bin"] / "rewriter"), *args], cwd=installed["cwd"], env=installed["env"],
                          capture_output=True, text=True, timeout=FIXTURE_SCAN_TIMEOUT, check=False)


def test_wheel_carries_every_data_file(installed):
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    expected = _data_files()
    assert any(f.endswith(".cocci.j2") for f in expected) and any(f.startswith("templates/series/") for f in expected)
    missing = [f for f in expected if f"rewriter/share/{f}" not in names]
    assert not missing, missing


def test_installed_package_is_the_venvs(installed):
    proc = subprocess.run([str(installed["bin"] / "python"), "-c",
                           "import rewriter, rewriter.resources as r; "
                           "print(rewriter.__file__); print(r.COCCI_DIR); print(r.TEMPLATES_DIR)"],
                          cwd=installed["cwd"], env=installed["env"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    venv = installed["venv"].resolve()
    for line in proc.stdout.split():
        assert Path(line).resolve().is_relative_to(venv), (line, venv)
        assert not Path(line).resolve().is_relative_to(PROJECT_ROOT), line


def test_installed_scan_diff_series(installed, fixture_repo, scan_data, tmp_path):
    scan = _tool(installed, "scan", "--tree", str(fixture_repo), "--format", "json")
    # The fixture tree has calls marked for review: exit 0 all the same; 1 is a file spatch cannot parse.
    assert scan.returncode == 0, scan.stderr
    assert json.loads(scan.stdout) == scan_data

    planned = _tool(installed, "plan", "--tree", str(fixture_repo))
    assert planned.returncode == 0, planned.stderr
    plan = tmp_path / "plan.toml"
    plan.write_text(settle_reviews(set_in_plan(planned.stdout, UNPLACEABLE, "recheck", '"dummy"')))

    diff = _tool(installed, "diff", "--tree", str(fixture_repo), "--plan", str(plan))
    assert diff.returncode == 0, diff.stderr
    from_checkout = run(["diff", "--tree", fixture_repo, "--plan", plan], tmp_path / "checkout")
    assert from_checkout.code == 0, from_checkout.describe()
    assert diff.stdout == from_checkout.stdout and "+pte_t *pte_offset_map_maywrite_nolock(" in diff.stdout

    repo = tmp_path / "linux"
    subprocess.run(["git", "clone", "-q", "--shared", str(fixture_repo), str(repo)], env=git_env(), check=True)
    out = tmp_path / "outgoing"
    series = _tool(installed, "series", "--tree", str(repo), "--plan", str(plan), "--author", AUTHOR,
                   "-o", str(out))
    assert series.returncode == 0, series.stderr
    patches = sorted(p.name for p in out.iterdir())
    assert patches[0] == "0000-cover-letter.patch" and len(patches) > 2, patches
    cover = (out / patches[0]).read_text()
    # The cover letter is the one text that only the templates write.
    count = len(patches) - 1
    assert f"\nSubject: [RFC PATCH {0:0{len(str(count))}}/{count}] mm: split pte_offset_map_nolock()" in cover, \
        cover[:2000]
