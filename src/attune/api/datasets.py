"""Dataset routes: AI teams build and check signed training sets; parties see what revocations hit.

A platform key builds under its own agreements only (it is the licensee) and reads only the
datasets built for it; an admin key builds and reads any. A party's impact is read by that
party's own artist or rightsholder key, or an admin.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from attune.api import access
from attune.api.deps import ConsentKey, DbSession, PlatformKey, actor
from attune.api.problems import ApiError
from attune.api.responses import ReasonOut
from attune.generate.dataset import (
    build_dataset,
    consent_impact,
    dataset_snapshots,
    get_dataset,
    list_datasets,
    manifest_of,
    verify_dataset,
)
from attune.generate.models import Dataset
from attune.rights.identifiers import normalise_territory
from attune.rights.models import ApiKey
from attune.rights.policy import as_instant
from attune.rights.records import Instant, Use

router = APIRouter(tags=["datasets"])
Territory = Annotated[str, AfterValidator(normalise_territory)]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class DatasetIn(BaseModel):
    """What to build: the use, the instant and territory of the decisions, and a name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    use: Use = "train"
    at: Instant | None = Field(default=None, description="instant or date; omit for now")
    territory: Territory | None = Field(default=None, description="omit for everywhere")
    name: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
        | None
    ) = None
    licensee_id: int | None = Field(default=None, description="admin keys only")


class DatasetOut(_Out):
    """A dataset's header: what it was decided for, its counts, hash, signature and key."""

    id: int
    name: str
    use: str
    at: datetime
    territory: str | None
    licensee_id: int | None
    created_at: datetime
    created_by: str
    sha256: str
    signature: str
    public_key: str
    included: int
    excluded: int


class DatasetDetailOut(DatasetOut):
    """A dataset with its full manifest (the signed document, parsed)."""

    manifest: dict[str, Any]


class VerificationOut(_Out):
    """Whether a dataset's hash, signature, stored items and content hashes check out."""

    dataset_id: int
    ok: bool
    problems: list[str]


class StaleItemOut(_Out):
    """An included recording now refused, and the reasons naming the party's record."""

    recording_id: int
    isrc: str
    work_id: int | None
    reasons: list[ReasonOut]


class ImpactedDatasetOut(_Out):
    """A dataset holding items the party no longer allows."""

    id: int
    name: str
    use: str
    at: datetime
    sha256: str
    items: list[StaleItemOut]


class ImpactedModelOut(_Out):
    """A model trained on an impacted dataset (flagged)."""

    id: str
    dataset_id: int
    kind: str
    recording_ids: list[int]
    reasons: list[str]


class ImpactedOutputOut(_Out):
    """An AI output made by an impacted model or attributed to an impacted recording or work."""

    id: str
    model: str
    recording_ids: list[int]
    work_ids: list[int]
    reasons: list[str]


class ImpactOut(_Out):
    """What a party's revocations (or ended agreements) touch at one instant."""

    party_id: int
    at: datetime
    datasets: list[ImpactedDatasetOut]
    models: list[ImpactedModelOut]
    outputs: list[ImpactedOutputOut]


def _readable(key: ApiKey, dataset: Dataset) -> Dataset:
    """A platform reads only datasets built under its own agreements; 403 otherwise."""
    scope = None if key.role == "admin" else key.party_id
    if scope is not None and dataset.licensee_id != scope:
        raise ApiError(
            403, "party_forbidden", f"dataset {dataset.id} was not built for party {scope}"
        )
    return dataset


@router.post("/v1/datasets", status_code=201)
def build(data: DatasetIn, key: PlatformKey, session: DbSession) -> DatasetOut:
    """Build, sign and store a dataset of what the consent engine allows for the use."""
    licensee = access.licensee_scope(key, data.licensee_id)
    dataset = build_dataset(
        session,
        use=data.use,
        at=as_instant(data.at),
        territory=data.territory,
        name=data.name,
        actor=actor(key),
        licensee_id=licensee,
    )
    return DatasetOut.model_validate(dataset_snapshots(session, [dataset])[0])


@router.get("/v1/datasets")
def datasets(
    key: PlatformKey,
    session: DbSession,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[DatasetOut]:
    """Datasets in id order (a platform sees those built for it)."""
    scope = None if key.role == "admin" else key.party_id
    rows = dataset_snapshots(session, list_datasets(session, scope, limit))
    return [DatasetOut.model_validate(r) for r in rows]


@router.get("/v1/datasets/{dataset_id}")
def dataset(dataset_id: int, key: PlatformKey, session: DbSession) -> DatasetDetailOut:
    """One dataset with its manifest: every item, included or not, with its reasons."""
    found = _readable(key, get_dataset(session, dataset_id))
    snap = dataset_snapshots(session, [found])[0]
    return DatasetDetailOut.model_validate({**snap, "manifest": manifest_of(found)})


@router.get("/v1/datasets/{dataset_id}/verify")
def verify(dataset_id: int, key: PlatformKey, session: DbSession) -> VerificationOut:
    """Check the dataset's hash, signature, stored items and content hashes, naming problems."""
    _readable(key, get_dataset(session, dataset_id))
    result = verify_dataset(session, dataset_id)
    return VerificationOut(dataset_id=dataset_id, ok=result.ok, problems=list(result.problems))


@router.get("/v1/parties/{party_id}/impact")
def impact(
    party_id: int,
    key: ConsentKey,
    session: DbSession,
    at: Annotated[Instant | None, Query(description="instant or date; omit for now")] = None,
) -> ImpactOut:
    """The datasets, models and outputs holding the party's works it no longer allows, and why."""
    if key.role != "admin" and key.party_id != party_id:
        raise ApiError(
            403, "party_forbidden", f"this key reads the impact of party {key.party_id} only"
        )
    found = consent_impact(session, party_id, at=as_instant(at))
    return ImpactOut.model_validate(found.as_dict())
