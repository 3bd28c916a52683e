"""`strackt-move report`: how a move went (or several: an evacuation), for people and scripts.

``model`` turns a move record (a dict) into a :class:`~strackt_move.report.model.MoveReport`;
``text``, :func:`document` (JSON) and ``html`` render a list of them. Nothing here writes a record.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable, Sequence

from strackt_move.report.evacuation import EvacuationReport
from strackt_move.report.model import MoveReport, build

#: the JSON document's version: fields are only ever added within it
JSON_SCHEMA = "strackt-move/report/1"

__all__ = ["JSON_SCHEMA", "EvacuationReport", "MoveReport", "build", "build_reports", "document"]


def build_reports(records: Iterable[tuple[dict[str, Any], bool]], now: datetime) -> list[MoveReport]:
    """``records``: (record dict, whether the move is still in progress) pairs."""
    return [build(record, now, active=active) for record, active in records]


def document(reports: Sequence[MoveReport], generated_at: datetime,
             evacuation: EvacuationReport | None = None) -> dict[str, Any]:
    """``evacuation``: the report of an evacuation (then ``moves`` are its moves, in the plan's order)."""
    doc = {
        "schema": JSON_SCHEMA,
        "generated_at": generated_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "moves": [r.to_dict() for r in reports],
    }
    if evacuation is not None:
        doc["evacuation"] = evacuation.to_dict()
    return doc
