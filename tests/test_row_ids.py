"""Readable reasons: decision-table rows carry a stable id and a title; traces, tests and
`rules explain` name rows by id, so reordering a table does not rename its rows."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cli import main
from engine.errors import PackError
from engine.evaluate.facts import FactSheet
from engine.evaluate.run import evaluate_pack
from engine.rules.explain import explain_rule

from packtools import make_pack, rule

FACTS = [{"name": "a", "type": "number", "unit": "x"}]
# Every pack names every row (the response and disease-status packs were the last, issue 11).
PENDING: set[str] = set()


def _table(rows: list[dict]) -> dict:
    return {"facts": FACTS, "rules": [rule("HIGH", {"fact": "a", "gte": 10})],
            "decisions": [{"id": "level", "hit_policy": "first", "default": "LOW", "rows": rows}]}


def test_every_row_of_every_finished_pack_has_an_id_and_a_title(registry):
    missing = [f"{p.id}:{k}" for p in registry.packs.values() if p.id not in PENDING
               for d in p.manifest.decisions for k, r in zip(d.row_keys, d.rows) if r.id is None or not r.title]
    assert missing == []


def test_duplicate_row_id_refused_at_load_with_file_and_key(tmp_path):
    rows = [{"id": "HI", "when": {"rule": "HIGH"}, "then": "HIGH"}, {"id": "HI", "when": {"fact": "a", "gte": 5}, "then": "MID"}]
    with pytest.raises(PackError) as e:
        make_pack(tmp_path, "p", _table(rows))
    msg = str(e.value)
    assert "duplicate row id 'HI'" in msg and "pack.yaml" in msg and "decisions.0.rows" in msg


@pytest.mark.parametrize("order", [0, 1])
def test_trace_names_rows_by_id_whatever_their_position(tmp_path, evaluator, order):
    rows = [{"id": "HI", "title": "a >= 10", "when": {"rule": "HIGH"}, "then": "HIGH"},
            {"id": "MID", "title": "a >= 5", "when": {"fact": "a", "gte": 5}, "then": "MID"}]
    if order:  # the same rows in the other order: names do not move (the outcome may)
        rows = rows[::-1]
    pack = make_pack(tmp_path, f"p{order}", _table(rows))
    res, _ = evaluate_pack(pack, FactSheet.of({"a": 7}), None, evaluator)
    assert res.decisions["level"].value == "MID"
    met = [t["rule"] for t in res.trace() if t["outcome"] == "met"]
    assert "level#MID" in met and not any(k.startswith("level#") and k[-1].isdigit() for k in met)


def test_row_without_id_keeps_its_positional_name(tmp_path, evaluator):
    pack = make_pack(tmp_path, "p", _table([{"when": {"rule": "HIGH"}, "then": "HIGH"}]))
    res, _ = evaluate_pack(pack, FactSheet.of({"a": 12}), None, evaluator)
    assert "level#0" in [t["rule"] for t in res.trace()]


def test_explain_a_row_a_table_and_refuse_an_ambiguous_row_id(registry):
    row = explain_rule(registry.get("vah-eligibility"), "verdict#ELIGIBLE")
    assert row["kind"] == "decision row" and row["then"] == {"verdict": "ELIGIBLE"}
    assert row["title"].startswith("Eligible") and any("INC-01" in line for line in row["condition"])
    assert explain_rule(registry.get("vah-eligibility"), "ELIGIBLE")["rule"] == "verdict#ELIGIBLE"
    table = explain_rule(registry.get("vah-eligibility"), "verdict")
    assert [r["row"] for r in table["rows"]] == ["verdict#INELIGIBLE", "verdict#ELIGIBLE"]
    from engine.errors import InputError
    with pytest.raises(InputError, match="several decisions"):
        explain_rule(registry.get("eln-risk"), "TP53")   # eln2017#TP53 and eln2022#TP53


def test_cli_explains_a_row_in_words_and_as_json():
    r = CliRunner().invoke(main, ["rules", "explain", "eln-risk", "eln2022#TP53"])
    assert r.exit_code == 0, r.output
    assert "eln2022#TP53: Adverse: TP53 mutated with VAF >= 10 % (ELN 2022)" in r.output
    assert "rule TP53-2022 is met" in r.output and "then: ADVERSE" in r.output
    r = CliRunner().invoke(main, ["rules", "explain", "eln-risk", "eln2017#NPM1-FAVORABLE", "--json"])
    assert json.loads(r.output)["then"] == "FAVORABLE"
    r = CliRunner().invoke(main, ["rules", "explain", "eln-risk", "eln2017#NOPE"])
    assert r.exit_code == 2 and "eln2017#TP53" in r.output


def test_a_graded_lab_names_the_row_that_graded_it(registry, evaluator):
    from engine.adjudicate.safety import SafetyGrader
    g = SafetyGrader("5.0", registry, evaluator).grade_lab(id="L1", analyte="neutrophils", value=0.4, unit="10^9/L",
                                                          lln=1.8, uln=7.5)
    assert g.grade == 4 and g.to_dict()["row"] == "grade#neutrophil_count_decreased.G4"
