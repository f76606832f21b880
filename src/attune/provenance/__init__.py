"""Provenance of generated outputs: AI-disclosure credits, C2PA content credentials, watermark."""

from __future__ import annotations

import json
import os
from pathlib import Path

from attune.provenance.c2pa import (
    MIME_TYPES,
    ContentCredentialsError,
    Generation,
    ManifestReport,
    read_manifest,
    sign_file,
)
from attune.provenance.credits import (
    CreditsError,
    ReleaseCredits,
    from_ern,
    from_json,
    to_ern_fragment,
    to_json,
)
from attune.provenance.watermark import (
    DEFAULT_KEY,
    Detection,
    Embedding,
    WatermarkError,
    detect_file,
    embed_file,
)

__all__ = [
    "ContentCredentialsError",
    "CreditsError",
    "Detection",
    "Embedding",
    "Generation",
    "ManifestReport",
    "ReleaseCredits",
    "WatermarkError",
    "detect_file",
    "embed_file",
    "from_ern",
    "from_json",
    "load_credits",
    "read_manifest",
    "sign_file",
    "stamp_output",
    "to_ern_fragment",
    "to_json",
    "watermark_key",
]


def watermark_key() -> bytes:
    """The watermark key: ``ATTUNE_WATERMARK_KEY`` if set, else the public default key."""
    value = os.environ.get("ATTUNE_WATERMARK_KEY")
    return value.encode() if value else DEFAULT_KEY


def load_credits(path: str | Path, *, key_dir: Path | None = None) -> tuple[ReleaseCredits, ...]:
    """AI credits from an ERN message (.xml), credits JSON (.json) or a signed audio file."""
    file = Path(path)
    suffix = file.suffix.lower()
    try:
        if suffix == ".xml":
            return from_ern(file.read_bytes())
        if suffix == ".json":
            return (from_json(file.read_bytes()),)
    except OSError as exc:
        raise CreditsError(f"{file}: cannot read: {exc.strerror or exc}") from None
    except CreditsError as exc:
        raise CreditsError(f"{file}: {exc}") from None
    if suffix not in MIME_TYPES:
        raise CreditsError(f"{file}: expected .xml (ERN), .json or a signed audio file")
    report = read_manifest(file, key_dir=key_dir)
    facts = report.assertion("dev.attune.generation") or {}
    credits = facts.get("ai_credits")
    if credits is None:
        raise CreditsError(f"{file}: its C2PA manifest carries no AI credits")
    return (from_json(json.dumps(credits)),)


def stamp_output(
    source: str | Path, target: str | Path, generation: Generation, *, key_dir: Path | None = None
) -> tuple[Embedding, ManifestReport]:
    """Watermark an output with its id, then sign its C2PA manifest (in that order).

    Marking changes the audio, so it comes first; the signature then covers the marked file.
    """
    if generation.output_id is None:
        raise WatermarkError("stamping an output needs its output id")
    marked = embed_file(source, target, generation.output_id, key=watermark_key())
    return marked, sign_file(target, target, generation, key_dir=key_dir)
