"""The benchmark behind `make bench`.

Measures, on the real kernel tree and in one run:
  * the reference: one plain `spatch --use-gitgrep -j 2` pass of the find
    rule over the whole tree;
  * `rewriter scan`, `rewriter diff`, `rewriter series` with empty caches,
    and `rewriter series` again (warm);
medians of --runs runs each (wall and CPU seconds, peak RSS), each with its
ratio to the reference; then how the cost per call grows with N synthetic
calls added to a copy of the tree.  Prints a table and writes it, with a
line describing the machine, to bench/RESULTS.md.

Every repository it writes to is a throw-away clone; the tree named by
--tree is only read.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
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


@dataclass(frozen=True)
class Sample:
    wall: float
    cpu: float
    rss_mb: float


def measure(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> Sample:
    """Run cmd once; wall time, CPU time of it and its children, peak RSS."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"bench: {' '.join(map(str, cmd))} failed ({proc.returncode}): {proc.stderr.strip()[-400:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # ru_maxrss of RUSAGE_CHILDREN is the largest child so far (KiB on Linux).
    return Sample(wall, cpu, after.ru_maxrss / 1024)


def median(samples: list[Sample]) -> Sample:
    return Sample(statistics.median(s.wall for s in samples), statistics.median(s.cpu for s in samples),
                  max(s.rss_mb for s in samples))


def clone(tree: Path, dest: Path) -> Path:
    subprocess.run(["git", "clone", "-q", "--shared", str(tree), str(dest)], check=True)
    return dest


def rewriter(*args: str) -> list[str]:
    return [sys.executable, "-m", "rewriter", *args]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", required=True, help="the real kernel git tree")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--growth", default="10,100,1000", help="synthetic call counts")
    ap.add_argument("--out", default=str(ROOT / "bench" / "RESULTS.md"))
    args = ap.parse_args()
    tree = Path(args.tree)
    work = Path(tempfile.mkdtemp(prefix="rewriter-bench-"))
    cache = work / "cache"
    env = dict(os.environ, PYTHONPATH=str(ROOT), REWRITER_CACHE=str(cache))
    rows: list[tuple[str, Sample]] = []
    try:
        repo = clone(tree, work / "linux")
        # The reference runs the tool's own find rule (cocci/facts.cocci.j2).
        sys.path.insert(0, str(ROOT))
        from rewriter import cocci
        from rewriter.scan import FACT, FUNCTION
        find_rule = work / "find.cocci"
        find_rule.write_text(cocci.render("facts.cocci.j2", name=FUNCTION, marker=FACT))
        spatch_cmd = ["spatch", "--very-quiet", "--no-includes", "--use-gitgrep", "-j", "2",
                      "--sp-file", str(find_rule), "--dir", str(repo)]
        rows.append(("reference: spatch --use-gitgrep -j 2", median(
            [measure(spatch_cmd, env) for _ in range(args.runs)])))
        rows.append(("rewriter scan", median([measure(rewriter("scan", "--tree", str(repo), "--format", "json"),
                                                      _cold(env, cache)) for _ in range(args.runs)])))
        rows.append(("rewriter diff", median([measure(rewriter("diff", "--tree", str(repo)), _cold(env, cache))
                                              for _ in range(args.runs)])))
        series = rewriter("series", "--tree", str(repo), "-o", str(work / "out"), "--force")
        rows.append(("rewriter series (cold)", median([measure(series, _cold(env, cache))
                                                       for _ in range(args.runs)])))
        measure(series, env)  # fill the cache
        rows.append(("rewriter series (warm)", median([measure(series, env) for _ in range(args.runs)])))
        growth = [(n, _growth(tree, work, n, env, cache)) for n in map(int, args.growth.split(","))]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = report(rows, growth)
    Path(args.out).write_text(text)
    sys.stdout.write(text)
    return 0


def _cold(env: dict[str, str], cache: Path) -> dict[str, str]:
    shutil.rmtree(cache, ignore_errors=True)
    return env


def _growth(tree: Path, work: Path, n: int, env: dict[str, str], cache: Path) -> tuple[int, Sample]:
    """Scan a clone with n synthetic calls added; returns (sites, sample)."""
    repo = clone(tree, work / f"grow-{n}")
    shapes = _shape_functions()
    made = 0
    per_file = 10
    for f in range((n + per_file - 1) // per_file):
        body = []
        for k in range(min(per_file, n - made)):
            name, text = shapes[(made + k) % len(shapes)]
            body.append(text.replace(name, f"{name}_syn{f}_{k}", 1))
        made += len(body)
        (repo / "mm" / f"rewriter_synthetic_{f}.c").write_text("\n".join(body))
    subprocess.run(["git", "add", "-A", "mm"], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qm",
                    f"{n} synthetic calls"], cwd=repo, check=True)
    sample = measure(rewriter("scan", "--tree", str(repo), "--format", "json"), _cold(env, cache))
    return n + 12, sample


def _shape_functions() -> list[tuple[str, str]]:
    """The single-call functions of the fixture tree, as (name, text)."""
    import re
    out = []
    for path in sorted((FIXTURE_SHAPES / "mm").glob("fixture_*.c")):
        text = path.read_text()
        for m in re.finditer(r"^(?:static )?[a-z_ ]+\*?\s*(fixture_\w+)\(.*?^}\n", text, re.S | re.M):
            if m.group(0).count("pte_offset_map_nolock(") == 1:
                out.append((m.group(1), m.group(0)))
    return out


def report(rows: list[tuple[str, Sample]], growth: list[tuple[int, tuple[int, Sample]]]) -> str:
    ref = rows[0][1]
    uname = platform.uname()
    lines = [
        "# rewriter benchmark",
        "",
        f"Machine: {uname.system} {uname.release} {uname.machine}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, {_spatch_version()}.",
        "",
        "| step | wall s | CPU s | peak RSS MB | wall / reference |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, s in rows:
        lines.append(f"| {name} | {s.wall:.1f} | {s.cpu:.1f} | {s.rss_mb:.0f} | {s.wall / ref.wall:.2f} |")
    lines += ["", "How the scan's cost grows with synthetic calls added (cold cache):", "",
              "| calls | wall s | wall ms per call |", "|---:|---:|---:|"]
    for _n, (sites, s) in growth:
        lines.append(f"| {sites} | {s.wall:.1f} | {1000 * s.wall / sites:.0f} |")
    return "\n".join(lines) + "\n"


def _spatch_version() -> str:
    out = subprocess.run(["spatch", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    return out.strip()


if __name__ == "__main__":
    raise SystemExit(main())
