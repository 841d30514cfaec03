"""Render the text templates in templates/ (Jinja2, strict about undefined names)."""

from __future__ import annotations

import json
import textwrap
import jinja2

from rewriter import cache
from rewriter.resources import TEMPLATES_DIR


def _toml(value: object) -> str:
    """A TOML basic string, or an array of them (JSON's escapes are valid TOML)."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(json.dumps(str(v), ensure_ascii=False) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def _wrap(text: str, width: int = 75, indent: str = "") -> str:
    return "\n".join(textwrap.wrap(text, width=width, initial_indent=indent, subsequent_indent=indent,
                                   break_long_words=False, break_on_hyphens=False))


env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    autoescape=False,
    bytecode_cache=cache.jinja_bytecode_cache(),
)
env.filters["toml"] = _toml
env.filters["wrap"] = _wrap
env.filters["lines"] = str.splitlines


def render(template: str, **values: object) -> str:
    return env.get_template(template).render(**values)
