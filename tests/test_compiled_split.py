"""Decision tables split by the fact their rows test first (engine.evaluate.compiled, a batch
mechanism): when that fact holds a text, the rows that test it for another text are refuted
without being evaluated, and only the others run. Both sides: the split taken (a text the rows
test, a text no row tests) and the fallback to the whole table (the fact absent, unknown, or not
a text), each giving exactly the outcomes of the reference evaluator and durable-rules; random
tables (hypothesis) with every hit policy."""
from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import AdjudicatorError
from engine.evaluate.compiled import CompiledEvaluator, compiled_plan, first_test
from engine.evaluate.durable_adapter import DurableEvaluator
from engine.evaluate.facts import FactSheet
from engine.evaluate.logic import Outcome
from engine.evaluate.reference import ReferenceEvaluator
from engine.evaluate.run import evaluate_pack, resolve_params
from engine.rules.load import load_registry, pack_from_data
from engine.rules.model import AllOf, Compare
from test_differential import DATES, NUMS, PARAMS, tree

COMPILED, DURABLE, REFERENCE = CompiledEvaluator(), DurableEvaluator(), ReferenceEvaluator()

FACTS = [
    {"name": "a", "type": "number"}, {"name": "b", "type": "number"},
    {"name": "s", "type": "string", "values": ["x", "y", "z"]},
    {"name": "t", "type": "string", "values": ["x", "y", "z"]},
    {"name": "flag", "type": "boolean"}, {"name": "d", "type": "date"}, {"name": "d2", "type": "date"},
]


def _same(got, want) -> None:
    """The same outcome for every rule and row, the same decisions, trace and facts."""
    assert {k: r.outcome for k, r in got.rules.items()} == {k: r.outcome for k, r in want.rules.items()}
    assert {k: r.missing for k, r in got.rules.items()} == {k: r.missing for k, r in want.rules.items()}
    assert set(got.rows) == set(want.rows)
    for key, r in got.rows.items():
        assert r.outcome is want.rows[key].outcome, key
        if r.outcome is Outcome.NOT_MET:
            assert r.inputs == {} and r.missing == []
    assert {k: d.to_dict() for k, d in got.decisions.items()} == {k: d.to_dict() for k, d in want.decisions.items()}
    assert got.trace() == want.trace()
    assert (got.sheet.values, got.sheet.unknown, got.sheet.missing_because) == (
        want.sheet.values, want.sheet.unknown, want.sheet.missing_because)


# --- the guard -------------------------------------------------------------------------------------

def _cond(data):
    return pack_from_data({"id": "g", "version": "1.0.0", "effective": "2026-01-01", "title": "t", "source": "s",
                           "facts": FACTS, "parameters": PARAMS,
                           "rules": [{"id": "R", "title": "r", "source": {"citation": "c", "text": "t"},
                                      "when": data}]}).manifest.rules[0].when


def test_the_first_test_is_the_condition_or_the_first_part_of_an_all_at_any_depth():
    assert first_test(_cond({"fact": "s", "eq": "x"}), {}) == ("s", "x")
    assert first_test(_cond({"all": [{"fact": "s", "eq": "y"}, {"fact": "a", "lt": 1}]}), {}) == ("s", "y")
    assert first_test(_cond({"all": [{"all": [{"fact": "t", "eq": "z"}, {"fact": "a", "lt": 1}]},
                                     {"fact": "b", "gt": 2}]}), {}) == ("t", "z")
    # not a guard: another part first (it is evaluated first and may decide or raise), another
    # operator, a number, a parameter, a fact against a fact, an `any`, a `not`
    for data in ({"all": [{"fact": "a", "lt": 1}, {"fact": "s", "eq": "x"}]}, {"fact": "s", "ne": "x"},
                 {"fact": "s", "in": ["x"]}, {"fact": "a", "eq": 1}, {"param": "mode", "eq": "x"},
                 {"fact": "d", "eq": {"fact": "d2"}}, {"any": [{"fact": "s", "eq": "x"}]},
                 {"not": {"fact": "s", "eq": "x"}}):
        assert first_test(_cond(data), {}) is None, data


def _table(rows, policy="first", default="NONE", rules=()):
    return pack_from_data({"id": "split", "version": "1.0.0", "effective": "2026-01-01", "title": "t",
                           "source": "s", "facts": FACTS, "parameters": PARAMS, "rules": list(rules),
                           "decisions": [{"id": "dec", "hit_policy": policy, "default": default,
                                          "rows": [{"when": w, "then": f"row{j}"} for j, w in enumerate(rows)]}]})


ROWS = [{"fact": "s", "missing": True},
        {"all": [{"fact": "s", "eq": "x"}, {"fact": "a", "lt": 1}]},
        {"all": [{"fact": "s", "eq": "x"}, {"fact": "a", "lt": 2}]},
        {"all": [{"fact": "s", "eq": "y"}, {"fact": "a", "gt": 5}]},
        {"all": [{"fact": "s", "eq": "y"}, {"fact": "b", "gt": 5}]},
        {"fact": "b", "eq": 7}]


def _split_of(pack, sheet):
    compiled = compiled_plan(pack.plan, pack.plan_identity("main"), resolve_params(pack))
    return compiled, compiled.split(0, sheet.values)


def test_a_text_the_rows_test_refutes_the_other_texts_rows_unevaluated():
    pack = _table(ROWS)
    sheet = FactSheet.of({"s": "x", "a": Decimal("1.5")})
    compiled, sp = _split_of(pack, sheet)
    assert compiled.split_facts[0] == (("s", frozenset({"x", "y"})),)
    assert sp is not None and sp.refuted == ("dec#3", "dec#4")
    assert [ev.key for ev in sp.visit] == ["dec#0", "dec#1", "dec#2", "dec#5"]   # plan order kept
    assert sp.kept == {"dec": (0, 1, 2, 5)}
    got, _ = evaluate_pack(pack, sheet, None, COMPILED)
    assert got.decisions["dec"].value == "row2" and got.decisions["dec"].rows_met == [2]
    for want in (evaluate_pack(pack, sheet, None, REFERENCE)[0], evaluate_pack(pack, sheet, None, DURABLE)[0]):
        _same(got, want)


def test_a_text_no_row_tests_refutes_every_guarded_row():
    pack = _table(ROWS)
    sheet = FactSheet.of({"s": "w", "b": Decimal(7)})
    _, sp = _split_of(pack, sheet)
    assert sp is not None and sp.refuted == ("dec#1", "dec#2", "dec#3", "dec#4")
    got, _ = evaluate_pack(pack, sheet, None, COMPILED)
    assert got.decisions["dec"].value == "row5"
    _same(got, evaluate_pack(pack, sheet, None, REFERENCE)[0])


@pytest.mark.parametrize("how", ["absent", "unknown", "a number", "a boolean"])
def test_the_whole_table_runs_when_the_split_fact_is_not_a_known_text(how):
    pack = _table(ROWS)
    sheet = FactSheet.of({"a": Decimal("0.5"), "b": Decimal(9)})
    if how == "unknown":
        sheet.mark_unknown("s", ["s.source"])
    elif how == "a number":
        sheet.values["s"] = Decimal(1)
    elif how == "a boolean":
        sheet.values["s"] = True
    _, sp = _split_of(pack, sheet)
    assert sp is None
    got, _ = evaluate_pack(pack, sheet, None, COMPILED)
    want, _ = evaluate_pack(pack, sheet, None, REFERENCE)
    _same(got, want)
    if how == "unknown":   # the guarded rows stay open: the decision is undecided and names s
        assert got.decisions["dec"].status == "indeterminate" and "s.source" in got.decisions["dec"].missing


def test_a_refuted_row_is_not_evaluated_so_its_later_error_is_not_reached():
    """`all` stops at its first false part: a row whose guard is false never reaches an ordering
    error in a later part, with or without the split; with its guard true, both raise."""
    pack = _table([{"all": [{"fact": "s", "eq": "x"}, {"fact": "d", "gt": 1}]},
                   {"all": [{"fact": "s", "eq": "y"}, {"fact": "a", "lt": 1}]}])
    sheet = FactSheet.of({"s": "y", "a": Decimal(0), "d": DATES[0]})
    got, _ = evaluate_pack(pack, sheet, None, COMPILED)
    _same(got, evaluate_pack(pack, sheet, None, REFERENCE)[0])
    sheet.values["s"] = "x"
    for ev in (COMPILED, REFERENCE):
        with pytest.raises(AdjudicatorError, match="cannot order"):
            evaluate_pack(pack, sheet, None, ev)


def test_rules_and_tables_without_a_common_first_text_are_not_split():
    one_text = _table([{"all": [{"fact": "s", "eq": "x"}, {"fact": "a", "lt": 1}]}, {"fact": "s", "eq": "x"}])
    rule_only = _table([{"fact": "a", "lt": 1}], rules=[{"id": "R", "title": "r", "source": {"citation": "c", "text": "t"},
                                                          "when": {"fact": "s", "eq": "x"}}])
    for pack in (one_text, rule_only):
        compiled, sp = _split_of(pack, FactSheet.of({"s": "y"}))
        assert compiled.split_facts == [()] * len(pack.plan.strata) and sp is None


def test_the_ctcae_grade_table_is_split_by_its_term():
    reg = load_registry(None)
    pack = reg.get(reg.trial().ctcae_pack(reg.trial().grading_version))
    k = next(i for i, s in enumerate(pack.plan.strata) if any(ev.decision == "grade" for ev in s))
    compiled = compiled_plan(pack.plan, pack.plan_identity("main"), resolve_params(pack))
    (fact, texts), = compiled.split_facts[k]
    term = sorted(texts)[0]
    sheet = FactSheet.of({fact: term, "lab.value": Decimal("0.1"), "lab.unit": "10^9/L", "lab.lln": Decimal(1)})
    sp = compiled.split(k, sheet.values)
    rows = [ev for ev in pack.plan.strata[k] if ev.decision == "grade"]
    assert sp is not None and len(sp.refuted) > 0.8 * len(rows)
    assert all(first_test(ev.cond, resolve_params(pack)) in (None, (fact, term)) for ev in sp.visit if ev.decision)
    got, _ = evaluate_pack(pack, sheet, None, COMPILED)
    _same(got, evaluate_pack(pack, sheet, None, DURABLE)[0])


# --- random tables ---------------------------------------------------------------------------------

texts = st.sampled_from(["x", "y", "z"])
guarded = st.builds(lambda f, v, rest: {"all": [{"fact": f, "eq": v}, *rest]}, st.sampled_from(["s", "t"]), texts,
                    st.lists(tree, max_size=2))
row = st.one_of(guarded, guarded, guarded, tree)
split_value = st.one_of(st.none(), st.sampled_from(["x", "y", "z", "w", "unknown", "number"]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(row, min_size=2, max_size=8), policy=st.sampled_from(["first", "unique", "collect"]),
       s=split_value, t=split_value, a=st.one_of(st.none(), st.sampled_from(NUMS)),
       b=st.one_of(st.none(), st.sampled_from(NUMS)), d=st.one_of(st.none(), st.sampled_from(DATES)),
       later=st.booleans())
def test_random_split_tables_decide_as_the_reference_evaluator(rows, policy, s, t, a, b, d, later):
    """Random tables whose rows mostly test `s` or `t` first, on texts the rows test, a text none
    tests, an absent, unknown or non-text value: the compiled batch decides every row and the
    table as the reference evaluator (an error, e.g. two met rows of a unique table, as it too)."""
    rules = []
    if later:   # a row over a rule's outcome: the table's rows span two strata
        rules = [{"id": "R", "title": "r", "source": {"citation": "c", "text": "t"}, "when": {"fact": "a", "lt": 1}}]
        rows = rows + [{"all": [{"fact": "s", "eq": "x"}, {"rule": "R"}]}]
    pack = _table(rows, policy, None if policy == "collect" else "NONE", rules)
    sheet = FactSheet.of({k: v for k, v in {"a": a, "b": b, "d": d}.items() if v is not None})
    for name, v in (("s", s), ("t", t)):
        if v == "unknown":
            sheet.mark_unknown(name, [name + ".source"])
        elif v == "number":
            sheet.values[name] = Decimal(1)
        elif v is not None:
            sheet.values[name] = v
    out = []
    for ev in (COMPILED, REFERENCE):
        try:
            out.append(evaluate_pack(pack, sheet, {"mode": "x"}, ev)[0])
        except AdjudicatorError as exc:
            out.append((type(exc), str(exc)))
    if isinstance(out[0], tuple) or isinstance(out[1], tuple):
        assert out[0] == out[1]
    else:
        _same(out[0], out[1])


def test_the_split_is_per_stratum_and_the_guard_of_a_later_row_is_its_own():
    """A table's rows in two strata (a row reads a rule): each stratum refutes only its own rows,
    and the decision (after its last row) sees every row's outcome."""
    rules = [{"id": "R", "title": "r", "source": {"citation": "c", "text": "t"}, "when": {"fact": "a", "lt": 1}}]
    pack = _table(ROWS + [{"all": [{"fact": "s", "eq": "y"}, {"rule": "R"}]}], rules=rules)
    assert len(pack.plan.strata) == 2
    sheet = FactSheet.of({"s": "y", "a": Decimal("0.5"), "b": Decimal(0)})
    compiled = compiled_plan(pack.plan, pack.plan_identity("main"), resolve_params(pack))
    assert compiled.split(0, sheet.values).refuted == ("dec#1", "dec#2")
    assert compiled.split(0, sheet.values).kept == {}   # the table's last row is in stratum 1
    assert compiled.split(1, sheet.values) is None      # nothing to refute there
    got, _ = evaluate_pack(pack, sheet, None, COMPILED)
    assert got.decisions["dec"].value == "row6"
    _same(got, evaluate_pack(pack, sheet, None, REFERENCE)[0])


def test_splits_built_by_threads_at_once_are_each_their_own():
    """Threads (an in-process Dask worker) building a plan's splits at the same moment: each
    split's function evaluates its own rows."""
    import threading
    texts = [f"t{i}" for i in range(12)]
    facts = FACTS[:2] + [{"name": "s", "type": "string", "values": texts}]
    pack = pack_from_data({"id": "threads", "version": "1.0.0", "effective": "2026-01-01", "title": "t",
                           "source": "s", "facts": facts,
                           "decisions": [{"id": "dec", "hit_policy": "first", "default": "NONE",
                                          "rows": [{"when": {"all": [{"fact": "s", "eq": t}, {"fact": "a", "lt": j}]},
                                                    "then": t} for j, t in enumerate(texts)]}]})
    start, problems = threading.Barrier(len(texts)), []

    def one(t):
        sheet = FactSheet.of({"s": t, "a": Decimal(-1)})
        start.wait()
        got = evaluate_pack(pack, sheet, None, COMPILED)[0].decisions["dec"].value
        if got != t:
            problems.append((t, got))
    threads = [threading.Thread(target=one, args=(t,)) for t in texts]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert problems == []
