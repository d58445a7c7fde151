"""`adjudicator audit show | verify | export | override` through click's CliRunner."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from engine.audit import AuditStore, StoredDecision
from engine.audit.record import FIELDS


@pytest.fixture()
def records(db_path: Path) -> list[StoredDecision]:
    with AuditStore.open(db_path) as store:
        return store.append([
            {"subject_id": f"S{i}", "use_case": "marrow" if i % 2 else "screen", "item": "A1",
             "input": {"blasts": i}, "outcome": {"category": "CR" if i % 2 else "eligible"}, "actor": "tester"}
            for i in range(1, 5)])


def run(db_path: Path, *args: str):
    return CliRunner().invoke(main, ["--db", str(db_path), "--actor", "chair", "audit", *args])


def test_verify_ok_then_tampered_exits_3_naming_the_record(db_path: Path, records: list[StoredDecision]) -> None:
    result = run(db_path, "verify")
    assert result.exit_code == 0 and "ok, 4 records verified" in result.output
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("DROP TRIGGER decisions_no_update")
    conn.execute("UPDATE decisions SET outcome = '{\"category\":\"PR\"}' WHERE seq = 2")
    result = run(db_path, "verify")
    assert result.exit_code == 3
    assert records[1].decision_id in result.output and "seq 2" in result.output
    result = run(db_path, "verify", "--json")
    assert result.exit_code == 3 and '"ok": false' in result.output


def test_read_commands_refuse_a_missing_store_without_creating_it(tmp_path: Path) -> None:
    missing = tmp_path / "none.sqlite"
    for args in (["verify"], ["show"], ["export", "--format", "csv"]):
        result = run(missing, *args)
        assert result.exit_code == 2 and f"no audit store at {missing}" in result.output
    assert not missing.exists()


def test_export_output_writes_the_file(db_path: Path, records: list[StoredDecision], tmp_path: Path) -> None:
    out = tmp_path / "trail.jsonl"
    result = run(db_path, "export", "--format", "jsonl", "--output", str(out))
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["decision_id"] for x in lines] == [r.decision_id for r in records]
    assert all(set(x) == set(FIELDS) for x in lines)
    assert list(tmp_path.glob("*.part")) == []
    csv_out = tmp_path / "trail.csv"
    assert run(db_path, "export", "--format", "csv", "--output", str(csv_out)).exit_code == 0
    assert csv_out.read_text().splitlines()[0] == ",".join(FIELDS) and len(csv_out.read_text().splitlines()) == 5
    result = run(db_path, "export", "--format", "jsonl")
    assert result.exit_code == 0 and len(result.output.splitlines()) == 4


def test_show_json_and_filters(db_path: Path, records: list[StoredDecision]) -> None:
    result = run(db_path, "show", "--json")
    assert result.exit_code == 0
    shown = json.loads(result.output)
    assert shown == json.loads(json.dumps([r.model_dump() for r in records]))
    assert [r["seq"] for r in json.loads(run(db_path, "show", "--use-case", "marrow", "--json").output)] == [1, 3]
    assert [r["seq"] for r in json.loads(run(db_path, "show", "--limit", "1", "--json").output)] == [4]
    one = json.loads(run(db_path, "show", "--decision", records[2].decision_id, "--json").output)
    assert [r["decision_id"] for r in one] == [records[2].decision_id]
    table = run(db_path, "show", "--subject", "S3")
    assert table.exit_code == 0 and "S3" in table.output and "S1" not in table.output
    assert run(db_path, "show", "--decision", "nope").exit_code == 2


def test_override_records_a_superseding_decision(db_path: Path, records: list[StoredDecision]) -> None:
    target = records[0]
    result = run(db_path, "override", target.decision_id, "--outcome", '{"category": "PR"}',
                 "--reviewer", "Dr Q", "--role", "chair", "--reason", "blasts recounted", "--json")
    assert result.exit_code == 0, result.output
    new = json.loads(result.output)
    assert new["supersedes"] == target.decision_id and new["outcome"] == {"category": "PR"}
    assert (new["actor"], new["reviewer"], new["reason"], new["seq"]) == ("chair", "Dr Q", "blasts recounted", 5)
    with AuditStore.open(db_path) as store:
        assert store.current("S1", "marrow", "A1").decision_id == new["decision_id"]
        assert store.get(target.decision_id).outcome == {"category": "CR"}
    assert run(db_path, "verify").exit_code == 0


@pytest.mark.parametrize("args, message", [
    (["--outcome", "{bad", "--reviewer", "Dr Q", "--role", "chair", "--reason", "r"], "--outcome"),
    (["--outcome", "[1]", "--reviewer", "Dr Q", "--role", "chair", "--reason", "r"], "JSON object"),
    (["--outcome", "{}", "--reviewer", "Dr Q", "--role", "chair", "--reason", " "], "reason"),
])
def test_override_bad_input_exits_2(db_path: Path, records: list[StoredDecision], args: list[str], message: str) -> None:
    result = run(db_path, "override", records[0].decision_id, *args)
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    result = run(db_path, "override", "unknown-id", "--outcome", "{}", "--reviewer", "a", "--role", "r", "--reason", "b")
    assert result.exit_code == 2 and "no decision unknown-id" in result.output
    with AuditStore.open(db_path) as store:
        assert store.count() == 4
