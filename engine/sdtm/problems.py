"""The problem report of an SDTM import: one line per problem, naming file, USUBJID, --SEQ and
variable, and what was expected.

Why a report and not the first exception: a data manager's export has many rows, and a real
defect list is what they need to fix it at the source. Two severities:
- `error`: the value cannot be used (a required variable empty, a unit or test code the mapping
  does not know, a duplicate --SEQ, an impossible date, a subject absent from DM). The subject is
  skipped (the default, and the report says so) or the whole import is refused (`--strict`).
- `note`: the value was read, and the reader says how (a partial date imputed by the configured
  rule, or left unknown because no rule is configured).

A problem that belongs to no subject (a file that cannot be read, a domain missing a required
variable) cannot be skipped: it is raised as an InputError at once (exit 2, nothing written).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Iterator

from engine.errors import InputError
from engine.safetext import printable

ERROR, NOTE = "error", "note"
SHOWN = 20          # problems quoted in a refusal message (the full list goes to the report)


@dataclass(frozen=True)
class Problem:
    file: str                      # file[:record]
    usubjid: str | None
    seq: str | None                # e.g. "LBSEQ 17" (the variable and its value)
    variable: str | None
    message: str
    expected: str | None = None
    severity: str = ERROR

    def line(self) -> str:
        where = [self.file]
        if self.usubjid:
            where.append(f"USUBJID {self.usubjid}")
        if self.seq:
            where.append(self.seq)
        if self.variable:
            where.append(f"variable {self.variable}")
        text = f"{', '.join(where)}: {self.message}"
        if self.expected:
            text += f" (expected {self.expected})"
        return printable(("note: " if self.severity == NOTE else "") + text)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ProblemReport:
    """Every problem of one import, in the order found."""
    problems: list[Problem] = field(default_factory=list)

    def add(self, file: str, usubjid: str | None, seq: str | None, variable: str | None, message: str,
            expected: str | None = None, severity: str = ERROR) -> Problem:
        p = Problem(file, usubjid or None, seq, variable, message, expected, severity)
        self.problems.append(p)
        return p

    def extend(self, problems: Iterable[Problem]) -> None:
        self.problems.extend(problems)

    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    def notes(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == NOTE]

    def failed_subjects(self) -> set[str]:
        """USUBJIDs with at least one error (the subjects the default policy skips)."""
        return {p.usubjid for p in self.problems if p.severity == ERROR and p.usubjid}

    def __iter__(self) -> Iterator[Problem]:
        return iter(self.problems)

    def __len__(self) -> int:
        return len(self.problems)

    def lines(self) -> list[str]:
        """Errors first (they decide what is skipped or refused), then notes; each in file order."""
        return [p.line() for p in self.errors() + self.notes()]

    def summary(self) -> str:
        """One line: how many errors and notes, in how many subjects."""
        errors = self.errors()
        return (f"{len(errors)} error(s) in {len(self.failed_subjects())} subject(s), "
                f"{len(self.notes())} note(s)")

    def by_message(self) -> list[tuple[str, int]]:
        """The distinct messages (without the row) and how often each occurs, most frequent first."""
        return Counter(f"{p.variable or ''}: {p.message}" for p in self.problems).most_common()

    def refuse_if_strict(self, strict: bool, what: str) -> None:
        """`--strict`: any error refuses the import (InputError quoting the first problems)."""
        errors = self.errors()
        if strict and errors:
            shown = "; ".join(p.line() for p in errors[:SHOWN])
            more = f" (+{len(errors) - SHOWN} more)" if len(errors) > SHOWN else ""
            raise InputError(f"{what} refused (--strict): {len(errors)} problem(s): {shown}{more}",
                             expected="no problem in any row, or run without --strict to skip the subjects concerned")

    def to_dict(self) -> dict[str, Any]:
        return {"errors": len(self.errors()), "notes": len(self.notes()),
                "skipped_subjects": sorted(self.failed_subjects()),
                "problems": [p.to_dict() for p in self.problems]}
