"""Issue 16 items 1 and 5: a CSV lab listing is read whole and strictly before anything is graded,
and a row whose values cannot be real is reported, never graded nor audited as a grade."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from engine.audit import AuditStore
from engine.errors import InputError
from engine.record.listing import read_listing, row_problem
from engine.safetext import csv_cell, printable

HEADER = "subject_id,lab_test,value,unit,lln,uln,baseline\n"


def grade(tmp_path: Path, text: str | bytes, *extra: str):
    f = tmp_path / "labs.csv"
    f.write_bytes(text if isinstance(text, bytes) else text.encode())
    db = tmp_path / "a.sqlite"
    return CliRunner().invoke(main, ["--db", str(db), "--actor", "t", "ctcae", "grade", str(f), "--ctcae", "5.0",
                                     *extra]), f, db


@pytest.mark.parametrize("row, column, needle", [
    ("S1,neutrophils,-1,10^9/L,,,", "value", "impossible negative value -1"),          # ANC -1 was grade 4
    ("S1,potassium,-6.1,mmol/L,3.5,5.1,", "value", "impossible negative value -6.1"),  # K -6.1 was grade 4
    ("S1,platelets,-80000,/uL,,,", "value", "impossible negative value -80000"),       # was grade 4
    ("S1,alt,100,U/L,,0,", "uln", "upper limit of normal of 0"),                      # ULN 0 was grade 4
    ("S1,creatinine,2,mg/dL,,1.2,-1.0", "baseline", "impossible negative baseline"),  # was grade 3
    ("S1,alt,100,U/L,50,40,", "lln", "lln 50 above uln 40"),                          # LLN > ULN accepted
    ("S1,alt,1e999999999,U/L,,40,", "value", "outside the range"),
    ("S1,alt,1e-300,U/L,,40,", "value", "outside the range"),
    ("S1,alt,NaN,U/L,,40,", "value", "not a finite number"),
    ("S1,alt," + "9" * 5000 + ",U/L,,40,", "value", "outside the range"),
])
def test_impossible_values_are_reported_not_graded_nor_audited(tmp_path: Path, row: str, column: str,
                                                               needle: str) -> None:
    good = "S2,neutrophils,0.4,10^9/L,1.5,8,"
    # one audit record per graded row: the row path (the columnar batch: tests/test_columnar.py)
    result, f, db = grade(tmp_path, HEADER + row + "\n" + good + "\n", "--evaluator", "durable")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert len(rows) == 2
    bad, ok = rows
    assert bad["grade"] == "" and bad["gradable"] == "False" and f"column {column}" in bad["reason"]
    assert needle in bad["reason"] and not bad.get("decision_id")
    assert ok["grade"] == "4" and ok["decision_id"]
    with AuditStore.open(db, create=False) as store:
        assert [r.subject_id for r in store.iter()] == ["S2"]  # only the real result is audited


@pytest.mark.parametrize("content, needle", [
    (b"\xef\xbb\xbf\xef\xbb\xbfsubject_id,lab_test,value\nS1,neutrophils,0.4\n", "second byte-order mark"),
    (b"subject_id,lab_test,value,unit,value\nS1,neutrophils,0.4,10^9/L,3\n", "column 'value' appears twice"),
    (b'subject_id,lab_test,value\nS1,neutrophils,"0.4\nS2,neutrophils,1\nS3,neutrophils,2\n', "unexpected end of data"),
    (b'subject_id,lab_test,value\nS1,neutrophils,"0.4\n5"\nS2,neutrophils,1\n', "spans lines"),
    (b"subject_id,lab_test,value\nS1,neutrophils\n", "fewer fields than the header"),
    (b"subject_id,lab_test,value\n", "no data rows"),
    (b"subject_id,lab_test,value\nS1\x1b[2J,neutrophils,1\n", "control character U+001B"),
    (b"subject_id,lab_test,value\nS1,neutrophils,\xff\n", "not UTF-8"),
])
def test_listings_that_would_lose_or_misfile_rows_are_refused(tmp_path: Path, content: bytes, needle: str) -> None:
    result, f, db = grade(tmp_path, content)
    assert result.exit_code == 2 and needle in result.output and str(f) in result.output, result.output
    assert "Traceback" not in result.output and not db.exists()


def test_a_single_byte_order_mark_is_read(tmp_path: Path) -> None:
    f = tmp_path / "bom.csv"
    f.write_bytes(b"\xef\xbb\xbfsubject_id,lab_test,value,unit,lln,uln\nS9,neutrophils,0.4,10^9/L,1.5,8\n")
    [(n, row)] = list(read_listing(f))
    assert n == 2 and row["subject_id"] == "S9"


def test_devices_and_folders_are_not_read_as_listings(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a regular file"):
        list(read_listing("/dev/zero"))
    with pytest.raises(InputError, match="folder"):
        list(read_listing(tmp_path))


def test_row_problem_agrees_with_the_subject_record_checks() -> None:
    assert row_problem({"value": "1.2", "lln": "", "uln": "4", "baseline": ""}) is None
    assert row_problem({"value": "", "uln": "0"}) is None or "uln" in row_problem({"value": "", "uln": "0"})
    assert "column uln" in row_problem({"value": "3", "uln": "0"})
    assert "column value" in row_problem({"value": "abc"})


def test_formula_cells_are_neutralised_in_csv_output(tmp_path: Path) -> None:
    result, f, db = grade(tmp_path, 'lab_test,value,unit\n"=HYPERLINK(""http://x"",""y"")",1,g/L\n'
                                    "neutrophils,-0.5,10^9/L\n@SUM(A1),2,g/L\n")
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.output)))[1:]
    assert rows[0][0].startswith("'=HYPERLINK") and rows[2][0] == "'@SUM(A1)"
    assert rows[1][1] == "-0.5"  # a negative number stays a number
    assert csv_cell("+1") == "+1" and csv_cell("-x") == "'-x" and csv_cell(3) == 3


def test_printable_escapes_terminal_controls() -> None:
    assert printable("A1\x1b[2J") == "A1\\x1b[2J" and printable("plain") == "plain"
