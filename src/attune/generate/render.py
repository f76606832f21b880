"""Notes to a Standard MIDI File, and MIDI to a WAV file with fluidsynth, safely.

``to_midi`` writes the file itself (format 1: a tempo track, then one track and channel per
part). The fluidsynth 2.3 on Debian can render a file with a hanging note forever (one run wrote
19.7 GB), so every track ends with All Notes Off and All Sound Off, same-pitch overlaps are cut
so each note-on has its own note-off, and ``render_wav`` runs fluidsynth under a timeout and a
file-size limit sized from the MIDI's own duration.
"""

from __future__ import annotations

import math
import os
import resource
import shutil
import signal
import struct
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import soundfile as sf

from attune.melody.notes import TICKS_PER_QUARTER, Note

GAIN = 1.0
"""fluidsynth master gain: a four-part chorale at velocity 80 peaks near 0.45 with FluidR3_GM."""

SOUNDFONTS = (
    Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),
    Path("/usr/share/sounds/sf2/TimGM6mb.sf2"),
    Path("/usr/share/sounds/sf2/default-GM.sf2"),
)
CHANNELS = tuple(c for c in range(16) if c != 9)  # channel 10 (9 from 0) is percussion in GM
ALL_SOUND_OFF = 120
ALL_NOTES_OFF = 123
# WAV bytes per frame at most (stereo, 32-bit samples), and the seconds fluidsynth may add after
# the last event (about 4: the reverb tail, then silence), for the file-size limit.
BYTES_PER_FRAME = 2 * 4
TAIL_S = 10.0
KEEP_TAIL_S = 1.0
"""Seconds kept after the MIDI's last event: the reverb dies away within about one."""


class RenderError(RuntimeError):
    """MIDI could not be rendered to audio: no fluidsynth or soundfont, a timeout, bad output."""


def _vlq(value: int) -> bytes:
    """A MIDI variable-length quantity (7 bits a byte, high bit set on all but the last)."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def _track(events: list[tuple[int, int, bytes]]) -> bytes:
    """One MTrk chunk from (tick, order, message) events, sorted, with End of Track appended."""
    data = bytearray()
    now = 0
    for tick, _, message in sorted(events):
        data += _vlq(tick - now) + message
        now = tick
    data += b"\x00\xff\x2f\x00"
    return b"MTrk" + struct.pack(">I", len(data)) + bytes(data)


def _silence(tick: int, channels: Sequence[int]) -> list[tuple[int, int, bytes]]:
    """All Notes Off, then All Sound Off, on each channel at ``tick`` (after any note there)."""
    return [(tick, order, bytes((0xB0 | channel, control, 0)))
            for order, control in ((2, ALL_NOTES_OFF), (3, ALL_SOUND_OFF)) for channel in channels]


def _spans(notes: Sequence[Note]) -> list[tuple[int, int, int]]:
    """(pitch, start, end) of each note, a note cut where the next of the same pitch starts."""
    ordered = sorted(notes, key=lambda n: (n.onset, n.pitch))
    next_start: dict[int, int] = {}
    spans: list[tuple[int, int, int]] = []
    for note in reversed(ordered):
        end = min(note.onset + note.duration, next_start.get(note.pitch, math.inf))
        next_start[note.pitch] = note.onset
        if end > note.onset:  # two notes of one pitch at one onset sound once
            spans.append((note.pitch, note.onset, int(end)))
    return spans[::-1]


def to_midi(
    parts: Sequence[Sequence[Note]],
    *,
    tempo_bpm: float = 96.0,
    programs: Sequence[int] | None = None,
    velocity: int = 80,
) -> bytes:
    """A format-1 Standard MIDI File: a tempo track, then one track and channel per part.

    ``programs`` gives each part's General MIDI program (0, piano, by default). Each track ends
    with All Notes Off and All Sound Off on its channel, and the tempo track ends with both on
    every channel used, at the last note's end.
    """
    if not 1 <= len(parts) <= len(CHANNELS):
        raise ValueError(f"parts: need 1 to {len(CHANNELS)} parts, got {len(parts)}")
    if programs is None:
        programs = [0] * len(parts)
    if len(programs) != len(parts) or not all(0 <= p <= 127 for p in programs):
        raise ValueError(f"programs: need one program (0-127) per part, got {list(programs)}")
    if not 1 <= velocity <= 127:
        raise ValueError(f"velocity: {velocity} is not 1-127")
    if not 4.0 <= tempo_bpm <= 1000.0:  # a MIDI tempo holds at most 2**24 µs per quarter
        raise ValueError(f"tempo_bpm: {tempo_bpm} is not 4-1000")
    tracks: list[bytes] = []
    last = 0
    for channel, notes, program in zip(CHANNELS, parts, programs, strict=False):
        # At one tick: note-offs (order 0) before note-ons (1), so a repeated note restarts.
        events = [(0, 0, bytes((0xC0 | channel, program)))]
        end = 0
        for pitch, start, stop in _spans(notes):
            events.append((start, 1, bytes((0x90 | channel, pitch, velocity))))
            events.append((stop, 0, bytes((0x80 | channel, pitch, 0))))
            end = max(end, stop)
        events += _silence(end, [channel])
        tracks.append(_track(events))
        last = max(last, end)
    micros = round(60_000_000 / tempo_bpm)
    tempo_events = [(0, 0, b"\xff\x51\x03" + micros.to_bytes(3, "big"))]
    tempo_events += _silence(last, CHANNELS[: len(parts)])
    header = b"MThd" + struct.pack(">IHHH", 6, 1, len(tracks) + 1, TICKS_PER_QUARTER)
    return header + _track(tempo_events) + b"".join(tracks)


def _midi_seconds(midi: bytes) -> float:
    """How long a Standard MIDI File plays: the time of its last event, through its tempo map."""
    if midi[:4] != b"MThd" or len(midi) < 14:
        raise RenderError("midi: not a Standard MIDI File (no MThd header)")
    division = int.from_bytes(midi[12:14], "big")
    if division == 0 or division & 0x8000:
        raise RenderError(f"midi: time division {division:#06x} is not ticks per quarter note")
    tempos: list[tuple[int, int]] = []  # (tick, microseconds per quarter)
    last_tick = 0
    pos = 8 + int.from_bytes(midi[4:8], "big")
    while pos + 8 <= len(midi):
        kind, length = midi[pos:pos + 4], int.from_bytes(midi[pos + 4:pos + 8], "big")
        pos += 8
        if kind == b"MTrk":
            tick, tick_tempos = _scan_track(midi[pos:pos + length])
            last_tick = max(last_tick, tick)
            tempos += tick_tempos
        pos += length
    seconds, at, micros = 0.0, 0, 500_000
    for tick, value in sorted(tempos):
        if tick >= last_tick:
            break
        seconds += (tick - at) * micros / division / 1e6
        at, micros = tick, value
    return seconds + (last_tick - at) * micros / division / 1e6


def _scan_track(data: bytes) -> tuple[int, list[tuple[int, int]]]:
    """The last tick of one track's events, and its tempo changes as (tick, µs per quarter)."""
    pos, tick, status = 0, 0, 0
    tempos: list[tuple[int, int]] = []

    def vlq() -> int:
        """Read a variable-length quantity at ``pos``."""
        nonlocal pos
        value = 0
        while pos < len(data):
            byte = data[pos]
            pos += 1
            value = (value << 7) | (byte & 0x7F)
            if not byte & 0x80:
                break
        return value

    while pos < len(data):
        tick += vlq()
        if pos >= len(data):
            break
        if data[pos] & 0x80:
            status = data[pos]
            pos += 1
        if status == 0xFF:
            meta = data[pos]
            pos += 1
            length = vlq()
            if meta == 0x51 and length == 3:
                tempos.append((tick, int.from_bytes(data[pos:pos + 3], "big")))
            pos += length
        elif status in (0xF0, 0xF7):
            pos += vlq()
        elif status & 0xF0 in (0xC0, 0xD0):
            pos += 1
        elif status & 0x80:
            pos += 2
        else:
            raise RenderError("midi: a track has data before any status byte")
    return tick, tempos


def find_soundfont() -> Path:
    """The General MIDI soundfont to render with: ATTUNE_SOUNDFONT, else a system one."""
    chosen = os.environ.get("ATTUNE_SOUNDFONT")
    if chosen:
        if Path(chosen).is_file():
            return Path(chosen)
        raise RenderError(f"soundfont: ATTUNE_SOUNDFONT names {chosen}, which is not a file")
    for path in SOUNDFONTS:
        if path.is_file():
            return path
    looked = ", ".join(str(p) for p in SOUNDFONTS)
    raise RenderError(f"soundfont: none found (looked for ATTUNE_SOUNDFONT, then {looked}); "
                      "install fluid-soundfont-gm or set ATTUNE_SOUNDFONT")


def _limit_file_size(max_bytes: int) -> Callable[[], None]:
    """A preexec_fn that caps the size of any file the child writes."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return limit


def _trim(wav: Path, out: Path, seconds: float) -> None:
    """Copy at most the first ``seconds`` of a WAV file, in its own sample format."""
    with sf.SoundFile(wav) as source:
        frames = min(source.frames, math.ceil(seconds * source.samplerate))
        data = source.read(frames, dtype="int32" if source.subtype != "FLOAT" else "float32")
        sf.write(out, data, source.samplerate, subtype=source.subtype, format="WAV")


def render_wav(
    midi: bytes,
    target: Path,
    *,
    soundfont: Path | None = None,
    sample_rate: int = 44100,
    timeout_s: float = 120.0,
) -> Path:
    """Render MIDI to a WAV file at ``target`` with fluidsynth, returning ``target``.

    fluidsynth writes a temporary file beside ``target`` under a timeout and a file-size cap
    (the MIDI's duration plus a tail, with headroom); it is cut to the MIDI's duration plus
    ``KEEP_TAIL_S`` (fluidsynth pads about four seconds), and only then replaces ``target``.
    """
    binary = shutil.which("fluidsynth")
    if binary is None:
        raise RenderError("fluidsynth: not found on PATH; install it (apt-get install fluidsynth)")
    font = soundfont if soundfont is not None else find_soundfont()
    if not font.is_file():
        raise RenderError(f"soundfont: {font} is not a file")
    seconds = _midi_seconds(midi)
    max_bytes = int(((seconds + TAIL_S) * 1.5) * sample_rate * BYTES_PER_FRAME) + 65_536
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".render-", dir=target.parent) as tmp:
        mid, wav = Path(tmp) / "in.mid", Path(tmp) / "out.wav"
        mid.write_bytes(midi)
        command = [binary, "-ni", "-q", "-g", str(GAIN), "-F", str(wav), "-r", str(sample_rate),
                   str(font), str(mid)]
        # fluidsynth starts SDL2 audio, whose PulseAudio client sizes a 64 MiB shared-memory
        # file, which the size cap forbids; SDL's dummy driver opens nothing.
        env = {**os.environ, "SDL_AUDIODRIVER": "dummy"}
        try:
            done = subprocess.run(command, capture_output=True, timeout=timeout_s, check=False,
                                  env=env, preexec_fn=_limit_file_size(max_bytes))
        except subprocess.TimeoutExpired as exc:
            raise RenderError(f"fluidsynth: no result within {timeout_s:g} s for "
                              f"{seconds:.1f} s of MIDI (a hanging note?)") from exc
        size = wav.stat().st_size if wav.exists() else 0
        if done.returncode == -signal.SIGXFSZ:
            raise RenderError(f"fluidsynth: stopped by the {max_bytes} byte file-size cap for "
                              f"{seconds:.1f} s of MIDI, with {size} bytes of WAV written")
        stderr = done.stderr.decode(errors="replace").strip()
        if done.returncode != 0:
            raise RenderError(f"fluidsynth: exit status {done.returncode}: {stderr[-500:]}")
        if size <= 44:  # a WAV header and no audio
            raise RenderError(f"fluidsynth: wrote no audio ({size} bytes): {stderr[-500:]}")
        trimmed = Path(tmp) / "trimmed.wav"
        _trim(wav, trimmed, seconds + KEEP_TAIL_S)
        os.replace(trimmed, target)
    return target
