"""Royalty routes: AI outputs for platforms; statements, balances and runs for finance.

Finance reads are for admin and rightsholder keys; a rightsholder reads only its own party's
statements and balances. Platforms register the outputs their models make.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict

from attune.api.deps import AdminKey, CatalogKey, DbSession, PlatformKey, actor
from attune.api.problems import ApiError
from attune.rights.models import ApiKey
from attune.rights.outputs import OutputIn, add_output, get_output, output_snapshot
from attune.royalties import ledger, statements
from attune.royalties.ledger import LedgerError
from attune.royalties.run import data_dir, run_period

router = APIRouter(tags=["royalties"])
Period = Annotated[str, Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM")]


class AttributionOut(BaseModel):
    """One attribution of an output: a recording or a work, and its share of 1 (decimal text)."""

    model_config = ConfigDict(frozen=True)
    recording_id: int | None
    work_id: int | None
    share: str


class OutputOut(BaseModel):
    """A registered AI output."""

    model_config = ConfigDict(frozen=True)
    id: str
    model: str
    platform_id: int
    prompt: str | None
    created_at: str
    attributions: list[AttributionOut]


class BalanceOut(BaseModel):
    """An account balance (positive = debit; a rightsholder's payable is negative when owed)."""

    model_config = ConfigDict(frozen=True)
    account: str
    currency: str
    amount: str
    party_id: int | None


class RunOut(BaseModel):
    """What a royalty run did to the ledger."""

    model_config = ConfigDict(frozen=True)
    period: str
    booked_period: str
    run_id: int
    posted: bool
    reversed_run_id: int | None
    transactions: int
    postings: int


def _own_party(key: ApiKey, party_id: int | None) -> int | None:
    """The party a finance read is limited to; 403 when a rightsholder asks for another's."""
    if key.role == "admin":
        return party_id
    if party_id not in (None, key.party_id):
        raise ApiError(
            403, "party_forbidden", f"this key reads finance of party {key.party_id} only"
        )
    return key.party_id


@router.post("/v1/outputs", status_code=201)
def create_output(data: OutputIn, key: PlatformKey, session: DbSession) -> OutputOut:
    """Register an AI output this platform's model made, with its attribution shares."""
    if key.role != "admin" and data.platform_id != key.party_id:
        raise ApiError(
            403, "party_forbidden", f"party {key.party_id} registers only its own outputs"
        )
    return OutputOut.model_validate(output_snapshot(add_output(session, data, actor(key))))


@router.get("/v1/outputs/{output_id}")
def show_output(output_id: str, key: PlatformKey, session: DbSession) -> OutputOut:
    """One AI output by id."""
    out = get_output(session, output_id)
    if key.role != "admin" and out.platform_id != key.party_id:
        raise ApiError(403, "party_forbidden", f"output {output_id} is not party {key.party_id}'s")
    return OutputOut.model_validate(output_snapshot(out))


@router.get("/v1/royalties/statements/{party_id}", response_model=None)
def show_statement(
    party_id: int,
    period: Period,
    request: Request,
    key: CatalogKey,
    session: DbSession,
    format: Literal["csv", "html", "dsr"] = "csv",
) -> Response:
    """A party's statement for a usage period: CSV, HTML (with chart) or DSR flat file."""
    _own_party(key, party_id)
    st = statements.statement(session, data_dir(request.app.state.engine), party_id, period)
    if format == "html":
        return HTMLResponse(statements.to_html(st))
    if format == "dsr":
        return PlainTextResponse(statements.to_dsr(st), media_type="text/tab-separated-values")
    return PlainTextResponse(statements.to_csv(st), media_type="text/csv")


@router.get("/v1/ledger/balance")
def show_balance(
    key: CatalogKey, session: DbSession, party_id: int | None = None, period: str | None = None
) -> list[BalanceOut]:
    """Ledger balances: an admin's of any party (or all), a rightsholder's of its own."""
    scope = _own_party(key, party_id)
    return [
        BalanceOut(
            account=b.account, currency=b.currency, amount=str(b.amount), party_id=b.party_id
        )
        for b in ledger.balances(session, scope, period)
    ]


@router.post("/v1/royalties/runs")
def start_run(
    period: Period, request: Request, key: AdminKey, session: DbSession, into: str | None = None
) -> RunOut:
    """Allocate a usage period and post it to the ledger (admin; idempotent)."""
    try:
        res = run_period(session, data_dir(request.app.state.engine), period, actor(key), into=into)
    except LedgerError as exc:
        raise ApiError(409, "ledger_refused", str(exc)) from exc
    return RunOut(
        period=res.period,
        booked_period=res.booked_period,
        run_id=res.post.run_id,
        posted=res.post.posted,
        reversed_run_id=res.post.reversed_run_id,
        transactions=res.post.transactions,
        postings=res.post.postings,
    )
