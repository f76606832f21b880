"""`attune ...`: the command line for the registry, consent engine, audit log, API and demo.

Every command accepts --help, exits non-zero with a one-line error on bad input, and offers
--json where it returns data. The database is chosen by --db URL or ATTUNE_DB (default: an
SQLite file under .attune/).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from attune.rights import registry
from attune.rights.identifiers import IdentifierError
from attune.rights.models import Party
from attune.rights.policy import decide
from attune.rights.records import (
    AgreementIn,
    ArtistIn,
    ConsentIn,
    DelegationIn,
    OwnerIn,
    PartyIn,
    RecordingIn,
    ShareIn,
    WorkIn,
)
from attune.store import audit
from attune.store.db import database_url, is_initialised, make_engine, transaction

out = Console()
err = Console(stderr=True)
T = TypeVar("T")

app = typer.Typer(
    help="Attune: the rights layer for generative music.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
party_app = typer.Typer(help="Register and look up parties (people and organisations).",
                        no_args_is_help=True)
work_app = typer.Typer(help="Register and look up works (compositions).", no_args_is_help=True)
recording_app = typer.Typer(help="Register and look up recordings (masters).", no_args_is_help=True)
agreement_app = typer.Typer(help="Register and look up upfront licence agreements.",
                            no_args_is_help=True)
consent_app = typer.Typer(help="Grant, refuse, revoke and trace consent (append-only).",
                          no_args_is_help=True)
audit_app = typer.Typer(help="Check and read the hash-chained audit log.", no_args_is_help=True)
key_app = typer.Typer(help="Manage API keys (stored hashed).", no_args_is_help=True)
export_app = typer.Typer(help="Export consent as TDM·AI declarations or CAWG assertions.",
                         no_args_is_help=True)
for sub, name in [
    (party_app, "party"), (work_app, "work"), (recording_app, "recording"),
    (agreement_app, "agreement"), (consent_app, "consent"), (audit_app, "audit"),
    (key_app, "key"), (export_app, "export"),
]:
    app.add_typer(sub, name=name)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ACTOR = "cli"


class CliError(Exception):
    """A user-facing failure: printed as one line, exit status 1."""


@dataclass
class State:
    """Options shared by every command."""

    db: str | None = None
    _engine: Engine | None = None

    def engine(self) -> Engine:
        """The engine, migrating a new database on first use."""
        if self._engine is None:
            self._engine = make_engine(self.db)
            if not is_initialised(self._engine):
                from attune.store.migrate import upgrade

                upgrade(self._engine)
        return self._engine


STATE = State()


@app.callback()
def _root(
    db: Annotated[str | None, typer.Option(
        "--db", envvar="ATTUNE_DB",
        help="Database URL (sqlite:///file.db, postgresql://...) or SQLite path.")] = None,
) -> None:
    """Attune: the rights layer for generative music."""
    STATE.db = db
    STATE._engine = None


@contextmanager
def session() -> Iterator[Session]:
    """A transaction on the chosen database."""
    with transaction(STATE.engine()) as s:
        yield s


def fail(message: str) -> NoReturn:
    """Stop with a one-line error."""
    raise CliError(message)


def emit(data: Any, as_json: bool, render: Callable[[], Any] | None = None) -> None:
    """Print JSON data, or a Rich rendering of it."""
    if as_json:
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    elif render is not None:
        out.print(render())
    else:
        out.print_json(data=data, default=str)


def parse_when(value: str | None, name: str) -> datetime | None:
    """Parse an ISO date or date-time; a date means 00:00 UTC that day."""
    if value is None:
        return None
    try:
        if len(value) == 10:
            d = date.fromisoformat(value)
            return datetime(d.year, d.month, d.day, tzinfo=UTC)
        moment = datetime.fromisoformat(value)
    except ValueError:
        fail(f"{name}: {value!r} is not an ISO date (YYYY-MM-DD) or date-time")
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def parse_day(value: str | None, name: str) -> date | None:
    """Parse an ISO date."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        fail(f"{name}: {value!r} is not an ISO date (YYYY-MM-DD)")


def parse_share(spec: str, name: str, default: Decimal | None = None) -> tuple[str, Decimal]:
    """Split 'PARTY=SHARE' (percent); a missing share takes ``default``."""
    ref, sep, amount = spec.rpartition("=")
    if not sep:
        if default is None:
            fail(f"{name}: {spec!r} must be PARTY=PERCENT")
        return spec, default
    try:
        return ref, Decimal(amount)
    except InvalidOperation:
        fail(f"{name}: {amount!r} in {spec!r} is not a number")


def equal_shares(n: int) -> list[Decimal]:
    """Split 100% into n shares of at most six decimals that sum exactly to 100."""
    unit = Decimal("0.000001")
    base = (Decimal(100) / n).quantize(unit, rounding="ROUND_DOWN")
    shares = [base] * n
    leftover = int((Decimal(100) - base * n) / unit)
    for i in range(leftover):
        shares[i] += unit
    return shares


def party_ref(s: Session, ref: str) -> Party:
    """Resolve a party reference or fail with a one-line error."""
    try:
        return registry.find_party(s, ref)
    except LookupError as exc:
        fail(str(exc))


# --- init, serve, demo ---


@app.command()
def init(as_json: JsonOpt = False) -> None:
    """Create or upgrade the database and print a first admin API key (only once)."""
    from attune.api.keys import bootstrap_admin_key
    from attune.store.migrate import upgrade

    engine = STATE.engine()
    upgrade(engine)
    key = bootstrap_admin_key(engine)
    data = {"database": database_url(STATE.db), "admin_key": key}
    emit(data, as_json, lambda: (
        f"Database ready: {data['database']}\n"
        + (f"Admin API key (shown once, keep it safe): {key}" if key else
           "API keys already exist; create more with `attune key create`.")
    ))


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
) -> None:
    """Serve the HTTP API (OpenAPI at /docs) until Ctrl-C."""
    from attune.api.server import run_server

    err.print(f"Serving the Attune API on http://{host}:{port} (docs at /docs); Ctrl-C stops.")
    run_server(STATE.engine(), host, port)


@app.command()
def demo(
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Exit after the summary.")] = False,
    works: Annotated[int, typer.Option(help="How many corpus works to register.")] = 300,
    seed: Annotated[int, typer.Option(help="Seed of the generated world.")] = 7,
    at: Annotated[str | None, typer.Option(help="Decide at this date (default today).")] = None,
    territory: Annotated[str, typer.Option(help="Territory of the summary.")] = "FR",
    port: Annotated[int, typer.Option(help="API port when serving.")] = 8000,
    generate: Annotated[bool, typer.Option(
        help="Also build a training dataset, train the reference generator and make three "
             "outputs.")] = True,
) -> None:
    """Build a demo world, print what each use may draw on and why, generate, then serve it."""
    from rich.progress import Progress

    from attune.api.keys import bootstrap_admin_key
    from attune.demo import build_world, render_summary, summarise

    engine = STATE.engine()
    with session() as s:
        if s.scalar(select(Party.id).limit(1)) is not None:
            fail(f"the database {database_url(STATE.db)} already holds data; "
                 "use --db with a new file for the demo")
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("Building the demo world", total=None)

        def step(done: int, total: int, what: str) -> None:
            progress.update(task, completed=done, total=total, description=what)

        summary = build_world(engine, seed=seed, works=works, progress=step)
    out.print(summary)
    when = parse_when(at, "--at") or datetime.now(UTC)
    out.print(render_summary(summarise(engine, when, territory.upper())))
    if generate:
        _generation_tour(engine, when)
    if no_serve:
        return
    key = bootstrap_admin_key(engine)
    if key:
        out.print(f"Admin API key (shown once): {key}")
    serve(port=port)


def _generation_tour(engine: Engine, when: datetime) -> None:
    """The demo's governed generation: dataset, model, three credited outputs, provenance."""
    from attune.generate.pipeline import work_dir
    from attune.generate.tour import run_tour

    with err.status("Generating") as status:
        tour = run_tour(engine, work_dir(engine), when,
                        progress=lambda what: status.update(what))
    out.print(f"\n[bold]Governed generation[/] — dataset {tour.dataset_id}: {tour.included} "
              f"recordings included, {tour.excluded} excluded (signed); model {tour.model_id}")
    table = Table("output", "prompt", "what", "top credited works (share)", "works")
    for o in tour.outputs:
        credits = "; ".join(f"{title} ({share})" for title, share in o.top_works)
        table.add_row(o.output_id or "refused", o.prompt, o.description or (o.refusal or ""),
                      credits, str(o.works_credited))
    out.print(table)
    if tour.wav is not None:
        out.print(f"{tour.wav}: {tour.credentials}; {tour.watermark}; AI disclosure "
                  f"{tour.wav.with_suffix('.credits.json').name}")
    out.print(f"Prompt gate: {tour.refused_prompt}", highlight=False)


# --- parties ---


@party_app.command("add")
def party_add(
    name: Annotated[str, typer.Argument(help="Display name.")],
    kind: Annotated[str, typer.Option(help="person or organisation.")] = "person",
    role: Annotated[list[str] | None, typer.Option(
        help="Role: artist, songwriter, producer, label, publisher, distributor, platform "
             "(repeatable).")] = None,
    isni: Annotated[str | None, typer.Option(help="ISNI (16 characters, checked).")] = None,
    ipi: Annotated[str | None, typer.Option(help="IPI name number (11 digits, checked).")] = None,
    alias: Annotated[list[str] | None, typer.Option(help="Another name (repeatable).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a party."""
    data = PartyIn.model_validate({"name": name, "kind": kind, "roles": tuple(role or ()),
                                   "isni": isni, "ipi": ipi, "aliases": tuple(alias or ())})
    with session() as s:
        snap = registry.party_snapshot(registry.add_party(s, data, ACTOR))
    emit(snap, as_json, lambda: f"Registered party {snap['id']}: {snap['name']}")


@party_app.command("list")
def party_list(
    role: Annotated[str | None, typer.Option(help="Only parties with this role.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 1000,
    as_json: JsonOpt = False,
) -> None:
    """List parties."""
    with session() as s:
        rows = [registry.party_snapshot(p) for p in registry.list_parties(s, role, limit)]
    emit(rows, as_json, lambda: table(
        "Parties", rows, ["id", "name", "kind", "roles", "isni", "ipi", "aliases"]))


@party_app.command("show")
def party_show(
    ref: Annotated[str, typer.Argument(help="Id, ISNI, IPI, name or alias.")],
    as_json: JsonOpt = False,
) -> None:
    """Show one party."""
    with session() as s:
        snap = registry.party_snapshot(party_ref(s, ref))
    emit(snap, as_json)


# --- works ---


@work_app.command("add")
def work_add(
    title: Annotated[str, typer.Argument(help="Title of the work.")],
    writer: Annotated[list[str], typer.Option(
        help="PARTY=PERCENT (repeatable); without =PERCENT, writers share what publishers "
             "leave equally.")],
    publisher: Annotated[list[str] | None, typer.Option(help="PARTY=PERCENT (repeatable).")] = None,
    iswc: Annotated[str | None, typer.Option(help="ISWC, e.g. T-034.524.680-1 (checked).")] = None,
    source: Annotated[str | None, typer.Option(help="Where the score comes from.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a work; writer and publisher shares must total exactly 100%."""
    with session() as s:
        pubs = [parse_share(p, "--publisher") for p in publisher or []]
        specs = [parse_share(w, "--writer", Decimal(-1)) for w in writer]
        unshared = [i for i, (_, v) in enumerate(specs) if v == -1]
        if unshared:
            taken = sum((v for _, v in pubs), Decimal(0)) + sum(
                (v for _, v in specs if v != -1), Decimal(0))
            split = [x * (Decimal(100) - taken) / 100 for x in equal_shares(len(unshared))]
            for i, v in zip(unshared, split, strict=True):
                specs[i] = (specs[i][0], v.quantize(Decimal("0.000001")))
        shares = [ShareIn(party_id=party_ref(s, r).id, role="writer", share=v) for r, v in specs]
        shares += [ShareIn(party_id=party_ref(s, r).id, role="publisher", share=v)
                   for r, v in pubs]
        data = WorkIn(title=title, iswc=iswc, shares=tuple(shares), source=source)
        snap = registry.work_snapshot(registry.add_work(s, data, ACTOR))
    emit(snap, as_json, lambda: f"Registered work {snap['id']}: {snap['title']}")


@work_app.command("list")
def work_list(
    limit: Annotated[int, typer.Option(help="At most this many.")] = 1000,
    as_json: JsonOpt = False,
) -> None:
    """List works."""
    with session() as s:
        rows = [registry.work_snapshot(w) for w in registry.list_works(s, limit)]
    emit(rows, as_json, lambda: table("Works", rows, ["id", "title", "iswc", "shares"]))


@work_app.command("show")
def work_show(
    ref: Annotated[str, typer.Argument(help="Id or ISWC.")], as_json: JsonOpt = False
) -> None:
    """Show one work."""
    with session() as s:
        snap = registry.work_snapshot(registry.find_work(s, ref))
    emit(snap, as_json)


# --- recordings ---


@recording_app.command("add")
def recording_add(
    title: Annotated[str, typer.Argument(help="Title of the recording.")],
    isrc: Annotated[str, typer.Option(help="ISRC (checked).")],
    owner: Annotated[list[str], typer.Option(
        help="Master owner PARTY=PERCENT (repeatable); one owner alone may omit =100.")],
    artist: Annotated[list[str] | None, typer.Option(help="Main artist (repeatable).")] = None,
    featured: Annotated[list[str] | None, typer.Option(
        help="Featured artist (repeatable).")] = None,
    work: Annotated[str | None, typer.Option(help="The work it records: id or ISWC.")] = None,
    duration: Annotated[float | None, typer.Option(help="Duration in seconds.")] = None,
    audio: Annotated[Path | None, typer.Option(
        help="Audio file whose SHA-256 is stored as the content hash.", exists=True,
        dir_okay=False)] = None,
    contains_ai: Annotated[str | None, typer.Option(
        help="DDEX ContainsAI: All, Partly, None or Undeclared.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a recording; master owner shares must total exactly 100%."""
    with session() as s:
        owners = [parse_share(o, "--owner", Decimal(100) if len(owner) == 1 else None)
                  for o in owner]
        data = RecordingIn.model_validate({
            "title": title, "isrc": isrc,
            "duration_ms": round(duration * 1000) if duration is not None else None,
            "work_id": registry.find_work(s, work).id if work else None,
            "artists": tuple(ArtistIn(party_id=party_ref(s, a).id, role="main")
                             for a in artist or [])
            + tuple(ArtistIn(party_id=party_ref(s, a).id, role="featured")
                    for a in featured or []),
            "owners": tuple(OwnerIn(party_id=party_ref(s, r).id, share=v) for r, v in owners),
            "content_hash": file_sha256(audio) if audio else None,
            "contains_ai": contains_ai,
        })
        snap = registry.recording_snapshot(registry.add_recording(s, data, ACTOR))
    emit(snap, as_json, lambda: f"Registered recording {snap['id']}: {snap['title']} "
                                f"({snap['isrc']})")


@recording_app.command("list")
def recording_list(
    owner: Annotated[str | None, typer.Option(help="Only recordings this party owns.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 1000,
    as_json: JsonOpt = False,
) -> None:
    """List recordings."""
    with session() as s:
        owner_id = party_ref(s, owner).id if owner else None
        rows = [registry.recording_snapshot(r)
                for r in registry.list_recordings(s, owner_id, limit)]
    emit(rows, as_json, lambda: table(
        "Recordings", rows, ["id", "title", "isrc", "work_id", "artists", "owners"]))


@recording_app.command("show")
def recording_show(
    ref: Annotated[str, typer.Argument(help="Id or ISRC.")], as_json: JsonOpt = False
) -> None:
    """Show one recording."""
    with session() as s:
        snap = registry.recording_snapshot(registry.find_recording(s, ref))
    emit(snap, as_json)


# --- agreements ---


@agreement_app.command("add")
def agreement_add(
    licensor: Annotated[str, typer.Option(help="The party granting the licence.")],
    licensee: Annotated[str, typer.Option(help="The party receiving it.")],
    use: Annotated[list[str], typer.Option(
        help="Use licensed: train, style_reference, voice_likeness, remix_stems, sample, ... "
             "(repeatable).")],
    start: Annotated[str, typer.Option(help="First day (YYYY-MM-DD).")],
    end: Annotated[str | None, typer.Option(help="Last day (YYYY-MM-DD); open if omitted.")] = None,
    territory: Annotated[list[str] | None, typer.Option(
        help="ISO 3166-1 alpha-2 territory (repeatable).")] = None,
    worldwide: Annotated[bool, typer.Option(help="Worldwide, minus --exclude.")] = False,
    exclude: Annotated[list[str] | None, typer.Option(
        help="Territory excluded from a worldwide licence (repeatable).")] = None,
    ai_share: Annotated[str, typer.Option(help="Licensor's share of AI revenue, 0..1.")] = "0",
    minimum_guarantee: Annotated[str, typer.Option(help="Minimum guarantee amount.")] = "0",
    currency: Annotated[str, typer.Option(help="ISO 4217 currency.")] = "EUR",
    model_version: Annotated[list[str] | None, typer.Option(
        help="Pin to this model version (repeatable).")] = None,
    recording: Annotated[list[str] | None, typer.Option(
        help="Cover only this recording (repeatable); default: the whole catalog.")] = None,
    work: Annotated[list[str] | None, typer.Option(
        help="Cover only this work (repeatable).")] = None,
    reference: Annotated[str | None, typer.Option(help="Contract reference.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register an upfront licence agreement."""
    with session() as s:
        data = AgreementIn.model_validate({
            "licensor_id": party_ref(s, licensor).id, "licensee_id": party_ref(s, licensee).id,
            "uses": tuple(use), "worldwide": worldwide, "territories": tuple(territory or ()),
            "excluded_territories": tuple(exclude or ()),
            "start_date": parse_day(start, "--start"), "end_date": parse_day(end, "--end"),
            "ai_revenue_share": ai_share, "minimum_guarantee": minimum_guarantee,
            "currency": currency.upper(), "model_versions": tuple(model_version or ()),
            "covers_all": not (recording or work),
            "recording_ids": tuple(registry.find_recording(s, r).id for r in recording or ()),
            "work_ids": tuple(registry.find_work(s, w).id for w in work or ()),
            "reference": reference,
        })
        snap = registry.agreement_snapshot(registry.add_agreement(s, data, ACTOR))
    emit(snap, as_json, lambda: f"Registered agreement {snap['id']}")


@agreement_app.command("list")
def agreement_list(
    party: Annotated[str | None, typer.Option(help="Only agreements of this party.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 1000,
    as_json: JsonOpt = False,
) -> None:
    """List agreements."""
    with session() as s:
        pid = party_ref(s, party).id if party else None
        rows = [registry.agreement_snapshot(a) for a in registry.list_agreements(s, pid, limit)]
    emit(rows, as_json, lambda: table("Agreements", rows, [
        "id", "licensor_id", "licensee_id", "uses", "worldwide", "territories",
        "excluded_territories", "start_date", "end_date", "covers_all"]))


@agreement_app.command("show")
def agreement_show(
    agreement_id: Annotated[int, typer.Argument(help="Agreement id.")], as_json: JsonOpt = False
) -> None:
    """Show one agreement."""
    with session() as s:
        try:
            snap = registry.agreement_snapshot(registry.get_agreement(s, agreement_id))
        except LookupError as exc:
            fail(str(exc))
    emit(snap, as_json)


# --- consent ---


def _record(
    decision: str, party: str, use: str, recording: str | None, work: str | None,
    terms: str | None, since: str | None, until: str | None, territory: list[str] | None,
    by: str | None, evidence: str | None, as_json: bool,
) -> None:
    if recording and work:
        fail("give --recording or --work, not both")
    try:
        terms_data = json.loads(terms) if terms else None
    except json.JSONDecodeError as exc:
        fail(f"--terms: not valid JSON ({exc.msg} at column {exc.colno})")
    with session() as s:
        data = ConsentIn.model_validate({
            "party_id": party_ref(s, party).id, "use": use, "decision": decision,
            "scope": "recording" if recording else "work" if work else "all",
            "recording_id": registry.find_recording(s, recording).id if recording else None,
            "work_id": registry.find_work(s, work).id if work else None,
            "terms": terms_data, "effective_from": parse_when(since, "--from"),
            "effective_until": parse_when(until, "--until"),
            "territories": tuple(territory or ()),
            "recorded_by_id": party_ref(s, by).id if by else None, "evidence": evidence,
        })
        snap = registry.consent_snapshot(registry.record_consent(s, data, ACTOR))
    emit(snap, as_json, lambda: f"Recorded consent {snap['id']}: party {snap['party_id']} "
                                f"{snap['decision']} {snap['use']!r}")


@consent_app.command("grant")
def consent_grant(
    party: Annotated[str, typer.Argument(help="Whose consent (id, ISNI, IPI or name).")],
    use: Annotated[str, typer.Option(help="train, style_reference, voice_likeness, remix_stems, "
                                          "sample, or another use.")],
    recording: Annotated[str | None, typer.Option(help="Only this recording.")] = None,
    work: Annotated[str | None, typer.Option(help="Only this work.")] = None,
    terms: Annotated[str | None, typer.Option(
        help="JSON terms: makes the consent 'constrained'.")] = None,
    since: Annotated[str | None, typer.Option("--from", help="Effective from (default now).")]
    = None,
    until: Annotated[str | None, typer.Option(help="Effective until (exclusive).")] = None,
    territory: Annotated[list[str] | None, typer.Option(
        help="Only in this territory (repeatable); default worldwide.")] = None,
    by: Annotated[str | None, typer.Option(
        help="Recorded by this delegate (needs a delegation).")] = None,
    evidence: Annotated[str | None, typer.Option(help="Evidence: document, URL, note.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Record an opt-in (allowed, or constrained when --terms are given)."""
    _record("constrained" if terms else "allowed", party, use, recording, work, terms, since,
            until, territory, by, evidence, as_json)


@consent_app.command("refuse")
def consent_refuse(
    party: Annotated[str, typer.Argument(help="Whose consent (id, ISNI, IPI or name).")],
    use: Annotated[str, typer.Option(help="The use refused.")],
    recording: Annotated[str | None, typer.Option(help="Only this recording.")] = None,
    work: Annotated[str | None, typer.Option(help="Only this work.")] = None,
    since: Annotated[str | None, typer.Option("--from", help="Effective from (default now).")]
    = None,
    until: Annotated[str | None, typer.Option(help="Effective until (exclusive).")] = None,
    territory: Annotated[list[str] | None, typer.Option(help="Only in this territory.")] = None,
    by: Annotated[str | None, typer.Option(help="Recorded by this delegate.")] = None,
    evidence: Annotated[str | None, typer.Option(help="Evidence: document, URL, note.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Record an explicit opt-out."""
    _record("not_allowed", party, use, recording, work, None, since, until, territory, by,
            evidence, as_json)


@consent_app.command("revoke")
def consent_revoke(
    consent_id: Annotated[int, typer.Argument(help="The consent record to revoke.")],
    since: Annotated[str | None, typer.Option("--from", help="Effective from (default now).")]
    = None,
    by: Annotated[str | None, typer.Option(help="Recorded by this delegate.")] = None,
    evidence: Annotated[str | None, typer.Option(help="Evidence: document, URL, note.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Revoke a consent: appends a refusal with the same reach; the original stays."""
    with session() as s:
        try:
            c = registry.revoke_consent(
                s, consent_id, ACTOR, effective_from=parse_when(since, "--from"),
                recorded_by_id=party_ref(s, by).id if by else None, evidence=evidence)
        except LookupError as exc:
            fail(str(exc))
        snap = registry.consent_snapshot(c)
    emit(snap, as_json, lambda: f"Recorded revocation {snap['id']} of consent {consent_id}")


@consent_app.command("history")
def consent_history(
    party: Annotated[str | None, typer.Option(help="Records of this party.")] = None,
    recording: Annotated[str | None, typer.Option(
        help="Records that bear on this recording.")] = None,
    use: Annotated[str | None, typer.Option(help="Only this use.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the consent records, oldest first (nothing is ever overwritten)."""
    if not (party or recording):
        fail("give --party or --recording")
    with session() as s:
        rows = [registry.consent_snapshot(c) for c in registry.consent_history(
            s, party_id=party_ref(s, party).id if party else None,
            recording_id=registry.find_recording(s, recording).id if recording else None,
            use=use)]
    emit(rows, as_json, lambda: table("Consent history", rows, [
        "id", "party_id", "use", "decision", "scope", "recording_id", "work_id",
        "effective_from", "effective_until", "territories", "recorded_by_id", "supersedes_id"]))


@consent_app.command("delegate")
def consent_delegate(
    principal: Annotated[str, typer.Argument(help="Whose consent may be recorded.")],
    delegate: Annotated[str, typer.Argument(help="Who may record it (e.g. the label).")],
    use: Annotated[str | None, typer.Option(help="Only this use (default every use).")] = None,
    withdraw: Annotated[bool, typer.Option(help="Withdraw the delegation instead.")] = False,
    evidence: Annotated[str | None, typer.Option(help="Evidence: document, URL, note.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Let a delegate record consent for a principal (or withdraw that)."""
    with session() as s:
        data = DelegationIn(principal_id=party_ref(s, principal).id,
                            delegate_id=party_ref(s, delegate).id, use=use,
                            granted=not withdraw, evidence=evidence)
        snap = registry.delegation_snapshot(registry.add_delegation(s, data, ACTOR))
    emit(snap, as_json, lambda: f"Recorded delegation {snap['id']}")


# --- decisions ---


@app.command("decide")
def decide_cmd(
    use: Annotated[str, typer.Argument(help="The use: train, style_reference, ...")],
    recording: Annotated[str | None, typer.Option(help="Recording id or ISRC.")] = None,
    all_recordings: Annotated[bool, typer.Option(
        "--all", help="Decide for the whole catalog (set-based) and summarise.")] = False,
    at: Annotated[str | None, typer.Option(help="Date or date-time (default now).")] = None,
    territory: Annotated[str | None, typer.Option(
        help="ISO 3166-1 alpha-2; omitted means everywhere.")] = None,
    licensee: Annotated[str | None, typer.Option(help="Only agreements with this licensee.")]
    = None,
    model_version: Annotated[str | None, typer.Option(help="The model version asking.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """May this recording be used for USE here and now? Prints the decision and its reasons."""
    from attune.rights.identifiers import normalise_territory

    if bool(recording) == all_recordings:
        fail("give --recording ISRC or --all")
    where = normalise_territory(territory) if territory else None
    when = parse_when(at, "--at")
    with session() as s:
        licensee_id = party_ref(s, licensee).id if licensee else None
        if all_recordings:
            from attune.rights.batch import decide_batch

            batch = decide_batch(s, use, when, where, licensee_id=licensee_id,
                                 model_version=model_version)
            data: dict[str, Any] = {
                "use": use, "territory": where, "at": batch.at.isoformat(),
                "allowed": len(batch.allowed), "excluded": len(batch.excluded),
                "allowed_ids": list(batch.allowed),
                "excluded_reasons": {str(k): v.as_dict() for k, v in batch.excluded.items()},
            }
            codes: dict[str, int] = {}
            for reason in batch.excluded.values():
                codes[reason.code] = codes.get(reason.code, 0) + 1
            emit(data, as_json, lambda: (
                f"{use!r}: {len(batch.allowed)} recordings usable, "
                f"{len(batch.excluded)} not ("
                + ", ".join(f"{c} ×{n}" for c, n in sorted(codes.items(), key=lambda x: -x[1]))
                + ")"))
            return
        assert recording is not None
        rec = registry.find_recording(s, recording)
        d = decide(s, use, rec, when, where, licensee_id=licensee_id,
                   model_version=model_version)
    data = {**d.as_dict(), "isrc": rec.isrc, "title": rec.title}

    def render() -> str:
        verdict = "[green]ALLOWED[/]" if d.allowed else "[red]NOT ALLOWED[/]"
        lines = [f"{verdict} {use!r} of {rec.title} ({rec.isrc}) "
                 f"{'in ' + where if where else 'everywhere'} at {d.at.isoformat()}"]
        lines += [f"  - [{r.code}] {r.message}" for r in d.reasons]
        return "\n".join(lines)

    emit(data, as_json, render)


# --- audit ---


@audit_app.command("verify")
def audit_verify(as_json: JsonOpt = False) -> None:
    """Walk the hash chain and compare every registry row with its audited state."""
    with session() as s:
        count, problem = audit.verify_chain(s)
        state_checked, state_problem = registry.verify_state(s) if problem is None else (0, None)
    data = {
        "ok": problem is None and state_problem is None, "entries": count,
        "rows_checked": state_checked,
        "first_bad_entry": problem.seq if problem else None,
        "problem": (f"entry {problem.seq}: {problem.reason}" if problem else state_problem),
    }
    emit(data, as_json, lambda: (
        f"Audit log OK: {count} entries chained, {state_checked} registry rows match."
        if data["ok"] else f"Audit log FAILED: {data['problem']}"))
    if not data["ok"]:
        raise typer.Exit(2)


@audit_app.command("log")
def audit_log(
    limit: Annotated[int, typer.Option(help="The last N entries.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Show the newest audit entries."""
    from attune.store.audit import AuditEntry

    with session() as s:
        entries = s.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(limit)).all()
        rows = [{"seq": e.seq, "at": e.at.isoformat(), "actor": e.actor, "action": e.action,
                 "entity": e.entity, "entity_id": e.entity_id, "hash": e.hash[:16]}
                for e in reversed(entries)]
    emit(rows, as_json, lambda: table("Audit log", rows, list(rows[0]) if rows else ["seq"]))


# --- import and export ---


@app.command("import")
def import_cmd(
    path: Annotated[Path, typer.Argument(help="Catalog file: CSV, JSON or DDEX ERN 4.3 XML.",
                                         exists=True, dir_okay=False)],
    fmt: Annotated[str | None, typer.Option("--format", help="csv, json or ern (default: "
                                                             "from the file).")] = None,
    skip_invalid: Annotated[bool, typer.Option(
        help="Import the valid rows and report the rest (default: all or nothing).")] = False,
    rejects: Annotated[Path | None, typer.Option(
        help="Write rejected rows here as CSV (line or element, field, reason).")] = None,
    owner: Annotated[str | None, typer.Option(
        help="Master owner for ERN recordings when the message names none.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Import a catalog file in one transaction."""
    from attune.rights.catalog_import import import_catalog, write_rejects

    with session() as s:
        report = import_catalog(s, path, fmt=fmt, skip_invalid=skip_invalid, actor=ACTOR,
                                owner_ref=owner)
    if rejects is not None:
        write_rejects(report, rejects)
    data = report.as_dict()
    emit(data, as_json, lambda: (
        f"Imported {path.name}: " + ", ".join(f"{n} {k}" for k, n in data["counts"].items())
        + (f"; {len(report.rejects)} rows rejected" if report.rejects else "")))


@export_app.command("consent")
def export_consent(
    recording: Annotated[list[str] | None, typer.Option(
        help="Recording id or ISRC (repeatable); default every recording.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="tdmai or cawg.")] = "tdmai",
    at: Annotated[str | None, typer.Option(help="As of this date (default now).")] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write JSON Lines here instead of stdout.")] = None,
) -> None:
    """Export each recording's consent as TDM·AI JSON or a CAWG training-mining assertion."""
    from attune.rights.catalog_import import CatalogImportError  # noqa: F401  (same package)
    from attune.rights.consent_export import cawg_training_mining, tdmai_declaration

    if fmt not in ("tdmai", "cawg"):
        fail("--format: choose tdmai or cawg")
    export = tdmai_declaration if fmt == "tdmai" else cawg_training_mining
    when = parse_when(at, "--at")
    with session() as s:
        recs = ([registry.find_recording(s, r) for r in recording] if recording
                else list(registry.list_recordings(s, limit=10**9)))
        lines = [json.dumps(export(s, r, when), ensure_ascii=False, default=str) for r in recs]
    if output:
        output.write_text("\n".join(lines) + "\n", encoding="utf-8")
        err.print(f"Wrote {len(lines)} declarations to {output}")
    else:
        typer.echo("\n".join(lines))


# --- keys ---


@key_app.command("create")
def key_create(
    role: Annotated[str, typer.Option(help="artist, rightsholder, platform or admin.")],
    party: Annotated[str | None, typer.Option(help="The party the key acts for.")] = None,
    label: Annotated[str | None, typer.Option(help="A note on what the key is for.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API key; its secret is printed once."""
    from attune.api.keys import create_key

    with session() as s:
        pid = party_ref(s, party).id if party else None
        key, secret = create_key(s, role, pid, label, ACTOR)
        data = {"id": key.id, "role": key.role, "party_id": key.party_id, "key": secret}
    emit(data, as_json, lambda: f"API key {data['id']} ({role}): {secret}\n"
                                "Shown once: store it now.")


@key_app.command("list")
def key_list(as_json: JsonOpt = False) -> None:
    """List API keys (never their secrets)."""
    from attune.api.keys import key_snapshot, list_keys

    with session() as s:
        rows = [key_snapshot(k) for k in list_keys(s)]
    emit(rows, as_json, lambda: table("API keys", rows, list(rows[0]) if rows else ["id"]))


@key_app.command("revoke")
def key_revoke(
    key_id: Annotated[int, typer.Argument(help="The key id.")], as_json: JsonOpt = False
) -> None:
    """Revoke an API key."""
    from attune.api.keys import key_snapshot, revoke_key

    with session() as s:
        snap = key_snapshot(revoke_key(s, key_id, ACTOR))
    emit(snap, as_json, lambda: f"Revoked API key {key_id}")


# --- helpers ---


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _cell(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(
            "/".join(str(v) for v in item.values()) if isinstance(item, dict) else str(item)
            for item in value
        )
    return "" if value is None else str(value)


def table(title: str, rows: Sequence[dict[str, Any]], columns: list[str]) -> Table:
    """A Rich table of some columns of JSON rows."""
    t = Table(title=f"{title} ({len(rows)})")
    for c in columns:
        t.add_column(c)
    for row in rows:
        t.add_row(*(_cell(row.get(c)) for c in columns))
    return t


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        problems = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e["loc"])
            msg = e["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {msg}" if where else msg)
        return "; ".join(problems)
    if isinstance(exc, IntegrityError):
        return f"the database refused the write: {str(exc.orig).splitlines()[0]}"
    if isinstance(exc, DBAPIError):
        return f"database error: {str(exc.orig).splitlines()[0]}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and turn every expected failure into a one-line error."""
    from attune.rights.ddex import DdexError

    expected: tuple[type[BaseException], ...] = (
        CliError, ValidationError, registry.RegistryError, LookupError, IdentifierError,
        DdexError, DBAPIError, OSError,
    )
    try:
        from attune.rights.catalog_import import CatalogImportError

        expected += (CatalogImportError,)
    except ImportError:  # pragma: no cover - only while the importer is absent
        pass
    try:
        status = app(args=argv, standalone_mode=False)
    except typer.Abort:
        err.print("Aborted.")
        sys.exit(130)
    except expected as exc:
        err.print(f"[red]error:[/] {_one_line(exc)}", highlight=False, markup=True)
        sys.exit(1)
    except Exception as exc:
        # A usage error from Typer's command parser (its click exceptions are private types).
        if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):
            raise
        where = getattr(getattr(exc, "ctx", None), "command_path", "attune")
        err.print(f"[red]error:[/] {exc.format_message()} (try '{where} --help')",
                  highlight=False, markup=True)
        sys.exit(int(exc.exit_code))
    if isinstance(status, int) and status:
        sys.exit(status)


# Sub-apps that build on this module's helpers are mounted last (they import attune.cli).
from attune.cli_dataset import consent_impact_cmd, dataset_app  # noqa: E402
from attune.cli_generate import generate, model_app  # noqa: E402
from attune.cli_identify import app as identify_app  # noqa: E402
from attune.cli_provenance import provenance_app, watermark_app  # noqa: E402
from attune.cli_royalties import ledger_app, output_app, royalties_app  # noqa: E402

app.add_typer(identify_app, name="identify")
app.add_typer(provenance_app, name="provenance")
app.add_typer(watermark_app, name="watermark")
app.add_typer(output_app, name="output")
app.add_typer(royalties_app, name="royalties")
app.add_typer(ledger_app, name="ledger")
app.add_typer(dataset_app, name="dataset")
app.add_typer(model_app, name="model")
app.command("generate")(generate)
consent_app.command("impact")(consent_impact_cmd)
