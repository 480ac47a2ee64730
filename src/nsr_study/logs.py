"""One logger for every stage: the rule's log file, any extra files, and stderr (seen live)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path


def attempt_log(folder: Path) -> Path:
    """The next ``attempt-<n>.log`` in ``folder``: Snakemake deletes a rule's log before every
    job, so a resumable job keeps each attempt's log here, beside its checkpoints."""
    folder.mkdir(parents=True, exist_ok=True)
    numbers = [int(p.stem.split("-")[1]) for p in folder.glob("attempt-*.log") if p.stem.split("-")[1].isdigit()]
    return folder / f"attempt-{max(numbers, default=0) + 1}.log"


def setup_logging(*log_paths: str | Path | None, name: str = "nsr_study", quiet: bool = False) -> logging.Logger:
    """Log to stderr and to every given file (None entries are skipped); ``quiet``: warnings and
    errors only (ranks other than 0 of a multi-rank job, which would repeat rank 0's lines)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    for path in filter(None, log_paths):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(path, mode="a", encoding="utf-8"))
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        handlers=handlers, force=True)
    logger = logging.getLogger(name)

    def log_uncaught(kind, value, tb):  # the traceback belongs in the log files too
        logger.critical("stopped by an uncaught exception", exc_info=(kind, value, tb))

    sys.excepthook = log_uncaught
    return logger
