"""The ADaM export specification: datasets, variables, labels, derivations and a trial's
parameters, loaded from YAML (`rules/_cdisc/adam-default.yaml` and the trial's `adam-export.yaml`
that extends it). Data, not code: the exporter names no pack output.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine.errors import InputError, PackError
from engine.sdtm.mapping import CDISC_FOLDER, rules_root

DEFAULT_ID = "adam-default"
TRIAL_FILE = "adam-export.yaml"
DATASETS = ("ADSL", "ADRS", "ADTTE", "ADAE", "ADLB")
ENGINE_VALUES = ("subject_id", "screened", "enrolled", "dosed", "died", "decision_id", "follow_up_decision_id")
_NAME = r"^[A-Z][A-Z0-9]{0,7}$"           # SAS transport v5: 8 characters


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ValueRef(_Model):
    """Where a value comes from (see the header of adam-default.yaml)."""
    from_: Literal["screen", "follow-up", "course"] | None = Field(None, alias="from")
    path: str | None = None
    timeline: str | None = None
    take: Literal["first", "last"] = "first"
    study: str | None = None
    engine: str | None = None
    const: Any = None

    @model_validator(mode="after")
    def _one_kind(self) -> "ValueRef":
        kinds = [k for k in ("path", "timeline", "study", "engine", "const") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("a value names exactly one of path, timeline, study, engine, const")
        if (self.path or self.timeline) and not self.from_:
            raise ValueError("a path or timeline value needs `from`")
        if self.engine and self.engine not in ENGINE_VALUES:
            raise ValueError(f"unknown engine value {self.engine!r} (one of {', '.join(ENGINE_VALUES)})")
        return self


class Variable(_Model):
    name: str = Field(pattern=_NAME)
    label: str = Field(max_length=40)
    type: Literal["text", "number", "integer", "date"] = "text"
    value: ValueRef | None = None
    flag: bool = False
    map: dict[str, Any] | None = None
    derivation: str = ""
    custom: bool = False


class DatasetSpec(_Model):
    label: str = Field(max_length=40)
    variables: tuple[Variable, ...]


class AssessmentParam(_Model):
    PARAMCD: str = Field(pattern=_NAME)
    PARAM: str
    category: str
    date: str
    visit: str | None = None


class CourseParam(_Model):
    PARAMCD: str = Field(pattern=_NAME)
    PARAM: str
    category: str | None = None
    flag: str | None = None
    assessment: str | None = None

    @model_validator(mode="after")
    def _one(self) -> "CourseParam":
        if (self.category is None) == (self.flag is None):
            raise ValueError(f"{self.PARAMCD}: give `category` or `flag`")
        return self


class Adrs(_Model):
    assessment: AssessmentParam | None = None
    course: tuple[CourseParam, ...] = ()


class TteParam(_Model):
    PARAMCD: str = Field(pattern=_NAME)
    PARAM: str
    from_: Literal["follow-up", "course"] = Field(alias="from")
    event: str
    date: str
    start: ValueRef
    kind: str | None = None
    applies_if: str | None = None


class ExportFile(_Model):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    version: str = Field(pattern=r"^\d+\.\d+\.\d+$")
    title: str = ""
    source: str = ""
    extends: str | None = None
    study: dict[str, str] = Field(default_factory=dict)
    datasets: dict[Literal["ADSL", "ADRS", "ADTTE", "ADAE", "ADLB"], DatasetSpec] = Field(default_factory=dict)
    adsl: tuple[Variable, ...] = ()
    adrs: Adrs = Field(default_factory=Adrs)
    adtte: tuple[TteParam, ...] = ()
    events: dict[str, str] = Field(default_factory=dict)
    censoring: str = "CENSORED"


@dataclass(frozen=True)
class ExportSpec:
    """The export in force: the trial file over the default."""
    files: tuple[tuple[str, str, str], ...]
    study: dict[str, str]
    datasets: dict[str, DatasetSpec]
    adrs: Adrs
    adtte: tuple[TteParam, ...]
    events: dict[str, str]
    censoring: str

    def identity(self) -> list[dict[str, str]]:
        return [{"id": i, "version": v, "sha256": s} for i, v, s in self.files]

    def variables(self, dataset: str) -> tuple[Variable, ...]:
        return self.datasets[dataset].variables


def spec_path(rules_dir: str | Path | None, trial: str | None) -> Path:
    root = rules_root(rules_dir)
    if trial is None:
        return root / CDISC_FOLDER / f"{DEFAULT_ID}.yaml"
    for p in (root / trial / TRIAL_FILE, root / CDISC_FOLDER / trial / TRIAL_FILE):
        if p.is_file():
            return p
    raise InputError(f"no ADaM export file for trial {trial!r}", field="--trial",
                     expected=f"rules/{trial}/{TRIAL_FILE} (or rules/{CDISC_FOLDER}/{trial}/{TRIAL_FILE})")


def default_trial(rules_dir: str | Path | None) -> str | None:
    """The only trial with an export file (None when there is none; InputError when several)."""
    root = rules_root(rules_dir)
    trials = sorted({p.parent.name for p in root.glob(f"*/{TRIAL_FILE}")}
                    | {p.parent.name for p in (root / CDISC_FOLDER).glob(f"*/{TRIAL_FILE}")})
    if len(trials) > 1:
        raise InputError(f"several trials have an ADaM export file ({', '.join(trials)})", field="--trial",
                         expected="--trial NAME")
    return trials[0] if trials else None


def load_spec(rules_dir: str | Path | None = None, trial: str | None = None) -> ExportSpec:
    """The trial's export file over the default it extends (the default alone when trial is None)."""
    chain: list[tuple[ExportFile, str]] = []
    path = spec_path(rules_dir, trial)
    seen: set[str] = set()
    while True:
        f, sha = _load(path)
        chain.append((f, sha))
        if not f.extends:
            break
        if f.extends in seen:
            raise PackError(f"export file {f.extends!r} extends itself (a cycle)", file=str(path), key="extends")
        seen.add(f.extends)
        parent = rules_root(rules_dir) / CDISC_FOLDER / f"{f.extends}.yaml"
        if not parent.is_file():
            raise PackError(f"extends unknown export file {f.extends!r}", file=str(path), key="extends")
        path = parent
    chain.reverse()
    datasets: dict[str, DatasetSpec] = {}
    study: dict[str, str] = {}
    adrs, adtte, events, censoring = Adrs(), (), {}, "CENSORED"
    for f, _ in chain:
        datasets.update(f.datasets)
        study.update(f.study)
        if f.adsl:
            base = list(datasets["ADSL"].variables)
            names = {v.name for v in base}
            dup = next((v.name for v in f.adsl if v.name in names), None)
            if dup:
                raise PackError(f"ADSL variable {dup} is already defined by the default", key=f"adsl.{dup}")
            at = next((i for i, v in enumerate(base) if v.name == "DECID"), len(base))
            datasets["ADSL"] = DatasetSpec(label=datasets["ADSL"].label, variables=tuple(base[:at] + list(f.adsl) + base[at:]))
        if "adrs" in f.model_fields_set:
            adrs = f.adrs
        if "adtte" in f.model_fields_set:
            adtte = f.adtte
        events.update(f.events)
        if "censoring" in f.model_fields_set:
            censoring = f.censoring
    missing = [d for d in DATASETS if d not in datasets]
    if missing:
        raise PackError(f"the export defines no {', '.join(missing)}", file=str(path), key="datasets")
    return ExportSpec(tuple((f.id, f.version, sha) for f, sha in chain), study, datasets, adrs, adtte, events, censoring)


def _load(path: Path) -> tuple[ExportFile, str]:
    from engine.rules.load import read_model  # the packs' YAML reading: one way
    spec, raw = read_model(path, ExportFile, "export file")
    return spec, hashlib.sha256(raw).hexdigest()
