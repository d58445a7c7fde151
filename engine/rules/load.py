"""Load rule packs from `rules/<pack-id>/`: parse (yaml.safe_load), validate against the models,
check references, hash the content. A bad pack fails here with file, line and key, before
anything is evaluated.
"""
from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from engine.errors import PackError
from engine.yamlio import safe_load_with_node
from engine.rules.params import check_parameters
from engine.rules.model import (AllOf, AnyOf, AtLeast, Compare, Decision, FactRef, FactType,
                                Manifest, NotOf, OutputOf, PackTest, ParamRef, RuleRef, TestFile)

PACK_FILE = "pack.yaml"
TESTS_FILE = "tests.yaml"


def default_rules_dir() -> Path:
    """$ADJUDICATOR_RULES, else the repository's rules/ folder beside engine/."""
    env = os.environ.get("ADJUDICATOR_RULES")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "rules"


@dataclass
class Pack:
    """A loaded, validated pack: the manifest, its tests, and the identity recorded with every decision."""
    manifest: Manifest
    path: Path
    sha256: str
    lines: dict[tuple, int] = field(repr=False, default_factory=dict)
    plan: Any = field(repr=False, default=None)
    course_plan: Any = field(repr=False, default=None)     # the course's rules and decisions (after the fold)
    element_plan: Any = field(repr=False, default=None)    # the collections' per-element conditions
    timeline: dict[str, Any] = field(repr=False, default_factory=dict)   # collection order, element fields, kinds
    known: dict[str, Any] = field(repr=False, default_factory=dict)      # main-scope facts and their types
    _tests: list[PackTest] | None = field(repr=False, default=None)

    @property
    def tests(self) -> list[PackTest]:
        """The embedded tests (tests.yaml), read and checked on first use: adjudicating never
        reads them (they are most of a rules folder's bytes), `rules test/validate/list` do."""
        if self._tests is None:
            self._tests = load_tests(self)
        return self._tests

    @property
    def id(self) -> str:
        return self.manifest.id

    @property
    def version(self) -> str:
        return self.manifest.version

    def identity(self) -> dict[str, str]:
        return {"id": self.id, "version": self.version, "sha256": self.sha256}

    def plan_identity(self, scope: str) -> dict[str, str]:
        """The identity a compiled plan is registered under (one ruleset per plan of a pack)."""
        ident = self.identity()
        return ident if scope == "main" else {**ident, "id": f"{self.id}/{scope}"}

    @cached_property
    def file(self) -> str:
        """The pack file's path, as error messages name it."""
        return str(self.path / PACK_FILE)

    @cached_property
    def rule_ids(self) -> tuple[str, ...]:
        return tuple(r.id for r in self.manifest.rules)

    @cached_property
    def decision_ids(self) -> tuple[str, ...]:
        return tuple(d.id for d in self.manifest.decisions)

    @cached_property
    def readable(self) -> tuple[frozenset[str], tuple[str, ...]]:
        """(fact names, prefixes of its dependencies' outputs) that the pack can read: a fact
        outside both cannot change any of its outcomes."""
        names = set(self.known) | set(self.timeline.get("course_known", {}))
        if self.manifest.course is not None:   # a transition reads new.<var>
            names |= {"new." + sv.name for sv in self.manifest.course.state}
        return frozenset(names), tuple(d.pack + "." for d in self.manifest.depends_on)

    def can_read(self, name: str) -> bool:
        names, prefixes = self.readable
        return name in names or (bool(prefixes) and name.startswith(prefixes))

    def line_of(self, *path: Any) -> int | None:
        """Best line for a key path (the longest prefix the YAML knows)."""
        for n in range(len(path), -1, -1):
            if tuple(path[:n]) in self.lines:
                return self.lines[tuple(path[:n])]
        return None


# --- YAML with line numbers -------------------------------------------------------------------

def _line_map(node: yaml.Node, path: tuple = (), out: dict | None = None) -> dict[tuple, int]:
    out = {} if out is None else out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = k.value
            out[path + (key,)] = k.start_mark.line + 1
            _line_map(v, path + (key,), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _line_map(v, path + (i,), out)
    return out


def _read_yaml(path: Path) -> tuple[Any, dict[tuple, int], bytes]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PackError(f"not UTF-8 text ({exc.reason})", file=str(path)) from None
    try:
        data, node = safe_load_with_node(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise PackError(f"malformed YAML: {problem}", file=str(path),
                        line=(mark.line + 1) if mark else None, key=getattr(exc, "key", None)) from None
    return data, (_line_map(node) if node is not None else {}), raw


def _validation_error(exc: ValidationError, file: Path, lines: dict[tuple, int]) -> PackError:
    err = exc.errors()[0]
    # pydantic adds union tags ('compare', 'function-after[...]') to the location; keep only YAML keys.
    clean = [p for p in err["loc"] if not (isinstance(p, str) and (p == "compare" or p.startswith("function-")))]
    line = None
    for n in range(len(clean), -1, -1):
        if tuple(clean[:n]) in lines:
            line = lines[tuple(clean[:n])]
            break
    key = ".".join(str(p) for p in clean) or None
    more = f" (+{len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = f"unknown key {clean[-1]!r}" if clean else msg
    return PackError(msg + more, file=str(file), line=line, key=key)


M = TypeVar("M", bound=BaseModel)


def read_model(path: Path, model: type[M], what: str, keys: str = "") -> tuple[M, bytes]:
    """A YAML file of the rules folder other than a pack (an export spec, an SDTM mapping) read the
    packs' way: safe load, duplicate keys refused, errors naming file, line and key. Returns the
    validated model and the file's bytes (for its hash)."""
    if not path.is_file():
        raise PackError(f"{what} not found", file=str(path))
    data, lines, raw = _read_yaml(path)
    if not isinstance(data, dict):
        article = "an" if what[0] in "aeiou" else "a"
        raise PackError(f"{article} {what} must be a mapping of keys{keys}", file=str(path), line=1)
    try:
        return model.model_validate(data), raw
    except ValidationError as exc:
        raise _validation_error(exc, path, lines) from None


# --- loading ------------------------------------------------------------------------------------

def load_pack(folder: str | Path) -> Pack:
    """Load and check one pack folder; raise PackError naming file, line and key."""
    folder = Path(folder)
    pack_file = folder / PACK_FILE
    if not pack_file.is_file():
        raise PackError(f"no {PACK_FILE} in pack folder", file=str(folder))
    data, lines, raw = _read_yaml(pack_file)
    if not isinstance(data, dict):
        raise PackError("a pack file must be a mapping of keys (id, version, rules, ...)", file=str(pack_file), line=1)
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(exc, pack_file, lines) from None
    if manifest.id != folder.name:
        raise PackError(f"pack id {manifest.id!r} differs from its folder name {folder.name!r}",
                        file=str(pack_file), line=lines.get(("id",)), key="id")
    pack = Pack(manifest=manifest, path=folder, sha256=hashlib.sha256(raw).hexdigest(), lines=lines)
    check_references(pack)
    check_parameters(pack)
    _PACK_FILES[pack.sha256] = pack_file
    return pack


# sha256 -> the pack file it was read from, for every pack this process loaded: the audit store
# keeps a copy of each pack its records cite (engine.audit.packs)
_PACK_FILES: dict[str, Path] = {}


def pack_file_of(sha256: str) -> Path | None:
    """The file this process loaded the pack with this sha256 from (None: not loaded from a file)."""
    return _PACK_FILES.get(sha256)


def load_tests(pack: Pack) -> list[PackTest]:
    """The pack's embedded tests (none without tests.yaml), validated and checked against the pack."""
    tests: list[PackTest] = []
    tests_file = pack.path / TESTS_FILE
    if tests_file.is_file():
        tdata, tlines, _ = _read_yaml(tests_file)
        try:
            tests = TestFile.model_validate(tdata or {}).tests
        except ValidationError as exc:
            raise _validation_error(exc, tests_file, tlines) from None
    check_test_references(pack, tests)
    return tests


class LazyPacks(Mapping[str, Pack]):
    """Packs by id from the registry cache (engine/rules/cache.py), each unpickled when first used:
    a command pays for the packs it evaluates, not for every pack of the rules folder. Besides the
    packs, what is known of each without loading it: `titles(pid)` (its rule and row titles) and
    `decision_ids(pid)`, and which trial protocols passed `check_fact_sources` with them. Pickled, it is the plain dict of every pack (e.g. sent to a worker)."""

    def __init__(self, entries: dict[str, dict[str, Any]], sources_checked: Any = ()) -> None:
        self._entries = entries
        self._sources = frozenset(sources_checked)
        self._loaded: dict[str, Pack] = {}

    def __getitem__(self, pack_id: str) -> Pack:
        pack = self._loaded.get(pack_id)
        if pack is None:
            pack = self._loaded[pack_id] = pickle.loads(self._entries[pack_id]["pickle"])
        return pack

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, pack_id: object) -> bool:
        return pack_id in self._entries

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (dict(self.items()),))

    def __repr__(self) -> str:
        return f"LazyPacks({list(self._entries)}, loaded={list(self._loaded)})"

    def loaded(self) -> list[str]:
        """The ids of the packs unpickled so far (what a command used)."""
        return list(self._loaded)

    def files(self) -> Iterator[tuple[str, Path]]:
        """(sha256, folder) of every pack, loaded or not."""
        return ((e["sha256"], e["path"]) for e in self._entries.values())

    def sources_checked(self, protocol_sha256: str) -> bool:
        """Whether the protocol file with this sha256 passed `check_fact_sources` with these packs
        when the entry was saved."""
        return protocol_sha256 in self._sources

    def titles(self, pack_id: str) -> dict[str, str]:
        return self._entries[pack_id]["titles"]

    def decision_ids(self, pack_id: str) -> tuple[str, ...]:
        return self._entries[pack_id]["decision_ids"]


@dataclass
class Registry:
    """Every pack of a rules folder, by id, in dependency order."""
    packs: Mapping[str, Pack]   # a dict, or LazyPacks when it came from the registry cache
    root: Path
    protocol: Any = field(default=None, repr=False)   # the trial in force (engine/rules/protocol.py)

    def trial(self) -> Any:
        """The protocol of the trial in force: the one `for_trial` chose, else the default trial."""
        if self.protocol is None:
            from engine.rules.protocol import load_protocol
            self.protocol = load_protocol(self.root, None, set(self.packs), packs=self.packs)
        return self.protocol

    def for_trial(self, name: str | None) -> "Registry":
        """This registry with trial `name`'s protocol in force (None: the default trial)."""
        from engine.rules.protocol import load_protocol
        return Registry(packs=self.packs, root=self.root,
                        protocol=load_protocol(self.root, name, set(self.packs), packs=self.packs))

    def get(self, pack_id: str) -> Pack:
        if pack_id not in self.packs:
            raise PackError(f"no rule pack {pack_id!r} (known: {', '.join(sorted(self.packs)) or 'none'})",
                            file=str(self.root))
        return self.packs[pack_id]

    def chain(self, pack_id: str) -> list[Pack]:
        """The pack and everything it depends on, dependencies first."""
        order: list[Pack] = []

        def visit(pid: str, stack: tuple[str, ...]) -> None:
            if pid in stack:
                raise PackError(f"dependency cycle: {' -> '.join(stack + (pid,))}", file=str(self.root))
            p = self.get(pid)
            for dep in p.manifest.depends_on:
                visit(dep.pack, stack + (pid,))
            if p not in order:
                order.append(p)

        visit(pack_id, ())
        return order


def load_registry(rules_dir: str | Path | None = None) -> Registry:
    root = Path(rules_dir) if rules_dir else default_rules_dir()
    if not root.is_dir():
        raise PackError("rules folder not found", file=str(root))
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
    from engine.rules import cache  # the validated registry of these exact files (issue 15)
    key = cache.registry_key(root, folders, PACK_FILE)
    cached = cache.load(key)
    if cached is not None:
        for sha256, path in cached.packs.files():   # type: ignore[attr-defined]
            _PACK_FILES[sha256] = path / PACK_FILE
        return cached
    packs = {}
    for folder in folders:
        pack = load_pack(folder)
        packs[pack.id] = pack
    reg = Registry(packs=packs, root=root)
    for pack in packs.values():
        for i, dep in enumerate(pack.manifest.depends_on):
            where = dict(file=str(pack.path / PACK_FILE), line=pack.line_of("depends_on", i), key=f"depends_on.{i}")
            if dep.pack not in packs:
                raise PackError(f"depends on unknown pack {dep.pack!r}", **where)
            if not version_matches(packs[dep.pack].version, dep.version):
                raise PackError(f"depends on {dep.pack} {dep.version} but {packs[dep.pack].version} is loaded", **where)
        reg.chain(pack.id)  # raises on cycles
        check_dependency_facts(pack, reg)
    cache.save(key, reg)
    return reg


def version_matches(actual: str, wanted: str) -> bool:
    if wanted in ("*", ""):
        return True
    if wanted.endswith(".x"):
        return actual.split(".")[0] == wanted.split(".")[0]
    return actual == wanted


# --- semantic checks ------------------------------------------------------------------------------

def walk(cond: Any, path: tuple = ()) -> Iterator[tuple[Any, tuple]]:
    """Every node of a condition tree with its key path (for error lines)."""
    yield cond, path
    if isinstance(cond, AllOf):
        for i, c in enumerate(cond.all):
            yield from walk(c, path + ("all", i))
    elif isinstance(cond, AnyOf):
        for i, c in enumerate(cond.any):
            yield from walk(c, path + ("any", i))
    elif isinstance(cond, NotOf):
        yield from walk(cond.not_, path + ("not",))
    elif isinstance(cond, AtLeast):
        for i, c in enumerate(cond.of):
            yield from walk(c, path + ("of", i))


def facts_read(cond: Any) -> list[str]:
    """Fact names a condition reads directly (not through rule references), in order, unique."""
    out: list[str] = []
    for node, _ in walk(cond):
        if isinstance(node, Compare):
            names = [node.fact] if node.fact else []
            ops = node.operand if node.op == "between" else [node.operand]
            names += [o.fact for o in ops if isinstance(o, FactRef)]
            for n in names:
                if n not in out:
                    out.append(n)
    return out


def rules_referenced(cond: Any) -> list[str]:
    return [node.rule for node, _ in walk(cond) if isinstance(node, RuleRef)]


def decision_output_names(pack_id: str, dec: Decision) -> dict[str, str]:
    """Fact name -> python type name of a decision's outputs (`<pack>.<decision>[.<field>]`)."""
    outs: dict[str, str] = {}
    if dec.hit_policy.value == "collect":  # a list of outputs is not a fact
        return outs
    values = [r.then for r in dec.rows] + ([dec.default] if dec.default is not None else [])
    for v in values:
        if isinstance(v, dict):
            for k, fv in v.items():
                name = f"{pack_id}.{dec.id}.{k}"
                if isinstance(fv, OutputOf):
                    outs[name] = "fact:" + fv.fact
                else:
                    outs[name] = type(fv).__name__ if fv is not None else outs.get(name, "NoneType")
        else:
            outs[f"{pack_id}.{dec.id}"] = type(v).__name__
    return outs


def pack_from_data(data: dict[str, Any], folder: str | Path = "<memory>") -> Pack:
    """A pack built from an in-memory mapping (tests, generated packs); same checks as a file."""
    import json
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(exc, Path(folder) / PACK_FILE, {}) from None
    raw = json.dumps(data, sort_keys=True, default=str).encode()
    pack = Pack(manifest=manifest, path=Path(folder), sha256=hashlib.sha256(raw).hexdigest(), _tests=[])
    check_references(pack)
    return pack


def check_references(pack: Pack) -> None:
    from engine.rules.scopes import (FactInfo, check_condition, check_course_after, check_output_refs,
                                     check_timeline_constructs, _output_info)
    m = pack.manifest
    pfile = str(pack.path / PACK_FILE)

    def fail(msg: str, *path: Any, expected: str | None = None) -> None:
        raise PackError(msg, file=pfile, line=pack.line_of(*path), key=".".join(map(str, path)), expected=expected)

    declared = {f.name: FactInfo(f.type, tuple(f.values) if f.values else None) for f in m.facts}
    if any(f.from_ is not None or f.missing_when is not None for f in m.facts):
        from engine.facts.derive import check_from   # the subject record model the paths must exist in
        check_from(m.facts, fail)
    params = {p.name: p for p in m.parameters}
    for i, p in enumerate(m.parameters):
        if p.choices is not None and p.value not in p.choices:
            fail(f"parameter {p.name!r} value {p.value!r} is not one of its choices {p.choices}", "parameters", i, "value")
    dep_prefixes = tuple(d.pack + "." for d in m.depends_on)
    rule_ids = {r.id for r in m.rules}
    dec_ids = [d.id for d in m.decisions]
    if len(set(dec_ids)) != len(dec_ids):
        fail("duplicate decision id", "decisions")
    # events, collections, the course's state and items: known before derived facts and rules
    known: dict[str, FactInfo] = dict(declared)
    timeline = check_timeline_constructs(pack, known, params, rule_ids, dep_prefixes, fail)
    for i, d in enumerate(m.derived):
        if d.name in known:
            fail(f"derived fact {d.name!r} is declared twice", "derived", i, "name")
        args = [d.args.fact] if d.op == "lookup" else list(d.args)
        for a in args:
            if isinstance(a, str) and a not in known and not a.startswith(dep_prefixes):
                fail(f"derived fact {d.name!r} reads {a!r}, which is neither a declared fact nor an earlier derived fact", "derived", i)
            if isinstance(a, ParamRef) and a.param not in params:
                fail(f"unknown parameter {a.param!r}", "derived", i)
        known[d.name] = FactInfo(None if d.op == "first_present" else FactType.number)
    for d in m.decisions:
        for name, t in decision_output_names(m.id, d).items():
            known[name] = _output_info(t, known)
    for i, r in enumerate(m.rules):
        check_condition(r.when, ("rules", i, "when"), known, params, rule_ids, dep_prefixes, fail)
    for i, d in enumerate(m.decisions):
        for j, row in enumerate(d.rows):
            check_condition(row.when, ("decisions", i, "rows", j, "when"), known, params, rule_ids, dep_prefixes, fail)
        check_output_refs(d, known, dep_prefixes, fail, ("decisions", i))
    if m.course is not None:
        check_course_after(pack, known, declared, params, rule_ids, dep_prefixes, timeline["kinds"], fail, timeline)
    pack.timeline = timeline
    pack.known = known
    # cycles among rules / decisions are found when the evaluation plan is built
    from engine.evaluate.plan import build_course_plan, build_element_plan, build_plan  # plan depends on this module
    pack.plan = build_plan(pack)
    pack.course_plan = build_course_plan(pack)
    pack.element_plan = build_element_plan(pack, timeline["element_fields"])


def check_test_references(pack: Pack, tests: list[PackTest]) -> None:
    """Embedded tests name only rules, decisions, facts, parameters and event kinds the pack has."""
    m = pack.manifest
    known, timeline = pack.known, pack.timeline
    params = {p.name for p in m.parameters}
    rule_ids = {r.id for r in m.rules}
    dep_prefixes = tuple(d.pack + "." for d in m.depends_on)
    dec_ids = {d.id for d in m.decisions}
    course_dec_ids = {d.id for d in m.course.decisions} if m.course else set()
    course_rule_ids = {r.id for r in m.course.rules} if m.course else set()
    derived = {d.name for d in m.derived}
    givable = {n for n in known if n not in derived and not n.startswith(m.id + ".")}
    kinds = timeline["kinds"]
    tfile = str(pack.path / TESTS_FILE)
    for i, t in enumerate(tests):
        course_run = m.course is not None and t.events is not None
        for rid in t.expect.rules:
            if rid not in rule_ids and not (course_run and rid in course_rule_ids):
                raise PackError(f"test {t.name!r} expects unknown rule {rid!r}", file=tfile, key=f"tests.{i}.expect.rules")
        for did in t.expect.decisions:
            if did not in dec_ids and not (course_run and did in course_dec_ids):
                raise PackError(f"test {t.name!r} expects unknown decision {did!r}", file=tfile, key=f"tests.{i}.expect.decisions")
        for name, value in t.given.items():
            if name not in givable and not name.startswith(dep_prefixes):
                raise PackError(f"test {t.name!r} gives undeclared fact {name!r}", file=tfile, key=f"tests.{i}.given")
            ftype = getattr(known.get(name), "type", None)
            if ftype in (FactType.number, FactType.integer) and isinstance(value, (str, bool)):
                # e.g. YAML reads 1e-05 (no dot) as text: say so here, never a traceback later
                raise PackError(f"test {t.name!r} gives fact {name!r} the value {value!r}", file=tfile,
                                key=f"tests.{i}.given.{name}", expected=f"a {ftype.value} (write 1e-5 as 0.00001)")
        for name in t.parameters:
            if name not in params:
                raise PackError(f"test {t.name!r} sets unknown parameter {name!r}", file=tfile, key=f"tests.{i}.parameters")
        for j, ev in enumerate(t.events or []):
            if ev.kind not in kinds:
                raise PackError(f"test {t.name!r} gives an event of undeclared kind {ev.kind!r}", file=tfile,
                                key=f"tests.{i}.events.{j}.kind")
            for name in ev.fields:
                if name not in kinds[ev.kind]:
                    raise PackError(f"test {t.name!r} gives field {name!r}, not declared for kind {ev.kind!r}",
                                    file=tfile, key=f"tests.{i}.events.{j}.fields")
        if (t.expect.items or t.expect.state) and not course_run:
            raise PackError(f"test {t.name!r} expects course items or state but gives no events (or the pack "
                            f"has no course)", file=tfile, key=f"tests.{i}.expect")


def check_dependency_facts(pack: Pack, reg: Registry) -> None:
    """A fact `<dep>.<decision>[.field]` must be an output of that dependency (its decisions, or its
    course's decisions)."""
    m = pack.manifest
    outputs: dict[str, str] = {}
    for dep in m.depends_on:
        dp = reg.packs[dep.pack]
        for d in list(dp.manifest.decisions) + (list(dp.manifest.course.decisions) if dp.manifest.course else []):
            outputs.update(decision_output_names(dp.id, d))
    prefixes = tuple(d.pack + "." for d in m.depends_on)
    names: list[tuple[str, tuple]] = []
    for i, r in enumerate(m.rules):
        names += [(n, ("rules", i)) for n in facts_read(r.when)]
    for i, d in enumerate(m.decisions):
        for j, row in enumerate(d.rows):
            names += [(n, ("decisions", i, "rows", j)) for n in facts_read(row.when)]
    if m.course is not None:
        for i, t in enumerate(m.course.transitions):
            names += [(n, ("course", "transitions", i)) for n in facts_read(t.when)]
        for i, r in enumerate(m.course.rules):
            names += [(n, ("course", "rules", i)) for n in facts_read(r.when)]
        for i, d in enumerate(m.course.decisions):
            for j, row in enumerate(d.rows):
                names += [(n, ("course", "decisions", i, "rows", j)) for n in facts_read(row.when)]
    for n, path in names:
        if n.startswith(prefixes) and n not in outputs:
            raise PackError(f"reads {n!r}, which is not an output of the dependency",
                            file=str(pack.path / PACK_FILE), line=pack.line_of(*path), key=".".join(map(str, path)))
