"""Artists' routes: record, revoke and read consent, and delegate consent to a rightsholder."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from attune.api import access, responses
from attune.api.deps import ArtistKey, ConsentKey, DbSession, actor
from attune.api.responses import ConsentOut, DelegationOut
from attune.rights import registry
from attune.rights.records import ConsentIn, DelegationIn, Instant, Use

router = APIRouter(tags=["consent"])


class Revocation(BaseModel):
    """When a revocation takes effect (default: now) and the evidence for it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    effective_from: Instant | None = None
    evidence: str | None = Field(default=None, max_length=5000)


@router.post("/v1/consents", status_code=201)
def record_consent(data: ConsentIn, key: ConsentKey, session: DbSession) -> ConsentOut:
    """Append a consent record (opt in, opt out or constrained) for one use."""
    authored = access.consent_write(session, key, data)
    return responses.consent(registry.record_consent(session, authored, actor(key)))


@router.post("/v1/consents/{consent_id}/revoke", status_code=201)
def revoke_consent(
    consent_id: int, key: ConsentKey, session: DbSession, data: Revocation = Revocation()
) -> ConsentOut:
    """Revoke a consent record by appending a refusal with the same reach."""
    prior = registry.get_consent(session, consent_id)
    author = access.consent_for(session, key, prior.party_id, prior.use)
    revocation = registry.revoke_consent(
        session,
        consent_id,
        actor(key),
        effective_from=data.effective_from,
        recorded_by_id=author,
        evidence=data.evidence,
    )
    return responses.consent(revocation)


@router.get("/v1/consents")
def consent_history(
    key: ConsentKey,
    session: DbSession,
    party_id: int | None = None,
    recording: Annotated[str | None, Query(description="recording id or ISRC")] = None,
    use: Use | None = None,
) -> list[ConsentOut]:
    """Consent records in the order they were recorded, for a party or a recording."""
    rec = registry.find_recording(session, recording) if recording is not None else None
    party = access.history_scope(key, party_id, rec)
    records = registry.consent_history(
        session, party_id=party, recording_id=rec.id if rec else None, use=use
    )
    return [responses.consent(c) for c in records]


@router.post("/v1/delegations", status_code=201)
def delegate(data: DelegationIn, key: ArtistKey, session: DbSession) -> DelegationOut:
    """Let a delegate (e.g. a label) record consent for this artist, or withdraw that."""
    access.delegation_write(key, data)
    return responses.delegation(registry.add_delegation(session, data, actor(key)))
