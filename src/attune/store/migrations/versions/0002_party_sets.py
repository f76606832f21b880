"""party sets: the distinct check lists batch consent decisions decide once for many recordings

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "party_sets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("signature", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_party_sets")),
        sa.UniqueConstraint("signature", name=op.f("uq_party_sets_signature")),
    )
    op.create_table(
        "party_set_members",
        sa.Column("party_set_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("party_id", sa.Integer(), nullable=True),
        sa.Column("role", sa.String(length=12), nullable=False),
        sa.CheckConstraint(
            "role IN ('no_owner', 'no_artist', 'no_work', 'no_writer', 'owner', 'main', "
            "'featured', 'writer')",
            name=op.f("ck_party_set_members_role"),
        ),
        sa.ForeignKeyConstraint(
            ["party_id"], ["parties.id"], name=op.f("fk_party_set_members_party_id_parties")
        ),
        sa.ForeignKeyConstraint(
            ["party_set_id"],
            ["party_sets.id"],
            name=op.f("fk_party_set_members_party_set_id_party_sets"),
        ),
        sa.PrimaryKeyConstraint("party_set_id", "position", name=op.f("pk_party_set_members")),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "recording_party_sets",
        sa.Column("recording_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("party_set_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["party_set_id"],
            ["party_sets.id"],
            name=op.f("fk_recording_party_sets_party_set_id_party_sets"),
        ),
        sa.ForeignKeyConstraint(
            ["recording_id"],
            ["recordings.id"],
            name=op.f("fk_recording_party_sets_recording_id_recordings"),
        ),
        sa.PrimaryKeyConstraint("recording_id", name=op.f("pk_recording_party_sets")),
    )
    with op.batch_alter_table("recording_party_sets", schema=None) as batch_op:
        batch_op.create_index(
            "ix_recording_party_sets_set", ["party_set_id", "recording_id"], unique=False
        )

    from attune.rights.batch import assign_party_sets

    assign_party_sets(op.get_bind())


def downgrade() -> None:
    with op.batch_alter_table("recording_party_sets", schema=None) as batch_op:
        batch_op.drop_index("ix_recording_party_sets_set")
    op.drop_table("recording_party_sets")
    op.drop_table("party_set_members")
    op.drop_table("party_sets")
