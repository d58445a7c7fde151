"""The embedded SQLite database under the audit store (the default): one file, WAL, FULL sync.

What is SQLite-specific lives here: creating the file 0600, WAL, `BEGIN IMMEDIATE` (writers
serialise on the file lock), read-only opening for verify (`mode=ro`, and `immutable=1` for a
trail on a read-only medium, where not even the WAL index can be created), the run lock (an
flock on a lock file beside the store: it dies with its process, so a killed run can resume),
and the online backup API (a consistent copy that includes what is still in the WAL).
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from engine.errors import InputError

from .schema import INDEXES, META_TABLE, decisions_table

KIND = "sqlite"

SCHEMA = [
    META_TABLE,
    decisions_table("INTEGER"),
    *INDEXES,
    """CREATE TRIGGER IF NOT EXISTS decisions_no_update BEFORE UPDATE ON decisions
    BEGIN SELECT RAISE(ABORT, 'audit records are append-only: UPDATE refused'); END""",
    """CREATE TRIGGER IF NOT EXISTS decisions_no_delete BEFORE DELETE ON decisions
    BEGIN SELECT RAISE(ABORT, 'audit records are append-only: DELETE refused'); END""",
]


class SqliteDatabase:
    """One SQLite audit file (autocommit connection; transactions are explicit)."""

    kind = KIND
    Error = sqlite3.Error
    IntegrityError = sqlite3.IntegrityError

    def __init__(self, conn: sqlite3.Connection, path: Path, read_only: bool) -> None:
        self.conn, self.path, self.read_only = conn, path, read_only
        self.where = str(path)

    @classmethod
    def open(cls, path: Path, *, create: bool, read_only: bool) -> "SqliteDatabase":
        if not path.exists():
            if not create or read_only:
                raise InputError(f"no audit store at {path}")
            if not path.parent.is_dir():
                raise InputError("the folder of the audit store does not exist", file=str(path),
                                 expected="an existing folder")
            with contextlib.suppress(FileExistsError):  # 0600: the trail is nobody else's to read
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        elif path.is_dir():
            raise InputError("is a directory", file=str(path), expected="an audit store file")
        try:
            if read_only:
                conn = cls._connect_read_only(path)
            else:
                conn = sqlite3.connect(str(path), timeout=60.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise InputError(f"cannot open: {exc}", file=str(path)) from exc
        return cls(conn, path, read_only)

    @staticmethod
    def _connect_read_only(path: Path) -> sqlite3.Connection:
        """mode=ro; on a read-only medium (no WAL index can be made) the file is read as
        immutable, which is exact there because nothing can be writing it."""
        uri = f"file:{quote(str(path.resolve()))}"
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=60.0, isolation_level=None)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError as exc:
            if "unable to open" not in str(exc) and "readonly" not in str(exc):
                raise
            conn.close()
        return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, isolation_level=None)

    # --- statements ----------------------------------------------------------------------------
    def execute(self, sql: str, params: tuple = ()) -> Any:
        return self.conn.execute(sql, params)

    def executemany(self, sql: str, rows: list[tuple]) -> None:
        self.conn.executemany(sql, rows)

    def stream(self, sql: str, params: tuple = ()) -> Iterator[tuple]:
        cur = self.conn.execute(sql, params)
        try:
            yield from cur
        finally:
            cur.close()

    def tables(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}

    def columns(self, table: str) -> list[str]:
        return [r[1] for r in self.conn.execute(f"PRAGMA table_info({table})")]

    # --- transactions --------------------------------------------------------------------------
    def setup(self, fresh: bool) -> None:
        if self.read_only:
            return
        if fresh:
            # A record is ~2-3 KB: on 4 KB pages one fits per page; 16 KB pages cut the file by a third.
            self.conn.execute("PRAGMA page_size=16384")
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")

    def create_schema(self, meta: list[tuple[str, str]]) -> None:
        self.begin_write()
        try:
            if "meta" in self.tables():  # another process created it meanwhile
                self.commit()
                return
            for statement in SCHEMA:
                self.conn.execute(statement)
            self.conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", meta)
            self.commit()
        except BaseException:
            self.rollback()
            raise

    def begin_write(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")  # serialises writers; the head is read inside

    def lock_head(self) -> None:
        """(BEGIN IMMEDIATE already holds the write lock.)"""

    def begin_read(self) -> None:
        self.conn.execute("BEGIN")  # deferred: one snapshot from the first read on

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    @property
    def in_transaction(self) -> bool:
        return self.conn.in_transaction

    # --- the run lock, backup, close -----------------------------------------------------------
    @contextlib.contextmanager
    def run_lock(self, run_id: str) -> Iterator[None]:
        """An exclusive, non-blocking flock on `<store>.<run id>.lock`; InputError when another
        process holds it. The file is removed when the lock is released."""
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
        lock_path = self.path.with_name(f".{self.path.name}.{safe}.lock")
        while True:
            try:
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                raise InputError(f"cannot create the run lock: {exc.strerror or exc}", file=str(lock_path)) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise InputError(f"cohort run {run_id} is being written by another process",
                                 file=str(self.path), field="--resume",
                                 expected="wait for that run to end (a killed run's lock is released with it)") from None
            try:  # the holder before us may have removed the file after we opened it: retry
                if os.stat(lock_path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            yield
        finally:
            with contextlib.suppress(OSError):
                os.unlink(lock_path)
            os.close(fd)

    def backup_to(self, target: Path) -> None:
        """A consistent copy (committed data, WAL included) into a new file `target`."""
        dst = sqlite3.connect(str(target))
        try:
            self.conn.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")  # the copy is one self-contained file
        finally:
            dst.close()

    def close(self) -> None:
        self.conn.close()
