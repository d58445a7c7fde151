"""Issue 16 items 2, 3 and 5 for cohort runs: a subject given twice is refused before anything is
written; an empty input makes no "completed" run; a run is written by one process at a time;
a run ends with a signed checkpoint."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from engine.adjudicate.cohort import latest_run, run_cohort, scan_items, subject_paths
from engine.audit import AuditStore
from engine.errors import InputError
from engine.record.load import quick_subject_id

ROOT = Path(__file__).resolve().parents[1]
VAH96 = ROOT / "fixtures" / "cohort" / "vah96"


def cli(db: Path, *args: str):
    return CliRunner().invoke(main, ["--db", str(db), "--actor", "t", *args])


def two_subjects(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("VAH-001.yaml", "VAH-002.yaml"):
        shutil.copy(VAH96 / name, folder / name)
    return folder


def test_the_same_subject_in_two_files_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    """Was: screened 3, response n = 4, CRc 4/4 for three subjects."""
    folder = two_subjects(tmp_path / "in")
    shutil.copy(VAH96 / "VAH-001.yaml", folder / "VAH-001-copy.yaml")
    db = tmp_path / "a.sqlite"
    result = cli(db, "cohort", str(folder), "--workers", "1")
    assert result.exit_code == 2 and "subject VAH-001 appears twice" in result.output
    assert "VAH-001.yaml" in result.output and "VAH-001-copy.yaml" in result.output
    with AuditStore.open(db) as store:
        assert store.count() == 0


def test_a_repeated_table_line_is_refused(tmp_path: Path) -> None:
    line = json.dumps(__import__("yaml").safe_load((VAH96 / "VAH-003.yaml").read_text()), default=str)
    table = tmp_path / "t.jsonl"
    table.write_text(line + "\n\n" + line + "\n")
    with AuditStore.open(tmp_path / "a.sqlite") as store:
        with pytest.raises(InputError, match=r"appears twice.*t.jsonl:1 and .*t.jsonl:3"):
            run_cohort(str(table), store, actor="t", workers=1, progress=False)
        assert store.count() == 0


def test_a_file_and_a_table_line_with_one_subject_are_duplicates(tmp_path: Path) -> None:
    folder = two_subjects(tmp_path / "in")
    line = json.dumps(__import__("yaml").safe_load((VAH96 / "VAH-002.yaml").read_text()), default=str)
    (folder / "more.jsonl").write_text(line + "\n")
    total, dupes = scan_items(subject_paths(folder))
    assert total == 3 and [d[0] for d in dupes] == ["VAH-002"]


@pytest.mark.parametrize("text, json_text, expected", [
    ("subject_id: VAH-001\nsite: A\n", False, "VAH-001"),
    ("subject_id: 'VAH-001'  # a comment\n", False, "VAH-001"),
    ('subject_id: "VAH-001"\n', False, "VAH-001"),
    ("{subject_id: VAH-7, site: A}\n", False, "VAH-7"),                 # flow style: parsed
    ("subject_id: &a VAH-8\nsite: *a\n", False, "VAH-8"),                # anchor: parsed
    ("site: A\n", False, None),
    ('{"subject_id": "S1", "x": {"subject_id": "S2"}}', True, "S1"),    # two: parsed
    ('{"subject_\\u0069d": "S3"}', True, "S3"),                          # escaped key: parsed
    ('{"subject_id": "S\\u0034"}', True, "S4"),                          # escaped value: parsed
    ('{"subject_id": 5}', True, None),
    ("{not json", True, None),
])
def test_quick_subject_id_is_exact_or_falls_back_to_a_parse(text: str, json_text: bool, expected: str | None) -> None:
    assert quick_subject_id(text, json_text) == expected


def test_an_empty_folder_or_table_makes_no_run(tmp_path: Path) -> None:
    """Was: an empty 'completed' run that became `latest`."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty.jsonl").write_text("\n\n")
    db = tmp_path / "a.sqlite"
    for target in (tmp_path / "empty", tmp_path / "empty.jsonl"):
        result = cli(db, "cohort", str(target))
        assert result.exit_code == 2 and "no subject files or table lines" in result.output
    with AuditStore.open(db) as store:
        assert store.count() == 0 and latest_run(store) is None


def test_a_run_being_written_cannot_be_resumed_by_another_process(tmp_path: Path) -> None:
    """Was: two `--resume latest` at once duplicated 13,260 decisions and two completion records."""
    folder = two_subjects(tmp_path / "in")
    db = tmp_path / "a.sqlite"
    with AuditStore.open(db) as store:
        first = run_cohort(str(folder), store, profiles=("trial",), actor="t", workers=1, progress=False)
    holder = subprocess.Popen(
        [sys.executable, "-c", (
            "import sys, time; from engine.audit import AuditStore\n"
            f"s = AuditStore.open({str(db)!r})\n"
            f"with s.run_lock({first.run_id!r}):\n"
            "    print('held', flush=True); time.sleep(120)\n")],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = cli(db, "cohort", "--resume", first.run_id, "--workers", "1")
        assert result.exit_code == 2 and "being written by another process" in result.output
        with AuditStore.open(db) as store:
            before = store.count()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
    # the lock died with its process: the run resumes (nothing left to do), and nothing doubled
    result = cli(db, "cohort", "--resume", first.run_id, "--workers", "1", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output[result.output.index("{"):])
    assert doc["run"]["skipped"] == 2 and doc["run"]["subjects"] == 0
    with AuditStore.open(db) as store:
        assert store.count() == before + 1  # one more completion record, no decision twice
        assert store.verify().ok


def test_two_concurrent_cohort_commands_resuming_one_run_write_it_once(tmp_path: Path) -> None:
    """Both processes race for the same interrupted run: exactly one writes it."""
    folder = two_subjects(tmp_path / "in")
    for n in range(3, 9):
        shutil.copy(VAH96 / f"VAH-{n:03d}.yaml", folder)
    db = tmp_path / "a.sqlite"
    with AuditStore.open(db) as store:  # an interrupted run: its start record only
        store.append([{"subject_id": "__run__", "use_case": "cohort_run", "item": "start", "run_id": "run-x",
                       "outcome": {"path": [str(folder)], "profiles": ["trial"], "params": {}, "ctcae": "4.03",
                                   "reason": None, "subjects": 8}, "actor": "t"}])
    env = dict(os.environ, ADJUDICATOR_DB=str(db))
    cmd = [sys.executable, "-c", "import cli; cli.main()", "cohort", "--resume", "latest", "--workers", "1"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes in ([0, 0], [0, 2]), outs
    if codes == [0, 2]:
        assert any("being written by another process" in err for _, err in outs)
    with AuditStore.open(db) as store:
        screened = [r.subject_id for r in store.iter(use_case="screen", run_id="run-x")]
        assert sorted(screened) == sorted(set(screened)) and len(screened) == 8
        assert store.verify().ok


def test_a_cohort_run_ends_with_a_signed_checkpoint(tmp_path: Path, adjudicator_home: Path) -> None:
    folder = two_subjects(tmp_path / "in")
    db = tmp_path / "a.sqlite"
    with AuditStore.open(db) as store:
        res = run_cohort(str(folder), store, profiles=("trial",), actor="t", workers=1, progress=False)
        head = store.head()
    assert res.checkpoint and Path(res.checkpoint).is_file()
    assert Path(res.checkpoint).is_relative_to(adjudicator_home)            # kept away from the store
    doc = json.loads(Path(res.checkpoint).read_text())
    assert doc["seq"] == head[0] and doc["record_hash"] == head[1]
    key = adjudicator_home / "keys" / "checkpoint.key"
    assert key.stat().st_mode & 0o777 == 0o600
    result = cli(db, "audit", "verify", "--checkpoint", res.checkpoint)
    assert result.exit_code == 0 and "extends 1 checkpoint" in result.output
    time.sleep(0)
