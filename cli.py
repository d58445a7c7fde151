"""The `adjudicator` command line: parses, calls engine/, prints. No logic here.

Exit codes: 0 success (whatever the verdict), 1 internal error (or `rules test` with a failing
test), 2 bad input or bad rule pack, 3 audit trail failed verification.
"""
from __future__ import annotations

import getpass
import json
import os
import sys
from typing import Any

# No pydantic plugin observes or alters validation here, and looking for them scans every installed
# package's metadata on the first model built (~30 ms of every command): none are loaded.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
# pydantic's plugin loader imports importlib.metadata even then (~5 % of a cold `screen`): skipped
from engine.pydantic_plugins import skip_plugin_loader  # noqa: E402

skip_plugin_loader()

import click  # noqa: E402

from engine.errors import AuditIntegrityError, EvaluationError, InputError  # noqa: E402


class AdjudicatorGroup(click.Group):
    """Maps engine errors to exit codes and one-line messages (no traceback for bad input)."""

    def invoke(self, ctx: click.Context) -> Any:
        from engine.safetext import printable
        try:
            return super().invoke(ctx)
        except InputError as exc:
            click.echo(f"error: {printable(exc)}", err=True)
            sys.exit(2)
        except AuditIntegrityError as exc:
            click.echo(f"audit verification failed: {printable(exc)}", err=True)
            sys.exit(3)
        except EvaluationError as exc:  # a pack that loaded but misbehaved on data (e.g. overlap)
            click.echo(f"internal error (rule pack defect): {printable(exc)}", err=True)
            sys.exit(1)
        except OSError as exc:  # disk full, permission denied, a vanished file: no traceback
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            click.echo(f"error: {printable(exc.strerror or exc)}{printable(where)}", err=True)
            sys.exit(2)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
            raise
        except Exception as exc:  # a bug: one line, no traceback (ADJUDICATOR_DEBUG=1 shows it)
            import os
            if os.environ.get("ADJUDICATOR_DEBUG"):
                raise
            click.echo(f"internal error (a bug, please report it with the command that caused it): "
                       f"{type(exc).__name__}: {printable(exc)}", err=True)
            sys.exit(1)


def emit_json(obj: Any) -> None:
    """Print one JSON document (the `--json` output of every command)."""
    click.echo(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


@click.group(cls=AdjudicatorGroup)
@click.option("--db", envvar="ADJUDICATOR_DB",
              help="Audit store: a SQLite file, or a postgresql://user@host/db URL. "
                   "Default: ./adjudicator-audit.sqlite, or $ADJUDICATOR_DB.")
@click.option("--actor", default=None, help="Who is acting (recorded in the audit trail). Default: the OS user.")
@click.option("--rules-dir", envvar="ADJUDICATOR_RULES", type=click.Path(file_okay=False),
              help="Folder of rule packs. Default: the repository's rules/, or $ADJUDICATOR_RULES.")
@click.option("--trial", envvar="ADJUDICATOR_TRIAL", default=None,
              help="The trial (rules/_trials/NAME/protocol.yaml). Default: $ADJUDICATOR_TRIAL, the `default:` of "
                   "rules/_trials/config.yaml, or the only trial.")
@click.pass_context
def main(ctx: click.Context, db: str | None, actor: str | None, rules_dir: str | None, trial: str | None) -> None:
    """Rule-based eligibility, response and safety adjudication for clinical trials."""
    ctx.ensure_object(dict)
    ctx.obj["db"] = db
    ctx.obj["actor"] = actor or getpass.getuser()
    from engine.safetext import printable
    if printable(ctx.obj["actor"]) != ctx.obj["actor"] or not ctx.obj["actor"].strip():
        raise click.BadParameter("control characters (or nothing) in the actor's name", param_hint="--actor")
    ctx.obj["rules_dir"] = rules_dir
    ctx.obj["trial"] = trial


# --- commands are registered below, one small section per command group -------------------


def registry(ctx: click.Context):  # noqa: ANN201 - engine type
    """The rules folder's packs with the trial in force (--trial) and its protocol, loaded once."""
    if "registry" not in ctx.obj:
        from engine.rules.load import load_registry
        reg = load_registry(ctx.obj.get("rules_dir"))   # the protocol: chosen now, or the default on first use
        ctx.obj["registry"] = reg.for_trial(ctx.obj["trial"]) if ctx.obj.get("trial") else reg
    return ctx.obj["registry"]


# --- rules ------------------------------------------------------------------------------------

@main.group()
def rules() -> None:
    """Write, validate, test and explain rule packs."""


@rules.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def rules_list(ctx: click.Context, as_json: bool) -> None:
    """Every pack: id, version, effective date, sha256, rule count, dependencies."""
    reg = registry(ctx)
    rows = [dict(p.identity(), effective=str(p.manifest.effective), title=p.manifest.title,
                 rules=len(p.manifest.rules), decisions=len(p.manifest.decisions), tests=len(p.tests),
                 depends_on=[d.pack for d in p.manifest.depends_on]) for p in reg.packs.values()]
    if as_json:
        return emit_json(rows)
    from engine.report.tables import print_table
    print_table(["pack", "version", "effective", "rules", "tests", "depends on", "sha256"],
                [[r["id"], r["version"], r["effective"], r["rules"], r["tests"], ", ".join(r["depends_on"]),
                  r["sha256"][:12]] for r in rows], title=f"Rule packs in {reg.root}")


@rules.command("validate")
@click.argument("packs", nargs=-1, type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def rules_validate(ctx: click.Context, packs: tuple[str, ...], as_json: bool) -> None:
    """Load and check packs (all of the rules folder by default); exit 2 naming file, line and key."""
    from engine.rules.load import load_pack
    loaded = [load_pack(p) for p in packs] if packs else list(registry(ctx).packs.values())
    for p in loaded:
        from engine.evaluate.durable_adapter import compile_plan
        from engine.evaluate.run import resolve_params
        compile_plan(p.plan, p.identity(), resolve_params(p), str(p.path))
        p.tests  # noqa: B018 - reads and checks tests.yaml (only rules commands read it)
    trials = []
    if not packs:   # every trial's protocol, every pack it names (engine/rules/protocol.py)
        from engine.rules.protocol import known_trials, load_protocol
        reg = registry(ctx)
        trials = [load_protocol(reg.root, t, set(reg.packs), strict=True, packs=reg.packs) for t in known_trials(reg.root)]
    if as_json:
        return emit_json({"valid": [p.identity() for p in loaded], "trials": [t.id for t in trials]})
    for p in loaded:
        click.echo(f"ok  {p.id} {p.version}  ({len(p.manifest.rules)} rules, sha256 {p.sha256[:12]})")
    for t in trials:
        click.echo(f"ok  trial {t.id} ({t.registry}): {len(t.pack_ids())} pack roles")


@rules.command("test")
@click.argument("pack_ids", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def rules_test(ctx: click.Context, pack_ids: tuple[str, ...], as_json: bool) -> None:
    """Run the embedded tests of every pack through durable-rules and the reference evaluator."""
    from engine.rules.testing import run_pack_tests
    reg = registry(ctx)
    reports = [run_pack_tests(reg.get(pid)) for pid in (pack_ids or reg.packs)]
    if as_json:
        emit_json([r.to_dict() for r in reports])
    else:
        from engine.report.tables import print_rule_tests
        print_rule_tests(reports)
    if any(not r.ok for r in reports):
        sys.exit(1)


@rules.command("schema")
def rules_schema() -> None:
    """The JSON Schema of pack.yaml, generated from the models (for editors)."""
    from engine.rules.model import Manifest
    emit_json(Manifest.model_json_schema())


@rules.command("explain")
@click.argument("pack_id")
@click.argument("rule_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def rules_explain(ctx: click.Context, pack_id: str, rule_id: str, as_json: bool) -> None:
    """A rule, a decision table (DECISION) or one row (DECISION#ROW), its source and condition in plain
    words; or a collection, a course transition, or `course` (the whole course section)."""
    from engine.rules.explain import explain_rule
    info = explain_rule(registry(ctx).get(pack_id), rule_id)
    if as_json:
        return emit_json(info)
    if "lines" in info:
        return click.echo("\n".join(info["lines"]))
    from engine.report.explain import explain_lines
    click.echo("\n".join(explain_lines(info)))


# --- schema: JSON Schemas of the input files ---------------------------------------------
@main.group()
def schema() -> None:
    """Print the JSON Schema of an input file type."""


@schema.command("subject")
def schema_subject() -> None:
    """JSON Schema of a subject record file (YAML or JSON); fields in docs/subject-record.md."""
    from engine.record import subject_json_schema

    emit_json(subject_json_schema())


# --- audit: read, export, verify and override the audit trail -------------------------------
@main.group()
def audit() -> None:
    """Read, export, verify the audit trail; record a committee override."""


def _audit_store(ctx: click.Context, *, create: bool = False, read_only: bool = False) -> Any:
    from engine.audit import AuditStore

    return AuditStore.open(ctx.obj["db"], create=create, read_only=read_only)


@audit.command("show")
@click.option("--subject", help="Only this subject.")
@click.option("--use-case", help="Only this use case (screen, marrow, ae, ...).")
@click.option("--run", "run_id", help="Only this run id.")
@click.option("--decision", "decision_id", help="Only this decision (an id or a unique prefix of 6+ characters).")
@click.option("--limit", type=click.IntRange(min=1), help="Only the newest N matching records.")
@click.option("--json", "as_json", is_flag=True, help="Print the full records as a JSON list.")
@click.pass_context
def audit_show(ctx: click.Context, subject: str | None, use_case: str | None, run_id: str | None,
               decision_id: str | None, limit: int | None, as_json: bool) -> None:
    """Show audit records, oldest first, with who decided, their role and reason, and what is in force."""
    from engine.adjudicate.committee import Overrides, resolve_id

    with _audit_store(ctx, read_only=True) as store:
        if decision_id:
            records = [store.get(resolve_id(store, decision_id))]
        else:
            records = list(store.iter(subject_id=subject, use_case=use_case, run_id=run_id, last=limit))
        overrides = Overrides(store)
        superseded = {r.supersedes: r for r in records if r.supersedes}
        extra = [store.get(i) for i in superseded if i and all(r.decision_id != i for r in records)]
    if as_json:
        emit_json([r.model_dump() for r in records])
        return
    by_id = {r.decision_id: r for r in records + [e for e in extra if e]}
    if decision_id:
        from engine.report.audit import record_lines
        from engine.safetext import printable
        click.echo("\n".join(printable(line) for line in record_lines(records[0], overrides, by_id)))
        return
    from engine.report.audit import print_records
    print_records(records, overrides, by_id)


@audit.command("verify")
@click.option("--checkpoint", "checkpoints", multiple=True, type=click.Path(dir_okay=False),
              help="A checkpoint file the trail must extend (repeatable).")
@click.option("--keyring", type=click.Path(dir_okay=False),
              help="Public keys that count (default: $ADJUDICATOR_KEYRING or ~/.config/adjudicator/keyring.yaml).")
@click.option("--json", "as_json", is_flag=True, help="Print the verification report as JSON.")
@click.pass_context
def audit_verify(ctx: click.Context, checkpoints: tuple[str, ...], keyring: str | None, as_json: bool) -> None:
    """Recompute the hash chain (read-only), check override signatures and checkpoints; exit 3
    naming the first edited, deleted, reordered or unsigned record, or the broken checkpoint."""
    from engine.audit import checkpoint as ckpt
    from engine.audit.keys import load_keyring

    docs = [ckpt.load(c) for c in checkpoints]
    ring = load_keyring(keyring)
    with _audit_store(ctx, read_only=True) as store:
        report = store.verify(docs, ring)
        from engine.audit.batches import verify_batches
        batch_problems = verify_batches(store) if report.ok else []  # the files batch records cite
        from engine.audit import partitions
        parts = partitions.verify(store) if report.ok else None  # each partition's chain, in parallel; the roots
    if as_json:
        emit_json(report.model_dump() | {"batch_files": batch_problems, "partitions": parts})
    if not report.ok:
        raise AuditIntegrityError(report.message())
    if batch_problems or (parts and parts["problems"]):
        raise AuditIntegrityError("; ".join(batch_problems + (parts["problems"] if parts else [])))
    if not as_json:
        click.echo(report.message() + (f"; {parts['partitions']} partition(s) of {parts['runs']} partitioned run(s): "
                                       f"{parts['records']} records verified, Merkle roots match"
                                       if parts and parts["runs"] else "")
                   + (f"; {parts['unfinished']} partition file(s) of unfinished runs: chains verified, not yet "
                      "rooted" if parts and parts["unfinished"] else ""))


@audit.command("explain")
@click.argument("decision_id")
@click.option("--evaluator", type=click.Choice(["durable", "reference"]), default="durable", show_default=True,
              help="Which evaluator recomputes the rules (durable-rules is the engine of record).")
@click.option("--json", "as_json", is_flag=True, help="Print the explanation as JSON.")
@click.pass_context
def audit_explain(ctx: click.Context, decision_id: str, evaluator: str, as_json: bool) -> None:
    """Every rule's outcome in DECISION (an id or a unique prefix) and the values it read,
    recomputed from the record's facts with the pinned pack; exit 3 when the recomputation
    disagrees with the record."""
    from engine.adjudicate.committee import resolve_id
    from engine.audit.explain import explain, explain_lines
    from engine.safetext import printable

    ev = None
    if evaluator == "reference":
        from engine.evaluate.reference import ReferenceEvaluator
        ev = ReferenceEvaluator()
    with _audit_store(ctx, read_only=True) as store:
        record = store.get(resolve_id(store, decision_id))
        e = explain(record, registry(ctx), store=store, evaluator=ev)
    if as_json:
        emit_json(e.to_dict())
    else:
        click.echo("\n".join(printable(line) for line in explain_lines(e)))
    if e.disagreements:
        raise AuditIntegrityError(f"decision {e.decision_id}: the recomputation disagrees with the record "
                                  f"({len(e.disagreements)} rule outcome(s))")


@audit.command("checkpoint")
@click.option("--key", type=click.Path(dir_okay=False),
              help="Checkpoint signing key (default: $ADJUDICATOR_CHECKPOINT_KEY or "
                   "~/.config/adjudicator/keys/checkpoint.key; created 0600 on first use).")
@click.option("--output", type=click.Path(dir_okay=False),
              help="Checkpoint file (default: ~/.config/adjudicator/checkpoints/<store id>/...; keep it elsewhere).")
@click.option("--keyring", type=click.Path(dir_okay=False), help="Keyring to register a new key in.")
@click.option("--json", "as_json", is_flag=True, help="Print the checkpoint as JSON.")
@click.pass_context
def audit_checkpoint(ctx: click.Context, key: str | None, output: str | None, keyring: str | None,
                     as_json: bool) -> None:
    """Verify the trail, then sign its head (seq, hash, time) into a checkpoint file to keep elsewhere."""
    from engine.audit import checkpoint as ckpt
    from engine.audit.keys import load_keyring
    from engine.outputs import check_output_file

    check_output_file(output, "--output")
    with _audit_store(ctx) as store:
        store.verify_or_raise(keyring=load_keyring(keyring))  # never sign a broken trail
        path, doc = ckpt.create(store, key=key, output=output, keyring=keyring)
    if as_json:
        return emit_json(dict(doc, file=str(path)))
    click.echo(f"checkpoint of {doc['store']} at seq {doc['seq']} ({doc['record_hash'][:16]}...) -> {path}")


@audit.command("backup")
@click.argument("target", type=click.Path(dir_okay=False))
@click.pass_context
def audit_backup(ctx: click.Context, target: str) -> None:
    """A consistent copy of the trail (WAL included, even while a run writes) into a new SQLite
    file TARGET (0600), then verified."""
    from engine.audit import AuditStore

    with _audit_store(ctx) as store:
        n = store.backup(target)
    with AuditStore.open(target, create=False, read_only=True) as copy:
        report = copy.verify()
    if not report.ok:
        raise AuditIntegrityError(f"the backup {target} does not verify: {report.message()}")
    click.echo(f"{n} records copied to {target}; {report.message()}")


@audit.command("export")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option("--output", type=click.Path(dir_okay=False), help="Write here (atomically) instead of stdout.")
@click.pass_context
def audit_export(ctx: click.Context, fmt: str, output: str | None) -> None:
    """Export every field of every record, in seq order (CSV: formula-like cells get a leading ')."""
    from engine.audit import export, export_to_path
    from engine.outputs import check_output_file

    check_output_file(output, "--output")
    with _audit_store(ctx, read_only=True) as store:
        if output:
            n = export_to_path(store, output, fmt)
            click.echo(f"{n} records written to {output}", err=True)
        else:
            export(store, sys.stdout, fmt)


@audit.command("override")
@click.argument("decision_id")
@click.option("--outcome", "outcome_text", required=True,
              help='The committee\'s decision: a JSON object of pack outputs, e.g. \'{"category": "NR"}\'.')
@click.option("--reviewer", required=True, help="Who on the committee decided.")
@click.option("--role", required=True, help="The reviewer's committee role (e.g. chair, hematologist, statistician).")
@click.option("--reason", required=True, help="Why the decision is overridden.")
@click.option("--supersede", is_flag=True, help="Replace the committee decision already in force for this item.")
@click.option("--key", type=click.Path(dir_okay=False),
              help="The reviewer's Ed25519 signing key (default: ~/.config/adjudicator/keys/<reviewer>.key).")
@click.option("--json", "as_json", is_flag=True, help="Print the new record as JSON.")
@click.pass_context
def audit_override(ctx: click.Context, decision_id: str, outcome_text: str, reviewer: str, role: str, reason: str,
                   supersede: bool, key: str | None, as_json: bool) -> None:
    """Record the committee's decision on DECISION_ID (an id or a unique prefix): a new record that
    supersedes the decision in force (which stays). Checked against the outputs the decision's packs
    can produce; refused if a committee decision is already in force, unless --supersede. Signed with
    the reviewer's key (`adjudicator keys new NAME --role reviewer`); verify checks it against the keyring."""
    from engine.adjudicate.committee import record_override
    outcome = parse_json_option(outcome_text, "--outcome")
    if not isinstance(outcome, dict):
        raise InputError("not a JSON object", field="--outcome", expected='a JSON object, e.g. {"category": "NR"}')
    reg = registry(ctx)
    with _audit_store(ctx) as store:
        record, notes = record_override(store, decision_id, outcome, reviewer=reviewer, role=role, reason=reason,
                                        actor=ctx.obj["actor"], registry=reg, supersede=supersede,
                                        key_path=key)
    if as_json:
        emit_json(record.model_dump())
    else:
        click.echo(f"decision {record.decision_id} (seq {record.seq}) supersedes {record.supersedes}: now in force, "
                   f"signed by {reviewer}")
        for n in notes:
            click.echo(f"  {n}")


def parse_json_option(text: str, option: str) -> Any:
    """A JSON option value; NaN and Infinity (which Python's json accepts) are refused."""
    def refuse(name: str) -> Any:
        raise InputError(f"{name} is not a JSON number", field=option, expected="finite numbers")
    try:
        return json.loads(text, parse_constant=refuse)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise InputError(f"not valid JSON ({getattr(exc, 'msg', 'nested too deeply')})", field=option,
                         expected="a JSON object") from None


# --- keys: signing keys of reviewers and checkpoints ------------------------------------------
@main.group()
def keys() -> None:
    """Ed25519 signing keys (reviewers, checkpoints) and the keyring of keys that count."""


@keys.command("new")
@click.argument("name")
@click.option("--role", type=click.Choice(["reviewer", "checkpoint"]), required=True)
@click.option("--key", "key_file", type=click.Path(dir_okay=False),
              help="Where to write the private key (default: ~/.config/adjudicator/keys/<name>.key), 0600.")
@click.option("--keyring", type=click.Path(dir_okay=False), help="Keyring to register the public key in.")
def keys_new(name: str, role: str, key_file: str | None, keyring: str | None) -> None:
    """Create a key for NAME and register its public key in the keyring."""
    from engine.audit.keys import new_key

    path, signer, ring = new_key(name, role, key_file, keyring)
    click.echo(f"{role} key for {name}: {path} (0600), {signer.fingerprint}; registered in {ring}")


@keys.command("list")
@click.option("--keyring", type=click.Path(dir_okay=False))
def keys_list(keyring: str | None) -> None:
    """The keys the keyring registers."""
    from engine.audit.keys import load_keyring
    from engine.safetext import printable

    ring = load_keyring(keyring)
    click.echo(f"keyring {ring.path}: {len(ring.entries)} key(s)")
    for e in ring.entries:
        click.echo(f"  {e.role:<10} {printable(e.name):<24} {e.fingerprint}  added {e.added}")


# --- marrow: adjudicate marrow results under the response profiles -----------------------------
@main.command("marrow")
@click.argument("subject_file", type=click.Path(dir_okay=False))
@click.option("--assessment", "assessment_id", help="Only this assessment id (or 'death'); default: all, plus the course.")
@click.option("--profile", default="all", show_default=True,
              help="Response profile: one of the trial's (its protocol's packs.response.profiles), or all.")
@click.option("--param", "params", multiple=True, metavar="PACK.NAME=VALUE",
              help="Override a pack parameter (PACK = a response profile or its pack id), e.g. trial.mrd_threshold_pct=0.1.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def marrow_cmd(ctx: click.Context, subject_file: str, assessment_id: str | None, profile: str,
               params: tuple[str, ...], as_json: bool) -> None:
    """Adjudicate a subject's marrow assessments (ELN 2017, ELN 2022, the trial); every decision is audited."""
    from engine.adjudicate.marrow import run_marrow
    from engine.report.marrow import print_marrow
    from engine.rules.explain import titles_of
    reg = registry(ctx)
    doc = run_marrow(subject_file, reg, profile, assessment_id, params, ctx.obj["db"], ctx.obj["actor"])
    if as_json:
        emit_json(doc)
    else:
        print_marrow(doc, titles_of(reg))


# --- cohort -----------------------------------------------------------------------------------


class _CohortGroup(click.Group):
    """`adjudicator cohort PATH ...` runs; `cohort diff|summary ...` are subcommands."""

    def resolve_command(self, ctx: click.Context, args: list[str]):  # noqa: ANN201 - click type
        if args and args[0] not in self.commands:
            return "run", self.commands["run"], args
        return super().resolve_command(ctx, args)


@main.group(cls=_CohortGroup, context_settings={"ignore_unknown_options": True})
def cohort() -> None:
    """Re-adjudicate a cohort (PATH: folders of subject files, files, or .jsonl subject tables), or
    `diff` / `summary` of runs."""


@cohort.command("run")
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@click.option("--profiles", default=None,
              help="Response profiles, comma-separated (default: every profile of the trial's protocol).")
@click.option("--param", "params", multiple=True, help="PACK.NAME=VALUE (repeatable).")
@click.option("--reason", default=None, help="Why the cohort is re-adjudicated (recorded).")
@click.option("--resume", default=None, help="Continue run RUN_ID (or 'latest' unfinished run).")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option("--baseline", default=None, help="Diff against this run (default: each decision's latest earlier adjudication).")
@click.option("--csv-dir", type=click.Path(file_okay=False), help="Also write the summary as CSV files here.")
@click.option("--evaluator", type=click.Choice(["compiled", "durable"]), default="compiled", show_default=True,
              help="compiled: generated from the packs, checked by durable-rules in the same run (every "
                   "--check-every-th subject and every subject whose decisions changed against the baseline; "
                   "a disagreement fails the run); durable: every subject through durable-rules.")
@click.option("--check-every", default=50, show_default=True, type=click.IntRange(1, None),
              help="With --evaluator compiled: durable-rules adjudicates every Nth subject again.")
@click.option("--partitions", default=0, type=click.IntRange(0, 256), metavar="N",
              help="Split the run into N partitions by sha256 of the subject id, each with its own hash chain "
                   "beside the trail, rooted (Merkle) in the run record (docs/performance.md).")
@click.option("--dask", default=None, metavar="local[:N]|tcp://HOST:PORT",
              help="Run the partitions on a Dask cluster: a local one of N worker processes, or a running "
                   "scheduler (workers must see the inputs and the store's folder). Default partitions: N.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def cohort_run(ctx: click.Context, paths: tuple[str, ...], profiles: str | None, params: tuple[str, ...],
               reason: str | None, resume: str | None, workers: int, baseline: str | None, csv_dir: str | None,
               evaluator: str, check_every: int, partitions: int, dask: str | None, as_json: bool) -> None:
    """Screen, adjudicate every marrow and grade safety for every subject; summary + diff."""
    from engine.adjudicate.cohort import latest_run, run_cohort
    from engine.adjudicate.committee import Overrides
    from engine.adjudicate.common import parse_params
    from engine.audit.store import AuditStore
    from engine.report import diff, summary
    from engine.report.runs import resolve_run, run_info
    from engine.rules.explain import titles_of

    if not paths and not resume:
        raise InputError("no PATH given", expected="a folder of subject files, or --resume RUN_ID")
    from engine.outputs import check_output_dir
    check_output_dir(csv_dir, "--csv-dir")  # before anything is adjudicated or written
    with AuditStore.open(ctx.obj["db"]) as store:
        base = resolve_run(store, baseline) if baseline else None
        previous = base or latest_run(store)
        res = run_cohort(list(paths), store, trial=registry(ctx).trial().id if not resume else None,
                         profiles=tuple(p.strip() for p in profiles.split(",") if p.strip()) if profiles else None,
                         params=parse_params(params), actor=ctx.obj["actor"], reason=reason, resume=resume,
                         workers=workers, rules_dir=ctx.obj.get("rules_dir"),
                         on_error=lambda p, m: click.echo(f"error: {m}", err=True),
                         evaluator=evaluator, check_every=check_every, baseline=base,
                         partitions=partitions, dask=dask)
        overrides = Overrides(store)
        doc = summary.summarize(store, res.run_id, overrides=overrides)
        changes = list(diff.iter_changes(store, res.run_id, base, overrides=overrides,
                                         titles=titles_of(registry(ctx)))) if previous else []
        header = diff.header_lines(run_info(store, base) if base else None, run_info(store, res.run_id))
        if csv_dir:
            summary.write_csv(doc, csv_dir)
        run = {"run_id": res.run_id, "subjects": res.subjects, "skipped": res.skipped,
               "decisions": res.decisions, "failed": [{"path": p, "error": m} for p, m in res.failed],
               "previous_run": previous, "baseline": base,
                "checkpoint": res.checkpoint, "evaluator": res.evaluator, "check": res.check,
               "partitions": res.partitions}
        if as_json:
            emit_json({"run": run, "summary": doc, "diff": changes})
        else:
            click.echo(f"run {res.run_id}: {res.subjects} subjects, {res.decisions} decisions"
                       + (f", {res.skipped} already done" if res.skipped else "")
                       + (f", {len(res.failed)} FAILED" if res.failed else ""))
            if res.check is not None:
                c = res.check
                click.echo(f"evaluator: compiled, checked by durable-rules on {c['checked']} subject(s) "
                           f"(every {c['every']}th: {c['sampled']}; changed against the baseline: {c['changed']}): "
                           + (f"{len(c['disagreements'])} DISAGREE (the run failed)" if c["disagreements"]
                              else "they agree"))
            if res.partitions:
                p = res.partitions
                click.echo(f"partitions: {p['count']} hash chains ({p['leaves'][0]['file'].rsplit('/', 1)[0]}/), "
                           f"Merkle root {p['merkle_root']}")
            summary.render(doc)
            if previous:
                click.echo(f"diff vs {'baseline run ' + base if base else 'earlier adjudications (previous run ' + previous + ')'}:")
                diff.render(changes, header=header)
        if res.checkpoint and not as_json:
            click.echo(f"checkpoint: {res.checkpoint} (keep a copy elsewhere; check with "
                       f"`adjudicator audit verify --checkpoint FILE`)", err=True)
    sys.exit(res.exit_code)


@cohort.command("runs")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def cohort_runs(ctx: click.Context, as_json: bool) -> None:
    """Every cohort run: id, time, actor, reason, profiles, parameters, packs, subjects, status."""
    from engine.audit.store import AuditStore
    from engine.report.runs import list_runs, render_runs

    with AuditStore.open(ctx.obj["db"], create=False) as store:
        runs = list_runs(store)
    emit_json(runs) if as_json else render_runs(runs)


@cohort.command("diff")
@click.argument("runs", nargs=-1)
@click.option("--baseline", default=None, help="The run to compare with (id, unique prefix/suffix).")
@click.option("--csv", "csv_file", type=click.Path(dir_okay=False), help="Write the diff as CSV here ('-' for stdout).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def cohort_diff(ctx: click.Context, runs: tuple[str, ...], baseline: str | None, csv_file: str | None,
                as_json: bool) -> None:
    """Decisions of a run that differ from a baseline run, the rules that changed, and where the
    machine now disagrees with the committee. `cohort diff --baseline A [B]` or `cohort diff A B`
    (B defaults to the latest completed run)."""
    from engine.adjudicate.committee import Overrides
    from engine.audit.store import AuditStore
    from engine.report import diff
    from engine.report.runs import resolve_run, run_info
    from engine.rules.explain import titles_of

    if len(runs) > 2 or (baseline and len(runs) > 1):
        raise InputError("too many runs", field="RUNS", expected="--baseline A [B], or A B")
    a_ref, b_ref = (baseline, runs[0] if runs else None) if baseline else (
        (runs[0], runs[1]) if len(runs) == 2 else (None, runs[0] if runs else None))
    if csv_file and csv_file != "-":
        from pathlib import Path
        if not Path(csv_file).resolve().parent.is_dir():
            raise InputError("folder does not exist", file=csv_file, expected="an existing folder")
    with AuditStore.open(ctx.obj["db"], create=False) as store:
        run_b = resolve_run(store, b_ref)
        run_a = resolve_run(store, a_ref) if a_ref else None
        if run_a == run_b:
            raise InputError(f"the baseline and the run are the same run {run_b}", field="--baseline")
        changes = list(diff.iter_changes(store, run_b, run_a, overrides=Overrides(store),
                                         titles=titles_of(registry(ctx))))
        header = diff.header_lines(run_info(store, run_a) if run_a else None, run_info(store, run_b))
    if csv_file:
        if csv_file == "-":
            diff.write_csv(changes, sys.stdout)
        else:
            with open(csv_file, "w", newline="", encoding="utf-8") as fh:
                diff.write_csv(changes, fh)
            click.echo(f"{len(changes)} rows written to {csv_file}", err=True)
        if not as_json:
            return
    emit_json({"baseline": run_a, "run": run_b, "header": header, "changes": changes}) if as_json \
        else diff.render(changes, header=header)


@cohort.command("summary")
@click.argument("run_id", required=False)
@click.option("--csv-dir", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def cohort_summary(ctx: click.Context, run_id: str | None, csv_dir: str | None, as_json: bool) -> None:
    """Summary tables of RUN_ID (default: the latest completed run), with the committee's decisions in force."""
    from engine.audit.store import AuditStore
    from engine.outputs import check_output_dir
    from engine.report import summary
    from engine.report.runs import resolve_run

    check_output_dir(csv_dir, "--csv-dir")
    with AuditStore.open(ctx.obj["db"], create=False) as store:
        doc = summary.summarize(store, resolve_run(store, run_id))
    if csv_dir:
        summary.write_csv(doc, csv_dir)
    emit_json(doc) if as_json else summary.render(doc)


# --- report: the committee's HTML report of a run ---------------------------------------------
@main.command("report")
@click.argument("run_id", required=False)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="The HTML file to write.")
@click.option("--packets/--no-packets", default=True, show_default=True, help="Include one packet per subject.")
@click.pass_context
def report_cmd(ctx: click.Context, run_id: str | None, output: str, packets: bool) -> None:
    """The committee report of RUN_ID (default: the latest completed run): one self-contained HTML file."""
    from engine.audit.store import AuditStore
    from engine.report.html import write_report
    from engine.report.runs import resolve_run

    with AuditStore.open(ctx.obj["db"], create=False) as store:
        run = resolve_run(store, run_id)
        size = write_report(store, run, registry(ctx), output, packets=packets)
    click.echo(f"report of run {run} written to {output} ({size // 1024} KiB)")


# --- ae / ctcae: CTCAE grading, attribution, TLS, dosing advisories -----------------------
_CTCAE = click.Choice(["4.03", "5.0"])


@main.command("ae")
@click.argument("subject_file", type=click.Path(dir_okay=False))
@click.option("--ctcae", "version", type=_CTCAE, default=None, help="CTCAE version (default: the trial's).")
@click.option("--worst-case", is_flag=True, help="Qualifier policy worst_case (default: lab_only).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def ae_cmd(ctx: click.Context, subject_file: str, version: str, worst_case: bool, as_json: bool) -> None:
    """Grade every lab and adverse event of SUBJECT_FILE; TLS and dosing advisories."""
    from engine.adjudicate.safety import grade_subject
    from engine.audit.store import AuditStore
    from engine.record import load_subject
    from engine.rules.load import load_registry

    record = load_subject(subject_file)
    reg = registry(ctx)
    from engine.adjudicate.common import check_trial
    check_trial(record, reg, subject_file)
    version = version or reg.trial().grading_version
    params = {"qualifier_policy": "worst_case"} if worst_case else None
    with AuditStore.open(ctx.obj["db"]) as store:
        doc = grade_subject(record, version, registry=reg, store=store, actor=ctx.obj["actor"], params=params)
    if as_json:
        emit_json(doc)
        return
    from engine.report.safety import subject_lines
    click.echo("\n".join(subject_lines(doc, version)))


@main.command("ae-summary")
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@click.option("--run", "run_id", default=None,
              help="Read the graded events and labs of this cohort run from the audit trail (or 'latest'): "
                   "nothing is re-graded or written.")
@click.option("--ctcae", "version", type=_CTCAE, default=None, help="CTCAE version (default: the trial's).")
@click.option("--related-only", is_flag=True, help="Only treatment-related events (committee value when present).")
@click.option("--csv", "csv_file", type=click.Path(dir_okay=False), help="Write the incidence table as CSV.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def ae_summary_cmd(ctx: click.Context, paths: tuple[str, ...], run_id: str | None, version: str, related_only: bool,
                   csv_file: str | None, as_json: bool) -> None:
    """Worst grade per subject and term; any-grade and grade >= 3 incidence (paper's Table 3 layout).
    PATHS: subject files or folders of them (graded and audited now), or --run RUN (read from the trail)."""
    from engine.adjudicate.safety import summarize, summary_csv
    from engine.audit.store import AuditStore

    if bool(paths) == bool(run_id):
        raise InputError("give subject files or folders, or --run RUN (not both)", field="PATHS",
                         expected="PATH... or --run RUN")
    from engine.outputs import check_output_file
    check_output_file(csv_file, "--csv")
    if run_id:
        from engine.report.runs import resolve_run
        from engine.report.trail import iter_subjects
        with AuditStore.open(ctx.obj["db"], create=False) as store:
            run = resolve_run(store, run_id)
            docs = [t.safety_doc() for t in iter_subjects(store, run) if t.enrolled]
    else:
        from engine.adjudicate.cohort import subject_paths
        from engine.adjudicate.safety import grade_subject
        from engine.record import load_subject
        from engine.rules.load import load_registry
        files = [f for p in paths for f in subject_paths(p)]
        records = [load_subject(f) for f in files]  # all read before anything is written
        reg = registry(ctx)
        from engine.adjudicate.common import check_trial
        for f, r in zip(files, records):
            check_trial(r, reg, f)
        with AuditStore.open(ctx.obj["db"]) as store:
            docs = [grade_subject(r, version, registry=reg, store=store, actor=ctx.obj["actor"]) for r in records]
    summary = summarize(docs, related_only=related_only, table=registry(ctx).trial().tables.ae_grade3)
    if csv_file:
        summary_csv(summary, csv_file)
    if as_json:
        emit_json(summary)
        return
    from engine.report.safety import summary_lines
    click.echo("\n".join(summary_lines(summary)))


@main.command("ae-adjudicate")
@click.argument("subject_id")
@click.argument("event_id")
@click.option("--related/--unrelated", required=True, help="The committee's adjudicated attribution.")
@click.option("--reviewer", required=True)
@click.option("--reason", required=True)
@click.pass_context
def ae_adjudicate_cmd(ctx: click.Context, subject_id: str, event_id: str, related: bool, reviewer: str,
                      reason: str) -> None:
    """Record the committee's attribution of EVENT_ID (an override record in the audit store)."""
    from engine.adjudicate.safety import record_adjudication
    from engine.audit.store import AuditStore

    with AuditStore.open(ctx.obj["db"], create=False) as store:
        rec = record_adjudication(store, subject_id, event_id, related, reviewer, reason, ctx.obj["actor"])
    click.echo(f"override {rec.decision_id} supersedes {rec.supersedes}")


@main.group("ctcae")
def ctcae_group() -> None:
    """CTCAE grading of lab listings."""


@ctcae_group.command("grade")
@click.argument("labs_csv", type=click.Path(dir_okay=False))
@click.option("--ctcae", "version", type=_CTCAE, required=True)
@click.option("--worst-case", is_flag=True, help="Qualifier policy worst_case (default: lab_only).")
@click.option("--output", type=click.Path(dir_okay=False), help="Write the graded rows as CSV (or JSON with --json).")
@click.option("--evaluator", type=click.Choice(["columnar", "durable"]), default="columnar", show_default=True,
              help="columnar: the pack compiled to columns, a sample checked by durable-rules, one audit record "
                   "citing a Parquet file of every row; durable: every row through durable-rules, one record each.")
@click.option("--trial", default=None, help="SDTM LB input: the trial whose SDTM mapping applies (default: the CDISC default).")
@click.option("--strict", is_flag=True, help="SDTM LB input: refuse the file on any row problem (default: skip the subject).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def ctcae_grade_cmd(ctx: click.Context, labs_csv: str, version: str, worst_case: bool, output: str | None,
                    evaluator: str, trial: str | None, strict: bool, as_json: bool) -> None:
    """Grade a CSV lab listing (term or lab_test, value, unit, lln, uln, baseline), or an SDTM LB
    dataset (.xpt, Dataset-JSON, or CSV with LBTESTCD; docs/sdtm.md): one row out per row in."""
    from pathlib import Path

    from engine.sdtm.lb import is_sdtm_lb
    if is_sdtm_lb(labs_csv):
        return _grade_sdtm_lb(ctx, labs_csv, version, worst_case, output, trial, strict, evaluator, as_json)

    from engine.audit.store import AuditStore
    from engine.outputs import check_output_file
    from engine.rules.load import load_registry

    check_output_file(output, "--output")
    from engine.adjudicate.lab_listing import grade_listing_batch, read_frame
    from engine.record.listing import read_listing
    # a malformed file fails here, before anything is written
    frame = read_frame(labs_csv) if evaluator == "columnar" else None
    rows = list(read_listing(labs_csv)) if evaluator == "durable" else []
    reg = registry(ctx)
    version = version or reg.trial().grading_version
    params = {"qualifier_policy": "worst_case"} if worst_case else None
    from engine.report.safety import listing_text
    if frame is not None:  # docs/performance.md
        with AuditStore.open(ctx.obj["db"]) as store:
            batch = grade_listing_batch(labs_csv, version, registry=reg, params=params, store=store,
                                        actor=ctx.obj["actor"], frame=frame)
        n, text = batch.frame.height, (listing_text(batch.rows(), True) if as_json else batch.csv_text())
    else:
        from engine.adjudicate.safety import grade_listing
        with AuditStore.open(ctx.obj["db"]) as store, store.batch() as writer:
            graded = list(grade_listing(rows, version, registry=reg, params=params, writer=writer,
                                        actor=ctx.obj["actor"], listing=Path(labs_csv).name))
        n, text = len(graded), listing_text(graded, as_json)
    if output:
        Path(output).write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        click.echo(f"{n} rows graded -> {output}", err=True)
    else:
        click.echo(text.rstrip("\n"))


def _grade_sdtm_lb(ctx: click.Context, path: str, version: str, worst_case: bool, output: str | None,
                   trial: str | None, strict: bool, evaluator: str, as_json: bool) -> None:
    from pathlib import Path

    from engine.audit.store import AuditStore
    from engine.outputs import check_output_file
    from engine.report.safety import listing_text
    from engine.sdtm.grading import grade_lb, read_lb
    from engine.sdtm.mapping import load_mapping

    check_output_file(output, "--output")
    mapping = load_mapping(ctx.obj["rules_dir"], trial)
    reg = registry(ctx)
    params = {"qualifier_policy": "worst_case"} if worst_case else None
    lab = read_lb(path, registry=reg, mapping=mapping, strict=strict)  # a refused file opens no store
    with AuditStore.open(ctx.obj["db"]) as store:
        res = grade_lb(lab, version, registry=reg, mapping=mapping, store=store, actor=ctx.obj["actor"], params=params,
                       evaluator=evaluator)
    text = listing_text(res.rows, False) if not as_json else json.dumps(res.to_dict(), indent=2, default=str) + "\n"
    if output:
        Path(output).write_text(text, encoding="utf-8")
        click.echo(f"{len(res.rows)} rows -> {output}", err=True)
    else:
        click.echo(text.rstrip("\n"))
    if not as_json:
        click.echo("\n".join(res.report_lines()), err=True)


# --- import: subject records from SDTM -------------------------------------------------------------
@main.group("import")
def import_group() -> None:
    """Import subject records from a trial's data exports."""


@import_group.command("sdtm")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--trial", default=None, help="The trial whose SDTM mapping applies (default: the only one with record rules).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="The JSON Lines subject table to write.")
@click.option("--strict", is_flag=True, help="Refuse the import on any problem (default: skip the subjects concerned).")
@click.option("--json", "as_json", is_flag=True, help="Print the problem report as JSON.")
@click.pass_context
def import_sdtm_cmd(ctx: click.Context, folder: str, trial: str | None, output: str, strict: bool, as_json: bool) -> None:
    """Read a folder of SDTM datasets (.xpt, Dataset-JSON, .csv; SUPP-- merged) into subject records
    (one per DM subject) written as a JSON Lines table that `cohort`, `screen` ... read; every value
    keeps its source (domain, USUBJID, --SEQ, variable), which the audit cites (docs/sdtm.md)."""
    from engine.outputs import check_output_file
    from engine.sdtm.mapping import known_trials, load_mapping
    from engine.sdtm.subjects import import_sdtm, write_table

    check_output_file(output, "--output")
    if trial is None:
        trials = known_trials(ctx.obj["rules_dir"])
        if len(trials) != 1:
            raise InputError("which trial's SDTM mapping?", field="--trial", expected=", ".join(trials) or "a trial mapping")
        trial = trials[0]
    res = import_sdtm(folder, load_mapping(ctx.obj["rules_dir"], trial), strict=strict)
    write_table(res.records, output)
    if as_json:
        return emit_json({"subjects": len(res.records), "output": output, "datasets": res.datasets,
                          "problems": res.report.to_dict()})
    click.echo(f"{len(res.records)} subjects from {folder} ({', '.join(f'{k} {v}' for k, v in res.datasets.items())}) "
               f"-> {output}")
    if len(res.report):
        click.echo(f"problems: {res.report.summary()}" + (f"; skipped subjects: {', '.join(res.skipped)}" if res.skipped else ""),
                   err=True)
        for line in res.report.lines()[:50]:
            click.echo(f"  {line}", err=True)
        if len(res.report) > 50:
            click.echo(f"  ... {len(res.report) - 50} more (--json lists them all)", err=True)


# --- export: ADaM datasets of a run ------------------------------------------------------------
@main.group("export")
def export_group() -> None:
    """Export a run's decisions as analysis datasets."""


@export_group.command("adam")
@click.argument("run_id", required=False)
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False), help="The folder to write into.")
@click.option("--format", "fmt", type=click.Choice(["csv", "xpt", "parquet"]), default="csv", show_default=True)
@click.option("--trial", default=None, help="The trial whose export file applies (default: the only one).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def export_adam_cmd(ctx: click.Context, run_id: str | None, out_dir: str, fmt: str, trial: str | None,
                    as_json: bool) -> None:
    """ADSL, ADRS, ADTTE, ADAE and ADLB of RUN_ID (default: the latest completed run) from the verified
    trail, the committee's decisions in force, every row with its audit decision id; metadata.json
    lists the variables, labels and derivations (docs/sdtm.md)."""
    from engine.audit.store import AuditStore
    from engine.export.adam import export_adam
    from engine.export.spec import default_trial, load_spec
    from engine.outputs import check_output_dir
    from engine.report.runs import resolve_run
    from engine.sdtm.mapping import lab_params, load_mapping

    check_output_dir(out_dir, "--output")
    trial = trial or default_trial(ctx.obj["rules_dir"])
    spec = load_spec(ctx.obj["rules_dir"], trial)
    codes = lab_params(load_mapping(ctx.obj["rules_dir"], trial if trial in _mapped(ctx) else None))
    reg = registry(ctx)
    with AuditStore.open(ctx.obj["db"], create=False, read_only=True) as store:
        run = resolve_run(store, run_id)
        res = export_adam(store, run, reg, spec, out_dir, fmt, codes)
    if as_json:
        return emit_json({"run_id": res.run_id, "files": {k: str(v) for k, v in res.files.items()}, "rows": res.rows,
                          "metadata": str(res.metadata)})
    click.echo(f"ADaM datasets of run {res.run_id} ({fmt}) -> {res.folder}")
    for name, path in res.files.items():
        click.echo(f"  {name:<6} {res.rows[name]:>6} rows  {path.name}")
    click.echo(f"  metadata.json (variables, labels, derivations; built from the trail up to seq {res.chain_head['seq']})")


def _mapped(ctx: click.Context) -> list[str]:
    from engine.sdtm.mapping import known_trials
    return known_trials(ctx.obj["rules_dir"])


# --- screen: eligibility of one candidate ------------------------------------------------------
@main.command("screen")
@click.argument("subject_file", type=click.Path(dir_okay=False))
@click.option("--param", "params", multiple=True, metavar="PACK.NAME=VALUE",
              help="Override a parameter of a screening pack (the trial's eligibility, disease status or "
                   "genetic risk pack), e.g. vah-eligibility.crcl_min_ml_min=60.")
@click.option("--json", "as_json", is_flag=True, help="Print the screening as JSON.")
@click.pass_context
def screen_cmd(ctx: click.Context, subject_file: str, params: tuple[str, ...], as_json: bool) -> None:
    """Screen a candidate: ELIGIBLE, INELIGIBLE (failing criteria) or INDETERMINATE (missing facts); audited."""
    from engine.adjudicate.screening import run_screen
    reg = registry(ctx)
    result = run_screen(subject_file, reg, params, ctx.obj["db"], ctx.obj["actor"])
    if as_json:
        emit_json(result.to_dict())
    else:
        from engine.report.screening import print_screening
        from engine.rules.explain import titles_of
        print_screening(result, titles=titles_of(reg))
