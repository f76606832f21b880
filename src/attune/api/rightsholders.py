"""Rightsholders' routes: register and read parties, works, recordings and agreements."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from attune.api import access, responses
from attune.api.deps import CatalogKey, DbSession, RecordingReaderKey, actor
from attune.api.responses import AgreementOut, PartyOut, RecordingOut, WorkOut
from attune.rights import registry
from attune.rights.records import AgreementIn, PartyIn, RecordingIn, Role, WorkIn

router = APIRouter(tags=["catalog"])
Limit = Annotated[int, Query(ge=1, le=1000, description="most rows to return")]


@router.post("/v1/parties", status_code=201)
def add_party(data: PartyIn, key: CatalogKey, session: DbSession) -> PartyOut:
    """Register a person or organisation (an artist, writer, licensee, ...)."""
    return responses.party(registry.add_party(session, data, actor(key)))


@router.get("/v1/parties")
def list_parties(
    key: CatalogKey, session: DbSession, role: Role | None = None, limit: Limit = 100
) -> list[PartyOut]:
    """Parties in id order, optionally only those with one role."""
    return [responses.party(p) for p in registry.list_parties(session, role, limit)]


@router.get("/v1/parties/{ref}")
def show_party(ref: str, key: CatalogKey, session: DbSession) -> PartyOut:
    """One party by id, ISNI, IPI, name or alias."""
    return responses.party(registry.find_party(session, ref))


@router.post("/v1/works", status_code=201)
def add_work(data: WorkIn, key: CatalogKey, session: DbSession) -> WorkOut:
    """Register a work this party writes or publishes."""
    access.work_write(key, data)
    return responses.work(registry.add_work(session, data, actor(key)))


@router.get("/v1/works")
def list_works(key: CatalogKey, session: DbSession, limit: Limit = 100) -> list[WorkOut]:
    """Works this party writes or publishes, in id order."""
    works = access.works_held(session, access.catalog_scope(key), limit)
    return [responses.work(w) for w in works]


@router.get("/v1/works/{ref}")
def show_work(ref: str, key: CatalogKey, session: DbSession) -> WorkOut:
    """One work by id or ISWC."""
    work = registry.find_work(session, ref)
    access.work_read(key, work)
    return responses.work(work)


@router.post("/v1/recordings", status_code=201)
def add_recording(data: RecordingIn, key: CatalogKey, session: DbSession) -> RecordingOut:
    """Register a recording this party is a master owner of."""
    access.recording_write(key, data)
    return responses.recording(registry.add_recording(session, data, actor(key)))


@router.get("/v1/recordings")
def list_recordings(
    key: RecordingReaderKey, session: DbSession, limit: Limit = 100
) -> list[RecordingOut]:
    """Recordings in id order: a rightsholder's own, or (platform, admin) all of them."""
    recordings = registry.list_recordings(session, access.catalog_scope(key), limit)
    return [responses.recording(r) for r in recordings]


@router.get("/v1/recordings/{ref}")
def show_recording(ref: str, key: RecordingReaderKey, session: DbSession) -> RecordingOut:
    """One recording by id or ISRC."""
    rec = registry.find_recording(session, ref)
    access.recording_read(key, rec)
    return responses.recording(rec)


@router.post("/v1/agreements", status_code=201)
def add_agreement(data: AgreementIn, key: CatalogKey, session: DbSession) -> AgreementOut:
    """Register an upfront licence granted by this party."""
    access.agreement_write(session, key, data)
    return responses.agreement(registry.add_agreement(session, data, actor(key)))


@router.get("/v1/agreements")
def list_agreements(key: CatalogKey, session: DbSession, limit: Limit = 100) -> list[AgreementOut]:
    """Agreements this party is licensor or licensee of, in id order."""
    agreements = registry.list_agreements(session, access.catalog_scope(key), limit)
    return [responses.agreement(a) for a in agreements]


@router.get("/v1/agreements/{agreement_id}")
def show_agreement(agreement_id: int, key: CatalogKey, session: DbSession) -> AgreementOut:
    """One agreement by id."""
    agreement = registry.get_agreement(session, agreement_id)
    access.agreement_read(key, agreement)
    return responses.agreement(agreement)
