"""ISO 8601 dates as SDTM writes them in --DTC variables, complete or partial, and their
imputation when (and only when) a rule is configured.

SDTM keeps what was collected: `2021-03-15T10:20`, `2021-03-15`, `2021-03` (day unknown), `2021`
(month and day unknown), and the SDTMIG's dash form for a missing middle component, `2021---15`
(month unknown, day known). The adjudicator needs a date: a complete one is read as it is; a
partial one is unknown unless the mapping configures an imputation rule, after admiral's
`derive_vars_dt()`: `highest` is the highest component that may be imputed (`D` day only, `M` day
and month; the year is never imputed) and `date` says where in the possible span (`first`, `mid`,
`last`). Either way the partial date is reported (a note with the rule and the result), and the
imputed date carries its flag (`D` or `M`, admiral's --DTF) so that nobody mistakes it for a
collected one.
"""
from __future__ import annotations

import calendar
import datetime as dt
import re
from dataclasses import dataclass

_DTC = re.compile(r"^(?P<y>\d{4}|-)(?:-(?P<m>\d{2}|-)(?:-(?P<d>\d{2}|-))?)?(?P<time>T.*)?$")
_TIME = re.compile(r"^T(\d{2}|-)(:(\d{2}|-)(:(\d{2}|-)(\.\d+)?)?)?(Z|[+-]\d{2}(:?\d{2})?)?$")
# the dash form: "2021---15" is year, missing month, day 15
_DASHED = re.compile(r"^(?P<y>\d{4})---(?P<d>\d{2})(?P<time>T.*)?$")


@dataclass(frozen=True)
class Imputation:
    """The configured rule: impute up to `highest` ('D' or 'M'), at `date` ('first'|'mid'|'last')."""
    highest: str = "M"
    date: str = "first"

    def describe(self) -> str:
        return f"impute {'day' if self.highest == 'D' else 'day and month'} at the {self.date} of the span"


@dataclass(frozen=True)
class ReadDate:
    """A --DTC value read: the date (None when unknown), how (`complete`, `imputed`, `partial`),
    admiral's flag of an imputed date (D / M), and what to report."""
    value: dt.date | None
    status: str                   # complete | imputed | partial | missing | invalid
    flag: str | None = None
    message: str | None = None

    @property
    def known(self) -> bool:
        return self.value is not None


def read_dtc(raw: str | None, rule: Imputation | None = None) -> ReadDate:
    """Read one --DTC value (see the module docstring)."""
    if raw is None or not str(raw).strip():
        return ReadDate(None, "missing")
    s = str(raw).strip()
    m = _DASHED.match(s)
    if m:
        y, mo, d, time = m.group("y"), None, m.group("d"), m.group("time")
    else:
        m = _DTC.match(s)
        if not m:
            return ReadDate(None, "invalid", message=f"{s[:40]!r} is not an ISO 8601 date")
        y, mo, d, time = m.group("y"), m.group("m"), m.group("d"), m.group("time")
    if time:
        t = _TIME.match(time)
        parts = [int(p) for p in ((t.group(1), t.group(3), t.group(5)) if t else ()) if p and p != "-"]
        if not t or any(v > lim for v, lim in zip(parts, (23, 59, 59))):
            return ReadDate(None, "invalid", message=f"{s[:40]!r}: the time part {time[:20]!r} is not an ISO 8601 time")
    year = int(y) if y and y != "-" else None
    month = int(mo) if mo and mo != "-" else None
    day = int(d) if d and d != "-" else None
    if month is not None and not 1 <= month <= 12:
        return ReadDate(None, "invalid", message=f"{s[:40]!r}: month {month} does not exist")
    if year is not None and month is not None and day is not None:
        try:
            return ReadDate(dt.date(year, month, day), "complete")
        except ValueError:
            return ReadDate(None, "invalid", message=f"{s[:40]!r}: no such day")
    if day is not None and not 1 <= day <= 31:
        return ReadDate(None, "invalid", message=f"{s[:40]!r}: day {day} does not exist")
    missing = "year" if year is None else ("month" if month is None else "day")
    if rule is None:
        return ReadDate(None, "partial", message=f"partial date {s!r} ({missing} unknown) left unknown: "
                                                 "no imputation rule is configured")
    if year is None or (month is None and rule.highest == "D"):
        what = "the year" if year is None else "the month"
        return ReadDate(None, "partial", message=f"partial date {s!r}: {what} cannot be imputed by the configured "
                                                 f"rule ({rule.describe()}); left unknown")
    if month is None and day is not None:
        return ReadDate(None, "partial", message=f"partial date {s!r}: a day without a month cannot be imputed; "
                                                 "left unknown")
    flag = "M" if month is None else "D"
    lo_m, hi_m = (month, month) if month is not None else (1, 12)
    first = dt.date(year, lo_m, 1)
    last = dt.date(year, hi_m, calendar.monthrange(year, hi_m)[1])
    if rule.date == "first":
        value = first
    elif rule.date == "last":
        value = last
    else:  # mid: admiral's "mid" is the 15th, or June 30 when the month is missing too
        value = dt.date(year, 6, 30) if month is None else dt.date(year, month, 15)
    return ReadDate(value, "imputed", flag, f"partial date {s!r} imputed to {value} ({rule.describe()}; flag {flag})")
