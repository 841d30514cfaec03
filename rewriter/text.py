"""The one Jinja2 environment: rewriter's templates/ and cocci/, and the
templates of the recipe in use, which come first (a recipe may give its
own version of any engine template).  Strict about undefined names."""

from __future__ import annotations

import functools
import json
import re
import textwrap
from pathlib import Path

import jinja2

from rewriter import cache
from rewriter.resources import COCCI_DIR, TEMPLATES_DIR


def _toml(value: object) -> str:
    """A TOML basic string, or an array of them (JSON's escapes are valid TOML)."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(json.dumps(str(v), ensure_ascii=False) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def _wrap(text: str, width: int = 75, indent: str = "") -> str:
    return "\n".join(textwrap.wrap(text, width=width, initial_indent=indent, subsequent_indent=indent,
                                   break_long_words=False, break_on_hyphens=False))


@functools.lru_cache(maxsize=None)
def environment(recipe_templates: Path | None = None) -> jinja2.Environment:
    """The environment for one recipe's templates (None: the engine's only)."""
    from rewriter import prose  # its filters; prose renders through this module

    dirs = [str(recipe_templates)] if recipe_templates is not None else []
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([*dirs, str(TEMPLATES_DIR), str(COCCI_DIR)]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
        bytecode_cache=cache.jinja_bytecode_cache(),
        extensions=["jinja2.ext.do"],
    )
    env.filters.update(toml=_toml, wrap=_wrap, lines=str.splitlines, sentence=prose.sentence,
                       clause=prose.clause, join_and=prose.join_and, add_parens=lambda name: f"{name}()")
    env.tests["search"] = lambda value, pattern: re.search(pattern, str(value)) is not None
    return env


def render(template: str, recipe_templates: Path | None = None, **values: object) -> str:
    return environment(recipe_templates).get_template(template).render(**values)
