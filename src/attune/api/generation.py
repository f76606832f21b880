"""AI teams' routes: train the reference generator on a dataset, list models, generate outputs.

Generation runs behind the prompt gate and the output checks; a refusal is a 422 problem
(``generation_refused``) whose detail lists every reason, and it is written to the audit log.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from attune.api.deps import DbSession, PlatformKey, actor
from attune.api.problems import MEDIA_TYPE, ApiError, Problem
from attune.generate.dataset import stale_items
from attune.generate.models import Model
from attune.generate.pipeline import (
    GenerationRefused,
    generate_output,
    record_refusal,
    train_model,
    work_dir,
)
from attune.identify.index import index_dir
from attune.rights.policy import as_instant
from attune.rights.records import Instant

router = APIRouter(tags=["generation"])


class TrainIn(BaseModel):
    """Which dataset to train on, and the longest Markov context."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dataset_id: int
    order: int = Field(default=4, ge=1, le=8)


class ModelOut(BaseModel):
    """A registered model, its dataset, and whether a revocation has since flagged it."""

    id: str
    dataset_id: int
    kind: str
    created_at: datetime
    artifact_sha256: str
    flagged: bool
    stale_items: int


class GenerateIn(BaseModel):
    """A prompt for one model; the same seed gives the same piece."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_id: str = Field(max_length=200)
    prompt: str = Field(min_length=1, max_length=2000)
    seed: int = Field(default=1, ge=0, le=2**31 - 1)
    at: Instant | None = None
    territory: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    platform_id: int | None = Field(default=None, description="admin keys only")


class GenerationOut(BaseModel):
    """A released output: id, description, checks passed, files, and attribution shares."""

    output_id: str
    model_id: str
    seed: int
    description: str
    checks: list[str]
    gate: list[str]
    wav: str
    work_shares: dict[int, str]
    recording_shares: dict[int, str]


def _model_out(session: DbSession, m: Model) -> ModelOut:
    stale = stale_items(session, m.dataset_id, at=as_instant(None))
    return ModelOut(id=m.id, dataset_id=m.dataset_id, kind=m.kind, created_at=m.created_at,
                    artifact_sha256=m.artifact_sha256, flagged=bool(stale),
                    stale_items=len(stale))


def _detail(refused: GenerationRefused) -> str:
    return f"{refused.stage}: " + "; ".join(refused.reasons)


def refusal_response(refused: GenerationRefused) -> JSONResponse:
    """The 422 problem of a refused generation (returned, not raised, so its audit commits)."""
    body = Problem(type="urn:attune:problem:generation_refused", title="Unprocessable Content",
                   status=422, detail=_detail(refused), code="generation_refused")
    return JSONResponse(body.model_dump(exclude_none=True), status_code=422,
                        media_type=MEDIA_TYPE)


@router.post("/v1/models", status_code=201)
def train(data: TrainIn, key: PlatformKey, session: DbSession, request: Request) -> ModelOut:
    """Train the reference generator on a dataset whose signature and hashes verify."""
    base = work_dir(request.app.state.engine)
    try:
        _, record = train_model(session, base, data.dataset_id, actor=actor(key), order=data.order)
    except GenerationRefused as exc:
        raise ApiError(422, "generation_refused", _detail(exc)) from exc
    return _model_out(session, record)


@router.get("/v1/models")
def models(key: PlatformKey, session: DbSession) -> list[ModelOut]:
    """Every registered model, flagged when its dataset holds items since refused."""
    return [_model_out(session, m) for m in session.scalars(select(Model).order_by(Model.id))]


@router.post("/v1/generations", status_code=201, response_model=GenerationOut)
def generate(data: GenerateIn, key: PlatformKey, session: DbSession,
             request: Request) -> GenerationOut | JSONResponse:
    """Generate one output behind the prompt gate and plagiarism checks, stamped and credited."""
    if key.role == "admin":
        if data.platform_id is None:
            raise ApiError(422, "platform_required", "platform_id: an admin key must name it")
        platform = data.platform_id
    else:
        if data.platform_id not in (None, key.party_id):
            raise ApiError(403, "party_forbidden",
                           f"this key generates for party {key.party_id} only")
        assert key.party_id is not None
        platform = key.party_id
    engine = request.app.state.engine
    audio = index_dir()
    try:
        done = generate_output(
            session, work_dir(engine), model_id=data.model_id, prompt=data.prompt,
            seed=data.seed, platform_id=platform, actor=actor(key), at=data.at,
            territory=data.territory, audio_index=audio if audio.exists() else None)
    except GenerationRefused as exc:
        # Nothing was written before a refusal, so the audit entry commits with this request.
        record_refusal(session, actor(key), data.model_id, data.prompt, data.seed, exc)
        return refusal_response(exc)
    return GenerationOut(
        output_id=done.output_id, model_id=data.model_id, seed=data.seed,
        description=done.piece.describe(), checks=list(done.checks.reasons()),
        gate=[r.message for r in done.gate.reasons], wav=done.wav.name,
        work_shares={w: str(s) for w, s in done.piece.work_shares.items()},
        recording_shares={r: str(s) for r, s in done.piece.recording_shares.items()})
