"""Who the subject is: age or birth date, sex, pregnancy, performance status, size; diagnosis."""

import datetime as dt
from typing import Literal

from pydantic import Field, model_validator

from engine.record.base import FieldError, RecordModel
from engine.record.units import Positive


def completed_years(birth_date: dt.date, on: dt.date) -> int:
    """Age in completed years on a date (a birthday counts on the day itself).

    A 29 February birthday is completed on 1 March in common years.
    """
    years = on.year - birth_date.year
    if (on.month, on.day) < (birth_date.month, birth_date.day):
        years -= 1
    return years


class PregnancyTest(RecordModel):
    """One pregnancy test (serum or urine) and its result."""

    date: dt.date = Field(description="Date the sample was taken (ISO date).")
    result: Literal["positive", "negative"] = Field(description="Test result.")


class Demographics(RecordModel):
    """Age, sex, pregnancy status, ECOG and body size at screening."""

    age_years: int | None = Field(None, ge=0, le=130, description=(
        "Age in completed years at consent (years). Give this, or birth_date with the "
        "subject's consent_date; if both are given they must agree."))
    birth_date: dt.date | None = Field(None, description=(
        "Date of birth (ISO date); with consent_date gives the age in completed years."))
    sex: Literal["male", "female"] | None = Field(None, description="Sex (male|female).")
    childbearing_potential: bool | None = Field(None, description=(
        "Woman of childbearing potential (true/false); null = not recorded."))
    pregnancy_test: PregnancyTest | None = Field(None, description=(
        "Most recent pregnancy test before day 1 (date, positive|negative)."))
    ecog: int | None = Field(None, ge=0, le=5, description="ECOG performance status (0-5).")
    weight_kg: Positive | None = Field(None, le=500, description="Body weight (kg).")
    height_cm: Positive | None = Field(None, le=260, description="Height (cm).")

    @model_validator(mode="after")
    def _sex_consistency(self) -> "Demographics":
        if self.sex == "male" and self.childbearing_potential:
            raise FieldError("childbearing_potential", "a male subject cannot be a woman of "
                             "childbearing potential", expected="false or null for sex male")
        return self


class Diagnosis(RecordModel):
    """The original AML diagnosis."""

    date: dt.date | None = Field(None, description="Date of the initial diagnosis (ISO date).")
    aml: bool | None = Field(None, description="Acute myeloid leukemia confirmed (true/false).")
    apl: bool | None = Field(None, description=(
        "Acute promyelocytic leukemia (APL, PML::RARA) (true/false); exclusion EXC-02."))
    who_subtype: str | None = Field(None, max_length=300, description=(
        "WHO subtype as reported (free text, no unit)."))
    secondary: bool | None = Field(None, description=(
        "Secondary AML, after an antecedent haematological disorder (MDS, MPN) (true/false)."))
    therapy_related: bool | None = Field(None, description=(
        "Therapy-related AML, after cytotoxic therapy or radiation (true/false)."))
