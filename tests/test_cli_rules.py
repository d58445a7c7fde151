"""`adjudicator rules ...` and broken rule packs at the command line: exit codes and messages."""
from __future__ import annotations

import json
import shutil

from click.testing import CliRunner

from cli import main
from conftest import ROOT

EXAMPLE = ROOT / "rules" / "example-organ-function"


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def example_only(tmp_path):
    rules = tmp_path / "rules"
    shutil.copytree(EXAMPLE, rules / EXAMPLE.name)
    return rules


def test_list_json_names_every_pack_with_its_hash():
    r = run("rules", "list", "--json")
    assert r.exit_code == 0, r.output
    packs = {p["id"]: p for p in json.loads(r.output)}
    assert {"vah-eligibility", "disease-status", "vah-trial-response", "ctcae-4.03"} <= set(packs)
    assert all(len(p["sha256"]) == 64 for p in packs.values())
    assert packs["vah-eligibility"]["depends_on"] == ["disease-status"]


def test_validate_and_test_pass_on_the_example(tmp_path):
    rules = example_only(tmp_path)
    r = run("--rules-dir", str(rules), "rules", "validate")
    assert r.exit_code == 0 and "ok  example-organ-function 1.0.1" in r.output
    r = run("--rules-dir", str(rules), "rules", "test", "--json")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)[0]
    assert rep["tests"] == rep["passed"] == 7 and rep["failed"] == []
    assert "HEP-AST" in rep["coverage"]["outcomes_not_exercised"]


def test_failing_embedded_test_exits_1_with_the_trace(tmp_path):
    rules = example_only(tmp_path)
    tests = rules / EXAMPLE.name / "tests.yaml"
    tests.write_text(tests.read_text().replace("REN-CRCL: not_met, HEP-AST: unknown", "REN-CRCL: met, HEP-AST: unknown"))
    r = run("--rules-dir", str(rules), "rules", "test")
    assert r.exit_code == 1
    assert "FAIL example-organ-function" in r.output and "rule REN-CRCL: not_met, expected met" in r.output
    assert "trace REN-CRCL: not_met inputs={'labs.crcl': 29}" in r.output


def test_broken_pack_exits_2_naming_file_line_and_key(tmp_path):
    rules = example_only(tmp_path)
    pack = rules / EXAMPLE.name / "pack.yaml"
    pack.write_text(pack.read_text().replace("when: {fact: labs.ast_x_uln, lte: 3.0}", "when: {fact: labs.ast_x_uln, lte: 3.0, gte: 1}"))
    for cmd in (["rules", "validate"], ["rules", "list"], ["rules", "test"]):
        r = run("--rules-dir", str(rules), *cmd)
        assert r.exit_code == 2, (cmd, r.output)
        assert "pack.yaml:" in r.output and "rules.1.when" in r.output and "exactly one operator" in r.output
        assert "Traceback" not in r.output


def test_screen_with_a_broken_rules_folder_exits_2(tmp_path):
    rules = example_only(tmp_path)
    (rules / "bad").mkdir()
    (rules / "bad" / "pack.yaml").write_text("id: bad\nversion: one\n")
    r = run("--rules-dir", str(rules), "--db", str(tmp_path / "a.sqlite"), "screen",
            str(ROOT / "fixtures" / "screening" / "C015-pregnant.yaml"))
    assert r.exit_code == 2 and "bad/pack.yaml" in r.output
    assert not (tmp_path / "a.sqlite").exists(), "nothing written"


def test_schema_is_json_schema_of_the_pack_format():
    r = run("rules", "schema")
    schema = json.loads(r.output)
    assert schema["title"] == "Manifest" and "rules" in schema["properties"]


def test_explain_prints_source_text_and_plain_words():
    r = run("rules", "explain", "example-organ-function", "HEP-BILI")
    assert r.exit_code == 0
    assert "total bilirubin <= 1.5 x ULN" in r.output
    assert "labs.bilirubin is at most 1.5 (parameter bilirubin_max_x_uln, operational) x labs.bilirubin_uln" in r.output
    r = run("rules", "explain", "example-organ-function", "NOPE")
    assert r.exit_code == 2 and "has no rule, decision or decision row 'NOPE'" in r.output


def test_unknown_pack_exits_2():
    r = run("rules", "explain", "no-such-pack", "X")
    assert r.exit_code == 2 and "no rule pack 'no-such-pack'" in r.output


def test_bad_param_exits_2(tmp_path):
    r = run("--db", str(tmp_path / "a.sqlite"), "marrow", str(ROOT / "fixtures" / "marrow" / "anc-1.0.yaml"),
            "--param", "trial.mrd_threshold_pct=abc")
    assert r.exit_code == 2 and "mrd_threshold_pct" in r.output
