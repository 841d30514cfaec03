"""The patch files: written by git format-patch, then completed here.

git format-patch writes the cover letter and one file per commit.  This
module then fills in the cover letter (its subject and blurb, from
templates/series/cover.txt.j2), adds the "Changes in vN" notes below the
"---" of each changed patch, the To: and Cc: headers, and Message-Id,
In-Reply-To and References headers derived from the files' contents, so
that the same input gives the same bytes.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from rewriter import __version__, prose
from rewriter.errors import InputError, RewriterError
from rewriter.gitstore import Git, Ident, When

SUBJECT_PLACEHOLDER = "*** SUBJECT HERE ***"
BLURB_PLACEHOLDER = "*** BLURB HERE ***"
HEADER_WIDTH = 78  # git folds the Subject: header at this width


def check_address(address: str, what: str) -> str:
    """One address for a To: or Cc: header; nothing that could end the header."""
    if any(ch in address for ch in "\r\n\0"):
        raise InputError(f"{what} {address!r}: an address may not contain a line break")
    address = address.strip()
    if "@" not in address or len(split_addresses(address)) != 1:
        raise InputError(f"{what} {address!r}: give one address, such as 'Name <user@example.org>'")
    return address


def check_subject_prefix(prefix: str) -> None:
    if any(ch in prefix for ch in "\r\n\0") or not prefix.strip():
        raise InputError(f"--subject-prefix {prefix!r}: give one line, such as 'RFC PATCH'")


# --------------------------------------------------------------------------
# git format-patch
# --------------------------------------------------------------------------

def format_patches(git: Git, base: str, tip: str, version: int, subject_prefix: str, out: Path,
                   sender: Ident, date: When) -> list[Path]:
    """Run git format-patch on base..tip into out; the files in order."""
    env = git.env({"GIT_COMMITTER_NAME": sender.name, "GIT_COMMITTER_EMAIL": sender.email,
                   "GIT_COMMITTER_DATE": str(date)}, clean_config=True)
    # Version 1 is "[RFC PATCH 00/13]", as git and b4 write it; the
    # version appears from 2 ("[RFC PATCH v2 00/13]").
    reroll = [f"--reroll-count={version}"] if version > 1 else []
    git.run("format-patch", "--cover-letter", *reroll,
            f"--subject-prefix={subject_prefix}", "--thread=shallow", f"--base={base}",
            "--numbered", "--no-signoff", "--no-notes", "--no-add-header", "--no-to", "--no-cc",
            "--no-from", "--no-attach", "--encode-email-headers", "--suffix=.patch",
            "--filename-max-length=64", f"--signature=rewriter {__version__}",
            "--abbrev=12", "--diff-algorithm=myers", "--no-color", "--no-relative",
            "--src-prefix=a/", "--dst-prefix=b/", "-U3", "--stat=72",
            "-o", str(out), f"{base}..{tip}", env=env)
    return sorted(out.iterdir())


# --------------------------------------------------------------------------
# headers
# --------------------------------------------------------------------------

class Message:
    """A patch file: the mbox "From " line, headers, and the rest."""

    def __init__(self, data: bytes):
        text = data.decode("utf-8", "surrogateescape")
        head, sep, self.body = text.partition("\n\n")
        if not sep:
            raise RewriterError("internal error: a patch file from git format-patch has no headers")
        lines = head.split("\n")
        self.from_line = lines[0]
        self.headers: list[list[str]] = []  # [name, value (unfolded)]
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and self.headers:
                self.headers[-1][1] += line
            else:
                name, _, value = line.partition(":")
                self.headers.append([name, value.strip()])

    def get(self, name: str) -> str | None:
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None

    def set(self, name: str, value: str, after: str | None = None) -> None:
        """Replace the header, or add it (after the header named after)."""
        for h in self.headers:
            if h[0].lower() == name.lower():
                h[1] = value
                return
        at = len(self.headers)
        if after is not None:
            names = [n.lower() for n, _v in self.headers]
            if after.lower() in names:
                at = names.index(after.lower()) + 1
        self.headers.insert(at, [name, value])

    def delete(self, name: str) -> None:
        self.headers = [h for h in self.headers if h[0].lower() != name.lower()]

    def to_bytes(self) -> bytes:
        lines = [self.from_line]
        for name, value in self.headers:
            if name.lower() == "subject":
                lines.extend(_fold_words(f"{name}: {value}"))
            elif name.lower() in ("to", "cc"):
                lines.extend(_fold_addresses(name, value))
            else:
                lines.append(f"{name}: {value}")
        return ("\n".join(lines) + "\n\n" + self.body).encode("utf-8", "surrogateescape")


def _fold_words(line: str) -> list[str]:
    """Fold a header line at spaces, as git does for Subject: lines."""
    out: list[str] = []
    current = ""
    for word in line.split(" "):
        if current and len(current) + 1 + len(word) > HEADER_WIDTH:
            out.append(current)
            current = " " + word
        else:
            current = f"{current} {word}" if current else word
    out.append(current)
    return out


def _fold_addresses(name: str, value: str) -> list[str]:
    """One address a line, as git format-patch writes --cc."""
    addresses = [a.strip() for a in split_addresses(value)]
    lines = [f"{name}: {addresses[0]}"]
    for a in addresses[1:]:
        lines[-1] += ","
        lines.append(f"    {a}")
    return lines


def split_addresses(value: str) -> list[str]:
    """Split at commas that are not inside quotes."""
    out, current, quoted = [], "", False
    for ch in value:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            out.append(current)
            current = ""
        else:
            current += ch
    if current.strip():
        out.append(current)
    return out


def address_key(address: str) -> str:
    m = re.search(r"<([^>]+)>", address)
    return (m.group(1) if m else address).strip().lower()


def merge(*lists: list[str]) -> list[str]:
    """The addresses of the lists in order, each once (by e-mail address)."""
    seen: set[str] = set()
    out = []
    for lst in lists:
        for a in lst:
            key = address_key(a)
            if key not in seen:
                seen.add(key)
                out.append(a)
    return out


# --------------------------------------------------------------------------
# completing the files
# --------------------------------------------------------------------------

def insert_notes(body: str, notes: str) -> str:
    """Put notes right below the "---" that ends the commit message."""
    lines = body.split("\n")
    try:
        at = lines.index("---")
    except ValueError:
        raise RewriterError("internal error: a patch from git format-patch has no '---' line") from None
    lines[at + 1:at + 1] = notes.rstrip("\n").split("\n") + [""]
    return "\n".join(lines)


def _message_id(kind: str, version: int, number: int, msg: Message, domain: str) -> str:
    """From the file's contents (without the ids): the same series gives
    the same ids, a changed one new ids."""
    h = hashlib.sha256()
    h.update(f"{kind} v{version} {number}\n".encode())
    for name, value in msg.headers:
        if name.lower() not in ("message-id", "in-reply-to", "references"):
            h.update(f"{name}: {value}\n".encode("utf-8", "surrogateescape"))
    h.update(msg.body.encode("utf-8", "surrogateescape"))
    return f"<rewriter.v{version}.{number:02d}.{h.hexdigest()[:20]}@{domain}>"


def finish(files: list[Path], cover: tuple[str, str], recipients: list[tuple[list[str], list[str]]],
           to: list[str], cc: list[str], changes, patch_keys: list[list[str]], version: int,
           sender: Ident, api: tuple[list[str], list[str]] = ([], []), cover_cc: list[str] = ()) -> dict:
    """Complete the files in place; return their Message-Ids.

    api: the maintainers (To) and reviewers and lists (Cc) of the files
    that declare and define the function: every patch goes to them too,
    and the cover letter goes to the maintainers, copied to everyone else
    (and to cover_cc, the authors of the last changes to the function)."""
    messages = [Message(f.read_bytes()) for f in files]
    cover_msg, patches = messages[0], messages[1:]

    # The cover letter's subject and blurb (templates/series/cover.txt.j2).
    subject, blurb = cover
    old_subject = cover_msg.get("Subject") or ""
    if SUBJECT_PLACEHOLDER not in old_subject or BLURB_PLACEHOLDER not in cover_msg.body:
        raise RewriterError("internal error: git format-patch wrote a cover letter without its placeholders")
    cover_msg.set("Subject", old_subject.replace(SUBJECT_PLACEHOLDER, subject))
    cover_msg.body = cover_msg.body.replace(BLURB_PLACEHOLDER + "\n", blurb, 1)

    # Below the "---" of each changed patch: what changed since the last version.
    if changes is not None:
        for n, msg in enumerate(patches, 1):
            values = changes.for_patch(n, patch_keys[n - 1])
            if values is not None:
                msg.body = insert_notes(msg.body, prose.reflow(prose.render("series/changes.txt.j2", **values)))

    # Recipients: each patch its own and the API's; the cover letter to
    # the API's maintainers, copied to everyone else.
    api_to, api_cc = api
    everyone: list[str] = []
    for msg, (p_to, p_cc) in zip(patches, recipients):
        t = merge(p_to, api_to, to)
        c = [a for a in merge(p_cc, api_cc, cc) if address_key(a) not in {address_key(x) for x in t}]
        _set_recipients(msg, t, c)
        everyone = merge(everyone, t, c)
    cover_to = merge(api_to, to) or merge(*(r[0] for r in recipients), to)
    keys = {address_key(x) for x in cover_to}
    _set_recipients(cover_msg, cover_to,
                    [a for a in merge(api_cc, everyone, list(cover_cc), cc) if address_key(a) not in keys])

    # Message ids last: they are derived from everything else.
    cover_msg.delete("In-Reply-To")
    cover_msg.delete("References")
    cover_id = _message_id("cover", version, 0, cover_msg, sender.domain)
    cover_msg.set("Message-Id", cover_id)
    ids = []
    for n, msg in enumerate(patches, 1):
        msg.set("In-Reply-To", cover_id, after="Message-Id")
        msg.set("References", cover_id, after="In-Reply-To")
        mid = _message_id("patch", version, n, msg, sender.domain)
        msg.set("Message-Id", mid)
        ids.append(mid)
    for f, msg in zip(files, messages):
        f.write_bytes(msg.to_bytes())
    return {"cover": cover_id, "patches": ids}


def _set_recipients(msg: Message, to: list[str], cc: list[str]) -> None:
    msg.delete("To")
    msg.delete("Cc")
    if to:
        msg.set("To", ", ".join(to), after="Subject")
    if cc:
        msg.set("Cc", ", ".join(cc), after="To" if to else "Subject")
