"""Git plumbing for the series: commits made in the object store only.

Every command runs with --git-dir, from a temporary directory, and trees
are made with ls-tree and mktree (no index at all): nothing reads or
writes the repository's work tree, its index or HEAD.  Refs are written in one
`git update-ref --stdin` transaction, and only by update_refs(), which
expects each ref as it was found (a new one must not exist); a series
moves its objects in and writes its refs under publish_lock(), one
rewriter at a time per repository.

Inside quarantine(), new objects go to a private object directory in the
temporary directory (the repository's objects are its alternate, as git
does for a push it has not accepted yet); migrate() moves them into the
repository just before the refs are written.  A command that fails or is
interrupted before that leaves no object behind.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import re
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rewriter.errors import InputError, RewriterError
from rewriter.git import Repo, identity_environment

ZERO = "0" * 40
_IDENT = re.compile(r"^(?P<name>[^<>\n\r]*?) <(?P<email>[^<>\s]+)>$")


@dataclass(frozen=True)
class Ident:
    name: str
    email: str

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"

    @property
    def domain(self) -> str:
        return self.email.rpartition("@")[2] or "localhost"


def parse_ident(text: str, what: str = "--author") -> Ident:
    """'Name <email>' -> Ident; anything else (line breaks included) refused."""
    if "\n" in text or "\r" in text or "\0" in text:
        raise InputError(f"{what}: {text!r} contains a line break; give one 'Name <email>'")
    m = _IDENT.match(text.strip())
    if not m or not m.group("name").strip() or "@" not in m.group("email"):
        raise InputError(f"{what}: {text!r} is not of the form 'Name <email>'")
    return Ident(m.group("name").strip(), m.group("email"))


@dataclass(frozen=True)
class When:
    """A git date: seconds since the epoch and a +hhmm offset."""

    epoch: int
    tz: str

    def plus(self, seconds: int) -> When:
        return When(self.epoch + seconds, self.tz)

    def __str__(self) -> str:
        return f"@{self.epoch} {self.tz}"


class Git(Repo):
    """git commands on one repository's object store and refs (run from a
    temporary directory with --git-dir, by rewriter.git)."""

    def __init__(self, git_dir: str | os.PathLike[str]):
        super().__init__(git_dir)
        self._quarantine: str | None = None  # the private object directory, inside quarantine()
        self._objects: str | None = None  # the repository's object directory, once asked for
        self._format: str | None = None  # sha1 or sha256, once asked for

    def env(self, extra: dict[str, str] | None = None, clean_config: bool = False) -> dict[str, str]:
        """The gateway's environment; inside quarantine(), new objects go to
        the private directory (clean_config: see rewriter.git.environment)."""
        quarantine = {}
        if self._quarantine is not None:
            quarantine = {"GIT_OBJECT_DIRECTORY": self._quarantine,
                          "GIT_ALTERNATE_OBJECT_DIRECTORIES": self.objects_dir()}
        return super().env({**quarantine, **(extra or {})}, clean_config)

    # ------------------------------------------------------------ reading

    def modes(self, rev: str, paths: list[str]) -> dict[str, str]:
        """The mode of each path at rev (100644 for a path not there yet)."""
        found = {path: "100644" for path in paths}
        if paths:
            for path, (mode, _kind, _oid) in self.ls_tree(rev, paths).items():
                if path in found:
                    found[path] = mode
        return found

    def directories(self, rev: str) -> list[str]:
        return self.out("ls-tree", "-r", "-d", "--name-only", rev).splitlines()

    def committer_date(self, rev: str) -> When:
        epoch, _day, _time, tz = self.out("log", "-1", "--format=%ct %ci", rev).split()
        return When(int(epoch), tz)

    def subjects(self, rev: str, paths: list[str], limit: int = 50) -> list[str]:
        """Subjects of the last commits up to rev that touched paths."""
        return self.out("log", f"-n{limit}", "--format=%s", "--no-merges", rev, "--", *paths).splitlines()

    def messages(self, rev: str, paths: list[str], limit: int = 50) -> list[tuple[str, str]]:
        """(subject, body) of the last commits up to rev that touched paths."""
        out = self.out("log", f"-n{limit}", "--format=%s%x1f%b%x1e", "--no-merges", rev, "--", *paths)
        return [tuple(r.strip("\n").split("\x1f", 1)) for r in out.split("\x1e") if "\x1f" in r]

    def line_log(self, rev: str, path: str, start: int, end: int, limit: int = 20) -> list[tuple[str, str, str]]:
        """(author, subject, body) of the last commits up to rev that
        changed lines start..end of path (git log -L)."""
        proc = self.run("log", f"-n{limit}", f"-L{start},{end}:{path}", "--no-patch",
                        "--format=%an <%ae>%x1f%s%x1f%b%x1e", rev, check=False)
        if proc.returncode != 0:
            return []
        out = proc.stdout.decode("utf-8", "replace")
        return [tuple(r.strip("\n").split("\x1f", 2)) for r in out.split("\x1e") if r.count("\x1f") >= 2]

    def user_ident(self) -> Ident:
        proc = self.run("var", "GIT_AUTHOR_IDENT", check=False, env=identity_environment())
        text = proc.stdout.decode("utf-8", "replace").strip()
        m = re.match(r"^(.*) (\d+) ([+-]\d{4})$", text)
        if proc.returncode != 0 or not m:
            raise InputError("no git identity for Signed-off-by: set user.name and user.email, "
                             "or pass --author 'Name <email>'")
        return parse_ident(m.group(1), "git var GIT_AUTHOR_IDENT")

    def branch_checked_out(self, branch: str) -> bool:
        proc = self.run("symbolic-ref", "--quiet", "HEAD", check=False)
        return proc.stdout.decode().strip() == f"refs/heads/{branch}"

    def check_branch_name(self, branch: str) -> None:
        proc = self.run("check-ref-format", f"refs/heads/{branch}", check=False)
        if proc.returncode != 0 or "\n" in branch:
            raise InputError(f"--branch {branch!r}: not a valid branch name")

    def objects_dir(self) -> str:
        """The repository's object directory (the common one, for a worktree)."""
        if self._objects is None:  # quarantine() asks before it starts: env() can use it
            cwd = tempfile.gettempdir()
            path = self.out("rev-parse", "--git-path", "objects", cwd=cwd)
            self._objects = os.path.join(cwd, path)
        return self._objects

    def writable(self) -> str | None:
        """None when objects and refs can be written here, else the
        directory that cannot be written."""
        for path in (self.objects_dir(), os.path.join(self.git_dir, "refs"), self.git_dir):
            if not os.access(path, os.W_OK):
                return path
        return None

    # ------------------------------------------------------------ quarantine

    @contextmanager
    def quarantine(self):
        """New objects go to a private object directory until migrate()."""
        self.objects_dir()
        with tempfile.TemporaryDirectory(prefix="rewriter-objects-") as tmp:
            self._quarantine = tmp
            try:
                yield
            finally:
                self._quarantine = None

    def migrate(self) -> list[Path]:
        """Move the objects written in quarantine into the repository, packs
        after loose objects and a pack's .idx last, as git does; returns the
        files and directories added, for unmigrate().  When a move fails,
        what was added is taken away again before the error goes on."""
        if self._quarantine is None:
            return []
        src, dst = Path(self._quarantine), Path(self.objects_dir())
        order = {".pack": 0, ".idx": 2}
        files = sorted((p for p in src.rglob("*") if p.is_file() and p.relative_to(src).parts[0] != "info"),
                       key=lambda p: (p.parent.name == "pack", order.get(p.suffix, 1), str(p)))
        added: list[Path] = []
        try:
            for path in files:
                target = dst / path.relative_to(src)
                if target.exists():
                    continue  # git has it already: objects are named by their contents
                if not target.parent.is_dir():
                    try:
                        target.parent.mkdir()
                        added.append(target.parent)
                    except FileExistsError:  # another git made it meanwhile: it is not ours to remove
                        pass
                try:
                    os.rename(path, target)
                except OSError:  # another file system: copy beside it, then rename
                    fd, tmp = tempfile.mkstemp(prefix="tmp_obj_", dir=target.parent)
                    os.close(fd)
                    try:
                        shutil.copy2(path, tmp)
                        os.replace(tmp, target)
                    except BaseException:
                        os.unlink(tmp)
                        raise
                added.append(target)
        except BaseException as exc:
            self.unmigrate(added)
            if isinstance(exc, OSError):  # not the output directory's fault: say where
                raise InputError(f"{dst}: cannot move the new objects there ({exc.strerror or exc}); "
                                 f"nothing was written: make it writable, or run rewriter on a clone") from None
            raise
        return added

    @staticmethod
    def unmigrate(added: list[Path]) -> None:
        """Take away what migrate() added (files first, then the directories)."""
        for path in reversed(added):
            try:
                if path.is_dir():
                    path.rmdir()
                else:
                    path.unlink()
            except OSError:
                pass

    # ------------------------------------------------------------ writing objects

    def blob(self, data: bytes) -> str:
        return self.out("hash-object", "-w", "--stdin", input=data)

    def blobs(self, datas: list[bytes]) -> list[str]:
        """blob() of each, with one git for all of them."""
        if not datas:
            return []
        with tempfile.TemporaryDirectory(prefix="rewriter-blobs-") as tmp:
            paths = []
            for i, data in enumerate(datas):
                paths.append(os.path.join(tmp, str(i)))
                Path(paths[-1]).write_bytes(data)
            ids = self.out("hash-object", "-w", "--no-filters", "--stdin-paths",
                           input="".join(f"{p}\n" for p in paths).encode()).split()
        if len(ids) != len(datas):
            raise RewriterError(f"git hash-object gave {len(ids)} ids for {len(datas)} files")
        return ids

    def object_format(self) -> str:
        if self._format is None:
            self._format = self.out("rev-parse", "--show-object-format") or "sha1"
        return self._format

    def commit(self, tree: str, parents: list[str], message: str, author: Ident, when: When,
               committed: When | None = None) -> str:
        """committed: the committer date, when it is not when."""
        env = self.env({
            "GIT_AUTHOR_NAME": author.name, "GIT_AUTHOR_EMAIL": author.email, "GIT_AUTHOR_DATE": str(when),
            "GIT_COMMITTER_NAME": author.name, "GIT_COMMITTER_EMAIL": author.email,
            "GIT_COMMITTER_DATE": str(committed or when),
        }, clean_config=True)
        args = ["commit-tree", "--no-gpg-sign", tree]
        for p in parents:
            args += ["-p", p]
        return self.out(*args, "-F", "-", input=message.encode("utf-8"), env=env)

    def tree_of_files(self, files: dict[str, bytes]) -> str:
        """A tree holding just these files (flat names), e.g. a record."""
        names = sorted(files)
        lines = [f"100644 blob {blob}\t{name}" for name, blob in zip(names, self.blobs([files[n] for n in names]))]
        return self.out("mktree", input=("\n".join(lines) + "\n").encode())

    # ------------------------------------------------------------ refs

    @contextmanager
    def publish_lock(self, wait: float = 60.0):
        """One rewriter at a time between this and the refs it writes: an
        exclusive flock(2) on the repository's object directory, held for
        the block.  Nothing is written for it, and the kernel lets it go
        when the process dies.  Another rewriter that holds it is waited
        for (it holds it only while it moves objects and writes refs)."""
        fd = os.open(self.objects_dir(), os.O_RDONLY | os.O_DIRECTORY)
        try:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN) or time.monotonic() > deadline:
                        raise InputError(f"{self.objects_dir()}: another rewriter has been writing its series "
                                         f"there for {wait:g} seconds; nothing was written: run again when it "
                                         f"is done") from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)  # lets the lock go

    def update_refs(self, updates: list[tuple[str, str, str | None]]) -> None:
        """(ref, new, old) all at once or not at all, in one transaction of
        git update-ref --stdin; old None: the ref must not exist (create).
        When a ref is not as expected (written meanwhile), RefMoved names
        the first such ref."""
        lines = "".join(f"create {ref} {new}\n" if old is None else f"update {ref} {new} {old}\n"
                        for ref, new, old in updates)
        # A git update-ref stopped halfway leaves the new refs' directories
        # and an empty reflog behind: Ctrl-C must not reach it (whole).
        proc = self.run("update-ref", "--stdin", input=lines.encode(), check=False, whole=True)
        if proc.returncode != 0:
            for ref, _new, old in updates:
                now = self.resolve(ref)
                if now != old:
                    raise RefMoved(ref, old, now)
            err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            raise InputError(f"could not create the refs ({err[-1] if err else 'git update-ref failed'}); "
                             f"nothing was written")


class RefMoved(InputError):
    """A ref is not where it was expected: another process wrote it."""

    def __init__(self, ref: str, old: str | None, now: str | None):
        super().__init__(f"{ref} was {'written' if now else 'deleted'} meanwhile; nothing was written")
        self.ref, self.old, self.now = ref, old, now


class Trees:
    """Trees made from others by putting files in, reading and making just
    the directories on their paths.

    An index of the whole tree would do, but every update-index and
    write-tree reads and writes all of it (86k entries, 0.1 s each, for a
    kernel).  Here a tree is listed once (ls-tree) however many commits
    change it, the new trees' ids are computed as git computes them, and
    write() makes all of them with one mktree, which must agree on the ids.
    """

    def __init__(self, git: Git):
        self.git = git
        self._entries: dict[str, dict[str, tuple[str, str, str]]] = {}  # id -> name -> (mode, type, id)
        self._pending: dict[str, str] = {}  # id -> mktree -z input, children before parents

    def with_files(self, tree: str, files: dict[str, tuple[str, str]]) -> str:
        """The id of tree with files ({path: (mode, blob)}) put in."""
        here: dict[str, tuple[str, str]] = {}
        below: dict[str, dict[str, tuple[str, str]]] = {}
        for path, entry in files.items():
            head, sep, rest = path.partition("/")
            if sep:
                below.setdefault(head, {})[rest] = entry
            else:
                here[head] = entry
        entries = dict(self._list(tree)) if tree else {}
        for name, sub in below.items():
            old = entries.get(name)
            subtree = old[2] if old is not None and old[1] == "tree" else ""
            entries[name] = ("040000", "tree", self.with_files(subtree, sub))
        for name, (mode, blob) in here.items():
            entries[name] = (mode, "blob", blob)
        return self._make(entries)

    def write(self) -> None:
        if not self._pending:
            return
        data = "".join(text + "\0" for text in self._pending.values())
        made = self.git.out("mktree", "-z", "--batch", input=data.encode("utf-8", "surrogateescape")).split()
        if made != list(self._pending):
            raise RewriterError("internal error: git mktree made other trees than were computed")
        self._pending.clear()

    def _list(self, tree: str) -> dict[str, tuple[str, str, str]]:
        if tree not in self._entries:
            self._entries[tree] = self.git.ls_tree(tree)
        return self._entries[tree]

    def _make(self, entries: dict[str, tuple[str, str, str]]) -> str:
        # git orders a tree's entries by name, a directory's name as if it
        # ended in "/", and writes a directory's mode without the 0.
        order = sorted(entries, key=lambda n: n.encode("utf-8", "surrogateescape") + (
            b"/" if entries[n][1] == "tree" else b""))
        body = b"".join(f"{entries[n][0].lstrip('0')} {n}".encode("utf-8", "surrogateescape") + b"\0"
                        + bytes.fromhex(entries[n][2]) for n in order)
        oid = hashlib.new(self.git.object_format(), b"tree %d\0" % len(body) + body).hexdigest()
        if oid not in self._entries:
            self._entries[oid] = entries
            self._pending[oid] = "".join(f"{entries[n][0]} {entries[n][1]} {entries[n][2]}\t{n}\0" for n in order)
        return oid
