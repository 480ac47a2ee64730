"""One logger for every stage: the rule's log file (kept) plus stderr (seen live)."""

from __future__ import annotations

import logging
import sys


def setup_logging(log_path: str | None = None, name: str = "nsr_study") -> logging.Logger:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        handlers.append(logging.FileHandler(log_path, mode="w", encoding="utf-8"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                        handlers=handlers, force=True)
    return logging.getLogger(name)
