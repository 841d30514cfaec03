"""Where the commands write their outputs (-o DIR, --emit-cocci DIR)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from rewriter.errors import InputError


@contextmanager
def parents_made(path: str, refusal: str):
    """Make the missing parents of path for the block.  When the block
    fails, remove them again; an OSError (a full disk, no permission)
    becomes one line, refusal with {reason} filled in."""
    made: list[Path] = []
    try:
        for parent in reversed(Path(path).absolute().parents):
            if not parent.exists():
                try:
                    parent.mkdir()
                except FileExistsError:
                    if not parent.is_dir():
                        raise
                    continue  # another run made it meanwhile: it is not ours to remove
                made.append(parent)
        yield
    except BaseException as exc:
        for parent in reversed(made):
            try:
                parent.rmdir()
            except OSError:
                pass
        if isinstance(exc, OSError):
            raise InputError(refusal.format(reason=exc.strerror or exc)) from None
        raise
