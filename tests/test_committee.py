"""The committee's workspace: overrides checked against the packs, the decision in force in
summaries and diffs (surviving re-runs), runs and baselines, CONSORT attrition, denominators."""
from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from cli import main
from engine.adjudicate.committee import Overrides, resolve_id
from engine.audit import AuditStore
from engine.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
VAH96 = ROOT / "fixtures" / "cohort" / "vah96"
FAILURES = ROOT / "fixtures" / "cohort" / "screen-failures"


def adj(db: Path, *args: str, actor: str = "chair"):
    r = CliRunner().invoke(main, ["--db", str(db), "--actor", actor, *args])
    return r


def _edit(src: Path, dst: Path, change) -> None:
    data = yaml.safe_load(src.read_text())
    change(data)
    dst.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory) -> Path:
    """Two enrolled subjects (VAH-001, VAH-002), one failing two criteria (INC-01 then INC-02), one
    eligible without on-study data, one whose eligibility is indeterminate."""
    d = tmp_path_factory.mktemp("cohort")
    for p in sorted(VAH96.glob("*.yaml"))[:2]:
        shutil.copy(p, d / p.name)

    def two_failures(s):   # age 67 (INC-01) and ECOG 3 (INC-02): counted once, at INC-01
        s["demographics"]["age_years"] = 67
        s["demographics"]["ecog"] = 3
    _edit(FAILURES / "VAH-SF-01.yaml", d / "VAH-SF-01.yaml", two_failures)

    def no_on_study(s):
        s["subject_id"] = "VAH-NOSTUDY"
        for k in ("on_study", "labs", "adverse_events"):
            s.pop(k, None)
    _edit(VAH96 / "VAH-005.yaml", d / "VAH-NOSTUDY.yaml", no_on_study)

    def indeterminate(s):
        s["subject_id"] = "VAH-UNKNOWN"
        s["screening"].pop("cardiac")
    _edit(VAH96 / "VAH-006.yaml", d / "VAH-UNKNOWN.yaml", indeterminate)
    return d


@pytest.fixture(scope="module")
def first_run(cohort_dir, tmp_path_factory):
    db = tmp_path_factory.mktemp("db") / "audit.sqlite"
    r = adj(db, "cohort", str(cohort_dir), "--profiles", "trial", "--workers", "1", "--reason", "first", "--json")
    assert r.exit_code == 0, r.output
    return db, json.loads(r.output)


def _copy_db(first_run, tmp_path: Path) -> tuple[Path, dict]:
    db, doc = first_run
    out = tmp_path / "audit.sqlite"
    with AuditStore.open(db) as s:   # a consistent copy (WAL included): the store's backup
        s.backup(out)
    return out, doc


def _decision(db: Path, subject: str, item: str, run_id: str | None = None) -> str:
    with AuditStore.open(db) as s:
        rows = [r for r in s.iter_rows(subject_id=subject, item=item) if r["supersedes"] is None
                and (run_id is None or r["run_id"] == run_id)]
    return rows[-1]["decision_id"]


def _crc(doc: dict) -> tuple[int, int]:
    p = doc["response"]["trial"]["all"]["by_end_of_cycle_2"]["crc"]
    return p["k"], p["n"]


# --- CONSORT attrition and denominators -----------------------------------------------------------

def test_attrition_counts_each_subject_once_at_the_first_failing_criterion(first_run):
    _, doc = first_run
    el = doc["summary"]["eligibility"]
    assert el["screened"] == 5 and el["enrolled"] == 3
    assert el["attrition"] == [{"criterion": "INC-01", "n": 1, "subjects": ["VAH-SF-01"]}]
    assert sum(a["n"] for a in el["attrition"]) + len(el["indeterminate"]) + el["enrolled"] == el["screened"]
    assert el["failing_criteria"] == {"INC-01": 1, "INC-02": 1}        # the second table: every failure
    assert [d["subject_id"] for d in el["indeterminate"]] == ["VAH-UNKNOWN"]
    assert "EXC-06" in el["indeterminate"][0]["criteria"]
    assert any("screening.cardiac" in m for m in el["indeterminate"][0]["missing"])


def test_an_enrolled_subject_without_on_study_data_is_in_n_and_listed(first_run):
    _, doc = first_run
    s = doc["summary"]
    assert s["response"]["trial"]["all"]["n"] == 3                     # intention to treat: all enrolled
    left = [d for d in s["denominators"] if d["subject_id"] == "VAH-NOSTUDY"]
    assert len(left) == 1 and "no on-study response assessment" in left[0]["reason"]
    # the indeterminate subject has on-study data: listed as leaving the response denominator
    assert any(d["subject_id"] == "VAH-UNKNOWN" and "INDETERMINATE" in d["reason"] for d in s["denominators"])


def test_summary_csv_has_attrition_denominators_and_committee_files(first_run, tmp_path):
    db, doc = first_run
    r = adj(db, "cohort", "summary", doc["run"]["run_id"], "--csv-dir", str(tmp_path / "csv"))
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader((tmp_path / "csv" / "eligibility.csv").open()))
    assert rows[1] == {"step": "excluded at first failing criterion", "criterion": "INC-01", "n": "1",
                       "subjects": "VAH-SF-01"}
    den = list(csv.DictReader((tmp_path / "csv" / "denominators.csv").open()))
    assert {d["subject_id"] for d in den} >= {"VAH-NOSTUDY", "VAH-UNKNOWN"}
    assert (tmp_path / "csv" / "committee.csv").read_text().startswith("subject_id,use_case,item,machine,committee")


# --- overrides: checked against the pack's outputs --------------------------------------------------

def test_override_refuses_unknown_fields_impossible_values_and_inconsistent_outputs(first_run, tmp_path, registry):
    from engine.adjudicate.committee import record_override
    db, _ = _copy_db(first_run, tmp_path)
    did = _decision(db, "VAH-001", "A1/trial")
    base = ["audit", "override", did, "--reviewer", "Dr A", "--role", "chair", "--reason", "recount"]
    r = adj(db, *base, "--outcome", '{"categry": "BANANA"}')
    assert r.exit_code == 2 and "'categry' is not an output of vah-trial-response" in r.output and "category" in r.output
    who = dict(reviewer="Dr A", role="chair", reason="recount", actor="chair", registry=registry)
    with AuditStore.open(db) as s:
        for given, message in (({"category": "BANANA"}, "'BANANA' is not an output"),
                               ({"category": "NR", "flags": {"crc": True}},
                                "no output of vah-trial-response response has category='NR', flags.crc=True"),
                               ({"flags": {"crc": "yes"}}, "flags.crc = 'yes'"),
                               ({"category": float("nan")}, "not a finite number"),
                               ({}, "empty")):
            with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
                record_override(s, did, given, **who)
        with pytest.raises(InputError, match="role"):
            record_override(s, did, {"category": "NR"}, **dict(who, role=" "))
        assert len(Overrides(s)) == 0                       # nothing written
    r = adj(db, *base, "--outcome", '{"category": "NR"}', "--json")
    assert r.exit_code == 0, r.output
    o = json.loads(r.output)["outcome"]
    assert (o["category"], o["flags"]["crc"], o["flags"]["orr"]) == ("NR", False, False)   # filled from the NR rows


def test_id_prefix_and_refusal_of_a_second_override_unless_supersede(first_run, tmp_path):
    db, _ = _copy_db(first_run, tmp_path)
    did = _decision(db, "VAH-002", "A1/trial")
    with AuditStore.open(db) as s:
        assert resolve_id(s, did[:8]) == did
        with pytest.raises(InputError, match="at least 6"):
            resolve_id(s, did[:4])
    first = adj(db, "audit", "override", did[:10], "--outcome", '{"category": "PR"}', "--reviewer", "Dr A",
                "--role", "hematologist", "--reason", "blasts 7 % on recount", "--json")
    assert first.exit_code == 0, first.output
    o1 = json.loads(first.output)
    again = adj(db, "audit", "override", did[:10], "--outcome", '{"category": "NR"}', "--reviewer", "Dr B",
                "--role", "chair", "--reason", "second look")
    assert again.exit_code == 2 and "already has a committee decision in force" in again.output and "--supersede" in again.output
    sup = adj(db, "audit", "override", did[:10], "--outcome", '{"category": "NR"}', "--reviewer", "Dr B",
              "--role", "chair", "--reason", "second look", "--supersede", "--json")
    assert sup.exit_code == 0, sup.output
    o2 = json.loads(sup.output)
    assert o2["supersedes"] == o1["decision_id"] and o1["supersedes"] == did     # a chain, both kept
    assert o2["input"]["committee"]["role"] == "chair" and o2["input"]["committee"]["given"] == {"category": "NR"}
    show = adj(db, "audit", "show", "--decision", o2["decision_id"][:12])
    assert show.exit_code == 0
    for part in ("decided by Dr B (chair)", "reason     second look", f"supersedes {o1['decision_id']}",
                 "status     committee, in force", 'given      {"category":"NR"}'):
        assert part in show.output, part
    from engine.report.audit import status_of
    with AuditStore.open(db) as s:
        ov = Overrides(s)
        assert status_of(s.get(o1["decision_id"]), ov) == f"committee, replaced by {o2['decision_id'][:12]}"
        assert status_of(s.get(did), ov) == f"machine; committee decision {o2['decision_id'][:12]} in force"
    assert adj(db, "audit", "show", "--subject", "VAH-002", "--use-case", "marrow").exit_code == 0


def test_override_of_a_stale_machine_decision_is_refused(first_run, tmp_path, cohort_dir):
    db, doc = _copy_db(first_run, tmp_path)
    old = _decision(db, "VAH-001", "A1/trial", doc["run"]["run_id"])
    assert adj(db, "cohort", str(cohort_dir / "VAH-001.yaml"), "--profiles", "trial", "--workers", "1").exit_code == 0
    r = adj(db, "audit", "override", old, "--outcome", '{"category": "NR"}', "--reviewer", "Dr A", "--role", "chair",
            "--reason", "late")
    assert r.exit_code == 2 and "is not the latest machine decision" in r.output


# --- the decision in force: summary, re-run, diff ------------------------------------------------------

def test_override_changes_the_summary_and_survives_a_rerun(first_run, tmp_path, cohort_dir):
    db, doc = _copy_db(first_run, tmp_path)
    run1 = doc["run"]["run_id"]
    k0, n0 = _crc(doc["summary"])
    subject = next(sid for sid in ("VAH-001", "VAH-002")
                   if json.loads(_outcome(db, sid, "course/trial"))["by_end_of_cycle_2"]["crc"] is True)
    marrow = adj(db, "audit", "override", _decision(db, subject, "A1/trial"), "--outcome", '{"category": "NR"}',
                 "--reviewer", "Dr A", "--role", "chair", "--reason", "marrow recounted: 30 % blasts")
    course = adj(db, "audit", "override", _decision(db, subject, "course/trial"), "--outcome",
                 '{"by_end_of_cycle_2": {"crc": false, "orr": false, "category": "NR"}, "primary_endpoint_crc": false}',
                 "--reviewer", "Dr A", "--role", "chair", "--reason", "follows the marrow")
    assert marrow.exit_code == 0 and course.exit_code == 0, marrow.output + course.output
    s = json.loads(adj(db, "cohort", "summary", run1, "--json").output)
    assert _crc(s) == (k0 - 1, n0)
    assert {(c["subject_id"], c["item"]) for c in s["committee"]} == {(subject, "A1/trial"), (subject, "course/trial")}
    # a re-run: the machine says CR again; the committee's decision stays in force
    r = adj(db, "cohort", str(cohort_dir), "--profiles", "trial", "--workers", "1", "--baseline", run1, "--json")
    assert r.exit_code == 0, r.output
    rerun = json.loads(r.output)
    assert _crc(rerun["summary"]) == (k0 - 1, n0)
    rows = {c["item"]: c for c in rerun["diff"] if c["subject_id"] == subject}
    assert rows["A1/trial"]["status"].startswith("machine") and "disagrees with the committee" in rows["A1/trial"]["status"]
    assert rows["A1/trial"]["committee"]["outcome"] == "NR" and "category" in rows["A1/trial"]["committee"]["disagrees_on"]
    # the re-run's course folded over the committee's A1 (NR): on the landmark it now agrees
    assert "by_end_of_cycle_2.crc" not in rows["course/trial"]["committee"]["disagrees_on"]


def _outcome(db: Path, subject: str, item: str) -> str:
    with AuditStore.open(db) as s:
        return next(r["outcome"] for r in s.iter_rows(subject_id=subject, item=item) if r["supersedes"] is None)


# --- runs and diffs ------------------------------------------------------------------------------------

def test_runs_list_and_a_diff_against_a_chosen_baseline_with_csv(first_run, tmp_path, cohort_dir):
    db, doc = _copy_db(first_run, tmp_path)
    run1 = doc["run"]["run_id"]
    r2 = adj(db, "cohort", str(cohort_dir), "--profiles", "trial", "--workers", "1", "--reason", "MRD 0.1",
             "--param", "vah-trial-response.mrd_threshold_pct=0.1", "--json")
    r3 = adj(db, "cohort", str(cohort_dir), "--profiles", "trial", "--workers", "1", "--reason", "back to 0.01", "--json")
    assert r2.exit_code == 0 and r3.exit_code == 0
    run2, run3 = json.loads(r2.output)["run"]["run_id"], json.loads(r3.output)["run"]["run_id"]
    runs = json.loads(adj(db, "cohort", "runs", "--json").output)
    assert [x["run_id"] for x in runs] == [run1, run2, run3]
    assert runs[1]["params"] == {"vah-trial-response": {"mrd_threshold_pct": "0.1"}} and runs[1]["reason"] == "MRD 0.1"
    assert runs[1]["subjects"] == 5 and runs[1]["status"] == "complete" and runs[1]["actor"] == "chair"
    assert {p["id"] for p in runs[1]["packs"]} >= {"vah-trial-response", "vah-eligibility"}
    table = adj(db, "cohort", "runs")
    assert table.exit_code == 0 and run2[-8:] in table.output
    # run 3 vs the automatic previous run (run 2) changes MRD; vs baseline run 1 nothing changed
    d_prev = json.loads(adj(db, "cohort", "diff", run2, run3, "--json").output)
    d_base = json.loads(adj(db, "cohort", "diff", "--baseline", run1, run3, "--json").output)
    assert d_prev["changes"] and not [c for c in d_base["changes"] if c["changed_fields"]]
    assert any("parameters changed" in h and "mrd_threshold_pct=0.1" in h for h in d_prev["header"])
    assert any(h.startswith(f"baseline {run2}") for h in d_prev["header"])
    rule_rows = [r for c in d_prev["changes"] for r in c["rules"]]
    assert any(r["rule"].endswith("MRD-NEGATIVE") and r["title"] for r in rule_rows)   # id and title
    out = tmp_path / "diff.csv"
    r = adj(db, "cohort", "diff", "--baseline", run2[-8:], "--csv", str(out))
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == len(d_prev["changes"]) and rows[0]["old_run"] == run2 and rows[0]["new_run"] == run3
    assert {"status", "rules", "committee", "old_decision_id", "new_decision_id"} <= set(rows[0])
    text = adj(db, "cohort", "diff", "--baseline", run2, run3)
    assert "parameters changed" in text.output and "MRD-NEGATIVE (" in text.output
    assert adj(db, "cohort", "diff", "--baseline", "no-such-run").exit_code == 2
    assert adj(db, "cohort", "diff", "--baseline", run3, run3).exit_code == 2
    assert adj(db, "cohort", "diff", run3, "--csv", str(tmp_path / "nope" / "x.csv")).exit_code == 2


def test_csv_cells_that_would_run_as_formulas_are_neutralised():
    from engine.report.diff import write_csv
    buf = io.StringIO()
    write_csv([{"subject_id": "=HYPERLINK(1)", "use_case": "marrow", "item": "A1/trial", "status": "changed",
                "old": "CR", "new": "NR", "old_outcome": {}, "new_outcome": {}, "changed_fields": ["category"],
                "rules": [], "committee": None, "old_run": "a", "new_run": "b", "old_decision_id": "x",
                "new_decision_id": "y"}], buf)
    assert "'=HYPERLINK(1)" in buf.getvalue()


def test_a_rerun_folds_the_course_over_the_committees_marrow_decision(first_run, tmp_path, cohort_dir):
    """The decision in force is what the course uses: after the committee decides a CRc subject's
    only CRc marrow was NR (and nothing about the course), a re-run's course is not CRc, and says
    which committee decision it folded over; the machine's own A1 decision stays CR."""
    db, doc = _copy_db(first_run, tmp_path)
    subject = next(sid for sid in ("VAH-001", "VAH-002")
                   if json.loads(_outcome(db, sid, "course/trial"))["by_end_of_cycle_2"]["crc"] is True
                   and _items(db, sid) == ["A1"])
    k0, n0 = _crc(doc["summary"])
    r = adj(db, "audit", "override", _decision(db, subject, "A1/trial"), "--outcome", '{"category": "NR"}',
            "--reviewer", "Dr A", "--role", "chair", "--reason", "30 % blasts on recount", "--json")
    assert r.exit_code == 0, r.output
    override = json.loads(r.output)["decision_id"]
    s = json.loads(adj(db, "cohort", "summary", doc["run"]["run_id"], "--json").output)
    assert any(x["subject_id"] == subject for x in s["stale_courses"])       # the old course is flagged
    rr = adj(db, "cohort", str(cohort_dir), "--profiles", "trial", "--workers", "1", "--json")
    assert rr.exit_code == 0, rr.output
    rerun = json.loads(rr.output)
    with AuditStore.open(db) as st:
        course = next(x for x in st.iter_rows(subject_id=subject, item="course/trial", run_id=rerun["run"]["run_id"]))
        a1 = next(x for x in st.iter_rows(subject_id=subject, item="A1/trial", run_id=rerun["run"]["run_id"]))
    assert json.loads(course["outcome"])["by_end_of_cycle_2"]["crc"] is False
    assert json.loads(course["input"])["committee"] == {"A1": override}
    assert json.loads(a1["outcome"])["category"] != "NR"                     # the machine's own view stays
    assert _crc(rerun["summary"]) == (k0 - 1, n0) and not rerun["summary"]["stale_courses"]


def _items(db: Path, subject: str) -> list[str]:
    with AuditStore.open(db) as s:
        return sorted({r["item"].split("/")[0] for r in s.iter_rows(subject_id=subject, use_case="marrow")
                       if not r["item"].startswith(("course", "death"))})


def test_the_marrow_command_folds_over_the_committees_decision(first_run, tmp_path, cohort_dir):
    db, _ = _copy_db(first_run, tmp_path)
    subject = next(sid for sid in ("VAH-001", "VAH-002")
                   if json.loads(_outcome(db, sid, "course/trial"))["by_end_of_cycle_2"]["crc"] is True
                   and _items(db, sid) == ["A1"])
    assert adj(db, "audit", "override", _decision(db, subject, "A1/trial"), "--outcome", '{"category": "NR"}',
               "--reviewer", "Dr A", "--role", "chair", "--reason", "recount").exit_code == 0
    r = adj(db, "marrow", str(cohort_dir / f"{subject}.yaml"), "--profile", "trial", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    a1 = next(a for a in doc["assessments"] if a["assessment_id"] == "A1")
    assert a1["profiles"]["trial"]["category"] != "NR"                          # the machine's decision
    assert doc["course"]["trial"]["by_end_of_cycle_2"]["crc"] is False         # the course: the committee's
