"""Fact sheets: the flat, typed, named values a pack reads, with the source of each value,
plus the derived facts the pack defines (exact decimal arithmetic, no code in YAML).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal, DivisionByZero, InvalidOperation
from typing import Any, Mapping

from engine.errors import InputError
from engine.rules.model import Derived, FactDecl, FactType, ParamRef
from engine.evaluate.values import normalize, round_derived, to_date, to_decimal


@dataclass
class FactSheet:
    """Values by dotted name (absent = missing; None is dropped), and where each came from.

    A fact without a value is either *absent* (not recorded, or a computed fact decidedly without
    a value: an unset state variable, an empty collection's `last`) or *unknown* (a computed fact
    that may or may not have a value: an undecided decision output, an unknown state variable or
    aggregate). Comparisons are unknown for both; `exists` / `missing` are decided for absent facts
    and unknown for unknown ones.
    """
    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    # a missing derived or decision fact -> the base facts whose absence made it missing
    missing_because: dict[str, list[str]] = field(default_factory=dict)
    unknown: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, values: Mapping[str, Any], sources: Mapping[str, str] | None = None) -> "FactSheet":
        return cls({k: normalize(v) for k, v in values.items() if v is not None}, dict(sources or {}))

    def copy(self) -> "FactSheet":
        return FactSheet(dict(self.values), dict(self.sources), dict(self.missing_because), set(self.unknown))

    def missing_roots(self, name: str) -> list[str]:
        """The base facts to collect so that `name` can be known."""
        return self.missing_because.get(name, [name])

    def mark_unknown(self, name: str, roots: list[str] | None = None) -> None:
        """`name` may or may not have a value; `roots` are the facts that would decide it."""
        self.values.pop(name, None)
        self.missing_because[name] = sorted(set(roots)) if roots else [name]
        self.unknown.add(name)

    def mark_absent(self, name: str, roots: list[str] | None = None) -> None:
        """`name` decidedly has no value (an unset state variable, an empty collection)."""
        self.values.pop(name, None)
        self.unknown.discard(name)
        if roots:
            self.missing_because[name] = sorted(set(roots))
        else:
            self.missing_because.pop(name, None)

    def put(self, name: str, value: Any) -> None:
        """Set a computed fact's value (normalised)."""
        self.values[name] = normalize(value)
        self.missing_because.pop(name, None)
        self.unknown.discard(name)


_TYPE_OK = {
    FactType.number: lambda v: isinstance(v, Decimal),
    FactType.integer: lambda v: isinstance(v, Decimal) and v == v.to_integral_value(),
    FactType.boolean: lambda v: isinstance(v, bool),
    FactType.string: lambda v: isinstance(v, str),
    FactType.date: lambda v: isinstance(v, dt.date),
}


def check_types(sheet: FactSheet, decls: list[FactDecl], *, file: str | None = None,
                subject: str | None = None) -> None:
    """A value of the wrong type or outside its declared range is bad input, not a missing fact."""
    values = sheet.values
    for d, ok, allowed, lo, hi in _checks(decls):
        v = values.get(d.name)
        if v is None:
            continue
        if not ok(v):
            raise InputError(f"value {v!r} has the wrong type", file=file, subject=subject, field=d.name,
                             expected=d.type.value + (f" in {d.unit}" if d.unit else ""))
        if allowed is not None and v not in allowed:
            raise InputError(f"value {v!r} is not allowed", file=file, subject=subject, field=d.name,
                             expected="one of " + ", ".join(d.values))
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            rng = f"{d.min if d.min is not None else '-inf'}..{d.max if d.max is not None else 'inf'}"
            raise InputError(f"value {v} is impossible", file=file, subject=subject, field=d.name,
                             expected=f"{rng}{' ' + d.unit if d.unit else ''}")


_CHECKS: dict[int, tuple[list[FactDecl], list[tuple]]] = {}


def _checks(decls: list[FactDecl]) -> list[tuple]:
    """(decl, type test, allowed values, min, max) per declaration, built once per pack's list
    (kept with the list, so its id cannot be reused while cached)."""
    hit = _CHECKS.get(id(decls))
    if hit is None or hit[0] is not decls:
        built = [(d, _TYPE_OK[d.type], frozenset(d.values) if d.values is not None else None,
                  to_decimal(d.min) if d.min is not None and d.type in _NUMERIC else None,
                  to_decimal(d.max) if d.max is not None and d.type in _NUMERIC else None) for d in decls]
        hit = _CHECKS[id(decls)] = (decls, built)
    return hit[1]


_NUMERIC = (FactType.number, FactType.integer)


def _operand(sheet: FactSheet, a: Any, params: Mapping[str, Any]) -> tuple[Any, list[str]]:
    if isinstance(a, ParamRef):
        return normalize(params[a.param]), []
    if isinstance(a, str):
        if a in sheet.values:
            return sheet.values[a], []
        return None, sheet.missing_roots(a)
    return normalize(a), []


def add_derived(sheet: FactSheet, derived: list[Derived], params: Mapping[str, Any]) -> None:
    """Compute each derived fact in order; a missing input makes it missing (and remembers why).
    It is unknown (rather than absent) when an input it needs is unknown."""
    unknown = sheet.unknown
    for d in derived:
        op = d.op
        if op == "lookup":
            key = sheet.values.get(d.args.fact)
            if key is None:
                sheet.missing_because[d.name] = sheet.missing_roots(d.args.fact)
                if d.args.fact in unknown:
                    unknown.add(d.name)
            elif key in d.args.table:
                sheet.values[d.name] = to_decimal(d.args.table[key])
            else:
                sheet.missing_because[d.name] = [d.args.fact]
            continue
        if op == "first_present":
            for a in d.args:
                if a in sheet.values:
                    sheet.values[d.name] = sheet.values[a]
                    break
                if a in unknown:  # an earlier unknown candidate may yet be the first present
                    unknown.add(d.name)
                    sheet.missing_because[d.name] = sorted(set(sheet.missing_roots(a)))
                    break
            else:
                sheet.missing_because[d.name] = sorted({r for a in d.args for r in sheet.missing_roots(a)})
            continue
        vals, missing = [], []
        for a in d.args:
            v, m = _operand(sheet, a, params)
            vals.append(v)
            missing += m
        if op in ("min", "max"):
            present = [v for v in vals if v is not None]
            if len(present) == len(vals):
                sheet.values[d.name] = (min if op == "min" else max)(present)
            else:
                sheet.missing_because[d.name] = sorted(set(missing))
                if any(isinstance(a, str) and a in unknown for a in d.args):
                    unknown.add(d.name)
            continue
        if missing:
            sheet.missing_because[d.name] = sorted(set(missing))
            if any(isinstance(a, str) and a in unknown for a in d.args):
                unknown.add(d.name)
            continue
        try:
            sheet.values[d.name] = _compute(op, vals)
        except (DivisionByZero, InvalidOperation, ZeroDivisionError):
            # a ratio over zero cannot be known; the record says which inputs
            sheet.missing_because[d.name] = [a for a in d.args if isinstance(a, str)]


def _compute(op: str, vals: list[Any]) -> Any:
    if op == "ratio":
        return round_derived(vals[0] / vals[1])
    if op == "product":
        out = Decimal(1)
        for v in vals:
            out *= v
        return round_derived(out)
    if op == "sum":
        return round_derived(sum(vals, Decimal(0)))
    if op == "difference":
        return round_derived(vals[0] - vals[1])
    if op == "percent_decrease":
        return round_derived((vals[0] - vals[1]) / vals[0] * 100)
    if op == "days_between":
        return Decimal((to_date(vals[1]) - to_date(vals[0])).days)
    if op == "years_between":
        a, b = to_date(vals[0]), to_date(vals[1])
        years = b.year - a.year - ((b.month, b.day) < (a.month, a.day))
        return Decimal(years)
    raise AssertionError(op)
