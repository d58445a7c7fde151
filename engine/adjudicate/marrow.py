"""Adjudicating marrow results: every on-study assessment (and the death) under one or all
response profiles, and the subject's response course.

Each profile's pack has a `course:` section: the pack decides which events are the course's
items, what each item is (its per-item decision), how the state moves from one item to the next
(remission, pending relapse, relapse, MRD monitoring) and the course outputs (landmark, best
response, CRc date, EFS, DFS). This module reads the record, hands the pack the subject's timeline
(engine/facts/timeline.py), runs the fold (engine/evaluate/course.py), and turns the results into
the report and the audit entries; it holds no category, count, window or threshold. How an item is
shown (which decision, which fields as flags) is the pack's `course.report`.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from engine.adjudicate.common import parse_params as common_parse_params, audit_entry, input_snapshot
from engine.errors import InputError
from engine.evaluate.course import CourseResult, ItemResult, run_course
from engine.evaluate.facts import FactSheet, check_types
from engine.evaluate.run import Evaluator, PackResult, resolve_params
from engine.evaluate.values import to_json
from engine.facts.marrow import course_inputs
from engine.record import SubjectRecord
from engine.rules.load import Pack, Registry



def profiles_of(registry: Registry) -> dict[str, str]:
    """The trial's response profiles (profile -> pack id, the primary first), from its protocol."""
    return registry.trial().profile_packs()

INDETERMINATE = "INDETERMINATE"     # the engine's word for an undecided per-item decision


@dataclass(frozen=True)
class Item:
    """One folded item: its event id, date, kind and (when the pack derives it) cycle."""
    id: str
    date: dt.date
    kind: str
    cycle: int | None = None


@dataclass
class ProfileOutcome:
    """One item under one profile: the category (or INDETERMINATE with candidates), its flags,
    the state after it and the questions it leaves pending."""
    profile: str
    item: Item
    category: str
    candidates: list[str]
    fields: dict[str, Any]
    candidate_fields: list[dict[str, Any]]
    missing: list[str]
    details: dict[str, Any]
    result: PackResult
    sheet: FactSheet
    folded: ItemResult
    flag_names: list[str]
    review: list[str] = field(default_factory=list)
    decision_id: str | None = None

    @property
    def flags(self) -> dict[str, Any]:
        return {k: to_json(self.fields.get(k)) for k in self.flag_names}

    @property
    def pending(self) -> dict[str, Any]:
        return self.folded.pending()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "pack": self.result.pack, "category": self.category, "candidates": self.candidates,
            "flags": self.flags, **self.details, "parameters": self.result.parameters,
            "state": self.folded.state_json(), "moved_by": self.folded.moved,
            "rules": self.result.trace(), "decision_id": self.decision_id,
        }
        if self.missing:
            d["missing"] = self.missing
        if self.pending:
            d["pending"] = self.pending
        if self.folded.resolved:
            d["resolved"] = self.folded.resolved
        if self.review:
            d["review"] = self.review
        return d


def parse_params(pairs: Iterable[str], registry: Registry) -> dict[str, dict[str, str]]:
    """`PACK.NAME=VALUE` (PACK = a profile name or a response pack id) -> {pack id: {name: value}}."""
    profiles = profiles_of(registry)
    return common_parse_params(pairs, list(profiles.values()), profiles)


def _split(text: Any) -> list[str]:
    return [c for c in str(text).split("|") if c] if text else []


def _outcome(profile: str, pack: Pack, it: ItemResult) -> ProfileOutcome:
    rep = pack.manifest.course.report
    res = it.result.decisions[rep.item]
    cands = [c for c in res.candidates if isinstance(c, dict)]
    fields = dict(res.fields)
    if res.status == "decided" and isinstance(res.value, dict):
        category = str(res.value.get("category"))
        candidates = _split(res.value.get("candidates"))
    else:
        cats = list(dict.fromkeys(str(c.get("category")) for c in cands))
        category = cats[0] if len(cats) == 1 else INDETERMINATE
        candidates = cats if len(cats) > 1 else []
    details: dict[str, Any] = {}   # other decisions, flattened as `<decision>_<field>` (e.g. mrd_status)
    for did in rep.details:
        d = it.result.decisions[did]
        shapes = [c for c in d.candidates if isinstance(c, dict)]
        if d.status == "decided" and not isinstance(d.value, dict):
            details[did] = to_json(d.value)
        for k in sorted(set().union(*shapes)) if shapes else ():
            details[f"{did}_{k}"] = to_json(d.fields.get(k))
    review: list[str] = []   # the pack's review flags: met rows' messages, unknown rows as possible
    for did in rep.review:
        d = it.result.decisions[did]
        review += [str(m) for m in d.value or []]
        review += [f"possibly: {m}" for m in (d.candidates if d.status != "decided" else [])]
    cycle = it.sheet.values.get("item.cycle")
    item = Item(it.event.id, it.event.date, it.event.kind, int(cycle) if cycle is not None else None)
    return ProfileOutcome(profile, item, category, candidates, fields, cands, list(res.missing), details,
                          it.result, it.sheet, it, list(rep.flags), review)


def _check_events(pack: Pack, timeline: Any, path: str | Path, subject: str) -> None:
    """Values of the wrong type or out of the pack's declared range are bad input (exit 2)."""
    kinds = {k.kind: k for k in pack.manifest.events}
    for e in timeline.events:
        k = kinds.get(e.kind)
        if k is None or not k.fields:
            continue
        sheet = FactSheet(dict(e.fields), dict(e.sources))
        try:
            check_types(sheet, k.fields, file=str(path), subject=subject)
        except InputError as exc:
            src = e.sources.get(exc.field or "", "")
            raise InputError(exc.detail, file=str(path), subject=subject,
                             field=src.split("#", 1)[1] if "#" in src else exc.field, expected=exc.expected) from None


@dataclass
class ProfileRun:
    profile: str
    pack: Pack
    course: CourseResult
    outcomes: list[ProfileOutcome]
    committee: dict[str, str] = field(default_factory=dict)   # item id -> committee decision folded over


def committee_fixed(pack: Pack, profile: str, committee: Mapping[str, Any] | None) -> dict[str, tuple[dict, str]]:
    """item id -> (the per-item outputs the committee fixed, its decision id), for this profile."""
    from engine.adjudicate.committee import fixed_outputs
    out: dict[str, tuple[dict, str]] = {}
    for key, c in (committee or {}).items():
        item, _, p = key.rpartition("/")
        if p == profile and item:
            facts = fixed_outputs(pack, c["given"])
            if facts:
                out[item] = (facts, c["decision_id"])
    return out


def adjudicate_profile(record: SubjectRecord, path: str | Path, profile: str, registry: Registry,
                       params: Mapping[str, Any] | None, evaluator: Evaluator | None,
                       inputs: tuple[FactSheet, Any] | None = None,
                       committee: Mapping[str, Any] | None = None) -> ProfileRun:
    """The subject's course under one profile: every item in date order, then the course outputs.
    `committee`: item key (`<item id>/<profile>`) -> the committee's decision in force; the course
    folds over the committee's outputs for those items (engine.adjudicate.committee.fixed_outputs)."""
    pack = registry.get(profiles_of(registry)[profile])
    resolved = resolve_params(pack, params)
    sheet, timeline = inputs or course_inputs(record, path, [registry.get(pid) for pid in profiles_of(registry).values()])
    check_types(sheet, pack.manifest.facts, file=str(path), subject=record.subject_id)
    _check_events(pack, timeline, path, record.subject_id)
    fixed = committee_fixed(pack, profile, committee)
    course = run_course(pack, sheet, timeline, resolved, evaluator, {k: v for k, (v, _) in fixed.items()})
    return ProfileRun(profile, pack, course, [_outcome(profile, pack, it) for it in course.items],
                      {k: d for k, (_, d) in fixed.items()})


# --- the use case: adjudicate, audit, report -------------------------------------------------

@dataclass
class SubjectMarrow:
    subject_id: str
    profiles: list[str]
    outcomes: dict[str, list[ProfileOutcome]] = field(default_factory=dict)
    courses: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: dict[str, ProfileRun] = field(default_factory=dict)


def adjudicate_subject(record: SubjectRecord, path: str | Path, registry: Registry,
                       profiles: list[str], params: Mapping[str, Mapping[str, Any]] | None = None,
                       evaluator: Evaluator | None = None,
                       committee: Mapping[str, Any] | None = None) -> SubjectMarrow:
    out = SubjectMarrow(record.subject_id, profiles)
    inputs = course_inputs(record, path, [registry.get(pid) for pid in profiles_of(registry).values()])
    for p in profiles:
        run = adjudicate_profile(record, path, p, registry, (params or {}).get(profiles_of(registry)[p]), evaluator, inputs,
                                 committee)
        out.runs[p] = run
        out.outcomes[p] = run.outcomes
        out.courses[p] = run.course.outputs(run.pack)
    return out


def _course_snapshot(run: ProfileRun) -> dict[str, Any]:
    """What the course decision read: each item's category, the state after it and the transition
    that moved each variable, the pending questions and their resolutions."""
    items = []
    for o in run.outcomes:
        row: dict[str, Any] = {"item": o.item.id, "date": o.item.date.isoformat(), "kind": o.item.kind,
                               "category": o.category, "state": o.folded.state_json(), "moved_by": o.folded.moved}
        if o.candidates:
            row["candidates"] = o.candidates
        if o.pending:
            row["pending"] = o.pending
        if o.folded.resolved:
            row["resolved"] = o.folded.resolved
        items.append(row)
    snap = input_snapshot(run.course.final_sheet)
    snap["items"] = items
    if run.committee:   # the course folded over the committee's decision on these items
        snap["committee"] = dict(run.committee)
    return snap


def audit_entries(sm: SubjectMarrow, assessment: str | None, actor: str) -> list[tuple[tuple[str, str], dict[str, Any]]]:
    """One audit entry per reported item (`<item id>/<profile>`), and per course (`course/<profile>`)."""
    entries = []
    for p, outs in sm.outcomes.items():
        for o in outs:
            if assessment is not None and o.item.id != assessment:
                continue
            outcome = {"category": o.category, "candidates": o.candidates, "flags": o.flags, **o.details,
                       "missing": o.missing, "state": o.folded.state_json(), "moved_by": o.folded.moved}
            if o.pending:
                outcome["pending"] = o.pending
            if o.folded.resolved:
                outcome["resolved"] = o.folded.resolved
            if o.review:
                outcome["review"] = o.review
            entries.append(((o.item.id, p), audit_entry(
                subject_id=sm.subject_id, use_case="marrow", item=f"{o.item.id}/{p}",
                snapshot=input_snapshot(o.sheet), results=[o.result], outcome=outcome, actor=actor)))
        if assessment is None:
            run = sm.runs[p]
            entries.append((("course", p), audit_entry(
                subject_id=sm.subject_id, use_case="marrow", item=f"course/{p}",
                snapshot=_course_snapshot(run), results=[run.course.final], outcome=sm.courses[p], actor=actor)))
    return entries


def cohort_entries(record: SubjectRecord, path: str | Path, registry: Registry,
                   params: Mapping[str, Mapping[str, Any]], evaluator: Evaluator | None, actor: str,
                   profiles: Iterable[str] | None = None,
                   committee: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Audit entries of every on-study item under each profile plus the course (no store);
    `committee`: the subject's committee decisions in force on marrows (the course folds over them)."""
    if record.on_study is None or not record.on_study.assessments:
        return []
    profiles = list(profiles_of(registry)) if profiles is None else list(profiles)
    sm = adjudicate_subject(record, path, registry, profiles, params, evaluator, committee)
    return [e for _, e in audit_entries(sm, None, actor)]


def report(sm: SubjectMarrow, assessment: str | None) -> dict[str, Any]:
    """The `--json` document: one item, or every item in date order plus the course."""
    def item_doc(item_id: str) -> dict[str, Any]:
        first = next(o for p in sm.profiles for o in sm.outcomes[p] if o.item.id == item_id)
        return {"assessment_id": item_id, "date": first.item.date.isoformat(), "kind": first.item.kind,
                "cycle": first.item.cycle,
                "profiles": {p: o.to_dict() for p in sm.profiles for o in sm.outcomes[p] if o.item.id == item_id}}

    ids = list(dict.fromkeys(o.item.id for p in sm.profiles for o in sm.outcomes[p]))
    if assessment is not None:
        return {"subject_id": sm.subject_id, **item_doc(assessment)}
    return {"subject_id": sm.subject_id, "assessments": [item_doc(i) for i in ids],
            "course": {p: sm.courses[p] for p in sm.profiles}}


def item_ids(record: SubjectRecord, path: str | Path, registry: Registry, profiles: list[str]) -> list[str]:
    """The ids of the items the profiles fold over (for checking --assessment)."""
    from engine.evaluate.collections import ElementEvaluator
    from engine.evaluate.course import select_items
    from engine.evaluate.reference import ReferenceEvaluator
    sheet, timeline = course_inputs(record, path, [registry.get(pid) for pid in profiles_of(registry).values()])
    ids: list[str] = []
    for p in profiles:
        pack = registry.get(profiles_of(registry)[p])
        params = resolve_params(pack)
        el = ElementEvaluator(pack, params, ReferenceEvaluator())
        for e in select_items(pack, sheet, timeline, params, el)[0]:
            if e.id not in ids:
                ids.append(e.id)
    return ids


def run_marrow(subject_file: str | Path, registry: Registry, profile: str, assessment: str | None,
               param_args: Iterable[str], db: str | None, actor: str,
               evaluator: Evaluator | None = None) -> dict[str, Any]:
    """The `adjudicator marrow` use case: load, adjudicate, audit (one transaction), report."""
    from engine.audit import AuditStore
    from engine.record import load_subject

    params = parse_params(param_args, registry)
    record = load_subject(subject_file)
    from engine.adjudicate.common import check_trial
    check_trial(record, registry, subject_file)
    known = profiles_of(registry)
    profiles = list(known) if profile == "all" else [profile]
    if profile not in known and profile != "all":
        raise InputError(f"unknown profile {profile!r}", field="--profile",
                         expected=", ".join(known) + f" or all (trial {registry.trial().id})")
    with AuditStore.open(db) as store:   # the committee's decisions in force on this subject's marrows
        from engine.adjudicate.committee import Overrides, marrow_decisions
        committee = marrow_decisions(Overrides(store)).get(record.subject_id)
    sm = adjudicate_subject(record, subject_file, registry, profiles, params, evaluator, committee)
    ids = list(dict.fromkeys(o.item.id for p in profiles for o in sm.outcomes[p]))
    if assessment is not None and assessment not in ids:
        raise InputError(f"no on-study assessment {assessment!r}", file=str(subject_file), subject=record.subject_id,
                         field="--assessment", expected="one of " + (", ".join(ids) or "(none)"))
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
