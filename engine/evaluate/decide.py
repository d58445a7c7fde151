"""Hit policies of decision tables (DMN style) over three-valued row outcomes.

- first: rows in priority order; the first met row wins, but an earlier unknown row could have
  won, so its output becomes a candidate too (INDETERMINATE unless every candidate agrees).
- unique: at most one row may be met; two met rows are a defect of the table (an error, never a
  silent pick).
- collect: every met row; unknown rows are possible additions.
A table whose unknown rows may all turn out false keeps "no row" (its default, or no output) as
a candidate, unless it declares `complete: true` (its rows cover every case, as DMN's
completeness indicator).
For table outputs with several fields, a field on which every candidate agrees is decided
(a CRc flag equal for CR and CRi is known even when the category is not).
An output field may copy a fact (`date: {fact: state.relapse_date}`): the caller resolves it; an
unknown fact leaves that field undecided (`Undecided`, with the facts it misses).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from engine.errors import EvaluationError
from engine.rules.model import Decision, HitPolicy
from engine.evaluate.logic import Outcome, Tri
from engine.evaluate.values import to_json


@dataclass(frozen=True)
class Undecided:
    """An output field copied from an unknown fact."""
    missing: tuple[str, ...]


def _json(v: Any) -> Any:
    if isinstance(v, Undecided):
        return None
    if isinstance(v, dict):
        return {k: _json(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_json(x) for x in v]
    return to_json(v)


@dataclass
class DecisionResult:
    id: str
    hit_policy: str
    status: str                      # decided | indeterminate
    value: Any                       # the output when decided (list for collect), else None
    candidates: list[Any] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)   # decided fields of dict outputs
    missing: list[str] = field(default_factory=list)
    rows_met: list[int] = field(default_factory=list)
    rows_unknown: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = {"id": self.id, "status": self.status, "value": _json(self.value)}
        if self.status != "decided" or self.hit_policy == "collect":
            d["candidates"] = _json(self.candidates)
        if self.fields:
            d["fields"] = _json(self.fields)
        if self.missing:
            d["missing"] = self.missing
        d["rows_met"] = self.rows_met
        if self.rows_unknown:
            d["rows_unknown"] = self.rows_unknown
        return d


def _unique(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def _undecided_in(v: Any) -> list[Undecided]:
    if isinstance(v, Undecided):
        return [v]
    if isinstance(v, dict):
        return [x for x in v.values() if isinstance(x, Undecided)]
    return []


def decide(dec: Decision, rows: Sequence[Tri] | Mapping[int, Tri], resolve: Callable[[Any], Any] | None = None,
           only: Sequence[int] | None = None) -> DecisionResult:
    """The table's result from its rows' outcomes; `resolve` turns `{fact: ...}` output fields into
    values (or `Undecided`). `only`: the indices of the rows that may be met or unknown, in order
    (`rows` holds those; every other row is not met)."""
    out = resolve or (lambda v: v)
    idx = range(len(rows)) if only is None else only
    met = [j for j in idx if rows[j].outcome is Outcome.MET]
    unk = [j for j in idx if rows[j].outcome is Outcome.UNKNOWN]
    policy = dec.hit_policy
    if policy is HitPolicy.collect:
        missing = sorted({m for j in unk for m in rows[j].missing})
        return DecisionResult(dec.id, policy.value, "indeterminate" if unk else "decided",
                              [out(dec.rows[j].then) for j in met], [out(dec.rows[j].then) for j in unk],
                              missing=missing, rows_met=met, rows_unknown=unk)
    if policy is HitPolicy.unique and len(met) > 1:
        raise EvaluationError(f"decision {dec.id!r} is a 'unique' table but rows {met} are all met "
                              f"({', '.join(repr(dec.rows[j].then) for j in met)}): the table overlaps")
    if policy is HitPolicy.first:
        first_met = met[0] if met else None
        relevant_unknown = [j for j in unk if first_met is None or j < first_met]
    else:
        first_met = met[0] if met else None
        relevant_unknown = [] if first_met is not None else unk
    candidates = [out(dec.rows[j].then) for j in relevant_unknown]
    if first_met is not None:
        candidates.append(out(dec.rows[first_met].then))
    elif not relevant_unknown:
        if dec.complete and dec.default is None:
            raise EvaluationError(f"decision {dec.id!r} is declared complete but no row is met")
        candidates.append(out(dec.default))
    elif dec.default is not None or not dec.complete:
        # every unknown row may yet be false: "no row" (the default, or no output) stays possible
        candidates.append(out(dec.default))
    fields: dict[str, Any] = {}
    if len(candidates) == 1:   # the usual case (one row met, none open before it): the same, directly
        only_one = candidates[0]
        open_fields = _undecided_in(only_one)
        if isinstance(only_one, dict):
            fields = {k: only_one[k] for k in sorted(only_one) if not isinstance(only_one[k], Undecided)}
    else:
        candidates = _unique(candidates)
        open_fields = [u for c in candidates for u in _undecided_in(c)]
        if all(isinstance(c, dict) for c in candidates) and candidates:
            keys = set().union(*candidates)
            for k in sorted(keys):
                vals = _unique([c.get(k) for c in candidates])
                if len(vals) == 1 and not isinstance(vals[0], Undecided):
                    fields[k] = vals[0]
    missing = sorted({m for j in relevant_unknown for m in rows[j].missing}
                     | {m for u in open_fields for m in u.missing})
    decided = len(candidates) == 1 and not open_fields
    return DecisionResult(dec.id, policy.value, "decided" if decided else "indeterminate",
                          candidates[0] if decided else None, candidates, fields,
                          [] if decided else missing, met, relevant_unknown)
