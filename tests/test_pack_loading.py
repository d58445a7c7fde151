"""A bad pack fails at load time with file, line and key; nothing is evaluated."""
from __future__ import annotations

import pytest

from engine.errors import PackError
from engine.rules.load import load_pack, load_registry

from packtools import make_pack, rule, write_pack

FACTS = [{"name": "a", "type": "number", "unit": "x"}, {"name": "s", "type": "string", "values": ["x", "y"]}]


def test_malformed_yaml_names_file_and_line(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "pack.yaml").write_text("id: bad\nversion: 1.0.0\nrules: [\n  - {id: x\n")
    with pytest.raises(PackError) as e:
        load_pack(folder)
    assert "pack.yaml:" in str(e.value) and "malformed YAML" in str(e.value)


def test_unknown_key_names_line_and_key(tmp_path):
    folder = write_pack(tmp_path, "p", {"facts": FACTS, "rules": [rule("R1", {"fact": "a", "gte": 1}, colour="red")]})
    with pytest.raises(PackError) as e:
        load_pack(folder)
    msg = str(e.value)
    assert "unknown key 'colour'" in msg and "rules.0.colour" in msg and "pack.yaml:" in msg


def test_two_operators_rejected(tmp_path):
    with pytest.raises(PackError, match="exactly one operator"):
        make_pack(tmp_path, "p", {"facts": FACTS, "rules": [rule("R1", {"fact": "a", "gte": 1, "lt": 5})]})


def test_undeclared_fact_rejected(tmp_path):
    with pytest.raises(PackError, match="undeclared fact 'b'"):
        make_pack(tmp_path, "p", {"facts": FACTS, "rules": [rule("R1", {"fact": "b", "gte": 1})]})


def test_unknown_rule_reference(tmp_path):
    with pytest.raises(PackError, match="unknown rule 'R9'"):
        make_pack(tmp_path, "p", {"facts": FACTS, "rules": [rule("R1", {"rule": "R9"})]})


def test_unknown_parameter(tmp_path):
    with pytest.raises(PackError, match="unknown parameter 'limit'"):
        make_pack(tmp_path, "p", {"facts": FACTS, "rules": [rule("R1", {"fact": "a", "lte": {"param": "limit"}})]})


def test_ordering_a_string_rejected(tmp_path):
    with pytest.raises(PackError, match="needs a number or date"):
        make_pack(tmp_path, "p", {"facts": FACTS, "rules": [rule("R1", {"fact": "s", "lt": "x"})]})


def test_value_outside_declared_values_rejected(tmp_path):
    with pytest.raises(PackError, match="'z' is not an allowed value"):
        make_pack(tmp_path, "p", {"facts": FACTS, "rules": [rule("R1", {"fact": "s", "eq": "z"})]})


def test_circular_rule_references(tmp_path):
    with pytest.raises(PackError, match="circular reference"):
        make_pack(tmp_path, "p", {"facts": FACTS, "rules": [rule("R1", {"rule": "R2"}), rule("R2", {"rule": "R1"})]})


def test_duplicate_rule_ids(tmp_path):
    with pytest.raises(PackError, match="duplicate rule id"):
        make_pack(tmp_path, "p", {"facts": FACTS, "rules": [rule("R1", {"fact": "a", "gte": 1})] * 2})


def test_missing_source_text_rejected(tmp_path):
    r = rule("R1", {"fact": "a", "gte": 1})
    r["source"] = {"citation": "x"}
    with pytest.raises(PackError, match="source.text"):
        make_pack(tmp_path, "p", {"facts": FACTS, "rules": [r]})


def test_pack_id_must_match_folder(tmp_path):
    folder = write_pack(tmp_path, "p", {"facts": FACTS, "rules": []})
    (folder / "pack.yaml").write_text((folder / "pack.yaml").read_text().replace("id: p", "id: q"))
    with pytest.raises(PackError, match="differs from its folder name"):
        load_pack(folder)


def test_parameter_value_outside_choices(tmp_path):
    with pytest.raises(PackError, match="not one of its choices"):
        make_pack(tmp_path, "p", {"facts": FACTS, "parameters": [
            {"name": "mode", "value": "z", "choices": ["a", "b"], "source": "s"}]})


def test_dependency_on_unknown_pack(tmp_path):
    write_pack(tmp_path, "p", {"facts": FACTS, "depends_on": [{"pack": "ghost"}]})
    with pytest.raises(PackError, match="depends on unknown pack 'ghost'"):
        load_registry(tmp_path)


def test_dependency_output_must_exist(tmp_path):
    write_pack(tmp_path, "base", {"facts": FACTS, "rules": [rule("R", {"fact": "a", "gte": 1})],
                                  "decisions": [{"id": "d", "hit_policy": "first", "rows": [{"when": {"rule": "R"}, "then": "X"}], "default": "Y"}]})
    write_pack(tmp_path, "top", {"depends_on": [{"pack": "base"}], "rules": [rule("T", {"fact": "base.nope", "eq": "X"})]})
    with pytest.raises(PackError, match="not an output of the dependency"):
        load_registry(tmp_path)


def test_test_file_with_unknown_rule(tmp_path):
    write_pack(tmp_path, "p", {"facts": FACTS, "rules": [rule("R1", {"fact": "a", "gte": 1})]},
               tests=[{"name": "t", "given": {"a": 1}, "expect": {"rules": {"R2": "met"}}}])
    pack = load_pack(tmp_path / "p")  # tests.yaml is read on first use (rules test / validate)
    with pytest.raises(PackError, match="unknown rule 'R2'"):
        pack.tests


def test_repository_packs_all_load(registry):
    assert "example-organ-function" in registry.packs
    for p in registry.packs.values():
        assert len(p.sha256) == 64


def test_a_test_giving_text_for_a_number_fact_is_refused_with_file_and_key(tmp_path):
    """YAML reads `1e-05` (no dot) as text: `rules test` said 'internal error' (a traceback) before."""
    from packtools import write_pack
    folder = write_pack(tmp_path, "p", {"facts": FACTS, "rules": [rule("R1", {"fact": "a", "gte": 1})]},
                        tests=[{"name": "t", "given": {"a": "1e-05"}, "expect": {"rules": {"R1": "not_met"}}}])
    from engine.rules.load import load_tests
    with pytest.raises(PackError) as e:
        load_tests(load_pack(folder))
    msg = str(e.value)
    assert "tests.yaml" in msg and "tests.0.given.a" in msg and "'1e-05'" in msg and "number" in msg
