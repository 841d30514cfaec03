"""Where rewriter's own data folders are: cocci/ and templates/.

In a checkout (and an editable install) they sit beside the package, at
the top of the repository.  A built wheel carries them inside the package,
as rewriter/share/cocci and rewriter/share/templates (pyproject.toml maps
them there).
This module is the one place that knows both layouts.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent

# The folders the wheel maps into the package; each must be listed in
# pyproject.toml's package-dir and package-data as well.
FOLDERS = ("cocci", "templates")


def folder(name: str) -> Path:
    """The data folder NAME (one of FOLDERS), in whichever layout this is."""
    if name not in FOLDERS:
        raise ValueError(f"{name!r} is not one of rewriter's data folders {FOLDERS}")
    installed = PACKAGE_DIR / "share" / name
    if installed.is_dir():
        return installed
    return PACKAGE_DIR.parent / name


COCCI_DIR = folder("cocci")
TEMPLATES_DIR = folder("templates")
