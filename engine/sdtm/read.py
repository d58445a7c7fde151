"""One reader for SDTM datasets, whatever the file format: SAS transport (XPT, via pyreadstat),
CDISC Dataset-JSON (v1.0 and v1.1, `.json`; v1.1 NDJSON, `.ndjson`) and CSV.

Every format comes back as the same `Dataset`: its name (LB, SUPPAE, ...), variables with labels,
and columns of values that are `str` (text, trailing blanks removed: SAS pads them), `Decimal`
(numbers: never binary floats, so 0.1 stays 0.1) or None (missing: SAS `.`, an empty string, JSON
null). A CSV has no types: its cells stay text, and a consumer reads a number with `number()`, which
says what is wrong with a cell that is not one.

A file that cannot be read as its format says (truncated, not UTF-8, a ragged CSV row, a
duplicate column, a Dataset-JSON whose rows do not match its columns) is an InputError naming the
file and the record: nothing of it is used.
"""
from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Iterator

from engine.errors import InputError
from engine.record.load import open_regular

FORMATS = {".xpt": "xpt", ".csv": "csv", ".json": "dataset-json", ".ndjson": "dataset-json-ndjson"}
MAX_JSON_BYTES = 1 << 30          # a Dataset-JSON file read whole (an NDJSON one is streamed)
MAX_LINE_CHARS = 1 << 22          # one CSV or NDJSON line
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufeff\u202a-\u202e\u2066-\u2069]")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")


@dataclass
class Variable:
    name: str
    label: str = ""
    type: str = "text"            # text | number


@dataclass
class Dataset:
    """One SDTM dataset read whole, column by column."""
    name: str                     # upper case: LB, DM, SUPPLB
    file: str
    format: str
    variables: list[Variable]
    columns: dict[str, list[Any]]  # variable name (upper case) -> values
    records: list[int] = field(default_factory=list)   # per row: the record (CSV: line) number

    def __len__(self) -> int:
        return len(self.records)

    def has(self, name: str) -> bool:
        return name in self.columns

    def column(self, name: str) -> list[Any]:
        """The values of a variable; a variable the dataset lacks reads as all missing."""
        return self.columns.get(name) or [None] * len(self.records)

    def label(self, name: str) -> str:
        return next((v.label for v in self.variables if v.name == name), "")

    def where(self, index: int) -> str:
        """`file:record` of a row, for messages."""
        return f"{self.file}:{self.records[index]}"

    def rows(self) -> Iterator[dict[str, Any]]:
        """Each row as a dict (variable -> value); built on demand."""
        names = list(self.columns)
        for values in zip(*(self.columns[n] for n in names)):
            yield dict(zip(names, values))


def dataset_files(folder: str | Path) -> dict[str, Path]:
    """The SDTM datasets of a folder by name (lb.xpt -> LB). Two files for one dataset (lb.xpt and
    lb.json) are refused: which one is the data would be a guess."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("not a folder", file=str(folder), expected="a folder of SDTM datasets (.xpt, .json, .ndjson, .csv)")
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in FORMATS and not p.name.startswith("."):
            name = p.stem.upper()
            if name in found:
                raise InputError(f"dataset {name} is given twice ({found[name].name} and {p.name})", file=str(folder),
                                 expected="one file per dataset")
            found[name] = p
    if not found:
        raise InputError("no SDTM dataset found", file=str(folder),
                         expected="files such as dm.xpt, lb.json, ae.ndjson or lb.csv")
    return found


def read_dataset(path: str | Path) -> Dataset:
    """Read one SDTM dataset (format by suffix); InputError naming the file on any defect."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"unsupported file type {path.suffix or '(none)'!r}", file=str(path),
                         expected="an SDTM dataset: .xpt (SAS transport), .json / .ndjson (CDISC Dataset-JSON) or .csv")
    ds = {"xpt": _read_xpt, "csv": _read_csv, "dataset-json": _read_json,
          "dataset-json-ndjson": _read_ndjson}[fmt](path)
    _check_names(ds)
    return ds


def number(value: Any) -> Decimal | None:
    """A value as an exact Decimal (None when missing); ValueError saying why it is not a number."""
    if value is None or isinstance(value, Decimal):
        return value
    text = str(value).strip()
    if not text:
        return None
    try:
        d = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{text[:40]!r} is not a number") from None
    if not d.is_finite():
        raise ValueError(f"{text[:40]!r} is not a finite number")
    return d


def text(value: Any) -> str | None:
    """A value as text (a number in its plain decimal form; None when missing)."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value == value.to_integral_value() else format(value, "f")
    return str(value)


# --- formats -------------------------------------------------------------------------------------

def _clean_text(value: Any) -> str | None:
    if value is None:
        return None
    s = str(value).rstrip()
    return s or None


def _float_number(value: Any) -> Decimal | None:
    """An XPT / JSON float as the Decimal of its shortest repr (0.1 -> Decimal('0.1'))."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    if isinstance(value, (int, Decimal)):
        return Decimal(value)
    f = float(value)
    if f != f or f in (float("inf"), float("-inf")):
        return None if f != f else _raise(ValueError("an infinite number"))
    return Decimal(repr(f))


def _raise(exc: Exception) -> Any:
    raise exc


def _read_xpt(path: Path) -> Dataset:
    import pyreadstat  # lazy: `adjudicator --help` must not import it
    with open_regular(path, "a SAS transport (XPT) file"):
        pass
    try:
        # dates stay numbers (SAS day counts): SDTM dates are ISO 8601 text; a numeric date is read as written
        data, meta = pyreadstat.read_xport(str(path), output_format="dict", disable_datetime_conversion=True)
    except Exception as exc:  # pyreadstat's ReadstatError and friends: a damaged file
        raise InputError(f"cannot read as SAS transport (XPT): {exc}", file=str(path),
                         expected="a SAS XPORT v5 or v8 file") from None
    labels = meta.column_names_to_labels or {}
    types = getattr(meta, "readstat_variable_types", {}) or {}
    variables, columns = [], {}
    for name in meta.column_names:
        numeric = types.get(name) in ("double", "float", "int8", "int16", "int32") or (
            types.get(name) is None and any(isinstance(v, float) for v in data[name]))
        up = name.upper()
        variables.append(Variable(up, labels.get(name) or "", "number" if numeric else "text"))
        try:
            columns[up] = [_float_number(v) for v in data[name]] if numeric else [_clean_text(v) for v in data[name]]
        except ValueError as exc:
            raise InputError(f"variable {name}: {exc}", file=str(path)) from None
    n = meta.number_rows if meta.number_rows is not None else len(next(iter(data.values()), []))
    name = (meta.table_name or path.stem).strip().upper() or path.stem.upper()
    return Dataset(name, str(path), "xpt", variables, columns, list(range(1, n + 1)))


def _read_csv(path: Path) -> Dataset:
    fh = open_regular(path, "a CSV SDTM dataset", "r", newline="", encoding="utf-8")
    with fh:
        reader = csv.reader(_lines(fh, path), strict=True)
        try:
            header = next(reader, None)
            if not header or not any(h.strip() for h in header):
                raise InputError("empty file (no header row)", file=str(path), expected="a CSV header of SDTM variable names")
            names = [h.strip().upper() for h in header]
            width = len(names)
            cols: list[list[Any]] = [[] for _ in names]
            records: list[int] = []
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if len(row) != width:
                    raise InputError(f"record has {len(row)} fields, the header {width}", file=f"{path}:{reader.line_num}",
                                     expected="one cell per header column")
                records.append(reader.line_num)
                for col, cell in zip(cols, row):
                    col.append(cell.rstrip() or None)
        except csv.Error as exc:
            raise InputError(f"malformed CSV near line {reader.line_num}: {exc}", file=f"{path}:{reader.line_num}") from None
        except UnicodeDecodeError as exc:
            raise InputError(f"not UTF-8 text ({exc.reason})", file=str(path), expected="a UTF-8 CSV file") from None
    variables = [Variable(n) for n in names]
    return Dataset(path.stem.upper(), str(path), "csv", variables, dict(zip(names, cols)), records)


def _lines(fh: Any, path: Path) -> Iterator[str]:
    first = True
    number = 0
    while True:
        line = fh.readline(MAX_LINE_CHARS + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE_CHARS:
            raise InputError(f"a line longer than {MAX_LINE_CHARS:,} characters", file=f"{path}:{number}")
        if first:
            line, first = line.removeprefix("\ufeff"), False
        m = _CONTROL.search(line)
        if m:
            raise InputError(f"the control character U+{ord(m.group()):04X}", file=f"{path}:{number}",
                             expected="printable text")
        yield line


class _Duplicate(ValueError):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _Duplicate(k)
        out[k] = v
    return out


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_pairs, parse_float=Decimal,
                          parse_constant=lambda c: _raise(ValueError(f"{c} is not a JSON number")))
    except json.JSONDecodeError as exc:
        raise InputError(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", file=where,
                         expected="CDISC Dataset-JSON") from None
    except _Duplicate as exc:
        raise InputError(f"duplicate key {exc}", file=where, expected="each key once") from None
    except (ValueError, RecursionError) as exc:
        raise InputError(f"not valid JSON data: {exc}", file=where, expected="CDISC Dataset-JSON") from None


def _read_json(path: Path) -> Dataset:
    from engine.record.load import read_bounded
    raw = read_bounded(path, MAX_JSON_BYTES, "a CDISC Dataset-JSON file")
    try:
        doc = _json(raw.decode("utf-8"), str(path))
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text ({exc.reason})", file=str(path), expected="a UTF-8 Dataset-JSON file") from None
    if not isinstance(doc, dict):
        raise InputError("not a JSON object", file=str(path), expected="CDISC Dataset-JSON")
    if "columns" in doc:                                  # v1.1
        name, variables = _v11_header(doc, str(path))
        rows = doc.get("rows") or []
        if not isinstance(rows, list):
            raise InputError("`rows` is not a list", file=str(path), expected="Dataset-JSON v1.1 rows: a list of lists")
        declared = doc.get("records")
        ds = _from_rows(name, str(path), "dataset-json", variables, enumerate(rows, 1))
        _check_count(ds, declared, str(path))
        return ds
    for kind in ("clinicalData", "referenceData"):        # v1.0
        if isinstance(doc.get(kind), dict):
            groups = doc[kind].get("itemGroupData")
            if not isinstance(groups, dict) or len(groups) != 1:
                raise InputError(f"{kind}.itemGroupData must hold exactly one dataset", file=str(path),
                                 expected="Dataset-JSON v1.0 with one item group")
            group = next(iter(groups.values()))
            items = group.get("items")
            if not isinstance(items, list) or not all(isinstance(i, dict) and i.get("name") for i in items):
                raise InputError("items must be a list of {OID, name, label, type}", file=str(path),
                                 expected="Dataset-JSON v1.0 items")
            variables = [Variable(str(i["name"]).upper(), str(i.get("label") or ""), _json_type(i.get("type")))
                         for i in items]
            rows = group.get("itemData") or []
            ds = _from_rows(str(group.get("name") or path.stem).upper(), str(path), "dataset-json", variables,
                            enumerate(rows, 1))
            _check_count(ds, group.get("records"), str(path))
            ds.variables = [v for v in ds.variables if v.name != "ITEMGROUPDATASEQ"]
            ds.columns.pop("ITEMGROUPDATASEQ", None)
            return ds
    raise InputError("neither `columns` (v1.1) nor clinicalData/referenceData (v1.0)", file=str(path),
                     expected="CDISC Dataset-JSON v1.0 or v1.1")


def _read_ndjson(path: Path) -> Dataset:
    fh = open_regular(path, "a CDISC Dataset-JSON NDJSON file", "r", encoding="utf-8")
    with fh:
        try:
            lines = _numbered_json_lines(fh, path)
            first = next(lines, None)
            if first is None:
                raise InputError("empty file", file=str(path), expected="a Dataset-JSON v1.1 metadata line, then rows")
            n0, meta = first
            if not isinstance(meta, dict) or "columns" not in meta:
                raise InputError("the first line is not Dataset-JSON metadata with `columns`", file=f"{path}:{n0}",
                                 expected="Dataset-JSON v1.1 NDJSON")
            name, variables = _v11_header(meta, str(path))
            ds = _from_rows(name, str(path), "dataset-json-ndjson", variables, lines)
        except UnicodeDecodeError as exc:
            raise InputError(f"not UTF-8 text ({exc.reason})", file=str(path)) from None
    _check_count(ds, meta.get("records"), str(path))
    return ds


def _numbered_json_lines(fh: Any, path: Path) -> Iterator[tuple[int, Any]]:
    number = 0
    while True:
        line = fh.readline(MAX_LINE_CHARS + 1)
        if not line:
            return
        number += 1
        if len(line) > MAX_LINE_CHARS:
            raise InputError("a line too long", file=f"{path}:{number}")
        if line.strip():
            yield number, _json(line, f"{path}:{number}")


def _v11_header(doc: dict[str, Any], where: str) -> tuple[str, list[Variable]]:
    version = str(doc.get("datasetJSONVersion") or "")
    if not version.startswith("1.1"):
        raise InputError(f"datasetJSONVersion {version or '(absent)'!r}", file=where, expected="1.1 (or v1.0's clinicalData)")
    cols = doc.get("columns")
    if not isinstance(cols, list) or not all(isinstance(c, dict) and c.get("name") for c in cols):
        raise InputError("`columns` must be a list of {itemOID, name, label, dataType}", file=where,
                         expected="Dataset-JSON v1.1 columns")
    variables = [Variable(str(c["name"]).upper(), str(c.get("label") or ""),
                          _json_type(c.get("targetDataType") or c.get("dataType"))) for c in cols]
    return str(doc.get("name") or Path(where).stem).upper(), variables


def _json_type(kind: Any) -> str:
    return "number" if str(kind) in ("integer", "decimal", "float", "double") else "text"


def _from_rows(name: str, file: str, fmt: str, variables: list[Variable], rows: Any) -> Dataset:
    width = len(variables)
    cols: list[list[Any]] = [[] for _ in variables]
    records = []
    numeric = [v.type == "number" for v in variables]
    for n, row in rows:
        if not isinstance(row, list) or len(row) != width:
            got = f"{len(row)} values" if isinstance(row, list) else type(row).__name__
            raise InputError(f"record {n} has {got}, the columns are {width}", file=f"{file}:{n}",
                             expected="one value per column")
        records.append(n)
        for i, (col, value) in enumerate(zip(cols, row)):
            if isinstance(value, (dict, list)):
                raise InputError(f"record {n}, {variables[i].name}: a nested value", file=f"{file}:{n}",
                                 expected="a string, number, boolean or null")
            if numeric[i]:
                try:
                    # Dataset-JSON 1.1 writes decimals as strings (precision kept): read them exactly
                    col.append(number(value) if isinstance(value, str) else _float_number(value))
                except ValueError as exc:
                    raise InputError(f"record {n}, {variables[i].name}: {exc}", file=f"{file}:{n}",
                                     expected="a number") from None
            else:
                col.append(_clean_text(value if not isinstance(value, Decimal) else text(value)))
    return Dataset(name, file, fmt, variables, {v.name: c for v, c in zip(variables, cols)}, records)


def _check_count(ds: Dataset, declared: Any, where: str) -> None:
    if declared is not None and (not isinstance(declared, int) or declared != len(ds)):
        raise InputError(f"declares {declared} records but holds {len(ds)} (truncated?)", file=where,
                         expected="`records` equal to the number of rows")


def _check_names(ds: Dataset) -> None:
    seen: set[str] = set()
    for v in ds.variables:
        if not _NAME.match(v.name):
            raise InputError(f"variable name {v.name!r} is not an SAS/SDTM name", file=ds.file,
                             expected="letters, digits and _, at most 32 characters, starting with a letter")
        if v.name in seen:
            raise InputError(f"variable {v.name} appears twice", file=ds.file, field=v.name, expected="each variable once")
        seen.add(v.name)
