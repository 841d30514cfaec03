"""Stage 6: the series.  Commit the conversion as a bisectable series on a
new branch, made in the object store only, and write it out as an RFC
patch series that `git send-email DIR/*.patch` sends as it is.

Order of the commits:
  1. both new helpers are introduced (rewriter.helpers.introduce);
  2. one commit per converted function, read-only ones first, then the
     may-write ones, each group by file and line.  A file's content at
     each commit is the original with the edits of the functions converted
     so far, taken from its whole conversion (rewriter.rewrite.partial);
     should an edit fall outside those functions' bodies, it is
     rewriter.rewrite.convert(only=<those calls>) from the original tree;
  3. the old helper is removed (rewriter.helpers.remove).
Every commit builds: the helpers exist before any caller uses them, and
the old one goes when nothing calls it.

Nothing outside the new branch, the version record (rewriter.versions)
and the output directory changes, and those three appear only at the very
end, once everything else is ready; so do the objects they hold, which are
written to a quarantine until then (rewriter.gitstore).
"""

from __future__ import annotations

import difflib
import os
import pickle
import re
import shutil
import signal
import tempfile
import threading
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


from rewriter import cache, diffs, helpers, mail, maintainers, outputs, prose, rewrite, versions
from rewriter.clex import function_spans, render as render_tokens
from rewriter.errors import InputError, RewriterError
from rewriter.gitstore import Git, Ident, RefMoved, Trees, When, parse_ident
from rewriter.helpers import Names
from rewriter.plan import Entry, Plan
from rewriter.runner import Runner
from rewriter.scan import Scan, Site
from rewriter.tree import Tree

DEFAULT_SUBJECT_PREFIX = "RFC PATCH"
MAX_SUBJECT = 75
HISTORY = 50  # commits of a file's history that its subject prefix is learned from


# --------------------------------------------------------------------------
# options and results
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Options:
    out_dir: str = "outgoing"
    version: int = 1
    branch: str | None = None
    subject_prefix: str = DEFAULT_SUBJECT_PREFIX
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    force: bool = False
    author: str | None = None


@dataclass
class Patch:
    """One commit of the series."""

    kind: str  # "introduce", "convert" or "remove"
    files: dict[str, bytes]  # the new contents of the files it changes
    file: str | None = None  # convert: the file of the function
    function: str | None = None
    calls: tuple[tuple[Site, Entry], ...] = ()
    subject: str = ""
    body: str = ""
    commit: str = ""

    @property
    def keys(self) -> list[str]:
        return [s.key for s, _e in self.calls]

    @property
    def maywrite(self) -> bool:
        return any(e.verdict == "rw" for _s, e in self.calls)

    def message(self, signer: Ident) -> str:
        return f"{self.subject}\n\n{self.body.rstrip()}\n\nSigned-off-by: {signer}\n"


@dataclass(frozen=True)
class Result:
    out_dir: str
    files: tuple[str, ...]
    branch: str
    tip: str
    record_ref: str
    patches: tuple[Patch, ...]


# --------------------------------------------------------------------------
# names
# --------------------------------------------------------------------------

def default_branch(names: Names, version: int) -> str:
    words = [re.sub(r"^pte_offset_map_|_nolock$", "", n).replace("_", "-")
             for n in (names.readonly, names.maywrite)]
    return f"rewriter/pte-map-{words[0]}-{words[1]}-v{version}"


def braced(a: str, b: str) -> str:
    """pte_offset_map_readonly_nolock, pte_offset_map_maywrite_nolock ->
    pte_offset_map_{readonly|maywrite}_nolock."""
    head = os.path.commonprefix([a, b])
    head = head[:head.rfind("_") + 1]  # whole words only
    tail = os.path.commonprefix([a[len(head):][::-1], b[len(head):][::-1]])[::-1]
    tail = tail[tail.find("_"):] if "_" in tail else ""
    return f"{head}{{{a[len(head):len(a) - len(tail)]}|{b[len(head):len(b) - len(tail)]}}}{tail}"


# --------------------------------------------------------------------------
# subject prefixes
# --------------------------------------------------------------------------

_PREFIX = re.compile(r"^((?:[A-Za-z0-9_][\w.+/-]*: ){1,2})")


def learned_prefix(subjects: list[str]) -> str | None:
    """The most common "a:" or "a: b:" prefix of subjects (newest first);
    a tie goes to the one used most recently."""
    counts: Counter[str] = Counter()
    first: dict[str, int] = {}
    for i, subject in enumerate(subjects):
        if subject.startswith(("Merge ", "Revert ")):
            continue
        m = _PREFIX.match(subject)
        if not m:
            continue
        prefix = m.group(1).strip()
        counts[prefix] += 1
        first.setdefault(prefix, i)
    if not counts:
        return None
    return max(counts, key=lambda p: (counts[p], -first[p]))


def path_prefix(path: str) -> str:
    """A prefix for a file with no history to learn from:
    arch/X/... -> "X: mm:", mm/foo.c -> "mm: foo:", the files of the
    helpers (include/linux/mm.h, mm/pgtable-generic.c, their documentation)
    -> "mm:", include/.../foo.h -> "foo:", DIR/.../foo.c -> "DIR: foo:"."""
    parts = path.split("/")
    stem = Path(path).stem
    if path in helpers.FILES or path.startswith("Documentation/mm/"):
        return "mm:"
    if parts[0] == "arch" and len(parts) > 2:
        return f"{parts[1]}: mm:"
    if parts[0] == "include":
        return "mm:" if stem in ("mm", "mm_types", "pgtable") else f"{stem}:"
    if len(parts) == 1:
        return f"{stem}:"
    return f"{parts[0]}: {stem}:"


def shorter_prefixes(prefix: str) -> list[str]:
    """The prefix, then shorter forms of it: "mm: khugepaged:" -> "mm:";
    "x86/mm:" -> "x86:"."""
    out = [prefix]
    words = prefix.split()
    if len(words) > 1:
        out.append(words[0])
    head = words[0]
    if "/" in head:
        out.append(head.split("/")[0] + ":")
    return list(dict.fromkeys(out))


def subject_prefix(git: Git, base: str, paths: list[str]) -> str:
    return learned_prefix(git.subjects(base, paths, HISTORY)) or path_prefix(paths[0])


def fit_subject(template: str, prefix: str, **values: object) -> tuple[str, str]:
    """(subject, body): the first of the prefix's forms whose subject is at
    most MAX_SUBJECT characters, else the shortest."""
    best = None
    for p in shorter_prefixes(prefix):
        subject, body = prose.message(template, prefix=p, **values)
        if len(subject) <= MAX_SUBJECT:
            return subject, body
        if best is None or len(subject) < len(best[0]):
            best = (subject, body)
    assert best is not None
    return best


# --------------------------------------------------------------------------
# the commits' contents
# --------------------------------------------------------------------------

def plan_patches(tree: Tree, runner: Runner, scan: Scan, plan: Plan, names: Names) -> list[Patch]:
    """The patches in order, each with the new contents of its files."""
    groups: dict[tuple[str, str], list[Site]] = {}
    for s in scan.sites:
        groups.setdefault((s.file, s.function), []).append(s)
    convert: list[Patch] = []
    for (file, function), sites in groups.items():
        sites.sort(key=lambda s: (s.line, s.column))
        calls = tuple((s, plan.entry(s)) for s in sites)
        convert.append(Patch("convert", {}, file, function, calls))
    convert.sort(key=lambda p: (p.maywrite, p.file, p.calls[0][0].line))

    per_file: dict[str, list[Patch]] = {}
    for p in convert:
        per_file.setdefault(p.file, []).append(p)
    clash = sorted(set(helpers.FILES) & set(per_file))
    if clash:
        raise rewrite.RewriteError(f"{clash[0]}: calls {scan.function}() and also gets the new helpers; "
                                   f"rewriter cannot do both in one file yet: convert its calls by hand first")

    # The contents are a function of the files read, the plan, the names
    # and rewriter itself: a series made again from the same ones reads
    # them back instead of running the rounds and the helpers' rules.
    entry = _conversion_entry(tree, runner, scan, convert, names)
    stored = _load_conversion(entry, len(convert) + 2)
    if stored is not None:
        helpers.check_names_free(tree, names)  # as introduce() would
        introduced, *converted, removed = stored
        for p, files in zip(convert, converted):
            p.files = files
        return [Patch("introduce", introduced), *convert, Patch("remove", removed)]

    beside = helpers.Beside(tree, runner, names, old=scan.function)
    try:
        # Each file is converted whole once; its commits take the edits of
        # their functions from that, first k functions for the k-th.
        full = rewrite.convert(tree, runner, scan, plan, names)
        again: dict[str, list[Patch]] = {}
        for f, patches in per_file.items():
            original = tree.read(f)
            text = original.decode("utf-8", errors="surrogateescape")
            spans = {p.function: function_spans(text, {p.function}) for p in patches}
            for k, p in enumerate(patches):
                data = rewrite.partial(original, full[f], spans, {q.function for q in patches[:k + 1]})
                if data is None:  # an edit outside those functions: convert for each commit
                    again[f] = patches
                    break
                rewrite.verify(f, original, data, [s for q in patches[:k + 1] for s, _e in q.calls], plan,
                               names, scan.function)
                p.files = {f: data}
        # Round k (from 1) converts, in each file with k functions or more,
        # the calls of its first k functions (in series order): one
        # convert() per round for all those files.
        for k in range(max((len(v) for v in again.values()), default=0)):
            files_now = [f for f, patches in again.items() if len(patches) > k]
            only = {key for f in files_now for p in again[f][:k + 1] for key in p.keys}
            contents = rewrite.convert(tree, runner, scan, plan, names, only)
            for f in files_now:
                again[f][k].files = {f: contents[f]}
    finally:
        beside.wait()
    introduced, removed = beside.result()
    if entry is not None:
        cache.store(entry, pickle.dumps([introduced, *(p.files for p in convert), removed],
                                        protocol=pickle.HIGHEST_PROTOCOL))
    return [Patch("introduce", introduced), *convert, Patch("remove", removed)]


def _conversion_entry(tree: Tree, runner: Runner, scan: Scan, convert: list[Patch], names: Names):
    """Where plan_patches() keeps its contents for these inputs: rewriter's
    code and templates, the spatch version, the names, the calls with their
    plan entries in series order, and the bytes of every file it reads."""
    if runner.cache is None:
        return None
    parts = [cache.code_digest(), runner.cache.version, scan.function, names.readonly, names.maywrite]
    for p in convert:
        parts.append(repr([(s.key, s.line, s.column, s.verdict, e) for s, e in p.calls]))
    read = sorted({p.file for p in convert} | set(helpers.FILES))
    blobs = tree.blob_ids(read)
    if blobs is None:  # a file is missing: let the conversion say so
        return None
    parts += [f"{path}\0{blobs[path]}" for path in read]
    return cache.entry("conversions", *(part.encode("utf-8", "surrogateescape") for part in parts))


def _load_conversion(entry, count: int) -> list[dict[str, bytes]] | None:
    return cache.load_pickle(entry, lambda stored: isinstance(stored, list) and len(stored) == count
                             and all(isinstance(f, dict) for f in stored))


# --------------------------------------------------------------------------
# the commit messages
# --------------------------------------------------------------------------

def _code_line(tree_lines: list[str], n: int) -> str:
    return tree_lines[n - 1].strip() if 0 < n <= len(tree_lines) else ""


def reason_form(reason: str, site: Site) -> str:
    """How a template can use the plan's reason in a sentence: "phrase"
    (one of the scan's reasons, to follow the function's name), "clause"
    (starts in lower case: to follow a colon or "because") or "sentence"."""
    if reason in site.verdict.reasons and _is_verb_phrase(reason):
        return "phrase"
    return "clause" if reason[:1].islower() else "sentence"


def _is_verb_phrase(reason: str) -> bool:
    """The scan words its reasons with the function as the subject
    ("writes an entry: ...", "only reads entries ..."), except for
    statements about the code ("a pte_same() check ... guards ...")."""
    first = re.sub(r"^only ", "", reason).split(" ", 1)[0]
    return bool(re.fullmatch(r"[a-z]+s", first)) and first not in ("its", "this", "has", "is", "was")


def line_map(original: bytes, now: bytes) -> dict[int, int]:
    """Line numbers of original -> the same lines in now (unchanged ones)."""
    a = original.decode("utf-8", "surrogateescape").splitlines()
    b = now.decode("utf-8", "surrogateescape").splitlines()
    head, tail = diffs.common_ends(a, b)
    out = {k + 1: k + 1 for k in range(head)}
    for k in range(tail):
        out[len(a) - k] = len(b) - k
    middle = difflib.SequenceMatcher(None, a[head:len(a) - tail], b[head:len(b) - tail], autojunk=False)
    for block in middle.get_matching_blocks():
        for k in range(block.size):
            out[head + block.a + k + 1] = head + block.b + k + 1
    return out


def call_values(site: Site, entry: Entry, lines: list[str], where: dict[int, int]) -> dict:
    """What the templates say about one call, from the scan and the plan.

    lines: the file at the base; where: its line numbers -> those of the
    file as the patch finds it (earlier patches may have added lines)."""
    steps = []
    for ev in site.verdict.evidence:
        if ev.line == site.line:
            continue  # the call itself
        code = _code_line(lines, ev.line)
        text = ev.text[:-len(code) - 2] if code and ev.text.endswith(": " + code) else ev.text
        steps.append({"line": where.get(ev.line, ev.line), "text": _relined(text, where)})
    reasons = list(site.verdict.reasons)
    target = site.context.site.target if site.context and site.context.site.target else None
    return {
        "line": where.get(site.line, site.line),
        "target": render_tokens(target) if target else None,
        "verdict": entry.verdict,
        "recheck": entry.recheck,
        "reason": _relined(entry.reason, where),
        "reason_form": reason_form(entry.reason, site),
        "on_recheck_fail": entry.on_recheck_fail,
        "does": [_relined(r, where) for r in reasons if _is_verb_phrase(r)],
        "notes": [_relined(r, where) for r in reasons if not _is_verb_phrase(r)],
        "steps": steps,
        "scan_verdict": site.verdict.verdict,
        "scan_recheck": site.verdict.recheck,
        "overridden": (entry.verdict, entry.recheck) != (site.verdict.verdict, site.verdict.recheck),
        "review": site.verdict.review,
    }


def _relined(text: str, where: dict[int, int]) -> str:
    """The scan's "at line N" (of the base) as a line of the file the patch applies to."""
    return re.sub(r"\bat line (\d+)\b", lambda m: f"at line {where.get(int(m.group(1)), int(m.group(1)))}", text)


def variant_groups(calls: list[dict]) -> list[dict]:
    """The calls that are converted the same way, for the same reason."""
    groups: dict[tuple, dict] = {}
    for c in calls:
        key = (c["verdict"], c["recheck"], c["reason"], c["on_recheck_fail"])
        g = groups.setdefault(key, {"verdict": c["verdict"], "recheck": c["recheck"], "reason": c["reason"],
                                    "reason_form": c["reason_form"], "on_recheck_fail": c["on_recheck_fail"],
                                    "lines": []})
        g["lines"].append(c["line"])
    return list(groups.values())


def write_messages(git: Git, tree: Tree, scan: Scan, names: Names, patches: list[Patch]) -> None:
    base = tree.rev
    helper_prefix = subject_prefix(git, base, [helpers.HEADER, helpers.SOURCE])
    counts = series_counts(patches)
    common = {"old": scan.function, "readonly": names.readonly, "maywrite": names.maywrite,
              "both": braced(names.readonly, names.maywrite), "counts": counts,
              "total": len(patches)}
    texts: dict[str, list[str]] = {}
    originals: dict[str, bytes] = {}
    current: dict[str, bytes] = {}  # each file as the next patch finds it
    for p in patches:
        if p.kind == "introduce":
            p.subject, p.body = fit_subject("series/introduce.txt.j2", helper_prefix, **common)
        elif p.kind == "remove":
            p.subject, p.body = fit_subject("series/remove.txt.j2", helper_prefix, **common)
        else:
            if p.file not in texts:
                originals[p.file] = current[p.file] = tree.read(p.file)
                texts[p.file] = originals[p.file].decode("utf-8", "replace").splitlines()
            where = line_map(originals[p.file], current[p.file])
            current[p.file] = p.files[p.file]
            calls = [call_values(s, e, texts[p.file], where) for s, e in p.calls]
            verdicts = {c["verdict"] for c in calls}
            helper = (common["both"] if verdicts == {"ro", "rw"}
                      else names.maywrite if "rw" in verdicts else names.readonly)
            prefix = subject_prefix(git, base, [p.file])
            p.subject, p.body = fit_subject("series/convert.txt.j2", prefix, function=p.function,
                                            file=p.file, helper=helper, calls=calls,
                                            groups=variant_groups(calls), **common)


def series_counts(patches: list[Patch]) -> dict:
    entries = [e for p in patches for _s, e in p.calls]
    return {
        "calls": len(entries),
        "functions": sum(1 for p in patches if p.kind == "convert"),
        "ro_functions": sum(1 for p in patches if p.kind == "convert" and not p.maywrite),
        "rw_functions": sum(1 for p in patches if p.kind == "convert" and p.maywrite),
        "files": len({p.file for p in patches if p.kind == "convert"}),
        "ro": sum(1 for e in entries if e.verdict == "ro"),
        "rw": sum(1 for e in entries if e.verdict == "rw"),
        "pmd_same": sum(1 for e in entries if e.recheck == "pmd_same"),
        "dummy": sum(1 for e in entries if e.recheck == "dummy"),
    }


# --------------------------------------------------------------------------
# the whole command
# --------------------------------------------------------------------------

def series_date(git: Git, base: str) -> When:
    """SOURCE_DATE_EPOCH when set, else the base commit's committer date."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if value:
        if not value.isdigit():
            raise InputError(f"SOURCE_DATE_EPOCH={value!r}: give a whole number of seconds")
        return When(int(value), "+0000")
    return git.committer_date(base)


@dataclass(frozen=True)
class Prepared:
    """Everything checked before any work: the refusals come first."""

    git: Git
    base: str
    opts: Options
    branch: str
    old_branch: str | None
    old_record: str | None
    previous: versions.Record | None
    author: Ident
    to: tuple[str, ...]
    cc: tuple[str, ...]

    @property
    def branch_ref(self) -> str:
        return f"refs/heads/{self.branch}"

    @property
    def record_ref(self) -> str:
        return versions.ref(self.opts.version)


def prepare(tree: Tree, names: Names, opts: Options) -> Prepared:
    """Check the options against the repository; refuse with one line."""
    git = Git(tree.repo.git_dir)
    if opts.version < 1:
        raise InputError(f"-v {opts.version}: versions count from 1")
    branch = opts.branch or default_branch(names, opts.version)
    git.check_branch_name(branch)
    author = parse_ident(opts.author) if opts.author is not None else git.user_ident()
    to = tuple(mail.check_address(a, "--to") for a in opts.to)
    cc = tuple(mail.check_address(a, "--cc") for a in opts.cc)
    mail.check_subject_prefix(opts.subject_prefix)
    out = Path(opts.out_dir)
    if not opts.out_dir:
        raise InputError("-o '': name a new or empty directory")
    if out.exists() and not out.is_dir():
        raise InputError(f"-o {opts.out_dir}: not a directory; name a new or empty directory")
    if out.is_dir() and any(out.iterdir()) and not opts.force:
        raise InputError(f"-o {opts.out_dir}: the directory is not empty; name a new or empty one, "
                         f"or pass --force to replace what is in it")
    _check_out_place(out, opts.out_dir)
    unwritable = git.writable()
    if unwritable is not None:
        raise InputError(f"{tree.path}: cannot write in {unwritable} (a read-only repository, or no permission); "
                         f"the series is committed there: make it writable, or run rewriter on a clone")
    old_branch = git.resolve(f"refs/heads/{branch}")
    if old_branch and not opts.force:
        raise InputError(f"branch {branch} already exists; choose another with --branch, "
                         f"or pass --force to replace it")
    if old_branch and git.branch_checked_out(branch):
        raise InputError(f"branch {branch} is checked out; rewriter does not move the branch you are on: "
                         f"choose another with --branch")
    old_record = git.resolve(versions.ref(opts.version))
    if old_record and not opts.force:
        raise InputError(f"version {opts.version} of the series is already recorded "
                         f"({versions.ref(opts.version)}); write version {opts.version + 1} with "
                         f"-v {opts.version + 1}, or pass --force to replace it")
    previous = None
    if opts.version > 1:
        previous = versions.load(git, opts.version - 1)
        if previous is None:
            raise InputError(f"-v {opts.version}: no version {opts.version - 1} of the series is recorded "
                             f"in {tree.path} ({versions.ref(opts.version - 1)}); write it first")
    return Prepared(git, tree.rev, opts, branch, old_branch, old_record, previous, author, to, cc)


def _check_out_place(out: Path, name: str) -> None:
    """The directory -o DIR is made in (the nearest one that exists above
    it) must be a directory that can be written."""
    place = out.absolute().parent
    while not place.exists() and not place.is_symlink():
        place = place.parent
    if not place.is_dir():
        raise InputError(f"-o {name}: {place} is not a directory; name a new or empty directory")
    if not os.access(place, os.W_OK | os.X_OK):
        raise InputError(f"-o {name}: cannot write in {place} (read-only, or no permission); "
                         f"choose another place with -o")


def write(tree: Tree, runner: Runner, scan: Scan, plan: Plan, names: Names, plan_text: str,
          ready: Prepared, progress=None) -> Result:
    """Build the series and write it out; see the module's docstring."""
    say = progress or (lambda _msg: None)
    git, base, opts, author = ready.git, ready.base, ready.opts, ready.author
    if base != tree.rev:
        raise InputError("internal error: the series was prepared for another revision")

    say("converting the calls")
    patches = plan_patches(tree, runner, scan, plan, names)
    write_messages(git, tree, scan, names, patches)

    say("committing")
    date = series_date(git, base)
    parent = base
    tree_id = git.tree_id(base)
    modes = git.modes(base, sorted({path for p in patches for path in p.files}))
    blobs = iter(git.blobs([data for p in patches for data in p.files.values()]))
    trees = Trees(git)
    tree_ids = []
    for p in patches:
        tree_id = trees.with_files(tree_id, {path: (modes[path], next(blobs)) for path in p.files})
        tree_ids.append(tree_id)
    trees.write()
    for n, (p, tree_id) in enumerate(zip(patches, tree_ids), 1):
        parent = p.commit = git.commit(tree_id, [parent], p.message(author), author, date.plus(n))
    tip = parent

    # Absolute: git runs in the temporary directory, not here.
    out = Path(opts.out_dir).absolute()
    with outputs.parents_made(opts.out_dir, f"-o {opts.out_dir}: cannot write the series there ({{reason}}); "
                                            f"choose another place with -o"), \
            tempfile.TemporaryDirectory(prefix=f".{out.name}.rewriter-", dir=out.parent) as scratch:
        work = Path(scratch) / "series"
        say("formatting the patches")
        try:
            files = mail.format_patches(git, base, tip, opts.version, opts.subject_prefix, work, author, date)
        except RewriterError as exc:  # it only writes there: a full disk
            raise InputError(f"-o {opts.out_dir}: {exc}; choose another place with -o") from None
        if len(files) != len(patches) + 1:
            raise InputError(f"git format-patch wrote {len(files)} files for {len(patches)} commits")
        say("finding the recipients")
        recipients = maintainers.for_patches(git, base, files[1:])
        record = versions.Record.draft(opts.version, ready.branch, base, tip, names, opts.subject_prefix,
                                       plan_text, patches)
        changes = versions.changes(git, ready.previous, record) if ready.previous else None
        prefix = subject_prefix(git, base, [helpers.HEADER, helpers.SOURCE])
        cover = fit_subject("series/cover.txt.j2", prefix,
                            **cover_values(scan, names, patches, record, ready.previous, changes))
        ids = mail.finish(files, cover, recipients, list(ready.to), list(ready.cc), changes,
                          [p.keys for p in patches], opts.version, author)
        record.set_message_ids(ids)
        record_commit = versions.store(git, record, author, date)

        aside = Path(scratch) / "replaced"
        # Another run may have taken the branch, the version record or the
        # directory since prepare(): the lock keeps other rewriters out
        # while the three are looked at again and written (and their
        # objects moved), and the refs are written in one transaction that
        # expects them as prepare() found them, for any other git.  The
        # lock is waited for with interrupts as they are: Ctrl-C then
        # stops the run before it has written anything.
        with git.publish_lock(), _deferred_interrupts():
            _check_unchanged(ready, out)
            _install(work, out, aside)
            try:
                added = git.migrate()  # the objects, out of quarantine (rewriter.gitstore)
                try:
                    git.update_refs([(ready.branch_ref, tip, ready.old_branch),
                                     (ready.record_ref, record_commit, ready.old_record)])
                except RefMoved as exc:
                    git.unmigrate(added)
                    raise _taken(ready, exc.ref, exc.now) from None
                except BaseException:
                    git.unmigrate(added)
                    raise
            except BaseException:
                _uninstall(out, aside)
                raise
    names_out = tuple(str(Path(opts.out_dir) / f.name) for f in files)  # as the user named it
    return Result(opts.out_dir, names_out, ready.branch, tip, ready.record_ref, tuple(patches))


def cover_values(scan: Scan, names: Names, patches: list[Patch], record: versions.Record,
                 previous: versions.Record | None, changes) -> dict:
    rows = []
    for n, p in enumerate(patches, 1):
        for s, e in p.calls:
            rows.append({"file": s.file, "function": f"{s.function}()", "line": s.line,
                         "verdict": e.verdict, "recheck": e.recheck or "-", "patch": n})
    rows.sort(key=lambda r: (r["file"], r["line"]))
    return {
        "old": scan.function, "readonly": names.readonly, "maywrite": names.maywrite,
        "both": braced(names.readonly, names.maywrite), "counts": series_counts(patches),
        "total": len(patches), "rows": rows, "version": record.version,
        "previous": previous,
        "changes": prose.render("series/changes.txt.j2", **changes.for_cover()) if changes else "",
        "first_convert": 2, "last_convert": len(patches) - 1,
    }


# --------------------------------------------------------------------------
# the end: output directory and refs, both or neither
# --------------------------------------------------------------------------

@contextmanager
def _deferred_interrupts():
    """Ctrl-C (and SIGTERM) wait until the block is done: the output and
    the refs appear together, or neither does.

    When the block fails after an interrupt came (Ctrl-C also stops the
    git the block runs), the block has undone its work and the interrupt
    is what is reported.  When it succeeds, the series is complete: from
    then on interrupts are ignored, so that the command ends as what it is,
    a success.  Outside the main thread nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    old = {sig: signal.signal(sig, lambda signum, _frame: caught.append(signum))
           for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    except BaseException:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        if caught:
            raise KeyboardInterrupt from None
        raise
    for sig in old:
        signal.signal(sig, signal.SIG_IGN)


def _check_unchanged(ready: Prepared, out: Path) -> None:
    """Refuse when the branch, the version record or the output directory
    is no longer as prepare() found it: another run wrote it meanwhile."""
    for ref, old in ((ready.branch_ref, ready.old_branch), (ready.record_ref, ready.old_record)):
        now = ready.git.resolve(ref)
        if now != old:
            raise _taken(ready, ref, now)
    if not ready.opts.force and out.is_dir() and any(out.iterdir()):
        raise InputError(f"-o {ready.opts.out_dir}: another run wrote into the directory meanwhile; "
                         f"nothing was written: name a new or empty one with -o")


def _taken(ready: Prepared, ref: str, now: str | None) -> InputError:
    """The refusal for a ref that another run wrote since prepare()."""
    if ref == ready.branch_ref:
        if ready.old_branch is None:
            return InputError(f"branch {ready.branch} was created meanwhile (another rewriter series, or git, "
                              f"made it); nothing was written: choose another with --branch, or pass --force "
                              f"to replace it")
        return InputError(f"branch {ready.branch} was {'moved' if now else 'deleted'} meanwhile; nothing was "
                          f"written: run again to replace it as it is now")
    v = ready.opts.version
    if ready.old_record is None:
        return InputError(f"version {v} of the series was recorded meanwhile ({ref}, by another rewriter "
                          f"series); nothing was written: write version {v + 1} with -v {v + 1}, or pass "
                          f"--force to replace it")
    return InputError(f"the version record {ref} was {'replaced' if now else 'deleted'} meanwhile; nothing "
                      f"was written: run again to replace it as it is now")


def _install(work: Path, out: Path, aside: Path) -> None:
    """Rename work to out; an existing out (empty, or --force) goes aside."""
    if out.exists():
        os.rename(out, aside)
    try:
        os.rename(work, out)
    except OSError as exc:
        if aside.exists():
            os.rename(aside, out)
        raise InputError(f"-o {out}: cannot write the series there ({exc.strerror})") from None


def _uninstall(out: Path, aside: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
    if aside.exists():
        os.rename(aside, out)
