"""The base of every record model: unknown fields are refused with the list of allowed ones."""
from __future__ import annotations

import types
import typing
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator


class FieldError(ValueError):
    """A cross-field or consistency error that knows which (relative) field it is about.

    Raised inside validators; pydantic wraps it, and `load.py` reads `field` and `expected`
    back from the error context to build the dotted path of the InputError.
    """

    def __init__(self, field: str | None, message: str, expected: str | None = None) -> None:
        self.field, self.message, self.expected = field, message, expected
        super().__init__(message)


def check_span(start: Any, end: Any) -> None:
    """A start_date / end_date pair: the end may not come before the start."""
    if start and end and end < start:
        raise FieldError("end_date", f"end {end} before start {start}", expected=f"a date on or after {start}")


_FIELD_NAMES: dict[type, frozenset[str]] = {}   # per model class: runs on every mapping loaded
_NO_BOOL: dict[type, frozenset[str]] = {}        # per model class: numeric fields that take no bool


def _flat_types(annotation: Any) -> set[Any]:
    """Every type an annotation admits (Optional, Union and Annotated unwrapped)."""
    out: set[Any] = set()
    stack = [annotation]
    while stack:
        a = stack.pop()
        origin = typing.get_origin(a)
        if origin is typing.Annotated:
            stack.append(typing.get_args(a)[0])
        elif origin is typing.Union or origin is types.UnionType:
            stack.extend(typing.get_args(a))
        else:
            out.add(a)
    return out


def _numeric_fields(cls: type[BaseModel]) -> frozenset[str]:
    """Fields typed as a number (int, float, Decimal) that do not also admit a boolean: pydantic
    would read `true` there as 1, and a decided 'age 1' is a silent wrong answer."""
    names = []
    for name, f in cls.model_fields.items():
        kinds = _flat_types(f.annotation)
        if bool not in kinds and Any not in kinds and kinds & {int, float, Decimal}:
            names.append(name)
    return frozenset(names)


class RecordModel(BaseModel):
    """Strict about shape (no unknown keys), lax about scalar spelling ("5" is 5)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False,
                              use_attribute_docstrings=False)

    @model_validator(mode="before")
    @classmethod
    def _refuse_unknown_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            names = _FIELD_NAMES.get(cls)
            if names is None:
                names = _FIELD_NAMES[cls] = frozenset(cls.model_fields)
            if not names.issuperset(data):
                unknown = [k for k in data if k not in names]
                allowed = ", ".join(cls.model_fields)
                raise FieldError(str(unknown[0]), f"unknown field {unknown[0]!r}",
                                 expected=f"one of: {allowed}")
            numeric = _NO_BOOL.get(cls)
            if numeric is None:
                numeric = _NO_BOOL[cls] = _numeric_fields(cls)
            for name in numeric:
                if type(data.get(name)) is bool:
                    raise FieldError(name, f"a boolean ({str(data[name]).lower()}) where a number is expected",
                                     expected="a number")
        return data
