"""The compiled batch evaluator (engine.evaluate.compiled) against durable-rules and the reference
evaluator: every pack's embedded tests (rules, rows, transitions, decisions, course states and the
facts each evaluation ended with), random condition trees, and the semantics the reference
evaluator pins (exact types, short cuts, errors where the reference raises them)."""
from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from engine.errors import EvaluationError, PackError
from engine.evaluate.compiled import CompiledEvaluator, _bad
from engine.evaluate.course import run_course
from engine.evaluate.durable_adapter import DurableEvaluator
from engine.evaluate.facts import FactSheet
from engine.evaluate.logic import Outcome
from engine.evaluate.reference import ReferenceEvaluator
from engine.evaluate.run import evaluate_pack
from engine.rules.load import load_registry, pack_from_data
from engine.rules.testing import _compare_results, test_timeline as timeline_of
from test_differential import FACTS, PARAMS, leaf, sheet

COMPILED, DURABLE, REFERENCE = CompiledEvaluator(), DurableEvaluator(), ReferenceEvaluator()


def _facts(s: FactSheet) -> dict:
    return {"values": s.values, "unknown": sorted(s.unknown), "missing": s.missing_because}


def _embedded():
    reg = load_registry(None)
    return [(pack, t) for pack in reg.packs.values() for t in pack.tests]


def test_every_embedded_test_decides_as_durable_rules():
    """Every embedded test of every pack (including the collections, aggregates and course folds)
    evaluated by the compiled evaluator and by durable-rules: the same outcome for every rule, row
    and transition, the same decisions, course states and facts."""
    cases = _embedded()
    assert len(cases) > 1000
    problems = []
    for pack, t in cases:
        sheet_ = FactSheet.of(t.given, {k: "test" for k in t.given})
        tl = timeline_of(pack, t)
        where = f"{pack.id} / {t.name}: "
        if pack.manifest.course is not None and tl is not None:
            got = run_course(pack, sheet_, tl, t.parameters, COMPILED)
            want = run_course(pack, sheet_, tl, t.parameters, DURABLE)
            assert [i.event.id for i in got.items] == [i.event.id for i in want.items], where
            for gi, wi in zip(got.items, want.items):
                problems += _compare_results(gi.result, wi.result, where, None)
                if gi.state_json() != wi.state_json() or _facts(gi.sheet) != _facts(wi.sheet):
                    problems.append(f"{where}item {gi.event.id}: state or facts differ")
                if [r.missing for r in gi.result.rules.values()] != [r.missing for r in wi.result.rules.values()]:
                    problems.append(f"{where}item {gi.event.id}: missing facts differ")
            problems += _compare_results(got.final, want.final, where + "course: ", None)
        else:
            got, gs = evaluate_pack(pack, sheet_, t.parameters, COMPILED, tl)
            want, ws = evaluate_pack(pack, sheet_, t.parameters, DURABLE, tl)
            problems += _compare_results(got, want, where, None)
            if got.trace() != want.trace():
                problems.append(f"{where}traces differ")
            if _facts(gs) != _facts(ws):
                problems.append(f"{where}the facts the evaluations ended with differ")
    assert not problems, problems[:10]



def test_a_batch_builds_no_values_read_for_refuted_rows_and_records_the_same():
    """The compiled (batch) evaluator does not build the values read of a decision-table row that
    is not met (no record keeps one); every rule, and every row that decided or held a decision
    open, keeps its values read exactly as durable-rules builds them."""
    assert COMPILED.refuted_row_inputs is False and DURABLE.refuted_row_inputs is True
    skipped = kept = 0
    for pack, t in _embedded():
        if pack.manifest.course is not None or not pack.manifest.decisions:
            continue
        sheet_ = FactSheet.of(t.given, {k: "test" for k in t.given})
        tl = timeline_of(pack, t)
        got, _ = evaluate_pack(pack, sheet_, t.parameters, COMPILED, tl)
        want, _ = evaluate_pack(pack, sheet_, t.parameters, DURABLE, tl)
        assert got.trace() == want.trace(), f"{pack.id} / {t.name}"
        assert {k: r.inputs for k, r in got.rules.items()} == {k: r.inputs for k, r in want.rules.items()}
        for key, r in got.rows.items():
            assert r.outcome is want.rows[key].outcome, f"{pack.id} / {t.name}: {key}"
            if r.outcome is Outcome.NOT_MET:
                assert r.inputs == {}, f"{pack.id} / {t.name}: {key}"
                skipped += bool(want.rows[key].inputs)
            else:
                assert r.inputs == want.rows[key].inputs, f"{pack.id} / {t.name}: {key}"
                kept += bool(r.inputs)
    assert skipped > 1000 and kept > 100, (skipped, kept)

at_least = st.builds(lambda k, xs: {"at_least": min(k, len(xs)), "of": xs}, st.integers(1, 3),
                     st.lists(leaf, min_size=1, max_size=4))
tree = st.recursive(st.one_of(leaf, at_least), lambda kids: st.one_of(
    st.builds(lambda xs: {"all": xs}, st.lists(kids, min_size=1, max_size=4)),
    st.builds(lambda xs: {"any": xs}, st.lists(kids, min_size=1, max_size=4)),
    st.builds(lambda x: {"not": x}, kids)), max_leaves=12)


def _pack(conds, pid="cmp"):
    rules = [{"id": f"R{i}", "title": "r", "source": {"citation": "c", "text": "t"}, "when": c}
             for i, c in enumerate(conds)]
    if len(rules) > 1:   # a rule over earlier rules' outcomes: a later stratum
        rules.append({"id": "TOP", "title": "r", "source": {"citation": "c", "text": "t"},
                      "when": {"at_least": 1, "of": [{"rule": "R0"}, {"not": {"rule": "R1"}}]}})
    return pack_from_data({"id": pid, "version": "1.0.0", "effective": "2026-01-01", "title": "t",
                           "source": "s", "facts": FACTS, "parameters": PARAMS, "rules": rules,
                           "decisions": [{"id": "dec", "hit_policy": "first",
                                          "rows": [{"when": {"rule": r["id"]}, "then": r["id"]} for r in rules],
                                          "default": "NONE"}]})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conds=st.lists(tree, min_size=1, max_size=3), facts=sheet, mode=st.sampled_from(["x", "y"]),
       unknown=st.lists(st.sampled_from(["a", "s", "flag", "d"]), max_size=2))
def test_random_conditions_decide_as_the_reference_and_durable_rules(conds, facts, mode, unknown):
    pack = _pack(conds)
    fs = FactSheet.of(facts)
    for n in unknown:   # facts that may or may not have a value (exists/missing are unknown on them)
        if n not in fs.values:
            fs.mark_unknown(n, [n])
    try:
        got, _ = evaluate_pack(pack, fs, {"mode": mode}, COMPILED)
        ref, _ = evaluate_pack(pack, fs, {"mode": mode}, REFERENCE)
        dur, _ = evaluate_pack(pack, fs, {"mode": mode}, DURABLE)
    except PackError as exc:   # a random tree over durable-rules' alternatives limit is refused at load
        assume("too large for the rules engine" not in str(exc))   # (a documented PackError, not a disagreement)
        raise
    for other in (ref, dur):
        for rid, r in got.rules.items():
            assert r.outcome is other.rules[rid].outcome, (rid, conds, facts)
            assert r.missing == other.rules[rid].missing
        assert got.decisions["dec"].to_dict() == other.decisions["dec"].to_dict()


def _one(cond, facts):
    return evaluate_pack(_pack([cond], "one"), FactSheet.of(facts), None, COMPILED)[0].rules["R0"].outcome


def test_exact_types_and_the_reference_evaluators_errors():
    assert _one({"fact": "a", "eq": 1}, {"a": 1}) is Outcome.MET
    assert _one({"fact": "a", "eq": 1}, {"a": Decimal("1.0")}) is Outcome.MET
    assert _one({"fact": "flag", "eq": True}, {"flag": True}) is Outcome.MET
    assert _one({"fact": "s", "in": ["x", "y"]}, {"s": "z"}) is Outcome.NOT_MET
    assert _one({"fact": "a", "lt": 1}, {}) is Outcome.UNKNOWN
    assert _one({"fact": "a", "missing": True}, {}) is Outcome.MET
    assert _one({"fact": "a", "gt": {"fact": "b", "times": 1.5}}, {"a": 3, "b": 2}) is Outcome.NOT_MET
    assert _one({"fact": "a", "gte": {"fact": "b", "times": 1.5}}, {"a": 3, "b": 2}) is Outcome.MET
    # ordering a text against a number: the compiled evaluator does what the reference does
    for facts in ({"a": "text"}, {"d": Decimal(3)}):
        cond = {"fact": next(iter(facts)), "gt": 1}
        outcome = []
        for ev in (COMPILED, REFERENCE):
            try:
                outcome.append(evaluate_pack(_pack([cond], "bad"), FactSheet.of(facts), None, ev)[0].rules["R0"].outcome)
            except Exception as exc:   # noqa: BLE001 - the same error from both is what is tested
                outcome.append((type(exc), str(exc)))
        assert outcome[0] == outcome[1]
    with pytest.raises(EvaluationError, match="cannot order"):
        _bad("x", Decimal(1))
    # `all` stops at the first false part, as the reference does: a later part's error is not reached
    assert _one({"all": [{"fact": "a", "gt": 5}, {"fact": "s", "eq": "x"}]}, {"a": 1, "s": "x"}) is Outcome.NOT_MET
    assert _one({"any": [{"fact": "a", "lt": 5}, {"fact": "s", "eq": "z"}]}, {"a": 1}) is Outcome.MET
    assert _one({"at_least": 2, "of": [{"fact": "a", "lt": 5}, {"fact": "b", "lt": 5}, {"fact": "s", "eq": "x"}]},
                {"a": 1}) is Outcome.UNKNOWN
    assert _one({"at_least": 2, "of": [{"fact": "a", "lt": 5}, {"fact": "b", "lt": 5}, {"fact": "s", "eq": "x"}]},
                {"a": 1, "b": 9, "s": "y"}) is Outcome.NOT_MET


# --- the batch: compiled evaluator checked by durable-rules in the same run --------------------

def _small_cohort(tmp_path, n=8):
    from pathlib import Path
    src = Path(__file__).resolve().parents[1] / "fixtures" / "cohort" / "vah96"
    folder = tmp_path / "subjects"
    folder.mkdir()
    for p in sorted(src.glob("*.yaml"))[:n]:
        (folder / p.name).write_text(p.read_text())
    return folder


def _records(db):
    from engine.audit.store import AuditStore
    with AuditStore.open(db, create=False, read_only=True) as s:
        return {(r["subject_id"], r["use_case"], r["item"]): (r["input"], r["input_sha256"], r["packs"], r["parameters"],
                                                             r["trace"], r["outcome"])
                for r in s.iter_rows() if r["subject_id"] != "__run__"}, \
            [json_of(r) for r in s.iter_rows(subject_id="__run__")]


def json_of(row):
    import json
    return json.loads(row["outcome"]) | json.loads(row["input"])


def test_a_compiled_batch_writes_the_records_durable_rules_writes(tmp_path):
    from engine.adjudicate.cohort import run_cohort
    from engine.audit.store import AuditStore
    folder = _small_cohort(tmp_path)
    for ev in ("compiled", "durable"):
        with AuditStore.open(tmp_path / f"{ev}.sqlite") as store:
            res = run_cohort(str(folder), store, actor="t", workers=1, evaluator=ev, check_every=3, checkpoint=False)
            assert res.exit_code == 0 and res.subjects == 8
    (compiled, c_run), (durable, d_run) = _records(tmp_path / "compiled.sqlite"), _records(tmp_path / "durable.sqlite")
    assert compiled.keys() == durable.keys() and len(compiled) > 150
    assert compiled == durable   # byte for byte: inputs, hashes, packs, parameters, traces, outcomes
    start, done = c_run
    assert start.get("evaluator") == "compiled" and start.get("check_every") == 3
    check = next(r for r in c_run if "check" in r)["check"]
    assert check["checked"] == check["sampled"] == 3 and check["disagreements"] == []   # items 0, 3, 6
    assert next(r for r in d_run if "check" in r)["check"] is None


def test_subjects_whose_decisions_changed_are_checked(tmp_path):
    from engine.adjudicate.cohort import run_cohort
    from engine.audit.store import AuditStore
    from engine.report.diff import CHANGED, iter_changes
    folder = _small_cohort(tmp_path, 12)
    with AuditStore.open(tmp_path / "a.sqlite") as store:
        first = run_cohort(str(folder), store, actor="t", workers=1, checkpoint=False, check_every=1000)
        assert (first.check["checked"], first.check["sampled"], first.check["changed"]) == (1, 1, 0)  # item 0
        again = run_cohort(str(folder), store, actor="t", workers=1, checkpoint=False, check_every=1000,
                           profiles=("trial",), params={"vah-trial-response": {"mrd_threshold_pct": 0.1}})
        changed = {c["subject_id"] for c in iter_changes(store, again.run_id) if c["status"] == CHANGED}
        first_subject = sorted(p.stem for p in folder.glob("*.yaml"))[0]   # item 0: checked as the sample
        assert changed - {first_subject}, "the MRD threshold changes decisions of some of these subjects"
        assert again.check["changed"] == len(changed - {first_subject}) and again.check["sampled"] == 1
        assert again.check["disagreements"] == [] and again.exit_code == 0


def test_a_disagreement_fails_the_run_and_writes_nothing_of_the_subject(tmp_path, monkeypatch):
    from engine.adjudicate.cohort import run_cohort
    from engine.audit.store import AuditStore
    from engine.evaluate import compiled as comp
    folder = _small_cohort(tmp_path, 4)
    real = comp.CompiledSession.evaluate

    def planted(self, stratum, sheet, results):   # a compiler bug: ECOG 0-2 (inclusion 2) comes out not met
        out = real(self, stratum, sheet, results)
        if out.get("INC-02") is Outcome.MET:
            out["INC-02"] = Outcome.NOT_MET
        return out
    monkeypatch.setattr(comp.CompiledSession, "evaluate", planted)
    with AuditStore.open(tmp_path / "a.sqlite") as store:
        res = run_cohort(str(folder), store, actor="t", workers=1, checkpoint=False, check_every=2)
        assert res.exit_code == 1 and len(res.disagreements) == 2   # items 0 and 2 were checked
        bad = {d["subject_id"] for d in res.disagreements}
        assert all("differ" in p for d in res.disagreements for p in d["problems"])
        assert not [r for r in store.iter_rows() if r["subject_id"] in bad]
        done = [json_of(r) for r in store.iter_rows(subject_id="__run__") if "check" in json_of(r)]
        assert done[0]["check"]["disagreements"] and done[0]["failed"]


def test_the_check_reads_the_baseline_from_either_store_in_pool_workers(tmp_path, store_target):
    """Workers (2 processes) open the run's store read-only for the baseline: SQLite and PostgreSQL."""
    from engine.adjudicate.cohort import run_cohort
    from engine.audit.store import AuditStore
    folder = _small_cohort(tmp_path, 6)
    with AuditStore.open(store_target) as store:
        run_cohort(str(folder), store, actor="t", workers=2, checkpoint=False, profiles=("trial",))
        again = run_cohort(str(folder), store, actor="t", workers=2, checkpoint=False, check_every=1000,
                           profiles=("trial",), params={"vah-trial-response": {"mrd_threshold_pct": 0.1}})
        assert again.exit_code == 0 and again.check["changed"] >= 1 and not again.check["disagreements"]
        assert store.verify().ok


def test_the_command_line_chooses_the_evaluator_and_reports_the_check(tmp_path):
    import json
    from click.testing import CliRunner
    from cli import main
    folder = _small_cohort(tmp_path, 3)
    db = str(tmp_path / "a.sqlite")
    r = CliRunner().invoke(main, ["--db", db, "cohort", str(folder), "--check-every", "2", "--workers", "1", "--json"])
    assert r.exit_code == 0, r.output
    run = json.loads(r.stdout)["run"]
    assert run["evaluator"] == "compiled" and run["check"]["checked"] == 2 and run["check"]["every"] == 2
    r = CliRunner().invoke(main, ["--db", db, "cohort", str(folder), "--evaluator", "durable", "--workers", "1"])
    assert r.exit_code == 0, r.output
    assert "checked by durable-rules" not in r.output and "3 subjects" in r.output
    r = CliRunner().invoke(main, ["--db", db, "cohort", str(folder), "--check-every", "0"])
    assert r.exit_code == 2 and "check-every" in r.output
