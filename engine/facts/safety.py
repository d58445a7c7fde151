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

from engine.evaluate.events import Event
from engine.facts.labmap import LabMap, norm_unit
from engine.record.units import tidy

def clinical_terms(pack: Any) -> tuple[str, ...]:
    """The terms a clinical grading pack grades: the values it declares for `ae.term`."""
    decl = next((f for f in pack.manifest.facts if f.name == "ae.term"), None)
    return tuple(decl.values or ()) if decl else ()


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


def ae_facts(ae: Any, term: str, declared: set[str]) -> dict[str, Any]:
    """Facts `ae.*` of one adverse event (its term id from the lab-terms pack's aliases) for the
    clinical CTCAE pack (only declared names)."""
    facts: dict[str, Any] = {"ae.term": term}
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
    """Facts for the attribution pack: the event's onset and the study dose dates."""
    facts: dict[str, Any] = {"ae.onset_date": ae.onset_date}
    if on_study is not None:
        facts.update(study_dose_facts(on_study))
    return facts


def attribution_events(ae: Any, drugs: list[str]) -> list[Event]:
    """The investigator's relatedness as one `drug_attribution` event per study drug of the
    protocol, dated the onset, whether or not a level is recorded (the listing is complete; an
    unrecorded level is unknown, never 'unrelated'). The drugs and levels are data: the protocol's
    study_drugs, the attribution pack's values."""
    recorded = ae.attribution or {}
    return [Event.of("drug_attribution", ae.onset_date, drug,
                     {"attribution.drug": drug, "attribution.level": recorded.get(drug)}) for drug in drugs]


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


_STRENGTH = {"none": 0, "weak": 1, "moderate": 2, "strong": 3}


def _inhibitors(cycle: Any) -> list[Any]:
    return ([cycle.cyp3a_inhibitor] if getattr(cycle, "cyp3a_inhibitor", None) else []) + list(getattr(cycle, "inhibitors", []) or [])


def _span(inh: Any, cycle: Any) -> tuple[dt.date, dt.date | None]:
    """The days an inhibitor is given: its dates, else its cycle from day 1 (open-ended)."""
    return inh.start_date or cycle.start_date, inh.end_date


def dose_day_events(cycle: Any, drug: str, all_cycles: list[Any], through_day: int) -> list[Event]:
    """One drug's cycle as `dose_day` events for the dosing pack: one per day from day 1 to the
    later of the last recorded dose and `through_day` (the protocol's schedule of that drug),
    whether or not a dose is recorded, so the listing is complete and an unrecorded dose is
    unknown. Each day: the cycle number, the drug's dose,
    the strongest CYP3A inhibition given that day and its drug (the inhibitors' dates; one without
    dates covers its whole cycle, one with an end date counts into the next cycle), whether a P-gp inhibitor is given (unknown when an inhibitor's
    P-gp status is not recorded), and the days since a moderate/strong CYP3A or P-gp inhibitor
    ended, on a day without one (earlier cycles' inhibitors count). Structure only: the schedule
    and the limits are the pack's."""
    by_day = {d.day: d.dose_mg for d in cycle.doses.get(drug, [])}
    # this cycle's inhibitors, and another cycle's that end on a recorded date (one listed in the
    # previous cycle may run into this one)
    mine = [(inh, *_span(inh, c)) for c in all_cycles if c is not cycle for inh in _inhibitors(c)
            if inh.end_date is not None] + [(inh, *_span(inh, cycle)) for inh in _inhibitors(cycle)]
    relevant = lambda inh: _STRENGTH[inh.strength] >= 2 or inh.pgp is True  # noqa: E731
    ended = [end for c in all_cycles for inh in _inhibitors(c) if relevant(inh)
             for _, end in [_span(inh, c)] if end is not None]
    out: list[Event] = []
    for day in range(1, max([through_day, *by_day]) + 1):
        date = cycle.start_date + dt.timedelta(days=day - 1)
        fields: dict[str, Any] = {"day.number": day, "day.cycle": cycle.number, "day.dose": by_day.get(day)}
        active = [inh for inh, lo, hi in mine if lo <= date and (hi is None or date <= hi)]
        strongest = max(active, key=lambda inh: _STRENGTH[inh.strength], default=None)
        fields["day.cyp3a"] = strongest.strength if strongest else "none"
        if strongest is not None and strongest.strength != "none":
            fields["day.cyp3a_drug"] = strongest.name.strip().lower()
        pgp = [inh.pgp for inh in active]
        if any(v is True for v in pgp):
            fields["day.pgp"] = True
        elif None not in pgp:
            fields["day.pgp"] = False          # no inhibitor that day, or none of them inhibits P-gp
        if not any(relevant(inh) for inh in active):
            before = [end for end in ended if end < date]
            if before:
                fields["day.days_since_inhibitor_stop"] = (date - max(before)).days
        out.append(Event.of("dose_day", date, f"cycle {cycle.number} day {day}", fields))
    return out


# --- TLS windows: what the TLS packs read from the record ---------------------------------------------
# A TLS pack says which lab tests feed its facts (decision `lab_inputs`: fact name, worst = max or
# min, whole_window) and which adverse-event terms are its clinical features (decision
# `clinical_features`). Python asks each pack once per lab test / term (cached) and builds the
# facts generically: no lab test, term or threshold is named here.

@dataclass(frozen=True)
class TlsInput:
    fact: str
    worst: str                 # max | min
    whole_window: bool = False  # the worst of the whole window even when the pack reads one day


class TlsLookups:
    """The lab inputs and clinical features of one TLS pack, asked through the engine."""

    def __init__(self, pack: Any, labmap: LabMap, evaluator: Any = None) -> None:
        from engine.evaluate.facts import FactSheet
        from engine.evaluate.run import evaluate_pack
        self.pack, self.labmap, self._evaluator, self._features_of = pack, labmap, evaluator, {}
        self._ask = lambda facts: evaluate_pack(pack, FactSheet.of(facts), None, evaluator)[0]
        self.inputs: dict[str, TlsInput] = {}
        for test in labmap.tests:
            v = self._value("lab_inputs", {"input.lab_test": test})
            if v and v.get("fact"):
                self.inputs[test] = TlsInput(v["fact"], v.get("worst") or "max", bool(v.get("whole_window")))
        decl = {f.name: f for f in pack.manifest.facts}
        dec = next(d for d in pack.manifest.decisions if d.id == "clinical_features")
        self.features = sorted({r.then["feature"] for r in dec.rows if isinstance(r.then, dict) and r.then.get("feature")})
        self.declared = decl
        # tls.<feature>_due_to_<cause>: the attribution facts the pack reads
        self.causes: dict[str, list[str]] = {
            f: sorted(n[len(f"tls.{f}_due_to_"):] for n in decl if n.startswith(f"tls.{f}_due_to_")) for f in self.features}

    def _value(self, decision: str, facts: dict[str, Any]) -> dict[str, Any] | None:
        dec = self._ask(facts).decisions[decision]
        return dec.value if dec.status == "decided" and isinstance(dec.value, dict) else None

    def feature_of(self, term: str) -> str | None:
        if term not in self._features_of:
            v = self._value("clinical_features", {"input.ae_term": term})
            self._features_of[term] = (v or {}).get("feature")
        return self._features_of[term]


def tls_clinical_facts(adverse_events: list[Any], lo: dt.date, hi: dt.date, lookups: TlsLookups) -> dict[str, Any]:
    """tls.<feature>: an adverse event with such a term starting in the window (the AE listing is
    taken as complete: none is 'false'); tls.<feature>_due_to_<cause>: the events' facts
    `due_to_<cause>` ("probably or definitely caused by"): true if one says so, false if all say
    not, missing otherwise."""
    in_window = [ae for ae in adverse_events if ae.onset_date is not None and lo <= ae.onset_date <= hi]
    by_feature: dict[str, list[Any]] = {f: [] for f in lookups.features}
    for ae in in_window:
        f = lookups.feature_of(lookups.labmap.term_id(ae.term))
        if f in by_feature:
            by_feature[f].append(ae)
    facts: dict[str, Any] = {}
    for f, events in by_feature.items():
        facts[f"tls.{f}"] = bool(events)
        for cause in lookups.causes.get(f, []):
            said = [(ae.facts or {}).get(f"due_to_{cause}") for ae in events]
            if any(v is True for v in said):
                facts[f"tls.{f}_due_to_{cause}"] = True
            elif events and all(v is False for v in said):
                facts[f"tls.{f}_due_to_{cause}"] = False
    return facts


def tls_window_facts(labs: list[Any], start: dt.date, days_before: int, days_after: int,
                     day: dt.date | None, labmap: LabMap, lookups: TlsLookups) -> tuple[dict[str, Any], list[str]]:
    """Worst value of each TLS input within [start - before, start + after] (or on one `day`,
    unless the input is whole-window), its unit, ULN, and baseline = the last value of the same
    unit before `start`. Values of one input in several units: the unit with the most results in
    the window is read (noted). A value the pack does not allow (a unit it has no cut-off for) is
    left missing, noted. Returns (facts, notes)."""
    lo, hi = start - dt.timedelta(days=days_before), start + dt.timedelta(days=days_after)
    facts: dict[str, Any] = {}
    notes: list[str] = []
    for test, spec in lookups.inputs.items():
        rows = []
        for lab in labs:
            if lab.test != test:
                continue
            reading = labmap.reading(test, lab.unit)
            if reading.unit is None or reading.factor is None:
                notes.append(f"{test} {lab.id}: unit {lab.unit!r} not readable (lab-terms)")
                continue
            unit = norm_unit(reading.unit) if reading.as_reported else reading.unit
            rows.append((lab, unit, reading.factor))
        in_window = [r for r in rows if lo <= r[0].date <= hi and (day is None or spec.whole_window or r[0].date == day)]
        if not in_window:
            continue
        units = sorted({r[1] for r in in_window}, key=lambda u: (-sum(1 for r in in_window if r[1] == u), u))
        if len(units) > 1:
            notes.append(f"{test}: results in {', '.join(units)} in one window; {units[0]} read")
        group = [r for r in in_window if r[1] == units[0]]
        lab, unit, factor = (max if spec.worst == "max" else min)(group, key=lambda r: r[0].value * r[2])
        name = f"tls.{spec.fact}"
        facts[name] = tidy(lab.value * factor)
        facts[f"{name}_unit"] = unit
        if lab.uln is not None:
            facts[f"{name}_uln"] = tidy(lab.uln * factor)
        before = [r for r in rows if r[0].date < start and r[1] == unit]
        if before:
            b = max(before, key=lambda r: r[0].date)
            facts[f"{name}_baseline"] = tidy(b[0].value * b[2])
    # a unit the pack has no cut-off for: the value is not readable by this pack (left missing,
    # with its baseline and ULN: never judged against another unit's cut-off)
    for spec in lookups.inputs.values():
        name = f"tls.{spec.fact}"
        decl = lookups.declared.get(f"{name}_unit")
        unit = facts.get(f"{name}_unit")
        if unit is not None and decl is not None and decl.values is not None and unit not in decl.values:
            notes.append(f"{name} in {unit}: {lookups.pack.id} has no cut-off for this unit (left missing)")
            for suffix in ("", "_unit", "_baseline", "_uln"):
                facts.pop(name + suffix, None)
    return {k: v for k, v in facts.items() if k in lookups.declared}, notes
