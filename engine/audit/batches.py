"""Batch files of the audit trail: the per-row detail of a batch decision (every row of a graded
lab listing: its grade, deciding rule and values read) in one Parquet file beside the store,
cited with its sha256 by one ordinary audit record, so the hash chain covers the file too.

The file lives in `<store file>.batches/` and is named by its sha256 (content-addressed: written
to a temporary name, hashed, then renamed; a reader never sees half a file). The record's
outcome holds `batch: {file, sha256, rows, format}` with `file` relative to the store's folder,
so a copied store folder still verifies. `verify_batches` recomputes every cited file's sha256:
an edited, truncated, replaced or missing file is reported like an edited record.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

FORMAT = "parquet"
USE_CASES = ("ctcae-listing",)     # the use cases whose records cite a batch file


def base_dir(store: Any) -> Path:
    """Where batch file paths are relative to: the store file's folder (SQLite); for a server
    store (a URL), $ADJUDICATOR_BATCH_DIR or the current folder."""
    where = str(store.path)
    if "://" in where:
        return Path(os.environ.get("ADJUDICATOR_BATCH_DIR", ".")).resolve()
    return Path(where).parent


def batch_dir(store: Any) -> Path:
    where = str(store.path)
    name = "adjudicator" if "://" in where else Path(where).name
    return base_dir(store) / f"{name}.batches"


def write_parquet(store: Any, frame: Any, decision_id: str) -> dict[str, Any]:
    """Write `frame` (a polars DataFrame) as the batch file of decision `decision_id`; return the
    `batch` object the record cites."""
    folder = batch_dir(store)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{decision_id}-", suffix=".parquet", dir=folder)
    os.close(fd)
    try:
        frame.write_parquet(tmp, compression="lz4", statistics=False)
        digest = _sha256(Path(tmp))
        final = folder / f"{digest}.parquet"
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return {"file": str(final.relative_to(base_dir(store))), "sha256": digest,
            "rows": frame.height, "format": FORMAT}


def discard(store: Any, batch: dict[str, Any]) -> None:
    """Remove a batch file whose record could not be written (nothing half-written)."""
    (base_dir(store) / batch["file"]).unlink(missing_ok=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cited(store: Any) -> Iterator[tuple[Any, dict[str, Any]]]:
    """(record, batch) of every record that cites a batch file."""
    for use_case in USE_CASES:
        for rec in store.iter(use_case=use_case, main_only=True):   # batch records are never partitioned
            batch = rec.outcome.get("batch") if isinstance(rec.outcome, dict) else None
            if isinstance(batch, dict) and "file" in batch and "sha256" in batch:
                yield rec, batch


def verify_batches(store: Any) -> list[str]:
    """One line per cited batch file that is missing or whose sha256 differs from the record's."""
    problems = []
    base = base_dir(store)
    for rec, batch in cited(store):
        path = base / batch["file"]
        if not path.is_file():
            problems.append(f"record seq {rec.seq} ({rec.decision_id}) cites batch file {batch['file']}, "
                            f"which is missing")
        elif _sha256(path) != batch["sha256"]:
            problems.append(f"record seq {rec.seq} ({rec.decision_id}): batch file {batch['file']} was altered "
                            f"(its sha256 differs from the one recorded)")
    return problems


def read_batch(store: Any, batch: dict[str, Any]) -> Any:
    """The batch file as a polars DataFrame (after checking its sha256)."""
    import polars as pl
    path = base_dir(store) / batch["file"]
    if _sha256(path) != batch["sha256"]:
        raise ValueError(f"batch file {batch['file']} was altered")
    return pl.read_parquet(path)
