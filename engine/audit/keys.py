"""Ed25519 keys: who signed a checkpoint or a committee override, checked against a keyring.

Why: a hash chain proves nothing to someone who does not trust whoever can write the file: such a
writer can recompute every hash. A signature by a key that writer does not hold can't be
recomputed. Two uses: checkpoints (the trail's head, signed, kept elsewhere) and overrides (the
reviewer signs the outcome they decide; `--actor` alone is not an identity).

Files (all under the adjudicator home, `$ADJUDICATOR_HOME`, default `~/.config/adjudicator`;
each path configurable):
- `keys/<name>.key`: a private key (PKCS#8 PEM), created 0600 and refused if others can read it;
- `keyring.yaml`: the public keys that count, by name and role (`reviewer` or `checkpoint`).
  The keyring is the trust root: keep it under the committee's control (e.g. version control),
  not beside the audit store.

The `cryptography` package does the signing (Ed25519, RFC 8032): the field's maintained library,
not hand-written crypto.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import InputError

ROLES = ("reviewer", "checkpoint")
CHECKPOINT_KEY_NAME = "checkpoint"


def home() -> Path:
    """$ADJUDICATOR_HOME, else ~/.config/adjudicator."""
    env = os.environ.get("ADJUDICATOR_HOME")
    return Path(env) if env else Path.home() / ".config" / "adjudicator"


def keyring_path(path: str | Path | None = None) -> Path:
    """--keyring, else $ADJUDICATOR_KEYRING, else <home>/keyring.yaml."""
    if path:
        return Path(path)
    env = os.environ.get("ADJUDICATOR_KEYRING")
    return Path(env) if env else home() / "keyring.yaml"


def key_file_name(name: str) -> str:
    """A file name for a key owner's name ('Dr Q' -> 'Dr_Q.key')."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name.strip()).strip("._") or "key"
    return f"{slug}.key"


def default_key_path(name: str) -> Path:
    return home() / "keys" / key_file_name(name)


def checkpoint_key_path(path: str | Path | None = None) -> Path:
    """--key, else $ADJUDICATOR_CHECKPOINT_KEY, else <home>/keys/checkpoint.key."""
    if path:
        return Path(path)
    env = os.environ.get("ADJUDICATOR_CHECKPOINT_KEY")
    return Path(env) if env else default_key_path(CHECKPOINT_KEY_NAME)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def fingerprint(public_b64: str) -> str:
    """'SHA256:' + the first 16 bytes of sha256(raw public key), hex: short, unambiguous."""
    try:
        raw = base64.b64decode(public_b64, validate=True)
    except ValueError:
        raw = public_b64.encode()
    return "SHA256:" + hashlib.sha256(raw).hexdigest()[:32]


@dataclass(frozen=True)
class Signer:
    """A loaded private key: signs bytes; `public_key` is the raw public key, base64."""
    name: str
    public_key: str
    _key: Any

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)

    def sign(self, message: bytes) -> str:
        return b64(self._key.sign(message))


def verify_signature(public_b64: str, message: bytes, signature_b64: str) -> bool:
    """Whether `signature_b64` is a valid Ed25519 signature of `message` by `public_b64`."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_b64, validate=True))
        key.verify(base64.b64decode(signature_b64, validate=True), message)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _create_private(path: Path) -> None:
    """Write a new Ed25519 private key to `path`, created 0600 (never over an existing file)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InputError("a key file already exists here (keys are never overwritten)", file=str(path),
                         expected="a new path") from None
    except OSError as exc:
        raise InputError(f"cannot create key file: {exc.strerror or exc}", file=str(path)) from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)


def load_signer(path: str | Path, name: str) -> Signer:
    """The private key at `path`; refused when missing, unreadable, not Ed25519, or readable by
    others than its owner (as ssh refuses such a key)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    path = Path(path)
    try:
        st = path.stat()
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"no signing key for {name!r}", file=str(path),
                         expected=f"a key: create one with `adjudicator keys new {name!r} --role ...`") from None
    except OSError as exc:
        raise InputError(f"cannot read key: {exc.strerror or exc}", file=str(path)) from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InputError(f"the key file is accessible to others (mode {stat.S_IMODE(st.st_mode):o})",
                         file=str(path), expected="mode 600 (chmod 600 FILE)")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise InputError(f"not a readable private key ({exc})", file=str(path),
                         expected="a PKCS#8 PEM Ed25519 key made by `adjudicator keys new`") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError("not an Ed25519 key", file=str(path), expected="an Ed25519 private key")
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return Signer(name, b64(public), key)


# --- the keyring --------------------------------------------------------------------------------

@dataclass(frozen=True)
class KeyEntry:
    name: str
    role: str
    public_key: str
    added: str = ""

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)


@dataclass
class Keyring:
    path: Path
    entries: list[KeyEntry]

    def find(self, public_key: str, role: str, name: str | None = None) -> KeyEntry | None:
        """The entry registering `public_key` for `role` (and `name`, when given), or None."""
        for e in self.entries:
            if e.public_key == public_key and e.role == role and (name is None or e.name == name):
                return e
        return None


def load_keyring(path: str | Path | None = None) -> Keyring:
    """The keyring file (an empty keyring when the file does not exist)."""
    from engine.yamlio import error_location, safe_load_with_node
    import yaml
    p = keyring_path(path)
    if not p.exists():
        return Keyring(p, [])
    try:
        data, _ = safe_load_with_node(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        line, _, problem, _ = error_location(exc)
        raise InputError(f"malformed keyring: {problem}", file=f"{p}:{line}" if line else str(p)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read keyring: {exc}", file=str(p)) from None
    entries = []
    items = (data or {}).get("keys") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise InputError("a keyring is a mapping with a list `keys`", file=str(p),
                         expected="keys: [{name, role, public_key}]")
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not all(isinstance(item.get(k), str) for k in ("name", "role", "public_key")):
            raise InputError("each key needs name, role and public_key (text)", file=str(p), field=f"keys[{i}]")
        if item["role"] not in ROLES:
            raise InputError(f"unknown role {item['role']!r}", file=str(p), field=f"keys[{i}].role",
                             expected=" or ".join(ROLES))
        entries.append(KeyEntry(item["name"], item["role"], item["public_key"], str(item.get("added", ""))))
    return Keyring(p, entries)


def register(public_key: str, name: str, role: str, keyring: str | Path | None = None) -> Path:
    """Add a public key to the keyring file (created if absent); returns its path."""
    from engine.audit.record import canonical_json
    if role not in ROLES:
        raise InputError(f"unknown role {role!r}", field="--role", expected=" or ".join(ROLES))
    ring = load_keyring(keyring)
    if ring.find(public_key, role, name) is None:
        ring.entries.append(KeyEntry(name, role, public_key,
                                     dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")))
    lines = ["# Public keys that count for `adjudicator audit verify` (name, role, Ed25519 key).",
             "# Keep this file under the committee's control, not beside the audit store.", "keys:"]
    for e in ring.entries:
        lines.append(f"  - {{name: {canonical_json(e.name)}, role: {e.role}, public_key: {e.public_key}, "
                     f"added: {canonical_json(e.added)}}}")
    ring.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = ring.path.with_name(ring.path.name + ".part")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, ring.path)
    return ring.path


def new_key(name: str, role: str, key_path: str | Path | None = None,
            keyring: str | Path | None = None) -> tuple[Path, Signer, Path]:
    """Create a key for `name` (0600) and register its public key: (key path, signer, keyring)."""
    if not name.strip():
        raise InputError("a key needs a name", field="NAME", expected="the reviewer's name, e.g. 'Dr Q'")
    path = Path(key_path) if key_path else (checkpoint_key_path() if role == "checkpoint"
                                           else default_key_path(name))
    _create_private(path)
    signer = load_signer(path, name)
    return path, signer, register(signer.public_key, name, role, keyring)


def reviewer_signer(reviewer: str, key_path: str | Path | None = None) -> Signer:
    """The reviewer's signing key: `key_path`, else <home>/keys/<reviewer>.key."""
    return load_signer(Path(key_path) if key_path else default_key_path(reviewer), reviewer)


def checkpoint_signer(key_path: str | Path | None = None, keyring: str | Path | None = None) -> Signer:
    """The checkpoint key; created (0600) and registered in the keyring on first use, like a
    host key: a cohort run ends by writing a checkpoint with no setup."""
    path = checkpoint_key_path(key_path)
    if not path.exists():
        new_key(CHECKPOINT_KEY_NAME, "checkpoint", path, keyring)
    return load_signer(path, CHECKPOINT_KEY_NAME)
