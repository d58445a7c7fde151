"""Re-adjudicating a whole cohort: every subject screened, every marrow under the chosen
profiles, every AE and lab graded, every decision in the audit store under one run id.

Why this shape: subjects stream through a process pool (each worker loads the registry and owns
its durable-rules rulesets; the engine is per process), the parent is the single SQLite writer and
commits whole subjects in transactions (up to 64 subjects or half a second each), so a kill loses
at most the uncommitted subjects, never part of one, and a re-run with the same run id skips what
is committed. Nothing holds the cohort's decisions in memory.
The unit of work is a subject file, or one line of a subject table (.jsonl/.ndjson), streamed
from the table so that a million-subject table is never held whole. A bad subject file or table
line is reported with its path (`table:line`) and skipped; the run goes on.
"""
from __future__ import annotations

import datetime as dt
import multiprocessing as mp
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import AdjudicatorError, InputError

RUN_SUBJECT = "__run__"        # bookkeeping records of a run (start / complete): "__" = never a subject
RUN_USE_CASE = "cohort_run"
DEFAULT_CHECK_EVERY = 50       # a compiled batch: every 50th subject is adjudicated again by durable-rules

# A work item: a subject file's path, or a table line as (origin `table:line`, its text or the
# InputError that stands for an unreadable line).
WorkItem = str | tuple[str, str | InputError]


@dataclass
class CohortResult:
    """What a run did: counts only (the decisions are in the audit store)."""
    run_id: str
    subjects: int = 0
    skipped: int = 0
    decisions: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)   # (path or table:line, message)
    notes: list[str] = field(default_factory=list)
    checkpoint: str | None = None   # the signed checkpoint written at the end of the run
    evaluator: str = "compiled"
    # the durable-rules check of a compiled batch (recorded in the run's complete record):
    # {"every": N, "sampled": n, "changed": n, "checked": n, "disagreements": [...]}
    check: dict[str, Any] | None = None
    partitions: dict[str, Any] | None = None   # a partitioned run's leaves and Merkle root

    @property
    def disagreements(self) -> list[dict[str, Any]]:
        return list((self.check or {}).get("disagreements") or [])

    @property
    def exit_code(self) -> int:
        """1 when the compiled evaluator and durable-rules disagreed (a bug: the run failed),
        2 when some input was refused, else 0."""
        return 1 if self.disagreements else (2 if self.failed else 0)


# --- the per-process worker ------------------------------------------------------------------

_W: dict[str, Any] = {}


def _init_worker(rules_dir: str | None, profiles: tuple[str, ...] | None, params: dict[str, dict[str, Any]],
                 actor: str, reason: str | None, run_id: str, done: frozenset[str], ctcae: str | None = None,
                 committee: Mapping[str, Mapping[str, Any]] | None = None, evaluator: str = "durable",
                 check_every: int = 0, store_path: str | None = None, baseline: str | None = None,
                 trial: str | None = None) -> None:
    """Load the registry once per process; durable rulesets register lazily in this process.
    `committee`: subject -> item -> the committee's decision in force on a marrow (the course
    folds over it instead of the machine's)."""
    from engine.rules.load import load_registry
    registry = load_registry(rules_dir).for_trial(trial)
    proto = registry.trial()
    if _W.get("baseline_store") is not None:   # an earlier run in this process
        try:
            _W["baseline_store"].close()
        except Exception:  # noqa: BLE001 - opened by another thread (an in-process Dask worker): dropped
            pass
    compiled = None
    if evaluator == "compiled":
        from engine.evaluate.compiled import CompiledEvaluator
        compiled = CompiledEvaluator()
    _W.update(registry=registry, profiles=tuple(profiles or proto.profile_packs()), params=params, actor=actor,
              reason=reason, run_id=run_id, done=done, evaluator=compiled, ctcae=ctcae or proto.grading_version,
              grader=None, committee=committee or {}, in_force=parameters_in_force(registry, params),
              check_every=check_every if compiled is not None else 0, store_path=store_path,
              baseline=baseline, baseline_store=None, durable=None, durable_grader=None)


def parameters_in_force(registry: Any, params: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every pack's parameters in a run (its defaults, overridden by the run's --param): recorded
    once, in the run's start record; a record of the run keeps only what differs."""
    from engine.evaluate.run import resolve_params
    return {pid: dict(resolve_params(p, params.get(pid))) for pid, p in registry.packs.items()}


def _init_pool_worker(*init: Any) -> None:
    """A pool worker: load as above, then move the long-lived registry out of the garbage
    collector's sight and collect less often (a subject allocates thousands of short-lived
    objects; measured ~5 % of a worker's time otherwise)."""
    import gc
    _init_worker(*init)
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def _entries(record: Any, path: str, durable: bool = False) -> list[dict[str, Any]]:
    """Every decision of one subject: screening, each marrow under each profile and the course,
    each lab and adverse event (CTCAE grade, attribution), TLS and dosing advisories. By the run's
    evaluator, or (`durable`) by durable-rules, the engine of record (the batch check)."""
    from engine.adjudicate import follow_up, marrow, safety, screening
    reg, params, actor = _W["registry"], _W["params"], _W["actor"]
    ev_key, grader_key = ("durable", "durable_grader") if durable else ("evaluator", "grader")
    if durable and _W.get("durable") is None:
        from engine.evaluate.durable_adapter import DurableEvaluator
        _W["durable"] = DurableEvaluator()
    ev = _W[ev_key]
    if _W.get(grader_key) is None:  # one grader per process and evaluator: its cache spans subjects
        _W[grader_key] = safety.SafetyGrader(_W["ctcae"], reg, ev, params.get(reg.trial().ctcae_pack(_W["ctcae"])))
    return (screening.cohort_entries(record, path, reg, params, ev, actor)
            + marrow.cohort_entries(record, path, reg, params, ev, actor, _W["profiles"],
                                    _W["committee"].get(record.subject_id))
            + safety.cohort_entries(record, path, reg, params, ev, actor, _W["ctcae"], _W[grader_key])
            + follow_up.cohort_entries(record, path, reg, params, ev, actor))


# what the durable-rules check compares: every column of a prepared record but its random id
_COMPARED = ("subject_id", "use_case", "item", "input", "input_sha256", "packs", "parameters", "trace", "outcome")


def _changed_since_baseline(subject_id: str, prepared: list[Any]) -> bool:
    """Whether any decision of the subject differs from the baseline run's (or, without one, from
    its latest earlier machine decision) in the run's store: a subject new to the store has none."""
    if not _W.get("store_path"):
        return False
    if _W.get("baseline_store") is None:
        from engine.audit.store import AuditStore
        _W["baseline_store"] = AuditStore.open(_W["store_path"], create=False, read_only=True)
    earlier: dict[tuple[str, str | None], str] = {}
    for row in _W["baseline_store"].iter_rows(subject_id=subject_id, run_id=_W.get("baseline")):
        if row["supersedes"] is None and row["run_id"] != _W["run_id"]:
            earlier[(row["use_case"], row["item"])] = row["outcome"]   # seq order: the latest wins
    return any(earlier.get((p.use_case, p.item), p.outcome) != p.outcome for p in prepared)


def _check(record: Any, origin: str, prepared: list[Any], sampled: bool) -> dict[str, Any] | None:
    """The durable-rules check of one subject adjudicated by the compiled evaluator: when it is
    sampled (every Nth work item) or a decision changed against the baseline, adjudicate it again
    through durable-rules and compare every record, byte for byte (its random id apart)."""
    why = "sample" if sampled else ("changed" if _changed_since_baseline(record.subject_id, prepared) else None)
    if why is None:
        return None
    again = _finish(_entries(record, origin, durable=True))
    problems = []
    if len(again) != len(prepared):
        problems.append(f"{len(prepared)} records by the compiled evaluator, {len(again)} by durable-rules")
    for a, b in zip(prepared, again):
        cols = [c for c in _COMPARED if getattr(a, c) != getattr(b, c)]
        if cols:
            problems.append(f"{a.use_case} {a.item or ''}: {', '.join(cols)} differ")
    return {"why": why, "subject_id": record.subject_id, "origin": origin, "problems": problems}


def _finish(entries: list[dict[str, Any]]) -> list[Any]:
    from engine.audit.compact import run_parameters
    from engine.audit.store import prepare
    in_force = _W["in_force"]
    for e in entries:
        e["run_id"], e["reason"] = _W["run_id"], _W["reason"]
        e["parameters"] = run_parameters(e["parameters"], in_force)   # the run's are in its start record
    return [prepare(e) for e in entries]  # encoded here, in parallel; the writer only chains


def adjudicate_item(item: WorkItem, index: int = -1) -> tuple[str, str | None, list[Any] | None, str | None,
                                                             dict[str, Any] | None]:
    """(origin, subject id, entries, error, check): one subject (a file, or a table line whose
    origin `table:line` is also the path its facts cite), every use case, in a worker process.
    `check`: the durable-rules check of this subject when the run's evaluator is the compiled one
    and the subject is the run's every Nth work item (`index`) or changed against the baseline."""
    from engine.record import load_subject, parse_subject_json
    origin = item if isinstance(item, str) else item[0]
    check = None
    try:
        if isinstance(item, str):
            record = load_subject(item)
        elif isinstance(item[1], InputError):
            raise item[1]
        else:
            record = parse_subject_json(item[1], origin, one_line=True)
        if record.subject_id in _W["done"]:
            return origin, record.subject_id, None, None, None
        from engine.adjudicate.common import check_trial
        check_trial(record, _W["registry"], origin)
        prepared = _finish(_entries(record, origin))
        every = _W.get("check_every") or 0
        if every:
            check = _check(record, origin, prepared, index >= 0 and index % every == 0)
    except AdjudicatorError as exc:
        return origin, None, None, str(exc), check
    except Exception as exc:  # noqa: BLE001 - one subject's internal error must not stop the cohort
        return origin, None, None, f"{origin}: internal error {type(exc).__name__}: {exc}", check
    return origin, record.subject_id, prepared, None, check


def _adjudicate_indexed(pair: tuple[int, WorkItem]) -> tuple:
    return adjudicate_item(pair[1], pair[0])


def adjudicate_file(path: str) -> tuple[str, str | None, list[dict[str, Any]] | None, str | None]:
    """(path, subject id, entries, error): one subject file (see `adjudicate_item`)."""
    return adjudicate_item(path)[:4]


# --- the parent: schedule, write, resume -------------------------------------------------------

def subject_paths(path: str | Path) -> list[str]:
    """The subject files and tables of a folder (sorted, .yaml/.yml/.json/.jsonl/.ndjson), or one
    file or table."""
    from engine.record.load import SUFFIXES, TABLE_SUFFIXES
    p = Path(path)
    if p.is_file():
        return [str(p)]
    if not p.is_dir():
        raise InputError("no such file or folder", file=str(p),
                         expected="a folder of subject files, a subject file or a .jsonl table")
    return sorted(str(f) for f in p.iterdir() if f.suffix.lower() in SUFFIXES + TABLE_SUFFIXES)


def count_items(paths: Iterable[str]) -> int:
    """How many work items `work_items(paths)` yields: files count 1, tables their non-blank lines
    (one streaming pass each, no parsing; this also refuses an unreadable table before the run)."""
    from engine.record.load import count_table, is_table
    return sum(count_table(p) if is_table(p) else 1 for p in paths)


def scan_items(paths: Iterable[str]) -> tuple[int, list[tuple[str, str, str]]]:
    """(number of work items, duplicates as (subject id, first origin, later origin)): one
    streaming pass that reads each subject's id without building its record, so that a subject
    given twice (two files, a repeated table line) is refused before anything is written."""
    from engine.record.load import file_subject_id, is_table, iter_table, quick_subject_id
    paths = list(paths)
    seen: dict[str, int] = {}          # subject id -> (path index << 32) | line (compact)
    dupes: list[tuple[str, str, str]] = []
    total = 0

    def origin(code: int) -> str:
        i, line = code >> 32, code & 0xFFFFFFFF
        return f"{paths[i]}:{line}" if line else paths[i]

    for i, p in enumerate(paths):
        if is_table(p):
            lines: Iterable[tuple[int, Any]] = iter_table(p)
        else:
            lines = [(0, None)]
        for number, text in lines:
            total += 1
            if is_table(p):
                sid = quick_subject_id(text, True) if isinstance(text, str) else None
            else:
                sid = file_subject_id(p)
            if sid is None:
                continue
            code = (i << 32) | number
            first = seen.setdefault(sid, code)
            if first != code:
                dupes.append((sid, origin(first), origin(code)))
    return total, dupes


def work_items(paths: Iterable[str]) -> Iterator[WorkItem]:
    """The work items of files and tables, lazily: a table is read line by line as the pool asks.
    A table that fails while streaming yields one error item for itself and the run goes on."""
    from engine.record.load import is_table, iter_table
    for p in paths:
        if not is_table(p):
            yield p
            continue
        try:
            for number, text in iter_table(p):
                yield f"{p}:{number}", text
        except InputError as exc:
            yield p, exc
        except OSError as exc:  # e.g. the table vanished or the disk failed mid-run
            yield p, InputError(f"cannot read table: {exc.strerror or exc}", file=p)


def unfinished_run(store: Any) -> dict[str, Any] | None:
    """The latest run that has a start record and no complete record (its settings), or None."""
    runs: dict[str, dict[str, Any]] = {}
    for rec in store.iter(subject_id=RUN_SUBJECT, use_case=RUN_USE_CASE):
        if rec.item == "start":
            runs[rec.run_id] = dict(rec.outcome, run_id=rec.run_id)
        elif rec.item == "complete":
            runs.pop(rec.run_id, None)
    return list(runs.values())[-1] if runs else None


def run_start(store: Any, run_id: str) -> dict[str, Any] | None:
    for rec in store.iter(subject_id=RUN_SUBJECT, use_case=RUN_USE_CASE, run_id=run_id, item="start"):
        return dict(rec.outcome)
    return None


def latest_run(store: Any, before: str | None = None) -> str | None:
    """The newest completed run id (optionally the one completed before run `before`)."""
    done: list[str] = [rec.run_id for rec in store.iter(subject_id=RUN_SUBJECT, use_case=RUN_USE_CASE)
                       if rec.item == "complete"]
    if before is not None and before in done:
        done = done[:done.index(before)]
    return done[-1] if done else None


def _bookkeeping(item: str, run_id: str, outcome: dict[str, Any], actor: str, reason: str | None) -> dict:
    return {"subject_id": RUN_SUBJECT, "use_case": RUN_USE_CASE, "item": item, "run_id": run_id,
            "outcome": outcome, "actor": actor, "reason": reason}


def run_cohort(path: str | Path | list[str], store: Any, *, profiles: tuple[str, ...] | None = None,
               params: Mapping[str, Mapping[str, Any]] | None = None, actor: str, reason: str | None = None,
               resume: str | None = None, workers: int = 2, rules_dir: str | None = None,
               batch_subjects: int = 64, batch_seconds: float = 0.5, progress: bool | None = None,
               ctcae: str | None = None, checkpoint: bool = True, trial: str | None = None,
               on_error: Callable[[str, str], None] | None = None, evaluator: str = "compiled",
               check_every: int = DEFAULT_CHECK_EVERY, baseline: str | None = None, partitions: int = 0,
               dask: Any = None) -> CohortResult:
    """Adjudicate every subject file and table line under `path`; see the module docstring for the
    guarantees. The start record's "subjects" is the number of work items (files + table lines).

    trial: the protocol in force (default: the rules folder's default trial); profiles and the
    CTCAE version default to the protocol's.
    resume: a run id to continue (its committed subjects are skipped; its recorded trial, profiles and
    parameters are reused), or "latest" for the latest unfinished run.
    batch_subjects / batch_seconds: a transaction commits whole subjects, at most this many or
    after this long (a commit is an fsync: one per subject cost the writer more than the chain).
    evaluator: "compiled" (the batch evaluator generated from the packs, checked by durable-rules
    in the same run: every `check_every`-th work item and every subject whose decisions changed
    against `baseline` (a run id; default: each decision's latest earlier adjudication); any
    disagreement fails the run) or "durable" (every subject through durable-rules).
    partitions: split the run by a hash of the subject id into this many partitions, each with its
    own hash chain, rooted in the run's complete record (engine.adjudicate.partitioned); dask: run
    the partitions on a Dask cluster (`local`, `local:N`, `tcp://host:port` or a Client); its
    default partition count is the number of local workers."""
    if evaluator not in ("compiled", "durable"):
        raise InputError(f"unknown evaluator {evaluator!r}", field="--evaluator", expected="compiled or durable")
    if check_every < 1:
        raise InputError(f"--check-every {check_every}", field="--check-every",
                         expected="a whole number >= 1 (1: every subject checked by durable-rules)")
    if dask is not None and not partitions:
        from .partitioned import dask_workers
        partitions = dask_workers(dask) or 2
    if not 0 <= partitions <= 256:
        raise InputError(f"--partitions {partitions}", field="--partitions", expected="a whole number from 1 to 256")
    params = {k: dict(v) for k, v in (params or {}).items()}
    if resume == "latest":
        start = unfinished_run(store)
        if start is None:
            raise InputError("no unfinished cohort run to resume", field="--resume",
                             expected="a run id, or a store with an interrupted run")
        resume = start["run_id"]
    if resume:
        start = run_start(store, resume)
        if start is None:
            raise InputError(f"no cohort run {resume} in the audit store", field="--resume")
        profiles, params = tuple(start["profiles"]), start["params"]
        ctcae = start.get("ctcae", ctcae)
        evaluator = start.get("evaluator", "durable")
        check_every = start.get("check_every", check_every)
        trial = start.get("trial", trial)
        if start.get("partitions") and partitions and partitions != start["partitions"]:
            raise InputError(f"run {resume} has {start['partitions']} partitions", field="--partitions",
                             expected=f"{start['partitions']} (or no --partitions) to resume it")
        partitions = start.get("partitions") or 0
        reason = reason or start.get("reason")
        path = path or start["path"]
        run_id = resume
    else:
        run_id = f"run-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    # One writer per run: a second `--resume` of a run still being written fails here instead of
    # adjudicating its subjects again (the lock dies with its process: a killed run resumes).
    close_dask = None
    if dask is not None:   # reach the cluster (or start a local one) before anything is written
        from .partitioned import _dask_client
        dask, close_dask = _dask_client(dask)
    try:
        with store.run_lock(run_id):
            done = frozenset(store.done_subjects(run_id)) if resume else frozenset()  # read under the lock
            return _run_locked(path, store, run_id, done, profiles=profiles, params=params, actor=actor,
                               reason=reason, resume=resume, workers=workers, rules_dir=rules_dir,
                               batch_subjects=batch_subjects, batch_seconds=batch_seconds,
                               progress=progress, ctcae=ctcae, checkpoint=checkpoint, on_error=on_error,
                               evaluator=evaluator, check_every=check_every, baseline=baseline, trial=trial,
                               partitions=partitions, dask=dask)
    finally:
        if close_dask is not None:
            close_dask()


def _run_locked(path: Any, store: Any, run_id: str, done: frozenset[str], *, profiles: tuple[str, ...],
                params: dict[str, Any], actor: str, reason: str | None, resume: str | None, workers: int,
                rules_dir: str | None, batch_subjects: int, batch_seconds: float, progress: bool | None,
                ctcae: str | None, checkpoint: bool, on_error: Callable[[str, str], None] | None,
                evaluator: str = "compiled", check_every: int = DEFAULT_CHECK_EVERY,
                baseline: str | None = None, trial: str | None = None, partitions: int = 0,
                dask: Any = None) -> CohortResult:
    """The run itself, under its lock: check the input whole, then adjudicate and commit."""
    sources = [str(x) for x in (path if isinstance(path, (list, tuple)) else [path])]
    paths = [f for src in sources for f in subject_paths(src)]
    total, dupes = scan_items(paths)
    if total == 0:
        raise InputError("no subject files or table lines", file=", ".join(sources),
                         expected="subject files (.yaml/.yml/.json) or .jsonl tables with subjects")
    if dupes:
        sid, first, later = dupes[0]
        more = f" (and {len(dupes) - 1} more duplicate(s))" if len(dupes) > 1 else ""
        raise InputError(f"subject {sid} appears twice in the cohort input: {first} and {later}{more}",
                         file=later, subject=sid, field="subject_id",
                         expected="each subject once per run (nothing was written)")
    from engine.rules.load import load_registry
    registry = load_registry(rules_dir).for_trial(trial)  # fail fast on a bad pack, protocol or parameter
    proto = registry.trial()
    trial, profiles = proto.id, tuple(profiles or proto.profile_packs())
    ctcae = ctcae or proto.grading_version
    unknown = [p for p in profiles if p not in proto.profile_packs()]
    if unknown:
        raise InputError(f"unknown response profile {unknown[0]!r} for trial {trial}", field="--profiles",
                         expected=", ".join(proto.profile_packs()))
    from engine.evaluate.run import resolve_params
    for pack_id, values in params.items():
        resolve_params(registry.get(pack_id), values)
    result = CohortResult(run_id, evaluator=evaluator)
    check: dict[str, Any] | None = None
    if evaluator == "compiled":
        check = result.check = {"checked_by": "durable", "every": check_every, "baseline": baseline,
                                "sampled": 0, "changed": 0, "checked": 0, "disagreements": []}
    if not resume:
        with store.batch() as w:
            w.add(_bookkeeping("start", run_id, {"path": sources, "profiles": list(profiles), "params": params,
                                                 "ctcae": ctcae, "trial": trial,
                                                 "packs": [p.identity() for p in registry.packs.values()],
                                                 "parameters": parameters_in_force(registry, params),
                                                 "evaluator": evaluator, "check_every": check_every,
                                                 "reason": reason, "subjects": total}
                              | ({"partitions": partitions} if partitions else {}), actor, reason))
    from engine.adjudicate.committee import Overrides, marrow_decisions
    init = (rules_dir, tuple(profiles), params, actor, reason, run_id, done, ctcae, marrow_decisions(Overrides(store)),
            evaluator, check_every, _location(store), baseline, trial)
    if partitions:   # each partition adjudicates and chains its own subjects (engine.adjudicate.partitioned)
        from .partitioned import run_all
        parts = run_all(store, run_id, init[:6] + (frozenset(),) + init[7:], partitions, paths, workers=workers,
                        dask=dask, batch_subjects=batch_subjects, batch_seconds=batch_seconds, result=result,
                        check=check, on_error=on_error)
        return _complete(store, run_id, result, evaluator, check, actor, reason, checkpoint, parts)
    stream = _stream(work_items(paths), total, init, workers)
    bar = _progress(total, progress)
    writer = SubjectWriter(store, batch_subjects, batch_seconds)
    try:
        for p, subject_id, entries, error, checked in stream:
            if checked is not None and check is not None:
                error, entries = count_check(check, checked, p, error, entries)
            if error is not None:
                result.failed.append((p, error))
                if on_error:
                    on_error(p, error)
            elif entries is None:
                result.skipped += 1
            else:
                writer.add(entries)
                result.subjects += 1
                result.decisions += len(entries)
            if bar:
                bar.advance()
        writer.flush()
    finally:
        if bar:
            bar.stop()
    return _complete(store, run_id, result, evaluator, check, actor, reason, checkpoint)


class SubjectWriter:
    """Commits whole subjects' prepared entries: a transaction of up to `batch_subjects` subjects
    or `batch_seconds` (a commit is an fsync), never part of a subject."""

    def __init__(self, store: Any, batch_subjects: int, batch_seconds: float) -> None:
        self._store, self._most, self._seconds = store, batch_subjects, batch_seconds
        self._pending: list[Any] = []
        self._subjects, self._since = 0, time.monotonic()

    def add(self, entries: list[Any]) -> None:
        self._pending.extend(entries)
        self._subjects += 1
        if self._subjects >= self._most or time.monotonic() - self._since >= self._seconds:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            with self._store.batch() as w:
                for e in self._pending:
                    w.add(e)
        self._pending, self._subjects, self._since = [], 0, time.monotonic()


def count_check(check: dict[str, Any], checked: dict[str, Any], origin: str, error: str | None,
                entries: list[Any] | None) -> tuple[str | None, list[Any] | None]:
    """Count one subject's durable-rules check in `check`; (error, entries) as they stand after it:
    a disagreement (a bug in one evaluator) fails the subject, and nothing of it is written."""
    check[checked["why"] if checked["why"] == "changed" else "sampled"] += 1
    check["checked"] += 1
    if checked["problems"]:
        check["disagreements"].append({k: checked[k] for k in ("subject_id", "origin", "problems")})
        return (f"{origin}: subject {checked['subject_id']}: the compiled evaluator and durable-rules "
                f"disagree ({'; '.join(checked['problems'][:3])}); nothing of it was written"), None
    return error, entries


def _complete(store: Any, run_id: str, result: CohortResult, evaluator: str, check: dict[str, Any] | None,
              actor: str, reason: str | None, checkpoint: bool, partitions: dict[str, Any] | None = None
              ) -> CohortResult:
    """The run's complete record (with a partitioned run's leaves and Merkle root) and its
    signed checkpoint."""
    with store.batch() as w:
        w.add(_bookkeeping("complete", run_id, {"subjects": result.subjects, "skipped": result.skipped,
                                                "decisions": result.decisions,
                                                "failed": [p for p, _ in result.failed],
                                                "evaluator": evaluator, "check": check}
                           | ({"partitions": partitions} if partitions else {}), actor, reason))
    result.partitions = partitions
    if checkpoint:  # the run ends with a signed checkpoint of the trail's head, kept elsewhere
        from engine.audit import checkpoint as ckpt
        path, _ = ckpt.create(store)
        result.checkpoint = str(path)
    return result


def _location(store: Any) -> str | None:
    """Where a worker opens the run's store to read the baseline (a PostgreSQL URL unredacted: it
    stays in memory, never in a record)."""
    loc = getattr(getattr(store, "_db", None), "url", None) or getattr(store, "path", None)
    return str(loc) if loc is not None else None


def _stream(items: Iterator[WorkItem], total: int, init: tuple, workers: int) -> Iterator[tuple]:
    """Results in item order; a pool of `workers` processes, or in-process for workers <= 1.

    The pool's feeder blocks on the task pipe, so only a few chunks of a table are read ahead."""
    if workers <= 1 or total < 2:
        _init_worker(*init)
        for i, item in enumerate(items):
            yield adjudicate_item(item, i)
        return
    ctx = mp.get_context("fork" if sys.platform != "win32" else "spawn")
    with ctx.Pool(workers, initializer=_init_pool_worker, initargs=init) as pool:
        yield from pool.imap(_adjudicate_indexed, enumerate(items), chunksize=_chunksize(total, workers))


def _chunksize(total: int, workers: int) -> int:
    """Items per task: 1 for small runs (balance), up to 16 for bulk (fewer pipe round trips;
    a subject costs milliseconds, so 16 keeps the tail short)."""
    return max(1, min(16, total // (workers * 8)))


class _Bar:
    def __init__(self, total: int) -> None:
        from rich.progress import Progress
        self._p = Progress(transient=True)
        self._t = self._p.add_task("adjudicating", total=total)
        self._p.start()

    def advance(self) -> None:
        self._p.advance(self._t)

    def stop(self) -> None:
        self._p.stop()


def _progress(total: int, progress: bool | None) -> _Bar | None:
    if progress is None:
        progress = sys.stderr.isatty() and not os.environ.get("CI")
    return _Bar(total) if progress else None


__all__ = ["CohortResult", "run_cohort", "scan_items", "adjudicate_item", "adjudicate_file", "latest_run", "unfinished_run",
           "subject_paths", "work_items", "count_items", "WorkItem"]
