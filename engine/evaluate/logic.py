"""Three-valued (Kleene) logic, as in CQL: a test on a missing fact is unknown, not false.

`all` is false if any part is false, else unknown if any part is unknown, else true; `any` is
the dual; `not` swaps true and false. An unknown result carries the missing facts behind it.
"""
from __future__ import annotations

from enum import Enum
from typing import Iterable, NamedTuple


class Outcome(str, Enum):
    MET = "met"
    NOT_MET = "not_met"
    UNKNOWN = "unknown"


class Tri(NamedTuple):
    outcome: Outcome
    missing: frozenset[str] = frozenset()


# Enum.value is a slow descriptor; the hot paths read an outcome's text from here
OUTCOME_TEXT: dict[Outcome, str] = {o: o.value for o in Outcome}

TRUE = Tri(Outcome.MET)
FALSE = Tri(Outcome.NOT_MET)


def unknown(missing: Iterable[str]) -> Tri:
    return Tri(Outcome.UNKNOWN, frozenset(missing))


def all_of(parts: Iterable[Tri]) -> Tri:
    missing: set[str] = set()
    any_unknown = False
    for p in parts:
        if p.outcome is Outcome.NOT_MET:
            return FALSE
        if p.outcome is Outcome.UNKNOWN:
            any_unknown = True
            missing |= p.missing
    return unknown(missing) if any_unknown else TRUE


def any_of(parts: Iterable[Tri]) -> Tri:
    missing: set[str] = set()
    any_unknown = False
    for p in parts:
        if p.outcome is Outcome.MET:
            return TRUE
        if p.outcome is Outcome.UNKNOWN:
            any_unknown = True
            missing |= p.missing
    return unknown(missing) if any_unknown else FALSE


def at_least(k: int, parts: list[Tri]) -> Tri:
    """At least k parts met: met when k are, not met when fewer than k can still be, else unknown
    (naming what the unknown parts miss)."""
    met = sum(1 for p in parts if p.outcome is Outcome.MET)
    if met >= k:
        return TRUE
    open_ = [p for p in parts if p.outcome is Outcome.UNKNOWN]
    if met + len(open_) < k:
        return FALSE
    return unknown(frozenset().union(*(p.missing for p in open_)))


def not_(p: Tri) -> Tri:
    if p.outcome is Outcome.MET:
        return FALSE
    if p.outcome is Outcome.NOT_MET:
        return TRUE
    return p
