"""AI outputs with attribution shares, usage reports, royalty runs and the append-only ledger

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_LEDGER = ("ledger_transactions", "ledger_postings")


def _append_only() -> None:
    """Refuse UPDATE and DELETE on ledger rows, and bookings into a closed period."""
    closed = "EXISTS (SELECT 1 FROM royalty_periods WHERE period = NEW.booked_period)"
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION attune_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION 'the ledger is append-only: post a reversal instead'; END $$"
        )
        op.execute(
            "CREATE FUNCTION attune_ledger_open_period() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN IF {closed} THEN RAISE EXCEPTION 'period % is closed', NEW.booked_period; "
            "END IF; RETURN NEW; END $$"
        )
        for table in _LEDGER:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION attune_ledger_append_only()"
            )
        op.execute(
            "CREATE TRIGGER ledger_transactions_open_period BEFORE INSERT ON ledger_transactions "
            "FOR EACH ROW EXECUTE FUNCTION attune_ledger_open_period()"
        )
        return
    for table in _LEDGER:
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{event.lower()} BEFORE {event} ON {table} "
                "BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: post a reversal instead'); "
                "END"
            )
    op.execute(
        "CREATE TRIGGER ledger_transactions_open_period BEFORE INSERT ON ledger_transactions "
        f"WHEN {closed} BEGIN SELECT RAISE(ABORT, 'the period is closed'); END"
    )


def _drop_append_only() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in _LEDGER:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute("DROP TRIGGER IF EXISTS ledger_transactions_open_period ON ledger_transactions")
        op.execute("DROP FUNCTION IF EXISTS attune_ledger_append_only()")
        op.execute("DROP FUNCTION IF EXISTS attune_ledger_open_period()")
        return
    for table in _LEDGER:
        for event in ("update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{event}")
    op.execute("DROP TRIGGER IF EXISTS ledger_transactions_open_period")


def upgrade() -> None:
    op.create_table(
        "royalty_periods",
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("closed_at", sa.DateTime(), nullable=False),
        sa.Column("closed_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("period", name=op.f("pk_royalty_periods")),
    )
    op.create_table(
        "royalty_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("usage_period", sa.String(length=7), nullable=False),
        sa.Column("booked_period", sa.String(length=7), nullable=False),
        sa.Column("input_hash", sa.String(length=64), nullable=False),
        sa.Column("result_hash", sa.String(length=64), nullable=False),
        sa.Column("path", sa.String(length=500), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("posted_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("status IN ('posted', 'reversed')", name=op.f("ck_royalty_runs_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_royalty_runs")),
    )
    with op.batch_alter_table("royalty_runs", schema=None) as batch_op:
        batch_op.create_index("ix_royalty_runs_period", ["usage_period", "status"], unique=False)

    op.create_table(
        "usage_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("file_sha256", sa.String(length=64), nullable=False),
        sa.Column("file_name", sa.String(length=500), nullable=False),
        sa.Column("format", sa.String(length=8), nullable=False),
        sa.Column("sender", sa.String(length=200), nullable=False),
        sa.Column("message_id", sa.String(length=200), nullable=False),
        sa.Column("service", sa.String(length=200), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("report_key", sa.String(length=500), nullable=False),
        sa.Column("lines", sa.BigInteger(), nullable=False),
        sa.Column("units", sa.BigInteger(), nullable=False),
        sa.Column("revenue", sa.Text(), nullable=False),
        sa.Column("path", sa.String(length=500), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("supersedes_id", sa.Integer(), nullable=True),
        sa.Column("ingested_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint(
            "status IN ('active', 'superseded')", name=op.f("ck_usage_reports_status")
        ),
        sa.ForeignKeyConstraint(
            ["supersedes_id"],
            ["usage_reports.id"],
            name=op.f("fk_usage_reports_supersedes_id_usage_reports"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_reports")),
        sa.UniqueConstraint("file_sha256", name=op.f("uq_usage_reports_file_sha256")),
    )
    with op.batch_alter_table("usage_reports", schema=None) as batch_op:
        batch_op.create_index("ix_usage_reports_key", ["report_key", "status"], unique=False)
        batch_op.create_index("ix_usage_reports_message", ["sender", "message_id"], unique=True)
        batch_op.create_index(batch_op.f("ix_usage_reports_period"), ["period"], unique=False)

    op.create_table(
        "ledger_transactions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("booked_period", sa.String(length=7), nullable=False),
        sa.Column("usage_period", sa.String(length=7), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("narration", sa.String(length=500), nullable=False),
        sa.Column("reverses_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('allocation', 'reversal')", name=op.f("ck_ledger_transactions_kind")
        ),
        sa.ForeignKeyConstraint(
            ["reverses_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_ledger_transactions_reverses_id_ledger_transactions"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["royalty_runs.id"], name=op.f("fk_ledger_transactions_run_id_royalty_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_transactions")),
        sa.UniqueConstraint("key", name=op.f("uq_ledger_transactions_key")),
    )
    with op.batch_alter_table("ledger_transactions", schema=None) as batch_op:
        batch_op.create_index("ix_ledger_transactions_period", ["booked_period"], unique=False)
        batch_op.create_index(batch_op.f("ix_ledger_transactions_run_id"), ["run_id"], unique=False)

    op.create_table(
        "outputs",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("platform_id", sa.Integer(), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["platform_id"], ["parties.id"], name=op.f("fk_outputs_platform_id_parties")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outputs")),
    )
    with op.batch_alter_table("outputs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_outputs_platform_id"), ["platform_id"], unique=False)

    op.create_table(
        "ledger_postings",
        sa.Column("transaction_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("account", sa.String(length=200), nullable=False),
        sa.Column("party_id", sa.Integer(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["party_id"], ["parties.id"], name=op.f("fk_ledger_postings_party_id_parties")
        ),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["ledger_transactions.id"],
            name=op.f("fk_ledger_postings_transaction_id_ledger_transactions"),
        ),
        sa.PrimaryKeyConstraint("transaction_id", "position", name=op.f("pk_ledger_postings")),
    )
    with op.batch_alter_table("ledger_postings", schema=None) as batch_op:
        batch_op.create_index("ix_ledger_postings_account", ["account", "currency"], unique=False)
        batch_op.create_index(batch_op.f("ix_ledger_postings_party_id"), ["party_id"], unique=False)

    op.create_table(
        "output_attributions",
        sa.Column("output_id", sa.String(length=100), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("recording_id", sa.Integer(), nullable=True),
        sa.Column("work_id", sa.Integer(), nullable=True),
        sa.Column("share", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "(recording_id IS NULL) <> (work_id IS NULL)",
            name=op.f("ck_output_attributions_one_target"),
        ),
        sa.ForeignKeyConstraint(
            ["output_id"], ["outputs.id"], name=op.f("fk_output_attributions_output_id_outputs")
        ),
        sa.ForeignKeyConstraint(
            ["recording_id"],
            ["recordings.id"],
            name=op.f("fk_output_attributions_recording_id_recordings"),
        ),
        sa.ForeignKeyConstraint(
            ["work_id"], ["works.id"], name=op.f("fk_output_attributions_work_id_works")
        ),
        sa.PrimaryKeyConstraint("output_id", "position", name=op.f("pk_output_attributions")),
    )
    with op.batch_alter_table("output_attributions", schema=None) as batch_op:
        batch_op.create_index("ix_output_attributions_recording", ["recording_id"], unique=False)
        batch_op.create_index("ix_output_attributions_work", ["work_id"], unique=False)

    op.create_table(
        "royalty_terms",
        sa.Column("agreement_id", sa.Integer(), nullable=False),
        sa.Column("catalog_policy", sa.String(length=12), nullable=False),
        sa.Column("ai_publishing_share", sa.BigInteger(), nullable=False),
        sa.Column("catalog_publishing_share", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint(
            "catalog_policy IN ('pro_rata', 'user_centric')", name=op.f("ck_royalty_terms_policy")
        ),
        sa.ForeignKeyConstraint(
            ["agreement_id"],
            ["agreements.id"],
            name=op.f("fk_royalty_terms_agreement_id_agreements"),
        ),
        sa.PrimaryKeyConstraint("agreement_id", name=op.f("pk_royalty_terms")),
    )
    _append_only()


def downgrade() -> None:
    _drop_append_only()
    op.drop_table("royalty_terms")
    with op.batch_alter_table("output_attributions", schema=None) as batch_op:
        batch_op.drop_index("ix_output_attributions_work")
        batch_op.drop_index("ix_output_attributions_recording")

    op.drop_table("output_attributions")
    with op.batch_alter_table("ledger_postings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_postings_party_id"))
        batch_op.drop_index("ix_ledger_postings_account")

    op.drop_table("ledger_postings")
    with op.batch_alter_table("outputs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outputs_platform_id"))

    op.drop_table("outputs")
    with op.batch_alter_table("ledger_transactions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_transactions_run_id"))
        batch_op.drop_index("ix_ledger_transactions_period")

    op.drop_table("ledger_transactions")
    with op.batch_alter_table("usage_reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_usage_reports_period"))
        batch_op.drop_index("ix_usage_reports_message")
        batch_op.drop_index("ix_usage_reports_key")

    op.drop_table("usage_reports")
    with op.batch_alter_table("royalty_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_royalty_runs_period")

    op.drop_table("royalty_runs")
    op.drop_table("royalty_periods")
