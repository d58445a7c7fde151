"""The trail's own copy of every pack a record cites, so that a decision can be recomputed
(`audit explain`, the committee report's values read) after the rules folder has moved on.

A `packs` table beside the decisions: sha256 -> the pack file's text, written in the same
transaction as the first record that cites that pack (the store's batch writer asks
`note_packs` for every new `packs` value it chains). It needs no chain of its own: the records
that cite a pack carry its sha256 inside the hash chain, and a copy is used only if its text
hashes to that sha256 (`audit verify` checks every copy too). Stores written before this table
simply have no copies (their packs come from the rules folder).
"""
from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

PACKS_TABLE = ("CREATE TABLE IF NOT EXISTS packs (sha256 TEXT PRIMARY KEY, id TEXT NOT NULL, "
               "version TEXT NOT NULL, text TEXT NOT NULL)")
_INSERT = "INSERT INTO packs (sha256, id, version, text) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING"


def stored_shas(db: Any) -> set[str]:
    """The sha256 of every pack the store holds a copy of (none without the table)."""
    if "packs" not in db.tables():
        return set()
    return {r[0] for r in db.execute("SELECT sha256 FROM packs").fetchall()}


def note_packs(db: Any, packs_json: str, have: set[str]) -> None:
    """Inside a write transaction: store a copy of each pack named in a record's `packs` column
    (canonical JSON text) that the store does not hold yet, if this process loaded it from a file
    whose bytes still hash to its sha256 (a pack built in memory has no file: nothing is stored)."""
    from engine.rules.load import pack_file_of
    try:
        idents = json.loads(packs_json)
    except ValueError:
        return
    for ident in idents if isinstance(idents, list) else ():
        sha = ident.get("sha256") if isinstance(ident, dict) else None
        if not isinstance(sha, str) or sha in have:
            continue
        path = pack_file_of(sha)
        if path is None:
            continue
        try:
            raw = path.read_bytes()
        except OSError:
            continue
        if hashlib.sha256(raw).hexdigest() != sha:
            continue
        if not have and "packs" not in db.tables():
            db.execute(PACKS_TABLE)
        db.execute(_INSERT, (sha, str(ident.get("id")), str(ident.get("version")), raw.decode("utf-8")))
        have.add(sha)


def pack_text(store_db: Any, sha256: str) -> str | None:
    """The stored text of the pack with this sha256 (checked), or None."""
    if "packs" not in store_db.tables():
        return None
    row = store_db.execute("SELECT text FROM packs WHERE sha256 = ?", (sha256,)).fetchone()
    if row is None or hashlib.sha256(row[0].encode("utf-8")).hexdigest() != sha256:
        return None
    return row[0]


_LOADED: dict[str, Any] = {}


def pack_from_trail(store: Any, pack_id: str, sha256: str, registry: Any = None) -> Any:
    """The pack `pack_id` with this sha256 from the trail's copy, loaded and checked like a pack
    from a folder; None when the trail holds no (intact) copy."""
    hit = _LOADED.get(sha256)
    if hit is not None:
        return hit
    text = pack_text(store._db, sha256)
    if text is None and hasattr(store, "_partitions"):   # a partitioned run's records: its partitions hold the copies
        text = next((t for part in store._partitions() if (t := pack_text(part._db, sha256)) is not None), None)
    if text is None:
        return None
    from engine.rules.load import load_pack
    with tempfile.TemporaryDirectory(prefix="adjudicator-pack-") as tmp:
        folder = Path(tmp) / pack_id
        folder.mkdir()
        (folder / "pack.yaml").write_bytes(text.encode("utf-8"))
        pack = load_pack(folder)
    if pack.sha256 != sha256:
        return None
    _LOADED[sha256] = pack
    return pack


def check_copies(db: Any) -> str | None:
    """The first pack copy whose text does not hash to its key (edited), or None."""
    if "packs" not in db.tables():
        return None
    for sha, pid, text in db.execute("SELECT sha256, id, text FROM packs").fetchall():
        if hashlib.sha256(str(text).encode("utf-8")).hexdigest() != sha:
            return f"the trail's copy of pack {pid} ({str(sha)[:12]}) does not match its sha256 (it was edited)"
    return None


__all__ = ["PACKS_TABLE", "stored_shas", "note_packs", "pack_text", "pack_from_trail", "check_copies"]
