"""The committee report: one self-contained HTML file read from the trail with the decisions in
force (an override changes it and survives a re-run), the swimmer plot and Kaplan-Meier curves,
per-subject packets; rendered in headless Chromium without console errors (screenshot kept in
test-artifacts/)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from cli import main

ROOT = Path(__file__).resolve().parents[1]
VAH96 = ROOT / "fixtures" / "cohort" / "vah96"
ARTIFACTS = ROOT / "test-artifacts"
SECTIONS = ("run", "consort", "response", "committee", "swimmer", "survival", "safety", "packets")


def adj(db: Path, *args: str):
    return CliRunner().invoke(main, ["--db", str(db), "--actor", "chair", *args])


def _pick() -> list[Path]:
    """A relapse then death, an early death without CRc, a transplanted subject alive, a screen failure."""
    rel = dead = alive = None
    for p in sorted(VAH96.glob("*.yaml")):
        d = yaml.safe_load(p.read_text())
        ids = {a["id"] for a in d["on_study"]["assessments"]}
        events = {e["type"] for e in (d.get("follow_up") or {}).get("events", [])}
        if rel is None and "R1" in ids and d.get("death"):
            rel = p
        elif dead is None and d.get("death") and "R1" not in ids and "CR" not in p.read_text().splitlines()[1]:
            dead = p
        elif alive is None and not d.get("death") and "hsct" in events:
            alive = p
    return [rel, dead, alive, ROOT / "fixtures" / "cohort" / "screen-failures" / "VAH-SF-02.yaml"]


@pytest.fixture(scope="module")
def trail(tmp_path_factory) -> tuple[Path, str, list[str]]:
    d = tmp_path_factory.mktemp("subjects")
    picked = _pick()
    assert all(picked), picked
    for p in picked:
        shutil.copy(p, d / p.name)
    db = tmp_path_factory.mktemp("db") / "audit.sqlite"
    r = adj(db, "cohort", str(d), "--workers", "1", "--reason", "report test", "--json")
    assert r.exit_code == 0, r.output
    return db, json.loads(r.output)["run"]["run_id"], [p.stem for p in picked]


def _report(db: Path, run: str | None, out: Path, *extra: str) -> str:
    r = adj(db, "report", *([run] if run else []), "-o", str(out), *extra)
    assert r.exit_code == 0, r.output
    assert str(out) in r.output
    return out.read_text(encoding="utf-8")


def _crc_cell(html: str) -> str:
    sec = html[html.index('<section id="response">'):]
    row = re.search(r"<td>CRc by end of cycle 2</td><td class=\"n\">[^<]*</td>|<td>CRc by end of cycle 2</td><td>([^<]*)</td>", sec)
    assert row, "no CRc row"
    return row.group(0)


def test_report_is_one_self_contained_file_with_every_section(trail, tmp_path):
    db, run, subjects = trail
    html = _report(db, run, tmp_path / "r.html")
    for s in SECTIONS:
        assert f'<section id="{s}">' in html, s
    assert "<script" not in html and not re.search(r'(src|href)="(https?:)?//', html)   # nothing fetched
    assert re.search(r'<link|@import|url\((?!#)', html) is None
    swim = html[html.index('<section id="swimmer">'):html.index('<section id="survival">')]
    assert swim.count("<svg") == 1 and all(s in swim for s in subjects[:3])      # one bar per enrolled subject
    surv = html[html.index('<section id="survival">'):html.index('<section id="safety">')]
    assert "<svg" in surv and "Overall survival" in surv and "Event-free survival" in surv and "Disease-free" in surv
    assert "1-year (95 % CI)" in surv and "median, months (95 % CI)" in surv
    assert "verified: ok" in html and "chain head" in html
    for sid in subjects:
        assert f'<details id="s-{sid}">' in html                                  # a packet per subject
    assert "Febrile neutropenia" in html or "febrile" in html.lower()
    assert "Excluded <b>1</b>" in html                                           # the screen failure


def test_survival_numbers_come_from_the_pack_outputs(trail):
    from engine.audit import AuditStore
    from engine.report import survival
    from engine.report.trail import iter_subjects
    db, run, subjects = trail
    with AuditStore.open(db) as s:
        enrolled = [t for t in iter_subjects(s, run) if t.enrolled]
    eps = survival.collect(enrolled, "trial")
    assert len(eps["os"].rows) == 3 and sum(e for _, _, e in eps["os"].rows) == 2      # two deaths, one censored
    assert sum(e for _, _, e in eps["efs"].rows) == 2                                # relapse + failure; alive CRc censored
    est = survival.estimate(eps["os"])
    assert est["events"] == 2 and est["n"] == 3 and 0 <= est["one_year_pct"] <= 100


def test_an_override_changes_the_report_and_survives_a_rerun(trail, tmp_path):
    db0, run, subjects = trail
    db = tmp_path / "audit.sqlite"
    shutil.copy(db0, db)
    for ext in ("-wal", "-shm"):
        if Path(str(db0) + ext).exists():
            shutil.copy(str(db0) + ext, str(db) + ext)
    before = _report(db, run, tmp_path / "before.html")
    sid = subjects[2]                                       # alive, CRc
    from engine.audit import AuditStore
    with AuditStore.open(db) as s:
        a1 = next(r for r in s.iter_rows(subject_id=sid, item="A1/trial"))
        course = next(r for r in s.iter_rows(subject_id=sid, item="course/trial"))
    assert adj(db, "audit", "override", a1["decision_id"][:12], "--outcome", '{"category": "NR"}', "--reviewer",
               "Dr Hem", "--role", "hematologist", "--reason", "recount: 30 % blasts").exit_code == 0
    assert adj(db, "audit", "override", course["decision_id"][:12], "--outcome",
               '{"by_end_of_cycle_2": {"crc": false, "orr": false, "category": "NR"}, "primary_endpoint_crc": false}',
               "--reviewer", "Dr Hem", "--role", "hematologist", "--reason", "follows A1").exit_code == 0
    after = _report(db, run, tmp_path / "after.html")
    assert _crc_cell(before) != _crc_cell(after)
    cmt = after[after.index('<section id="committee">'):after.index('<section id="swimmer">')]
    assert sid in cmt and "Dr Hem (hematologist)" in cmt and "recount: 30 % blasts" in cmt
    packet = after[after.index(f'<details id="s-{sid}">'):]
    packet = packet[:packet.index("</details>")]
    assert "NR [committee]" in packet and "committee (Dr Hem, hematologist): recount: 30 % blasts" in packet
    # a re-run: the machine says CRc again; the report of the new run still counts the committee's NR
    folder = tmp_path / "again"
    folder.mkdir()
    shutil.copy(VAH96 / f"{sid}.yaml", folder)
    r = adj(db, "cohort", str(folder), "--profiles", "trial", "--workers", "1", "--json")
    assert r.exit_code == 0, r.output
    rerun = _report(db, None, tmp_path / "rerun.html")         # default: the latest run
    assert "machine" in rerun and "Dr Hem" in rerun[rerun.index('<section id="committee">'):]
    assert "0/1" in _crc_cell(rerun)


def test_report_refuses_a_tampered_trail_and_a_missing_folder(trail, tmp_path):
    import sqlite3
    db0, run, _ = trail
    db = tmp_path / "audit.sqlite"
    src = sqlite3.connect(db0)
    dst = sqlite3.connect(db)
    src.backup(dst)
    src.close()
    assert adj(db, "report", run, "-o", str(tmp_path / "no" / "r.html")).exit_code == 2
    dst.execute("DROP TRIGGER decisions_no_update")
    dst.execute("UPDATE decisions SET outcome = '{\"verdict\":\"ELIGIBLE\"}' WHERE seq = 3")
    dst.commit()
    dst.close()
    r = adj(db, "report", run, "-o", str(tmp_path / "r.html"))
    assert r.exit_code == 3 and not (tmp_path / "r.html").exists()


# --- a real browser ---------------------------------------------------------------------------------------

def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-extensions", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                "--disable-dev-shm-usage", "--enable-logging=stderr", "--v=0"]


def _console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def _run_chromium(exe: str, args: list[str], url: str, home: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HOME=str(home))
    return subprocess.run([exe, *CHROME_FLAGS, f"--user-data-dir={home / 'profile'}", *args, url],
                          capture_output=True, text=True, timeout=120, env=env)


def test_report_renders_in_headless_chromium_without_console_errors(trail, tmp_path):
    exe = _chromium()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: `make test` installs Debian's chromium (scripts/ensure-chromium.sh)")
        pytest.skip("SKIPPED LOUDLY: chromium is absent and could not be installed here (not root?); CI installs it")
    db, run, subjects = trail
    page = tmp_path / "report.html"
    _report(db, run, page)
    # the detector itself: a page with a console error is caught
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><script>console.error('boom')</script></body></html>")
    assert _console_errors(_run_chromium(exe, ["--dump-dom"], bad.as_uri(), tmp_path).stderr)
    dom = _run_chromium(exe, ["--dump-dom"], page.as_uri(), tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert _console_errors(dom.stderr) == []
    for s in SECTIONS:
        assert f'id="{s}"' in dom.stdout, s
    assert dom.stdout.count("<svg") >= 2 and "Kaplan-Meier" in dom.stdout
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report-chromium.png"
    shot.unlink(missing_ok=True)
    r = _run_chromium(exe, ["--window-size=1280,4000", f"--screenshot={shot}"], page.as_uri(), tmp_path)
    assert r.returncode == 0 and shot.exists() and shot.stat().st_size > 20_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ae_summary_reads_a_run_without_writing_and_a_folder(trail, tmp_path):
    import csv
    from engine.audit import AuditStore
    db0, run, subjects = trail
    db = tmp_path / "audit.sqlite"
    import sqlite3
    src, dst = sqlite3.connect(db0), sqlite3.connect(db)
    src.backup(dst)
    src.close()
    dst.close()
    with AuditStore.open(db) as s:
        before = s.count()
    r = adj(db, "ae-summary", "--run", run, "--json", "--csv", str(tmp_path / "ae.csv"))
    assert r.exit_code == 0, r.output
    from_run = json.loads(r.output)
    with AuditStore.open(db) as s:
        assert s.count() == before                                   # nothing re-graded, nothing written
    assert from_run["subjects"] == 3                                 # the enrolled subjects of the run
    rows = list(csv.DictReader((tmp_path / "ae.csv").open()))
    fn = next(x for x in rows if x["term"] == "febrile_neutropenia")
    assert set(fn) >= {"any_grade_n", "any_grade_pct", "grade_3_plus_n", "grade_3_plus_pct"}
    assert fn["grade_3_plus_n"].isdigit() and float(fn["grade_3_plus_pct"]) >= 0      # n and % apart
    folder = tmp_path / "subjects"
    folder.mkdir()
    for sid in subjects[:3]:
        shutil.copy(VAH96 / f"{sid}.yaml", folder)
    r = adj(tmp_path / "other.sqlite", "ae-summary", str(folder), "--json")     # a folder: graded now
    assert r.exit_code == 0, r.output
    graded = json.loads(r.output)
    row = lambda s, t: next(x for x in s["table"] if x["term"] == t)  # noqa: E731
    for term in ("febrile_neutropenia", "neutrophil_count_decreased", "sepsis"):
        assert row(graded, term)["grade_3_plus_n"] == row(from_run, term)["grade_3_plus_n"], term
    assert adj(db, "ae-summary", "--json").exit_code == 2                             # neither
    assert adj(db, "ae-summary", str(folder), "--run", run).exit_code == 2           # both
