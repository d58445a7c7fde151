"""Pack parameters checked at load: every value is a finite number of sane size, text or a
boolean, and of the type its uses need.

Why: a parameter of the wrong type loads and "works": `age_min_years: eighteen` compared with an
integer fact is unknown for every subject, so every candidate screens INDETERMINATE (or, in a
`not`, the opposite), with no error anywhere. The type a parameter must have is read from its
uses: compared with a declared fact (number/integer -> a number, string -> text, boolean -> a
boolean, date -> an ISO date text), used as a factor (`times:`) or in a derived arithmetic
operation (a number), compared on the left with a literal (the literal's type). A parameter
nothing uses keeps whatever type it has. `--param` overrides go through `check_value` too.
"""
from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from engine.errors import PackError
from engine.rules.model import Compare, FactRef, FactType, ParamRef

if TYPE_CHECKING:
    from engine.rules.load import Pack

MAX_MAGNITUDE = 1e12          # no threshold, window or factor is larger
MIN_MAGNITUDE = 1e-12         # ... or, unless zero, smaller
MAX_TEXT = 10_000             # characters of a text parameter

_KIND_OF_FACT = {FactType.number: "number", FactType.integer: "number", FactType.string: "text",
                 FactType.boolean: "boolean", FactType.date: "date"}


def value_problem(value: Any) -> str | None:
    """Why `value` cannot be a parameter value (non-finite, absurd magnitude, too long), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float, Decimal)):
        if isinstance(value, int) and value.bit_length() > 64:  # float() of a huge int overflows
            return f"an integer of about {int(value.bit_length() * 0.30103)} digits is not a threshold"
        f = float(value)
        if math.isnan(f) or math.isinf(f):
            return f"{value!r} is not a finite number"
        if f and not MIN_MAGNITUDE <= abs(f) <= MAX_MAGNITUDE:
            return f"{value!r} is outside the range of any threshold ({MIN_MAGNITUDE:g} to {MAX_MAGNITUDE:g}, or 0)"
        return None
    if isinstance(value, str):
        return f"a text of {len(value)} characters (at most {MAX_TEXT})" if len(value) > MAX_TEXT else None
    return f"a {type(value).__name__} (a parameter is a number, text or true/false)"


def kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float, Decimal)):
        return "number"
    if isinstance(value, dt.date):
        return "date"
    return "text"


def fits(value: Any, kind: str) -> bool:
    """Whether a parameter value can stand where `kind` is needed."""
    have = kind_of(value)
    if kind == "date":
        if have == "date":
            return True
        if have != "text":
            return False
        try:
            dt.date.fromisoformat(value)
        except ValueError:
            return False
        return True
    return have == kind


def parameter_uses(pack: "Pack") -> dict[str, list[tuple[str, tuple, str]]]:
    """param name -> [(kind needed, key path of the use, what it is compared with)]."""
    from engine.rules.load import walk
    m = pack.manifest
    declared = {f.name: f for f in m.facts}
    uses: dict[str, list[tuple[str, tuple, str]]] = {}

    def use(ref: Any, kind: str | None, path: tuple, what: str) -> None:
        if isinstance(ref, ParamRef) and kind is not None:
            uses.setdefault(ref.param, []).append((kind, path, what))

    def conditions() -> Any:
        for i, r in enumerate(m.rules):
            yield r.when, ("rules", i, "when")
        for i, d in enumerate(m.decisions):
            for j, row in enumerate(d.rows):
                yield row.when, ("decisions", i, "rows", j, "when")

    for cond, base in conditions():
        for node, path in walk(cond, base):
            if not isinstance(node, Compare):
                continue
            op = node.op
            operands = node.operand if op == "between" else ([] if op in ("in", "exists", "missing")
                                                             else [node.operand])
            for o in operands:
                if isinstance(o, FactRef):
                    use(o.times, "number", path + (op, "times"), f"the factor of {o.fact}")
            if node.param is not None:
                for o in operands + (list(node.operand) if op == "in" else []):
                    if not isinstance(o, (ParamRef, FactRef)):
                        use(ParamRef(param=node.param), kind_of(o), path + ("param",), f"the value {o!r}")
                continue
            decl = declared.get(node.fact or "")
            kind = _KIND_OF_FACT.get(decl.type) if decl is not None else None
            for o in operands:
                use(o, kind, path + (op,), f"{node.fact} ({decl.type.value})" if decl else "")
    for i, d in enumerate(m.derived):
        if d.op in ("ratio", "product", "sum", "difference"):
            for a in d.args:
                use(a, "number", ("derived", i, d.op), f"the {d.op} {d.name}")
    return uses


def check_parameters(pack: "Pack") -> None:
    """Refuse (PackError naming file, line and key) a parameter value that is not finite or of
    absurd size, choices of another type than the value, or a value its uses cannot read."""
    pfile = pack.file
    m = pack.manifest
    index = {p.name: i for i, p in enumerate(m.parameters)}

    def fail(msg: str, *path: Any, expected: str | None = None) -> None:
        raise PackError(msg, file=pfile, line=pack.line_of(*path), key=".".join(map(str, path)),
                        expected=expected)

    for i, p in enumerate(m.parameters):
        problem = value_problem(p.value)
        if problem:
            fail(f"parameter {p.name!r}: {problem}", "parameters", i, "value")
        for j, c in enumerate(p.choices or []):
            problem = value_problem(c)
            if problem:
                fail(f"parameter {p.name!r} choice: {problem}", "parameters", i, "choices", j)
            if kind_of(c) != kind_of(p.value):
                fail(f"parameter {p.name!r}: choice {c!r} is {kind_of(c)}, the value {p.value!r} is "
                     f"{kind_of(p.value)}", "parameters", i, "choices", j, expected="choices of one type")
    for name, found in parameter_uses(pack).items():
        if name not in index:
            continue  # an unknown parameter is reported by the reference checks
        i, value = index[name], m.parameters[index[name]].value
        for kind, path, what in found:
            if not fits(value, kind):
                where = ".".join(map(str, path))
                fail(f"parameter {name!r} is {value!r} ({kind_of(value)}), but {where} uses it as "
                     f"{'an ISO date' if kind == 'date' else 'a ' + kind}" + (f" against {what}" if what else ""),
                     "parameters", i, "value", expected=f"a {kind} value")


def check_value(pack_id: str, name: str, value: Any) -> None:
    """A `--param` override: the same bounds as a value in the pack file."""
    from engine.errors import InputError
    problem = value_problem(value)
    if problem:
        raise InputError(f"parameter {name!r} of pack {pack_id}: {problem}", field="--param",
                         expected="a finite number of sane size, text or true/false")
