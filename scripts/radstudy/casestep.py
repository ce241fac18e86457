"""Per-case steps that exclude a bad case instead of failing the run.

A per-case rule must always produce its declared outputs, otherwise Snakemake
stops the whole workflow. When a case cannot be processed, every output of the
step is written as a small *exclusion marker*: a text file that starts with
``EXCLUDED\\t`` followed by the one-line reason. Markers never collide with real
outputs (NIfTI-gz starts with the gzip magic, parquet with ``PAR1``, JSON with
``{``). Downstream steps see a marker among their inputs and propagate it, so
the reason travels to ``results/cohort/excluded.tsv`` and to the report, and
the other cases go on.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import signal
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from multiprocessing import connection as mp_connection
from pathlib import Path

from radstudy.errors import CaseError, ConfigError, disk_error

MAGIC = b"EXCLUDED\t"
log = logging.getLogger(__name__)


def write_marker(path: str | Path, reason: str) -> None:
    """Write an exclusion marker holding ``reason`` (one line) at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = " ".join(str(reason).split())
    path.write_bytes(MAGIC + line.encode() + b"\n")


def marker_reason(path: str | Path) -> str | None:
    """Return the exclusion reason if ``path`` is a marker, else None."""
    path = Path(path)
    if not path.is_file():
        return None
    with path.open("rb") as fh:
        head = fh.read(len(MAGIC))
        if head != MAGIC:
            return None
        return fh.readline().decode().strip()


def first_marker(paths: Iterable[str | Path | None]) -> str | None:
    """Reason of the first marker among ``paths`` (None entries ignored)."""
    for p in paths:
        if p is None:
            continue
        reason = marker_reason(p)
        if reason is not None:
            return reason
    return None


def case_step_reason(
    case: str, inputs: Iterable[str | Path | None], step: Callable[[], object]
) -> str | None:
    """Run ``step`` for one case; return None when it ran, else the one-line reason.

    - If an input is a marker, the step is skipped and its reason returned.
    - A :class:`CaseError` excludes the case with its own one-line message.
    - Any other exception excludes the case with ``case X: <type>: <message>``
      (full traceback in the job log), so one bad case never stops the others.
    - A :class:`ConfigError` is not the case's fault: it is raised; so is a full disk
      (:func:`radstudy.errors.disk_error`): excluding the case would lose it.
    """
    reason = first_marker(inputs)
    if reason is None:
        try:
            step()
            return None
        except CaseError as err:
            reason = str(err)
        except ConfigError:
            raise  # a config problem is not the case's fault: stop the run
        except Exception as err:  # noqa: BLE001 - one bad case must not stop the run
            if disk_error(err):
                raise  # nor is a full disk: the job fails and reruns once there is room
            log.error("case %s failed:\n%s", case, traceback.format_exc())
            reason = f"case {case}: {type(err).__name__}: {err}"
    log.warning("excluded: %s", reason)
    return reason


def run_case_step(
    case: str,
    inputs: Iterable[str | Path | None],
    outputs: Iterable[str | Path],
    step: Callable[[], object],
) -> bool:
    """Run ``step`` for one case (see :func:`case_step_reason`); on failure write
    markers holding the reason to all ``outputs``.

    Returns True when the step ran, False when the case was excluded.
    """
    reason = case_step_reason(case, inputs, step)
    if reason is None:
        return True
    for out in outputs:
        write_marker(out, reason)
    return False


def _child(conn, fn: Callable, arg) -> None:
    try:
        result = ("ok", fn(arg))
    except BaseException as err:  # noqa: BLE001 - reported by the parent, per item
        log.error("%s", traceback.format_exc())
        result = ("error", f"{type(err).__name__}: {err}")
    conn.send(result)
    conn.close()


def _died(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        hint = " (out of memory?)" if -exitcode == signal.SIGKILL else ""
        return f"its process was killed by {name}{hint}"
    return f"its process exited with code {exitcode} before returning a result"


def run_isolated(
    fn: Callable, items: Mapping[str, object], workers: int = 1, order=None
) -> Iterator[tuple[str, str, object]]:
    """``fn(items[key])`` for every key, each in its own forked process, at most
    ``workers`` at a time, started in ``order`` (default: sorted keys); yields
    ``(key, status, value)`` as each finishes.

    status ``"ok"``: value is what ``fn`` returned; ``"error"``: ``fn`` raised and
    value is ``"Type: message"``; ``"died"``: the process crashed (a segfault in a
    C extension, the kernel's OOM killer) and value says how. One item that
    crashes never takes the others down. Children are forked from the caller, so
    whatever it imported before (pyradiomics, SimpleITK) is not imported again:
    the start-up cost is paid once per job, not once per item.

    Written here rather than with ``concurrent.futures``: a process pool turns
    one crashed worker into ``BrokenProcessPool`` for every pending item and does
    not say which item crashed or how.
    """
    ctx = mp.get_context("fork")
    todo = sorted(items) if order is None else list(order)
    if sorted(todo) != sorted(items):
        raise ValueError("run_isolated: order must list every item once")
    running: dict = {}
    while todo or running:
        while todo and len(running) < max(1, workers):
            key = todo.pop(0)
            recv, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_child, args=(send, fn, items[key]), daemon=True)
            proc.start()
            send.close()
            running[recv] = (key, proc)
        for conn in mp_connection.wait(list(running)):
            key, proc = running.pop(conn)
            try:
                status, value = conn.recv()
            except EOFError:  # closed without a result: the process died
                proc.join()
                status, value = "died", _died(proc.exitcode)
            else:
                proc.join()
            conn.close()
            yield key, status, value


class CaseJob:
    """One case's step in a batch (:func:`run_case_batch`): the files it reads (a
    marker among them excludes the case without running it), the files it writes
    (markers on failure) and the step itself."""

    def __init__(self, inputs: Iterable, outputs: Iterable, step: Callable[[], object]):
        self.inputs, self.outputs, self.step = list(inputs), list(outputs), step


def _batch_child(arg: tuple[str, CaseJob]):
    """In the case's process: ITK on one thread (the same bytes whatever the job's
    threads), then the step; a config or disk problem is sent back to be raised."""
    from radstudy.logs import limit_threads

    limit_threads(1)
    case, job = arg
    try:
        return ("done", case_step_reason(case, job.inputs, job.step))
    except ConfigError as err:
        return ("config", str(err))
    except OSError as err:  # only a disk error gets here (case_step_reason)
        return ("disk", (err.errno, str(err), err.filename))


def run_case_batch(jobs: Mapping[str, CaseJob], workers: int = 1) -> dict[str, str | None]:
    """Run each case's step of one batch in its own forked process, at most ``workers``
    at once (:func:`run_isolated`: a crash takes that case only); returns case ->
    None (ran) or the one-line reason it was excluded (its outputs hold markers).

    A per-case rule's work done per batch: the interpreter and the imports start once
    per batch instead of once per case (half of a 2 s SLIC + FCM job was the job
    around it), and the DAG holds one job per batch (README "Very large cohorts").
    A :class:`ConfigError` or a full disk stops the job, as in :func:`case_step_reason`.
    """
    for job in jobs.values():
        for path in job.outputs:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    items = {case: (case, job) for case, job in jobs.items()}
    out: dict[str, str | None] = {}
    t0 = time.perf_counter()
    for i, (case, status, value) in enumerate(run_isolated(_batch_child, items, workers), 1):
        if status == "ok" and value[0] == "config":
            raise ConfigError(value[1])
        if status == "ok" and value[0] == "disk":
            errno_, text, filename = value[1]
            raise OSError(errno_, text, filename)
        if status == "ok":
            reason = value[1]
        else:  # the step's process raised outside the step or died
            what = "failed" if status == "error" else "crashed"
            reason = f"case {case}: {what}: {value}"
            log.warning("excluded: %s", reason)
        if reason is not None:
            for path in jobs[case].outputs:
                write_marker(path, reason)
        out[case] = reason
        log.info(
            "case %d/%d %s: %s (%.1f s since the batch started)",
            i,
            len(jobs),
            case,
            "done" if reason is None else "excluded",
            time.perf_counter() - t0,
        )
    return dict(sorted(out.items()))
