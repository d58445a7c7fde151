"""Safety use case: CTCAE grades of labs and adverse events, attribution, treatment emergence,
TLS around the ramp-up of a study drug, dosing advisories, and the incidence summary.

Every number that decides a grade is in rules/ (the CTCAE, TLS, attribution and dosing packs the
trial's protocol names); the drugs, their ramp-up and schedule are the protocol's study_drugs.
This module assembles facts, evaluates
packs, keeps the investigator's grade where the facts cannot decide (source "reported"), and
writes one audit record per graded item.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from engine.adjudicate.common import audit_entry, check_attribution_drugs
from engine.errors import InputError
from engine.safetext import csv_writer
from engine.evaluate.facts import FactSheet, check_types
from engine.evaluate.events import Timeline
from engine.evaluate.run import Evaluator, PackResult, evaluate_pack, resolve_params
from engine.evaluate.values import to_json
from engine.facts.labmap import lab_map
from engine.facts.safety import (clinical_terms, LabFacts, TlsLookups, ae_facts, attribution_events, attribution_facts, lab_facts, study_dose_facts, tls_clinical_facts, tls_window_facts,
                                 dose_day_events)
from engine.rules.load import Registry, load_registry
from engine.record.listing import read_listing, row_problem  # noqa: F401 - read_listing re-exported

LISTING_COLUMNS = ("term", "lab_test", "value", "unit", "lln", "uln", "baseline")


def _pack_id(version: str | None, registry: Registry) -> str:
    """The grading pack of a CTCAE version (None: the trial's), from the trial's protocol."""
    return registry.trial().ctcae_pack(version)


@dataclass
class Graded:
    """One graded lab result or event, as printed and as recorded."""
    id: str
    term: str
    grade: int | None
    gradable: bool
    reason: str
    source: str                                   # lab | clinical | reported
    text: str = ""
    basis: str = ""
    date: str | None = None
    treatment_emergent: bool | None = None
    attribution: dict[str, Any] | None = None
    decision_id: str | None = None
    kind: str = "lab"                             # lab | event
    row: str | None = None                        # the decision row that decided (lab grades)
    results: list[PackResult] = field(default_factory=list, repr=False)
    facts: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "term": self.term, "date": self.date,
                "grade": self.grade, "gradable": self.gradable, "reason": self.reason,
                "source": self.source, "text": self.text, "basis": self.basis,
                "treatment_emergent": self.treatment_emergent, "attribution": self.attribution,
                "decision_id": self.decision_id, "row": self.row}


class SafetyGrader:
    """Loads the packs once; grades lab facts with a cache (same facts, same decision)."""

    def __init__(self, version: str | None = None, registry: Registry | None = None,
                 evaluator: Evaluator | None = None, params: Mapping[str, Any] | None = None) -> None:
        self.registry = registry or load_registry()
        self.version = version or self.registry.trial().grading_version
        self.pack = self.registry.get(_pack_id(self.version, self.registry))
        self.evaluator = evaluator
        self.params = dict(params or {})
        self._cache: dict[tuple, tuple[PackResult, dict[str, Any]]] = {}
        self.labmap = lab_map(self.registry, evaluator)
        decl = {f.name: f for f in self.pack.manifest.facts}
        self.terms: frozenset[str] = frozenset(decl["lab.term"].values or ())
        # clinical qualifiers the pack reads (lab.fasting, lab.symptomatic, ...): the pack says which
        self.qualifiers: frozenset[str] = frozenset(
            n[4:] for n, f in decl.items() if n.startswith("lab.") and f.type.value == "boolean")

    def lab_qualifiers(self, facts: Mapping[str, Any] | None) -> dict[str, bool]:
        """The true/false clinical facts (of a lab or an adverse event) that this pack reads."""
        return {q: v for q, v in (facts or {}).items() if q in self.qualifiers and isinstance(v, bool)}

    # --- labs ---------------------------------------------------------------------------------
    def grade_facts(self, lf: LabFacts) -> tuple[dict[str, Any], PackResult]:
        """The pack's grade row for one term's lab facts (cached by the facts)."""
        key = tuple(sorted((k, str(v)) for k, v in lf.facts.items()))
        if lf.term not in self.terms:  # a term this CTCAE version does not grade from a lab value
            out = {"grade": None, "gradable": False, "text": "", "basis": "none", "row": None,
                   "reason": f"{lf.term} is not graded from a lab value by {self.pack.id} (not among its lab terms)"}
            return out, None
        hit = self._cache.get(key)
        if hit is None:
            full, _ = evaluate_pack(self.pack, FactSheet.of(lf.facts, lf.sources), self.params, self.evaluator)
            dec = full.decisions["grade"]
            if dec.status != "decided":  # a defect of the table: every row should be decided
                out = {"grade": None, "gradable": False, "text": "", "basis": "none",
                       "reason": "indeterminate: missing " + ", ".join(dec.missing)}
            else:
                out = dict(dec.value)
            out["row"] = full.row_keys["grade"][dec.rows_met[0]] if dec.rows_met else "grade#default"
            # keep only what the audit record needs (identity, parameters, the decision), not the
            # ~120 row results: a 10,000-row listing must not hold them all
            res = PackResult(full.pack, full.parameters, full.rules, {}, {"grade": dec}, full.evaluator,
                             row_keys=full.row_keys, sheet=full.sheet, definition=full.definition)
            if len(self._cache) < 20_000:
                self._cache[key] = (res, out)
            hit = (res, out)
        res, out = hit
        out = dict(out)
        if not out["gradable"] and lf.unit_note and "unit" in out["reason"]:
            out["reason"] = f"{out['reason']}: {lf.unit_note}"
        return out, res

    def grade_lab(self, *, id: str, term: str | None = None, analyte: str | None = None, value: Any,
                  unit: str | None, lln: Any = None, uln: Any = None, baseline: Any = None,
                  qualifiers: Mapping[str, bool] | None = None, date: str | None = None,
                  source: str = "") -> Graded:
        """Grade one lab result for a term, or for both directions of an analyte (admiral's
        ATOXGR: 0 only when every direction is 0; a non-zero grade wins). The lab-terms pack says
        which terms an analyte has; a direction this CTCAE version does not grade is left out."""
        quals = self.lab_qualifiers(qualifiers)
        if term:
            terms = [term]
        else:
            pair = self.labmap.terms(analyte or "")
            if pair is None:
                return Graded(id, analyte or "", None, False, f"no CTCAE term for lab test {analyte!r} "
                              f"(lab-terms pack)", "lab", date=date)
            terms = [t for t in pair if t and t in self.terms] or [t for t in pair if t]
        graded = []
        for t in terms:
            lf = lab_facts(self.labmap, analyte, t, value, unit, lln, uln, baseline, quals, source)
            out, res = self.grade_facts(lf)
            reason = out["reason"] + (f" [{lf.converted}]" if lf.converted else "")
            graded.append(Graded(id, t, out["grade"], out["gradable"], reason, "lab", out.get("text", ""),
                                 out.get("basis", ""), date=date,
                                 results=[r for r in [res, *lf.results] if r is not None], facts=lf.facts,
                                 row=out["row"]))
        nonzero = [g for g in graded if g.grade]
        if nonzero:
            return nonzero[0]
        if all(g.gradable for g in graded):
            g = graded[0]
            if len(graded) > 1:
                g.term = "/".join(x.term for x in graded)
                g.results = [r for x in graded for r in x.results]
            return g
        return next(g for g in graded if not g.gradable)

    # --- events ---------------------------------------------------------------------------------
    def grade_event(self, ae: Any, labs: list[Any], subject: str | None = None) -> Graded:
        """Clinical term: from its facts; lab term: the worst lab grade from onset to resolution;
        otherwise (or when the facts cannot decide) the investigator's grade, saying so."""
        term = self.labmap.term_id(ae.term)
        reported = ae.reported_grade
        date = ae.onset_date.isoformat()
        clinical = self.registry.trial().optional_role("clinical_terms")
        if clinical and term in clinical_terms(self.registry.get(clinical)):
            pack = self.registry.get(clinical)
            declared = {f.name for f in pack.manifest.facts}
            facts = ae_facts(ae, term, declared)
            sheet = FactSheet.of(facts)
            try:
                check_types(sheet, pack.manifest.facts, subject=subject)
            except InputError as exc:  # name the event: adverse_events[id].facts.<name>
                raise InputError(exc.detail, file=exc.file, subject=subject,
                                 field=f"adverse event {ae.id}: facts.{(exc.field or '').removeprefix('ae.')}",
                                 expected=exc.expected) from None
            res, _ = evaluate_pack(pack, sheet, {"ctcae_version": self.version}, self.evaluator)
            dec = res.decisions["grade"]
            value = dec.value if dec.status == "decided" else None
            if value and value.get("decided"):
                return Graded(ae.id, term, value["grade"], True, value["reason"], "clinical",
                              value.get("text", ""), "clinical facts", date, kind="event",
                              results=[res], facts=facts)
            why = value["reason"] if value else ("the facts do not decide (missing: "
                                                 + ", ".join(dec.missing) + ")")
            floor = (value or {}).get("floor")
            if floor and reported is not None and reported < floor:
                why += f"; reported grade {reported} is below the G{floor} the facts prove: review"
            return self._reported(ae, term, why, [res], facts)
        if term in self.labmap.analyte_of:
            analyte = self.labmap.analyte_of[term]
            end = ae.resolution_date or ae.onset_date
            quals = ae.facts or {}
            best: Graded | None = None
            for lab in labs:
                if lab.test == analyte and ae.onset_date <= lab.date <= end:
                    g = self.grade_lab(id=ae.id, term=term, value=lab.value, unit=lab.unit, lln=lab.lln,
                                       uln=lab.uln, baseline=lab.baseline, qualifiers=quals,
                                       date=date)
                    if g.gradable and (best is None or (g.grade or 0) > (best.grade or 0)):
                        best = g
                        best.reason = f"{g.reason} (lab {lab.id} on {lab.date})"
            if best is not None:
                best.kind = "event"
                return best
            return self._reported(ae, term, f"no gradable {analyte} result from onset to resolution", [], {})
        return self._reported(ae, term, "term not graded from facts by these packs", [], {})

    @staticmethod
    def _reported(ae: Any, term: str, why: str, results: list[PackResult], facts: dict) -> Graded:
        rg = ae.reported_grade
        reason = f"{why}; investigator's grade {rg} stands" if rg is not None else f"{why}; no reported grade"
        return Graded(ae.id, term, rg, rg is not None, reason, "reported", date=ae.onset_date.isoformat(),
                      kind="event", results=results, facts=facts)


# --- attribution, TLS, dosing ---------------------------------------------------------------------

def attribution_of(ae: Any, on_study: Any, registry: Registry, evaluator: Evaluator | None = None,
                   subject: str | None = None) -> tuple[bool | None, dict[str, Any], PackResult]:
    """(treatment_emergent, {investigator per study drug, treatment_related}, pack result). The
    drugs are the protocol's study_drugs; a relatedness naming another drug is refused."""
    proto = registry.trial()
    drugs = [d.name for d in proto.study_drugs]
    check_attribution_drugs(ae, proto, subject)
    inv = {d: (ae.attribution or {}).get(d) for d in drugs}
    pid = proto.optional_role("attribution")
    if pid is None:   # a trial without an attribution pack: emergence and relatedness undecided
        return None, {"investigator": inv, "treatment_related": None, "adjudicated": None}, None
    pack = registry.get(pid)
    events = attribution_events(ae, drugs)
    _check_event_fields(events, pack, subject, lambda e, _: f"adverse event {ae.id}: attribution.{e.id}")
    res, _ = evaluate_pack(pack, FactSheet.of(attribution_facts(ae, on_study)), None, evaluator,
                           timeline=Timeline(events))
    te = _tri(res.rules["TEAE"].outcome.value)
    return te, {"investigator": inv, "treatment_related": _tri(res.rules["RELATED"].outcome.value),
                "adjudicated": None}, res


def _tri(outcome: str) -> bool | None:
    return {"met": True, "not_met": False}.get(outcome)


def tls_packs(registry: Registry) -> list[Any]:
    """The TLS definitions of a registry: every pack with a `tls` decision and the `lab_inputs` /
    `clinical_features` tables that say what it reads (Cairo-Bishop, Howard, ...)."""
    packs = registry.packs
    cached = getattr(packs, "decision_ids", None)   # known without unpickling the pack (LazyPacks)
    return [packs[pid] for pid in packs
            if {"tls", "lab_inputs", "clinical_features"} <= set(cached(pid) if cached else packs[pid].decision_ids)]


_LOOKUPS: dict[tuple, TlsLookups] = {}


def _lookups(pack: Any, registry: Registry, evaluator: Evaluator | None) -> TlsLookups:
    key = (pack.id, pack.version, pack.sha256, getattr(evaluator, "name", "default"))
    hit = _LOOKUPS.get(key)
    if hit is None:
        hit = _LOOKUPS[key] = TlsLookups(pack, lab_map(registry, evaluator), evaluator)
    return hit


def tls_assessments(record: Any, registry: Registry, evaluator: Evaluator | None = None,
                    params: Mapping[str, Mapping[str, Any]] | None = None,
                    packs: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """TLS around day 1 of every cycle in which a study drug with a ramp-up (protocol) is given, by
    every TLS definition of the registry (or the ids in `packs`); `params` by pack id. Each item
    names its definition."""
    chosen = [registry.get(pid) for pid in packs] if packs is not None else tls_packs(registry)
    out = []
    for pack in chosen:
        out += _tls_by(pack, record, registry, evaluator, (params or {}).get(pack.id))
    return out


def _tls_by(pack: Any, record: Any, registry: Registry, evaluator: Evaluator | None,
            params: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    p = {x.name: x.value for x in pack.manifest.parameters} | dict(params or {})
    lookups = _lookups(pack, registry, evaluator)
    labmap = lab_map(registry, evaluator)
    abnormality = {r.id for r in pack.manifest.rules if r.kind == "abnormality"}
    out = []
    on = record.on_study
    ramped = [d.name for d in registry.trial().ramp_up_drugs()]
    for cycle in (on.cycles if on else []):
        if not any(cycle.doses.get(d) for d in ramped):
            continue
        start = cycle.start_date
        lo, hi = start - dt.timedelta(days=p["window_days_before"]), start + dt.timedelta(days=p["window_days_after"])
        days = [None]
        if p["simultaneous_24h"]:
            days = sorted({lab.date for lab in record.labs if lo <= lab.date <= hi}) or [None]
        clinical = tls_clinical_facts(record.adverse_events, lo, hi, lookups)
        windows = []
        for day in days:
            facts, notes = tls_window_facts(record.labs, start, p["window_days_before"], p["window_days_after"], day,
                                            labmap, lookups)
            facts.update(clinical)
            res, _ = evaluate_pack(pack, FactSheet.of(facts), params, evaluator)
            dec = res.decisions["tls"]
            item = {"definition": pack.id, "cycle": cycle.number, "start": start.isoformat(),
                    "day": day.isoformat() if day else None,
                    "category": dec.fields.get("category") if dec.status == "decided" else None,
                    "status": dec.status, "missing": dec.missing, "at_least": None, "at_least_day": None,
                    # the lab abnormalities met: the pack's rules of kind `abnormality`
                    "abnormal": [r for r, rr in res.rules.items() if r in abnormality and rr.outcome.value == "met"],
                    "notes": notes,
                    "facts": {k: to_json(v) for k, v in facts.items()}, "_result": res}
            # the pack's `rank` orders the categories; an undecided window could be as bad as its
            # worst candidate
            item["_rank"] = dec.fields["rank"] if dec.status == "decided" else max(
                (c["rank"] for c in dec.candidates if isinstance(c, dict)), default=-1)
            windows.append(item)
        out.append(worst_window(windows))
    return out


def worst_window(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """The cycle's report: its worst decided window (earliest on ties), unless an undecided
    window could be worse; then that one, indeterminate with its missing facts (never a silent
    "no TLS" while a window that might show TLS cannot be decided)."""
    best = None
    for w in windows:
        if w["status"] == "decided" and (best is None or w["_rank"] > best["_rank"]):
            best = w
    floor = best["_rank"] if best is not None else -1
    could_be_worse = [w for w in windows if w["status"] != "decided" and w["_rank"] > floor]
    if could_be_worse:
        worst = dict(max(could_be_worse, key=lambda w: w["_rank"]))
        if best is not None:  # what is already established, said beside the open question
            worst["at_least"], worst["at_least_day"] = best["category"], best["day"]
        return worst
    return best if best is not None else windows[0]


def dosing_advisories(record: Any, registry: Registry, evaluator: Evaluator | None = None
                      ) -> list[dict[str, Any]]:
    """Dosing advisories per cycle and study drug with a ramp-up (never grades), day by day: the
    cycle's days are the pack's `dose_day` events (engine/facts/safety.py), through the drug's
    last scheduled day (protocol study_drugs)."""
    proto = registry.trial()
    pid = proto.optional_role("dosing")
    if pid is None:      # a trial without dosing checks
        return []
    pack = registry.get(pid)
    rules = {r.id: r for r in pack.manifest.rules}
    out = []
    on = record.on_study
    for drug in proto.ramp_up_drugs():
        for cycle in (on.cycles if on else []):
            if not cycle.doses.get(drug.name):
                continue
            days = dose_day_events(cycle, drug.name, list(on.cycles), drug.last_day)
            _check_event_fields(days, pack, record.subject_id,
                                lambda e, exc, d=drug.name: f"{e.id}: doses.{d} ({exc.field})")
            res, _ = evaluate_pack(pack, FactSheet(), None, evaluator, timeline=Timeline(days))
            met = [{"rule": rid, "message": rules[rid].message, "basis": rules[rid].basis}
                   for rid, r in res.rules.items() if r.outcome.value == "met"]
            unknown = [{"rule": rid, "missing": list(r.missing)} for rid, r in res.rules.items()
                       if r.outcome.value == "unknown"]
            out.append({"drug": drug.name, "cycle": cycle.number, "advisories": met, "not_checked": unknown,
                        "days": [{"date": e.date.isoformat(), **{k: to_json(v) for k, v in e.fields.items()}}
                                 for e in days], "_result": res})
    return out


def _check_event_fields(events: list[Any], pack: Any, subject: str | None, field: Any) -> None:
    """A value of the wrong type or outside the range the pack declares for its event kind (a level
    it does not list, an impossible dose) is bad input (exit 2); `field(event, error)` names where."""
    kinds = {k.kind: k for k in pack.manifest.events}
    for e in events:
        kind = kinds.get(e.kind)
        if kind is None:
            continue
        try:
            check_types(FactSheet(dict(e.fields)), kind.fields, subject=subject)
        except InputError as exc:
            raise InputError(exc.detail, subject=subject, field=field(e, exc), expected=exc.expected) from None


# --- a subject ------------------------------------------------------------------------------------

def _grade_items(record: Any, grader: "SafetyGrader", evaluator: Evaluator | None,
                 store: Any = None) -> tuple[list[Graded], list[dict[str, Any]], list[dict[str, Any]]]:
    reg = grader.registry
    sid = record.subject_id
    items: list[Graded] = []
    emergent: dict[dt.date, bool | None] = {}  # labs of one day share the facts, hence the answer
    for lab in record.labs:
        g = grader.grade_lab(id=lab.id, analyte=lab.test, value=lab.value, unit=lab.unit, lln=lab.lln,
                             uln=lab.uln, baseline=lab.baseline, qualifiers=lab.qualifiers,
                             date=lab.date.isoformat())
        if lab.date not in emergent:
            emergent[lab.date] = _lab_emergent(lab.date, record.on_study, reg, evaluator)
        g.treatment_emergent = emergent[lab.date]
        items.append(g)
    for ae in record.adverse_events:
        g = grader.grade_event(ae, list(record.labs), sid)
        te, attribution, res = attribution_of(ae, record.on_study, reg, evaluator, sid)
        g.treatment_emergent, g.attribution = te, attribution
        if res is not None:
            g.results.append(res)
        if store is not None:
            override = adjudicated_attribution(store, sid, ae.id)
            if override is not None:
                g.attribution["adjudicated"] = override
        items.append(g)
    return items, tls_assessments(record, reg, evaluator), dosing_advisories(record, reg, evaluator)


def _subject_entries(sid: str, items: list[Graded], tls: list[dict[str, Any]], dosing: list[dict[str, Any]],
                     actor: str) -> list[tuple[Graded | None, dict[str, Any]]]:
    """The audit entries of a subject's safety review: one per graded item, TLS window and cycle."""
    out: list[tuple[Graded | None, dict[str, Any]]] = [
        (g, _entry(sid, "ae" if g.kind == "event" else "ctcae-lab", g, actor)) for g in items]
    for t in tls:
        out.append((None, audit_entry(subject_id=sid, use_case="tls", item=f"{t['definition']} cycle {t['cycle']}",
                                      snapshot={"facts": t["facts"]}, results=[t["_result"]],
                                      outcome={k: v for k, v in t.items() if not k.startswith("_")}, actor=actor)))
    for d in dosing:
        out.append((None, audit_entry(subject_id=sid, use_case="dosing", item=f"cycle {d['cycle']}",
                                      snapshot={"days": d["days"]}, results=[d["_result"]],
                                      outcome={k: v for k, v in d.items() if not k.startswith("_")}, actor=actor)))
    return out


def grade_subject(record: Any, version: str | None = None, *, registry: Registry | None = None,
                  evaluator: Evaluator | None = None, store: Any = None, actor: str = "adjudicator",
                  params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Grade every lab and adverse event of a subject; write one audit record per item when a
    store is given; the committee's adjudicated attribution (an override record) is shown."""
    grader = SafetyGrader(version, registry, evaluator, params)
    items, tls, dosing = _grade_items(record, grader, evaluator, store)
    if store is not None:
        with store.batch() as w:
            for g, entry in _subject_entries(record.subject_id, items, tls, dosing, actor):
                decision_id = w.add(entry)
                if g is not None:
                    g.decision_id = decision_id
    return {"subject_id": record.subject_id, "ctcae": version, "pack": grader.pack.identity(),
            "parameters": {p.name: grader.params.get(p.name, p.value) for p in grader.pack.manifest.parameters},
            "items": [g.to_dict() for g in items],
            "tls": [{k: v for k, v in t.items() if not k.startswith("_")} for t in tls],
            "dosing": [{k: v for k, v in d.items() if not k.startswith("_")} for d in dosing]}


def cohort_entries(record: Any, path: Any, registry: Registry, params: Mapping[str, Mapping[str, Any]],
                   evaluator: Evaluator | None, actor: str, version: str | None = None,
                   grader: "SafetyGrader | None" = None) -> list[dict[str, Any]]:
    """Audit entries of a subject's whole safety review, for batch re-adjudication (no store)."""
    grader = grader or SafetyGrader(version, registry, evaluator, params.get(_pack_id(version, registry)))
    items, tls, dosing = _grade_items(record, grader, evaluator)
    return [e for _, e in _subject_entries(record.subject_id, items, tls, dosing, actor)]


def _lab_emergent(date: dt.date, on_study: Any, reg: Registry, evaluator: Evaluator | None = None) -> bool | None:
    pid = reg.trial().optional_role("attribution")
    if pid is None:
        return None
    pack = reg.get(pid)
    facts: dict[str, Any] = {"ae.onset_date": date, **study_dose_facts(on_study)}
    res, _ = evaluate_pack(pack, FactSheet.of(facts), None, evaluator)
    return _tri(res.rules["TEAE"].outcome.value)


def _entry(subject_id: str, use_case: str, g: Graded, actor: str) -> dict[str, Any]:
    outcome = {k: v for k, v in g.to_dict().items() if k != "decision_id"}
    return audit_entry(subject_id=subject_id, use_case=use_case, item=g.id,
                       snapshot={"facts": {k: to_json(v) for k, v in g.facts.items()}},
                       results=g.results, outcome=outcome, actor=actor)


def adjudicated_attribution(store: Any, subject_id: str, item: str) -> dict[str, Any] | None:
    """The newest committee override for this event (reviewer, reason, treatment_related)."""
    latest = None
    for rec in store.iter(subject_id=subject_id, use_case="ae", item=item):
        if rec.supersedes:
            latest = rec
    if latest is None:
        return None
    out = dict(latest.outcome.get("attribution", {}).get("adjudicated") or latest.outcome)
    return {"treatment_related": out.get("treatment_related"), "per_drug": out.get("per_drug"),
            "reviewer": latest.reviewer, "reason": latest.reason, "decision_id": latest.decision_id}


def record_adjudication(store: Any, subject_id: str, item: str, treatment_related: bool, reviewer: str,
                        reason: str, actor: str, per_drug: Mapping[str, str] | None = None) -> Any:
    """The committee's adjudicated attribution: an override of the event's latest record."""
    current = store.current(subject_id, "ae", item)
    if current is None:
        raise InputError(f"no graded event {item!r} of subject {subject_id} in the audit store",
                         subject=subject_id, field="item", expected="grade the subject with `adjudicator ae` first")
    outcome = {"treatment_related": bool(treatment_related), "per_drug": dict(per_drug or {})}
    return store.override(current.decision_id, outcome, reviewer, reason, actor)


# --- a lab listing ------------------------------------------------------------------------------
# read_listing (the file's shape) and row_problem (impossible values) live in engine.record.listing

def grade_listing(rows: Iterable[tuple[int, Mapping[str, str]]], version: str | None = None, *,
                  registry: Registry | None = None, evaluator: Evaluator | None = None,
                  params: Mapping[str, Any] | None = None, writer: Any = None, actor: str = "adjudicator",
                  listing: str = "listing") -> Iterator[dict[str, Any]]:
    """One output row per input row: the input columns, then term, grade (0-4 or empty),
    gradable, reason, source. A bad row is not gradable with a reason naming its row number."""
    grader = SafetyGrader(version, registry, evaluator, params)
    terms = grader.terms
    for n, row in rows:
        out = dict(row)
        raw_term, analyte = row.get("term", "").strip(), row.get("lab_test", "").strip().lower()
        problem = row_problem(row)  # impossible values: reported, never graded nor audited
        if problem:
            out.update(term=raw_term or analyte, grade="", gradable=False, reason=f"row {n}: {problem}", source="")
            yield out
            continue
        try:
            quals = _row_qualifiers(row, grader.qualifiers)
            if raw_term:
                t = grader.labmap.term_id(raw_term)
                if t not in terms:
                    raise ValueError(f"column term: {raw_term!r} is not a lab term of CTCAE v{version} in this pack")
                g = grader.grade_lab(id=f"row {n}", term=t, value=row.get("value"), unit=row.get("unit"),
                                     lln=row.get("lln"), uln=row.get("uln"), baseline=row.get("baseline"),
                                     qualifiers=quals)
            elif analyte:
                if grader.labmap.terms(analyte) is None:
                    raise ValueError(f"column lab_test: {analyte!r} has no CTCAE term here "
                                     f"(known: {', '.join(sorted(grader.labmap.tests))})")
                g = grader.grade_lab(id=f"row {n}", analyte=analyte, value=row.get("value"), unit=row.get("unit"),
                                     lln=row.get("lln"), uln=row.get("uln"), baseline=row.get("baseline"),
                                     qualifiers=quals)
            else:
                raise ValueError("neither term nor lab_test given")
        except ValueError as exc:
            msg = str(exc)
            if "not a number" in msg or "finite" in msg:
                bad = next((c for c in ("value", "lln", "uln", "baseline") if _bad_number(row.get(c))), "value")
                msg = f"column {bad}: {msg}"
            out.update(term=raw_term or analyte, grade="", gradable=False, reason=f"row {n}: {msg}", source="")
            yield out
            continue
        out.update(term=g.term, grade="" if g.grade is None else g.grade, gradable=g.gradable,
                   reason=g.reason, source=g.source)
        if writer is not None:
            subject = row.get("subject_id") or row.get("usubjid") or listing
            entry = _entry(subject, "ctcae-lab", g, actor) | {"item": f"{listing}#row{n}"}
            if row.get("source_record"):  # where the row came from (an SDTM record: domain, USUBJID, --SEQ)
                from engine.audit.compact import compact_sources
                inp = {k: v for k, v in entry["input"].items() if k not in ("sources", "source_files")}
                entry["input"] = inp | compact_sources({k: row["source_record"] for k in inp["facts"]})
            out["decision_id"] = writer.add(entry)
        yield out


_YES, _NO = ("true", "yes", "y", "1"), ("false", "no", "n", "0")


def _row_qualifiers(row: Mapping[str, str], names: Iterable[str]) -> dict[str, bool]:
    """Columns named like a clinical qualifier the pack reads (fasting, on_anticoagulation, ...):
    true/yes/y/1 or false/no/n/0; empty = not recorded; anything else is a bad row."""
    out: dict[str, bool] = {}
    for q in names:
        raw = (row.get(q) or "").strip().lower()
        if not raw:
            continue
        if raw not in _YES + _NO:
            raise ValueError(f"column {q}: {row.get(q)!r} is not true/false (y/n)")
        out[q] = raw in _YES
    return out


def _bad_number(raw: Any) -> bool:
    from engine.facts.safety import number
    try:
        number(raw)
        return False
    except ValueError:
        return True


# --- summaries ------------------------------------------------------------------------------------


def related_of(item: Mapping[str, Any]) -> bool | None:
    att = item.get("attribution") or {}
    adj = att.get("adjudicated")
    if adj and adj.get("treatment_related") is not None:
        return adj["treatment_related"]
    return att.get("treatment_related")


SOURCES = ("event", "lab")


def _source_of(by_source: Mapping[str, int], floor: int) -> str | None:
    """Which source(s) reach `floor`: 'event', 'lab', 'both' or None."""
    hit = [src for src in SOURCES if by_source.get(src, 0) >= floor]
    return None if not hit else hit[0] if len(hit) == 1 else "both"


def summarize(subjects: list[Mapping[str, Any]], *, related_only: bool = False,
              emergent_only: bool = True, table: Any = None) -> dict[str, Any]:
    """Worst grade per subject and term from BOTH the adverse-event records and the graded labs
    (the paper's safety table reports hematologic toxicity, which the labs grade), and the
    incidence of any grade and of grade >= 3 by term, in the layout of the paper's Table 3.

    Each subject counts once per term, at the worst grade of either source; the table says which
    source reached it (event, lab, or both). Labs carry no attribution: the related-only table
    counts events only and says so. An item whose treatment emergence is unknown is counted and
    the count of such subjects is reported (never silently dropped, never silently certain)."""
    per: dict[str, dict[str, dict[str, int]]] = {}      # subject -> term -> source -> worst grade
    uncertain: dict[str, set[str]] = {}                 # term -> subjects counted with unknown emergence
    labs_left_out = 0
    for s in subjects:
        w = per.setdefault(s["subject_id"], {})
        for it in s["items"]:
            grade, term = it.get("grade"), it.get("term")
            if grade is None or not term or it.get("kind") not in SOURCES:
                continue
            if emergent_only and it.get("treatment_emergent") is False:
                continue
            if related_only and it["kind"] == "lab":
                labs_left_out += grade > 0
                continue
            if related_only and related_of(it) is not True:
                continue
            src = w.setdefault(term, {})
            src[it["kind"]] = max(src.get(it["kind"], 0), grade)
            if emergent_only and it.get("treatment_emergent") is None and grade > 0:
                uncertain.setdefault(term, set()).add(s["subject_id"])
    worst = {sid: {t: max(src.values()) for t, src in terms.items()} for sid, terms in per.items()}
    n = len(subjects)
    labels = {t.term: t.label for t in (table.terms if table else [])}   # the protocol's table: order, labels
    terms = list(labels) + sorted({t for w in worst.values() for t in w if w[t] > 0} - set(labels))
    rows = []
    for t in terms:
        counted = {floor: [per[sid][t] for sid in per if t in per[sid] and worst[sid][t] >= floor] for floor in (1, 3)}
        by = {floor: {k: sum(1 for src in counted[floor] if _source_of(src, floor) == k) for k in ("event", "lab", "both")}
              for floor in (1, 3)}
        anyg, g3 = len(counted[1]), len(counted[3])
        rows.append({"term": t, "label": labels.get(t, t.replace("_", " ").capitalize()),
                     "any_grade_n": anyg, "any_grade_pct": _pct(anyg, n),
                     "grade_3_plus_n": g3, "grade_3_plus_pct": _pct(g3, n),
                     "any_grade_by_source": by[1], "grade_3_plus_by_source": by[3],
                     "emergence_unknown_n": len(uncertain.get(t, ()))})
    return {"subjects": n, "related_only": related_only, "emergent_only": emergent_only,
            "sources": ["event"] if related_only else list(SOURCES),
            "note": ("lab grades carry no attribution: the related-only table counts adverse-event records "
                     f"only ({labs_left_out} graded lab results left out)") if related_only else
                    "worst grade per subject and term over adverse-event records and graded labs",
            "worst_grade": worst,
            "worst_grade_source": {sid: {t: _source_of(src, max(src.values()) or 1) or "event"
                                         for t, src in terms.items()} for sid, terms in per.items()},
            "table": rows}


def _pct(k: int, n: int) -> float:
    return round(100.0 * k / n, 1) if n else 0.0


def summary_csv(summary: Mapping[str, Any], path: str | Path) -> None:
    """The incidence table as CSV, one value per column (counts and percentages apart)."""
    with Path(path).open("w", newline="", encoding="utf-8") as fh:
        w = csv_writer(fh)  # no spreadsheet formulas from event terms
        w.writerow(["term", "adverse_event", "subjects", "any_grade_n", "any_grade_pct", "grade_3_plus_n",
                    "grade_3_plus_pct", "grade_3_plus_from_events", "grade_3_plus_from_labs", "grade_3_plus_from_both",
                    "emergence_unknown_n"])
        for r in summary["table"]:
            by = r["grade_3_plus_by_source"]
            w.writerow([r["term"], r["label"], summary["subjects"], r["any_grade_n"], r["any_grade_pct"],
                        r["grade_3_plus_n"], r["grade_3_plus_pct"], by["event"], by["lab"], by["both"],
                        r["emergence_unknown_n"]])