"""Today's subject record -> the subject's timeline: dated events of named kinds, each field with
the record field it came from (`file#path`). Structure only: which record part is which event,
its date, its fields under their documented names (docs/subject-record.md, "The timeline"). What an
event means - a remission, a relapse, the pretreatment marrow - is decided by the packs that read
these events through their collections and courses.

Kinds built here:
- `assessment`: every marrow / blood assessment: on study (`on_study.assessments`) and before it
  (stand-alone history marrows and the marrows before / after a history cycle), with the same fields;
- `blood_sample`: the blood of each assessment, and each date listed in `blood_blast_sample_dates`
  (a sample with blasts present) - one event per date;
- `cycle`: trial cycles (`cycle.line: study`) and history cycles (`cycle.line: prior`);
- `remission`, `relapse`, `hsct`, `dli`: the history entries;
- `death`.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from engine.evaluate.events import Event, Timeline
from engine.record import SubjectRecord, field_source
from engine.record.assessments import Assessment
from engine.record.history import Cycle, Dli, HistoryMarrow, Hsct, Relapse, Remission

# order hints within one date: a marrow before a cycle precedes it, a marrow after it follows it
BEFORE, AT, AFTER = -1, 0, 1


class _Events:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.events: list[Event] = []

    def add(self, kind: str, date: dt.date, eid: str, fields: dict[str, tuple[Any, str]], order: int = AT) -> Event:
        """`fields`: name -> (value, record path); unrecorded (None) values are left out."""
        vals = {k: v for k, (v, _) in fields.items() if v is not None}
        srcs = {k: field_source(self.path, p) for k, (v, p) in fields.items() if v is not None}
        e = Event.of(kind, date, eid, vals, srcs, order)
        self.events.append(e)
        return e


def assessment_fields(a: Any, base: str, line: str) -> dict[str, tuple[Any, str]]:
    """The fields of one assessment (on study, or an earlier marrow of the same shape); `line` says
    where it is recorded: `study` (the trial's assessments) or `prior` (the treatment history)."""
    f: dict[str, tuple[Any, str]] = {
        "assessment.line": (line, base),
        "assessment.timepoint": (getattr(a, "timepoint", None), f"{base}.timepoint"),
        "assessment.cycle": (getattr(a, "cycle", None), f"{base}.cycle"),
        "marrow.present": (a.marrow is not None, f"{base}.marrow"),
        "transfusion.platelet_within_7d": (a.platelet_transfusion_within_7d, f"{base}.platelet_transfusion_within_7d"),
        "transfusion.platelet_last_date": (a.last_platelet_transfusion_date, f"{base}.last_platelet_transfusion_date"),
        "transfusion.rbc_dependent": (a.rbc_transfusion_dependent, f"{base}.rbc_transfusion_dependent"),
        "emd.status": (a.extramedullary, f"{base}.extramedullary"),
    }
    m = a.marrow
    if m is not None:
        mb = f"{base}.marrow"
        f.update({
            "marrow.adequate": (m.adequate, f"{mb}.adequate"), "marrow.aplastic": (m.aplastic, f"{mb}.aplastic"),
            "marrow.blasts_pct": (m.blasts_pct, f"{mb}.blasts_pct"), "marrow.auer_rods": (m.auer_rods, f"{mb}.auer_rods"),
            "marrow.regenerating": (m.regenerating_flag, f"{mb}.regenerating_flag"),
            "marrow.spicules": (m.spicules, f"{mb}.spicules"),
            "marrow.cellularity_pct": (m.cellularity_pct, f"{mb}.cellularity_pct"),
            "marrow.cells_counted": (m.cells_counted, f"{mb}.cells_counted"),
        })
    b = a.blood
    if b is not None:
        bb = f"{base}.blood"
        f.update({
            "blood.anc": (b.anc_10e9_l, f"{bb}.anc_10e9_l"), "blood.platelets": (b.platelets_10e9_l, f"{bb}.platelets_10e9_l"),
            "blood.hb": (b.hb_g_dl, f"{bb}.hb_g_dl"), "blood.wbc": (b.wbc_10e9_l, f"{bb}.wbc_10e9_l"),
            "blood.blasts_pct": (b.blasts_pct, f"{bb}.blasts_pct"),
        })
    mrd = a.mrd
    if mrd is not None:
        md = f"{base}.mrd"
        f.update({"mrd.done": (mrd.done, f"{md}.done"), "mrd.value_pct": (mrd.value_pct, f"{md}.value_pct"),
                  "mrd.method": (mrd.method, f"{md}.method"), "mrd.sensitivity": (mrd.sensitivity, f"{md}.sensitivity")})
    site = getattr(a, "site_response", None)
    if site is not None:
        f["assessment.site_response"] = (site, f"{base}.site_response")
    return f


def _blood_samples(ev: _Events, assessments: list[tuple[Assessment, str, str]]) -> None:
    """One blood_sample per date: an assessment's blood, plus the dates listed as samples with
    blasts (merged into the assessment's sample on the same date)."""
    by_date: dict[dt.date, dict[str, tuple[Any, str]]] = {}
    ids: dict[dt.date, str] = {}
    for a, base, aid in assessments:
        if a.blood is None:
            continue
        bb = f"{base}.blood"
        fields = by_date.setdefault(a.date, {})
        ids.setdefault(a.date, f"{aid}:blood")
        for name, value, src in (("blood.blasts_pct", a.blood.blasts_pct, f"{bb}.blasts_pct"),
                                 ("blood.anc", a.blood.anc_10e9_l, f"{bb}.anc_10e9_l"),
                                 ("blood.platelets", a.blood.platelets_10e9_l, f"{bb}.platelets_10e9_l")):
            if value is not None:
                fields.setdefault(name, (value, src))
    for a, base, aid in assessments:
        if a.blood is None:
            continue
        for j, d in enumerate(a.blood.blood_blast_sample_dates):
            fields = by_date.setdefault(d, {})
            ids.setdefault(d, f"blood sample {d.isoformat()}")
            fields.setdefault("blood.blasts_present", (True, f"{base}.blood.blood_blast_sample_dates[{j}]"))
    for d in sorted(by_date):
        ev.add("blood_sample", d, ids[d], by_date[d])


def subject_timeline(record: SubjectRecord, path: str | Path = "<record>") -> Timeline:
    """Every dated event of the record that a pack may read."""
    ev = _Events(path)
    assessments: list[tuple[Assessment, str, str]] = []
    os_ = record.on_study
    for i, a in enumerate(os_.assessments if os_ else []):
        base = f"on_study.assessments[{i}]"
        fields = assessment_fields(a, base, "study")
        ev.add("assessment", a.date, a.id, fields)
        assessments.append((a, base, a.id))
    for i, c in enumerate(os_.cycles if os_ else []):
        ev.add("cycle", c.start_date, f"cycle {c.number}", {
            "cycle.line": ("study", f"on_study.cycles[{i}]"), "cycle.number": (c.number, f"on_study.cycles[{i}].number")})
    for i, t in enumerate((os_.transfusions if os_ else None) or []):
        ev.add("transfusion", t.date, f"transfusion {i + 1}",
               {"transfusion.product": (t.product, f"on_study.transfusions[{i}].product")})
    _history_events(record, ev, assessments)
    _blood_samples(ev, assessments)
    d = record.death
    if d is not None:
        ev.add("death", d.date, "death", {
            "death.in_aplasia": (d.in_aplasia, "death.in_aplasia"),
            "death.marrow_within_7d": (d.marrow_within_7d, "death.marrow_within_7d"),
            "death.persistent_leukemia": (d.persistent_leukemia, "death.persistent_leukemia")})
    # a listing the record does not hold was not collected: quantifiers over it stay unknown
    incomplete = {"transfusion": "on_study.transfusions"} if os_ is None or os_.transfusions is None else {}
    return Timeline(ev.events, incomplete)


def _history_events(record: SubjectRecord, ev: _Events, assessments: list) -> None:
    """The prior-therapy timeline: cycles, the marrows before and after them, stand-alone marrows,
    remissions, relapses, transplants and DLI, each under its own kind."""
    for i, e in enumerate(record.treatment_history):
        base = f"treatment_history[{i}]"
        if isinstance(e, Cycle):
            ev.add("cycle", e.start_date, e.id or base, {
                "cycle.line": ("prior", base), "cycle.intensity": (e.intensity, f"{base}.intensity"),
                "cycle.phase": (e.phase, f"{base}.phase"), "cycle.regimen": (e.regimen, f"{base}.regimen"),
                **{f"cycle.agent.{a}": (v, f"{base}.agents.{a}") for a, v in e.agents.items()}})
            for part, order in (("marrow_before", BEFORE), ("marrow_after", AFTER)):
                m = getattr(e, part)
                if m is None:
                    continue
                mb = f"{base}.{part}"
                # undated: placed on the cycle's start, before or after it
                _earlier_marrow(ev, assessments, m, m.date or e.start_date, f"{e.id or base}:{part}", mb, order)
        elif isinstance(e, HistoryMarrow):
            _earlier_marrow(ev, assessments, e, e.date, e.id or base, base, AT)
        elif isinstance(e, Remission):
            ev.add("remission", e.date, base, {"remission.kind": (e.kind, f"{base}.kind"),
                                               "remission.mrd_negative": (e.mrd_negative, f"{base}.mrd_negative")})
        elif isinstance(e, Relapse):
            ev.add("relapse", e.date, base, {
                "relapse.marrow": ("marrow" in e.sites, f"{base}.sites"),
                "relapse.blood": ("blood" in e.sites, f"{base}.sites"),
                "relapse.extramedullary": ("extramedullary" in e.sites, f"{base}.sites"),
                "relapse.bm_blasts_pct": (e.bm_blasts_pct, f"{base}.bm_blasts_pct"),
                "relapse.mrd_only": (e.mrd_only, f"{base}.mrd_only")})
        elif isinstance(e, Hsct):
            ev.add("hsct", e.date, base, {"hsct.kind": (e.kind, f"{base}.kind"), "hsct.number": (e.number, f"{base}.number"),
                                          "hsct.disease_status": (e.disease_status_at_hsct, f"{base}.disease_status_at_hsct")})
        elif isinstance(e, Dli):
            ev.add("dli", e.date, base, {})


def _earlier_marrow(ev: _Events, assessments: list, m: Any, date: dt.date, eid: str, base: str, order: int) -> None:
    fields = assessment_fields(m, base, "prior")
    fields["marrow.present"] = (True, base)      # an earlier marrow entry is a marrow
    if m.blasts_pct is not None:                  # the shorthand names its own field
        fields["marrow.blasts_pct"] = (m.blasts_pct, f"{base}.blasts_pct")
    if m.mrd_pct is not None:
        fields["mrd.value_pct"] = (m.mrd_pct, f"{base}.mrd_pct")
        fields["mrd.done"] = (True, f"{base}.mrd_pct")
    if m.response is not None:
        fields["assessment.site_response"] = (m.response, f"{base}.response")
    ev.add("assessment", date, eid, fields, order)
    if m.blood is not None:
        assessments.append((_Dated(m, date), base, eid))


class _Dated:
    """An earlier marrow seen with a date (undated ones take their cycle's)."""

    def __init__(self, m: Any, date: dt.date) -> None:
        self.blood, self.date = m.blood, date
