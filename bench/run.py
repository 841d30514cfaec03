"""The benchmark behind `make bench`.

Measures, on the real kernel tree and in one run:
  * the reference: one plain `spatch --use-gitgrep -j 2` pass of the find
    rule (cocci/find.cocci.j2) over the whole tree;
  * `rewriter scan`, `rewriter diff`, `rewriter series` with empty caches,
    and `rewriter series` again with the caches it filled (warm);
the median of --runs runs of each (wall and CPU seconds; peak RSS is the
largest of the runs), each with its ratio to the reference; then how the
cost per call grows with N synthetic calls added to a copy of the tree.
Prints a table and writes it, with a line describing the machine, to
bench/RESULTS.md.

The reference reads the tree named by --tree (spatch writes nothing there).
rewriter runs on a clone that shares its objects (git clone --shared),
checked out as a user's tree is, so that its greps read the checked-out
files as the reference does; the tree itself is not touched.  One more
row scans a bare clone, where every grep reads the revision instead.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURE_SHAPES = ROOT / "tests" / "fixtures" / "tree"
FUNCTION = "pte_offset_map_nolock"
TARGETS = (
    # (row, figure, limit as a ratio to the reference or in MB)
    ("rewriter series (cold)", "wall", 2.0),
    ("rewriter series (warm)", "wall", 0.5),
)
RSS_LIMIT_MB = 300
GREP_ROW = "part of every cold run: git grep of the checkout"
REVISION_GREP_ROW = "git grep of the revision (a bare clone)"
BARE_SCAN_ROW = "rewriter scan (cold), bare clone"


@dataclass(frozen=True)
class Sample:
    wall: float
    cpu: float
    rss_mb: float
    stdout: str = ""


def measure(cmd: list[str], env: dict[str, str]) -> Sample:
    """Run cmd once: wall time, CPU time (user + system) of it and all its
    children, and the largest resident set of any one of them."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        # wait4 gives this child's own usage, its waited-for children
        # included, so one run's peak is not mixed with another's.
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    if proc.returncode not in (0, 1):
        raise SystemExit(f"bench: {' '.join(map(str, cmd))} failed ({proc.returncode}): {stderr.strip()[-400:]}")
    return Sample(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, stdout)


def median(samples: list[Sample]) -> Sample:
    return Sample(statistics.median(s.wall for s in samples), statistics.median(s.cpu for s in samples),
                  max(s.rss_mb for s in samples))


def bare_clone(tree: Path, dest: Path) -> Path:
    subprocess.run(["git", "clone", "-q", "--bare", "--shared", str(tree), str(dest)], check=True)
    return dest


def checked_out_clone(tree: Path, dest: Path) -> Path:
    """A clone sharing the tree's objects, with its files checked out
    (about 10 s and 1.7 GB for the kernel)."""
    subprocess.run(["git", "clone", "-q", "--shared", str(tree), str(dest)], check=True)
    return dest


def check_out(repo: Path, rev: str) -> None:
    subprocess.run(["git", "-C", str(repo), "checkout", "-q", "--detach", rev], check=True)


def rewriter(*args: str) -> list[str]:
    return [sys.executable, "-m", "rewriter", *args]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", required=True, help="the real kernel git tree (with its work tree, for the reference)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--growth", default="10,100,1000", help="synthetic call counts")
    ap.add_argument("--callers", default="1000", help="synthetic caller counts for the caller walk")
    ap.add_argument("--out", default=str(ROOT / "bench" / "RESULTS.md"))
    args = ap.parse_args()
    if args.runs < 3:
        raise SystemExit("bench: --runs must be 3 or more (the figures are medians)")
    tree = Path(args.tree).resolve()
    if not (tree / "mm").is_dir():
        raise SystemExit(f"bench: {tree} has no work tree with mm/; pass --tree with the kernel tree ('make kernel')")
    machine = describe_machine()
    work = Path(tempfile.mkdtemp(prefix="rewriter-bench-"))
    cache = work / "cache"
    env = dict(os.environ, PYTHONPATH=str(ROOT), REWRITER_CACHE=str(cache))
    rows: list[tuple[str, Sample]] = []
    try:
        repo = checked_out_clone(tree, work / "linux")
        bare = bare_clone(tree, work / "linux.git")
        sys.path.insert(0, str(ROOT))
        from rewriter import cocci
        find_rule = work / "find.cocci"
        find_rule.write_text(cocci.render("find.cocci.j2", name=FUNCTION, marker="@@REWRITER-FIND@@"))
        spatch_cmd = ["spatch", "--very-quiet", "--no-includes", "--use-gitgrep", "-j", "2",
                      "--sp-file", str(find_rule), "--dir", str(tree)]
        step("reference")
        rows.append(("reference: spatch --use-gitgrep -j 2", median(
            [measure(spatch_cmd, env) for _ in range(args.runs)])))
        # What every cold run does first and cannot do without: one grep
        # of the checked-out files for the old name and the new ones (a
        # bare clone has to read the revision from the object store).
        from rewriter.recipe import find as find_recipe
        DEFAULT_NAMES = find_recipe(None).default_names
        from rewriter.tree import GREP_CONFIG
        base = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        words = ["-e", FUNCTION, "-e", DEFAULT_NAMES.readonly, "-e", DEFAULT_NAMES.maywrite]
        grep_cmd = ["git", "-C", str(repo), *GREP_CONFIG, "grep", "-n", "-w", "-F", *words, "--"]
        step("git grep of the checkout")
        rows.append((GREP_ROW, median([measure(grep_cmd, env) for _ in range(args.runs)])))
        step("git grep of the revision")
        rev_grep_cmd = ["git", "--git-dir", str(bare), *GREP_CONFIG, "grep", "-n", "-w", "-F", *words, base, "--"]
        rows.append((REVISION_GREP_ROW, median([measure(rev_grep_cmd, env) for _ in range(args.runs)])))
        step("rewriter scan (cold)")
        scan = rewriter("scan", "--tree", str(repo), "--format", "json")
        rows.append(("rewriter scan (cold)", median([measure(scan, _cold(env, cache)) for _ in range(args.runs)])))
        step("rewriter diff (cold)")
        # The plan make demo follows: it settles the calls the scan marks
        # for review, which series refuses without one.
        plan = str(Path(__file__).resolve().parent.parent / "demo" / "linux-6.12.plan.toml")
        rows.append(("rewriter diff (cold)", median([measure(rewriter("diff", "--tree", str(repo), "--plan", plan),
                                                             _cold(env, cache))
                                                     for _ in range(args.runs)])))
        series = rewriter("series", "--tree", str(repo), "-o", str(work / "out"), "--force", "--plan", plan,
                          "--author", "rewriter bench <bench@example.invalid>")
        step("rewriter series (cold)")
        rows.append(("rewriter series (cold)", median([measure(series, _cold(env, cache))
                                                       for _ in range(args.runs)])))
        step("rewriter series (warm)")
        measure(series, env)  # fill the cache
        rows.append(("rewriter series (warm)", median([measure(series, env) for _ in range(args.runs)])))
        step("rewriter scan (cold), bare clone")
        rows.append((BARE_SCAN_ROW, median([measure(rewriter("scan", "--tree", str(bare), "--format", "json"),
                                                    _cold(env, cache)) for _ in range(args.runs)])))
        growth = []
        for n in map(int, args.growth.split(",")):
            step(f"growth: {n} synthetic calls")
            growth.append((n, _growth(repo, base, n, env, cache)))
        walks = []
        if args.callers:
            # The machine's load changes over the minutes of the bench: the
            # walk is compared with a cold scan of the tree made just before.
            step("caller walk: a cold scan of the tree to compare with")
            walks.append((0, (0, measure(scan, _cold(env, cache)))))
        for n in map(int, args.callers.split(",")) if args.callers else ():
            step(f"caller walk: {n} synthetic callers")
            walks.append((n, _walk(repo, base, n, env, cache)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = report(machine, rows, growth, walks)
    # The section "## check --boot" is measured by hand (kernel builds take
    # half an hour): it is kept as it is.
    old = Path(args.out).read_text() if Path(args.out).exists() else ""
    kept = old.find("\n## check --boot")
    if kept >= 0:
        text = text.rstrip("\n") + "\n" + old[kept:]
    Path(args.out).write_text(text)
    sys.stdout.write(text)
    return 0


def step(name: str) -> None:
    print(f"bench: {name}", file=sys.stderr, flush=True)


def _cold(env: dict[str, str], cache: Path) -> dict[str, str]:
    shutil.rmtree(cache, ignore_errors=True)
    return env


def _growth(repo: Path, base: str, n: int, env: dict[str, str], cache: Path) -> tuple[int, Sample]:
    """A cold scan of a commit on top of the tree that adds n synthetic
    calls (files of fixture functions, renamed), checked out; returns
    (calls the scan found, sample)."""
    shapes = _shape_functions()
    files: dict[str, str] = {}
    made = 0
    per_file = 10
    for f in range((n + per_file - 1) // per_file):
        body = []
        for k in range(min(per_file, n - made)):
            name, text = shapes[(made + k) % len(shapes)]
            body.append(text.replace(name, f"{name}_syn{f}_{k}", 1))
        made += len(body)
        files[f"mm/rewriter_synthetic_{f}.c"] = "\n".join(body)
    sample = _scan_commit(repo, base, files, f"{n} synthetic calls", env, cache)
    return len(json.loads(sample.stdout)["sites"]), sample


# A may-write call with no pte_same() check, so that the scan walks its
# callers; each caller takes the mmap_lock for write, so every chain is
# covered and the walk looks at all of them.
WALKED = """void rewriter_walked(struct mm_struct *mm, pmd_t *pmd, unsigned long addr)
{
\tspinlock_t *ptl;
\tpte_t *pte;
\tpte_t old;

\tpte = pte_offset_map_nolock(mm, pmd, addr, &ptl);
\tif (!pte)
\t\treturn;
\tspin_lock(ptl);
\told = ptep_get_and_clear(mm, addr, pte);
\tset_pte_at(mm, addr + PAGE_SIZE, pte + 1, old);
\tpte_unmap_unlock(pte, ptl);
}
"""
WALK_CALLER = """void rewriter_walk_caller_{f}_{k}(struct mm_struct *mm, pmd_t *pmd, unsigned long addr)
{{
\tmmap_write_lock(mm);
\trewriter_walked(mm, pmd, addr);
\tmmap_write_unlock(mm);
}}
"""


def _walk(repo: Path, base: str, n: int, env: dict[str, str], cache: Path) -> tuple[int, Sample]:
    """A cold scan of a commit on top of the tree that adds a walked call
    and n callers of its function (10 to a file), checked out; returns
    (caller chains the scan reports for it, sample)."""
    files = {"mm/rewriter_walked.c": WALKED}
    per_file = 10
    for f in range((n + per_file - 1) // per_file):
        files[f"mm/rewriter_walk_callers_{f}.c"] = "\n".join(
            WALK_CALLER.format(f=f, k=k) for k in range(min(per_file, n - f * per_file)))
    sample = _scan_commit(repo, base, files, f"{n} synthetic callers", env, cache)
    site = next(s for s in json.loads(sample.stdout)["sites"] if s["function"] == "rewriter_walked")
    chains = [e for e in site["evidence"] if e["text"].startswith("caller chain ")]
    if site["basis"] != "mmap_write":
        raise SystemExit(f"bench: the synthetic walk did not cover every chain: {site['reasons']}")
    return len(chains), sample


def _scan_commit(repo: Path, base: str, files: dict[str, str], message: str, env: dict[str, str],
                 cache: Path) -> Sample:
    """A cold scan of the clone with a commit on base that adds files
    checked out (as a user scans their tree); base is checked out again
    afterwards."""
    rev = _commit_files(repo, base, files, message)
    check_out(repo, rev)
    try:
        return measure(rewriter("scan", "--tree", str(repo), "--format", "json"), _cold(env, cache))
    finally:
        check_out(repo, base)


def _commit_files(repo: Path, base: str, files: dict[str, str], message: str) -> str:
    """A commit on top of base with files added, made with plumbing in a
    private index (the clone's own index and files stay as they are)."""
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, GIT_INDEX_FILE=str(Path(tmp) / "index"), GIT_AUTHOR_NAME="bench",
                   GIT_AUTHOR_EMAIL="bench@example.invalid", GIT_COMMITTER_NAME="bench",
                   GIT_COMMITTER_EMAIL="bench@example.invalid")

        def git(*args: str, data: str | None = None) -> str:
            return subprocess.run(["git", "-C", str(repo), *args], input=data, env=env, check=True,
                                  capture_output=True, text=True).stdout.strip()

        git("read-tree", base)
        for path, text in files.items():
            blob = git("hash-object", "-w", "--stdin", data=text)
            git("update-index", "--add", "--cacheinfo", f"100644,{blob},{path}")
        tree = git("write-tree")
        return git("commit-tree", tree, "-p", base, "-m", message)


def _shape_functions() -> list[tuple[str, str]]:
    """The functions of the fixture tree with one call each, as (name, text)."""
    import re
    out = []
    for path in sorted((FIXTURE_SHAPES / "mm").glob("fixture_*.c")):
        text = path.read_text()
        for m in re.finditer(r"^(?:static )?[a-z_ ]+\*?\s*(fixture_\w+)\(.*?^}\n", text, re.S | re.M):
            if m.group(0).count(FUNCTION + "(") == 1:
                out.append((m.group(1), m.group(0)))
    return out


def describe_machine() -> str:
    uname = platform.uname()
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_kb = int(next(l for l in Path("/proc/meminfo").read_text().splitlines()
                          if l.startswith("MemTotal")).split()[1])
        mem = f"{mem_kb / 1024 / 1024:.0f} GB RAM"
    except (OSError, StopIteration, ValueError):
        mem = "RAM unknown"
    load = os.getloadavg()[0]
    git_version = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip()
    return (f"{uname.system} {uname.release} {uname.machine}, {model or 'CPU unknown'}, {os.cpu_count()} CPUs, "
            f"{mem}, load average {load:.2f} at the start; Python {platform.python_version()}, "
            f"{_spatch_version()}, {git_version}.")


def report(machine: str, rows: list[tuple[str, Sample]], growth: list[tuple[int, tuple[int, Sample]]],
           walks: list[tuple[int, tuple[int, Sample]]]) -> str:
    ref = rows[0][1]
    by_name = dict(rows)
    lines = [
        "# rewriter benchmark",
        "",
        f"Machine: {machine}",
        "",
        "Medians of the runs; peak RSS is the largest resident set of any one process of a run.",
        "",
        "| step | wall s | CPU s | peak RSS MB | wall / ref | CPU / ref | RSS / ref |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in rows:
        lines.append(f"| {name} | {s.wall:.1f} | {s.cpu:.1f} | {s.rss_mb:.0f} | {s.wall / ref.wall:.2f} "
                     f"| {s.cpu / ref.cpu:.2f} | {s.rss_mb / ref.rss_mb:.2f} |")
    lines += ["", "Targets:", ""]
    for name, figure, limit in TARGETS:
        ratio = getattr(by_name[name], figure) / getattr(ref, figure)
        lines.append(f"- {name}: {figure} {ratio:.2f}x the reference, target at most {limit}x: "
                     f"{'met' if ratio <= limit else 'NOT met'}")
    peak = max(s.rss_mb for name, s in rows if name.startswith("rewriter"))
    lines.append(f"- peak RSS of any rewriter run: {peak:.0f} MB, target at most {RSS_LIMIT_MB} MB: "
                 f"{'met' if peak <= RSS_LIMIT_MB else 'NOT met'}")
    lines += ["", "How the cost of a cold scan grows with synthetic calls added (one run each):", "",
              "| calls added | calls found | wall s | CPU s | wall ms per call | CPU ms per call |",
              "|---:|---:|---:|---:|---:|---:|"]
    for n, (sites, s) in growth:
        lines.append(f"| {n} | {sites} | {s.wall:.1f} | {s.cpu:.1f} | {1000 * s.wall / sites:.0f} "
                     f"| {1000 * s.cpu / sites:.0f} |")
    if walks:
        (_zero, (_none, cold)), *walked = walks
        lines += ["", "The caller walk: a cold scan with one more walked call whose function has N synthetic "
                      "callers, each holding the mmap_lock for write (one run each; \"above\" is beyond the "
                      f"cold scan of the tree made just before: {cold.wall:.1f} s wall, {cold.cpu:.1f} s CPU):",
                  "",
                  "| callers added | chains reported | wall s | CPU s | wall s above | CPU s above "
                  "| wall ms per caller above |",
                  "|---:|---:|---:|---:|---:|---:|---:|"]
        for n, (chains, s) in walked:
            lines.append(f"| {n} | {chains} | {s.wall:.1f} | {s.cpu:.1f} | {s.wall - cold.wall:.1f} "
                         f"| {s.cpu - cold.cpu:.1f} | {1000 * (s.wall - cold.wall) / n:.1f} |")
    return "\n".join(lines) + "\n"


def _spatch_version() -> str:
    out = subprocess.run(["spatch", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    return out.strip()


if __name__ == "__main__":
    raise SystemExit(main())
