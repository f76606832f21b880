"""Double-entry, append-only royalty ledger in SQL, with beancount text export.

Entries are immutable records built by pure functions from an allocation; persistence only
inserts. A re-run posts reversals of the run it replaces; a closed period takes no postings.
Accounts (beancount names):
  Assets:Receivable:Party-<licensee>     what an AI licensee owes for its pools
  Assets:Receivable:Catalog              what catalog usage reports owe
  Liabilities:Royalties:Party-<id>       what is owed to a rightsholder (negative = owed)
  Liabilities:Suspense:Unmatched         money for unregistered recordings or works
  Assets:Recoupable:Agreement-<id>       guarantee top-ups a licensee may still recoup
  Equity:Guarantees:Agreement-<id>       the other side of those top-ups
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import NamedTuple, TextIO

from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session

from attune.rights.registry import RegistryError, now
from attune.royalties.allocate import Allocation, connect, period_bounds
from attune.royalties.models import (
    LedgerPosting,
    LedgerTransaction,
    RoyaltyPeriod,
    RoyaltyRun,
)
from attune.royalties.money import exponent
from attune.store import audit

Account = str
Currency = str
PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
RECOUPABLE = "Assets:Recoupable:Agreement-"


class Posting(NamedTuple):
    """One leg: ``amount`` (exact Decimal, positive = debit) of ``currency`` on ``account``.

    party_id names the party the account belongs to, when it belongs to one.
    """

    account: Account
    currency: Currency
    amount: Decimal
    party_id: int | None = None


class Entry(NamedTuple):
    """A balanced transaction: deterministic ``key``, the day it is booked, why, and its legs."""

    key: str
    day: date
    narration: str
    postings: tuple[Posting, ...]


class LedgerError(ValueError):
    """A posting refused: a closed period, an unbalanced entry, a malformed period."""


@dataclass(frozen=True, slots=True)
class PostResult:
    """What posting a run did: its id, whether anything was posted, and how much."""

    run_id: int
    posted: bool
    reversed_run_id: int | None
    transactions: int
    postings: int


def check_period(period: str) -> str:
    """A YYYY-MM period, or a LedgerError naming it."""
    if not PERIOD.match(period):
        raise LedgerError(f"period: {period!r} is not YYYY-MM")
    return period


def party_account(party_id: int) -> Account:
    """The payable account of a rightsholder."""
    return f"Liabilities:Royalties:Party-{party_id}"


def _money(minor: int, currency: str) -> Decimal:
    return Decimal(minor).scaleb(-exponent(currency))


def entries_for(allocation: Allocation, booked_day: date, tag: str) -> list[Entry]:
    """One balanced entry per pool: the payer's receivable against each payee's payable."""
    owed: dict[str, dict[tuple[str, int | None], int]] = defaultdict(lambda: defaultdict(int))
    con = connect()  # sum the (possibly millions of) leaves in DuckDB, not row by row in Python
    con.register("leaves", allocation.leaves.select(["pool", "role", "party_id", "amount"]))
    for pool, suspense, party, amount in con.execute(
        "SELECT pool, role = 'suspense', party_id, sum(amount)::HUGEINT FROM leaves GROUP BY ALL"
    ).fetchall():
        account = "Liabilities:Suspense:Unmatched" if suspense else party_account(party)
        owed[pool][(account, None if suspense else party)] += int(amount)
    entries = []
    for p in allocation.pools.to_pylist():
        cur = p["currency"]
        payer = p["payer"]
        receivable = (
            f"Assets:Receivable:Party-{payer.removeprefix('party:')}"
            if payer.startswith("party:")
            else "Assets:Receivable:Catalog"
        )
        legs = [
            Posting(
                receivable,
                cur,
                _money(p["amount"], cur),
                int(payer[6:]) if payer.startswith("party:") else None,
            )
        ]
        for (account, party), amount in sorted(
            owed[p["pool"]].items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)
        ):
            if amount:
                legs.append(Posting(account, cur, -_money(amount, cur), party))
        advance = p["guarantee"] - p["recouped"]
        if advance:
            aid = p["agreement_id"]
            legs.append(Posting(f"{RECOUPABLE}{aid}", cur, _money(advance, cur)))
            legs.append(Posting(f"Equity:Guarantees:Agreement-{aid}", cur, -_money(advance, cur)))
        if len(legs) == 1 and not legs[0].amount:
            continue
        entries.append(
            Entry(
                key=f"{allocation.period}/{tag}/{p['pool']}",
                day=booked_day,
                narration=f"{p['source']} pool {p['pool']} for usage {allocation.period}",
                postings=tuple(legs),
            )
        )
    for e in entries:
        check_balanced(e)
    return entries


def check_balanced(entry: Entry) -> None:
    """Every currency in an entry sums to zero, or a LedgerError says which does not."""
    sums: dict[str, Decimal] = defaultdict(Decimal)
    for p in entry.postings:
        sums[p.currency] += p.amount
    bad = {c: s for c, s in sums.items() if s}
    if bad:
        raise LedgerError(f"entry {entry.key} does not balance: {bad}")


def reversal_of(key: str, narration: str, postings: list[Posting], day: date) -> Entry:
    """The entry that cancels another: same legs, opposite signs."""
    return Entry(
        key=f"reversal/{key}"[:200],
        day=day,
        narration=f"reversal of {narration}"[:500],
        postings=tuple(p._replace(amount=-p.amount) for p in postings),
    )


def _lock(session: Session) -> None:
    """Serialise ledger writers, so two runs of one period never both post."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(7123004)"))
    else:
        session.execute(text("UPDATE royalty_runs SET id = id WHERE 0"))


def is_closed(session: Session, period: str) -> bool:
    """True when the accounting period is closed."""
    return session.get(RoyaltyPeriod, period) is not None


def current_run(session: Session, usage_period: str) -> RoyaltyRun | None:
    """The run whose postings stand for a usage period, if any."""
    return session.scalar(
        select(RoyaltyRun)
        .where(RoyaltyRun.usage_period == usage_period, RoyaltyRun.status == "posted")
        .order_by(RoyaltyRun.id.desc())
        .limit(1)
    )


def _postings_of(session: Session, transaction_ids: list[int]) -> dict[int, list[Posting]]:
    out: dict[int, list[Posting]] = defaultdict(list)
    for i in range(0, len(transaction_ids), 5000):
        chunk = transaction_ids[i : i + 5000]
        rows = session.execute(
            select(LedgerPosting)
            .where(LedgerPosting.transaction_id.in_(chunk))
            .order_by(LedgerPosting.transaction_id, LedgerPosting.position)
        ).scalars()
        for p in rows:
            out[p.transaction_id].append(Posting(p.account, p.currency, p.amount, p.party_id))
    return out


def _insert(
    session: Session,
    run_id: int,
    entries: list[Entry],
    usage_period: str,
    booked: str,
    kind: str,
    reverses: list[int | None],
) -> int:
    """Insert entries and their legs in bulk; returns how many legs."""
    stamp = now()
    ids: list[int] = []
    for e, rev in zip(entries, reverses, strict=True):
        txn = LedgerTransaction(
            key=e.key,
            run_id=run_id,
            booked_period=booked,
            usage_period=usage_period,
            date=e.day,
            kind=kind,
            narration=e.narration[:500],
            reverses_id=rev,
            created_at=stamp,
        )
        session.add(txn)
        session.flush()
        ids.append(txn.id)
    rows = [
        {
            "transaction_id": tid,
            "position": i,
            "account": p.account,
            "party_id": p.party_id,
            "currency": p.currency,
            "amount": p.amount,
        }
        for tid, e in zip(ids, entries, strict=True)
        for i, p in enumerate(e.postings)
    ]
    for i in range(0, len(rows), 20000):
        session.execute(insert(LedgerPosting), rows[i : i + 20000])
    return len(rows)


def post_run(
    session: Session,
    allocation: Allocation,
    *,
    input_hash: str,
    result_hash: str,
    path: str,
    booked_period: str,
    summary: str,
    actor: str,
) -> PostResult:
    """Make an allocation the standing result of its usage period, in the caller's transaction.

    Nothing happens if the standing run was computed from the same inputs. Otherwise its
    entries are reversed and the new ones posted, all booked into ``booked_period``.
    """
    usage_period = allocation.period
    _lock(session)
    if is_closed(session, booked_period):
        raise LedgerError(
            f"period: {booked_period} is closed; book corrections into an open period "
            "(--into YYYY-MM)"
        )
    if booked_period < usage_period:
        raise LedgerError(f"into: cannot book usage of {usage_period} into earlier {booked_period}")
    standing = current_run(session, usage_period)
    if standing is not None and standing.input_hash == input_hash:
        return PostResult(standing.id, False, None, 0, 0)
    run = RoyaltyRun(
        usage_period=usage_period,
        booked_period=booked_period,
        input_hash=input_hash,
        result_hash=result_hash,
        path=path,
        summary=summary,
        status="posted",
        posted_at=now(),
    )
    session.add(run)
    session.flush()
    day = period_bounds(booked_period)[1]
    legs = 0
    reversed_id = None
    if standing is not None:
        originals = session.execute(
            select(LedgerTransaction.id, LedgerTransaction.key, LedgerTransaction.narration)
            .where(LedgerTransaction.run_id == standing.id, LedgerTransaction.kind == "allocation")
            .order_by(LedgerTransaction.id)
        ).all()
        postings = _postings_of(session, [o.id for o in originals])
        reversals = [reversal_of(o.key, o.narration, postings[o.id], day) for o in originals]
        legs += _insert(
            session,
            run.id,
            reversals,
            usage_period,
            booked_period,
            "reversal",
            [o.id for o in originals],
        )
        standing.status = "reversed"
        reversed_id = standing.id
    entries = entries_for(allocation, day, f"run-{run.id}")
    legs += _insert(
        session, run.id, entries, usage_period, booked_period, "allocation", [None] * len(entries)
    )
    audit.append(
        session,
        actor=actor,
        action="royalties.run",
        entity="royalty_run",
        entity_id=run.id,
        payload={
            "usage_period": usage_period,
            "booked_period": booked_period,
            "input_hash": input_hash,
            "result_hash": result_hash,
            "reversed_run_id": reversed_id,
            "transactions": len(entries),
            "postings": legs,
        },
    )
    return PostResult(run.id, True, reversed_id, len(entries), legs)


def close_period(session: Session, period: str, actor: str) -> RoyaltyPeriod:
    """Close an accounting period: from now on nothing is booked into it."""
    check_period(period)
    _lock(session)
    if is_closed(session, period):
        raise RegistryError("period", f"{period} is already closed")
    closed = RoyaltyPeriod(period=period, closed_at=now(), closed_by=actor)
    session.add(closed)
    session.flush()
    totals = session.execute(
        select(LedgerPosting.currency, func.count())
        .join(LedgerTransaction, LedgerTransaction.id == LedgerPosting.transaction_id)
        .where(LedgerTransaction.booked_period == period)
        .group_by(LedgerPosting.currency)
    ).all()
    audit.append(
        session,
        actor=actor,
        action="royalties.close",
        entity="royalty_period",
        entity_id=period,
        payload={"period": period, "postings": {c: n for c, n in totals}},
    )
    return closed


def recoupable_before(session: Session, usage_period: str) -> dict[int, int]:
    """Per agreement, guarantee top-ups not yet recouped by earlier periods (micro-units)."""
    rows = session.execute(
        select(LedgerPosting.account, func.sum(text("ledger_postings.amount")))
        .join(LedgerTransaction, LedgerTransaction.id == LedgerPosting.transaction_id)
        .where(
            LedgerPosting.account.like(f"{RECOUPABLE}%"),
            LedgerTransaction.usage_period < usage_period,
        )
        .group_by(LedgerPosting.account)
    ).all()
    return {int(a.removeprefix(RECOUPABLE)): int(s) for a, s in rows if s}


@dataclass(frozen=True, slots=True)
class Balance:
    """The sum of an account's postings in one currency (positive = debit)."""

    account: Account
    currency: Currency
    amount: Decimal
    party_id: int | None


def balances(
    session: Session, party_id: int | None = None, period: str | None = None
) -> list[Balance]:
    """Account balances, optionally of one party's accounts or of one booked period only."""
    stmt = (
        select(
            LedgerPosting.account,
            LedgerPosting.currency,
            LedgerPosting.party_id,
            func.sum(text("ledger_postings.amount")),
        )
        .join(LedgerTransaction, LedgerTransaction.id == LedgerPosting.transaction_id)
        .group_by(LedgerPosting.account, LedgerPosting.currency, LedgerPosting.party_id)
        .order_by(LedgerPosting.account, LedgerPosting.currency)
    )
    if party_id is not None:
        stmt = stmt.where(LedgerPosting.party_id == party_id)
    if period is not None:
        stmt = stmt.where(LedgerTransaction.booked_period == period)
    return [
        Balance(a, c, Decimal(int(s)).scaleb(-6), p) for a, c, p, s in session.execute(stmt).all()
    ]


def iter_entries(
    session: Session, batch: int = 2000
) -> Iterator[tuple[LedgerTransaction, list[Posting]]]:
    """Every transaction in posting order with its legs, streamed."""
    last = 0
    while True:
        txns = session.scalars(
            select(LedgerTransaction)
            .where(LedgerTransaction.id > last)
            .order_by(LedgerTransaction.id)
            .limit(batch)
        ).all()
        if not txns:
            return
        legs = _postings_of(session, [t.id for t in txns])
        for t in txns:
            yield t, legs[t.id]
        last = txns[-1].id


def _amount_text(amount: Decimal) -> str:
    text_ = format(amount.normalize(), "f")
    return text_ if "." in text_ else f"{text_}.00"


def export_beancount(session: Session, out: TextIO) -> int:
    """Write the ledger as beancount text (open directives, then every transaction); count them."""
    opened = session.execute(
        select(LedgerPosting.account, func.min(LedgerTransaction.date))
        .join(LedgerTransaction, LedgerTransaction.id == LedgerPosting.transaction_id)
        .group_by(LedgerPosting.account)
        .order_by(LedgerPosting.account)
    ).all()
    out.write(";; Attune royalty ledger, exported for audit\n\n")
    for account, first in opened:
        out.write(f"{first.isoformat()} open {account}\n")
    count = 0
    for t, legs in iter_entries(session):
        narration = t.narration.replace('"', "'")
        out.write(f'\n{t.date.isoformat()} * "Attune" "{narration}"\n')
        out.write(f'  key: "{t.key}"\n  usage_period: "{t.usage_period}"\n')
        if t.reverses_id is not None:
            out.write(f'  reverses: "{t.reverses_id}"\n')
        for p in legs:
            out.write(f"  {p.account:<50} {_amount_text(p.amount):>20} {p.currency}\n")
        count += 1
    return count
