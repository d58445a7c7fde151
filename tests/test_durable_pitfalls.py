"""Regression tests for each measured pitfall of durable-rules 2.0.28 (DESIGN.md), through the
adapter: each would fail if the adapter stopped handling it."""
from __future__ import annotations

import json
import threading

import pytest

from engine.errors import EvaluationError, PackError
from engine.evaluate import durable_adapter
from engine.evaluate.durable_adapter import DurableEvaluator, registered_rulesets
from engine.evaluate.facts import FactSheet
from engine.evaluate.run import evaluate_pack
from engine.rules.load import pack_from_data

@pytest.fixture(autouse=True)
def every_fact_asserted(monkeypatch):
    """The pitfalls are about what durable-rules does with each assert: no remembered outcomes."""
    monkeypatch.setattr(durable_adapter, "_MEMO_MAX", 0)


FACTS = [{"name": "a", "type": "number"}, {"name": "b", "type": "number"}, {"name": "s", "type": "string"}]


def pack(rules, pid="pit", decisions=(), params=()):
    return pack_from_data({"id": pid, "version": "1.0.0", "effective": "2026-01-01", "title": "t", "source": "s",
                           "facts": FACTS, "parameters": list(params),
                           "rules": [{"id": k, "title": k, "source": {"citation": "c", "text": "t"}, "when": v}
                                     for k, v in rules.items()], "decisions": list(decisions)})


def run(p, facts, params=None):
    res, _ = evaluate_pack(p, FactSheet.of(facts), params, DurableEvaluator())
    return {k: r.outcome.value for k, r in res.rules.items()}


def test_missing_fact_is_unknown_not_false():
    p = pack({"R": {"fact": "a", "lt": 5}})
    assert run(p, {}) == {"R": "unknown"}
    assert run(p, {"a": 7}) == {"R": "not_met"}


def test_null_field_is_dropped_and_treated_as_missing():
    p = pack({"R": {"fact": "a", "missing": True}, "S": {"fact": "a", "ne": 1}})
    assert run(p, {"a": None}) == {"R": "met", "S": "unknown"}


def test_identical_facts_in_two_evaluations_do_not_collide():
    """Two facts with identical content are one fact to durable: ids must be unique."""
    p = pack({"R": {"fact": "a", "gte": 1}})
    for _ in range(3):
        assert run(p, {"a": 2}) == {"R": "met"}


def test_no_rule_matching_is_a_normal_outcome_and_session_is_not_deleted():
    """A fact no rule matches is MessageNotHandled; deleting that session would segfault."""
    p = pack({"R": {"fact": "a", "eq": 1}, "T": {"any": [{"rule": "R"}]}})
    assert run(p, {}) == {"R": "unknown", "T": "unknown"}


def test_or_fires_once_per_true_disjunct_but_counts_once():
    p = pack({"R": {"any": [{"fact": "a", "gte": 1}, {"fact": "b", "gte": 1}, {"fact": "s", "eq": "x"}]}})
    assert run(p, {"a": 2, "b": 2, "s": "x"}) == {"R": "met"}


def test_missing_only_condition_does_not_match_the_state_fact():
    """A condition without a type test would match durable's own state fact and fire forever."""
    p = pack({"R": {"fact": "a", "missing": True}})
    for _ in range(5):
        assert run(p, {"b": 1}) == {"R": "met"}


def test_fact_vs_fact_with_missing_right_side_is_unknown():
    """durable treats a comparison with a missing right-hand fact as true; the adapter must not."""
    p = pack({"R": {"fact": "a", "lte": {"fact": "b", "times": 1.5}}})
    assert run(p, {"a": 100}) == {"R": "unknown"}
    assert run(p, {"a": 1.8, "b": 1.2}) == {"R": "met"}    # exact: 1.5 x 1.2 = 1.8
    assert run(p, {"a": 1.81, "b": 1.2}) == {"R": "not_met"}


def test_more_than_1024_sessions():
    p = pack({"R": {"fact": "a", "gte": 1}})
    for i in range(1100):
        assert run(p, {"a": i % 3})["R"] == ("met" if i % 3 else "not_met")


def test_large_conditions_beyond_the_expression_limit():
    """Nested $or over 32 entries fails with error 113 in durable; DNF keeps each rule flat."""
    big = {"all": [{"any": [{"fact": "a", "gte": i}, {"fact": "b", "lt": -i}]} for i in range(8)]}
    p = pack({"R": big})
    assert run(p, {"a": 10, "b": 0}) == {"R": "met"}
    assert run(p, {"a": 3, "b": 0}) == {"R": "not_met"}


def test_too_large_condition_is_a_clear_pack_error():
    huge = {"all": [{"any": [{"fact": "a", "eq": i}, {"fact": "b", "eq": i}]} for i in range(12)]}
    with pytest.raises(PackError, match="too large"):
        run(pack({"R": huge}, pid="pit-huge"), {"a": 1})


def test_registration_by_id_version_hash_and_parameters():
    """Rulesets cannot be re-registered: same id+version with other content or parameters is another ruleset."""
    p1 = pack({"R": {"fact": "a", "gte": {"param": "k"}}}, pid="reg",
              params=[{"name": "k", "value": 5, "source": "s"}])
    p2 = pack({"R": {"fact": "a", "gt": {"param": "k"}}}, pid="reg",
              params=[{"name": "k", "value": 5, "source": "s"}])
    assert run(p1, {"a": 5}) == {"R": "met"}
    assert run(p2, {"a": 5}) == {"R": "not_met"}
    assert run(p1, {"a": 5}, {"k": 6}) == {"R": "not_met"}
    names = [n for n in registered_rulesets() if n.startswith("reg@1.0.0#")]
    assert len(names) == 3


def test_no_background_threads():
    """The stock Host's dispatch thread races with asserts; the adapter never starts one."""
    before = threading.active_count()
    run(pack({"R": {"fact": "a", "gte": 1}}, pid="thr"), {"a": 1})
    assert threading.active_count() == before


def test_errors_in_the_drain_surface(monkeypatch):
    """Exceptions inside durable actions are swallowed by the stock API; ours are raised."""
    p = pack({"R": {"fact": "a", "gte": 1}}, pid="boom")
    DurableEvaluator().session(p.plan, p.identity(), {}, "")  # compile once

    def broken(*a):
        raise RuntimeError("engine failure")

    with monkeypatch.context() as m:
        m.setattr(durable_adapter._dre, "start_action_for_state", broken)
        for _ in range(20):  # the interrupted sessions are left alone: deleting one would abort
            with pytest.raises(RuntimeError, match="engine failure"):
                run(p, {"a": 2})
    assert run(p, {"a": 2}) == {"R": "met"}    # and the engine goes on working


def test_unique_overlap_is_an_error():
    p = pack({"R": {"fact": "a", "gte": 1}, "S": {"fact": "a", "gte": 2}}, pid="uniq",
             decisions=[{"id": "d", "hit_policy": "unique",
                         "rows": [{"when": {"rule": "R"}, "then": "X"}, {"when": {"rule": "S"}, "then": "Y"}]}])
    with pytest.raises(EvaluationError, match="overlaps"):
        run(p, {"a": 3})
    assert run(p, {"a": 1.5}) == {"R": "met", "S": "not_met"}


def test_first_hit_with_unknown_earlier_row_is_indeterminate_but_agreeing_fields_decided():
    p = pack({"R": {"fact": "a", "gte": 1}, "S": {"fact": "b", "gte": 1}}, pid="first",
             decisions=[{"id": "d", "hit_policy": "first", "rows": [
                 {"when": {"rule": "R"}, "then": {"category": "CR", "crc": True}},
                 {"when": {"rule": "S"}, "then": {"category": "CRi", "crc": True}}],
                 "default": {"category": "NR", "crc": False}}])
    res, sheet = evaluate_pack(p, FactSheet.of({"b": 2}), None, DurableEvaluator())
    d = res.decisions["d"]
    assert d.status == "indeterminate" and d.missing == ["a"]
    assert d.fields == {"crc": True}
    assert sheet.values["first.d.crc"] is True and "first.d.category" not in sheet.values
    assert sheet.missing_roots("first.d.category") == ["a"]


def test_first_without_default_and_only_an_unknown_row_is_indeterminate():
    """Regression: the unknown row may be false, so 'no output' remains a candidate."""
    p = pack({"R": {"fact": "a", "gte": 1}, "S": {"fact": "b", "gte": 1}}, pid="nodefault",
             decisions=[{"id": "d", "hit_policy": "first", "rows": [
                 {"when": {"rule": "R"}, "then": "FAVORABLE"}, {"when": {"rule": "S"}, "then": "ADVERSE"}]}])
    res, sheet = evaluate_pack(p, FactSheet.of({"b": 0}), None, DurableEvaluator())
    d = res.decisions["d"]
    assert d.status == "indeterminate" and d.candidates == ["FAVORABLE", None] and d.missing == ["a"]
    assert "nodefault.d" not in sheet.values
    res, _ = evaluate_pack(p, FactSheet.of({"a": 0, "b": 0}), None, DurableEvaluator())
    assert res.decisions["d"].status == "decided" and res.decisions["d"].value is None


def test_error_in_our_code_while_an_action_is_in_flight():
    """An action interrupted by our own code is abandoned, the session left alone, the error raised."""
    p = pack({"R": {"fact": "a", "gte": 1}, "S": {"fact": "a", "gte": 0}}, pid="inflight")
    session = DurableEvaluator().session(p.plan, p.identity(), {}, "")
    compiled = session.c
    real = compiled.fired_to

    class Exploding(dict):
        def __getitem__(self, key):
            raise LookupError("decoding a firing failed")

    compiled.fired_to = Exploding(real)
    try:
        for _ in range(20):
            with pytest.raises(LookupError, match="decoding a firing failed"):
                run(p, {"a": 2})
    finally:
        compiled.fired_to = real
    assert run(p, {"a": 2}) == {"R": "met", "S": "met"}


def test_one_live_session_per_ruleset_keeps_no_facts():
    """A new session costs in proportion to the ruleset's size, so evaluations share the ruleset's
    live session; every fact is retracted after its drain, so the session stays empty."""
    p = pack({"R": {"fact": "a", "gte": 1}, "T": {"all": [{"rule": "R"}, {"fact": "b", "lt": 3}]}}, pid="live")
    session = DurableEvaluator().session(p.plan, p.identity(), {}, "")
    compiled = session.c
    live = compiled.live
    for i in range(1500):  # beyond the engine's 1,024 sessions per ruleset
        assert run(p, {"a": i % 3, "b": i % 5})["T"] == ("met" if i % 3 and i % 5 < 3 else "not_met")
    assert compiled.live == live
    assert json.loads(durable_adapter._dre.get_facts(compiled.handle, live)) == []


def test_a_fact_seen_before_is_answered_from_what_durable_rules_gave(monkeypatch):
    """The memo: the same stratum fact is asserted once per process, a different one is asserted,
    and the outcomes (met, not met, unknown) are those durable-rules gave."""
    monkeypatch.setattr(durable_adapter, "_MEMO_MAX", 4096)
    p = pack({"R": {"fact": "a", "gte": 1}, "T": {"all": [{"rule": "R"}, {"fact": "b", "lt": 3}]}}, pid="memo")
    sent: list = []
    durable_adapter.capture_asserts(sent)
    try:
        first = [run(p, {"a": 2, "b": 1}), run(p, {"a": 0, "b": 1}), run(p, {"b": 1})]
        n = len(sent)
        again = [run(p, {"a": 2, "b": 1}), run(p, {"a": 0, "b": 1}), run(p, {"b": 1})]
        assert len(sent) == n                     # nothing asserted the second time
        run(p, {"a": 2, "b": 4})
        assert len(sent) > n                      # a value changed: asserted
    finally:
        durable_adapter.capture_asserts(None)
    assert first == again == [{"R": "met", "T": "met"}, {"R": "not_met", "T": "not_met"},
                              {"R": "unknown", "T": "unknown"}]
    assert run(p, {"a": 2, "b": 4}) == {"R": "met", "T": "not_met"}


def test_the_memo_is_bounded(monkeypatch):
    monkeypatch.setattr(durable_adapter, "_MEMO_MAX", 8)
    p = pack({"R": {"fact": "a", "gte": 50}}, pid="memo-bound")
    for i in range(100):
        assert run(p, {"a": i}) == {"R": "met" if i >= 50 else "not_met"}
    compiled = DurableEvaluator().session(p.plan, p.identity(), {}, "").c
    assert 0 < len(compiled.memo) <= 8
