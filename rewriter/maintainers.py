"""Who each patch goes to: maintainers in To:, reviewers and lists in Cc:.

With the tree's scripts/get_maintainer.pl (and perl), that script decides.
It is run from a private directory holding MAINTAINERS, .mailmap and the
script as they are at the base commit, plus those of the tree's
directories that MAINTAINERS names (empty; the script looks at them to
tell a directory pattern from a file), with
HOME pointing there too so that no personal .get_maintainer.conf applies.
The repository's work tree is never read.

Without the script, MAINTAINERS is read here: a section applies to a
file that one of its F: patterns matches (and no X: pattern), with the
rules of get_maintainer.pl; its M: entries go to To:, R: and L: to Cc:.
The maintainer of the catch-all section THE REST is left out, as
get_maintainer.pl does; its list stays.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from rewriter import cache
from rewriter.errors import RewriterError
from rewriter.gitstore import Git
from rewriter.mail import address_key, check_address, merge, split_addresses

SCRIPT = "scripts/get_maintainer.pl"
MAINTAINERS = "MAINTAINERS"
OPTIONS = ("--no-tree", "--no-git", "--no-git-fallback", "--no-fixes", "--no-interactive", "--no-s")
# One run per patch names everyone with their roles, and the roles say who
# goes to To: and who to Cc: (each run costs a quarter of a second).  The
# script names a person once, with the role it met first; so a reviewer
# who is a maintainer somewhere too is asked about again with two runs,
# maintainers only and the others only.
BOTH = ("--rolestats", "--m", "--r", "--l")
TO_OPTIONS = ("--no-rolestats", "--m", "--no-r", "--no-l")
CC_OPTIONS = ("--no-rolestats", "--no-m", "--r", "--l")
# "Name <address> (role)": "open list:SECTION" and the like are lists,
# "reviewer:SECTION" an R: entry; the others (maintainer, supporter, odd
# fixer, ...) are the section's M: people.
_ROLES = re.compile(r"^(?P<address>[^<>]*<[^<>]+>|[^\s<>]+)\s+\((?P<roles>.*)\)$")

Recipients = tuple[list[str], list[str]]  # (To, Cc)


def for_patches(git: Git, base: str, patches: list[Path]) -> list[Recipients]:
    """(To, Cc) for each patch file, in order."""
    maintainers = git.read_blob(base, MAINTAINERS)
    if maintainers is None:
        return [([], []) for _p in patches]
    script = git.read_blob(base, SCRIPT)
    perl = shutil.which("perl")
    if script is not None and perl:
        mailmap = git.read_blob(base, ".mailmap")
        # The script's answer depends on nothing but these inputs (the base
        # tree stands for the directories it looks at) and the patch, so it
        # is kept in the cache under their digest.
        inputs = hashlib.sha256()
        for part in (script, maintainers, mailmap or b"", git.tree_id(base).encode(),
                     "\0".join(OPTIONS + BOTH + TO_OPTIONS + CC_OPTIONS).encode()):
            inputs.update(hashlib.sha256(part).digest())
        texts = [_stable_text(p) for p in patches]
        entries = [_entry(inputs, t) for t in texts]
        results: list[Recipients | None] = [_load(e) for e in entries]
        missing = [i for i, r in enumerate(results) if r is None]
        if missing:
            with tempfile.TemporaryDirectory(prefix="rewriter-maintainers-") as tmp:
                root = Path(tmp)
                (root / "scripts").mkdir()
                (root / SCRIPT).write_bytes(script)
                (root / MAINTAINERS).write_bytes(maintainers)
                if mailmap is not None:
                    (root / ".mailmap").write_bytes(mailmap)
                sections = parse(maintainers.decode("utf-8", "replace"))
                for d in _pattern_directories(sections, set(git.directories(base))):
                    (root / d).mkdir(parents=True, exist_ok=True)
                in_charge = {address_key(a) for s in sections for a in _addresses(s.entries.get("M", []))}

                def one(i: int) -> Recipients:
                    path = root / f"{i:04d}.patch"
                    path.write_bytes(texts[i])
                    return _run_script(perl, root, path, patches[i].name, in_charge)

                with ThreadPoolExecutor(max_workers=4) as pool:
                    for i, found in zip(missing, pool.map(one, missing)):
                        results[i] = found
                        if entries[i] is not None:
                            cache.store(entries[i], json.dumps(found).encode())
        return [r for r in results if r is not None]
    sections = parse(maintainers.decode("utf-8", "replace"))
    dirs = set(git.directories(base))
    return [_from_sections(sections, dirs, _patch_files(p.read_text("utf-8", "replace"))) for p in patches]


def for_files(git: Git, base: str, files: list[str]) -> Recipients:
    """(To, Cc) for a change to these files: for_patches() on a patch
    that names them and changes nothing."""
    text = "".join(f"diff --git a/{f} b/{f}\n--- a/{f}\n+++ b/{f}\n@@ -1 +1 @@\n" for f in files)
    with tempfile.TemporaryDirectory(prefix="rewriter-api-") as tmp:
        path = Path(tmp) / "0000-api.patch"
        path.write_text("From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n"
                        "Subject: [PATCH] the files of the API\n\n---\n" + text, encoding="utf-8")
        return for_patches(git, base, [path])[0]


# Mail headers that are new at every run and tell the script nothing.
_VOLATILE = re.compile(rb"^(From [0-9a-f]{40} |Date:|Message-I[Dd]:|In-Reply-To:|References:)")


def _stable_text(patch: Path) -> bytes:
    """The patch without the header lines that change at every run (From
    <commit>, Date, Message-Id, In-Reply-To, References): what the script
    is given, so that its answer can be kept."""
    lines = patch.read_bytes().split(b"\n")
    end = lines.index(b"") if b"" in lines else len(lines)
    head: list[bytes] = []
    dropping = False
    for line in lines[:end]:
        if line[:1] in (b" ", b"\t"):  # a folded header goes with its first line
            if not dropping:
                head.append(line)
            continue
        dropping = bool(_VOLATILE.match(line))
        if not dropping:
            head.append(line)
    return b"\n".join(head + lines[end:])


def _entry(inputs, text_: bytes) -> Path | None:
    return cache.entry("maintainers", inputs.digest(), text_)


def _load(entry: Path | None) -> Recipients | None:
    if entry is None:
        return None
    try:
        to, cc = json.loads(entry.read_text(encoding="utf-8"))
        return [str(a) for a in to], [str(a) for a in cc]
    except (OSError, ValueError, TypeError):
        return None


def _run_script(perl: str, root: Path, patch: Path, name: str, in_charge: set[str]) -> Recipients:
    env = {"HOME": str(root), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}

    def run(options: tuple[str, ...]) -> list[str]:
        proc = subprocess.run([perl, str(root / SCRIPT), *OPTIONS, *options, str(patch)], cwd=root, env=env,
                              capture_output=True, text=True, check=False, errors="replace")
        if proc.returncode != 0:
            last = next((l for l in reversed(proc.stderr.splitlines()) if l.strip()), "no message")
            raise RewriterError(f"{SCRIPT} failed on {name}: {last}")
        return [line.strip() for line in proc.stdout.splitlines() if line.strip()]

    to: list[str] = []
    cc: list[str] = []
    for line in run(BOTH):
        m = _ROLES.match(line)
        if m is None:
            raise RewriterError(f"{SCRIPT} gave a line without a role for {name}: {line!r}")
        address = check_address(m.group("address"), SCRIPT)
        # Without git, each address has one role: "KIND:SECTION" (a
        # section's name may hold commas and colons), or "open list".
        kind = m.group("roles").split(":", 1)[0]
        if kind == "reviewer" and address_key(address) in in_charge:
            return ([check_address(a, SCRIPT) for a in run(TO_OPTIONS)],
                    [check_address(a, SCRIPT) for a in run(CC_OPTIONS)])
        (cc if kind == "reviewer" or kind.endswith(" list") else to).append(address)
    return to, cc


def _pattern_directories(sections: list[Section], dirs: set[str]) -> set[str]:
    """The directories the script looks for: it asks of each F: and X:
    pattern, with its dots escaped and its wildcards made regular
    expressions, whether it is a directory (to add the "/").  Only a
    pattern with none of those and no "/" at the end can be one."""
    return {v for s in sections for kind in ("F", "X") for v in s.entries.get(kind, [])
            if v in dirs and not any(c in v for c in ".*?")}


# --------------------------------------------------------------------------
# reading MAINTAINERS
# --------------------------------------------------------------------------

@dataclass
class Section:
    title: str
    entries: dict[str, list[str]] = field(default_factory=dict)


def parse(text: str) -> list[Section]:
    sections: list[Section] = []
    current: Section | None = None
    for line in text.splitlines():
        m = re.match(r"^([A-Z]):\s*(.*?)\s*$", line)
        if m and current is not None:
            current.entries.setdefault(m.group(1), []).append(m.group(2))
        elif not line.strip():
            current = None
        elif not m and not line[:1].isspace():
            current = Section(line.strip())
            sections.append(current)
    return [s for s in sections if s.entries]


def _pattern(value: str, dirs: set[str]) -> str:
    """A F:/X: value as get_maintainer.pl turns it into a regular expression."""
    if value.rstrip("/") in dirs and not value.endswith("/"):
        value += "/"
    return value.replace(".", r"\.").replace("*", ".*").replace("?", ".")


def _matches(file: str, value: str, dirs: set[str]) -> bool:
    pattern = _pattern(value, dirs)
    try:
        if not re.match(pattern, file):
            return False
    except re.error:
        return False
    return pattern.endswith("/") or file.count("/") == pattern.count("/")


def _applies(section: Section, file: str, dirs: set[str]) -> bool:
    if any(_matches(file, x, dirs) for x in section.entries.get("X", [])):
        return False
    if any(_matches(file, f, dirs) for f in section.entries.get("F", [])):
        return True
    for n in section.entries.get("N", []):
        try:
            if re.search(n, file):
                return True
        except re.error:
            continue
    return False


def _patch_files(text: str) -> list[str]:
    files = []
    for m in re.finditer(r"^diff --git a/(\S+) b/(\S+)$", text, flags=re.M):
        files.extend([m.group(1), m.group(2)])
    return list(dict.fromkeys(files))


def _from_sections(sections: list[Section], dirs: set[str], files: list[str]) -> Recipients:
    to: list[str] = []
    cc: list[str] = []
    for s in sections:
        if not any(_applies(s, f, dirs) for f in files):
            continue
        if s.title != "THE REST":
            to = merge(to, _addresses(s.entries.get("M", [])))
        cc = merge(cc, _addresses(s.entries.get("R", [])),
                   _addresses(_list_address(a) for a in s.entries.get("L", [])))
    keys = {address_key(a) for a in to}
    return to, [a for a in cc if address_key(a) not in keys]


def _addresses(values) -> list[str]:
    """The addresses of M:, R: or L: entries: one or more per entry,
    separated by commas; an entry with no address in it is skipped."""
    out = []
    for value in values:
        for part in split_addresses(value):
            part = part.strip()
            if "@" in part:
                out.append(check_address(part, MAINTAINERS))
    return out


def _list_address(value: str) -> str:
    """"linux-mm@kvack.org (moderated for non-subscribers)" -> the address."""
    return value.split()[0] if value else value
