"""Partitioned cohort runs (issue 15 item 6): the subject hash, the Merkle root, results identical
to a single-process run (process pool and Dask), the durable-rules check per partition, resume,
reads across partitions, and tampering with a partition named by `audit verify`."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import storetools
from engine.adjudicate import cohort, partitioned
from engine.adjudicate.cohort import RUN_SUBJECT, run_cohort
from engine.audit import partitions as P
from engine.audit.record import canonical_json
from engine.audit.store import AuditStore

ROOT = Path(__file__).resolve().parents[1]
VAH96 = ROOT / "fixtures" / "cohort" / "vah96"
ADJ = [sys.executable, "-c", "import cli; cli.main()"]


def _subset(tmp_path: Path, n: int = 6) -> Path:
    d = tmp_path / "in"
    d.mkdir()
    for f in sorted(VAH96.glob("*.yaml"))[:n]:
        shutil.copy(f, d / f.name)
    return d


def _records(store: AuditStore, run_id: str) -> dict[tuple, tuple]:
    """(subject, use case, item) -> every column a re-run must reproduce byte for byte."""
    out = {}
    for row in store.iter_rows(run_id=run_id):
        if row["subject_id"] == RUN_SUBJECT:
            continue
        key = (row["subject_id"], row["use_case"], row["item"])
        assert key not in out, key
        out[key] = tuple(row[c] for c in cohort._COMPARED)
    return out


def _adj(args: list[str], db: Path) -> subprocess.CompletedProcess:
    return subprocess.run(ADJ + ["--db", str(db)] + args, cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ), timeout=600)


# --- the definitions --------------------------------------------------------------------------

def test_partition_of_is_the_documented_hash():
    for sid, n in (("VAH-001", 4), ("VAH-096", 7), ("ünïcode-Ω", 3)):
        want = int(hashlib.sha256(sid.encode("utf-8")).hexdigest()[:16], 16) % n
        assert P.partition_of(sid, n) == want
    assert P.partition_of("VAH-001", 1) == 0


def _leaf(k: int, n: int = 3) -> dict:
    return {"partition": k, "partitions": n, "run_id": "run-x", "records": 10 + k,
            "head_hash": f"{k:064x}", "file_sha256": f"{k + 100:064x}", "file": f"p{k}.sqlite"}


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def test_merkle_root_is_rfc6962_by_hand():
    leaves = [_leaf(k, 5) for k in range(5)]
    lh = [_h(b"\x00" + canonical_json({k: v for k, v in leaf.items() if k != "file"}).encode()) for leaf in leaves]
    node = lambda a, b: _h(b"\x01" + a + b)  # noqa: E731
    assert P.merkle_root(leaves[:1]) == lh[0].hex()
    assert P.merkle_root(leaves[:2]) == node(lh[0], lh[1]).hex()
    # 3 leaves: split at 2; the odd leaf is carried up, never duplicated
    assert P.merkle_root(leaves[:3]) == node(node(lh[0], lh[1]), lh[2]).hex()
    assert P.merkle_root(leaves[:3]) != P.merkle_root(leaves[:3] + leaves[2:3])
    five = node(node(node(lh[0], lh[1]), node(lh[2], lh[3])), lh[4])
    assert P.merkle_root(leaves) == five.hex()
    # the file path is not a leaf field (the file's sha256 is)
    assert P.merkle_root([dict(leaves[0], file="elsewhere")]) == lh[0].hex()
    with pytest.raises(ValueError):
        P.merkle_root([])


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 9), k=st.integers(0, 8), key=st.sampled_from(P.LEAF_KEYS), sid=st.text(min_size=1))
def test_any_leaf_field_changes_the_root(n, k, key, sid):
    assert 0 <= P.partition_of(sid, n) < n
    leaves = [_leaf(i, n) for i in range(n)]
    root = P.merkle_root(leaves)
    k %= n
    edited = [dict(x) for x in leaves]
    v = edited[k][key]
    edited[k][key] = v + 1 if isinstance(v, int) else v + "0"
    assert P.merkle_root(edited) != root
    if n > 1:   # order matters: swapping two leaves changes the root
        swapped = [leaves[1], leaves[0]] + leaves[2:]
        assert P.merkle_root(swapped) != root


# --- runs ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same 6 subjects: one single-process run, one over 3 partitions in 2 processes, one over
    3 partitions on a Dask LocalCluster (one in-process worker)."""
    import distributed
    tmp = tmp_path_factory.mktemp("partitioned")
    folder = _subset(tmp)
    out = {}
    with AuditStore.open(tmp / "single.sqlite") as store:
        out["single"] = run_cohort(str(folder), store, actor="t", workers=1, progress=False, checkpoint=False,
                                   check_every=2)
        out["single_rows"] = _records(store, out["single"].run_id)
    with AuditStore.open(tmp / "pool.sqlite") as store:
        out["pool"] = run_cohort(str(folder), store, actor="t", workers=2, progress=False, checkpoint=False,
                                 check_every=2, partitions=3)
        out["pool_rows"] = _records(store, out["pool"].run_id)
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None)
    try:
        with distributed.Client(cluster) as client, AuditStore.open(tmp / "dask.sqlite") as store:
            out["dask"] = run_cohort(str(folder), store, actor="t", workers=2, progress=False, checkpoint=False,
                                     check_every=2, partitions=3, dask=client)
            out["dask_rows"] = _records(store, out["dask"].run_id)
    finally:
        cluster.close()
    out["tmp"], out["folder"] = tmp, folder
    return out


def test_partitioned_runs_reproduce_the_single_process_run(runs):
    single = runs["single_rows"]
    assert len(single) > 6 * 10
    for name in ("pool", "dask"):
        res = runs[name]
        assert (res.subjects, res.decisions, res.failed) == (6, runs["single"].decisions, [])
        assert runs[f"{name}_rows"] == single, name      # same decisions, same record bytes
        assert res.partitions["count"] == 3 and len(res.partitions["leaves"]) == 3


def test_the_durable_check_happens_and_is_recorded_per_partition(runs):
    single, dask = runs["single"].check, runs["dask"].check
    assert single["checked"] == 3 and not single["disagreements"]          # items 0, 2, 4
    assert (dask["sampled"], dask["checked"], dask["disagreements"]) == (3, 3, [])
    per = dask["partitions"]
    assert [p["partition"] for p in per] == [0, 1, 2] and sum(p["checked"] for p in per) == 3
    store = AuditStore.open(runs["tmp"] / "dask.sqlite", create=False, read_only=True)
    with store:
        base = Path(store.path).parent
        for leaf, p in zip(runs["dask"].partitions["leaves"], per):
            with AuditStore.open(base / leaf["file"], create=False, read_only=True) as part:
                end = [r for r in part.iter(item=P.END_ITEM)]
                assert len(end) == 1 and end[0].outcome["check"]["checked"] == p["checked"]
                assert end[0].outcome["check"]["every"] == 2


def test_each_subject_is_in_its_hash_partition(runs):
    res = runs["pool"]
    with AuditStore.open(runs["tmp"] / "pool.sqlite", create=False, read_only=True) as store:
        base = Path(store.path).parent
        for leaf in res.partitions["leaves"]:
            with AuditStore.open(base / leaf["file"], create=False, read_only=True) as part:
                sids = {r["subject_id"] for r in part.iter_rows()} - {RUN_SUBJECT}
                assert all(P.partition_of(s, 3) == leaf["partition"] for s in sids)
                assert part.head() == (leaf["records"], leaf["head_hash"])
                assert P.file_sha256(base / leaf["file"]) == leaf["file_sha256"]
        assert P.merkle_root(res.partitions["leaves"]) == res.partitions["merkle_root"]
        # the main trail holds only the run's bookkeeping; its complete record holds the root
        assert {r["subject_id"] for r in store.iter_rows(main_only=True)} == {RUN_SUBJECT}


def test_reads_and_overrides_reach_partitioned_decisions(runs):
    path = runs["tmp"] / "pool.sqlite"
    with AuditStore.open(path) as store:
        rec = next(r for r in store.iter(run_id=runs["pool"].run_id, use_case="screen"))
        assert store.get(rec.decision_id).outcome == rec.outcome
        assert store.ids_with_prefix(rec.decision_id[:8]) == [rec.decision_id]
        assert store.latest(rec.subject_id, "screen", rec.item).decision_id == rec.decision_id
        assert store.latest_machine(rec.subject_id, "screen", rec.item).decision_id == rec.decision_id
        assert store.current(rec.subject_id, "screen", rec.item).decision_id == rec.decision_id
        from engine.audit.packs import _LOADED, pack_from_trail   # the packs' copies are in the partitions
        for ident in rec.packs:
            _LOADED.pop(ident["sha256"], None)
            assert pack_from_trail(store, ident["id"], ident["sha256"]).sha256 == ident["sha256"]
        over = store.override(rec.decision_id, dict(rec.outcome, note="committee"), "dr-a", "reviewed", "t")
        assert store.current(rec.subject_id, "screen", rec.item).decision_id == over.decision_id
        assert store.verify().ok
        assert P.verify(store)["problems"] == []


# --- verify and tampering -----------------------------------------------------------------------

@pytest.fixture
def trail(tmp_path):
    """A fresh 3-partition run of 5 subjects (in this process): (db, run result)."""
    folder = _subset(tmp_path, 5)
    db = tmp_path / "t.sqlite"
    with AuditStore.open(db) as store:
        res = run_cohort(str(folder), store, actor="t", workers=1, progress=False, checkpoint=False,
                         check_every=50, partitions=3)
    return db, res


def _verify(db: Path) -> subprocess.CompletedProcess:
    return _adj(["audit", "verify"], db)


def _part(db: Path, res, k: int) -> Path:
    return db.parent / res.partitions["leaves"][k]["file"]


def test_verify_checks_every_partition_and_the_root(trail):
    db, res = trail
    out = _verify(db)
    assert out.returncode == 0, out.stderr
    n = sum(leaf["records"] for leaf in res.partitions["leaves"])
    assert f"3 partition(s) of 1 partitioned run(s): {n} records verified, Merkle roots match" in out.stdout
    doc = json.loads(_adj(["audit", "verify", "--json"], db).stdout)
    assert doc["ok"] and doc["partitions"] == {"runs": 1, "partitions": 3, "records": n, "unfinished": 0,
                                               "problems": []}


def test_an_edited_partition_record_is_named(trail):
    db, res = trail
    part = _part(db, res, 1)
    storetools.tamper(part, "UPDATE decisions SET outcome = replace(outcome, 'true', 'false') WHERE seq = 3")
    out = _verify(db)
    assert out.returncode == 3
    assert f"run {res.run_id} partition 1 of 3" in out.stderr and "altered" in out.stderr
    assert "record seq 3" in out.stderr and "partition 0" not in out.stderr


def test_a_deleted_partition_record_is_named_even_after_rechaining(trail):
    db, res = trail
    part = _part(db, res, 2)
    storetools.tamper(part, "DELETE FROM decisions WHERE seq = 4")
    out = _verify(db)
    assert out.returncode == 3 and "partition 2 of 3" in out.stderr and "seq gap" in out.stderr
    storetools.rechain(part)      # the partition's chain made whole again: its head no longer matches
    out = _verify(db)
    assert out.returncode == 3 and "partition 2 of 3" in out.stderr
    assert "the run record says" in out.stderr and "partition 0 " not in out.stderr


def test_swapped_partition_files_are_named(trail):
    db, res = trail
    a, b = _part(db, res, 0), _part(db, res, 1)
    tmp = a.with_suffix(".tmp")
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)
    out = _verify(db)
    assert out.returncode == 3
    assert "partition 0 of 3" in out.stderr and "partition 1 of 3" in out.stderr and "replaced" in out.stderr
    assert "partition 2 of 3" not in out.stderr
    assert "not the start of partition 0" in out.stderr


def test_a_missing_partition_file_is_named(trail):
    db, res = trail
    _part(db, res, 2).unlink()
    out = _verify(db)
    assert out.returncode == 3 and "partition 2 of 3: file" in out.stderr and "missing" in out.stderr


def _edit_run_record(db: Path, edit) -> None:
    (seq, text), = storetools.query(db, "SELECT seq, outcome FROM decisions WHERE item = 'complete'")
    outcome = json.loads(text)
    edit(outcome["partitions"])
    storetools.tamper(db, "UPDATE decisions SET outcome = ? WHERE seq = ?", (canonical_json(outcome), seq))


def test_an_edited_head_in_the_run_record_is_detected(trail):
    db, res = trail

    def new_head(parts):
        parts["leaves"][1]["head_hash"] = "f" * 64
    _edit_run_record(db, new_head)
    out = _verify(db)   # the main chain gives the edit away first
    assert out.returncode == 3 and "a field was edited" in out.stderr
    storetools.rechain(db)   # whoever can write the trail rewrites it: the root no longer matches
    out = _verify(db)
    assert out.returncode == 3 and "Merkle root" in out.stderr
    assert f"run {res.run_id} partition 1 of 3: its chain ends at" in out.stderr
    assert "partition 0 of 3" not in out.stderr and "partition 2 of 3" not in out.stderr


def test_an_edited_head_with_a_recomputed_root_still_names_the_partition(trail):
    db, res = trail

    def new_head_and_root(parts):
        parts["leaves"][2]["head_hash"] = "e" * 64
        parts["merkle_root"] = P.merkle_root(parts["leaves"])
    _edit_run_record(db, new_head_and_root)
    storetools.rechain(db)
    out = _verify(db)
    assert out.returncode == 3 and "Merkle root" not in out.stderr
    assert "partition 2 of 3: its chain ends at" in out.stderr


# --- resume, the CLI and Dask processes -----------------------------------------------------------

def test_a_partitioned_run_that_failed_midway_resumes(tmp_path, monkeypatch):
    folder = _subset(tmp_path, 5)
    db = tmp_path / "r.sqlite"
    original = partitioned.run_partition

    def dies_on_partition_2(init, k, *a, **kw):
        if k == 2:
            raise KeyboardInterrupt("killed")
        return original(init, k, *a, **kw)

    monkeypatch.setattr(partitioned, "run_partition", dies_on_partition_2)
    with AuditStore.open(db) as store, pytest.raises(KeyboardInterrupt):
        run_cohort(str(folder), store, actor="t", workers=1, progress=False, checkpoint=False, partitions=3)
    monkeypatch.setattr(partitioned, "run_partition", original)
    with AuditStore.open(db, create=False, read_only=True) as store:
        assert P.completed_runs(store) == []           # not rooted, not read, until it completes
        report = P.verify(store)                       # but the partitions written so far are checked
        assert (report["partitions"], report["unfinished"], report["problems"]) == (0, 2, []), report
    (run_id, _), = P.unfinished_runs(AuditStore.open(db, create=False, read_only=True))
    part1 = next(P.folder(AuditStore.open(db, create=False, read_only=True), run_id).glob("part-01-*"))
    storetools.tamper(part1, "UPDATE decisions SET actor = 'x' WHERE seq = 1")
    with AuditStore.open(db, create=False, read_only=True) as store:
        assert [p.split(":")[0] for p in P.verify(store)["problems"]] == [
            f"run {run_id} (unfinished run) partition 1 of 3"]
    storetools.rechain(part1)   # (the edit re-chained, so that the resumed run can go on)
    with AuditStore.open(db) as store:
        res = run_cohort(None, store, actor="t", workers=1, progress=False, checkpoint=False, resume="latest")
        done_before = res.skipped
        assert res.subjects + done_before == 5 and res.partitions["count"] == 3
        assert len({k[0] for k in _records(store, res.run_id)}) == 5
        report = P.verify(store)
        assert report["problems"] == [] and report["partitions"] == 3


def test_cli_partitions_and_dask_processes(tmp_path):
    """`cohort --dask local:2` (two worker processes) and `--partitions 2`: the same decisions."""
    folder = _subset(tmp_path, 4)
    db = tmp_path / "c.sqlite"
    first = _adj(["cohort", str(folder), "--partitions", "2", "--json"], db)
    assert first.returncode == 0, first.stderr
    second = _adj(["cohort", str(folder), "--dask", "local:2", "--json"], db)
    assert second.returncode == 0, second.stderr
    a, b = json.loads(first.stdout)["run"], json.loads(second.stdout)["run"]
    assert b["partitions"]["count"] == 2 and b["subjects"] == 4
    with AuditStore.open(db, create=False, read_only=True) as store:
        ra, rb = _records(store, a["run_id"]), _records(store, b["run_id"])
    assert ra == rb and len(ra) > 30
    assert json.loads(second.stdout)["diff"] == []          # nothing changed between the two runs
    out = _verify(db)
    assert out.returncode == 0 and "4 partition(s) of 2 partitioned run(s)" in out.stdout


@pytest.mark.parametrize("args, expected", [
    (["--dask", "nowhere"], "--dask"),
    (["--dask", "local:0"], "--dask"),
    (["--partitions", "300"], "--partitions"),
])
def test_bad_partition_options_are_refused(tmp_path, args, expected):
    folder = _subset(tmp_path, 1)
    out = _adj(["cohort", str(folder)] + args, tmp_path / "x.sqlite")
    assert out.returncode == 2 and expected in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "x.sqlite.partitions").exists()


@pytest.fixture
def pg_store(pg_url):
    url, schema = storetools.new_schema(pg_url)
    yield url
    storetools.drop_schema(pg_url, schema)


def test_a_postgresql_trail_roots_its_sqlite_partitions(tmp_path, monkeypatch, pg_store):
    """The main trail in PostgreSQL: partitions are SQLite files under $ADJUDICATOR_BATCH_DIR (as
    batch files); the root, the reads and verify work as with a SQLite trail."""
    store_target = pg_store
    monkeypatch.setenv("ADJUDICATOR_BATCH_DIR", str(tmp_path / "batches"))
    (tmp_path / "batches").mkdir()
    folder = _subset(tmp_path, 3)
    with AuditStore.open(store_target) as store:
        res = run_cohort(str(folder), store, actor="t", workers=1, progress=False, checkpoint=False, partitions=2)
        assert res.subjects == 3 and len({k[0] for k in _records(store, res.run_id)}) == 3
        assert all((tmp_path / "batches" / leaf["file"]).is_file() for leaf in res.partitions["leaves"])
        assert store.verify().ok and P.verify(store)["problems"] == []
    storetools.tamper(tmp_path / "batches" / res.partitions["leaves"][1]["file"],
                      "UPDATE decisions SET actor = 'x' WHERE seq = 2")
    with AuditStore.open(store_target, create=False, read_only=True) as store:
        problems = P.verify(store)["problems"]
    assert problems and all("partition 1 of 2" in p for p in problems)


def test_changed_subjects_are_checked_against_a_partitioned_baseline_and_bad_input_reported_once(tmp_path):
    """A second partitioned run with a changed parameter: the partitions find each subject's
    earlier decisions in the first run's partitions, and durable-rules checks exactly the changed
    subjects; a bad subject file is reported once, by one partition."""
    folder = _subset(tmp_path, 3)
    (folder / "ZZ-bad.yaml").write_text("subject_id: ZZ-BAD\ndemographics: {age_years: 300}\n")
    with AuditStore.open(tmp_path / "b.sqlite") as store:
        kw = dict(actor="t", workers=1, progress=False, checkpoint=False, check_every=1000, partitions=2,
                  profiles=("trial",))
        first = run_cohort(str(folder), store, **kw)
        assert first.subjects == 3 and len(first.failed) == 1 and first.exit_code == 2
        assert "ZZ-bad.yaml" in first.failed[0][0] and "age_years" in first.failed[0][1]
        again = run_cohort(str(folder), store, params={"vah-trial-response": {"mrd_threshold_pct": 0.1}}, **kw)
        changed = {k[0] for k, v in _records(store, again.run_id).items()
                   if _records(store, first.run_id).get(k, (None,) * 9)[-1] != v[-1]}
    assert changed, "the parameter changes some decision"
    assert again.check["changed"] == len(changed) and again.check["sampled"] == 1   # item 0 is sampled too
    assert again.check["disagreements"] == []
