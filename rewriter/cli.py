"""Command line: wires the stages together, prints, and maps errors to exit codes."""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
from pathlib import Path
import shutil
import signal
import stat
import sys
import tempfile
import threading
import traceback
from contextlib import contextmanager

from rewriter import __version__, cache, callers, diffs, outputs, rewrite
from rewriter import plan as plan_mod
from rewriter.errors import (EXIT_INCOMPLETE, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, InputError,
                             RewriterError)
from rewriter import recipe as recipe_mod
from rewriter import helpers
from rewriter.helpers import check_names_free
from rewriter.runner import Background, Runner
from rewriter import scan as scan_mod
from rewriter.scan import Scan, scan
from rewriter.tree import open_tree


def _progress_printer():
    if not sys.stderr.isatty():
        return None

    def show(step: str, done: int, total: int, unit: str) -> None:
        end = "\n" if done == total else ""
        sys.stderr.write(f"\r{step}: {done}/{total} {unit}{end}")
        sys.stderr.flush()

    return show


def _add_tree_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tree", default=".", help="kernel git repository (default: current directory)")
    p.add_argument("--rev", default="HEAD", help="revision to read (default: HEAD)")
    p.add_argument("--recipe", default=None, metavar="NAME|PATH",
                   help=f"the API split to make: a recipe's name ('rewriter recipes' lists them) or the path "
                        f"of a recipe folder (default: {recipe_mod.DEFAULT})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rewriter",
        description="Split a kernel function's callers into read-only and may-write variants, by recipe "
                    f"(default: {recipe_mod.DEFAULT}; see 'rewriter recipes').")
    parser.add_argument("--version", action="version", version=f"rewriter {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("scan", help="find and classify every call")
    _add_tree_args(p)
    p.add_argument("--format", choices=("table", "json"), default=None,
                   help="output format (default: table on a terminal, json otherwise)")
    _add_run_args(p)
    p.set_defaults(func=cmd_scan)

    p = sub.add_parser("plan", help="write the verdicts as an editable TOML plan")
    _add_tree_args(p)
    p.add_argument("-o", "--output", default="-", help="plan file to write (default: standard output)")
    _add_run_args(p)
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("diff", help="show the whole conversion as a diff; changes nothing")
    _add_tree_args(p)
    _add_rewrite_args(p)
    p.add_argument("--site", metavar="FILE:FUNCTION", help="only the calls in this function")
    p.add_argument("--emit-cocci", metavar="DIR", help="also write the generated semantic patches to DIR")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto", help="colour the diff")
    p.set_defaults(func=cmd_diff)

    _add_series_parser(sub)
    _add_check_parser(sub)

    p = sub.add_parser("recipes", help="list the recipes: the API splits rewriter can make")
    p.set_defaults(func=cmd_recipes)
    return parser


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-j", "--jobs", type=int, default=None, help="spatch processes in parallel")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="stop spatch on a file after this long and report the file (default: 120)")
    p.add_argument("--caller-depth", type=int, default=callers.DEPTH, metavar="N",
                   help="how many callers up the walk for the mmap_lock held for write goes "
                        f"(default: {callers.DEPTH}); a chain longer than that counts as not holding it")


def _add_rewrite_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plan", metavar="FILE", help="the plan to follow (default: the scan's verdicts)")
    p.add_argument("--names", default=None, metavar="A,B",
                   help="the words that name the read-only and the may-write variant in the recipe's "
                        "pattern (pte_offset_map_A_nolock / pte_offset_map_B_nolock by default: "
                        "readonly,maywrite; ro,rw is the other agreed choice)")
    _add_run_args(p)


def _recipe(args: argparse.Namespace):
    """--recipe; without it, the recipe a --plan was made with, else the
    default.  A --plan made with another recipe than --recipe is refused
    before any work."""
    recorded = plan_mod.recorded_recipe(args.plan) if getattr(args, "plan", None) else None
    if args.recipe is None and recorded is not None:
        return recipe_mod.find(recorded)
    chosen = recipe_mod.find(args.recipe)
    if recorded is not None and recorded != chosen.name:
        raise InputError(f"{args.plan}: the plan was made with the recipe {recorded!r}, not {chosen.name!r}; "
                         f"pass --recipe {recorded}, or write a plan with this one")
    return chosen


def _caller_depth(args: argparse.Namespace) -> int:
    depth = getattr(args, "caller_depth", callers.DEPTH)
    if depth < 0:
        raise InputError(f"--caller-depth {depth}: give a number of callers from 0")
    return depth


def _runner(args: argparse.Namespace) -> Runner:
    runner = Runner(progress=_progress_printer())
    if getattr(args, "jobs", None) is not None:
        if args.jobs < 1:
            raise InputError(f"--jobs {args.jobs}: give a number of processes from 1")
        runner.jobs = args.jobs
    if getattr(args, "timeout", None) is not None:
        if not args.timeout > 0:
            raise InputError(f"--timeout {args.timeout:g}: give a number of seconds above 0")
        runner.timeout = args.timeout
    directory = cache.default_dir()
    if directory is not None:
        runner.cache = cache.SpatchCache(directory, runner.check_spatch())
    return runner


def _scan_and_plan(args: argparse.Namespace, refuse_review: bool = True, helpers_beside: bool = False):
    """The scan and the plan to follow.  A call marked for review that the
    plan does not settle stops a series (refuse_review); a diff leaves it
    as it is and says so in a note.  With helpers_beside, the last value is
    the introduction and removal of the helpers (helpers.beside), started
    before the scan: they need nothing of it."""
    tree = open_tree(args.tree, args.rev)
    runner = _runner(args)
    recipe = _recipe(args)
    names = recipe.names(args.names)
    # One pass of git grep over the tree for the old name and the new ones.
    scan_mod.grep(tree, runner, (recipe.function, names.readonly, names.maywrite))
    # Quiet: its steps would share the terminal's progress line with the scan's.
    beside = helpers.beside(tree, runner.quiet(), names, recipe) if helpers_beside else None
    try:
        return (*_scanned_and_planned(args, refuse_review, tree, runner, recipe, names), beside)
    except BaseException:
        if beside is not None:
            beside.join()
        raise


def _scanned_and_planned(args: argparse.Namespace, refuse_review: bool, tree, runner: Runner, recipe, names):
    result = scan(tree, runner, recipe, depth=_caller_depth(args))
    _refuse_errors(result, "nothing converted")
    chosen = plan_mod.load(args.plan, result) if args.plan else plan_mod.from_scan(result)
    if chosen.made_at and chosen.made_at != result.rev:
        _notes.append(f"{args.plan} was made at {chosen.made_at[:12]}; the tree is at {result.rev[:12]}, where "
                      f"its {len(chosen.entries)} calls are the same, so it was followed as it is")
    open_review = plan_mod.unsettled(chosen, result)
    if open_review and not refuse_review:
        _notes.append(f"{len(open_review)} call(s) need review and are left as they are: "
                      + ", ".join(f"{s.file}:{s.line} {s.function}()" for s in open_review)
                      + "; settle them in a plan (decision and reason) to convert them")
    elif open_review:
        s = open_review[0]
        more = f" ({len(open_review) - 1} more call(s) need review too)" if len(open_review) > 1 else ""
        raise InputError(f"{s.file}:{s.line}: {s.key} needs review: {s.verdict.question or s.verdict.reasons[0]}; "
                         f"settle it in a plan ('rewriter plan -o plan.toml', set decision and reason, "
                         f"then --plan plan.toml){more}")
    keep = plan_mod.kept(chosen) | {s.key for s in open_review}
    if keep:
        result = dataclasses.replace(result, sites=tuple(s for s in result.sites if s.key not in keep),
                                     kept=tuple(s for s in result.sites if s.key in keep))
    check_names_free(tree, names)
    return tree, runner, names, result, chosen


def _refuse_errors(result: Scan, what: str) -> None:
    """A plan or a conversion must cover every call: refuse a scan with errors,
    in one line that names the first."""
    if not result.errors:
        return
    first = result.errors[0]
    more = (f" (and {len(result.errors) - 1} more; 'rewriter scan' lists them all)"
            if len(result.errors) > 1 else "")
    raise InputError(f"{first.file}: {first.message}{more}; {what}: fix the file, or use an earlier --rev")


def cmd_plan(args: argparse.Namespace) -> int:
    if args.output != "-":
        _check_output_file(args.output, "-o")
    tree = open_tree(args.tree, args.rev)
    runner = _runner(args)
    result = scan(tree, runner, recipe_mod.find(args.recipe), depth=_caller_depth(args))
    _refuse_errors(result, "no plan written")
    text = plan_mod.dump(plan_mod.from_scan(result), result)
    if args.output == "-":
        write_stdout(text)
    else:
        write_atomically(args.output, text.encode(), "-o")
    return EXIT_OK


def cmd_diff(args: argparse.Namespace) -> int:
    if args.emit_cocci:
        _check_rules_dir(args.emit_cocci)
    tree, runner, names, result, chosen, beside = _scan_and_plan(args, refuse_review=False,
                                                                 helpers_beside=not args.site)
    try:
        only = None
        if args.site:
            file, _, function = args.site.rpartition(":")
            only = {s.key for s in result.sites if s.file == file and s.function == function}
            if not only:
                raise InputError(f"--site {args.site}: no call of {result.function}() in that function; "
                                 f"'rewriter scan' lists them as FILE:LINE: FUNCTION()")
        rewrite.check_editable(tree, rewrite.edited_files(result, only))
        if args.emit_cocci:
            rules = rewrite.emit_rules(tree, runner, result, chosen, names)
            write_rules(args.emit_cocci, rules)
        changes = rewrite.conversion(tree, runner, result, chosen, names, only, beside=beside)
    finally:
        if beside is not None:
            beside.join()
    patch = diffs.unified(changes)
    colour = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
    write_stdout(diffs.render(patch, colour))
    return EXIT_OK


def _check_rules_dir(directory: str) -> None:
    """Refuse, before any work, a --emit-cocci that is not a new or empty directory."""
    out = Path(directory)
    if not directory:
        raise InputError("--emit-cocci '': name a new or empty directory")
    try:
        if out.is_dir():
            if any(out.iterdir()):
                raise InputError(f"--emit-cocci {directory}: the directory is not empty; name a new or empty one")
        elif out.exists() or out.is_symlink():
            raise InputError(f"--emit-cocci {directory}: not a directory; name a new or empty one")
    except OSError as exc:
        raise InputError(f"--emit-cocci {directory}: cannot use it ({exc.strerror}); name a new or empty one") from None


def write_rules(directory: str, rules: dict[str, str]) -> None:
    """One .cocci per converted file, runnable by hand with spatch.

    The files are written to a new directory beside DIR, which is then
    renamed to DIR: a failure (no space, no permission) leaves nothing.
    """
    _check_rules_dir(directory)
    out = Path(directory).absolute()
    with outputs.parents_made(directory, f"--emit-cocci {directory}: cannot write ({{reason}}); "
                                         f"name another directory"):
        stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".rewriter-tmp", dir=out.parent))
        try:
            os.chmod(stage, 0o777 & ~_umask())
            for path, rule in sorted(rules.items()):
                name = path.replace("/", "__") + ".cocci"
                (stage / name).write_text(f"// spatch --sp-file {name} {path.rsplit('.', 1)[0] if path[-2:].isdigit() else path}\n" + rule)
            os.replace(stage, out)  # an empty DIR is replaced
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise


def _check_output_file(path: str, option: str) -> None:
    """Refuse, before any work, an output name that cannot be a file."""
    if not path:
        raise InputError(f"{option} '': give the name of the file to write")
    if Path(path).is_dir():
        raise InputError(f"{option} {path}: is a directory; give the name of the file to write")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomically(path: str, data: bytes, option: str = "-o") -> None:
    """Write to a new file beside path, then rename it to path: never half a
    file, and nothing left behind when the write fails or is interrupted.

    A path that exists and is not a regular file (/dev/stdout, a FIFO,
    /dev/full) is written directly: renaming over it would replace it.  A
    symbolic link is followed, so the file it points to is replaced.
    """
    _check_output_file(path, option)
    target = Path(path)
    tmp = None
    try:
        if target.exists() and not target.is_file():
            with open(target, "wb") as f:
                f.write(data)
            return
        target = target.resolve()
        mode = stat.S_IMODE(target.stat().st_mode) if target.exists() else 0o666 & ~_umask()
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".rewriter-tmp", dir=target.parent)
        tmp = Path(name)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
        tmp = None
    except OSError as exc:
        raise InputError(f"{path}: cannot write ({exc.strerror or exc}); choose another place with {option}") from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def write_stdout(text: str) -> None:
    """Print a command's output; a failed write (a full disk) is one line, exit 3."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        _drop_stdout()
        raise InputError(f"cannot write the output ({exc.strerror or exc}); "
                         f"redirect it to a place with room, or use -o where there is one") from None


def _drop_stdout() -> None:
    """Point standard output at /dev/null, so that what is still buffered
    cannot fail again when Python exits."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, io.UnsupportedOperation):
        pass


def cmd_recipes(args: argparse.Namespace) -> int:
    """One line a recipe: its name, the function it splits, and its summary."""
    found = [recipe_mod.load(folder) for folder in recipe_mod.available()]
    width = max(len(r.name) for r in found)
    write_stdout("".join(f"{r.name:<{width}}  {r.function}() -> {r.default_names.readonly}(), "
                         f"{r.default_names.maywrite}()\n{'':<{width}}  {r.summary}\n" for r in found))
    return EXIT_OK


def cmd_scan(args: argparse.Namespace) -> int:
    tree = open_tree(args.tree, args.rev)
    runner = _runner(args)
    result = scan(tree, runner, recipe_mod.find(args.recipe), depth=_caller_depth(args))
    fmt = args.format or ("table" if sys.stdout.isatty() else "json")
    if fmt == "json":
        write_stdout(json.dumps(result.to_json(), indent=2) + "\n")
    else:
        table = io.StringIO()
        print_table(result, table)
        write_stdout(table.getvalue())
    for err in result.errors:
        print(f"rewriter: {err.file}: {err.message}", file=sys.stderr)
    return EXIT_INCOMPLETE if result.errors else EXIT_OK


def print_table(result: Scan, out=None) -> None:
    out = out or sys.stdout
    for s in result.sites:
        v = s.verdict
        policy = f" {v.recheck}" if v.recheck else ""
        flag = " REVIEW" if v.review else ""
        out.write(f"{s.file}:{s.line}: {s.function}(): {v.verdict}{policy}{flag} -- {v.reasons[0]}\n")
        if v.review and v.question:
            out.write(f"    review: {v.question}\n")
    functions = {(s.file, s.function) for s in result.sites}
    files = {s.file for s in result.sites}
    ro = sum(1 for s in result.sites if s.verdict.verdict == "ro")
    rw = len(result.sites) - ro
    review = sum(1 for s in result.sites if s.verdict.review)
    out.write(f"{len(result.sites)} calls in {len(functions)} functions in {len(files)} files: "
              f"{ro} ro, {rw} rw ({review} to review); {len(result.mentions)} other mentions; "
              f"{len(result.errors)} errors\n")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _terminate(signum, frame):
    raise KeyboardInterrupt


# One-line notes for the user (rewriter: note: ...), printed on standard
# error when the command has succeeded; a refusal is its one line alone.
_notes: list[str] = []

# The user's temporary directory, for what a command leaves there on
# purpose (check's mbox); everything else goes into the run's own.
_user_tmp: str | None = None


@contextmanager
def _run_scratch():
    """One new directory in TMPDIR for everything temporary of this run,
    the tool's and its children's (TMPDIR points there too), removed at
    the end with interrupts held.  The scratch directories inside are
    removed as soon as they are done with; but an interrupt that lands
    while one of them is being removed stops that, and would leave the
    rest of it behind.

    An interrupt can land between any two steps of Python code, so the
    directory is made with interrupts caught (one that came meanwhile is
    raised once the block that removes the directory has begun), and its
    removal is done again when an interrupt stops it before interrupts
    are held for it."""
    global _user_tmp
    outer = tempfile.gettempdir()
    caught: list[int] = []
    held = _catch_interrupts(caught)  # an interrupt before this: nothing is made yet
    try:
        root = tempfile.mkdtemp(prefix="rewriter-", dir=outer)
    except OSError as exc:
        _restore_handlers(held)
        raise InputError(f"cannot make a scratch directory in {outer} ({exc.strerror or exc}); "
                         f"set TMPDIR to a directory with room that you may write") from None
    saved = tempfile.tempdir, os.environ.get("TMPDIR"), _user_tmp
    tempfile.tempdir, os.environ["TMPDIR"], _user_tmp = root, root, outer
    try:
        _restore_handlers(held)  # from here on an interrupt is raised in this try
        if caught:
            raise KeyboardInterrupt
        yield
    finally:
        while True:
            try:
                with _interrupts_held():
                    # A thread still at work writes into root: it ends first.
                    Background.join_all()
                    tempfile.tempdir, tmpdir, _user_tmp = saved
                    if tmpdir is None:
                        os.environ.pop("TMPDIR", None)
                    else:
                        os.environ["TMPDIR"] = tmpdir
                    shutil.rmtree(root, ignore_errors=True)
                break
            except KeyboardInterrupt:  # it came before the handlers were in place: once more, held
                continue


def _catch_interrupts(caught: list[int]) -> dict:
    """Note SIGINT and SIGTERM in caught instead of acting on them, until
    _restore_handlers() with what this returns."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, lambda signum, _frame: caught.append(signum))
            for sig in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(sig) is not signal.SIG_IGN}


def _restore_handlers(old: dict) -> None:
    for sig, handler in old.items():
        signal.signal(sig, handler)


@contextmanager
def _interrupts_held():
    """SIGINT and SIGTERM wait until the block is done, and are then
    dropped: what the block finishes was going to end the run anyway."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {sig: signal.signal(sig, lambda _signum, _frame: None) for sig in (signal.SIGINT, signal.SIGTERM)
            if signal.getsignal(sig) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for sig, handler in held.items():
            signal.signal(sig, handler)


# The options that name a file or a directory (their dest).
PATH_OPTIONS = ("tree", "plan", "output", "output_directory", "emit_cocci", "series", "mbox")


def resolve_paths(args: argparse.Namespace) -> None:
    """Make every path option absolute, against the directory the command
    was run in: git and the other tools rewriter runs work in directories
    of their own (a scratch clone, the run's temporary directory), where a
    relative path names something else.  What the user typed is kept in
    args.given, for the lines that name an output as the user did."""
    if getattr(args, "command", None) == "check" and args.series is None and args.branch is None:
        args.series = "outgoing"
    args.given = {}
    here = None
    for dest in PATH_OPTIONS:
        value = getattr(args, dest, None)
        if not value or os.path.isabs(value) or (dest == "output" and value == "-"):
            continue
        if here is None:
            try:
                here = os.getcwd()
            except OSError as exc:
                raise InputError(f"{value}: the current directory is gone ({exc.strerror or exc}); "
                                 f"run rewriter from a directory that exists, or give absolute paths") from None
        args.given[dest] = value
        setattr(args, dest, os.path.abspath(os.path.join(here, value)))


def main(argv: list[str] | None = None) -> int:
    # SIGTERM cleans up like Ctrl-C: scratch directories and half-written
    # outputs are removed on the way out.
    old_term = signal.signal(signal.SIGTERM, _terminate)
    _notes.clear()
    try:
        args = build_parser().parse_args(argv)
        resolve_paths(args)
        with _run_scratch():
            code = args.func(args)
        if code == EXIT_OK:
            for note in _notes:
                print(f"rewriter: note: {_one_line(note)}", file=sys.stderr)
        return code
    except RewriterError as exc:
        print(f"rewriter: {_one_line(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("rewriter: interrupted; nothing was changed", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        return EXIT_OK
    except Exception as exc:  # a bug: one line, the traceback only on request
        if os.environ.get("REWRITER_DEBUG", "") not in ("", "0"):
            traceback.print_exc()
        detail = _one_line(f"{type(exc).__name__}: {exc}")[:500]
        print(f"rewriter: internal error: {detail}; this is a bug in rewriter: please report it with the "
              f"command line (REWRITER_DEBUG=1 shows the traceback)", file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        signal.signal(signal.SIGTERM, old_term)


# --------------------------------------------------------------------------
# rewriter series
# --------------------------------------------------------------------------

def _add_series_parser(sub) -> None:
    p = sub.add_parser("series", help="commit the conversion as a series on a new branch and write "
                                      "the RFC patch series for git send-email")
    _add_tree_args(p)
    _add_rewrite_args(p)
    p.add_argument("--branch", metavar="NAME",
                   help="the branch to create (default: the recipe's, from --names and -v; "
                        "rewriter/pte-map-A-B-vN for pte_offset_map_nolock)")
    p.add_argument("-v", "--reroll-count", dest="reroll_count", type=int, default=1, metavar="N",
                   help="the version of the series (default: 1); from 2, 'Changes in vN' are written "
                        "from the recorded version N-1")
    p.add_argument("--subject-prefix", default="RFC PATCH", metavar="PREFIX",
                   help="the prefix in the brackets of the subjects (default: 'RFC PATCH')")
    p.add_argument("-o", "--output-directory", dest="output_directory", default="outgoing", metavar="DIR",
                   help="where the patch files go (default: outgoing); it must be new or empty")
    p.add_argument("--to", action="append", default=[], metavar="ADDR",
                   help="one more To: address for every patch (may be repeated)")
    p.add_argument("--cc", action="append", default=[], metavar="ADDR",
                   help="one more Cc: address for every patch (may be repeated)")
    p.add_argument("--force", action="store_true",
                   help="replace an existing branch, version record and output directory")
    p.add_argument("--author", metavar="'NAME <EMAIL>'",
                   help="author and Signed-off-by (default: the repository's git identity)")
    p.add_argument("--testing", metavar="REPORT.json",
                   help="fill the cover letter's Testing from this 'rewriter check --json' report")
    p.add_argument("--b4", action="store_true",
                   help="make the branch in the layout of 'b4 prep': the cover letter as its first "
                        "commit, with b4's tracking data, for 'b4 send'")
    p.set_defaults(func=cmd_series)


def cmd_series(args: argparse.Namespace) -> int:
    from rewriter import series

    opts = series.Options(out_dir=args.output_directory, version=args.reroll_count, branch=args.branch,
                          subject_prefix=args.subject_prefix, to=tuple(args.to), cc=tuple(args.cc),
                          force=args.force, author=args.author, testing=args.testing, b4=args.b4,
                          recipe=_recipe(args))
    # The refusals (existing branch, output directory, addresses, no
    # previous version) come before the scan.
    names = opts.recipe.names(args.names)
    opts = dataclasses.replace(opts, names_option=opts.recipe.names_option(names))
    ready = series.prepare(open_tree(args.tree, args.rev), names, opts)
    tree, runner, names, result, chosen, beside = _scan_and_plan(args, helpers_beside=True)
    try:
        rewrite.check_editable(tree, rewrite.edited_files(result))
        if args.plan:
            try:
                plan_text = Path(args.plan).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise InputError(f"{args.plan}: cannot read the plan again ({exc})") from None
        else:
            plan_text = plan_mod.dump(chosen, result)
        say = (lambda msg: print(f"rewriter: {msg}", file=sys.stderr)) if sys.stderr.isatty() else None
        with ready.git.quarantine():  # no object reaches the repository before the end
            res = series.write(tree, runner, result, chosen, names, plan_text, ready, progress=say,
                               beside=beside)
    finally:
        beside.join()
    shown = args.given.get("output_directory", res.out_dir)  # as the user named it
    write_stdout(f"{len(res.files) - 1} patches and a cover letter in {shown}/; "
                 f"branch {res.branch} at {res.tip[:12]}; version recorded in {res.record_ref}\n"
                 + "".join(f"  {os.path.join(shown, Path(name).name)}\n" for name in res.files))
    return EXIT_OK


# --------------------------------------------------------------------------
# rewriter check
# --------------------------------------------------------------------------

def _add_check_parser(sub) -> None:
    p = sub.add_parser("check", help="check the patch series like a maintainer's CI: checkpatch, "
                                     "every patch builds, git send-email round trip")
    p.add_argument("--tree", default=".", help="kernel git repository (default: current directory)")
    p.add_argument("--recipe", default=None, metavar="NAME|PATH",
                   help=f"the recipe the series was made with (default: {recipe_mod.DEFAULT})")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--series", metavar="DIR",
                       help="directory of git format-patch files (default: outgoing)")
    which.add_argument("--branch", metavar="NAME", help="check the commits of this branch instead")
    p.add_argument("--base", metavar="REV",
                   help="the series' base (default: the cover letter's base-commit, or for --branch "
                        "its merge base with HEAD)")
    p.add_argument("--build", action="store_true",
                   help="build each commit's objects with Kbuild (x86_64, and arm/powerpc with cross compilers)")
    p.add_argument("--boot", action="store_true",
                   help="boot the base's and the series' x86_64 kernels in qemu with lockdep, force every "
                        "pmd_same() failure path with a test build, run a workload that reaches every "
                        "converted function, and compare")
    p.add_argument("--boot-every", type=int, default=None, metavar="N",
                   help="with --boot: make every Nth evaluation of each recheck fail (default 3)")
    p.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto",
                   help="with --boot: qemu accelerator (default: KVM when /dev/kvm works, else TCG)")
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
    if args.mbox is not None:
        _check_output_file(args.mbox, "--mbox")
    if args.boot_every is not None and args.boot_every < 2:
        raise InputError(f"--boot-every {args.boot_every}: give a number from 2 (1 would fail every retry too)")
    recipe = recipe_mod.find(args.recipe)
    if args.boot and not recipe.boot:
        raise InputError(f"--boot: the recipe {recipe.name} has no boot check (the guest's workload and hooks "
                         f"are written for page tables); run check without --boot")
    if args.boot:
        from rewriter import boot as kboot

        kboot.require_tools()  # before any work: a missing tool is one line, exit 4

    def say(msg: str) -> None:
        print(f"rewriter: check: {msg}", file=sys.stderr, flush=True)

    # Progress on a terminal only, as for series: elsewhere standard error
    # holds the one line of a refusal, if any.
    function = recipe.function
    report = check.check(args.tree, args.series, args.branch, args.base, build=args.build, mail=args.mail,
                         progress=say if sys.stderr.isatty() else None,
                         build_options={"jobs": args.jobs, "function": function},
                         mbox=args.mbox, mbox_dir=_user_tmp, boot=args.boot,
                         boot_options={"jobs": args.jobs, "accel": args.accel, "function": function,
                                       **({"every": args.boot_every} if args.boot_every else {})})
    if args.json:
        sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
    else:
        sys.stdout.write(check.render_text(report))
    return EXIT_INCOMPLETE if report.failed() else EXIT_OK
