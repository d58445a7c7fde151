"""The temporal constructs of the rule language (collections, aggregates, at_least, unknown vs
absent facts, the course fold): differential tests (durable-rules vs the reference evaluator) on
random timelines, three-valued soundness (filling in a missing value never flips a decided answer),
fold properties, and the load-time refusals."""
from __future__ import annotations

import datetime as dt
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import PackError
from engine.evaluate.course import run_course
from engine.evaluate.durable_adapter import DurableEvaluator
from engine.evaluate.events import Event, Timeline
from engine.evaluate.facts import FactSheet
from engine.evaluate.logic import Outcome
from engine.evaluate.reference import ReferenceEvaluator
from engine.evaluate.run import evaluate_pack
from engine.rules.load import pack_from_data

S = {"citation": "test", "text": "test"}
D0 = dt.date(2022, 1, 1)
DUR, REF = DurableEvaluator(), ReferenceEvaluator()


def rule(rid, when):
    return {"id": rid, "title": rid, "source": S, "when": when}


def pack(body):
    return pack_from_data({"id": "t", "version": "1.0.0", "effective": "2026-01-01", "title": "t", "source": "s", **body})


SAMPLE = {"kind": "sample", "fields": [{"name": "x", "type": "number"}, {"name": "pos", "type": "boolean"},
                                      {"name": "tag", "type": "string", "values": ["a", "b"]}]}
AGGREGATES = [
    {"name": "n", "count": True},
    {"name": "n_pos", "count": {"fact": "pos", "eq": True}},
    {"name": "two_pos", "count": {"fact": "pos", "eq": True}, "gte": 2},
    {"name": "few", "count": True, "lt": {"param": "k"}},
    {"name": "any_big", "any": {"fact": "x", "gt": {"param": "lim"}}},
    {"name": "all_a", "all": {"fact": "tag", "eq": "a"}},
    {"name": "no_pos", "none": {"fact": "pos", "eq": True}},
    {"name": "first_x", "first": "x"},
    {"name": "last_date", "last": "event.date"},
    {"name": "min_x", "min": "x"},
    {"name": "max_date", "max": "event.date"},
    {"name": "span", "span_days": True},
    {"name": "span7", "span_days": True, "gte": 7},
    {"name": "run_latest", "consecutive": {"fact": "pos", "eq": True}, "run": "latest"},
    {"name": "run2", "consecutive": {"fact": "pos", "eq": True}, "run": "longest", "gte": 2},
    {"name": "top_tag", "at_max": "x", "take": "tag"},
]
NAMES = [a["name"] for a in AGGREGATES]


def collection_pack(where, window):
    c = {"id": "c", "title": "c", "events": ["sample"], "facts": AGGREGATES}
    if where is not None:
        c["where"] = where
    if window is not None:
        c["window"] = window
    return pack({"facts": [{"name": "anchor", "type": "date"}, {"name": "lim", "type": "number"}],
                 "parameters": [{"name": "k", "value": 3, "source": "s"}, {"name": "lim", "value": 2, "source": "s"}],
                 "events": [SAMPLE], "collections": [c],
                 "rules": [rule("R-TWO", {"at_least": 2, "of": [{"fact": "two_pos", "eq": True},
                                                                {"fact": "any_big", "eq": True},
                                                                {"fact": "span7", "eq": True}]}),
                           rule("R-EX", {"fact": "first_x", "exists": True})]})


maybe = lambda s: st.one_of(st.none(), s)  # noqa: E731
event = st.fixed_dictionaries({"day": st.integers(0, 30), "x": maybe(st.sampled_from([0, 1, 2, 3, 5])),
                               "pos": maybe(st.booleans()), "tag": maybe(st.sampled_from(["a", "b"]))})
wheres = st.sampled_from([None, {"fact": "pos", "eq": True}, {"fact": "x", "gte": 1},
                          {"any": [{"fact": "tag", "eq": "b"}, {"fact": "x", "gt": {"fact": "lim"}}]}])
windows = st.sampled_from([None, {"after": "anchor"}, {"on_or_before": {"fact": "anchor", "days": 10}},
                           {"on_or_after": "anchor", "before": {"fact": "anchor", "days": 20}}])


def timeline(evs, incomplete=False):
    out = [Event.of("sample", D0 + dt.timedelta(days=e["day"]), f"E{i}",
                    {k: e[k] for k in ("x", "pos", "tag") if e[k] is not None}) for i, e in enumerate(evs)]
    return Timeline(out, {"sample": "events.sample.complete"} if incomplete else {})


def facts_of(sheet):
    return {n: (sheet.values[n] if n in sheet.values else "?" if n in sheet.unknown else "-") for n in NAMES}


_PACKS: dict = {}


def _pack(where, window):
    key = (repr(where), repr(window))
    if key not in _PACKS:
        _PACKS[key] = collection_pack(where, window)
    return _PACKS[key]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(evs=st.lists(event, max_size=6), where=wheres, window=windows, anchor=maybe(st.integers(0, 30)),
       lim=maybe(st.sampled_from([1, 2, 3])), incomplete=st.booleans())
def test_collections_durable_agrees_with_reference(evs, where, window, anchor, lim, incomplete):
    p = _pack(where, window)
    given_facts = {}
    if anchor is not None:
        given_facts["anchor"] = D0 + dt.timedelta(days=anchor)
    if lim is not None:
        given_facts["lim"] = lim
    tl = timeline(evs, incomplete)
    got, gs = evaluate_pack(p, FactSheet.of(given_facts), None, DUR, tl)
    ref, rs = evaluate_pack(p, FactSheet.of(given_facts), None, REF, tl)
    assert facts_of(gs) == facts_of(rs)
    for rid in got.rules:
        assert got.rules[rid].outcome is ref.rules[rid].outcome
        assert got.rules[rid].missing == ref.rules[rid].missing
    for n in NAMES:   # an unknown aggregate names what would decide it
        if n in gs.unknown:
            assert gs.missing_roots(n)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(evs=st.lists(event, max_size=6), where=wheres, window=windows, anchor=st.integers(0, 30),
       fill=st.data())
def test_filling_in_a_missing_value_never_flips_a_decided_aggregate(evs, where, window, anchor, fill):
    """Three-valued soundness: every decided aggregate already holds for every completion. (An
    absent value - no member, or the member's field not recorded - may gain a value, as a base
    fact that is not recorded may.)"""
    p = _pack(where, window)
    base = {"anchor": D0 + dt.timedelta(days=anchor), "lim": 2}
    before = facts_of(evaluate_pack(p, FactSheet.of(base), None, REF, timeline(evs))[1])
    filled = [{k: (v if v is not None or k == "day" else fill.draw(
        st.sampled_from({"x": [0, 1, 2, 3, 5], "pos": [True, False], "tag": ["a", "b"]}[k]))) for k, v in e.items()}
        for e in evs]
    after = facts_of(evaluate_pack(p, FactSheet.of(base), None, REF, timeline(filled))[1])
    for n in NAMES:
        if before[n] not in ("?", "-"):
            assert after[n] == before[n], (n, before[n], after[n])


def test_incomplete_listing_keeps_reached_counts_decided_and_the_rest_unknown():
    p = _pack(None, None)
    evs = [{"day": 1, "x": 3, "pos": True, "tag": "a"}, {"day": 9, "x": 1, "pos": True, "tag": "a"}]
    _, s = evaluate_pack(p, FactSheet.of({"lim": 2}), None, REF, timeline(evs, incomplete=True))
    f = facts_of(s)
    assert f["two_pos"] is True and f["any_big"] is True and f["span7"] is True   # reached: decided
    assert f["n"] == "?" and f["no_pos"] is False and f["all_a"] == "?" and f["last_date"] == "?"
    assert s.missing_roots("n") == ["events.sample.complete"]
    _, s = evaluate_pack(p, FactSheet.of({"lim": 2}), None, REF, timeline(evs))
    f = facts_of(s)
    assert f["n"] == 2 and f["all_a"] is True and f["first_x"] == 3 and f["min_x"] == 1
    assert f["span"] == 8 and f["run_latest"] == 2 and f["top_tag"] == "a"


def test_empty_collection_is_decidedly_empty():
    p = _pack(None, None)
    res, s = evaluate_pack(p, FactSheet.of({"lim": 2}), None, DUR, timeline([]))
    f = facts_of(s)
    assert f["n"] == 0 and f["two_pos"] is False and f["no_pos"] is True and f["all_a"] is True
    assert f["first_x"] == "-" and f["top_tag"] == "-"   # no member: absent, not unknown
    assert res.rules["R-EX"].outcome is Outcome.NOT_MET   # exists on an absent aggregate: decided


def test_window_on_an_unknown_anchor_is_unknown_and_names_it():
    p = _pack(None, {"after": "anchor"})
    _, s = evaluate_pack(p, FactSheet.of({"lim": 2}), None, REF, timeline([{"day": 3, "x": 1, "pos": True, "tag": "a"}]))
    assert facts_of(s)["n"] == "?" and s.missing_roots("n") == ["anchor"]


def test_an_unknown_element_field_is_named_by_event_id():
    p = _pack({"fact": "pos", "eq": True}, None)
    _, s = evaluate_pack(p, FactSheet.of({"lim": 2}), None, DUR,
                         timeline([{"day": 3, "x": 1, "pos": None, "tag": "a"}]))
    assert facts_of(s)["n"] == "?" and s.missing_roots("n") == ["E0:pos"]


# --- at_least and exists on computed facts ----------------------------------------------------------

leaf = st.sampled_from([{"fact": "a", "gt": 1}, {"fact": "b", "eq": True}, {"fact": "c", "exists": True},
                        {"fact": "t.d.out", "exists": True}, {"fact": "t.d.out", "eq": "X"}, {"fact": "a", "lte": 0}])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(k=st.integers(1, 4), parts=st.lists(leaf, min_size=4, max_size=4),
       a=maybe(st.sampled_from([0, 1, 2])), b=maybe(st.booleans()), c=maybe(st.just(1)),
       gate=maybe(st.booleans()))
def test_at_least_and_exists_durable_agrees_with_reference(k, parts, a, b, c, gate):
    """`t.d.out` is a decision output: absent when decided null, unknown when undecided."""
    p = pack({"facts": [{"name": "a", "type": "number"}, {"name": "b", "type": "boolean"},
                        {"name": "c", "type": "number"}, {"name": "g", "type": "boolean"}],
              "rules": [rule("G", {"fact": "g", "eq": True}),
                        rule("K", {"at_least": k, "of": parts})],
              "decisions": [{"id": "d", "hit_policy": "first", "rows": [{"when": {"rule": "G"}, "then": {"out": "X"}}],
                             "default": {"out": None}}]})
    facts = {n: v for n, v in {"a": a, "b": b, "c": c, "g": gate}.items() if v is not None}
    got, _ = evaluate_pack(p, FactSheet.of(facts), None, DUR)
    ref, _ = evaluate_pack(p, FactSheet.of(facts), None, REF)
    assert got.rules["K"].outcome is ref.rules["K"].outcome
    assert got.rules["K"].missing == ref.rules["K"].missing


def test_exists_is_unknown_for_an_undecided_output_and_false_for_a_decided_null():
    p = pack({"facts": [{"name": "g", "type": "boolean"}],
              "rules": [rule("G", {"fact": "g", "eq": True}), rule("E", {"fact": "t.d.out", "exists": True})],
              "decisions": [{"id": "d", "hit_policy": "first", "rows": [{"when": {"rule": "G"}, "then": {"out": "X"}}],
                             "default": {"out": None}}]})
    for ev in (DUR, REF):
        assert evaluate_pack(p, FactSheet.of({}), None, ev)[0].rules["E"].outcome is Outcome.UNKNOWN
        assert evaluate_pack(p, FactSheet.of({"g": False}), None, ev)[0].rules["E"].outcome is Outcome.NOT_MET
        assert evaluate_pack(p, FactSheet.of({"g": True}), None, ev)[0].rules["E"].outcome is Outcome.MET


def test_at_least_two_of_four_both_sides():
    p = pack({"facts": [{"name": f, "type": "number"} for f in "wxyz"],
              "rules": [rule("TWO", {"at_least": 2, "of": [{"fact": f, "gte": 1} for f in "wxyz"]})]})
    cases = [({"w": 1, "x": 1}, Outcome.MET), ({"w": 1, "x": 0, "y": 0, "z": 0}, Outcome.NOT_MET),
             ({"w": 1, "x": 0, "y": 0}, Outcome.UNKNOWN), ({"w": 0, "x": 0, "y": 0}, Outcome.NOT_MET)]
    for facts, want in cases:
        for ev in (DUR, REF):
            assert evaluate_pack(p, FactSheet.of(facts), None, ev)[0].rules["TWO"].outcome is want, (facts, ev.name)


def test_decision_output_copied_from_a_fact():
    p = pack({"facts": [{"name": "when", "type": "date"}, {"name": "g", "type": "boolean"}],
              "rules": [rule("G", {"fact": "g", "eq": True})],
              "decisions": [{"id": "d", "hit_policy": "first",
                             "rows": [{"when": {"rule": "G"}, "then": {"event": True, "date": {"fact": "when"}}}],
                             "default": {"event": False, "date": None}}]})
    for ev in (DUR, REF):
        r, s = evaluate_pack(p, FactSheet.of({"g": True, "when": D0}), None, ev)
        assert r.decisions["d"].value == {"event": True, "date": D0} and s.values["t.d.date"] == D0
        assert r.decisions["d"].to_dict()["value"] == {"event": True, "date": "2022-01-01"}
        r, s = evaluate_pack(p, FactSheet.of({"g": True}), None, ev)   # not recorded: null
        assert r.decisions["d"].value == {"event": True, "date": None}


# --- the course fold ------------------------------------------------------------------------------

def course_pack():
    """A blood-relapse confirmation in miniature: after a remission, a first sample with blasts
    opens a pending relapse; a second one at least 7 days later confirms it (dated at the first);
    a sample without blasts refutes it."""
    return pack({
        "facts": [{"name": "subject.start", "type": "date"}],
        "parameters": [{"name": "span", "value": 7, "source": "s"}],
        "events": [{"kind": "visit", "fields": [{"name": "blasts", "type": "number"}]}],
        "collections": [{"id": "pos", "title": "positive samples since the remission", "events": ["visit"],
                         "where": {"fact": "blasts", "gt": 0},
                         "window": {"after": "state.remission", "on_or_before": "item.date"},
                         "facts": [{"name": "pos.confirmed", "span_days": True, "gte": {"param": "span"}}]}],
        "rules": [rule("REMISSION", {"fact": "blasts", "eq": 0}),
                  rule("BLASTS", {"all": [{"fact": "state.remission", "exists": True}, {"fact": "blasts", "gt": 0}]}),
                  rule("CONFIRMED", {"all": [{"rule": "BLASTS"}, {"fact": "pos.confirmed", "eq": True}]})],
        "decisions": [{"id": "r", "hit_policy": "first", "rows": [
            {"when": {"rule": "CONFIRMED"}, "then": {"category": "RELAPSE"}},
            {"when": {"rule": "BLASTS"}, "then": {"category": "PENDING"}},
            {"when": {"rule": "REMISSION"}, "then": {"category": "CR"}}], "default": {"category": "NR"}}],
        "course": {
            "items": {"events": ["visit"], "window": {"on_or_after": "subject.start"}},
            "state": [{"name": "remission", "type": "date"}, {"name": "pending", "type": "pending"},
                      {"name": "relapse", "type": "date", "output": True},
                      {"name": "in_cr", "type": "boolean", "initial": False}],
            "transitions": [
                {"id": "T-CONFIRM", "title": "confirmed", "source": S, "when": {"fact": "t.r.category", "eq": "RELAPSE"},
                 "set": {"relapse": {"fact": "state.pending"}, "pending": {"close": "confirmed"}, "remission": None}},
                {"id": "T-OPEN", "title": "first sample", "source": S, "when": {"fact": "t.r.category", "eq": "PENDING"},
                 "set": {"pending": {"open": "a sample with blasts at least 7 days later"}}},
                {"id": "T-CR", "title": "remission", "source": S,
                 "when": {"all": [{"fact": "t.r.category", "eq": "CR"}, {"fact": "state.remission", "missing": True}]},
                 "set": {"remission": {"fact": "item.date"}}},
                {"id": "T-REFUTE", "title": "refuted", "source": S,
                 "when": {"all": [{"fact": "t.r.category", "eq": "CR"}, {"fact": "state.pending", "exists": True}]},
                 "set": {"pending": {"close": "refuted"}}},
                {"id": "T-IN-CR", "title": "in CR follows the remission date", "source": S,
                 "when": {"fact": "new.remission", "exists": True}, "set": {"in_cr": True}},
                {"id": "T-OUT", "title": "out of CR", "source": S,
                 "when": {"fact": "new.remission", "missing": True}, "set": {"in_cr": False}},
            ],
            "collections": [{"id": "results", "title": "items", "events": ["result"],
                             "facts": [{"name": "n_cr", "count": {"fact": "t.r.category", "eq": "CR"}}]}],
            "decisions": [{"id": "efs", "hit_policy": "first", "rows": [
                {"when": {"fact": "state.relapse", "exists": True}, "then": {"event": True, "date": {"fact": "state.relapse"}}},
                {"when": {"fact": "state.pending", "exists": True}, "then": {"event": None, "date": None}}],
                "default": {"event": False, "date": None}}]}})


def visits(*days_blasts):
    return Timeline([Event.of("visit", D0 + dt.timedelta(days=d), f"V{d}", {"blasts": b} if b is not None else {})
                     for d, b in days_blasts])


def test_pending_relapse_confirmed_by_a_later_sample_is_dated_at_the_first():
    p = course_pack()
    for ev in (DUR, REF):
        c = run_course(p, FactSheet.of({"subject.start": D0}), visits((1, 0), (30, 3), (40, 2)), None, ev)
        cats = [i.result.decisions["r"].value["category"] for i in c.items]
        assert cats == ["CR", "PENDING", "RELAPSE"]
        assert c.items[1].pending()["pending"]["resolves"].startswith("a sample with blasts")
        assert c.items[2].resolved == [{"variable": "pending", "as": "confirmed", "by": "V40", "transition": "T-CONFIRM",
                                        "opened_by": "V30", "since": "2022-01-31"}]
        assert c.outputs(p)["relapse"] == "2022-01-31"
        assert c.outputs()["efs"] == {"event": True, "date": "2022-01-31"}
        assert [i.state["in_cr"].value for i in c.items] == [True, True, False]   # reads new.remission


def test_pending_relapse_refuted_by_a_clean_sample_and_the_sample_before_the_remission_does_not_count():
    p = course_pack()
    for ev in (DUR, REF):
        c = run_course(p, FactSheet.of({"subject.start": D0}), visits((1, 4), (5, 0), (12, 2), (20, 0)), None, ev)
        cats = [i.result.decisions["r"].value["category"] for i in c.items]
        # the day-1 sample (before the remission) is not counted with day 12: not confirmed
        assert cats == ["NR", "CR", "PENDING", "CR"]
        assert c.items[3].resolved[0]["as"] == "refuted"
        assert c.outputs()["efs"] == {"event": False, "date": None}


def test_unresolved_pending_at_the_end_leaves_the_outcome_open():
    p = course_pack()
    c = run_course(p, FactSheet.of({"subject.start": D0}), visits((1, 0), (30, 3)), None, REF)
    assert c.outputs()["efs"] == {"event": None, "date": None}
    assert c.state["pending"].resolves


def test_missing_value_makes_state_unknown_naming_it():
    p = course_pack()
    for ev in (DUR, REF):
        c = run_course(p, FactSheet.of({"subject.start": D0}), visits((1, 0), (30, None), (40, 2)), None, ev)
        assert c.items[1].state["pending"].unknown == ("blasts",)
        assert "unknown" in c.items[1].moved["pending"]


days_blasts = st.lists(st.tuples(st.integers(0, 60), maybe(st.sampled_from([0, 0, 2, 5]))), max_size=6,
                       unique_by=lambda t: t[0])


def _fold(p, tl, ev=REF):
    c = run_course(p, FactSheet.of({"subject.start": D0}), tl, None, ev)
    return c, [(i.event.id, i.result.decisions["r"].to_dict(), i.state_json()) for i in c.items]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(db=days_blasts, seed=st.integers(0, 10_000))
def test_fold_durable_agrees_with_reference_and_listing_order_never_matters(db, seed):
    p = course_pack()
    tl = visits(*db)
    c_ref, ref = _fold(p, tl)
    c_dur, dur = _fold(p, tl, DUR)
    assert ref == dur and c_ref.outputs() == c_dur.outputs()
    shuffled = list(tl.events)
    random.Random(seed).shuffle(shuffled)
    c_sh, sh = _fold(p, Timeline(shuffled))
    assert sh == ref and c_sh.outputs() == c_ref.outputs()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(db=days_blasts, later=st.tuples(st.integers(61, 90), maybe(st.sampled_from([0, 2]))))
def test_an_event_dated_after_an_item_never_changes_that_items_outcome(db, later):
    p = course_pack()
    _, before = _fold(p, visits(*db))
    _, after = _fold(p, visits(*db, later))
    assert after[:len(before)] == before


# --- load-time refusals ---------------------------------------------------------------------------

def _course_body(**over):
    body = {"facts": [{"name": "subject.start", "type": "date"}],
            "events": [{"kind": "visit", "fields": [{"name": "blasts", "type": "number"}]}],
            "course": {"items": {"events": ["visit"]},
                       "state": [{"name": "since", "type": "date"}, {"name": "n", "type": "integer", "initial": 0}],
                       "transitions": [{"id": "T1", "title": "t", "source": S, "when": {"fact": "blasts", "gt": 0},
                                        "set": {"since": {"fact": "item.date"}}}]}}
    for k, v in over.items():
        if k in ("items", "state", "transitions", "decisions"):
            body["course"][k] = v
        elif k == "course_collections":
            body["course"]["collections"] = v
        else:
            body[k] = v
    return body


@pytest.mark.parametrize("over,message", [
    ({"transitions": [{"id": "T1", "title": "t", "source": S, "when": {"fact": "blasts", "gt": 0},
                       "set": {"sincе": {"fact": "item.date"}}}]}, "sets unknown state variable"),
    ({"transitions": [{"id": "T1", "title": "t", "source": S, "when": {"fact": "state.nope", "eq": True},
                       "set": {"n": 1}}]}, "not a state variable of the course"),
    ({"transitions": [{"id": "T1", "title": "t", "source": S, "when": {"fact": "blasts", "gt": 0},
                       "set": {"n": "many"}}]}, "sets 'n' (integer) to 'many'"),
    ({"transitions": [{"id": "T1", "title": "t", "source": S, "when": {"fact": "blasts", "gt": 0},
                       "set": {"since": {"fact": "blasts"}}}]}, "which is number"),
    ({"transitions": [{"id": "T1", "title": "t", "source": S, "when": {"fact": "new.n", "gt": 0}, "set": {"since": None}},
                      {"id": "T2", "title": "t", "source": S, "when": {"fact": "new.since", "exists": True}, "set": {"n": 1}}]},
     "circular reference: transition:T1 -> transition:T2 -> transition:T1"),
    ({"items": {"events": ["visits"]}}, "undeclared event kind 'visits'"),
    ({"course_collections": [{"id": "c", "title": "c", "events": ["blood"], "facts": [{"name": "x", "count": True}]}]},
     "reads undeclared event kind 'blood'"),
    ({"rules": [rule("R", {"fact": "c.n", "gte": 1})],
      "collections": [{"id": "c", "title": "c", "events": ["visit"], "window": {"after": "state.n"},
                       "facts": [{"name": "c.n", "count": True}]}]}, "window anchor 'state.n' is integer, not a date"),
    ({"collections": [{"id": "c", "title": "c", "events": ["visit"], "window": {"after": "nowhere"},
                       "facts": [{"name": "c.n", "count": True}]}]}, "window anchor 'nowhere' is not a known date fact"),
    ({"collections": [{"id": "a", "title": "a", "events": ["visit"], "window": {"after": "b.last"},
                       "facts": [{"name": "a.last", "last": "event.date"}]},
                      {"id": "b", "title": "b", "events": ["visit"], "window": {"after": "a.last"},
                       "facts": [{"name": "b.last", "last": "event.date"}]}]}, "cycle between collections"),
    ({"collections": [{"id": "c", "title": "c", "events": ["visit"], "where": {"rule": "R"},
                       "facts": [{"name": "c.n", "count": True}]}],
      "rules": [rule("R", {"fact": "blasts", "gt": 0})]}, "cannot refer to a rule"),
    ({"collections": [{"id": "c", "title": "c", "events": ["visit"], "facts": [{"name": "c.m", "max": "colour"}]}]},
     "not a field of visit"),
    ({"rules": [rule("R", {"fact": "new.n", "gt": 0})]}, "undeclared fact 'new.n'"),
])
def test_bad_temporal_constructs_are_refused_at_load(over, message):
    with pytest.raises(PackError) as e:
        pack(_course_body(**over))
    assert message in str(e.value), str(e.value)


def test_refusal_names_file_line_and_key(tmp_path):
    from packtools import write_pack
    from engine.rules.load import load_pack
    body = _course_body(transitions=[{"id": "T1", "title": "t", "source": S, "when": {"fact": "blasts", "gt": 0},
                                      "set": {"ghost": 1}}])
    folder = write_pack(tmp_path, "p", body)
    with pytest.raises(PackError) as e:
        load_pack(folder)
    msg = str(e.value)
    assert "pack.yaml:" in msg and "course.transitions.0.set.ghost" in msg and "transition T1" in msg
    assert "expected one of since, n" in msg
