"""Typed response bodies, built from the registry's snapshots so every surface shows one shape."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict

from attune.api.keys import key_snapshot
from attune.rights import registry
from attune.rights.models import Agreement, ApiKey, Consent, Delegation, Party, Recording, Work
from attune.rights.policy import Decision


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class PartyOut(_Out):
    """A registered person or organisation."""

    id: int
    kind: str
    name: str
    isni: str | None
    ipi: str | None
    roles: list[str]
    aliases: list[str]


class ShareOut(_Out):
    """A writer's or publisher's share of a work, in percent."""

    party_id: int
    role: str
    share: Decimal


class WorkOut(_Out):
    """A registered composition and its shares."""

    id: int
    title: str
    iswc: str | None
    source: str | None
    shares: list[ShareOut]


class ArtistOut(_Out):
    """A main or featured artist on a recording."""

    party_id: int
    role: str


class OwnerOut(_Out):
    """A master owner's share of a recording, in percent."""

    party_id: int
    share: Decimal


class RecordingOut(_Out):
    """A registered master recording."""

    id: int
    title: str
    isrc: str
    duration_ms: int | None
    work_id: int | None
    content_hash: str | None
    contains_ai: str | None
    artists: list[ArtistOut]
    owners: list[OwnerOut]


class AgreementOut(_Out):
    """A registered upfront licence."""

    id: int
    reference: str | None
    licensor_id: int
    licensee_id: int
    uses: list[str]
    worldwide: bool
    territories: list[str]
    excluded_territories: list[str]
    start_date: date
    end_date: date | None
    ai_revenue_share: Decimal
    minimum_guarantee: Decimal
    currency: str
    model_versions: list[str]
    covers_all: bool
    recording_ids: list[int]
    work_ids: list[int]


class ConsentOut(_Out):
    """One append-only consent record."""

    id: int
    party_id: int
    use: str
    decision: str
    scope: str
    recording_id: int | None
    work_id: int | None
    terms: dict[str, Any] | None
    effective_from: datetime
    effective_until: datetime | None
    worldwide: bool
    territories: list[str]
    recorded_by_id: int
    evidence: str | None
    supersedes_id: int | None
    recorded_at: datetime


class DelegationOut(_Out):
    """One append-only delegation record."""

    id: int
    principal_id: int
    delegate_id: int
    use: str | None
    granted: bool
    effective_from: datetime
    effective_until: datetime | None
    evidence: str | None
    recorded_at: datetime


class KeyOut(_Out):
    """An API key as listed: never its secret or hash."""

    id: int
    prefix: str
    role: str
    party_id: int | None
    label: str | None
    created_at: datetime
    revoked_at: datetime | None


class IssuedKey(KeyOut):
    """A newly issued key with its full text, shown this once only."""

    key: str


class ReasonOut(_Out):
    """One reason behind a decision, naming the agreement, consent record or party."""

    code: str
    message: str
    party_id: int | None
    agreement_id: int | None
    consent_id: int | None


class DecisionOut(_Out):
    """May this recording be used for this purpose here and then, and why."""

    allowed: bool
    use: str
    recording_id: int
    at: datetime
    territory: str | None
    reasons: list[ReasonOut]
    terms: list[dict[str, Any]]


class BatchOut(_Out):
    """Decisions for many recordings: the ids allowed, and the first reason for each one not."""

    use: str
    at: datetime
    territory: str | None
    allowed: list[int]
    excluded: dict[int, ReasonOut]


class ChainProblemOut(_Out):
    """The first audit entry where the hash chain breaks."""

    seq: int
    reason: str


class AuditReport(_Out):
    """Whether the audit chain is intact and every registry row matches its last audited state."""

    ok: bool
    entries_checked: int
    chain_problem: ChainProblemOut | None
    rows_checked: int
    state_problem: str | None


class Health(_Out):
    """The service answers and reaches its database."""

    status: str
    version: str


def party(p: Party) -> PartyOut:
    """The response body of a party."""
    return PartyOut.model_validate(registry.party_snapshot(p))


def work(w: Work) -> WorkOut:
    """The response body of a work."""
    return WorkOut.model_validate(registry.work_snapshot(w))


def recording(r: Recording) -> RecordingOut:
    """The response body of a recording."""
    return RecordingOut.model_validate(registry.recording_snapshot(r))


def agreement(a: Agreement) -> AgreementOut:
    """The response body of an agreement."""
    return AgreementOut.model_validate(registry.agreement_snapshot(a))


def consent(c: Consent) -> ConsentOut:
    """The response body of a consent record."""
    return ConsentOut.model_validate(registry.consent_snapshot(c))


def delegation(d: Delegation) -> DelegationOut:
    """The response body of a delegation record."""
    return DelegationOut.model_validate(registry.delegation_snapshot(d))


def key(k: ApiKey) -> KeyOut:
    """The response body of a key, without its secret."""
    return KeyOut.model_validate(key_snapshot(k))


def decision(d: Decision) -> DecisionOut:
    """The response body of a decision."""
    return DecisionOut.model_validate(d.as_dict())
