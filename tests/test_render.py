"""Notes to MIDI bytes (read back by music21) and MIDI to a real WAV file with fluidsynth."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from music21 import midi as m21midi

from attune.generate import render
from attune.generate.render import RenderError, find_soundfont, render_wav, to_midi
from attune.melody.notes import Note
from attune.melody.scores import load_score

needs_fluidsynth = pytest.mark.skipif(shutil.which("fluidsynth") is None,
                                      reason="fluidsynth is not installed")

TUNE = [Note(60, 0, 12, 1), Note(64, 12, 4, 1), Note(65, 16, 4, 1), Note(67, 20, 4, 1),
        Note(72, 24, 24, 1), Note(71, 60, 12, 2)]  # a triplet, then a gap of a dotted quarter
BASS = [Note(48, 0, 48, 1), Note(43, 48, 24, 2)]


def _read(data: bytes) -> m21midi.MidiFile:
    """The MIDI bytes read by music21's own Standard MIDI File reader."""
    mf = m21midi.MidiFile()
    mf.readstr(data)
    return mf


def _timed(track: m21midi.MidiTrack) -> list[tuple[int, m21midi.MidiEvent]]:
    """A track's events with their absolute ticks."""
    now, out = 0, []
    for event in track.events:
        if isinstance(event, m21midi.DeltaTime):
            now += event.time
        else:
            out.append((now, event))
    return out


def _notes(track: m21midi.MidiTrack) -> list[tuple[int, int, int]]:
    """(pitch, onset, duration) of a track's notes, each note-on paired with its note-off."""
    sounding: dict[int, int] = {}
    notes = []
    for tick, event in _timed(track):
        if event.type == m21midi.ChannelVoiceMessages.NOTE_ON and event.velocity > 0:
            assert event.pitch not in sounding, f"pitch {event.pitch} struck again at {tick}"
            sounding[event.pitch] = tick
        elif event.type == m21midi.ChannelVoiceMessages.NOTE_OFF or (
            event.type == m21midi.ChannelVoiceMessages.NOTE_ON and event.velocity == 0
        ):
            start = sounding.pop(event.pitch)
            notes.append((event.pitch, start, tick - start))
    assert not sounding, f"notes never released: {sounding}"
    return sorted(notes, key=lambda n: (n[1], n[0]))


def _controls(track: m21midi.MidiTrack) -> list[tuple[int, int, int]]:
    """(tick, channel, controller) of a track's channel mode messages (CC 120-127)."""
    return [(tick, e.channel, e.type.value) for tick, e in _timed(track)
            if isinstance(e.type, m21midi.ChannelModeMessages)]


def _channels(mf: m21midi.MidiFile) -> list[set[int]]:
    """The channels each part track sends on (music21 counts them from 1)."""
    return [{e.channel for _, e in _timed(t) if not isinstance(e.type, m21midi.MetaEvents)}
            for t in mf.tracks[1:]]


def test_midi_reads_back_with_the_same_notes() -> None:
    data = to_midi([TUNE, BASS], tempo_bpm=120.0, programs=[73, 32], velocity=90)
    mf = _read(data)
    assert data[:4] == b"MThd" and struct.unpack(">HHH", data[8:14]) == (1, 3, 12)
    assert mf.ticksPerQuarterNote == 12 and len(mf.tracks) == 3
    tempo = [e for _, e in _timed(mf.tracks[0]) if e.type == m21midi.MetaEvents.SET_TEMPO]
    assert [int.from_bytes(e.data, "big") for e in tempo] == [500_000]  # 120 bpm
    for track, part, program in zip(mf.tracks[1:], [TUNE, BASS], [73, 32], strict=True):
        assert _notes(track) == [(n.pitch, n.onset, n.duration) for n in part]
        changes = [(e.channel, e.data) for _, e in _timed(track)
                   if e.type == m21midi.ChannelVoiceMessages.PROGRAM_CHANGE]
        assert [p for _, p in changes] == [program]
        velocities = {e.velocity for _, e in _timed(track)
                      if e.type == m21midi.ChannelVoiceMessages.NOTE_ON}
        assert velocities == {90}
    assert _channels(mf) == [{1}, {2}]


def test_every_track_ends_with_all_notes_off_and_all_sound_off() -> None:
    mf = _read(to_midi([TUNE, BASS]))
    assert _controls(mf.tracks[1]) == [(72, 1, 123), (72, 1, 120)]  # after the B4 ending at 72
    assert _controls(mf.tracks[2]) == [(72, 2, 123), (72, 2, 120)]
    assert sorted(_controls(mf.tracks[0])) == [(72, 1, 120), (72, 1, 123),
                                               (72, 2, 120), (72, 2, 123)]
    for track in mf.tracks:
        last = _timed(track)[-1][1]
        assert last.type == m21midi.MetaEvents.END_OF_TRACK


def test_channel_ten_is_left_to_percussion() -> None:
    parts = [[Note(60 + i, 0, 12, 1)] for i in range(15)]
    mf = _read(to_midi(parts))
    assert _channels(mf) == [{c} for c in (*range(1, 10), *range(11, 17))]
    with pytest.raises(ValueError, match="parts"):
        to_midi([[Note(60, 0, 12, 1)]] * 16)
    with pytest.raises(ValueError, match="programs"):
        to_midi([TUNE, BASS], programs=[0])


def test_overlapping_same_pitch_notes_never_stick() -> None:
    # Two parts' worth of the same pitch in one part: overlapping, and struck twice at once.
    part = [Note(60, 0, 24, 1), Note(60, 12, 24, 1), Note(62, 36, 12, 1), Note(62, 36, 6, 1),
            Note(60, 48, 12, 2)]
    notes = _notes(_read(to_midi([part])).tracks[1])  # asserts every note-on is released
    assert notes == [(60, 0, 12), (60, 12, 24), (62, 36, 6), (60, 48, 12)]


def test_chorale_reads_back_through_music21_streams(tmp_path: Path) -> None:
    melody = load_score("music21:bach/bwv66.6", cache_dir=tmp_path)
    data = to_midi([melody.notes, melody.bass], tempo_bpm=melody.tempo_bpm)
    score = m21midi.translate.midiFileToStream(_read(data), quantizePost=False)
    for part, line in zip(score.parts, [melody.notes, melody.bass], strict=True):
        merged = part.stripTies()  # music21 splits notes at its own bar lines
        got = [(n.pitch.midi, round(n.getOffsetInHierarchy(merged) * 12))
               for n in merged.recurse().notes]
        assert got == [(n.pitch, n.onset) for n in line]


@needs_fluidsynth
def test_render_wav_makes_real_audio(tmp_path: Path) -> None:
    melody = load_score("music21:bach/bwv66.6", cache_dir=tmp_path / "scores")
    data = to_midi([melody.notes, melody.bass], tempo_bpm=melody.tempo_bpm, programs=[52, 32])
    target = tmp_path / "out" / "chorale.wav"
    assert render_wav(data, target, sample_rate=22050) == target
    audio, rate = sf.read(target)
    end = max(n.onset + n.duration for n in melody.notes) / 12 * 60 / melody.tempo_bpm
    assert rate == 22050 and audio.ndim == 2
    assert abs(len(audio) / rate - end) < 1.5
    loudness = np.sqrt(np.mean(audio**2, axis=1))
    seconds = [loudness[int(s * rate):int((s + 1) * rate)].mean() for s in range(int(end))]
    assert min(seconds) > 1e-3  # sound throughout, not only somewhere
    assert np.abs(audio).max() < 0.99  # and no clipping
    assert sorted(p.name for p in target.parent.iterdir()) == ["chorale.wav"]


@needs_fluidsynth
def test_a_hanging_note_is_stopped_by_the_size_cap(tmp_path: Path) -> None:
    # A note-on that is never released, without the closing controllers: fluidsynth 2.3 renders
    # this forever (hundreds of MB in seconds); the cap stops it at once.
    tempo = render._track([(0, 0, b"\xff\x51\x03" + (500_000).to_bytes(3, "big"))])
    organ = render._track([(0, 0, bytes((0xC0, 19))), (0, 1, bytes((0x90, 60, 90))),
                           (24, 1, bytes((0x90, 64, 90)))])
    hanging = b"MThd" + struct.pack(">IHHH", 6, 1, 2, 12) + tempo + organ
    target = tmp_path / "hang.wav"
    with pytest.raises(RenderError, match="file-size cap"):
        render_wav(hanging, target, timeout_s=60)
    assert list(tmp_path.iterdir()) == []


@needs_fluidsynth
def test_timeout_is_a_render_error(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match="no result within"):
        render_wav(to_midi([TUNE]), tmp_path / "slow.wav", timeout_s=0.001)
    assert list(tmp_path.iterdir()) == []


def test_missing_soundfont_and_fluidsynth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = to_midi([TUNE])
    with pytest.raises(RenderError, match=r"no-such\.sf2 is not a file"):
        render_wav(data, tmp_path / "a.wav", soundfont=tmp_path / "no-such.sf2")
    monkeypatch.setenv("ATTUNE_SOUNDFONT", str(tmp_path / "missing.sf2"))
    with pytest.raises(RenderError, match=r"ATTUNE_SOUNDFONT names .*missing\.sf2"):
        find_soundfont()
    monkeypatch.delenv("ATTUNE_SOUNDFONT")
    monkeypatch.setattr(render, "SOUNDFONTS", (tmp_path / "FluidR3_GM.sf2",))
    with pytest.raises(RenderError, match=r"looked for ATTUNE_SOUNDFONT, then .*FluidR3_GM\.sf2"):
        find_soundfont()
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RenderError, match="fluidsynth: not found"):
        render_wav(data, tmp_path / "b.wav")
    assert not (tmp_path / "a.wav").exists() and not (tmp_path / "b.wav").exists()


def test_find_soundfont_prefers_the_environment(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    font = tmp_path / "mine.sf2"
    font.write_bytes(b"RIFF")
    monkeypatch.setenv("ATTUNE_SOUNDFONT", str(font))
    assert find_soundfont() == font
