"""The pipeline's command line: ``python -m nsr_study COMMAND [ARGS]``, COMMAND one of
``train``, ``evaluate``, ``summary``, ``plan``, ``power`` (each ``nsr_study.<COMMAND>.main``; ``--help``
after a command lists its arguments).

Why one entry module: a job's math-verify workers (``nsr_study.grading.Grader``) are spawned
processes, and multiprocessing re-imports the job's main module in each one, unless that module
is a package's ``__main__`` (``multiprocessing.spawn`` skips those). ``train`` and ``evaluate``
import torch: run as their own main module, every worker imported it too (2.6 s and 300 MB a
worker, against 0.6 s and 66 MB for math-verify alone). From here a worker imports only the
grader.
"""

import importlib
import sys

COMMANDS = ("train", "evaluate", "summary", "plan", "power")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        given = f"unknown command {argv[0]!r}" if argv else "no command given"
        print(f"usage: python -m nsr_study {{{','.join(COMMANDS)}}} [ARGS]: {given}", file=sys.stderr)
        sys.exit(2)
    importlib.import_module(f"nsr_study.{argv[0]}").main(argv[1:])


if __name__ == "__main__":
    main()
