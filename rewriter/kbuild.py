"""`rewriter check --build`: every commit of the series builds, with the
kernel's own Kbuild, and adds no warning.

The source: the base commit is exported once with `git archive` into
CACHE/src-<tree id> (never the user's work tree); for each state of the
series (the base, then each commit in order) the files the series touches
are written over it with their contents at that commit.  Only files whose
contents differ are written, so make's time stamps stay right and a
second run rebuilds nothing it built before.

The build: out of tree (O=CACHE/<arch>-<config hash>), one directory per
configuration, only the objects concerned: for each commit the .c files it
touches, and the series' .c files whose objects depend on a header it
touches (their .cmd dependency lists, from the base build, say which).

The configuration comes from the code: the Makefile line that builds the
object (obj-$(CONFIG_FOO) += bar.o, and the lines that put its directory
in the build) and the #ifdef CONFIG_X / #if IS_ENABLED(CONFIG_X) blocks
around the lines the series changes name the options; they are switched
on with scripts/config over the arch's defconfig.  Whether that compiled
the code in question is then checked on the object itself: nm must show
the function the file calls.  When it does not, the arch's next
defconfig is tried.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rewriter import recipe as recipe_mod
from rewriter.errors import RewriterError, ToolError


@dataclass(frozen=True)
class Arch:
    name: str  # the directory under arch/
    make_arch: str  # ARCH= for make
    cross: str  # CROSS_COMPILE= prefix ("" for the host compiler)
    package: str  # the Debian package of the cross compiler
    defconfigs: tuple[str, ...]  # tried in this order


def _host_is(machine: str) -> bool:
    return platform.machine() == machine


ARCHES = {
    "x86": Arch("x86", "x86_64", "" if _host_is("x86_64") else "x86_64-linux-gnu-", "gcc-x86-64-linux-gnu",
                ("defconfig",)),
    "arm": Arch("arm", "arm", "arm-linux-gnueabihf-", "gcc-arm-linux-gnueabihf",
                ("multi_v7_defconfig", "multi_v5_defconfig")),
    "powerpc": Arch("powerpc", "powerpc", "powerpc64le-linux-gnu-", "gcc-powerpc64le-linux-gnu",
                    ("ppc64le_defconfig",)),
    "arm64": Arch("arm64", "arm64", "" if _host_is("aarch64") else "aarch64-linux-gnu-", "gcc-aarch64-linux-gnu",
                  ("defconfig",)),
}
GENERIC_ARCH = "x86"  # code outside arch/ is built for x86_64

DIAG_RE = re.compile(r"^(?P<file>[^\s:][^:]*):(?P<line>\d+):(?:(?P<col>\d+):)? "
                     r"(?P<kind>warning|error|fatal error): (?P<msg>.*)$")
QUIET_RE = re.compile(r"^  ([A-Z][A-Z0-9_]*(?: \[[A-Z]\])?)\s+(\S+)$")
MAKE_ERR_RE = re.compile(r"^make(?:\[\d+\])?: \*\*\* \[[^\]]*?: (?P<target>\S+)\] Error \d+")


def default_cache() -> Path:
    """REWRITER_BUILD_CACHE, else ~/.cache/rewriter/build."""
    value = os.environ.get("REWRITER_BUILD_CACHE")
    return Path(value) if value else Path.home() / ".cache" / "rewriter" / "build"


def watched_pattern(function: str) -> re.Pattern:
    """pte_offset_map_nolock -> pte_offset_map_nolock and every
    pte_offset_map_<variant>_nolock."""
    head, _, tail = function.rpartition("_")
    return re.compile(rf"\b{re.escape(head)}_(?:\w+_)?{re.escape(tail)}\b")


# --------------------------------------------------------------------------
# reading the code: which options build a file and its changed lines
# --------------------------------------------------------------------------

_C_NOISE = re.compile(r'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\\n])*"', re.S)


def code_mentions(text: str, pattern: re.Pattern) -> set[str]:
    """The watched names in the code (not in comments or strings)."""
    return set(pattern.findall(_C_NOISE.sub(" ", text)))


_COND_SYM = re.compile(r"(!\s*)?(?:(?:defined|IS_ENABLED|IS_BUILTIN|IS_REACHABLE)\s*\(?\s*)?\b(CONFIG_\w+)")


def _frame_symbols(kind: str, cond: str, in_else: bool) -> tuple[set[str], set[str]]:
    """(options that must be on, options that must be off) for code inside
    this conditional's current branch."""
    on: set[str] = set()
    off: set[str] = set()
    if kind == "ifdef":
        sym = cond.split()[0] if cond.split() else ""
        (off if in_else else on).update({sym} if sym.startswith("CONFIG_") else set())
    elif kind == "ifndef":
        sym = cond.split()[0] if cond.split() else ""
        (on if in_else else off).update({sym} if sym.startswith("CONFIG_") else set())
    else:
        for m in _COND_SYM.finditer(cond):
            negated = bool(m.group(1))
            (on if negated == in_else else off).add(m.group(2))
    return on, off


def ifdef_options(text: str, lines: set[int]) -> tuple[set[str], set[str]]:
    """Options of the #if blocks around the given lines (1-based)."""
    stack: list[list] = []  # [kind, cond, in_else]
    on: set[str] = set()
    off: set[str] = set()
    src = text.split("\n")
    i = 0
    while i < len(src):
        line = src[i]
        number = i + 1
        full = line
        while full.endswith("\\") and i + 1 < len(src):
            i += 1
            full = full[:-1] + " " + src[i]
        m = re.match(r"^\s*#\s*(ifdef|ifndef|if|elif|else|endif)\b(.*)$", full)
        if m:
            kind, cond = m.group(1), _C_NOISE.sub(" ", m.group(2)).strip()
            if kind in ("if", "ifdef", "ifndef"):
                stack.append([kind, cond, False])
            elif kind == "elif" and stack:
                stack[-1] = ["if", cond, False]
            elif kind == "else" and stack:
                stack[-1][2] = True
            elif kind == "endif" and stack:
                stack.pop()
        elif number in lines:
            for kind, cond, in_else in stack:
                a, b = _frame_symbols(kind, cond, in_else)
                on |= a
                off |= b
        i += 1
    return on, off


def _make_lines(text: str) -> list[str]:
    out, cur = [], ""
    for line in text.split("\n"):
        line = re.sub(r"(?<!\\)#.*$", "", line)
        if line.endswith("\\"):
            cur += line[:-1] + " "
            continue
        out.append(cur + line)
        cur = ""
    if cur:
        out.append(cur)
    return out


def _make_cond(line: str) -> tuple[set[str], set[str]] | None:
    m = re.match(r"^\s*(ifdef|ifndef)\s+(CONFIG_\w+)", line)
    if m:
        return ({m.group(2)}, set()) if m.group(1) == "ifdef" else (set(), {m.group(2)})
    m = re.match(r"^\s*(ifeq|ifneq)\s*\(\s*\$\((CONFIG_\w+)\)\s*,\s*(\w*)\s*\)", line)
    if m:
        positive = (m.group(1) == "ifeq") == (m.group(3) in ("y", "m"))
        return ({m.group(2)}, set()) if positive else (set(), {m.group(2)})
    if re.match(r"^\s*(ifeq|ifneq|ifdef|ifndef)\b", line):
        return (set(), set())
    return None


def _find_in_makefiles(read, directory: str, word: str, opts: set[str], depth: int = 0) -> bool:
    """Add the options of the Makefile lines that put word into the build."""
    if depth > 4:
        return False
    text = "\n".join(t for t in (read(f"{directory}/Makefile" if directory else "Makefile"),
                                 read(f"{directory}/Kbuild" if directory else "Kbuild")) if t)
    stack: list[tuple[set[str], set[str], bool]] = []
    found = False
    for line in _make_lines(text):
        cond = _make_cond(line)
        if cond is not None:
            stack.append((cond[0], cond[1], False))
            continue
        if re.match(r"^\s*else\b", line) and stack:
            on, off, _ = stack[-1]
            stack[-1] = (off, on, True)
            continue
        if re.match(r"^\s*endif\b", line) and stack:
            stack.pop()
            continue
        m = re.match(r"^\s*([\w.$()/-]+)\s*(?::=|\+=|\?=|=)\s*(.*)$", line)
        if not m or word not in m.group(2).split():
            continue
        lhs = m.group(1)
        for on, _off, _e in stack:
            opts |= on
        cfg = re.search(r"\$\((CONFIG_\w+)\)", lhs)
        if cfg:
            opts.add(cfg.group(1))
        top = re.match(r"^(obj|lib|core|drivers|libs|net|virt|init)-(?:y|m|\$\(CONFIG_\w+\))$", lhs)
        if top:
            found = True
            continue
        part = re.match(r"^([\w.-]+?)-(?:y|m|objs|\$\(CONFIG_\w+\))$", lhs)
        if part:
            prefix = part.group(1)
            if (_find_in_makefiles(read, directory, f"$({prefix}-y)", opts, depth + 1)
                    or _find_in_makefiles(read, directory, f"{prefix}.o", opts, depth + 1)):
                found = True
    return found


def makefile_options(read, cfile: str) -> tuple[set[str], list[str]]:
    """Options named by the Makefile lines that build cfile's object and
    put its directories into the build; notes for what was not found."""
    opts: set[str] = set()
    notes = []
    directory, _, name = cfile.rpartition("/")
    obj = name[:-2] + ".o"
    if not _find_in_makefiles(read, directory, obj, opts):
        notes.append(f"no Makefile line in {directory or '.'}/ builds {obj}")
    parts = directory.split("/") if directory else []
    # walk up: arch/X and the top level are always built
    while len(parts) > (2 if parts and parts[0] == "arch" else 1):
        sub = parts[-1] + "/"
        parent = "/".join(parts[:-1])
        if not _find_in_makefiles(read, parent, sub, opts):
            notes.append(f"no Makefile line in {parent}/ builds {sub}")
        parts = parts[:-1]
    return opts, notes


# --------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------

@dataclass
class ObjResult:
    source: str  # the .c file
    config: str  # name of the configuration ("x86_64 defconfig")
    status: str  # built | failed | new warnings | skipped | not built
    error: str = ""  # the compiler's first error
    warnings: list[str] = field(default_factory=list)  # all, normalised
    new_warnings: list[str] = field(default_factory=list)
    compiled: bool | None = None  # nm shows the watched function (None: not asked)
    why: str = ""  # touched | includes HEADER
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {"source": self.source, "config": self.config, "status": self.status, "error": self.error,
                "warnings": self.warnings, "new_warnings": self.new_warnings, "compiled": self.compiled,
                "why": self.why}


@dataclass
class Config:
    arch: Arch
    defconfig: str
    options: tuple[str, ...]
    out: Path = Path()
    enabled: list[str] = field(default_factory=list)  # switched on with scripts/config
    already: list[str] = field(default_factory=list)  # set by the defconfig itself
    not_enabled: list[str] = field(default_factory=list)  # their dependencies are not met
    werror_off: list[str] = field(default_factory=list)  # switched off: warnings are counted, not fatal
    files: list[str] = field(default_factory=list)  # the series' files built with it

    @property
    def name(self) -> str:
        extra = f" + {', '.join(o.removeprefix('CONFIG_') for o in self.enabled)}" if self.enabled else ""
        return f"{self.arch.make_arch} {self.defconfig}{extra}"



@dataclass
class PatchBuild:
    commit: str
    objects: list[ObjResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "file: skipped: no cross compiler for X"
    seconds: float = 0.0

    def status(self) -> str:
        if any(o.status == "failed" for o in self.objects):
            return "failed"
        if any(o.new_warnings for o in self.objects):
            return "new warnings"
        if not self.objects:
            return "skipped" if self.skipped else "nothing to build"
        return "built"


@dataclass
class BuildReport:
    configs: list[Config] = field(default_factory=list)
    base: list[ObjResult] = field(default_factory=list)
    patches: dict[str, PatchBuild] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # file -> reason
    src: str = ""
    seconds_prepare: float = 0.0

    def failed(self) -> bool:
        return any(p.status() in ("failed", "new warnings") for p in self.patches.values())

    def patch_summary(self, commit: str) -> str:
        p = self.patches.get(commit)
        if p is None:
            return "-"
        st = p.status()
        if st == "failed":
            return "FAILED"
        if st == "new warnings":
            return f"NEW WARNINGS ({sum(len(o.new_warnings) for o in p.objects)})"
        text = f"{st} ({len(p.objects)} obj, {p.seconds:.0f}s)" if p.objects else st
        if any(o.compiled is False for o in p.objects):
            text += " !compiled"
        return text

    def patch_json(self, commit: str) -> dict:
        p = self.patches.get(commit)
        if p is None:
            return {}
        return {"status": p.status(), "seconds": round(p.seconds, 1),
                "objects": [o.to_json() for o in p.objects], "skipped": p.skipped}

    def to_json(self) -> dict:
        return {"src": self.src,
                "configs": [{"name": c.name, "arch": c.arch.make_arch, "defconfig": c.defconfig,
                             "dir": str(c.out), "options": list(c.options), "enabled": c.enabled,
                             "already": c.already, "not_enabled": c.not_enabled, "werror_off": c.werror_off,
                             "files": c.files} for c in self.configs],
                "base": [o.to_json() for o in self.base], "notes": self.notes, "skipped": self.skipped,
                "failed": self.failed()}

    def render_lines(self, series) -> list[str]:
        out = ["build (Kbuild, out of tree):"]
        for c in self.configs:
            if c.files:
                out.append(f"  {c.arch.make_arch} {c.defconfig} compiled {', '.join(c.files)}  [{c.out}]")
                opts = [f"{o} (switched on)" for o in c.enabled] + [f"{o} (in the defconfig)" for o in c.already]
                opts += [f"{o} (COULD NOT be switched on)" for o in c.not_enabled]
                out.append(f"       options read from the code: {', '.join(opts) or 'none'}")
                if c.werror_off:
                    out.append(f"       switched off, so that warnings are counted, not fatal: {', '.join(c.werror_off)}")
        for path, why in sorted(self.skipped.items()):
            out.append(f"  {path}: {why}")
        for note in self.notes:
            out.append(f"  note: {note}")
        for o in self.base:
            if o.status == "failed":
                out.append(f"  base: {o.source} does not build: {o.error}")
            elif o.warnings:
                out.append(f"  base: {o.source}: {len(o.warnings)} warnings already")
        for p in series.patches:
            pb = self.patches.get(p.commit)
            if pb is None:
                continue
            out.append(f"  {p.number:2d} {pb.status()} in {pb.seconds:.0f}s: {p.subject}")
            for o in pb.objects:
                detail = {"failed": f": {o.error}", "new warnings": ""}.get(o.status, "")
                compiled = {True: ", nm shows the call", False: ", NOT COMPILED: nm shows no call",
                            None: ""}[o.compiled]
                out.append(f"       {o.source} [{o.config}] {o.status}{detail}{compiled} ({o.why})")
                for w in o.new_warnings:
                    out.append(f"         + {w}")
            for s in pb.skipped:
                out.append(f"       {s}")
        return out


# --------------------------------------------------------------------------
# the source tree on disk
# --------------------------------------------------------------------------

class Source:
    """The base exported with git archive, with series files written over it."""

    def __init__(self, repo: Path, base: str, cache: Path, say=None, prefix: str = "src"):
        self.repo = repo
        self.base = base
        tree = _git(repo, "rev-parse", f"{base}^{{tree}}").strip()
        self.dir = cache / f"{prefix}-{tree[:16]}"
        self.record = cache / f"{prefix}-{tree[:16]}.written.json"
        if not (self.dir / "Makefile").exists():
            if say:
                say(f"export the base with git archive into {self.dir} (once per base)")
            self._export(cache)
        else:
            drop_build_products(self.dir)  # an export made before they were left out

    def _export(self, cache: Path) -> None:
        cache.mkdir(parents=True, exist_ok=True)
        for stale in cache.glob(f".{self.dir.name}.tmp-*"):  # left by an interrupted export
            shutil.rmtree(stale, ignore_errors=True)
        tmp = cache / f".{self.dir.name}.tmp-{os.getpid()}"
        tmp.mkdir()
        archive = subprocess.Popen(["git", "archive", "--format=tar", self.base], cwd=self.repo,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        tar = subprocess.run(["tar", "-x", "-C", str(tmp)], stdin=archive.stdout, capture_output=True, check=False)
        archive.stdout.close()
        err = archive.stderr.read().decode(errors="replace")
        if archive.wait() != 0 or tar.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise RewriterError("cannot export the base with git archive | tar: "
                                + _last_line(err + tar.stderr.decode(errors="replace")))
        drop_build_products(tmp)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.replace(tmp, self.dir)
        self.record.unlink(missing_ok=True)

    def blob(self, commit: str, path: str) -> bytes | None:
        proc = subprocess.run(["git", "cat-file", "blob", f"{commit}:{path}"], cwd=self.repo,
                              capture_output=True, check=False)
        return proc.stdout if proc.returncode == 0 else None

    def set_state(self, commit: str, paths: list[str]) -> None:
        """Make the files in paths (and any written before) as at commit."""
        written = set(json.loads(self.record.read_text())) if self.record.exists() else set()
        todo = sorted(written | set(paths))
        self.record.write_text(json.dumps(todo))
        for path in todo:
            want = self.blob(commit if path in paths else self.base, path)
            target = self.dir / path
            if want is None:
                if target.exists():
                    target.unlink()
                continue
            if target.exists() and target.read_bytes() == want:
                continue  # untouched: make's time stamps stay valid
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(want)

    def read_base(self, path: str) -> str | None:
        data = self.blob(self.base, path)
        return data.decode("utf-8", "replace") if data is not None else None


# What a build in the source tree leaves there, that a commit may carry
# too (a .config committed by mistake): the kernel's top Makefile refuses an
# out-of-tree build (O=) from a source tree with .config, include/config or
# arch/$(SRCARCH)/include/generated ("The source tree is not clean, please
# run 'make mrproper'"), and the others would be read before the build's own.
BUILD_PRODUCTS = (".config", ".config.old", "include/config", "include/generated",
                  "arch/*/include/generated")


def drop_build_products(src: Path) -> list[str]:
    """Remove BUILD_PRODUCTS from an exported source tree; what was removed."""
    gone = []
    for pattern in BUILD_PRODUCTS:
        for path in sorted(src.glob(pattern)):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            gone.append(path.relative_to(src).as_posix())
    return gone


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RewriterError(f"git {args[0]} failed: {proc.stderr.strip()}")
    return proc.stdout


# --------------------------------------------------------------------------
# make
# --------------------------------------------------------------------------

class Builder:
    def __init__(self, src: Source, jobs: int, say):
        self.src = src
        self.jobs = jobs
        self.say = say

    def _env(self) -> dict[str, str]:
        env = dict(os.environ, LC_ALL="C", LANG="C", LANGUAGE="C")
        for name in ("ARCH", "CROSS_COMPILE", "O", "KBUILD_OUTPUT", "MAKEFLAGS", "MAKELEVEL", "MFLAGS",
                     "KCONFIG_CONFIG", "KBUILD_EXTRA_WARN", "W", "C", "V"):
            env.pop(name, None)
        return env

    def make(self, cfg: Config, *targets: str, keep_going: bool = False) -> subprocess.CompletedProcess:
        cmd = ["make", "-C", str(self.src.dir), f"O={cfg.out}", f"ARCH={cfg.arch.make_arch}",
               f"-j{self.jobs}", "-Otarget", "--no-print-directory"]
        if cfg.arch.cross:
            cmd.append(f"CROSS_COMPILE={cfg.arch.cross}")
        if keep_going:
            cmd.append("-k")
        return subprocess.run([*cmd, *targets], capture_output=True, text=True, errors="replace",
                              env=self._env(), check=False)

    def configure(self, cfg: Config, cache: Path) -> None:
        """cfg.out: the build directory of the defconfig with cfg.options on.

        The plain defconfig is made first; the options it already sets need
        nothing, so configurations that differ only in those share one
        build directory (and its objects)."""
        plain = self._configured(cfg, [], cache)
        defaults = _read_config(plain / ".config")
        wanted = sorted(o for o in cfg.options if defaults.get(o) != "y")
        cfg.already = sorted(o for o in cfg.options if o not in wanted)
        cfg.out = self._configured(cfg, wanted, cache) if wanted else plain
        saved = json.loads((cfg.out / ".rewriter-config.json").read_text())
        cfg.enabled, cfg.not_enabled = saved["enabled"], saved["not_enabled"]
        cfg.werror_off = saved.get("werror_off", [])

    def _configured(self, cfg: Config, wanted: list[str], cache: Path) -> Path:
        recipe = {"arch": cfg.arch.make_arch, "cross": cfg.arch.cross, "defconfig": cfg.defconfig,
                  "options": wanted, "werror": "off"}
        digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
        out = cache / f"{cfg.arch.make_arch}-{digest}"
        stamp = out / ".rewriter-config.json"
        if stamp.exists() and (out / ".config").exists():
            if json.loads(stamp.read_text()).get("recipe") == recipe:
                return out
        self.say(f"configure {cfg.arch.make_arch} {cfg.defconfig}"
                 + (f" + {', '.join(wanted)}" if wanted else ""))
        out.mkdir(parents=True, exist_ok=True)
        stamp.unlink(missing_ok=True)
        probe = Config(cfg.arch, cfg.defconfig, tuple(wanted), out=out)
        proc = self.make(probe, cfg.defconfig)
        if proc.returncode != 0:
            raise RewriterError(f"make {cfg.defconfig} for {cfg.arch.make_arch} failed: "
                                f"{first_error(proc.stderr, proc.stdout)}")
        # -Werror (CONFIG_WERROR, CONFIG_PPC_WERROR, ...) would turn the
        # first new warning into a failed build and hide the others: the
        # check tells new warnings from errors itself.
        werror = sorted(o for o, v in _read_config(out / ".config").items() if o.endswith("WERROR") and v == "y")
        if wanted or werror:
            args = []
            for o in wanted:
                args += ["--enable", o.removeprefix("CONFIG_")]
            for o in werror:
                args += ["--disable", o.removeprefix("CONFIG_")]
            subprocess.run(["bash", str(self.src.dir / "scripts/config"), "--file", str(out / ".config"), *args],
                           check=True, capture_output=True)
            proc = self.make(probe, "olddefconfig")
            if proc.returncode != 0:
                raise RewriterError(f"make olddefconfig for {cfg.arch.make_arch} failed: "
                                    f"{first_error(proc.stderr, proc.stdout)}")
        after = _read_config(out / ".config")
        stamp.write_text(json.dumps({"recipe": recipe, "werror_off": werror,
                                     "enabled": [o for o in wanted if after.get(o) == "y"],
                                     "not_enabled": [o for o in wanted if after.get(o) != "y"]}))
        return out

    def build(self, cfg: Config, sources: list[str]) -> dict[str, ObjResult]:
        """Build the objects of sources; per source its result (from the
        compile output, or from the log kept when make had nothing to do)."""
        logs = cfg.out / ".rewriter-logs"
        logs.mkdir(parents=True, exist_ok=True)
        objs = {s: s[:-2] + ".o" for s in sources}
        for s, o in objs.items():
            obj, log = cfg.out / o, logs / (o.replace("/", "__") + ".json")
            if obj.exists():
                saved = json.loads(log.read_text()) if log.exists() else None
                if not saved or saved.get("mtime_ns") != obj.stat().st_mtime_ns:
                    obj.unlink()  # its warnings are unknown: build it again
        proc = self.make(cfg, *objs.values(), keep_going=True)
        text = proc.stdout + "\n" + proc.stderr
        blocks, failed_targets = self._split(text, set(objs.values()))
        results = {}
        for s, o in objs.items():
            obj, log = cfg.out / o, logs / (o.replace("/", "__") + ".json")
            diags = [d for line in blocks.get(o, []) if (d := self._diag(line))]
            errors = [d for d in diags if d[0] != "warning"]
            where = [self._diag(line, lines=True) for line in blocks.get(o, [])]
            errors_at = [d[1] for d in where if d and d[0] != "warning"]
            warnings = [d[1] for d in diags if d[0] == "warning"]
            if o in failed_targets or not obj.exists():
                first = errors_at[0] if errors else self._first_problem(blocks.get(o, []), text, o)
                results[s] = ObjResult(s, cfg.name, "failed", error=first, warnings=warnings)
                log.unlink(missing_ok=True)
                continue
            if o in blocks:
                log.write_text(json.dumps({"mtime_ns": obj.stat().st_mtime_ns, "warnings": warnings}))
            else:
                warnings = json.loads(log.read_text())["warnings"] if log.exists() else []
            results[s] = ObjResult(s, cfg.name, "built", warnings=warnings)
        return results

    def _split(self, text: str, wanted: set[str]) -> tuple[dict[str, list[str]], set[str]]:
        blocks: dict[str, list[str]] = {}
        failed = set()
        current = None
        for line in text.split("\n"):
            q = QUIET_RE.match(line)
            if q:
                current = q.group(2) if q.group(2) in wanted else None
                if current is not None:
                    blocks.setdefault(current, [])
                continue
            e = MAKE_ERR_RE.match(line)
            if e:
                if e.group("target") in wanted:
                    failed.add(e.group("target"))
                current = None
                continue
            if current is not None:
                blocks[current].append(line)
        return blocks, failed

    def _diag(self, line: str, lines: bool = False) -> tuple[str, str] | None:
        """(kind, "file: kind: message"), the line number left out so that
        the same warning matches before and after an edit (with lines=True:
        "file:line:col: ...", to be shown)."""
        m = DIAG_RE.match(line)
        if not m:
            return None
        path = m.group("file")
        src = str(self.src.dir) + "/"
        if path.startswith(src):
            path = path[len(src):]
        path = re.sub(r"^(\.\./)+[^/]*src-[0-9a-f]+/", "", path)
        kind = "error" if m.group("kind") != "warning" else "warning"
        if lines:
            path += f":{m.group('line')}" + (f":{m.group('col')}" if m.group("col") else "")
        return kind, f"{path}: {m.group('kind')}: {m.group('msg')}"

    def _first_problem(self, block: list[str], text: str, obj: str) -> str:
        for line in block + text.split("\n"):
            if "rror" in line and line.strip():
                return line.strip()
        return f"no {obj} was made"

    def symbols(self, cfg: Config, source: str) -> set[str]:
        nm = f"{cfg.arch.cross}nm" if shutil.which(f"{cfg.arch.cross}nm") else "nm"
        proc = subprocess.run([nm, "-P", str(cfg.out / (source[:-2] + ".o"))], capture_output=True,
                              text=True, errors="replace", check=False)
        return {line.split()[0] for line in proc.stdout.splitlines() if line.split()}

    def deps(self, cfg: Config, source: str) -> set[str] | None:
        """Tree-relative files the object was built from (its .cmd file)."""
        d, _, name = source.rpartition("/")
        cmd = cfg.out / d / f".{name[:-2]}.o.cmd"
        if not cmd.exists():
            return None
        src = str(self.src.dir) + "/"
        out = set()
        for tok in cmd.read_text(errors="replace").split():
            tok = tok.strip("\\ ")
            if tok.startswith("$(wildcard") or tok.endswith(":") or tok == ":=":
                continue
            if tok.startswith(src):
                tok = tok[len(src):]
            tok = re.sub(r"^\$\(srctree\)/", "", tok)
            out.add(tok)
        return out


def _read_config(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text(errors="replace").splitlines():
        m = re.match(r"^(CONFIG_\w+)=(.*)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip('"')
    return out


# make's own line for a target that failed ("make[1]: *** [Makefile:659:
# outputmakefile] Error 1"): it says where, the lines before it say why.
MAKE_SUMMARY_RE = re.compile(r"^make(?:\[\d+\])?: \*\*\* \[.*\] Error \d+")
ERROR_RE = re.compile(r"\berror\b", re.I)


def first_error(*outputs: str) -> str:
    """The first line of make's output that says what went wrong: the
    first with "error" (a compiler's "error:", an assembler's "Error:") or
    a "***" message (make's "*** No rule to make target ...", a
    Makefile's "*** The source tree is not clean ..."), with the "***"
    lines right after it; not the "[target] Error N" lines make ends
    with, which are shown only when there is nothing else.  outputs:
    standard error, then standard output (where Kconfig's "***" lines are
    news, not errors: "*** Default configuration is based on ...")."""
    for k, text in enumerate(outputs):
        lines = [line.strip() for line in (text or "").splitlines()]
        for n, line in enumerate(lines):
            if MAKE_SUMMARY_RE.match(line):
                continue
            if (line.startswith("***") and k == 0) or re.match(r"^make(?:\[\d+\])?: \*\*\*", line):
                words = [_star_text(line)]
                if not words[0]:
                    continue  # a frame of asterisks
                for more in lines[n + 1:]:
                    if not more.startswith("***") or not _star_text(more):
                        break
                    words.append(_star_text(more))
                return " ".join(words)
            if ERROR_RE.search(line):
                return line
    return _last_line(next((o for o in outputs if o and o.strip()), ""))


def _star_text(line: str) -> str:
    """ "*** text" or "make[1]: *** text" -> "text"."""
    line = re.sub(r"^make(?:\[\d+\])?: ", "", line)
    return line.lstrip("*").strip()


def _last_line(text: str) -> str:
    lines = [l for l in text.strip().splitlines() if l.strip()]
    return lines[-1] if lines else "no message"


# --------------------------------------------------------------------------
# the series
# --------------------------------------------------------------------------

def arch_of(path: str) -> str:
    parts = path.split("/")
    return parts[1] if parts[0] == "arch" and len(parts) > 2 else GENERIC_ARCH


def changed_lines(repo: Path, commit: str, path: str) -> set[int]:
    """Lines of path at commit that the commit adds (or next to which it deletes)."""
    diff = _git(repo, "diff-tree", "-p", "-U0", "--no-renames", "--no-color", f"{commit}^", commit, "--", path)
    lines: set[int] = set()
    for m in re.finditer(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@", diff, re.M):
        start, count = int(m.group(1)), int(m.group(2) if m.group(2) is not None else 1)
        lines.update(range(start, start + count) if count else [max(start, 1), start + 1])
    return lines


def build_series(series, say=None, jobs: int | None = None, cache: Path | None = None,
                 function: str | None = None) -> BuildReport:
    function = function or recipe_mod.find(None).function  # the default recipe's
    say = say or (lambda text: None)
    if shutil.which("make") is None or shutil.which("gcc") is None:
        raise ToolError("the build needs make and gcc (Debian: apt-get install build-essential flex bison bc "
                        "libelf-dev libssl-dev, or 'make deps WITH_BUILD_DEPS=1')")
    cache = cache or default_cache()
    cache.mkdir(parents=True, exist_ok=True)
    # One build at a time: they share the exported source.
    with one_at_a_time(cache / ".lock", say, f"waiting for another rewriter check --build to finish with {cache}"):
        return _build_series(series, say, jobs, cache, function)


@contextmanager
def one_at_a_time(lock_file: Path, say, waiting: str):
    """Hold an exclusive flock on lock_file for the block; when another
    process holds it, say waiting and wait for it."""
    with open(lock_file, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(waiting)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _build_series(series, say, jobs: int | None, cache: Path, function: str) -> BuildReport:
    jobs = jobs or os.cpu_count() or 1
    pattern = watched_pattern(function)
    report = BuildReport()
    t0 = time.monotonic()
    src = Source(series.clone, series.base, cache, say)
    report.src = str(src.dir)
    builder = Builder(src, jobs, say)
    repo = series.clone

    touched_all = series.touched()
    c_files = [p for p in touched_all if p.endswith(".c")]
    # Which options each arch needs, read from the code.
    by_arch: dict[str, list[str]] = {}
    for path in c_files:
        by_arch.setdefault(arch_of(path), []).append(path)
    options: dict[str, set[str]] = {}
    for arch_name, files in by_arch.items():
        arch = ARCHES.get(arch_name)
        if arch is None or not shutil.which(f"{arch.cross}gcc"):
            what = f"no cross compiler for {arch_name}"
            if arch is not None:
                what += f" ({arch.cross}gcc; Debian package {arch.package})"
            for f in files:
                report.skipped[f] = f"skipped: {what}"
            continue
        opts: set[str] = set()
        for f in files:
            mopts, notes = makefile_options(src.read_base, f)
            opts |= mopts
            report.notes.extend(f"{f}: {n}" for n in notes)
            for p in series.patches:
                if f in p.files:
                    text = src.blob(p.commit, f)
                    if text is not None:
                        on, _off = ifdef_options(text.decode("utf-8", "replace"), changed_lines(repo, p.commit, f))
                        opts |= on
        options[arch_name] = opts

    # The base: choose the configuration that compiles each file's code.
    src.set_state(series.base, touched_all)
    assigned: dict[str, Config] = {}
    base_results: dict[str, ObjResult] = {}
    for arch_name, opts in options.items():
        arch = ARCHES[arch_name]
        pending = [f for f in by_arch[arch_name] if src.blob(series.base, f) is not None]
        new_files = [f for f in by_arch[arch_name] if f not in pending]
        first = None
        for defconfig in arch.defconfigs:
            cfg = Config(arch, defconfig, tuple(sorted(opts)))
            builder.configure(cfg, cache)
            first = first or cfg
            if not pending:
                break
            say(f"build the base with {cfg.name}: {', '.join(pending)}")
            results = builder.build(cfg, pending)
            for f in list(pending):
                want = code_mentions(src.read_base(f) or "", pattern)
                r = results[f]
                if r.status == "built" and (not want or want & builder.symbols(cfg, f)):
                    assigned[f] = cfg
                    base_results[f] = r
                    pending.remove(f)
                elif r.status == "built":
                    report.notes.append(f"{f}: {arch.make_arch} {defconfig} builds the object but not the code "
                                        f"that calls {', '.join(sorted(want))} (nm); trying the next defconfig")
                else:
                    report.notes.append(f"{f}: does not build with {arch.make_arch} {defconfig}: {r.error}")
            if cfg not in report.configs:
                report.configs.append(cfg)
        for f in pending:
            tried = ", ".join(arch.defconfigs)
            report.notes.append(f"{f}: not compiled by any tried config ({tried}); built with {first.defconfig}")
            assigned[f] = first
            base_results[f] = builder.build(first, [f])[f]
        for f in new_files:
            assigned[f] = first
    for f, cfg in assigned.items():
        cfg.files.append(f)
    report.configs = [c for c in report.configs if c.files] + [c for c in report.configs if not c.files]
    report.base = [base_results[f] for f in c_files if f in base_results]
    deps = {f: builder.deps(assigned[f], f) for f in assigned}
    report.seconds_prepare = time.monotonic() - t0

    for i, p in enumerate(series.patches, 1):
        t1 = time.monotonic()
        pb = PatchBuild(p.commit)
        report.patches[p.commit] = pb
        targets: dict[str, str] = {}
        for f in p.files:
            if f.endswith(".c"):
                if f in report.skipped:
                    pb.skipped.append(f"{f}: {report.skipped[f]}")
                elif src.blob(p.commit, f) is not None and f in assigned:
                    targets[f] = "touched"
        for f in p.files:
            if f.endswith(".c"):
                continue
            for c, d in deps.items():
                if c in targets:
                    continue
                if d is not None and f in d:
                    targets[c] = f"includes {f}"
                elif d is None and f.startswith("include/") and \
                        f"#include <{f.removeprefix('include/')}>" in (src.read_base(c) or ""):
                    targets[c] = f"includes {f}"
            for c, why in report.skipped.items():
                if f"#include <{f.removeprefix('include/')}>" in (src.read_base(c) or "") and \
                        not any(s.startswith(c + ":") for s in pb.skipped):
                    pb.skipped.append(f"{c}: {why}")
        src.set_state(p.commit, touched_all)
        by_cfg: dict[int, list[str]] = {}
        for f in targets:
            by_cfg.setdefault(id(assigned[f]), []).append(f)
        for files in by_cfg.values():
            cfg = assigned[files[0]]
            say(f"build {i}/{len(series.patches)} with {cfg.name}: {', '.join(files)}")
            results = builder.build(cfg, files)
            for f in files:
                r = results[f]
                r.why = targets[f]
                if r.status == "built":
                    base = base_results.get(f)
                    before = Counter(base.warnings if base else [])
                    after = Counter(r.warnings)
                    r.new_warnings = sorted((after - before).elements())
                    if r.new_warnings:
                        r.status = "new warnings"
                    if targets[f] == "touched":
                        want = code_mentions((src.blob(p.commit, f) or b"").decode("utf-8", "replace"), pattern)
                        if want:
                            r.compiled = bool(want & builder.symbols(cfg, f))
                pb.objects.append(r)
        pb.objects.sort(key=lambda o: o.source)
        pb.seconds = time.monotonic() - t1
    return report
