"""What one audit record is: its fields, canonical JSON, and how its hash is computed.

The hash of record n is sha256(prev_hash + canonical JSON of every field but prev_hash and
record_hash). The JSON columns (input, packs, parameters, trace, outcome, signature) are stored
as their canonical JSON text and embedded verbatim in the hashed text, so `verify` recomputes a
hash from the stored row without parsing or re-encoding anything (re-encoding could drift).

The chain starts from the store's genesis hash, the sha256 of the canonical JSON of its identity
(schema, schema version, store id, creation time: the `meta` row), so that identity is covered by
the chain too. Schema 1 stores (before signatures and the meta-derived genesis) started from 64
zeros and had no signature field; they stay verifiable.
"""

import hashlib
import json
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from engine.evaluate.values import plain_numbers

GENESIS_HASH = "0" * 64      # the first prev_hash of a schema 1 store

# Every column of the decisions table, in table order.
FIELDS: tuple[str, ...] = (
    "seq", "decision_id", "run_id", "subject_id", "use_case", "item",
    "input", "input_sha256", "packs", "parameters", "engine_version", "trace", "outcome",
    "actor", "created_at", "reason", "supersedes", "reviewer", "signature", "prev_hash", "record_hash",
)
JSON_FIELDS: frozenset[str] = frozenset({"input", "packs", "parameters", "trace", "outcome", "signature"})
# The fields covered by record_hash (besides prev_hash, which is prepended), sorted as
# canonical JSON sorts keys.
HASHED_FIELDS: tuple[str, ...] = tuple(sorted(set(FIELDS) - {"prev_hash", "record_hash"}))
HASHED_FIELDS_V1: tuple[str, ...] = tuple(k for k in HASHED_FIELDS if k != "signature")
# The store identity (meta keys) the genesis hash covers.
IDENTITY_KEYS: tuple[str, ...] = ("created_at", "schema", "schema_version", "store_id")
# Subject ids starting with this are the engine's bookkeeping (run start/complete), not decisions.
BOOKKEEPING_PREFIX = "__"
# All fields in key order: one exported JSON Lines record.
SORTED_FIELDS: tuple[str, ...] = tuple(sorted(FIELDS))

# NaN and Infinity are refused (ValueError): they are not JSON, and a record holding them could
# not be read back by a third party's JSON parser.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str,
                            allow_nan=False)
# The C encoder behind json.dumps, built once: json.dumps rebuilds it on every call, which is a
# tenth of the cost of a batch. No circular-reference markers: a cycle raises RecursionError.
_C_ENCODE = c_make_encoder(None, str, encode_basestring, None, ":", ",", True, False, False) if c_make_encoder else None


def canonical_json(obj: Any) -> str:
    """Canonical JSON text: sorted keys, no spaces, UTF-8 kept, unknown types as str().

    Same text as json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    default=str, allow_nan=False), except that a float is never written with an exponent
    (0.00001, not 1e-05); runs on every record of a batch, hence the prebuilt encoder.
    """
    if _C_ENCODE is None or isinstance(obj, (str, int, float)) or obj is None:
        text = _ENCODER.encode(obj)
    else:
        try:
            text = "".join(_C_ENCODE(obj, 0))
        except RecursionError as exc:
            raise ValueError("circular reference (or nesting too deep)") from exc
    # numbers in the pinned plain form (values.py): json writes 1e-05 / 1e+16, other encoders not
    return plain_numbers(obj, text, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def sha256_of(obj: Any) -> str:
    """Hex sha256 of bytes as given, or of the canonical JSON of anything else."""
    data = obj if isinstance(obj, (bytes, bytearray, memoryview)) else canonical_json(obj).encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def sha256_text(text: str) -> str:
    """Hex sha256 of a text's UTF-8 bytes (for text that already is canonical JSON)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _scalar_json(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return encode_basestring(value)
    return str(int(value))  # seq, the only non-text scalar


def fields_json(values: dict[str, Any], keys: tuple[str, ...]) -> str:
    """Canonical JSON object of `keys`, JSON columns given as their stored canonical text
    (a null JSON column, e.g. an unsigned record's signature, is `null`)."""
    parts = []
    for key in keys:
        value = values.get(key)
        text = value if key in JSON_FIELDS and value is not None else _scalar_json(value)
        parts.append(f'"{key}":{text}')
    return "{" + ",".join(parts) + "}"


def record_hash(values: dict[str, Any], schema_version: int = 2) -> str:
    """The record_hash of a stored row (a mapping of column -> stored value)."""
    keys = HASHED_FIELDS if schema_version >= 2 else HASHED_FIELDS_V1
    material = values["prev_hash"] + fields_json(values, keys)
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def genesis_hash(identity: dict[str, str], schema_version: int = 2) -> str:
    """The prev_hash of record 1: sha256 of the canonical JSON of the store's identity (schema 2),
    or 64 zeros (schema 1)."""
    if schema_version < 2:
        return GENESIS_HASH
    return sha256_text(canonical_json({k: identity.get(k) for k in IDENTITY_KEYS}))


OVERRIDE_SIGNED_FIELDS: tuple[str, ...] = ("item", "outcome", "reason", "reviewer", "signed_at", "store_id",
                                           "subject_id", "supersedes", "use_case")


def override_message(values: dict[str, Any], store_id: str, signed_at: str) -> bytes:
    """What a reviewer's key signs for an override: the store it is written to, the decision it
    supersedes, the subject, use case and item, the outcome (its canonical JSON text, as stored),
    the reason, the reviewer and the signing time; domain-separated from any other signature."""
    v = dict(values, store_id=store_id, signed_at=signed_at)
    parts = []
    for key in OVERRIDE_SIGNED_FIELDS:
        text = v[key] if key == "outcome" else _scalar_json(v.get(key))
        parts.append(f'"{key}":{text}')
    return ("adjudicator-override/1\n{" + ",".join(parts) + "}").encode("utf-8")


def outcome_summary(outcome: Any, width: int = 60) -> str:
    """A short one-line view of an outcome object for tables: `key=value` of its scalars."""
    if isinstance(outcome, dict):
        bits = [f"{k}={v}" for k, v in outcome.items() if not isinstance(v, (dict, list))]
        text = ", ".join(bits) if bits else canonical_json(outcome)
    else:
        text = canonical_json(outcome)
    return text if len(text) <= width else text[: width - 1] + "…"


class NewDecision(BaseModel):
    """What a caller supplies for one decision; the store adds seq, time and the hashes."""

    model_config = ConfigDict(extra="forbid")

    subject_id: str = Field(min_length=1)
    use_case: str = Field(min_length=1)
    actor: str = Field(min_length=1)
    outcome: dict[str, Any]
    item: str | None = None
    run_id: str | None = None
    decision_id: str | None = None
    input: dict[str, Any] = Field(default_factory=dict)
    input_sha256: str | None = None  # computed by the store; if given it must match
    packs: list[dict[str, Any]] = Field(default_factory=list)
    parameters: dict[str, Any] = Field(default_factory=dict)
    engine_version: str | None = None  # default: this engine's version
    trace: list[dict[str, Any]] = Field(default_factory=list)
    reason: str | None = None
    supersedes: str | None = None
    reviewer: str | None = None
    signature: dict[str, Any] | None = None  # set by the store when a reviewer signs an override


class StoredDecision(BaseModel):
    """One record as stored, every field; JSON columns parsed back into objects."""

    seq: int
    decision_id: str
    run_id: str | None
    subject_id: str
    use_case: str
    item: str | None
    input: Any
    input_sha256: str
    packs: Any
    parameters: Any
    engine_version: str
    trace: Any
    outcome: Any
    actor: str
    created_at: str
    reason: str | None
    supersedes: str | None
    reviewer: str | None
    signature: Any = None
    prev_hash: str
    record_hash: str

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "StoredDecision":
        """Build from a stored row (JSON columns still as text)."""
        data = {k: (json.loads(row[k]) if k in JSON_FIELDS and row.get(k) is not None else row.get(k))
                for k in FIELDS}
        return cls.model_construct(**data)
