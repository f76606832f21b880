"""Content identification route: upload audio, get back the catalog recordings found in it."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Request, UploadFile
from pydantic import BaseModel, ConfigDict

from attune.api.deps import AnyKey
from attune.api.problems import ApiError
from attune.audio import AudioError
from attune.identify import Index, IndexUnavailable, identify_file
from attune.identify.index import index_dir

MAX_UPLOAD_BYTES = 200 * 1024 * 1024
MAX_QUERY_SECONDS = 3600.0

router = APIRouter(tags=["identify"])


class HitOut(BaseModel):
    """A catalog recording found in the upload: where, how changed, and how sure."""

    model_config = ConfigDict(frozen=True)

    recording_id: int
    label: str
    query_start: float
    query_end: float
    reference_start: float
    reference_end: float
    duration: float
    time_factor: float
    pitch_shift: float
    score: int
    confidence: float


class IdentifyOut(BaseModel):
    """The hits, best first; an empty list means no catalog audio was found."""

    model_config = ConfigDict(frozen=True)

    filename: str | None
    matched: bool
    hits: list[HitOut]


def _index(request: Request) -> Index:
    """The index named by ``app.state.identify_index`` (a directory), ATTUNE_INDEX or default."""
    try:
        return Index.open(index_dir(getattr(request.app.state, "identify_index", None)))
    except IndexUnavailable as exc:
        raise ApiError(503, "index_unavailable", str(exc)) from exc


@router.post("/v1/identify")
def identify_upload(
    request: Request,
    key: AnyKey,
    file: Annotated[UploadFile, File(description="audio: wav, flac, ogg, mp3, m4a/aac or opus")],
) -> IdentifyOut:
    """Find catalog recordings inside an uploaded file (re-uploads, samples, sped-up edits)."""
    index = _index(request)
    suffix = Path(file.filename or "").suffix[:10]
    with tempfile.NamedTemporaryFile(suffix=suffix) as tmp:
        while chunk := file.file.read(1024 * 1024):
            tmp.write(chunk)
            if tmp.tell() > MAX_UPLOAD_BYTES:
                raise ApiError(
                    413, "upload_too_large", f"the upload is over {MAX_UPLOAD_BYTES // 2**20} MiB"
                )
        tmp.flush()
        try:
            hits = identify_file(index, tmp.name, max_seconds=MAX_QUERY_SECONDS)
        except AudioError as exc:
            raise ApiError(422, "bad_audio", f"{file.filename}: {exc.cause}") from exc
    return IdentifyOut(
        filename=file.filename, matched=bool(hits), hits=[HitOut(**h._asdict()) for h in hits]
    )
