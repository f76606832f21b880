"""initial registry, consent, keys and audit log

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=60), nullable=False),
        sa.Column("entity", sa.String(length=40), nullable=False),
        sa.Column("entity_id", sa.String(length=60), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_log")),
    )
    op.create_table(
        "parties",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("isni", sa.String(length=16), nullable=True),
        sa.Column("ipi", sa.String(length=11), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("kind IN ('person', 'organisation')", name=op.f("ck_parties_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_parties")),
        sa.UniqueConstraint("ipi", name=op.f("uq_parties_ipi")),
        sa.UniqueConstraint("isni", name=op.f("uq_parties_isni")),
    )
    with op.batch_alter_table("parties", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_parties_name"), ["name"], unique=False)

    op.create_table(
        "works",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("iswc", sa.String(length=11), nullable=True),
        sa.Column("source", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_works")),
        sa.UniqueConstraint("iswc", name=op.f("uq_works_iswc")),
    )
    op.create_table(
        "agreements",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=True),
        sa.Column("licensor_id", sa.Integer(), nullable=False),
        sa.Column("licensee_id", sa.Integer(), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.Column("worldwide", sa.Boolean(), nullable=False),
        sa.Column("covers_all", sa.Boolean(), nullable=False),
        sa.Column("ai_revenue_share", sa.BigInteger(), nullable=False),
        sa.Column("minimum_guarantee", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["licensee_id"], ["parties.id"], name=op.f("fk_agreements_licensee_id_parties")
        ),
        sa.ForeignKeyConstraint(
            ["licensor_id"], ["parties.id"], name=op.f("fk_agreements_licensor_id_parties")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agreements")),
        sa.UniqueConstraint("reference", name=op.f("uq_agreements_reference")),
    )
    with op.batch_alter_table("agreements", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_agreements_licensee_id"), ["licensee_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_agreements_licensor_id"), ["licensor_id"], unique=False
        )

    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("party_id", sa.Integer(), nullable=True),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.CheckConstraint(
            "role IN ('artist', 'rightsholder', 'platform', 'admin')", name=op.f("ck_api_keys_role")
        ),
        sa.ForeignKeyConstraint(
            ["party_id"], ["parties.id"], name=op.f("fk_api_keys_party_id_parties")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_keys_prefix")),
    )
    op.create_table(
        "delegations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("principal_id", sa.Integer(), nullable=False),
        sa.Column("delegate_id", sa.Integer(), nullable=False),
        sa.Column("use", sa.String(length=40), nullable=True),
        sa.Column("granted", sa.Boolean(), nullable=False),
        sa.Column("effective_from", sa.DateTime(), nullable=False),
        sa.Column("effective_until", sa.DateTime(), nullable=True),
        sa.Column("evidence", sa.Text(), nullable=True),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["delegate_id"], ["parties.id"], name=op.f("fk_delegations_delegate_id_parties")
        ),
        sa.ForeignKeyConstraint(
            ["principal_id"], ["parties.id"], name=op.f("fk_delegations_principal_id_parties")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delegations")),
    )
    with op.batch_alter_table("delegations", schema=None) as batch_op:
        batch_op.create_index("ix_delegations_pair", ["principal_id", "delegate_id"], unique=False)

    op.create_table(
        "party_aliases",
        sa.Column("party_id", sa.Integer(), nullable=False),
        sa.Column("alias", sa.String(length=300), nullable=False),
        sa.ForeignKeyConstraint(
            ["party_id"], ["parties.id"], name=op.f("fk_party_aliases_party_id_parties")
        ),
        sa.PrimaryKeyConstraint("party_id", "alias", name=op.f("pk_party_aliases")),
    )
    with op.batch_alter_table("party_aliases", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_party_aliases_alias"), ["alias"], unique=False)

    op.create_table(
        "party_roles",
        sa.Column("party_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.ForeignKeyConstraint(
            ["party_id"], ["parties.id"], name=op.f("fk_party_roles_party_id_parties")
        ),
        sa.PrimaryKeyConstraint("party_id", "role", name=op.f("pk_party_roles")),
    )
    op.create_table(
        "recordings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("isrc", sa.String(length=12), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("work_id", sa.Integer(), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=True),
        sa.Column("contains_ai", sa.String(length=12), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["work_id"], ["works.id"], name=op.f("fk_recordings_work_id_works")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recordings")),
        sa.UniqueConstraint("isrc", name=op.f("uq_recordings_isrc")),
    )
    with op.batch_alter_table("recordings", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_recordings_content_hash"), ["content_hash"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_recordings_work_id"), ["work_id"], unique=False)

    op.create_table(
        "work_shares",
        sa.Column("work_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("party_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("share", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("role IN ('writer', 'publisher')", name=op.f("ck_work_shares_role")),
        sa.ForeignKeyConstraint(
            ["party_id"], ["parties.id"], name=op.f("fk_work_shares_party_id_parties")
        ),
        sa.ForeignKeyConstraint(
            ["work_id"], ["works.id"], name=op.f("fk_work_shares_work_id_works")
        ),
        sa.PrimaryKeyConstraint("work_id", "position", name=op.f("pk_work_shares")),
    )
    with op.batch_alter_table("work_shares", schema=None) as batch_op:
        batch_op.create_index("ix_work_shares_party", ["party_id", "work_id"], unique=False)

    op.create_table(
        "agreement_items",
        sa.Column("agreement_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("recording_id", sa.Integer(), nullable=True),
        sa.Column("work_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "(recording_id IS NULL) <> (work_id IS NULL)",
            name=op.f("ck_agreement_items_one_target"),
        ),
        sa.ForeignKeyConstraint(
            ["agreement_id"],
            ["agreements.id"],
            name=op.f("fk_agreement_items_agreement_id_agreements"),
        ),
        sa.ForeignKeyConstraint(
            ["recording_id"],
            ["recordings.id"],
            name=op.f("fk_agreement_items_recording_id_recordings"),
        ),
        sa.ForeignKeyConstraint(
            ["work_id"], ["works.id"], name=op.f("fk_agreement_items_work_id_works")
        ),
        sa.PrimaryKeyConstraint("agreement_id", "position", name=op.f("pk_agreement_items")),
    )
    with op.batch_alter_table("agreement_items", schema=None) as batch_op:
        batch_op.create_index(
            "ix_agreement_items_recording", ["recording_id", "agreement_id"], unique=False
        )
        batch_op.create_index("ix_agreement_items_work", ["work_id", "agreement_id"], unique=False)

    op.create_table(
        "agreement_model_versions",
        sa.Column("agreement_id", sa.Integer(), nullable=False),
        sa.Column("model_version", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["agreement_id"],
            ["agreements.id"],
            name=op.f("fk_agreement_model_versions_agreement_id_agreements"),
        ),
        sa.PrimaryKeyConstraint(
            "agreement_id", "model_version", name=op.f("pk_agreement_model_versions")
        ),
    )
    op.create_table(
        "agreement_territories",
        sa.Column("agreement_id", sa.Integer(), nullable=False),
        sa.Column("territory", sa.String(length=2), nullable=False),
        sa.Column("excluded", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["agreement_id"],
            ["agreements.id"],
            name=op.f("fk_agreement_territories_agreement_id_agreements"),
        ),
        sa.PrimaryKeyConstraint("agreement_id", "territory", name=op.f("pk_agreement_territories")),
    )
    op.create_table(
        "agreement_uses",
        sa.Column("agreement_id", sa.Integer(), nullable=False),
        sa.Column("use", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["agreement_id"],
            ["agreements.id"],
            name=op.f("fk_agreement_uses_agreement_id_agreements"),
        ),
        sa.PrimaryKeyConstraint("agreement_id", "use", name=op.f("pk_agreement_uses")),
    )
    op.create_table(
        "consents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("party_id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=12), nullable=False),
        sa.Column("recording_id", sa.Integer(), nullable=True),
        sa.Column("work_id", sa.Integer(), nullable=True),
        sa.Column("use", sa.String(length=40), nullable=False),
        sa.Column("decision", sa.String(length=12), nullable=False),
        sa.Column("terms", sa.Text(), nullable=True),
        sa.Column("effective_from", sa.DateTime(), nullable=False),
        sa.Column("effective_until", sa.DateTime(), nullable=True),
        sa.Column("worldwide", sa.Boolean(), nullable=False),
        sa.Column("recorded_by_id", sa.Integer(), nullable=False),
        sa.Column("evidence", sa.Text(), nullable=True),
        sa.Column("supersedes_id", sa.Integer(), nullable=True),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint(
            "decision IN ('allowed', 'not_allowed', 'constrained')",
            name=op.f("ck_consents_decision"),
        ),
        sa.CheckConstraint("scope IN ('all', 'recording', 'work')", name=op.f("ck_consents_scope")),
        sa.ForeignKeyConstraint(
            ["party_id"], ["parties.id"], name=op.f("fk_consents_party_id_parties")
        ),
        sa.ForeignKeyConstraint(
            ["recorded_by_id"], ["parties.id"], name=op.f("fk_consents_recorded_by_id_parties")
        ),
        sa.ForeignKeyConstraint(
            ["recording_id"], ["recordings.id"], name=op.f("fk_consents_recording_id_recordings")
        ),
        sa.ForeignKeyConstraint(
            ["supersedes_id"], ["consents.id"], name=op.f("fk_consents_supersedes_id_consents")
        ),
        sa.ForeignKeyConstraint(["work_id"], ["works.id"], name=op.f("fk_consents_work_id_works")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consents")),
    )
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.create_index(
            "ix_consents_party_use", ["party_id", "use", "effective_from"], unique=False
        )
        batch_op.create_index("ix_consents_recording", ["recording_id"], unique=False)
        batch_op.create_index("ix_consents_work", ["work_id"], unique=False)

    op.create_table(
        "recording_artists",
        sa.Column("recording_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("party_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.CheckConstraint("role IN ('main', 'featured')", name=op.f("ck_recording_artists_role")),
        sa.ForeignKeyConstraint(
            ["party_id"], ["parties.id"], name=op.f("fk_recording_artists_party_id_parties")
        ),
        sa.ForeignKeyConstraint(
            ["recording_id"],
            ["recordings.id"],
            name=op.f("fk_recording_artists_recording_id_recordings"),
        ),
        sa.PrimaryKeyConstraint("recording_id", "position", name=op.f("pk_recording_artists")),
    )
    with op.batch_alter_table("recording_artists", schema=None) as batch_op:
        batch_op.create_index(
            "ix_recording_artists_party", ["party_id", "recording_id"], unique=False
        )

    op.create_table(
        "recording_owners",
        sa.Column("recording_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("party_id", sa.Integer(), nullable=False),
        sa.Column("share", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["party_id"], ["parties.id"], name=op.f("fk_recording_owners_party_id_parties")
        ),
        sa.ForeignKeyConstraint(
            ["recording_id"],
            ["recordings.id"],
            name=op.f("fk_recording_owners_recording_id_recordings"),
        ),
        sa.PrimaryKeyConstraint("recording_id", "position", name=op.f("pk_recording_owners")),
    )
    with op.batch_alter_table("recording_owners", schema=None) as batch_op:
        batch_op.create_index(
            "ix_recording_owners_party", ["party_id", "recording_id"], unique=False
        )

    op.create_table(
        "consent_territories",
        sa.Column("consent_id", sa.Integer(), nullable=False),
        sa.Column("territory", sa.String(length=2), nullable=False),
        sa.ForeignKeyConstraint(
            ["consent_id"], ["consents.id"], name=op.f("fk_consent_territories_consent_id_consents")
        ),
        sa.PrimaryKeyConstraint("consent_id", "territory", name=op.f("pk_consent_territories")),
    )


def downgrade() -> None:

    op.drop_table("consent_territories")
    with op.batch_alter_table("recording_owners", schema=None) as batch_op:
        batch_op.drop_index("ix_recording_owners_party")

    op.drop_table("recording_owners")
    with op.batch_alter_table("recording_artists", schema=None) as batch_op:
        batch_op.drop_index("ix_recording_artists_party")

    op.drop_table("recording_artists")
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.drop_index("ix_consents_work")
        batch_op.drop_index("ix_consents_recording")
        batch_op.drop_index("ix_consents_party_use")

    op.drop_table("consents")
    op.drop_table("agreement_uses")
    op.drop_table("agreement_territories")
    op.drop_table("agreement_model_versions")
    with op.batch_alter_table("agreement_items", schema=None) as batch_op:
        batch_op.drop_index("ix_agreement_items_work")
        batch_op.drop_index("ix_agreement_items_recording")

    op.drop_table("agreement_items")
    with op.batch_alter_table("work_shares", schema=None) as batch_op:
        batch_op.drop_index("ix_work_shares_party")

    op.drop_table("work_shares")
    with op.batch_alter_table("recordings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_recordings_work_id"))
        batch_op.drop_index(batch_op.f("ix_recordings_content_hash"))

    op.drop_table("recordings")
    op.drop_table("party_roles")
    with op.batch_alter_table("party_aliases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_party_aliases_alias"))

    op.drop_table("party_aliases")
    with op.batch_alter_table("delegations", schema=None) as batch_op:
        batch_op.drop_index("ix_delegations_pair")

    op.drop_table("delegations")
    op.drop_table("api_keys")
    with op.batch_alter_table("agreements", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_agreements_licensor_id"))
        batch_op.drop_index(batch_op.f("ix_agreements_licensee_id"))

    op.drop_table("agreements")
    op.drop_table("works")
    with op.batch_alter_table("parties", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_parties_name"))

    op.drop_table("parties")
    op.drop_table("audit_log")
