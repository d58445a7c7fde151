"""A cohort run split into partitions: each partition adjudicates the subjects whose id hashes to
it and writes its own hash chain; the parent roots them in the main trail (engine.audit.partitions).

Why this shape: a partition is the unit of work and of writing, so partitions run anywhere
without a shared writer: in this machine's processes (`--partitions N`), or on a Dask cluster
(`--dask local[:N]` or `--dask tcp://host:port`), where each worker loads the run's compiled
registry once and keeps it across the partitions it runs. A partition reads the whole input list
and keeps its own subjects (reading ids is cheap next to adjudicating), so no subject list is
shipped; every subject keeps its run-wide index, so the durable-rules check samples the same
subjects (every Nth, and those changed against the baseline) as an unpartitioned run, and each
partition records its check in its own chain. Workers must see the input files and the audit
store's folder at the same paths (a shared filesystem on a real cluster).
"""
from __future__ import annotations

import hashlib
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from engine.errors import InputError

from . import cohort


def _ensure_worker(init: tuple) -> None:
    """Load the registry and evaluators of a run once per worker process (a Dask worker keeps
    them across the partitions it is given; another run's settings load afresh)."""
    key = hashlib.sha256(pickle.dumps(init)).hexdigest()
    if cohort._W.get("init_key") != key:
        cohort._init_worker(*init)
        cohort._W["init_key"] = key


def _subject_key(item: cohort.WorkItem) -> str:
    """What a work item is partitioned by: its subject id when readable without parsing, else its
    origin (an unreadable item is then reported by exactly one partition)."""
    from engine.record.load import file_subject_id, quick_subject_id
    if isinstance(item, str):
        return file_subject_id(item) or item
    text = item[1]
    return (quick_subject_id(text, True) if isinstance(text, str) else None) or item[0]


def run_partition(init: tuple, k: int, n: int, paths: list[str], path: str, batch_subjects: int = 64,
                  batch_seconds: float = 0.5) -> dict[str, Any]:
    """Adjudicate partition k of n into the partition store at `path` (created, or continued on
    resume), seal it, and return its leaf and what happened: {"leaf", "subjects", "skipped",
    "decisions", "failed", "check"}."""
    from engine.audit.partitions import END_ITEM, START_ITEM, partition_of, seal
    from engine.audit.store import AuditStore
    _ensure_worker(init)
    run_id, actor, reason = cohort._W["run_id"], cohort._W["actor"], cohort._W["reason"]
    every = cohort._W.get("check_every") or 0
    out: dict[str, Any] = {"partition": k, "subjects": 0, "skipped": 0, "decisions": 0, "failed": [],
                           "check": {"partition": k, "sampled": 0, "changed": 0, "checked": 0, "disagreements": []}}
    check = out["check"]
    store = AuditStore.open(path, create=True)
    try:
        finished = any(True for _ in store.iter_rows(run_id=run_id, item=END_ITEM, main_only=True))
        if next(store.iter_rows(run_id=run_id, item=START_ITEM, main_only=True), None) is None:
            with store.batch() as w:
                w.add(cohort._bookkeeping(START_ITEM, run_id, {"run_id": run_id, "partition": k, "partitions": n},
                                          actor, reason))
        done = store.done_subjects(run_id)
        writer = cohort.SubjectWriter(store, batch_subjects, batch_seconds)
        for index, item in enumerate(cohort.work_items(paths)):
            key = _subject_key(item)
            if partition_of(key, n) != k:
                continue
            if key in done:
                out["skipped"] += 1
                continue
            origin, subject_id, entries, error, checked = cohort.adjudicate_item(item, index)
            if checked is not None:
                error, entries = cohort.count_check(check, checked, origin, error, entries)
            if error is None and subject_id is not None and partition_of(subject_id, n) != k:
                error = f"{origin}: subject {subject_id}: its id was read two ways (internal error)"
            if error is not None:
                out["failed"].append((origin, error))
            elif entries is not None:
                writer.add(entries)
                out["subjects"] += 1
                out["decisions"] += len(entries)
        writer.flush()
        if not finished:
            with store.batch() as w:   # the partition's own account, its durable-rules check included
                w.add(cohort._bookkeeping(END_ITEM, run_id, {
                    "partition": k, "partitions": n, "subjects": out["subjects"], "skipped": out["skipped"],
                    "decisions": out["decisions"], "failed": [o for o, _ in out["failed"]],
                    "check": {x: check[x] for x in ("sampled", "changed", "checked")} | {
                        "every": every, "disagreements": len(check["disagreements"])} if every else None,
                }, actor, reason))
        seq, head = store.head()
    finally:
        store.close()
    out["leaf"] = {"partition": k, "partitions": n, "run_id": run_id, "records": seq, "head_hash": head,
                   "file_sha256": seal(Path(path))}
    return out


def _dask_client(spec: Any) -> tuple[Any, Callable[[], None]]:
    """(client, close) for `local`, `local:N` (a LocalCluster of N worker processes, 1 thread
    each; default 2), `tcp://host:port` (a running scheduler), or a `distributed.Client`."""
    try:
        import distributed
    except ImportError:
        raise InputError("Dask is not installed", field="--dask",
                         expected="pip install 'trial-adjudicator[dask]' (make test installs it)") from None
    if isinstance(spec, distributed.Client):
        return spec, lambda: None
    text = str(spec)
    if text == "local" or text.startswith("local:"):
        count = text.partition(":")[2] or "2"
        if not count.isdigit() or not 1 <= int(count) <= 64:
            raise InputError(f"--dask {text}", field="--dask", expected="local, local:N (1..64) or tcp://host:port")
        import logging
        cluster = distributed.LocalCluster(n_workers=int(count), threads_per_worker=1, processes=True,
                                           dashboard_address=None, silence_logs=logging.ERROR)
        client = distributed.Client(cluster)

        def close() -> None:
            client.close()
            cluster.close()
        return client, close
    if "://" not in text:
        raise InputError(f"--dask {text}", field="--dask", expected="local, local:N or tcp://host:port")
    try:
        client = distributed.Client(text, timeout=30)
    except (OSError, TimeoutError) as exc:
        raise InputError(f"cannot reach the Dask scheduler: {exc}", field="--dask",
                         expected="the address of a running scheduler (tcp://host:port)") from None
    return client, client.close


def dask_workers(spec: Any) -> int:
    """How many workers `--dask` would give (the default partition count)."""
    text = str(spec)
    if text == "local" or text.startswith("local:"):
        count = text.partition(":")[2]
        return int(count) if count.isdigit() else 2
    return 0


def stream(init: tuple, n: int, paths: list[str], files: list[str], workers: int, dask: Any,
           batch_subjects: int, batch_seconds: float) -> Iterator[dict[str, Any]]:
    """Each partition's result as it completes: on Dask, in a process pool of `workers`, or in
    this process when workers <= 1."""
    args = [(init, k, n, paths, files[k], batch_subjects, batch_seconds) for k in range(n)]
    if dask is not None:
        client, close = _dask_client(dask)
        try:
            import distributed
            futures = [client.submit(run_partition, *a, pure=False) for a in args]
            for fut in distributed.as_completed(futures):
                yield fut.result()
        finally:
            close()
        return
    if workers <= 1 or n == 1:
        for a in args:
            yield run_partition(*a)
        return
    import multiprocessing as mp
    import sys
    ctx = mp.get_context("fork" if sys.platform != "win32" else "spawn")
    with ctx.Pool(min(workers, n)) as pool:
        yield from pool.imap_unordered(_run_args, args)


def _run_args(a: tuple) -> dict[str, Any]:
    return run_partition(*a)


def run_all(store: Any, run_id: str, init: tuple, n: int, paths: list[str], *, workers: int, dask: Any,
            batch_subjects: int, batch_seconds: float, result: Any, check: dict[str, Any] | None,
            on_error: Callable[[str, str], None] | None) -> dict[str, Any]:
    """Run the n partitions of a run, add their counts, failures and durable-rules checks to
    `result` / `check`, and return the run record's `partitions` object: the rules, each
    partition's leaf (with its file), and the Merkle root over the leaves."""
    from engine.audit.partitions import HASH_RULE, TREE_RULE, file_name, folder, merkle_root, relative
    where = folder(store, run_id)
    where.mkdir(parents=True, exist_ok=True)
    files = [str(where / file_name(k, n)) for k in range(n)]
    leaves: list[dict[str, Any] | None] = [None] * n
    checks: list[dict[str, Any]] = []
    for out in stream(init, n, paths, files, workers, dask, batch_subjects, batch_seconds):
        k = out["partition"]
        leaves[k] = dict(out["leaf"], file=relative(store, Path(files[k])))
        result.subjects += out["subjects"]
        result.skipped += out["skipped"]
        result.decisions += out["decisions"]
        for origin, message in out["failed"]:
            result.failed.append((origin, message))
            if on_error:
                on_error(origin, message)
        c = out["check"]
        if check is not None:
            for x in ("sampled", "changed", "checked"):
                check[x] += c[x]
            check["disagreements"].extend(c["disagreements"])
            checks.append({x: c[x] for x in ("partition", "sampled", "changed", "checked")}
                          | {"disagreements": len(c["disagreements"])})
    if check is not None:
        check["partitions"] = sorted(checks, key=lambda c: c["partition"])
    done = [leaf for leaf in leaves if leaf is not None]
    return {"count": n, "hash": HASH_RULE, "tree": TREE_RULE, "leaves": done, "merkle_root": merkle_root(done)}
