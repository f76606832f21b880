"""Registry tables: parties, works, recordings, splits, agreements, consent and delegations.

Consent and delegation rows are append-only: a revocation is a new row, never an update.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from attune.store.db import Base
from attune.store.types import Micro, UtcDateTime

PARTY_KINDS = ("person", "organisation")
ROLES = ("artist", "songwriter", "producer", "label", "publisher", "distributor", "platform")
WORK_SHARE_ROLES = ("writer", "publisher")
ARTIST_ROLES = ("main", "featured")
USES = ("train", "style_reference", "voice_likeness", "remix_stems", "sample")
CONSENT_DECISIONS = ("allowed", "not_allowed", "constrained")
CONSENT_SCOPES = ("all", "recording", "work")
CONTAINS_AI = ("All", "Partly", "None", "Undeclared")


class Party(Base):
    """A person or organisation that holds rights, performs, writes or licenses."""

    __tablename__ = "parties"
    __table_args__ = (CheckConstraint("kind IN ('person', 'organisation')", name="kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(300), index=True)
    isni: Mapped[str | None] = mapped_column(String(16), unique=True)
    ipi: Mapped[str | None] = mapped_column(String(11), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())

    roles: Mapped[list[PartyRole]] = relationship(
        cascade="all, delete-orphan", order_by="PartyRole.role", lazy="selectin"
    )
    aliases: Mapped[list[PartyAlias]] = relationship(
        cascade="all, delete-orphan", order_by="PartyAlias.alias", lazy="selectin"
    )


class PartyRole(Base):
    """One role a party plays (artist, songwriter, label, ...)."""

    __tablename__ = "party_roles"

    party_id: Mapped[int] = mapped_column(ForeignKey("parties.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(20), primary_key=True)


class PartyAlias(Base):
    """Another name a party is known by (stage name, former name)."""

    __tablename__ = "party_aliases"

    party_id: Mapped[int] = mapped_column(ForeignKey("parties.id"), primary_key=True)
    alias: Mapped[str] = mapped_column(String(300), primary_key=True, index=True)


class Work(Base):
    """A musical composition with its writer and publisher shares (totalling 100%)."""

    __tablename__ = "works"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(500))
    iswc: Mapped[str | None] = mapped_column(String(11), unique=True)
    source: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())

    shares: Mapped[list[WorkShare]] = relationship(
        cascade="all, delete-orphan", order_by="WorkShare.position", lazy="selectin"
    )


class WorkShare(Base):
    """A writer's or publisher's share of a work, in percent."""

    __tablename__ = "work_shares"
    __table_args__ = (
        CheckConstraint("role IN ('writer', 'publisher')", name="role"),
        Index("ix_work_shares_party", "party_id", "work_id"),
    )

    work_id: Mapped[int] = mapped_column(ForeignKey("works.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    party_id: Mapped[int] = mapped_column(ForeignKey("parties.id"))
    role: Mapped[str] = mapped_column(String(20))
    share: Mapped[Decimal] = mapped_column(Micro())


class Recording(Base):
    """A master recording: ISRC, the work it records, its artists and master owners."""

    __tablename__ = "recordings"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(500))
    isrc: Mapped[str] = mapped_column(String(12), unique=True)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    work_id: Mapped[int | None] = mapped_column(ForeignKey("works.id"), index=True)
    content_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    contains_ai: Mapped[str | None] = mapped_column(String(12))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())

    artists: Mapped[list[RecordingArtist]] = relationship(
        cascade="all, delete-orphan", order_by="RecordingArtist.position", lazy="selectin"
    )
    owners: Mapped[list[RecordingOwner]] = relationship(
        cascade="all, delete-orphan", order_by="RecordingOwner.position", lazy="selectin"
    )


class RecordingArtist(Base):
    """A main or featured artist on a recording."""

    __tablename__ = "recording_artists"
    __table_args__ = (
        CheckConstraint("role IN ('main', 'featured')", name="role"),
        Index("ix_recording_artists_party", "party_id", "recording_id"),
    )

    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    party_id: Mapped[int] = mapped_column(ForeignKey("parties.id"))
    role: Mapped[str] = mapped_column(String(20))


class RecordingOwner(Base):
    """A master owner's share of a recording, in percent."""

    __tablename__ = "recording_owners"
    __table_args__ = (Index("ix_recording_owners_party", "party_id", "recording_id"),)

    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    party_id: Mapped[int] = mapped_column(ForeignKey("parties.id"))
    share: Mapped[Decimal] = mapped_column(Micro())


class Agreement(Base):
    """An upfront licence from a licensor to a licensee for some uses, places and dates."""

    __tablename__ = "agreements"

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str | None] = mapped_column(String(200), unique=True)
    licensor_id: Mapped[int] = mapped_column(ForeignKey("parties.id"), index=True)
    licensee_id: Mapped[int] = mapped_column(ForeignKey("parties.id"), index=True)
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date | None] = mapped_column(Date)
    worldwide: Mapped[bool] = mapped_column(Boolean)
    covers_all: Mapped[bool] = mapped_column(Boolean)
    ai_revenue_share: Mapped[Decimal] = mapped_column(Micro())
    minimum_guarantee: Mapped[Decimal] = mapped_column(Micro())
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())

    uses: Mapped[list[AgreementUse]] = relationship(
        cascade="all, delete-orphan", order_by="AgreementUse.use", lazy="selectin"
    )
    territories: Mapped[list[AgreementTerritory]] = relationship(
        cascade="all, delete-orphan", order_by="AgreementTerritory.territory", lazy="selectin"
    )
    model_versions: Mapped[list[AgreementModelVersion]] = relationship(
        cascade="all, delete-orphan",
        order_by="AgreementModelVersion.model_version",
        lazy="selectin",
    )
    items: Mapped[list[AgreementItem]] = relationship(
        cascade="all, delete-orphan", order_by="AgreementItem.position", lazy="selectin"
    )


class AgreementUse(Base):
    """A use an agreement licenses."""

    __tablename__ = "agreement_uses"

    agreement_id: Mapped[int] = mapped_column(ForeignKey("agreements.id"), primary_key=True)
    use: Mapped[str] = mapped_column(String(40), primary_key=True)


class AgreementTerritory(Base):
    """A territory an agreement lists: included, or (for a worldwide agreement) excluded."""

    __tablename__ = "agreement_territories"

    agreement_id: Mapped[int] = mapped_column(ForeignKey("agreements.id"), primary_key=True)
    territory: Mapped[str] = mapped_column(String(2), primary_key=True)
    excluded: Mapped[bool] = mapped_column(Boolean)


class AgreementModelVersion(Base):
    """A model version an agreement is pinned to (no rows: any model version)."""

    __tablename__ = "agreement_model_versions"

    agreement_id: Mapped[int] = mapped_column(ForeignKey("agreements.id"), primary_key=True)
    model_version: Mapped[str] = mapped_column(String(200), primary_key=True)


class AgreementItem(Base):
    """One recording or work an agreement covers when it does not cover the whole catalog."""

    __tablename__ = "agreement_items"
    __table_args__ = (
        CheckConstraint("(recording_id IS NULL) <> (work_id IS NULL)", name="one_target"),
        Index("ix_agreement_items_recording", "recording_id", "agreement_id"),
        Index("ix_agreement_items_work", "work_id", "agreement_id"),
    )

    agreement_id: Mapped[int] = mapped_column(ForeignKey("agreements.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    recording_id: Mapped[int | None] = mapped_column(ForeignKey("recordings.id"))
    work_id: Mapped[int | None] = mapped_column(ForeignKey("works.id"))


class Consent(Base):
    """One append-only consent record: a party's choice for one use of some of its works."""

    __tablename__ = "consents"
    __table_args__ = (
        CheckConstraint("decision IN ('allowed', 'not_allowed', 'constrained')", name="decision"),
        CheckConstraint("scope IN ('all', 'recording', 'work')", name="scope"),
        Index("ix_consents_party_use", "party_id", "use", "effective_from"),
        Index("ix_consents_recording", "recording_id"),
        Index("ix_consents_work", "work_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    party_id: Mapped[int] = mapped_column(ForeignKey("parties.id"))
    scope: Mapped[str] = mapped_column(String(12))
    recording_id: Mapped[int | None] = mapped_column(ForeignKey("recordings.id"))
    work_id: Mapped[int | None] = mapped_column(ForeignKey("works.id"))
    use: Mapped[str] = mapped_column(String(40))
    decision: Mapped[str] = mapped_column(String(12))
    terms: Mapped[str | None] = mapped_column(Text)
    effective_from: Mapped[datetime] = mapped_column(UtcDateTime())
    effective_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    worldwide: Mapped[bool] = mapped_column(Boolean)
    recorded_by_id: Mapped[int] = mapped_column(ForeignKey("parties.id"))
    evidence: Mapped[str | None] = mapped_column(Text)
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("consents.id"))
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime())

    territories: Mapped[list[ConsentTerritory]] = relationship(
        cascade="all, delete-orphan", order_by="ConsentTerritory.territory", lazy="selectin"
    )


class ConsentTerritory(Base):
    """A territory a non-worldwide consent record applies to."""

    __tablename__ = "consent_territories"

    consent_id: Mapped[int] = mapped_column(ForeignKey("consents.id"), primary_key=True)
    territory: Mapped[str] = mapped_column(String(2), primary_key=True)


class Delegation(Base):
    """Append-only: lets a delegate record consent for a principal (one use, or every use)."""

    __tablename__ = "delegations"
    __table_args__ = (Index("ix_delegations_pair", "principal_id", "delegate_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    principal_id: Mapped[int] = mapped_column(ForeignKey("parties.id"))
    delegate_id: Mapped[int] = mapped_column(ForeignKey("parties.id"))
    use: Mapped[str | None] = mapped_column(String(40))
    granted: Mapped[bool] = mapped_column(Boolean)
    effective_from: Mapped[datetime] = mapped_column(UtcDateTime())
    effective_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    evidence: Mapped[str | None] = mapped_column(Text)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime())


class ApiKey(Base):
    """An API key, stored as a SHA-256 hash, belonging to a party and a role."""

    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint("role IN ('artist', 'rightsholder', 'platform', 'admin')", name="role"),
        UniqueConstraint("prefix"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64))
    party_id: Mapped[int | None] = mapped_column(ForeignKey("parties.id"))
    role: Mapped[str] = mapped_column(String(20))
    label: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


PARTY_SET_ROLES = (
    "no_owner",
    "no_artist",
    "no_work",
    "no_writer",
    "owner",
    "main",
    "featured",
    "writer",
)


class PartySet(Base):
    """One distinct ordered list of the checks a decision makes; many recordings share one.

    Derived from recordings and works by the registry (not audited), so that batch decisions
    decide each list once instead of each recording.
    """

    __tablename__ = "party_sets"

    id: Mapped[int] = mapped_column(primary_key=True)
    signature: Mapped[str] = mapped_column(String(64), unique=True)


class PartySetMember(Base):
    """One check of a party set in decision order: a party in a role, or a missing-party marker."""

    __tablename__ = "party_set_members"
    __table_args__ = (
        CheckConstraint(
            "role IN ('no_owner', 'no_artist', 'no_work', 'no_writer', 'owner', 'main', "
            "'featured', 'writer')",
            name="role",
        ),
        {"sqlite_with_rowid": False},
    )

    party_set_id: Mapped[int] = mapped_column(ForeignKey("party_sets.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    party_id: Mapped[int | None] = mapped_column(ForeignKey("parties.id"))
    role: Mapped[str] = mapped_column(String(12))


class RecordingPartySet(Base):
    """The party set whose checks decide a recording."""

    __tablename__ = "recording_party_sets"
    __table_args__ = (Index("ix_recording_party_sets_set", "party_set_id", "recording_id"),)

    recording_id: Mapped[int] = mapped_column(
        ForeignKey("recordings.id"), primary_key=True, autoincrement=False
    )
    party_set_id: Mapped[int] = mapped_column(ForeignKey("party_sets.id"))
