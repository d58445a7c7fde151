"""Safety facts at the edge: a lab result or an adverse event -> the flat facts the CTCAE,
TLS, attribution and dosing packs read.

Only exact unit scalings happen here (cells/mm3 = /uL -> x0.001 to 10^9/L; g/L -> g/dL for
haemoglobin; umol/L = mmol/L x 1000; mEq/L = mmol/L for K and Na). Mass and molar units are
never converted into each other: the pack applies the cut-off CTCAE publishes for the reported
unit. No threshold lives here; an unreadable unit leaves `lab.unit` missing and the pack says
"not gradable", to which the reason naming the unit is added.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping

from engine.record.units import COUNT_SCALE, tidy

# analyte (subject record `labs[].test`, CSV `lab_test`) -> (low-direction term, high-direction term)
ANALYTE_TERMS: dict[str, tuple[str | None, str | None]] = {
    "neutrophils": ("neutrophil_count_decreased", None),
    "platelets": ("platelet_count_decreased", None),
    "wbc": ("white_blood_cell_decreased", "leukocytosis"),
    "lymphocytes": ("lymphocyte_count_decreased", None),
    "hemoglobin": ("anemia", None),
    "creatinine": (None, "creatinine_increased"),
    "bilirubin": (None, "blood_bilirubin_increased"),
    "ast": (None, "aspartate_aminotransferase_increased"),
    "alt": (None, "alanine_aminotransferase_increased"),
    "potassium": ("hypokalemia", "hyperkalemia"),
    "calcium_corrected": ("hypocalcemia", "hypercalcemia"),
    "calcium_ionized": ("hypocalcemia_ionized", "hypercalcemia_ionized"),
    "uric_acid": (None, "hyperuricemia"),
    "phosphate": ("hypophosphatemia", None),
    "sodium": ("hyponatremia", None),
}
TERM_ANALYTE: dict[str, str] = {t: a for a, pair in ANALYTE_TERMS.items() for t in pair if t}

# How a unit of each analyte family is read: spelling (lower case, no spaces) -> (canonical, factor)
_MOLAR = {"mmol/l": ("mmol/L", Decimal(1)), "umol/l": ("mmol/L", Decimal("0.001"))}
_MASS = {"mg/dl": ("mg/dL", Decimal(1))}
UNIT_FAMILIES: dict[str, dict[str, tuple[str, Decimal]]] = {
    "count": {u: ("10^9/L", f) for u, f in COUNT_SCALE.items()},
    "hemoglobin": {"g/dl": ("g/dL", Decimal(1)), "g/l": ("g/dL", Decimal("0.1")), "mmol/l": ("mmol/L", Decimal(1))},
    "electrolyte": {"mmol/l": ("mmol/L", Decimal(1)), "meq/l": ("mmol/L", Decimal(1))},
    "mass_or_molar": {**_MOLAR, **_MASS},
}
ANALYTE_FAMILY: dict[str, str | None] = {
    "neutrophils": "count", "platelets": "count", "wbc": "count", "lymphocytes": "count",
    "hemoglobin": "hemoglobin", "potassium": "electrolyte", "sodium": "electrolyte",
    "calcium_corrected": "mass_or_molar", "calcium_ionized": "mass_or_molar",
    "uric_acid": "mass_or_molar", "phosphate": "mass_or_molar",
    # graded as multiples of ULN / baseline: any unit, the same for value and range
    "creatinine": None, "bilirubin": None, "ast": None, "alt": None,
}

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
LAB_QUALIFIERS = ("symptomatic", "intervention_indicated", "physiologic_consequences")


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


def _norm_unit(unit: str) -> str:
    return unit.strip().lower().replace(" ", "").replace("µ", "u").replace("μ", "u")


@dataclass
class LabFacts:
    """The facts of one lab result for one CTCAE term, and what the edge did to the unit."""
    term: str
    facts: dict[str, Any]
    unit_note: str = ""          # e.g. "unit 'mg/L' not readable for hemoglobin"
    converted: str = ""          # e.g. "g/L -> g/dL (x0.1)"
    sources: dict[str, str] = field(default_factory=dict)


def lab_facts(term: str, value: Any, unit: str | None, lln: Any = None, uln: Any = None,
              baseline: Any = None, qualifiers: Mapping[str, bool] | None = None,
              source: str = "") -> LabFacts:
    """Facts `lab.*` for grading `term`; numbers as Decimal, exact unit scalings applied."""
    analyte = TERM_ANALYTE.get(term)
    nums = {"value": number(value), "lln": number(lln), "uln": number(uln), "baseline": number(baseline)}
    family = ANALYTE_FAMILY.get(analyte) if analyte else None
    unit_s = (unit or "").strip()
    note, converted, canonical = "", "", None
    if family is None:
        canonical = unit_s or None  # ratio terms: unit only has to be shared by value and range
    elif not unit_s:
        note = f"no unit given for {analyte}"
    else:
        hit = UNIT_FAMILIES[family].get(_norm_unit(unit_s))
        if hit is None:
            known = sorted({c for c, _ in UNIT_FAMILIES[family].values()})
            note = f"unit {unit_s!r} not readable for {analyte} (readable: {', '.join(known)} and exact scalings)"
        else:
            canonical, factor = hit
            if factor != 1:
                nums = {k: (tidy(v * factor) if v is not None else None) for k, v in nums.items()}
                converted = f"{unit_s} -> {canonical} (x{factor})"
    facts: dict[str, Any] = {"lab.term": term}
    for k, v in nums.items():
        if v is not None:
            facts[f"lab.{k}"] = v
    if canonical:
        facts["lab.unit"] = canonical
    for q, v in (qualifiers or {}).items():
        if q in LAB_QUALIFIERS and isinstance(v, bool):
            facts[f"lab.{q}"] = v
    sources = {k: source for k in facts} if source else {}
    return LabFacts(term, facts, note, converted, sources)


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
                     day: dt.date | None = None) -> dict[str, Any]:
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
            family = ANALYTE_FAMILY.get(analyte)
            if family is None:
                canonical, factor = lab.unit, Decimal(1)
            else:
                hit = UNIT_FAMILIES[family].get(_norm_unit(lab.unit))
                if hit is None:
                    continue
                canonical, factor = hit
            rows.append((lab, canonical, factor))
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
