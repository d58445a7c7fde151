"""Coded findings: the trial-agnostic way a subject record carries what only one trial asks
(a lung function test, a life-expectancy estimate, a sponsor's approval). Each finding is a name,
a value, and optionally its unit, date and source; it becomes the fact `finding.<name>`, typed
and range-checked by the pack that declares it (docs/subject-record.md, docs/writing-a-trial.md).
"""

import datetime as dt
from decimal import Decimal

from pydantic import Field

from engine.record.base import RecordModel

FINDING_PREFIX = "finding."


class Finding(RecordModel):
    """One coded finding: `{name: dlco_pct, value: 62, unit: "%", date: 2024-01-05}`."""

    name: str = Field(max_length=100, pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$", description=(
        "Lower-case dotted name, read by packs as the fact `finding.<name>` (e.g. dlco_pct)."))
    value: bool | Decimal | dt.date | str = Field(description=(
        "true/false, a number, an ISO date or a code; the pack that reads it declares its type."))
    unit: str | None = Field(None, max_length=32, description=(
        "Unit of a number as recorded; must be the unit the reading pack declares."))
    date: dt.date | None = Field(None, description="When it was measured or stated (ISO date).")
    source: str | None = Field(None, max_length=200, description="Where it comes from (document, form).")
