"""`adjudicator rules test`: run every pack's embedded tests through both evaluators.

A test fails when an expectation is not met or when the durable-rules engine and the reference
evaluator disagree on any rule or decision. Coverage lists, per rule, the outcomes
(met / not met / unknown) that no test produced.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.errors import AdjudicatorError
from engine.rules.load import Pack
from engine.rules.model import PackTest
from engine.evaluate.facts import FactSheet
from engine.evaluate.logic import Outcome
from engine.evaluate.reference import ReferenceEvaluator
from engine.evaluate.run import PackResult, default_evaluator, evaluate_pack

OUTCOMES = (Outcome.MET.value, Outcome.NOT_MET.value, Outcome.UNKNOWN.value)


@dataclass
class Failure:
    test: str
    problems: list[str]
    trace: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class PackReport:
    pack: dict[str, str]
    tests: int = 0
    failures: list[Failure] = field(default_factory=list)
    seen: dict[str, set[str]] = field(default_factory=dict)
    rows_met: dict[str, bool] = field(default_factory=dict)   # decision row -> met in some test

    @property
    def ok(self) -> bool:
        return not self.failures

    def uncovered(self) -> dict[str, list[str]]:
        return {r: [o for o in OUTCOMES if o not in s] for r, s in self.seen.items()
                if any(o not in s for o in OUTCOMES)}

    def rows_never_met(self) -> list[str]:
        return [k for k, v in self.rows_met.items() if not v]

    def to_dict(self) -> dict[str, Any]:
        return {"pack": self.pack, "tests": self.tests, "passed": self.tests - len(self.failures),
                "failed": [{"test": f.test, "problems": f.problems, "trace": f.trace} for f in self.failures],
                "coverage": {"rules": len(self.seen),
                             "rules_never_tested": sorted(r for r, s in self.seen.items() if not s),
                             "outcomes_not_exercised": self.uncovered(),
                             "decision_rows": len(self.rows_met),
                             "decision_rows_never_met": self.rows_never_met()}}


def _check_decision(name: str, want: Any, got: PackResult) -> list[str]:
    d = got.decisions[name]
    if isinstance(want, dict) and "status" in want:
        probs = []
        if d.status != want["status"]:
            probs.append(f"decision {name}: status {d.status}, expected {want['status']}")
        if "value" in want and d.value != want["value"]:
            probs.append(f"decision {name}: value {d.value!r}, expected {want['value']!r}")
        if "candidates" in want and sorted(map(repr, d.candidates)) != sorted(map(repr, want["candidates"])):
            probs.append(f"decision {name}: candidates {d.candidates!r}, expected {want['candidates']!r}")
        for k, v in (want.get("fields") or {}).items():
            if d.fields.get(k, "<undecided>") != v:
                probs.append(f"decision {name}: field {k} = {d.fields.get(k, '<undecided>')!r}, expected {v!r}")
        return probs
    if d.status != "decided" or d.value != want:
        return [f"decision {name}: {d.status} {d.value!r} (candidates {d.candidates!r}), expected {want!r}"]
    return []


def run_test(pack: Pack, t: PackTest, report: PackReport | None = None) -> list[str]:
    """Problems of one test (empty when it passes)."""
    sheet = FactSheet.of(t.given, {k: f"{pack.id}/tests.yaml#{t.name}" for k in t.given})
    try:
        got, _ = evaluate_pack(pack, sheet, t.parameters, default_evaluator())
        ref, _ = evaluate_pack(pack, sheet, t.parameters, ReferenceEvaluator())
    except AdjudicatorError as exc:
        return [f"evaluation failed: {exc}"]
    problems: list[str] = []
    for rid, r in got.rules.items():
        if ref.rules[rid].outcome is not r.outcome:
            problems.append(f"rule {rid}: durable-rules says {r.outcome.value}, reference says {ref.rules[rid].outcome.value}")
        if report is not None:
            report.seen.setdefault(rid, set()).add(r.outcome.value)
    if report is not None:
        for key, r in got.rows.items():
            report.rows_met[key] = report.rows_met.get(key, False) or r.outcome is Outcome.MET
    for did, d in got.decisions.items():
        if d.to_dict() != ref.decisions[did].to_dict():
            problems.append(f"decision {did}: evaluators disagree ({d.to_dict()} vs {ref.decisions[did].to_dict()})")
    for rid, want in t.expect.rules.items():
        if got.rules[rid].outcome.value != want:
            extra = f" (missing {got.rules[rid].missing})" if got.rules[rid].missing else ""
            problems.append(f"rule {rid}: {got.rules[rid].outcome.value}{extra}, expected {want}")
    for did, want in t.expect.decisions.items():
        problems += _check_decision(did, want, got)
    for key, want in t.expect.missing.items():
        have = got.rules[key].missing if key in got.rules else (
            got.decisions[key].missing if key in got.decisions else None)
        if have is None:
            problems.append(f"missing: no rule or decision {key!r}")
        elif sorted(have) != sorted(want):
            problems.append(f"{key}: missing {sorted(have)}, expected {sorted(want)}")
    return problems


def run_pack_tests(pack: Pack) -> PackReport:
    report = PackReport(pack=pack.identity())
    for r in pack.manifest.rules:
        report.seen[r.id] = set()
    for d in pack.manifest.decisions:
        for key in d.row_keys:
            report.rows_met[key] = False
    for t in pack.tests:
        report.tests += 1
        problems = run_test(pack, t, report)
        if problems:
            sheet = FactSheet.of(t.given)
            try:
                got, _ = evaluate_pack(pack, sheet, t.parameters, default_evaluator())
                trace = got.trace()
            except AdjudicatorError:
                trace = []
            report.failures.append(Failure(t.name, problems, trace))
    return report
