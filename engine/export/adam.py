"""`adjudicator export adam RUN -o DIR`: ADSL, ADRS, ADTTE, ADAE and ADLB of an adjudication run,
read from the verified audit trail with the committee's decisions in force (engine/report/trail.py,
the same reading the committee report uses; nothing is re-adjudicated), plus `metadata.json`
listing every dataset's variables, labels, types and derivations.

Every row carries DECID, the audit decision id it was read from (`adjudicator audit show
--decision DECID`; `audit verify` checks the chain holding it). Which outputs become which
variables and parameters is the export specification (engine/export/spec.py: YAML data); this
module only walks the trail. Unknown stays empty: a flag the trail leaves undecided is neither Y
nor N, an undecided time-to-event has no AVAL and no CNSR.
"""
from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

from engine.errors import InputError
from engine.export.spec import ExportSpec, ValueRef, Variable
from engine.sdtm.write import SUFFIX, Column, write_dataset

FORMATS = ("csv", "xpt", "parquet")
UNDECIDED = "UNDECIDED"


@dataclass
class ExportResult:
    run_id: str
    folder: Path
    files: dict[str, Path]
    rows: dict[str, int]
    metadata: Path
    chain_head: dict[str, Any] = field(default_factory=dict)


# --- reading values from decisions -------------------------------------------------------------------

def lookup(doc: Any, path: str | None) -> Any:
    """The value at a dotted path of nested dicts, whose keys may themselves hold dots (fact names
    such as `subject.age_years`): at each level the longest key that matches is taken. None when
    the path is absent."""
    if path is None:
        return None
    parts = path.split(".")
    node, i = doc, 0
    while i < len(parts):
        if not isinstance(node, dict):
            return None
        for j in range(len(parts), i, -1):
            key = ".".join(parts[i:j])
            if key in node:
                node, i = node[key], j
                break
        else:
            return None
    return node


def _doc(decision: Any) -> dict[str, Any] | None:
    return None if decision is None else {"outcome": decision.outcome, "input": decision.input}


def _timeline_date(decision: Any, kind: str, take: str) -> str | None:
    if decision is None:
        return None
    dates = [e.get("date") for e in (decision.input.get("timeline") or []) if e.get("kind") == kind and e.get("date")]
    if not dates:
        return None
    return dates[0] if take == "first" else dates[-1]


def _date(value: Any) -> dt.date | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def _yn(value: Any) -> str:
    return "Y" if value is True else ("N" if value is False else "")


# --- the datasets ------------------------------------------------------------------------------------------

class Exporter:
    def __init__(self, store: Any, run_id: str, registry: Any, spec: ExportSpec, lab_params: dict[str, tuple[str, str]]) -> None:
        from engine.facts.labmap import lab_map
        self.store, self.run_id, self.spec = store, run_id, spec
        self.labmap = lab_map(registry)
        self.lab_params = lab_params
        self.study = spec.study.get("STUDYID", "")
        self.rows: dict[str, list[dict[str, Any]]] = {d: [] for d in spec.datasets}

    def run(self) -> dict[str, list[dict[str, Any]]]:
        from engine.report.trail import iter_subjects
        for t in iter_subjects(self.store, self.run_id):
            self._adsl(t)
            self._adrs(t)
            self._adtte(t)
            self._adae(t)
            self._adlb(t)
        return self.rows

    def _source(self, t: Any, ref: ValueRef, profile: str | None = None) -> Any:
        if ref.study is not None:
            return self.spec.study.get(ref.study, "")
        if ref.const is not None:
            return ref.const
        if ref.engine is not None:
            return self._engine(t, ref.engine)
        decision = {"screen": t.screen, "follow-up": t.follow_up,
                    "course": t.course.get(profile) if profile else None}[ref.from_]
        if ref.timeline:
            return _timeline_date(decision, ref.timeline, ref.take)
        return lookup(_doc(decision), ref.path)

    def _engine(self, t: Any, name: str) -> Any:
        fu = t.follow_up
        return {"subject_id": t.subject_id, "screened": t.screen is not None, "enrolled": t.enrolled,
                "dosed": _timeline_date(fu, "first_dose", "first") is not None if fu else False,
                "died": "Y" if _timeline_date(fu, "death", "first") else "",
                "decision_id": (t.screen or fu).decision_id if (t.screen or fu) else "",
                "follow_up_decision_id": fu.decision_id if fu else ""}[name]

    def _value(self, var: Variable, raw: Any) -> Any:
        if var.map is not None and raw is not None:
            raw = var.map.get(str(raw), raw)
        if var.flag:
            return _yn(raw)
        if var.type == "date":
            return _date(raw)
        return raw

    def _adsl(self, t: Any) -> None:
        row = {}
        for var in self.spec.variables("ADSL"):
            row[var.name] = self._value(var, self._source(t, var.value, None) if var.value else None)
        self.rows["ADSL"].append(row)

    def _adrs(self, t: Any) -> None:
        a = self.spec.adrs
        base = {"STUDYID": self.study, "USUBJID": t.subject_id}
        dates: dict[tuple[str, str], Any] = {}
        if a.assessment:
            for (aid, profile), d in sorted(t.marrow.items(), key=lambda kv: (kv[0][1], str(lookup(_doc(kv[1]), a.assessment.date)))):
                doc = _doc(d)
                when = _date(lookup(doc, a.assessment.date))
                dates[(aid, profile)] = when
                self.rows["ADRS"].append(dict(base, PARAMCD=a.assessment.PARAMCD, PARAM=a.assessment.PARAM,
                                              PARCAT1=profile, AVALC=lookup(doc, a.assessment.category) or "",
                                              AVAL=None, ADT=when, AVISIT=lookup(doc, a.assessment.visit) or "",
                                              ASSESSID=aid, DECID=d.decision_id))
        for profile, d in sorted(t.course.items()):
            doc = _doc(d)
            for p in a.course:
                aid = lookup(doc, p.assessment) if p.assessment else None
                if p.flag:
                    v = lookup(doc, p.flag)
                    avalc, aval = _yn(v), (1 if v is True else 0 if v is False else None)
                else:
                    avalc, aval = lookup(doc, p.category) or "", None
                when = dates.get((aid, profile)) if aid else None
                if aid and when is None and (aid, profile) in t.marrow:
                    when = _date(lookup(_doc(t.marrow[(aid, profile)]), a.assessment.date)) if a.assessment else None
                self.rows["ADRS"].append(dict(base, PARAMCD=p.PARAMCD, PARAM=p.PARAM, PARCAT1=profile, AVALC=avalc,
                                              AVAL=aval, ADT=when, AVISIT="", ASSESSID=aid or "", DECID=d.decision_id))

    def _adtte(self, t: Any) -> None:
        base = {"STUDYID": self.study, "USUBJID": t.subject_id, "AVALU": "DAYS"}
        for p in self.spec.adtte:
            sources = ([(None, t.follow_up)] if p.from_ == "follow-up" else sorted(t.course.items()))
            for profile, d in sources:
                if d is None:
                    continue
                doc = _doc(d)
                if p.applies_if and lookup(doc, p.applies_if) in (None, {}, []):
                    continue
                event = lookup(doc, p.event)
                when = _date(lookup(doc, p.date))
                start = _date(self._source(t, p.start, profile))
                kind = lookup(doc, p.kind) if p.kind else None
                row = dict(base, PARAMCD=p.PARAMCD, PARAM=p.PARAM, PARCAT1=profile or "", STARTDT=start, ADT=when,
                           DECID=d.decision_id, AVAL=None, CNSR=None, EVNTDESC="", CNSDTDSC="")
                if event is None or when is None or start is None:
                    row["EVNTDESC"] = UNDECIDED
                else:
                    row["AVAL"] = (when - start).days + 1
                    row["CNSR"] = 0 if event else 1
                    if event:
                        row["EVNTDESC"] = self.spec.events.get(str(kind), str(kind or "EVENT").upper())
                    else:
                        row["EVNTDESC"] = row["CNSDTDSC"] = self.spec.censoring
                self.rows["ADTTE"].append(row)

    def _adae(self, t: Any) -> None:
        from engine.adjudicate.safety import related_of
        items = t.safety_doc()["items"]
        for d, item in zip(t.events, items):   # safety_doc lists events first, in the same order
            rel = related_of(item)
            adjudicated = bool((item.get("attribution") or {}).get("adjudicated"))
            grade = item.get("grade")
            self.rows["ADAE"].append({
                "STUDYID": self.study, "USUBJID": t.subject_id, "AESPID": item.get("id") or "",
                "AEDECOD": item.get("term") or "", "ASTDT": _date(item.get("date")),
                "ATOXGR": "" if grade is None else str(grade), "ATOXGRN": grade, "GRSRC": item.get("source") or "",
                "TRTEMFL": _yn(item.get("treatment_emergent")),
                "AREL": "RELATED" if rel is True else ("NOT RELATED" if rel is False else ""),
                "ARELSRC": "COMMITTEE" if adjudicated else "INVESTIGATOR", "DECID": d.decision_id})

    def _adlb(self, t: Any) -> None:
        first_dose = _date(_timeline_date(t.follow_up, "first_dose", "first"))
        rows = []
        for d in t.labs:
            o, facts = d.outcome, (d.input.get("facts") or {})
            term = str(o.get("term") or "")
            first_term = term.split("/")[0]
            analyte = self.labmap.analyte_of.get(first_term, first_term)
            low, high = self.labmap.terms(analyte) or (None, None)
            grade = o.get("grade")
            g = "" if grade is None else str(grade)
            both = "/" in term
            unit = facts.get("lab.unit") or ""
            code, label = self.lab_params.get(analyte, (analyte.upper()[:8], analyte.replace("_", " ")))
            rows.append({
                "STUDYID": self.study, "USUBJID": t.subject_id, "PARAMCD": code,
                "PARAM": f"{label} ({unit})" if unit else label,
                "LBSPID": o.get("id") or "", "ADT": _date(o.get("date")), "AVAL": facts.get("lab.value"), "AVALU": unit,
                "ANRLO": facts.get("lab.lln"), "ANRHI": facts.get("lab.uln"), "BASE": facts.get("lab.baseline"),
                "ABLFL": "", "ATOXDSCL": low or "", "ATOXDSCH": high or "",
                "ATOXGRL": g if (term == low or both) else "", "ATOXGRH": g if (term == high or both) else "",
                "BTOXGRL": "", "BTOXGRH": "", "TRTEMFL": _yn(o.get("treatment_emergent")), "DECID": d.decision_id})
        # baseline record per test: the last result on or before the first dose (admiral's convention)
        if first_dose:
            for code in {r["PARAMCD"] for r in rows}:
                pre = [r for r in rows if r["PARAMCD"] == code and r["ADT"] and r["ADT"] <= first_dose]
                if pre:
                    b = max(pre, key=lambda r: (r["ADT"], r["LBSPID"]))
                    b["ABLFL"] = "Y"
                    for r in rows:
                        if r["PARAMCD"] == code:
                            r["BTOXGRL"], r["BTOXGRH"] = b["ATOXGRL"], b["ATOXGRH"]
        self.rows["ADLB"].extend(sorted(rows, key=lambda r: (r["PARAMCD"], r["ADT"] or dt.date.min, r["LBSPID"])))


# --- writing ------------------------------------------------------------------------------------------------

def export_adam(store: Any, run_id: str, registry: Any, spec: ExportSpec, out_dir: str | Path, fmt: str = "csv",
                lab_params: dict[str, tuple[str, str]] | None = None) -> ExportResult:
    """Read the run from the verified trail and write the five datasets and metadata.json into
    `out_dir` (each file written whole, then renamed into place)."""
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}", field="--format", expected=", ".join(FORMATS))
    store.verify_or_raise()      # never export from a trail that does not verify (exit 3)
    rows = Exporter(store, run_id, registry, spec, lab_params or {}).run()
    if not rows["ADSL"]:
        raise InputError(f"run {run_id} holds no subject", field="RUN", expected="a cohort run with subjects")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files, counts = {}, {}
    for name in spec.datasets:
        ds = spec.datasets[name]
        cols = [Column(v.name, v.label, v.type) for v in ds.variables]
        data = [{k: _cell(v) for k, v in r.items()} for r in rows[name]]
        files[name] = write_dataset(out / f"{name.lower()}{SUFFIX[fmt]}", name, ds.label, cols, data, fmt)
        counts[name] = len(data)
    seq, record_hash = store.head()
    meta = _metadata(spec, run_id, fmt, files, counts, {"seq": seq, "record_hash": record_hash})
    mpath = out / "metadata.json"
    tmp = mpath.with_name(f".{mpath.name}.tmp")
    tmp.write_text(json.dumps(meta, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, mpath)
    return ExportResult(run_id, out, files, counts, mpath, meta["audit"]["chain_head"])


def _cell(v: Any) -> Any:
    if isinstance(v, float):
        return Decimal(repr(v))
    if isinstance(v, (int, Decimal)) and not isinstance(v, bool):
        return Decimal(v)
    return v


def _metadata(spec: ExportSpec, run_id: str, fmt: str, files: dict[str, Path], counts: dict[str, int],
              head: dict[str, Any]) -> dict[str, Any]:
    audit: dict[str, Any] = {"run_id": run_id, "verify": "adjudicator audit verify; every DECID is a decision id of "
                                                          "this trail (adjudicator audit show --decision DECID)"}
    audit["chain_head"] = head
    return {
        "generated_by": "trial adjudicator export adam",
        "generated_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "format": fmt, "audit": audit, "specification": spec.identity(),
        "study": spec.study,
        "datasets": [{
            "name": name, "label": spec.datasets[name].label, "file": files[name].name, "rows": counts[name],
            "variables": [{"name": v.name, "label": v.label, "type": v.type, "custom": v.custom,
                           "derivation": v.derivation or _derivation(v), "source": _source_text(v)}
                          for v in spec.datasets[name].variables]}
            for name in spec.datasets],
        "parameters": {
            "ADRS": ([{"PARAMCD": spec.adrs.assessment.PARAMCD, "PARAM": spec.adrs.assessment.PARAM,
                       "source": f"marrow decision, {spec.adrs.assessment.category}"}] if spec.adrs.assessment else [])
                    + [{"PARAMCD": p.PARAMCD, "PARAM": p.PARAM,
                        "source": f"course decision, {p.flag or p.category}" + (f" (ADT: the date of {p.assessment})" if p.assessment else "")}
                       for p in spec.adrs.course],
            "ADTTE": [{"PARAMCD": p.PARAMCD, "PARAM": p.PARAM,
                       "source": f"{p.from_} decision: event {p.event}, date {p.date}, origin {_source_text_ref(p.start)}"
                                 + (f", only when {p.applies_if} is present" if p.applies_if else "")}
                      for p in spec.adtte]},
    }


def _derivation(v: Variable) -> str:
    return f"from {_source_text(v)}" if v.value else ""


def _source_text(v: Variable) -> str:
    return _source_text_ref(v.value) if v.value else "the exporter (see derivation)"


def _source_text_ref(r: ValueRef) -> str:
    if r.study:
        return f"the export file's study.{r.study}"
    if r.const is not None:
        return f"the constant {r.const!r}"
    if r.engine:
        return f"the audit trail ({r.engine})"
    if r.timeline:
        return f"the {r.from_} decision's timeline: the {r.take} {r.timeline} date"
    return f"the {r.from_} decision's {r.path}"


def iter_decision_ids(rows: dict[str, list[dict[str, Any]]]) -> Iterator[str]:
    for data in rows.values():
        for r in data:
            for k in ("DECID", "FUDECID"):
                if r.get(k):
                    yield r[k]
