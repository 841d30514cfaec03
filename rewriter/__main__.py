"""The rewriter command: `python -m rewriter`, and the `rewriter` script
(pyproject.toml's entry point is run()).

An interrupt while the modules are still being imported, before
rewriter.cli.main() can catch it, ends the command the same way as one
later on: one line and exit code 130, with nothing done yet.
"""

import sys

from rewriter.errors import EXIT_INTERRUPTED


def run() -> int:
    try:
        from rewriter.cli import main
    except KeyboardInterrupt:
        print("rewriter: interrupted; nothing was changed", file=sys.stderr)
        return EXIT_INTERRUPTED
    return main()


if __name__ == "__main__":
    raise SystemExit(run())
