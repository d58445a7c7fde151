"""The batch's cheaper paths give exactly what the general ones give: a timeline's order (the
content key worked out only for events that tie), a decision with one candidate, a compiled plan
found again for the same parameters and compiled anew for others (a parameter's type included)."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.evaluate.compiled import compiled_plan
from engine.evaluate.decide import Undecided, decide
from engine.evaluate.events import Event, Timeline
from engine.evaluate.logic import FALSE, TRUE, unknown
from engine.rules.load import pack_from_data

DAYS = [dt.date(2021, 1, d) for d in (1, 2, 3)]
event = st.builds(lambda kind, date, order, i, v: Event.of(kind, date, f"E{i}", {"x": v}, order=order),
                  st.sampled_from(["a", "b"]), st.sampled_from(DAYS), st.integers(0, 1), st.integers(0, 3),
                  st.one_of(st.none(), st.integers(0, 2), st.sampled_from(["p", "q"])))


@settings(max_examples=200, deadline=None)
@given(events=st.lists(event, max_size=12), kinds=st.sampled_from([("a",), ("b",), ("a", "b"), ("b", "a")]))
def test_a_timeline_orders_as_by_the_whole_key(events, kinds):
    want_rank = {k: i for i, k in enumerate(kinds)}
    pool = [e for e in events if e.kind in kinds]
    if len(kinds) == 1:
        want = sorted(pool, key=lambda e: (e.date, e.order, e.content_key, e.id))
    else:
        want = sorted(pool, key=lambda e: (e.date, e.order, want_rank[e.kind], e.content_key, e.id))
    assert Timeline(list(events)).of(kinds) == want


def _decision(rows, default=None, complete=False):
    pack = pack_from_data({"id": "d", "version": "1.0.0", "effective": "2026-01-01", "title": "t", "source": "s",
                           "facts": [{"name": "a", "type": "number"}],
                           "decisions": [{"id": "dec", "hit_policy": "first", "default": default, "complete": complete,
                                          "rows": [{"when": {"fact": "a", "lt": j}, "then": t}
                                                   for j, t in enumerate(rows)]}]})
    return pack.manifest.decisions[0]


def test_a_decision_with_one_candidate():
    dec = _decision([{"grade": 3, "basis": "lab", "note": None}, {"grade": 2, "basis": "lab", "note": "n"}],
                    default={"grade": 0, "basis": "none", "note": None})
    got = decide(dec, [FALSE, TRUE])
    assert (got.status, got.value, got.fields, got.missing) == (
        "decided", {"grade": 2, "basis": "lab", "note": "n"}, {"basis": "lab", "grade": 2, "note": "n"}, [])
    assert list(got.fields) == ["basis", "grade", "note"]   # sorted, as the general path writes them
    # an output field copied from an unknown fact: that field undecided, the others decided
    got = decide(dec, [FALSE, TRUE], lambda then: {**then, "note": Undecided(("f.root",))})
    assert (got.status, got.fields, got.missing) == ("indeterminate", {"basis": "lab", "grade": 2}, ["f.root"])
    # no row met, none open: the default, decided
    got = decide(dec, [FALSE, FALSE])
    assert (got.status, got.value["grade"], got.fields["note"]) == ("decided", 0, None)
    # an open row before the met one: two candidates, the fields they agree on
    got = decide(dec, [unknown(["a"]), TRUE])
    assert (got.status, got.fields, got.missing) == ("indeterminate", {"basis": "lab"}, ["a"])
    # two candidates that are the same: decided, as before
    same = _decision([{"grade": 1}, {"grade": 1}])
    assert decide(same, [unknown(["a"]), TRUE]).status == "decided"
    # a scalar output: no fields
    assert decide(_decision(["X", "Y"]), [FALSE, TRUE]).fields == {}


def test_a_compiled_plan_is_found_again_and_compiled_anew_for_other_parameters():
    pack = pack_from_data({"id": "p", "version": "1.0.0", "effective": "2026-01-01", "title": "t", "source": "s",
                           "facts": [{"name": "a", "type": "number"}],
                           "parameters": [{"name": "k", "value": 1, "source": "s"}],
                           "rules": [{"id": "R", "title": "r", "source": {"citation": "c", "text": "t"},
                                      "when": {"fact": "a", "lt": {"param": "k"}}}]})
    ident = pack.plan_identity("main")
    one = compiled_plan(pack.plan, ident, {"k": Decimal(1)})
    assert compiled_plan(pack.plan, ident, {"k": Decimal(1)}) is one
    assert compiled_plan(pack.plan, ident, {"k": Decimal(2)}) is not one
    assert compiled_plan(pack.plan, ident, {"k": True}) is not one          # True == 1, another type
