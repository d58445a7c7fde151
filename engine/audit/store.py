"""The audit store: an append-only, hash-chained SQLite table of decisions.

Why this shape: 21 CFR Part 11 wants records that are computer-generated, time-stamped and never
obscured. Every write is an INSERT inside `BEGIN IMMEDIATE` (so concurrent writers serialise and
each reads the true chain head inside its own transaction); the store never UPDATEs or DELETEs a
decision, triggers refuse it too, and `verify()` recomputes the chain, which is the real guard.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from hashlib import sha256
from json.encoder import encode_basestring as _enc
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel

from engine import __version__ as ENGINE_VERSION
from engine.errors import AuditIntegrityError, InputError

from .record import (
    FIELDS, GENESIS_HASH, HASHED_FIELDS, JSON_FIELDS, NewDecision, StoredDecision,
    canonical_json, record_hash, sha256_text,
)

SCHEMA_NAME = "adjudicator-audit"
SCHEMA_VERSION = 1
DEFAULT_FILE = "adjudicator-audit.sqlite"
_COLUMNS = ", ".join(FIELDS)
_INSERT = f"INSERT INTO decisions ({_COLUMNS}) VALUES ({', '.join('?' * len(FIELDS))})"
_SELECT = f"SELECT {_COLUMNS} FROM decisions"

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS decisions (
    seq INTEGER PRIMARY KEY,
    decision_id TEXT NOT NULL UNIQUE,
    run_id TEXT,
    subject_id TEXT NOT NULL,
    use_case TEXT NOT NULL,
    item TEXT,
    input TEXT NOT NULL,
    input_sha256 TEXT NOT NULL,
    packs TEXT NOT NULL,
    parameters TEXT NOT NULL,
    engine_version TEXT NOT NULL,
    trace TEXT NOT NULL,
    outcome TEXT NOT NULL,
    actor TEXT NOT NULL,
    created_at TEXT NOT NULL,
    reason TEXT,
    supersedes TEXT,
    reviewer TEXT,
    prev_hash TEXT NOT NULL,
    record_hash TEXT NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS decisions_key ON decisions (subject_id, use_case, item)",
    "CREATE INDEX IF NOT EXISTS decisions_run ON decisions (run_id, subject_id) WHERE run_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS decisions_supersedes ON decisions (supersedes) WHERE supersedes IS NOT NULL",
    """CREATE TRIGGER IF NOT EXISTS decisions_no_update BEFORE UPDATE ON decisions
    BEGIN SELECT RAISE(ABORT, 'audit records are append-only: UPDATE refused'); END""",
    """CREATE TRIGGER IF NOT EXISTS decisions_no_delete BEFORE DELETE ON decisions
    BEGIN SELECT RAISE(ABORT, 'audit records are append-only: DELETE refused'); END""",
]


class BadRecord(BaseModel):
    """The first record that failed verification, and what is wrong with it."""

    seq: int
    decision_id: str | None
    problem: str


class VerifyReport(BaseModel):
    """Outcome of recomputing the whole chain."""

    ok: bool
    checked: int
    first_bad: BadRecord | None = None

    def message(self) -> str:
        """One line for humans: 'ok, N records verified' or the first bad record."""
        if self.ok:
            return f"ok, {self.checked} records verified"
        bad = self.first_bad
        assert bad is not None
        return f"record seq {bad.seq}, decision {bad.decision_id or '(unknown)'}: {bad.problem}"


_OPTIONAL_TEXT = ("item", "run_id", "reason", "supersedes", "reviewer", "engine_version", "decision_id")
_STR_OR_NONE = (str, type(None))
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (4 << 76) | (0x8000 << 48)


def _uuid4_hex() -> str:
    """uuid.uuid4().hex without building a UUID object (a measurable share of a batch)."""
    return f"{(int.from_bytes(os.urandom(16), 'big') & _UUID4_CLEAR) | _UUID4_SET:032x}"


def _null(value: str | None) -> str:
    return "null" if value is None else _enc(value)


def resolve_path(path: str | Path | None) -> Path:
    """None -> $ADJUDICATOR_DB, else ./adjudicator-audit.sqlite in the working directory."""
    if path is None:
        path = os.environ.get("ADJUDICATOR_DB") or DEFAULT_FILE
    return Path(path)


def _text(value: Any, field: str, subject: Any, *, required: bool) -> str | None:
    if value is None or value == "":
        if required:
            raise InputError("missing", subject=subject, field=field, expected="a non-empty string")
        return None
    return value if type(value) is str else str(value)


class BatchWriter:
    """Adds records inside one open transaction; rows are flushed in chunks to bound memory."""

    def __init__(self, conn: sqlite3.Connection, seq: int, head: str, *, keep: bool = False,
                 flush_every: int = 1000) -> None:
        self._conn, self.seq, self.head = conn, seq, head
        self._rows: list[tuple] = []
        self._flush_every = flush_every
        self._clock_s, self._clock_prefix = -1, ""
        self.kept: list[dict[str, Any]] | None = [] if keep else None

    def add(self, entry: "NewDecision | dict[str, Any] | Prepared") -> str:
        """Queue one decision (a model, a plain dict with NewDecision's keys, or one already
        `prepare`d); returns its id."""
        row = self._chain(entry if type(entry) is Prepared else prepare(entry))
        self._rows.append(row)
        if self.kept is not None:
            self.kept.append(dict(zip(FIELDS, row)))
        if len(self._rows) >= self._flush_every:
            self.flush()
        return row[1]

    def flush(self) -> None:
        """Write queued rows (still inside the transaction)."""
        if self._rows:
            rows, self._rows = self._rows, []
            try:
                self._conn.executemany(_INSERT, rows)
            except sqlite3.IntegrityError as exc:
                raise InputError(f"audit record refused: {exc}", expected="a decision_id not already stored") from exc

    def _now(self) -> str:
        """UTC time with microseconds and 'Z'; the seconds part is formatted once per second."""
        micros = time.time_ns() // 1000
        secs, us = divmod(micros, 1_000_000)
        if secs != self._clock_s:
            self._clock_s, self._clock_prefix = secs, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
        return f"{self._clock_prefix}.{us:06d}Z"

    def _chain(self, p: "Prepared") -> tuple:
        """One row tuple in FIELDS order, hashed onto the chain: the writer's whole share of a
        record (sequence, time, hash). The hashed text is spelled out here, and tests check it
        equals `record.record_hash`."""
        self.seq += 1
        seq = self.seq
        created_at = self._now()
        prev = self.head
        material = (
            f'{prev}{{"actor":{_enc(p.actor)},"created_at":"{created_at}","decision_id":{_enc(p.decision_id)},'
            f'"engine_version":{_enc(p.engine_version)},"input":{p.input},"input_sha256":"{p.input_sha256}",'
            f'"item":{_null(p.item)},"outcome":{p.outcome},"packs":{p.packs},"parameters":{p.parameters},'
            f'"reason":{_null(p.reason)},"reviewer":{_null(p.reviewer)},"run_id":{_null(p.run_id)},"seq":{seq},'
            f'"subject_id":{_enc(p.subject_id)},"supersedes":{_null(p.supersedes)},"trace":{p.trace},'
            f'"use_case":{_enc(p.use_case)}}}'
        )
        self.head = digest = sha256(material.encode()).hexdigest()
        return (seq, p.decision_id, p.run_id, p.subject_id, p.use_case, p.item, p.input, p.input_sha256,
                p.packs, p.parameters, p.engine_version, p.trace, p.outcome, p.actor, created_at, p.reason,
                p.supersedes, p.reviewer, prev, digest)


class Prepared(NamedTuple):
    """A decision checked and encoded (canonical JSON columns, input hash, decision id), ready
    to be chained. Preparing is the costly part of a write and needs no store, so cohort workers
    prepare in parallel and the single writer only chains (sequence, time, hash) and inserts."""
    subject_id: str
    use_case: str
    actor: str
    item: str | None
    run_id: str | None
    reason: str | None
    supersedes: str | None
    reviewer: str | None
    engine_version: str
    decision_id: str
    input: str
    input_sha256: str
    packs: str
    parameters: str
    trace: str
    outcome: str


def prepare(entry: NewDecision | dict[str, Any]) -> Prepared:
    """Check one decision's fields and encode its JSON columns (InputError naming the field)."""
    e = entry.__dict__ if isinstance(entry, NewDecision) else entry
    if not isinstance(e, dict):
        raise InputError(f"an audit entry must be a mapping, got {type(entry).__name__}")
    get = e.get
    subject = get("subject_id")
    subject_id = _text(subject, "subject_id", None, required=True)
    use_case = _text(get("use_case"), "use_case", subject, required=True)
    actor = _text(get("actor"), "actor", subject, required=True)
    item, run_id, reason, supersedes, reviewer, engine_version, decision_id = (
        get("item"), get("run_id"), get("reason"), get("supersedes"), get("reviewer"),
        get("engine_version"), get("decision_id"))
    if not (type(item) in _STR_OR_NONE and type(run_id) in _STR_OR_NONE and type(reason) in _STR_OR_NONE
            and type(supersedes) in _STR_OR_NONE and type(reviewer) in _STR_OR_NONE
            and type(engine_version) in _STR_OR_NONE and type(decision_id) in _STR_OR_NONE):
        item, run_id, reason, supersedes, reviewer, engine_version, decision_id = (
            _text(get(k), k, subject, required=False) for k in _OPTIONAL_TEXT)
    outcome = get("outcome")
    if type(outcome) is not dict:
        raise InputError("missing or not an object", subject=subject, field="outcome", expected="a JSON object")
    try:
        key = "input"
        input_json = canonical_json(get("input") or {})
        key = "packs"
        packs = canonical_json(get("packs") or [])
        key = "parameters"
        parameters = canonical_json(get("parameters") or {})
        key = "trace"
        trace = canonical_json(get("trace") or [])
        key = "outcome"
        outcome_json = canonical_json(outcome)
    except (TypeError, ValueError) as exc:
        raise InputError(f"cannot be written as JSON: {exc}", subject=subject, field=key) from exc
    input_sha = sha256(input_json.encode()).hexdigest()
    given = get("input_sha256")
    if given and given != input_sha:
        raise InputError("does not match the sha256 of the canonical input", subject=subject,
                         field="input_sha256", expected=input_sha)
    return Prepared(subject_id, use_case, actor, item or None, run_id or None, reason or None,
                    supersedes or None, reviewer or None, engine_version or ENGINE_VERSION,
                    decision_id or _uuid4_hex(), input_json, input_sha, packs, parameters, trace,
                    outcome_json)


class AuditStore:
    """One SQLite audit file. Use `AuditStore.open(...)`; close() or use as a context manager."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn, self.path = conn, path

    # --- opening ---------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path | None = None, *, create: bool = True) -> "AuditStore":
        """Open (and with create=True make) an audit store; refuse a file that is not one."""
        p = resolve_path(path)
        if not p.exists():
            if not create:
                raise InputError(f"no audit store at {p}")
        elif p.is_dir():
            raise InputError("is a directory", file=str(p), expected="an audit store file")
        try:
            conn = sqlite3.connect(str(p), timeout=60.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise InputError(f"cannot open: {exc}", file=str(p)) from exc
        try:
            cls._prepare(conn, p)
        except BaseException:
            conn.close()
            raise
        return cls(conn, p)

    @staticmethod
    def _prepare(conn: sqlite3.Connection, p: Path) -> None:
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as exc:
            raise InputError(f"not an audit store ({exc})", file=str(p)) from exc
        if tables and "meta" not in tables:
            raise InputError("not an audit store (no meta table)", file=str(p))
        if tables:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            if meta.get("schema") != SCHEMA_NAME:
                raise InputError("not an audit store (meta.schema is not adjudicator-audit)", file=str(p))
            if int(meta.get("schema_version", "0")) > SCHEMA_VERSION:
                raise InputError(f"audit schema version {meta['schema_version']} is newer than this "
                                 f"adjudicator supports ({SCHEMA_VERSION})", file=str(p))
        if not tables:
            # A record is ~2-3 KB: on 4 KB pages one fits per page; 16 KB pages cut the file by a third.
            conn.execute("PRAGMA page_size=16384")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        if not tables:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.executemany("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", [
                    ("schema", SCHEMA_NAME), ("schema_version", str(SCHEMA_VERSION)),
                    ("head_seq", "0"), ("head_hash", GENESIS_HASH)])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "AuditStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing ---------------------------------------------------------------------------
    def _head(self) -> tuple[int, str]:
        row = self._conn.execute("SELECT seq, record_hash FROM decisions ORDER BY seq DESC LIMIT 1").fetchone()
        return (row[0], row[1]) if row else (0, GENESIS_HASH)

    @contextmanager
    def _transaction(self, keep: bool = False) -> Iterator[BatchWriter]:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")  # serialises writers; the head is read inside
        try:
            seq, head = self._head()
            writer = BatchWriter(conn, seq, head, keep=keep)
            yield writer
            writer.flush()
            conn.executemany("UPDATE meta SET value = ? WHERE key = ?",
                             [(str(writer.seq), "head_seq"), (writer.head, "head_hash")])
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @contextmanager
    def batch(self) -> Iterator[BatchWriter]:
        """`with store.batch() as w: w.add(entry)`: one transaction, all or nothing."""
        with self._transaction() as writer:
            yield writer

    def append(self, entries: Iterable[NewDecision | dict[str, Any]]) -> list[StoredDecision]:
        """Append decisions in one transaction; returns them as stored."""
        with self._transaction(keep=True) as writer:
            for entry in entries:
                writer.add(entry)
        return [StoredDecision.from_row(r) for r in writer.kept or []]

    def override(self, decision_id: str, outcome: dict[str, Any], reviewer: str, reason: str,
                 actor: str, *, committee: dict[str, Any] | None = None,
                 supersede: bool = False) -> StoredDecision:
        """Committee override: a new record superseding `decision_id`; the original stays.

        If the decision's (subject, use case, item) already has an override in force (one no
        later override replaces), it is refused unless `supersede`, and the new record then
        supersedes that override (checked inside the write transaction, so two reviewers cannot
        both replace the same decision). `committee` (role, fields given, ...) is recorded in the
        new record's input under "committee", beside the original input."""
        if not isinstance(outcome, dict):
            raise InputError("the override outcome must be a JSON object", field="outcome", expected="a JSON object")
        for name, value in (("reviewer", reviewer), ("reason", reason), ("actor", actor)):
            if not isinstance(value, str) or not value.strip():
                raise InputError("required for an override", field=name, expected="a non-empty string")
        with self._transaction(keep=True) as writer:
            original = self._get_row(decision_id)
            if original is None:
                raise InputError(f"no decision {decision_id} in the audit store", field="decision_id")
            target = decision_id
            current = self._override_in_force(original["subject_id"], original["use_case"], original["item"])
            if current is not None:
                if not supersede:
                    raise InputError(
                        f"{original['subject_id']} {original['item'] or original['use_case']} already has a committee "
                        f"decision in force: {current['decision_id']} by {current['reviewer']} ({current['created_at']})",
                        field="decision_id", expected="--supersede to replace it")
                target = current["decision_id"]
            inp = json.loads(original["input"])
            if committee is not None:
                inp = dict(inp if isinstance(inp, dict) else {"input": inp}, committee=committee)
            writer.add({
                "subject_id": original["subject_id"], "use_case": original["use_case"],
                "item": original["item"], "input": inp,
                "packs": json.loads(original["packs"]), "parameters": json.loads(original["parameters"]),
                "trace": [], "outcome": outcome, "actor": actor, "reason": reason.strip(),
                "reviewer": reviewer.strip(), "supersedes": target,
            })
        return StoredDecision.from_row(writer.kept[0])  # type: ignore[index]

    def _override_in_force(self, subject_id: str, use_case: str, item: str | None) -> dict[str, Any] | None:
        sql = (f"{_SELECT} WHERE subject_id = ? AND use_case = ? AND item IS ? AND supersedes IS NOT NULL "
               "AND NOT EXISTS (SELECT 1 FROM decisions o WHERE o.supersedes = decisions.decision_id) "
               "ORDER BY seq DESC LIMIT 1")
        return next(self._rows(sql, (subject_id, use_case, item)), None)

    # --- reading ---------------------------------------------------------------------------
    def _rows(self, sql: str, params: tuple = ()) -> Iterator[dict[str, Any]]:
        cur = self._conn.execute(sql, params)
        try:
            for values in cur:
                yield dict(zip(FIELDS, values))
        finally:
            cur.close()

    def _get_row(self, decision_id: str) -> dict[str, Any] | None:
        return next(self._rows(f"{_SELECT} WHERE decision_id = ?", (decision_id,)), None)

    def get(self, decision_id: str) -> StoredDecision | None:
        """The record with that decision id, or None."""
        row = self._get_row(decision_id)
        return StoredDecision.from_row(row) if row else None

    def iter_rows(self, subject_id: str | None = None, use_case: str | None = None,
                  run_id: str | None = None, item: str | None = None,
                  last: int | None = None) -> Iterator[dict[str, Any]]:
        """Stored rows (JSON columns as text) in seq order, streamed; `last`: only the newest N."""
        where, params = [], []
        for col, value in (("subject_id", subject_id), ("use_case", use_case), ("run_id", run_id), ("item", item)):
            if value is not None:
                where.append(f"{col} = ?")
                params.append(value)
        sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "")
        if last is not None:
            sql = f"SELECT * FROM ({sql} ORDER BY seq DESC LIMIT ?) ORDER BY seq"
            params.append(int(last))
        else:
            sql += " ORDER BY seq"
        return self._rows(sql, tuple(params))

    def iter(self, subject_id: str | None = None, use_case: str | None = None,
             run_id: str | None = None, item: str | None = None,
             last: int | None = None) -> Iterator[StoredDecision]:
        """Records matching every given filter, in seq order, streamed (never the whole table)."""
        for row in self.iter_rows(subject_id, use_case, run_id, item, last):
            yield StoredDecision.from_row(row)

    def latest(self, subject_id: str, use_case: str, item: str | None = None,
               before_run: str | None = None) -> StoredDecision | None:
        """Latest record for (subject, use case, item); with before_run, ignoring that run."""
        sql = f"{_SELECT} WHERE subject_id = ? AND use_case = ? AND item IS ?"
        params: tuple = (subject_id, use_case, item)
        if before_run is not None:
            sql += " AND (run_id IS NULL OR run_id != ?)"
            params += (before_run,)
        row = next(self._rows(sql + " ORDER BY seq DESC LIMIT 1", params), None)
        return StoredDecision.from_row(row) if row else None

    def current(self, subject_id: str, use_case: str, item: str | None = None) -> StoredDecision | None:
        """The decision in force for the key: the newest record that no override supersedes."""
        sql = (f"{_SELECT} WHERE subject_id = ? AND use_case = ? AND item IS ? AND NOT EXISTS "
               "(SELECT 1 FROM decisions o WHERE o.supersedes = decisions.decision_id) "
               "ORDER BY seq DESC LIMIT 1")
        row = next(self._rows(sql, (subject_id, use_case, item)), None)
        return StoredDecision.from_row(row) if row else None

    def head(self) -> tuple[int, str]:
        """(seq, record_hash) of the newest record: the chain head a report was built from."""
        return self._head()

    def latest_machine(self, subject_id: str, use_case: str, item: str | None = None) -> StoredDecision | None:
        """The newest record of the key that is not an override (the machine's latest decision)."""
        sql = f"{_SELECT} WHERE subject_id = ? AND use_case = ? AND item IS ? AND supersedes IS NULL ORDER BY seq DESC LIMIT 1"
        row = next(self._rows(sql, (subject_id, use_case, item)), None)
        return StoredDecision.from_row(row) if row else None

    def iter_override_rows(self) -> Iterator[dict[str, Any]]:
        """Every override record (JSON columns as text), in seq order."""
        return self._rows(f"{_SELECT} WHERE supersedes IS NOT NULL ORDER BY seq")

    def ids_with_prefix(self, prefix: str, limit: int = 10) -> list[str]:
        """Decision ids starting with `prefix` (at most `limit`), for abbreviated ids."""
        hi = prefix + "\uffff"
        cur = self._conn.execute("SELECT decision_id FROM decisions WHERE decision_id >= ? AND decision_id < ? "
                                 "ORDER BY decision_id LIMIT ?", (prefix, hi, int(limit)))
        return [r[0] for r in cur]

    def done_subjects(self, run_id: str) -> set[str]:
        """Subjects with at least one committed record in `run_id` (resume after a kill)."""
        cur = self._conn.execute("SELECT DISTINCT subject_id FROM decisions WHERE run_id = ?", (run_id,))
        return {r[0] for r in cur}

    def count(self) -> int:
        """Number of records."""
        return self._conn.execute("SELECT count(*) FROM decisions").fetchone()[0]

    # --- verifying -------------------------------------------------------------------------
    def verify(self) -> VerifyReport:
        """Recompute the chain in seq order; report the first edited, missing or moved record."""
        self._conn.execute("BEGIN")  # one snapshot: rows and head as of the same commit
        try:
            return self._verify_snapshot()
        finally:
            self._conn.execute("COMMIT")

    def _verify_snapshot(self) -> VerifyReport:
        expected_seq, head, checked = 1, GENESIS_HASH, 0

        def bad(seq: int, decision_id: str | None, problem: str) -> VerifyReport:
            return VerifyReport(ok=False, checked=checked,
                                first_bad=BadRecord(seq=seq, decision_id=decision_id, problem=problem))

        for row in self._rows(_SELECT + " ORDER BY seq"):
            checked += 1
            seq, did = row["seq"], row["decision_id"]
            if seq != expected_seq:
                return bad(seq, did, f"seq gap: expected seq {expected_seq}, found {seq} "
                                     "(a record was deleted or renumbered)")
            if row["prev_hash"] != head:
                return bad(seq, did, "prev_hash does not match the previous record's hash "
                                     "(a record was deleted, inserted or reordered)")
            problem = self._row_problem(row)
            if problem:
                return bad(seq, did, problem)
            head, expected_seq = row["record_hash"], expected_seq + 1
        meta = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
        head_seq = int(meta.get("head_seq", "0"))
        if head_seq != expected_seq - 1 or meta.get("head_hash", GENESIS_HASH) != head:
            return bad(expected_seq, None, f"the chain ends at seq {expected_seq - 1} but the store's "
                                           f"head is seq {head_seq}: records were removed from the end "
                                           "or the head was altered")
        return VerifyReport(ok=True, checked=checked)

    @staticmethod
    def _row_problem(row: dict[str, Any]) -> str | None:
        for key in HASHED_FIELDS:
            value = row[key]
            if key in JSON_FIELDS or key in ("decision_id", "subject_id", "use_case", "input_sha256",
                                             "engine_version", "actor", "created_at"):
                if not isinstance(value, str):
                    return f"field {key} is {type(value).__name__}, expected text (the record was edited)"
            elif key == "seq":
                continue
            elif value is not None and not isinstance(value, str):
                return f"field {key} is {type(value).__name__}, expected text or null (the record was edited)"
        if record_hash(row) != row["record_hash"]:
            return "record_hash does not match the record's content (a field was edited)"
        if sha256_text(row["input"]) != row["input_sha256"]:
            return "input_sha256 does not match the stored input (the input was edited)"
        return None

    def verify_or_raise(self) -> VerifyReport:
        """verify(), raising AuditIntegrityError naming the first bad record."""
        report = self.verify()
        if not report.ok:
            raise AuditIntegrityError(report.message())
        return report


__all__ = ["AuditStore", "BatchWriter", "BadRecord", "VerifyReport", "resolve_path"]
