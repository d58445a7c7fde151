"""The synthetic VAH cohort, the cohort run (resume after SIGKILL, a bad subject), the diff."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "fixtures" / "cohort"))
import generate  # noqa: E402

from engine.audit.store import AuditStore  # noqa: E402
from engine.record import load_subjects  # noqa: E402

VAH96 = ROOT / "fixtures" / "cohort" / "vah96"
ADJ = [sys.executable, "-c", "import cli; cli.main()"]


def _trial_category(a, base: Decimal) -> str:
    """The paper's definitions, written from the Methods text (test oracle of the design)."""
    m, b = a.marrow, a.blood
    if m.blasts_pct < 5 and not a.rbc_transfusion_dependent:
        return "CR" if b.anc_10e9_l > 1 and b.platelets_10e9_l > 100 else "CRi"
    fall = (base - m.blasts_pct) / base * 100
    if 5 <= m.blasts_pct <= 25 and fall > 50 and b.anc_10e9_l > 1 and b.platelets_10e9_l > 100:
        return "PR"
    return "NR"


def test_fixture_matches_the_generator():
    """The checked-in vah96/ is exactly what the seeded generator writes."""
    for subject, plan in generate.cohort(96):
        text = (VAH96 / f"{subject['subject_id']}.yaml").read_text()
        assert text == generate.dump(subject, generate._plan_comment(plan))


def test_design_reproduces_the_paper():
    c = Counter()
    for path, rec in load_subjects(VAH96):
        assert not isinstance(rec, Exception), rec
        c[rec.demographics.sex] += 1
        by = {a.timepoint: a for a in rec.on_study.assessments}
        base = by["baseline"].marrow.blasts_pct
        c1 = _trial_category(by["C1D28"], base)
        cats = [c1] + ([_trial_category(by["post_C2"], base)] if "post_C2" in by else [])
        c["c1_crc"] += c1 in ("CR", "CRi")
        c["c1_orr"] += c1 != "NR"
        crc = any(x in ("CR", "CRi") for x in cats)
        c["crc"] += crc
        c["orr"] += any(x != "NR" for x in cats)
        crc_mrd = [a.mrd.value_pct for a in (by["C1D28"], by.get("post_C2")) if a is not None
                   and _trial_category(a, base) in ("CR", "CRi")]
        c["mrd_neg"] += crc and all(v < Decimal("0.01") for v in crc_mrd)
        c["mrd_on_edge"] += any(v == Decimal("0.01") for v in crc_mrd)
        c["anc_on_edge"] += any(a.blood.anc_10e9_l == 1 for a in rec.on_study.assessments[1:])
        c[f"cycles{len(rec.on_study.cycles)}"] += 1
    assert (c["c1_crc"], c["crc"], c["c1_orr"], c["orr"], c["mrd_neg"]) == (56, 68, 69, 75, 40)
    assert (c["male"], c["female"]) == (51, 45)
    assert (c["cycles1"], c["cycles2"], c["cycles3"]) == (45, 42, 9)
    assert c["mrd_on_edge"] == 3 and c["anc_on_edge"] == 3


def test_benchmark_generator_keeps_proportions():
    subjects = [s for s, _ in generate.cohort(192, seed=3)]
    assert len({s["subject_id"] for s in subjects}) == 192


def _subset(tmp: Path, n: int) -> Path:
    d = tmp / "subjects"
    d.mkdir()
    for p in sorted(VAH96.glob("*.yaml"))[:n]:
        shutil.copy(p, d / p.name)
    return d


def _run(args, db: Path, **kw):
    env = dict(os.environ, ADJUDICATOR_DB=str(db))
    return subprocess.run(ADJ + args, cwd=ROOT, env=env, capture_output=True, text=True, **kw)


def test_bad_subject_is_reported_and_skipped(tmp_path):
    d = _subset(tmp_path, 3)
    (d / "ZZ-bad.yaml").write_text("subject_id: ZZ-BAD\ndemographics: {age_years: 300}\n")
    db = tmp_path / "a.sqlite"
    r = _run(["cohort", str(d), "--profiles", "trial", "--workers", "2", "--json"], db)
    assert r.returncode == 2, r.stderr
    assert "ZZ-bad.yaml" in r.stderr and "Traceback" not in r.stderr
    doc = json.loads(r.stdout)
    assert doc["run"]["subjects"] == 3 and doc["run"]["failed"][0]["path"].endswith("ZZ-bad.yaml")
    with AuditStore.open(db) as s:
        assert s.done_subjects(doc["run"]["run_id"]) >= {"VAH-001", "VAH-002", "VAH-003"}
        assert s.verify().ok


def test_resume_after_sigkill(tmp_path):
    n = 96  # the whole cohort with one worker: several seconds, so the kill lands midway
    d = _subset(tmp_path, n)
    db = tmp_path / "a.sqlite"
    env = dict(os.environ, ADJUDICATOR_DB=str(db))
    p = subprocess.Popen(ADJ + ["cohort", str(d), "--profiles", "trial", "--workers", "1"], cwd=ROOT, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 60
    done = 0
    while time.time() < deadline and done < 3:
        time.sleep(0.02)
        if db.exists():
            with AuditStore.open(db) as s:
                done = len({r["subject_id"] for r in s.iter_rows(use_case="marrow")})
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    with AuditStore.open(db) as s:
        before = {r["subject_id"] for r in s.iter_rows(use_case="marrow")}
    assert 0 < len(before) < n, "the kill must land midway"
    r = _run(["cohort", "--resume", "latest", "--workers", "2", "--json"], db)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["run"]["skipped"] >= len(before)
    with AuditStore.open(db) as s:
        assert s.verify().ok
        keys = Counter((r["subject_id"], r["item"]) for r in s.iter_rows(use_case="marrow"))
        assert len({k[0] for k in keys}) == n
        assert set(keys.values()) == {1}, "no decision duplicated"
    assert doc["summary"]["response"]["trial"]["all"]["n"] == n


def test_diff_lists_changed_decisions_and_rules(tmp_path):
    d = tmp_path / "subjects"
    d.mkdir()
    # subjects designed with MRD exactly 0.01 % (positive at 0.01, negative at 0.1)
    edge = [p for p in sorted(VAH96.glob("*.yaml")) if "mrd_eq_001" in p.read_text().splitlines()[1]]
    other = sorted(VAH96.glob("*.yaml"))[:2]
    for p in edge[:2] + other:
        shutil.copy(p, d / p.name)
    db = tmp_path / "a.sqlite"
    assert _run(["cohort", str(d), "--profiles", "trial"], db).returncode == 0
    r = _run(["cohort", str(d), "--profiles", "trial", "--param", "vah-trial-response.mrd_threshold_pct=0.1",
              "--json"], db)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    changed = {(c["subject_id"], c["item"]) for c in doc["diff"]}
    ids = [json.loads(json.dumps(p.read_text().split("subject_id: ")[1].split("\n")[0])) for p in edge[:2]]
    for sid in ids:
        assert any(k[0] == sid for k in changed)
    rules = {r["rule"] for c in doc["diff"] for r in c["rules"]}
    assert "vah-trial-response:MRD-NEGATIVE" in rules
    mrd_changes = [c for c in doc["diff"] if c["item"].endswith("/trial") and not c["item"].startswith("course")]
    assert all(c["old"] == c["new"] for c in mrd_changes)  # category unchanged, MRD status changed
    # named runs: A vs B gives the same changes
    with AuditStore.open(db) as s:
        from engine.adjudicate.cohort import latest_run
        b = latest_run(s)
        a = latest_run(s, before=b)
    r2 = _run(["cohort", "diff", a, b, "--json"], db)
    assert {(c["subject_id"], c["item"]) for c in json.loads(r2.stdout)["changes"]} == changed
