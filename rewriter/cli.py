"""Command line: wires the stages together, prints, and maps errors to exit codes."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import signal
import sys

from rewriter import __version__, diffs, rewrite
from rewriter import plan as plan_mod
from rewriter.errors import EXIT_INCOMPLETE, EXIT_INTERRUPTED, EXIT_OK, InputError, RewriterError
from rewriter.helpers import Names, check_names_free
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

    p = sub.add_parser("plan", help="write the verdicts as an editable TOML plan")
    _add_tree_args(p)
    p.add_argument("-o", "--output", default="-", help="plan file to write (default: standard output)")
    p.add_argument("-j", "--jobs", type=int, default=None, help="spatch processes in parallel")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("diff", help="show the whole conversion as a diff; changes nothing")
    _add_tree_args(p)
    _add_rewrite_args(p)
    p.add_argument("--site", metavar="FILE:FUNCTION", help="only the calls in this function")
    p.add_argument("--emit-cocci", metavar="DIR", help="also write the generated semantic patches to DIR")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto", help="colour the diff")
    p.set_defaults(func=cmd_diff)

    _add_check_parser(sub)
    return parser


def _add_rewrite_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plan", metavar="FILE", help="the plan to follow (default: the scan's verdicts)")
    p.add_argument("--names", default="readonly,maywrite",
                   help="A,B names the variants pte_offset_map_A_nolock / pte_offset_map_B_nolock "
                        "(default: readonly,maywrite; ro,rw is the other agreed choice)")
    p.add_argument("-j", "--jobs", type=int, default=None, help="spatch processes in parallel")


def _runner(args: argparse.Namespace) -> Runner:
    runner = Runner(progress=_progress_printer())
    if getattr(args, "jobs", None):
        if args.jobs < 1:
            raise InputError(f"--jobs {args.jobs}: give a number of processes from 1")
        runner.jobs = args.jobs
    return runner


def _scan_and_plan(args: argparse.Namespace):
    tree = open_tree(args.tree, args.rev)
    runner = _runner(args)
    names = Names.parse(args.names)
    result = scan(tree, runner)
    if result.errors:
        for err in result.errors:
            print(f"rewriter: {err.file}: {err.message}", file=sys.stderr)
        raise InputError(f"{len(result.errors)} file(s) could not be analysed; nothing converted "
                         f"(fix them, or scan an earlier --rev)")
    chosen = plan_mod.load(args.plan, result) if args.plan else plan_mod.from_scan(result)
    check_names_free(tree, names)
    return tree, runner, names, result, chosen


def cmd_plan(args: argparse.Namespace) -> int:
    tree = open_tree(args.tree, args.rev)
    runner = _runner(args)
    result = scan(tree, runner)
    for err in result.errors:
        print(f"rewriter: {err.file}: {err.message}", file=sys.stderr)
    text = plan_mod.dump(plan_mod.from_scan(result), result)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        write_atomically(args.output, text.encode())
    return EXIT_INCOMPLETE if result.errors else EXIT_OK


def cmd_diff(args: argparse.Namespace) -> int:
    tree, runner, names, result, chosen = _scan_and_plan(args)
    only = None
    if args.site:
        file, _, function = args.site.rpartition(":")
        only = {s.key for s in result.sites if s.file == file and s.function == function}
        if not only:
            raise InputError(f"--site {args.site}: no call of {result.function}() in that function; "
                             f"'rewriter scan' lists them as FILE:LINE: FUNCTION()")
    if args.emit_cocci:
        rules = rewrite.emit_rules(tree, runner, result, chosen, names)
        write_rules(args.emit_cocci, rules)
    changes = rewrite.conversion(tree, runner, result, chosen, names, only)
    patch = diffs.unified(changes)
    colour = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
    sys.stdout.write(diffs.render(patch, colour))
    return EXIT_OK


def write_rules(directory: str, rules: dict[str, str]) -> None:
    """One .cocci per converted file, runnable by hand with spatch."""
    out = Path(directory)
    if out.exists() and any(out.iterdir()):
        raise InputError(f"--emit-cocci {directory}: the directory is not empty; name a new or empty one")
    out.mkdir(parents=True, exist_ok=True)
    for path, rule in sorted(rules.items()):
        name = path.replace("/", "__") + ".cocci"
        (out / name).write_text(f"// spatch --sp-file {name} {path.rsplit('.', 1)[0] if path[-2:].isdigit() else path}\n" + rule)


def write_atomically(path: str, data: bytes) -> None:
    """Write to a temporary file beside path, then rename: never half a file."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.rewriter-tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"{path}: cannot write ({exc.strerror}); choose another place with -o") from None


def cmd_scan(args: argparse.Namespace) -> int:
    tree = open_tree(args.tree, args.rev)
    runner = _runner(args)
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


# --------------------------------------------------------------------------
# rewriter check
# --------------------------------------------------------------------------

def _add_check_parser(sub) -> None:
    p = sub.add_parser("check", help="check the patch series like a maintainer's CI: checkpatch, "
                                     "every patch builds, git send-email round trip")
    p.add_argument("--tree", default=".", help="kernel git repository (default: current directory)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--series", metavar="DIR",
                       help="directory of git format-patch files (default: outgoing)")
    which.add_argument("--branch", metavar="NAME", help="check the commits of this branch instead")
    p.add_argument("--base", metavar="REV",
                   help="the series' base (default: the cover letter's base-commit, or for --branch "
                        "its merge base with HEAD)")
    p.add_argument("--build", action="store_true",
                   help="build each commit's objects with Kbuild (x86_64, and arm/powerpc with cross compilers)")
    p.add_argument("--mail", action="store_true",
                   help="send the series with git send-email to a local SMTP server and git am it back")
    p.add_argument("--mbox", metavar="FILE", help="keep the mails that arrived here (default: in the temp directory)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("-j", "--jobs", type=int, default=None, help="make -j for the build (default: CPUs)")
    p.set_defaults(func=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    from rewriter import check

    if args.jobs is not None and args.jobs < 1:
        raise InputError(f"--jobs {args.jobs}: give a number of processes from 1")

    def say(msg: str) -> None:
        print(f"rewriter: check: {msg}", file=sys.stderr, flush=True)

    report = check.check(args.tree, args.series, args.branch, args.base, build=args.build, mail=args.mail,
                         progress=say, build_options={"jobs": args.jobs}, mbox=args.mbox)
    if args.json:
        sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
    else:
        sys.stdout.write(check.render_text(report))
    return EXIT_INCOMPLETE if report.failed() else EXIT_OK
