"""Provenance of generated outputs: AI-disclosure credits, C2PA content credentials, watermark."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from attune.provenance.c2pa import (
    MIME_TYPES,
    ContentCredentialsError,
    Generation,
    ManifestReport,
    default_key_dir,
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
from attune.store.secrets import create_once

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


WATERMARK_KEY_FILE = "watermark.key"


def watermark_key(key_dir: Path | None = None) -> bytes:
    """The installation's secret watermark key, never the public ``DEFAULT_KEY``.

    ``ATTUNE_WATERMARK_KEY`` if set (several installations that must read each other's marks
    share it); else 32 random bytes kept in ``watermark.key`` beside the C2PA identity
    (``ATTUNE_C2PA_KEY_DIR``), created with mode 0600 at first use. Whoever holds the key can
    read and forge marks, so the public default would let anyone do both.
    """
    value = os.environ.get("ATTUNE_WATERMARK_KEY")
    if value:
        if value.encode() == DEFAULT_KEY:
            raise WatermarkError("ATTUNE_WATERMARK_KEY is the public default key; set a secret")
        return value.encode()
    directory = key_dir or default_key_dir()
    path = directory / WATERMARK_KEY_FILE
    create_once(path, secrets.token_hex(32).encode())
    key = path.read_bytes().strip()
    if len(key) < 16:
        raise WatermarkError(f"{path}: the watermark key is shorter than 16 bytes")
    return key


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
