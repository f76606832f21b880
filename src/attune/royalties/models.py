"""Royalty tables: usage reports, allocation terms, runs, closed periods and the ledger.

The ledger is append-only: rows are only ever inserted; a correction is a reversal entry.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from attune.store.db import Base
from attune.store.types import Micro, UtcDateTime


class UsageReport(Base):
    """One ingested usage file: its identity (message id, hash), period and where its rows live."""

    __tablename__ = "usage_reports"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'superseded')", name="status"),
        Index("ix_usage_reports_message", "sender", "message_id", unique=True),
        Index("ix_usage_reports_key", "report_key", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    file_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    file_name: Mapped[str] = mapped_column(String(500))
    format: Mapped[str] = mapped_column(String(8))
    sender: Mapped[str] = mapped_column(String(200))
    message_id: Mapped[str] = mapped_column(String(200))
    service: Mapped[str] = mapped_column(String(200))
    period: Mapped[str] = mapped_column(String(7), index=True)
    report_key: Mapped[str] = mapped_column(String(500))
    lines: Mapped[int] = mapped_column(BigInteger)
    units: Mapped[int] = mapped_column(BigInteger)
    revenue: Mapped[str] = mapped_column(Text)
    path: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(12))
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("usage_reports.id"))
    ingested_at: Mapped[datetime] = mapped_column(UtcDateTime())


class RoyaltyTerms(Base):
    """How an agreement's money is divided: catalog policy and the publishing side's share."""

    __tablename__ = "royalty_terms"
    __table_args__ = (
        CheckConstraint("catalog_policy IN ('pro_rata', 'user_centric')", name="policy"),
    )

    agreement_id: Mapped[int] = mapped_column(ForeignKey("agreements.id"), primary_key=True)
    catalog_policy: Mapped[str] = mapped_column(String(12))
    ai_publishing_share: Mapped[Decimal] = mapped_column(Micro())
    catalog_publishing_share: Mapped[Decimal] = mapped_column(Micro())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class RoyaltyRun(Base):
    """One allocation of a usage period, identified by the hash of all it was computed from."""

    __tablename__ = "royalty_runs"
    __table_args__ = (
        CheckConstraint("status IN ('posted', 'reversed')", name="status"),
        Index("ix_royalty_runs_period", "usage_period", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    usage_period: Mapped[str] = mapped_column(String(7))
    booked_period: Mapped[str] = mapped_column(String(7))
    input_hash: Mapped[str] = mapped_column(String(64))
    result_hash: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(500))
    summary: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(10))
    posted_at: Mapped[datetime] = mapped_column(UtcDateTime())


class RoyaltyPeriod(Base):
    """A closed accounting period: nothing more is booked into it."""

    __tablename__ = "royalty_periods"

    period: Mapped[str] = mapped_column(String(7), primary_key=True)
    closed_at: Mapped[datetime] = mapped_column(UtcDateTime())
    closed_by: Mapped[str] = mapped_column(String(200))


class LedgerTransaction(Base):
    """A balanced ledger entry, keyed deterministically so that no run can post it twice."""

    __tablename__ = "ledger_transactions"
    __table_args__ = (
        CheckConstraint("kind IN ('allocation', 'reversal')", name="kind"),
        Index("ix_ledger_transactions_period", "booked_period"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("royalty_runs.id"), index=True)
    booked_period: Mapped[str] = mapped_column(String(7))
    usage_period: Mapped[str] = mapped_column(String(7))
    date: Mapped[date] = mapped_column(Date)
    kind: Mapped[str] = mapped_column(String(10))
    narration: Mapped[str] = mapped_column(String(500))
    reverses_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_transactions.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class LedgerPosting(Base):
    """One leg of a transaction: an amount (exact, micro-units) on an account in a currency."""

    __tablename__ = "ledger_postings"
    __table_args__ = (Index("ix_ledger_postings_account", "account", "currency"),)

    transaction_id: Mapped[int] = mapped_column(
        ForeignKey("ledger_transactions.id"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    account: Mapped[str] = mapped_column(String(200))
    party_id: Mapped[int | None] = mapped_column(ForeignKey("parties.id"), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[Decimal] = mapped_column(Micro())
