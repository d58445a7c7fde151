"""The base of every record model: unknown fields are refused with the list of allowed ones."""

import datetime as dt
import types
import typing
from decimal import Decimal
from typing import Any

from pydantic import (BaseModel, BeforeValidator, ConfigDict, PlainValidator, WrapValidator,
                      model_validator)

from engine.record.spelling import spelling_problem


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


def check_unique(values: typing.Iterable[Any], field: str, message: str, expected: str) -> None:
    """Refuse the first value listed twice, as `<field>[<index>]<rest>`: `field` holds `[]` where
    the index goes (`labs[].id`); `message` is a format of the value `v` (`id {v!r} used twice`)."""
    seen: set[Any] = set()
    for i, v in enumerate(values):
        if v in seen:
            raise FieldError(field.replace("[]", f"[{i}]", 1), message.format(v=v), expected=expected)
        seen.add(v)


_FIELD_NAMES: dict[type, frozenset[str]] = {}   # per model class: runs on every mapping loaded
# per model class: (field, container, kind) of the fields whose scalar spelling the edge checks
_SPELLED: dict[type, tuple[tuple[str, str, type], ...]] = {}
_SCALARS = (bool, int, Decimal, dt.date)
_CONVERTERS = (BeforeValidator, PlainValidator, WrapValidator)


def suffix_alias(data: Any, suffix: str, target: str, what: str) -> Any:
    """`<name><suffix>: v` keys beside `target` read as `target[<name>] = v` (the first records'
    per-drug keys, e.g. `<drug>_doses` for `doses`); a name given both ways is refused."""
    if not isinstance(data, dict) or not any(isinstance(k, str) and k.endswith(suffix) for k in data):
        return data
    mapping = data.get(target) or {}
    if not isinstance(mapping, dict):
        return data
    data, mapping = dict(data), dict(mapping)
    for key in [k for k in data if isinstance(k, str) and k.endswith(suffix)]:
        name = key[: -len(suffix)]
        if name in mapping:
            raise FieldError(key, f"{what} {name!r} given twice ({key} and {target}.{name})",
                             expected=f"one of {key} or {target}.{name}")
        mapping[name] = data.pop(key)
    data[target] = mapping
    return data


def _scalar_kind(annotation: Any) -> tuple[str, type] | None:
    """("", kind), ("list", kind) or ("dict", kind) when a field holds exactly one scalar kind of
    spelling.py (optionally in a list or as mapping values, optionally null); None for unions of
    kinds and for types with their own input converter (counts {value, unit}, clinical facts)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _scalar_kind(members[0]) if len(members) == 1 else None
    if origin is typing.Annotated:
        base, *meta = typing.get_args(annotation)
        return None if any(isinstance(m, _CONVERTERS) for m in meta) else _scalar_kind(base)
    if origin in (list, dict):
        inner = _scalar_kind(typing.get_args(annotation)[-1])
        return ("list" if origin is list else "dict", inner[1]) if inner and not inner[0] else None
    return ("", annotation) if annotation in _SCALARS else None


def _spelled_fields(cls: type[BaseModel]) -> tuple[tuple[str, str, type], ...]:
    """The fields typed as a number, whole number, boolean or date (or lists / mappings of one)
    whose spelling the edge checks before pydantic's lax conversion sees them: pydantic would read
    `true` as 1, "1_000" as 1000, "yes" as true and 0 as 1970-01-01 (spelling.py)."""
    out = []
    for name, f in cls.model_fields.items():
        if any(isinstance(m, _CONVERTERS) for m in f.metadata):
            continue
        found = _scalar_kind(f.annotation)
        if found:
            out.append((name, found[0], found[1]))
    return tuple(out)


def _check_spelling(data: dict[str, Any], fields: tuple[tuple[str, str, type], ...]) -> None:
    for name, container, kind in fields:
        value = data.get(name)
        if value is None:
            continue
        if not container:
            problem = spelling_problem(kind, value)
            where = name
        elif container == "list" and isinstance(value, list):
            problem = where = None
            for i, item in enumerate(value):
                problem = None if item is None else spelling_problem(kind, item)
                if problem:
                    where = f"{name}[{i}]"
                    break
        elif container == "dict" and isinstance(value, dict):
            problem = where = None
            for key, item in value.items():
                problem = None if item is None else spelling_problem(kind, item)
                if problem:
                    where = f"{name}.{key}"
                    break
        else:
            continue   # not a list / mapping: pydantic names the shape
        if problem:
            raise FieldError(where, problem[0], expected=problem[1])


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
            spelled = _SPELLED.get(cls)
            if spelled is None:
                spelled = _SPELLED[cls] = _spelled_fields(cls)
            _check_spelling(data, spelled)
        return data
