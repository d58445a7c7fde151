"""Adjudicating marrow results: one assessment under one or all response profiles, and the
subject's response course (cycle 1, end of cycle 2, best response, CRc / ORR / MRD flags, relapse,
EFS and DFS dates).

Assessments are adjudicated in date order per profile, because relapse needs the earlier
remission: each adjudication's outputs (`remission`, `relapse`, `mrd_relapse`, MRD status) set the
`prior.*` facts of the next. The course only orders and combines pack outputs (the `rank` field
of each category and its flags are pack data); it holds no clinical threshold.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from engine.adjudicate.common import parse_params as common_parse_params, audit_entry, input_snapshot
from engine.errors import InputError
from engine.evaluate.facts import FactSheet, check_types
from engine.evaluate.run import Evaluator, PackResult, evaluate_pack, resolve_params
from engine.facts.marrow import Item, PriorState, items, marrow_sheet
from engine.record import SubjectRecord
from engine.rules.load import Registry

PROFILES: dict[str, str] = {
    "eln-2017": "eln-2017-response",
    "eln-2022": "eln-2022-response",
    "trial": "vah-trial-response",
}
FLAGS = ("crc", "orr", "mrd_negative")


@dataclass
class ProfileOutcome:
    """One item under one profile: the category (or INDETERMINATE with candidates) and its flags."""
    profile: str
    item: Item
    category: str
    candidates: list[str]
    fields: dict[str, Any]
    candidate_fields: list[dict[str, Any]]
    missing: list[str]
    mrd_status: str | None
    result: PackResult
    sheet: FactSheet
    decision_id: str | None = None

    @property
    def flags(self) -> dict[str, Any]:
        return {k: self.fields.get(k) for k in FLAGS}

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "pack": self.result.pack, "category": self.category, "candidates": self.candidates,
            "flags": self.flags, "mrd_status": self.mrd_status, "parameters": self.result.parameters,
            "rules": self.result.trace(), "decision_id": self.decision_id,
        }
        if self.missing:
            d["missing"] = self.missing
        if self.fields.get("review"):
            d["review"] = self.fields["review"]
        return d


def parse_params(pairs: Iterable[str]) -> dict[str, dict[str, str]]:
    """`PACK.NAME=VALUE` (PACK = a profile name or a response pack id) -> {pack id: {name: value}}."""
    return common_parse_params(pairs, list(PROFILES.values()), PROFILES)


def _outcome(profile: str, item: Item, result: PackResult, sheet: FactSheet) -> ProfileOutcome:
    res = result.decisions["response"]
    mrd = result.decisions["mrd"]
    cands = [c for c in res.candidates if isinstance(c, dict)]
    fields = dict(res.fields)
    if res.status == "decided":
        category = res.value["category"]
        candidates = res.value["candidates"].split("|") if res.value.get("candidates") else []
    else:
        cats = list(dict.fromkeys(c["category"] for c in cands))
        category = cats[0] if len(cats) == 1 else "INDETERMINATE"
        candidates = cats if len(cats) > 1 else []
    return ProfileOutcome(profile, item, category, candidates, fields, cands, list(res.missing),
                          (mrd.value or {}).get("status") if mrd.status == "decided" else None,
                          result, sheet)


def _next_prior(prior: PriorState, out: ProfileOutcome) -> PriorState:
    """Carry remission / MRD state forward from one adjudicated item to the next (three-valued):
    a relapse or death ends the remission; an undecided relapse makes it unknown; a remission
    output starts it; an MRD-negative remission starts the MRD watch, whose positive streak counts
    consecutive MRD-positive samples (the pack decides what is positive)."""
    f = out.fields
    if f.get("relapse") is True or f.get("death") is True:
        return PriorState(False, False, 0)
    remission, mrd_neg, streak = prior.remission, prior.mrd_negative_remission, prior.mrd_positive_streak
    if f.get("remission") is True:
        remission = True
    elif f.get("remission") is None and remission is not True:
        remission = None
    if f.get("relapse") is None and remission is not False:
        remission = None
    if f.get("mrd_relapse") is True:
        return PriorState(remission, False, 0)
    if f.get("remission") is True and out.mrd_status == "negative":
        return PriorState(remission, True, 0)
    if mrd_neg:
        if out.mrd_status == "positive":
            streak = None if streak is None else streak + 1
        elif out.mrd_status == "negative":
            streak = 0
        elif out.mrd_status is None:
            streak = None
    return PriorState(remission, mrd_neg, streak)


def adjudicate_profile(record: SubjectRecord, path: str | Path, profile: str, registry: Registry,
                       params: Mapping[str, Any] | None, evaluator: Evaluator | None) -> list[ProfileOutcome]:
    """Every item of the subject under one profile, in date order (prior state carried forward)."""
    pack = registry.get(PROFILES[profile])
    resolved = resolve_params(pack, params)
    prior = PriorState()
    out: list[ProfileOutcome] = []
    for it in items(record):
        sheet = marrow_sheet(record, path, it, prior)
        check_types(sheet, pack.manifest.facts, file=str(path), subject=record.subject_id)
        result, full = evaluate_pack(pack, sheet, resolved, evaluator)
        oc = _outcome(profile, it, result, sheet)
        out.append(oc)
        prior = _next_prior(prior, oc)
    return out


# --- the response course ---------------------------------------------------------------------

def _ranks(o: ProfileOutcome) -> list[int]:
    if "rank" in o.fields:
        return [int(o.fields["rank"])]
    return [int(c["rank"]) for c in o.candidate_fields if c.get("rank") is not None]


def _any3(values: Iterable[Any]) -> bool | None:
    vals = list(values)
    if any(v is True for v in vals):
        return True
    return None if any(v is None for v in vals) else False


def best_response(outcomes: list[ProfileOutcome]) -> dict[str, Any]:
    """The highest-ranked category (pack `rank`), earliest on ties; no item = a failure (NOT_EVALUABLE)."""
    decided = [o for o in outcomes if "rank" in o.fields and o.category != "INDETERMINATE"]
    best = None
    for o in decided:
        if best is None or o.fields["rank"] > best.fields["rank"]:
            best = o
    top = best.fields["rank"] if best else -1
    if any(max(_ranks(o), default=-1) > top for o in outcomes if o not in decided):
        category, assessment = "INDETERMINATE", None
    elif best is None:
        category, assessment = "NOT_EVALUABLE", None
    else:
        category, assessment = best.category, best.item.id
    return {"category": category, "assessment_id": assessment,
            "crc": _any3(o.fields.get("crc") for o in outcomes) if outcomes else False,
            "orr": _any3(o.fields.get("orr") for o in outcomes) if outcomes else False}


def _first_date(outcomes: list[ProfileOutcome], flag: str, after: dt.date | None = None) -> dt.date | None:
    for o in outcomes:
        if o.fields.get(flag) is True and (after is None or o.item.date > after):
            return o.item.date
    return None


def response_course(record: SubjectRecord, outcomes: list[ProfileOutcome]) -> dict[str, Any]:
    """Issue item 5: cycle-1 and end-of-cycle-2 response (primary endpoint), best response, flags, dates."""
    os_ = record.on_study
    day1 = os_.first_dose_date if os_ else None
    c1 = [o for o in outcomes if o.item.cycle is not None and o.item.cycle <= 1]
    c2 = [o for o in outcomes if o.item.cycle is not None and o.item.cycle <= 2]
    by_c2 = best_response(c2)
    crc_items = [o for o in outcomes if o.fields.get("crc") is True]
    crc_date = crc_items[0].item.date if crc_items else None
    relapse_date = _first_date(outcomes, "relapse", None) if crc_date else None
    if relapse_date and crc_date and relapse_date <= crc_date:
        relapse_date = _first_date(outcomes, "relapse", crc_date)
    mrd_relapse_date = _first_date(outcomes, "mrd_relapse", crc_date) if crc_date else None
    death_date = record.death.date if record.death else None
    relapse_unknown = bool(crc_date) and not relapse_date and any(
        o.fields.get("relapse") is None for o in outcomes if o.item.date > crc_date)
    mrd_neg = (True if any(o.fields.get("mrd_negative") is True for o in crc_items)
               else None if not crc_items or any(o.fields.get("mrd_negative") is None for o in crc_items)
               else False)

    # EFS: failure to achieve CRc by the end of cycle 2 (documented on the last marrow of the landmark),
    # relapse after CRc, or death, whichever first.
    events: list[tuple[dt.date, str, dt.date | None]] = []
    failure_unknown = by_c2["crc"] is None
    if by_c2["crc"] is False:
        marrows = [o.item.date for o in c2 if o.item.kind == "marrow"]
        documented = max(marrows) if marrows else death_date
        if documented:
            events.append((documented, "failure_to_achieve_crc", day1))
    if relapse_date:
        events.append((relapse_date, "relapse", relapse_date))
    if death_date:
        events.append((death_date, "death", death_date))
    events.sort(key=lambda e: e[0])
    if failure_unknown and not (events and events[0][1] != "failure_to_achieve_crc"):
        efs: dict[str, Any] = {"event": None, "type": None, "date": None, "date_eln2022": None,
                               "note": "CRc by the end of cycle 2 is indeterminate"}
    elif events:
        d, kind, eln = events[0]
        efs = {"event": True, "type": kind, "date": d.isoformat(),
               "date_eln2022": (eln or d).isoformat()}
    elif relapse_unknown:
        efs = {"event": None, "type": None, "date": None, "date_eln2022": None,
               "note": "a relapse after CRc is indeterminate"}
    else:
        last = record.last_contact_date
        efs = {"event": False, "type": None, "date": last.isoformat() if last else None, "date_eln2022": None}
    if crc_date:
        ends = [(d, k) for d, k in ((relapse_date, "relapse"), (death_date, "death")) if d]
        if relapse_unknown and not death_date:
            dfs = {"start": crc_date.isoformat(), "event": None, "type": None, "date": None,
                   "note": "a relapse after CRc is indeterminate"}
        elif ends:
            d, k = min(ends)
            dfs = {"start": crc_date.isoformat(), "event": True, "type": k, "date": d.isoformat()}
        else:
            last = record.last_contact_date
            dfs = {"start": crc_date.isoformat(), "event": False, "type": None, "date": last.isoformat() if last else None}
    else:
        dfs = None
    return {
        "after_cycle_1": best_response(c1),
        "by_end_of_cycle_2": by_c2,
        "primary_endpoint_crc": by_c2["crc"],
        "best_response": best_response(outcomes),
        "flags": {"crc": _any3(o.fields.get("crc") for o in outcomes) if outcomes else False,
                  "orr": _any3(o.fields.get("orr") for o in outcomes) if outcomes else False,
                  "mrd_negative": mrd_neg},
        "crc_date": crc_date.isoformat() if crc_date else None,
        "relapse_date": relapse_date.isoformat() if relapse_date else None,
        "relapse_indeterminate": relapse_unknown,
        "mrd_relapse_date": mrd_relapse_date.isoformat() if mrd_relapse_date else None,
        "death_date": death_date.isoformat() if death_date else None,
        "efs": efs,
        "dfs": dfs,
    }


# --- the use case: adjudicate, audit, report -------------------------------------------------

@dataclass
class SubjectMarrow:
    subject_id: str
    profiles: list[str]
    outcomes: dict[str, list[ProfileOutcome]] = field(default_factory=dict)
    courses: dict[str, dict[str, Any]] = field(default_factory=dict)


def adjudicate_subject(record: SubjectRecord, path: str | Path, registry: Registry,
                       profiles: list[str], params: Mapping[str, Mapping[str, Any]] | None = None,
                       evaluator: Evaluator | None = None) -> SubjectMarrow:
    out = SubjectMarrow(record.subject_id, profiles)
    for p in profiles:
        outs = adjudicate_profile(record, path, p, registry, (params or {}).get(PROFILES[p]), evaluator)
        out.outcomes[p] = outs
        out.courses[p] = response_course(record, outs)
    return out


def audit_entries(sm: SubjectMarrow, assessment: str | None, actor: str) -> list[tuple[tuple[str, str], dict[str, Any]]]:
    """One audit entry per reported adjudication (item `<assessment id>/<profile>`), and per course."""
    entries = []
    for p, outs in sm.outcomes.items():
        for o in outs:
            if assessment is not None and o.item.id != assessment:
                continue
            outcome = {"category": o.category, "candidates": o.candidates, "flags": o.flags,
                       "mrd_status": o.mrd_status, "missing": o.missing}
            entries.append(((o.item.id, p), audit_entry(
                subject_id=sm.subject_id, use_case="marrow", item=f"{o.item.id}/{p}",
                snapshot=input_snapshot(o.sheet), results=[o.result], outcome=outcome, actor=actor)))
        if assessment is None:
            entries.append((("course", p), audit_entry(
                subject_id=sm.subject_id, use_case="marrow", item=f"course/{p}",
                snapshot={"assessments": {o.item.id: o.category for o in outs}},
                results=[], outcome=sm.courses[p], actor=actor)))
    return entries


def cohort_entries(record: SubjectRecord, path: str | Path, registry: Registry,
                   params: Mapping[str, Mapping[str, Any]], evaluator: Evaluator | None, actor: str,
                   profiles: Iterable[str] = ("trial", "eln-2017", "eln-2022")) -> list[dict[str, Any]]:
    """Audit entries of every on-study marrow under each profile plus the course (no store)."""
    if record.on_study is None or not record.on_study.assessments:
        return []
    sm = adjudicate_subject(record, path, registry, list(profiles), params, evaluator)
    return [e for _, e in audit_entries(sm, None, actor)]


def report(sm: SubjectMarrow, assessment: str | None) -> dict[str, Any]:
    """The `--json` document: one assessment, or every assessment in date order plus the course."""
    def item_doc(item_id: str) -> dict[str, Any]:
        first = next(o for o in sm.outcomes[sm.profiles[0]] if o.item.id == item_id)
        return {"assessment_id": item_id, "date": first.item.date.isoformat(), "kind": first.item.kind,
                "cycle": first.item.cycle,
                "profiles": {p: next(o for o in sm.outcomes[p] if o.item.id == item_id).to_dict()
                             for p in sm.profiles}}

    ids = [o.item.id for o in sm.outcomes[sm.profiles[0]]]
    if assessment is not None:
        return {"subject_id": sm.subject_id, **item_doc(assessment)}
    return {"subject_id": sm.subject_id, "assessments": [item_doc(i) for i in ids],
            "course": {p: sm.courses[p] for p in sm.profiles}}


def run_marrow(subject_file: str | Path, registry: Registry, profile: str, assessment: str | None,
               param_args: Iterable[str], db: str | None, actor: str,
               evaluator: Evaluator | None = None) -> dict[str, Any]:
    """The `adjudicator marrow` use case: load, adjudicate, audit (one transaction), report."""
    from engine.audit import AuditStore
    from engine.record import load_subject

    params = parse_params(param_args)
    record = load_subject(subject_file)
    profiles = list(PROFILES) if profile == "all" else [profile]
    if profile not in PROFILES and profile != "all":
        raise InputError(f"unknown profile {profile!r}", field="--profile", expected="eln-2017, eln-2022, trial or all")
    ids = [it.id for it in items(record)]
    if assessment is not None and assessment not in ids:
        raise InputError(f"no on-study assessment {assessment!r}", file=str(subject_file), subject=record.subject_id,
                         field="--assessment", expected="one of " + (", ".join(ids) or "(none)"))
    sm = adjudicate_subject(record, subject_file, registry, profiles, params, evaluator)
    entries = audit_entries(sm, assessment, actor)
    with AuditStore.open(db) as store:
        stored = store.append([e for _, e in entries])
    ids_by_key = {key: s.decision_id for (key, _), s in zip(entries, stored)}
    for p, outs in sm.outcomes.items():
        for o in outs:
            o.decision_id = ids_by_key.get((o.item.id, p))
    doc = report(sm, assessment)
    if assessment is None:
        for p in profiles:
            doc["course"][p]["decision_id"] = ids_by_key.get(("course", p))
    return doc
