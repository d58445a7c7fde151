"""`adjudicator rules test`: run every pack's embedded tests through both evaluators.

A test fails when an expectation is not met or when the durable-rules engine and the reference
evaluator disagree on any rule or decision, or when the compiled batch evaluator (what a cohort
run uses, engine.evaluate.compiled) disagrees with durable-rules. Coverage lists, per rule, the outcomes
(met / not met / unknown) that no test produced.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.errors import AdjudicatorError
from engine.rules.load import Pack
from engine.rules.model import PackTest
from engine.evaluate.events import Event, Timeline
from engine.evaluate.facts import FactSheet
from engine.evaluate.values import to_json
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
    dj = d.to_dict()   # JSON forms: an output field copied from an unknown fact is null
    if isinstance(want, dict) and "status" in want:
        probs = []
        if d.status != want["status"]:
            probs.append(f"decision {name}: status {d.status}, expected {want['status']}")
        if "value" in want and dj["value"] != want["value"]:
            probs.append(f"decision {name}: value {dj['value']!r}, expected {want['value']!r}")
        cands = dj.get("candidates", [])
        if "candidates" in want and sorted(map(repr, cands)) != sorted(map(repr, want["candidates"])):
            probs.append(f"decision {name}: candidates {cands!r}, expected {want['candidates']!r}")
        for k, v in (want.get("fields") or {}).items():
            if d.fields.get(k, "<undecided>") != v:
                probs.append(f"decision {name}: field {k} = {d.fields.get(k, '<undecided>')!r}, expected {v!r}")
        return probs
    if d.status != "decided" or dj["value"] != want:
        return [f"decision {name}: {d.status} {dj['value']!r} (candidates {dj.get('candidates')!r}), expected {want!r}"]
    return []


def test_timeline(pack: Pack, t: PackTest) -> Timeline | None:
    """A test's events as a timeline (ids: as given, else `<kind>@<date>#<n>`)."""
    if t.events is None:
        return None
    src = f"{pack.id}/tests.yaml#{t.name}"
    return Timeline([Event.of(e.kind, e.date, e.id or f"{e.kind}@{e.date.isoformat()}#{j}", e.fields,
                              {k: src for k in e.fields}) for j, e in enumerate(t.events)])


def _fact_state(sheet: FactSheet, name: str) -> Any:
    if name in sheet.values:
        return to_json(sheet.values[name])
    return "unknown" if name in sheet.unknown else "absent"


def _compare_results(got: PackResult, ref: PackResult, where: str, report: PackReport | None,
                     names: tuple[str, str] = ("durable-rules", "reference")) -> list[str]:
    problems: list[str] = []
    a, b = names
    for rid, r in got.rules.items():
        if ref.rules[rid].outcome is not r.outcome:
            problems.append(f"{where}rule {rid}: {a} says {r.outcome.value}, {b} says {ref.rules[rid].outcome.value}")
        if report is not None:
            report.seen.setdefault(rid, set()).add(r.outcome.value)
    for tid, r in got.transitions.items():
        if ref.transitions[tid].outcome is not r.outcome:
            problems.append(f"{where}transition {tid}: {a} says {r.outcome.value}, {b} says "
                            f"{ref.transitions[tid].outcome.value}")
        if report is not None:
            report.seen.setdefault("transition:" + tid, set()).add(r.outcome.value)
    if report is not None:
        for key, r in got.rows.items():
            report.rows_met[key] = report.rows_met.get(key, False) or r.outcome is Outcome.MET
    for did, d in got.decisions.items():
        if d.to_dict() != ref.decisions[did].to_dict():
            problems.append(f"{where}decision {did}: evaluators disagree ({d.to_dict()} vs {ref.decisions[did].to_dict()})")
    return problems


_COMPILED = ("compiled", "durable-rules")


def _compiled() -> Any:
    from engine.evaluate.compiled import CompiledEvaluator
    return CompiledEvaluator()


def _check_expect(got: PackResult, expect: Any, where: str) -> list[str]:
    problems: list[str] = []
    for rid, want in expect.rules.items():
        if rid not in got.rules:
            continue
        if got.rules[rid].outcome.value != want:
            extra = f" (missing {got.rules[rid].missing})" if got.rules[rid].missing else ""
            problems.append(f"{where}rule {rid}: {got.rules[rid].outcome.value}{extra}, expected {want}")
    for did, want in expect.decisions.items():
        if did in got.decisions:
            problems += [where + p for p in _check_decision(did, want, got)]
    for key, want in expect.missing.items():
        have = got.rules[key].missing if key in got.rules else (
            got.decisions[key].missing if key in got.decisions else None)
        if have is None:
            continue
        if sorted(have) != sorted(want):
            problems.append(f"{where}{key}: missing {sorted(have)}, expected {sorted(want)}")
    return problems


def _state_value(v: Any) -> Any:
    j = v.to_json()
    if isinstance(j, dict) and "unknown" in j:
        return "unknown"
    if isinstance(j, dict) and "open_since" in j:
        return {"open_since": j["open_since"]}
    return j


def run_test(pack: Pack, t: PackTest, report: PackReport | None = None) -> list[str]:
    """Problems of one test (empty when it passes)."""
    sheet = FactSheet.of(t.given, {k: f"{pack.id}/tests.yaml#{t.name}" for k in t.given})
    timeline = test_timeline(pack, t)
    if pack.manifest.course is not None and timeline is not None:
        return _run_course_test(pack, t, sheet, timeline, report)
    try:
        got, got_sheet = evaluate_pack(pack, sheet, t.parameters, default_evaluator(), timeline)
        ref, ref_sheet = evaluate_pack(pack, sheet, t.parameters, ReferenceEvaluator(), timeline)
        batch, _ = evaluate_pack(pack, sheet, t.parameters, _compiled(), timeline)
    except AdjudicatorError as exc:
        return [f"evaluation failed: {exc}"]
    problems = _compare_results(got, ref, "", report)
    problems += _compare_results(batch, got, "", None, _COMPILED)
    problems += _check_expect(got, t.expect, "")
    for key, want in t.expect.missing.items():
        if key not in got.rules and key not in got.decisions:
            problems.append(f"missing: no rule or decision {key!r}")
    for name, want in t.expect.facts.items():
        have = _fact_state(got_sheet, name)
        if have != want or _fact_state(ref_sheet, name) != have:
            problems.append(f"fact {name}: {have!r} (reference {_fact_state(ref_sheet, name)!r}), expected {want!r}")
    return problems


def _run_course_test(pack: Pack, t: PackTest, sheet: FactSheet, timeline: Timeline,
                     report: PackReport | None) -> list[str]:
    from engine.evaluate.course import run_course
    try:
        got = run_course(pack, sheet, timeline, t.parameters, default_evaluator())
        ref = run_course(pack, sheet, timeline, t.parameters, ReferenceEvaluator())
        batch = run_course(pack, sheet, timeline, t.parameters, _compiled())
    except AdjudicatorError as exc:
        return [f"evaluation failed: {exc}"]
    problems: list[str] = []
    for other in (ref, batch):
        if [i.event.id for i in got.items] != [i.event.id for i in other.items]:
            return [f"the evaluators folded different items: {[i.event.id for i in got.items]} vs "
                    f"{[i.event.id for i in other.items]}"]
    for gi, ri, bi in zip(got.items, ref.items, batch.items):
        where = f"item {gi.event.id}: "
        problems += _compare_results(gi.result, ri.result, where, report)
        problems += _compare_results(bi.result, gi.result, where, None, _COMPILED)
        if gi.state_json() != ri.state_json() or bi.state_json() != gi.state_json():
            problems.append(f"{where}state differs between evaluators: {gi.state_json()} vs {ri.state_json()}"
                            f" (compiled: {bi.state_json()})")
    problems += _compare_results(got.final, ref.final, "course: ", report)
    problems += _compare_results(batch.final, got.final, "course: ", None, _COMPILED)
    items = {i.event.id: i for i in got.items}
    for iid, want in t.expect.items.items():
        if iid not in items:
            problems.append(f"item {iid!r} was not folded (items: {', '.join(items) or 'none'})")
            continue
        it = items[iid]
        problems += _check_expect(it.result, want, f"item {iid}: ")
        for var, v in want.state.items():
            have = _state_value(it.state[var]) if var in it.state else "<no such variable>"
            if have != v:
                problems.append(f"item {iid}: state {var} = {have!r}, expected {v!r}")
    problems += _check_expect(got.final, t.expect, "course: ")
    for var, v in t.expect.state.items():
        have = _state_value(got.state[var]) if var in got.state else "<no such variable>"
        if have != v:
            problems.append(f"final state {var} = {have!r}, expected {v!r}")
    for name, want in t.expect.facts.items():
        have = _fact_state(got.final_sheet, name)
        if have != want:
            problems.append(f"fact {name}: {have!r}, expected {want!r}")
    return problems


def run_pack_tests(pack: Pack) -> PackReport:
    report = PackReport(pack=pack.identity())
    m = pack.manifest
    for r in list(m.rules) + (list(m.course.rules) if m.course else []):
        report.seen[r.id] = set()
    for t in (m.course.transitions if m.course else []):
        report.seen["transition:" + t.id] = set()
    for d in list(m.decisions) + (list(m.course.decisions) if m.course else []):
        for key in d.row_keys:
            report.rows_met[key] = False
    for t in pack.tests:
        report.tests += 1
        problems = run_test(pack, t, report)
        if problems:
            sheet = FactSheet.of(t.given)
            try:
                if m.course is not None and t.events is not None:
                    trace = []
                else:
                    got, _ = evaluate_pack(pack, sheet, t.parameters, default_evaluator(), test_timeline(pack, t))
                    trace = got.trace()
            except AdjudicatorError:
                trace = []
            report.failures.append(Failure(t.name, problems, trace))
    return report
