"""Columnar CTCAE grading (issue 15 item 4): the pack compiled to columns decides exactly what
durable-rules decides, on every embedded test of both CTCAE packs and on a random differential
listing; `ctcae grade` audits a listing as one Parquet batch chained into the trail."""
from __future__ import annotations

import json
import random
import sqlite3
from decimal import Decimal

import polars as pl
import pytest
from click.testing import CliRunner

from cli import main
from conftest import ROOT
from engine.adjudicate import lab_listing
from engine.adjudicate.lab_listing import grade_listing_batch, read_frame
from engine.adjudicate.safety import grade_listing, read_listing
from engine.audit.store import AuditStore
from engine.errors import EvaluationError
from engine.evaluate.columnar import ENGINE, compile_decision, fact_frame
from engine.evaluate.durable_adapter import DurableEvaluator
from engine.evaluate.facts import FactSheet
from engine.evaluate.run import evaluate_pack, resolve_params

PACKS = ("ctcae-4.03", "ctcae-5.0")


@pytest.mark.parametrize("pack_id", PACKS)
def test_every_embedded_test_decides_as_durable_rules(registry, pack_id):
    pack = registry.get(pack_id)
    groups: dict[tuple, list] = {}
    for t in pack.tests:
        groups.setdefault(tuple(sorted(t.parameters.items())), []).append(t)
    compared = engine = 0
    for params, tests in groups.items():
        resolved = resolve_params(pack, dict(params))
        compiled = compile_decision(pack, "grade", resolved)
        sheets = [FactSheet.of(t.given) for t in tests]
        facts, exact = fact_frame([s.values for s in sheets], compiled.types)
        for t, sheet, j, ok in zip(tests, sheets, compiled.evaluate(facts), exact):
            if j == ENGINE or not ok:
                engine += 1
                continue
            res, _ = evaluate_pack(pack, sheet, resolved, DurableEvaluator())
            dec = res.decisions["grade"]
            assert dec.status == "decided", t.name
            assert compiled.output(j) == dec.value, f"{t.name}: columns {compiled.output(j)}, durable {dec.value}"
            compared += 1
    assert compared >= 0.95 * len(pack.tests)  # the engine keeps only what reads an uncompiled fact
    assert compared + engine == len(pack.tests)


# --- the listing: a random differential against the row path (durable-rules) -----------------------

TESTS = [("neutrophils", ["10^9/L", "cells/mm3", "GI/L", "10^3/uL"], (0, 9), (1.8, 7.5)),
         ("platelets", ["10^9/L", "cells/uL"], (2, 450), (150, 400)),
         ("wbc", ["10^9/L"], (0.1, 150), (4, 10)), ("lymphocytes", ["10^9/L"], (0.05, 5), (1, 4)),
         ("hemoglobin", ["g/dL", "g/L", "mmol/L", "mg/L", ""], (5, 21), (13, 17.5)),
         ("creatinine", ["mg/dL", "umol/L"], (0.3, 9), (0.7, 1.2)), ("bilirubin", ["mg/dL"], (0.1, 15), (0.2, 1.2)),
         ("ast", ["U/L"], (5, 1000), (5, 40)), ("alt", ["U/L"], (5, 1200), (5, 50)),
         ("potassium", ["mmol/L", "mEq/L"], (2.2, 7.5), (3.5, 5.3)), ("sodium", ["mmol/L"], (115, 165), (135, 145)),
         ("calcium_corrected", ["mg/dL", "mmol/L"], (5.5, 14), (8.5, 10.5)),
         ("uric_acid", ["mg/dL", "umol/L"], (1, 15), (3, 7)), ("phosphate", ["mmol/L"], (0.2, 2.5), (0.87, 1.45))]


def listing_rows(n: int, seed: int) -> list[list[str]]:
    """Rows of a listing: results on a grid over each test's range (so the row path's cache keeps
    the test fast), results exactly at k x ULN, missing cells, exponents, unknown tests and terms,
    negative and impossible values, ranges missing or upside down."""
    rnd = random.Random(seed)
    grids = {t: sorted({f"{lo + (hi - lo) * k / 40:.1f}" for k in range(41)}
                       | {str(Decimal(str(uln)) * Decimal(m)) for m in ("1", "1.5", "2.5", "3", "5", "6", "10", "20", "0.5")})
             for t, _, (lo, hi), (_, uln) in TESTS}
    rows = []
    for i in range(n):
        test, units, _, (lln, uln) = rnd.choice(TESTS)
        unit = rnd.choice(units)
        if rnd.random() < 0.03:
            value = rnd.choice(["", "1e-05", "2E+1", " 3.5 ", "-1", "abc", "0", "0.00001", "1.0000000000000000001"])
        else:
            value = rnd.choice(grids[test])
        base = rnd.choice(["", "", "", str(lln), str(uln)])
        l, u = str(lln), str(uln)
        if rnd.random() < 0.03:
            l, u = rnd.choice([("", u), (l, ""), ("", ""), (u, l), (l, "0")])
        term, lab_test = "", test
        if rnd.random() < 0.05:
            term, lab_test = rnd.choice(["Neutrophil count decreased", "Anemia", "hyperkalemia", "not a term"]), ""
        elif rnd.random() < 0.01:
            lab_test = rnd.choice(["unknown_test", ""])
        rows.append([f"S{i % 50:03d}", term, lab_test, value, unit, l, u, base])
    return rows


def write_listing(path, rows) -> None:
    path.write_text("subject_id,term,lab_test,value,unit,lln,uln,baseline\n"
                    + "".join(",".join(r) + "\n" for r in rows), encoding="utf-8")


def row_path(registry, path, version="4.03", params=None):
    return list(grade_listing(read_listing(path), version, registry=registry, evaluator=DurableEvaluator(),
                              params=params))


def graded(batch) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "decision_id"} for r in batch.rows()]


@pytest.mark.parametrize("version, policy", [("4.03", None), ("5.0", "worst_case")])
def test_random_listing_grades_as_the_row_path(registry, tmp_path, version, policy):
    n = 10_000 if version == "4.03" else 1_000
    listing = tmp_path / "labs.csv"
    write_listing(listing, listing_rows(n, seed=15 if version == "4.03" else 16))
    params = {"qualifier_policy": policy} if policy else None
    with AuditStore.open(tmp_path / "a.sqlite") as store:
        batch = grade_listing_batch(listing, version, registry=registry, params=params, store=store, actor="t")
    want = row_path(registry, listing, version, params)
    got = graded(batch)
    assert len(got) == len(want) == n
    diffs = [(w, g) for w, g in zip(want, got) if w != g]
    assert not diffs, diffs[:3]
    assert batch.columnar_rows > 0.8 * n   # most rows in columns; the odd ones through the row path
    assert 0 < batch.engine_rows


def test_the_printed_csv_is_the_row_paths(registry, tmp_path):
    """Text for text (quotes, commas, empty cells, a formula-looking cell), but the decision id."""
    listing = tmp_path / "labs.csv"
    listing.write_text('subject_id,lab_test,value,unit,lln,uln,note\n'
                       'S1,neutrophils,0.4,10^9/L,1.8,7.5,"a, b"\n'
                       'S2,platelets,,10^9/L,150,400,\n'
                       'S3,hemoglobin,95,g/L,130,175,=HYPERLINK("x")\n'
                       'S4,potassium,6.5,mmol/L,3.5,5.3,µ\n', encoding="utf-8")
    a, b = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    outs = []
    for db, ev in ((a, "columnar"), (b, "durable")):
        r = CliRunner().invoke(main, ["--db", str(db), "ctcae", "grade", str(listing), "--ctcae", "4.03", "--evaluator", ev])
        assert r.exit_code == 0, r.output
        outs.append([line.rsplit(",", 1)[0] for line in r.output.splitlines()])
    assert outs[0] == outs[1]
    r = CliRunner().invoke(main, ["--db", str(a), "ctcae", "grade", str(listing), "--ctcae", "4.03", "--json"])
    rows = json.loads(r.output)
    assert [x["grade"] for x in rows] == [4, "", 2, 3]


@pytest.mark.parametrize("text", [
    "lab_test,value,unit,lln,uln\nneutrophils,0.4,10^9/L,1.8,7.5\n\nneutrophils,1.4,10^9/L,1.8,7.5\n",   # blank line
    'lab_test,value,unit,lln,uln\r\n"neutrophils","0.4","10^9/L",1.8,7.5\r\n',                            # quotes, CRLF
    "\ufefflab_test,Value,unit,lln,uln\nneutrophils,0.4,10^9/L,1.8,7.5\n",                                 # BOM, case
])
def test_the_listing_is_read_as_the_row_path_reads_it(tmp_path, text):
    listing = tmp_path / "labs.csv"
    listing.write_text(text, encoding="utf-8", newline="")
    frame = read_frame(listing)
    rows = list(read_listing(listing))
    assert frame["__n"].to_list() == [n for n, _ in rows]
    assert frame.drop("__n").to_dicts() == [r for _, r in rows]


# --- the audit batch ------------------------------------------------------------------------------

@pytest.fixture
def small(tmp_path):
    listing = tmp_path / "labs.csv"
    write_listing(listing, listing_rows(300, seed=3))
    return listing


def test_one_record_cites_a_parquet_file_of_every_row(registry, tmp_path, small):
    db = tmp_path / "a.sqlite"
    r = CliRunner().invoke(main, ["--db", str(db), "ctcae", "grade", str(small), "--ctcae", "4.03"])
    assert r.exit_code == 0, r.output
    with AuditStore.open(db) as store:
        (rec,) = list(store.iter())
        batch = rec.outcome["batch"]
        assert rec.use_case == "ctcae-listing" and batch["rows"] == 300
        assert rec.outcome["durable_check"]["rows"] == rec.outcome["durable_check"]["agreed"] > 0
        from engine.audit.batches import read_batch
        df = read_batch(store, batch)
    assert df.height == 300 and df["row"].to_list() == list(range(2, 302))
    assert set(df["evaluator"].unique()) <= {"columnar", "durable", "none"}
    col = df.filter(pl.col("evaluator") == "columnar")
    assert col["rule"].str.starts_with("grade#").all() and col["lab.value"].dtype == pl.Decimal(38, 18)
    graded_rows = {line.split(",")[0] for line in r.output.splitlines()[1:]}
    assert graded_rows  # printed
    assert CliRunner().invoke(main, ["--db", str(db), "audit", "verify"]).exit_code == 0


@pytest.mark.parametrize("harm", ["edit", "delete"])
def test_verify_finds_an_altered_or_missing_batch_file(tmp_path, small, harm):
    db = tmp_path / "a.sqlite"
    assert CliRunner().invoke(main, ["--db", str(db), "ctcae", "grade", str(small), "--ctcae", "4.03"]).exit_code == 0
    (f,) = (tmp_path / "a.sqlite.batches").glob("*.parquet")
    if harm == "edit":
        data = bytearray(f.read_bytes())
        data[len(data) // 2] ^= 1
        f.write_bytes(bytes(data))
    else:
        f.unlink()
    r = CliRunner().invoke(main, ["--db", str(db), "audit", "verify"])
    assert r.exit_code == 3
    assert ("altered" if harm == "edit" else "missing") in r.output


def test_a_disagreement_with_durable_rules_fails_the_run_and_writes_nothing(registry, tmp_path, small, monkeypatch):
    real = lab_listing._graded_columns

    def wrong(*a, **k):  # one column-graded row made wrong, as a compiler bug would
        df = real(*a, **k)
        n = df.filter(~pl.col("__engine") & (pl.col("grade") == 0))["__n"][0]
        return df.with_columns(pl.when(pl.col("__n") == n).then(4).otherwise(pl.col("grade")).alias("grade"))

    monkeypatch.setattr(lab_listing, "_graded_columns", wrong)
    db = tmp_path / "a.sqlite"
    with AuditStore.open(db) as store:
        with pytest.raises(EvaluationError, match="differs from durable-rules"):
            grade_listing_batch(small, "4.03", registry=registry, params=None, store=store, actor="t",
                                sample=299)   # 300 rows: every one checked
    assert sqlite3.connect(db).execute("select count(*) from decisions").fetchone()[0] == 0
    assert not list((tmp_path / "a.sqlite.batches").glob("*.parquet")) if (tmp_path / "a.sqlite.batches").exists() else True


def test_impossible_values_are_not_graded_and_have_no_decision(registry, tmp_path):
    listing = tmp_path / "labs.csv"
    listing.write_text("subject_id,lab_test,value,unit,lln,uln,baseline\n"
                       "S1,neutrophils,-1,10^9/L,,,\nS1,alt,100,U/L,50,40,\nS1,alt,1e-300,U/L,,40,\n"
                       "S2,neutrophils,0.4,10^9/L,1.5,8,\n")
    with AuditStore.open(tmp_path / "a.sqlite") as store:
        batch = grade_listing_batch(listing, "5.0", registry=registry, params=None, store=store, actor="t", sample=2)
    rows = batch.rows()
    assert [r["grade"] for r in rows] == ["", "", "", 4]
    assert ["decision_id" in r for r in rows] == [False, False, False, True]
    assert graded(batch) == row_path(registry, listing, "5.0")
    assert batch.audit["evaluator"].to_list() == ["none", "none", "none", "columnar"]


def test_a_broken_file_exits_2_and_writes_nothing(tmp_path):
    listing = tmp_path / "labs.csv"
    listing.write_text("lab_test,value\nneutrophils,1,2,3\n")
    db = tmp_path / "a.sqlite"
    r = CliRunner().invoke(main, ["--db", str(db), "ctcae", "grade", str(listing), "--ctcae", "4.03"])
    assert r.exit_code == 2 and "more fields" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "a.sqlite.batches").exists()


def test_the_fixture_listing_grades_as_before(registry, tmp_path):
    listing = ROOT / "fixtures" / "safety" / "labs-listing.csv"
    with AuditStore.open(tmp_path / "a.sqlite") as store:
        batch = grade_listing_batch(listing, "4.03", registry=registry, params=None, store=store, actor="t", sample=5)
    assert batch.columnar_rows > 0
    assert graded(batch) == row_path(registry, listing)


def test_a_listing_no_larger_than_the_sample_is_graded_by_durable_rules(registry, tmp_path):
    listing = ROOT / "fixtures" / "safety" / "labs-listing.csv"
    with AuditStore.open(tmp_path / "a.sqlite") as store:
        batch = grade_listing_batch(listing, "4.03", registry=registry, params=None, store=store, actor="t")
    assert batch.columnar_rows == 0 and set(batch.audit["evaluator"]) <= {"durable", "none"}
    assert graded(batch) == row_path(registry, listing)
