"""Subject record + one on-study assessment (or the death) -> the fact sheet the response packs read.

Only structure lives here: which marrow is the pretreatment one, how many days lie between two
dates, which cycle an assessment belongs to, and the `prior.*` state carried over from the earlier
assessments' adjudicated outputs (`remission`, `relapse`, `mrd_relapse`, MRD status). Every
threshold (blasts, counts, MRD, windows) is in the packs. Sources are `file#dotted.field`.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.evaluate.facts import FactSheet
from engine.record import SubjectRecord, field_source
from engine.record.assessments import Assessment
from engine.record.history import Cycle, Relapse


@dataclass(frozen=True)
class Item:
    """One thing to adjudicate: an on-study assessment, or the subject's death."""
    id: str
    date: dt.date
    kind: str                       # marrow | death
    index: int | None = None        # position in on_study.assessments
    cycle: int | None = None


@dataclass
class PriorState:
    """What the earlier assessments of the same profile established (None = unknown)."""
    remission: bool | None = False
    mrd_negative_remission: bool | None = False
    mrd_positive_streak: int | None = 0

    def facts(self) -> dict[str, Any]:
        return {"prior.remission": self.remission,
                "prior.mrd_negative_remission": self.mrd_negative_remission,
                "prior.mrd_positive_streak": self.mrd_positive_streak}


def cycle_of(record: SubjectRecord, date: dt.date, stated: int | None) -> int | None:
    """The cycle an assessment belongs to: as recorded, else the last cycle begun on or before it."""
    if stated is not None:
        return stated
    os_ = record.on_study
    started = [c for c in (os_.cycles if os_ else []) if c.start_date <= date]
    return max((c.number for c in started), default=None)


def items(record: SubjectRecord) -> list[Item]:
    """On-study assessments after the first dose (the baseline marrow excluded) and the death, by date."""
    out: list[Item] = []
    os_ = record.on_study
    first = os_.first_dose_date if os_ else None
    for i, a in enumerate(os_.assessments if os_ else []):
        if is_pretreatment(a, first):
            continue
        out.append(Item(a.id, a.date, "marrow", i, cycle_of(record, a.date, a.cycle)))
    if record.death:
        out.append(Item("death", record.death.date, "death", None, cycle_of(record, record.death.date, None)))
    return sorted(out, key=lambda it: (it.date, it.kind != "marrow"))


def is_pretreatment(a: Assessment, first_dose: dt.date | None) -> bool:
    if first_dose is not None:
        return a.date <= first_dose and a.timepoint in (None, "baseline") or a.date < first_dose
    return a.timepoint == "baseline"


def pretreatment_blasts(record: SubjectRecord, path: str | Path) -> tuple[Any, str] | None:
    """The latest marrow blast count before the first dose: baseline assessments and the history."""
    os_ = record.on_study
    first = os_.first_dose_date if os_ else None
    found: list[tuple[dt.date, int, Any, str]] = []
    for i, a in enumerate(os_.assessments if os_ else []):
        if is_pretreatment(a, first) and a.marrow and a.marrow.blasts_pct is not None:
            found.append((a.date, 2, a.marrow.blasts_pct, f"on_study.assessments[{i}].marrow.blasts_pct"))
    for i, e in enumerate(record.treatment_history):
        if isinstance(e, Cycle):
            for part in ("marrow_before", "marrow_after"):
                m = getattr(e, part)
                if m and m.date and m.blasts_pct is not None and (first is None or m.date <= first):
                    found.append((m.date, 1, m.blasts_pct, f"treatment_history[{i}].{part}.blasts_pct"))
        elif isinstance(e, Relapse) and e.bm_blasts_pct is not None and (first is None or e.date <= first):
            found.append((e.date, 0, e.bm_blasts_pct, f"treatment_history[{i}].bm_blasts_pct"))
    if not found:
        return None
    date, _, value, where = max(found, key=lambda t: (t[0], t[1]))
    return value, field_source(path, where)


def marrow_sheet(record: SubjectRecord, path: str | Path, item: Item, prior: PriorState) -> FactSheet:
    """The facts of one item for one profile (prior state differs by profile)."""
    values: dict[str, Any] = {"assessment.kind": item.kind}
    sources: dict[str, str] = {"assessment.kind": field_source(path, "on_study.assessments" if item.kind == "marrow" else "death")}

    def put(name: str, value: Any, where: str) -> None:
        if value is not None:
            values[name] = value
            sources[name] = field_source(path, where)

    if item.kind == "marrow":
        assert record.on_study is not None and item.index is not None
        a = record.on_study.assessments[item.index]
        base = f"on_study.assessments[{item.index}]"
        put("marrow.present", a.marrow is not None, f"{base}.marrow")
        if a.marrow:
            m = a.marrow
            put("marrow.adequate", m.adequate, f"{base}.marrow.adequate")
            put("marrow.aplastic", m.aplastic, f"{base}.marrow.aplastic")
            put("marrow.blasts_pct", m.blasts_pct, f"{base}.marrow.blasts_pct")
            put("marrow.auer_rods", m.auer_rods, f"{base}.marrow.auer_rods")
            put("marrow.regenerating", m.regenerating_flag, f"{base}.marrow.regenerating_flag")
        if a.blood:
            b = a.blood
            put("blood.anc", b.anc_10e9_l, f"{base}.blood.anc_10e9_l")
            put("blood.platelets", b.platelets_10e9_l, f"{base}.blood.platelets_10e9_l")
            put("blood.blasts_pct", b.blasts_pct, f"{base}.blood.blasts_pct")
            dates = sorted({d for d in b.blood_blast_sample_dates if d <= a.date})
            if dates:
                put("blood.blast_sample_count", len(dates), f"{base}.blood.blood_blast_sample_dates")
                put("blood.blast_sample_span_days", (dates[-1] - dates[0]).days, f"{base}.blood.blood_blast_sample_dates")
        if a.last_platelet_transfusion_date is not None:
            put("transfusion.platelet_days_before", (a.date - a.last_platelet_transfusion_date).days,
                f"{base}.last_platelet_transfusion_date")
        put("transfusion.platelet_within_7d", a.platelet_transfusion_within_7d, f"{base}.platelet_transfusion_within_7d")
        put("transfusion.rbc_dependent", a.rbc_transfusion_dependent, f"{base}.rbc_transfusion_dependent")
        put("emd.status", a.extramedullary, f"{base}.extramedullary")
        if a.mrd:
            put("mrd.done", a.mrd.done, f"{base}.mrd.done")
            put("mrd.value_pct", a.mrd.value_pct, f"{base}.mrd.value_pct")
    else:
        d = record.death
        assert d is not None
        put("death.in_aplasia", d.in_aplasia, "death.in_aplasia")
        put("death.marrow_within_7d", d.marrow_within_7d, "death.marrow_within_7d")
        put("death.persistent_leukemia", d.persistent_leukemia, "death.persistent_leukemia")
        cycles = [(i, c) for i, c in enumerate(record.on_study.cycles if record.on_study else [])
                  if c.start_date <= d.date]
        if cycles:
            i, c = max(cycles, key=lambda t: t[1].start_date)
            put("death.cycle_day", (d.date - c.start_date).days + 1, f"death.date - on_study.cycles[{i}].start_date")
    pre = pretreatment_blasts(record, path)
    if pre is not None:
        values["pretreatment.blasts_pct"], sources["pretreatment.blasts_pct"] = pre
    for name, value in prior.facts().items():
        if value is not None:
            values[name] = value
            sources[name] = "adjudicated: earlier assessments of this profile"
    return FactSheet.of(values, sources)
