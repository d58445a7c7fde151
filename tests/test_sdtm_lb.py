"""Issue 14 item 3: `ctcae grade` reads SDTM LB directly (LBTESTCD, LBSTRESN, LBSTRESU, LBSTNRLO,
LBSTNRHI; the baseline from LBBLFL or a configured rule; SDTM unit spellings), grades every row it
has a term for, says per test code why it cannot grade the rest, and reports bad rows by file,
USUBJID, LBSEQ and variable."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from engine.audit import AuditStore
from engine.audit.compact import sources_of
from engine.sdtm.read import read_dataset
from engine.sdtm.write import Column, write_dataset

ROOT = Path(__file__).resolve().parents[1]
PILOT_LB = ROOT / "fixtures" / "sdtm" / "pilot" / "lb.csv"
HEADER = "STUDYID,DOMAIN,USUBJID,LBSEQ,LBTESTCD,LBCAT,LBSTRESN,LBSTRESU,LBSTNRLO,LBSTNRHI,LBBLFL,VISIT,LBDTC,LBDY\n"


def grade(tmp_path: Path, lb: Path | str, *extra: str, db: Path | None = None):
    if isinstance(lb, str):
        f = tmp_path / "lb.csv"
        f.write_text(lb)
        lb = f
    db = db or tmp_path / "audit.sqlite"
    res = CliRunner().invoke(main, ["--db", str(db), "--actor", "t", "--rules-dir", str(ROOT / "rules"),
                                    "ctcae", "grade", str(lb), "--ctcae", "4.03", *extra])
    return res, db


def rows_of(res) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(res.stdout)))


@pytest.fixture(scope="module")
def pilot(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("pilot")
    res, db = grade(tmp, PILOT_LB)
    assert res.exit_code == 0, res.output
    return res, db, rows_of(res)


def test_the_pilot_slice_grades_every_row_it_has_a_term_for(pilot) -> None:
    res, _, rows = pilot
    assert len(rows) == 1384  # one row out per LB record, in record order
    ds = read_dataset(PILOT_LB)
    assert [r["seq"] for r in rows] == [str(int(float(s))) for s in ds.columns["LBSEQ"]]
    mapped = {"ALB", "ALP", "ALT", "AST", "BILI", "CA", "CHOL", "CK", "CREAT", "GGT", "GLUC", "HGB", "K", "LYM",
              "PHOS", "PLAT", "SODIUM", "URATE", "WBC"}
    for r in rows:
        if r["lbtestcd"] in mapped:
            assert r["lab_test"] and (r["gradable"] == "True" or r["reason"]), r
        else:  # never graded, and said why
            assert r["gradable"] == "False" and r["reason"].startswith(f"LBTESTCD {r['lbtestcd']}: "), r
    # the report on stderr: one line per test code with rows, graded, and why not
    report = res.stderr.splitlines()
    assert report[0].split()[:3] == ["LBTESTCD", "rows", "graded"]
    by_code = {line.split()[0]: line for line in report[1:] if line and not line.startswith(("problems", " "))}
    assert set(by_code) == set(ds.columns["LBTESTCD"])
    assert "blood urea nitrogen: no CTCAE term grades it" in by_code["BUN"]
    assert "not a blood pH" in by_code["PH"]
    assert by_code["ALT"].split()[1:3] == by_code["ALT"].split()[1:3]  # rows == graded for a clean test
    alt = by_code["ALT"].split()
    assert alt[1] == alt[2]


def _row(rows, usubjid: str, seq: str) -> dict[str, str]:
    return next(r for r in rows if r["usubjid"] == usubjid and r["seq"] == seq)


@pytest.mark.parametrize("usubjid, seq, term, grade, why", [
    # bilirubin 25.65 umol/L, ULN 21: 1.22 x ULN -> G1 (> ULN - 1.5 x ULN), read in multiples of ULN
    ("01-705-1186", "6", "blood_bilirubin_increased", "1", "ULN"),
    # 116.28 / 21 = 5.5 x ULN -> G3 (> 3.0 - 10.0 x ULN)
    ("01-705-1186", "43", "blood_bilirubin_increased", "3", "3.0 - 10.0 x ULN"),
    # uric acid 618.592 umol/L = 0.619 mmol/L > 0.59 mmol/L -> v4.03 G4 (umol/L read as mmol/L x 0.001)
    ("01-703-1182", "34", "hyperuricemia", "4", "umol/L -> mmol/L"),
    # creatinine 150.28 umol/L: 1.07 x ULN 141 (G1), below the flagged baseline 167.96: G1
    ("01-703-1182", "50", "creatinine_increased", "1", "ULN"),
])
def test_pilot_vignettes_graded_from_the_ctcae_text(pilot, usubjid: str, seq: str, term: str, grade: str,
                                                    why: str) -> None:
    r = _row(pilot[2], usubjid, seq)
    assert (r["term"], r["grade"], r["gradable"]) == (term, grade, "True"), r
    assert why in r["reason"]


def test_sdtm_unit_spellings_gi_per_l(pilot) -> None:
    wbc = [r for r in pilot[2] if r["lbtestcd"] == "WBC"]
    assert wbc and all(r["unit"] == "GI/L" and r["gradable"] == "True" for r in wbc)


def test_baseline_from_lbblfl(pilot) -> None:
    creat = [r for r in pilot[2] if r["usubjid"] == "01-703-1182" and r["lbtestcd"] == "CREAT"]
    assert {r["baseline"] for r in creat} == {"167.95999999999998"}  # the LBBLFL = Y row's LBSTRESN, exactly


def test_the_batch_record_cites_the_sdtm_file_mapping_and_every_row_source(pilot) -> None:
    _, db, rows = pilot
    graded = [r for r in rows if r["decision_id"]]
    assert len({r["decision_id"] for r in graded}) == 1  # the columnar batch: one record for the file
    with AuditStore.open(db, create=False) as store:
        rec = store.get(graded[0]["decision_id"])
        assert rec.use_case == "ctcae-listing"
        src = rec.input["source"]
        assert src["file"] == "lb.csv" and len(src["sha256"]) == 64 and src["records"] == 1384
        assert src["mapping"]["id"] == "sdtm-default" and len(src["mapping"]["files"][0]["sha256"]) == 64
        assert src["per_code"]["BUN"]["to_grade"] == 0 and src["per_code"]["ALT"]["to_grade"] == 43
        from engine.audit.batches import read_batch
        df = read_batch(store, rec.outcome["batch"])
        first = df.row(0, named=True)
        assert first["input.source_record"] == f"LB {first['input.usubjid']} LBSEQ {first['input.seq']}"
        assert df.height == len(graded) and store.verify().ok


def test_durable_evaluator_audits_each_row_with_its_sdtm_source(tmp_path: Path) -> None:
    body = ("X,LB,S1,7,PLAT,HEMATOLOGY,50,GI/L,150,400,,V1,2021-01-01,1\n"
            "X,LB,S1,8,BUN,CHEMISTRY,9,mmol/L,2,8,,V1,2021-01-01,1\n")
    res, db = grade(tmp_path, HEADER + body, "--evaluator", "durable")
    assert res.exit_code == 0, res.output
    rows = rows_of(res)
    with AuditStore.open(db, create=False) as store:
        rec = store.get(rows[0]["decision_id"])
        assert rec.use_case == "ctcae-lab" and set(sources_of(rec.input).values()) == {"LB S1 LBSEQ 7"}
        (sdtm,) = list(store.iter(use_case="sdtm-lb"))
        assert sdtm.input["mapping"]["id"] == "sdtm-default" and sdtm.outcome["to_grade"] == 1
    assert rows[1]["decision_id"] == "" and rows[1]["reason"].startswith("LBTESTCD BUN:")


def test_both_sides_of_a_threshold_through_sdtm(tmp_path: Path) -> None:
    # bilirubin ULN 21 umol/L: 63 = 3.0 x ULN is G2 (> 1.5 - 3.0 x ULN); 63.01 is G3 (> 3.0 x ULN)
    body = ("X,LB,S1,1,BILI,CHEMISTRY,63,umol/L,3,21,,V1,2021-01-01,1\n"
            "X,LB,S1,2,BILI,CHEMISTRY,63.01,umol/L,3,21,,V2,2021-01-08,8\n"
            "X,LB,S1,3,PLAT,HEMATOLOGY,50,GI/L,150,400,,V2,2021-01-08,8\n"      # 50 x10^9/L: G2 (< 75 - 50)
            "X,LB,S1,4,PLAT,HEMATOLOGY,49.9,GI/L,150,400,,V2,2021-01-08,8\n")   # G3 (< 50 - 25)
    res, _ = grade(tmp_path, HEADER + body)
    assert res.exit_code == 0, res.output
    assert [r["grade"] for r in rows_of(res)] == ["2", "3", "2", "3"]


def test_the_study_day_baseline_rule_of_a_trial_mapping(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    import shutil
    shutil.copytree(ROOT / "rules", rules)
    trial = rules / "_cdisc" / "demo"
    trial.mkdir()
    (trial / "sdtm-mapping.yaml").write_text(
        "id: demo\nversion: 1.0.0\nextends: sdtm-default\n"
        "lab:\n  baseline: {rule: study_day, day_variable: LBDY, on_or_before: 1}\n"
        "  tests:\n    - {code: SCR, test: creatinine}\n")
    # creatinine ULN 100: day -3 80, day 1 90 (the baseline: the last on or before day 1), day 8 140
    body = ("X,LB,S1,1,SCR,CHEMISTRY,80,umol/L,50,100,,V0,2021-01-01,-3\n"
            "X,LB,S1,2,SCR,CHEMISTRY,90,umol/L,50,100,,V1,2021-01-04,1\n"
            "X,LB,S1,3,SCR,CHEMISTRY,140,umol/L,50,100,,V2,2021-01-11,8\n")
    res, _ = grade(tmp_path, HEADER + body, "--trial", "demo")
    res = CliRunner().invoke(main, ["--db", str(tmp_path / "a.sqlite"), "--rules-dir", str(rules), "ctcae", "grade",
                                    str(tmp_path / "lb.csv"), "--ctcae", "4.03", "--trial", "demo"])
    assert res.exit_code == 0, res.output
    rows = rows_of(res)
    assert [r["baseline"] for r in rows] == ["90", "90", "90"]
    # 140 = 1.56 x baseline 90 (G2: > 1.5 - 3.0 x baseline) and 1.4 x ULN (G1): the higher, G2
    assert rows[2]["grade"] == "2", rows[2]


def test_a_bad_row_skips_its_subject_and_says_so(tmp_path: Path) -> None:
    body = ("X,LB,S1,1,PLAT,HEMATOLOGY,50,GI/L,150,400,,V1,2021-01-01,1\n"
            "X,LB,S1,1,WBC,HEMATOLOGY,2.0,GI/L,4,10,,V1,2021-01-01,1\n"          # duplicate LBSEQ
            "X,LB,S2,1,PLAT,HEMATOLOGY,abc,GI/L,150,400,,V1,2021-01,1\n"         # not a number; partial date
            "X,LB,S3,1,PLAT,HEMATOLOGY,40,GI/L,150,400,,V1,2021-01-01,1\n")
    res, db = grade(tmp_path, HEADER + body)
    assert res.exit_code == 0, res.output
    rows = rows_of(res)
    assert [r["grade"] for r in rows] == ["", "", "", "3"]
    assert "subject S1 skipped" in rows[0]["reason"] and "subject S2 skipped" in rows[2]["reason"]
    err = res.stderr
    assert f"{tmp_path / 'lb.csv'}:3, USUBJID S1, LBSEQ 1, variable LBSEQ: duplicate LBSEQ: also used by record 2" in err
    assert "USUBJID S2, LBSEQ 1, variable LBSTRESN: 'abc' is not a number (expected a number)" in err
    assert "note: " in err and "partial date '2021-01'" in err
    assert "skipped subjects: S1, S2" in err
    with AuditStore.open(db, create=False) as store:
        (rec,) = list(store.iter(use_case="ctcae-listing"))
        from engine.audit.batches import read_batch
        assert read_batch(store, rec.outcome["batch"])["subject"].to_list() == ["S3"]  # only S3 graded


def test_strict_refuses_and_writes_nothing(tmp_path: Path) -> None:
    body = ("X,LB,S1,1,PLAT,HEMATOLOGY,50,GI/L,150,400,,V1,2021-01-01,1\n"
            "X,LB,S1,1,WBC,HEMATOLOGY,2.0,GI/L,4,10,,V1,2021-01-01,1\n")
    out = tmp_path / "out.csv"
    res, db = grade(tmp_path, HEADER + body, "--strict", "--output", str(out))
    assert res.exit_code == 2, res.output
    assert "refused (--strict)" in res.stderr and "USUBJID S1, LBSEQ 1, variable LBSEQ: duplicate" in res.stderr
    assert "Traceback" not in res.output and not out.exists() and not db.exists()


@pytest.mark.parametrize("header, needle", [
    ("STUDYID,USUBJID,LBSEQ,LBTESTCD,LBSTRESU\n", "lacks the variable LBSTRESN"),
    ("STUDYID,LBSEQ,LBTESTCD,LBSTRESN,LBSTRESU\n", "lacks the variable USUBJID"),
])
def test_a_missing_variable_is_exit_2(tmp_path: Path, header: str, needle: str) -> None:
    res, db = grade(tmp_path, header + ",".join(["x"] * header.count(",")) + ",x\n")
    assert res.exit_code == 2 and needle in res.stderr and not db.exists(), res.output


def test_unknown_trial_mapping_is_exit_2(tmp_path: Path) -> None:
    res, _ = grade(tmp_path, PILOT_LB, "--trial", "nope")
    assert res.exit_code == 2 and "no SDTM mapping for trial 'nope'" in res.stderr


def test_a_mapping_naming_an_unknown_lab_test_is_refused(tmp_path: Path) -> None:
    import shutil
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    (rules / "_cdisc" / "bad").mkdir()
    (rules / "_cdisc" / "bad" / "sdtm-mapping.yaml").write_text(
        "id: bad\nversion: 1.0.0\nextends: sdtm-default\nlab:\n  tests:\n    - {code: XX, test: neutrofils}\n")
    res = CliRunner().invoke(main, ["--db", str(tmp_path / "a.sqlite"), "--rules-dir", str(rules), "ctcae", "grade",
                                    str(PILOT_LB), "--ctcae", "4.03", "--trial", "bad"])
    assert res.exit_code == 2 and "neutrofils" in res.stderr


@pytest.mark.parametrize("fmt", ["xpt", "json"])
def test_xpt_and_dataset_json_grade_like_the_csv(tmp_path: Path, fmt: str) -> None:
    text = HEADER + "".join(f"X,LB,S{i % 3},{i},{code},CHEMISTRY,{v},{u},{lo},{hi},{'Y' if i < 3 else ''},V,2021-01-0{i % 9 + 1},{i}\n"
                            for i, (code, v, u, lo, hi) in enumerate([
                                ("ALT", "120", "U/L", "6", "34"), ("BILI", "40", "umol/L", "3", "21"),
                                ("CREAT", "150", "umol/L", "50", "100"), ("K", "6.5", "mmol/L", "3.5", "5.1"),
                                ("GLUC", "2.1", "mmol/L", "3.9", "5.6"), ("BUN", "9", "mmol/L", "2", "8")], 1))
    res_csv, _ = grade(tmp_path, text)
    ds = read_dataset(tmp_path / "lb.csv")
    numeric = {"LBSEQ", "LBSTRESN", "LBSTNRLO", "LBSTNRHI", "LBDY"}
    cols = [Column(v.name, v.name, "number" if v.name in numeric else "text") for v in ds.variables]
    other = write_dataset(tmp_path / f"lb.{fmt}", "LB", "Laboratory Test Results", cols, ds.rows(), fmt)
    res, _ = grade(tmp_path, other, db=tmp_path / "b.sqlite")
    assert res.exit_code == 0, res.output
    keep = ("usubjid", "seq", "lbtestcd", "term", "grade", "gradable", "reason")
    assert [{k: r[k] for k in keep} for r in rows_of(res)] == [{k: r[k] for k in keep} for r in rows_of(res_csv)]
    # ALT 3.5 x ULN: G2 (> 3.0 - 5.0 x ULN); bilirubin 1.9 x ULN: G2 (> 1.5 - 3.0); creatinine 1.5 x ULN: G1
    # (> ULN - 1.5 x ULN); K 6.5: G3 (> 6.0 - 7.0); glucose 2.1 mmol/L: G3 (< 2.2 - 1.7); BUN: not graded
    assert [r["grade"] for r in rows_of(res)] == ["2", "2", "1", "3", "3", ""]


def test_json_output_holds_rows_per_code_and_problems(tmp_path: Path) -> None:
    res, _ = grade(tmp_path, HEADER + "X,LB,S1,1,PLAT,HEMATOLOGY,50,GI/L,150,400,,V1,2021-01,1\n", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["rows"][0]["grade"] == 2 and doc["per_code"]["PLAT"]["to_grade"] == 1
    assert doc["problems"]["notes"] == 1 and doc["problems"]["errors"] == 0
