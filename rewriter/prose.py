"""Render the mail and commit-message templates in templates/series/.

The words are all in the templates; this module only lays them out:
reflow() wraps paragraphs and "- " lists at 75 columns and leaves
indented blocks (tables, code) as they are.
"""

from __future__ import annotations

import re
import textwrap

from rewriter import text as templates
WIDTH = 75


def reflow(text: str, width: int = WIDTH) -> str:
    """Wrap every paragraph and list item of text to width columns.

    Blocks are separated by blank lines.  In a block, a line that starts
    with "- " (after any indentation) starts a list item, and the lines
    after it continue it; lines before the first item form a paragraph.
    A block whose lines all start with white space is kept as it is.
    """
    blocks = re.split(r"\n[ \t]*\n", text.strip("\n"))
    out = []
    for block in blocks:
        lines = block.split("\n")
        if all(l[:1] in (" ", "\t") for l in lines):
            out.append("\n".join(l.rstrip() for l in lines))
            continue
        parts: list[tuple[str, list[str]]] = []  # (the item's "- " with its indent, or "", words)
        for line in lines:
            m = re.match(r"^( *)- (.*)$", line)
            if m:
                parts.append((m.group(1) + "- ", [m.group(2)]))
            elif parts:
                parts[-1][1].append(line.strip())
            else:
                parts.append(("", [line.strip()]))
        rendered = []
        for bullet, words in parts:
            rendered.append(textwrap.fill(" ".join(w for w in words if w), width,
                                          initial_indent=bullet, subsequent_indent=" " * len(bullet),
                                          break_long_words=False, break_on_hyphens=False))
        out.append("\n".join(rendered))
    return "\n\n".join(out) + "\n"


def sentence(text: str) -> str:
    """A plan reason as a sentence: capital first letter, final full stop.
    A sentence that starts with a C name keeps it as it is."""
    text = " ".join(text.split())
    if not text:
        return text
    if not is_c_name(text.split()[0]):
        text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def is_c_name(word: str) -> bool:
    """widget_same(), pte_same, *ptlp: a word that names code, whose case is
    not the sentence's to change."""
    return bool(re.match(r"^[*&]?[A-Za-z_]\w*(\(\))?[,.;:]?$", word)) and ("_" in word or "(" in word or word[0] in "*&")


def clause(text: str) -> str:
    """A reason inside a sentence: no final full stop."""
    return " ".join(text.split()).rstrip(".")


def join_and(items: list[str], last: str = "and") -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {last} " + items[-1]


def render(template: str, recipe_templates=None, **values: object) -> str:
    """The template's text, as it is (no reflow)."""
    return templates.render(template, recipe_templates, **values)


def message(template: str, recipe_templates=None, **values: object) -> tuple[str, str]:
    """(subject, body) of a template whose first line is the subject and
    whose body, after a blank line, is prose to reflow."""
    text = render(template, recipe_templates, **values)
    subject, _, body = text.lstrip("\n").partition("\n")
    return " ".join(subject.split()), reflow(body)
