"""How a scalar may be spelled in a subject file: one set of patterns, read by the loader's edge
check (engine/record/base.py, units.py) and printed in the JSON Schema (engine/record/schema.py),
so that the two cannot disagree on what a number, a whole number, a boolean or a date is.

pydantic's lax parsing alone would take far more: "1_000" and "٥" as numbers, "yes" and 1 as
true, 1632960000 or "0" as a date (seconds since 1970). Those are refused at the edge.
Patterns are checked with `re.search` (Python's reading of `^...$`, as the `jsonschema`
validator does; a JSON Schema validator with ECMA regexes is stricter only about a final newline).
"""

import datetime as dt
import re
from decimal import Decimal
from typing import Any

# A decimal number written as text: optional sign, digits with an optional fraction, optional
# exponent ("68", "-0.5", ".5", "5.", "6.8e1", "1E-05"). No unit, no spaces, no "_" or ",".
DECIMAL_PATTERN = r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"
INTEGER_PATTERN = r"^[+-]?[0-9]+$"
DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"

_DECIMAL = re.compile(DECIMAL_PATTERN)
_INTEGER = re.compile(INTEGER_PATTERN)
_DATE = re.compile(DATE_PATTERN)

NUMBER_EXPECTED = 'a number, or a string holding only one (e.g. "68" or "6.8e1", no unit)'
INTEGER_EXPECTED = 'a whole number, or a string holding only one (e.g. "2")'
BOOLEAN_EXPECTED = "true or false"
DATE_EXPECTED = "an ISO date YYYY-MM-DD"


def is_decimal_text(text: str) -> bool:
    """`text` spells a decimal number (DECIMAL_PATTERN)."""
    return _DECIMAL.search(text) is not None


def spelling_problem(kind: type, value: Any) -> tuple[str, str] | None:
    """(problem, expectation) when `value` is not a spelling of `kind` (Decimal, int, bool or
    date) the loader accepts; None when it is (pydantic then converts and range-checks it)."""
    if kind is bool:
        if type(value) is bool:
            return None
        return f"{_shown(value)} is not true or false", BOOLEAN_EXPECTED
    if type(value) is bool:
        return f"a boolean ({str(value).lower()}) where a {_NAMES[kind]} is expected", _EXPECTED[kind]
    if kind is dt.date:
        if (isinstance(value, dt.date) and not isinstance(value, dt.datetime)) or (
                isinstance(value, str) and _DATE.search(value)):
            return None
        return f"{_shown(value)} is not an ISO date", DATE_EXPECTED
    if kind is int:
        if isinstance(value, int) or (isinstance(value, float) and value.is_integer()) or (
                isinstance(value, str) and _INTEGER.search(value)):
            return None
        return f"{_shown(value)} is not a whole number", INTEGER_EXPECTED
    # Decimal
    if isinstance(value, (int, float, Decimal)) or (isinstance(value, str) and _DECIMAL.search(value)):
        return None
    return f"{_shown(value)} is not a number", NUMBER_EXPECTED


def _shown(value: Any) -> str:
    if isinstance(value, dt.datetime):   # a YAML timestamp: a date with a time of day
        return f"{value.isoformat()} (a date with a time)"
    if isinstance(value, (dict, list)):
        return f"a {'mapping' if isinstance(value, dict) else 'list'}"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


_NAMES = {Decimal: "number", int: "number", dt.date: "date"}
_EXPECTED = {Decimal: NUMBER_EXPECTED, int: INTEGER_EXPECTED, dt.date: DATE_EXPECTED}
