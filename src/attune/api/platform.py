"""Platforms' routes: may this recording be used for this purpose, here and then, and why."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from attune.api import access, responses
from attune.api.deps import DbSession, PlatformKey
from attune.api.responses import BatchOut, DecisionOut, ReasonOut
from attune.rights import registry
from attune.rights.batch import decide_batch
from attune.rights.identifiers import normalise_territory
from attune.rights.policy import decide
from attune.rights.records import Instant, Use

router = APIRouter(tags=["decisions"])
Territory = Annotated[str, AfterValidator(normalise_territory)]
TERRITORY_DOC = "ISO 3166-1 alpha-2 code; omit for everywhere"
AT_DOC = "instant or date (00:00 UTC) of the use; omit for now"


class BatchIn(BaseModel):
    """Many recordings to decide at once for one use, instant and territory."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    recording_ids: tuple[int, ...] = Field(min_length=1, max_length=100_000)
    at: Instant | None = Field(default=None, description=AT_DOC)
    territory: Territory | None = Field(default=None, description=TERRITORY_DOC)
    model_version: str | None = Field(default=None, max_length=200)
    licensee_id: int | None = Field(default=None, description="admin keys only")


@router.get("/v1/decisions/{use}")
def decide_one(
    use: Use,
    recording: Annotated[str, Query(description="recording id or ISRC")],
    key: PlatformKey,
    session: DbSession,
    at: Annotated[Instant | None, Query(description=AT_DOC)] = None,
    territory: Annotated[Territory | None, Query(description=TERRITORY_DOC)] = None,
    model_version: Annotated[str | None, Query(max_length=200)] = None,
    licensee_id: Annotated[int | None, Query(description="admin keys only")] = None,
) -> DecisionOut:
    """Decide one use of one recording, naming every agreement and consent record behind it."""
    licensee = access.licensee_scope(key, licensee_id)
    rec = registry.find_recording(session, recording)
    decision = decide(
        session, use, rec, at, territory, licensee_id=licensee, model_version=model_version
    )
    return responses.decision(decision)


@router.post("/v1/decisions/{use}/batch")
def decide_many(use: Use, data: BatchIn, key: PlatformKey, session: DbSession) -> BatchOut:
    """Decide one use for many recordings: the allowed ids, and the first reason for the rest."""
    licensee = access.licensee_scope(key, data.licensee_id)
    result = decide_batch(
        session,
        use,
        data.at,
        data.territory,
        recording_ids=data.recording_ids,
        licensee_id=licensee,
        model_version=data.model_version,
    )
    return BatchOut(
        use=result.use,
        at=result.at,
        territory=result.territory,
        allowed=list(result.allowed),
        excluded={rid: ReasonOut.model_validate(r.as_dict()) for rid, r in result.excluded.items()},
    )
