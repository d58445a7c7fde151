"""A PostgreSQL database under the audit store, for a committee that works from several sites:
`--db postgresql://user@host/dbname` (psycopg 3). The record format, chain, checkpoints and
verify are the audit store's and identical to SQLite's; what differs lives here.

- Writers serialise on a row lock of the chain head (`SELECT ... FOR UPDATE` on the meta row),
  so a concurrent writer waits for the one in progress instead of failing with "database is
  locked" as a second SQLite writer does after its timeout.
- Append-only is enforced by triggers refusing UPDATE, DELETE and TRUNCATE (the owner can drop
  them: `verify` and checkpoints remain the real guard, as with SQLite).
- The run lock is a session advisory lock: released when the holding connection ends, so a
  killed run can resume.
- Verify reads one REPEATABLE READ, READ ONLY snapshot; large scans stream through a server-side
  cursor.
The tables live in the connection's current schema (the URL may set `options=-csearch_path=...`).
"""
from __future__ import annotations

import contextlib
import hashlib
import re
import uuid
from collections.abc import Iterator
from typing import Any

from engine.errors import InputError

from .schema import INDEXES, META_TABLE, decisions_table

KIND = "postgresql"

SCHEMA = [
    META_TABLE,
    decisions_table("BIGINT"),
    *INDEXES,
    """CREATE OR REPLACE FUNCTION adjudicator_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'audit records are append-only: % refused', TG_OP; END $$""",
    """CREATE TRIGGER decisions_no_update BEFORE UPDATE OR DELETE ON decisions
    FOR EACH ROW EXECUTE FUNCTION adjudicator_append_only()""",
    """CREATE TRIGGER decisions_no_truncate BEFORE TRUNCATE ON decisions
    FOR EACH STATEMENT EXECUTE FUNCTION adjudicator_append_only()""",
]
_SCHEMA_LOCK = 0x61646A75  # advisory lock key while creating the schema ("adju")
_IS_PARAM = re.compile(r" IS \?")


def is_url(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


def redact(url: str) -> str:
    """The URL without its password, for messages and records."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


def _sql(text: str) -> str:
    """SQLite's spelling -> PostgreSQL's: `IS ?` -> `IS NOT DISTINCT FROM %s`, `?` -> `%s`."""
    return _IS_PARAM.sub(" IS NOT DISTINCT FROM ?", text).replace("?", "%s")


class PostgresDatabase:
    kind = KIND

    def __init__(self, conn: Any, url: str, read_only: bool) -> None:
        import psycopg
        self.conn, self.url, self.read_only = conn, url, read_only
        self.where = redact(url)
        self.Error = psycopg.Error
        self.IntegrityError = psycopg.IntegrityError

    @classmethod
    def open(cls, url: str, *, create: bool, read_only: bool) -> "PostgresDatabase":
        try:
            import psycopg
        except ImportError:  # pragma: no cover - a project dependency
            raise InputError("PostgreSQL stores need the psycopg package", file=redact(url)) from None
        try:
            conn = psycopg.connect(url, autocommit=True, connect_timeout=20)
        except psycopg.Error as exc:
            raise InputError(f"cannot connect: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc}",
                             file=redact(url)) from None
        db = cls(conn, url, read_only)
        if read_only:
            conn.execute("SET default_transaction_read_only = on")
        return db

    # --- statements ----------------------------------------------------------------------------
    def execute(self, sql: str, params: tuple = ()) -> Any:
        return self.conn.execute(_sql(sql), params)

    def executemany(self, sql: str, rows: list[tuple]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(_sql(sql), rows)

    def stream(self, sql: str, params: tuple = ()) -> Iterator[tuple]:
        """Rows through a server-side cursor (WITH HOLD outside a transaction)."""
        inside = self.in_transaction
        cur = self.conn.cursor(name=f"adj_{uuid.uuid4().hex[:12]}", withhold=not inside)
        try:
            cur.itersize = 2000
            cur.execute(_sql(sql), params)
            yield from cur
        finally:
            with contextlib.suppress(Exception):
                cur.close()

    def tables(self) -> set[str]:
        rows = self.conn.execute("SELECT table_name FROM information_schema.tables "
                                 "WHERE table_schema = current_schema()")
        return {r[0] for r in rows}

    def columns(self, table: str) -> list[str]:
        rows = self.conn.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = "
                                 "current_schema() AND table_name = %s ORDER BY ordinal_position", (table,))
        return [r[0] for r in rows]

    # --- transactions --------------------------------------------------------------------------
    def setup(self, fresh: bool) -> None:
        """(Nothing per connection.)"""

    def create_schema(self, meta: list[tuple[str, str]]) -> None:
        self.conn.execute("BEGIN")
        try:
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            if "meta" not in self.tables():
                for statement in SCHEMA:
                    self.conn.execute(statement)
                with self.conn.cursor() as cur:
                    cur.executemany("INSERT INTO meta (key, value) VALUES (%s, %s)", meta)
            self.conn.execute("COMMIT")
        except BaseException:
            self.rollback()
            raise

    def begin_write(self) -> None:
        self.conn.execute("BEGIN")

    def lock_head(self) -> None:
        """Serialise writers: wait for the head row (held until this transaction ends)."""
        self.conn.execute("SELECT value FROM meta WHERE key = 'head_hash' FOR UPDATE")

    def begin_read(self) -> None:
        self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        if self.in_transaction:
            self.conn.execute("ROLLBACK")

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus
        return self.conn.info.transaction_status != TransactionStatus.IDLE

    # --- the run lock, close -------------------------------------------------------------------
    @contextlib.contextmanager
    def run_lock(self, run_id: str) -> Iterator[None]:
        key = int.from_bytes(hashlib.sha256(f"adjudicator-run:{run_id}".encode()).digest()[:8], "big", signed=True)
        got = self.conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]
        if not got:
            raise InputError(f"cohort run {run_id} is being written by another process",
                             file=self.where, field="--resume",
                             expected="wait for that run to end (a killed run's lock is released with it)")
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                self.rollback()
                self.conn.execute("SELECT pg_advisory_unlock(%s)", (key,))

    def close(self) -> None:
        self.conn.close()
