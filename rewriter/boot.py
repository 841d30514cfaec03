"""`rewriter check --boot`: run the series' kernel and make every new failure
path run.

checkpatch and a build cannot see a locking bug in a failure path that
real races reach once a month.  This check:

1. builds two x86_64 kernels out of tree with the kernel's own Kbuild: the
   base, and the series' final commit with the test hooks of
   rewriter.inject (every pmd_same() recheck fails on every Nth evaluation;
   every call of the new functions is counted).  The sources are exports
   of the commits (rewriter.kbuild.Source), the configuration is tinyconfig
   plus BOOT_OPTIONS plus what the Makefiles and #ifdefs around the
   series' changes name (rewriter.kbuild), built with ccache when it is
   installed;
2. boots the base once and the series' kernel once per function with a
   pmd_same() recheck, only that function's failures forced (and only in
   the workload's tasks), in qemu-system-x86_64 (KVM when /dev/kvm works, else TCG)
   with an initramfs of busybox-static and the workload
   (templates/boot/workload.c, built static), which reaches every
   converted function and checks its own data;
3. reads back over the serial console the workload's results, the hooks'
   counts and every kernel splat (lockdep, BUG, WARNING, oops), and
   reports per converted function.

It fails when the series' run has a splat or a data error that the base's
run does not, when a converted function that x86 builds never ran, when a
pmd_same() failure path was never forced, or when a kernel does not boot.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from rewriter import inject, kbuild
from rewriter import recipe as recipe_mod
from rewriter.errors import RewriterError, ToolError

# The guest (tinyconfig is the start), the debug options that see locking
# bugs, and what the workload needs.  Options the series' code needs are
# read from the code and added (see kernel_options()).
GUEST_OPTIONS = (
    "64BIT", "SMP", "PRINTK", "PRINTK_TIME", "BUG", "DEBUG_BUGVERBOSE", "KALLSYMS",
    "TTY", "SERIAL_8250", "SERIAL_8250_CONSOLE", "EARLY_PRINTK",
    "BLK_DEV_INITRD", "BINFMT_ELF", "BINFMT_SCRIPT", "DEVTMPFS", "PROC_FS", "PROC_SYSCTL", "SYSFS",
    "TMPFS", "FUTEX", "POSIX_TIMERS", "MULTIUSER", "HYPERVISOR_GUEST", "PARAVIRT", "KVM_GUEST",
    "ACPI",  # without it the second CPU is not found (SeaBIOS's MP table lists one): the race needs two
    # tinyconfig's NR_CPUS=2 is below SPLIT_PTLOCK_CPUS (4): every page table
    # would share mm->page_table_lock; 8 gives a lock per page table, as on
    # the machines the series is for
    "NR_CPUS=8",
)
DEBUG_OPTIONS = ("DEBUG_KERNEL", "PROVE_LOCKING", "DEBUG_SPINLOCK", "DEBUG_ATOMIC_SLEEP", "DEBUG_VM")
WORKLOAD_OPTIONS = (
    "ADVISE_SYSCALLS",  # madvise: MADV_COLLAPSE, MADV_PAGEOUT
    "TRANSPARENT_HUGEPAGE", "READ_ONLY_THP_FOR_FS", "SHMEM",  # collapse_pte_mapped_thp, swapin
    "USERFAULTFD",  # UFFDIO_MOVE: move_pages_pte
    "LRU_GEN", "LRU_GEN_ENABLED", "DEBUG_FS", "DEBUG_FS_ALLOW_ALL",  # walk_pte_range through debugfs lru_gen
    "NUMA", "NUMA_EMU", "MIGRATION", "COMPACTION",  # move_pages between two (fake) nodes: map_pte
    "SWAP", "BLOCK", "BLK_DEV", "BLK_DEV_RAM",  # swap on /dev/ram0
    "EXT2_FS",  # a file system with a backing store on /dev/ram1: filemap_fault_recheck_pte_none
)
BOOT_OPTIONS = GUEST_OPTIONS + DEBUG_OPTIONS + WORKLOAD_OPTIONS
BASE_CONFIG = "tinyconfig"
KERNEL_ARGS = ("console=ttyS0,115200 numa=fake=2 brd.rd_nr=2 brd.rd_size=98304 "
               "transparent_hugepage=madvise panic=-1 rdinit=/init")
DEFAULT_EVERY = 3
DEFAULT_DELAY_US = 300
DEFAULT_ROUNDS = 3
DEFAULT_RACE_SECONDS = 6

TEMPLATE_DIR = inject.TEMPLATE_DIR
PACKAGES = {"qemu-system-x86_64": "qemu-system-x86", "busybox": "busybox-static", "gcc": "gcc", "make": "make"}

# A splat starts with one of these (after the printk time stamp).
SPLAT_START = re.compile(
    r"^(?:WARNING: (?:bad unlock balance detected|possible recursive locking detected|held lock freed|"
    r"possible circular locking dependency detected|inconsistent lock state|lock held when returning to user space|"
    r"suspicious RCU usage|CPU: \d+ PID: \d+ at .*)|"
    r"BUG: .*|kernel BUG at .*|Oops: .*|general protection fault.*|Kernel panic - .*|"
    r"page dumped because: .*|watchdog: BUG: .*|INFO: task .* blocked for more than .*)")
_STAMP = re.compile(r"^\[\s*\d+\.\d+\]\s?")
_FRAME = re.compile(r"\b([A-Za-z_][\w.]*)\+0x[0-9a-f]+/0x[0-9a-f]+")


# --------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------

@dataclass
class Splat:
    title: str  # the first line, numbers taken out
    lines: list[str]  # the whole report as printed
    functions: list[str] = field(default_factory=list)  # converted functions it concerns, and why
    new: bool = True  # not in the base run

    def to_json(self) -> dict:
        return {"title": self.title, "new": self.new, "functions": self.functions, "lines": self.lines}


@dataclass
class Run:
    label: str  # base | series:<function> | series
    kernel: str = ""
    forced: str = ""  # the function whose failures this boot forces
    sites: list[int] = field(default_factory=list)  # its recheck sites
    accel: str = ""  # kvm | tcg
    accel_note: str = ""  # why not KVM
    booted: bool = False
    finished: bool = False  # the init script got to its end
    seconds: dict[str, float] = field(default_factory=dict)  # build, boot, workload
    phases: dict[str, tuple[str, str]] = field(default_factory=dict)  # phase -> (ok|skip|FAIL|started, detail)
    counts: dict[int, dict[str, int]] = field(default_factory=dict)  # site -> calls, evals, real, forced
    splats: list[Splat] = field(default_factory=list)
    tail: list[str] = field(default_factory=list)  # the last console lines
    console: str = ""  # where the whole console log is kept

    def to_json(self) -> dict:
        return {"label": self.label, "kernel": self.kernel, "forced_function": self.forced or None,
                "forced_sites": self.sites, "accel": self.accel, "accel_note": self.accel_note,
                "booted": self.booted, "finished": self.finished,
                "seconds": {k: round(v, 1) for k, v in self.seconds.items()},
                "phases": {k: {"status": v[0], "detail": v[1]} for k, v in self.phases.items()},
                "splats": [s.to_json() for s in self.splats], "console": self.console,
                "tail": self.tail if not self.finished else []}


@dataclass
class Function:
    file: str
    name: str
    policy: str  # ro | dummy | pmd_same
    x86: bool  # built for x86 (else "not run on x86")
    calls: int = 0
    evals: int = 0
    forced: int = 0
    real: int = 0
    built: bool | None = None  # its object is in the test kernel
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"file": self.file, "function": self.name, "policy": self.policy, "x86": self.x86,
                "calls": self.calls, "recheck_evaluations": self.evals, "forced_failures": self.forced,
                "real_failures": self.real, "problems": self.problems,
                "status": self.status()}

    def status(self) -> str:
        if not self.x86:
            return "not run on x86"
        return "FAILED" if self.problems else "ok"


@dataclass
class BootReport:
    functions: list[Function] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what fails the check, in words
    notes: list[str] = field(default_factory=list)
    options: dict[str, list[str]] = field(default_factory=dict)  # read from the code / not enabled
    every: int = DEFAULT_EVERY
    nothing_to_boot: str = ""  # why nothing was booted (not a failure)

    def failed(self) -> bool:
        return bool(self.problems)

    def to_json(self) -> dict:
        return {"functions": [f.to_json() for f in self.functions], "runs": [r.to_json() for r in self.runs],
                "problems": self.problems, "notes": self.notes, "options": self.options, "every": self.every,
                "nothing_to_boot": self.nothing_to_boot, "failed": self.failed()}

    def render_lines(self) -> list[str]:
        out = ["boot (qemu-system-x86_64, the series' kernel with failure injection against the base's):"]
        if self.nothing_to_boot:
            out.append(f"  nothing to boot: {self.nothing_to_boot}")
        if self.options.get("from_code") is not None:
            out.append(f"  config: {BASE_CONFIG} + BOOT_OPTIONS + options read from the code: "
                       f"{', '.join(self.options['from_code']) or 'none'}")
        for r in self.runs:
            secs = ", ".join(f"{k} {v:.0f}s" for k, v in r.seconds.items())
            state = "booted" if r.booted else "DID NOT BOOT"
            if r.booted and not r.finished:
                state = "booted, workload DID NOT FINISH"
            out.append(f"  {r.label}: {state} ({r.accel or '-'}{'; ' + r.accel_note if r.accel_note else ''}; "
                       f"{secs}) console {r.console}")
            for name, (status, detail) in r.phases.items():
                if status != "ok":
                    out.append(f"       workload {name}: {status} {detail}")
            shown: dict[str, int] = {}
            for s in r.splats:
                shown[s.title] = shown.get(s.title, 0) + 1
            for title, n in shown.items():
                s = next(x for x in r.splats if x.title == title)
                mark = "NEW " if s.new and r.label != "base" else ""
                out.append(f"       {mark}splat: {title}" + (f" ({n} times)" if n > 1 else "")
                           + (f"  [{'; '.join(s.functions)}]" if s.functions else ""))
                if s.new and r.label != "base" and title == next(iter(shown)):
                    out.extend(f"         | {line}" for line in s.lines[:40])
            if not r.finished:
                out.append("       last console lines:")
                out.extend(f"         {line}" for line in r.tail)
        if self.functions:
            out.append(f"  per function (one boot per function with a pmd_same() recheck: every {_nth(self.every)} "
                       f"evaluation of its recheck in the workload's tasks forced to fail):")
            out.append(f"    {'function':<34} {'policy':<9} {'calls':>8} {'rechecks':>9} {'forced':>7} {'real':>5}  status")
            for f in self.functions:
                if not f.x86:
                    out.append(f"    {f.name + '()':<34} {f.policy:<9} {'-':>8} {'-':>9} {'-':>7} {'-':>5}  "
                               f"not run on x86 ({f.file})")
                    continue
                rc = f"{f.evals}" if f.policy == "pmd_same" else "-"
                fo = f"{f.forced}" if f.policy == "pmd_same" else "-"
                re_ = f"{f.real}" if f.policy == "pmd_same" else "-"
                out.append(f"    {f.name + '()':<34} {f.policy:<9} {f.calls:>8} {rc:>9} {fo:>7} {re_:>5}  "
                           f"{f.status()}")
                for p in f.problems:
                    out.append(f"        {p}")
        for n in self.notes:
            out.append(f"  note: {n}")
        for p in self.problems:
            out.append(f"  FAIL: {p}")
        return out


# --------------------------------------------------------------------------
# tools
# --------------------------------------------------------------------------

def require_tools() -> dict[str, str]:
    """The programs --boot needs, or a ToolError naming the Debian package."""
    found = {}
    for prog, package in PACKAGES.items():
        path = shutil.which(prog)
        if not path:
            raise ToolError(f"check --boot needs {prog}; install it (Debian: apt-get install {package}, "
                            f"or 'make deps WITH_BOOT_DEPS=1')")
        found[prog] = path
    if _is_dynamic(found["busybox"]):
        raise ToolError(f"check --boot needs a static busybox, and {found['busybox']} is dynamically linked; "
                        f"install it (Debian: apt-get install busybox-static)")
    return found


def _is_dynamic(path: str) -> bool:
    """An ELF file with a program interpreter (PT_INTERP) is linked dynamically."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:4] != b"\x7fELF" or head[4] != 2:
                return False
            phoff = int.from_bytes(head[32:40], "little")
            phentsize = int.from_bytes(head[54:56], "little")
            phnum = int.from_bytes(head[56:58], "little")
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except OSError:
        return False
    return any(int.from_bytes(table[i:i + 4], "little") == 3 for i in range(0, len(table), phentsize))


def _host_boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def kvm_usable() -> tuple[bool, str]:
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError as exc:
        return False, f"/dev/kvm: {exc.strerror}"
    os.close(fd)
    return True, ""


# --------------------------------------------------------------------------
# the workload and the initramfs
# --------------------------------------------------------------------------

def build_workload(cache: Path, gcc: str) -> Path:
    """templates/boot/workload.c, static, kept by the hash of its source."""
    source = (TEMPLATE_DIR / "workload.c").read_bytes()
    digest = hashlib.sha256(source + gcc.encode()).hexdigest()[:12]
    exe = cache / "boot" / f"workload-{digest}"
    if exe.exists():
        return exe
    exe.parent.mkdir(parents=True, exist_ok=True)
    tmp = exe.with_suffix(f".tmp{os.getpid()}")
    proc = subprocess.run([gcc, "-O2", "-Wall", "-static", "-pthread", "-o", str(tmp), str(TEMPLATE_DIR / "workload.c")],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        last = kbuild._last_line(proc.stderr)
        if "cannot find -lc" in proc.stderr or "crt1.o" in proc.stderr:
            raise ToolError(f"check --boot: gcc cannot link a static program ({last}); install the C library "
                            f"(Debian: apt-get install libc6-dev)")
        raise RewriterError(f"check --boot: the workload does not compile: {last}")
    os.replace(tmp, exe)
    return exe


INIT_SCRIPT = "init.sh"


def _cpio_entry(name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0), ino: int = 0) -> bytes:
    """One entry of a cpio archive in the "newc" format the kernel unpacks."""
    encoded = name.encode() + b"\0"
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0]
    head = b"070701" + b"".join(f"{v:08x}".encode() for v in fields) + encoded
    head += b"\0" * (-len(head) % 4)
    return head + data + b"\0" * (-len(data) % 4)


def make_initramfs(dest: Path, busybox: str, workload: Path, init: str) -> None:
    entries = []
    ino = 1
    for d in ("bin", "dev", "proc", "sys", "tmp", "mnt", "sbin", "usr", "usr/bin", "usr/sbin"):
        entries.append(_cpio_entry(d, stat.S_IFDIR | 0o755, ino=ino))
        ino += 1
    entries.append(_cpio_entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1), ino=ino))
    ino += 1
    for name, data in (("bin/busybox", Path(busybox).read_bytes()), ("bin/workload", workload.read_bytes()),
                       ("init", init.encode())):
        entries.append(_cpio_entry(name, stat.S_IFREG | 0o755, data, ino=ino))
        ino += 1
    entries.append(_cpio_entry("TRAILER!!!", 0))
    dest.write_bytes(b"".join(entries))


# --------------------------------------------------------------------------
# kernel builds
# --------------------------------------------------------------------------

def _ccache_env(cache: Path) -> tuple[dict[str, str], list[str]]:
    env = dict(os.environ, LC_ALL="C", LANG="C", LANGUAGE="C")
    for name in ("ARCH", "CROSS_COMPILE", "O", "KBUILD_OUTPUT", "MAKEFLAGS", "MAKELEVEL", "MFLAGS",
                 "KCONFIG_CONFIG", "W", "C", "V"):
        env.pop(name, None)
    args = []
    if shutil.which("ccache"):
        env.setdefault("CCACHE_DIR", str(cache / "ccache"))
        env.setdefault("CCACHE_MAXSIZE", "5G")
        args.append("CC=ccache gcc")
    return env, args


def configure(src: Path, out: Path, options: list[str], env: dict, say) -> tuple[list[str], list[str]]:
    """tinyconfig + options in out; (enabled, not enabled).  Done once per
    recipe: a stamp keeps it."""
    recipe = {"base": BASE_CONFIG, "options": sorted(options)}
    stamp = out / ".rewriter-boot-config.json"
    if stamp.exists() and (out / ".config").exists():
        saved = json.loads(stamp.read_text())
        if saved.get("recipe") == recipe:
            return saved["enabled"], saved["not_enabled"]
    out.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    say(f"configure {BASE_CONFIG} + {len(options)} options in {out}")
    base = ["make", "-C", str(src), f"O={out}", "ARCH=x86_64", "--no-print-directory"]
    for target in ([BASE_CONFIG], None, ["olddefconfig"]):
        if target is None:
            args = []
            for o in options:
                name, eq, value = o.removeprefix("CONFIG_").partition("=")
                args += ["--set-val", name, value] if eq else ["--enable", name]
            subprocess.run(["bash", str(src / "scripts/config"), "--file", str(out / ".config"), *args],
                           check=True, capture_output=True)
            continue
        proc = subprocess.run([*base, *target], capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            raise RewriterError(f"check --boot: make {target[0]} failed: {kbuild._last_line(proc.stderr or proc.stdout)}")
    config = kbuild._read_config(out / ".config")

    def is_set(o: str) -> bool:
        name, eq, value = o.removeprefix("CONFIG_").partition("=")
        return config.get("CONFIG_" + name) == (value if eq else "y")

    enabled = [o for o in options if is_set(o)]
    not_enabled = [o for o in options if o not in enabled]
    stamp.write_text(json.dumps({"recipe": recipe, "enabled": enabled, "not_enabled": not_enabled}))
    return enabled, not_enabled


def build_kernel(src: Path, out: Path, env: dict, make_args: list[str], jobs: int, say, label: str) -> Path:
    """make bzImage; progress every 30 s; the image."""
    cmd = ["make", "-C", str(src), f"O={out}", "ARCH=x86_64", f"-j{jobs}", "--no-print-directory",
           *make_args, "bzImage"]
    log = out / ".rewriter-boot-build.log"
    t0 = time.monotonic()
    compiled = 0
    last = t0
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                errors="replace")
        assert proc.stdout is not None
        for line in proc.stdout:
            f.write(line)
            if line.startswith("  CC "):
                compiled += 1
            if time.monotonic() - last >= 30:
                last = time.monotonic()
                say(f"build {label} kernel: {_elapsed(t0)}, {compiled} files compiled")
        rc = proc.wait()
    if rc != 0:
        text = log.read_text(errors="replace").splitlines()
        err = next((l for l in text if re.search(r"error:|Error \d", l)), text[-1] if text else "no output")
        raise RewriterError(f"check --boot: the {label} kernel does not build: {err.strip()} (log: {log})")
    say(f"build {label} kernel: done in {_elapsed(t0)}, {compiled} files compiled")
    return out / "arch/x86/boot/bzImage"


def _nth(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _elapsed(t0: float) -> str:
    s = int(time.monotonic() - t0)
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def kernel_options(src_read, series, x86_files: list[str]) -> set[str]:
    """Options the series' code needs, read from the code as --build does."""
    opts: set[str] = set()
    for f in x86_files:
        mopts, _notes = kbuild.makefile_options(src_read, f)
        opts |= mopts
        for p in series.patches:
            if f in p.files:
                blob = subprocess.run(["git", "cat-file", "blob", f"{p.commit}:{f}"], cwd=series.clone,
                                      capture_output=True, check=False).stdout
                on, _off = kbuild.ifdef_options(blob.decode("utf-8", "replace"),
                                                kbuild.changed_lines(series.clone, p.commit, f))
                opts |= on
    return {o.removeprefix("CONFIG_") for o in opts}


# --------------------------------------------------------------------------
# qemu
# --------------------------------------------------------------------------

KVM_FIRST_OUTPUT = 30.0  # seconds: a KVM guest that prints nothing by then is taken as KVM not working


def run_qemu(qemu: str, kernel: Path, initrd: Path, append: str, log: Path, accel: str,
             timeout: float, quiet_limit: float, say, label: str) -> tuple[int | None, str, dict[str, float]]:
    """Boot; (exit code or None when it was stopped, qemu's stderr, timings).
    The serial console goes to log.  Under KVM, a console still empty after
    KVM_FIRST_OUTPUT seconds stops the run (nested KVM often hangs without
    a word)."""
    cmd = [qemu, "-m", "1536", "-smp", "2", "-display", "none", "-monitor", "none", "-no-reboot",
           "-serial", f"file:{log}", "-kernel", str(kernel), "-initrd", str(initrd), "-append", append]
    cmd += ["-accel", "kvm", "-cpu", "host"] if accel == "kvm" else ["-accel", "tcg,thread=multi", "-cpu", "max"]
    log.write_bytes(b"")
    t0 = time.monotonic()
    times: dict[str, float] = {}
    err = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL)
    size, moved, last_say = 0, t0, t0
    stage = "boot"
    try:
        while proc.poll() is None:
            time.sleep(0.5)
            now = time.monotonic()
            cur = log.stat().st_size
            if cur != size:
                size, moved = cur, now
                text = log.read_text(errors="replace")
                if "boot" not in times and "rwb: boot ok" in text:
                    times["boot"] = now - t0
                    stage = "workload"
                    say(f"{label}: booted in {_elapsed(t0)}; workload")
                if "workload" not in times and "rwb: workload exit" in text:
                    times["workload"] = now - t0 - times.get("boot", 0.0)
            if now - last_say >= 30:
                last_say = now
                say(f"{label}: {stage} {_elapsed(t0)}")
            silent_kvm = accel == "kvm" and size == 0 and now - t0 > KVM_FIRST_OUTPUT
            if now - t0 > timeout or now - moved > quiet_limit or silent_kvm:
                proc.kill()
                proc.wait()
                err.seek(0)
                return None, err.read().decode(errors="replace"), times
        err.seek(0)
        return proc.returncode, err.read().decode(errors="replace"), times
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        err.close()


# --------------------------------------------------------------------------
# the console
# --------------------------------------------------------------------------

def _plain(line: str) -> str:
    return _STAMP.sub("", line.rstrip("\r"))


def _title(line: str) -> str:
    t = re.sub(r"0x[0-9a-f]+", "0x…", line)
    t = re.sub(r"\b(CPU|PID|UID|pid)[:#]? ?\d+", r"\1 N", t)
    t = re.sub(r"/\d+\b", "/N", t)
    t = re.sub(r"\b\d+\.\d+\b", "N", t)
    return t.strip()


def parse_console(text: str) -> tuple[list[Splat], dict[str, tuple[str, str]], dict[int, dict[str, int]], dict]:
    lines = [_plain(l) for l in text.splitlines()]
    splats: list[Splat] = []
    phases: dict[str, tuple[str, str]] = {}
    counts: dict[int, dict[str, int]] = {}
    marks = {"boot": False, "finished": False}
    current: Splat | None = None
    for line in lines:
        if SPLAT_START.match(line):
            if current is not None and line.startswith("WARNING: CPU") and any(
                    l.startswith(("BUG:", "WARNING: bad", "WARNING: possible", "WARNING: held")) for l in current.lines[:2]):
                current.lines.append(line)  # a WARN inside a report already open
                continue
            current = Splat(_title(line), [line])
            splats.append(current)
            continue
        if current is not None:
            if line.startswith(("rwl ", "rwi ", "rwb: ")) or "---[ end trace" in line or len(current.lines) > 80:
                if "---[ end trace" in line:
                    current.lines.append(line)
                current = None
            else:
                current.lines.append(line)
        m = re.match(r"^rwl (\S+) (ok|skip|FAIL|start)\s?(.*)$", line)
        if m:
            if m.group(2) != "start" or m.group(1) not in phases:
                phases[m.group(1)] = ("started" if m.group(2) == "start" else m.group(2), m.group(3))
            continue
        m = re.match(r"^rwi (\d+) calls=(\d+) evals=(\d+) real=(\d+) forced=(\d+)", line)
        if m:
            counts[int(m.group(1))] = {"calls": int(m.group(2)), "evals": int(m.group(3)),
                                       "real": int(m.group(4)), "forced": int(m.group(5))}
            continue
        if line.startswith("rwb: boot ok"):
            marks["boot"] = True
        if line.startswith("rwb: done"):
            marks["finished"] = True
    return splats, phases, counts, marks


def attribute(splat: Splat, functions: list[Function], defined: dict[str, set[str]]) -> None:
    """Name the converted functions a splat concerns: those its backtrace
    names, and those defined in the same file as a function in it (a
    static function is often inlined into its caller), with why."""
    frames = []
    for line in splat.lines:
        for m in _FRAME.finditer(line):
            frames.append(m.group(1).split(".")[0])
        bare = re.match(r"^\s+(?:\? )?([A-Za-z_]\w*)(?:\.\w+)?\+0x", line)
        if bare:
            frames.append(bare.group(1))
    seen = []
    for f in functions:
        if not f.x86:
            continue
        if f.name in frames:
            seen.append(f"{f.name}() is in the backtrace")
        else:
            near = [fr for fr in dict.fromkeys(frames) if fr in defined.get(f.file, set())]
            if near:
                what = f"forced {f.forced} times" if f.forced else "its failure path was not forced"
                seen.append(f"{f.name}() ({f.file}, {what}): the backtrace is in {', '.join(near[:3])}() of the same file")
    splat.functions = seen


# --------------------------------------------------------------------------
# the whole check
# --------------------------------------------------------------------------

def init_script(rounds: int, race_seconds: int) -> str:
    return (TEMPLATE_DIR / INIT_SCRIPT).read_text().replace("@ROUNDS@", str(rounds)).replace(
        "@RACE_SECONDS@", str(race_seconds))


def boot_series(series, say=None, jobs: int | None = None, cache: Path | None = None, every: int = DEFAULT_EVERY,
                accel: str = "auto", rounds: int = DEFAULT_ROUNDS, race_seconds: int = DEFAULT_RACE_SECONDS,
                function: str | None = None) -> BootReport:
    function = function or recipe_mod.find(None).function  # the default recipe's
    outer = say or (lambda text: None)
    t_start = time.monotonic()

    def say(text: str) -> None:
        outer(f"boot [{_elapsed(t_start)}]: {text}")

    tools = require_tools()
    cache = cache or kbuild.default_cache()
    cache.mkdir(parents=True, exist_ok=True)
    with kbuild.one_at_a_time(cache / ".boot-lock", say,
                              f"waiting for another rewriter check --boot to finish with {cache}"):
        return _boot_series(series, say, jobs or os.cpu_count() or 1, cache, every, accel, rounds, race_seconds,
                            function, tools)


def overlay(src: kbuild.Source, commit: str, paths: list[str], files: dict[str, bytes]) -> None:
    """Make src the base with paths as at commit and files (path -> bytes)
    over them.  A file written by an earlier run and not wanted now goes
    back to the base (or away); a file that already has the wanted bytes is
    not written, so that make's time stamps stay right."""
    record = src.dir.parent / f"{src.dir.name}.overlay.json"
    before = set(json.loads(record.read_text())) if record.exists() else set()
    wanted: dict[str, bytes | None] = {}
    for path in sorted(before | set(paths) | set(files)):
        if path in files:
            wanted[path] = files[path]
        elif path in paths:
            wanted[path] = src.blob(commit, path)
        else:
            wanted[path] = src.blob(src.base, path)
    record.write_text(json.dumps(sorted(wanted)))  # all it may touch, should this be interrupted
    inject.write_files(src.dir, {p: b for p, b in wanted.items() if b is not None})
    for path, data in wanted.items():
        if data is None and (src.dir / path).exists():
            (src.dir / path).unlink()
    record.write_text(json.dumps(sorted(p for p in wanted if p in files or p in paths)))


def _blob(repo: Path, commit: str, path: str) -> bytes | None:
    proc = subprocess.run(["git", "cat-file", "blob", f"{commit}:{path}"], cwd=repo, capture_output=True, check=False)
    return proc.stdout if proc.returncode == 0 else None


def _boot_series(series, say, jobs: int, cache: Path, every: int, accel: str, rounds: int, race_seconds: int,
                 function: str, tools: dict[str, str]) -> BootReport:
    report = BootReport(every=every)
    repo = series.clone
    final = series.commits[-1]
    pattern = kbuild.watched_pattern(function)

    # The sites: the injection over every .c file the series touches.
    c_files = [p for p in series.touched() if p.endswith(".c")]
    texts = {p: b for p in c_files if (b := _blob(repo, final, p)) is not None}
    names = set()
    for b in texts.values():
        names |= kbuild.code_mentions(b.decode("utf-8", "replace"), pattern)
    names.discard(function)
    # the prototypes: in the headers the series touches (its first commit
    # declares the variants)
    headers = [p for p in series.touched() if p.endswith(".h")]
    proto = "\n".join((_blob(repo, final, h) or b"").decode("utf-8", "replace") for h in headers)
    readonly, maywrite = inject.variant_names(proto, names | kbuild.code_mentions(proto, pattern) - {function})
    say("inject: the failure hooks into the series' final tree")
    injection = inject.inject(texts, readonly, maywrite)
    for path, err in injection.errors.items():
        report.problems.append(f"{path}: the failure hooks could not be put in: {err}")
    for (path, name), kinds in injection.functions().items():
        policy = "pmd_same" if "recheck" in kinds else ("dummy" if "rw" in kinds else "ro")
        report.functions.append(Function(path, name, policy, kbuild.arch_of(path) == "x86"))
    x86_files = sorted({f.file for f in report.functions if f.x86})
    if not x86_files:
        report.nothing_to_boot = ("the series changes no call that x86_64 builds"
                                  + (f" (only {', '.join(sorted({f.file for f in report.functions}))})"
                                     if report.functions else ""))
        return report

    # Sources, configuration, builds.
    # The base as exported; the series' kernel from a second export of the
    # base with the final commit's files and the hooks written over it, only
    # where they differ: a later run (another plan, another N) rebuilds only
    # what changed.
    base_src = kbuild.Source(repo, series.base, cache, say, prefix="boot-src")
    final_src = kbuild.Source(repo, series.base, cache, say, prefix="boot-series")
    makefile = _blob(repo, final, inject.MAKEFILE) or b""
    extra = inject.kernel_files(injection.sites, makefile, every, DEFAULT_DELAY_US)
    overlay(final_src, final, series.touched(),
            {**{p: injection.files[p] for p in injection.files if p in x86_files}, **extra})

    code_opts = kernel_options(base_src.read_base, series, x86_files)
    options = sorted(set(BOOT_OPTIONS) | code_opts)
    report.options["from_code"] = sorted(code_opts)
    env, make_args = _ccache_env(cache)
    kernels = {}
    for label, src in (("base", base_src), ("series", final_src)):
        run = Run(label)
        report.runs.append(run)
        digest = hashlib.sha256(json.dumps({"src": base_src.dir.name, "options": options}).encode()).hexdigest()[:12]
        out = cache / f"boot-x86_64-{label}-{digest}"
        enabled, not_enabled = configure(src.dir, out, options, env, say)
        if not_enabled:
            report.options[f"not_enabled_{label}"] = not_enabled
            report.notes.append(f"{label} kernel: could not switch on {', '.join(not_enabled)}")
        t0 = time.monotonic()
        say(f"build {label} kernel ({BASE_CONFIG} + {len(enabled)} options, -j{jobs}"
            f"{', ccache' if make_args else ''})")
        kernels[label] = build_kernel(src.dir, out, env, make_args, jobs, say, label)
        run.seconds["build"] = time.monotonic() - t0
        run.kernel = str(kernels[label])
    for f in report.functions:
        if f.x86:
            out = Path(report.runs[1].kernel).parents[3]
            f.built = (out / (f.file[:-2] + ".o")).exists()

    # Boot: the base once, then the series' kernel once per x86 function
    # with a pmd_same() recheck, only that function's failures forced (so
    # that what goes wrong is that function's doing); with no such function,
    # once with nothing forced, to count the calls.
    workload = build_workload(cache, tools["gcc"])
    work = cache / "boot" / "runs"
    work.mkdir(parents=True, exist_ok=True)
    initrd = work / "initramfs.cpio"
    make_initramfs(initrd, tools["busybox"], workload, init_script(rounds, race_seconds))
    series_kernel = report.runs[1].kernel
    series_seconds = report.runs[1].seconds.get("build", 0.0)
    report.runs[1:] = []
    targets = [f for f in report.functions if f.x86 and f.policy == "pmd_same"]
    for f in targets:
        ids = [s.id for s in injection.sites if (s.file, s.function, s.kind) == (f.file, f.name, "recheck")]
        run = Run(f"series:{f.name}", kernel=series_kernel, forced=f.name, sites=ids)
        report.runs.append(run)
    if not targets:
        report.runs.append(Run("series", kernel=series_kernel, sites=[]))
    report.runs[1].seconds["build"] = series_seconds
    ok_kvm, why = kvm_usable()
    # KVM that failed once fails again until the host reboots: remember it
    # per host boot, and spare later checks the 30 s of finding out.
    verdict_file = cache / "boot" / "kvm-verdict.json"
    host_boot = _host_boot_id()
    if ok_kvm and accel == "auto" and verdict_file.exists():
        saved = json.loads(verdict_file.read_text())
        if saved.get("host_boot") == host_boot and saved.get("why"):
            ok_kvm, why = False, f"{saved['why']}, found earlier since the host booted"
    chosen = accel if accel != "auto" else ("kvm" if ok_kvm else "tcg")
    note = "" if chosen == "kvm" or accel == "tcg" else f"TCG: {why}"
    for run in report.runs:
        forced = ",".join(map(str, run.sites)) if run.sites else "none"
        append = (f"{KERNEL_ARGS} rewriter_inject.every={every} rewriter_inject.delay_us={DEFAULT_DELAY_US}"
                  f" rewriter_inject.sites={forced}")
        log = work / f"console-{run.label.replace(':', '-')}.log"
        run.console = str(log)
        while True:
            timeout = 900 if chosen == "kvm" else 2400
            say(f"{run.label}: boot ({chosen})")
            rc, err, times = run_qemu(tools["qemu-system-x86_64"], Path(run.kernel), initrd, append, log, chosen,
                                      timeout, 300 if chosen == "kvm" else 600, say, run.label)
            text = log.read_text(errors="replace")
            kvm_failed = chosen == "kvm" and ("rwb: boot ok" not in text) and (
                "KVM" in err or "kvm" in err or "KVM internal error" in text or not text.strip())
            if kvm_failed and accel == "auto":
                why_kvm = (kbuild._last_line(err) if "kvm" in err.lower() else
                           "KVM internal error" if "KVM internal error" in text else
                           f"no console output in {KVM_FIRST_OUTPUT:.0f}s")
                note = f"TCG: KVM failed ({why_kvm})"
                verdict_file.write_text(json.dumps({"host_boot": host_boot, "why": f"KVM failed ({why_kvm})"}))
                say(f"{run.label}: KVM failed; again with TCG")
                chosen = "tcg"
                continue
            break
        run.accel, run.accel_note = chosen, note
        run.seconds.update(times)
        splats, phases, counts, marks = parse_console(text)
        run.splats, run.phases, run.counts = splats, phases, counts
        run.booted, run.finished = marks["boot"], marks["finished"]
        run.tail = [_plain(l) for l in text.splitlines()[-25:]]
        if rc is None:
            run.tail.append(f"(qemu stopped by rewriter after {timeout}s or a silent console)")
        elif err.strip() and not run.booted:
            run.tail.append(f"qemu: {kbuild._last_line(err)}")
        say(f"{run.label}: {'finished' if run.finished else 'booted' if run.booted else 'did not boot'}, "
            f"{len(run.splats)} splat(s), "
            f"{sum(1 for v in run.phases.values() if v[0] == 'FAIL')} failed phase(s)")

    _judge(report, injection, final_src.dir)
    return report


# Which converted functions each workload phase is there for: a data error
# in a phase points at them.
PHASE_FUNCTIONS = {
    "fork_anon": ("copy_pte_range", "handle_pte_fault"), "fork_file": ("copy_pte_range", "handle_pte_fault"),
    "wp_fault": ("handle_pte_fault",), "mremap": ("move_ptes",), "file_fault": ("filemap_fault_recheck_pte_none",),
    "collapse_shmem": ("collapse_pte_mapped_thp",), "collapse_swapin": ("__collapse_huge_page_swapin",),
    "uffd_move": ("move_pages_pte",), "mglru": ("walk_pte_range",), "pageout": ("map_pte",),
    "migrate": ("map_pte",), "partial_thp": ("map_pte", "page_vma_mapped_walk"), "race": ("map_pte",),
}


def _judge(report: BootReport, injection: inject.Injection, final_dir: Path) -> None:
    base, runs = report.runs[0], report.runs[1:]
    by_name = {f.name: f for f in report.functions}
    if not base.booted:
        report.problems.append("the base kernel did not boot (last console lines shown above)")
    elif not base.finished:
        report.problems.append("the base kernel booted but the workload did not finish (last console lines shown above)")
    for run in runs:
        who = f" with {run.forced}()'s failures forced" if run.forced else ""
        fn = by_name.get(run.forced)
        if not run.booted:
            problem = f"the series kernel{who} did not boot (last console lines shown above)"
        elif not run.finished:
            problem = f"the series kernel{who} booted but the workload did not finish (last console lines shown above)"
        else:
            continue
        report.problems.append(problem)
        if fn is not None:
            fn.problems.append(problem.replace(f" with {run.forced}()'s failures forced", ""))
    # counts: the calls from any run, the recheck of a function from its own run
    by_site = {s.id: s for s in injection.sites}
    for f in report.functions:
        for run in runs:
            calls = evals = forced = real = 0
            for sid, c in run.counts.items():
                s = by_site.get(sid)
                if s is None or (s.file, s.function) != (f.file, f.name):
                    continue
                if s.kind == "recheck":
                    evals += c["evals"]
                    forced += c["forced"]
                    real += c["real"]
                else:
                    calls += c["calls"]
            f.calls = max(f.calls, calls)
            if run.forced == f.name or (not run.forced and f.policy == "pmd_same"):
                f.evals, f.forced, f.real = evals, forced, real
    defined = {}
    for path in {f.file for f in report.functions if f.x86}:
        try:
            defined[path] = inject.defined_functions((final_dir / path).read_text(errors="replace"))
        except OSError:
            defined[path] = set()
    base_titles = {s.title for s in base.splats}
    for s in base.splats:
        s.new = False
    base_fail = {k for k, v in base.phases.items() if v[0] == "FAIL"}
    for run in runs:
        fn = by_name.get(run.forced)
        who = f" (only {run.forced}()'s failures forced)" if run.forced else ""
        seen: dict[str, int] = {}
        for s in run.splats:
            s.new = s.title not in base_titles
            if fn is not None:
                # One function's failures were forced in this boot: the
                # splat is its doing, whatever else the backtrace names.
                attribute(s, [fn], defined)
                if not s.functions:
                    s.functions = [f"{fn.name}() (the only function whose failures were forced in this boot, "
                                   f"{fn.forced} times)"]
            else:
                attribute(s, report.functions, defined)
            if s.new:
                seen[s.title] = seen.get(s.title, 0) + 1
                if seen[s.title] > 1:
                    continue
                for f in report.functions:
                    if any(x.startswith(f.name + "()") for x in s.functions):
                        f.problems.append(f"splat: {s.title}")
        for title, n in seen.items():
            first = next(s for s in run.splats if s.title == title)
            report.problems.append(f"new splat{who}: {title}" + (f" ({n} times)" if n > 1 else "")
                                   + (f" [{'; '.join(first.functions)}]" if first.functions else ""))
        for name, (status, detail) in run.phases.items():
            if status == "FAIL" and name not in base_fail:
                aimed = ", ".join(f"{n}()" for n in PHASE_FUNCTIONS.get(name, ()))
                report.problems.append(f"workload {name}: data check failed{who}, not in the base's run: {detail}"
                                       + (f" (the phase is there for {aimed})" if aimed else ""))
                if fn is not None:
                    fn.problems.append(f"workload {name}: {detail}")
            if status == "started" and run.booted:
                report.problems.append(f"workload {name}: did not finish{who}")
                if fn is not None:
                    fn.problems.append(f"workload {name}: did not finish")
    counted = any(run.counts for run in runs)
    if runs and any(run.finished for run in runs) and not counted:
        report.problems.append("the series kernel printed no hook counts (/sys/kernel/debug/rewriter_inject)")
    if counted:
        for f in report.functions:
            if not f.x86:
                continue
            if f.built is False:
                f.problems.append(f"{f.file[:-2]}.o is not in the test kernel: the boot configuration does not build it")
            if f.calls == 0 and f.evals == 0:
                f.problems.append("never ran: no workload phase reached it")
            if f.policy == "pmd_same" and f.forced == 0:
                f.problems.append("its pmd_same() failure path was never forced (the recheck "
                                  + (f"ran {f.evals} times in the workload's tasks and elsewhere, "
                                     f"none an {_nth(report.every)} evaluation in the workload" if f.evals else "never ran")
                                  + ")")
    for f in report.functions:
        if f.problems:
            report.problems.append(f"{f.name}(): " + "; ".join(dict.fromkeys(f.problems)))
