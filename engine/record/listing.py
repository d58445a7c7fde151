"""Reading a CSV lab listing (one result per row) for `adjudicator ctcae grade`.

The file's shape is checked whole before anything is graded or written, because a CSV that
"mostly parses" loses rows silently: a second byte-order mark turns `subject_id` into an unknown
column (rows filed under the listing's name), a repeated `value` header leaves one of them
unread, an unterminated quote swallows every row after it into one cell. So: the header must
name each column once, in plain text; every row has as many cells as the header; no cell spans
lines; control characters are refused; a listing with no data row is refused. Any of these is
an InputError naming the file, the row and the column (exit 2, nothing written).

A row whose *values* cannot be real (a negative count, ULN 0, LLN above ULN, a number no
measurement has) is not a broken file: `row_problem` names it and the grader reports that row
as not gradable, without grading or auditing it (the same checks as a subject file's lab).
"""

import csv
import re
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from pathlib import Path

from engine.errors import InputError
from engine.record.load import open_regular
from engine.record.safety import lab_range_problem
from engine.record.units import bounded

LISTING_COLUMNS = ("term", "lab_test", "value", "unit", "lln", "uln", "baseline")
NUMBER_COLUMNS = ("value", "lln", "uln", "baseline")
SUBJECT_COLUMNS = ("subject_id", "usubjid")
MAX_LINE_CHARS = 1 << 20          # one row of a listing (a real one is under 200 characters)
EXPECTED = "a CSV header with term or lab_test, value, unit, lln, uln, baseline"

_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufeff\u202a-\u202e\u2066-\u2069]")


def read_listing(path: str | Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row with lower-case column names) of every data row; InputError naming the
    file, line and column on any defect of the file's shape (see the module docstring)."""
    path = Path(path)
    fh = open_regular(path, "a CSV lab listing", "r", newline="", encoding="utf-8")
    with fh:
        reader = csv.reader(_bounded_lines(fh, path), strict=True)
        try:
            header = next(reader, None)
            if header is None or not any(h.strip() for h in header):
                raise InputError("empty file (no header row)", file=str(path), expected=EXPECTED)
            columns = _columns(header, path)
            width, n_rows = len(header), 0
            for row in reader:
                line = reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # a blank line
                if len(row) != width:
                    more = "more" if len(row) > width else "fewer"
                    raise InputError(f"row {line} has {more} fields than the header ({len(row)}, the header "
                                     f"has {width})", file=f"{path}:{line}", expected="one cell per header column")
                for name, cell in zip(columns, row):
                    if "\n" in cell or "\r" in cell:
                        raise InputError("a cell spans lines (an unterminated quote?)", file=f"{path}:{line}",
                                         field=name, expected="one row per line")
                    m = _BAD.search(cell)
                    if m:
                        raise InputError(f"the cell holds the control character U+{ord(m.group()):04X}",
                                         file=f"{path}:{line}", field=name, expected="printable text")
                n_rows += 1
                yield line, dict(zip(columns, row))
        except csv.Error as exc:
            raise InputError(f"malformed CSV near line {reader.line_num}: {exc}",
                             file=f"{path}:{reader.line_num}") from None
        except UnicodeDecodeError as exc:
            raise InputError(f"not UTF-8 text ({exc.reason})", file=str(path),
                             expected="a UTF-8 CSV file") from None
    if n_rows == 0:
        raise InputError("no data rows (only a header)", file=str(path), expected="one lab result per row")


def _bounded_lines(fh: object, path: Path) -> Iterator[str]:
    """The file's lines, the first byte-order mark dropped, none longer than MAX_LINE_CHARS."""
    first = True
    while True:
        line = fh.readline(MAX_LINE_CHARS + 1)  # type: ignore[attr-defined]
        if not line:
            return
        if len(line) > MAX_LINE_CHARS:
            raise InputError(f"a line longer than {MAX_LINE_CHARS:,} characters", file=str(path),
                             expected="one lab result per line")
        if first:
            line, first = line.removeprefix("\ufeff"), False
        yield line


def _columns(header: list[str], path: Path) -> list[str]:
    columns = [h.strip().lower() for h in header]
    seen: dict[str, int] = {}
    for i, (raw, name) in enumerate(zip(header, columns), 1):
        m = _BAD.search(raw)
        if m:
            what = "a second byte-order mark" if m.group() == "\ufeff" else f"the control character U+{ord(m.group()):04X}"
            raise InputError(f"header column {i} ({raw.strip()!r}) holds {what}", file=f"{path}:1",
                             expected="plain column names")
        if name and name in seen:
            raise InputError(f"column {name!r} appears twice (columns {seen[name]} and {i})",
                             file=f"{path}:1", field=name, expected="each column once")
        seen[name] = i
    if not ({"term", "lab_test"} & set(columns)) or "value" not in columns:
        lacking = "value" if {"term", "lab_test"} & set(columns) else "term or lab_test"
        raise InputError(f"header lacks {lacking} (got: {', '.join(h for h in columns if h)})",
                         file=f"{path}:1", expected=EXPECTED)
    return columns


def row_problem(row: dict[str, str]) -> str | None:
    """Why a row's values cannot be a real lab result ('column uln: ...'), or None."""
    nums: dict[str, Decimal | None] = {}
    for col in NUMBER_COLUMNS:
        text = (row.get(col) or "").strip()
        if not text:
            nums[col] = None
            continue
        try:
            d = Decimal(text)
        except InvalidOperation:
            return f"column {col}: {text[:40]!r} is not a number"
        if not d.is_finite():
            return f"column {col}: {text[:40]!r} is not a finite number"
        try:
            nums[col] = bounded(d)
        except ValueError as exc:
            return f"column {col}: {exc}"
    if nums["value"] is None:
        return None  # no value: the grader says "not gradable: no value"
    problem = lab_range_problem(nums["value"], nums["lln"], nums["uln"], nums["baseline"])
    if problem:
        col, message, expected = problem
        return f"column {col}: {message} (expected {expected})"
    return None
