"""Issue 14 item 5: `adjudicator export adam RUN -o DIR [--format csv|xpt|parquet]` from the audit
trail with the committee's decisions in force: ADSL, ADRS, ADTTE, ADAE, ADLB with ADaM names and
labels, a metadata file, every row carrying a decision id the trail verifies."""
from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pandas as pd
import polars as pl
import pytest
from click.testing import CliRunner

from cli import main
from engine.audit import AuditStore

ROOT = Path(__file__).resolve().parents[1]
VAH96 = ROOT / "fixtures" / "cohort" / "vah96"
SUBJECTS = ("VAH-001", "VAH-002", "VAH-003", "VAH-004", "VAH-005", "VAH-006")
COLUMNS = {
    "ADSL": ["STUDYID", "USUBJID", "SUBJID", "SCRNFL", "ENRLFL", "SAFFL", "TRTSDT", "TRTEDT", "DTHDT", "DTHFL",
             "LSTALVDT", "AGE", "AGEU", "SEX", "ELIGSTAT", "ELIGFL", "DISSTAT", "RELSET", "RELNUM", "ELNR17", "ELNR22",
             "DECID", "FUDECID"],
    "ADRS": ["STUDYID", "USUBJID", "PARAMCD", "PARAM", "PARCAT1", "AVALC", "AVAL", "ADT", "AVISIT", "ASSESSID", "DECID"],
    "ADTTE": ["STUDYID", "USUBJID", "PARAMCD", "PARAM", "PARCAT1", "STARTDT", "ADT", "AVAL", "AVALU", "CNSR", "EVNTDESC",
              "CNSDTDSC", "DECID"],
    "ADAE": ["STUDYID", "USUBJID", "AESPID", "AEDECOD", "ASTDT", "ATOXGR", "ATOXGRN", "GRSRC", "TRTEMFL", "AREL",
             "ARELSRC", "DECID"],
    "ADLB": ["STUDYID", "USUBJID", "PARAMCD", "PARAM", "LBSPID", "ADT", "AVAL", "AVALU", "ANRLO", "ANRHI", "BASE", "ABLFL",
             "ATOXDSCL", "ATOXDSCH", "ATOXGRL", "ATOXGRH", "BTOXGRL", "BTOXGRH", "TRTEMFL", "DECID"],
}


def adj(db: Path, *args: str):
    return CliRunner().invoke(main, ["--db", str(db), "--actor", "chair", "--rules-dir", str(ROOT / "rules"), *args])


@pytest.fixture(scope="module")
def trail(tmp_path_factory) -> tuple[Path, str]:
    d = tmp_path_factory.mktemp("subjects")
    for sid in SUBJECTS:
        shutil.copy(VAH96 / f"{sid}.yaml", d)
    shutil.copy(ROOT / "fixtures" / "cohort" / "screen-failures" / "VAH-SF-02.yaml", d)
    db = tmp_path_factory.mktemp("db") / "audit.sqlite"
    r = adj(db, "cohort", str(d), "--workers", "1", "--reason", "export test", "--json")
    assert r.exit_code == 0, r.output
    return db, json.loads(r.output)["run"]["run_id"]


def copy_db(db0: Path, to: Path) -> Path:
    db = to / "audit.sqlite"
    with AuditStore.open(db0) as s:
        s.backup(db)
    return db


def export(db: Path, run: str | None, out: Path, *extra: str):
    r = adj(db, "export", "adam", *([run] if run else []), "-o", str(out), *extra)
    assert r.exit_code == 0, r.output
    return r


def test_csv_export_opens_in_pandas_with_the_expected_columns(trail, tmp_path):
    db, run = trail
    r = export(db, run, tmp_path / "adam")
    assert f"ADaM datasets of run {run} (csv)" in r.output
    for name, cols in COLUMNS.items():
        df = pd.read_csv(tmp_path / "adam" / f"{name.lower()}.csv", dtype=str, keep_default_na=False)
        assert list(df.columns) == cols, name
        assert len(df) > 0 and (df["STUDYID"] == "NCT04424147").all()
    adsl = pd.read_csv(tmp_path / "adam" / "adsl.csv", dtype=str, keep_default_na=False)
    assert len(adsl) == 7 and set(adsl["USUBJID"]) == set(SUBJECTS) | {"VAH-SF-02"}
    sf = adsl[adsl["USUBJID"] == "VAH-SF-02"].iloc[0]
    assert (sf["ENRLFL"], sf["ELIGFL"], sf["SAFFL"], sf["TRTSDT"], sf["FUDECID"]) == ("N", "N", "N", "", "")


def test_every_row_carries_a_decision_id_the_trail_verifies(trail, tmp_path):
    db, run = trail
    export(db, run, tmp_path / "adam")
    with AuditStore.open(db, create=False, read_only=True) as store:
        assert store.verify().ok
        for name in COLUMNS:
            df = pd.read_csv(tmp_path / "adam" / f"{name.lower()}.csv", dtype=str, keep_default_na=False)
            assert (df["DECID"] != "").all(), name
            for did in set(df["DECID"]):
                rec = store.get(did)
                assert rec is not None and rec.subject_id in set(df["USUBJID"]), (name, did)
    meta = json.loads((tmp_path / "adam" / "metadata.json").read_text())
    assert meta["audit"]["run_id"] == run and meta["audit"]["chain_head"]["seq"] > 0
    assert [d["name"] for d in meta["datasets"]] == list(COLUMNS)
    for d in meta["datasets"]:
        assert [v["name"] for v in d["variables"]] == COLUMNS[d["name"]]
        assert all(v["label"] and len(v["label"]) <= 40 for v in d["variables"])
        assert all(v["derivation"] or v["source"] for v in d["variables"])
    assert {p["PARAMCD"] for p in meta["parameters"]["ADTTE"]} == {"OS", "EFS", "DFS"}
    assert [s["id"] for s in meta["specification"]] == ["adam-default", "vah-adam"]


def test_adrs_and_adtte_are_the_course_outputs(trail, tmp_path):
    db, run = trail
    export(db, run, tmp_path / "adam")
    adrs = pd.read_csv(tmp_path / "adam" / "adrs.csv", dtype=str, keep_default_na=False)
    adtte = pd.read_csv(tmp_path / "adam" / "adtte.csv", dtype=str, keep_default_na=False)
    from engine.report.trail import iter_subjects
    with AuditStore.open(db, create=False, read_only=True) as store:
        for t in iter_subjects(store, run):
            for profile, course in t.course.items():
                o = course.outcome
                rows = adrs[(adrs["USUBJID"] == t.subject_id) & (adrs["PARCAT1"] == profile)]
                bor = rows[rows["PARAMCD"] == "BOR"].iloc[0]
                assert bor["AVALC"] == (o["best_response"]["category"] or "") and bor["DECID"] == course.decision_id
                crc = rows[rows["PARAMCD"] == "CRCLM"].iloc[0]
                assert crc["AVALC"] == {True: "Y", False: "N", None: ""}[o["primary_endpoint_crc"]]
                assert crc["AVAL"] == {True: "1", False: "0", None: ""}[o["primary_endpoint_crc"]]
                efs = adtte[(adtte["USUBJID"] == t.subject_id) & (adtte["PARAMCD"] == "EFS") & (adtte["PARCAT1"] == profile)].iloc[0]
                if o["efs"] and o["efs"]["event"] is not None:
                    assert efs["CNSR"] == ("0" if o["efs"]["event"] else "1") and efs["ADT"] == o["efs"]["date"]
                    start, end = dt.date.fromisoformat(efs["STARTDT"]), dt.date.fromisoformat(efs["ADT"])
                    assert int(efs["AVAL"]) == (end - start).days + 1       # admiral: ADT - STARTDT + 1
                dfs = adtte[(adtte["USUBJID"] == t.subject_id) & (adtte["PARAMCD"] == "DFS") & (adtte["PARCAT1"] == profile)]
                assert len(dfs) == (1 if o["dfs"] else 0)                     # DFS only after a CRc
            for (aid, profile), d in t.marrow.items():
                row = adrs[(adrs["USUBJID"] == t.subject_id) & (adrs["PARAMCD"] == "OVR") & (adrs["PARCAT1"] == profile)
                           & (adrs["ASSESSID"] == aid)].iloc[0]
                assert row["AVALC"] == (d.outcome["category"] or "") and row["DECID"] == d.decision_id
            if t.follow_up:
                os_ = adtte[(adtte["USUBJID"] == t.subject_id) & (adtte["PARAMCD"] == "OS")].iloc[0]
                assert os_["CNSR"] == ("0" if t.follow_up.outcome["os"]["event"] else "1")
                assert os_["ADT"] == t.follow_up.outcome["values"]["follow_up.os_end_date"]


def test_the_committees_decisions_are_in_force(trail, tmp_path):
    db = copy_db(trail[0], tmp_path)
    run = trail[1]
    with AuditStore.open(db) as s:
        a1 = next(r for r in s.iter_rows(subject_id="VAH-002", item="A1/trial"))
        ae = next(r for r in s.iter_rows(subject_id="VAH-002", use_case="ae"))
    machine = json.loads(a1["outcome"])["category"]
    assert machine != "NR"
    r = adj(db, "audit", "override", a1["decision_id"][:12], "--outcome", '{"category": "NR"}', "--reviewer", "Dr Hem",
            "--role", "hematologist", "--reason", "recount: 30 % blasts")
    assert r.exit_code == 0, r.output
    related = json.loads(ae["outcome"])["attribution"]["treatment_related"]
    r = adj(db, "ae-adjudicate", "VAH-002", ae["item"], "--unrelated" if related else "--related", "--reviewer", "Dr Hem",
            "--reason", "committee attribution")
    assert r.exit_code == 0, r.output
    export(db, run, tmp_path / "adam")
    adrs = pd.read_csv(tmp_path / "adam" / "adrs.csv", dtype=str, keep_default_na=False)
    row = adrs[(adrs["USUBJID"] == "VAH-002") & (adrs["ASSESSID"] == "A1") & (adrs["PARCAT1"] == "trial")
               & (adrs["PARAMCD"] == "OVR")].iloc[0]
    assert row["AVALC"] == "NR" and row["DECID"] != a1["decision_id"]
    with AuditStore.open(db, create=False, read_only=True) as s:
        assert s.get(row["DECID"]).supersedes == a1["decision_id"]
    adae = pd.read_csv(tmp_path / "adam" / "adae.csv", dtype=str, keep_default_na=False)
    e = adae[(adae["USUBJID"] == "VAH-002") & (adae["AESPID"] == ae["item"])].iloc[0]
    assert e["ARELSRC"] == "COMMITTEE" and e["AREL"] == ("NOT RELATED" if related else "RELATED")


@pytest.mark.parametrize("fmt", ["xpt", "parquet"])
def test_xpt_and_parquet(trail, tmp_path, fmt):
    db, run = trail
    export(db, run, tmp_path / "csv")
    export(db, run, tmp_path / fmt, "--format", fmt)
    for name, cols in COLUMNS.items():
        csv_df = pd.read_csv(tmp_path / "csv" / f"{name.lower()}.csv", dtype=str, keep_default_na=False)
        f = tmp_path / fmt / f"{name.lower()}.{fmt}"
        if fmt == "xpt":
            df = pd.read_sas(f, format="xport", encoding="utf-8")       # an independent XPT reader
            assert list(df.columns) == cols and len(df) == len(csv_df)
            if "ADT" in cols and csv_df["ADT"].iloc[0]:
                sas_days = (dt.date.fromisoformat(csv_df["ADT"].iloc[0]) - dt.date(1960, 1, 1)).days
                assert df["ADT"].iloc[0] == sas_days                   # SAS dates (DATE9.)
            assert list(df["DECID"]) == list(csv_df["DECID"])
        else:
            df = pl.read_parquet(f)
            assert df.columns == cols and df.height == len(csv_df)
            assert df["DECID"].to_list() == list(csv_df["DECID"])
    from engine.sdtm.read import read_dataset
    if fmt == "xpt":
        adsl = read_dataset(tmp_path / "xpt" / "adsl.xpt")
        assert adsl.label("TRTSDT") == "Date of First Exposure to Treatment"


def test_export_refuses_a_tampered_trail_an_unknown_run_and_a_bad_folder(trail, tmp_path):
    import sqlite3
    db0, run = trail
    db = copy_db(db0, tmp_path)
    r = adj(db, "export", "adam", "run-nope", "-o", str(tmp_path / "a"))
    assert r.exit_code == 2 and not (tmp_path / "a").exists()
    (tmp_path / "file").write_text("x")
    assert adj(db, "export", "adam", run, "-o", str(tmp_path / "file")).exit_code == 2
    con = sqlite3.connect(db)
    con.execute("DROP TRIGGER decisions_no_update")
    con.execute("UPDATE decisions SET outcome = '{\"verdict\":\"ELIGIBLE\"}' WHERE seq = 3")
    con.commit()
    con.close()
    r = adj(db, "export", "adam", run, "-o", str(tmp_path / "b"))
    assert r.exit_code == 3 and not (tmp_path / "b").exists()
