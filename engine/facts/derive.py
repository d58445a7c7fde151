"""Where a fact comes from: the packs' `from:` declarations evaluated over a subject record.

A pack says how each fact it reads is derived from the record (docs/rule-language.md, "Where a
fact comes from"): a record path, the first recorded of several sources, exact Decimal arithmetic,
a code looked up, a list searched or counted. This module evaluates those trees generically; it
names no field of the record itself. Every value cites the record fields it was read from
(`file#field`, several joined with `+`); an unrecorded input leaves the fact missing, never false.
"""
from __future__ import annotations

import datetime as dt
import functools
import types
import typing
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Iterable, Mapping

from pydantic import BaseModel

from engine.evaluate.facts import FactSheet
from engine.record import SubjectRecord, completed_years, field_source
from engine.rules.model import (FactDecl, FromAdd, FromAnyTrue, FromContains, FromCount, FromDivide,
                                FromFact, FromField, FromFind, FromFirstOf, FromIfEq, FromLookup, FromMin,
                                FromMultiply, FromRecorded, FromSubtract, FromYearsBetween)

LIST_ALL = "[*]"


@dataclass
class Value:
    """A derived value and the record paths it was read from (None value: missing)."""
    value: Any
    paths: list[str] = field(default_factory=list)
    named: list[str] = field(default_factory=list)   # when missing: the record fields that would give it


MISSING = Value(None)


# --- record paths ------------------------------------------------------------------------------

@functools.lru_cache(maxsize=4096)   # the packs' paths: a few hundred, read for every subject
def _segments(path: str) -> tuple[tuple[str, bool], ...]:
    return tuple((s[:-len(LIST_ALL)], True) if s.endswith(LIST_ALL) else (s, False) for s in path.split("."))


def resolve(record: BaseModel, path: str) -> list[tuple[Any, str]]:
    """(value, concrete path) at a record path; `[*]` gives one per list element. A None on the
    way gives (None, path)."""
    out: list[tuple[Any, str]] = [(record, "")]
    for name, every in _segments(path):
        nxt: list[tuple[Any, str]] = []
        for obj, where in out:
            here = f"{where}.{name}" if where else name
            value = getattr(obj, name, None) if obj is not None else None
            if every:
                for i, item in enumerate(value or ()):
                    nxt.append((item, f"{here}[{i}]"))
            else:
                nxt.append((value, here))
        out = nxt
    return out


def _one(record: BaseModel, path: str) -> tuple[Any, str]:
    hits = resolve(record, path)
    return hits[0] if hits else (None, path)


def _models(annotation: Any) -> tuple[list[type[BaseModel]], Any]:
    """(the models an annotation admits, its list item annotation or None)."""
    stack, models, item = [annotation], [], None
    while stack:
        a = stack.pop()
        origin = typing.get_origin(a)
        if origin is typing.Annotated:
            stack.append(typing.get_args(a)[0])
        elif origin in (typing.Union, types.UnionType):
            stack.extend(typing.get_args(a))
        elif origin is list:
            item = typing.get_args(a)[0]
        elif isinstance(a, type) and issubclass(a, BaseModel):
            models.append(a)
    return models, item


def path_problem(path: str, root: type[BaseModel] = SubjectRecord, want_list: bool | None = False) -> str | None:
    """Why a record path does not exist in the record model (None: it does). A list is entered
    with `[*]`; `want_list`: the path names a list itself (True), or may (None)."""
    current: list[type[BaseModel]] = [root]
    segs = _segments(path)
    for n, (name, every) in enumerate(segs):
        hits = [m.model_fields[name] for m in current if name in m.model_fields]
        if not hits:
            fields = sorted({f for m in current for f in m.model_fields})
            return f"no field {name!r} there (fields: {', '.join(fields)})"
        models, item = _models(hits[0].annotation)
        last = n == len(segs) - 1
        if every:
            if item is None:
                return f"{name!r} is not a list: drop [*]"
            models, _ = _models(item)
        elif item is not None and not (last and want_list is not False):
            return f"{name!r} is a list: write {name}[*]"
        if last:
            if want_list is True and (item is None or every):
                return f"{name!r} is not a list"
            return None
        if not models:
            return f"{name!r} has no fields"
        current = models
    return None


def element_models(path: str, root: type[BaseModel] = SubjectRecord) -> list[type[BaseModel]]:
    """The models of the elements of the list at `path` (for `where`, `take`, `field` checks)."""
    current: list[type[BaseModel]] = [root]
    for name, _every in _segments(path):
        hits = [m.model_fields[name] for m in current if name in m.model_fields]
        if not hits:
            return []
        models, item = _models(hits[0].annotation)
        current = _models(item)[0] if item is not None else models
    return current


# --- evaluation ----------------------------------------------------------------------------------

def _num(v: Any) -> Decimal | None:
    if v is None or isinstance(v, bool):
        return None
    if isinstance(v, (int, float, Decimal)):
        return Decimal(str(v)) if isinstance(v, float) else Decimal(v)
    return None


class Deriver:
    """Derives the declared facts of one record, each at most once (a `fact:` reference reuses it)."""

    def __init__(self, record: SubjectRecord, decls: Mapping[str, FactDecl]) -> None:
        self.record, self.decls = record, decls
        self.done: dict[str, Value] = {}

    def fact(self, name: str) -> Value:
        if name not in self.done:
            self.done[name] = MISSING      # a cycle reads missing (the loader refuses cycles)
            d = self.decls[name]
            v = self.eval(d.from_)
            if v.value is not None and d.missing_when and v.value in d.missing_when \
                    and type(v.value) in {type(x) for x in d.missing_when if x == v.value}:
                v = Value(None, [], [])
            self.done[name] = v
        return self.done[name]

    def operand(self, x: Any) -> Value:
        return self.eval(x) if isinstance(x, BaseModel) else Value(x)

    def eval(self, d: Any) -> Value:  # noqa: C901 (one branch per form, the language's table)
        r = self.record
        if isinstance(d, FromField):
            v, p = _one(r, d.field)
            return Value(v, [p]) if v is not None else MISSING
        if isinstance(d, FromFact):
            return self.fact(d.fact)
        if isinstance(d, FromRecorded):
            v, p = _one(r, d.recorded)
            parent_path, _, last = p.rpartition(".")
            parent = _one(r, parent_path)[0] if parent_path else r
            given = v is not None and parent is not None and last in parent.model_fields_set
            return Value(True, [p]) if given else Value(None, [], [d.recorded])
        if isinstance(d, FromFirstOf):
            named: list[str] = []
            for alt in d.first_of:
                v = self.eval(alt)
                if v.value is not None:
                    return v
                named += v.named
            return Value(None, [], named)
        if isinstance(d, (FromAdd, FromSubtract, FromMultiply, FromDivide)):
            return self._arith(d)
        if isinstance(d, FromYearsBetween):
            a, b = (self.eval(x) for x in d.years_between)
            if not isinstance(a.value, dt.date) or not isinstance(b.value, dt.date):
                return Value(None, [], a.named + b.named)
            return Value(completed_years(a.value, b.value), a.paths + b.paths)
        if isinstance(d, FromLookup):
            v = self.eval(d.lookup.of)
            if v.value is None or str(v.value) not in d.lookup.table:
                return Value(None, [], v.named)
            return Value(d.lookup.table[str(v.value)], v.paths)
        if isinstance(d, FromIfEq):
            v = self.eval(d.if_eq.of)
            if v.value is None:
                return v
            hit = v.value == d.if_eq.equals and isinstance(v.value, bool) == isinstance(d.if_eq.equals, bool)
            out = self.operand(d.if_eq.then if hit else d.if_eq.else_)
            return Value(out.value, v.paths + out.paths, out.named)
        if isinstance(d, FromContains):
            return self._contains(d)
        if isinstance(d, FromFind):
            for item, p in self._elements(d.find.in_):
                if self._matches(item, d.find.where):
                    got = getattr(item, d.find.take, None)
                    return Value(got, [p]) if got is not None else MISSING
            return MISSING
        if isinstance(d, FromCount):
            items, listed = self._elements(d.count.in_), _one(r, d.count.in_)
            if listed[0] is None:
                return MISSING
            on = self.eval(d.count.active_on) if d.count.active_on is not None else None
            n = 0
            for item, _ in items:
                end = getattr(item, "end_date", None)
                if on is not None and isinstance(on.value, dt.date) and end is not None and end < on.value:
                    continue
                n += self._matches(item, d.count.where)
            return Value(n, [listed[1]])
        if isinstance(d, FromAnyTrue):
            listed = _one(r, d.any_true.in_)
            if listed[0] is None:
                return MISSING
            seen = [getattr(item, d.any_true.field, None) for item, _ in self._elements(d.any_true.in_)]
            value = True if any(s is True for s in seen) else (None if None in seen else False)
            return Value(value, [listed[1]]) if value is not None else MISSING
        if isinstance(d, FromMin):
            hits = [(v, p) for v, p in resolve(r, d.min) if v is not None]
            if not hits:
                return MISSING
            v, p = min(hits, key=lambda h: h[0])
            return Value(v, [p])
        raise AssertionError(f"unknown derivation {d!r}")

    def _arith(self, d: Any) -> Value:
        op = next(k for k in ("add", "subtract", "multiply", "divide") if hasattr(d, k))
        vals = [self.operand(x) for x in getattr(d, op)]
        nums = [_num(v.value) for v in vals]
        paths = [p for v in vals for p in v.paths]
        if any(n is None for n in nums):
            return Value(None, [], [m for v in vals for m in v.named])
        acc = nums[0]
        try:
            for n in nums[1:]:
                acc = acc + n if op == "add" else acc - n if op == "subtract" else acc * n if op == "multiply" else acc / n
        except (ZeroDivisionError, InvalidOperation):
            return MISSING
        return Value(acc, paths)

    def _contains(self, d: FromContains) -> Value:
        c = d.contains
        listed, where = _one(self.record, c.field)
        if listed is None:
            return MISSING
        for i, code in enumerate(listed):
            if code == c.value:
                return Value(True, [f"{where}[{i}]"])
        if c.when_recorded is not None:
            flag = _one(self.record, c.when_recorded)[0]
            if flag is False or (flag is None and not listed):
                return MISSING
        return Value(False, [where])

    def _elements(self, path: str) -> list[tuple[Any, str]]:
        listed, where = _one(self.record, path)
        return [(item, f"{where}[{i}]") for i, item in enumerate(listed or ())]

    @staticmethod
    def _matches(item: Any, where: Mapping[str, Any]) -> bool:
        return all(getattr(item, k, None) == v for k, v in where.items())


def declared_facts(packs: Iterable[Any]) -> list[FactDecl]:
    """The facts the packs declare, each name once (the declaration with a `from:` first; a trial's
    packs derive one fact one way: engine/rules/protocol.py check_fact_sources)."""
    out: dict[str, FactDecl] = {}
    for pack in packs:
        for d in pack.manifest.facts:
            if d.name not in out or (out[d.name].from_ is None and d.from_ is not None):
                out[d.name] = d
    return list(out.values())


def _cite(paths: list[str]) -> str:
    """The record fields a value came from: one path, the object holding them all, or `a+b`."""
    unique = list(dict.fromkeys(paths))
    if len(unique) == 1:
        return unique[0]
    parents = {p.rpartition(".")[0] for p in unique}
    if len(parents) == 1 and "" not in parents:
        return parents.pop()
    return "+".join(unique)


def derive(record: SubjectRecord, decls: Iterable[FactDecl], path: str | Path = "<record>") -> FactSheet:
    """The fact sheet of the declared facts that have a `from:`, each value citing its record
    fields; a missing fact whose derivation names the record field that would record it keeps
    that name (`missing_because`)."""
    table = {d.name: d for d in decls if d.from_ is not None}
    deriver = Deriver(record, table)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    because: dict[str, list[str]] = {}
    for name in table:
        v = deriver.fact(name)
        if v.value is not None:
            values[name] = v.value
            sources[name] = field_source(str(path), _cite(v.paths))
        elif v.named:
            because[name] = sorted(set(v.named))
    sheet = FactSheet.of(values, sources)
    sheet.missing_because.update(because)
    return sheet


def _named_codes(decls: tuple[FactDecl, ...]) -> dict[str, set[Any]]:
    """Record list path -> the codes the declarations name there (a property of the packs alone:
    worked out once per set of declarations, not once per subject)."""
    key = tuple(map(id, decls))
    hit = _NAMED.get(key)
    if hit is not None:   # the entry holds the declarations: their ids cannot be reused meanwhile
        return hit[1]
    named: dict[str, set[Any]] = {}
    for d in decls:
        for node in _nodes(d.from_):
            if isinstance(node, FromContains):
                named.setdefault(node.contains.field, set()).add(node.contains.value)
            elif isinstance(node, FromFind) and len(node.find.where) == 1:
                (key_, value), = node.find.where.items()
                named.setdefault(f"{node.find.in_}.{key_}", set()).add(value)
    if len(_NAMED) >= 16:
        _NAMED.clear()
    _NAMED[key] = (decls, named)
    return named


_NAMED: dict[tuple[int, ...], tuple[tuple[FactDecl, ...], dict[str, set[Any]]]] = {}


def unread_codes(record: SubjectRecord, decls: Iterable[FactDecl]) -> list[tuple[str, Any]]:
    """(concrete path, value) of every code in a record list that some declaration searches
    (`contains`, or `find` by one field) but none names: a value no pack reads decides nothing."""
    named = _named_codes(tuple(decls))
    out: list[tuple[str, Any]] = []
    for path, values in named.items():
        lst, _, key = path.rpartition(".")
        listed, where = _one(record, path)
        if isinstance(listed, list):          # a list of codes
            out += [(f"{where}[{i}]", c) for i, c in enumerate(listed) if c not in values]
            continue
        items, lwhere = _one(record, lst)      # a list of objects searched by one field
        for i, item in enumerate(items if isinstance(items, list) else ()):
            c = getattr(item, key, None)
            if c is not None and c not in values:
                out.append((f"{lwhere}[{i}].{key}", c))
    return out


def _nodes(d: Any) -> Iterable[Any]:
    """Every node of a derivation tree."""
    if not isinstance(d, BaseModel):
        return
    yield d
    for name in type(d).model_fields:
        v = getattr(d, name)
        for x in (v if isinstance(v, list) else [v]):
            yield from _nodes(x)


def nodes(d: Any) -> list[Any]:
    return list(_nodes(d))


# --- load-time checks ------------------------------------------------------------------------------

def _walk_keys(d: Any, path: tuple) -> Iterable[tuple[Any, tuple]]:
    """Every node of a derivation with its YAML key path (aliases as written: in, else)."""
    if not isinstance(d, BaseModel):
        return
    yield d, path
    for name, f in type(d).model_fields.items():
        key = f.alias or name
        v = getattr(d, name)
        if isinstance(v, list):
            for i, x in enumerate(v):
                yield from _walk_keys(x, path + (key, i))
        else:
            yield from _walk_keys(v, path + (key,))


def check_from(facts: list[FactDecl], fail: Any) -> None:
    """Every `from:` reads record paths the subject record has, element fields its lists have, and
    only facts of the same pack that have a `from:` (no cycle). `fail(msg, *key path, expected=)`."""
    own = {d.name: d for d in facts if d.from_ is not None}
    for i, d in enumerate(facts):
        base = ("facts", i)
        if d.from_ is None:
            if d.missing_when is not None:
                fail(f"fact {d.name!r}: missing_when without from:", *base, "missing_when",
                     expected="a from: whose values it names")
            continue
        if d.name.startswith("finding."):
            fail(f"fact {d.name!r} is a coded finding: it comes from the record's findings, not a from:",
                 *base, "from", expected="no from: (or a name outside finding.)")
        for node, path in _walk_keys(d.from_, base + ("from",)):
            for key, rpath, want_list in _paths(node):
                problem = path_problem(rpath, want_list=want_list)
                if problem:
                    fail(f"fact {d.name!r} reads record path {rpath!r}: {problem}", *path, key,
                         expected="a field of the subject record (docs/subject-record.md)")
            for key, lpath, names in _element_fields(node):
                models = element_models(lpath)
                for n in names:
                    if models and not any(n in m.model_fields for m in models):
                        fields = sorted({f for m in models for f in m.model_fields})
                        fail(f"fact {d.name!r}: the elements of {lpath!r} have no field {n!r}", *path, key,
                             expected="one of: " + ", ".join(fields))
            if isinstance(node, FromFact) and node.fact not in own:
                fail(f"fact {d.name!r} reads fact {node.fact!r}, which this pack does not derive", *path, "fact",
                     expected="a fact declared in this pack's facts: with a from:")
    for name in own:   # `fact:` references form no cycle
        _no_cycle(name, own, (), fail, facts)


def _paths(node: Any) -> list[tuple[str, str, bool]]:
    if isinstance(node, FromField):
        return [("field", node.field, False)]
    if isinstance(node, FromRecorded):
        return [("recorded", node.recorded, None)]
    if isinstance(node, FromMin):
        return [("min", node.min, False)]
    if isinstance(node, FromContains):
        out = [("contains", node.contains.field, True)]
        if node.contains.when_recorded:
            out.append(("contains", node.contains.when_recorded, False))
        return out
    if isinstance(node, FromFind):
        return [("find", node.find.in_, True)]
    if isinstance(node, FromCount):
        return [("count", node.count.in_, True)]
    if isinstance(node, FromAnyTrue):
        return [("any_true", node.any_true.in_, True)]
    return []


def _element_fields(node: Any) -> list[tuple[str, str, list[str]]]:
    if isinstance(node, FromFind):
        return [("find", node.find.in_, [*node.find.where, node.find.take])]
    if isinstance(node, FromCount):
        return [("count", node.count.in_, [*node.count.where] + (["end_date"] if node.count.active_on else []))]
    if isinstance(node, FromAnyTrue):
        return [("any_true", node.any_true.in_, [node.any_true.field])]
    return []


def _no_cycle(name: str, own: Mapping[str, FactDecl], stack: tuple, fail: Any, facts: list[FactDecl]) -> None:
    if name in stack:
        i = next(j for j, d in enumerate(facts) if d.name == name)
        fail(f"fact {name!r} is derived from itself ({' -> '.join(stack + (name,))})", "facts", i, "from")
    for node in _nodes(own[name].from_):
        if isinstance(node, FromFact) and node.fact in own:
            _no_cycle(node.fact, own, stack + (name,), fail, facts)


def record_fields(name: str, decls: Mapping[str, FactDecl]) -> list[str]:
    """The record fields a declared fact's `from:` reads (through `fact:` references): what to
    record so that a missing fact can be derived. [] for a fact without `from:`."""
    out: list[str] = []
    seen: set[str] = set()

    def visit(n: str) -> None:
        if n in seen or n not in decls or decls[n].from_ is None:
            return
        seen.add(n)
        for node in _nodes(decls[n].from_):
            if isinstance(node, FromFact):
                visit(node.fact)
            out.extend(p for _, p, _ in _paths(node) if p not in out)
    visit(name)
    return out
