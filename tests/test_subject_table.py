"""Subject tables (JSON Lines): parsing, streaming, the cohort run over a table, the generator."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "fixtures" / "cohort"))
import generate  # noqa: E402

from engine.adjudicate.cohort import (RUN_SUBJECT, count_items, run_cohort, run_start,  # noqa: E402
                                      subject_paths, work_items)
from engine.audit.store import AuditStore  # noqa: E402
from engine.errors import InputError  # noqa: E402
from engine.record import iter_table, load_subject, parse_subject_json  # noqa: E402

ADJ = [sys.executable, "-c", "import cli; cli.main()"]
SUBJECTS = [s for s, _ in generate.cohort(96)][:4]  # the designed VAH-001..004


def _table(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _good(i: int) -> str:
    return generate.dump_json(SUBJECTS[i])


def _outcomes(db: Path, run_id: str) -> list[tuple]:
    with AuditStore.open(db) as s:
        return sorted((r.subject_id, r.use_case, r.item, json.dumps(r.outcome, sort_keys=True))
                      for r in s.iter(run_id=run_id) if r.subject_id != RUN_SUBJECT)


# --- the loader --------------------------------------------------------------------------------

def test_table_line_parses_like_the_yaml_file(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(generate.dump(SUBJECTS[0], "# x\n"))
    assert parse_subject_json(_good(0), "t.jsonl:1", one_line=True) == load_subject(tmp_path / "s.yaml")


@pytest.mark.parametrize("line, message, field", [
    ('{"subject_id": "S1", "demographics": {"ecog": 1,}}', "malformed JSON", None),
    ('{"subject_id": "S1", "colour": "blue"}', "unknown field 'colour'", "colour"),
    ('{"subject_id": "S1", "subject_id": "S2"}', "duplicate key 'subject_id'", "subject_id"),
    ('[1, 2]', "not a mapping", None),
])
def test_bad_line_names_table_and_line(line: str, message: str, field: str | None) -> None:
    with pytest.raises(InputError) as info:
        parse_subject_json(line, "cohort.jsonl:17", one_line=True)
    assert info.value.file == "cohort.jsonl:17" and message in str(info.value)
    assert info.value.field == field
    assert str(info.value).startswith("cohort.jsonl:17")


def test_malformed_line_gives_the_column_not_a_second_line() -> None:
    with pytest.raises(InputError) as info:
        parse_subject_json('{"subject_id": }', "t.jsonl:3", one_line=True)
    assert "at column 16" in str(info.value) and info.value.file == "t.jsonl:3"


def test_json_file_keeps_its_line_in_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"subject_id": "S1",\n "demographics": {"ecog": 1,}\n}')
    with pytest.raises(InputError) as info:
        load_subject(path)
    assert info.value.file == f"{path}:2"


def test_iter_table_skips_blank_lines_and_counts_physical_lines(tmp_path: Path) -> None:
    t = tmp_path / "t.jsonl"
    t.write_bytes(b'{"a": 1}\r\n\n   \n{"b": 2}\n\xff\xfe{"c": 3}\n{"d": 4}')  # CRLF, blanks, no final newline
    rows = list(iter_table(t))
    assert [n for n, _ in rows] == [1, 4, 5, 6]
    assert rows[0][1] == '{"a": 1}' and rows[1][1] == '{"b": 2}' and rows[3][1] == '{"d": 4}'
    bad = rows[2][1]
    assert isinstance(bad, InputError) and bad.file == f"{t}:5" and "not UTF-8" in str(bad)
    assert count_items([str(t)]) == 4


def test_missing_table_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found"):
        count_items([str(tmp_path / "none.jsonl")])


def test_folder_expands_files_and_tables_lazily(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(generate.dump(SUBJECTS[0], ""))
    _table(tmp_path / "b.ndjson", [_good(1), "", _good(2)])
    (tmp_path / "notes.txt").write_text("not a subject")
    paths = subject_paths(tmp_path)
    assert [Path(p).name for p in paths] == ["a.yaml", "b.ndjson"]
    items = work_items(paths)
    assert next(items) == str(tmp_path / "a.yaml")
    assert next(items) == (f"{tmp_path / 'b.ndjson'}:1", _good(1))
    assert next(items)[0] == f"{tmp_path / 'b.ndjson'}:3"
    assert count_items(paths) == 3


# --- the cohort run ----------------------------------------------------------------------------

def test_table_adjudicates_like_yaml_files(tmp_path: Path) -> None:
    folder = tmp_path / "yaml"
    folder.mkdir()
    for s in SUBJECTS:
        (folder / f"{s['subject_id']}.yaml").write_text(generate.dump(s, ""))
    table = _table(tmp_path / "cohort.jsonl", [_good(i) for i in range(len(SUBJECTS))])
    results = {}
    for name, src in (("yaml", folder), ("table", table)):
        db = tmp_path / f"{name}.sqlite"
        with AuditStore.open(db) as store:
            res = run_cohort(str(src), store, profiles=("trial",), actor="t", workers=1, progress=False)
        assert res.exit_code == 0 and res.subjects == len(SUBJECTS)
        results[name] = (_outcomes(db, res.run_id), db, res.run_id)
    assert results["table"][0] == results["yaml"][0] and len(results["table"][0]) > 4 * len(SUBJECTS)
    with AuditStore.open(results["table"][1]) as s:  # facts cite the table line
        rec = next(s.iter(run_id=results["table"][2], subject_id="VAH-003", use_case="marrow"))
    from engine.audit.compact import sources_of
    cited = {src for src in sources_of(rec.input).values() if "#" in src}  # not "adjudicated: ..."
    assert len(cited) > 5 and all(src.startswith(f"{table.as_posix()}:3#") for src in cited), cited


def test_bad_lines_are_reported_skipped_and_the_rest_written(tmp_path: Path) -> None:
    t = _table(tmp_path / "t.jsonl", [
        _good(0),
        '{"subject_id": "X-1", ',                                  # 2: malformed JSON
        _good(1),
        '{"subject_id": "X-2", "colour": "blue"}',                 # 4: unknown field
        "",                                                        # 5: blank, ignored
        '{"subject_id": "X-3", "site": "A", "site": "B"}',         # 6: duplicate key
        _good(2),
    ])
    errors: list[tuple[str, str]] = []
    db = tmp_path / "a.sqlite"
    with AuditStore.open(db) as store:
        res = run_cohort(str(t), store, profiles=("trial",), actor="t", workers=1, progress=False,
                         on_error=lambda p, m: errors.append((p, m)))
        assert res.exit_code == 2 and res.subjects == 3
        assert [p for p, _ in res.failed] == [f"{t}:2", f"{t}:4", f"{t}:6"]
        assert errors == res.failed
        assert all(m.startswith(f"{p}") for p, m in res.failed)
        assert "malformed JSON" in errors[0][1] and "field colour" in errors[1][1]
        assert "duplicate key 'site'" in errors[2][1]
        assert store.done_subjects(res.run_id) - {RUN_SUBJECT} == {"VAH-001", "VAH-002", "VAH-003"}
        assert run_start(store, res.run_id)["subjects"] == 6  # the non-blank lines
        assert store.verify().ok
        again = run_cohort([], store, actor="t", workers=1, progress=False, resume=res.run_id)
    assert again.skipped == 3 and again.subjects == 0 and len(again.failed) == 3


def _run(args: list[str], db: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, ADJUDICATOR_DB=str(db))
    return subprocess.run(ADJ + args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_cli_cohort_on_a_table(tmp_path: Path) -> None:
    t = _table(tmp_path / "cohort.jsonl", [_good(0), '{"subject_id": "X-1", "age": }', _good(1), _good(2)])
    db = tmp_path / "a.sqlite"
    r = _run(["cohort", str(t), "--profiles", "trial", "--workers", "2", "--json"], db)
    assert r.returncode == 2, r.stderr
    assert f"{t}:2" in r.stderr and "malformed JSON" in r.stderr and "Traceback" not in r.stderr
    doc = json.loads(r.stdout)
    assert doc["run"]["subjects"] == 3 and [f["path"] for f in doc["run"]["failed"]] == [f"{t}:2"]
    assert doc["summary"]["response"]["trial"]["all"]["n"] == 3
    good = _table(tmp_path / "good.jsonl", [_good(3)])
    r = _run(["cohort", str(good), "--profiles", "trial", "--workers", "1", "--json"], db)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["run"]["subjects"] == 1


# --- the generator -----------------------------------------------------------------------------

def test_generator_writes_the_same_subjects_in_both_formats(tmp_path: Path) -> None:
    assert generate.write_cohort(tmp_path / "y", 5, seed=3) == 5
    assert generate.write_cohort(tmp_path / "j", 5, seed=3, fmt="jsonl") == 5
    table = tmp_path / "j" / generate.TABLE_NAME
    assert [p.name for p in (tmp_path / "j").iterdir()] == [generate.TABLE_NAME]
    first = json.loads(table.read_text().splitlines()[0])
    assert isinstance(first["consent_date"], str) and len(first["consent_date"]) == 10  # ISO date
    from_table = [parse_subject_json(text, f"{table}:{n}", one_line=True) for n, text in iter_table(table)]
    from_yaml = [load_subject(p) for p in sorted((tmp_path / "y").glob("*.yaml"))]
    assert len(from_table) == 5 and from_table == from_yaml
    generate.write_cohort(tmp_path / "j", 2, seed=3)  # back to YAML: the stale table is removed
    assert sorted(p.suffix for p in (tmp_path / "j").iterdir()) == [".yaml", ".yaml"]


def test_generator_cli_format_option(tmp_path: Path) -> None:
    assert generate.main(["--out", str(tmp_path / "c"), "--n", "3", "--format", "jsonl"]) == 0
    assert sum(1 for _ in iter_table(tmp_path / "c" / generate.TABLE_NAME)) == 3
