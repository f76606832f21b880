"""Read and write audio files with all their channels at their own rate (soundfile, else ffmpeg).

The watermark must be added at the file's own rate and channel count, which the mono analysis
decoder of :mod:`attune.audio` does not keep, so this small reader and writer live here.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import soundfile as sf

__all__ = ["AudioFileError", "read_audio", "write_audio"]

_FFMPEG_TIMEOUT_S: Final[float] = 300.0
_SOUNDFILE_WRITE: Final[dict[str, str]] = {
    ".wav": "PCM_16",
    ".flac": "PCM_16",
    ".ogg": "VORBIS",
    ".mp3": "MPEG_LAYER_III",
}
_FFMPEG_WRITE: Final[dict[str, tuple[str, ...]]] = {".m4a": ("-c:a", "aac", "-b:a", "192k")}


class AudioFileError(ValueError):
    """A file that cannot be read or written; the message names the file and the cause."""


def read_audio(path: str | Path) -> tuple[npt.NDArray[np.float32], int]:
    """Decode ``path`` to float32 ``(frames, channels)`` at its own rate."""
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        return np.ascontiguousarray(data), int(rate)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        pass
    except OSError as exc:
        raise AudioFileError(f"{path}: cannot read: {exc}") from None
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise AudioFileError(f"{path}: not readable by libsndfile and ffmpeg is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "decoded.wav"
        _run([ffmpeg, "-v", "error", "-y", "-i", str(path), "-c:a", "pcm_f32le", str(wav)], path)
        data, rate = sf.read(str(wav), dtype="float32", always_2d=True)
    return np.ascontiguousarray(data), int(rate)


def write_audio(path: str | Path, audio: npt.NDArray[np.float32], rate: int) -> None:
    """Encode ``audio`` to ``path``: WAV/FLAC/Ogg/MP3 with soundfile, M4A with ffmpeg."""
    suffix = Path(path).suffix.lower()
    clipped = np.clip(audio, -1.0, 1.0)
    if suffix in _SOUNDFILE_WRITE:
        sf.write(str(path), clipped, rate, subtype=_SOUNDFILE_WRITE[suffix])
        return
    if suffix not in _FFMPEG_WRITE:
        known = ", ".join(sorted((*_SOUNDFILE_WRITE, *_FFMPEG_WRITE)))
        raise AudioFileError(f"{path}: cannot write {suffix or 'files without a suffix'} ({known})")
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise AudioFileError(f"{path}: writing {suffix} needs ffmpeg, which is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "marked.wav"
        sf.write(str(wav), clipped, rate, subtype="FLOAT")
        _run([ffmpeg, "-v", "error", "-y", "-i", str(wav), *_FFMPEG_WRITE[suffix], str(path)], path)


def _run(command: list[str], path: str | Path) -> None:
    """Run ffmpeg, turning a failure into an :class:`AudioFileError` naming the file."""
    try:
        done = subprocess.run(command, capture_output=True, timeout=_FFMPEG_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        limit = f"{_FFMPEG_TIMEOUT_S:.0f} s"
        raise AudioFileError(f"{path}: ffmpeg did not finish in {limit}") from None
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        raise AudioFileError(f"{path}: ffmpeg failed: {reason[-1] if reason else done.returncode}")
