"""Issue 14 items 1-2: one reader for SDTM datasets (XPT, Dataset-JSON 1.0 / 1.1 / NDJSON, CSV),
ISO 8601 partial dates, the per-row problem report, SUPP-- qualifiers."""
from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from engine.errors import InputError
from engine.sdtm.checks import check_rows, merge_supp
from engine.sdtm.dates import Imputation, read_dtc
from engine.sdtm.mapping import DatasetSpec, load_mapping
from engine.sdtm.problems import ProblemReport
from engine.sdtm.read import dataset_files, number, read_dataset
from engine.sdtm.write import Column, write_dataset

ROOT = Path(__file__).resolve().parents[1]
PILOT = ROOT / "fixtures" / "sdtm" / "pilot"


def _columns_of(ds) -> list[Column]:
    numeric = {"LBSEQ", "LBSTRESN", "LBSTNRLO", "LBSTNRHI", "VISITNUM", "VISITDY", "LBDY"}
    return [Column(v.name, v.label or v.name, "number" if v.name in numeric else "text") for v in ds.variables]


@pytest.fixture(scope="module")
def lb_csv():
    return read_dataset(PILOT / "lb.csv")


@pytest.mark.parametrize("fmt", ["xpt", "json", "ndjson"])
def test_every_format_reads_the_same_values(tmp_path: Path, lb_csv, fmt: str) -> None:
    cols = _columns_of(lb_csv)
    path = write_dataset(tmp_path / f"lb.{fmt}", "LB", "Laboratory Test Results", cols, lb_csv.rows(), fmt)
    back = read_dataset(path)
    assert back.name == "LB" and len(back) == len(lb_csv) == 1384
    assert [v.name for v in back.variables] == [v.name for v in lb_csv.variables]
    for c in cols:
        want = lb_csv.columns[c.name]
        got = back.columns[c.name]
        if c.type == "number":  # CSV text vs typed numbers: the same exact decimals
            assert [None if w is None else Decimal(w) for w in want] == got, c.name
        else:
            assert want == got, c.name
    if fmt != "xpt":  # XPT keeps labels of 40 characters
        assert back.label("LBSTRESN") == "LBSTRESN"


def test_decimals_stay_exact_in_every_format(tmp_path: Path) -> None:
    cols = [Column("USUBJID", "Subject"), Column("LBSTRESN", "Result", "number")]
    rows = [{"USUBJID": "S1", "LBSTRESN": Decimal("0.1")}, {"USUBJID": "S2", "LBSTRESN": Decimal("1.005")},
            {"USUBJID": "S3", "LBSTRESN": None}]
    for fmt in ("xpt", "json", "ndjson", "csv"):
        back = read_dataset(write_dataset(tmp_path / f"lb.{fmt}", "LB", "Lab", cols, rows, fmt))
        assert [number(v) for v in back.columns["LBSTRESN"]] == [Decimal("0.1"), Decimal("1.005"), None], fmt
        assert fmt == "csv" or back.columns["LBSTRESN"][0] == Decimal("0.1")  # typed formats: numbers


def test_dataset_json_v1_0(tmp_path: Path) -> None:
    doc = {"clinicalData": {"studyOID": "S", "itemGroupData": {"IG.DM": {
        "records": 2, "name": "DM", "label": "Demographics",
        "items": [{"OID": "ITEMGROUPDATASEQ", "name": "ITEMGROUPDATASEQ", "label": "Record Identifier", "type": "integer"},
                  {"OID": "IT.DM.USUBJID", "name": "USUBJID", "label": "Unique Subject Identifier", "type": "string"},
                  {"OID": "IT.DM.AGE", "name": "AGE", "label": "Age", "type": "integer"}],
        "itemData": [[1, "S-1", 63], [2, "S-2", 71.5]]}}}}
    f = tmp_path / "dm.json"
    f.write_text(json.dumps(doc))
    ds = read_dataset(f)
    assert ds.name == "DM" and [v.name for v in ds.variables] == ["USUBJID", "AGE"]
    assert ds.columns["AGE"] == [Decimal(63), Decimal("71.5")]


@pytest.mark.parametrize("name, content, needle", [
    ("lb.csv", "USUBJID,LBSEQ\nS1,1,9\n", "record has 3 fields, the header 2"),
    ("lb.csv", "USUBJID,LBSEQ,USUBJID\nS1,1,S1\n", "variable USUBJID appears twice"),
    ("lb.csv", "USUBJID,LBSEQ\nS1,\"1\n", "malformed CSV"),
    ("lb.csv", "USUBJID,LBSEQ\nS1\x1b,1\n", "control character"),
    ("lb.csv", "", "empty file"),
    ("lb.csv", "USUBJID,LB SEQ\nS1,1\n", "not an SAS/SDTM name"),
    ("lb.json", '{"datasetJSONVersion": "1.1.0", "name": "LB", "records": 2, "columns": '
                '[{"itemOID": "a", "name": "USUBJID", "label": "x", "dataType": "string"}], "rows": [["S1"]]}',
     "declares 2 records but holds 1"),
    ("lb.json", '{"datasetJSONVersion": "1.1.0", "name": "LB", "columns": '
                '[{"itemOID": "a", "name": "USUBJID", "label": "x", "dataType": "string"}], "rows": [["S1", 2]]}',
     "record 1 has 2 values, the columns are 1"),
    ("lb.json", '{"datasetJSONVersion": "2.0", "columns": []}', "datasetJSONVersion '2.0'"),
    ("lb.json", '{"datasetJSONVersion": "1.1.0", "datasetJSONVersion": "1.1.0"}', "duplicate key"),
    ("lb.json", '{"datasetJSONVersion": "1.1.0", "name": "LB", "columns": [{"itemOID": "a", "name": "LBSTRESN", '
                '"label": "x", "dataType": "decimal"}], "rows": [["abc"]]}', "'abc' is not a number"),
    ("lb.json", '{"nothing": 1}', "neither `columns`"),
    ("lb.json", "[1, 2", "malformed JSON"),
    ("lb.ndjson", '{"datasetJSONVersion": "1.1.0", "name": "LB", "records": 1, "columns": '
                  '[{"itemOID": "a", "name": "USUBJID", "label": "x", "dataType": "string"}]}\n["S1"]\n["S2"]\n',
     "declares 1 records but holds 2"),
    ("lb.xpt", "HEADER RECORD*******LIBRARY HEADER RECORD!!!!!!!0000000", "cannot read as SAS transport"),
    ("lb.sas7bdat", "x", "unsupported file type"),
])
def test_a_broken_file_is_refused_naming_file_and_record(tmp_path: Path, name: str, content: str, needle: str) -> None:
    f = tmp_path / name
    f.write_text(content)
    with pytest.raises(InputError) as e:
        read_dataset(f)
    assert needle in str(e.value) and name in str(e.value)


def test_dataset_files_refuses_two_files_for_one_dataset(tmp_path: Path) -> None:
    (tmp_path / "lb.csv").write_text("USUBJID\nS1\n")
    (tmp_path / "lb.json").write_text("{}")
    with pytest.raises(InputError, match="dataset LB is given twice"):
        dataset_files(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no SDTM dataset"):
        dataset_files(tmp_path / "empty")


# --- dates -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, rule, value, status, flag", [
    ("2021-03-15", None, dt.date(2021, 3, 15), "complete", None),
    ("2021-03-15T10:20", None, dt.date(2021, 3, 15), "complete", None),
    ("2021-03-15T10:20:30.5+01:00", None, dt.date(2021, 3, 15), "complete", None),
    ("2021-03", None, None, "partial", None),
    ("2021", None, None, "partial", None),
    ("2021-03", Imputation("D", "first"), dt.date(2021, 3, 1), "imputed", "D"),
    ("2021-02", Imputation("D", "last"), dt.date(2021, 2, 28), "imputed", "D"),
    ("2024-02", Imputation("D", "last"), dt.date(2024, 2, 29), "imputed", "D"),
    ("2021-03", Imputation("M", "mid"), dt.date(2021, 3, 15), "imputed", "D"),
    ("2021", Imputation("M", "mid"), dt.date(2021, 6, 30), "imputed", "M"),    # admiral's "mid": June 30
    ("2021", Imputation("M", "first"), dt.date(2021, 1, 1), "imputed", "M"),
    ("2021", Imputation("M", "last"), dt.date(2021, 12, 31), "imputed", "M"),
    ("2021", Imputation("D", "first"), None, "partial", None),                 # the month may not be imputed
    ("2021---15", Imputation("M", "first"), None, "partial", None),           # a day without a month
    ("2021---15", None, None, "partial", None),
    ("2021-02-30", None, None, "invalid", None),
    ("2021-13", Imputation("M", "first"), None, "invalid", None),
    ("15/03/2021", None, None, "invalid", None),
    ("2021-03-15T25", None, None, "invalid", None),      # an hour of 25: the value is not what it seems
    ("2021-03-15T10:61", None, None, "invalid", None),
    ("", None, None, "missing", None),
])
def test_iso8601_dates(raw: str, rule, value, status: str, flag) -> None:
    rd = read_dtc(raw, rule)
    assert (rd.value, rd.status, rd.flag) == (value, status, flag), rd.message
    if status in ("partial", "imputed"):
        assert raw in rd.message


@settings(max_examples=200, deadline=None)
@given(st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2100, 12, 31)), st.sampled_from(["month", "year"]))
def test_imputed_span_contains_the_true_date(day: dt.date, keep: str) -> None:
    """Truncating a real date and imputing first / last always brackets it; mid lies between."""
    raw = day.strftime("%Y-%m") if keep == "month" else day.strftime("%Y")
    first = read_dtc(raw, Imputation("M", "first")).value
    last = read_dtc(raw, Imputation("M", "last")).value
    mid = read_dtc(raw, Imputation("M", "mid")).value
    assert first <= day <= last and first <= mid <= last


# --- row checks and SUPP-- ---------------------------------------------------------------------------

def _ds(tmp_path: Path, name: str, text: str):
    f = tmp_path / f"{name}.csv"
    f.write_text(text)
    return read_dataset(f)


def test_row_checks_name_file_record_subject_seq_and_variable(tmp_path: Path) -> None:
    ds = _ds(tmp_path, "ae", "USUBJID,AESEQ,AETERM,AESTDTC\n"
                            "S1,1,NAUSEA,2021-03-01\nS1,1,VOMITING,2021-03\nS2,1,,2021-02-30\nS3,x,RASH,\n")
    rep = ProblemReport()
    spec = load_mapping().dataset("AE")
    check_rows(ds, spec, rep, None)
    lines = rep.lines()
    assert any(f"{ds.file}:3, USUBJID S1, AESEQ 1, variable AESEQ: duplicate AESEQ: also used by record 2" in l
               for l in lines), lines
    assert any("USUBJID S2, AESEQ 1, variable AETERM: required value is empty" in l for l in lines)
    assert any("USUBJID S2" in l and "AESTDTC" in l and "no such day" in l for l in lines)
    assert any("USUBJID S3" in l and "'x' is not a number" in l for l in lines)
    assert any(l.startswith("note:") and "partial date '2021-03'" in l and "left unknown" in l for l in lines)
    assert rep.failed_subjects() == {"S1", "S2", "S3"}
    with pytest.raises(InputError, match="refused \\(--strict\\)"):
        rep.refuse_if_strict(True, "ae.csv")


def test_a_missing_required_variable_is_refused_at_once(tmp_path: Path) -> None:
    ds = _ds(tmp_path, "lb", "USUBJID,LBSEQ\nS1,1\n")
    with pytest.raises(InputError, match="dataset LB lacks the variable LBTESTCD"):
        check_rows(ds, DatasetSpec(seq="LBSEQ", required=("USUBJID", "LBSEQ", "LBTESTCD")), ProblemReport(), None)


def test_supp_qualifiers_merge_into_their_records(tmp_path: Path) -> None:
    lb = _ds(tmp_path, "lb", "USUBJID,LBSEQ,LBTESTCD\nS1,1,NEUT\nS1,2,PLAT\nS2,1,NEUT\n")
    supp = _ds(tmp_path, "supplb", "USUBJID,RDOMAIN,IDVAR,IDVARVAL,QNAM,QVAL\n"
                                   "S1,LB,LBSEQ,2,LBMETHOD,MANUAL\n"      # one record, matched as a number
                                   "S2,LB,,,LBSITE,CENTRAL\n"             # every record of S2
                                   "S1,LB,LBSEQ,9,LBMETHOD,X\n"           # names no record
                                   "S1,LB,LBSEQ,1,LBTESTCD,X\n")          # shadows a parent variable
    rep = ProblemReport()
    added = merge_supp(lb, supp, DatasetSpec(seq="LBSEQ"), rep)
    assert added == ["LBMETHOD", "LBSITE"]
    assert lb.columns["LBMETHOD"] == [None, "MANUAL", None]
    assert lb.columns["LBSITE"] == [None, None, "CENTRAL"]
    msgs = rep.lines()
    assert len(msgs) == 2 and "names no LB record" in msgs[0] and "has the name of a LB variable" in msgs[1]


def test_help_imports_no_data_frame_library() -> None:
    """Cold start (issue 15): the SDTM and ADaM commands import pyreadstat, polars and pandas
    only when they run."""
    import subprocess
    import sys
    code = ("import sys, cli\nfrom click.testing import CliRunner\n"
            "for args in (['--help'], ['ctcae', 'grade', '--help'], ['export', 'adam', '--help']):\n"
            "    assert CliRunner().invoke(cli.main, args).exit_code == 0\n"
            "print(sorted(m for m in ('pyreadstat', 'polars', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
