"""Safety facts at the edge: a lab result or an adverse event -> the flat facts the CTCAE,
TLS, attribution and dosing packs read.

Which CTCAE terms a lab test is graded for, and how its unit reads (exact scalings only: cells/mm3
-> x0.001 to 10^9/L, g/L -> g/dL, umol/L -> mmol/L, mEq/L -> mmol/L where exact), is pack data
(rules/lab-terms, read through engine/facts/labmap.py). Mass and molar units are never converted
into each other: the CTCAE pack applies the cut-off published for the reported unit. No threshold
lives here; an unreadable unit leaves `lab.unit` missing and the pack says "not gradable", to
which the reason naming the unit is added.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping

from engine.facts.labmap import LabMap
from engine.record.units import tidy

# CTCAE display names and the trial's words for them -> term ids of the packs
TERM_ALIASES: dict[str, str] = {
    "neutropenia": "neutrophil_count_decreased", "thrombocytopenia": "platelet_count_decreased",
    "leukopenia": "white_blood_cell_decreased", "lymphopenia": "lymphocyte_count_decreased",
    "white_blood_cell_count_decreased": "white_blood_cell_decreased",
    "ast_increased": "aspartate_aminotransferase_increased",
    "alt_increased": "alanine_aminotransferase_increased",
    "bilirubin_increased": "blood_bilirubin_increased",
    "hypocalcemia_(ionized)": "hypocalcemia_ionized", "hypercalcemia_(ionized)": "hypercalcemia_ionized",
    "pneumonia": "lung_infection", "hemorrhage": "bleeding", "haemorrhage": "bleeding",
    "tls": "tumor_lysis_syndrome", "tumour_lysis_syndrome": "tumor_lysis_syndrome",
    "diarrhoea": "diarrhea", "anaemia": "anemia",
}
CLINICAL_TERMS = ("febrile_neutropenia", "sepsis", "lung_infection", "heart_failure",
                  "tumor_lysis_syndrome", "nausea", "vomiting", "diarrhea", "constipation", "bleeding")


def term_id(text: str) -> str:
    """'Neutrophil count decreased' / 'Neutropenia' -> 'neutrophil_count_decreased'."""
    key = "_".join(str(text).strip().lower().replace("-", " ").split())
    return TERM_ALIASES.get(key, key)


def number(raw: Any) -> Decimal | None:
    """A Decimal from the written form (so 0.1 stays 0.1); '' / None -> None; else ValueError."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if isinstance(raw, bool):
        raise ValueError("a boolean is not a number")
    try:
        d = Decimal(str(raw).strip())
    except InvalidOperation:
        raise ValueError(f"{raw!r} is not a number") from None
    if not d.is_finite():
        raise ValueError(f"{raw!r} is not a finite number")
    return d


@dataclass
class LabFacts:
    """The facts of one lab result for one CTCAE term, and what the edge did to the unit."""
    term: str
    facts: dict[str, Any]
    unit_note: str = ""          # e.g. "unit 'mg/L' not readable for hemoglobin"
    converted: str = ""          # e.g. "g/L -> g/dL (x0.1)"
    sources: dict[str, str] = field(default_factory=dict)
    results: list[Any] = field(default_factory=list)   # the lab-terms evaluation that read the unit


def lab_facts(labmap: LabMap, test: str | None, term: str, value: Any, unit: str | None, lln: Any = None,
              uln: Any = None, baseline: Any = None, qualifiers: Mapping[str, bool] | None = None,
              source: str = "") -> LabFacts:
    """Facts `lab.*` for grading `term` from a result of lab test `test` (the term's own test when
    None); numbers as Decimal, the exact unit scaling of the lab-terms pack applied."""
    test = test or labmap.analyte_of.get(term)
    nums = {"value": number(value), "lln": number(lln), "uln": number(uln), "baseline": number(baseline)}
    unit_s = (unit or "").strip()
    note, converted, canonical, results = "", "", None, []
    if test is None:
        note = f"no lab test is mapped to {term} (lab-terms pack)"
    else:
        reading = labmap.reading(test, unit_s)
        if reading.result is not None:
            results.append(reading.result)
        if reading.unit is None:
            note = (f"no unit given for {test}" if not unit_s else
                    f"unit {unit_s!r} not readable for {test} (lab-terms: {labmap.family(test)} units)")
        else:
            canonical, factor = reading.unit, reading.factor
            if factor is not None and factor != 1:
                nums = {k: (tidy(v * factor) if v is not None else None) for k, v in nums.items()}
                converted = f"{unit_s} -> {canonical} (x{factor})"
    facts: dict[str, Any] = {"lab.term": term}
    for k, v in nums.items():
        if v is not None:
            facts[f"lab.{k}"] = v
    if canonical:
        facts["lab.unit"] = canonical
    for q, v in (qualifiers or {}).items():
        if isinstance(v, bool):
            facts[f"lab.{q}"] = v
    sources = {k: source for k in facts} if source else {}
    return LabFacts(term, facts, note, converted, sources, results)


def ae_facts(ae: Any, declared: set[str], death_date: dt.date | None = None) -> dict[str, Any]:
    """Facts `ae.*` of one adverse event for the clinical CTCAE pack (only declared names)."""
    facts: dict[str, Any] = {"ae.term": term_id(ae.term)}
    for name, v in (ae.facts or {}).items():
        key = f"ae.{name}"
        if key in declared:
            facts[key] = v
    if ae.outcome == "fatal":
        facts["ae.death_attributed"] = True
    elif ae.outcome is not None and ae.outcome != "unknown":
        facts["ae.death_attributed"] = False
    return facts


def attribution_facts(ae: Any, on_study: Any) -> dict[str, Any]:
    """Facts for the ae-attribution pack: dates and investigator relatedness per drug."""
    facts: dict[str, Any] = {"ae.onset_date": ae.onset_date}
    if on_study is not None:
        facts.update(study_dose_facts(on_study))
    att = ae.attribution
    for drug in ("venetoclax", "azacitidine", "homoharringtonine"):
        v = getattr(att, drug, None) if att is not None else None
        if v is not None:
            facts[f"ae.attribution.{drug}"] = v
    return facts


def study_dose_facts(on_study: Any) -> dict[str, Any]:
    """First and last dose dates and whether treatment is ongoing (for treatment emergence);
    an absent value stays absent: a missing last dose is not 'ongoing'."""
    facts: dict[str, Any] = {}
    if on_study is None:
        return facts
    if on_study.first_dose_date:
        facts["study.first_dose_date"] = on_study.first_dose_date
    if on_study.last_dose_date:
        facts["study.last_dose_date"] = on_study.last_dose_date
    if getattr(on_study, "treatment_ongoing", None) is not None:
        facts["study.treatment_ongoing"] = on_study.treatment_ongoing
    return facts


def venetoclax_cycle_facts(cycle: Any) -> dict[str, Any]:
    """Structural facts of one cycle's venetoclax doses for the dosing pack."""
    by_day = {d.day: d.dose_mg for d in cycle.venetoclax_doses}
    facts: dict[str, Any] = {}
    for day in (1, 2, 3):
        if day in by_day:
            facts[f"ven.dose_day{day}"] = by_day[day]
    later = [v for d, v in by_day.items() if d > 3 and v > 0]
    if later:
        facts["ven.min_dose_after_day3"] = min(later)
        facts["ven.max_dose_after_day3"] = max(later)
    if by_day:
        facts["ven.max_dose"] = max(by_day.values())
        given = [d for d, v in by_day.items() if v > 0]
        if given:
            facts["ven.last_day"] = max(given)
    inh = cycle.cyp3a_inhibitor
    facts["ven.cyp3a_strength"] = inh.strength if inh else "none"
    if inh:
        facts["ven.cyp3a_drug"] = inh.name.strip().lower()
    return facts


TLS_ANALYTES = {"uric_acid": "max", "potassium": "max", "phosphate": "max", "calcium_corrected": "min",
                "creatinine": "max"}
TLS_FACT = {"uric_acid": "uric_acid", "potassium": "potassium", "phosphate": "phosphate",
            "calcium_corrected": "calcium", "creatinine": "creatinine"}


# Adverse-event terms that are the clinical features of Cairo-Bishop clinical TLS besides
# creatinine (terminology, not thresholds): cardiac arrhythmia or sudden death, and seizure.
TLS_CLINICAL_TERMS: dict[str, frozenset[str]] = {
    "arrhythmia": frozenset({"arrhythmia", "cardiac_arrhythmia", "atrial_fibrillation", "atrial_flutter",
                             "ventricular_arrhythmia", "ventricular_tachycardia", "ventricular_fibrillation",
                             "supraventricular_tachycardia", "cardiac_arrest", "sudden_death"}),
    "seizure": frozenset({"seizure"}),
}


def tls_clinical_facts(adverse_events: list[Any], lo: dt.date, hi: dt.date) -> dict[str, Any]:
    """tls.arrhythmia / tls.seizure: an adverse event with such a term starting in the window.
    The AE listing is taken as complete (every AE from the first dose is recorded), so no such
    event in the window is 'false'; the record does not distinguish 'not collected'."""
    facts: dict[str, Any] = {}
    for feature, terms in TLS_CLINICAL_TERMS.items():
        facts[f"tls.{feature}"] = any(term_id(ae.term) in terms and ae.onset_date is not None
                                      and lo <= ae.onset_date <= hi for ae in adverse_events)
    return facts


def tls_window_facts(labs: list[Any], start: dt.date, days_before: int, days_after: int,
                     day: dt.date | None = None, labmap: LabMap | None = None) -> dict[str, Any]:
    """Worst value of each TLS analyte within [start - before, start + after] (or on one `day`),
    baseline = last value before `start`; units read as for CTCAE (exact scalings only)."""
    lo, hi = start - dt.timedelta(days=days_before), start + dt.timedelta(days=days_after)
    facts: dict[str, Any] = {}
    for analyte, worst in TLS_ANALYTES.items():
        name = TLS_FACT[analyte]
        rows = []
        for lab in labs:
            if lab.test != analyte:
                continue
            reading = labmap.reading(analyte, lab.unit)
            if reading.unit is None or reading.factor is None:
                continue
            rows.append((lab, reading.unit, reading.factor))
        in_window = [r for r in rows if lo <= r[0].date <= hi and (day is None or r[0].date == day)]
        if in_window:
            pick = (max if worst == "max" else min)(in_window, key=lambda r: r[0].value * r[2])
            lab, canonical, factor = pick
            facts[f"tls.{name}"] = tidy(lab.value * factor)
            if analyte in ("uric_acid", "phosphate", "calcium_corrected"):
                facts[f"tls.{name}_unit"] = canonical
            if analyte == "creatinine" and lab.uln is not None:
                facts["tls.creatinine_uln"] = lab.uln
            before = [r for r in rows if r[0].date < start and r[1] == canonical]
            if before and analyte != "creatinine":
                b = max(before, key=lambda r: r[0].date)
                facts[f"tls.{name}_baseline"] = tidy(b[0].value * b[2])
    return facts
