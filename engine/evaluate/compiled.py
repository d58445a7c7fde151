"""The compiled batch evaluator (issue 15 item 5): each stratum of a pack's plan generated into one
Python function, the three-valued logic inline.

It follows the same plans as durable-rules and the reference evaluator (main, elements, course),
so the collections, aggregates and the course fold (engine.evaluate.collections / course) run on
it unchanged: only the conditions are compiled. Semantics are the reference evaluator's, operator
for operator (engine.evaluate.compare: exact types, exact decimals, fact-vs-fact differences),
evaluated in the same order with the same short cuts (`all` stops at the first false part, `any`
at the first true one), so a type error is raised where the reference raises it.

A truth value is an int: 0 false, 1 unknown, 2 true; `all` is min, `any` max, `not` 2 - x. A
stratum function returns one value per evaluable; a session reports the met and not-met ones
(like durable-rules), and run_plan asks the reference evaluator to name what an unknown one
misses. durable-rules stays the engine of record: a batch on this evaluator is checked by it on a
sample of subjects in the same run (engine.adjudicate.cohort), and tests/test_compiled.py runs
every pack's embedded tests through both.

The generated text holds no value from a pack: literals and parameters are bound as constants
(`c0`, `c1`, ...) and fact names as string literals written by `repr`, so no pack text is ever
executed as code.
"""
from __future__ import annotations

import json
import threading
from decimal import Decimal
from typing import Any, Mapping

from engine.errors import EvaluationError
from engine.rules.model import AllOf, AnyOf, AtLeast, Compare, FactRef, NotOf, RuleRef
from engine.evaluate.compare import compare, fact_difference, factref_times, literal
from engine.evaluate.facts import FactSheet
from engine.evaluate.logic import Outcome, Tri
from engine.evaluate.plan import Plan
from engine.evaluate.values import normalize

_ORDER = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
_OUT = {0: Outcome.NOT_MET, 2: Outcome.MET}
_OI = {Outcome.NOT_MET: 0, Outcome.UNKNOWN: 1, Outcome.MET: 2}


class _Missing:
    __slots__ = ()


def _bad(left: Any, right: Any) -> bool:
    raise EvaluationError(f"cannot order {left!r} against {right!r}")


def _isin(x: Any, members: frozenset) -> bool:
    try:
        return (type(x), x) in members
    except TypeError:   # an unhashable value equals no literal (compare: exact type and ==)
        return False


def _between(x: Any, lo: Any, hi: Any) -> bool:
    return compare("gte", x, lo) and compare("lte", x, hi)


def _atleast(k: int, parts: tuple[int, ...]) -> int:
    met = parts.count(2)
    if met >= k:
        return 2
    return 0 if met + parts.count(1) < k else 1


class _Gen:
    """Writes one stratum's expressions; constants go to `ns`."""

    def __init__(self, ns: dict[str, Any], params: Mapping[str, Any]) -> None:
        self.ns, self.params, self.n = ns, params, 0

    def const(self, value: Any) -> str:
        name = f"c{len(self.ns)}"
        self.ns[name] = value
        return name

    def tmp(self) -> str:
        self.n += 1
        return f"t{self.n}"

    def expr(self, cond: Any) -> str:
        if isinstance(cond, AllOf):
            return self._chain([self.expr(c) for c in cond.all], stop=0, pick="<")
        if isinstance(cond, AnyOf):
            return self._chain([self.expr(c) for c in cond.any], stop=2, pick=">")
        if isinstance(cond, NotOf):
            return f"(2 - {self.expr(cond.not_)})"
        if isinstance(cond, RuleRef):
            return f"_OI[r[{cond.rule!r}][0]]"
        if isinstance(cond, AtLeast):
            return f"_atleast({int(cond.at_least)}, ({', '.join(self.expr(c) for c in cond.of)},))"
        if isinstance(cond, Compare):
            return self._compare(cond)
        raise EvaluationError(f"the compiled evaluator does not know the condition {type(cond).__name__}")

    def _chain(self, parts: list[str], stop: int, pick: str) -> str:
        """Kleene all (stop at 0, keep the least) / any (stop at 2, keep the greatest), left to right."""
        if len(parts) == 1:
            return parts[0]
        t, s = self.tmp(), self.tmp()
        rest = self._chain(parts[1:], stop, pick)
        return f"({stop} if ({t} := {parts[0]}) == {stop} else ({s} if ({s} := {rest}) {pick} {t} else {t}))"

    def _compare(self, c: Compare) -> str:
        op, o = c.op, c.operand
        ref = o if isinstance(o, FactRef) else None
        if c.param is not None:
            left = self.const(normalize(self.params[c.param]))
            if ref is not None:
                y = self.tmp()
                return (f"(1 if ({y} := v.get({ref.fact!r}, M)) is M else "
                        f"{self._test(op, None, left, y, ref)})")
            return self._test(op, o, left)
        f = c.fact
        if op == "exists":
            return f"(2 if {f!r} in v else (1 if {f!r} in u else 0))"
        if op == "missing":
            return f"(0 if {f!r} in v else (1 if {f!r} in u else 2))"
        x = self.tmp()
        if ref is not None:
            y = self.tmp()
            return (f"(1 if ({x} := v.get({f!r}, M)) is M or ({y} := v.get({ref.fact!r}, M)) is M "
                    f"else {self._test(op, None, x, y, ref)})")
        return f"(1 if ({x} := v.get({f!r}, M)) is M else {self._test(op, o, x)})"

    def _test(self, op: str, o: Any, x: str, y: str | None = None, ref: FactRef | None = None) -> str:
        """0 / 2 for a present left side `x` (an expression without side effects)."""
        if ref is not None:   # x - times * y against 0, exactly (dates: days)
            times = self.const(factref_times(ref, self.params))
            d = f"_fd({x}, {y}, {times})"
            if op == "eq":
                return f"(2 if {d} == D0 else 0)"
            if op == "ne":
                return f"(0 if {d} == D0 else 2)"
            return f"(2 if {d} {_ORDER[op]} D0 else 0)"
        if op == "in":
            members = frozenset((type(v), v) for v in (literal(m, self.params) for m in o))
            return f"(2 if _isin({x}, {self.const(members)}) else 0)"
        if op == "between":
            lo, hi = (self.const(literal(b, self.params)) for b in o)
            return f"(2 if _between({x}, {lo}, {hi}) else 0)"
        value = literal(o, self.params)
        k, tk = self.const(value), self.const(type(value))
        if op == "eq":
            return f"(2 if type({x}) is {tk} and {x} == {k} else 0)"
        if op == "ne":
            return f"(0 if type({x}) is {tk} and {x} == {k} else 2)"
        if op in _ORDER:
            return f"(2 if (({x} {_ORDER[op]} {k}) if type({x}) is {tk} else _bad({x}, {k})) else 0)"
        raise EvaluationError(f"the compiled evaluator does not know the operator {op!r}")


def first_test(cond: Any, params: Mapping[str, Any]) -> tuple[str, str] | None:
    """(fact, text) when the first test a condition evaluates is `{fact: F, eq: "text"}` (the
    condition itself, or the first part of an `all`, at any depth). Then a present text other than
    "text" makes the whole condition false before anything else in it is read."""
    while isinstance(cond, AllOf):
        cond = cond.all[0]
    if isinstance(cond, Compare) and cond.fact is not None and cond.op == "eq" and not isinstance(cond.operand, FactRef):
        value = literal(cond.operand, params)
        if type(value) is str:
            return cond.fact, value
    return None


class _Other:
    """A split fact's text that no row of the table tests for: every row guarded by it is refuted."""
    __slots__ = ()


_OTHER = _Other()


class Split:
    """One stratum for one combination of split-fact values: the evaluables still to evaluate (in
    plan order), their function, and the decision rows refuted by their first test (never
    evaluated: not met, nothing read). `memo` is the caller's (run_plan keeps its prebuilt results
    of the refuted rows there)."""
    __slots__ = ("visit", "keys", "function", "refuted", "kept", "memo")

    def __init__(self, visit: list[Any], keys: tuple[str, ...], function: Any, refuted: tuple[str, ...],
                 kept: dict[str, tuple[int, ...]]) -> None:
        self.visit, self.keys, self.function, self.refuted, self.memo = visit, keys, function, refuted, None
        # decision id -> the indices of its rows not refuted (a table whose rows are all in this stratum)
        self.kept = kept


class _CompiledPlan:
    """One plan compiled for one set of parameters: per stratum, its keys and its function; and
    per stratum the decision tables split by the fact their rows test first (`split`)."""

    def __init__(self, plan: Plan, params: Mapping[str, Any]) -> None:
        ns: dict[str, Any] = {"M": _MISSING, "_OI": _OI, "_atleast": _atleast, "_isin": _isin,
                              "_between": _between, "_bad": _bad, "_fd": fact_difference, "D0": Decimal(0)}
        gen = _Gen(ns, params)
        src: list[str] = []
        self.keys: list[tuple[str, ...]] = []
        for k, stratum in enumerate(plan.strata):
            self.keys.append(tuple(ev.key for ev in stratum))
            body = ", ".join(gen.expr(ev.cond) for ev in stratum)
            src.append(f"def s{k}(v, u, r):\n    return ({body},)\n")
        self.source = "\n".join(src)
        self._name = f"<compiled plan {plan.pack_id}/{plan.scope}>"
        code = compile(self.source, self._name, "exec")
        exec(code, ns)   # noqa: S102 - generated from the validated plan; pack values are constants
        self.functions = [ns[f"s{k}"] for k in range(len(plan.strata))]
        self._gen, self._ns, self._strata, self._row_keys = gen, ns, plan.strata, plan.row_keys
        self.split_facts, self._guards = _splits(plan, params)
        self._splits: list[dict[tuple[Any, ...], Split | None]] = [{} for _ in plan.strata]
        self._lock = threading.Lock()

    def split(self, k: int, values: Mapping[str, Any]) -> Split | None:
        """Stratum k for these facts, or None when no split applies (no split table in the stratum,
        or every split fact unknown, absent or not a text: then the full stratum is evaluated)."""
        facts = self.split_facts[k]
        if not facts:
            return None
        key = tuple((w if w in texts else _OTHER) if type(w := values.get(f)) is str else None
                    for f, texts in facts)
        cache = self._splits[k]
        try:
            return cache[key]
        except KeyError:
            pass
        with self._lock:   # one generator and namespace per plan: threads (an in-process Dask worker) take turns
            if key not in cache:
                cache[key] = self._build(k, dict(zip((f for f, _ in facts), key)))
            return cache[key]

    def _build(self, k: int, known: dict[str, Any]) -> Split | None:
        visit, refuted = [], []
        for ev, guard in zip(self._strata[k], self._guards[k]):
            if guard is not None and known.get(guard[0]) is not None and known[guard[0]] != guard[1]:
                refuted.append(ev.key)
            else:
                visit.append(ev)
        if not refuted:
            return None
        name = f"s{k}_{len(self._ns)}"
        body = ", ".join(self._gen.expr(ev.cond) for ev in visit)
        source = f"def {name}(v, u, r):\n    return ({body}{',' if visit else ''})\n"
        exec(compile(source, self._name, "exec"), self._ns)   # noqa: S102 - as above
        gone = set(refuted)
        here = {ev.key for ev in self._strata[k]}
        kept = {d: tuple(j for j, key in enumerate(keys) if key not in gone)
                for d, keys in self._row_keys.items() if gone.intersection(keys) and here.issuperset(keys)}
        return Split(visit, tuple(ev.key for ev in visit), self._ns[name], tuple(refuted), kept)


def _splits(plan: Plan, params: Mapping[str, Any]) -> tuple[list[tuple[tuple[str, frozenset[str]], ...]],
                                                           list[list[tuple[str, str] | None]]]:
    """Per stratum, the split facts (with the texts rows test them for) and each evaluable's guard.
    A decision table is split by the fact most of its rows test first, when they test it for at
    least two texts; rules, transitions and other tables' rows are never refuted this way."""
    rows: dict[str, list[tuple[str, str] | None]] = {}
    for stratum in plan.strata:
        for ev in stratum:
            if ev.decision is not None:
                rows.setdefault(ev.decision, []).append(first_test(ev.cond, params))
    chosen: dict[str, str] = {}
    for dec, guards in rows.items():
        by_fact: dict[str, set[str]] = {}
        count: dict[str, int] = {}
        for g in guards:
            if g is not None:
                by_fact.setdefault(g[0], set()).add(g[1])
                count[g[0]] = count.get(g[0], 0) + 1
        best = max(sorted(count), key=lambda f: count[f], default=None)
        if best is not None and len(by_fact[best]) >= 2:
            chosen[dec] = best
    facts_of, guards_of = [], []
    for stratum in plan.strata:
        texts: dict[str, set[str]] = {}
        guards: list[tuple[str, str] | None] = []
        for ev in stratum:
            g = first_test(ev.cond, params) if ev.decision is not None else None
            if g is not None and chosen.get(ev.decision) == g[0]:
                texts.setdefault(g[0], set()).add(g[1])
                guards.append(g)
            else:
                guards.append(None)
        facts_of.append(tuple((f, frozenset(t)) for f, t in sorted(texts.items())))
        guards_of.append(guards)
    return facts_of, guards_of


_MISSING = _Missing()
_CACHE: dict[tuple[Any, ...], _CompiledPlan] = {}


_PLANS: dict[int, tuple[Plan, Any]] = {}   # id(plan) -> (the plan, its identity key): asked per evaluation


def compiled_plan(plan: Plan, pack_identity: Mapping[str, str], params: Mapping[str, Any]) -> _CompiledPlan:
    """The plan compiled for these parameters (once per process). `pack_identity` is the plan's
    pack's (a plan object belongs to one pack)."""
    try:   # parameters are scalars (numbers, text, dates): hashing them is cheaper than encoding
        # names and values in order, and their types (True == 1 == Decimal(1)); another order
        # of the same parameters only compiles the plan once more
        pkey: Any = (tuple(params.items()), tuple(map(type, params.values())))
        hash(pkey)
    except TypeError:
        pkey = json.dumps(dict(params), sort_keys=True, default=str)
    entry = _PLANS.get(id(plan))
    if entry is None or entry[0] is not plan:
        if len(_PLANS) >= 512:   # registries loaded again and again (tests): the plans are let go
            _PLANS.clear()
        entry = _PLANS[id(plan)] = (plan, (tuple(sorted(pack_identity.items())), plan.scope))
    key = (entry[1], pkey)
    hit = _CACHE.get(key)
    if hit is None:
        hit = _CACHE[key] = _CompiledPlan(plan, params)
    return hit


class CompiledSession:
    def __init__(self, compiled: _CompiledPlan) -> None:
        self.c = compiled

    def evaluate(self, stratum: int, sheet: FactSheet, results: Mapping[str, Tri]) -> dict[str, Outcome]:
        values = self.c.functions[stratum](sheet.values, sheet.unknown, results)
        return {k: _OUT[t] for k, t in zip(self.c.keys[stratum], values) if t != 1}

    def split(self, stratum: int, sheet: FactSheet) -> Split | None:
        """The stratum split by its tables' first tested facts (None: evaluate it whole)."""
        return self.c.split(stratum, sheet.values)

    def evaluate_split(self, sp: Split, sheet: FactSheet, results: Mapping[str, Tri]) -> dict[str, Outcome]:
        """`evaluate` of the split's evaluables only (the refuted rows are not met)."""
        values = sp.function(sheet.values, sheet.unknown, results)
        return {k: _OUT[t] for k, t in zip(sp.keys, values) if t != 1}

    def close(self) -> None:
        pass


class CompiledEvaluator:
    """Evaluates plans by functions generated from them; the same interface as the durable-rules
    adapter and the reference evaluator."""

    name = "compiled"
    refuted_row_inputs = False   # a batch: no record keeps the values a refuted row read (run.Evaluator)

    def session(self, plan: Plan, pack_identity: Mapping[str, str], params: Mapping[str, Any],
                pack_file: str = "") -> CompiledSession:
        return CompiledSession(compiled_plan(plan, pack_identity, params))


__all__ = ["CompiledEvaluator", "Split", "compiled_plan", "first_test"]
