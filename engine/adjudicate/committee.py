"""The committee's decisions: overrides checked against what the packs can decide, and the
decision in force that summaries, diffs and the report read.

Why this shape: an override is a new audit record that supersedes the one in force (the store
keeps both). The committee decides pack *outputs*: its fields are matched by name to the outputs
of the decision tables of the packs recorded with the machine decision (`crc` -> a `crc` field,
`mrd_status` -> field `status` of decision `mrd`, a scalar table by its id), the values must be
ones that table can produce, and together they must be one output the table can produce (a
category of NR with crc true is refused when every NR row says crc false). Fields the chosen
output fixes are filled in (NR -> crc false, orr false); the committee's outcome is stored
whole, so a reader never merges anything. A decision without packs (a course) is checked
against the machine outcome's own shape (same fields, same types).

The decision in force for (subject, use case, item) is the latest committee override that no
later override replaces, else the latest machine decision. It survives re-runs: a new machine
decision does not displace the committee's; `machine_disagrees` says when it now differs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping

from engine.errors import InputError

MIN_PREFIX = 6                       # a decision id may be abbreviated to this many characters
UNDECIDED_KEYS = ("candidates", "missing")   # engine bookkeeping of an undecided outcome


# --- naming a decision ---------------------------------------------------------------------------

def resolve_id(store: Any, ref: str) -> str:
    """A full decision id from an id or a unique prefix (at least MIN_PREFIX characters)."""
    ref = (ref or "").strip()
    if store.get(ref) is not None:
        return ref
    if len(ref) < MIN_PREFIX:
        raise InputError(f"no decision {ref}", field="decision id",
                         expected=f"a decision id or a unique prefix of at least {MIN_PREFIX} characters")
    hits = store.ids_with_prefix(ref, limit=6)
    if not hits:
        raise InputError(f"no decision {ref} (no id starts with it)", field="decision id")
    if len(hits) > 1:
        more = ", ".join(h[: len(ref) + 4] + "..." for h in hits[:5])
        raise InputError(f"decision prefix {ref} is ambiguous ({more})", field="decision id",
                         expected="a longer prefix")
    return hits[0]


# --- what a pack can decide -------------------------------------------------------------------------

@dataclass(frozen=True)
class Output:
    """One field a decision table produces, and every output (row `then` or default) it has."""
    pack: str
    decision: str
    field: str | None                 # None: a scalar table (its output is the value)
    outputs: tuple[Any, ...]          # the table's possible outputs, in row order

    @property
    def name(self) -> str:
        return f"{self.pack}.{self.decision}" + (f".{self.field}" if self.field else "")

    def values(self) -> list[Any]:
        """The literal values the field takes (a value copied from a fact is not listed: see `copied`)."""
        out: list[Any] = []
        for o in self.outputs:
            v = o.get(self.field) if self.field and isinstance(o, dict) else (None if self.field else o)
            if (self.field is None or (isinstance(o, dict) and self.field in o)) and not _copied(v) and v not in out:
                out.append(v)
        return out

    def copied(self) -> list[str]:
        """Facts some output copies into this field (`{fact: ...}`): the field may take their values."""
        return list(dict.fromkeys(v.fact for o in self.outputs for v in [_value_of(o, self.field)] if _copied(v)))


def _copied(v: Any) -> bool:
    """An output value copied from a fact when the row decides (`{fact: ...}` in the pack)."""
    from engine.rules.model import OutputOf
    return isinstance(v, OutputOf)


def _fits(output: Any, field: str | None, value: Any) -> bool:
    v = _value_of(output, field)
    return _copied(v) or (_json_kind(v) == _json_kind(value) and v == value)


def pack_outputs(pack: Any) -> dict[str, Output]:
    """Every name an override may use for this pack's outputs: the field name, `<decision>_<field>`
    and, for a scalar table, its id. A bare field name two tables share is not offered."""
    names: dict[str, list[Output]] = {}
    for d in pack.manifest.decisions:
        if d.hit_policy.value == "collect":
            continue
        outs = tuple([r.then for r in d.rows] + ([d.default] if d.default is not None else []))
        fields = sorted({k for o in outs if isinstance(o, dict) for k in o})
        if not fields:
            names.setdefault(d.id, []).append(Output(pack.id, d.id, None, outs))
        for f in fields:
            o = Output(pack.id, d.id, f, outs)
            names.setdefault(f, []).append(o)
            names.setdefault(f"{d.id}_{f}", []).append(o)
    return {k: v[0] for k, v in names.items() if len(v) == 1}


def leaves(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted path -> value of every non-mapping value."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping) and v:
            out.update(leaves(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _set(d: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for p in parents:
        d = d.setdefault(p, {})
    d[last] = value


def _json_kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    return "list" if isinstance(v, list) else "object"


def _packs_of(record: Any, registry: Any) -> list[Any]:
    packs = []
    for ident in record.packs or []:
        pid = ident.get("id") if isinstance(ident, dict) else None
        if pid is None:
            continue
        if pid not in registry.packs:
            raise InputError(f"decision {record.decision_id} was made with pack {pid} {ident.get('version')}, "
                             "which is not loaded: its outputs cannot be checked", field="--outcome",
                             expected=f"the rules folder that holds {pid}")
        packs.append(registry.packs[pid])
    return packs


def committee_outcome(record: Any, given: Mapping[str, Any], registry: Any) -> tuple[dict[str, Any], list[str]]:
    """The whole outcome the committee's fields make of `record`'s outcome, checked against the
    outputs its packs can produce; returns (outcome, notes on what was filled in). InputError
    naming the field and what was expected otherwise."""
    if not isinstance(given, Mapping) or not given:
        raise InputError("the committee's outcome is empty", field="--outcome",
                         expected='a JSON object of the fields decided, e.g. {"category": "NR"}')
    machine = record.outcome if isinstance(record.outcome, dict) else {}
    have = leaves(machine)
    want = leaves(given)
    for path, value in want.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise InputError(f"{path} is not a finite number", field="--outcome", expected="a finite number")
    packs = _packs_of(record, registry)
    if (record.item or "").startswith("course/"):   # course outputs (pack course decisions): checked by shape
        packs = []
    outcome = _deep_copy(machine)
    notes: list[str] = []
    if not packs:   # no pack to ask: the machine outcome's own fields and types
        for path, value in want.items():
            if path not in have:
                raise InputError(f"this decision has no field {path!r}", field="--outcome",
                                 expected="one of " + ", ".join(sorted(have)))
            if have[path] is not None and _json_kind(value) != _json_kind(have[path]) and value is not None:
                raise InputError(f"{path} must be a {_json_kind(have[path])}, not {_json_kind(value)} "
                                 f"({value!r})", field="--outcome")
            _set(outcome, path, value)
        return outcome, notes
    catalogue: dict[str, Output] = {}
    for p in packs:
        for name, out in pack_outputs(p).items():
            if name not in UNDECIDED_KEYS:
                catalogue.setdefault(name, out)
    matched: dict[str, Output] = {}
    for path, value in want.items():
        leaf = path.rsplit(".", 1)[-1]
        out = catalogue.get(leaf)
        if out is None or (path not in have and leaf not in have):
            decided = sorted(p for p in have if p.rsplit(".", 1)[-1] in catalogue)
            raise InputError(f"{path!r} is not an output of {', '.join(f'{p.id} {p.version}' for p in packs)} "
                             "recorded in this decision", field="--outcome",
                             expected="one of " + ", ".join(decided))
        allowed, copied = out.values(), out.copied()
        if not any(_json_kind(value) == _json_kind(a) and value == a for a in allowed) and not (
                copied and _json_kind(value) in ("null", "boolean", "number", "string")):
            raise InputError(f"{path} = {value!r} is not an output {out.name} can produce", field="--outcome",
                             expected="one of " + ", ".join(map(repr, allowed))
                             + (f", or a value of {', '.join(copied)}" if copied else ""))
        matched[path] = out
    # jointly: one output of each table must carry every value given for that table
    by_table: dict[tuple[str, str], list[str]] = {}
    for path, out in matched.items():
        by_table.setdefault((out.pack, out.decision), []).append(path)
    for (pid, did), paths in by_table.items():
        out0 = matched[paths[0]]
        fits = [o for o in out0.outputs if all(_fits(o, matched[p].field, want[p]) for p in paths)]
        if not fits:
            given_txt = ", ".join(f"{p}={want[p]!r}" for p in paths)
            first = [o for o in out0.outputs if _value_of(o, out0.field) == want[paths[0]]]
            shown = [{matched[p].field: _shown(_value_of(o, matched[p].field)) for p in paths} for o in first]
            uniq = [x for i, x in enumerate(shown) if x not in shown[:i]]
            raise InputError(f"no output of {pid} {did} has {given_txt}", field="--outcome",
                             expected="what its rows produce: " + "; ".join(_output_text(o) for o in uniq))
        # fill the fields of this table that the machine outcome holds and the fitting outputs fix
        for path, old in have.items():
            leaf = path.rsplit(".", 1)[-1]
            o = catalogue.get(leaf)
            if path in want or o is None or (o.pack, o.decision) != (pid, did) or leaf in UNDECIDED_KEYS:
                continue
            vals = []
            for f in fits:
                v = _value_of(f, o.field)
                if v not in vals:
                    vals.append(v)
            if any(_copied(v) for v in vals):   # copied from a fact: the machine's value stands
                continue
            new = vals[0] if len(vals) == 1 else (old if old in vals else None)
            if new != old:
                _set(outcome, path, new)
                notes.append(f"{path}: {old!r} -> {new!r} (every {did} output with "
                             f"{', '.join(f'{p}={want[p]!r}' for p in paths)} gives {new!r})"
                             if len(vals) == 1 else f"{path}: {old!r} -> {new!r} (not fixed by the committee's choice)")
    for path, value in want.items():
        _set(outcome, path, value)
    for key in UNDECIDED_KEYS:   # the committee decided: nothing is left undecided
        if key in outcome and outcome[key] and key not in want:
            notes.append(f"{key} cleared (the committee decided)")
            outcome[key] = [] if isinstance(outcome[key], list) else None
    return outcome, notes


def _value_of(output: Any, field: str | None) -> Any:
    if field is None:
        return output
    return output.get(field) if isinstance(output, dict) else None


def _shown(v: Any) -> Any:
    return f"(the value of {v.fact})" if _copied(v) else v


def _output_text(o: Any) -> str:
    if isinstance(o, dict):
        return ", ".join(f"{k}={v!r}" for k, v in o.items())
    return repr(o)


def _deep_copy(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _deep_copy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deep_copy(v) for v in d]
    return d


# --- recording an override -------------------------------------------------------------------------

def record_override(store: Any, ref: str, given: Mapping[str, Any], *, reviewer: str, role: str, reason: str,
                    actor: str, registry: Any, supersede: bool = False,
                    key_path: Any = None) -> tuple[Any, list[str]]:
    """Check and record the committee's decision on `ref` (an id or unique prefix). Refused when
    the decision's subject and item already have a committee decision in force, unless
    `supersede` (the new record then supersedes that one). Returns (stored record, notes)."""
    for name, value in (("reviewer", reviewer), ("role", role), ("reason", reason)):
        if not isinstance(value, str) or not value.strip():
            raise InputError("required for an override", field=name, expected="a non-empty string")
    decision_id = resolve_id(store, ref)
    record = store.get(decision_id)
    if record.supersedes is None:
        latest = latest_machine(store, record.subject_id, record.use_case, record.item)
        if latest is not None and latest.decision_id != record.decision_id:
            raise InputError(f"decision {decision_id[:12]} of {record.subject_id} {record.item or record.use_case} "
                             f"is not the latest machine decision: {latest.decision_id[:12]} "
                             f"(run {latest.run_id or '-'}) is", field="decision id",
                             expected=f"override {latest.decision_id[:12]}")
    outcome, notes = committee_outcome(record, given, registry)
    committee = {"role": role.strip(), "given": dict(given), "named": decision_id,
                 "machine_outcome": record.outcome if record.supersedes is None else None,
                 "validated_against": [p.identity() for p in _packs_of(record, registry)],
                 "filled": notes}
    stored = store.override(decision_id, outcome, reviewer, reason, actor, committee=committee,
                            supersede=supersede, key_path=key_path)  # signed with the reviewer's key
    return stored, notes


# --- the decision in force -----------------------------------------------------------------------

Key = tuple[str, str, "str | None"]


def key_of(row: Mapping[str, Any] | Any) -> Key:
    if isinstance(row, Mapping):
        return (row["subject_id"], row["use_case"], row["item"])
    return (row.subject_id, row.use_case, row.item)


def latest_machine(store: Any, subject_id: str, use_case: str, item: str | None) -> Any:
    """The newest machine decision (no `supersedes`) of a key, or None."""
    return store.latest_machine(subject_id, use_case, item)


class Overrides:
    """Every committee decision in force, by key, read once (overrides are few). `as_of` limits
    them to records up to that seq (a report built from a given chain head)."""

    def __init__(self, store: Any, as_of: int | None = None) -> None:
        rows = [r for r in store.iter_override_rows() if as_of is None or r["seq"] <= as_of]
        replaced = {r["supersedes"] for r in rows}
        self.in_force: dict[Key, dict[str, Any]] = {}
        self.chain: dict[Key, list[dict[str, Any]]] = {}
        for r in rows:   # seq order: the last one not replaced wins
            self.chain.setdefault(key_of(r), []).append(r)
            if r["decision_id"] not in replaced:
                self.in_force[key_of(r)] = r

    def __len__(self) -> int:
        return len(self.in_force)

    def get(self, key: Key) -> dict[str, Any] | None:
        return self.in_force.get(key)

    def subjects(self) -> set[str]:
        return {k[0] for k in self.in_force}


def marrow_decisions(overrides: "Overrides") -> dict[str, dict[str, dict[str, Any]]]:
    """subject -> item (`<item id>/<profile>`) -> {given, decision_id} of every committee decision in
    force on a per-item response decision (not a course): what a re-run's course folds over."""
    import json
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (sid, uc, item), row in overrides.in_force.items():
        if uc != "marrow" or not item or item.startswith("course/"):
            continue
        inp = json.loads(row["input"]) if isinstance(row["input"], str) else row["input"]
        given = ((inp or {}).get("committee") or {}).get("given")
        if given is None:   # an override recorded before the committee's fields were kept: its outcome
            given = {k: v for k, v in json.loads(row["outcome"]).items() if k not in UNDECIDED_KEYS}
        out.setdefault(sid, {})[item] = {"given": given, "decision_id": row["decision_id"]}
    return out


def fixed_outputs(pack: Any, given: Mapping[str, Any]) -> dict[str, Any]:
    """The per-item decision outputs the committee's fields fix, as facts `<pack>.<decision>[.<field>]`:
    the fields it gave and every field that all the outputs consistent with them share (NR ->
    crc false, rank ...). Fields the pack does not produce are ignored (they are bookkeeping)."""
    catalogue = {k: v for k, v in pack_outputs(pack).items() if k not in UNDECIDED_KEYS}
    groups: dict[str, list[tuple[Output, Any]]] = {}
    for path, value in leaves(given).items():
        out = catalogue.get(path.rsplit(".", 1)[-1])
        if out is not None:
            groups.setdefault(out.decision, []).append((out, value))
    facts: dict[str, Any] = {}
    for did, pairs in groups.items():
        outputs = pairs[0][0].outputs
        fits = [o for o in outputs if all(_fits(o, out.field, v) for out, v in pairs)]
        if not fits:
            continue
        fields = sorted({k for o in fits if isinstance(o, dict) for k in o}) or [None]
        for f in fields:
            vals = []
            for o in fits:
                v = _value_of(o, f)
                if v not in vals:
                    vals.append(v)
            if len(vals) == 1 and not _copied(vals[0]):
                facts[f"{pack.id}.{did}" + (f".{f}" if f else "")] = vals[0]
        for out, v in pairs:   # what the committee said, said explicitly
            facts[f"{pack.id}.{did}" + (f".{out.field}" if out.field else "")] = v
    return facts


def in_force_row(row: Mapping[str, Any], overrides: Overrides) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(the row in force for this machine row's key, the committee row or None)."""
    o = overrides.get(key_of(row))
    return (o if o is not None else dict(row)), o


def short(outcome: Any) -> Any:
    """The headline value of an outcome (category, verdict, grade) for tables and diffs."""
    if isinstance(outcome, dict):
        for key in ("category", "verdict", "grade"):
            if key in outcome:
                return outcome[key]
    return outcome


def disagreement(machine_outcome: Any, committee_outcome_: Any) -> list[str]:
    """Dotted fields where the machine's outcome differs from the committee's (decided fields only)."""
    m, c = leaves(machine_outcome or {}), leaves(committee_outcome_ or {})
    return sorted(k for k in c if k not in UNDECIDED_KEYS and k in m and m[k] != c[k])


def role_of(row: Mapping[str, Any] | Any) -> str | None:
    inp = row["input"] if isinstance(row, Mapping) else row.input
    if isinstance(inp, str):
        import json
        inp = json.loads(inp)
    c = (inp or {}).get("committee") if isinstance(inp, dict) else None
    return c.get("role") if isinstance(c, dict) else None


def iter_in_force(rows: Iterable[Mapping[str, Any]], overrides: Overrides) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None]]:
    """Each machine row as (row in force, committee row or None)."""
    for r in rows:
        yield in_force_row(r, overrides)


__all__ = ["Overrides", "committee_outcome", "record_override", "resolve_id", "pack_outputs", "in_force_row",
           "iter_in_force", "disagreement", "short", "role_of", "key_of", "MIN_PREFIX"]
