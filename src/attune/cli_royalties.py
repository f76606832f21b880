"""`attune output|royalties|ledger ...`: AI outputs, usage ingest, runs, statements, the ledger.

Sub-apps for the main CLI (mounted as `attune output`, `attune royalties`, `attune ledger`);
they share its --db option, --json flag, one-line errors and transaction helper.
"""

from __future__ import annotations

import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import select

import attune.cli as base
from attune.rights import registry
from attune.rights.outputs import (
    AttributionIn,
    OutputImportError,
    OutputIn,
    add_output,
    get_output,
    import_outputs,
    list_outputs,
    output_snapshot,
)

output_app = typer.Typer(
    help="Register AI outputs and their attribution shares.", no_args_is_help=True
)
royalties_app = typer.Typer(
    help="Ingest usage, run and close royalty periods, make statements.", no_args_is_help=True
)
ledger_app = typer.Typer(
    help="Read and export the double-entry royalty ledger.", no_args_is_help=True
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
PeriodOpt = Annotated[str, typer.Option("--period", help="Usage period, YYYY-MM.")]
ACTOR = "cli"


def _share(spec: str, name: str) -> tuple[str, Decimal]:
    ref, sep, amount = spec.rpartition("=")
    if not sep:
        base.fail(f"{name}: {spec!r} must be REF=SHARE (a fraction of 1)")
    try:
        return ref, Decimal(amount)
    except InvalidOperation:
        base.fail(f"{name}: {amount!r} in {spec!r} is not a number")


# --- outputs ---


@output_app.command("add")
def output_add(
    output_id: Annotated[str, typer.Argument(help="Output id (not shaped like an ISRC).")],
    model: Annotated[str, typer.Option(help="The model (version) that made it.")],
    platform: Annotated[str, typer.Option(help="The party running the model (licensee).")],
    recording: Annotated[
        list[str] | None,
        typer.Option(
            help="Attributed recording REF=SHARE (id or ISRC; share a fraction of 1; repeatable)."
        ),
    ] = None,
    work: Annotated[
        list[str] | None, typer.Option(help="Attributed work REF=SHARE (id or ISWC; repeatable).")
    ] = None,
    prompt: Annotated[str | None, typer.Option(help="The prompt it was made from.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register an AI output; attribution shares must sum to exactly 1."""
    with base.session() as s:
        atts = [
            AttributionIn(recording_id=registry.find_recording(s, r).id, share=v)
            for r, v in (_share(x, "--recording") for x in recording or [])
        ]
        atts += [
            AttributionIn(work_id=registry.find_work(s, w).id, share=v)
            for w, v in (_share(x, "--work") for x in work or [])
        ]
        data = OutputIn(
            id=output_id,
            model=model,
            platform_id=base.party_ref(s, platform).id,
            prompt=prompt,
            attributions=tuple(atts),
        )
        snap = output_snapshot(add_output(s, data, ACTOR))
    base.emit(
        snap,
        as_json,
        lambda: f"Registered output {snap['id']} ({len(snap['attributions'])} attributions)",
    )


@output_app.command("import")
def output_import(
    file: Annotated[
        Path, typer.Argument(help="JSON list of outputs.", exists=True, dir_okay=False)
    ],
    as_json: JsonOpt = False,
) -> None:
    """Import outputs from JSON, all or nothing; identical records already present are skipped."""
    try:
        with base.session() as s:
            result = import_outputs(s, file, ACTOR)
    except OutputImportError as exc:
        for problem in exc.problems[1:]:
            base.err.print(problem, highlight=False, markup=False)
        base.fail(str(exc))
    data = {"added": list(result.added), "skipped": list(result.skipped)}
    base.emit(
        data,
        as_json,
        lambda: f"Imported {len(result.added)} outputs ({len(result.skipped)} already present)",
    )


@output_app.command("show")
def output_show(
    output_id: Annotated[str, typer.Argument(help="Output id.")], as_json: JsonOpt = False
) -> None:
    """Show one output and its attributions."""
    with base.session() as s:
        snap = output_snapshot(get_output(s, output_id))
    base.emit(snap, as_json)


@output_app.command("list")
def output_list(
    platform: Annotated[str | None, typer.Option(help="Only this platform's outputs.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 1000,
    as_json: JsonOpt = False,
) -> None:
    """List outputs."""
    with base.session() as s:
        pid = base.party_ref(s, platform).id if platform else None
        rows = [output_snapshot(o) for o in list_outputs(s, pid, limit)]
    base.emit(
        rows,
        as_json,
        lambda: base.table("Outputs", rows, ["id", "model", "platform_id", "attributions"]),
    )


# --- royalties ---


@royalties_app.command("ingest")
def royalties_ingest(
    file: Annotated[
        Path, typer.Argument(help="DSR flat file (TSV) or usage CSV.", exists=True, dir_okay=False)
    ],
    sender: Annotated[
        str | None, typer.Option(help="Sender of a CSV (default: its service).")
    ] = None,
    message_id: Annotated[
        str | None, typer.Option(help="Message id of a CSV (default: its SHA-256).")
    ] = None,
    supersedes: Annotated[
        int | None,
        typer.Option(
            help="Report id this one re-issues (default: the active report with the same key)."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Validate and store a usage report; the same file or MessageId twice changes nothing."""
    from attune.royalties import ingest as usage
    from attune.royalties.run import data_dir

    engine = base.STATE.engine()
    try:
        with base.session() as s:
            res = usage.ingest(
                s,
                data_dir(engine),
                file,
                ACTOR,
                sender=sender,
                message_id=message_id,
                supersedes=supersedes,
            )
    except usage.UsageFileError as exc:
        for problem in exc.problems[1:]:
            base.err.print(problem, highlight=False, markup=False)
        base.fail(str(exc))
    data = {
        "report_id": res.report_id,
        "added": res.added,
        "reason": res.reason,
        "superseded_id": res.superseded_id,
        "lines": res.lines,
        "period": res.period,
    }
    base.emit(
        data,
        as_json,
        lambda: (
            f"Report {res.report_id}: {res.reason}, {res.lines} usage lines for {res.period}"
            + (f"; supersedes report {res.superseded_id}" if res.superseded_id else "")
        ),
    )


@royalties_app.command("run")
def royalties_run(
    period: PeriodOpt,
    into: Annotated[
        str | None,
        typer.Option(help="Book into this open period (for corrections of a closed one)."),
    ] = None,
    threads: Annotated[int | None, typer.Option(help="DuckDB threads.")] = None,
    memory_limit: Annotated[str | None, typer.Option(help="DuckDB memory limit, e.g. 8GB.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Allocate a usage period and post it to the ledger; unchanged inputs post nothing."""
    from attune.royalties import ledger
    from attune.royalties.run import data_dir, run_period

    engine = base.STATE.engine()
    try:
        with base.session() as s:
            res = run_period(
                s,
                data_dir(engine),
                period,
                ACTOR,
                into=into,
                threads=threads,
                memory_limit=memory_limit,
            )
    except ledger.LedgerError as exc:
        base.fail(str(exc))
    data = {
        "period": res.period,
        "booked_period": res.booked_period,
        "run_id": res.post.run_id,
        "posted": res.post.posted,
        "reversed_run_id": res.post.reversed_run_id,
        "transactions": res.post.transactions,
        "postings": res.post.postings,
        "input_hash": res.input_hash,
        "summary": res.summary,
    }
    base.emit(
        data,
        as_json,
        lambda: (
            f"Run {res.post.run_id} for {period}: "
            + (
                f"posted {res.post.transactions} transactions ({res.post.postings} postings)"
                + (
                    f", reversing run {res.post.reversed_run_id}"
                    if res.post.reversed_run_id
                    else ""
                )
                if res.post.posted
                else "inputs unchanged, nothing posted"
            )
        ),
    )


@royalties_app.command("close")
def royalties_close(period: PeriodOpt, as_json: JsonOpt = False) -> None:
    """Close an accounting period: it takes no more postings (corrections go elsewhere)."""
    from attune.royalties import ledger

    try:
        with base.session() as s:
            closed = ledger.close_period(s, period, ACTOR)
    except ledger.LedgerError as exc:
        base.fail(str(exc))
    data = {"period": closed.period, "closed_at": closed.closed_at.isoformat()}
    base.emit(data, as_json, lambda: f"Closed {period}")


@royalties_app.command("terms")
def royalties_terms(
    agreement_id: Annotated[int, typer.Argument(help="Agreement id.")],
    policy: Annotated[
        str | None, typer.Option(help="Catalog policy: pro_rata or user_centric.")
    ] = None,
    ai_publishing_share: Annotated[
        str | None,
        typer.Option(help="Fraction of an attributed recording's AI money paid through its work."),
    ] = None,
    catalog_publishing_share: Annotated[
        str | None,
        typer.Option(help="Fraction of a recording's catalog money paid through its work."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Set how an agreement's royalties are divided."""
    from attune.royalties.run import set_terms, terms_snapshot

    def dec(v: str | None, name: str) -> Decimal | None:
        if v is None:
            return None
        try:
            return Decimal(v)
        except InvalidOperation:
            base.fail(f"{name}: {v!r} is not a number")

    with base.session() as s:
        snap = terms_snapshot(
            set_terms(
                s,
                agreement_id,
                ACTOR,
                catalog_policy=policy,
                ai_publishing_share=dec(ai_publishing_share, "--ai-publishing-share"),
                catalog_publishing_share=dec(
                    catalog_publishing_share, "--catalog-publishing-share"
                ),
            )
        )
    base.emit(snap, as_json)


@royalties_app.command("reports")
def royalties_reports(
    period: Annotated[str | None, typer.Option(help="Only this period.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List ingested usage reports."""
    from attune.royalties import ingest as usage
    from attune.royalties.models import UsageReport

    with base.session() as s:
        stmt = select(UsageReport).order_by(UsageReport.id)
        if period:
            stmt = stmt.where(UsageReport.period == period)
        rows = [usage.report_snapshot(r) for r in s.scalars(stmt)]
    base.emit(
        rows,
        as_json,
        lambda: base.table(
            "Usage reports",
            rows,
            ["id", "period", "format", "sender", "message_id", "lines", "status", "supersedes_id"],
        ),
    )


@royalties_app.command("statement")
def royalties_statement(
    party: Annotated[str, typer.Option(help="The party (id, ISNI, IPI or name).")],
    period: PeriodOpt,
    fmt: Annotated[str, typer.Option("--format", help="csv, html or dsr.")] = "csv",
    output: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
) -> None:
    """A party's statement for a period: every usage line, rate, split and amount."""
    from attune.royalties import statements
    from attune.royalties.run import data_dir

    if fmt not in ("csv", "html", "dsr"):
        base.fail(f"--format: {fmt!r} is not csv, html or dsr")
    engine = base.STATE.engine()
    with base.session() as s:
        st = statements.statement(s, data_dir(engine), base.party_ref(s, party).id, period)
    render = {"csv": statements.to_csv, "html": statements.to_html, "dsr": statements.to_dsr}
    text = render[fmt](st)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        base.err.print(f"Wrote {output}")


# --- ledger ---


@ledger_app.command("balance")
def ledger_balance(
    party: Annotated[str | None, typer.Option(help="Only this party's accounts.")] = None,
    period: Annotated[str | None, typer.Option(help="Only postings booked in this period.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Account balances (positive = debit; a party's payable is negative when it is owed)."""
    from attune.royalties import ledger

    with base.session() as s:
        pid = base.party_ref(s, party).id if party else None
        rows = [
            {
                "account": b.account,
                "currency": b.currency,
                "amount": str(b.amount),
                "party_id": b.party_id,
            }
            for b in ledger.balances(s, pid, period)
        ]
    base.emit(
        rows, as_json, lambda: base.table("Balances", rows, ["account", "currency", "amount"])
    )


@ledger_app.command("export")
def ledger_export(
    fmt: Annotated[str, typer.Option("--format", help="beancount")] = "beancount",
    output: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
) -> None:
    """Export the whole ledger as beancount text, for audit."""
    from attune.royalties import ledger

    if fmt != "beancount":
        base.fail(f"--format: {fmt!r} is not supported (beancount)")
    with base.session() as s:
        if output is None:
            ledger.export_beancount(s, sys.stdout)
        else:
            with output.open("w", encoding="utf-8") as fh:
                n = ledger.export_beancount(s, fh)
            base.err.print(f"Wrote {n} transactions to {output}")
