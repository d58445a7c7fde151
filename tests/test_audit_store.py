"""The audit store, over SQLite and PostgreSQL alike (`target`): round trips, chain continuity,
all-or-nothing batches, overrides, tamper detection (as an attacker with write access, triggers
off), export, and concurrent writers."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import multiprocessing
import re
import sqlite3
from pathlib import Path

import pytest

from engine.audit import AuditStore, NewDecision, StoredDecision, canonical_json, export, sha256_of
from engine.audit.record import FIELDS
from storetools import is_pg, query, tamper
from engine.errors import AuditIntegrityError, InputError


def entry(i: int, **over) -> dict:
    base = {
        "subject_id": f"S{i:03d}", "use_case": "screen", "item": "eligibility", "run_id": "run-1",
        "input": {"anc": {"value": 0.5 + i, "unit": "10^9/L", "source": "labs.csv:3"}, "name": "Zoë"},
        "packs": [{"id": "vah-eligibility", "version": "1.0.0", "sha256": "ab" * 32}],
        "parameters": {"eln": "2017"}, "engine_version": "0.1.0",
        "trace": [{"pack": "vah-eligibility", "rule": "IC01", "outcome": "met", "missing": [], "inputs": {"anc": 0.5}}],
        "outcome": {"status": "eligible", "n": i}, "actor": "tester",
    }
    base.update(over)
    return base


@pytest.fixture()
def target(store_target):
    return store_target


@pytest.fixture()
def filled(target) -> list[StoredDecision]:
    with AuditStore.open(target) as store:
        return store.append([entry(i) for i in range(1, 6)])


def test_canonical_json_and_sha256_follow_the_stated_definition() -> None:
    obj = {"b": [1.5, None, "é"], "a": {"z": 1, "y": True}}
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    assert canonical_json(obj) == text == '{"a":{"y":true,"z":1},"b":[1.5,null,"é"]}'
    assert sha256_of(obj) == hashlib.sha256(text.encode()).hexdigest()
    assert sha256_of(b"raw") == hashlib.sha256(b"raw").hexdigest()


def test_append_get_round_trip_and_hash_definition(target) -> None:
    with AuditStore.open(target) as store:
        [stored] = store.append([NewDecision(**entry(1))])
        got = store.get(stored.decision_id)
    assert got is not None and got.model_dump() == stored.model_dump()
    d = got.model_dump()
    assert set(d) == set(FIELDS)
    assert d["seq"] == 1 and d["prev_hash"] == store.genesis and re.fullmatch(r"[0-9a-f]{32}", d["decision_id"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", d["created_at"])
    for key in ("input", "packs", "parameters", "trace", "outcome", "subject_id", "item", "run_id"):
        assert d[key] == entry(1)[key]
    assert d["input_sha256"] == sha256_of(entry(1)["input"])
    # record_hash = sha256(prev_hash + canonical JSON of every other field), independently recomputed
    rest = {k: v for k, v in d.items() if k not in ("prev_hash", "record_hash")}
    assert d["record_hash"] == hashlib.sha256((d["prev_hash"] + canonical_json(rest)).encode()).hexdigest()


def test_chain_continues_across_openings(target) -> None:
    with AuditStore.open(target) as store:
        first = store.append([entry(1), entry(2)])
    with AuditStore.open(target) as store:
        [third] = store.append([entry(3)])
        assert third.seq == 3 and third.prev_hash == first[-1].record_hash
        assert store.count() == 3 and store.verify().ok


def test_open_defaults_to_env_then_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ADJUDICATOR_DB", raising=False)
    AuditStore.open(None).close()
    assert (tmp_path / "adjudicator-audit.sqlite").exists()
    monkeypatch.setenv("ADJUDICATOR_DB", str(tmp_path / "env.sqlite"))
    AuditStore.open(None).close()
    assert (tmp_path / "env.sqlite").exists()


def test_refuses_a_file_that_is_not_an_audit_store(tmp_path: Path) -> None:
    text = tmp_path / "notes.sqlite"
    text.write_text("hello, not a database " * 100)
    with pytest.raises(InputError, match="notes.sqlite.*not an audit store"):
        AuditStore.open(text)
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(InputError, match="other.sqlite.*not an audit store"):
        AuditStore.open(other)
    with pytest.raises(InputError, match="no audit store at"):
        AuditStore.open(tmp_path / "missing.sqlite", create=False)
    assert not (tmp_path / "missing.sqlite").exists()


def test_batch_rolls_back_on_exception(target, filled: list[StoredDecision]) -> None:
    with AuditStore.open(target) as store:
        with pytest.raises(RuntimeError):
            with store.batch() as w:
                for i in range(2500):  # more than one flushed chunk
                    w.add(entry(100 + i))
                raise RuntimeError("killed midway")
        assert store.count() == 5 and store.verify().ok
        with store.batch() as w:
            ids = [w.add(entry(200 + i)) for i in range(3)]
        assert store.count() == 8 and [store.get(i).seq for i in ids] == [6, 7, 8]


def test_bad_entry_aborts_the_whole_append(target, filled: list[StoredDecision]) -> None:
    with AuditStore.open(target) as store:
        with pytest.raises(InputError, match="subject S101.*outcome"):
            store.append([entry(100), entry(101, outcome=None)])
        with pytest.raises(InputError, match="decision_id"):
            store.append([entry(102, decision_id=filled[0].decision_id)])
        with pytest.raises(InputError, match="input_sha256"):
            store.append([entry(103, input_sha256="0" * 64)])
        assert store.count() == 5


def test_queries_latest_current_done_subjects(target) -> None:
    with AuditStore.open(target) as store:
        store.append([entry(1), entry(2)])
        store.append([entry(1, run_id="run-2", outcome={"status": "ineligible"})])
        assert [r.seq for r in store.iter(subject_id="S001")] == [1, 3]
        assert [r.seq for r in store.iter(run_id="run-1")] == [1, 2]
        assert [r.seq for r in store.iter(last=2)] == [2, 3]
        assert store.latest("S001", "screen", "eligibility").seq == 3
        assert store.latest("S001", "screen", "eligibility", before_run="run-2").seq == 1
        assert store.latest("S001", "ae", "eligibility") is None
        assert store.done_subjects("run-1") == {"S001", "S002"}
        assert store.done_subjects("run-2") == {"S001"}


def test_override_keeps_original_and_becomes_current(target, filled: list[StoredDecision]) -> None:
    orig = filled[1]
    with AuditStore.open(target) as store:
        new = store.override(orig.decision_id, {"status": "ineligible"}, reviewer="Dr Q",
                             reason="ANC re-read", actor="chair")
        assert new.supersedes == orig.decision_id and new.seq == 6
        assert (new.subject_id, new.use_case, new.item) == (orig.subject_id, orig.use_case, orig.item)
        assert (new.input, new.packs, new.parameters) == (orig.input, orig.packs, orig.parameters)
        assert (new.reviewer, new.reason, new.actor, new.outcome) == ("Dr Q", "ANC re-read", "chair", {"status": "ineligible"})
        assert store.get(orig.decision_id).model_dump() == orig.model_dump()  # untouched, visible
        assert store.current(orig.subject_id, "screen", "eligibility").decision_id == new.decision_id
        assert store.current(filled[0].subject_id, "screen", "eligibility").decision_id == filled[0].decision_id
        assert store.verify().ok


@pytest.mark.parametrize("field, value", [("reason", ""), ("reason", "  "), ("reviewer", "")])
def test_override_requires_reviewer_and_reason(target, filled: list[StoredDecision], field: str, value: str) -> None:
    args = {"reviewer": "Dr Q", "reason": "why", field: value}
    with AuditStore.open(target) as store:
        with pytest.raises(InputError, match=field):
            store.override(filled[0].decision_id, {"status": "x"}, actor="chair", **args)
        with pytest.raises(InputError, match="no decision nope"):
            store.override("nope", {"status": "x"}, reviewer="a", reason="b", actor="chair")
        assert store.count() == 5


def test_triggers_refuse_update_delete_and_truncate(target, filled: list[StoredDecision]) -> None:
    if is_pg(target):
        import psycopg
        for sql in ("UPDATE decisions SET outcome = '{}' WHERE seq = 1", "DELETE FROM decisions WHERE seq = 1",
                    "TRUNCATE decisions"):
            with psycopg.connect(str(target), autocommit=True) as conn, \
                    pytest.raises(psycopg.Error, match="append-only"):
                conn.execute(sql)
    else:
        conn = sqlite3.connect(target)
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE decisions SET outcome = '{}' WHERE seq = 1")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM decisions WHERE seq = 1")
    assert query(target, "SELECT count(*) FROM decisions") == [(5,)]


def verify(target):
    with AuditStore.open(target) as store:
        return store.verify()


def test_verify_ok(target, filled: list[StoredDecision]) -> None:
    report = verify(target)
    assert report.ok and report.checked == 5 and report.first_bad is None


def test_tamper_changed_outcome_is_named(target, filled: list[StoredDecision]) -> None:
    tamper(target, "UPDATE decisions SET outcome = ? WHERE seq = 3", (canonical_json({"status": "ineligible", "n": 3}),))
    report = verify(target)
    assert not report.ok and report.first_bad.seq == 3
    assert report.first_bad.decision_id == filled[2].decision_id and "edited" in report.first_bad.problem
    with AuditStore.open(target) as store, pytest.raises(AuditIntegrityError, match=filled[2].decision_id):
        store.verify_or_raise()


def test_tamper_deleted_middle_record_is_named(target, filled: list[StoredDecision]) -> None:
    tamper(target, "DELETE FROM decisions WHERE seq = 3")
    bad = verify(target).first_bad
    assert bad.seq == 4 and bad.decision_id == filled[3].decision_id and "expected seq 3" in bad.problem


def test_tamper_deleted_last_record_is_detected(target, filled: list[StoredDecision]) -> None:
    tamper(target, "DELETE FROM decisions WHERE seq = 5")
    report = verify(target)
    assert not report.ok and report.first_bad.seq == 5 and "head is seq 5" in report.first_bad.problem


def test_tamper_swapped_seq_is_named(target, filled: list[StoredDecision]) -> None:
    tamper(target, "UPDATE decisions SET seq = -1 WHERE seq = 2")
    tamper(target, "UPDATE decisions SET seq = 2 WHERE seq = 4")
    tamper(target, "UPDATE decisions SET seq = 4 WHERE seq = -1")
    bad = verify(target).first_bad
    assert bad.seq == 2 and bad.decision_id == filled[3].decision_id and "prev_hash" in bad.problem


def test_tamper_changed_created_at_is_named(target, filled: list[StoredDecision]) -> None:
    tamper(target, "UPDATE decisions SET created_at = '2020-01-01T00:00:00.000000Z' WHERE seq = 5")
    bad = verify(target).first_bad
    assert bad.seq == 5 and bad.decision_id == filled[4].decision_id


def test_tamper_rehashed_record_breaks_the_next_link(target, filled: list[StoredDecision]) -> None:
    """Recomputing the edited record's own hash is not enough: the next record's prev_hash breaks."""
    with AuditStore.open(target) as store:
        row = next(store.iter_rows(subject_id="S002"))
    row["outcome"] = canonical_json({"status": "ineligible"})
    from engine.audit.record import record_hash
    tamper(target, "UPDATE decisions SET outcome = ?, record_hash = ? WHERE seq = 2", (row["outcome"], record_hash(row)))
    bad = verify(target).first_bad
    assert bad.seq == 3 and "prev_hash" in bad.problem


def test_export_jsonl_and_csv_hold_every_field_of_every_record(target, filled: list[StoredDecision]) -> None:
    with AuditStore.open(target) as store:
        store.override(filled[0].decision_id, {"status": "x"}, reviewer="Dr Q", reason="why", actor="chair")
        expected = [r.model_dump() for r in store.iter()]
        out = io.StringIO()
        assert export(store, out, "jsonl") == 6
        assert [json.loads(line) for line in out.getvalue().splitlines()] == expected
        out = io.StringIO()
        export(store, out, "csv")
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert list(rows[0]) == list(FIELDS) and len(rows) == 6
    for row, exp in zip(rows, expected):
        for key in FIELDS:
            if key in ("input", "packs", "parameters", "trace", "outcome", "signature") and row[key]:
                assert json.loads(row[key]) == exp[key]
            else:
                assert row[key] == ("" if exp[key] is None else str(exp[key]))


def _append_worker(path: str, tag: str) -> None:
    with AuditStore.open(path) as store:
        for chunk in range(20):
            store.append([entry(i, subject_id=f"{tag}-{chunk}-{i}") for i in range(10)])


def test_two_processes_appending_keep_a_valid_chain(target) -> None:
    AuditStore.open(target).close()
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_worker, args=(str(target), tag)) for tag in ("A", "B")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    with AuditStore.open(target) as store:
        report = store.verify()
        assert report.ok and report.checked == 400 and store.count() == 400
        assert [r.seq for r in store.iter()] == list(range(1, 401))
