"""Subject record -> the fact sheet of a screening (disease-status, vah-eligibility, eln-risk).

Python only flattens the record. The prior-therapy timeline is not summarised here: it is handed to
the disease-status pack as the subject's timeline (engine/facts/timeline.py), whose course counts
cycles before the first CRc and relapses after each CRc and judges each earlier marrow. Every
clinical threshold and definition (refractory, relapse evidence, steroid equivalence, organ limits,
risk groups) lives in the YAML packs.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import InputError
from engine.evaluate.facts import FactSheet
from engine.record import SubjectRecord, cockcroft_gault, creatinine_mg_dl, field_source
from engine.record.findings import FINDING_PREFIX
from engine.record.genetics import fusion_slug
GENES = ("npm1", "flt3_itd", "flt3_tkd", "cebpa", "runx1", "asxl1", "tp53", "bcor", "ezh2",
         "sf3b1", "srsf2", "stag2", "u2af1", "zrsr2", "idh1", "idh2", "kit")


def karyotype_slug(code: str) -> str:
    """`t(8;21)` -> `t_8_21`, `-7` -> `minus_7`, `del(5q)` -> `del_5q` (a fact-name spelling)."""
    s = code.replace("-", "minus_", 1) if code.startswith("-") else code
    return re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9]", "_", s)).strip("_")


@dataclass
class _Builder:
    path: str
    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    missing: dict[str, list[str]] = field(default_factory=dict)   # absent facts -> what would record them

    def put(self, name: str, value: Any, src: str) -> None:
        if value is None:
            return
        self.values[name] = value
        self.sources[name] = field_source(self.path, src)


def screening_facts(record: SubjectRecord, path: str | Path = "<record>") -> FactSheet:
    """The fact sheet every screening pack reads, each value with `file#field` as its source."""
    b = _Builder(str(path))
    _demographics(record, b)
    _history(record, b)
    _screening(record, b)
    _genetics(record, b)
    _findings(record, b)
    sheet = FactSheet.of(b.values, b.sources)
    sheet.missing_because.update(b.missing)
    return sheet


# --- parts ----------------------------------------------------------------------------------

def _findings(r: SubjectRecord, b: _Builder) -> None:
    """Every coded finding as the fact `finding.<name>` (the reading pack types it)."""
    for i, f in enumerate(r.findings):
        if FINDING_PREFIX + f.name in b.values:
            raise InputError(f"finding {f.name!r} recorded twice", file=b.path, subject=r.subject_id,
                             field=f"findings[{i}].name", expected="each finding once (the one in force)")
        b.put(FINDING_PREFIX + f.name, f.value, f"findings[{i}].value")


def finding_units(record: SubjectRecord, path: str | Path, facts: Any) -> None:
    """A finding recorded in another unit than the one its pack declares is refused (no
    conversion: a DLCO in mL/min/mmHg is not a % predicted)."""
    declared = {f.name: f.unit for f in facts if f.name.startswith(FINDING_PREFIX)}
    for i, f in enumerate(record.findings):
        want = declared.get(FINDING_PREFIX + f.name)
        if want and f.unit is not None and f.unit != want:
            raise InputError(f"finding {f.name!r} is in {f.unit!r}", file=str(path), subject=record.subject_id,
                             field=f"findings[{i}].unit", expected=f"{want!r} (the unit the pack declares)")


def _demographics(r: SubjectRecord, b: _Builder) -> None:
    d = r.demographics
    b.put("subject.age_years", r.age_at_consent(),
          "demographics.age_years" if d.age_years is not None else "demographics.birth_date+consent_date")
    b.put("subject.sex", d.sex, "demographics.sex")
    b.put("subject.childbearing_potential", d.childbearing_potential, "demographics.childbearing_potential")
    if d.pregnancy_test:
        b.put("subject.pregnancy_test_result", d.pregnancy_test.result, "demographics.pregnancy_test.result")
        b.put("subject.pregnancy_test_date", d.pregnancy_test.date, "demographics.pregnancy_test.date")
    b.put("subject.ecog", d.ecog, "demographics.ecog")
    b.put("subject.weight_kg", d.weight_kg, "demographics.weight_kg")
    b.put("diagnosis.aml", r.diagnosis.aml, "diagnosis.aml")
    b.put("diagnosis.apl", r.diagnosis.apl, "diagnosis.apl")
    # the day the 'within N days of day 1' windows are counted to: trial day 1 when known,
    # else the screening date, else consent (the best known 'now' of the screening)
    cycles = r.on_study.cycles if r.on_study and getattr(r.on_study, "cycles", None) else []
    if cycles:
        first = min(cycles, key=lambda c: c.start_date)
        b.put("screening.reference_date", first.start_date, f"on_study.cycles[{cycles.index(first)}].start_date")
    elif r.screening and r.screening.date:
        b.put("screening.reference_date", r.screening.date, "screening.date")
    else:
        b.put("screening.reference_date", r.consent_date, "consent_date")


def _history(r: SubjectRecord, b: _Builder) -> None:
    """Whether a treatment history is recorded: the history itself is the subject's timeline
    (engine/facts/timeline.py), which the disease-status pack folds over. A record without the
    `treatment_history` key did not collect it: missing data (`history.recorded` unknown, naming
    `treatment_history`); an explicit list - `[]` included: no prior therapy - is a record."""
    if "treatment_history" in r.model_fields_set:
        b.put("history.recorded", True, "treatment_history")
    else:
        b.missing["history.recorded"] = ["treatment_history"]


def _screening(r: SubjectRecord, b: _Builder) -> None:
    s = r.screening
    if s is None:
        return
    b.put("screening.prior_venetoclax", s.prior_venetoclax, "screening.prior_venetoclax")
    if s.gvhd:
        g = s.gvhd
        b.put("screening.gvhd.present", g.present, "screening.gvhd.present")
        b.put("screening.gvhd.kind", g.kind, "screening.gvhd.kind")
        if g.steroid:
            b.put("screening.gvhd.steroid_drug", g.steroid.drug, "screening.gvhd.steroid.drug")
            b.put("screening.gvhd.steroid_dose_mg_per_day", g.steroid.dose_mg_per_day,
                  "screening.gvhd.steroid.dose_mg_per_day")
            b.put("screening.gvhd.steroid_route", g.steroid.route, "screening.gvhd.steroid.route")
        if g.other_therapies is not None:  # [] = none recorded; None = not collected (unknown)
            b.put("screening.gvhd.other_therapies_recorded", True, "screening.gvhd.other_therapies")
        for j, name in enumerate(g.other_therapies or ()):
            slug = re.sub(r"[^a-z0-9_]", "_", name.strip().lower())
            b.put(f"screening.gvhd.therapy.{slug}", True, f"screening.gvhd.other_therapies[{j}]")
        b.put("screening.gvhd.cni_indication", g.cni_indication, "screening.gvhd.cni_indication")
    if s.coagulation:
        b.put("screening.coagulation.dic_isth_score", s.coagulation.dic_isth_score, "screening.coagulation.dic_isth_score")
        b.put("screening.coagulation.bleeding_from_coagulopathy", s.coagulation.bleeding_from_coagulopathy,
              "screening.coagulation.bleeding_from_coagulopathy")
    if s.cardiac:
        for name in ("lvef_pct", "nyha_class", "mi_within_6_months", "unstable_angina", "uncontrolled_arrhythmia"):
            b.put(f"screening.cardiac.{name}", getattr(s.cardiac, name), f"screening.cardiac.{name}")
    if s.infection:
        b.put("screening.infection.active", s.infection.active, "screening.infection.active")
        b.put("screening.infection.uncontrolled", s.infection.uncontrolled, "screening.infection.uncontrolled")
    if s.labs:
        labs = s.labs
        for name in ("bilirubin", "ast", "alt"):
            lab = getattr(labs, name)
            if lab is not None:
                b.put(f"screening.labs.{name}_x_uln", lab.ratio_to_uln(), f"screening.labs.{name}")
        b.put("screening.labs.bilirubin_cause", labs.bilirubin_cause, "screening.labs.bilirubin_cause")
        b.put("screening.labs.transaminase_cause", labs.transaminase_cause, "screening.labs.transaminase_cause")
        if labs.creatinine_clearance_ml_min is not None:
            b.put("screening.labs.crcl_ml_min", labs.creatinine_clearance_ml_min,
                  "screening.labs.creatinine_clearance_ml_min")
        else:
            crcl = _cockcroft_gault(r)
            b.put("screening.labs.crcl_ml_min", crcl,
                  "screening.labs.creatinine+demographics.weight_kg+sex+age (Cockcroft-Gault)")
    b.put("screening.wbc_10e9_l", s.wbc_10e9_l, "screening.wbc_10e9_l")
    ref = r.on_study.cycles[0].start_date if (r.on_study and getattr(r.on_study, "cycles", None)) else (s.date or r.consent_date)
    strong = moderate = 0
    for m in s.concomitant_medications:
        if ref is not None and m.end_date is not None and m.end_date < ref:
            continue  # stopped before the screening: no interaction with venetoclax
        strong += m.cyp3a == "strong"
        moderate += m.cyp3a == "moderate"
    b.put("screening.cyp3a.strong_count", strong, "screening.concomitant_medications")
    b.put("screening.cyp3a.moderate_count", moderate, "screening.concomitant_medications")
    attested = [c.unsuitable_for_trial for c in s.other_conditions]
    any_unsuitable = True if any(a is True for a in attested) else (None if None in attested else False)
    b.put("screening.other_conditions.any_unsuitable", any_unsuitable, "screening.other_conditions")


def _cockcroft_gault(r: SubjectRecord) -> Any:
    labs = r.screening.labs if r.screening else None
    cr = creatinine_mg_dl(labs.creatinine if labs else None)
    age, d = r.age_at_consent(), r.demographics
    if cr is None or cr <= 0 or age is None or d.weight_kg is None or d.sex is None:
        return None
    return cockcroft_gault(age, d.weight_kg, d.sex, cr)


def _genetics(r: SubjectRecord, b: _Builder) -> None:
    g = r.genetics
    if g is None:
        return
    b.put("genetics.timepoint", g.timepoint, "genetics.timepoint")
    done = g.karyotype_done if g.karyotype_done is not None else (True if g.karyotype_findings else None)
    if done:
        from engine.record.genetics import KaryotypeCode
        from typing import get_args
        for code in get_args(KaryotypeCode):
            b.put(f"genetics.karyotype.{karyotype_slug(code)}", code in g.karyotype_findings,
                  "genetics.karyotype_findings")
    for j, f in enumerate(g.fusions):
        b.put(f"genetics.fusion.{fusion_slug(f.name)}", f.status == "detected", f"genetics.fusions[{j}]")
    for gene in GENES:
        m = getattr(g.mutations, gene)
        if m.status != "not_tested":
            b.put(f"genetics.{gene}.status", m.status, f"genetics.mutations.{gene}.status")
    b.put("genetics.flt3_itd.allelic_ratio", g.mutations.flt3_itd.allelic_ratio, "genetics.mutations.flt3_itd.allelic_ratio")
    b.put("genetics.tp53.vaf_pct", g.mutations.tp53.vaf_pct, "genetics.mutations.tp53.vaf_pct")
    b.put("genetics.cebpa.biallelic", g.mutations.cebpa.biallelic, "genetics.mutations.cebpa.biallelic")
    b.put("genetics.cebpa.bzip_inframe", g.mutations.cebpa.bzip_inframe, "genetics.mutations.cebpa.bzip_inframe")
