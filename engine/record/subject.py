"""The root of the subject record and the checks that span its parts (dates, age)."""

import datetime as dt
from decimal import Decimal
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, Field, model_validator

from engine.record.assessments import OnStudy
from engine.record.base import FieldError, RecordModel, check_unique
from engine.record.demographics import Demographics, Diagnosis, completed_years
from engine.record.findings import Finding
from engine.record.follow_up import FollowUp
from engine.record.genetics import Genetics
from engine.record.history import HistoryEntry
from engine.record.safety import AdverseEvent, Death, Lab
from engine.record.screening import Screening


class SubjectRecord(RecordModel):
    """One subject of the VAH trial (NCT04424147): validated, canonical units inside.

    Blood counts are Decimal in 10^9/L, haemoglobin in g/dL, blasts and MRD in %; lab results
    keep the unit as reported. Dates are ISO dates. Unknown is null, never false or zero.
    """

    subject_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                            description="Subject identifier (letters, digits, _ . -).")
    trial: str | None = Field(None, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$", description=(
        "The trial this subject belongs to (its protocol id, e.g. rules/_trials/<id>); absent: any trial."))
    site: str | None = Field(None, max_length=100, description="Site (centre) identifier.")
    consent_date: dt.date | None = Field(None, description=(
        "Date of written informed consent (ISO date); the age is taken on this day."))
    demographics: Demographics = Field(default_factory=Demographics, description=(
        "Age or birth date, sex, childbearing potential, pregnancy test, ECOG, weight, height."))
    diagnosis: Diagnosis = Field(default_factory=Diagnosis, description=(
        "Initial diagnosis: date, aml, apl, WHO subtype, secondary/therapy-related."))
    genetics: Genetics | None = Field(None, description=(
        "Karyotype and mutations, with the timepoint of the sample."))
    treatment_history: list[HistoryEntry] = Field(default_factory=list, description=(
        "Prior therapy timeline: entries typed cycle|remission|relapse|hsct|dli."))
    screening: Screening | None = Field(None, description="Screening facts for the exclusions.")
    on_study: OnStudy | None = Field(None, description="Trial treatment and marrow assessments.")
    labs: list[Lab] = Field(default_factory=list, description=(
        "Lab results as reported (value, unit, lln, uln, baseline)."))
    adverse_events: list[AdverseEvent] = Field(default_factory=list, description=(
        "Adverse events with grading facts and attribution."))
    follow_up: FollowUp | None = Field(None, description=(
        "After the first dose: {events: [hsct|dli entries]} (transplant, donor lymphocyte infusion)."))
    findings: list[Finding] = Field(default_factory=list, description=(
        "Coded findings for what only one trial asks (name, value, unit, date, source): the facts "
        "`finding.<name>` (docs/writing-a-trial.md)."))
    death: Death | None = Field(None, description="Death, if the subject died.")
    last_contact_date: dt.date | None = Field(None, description=(
        "Last date the subject was known alive (or date of death) (ISO date)."))
    sources: dict[str, str] | None = Field(None, description=(
        "Where each value came from when the record was built from another source: dotted field -> "
        "source, e.g. an SDTM import's `LB 01-701-1015 LBSEQ 17 LBORRES` (docs/sdtm.md). Facts cite it "
        "as their source instead of `file#field`."))

    @model_validator(mode="after")
    def _cross_checks(self) -> "SubjectRecord":
        _check_age(self)
        _check_unique_ids(self)
        dates = list(iter_dates(self))
        _check_timeline(self, dates)
        birth = self.demographics.birth_date
        if birth:
            for path, when in dates:
                if path != "demographics.birth_date" and when < birth:
                    raise FieldError(path, f"dated {when}, before the birth date {birth}",
                                     expected=f"a date on or after {birth}")
        diagnosed = self.diagnosis.date
        if diagnosed:
            for path, when in dates:
                if path.startswith(("treatment_history", "on_study")) and when < diagnosed:
                    raise FieldError(path, f"dated {when}, before the diagnosis {diagnosed}",
                                     expected=f"a date on or after {diagnosed}")
        if self.death:
            died = self.death.date
            for path, when in dates:
                after_death_impossible = path.startswith(("on_study", "labs[", "follow_up")) or (
                    path.startswith("adverse_events[") and path.endswith("onset_date"))
                if after_death_impossible and when > died:
                    raise FieldError(path, f"dated {when}, after the death {died}",
                                     expected=f"a date on or before {died}")
        _check_follow_up(self)
        return self

    def age_at_consent(self) -> int | None:
        """Completed years at consent: age_years, or computed from birth_date (A17)."""
        return age_at_consent(self)


def age_at_consent(record: SubjectRecord) -> int | None:
    """Completed years at consent from age_years or birth_date + consent_date; None if unknown."""
    demo = record.demographics
    if demo.age_years is not None:
        return demo.age_years
    if demo.birth_date and record.consent_date:
        return completed_years(demo.birth_date, record.consent_date)
    return None


def _check_age(record: SubjectRecord) -> None:
    demo = record.demographics
    if demo.birth_date and record.consent_date:
        computed = completed_years(demo.birth_date, record.consent_date)
        if demo.age_years is not None and demo.age_years != computed:
            raise FieldError("demographics.age_years", f"age_years {demo.age_years} disagrees "
                             f"with birth date {demo.birth_date} at consent "
                             f"{record.consent_date} ({computed} completed years)",
                             expected=f"{computed} or leave age_years out")


def _check_follow_up(record: SubjectRecord) -> None:
    """Follow-up events lie after the first dose and on or before the last contact."""
    events = record.follow_up.events if record.follow_up else []
    first = record.on_study.first_dose_date if record.on_study else None
    last = record.last_contact_date
    for i, e in enumerate(events):
        if first and e.date < first:
            raise FieldError(f"follow_up.events[{i}].date", f"dated {e.date}, before the first dose {first}",
                             expected=f"a date on or after {first} (earlier therapy belongs in treatment_history)")
        if last and e.date > last:
            raise FieldError(f"follow_up.events[{i}].date", f"dated {e.date}, after the last contact {last}",
                             expected=f"a date on or before {last}")


def _latest_possible_date() -> dt.date:
    """Tomorrow in UTC: no record can hold a later date (a day of slack for time zones ahead
    of UTC). Read per record, so a long run crossing midnight stays right."""
    return dt.datetime.now(dt.timezone.utc).date() + dt.timedelta(days=1)


def _check_timeline(record: SubjectRecord, dates: list[tuple[str, dt.date]]) -> None:
    """Refuse a timeline that cannot have happened, naming the field: a date in the future,
    the last contact or death before consent, treatment before consent, cycle n+1 starting on or
    before cycle n."""
    latest = _latest_possible_date()
    for path, when in dates:
        if when > latest:
            raise FieldError(path, f"dated {when}, in the future", expected=f"a date on or before {latest}")
    consent = record.consent_date
    if consent:
        if record.last_contact_date and record.last_contact_date < consent:
            raise FieldError("last_contact_date", f"last contact {record.last_contact_date} before "
                             f"consent {consent}", expected=f"a date on or after {consent}")
        if record.death and record.death.date < consent:
            raise FieldError("death.date", f"death {record.death.date} before consent {consent}",
                             expected=f"a date on or after {consent}")
        for path, when in dates:
            if path.startswith("on_study.") and when < consent and not path.startswith("on_study.assessments"):
                raise FieldError(path, f"trial treatment dated {when}, before consent {consent}",
                                 expected=f"a date on or after {consent}")
    cycles = sorted(((c.number, c.start_date, i) for i, c in enumerate(record.on_study.cycles))
                    if record.on_study else [])
    for (n0, d0, _), (n1, d1, i1) in zip(cycles, cycles[1:]):
        if d1 <= d0:
            raise FieldError(f"on_study.cycles[{i1}].start_date", f"cycle {n1} starts {d1}, not after "
                             f"cycle {n0} ({d0})", expected=f"a date after {d0}")


def _check_unique_ids(record: SubjectRecord) -> None:
    for name, items in (("labs", record.labs), ("adverse_events", record.adverse_events)):
        check_unique((item.id for item in items), f"{name}[].id", "id {v!r} used twice",
                     expected="unique ids")


def iter_dates(model: BaseModel, prefix: str = "") -> Iterator[tuple[str, dt.date]]:
    """Every date in a record with its dotted path (lists as [i]), in field order."""
    out: list[tuple[str, dt.date]] = []
    _collect(model, prefix, out)
    return iter(out)


_SCALARS = (str, int, float, bool, Decimal, type(None))


def _collect(model: BaseModel, prefix: str, out: list[tuple[str, dt.date]]) -> None:
    # a record's fields in declaration order (pydantic keeps them in __dict__ in that order);
    # paths are spelled only for dates and containers: this runs on every subject loaded
    for name, value in model.__dict__.items():
        if isinstance(value, _SCALARS):
            continue
        _walk(value, prefix + name, out)


def _walk(value: Any, path: str, out: list[tuple[str, dt.date]]) -> None:
    if isinstance(value, dt.date):
        out.append((path, value))
    elif isinstance(value, BaseModel):
        _collect(value, path + ".", out)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if not isinstance(item, _SCALARS):
                _walk(item, f"{path}[{i}]", out)