"""The base of every record model: unknown fields are refused with the list of allowed ones."""
from __future__ import annotations

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


_FIELD_NAMES: dict[type, frozenset[str]] = {}   # per model class: runs on every mapping loaded


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
        return data
