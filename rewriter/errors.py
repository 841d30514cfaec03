"""Errors that end a command with one clear line and a documented exit code."""

from __future__ import annotations

# Exit codes, documented in README.md.
EXIT_OK = 0
EXIT_INCOMPLETE = 1  # the work finished, but some file could not be analysed
EXIT_USAGE = 2  # bad command line (argparse)
EXIT_INPUT = 3  # bad input: repository, revision, plan, names, ...
EXIT_TOOL = 4  # a required tool is missing or too old
EXIT_INTERNAL = 70  # a bug in rewriter (EX_SOFTWARE); the traceback with REWRITER_DEBUG=1
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT) or SIGTERM


class RewriterError(Exception):
    """A problem the user can fix; str() is the one line shown to them."""

    exit_code = EXIT_INPUT


class InputError(RewriterError):
    exit_code = EXIT_INPUT


class ToolError(RewriterError):
    exit_code = EXIT_TOOL
