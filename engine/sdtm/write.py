"""Writing SDTM-shaped datasets: SAS transport v5 (pyreadstat), CDISC Dataset-JSON v1.1 (`.json`,
and its NDJSON form), CSV. Used by the synthetic cohort's SDTM export and the ADaM export.

Numbers are written exactly: Dataset-JSON gets `decimal` columns whose values are strings (the
v1.1 convention that keeps precision), CSV the plain decimal text. XPT stores IBM doubles (its
format); a value read back is the shortest decimal of that double, which for the numbers written
here (a few significant digits) is the value written.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable

from engine.errors import InputError

SUFFIX = {"xpt": ".xpt", "json": ".json", "ndjson": ".ndjson", "csv": ".csv", "parquet": ".parquet"}


@dataclass(frozen=True)
class Column:
    name: str
    label: str
    type: str = "text"          # text | number | integer | date


def write_dataset(path: str | Path, name: str, label: str, columns: list[Column], rows: Iterable[dict[str, Any]],
                  fmt: str) -> Path:
    """Write one dataset atomically (a temporary file renamed into place)."""
    path = Path(path)
    rows = list(rows)
    writer = {"xpt": _xpt, "json": _json, "ndjson": _ndjson, "csv": _csv, "parquet": _parquet}.get(fmt)
    if writer is None:
        raise InputError(f"unknown format {fmt!r}", field="--format", expected="csv, xpt, json, ndjson or parquet")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        writer(Path(tmp), name, label, columns, rows)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


SAS_EPOCH = dt.date(1960, 1, 1)


def _value(v: Any, col: Column) -> Any:
    if v is None or v == "":
        return None
    if col.type == "date":
        return v if isinstance(v, dt.date) else dt.date.fromisoformat(str(v)[:10])
    if col.type in ("number", "integer"):
        return v if isinstance(v, Decimal) else Decimal(str(v))
    if isinstance(v, bool):
        return "Y" if v else "N"
    if isinstance(v, (dt.date, dt.datetime)):
        return v.isoformat()
    return str(v)


def _plain(d: Decimal) -> str:
    return format(d.normalize(), "f") if d == d.to_integral_value() else format(d, "f")


def _xpt(path: Path, name: str, label: str, columns: list[Column], rows: list[dict[str, Any]]) -> None:
    import polars as pl          # pyreadstat writes from a data frame (pandas or polars)
    import pyreadstat
    for c in columns:
        if len(c.name) > 8:
            raise InputError(f"variable {c.name} is longer than 8 characters", field=c.name,
                             expected="SAS transport v5 names (8 characters); use --format json or csv")
    data = {}
    for c in columns:
        vals = [_value(r.get(c.name), c) for r in rows]
        if c.type == "date":   # SAS dates: days since 1960-01-01, shown with DATE9.
            vals = [(v - SAS_EPOCH).days if v is not None else None for v in vals]
        data[c.name] = (pl.Series(c.name, [float(v) if v is not None else None for v in vals], dtype=pl.Float64)
                        if c.type != "text" else pl.Series(c.name, [v if v is not None else "" for v in vals], dtype=pl.Utf8))
    pyreadstat.write_xport(pl.DataFrame(data), str(path), file_label=label[:40], table_name=name[:8],
                           column_labels=[c.label[:40] for c in columns], file_format_version=5,
                           variable_format={c.name: "DATE9" for c in columns if c.type == "date"})


def _doc(name: str, label: str, columns: list[Column], n: int) -> dict[str, Any]:
    return {"datasetJSONCreationDateTime": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
            "datasetJSONVersion": "1.1.0", "originator": "trial adjudicator",
            "sourceSystem": {"name": "trial adjudicator", "version": _version()},
            "itemGroupOID": f"IG.{name}", "records": n, "name": name, "label": label,
            "columns": [{"itemOID": f"IT.{name}.{c.name}", "name": c.name, "label": c.label,
                         "dataType": {"text": "string", "number": "decimal", "integer": "integer", "date": "date"}[c.type],
                         **({"keySequence": 1} if c.name == "USUBJID" else {})} for c in columns]}


def _row_values(r: dict[str, Any], columns: list[Column]) -> list[Any]:
    out = []
    for c in columns:
        v = _value(r.get(c.name), c)
        if isinstance(v, Decimal):
            v = int(v) if c.type == "integer" else _plain(v)
        elif isinstance(v, dt.date):
            v = v.isoformat()
        out.append(v)
    return out


def _json(path: Path, name: str, label: str, columns: list[Column], rows: list[dict[str, Any]]) -> None:
    doc = _doc(name, label, columns, len(rows))
    doc["rows"] = [_row_values(r, columns) for r in rows]
    path.write_text(json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")


def _ndjson(path: Path, name: str, label: str, columns: list[Column], rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        fh.write(json.dumps(_doc(name, label, columns, len(rows)), ensure_ascii=False, separators=(",", ":")) + "\n")
        for r in rows:
            fh.write(json.dumps(_row_values(r, columns), ensure_ascii=False, separators=(",", ":")) + "\n")


def _csv(path: Path, name: str, label: str, columns: list[Column], rows: list[dict[str, Any]]) -> None:
    from engine.safetext import csv_writer
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv_writer(fh, lineterminator="\n")
        w.writerow([c.name for c in columns])
        for r in rows:
            w.writerow(["" if v is None else (_plain(v) if isinstance(v, Decimal) else
                                             v.isoformat() if isinstance(v, dt.date) else v)
                        for v in (_value(r.get(c.name), c) for c in columns)])


def _parquet(path: Path, name: str, label: str, columns: list[Column], rows: list[dict[str, Any]]) -> None:
    import polars as pl
    data = {}
    for c in columns:
        vals = [_value(r.get(c.name), c) for r in rows]
        if c.type == "date":
            data[c.name] = pl.Series(c.name, vals, dtype=pl.Date)
        elif c.type == "integer":
            data[c.name] = pl.Series(c.name, [int(v) if v is not None else None for v in vals], dtype=pl.Int64)
        elif c.type == "number":
            data[c.name] = pl.Series(c.name, [float(v) if v is not None else None for v in vals], dtype=pl.Float64)
        else:
            data[c.name] = pl.Series(c.name, vals, dtype=pl.Utf8)
    pl.DataFrame(data).write_parquet(path)


def _version() -> str:
    from engine import __version__
    return __version__
