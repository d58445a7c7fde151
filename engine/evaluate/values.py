"""Value semantics shared by both evaluators: exact decimals, dates, normalisation.

Numbers are compared as Decimal rounded to 15 significant digits; at that precision the
binary double that durable-rules compares preserves order and equality, so the engine and the
reference evaluator agree (1.8 vs 1.5 x 1.2 is equal in both).
"""
from __future__ import annotations

import datetime as dt
from decimal import Context, Decimal, InvalidOperation
from typing import Any

SIGNIFICANT = 15
_CTX = Context(prec=SIGNIFICANT)
DERIVED_SIGNIFICANT = 12
_DERIVED_CTX = Context(prec=DERIVED_SIGNIFICANT)


def to_decimal(x: Any) -> Decimal:
    """Exact decimal of a number as written (floats through their shortest repr)."""
    if isinstance(x, bool):
        raise TypeError("a boolean is not a number")
    if isinstance(x, Decimal):
        d = x
    elif isinstance(x, (int, float, str)):
        d = Decimal(str(x))
    else:
        raise TypeError(f"not a number: {x!r}")
    if not d.is_finite():
        raise InvalidOperation(f"not a finite number: {x!r}")
    return _CTX.plus(d)


def round_derived(d: Decimal) -> Decimal:
    """Derived values (ratios, percentages) keep 12 significant digits, like admiral's signif()."""
    return _DERIVED_CTX.plus(d)


def to_date(x: Any) -> dt.date:
    if isinstance(x, dt.datetime):
        return x.date()
    if isinstance(x, dt.date):
        return x
    if isinstance(x, str):
        return dt.date.fromisoformat(x)
    raise TypeError(f"not a date: {x!r}")


_KEEP = frozenset({bool, str, dt.date, type(None)})   # exact types, checked first: the hot path


def normalize(x: Any) -> Any:
    """Canonical in-memory form: bool, str, date, or Decimal for any number."""
    t = type(x)
    if t in _KEEP:
        return x
    if t is Decimal and x.is_finite():
        return _CTX.plus(x)
    if x is None or isinstance(x, (bool, str, dt.date)):
        return to_date(x) if isinstance(x, dt.datetime) else x
    return to_decimal(x)


def for_durable(x: Any) -> Any:
    """What the C engine compares: numbers as doubles, dates as day ordinals."""
    t = type(x)
    if t is Decimal:
        return int(x) if x == x.to_integral_value() and abs(x) < 2**53 else float(x)
    if t is str or t is bool:
        return x
    if isinstance(x, bool) or isinstance(x, str):
        return x
    if isinstance(x, Decimal):
        return int(x) if x == x.to_integral_value() and abs(x) < 2**53 else float(x)
    if isinstance(x, dt.date):
        return x.toordinal()
    if isinstance(x, (int, float)):
        return x
    raise TypeError(f"cannot hand {x!r} to the rules engine")


def to_json(x: Any) -> Any:
    """JSON form for traces and audit records (decimals as numbers, dates as ISO)."""
    t = type(x)
    if t is str or t is bool:
        return x
    if isinstance(x, Decimal):
        return int(x) if x == x.to_integral_value() else float(x)
    if isinstance(x, dt.date):
        return x.isoformat()
    return x
