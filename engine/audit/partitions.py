"""Partitioned runs in the audit trail: one hash chain per partition, a Merkle root over them in
the main trail.

Why this shape: a cohort run split into N partitions has N writers (processes on one machine,
or Dask workers on many), and one SQLite chain has one writer. So each partition of a run is its
own audit store (a SQLite file with its own identity, genesis and chain) under
`<store>.partitions/<run id>/part-KK-of-NN.sqlite` beside the main trail, and the run's complete
record in the main trail holds, per partition, its chain head, record count and the sha256 of
its sealed file, plus a Merkle root over those leaves. The main chain (and any signed
checkpoint of it) thereby covers every partition: editing, deleting or moving a partition's
record breaks that partition's chain or its head; replacing a file changes its sha256; editing a
head in the run record changes the root (or, if the main trail is rewritten, no longer matches
the partition); every problem names its partition.

Definitions (docs/audit-trust.md walks through checking them by hand):
- partition of a subject: int.from_bytes(sha256(subject_id UTF-8)[:8], "big") mod N.
- leaf k: canonical JSON (sorted keys, no spaces) of {"file_sha256", "head_hash", "partition",
  "partitions", "records", "run_id"}; leaf hash = sha256(0x00 || leaf bytes).
- tree (RFC 6962 section 2.1): the root of one leaf is its leaf hash; of n > 1 leaves,
  sha256(0x01 || root(first k) || root(rest)) with k the largest power of two below n. An odd
  leaf is never duplicated (the second-preimage flaw of duplicating trees); 0x00 / 0x01 keep a
  leaf from passing for an inner node.
"""
from __future__ import annotations

import hashlib
import heapq
import json
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from engine.errors import AuditIntegrityError, InputError

from .record import canonical_json

HASH_RULE = "int.from_bytes(sha256(subject_id UTF-8)[:8], 'big') mod N"
TREE_RULE = "RFC 6962 Merkle tree hash: leaf sha256(0x00 || leaf), node sha256(0x01 || left || right)"
LEAF_KEYS = ("file_sha256", "head_hash", "partition", "partitions", "records", "run_id")
START_ITEM = "partition-start"          # a partition chain's first record (__run__ / cohort_run)
END_ITEM = "partition-complete"         # its last: subjects, failures and its durable-rules check
RUN_SUBJECT, RUN_USE_CASE = "__run__", "cohort_run"   # as engine.adjudicate.cohort (no import cycle)


def partition_of(subject_id: str, n: int) -> int:
    """The partition (0..n-1) of a subject: stable across runs, machines and Python versions."""
    return int.from_bytes(hashlib.sha256(subject_id.encode("utf-8")).digest()[:8], "big") % n


def folder(store: Any, run_id: str) -> Path:
    """Where a run's partition files live: `<store file>.partitions/<run id>/` beside the main
    trail (for a PostgreSQL trail: under $ADJUDICATOR_BATCH_DIR or the current folder, as the
    batch files)."""
    from .batches import base_dir
    where = str(store.path)
    name = "adjudicator" if "://" in where else Path(where).name
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    return base_dir(store) / f"{name}.partitions" / safe


def file_name(k: int, n: int) -> str:
    return f"part-{k:02d}-of-{n:02d}.sqlite"


def relative(store: Any, path: Path) -> str:
    """A partition file's path as the run record keeps it: relative to the main trail's folder,
    so a copied folder still verifies."""
    from .batches import base_dir
    return str(Path(path).relative_to(base_dir(store)))


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def leaf_bytes(leaf: dict[str, Any]) -> bytes:
    """The bytes a leaf hash covers: canonical JSON of exactly LEAF_KEYS."""
    return canonical_json({k: leaf[k] for k in LEAF_KEYS}).encode("utf-8")


def merkle_root(leaves: list[dict[str, Any]]) -> str:
    """Hex RFC 6962 Merkle tree hash over the leaves in partition order (see the module doc)."""
    if not leaves:
        raise ValueError("a partitioned run has at least one partition")

    def root(hashes: list[bytes]) -> bytes:
        if len(hashes) == 1:
            return hashes[0]
        k = 1
        while k * 2 < len(hashes):
            k *= 2
        return hashlib.sha256(b"\x01" + root(hashes[:k]) + root(hashes[k:])).digest()

    return root([hashlib.sha256(b"\x00" + leaf_bytes(leaf)).digest() for leaf in leaves]).hex()


def seal(path: Path) -> str:
    """Make a written partition file self-contained (its WAL folded in, rollback journal mode, so
    that reading it changes no byte) and return its sha256. Called by its only writer, after
    closing its store."""
    conn = sqlite3.connect(str(path), isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=DELETE")
    finally:
        conn.close()
    return file_sha256(path)


# --- the partitioned runs of a trail ------------------------------------------------------------

def completed_runs(store: Any) -> list[tuple[str, dict[str, Any]]]:
    """(run id, the `partitions` object of its complete record) of every completed partitioned run
    in the main trail, oldest first. A run still being written (or killed) has no complete record:
    its partitions are neither read nor rooted until it completes (`cohort --resume`)."""
    out = []
    for row in store.iter_rows(subject_id=RUN_SUBJECT, use_case=RUN_USE_CASE, item="complete", main_only=True):
        try:
            parts = json.loads(row["outcome"]).get("partitions")
        except (ValueError, AttributeError):
            continue
        if isinstance(parts, dict) and isinstance(parts.get("leaves"), list):
            out.append((row["run_id"], parts))
    return out


class PartitionReader:
    """Read access to the sealed partitions of a trail's completed runs (opened read-only, once),
    so that reading a run's decisions (summary, diff, show, explain, override) does not depend on
    whether the run was partitioned. Refreshed when the main trail's head moves."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self._head: int | None = None
        self._runs: list[tuple[str, dict[str, Any]]] = []
        self._open: dict[str, Any] = {}

    def runs(self) -> list[tuple[str, dict[str, Any]]]:
        seq = self._store.head()[0]
        if seq != self._head:
            self._runs, self._head = completed_runs(self._store), seq
        return self._runs

    def stores(self, run_id: str | None = None, subject_id: str | None = None,
               exclude_run: str | None = None) -> Iterator[Any]:
        """The partition stores that can hold records of `run_id` (every partitioned run when
        None) and `subject_id` (its one partition per run when given)."""
        from .batches import base_dir
        from .store import AuditStore
        for rid, parts in self.runs():
            if (run_id is not None and rid != run_id) or rid == exclude_run:
                continue
            leaves = parts["leaves"]
            wanted = [partition_of(subject_id, len(leaves))] if subject_id is not None else range(len(leaves))
            for k in wanted:
                rel = leaves[k].get("file")
                if rel not in self._open:
                    try:
                        self._open[rel] = AuditStore.open(base_dir(self._store) / rel, create=False, read_only=True)
                    except (InputError, AuditIntegrityError) as exc:
                        raise AuditIntegrityError(f"run {rid} partition {k} of {len(leaves)}: file {rel} cannot be "
                                                  f"read ({exc}); `audit verify` checks the partitions") from None
                yield self._open[rel]

    def close(self) -> None:
        for s in self._open.values():
            s.close()
        self._open.clear()


def merge_rows(main: Iterable[dict[str, Any]], parts: list[Iterable[dict[str, Any]]]) -> Iterator[dict[str, Any]]:
    """Main-trail rows and partition rows in time order (each source already is), without the
    partitions' own bookkeeping records."""
    decisions = [(r for r in p if r["subject_id"] != RUN_SUBJECT) for p in parts]
    return heapq.merge(main, *decisions, key=lambda r: r["created_at"])


# --- verifying ----------------------------------------------------------------------------------

def _check_one(job: tuple[str, str, dict[str, Any], int]) -> tuple[int, int, list[str]]:
    """(partition, records checked, problems) of one partition file against its leaf: file
    sha256, its own chain, its head and count, and that its first record names this run and
    partition. Runs in a worker process."""
    from .store import AuditStore
    path, run_id, leaf, n = job
    k = leaf.get("partition")
    rooted = "head_hash" in leaf   # else a partition of an unfinished run: its chain and identity only
    problems: list[str] = []
    p = Path(path)
    if not p.is_file():
        return k, 0, [f"file {leaf.get('file')} is missing"]
    if rooted and file_sha256(p) != leaf.get("file_sha256"):
        problems.append(f"file {leaf.get('file')} was replaced or altered (its sha256 differs from the run record's)")
    try:
        with AuditStore.open(p, create=False, read_only=True) as part:
            report = part.verify(keyring=_EmptyRing())
            if not report.ok:
                problems.append(f"its chain: {report.message()}")
                return k, report.checked, problems
            seq, head = part.head()
            if rooted and (head != leaf.get("head_hash") or seq != leaf.get("records")):
                problems.append(f"its chain ends at seq {seq} with head {head[:12]}..., the run record says "
                                f"{leaf.get('records')} record(s) ending {str(leaf.get('head_hash'))[:12]}...")
            first = next(part.iter_rows(item=START_ITEM), None)
            want = {"run_id": run_id, "partition": k, "partitions": n}
            got = json.loads(first["outcome"]) if first else {}
            if first is None or first["run_id"] != run_id or any(got.get(x) != v for x, v in want.items()):
                problems.append(f"its first record is not the start of partition {k} of {n} of run {run_id} "
                                "(a partition file of another run or partition was put here)")
            return k, report.checked, problems
    except Exception as exc:  # noqa: BLE001 - an unreadable partition is a failed partition, named
        return k, 0, problems + [f"cannot be read: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"]


class _EmptyRing:
    """A partition holds no overrides or signatures (those go to the main trail)."""

    path = "(none: partitions hold no signatures)"

    def find(self, *_: Any) -> None:
        return None


def unfinished_runs(store: Any) -> list[tuple[str, int]]:
    """(run id, partitions) of every partitioned run with a start record and no complete record
    (killed, or being written)."""
    started: dict[str, int] = {}
    for row in store.iter_rows(subject_id=RUN_SUBJECT, use_case=RUN_USE_CASE, main_only=True):
        if row["item"] == "start":
            n = json.loads(row["outcome"]).get("partitions")
            if isinstance(n, int) and n > 0:
                started[row["run_id"]] = n
        elif row["item"] == "complete":
            started.pop(row["run_id"], None)
    return list(started.items())


def verify(store: Any, processes: int | None = None) -> dict[str, Any]:
    """Check every completed partitioned run of the trail: each partition (file sha256, chain,
    head, count, identity) in parallel processes, then each run's Merkle root recomputed from its
    leaves; the partition files of an unfinished run: their chains and identity (nothing roots them
    yet). {"runs": n, "partitions": n, "records": n, "unfinished": n, "problems": ["run R partition
    K of N: ..."]}."""
    import multiprocessing as mp
    import os
    from concurrent.futures import ProcessPoolExecutor

    from .batches import base_dir
    jobs, problems, runs = [], [], completed_runs(store)
    for rid, parts in runs:
        leaves = parts["leaves"]
        n = parts.get("count")
        if n != len(leaves) or [leaf.get("partition") for leaf in leaves] != list(range(len(leaves))):
            problems.append(f"run {rid}: the run record lists {len(leaves)} partition leaves for count {n}")
            continue
        try:
            root = merkle_root(leaves)
        except (KeyError, TypeError, ValueError) as exc:
            problems.append(f"run {rid}: a partition leaf lacks {exc}")
            continue
        if root != parts.get("merkle_root"):
            bad = [leaf["partition"] for leaf in leaves]
            problems.append(f"run {rid}: the Merkle root recomputed from the partition leaves differs from the "
                            f"recorded one (a leaf of partition(s) {bad} or the root was edited)")
        for leaf in leaves:
            jobs.append((str(base_dir(store) / str(leaf.get("file"))), rid, leaf, n))
    rooted = len(jobs)
    for rid, n in unfinished_runs(store):
        for k in range(n):
            path = folder(store, rid) / file_name(k, n)
            if path.is_file():
                jobs.append((str(path), rid, {"partition": k, "file": relative(store, path)}, n))
    records = 0
    if jobs:
        workers = min(len(jobs), processes or os.cpu_count() or 1)
        if workers > 1:
            with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
                results = list(pool.map(_check_one, jobs))
        else:
            results = [_check_one(j) for j in jobs]
        for i, ((path, rid, leaf, n), (k, checked, found)) in enumerate(zip(jobs, results)):
            records += checked
            state = "" if i < rooted else " (unfinished run)"
            problems.extend(f"run {rid}{state} partition {k} of {n}: {p}" for p in found)
    return {"runs": len(runs), "partitions": rooted, "records": records, "unfinished": len(jobs) - rooted,
            "problems": problems}


__all__ = ["HASH_RULE", "TREE_RULE", "LEAF_KEYS", "partition_of", "merkle_root", "leaf_bytes", "verify",
           "PartitionReader", "completed_runs", "seal", "folder", "file_name"]
