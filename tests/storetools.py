"""Audit stores for the tests: the same suite over SQLite and over a real PostgreSQL server.

The server: $ADJUDICATOR_TEST_PG_URL when set (CI's .ci/run starts one with
scripts/pg-test-server.sh), else this session starts its own with the same script. When no
server binaries exist, PostgreSQL cases are skipped with a loud reason, unless
$ADJUDICATOR_REQUIRE_PG is set (CI), where that is a failure.
Each PostgreSQL case gets a fresh schema (search_path in the URL), dropped afterwards.
"""
from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "pg-test-server.sh"


class PgServer:
    def __init__(self) -> None:
        self.url: str | None = os.environ.get("ADJUDICATOR_TEST_PG_URL") or None
        self.error: str | None = None
        self._dir: str | None = None

    def start(self) -> None:
        if self.url:
            return
        self._dir = tempfile.mkdtemp(prefix="adjudicator-pg-")
        try:
            out = subprocess.run(["bash", str(SCRIPT), "start", self._dir], capture_output=True, text=True,
                                 timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.error = f"cannot run {SCRIPT.name}: {exc}"
            return
        if out.returncode != 0:
            self.error = (out.stderr.strip() or out.stdout.strip() or f"exit {out.returncode}").splitlines()[-1]
            return
        self.url = out.stdout.strip().splitlines()[-1]

    def stop(self) -> None:
        if self._dir:
            subprocess.run(["bash", str(SCRIPT), "stop", self._dir], capture_output=True, timeout=120)


def new_schema(url: str) -> tuple[str, str]:
    """(store URL using a fresh schema, schema name)."""
    import psycopg
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{name}", name


def drop_schema(url: str, name: str) -> None:
    import psycopg
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def is_pg(target: Any) -> bool:
    return str(target).startswith("postgresql://")


def tamper(target: Any, sql: str, params: tuple = ()) -> None:
    """Run SQL on the store as an attacker who can write it: append-only triggers off."""
    if is_pg(target):
        import psycopg
        with psycopg.connect(str(target), autocommit=True) as conn:
            conn.execute("ALTER TABLE decisions DISABLE TRIGGER USER")
            conn.execute(re.sub(r"\?", "%s", sql), params)
            conn.execute("ALTER TABLE decisions ENABLE TRIGGER USER")
        return
    conn = sqlite3.connect(str(target), isolation_level=None)
    try:
        conn.execute("DROP TRIGGER IF EXISTS decisions_no_update")
        conn.execute("DROP TRIGGER IF EXISTS decisions_no_delete")
        conn.execute(sql, params)
    finally:
        conn.close()


def query(target: Any, sql: str, params: tuple = ()) -> list[tuple]:
    """Read the store directly (the attacker's view)."""
    if is_pg(target):
        import psycopg
        with psycopg.connect(str(target), autocommit=True) as conn:
            return list(conn.execute(re.sub(r"\?", "%s", sql), params).fetchall())
    conn = sqlite3.connect(str(target))
    try:
        return list(conn.execute(sql, params).fetchall())
    finally:
        conn.close()


def rechain(target: Any) -> None:
    """The attack a hash chain alone cannot catch: after editing, recompute every record_hash and
    prev_hash from the store's genesis, and the head in meta, as anyone who can write can."""
    from engine.audit import AuditStore
    from engine.audit.record import record_hash
    with AuditStore.open(target, create=False) as store:
        rows = list(store.iter_rows())
        head = store.genesis
    for i, row in enumerate(rows, 1):  # renumber 1..n (a gap would give the deletion away)
        if row["seq"] != i:
            tamper(target, "UPDATE decisions SET seq = ? WHERE seq = ?", (-i, row["seq"]))
            row["seq"] = -i
    tamper(target, "UPDATE decisions SET seq = -seq WHERE seq < 0")
    updates = []
    for row in rows:
        row["seq"] = abs(row["seq"])
        row["prev_hash"] = head
        row["record_hash"] = head = record_hash(row)
        updates.append((row["prev_hash"], row["record_hash"], row["seq"]))
    for prev, rec, seq in updates:
        tamper(target, "UPDATE decisions SET prev_hash = ?, record_hash = ? WHERE seq = ?", (prev, rec, seq))
    tamper(target, "UPDATE meta SET value = ? WHERE key = 'head_hash'", (head,))
    tamper(target, "UPDATE meta SET value = ? WHERE key = 'head_seq'", (str(len(rows)),))
