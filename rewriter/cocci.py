"""Render the semantic patches in cocci/ (Jinja2, strict about undefined names)."""

from __future__ import annotations

import jinja2

from rewriter import cache
from rewriter.resources import COCCI_DIR

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(COCCI_DIR)),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    autoescape=False,
    bytecode_cache=cache.jinja_bytecode_cache(),
)


def render(template: str, **values: object) -> str:
    return _env.get_template(template).render(**values)

