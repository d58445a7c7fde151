"""Safety data: lab results as reported, adverse events, death.

Lab values keep the unit as reported: the CTCAE grader applies the cut-off published for that
unit (mass and molar cut-offs are rounded separately), so nothing is converted here.
"""

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any, Literal, Union

from pydantic import Field, PlainValidator, StringConstraints, WithJsonSchema, model_validator

from engine.record.base import FieldError, RecordModel
from engine.record.units import Number, bounded

LAB_TEST_RE = r"^[a-z][a-z0-9_]*$"
# A study drug as the protocol names it (rules/_trials/<trial>/protocol.yaml `study_drugs`), and a
# relatedness level as the trial's attribution pack declares it (checked there, not here).
DRUG_RE = r"^[a-z0-9][a-z0-9_.-]*$"
DrugName = Annotated[str, StringConstraints(pattern=DRUG_RE, max_length=64)]
AttributionLevel = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z_]*$", max_length=32)]


class Lab(RecordModel):
    """One lab result, value and unit as reported, with the reference range of that record."""

    id: str = Field(max_length=64, description="Identifier of the result (unique).")
    date: dt.date = Field(description="Sample date (ISO date).")
    test: str = Field(max_length=40, pattern=LAB_TEST_RE, description=(
        "Analyte, a controlled lower-case name: one of the `lab.test` values the lab map pack "
        "declares (it maps each to CTCAE terms); a name no pack maps is not gradable, with the "
        "reason."))
    value: Number = Field(description="Result, in `unit` as reported.")
    unit: str = Field(min_length=1, max_length=32, description=(
        "Unit as reported, e.g. 10^9/L, cells/mm3, g/L, g/dL, mg/dL, mmol/L, umol/L, U/L. "
        "Not converted."))
    lln: Number | None = Field(None, description="Lower limit of normal, in `unit`.")
    uln: Number | None = Field(None, description="Upper limit of normal, in `unit`.")
    baseline: Number | None = Field(None, description=(
        "Baseline value of this analyte, in `unit` (for baseline-relative CTCAE grades)."))
    qualifiers: dict[str, bool] = Field(default_factory=dict, description=(
        "Clinical qualifiers of the result that a CTCAE pack reads, name -> true/false, named as "
        "the pack declares them (e.g. fasting, symptomatic). Absent = not recorded."))

    @model_validator(mode="after")
    def _plausible(self) -> "Lab":
        problem = lab_range_problem(self.value, self.lln, self.uln, self.baseline)
        if problem:
            raise FieldError(*problem)
        for name in self.qualifiers:
            if not name.replace("_", "").isalnum() or not name[:1].isalpha():
                raise FieldError(f"qualifiers.{name}", "qualifier names are letters, digits and _",
                                 expected="a name like fasting")
        return self


def lab_range_problem(value: Decimal | None, lln: Decimal | None, uln: Decimal | None,
                      baseline: Decimal | None) -> tuple[str, str, str] | None:
    """(field, problem, expectation) when a lab result cannot be real, else None. Shared by the
    subject record and the CSV listing reader, so both refuse the same values: a result, a
    limit of normal or a baseline is never negative, an upper limit of normal is never zero
    (every multiple of it would be "above"), and the lower limit is not above the upper."""
    for name, v in (("value", value), ("lln", lln), ("uln", uln), ("baseline", baseline)):
        if v is not None and v < 0:
            return name, f"impossible negative {name} {v}", f"{name} >= 0"
    if uln is not None and uln == 0:
        return "uln", "an upper limit of normal of 0 is impossible", "uln > 0"
    if lln is not None and uln is not None and lln > uln:
        return "lln", f"lln {lln} above uln {uln}", "lln <= uln"
    return None


def _fact_value(value: Any) -> bool | Decimal | str:
    if isinstance(value, bool) or isinstance(value, str):
        return value
    if isinstance(value, (int, float, Decimal)):
        number = Decimal(str(value))
        if not number.is_finite():
            raise ValueError("a clinical fact must be a finite number")
        return bounded(number)
    raise ValueError(f"a clinical fact is a number, true/false or text, got "
                     f"{type(value).__name__}")


FactValue = Annotated[Union[bool, Decimal, str], PlainValidator(_fact_value),
                      WithJsonSchema({"type": ["number", "boolean", "string"]})]


class AdverseEvent(RecordModel):
    """One adverse event as reported, with the clinical facts a grader may read."""

    id: str = Field(max_length=64, description="Identifier of the event (unique).")
    term: str = Field(min_length=1, max_length=200, description=(
        "CTCAE term as reported: its display name or a wording the lab map pack's aliases read."))
    onset_date: dt.date = Field(description="Onset date (ISO date).")
    resolution_date: dt.date | None = Field(None, description=(
        "Resolution date (ISO date); null = ongoing."))
    reported_grade: int | None = Field(None, ge=1, le=5, description=(
        "Grade reported by the site (CTCAE 1-5)."))
    serious: bool | None = Field(None, description="Serious adverse event (true/false).")
    outcome: Literal["recovered", "recovering", "not_recovered", "recovered_with_sequelae",
                     "fatal", "unknown"] | None = Field(None, description=(
        "recovered|recovering|not_recovered|recovered_with_sequelae|fatal|unknown."))
    facts: dict[str, FactValue] = Field(default_factory=dict, description=(
        "Clinical facts for grading, name -> number|true/false|text, named as the grading pack "
        "declares them; units in the name, e.g. temperature_c (degrees C)."))
    attribution: dict[DrugName, AttributionLevel | None] | None = Field(None, description=(
        "Relatedness per study drug, {<drug>: <level>}: the drugs are the protocol's study_drugs "
        "(another name is refused), the levels those its attribution pack declares; null or "
        "absent = not recorded."))

    @model_validator(mode="after")
    def _ordered(self) -> "AdverseEvent":
        if self.resolution_date and self.resolution_date < self.onset_date:
            raise FieldError("resolution_date", f"resolution {self.resolution_date} before "
                             f"onset {self.onset_date}", expected=f"on or after {self.onset_date}")
        for name in self.facts:
            if not name.replace("_", "").isalnum() or not name[:1].isalpha():
                raise FieldError(f"facts.{name}", "fact names are letters, digits and _",
                                 expected="a name like temperature_c")
        return self


class Death(RecordModel):
    """Death, with the facts the death-in-aplasia categories need."""

    date: dt.date = Field(description="Date of death (ISO date).")
    cause: str | None = Field(None, max_length=300, description="Cause (free text).")
    in_aplasia: bool | None = Field(None, description=(
        "Cytopenic with an aplastic/hypoplastic marrow, no persistent leukemia (true/false)."))
    marrow_within_7d: bool | None = Field(None, description=(
        "A marrow was examined within 7 days before death (true/false)."))
    persistent_leukemia: bool | None = Field(None, description=(
        "Persistent leukemia at death (true/false)."))
