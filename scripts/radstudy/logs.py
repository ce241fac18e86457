"""Logging for workflow jobs: everything (incl. warnings) goes to the job's log file."""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path


def setup_logging(path: str | Path, level: int = logging.INFO) -> logging.Logger:
    """Send the root logger and Python warnings to ``path`` (one log per job)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    warnings.simplefilter("default")
    logging.getLogger("radiomics").setLevel(logging.WARNING)

    def log_uncaught(exc_type, exc, tb):  # a failing job's traceback lands in its log
        root.critical("uncaught exception", exc_info=(exc_type, exc, tb))
        sys.__excepthook__(exc_type, exc, tb)

    sys.excepthook = log_uncaught
    return root
