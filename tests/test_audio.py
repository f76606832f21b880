"""attune.audio: decoding, downmix, resampling, streaming, and clear errors for bad files."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from attune.audio import AudioError, decode, info, resample, stream, to_mono

SR = 44100
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")


def tone(hz: float, seconds: float, sr: int = SR) -> np.ndarray:
    """A sine at ``hz`` with amplitude 0.5."""
    t = np.arange(round(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def dominant_hz(y: np.ndarray, sr: int) -> float:
    """Frequency of the strongest FFT bin."""
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return float(np.argmax(spec) * sr / len(y))


@pytest.fixture
def stereo_wav(tmp_path: Path) -> Path:
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([tone(440, 3), tone(660, 3)], axis=1), SR, subtype="FLOAT")
    return path


def test_decode_downmixes_and_resamples(stereo_wav: Path) -> None:
    y, sr = decode(stereo_wav, 8000)
    assert sr == 8000 and y.dtype == np.float32
    assert len(y) == 3 * 8000
    spec = np.abs(np.fft.rfft(y[1000:-1000]))
    freqs = np.fft.rfftfreq(len(y) - 2000, 1 / 8000)
    top2 = sorted(freqs[np.argsort(spec)[-2:]])
    assert top2 == pytest.approx([440, 660], abs=1)
    native, native_sr = decode(stereo_wav, None)
    assert native_sr == SR
    expected = (tone(440, 3) + tone(660, 3)) / 2
    assert np.allclose(native, expected, atol=1e-6)


@pytest.mark.parametrize("fmt", ["FLAC", "OGG"])
def test_decode_reads_flac_and_ogg(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"a.{fmt.lower()}"
    sf.write(path, tone(1000, 2), SR, format=fmt)
    y, sr = decode(path, 16000)
    assert abs(len(y) - 32000) <= 1
    assert dominant_hz(y, sr) == pytest.approx(1000, abs=2)


@pytest.mark.parametrize("encoder", ["libsndfile", "ffmpeg"])
def test_ogg_vorbis_decodes_as_libvorbis_does(tmp_path: Path, encoder: str) -> None:
    """libavcodec decodes Vorbis; its samples and length must be libvorbis's (via libsndfile).

    libsndfile's encoder starts the stream at time 0 (libavcodec then ends a block early and
    the tail is padded); ffmpeg's stamps 128 samples of pre-roll before 0, which are dropped.
    """
    if encoder == "ffmpeg" and shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    rng = np.random.default_rng(5)
    y = (0.2 * rng.standard_normal((SR * 3 + 777, 2))).astype(np.float32)
    path = tmp_path / "a.ogg"
    if encoder == "libsndfile":
        sf.write(path, y, SR, format="OGG")
    else:
        wav = tmp_path / "a.wav"
        sf.write(wav, y, SR)
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(wav), "-c:a", "libvorbis",
                        str(path)], check=True)
    assert info(path).decoder == "pyav"
    ours, _ = decode(path, None)
    reference = sf.read(path, dtype="float32")[0].mean(axis=1)
    assert len(ours) == len(reference) == sf.info(path).frames
    padded = 8192 if encoder == "libsndfile" else 0
    assert np.allclose(ours[: len(ours) - padded], reference[: len(ours) - padded], atol=2e-6)
    blocks = list(stream(path, None, block_seconds=0.37))
    assert np.array_equal(np.concatenate(blocks), ours)


def test_chained_ogg_vorbis(tmp_path: Path) -> None:
    """Chained Ogg Vorbis streams are decoded in turn; a chain that changes its channel count
    gets an AudioError that says so, not a decoder's message."""
    rng = np.random.default_rng(6)
    stereo, mono = tmp_path / "stereo.ogg", tmp_path / "mono.ogg"
    sf.write(stereo, (0.1 * rng.standard_normal((SR, 2))).astype(np.float32), SR, format="OGG")
    sf.write(mono, (0.1 * rng.standard_normal(SR)).astype(np.float32), SR, format="OGG")
    same = tmp_path / "same.ogg"
    same.write_bytes(stereo.read_bytes() * 2)
    y, _ = decode(same, None)
    assert abs(len(y) - 2 * SR) <= 256  # both links, not the first alone
    changed = tmp_path / "changed.ogg"
    changed.write_bytes(stereo.read_bytes() + mono.read_bytes())
    with pytest.raises(AudioError, match="chained Ogg stream"):
        decode(changed)


@needs_ffmpeg
@pytest.mark.parametrize(("suffix", "codec"), [(".mp3", "libmp3lame"), (".m4a", "aac"),
                                               (".opus", "libopus")])
def test_decode_reads_compressed_formats_through_ffmpeg(tmp_path: Path, stereo_wav: Path,
                                                        suffix: str, codec: str) -> None:
    path = tmp_path / f"a{suffix}"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(stereo_wav), "-c:a", codec,
                    "-b:a", "96k", str(path)], check=True)
    y, sr = decode(path, 8000)
    assert abs(len(y) / sr - 3.0) < 0.1
    assert np.sqrt(np.mean(y[4000:-4000] ** 2)) == pytest.approx(0.5 / 2, rel=0.1)


def test_stream_blocks_equal_whole_decode(tmp_path: Path) -> None:
    path = tmp_path / "noise.flac"
    rng = np.random.default_rng(0)
    sf.write(path, (0.1 * rng.standard_normal((SR * 7 + 123, 2))).astype(np.float32), SR)
    whole, _ = decode(path, 8000)
    blocks = list(stream(path, 8000, block_seconds=1.3))
    assert all(len(b) == round(1.3 * 8000) for b in blocks[:-1])
    assert np.array_equal(np.concatenate(blocks), whole)
    mono = sf.read(path, dtype="float32")[0].mean(axis=1)
    assert np.allclose(whole, resample(mono, SR, 8000), atol=1e-6)


def test_resample_keeps_frequency_and_length() -> None:
    y = resample(tone(300, 1.0), SR, 8000)
    assert len(y) == 8000
    assert dominant_hz(y, 8000) == pytest.approx(300, abs=1.5)


def _truncated_wav(tmp: Path) -> Path:
    whole = tmp / "whole.wav"
    sf.write(whole, tone(440, 2), SR)
    data = whole.read_bytes()
    path = tmp / "truncated.wav"
    path.write_bytes(data[: len(data) // 2])
    return path


def _truncated_ogg(tmp: Path) -> Path:
    whole = tmp / "whole.ogg"
    sf.write(whole, np.random.default_rng(1).standard_normal(SR * 5).astype(np.float32) * 0.1,
             SR, format="OGG")
    data = whole.read_bytes()
    path = tmp / "truncated.ogg"
    path.write_bytes(data[: len(data) // 2])
    return path


def _corrupt_ogg(tmp: Path) -> Path:
    whole = tmp / "whole.ogg"
    sf.write(whole, np.random.default_rng(1).standard_normal(SR * 5).astype(np.float32) * 0.1,
             SR, format="OGG")
    data = bytearray(whole.read_bytes())
    data[4000:9000] = bytes(np.random.default_rng(2).integers(0, 256, 5000, dtype=np.uint8))
    path = tmp / "corrupt.ogg"
    path.write_bytes(bytes(data))
    return path


def _empty(tmp: Path) -> Path:
    path = tmp / "empty.wav"
    path.write_bytes(b"")
    return path


def _text(tmp: Path) -> Path:
    path = tmp / "notes.mp3"
    path.write_text("this is not audio\n" * 50)
    return path


def _no_samples(tmp: Path) -> Path:
    path = tmp / "silent.wav"
    sf.write(path, np.zeros((0, 1), dtype=np.float32), SR)
    return path


@pytest.mark.parametrize(("make", "cause"), [
    (_truncated_wav, "truncated"),
    (_truncated_ogg, "truncated"),
    (_corrupt_ogg, "corrupt"),
    (_empty, "empty"),
    (_text, "not a recognised audio file"),
    (_no_samples, "no audio samples"),
])
def test_bad_files_raise_audio_error_naming_file_and_cause(
    tmp_path: Path, make: Callable[[Path], Path], cause: str
) -> None:
    path = make(tmp_path)
    if cause == "not a recognised audio file" and shutil.which("ffprobe") is None:
        cause = "ffmpeg"
    with pytest.raises(AudioError) as excinfo:
        decode(path)
    assert str(path) in str(excinfo.value)
    assert cause in excinfo.value.cause


def test_missing_file_and_directory_are_named(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="no such file"):
        decode(tmp_path / "absent.flac")
    with pytest.raises(AudioError, match="not a regular file"):
        decode(tmp_path)


def test_over_limit_file_is_refused_before_decoding(stereo_wav: Path) -> None:
    with pytest.raises(AudioError, match="over the limit of 2 s"):
        decode(stereo_wav, max_seconds=2)
    assert info(stereo_wav).duration == pytest.approx(3.0)


@needs_ffmpeg
def test_truncated_mp3_is_reported(tmp_path: Path, stereo_wav: Path) -> None:
    mp3 = tmp_path / "a.mp3"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(stereo_wav), "-b:a", "128k",
                    str(mp3)], check=True)
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(mp3.read_bytes()[: mp3.stat().st_size // 2])
    with pytest.raises(AudioError, match="truncated"):
        decode(cut)


@pytest.mark.parametrize("channels", [1, 2, 3, 6])
def test_to_mono_averages_channels(channels: int) -> None:
    y = np.random.default_rng(channels).standard_normal((1000, channels)).astype(np.float32)
    mono = to_mono(y)
    assert mono.dtype == np.float32 and mono.shape == (1000,)
    assert np.allclose(mono, y.mean(axis=1), atol=1e-6)
    assert np.array_equal(to_mono(y[:, 0]), y[:, 0])
