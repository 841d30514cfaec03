"""Run one semantic patch over many files.

The runner owns parallelism, per-file timeouts and per-file failure; the
semantic patches know nothing of it.  Files come from the object store and
are written to a private scratch directory under their tree-relative path,
so that spatch reports positions we can map back without a checkout.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from rewriter.cache import SpatchCache
from rewriter.errors import ToolError

MIN_SPATCH = (1, 1, 1)

# The spatch processes running now, so that an interrupt can stop them
# instead of waiting for every queued file.
_running: set[subprocess.Popen] = set()
_running_lock = threading.Lock()
_stopping = threading.Event()
_versions: dict[str, str] = {}  # spatch's path -> its version, once checked


@contextmanager
def _pool(jobs: int):
    """A thread pool that, when the work is interrupted or fails, drops the
    files not started and kills the running spatch processes before the
    exception goes on, instead of waiting for every queued file."""
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        yield pool
    except BaseException:
        _stopping.set()
        try:
            pool.shutdown(wait=False, cancel_futures=True)
            with _running_lock:
                for proc in _running:
                    proc.kill()
            pool.shutdown(wait=True)
        finally:
            _stopping.clear()
        raise
    pool.shutdown(wait=True)


class Background:
    """fn() in a thread of its own, for work that waits on other programs
    (git, spatch, perl) beside the caller's.  result() joins it and gives
    what fn returned or raises what it raised; join() only waits, for a
    caller that fails first.  Both wait through an interrupt and raise it
    once the thread has stopped: a thread stopped dead at exit would leave
    its scratch directory behind.

    An interrupt can also land after the thread has started and before
    its caller holds it (inside this constructor, or before the caller's
    try): join_all() then waits for it all the same, and the command does
    so before it removes its scratch directory (rewriter.cli)."""

    _live: set[Background] = set()  # started and not yet joined
    _live_lock = threading.Lock()

    def __init__(self, fn: Callable[[], object], name: str = "rewriter-background"):
        self._value: list[object] = []
        self._failure: list[BaseException] = []

        def work() -> None:
            try:
                self._value.append(fn())
            except BaseException as exc:  # raised again in the caller's thread
                self._failure.append(exc)

        self._thread = threading.Thread(target=work, name=name)
        # An interrupt inside start() would leave a thread that is starting
        # and cannot be joined yet (no ident) and that the interpreter
        # does not wait for at exit: it would stop dead, halfway through
        # writing its scratch directory.  So interrupts wait until the
        # thread runs and is listed, and are then raised as they came.
        caught: list[int] = []
        held = {}
        if threading.current_thread() is threading.main_thread():
            held = {sig: signal.signal(sig, lambda signum, _frame: caught.append(signum))
                    for sig in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(sig) is not signal.SIG_IGN}
        try:
            with Background._live_lock:  # before start(): no moment when it runs unlisted
                Background._live.add(self)
            self._thread.start()
        finally:
            for sig, handler in held.items():
                signal.signal(sig, handler)
        for sig in caught[:1]:
            signal.raise_signal(sig)

    def join(self) -> None:
        interrupted: KeyboardInterrupt | None = None
        while True:
            try:
                if self._thread.ident is not None:  # not started: an interrupt came first
                    self._thread.join()
                break
            except KeyboardInterrupt as exc:
                interrupted = exc
        with Background._live_lock:
            Background._live.discard(self)
        if interrupted is not None:
            raise interrupted

    @classmethod
    def join_all(cls) -> None:
        """Wait for every thread started here and not joined yet."""
        while True:
            with cls._live_lock:
                live = next(iter(cls._live), None)
            if live is None:
                return
            live.join()

    def result(self) -> object:
        self.join()
        if self._failure:
            raise self._failure[0]
        return self._value[0]


def _lay_out(src: Path, files: dict[str, bytes]) -> Path:
    """Write files (tree-relative path -> bytes) below src; returns src."""
    for rel, data in files.items():
        dest = src / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    return src


# The marker of the lines a transforming rule prints (runner.edit).
TRANSFORM = "@@REWRITER-TRANSFORM@@"


@dataclass(frozen=True)
class Edited:
    """A file as a transformation left it, and what its rules printed."""

    data: bytes
    records: tuple[dict, ...] = ()


@dataclass(frozen=True)
class FileResult:
    path: str  # tree-relative
    records: tuple[dict, ...] = ()
    error: str | None = None


@dataclass
class Runner:
    jobs: int = field(default_factory=lambda: max(1, min(os.cpu_count() or 1, 8)))
    timeout: float = 120.0
    spatch: str = "spatch"
    progress: Callable[[str, int, int, str], None] | None = None  # (step, done, total, unit)
    cache: SpatchCache | None = None  # results of earlier runs, by content
    # "--python PATH" for every run, or nothing: see python_options().
    python: tuple[str, ...] | None = None

    def quiet(self) -> Runner:
        """The same runner for one file at a time, without progress lines
        (for work that a caller already spreads over the pool)."""
        return Runner(jobs=1, timeout=self.timeout, spatch=self.spatch, cache=self.cache,
                      python=self.python_options())

    def python_options(self) -> tuple[str, ...]:
        """The Python interpreter spatch is to use for the rules' scripts.

        Left to itself, spatch looks for python3 on PATH and runs it, ldd
        and ldconfig at every start; with a wrapper there (pyenv's shims)
        that costs more than a small file's whole analysis.  The python3
        beside spatch is the one its package was built with, so it is named
        outright.  REWRITER_SPATCH_PYTHON overrides the choice ("path" lets
        spatch search PATH as it would on its own).
        """
        if self.python is None:
            chosen = os.environ.get("REWRITER_SPATCH_PYTHON")
            if chosen is None:
                exe = shutil.which(self.spatch)
                beside = Path(exe).resolve().parent / "python3" if exe else None
                chosen = str(beside) if beside is not None and os.access(beside, os.X_OK) else "path"
            self.python = () if chosen == "path" else ("--python", chosen)
        return self.python

    def _cached(self, kind: str, rule: str, options: list[str], rel: str, data: bytes, compute):
        """compute(), or what it gave before for the same rule, options and file."""
        if self.cache is None:
            return compute()
        key = self.cache.key(rule, options, rel, data, kind)
        hit = self.cache.get(key)
        if hit is not None and kind == "transform" and "body" in hit:
            return Edited(hit["body"], tuple(hit.get("records", ())))
        if hit is not None and kind != "transform" and "records" in hit:
            return FileResult(rel, tuple(hit["records"]))
        value = compute()
        if kind == "transform" and isinstance(value, Edited):
            self.cache.put(key, {"records": list(value.records)}, value.data)
        elif kind != "transform" and not value.error:
            self.cache.put(key, {"records": list(value.records)})
        return value

    def check_spatch(self) -> str:
        exe = shutil.which(self.spatch)
        if exe is not None and exe in _versions:  # several stages ask; one answer per process
            return _versions[exe]
        if exe is None:
            raise ToolError("spatch not found; install Coccinelle (Debian: apt-get install coccinelle) or run 'make deps'")
        try:
            out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False,
                                 timeout=60, errors="replace").stdout
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ToolError(f"cannot run {exe} --version ({exc}); install Coccinelle 1.1.1 or newer") from None
        words = out.split()
        try:
            version = words[words.index("version") + 1]
            parts = tuple(int(x) for x in version.split(".")[:3])
        except (ValueError, IndexError):
            raise ToolError(f"cannot tell the version of {exe}; install Coccinelle 1.1.1 or newer") from None
        if parts < MIN_SPATCH:
            need = ".".join(map(str, MIN_SPATCH))
            raise ToolError(f"spatch {version} is too old; rewriter needs {need} or newer (Debian bookworm's coccinelle)")
        _versions[exe] = version
        return version

    def run(self, cocci_text: str, files: dict[str, bytes], marker: str,
            options: Iterable[str] = (), step: str = "spatch") -> list[FileResult]:
        """Apply cocci_text to each file on its own; collect marker lines."""
        options = list(options)
        return [res for _rel, res in self._each(
            cocci_text, files, step,
            lambda sp, src, rel: self._cached(marker, cocci_text, options, rel, files[rel],
                                              lambda: self._one(sp, src, rel, marker, options)))]

    def run_dir(self, cocci_text: str, files: dict[str, bytes], marker: str, step: str = "spatch") -> list[FileResult]:
        """run(), in one spatch run for all the files (--dir, spatch's own -j
        for the jobs): one start of spatch and of its Python instead of one
        per file.  The rule's records must name their file ("file", as
        spatch sees it from the directory).  A run that fails or times out
        is made again file by file (run()), so that the file to blame is
        named."""
        if len(files) < 2:
            return self.run(cocci_text, files, marker, step=step)
        if self.progress:
            self.progress(step, 0, len(files), "files")
        # The run does the work of every file, jobs at a time: its time limit
        # is what one file may take, once for each file a job processes.
        limit = self.timeout * -(-len(files) // self.jobs)
        together = self.run_together(cocci_text, files, marker, label=step, jobs=self.jobs, timeout=limit)
        found: dict[str, list[dict]] = {rel: [] for rel in files}
        strays = [r for r in together.records if r.get("file") not in found]
        if together.error or strays:
            return self.run(cocci_text, files, marker, step=step)
        for r in together.records:
            found[r["file"]].append(r)
        if self.progress:
            self.progress(step, len(files), len(files), "files")
        return [FileResult(rel, tuple(found[rel])) for rel in sorted(files)]

    def run_together(self, cocci_text: str, files: dict[str, bytes], marker: str, label: str,
                     jobs: int = 1, timeout: float | None = None) -> FileResult:
        """One spatch run for all the files (spatch --dir, which still takes
        each file on its own): one start of spatch and of its Python instead
        of one per file.  The result, named label, holds the records of
        every file; an error is the run's, whichever file caused it."""
        options = ["--include-headers"] if any(rel.endswith(".h") for rel in files) else []
        if jobs > 1:
            options += ["-j", str(jobs)]
        digest = b"".join(hashlib.sha256(rel.encode("utf-8", "surrogateescape") + b"\0" + data).digest()
                          for rel, data in sorted(files.items()))

        def compute() -> FileResult:
            with tempfile.TemporaryDirectory(prefix="rewriter-") as scratch:
                root = Path(scratch)
                sp = root / "rule.cocci"
                sp.write_text(cocci_text)
                src = _lay_out(root / "src", files)
                res = self._one(sp, src, ".", marker, options, whole_dir=True, timeout=timeout)
                return FileResult(label, res.records, res.error)

        return self._cached(marker, cocci_text, [*options, "--dir"], label, digest, compute)

    def run_many(self, work: dict[str, tuple[str, bytes]], marker: str, step: str = "spatch") -> dict[str, FileResult]:
        """Like run(), with a rule of its own for each file: {path: (rule, data)}."""
        paths = sorted(work)
        with tempfile.TemporaryDirectory(prefix="rewriter-") as scratch:
            root = Path(scratch)
            src = _lay_out(root / "src", {path: work[path][1] for path in paths})
            rules = {}
            for i, path in enumerate(paths):
                rules[path] = root / f"rule{i}.cocci"
                rules[path].write_text(work[path][0])
            return self.map(lambda path: self._cached(marker, work[path][0], [], path, work[path][1],
                                                      lambda: self._one(rules[path], src, path, marker, [])),
                            paths, step)

    def map(self, fn, items: list, step: str, unit: str = "files") -> dict:
        """fn(item) for each item, in the pool, with progress: {item: result}."""
        out = {}
        with _pool(self.jobs) as pool:
            for item, value in zip(items, pool.map(fn, items)):
                out[item] = value
                if self.progress:
                    self.progress(step, len(out), len(items), unit)
        return out

    def transform(self, cocci_text: str, files: dict[str, bytes], options: Iterable[str] = (),
                  step: str = "transform") -> dict[str, bytes | FileResult]:
        """Apply cocci_text to each file on its own and return the new contents.

        Each file is rewritten in place (spatch --in-place) in the scratch
        directory.  The value for a path is the file's bytes afterwards (the
        same bytes when no rule changed it), or a FileResult whose error
        says why spatch failed on it.
        """
        return {rel: value if isinstance(value, FileResult) else value.data
                for rel, value in self.edit(cocci_text, files, options, step).items()}

    def edit(self, cocci_text: str, files: dict[str, bytes], options: Iterable[str] = (),
             step: str = "transform") -> dict[str, Edited | FileResult]:
        """transform(), with the lines the rules printed under TRANSFORM
        (convert.cocci.j2 names each rule that made its edit)."""
        options = ["--in-place", *options]

        def one(sp: Path, src: Path, rel: str) -> Edited | FileResult:
            res = self._one(sp, src, rel, TRANSFORM, options)
            return res if res.error else Edited((src / rel).read_bytes(), res.records)

        return dict(self._each(cocci_text, files, step,
                               lambda sp, src, rel: self._cached("transform", cocci_text, options, rel, files[rel],
                                                                 lambda: one(sp, src, rel))))

    def _each(self, cocci_text: str, files: dict[str, bytes], step: str, work) -> list[tuple[str, object]]:
        """Write the rule and the files to a private scratch directory and run
        work(rule, src_dir, path) for each file in the pool, in path order."""
        with tempfile.TemporaryDirectory(prefix="rewriter-") as scratch:
            root = Path(scratch)
            sp = root / "rule.cocci"
            sp.write_text(cocci_text)
            src = _lay_out(root / "src", files)
            names = sorted(files)
            out: list[tuple[str, object]] = []
            with _pool(self.jobs) as pool:
                for rel, value in zip(names, pool.map(lambda rel: work(sp, src, rel), names)):
                    out.append((rel, value))
                    if self.progress:
                        self.progress(step, len(out), len(names), "files")
            return out

    def _one(self, sp: Path, src: Path, rel: str, marker: str, options: list[str],
             whole_dir: bool = False, timeout: float | None = None) -> FileResult:
        cmd = [self.spatch, *self.python_options(), "--very-quiet", "--no-includes", "--no-show-diff",
               # Relative to src, where spatch runs: the rules name files as
               # they see them, and a TMPDIR reached through a symbolic link
               # would make an absolute path differ from the working directory.
               # ("./" keeps a name that starts with "-" from being an option).
               *options, "--sp-file", str(sp), *(["--dir"] if whole_dir else []), os.path.join(".", rel)]
        with _running_lock:
            if _stopping.is_set():
                return FileResult(rel, error="interrupted")
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    cwd=src, errors="replace")
            _running.add(proc)
        try:
            limit = self.timeout if timeout is None else timeout
            stdout, stderr = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return FileResult(rel, error=f"spatch timed out after {limit:.0f}s")
        finally:
            with _running_lock:
                _running.discard(proc)
        records = []
        prefix = marker + " "
        for line in stdout.splitlines():
            if line.startswith(prefix):
                records.append(json.loads(line[len(prefix):]))
        if proc.returncode != 0:
            last = next((l for l in reversed(stderr.splitlines()) if l.strip()), "no message")
            return FileResult(rel, tuple(records), error=f"spatch failed: {last}")
        return FileResult(rel, tuple(records))
