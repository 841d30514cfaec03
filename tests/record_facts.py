"""Record what the spatch stages hand the Python analysis, for the unit
tests: tests/recorded/fixture.json from tests/fixtures/tree, and
tests/recorded/linux-6.12.json from the kernel tree (see tests/recorded.py
for what is in them).

    .venv/bin/python tests/record_facts.py [--kernel-tree PATH] [--only fixture|kernel]

(make record-facts).  Run it again after a change to the cocci rules, to
what they print, or to the fixture tree: the unit tests say when the
fixture recording no longer matches the fixture files.  The trees are only
read: the fixture tree is committed into a temporary repository, the
kernel tree is scanned at HEAD as 'rewriter scan' would.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS_DIR.parent))
sys.path.insert(1, str(TESTS_DIR))

# Every stage must run: a stored scan would skip them all.
os.environ["REWRITER_CACHE"] = "off"

from rewriter import callers, clex, recipe, rewrite, scan  # noqa: E402
from rewriter.runner import Runner  # noqa: E402
from rewriter.tree import open_tree  # noqa: E402

import recorded  # noqa: E402

FIXTURE_TREE = TESTS_DIR / "fixtures" / "tree"
DEFAULT_KERNEL = Path(os.environ.get("REWRITER_KERNEL_TREE") or Path.home() / ".cache/rewriter/linux-6.12")


def _narrowed(text: str, function: str, site_functions: set[str]) -> list[str]:
    """text as facts.cocci saw it, with the same-file callers of the
    functions with a call kept too (rewriter.carry reads them); every other
    body blanked, blank lines emptied."""
    keep = clex.functions_reaching(text, function)
    for fn in site_functions:
        keep |= clex.functions_reaching(text, fn)
    return [line if line.strip() else "" for line in clex.keep_functions(text, keep).split("\n")]


def record(tree_path: Path, name: str, depth: int = callers.DEPTH) -> dict:
    tree = open_tree(str(tree_path), "HEAD")
    runner = Runner()
    facts_of: dict[str, list[dict]] = {}
    paths_of: dict = {}
    walks: dict = {}
    shape_of: dict[str, list[dict]] = {}

    real_parse, real_ask, real_walk = scan.parse, scan._ask_paths, callers.Walker.write_locked

    def parse(path, records):
        facts_of[path] = [dict(r) for r in records]
        return real_parse(path, records)

    def ask(*args, **kwargs):
        answers = real_ask(*args, **kwargs)
        paths_of.update(answers)
        return answers

    def write_locked(self, items):
        answers = real_walk(self, items)
        walks.update(answers)
        return answers

    scan.parse, scan._ask_paths, callers.Walker.write_locked = parse, ask, write_locked
    try:
        result = scan.scan(tree, runner, recipe.find(None), depth=depth)
    finally:
        scan.parse, scan._ask_paths, callers.Walker.write_locked = real_parse, real_ask, real_walk
    if result.errors:
        raise SystemExit(f"record_facts: the scan of {tree_path} has errors: {result.errors[:3]}")

    by_file: dict[str, list] = {}
    for s in result.sites:
        by_file.setdefault(s.file, []).append(s)
    placed = {f: sites for f, sites in by_file.items() if any(s.verdict.verdict != "ro" for s in sites)}
    sources = {f: tree.read(f) for f in by_file}
    real_dir = runner.run_dir

    def run_dir(rule, files, marker, step="spatch"):
        results = real_dir(rule, files, marker, step=step)
        for res in results:
            shape_of[res.path] = [dict(r) for r in res.records]
        return results

    runner.run_dir = run_dir
    rewrite._shapes(runner, {f: sources[f] for f in placed}, placed, result.function)

    files = {}
    for path in sorted(by_file):
        text = sources[path].decode("utf-8", errors="surrogateescape")
        entry = {
            "sha256": hashlib.sha256(sources[path]).hexdigest(),
            "source": _narrowed(text, result.function, {s.function for s in by_file[path]}),
            "facts": facts_of[path],
            "paths": recorded.paths_to_json(paths_of[path]),
        }
        if path in shape_of:
            entry["shape"] = shape_of[path]
        files[path] = entry
    report = result.to_json()
    del report["tree"]
    return {
        "format": recorded.FORMAT,
        "about": f"spatch facts of {name}, recorded by tests/record_facts.py (make record-facts); do not edit",
        "spatch": runner.check_spatch(),
        "rev": result.rev,
        "function": result.function,
        "depth": depth,
        "files": files,
        "walks": [recorded.walk_to_json(key, answer) for key, answer in sorted(walks.items())],
        "report": report,
    }


def _fixture_repo(scratch: Path) -> Path:
    """The fixture tree committed as the tests commit it (conftest.make_git_repo)."""
    from conftest import make_git_repo
    return make_git_repo(FIXTURE_TREE, scratch / "linux")


def _dumps(value, indent: str = "") -> str:
    """JSON with one record, pair or source line per line: small to store,
    and a new recording's diff shows what changed."""
    flat = json.dumps(value, ensure_ascii=False)
    if not isinstance(value, (list, dict)) or len(flat) <= 160 or not value:
        return flat
    inner = indent + " "
    if isinstance(value, list):
        return "[\n" + ",\n".join(inner + _dumps(v, inner) for v in value) + "\n" + indent + "]"
    return ("{\n" + ",\n".join(f"{inner}{json.dumps(k)}: {_dumps(v, inner)}" for k, v in value.items())
            + "\n" + indent + "}")


def _write(name: str, data: dict) -> None:
    recorded.RECORDED_DIR.mkdir(exist_ok=True)
    target = recorded.RECORDED_DIR / f"{name}.json"
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(_dumps(data) + "\n", encoding="utf-8")
    tmp.replace(target)
    print(f"{target.relative_to(TESTS_DIR.parent)}: {len(data['report']['sites'])} calls in "
          f"{len(data['files'])} files, {target.stat().st_size // 1024} KiB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kernel-tree", type=Path, default=DEFAULT_KERNEL)
    parser.add_argument("--only", choices=("fixture", "kernel"))
    args = parser.parse_args()
    if args.only in (None, "fixture"):
        scratch = Path(tempfile.mkdtemp(prefix="rewriter-record-"))
        try:
            _write("fixture", record(_fixture_repo(scratch), "tests/fixtures/tree"))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    if args.only in (None, "kernel"):
        if not (args.kernel_tree / ".git").exists() and not (args.kernel_tree / "objects").is_dir():
            raise SystemExit(f"record_facts: {args.kernel_tree} is not a git tree; give --kernel-tree PATH "
                             f"(make kernel prepares it)")
        head = subprocess.run(["git", "-C", str(args.kernel_tree), "log", "-1", "--format=%s"],
                              capture_output=True, text=True, check=True).stdout.strip()
        _write("linux-6.12", record(args.kernel_tree, f"the kernel tree ({head})"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
