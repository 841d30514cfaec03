"""Progress: long steps say how far they are on a terminal, and nothing
when standard error is not one."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys

from conftest import FIXTURE_SCAN_TIMEOUT, PROJECT_ROOT


def _run_on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run the tool with standard error on a pseudo-terminal; (exit, what it showed)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "rewriter", *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=follower, env=env)
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the tool closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    return proc.wait(timeout=FIXTURE_SCAN_TIMEOUT), shown.decode("utf-8", "replace")


def _env(tmp_path) -> dict[str, str]:
    # An empty cache of its own, so that every step really runs.
    return dict(os.environ, PYTHONPATH=str(PROJECT_ROOT), REWRITER_CACHE=str(tmp_path / "cache"))


def test_scan_shows_each_step_on_a_terminal(fixture_repo, tmp_path):
    code, shown = _run_on_a_terminal(["scan", "--tree", str(fixture_repo), "--format", "json"], _env(tmp_path))
    assert code == 0, shown
    finals = dict(re.findall(r"(\w+): (\d+/\d+ [a-z ]+?)\r?\n", shown))
    # Each step ends with its total, on a line of its own.
    assert re.fullmatch(r"1/1 passes over the tree", finals["grep"])
    for step, unit in (("facts", "files"), ("paths", "questions")):
        done, total = re.fullmatch(rf"(\d+)/(\d+) {unit}", finals[step]).groups()
        assert done == total and int(total) > 0
    # and counts up to it in place (carriage returns, no new lines): the
    # paths one question at a time; the facts of all files come from one
    # spatch run, shown as it starts and as it ends.
    paths_total = int(finals["paths"].split("/")[1].split()[0])
    assert shown.count("\rpaths: ") == paths_total
    facts_total = int(finals["facts"].split("/")[1].split()[0])
    assert f"\rfacts: 0/{facts_total} files\rfacts: {facts_total}/{facts_total} files\r\n" in shown


def test_scan_is_silent_when_not_on_a_terminal(fixture_repo, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "rewriter", "scan", "--tree", str(fixture_repo), "--format", "json"],
                          env=_env(tmp_path), capture_output=True, text=True, timeout=FIXTURE_SCAN_TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.startswith("{")
