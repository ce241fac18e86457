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
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path

from radstudy.errors import CaseError, ConfigError

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


def run_case_step(
    case: str,
    inputs: Iterable[str | Path | None],
    outputs: Iterable[str | Path],
    step: Callable[[], object],
) -> bool:
    """Run ``step`` for one case; on failure write markers to all ``outputs``.

    - If an input is a marker, the step is skipped and its reason propagated.
    - A :class:`CaseError` excludes the case with its own one-line message.
    - Any other exception excludes the case with ``case X: <type>: <message>``
      (full traceback in the job log), so one bad case never stops the others.

    Returns True when the step ran, False when the case was excluded.
    """
    outputs = [Path(o) for o in outputs]
    reason = first_marker(inputs)
    if reason is None:
        try:
            step()
            return True
        except CaseError as err:
            reason = str(err)
        except ConfigError:
            raise  # a config problem is not the case's fault: stop the run
        except Exception as err:  # noqa: BLE001 - one bad case must not stop the run
            log.error("case %s failed:\n%s", case, traceback.format_exc())
            reason = f"case {case}: {type(err).__name__}: {err}"
    log.warning("excluded: %s", reason)
    for out in outputs:
        write_marker(out, reason)
    return False
