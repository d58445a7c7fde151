"""Treatment on the trial: dosing by cycle and the marrow assessments (with blood counts).

Counts are stored in 10^9/L, haemoglobin in g/dL, blasts and MRD in % (see units.py).
"""

import datetime as dt
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from engine.record.base import FieldError, RecordModel, check_span, check_unique, suffix_alias
from engine.record.safety import DRUG_RE, DrugName
from engine.record.units import Count, Hemoglobin, NonNegative, Percent, Positive


class DailyDose(RecordModel):
    """The dose of one study drug given on one day of a cycle (the dosing pack checks the range)."""

    day: int = Field(ge=1, le=60, description="Cycle day (1 = first day of the cycle).")
    dose_mg: NonNegative = Field(le=100000, description="Dose given that day (mg; 0 = none given).")


DOSES_SUFFIX = "_doses"     # `<drug>_doses: [...]` is read as `doses: {<drug>: [...]}` (the first records' shape)


class Cyp3aInhibitor(RecordModel):
    """A CYP3A and/or P-gp inhibitor given with a study drug (medication class data the dosing pack
    reads). Without dates it covers the whole cycle; with them, only the days from start_date to
    end_date."""

    name: str = Field(max_length=200, description=(
        "Drug name as given (the dosing pack reads it lower case, e.g. to apply a drug's own label dose)."))
    strength: Literal["strong", "moderate", "weak", "none"] = Field(description=(
        "CYP3A inhibitor strength: strong|moderate|weak|none (none: a P-gp inhibitor only)."))
    pgp: bool | None = Field(None, description=(
        "Also a P-gp inhibitor (true/false); null = not recorded."))
    start_date: dt.date | None = Field(None, description=(
        "First day given (ISO date); null = from day 1 of the cycle."))
    end_date: dt.date | None = Field(None, description=(
        "Last day given (ISO date), which may fall in the next cycle; null = ongoing through "
        "this cycle."))

    @model_validator(mode="after")
    def _ordered(self) -> "Cyp3aInhibitor":
        check_span(self.start_date, self.end_date)
        return self


def _doses_alias_schema(schema: dict[str, Any], cls: type) -> None:
    """`<drug>_doses: [...]` in the JSON Schema, with the very list schema of `doses` values (the
    generator's DailyDose definition, so the alias is spelled as strictly as `doses`)."""
    lists = schema["properties"]["doses"]["patternProperties"]
    schema["patternProperties"] = {f"{DRUG_RE[:-1]}{DOSES_SUFFIX}$": next(iter(lists.values()))}


class OnStudyCycle(RecordModel):
    """One cycle of trial treatment."""

    # the `<drug>_doses` alias, in the JSON Schema too (keys matching the pattern are not "additional")
    model_config = ConfigDict(**RecordModel.model_config, json_schema_extra=_doses_alias_schema)

    number: int = Field(ge=1, le=50, description="Cycle number (1, 2, ...).")
    start_date: dt.date = Field(description="Day 1 of the cycle (ISO date).")
    doses: dict[DrugName, list[DailyDose]] = Field(default_factory=dict, description=(
        "Daily doses per study drug: {<drug>: [{day, dose_mg (mg)}]}; the drugs are the protocol's "
        "study_drugs. `<drug>_doses: [{day, dose_mg}]` beside it is read as doses[<drug>]."),
    )
    cyp3a_inhibitor: Cyp3aInhibitor | None = Field(None, description=(
        "Concomitant CYP3A inhibitor during the cycle: {name, strength, pgp, start_date, end_date}."))
    inhibitors: list[Cyp3aInhibitor] = Field(default_factory=list, description=(
        "Further CYP3A / P-gp inhibitors with their dates: [{name, strength, pgp, start_date, "
        "end_date}] (each checked day by day against the doses of the drug the dosing pack checks)."))

    @model_validator(mode="before")
    @classmethod
    def _per_drug_keys(cls, data: Any) -> Any:
        """`<drug>_doses: [...]` -> doses[<drug>] (documented alias: docs/subject-record.md)."""
        return suffix_alias(data, DOSES_SUFFIX, "doses", "doses of")

    @model_validator(mode="after")
    def _days_unique(self) -> "OnStudyCycle":
        for drug, listed in self.doses.items():
            check_unique((dose.day for dose in listed), f"doses.{drug}[].day", "day {v} listed twice",
                         expected="one dose per day")
        return self


class Marrow(RecordModel):
    """Bone marrow morphology of one assessment."""

    adequate: bool | None = Field(None, description=(
        "Sample adequate for evaluation (true/false); an inadequate marrow is NOT_EVALUABLE."))
    spicules: bool | None = Field(None, description="Spicules present (true/false).")
    cellularity_pct: Percent | None = Field(None, description="Marrow cellularity (%).")
    cells_counted: int | None = Field(None, ge=0, le=100000, description=(
        "Nucleated cells counted on the differential (cells)."))
    blasts_pct: Percent | None = Field(None, description="Bone marrow blasts (%).")
    auer_rods: bool | None = Field(None, description="Blasts with Auer rods seen (true/false).")
    aplastic: bool | None = Field(None, description="Aplastic/hypoplastic marrow (true/false).")
    regenerating_flag: bool | None = Field(None, description=(
        "Pathologist flags a regenerating marrow (blasts may be regenerative) (true/false)."))


class Blood(RecordModel):
    """Peripheral blood at the assessment."""

    anc_10e9_l: Count | None = Field(None, description=(
        "Absolute neutrophil count (10^9/L; or {value, unit}, e.g. cells/uL x 0.001)."))
    platelets_10e9_l: Count | None = Field(None, description=(
        "Platelets (10^9/L; or {value, unit}, e.g. /uL x 0.001)."))
    hb_g_dl: Hemoglobin | None = Field(None, description=(
        "Haemoglobin (g/dL; or {value, unit: g/L} x 0.1)."))
    wbc_10e9_l: Count | None = Field(None, description=(
        "White blood cells (10^9/L; or {value, unit})."))
    blasts_pct: Percent | None = Field(None, description="Circulating blasts (% of leukocytes).")
    blood_blast_sample_dates: list[dt.date] = Field(default_factory=list, description=(
        "Dates of blood samples with blasts present (ISO dates; ELN 2022 blood relapse needs "
        "two samples >= 1 week apart)."))


class Mrd(RecordModel):
    """Measurable residual disease at the assessment."""

    done: bool | None = Field(None, description=(
        "MRD assessed (true/false); not done = unknown, never negative."))
    method: Literal["flow", "qpcr"] | None = Field(None, description="flow|qpcr.")
    value_pct: Percent | None = Field(None, description=(
        "MRD level (%; 0.01 % = 1 cell in 10^4)."))
    sensitivity: Positive | None = Field(None, le=1, description=(
        "Assay sensitivity as a fraction (e.g. 1e-4 = 0.0001)."))

    @model_validator(mode="after")
    def _value_needs_done(self) -> "Mrd":
        if self.done is False and self.value_pct is not None:
            raise FieldError("value_pct", "MRD value given with done false",
                             expected="done true, or no value")
        return self


class AssessmentFacts(RecordModel):
    """What a marrow / blood assessment records, on study or before it (the same facts, so the
    packs judge an earlier marrow as they judge an on-study one)."""

    marrow: Marrow | None = Field(None, description="Marrow morphology; null = no marrow.")
    blood: Blood | None = Field(None, description="Blood counts at the assessment.")
    platelet_transfusion_within_7d: bool | None = Field(None, description=(
        "A platelet transfusion in the 7 days before the count (true/false)."))
    last_platelet_transfusion_date: dt.date | None = Field(None, description=(
        "Date of the last platelet transfusion before the count (ISO date)."))
    rbc_transfusion_dependent: bool | None = Field(None, description=(
        "Red-cell transfusion dependent (true/false)."))
    extramedullary: Literal["none", "persistent", "new"] | None = Field(None, description=(
        "Extramedullary disease: none|persistent|new."))
    mrd: Mrd | None = Field(None, description="MRD: {done, method, value_pct (%), sensitivity}.")


class Assessment(AssessmentFacts):
    """One on-study marrow assessment with the blood counts and transfusion facts beside it."""

    id: str = Field(max_length=64, description="Identifier of the assessment (unique).")
    date: dt.date = Field(description="Date of the marrow (ISO date).")
    cycle: int | None = Field(None, ge=1, le=50, description="Cycle the assessment belongs to.")
    timepoint: str | None = Field(None, max_length=32, pattern=r"^[A-Za-z0-9_]+$", description=(
        "Protocol timepoint, e.g. baseline (the pretreatment marrow, dated on or before the "
        "first dose), C1D28, post_C2, unscheduled."))

    @model_validator(mode="after")
    def _transfusion_not_after(self) -> "Assessment":
        last = self.last_platelet_transfusion_date
        if last and last > self.date:
            raise FieldError("last_platelet_transfusion_date", f"{last} is after the "
                             f"assessment date {self.date}", expected=f"on or before {self.date}")
        return self


class Transfusion(RecordModel):
    """One transfusion (a dated record: packs count them in windows before an assessment)."""

    date: dt.date = Field(description="Date of the transfusion (ISO date).")
    product: Literal["rbc", "platelets"] = Field(description="Blood product: rbc|platelets.")
    units: int | None = Field(None, ge=1, le=50, description="Units given (optional).")


class OnStudy(RecordModel):
    """Treatment on the trial."""

    first_dose_date: dt.date | None = Field(None, description="First dose of study drug (ISO date).")
    last_dose_date: dt.date | None = Field(None, description="Last dose of study drug (ISO date).")
    treatment_ongoing: bool | None = Field(None, description=(
        "Study treatment continues at the data cut-off (true: no last dose yet; false: stopped). "
        "Without a last dose date and without this, treatment emergence after day 28 is unknown."))
    cycles: list[OnStudyCycle] = Field(default_factory=list, description="Trial cycles.")
    assessments: list[Assessment] = Field(default_factory=list, description=(
        "Marrow assessments on study."))
    transfusions: list[Transfusion] | None = Field(None, description=(
        "Transfusions from screening on, dated: [{date, product: rbc|platelets, units}]. Absent = not "
        "collected (a pack's count over them stays unknown); [] = none given."))

    @model_validator(mode="after")
    def _consistent(self) -> "OnStudy":
        first, last = self.first_dose_date, self.last_dose_date
        if first and last and last < first:
            raise FieldError("last_dose_date", f"last dose {last} before first dose {first}",
                             expected=f"a date on or after {first}")
        if last and self.treatment_ongoing:
            raise FieldError("treatment_ongoing", f"treatment ongoing with a last dose on {last}",
                             expected="treatment_ongoing false or absent when last_dose_date is given")
        check_unique((c.number for c in self.cycles), "cycles[].number", "cycle {v} listed twice",
                     expected="unique cycle numbers")
        check_unique((a.id for a in self.assessments), "assessments[].id", "assessment id {v!r} used twice",
                     expected="unique ids")
        return self
