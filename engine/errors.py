"""Errors as one hierarchy: each names where the bad input is and what was expected.

The CLI maps `InputError` (and its children) to exit 2 with one line, anything else to exit 1.
"""
from __future__ import annotations


class AdjudicatorError(Exception):
    """Base of every error the engine raises on purpose."""


class InputError(AdjudicatorError):
    """Bad input: a subject file, a lab listing, a CLI argument. Exit code 2.

    The message names file, subject, field and expectation, as far as they are known.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        subject: str | None = None,
        field: str | None = None,
        expected: str | None = None,
    ) -> None:
        self.file, self.subject, self.field, self.expected = file, subject, field, expected
        self.detail = message
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.file:
            where.append(str(self.file))
        if self.subject:
            where.append(f"subject {self.subject}")
        if self.field:
            where.append(f"field {self.field}")
        text = ": ".join([", ".join(where), self.detail]) if where else self.detail
        if self.expected:
            text += f" (expected {self.expected})"
        return text


class PackError(InputError):
    """A rule pack that cannot be loaded or compiled: file, line and key. Exit code 2."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 key: str | None = None, expected: str | None = None) -> None:
        self.line, self.key = line, key
        loc = file if file else None
        if loc and line:
            loc = f"{loc}:{line}"
        super().__init__(message, file=loc, field=key, expected=expected)


class EvaluationError(AdjudicatorError):
    """A rule pack that loaded but misbehaved on data (e.g. overlap in a `unique` decision)."""


class AuditIntegrityError(AdjudicatorError):
    """The audit trail failed verification (edited, deleted or reordered records). Exit code 3."""
