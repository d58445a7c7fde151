"""Every pack in rules/ passes its embedded tests, in durable-rules and in the reference
evaluator, and the two agree on every rule and decision (differential testing)."""
from __future__ import annotations

import pytest

from engine.rules.load import load_registry
from engine.rules.testing import run_test

from conftest import ROOT

_REG = load_registry(ROOT / "rules")
CASES = [(p.id, t) for p in _REG.packs.values() for t in p.tests]


def test_every_pack_has_tests():
    assert _REG.packs, "no rule packs found"
    untested = [p.id for p in _REG.packs.values() if not p.tests]
    assert not untested, f"packs without embedded tests: {untested}"


@pytest.mark.parametrize("pack_id,case", CASES, ids=[f"{p}:{t.name}" for p, t in CASES])
def test_embedded_case(pack_id, case):
    problems = run_test(_REG.get(pack_id), case)
    assert not problems, "\n".join(problems)


def test_every_rule_is_exercised_by_some_test():
    from engine.rules.testing import run_pack_tests
    never = {p.id: sorted(r for r, s in run_pack_tests(p).seen.items() if not s) for p in _REG.packs.values()}
    assert not any(never.values()), f"rules no embedded test evaluates: {never}"
