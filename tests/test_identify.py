"""attune.identify on music-like signals synthesised here: find, locate, survive edits, refuse."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import fftconvolve, resample_poly

from attune.identify import (
    Fingerprinted,
    Index,
    IndexUnavailable,
    Job,
    JobFailure,
    LocalPool,
    Serial,
    fingerprint,
    identify,
    identify_file,
    index_jobs,
    matcher,
    tune_allocator,
)
from attune.identify import landmarks as fp
from attune.identify.matcher import match

SR = fp.SR
SONG_SECONDS = 40.0


def song(seed: int, seconds: float = SONG_SECONDS, pitch: float = 0.0,
         tempo: float = 1.0) -> np.ndarray:
    """A music-like signal: chords of harmonic notes with decaying envelopes, and drum hits.

    ``pitch`` shifts every note by that many semitones; ``tempo`` > 1 plays the same score faster
    without changing pitch (an exact pitch shift and time stretch of the same piece).
    """
    rng = np.random.default_rng(seed)
    n = round(seconds / tempo * SR)
    y = np.zeros(n + SR, dtype=np.float64)
    scale = np.array([0, 2, 4, 5, 7, 9, 11])
    t = 0.0
    while t < seconds:
        step = rng.choice([0.125, 0.25, 0.375, 0.5])
        for _ in range(rng.integers(1, 4)):
            midi = 48 + 12 * rng.integers(0, 3) + scale[rng.integers(0, 7)]
            hz = 440.0 * 2 ** ((midi - 69 + pitch) / 12)
            dur = rng.uniform(0.15, 0.8) / tempo
            k = np.arange(round(dur * SR))
            env = np.exp(-k / (0.3 * len(k))) * rng.uniform(0.2, 0.6)
            note = sum(np.sin(2 * np.pi * hz * h * k / SR) / h for h in (1, 2, 3, 4))
            start = round(t / tempo * SR)
            y[start : start + len(k)] += env * note
        if rng.random() < 0.5:
            k = np.arange(round(0.05 * SR))
            start = round(t / tempo * SR)
            y[start : start + len(k)] += 0.3 * rng.standard_normal(len(k)) * np.exp(-k / 80)
        t += step
    y = y[:n]
    return (0.5 * y / np.max(np.abs(y))).astype(np.float32)


def add_noise(y: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    """White noise at ``snr_db`` dB signal-to-noise ratio."""
    noise = np.random.default_rng(seed).standard_normal(len(y))
    gain = np.sqrt(np.mean(y**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    return (y + gain * noise).astype(np.float32)


def store(index: Index, songs: dict[int, np.ndarray], with_peaks: bool = True) -> None:
    """Fingerprint and add recordings to ``index`` (with their peaks, as batch indexing does)."""
    items = []
    for rid, y in songs.items():
        p = fp.peaks(y)
        tri = fp.triplets(p)
        keys = fp.hash_keys(tri)
        values = fp.pack_values(tri, keys)
        items.append(Fingerprinted(rid, f"song-{rid}", len(y) / SR, keys, values,
                                   fp.pack_peaks(p) if with_peaks else None))
    index.add(items)


def reverberate(y: np.ndarray, seed: int = 7, tail: float = 0.5) -> np.ndarray:
    """A wet room: direct sound, an echo at 120 ms and a noise tail decaying by 60 dB in ``tail``
    seconds (0.5 s is the benchmark's room)."""
    rng = np.random.default_rng(seed)
    k = np.arange(int(max(0.8, 1.5 * tail) * SR))
    ir = 0.3 * rng.standard_normal(len(k)) * np.exp(-6.9 * k / (tail * SR))
    ir[0] += 1.0
    ir[int(0.12 * SR)] += 0.6
    wet = fftconvolve(y, ir)[: len(y)]
    return (wet / np.max(np.abs(wet)) * np.max(np.abs(y))).astype(np.float32)


CATALOG = {101 + i: i for i in range(6)}  # recording id -> synthesis seed


@pytest.fixture(scope="module")
def catalog() -> dict[int, np.ndarray]:
    return {rid: song(seed) for rid, seed in CATALOG.items()}


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory, catalog: dict[int, np.ndarray]) -> Index:
    ix = Index.create(tmp_path_factory.mktemp("identify") / "index")
    store(ix, catalog)
    return ix


def test_exact_excerpt_is_found_with_its_offset(index: Index,
                                                catalog: dict[int, np.ndarray]) -> None:
    hits = identify(index, catalog[103][12 * SR : 22 * SR])
    assert [h.recording_id for h in hits] == [103]
    h = hits[0]
    assert h.reference_start - h.query_start == pytest.approx(12.0, abs=0.1)
    assert h.time_factor == pytest.approx(1.0, abs=0.01)
    assert h.pitch_shift == pytest.approx(0.0, abs=0.25)
    assert h.confidence > 0.99 and h.duration > 8


def test_unrelated_audio_is_no_match(index: Index) -> None:
    for seed in (50, 51, 52):
        assert identify(index, song(seed, seconds=15)) == []
    noise = np.random.default_rng(3).standard_normal(10 * SR).astype(np.float32) * 0.1
    assert identify(index, noise) == []
    assert identify(index, np.zeros(10 * SR, dtype=np.float32)) == []


def test_five_second_sample_inside_new_audio_is_located(index: Index,
                                                        catalog: dict[int, np.ndarray]) -> None:
    new = song(77, seconds=30)
    sample = catalog[105][20 * SR : 25 * SR]
    mixed = new.copy()
    mixed[11 * SR : 16 * SR] = 0.3 * new[11 * SR : 16 * SR] + sample
    hits = identify(index, mixed)
    assert [h.recording_id for h in hits] == [105]
    h = hits[0]
    assert h.query_start == pytest.approx(11.0, abs=0.5)
    # the last triplets inside the sample reach at most MAX_GAP frames (1 s) past their anchor
    assert h.query_end == pytest.approx(16.0, abs=1.0)
    assert h.reference_start - h.query_start == pytest.approx(9.0, abs=0.1)


@pytest.mark.parametrize("speed", [0.9, 0.95, 1.05, 1.1])
def test_speed_change_is_matched_and_measured(index: Index, catalog: dict[int, np.ndarray],
                                              speed: float) -> None:
    up, down = {0.9: (10, 9), 0.95: (20, 19), 1.05: (20, 21), 1.1: (10, 11)}[speed]
    fast = resample_poly(catalog[102], up, down).astype(np.float32)  # played at SR: speed x
    hits = identify(index, fast[5 * SR : 15 * SR])
    assert hits and hits[0].recording_id == 102
    assert hits[0].time_factor == pytest.approx(speed, abs=0.01)
    assert hits[0].pitch_shift == pytest.approx(12 * np.log2(speed), abs=0.3)
    expected_ref = speed * 5 + speed * hits[0].query_start
    assert hits[0].reference_start == pytest.approx(expected_ref, abs=0.25)


@pytest.mark.parametrize(("pitch", "tempo"), [(2.0, 1.0), (-2.0, 1.0), (0.0, 1.1), (0.0, 0.9)])
def test_pitch_shift_and_time_stretch_are_matched(index: Index, pitch: float,
                                                  tempo: float) -> None:
    edited = song(CATALOG[104], pitch=pitch, tempo=tempo)
    hits = identify(index, edited[8 * SR : 18 * SR])
    assert hits and hits[0].recording_id == 104
    assert hits[0].pitch_shift == pytest.approx(pitch, abs=0.3)
    assert hits[0].time_factor == pytest.approx(tempo, abs=0.01)


def test_noisy_excerpt_is_matched(index: Index, catalog: dict[int, np.ndarray]) -> None:
    hits = identify(index, add_noise(catalog[106][3 * SR : 13 * SR], snr_db=0))
    assert hits and hits[0].recording_id == 106


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_low_bitrate_mp3_file_is_matched(tmp_path: Path, index: Index,
                                         catalog: dict[int, np.ndarray]) -> None:
    wav = tmp_path / "q.wav"
    sf.write(wav, catalog[101][10 * SR : 20 * SR], SR)
    mp3 = tmp_path / "q.mp3"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(wav), "-b:a", "32k", str(mp3)],
                   check=True)
    hits = identify_file(index, mp3)
    assert hits and hits[0].recording_id == 101


def test_index_persists_removes_and_replaces(tmp_path: Path,
                                            catalog: dict[int, np.ndarray]) -> None:
    ix = Index.create(tmp_path / "ix")
    store(ix, {101: catalog[101], 102: catalog[102]})
    store(ix, {103: catalog[103]})
    query = catalog[102][4 * SR : 14 * SR]
    reopened = Index.open(tmp_path / "ix")
    assert sorted(reopened.recordings) == [101, 102, 103]
    assert [h.recording_id for h in identify(reopened, query)] == [102]
    assert reopened.remove([102, 999]) == [102]
    assert identify(Index.open(tmp_path / "ix"), query) == []
    entries_before = reopened.entries
    reopened.compact()
    # one segment: keys, rids, values, peaks and the peak table
    assert reopened.entries < entries_before and len(list((tmp_path / "ix").glob("*.npy"))) == 5
    assert reopened.peaks(102) is None and reopened.peaks(101) is not None
    store(reopened, {102: catalog[102]})  # re-adding brings it back
    store(reopened, {101: catalog[104]})  # replacing a recording drops its old fingerprints
    fresh = Index.open(tmp_path / "ix")
    assert np.array_equal(fresh.peaks(101), fp.pack_peaks(fp.peaks(catalog[104])))
    assert [h.recording_id for h in identify(fresh, query)] == [102]
    assert identify(fresh, catalog[101][4 * SR : 14 * SR]) == []
    assert [h.recording_id for h in identify(fresh, catalog[104][4 * SR : 14 * SR])] == [101]


def test_index_errors_name_the_directory(tmp_path: Path) -> None:
    with pytest.raises(IndexUnavailable, match="no fingerprint index"):
        Index.open(tmp_path)
    ix = Index.create(tmp_path / "ix")
    manifest = json.loads((ix.path / "index.json").read_text())
    manifest["params"]["HOP"] = 64
    (ix.path / "index.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexUnavailable, match="other fingerprint parameters"):
        Index.open(ix.path)


def test_streamed_peaks_equal_whole_signal_peaks(catalog: dict[int, np.ndarray]) -> None:
    y = catalog[101]
    whole = fp.peaks(y)
    blocks = [y[i : i + 3001] for i in range(0, len(y), 3001)]
    parts = list(fp.peaks_stream(blocks, chunk_frames=2 * fp.RANK_FRAMES))
    streamed = np.concatenate([p.frame for p in parts])
    assert np.array_equal(whole.frame, streamed)
    assert 15 < len(whole.frame) / SONG_SECONDS <= fp.PEAKS_PER_WINDOW * fp.SR / fp.HOP / 64


def test_batch_indexing_runs_jobs_and_reports_bad_files(tmp_path: Path,
                                                        catalog: dict[int, np.ndarray]) -> None:
    jobs = []
    for rid in (101, 102):
        path = tmp_path / f"{rid}.flac"
        sf.write(path, catalog[rid], SR)
        jobs.append(Job(rid, str(path), path.name))
    bad = tmp_path / "7.wav"
    bad.write_text("not audio")
    jobs.append(Job(7, str(bad), bad.name))
    for backend in (Serial(), LocalPool(2)):
        ix = Index.create(tmp_path / f"ix-{type(backend).__name__}")
        seen: list[object] = []
        report = index_jobs(ix, jobs, backend=backend, on_result=seen.append)
        assert sorted(report.added) == [101, 102] and len(seen) == 3
        assert [f.job.recording_id for f in report.failed] == [7]
        assert isinstance(report.failed[0], JobFailure) and str(bad) in report.failed[0].error
        assert report.seconds == pytest.approx(2 * SONG_SECONDS, abs=0.01)
        hits = identify(ix, catalog[102][SR : 9 * SR])
        assert [h.recording_id for h in hits] == [102]


def test_packed_peaks_round_trip(catalog: dict[int, np.ndarray]) -> None:
    p = fp.peaks(catalog[103])
    frame, pitch = fp.unpack_peaks(fp.pack_peaks(p))
    order = np.argsort(np.rint(p.frame), kind="stable")
    assert np.all(np.diff(frame) >= 0)
    assert np.allclose(np.sort(frame), np.sort(np.rint(p.frame)))
    assert np.abs(np.sort(pitch) - np.sort(p.pitch[order])).max() <= 1 / fp.PEAK_PITCH_STEPS


def test_reverberant_excerpt_is_verified_against_stored_peaks(
        tmp_path: Path, catalog: dict[int, np.ndarray]) -> None:
    query = reverberate(catalog[104][12 * SR : 22 * SR])
    hits = identify(Index.open(_index_with(tmp_path / "with", catalog, True)), query)
    assert hits and hits[0].recording_id == 104 and hits[0].confidence >= 0.5
    assert hits[0].reference_start - hits[0].query_start == pytest.approx(12.0, abs=0.1)
    # the same index without peaks can only use the stricter vote count
    plain = identify(Index.open(_index_with(tmp_path / "without", catalog, False)), query)
    assert plain == [] or plain[0].score >= 8
    for seed in (50, 51):  # and reverberant unrelated audio still matches nothing
        assert identify(Index.open(tmp_path / "with"), reverberate(song(seed, 10))) == []


def test_dense_peaks_and_wide_pairing_extend_the_default(catalog: dict[int, np.ndarray]) -> None:
    y = catalog[102][: 10 * SR]
    p, dense = fp.peaks(y), fp.peaks(y, per_window=matcher.DENSE_PEAKS)
    assert len(dense.frame) > len(p.frame)
    assert _rows(p[:2]) <= _rows(dense[:2])
    tri, wide = fp.triplets(p), fp.triplets(p, partners=matcher.DENSE_PARTNERS)
    assert len(wide.frame) > 2 * len(tri.frame)
    assert _rows(tri) <= _rows(wide)


def _rows(columns: tuple[np.ndarray, ...]) -> set[tuple[float, ...]]:
    """The rows of equal-length columns, as a set."""
    return set(zip(*(c.tolist() for c in columns), strict=True))


def test_dense_second_look_finds_what_a_long_reverb_hides(
        index: Index, catalog: dict[int, np.ndarray]) -> None:
    rescued = dense_right = 0
    for rid, y in catalog.items():
        for start in (2, 12, 22):
            query = reverberate(y[start * SR : (start + 10) * SR], tail=1.0)
            p = fp.peaks(query)
            first = match(index, fp.triplets(p), peaks=p)
            hits = identify(index, query)
            assert not hits or hits[0].recording_id == rid
            right = bool(hits) and hits[0].recording_id == rid
            dense_right += right
            rescued += right and not (first and first[0].recording_id == rid)
    assert rescued >= 3 and dense_right >= 16  # of 18
    for seed in (60, 61, 62):  # the second look still finds nothing in unrelated audio
        assert identify(index, reverberate(song(seed, 10), tail=1.0)) == []


def _index_with(where: Path, catalog: dict[int, np.ndarray], peaks: bool) -> Path:
    store(Index.create(where), catalog, with_peaks=peaks)
    return where


def test_lookup_budget_reads_the_rarest_keys(index: Index,
                                             catalog: dict[int, np.ndarray]) -> None:
    tri = fingerprint(catalog[101][: 10 * SR])
    keys = fp.hash_keys(tri)
    everything = index.lookup(keys)
    budget = len(everything.rids) // 2
    rarest = index.lookup(keys, budget=budget)
    assert 0 < len(rarest.rids) <= budget
    per_key = dict(zip(*np.unique(keys[everything.probe], return_counts=True), strict=True))
    read = set(keys[rarest.probe].tolist())
    skipped = set(per_key) - read
    assert skipped and max(per_key[k] for k in read) <= min(per_key[k] for k in skipped)
    assert index.lookup(keys, budget=len(everything.rids)).rids.size == everything.rids.size


def test_populated_index_answers_the_same(tmp_path: Path, catalog: dict[int, np.ndarray]) -> None:
    store(Index.create(tmp_path / "ix"), {101: catalog[101], 102: catalog[102]})
    query = catalog[102][4 * SR : 14 * SR]
    plain = identify(Index.open(tmp_path / "ix"), query)
    populated = identify(Index.open(tmp_path / "ix", populate=True), query)
    assert plain == populated and plain[0].recording_id == 102
    assert isinstance(tune_allocator(), bool)


def test_crowded_keeps_every_vote_of_a_strong_cell_pair() -> None:
    """The linear-time prefilter against a full count: it drops chance votes, never evidence."""
    from attune.identify.matcher import MIN_VOTES, _crowded

    rng = np.random.default_rng(4)
    rid = rng.integers(0, 5_000, 300_000)
    window = rng.integers(0, 3, 300_000)
    offset_bin = rng.integers(0, 2_000, 300_000)
    planted = [(17, 1, 500, 3), (17, 1, 501, 1), (900, 0, 7, 2), (900, 0, 8, 2), (42, 2, 0, 4)]
    for r, w, b, n in planted:
        rid = np.r_[rid, [r] * n]
        window = np.r_[window, [w] * n]
        offset_bin = np.r_[offset_bin, [b] * n]
    cell = (rid << 31) | (window << 17) | offset_bin
    keep = _crowded(cell)
    uniq, counts = np.unique(cell, return_counts=True)
    count = dict(zip(uniq.tolist(), counts.tolist(), strict=True))
    strong = [c for c in uniq.tolist() if count[c] + count.get(c + 1, 0) >= MIN_VOTES]
    assert {(17 << 31) | (1 << 17) | 500, (900 << 31) | 7, (42 << 31) | (2 << 17)} <= set(strong)
    must = np.isin(cell, [c + d for c in strong for d in (-1, 0, 1)])
    assert keep[must].all()
    assert keep.mean() < 0.5  # most chance votes are alone in their cells and dropped


@pytest.mark.parametrize(("size", "span", "base"), [
    (0, 2**26, 0), (1, 2**26, 0), (5_000, 2**26, 0), (300_000, 2**26, 0), (300_000, 2**26, 7),
    (300_000, 30_000, 0), (300_000, 30_000, 10**7)])
def test_directory_search_equals_searchsorted(size: int, span: int, base: int) -> None:
    """The directory's search against numpy's, on skewed keys and out-of-range targets, with
    slots searched (keys spread wide) and slots read off (keys dense: a slot per key value)."""
    from attune.identify.index import _Directory

    rng = np.random.default_rng(size)
    keys = np.sort(np.r_[rng.zipf(1.3, size) % span, rng.integers(0, span, size // 10)]
                   ).astype(np.uint32)[:size] + np.uint32(base)
    directory = _Directory.build(keys)
    if size >= 5_000:
        assert (directory.shift == 0) == (span < size)
    targets = np.sort(np.r_[rng.integers(0, base + span + 5, 4_000), keys[:: max(1, size // 97)],
                            keys[-1:].astype(np.int64) + 1, [0, 2**32 - 1]]).astype(np.int64)
    found = directory.first_at_least(keys, targets)
    assert np.array_equal(found, np.searchsorted(keys, targets))


def test_identify_reads_within_its_budget(index: Index, catalog: dict[int, np.ndarray],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Every lookup of a query is given a budget of entries per second of query."""
    from attune.identify import matcher

    budgets: list[int | None] = []
    lookup = Index.lookup

    def spy(self: Index, keys: np.ndarray, budget: int | None = None) -> object:
        budgets.append(budget)
        return lookup(self, keys, budget)

    monkeypatch.setattr(Index, "lookup", spy)
    query = catalog[103][12 * SR : 22 * SR]
    assert identify(index, query)[0].recording_id == 103
    assert budgets and all(b is not None and 8 * matcher.LOOKUP_BUDGET <= b
                           <= 10 * matcher.LOOKUP_BUDGET for b in budgets)
    monkeypatch.setattr(matcher, "LOOKUP_BUDGET", 0)
    monkeypatch.setattr(matcher, "DENSE_BUDGET", 0)
    assert identify(index, query) == []  # nothing read, nothing found


def test_window_votes_count_exactly() -> None:
    """Votes per (recording, window) from the hashed pass equal a direct count."""
    from attune.identify.matcher import _window_votes

    rng = np.random.default_rng(9)
    cell = (rng.integers(0, 70_000, 200_000) << 31) | (rng.integers(0, 4, 200_000) << 17) | (
        rng.integers(0, 2**17, 200_000))
    windows = np.unique(np.r_[cell[:50] >> 17, [(123_456 << 14) | 3]])  # one with no votes
    counted = _window_votes(cell, windows)
    assert counted == {int(w): int(np.count_nonzero(cell >> 17 == w)) for w in windows}
    assert counted[(123_456 << 14) | 3] == 0


@pytest.mark.parametrize("seconds", [3.0, 10.0, 45.0])
def test_votes_fall_in_the_windows_that_hold_them(seconds: float) -> None:
    """A query shorter than a window votes once per candidate, in one window centred on it; a
    longer one votes in the (at most two) overlapping windows holding the candidate, none
    outside the query."""
    from attune.identify.matcher import BIN, WINDOW, _cells, _Votes, _Windows

    rng = np.random.default_rng(int(seconds))
    frames = seconds * fp.SR / fp.HOP
    n = 5_000
    t_query = np.sort(rng.uniform(0, frames, n))
    tri = fp.Triplets(*(np.zeros(n, dtype=np.float32) for _ in range(6)))._replace(
        frame=t_query.astype(np.float32))
    win = _Windows.of(tri)
    scale = rng.uniform(0.9, 1.1, n)
    v = _Votes(rng.integers(0, 50, n).astype(np.uint32), np.arange(n), t_query,
               np.full(n, 40.0), 5_000 + scale * t_query, scale, np.zeros(n))
    cell, owner = _cells(v, win)
    window = (cell >> 17) & (2**14 - 1)
    per_candidate = np.bincount(owner, minlength=n)
    if frames < WINDOW:
        assert win.last == 0 and abs(float(win.centre(np.array(0))) - t_query.max() / 2) < 1
        assert (per_candidate == 1).all() and (window == 0).all()
    else:
        assert win.origin == 0 and win.last == int(np.ceil((t_query.max() + 1 - WINDOW) / 320))
        assert ((per_candidate >= 1) & (per_candidate <= 2)).all()
        start = win.centre(window) - WINDOW // 2
        assert ((t_query[owner] >= start) & (t_query[owner] < start + WINDOW)).all()
        assert window.max() == win.last
    # the bin is where the line through the candidate meets the window's centre
    b = (cell & (2**17 - 1)) - 2**12
    centre = win.centre(window)
    assert np.array_equal(b, np.floor((v.t_ref[owner] - scale[owner] * (t_query[owner] - centre))
                                      / BIN).astype(np.int64))


def test_peak_sets_equal_separate_peak_picks(catalog: dict[int, np.ndarray]) -> None:
    """Several peak densities from one spectrogram are the peaks each would get alone, for a
    short query and for a signal of several analysis chunks."""
    y = catalog[101]
    for signal in (y[: 10 * SR], np.tile(y, 3)):
        sets = fp.peak_sets(signal, SR, (fp.PEAKS_PER_WINDOW, 30, 5))
        for per_window, got in zip((fp.PEAKS_PER_WINDOW, 30, 5), sets, strict=True):
            alone = fp.peaks(signal, SR, per_window=per_window)
            assert all(np.array_equal(a, b) for a, b in zip(got, alone, strict=True))
        assert len(sets[2].frame) < len(sets[0].frame) < len(sets[1].frame)
