"""Signed checkpoints: the trail's head (store id, seq, record hash, time), signed with an
Ed25519 key, written to a file meant to be kept elsewhere.

Why: whoever can write the store can rewrite the chain and recompute every hash; they cannot
produce the signature of a key they do not hold, nor change a file kept elsewhere. A trail that
still holds, at the checkpoint's seq, the record whose hash the checkpoint signed, extends the
checkpoint: nothing up to that seq was edited, deleted, reordered, re-chained or inserted
(any of these changes that record's hash), and the trail was not cut below it. Records appended
after the latest checkpoint are only as trustworthy as the store until the next checkpoint.

A checkpoint file is JSON:
  {"format": "adjudicator-checkpoint/1", "store_id", "schema_version", "seq", "record_hash",
   "head_created_at", "checkpoint_at", "store", "signer": {"name", "public_key"}, "signature"}
where `signature` signs "adjudicator-checkpoint/1\\n" + the canonical JSON of every other field.
`verify` also checks that the keyring registers the signing key with the role `checkpoint`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import InputError

from . import keys
from .record import canonical_json

if TYPE_CHECKING:
    from .store import AuditStore, CheckpointResult

FORMAT = "adjudicator-checkpoint/1"
_FIELDS = ("checkpoint_at", "format", "head_created_at", "record_hash", "schema_version", "seq", "signer",
           "store", "store_id")


@dataclass
class Checkpoint:
    file: str
    doc: dict[str, Any]

    @property
    def seq(self) -> int:
        return int(self.doc["seq"])


def _message(doc: dict[str, Any]) -> bytes:
    return (FORMAT + "\n" + canonical_json({k: doc[k] for k in _FIELDS})).encode("utf-8")


def make(store: "AuditStore", signer: keys.Signer) -> dict[str, Any]:
    """The signed checkpoint document of the store's current head."""
    from .store import utc_now
    seq, head, created = store.head_record()
    doc = {"format": FORMAT, "store_id": store.store_id, "schema_version": store.schema_version,
           "seq": seq, "record_hash": head, "head_created_at": created or None,
           "checkpoint_at": utc_now(), "store": store.where,
           "signer": {"name": signer.name, "public_key": signer.public_key}}
    doc["signature"] = signer.sign(_message(doc))
    return doc


def default_dir() -> Path:
    """$ADJUDICATOR_CHECKPOINT_DIR, else <adjudicator home>/checkpoints: not beside the store."""
    env = os.environ.get("ADJUDICATOR_CHECKPOINT_DIR")
    return Path(env) if env else keys.home() / "checkpoints"


def write(doc: dict[str, Any], path: str | Path | None = None) -> Path:
    """Write a checkpoint atomically (default: <checkpoint dir>/<store id>/<seq>-<time>.json)."""
    if path is None:
        stamp = str(doc["checkpoint_at"]).replace(":", "").replace("-", "").split(".")[0]
        path = default_dir() / str(doc["store_id"]) / f"{int(doc['seq']):012d}-{stamp}.json"
    path = Path(path)
    if path.is_dir():
        raise InputError("is a folder", file=str(path), expected="a checkpoint file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise InputError(f"cannot write the checkpoint: {exc.strerror or exc}", file=str(path)) from None
    return path


def create(store: "AuditStore", *, key: str | Path | None = None, output: str | Path | None = None,
           keyring: str | Path | None = None) -> tuple[Path, dict[str, Any]]:
    """Sign the store's head with the checkpoint key (created and registered on first use) and
    write the checkpoint file; returns (path, document)."""
    signer = keys.checkpoint_signer(key, keyring)
    doc = make(store, signer)
    return write(doc, output), doc


def load(path: str | Path) -> Checkpoint:
    """Read a checkpoint file (InputError on a malformed one)."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("checkpoint file not found", file=str(p)) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"not a readable checkpoint ({exc})", file=str(p)) from None
    missing = [k for k in _FIELDS + ("signature",) if not isinstance(doc, dict) or k not in doc]
    if missing:
        raise InputError(f"not a checkpoint: lacks {', '.join(missing)}", file=str(p),
                         expected=f"a {FORMAT} file written by `adjudicator audit checkpoint`")
    if doc["format"] != FORMAT or not isinstance(doc["seq"], int) or isinstance(doc["seq"], bool) \
            or doc["seq"] < 0 or not isinstance(doc.get("signer"), dict):
        raise InputError("not a checkpoint this adjudicator reads", file=str(p), expected=FORMAT)
    return Checkpoint(str(p), doc)


def check(c: Checkpoint, store: "AuditStore", last_seq: int, hashes: dict[int, str],
          ring: keys.Keyring) -> "CheckpointResult":
    """Whether the trail (verified up to `last_seq`, record hashes at the wanted seqs in
    `hashes`) extends checkpoint `c`, which must carry a valid signature by a registered
    checkpoint key."""
    from .store import CheckpointResult
    doc = c.doc
    signer = doc["signer"]
    public = signer.get("public_key") if isinstance(signer, dict) else None

    def result(problem: str | None) -> CheckpointResult:
        who = f"{signer.get('name')} ({keys.fingerprint(public)})" if isinstance(public, str) else None
        return CheckpointResult(file=c.file, seq=c.seq, ok=problem is None, signer=who, problem=problem)

    if not isinstance(public, str) or not isinstance(doc["signature"], str) \
            or not keys.verify_signature(public, _message(doc), doc["signature"]):
        return result("the signature does not match the checkpoint (it was edited or forged)")
    if ring.find(public, "checkpoint") is None:
        return result(f"signed by key {keys.fingerprint(public)}, which the keyring {ring.path} does not "
                      "register as a checkpoint key")
    if doc["store_id"] != store.store_id:
        return result(f"made for store {doc['store_id']}, this is store {store.store_id}")
    if c.seq > last_seq:
        return result(f"the checkpoint is at seq {c.seq} but the trail ends at seq {last_seq}: records were "
                      "removed (the trail was truncated)")
    if hashes.get(c.seq) != doc["record_hash"]:
        return result(f"the record at seq {c.seq} is not the one the checkpoint signed: the trail up to it "
                      "was rewritten (edited, deleted, inserted or re-chained records)")
    return result(None)
