"""Screening: the facts the exclusion criteria read (GVHD, coagulation, heart, infection,
organ labs, medications, other conditions). No threshold lives here: the rule packs hold them.
"""

import datetime as dt
from typing import Literal

from pydantic import Field, model_validator

from engine.record.base import FieldError, RecordModel, check_span
from engine.record.units import Count, NonNegative, Percent, Positive

class Steroid(RecordModel):
    """The corticosteroid currently given (for the GVHD criterion, EXC-04)."""

    drug: Literal["prednisone", "methylprednisolone", "dexamethasone", "hydrocortisone",
                  "budesonide_topical", "other"] = Field(description=(
        "Steroid: prednisone|methylprednisolone|dexamethasone|hydrocortisone|"
        "budesonide_topical|other."))
    dose_mg_per_day: NonNegative | None = Field(None, le=5000, description=(
        "Total daily dose of this drug (mg/day, as given; not converted to prednisone here)."))
    route: Literal["systemic", "topical"] | None = Field(None, description=(
        "Route: systemic|topical (topical/non-absorbed steroids are not systemic)."))


class Gvhd(RecordModel):
    """Graft-versus-host disease status at screening."""

    present: bool | None = Field(None, description="GVHD present at screening (true/false).")
    kind: Literal["acute", "chronic", "none"] | None = Field(None, description=(
        "acute|chronic|none."))
    steroid: Steroid | None = Field(None, description=(
        "Current corticosteroid: drug, dose_mg_per_day (mg/day), route."))
    other_therapies: list[str] | None = Field(None, description=(
        "Other current GVHD-directed or immunosuppressive therapies, lower-case names, e.g. "
        "ruxolitinib, ecp, msc, basiliximab, belumosudil, calcineurin_inhibitor. [] = none; "
        "absent or null = not collected (unknown, never 'none')."))
    cni_indication: Literal["prophylaxis", "gvhd_treatment"] | None = Field(None, description=(
        "Why a calcineurin inhibitor is given: prophylaxis|gvhd_treatment."))

    @model_validator(mode="after")
    def _consistent(self) -> "Gvhd":
        if self.present is False and self.kind in ("acute", "chronic"):
            raise FieldError("kind", f"kind {self.kind} with present false",
                             expected="kind none, or present true")
        if self.present is True and self.kind == "none":
            raise FieldError("kind", "kind none with present true",
                             expected="acute or chronic")
        return self


class Coagulation(RecordModel):
    """Coagulation status at screening (EXC-05)."""

    dic_isth_score: int | None = Field(None, ge=0, le=8, description=(
        "ISTH overt-DIC score (points, 0-8)."))
    bleeding_from_coagulopathy: bool | None = Field(None, description=(
        "Clinically relevant bleeding attributed to a coagulopathy (true/false)."))
    pt_s: Positive | None = Field(None, le=300, description="Prothrombin time (seconds).")
    inr: Positive | None = Field(None, le=30, description="INR (ratio, no unit).")
    fibrinogen_g_l: NonNegative | None = Field(None, le=20, description="Fibrinogen (g/L).")
    d_dimer: NonNegative | None = Field(None, description=(
        "D-dimer, in the unit reported by the site (mg/L FEU typically); not compared here."))


class Cardiac(RecordModel):
    """Cardiac status at screening (EXC-06)."""

    lvef_pct: Percent | None = Field(None, description="Left ventricular ejection fraction (%).")
    nyha_class: int | None = Field(None, ge=1, le=4, description="NYHA heart-failure class (1-4).")
    mi_within_6_months: bool | None = Field(None, description=(
        "Myocardial infarction within 6 months before screening (true/false)."))
    unstable_angina: bool | None = Field(None, description="Unstable angina (true/false).")
    uncontrolled_arrhythmia: bool | None = Field(None, description=(
        "Uncontrolled arrhythmia (true/false)."))


class Infection(RecordModel):
    """Infection status at screening (EXC-07)."""

    active: bool | None = Field(None, description="Active infection (true/false).")
    uncontrolled: bool | None = Field(None, description=(
        "Uncontrolled despite therapy, investigator judgement (true/false)."))
    description: str | None = Field(None, max_length=500, description="Free text.")


class OrganLab(RecordModel):
    """One organ-function lab: {value, unit, uln} as reported, or {x_uln} given directly."""

    value: NonNegative | None = Field(None, description="Result in `unit` as reported.")
    unit: str | None = Field(None, max_length=32, description=(
        "Unit as reported (e.g. umol/L, mg/dL, U/L); uln is in the same unit."))
    uln: Positive | None = Field(None, description="Upper limit of normal, in `unit`.")
    x_uln: NonNegative | None = Field(None, description=(
        "Result as a multiple of the ULN (ratio, no unit), when the site reports only that."))

    @model_validator(mode="after")
    def _one_form(self) -> "OrganLab":
        if self.x_uln is not None:
            if self.value is not None or self.uln is not None:
                raise FieldError("x_uln", "give either {value, unit, uln} or {x_uln}, not both",
                                 expected="one form")
            return self
        missing = [n for n in ("value", "unit", "uln") if getattr(self, n) is None]
        if missing and self.value is not None:
            raise FieldError(missing[0], f"{missing[0]} is missing",
                             expected="value, unit and uln together")
        if self.value is None:
            raise FieldError("value", "an organ lab needs {value, unit, uln} or {x_uln}",
                             expected="value, unit and uln, or x_uln")
        return self


class OrganLabs(RecordModel):
    """Organ-function labs at screening and the cause the investigator attributes."""

    bilirubin: OrganLab | None = Field(None, description=(
        "Total bilirubin: {value, unit, uln} or {x_uln}."))
    ast: OrganLab | None = Field(None, description="AST: {value, unit, uln} or {x_uln}.")
    alt: OrganLab | None = Field(None, description="ALT: {value, unit, uln} or {x_uln}.")
    creatinine: OrganLab | None = Field(None, description=(
        "Serum creatinine: {value, unit (mg/dL or umol/L), uln} or {x_uln}."))
    creatinine_clearance_ml_min: NonNegative | None = Field(None, le=1000, description=(
        "Creatinine clearance as reported (mL/min); if absent, an eligibility pack may compute it "
        "from age, weight, sex and serum creatinine (Cockcroft-Gault in its `from:`)."))
    bilirubin_cause: Literal["leukemic_involvement", "gilbert", "other"] | None = Field(
        None, description="Attributed cause of a raised bilirubin.")
    transaminase_cause: Literal["leukemic_involvement", "other"] | None = Field(
        None, description="Attributed cause of raised AST/ALT.")


class ConcomitantMedication(RecordModel):
    """A concomitant medication (for CYP3A interactions with a study drug)."""

    name: str = Field(max_length=200, description="Drug name (free text).")
    cyp3a: Literal["strong", "moderate", "weak", "none"] | None = Field(None, description=(
        "CYP3A inhibitor strength: strong|moderate|weak|none."))
    start_date: dt.date | None = Field(None, description="Start date (ISO date).")
    end_date: dt.date | None = Field(None, description="End date (ISO date); null = ongoing.")

    @model_validator(mode="after")
    def _ordered(self) -> "ConcomitantMedication":
        check_span(self.start_date, self.end_date)
        return self


class OtherCondition(RecordModel):
    """Another medical condition, with the investigator's suitability attestation (EXC-08)."""

    system: Literal["renal", "neurological", "pulmonary", "psychiatric", "endocrine",
                    "metabolic", "immunological", "hepatic", "other"] = Field(description=(
        "Organ system: renal|neurological|pulmonary|psychiatric|endocrine|metabolic|"
        "immunological|hepatic|other."))
    description: str | None = Field(None, max_length=500, description="Free text.")
    unsuitable_for_trial: bool | None = Field(None, description=(
        "Investigator attests the condition makes the subject unsuitable (true/false)."))


class Screening(RecordModel):
    """Everything measured or attested at screening."""

    date: dt.date | None = Field(None, description="Screening date (ISO date).")
    gvhd: Gvhd | None = Field(None, description="GVHD status (EXC-04).")
    coagulation: Coagulation | None = Field(None, description="Coagulation (EXC-05).")
    cardiac: Cardiac | None = Field(None, description="Cardiac status (EXC-06).")
    infection: Infection | None = Field(None, description="Infection status (EXC-07).")
    labs: OrganLabs | None = Field(None, description=(
        "Organ-function labs (bilirubin, AST, ALT, creatinine, CrCl) and causes (EXC-08)."))
    wbc_10e9_l: Count | None = Field(None, description=(
        "White blood cells (10^9/L; or {value, unit} converted exactly)."))
    concomitant_medications: list[ConcomitantMedication] = Field(
        default_factory=list, description="Concomitant medications with CYP3A strength.")
    prior_venetoclax: bool | None = Field(None, description=(
        "Prior venetoclax-based treatment (true/false); also derivable from history cycles "
        "with venetoclax_based true (EXC-01)."))
    other_conditions: list[OtherCondition] = Field(default_factory=list, description=(
        "Other conditions with the investigator's attestation (EXC-08)."))
