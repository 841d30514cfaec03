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

import os
import pickle
import re
import shutil
import signal
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


from rewriter import cache, changelog, helpers, mail, maintainers, outputs, prose, rewrite, versions
from rewriter import __version__
from rewriter import plan as plan_mod
from rewriter.clex import definition_spans, render
from rewriter.errors import InputError, RewriterError
from rewriter.gitstore import Git, Ident, RefMoved, Trees, When, parse_ident
from rewriter.recipe import Names, Recipe
from rewriter.plan import Entry, Plan
from rewriter.runner import Background, Runner
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
    testing: str | None = None  # a `rewriter check --json` report for the cover letter's Testing
    b4: bool = False  # the branch in b4 prep's layout: the cover letter as its first commit
    names_option: str = ""  # --names as given, for the cover letter ("" for the default)
    recipe: Recipe | None = None  # the default branch name is the recipe's


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

def braced(a: str, b: str) -> str:
    """pte_offset_map_readonly_nolock, pte_offset_map_maywrite_nolock ->
    pte_offset_map_{readonly|maywrite}_nolock."""
    head = os.path.commonprefix([a, b])
    head = head[:head.rfind("_") + 1]  # whole words only
    tail = os.path.commonprefix([a[len(head):][::-1], b[len(head):][::-1]])[::-1]
    tail = tail[tail.find("_"):] if "_" in tail else ""
    return f"{head}{{{a[len(head):len(a) - len(tail)]}|{b[len(head):len(b) - len(tail)]}}}{tail}"


# --------------------------------------------------------------------------
# subject prefixes (the rules: rewriter.changelog)
# --------------------------------------------------------------------------

learned_prefix = changelog.learned_prefix
path_prefix = changelog.path_prefix


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
    """Learned from the history of paths[0] when enough of its last
    commits agree, else from the path (rewriter.changelog)."""
    return learned_prefix(git.messages(base, paths[:1], HISTORY)) or path_prefix(paths[0])


def fit_subject(recipe: Recipe, template: str, prefix: str, **values: object) -> tuple[str, str]:
    """(subject, body): the first of the prefix's forms whose subject is at
    most MAX_SUBJECT characters, else the shortest."""
    best = None
    for p in shorter_prefixes(prefix):
        subject, body = prose.message(template, recipe.folder, prefix=p, **values)
        if len(subject) <= MAX_SUBJECT:
            return subject, body
        if best is None or len(subject) < len(best[0]):
            best = (subject, body)
    assert best is not None
    return best


# --------------------------------------------------------------------------
# the commits' contents
# --------------------------------------------------------------------------

def plan_patches(tree: Tree, runner: Runner, scan: Scan, plan: Plan, names: Names,
                 beside: Background | None = None) -> list[Patch]:
    """The patches in order, each with the new contents of its files.
    beside: the helpers' work (helpers.beside) if the caller started it."""
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
    clash = sorted(set(scan.recipe.files) & set(per_file))
    if clash:
        raise rewrite.RewriteError(f"{clash[0]}: calls {scan.function}() and also gets the new helpers; "
                                   f"rewriter cannot do both in one file yet: convert its calls by hand first")

    # The contents are a function of the files read, the plan, the names
    # and rewriter itself: a series made again from the same ones reads
    # them back instead of running the rounds and the helpers' rules.
    entry = _conversion_entry(tree, runner, scan, convert, names)
    stored = _load_conversion(entry, len(convert) + 2)
    if stored is not None:
        if beside is not None:
            beside.join()  # its work is in the stored contents too
        helpers.check_names_free(tree, names)  # as introduce() would
        introduced, *converted, removed = stored
        for p, files in zip(convert, converted):
            p.files = files
        return [Patch("introduce", introduced), *convert] + ([] if scan.kept else [Patch("remove", removed)])

    if beside is None:
        beside = helpers.beside(tree, runner, names, scan.recipe)
    try:
        # Each file is converted whole once; its commits take the edits of
        # their functions from that, first k functions for the k-th.
        full = rewrite.convert(tree, runner, scan, plan, names)
        again: dict[str, list[Patch]] = {}
        for f, patches in per_file.items():
            original = tree.read(f)
            text = original.decode("utf-8", errors="surrogateescape")
            # A commit's edits are those in the functions its calls' conversion
            # edits: theirs, and the callers the pmd value is carried to.
            spans = {p.function: definition_spans(text, rewrite.edited_functions([s for s, _e in p.calls]))
                     for p in patches}
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
        beside.join()
    introduced, removed = beside.result()
    if entry is not None:
        cache.store(entry, pickle.dumps([introduced, *(p.files for p in convert), removed],
                                        protocol=pickle.HIGHEST_PROTOCOL))
    # A call a person decided to keep still needs the old function.
    return [Patch("introduce", introduced), *convert] + ([] if scan.kept else [Patch("remove", removed)])


def _conversion_entry(tree: Tree, runner: Runner, scan: Scan, convert: list[Patch], names: Names):
    """Where plan_patches() keeps its contents for these inputs: rewriter's
    code and templates, the spatch version, the names, the calls with their
    plan entries in series order, and the bytes of every file it reads."""
    if runner.cache is None:
        return None
    parts = [cache.code_digest(), runner.cache.version, scan.recipe.digest, names.readonly, names.maywrite]
    for p in convert:
        parts.append(repr([(s.key, s.line, s.column, s.verdict, e) for s, e in p.calls]))
    read = sorted({p.file for p in convert} | set(scan.recipe.c_files))
    blobs = tree.blob_ids(read)
    if blobs is None:  # a file is missing: let the conversion say so
        return None
    parts += [f"{path}\0{blobs[path]}" for path in read]
    # The files the helpers read when the tree has them: the documentation,
    # and where the recipe's facts are checked.
    optional = sorted({scan.recipe.document} | {n["file"] for needs in scan.recipe.facts.values() for n in needs})
    parts += [f"{path}\0{(tree.blob_ids([path]) or {}).get(path, 'absent')}" for path in optional]
    return cache.entry("conversions", *(part.encode("utf-8", "surrogateescape") for part in parts))


def _load_conversion(entry, count: int) -> list[dict[str, bytes]] | None:
    return cache.load_pickle(entry, lambda stored: isinstance(stored, list) and len(stored) == count
                             and all(isinstance(f, dict) for f in stored))


# --------------------------------------------------------------------------
# the commit messages (what they say: rewriter.changelog)
# --------------------------------------------------------------------------

def api_files(scan: Scan) -> list[str]:
    """The files that declare and define the function, from the scan's
    mentions: declarations first."""
    order = {"declaration": 0, "definition": 1}
    found = sorted(((order[m.kind], m.file) for m in scan.mentions if m.kind in order))
    files = list(dict.fromkeys(f for _k, f in found))
    return files or list(scan.recipe.c_files)


def write_messages(git: Git, tree: Tree, scan: Scan, names: Names, patches: list[Patch],
                   facts: dict[str, bool]) -> None:
    """facts: the recipe's facts as the tree has them (helpers.code_facts)."""
    base = tree.rev
    # The helpers' commits carry the prefix of the file that defines them.
    files = api_files(scan)
    helper_prefix = subject_prefix(git, base, files[-1:])
    counts = series_counts(patches)
    common = {"facts": facts, "old": scan.function, "readonly": names.readonly, "maywrite": names.maywrite,
              "both": braced(names.readonly, names.maywrite), "counts": counts,
              "total": len(patches), "removes": any(p.kind == "remove" for p in patches),
              "kept": len(scan.kept)}
    for p in patches:
        if p.kind == "introduce":
            p.subject, p.body = fit_subject(scan.recipe, "series/introduce.txt.j2", helper_prefix, **common)
        elif p.kind == "remove":
            # What the old function had besides its prototype and definition
            # is in the files as introduce() left them.
            introduced = next(q.files for q in patches if q.kind == "introduce")
            p.subject, p.body = fit_subject(scan.recipe, "series/remove.txt.j2", helper_prefix,
                                            parts=helpers.old_parts(introduced, scan.recipe), **common)
        else:
            kept = [_target(s) for s in scan.kept if (s.file, s.function) == (p.file, p.function)]
            p.subject, p.body = convert_message(scan.recipe, subject_prefix(git, base, [p.file]), p.function,
                                                p.file, list(p.calls), names, kept, facts)


def _target(site) -> str:
    ctx = site.context
    return render(ctx.site.target) if ctx is not None and ctx.site.target else ""


def convert_message(recipe: Recipe, prefix: str, function: str, file: str, calls: list, names: Names,
                    kept: list[str] | None = None, facts: dict[str, bool] | None = None) -> tuple[str, str]:
    """(subject, body) of the commit that converts the calls, a list of
    (Site, plan Entry), of one function; kept: the tables of the calls of
    that function a person decided to leave as they are."""
    values = [changelog.call_values(s, e, plan_mod.default_reason(s, recipe), recipe.api) for s, e in calls]
    verdicts = {c["verdict"] for c in values}
    helper = (braced(names.readonly, names.maywrite) if verdicts == {"ro", "rw"}
              else names.maywrite if "rw" in verdicts else names.readonly)
    return fit_subject(recipe, "series/convert.txt.j2", prefix, function=function, file=file, helper=helper,
                       groups=changelog.groups_of(values), old=recipe.function, readonly=names.readonly,
                       maywrite=names.maywrite, kept=kept or [], facts=facts or {})


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
    testing: dict | None = None  # the --testing report, read

    @property
    def branch_ref(self) -> str:
        return f"refs/heads/{self.branch}"

    @property
    def record_ref(self) -> str:
        return versions.ref(self.opts.version)


def prepare(tree: Tree, names: Names, opts: Options) -> Prepared:
    """Check the options against the repository; refuse with one line."""
    git = Git(tree.repo.git_dir)
    testing = read_testing(opts.testing) if opts.testing is not None else None
    if opts.version < 1:
        raise InputError(f"-v {opts.version}: versions count from 1")
    branch = opts.branch or opts.recipe.branch_name(names, opts.version)
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
    return Prepared(git, tree.rev, opts, branch, old_branch, old_record, previous, author, to, cc, testing)


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
          ready: Prepared, progress=None, beside: Background | None = None) -> Result:
    """Build the series and write it out; see the module's docstring."""
    say = progress or (lambda _msg: None)
    git, base, author = ready.git, ready.base, ready.author
    if base != tree.rev:
        raise InputError("internal error: the series was prepared for another revision")

    # Who gets the API's files and who last changed its definition need
    # only the base and the scan: get_maintainer.pl and git log -L run
    # beside the conversion's spatch runs.
    api_lookup = Background(lambda: (maintainers.for_files(git, base, api_files(scan)),
                                     api_authors(git, base, scan, author)), name="rewriter-api-recipients")
    try:
        return _write(tree, runner, scan, plan, names, plan_text, ready, say, api_lookup, beside)
    finally:
        api_lookup.join()


def _write(tree: Tree, runner: Runner, scan: Scan, plan: Plan, names: Names, plan_text: str,
           ready: Prepared, say, api_lookup: Background, beside: Background | None) -> Result:
    git, base, opts, author = ready.git, ready.base, ready.opts, ready.author
    say("converting the calls")
    patches = plan_patches(tree, runner, scan, plan, names, beside)
    facts = helpers.code_facts(tree, scan.recipe)
    write_messages(git, tree, scan, names, patches, facts)

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
        api, authors = api_lookup.result()
        record = versions.Record.draft(opts.version, ready.branch, base, tip, names, opts.subject_prefix,
                                       plan_text, patches)
        changes = versions.changes(git, ready.previous, record) if ready.previous else None
        prefix = subject_prefix(git, base, api_files(scan)[-1:])
        cover = fit_subject(scan.recipe, "series/cover.txt.j2", prefix,
                            **cover_values(scan, names, patches, record, ready.previous, changes,
                                           testing=ready.testing, spatch=runner.check_spatch(),
                                           names_option=opts.names_option, plan=plan,
                                           facts=facts))
        ids = mail.finish(files, cover, recipients, list(ready.to), list(ready.cc), changes,
                          [p.keys for p in patches], opts.version, author, api=api, cover_cc=authors)
        record.set_message_ids(ids)
        branch_tip = tip
        if opts.b4:
            change_id = (ready.previous.change_id if ready.previous and ready.previous.change_id
                         else b4_change_id(ready.branch, base, names, date))
            record.change_id = change_id
            branch_tip = b4_branch(git, base, patches, cover, files[0], opts, change_id, author, date)
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
                    git.update_refs([(ready.branch_ref, branch_tip, ready.old_branch),
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
    return Result(opts.out_dir, names_out, ready.branch, branch_tip, ready.record_ref, tuple(patches))


def cover_values(scan: Scan, names: Names, patches: list[Patch], record: versions.Record,
                 previous: versions.Record | None, changes, testing: dict | None = None, spatch: str = "",
                 names_option: str = "", plan: Plan | None = None, facts: dict[str, bool] | None = None) -> dict:
    rows = []
    questions = []
    settled = 0
    for n, p in enumerate(patches, 1):
        for s, e in p.calls:
            c = changelog.call_values(s, e, plan_mod.default_reason(s, scan.recipe), scan.recipe.api)
            several = len(p.calls) > 1 and c["target"]
            rows.append({"file": s.file, "function": f"{s.function}()" + (f", {c['target']}" if several else ""),
                         "verdict": e.verdict,
                         "recheck": e.recheck or "-", "patch": n,
                         "why": "to review" if c["basis"] == "review" and not e.decision
                         else scan.recipe.why.get(c["basis"], c["basis"])})
            where = f"{s.function}() in {s.file}"
            if c["overridden"]:
                settled += 1
                rule = f"{c['scan_verdict']}" + (f" with {c['scan_recheck']}" if c["scan_recheck"] else "")
                made = f"{e.verdict}" + (f" with {e.recheck}" if e.recheck else "")
                because = f": {prose.clause(e.reason)}" if e.reason else ""
                questions.append(f"{where} (patch {n}): the rule gives {rule}; the series makes it {made}"
                                 f"{because}. Is that right?")
            elif c["review"] and e.decision:
                # A person settled what the rule left open: say so in their words.
                settled += 1
                questions.append(f"{where} (patch {n}) needed a decision by hand: {prose.clause(e.reason)}. "
                                 f"Is that right?")
            elif c["review"]:
                questions.append(f"{where} (patch {n}): {prose.sentence(c['question'] or 'the rule does not decide this call; please check the variant and the recheck')}")
    kept = []
    for s in scan.kept:
        e = plan.entry(s) if plan is not None else None
        settled += 1
        kept.append(f"{s.function}() in {s.file}")
        because = f": {prose.clause(e.reason)}" if e is not None and e.reason else ""
        questions.append(f"{s.function}() in {s.file} keeps {scan.function}() for now{because}. "
                         f"Is that the right way to leave it?")
    rows.sort(key=lambda r: (r["patch"], r["file"]))
    questions = list(dict.fromkeys(questions))
    removes = bool(patches) and patches[-1].kind == "remove"
    edited = sum(1 for p in patches for s, e in p.calls if e.reason != plan_mod.default_reason(s, scan.recipe))
    if settled or edited:
        plan_summary = (f"plan.toml is the plan the series follows (git show "
                        f"refs/rewriter/versions/v{record.version}:plan.toml in the tree the series was made "
                        f"in): it keeps the analysis' verdicts"
                        + (f" except for the {settled} {'call' if settled == 1 else 'calls'} under Open questions"
                           if settled else "")
                        + (f", and gives its own reason for {edited} {'call' if edited == 1 else 'calls'}"
                           if edited else "") + ".")
    else:
        plan_summary = "The plan is the analysis' own: no verdict or reason was changed by hand."
    return {
        "facts": facts or {},
        "old": scan.function, "readonly": names.readonly, "maywrite": names.maywrite,
        "both": braced(names.readonly, names.maywrite), "counts": series_counts(patches),
        "total": len(patches), "rows": rows, "version": record.version,
        "previous": previous, "questions": questions,
        "testing": testing_lines(testing) if testing is not None else [],
        "run_hint": "rewriter check --build --boot --mail --json > REPORT.json",
        "rewriter_version": __version__, "spatch_version": spatch or "(unknown version)",
        "names_option": f" --names {names_option}" if names_option else "",
        "plan_summary": plan_summary, "base": record.base,
        "plan_option": " --plan plan.toml" if settled or edited else "",
        "changes": prose.render("series/changes.txt.j2", **changes.for_cover()) if changes else "",
        "first_convert": 2, "last_convert": len(patches) - 1 if removes else len(patches),
        "removes": removes, "kept": kept, "all_calls": len(scan.sites) + len(scan.kept),
    }


def api_authors(git: Git, base: str, scan: Scan, sender: Ident, last: int = 3) -> list[str]:
    """The authors of the last changes to the function's definition (git
    log -L on its lines), leaving out local commits and the sender."""
    out: list[str] = []
    for m in scan.mentions:
        if m.kind != "definition":
            continue
        data = git.read_blob(base, m.file)
        if data is None:
            continue
        lines = data.decode("utf-8", "replace").splitlines()
        end = next((k for k in range(m.line - 1, len(lines)) if lines[k].startswith("}")), m.line - 1) + 1
        seen = 0
        for who, subject, body in git.line_log(base, m.file, m.line, end):
            if changelog.is_local(subject, body):
                continue
            seen += 1
            if mail.address_key(who) != sender.email.lower() and who not in out:
                out.append(who)
            if seen >= last:
                break
    return out


def read_testing(path: str) -> dict:
    import json
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"--testing {path}: cannot read a 'rewriter check --json' report ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("patches", []), list):
        raise InputError(f"--testing {path}: not a 'rewriter check --json' report")
    return data


def _get(d, *keys, default=None):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def testing_lines(report: dict) -> list[str]:
    """The cover letter's Testing, from a `rewriter check --json` report.
    Every key is read defensively: a report from another rewriter may
    lack some, or have more (boot)."""
    out = []
    patches = [p for p in report.get("patches", []) if isinstance(p, dict)]
    checked = [p for p in patches if isinstance(p.get("checkpatch"), dict)]
    if checked:
        e = sum(int(_get(p, "checkpatch", "errors", default=0) or 0) for p in checked)
        w = sum(int(_get(p, "checkpatch", "warnings", default=0) or 0) for p in checked)
        c = sum(int(_get(p, "checkpatch", "checks", default=0) or 0) for p in checked)
        out.append(f"scripts/checkpatch.pl on all {len(checked)} patches: {e} errors, {w} warnings, {c} checks.")
    build = report.get("build")
    if isinstance(build, dict):
        built = [p for p in patches if isinstance(p.get("build"), dict) and p["build"]]
        failed = [p for p in built if _get(p, "build", "status") == "failed"]
        warned = [p for p in built if _get(p, "build", "status") == "new warnings"]
        configs = [c for c in build.get("configs", []) if isinstance(c, dict) and c.get("files")]
        per_arch: dict[str, list[str]] = {}
        for c in configs:
            per_arch.setdefault(str(c.get("arch", "?")), []).append(str(c.get("defconfig", c.get("name", "?"))))
        archs = "; ".join(f"{a}: {', '.join(d)}" for a, d in sorted(per_arch.items()))
        what = f"the objects each commit changes, built ({archs})" if archs else "the objects each commit changes, built"
        if failed or build.get("failed"):
            numbers = ", ".join(str(p.get("number")) for p in failed) or "some"
            out.append(f"Build of {what}: FAILED at patch {numbers}.")
        elif warned:
            out.append(f"Build of {what}: every commit builds; new warnings at patch "
                       f"{', '.join(str(p.get('number')) for p in warned)}.")
        else:
            out.append(f"Build of {what}: every commit builds, with no new warnings." if built
                       else f"Build of {what}.")
    boot = report.get("boot")
    if isinstance(boot, dict):
        runs = next((boot[k] for k in ("runs", "results", "boots", "configs") if isinstance(boot.get(k), list)), None)
        if runs:
            for r in runs:
                if not isinstance(r, dict):
                    continue
                name = r.get("name") or " ".join(str(r[k]) for k in ("arch", "config", "machine") if r.get(k)) or "boot"
                status = r.get("status") or ("ok" if r.get("ok") else "failed" if r.get("ok") is False else "?")
                detail = f" ({r['tests']})" if isinstance(r.get("tests"), str) else ""
                out.append(f"Boot, {name}: {status}{detail}.")
        elif "ok" in boot or "status" in boot:
            out.append(f"Boot: {boot.get('status') or ('ok' if boot.get('ok') else 'failed')}.")
    m = report.get("mail")
    if isinstance(m, dict):
        ok = "the series applies with git am to the same tree" if m.get("tree_matches") else "git am did not give the same tree"
        out.append(f"git send-email to a local SMTP server: {m.get('received', '?')} of {m.get('sent', '?')} "
                   f"mails arrived; {ok}.")
    return out


# --------------------------------------------------------------------------
# b4 prep's layout (--b4)
# --------------------------------------------------------------------------

# What b4 prep ("commit" cover strategy, b4's default) keeps in a branch:
# an empty commit at the start, whose message is the cover letter (its
# first line the subject; To: and Cc: trailers are the recipients), then
# B4_MARKER and b4's tracking data as JSON (series: revision, change-id,
# prefixes).  b4 finds that commit with git log --grep on the marker,
# --committer=<user.email> and --since=1.year, so the branch's commits are
# committed by the author, with a committer date of now (or
# SOURCE_DATE_EPOCH); their author dates are those of the series.
B4_MARKER = "--- b4-submit-tracking ---"
B4_COMMENT = "# This section is used internally by b4 prep for tracking purposes."


def b4_change_id(branch: str, base: str, names: Names, date: When) -> str:
    """b4's form, YYYYMMDD-slug-12hex; the same for the same series."""
    import datetime
    import hashlib
    day = datetime.datetime.fromtimestamp(date.epoch, datetime.timezone.utc).strftime("%Y%m%d")
    slug = re.sub(r"-v\d+$", "", branch.rsplit("/", 1)[-1])[:40].strip("-") or "series"
    digest = hashlib.sha256(f"{names.readonly}\0{names.maywrite}\0{base}".encode()).hexdigest()[:12]
    return f"{day}-{slug}-{digest}"


def b4_prefixes(subject_prefix: str) -> list[str]:
    """--subject-prefix 'RFC PATCH' -> b4's prefixes ["RFC"] (b4 adds PATCH)."""
    return [w for w in subject_prefix.split() if w.upper() != "PATCH"]


def b4_cover_message(cover: tuple[str, str], cover_file: Path, version: int, prefixes: list[str],
                     change_id: str) -> str:
    import json
    subject, blurb = cover
    msg = mail.Message(cover_file.read_bytes())
    trailers = [f"To: {a.strip()}" for a in mail.split_addresses(msg.get("To") or "")]
    trailers += [f"Cc: {a.strip()}" for a in mail.split_addresses(msg.get("Cc") or "")]
    tracking = {"series": {"revision": version, "change-id": change_id, "prefixes": prefixes,
                           "presubject": ""}}
    return (f"{subject}\n\n{blurb.rstrip()}\n\n" + "\n".join(trailers) + "\n\n"
            f"{B4_MARKER}\n{B4_COMMENT}\n{json.dumps(tracking, indent=2)}\n")


def b4_branch(git: Git, base: str, patches: list[Patch], cover: tuple[str, str], cover_file: Path,
              opts: Options, change_id: str, author: Ident, date: When) -> str:
    """The series again, after b4's cover letter commit; its tip."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    import time
    now = When(int(value), "+0000") if value.isdigit() else When(int(time.time()), "+0000")
    message = b4_cover_message(cover, cover_file, opts.version, b4_prefixes(opts.subject_prefix), change_id)
    parent = git.commit(git.tree_id(base), [base], message, author, date, committed=now)
    for n, p in enumerate(patches, 1):
        tree = git.tree_id(p.commit)
        parent = git.commit(tree, [parent], p.message(author), author, date.plus(n), committed=now)
    return parent


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
