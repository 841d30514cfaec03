"""Render the semantic patches in cocci/ (through the one environment of rewriter.text)."""

from __future__ import annotations

from rewriter import text


def render(template: str, **values: object) -> str:
    return text.render(template, **values)
