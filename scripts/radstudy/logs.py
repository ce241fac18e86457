"""Logging for workflow jobs: everything (incl. warnings) goes to the job's log file."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path


def limit_threads(threads: int | None = None) -> None:
    """Keep ITK (SimpleITK) to the job's threads.

    Snakemake sets ``OMP_NUM_THREADS`` and the BLAS variables to a job's ``threads``
    but nothing for ITK, whose filters then use every core: two 1-thread jobs on two
    cores oversubscribe them (measured: pyradiomics with 2 ITK threads per job, 2 jobs
    at once, ~15 % slower than with 1). SimpleITK, if this job uses it, is imported by
    then; the variable covers a later import.
    """
    threads = threads or int(os.environ.get("OMP_NUM_THREADS") or 0)
    if threads < 1:
        return
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(threads)
    sitk = sys.modules.get("SimpleITK")
    if sitk is not None:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)


def setup_logging(path: str | Path, level: int = logging.INFO) -> logging.Logger:
    """Send the root logger and Python warnings to ``path`` (one log per job); keep
    ITK to the job's threads (:func:`limit_threads`)."""
    limit_threads()
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
