"""The output-id watermark on generated and rendered music: robustness, SNR, no false ids."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from attune.provenance import masking
from attune.provenance import watermark as wm

SR = 44100
OUTPUT_ID = 0xA77E_0001


def synth_music(seconds: float, seed: int, *, midrange: bool = False) -> np.ndarray:
    """Stereo music-like audio: a melody of harmonic notes over chords, bass and hi-hats.

    ``midrange`` puts most of the energy between 0.9 and 4 kHz (a vocal-heavy mix), the case
    where holding the mark at 30 dB SNR is hardest.
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    out = np.zeros(n)
    beat = 0.25
    for start in np.arange(0.0, seconds, beat):
        i0, length = int(start * SR), int(beat * SR * rng.uniform(1.0, 2.0))
        seg = t[: min(length, n - i0)]
        env = np.exp(-seg * rng.uniform(2.0, 6.0)) * (1 - np.exp(-seg * 200))
        base = 440.0 * 2 ** (rng.integers(-12, 12) / 12)
        if midrange:
            base *= 2.0
        note = sum(np.sin(2 * np.pi * base * k * seg) / k**1.2 for k in range(1, 8))
        out[i0 : i0 + len(seg)] += 0.2 * env * note
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) * 0.05
    bass = np.sin(2 * np.pi * 55.0 * t) * 0.15 * (1 + np.sin(2 * np.pi * 0.5 * t)) / 2
    hats = rng.standard_normal(n) * 0.02 * (np.mod(t, 0.125) < 0.02)
    mix = out + chord + (0.2 if midrange else 1.0) * bass + hats
    left = mix + 0.01 * rng.standard_normal(n)
    right = np.roll(mix, 30) + 0.01 * rng.standard_normal(n)
    stereo = np.stack([left, right], axis=1)
    return (0.5 * stereo / np.abs(stereo).max()).astype(np.float32)


@pytest.fixture(scope="module")
def music() -> np.ndarray:
    """25 s of generated music."""
    return synth_music(25.0, seed=1)


@pytest.fixture(scope="module")
def marked(music: np.ndarray) -> wm.Embedding:
    """The generated music marked with OUTPUT_ID."""
    return wm.embed(music, SR, OUTPUT_ID)


def excerpt(audio: np.ndarray, seconds: float, seed: int) -> np.ndarray:
    """A random-offset excerpt (not aligned to anything)."""
    rng = np.random.default_rng(seed)
    start = int(rng.integers(0, len(audio) - int(seconds * SR)))
    return audio[start : start + int(seconds * SR)]


def speed(audio: np.ndarray, factor: float) -> np.ndarray:
    """Play ``factor`` times faster (pitch and tempo together)."""
    ratio = Fraction(1 / factor).limit_denominator(100)
    return resample_poly(audio, ratio.numerator, ratio.denominator, axis=0).astype(np.float32)


def test_round_trip_recovers_the_id_from_a_10_second_excerpt(marked: wm.Embedding) -> None:
    found = wm.detect(excerpt(marked.audio, 10, seed=2), SR)
    assert found.output_id == OUTPUT_ID
    assert found.scale == 1.0


@pytest.mark.parametrize("midrange", [False, True])
def test_mark_snr_is_held_at_30_db_or_more(midrange: bool) -> None:
    music = synth_music(12.0, seed=3, midrange=midrange)
    result = wm.embed(music, SR, 7)
    assert result.snr_db >= 30.0
    assert wm.mark_snr_db(music, result.audio) == pytest.approx(result.snr_db, abs=0.01)
    assert wm.detect(excerpt(result.audio, 10, seed=4), SR).output_id == 7


def test_survives_resampling_to_16_khz_and_back(marked: wm.Embedding) -> None:
    down = resample_poly(excerpt(marked.audio, 10, seed=5), 160, 441, axis=0)
    assert wm.detect(down, 16000).output_id == OUTPUT_ID
    assert wm.detect(resample_poly(down, 441, 160, axis=0), SR).output_id == OUTPUT_ID


def test_survives_white_noise_at_20_db(marked: wm.Embedding) -> None:
    clip = excerpt(marked.audio, 10, seed=6)
    rng = np.random.default_rng(6)
    noise = rng.standard_normal(clip.shape) * np.sqrt(np.mean(clip**2) / 100)
    assert wm.detect(clip + noise.astype(np.float32), SR).output_id == OUTPUT_ID


def test_survives_volume_change_and_cropping(marked: wm.Embedding) -> None:
    for seed in (7, 8):
        clip = excerpt(marked.audio, 6 + seed % 3, seed=seed) * 0.3
        assert wm.detect(clip, SR).output_id == OUTPUT_ID


@pytest.mark.parametrize("factor", [0.95, 1.05])
def test_survives_a_5_percent_speed_change(marked: wm.Embedding, factor: float) -> None:
    found = wm.detect(excerpt(speed(marked.audio, factor), 10, seed=9), SR)
    assert found.output_id == OUTPUT_ID
    assert found.scale == pytest.approx(factor, abs=0.006)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_survives_mp3_at_64_kbits(marked: wm.Embedding, tmp_path: Path) -> None:
    source, coded, back = tmp_path / "in.wav", tmp_path / "coded.mp3", tmp_path / "out.wav"
    sf.write(source, marked.audio, SR)
    for command in (
        ["ffmpeg", "-v", "error", "-i", str(source), "-b:a", "64k", str(coded)],
        ["ffmpeg", "-v", "error", "-i", str(coded), str(back)],
    ):
        subprocess.run(command, check=True, timeout=120)
    decoded, rate = sf.read(back, dtype="float32")
    assert wm.detect(excerpt(decoded, 10, seed=10), rate).output_id == OUTPUT_ID


def test_unmarked_audio_never_yields_an_id(music: np.ndarray) -> None:
    rng = np.random.default_rng(11)
    clips = [
        excerpt(music, 10, seed=12),
        synth_music(10.0, seed=13, midrange=True),
        (rng.standard_normal(10 * SR) * 0.1).astype(np.float32),
        np.zeros(10 * SR, dtype=np.float32),
        np.sin(2 * np.pi * 1000 * np.arange(10 * SR) / SR).astype(np.float32),
    ]
    for clip in clips:
        assert wm.detect(clip, SR).output_id is None


def test_a_different_key_reads_nothing(marked: wm.Embedding) -> None:
    assert wm.detect(excerpt(marked.audio, 10, seed=14), SR, key=b"other").output_id is None


def test_channel_code_corrects_errors_and_check_bits_reject_damage() -> None:
    bits = wm._payload_bits(123456, wm.DEFAULT_KEY)
    coded = 2.0 * wm._encode(bits) - 1.0
    rng = np.random.default_rng(15)
    noisy = coded + rng.normal(0.0, 0.6, coded.shape)
    decoded = wm._viterbi(noisy[None])[0]
    assert wm._parse_bits(decoded, wm.DEFAULT_KEY) == 123456
    damaged = decoded.copy()
    damaged[40] ^= 1
    assert wm._parse_bits(damaged, wm.DEFAULT_KEY) is None


def test_refuses_bad_ids_and_too_short_audio(music: np.ndarray) -> None:
    with pytest.raises(wm.WatermarkError, match="output id"):
        wm.embed(music, SR, 2**32)
    with pytest.raises(wm.WatermarkError, match="at least 1 s"):
        wm.embed(music[: SR // 2], SR, 1)
    with pytest.raises(wm.WatermarkError, match="too short"):
        wm.detect(music[:1000], SR)
    with pytest.raises(wm.WatermarkError, match="silent"):
        wm.embed(np.zeros(2 * SR, dtype=np.float32), SR, 1)


def test_files_round_trip_through_wav_and_flac(music: np.ndarray, tmp_path: Path) -> None:
    source = tmp_path / "song.wav"
    sf.write(source, music, SR)
    for suffix in (".wav", ".flac"):
        target = tmp_path / f"marked{suffix}"
        wm.embed_file(source, target, 99)
        assert wm.detect_file(target).output_id == 99
    assert wm.detect_file(source).output_id is None


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[np.ndarray]:
    """A Bach chorale rendered by fluidsynth (all-notes-off appended; timeout and size cap)."""
    soundfont = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
    if shutil.which("fluidsynth") is None or not soundfont.exists():
        pytest.skip("fluidsynth or its General MIDI soundfont is not installed")
    music21 = pytest.importorskip("music21")
    directory = tmp_path_factory.mktemp("render")
    midi_path, wav = directory / "chorale.mid", directory / "chorale.wav"
    midi_file = music21.midi.translate.streamToMidiFile(music21.corpus.parse("bach/bwv66.6"))
    midi = music21.midi
    for track in midi_file.tracks:
        for channel in sorted({e.channel for e in track.events if e.channel}):
            for controller in (123, 120):
                event = midi.MidiEvent(
                    track, type=midi.ChannelVoiceMessages.CONTROLLER_CHANGE, channel=channel
                )
                event.parameter1, event.parameter2 = controller, 0
                track.events[-1:-1] = [event, midi.DeltaTime(track, time=0, channel=channel)]
    midi_file.open(str(midi_path), "wb")
    midi_file.write()
    midi_file.close()
    command = ["fluidsynth", "-ni", "-q", "-F", str(wav), "-r", str(SR)]
    subprocess.run([*command, str(soundfont), str(midi_path)], check=True, timeout=120)
    audio, rate = sf.read(wav, dtype="float32")
    assert rate == SR
    yield audio[: 40 * SR]


def test_rendered_music_round_trip_mp3_free_attacks(rendered: np.ndarray) -> None:
    result = wm.embed(rendered, SR, 31337)
    assert result.snr_db >= 30.0
    clip = excerpt(speed(result.audio, 1.04), 10, seed=16) * 0.5
    assert wm.detect(clip, SR).output_id == 31337
    assert wm.detect(excerpt(rendered, 10, seed=17), SR).output_id is None


def test_detector_statistic_ignores_volume_and_whitens_the_host() -> None:
    rng = np.random.default_rng(18)
    level = rng.normal(0.0, 1.0, (1, 60, 1))  # a level per frame (beats) ...
    spectrum = rng.normal(0.0, 1.0, (1, 1, wm.N_BANDS))  # ... plus a spectrum per band
    host = np.exp(level + spectrum + 0.1 * rng.normal(size=(1, 60, wm.N_BANDS)))
    z = wm._normalise(host)
    assert np.allclose(wm._normalise(0.25 * host), z, atol=1e-4)
    # the separable part of the host is predicted away: the residual is near the small noise
    assert float(np.std(wm._residual(np.log(host))[:, 1:-1, 1:-1])) < 0.2
    eq = np.exp(np.linspace(-1.0, 1.0, wm.N_BANDS))  # a smooth 17 dB tilt
    assert np.abs(wm._residual(np.log(host * eq)) - wm._residual(np.log(host))).max() < 0.05


def quiet_then_loud(seconds: float = 30.0, drop_db: float = 15.0) -> np.ndarray:
    """Generated music whose first half is ``drop_db`` quieter than its second (a dynamic piece)."""
    music = synth_music(seconds, seed=19)
    gain = np.where(np.arange(len(music)) < len(music) // 2, 10 ** (-drop_db / 20), 1.0)
    return (music * gain[:, None].astype(np.float32)).astype(np.float32)


def mark_16k(original: np.ndarray, marked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Host and mark (marked minus host) as mono 16 kHz signals, as the masking model reads them."""
    host = wm._resample(wm._mono(original), SR, wm.FS)
    return host, wm._resample(wm._mono(marked), SR, wm.FS) - host


def test_masking_threshold_scales_with_the_host_and_spreads_more_upwards() -> None:
    freqs = np.arange(257) * masking.FS / masking.N_FFT
    power = np.zeros((1, 257))
    power[0, 64] = 1e6  # a loud component at 2 kHz
    window = np.hanning(masking.N_FFT + 1)[: masking.N_FFT]
    mask = masking.threshold(power, window)[0]
    z = masking.bark(freqs)
    near = np.abs(z - z[64]) < 3.0  # above the threshold in quiet: relative to the host
    assert np.allclose(masking.threshold(4 * power, window)[0][near], 4 * mask[near], rtol=1e-6)
    below, above = int(np.argmin(np.abs(z - (z[64] - 2)))), int(np.argmin(np.abs(z - (z[64] + 2))))
    assert mask[above] > 10 * mask[below]  # upward spread of masking
    assert masking.threshold(power, window, "tmn")[0][64] < mask[64] / 100  # tone masks less


def test_mark_stays_under_the_masking_threshold_and_the_snr_floor() -> None:
    music = quiet_then_loud()
    result = wm.embed(music, SR, 5)
    assert result.snr_db >= 30.0
    assert wm.mark_snr_db(music, result.audio) == pytest.approx(result.snr_db, abs=0.01)
    nmr = masking.noise_to_mask(*mark_16k(music, result.audio), band=(wm.F_LO, wm.F_HI))
    assert nmr.total_db < -6.0
    assert nmr.disturbed < 0.02  # frames with a partition > 1.5 dB over the threshold


def test_quiet_passages_get_more_mark_and_decode_under_noise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    music = quiet_then_loud()
    rng = np.random.default_rng(20)
    noise = rng.standard_normal(music.shape) * np.sqrt(np.mean(music**2) / 100)  # 20 dB SNR
    quiet = slice(2 * SR, 12 * SR)  # 10 s inside the quiet half

    def quiet_evidence() -> tuple[float, wm.Detection]:
        """Mark-to-host ratio in the quiet half and the detection of a noisy quiet excerpt."""
        result = wm.embed(music, SR, 77)
        ratio = wm.mark_snr_db(music[quiet], result.audio[quiet])
        noisy = result.audio + noise.astype(np.float32)
        return ratio, wm.detect(noisy[quiet], SR)

    snr_quiet, found = quiet_evidence()
    monkeypatch.setattr(wm, "LIFT_MAX", 1.0)  # the relative level of before the frame lift
    snr_flat, found_flat = quiet_evidence()
    assert snr_quiet < snr_flat - 3.0  # more of the budget goes to the quiet passage
    assert found.output_id == 77
    assert found_flat.output_id is None  # a flat relative level is swamped by the noise
