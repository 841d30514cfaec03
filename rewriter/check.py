"""`rewriter check`: look at a patch series the way a maintainer's CI does.

* checkpatch: the tree's own scripts/checkpatch.pl, read from the object
  store at the series' base, on every patch file;
* build (optional, rewriter.kbuild): every commit builds, with no new
  warnings;
* mail (optional): the series goes through the real `git send-email` to an
  SMTP server on 127.0.0.1, what arrives is kept as an mbox, its threading
  and headers are checked, and `git am` of the mbox onto the base gives
  the series' final tree.

The series is either a directory of `git format-patch` files (cover letter
0000 and the patches) or a branch of the tree.  Either way it is turned
into commits in a scratch clone (`git clone --shared`: the tree's object
store is only read), so nothing in the user's repository changes.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from rewriter import git
from rewriter.errors import InputError, RewriterError, ToolError
from rewriter.git import Repo

CHECKPATCH = "scripts/checkpatch.pl"
# What checkpatch.pl reads beside itself ($D/...); with --no-tree nothing else
# of the tree is read.  Documentation/dev-tools/checkpatch.rst is only read
# for --verbose, which is not used.
CHECKPATCH_DATA = ("scripts/spelling.txt", "scripts/const_structs.checkpatch")
SUBJECT_RE = re.compile(r"^\[(?P<prefix>[^\]]*?)\s*(?P<n>\d+)/(?P<total>\d+)\]\s*(?P<title>.*)$", re.S)
# Headers that RFC 5322 allows at most once in a message.
SINGLE_HEADERS = ("date", "from", "sender", "reply-to", "to", "cc", "bcc", "message-id",
                  "in-reply-to", "references", "subject")


# --------------------------------------------------------------------------
# git in a scratch clone
# --------------------------------------------------------------------------

# The scratch commits' committer; git runs without the user's settings
# (hooks, signing, aliases, sendemail.*) in the clones and in the tree.
SCRATCH_COMMITTER = {"GIT_COMMITTER_NAME": "rewriter check", "GIT_COMMITTER_EMAIL": "rewriter-check@localhost"}


def _repo(directory: Path | str) -> Repo:
    """git in directory (a scratch clone, or the tree named with --tree)."""
    return Repo.at(directory, clean_config=True, extra=SCRATCH_COMMITTER)


# --------------------------------------------------------------------------
# the series
# --------------------------------------------------------------------------

@dataclass
class PatchFile:
    number: int  # 0 for the cover letter
    path: Path
    subject: str
    files: list[str]  # paths the diff touches (post-image names)
    commit: str = ""  # the commit in the scratch clone


@dataclass
class Series:
    tree: Path  # the user's repository (read only)
    clone: Path  # scratch clone holding the series' commits
    base: str
    cover: PatchFile | None
    patches: list[PatchFile]
    final_tree: str = ""
    source: str = ""  # what was checked, for the report

    @property
    def commits(self) -> list[str]:
        return [p.commit for p in self.patches]

    def touched(self) -> list[str]:
        seen: dict[str, None] = {}
        for p in self.patches:
            for f in p.files:
                seen.setdefault(f, None)
        return list(seen)


def _subject(path: Path) -> str:
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    return " ".join(str(msg.get("Subject", "")).split())


def _diff_files(text: str) -> list[str]:
    return [m.group(2) for m in re.finditer(r"^diff --git a/(\S+) b/(\S+)$", text, re.M)]


def _patch_number(subject: str, index: int) -> int:
    m = SUBJECT_RE.match(subject)
    return int(m.group("n")) if m else index


def read_patch_dir(directory: Path) -> tuple[PatchFile | None, list[PatchFile]]:
    if not directory.is_dir():
        raise InputError(f"--series {directory}: no such directory; write the series with "
                         f"'rewriter series' (or 'make demo') first, or name it with --series")
    files = sorted(p for p in directory.iterdir() if p.suffix == ".patch" and p.is_file())
    if not files:
        raise InputError(f"--series {directory}: no .patch files in it")
    cover = None
    patches = []
    for i, path in enumerate(files):
        text = path.read_text(errors="replace")
        diff = _diff_files(text)
        entry = PatchFile(_patch_number(_subject(path), i), path, _subject(path), diff)
        if not diff and re.search(r"(^|-)0000-", path.name):
            cover = entry
        else:
            patches.append(entry)
    if not patches:
        raise InputError(f"--series {directory}: only a cover letter, no patches")
    return cover, patches


def _base_from_cover(cover: PatchFile | None) -> str | None:
    if cover is None:
        return None
    m = re.search(r"^base-commit: ([0-9a-f]{40})$", cover.path.read_text(errors="replace"), re.M)
    return m.group(1) if m else None


def scratch_clone(tree: Path, base: str, paths: list[str], dest: Path) -> Path:
    """A clone of tree that borrows its objects (nothing is written to tree),
    checked out at base with only paths (and the top-level files) in its
    work tree, which is all that git am needs."""
    clone = _repo(tree.resolve()).clone_shared(dest, "--no-checkout")
    clone.run("sparse-checkout", "set", "--no-cone", "/*", "!/*/", *[f"/{p}" for p in paths])
    clone.run("checkout", "-q", "--detach", base)
    return dest


def git_am(clone: Path, files: list[Path], mbox: bool = False) -> list[str]:
    """Apply the patch files (or one mboxrd file) in order; the new commits."""
    repo = _repo(clone)
    start = repo.out("rev-parse", "HEAD")
    args = ["am", "-q", "--keep-cr", "--no-3way"]
    if mbox:
        args.append("--patch-format=mboxrd")
    proc = repo.run(*args, *[str(f) for f in files], check=False)
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).decode(errors="replace").strip().splitlines()
        repo.run("am", "--abort", check=False)
        detail = next((l for l in out if "patch failed" in l or "error:" in l), out[0] if out else "")
        raise InputError(f"git am could not apply the series onto the base: {detail}")
    return repo.out("rev-list", "--reverse", f"{start}..HEAD").split()


def load_series(tree_path: str, series_dir: str | None, branch: str | None, base: str | None,
                workdir: Path) -> Series:
    tree = Path(tree_path)
    if not tree.is_dir():
        raise InputError(f"{tree_path}: no such directory; pass --tree with the path of the kernel git repository")
    if not (tree / ".git").exists() and not (tree / "objects").is_dir():
        raise InputError(f"{tree_path}: not a git repository; pass --tree with the kernel git repository")
    repo = _repo(tree)
    if not repo.out("for-each-ref", "--count=1") and repo.resolve("HEAD") is None:
        raise InputError(f"{tree_path}: the repository has no commits yet; pass --tree with the repository "
                         f"the series was made in")

    def resolve(rev: str, what: str) -> str:
        sha = repo.commit_id(rev)
        if sha is None:
            raise InputError(f"{what} {rev}: unknown revision in {tree_path}; pass {what} with a commit, "
                             f"branch or tag that exists there")
        return sha

    if branch is not None:
        tip = resolve(branch, "--branch")
        base_sha = resolve(base, "--base") if base else None
        if base_sha is None:
            head = resolve("HEAD", "HEAD")
            if head == tip:
                raise InputError(f"--branch {branch} is checked out in {tree_path}; name its base with --base")
            base_sha = repo.out("merge-base", head, tip)
        commits = repo.out("rev-list", "--reverse", f"{base_sha}..{tip}").split()
        if not commits:
            raise InputError(f"--branch {branch}: no commits on it after the base {base_sha[:12]}")
        out = workdir / "patches"
        out.mkdir()
        repo.run("format-patch", "-q", "--cover-letter", "--thread=shallow", "--numbered",
                 f"--base={base_sha}", "-o", str(out), f"{base_sha}..{tip}")
        cover, patches = read_patch_dir(out)
        touched = sorted({f for p in patches for f in p.files})
        clone = scratch_clone(tree, base_sha, touched, workdir / "series")
        for p, c in zip(patches, commits):
            p.commit = c
        final = repo.tree_id(tip)
        return Series(tree, clone, base_sha, cover, patches, final, f"branch {branch}")

    directory = Path(series_dir or "outgoing")
    cover, patches = read_patch_dir(directory)
    base_rev = base or _base_from_cover(cover)
    if base_rev is None:
        raise InputError(f"--series {directory}: the cover letter has no 'base-commit:' line; "
                         f"name the base with --base")
    base_sha = resolve(base_rev, "--base")
    touched = sorted({f for p in patches for f in p.files})
    clone = scratch_clone(tree, base_sha, touched, workdir / "series")
    commits = git_am(clone, [p.path for p in patches])
    if len(commits) != len(patches):
        raise InputError(f"--series {directory}: {len(patches)} patch files gave {len(commits)} commits")
    for p, c in zip(patches, commits):
        p.commit = c
    final = _repo(clone).tree_id("HEAD")
    return Series(tree, clone, base_sha, cover, patches, final, f"series {directory}")


# --------------------------------------------------------------------------
# checkpatch
# --------------------------------------------------------------------------

@dataclass
class CheckpatchResult:
    errors: int = 0
    warnings: int = 0
    checks: int = 0
    messages: list[str] = field(default_factory=list)  # "ERROR:TYPE: text (FILE:LINE)"
    output: str = ""

    @property
    def clean(self) -> bool:
        return self.errors == 0 and self.warnings == 0


def install_checkpatch(clone: Path, base: str, dest: Path) -> Path:
    """Copy checkpatch.pl and the data it reads from the base commit."""
    for rel in (CHECKPATCH, *CHECKPATCH_DATA):
        data = _repo(clone).read_blob(base, rel)
        if data is None:
            if rel == CHECKPATCH:
                raise InputError(f"the base {base[:12]} has no {CHECKPATCH}; checkpatch needs the kernel's own script")
            continue  # checkpatch warns and goes on without its word lists
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    script = dest / CHECKPATCH
    script.chmod(0o755)
    return script


def run_checkpatch(script: Path, patch: Path, git_dir: Path, home: Path) -> CheckpatchResult:
    if shutil.which("perl") is None:
        raise ToolError("perl not found; checkpatch.pl needs it (Debian: apt-get install perl)")
    # cwd and HOME hold no .checkpatch.conf, so the user's settings do not
    # change the verdict; GIT_DIR lets checkpatch look up commit ids that the
    # messages cite.
    env = dict(os.environ, HOME=str(home), GIT_DIR=str(git_dir), LC_ALL="C", LANGUAGE="C")
    proc = subprocess.run(["perl", str(script), "--no-tree", "--color=never", "--show-types",
                           str(patch.resolve())],
                          cwd=home, env=env, capture_output=True, text=True, errors="replace", check=False)
    out = proc.stdout
    res = CheckpatchResult(output=out + proc.stderr)
    m = re.search(r"^total: (\d+) errors, (\d+) warnings, (?:(\d+) checks, )?\d+ lines checked", out, re.M)
    if not m:
        last = (proc.stderr.strip().splitlines() or ["no summary line"])[-1]
        raise RewriterError(f"checkpatch.pl gave no result for {patch.name}: {last}")
    res.errors, res.warnings, res.checks = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^(ERROR|WARNING|CHECK):", line):
            where = ""
            for nxt in lines[i + 1:i + 3]:
                w = re.match(r"^#\d+: FILE: (\S+)", nxt)
                if w:
                    where = f" ({w.group(1)})"
                    break
            res.messages.append(line + where)
    return res


# --------------------------------------------------------------------------
# the mail round trip
# --------------------------------------------------------------------------

class _Inbox:
    """An aiosmtpd handler that keeps every message as it arrived."""

    def __init__(self):
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), data))
        return "250 Message accepted for delivery"


class SMTPServer:
    """aiosmtpd on 127.0.0.1, on a port the kernel picks, in its own thread."""

    def __init__(self):
        try:
            from aiosmtpd.smtp import SMTP
        except ImportError:
            raise ToolError("the mail check needs the Python package aiosmtpd (pip install aiosmtpd, "
                            "or 'make venv')") from None
        self._smtp = SMTP
        self.inbox = _Inbox()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> SMTPServer:
        def factory():
            return self._smtp(self.inbox, hostname="localhost", data_size_limit=64 << 20,
                              enable_SMTPUTF8=True, decode_data=False)

        self._server = self._loop.run_until_complete(
            self._loop.create_server(factory, host="127.0.0.1", port=0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        async def close():
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


@dataclass
class MailResult:
    sent: int = 0
    received: int = 0
    mbox: str = ""
    problems: list[str] = field(default_factory=list)
    per_patch: dict[int, list[str]] = field(default_factory=dict)  # number -> problems
    applied: bool = False
    tree_matches: bool = False
    recipients: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and not any(self.per_patch.values()) and self.tree_matches


def write_mboxrd(messages: list[bytes], path: Path) -> None:
    """mboxrd: a 'From ' separator line before each message, and one more
    '>' before every line of the message that starts with '>*From '."""
    with open(path, "wb") as fh:
        for data in messages:
            fh.write(b"From MAILER-DAEMON Thu Jan  1 00:00:00 1970\n")
            text = data.replace(b"\r\n", b"\n")
            for line in text.split(b"\n")[:-1] if text.endswith(b"\n") else text.split(b"\n"):
                if re.match(rb"^>*From ", line):
                    line = b">" + line
                fh.write(line + b"\n")
            fh.write(b"\n")


def _sender(files: list[Path]) -> str:
    msg = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    sender = str(msg.get("From", "")).strip()
    if not sender:
        raise InputError(f"{files[0].name}: no From: header; the mail check sends as the series' author")
    return sender


def send_series(series: Series, workdir: Path, timeout: float = 300) -> MailResult:
    res = MailResult()
    files = ([series.cover.path] if series.cover else []) + [p.path for p in series.patches]
    if not (git.exec_path() / "git-send-email").exists():
        raise ToolError("git send-email not found; install it (Debian: apt-get install git-email, or 'make deps')")
    sender = _sender(files)
    with SMTPServer() as server:
        args = ["send-email", "--confirm=never", "--quiet",
                "--smtp-server=127.0.0.1", f"--smtp-server-port={server.port}",
                "--smtp-encryption=none", "--smtp-domain=localhost",
                f"--from={sender}", "--no-smtp-auth" if _supports_no_smtp_auth() else "--smtp-auth=none",
                *[str(f.resolve()) for f in files]]
        # GIT_SEND_EMAIL_NOTTY: read the (empty) standard input instead of
        # the terminal, so the "To whom?" question gets no extra address and
        # the recipients are those written in the files.
        clone = _repo(series.clone)
        try:
            proc = clone.run(*args, env=clone.env({"GIT_SEND_EMAIL_NOTTY": "1"}), timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise RewriterError(f"git send-email did not finish in {timeout:.0f}s") from None
        # the server may still be storing the last message
        deadline = time.monotonic() + 10
        while len(server.inbox.messages) < len(files) and time.monotonic() < deadline:
            time.sleep(0.05)
        messages = list(server.inbox.messages)
    res.sent = len(files)
    res.received = len(messages)
    if proc.returncode != 0:
        last = (proc.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
        res.problems.append(f"git send-email failed: {last}")
    if len(messages) != len(files):
        res.problems.append(f"{len(files)} files sent, {len(messages)} messages arrived")
    mbox = workdir / "series.mbox"
    write_mboxrd([m[2] for m in messages], mbox)
    res.mbox = str(mbox)
    res.recipients = sorted({r for _f, rcpts, _d in messages for r in rcpts})
    _check_messages(series, messages, res)
    # git am stops at the cover letter (it has no diff); like b4, apply the
    # patches only.
    patches_only = workdir / "patches.mbox"
    write_mboxrd([d for _f, _r, d in messages if not _is_cover(d)], patches_only)
    _check_am(series, patches_only, workdir, res)
    return res


def _is_cover(data: bytes) -> bool:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    m = SUBJECT_RE.match(" ".join(str(msg.get("Subject", "")).split()))
    return bool(m) and int(m.group("n")) == 0


_NO_SMTP_AUTH: bool | None = None


def _supports_no_smtp_auth() -> bool:
    """--no-smtp-auth exists from git 2.41; older ones take --smtp-auth=none."""
    global _NO_SMTP_AUTH
    if _NO_SMTP_AUTH is None:
        _NO_SMTP_AUTH = "--no-smtp-auth" in git.help_text("send-email")
    return _NO_SMTP_AUTH


def _check_messages(series: Series, messages: list[tuple[str, list[str], bytes]], res: MailResult) -> None:
    expected = ([series.cover] if series.cover else []) + series.patches
    parsed = [email.message_from_bytes(d, policy=email.policy.default) for _f, _r, d in messages]
    for i, entry in enumerate(expected):
        problems = res.per_patch.setdefault(entry.number, [])
        if i >= len(parsed):
            problems.append("did not arrive")
    cover_id = None
    prefixes = set()
    totals = set()
    for i, msg in enumerate(parsed[:len(expected)]):
        entry = expected[i]
        problems = res.per_patch[entry.number]
        names = Counter(k.lower() for k in msg.keys())
        dups = sorted(n for n in SINGLE_HEADERS if names.get(n, 0) > 1)
        if dups:
            problems.append("duplicate headers: " + ", ".join(dups))
        subject = " ".join(str(msg.get("Subject", "")).split())
        m = SUBJECT_RE.match(subject)
        if not m:
            problems.append(f"Subject has no [PREFIX n/N]: {subject!r}")
        else:
            prefixes.add(m.group("prefix"))
            totals.add(int(m.group("total")))
            if int(m.group("n")) != entry.number:
                problems.append(f"Subject numbered {m.group('n')}, expected {entry.number}")
            if subject != entry.subject:
                problems.append(f"Subject changed on the way: {entry.subject!r} -> {subject!r}")
        if not str(msg.get("From", "")).strip():
            problems.append("no From:")
        if not (str(msg.get("To", "")).strip() or str(msg.get("Cc", "")).strip()):
            problems.append("no To: and no Cc:")
        msgid = str(msg.get("Message-Id", "")).strip()
        if not msgid:
            problems.append("no Message-Id:")
        if i == 0:
            cover_id = msgid
            if msg.get("In-Reply-To") and series.cover is not None:
                problems.append("the cover letter replies to another message")
        else:
            reply = str(msg.get("In-Reply-To", "")).strip()
            refs = str(msg.get("References", "")).split()
            if reply != cover_id:
                problems.append(f"In-Reply-To {reply or '(none)'} is not the cover letter's {cover_id}")
            if cover_id not in refs:
                problems.append("References does not name the cover letter")
    if len(prefixes) > 1:
        res.problems.append("the Subject prefixes differ: " + ", ".join(sorted(prefixes)))
    if totals and totals != {len(series.patches)}:
        res.problems.append(f"the Subjects count {sorted(totals)} patches, the series has {len(series.patches)}")


def _check_am(series: Series, mbox: Path, workdir: Path, res: MailResult) -> None:
    clone = scratch_clone(series.tree, series.base, series.touched(), workdir / "am")
    try:
        git_am(clone, [mbox], mbox=True)
    except InputError as exc:
        res.problems.append(f"the mbox does not apply: {exc}")
        return
    res.applied = True
    got = _repo(clone).tree_id("HEAD")
    res.tree_matches = got == series.final_tree
    if not res.tree_matches:
        diff = _repo(clone).run("diff", "--stat", series.final_tree, got).stdout.decode(errors="replace").strip()
        res.problems.append(f"git am of the mbox gives tree {got[:12]}, the series {series.final_tree[:12]}: {diff}")
    # The post-image blob ids in the patches' index lines must be what the
    # applied mbox holds.
    for p in series.patches:
        text = p.path.read_text(errors="replace")
        for m in re.finditer(r"^diff --git a/\S+ b/(\S+)\n(?:(?!diff --git).*\n)*?index [0-9a-f]+\.\.([0-9a-f]+)",
                             text, re.M):
            path, short = m.group(1), m.group(2)
            if re.fullmatch(r"0+", short):
                continue
            blob = _repo(clone).resolve(f"{p.commit}:{path}")
            if blob is not None and not blob.startswith(short):
                res.per_patch.setdefault(p.number, []).append(f"{path}: blob is not {short}")


# --------------------------------------------------------------------------
# the whole check
# --------------------------------------------------------------------------

@dataclass
class Report:
    series: Series
    checkpatch: dict[int, CheckpatchResult] = field(default_factory=dict)
    build: object | None = None  # rewriter.kbuild.BuildReport
    boot: object | None = None  # rewriter.boot.BootReport
    mail: MailResult | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def failed(self) -> bool:
        if any(not r.clean for r in self.checkpatch.values()):
            return True
        if self.build is not None and self.build.failed():
            return True
        if self.boot is not None and self.boot.failed():
            return True
        return self.mail is not None and not self.mail.ok

    def to_json(self) -> dict:
        s = self.series
        patches = []
        for p in ([s.cover] if s.cover else []) + s.patches:
            entry = {"number": p.number, "file": p.path.name, "subject": p.subject,
                     "commit": p.commit or None, "files": p.files}
            cp = self.checkpatch.get(p.number)
            if cp is not None:
                entry["checkpatch"] = {"errors": cp.errors, "warnings": cp.warnings, "checks": cp.checks,
                                       "messages": cp.messages}
            if self.build is not None and p.commit:
                entry["build"] = self.build.patch_json(p.commit)
            if self.mail is not None:
                entry["mail"] = {"problems": self.mail.per_patch.get(p.number, [])}
            patches.append(entry)
        out = {"source": s.source, "base": s.base, "final_tree": s.final_tree, "patches": patches,
               "seconds": {k: round(v, 1) for k, v in self.seconds.items()}, "ok": not self.failed()}
        if self.build is not None:
            out["build"] = self.build.to_json()
        if self.boot is not None:
            out["boot"] = self.boot.to_json()
        if self.mail is not None:
            m = self.mail
            out["mail"] = {"sent": m.sent, "received": m.received, "mbox": m.mbox, "applied": m.applied,
                           "tree_matches": m.tree_matches, "recipients": m.recipients, "problems": m.problems,
                           "ok": m.ok}
        return out


def run_checkpatch_all(series: Series, workdir: Path) -> dict[int, CheckpatchResult]:
    home = workdir / "checkpatch"
    home.mkdir()
    script = install_checkpatch(series.clone, series.base, home)
    git_dir = series.clone / ".git"
    return {p.number: run_checkpatch(script, p.path, git_dir, home) for p in series.patches}


def render_text(report: Report) -> str:
    s = report.series
    out = [f"rewriter check: {s.source}, base {s.base[:12]}, {len(s.patches)} patches"]
    if report.checkpatch:
        out.append("")
        out.append("checkpatch (the base's scripts/checkpatch.pl --no-tree):")
        for p in s.patches:
            r = report.checkpatch[p.number]
            out.append(f"  {p.number:2d} {p.path.name}: {r.errors} errors, {r.warnings} warnings, {r.checks} checks")
            for msg in r.messages:
                out.append(f"       {msg}")
    if report.build is not None:
        out.append("")
        out.extend(report.build.render_lines(s))
    if report.boot is not None:
        out.append("")
        out.extend(report.boot.render_lines())
    if report.mail is not None:
        m = report.mail
        out.append("")
        out.append(f"mail: {m.received}/{m.sent} messages arrived through git send-email; "
                   f"mbox {m.mbox}; recipients: {', '.join(m.recipients) or 'none'}")
        out.append(f"  git am of the mbox onto the base: {'applied' if m.applied else 'FAILED'}, "
                   f"final tree {'matches the series' if m.tree_matches else 'DIFFERS'}")
        for problem in m.problems:
            out.append(f"  problem: {problem}")
        for number, problems in sorted(m.per_patch.items()):
            for problem in problems:
                out.append(f"  {number:2d}: {problem}")
    out.append("")
    out.append("summary:")
    head = f"  {'#':>2}  {'checkpatch':<12}"
    if report.build is not None:
        head += f"  {'build':<28}"
    if report.mail is not None:
        head += f"  {'mail':<8}"
    out.append(head + "  subject")
    for p in ([s.cover] if s.cover else []) + s.patches:
        cp = report.checkpatch.get(p.number)
        row = f"  {p.number:2d}  "
        if cp is None:
            row += f"{'-':<12}"
        else:
            row += f"{('ok' if cp.clean else f'{cp.errors}E {cp.warnings}W'):<12}"
        if report.build is not None:
            row += f"  {(report.build.patch_summary(p.commit) if p.commit else '-'):<28}"
        if report.mail is not None:
            row += f"  {('FAIL' if report.mail.per_patch.get(p.number) else 'ok'):<8}"
        out.append(row + "  " + p.subject)
    timing = ", ".join(f"{k} {v:.0f}s" for k, v in report.seconds.items())
    out.append(f"result: {'FAILED' if report.failed() else 'ok'} ({timing})")
    return "\n".join(out) + "\n"


def _keep_mbox(source: Path, keep: Path) -> None:
    """Copy the mbox to keep, whole or not at all: through a new file beside
    it, renamed into place."""
    tmp = None
    try:
        fd, name = tempfile.mkstemp(prefix=f".{keep.name}.", suffix=".rewriter-tmp", dir=keep.parent)
        os.close(fd)
        tmp = Path(name)
        shutil.copyfile(source, tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, keep)
        tmp = None
    except OSError as exc:
        raise InputError(f"--mbox {keep}: cannot write it ({exc.strerror or exc}); "
                         f"choose another place with --mbox") from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check(tree: str, series_dir: str | None, branch: str | None, base: str | None,
          build: bool, mail: bool, progress=None, build_options: dict | None = None,
          mbox: str | None = None, mbox_dir: str | None = None, boot: bool = False,
          boot_options: dict | None = None) -> Report:
    """Run the checks.  The scratch clones live in a temporary directory
    that is removed at the end; the mbox of what arrived is kept at mbox
    (default: rewriter-check-<base>.mbox in mbox_dir, or in the temporary
    directory)."""
    say = progress or (lambda text: None)
    workdir = Path(tempfile.mkdtemp(prefix="rewriter-check-"))
    try:
        t0 = time.monotonic()
        series = load_series(tree, series_dir, branch, base, workdir)
        report = Report(series)
        report.seconds["load"] = time.monotonic() - t0
        t0 = time.monotonic()
        say("checkpatch")
        report.checkpatch = run_checkpatch_all(series, workdir)
        report.seconds["checkpatch"] = time.monotonic() - t0
        if build:
            from rewriter import kbuild

            t0 = time.monotonic()
            report.build = kbuild.build_series(series, say, **(build_options or {}))
            report.seconds["build"] = time.monotonic() - t0
        if boot:
            from rewriter import boot as kboot

            t0 = time.monotonic()
            report.boot = kboot.boot_series(series, say, **(boot_options or {}))
            report.seconds["boot"] = time.monotonic() - t0
        if mail:
            t0 = time.monotonic()
            say("mail")
            report.mail = send_series(series, workdir)
            keep = Path(mbox) if mbox else Path(mbox_dir or tempfile.gettempdir()) / f"rewriter-check-{series.base[:12]}.mbox"
            _keep_mbox(Path(report.mail.mbox), keep)
            report.mail.mbox = str(keep)
            report.seconds["mail"] = time.monotonic() - t0
        return report
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

