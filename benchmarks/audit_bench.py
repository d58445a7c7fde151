"""Audit store write throughput: records/s through `store.batch()` with ~2 KB of JSON each.

Run: .venv/bin/python benchmarks/audit_bench.py [N]   (default 50,000 records, temp file)
The bar is >= 20,000 records/s; it also prints peak traced memory (the batch path must stream)
and the time `verify()` takes over the same file.
"""
from __future__ import annotations

import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.audit import AuditStore, canonical_json  # noqa: E402


def make_entry(i: int, run_id: str) -> dict:
    """One decision shaped like a screen: ~30 criteria in the trace, inputs with sources."""
    facts = {f"lab.f{k}": {"value": round(i * 0.01 + k, 2), "unit": "10^9/L", "source": f"labs.csv:{i}"}
             for k in range(8)}
    trace = [{"pack": "vah-eligibility", "rule": f"IC{k:02d}", "outcome": "met" if (i + k) % 7 else "not_met",
              "missing": [], "inputs": {f"lab.f{k % 8}": k}} for k in range(16)]
    return {
        "run_id": run_id, "subject_id": f"S{i:06d}", "use_case": "screen", "item": "eligibility",
        "input": {"facts": facts, "file": "fixtures/cohort.csv"},
        "packs": [{"id": "vah-eligibility", "version": "1.0.0", "sha256": "ab" * 32}],
        "parameters": {"eln": "2017", "ctcae": "4.03"}, "engine_version": "0.1.0",
        "trace": trace, "outcome": {"status": "eligible" if i % 5 else "ineligible", "failed": []},
        "actor": "bench",
    }


def _write(store: AuditStore, entries: list[dict], n: int) -> float:
    t0 = time.perf_counter()
    with store.batch() as w:
        for i in range(n):
            w.add(entries[i % len(entries)])
    return time.perf_counter() - t0


def main(n: int = 50_000) -> None:
    sample = make_entry(1, "r")
    size = sum(len(canonical_json(sample[k])) for k in ("input", "packs", "parameters", "trace", "outcome"))
    entries = [make_entry(i, "run-1") for i in range(2000)]  # reused: measure the store, not the maker
    with tempfile.TemporaryDirectory() as tmp:
        store = AuditStore.open(Path(tmp) / "bench.sqlite")
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        elapsed = _write(store, entries, n)  # timed without tracemalloc, which slows allocation
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t1 = time.perf_counter()
        report = store.verify()
        vtime = time.perf_counter() - t1
        tracemalloc.start()
        _write(store, entries, n // 5)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        store.close()
    print(f"records: {n}, JSON per record: {size} bytes")
    print(f"write: {n / elapsed:,.0f} records/s ({elapsed:.2f} s); max RSS {rss0 / 1024:.0f} -> {rss1 / 1024:.0f} MB")
    print(f"peak traced Python memory while writing {n // 5} more: {peak / 1e6:.1f} MB (streams: independent of N)")
    print(f"verify: {n / vtime:,.0f} records/s ({vtime:.2f} s), ok={report.ok}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50_000)
