"""Follow-up of one enrolled subject: the follow-up pack's decisions (overall survival: event or
censoring, decided by the pack from the recorded death and last contact) and the dated timeline
that the committee's report draws (first dose, cycles, marrows, transplants, DLI, death, last
contact). One audit record per subject (use case `follow-up`); the report reads it from the
trail and never re-derives anything.

The outcome holds every decision of the pack (decided value, or null with the missing facts)
and the values of its derived facts (e.g. the days from day 1 to death or last contact): no
endpoint is named here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from engine.adjudicate.common import audit_entry, input_snapshot
from engine.evaluate.facts import FactSheet, check_types
from engine.evaluate.run import Evaluator, evaluate_pack
from engine.evaluate.values import to_json
from engine.facts.derive import derive
from engine.record import SubjectRecord
from engine.rules.load import Registry

USE_CASE = "follow-up"


def follow_up_sheet(record: SubjectRecord, path: str | Path, pack: Any) -> FactSheet:
    """The facts the follow-up pack declares, derived as its `from:` says, each with the record
    field it came from."""
    return derive(record, pack.manifest.facts, path)


def timeline(record: SubjectRecord) -> list[dict[str, Any]]:
    """Every dated on-study event, in date order: what the swimmer plot draws (data, not decisions)."""
    out: list[dict[str, Any]] = []
    os_ = record.on_study
    if os_ is not None:
        if os_.first_dose_date:
            out.append({"kind": "first_dose", "date": os_.first_dose_date.isoformat()})
        for c in os_.cycles:
            out.append({"kind": "cycle", "date": c.start_date.isoformat(), "number": c.number})
        for a in os_.assessments:
            out.append({"kind": "assessment", "date": a.date.isoformat(), "id": a.id, "cycle": a.cycle,
                        "timepoint": a.timepoint})
        if os_.last_dose_date:
            out.append({"kind": "last_dose", "date": os_.last_dose_date.isoformat()})
    for e in (record.follow_up.events if record.follow_up else []):
        item = {"kind": e.type, "date": e.date.isoformat()}
        if e.type == "hsct":
            item.update(hsct_kind=e.kind, number=e.number)
        out.append(item)
    if record.death:
        out.append({"kind": "death", "date": record.death.date.isoformat(), "cause": record.death.cause})
    if record.last_contact_date:
        out.append({"kind": "last_contact", "date": record.last_contact_date.isoformat()})
    order = {"first_dose": 0, "cycle": 1, "assessment": 2, "last_dose": 3, "hsct": 4, "dli": 5, "death": 6,
             "last_contact": 7}
    return sorted(out, key=lambda e: (e["date"], order[e["kind"]]))


def cohort_entries(record: SubjectRecord, path: str | Path, registry: Registry,
                   params: Mapping[str, Mapping[str, Any]], evaluator: Evaluator | None,
                   actor: str) -> list[dict[str, Any]]:
    """The follow-up audit entry of an enrolled subject (none without on-study data or without
    the follow-up pack in the rules folder)."""
    pack_id = registry.trial().optional_role("follow_up")
    pack = registry.packs.get(pack_id) if pack_id else None
    if pack is None or record.on_study is None:
        return []
    sheet = follow_up_sheet(record, path, pack)
    check_types(sheet, pack.manifest.facts, file=str(path), subject=record.subject_id)
    result, full = evaluate_pack(pack, sheet, params.get(pack.id), evaluator)
    outcome: dict[str, Any] = {}
    missing: dict[str, list[str]] = {}
    for did, d in result.decisions.items():
        outcome[did] = d.value if d.status == "decided" else None
        if d.missing:
            missing[did] = d.missing
    outcome["values"] = {d.name: to_json(full.values[d.name]) if d.name in full.values else None
                         for d in pack.manifest.derived}
    if missing:
        outcome["missing"] = missing
    snapshot = dict(input_snapshot(sheet), timeline=timeline(record))
    return [audit_entry(subject_id=record.subject_id, use_case=USE_CASE, item=None, snapshot=snapshot,
                        results=[result], outcome=outcome, actor=actor)]
