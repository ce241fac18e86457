"""Errors that exclude one case (never the run) and errors that stop the run."""

from __future__ import annotations

import errno
import os

#: the disk, not the case or the config, is at fault: full, over quota, read-only, failing
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})
#: how C libraries (ITK, zlib) word a full disk in the messages they raise
DISK_WORDS = (os.strerror(errno.ENOSPC), os.strerror(errno.EDQUOT))


class CaseError(Exception):
    """A problem with one case's input: the case is excluded, the others go on.

    The message is one line and names the case, the file and the problem, e.g.
    ``case HB012: images/HB012_T2.nii.gz: mask is empty``.
    """

    def __init__(self, case: str, file: str, problem: str):
        self.case, self.file, self.problem = str(case), str(file), str(problem)
        super().__init__(f"case {self.case}: {self.file}: {self.problem}")


class ConfigError(Exception):
    """A problem with the config or the cohort sheet: the run stops before any job."""


def disk_error(err: BaseException) -> bool:
    """Whether ``err`` is the disk's fault (full, over quota, read-only, failing).

    Such an error is never a case's: it stops the job, whose outputs Snakemake then
    removes (or, when it cannot even record that, leaves marked incomplete), and the
    same command redoes it once there is room again.
    """
    if isinstance(err, OSError) and err.errno in DISK_ERRNOS:
        return True
    return any(words in str(err) for words in DISK_WORDS)


def disk_error_line(err: BaseException, job: str) -> str:
    """The one line a job prints for a :func:`disk_error` instead of a traceback:
    the job, the problem, the file where known, and what to do."""
    problem = os.strerror(err.errno) if isinstance(err, OSError) and err.errno else ""
    if not problem:
        problem = next((w for w in DISK_WORDS if w in str(err)), str(err).splitlines()[0])
    where = f" ({err.filename})" if getattr(err, "filename", None) else ""
    return (
        f"{job}: {problem}{where}: free space on the results folder's disk and run the "
        "same command again (this job's outputs are never taken as complete: it runs again)"
    )
