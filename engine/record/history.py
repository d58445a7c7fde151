"""Treatment history before the trial: a dated timeline of typed entries.

Each entry has a `type` (cycle, remission, relapse, hsct, dli, marrow). An earlier marrow (before
or after a cycle, or stand-alone, e.g. after a transplant) records the same facts as an on-study
assessment (marrow, blood, MRD, extramedullary disease, transfusion); the site's response label
is kept beside them as a fallback. Disease status (refractory / relapsed) is derived by the
disease-status pack, which judges each earlier marrow from its facts.
"""

import datetime as dt
from typing import Annotated, Any, Literal, Union

from pydantic import ConfigDict, Field, model_validator

from engine.record.assessments import AssessmentFacts, Marrow, Mrd
from engine.record.base import FieldError, RecordModel, suffix_alias
from engine.record.safety import DRUG_RE, DrugName
from engine.record.units import Percent

SiteResponse = Literal["CR", "CRi", "CRh", "MLFS", "PR", "NR", "SD", "PD", "NOT_EVALUABLE"]


class EarlierMarrow(AssessmentFacts):
    """An earlier marrow: the facts of an on-study assessment, the site's response label, and the
    shorthands of the first record format (`blasts_pct` = `marrow.blasts_pct`, `mrd_pct` = `mrd:
    {done: true, value_pct}`), which are read into the full shape."""

    date: dt.date | None = Field(None, description="Date of the marrow (ISO date).")
    blasts_pct: Percent | None = Field(None, description="Bone marrow blasts (%); shorthand of marrow.blasts_pct.")
    response: SiteResponse | None = Field(None, description=(
        "Response as recorded by the site: CR|CRi|CRh|MLFS|PR|NR|SD|PD|NOT_EVALUABLE (kept as a "
        "fallback: the disease-status pack judges the marrow from its facts when they are recorded)."))
    mrd_pct: Percent | None = Field(None, description=(
        "Measurable residual disease (%, flow cytometry unless stated); shorthand of "
        "mrd: {done: true, value_pct}."))

    @model_validator(mode="after")
    def _shorthands(self) -> "EarlierMarrow":
        if self.blasts_pct is not None:
            if self.marrow is not None and self.marrow.blasts_pct is not None and self.marrow.blasts_pct != self.blasts_pct:
                raise FieldError("blasts_pct", f"blasts_pct {self.blasts_pct} differs from marrow.blasts_pct "
                                 f"{self.marrow.blasts_pct}", expected="one of them, or equal values")
            m = self.marrow or Marrow()
            object.__setattr__(self, "marrow", m.model_copy(update={"blasts_pct": self.blasts_pct}))
        if self.mrd_pct is not None:
            if self.mrd is not None and self.mrd.value_pct is not None and self.mrd.value_pct != self.mrd_pct:
                raise FieldError("mrd_pct", f"mrd_pct {self.mrd_pct} differs from mrd.value_pct {self.mrd.value_pct}",
                                 expected="one of them, or equal values")
            m = self.mrd or Mrd()
            object.__setattr__(self, "mrd", m.model_copy(update={"done": True, "value_pct": self.mrd_pct}))
        return self


class MarrowBefore(EarlierMarrow):
    """Bone marrow before a cycle (the pretreatment blast count for the fall in blasts)."""


class MarrowAfter(EarlierMarrow):
    """Bone marrow after a cycle, with the site's recorded response."""


BASED_SUFFIX = "_based"     # `<agent>_based: true|false` is read as `agents: {<agent>: true|false}` (the first records' shape)


def _based_alias_schema(schema: dict[str, Any], cls: type) -> None:
    """`<agent>_based: true|false` in the JSON Schema, spelled as strictly as `agents` values."""
    values = schema["properties"]["agents"]["patternProperties"]
    schema["patternProperties"] = {f"{DRUG_RE[:-1]}{BASED_SUFFIX}$": next(iter(values.values()))}


class Cycle(RecordModel):
    """One cycle (course) of prior therapy."""

    # the `<agent>_based` alias, in the JSON Schema too (keys matching the pattern are not "additional")
    model_config = ConfigDict(**RecordModel.model_config, json_schema_extra=_based_alias_schema)

    type: Literal["cycle"] = Field(description="Entry type discriminator: cycle.")
    id: str | None = Field(None, max_length=64, description="Identifier of the cycle.")
    start_date: dt.date = Field(description="First day of the cycle (ISO date).")
    regimen: str | None = Field(None, max_length=200, description="Regimen (free text).")
    phase: Literal["induction", "reinduction", "consolidation", "salvage"] | None = Field(
        None, description="Purpose: induction|reinduction|consolidation|salvage.")
    intensity: Literal["intensive", "non_intensive"] | None = Field(None, description=(
        "Intensity: intensive|non_intensive (ELN 2017 counts intensive courses, A12)."))
    agents: dict[DrugName, bool | None] = Field(default_factory=dict, description=(
        "Whether the regimen contained each agent or agent class a pack asks about: "
        "{<agent>: true|false} (e.g. a drug, or a class such as hma); an agent not listed, or null, "
        "is unknown. `<agent>_based: true|false` beside it is read as agents[<agent>]."))
    marrow_before: MarrowBefore | None = Field(None, description=(
        "Marrow before the cycle: date, blasts_pct (%)."))
    marrow_after: MarrowAfter | None = Field(None, description=(
        "Marrow after the cycle: date, blasts_pct (%), response, mrd_pct (%)."))

    @model_validator(mode="before")
    @classmethod
    def _per_agent_keys(cls, data: Any) -> Any:
        """`<agent>_based: ...` -> agents[<agent>] (documented alias: docs/subject-record.md)."""
        return suffix_alias(data, BASED_SUFFIX, "agents", "agent")

    @model_validator(mode="after")
    def _marrow_after_follows_start(self) -> "Cycle":
        after = self.marrow_after
        if after and after.date and after.date < self.start_date:
            raise FieldError("marrow_after.date", f"marrow after the cycle dated {after.date}, "
                             f"before the cycle start {self.start_date}",
                             expected=f"a date on or after {self.start_date}")
        return self


class Remission(RecordModel):
    """A remission documented by the site."""

    type: Literal["remission"] = Field(description="Entry type discriminator: remission.")
    date: dt.date = Field(description="Date the remission was documented (ISO date).")
    kind: Literal["CR", "CRi", "CRh"] = Field(description="Remission kind: CR|CRi|CRh.")
    mrd_negative: bool | None = Field(None, description=(
        "MRD negative at remission (true/false); null = not done or unknown."))


class Relapse(RecordModel):
    """A documented relapse (or an MRD-only recurrence, which is not a trial relapse, A8)."""

    type: Literal["relapse"] = Field(description="Entry type discriminator: relapse.")
    date: dt.date = Field(description="Date of the relapse (ISO date).")
    sites: list[Literal["marrow", "blood", "extramedullary"]] = Field(
        default_factory=list, description="Where the relapse was found: marrow|blood|"
                                          "extramedullary (list).")
    bm_blasts_pct: Percent | None = Field(None, description="Bone marrow blasts at relapse (%).")
    mrd_only: bool = Field(False, description=(
        "MRD-only recurrence without haematological relapse (true/false, A8)."))


class Hsct(RecordModel):
    """A haematopoietic stem cell transplant."""

    type: Literal["hsct"] = Field(description="Entry type discriminator: hsct.")
    date: dt.date = Field(description="Date of the transplant (day 0, ISO date).")
    kind: Literal["allogeneic", "autologous"] = Field(description="allogeneic|autologous.")
    number: int = Field(1, ge=1, le=10, description="Ordinal of this transplant (1, 2, ...).")
    disease_status_at_hsct: Literal["CR", "active_disease", "unknown"] = Field(
        "unknown", description="Disease status at transplant: CR|active_disease|unknown.")


class Dli(RecordModel):
    """A donor lymphocyte infusion."""

    type: Literal["dli"] = Field(description="Entry type discriminator: dli.")
    date: dt.date = Field(description="Date of the infusion (ISO date).")


class HistoryMarrow(EarlierMarrow):
    """A stand-alone earlier marrow (e.g. after a transplant, a regenerating marrow, an MRD-only
    sample): the facts of an on-study assessment."""

    type: Literal["marrow"] = Field(description="Entry type discriminator: marrow.")
    date: dt.date = Field(description="Date of the marrow (ISO date).")
    id: str | None = Field(None, max_length=64, description="Identifier of the marrow.")


HistoryEntry = Annotated[Union[Cycle, Remission, Relapse, Hsct, Dli, HistoryMarrow],
                         Field(discriminator="type")]
HISTORY_TYPES = ("cycle", "remission", "relapse", "hsct", "dli", "marrow")


def entry_date(entry: Cycle | Remission | Relapse | Hsct | Dli | HistoryMarrow) -> dt.date:
    """The date an entry is placed at on the timeline (a cycle's start date)."""
    return entry.start_date if isinstance(entry, Cycle) else entry.date
