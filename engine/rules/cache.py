"""An on-disk cache of the validated rule registry, so that a command does not parse and validate
every pack on every run (issue 15: loading the registry was a third of a cold `screen`).

An entry holds every pack of the Registry exactly as `load_registry` built it (the pack models,
their line maps and evaluation plans; never the embedded tests, which are read on demand), each
pickled on its own, so that a command unpickles only the packs it uses (`LazyPacks`: `screen`
reads its trial's few packs of the ~20). Beside each pack, what a command needs of every pack
without using it: its sha256 and file (the audit store's copy of a cited pack) and its rule and
row titles (the text output names rules of any pack). An entry is keyed by the sha256 of:
- the content of every pack file of the rules folder (its `pack.yaml` bytes; the same bytes whose
  sha256 each decision records), the folder's path and the pack folders' names;
- the engine that loaded them: the size and mtime of every engine source file, and the Python and
  pydantic versions (a changed model or check invalidates every entry).
A changed pack is therefore a miss for the whole registry (every pack loaded, checked and saved
again: the checks across packs, such as the facts a pack reads from its dependencies, are made
again too); a hit is the registry that the same files and the same engine produced. Any
unreadable, foreign or corrupt entry is a miss.

Where: $ADJUDICATOR_CACHE, else $XDG_CACHE_HOME/trial-adjudicator, else ~/.cache/trial-adjudicator;
`ADJUDICATOR_CACHE=off` disables it. The folder is created private (0700) and an entry is used
only if this user owns it and nobody else can write it or its folder: a pickle is code to whoever
can write it, so the cache trusts no one but the user who runs the engine (who can edit the engine
itself anyway). The packs' pickles are read with the entry, under that check, and unpickled later
from memory.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import stat
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.rules.load import Registry

FORMAT = 2            # bump when the cached shape changes in a way the fingerprint cannot see
ENV = "ADJUDICATOR_CACHE"
_ENGINE = Path(__file__).resolve().parents[1]   # engine/


def cache_dir() -> Path | None:
    """The cache folder, or None when disabled."""
    env = os.environ.get(ENV)
    if env is not None:
        return None if env.strip().lower() in ("", "off", "0", "no", "false") else Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "trial-adjudicator"


_ENGINE_PRINT: str | None = None


def engine_fingerprint() -> str:
    """What the loaded form depends on besides the packs: every engine source file (size and
    mtime), Python and pydantic. Computed once per process (stat only, ~60 files)."""
    global _ENGINE_PRINT
    if _ENGINE_PRINT is None:
        import pydantic
        h = hashlib.sha256(f"{FORMAT}|{sys.version}|{pydantic.VERSION}".encode())
        for dirpath, dirnames, filenames in os.walk(_ENGINE):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for name in sorted(filenames):
                if name.endswith(".py"):
                    st = os.stat(os.path.join(dirpath, name))
                    h.update(f"{os.path.relpath(os.path.join(dirpath, name), _ENGINE)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        _ENGINE_PRINT = h.hexdigest()
    return _ENGINE_PRINT


def registry_key(root: Path, folders: list[Path], pack_file: str) -> str:
    """The cache key of a rules folder: its pack files' content and the engine's fingerprint."""
    h = hashlib.sha256(f"{engine_fingerprint()}|{root}|{root.resolve()}\n".encode())
    for folder in folders:
        f = folder / pack_file
        h.update(folder.name.encode() + b"\0")
        h.update(hashlib.sha256(f.read_bytes()).digest() if f.is_file() else b"-")
    return h.hexdigest()


def _private(path: Path, uid: int) -> bool:
    st = path.stat()
    return st.st_uid == uid and not (st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def load(key: str) -> "Registry | None":
    """The cached registry for this key, or None (absent, disabled, not private, unreadable)."""
    folder = cache_dir()
    if folder is None:
        return None
    entry = folder / f"registry-{key}.pickle"
    try:
        uid = os.getuid()
        if not (_private(folder, uid) and _private(entry, uid)):
            return None
        with entry.open("rb") as fh:
            obj = pickle.load(fh)
        if not (isinstance(obj, dict) and obj.get("format") == FORMAT and obj.get("key") == key):
            return None
        from engine.rules.load import LazyPacks, Registry
        return Registry(packs=LazyPacks(obj["packs"], obj["sources_checked"]), root=obj["root"])
    except Exception:  # absent, unreadable or written by another engine: a miss, never an error
        return None


def save(key: str, registry: "Registry") -> None:
    """Write the entry atomically (a reader sees the old entry or the new one, never half of
    one); older entries of the folder are removed. Failing to cache is never an error."""
    folder = cache_dir()
    if folder is None:
        return
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not _private(folder, os.getuid()):
            return
        data = pickle.dumps(entry_of(key, registry), protocol=pickle.HIGHEST_PROTOCOL)
        fd, tmp = tempfile.mkstemp(prefix=".registry-", dir=folder)   # created 0600
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, folder / f"registry-{key}.pickle")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _prune(folder, keep=f"registry-{key}.pickle")
    except Exception:
        return


def entry_of(key: str, registry: "Registry") -> dict[str, Any]:
    """What an entry holds: each pack pickled on its own, with what is needed of it unloaded."""
    from engine.rules.explain import rule_titles
    packs = {pid: {"sha256": p.sha256, "path": p.path, "titles": rule_titles(p),
                   "decision_ids": p.decision_ids,
                   "pickle": pickle.dumps(p, protocol=pickle.HIGHEST_PROTOCOL)}
             for pid, p in registry.packs.items()}
    return {"format": FORMAT, "key": key, "root": registry.root, "packs": packs,
            "sources_checked": _sources_checked(registry)}


def _sources_checked(registry: "Registry") -> list[str]:
    """The sha256 of every trial protocol of the rules folder whose packs' facts all have a
    provider (engine.rules.protocol.check_fact_sources) with these packs: a command need not load
    the trial's other packs to check it again. A protocol that fails is not listed (checked, and
    refused, when a command uses it); a protocol is not in the key, so an edited one is checked."""
    from engine.rules.protocol import known_trials, load_protocol
    passed = []
    for trial in known_trials(registry.root):
        try:
            passed.append(load_protocol(registry.root, trial, set(registry.packs), packs=registry.packs)._sha256)
        except Exception:  # refused (InputError, PackError) or unreadable: checked when used
            continue
    return passed


def _prune(folder: Path, keep: str, max_entries: int = 8) -> None:
    """Keep the newest few entries (several rules folders or engine versions may be in use)."""
    entries = sorted(folder.glob("registry-*.pickle"), key=lambda p: p.stat().st_mtime, reverse=True)
    for p in entries[max_entries:]:
        if p.name != keep:
            p.unlink(missing_ok=True)
