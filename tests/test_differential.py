"""Differential testing: random condition trees and random fact sheets (with missing values)
through durable-rules and the reference evaluator; any disagreement is a bug in one of them."""
from __future__ import annotations

import datetime as dt

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.evaluate.durable_adapter import DurableEvaluator
from engine.evaluate.facts import FactSheet
from engine.evaluate.logic import Outcome
from engine.evaluate.reference import ReferenceEvaluator
from engine.evaluate.run import evaluate_pack
from engine.rules.load import pack_from_data

NUMS = [-1, 0, 0.5, 1, 1.2, 1.5, 1.8, 2, 5, 25, 100]
FACTS = [
    {"name": "a", "type": "number"}, {"name": "b", "type": "number"},
    {"name": "s", "type": "string", "values": ["x", "y", "z"]},
    {"name": "flag", "type": "boolean"}, {"name": "d", "type": "date"}, {"name": "d2", "type": "date"},
]
DATES = [dt.date(2020, 1, 1), dt.date(2020, 1, 8), dt.date(2021, 6, 30)]
PARAMS = [{"name": "lim", "value": 1.5, "source": "test"}, {"name": "mode", "value": "x", "choices": ["x", "y"], "source": "test"}]

num_fact = st.sampled_from(["a", "b"])
number = st.sampled_from(NUMS)
operand = st.one_of(number, st.just({"param": "lim"}),
                    st.builds(lambda f, t: {"fact": f, "times": t}, num_fact, st.sampled_from([1, 1.5, {"param": "lim"}])))
op = st.sampled_from(["eq", "ne", "lt", "lte", "gt", "gte"])
leaf = st.one_of(
    st.builds(lambda f, o, v: {"fact": f, o: v}, num_fact, op, operand),
    st.builds(lambda f, lo, hi: {"fact": f, "between": sorted([lo, hi])}, num_fact, number, number),
    st.builds(lambda o, v: {"fact": "s", o: v}, st.sampled_from(["eq", "ne"]), st.sampled_from(["x", "y", "z"])),
    st.builds(lambda vs: {"fact": "s", "in": vs}, st.lists(st.sampled_from(["x", "y", "z"]), min_size=1, max_size=3)),
    st.builds(lambda v: {"fact": "flag", "eq": v}, st.booleans()),
    st.builds(lambda o, v: {"fact": "d", o: v}, op, st.sampled_from(DATES)),
    st.builds(lambda o: {"fact": "d", o: {"fact": "d2"}}, op),
    st.builds(lambda f, k: {"fact": f, k: True}, st.sampled_from(["a", "s", "flag", "d"]), st.sampled_from(["exists", "missing"])),
    st.builds(lambda v: {"param": "mode", "eq": v}, st.sampled_from(["x", "y"])),
)
tree = st.recursive(leaf, lambda kids: st.one_of(
    st.builds(lambda xs: {"all": xs}, st.lists(kids, min_size=1, max_size=4)),
    st.builds(lambda xs: {"any": xs}, st.lists(kids, min_size=1, max_size=4)),
    st.builds(lambda x: {"not": x}, kids)), max_leaves=10)


def maybe(strategy):
    return st.one_of(st.none(), strategy)


sheet = st.fixed_dictionaries({
    "a": maybe(number), "b": maybe(number), "s": maybe(st.sampled_from(["x", "y", "z"])),
    "flag": maybe(st.booleans()), "d": maybe(st.sampled_from(DATES)), "d2": maybe(st.sampled_from(DATES)),
})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conds=st.lists(tree, min_size=1, max_size=3), facts=sheet, mode=st.sampled_from(["x", "y"]),
       ref_tree=st.booleans())
def test_durable_agrees_with_reference(conds, facts, mode, ref_tree):
    rules = [{"id": f"R{i}", "title": "r", "source": {"citation": "c", "text": "t"}, "when": c}
             for i, c in enumerate(conds)]
    if ref_tree and len(rules) > 1:  # a rule over earlier rules' outcomes: a later stratum
        rules.append({"id": "TOP", "title": "r", "source": {"citation": "c", "text": "t"},
                      "when": {"any": [{"rule": "R0"}, {"not": {"rule": "R1"}}]}})
    pack = pack_from_data({"id": "diff", "version": "1.0.0", "effective": "2026-01-01", "title": "t",
                           "source": "s", "facts": FACTS, "parameters": PARAMS, "rules": rules,
                           "decisions": [{"id": "dec", "hit_policy": "first",
                                          "rows": [{"when": {"rule": r["id"]}, "then": r["id"]} for r in rules],
                                          "default": "NONE"}]})
    fs = FactSheet.of(facts)
    got, _ = evaluate_pack(pack, fs, {"mode": mode}, DurableEvaluator())
    ref, _ = evaluate_pack(pack, fs, {"mode": mode}, ReferenceEvaluator())
    for rid in got.rules:
        assert got.rules[rid].outcome == ref.rules[rid].outcome, (rid, got.rules[rid], ref.rules[rid])
        assert got.rules[rid].missing == ref.rules[rid].missing
        if got.rules[rid].outcome is Outcome.UNKNOWN:
            assert got.rules[rid].missing, "an unknown outcome must name the missing facts"
            assert set(got.rules[rid].missing) <= {k for k, v in facts.items() if v is None}
    assert got.decisions["dec"].to_dict() == ref.decisions["dec"].to_dict()


@settings(max_examples=100, deadline=None)
@given(conds=st.lists(tree, min_size=1, max_size=2), facts=sheet)
def test_kleene_monotonicity(conds, facts):
    """Filling in a missing fact never flips a decided outcome (three-valued logic is monotone)."""
    rules = [{"id": f"R{i}", "title": "r", "source": {"citation": "c", "text": "t"}, "when": c} for i, c in enumerate(conds)]
    pack = pack_from_data({"id": "mono", "version": "1.0.0", "effective": "2026-01-01", "title": "t",
                           "source": "s", "facts": FACTS, "parameters": PARAMS, "rules": rules})
    partial = {k: v for k, v in facts.items() if k not in ("a", "s")}
    # exists/missing legitimately change when a fact appears; only test trees without them
    text = repr(conds)
    if "exists" in text or "missing" in text:
        return
    before, _ = evaluate_pack(pack, FactSheet.of(partial), None, ReferenceEvaluator())
    after, _ = evaluate_pack(pack, FactSheet.of(facts), None, ReferenceEvaluator())
    for rid, r in before.rules.items():
        if r.outcome is not Outcome.UNKNOWN:
            assert after.rules[rid].outcome is r.outcome
