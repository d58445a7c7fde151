"""Value semantics shared by both evaluators: exact decimals, dates, normalisation, and the
one written form of a number.

Numbers are compared as Decimal rounded to 15 significant digits; at that precision the
binary double that durable-rules compares preserves order and equality, so the engine and the
reference evaluator agree (1.8 vs 1.5 x 1.2 is equal in both).

The written form of a number is pinned (issue 15): an integer is its digits; any other number
is the shortest decimal that reads back as the same double, in plain notation with at least one
digit after the point, never an exponent (0.00001, 10000000000000000.0, 1.5). durable-rules'
JSON reader refuses an exponent with no fraction before it (`1e-05`, `1e+16`: error 204), and
encoders differ exactly there (json writes 1e+16, others 1e16), so the facts handed to the
engine and the audit's canonical JSON both use this one form: no value crashes the engine and
no encoder choice changes a hash.
"""
from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Context, Decimal, InvalidOperation
from json.encoder import (_make_iterencode, c_make_encoder,  # type: ignore[attr-defined]
                          encode_basestring, encode_basestring_ascii)
from typing import Any, Callable

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


# --- the written form of numbers (JSON for the engine and for the audit) -------------------------

# How float.__repr__ writes an exponent (always signed, at least two digits: 1e-05, 1e+16). A
# string holding the same pattern only sends that text down the slower exact path. The pattern
# opens with a literal, which the regex engine scans for fast (~10 % of the encoding's time).
_EXPONENT = re.compile(r"e[-+][0-9][0-9]")


def number_text(x: int | float | Decimal) -> str:
    """The pinned written form of a number (module docstring): digits for an integer, plain
    notation with a fraction for anything else."""
    if isinstance(x, bool):
        raise TypeError("a boolean is not a number")
    if isinstance(x, int):
        return int.__repr__(x)
    if isinstance(x, Decimal):
        x = float(x)
    if x != x or x in (float("inf"), float("-inf")):
        return "NaN" if x != x else ("Infinity" if x > 0 else "-Infinity")  # as json writes them
    r = float.__repr__(x)
    if "e" not in r:
        return r
    s = format(Decimal(r), "f")
    return s if "." in s else s + ".0"


def _refuse(o: Any) -> Any:
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def json_encoder(*, sort_keys: bool = False, ensure_ascii: bool = True,
                 separators: tuple[str, str] = (",", ":"),
                 default: Callable[[Any], Any] | None = None) -> Callable[[Any], str]:
    """A JSON encoder (as json.dumps with these options) that writes numbers in the pinned form.

    The C encoder writes the text; only when that text holds an exponent (rare: |x| < 1e-4 or
    >= 1e16, or a string that looks like one) is it re-encoded by the library's pure-Python
    encoder with `number_text` for floats. No circular-reference check (a cycle raises
    RecursionError), as the audit's prebuilt encoder."""
    item_sep, key_sep = separators
    enc = encode_basestring_ascii if ensure_ascii else encode_basestring
    dflt = default or _refuse
    fast = c_make_encoder(None, dflt, enc, None, key_sep, item_sep, sort_keys, False, True) if c_make_encoder else None
    slow = _make_iterencode(None, dflt, enc, None, number_text, key_sep, item_sep, sort_keys, False, True)
    plain = json.JSONEncoder(sort_keys=sort_keys, ensure_ascii=ensure_ascii, separators=separators, default=dflt)

    def encode(obj: Any) -> str:
        if fast is None or obj is None or isinstance(obj, (str, int, float)):
            text = plain.encode(obj)
        else:
            text = "".join(fast(obj, 0))
        if _EXPONENT.search(text) is None:
            return text
        return "".join(slow(obj, 0))

    return encode


def plain_numbers(obj: Any, text: str, *, sort_keys: bool, ensure_ascii: bool,
                  separators: tuple[str, str], default: Callable[[Any], Any] | None) -> str:
    """`text` (obj encoded by json with these options) with its numbers in the pinned form:
    for an encoder built elsewhere (the audit store's), re-encodes only when an exponent shows."""
    if _EXPONENT.search(text) is None:
        return text
    item_sep, key_sep = separators
    enc = encode_basestring_ascii if ensure_ascii else encode_basestring
    return "".join(_make_iterencode(None, default or _refuse, enc, None, number_text, key_sep, item_sep,
                                    sort_keys, False, True)(obj, 0))


durable_json = json_encoder()
"""JSON text of a fact or ruleset for the C engine (compact, ASCII, pinned numbers)."""
