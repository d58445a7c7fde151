"""Where a fact comes from (issue 12 item 2): the packs' `from:` derive the screening facts from the
subject record; a pack reading a fact nothing provides, or a `from:` naming a record path the
record does not have, is refused (file, line, fact; exit 2; nothing written); derivation through
the packs decides the same on both sides of a threshold, through both evaluators."""
from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from cli import main
from engine.adjudicate.screening import screen
from engine.errors import PackError
from engine.facts.derive import derive, path_problem
from engine.record import SubjectRecord, load_subject
from engine.rules.load import load_registry, pack_from_data
from engine.rules.model import FactDecl

from test_bad_input import nothing_written, refused

ROOT = Path(__file__).resolve().parents[1]
SUBJECT = ROOT / "fixtures" / "screening" / "S001-eligible-relapse-after-chemo.yaml"
BASE = yaml.safe_load(SUBJECT.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def vah():
    return load_registry(ROOT / "rules").for_trial("vah")


def _record(tmp_path: Path, change) -> Path:
    data = yaml.safe_load(SUBJECT.read_text(encoding="utf-8"))
    change(data)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _crit(result, cid: str) -> str:
    return next(c.outcome for c in result.criteria if c.id == cid)


# --- vignettes: the same decision as before, on both sides of the threshold --------------------------

def _creatinine(weight, value, unit, sex="male"):
    def change(d):
        d["demographics"].update(age_years=50, weight_kg=weight, sex=sex)
        d["screening"]["labs"].pop("creatinine_clearance_ml_min")
        d["screening"]["labs"]["creatinine"] = {"value": value, "unit": unit, "uln": 1.2 if unit == "mg/dL" else 106}
    return change


@pytest.mark.parametrize("weight, value, unit, sex, crcl, outcome", [
    (60, 2.5, "mg/dL", "male", Decimal(30), "pass"),        # (140-50) x 60 / (72 x 2.5) = 30: not below 30
    (59.8, 2.5, "mg/dL", "male", Decimal("29.9"), "fail"),  # 29.9 < 30
    (60, 221, "umol/L", "male", Decimal(30), "pass"),       # 221 umol/L = 2.5 mg/dL (88.4 umol/L per mg/dL)
    (59.8, 221, "umol/L", "male", Decimal("29.9"), "fail"),
    (80, 2.5, "mg/dL", "female", Decimal(34), "pass"),      # 90 x 80 / 180 = 40, x 0.85 = 34
    (70, 2.5, "mg/dL", "female", Decimal("29.75"), "fail"),  # 35 x 0.85
])
def test_cockcroft_gault_in_the_pack_decides_renal_exclusion(tmp_path, vah, evaluator, weight, value, unit, sex,
                                                            crcl, outcome):
    path = _record(tmp_path, _creatinine(weight, value, unit, sex))
    r = screen(load_subject(path), vah, evaluator=evaluator, source_file=path)
    assert _crit(r, "EXC-08") == outcome and r.verdict == ("ELIGIBLE" if outcome == "pass" else "INELIGIBLE")
    inputs = next(c.inputs for c in r.criteria if c.id == "EXC-08")
    assert Decimal(str(inputs["screening.labs.crcl_ml_min"])) == crcl


@pytest.mark.parametrize("value, outcome", [(1.8, "pass"), (1.81, "fail")])   # uln 1.2: 1.5 x ULN = 1.8
def test_bilirubin_ratio_to_uln_in_the_pack(tmp_path, vah, evaluator, value, outcome):
    path = _record(tmp_path, lambda d: d["screening"]["labs"].update(
        bilirubin={"value": value, "unit": "mg/dL", "uln": 1.2}, bilirubin_cause="other"))
    r = screen(load_subject(path), vah, evaluator=evaluator, source_file=path)
    assert _crit(r, "EXC-08") == outcome


def test_a_reported_clearance_wins_and_sources_name_the_record_fields(tmp_path, vah):
    path = _record(tmp_path, _creatinine(59.8, 2.5, "mg/dL"))
    rec = load_subject(path)
    decls = vah.get("vah-eligibility").manifest.facts
    sheet = derive(rec, decls, path)
    assert sheet.values["screening.labs.crcl_ml_min"] == Decimal("29.9")
    src = sheet.sources["screening.labs.crcl_ml_min"]
    for f in ("screening.labs.creatinine.value", "screening.labs.creatinine.unit", "demographics.age_years",
              "demographics.weight_kg", "demographics.sex"):
        assert f in src, src
    assert sheet.sources["screening.labs.bilirubin_x_uln"].endswith("#screening.labs.bilirubin.x_uln")
    reported = derive(load_subject(SUBJECT), decls, SUBJECT)
    assert reported.values["screening.labs.crcl_ml_min"] == 95
    assert reported.sources["screening.labs.crcl_ml_min"].endswith("#screening.labs.creatinine_clearance_ml_min")


@pytest.mark.parametrize("sex, value, unit, crcl", [
    ("male", 1, "mg/dL", Decimal(100)),                  # (140 - 40) x 72 / (72 x 1)
    ("female", 1, "mg/dL", Decimal(85)),                 # x 0.85
    ("male", 88.4, "umol/L", Decimal(100)),              # 88.4 umol/L = 1 mg/dL
    ("male", 71, "umol/L", Decimal(100) * Decimal("88.4") / Decimal(71)),
    ("male", 1, "mmol/L", None),                         # a unit the pack's table lacks: missing, not a guess
    ("male", 0, "mg/dL", None),                          # a zero creatinine: missing, not a division error
])
def test_cockcroft_gault_formula_in_both_eligibility_packs(tmp_path, vah, sex, value, unit, crcl):
    def change(d):
        d["demographics"].update(age_years=40, weight_kg=72, sex=sex)
        d["screening"]["labs"].pop("creatinine_clearance_ml_min")
        d["screening"]["labs"]["creatinine"] = {"value": value, "unit": unit, "uln": 1.2}
    rec = load_subject(_record(tmp_path, change))
    for pack in ("vah-eligibility", "viale-a-eligibility"):
        got = derive(rec, vah.get(pack).manifest.facts).values.get("screening.labs.crcl_ml_min")
        assert (got is None and crcl is None) or abs(got - crcl) < Decimal("1e-12"), (pack, got)


def test_missing_is_never_no(tmp_path, vah):
    """An unrecorded input leaves the fact missing, never false or zero: no weight -> no CrCl; a
    karyotype not done -> no karyotype fact; a gene not tested -> no status; no medication list ->
    no count."""
    decls = [d for p in ("vah-eligibility", "eln-risk") for d in vah.get(p).manifest.facts]

    def change(d):
        d["demographics"].pop("weight_kg")
        d["screening"]["labs"].pop("creatinine_clearance_ml_min")
        d["screening"]["labs"]["creatinine"] = {"value": 1, "unit": "mg/dL", "uln": 1.2}
        d["screening"].pop("concomitant_medications")
        d["genetics"]["karyotype_done"] = None
        d["genetics"]["karyotype_findings"] = []
        d["genetics"]["mutations"].pop("tp53")
    sheet = derive(load_subject(_record(tmp_path, change)), decls)
    for name in ("screening.labs.crcl_ml_min", "genetics.karyotype.normal", "genetics.tp53.status"):
        assert name not in sheet.values, name
    assert sheet.values["screening.cyp3a.strong_count"] == 0   # an empty list: none (the default is [])
    no_history = SubjectRecord.model_validate({"subject_id": "X"})
    sheet = derive(no_history, vah.get("disease-status").manifest.facts)
    assert sheet.missing_roots("history.recorded") == ["treatment_history"]


def test_an_indeterminate_screening_says_which_record_fields_would_decide_it(tmp_path, vah):
    f = ROOT / "fixtures" / "screening" / "C042-crcl-missing.yaml"
    r = screen(load_subject(f), vah, source_file=f)
    assert r.verdict == "INDETERMINATE" and r.missing == ["screening.labs.crcl_ml_min"]
    fields = r.record_fields["screening.labs.crcl_ml_min"]
    assert fields[0] == "screening.labs.creatinine_clearance_ml_min"      # the reported value first
    for want in ("screening.labs.creatinine.value", "screening.labs.creatinine.unit", "demographics.weight_kg",
                 "demographics.sex", "demographics.age_years", "demographics.birth_date", "consent_date"):
        assert want in fields, want
    out = CliRunner().invoke(main, ["--db", str(tmp_path / "a.sqlite"), "--actor", "t", "--trial", "vah",
                                    "screen", str(f)]).output
    assert "screening.labs.crcl_ml_min <- record screening.labs.creatinine_clearance_ml_min | " in out


# --- the language: refused at load with file, line and key ---------------------------------------------

def _pack(facts):
    return {"id": "p", "version": "1.0.0", "effective": "2026-01-01", "title": "t", "source": "s", "facts": facts}


@pytest.mark.parametrize("decl, needle", [
    ({"name": "a.x", "type": "integer", "from": {"field": "demographics.age"}}, "no field 'age'"),
    ({"name": "a.x", "type": "date", "from": {"min": "on_study.cycles.start_date"}}, "write cycles[*]"),
    ({"name": "a.x", "type": "integer", "from": {"count": {"in": "screening.concomitant_medications",
                                                           "where": {"strength": "strong"}}}}, "no field 'strength'"),
    ({"name": "a.x", "type": "boolean", "from": {"contains": {"field": "demographics.sex", "value": "x"}}},
     "not a list"),
    ({"name": "a.x", "type": "integer", "from": {"fact": "a.y"}}, "does not derive"),
    ({"name": "finding.x", "type": "integer", "from": {"field": "demographics.ecog"}}, "coded finding"),
    ({"name": "a.x", "type": "string", "missing_when": ["no"]}, "missing_when without from"),
])
def test_a_bad_derivation_is_refused(decl, needle):
    with pytest.raises(PackError) as exc:
        pack_from_data(_pack([decl]))
    assert needle in str(exc.value) and "facts.0" in str(exc.value)


def test_a_derivation_cycle_and_a_malformed_form_are_refused():
    with pytest.raises(PackError, match="derived from itself"):
        pack_from_data(_pack([{"name": "a.x", "type": "integer", "from": {"fact": "a.y"}},
                              {"name": "a.y", "type": "integer", "from": {"add": [1, {"fact": "a.x"}]}}]))
    with pytest.raises(PackError, match="a derivation is one key of"):
        pack_from_data(_pack([{"name": "a.x", "type": "integer", "from": {"field": "x", "fact": "y"}}]))
    with pytest.raises(PackError, match="a derivation is one key of"):
        pack_from_data(_pack([{"name": "a.x", "type": "integer", "from": {"eval": "1+1"}}]))


def test_record_paths_are_checked_against_the_record_model():
    assert path_problem("on_study.cycles[*].start_date") is None
    assert path_problem("genetics.mutations.tp53.vaf_pct") is None
    assert "is a list" in path_problem("treatment_history.date")
    assert "no field" in path_problem("screening.labs.bilirubin.valu")
    assert FactDecl.model_validate({"name": "a", "type": "number", "from": {"field": "demographics.weight_kg"}}).from_


# --- the refusal through the CLI: exit 2, one message, nothing written -------------------------------

@pytest.fixture
def rules_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", dst)
    return dst


def _edit_fact(rules: Path, pack: str, name: str, edit) -> int:
    """Rewrite one fact line of a pack (flow style, one line); returns its line number."""
    path = rules / pack / "pack.yaml"
    lines = path.read_text(encoding="utf-8").split("\n")
    n = next(i for i, line in enumerate(lines) if line.startswith(f"  - {{name: {name},"))
    lines[n] = edit(lines[n])
    path.write_text("\n".join(lines), encoding="utf-8")
    return n + 1


def cli(db: Path, *args: str):
    return CliRunner().invoke(main, ["--db", str(db), "--actor", "tester", *args])


def test_a_pack_reading_a_fact_nothing_provides_is_refused(tmp_path, rules_copy):
    line = _edit_fact(rules_copy, "vah-eligibility", "screening.cardiac.lvef_pct",
                      lambda s: s.split(", from:")[0] + "}")
    db = tmp_path / "audit.sqlite"
    out = refused(cli(db, "--rules-dir", str(rules_copy), "--trial", "vah", "screen", str(SUBJECT)),
                  "vah-eligibility/pack.yaml", f":{line}", "screening.cardiac.lvef_pct", "nothing provides",
                  "from:", "finding.", "disease-status")
    assert out.count("\n") == 1
    nothing_written(db)
    refused(cli(db, "--rules-dir", str(rules_copy), "rules", "validate"), "screening.cardiac.lvef_pct")


def test_a_from_path_the_record_lacks_is_refused(tmp_path, rules_copy):
    line = _edit_fact(rules_copy, "viale-a-eligibility", "subject.ecog",
                      lambda s: s.replace("demographics.ecog", "demographics.ecog_score"))
    db = tmp_path / "audit.sqlite"
    out = refused(cli(db, "--rules-dir", str(rules_copy), "--trial", "viale-a", "screen", str(SUBJECT)),
                  "viale-a-eligibility/pack.yaml", f":{line}", "demographics.ecog_score", "no field 'ecog_score'")
    assert out.count("\n") == 1
    nothing_written(db)


@pytest.mark.parametrize("pack, fact, command", [
    ("vah-trial-response", "subject.transfusions_recorded", "marrow"),   # a response profile
    ("vah-follow-up", "follow_up.death_date", "marrow"),                 # the follow-up role, on any use
])
def test_response_and_follow_up_packs_are_checked_too(tmp_path, rules_copy, pack, fact, command):
    line = _edit_fact(rules_copy, pack, fact, lambda s: s.split(", from:")[0] + "}")
    marrow = ROOT / "fixtures" / "marrow" / "adequacy-200-cells.yaml"
    db = tmp_path / "audit.sqlite"
    refused(cli(db, "--rules-dir", str(rules_copy), "--trial", "vah", command, str(marrow)),
            f"{pack}/pack.yaml", f":{line}", fact, "nothing provides")
    nothing_written(db)


def test_a_fact_another_pack_of_its_sheet_derives_is_provided(tmp_path, rules_copy):
    """The response profiles share one fact sheet: eln-2022-response may read the first dose date
    the other profiles derive."""
    _edit_fact(rules_copy, "eln-2022-response", "subject.first_dose_date", lambda s: s.split(", from:")[0] + "}")
    marrow = ROOT / "fixtures" / "marrow" / "adequacy-200-cells.yaml"
    r = cli(tmp_path / "a.sqlite", "--rules-dir", str(rules_copy), "--trial", "vah", "marrow", str(marrow),
            "--profile", "eln-2022", "--json")
    assert r.exit_code == 0, r.output


def test_two_packs_deriving_one_fact_differently_are_refused(tmp_path, rules_copy):
    _edit_fact(rules_copy, "disease-status", "screening.reference_date",
               lambda s: s.split(", from:")[0] + ", from: {field: screening.date}}")
    db = tmp_path / "audit.sqlite"
    refused(cli(db, "--rules-dir", str(rules_copy), "--trial", "vah", "screen", str(SUBJECT)),
            "screening.reference_date", "derived differently")
    nothing_written(db)


def test_unread_codes_are_worked_out_per_set_of_declarations():
    """The codes the packs name are a property of the declarations (remembered per set of them, not
    per subject): another set of declarations gives its own answer, the same set the same one."""
    from engine.facts.derive import unread_codes
    record = SubjectRecord.model_validate({**BASE, "genetics": {**BASE.get("genetics", {}),
                                                               "karyotype_done": True,
                                                               "karyotype_findings": ["t(8;21)", "inv(16)"]}})

    def decl(value):
        return FactDecl.model_validate({"name": "k.v" + str(len(value)), "type": "boolean", "from": {"contains": {
            "field": "genetics.karyotype_findings", "value": value, "when_recorded": "genetics.karyotype_done"}}})
    one, other = [decl("t(8;21)")], [decl("inv(16)")]
    assert unread_codes(record, one) == [("genetics.karyotype_findings[1]", "inv(16)")]
    assert unread_codes(record, other) == [("genetics.karyotype_findings[0]", "t(8;21)")]
    assert unread_codes(record, one) == [("genetics.karyotype_findings[1]", "inv(16)")]
    assert unread_codes(record, one + other) == []
