"""The audit tables, one definition for both databases (only the integer type of `seq` differs).

Every column is text but `seq`; JSON columns hold canonical JSON text (record.py).
"""
from __future__ import annotations

from .record import FIELDS

_NOT_NULL = frozenset(FIELDS) - {"seq", "run_id", "item", "reason", "supersedes", "reviewer", "signature"}

META_TABLE = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
INDEXES = [
    "CREATE INDEX IF NOT EXISTS decisions_key ON decisions (subject_id, use_case, item)",
    "CREATE INDEX IF NOT EXISTS decisions_run ON decisions (run_id, subject_id) WHERE run_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS decisions_supersedes ON decisions (supersedes) WHERE supersedes IS NOT NULL",
]


def decisions_table(seq_type: str) -> str:
    """CREATE TABLE decisions, with `seq_type` for the sequence (INTEGER in SQLite, BIGINT in
    PostgreSQL); decision_id is unique."""
    cols = []
    for f in FIELDS:
        if f == "seq":
            cols.append(f"    seq {seq_type} PRIMARY KEY")
        else:
            cols.append(f"    {f} TEXT" + (" NOT NULL" if f in _NOT_NULL else "") + (" UNIQUE" if f == "decision_id" else ""))
    return "CREATE TABLE IF NOT EXISTS decisions (\n" + ",\n".join(cols) + "\n)"
