"""The rule-pack language as pydantic models: the single definition the loader validates
against and `adjudicator rules schema` publishes as JSON Schema.

A pack is a folder `rules/<pack-id>/` with `pack.yaml` (manifest, facts, parameters, derived
facts, rules, decisions) and optionally `tests.yaml` (embedded tests). See docs/rule-language.md.
"""

from functools import cached_property

import datetime as dt
import re
from enum import Enum
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

ID_RE = r"^[A-Za-z][A-Za-z0-9_.\-]*$"
FACT_RE = r"^[A-Za-z_][A-Za-z0-9_\-]*(\.[A-Za-z_][A-Za-z0-9_\-]*)*$"
SEMVER_RE = r"^\d+\.\d+\.\d+$"


class Strict(BaseModel):
    # defer_build: a model's validator is built when it first validates (loading a pack), not at
    # import: a command served from the registry cache (engine/rules/cache.py) never builds them;
    # forward references (the recursive conditions) are resolved then, without model_rebuild().
    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)


# --- operands -------------------------------------------------------------------------------

class ParamRef(Strict):
    """A named pack parameter, e.g. `{param: mrd_threshold_pct}`."""
    param: str = Field(pattern=ID_RE)


class FactRef(Strict):
    """Another fact, optionally scaled: `{fact: labs.bilirubin_uln, times: 1.5}` (exact decimal)."""
    fact: str = Field(pattern=FACT_RE)
    times: Union[float, int, ParamRef] = 1


Scalar = Union[bool, int, float, str, dt.date]
Operand = Union[ParamRef, FactRef, bool, int, float, str, dt.date]

COMPARATORS = ("eq", "ne", "lt", "lte", "gt", "gte")
OPERATORS = COMPARATORS + ("in", "between", "exists", "missing")


# --- conditions -----------------------------------------------------------------------------

class Compare(Strict):
    """A test of one fact (or parameter): exactly one left side and exactly one operator.

    A comparison that reads a missing fact is *unknown*; `exists` / `missing` are never unknown.
    """
    fact: str | None = Field(default=None, pattern=FACT_RE)
    param: str | None = Field(default=None, pattern=ID_RE)
    eq: Operand | None = None
    ne: Operand | None = None
    lt: Operand | None = None
    lte: Operand | None = None
    gt: Operand | None = None
    gte: Operand | None = None
    in_: list[Scalar] | None = Field(default=None, alias="in", min_length=1)
    between: list[Union[ParamRef, float, int, dt.date]] | None = Field(
        default=None, min_length=2, max_length=2, description="inclusive at both ends")
    exists: Literal[True] | None = None
    missing: Literal[True] | None = None

    @model_validator(mode="after")
    def _one_left_one_operator(self) -> "Compare":
        if (self.fact is None) == (self.param is None):
            raise ValueError("a comparison needs exactly one of 'fact' or 'param'")
        ops = [op for op in OPERATORS if getattr(self, "in_" if op == "in" else op) is not None]
        if len(ops) != 1:
            raise ValueError(f"a comparison needs exactly one operator of {', '.join(OPERATORS)}; got {ops or 'none'}")
        if self.param is not None and ops[0] in ("exists", "missing"):
            raise ValueError("parameters always exist: 'exists'/'missing' apply to facts")
        return self

    @cached_property  # read on every evaluation; a loaded pack is never changed, so computed once
    def op(self) -> str:
        for op in OPERATORS:
            if getattr(self, "in_" if op == "in" else op) is not None:
                return op
        raise AssertionError("validated")

    @cached_property
    def operand(self) -> Any:
        return getattr(self, "in_" if self.op == "in" else self.op)


class RuleRef(Strict):
    """The outcome of another rule of the same pack: met -> true, not met -> false, unknown -> unknown."""
    rule: str = Field(pattern=ID_RE)


class AllOf(Strict):
    all: list["Condition"] = Field(min_length=1)


class AnyOf(Strict):
    any: list["Condition"] = Field(min_length=1)


class NotOf(Strict):
    not_: "Condition" = Field(alias="not")


class AtLeast(Strict):
    """At least k of the listed conditions hold (three-valued: met when k are met, not met when
    fewer than k can still be met, else unknown), e.g. two of the four laboratory criteria."""
    at_least: int = Field(ge=1)
    of: list["Condition"] = Field(min_length=1)

    @model_validator(mode="after")
    def _k_at_most_n(self) -> "AtLeast":
        if self.at_least > len(self.of):
            raise ValueError(f"at_least {self.at_least} of {len(self.of)} conditions can never hold")
        return self


def _condition_tag(v: Any) -> str:
    if isinstance(v, dict):
        for key in ("all", "any", "not", "rule", "at_least"):
            if key in v:
                return key
        return "compare"
    if isinstance(v, BaseModel):
        return {AllOf: "all", AnyOf: "any", NotOf: "not", RuleRef: "rule", AtLeast: "at_least"}.get(type(v), "compare")
    return "compare"


Condition = Annotated[
    Union[
        Annotated[AllOf, Tag("all")],
        Annotated[AnyOf, Tag("any")],
        Annotated[NotOf, Tag("not")],
        Annotated[RuleRef, Tag("rule")],
        Annotated[AtLeast, Tag("at_least")],
        Annotated[Compare, Tag("compare")],
    ],
    Discriminator(_condition_tag),
]


# --- manifest parts -----------------------------------------------------------------------

class FactType(str, Enum):
    number = "number"
    integer = "integer"
    boolean = "boolean"
    string = "string"
    date = "date"


# --- where a fact comes from (`from:`, docs/rule-language.md "Where a fact comes from") -----------
# A small tree of plain data, each node one key. Record paths are dotted field names of the subject
# record (docs/subject-record.md), `[*]` for every element of a list; the loader checks each path
# against the record model. Arithmetic is exact Decimal; an unrecorded input makes the fact missing.

RECORD_PATH_RE = r"^[a-z_][a-z0-9_]*(\[\*\])?(\.[a-z_][a-z0-9_]*(\[\*\])?)*$"
ELEMENT_FIELD_RE = r"^[a-z_][a-z0-9_]*$"
Literal_ = Union[bool, int, float, str]


class FromField(Strict):
    """The value at a record path: `{field: demographics.sex}`."""
    field: str = Field(pattern=RECORD_PATH_RE)


class FromFact(Strict):
    """Another fact of the same pack with its own `from:` (e.g. the age a formula reads)."""
    fact: str = Field(pattern=FACT_RE)


class FromRecorded(Strict):
    """true when the record gives the field (an empty list included), else missing naming it:
    `{recorded: treatment_history}`. Never false."""
    recorded: str = Field(pattern=RECORD_PATH_RE)


class FromFirstOf(Strict):
    """The first source that has a value (reported CrCl, else the computed one)."""
    first_of: list["Derivation"] = Field(min_length=2)


Number_ = Union[int, float]


class FromAdd(Strict):
    add: list[Union[Number_, "Derivation"]] = Field(min_length=2)


class FromSubtract(Strict):
    subtract: list[Union[Number_, "Derivation"]] = Field(min_length=2, max_length=2)


class FromMultiply(Strict):
    multiply: list[Union[Number_, "Derivation"]] = Field(min_length=2)


class FromDivide(Strict):
    """[numerator, denominator]; a zero denominator leaves the fact missing."""
    divide: list[Union[Number_, "Derivation"]] = Field(min_length=2, max_length=2)


class FromYearsBetween(Strict):
    """Completed years from the first date to the second (a birthday counts on the day)."""
    years_between: list["Derivation"] = Field(min_length=2, max_length=2)


class LookupSpec(Strict):
    of: "Derivation"
    table: dict[str, Union[Number_, str, bool]] = Field(min_length=1)


class FromLookup(Strict):
    """A recorded code mapped through a table (a value not in the table leaves the fact missing)."""
    lookup: LookupSpec


class IfEqSpec(Strict):
    of: "Derivation"
    equals: Literal_
    then: Union[Literal_, "Derivation"]
    else_: Union[Literal_, "Derivation"] = Field(alias="else")


class FromIfEq(Strict):
    """`then` when the value equals `equals`, else `else`; missing when the value is missing."""
    if_eq: IfEqSpec


class ContainsSpec(Strict):
    field: str = Field(pattern=RECORD_PATH_RE, description="a record list of codes")
    value: Literal_
    when_recorded: str | None = Field(default=None, pattern=RECORD_PATH_RE, description=(
        "a boolean record field saying the list was collected (a test done): false or unrecorded "
        "leaves the fact missing, unless the list names a finding (a non-empty list is a test done)"))


class FromContains(Strict):
    """Whether a record list of codes names `value` (absent from a collected list: false)."""
    contains: ContainsSpec


class ListSpec(Strict):
    in_: str = Field(alias="in", pattern=RECORD_PATH_RE, description="a record list of objects")
    where: dict[str, Literal_] = Field(default={}, description="element field -> value, all equal")


class FindSpec(ListSpec):
    take: str = Field(pattern=ELEMENT_FIELD_RE, description="the element field given as the value")


class FromFind(Strict):
    """A field of the first element of a record list whose fields equal `where` (none: missing)."""
    find: FindSpec


class CountSpec(ListSpec):
    active_on: "Derivation | None" = Field(default=None, description=(
        "leave out elements whose `end_date` is before this date (null end_date: ongoing)"))


class FromCount(Strict):
    """How many elements of a record list match `where` (an integer; an unrecorded list: missing)."""
    count: CountSpec


class AnyTrueSpec(Strict):
    in_: str = Field(alias="in", pattern=RECORD_PATH_RE)
    field: str = Field(pattern=ELEMENT_FIELD_RE)


class FromAnyTrue(Strict):
    """Three-valued any over a boolean field of a record list: true if one is true, missing if
    none is true and one is unrecorded, else false (an empty list: false)."""
    any_true: AnyTrueSpec


class FromMin(Strict):
    """The lowest (earliest) value of a `[*]` path, cited by the element it comes from."""
    min: str = Field(pattern=RECORD_PATH_RE)


FROM_FORMS: dict[str, type] = {
    "field": FromField, "fact": FromFact, "recorded": FromRecorded, "first_of": FromFirstOf,
    "add": FromAdd, "subtract": FromSubtract, "multiply": FromMultiply, "divide": FromDivide,
    "years_between": FromYearsBetween, "lookup": FromLookup, "if_eq": FromIfEq, "contains": FromContains,
    "find": FromFind, "count": FromCount, "any_true": FromAnyTrue, "min": FromMin,
}


def _from_tag(v: Any) -> str | None:
    if isinstance(v, dict):
        keys = [k for k in v if k in FROM_FORMS]
        return keys[0] if len(keys) == 1 and len(v) == 1 else None
    if isinstance(v, BaseModel):
        return next((k for k, t in FROM_FORMS.items() if type(v) is t), None)
    return None


Derivation = Annotated[
    Union[tuple(Annotated[t, Tag(k)] for k, t in FROM_FORMS.items())],  # type: ignore[misc]
    Discriminator(_from_tag, custom_error_type="derivation",
                  custom_error_message="a derivation is one key of: " + ", ".join(FROM_FORMS)),
]


class FactDecl(Strict):
    """A fact the pack reads: its dotted name, type and unit, the plausible range, and where it
    comes from in the subject record (`from:`; a `finding.` fact comes from the coded findings)."""
    name: str = Field(pattern=FACT_RE)
    type: FactType
    unit: str | None = None
    description: str = ""
    values: list[str] | None = Field(default=None, description="allowed values of a string fact")
    min: float | None = None
    max: float | None = None
    from_: Derivation | None = Field(default=None, alias="from", description=(
        "how the engine derives it from the subject record (docs/rule-language.md)"))
    missing_when: list[Literal_] | None = Field(default=None, min_length=1, description=(
        "derived values that mean 'not recorded' (e.g. not_tested): the fact is left missing"))
    source: str = Field(default="", description="citation of a formula given in `from:`")


class Parameter(Strict):
    """A named threshold or switch; `operational: true` marks a project choice that is not protocol text."""
    name: str = Field(pattern=ID_RE)
    value: Union[bool, int, float, str]
    unit: str | None = None
    operational: bool = False
    choices: list[Union[bool, int, float, str]] | None = None
    source: str = Field(min_length=1, description="where the value comes from (protocol, guideline, project decision)")
    description: str = ""


class Derived(Strict):
    """A fact computed from other facts by one exact-decimal operation. Missing inputs -> missing.

    Exactly one of the operations below. Operands are fact names, numbers or `{param: ...}`.
    """
    name: str = Field(pattern=FACT_RE)
    unit: str | None = None
    description: str = ""
    ratio: list[Union[str, float, int, ParamRef]] | None = Field(default=None, min_length=2, max_length=2)
    product: list[Union[str, float, int, ParamRef]] | None = Field(default=None, min_length=2)
    sum: list[Union[str, float, int, ParamRef]] | None = Field(default=None, min_length=2)
    difference: list[Union[str, float, int, ParamRef]] | None = Field(default=None, min_length=2, max_length=2)
    percent_decrease: list[str] | None = Field(
        default=None, min_length=2, max_length=2, description="[from, to]: (from - to) / from x 100")
    days_between: list[str] | None = Field(default=None, min_length=2, max_length=2, description="[earlier, later]")
    years_between: list[str] | None = Field(
        default=None, min_length=2, max_length=2, description="[earlier, later] in completed years")
    lookup: "Lookup | None" = None
    first_present: list[str] | None = Field(default=None, min_length=1)
    min_of: list[str] | None = Field(default=None, min_length=1, alias="min")
    max_of: list[str] | None = Field(default=None, min_length=1, alias="max")

    @model_validator(mode="after")
    def _exactly_one(self) -> "Derived":
        ops = [k for k in DERIVED_OPS if getattr(self, DERIVED_ATTR.get(k, k)) is not None]
        if len(ops) != 1:
            raise ValueError(f"a derived fact needs exactly one operation of {', '.join(DERIVED_OPS)}; got {ops or 'none'}")
        return self

    @cached_property
    def op(self) -> str:
        return next(k for k in DERIVED_OPS if getattr(self, DERIVED_ATTR.get(k, k)) is not None)

    @cached_property
    def args(self) -> Any:
        return getattr(self, DERIVED_ATTR.get(self.op, self.op))


class Lookup(Strict):
    """Map a string fact to a number through a table (e.g. steroid -> prednisone-equivalence factor)."""
    fact: str = Field(pattern=FACT_RE)
    table: dict[str, Union[float, int]]


DERIVED_OPS = ("ratio", "product", "sum", "difference", "percent_decrease", "days_between",
               "years_between", "lookup", "first_present", "min", "max")
DERIVED_ATTR = {"min": "min_of", "max": "max_of"}


class Source(Strict):
    """Where a rule comes from: the citation and the verbatim sentence it encodes."""
    citation: str = Field(min_length=1, description="protocol section, guideline table, CTCAE term")
    text: str = Field(min_length=1, description="the verbatim source sentence")
    note: str = Field(default="", description="interpretation taken (ambiguity id and decision)")


class Rule(Strict):
    """One criterion or definition. Outcome: met / not_met / unknown (with the missing facts)."""
    id: str = Field(pattern=ID_RE)
    title: str = Field(min_length=1)
    kind: str = Field(default="definition", description="e.g. inclusion, exclusion, advisory, definition")
    source: Source
    when: Condition
    basis: Literal["protocol", "guideline", "operational"] = "protocol"
    message: str = Field(default="", description="what to tell the user when the rule is met (advisories)")


class OutputOf(Strict):
    """An output field copied from a fact when the row decides: `date: {fact: state.relapse_date}`.
    An unknown fact leaves the field undecided (with its missing facts); an absent one gives null."""
    fact: str = Field(pattern=FACT_RE)


OutputValue = Union[str, bool, int, float, None, OutputOf]


class DecisionRow(Strict):
    """One row of a decision table. `id` (unique in its decision) names the row in traces, diffs and
    `rules explain PACK DECISION#ID`, so a reordered table keeps its names; `title` is the one-line
    reason shown beside an outcome the row decides."""
    id: str | None = Field(default=None, pattern=ID_RE, description="stable row id, unique within the decision")
    title: str = Field(default="", description="one-line reason a physician can read, shown with the outcome")
    when: Condition
    then: Union[str, bool, int, float, dict[str, OutputValue], None] = Field(
        description="the row's output: a value, a mapping of fields, or null (decidedly no output)")
    note: str = ""


class HitPolicy(str, Enum):
    first = "first"      # priority order: the first met row wins (earlier unknown rows make it indeterminate)
    unique = "unique"    # at most one row may be met; an overlap is an error
    collect = "collect"  # every met row


class Decision(Strict):
    """A decision table over conditions, DMN style. Its outputs become facts `<pack>.<decision>[.<field>]`."""
    id: str = Field(pattern=ID_RE)
    title: str = ""
    hit_policy: HitPolicy
    rows: list[DecisionRow] = Field(min_length=1)
    default: Union[str, bool, int, float, dict[str, OutputValue], None] = Field(
        default=None, description="output when every row is decided not met")
    complete: bool = Field(
        default=False, description="the rows cover every case (DMN completeness): 'no row matches' is "
        "never a candidate of an undecided table, and a run where every row is not met is an error")
    source: Source | None = None

    @field_validator("rows")
    @classmethod
    def _unique_row_ids(cls, v: list[DecisionRow]) -> list[DecisionRow]:
        seen: set[str] = set()
        for r in v:
            if r.id is not None:
                if r.id in seen:
                    raise ValueError(f"duplicate row id {r.id!r}")
                seen.add(r.id)
        return v

    @cached_property
    def row_keys(self) -> tuple[str, ...]:
        """How traces, tests and diffs name each row: `<decision>#<row id>`, or `<decision>#<index>`
        for a row without an id (positional names change when rows are inserted: give ids)."""
        return tuple(f"{self.id}#{r.id if r.id is not None else j}" for j, r in enumerate(self.rows))


# --- events, collections and the course -----------------------------------------------------------

class EventKind(Strict):
    """A kind of dated event of the subject's timeline that the pack reads (marrow assessment, blood
    sample, cycle, transplant, death, ...) and the fields it reads of it. Every event also has
    `event.date`, `event.id` and `event.kind`."""
    kind: str = Field(pattern=ID_RE)
    description: str = ""
    fields: list[FactDecl] = []


class DaysFrom(Strict):
    """A window bound N days from a date fact: `{fact: item.date, days: -28}`."""
    fact: str = Field(pattern=FACT_RE)
    days: Union[int, ParamRef] = 0


Anchor = Union[str, DaysFrom]


class Window(Strict):
    """Bounds on an event's date relative to date facts (anchors). An anchor that is a state
    variable or an aggregate with no value leaves its bound open; any other anchor that is not
    recorded makes the bound unknown; an unknown anchor makes it unknown."""
    after: Anchor | None = None
    on_or_after: Anchor | None = None
    before: Anchor | None = None
    on_or_before: Anchor | None = None

    def bounds(self) -> list[tuple[str, "Anchor"]]:
        return [(k, getattr(self, k)) for k in WINDOW_BOUNDS if getattr(self, k) is not None]


WINDOW_BOUNDS = ("after", "on_or_after", "before", "on_or_before")
AGGREGATE_OPS = ("count", "any", "all", "none", "first", "last", "min", "max", "span_days",
                 "consecutive", "at_max")


class Aggregate(Strict):
    """A fact computed over a collection's members (three-valued; see docs/rule-language.md).

    Exactly one operation. `count`, `span_days` and `consecutive` give an integer, or with a
    comparison (`gte: 2`) a boolean decided as soon as every possible completion agrees;
    `any`/`all`/`none` give a boolean; `first`/`last`/`min`/`max` give a field's value;
    `at_max` gives the `take` field of the member with the highest `at_max` field (earliest on ties).
    """
    name: str = Field(pattern=FACT_RE)
    description: str = ""
    count: Union[Literal[True], "Condition", None] = None
    any_: Union[Literal[True], "Condition", None] = Field(default=None, alias="any")
    all_: Union["Condition", None] = Field(default=None, alias="all")
    none: Union[Literal[True], "Condition", None] = None
    first: str | None = Field(default=None, pattern=FACT_RE)
    last: str | None = Field(default=None, pattern=FACT_RE)
    min_: str | None = Field(default=None, pattern=FACT_RE, alias="min")
    max_: str | None = Field(default=None, pattern=FACT_RE, alias="max")
    span_days: Literal[True] | None = None
    consecutive: Union["Condition", None] = None
    run: Literal["latest", "longest"] = "latest"
    at_max: str | None = Field(default=None, pattern=FACT_RE)
    take: str | None = Field(default=None, pattern=FACT_RE)
    eq: Union[int, ParamRef, None] = None
    ne: Union[int, ParamRef, None] = None
    lt: Union[int, ParamRef, None] = None
    lte: Union[int, ParamRef, None] = None
    gt: Union[int, ParamRef, None] = None
    gte: Union[int, ParamRef, None] = None

    @model_validator(mode="after")
    def _one_operation(self) -> "Aggregate":
        ops = [k for k in AGGREGATE_OPS if getattr(self, AGGREGATE_ATTR.get(k, k)) is not None]
        if len(ops) != 1:
            raise ValueError(f"an aggregate needs exactly one operation of {', '.join(AGGREGATE_OPS)}; got {ops or 'none'}")
        cmps = [c for c in COMPARATORS if getattr(self, c) is not None]
        if len(cmps) > 1:
            raise ValueError(f"an aggregate takes at most one comparison; got {cmps}")
        if cmps and ops[0] not in ("count", "span_days", "consecutive"):
            raise ValueError(f"a comparison applies to count, span_days or consecutive, not {ops[0]}")
        if (ops[0] == "at_max") != (self.take is not None):
            raise ValueError("'take' goes with 'at_max' (the field to report of the member with the highest value)")
        return self

    @cached_property
    def op(self) -> str:
        return next(k for k in AGGREGATE_OPS if getattr(self, AGGREGATE_ATTR.get(k, k)) is not None)

    @cached_property
    def arg(self) -> Any:
        return getattr(self, AGGREGATE_ATTR.get(self.op, self.op))

    @cached_property
    def comparison(self) -> tuple[str, Any] | None:
        for c in COMPARATORS:
            if getattr(self, c) is not None:
                return c, getattr(self, c)
        return None

    @cached_property
    def condition(self) -> Any:
        """The per-element condition this aggregate evaluates (None: membership alone)."""
        arg = self.arg
        return arg if isinstance(arg, BaseModel) else None

    @cached_property
    def field(self) -> str | None:
        """The element field a value aggregate reads."""
        return self.arg if isinstance(self.arg, str) else None


AGGREGATE_ATTR = {"any": "any_", "all": "all_", "min": "min_", "max": "max_"}


class Collection(Strict):
    """A named collection of the subject's dated events: the kinds, a per-element condition
    (`where`, three-valued: inside it the kinds' fields and `event.*` are the element's, every
    other fact is the enclosing sheet's) and a window; its aggregates become facts."""
    id: str = Field(pattern=ID_RE)
    title: str = Field(min_length=1)
    description: str = ""
    events: list[str] = Field(min_length=1)
    where: "Condition | None" = None
    window: Window | None = None
    assume_complete: bool = Field(default=False, description=(
        "treat the recorded events of these kinds as all there are even where the record does not "
        "say its listing is complete (say why in the description)"))
    facts: list[Aggregate] = Field(min_length=1)


class StateType(str, Enum):
    boolean = "boolean"
    integer = "integer"
    number = "number"
    string = "string"
    date = "date"
    pending = "pending"


class StateVar(Strict):
    """A named value the course carries from one item to the next; read as `state.<name>`.

    Without `initial` it starts unset. A `pending` variable is an open question (e.g. a relapse
    awaiting confirmation): `state.<name>` is the date it was opened while open; it names what
    resolves it and is closed as confirmed or refuted by a later item."""
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    type: StateType
    initial: Union[bool, int, float, str, dt.date, None] = None
    values: list[str] | None = None
    description: str = ""
    output: bool = Field(default=False, description="report its final value in the course outcome")
    source: Source | None = None


class AddTo(Strict):
    """A counter step: the current value plus `add`."""
    add: Union[int, float, ParamRef]


class OpenPending(Strict):
    """Open a pending question, dated at the item, naming what resolves it."""
    open: str = Field(min_length=1)


class ClosePending(Strict):
    """Close a pending question as confirmed, refuted, or superseded (a later event made it moot)."""
    close: Literal["confirmed", "refuted", "superseded"]


Assignment = Union[bool, int, float, str, dt.date, None, OutputOf, AddTo, OpenPending, ClosePending]


class Transition(Strict):
    """A guarded row of the course: when its condition holds for an item, it sets state.

    Every transition reads the state as it was before the item. For each variable, the first
    transition (in listed order) that is met and sets it decides its new value; an earlier
    unknown one makes the value unknown unless the candidates agree; none met keeps it."""
    id: str = Field(pattern=ID_RE)
    title: str = Field(min_length=1)
    source: Source
    when: "Condition"
    set: dict[str, Assignment] = Field(min_length=1)


class CourseItems(Strict):
    """What the course folds over, in date order (ties: the order of `events`, then content)."""
    events: list[str] = Field(min_length=1)
    where: "Condition | None" = None
    window: Window | None = None


class CourseReport(Strict):
    """How each folded item is reported: the decision whose `category` (and, for a decided row
    that still names several, `candidates`: "A|B") is shown, its fields shown as flags, and other
    decisions reported beside it."""
    item: str = Field(pattern=ID_RE, description="the per-item decision shown (its `category` field)")
    flags: list[str] = Field(default=[], description="fields of that decision shown as yes / no / unknown")
    details: list[str] = Field(default=[], description="other decisions reported with each item")
    review: list[str] = Field(default=[], description=(
        "`collect` decisions whose rows are review flags for the committee: each row's output is the "
        "message; the messages of the met rows are shown with the item (an unknown row as 'possibly: ...')"))


class Course(Strict):
    """The patient's course as data: a fold over the items with named state and transitions, then
    the course's own collections (over `result` events: each folded item with its facts and
    decision outputs), derived facts, rules and decisions, evaluated once after the fold."""
    items: CourseItems
    report: CourseReport | None = None
    state: list[StateVar] = []
    transitions: list[Transition] = []
    collections: list[Collection] = []
    derived: list[Derived] = []
    rules: list[Rule] = []
    decisions: list[Decision] = []


class Dependency(Strict):
    pack: str = Field(pattern=ID_RE)
    version: str = Field(default="*", description="'*' or an exact semver or 'MAJOR.x'")


class Manifest(Strict):
    """pack.yaml: identity, provenance, what the pack reads, and its rules."""
    id: str = Field(pattern=ID_RE)
    version: str = Field(pattern=SEMVER_RE)
    effective: dt.date
    title: str = Field(min_length=1)
    source: str = Field(min_length=1, description="the protocol or guideline this pack encodes")
    depends_on: list[Dependency] = []
    facts: list[FactDecl] = []
    parameters: list[Parameter] = []
    derived: list[Derived] = []
    rules: list[Rule] = []
    decisions: list[Decision] = []
    events: list[EventKind] = []
    collections: list[Collection] = []
    course: Course | None = None

    @field_validator("rules")
    @classmethod
    def _unique_rule_ids(cls, v: list[Rule]) -> list[Rule]:
        seen: set[str] = set()
        for r in v:
            if r.id in seen:
                raise ValueError(f"duplicate rule id {r.id!r}")
            seen.add(r.id)
        return v


class ItemExpect(Strict):
    """What a course test expects of one folded item (by event id)."""
    rules: dict[str, Literal["met", "not_met", "unknown"]] = {}
    decisions: dict[str, Any] = {}
    state: dict[str, Any] = Field(default={}, description="state after the item; 'unknown' for an unknown value")
    missing: dict[str, list[str]] = {}


class Expect(Strict):
    rules: dict[str, Literal["met", "not_met", "unknown"]] = {}
    decisions: dict[str, Any] = {}
    missing: dict[str, list[str]] = Field(default={}, description="rule or decision id -> exact missing facts")
    facts: dict[str, Any] = Field(default={}, description="aggregate or derived facts: value, or 'unknown' / 'absent'")
    items: dict[str, ItemExpect] = Field(default={}, description="course packs: per folded item (event id)")
    state: dict[str, Any] = Field(default={}, description="course packs: the state after the last item")


class TestEvent(Strict):
    """One event of a test's timeline."""
    kind: str = Field(pattern=ID_RE)
    date: dt.date
    id: str | None = None
    fields: dict[str, Any] = {}


class PackTest(Strict):
    name: str = Field(min_length=1)
    given: dict[str, Any] = {}
    parameters: dict[str, Any] = {}
    events: list[TestEvent] | None = Field(default=None, description=(
        "a timeline: collections are computed from it and, in a pack with a course, the course is run"))
    expect: Expect


class TestFile(Strict):
    tests: list[PackTest] = []


def is_semver(v: str) -> bool:
    return bool(re.match(SEMVER_RE, v))

