"""`adjudicator ctcae grade` as one batch: a lab listing graded in columns, checked by
durable-rules, audited as one Parquet file chained into the trail.

The flow, and why each step is safe:
1. Read. polars reads the CSV when the file is ordinary (one header naming each column once; no
   quote, blank line, control character or lone carriage return; every row as wide as the
   header); anything else is read by the listing reader the row path uses (`read_listing`), which
   also gives the same error for a broken file. Either way: the same rows, the same line numbers.
2. Facts. Terms, lab tests and unit readings are asked once per distinct value of the same edge
   functions as the row path (the lab-terms pack's term aliases and units through SafetyGrader, lab_facts);
   numbers become exact decimals (engine/evaluate/columnar.py). A row the columns cannot take
   exactly goes to the row path: an unknown term or test, a number written with an exponent or
   beyond the exact limits, a unit scaling that is not a power of ten, a clinical qualifier
   column, and every row a listing check could question (a negative number, ULN 0, LLN above ULN).
3. Grade. The pack's `grade` table compiled to columns (the same YAML, the same plan) gives each
   row its deciding table row; `ENGINE` rows (an earlier row unknown) go to the row path too.
   A listing no larger than the check's sample is graded by the row path entirely.
4. Check. A sample of the column-graded rows (every Nth row, and the first row decided by each
   table row for each term: every branch taken) is graded again by the row path through
   durable-rules, the engine of record; any difference fails the run before anything is written.
5. Audit. Every row's grade, deciding rule, evaluator and the values read (and its input cells)
   go into one Parquet file beside the audit store, named by its sha256; one audit record (use
   case `ctcae-listing`) cites the file, its sha256, the counts and the check, and is chained into
   the trail like any other. `audit verify` recomputes the file's sha256 (batches.py).

The output is the row path's, row for row (the differential test compares the two), except that
every row's `decision_id` is the batch record's.
"""
from __future__ import annotations

import hashlib
import io
import re
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Mapping

import polars as pl

from engine.errors import EvaluationError
from engine.evaluate.columnar import (DEFAULT, ENGINE, NUMBER, CompiledDecision, NotCompilable, compile_decision,
                                      exact_number, parse_numbers)
from engine.evaluate.run import resolve_params

USE_CASE = "ctcae-listing"
NUMBER_COLUMNS = ("value", "lln", "uln", "baseline")
OUTPUT_COLUMNS = ("term", "grade", "gradable", "reason", "source")
SAMPLE_ROWS = 200             # about this many rows re-graded by durable-rules, plus one per branch
# control characters (but the line ends), and in UTF-8: C1 controls, bidi overrides, a byte-order mark
_CONTROL_BYTES = bytes([b for b in range(32) if b not in (10, 13)] + [127])
_CONTROL_UTF8 = (re.compile(b"\xc2[\x80-\x9f]"), re.compile(b"\xe2\x80[\xaa-\xae]"),
                 re.compile(b"\xe2\x81[\xa6-\xa9]"), re.compile(b"\xef\xbb\xbf"))


@dataclass
class ListingBatch:
    """A graded listing: the output rows and what was recorded."""
    frame: pl.DataFrame                 # input columns, then term, grade, gradable, reason, source, decision_id
    decision_id: str
    record: dict[str, Any]              # the audit record's outcome
    engine_rows: int = 0
    columnar_rows: int = 0
    audit: pl.DataFrame | None = field(default=None, repr=False)

    def rows(self) -> list[dict[str, Any]]:
        """The output rows as the row path yields them (for JSON and for comparison)."""
        out = []
        for r in self.frame.iter_rows(named=True):
            r["grade"] = "" if r["grade"] is None else r["grade"]
            if r["decision_id"] is None:
                del r["decision_id"]
            out.append(r)
        return out

    def csv_text(self) -> str:
        """The CSV the row path prints (listing_text), written by polars when no cell needs the
        text path's treatment (a cell a spreadsheet would read as a formula)."""
        from engine.safetext import csv_cell   # the text path's guard, asked about each first character
        df = self.frame
        text = [c for c, t in df.schema.items() if t == pl.Utf8]
        firsts = set(pl.concat([df[c].str.slice(0, 1).unique() for c in text]).drop_nulls().to_list()) if text else set()
        if any(csv_cell(f + "x") != f + "x" for f in firsts if f):  # a cell the guard may change: its path
            from engine.report.safety import listing_text
            return listing_text(self.rows(), False)
        out = df.with_columns(pl.col("grade").cast(pl.Utf8),
                              pl.col("gradable").replace_strict({True: "True", False: "False"}, return_dtype=pl.Utf8),
                              # polars writes "" for an empty string (null as nothing); csv writes nothing
                              *[pl.when(pl.col(c) == "").then(None).otherwise(pl.col(c)).alias(c) for c in text])
        return out.write_csv(line_terminator="\n", quote_style="necessary", null_value="")


# --- 1. reading ------------------------------------------------------------------------------------

def read_frame(path: str | Path) -> pl.DataFrame:
    """The listing's cells as text (lower-case column names) plus `__n`, each row's line number."""
    path = Path(path)
    fast = _fast_frame(path)
    if fast is not None:
        return fast
    from engine.record.listing import read_listing   # the row path's reader: its rows, its errors
    rows = list(read_listing(path))
    cols = list(dict.fromkeys(k for _, r in rows for k in r))
    data: dict[str, Any] = {c: pl.Series(c, [r.get(c, "") for _, r in rows], dtype=pl.Utf8) for c in cols}
    data["__n"] = pl.Series("__n", [n for n, _ in rows], dtype=pl.Int64)
    return pl.DataFrame(data)


def _fast_frame(path: Path) -> pl.DataFrame | None:
    """polars' reading of an ordinary file (module docstring), or None. The checks run on the raw
    bytes (C speed): no control character but the line ends, no quote (a quoted cell may hold a
    line end or a quote), no blank line, no lone carriage return."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    body = raw.removeprefix(b"\xef\xbb\xbf")
    crs = body.count(b"\r")
    if (not body or body.startswith((b"\n", b"\r")) or b"\n\n" in body or b"\n\r\n" in body or b'"' in body
            or (crs and crs != body.count(b"\r\n")) or len(body.translate(None, _CONTROL_BYTES)) != len(body)
            or any(p.search(body) for p in _CONTROL_UTF8)):
        return None
    try:
        first = body.split(b"\n", 1)[0].decode("utf-8").rstrip("\r")
    except UnicodeDecodeError:
        return None
    header = first.split(",")
    names = [h.strip().lower() for h in header]
    if (len(set(names)) != len(names) or "" in names or not ({"term", "lab_test"} & set(names))
            or "value" not in names or "__n" in names):
        return None
    try:
        df = pl.read_csv(io.BytesIO(body), infer_schema=False, has_header=True, empty_string_is_null=False,
                         truncate_ragged_lines=False, raise_if_empty=True, encoding="utf8", quote_char=None)
    except Exception:  # polars' refusal: the row path's reader names the defect
        return None
    lines = body.count(b"\n") + (0 if body.endswith(b"\n") else 1)
    if (df.width != len(names) or df.height == 0 or df.height != lines - 1
            or body.count(b",") != (len(names) - 1) * lines):  # a short row (a long one polars refuses)
        return None
    df.columns = names
    if df.select(pl.any_horizontal([pl.col(c).is_null() for c in names]).any()).item():
        return None  # a short row
    return df.with_columns(pl.int_range(2, pl.len() + 2, dtype=pl.Int64).alias("__n"))


# --- 2-3. facts and grades in columns ------------------------------------------------------------------

class _Edge:
    """What the row path's edge does, asked once per distinct value (by calling it)."""

    def __init__(self, grader: Any) -> None:
        self.grader = grader

    def terms_of(self, raw_term: str, raw_analyte: str) -> list[tuple[str | None, str]] | None:
        """(lab test, term) of each term the row path grades for these cells; None when it would
        not grade them from the columns' facts (an unknown term or test, a direction this version
        does not grade): the row path decides those rows."""
        g = self.grader
        t, a = raw_term.strip(), raw_analyte.strip().lower()
        if t:
            tid = g.labmap.term_id(t)
            return [(None, tid)] if tid in g.terms else None
        if not a:
            return None
        pair = g.labmap.terms(a)
        if pair is None:
            return None
        terms = [x for x in pair if x and x in g.terms] or [x for x in pair if x]   # as SafetyGrader.grade_lab
        return [(a, x) for x in terms] if terms and all(x in g.terms for x in terms) else None

    def unit_of(self, test: str | None, term: str, unit: str | None) -> tuple[str | None, int | None, str, str]:
        """(canonical unit, the scaling's power of ten or None if it is not one, note, conversion text)."""
        from engine.facts.safety import lab_facts
        lf = lab_facts(self.grader.labmap, test, term, "1", unit, "1", "1", "1")
        f = lf.facts
        factors = {f.get(f"lab.{k}") for k in NUMBER_COLUMNS}
        power = None
        if len(factors) == 1:
            d = next(iter(factors))
            if isinstance(d, Decimal) and d > 0:
                sign, digits, exp = d.normalize().as_tuple()
                if digits == (1,) and isinstance(exp, int) and -6 <= exp <= 6:
                    power = exp
        return f.get("lab.unit"), power, lf.unit_note, lf.converted


def _graded_columns(frame: pl.DataFrame, compiled: CompiledDecision, edge: _Edge) -> pl.DataFrame:
    """Per input row (`__n`): term, grade, gradable, reason, source, rule and the facts read;
    `__engine` marks the rows the row path must grade."""
    cols = frame.columns
    t_raw = pl.col("term") if "term" in cols else pl.lit("", dtype=pl.Utf8)
    a_raw = pl.col("lab_test") if "lab_test" in cols else pl.lit("", dtype=pl.Utf8)
    u_raw = pl.col("unit") if "unit" in cols else pl.lit(None, dtype=pl.Utf8)
    # a clinical qualifier given in a column (fasting, ...): the row path reads it
    quals = [c for c in cols if c in edge.grader.qualifiers]
    qualified = pl.any_horizontal([pl.col(c).str.strip_chars().str.len_bytes() > 0 for c in quals]) if quals else pl.lit(False)
    base = frame.select("__n", t_raw.alias("__t"), a_raw.alias("__a"), u_raw.alias("__u"), qualified.alias("__q"),
                        *[(pl.col(c) if c in cols else pl.lit("", dtype=pl.Utf8)).alias(f"__{c}") for c in NUMBER_COLUMNS])
    base = parse_numbers(base, {f"__v.{c}": f"__{c}" for c in NUMBER_COLUMNS})
    # terms: once per distinct (term, lab_test) pair of cells; one row per term graded
    pairs = base.select("__t", "__a").unique()
    mapping = []
    for t, a in pairs.iter_rows():
        terms = edge.terms_of(t, a) or []
        mapping += [(t, a, pos, test, term, len(terms), "/".join(x[1] for x in terms))
                    for pos, (test, term) in enumerate(terms)]
    mapping_df = pl.DataFrame(mapping, schema={"__t": pl.Utf8, "__a": pl.Utf8, "__pos": pl.Int32, "__test": pl.Utf8,
                                               "term": pl.Utf8, "__k": pl.Int32, "__joined": pl.Utf8}, orient="row")
    x = base.join(mapping_df, on=["__t", "__a"], how="inner")
    # units: once per distinct (lab test, term, unit)
    units = x.select("__test", "term", "__u").unique()
    probed = [edge.unit_of(test, t, u) for test, t, u in units.iter_rows()]
    units = units.with_columns(pl.Series("__unit", [q[0] for q in probed], dtype=pl.Utf8),
                               pl.Series("__pow", [q[1] for q in probed], dtype=pl.Int32),
                               pl.Series("__note", [q[2] for q in probed], dtype=pl.Utf8),
                               pl.Series("__conv", [q[3] for q in probed], dtype=pl.Utf8))
    x = x.join(units, on=["__test", "term", "__u"], how="left", nulls_equal=True)
    # numbers: exact decimals scaled by the unit's power of ten, or the row goes to the engine
    shift = pl.col("__pow").fill_null(0)
    exact = pl.col("__pow").is_not_null() & ~pl.col("__q")
    powers = sorted({v for v in units["__pow"].to_list() if v})
    scaled = []
    for c in NUMBER_COLUMNS:
        v = pl.col(f"__v.{c}")
        exact = exact & exact_number(f"__v.{c}", shift) & (v.is_null() | (v >= 0))  # negatives: the listing checks decide
        e = v
        for k in powers:
            e = pl.when(pl.col("__pow") == k).then(v * pl.lit(Decimal(1).scaleb(k))).otherwise(e)
        scaled.append(e.cast(NUMBER).alias(f"lab.{c}"))
    x = x.with_columns(*scaled, exact.alias("__exact"), pl.col("term").alias("lab.term"), pl.col("__unit").alias("lab.unit"))
    x = x.with_columns((pl.col("__exact") & ~(pl.col("lab.uln") == 0).fill_null(False)
                        & ~(pl.col("lab.lln") > pl.col("lab.uln")).fill_null(False)).alias("__exact"))
    facts = x.select("lab.term", "lab.unit", *[f"lab.{c}" for c in NUMBER_COLUMNS])
    x = x.with_columns(pl.when(pl.col("__exact")).then(compiled.evaluate(facts)).otherwise(ENGINE).alias("__j"))
    # the table's outputs and the reason's additions (the unit note, the conversion), by row index
    idx = [DEFAULT] + list(range(len(compiled.decision.rows)))
    outs = [compiled.output(j) if isinstance(compiled.output(j), dict) else {} for j in idx]
    table = pl.DataFrame({
        "__j": pl.Series(idx, dtype=pl.Int32),
        "grade": pl.Series([o.get("grade") for o in outs], dtype=pl.Int64),
        "gradable": pl.Series([bool(o.get("gradable")) for o in outs], dtype=pl.Boolean),
        "__reason": pl.Series([str(o.get("reason", "")) for o in outs], dtype=pl.Utf8),
        "__unitish": pl.Series(["unit" in str(o.get("reason", "")) for o in outs], dtype=pl.Boolean),
        "rule": pl.Series([compiled.key(j) for j in idx], dtype=pl.Utf8)})
    x = x.join(table, on="__j", how="left")
    note = ~pl.col("gradable") & (pl.col("__note") != "") & pl.col("__unitish")
    x = x.with_columns((pl.col("__reason") + pl.when(note).then(pl.lit(": ") + pl.col("__note")).otherwise(pl.lit(""))
                        + pl.when(pl.col("__conv") != "").then(pl.lit(" [") + pl.col("__conv") + pl.lit("]"))
                        .otherwise(pl.lit(""))).alias("reason"), pl.lit("lab").alias("source"))
    keep = ["__n", "__engine", "term", "grade", "gradable", "reason", "source", "rule", "lab.term", "lab.unit",
            *[f"lab.{c}" for c in NUMBER_COLUMNS]]
    x = x.select(*keep[:1], (pl.col("__j") == ENGINE).alias("__engine"), *keep[2:], "__k", "__pos", "__joined")
    single = x.filter(pl.col("__k") == 1).select(keep)
    # an analyte of two directions: a non-zero grade wins, else all gradable -> the first, with
    # both terms named, else the first not gradable (SafetyGrader.grade_lab)
    multi = x.filter(pl.col("__k") > 1)
    per_row = multi.group_by("__n").agg(
        pl.col("__engine").any().alias("__any_engine"),
        pl.col("__pos").filter(pl.col("grade").fill_null(0) != 0).min().alias("__nz"),
        pl.col("gradable").all().alias("__allg"),
        pl.col("__pos").filter(~pl.col("gradable")).min().alias("__ng"))
    per_row = per_row.with_columns(pl.when(pl.col("__nz").is_not_null()).then(pl.col("__nz"))
                                   .when(pl.col("__allg")).then(0).otherwise(pl.col("__ng")).alias("__pos"))
    chosen = per_row.join(multi, on=["__n", "__pos"], how="left").with_columns(
        pl.col("__any_engine").alias("__engine"),
        pl.when(pl.col("__nz").is_null() & pl.col("__allg")).then(pl.col("__joined")).otherwise(pl.col("term")).alias("term"))
    rest = base.join(mapping_df.select("__t", "__a").unique(), on=["__t", "__a"], how="anti").select(
        "__n", pl.lit(True).alias("__engine"))
    return pl.concat([single, chosen.select(keep), rest], how="diagonal_relaxed")


# --- 4. the row path (durable-rules): engine rows and the check ---------------------------------------

class _Collector:
    """A stand-in for the audit writer: keeps each row's would-be audit entry (rule and facts)."""

    def __init__(self) -> None:
        self.entries: dict[str, dict[str, Any]] = {}

    def add(self, entry: dict[str, Any]) -> str:
        key = entry["item"]
        self.entries[key] = entry
        return key


def _row_path(frame: pl.DataFrame, ns: list[int], version: str, registry: Any, params: Mapping[str, Any] | None,
              listing: str) -> tuple[list[dict[str, Any]], _Collector]:
    """The row path's output (and would-be audit entries) for these rows, through durable-rules."""
    from engine.adjudicate.safety import grade_listing
    from engine.evaluate.durable_adapter import DurableEvaluator
    sub = frame.filter(pl.col("__n").is_in(ns)).sort("__n")
    cols = [c for c in frame.columns if c != "__n"]
    rows = [(r["__n"], {c: r[c] for c in cols}) for r in sub.iter_rows(named=True)]
    col = _Collector()
    out = list(grade_listing(rows, version, registry=registry, evaluator=DurableEvaluator(), params=params,
                             writer=col, listing=listing))
    return out, col


def _sample(graded: pl.DataFrame, size: int) -> list[int]:
    """Every Nth column-graded row, and the first row of each (term, deciding rule)."""
    cg = graded.filter(~pl.col("__engine"))
    if cg.height == 0:
        return []
    step = max(1, cg.height // max(1, size))
    every = cg["__n"].gather_every(step).to_list()
    firsts = cg.group_by("term", "rule").agg(pl.col("__n").min())["__n"].to_list()
    return sorted(set(every) | set(firsts))


# --- the batch ---------------------------------------------------------------------------------------

def grade_listing_batch(path: str | Path, version: str, *, registry: Any, params: Mapping[str, Any] | None,
                        store: Any, actor: str, sample: int = SAMPLE_ROWS,
                        frame: pl.DataFrame | None = None, source: Mapping[str, Any] | None = None) -> ListingBatch:
    """Grade a listing as one audited batch (module docstring); EvaluationError if durable-rules
    disagrees with the columns on any checked row (nothing is written then). `frame`: the listing
    as read_frame read it (a caller reads first, so a broken file opens no store). `source`: where
    the rows came from when the file is not itself a listing (an SDTM dataset read through its
    mapping: engine/sdtm/grading.py), recorded in the batch record's input."""
    from engine.adjudicate.safety import _pack_id
    path = Path(path)
    listing = path.name
    pack = registry.get(_pack_id(version, registry))
    resolved = resolve_params(pack, params)
    frame = read_frame(path) if frame is None else frame
    from engine.adjudicate.safety import SafetyGrader
    from engine.evaluate.durable_adapter import DurableEvaluator
    edge = _Edge(SafetyGrader(version, registry, DurableEvaluator(), params))
    try:
        if frame.height <= sample:  # the check would grade every row again: durable-rules grades them once
            raise NotCompilable("a listing no larger than the check's sample")
        compiled = compile_decision(pack, "grade", resolved)
        graded = _graded_columns(frame, compiled, edge)
    except NotCompilable:
        graded = frame.select("__n").with_columns(pl.lit(True).alias("__engine"))
    # the row path for the rows the columns did not take
    engine_ns = sorted(graded.filter(pl.col("__engine"))["__n"].to_list())  # the row path yields in line order
    engine_out, engine_entries = _row_path(frame, engine_ns, version, registry, params, listing) if engine_ns else ([], _Collector())
    # the check: durable-rules on a sample of the column-graded rows
    check_ns = _sample(graded, sample)
    check_out, _ = _row_path(frame, check_ns, version, registry, params, listing) if check_ns else ([], None)
    by_n = graded.filter(pl.col("__n").is_in(check_ns)).sort("__n")  # the row path yields in line order
    for want, got in zip(check_out, by_n.iter_rows(named=True)):
        mine = {"term": got["term"], "grade": "" if got["grade"] is None else got["grade"], "gradable": got["gradable"],
                "reason": got["reason"], "source": got["source"]}
        theirs = {k: want[k] for k in OUTPUT_COLUMNS}
        if mine != theirs:
            raise EvaluationError(f"{listing} row {got['__n']}: the columnar grade {mine} differs from "
                                  f"durable-rules' {theirs}; nothing was written")
    # one row per input row: the columns' results, or the row path's for the engine rows
    decision_id = uuid.uuid4().hex
    columnar = graded.filter(~pl.col("__engine")).drop("__engine").with_columns(pl.lit("columnar").alias("evaluator"))
    per_row = pl.concat([columnar, _engine_frame(engine_out, engine_entries, engine_ns, listing, pack)],
                        how="diagonal_relaxed")
    inputs = [c for c in frame.columns if c != "__n"]
    # every input row has exactly one result row: align by line number (a sort, not a hash join)
    per_row = per_row.sort("__n")
    full = pl.concat([frame, per_row.drop("__n").rename({c: f"{c}__out" for c in OUTPUT_COLUMNS if c in inputs})],
                     how="horizontal")
    new_name = {c: (f"{c}__out" if c in inputs else c) for c in OUTPUT_COLUMNS}
    out = full.select(*[pl.col(new_name[c]).alias(c) if c in OUTPUT_COLUMNS else pl.col(c) for c in inputs],
                      *[pl.col(c) for c in OUTPUT_COLUMNS if c not in inputs],
                      # a row the row path did not grade (an impossible value, a bad row) has no decision
                      pl.when(pl.col("evaluator") == "none").then(None).otherwise(pl.lit(decision_id)).alias("decision_id"))
    # the audit batch: every row, its input cells, what decided it and the values read
    subject = pl.coalesce([pl.when(pl.col(c).str.len_bytes() > 0).then(pl.col(c)) for c in ("subject_id", "usubjid")
                           if c in inputs] + [pl.lit(listing)])
    audit = full.select(pl.col("__n").alias("row"), subject.alias("subject"),
                        *[pl.col(c).alias(f"input.{c}") for c in inputs],
                        *[pl.col(n).alias(c) for c, n in new_name.items()], "rule", "evaluator",
                        *[c for c in per_row.columns if c.startswith("lab.") or c == "facts"])
    grades = out.group_by("grade").len().sort("grade", nulls_last=True)
    step = max(1, columnar.height // max(1, sample))
    outcome = {
        "listing": listing, "ctcae": version, "rows": out.height,
        "evaluator": "columnar (compiled from the pack); durable-rules for the rows it does not take",
        "columnar_rows": columnar.height, "durable_rows": len(engine_ns),
        "grades": {("not graded" if g is None else str(g)): n for g, n in grades.iter_rows()},
        "durable_check": {"rows": len(check_ns), "agreed": len(check_ns),
                          "sample": ("every column-graded row" if step == 1 else f"every {step}th column-graded row")
                                    + " and the first row decided by each table row for each term"},
    }
    batch = write_batch(store, audit, decision_id)
    outcome["batch"] = batch
    snapshot = {"listing": listing, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "rows": out.height}
    if source:
        snapshot["source"] = dict(source)
    entry = {"decision_id": decision_id, "subject_id": listing, "use_case": USE_CASE, "item": listing,
             "input": snapshot, "packs": [pack.identity()], "parameters": {pack.id: dict(resolved)},
             "trace": [], "outcome": outcome, "actor": actor}
    try:
        with store.batch() as w:
            w.add(entry)
    except BaseException:
        from engine.audit.batches import discard
        discard(store, batch)
        raise
    return ListingBatch(out, decision_id, outcome, len(engine_ns), columnar.height, audit)


def _engine_frame(rows: list[dict[str, Any]], entries: _Collector, ns: list[int], listing: str,
                  pack: Any) -> pl.DataFrame:
    """The row path's results as the batch's columns: its rule (named as traces name table rows),
    and the facts it read as canonical JSON (exact whatever their size; the columns' rows hold
    them as decimals)."""
    from engine.audit.record import canonical_json
    dec = next((d for d in pack.manifest.decisions if d.id == "grade"), None)

    def rule_key(row: str | None) -> str | None:  # SafetyGrader names the row by its index
        d, _, j = (row or "").partition("#")
        return dec.row_keys[int(j)] if dec is not None and d == dec.id and j.isdigit() and int(j) < len(dec.rows) else row

    recs = []
    for n, r in zip(ns, rows):
        e = entries.entries.get(f"{listing}#row{n}")
        recs.append({"__n": n, "term": r["term"], "grade": None if r["grade"] == "" else r["grade"],
                     "gradable": bool(r["gradable"]), "reason": r["reason"], "source": r["source"],
                     "rule": rule_key((e or {}).get("outcome", {}).get("row")), "evaluator": "durable" if e else "none",
                     "facts": canonical_json(e["input"].get("facts", {})) if e else None})
    schema = {"__n": pl.Int64, "term": pl.Utf8, "grade": pl.Int64, "gradable": pl.Boolean, "reason": pl.Utf8,
              "source": pl.Utf8, "rule": pl.Utf8, "evaluator": pl.Utf8, "facts": pl.Utf8}
    return pl.DataFrame(recs, schema=schema)


def write_batch(store: Any, audit: pl.DataFrame, decision_id: str) -> dict[str, Any]:
    from engine.audit.batches import write_parquet
    return write_parquet(store, audit, decision_id)
