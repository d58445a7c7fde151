"""Subject records <-> SDTM rows, both ways, from the mapping's `record.rules` (data; docs/sdtm.md).

A rule places record objects in one dataset:

    {dataset: LB, seq: LBSEQ, each: "on_study.assessments[]", index: [LBGRPID],
     set: {LBCAT: BONE MARROW}, fields: {LBDTC: date},
     tests: {code: LBTESTCD, result: LBORRES, items: {BLAST: marrow.blasts_pct, ...}}}

- `each` names the objects: "" the record itself, "a.b" a nested object, "a[]" every item of a
  list, "a{}" every value of a mapping (steps nest: "a[].b[]"); `index` names the variable that
  holds each step's list position (1, 2, ...) or mapping key, so that an object split over
  several datasets meets again;
- `set`: constants written on every row, and what tells which rows belong to the rule;
- `when`: record-side constants (a typed list's discriminator): only objects holding them are
  written; they are set on the objects read back;
- `fields`: variable -> relative path (or {path, type, terminology, supp, write_only, write_as,
  empty_list}); without `tests` / `values`, one row per object holding any of them; with them,
  repeated on each row. `supp: true` puts the value in SUPP-- (linked by --SEQ);
- `tests`: one row per value present, the code in `code`, the value in `result`, its unit in
  the item's `unit: [VARIABLE, value]` (read back: any other unit is a problem);
- `values`: one row per element of a list of scalars at `path`, in `result`, its position in
  `position`.

Values travel as text: booleans Y / N, numbers in plain decimal form, dates ISO 8601. Reading
gives a value the `type` the mapping declares (where the record does not say it: free-form
facts) and otherwise hands text to the record models, which validate it ("5" is 5, "Y" is true),
so the models stay the one place that says what a valid record is. Every value read keeps its
source, `DOMAIN USUBJID --SEQ n VARIABLE`.
"""
from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable, Iterator

from engine.sdtm.problems import ProblemReport

_STEP = re.compile(r"(\[\]|\{\})$")


@dataclass
class Rows:
    """The rows of every dataset written for a set of subjects (SUPP-- included)."""
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    unmapped: list[tuple[str, str]] = field(default_factory=list)   # (subject, record path) no rule covers


@dataclass
class Built:
    """One subject read back: the record (a dict of text and typed values) and each value's source."""
    usubjid: str
    record: dict[str, Any]
    sources: dict[str, str]


# --- paths -----------------------------------------------------------------------------------------------

def _steps(each: str) -> list[str]:
    """'a.b[].c{}.d' -> ['a.b[]', 'c{}', 'd']."""
    return [p for p in re.split(r"(?<=\[\]|\{\})\.", each) if p] if each else []


def objects(record: dict[str, Any], each: str) -> Iterator[tuple[tuple[Any, ...], str, dict[str, Any]]]:
    """(positions or keys, concrete path, object) of every object `each` names in a record dict."""
    def walk(node: Any, steps: list[str], keys: tuple[Any, ...], path: str) -> Iterator[tuple[tuple[Any, ...], str, dict[str, Any]]]:
        if not steps:
            if isinstance(node, dict):
                yield keys, path, node
            return
        step, rest = steps[0], steps[1:]
        m = _STEP.search(step)
        name = step[:-2] if m else step
        target = get(node, name)
        at = f"{path}.{name}" if path else name
        if m and m.group() == "[]":
            for i, item in enumerate(target or [], 1):
                yield from walk(item, rest, keys + (i,), f"{at}[{i - 1}]")
        elif m:
            for k, item in (target or {}).items():
                yield from walk(item, rest, keys + (k,), f"{at}.{k}")
        elif target is not None:
            yield from walk(target, rest, keys, at)
    yield from walk(record, _steps(each), (), "")


def get(node: Any, path: str) -> Any:
    for part in (path.split(".") if path else []):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _pattern(path: str) -> str:
    return re.sub(r"\[\d+\]", "[]", path)


def leaves(node: Any, prefix: str = "") -> Iterator[str]:
    """The pattern of every scalar (and empty list) of a record dict, lists as []."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from leaves(v, f"{prefix}.{k}" if prefix else k)
    elif isinstance(node, list):
        if not node:
            yield prefix + "[]"
        for v in node:
            yield from leaves(v, prefix + "[]")
    elif node is not None:
        yield prefix


def _spec(spec: Any) -> dict[str, Any]:
    return {"path": spec} if isinstance(spec, str) else dict(spec)


# --- values ---------------------------------------------------------------------------------------------

def as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "Y" if value else "N"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, float):
        return format(Decimal(repr(value)), "f")
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return str(value)


def _typed(text: str, kind: str | None) -> Any:
    """A value read back, typed as the mapping declares (ValueError when it cannot be)."""
    if kind is None or kind == "text":
        return text
    if kind == "bool":
        up = text.strip().upper()
        if up in ("Y", "N"):
            return up == "Y"
        raise ValueError(f"{text!r} is not Y or N")
    try:
        d = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a number") from None
    if kind == "integer":
        if d != d.to_integral_value():
            raise ValueError(f"{text!r} is not a whole number")
        return int(d)
    return d


# --- writing: records -> rows ----------------------------------------------------------------------------

class _Writer:
    def __init__(self, rules: list[dict[str, Any]], study: str, terminology: dict[str, dict[str, Any]]) -> None:
        self.rules, self.study = rules, study
        self.inverse = {var: {str(v): str(k) for k, v in table.items() if v is not None}
                        for var, table in terminology.items()}
        self.out = Rows()
        self.seqs: dict[tuple[str, str], int] = defaultdict(int)

    def encode(self, v: Any, s: dict[str, Any]) -> str | None:
        if s.get("write_as") is not None:
            return str(s["write_as"])
        term = s.get("terminology")
        if term and str(v) in self.inverse.get(term, {}):
            return self.inverse[term][str(v)]
        return as_text(v)

    def record(self, rec: dict[str, Any]) -> None:
        usubjid = rec["subject_id"]
        covered: set[str] = {"subject_id"}
        for rule in self.rules:
            for keys, path, obj in objects(rec, rule.get("each", "")):
                if any(str(obj.get(k)) != str(v) for k, v in (rule.get("when") or {}).items()):
                    continue
                covered.update(_pattern(f"{path}.{k}" if path else k) for k in rule.get("when") or {})
                self._object(rule, usubjid, keys, path, obj, covered)
        for leaf in leaves(rec):
            if leaf not in covered:
                self.out.unmapped.append((usubjid, leaf))

    def _value(self, obj: dict[str, Any], s: dict[str, Any], path: str, covered: set[str]) -> str | None:
        v = get(obj, s["path"])
        full = _pattern(f"{path}.{s['path']}" if path else s["path"])
        if s.get("empty_list"):
            if v == []:
                covered.add(full + "[]")
                return "Y"
            return None
        if v is None or isinstance(v, (dict, list)):
            return None
        if not s.get("write_only"):
            covered.add(full)
        return self.encode(v, s)

    def _object(self, rule: dict[str, Any], usubjid: str, keys: tuple[Any, ...], path: str, obj: dict[str, Any],
                covered: set[str]) -> None:
        ds = rule["dataset"]
        base = {"STUDYID": self.study, "DOMAIN": ds, "USUBJID": usubjid, **(rule.get("set") or {})}
        base.update({var: str(k) for var, k in zip(rule.get("index") or [], keys)})
        main, supp = {}, {}
        for var, spec in (rule.get("fields") or {}).items():
            s = _spec(spec)
            text = self._value(obj, s, path, covered)
            if text is not None:
                (supp if s.get("supp") else main)[var] = text
        tests, values = rule.get("tests"), rule.get("values")
        if tests:
            for code, spec in tests["items"].items():
                s = _spec(spec)
                text = self._value(obj, s, path, covered)
                if text is None:
                    continue
                row = dict(base, **main, **{tests["code"]: code, tests["result"]: text})
                if s.get("unit"):
                    row[s["unit"][0]] = s["unit"][1]
                self._emit(rule, usubjid, row, supp)
        elif values:
            items = get(obj, values["path"]) or []
            if items:
                covered.add(_pattern(f"{path}.{values['path']}[]" if path else values["path"] + "[]"))
            for i, v in enumerate(items, 1):
                self._emit(rule, usubjid, dict(base, **main, **{values["result"]: as_text(v), values["position"]: str(i)}),
                           supp)
        elif main or supp or rule.get("always"):
            self._emit(rule, usubjid, dict(base, **main), supp)

    def _emit(self, rule: dict[str, Any], usubjid: str, row: dict[str, Any], supp: dict[str, str]) -> None:
        ds, seqvar = rule["dataset"], rule.get("seq")
        if seqvar:
            self.seqs[(ds, usubjid)] += 1
            row[seqvar] = str(self.seqs[(ds, usubjid)])
        self.out.rows[ds].append(row)
        for qnam, qval in supp.items():
            self.out.rows[f"SUPP{ds}"].append({"STUDYID": self.study, "RDOMAIN": ds, "USUBJID": usubjid,
                                               "IDVAR": seqvar or "", "IDVARVAL": row[seqvar] if seqvar else "",
                                               "QNAM": qnam, "QLABEL": qnam, "QVAL": qval})


def write_rows(records: Iterable[dict[str, Any]], rules: list[dict[str, Any]], study: str,
               terminology: dict[str, dict[str, Any]]) -> Rows:
    """The SDTM rows of these record dicts (as `model_dump(mode="json", exclude_unset=True)` gives them)."""
    w = _Writer(rules, study, terminology)
    for rec in records:
        w.record(rec)
    return w.out


# --- reading: rows -> records --------------------------------------------------------------------------

class _Reader:
    def __init__(self, rules: list[dict[str, Any]], terminology: dict[str, dict[str, Any]], report: ProblemReport) -> None:
        self.rules, self.report = rules, report
        self.terms = {name: {str(k).upper(): v for k, v in table.items()} for name, table in terminology.items()}
        self.built: dict[str, Built] = {}

    def dataset(self, ds: Any) -> None:
        from engine.sdtm.checks import seq_label
        from engine.sdtm.mapping import DatasetSpec
        own = [r for r in self.rules if r["dataset"] == ds.name]
        if not own:
            return
        seqvar = next((r.get("seq") for r in own if r.get("seq")), None)
        spec = DatasetSpec(seq=seqvar)
        names = list(ds.columns)
        for i in range(len(ds)):
            row = {k: ds.columns[k][i] for k in names}
            usubjid = str(row.get("USUBJID") or "")
            where, seq = ds.where(i), seq_label(ds, spec, i)
            rule = next((r for r in own if self._matches(r, row)), None)
            if rule is None:
                self.report.add(where, usubjid, seq, None, f"no rule of the SDTM mapping reads this {ds.name} record "
                                "(an unknown test code or category)", expected="a record the trial's mapping describes")
                continue
            b = self.built.setdefault(usubjid, Built(usubjid, {"subject_id": usubjid}, {}))
            src = f"{ds.name} {usubjid} {seq}" if seq else f"{ds.name} {usubjid}"
            self._row(b, rule, row, src, where, seq)

    @staticmethod
    def _matches(rule: dict[str, Any], row: dict[str, Any]) -> bool:
        if any(str(row.get(k) or "").upper() != str(v).upper() for k, v in (rule.get("set") or {}).items()):
            return False
        tests = rule.get("tests")
        return not tests or str(row.get(tests["code"]) or "").upper() in {c.upper() for c in tests["items"]}

    def _row(self, b: Built, rule: dict[str, Any], row: dict[str, Any], src: str, where: str, seq: str | None) -> None:
        try:
            obj, path = self._target(b, rule, row)
        except ValueError as exc:
            self.report.add(where, b.usubjid, seq, ",".join(rule.get("index") or []), str(exc),
                            expected="a list position 1, 2, ... or a key")
            return
        for k, v in (rule.get("when") or {}).items():
            obj[k] = v
        ctx = (b, obj, path, src, where, seq)
        for var, spec in (rule.get("fields") or {}).items():
            s = _spec(spec)
            if not s.get("write_only"):
                self._put(ctx, s, row.get(var), var)
        tests, values = rule.get("tests"), rule.get("values")
        if tests:
            code = str(row.get(tests["code"]) or "").upper()
            s = _spec(next(v for c, v in tests["items"].items() if c.upper() == code))
            if s.get("unit"):
                var, want = s["unit"]
                got = row.get(var)
                if str(got or "") != str(want):
                    self.report.add(where, b.usubjid, seq, var, f"unit {got!r} for {tests['code']} {code}",
                                    expected=f"{want} (the unit the mapping reads)")
                    return
            self._put(ctx, s, row.get(tests["result"]), tests["result"])
        elif values:
            raw = row.get(values["position"])
            try:
                p = int(str(raw))
            except ValueError:
                self.report.add(where, b.usubjid, seq, values["position"], f"position {raw!r} is not a number")
                return
            holder = obj.setdefault("\0values", {}).setdefault(values["path"], {})
            holder[p] = row.get(values["result"])
            b.sources[f"{path}.{values['path']}[{p - 1}]" if path else f"{values['path']}[{p - 1}]"] = \
                f"{src} {values['result']}"

    def _target(self, b: Built, rule: dict[str, Any], row: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """The object a row fills (created on first use) and its path; lists are built as
        {position: item} dicts until `_finish`."""
        node: dict[str, Any] = b.record
        path = ""
        idx = list(rule.get("index") or [])
        for step in _steps(rule.get("each", "")):
            m = _STEP.search(step)
            name = step[:-2] if m else step
            parts = name.split(".")
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            at = f"{path}.{name}" if path else name
            if not m:
                node = node.setdefault(parts[-1], {})
                path = at
                continue
            var = idx.pop(0)
            raw = row.get(var)
            if m.group() == "[]":
                try:
                    p = int(str(raw))
                    if p < 1:
                        raise ValueError
                except ValueError:
                    raise ValueError(f"{var} {raw!r} is not the position of a list item") from None
                holder = node.get(parts[-1])
                if not isinstance(holder, dict) or "\0list" not in holder:
                    holder = node[parts[-1]] = {"\0list": True}
                node = holder.setdefault(p, {})
                path = f"{at}[{p - 1}]"
            else:
                if raw is None or str(raw) == "":
                    raise ValueError(f"{var} is empty (the key of a {name} entry)")
                node = node.setdefault(parts[-1], {}).setdefault(str(raw), {})
                path = f"{at}.{raw}"
        return node, path

    def _put(self, ctx: tuple, s: dict[str, Any], raw: Any, var: str) -> None:
        b, obj, path, src, where, seq = ctx
        if raw is None or raw == "":
            return
        full = f"{path}.{s['path']}" if path else s["path"]
        text = format(raw, "f") if isinstance(raw, Decimal) else str(raw)
        if s.get("empty_list"):
            if text.upper() == "Y":
                _ensure(obj, s["path"], [])
                b.sources[full] = f"{src} {var}"
            return
        term = s.get("terminology")
        value: Any = text
        if term:
            table = self.terms.get(term, {})
            if text.upper() not in table:
                self.report.add(where, b.usubjid, seq, var, f"{text!r} is not in the {term} terminology of the mapping",
                                expected=", ".join(sorted(table)))
                return
            value = table[text.upper()]
            if value is None:
                return
        else:
            try:
                value = _typed(text, s.get("type"))
            except ValueError as exc:
                self.report.add(where, b.usubjid, seq, var, str(exc), expected=f"a {s.get('type')} value")
                return
        old = _ensure(obj, s["path"], value, replace=True)
        if old is not None and str(old) != str(value):
            self.report.add(where, b.usubjid, seq, var, f"{full} read twice, {old!r} and {value!r}", expected="one value")
        b.sources[full] = f"{src} {var}"


def _ensure(node: dict[str, Any], path: str, value: Any, replace: bool = False) -> Any:
    parts = path.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    old = node.get(parts[-1])
    if replace or old is None:
        node[parts[-1]] = value
    return old


def _finish(node: Any) -> Any:
    """The {position: item} dicts as lists (position order); the read values lists put in place."""
    if isinstance(node, dict):
        if "\0list" in node:
            return [_finish(node[k]) for k in sorted(k for k in node if isinstance(k, int))]
        for path, vals in (node.pop("\0values", None) or {}).items():
            _ensure(node, path, [vals[p] for p in sorted(vals)], replace=True)
        return {k: _finish(v) for k, v in node.items()}
    return node


def read_records(datasets: dict[str, Any], rules: list[dict[str, Any]], terminology: dict[str, dict[str, Any]],
                 report: ProblemReport) -> dict[str, Built]:
    """Every subject the rows hold, built from the rows the rules match (module docstring). A row
    no rule matches, a value read twice with different values, a unit or terminology value the
    mapping does not know: problems of that row (file, USUBJID, --SEQ, variable)."""
    r = _Reader(rules, terminology, report)
    for ds in datasets.values():
        r.dataset(ds)
    for b in r.built.values():
        b.record = _finish(b.record)
    return r.built
