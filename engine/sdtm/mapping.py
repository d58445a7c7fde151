"""The SDTM mapping: which SDTM variables and controlled-terminology values become which record
fields. It is data (YAML), never Python: a CDISC-standard default (`rules/_cdisc/sdtm-default.yaml`)
and, per trial, a file that extends it (`rules/<trial>/sdtm-mapping.yaml`, or
`rules/_cdisc/<trial>/sdtm-mapping.yaml` until the trial folders of issue 12 exist).

A trial file names what it `extends` and overrides section by section: its lab test entries come
before the default's (the first entry that matches a row wins), its `not_graded` reasons, dataset
declarations and terminology are merged over the default's, and its `imputation` and `baseline`
replace the default's. docs/sdtm.md describes every key.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine.errors import InputError, PackError
from engine.sdtm.dates import Imputation

DEFAULT_ID = "sdtm-default"
CDISC_FOLDER = "_cdisc"
TRIAL_FILE = "sdtm-mapping.yaml"
_VAR = r"^[A-Z][A-Z0-9_]{0,31}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSpec(_Model):
    """What a dataset must hold: its sequence variable (--SEQ) and its required variables."""
    seq: str | None = Field(None, pattern=_VAR, description="The --SEQ variable (None for DM).")
    required: tuple[str, ...] = Field((), description="Variables the dataset must have (a column), "
                                      "each non-empty in every row.")
    dates: tuple[str, ...] = Field((), description="--DTC variables read as ISO 8601 dates.")


class ImputationSpec(_Model):
    """admiral's derive_vars_dt(): impute up to `highest` (D: the day; M: day and month) at `date`."""
    highest: Literal["D", "M"] = "M"
    date: Literal["first", "mid", "last"] = "first"

    def rule(self) -> Imputation:
        return Imputation(self.highest, self.date)


class LabTest(_Model):
    """One LBTESTCD (optionally only when other variables hold given values) and the lab test of
    the lab-terms pack it is graded as; `test: null` with a `reason` says why it is not graded."""
    code: str = Field(pattern=_VAR)
    label: str | None = Field(None, description="The test's name (LBTEST), for ADLB's PARAM.")
    when: dict[str, tuple[str, ...]] = Field(default_factory=dict, description=(
        "Only rows whose variables hold one of these values (e.g. LBSPEC: [BLOOD])."))
    test: str | None = Field(None, description="A lab test of the lab-terms pack (lab.test values).")
    reason: str | None = Field(None, description="Why the code is not graded (with test: null).")
    note: str | None = None

    @model_validator(mode="after")
    def _test_or_reason(self) -> "LabTest":
        if self.test is None and not self.reason:
            raise ValueError(f"lab test {self.code}: give `test`, or `test: null` with a `reason`")
        return self

    def matches(self, row: dict[str, Any]) -> bool:
        return all((str(row.get(var) or "").upper() in {v.upper() for v in values}) for var, values in self.when.items())


class LabResult(_Model):
    """The LB variables a graded lab result reads."""
    test: str = "LBTESTCD"
    value: str = "LBSTRESN"
    unit: str = "LBSTRESU"
    lln: str = "LBSTNRLO"
    uln: str = "LBSTNRHI"
    date: str = "LBDTC"
    visit: str = "VISIT"
    status: str = "LBSTAT"


class Baseline(_Model):
    """How the baseline of a lab result is found, per subject and test code:
    - `flag`: the row whose flag variable (the first of `flags` the dataset has) is Y;
    - `study_day`: the last row with a value whose study day (`day_variable`) is at most `on_or_before`."""
    rule: Literal["flag", "study_day"] = "flag"
    flags: tuple[str, ...] = ("LBBLFL", "LBLOBXFL")
    day_variable: str = "LBDY"
    on_or_before: int = 1

    def describe(self) -> str:
        if self.rule == "flag":
            return f"the row flagged Y in {' or '.join(self.flags)}"
        return f"the last result with {self.day_variable} <= {self.on_or_before}"


class Lab(_Model):
    result: LabResult = Field(default_factory=LabResult)
    baseline: Baseline = Field(default_factory=Baseline)
    tests: tuple[LabTest, ...] = ()
    not_graded: dict[str, str] = Field(default_factory=dict, description=(
        "LBTESTCD -> why it is not graded (said once per code in the grading report)."))
    unmapped_reason: str = Field("no CTCAE lab term: the SDTM mapping maps this test code to no lab test",
                                 description="The reason for a code neither mapped nor in not_graded.")


class MappingFile(_Model):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    version: str = Field(pattern=r"^\d+\.\d+\.\d+$")
    title: str = ""
    source: str = ""
    extends: str | None = None
    datasets: dict[str, DatasetSpec] = Field(default_factory=dict)
    imputation: ImputationSpec | None = Field(None, description="None: partial dates stay unknown (reported).")
    lab: Lab | None = None
    terminology: dict[str, dict[str, Any]] = Field(default_factory=dict, description=(
        "Controlled terminology: variable -> {submission value -> record value}."))
    record: dict[str, Any] = Field(default_factory=dict, description="How datasets become subject records.")


@dataclass(frozen=True)
class Mapping:
    """The mapping in force: a trial file over the default (or the default alone)."""
    id: str
    version: str
    files: tuple[tuple[str, str, str], ...]      # (id, version, sha256) of each file, default first
    datasets: dict[str, DatasetSpec]
    imputation: Imputation | None
    lab: Lab
    terminology: dict[str, dict[str, Any]]
    record: dict[str, Any]

    def identity(self) -> dict[str, Any]:
        """What an audit record cites: the files and their content hashes."""
        return {"id": self.id, "version": self.version,
                "files": [{"id": i, "version": v, "sha256": s} for i, v, s in self.files]}

    def dataset(self, name: str) -> DatasetSpec:
        return self.datasets.get(name) or DatasetSpec()

    def lab_test(self, row: dict[str, Any]) -> tuple[str | None, str]:
        """(lab test, '') for a row the mapping grades, else (None, why not)."""
        code = str(row.get(self.lab.result.test) or "").upper()
        for entry in self.lab.tests:
            if entry.code == code and entry.matches(row):
                return (entry.test, "") if entry.test else (None, entry.reason or "")
        return None, self.lab.not_graded.get(code) or self.lab.unmapped_reason

    def term(self, variable: str, value: Any) -> tuple[bool, Any]:
        """(known, record value) of a controlled-terminology value."""
        table = self.terminology.get(variable) or {}
        key = str(value).upper() if value is not None else None
        for k, v in table.items():
            if str(k).upper() == key:
                return True, v
        return False, None


def rules_root(rules_dir: str | Path | None) -> Path:
    from engine.rules.load import default_rules_dir
    return Path(rules_dir) if rules_dir else default_rules_dir()


def mapping_path(rules_dir: str | Path | None, trial: str | None) -> Path:
    """The trial's mapping file (or the default when `trial` is None)."""
    root = rules_root(rules_dir)
    if trial is None:
        return root / CDISC_FOLDER / f"{DEFAULT_ID}.yaml"
    for p in (root / trial / TRIAL_FILE, root / CDISC_FOLDER / trial / TRIAL_FILE):
        if p.is_file():
            return p
    known = sorted({p.parent.name for p in root.glob(f"*/{TRIAL_FILE}")}
                   | {p.parent.name for p in (root / CDISC_FOLDER).glob(f"*/{TRIAL_FILE}")})
    raise InputError(f"no SDTM mapping for trial {trial!r}", field="--trial",
                     expected=f"one of {', '.join(known) or '(none)'}; a trial's mapping is rules/<trial>/{TRIAL_FILE}")


def known_trials(rules_dir: str | Path | None) -> list[str]:
    root = rules_root(rules_dir)
    return sorted({p.parent.name for p in root.glob(f"*/{TRIAL_FILE}")}
                  | {p.parent.name for p in (root / CDISC_FOLDER).glob(f"*/{TRIAL_FILE}")})


def load_mapping(rules_dir: str | Path | None = None, trial: str | None = None, path: str | Path | None = None) -> Mapping:
    """The mapping in force for `trial` (or the file `path`), over the default it extends."""
    top_path = Path(path) if path else mapping_path(rules_dir, trial)
    top, raw = _load_file(top_path)
    files = [top]
    hashes = [hashlib.sha256(raw).hexdigest()]
    seen = {top.id}
    while files[-1].extends:
        parent_id = files[-1].extends
        if parent_id in seen:
            raise PackError(f"mapping {parent_id!r} extends itself (a cycle)", file=str(top_path), key="extends")
        seen.add(parent_id)
        parent_path = rules_root(rules_dir) / CDISC_FOLDER / f"{parent_id}.yaml"
        if not parent_path.is_file():
            raise PackError(f"extends unknown mapping {parent_id!r}", file=str(top_path), key="extends",
                            expected=f"a file {parent_path}")
        parent, praw = _load_file(parent_path)
        files.append(parent)
        hashes.append(hashlib.sha256(praw).hexdigest())
    return _merge(list(reversed(files)), list(reversed(hashes)))


def _load_file(path: Path) -> tuple[MappingFile, bytes]:
    from engine.rules.load import read_model  # the packs' YAML reading: one way
    return read_model(path, MappingFile, "mapping file", " (id, version, lab, ...)")


def _merge(files: list[MappingFile], hashes: list[str]) -> Mapping:
    datasets: dict[str, DatasetSpec] = {}
    terminology: dict[str, dict[str, Any]] = {}
    record: dict[str, Any] = {}
    imputation: Imputation | None = None
    lab = Lab()
    for f in files:  # default first: later files override
        datasets.update(f.datasets)
        for var, table in f.terminology.items():
            terminology[var] = {**terminology.get(var, {}), **table}
        record.update(f.record)
        if "imputation" in f.model_fields_set:
            imputation = f.imputation.rule() if f.imputation else None
        if f.lab is not None:
            given = f.lab.model_fields_set
            lab = Lab(result=f.lab.result if "result" in given else lab.result,
                      baseline=f.lab.baseline if "baseline" in given else lab.baseline,
                      tests=tuple(f.lab.tests) + tuple(lab.tests),        # the trial's entries first
                      not_graded={**lab.not_graded, **f.lab.not_graded},
                      unmapped_reason=f.lab.unmapped_reason if "unmapped_reason" in given else lab.unmapped_reason)
    top = files[-1]
    return Mapping(top.id, top.version, tuple((f.id, f.version, h) for f, h in zip(files, hashes)),
                   datasets, imputation, lab, terminology, record)


def lab_params(mapping: Mapping) -> dict[str, tuple[str, str]]:
    """lab test -> (the first SDTM test code the mapping grades as it, its label): ADLB's PARAMCD
    and PARAM."""
    out: dict[str, tuple[str, str]] = {}
    for e in mapping.lab.tests:
        if e.test:
            out.setdefault(e.test, (e.code, e.label or e.code))
    return out
