"""The pinned written form of numbers (issue 15 item 1): facts handed to durable-rules and the
audit's canonical JSON never carry an exponent, so no value crashes the engine (error 204 on
`1e-05`) and no encoder choice changes a hash."""
from __future__ import annotations

import json
import math
from decimal import Decimal

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli import main
from conftest import ROOT
from engine.audit.record import canonical_json
from engine.evaluate.durable_adapter import DurableEvaluator
from engine.evaluate.facts import FactSheet
from engine.evaluate.reference import ReferenceEvaluator
from engine.evaluate.run import evaluate_pack
from engine.evaluate.values import durable_json, number_text, to_decimal
from engine.rules.load import pack_from_data

FACTS = [{"name": "a", "type": "number"}, {"name": "b", "type": "number"}]


def pack(rules: dict, pid: str = "numbers") -> object:
    return pack_from_data({"id": pid, "version": "1.0.0", "effective": "2026-01-01", "title": "t", "source": "s",
                           "facts": FACTS,
                           "rules": [{"id": k, "title": k, "source": {"citation": "c", "text": "t"}, "when": v}
                                     for k, v in rules.items()]})


def outcomes(p, facts: dict, ev) -> dict[str, str]:
    res, _ = evaluate_pack(p, FactSheet.of(facts), None, ev)
    return {k: r.outcome.value for k, r in res.rules.items()}


# --- the written form ---------------------------------------------------------------------------

@pytest.mark.parametrize("x, text", [
    (1e-05, "0.00001"), (-1e-05, "-0.00001"), (1e16, "10000000000000000.0"), (1.5e-07, "0.00000015"),
    (0.0001, "0.0001"), (12.5, "12.5"), (100.0, "100.0"), (7, "7"), (10**20, "100000000000000000000"),
    (Decimal("1E-5"), "0.00001"), (Decimal("0.1"), "0.1"), (2.5e16, "25000000000000000.0"),
])
def test_number_text_is_plain_notation(x, text):
    assert number_text(x) == text


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e30, max_value=1e30))
def test_number_text_reads_back_as_the_same_double_and_has_no_exponent(f):
    text = number_text(f)
    assert "e" not in text.lower()
    assert float(text) == f
    assert "." in text  # a float stays a float when read back


def test_durable_json_keeps_strings_that_look_like_numbers():
    assert durable_json({"s": "1e-05", "a": 1e-05}) == '{"s":"1e-05","a":0.00001}'


# --- the engine: no value crashes it, and it still agrees with the reference -------------------

EXTREMES = [Decimal("0.00001"), Decimal("1E+16"), Decimal("1E-12"), Decimal("-0.00001"), Decimal("123456789012345E+3")]


@pytest.mark.parametrize("x", EXTREMES)
def test_extreme_values_are_asserted_and_compared(x):
    p = pack({"LT": {"fact": "a", "lt": 0.5}, "GE": {"fact": "a", "gte": 1e16}, "EQ": {"fact": "a", "eq": float(x)}})
    want = outcomes(p, {"a": x}, ReferenceEvaluator())
    assert outcomes(p, {"a": x}, DurableEvaluator()) == want
    assert want == {"LT": "met" if x < Decimal("0.5") else "not_met",
                    "GE": "met" if x >= Decimal("1E16") else "not_met", "EQ": "met"}


def test_a_literal_with_an_exponent_compiles_into_a_ruleset():
    """A pack threshold of 1e-05 (an MRD cut-off in %) reaches the engine as 0.00001."""
    p = pack({"R": {"fact": "a", "lt": 0.00001}, "S": {"fact": "a", "lte": 1e16}}, pid="numbers-literal")
    assert outcomes(p, {"a": Decimal("0.000009")}, DurableEvaluator()) == {"R": "met", "S": "met"}
    assert outcomes(p, {"a": Decimal("0.00001")}, DurableEvaluator()) == {"R": "not_met", "S": "met"}


@pytest.mark.parametrize("k", range(1, 15))
@pytest.mark.parametrize("sign", [-1, 0, 1])
def test_values_next_to_a_fact_vs_fact_threshold(k, sign):
    """a vs 1.5 x b with a = 1.5 b + sign x 10^-k: the difference handed to the engine is tiny."""
    b = Decimal("1.2")
    a = b * Decimal("1.5") + sign * Decimal(10) ** -k
    p = pack({"GT": {"fact": "a", "gt": {"fact": "b", "times": 1.5}},
              "LTE": {"fact": "a", "lte": {"fact": "b", "times": 1.5}}}, pid="numbers-ff")
    exact = {"GT": "met" if sign > 0 else "not_met", "LTE": "not_met" if sign > 0 else "met"}
    assert outcomes(p, {"a": a, "b": b}, DurableEvaluator()) == exact
    assert outcomes(p, {"a": a, "b": b}, ReferenceEvaluator()) == exact


decimals = st.builds(lambda digits, exp, neg: Decimal(f"{'-' if neg else ''}{digits}E{exp}"),
                     st.integers(min_value=0, max_value=10**15 - 1), st.integers(min_value=-25, max_value=12),
                     st.booleans())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(a=decimals, b=decimals, times=st.sampled_from([1, 1.5, 3.0, 0.001, 1e-05, 2.5e3]),
       lit=st.sampled_from([0, 0.5, 1e-05, -1e-07, 1e16, 123.456]))
def test_durable_agrees_with_the_reference_over_decimals(a, b, times, lit):
    p = pack({"LIT": {"fact": "a", "lt": lit},
              "FF": {"fact": "a", "gte": {"fact": "b", "times": times}},
              "EQ": {"fact": "b", "eq": lit}}, pid="numbers-h")
    facts = {"a": a, "b": b}
    want = outcomes(p, facts, ReferenceEvaluator())
    assert outcomes(p, facts, DurableEvaluator()) == want
    assert want["LIT"] == ("met" if to_decimal(a) < to_decimal(lit) else "not_met")
    assert want["FF"] == ("met" if to_decimal(a) - Decimal(str(times)) * to_decimal(b) >= 0 else "not_met")


# --- the audit's canonical JSON ----------------------------------------------------------------

def test_canonical_json_writes_no_exponent_and_keeps_strings():
    text = canonical_json({"b": 1e-05, "a": [1e16, "1e-05"], "n": 2, "x": 0.5})
    assert text == '{"a":[10000000000000000.0,"1e-05"],"b":0.00001,"n":2,"x":0.5}'


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-10**20, max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_canonical_json_is_stable_through_a_round_trip(obj):
    """Parsing the canonical text and encoding again gives the same text (so the same hash),
    and it is json.dumps' text wherever json writes no exponent."""
    text = canonical_json(obj)
    assert canonical_json(json.loads(text)) == text
    plain = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if not any(c in plain for c in ("e-", "e+")):
        assert text == plain


def test_canonical_json_floats_are_the_decimal_digits():
    for x in ("0.00001", "0.000000123", "12345678901234.5", "0.1"):
        assert canonical_json([float(x)]) == f"[{x}]"
    assert math.isclose(json.loads(canonical_json(1e-300)), 1e-300)


# --- the commands of the issue --------------------------------------------------------------------

def test_marrow_with_mrd_0_00001_pct(tmp_path):
    text = (ROOT / "fixtures" / "marrow" / "mrd-0.009.yaml").read_text()
    assert "value_pct: 0.009" in text
    subject = tmp_path / "mrd.yaml"
    subject.write_text(text.replace("value_pct: 0.009", "value_pct: 0.00001").replace("M-mrd-0.009", "M-mrd-1e-5"))
    db = tmp_path / "a.sqlite"
    r = CliRunner().invoke(main, ["--db", str(db), "marrow", str(subject), "--profile", "eln-2017", "--json"])
    assert r.exit_code == 0, r.output
    assert "CR_MRD_NEG" in r.output  # MRD 0.00001 % < 0.01 %: negative
    r = CliRunner().invoke(main, ["--db", str(db), "audit", "export"])
    assert r.exit_code == 0 and "0.00001" in r.output and "1e-05" not in r.output
    assert CliRunner().invoke(main, ["--db", str(db), "audit", "verify"]).exit_code == 0


def test_ctcae_grade_with_tiny_values_and_values_next_to_x_uln(tmp_path):
    listing = tmp_path / "labs.csv"
    listing.write_text("lab_test,value,unit,lln,uln,baseline\n"
                       "neutrophils,0.00001,10^9/L,1.8,7.5,\n"
                       "creatinine,1.80005,mg/dL,0.7,1.2,\n"   # 1.5 x ULN + 5e-05: G2
                       "creatinine,1.8,mg/dL,0.7,1.2,\n"       # exactly 1.5 x ULN: G1 (the milder grade)
                       "creatinine,1.79999,mg/dL,0.7,1.2,\n"   # just under: G1
                       "platelets,1e+16,10^9/L,150,400,\n")
    r = CliRunner().invoke(main, ["--db", str(tmp_path / "a.sqlite"), "ctcae", "grade", str(listing),
                                  "--ctcae", "4.03", "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    # platelets 1e+16 x10^9/L cannot be a measurement: reported, not graded (issue 16 input bounds)
    assert [row["grade"] for row in rows] == [4, 2, 1, 1, ""]
    assert "outside the range of any measurement" in rows[4]["reason"]
