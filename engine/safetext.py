"""Text that leaves the program safely: on a terminal, and in a CSV file opened in a spreadsheet.

Why: ids, actors, reasons and terms come from input files and command lines. An id holding
ESC[2J clears the terminal of whoever prints it (and rich would read `[red]` as markup); a CSV
cell starting with `=` (`=HYPERLINK(...)`) is run as a formula by Excel and LibreOffice.
"""
from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def printable(text: Any) -> str:
    """`text` with every control character shown as an escape (`\\x1b`, `\\n`), never executed."""
    s = str(text)
    if not _CONTROL.search(s):
        return s
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), s)


def csv_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text: a string that would start a formula gets a
    leading apostrophe (OWASP's advice); numbers, including negative ones, are kept."""
    if not isinstance(value, str) or not value.startswith(_FORMULA_START):
        return value
    try:
        Decimal(value.strip())
        return value
    except (InvalidOperation, ValueError):
        return "'" + value


def csv_row(values: Iterable[Any]) -> list[Any]:
    """`csv_cell` of every value of a row."""
    return [csv_cell(v) for v in values]


class _SafeWriter:
    """csv.writer whose rows pass through `csv_row`."""

    def __init__(self, fh: Any, **kwargs: Any) -> None:
        import csv
        self._w = csv.writer(fh, **kwargs)

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._w.writerow(csv_row(row))

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def csv_writer(fh: Any, **kwargs: Any) -> _SafeWriter:
    """A csv.writer that neutralises spreadsheet formulas in every cell (`csv_cell`)."""
    return _SafeWriter(fh, **kwargs)
