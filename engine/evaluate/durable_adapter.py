"""The durable-rules adapter: the only module that imports durable. It compiles a pack's
evaluation plan into a durable-rules ruleset and asks the C engine which rules hold.

How each pitfall of durable-rules 2.0.28 (DESIGN.md) is handled here:
- Three-valued logic: every rule is compiled as the formula for *met* and the formula for *not
  met* (each with explicit existence tests of every fact it reads); *unknown* is neither firing.
  With every input present three-valued logic cannot be unknown, so the *not met* formula is
  guarded by a flag "some input is missing" (one per distinct input set, set with the fact) and,
  when all inputs are present and *met* did not fire,
  *not met* is inferred (DESIGN.md: rules for the rarer outcomes, the third inferred; it spares
  the engine most firings). The reference evaluator then names the missing facts of an unknown.
- A missing attribute and a field set to null: null fields are never asserted (dropped).
- Fact-vs-fact comparisons (x <= 1.5 x y): durable treats a missing right-hand fact as true, so
  they are never compiled as such; x - 1.5 y is computed exactly (Decimal) and compared with 0.
- Facts, not events: `assert_fact`, one fact per stratum, with a unique id per session.
- Type discriminator: every condition tests `t` (the stratum tag), so the engine's own state
  fact never matches.
- No match: a fact no rule matches is a normal outcome (all unknown), not an exception.
- `$or` firing once per true disjunct: formulas are flattened to disjunctive normal form, one
  durable rule per conjunct, and firings are de-duplicated by the rule they belong to. DNF also
  keeps every condition flat, below the engine's expression limit (error 113 on nested `$or`).
- Swallowed action exceptions and the Host's racing dispatch thread: no Host, no Python actions.
  The C module is driven directly (assert, then drain the fired actions), so nothing runs on a
  background thread and any error surfaces here.
- 1,024 live sessions per ruleset, and the cost of a new session: creating a session costs in
  proportion to the ruleset's size (measured ~0.5 us per rule: ~220 us for a 400-rule pack, against
  ~10 us to assert, drain and retract one fact in a live session). So each ruleset keeps one live
  session per process: every fact gets a unique id, is drained, then retracted, so nothing
  accumulates (memory flat) and single-condition rules never join old facts. Sessions are never
  deleted (deleting one whose facts all went unhandled segfaults; one whose drain failed midway,
  with actions still queued, aborts the process): after a failed drain the ruleset moves on to a
  fresh session and leaves the interrupted one alone.
- The same fact again: since each fact is drained and retracted, what fires depends on the fact's
  content alone. Each ruleset remembers the outcomes durable-rules gave per distinct stratum fact
  (its JSON without the ids) in this process, bounded (`_MEMO_MAX`, emptied when full): a
  history's cycles, events with the same fields and a course's later items assert the same
  content again (measured on the cohort benchmark: 190 asserts per subject became 66). Every
  outcome is still durable-rules'; a fact it has not seen is asserted.
- Registration is once per process and immutable: rulesets are named by pack id + version +
  content sha256 + the hash of the parameter values folded into the conditions.
- Numbers: the engine's JSON reader refuses an exponent with no fraction before it (`1e-05`,
  `1e+16`: error 204), which json.dumps writes for small and large doubles (an MRD of 0.00001 %,
  a fact-vs-fact difference of 5e-05). Facts and rulesets are written by `durable_json`, with
  numbers in the pinned plain form of values.py (0.00001, 10000000000000000.0).
"""
from __future__ import annotations

import hashlib
import itertools
import json
from typing import Any, Mapping

import durable_rules_engine as _dre

from engine.errors import EvaluationError, PackError
from engine.rules.model import AllOf, AnyOf, AtLeast, Compare, FactRef, NotOf, RuleRef
from engine.evaluate.compare import NEGATE, fact_difference, factref_times, literal
from engine.evaluate.facts import FactSheet
from engine.evaluate.logic import OUTCOME_TEXT, Outcome, Tri
from engine.evaluate.plan import Plan
from engine.evaluate.values import durable_json, for_durable, normalize

MAX_CONJUNCTS = 512
_TRUE, _FALSE = ("const", True), ("const", False)


class _Compiled:
    """One registered ruleset: its handle and how to read its firings back."""

    def __init__(self, name: str, handle: int, fired_to: dict[str, tuple[str, Outcome]],
                 fact_keys: dict[str, str], diffs: list[tuple[str, str, str, Any]],
                 rule_keys: dict[str, str], inputs: dict[str, tuple[str, ...]],
                 strata: list[list[str]], groups: dict[tuple[str, ...], str],
                 stratum_keys: list[tuple[str, ...]], unknown_keys: dict[str, str] | None = None) -> None:
        self.name, self.handle, self.fired_to = name, handle, fired_to
        self.fact_keys, self.diffs, self.rule_keys = fact_keys, diffs, rule_keys
        self.unknown_keys = unknown_keys or {}
        self.inputs, self.strata, self.groups, self.stratum_keys = inputs, strata, groups, stratum_keys
        self.input_sets = {k: frozenset(v) for k, v in inputs.items()}
        # per stratum: the "some input missing" flags and the rule outcomes its rules read
        key_rule = {v: r for r, v in rule_keys.items()}
        self.stratum_groups = [[(frozenset(keys), groups[keys]) for keys in dict.fromkeys(
            inputs[ev] for ev in st if inputs[ev] in groups)] for st in strata]
        self.stratum_refs = [[(key_rule[rk], rk) for rk in dict.fromkeys(
            x for ev in st for x in inputs[ev] if x in key_rule)] for st in strata]
        self.live = _new_sid()   # the ruleset's live session in this process
        # the outcomes durable-rules gave for each distinct stratum fact (its JSON without the
        # session's ids) in this process: a fact is asserted, drained and retracted, so what fires
        # depends on its content alone; a history's cycles, an element's repeated fields and a
        # subject's later items often assert the same content again. Bounded: emptied when full.
        self.memo: dict[str, dict[str, Outcome]] = {}


def _new_sid() -> str:
    return f"s{next(_SESSION_COUNTER)}"


_REGISTRY: dict[str, _Compiled] = {}
_SESSION_COUNTER = itertools.count(1)
_CAPTURE: list[tuple[int, str, str]] | None = None
_MEMO_MAX = 4096   # distinct stratum facts remembered per ruleset (0: none; the pitfall tests assert each)


def capture_asserts(target: list[tuple[int, str, str]] | None) -> None:
    """Record every (ruleset handle, fact JSON, session id) asserted, for the benchmark that
    replays the same facts into durable-rules without our layers; None stops recording."""
    global _CAPTURE
    _CAPTURE = target


def replay(captured: list[tuple[int, str, str]]) -> int:
    """Assert captured facts straight into the engine the way the adapter does (assert, drain,
    retract, in the ruleset's live session): the raw rate. Returns the number of rule firings."""
    fired = 0
    for handle, payload, _sid in captured:
        code, state = _dre.assert_fact(handle, payload)
        if code == 1:
            continue
        r = _dre.start_action_for_state(handle, state)
        msg = r[1] if r else None
        while msg:
            fired += 1
            msg = _dre.complete_and_start_action(handle, state)
        _dre.retract_fact(handle, payload)
    return fired


def ruleset_name(pack_id: str, version: str, sha256: str, params: Mapping[str, Any]) -> str:
    ph = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{pack_id}@{version}#{sha256[:16]}~{ph}"


class _Compiler:
    def __init__(self, params: Mapping[str, Any]) -> None:
        self.params = params
        self.fact_keys: dict[str, str] = {}
        self.unknown_keys: dict[str, str] = {}   # fact -> flag "this computed fact is unknown"
        self.rule_keys: dict[str, str] = {}
        self.diff_keys: dict[tuple, str] = {}
        self.diffs: list[tuple[str, str, str, Any]] = []

    def fkey(self, name: str) -> str:
        return self.fact_keys.setdefault(name, f"f{len(self.fact_keys)}")

    def ukey(self, name: str) -> str:
        return self.unknown_keys.setdefault(name, "u" + self.fkey(name))

    def rkey(self, rule: str) -> str:
        return self.rule_keys.setdefault(rule, f"r{len(self.rule_keys)}")

    def dkey(self, x: str, y: str, times: Any) -> str:
        sig = (x, y, str(times))
        if sig not in self.diff_keys:
            k = f"d{len(self.diff_keys)}"
            self.diff_keys[sig] = k
            self.diffs.append((k, x, y, times))
        return self.diff_keys[sig]

    # formulas: ("and", [...]) / ("or", [...]) / ("leaf", json) / ("const", bool)
    def pair(self, cond: Any) -> tuple[tuple, tuple]:
        """(formula for met, formula for not met)."""
        if isinstance(cond, AllOf):
            ps = [self.pair(c) for c in cond.all]
            return ("and", [p[0] for p in ps]), ("or", [p[1] for p in ps])
        if isinstance(cond, AnyOf):
            ps = [self.pair(c) for c in cond.any]
            return ("or", [p[0] for p in ps]), ("and", [p[1] for p in ps])
        if isinstance(cond, NotOf):
            t, f = self.pair(cond.not_)
            return f, t
        if isinstance(cond, RuleRef):
            k = self.rkey(cond.rule)
            return ("leaf", {k: Outcome.MET.value}), ("leaf", {k: Outcome.NOT_MET.value})
        if isinstance(cond, AtLeast):
            # met: some k parts met; not met: some n-k+1 parts not met (then fewer than k can be)
            ps = [self.pair(c) for c in cond.of]
            k, n = cond.at_least, len(ps)
            met = ("or", [("and", [ps[i][0] for i in combo]) for combo in itertools.combinations(range(n), k)])
            not_met = ("or", [("and", [ps[i][1] for i in combo])
                              for combo in itertools.combinations(range(n), n - k + 1)])
            return met, not_met
        return self.compare(cond)

    def compare(self, c: Compare) -> tuple[tuple, tuple]:
        op = c.op
        if c.param is not None:  # parameters are constants of this ruleset
            from engine.evaluate.reference import evaluate_condition
            met = evaluate_condition(c, FactSheet(), self.params, {}).outcome is Outcome.MET
            return ("const", met), ("const", not met)
        k = self.fkey(c.fact)
        ex = ("leaf", {"$ex": {k: 1}})
        if op in ("exists", "missing"):
            # absent and not flagged unknown: decidedly absent; flagged unknown: neither fires
            absent = ("and", [("leaf", {"$nex": {k: 1}}), ("leaf", {"$nex": {self.ukey(c.fact): 1}})])
            return (ex, absent) if op == "exists" else (absent, ex)
        if op == "in":
            vals = [for_durable(literal(v, self.params)) for v in c.in_]
            return (("and", [ex, ("or", [_leaf("eq", k, v) for v in vals])]),
                    ("and", [ex] + [_leaf("ne", k, v) for v in vals]))
        if op == "between":
            lo, hi = (for_durable(literal(v, self.params)) for v in c.between)
            return (("and", [ex, _leaf("gte", k, lo), _leaf("lte", k, hi)]),
                    ("and", [ex, ("or", [_leaf("lt", k, lo), _leaf("gt", k, hi)])]))
        o = c.operand
        if isinstance(o, FactRef):
            d = self.dkey(c.fact, o.fact, factref_times(o, self.params))
            dex = ("leaf", {"$ex": {d: 1}})
            return ("and", [dex, _leaf(op, d, 0)]), ("and", [dex, _leaf(NEGATE[op], d, 0)])
        v = for_durable(literal(o, self.params))
        return ("and", [ex, _leaf(op, k, v)]), ("and", [ex, _leaf(NEGATE[op], k, v)])


def _leaf(op: str, key: str, value: Any) -> tuple:
    if op == "eq":
        return ("leaf", {key: value})
    return ("leaf", {"$" + ("neq" if op == "ne" else op): {key: value}})


def _dnf(f: tuple) -> list[list[dict]] | None:
    """Disjunctive normal form as a list of conjunctions (None: too large)."""
    kind = f[0]
    if kind == "const":
        return [[]] if f[1] else []
    if kind == "leaf":
        return [[f[1]]]
    parts = [_dnf(x) for x in f[1]]
    if any(p is None for p in parts):
        return None
    if kind == "or":
        out = [c for p in parts for c in p]
        return out if len(out) <= MAX_CONJUNCTS else None
    out = [[]]
    for p in parts:
        out = [a + b for a in out for b in p]
        if len(out) > MAX_CONJUNCTS:
            return None
    return out


_BY_KEY: dict[tuple, _Compiled] = {}   # (pack id, version, sha256, parameter items) -> ruleset: skips naming


def _leaf_key(leaf: dict[str, Any]) -> str:
    """The engine key a leaf tests: {key: value} or {"$op": {key: value}}."""
    (k, v), = leaf.items()
    if k.startswith("$"):
        (k, _), = v.items()
    return k


def compile_plan(plan: Plan, pack_identity: Mapping[str, str], params: Mapping[str, Any],
                 pack_file: str = "") -> _Compiled:
    try:
        key: tuple | None = (pack_identity["id"], pack_identity["version"], pack_identity["sha256"],
                             tuple(params.items()))
        hit = _BY_KEY.get(key)
    except TypeError:  # an unhashable parameter value: name it the long way
        key = hit = None
    if hit is not None:
        return hit
    name = ruleset_name(pack_identity["id"], pack_identity["version"], pack_identity["sha256"], params)
    if name in _REGISTRY:
        if key is not None:
            _BY_KEY[key] = _REGISTRY[name]
        return _REGISTRY[name]
    comp = _Compiler(params)
    rules: dict[str, Any] = {}
    fired_to: dict[str, tuple[str, Outcome]] = {}
    idx = 0
    inputs: dict[str, tuple[str, ...]] = {}
    groups: dict[tuple[str, ...], str] = {}
    stratum_keys: dict[int, set[str]] = {}
    for s, stratum in enumerate(plan.strata):
        for ev in stratum:
            t_f, f_f = comp.pair(ev.cond)
            # the engine keys of everything the condition reads: with all of them present, three-
            # valued logic cannot yield unknown, so "met did not fire" means not met (inferred, as
            # DESIGN.md measured); the not-met formula is needed only when some input is missing
            keys = tuple(comp.fkey(n) for n in ev.reads) + tuple(comp.rkey(r) for r in ev.refs)
            inputs[ev.key] = keys
            t_conj, f_conj = _dnf(t_f), _dnf(f_f)
            if f_conj is not None and keys:  # one flag per distinct input set: "some input missing"
                flag = groups.setdefault(keys, f"g{len(groups)}")
                # the flag is the FIRST test after the stratum tag: the engine shares alpha nodes
                # by prefix and pushes every matching sibling on a 64-entry stack (error 303,
                # ERR_MAX_STACK_SIZE); behind an unset flag the not-met tests are never visited
                f_conj = [[{flag: 1}] + c for c in f_conj]
            sent = stratum_keys.setdefault(s, set())  # the keys this stratum's rules test or need present
            sent.update(keys)
            for outcome, conj in ((Outcome.MET, t_conj), (Outcome.NOT_MET, f_conj)):
                if conj is None:
                    raise PackError(f"condition of {ev.key!r} is too large for the rules engine "
                                    f"(more than {MAX_CONJUNCTS} alternatives): split it into sub-rules",
                                    file=pack_file, key=ev.key)
                sent.update(_leaf_key(leaf) for c in conj for leaf in c)
                for j, c in enumerate(conj):
                    rname = f"e{idx}{'T' if outcome is Outcome.MET else 'F'}{j}"
                    rules[rname] = {"all": [{"m": {"$and": [{"t": f"s{s}"}] + c}}]}
                    fired_to[rname] = (ev.key, outcome)
            idx += 1
    if not rules:  # durable needs at least one rule; this one can never match
        rules["never"] = {"all": [{"m": {"$and": [{"t": "never"}]}}]}
    try:
        handle = _dre.create_ruleset(name, durable_json(rules))
    except Exception as exc:  # the C engine's error codes, e.g. 113
        raise PackError(f"the rules engine refused the compiled pack: {exc}", file=pack_file) from None
    # a stratum's fact carries only the base facts its rules test or need present (smaller JSON to
    # encode and for the engine to parse); flags and rule outcomes are added per evaluation
    per_evaluation = set(comp.rule_keys.values()) | set(groups.values())
    sent_keys = [tuple(sorted(stratum_keys.get(i, set()) - per_evaluation)) for i in range(len(plan.strata))]
    compiled = _Compiled(name, handle, fired_to, comp.fact_keys, comp.diffs, comp.rule_keys, inputs,
                         [[ev.key for ev in st] for st in plan.strata], groups, sent_keys, comp.unknown_keys)
    _REGISTRY[name] = compiled
    if key is not None:
        _BY_KEY[key] = compiled
    return compiled


class DurableSession:
    """One evaluation of one pack for one subject: one fact per stratum, asserted into the
    ruleset's live session, drained, then retracted."""

    def __init__(self, compiled: _Compiled, params: Mapping[str, Any]) -> None:
        self.c = compiled
        self.params = params
        self.eval_id = next(_SESSION_COUNTER)
        self._base: dict[str, Any] | None = None   # the sheet's facts in engine form, built once
        self._base_n: tuple[int, int] | None = None

    def evaluate(self, stratum: int, sheet: FactSheet, results: Mapping[str, Tri]) -> dict[str, Outcome]:
        c = self.c
        values = sheet.values
        # The engine form of the sheet is built once per evaluation. Between strata the sheet only
        # grows (a decision publishes new names `<pack>.<decision>[.field]`, never overwriting a
        # value; an undecided one becomes unknown), so (sheet identity, sizes) tells whether it must
        # be rebuilt.
        key = (id(values), len(values), len(sheet.unknown))
        if self._base is None or self._base_n != key:
            base: dict[str, Any] = {}
            for name, fk in c.fact_keys.items():
                v = values.get(name)
                if v is not None:
                    base[fk] = for_durable(v)
            for dk, x, y, times in c.diffs:
                if x in values and y in values:
                    base[dk] = for_durable(fact_difference(values[x], values[y], normalize(times)))
            if c.unknown_keys and sheet.unknown:
                for name, uk in c.unknown_keys.items():
                    if name in sheet.unknown and name not in values:
                        base[uk] = 1
            self._base, self._base_n = base, key
        base = self._base
        fact = {k: base[k] for k in c.stratum_keys[stratum] if k in base}
        for rule, rk in c.stratum_refs[stratum]:
            r = results.get(rule)
            if r is not None and r.outcome is not Outcome.UNKNOWN:
                fact[rk] = OUTCOME_TEXT[r.outcome]
        present = fact.keys()
        for keys, flag in c.stratum_groups[stratum]:
            if not keys <= present:
                fact[flag] = 1
        fact["t"] = f"s{stratum}"
        content = durable_json(fact)
        memo = c.memo if _MEMO_MAX else {}
        seen = memo.get(content)
        if seen is not None:
            return seen
        if len(memo) >= _MEMO_MAX:
            memo.clear()
        # the same text as encoding the fact with its ids (keys in insertion order, plain strings)
        payload = f'{content[:-1]},"id":"{self.eval_id}.{stratum}","sid":"{c.live}"}}'
        if _CAPTURE is not None:
            _CAPTURE.append((c.handle, payload, c.live))
        code, state = _dre.assert_fact(c.handle, payload)
        out: dict[str, Outcome] = {}
        if code == 1:  # MessageNotHandled: no rule matched (met, or not met with an input missing)
            out = memo[content] = self._infer_not_met(stratum, present, out)
            return out
        if code not in (0, 3):
            raise EvaluationError(f"rules engine returned code {code} for {c.name}")
        in_flight = False  # an action started by the engine and not yet completed
        try:
            r = _dre.start_action_for_state(c.handle, state)
            msg = r[1] if r else None
            in_flight = bool(msg)
            while msg:
                rname = msg[2:msg.index('"', 2)]
                k, outcome = c.fired_to[rname]
                prev = out.get(k)
                if prev is not None and prev is not outcome:
                    raise EvaluationError(f"{k}: both met and not met fired in {c.name}")
                out[k] = outcome
                in_flight = False
                msg = _dre.complete_and_start_action(c.handle, state)
                in_flight = bool(msg)
        except BaseException:
            # measured: deleting a session with actions still queued aborts the process, and so
            # does abandoning an action that was never started. Abandon only an action our own
            # code interrupted; leave that session alone (never deleted) and use a fresh one.
            if in_flight:
                _dre.abandon_action(c.handle, state)
            c.live = _new_sid()
            raise
        _dre.retract_fact(c.handle, payload)  # drained: the live session keeps nothing
        out = memo[content] = self._infer_not_met(stratum, present, out)
        return out

    def _infer_not_met(self, stratum: int, present: Any, out: dict[str, Outcome]) -> dict[str, Outcome]:
        """A rule whose every input is present and whose met formula did not fire is not met."""
        sets = self.c.input_sets
        for k in self.c.strata[stratum]:
            if k not in out and sets[k] <= present:
                out[k] = Outcome.NOT_MET
        return out

    def close(self) -> None:
        """Nothing to release: every fact was retracted from the ruleset's live session."""


class DurableEvaluator:
    """Evaluates plans through durable-rules."""

    name = "durable"
    refuted_row_inputs = True    # every row's values read: `audit explain` shows them (run.Evaluator)

    def session(self, plan: Plan, pack_identity: Mapping[str, str], params: Mapping[str, Any],
                pack_file: str = "") -> DurableSession:
        return DurableSession(compile_plan(plan, pack_identity, params, pack_file), params)


def registered_rulesets() -> list[str]:
    return sorted(_REGISTRY)
