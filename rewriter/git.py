"""The one way rewriter runs git.

Every git command of rewriter goes through a Repo here, which owns:

* the environment: none of the user's GIT_* or EMAIL* variables reaches
  git (a GIT_DIR, GIT_INDEX_FILE or GIT_OBJECT_DIRECTORY set by a hook or a
  shell would make git read or write another repository), prompts are off,
  and messages are in English for the errors shown to the user;
  clean_config also leaves out the user's and the system's settings, for
  output that the options alone must decide;
* where it runs: with --git-dir (and --work-tree when there is one) from a
  directory of our choosing, or, for a directory rewriter made or was told
  to use, from that directory without ever looking above it;
* its failures: one line naming the git command and git's last line of
  error (RewriterError), or an InputError where the input is at fault.

Every command is a git child process of its own (no library), so a Repo
can be used from several threads and an interrupt stops a command as it
stops any other child; only blob() keeps one `git cat-file --batch`
running for its reads (see _CatFile).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import threading
import weakref
from pathlib import Path

from rewriter.errors import InputError, RewriterError

# Variables that point git to another repository, work tree, index or
# object store; the others of the user's GIT_* are left out too, except
# where the user's identity is asked for (identity_environment()).
REPOSITORY_VARIABLES = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
                        "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_COMMON_DIR", "GIT_NAMESPACE",
                        "GIT_CEILING_DIRECTORIES", "GIT_DISCOVERY_ACROSS_FILESYSTEM", "GIT_QUARANTINE_PATH",
                        "GIT_REPLACE_REF_BASE", "GIT_NO_REPLACE_OBJECTS", "GIT_GRAFT_FILE", "GIT_SHALLOW_FILE",
                        "GIT_LITERAL_PATHSPECS", "GIT_GLOB_PATHSPECS", "GIT_NOGLOB_PATHSPECS",
                        "GIT_ICASE_PATHSPECS")
FIXED = {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "LANGUAGE": "C"}


def environment(extra: dict[str, str] | None = None, clean_config: bool = False) -> dict[str, str]:
    """The environment of every git command (see the module's text)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "EMAIL"))}
    env.update(FIXED)
    if clean_config:
        env["GIT_CONFIG_NOSYSTEM"] = "1"
        env["GIT_CONFIG_GLOBAL"] = os.devnull
    env.update(extra or {})
    return env


def identity_environment() -> dict[str, str]:
    """For `git var GIT_AUTHOR_IDENT`: the user's own variables (name,
    email, config files) are what is asked for; only the ones that point
    to another repository are left out."""
    env = {k: v for k, v in os.environ.items() if k not in REPOSITORY_VARIABLES}
    env.update(FIXED)
    return env


def _last_line(stderr: bytes) -> str:
    lines = stderr.decode("utf-8", "replace").strip().splitlines()
    return lines[-1] if lines else "no message"


def decode(data: bytes) -> str:
    """git's output as text: paths and file contents need not be UTF-8, and
    surrogateescape keeps their bytes."""
    return data.decode("utf-8", "surrogateescape")


class Repo:
    """git commands on one repository.

    git_dir: the repository, given to git as --git-dir; work_tree, its
    checked-out files (None for a bare repository, or when they are not to
    be read).  Without git_dir, git finds the repository in cwd itself
    (Repo.at()).  clean_config and extra: what env() gives every command
    that is not given an environment of its own.
    """

    def __init__(self, git_dir: str | os.PathLike[str] | None, work_tree: str | os.PathLike[str] | None = None,
                 cwd: str | os.PathLike[str] | None = None, clean_config: bool = False,
                 extra: dict[str, str] | None = None):
        self.git_dir = str(git_dir) if git_dir is not None else None
        self.work_tree = str(work_tree) if work_tree is not None else None
        self.cwd = str(cwd) if cwd is not None else None
        self.clean_config = clean_config
        self.extra = dict(extra or {})
        self._objects: _CatFile | None = None  # blob()'s cat-file, from the first read on

    @classmethod
    def at(cls, directory: str | os.PathLike[str], clean_config: bool = False,
           extra: dict[str, str] | None = None) -> Repo:
        """The repository whose work tree or git directory is directory
        (a clone rewriter made, or the tree the user named)."""
        return cls(None, cwd=directory, clean_config=clean_config, extra=extra)

    def env(self, extra: dict[str, str] | None = None, clean_config: bool = False) -> dict[str, str]:
        env = environment({**self.extra, **(extra or {})}, clean_config or self.clean_config)
        if self.git_dir is None:
            # git looks for the repository in cwd, and never above it (git
            # compares real paths).
            env["GIT_CEILING_DIRECTORIES"] = os.path.dirname(os.path.realpath(self.cwd or "."))
        return env

    def command(self, *args: str) -> list[str]:
        where = [f"--git-dir={self.git_dir}"] if self.git_dir is not None else []
        if self.work_tree is not None:
            where.append(f"--work-tree={self.work_tree}")
        return ["git", *where, *args]

    def directory(self) -> str:
        """Where commands run: cwd, else the work tree, else a temporary
        directory (with --git-dir and no --work-tree, git takes the
        directory it runs in for the work tree: none of the user's)."""
        return self.cwd or self.work_tree or tempfile.gettempdir()

    def run(self, *args: str, input: bytes | None = None, env: dict[str, str] | None = None,
            cwd: str | os.PathLike[str] | None = None, check: bool = True,
            timeout: float | None = None, whole: bool = False) -> subprocess.CompletedProcess:
        """git ARGS; with check, a failure is a RewriterError naming the
        command and git's last line of error.  whole: git runs in a session
        of its own, so that Ctrl-C at the terminal (SIGINT to the whole
        process group) does not stop it halfway; for a step that must be
        done whole or not at all, and that the caller defers interrupts
        around."""
        proc = subprocess.run(self.command(*args), input=input, capture_output=True, env=env or self.env(),
                              cwd=cwd or self.directory(), check=False, timeout=timeout,
                              stdin=subprocess.DEVNULL if input is None else None, start_new_session=whole)
        if check and proc.returncode != 0:
            raise RewriterError(f"git {_subcommand(args)} failed{self._where()}: {_last_line(proc.stderr)}")
        return proc

    def out(self, *args: str, **kw) -> str:
        """The output of git ARGS as text, without white space around it."""
        return decode(self.run(*args, **kw).stdout).strip()

    def ok(self, *args: str, **kw) -> bool:
        """Whether git ARGS succeeds (its output is not wanted)."""
        return self.run(*args, check=False, **kw).returncode == 0

    def _where(self) -> str:
        return f" in {self.cwd}" if self.cwd is not None else ""

    # ------------------------------------------------------------ reading

    def resolve(self, ref: str) -> str | None:
        """The id of the object ref names, None if it names none."""
        proc = self.run("rev-parse", "--verify", "--quiet", "--end-of-options", ref + "^{object}", check=False)
        if proc.returncode != 0:
            return None
        return proc.stdout.decode().strip() or None

    def commit_id(self, rev: str) -> str | None:
        """The id of the commit rev names (a tag is followed to it), None
        if it names no commit."""
        proc = self.run("rev-parse", "--verify", "--quiet", "--end-of-options", rev + "^{commit}", check=False)
        if proc.returncode != 0:
            return None
        return proc.stdout.decode().strip() or None

    def tree_id(self, rev: str) -> str:
        return self.out("rev-parse", "--verify", "--end-of-options", f"{rev}^{{tree}}")

    def read_blob(self, rev: str, path: str) -> bytes | None:
        """path's contents at rev, None if it is not a file there."""
        proc = self.run("cat-file", "blob", f"{rev}:{path}", check=False)
        return proc.stdout if proc.returncode == 0 else None

    def blob(self, oid: str) -> bytes:
        """The contents of the blob oid (it must exist)."""
        if self._objects is None:
            self._objects = _CatFile(self)
        data = self._objects.blob(oid)
        return data if data is not None else self.run("cat-file", "blob", oid).stdout  # its error, if any

    def ls_tree(self, rev: str, paths: list[str] | tuple[str, ...] = (), *options: str,
                literal: bool = False) -> dict[str, tuple[str, str, str]]:
        """{path: (mode, type, id)} of git ls-tree -z OPTIONS rev -- paths;
        literal: the paths are names, not patterns."""
        first = ("--literal-pathspecs",) if literal else ()
        return ls_tree_entries(decode(self.run(*first, "ls-tree", "-z", *options, rev, "--", *paths).stdout))

    def grep(self, *args: str, config: tuple[str, ...] = ()) -> str:
        """The output of git CONFIG grep ARGS, "" when nothing matched."""
        proc = self.run(*config, "grep", *args, check=False)
        if proc.returncode == 1:  # git grep's "no line matched"
            return ""
        if proc.returncode != 0:
            raise RewriterError(f"git grep failed{self._where()}: {_last_line(proc.stderr)}")
        return decode(proc.stdout)

    # ------------------------------------------------------------ files out of the store

    def export(self, rev: str, dest: str | os.PathLike[str]) -> None:
        """The files of rev written into the directory dest (git archive,
        unpacked by tar as it comes)."""
        archive = subprocess.Popen(self.command("archive", "--format=tar", "--end-of-options", rev),
                                   cwd=self.directory(), env=self.env(), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            tar = subprocess.run(["tar", "-x", "-C", str(dest)], stdin=archive.stdout, capture_output=True,
                                 check=False)
        finally:
            archive.stdout.close()
            err = archive.stderr.read()
            archive.stderr.close()
            status = archive.wait()
        if status != 0 or tar.returncode != 0:
            raise RewriterError(f"cannot export {rev} with git archive | tar: {_last_line(err + tar.stderr)}")

    # ------------------------------------------------------------ other repositories

    def clone_shared(self, dest: str | os.PathLike[str], *options: str) -> Repo:
        """A clone at dest that borrows this repository's objects (nothing is
        written here); the clone's Repo."""
        source = os.path.abspath(self.cwd or self.git_dir or ".")
        dest = Path(dest).absolute()
        settings = {"clean_config": self.clean_config, "extra": self.extra}
        Repo.at(dest.parent, **settings).run("clone", "-q", "--shared", *options, "--", source, str(dest))
        return Repo.at(dest, **settings)


class _CatFile:
    """One `git cat-file --batch` kept running for a Repo's blob(): a read
    is then a round trip through its pipes instead of a git started for
    it (0.4 against 1.9 ms on the kernel tree; a scan reads about 80).
    Reads from several threads take turns.  A process that died (Ctrl-C
    reaches it too) is started again once; when that fails as well, None
    (the caller asks git the ordinary way).  It ends with its Repo or when
    the interpreter exits, and by itself when rewriter dies (its input
    closes)."""

    def __init__(self, repo: Repo):
        self._repo = weakref.ref(repo)  # not kept alive by its own reader
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._env: dict[str, str] | None = None
        self._stop = None

    def blob(self, oid: str) -> bytes | None:
        if not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", oid):
            return None
        with self._lock:
            for _attempt in range(2):
                try:
                    return self._read(oid)
                except (OSError, ValueError):
                    self._close()
                except BaseException:  # interrupted between question and answer
                    self._close()
                    raise
        return None

    def _read(self, oid: str) -> bytes | None:
        repo = self._repo()
        if repo is None:
            raise ValueError("the Repo is gone")
        env = repo.env()
        if self._proc is None or self._proc.poll() is not None or env != self._env:
            self._close()
            self._proc = subprocess.Popen(repo.command("cat-file", "--batch"), cwd=repo.directory(),
                                          env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL)
            self._env = env
            self._stop = weakref.finalize(self, _stop_process, self._proc)
        self._proc.stdin.write(oid.encode() + b"\n")
        self._proc.stdin.flush()
        header = self._proc.stdout.readline().split()
        if len(header) == 2 and header[1] == b"missing":
            return None
        if len(header) != 3 or header[0] != oid.encode():
            raise ValueError(f"git cat-file --batch said {header!r}")
        size = int(header[2])
        data = self._proc.stdout.read(size + 1)  # the contents and a newline
        if len(data) != size + 1:
            raise ValueError("git cat-file --batch stopped short")
        return data[:-1] if header[1] == b"blob" else None

    def _close(self) -> None:
        if self._stop is not None:
            self._stop()
        self._proc = self._stop = None


def _stop_process(proc: subprocess.Popen) -> None:
    """End a cat-file --batch: at the end of its input it exits."""
    for stream in (proc.stdin, proc.stdout):
        try:
            stream.close()
        except OSError:
            pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _subcommand(args: tuple[str, ...]) -> str:
    """The name of the git command in ARGS (after any -c options)."""
    rest = list(args)
    while rest and rest[0].startswith("-"):
        rest = rest[2:] if rest[0] == "-c" else rest[1:]
    return rest[0] if rest else "(no command)"


def ls_tree_entries(out: str) -> dict[str, tuple[str, str, str]]:
    """{name: (mode, type, id)} from the output of git ls-tree -z."""
    entries = {}
    for item in filter(None, out.split("\0")):
        meta, name = item.split("\t", 1)
        mode, kind, oid = meta.split()
        entries[name] = (mode, kind, oid)
    return entries


def open_repository(path: str | os.PathLike[str], hint: str) -> Repo:
    """The repository at path itself (not one above it), with its work tree
    when it has one; hint says what to do instead (for the error)."""
    directory = os.path.abspath(path)
    if not os.path.isdir(directory):
        raise InputError(f"{path}: not a git repository; {hint}")
    probe = Repo.at(directory)
    proc = probe.run("rev-parse", "--path-format=absolute", "--git-dir", "--is-bare-repository",
                     "--is-inside-work-tree", check=False)
    lines = decode(proc.stdout).splitlines()
    if proc.returncode != 0 or len(lines) != 3:
        err = proc.stderr.decode("utf-8", "replace")
        if "not a git repository" in err:
            raise InputError(f"{path}: not a git repository; {hint}")
        if "safe.directory" in err:
            raise InputError(f"{path}: git refuses a repository that another user owns; if you trust it, "
                             f"run: git config --global --add safe.directory {directory}")
        why = next((l for l in err.splitlines() if l.startswith("fatal: ")), _last_line(proc.stderr))
        raise InputError(f"{path}: git cannot read the repository ({why.removeprefix('fatal: ')}); {hint}")
    git_dir, bare, inside = lines
    # Inside the work tree: found from directory without going up, so it
    # is the top of it.  (A git directory that is not bare, or a work tree
    # set elsewhere by core.worktree, is read without its files.)
    work_tree = directory if bare != "true" and inside == "true" else None
    return Repo(git_dir, work_tree)


def exec_path() -> Path:
    """Where git keeps its commands (git-send-email, ...)."""
    return Path(decode(subprocess.run(["git", "--exec-path"], capture_output=True, env=environment(),
                                      cwd=tempfile.gettempdir(), stdin=subprocess.DEVNULL,
                                      check=False).stdout).strip())


def help_text(command: str) -> str:
    """What `git COMMAND -h` prints (its options), from either stream."""
    proc = subprocess.run(["git", command, "-h"], capture_output=True, env=environment(),
                          cwd=tempfile.gettempdir(), stdin=subprocess.DEVNULL, check=False)
    return decode(proc.stdout + proc.stderr)
