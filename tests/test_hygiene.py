"""Hygiene of the code in rewriter/: no command line is ever a shell string
built from input, and every Jinja2 environment fails on an undefined name
instead of rendering it as nothing."""

from __future__ import annotations

import ast
from pathlib import Path

import jinja2
import pytest

pytestmark = pytest.mark.unit

PACKAGE = Path(__file__).resolve().parent.parent / "rewriter"
SOURCES = sorted(PACKAGE.glob("*.py"))

# Functions that hand a string to a shell.
SHELL_FUNCTIONS = {"os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput",
                   "pty.spawn"}
# Functions that take a command line: it must be a list of arguments.
COMMAND_FUNCTIONS = {"run", "Popen", "call", "check_call", "check_output"}


def _name(node: ast.AST) -> str:
    """a.b.c for an attribute chain, else ''."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _name(node.value)
        return f"{base}.{node.attr}" if base else node.attr
    return ""


def _calls(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    # "from subprocess import run" makes run mean subprocess.run.
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in ("os", "subprocess", "pty"):
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _name(node.func)
            yield node, aliases.get(name, name)


def test_sources_are_found():
    assert {"cli.py", "runner.py", "tree.py"} <= {p.name for p in SOURCES}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_no_shell_and_no_command_strings(path):
    problems = []
    for node, name in _calls(path):
        where = f"{path.name}:{node.lineno}"
        for kw in node.keywords:
            if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                problems.append(f"{where}: {name}(shell=...)")
        if name in SHELL_FUNCTIONS or name.startswith(("os.exec", "os.spawn", "os.posix_spawn")):
            problems.append(f"{where}: {name}()")
        if (name.startswith("subprocess.") and name.split(".")[-1] in COMMAND_FUNCTIONS and node.args
                and isinstance(node.args[0], (ast.Constant, ast.JoinedStr, ast.BinOp))):
            problems.append(f"{where}: {name}() with the command as a string")
        if name.endswith(".execute") and node.args and isinstance(node.args[0], (ast.Constant, ast.JoinedStr,
                                                                                 ast.BinOp)):
            problems.append(f"{where}: {name}() with the command as a string")
    text = path.read_text(encoding="utf-8")
    for word in ("shell=True", "os.system(", "os.popen("):
        if word in text:
            problems.append(f"{path.name}: contains {word!r}")
    assert not problems, problems


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_every_jinja2_environment_is_strict(path):
    problems = []
    for node, name in _calls(path):
        where = f"{path.name}:{node.lineno}"
        last = name.split(".")[-1]
        if last in ("Environment", "SandboxedEnvironment", "NativeEnvironment"):
            undefined = next((kw.value for kw in node.keywords if kw.arg == "undefined"), None)
            if undefined is None or _name(undefined).split(".")[-1] != "StrictUndefined":
                problems.append(f"{where}: {name}() without undefined=jinja2.StrictUndefined")
        if last == "Template" and name in ("jinja2.Template", "Template"):
            problems.append(f"{where}: {name}() makes a template with the default (silent) Undefined")
    assert not problems, problems


def test_one_jinja2_environment_strict_and_built_in_one_place():
    """rewriter.text builds the one environment (for the engine's templates
    and, first, a recipe's); no module builds another, none adds filters
    to it at import time, and it is strict about undefined names."""
    import ast

    from rewriter import recipe, text

    builders, registrations = [], []
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _name(node.func).split(".")[-1] == "Environment":
                builders.append(path.name)
            if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute)
                    and node.value.attr in ("filters", "tests") and isinstance(node.ctx, ast.Store)):
                registrations.append(path.name)
    assert builders == ["text.py"], builders
    assert set(registrations) <= {"text.py"}, registrations  # inside environment(), not at import
    for env in (text.environment(), text.environment(recipe.find(None).folder)):
        assert env.undefined is jinja2.StrictUndefined
        assert {"toml", "wrap", "lines", "sentence", "clause", "join_and"} <= set(env.filters)
