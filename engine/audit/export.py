"""Export the audit trail as JSON Lines or CSV: every field of every record, streamed.

JSON Lines records are canonical JSON built from the stored text (JSON columns embedded as
stored), so an auditor can recompute each record_hash from the export alone.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TextIO

from engine.errors import InputError
from engine.safetext import csv_writer

from .record import FIELDS, SORTED_FIELDS, fields_json
from .store import AuditStore

FORMATS = ("jsonl", "csv")


def export(store: AuditStore, out: TextIO, fmt: str = "jsonl") -> int:
    """Write every record to `out` in seq order; returns the number written."""
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r}", field="format", expected=" or ".join(FORMATS))
    n = 0
    if fmt == "jsonl":
        for row in store.iter_rows():
            out.write(fields_json(row, SORTED_FIELDS))
            out.write("\n")
            n += 1
    else:
        writer = csv_writer(out, lineterminator="\n")  # a formula-like cell gets a leading '
        writer.writerow(FIELDS)
        for row in store.iter_rows():
            writer.writerow(["" if row[f] is None else row[f] for f in FIELDS])
            n += 1
    return n


def export_to_path(store: AuditStore, path: str | Path, fmt: str = "jsonl") -> int:
    """Export to a file atomically: write a temp file beside it, then rename over the target."""
    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r}", field="format", expected=" or ".join(FORMATS))
    target = Path(path)
    if not target.parent.is_dir():
        raise InputError("folder does not exist", file=str(target), expected="an existing folder")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            n = export(store, out, fmt)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return n
