"""Decode any common audio format to mono float32 at an analysis rate, whole or in blocks."""

from attune.audio.decode import (
    DEFAULT_MAX_SECONDS,
    AudioError,
    AudioInfo,
    decode,
    info,
    resample,
    stream,
    to_mono,
)

__all__ = [
    "DEFAULT_MAX_SECONDS",
    "AudioError",
    "AudioInfo",
    "decode",
    "info",
    "resample",
    "stream",
    "to_mono",
]
