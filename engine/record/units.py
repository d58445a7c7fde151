"""Canonical units at the edge: blood counts in 10^9/L, haemoglobin in g/dL, percentages in %.

Only exact scalings are converted (the same quantity written differently); anything else is
refused with a message naming the unit. Arithmetic is Decimal on the string form of the input,
so 1200 cells/uL is exactly 1.2 x10^9/L. Converted values are stored as `Decimal`.
"""

import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Union

from typing_extensions import TypedDict

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field

from engine.record.spelling import is_decimal_text

# Spellings are compared after lower-casing and removing spaces; "µ" and "μ" count as "u".
COUNT_SCALE: dict[str, Decimal] = {
    **{u: Decimal(1) for u in ("10^9/l", "x10^9/l", "10e9/l", "10*9/l", "g/l", "gi/l", "giga/l",
                               "10^3/ul", "x10^3/ul", "10e3/ul", "10*3/ul", "k/ul",
                               "10^3/mm3", "thou/ul")},
    **{u: Decimal("0.001") for u in ("cells/ul", "cells/mm3", "/ul", "/mm3", "cells/mm^3",
                                     "/mm^3")},
}
HB_SCALE: dict[str, Decimal] = {"g/dl": Decimal(1), "g/l": Decimal("0.1")}
COUNT_UNITS_SHOWN = "10^9/L, G/L, GI/L, 10^3/uL, K/uL (x1); cells/uL, cells/mm3, /uL, /mm3 (x0.001)"
HB_UNITS_SHOWN = "g/dL (x1), g/L (x0.1)"


class UnitError(ValueError):
    """A unit that is not an exact scaling of the canonical one (pydantic wraps it)."""


def _norm_unit(unit: str) -> str:
    return unit.strip().lower().replace(" ", "").replace("µ", "u").replace("μ", "u")


# No measurement a record holds is larger than 10^12 or, unless zero, smaller than 10^-12 in its
# unit (platelets 450,000/uL is 4.5 x 10^5; MRD 0.00001 % is 10^-5): anything outside is a typo
# or an attack (1e-300 and 1e308 crash the rules engine's number parser), refused at the edge.
MAGNITUDE_MIN_EXP, MAGNITUDE_MAX_EXP = -12, 12


def bounded(value: Decimal) -> Decimal:
    """`value` if its magnitude can be a measurement (see MAGNITUDE_*); else ValueError."""
    if value and not MAGNITUDE_MIN_EXP <= value.adjusted() <= MAGNITUDE_MAX_EXP:
        shown = f"{value:.3E}" if len(str(value)) > 24 else str(value)
        raise ValueError(f"the number {shown} is outside the range of any measurement "
                         f"(1E{MAGNITUDE_MIN_EXP} to 1E{MAGNITUDE_MAX_EXP + 1}, or 0)")
    return value


def to_decimal(value: Any) -> Decimal:
    """Decimal from the *string* form of a number (so 0.1 stays 0.1); bools are refused."""
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, (int, float)) or (isinstance(value, str) and is_decimal_text(value)):
        try:
            result = Decimal(str(value))
        except InvalidOperation:   # pragma: no cover - the pattern admits only decimal text
            raise ValueError(f"expected a number, got {value!r}") from None
    elif isinstance(value, str):
        raise ValueError(f"expected a number, got {value[:40]!r}")
    else:
        raise ValueError(f"expected a number, got {type(value).__name__}")
    if not result.is_finite():
        raise ValueError(f"expected a finite number, got {value!r}")
    return bounded(result)


def convert(value: Any, unit: str, table: dict[str, Decimal], canonical: str) -> Decimal:
    """`value` in `unit` converted to `canonical` by an exact factor from `table`."""
    factor = table.get(_norm_unit(str(unit)))
    if factor is None:
        accepted = COUNT_UNITS_SHOWN if table is COUNT_SCALE else HB_UNITS_SHOWN
        raise UnitError(f"unknown unit {unit!r} for a value in {canonical} "
                        f"(accepted: {accepted}; only exact scalings are converted)")
    return tidy(to_decimal(value) * factor)


def tidy(value: Decimal) -> Decimal:
    """Drop trailing zeros a scaling leaves (1200 x 0.001 = 1.200 -> 1.2; 100.000 -> 100)."""
    normal = value.normalize()
    return normal.quantize(Decimal(1)) if normal.as_tuple().exponent > 0 else normal


def _edge(table: dict[str, Decimal], canonical: str):
    def parse(raw: Any) -> Any:
        if isinstance(raw, dict):
            extra = set(raw) - {"value", "unit"}
            if extra or "value" not in raw or "unit" not in raw:
                raise ValueError(f"a measured value is a number in {canonical} or a mapping "
                                 f"{{value, unit}}; got keys {sorted(raw)}")
            return convert(raw["value"], raw["unit"], table, canonical)
        return raw if raw is None else to_decimal(raw)
    return parse


def unit_pattern(table: dict[str, Decimal]) -> str:
    """A regex for the spellings `_norm_unit` maps onto a key of `table`: any case, spaces
    anywhere inside, surrounding whitespace, "µ"/"μ" for "u" (the JSON Schema of a unit)."""
    def letter(c: str) -> str:
        if c == "u":
            return "[uUµμ]"
        return f"[{c}{c.upper()}]" if c.isalpha() else re.escape(c)
    spelled = ("(" + " *".join(letter(c) for c in key) + ")" for key in sorted(table))
    return r"^\s*(" + "|".join(spelled) + r")\s*$"


class MeasuredCount(TypedDict):
    """A blood count with its unit as reported, converted at load to 10^9/L."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]
    value: Annotated[Decimal, Field(ge=0, description="The value, in `unit` (never negative).")]
    unit: Annotated[str, Field(pattern=unit_pattern(COUNT_SCALE), description=(
        "Its unit: an exact scaling of 10^9/L (docs/subject-record.md)."))]


class MeasuredHemoglobin(TypedDict):
    """A haemoglobin with its unit as reported, converted at load to g/dL."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]
    value: Annotated[Decimal, Field(ge=0, description="The value, in `unit` (never negative).")]
    unit: Annotated[str, Field(pattern=unit_pattern(HB_SCALE), description=(
        "Its unit: an exact scaling of g/dL (docs/subject-record.md)."))]

# Field types. Counts >= 0; Hb > 0; percentages 0-100.
def _non_negative(value: Decimal) -> Decimal:
    if value < 0:
        raise ValueError(f"impossible negative value {value}")
    return bounded(value)


# The JSON Schema of the input (schema.py): a number (or decimal text), or {value, unit}.
_NonNegativeInput = Annotated[Decimal, Field(ge=0)]
Count = Annotated[Decimal, BeforeValidator(_edge(COUNT_SCALE, "10^9/L"),
                                           json_schema_input_type=Union[_NonNegativeInput, MeasuredCount]),
                  AfterValidator(_non_negative)]
Hemoglobin = Annotated[Decimal, BeforeValidator(_edge(HB_SCALE, "g/dL"),
                                                json_schema_input_type=Union[_NonNegativeInput, MeasuredHemoglobin]),
                       AfterValidator(_non_negative)]
# Plain numbers: pydantic's Decimal converts a float through its shortest repr (0.1 -> 0.1).
Number = Annotated[Decimal, Field(allow_inf_nan=False), AfterValidator(bounded)]
NonNegative = Annotated[Decimal, Field(ge=0, allow_inf_nan=False), AfterValidator(bounded)]
Positive = Annotated[Decimal, Field(gt=0, allow_inf_nan=False), AfterValidator(bounded)]
Percent = Annotated[Decimal, Field(ge=0, le=100, allow_inf_nan=False), AfterValidator(bounded)]
