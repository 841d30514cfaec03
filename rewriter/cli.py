"""Command line: wires the stages together, prints, and maps errors to exit codes."""

from __future__ import annotations

import argparse
import json
import signal
import sys

from rewriter import __version__
from rewriter.errors import EXIT_INCOMPLETE, EXIT_INTERRUPTED, EXIT_OK, RewriterError
from rewriter.runner import Runner
from rewriter.scan import FUNCTION, Scan, scan
from rewriter.tree import open_tree


def _progress_printer():
    if not sys.stderr.isatty():
        return None

    def show(step: str, done: int, total: int) -> None:
        end = "\n" if done == total else ""
        sys.stderr.write(f"\r{step}: {done}/{total} files{end}")
        sys.stderr.flush()

    return show


def _add_tree_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tree", default=".", help="kernel git repository (default: current directory)")
    p.add_argument("--rev", default="HEAD", help="revision to read (default: HEAD)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rewriter",
        description=f"Split {FUNCTION}() callers into read-only and may-write variants.")
    parser.add_argument("--version", action="version", version=f"rewriter {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("scan", help="find and classify every call")
    _add_tree_args(p)
    p.add_argument("--format", choices=("table", "json"), default=None,
                   help="output format (default: table on a terminal, json otherwise)")
    p.add_argument("-j", "--jobs", type=int, default=None, help="spatch processes in parallel")
    p.set_defaults(func=cmd_scan)
    return parser


def cmd_scan(args: argparse.Namespace) -> int:
    tree = open_tree(args.tree, args.rev)
    runner = Runner(progress=_progress_printer())
    if args.jobs:
        runner.jobs = args.jobs
    result = scan(tree, runner)
    fmt = args.format or ("table" if sys.stdout.isatty() else "json")
    if fmt == "json":
        json.dump(result.to_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_table(result)
    for err in result.errors:
        print(f"rewriter: {err.file}: {err.message}", file=sys.stderr)
    return EXIT_INCOMPLETE if result.errors else EXIT_OK


def print_table(result: Scan) -> None:
    out = sys.stdout
    for s in result.sites:
        v = s.verdict
        policy = f" {v.recheck}" if v.recheck else ""
        flag = " REVIEW" if v.review else ""
        out.write(f"{s.file}:{s.line}: {s.function}(): {v.verdict}{policy}{flag} -- {v.reasons[0]}\n")
    functions = {(s.file, s.function) for s in result.sites}
    files = {s.file for s in result.sites}
    ro = sum(1 for s in result.sites if s.verdict.verdict == "ro")
    rw = len(result.sites) - ro
    review = sum(1 for s in result.sites if s.verdict.review)
    out.write(f"{len(result.sites)} calls in {len(functions)} functions in {len(files)} files: "
              f"{ro} ro, {rw} rw ({review} to review); {len(result.mentions)} other mentions; "
              f"{len(result.errors)} errors\n")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except RewriterError as exc:
        print(f"rewriter: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("rewriter: interrupted; nothing was changed", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        return EXIT_OK
