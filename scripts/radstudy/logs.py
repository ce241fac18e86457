"""Logging for workflow jobs: everything (incl. warnings) goes to the job's log file."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

from radstudy.errors import disk_error, disk_error_line


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


class JobLog(logging.FileHandler):
    """A job's log file. A record that cannot be written because the disk is full is
    dropped in silence (logging would print a traceback for each): the job's own
    writes then fail, with one clear line (:func:`setup_logging`)."""

    def handleError(self, record: logging.LogRecord) -> None:
        if disk_error(sys.exc_info()[1] or Exception()):
            return
        super().handleError(record)


def job_name(log_path: str | Path) -> str:
    """A job's name from its log path: ``logs/extract_radiomics/A_T2_batch001.log`` ->
    ``extract_radiomics/A_T2_batch001``."""
    parts = Path(log_path).with_suffix("").parts
    return "/".join(parts[parts.index("logs") + 1 :] if "logs" in parts else parts[-1:])


def setup_logging(path: str | Path, level: int = logging.INFO) -> logging.Logger:
    """Send the root logger and Python warnings to ``path`` (one log per job); keep
    ITK to the job's threads (:func:`limit_threads`). A job that fails because the
    disk is full (:func:`radstudy.errors.disk_error`) says so in one line on stderr
    and in its log, without a traceback; any other failure logs its traceback."""
    limit_threads()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    handler = JobLog(path, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    warnings.simplefilter("default")
    logging.getLogger("radiomics").setLevel(logging.WARNING)

    job = job_name(path)

    def log_uncaught(exc_type, exc, tb):  # a failing job's traceback lands in its log
        if disk_error(exc):  # the disk's fault, not the code's: one line, no traceback
            line = disk_error_line(exc, job)
            print(f"radstudy: {line}", file=sys.stderr)
            root.critical(line)
            return
        root.critical("uncaught exception", exc_info=(exc_type, exc, tb))
        sys.__excepthook__(exc_type, exc, tb)

    sys.excepthook = log_uncaught
    return root
