"""The report's preprocessing records, gathered per extraction batch.

Rule normalize_image, after normalising one batch x sequence, reads its cases' qc.json
and normalisation.json files into one small file (:func:`qc_piece`); the report reads
those (:func:`read_qc_pieces`), so its input list grows with the batches, never with
every case x sequence (a cohort job listing every case's files makes planning grow
faster than the cohort).
"""

from __future__ import annotations

import json
from pathlib import Path


def _write_json(obj, path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(obj, sort_keys=True) + "\n")


def _read_json(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _json_or_none(path):
    try:
        return _read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None  # exclusion marker: the case is listed under exclusions


def qc_piece(rows: list[list], out_json) -> list:
    """[case, seq, qc.json, normalisation.json] rows of one batch -> [case, seq, qc,
    normalisation] records (None for an exclusion marker), in ``out_json``."""
    records = [[c, s, _json_or_none(q), _json_or_none(n)] for c, s, q, n in rows]
    _write_json(records, out_json)
    return records


def read_qc_pieces(pieces: list) -> list[list]:
    """The records of every piece (:func:`qc_piece`), by case (stable: each case's
    sequences keep their order)."""
    records = [r for p in pieces for r in _read_json(p)]
    return sorted(records, key=lambda r: r[0])
