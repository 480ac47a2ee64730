"""One logger for every stage: the rule's log file (kept) plus stderr (seen live)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path


def setup_logging(log_path: str | None = None, name: str = "nsr_study", append: bool = False) -> logging.Logger:
    """``append`` keeps the log of an earlier, interrupted attempt (resumable training)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="a" if append else "w", encoding="utf-8"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        handlers=handlers, force=True)
    logger = logging.getLogger(name)

    def log_uncaught(kind, value, tb):  # the traceback belongs in the rule's log file too
        logger.critical("stopped by an uncaught exception", exc_info=(kind, value, tb))

    sys.excepthook = log_uncaught
    return logger
