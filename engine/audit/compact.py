"""The compact audit record (issue 15 item 3): what a decision's `input` and `trace` columns hold.

A record keeps what cannot be recomputed and nothing that can:
- `input.facts`: every fact the decision's pack evaluations ended with (what was read, the
  collections' aggregates, derived facts and decision outputs), as JSON values; `input.unknown`:
  the facts that may or may not have a value, with the facts that would decide them;
  `input.source_files`: where each fact came from, the file named once (`{file: {fact: field}}`);
  `input.sources`: the sources that name no file (`event A1`, `course state after A2`).
- `trace`: `{"format": "outcomes/1", "evaluations": [...]}`, one entry per pack evaluation in
  order: the pack, its scope (`course` for a course's outputs), and the ids of the rules,
  decision-table rows and transitions that were met, not met and unknown. When an evaluation's
  sheet differs from `input.facts` (two evaluations of one pack on different facts, facts another
  evaluation added), the entry says how: `facts` (its own values), `facts_unknown`,
  `facts_absent` (names it did not have that it can read).

The values each rule read and the facts an unknown rule misses are not stored: `audit explain`
(engine.audit.explain) evaluates the pinned pack again on the record's facts and reports them,
saying so if the recomputation disagrees with the recorded outcomes. Records written before this
format (a trace that is a list of rules with their inputs) are read as they are.

Within a cohort run, `parameters` holds only what differs from the run's parameters in force
(recorded once, in the run's start record); outside a run every record holds its parameters.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from engine.evaluate.logic import OUTCOME_TEXT, Outcome
from engine.evaluate.values import to_json

FORMAT = "outcomes/1"
OUTCOMES = ("met", "not_met", "unknown")


def is_compact(trace: Any) -> bool:
    """A trace in the compact format (else the full list of format 1, or empty)."""
    return isinstance(trace, dict) and trace.get("format") == FORMAT


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def compact_parts(results: Iterable[Any], snapshot: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(input, trace) of a record from its pack results (each with the sheet it ended with) and the
    use case's snapshot (its `facts` and `sources`, plus anything else it keeps: a timeline, the
    course's items, the days of a cycle)."""
    results = list(results)
    facts: dict[str, Any] = {}
    unknown: dict[str, list[str]] = {}
    sources: dict[str, str] = {}
    evaluations: list[dict[str, Any]] = []
    sheets = []
    for r in results:
        e: dict[str, Any] = {"pack": r.pack["id"]}
        if r.scope != "main":
            e["scope"] = r.scope
        groups: dict[str, list[str]] = {}
        for rid, outcome in _outcomes(r):
            groups.setdefault(outcome, []).append(rid)
        for k in OUTCOMES:
            if k in groups:
                e[k] = groups[k]
        if r.fixed:   # a course item's outputs the committee decided, set after each stratum
            e["fixed"] = {k: to_json(v) for k, v in r.fixed.items()}
        evaluations.append(e)
        s = r.sheet
        sheets.append(s)
        if s is None:
            continue
        sources.update(s.sources)
        if not facts and not unknown:   # the first sheet is taken whole
            facts = {k: to_json(v) for k, v in s.values.items()}
            unknown = {n: list(s.missing_roots(n)) for n in s.unknown}
            continue
        own: dict[str, Any] = {}
        own_unknown: dict[str, list[str]] = {}
        for k, v in s.values.items():
            j = to_json(v)
            if k in facts:
                if not _same(facts[k], j):
                    own[k] = j
            elif k in unknown:
                own[k] = j
            else:
                facts[k] = j
        for n in s.unknown:
            roots = list(s.missing_roots(n))
            if n in facts or (n in unknown and unknown[n] != roots):
                own_unknown[n] = roots
            elif n not in unknown:
                unknown[n] = roots
        if own:
            e["facts"] = own
        if own_unknown:
            e["facts_unknown"] = own_unknown
    dropped = _drop_recomputed(results, facts, unknown, evaluations)
    given = snapshot.get("facts") or {}
    for k, v in given.items():
        if k not in facts and k not in unknown and k not in dropped:
            facts[k] = v
    for k, v in (snapshot.get("sources") or {}).items():
        sources.setdefault(k, v)
    if len(results) > 1 or len(facts) + len(unknown) > _size(sheets[0] if sheets else None):
        for e, s, r in zip(evaluations, sheets, results):
            if s is None or r.definition is None:
                continue
            can_read = r.definition.can_read
            absent = sorted(n for n in (*facts, *unknown) if n not in s.values and n not in s.unknown
                            and n not in e.get("facts", ()) and can_read(n))
            if absent:
                e["facts_absent"] = absent
    out: dict[str, Any] = {k: v for k, v in snapshot.items() if k not in ("facts", "sources")}
    out["facts"] = facts
    if unknown:
        out["unknown"] = unknown
    out.update(compact_sources(sources))
    return out, {"format": FORMAT, "evaluations": evaluations}


def _drop_recomputed(results: list[Any], facts: dict[str, Any], unknown: dict[str, Any],
                     evaluations: list[dict[str, Any]]) -> set[str]:
    """Leave out the decision outputs that evaluating the record's packs again recomputes: an
    output of a pack evaluated here that no other pack of the record can read. Returns them."""
    prefixes = tuple(dict.fromkeys(r.pack["id"] + "." for r in results))
    dropped: set[str] = set()
    if not prefixes:
        return dropped
    defs = [(r.pack["id"], r.definition) for r in results]
    for names in (facts, unknown):
        for n in [n for n in names if n.startswith(prefixes)]:
            if all(d is not None and (pid + "." == n[:len(pid) + 1] or not d.can_read(n)) for pid, d in defs):
                del names[n]
                dropped.add(n)
    for e in evaluations:
        for key in ("facts", "facts_unknown"):
            own = e.get(key)
            if own:
                for n in [n for n in own if n.startswith(prefixes) and n not in facts and n not in unknown]:
                    if n.startswith(e["pack"] + "."):
                        del own[n]
                if not own:
                    del e[key]
    return dropped


def _outcomes(r: Any) -> Iterable[tuple[str, str]]:
    """(id, outcome) of what a record keeps of one evaluation, in trace order (PackResult.traced):
    every rule, the rows that decided or held a decision open, the transitions not refuted. Rows
    are named from the decisions, so a result that dropped its row results still records them."""
    for rr in r.rules.values():
        yield rr.id, OUTCOME_TEXT[rr.outcome]
    for d in r.decisions.values():
        keys = r.row_keys.get(d.id, ())
        for j in d.rows_met:
            yield (keys[j] if j < len(keys) else f"{d.id}#{j}"), "met"
        for j in d.rows_unknown:
            yield (keys[j] if j < len(keys) else f"{d.id}#{j}"), "unknown"
    for rr in r.transitions.values():
        if rr.outcome is not Outcome.NOT_MET:
            yield rr.id, OUTCOME_TEXT[rr.outcome]


def _size(sheet: Any) -> int:
    return len(sheet.values) + len(sheet.unknown) if sheet is not None else 0


def compact_sources(sources: Mapping[str, str]) -> dict[str, Any]:
    """`{"source_files": {file: {fact: field}}, "sources": {fact: text}}` (empty parts left out):
    a `file#field` source names its file once per record."""
    files: dict[str, dict[str, str]] = {}
    other: dict[str, str] = {}
    for k, v in sources.items():
        f, sep, rest = v.partition("#") if isinstance(v, str) else ("", "", "")
        if sep and f:
            files.setdefault(f, {})[k] = rest
        else:
            other[k] = v
    out: dict[str, Any] = {}
    if files:
        out["source_files"] = files
    if other:
        out["sources"] = other
    return out


def sources_of(inp: Any) -> dict[str, str]:
    """Fact -> where it came from (`file#field`, `event A1`, ...), for either record format."""
    if not isinstance(inp, Mapping):
        return {}
    out: dict[str, str] = {}
    src = inp.get("sources")
    if isinstance(src, Mapping):
        out.update({k: v for k, v in src.items() if isinstance(v, str)})
    files = inp.get("source_files")
    if isinstance(files, Mapping):
        for f, fields in files.items():
            if isinstance(fields, Mapping):
                out.update({k: f"{f}#{v}" for k, v in fields.items()})
    return out


def trace_rows(trace: Any) -> list[dict[str, Any]]:
    """[{pack, rule, outcome}] of a stored trace, either format, without recomputing anything (the
    values read are `audit explain`'s). In the compact format the met rows come in trace order,
    so the first met row of each decision table is the one that decided."""
    if is_compact(trace):
        out = []
        for e in trace.get("evaluations") or []:
            pid = e.get("pack")
            for k in OUTCOMES:
                out += [{"pack": pid, "rule": rid, "outcome": k} for rid in e.get(k) or []]
        return out
    if isinstance(trace, list):
        return [t for t in trace if isinstance(t, Mapping)]
    return []


def run_parameters(results_params: Mapping[str, Any], in_force: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters a record of a run keeps: those of each pack that differ from the run's."""
    return {pid: p for pid, p in results_params.items() if in_force.get(pid) != p}


__all__ = ["FORMAT", "is_compact", "compact_parts", "compact_sources", "sources_of", "trace_rows",
           "run_parameters"]
