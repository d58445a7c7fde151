"""Follow-up after the first dose: what happened to the subject beyond the trial's cycles
(transplant, donor lymphocyte infusions). Deaths and the last contact are top-level fields of the
record; relapses are marrow assessments (adjudicated by the response packs, never entered here).
"""

from typing import Annotated, Union

from pydantic import Field

from engine.record.base import RecordModel
from engine.record.history import Dli, Hsct

FollowUpEvent = Annotated[Union[Hsct, Dli], Field(discriminator="type")]


class FollowUp(RecordModel):
    """Dated events after the first dose of study drug."""

    events: list[FollowUpEvent] = Field(default_factory=list, description=(
        "Transplants and donor lymphocyte infusions after the first dose: entries typed hsct|dli "
        "(same fields as in treatment_history)."))
