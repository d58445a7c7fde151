"""The audit store: an append-only, hash-chained table of decisions, in SQLite (the embedded
default) or PostgreSQL (`--db postgresql://...`), with the same records, chain and verify.

Why this shape: 21 CFR Part 11 wants records that are computer-generated, time-stamped and never
obscured. Every write is an INSERT inside a transaction that serialises writers (each reads the
true chain head inside its own transaction); the store never UPDATEs or DELETEs a decision,
triggers refuse it too, and `verify()` recomputes the chain, which is the real guard. The chain
starts from the store's identity (meta), timestamps never go backwards, overrides carry the
reviewer's Ed25519 signature, and signed checkpoints kept elsewhere (engine.audit.checkpoint)
catch what a chain alone cannot: a rewrite by whoever can write the store.
What differs between the databases is in sqlite_db.py and postgres_db.py.
"""

import datetime as dt
import json
import os
import re
import time
import uuid
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
    BOOKKEEPING_PREFIX, FIELDS, GENESIS_HASH, HASHED_FIELDS, IDENTITY_KEYS, JSON_FIELDS, NewDecision,
    StoredDecision, canonical_json, genesis_hash, override_message, record_hash, sha256_text,
)

SCHEMA_NAME = "adjudicator-audit"
SCHEMA_VERSION = 2
DEFAULT_FILE = "adjudicator-audit.sqlite"
_COLUMNS = ", ".join(FIELDS)
_INSERT = f"INSERT INTO decisions ({_COLUMNS}) VALUES ({', '.join('?' * len(FIELDS))})"
_SELECT = f"SELECT {_COLUMNS} FROM decisions"
# schema 1 had no signature column
_SELECT_V1 = _SELECT.replace(", signature,", ", NULL AS signature,")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
# C0 controls but tab and newline, DEL, C1, bidi overrides: refused in the record's text fields
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


class BadRecord(BaseModel):
    """The first record that failed verification, and what is wrong with it."""

    seq: int
    decision_id: str | None
    problem: str


class CheckpointResult(BaseModel):
    """One checkpoint checked against the trail."""

    file: str
    seq: int
    ok: bool
    signer: str | None = None
    problem: str | None = None


class VerifyReport(BaseModel):
    """Outcome of recomputing the whole chain (and checking checkpoints and signatures)."""

    ok: bool
    checked: int
    first_bad: BadRecord | None = None
    signed_overrides: int = 0
    checkpoints: list[CheckpointResult] = []
    schema_version: int = SCHEMA_VERSION
    store_id: str | None = None

    def message(self) -> str:
        """One line for humans: 'ok, N records verified' or the first bad record."""
        if self.ok:
            text = f"ok, {self.checked} records verified"
            if self.signed_overrides:
                text += f", {self.signed_overrides} signed override(s)"
            if self.checkpoints:
                last = max(c.seq for c in self.checkpoints)
                text += f"; the trail extends {len(self.checkpoints)} checkpoint(s) (latest at seq {last})"
            if self.schema_version < 2:
                text += " (schema 1 store: no signatures, no meta in the chain)"
            return text
        bad = self.first_bad
        assert bad is not None
        if bad.decision_id is None and bad.problem.startswith("checkpoint "):
            return bad.problem
        where = f"record seq {bad.seq}, decision {bad.decision_id or '(unknown)'}" if bad.seq else "store"
        return f"{where}: {bad.problem}"


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


def utc_now() -> str:
    """UTC time with microseconds and 'Z' (the format of every created_at)."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class BatchWriter:
    """Adds records inside one open transaction; rows are flushed in chunks to bound memory."""

    def __init__(self, db: Any, seq: int, head: str, *, keep: bool = False, flush_every: int = 1000,
                 last_time: str = "") -> None:
        self._db, self.seq, self.head = db, seq, head
        self._rows: list[tuple] = []
        self._flush_every = flush_every
        self._clock_s, self._clock_prefix = -1, ""
        self._last_time = last_time
        self.kept: list[dict[str, Any]] | None = [] if keep else None
        self._packs_seen: set[str] = set()          # `packs` texts already noted
        self._pack_shas: set[str] | None = None     # packs the store holds a copy of (engine.audit.packs)

    def add(self, entry: "NewDecision | dict[str, Any] | Prepared") -> str:
        """Queue one decision (a model, a plain dict with NewDecision's keys, or one already
        `prepare`d); returns its id."""
        p = entry if type(entry) is Prepared else prepare(entry)
        if p.packs not in self._packs_seen:   # a pack not seen in this batch: keep a copy in the trail
            self._note_packs(p.packs)
        row = self._chain(p)
        self._rows.append(row)
        if self.kept is not None:
            self.kept.append(dict(zip(FIELDS, row)))
        if len(self._rows) >= self._flush_every:
            self.flush()
        return row[1]

    def _note_packs(self, packs: str) -> None:
        from .packs import note_packs, stored_shas
        self._packs_seen.add(packs)
        if packs == "[]":
            return
        if self._pack_shas is None:
            self._pack_shas = stored_shas(self._db)
        note_packs(self._db, packs, self._pack_shas)

    def flush(self) -> None:
        """Write queued rows (still inside the transaction)."""
        if self._rows:
            rows, self._rows = self._rows, []
            try:
                self._db.executemany(_INSERT, rows)
            except self._db.IntegrityError as exc:
                raise InputError(f"audit record refused: {str(exc).strip().splitlines()[0]}",
                                 expected="a decision_id not already stored") from exc

    def _now(self) -> str:
        """UTC time with microseconds and 'Z', never earlier than the chain's last record (a clock
        stepped back must not make time run backwards in the trail); the seconds part is
        formatted once per second."""
        micros = time.time_ns() // 1000
        secs, us = divmod(micros, 1_000_000)
        if secs != self._clock_s:
            self._clock_s, self._clock_prefix = secs, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
        now = f"{self._clock_prefix}.{us:06d}Z"
        if now < self._last_time:
            now = self._last_time
        self._last_time = now
        return now

    def _chain(self, p: "Prepared") -> tuple:
        """One row tuple in FIELDS order, hashed onto the chain: the writer's whole share of a
        record (sequence, time, hash). The hashed text is spelled out here, and tests check it
        equals `record.record_hash`."""
        self.seq += 1
        seq = self.seq
        created_at = self._now()
        prev = self.head
        sig = "null" if p.signature is None else p.signature
        material = (
            f'{prev}{{"actor":{_enc(p.actor)},"created_at":"{created_at}","decision_id":{_enc(p.decision_id)},'
            f'"engine_version":{_enc(p.engine_version)},"input":{p.input},"input_sha256":"{p.input_sha256}",'
            f'"item":{_null(p.item)},"outcome":{p.outcome},"packs":{p.packs},"parameters":{p.parameters},'
            f'"reason":{_null(p.reason)},"reviewer":{_null(p.reviewer)},"run_id":{_null(p.run_id)},"seq":{seq},'
            f'"signature":{sig},"subject_id":{_enc(p.subject_id)},"supersedes":{_null(p.supersedes)},'
            f'"trace":{p.trace},"use_case":{_enc(p.use_case)}}}'
        )
        self.head = digest = sha256(material.encode()).hexdigest()
        return (seq, p.decision_id, p.run_id, p.subject_id, p.use_case, p.item, p.input, p.input_sha256,
                p.packs, p.parameters, p.engine_version, p.trace, p.outcome, p.actor, created_at, p.reason,
                p.supersedes, p.reviewer, p.signature, prev, digest)


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
    signature: str | None = None


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
    texts = (("subject_id", subject_id), ("use_case", use_case), ("actor", actor), ("item", item),
             ("run_id", run_id), ("reason", reason), ("reviewer", reviewer))
    if _CONTROL.search("".join(t for _, t in texts if t is not None)):  # one search on the hot path
        key = next(k for k, t in texts if t is not None and _CONTROL.search(t))
        raise InputError("holds a control character (it would act on the terminal of whoever prints it)",
                         subject=subject if key != "subject_id" else None, field=key, expected="printable text")
    outcome = get("outcome")
    if type(outcome) is not dict:
        raise InputError("missing or not an object", subject=subject, field="outcome", expected="a JSON object")
    signature = get("signature")
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
        key = "signature"
        signature_json = None if signature is None else canonical_json(signature)
    except (TypeError, ValueError) as exc:
        raise InputError(f"cannot be written as JSON: {exc}", subject=subject, field=key,
                         expected="finite numbers, text, true/false, null, lists and objects") from exc
    input_sha = sha256(input_json.encode()).hexdigest()
    given = get("input_sha256")
    if given and given != input_sha:
        raise InputError("does not match the sha256 of the canonical input", subject=subject,
                         field="input_sha256", expected=input_sha)
    return Prepared(subject_id, use_case, actor, item or None, run_id or None, reason or None,
                    supersedes or None, reviewer or None, engine_version or ENGINE_VERSION,
                    decision_id or _uuid4_hex(), input_json, input_sha, packs, parameters, trace,
                    outcome_json, signature_json)


def _open_db(target: str | Path | None, *, create: bool, read_only: bool) -> Any:
    text = str(target) if target is not None else None
    if text is None:
        text = os.environ.get("ADJUDICATOR_DB") or DEFAULT_FILE
    from . import postgres_db, sqlite_db
    if postgres_db.is_url(text):
        return postgres_db.PostgresDatabase.open(text, create=create, read_only=read_only)
    return sqlite_db.SqliteDatabase.open(Path(text), create=create, read_only=read_only)


class AuditStore:
    """One audit store. Use `AuditStore.open(...)`; close() or use as a context manager."""

    def __init__(self, db: Any, meta: dict[str, str], schema_version: int) -> None:
        self._db, self.meta, self.schema_version = db, meta, schema_version
        self.where: str = db.where
        self.path: Any = getattr(db, "path", None) or db.where
        self.store_id: str | None = meta.get("store_id")
        self.genesis = genesis_hash(meta, schema_version)
        self._select = _SELECT if schema_version >= 2 else _SELECT_V1
        self._parts: Any = None   # the sealed partitions of partitioned runs (engine.audit.partitions)

    @property
    def kind(self) -> str:
        return self._db.kind

    # --- opening ---------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path | None = None, *, create: bool = True, read_only: bool = False) -> "AuditStore":
        """Open (and with create=True make) an audit store: a SQLite file path, or a
        postgresql:// URL. Refuse what is not one. read_only: never write (verify, export)."""
        db = _open_db(path, create=create, read_only=read_only)
        try:
            meta, version = cls._prepare(db, create and not read_only)
        except BaseException:
            db.close()
            raise
        return cls(db, meta, version)

    @staticmethod
    def _prepare(db: Any, create: bool) -> tuple[dict[str, str], int]:
        try:
            tables = db.tables()
        except (db.Error, UnicodeDecodeError) as exc:
            raise InputError(f"not an audit store ({exc})", file=db.where) from None
        if tables and "meta" not in tables:
            raise InputError("not an audit store (no meta table)", file=db.where)
        if not tables:
            if not create:
                raise InputError(f"no audit store at {db.where} (empty database)", file=db.where)
            identity = {"schema": SCHEMA_NAME, "schema_version": str(SCHEMA_VERSION),
                        "store_id": uuid.uuid4().hex, "created_at": utc_now()}
            db.setup(fresh=True)
            db.create_schema(sorted(identity.items()) + [("head_seq", "0"),
                                                         ("head_hash", genesis_hash(identity))])
        else:
            db.setup(fresh=False)
        try:
            meta = {str(k): str(v) for k, v in db.execute("SELECT key, value FROM meta").fetchall()}
        except (db.Error, UnicodeDecodeError) as exc:
            raise AuditIntegrityError(f"the store's meta table cannot be read: {exc}") from None
        if meta.get("schema") != SCHEMA_NAME:
            raise InputError("not an audit store (meta.schema is not adjudicator-audit)", file=db.where)
        try:
            version = int(meta.get("schema_version", "0"))
        except ValueError:
            raise AuditIntegrityError(f"meta.schema_version is {meta.get('schema_version')!r}, not a number: "
                                      "the store's identity was edited or damaged") from None
        if version > SCHEMA_VERSION:
            raise InputError(f"audit schema version {version} is newer than this adjudicator supports "
                             f"({SCHEMA_VERSION})", file=db.where)
        if version >= 2 and any(k not in meta for k in IDENTITY_KEYS):
            raise AuditIntegrityError("the store's identity (meta) lacks "
                                      + ", ".join(k for k in IDENTITY_KEYS if k not in meta))
        return meta, version

    def close(self) -> None:
        if self._parts is not None:
            self._parts.close()
        self._db.close()

    def _partitions(self, run_id: str | None = None, subject_id: str | None = None,
                    exclude_run: str | None = None) -> list["AuditStore"]:
        """The partition stores of completed partitioned runs that may hold matching records
        (none in a trail without partitioned runs: one indexed query, cached by head)."""
        if self._parts is None:
            from .partitions import PartitionReader
            self._parts = PartitionReader(self)
        return list(self._parts.stores(run_id, subject_id, exclude_run))

    def __enter__(self) -> "AuditStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing ---------------------------------------------------------------------------
    def _head(self) -> tuple[int, str, str]:
        row = self._db.execute("SELECT seq, record_hash, created_at FROM decisions ORDER BY seq DESC LIMIT 1").fetchone()
        return (row[0], row[1], row[2]) if row else (0, self.genesis, "")

    @contextmanager
    def _transaction(self, keep: bool = False) -> Iterator[BatchWriter]:
        if self.schema_version < SCHEMA_VERSION:
            raise InputError(f"this store has audit schema {self.schema_version}, which predates signed "
                             "overrides and checkpoints: it stays readable and verifiable (audit verify, show, "
                             "export), but new records go to a new store: move this one aside or pass another "
                             "--db", file=self.where, expected="--db NEW_STORE")
        if self._db.read_only:
            raise InputError("the store was opened read-only", file=self.where)
        db = self._db
        try:
            db.begin_write()
            db.lock_head()
            seq, head, last_time = self._head()
            writer = BatchWriter(db, seq, head, keep=keep, last_time=last_time)
            yield writer
            writer.flush()
            db.executemany("UPDATE meta SET value = ? WHERE key = ?",
                           [(str(writer.seq), "head_seq"), (writer.head, "head_hash")])
            db.commit()
        except db.Error as exc:
            _rollback(db)
            raise InputError(f"the audit store refused the write ({_first_line(exc)}); nothing of it "
                             "was committed", file=self.where) from exc
        except BaseException:
            _rollback(db)
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
                 actor: str, *, committee: dict[str, Any] | None = None, supersede: bool = False,
                 signer: Any = None, key_path: str | Path | None = None) -> StoredDecision:
        """Committee override: a new record superseding `decision_id`; the original stays.

        If the decision's (subject, use case, item) already has an override in force (one no
        later override replaces), it is refused unless `supersede`, and the new record then
        supersedes that override (checked inside the write transaction, so two reviewers cannot
        both replace the same decision). `committee` (role, fields given, ...) is recorded in the
        new record's input under "committee", beside the original input.

        The record is signed with the reviewer's Ed25519 key (`signer`, else the key at
        `key_path`, else the reviewer's key in the adjudicator home): `--actor` alone is not an
        identity. Bookkeeping records cannot be overridden; the outcome must be a JSON object of
        finite values."""
        from . import keys
        if not isinstance(outcome, dict):
            raise InputError("the override outcome must be a JSON object", field="outcome", expected="a JSON object")
        for name, value in (("reviewer", reviewer), ("reason", reason), ("actor", actor)):
            if not isinstance(value, str) or not value.strip():
                raise InputError("required for an override", field=name, expected="a non-empty string")
        signer = signer or keys.reviewer_signer(reviewer.strip(), key_path)
        with self._transaction(keep=True) as writer:
            original = self._get_row(decision_id)
            if original is None:  # a decision of a partitioned run: its override goes to the main trail
                original = next((r for p in self._partitions() if (r := p._get_row(decision_id)) is not None), None)
            if original is None:
                raise InputError(f"no decision {decision_id} in the audit store", field="decision_id")
            if str(original["subject_id"]).startswith(BOOKKEEPING_PREFIX):
                raise InputError(f"decision {decision_id} is a bookkeeping record ({original['use_case']} "
                                 f"{original['item']}), not a decision: it cannot be overridden",
                                 field="decision_id", expected="the id of an adjudication")
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
            p = prepare({
                "subject_id": original["subject_id"], "use_case": original["use_case"],
                "item": original["item"], "input": inp,
                "packs": json.loads(original["packs"]), "parameters": json.loads(original["parameters"]),
                "trace": [], "outcome": outcome, "actor": actor, "reason": reason.strip(),
                "reviewer": reviewer.strip(), "supersedes": target,
            })
            signed_at = utc_now()
            message = override_message(p._asdict(), self.store_id or "", signed_at)
            signature = {"alg": "ed25519", "public_key": signer.public_key, "signed_at": signed_at,
                         "value": signer.sign(message)}
            writer.add(p._replace(signature=canonical_json(signature)))
        return StoredDecision.from_row(writer.kept[0])  # type: ignore[index]

    def _override_in_force(self, subject_id: str, use_case: str, item: str | None) -> dict[str, Any] | None:
        sql = (f"{self._select} WHERE subject_id = ? AND use_case = ? AND item IS ? AND supersedes IS NOT NULL "
               "AND NOT EXISTS (SELECT 1 FROM decisions o WHERE o.supersedes = decisions.decision_id) "
               "ORDER BY seq DESC LIMIT 1")
        row = self._db.execute(sql, (subject_id, use_case, item)).fetchone()
        return dict(zip(FIELDS, row)) if row else None

    @contextmanager
    def run_lock(self, run_id: str) -> Iterator[None]:
        """Exclusive right to write run `run_id` (InputError if another process holds it)."""
        with self._db.run_lock(run_id):
            yield

    # --- reading ---------------------------------------------------------------------------
    def _rows(self, sql: str, params: tuple = ()) -> Iterator[dict[str, Any]]:
        for values in self._db.stream(sql, params):
            yield dict(zip(FIELDS, values))

    def _get_row(self, decision_id: str) -> dict[str, Any] | None:
        row = self._db.execute(f"{self._select} WHERE decision_id = ?", (decision_id,)).fetchone()
        return dict(zip(FIELDS, row)) if row else None

    def get(self, decision_id: str) -> StoredDecision | None:
        """The record with that decision id (in the main trail or a partition), or None."""
        row = self._get_row(decision_id)
        if row is None:
            row = next((r for p in self._partitions() if (r := p._get_row(decision_id)) is not None), None)
        return StoredDecision.from_row(row) if row else None

    def iter_rows(self, subject_id: str | None = None, use_case: str | None = None,
                  run_id: str | None = None, item: str | None = None,
                  last: int | None = None, main_only: bool = False) -> Iterator[dict[str, Any]]:
        """Stored rows (JSON columns as text) in seq order, streamed; `last`: only the newest N.
        A filtered read includes the records of completed partitioned runs (merged in time order)
        unless `main_only`; an unfiltered one is the main trail's table (export, backup): each
        partition file is a store of its own (`--db PARTITION_FILE`)."""
        bookkeeping = subject_id is not None and subject_id.startswith(BOOKKEEPING_PREFIX)
        unfiltered = subject_id is None and use_case is None and run_id is None and item is None
        parts = [] if main_only or bookkeeping or unfiltered else self._partitions(run_id, subject_id)
        if parts:
            from collections import deque

            from .partitions import merge_rows
            merged = merge_rows(self._main_rows(subject_id, use_case, run_id, item, None),
                                [p._main_rows(subject_id, use_case, run_id, item, None) for p in parts])
            return iter(deque(merged, maxlen=last)) if last is not None else merged
        return self._main_rows(subject_id, use_case, run_id, item, last)

    def _main_rows(self, subject_id: str | None, use_case: str | None, run_id: str | None, item: str | None,
                   last: int | None) -> Iterator[dict[str, Any]]:
        where, params = [], []
        for col, value in (("subject_id", subject_id), ("use_case", use_case), ("run_id", run_id), ("item", item)):
            if value is not None:
                where.append(f"{col} = ?")
                params.append(value)
        sql = self._select + (" WHERE " + " AND ".join(where) if where else "")
        if last is not None:
            sql = f"SELECT * FROM ({sql} ORDER BY seq DESC LIMIT ?) AS newest ORDER BY seq"
            params.append(int(last))
        else:
            sql += " ORDER BY seq"
        return self._rows(sql, tuple(params))

    def iter(self, subject_id: str | None = None, use_case: str | None = None,
             run_id: str | None = None, item: str | None = None,
             last: int | None = None, main_only: bool = False) -> Iterator[StoredDecision]:
        """Records matching every given filter, in seq order, streamed (never the whole table)."""
        for row in self.iter_rows(subject_id, use_case, run_id, item, last, main_only):
            yield StoredDecision.from_row(row)

    def latest(self, subject_id: str, use_case: str, item: str | None = None,
               before_run: str | None = None) -> StoredDecision | None:
        """Latest record for (subject, use case, item); with before_run, ignoring that run."""
        sql = f"{self._select} WHERE subject_id = ? AND use_case = ? AND item IS ?"
        params: tuple = (subject_id, use_case, item)
        if before_run is not None:
            sql += " AND (run_id IS NULL OR run_id != ?)"
            params += (before_run,)
        row = self._db.execute(sql + " ORDER BY seq DESC LIMIT 1", params).fetchone()
        found = dict(zip(FIELDS, row)) if row else None
        for part in self._partitions(subject_id=subject_id, exclude_run=before_run):
            found = _newer(found, part._latest_row(subject_id, use_case, item, machine=False))
        return StoredDecision.from_row(found) if found else None

    def _latest_row(self, subject_id: str, use_case: str, item: str | None, machine: bool) -> dict[str, Any] | None:
        sql = f"{self._select} WHERE subject_id = ? AND use_case = ? AND item IS ?"
        if machine:
            sql += " AND supersedes IS NULL"
        row = self._db.execute(sql + " ORDER BY seq DESC LIMIT 1", (subject_id, use_case, item)).fetchone()
        return dict(zip(FIELDS, row)) if row else None

    def current(self, subject_id: str, use_case: str, item: str | None = None) -> StoredDecision | None:
        """The decision in force for the key: the newest record that no override supersedes."""
        sql = (f"{self._select} WHERE subject_id = ? AND use_case = ? AND item IS ? AND NOT EXISTS "
               "(SELECT 1 FROM decisions o WHERE o.supersedes = decisions.decision_id) "
               "ORDER BY seq DESC LIMIT 1")
        row = self._db.execute(sql, (subject_id, use_case, item)).fetchone()
        found = dict(zip(FIELDS, row)) if row else None
        for part in self._partitions(subject_id=subject_id):
            cand = part._latest_row(subject_id, use_case, item, machine=True)
            if cand is not None and self._db.execute("SELECT 1 FROM decisions WHERE supersedes = ? LIMIT 1",
                                                     (cand["decision_id"],)).fetchone() is None:
                found = _newer(found, cand)
        return StoredDecision.from_row(found) if found else None

    def latest_machine(self, subject_id: str, use_case: str, item: str | None = None) -> StoredDecision | None:
        """The newest record of the key that is not an override (the machine's latest decision)."""
        found = self._latest_row(subject_id, use_case, item, machine=True)
        for part in self._partitions(subject_id=subject_id):
            found = _newer(found, part._latest_row(subject_id, use_case, item, machine=True))
        return StoredDecision.from_row(found) if found else None

    def iter_override_rows(self) -> Iterator[dict[str, Any]]:
        """Every override record (JSON columns as text), in seq order."""
        return self._rows(f"{self._select} WHERE supersedes IS NOT NULL ORDER BY seq")

    def ids_with_prefix(self, prefix: str, limit: int = 10) -> list[str]:
        """Decision ids starting with `prefix` (at most `limit`), for abbreviated ids."""
        hi = prefix + "\uffff"
        sql = "SELECT decision_id FROM decisions WHERE decision_id >= ? AND decision_id < ? ORDER BY decision_id LIMIT ?"
        ids = [r[0] for r in self._db.execute(sql, (prefix, hi, int(limit))).fetchall()]
        for part in self._partitions():
            ids += [r[0] for r in part._db.execute(sql, (prefix, hi, int(limit))).fetchall()]
        return sorted(ids)[:limit]

    def done_subjects(self, run_id: str) -> set[str]:
        """Subjects with at least one committed record in `run_id` (resume after a kill)."""
        return {r[0] for r in self._db.stream("SELECT DISTINCT subject_id FROM decisions WHERE run_id = ?", (run_id,))}

    def count(self) -> int:
        """Number of records."""
        return self._db.execute("SELECT count(*) FROM decisions").fetchone()[0]

    def head(self) -> tuple[int, str]:
        """(seq, record_hash) of the newest record: the chain head a report was built from
        ((0, genesis) when empty)."""
        return self._head()[:2]

    def head_record(self) -> tuple[int, str, str]:
        """(seq, record_hash, created_at) of the newest record; (0, genesis, '') when empty."""
        return self._head()

    # --- verifying -------------------------------------------------------------------------
    def verify(self, checkpoints: Iterable[Any] = (), keyring: Any = None) -> VerifyReport:
        """Recompute the chain in seq order from the store's genesis; report the first edited,
        missing, moved or unsigned record, or the first checkpoint the trail does not extend.
        checkpoints: loaded checkpoint documents (engine.audit.checkpoint.load_checkpoint).
        keyring: the public keys that count (default: the adjudicator home's keyring).
        A store that cannot be read (a table missing, text not UTF-8) fails verification too."""
        from . import keys
        checkpoints = list(checkpoints)
        ring = keyring if keyring is not None else keys.load_keyring()
        db = self._db
        try:
            db.begin_read()  # one snapshot: rows and head as of the same commit
            try:
                return self._verify_snapshot(checkpoints, ring)
            finally:
                _rollback(db)
        except (db.Error, UnicodeDecodeError, ValueError, TypeError, KeyError) as exc:
            return VerifyReport(ok=False, checked=0, schema_version=self.schema_version, store_id=self.store_id,
                                first_bad=BadRecord(seq=0, decision_id=None,
                                                    problem=f"the store cannot be read: {_first_line(exc)}"))

    def _verify_snapshot(self, checkpoints: list[Any], ring: Any) -> VerifyReport:
        from . import checkpoint as ckpt
        version = self.schema_version
        expected_seq, head, checked, last_time, signed = 1, self.genesis, 0, "", 0
        wanted = {c.seq for c in checkpoints}
        seen_hash: dict[int, str] = {0: self.genesis} if 0 in wanted else {}
        bookkeeping: set[str] = set()

        def bad(seq: int, decision_id: str | None, problem: str) -> VerifyReport:
            return VerifyReport(ok=False, checked=checked, signed_overrides=signed, schema_version=version,
                                store_id=self.store_id,
                                first_bad=BadRecord(seq=seq, decision_id=decision_id, problem=problem))

        for row in self._rows(self._select + " ORDER BY seq"):
            checked += 1
            seq, did = row["seq"], row["decision_id"]
            if seq != expected_seq:
                return bad(seq, did, f"seq gap: expected seq {expected_seq}, found {seq} "
                                     "(a record was deleted or renumbered)")
            if row["prev_hash"] != head:
                if seq == 1 and version >= 2:
                    return bad(seq, did, "prev_hash of the first record does not match the store's identity "
                                         "(meta: schema, store id, creation time was edited, or records were "
                                         "moved here from another store)")
                return bad(seq, did, "prev_hash does not match the previous record's hash "
                                     "(a record was deleted, inserted or reordered)")
            problem = _row_problem(row, version)
            if problem:
                return bad(seq, did, problem)
            created = row["created_at"]
            if not _TIME.fullmatch(created):
                return bad(seq, did, f"created_at {created!r} is not a UTC time YYYY-MM-DDTHH:MM:SS.ffffffZ")
            if created < last_time:
                return bad(seq, did, f"created_at {created} is earlier than the previous record's "
                                     f"({last_time}): time went backwards")
            if str(row["subject_id"]).startswith(BOOKKEEPING_PREFIX):
                bookkeeping.add(did)
            if version >= 2:
                problem = _signature_problem(row, self.store_id or "", ring, bookkeeping)
                if problem:
                    return bad(seq, did, problem)
                signed += row["signature"] is not None
            head, last_time, expected_seq = row["record_hash"], created, expected_seq + 1
            if seq in wanted:
                seen_hash[seq] = head
        meta = {str(k): str(v) for k, v in self._db.execute("SELECT key, value FROM meta").fetchall()}
        if any(meta.get(k) != self.meta.get(k) for k in IDENTITY_KEYS):
            return bad(0, None, "the store's identity (meta) changed while it was open")
        try:
            head_seq = int(meta.get("head_seq", "0"))
        except ValueError:
            return bad(0, None, f"meta.head_seq is {meta.get('head_seq')!r}, not a number (meta was edited)")
        if head_seq != expected_seq - 1 or meta.get("head_hash", GENESIS_HASH if version < 2 else self.genesis) != head:
            return bad(expected_seq, None, f"the chain ends at seq {expected_seq - 1} but the store's "
                                           f"head is seq {head_seq}: records were removed from the end "
                                           "or the head was altered")
        from .packs import check_copies
        problem = check_copies(self._db)
        if problem:
            return bad(0, None, problem)
        results = [ckpt.check(c, self, expected_seq - 1, seen_hash, ring) for c in checkpoints]
        report = VerifyReport(ok=True, checked=checked, signed_overrides=signed, checkpoints=results,
                              schema_version=version, store_id=self.store_id)
        failed = next((r for r in results if not r.ok), None)
        if failed is not None:
            report.ok = False
            report.first_bad = BadRecord(seq=failed.seq, decision_id=None,
                                         problem=f"checkpoint {failed.file}: {failed.problem}")
        return report

    def verify_or_raise(self, checkpoints: Iterable[Any] = (), keyring: Any = None) -> VerifyReport:
        """verify(), raising AuditIntegrityError naming the first bad record."""
        report = self.verify(checkpoints, keyring)
        if not report.ok:
            raise AuditIntegrityError(report.message())
        return report

    # --- backup ------------------------------------------------------------------------------
    def backup(self, target: str | Path) -> int:
        """A consistent copy of the whole trail (committed records, including what SQLite still
        holds in its WAL) into a new SQLite file `target`, created 0600; returns the number of
        records. A PostgreSQL store is copied the same way, so a backup is always one file that
        `audit verify --db FILE` checks. Never overwrites: the copy is written beside the target
        and renamed into place."""
        target = Path(target)
        if target.exists():
            raise InputError("already exists (a backup never overwrites a file)", file=str(target),
                             expected="a new file name")
        if not target.parent.is_dir():
            raise InputError("the folder does not exist", file=str(target), expected="an existing folder")
        tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            if self._db.kind == "sqlite":
                self._db.backup_to(tmp)
            else:
                self._copy_to_sqlite(tmp)
            with AuditStore.open(tmp, create=False, read_only=True) as copy:
                n = copy.count()
            os.replace(tmp, target)
        except BaseException:
            if tmp.exists():
                tmp.unlink()
            raise
        return n

    def _copy_to_sqlite(self, path: Path) -> None:
        import sqlite3
        from . import sqlite_db
        dst = sqlite3.connect(str(path), isolation_level=None)
        try:
            dst.execute("PRAGMA page_size=16384")
            dst.execute("BEGIN")
            for statement in sqlite_db.SCHEMA:
                dst.execute(statement)
            self._db.begin_read()
            try:
                dst.executemany("INSERT INTO meta (key, value) VALUES (?, ?)",
                                self._db.execute("SELECT key, value FROM meta").fetchall())
                batch: list[tuple] = []
                for values in self._db.stream(self._select + " ORDER BY seq"):
                    batch.append(tuple(values))
                    if len(batch) >= 1000:
                        dst.executemany(_INSERT, batch)
                        batch = []
                dst.executemany(_INSERT, batch)
                if "packs" in self._db.tables():   # the trail's copies of its packs (engine.audit.packs)
                    from .packs import PACKS_TABLE
                    dst.execute(PACKS_TABLE)
                    dst.executemany("INSERT INTO packs (sha256, id, version, text) VALUES (?, ?, ?, ?)",
                                    self._db.execute("SELECT sha256, id, version, text FROM packs").fetchall())
            finally:
                _rollback(self._db)
            dst.execute("COMMIT")
        finally:
            dst.close()


def _newer(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any] | None:
    """The later of two records of different stores (main trail, partitions), by time."""
    if a is None or b is None:
        return a or b
    return b if b["created_at"] > a["created_at"] else a


def _rollback(db: Any) -> None:
    try:
        db.rollback()
    except Exception:  # noqa: BLE001 - the connection may be gone; the original error matters
        pass


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


_TEXT_FIELDS = frozenset(("decision_id", "subject_id", "use_case", "input_sha256", "engine_version", "actor",
                          "created_at"))


def _row_problem(row: dict[str, Any], version: int) -> str | None:
    keys = HASHED_FIELDS if version >= 2 else tuple(k for k in HASHED_FIELDS if k != "signature")
    for key in keys:
        value = row[key]
        if key == "seq":
            continue
        if (key in JSON_FIELDS and key != "signature") or key in _TEXT_FIELDS:
            if not isinstance(value, str):
                return f"field {key} is {type(value).__name__}, expected text (the record was edited)"
        elif value is not None and not isinstance(value, str):
            return f"field {key} is {type(value).__name__}, expected text or null (the record was edited)"
    if record_hash(row, version) != row["record_hash"]:
        return "record_hash does not match the record's content (a field was edited)"
    if sha256_text(row["input"]) != row["input_sha256"]:
        return "input_sha256 does not match the stored input (the input was edited)"
    return None


def _signature_problem(row: dict[str, Any], store_id: str, ring: Any, bookkeeping: set[str]) -> str | None:
    """An override must be signed by a key the keyring registers for its reviewer; any signature
    present must verify; a bookkeeping record is never overridden."""
    from . import keys
    sig_text, supersedes = row["signature"], row["supersedes"]
    if supersedes is not None and supersedes in bookkeeping:
        return "an override of a bookkeeping record (run start/complete), which is not a decision"
    if sig_text is None:
        if supersedes is not None:
            return f"an override without the reviewer's signature (reviewer {row['reviewer']!r})"
        return None
    try:
        sig = json.loads(sig_text)
        public, value, signed_at, alg = sig["public_key"], sig["value"], sig["signed_at"], sig["alg"]
    except (ValueError, TypeError, KeyError):
        return "the signature field is not {alg, public_key, signed_at, value}"
    if alg != "ed25519" or not all(isinstance(x, str) for x in (public, value, signed_at)):
        return "the signature is not an Ed25519 signature"
    message = override_message(row, store_id, signed_at)
    if not keys.verify_signature(public, message, value):
        return "the reviewer's signature does not match the record (the override was edited or forged)"
    reviewer = row["reviewer"] or ""
    if ring.find(public, "reviewer", reviewer) is None:
        return (f"signed by key {keys.fingerprint(public)}, which the keyring {ring.path} does not register "
                f"for reviewer {reviewer!r}")
    return None


__all__ = ["AuditStore", "BatchWriter", "BadRecord", "CheckpointResult", "VerifyReport", "resolve_path", "prepare"]
