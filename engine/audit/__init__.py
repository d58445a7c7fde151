"""Where an audit record is written: the append-only, hash-chained decision store.

`record` holds the record's fields and hashing, `store` the store (over `sqlite_db` or
`postgres_db`), `keys` the Ed25519 keys and keyring, `checkpoint` signed checkpoints, `export`
JSONL / CSV.
"""
from .export import export, export_to_path
from .record import (
    GENESIS_HASH, NewDecision, StoredDecision, canonical_json, outcome_summary, sha256_of, sha256_text,
)
from .store import AuditStore, BadRecord, BatchWriter, VerifyReport, resolve_path

__all__ = [
    "AuditStore", "BadRecord", "BatchWriter", "GENESIS_HASH", "NewDecision", "StoredDecision",
    "VerifyReport", "canonical_json", "export", "export_to_path", "outcome_summary", "resolve_path",
    "sha256_of", "sha256_text",
]
