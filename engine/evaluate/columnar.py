"""A compiled batch evaluator: a pack's decision tables evaluated over columns (polars), one
expression per table row, generated from the same pack models and plan as both row evaluators.

It decides only what it can decide exactly and leaves the rest to the engine of record:
- Numbers are decimals (polars Decimal, scale 18), never floats: float64 gave wrong grades at
  x ULN and x baseline boundaries (issue 15). A value is handled here only if it is written
  plainly with at most 15 significant digits (so the engine's 15-digit rounding leaves it as it
  is), at most 12 decimals and below 10^13; literal factors (x ULN) are checked at compile time
  so that every product is exact. Other rows are marked for the engine (`ENGINE`).
- Three-valued logic is polars' own: a comparison with a null (missing) fact is null (unknown),
  `&` and `|` are Kleene's, `~` keeps null. A hit-policy `first` table takes the first met row
  when every earlier row is not met; an earlier unknown row (which `decide` turns into an
  indeterminate result, or a decided one when all candidates agree) is marked `ENGINE`, as is a
  row whose outcome the engine would decide from facts of other packs.
- Derived facts: `sum` and `difference` are exact decimals, null (unknown) where the row
  evaluators' rounding to 12 significant digits would change them; other operations are not
  compiled: a record that reaches a table row reading one is marked `ENGINE`. Facts of other packs and `unique` /
  `collect` tables are refused (`NotCompilable`): the caller uses the engine for the whole batch.

Speed: a string fact that most rows test for equality at the top of their condition (CTCAE's
`lab.term`) partitions the rows; each partition evaluates only the table rows that can hold.
Agreement with durable-rules is not assumed: callers check a sample of every batch through it
and fail on any difference, and the test suite checks every embedded pack test and a random
differential.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Mapping

import polars as pl

from engine.evaluate.compare import factref_times, literal
from engine.evaluate.facts import FactSheet
from engine.evaluate.logic import Outcome
from engine.rules.model import AllOf, AnyOf, Compare, Decision, FactRef, FactType, HitPolicy, NotOf, RuleRef

SCALE = 18                  # decimals kept by every number column
MAX_DECIMALS = 12           # a value with more decimals goes to the engine
MAX_INTEGER_DIGITS = 13     # a value of 10^13 or more goes to the engine
MAX_SIGNIFICANT = 15        # the engine rounds to 15 significant digits (values.py)
DERIVED_SIGNIFICANT = 12    # and derived facts to 12 (values.round_derived)
NUMBER = pl.Decimal(38, SCALE)
DEFAULT = -1                # no row met, every row not met: the table's default
ENGINE = -2                 # the engine must decide this row (see the module docstring)

_TYPES = {FactType.number: NUMBER, FactType.integer: NUMBER, FactType.string: pl.Utf8,
          FactType.boolean: pl.Boolean, FactType.date: pl.Date}
_PLAIN = r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)$"
_NULL_BOOL = pl.lit(None, dtype=pl.Boolean)


class NotCompilable(Exception):
    """The pack uses something this evaluator does not compile; use the engine."""


class _Uncompiled(Exception):
    """A table row reads what is not compiled (a derived fact): records that reach it go to the engine."""


# --- numbers as exact decimal columns -------------------------------------------------------------

def parse_numbers(df: pl.DataFrame, columns: Mapping[str, str]) -> pl.DataFrame:
    """Read text columns of numbers: for each `out: source` adds `out` (the decimal value as
    written; null when empty or not written plainly), `out.present` (the cell is not empty) and
    `out.int` / `out.dec` (its digits before / after the point, as written), which `exact_number`
    reads. Cheap string operations in stages (one expression tree reusing its parts would
    recompute them)."""
    s1, s2 = [], []
    for out, src in columns.items():
        s = f"__{out}.s"
        s1.append(pl.col(src).str.strip_chars().alias(s))
        length = pl.col(s).str.len_bytes().cast(pl.Int32)
        point = pl.col(s).str.find(".", literal=True).cast(pl.Int32)
        sign = pl.col(s).str.starts_with("-") | pl.col(s).str.starts_with("+")
        plain = pl.col(s).str.contains(_PLAIN)
        s2 += [(length > 0).fill_null(False).alias(f"{out}.present"),
               (pl.when(point.is_null()).then(length).otherwise(point) - sign.cast(pl.Int32)).alias(f"{out}.int"),
               pl.when(point.is_null()).then(0).otherwise(length - point - 1).alias(f"{out}.dec"),
               pl.when(plain).then(pl.col(s)).otherwise(None).cast(NUMBER, strict=False).alias(out)]
    return df.with_columns(s1).with_columns(s2).drop([f"__{o}.s" for o in columns])


def exact_number(out: str, shift: pl.Expr | int = 0) -> pl.Expr:
    """Whether column `out` (from parse_numbers) is empty, or taken here exactly once multiplied
    by 10^shift. Conservatively, by the digits as written: at most 15 digits in all (so at most
    15 significant ones), at most 12 decimals and 13 integer digits after the shift. Then the
    decimal equals what the engine reads (Decimal(text) x 10^shift, which its rounding to 15
    significant digits leaves unchanged) and every product with a compiled factor is exact. A
    value written with more digits (even only zeros) goes to the engine."""
    c = lambda suffix: pl.col(f"{out}.{suffix}")  # noqa: E731
    within = ((c("int") + c("dec") <= MAX_SIGNIFICANT) & (c("int") + shift <= MAX_INTEGER_DIGITS)
              & (c("dec") - shift <= MAX_DECIMALS))
    return ~c("present") | (within & pl.col(out).is_not_null())


def _lit_number(d: Decimal) -> pl.Expr:
    """A literal as an exact decimal column value (refused if the column scale cannot hold it)."""
    d = d.normalize()
    exp = d.as_tuple().exponent
    scale = max(0, -exp) if isinstance(exp, int) else 0
    if scale > SCALE or abs(d) >= Decimal(10) ** (38 - SCALE):
        raise NotCompilable(f"literal {d} does not fit a decimal column")
    q = d.quantize(Decimal(1).scaleb(-scale))
    return pl.lit(q, dtype=pl.Decimal(38, scale))


def _times(d: Decimal) -> pl.Expr:
    """A fact-vs-fact factor: products with a value of <= 12 decimals and < 10^13 stay exact."""
    d = d.normalize()
    exp = d.as_tuple().exponent
    scale = max(0, -exp)
    unscaled = abs(d.scaleb(scale))
    if scale > SCALE - MAX_DECIMALS or unscaled >= 10 ** 6:
        raise NotCompilable(f"factor {d} is too fine for exact decimal products")
    return pl.lit(d.quantize(Decimal(1).scaleb(-scale)), dtype=pl.Decimal(38, scale))


# --- conditions -> expressions -------------------------------------------------------------------

@dataclass
class _Compiler:
    params: Mapping[str, Any]
    types: Mapping[str, FactType]
    rules: Mapping[str, Any]                     # rule id -> condition
    derived: Mapping[str, Any] = field(default_factory=dict)   # name -> Derived (sum/difference compiled)
    cache: dict[str, pl.Expr] = field(default_factory=dict)
    guard: tuple[str, str] | None = None         # (fact, value) known to hold in this partition

    def cond(self, c: Any) -> pl.Expr | bool:
        """A Boolean expression (null = unknown), or a Python bool when constant."""
        if isinstance(c, AllOf):
            return self._fold([self.cond(x) for x in c.all], "and")
        if isinstance(c, AnyOf):
            return self._fold([self.cond(x) for x in c.any], "or")
        if isinstance(c, NotOf):
            inner = self.cond(c.not_)
            return (not inner) if isinstance(inner, bool) else ~inner
        if isinstance(c, RuleRef):
            if c.rule not in self.rules:
                raise NotCompilable(f"rule reference {c.rule!r} outside the pack")
            return self.cond(self.rules[c.rule])
        if isinstance(c, Compare):
            return self.compare(c)
        raise NotCompilable(f"condition {type(c).__name__} is not compiled to columns")

    @staticmethod
    def _fold(parts: list[pl.Expr | bool], kind: str) -> pl.Expr | bool:
        absorbing = kind == "or"           # True absorbs an `any`, False an `all`
        exprs = []
        for p in parts:
            if isinstance(p, bool):
                if p == absorbing:
                    return absorbing
                continue
            exprs.append(p)
        if not exprs:
            return not absorbing
        out = exprs[0]
        for e in exprs[1:]:
            out = (out | e) if absorbing else (out & e)
        return out

    def _col(self, name: str) -> pl.Expr:
        if name in self.derived:
            return self._derived(name)
        if name not in self.types:
            raise NotCompilable(f"fact {name!r} is not declared by the pack (a dependency's output?)")
        return pl.col(name)

    def _derived(self, name: str) -> pl.Expr:
        """A `sum` / `difference` as an exact decimal, null (unknown) where the row evaluators'
        rounding to 12 significant digits would change it: a decision that depends on it then goes
        to the engine, one that does not (Kleene) stands. Other operations are not compiled."""
        if name in self.cache:
            return self.cache[name]
        d = self.derived[name]
        if d.op not in ("sum", "difference"):
            raise _Uncompiled(name)
        parts = []
        for a in d.args:
            if isinstance(a, str):
                if self.types.get(a, FactType.number) not in (FactType.number, FactType.integer) and a not in self.derived:
                    raise _Uncompiled(name)
                parts.append(self._col(a))
            else:
                parts.append(_lit_number(Decimal(str(literal(a, self.params)))))
        value = parts[0]
        for x in parts[1:]:
            value = value + x if d.op == "sum" else value - x
        digits = (value.cast(pl.Utf8).str.replace("-", "", literal=True).str.replace(".", "", literal=True)
                  .str.strip_chars_start("0").str.strip_chars_end("0").str.len_bytes())
        self.cache[name] = pl.when(digits <= DERIVED_SIGNIFICANT).then(value).otherwise(None).cast(NUMBER)
        return self.cache[name]

    def compare(self, c: Compare) -> pl.Expr | bool:
        op = c.op
        if c.fact in self.derived and op in ("exists", "missing"):
            raise _Uncompiled(c.fact)  # a derived value that is not exact is null here, not missing
        if c.param is not None:  # a parameter test is a constant of the compiled pack
            from engine.evaluate.reference import evaluate_condition
            return evaluate_condition(c, FactSheet(), self.params, {}).outcome is Outcome.MET
        name = c.fact
        col = self._col(name)
        ftype = self.types.get(name, FactType.number)
        if op == "exists":
            return col.is_not_null()
        if op == "missing":
            return col.is_null()
        if self.guard is not None and self.guard[0] == name and op == "eq" and isinstance(c.operand, str):
            return c.operand == self.guard[1]   # decided by the partition
        if op == "in":
            vals = [literal(v, self.params) for v in c.in_]
            same = [v for v in vals if _same_type(v, ftype)]
            if not same:
                return pl.when(col.is_null()).then(_NULL_BOOL).otherwise(pl.lit(False))
            return self._fold([self._cmp("eq", col, v, ftype) for v in same], "or")
        if op == "between":
            lo, hi = (literal(v, self.params) for v in c.between)
            return self._fold([self._cmp("gte", col, lo, ftype), self._cmp("lte", col, hi, ftype)], "and")
        o = c.operand
        if isinstance(o, FactRef):
            other = self._col(o.fact)
            otype = self.types.get(o.fact, FactType.number)
            times = Decimal(str(factref_times(o, self.params)))
            if ftype in (FactType.number, FactType.integer) and otype in (FactType.number, FactType.integer):
                right = other if times == 1 else other * _times(times)
                return _order(op, col, right)
            if ftype is FactType.date and otype is FactType.date and times == 1:
                return _order(op, col, other)
            raise NotCompilable(f"{name} {op} {times} x {o.fact}: types not compiled to columns")
        return self._cmp(op, col, literal(o, self.params), ftype)

    def _cmp(self, op: str, col: pl.Expr, v: Any, ftype: FactType) -> pl.Expr:
        if not _same_type(v, ftype):   # values of different types are never equal (compare.compare)
            if op in ("eq", "ne"):
                return pl.when(col.is_null()).then(_NULL_BOOL).otherwise(pl.lit(op == "ne"))
            raise NotCompilable(f"cannot order a {ftype.value} fact against {v!r}")
        if isinstance(v, Decimal):
            right = _lit_number(v)
        elif isinstance(v, dt.date):
            right = pl.lit(v, dtype=pl.Date)
        elif isinstance(v, bool):
            right = pl.lit(v, dtype=pl.Boolean)
        else:
            right = pl.lit(v, dtype=pl.Utf8)
        if op in ("lt", "lte", "gt", "gte") and isinstance(v, (bool, str)):
            raise NotCompilable(f"cannot order {v!r}")
        return _order(op, col, right)


def _order(op: str, left: pl.Expr, right: pl.Expr) -> pl.Expr:
    return {"eq": left == right, "ne": left != right, "lt": left < right, "lte": left <= right,
            "gt": left > right, "gte": left >= right}[op]


def _same_type(v: Any, ftype: FactType) -> bool:
    if ftype in (FactType.number, FactType.integer):
        return isinstance(v, Decimal)
    if ftype is FactType.string:
        return isinstance(v, str)
    if ftype is FactType.boolean:
        return isinstance(v, bool)
    return isinstance(v, dt.date) and not isinstance(v, dt.datetime)


# --- a compiled decision table ------------------------------------------------------------------

def _guard(cond: Any, types: Mapping[str, FactType]) -> tuple[str, str] | None:
    """(fact, value) when the condition is `all: [{fact: F, eq: "value"}, ...]` on a string fact."""
    if isinstance(cond, AllOf):
        for part in cond.all:
            if (isinstance(part, Compare) and part.fact and part.op == "eq" and isinstance(part.operand, str)
                    and types.get(part.fact) is FactType.string):
                return part.fact, part.operand
    return None


@dataclass
class CompiledDecision:
    """One `first` table: evaluate() gives, per row, the index of the deciding table row,
    DEFAULT (-1) or ENGINE (-2)."""
    decision: Decision
    keys: list[str]                       # the plan's evaluable keys of the rows, in order
    pack_id: str
    types: dict[str, FactType]
    params: Mapping[str, Any]
    rules: dict[str, Any]
    derived: dict[str, Any] = field(default_factory=dict)
    partition_fact: str | None = None
    _by_value: dict[Any, pl.Expr] = field(default_factory=dict, repr=False)

    def _chain(self, guard: tuple[str, str] | None) -> pl.Expr:
        comp = _Compiler(self.params, self.types, self.rules, self.derived, guard=guard)
        branches: list[tuple[pl.Expr, int]] = []
        for j, row in enumerate(self.decision.rows):
            g = _guard(row.when, self.types)
            if guard is not None and g is not None and g[0] == guard[0] and g[1] != guard[1]:
                continue  # its term test is false in this partition: not met
            try:
                c = comp.cond(row.when)
            except _Uncompiled:  # whatever reaches this row is the engine's to decide
                branches.append((pl.lit(True), ENGINE))
                break
            if c is False:
                continue
            if c is True:
                branches.append((pl.lit(True), j))
                break
            branches.append((c, j))
        expr: Any = pl.lit(DEFAULT, dtype=pl.Int32)
        for c, j in reversed(branches):
            expr = pl.when(c.fill_null(False)).then(pl.lit(j, dtype=pl.Int32)).when(c.is_null()).then(
                pl.lit(ENGINE, dtype=pl.Int32)).otherwise(expr)
        return expr

    def expression(self, partition_value: Any = None) -> pl.Expr:
        """The table's row index for rows whose partition fact has this value (None: any)."""
        key = partition_value
        if key not in self._by_value:
            guard = (self.partition_fact, partition_value) if partition_value is not None and self.partition_fact else None
            self._by_value[key] = self._chain(guard)
        return self._by_value[key]

    def evaluate(self, facts: pl.DataFrame) -> pl.Series:
        """Row index per row of `facts` (one column per declared fact; missing columns = null)."""
        df = facts.with_columns([pl.lit(None, dtype=_TYPES[t]).alias(n) for n, t in self.types.items()
                                 if n not in facts.columns])
        df = df.with_columns(pl.int_range(pl.len(), dtype=pl.UInt32).alias("__i"))
        if self.partition_fact is None:
            return df.select(self.expression().alias("row"))["row"]
        parts = []
        for (value,), part in df.partition_by(self.partition_fact, as_dict=True, maintain_order=True).items():
            parts.append(part.select("__i", self.expression(value).alias("row")))
        if not parts:
            return pl.Series("row", [], dtype=pl.Int32)
        return pl.concat(parts).sort("__i")["row"]

    def output(self, index: int) -> Any:
        return self.decision.default if index == DEFAULT else self.decision.rows[index].then

    def key(self, index: int) -> str:
        return f"{self.decision.id}#default" if index == DEFAULT else self.keys[index]


def compile_decision(pack: Any, decision_id: str, params: Mapping[str, Any]) -> CompiledDecision:
    """Compile one decision table of a pack for these parameters (NotCompilable if it cannot be)."""
    m = pack.manifest
    dec = next((d for d in m.decisions if d.id == decision_id), None)
    if dec is None:
        raise NotCompilable(f"{m.id} has no decision {decision_id!r}")
    if dec.hit_policy is not HitPolicy.first:
        raise NotCompilable(f"{m.id}.{decision_id} is a {dec.hit_policy.value!r} table")
    types = {f.name: f.type for f in m.facts}
    rules = {r.id: r.when for r in m.rules}
    keys = list(dec.row_keys)   # how traces name the rows (`grade#<id>` or `grade#<index>`)
    guards = [_guard(r.when, types) for r in dec.rows]
    counts: dict[str, int] = {}
    for g in guards:
        if g is not None:
            counts[g[0]] = counts.get(g[0], 0) + 1
    best = max(counts, key=counts.__getitem__, default=None)
    part = best if best is not None and counts[best] * 2 > len(dec.rows) else None  # most rows test it
    compiled = CompiledDecision(dec, keys, m.id, types, params, rules, {d.name: d for d in m.derived}, part)
    compiled.expression()          # compiles every row once: refusals surface here, not mid-batch
    for g in {g for g in guards if g is not None and g[0] == part}:
        compiled.expression(g[1])
    return compiled


def fact_frame(rows: list[Mapping[str, Any]], types: Mapping[str, FactType]) -> tuple[pl.DataFrame, pl.Series]:
    """Fact sheets (name -> value, as FactSheet holds them) as typed columns, and per row whether
    every number fits the exact decimal columns (if not, the engine decides that row)."""
    cols: dict[str, pl.Series] = {}
    ok = pl.Series("ok", [True] * len(rows))
    for name, t in types.items():
        vals = [r.get(name) for r in rows]
        if t in (FactType.number, FactType.integer):
            text = pl.Series(name, [None if v is None else format(Decimal(str(v)), "f") for v in vals], dtype=pl.Utf8)
            frame = parse_numbers(pl.DataFrame({"t": text}), {"v": "t"})
            cols[name] = frame["v"].alias(name)
            ok = ok & frame.select(exact_number("v").alias("x"))["x"]
        else:
            cols[name] = pl.Series(name, vals, dtype=_TYPES[t])
    return pl.DataFrame(cols), ok
