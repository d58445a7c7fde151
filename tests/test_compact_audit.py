"""Compact audit records (issue 15 item 3): rule ids and outcomes, the facts the packs ended with,
sources by file, parameters once per run, the trail's copy of each pack; `audit explain`
recomputes every rule's outcome and the values it read with the pinned pack and says when the
recomputation disagrees; records of the earlier full format stay readable."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from engine.adjudicate.cohort import run_cohort
from engine.audit import AuditStore
from engine.audit.compact import FORMAT, compact_sources, is_compact, sources_of, trace_rows
from engine.audit.explain import explain
from engine.evaluate.reference import ReferenceEvaluator
from engine.rules.load import load_registry

ROOT = Path(__file__).resolve().parents[1]
VAH96 = ROOT / "fixtures" / "cohort" / "vah96"
BOUNDARIES = ROOT / "fixtures" / "cohort" / "boundaries"


def adj(db: Path, *args: str):
    return CliRunner().invoke(main, ["--db", str(db), "--actor", "tester", *args])


@pytest.fixture(scope="module")
def cohort_store(tmp_path_factory):
    """Four enrolled VAH subjects and two boundary subjects, every use case, one run."""
    d = tmp_path_factory.mktemp("cohort")
    for p in sorted(VAH96.glob("*.yaml"))[:4] + sorted(BOUNDARIES.glob("*.yaml"))[:2]:
        shutil.copy(p, d / p.name)
    db = tmp_path_factory.mktemp("db") / "audit.sqlite"
    with AuditStore.open(db) as store:
        res = run_cohort(str(d), store, actor="tester", workers=1, progress=False, checkpoint=False)
    assert not res.failed
    return db, d, res.run_id


def _records(db: Path) -> list:
    with AuditStore.open(db, read_only=True) as s:
        return [r for r in s.iter() if not r.subject_id.startswith("__")]


def test_every_record_of_a_run_is_compact_and_explains_as_recorded(cohort_store, registry):
    db, _, _ = cohort_store
    records = _records(db)
    assert {r.use_case for r in records} >= {"screen", "marrow", "ae", "ctcae-lab", "tls", "dosing",
                                             "follow-up"}
    with AuditStore.open(db, read_only=True) as store:
        for evaluator in (None, ReferenceEvaluator()):
            for r in records:
                assert is_compact(r.trace), r.use_case
                e = explain(r, registry, store=store, evaluator=evaluator)
                assert e.recomputed and e.agrees, (r.use_case, r.item, e.disagreements, e.problems)
                recorded = {(t["pack"], t["rule"]): t["outcome"] for t in trace_rows(r.trace)}
                shown = {(t["pack"], t["rule"]): t["outcome"] for t in e.trace}
                assert all(shown.get(k) == v for k, v in recorded.items())
                assert all("inputs" in t for t in e.trace)


def test_the_values_read_come_back_and_unknown_rules_name_their_missing_facts(cohort_store, registry):
    db, _, _ = cohort_store
    with AuditStore.open(db, read_only=True) as store:
        screen = next(r for r in store.iter(use_case="screen"))
        e = explain(screen, registry, store=store)
    inc01 = next(t for t in e.trace if t["pack"] == "vah-eligibility" and t["rule"] == "INC-01")
    assert inc01["inputs"] == {"subject.age_years": screen.input["facts"]["subject.age_years"]}
    # the stored trace holds no values: they are recomputed
    assert "inputs" not in json.dumps(screen.trace)
    tls = next(r for r in _records(db) if r.use_case == "tls" and "unknown" in json.dumps(r.trace))
    with AuditStore.open(db, read_only=True) as store:
        e = explain(tls, registry, store=store)
    unknown = [t for t in e.trace if t["outcome"] == "unknown"]
    assert unknown and all(t.get("missing") for t in unknown)


def test_a_record_that_disagrees_with_its_recomputation_is_reported(cohort_store, registry):
    db, _, _ = cohort_store
    r = next(x for x in _records(db) if x.use_case == "marrow" and x.item.endswith("/trial"))
    ev = r.trace["evaluations"][0]
    flipped = ev["met"][0]
    ev["met"] = ev["met"][1:]
    ev["not_met"] = ev.get("not_met", []) + [flipped]
    with AuditStore.open(db, read_only=True) as store:
        e = explain(r, registry, store=store)
    assert e.recomputed and e.agrees is False
    assert any(flipped in d and "recorded not_met, recomputed met" in d for d in e.disagreements)
    assert next(t for t in e.trace if t["rule"] == flipped)["recorded"] == "not_met"
    # a fact changed in the record: the rules that read it disagree
    r2 = next(x for x in _records(db) if x.use_case == "screen")
    r2.input["facts"]["subject.age_years"] = 99
    with AuditStore.open(db, read_only=True) as store:
        e2 = explain(r2, registry, store=store)
    assert any("INC-01" in d for d in e2.disagreements)


def test_audit_explain_command_text_json_and_exit_codes(cohort_store, tmp_path):
    db, _, _ = cohort_store
    did = next(r.decision_id for r in _records(db) if r.use_case == "screen")
    out = adj(db, "audit", "explain", did[:10])
    assert out.exit_code == 0, out.output
    assert "agrees with the record" in out.output and "INC-01: met" in out.output
    doc = json.loads(adj(db, "audit", "explain", did, "--json", "--evaluator", "reference").output)
    assert doc["recomputed"] and doc["agrees"] and doc["evaluator"] == "reference"
    assert adj(db, "audit", "explain", "nonexistent-id").exit_code == 2
    # a record edited in the store (its chain broken too): explain says the recomputation disagrees
    import storetools
    copy = tmp_path / "edited.sqlite"
    with AuditStore.open(db) as s:
        s.backup(copy)
    row = storetools.query(copy, "SELECT input FROM decisions WHERE decision_id = ?", (did,))[0][0]
    edited = json.loads(row)
    edited["facts"]["subject.age_years"] = 99
    storetools.tamper(copy, "UPDATE decisions SET input = ? WHERE decision_id = ?", (json.dumps(edited), did))
    bad = adj(copy, "audit", "explain", did)
    assert bad.exit_code == 3 and "DISAGREES" in bad.output and "INC-01" in bad.output


def test_parameters_are_recorded_once_per_run_and_explain_uses_them(tmp_path, registry):
    d = tmp_path / "c"
    d.mkdir()
    for p in sorted(VAH96.glob("*.yaml"))[:2]:
        shutil.copy(p, d / p.name)
    db = tmp_path / "a.sqlite"
    with AuditStore.open(db) as store:
        res = run_cohort(str(d), store, actor="t", workers=1, progress=False, checkpoint=False,
                         profiles=("trial",), params={"vah-trial-response": {"mrd_threshold_pct": "0.1"}})
        start = next(store.iter(subject_id="__run__", item="start"))
        recs = [r for r in store.iter(run_id=res.run_id) if not r.subject_id.startswith("__")]
        assert start.outcome["parameters"]["vah-trial-response"]["mrd_threshold_pct"] == 0.1
        assert start.outcome["parameters"]["vah-eligibility"] == {p.name: p.value for p in
                                                                   registry.get("vah-eligibility").manifest.parameters}
        assert all(r.parameters == {} for r in recs if r.use_case in ("screen", "marrow"))
        for r in recs:
            e = explain(r, registry, store=store)
            assert e.agrees, (r.item, e.disagreements, e.problems)
        # without the run's start record the parameters are unknown: said, not guessed
        r = next(x for x in recs if x.use_case == "marrow")
        e = explain(r, registry)
        assert not e.recomputed and any("parameters" in p for p in e.problems)


def test_a_pack_changed_in_the_rules_folder_is_taken_from_the_trail(cohort_store, tmp_path):
    db, _, _ = cohort_store
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    pack_file = rules / "vah-eligibility" / "pack.yaml"
    pack_file.write_text(pack_file.read_text() + "\n# edited after the run\n")
    changed = load_registry(rules)
    r = next(x for x in _records(db) if x.use_case == "screen")
    with AuditStore.open(db, read_only=True) as store:
        e = explain(r, changed, store=store)
        assert e.agrees, e.problems
        where = {p["id"]: p["source"] for p in e.packs}
        assert where["vah-eligibility"] == "trail" and where["eln-risk"] == "rules folder"
    # a store without the copy (e.g. written before copies were kept): said so, outcomes as recorded
    e2 = explain(r, changed)
    assert not e2.recomputed and any("vah-eligibility" in p for p in e2.problems)
    assert {t["rule"] for t in e2.trace} >= {"INC-01"}


def test_an_edited_pack_copy_fails_verification(cohort_store, tmp_path):
    import storetools
    db, _, _ = cohort_store
    copy = tmp_path / "c.sqlite"
    with AuditStore.open(db) as s:
        s.backup(copy)
    (sha, text), = storetools.query(copy, "SELECT sha256, text FROM packs WHERE id = 'vah-eligibility'")
    storetools.tamper(copy, "UPDATE packs SET text = ? WHERE sha256 = ?", (text.replace("18", "19", 1), sha))
    with AuditStore.open(copy, read_only=True) as s:
        report = s.verify()
    assert not report.ok and "vah-eligibility" in report.message()
    assert adj(copy, "audit", "verify").exit_code == 3


def test_full_format_records_stay_readable(store_target, registry):
    trace = [{"pack": "vah-eligibility", "rule": "INC-01", "outcome": "met", "inputs": {"subject.age_years": 52}}]
    with AuditStore.open(store_target) as s:
        [rec] = s.append([{"subject_id": "S1", "use_case": "screen", "item": "eligibility", "actor": "t",
                           "outcome": {"verdict": "ELIGIBLE"}, "trace": trace,
                           "input": {"facts": {"subject.age_years": 52},
                                     "sources": {"subject.age_years": "s.yaml#demographics.age_years"}}}])
        assert s.verify().ok
        e = explain(s.get(rec.decision_id), registry, store=s)
    assert e.format == "full" and not e.recomputed and e.trace == trace
    assert trace_rows(rec.trace)[0]["outcome"] == "met"
    assert sources_of(rec.input) == {"subject.age_years": "s.yaml#demographics.age_years"}


def test_compact_records_are_much_smaller(registry, tmp_path):
    """A subject's screening: the compact trace is a fraction of the full one (values, missing
    facts and the pack name on every rule), sources name their file once."""
    from engine.adjudicate.screening import screen, screening_entry
    from engine.audit.record import canonical_json
    from engine.record import load_subject
    path = VAH96 / "VAH-001.yaml"
    res = screen(load_subject(path), registry, source_file=str(path))
    entry = screening_entry(res, "t")
    full_trace = canonical_json(res.trace())
    compact_trace = canonical_json(entry["trace"])
    assert entry["trace"]["format"] == FORMAT
    assert len(compact_trace) * 4 < len(full_trace)
    src = res._audit["snapshot"]["sources"]
    assert len(canonical_json(compact_sources(src))) * 1.5 < len(canonical_json(src))
    assert sources_of(entry["input"]) == {k: v for k, v in sources_of(entry["input"]).items()}
    assert all(sources_of(entry["input"])[k] == v for k, v in src.items())


def test_compact_sources_round_trip():
    src = {"a": "/x/s.yaml#demographics.age", "b": "/x/s.yaml#labs[0].value", "c": "event A1",
           "d": "/y/t.yaml#x", "e": "course state after A2", "f": "#odd"}
    packed = compact_sources(src)
    assert packed["source_files"] == {"/x/s.yaml": {"a": "demographics.age", "b": "labs[0].value"}, "/y/t.yaml": {"d": "x"}}
    assert sources_of(packed) == src


def test_a_rerun_folding_over_a_committee_decision_explains_as_recorded(tmp_path, registry):
    """The course folds over the committee's outputs on an item: the item's record says which
    outputs were set over the pack's, and the recomputation sets them again."""
    d = tmp_path / "c"
    d.mkdir()
    for p in sorted(VAH96.glob("*.yaml"))[:2]:
        shutil.copy(p, d / p.name)
    db = tmp_path / "a.sqlite"
    assert adj(db, "cohort", str(d), "--profiles", "trial", "--workers", "1").exit_code == 0
    with AuditStore.open(db) as s:
        a1 = next(r for r in s.iter(use_case="marrow") if r.item == "A1/trial")
    assert adj(db, "audit", "override", a1.decision_id, "--outcome", '{"category": "NR"}', "--reviewer", "Dr A",
               "--role", "chair", "--reason", "recount").exit_code == 0
    assert adj(db, "cohort", str(d), "--profiles", "trial", "--workers", "1").exit_code == 0
    with AuditStore.open(db, read_only=True) as s:
        runs = [r.run_id for r in s.iter(subject_id="__run__", item="complete")]
        recs = [r for r in s.iter(run_id=runs[-1]) if not r.subject_id.startswith("__")]
        fixed = [r for r in recs if any(e.get("fixed") for e in r.trace["evaluations"])]
        assert [r.item for r in fixed] == ["A1/trial"] and fixed[0].subject_id == a1.subject_id
        for r in recs:
            e = explain(r, registry, store=s)
            assert e.agrees, (r.item, e.disagreements)
