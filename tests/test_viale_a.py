"""VIALE-A (NCT02993523) written as packs and a protocol only (issue 12): vignettes from the
registered eligibility text through both evaluators, the CLI under `--trial viale-a`, coded
findings as the record's way to carry what only this trial asks, and the synthetic cohort shaped
like the published venetoclax-azacitidine arm (a slice here; the whole 286 in `make demo`)."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from cli import main
from engine.adjudicate.screening import screen
from engine.record import SubjectRecord

from conftest import ROOT
from test_bad_input import nothing_written, refused

COHORT = ROOT / "fixtures" / "viale-a286"   # beside fixtures/cohort/ (the VAH cohorts), not in it
BASE = yaml.safe_load((COHORT / "VA-001.yaml").read_text(encoding="utf-8"))   # 62 years, DLCO 49 %: eligible


@pytest.fixture(scope="module")
def viale_a(registry):
    return registry.for_trial("viale-a")


def subject(**changes) -> SubjectRecord:
    """The base candidate with changes: dotted record paths, or finding names as `finding__name`
    (None removes the finding)."""
    doc = copy.deepcopy(BASE)
    for key, value in changes.items():
        if key.startswith("finding__"):
            name = key.removeprefix("finding__")
            doc["findings"] = [f for f in doc["findings"] if f["name"] != name]
            if value is not None:
                doc["findings"].append({"name": name, **value} if isinstance(value, dict) else {"name": name, "value": value})
            continue
        *path, last = key.split("__")
        node = doc
        for p in path:
            node = node[p]
        node[last] = value
    return SubjectRecord.model_validate(doc)


def verdict(viale_a, evaluator, **changes):
    res = screen(subject(**changes), viale_a, evaluator=evaluator)
    return res.verdict, res.decided_by, res.missing


# --- vignettes from the registered text (both evaluators) ---------------------------------------------

def test_a_62_year_old_with_dlco_49_is_eligible(viale_a, evaluator):
    assert verdict(viale_a, evaluator)[0] == "ELIGIBLE"


def test_74_without_a_listed_comorbidity_is_not_ineligible_for_induction(viale_a, evaluator):
    """'b. >= 18 to 74 years of age with at least one of the following comorbidities'."""
    v, by, _ = verdict(viale_a, evaluator, demographics__age_years=74, finding__dlco_pct=80,
                       finding__fev1_pct=80, finding__chf_requiring_treatment=False,
                       finding__chronic_stable_angina=False, finding__sponsor_approved_comorbidity=False)
    assert (v, by) == ("INELIGIBLE", ["INC-04"])


def test_75_needs_no_comorbidity_but_ecog_3_fails(viale_a, evaluator):
    """'a. >= 75 years of age'; ECOG '0 to 2 for Participants >= 75 years of age'."""
    assert verdict(viale_a, evaluator, demographics__age_years=75, finding__dlco_pct=None)[0] == "ELIGIBLE"
    v, by, _ = verdict(viale_a, evaluator, demographics__age_years=75, demographics__ecog=3, finding__dlco_pct=None)
    assert (v, by) == ("INELIGIBLE", ["INC-05"])


def test_creatinine_clearance_30_to_45_is_itself_a_comorbidity(viale_a, evaluator):
    """'iv. Creatinine clearance >= 30 mL/min to < 45 ml/min'; 'a creatinine >= 30 mL/min'."""
    labs = BASE["screening"]["labs"]
    assert verdict(viale_a, evaluator, finding__dlco_pct=80, finding__fev1_pct=80,
                   screening__labs={**labs, "creatinine_clearance_ml_min": 30})[0] == "ELIGIBLE"
    v, by, _ = verdict(viale_a, evaluator, screening__labs={**labs, "creatinine_clearance_ml_min": 29})
    assert (v, by) == ("INELIGIBLE", ["INC-06"])


def test_an_unrecorded_finding_is_missing_never_no(viale_a, evaluator):
    v, by, missing = verdict(viale_a, evaluator, finding__cns_involvement=None)
    assert (v, by, missing) == ("INDETERMINATE", ["EXC-04"], ["finding.cns_involvement"])
    v, by, missing = verdict(viale_a, evaluator, finding__life_expectancy_weeks=None)
    assert (v, missing) == ("INDETERMINATE", ["finding.life_expectancy_weeks"])


def test_prior_therapy_fails_previously_untreated(viale_a, evaluator):
    cycle = {"type": "cycle", "start_date": "2018-12-01", "regimen": "7+3", "intensity": "intensive"}
    v, by, _ = verdict(viale_a, evaluator, treatment_history=[cycle])
    assert (v, by) == ("INELIGIBLE", ["INC-01"])


# --- the record: coded findings --------------------------------------------------------------------------

def _write(tmp_path: Path, doc: dict) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def _cli(db: Path, *args: str):
    return CliRunner().invoke(main, ["--db", str(db), "--actor", "tester", "--trial", "viale-a", *args])


def test_a_finding_in_another_unit_is_refused(tmp_path: Path):
    doc = copy.deepcopy(BASE)
    doc["findings"] = [f if f["name"] != "dlco_pct" else {**f, "unit": "mL/min/mmHg"} for f in doc["findings"]]
    db = tmp_path / "a.sqlite"
    refused(_cli(db, "screen", str(_write(tmp_path, doc))), "dlco_pct", "mL/min/mmHg", "findings[")
    nothing_written(db)


def test_a_finding_recorded_twice_or_mistyped_is_refused(tmp_path: Path):
    db = tmp_path / "a.sqlite"
    doc = copy.deepcopy(BASE)
    doc["findings"].append({"name": "dlco_pct", "value": 70, "unit": "%"})
    refused(_cli(db, "screen", str(_write(tmp_path, doc))), "dlco_pct", "twice")
    doc = copy.deepcopy(BASE)
    doc["findings"] = [f if f["name"] != "cns_involvement" else {**f, "value": "maybe"} for f in doc["findings"]]
    refused(_cli(db, "screen", str(_write(tmp_path, doc))), "findings[", "maybe", "expected boolean")
    nothing_written(db)


def test_the_vah_trial_refuses_a_viale_a_subject(tmp_path: Path):
    db = tmp_path / "a.sqlite"
    refused(CliRunner().invoke(main, ["--db", str(db), "--trial", "vah", "screen", str(COHORT / "VA-001.yaml")]),
            "viale-a", "--trial viale-a")
    nothing_written(db)


# --- the CLI and the cohort ----------------------------------------------------------------------------

def test_screen_marrow_and_a_cohort_slice_under_trial_viale_a(tmp_path: Path):
    db = tmp_path / "a.sqlite"
    r = _cli(db, "screen", str(COHORT / "VA-001.yaml"), "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["verdict"] == "ELIGIBLE"
    crh = next(p for p in sorted(COHORT.glob("*.yaml")) if "designed best response CRh\n" in p.read_text())
    r = _cli(db, "marrow", str(crh), "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert set(doc["course"]) == {"eln-2022", "eln-2017"}
    assert doc["course"]["eln-2022"]["best_response"]["category"] == "CRh"
    sl = tmp_path / "slice"
    sl.mkdir()
    for p in sorted(COHORT.glob("*.yaml"))[:12]:
        (sl / p.name).write_text(p.read_text())
    r = _cli(db, "cohort", str(sl), "--json", "--workers", "1")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output)["summary"]
    assert summary["trial"] == "viale-a" and list(summary["response"]) == ["eln-2022", "eln-2017"]
    designed = [yaml.safe_load(p.read_text())["subject_id"] for p in sorted(sl.glob("*.yaml"))]
    crc = sum("designed best response CR" in (sl / f"{s}.yaml").read_text() for s in designed)
    assert summary["response"]["eln-2022"]["all"]["best_response"]["crc"]["k"] == crc


def test_the_cohort_is_shaped_like_the_published_arm():
    """286 subjects designed as CR 105 (36.7 %), CR+CRh 185, CR+CRi 190 (66.4 %); `make demo` shows
    that the packs find exactly these."""
    design = yaml.safe_load((ROOT / "fixtures" / "cohort" / "viale-a-design.yaml").read_text(encoding="utf-8"))
    files = sorted(COHORT.glob("*.yaml"))
    assert len(files) == sum(design["best_response"].values()) == 286
    texts = [p.read_text() for p in files]
    count = {c: sum(f"designed best response {c}\n" in t or f"designed best response {c} (" in t for t in texts)
             for c in ("CR", "CRh", "CRi")}
    assert count == {"CR": 105, "CRh": 80, "CRi": 5}
    assert round(100 * count["CR"] / 286, 1) == 36.7 and round(100 * sum(count.values()) / 286, 1) == 66.4
