"""A trial's protocol file (`rules/_trials/<trial>/protocol.yaml`): which packs play which role,
the study drugs and schedules, the assessment landmark, the endpoints, subgroups, the AE window and
the summary tables. It is why engine/ names no trial: every command asks the protocol which pack
screens, which profiles adjudicate a marrow, which terms a table lists (docs/writing-a-trial.md).

Read with the house YAML loader (safe load, duplicate keys refused, limits) and validated with
pydantic; every pack it names must be in the rules folder (checked on load, file:line:key).
The trial in force: `--trial NAME`, else $ADJUDICATOR_TRIAL, else `default:` of
`rules/_trials/config.yaml`, else the only trial of the rules folder.
"""

import hashlib
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from engine.errors import InputError, PackError

TRIALS_FOLDER = "_trials"
PROTOCOL_FILE = "protocol.yaml"
CONFIG_FILE = "config.yaml"
ENV = "ADJUDICATOR_TRIAL"
ID_RE = r"^[a-z0-9][a-z0-9_.-]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class ResponseRoles(_Strict):
    primary: str = Field(description="the profile whose course decides the primary endpoint")
    profiles: dict[str, str] = Field(min_length=1, description="profile name -> response pack id")


class CtcaeRoles(_Strict):
    version: str = Field(description="the CTCAE version the trial grades with")
    packs: dict[str, str] = Field(min_length=1, description="CTCAE version -> grading pack id")


class PackRoles(_Strict):
    eligibility: str
    disease_status: str | None = None
    genetic_risk: str | None = None
    response: ResponseRoles
    ctcae: CtcaeRoles | None = None
    clinical_terms: str | None = None
    lab_terms: str | None = None
    attribution: str | None = None
    dosing: str | None = None
    tls: list[str] = []
    follow_up: str | None = None


class Dose(_Strict):
    days: list[int] = Field(min_length=2, max_length=2, description="[first, last] day of the cycle")
    dose: float = Field(gt=0)
    unit: str


class RampStep(_Strict):
    day: int = Field(ge=1)
    dose: float = Field(gt=0)
    unit: str


class StudyDrug(_Strict):
    name: str = Field(pattern=ID_RE)
    route: str
    ramp_up: list[RampStep] = []
    schedule: list[Dose] = Field(min_length=1)
    source: str = Field(min_length=1)

    @property
    def last_day(self) -> int:
        """The last scheduled day of a cycle (the dosing checks' horizon)."""
        return max([s.days[1] for s in self.schedule] + [r.day for r in self.ramp_up])


class Assessments(_Strict):
    schedule: str = Field(min_length=1, description="the protocol's sentence")
    landmark: int = Field(ge=1, description="the cycle by whose end the primary endpoint is read")


class Endpoint(_Strict):
    id: str = Field(pattern=ID_RE)
    title: str
    kind: Literal["proportion", "time_to_event"]
    primary: bool = False
    profile: str | None = None
    pack: str | None = None
    course_output: str | None = None
    flag: str | None = None
    categories: list[str] | None = Field(None, description=(
        "count the course output's `flag` field being one of these categories instead of a true flag"))
    among: str | None = Field(None, description="another endpoint's id: the denominator is its subjects")
    key: str | None = Field(None, description="where the summary reports it (default <course_output>.<flag>)")
    event: str | None = None
    censoring: str | None = None
    source: str = ""

    @property
    def report_key(self) -> str:
        return self.key or f"{self.course_output}.{self.id if self.categories else self.flag}"


class Subgroup(_Strict):
    id: str = Field(pattern=ID_RE)
    title: str
    screening: str = Field(description="dotted path of the screening decision's output it reads")
    detail: str | None = Field(None, description="a second output that refines the group ...")
    detail_when: str | None = Field(None, description="... when the first has this value")
    label: str = Field("{value}", description="how a group is named; {value} is the output")
    detail_label: str | None = Field(None, description="the name when refined; {detail} is the second output")
    replace: dict[str, str] = Field({}, description="words shown otherwise, e.g. {hsct: HSCT}")


class AdverseEvents(_Strict):
    window: str = Field(min_length=1, description="the protocol's sentence")


class TableTerm(_Strict):
    term: str
    label: str


class TermTable(_Strict):
    title: str
    terms: list[TableTerm] = Field(min_length=1)


class Tables(_Strict):
    ae_grade3: TermTable | None = None
    subgroup_measures: list[str] = Field([], description="endpoint ids the subgroup table shows")


class Protocol(_Strict):
    id: str = Field(pattern=ID_RE)
    title: str
    registry: str
    citation: str
    packs: PackRoles
    study_drugs: list[StudyDrug] = Field(min_length=1)
    cycle_days: int = Field(ge=1)
    assessments: Assessments
    endpoints: list[Endpoint] = Field(min_length=1)
    subgroups: list[Subgroup] = []
    adverse_events: AdverseEvents | None = None
    tables: Tables = Tables()

    @model_validator(mode="after")
    def _references(self) -> "Protocol":
        ids = [e.id for e in self.endpoints]
        if len(set(ids)) != len(ids):
            raise ValueError("endpoint ids must be unique")
        for e in self.endpoints:
            if e.among and e.among not in ids:
                raise ValueError(f"endpoint {e.id}: among {e.among!r} is not an endpoint id")
        for m in self.tables.subgroup_measures:
            if m not in ids:
                raise ValueError(f"tables.subgroup_measures: {m!r} is not an endpoint id")
        return self

    # --- what the engine asks ------------------------------------------------------------------
    def profile_packs(self) -> dict[str, str]:
        """profile -> pack id, the primary profile first."""
        prof = {k: self._pack(f"packs.response.profiles.{k}", v) for k, v in self.packs.response.profiles.items()}
        return {self.packs.response.primary: prof[self.packs.response.primary],
                **{k: v for k, v in prof.items() if k != self.packs.response.primary}}

    def _pack(self, key: str, pack_id: str) -> str:
        """A pack id the protocol names, refused (file:line:key) when the rules folder lacks it."""
        if self._known is not None and pack_id not in self._known:
            parts = tuple(int(p) if p.isdigit() else p for p in key.split("."))
            raise PackError(f"protocol names pack {pack_id!r}, which is not in the rules folder",
                            file=self.file, line=self._lines.get(parts), key=key,
                            expected=f"a pack folder rules/{pack_id}/ (or fix the id)")
        return pack_id

    def ctcae_pack(self, version: str | None = None) -> str:
        """The grading pack of a CTCAE version (default: the trial's)."""
        roles = self.packs.ctcae
        if roles is None:
            raise InputError(f"trial {self.id} grades no adverse events (no packs.ctcae)", field="packs.ctcae")
        version = version or roles.version
        if version not in roles.packs:
            raise InputError(f"unknown CTCAE version {version!r}", field="ctcae",
                             expected=" or ".join(sorted(roles.packs)))
        return self._pack(f"packs.ctcae.packs.{version}", roles.packs[version])

    @property
    def grading_version(self) -> str:
        return self.packs.ctcae.version if self.packs.ctcae else ""

    def role(self, name: str) -> str:
        """The pack id of a single-pack role; PackError naming the role when the trial has none."""
        pack = getattr(self.packs, name)
        if not pack:
            raise PackError(f"trial {self.id} names no {name} pack", file=self.file, key=f"packs.{name}")
        return self._pack(f"packs.{name}", pack)

    def optional_role(self, name: str) -> str | None:
        """The pack id of a role the trial may leave out (None then)."""
        return self.role(name) if getattr(self.packs, name) else None

    def ramp_up_drugs(self) -> list[StudyDrug]:
        """The study drugs started with a ramp-up: TLS is assessed around day 1 of each cycle in
        which one is given, and the dosing pack checks their daily doses."""
        return [d for d in self.study_drugs if d.ramp_up]

    def pack_ids(self) -> list[tuple[str, str]]:
        """(key path, pack id) of every pack the protocol names."""
        p = self.packs
        out = [(f"packs.{k}", getattr(p, k)) for k in ("eligibility", "disease_status", "genetic_risk",
                                                       "clinical_terms", "lab_terms", "attribution",
                                                       "dosing", "follow_up") if getattr(p, k)]
        out += [(f"packs.response.profiles.{k}", v) for k, v in p.response.profiles.items()]
        out += [(f"packs.ctcae.packs.{k}", v) for k, v in (p.ctcae.packs.items() if p.ctcae else [])]
        out += [(f"packs.tls.{i}", v) for i, v in enumerate(p.tls)]
        out += [(f"endpoints.{i}.pack", e.pack) for i, e in enumerate(self.endpoints) if e.pack]
        return out

    _file: str = PrivateAttr("")
    _lines: dict = PrivateAttr(default_factory=dict)
    _known: Any = PrivateAttr(None)       # the rules folder's pack ids (None: not checked)
    _sha256: str = PrivateAttr("")        # of the protocol file's bytes (when checked against packs)

    @property
    def file(self) -> str:
        """The file it was read from (error messages)."""
        return self._file


def trials_root(rules_dir: str | Path | None) -> Path:
    from engine.rules.load import default_rules_dir
    return (Path(rules_dir) if rules_dir else default_rules_dir()) / TRIALS_FOLDER


def known_trials(rules_dir: str | Path | None) -> list[str]:
    root = trials_root(rules_dir)
    return sorted(p.parent.name for p in root.glob(f"*/{PROTOCOL_FILE}")) if root.is_dir() else []


def default_trial(rules_dir: str | Path | None) -> str:
    """$ADJUDICATOR_TRIAL, else `default:` of rules/_trials/config.yaml, else the only trial."""
    if os.environ.get(ENV):
        return os.environ[ENV]
    config = trials_root(rules_dir) / CONFIG_FILE
    if config.is_file():
        data, lines = _read(config)
        if not isinstance(data, dict) or not isinstance(data.get("default"), str):
            raise PackError("expected `default: TRIAL`", file=str(config), key="default")
        return data["default"]
    trials = known_trials(rules_dir)
    if len(trials) != 1:
        raise InputError("no trial protocol in the rules folder" if not trials else
                         f"several trials ({', '.join(trials)}) and no default", field="--trial",
                         expected=f"--trial NAME, or `default: NAME` in {config}")
    return trials[0]


def _read(path: Path) -> tuple[Any, dict[tuple, int]]:
    data, lines, _ = _read_raw(path)
    return data, lines


def _read_raw(path: Path) -> tuple[Any, dict[tuple, int], bytes]:
    from engine.rules.load import _read_yaml
    return _read_yaml(path)


def load_protocol(rules_dir: str | Path | None, trial: str | None = None,
                  pack_ids: set[str] | None = None, strict: bool = False, packs: Any = None) -> Protocol:
    """The protocol of `trial` (default: default_trial), checked against the packs loaded
    (`pack_ids`): a pack it names and the rules folder lacks is refused (file:line:key) when a
    command uses that role, or at once with `strict` (`rules validate` checks every trial so).
    With the loaded `packs` (id -> Pack), a screening pack reading a fact nothing provides is
    refused too (`check_fact_sources`)."""
    trial = trial or default_trial(rules_dir)
    known = known_trials(rules_dir)
    if trial not in known:
        raise InputError(f"no trial {trial!r} in the rules folder", field="--trial",
                         expected=f"one of: {', '.join(known) or 'none'} "
                                  f"({trials_root(rules_dir)}/<trial>/{PROTOCOL_FILE})")
    path = trials_root(rules_dir) / trial / PROTOCOL_FILE
    data, lines, raw = _read_raw(path)
    try:
        proto = Protocol.model_validate(data if isinstance(data, dict) else {"": data})
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        line = next((lines[loc[:n]] for n in range(len(loc), -1, -1) if loc[:n] in lines), None)
        raise PackError(f"protocol: {err['msg']}", file=str(path), line=line,
                        key=".".join(map(str, loc))) from None
    proto._file, proto._lines, proto._known = str(path), lines, pack_ids
    if proto.id != trial:
        raise PackError(f"protocol id {proto.id!r} is not its folder's name {trial!r}", file=str(path),
                        line=lines.get(("id",)), key="id")
    if proto.packs.response.primary not in proto.packs.response.profiles:
        raise PackError(f"primary profile {proto.packs.response.primary!r} is not one of the profiles",
                        file=str(path), line=lines.get(("packs", "response", "primary")), key="packs.response.primary")
    if pack_ids is not None and strict:
        for key, pid in proto.pack_ids():
            proto._pack(key, pid)
    if packs is not None:
        proto._sha256 = hashlib.sha256(raw).hexdigest()
        # a registry from the cache knows whether these protocol bytes passed with these very packs
        # (engine/rules/cache.py): then the trial's packs need not be unpickled to check it again
        passed = getattr(packs, "sources_checked", None)
        if not (passed and passed(proto._sha256)):
            check_fact_sources(proto, packs)
    return proto


# The roles whose packs read the subject record through `from:` (the screening, the response
# profiles' subject dates, the follow-up). The other roles read one lab result or adverse event at
# a time, built by engine/facts/safety.py (the engine's core vocabulary there: docs/known-gaps.md).
RECORD_ROLES = ("disease_status", "eligibility", "genetic_risk", "follow_up")


def check_fact_sources(proto: Protocol, packs: Any) -> None:
    """Every fact a record-reading pack of the trial declares (and so may read) has a provider:
    its `from:` (derived from the subject record), the coded findings (`finding.<name>`), or an
    output of another pack of the trial (a decision, derived fact or aggregate). Otherwise the pack
    is refused naming its file, line and fact: a fact nothing provides would leave every decision
    reading it INDETERMINATE for every subject. Two packs deriving one fact differently are refused."""
    from engine.record.findings import FINDING_PREFIX
    p = proto.packs
    # the packs that share one fact sheet: a fact one of them derives, the others may read
    groups = [[p.disease_status, p.eligibility, p.genetic_risk], list(p.response.profiles.values()), [p.follow_up]]
    groups = [[packs[i] for i in dict.fromkeys(g) if i in packs] for g in groups]
    trial = [pk for g in groups for pk in g]
    derived: dict[str, tuple[Any, int]] = {}
    for pack in trial:
        for i, d in enumerate(pack.manifest.facts):
            if d.from_ is None:
                continue
            if d.name in derived and derived[d.name][0].manifest.facts[derived[d.name][1]].from_ != d.from_:
                other = derived[d.name][0]
                raise PackError(f"fact {d.name!r} is derived differently in {other.id} "
                                f"({other.file}:{other.line_of('facts', derived[d.name][1], 'from')})",
                                file=pack.file, line=pack.line_of("facts", i, "from"), key=f"facts.{i}.from",
                                expected="one derivation per fact in a trial (copy it, or read the other's)")
            derived.setdefault(d.name, (pack, i))
    for group in groups:
        shared = {d.name for pk in group for d in pk.manifest.facts if d.from_ is not None}
        for pack in group:
            outputs = {n for other in group if other is not pack
                       for n in (set(other.known) | set(other.timeline.get("course_known", {})))
                       if n not in {d.name for d in other.manifest.facts}}
            for i, d in enumerate(pack.manifest.facts):
                if d.name in shared or d.name.startswith(FINDING_PREFIX) or d.name in outputs:
                    continue
                others = ", ".join(o.id for o in group if o is not pack) or "none"
                raise PackError(f"reads fact {d.name!r}, which nothing provides in trial {proto.id}",
                                file=pack.file, line=pack.line_of("facts", i), key=f"facts.{i}.name",
                                expected=f"a from: saying where the subject record holds it, a coded finding "
                                         f"({FINDING_PREFIX}<name>), or an output of a pack it is evaluated "
                                         f"with ({others})")
