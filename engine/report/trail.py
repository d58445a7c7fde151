"""A run read back from the audit trail one subject at a time, with the committee's decisions in
force: what the report and `ae-summary --run` read instead of re-adjudicating anything."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterator

from engine.adjudicate.committee import Overrides, key_of
from engine.report.summary import COURSE_PREFIX, subject_rows


@dataclass
class Decision:
    """One decision of the run: the machine's record and, when one is in force, the committee's."""
    row: dict[str, Any]                       # the machine's record (JSON columns as text)
    committee: dict[str, Any] | None = None   # the committee's record in force, if any
    store: Any = field(default=None, repr=False)   # the trail it was read from (run parameters, pack copies)

    @property
    def outcome(self) -> Any:
        """The outcome in force (the committee's when there is one)."""
        return json.loads((self.committee or self.row)["outcome"])

    @property
    def machine_outcome(self) -> Any:
        return json.loads(self.row["outcome"])

    @property
    def decision_id(self) -> str:
        return (self.committee or self.row)["decision_id"]

    @property
    def trace(self) -> list[dict[str, Any]]:
        """The recorded rule outcomes [{pack, rule, outcome}] (either record format; the values
        read are `explained_trace`'s)."""
        from engine.audit.compact import trace_rows
        return trace_rows(json.loads(self.row["trace"] or "[]"))

    def explained_trace(self, registry: Any, store: Any = None) -> list[dict[str, Any]]:
        """Every rule's outcome with the values it read and what an unknown one misses
        (engine.audit.explain: recomputed from the record's facts with the pinned pack)."""
        from engine.audit.explain import explain
        return explain(self.row, registry, store=store if store is not None else self.store).trace

    @property
    def input(self) -> Any:
        return json.loads(self.row["input"] or "{}")

    @property
    def packs(self) -> list[dict[str, str]]:
        return json.loads(self.row["packs"] or "[]")


@dataclass
class SubjectTrail:
    """Every decision of one subject in a run, by use case, in force."""
    subject_id: str
    screen: Decision | None = None
    marrow: dict[tuple[str, str], Decision] = field(default_factory=dict)   # (assessment, profile)
    course: dict[str, Decision] = field(default_factory=dict)               # profile
    follow_up: Decision | None = None
    events: list[Decision] = field(default_factory=list)                    # graded adverse events
    labs: list[Decision] = field(default_factory=list)                      # graded labs
    other: list[Decision] = field(default_factory=list)                     # TLS, dosing, ...
    overrides: list[dict[str, Any]] = field(default_factory=list)           # every committee record of the subject

    def decisions(self) -> list[Decision]:
        out = ([self.screen] if self.screen else []) + list(self.marrow.values()) + list(self.course.values())
        return out + ([self.follow_up] if self.follow_up else []) + self.events + self.labs + self.other

    @property
    def enrolled(self) -> bool:
        return self.screen is not None and self.screen.outcome.get("verdict") == "ELIGIBLE" or (
            self.screen is None and bool(self.marrow or self.follow_up))

    def safety_doc(self) -> dict[str, Any]:
        """The subject's graded events and labs in the shape `adjudicate.safety.summarize` reads,
        with the committee's adjudicated attribution where one is in force."""
        items = []
        for d in self.events + self.labs:
            o = dict(d.outcome) if d.committee is None or "term" in d.outcome else dict(d.machine_outcome)
            if d.committee is not None and "term" not in d.outcome:   # an attribution-only adjudication
                adj = d.outcome.get("attribution", {}).get("adjudicated") or d.outcome
                o["attribution"] = dict(o.get("attribution") or {}, adjudicated={
                    "treatment_related": adj.get("treatment_related"), "per_drug": adj.get("per_drug"),
                    "reviewer": d.committee["reviewer"], "reason": d.committee["reason"],
                    "decision_id": d.committee["decision_id"]})
            o.setdefault("kind", "event" if d in self.events else "lab")
            items.append(o)
        return {"subject_id": self.subject_id, "items": items}


def iter_subjects(store: Any, run_id: str, overrides: Overrides | None = None) -> Iterator[SubjectTrail]:
    """Each subject of the run (commit order) with its decisions in force."""
    overrides = overrides if overrides is not None else Overrides(store)
    for sid, rows in subject_rows(store, run_id):
        t = SubjectTrail(sid)
        for r in rows:
            if r["supersedes"] is not None:
                continue
            d = Decision(r, overrides.get(key_of(r)), store)
            uc, item = r["use_case"], r["item"] or ""
            if uc == "screen":
                t.screen = d
            elif uc == "marrow" and item.startswith(COURSE_PREFIX):
                t.course[item[len(COURSE_PREFIX):]] = d
            elif uc == "marrow":
                aid, _, profile = item.rpartition("/")
                t.marrow[(aid, profile)] = d
            elif uc == "follow-up":
                t.follow_up = d
            elif uc == "ae":
                t.events.append(d)
            elif uc == "ctcae-lab":
                t.labs.append(d)
            else:
                t.other.append(d)
        t.overrides = [r for k, chain in overrides.chain.items() if k[0] == sid for r in chain]
        yield t
