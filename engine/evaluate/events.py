"""A subject's timeline: dated events of named kinds with their fields, as collections and the
course read them. The engine knows no kind: packs declare the kinds and fields they read, and a
record adapter (engine/facts/timeline.py for today's subject record) builds the events.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Iterable, Mapping

from engine.evaluate.values import normalize, to_json


@dataclass(eq=False)
class Event:
    """One dated event. `fields` hold values in canonical form (absent = not recorded); `unknown`
    names fields whose value may or may not exist (with the facts that would decide them) and
    `candidates` their possible values, when known (a course item's undecided outputs)."""
    kind: str
    date: dt.date
    id: str
    fields: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    order: int = 0                       # tie-break within a date: lower first
    unknown: dict[str, list[str]] = field(default_factory=dict)
    candidates: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    key: str | None = None               # a stable ordering key when the event has one (a folded item)

    @classmethod
    def of(cls, kind: str, date: dt.date, id: str, fields: Mapping[str, Any] | None = None,
           sources: Mapping[str, str] | None = None, order: int = 0) -> "Event":
        return cls(kind, date, id, {k: normalize(v) for k, v in (fields or {}).items() if v is not None},
                   dict(sources or {}), order)

    @cached_property
    def content_key(self) -> str:
        """Orders events of one kind on one date by what they say, not by where they are listed
        (shuffling a listing never changes an outcome)."""
        if self.key is not None:
            return self.key
        return repr(sorted((k, repr(to_json(v))) for k, v in self.fields.items()))

    def value(self, name: str) -> Any:
        """The element's value of a field (`event.date`, `event.id`, `event.kind` included)."""
        if name == "event.date":
            return self.date
        if name == "event.id":
            return self.id
        if name == "event.kind":
            return self.kind
        return self.fields.get(name)

    def missing_root(self, name: str) -> list[str]:
        """What to record so the field is known: `<event id>:<field>`."""
        return self.unknown.get(name) or [f"{self.id}:{name}"]


def _sorted(events: list[Event], first: Any) -> list[Event]:
    """`events` sorted by `first(e)`, then (content_key, id): the content key (a text of every
    field) is worked out only for events that tie on `first`. The same order as sorting by the
    whole key at once."""
    res = sorted(events, key=first)
    keys = [first(e) for e in res]
    i, n = 0, len(res)
    while i < n:
        j = i + 1
        while j < n and keys[j] == keys[i]:
            j += 1
        if j - i > 1:
            res[i:j] = sorted(res[i:j], key=lambda e: (e.content_key, e.id))
        i = j
    return res


@dataclass
class Timeline:
    """Every event of a subject. `incomplete` maps a kind whose listing the record does not say is
    complete to the fact that would say so (quantifiers that depend on it stay unknown)."""
    events: list[Event] = field(default_factory=list)
    incomplete: dict[str, str] = field(default_factory=dict)

    @cached_property
    def _by_kind(self) -> dict[str, list[Event]]:
        out: dict[str, list[Event]] = {}
        for e in self.events:
            out.setdefault(e.kind, []).append(e)
        return out

    @cached_property
    def _sorted(self) -> dict[tuple[str, ...], list[Event]]:
        return {}

    def of(self, kinds: Iterable[str]) -> list[Event]:
        """Events of these kinds in date order; ties by the event's order hint, then the order of
        `kinds`, then content. (A timeline is not changed once built: sorted once per kinds.)"""
        kinds = tuple(kinds)
        hit = self._sorted.get(kinds)
        if hit is not None:
            return hit
        out = [e for k in kinds for e in self._by_kind.get(k, ())]
        if len(kinds) == 1:
            res = _sorted(out, lambda e: (e.date, e.order))
        else:
            rank = {k: i for i, k in enumerate(kinds)}
            res = _sorted(out, lambda e: (e.date, e.order, rank[e.kind]))
        self._sorted[kinds] = res
        return res

    def snapshot(self, kinds: Iterable[str]) -> list[dict[str, Any]]:
        """The events of these kinds as the audit trail keeps them: kind, date, id, fields (JSON
        forms) and the record field each came from."""
        return [{"kind": e.kind, "date": e.date.isoformat(), "id": e.id,
                 "fields": {k: to_json(v) for k, v in sorted(e.fields.items())},
                 "sources": dict(sorted(e.sources.items()))} for e in self.of(kinds)]

    def with_events(self, extra: Iterable[Event]) -> "Timeline":
        return Timeline(self.events + list(extra), dict(self.incomplete))
