"""The rewriter command: `python -m rewriter`, and the `rewriter` script
(pyproject.toml's entry point is run()).

The modules are imported with SIGINT and SIGTERM held back, and an
interrupt that came meanwhile ends the command then, as one later on
does: one line and exit code 130, with nothing done yet.  Held back,
because CPython does not survive an interrupt at every point of an
import: one that lands while a dataclass is being made (its methods are
made with exec()) makes the process die of SIGINT at exit even when the
KeyboardInterrupt was caught, and one in an import lock's callback is
printed as "Exception ignored" and lost.  No import runs a command (git
is run only by rewriter.git, when a command asks); should one ever do,
Ctrl-C stops it too, and its failure is the interrupt.
"""

import signal
import sys

from rewriter.errors import EXIT_INTERRUPTED


def run() -> int:
    caught: list[int] = []
    held = {sig: signal.signal(sig, lambda signum, _frame: caught.append(signum))
            for sig in (signal.SIGINT, signal.SIGTERM)
            if signal.getsignal(sig) is not signal.SIG_IGN}  # ignored (nohup, a background job): so be it
    try:
        # Every module the command imports, so that none is imported later
        # (check's SMTP and mail parsing cost a warm series a tenth of its
        # time: only the command that uses them imports them).
        import importlib

        from rewriter import cli
        for name, module in (("series", "rewriter.series"), ("check", "rewriter.check")):
            if name in sys.argv[1:]:
                importlib.import_module(module)
    except BaseException:
        if not caught:
            raise
        # Ctrl-C also stops any child process an import started.
    finally:
        for sig, handler in held.items():
            signal.signal(sig, handler)
    if caught:
        print("rewriter: interrupted; nothing was changed", file=sys.stderr)
        return EXIT_INTERRUPTED
    return cli.main()


if __name__ == "__main__":
    raise SystemExit(run())
