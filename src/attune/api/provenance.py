"""Provenance routes: AI-disclosure credits, C2PA content credentials and the watermark.

Audio goes up as a multipart file; signed or marked audio comes back as the response body.
Signing and marking are for platform keys (the AI product team); reading, verifying,
detecting and converting credits are for rightsholder and platform keys.  The lead mounts
``router`` in :func:`attune.api.app.create_app`.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Response, UploadFile
from pydantic import BaseModel, ConfigDict, Field

from attune.api.deps import AnyKey, PlatformKey
from attune.api.problems import ApiError
from attune.provenance import (
    ContentCredentialsError,
    CreditsError,
    Generation,
    WatermarkError,
    detect_file,
    embed_file,
    from_ern,
    from_json,
    read_manifest,
    sign_file,
    to_ern_fragment,
    to_json,
    watermark_key,
)
from attune.provenance._audio_io import AudioFileError
from attune.provenance.c2pa import MIME_TYPES, TrainingUse
from attune.provenance.credits import ContainsAI

router = APIRouter(tags=["provenance"])
MAX_UPLOAD_BYTES = 200 * 1024 * 1024
_AUDIO_SUFFIXES = (".wav", ".mp3", ".flac", ".ogg", ".m4a")


class CreditsOut(BaseModel):
    """One release's credits: the credits JSON document and the same as an ERN fragment."""

    model_config = ConfigDict(frozen=True)

    credits: dict[str, Any]
    ern: str


class ManifestOut(BaseModel):
    """A validated C2PA manifest: Trusted/Valid/Invalid, what is wrong, and the manifest."""

    model_config = ConfigDict(frozen=True)

    ok: bool
    state: str
    problems: list[str]
    manifest: dict[str, Any] = Field(default_factory=dict)


class DetectionOut(BaseModel):
    """A watermark detection: the output id (null if none) and the warp that decoded it."""

    model_config = ConfigDict(frozen=True)

    output_id: int | None
    axis: str | None
    scale: float | None
    score: float


@contextmanager
def _upload(upload: UploadFile, allowed: tuple[str, ...]) -> Iterator[Path]:
    """The upload saved to a temporary file with its suffix (checked against ``allowed``)."""
    name = upload.filename or "upload"
    suffix = Path(name).suffix.lower()
    if suffix not in allowed:
        raise ApiError(422, "unsupported_format", f"{name}: expected one of {', '.join(allowed)}")
    data = upload.file.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise ApiError(413, "too_large", f"{name}: larger than {MAX_UPLOAD_BYTES} bytes")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(data)
        yield path


def _refuse(exc: Exception, name: str | None) -> ApiError:
    """A library error as a 422 problem naming the uploaded file."""
    return ApiError(422, "invalid_input", f"{name or 'upload'}: {exc}")


@router.post("/v1/provenance/credits")
def credits_from_ern(
    file: Annotated[UploadFile, File(description="ERN 4.x message (.xml) or credits (.json)")],
    key: AnyKey,
) -> list[CreditsOut]:
    """Read AI-disclosure credits from an ERN message or credits JSON; return JSON and ERN."""
    with _upload(file, (".xml", ".json")) as path:
        try:
            data = path.read_bytes()
            releases = from_ern(data) if path.suffix == ".xml" else (from_json(data),)
        except CreditsError as exc:
            raise _refuse(exc, file.filename) from None
    return [CreditsOut(credits=json.loads(to_json(r)), ern=to_ern_fragment(r)) for r in releases]


@router.post("/v1/provenance/sign")
def sign(
    file: Annotated[UploadFile, File(description="WAV, MP3, FLAC or M4A audio")],
    key: PlatformKey,
    title: Annotated[str | None, Form(max_length=500)] = None,
    output_id: Annotated[int | None, Form(ge=0, lt=2**32)] = None,
    model: Annotated[str | None, Form(max_length=200)] = None,
    dataset_sha256: Annotated[str | None, Form(pattern=r"^[0-9a-f]{64}$")] = None,
    contains_ai: Annotated[ContainsAI, Form()] = "All",
    training: Annotated[TrainingUse, Form()] = "notAllowed",
    credits: Annotated[str | None, Form(description="credits JSON to embed")] = None,
) -> Response:
    """Return the file with a signed C2PA manifest (created by a trained model) embedded."""
    with _upload(file, tuple(MIME_TYPES)) as path:
        try:
            generation = Generation(
                title=title or file.filename or path.name,
                output_id=output_id,
                model=model,
                dataset_sha256=dataset_sha256,
                contains_ai=contains_ai,
                training=training,
                credits=from_json(credits) if credits else None,
            )
            sign_file(path, path, generation)
        except (ContentCredentialsError, CreditsError) as exc:
            raise _refuse(exc, file.filename) from None
        body = path.read_bytes()
    return Response(content=body, media_type=MIME_TYPES[path.suffix])


def _manifest(file: UploadFile) -> ManifestOut:
    """Validate an uploaded file's manifest."""
    with _upload(file, tuple(MIME_TYPES)) as path:
        try:
            report = read_manifest(path)
        except ContentCredentialsError as exc:
            raise _refuse(exc, file.filename) from None
    return ManifestOut(
        ok=report.ok, state=report.state, problems=list(report.problems), manifest=report.manifest
    )


@router.post("/v1/provenance/read")
def read(file: Annotated[UploadFile, File()], key: AnyKey) -> ManifestOut:
    """Validate and return the C2PA manifest embedded in an audio file."""
    return _manifest(file)


@router.post("/v1/provenance/verify")
def verify(file: Annotated[UploadFile, File()], key: AnyKey) -> ManifestOut:
    """Say whether an audio file's content credentials validate, and why not (no manifest)."""
    return _manifest(file).model_copy(update={"manifest": {}})


@router.post("/v1/watermark/embed")
def embed(
    file: Annotated[UploadFile, File(description="audio to mark")],
    output_id: Annotated[int, Form(ge=0, lt=2**32)],
    key: PlatformKey,
) -> Response:
    """Return the audio marked with ``output_id`` (same format; SNR in ``X-Watermark-SNR-dB``)."""
    with _upload(file, (".wav", ".flac", ".ogg", ".mp3")) as path:
        try:
            marked = embed_file(path, path, output_id, key=watermark_key())
        except (WatermarkError, AudioFileError) as exc:
            raise _refuse(exc, file.filename) from None
        body = path.read_bytes()
    media = MIME_TYPES.get(path.suffix, "audio/ogg")
    return Response(
        content=body, media_type=media, headers={"X-Watermark-SNR-dB": f"{marked.snr_db:.2f}"}
    )


@router.post("/v1/watermark/detect")
def detect(file: Annotated[UploadFile, File()], key: AnyKey) -> DetectionOut:
    """Read the output id from an audio file or excerpt; ``output_id`` is null when none."""
    with _upload(file, _AUDIO_SUFFIXES) as path:
        try:
            found = detect_file(path, key=watermark_key())
        except (WatermarkError, AudioFileError) as exc:
            raise _refuse(exc, file.filename) from None
    return DetectionOut(
        output_id=found.output_id, axis=found.axis, scale=found.scale, score=found.score
    )
