"""The reference melody model: a variable-order Markov model whose probabilities split over works.

Tokens are joint (pitch relative to the tonic, duration) pairs. Every count the model holds is a
sum of per-work counts, and Witten-Bell interpolation unrolls into

    P(w | h) = sum_k beta_k * c(h_k, w) / c(h_k) + beta_prior / V

so each generated token's probability splits exactly into the training works' contributions plus
a small prior ("novelty") share: attribution by construction, not by similarity. Keeping only a
subset of works is exact too (the counts of a subset are sums over its works), which is what the
LDS evaluation retrains with. The model is conditioned on the mode by counting only the works in
the requested mode (all works when none is in it).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import zipfile
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from attune.melody.notes import MODES, Melody, Note

Token = tuple[int, int]
"""(pitch relative to the tonic in semitones, clipped to PITCH_RANGE; duration in ticks, one of
DURATIONS)."""

PITCH_RANGE = (-18, 30)
"""Lowest and highest relative pitch a token holds; wider leaps are clipped into it."""
DURATIONS = (1, 2, 3, 4, 6, 8, 9, 12, 16, 18, 24, 30, 36, 48, 60, 72, 96)
"""The durations (ticks, 12 per quarter) a token may take; others snap to the nearest in log."""
N_PITCHES = PITCH_RANGE[1] - PITCH_RANGE[0] + 1
VOCAB = N_PITCHES * len(DURATIONS)
"""V: the size of the token grid, global and fixed, so the prior never depends on the data."""
START = VOCAB
"""The start-of-piece symbol: it appears only in contexts, never as a prediction."""
MAX_ORDER = 6
"""Context keys pack up to this many tokens into one int64 (base VOCAB + 1)."""
PRIOR = -1
"""The provenance key of the prior (novelty) share of a probability."""
FORMAT = "attune-markov-melody/1"

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]
_LOG_DURATIONS = np.log2(np.asarray(DURATIONS, dtype=np.float64))


@dataclass(frozen=True)
class _Level:
    """One context length's counts: contexts -> followers -> works, as three nested CSR runs."""

    ctx_keys: IntArray  # sorted unique context keys
    ctx_total: IntArray  # c(h)
    ctx_types: IntArray  # T(h): distinct followers
    ctx_start: IntArray  # into the pairs, len n_ctx + 1
    pair_key: IntArray  # context index * vocab + follower, sorted
    pair_tok: IntArray
    pair_total: IntArray  # c(h, w)
    pair_start: IntArray  # into the triples, len n_pairs + 1
    trip_work: IntArray  # work index
    trip_count: IntArray  # c_j(h, w)

    @classmethod
    def build(cls, keys: IntArray, targets: IntArray, works: IntArray, vocab: int) -> _Level:
        """Count (context, follower, work) triples of the events whose context key is >= 0."""
        keep = keys >= 0
        keys, targets, works = keys[keep], targets[keep], works[keep]
        order = np.lexsort((works, targets, keys))
        keys, targets, works = keys[order], targets[order], works[order]
        n = len(keys)
        new_trip = np.ones(n, dtype=bool)
        new_pair = np.ones(n, dtype=bool)
        new_ctx = np.ones(n, dtype=bool)
        if n:
            new_ctx[1:] = keys[1:] != keys[:-1]
            new_pair[1:] = new_ctx[1:] | (targets[1:] != targets[:-1])
            new_trip[1:] = new_pair[1:] | (works[1:] != works[:-1])
        trip_at = np.flatnonzero(new_trip)
        trip_count = np.diff(np.append(trip_at, n)).astype(np.int64)
        trip_is_pair = new_pair[trip_at]
        trip_is_ctx = new_ctx[trip_at]
        pair_first = np.flatnonzero(trip_is_pair)
        pair_start = np.append(pair_first, len(trip_at)).astype(np.int64)
        pair_total = np.add.reduceat(trip_count, pair_first) if len(pair_first) else trip_count
        ctx_first = np.flatnonzero(trip_is_ctx[pair_first])
        ctx_start = np.append(ctx_first, len(pair_first)).astype(np.int64)
        ctx_total = np.add.reduceat(pair_total, ctx_first) if len(ctx_first) else pair_total
        pair_tok = targets[trip_at[pair_first]]
        ctx_index = np.repeat(np.arange(len(ctx_first), dtype=np.int64), np.diff(ctx_start))
        return cls(keys[trip_at[pair_first[ctx_first]]], ctx_total.astype(np.int64),
                   np.diff(ctx_start), ctx_start, ctx_index * vocab + pair_tok, pair_tok,
                   pair_total.astype(np.int64), pair_start, works[trip_at], trip_count)

    def restrict(self, mask: NDArray[np.bool_], vocab: int) -> _Level:
        """The same counts keeping only the works where ``mask`` is true (exact, no recount)."""
        if not len(self.trip_work):
            return self
        keep = mask[self.trip_work]
        kept_trips = np.add.reduceat(keep.astype(np.int64), self.pair_start[:-1])
        totals = np.add.reduceat(np.where(keep, self.trip_count, 0), self.pair_start[:-1])
        pair_keep = kept_trips > 0
        kept_pairs = np.add.reduceat(pair_keep.astype(np.int64), self.ctx_start[:-1])
        ctx_total = np.add.reduceat(totals, self.ctx_start[:-1])
        ctx_keep = kept_pairs > 0
        types = kept_pairs[ctx_keep]
        ctx_index = np.repeat(np.arange(len(types), dtype=np.int64), types)
        pair_tok = self.pair_tok[pair_keep]
        return _Level(self.ctx_keys[ctx_keep], ctx_total[ctx_keep], types,
                      np.concatenate(([0], np.cumsum(types))).astype(np.int64),
                      ctx_index * vocab + pair_tok, pair_tok, totals[pair_keep],
                      np.concatenate(([0], np.cumsum(kept_trips[pair_keep]))).astype(np.int64),
                      self.trip_work[keep], self.trip_count[keep])

    def find(self, keys: IntArray) -> tuple[NDArray[np.bool_], IntArray]:
        """Which context keys this level holds, and their indices (garbage where absent)."""
        at = np.searchsorted(self.ctx_keys, keys)
        at = np.minimum(at, max(len(self.ctx_keys) - 1, 0))
        found = (keys >= 0) & (len(self.ctx_keys) > 0)
        if len(self.ctx_keys):
            found &= self.ctx_keys[at] == keys
        return found, at

    def follower_counts(self, ctx: IntArray, targets: IntArray, vocab: int) -> IntArray:
        """c(h, w) for each (context index, follower) query, 0 where the pair never occurred."""
        query = ctx * vocab + targets
        at = np.minimum(np.searchsorted(self.pair_key, query), max(len(self.pair_key) - 1, 0))
        if not len(self.pair_key):
            return np.zeros(len(query), dtype=np.int64)
        return np.where(self.pair_key[at] == query, self.pair_total[at], 0)

    def pair_index(self, ctx: int, target: int, vocab: int) -> int:
        """The index of one (context index, follower) pair, or -1."""
        at = int(np.searchsorted(self.pair_key, ctx * vocab + target))
        ok = at < len(self.pair_key) and int(self.pair_key[at]) == ctx * vocab + target
        return at if ok else -1


@dataclass(frozen=True)
class CountTable:
    """Witten-Bell interpolated counts over nested context levels, every count kept per work.

    Level 0 is the empty context (key 0); level k a longer one, each level's context a
    refinement of the one below. Shared by the melody model and the harmoniser.
    """

    levels: tuple[_Level, ...]
    vocab: int

    @classmethod
    def build(cls, keys: Sequence[IntArray], targets: IntArray, works: IntArray,
              vocab: int) -> CountTable:
        """Count events: ``keys[k][i]`` is event i's level-k context key (-1: none)."""
        return cls(tuple(_Level.build(k, targets, works, vocab) for k in keys), vocab)

    def restrict(self, mask: NDArray[np.bool_]) -> CountTable:
        """The table of the works where ``mask`` is true, exactly as if trained on them alone."""
        return CountTable(tuple(level.restrict(mask, self.vocab) for level in self.levels),
                          self.vocab)

    def probs(self, keys: Sequence[IntArray], targets: IntArray) -> FloatArray:
        """P(target | contexts) for a batch of events, by the Witten-Bell recursion."""
        p = np.full(len(targets), 1.0 / self.vocab)
        for level, key in zip(self.levels, keys, strict=True):
            found, at = level.find(key)
            c = np.where(found, level.ctx_total[at] if len(level.ctx_keys) else 0, 0)
            t = np.where(found, level.ctx_types[at] if len(level.ctx_keys) else 0, 0)
            n = np.where(found, level.follower_counts(at, targets, self.vocab), 0)
            denominator = np.maximum(c + t, 1)
            p = np.where(found, (n + t * p) / denominator, p)
        return p

    def _found(self, keys: Sequence[int]) -> list[tuple[_Level, int]]:
        """The levels that hold their context key, with the context's index, lowest first."""
        held = []
        for level, key in zip(self.levels, keys, strict=True):
            found, at = level.find(np.asarray([key], dtype=np.int64))
            if found[0]:
                held.append((level, int(at[0])))
        return held

    def distribution(self, keys: Sequence[int]) -> FloatArray:
        """The whole next-token distribution (length vocab) for one event's contexts."""
        dist = np.full(self.vocab, 1.0 / self.vocab)
        for level, ctx in self._found(keys):
            c, t = int(level.ctx_total[ctx]), int(level.ctx_types[ctx])
            lo, hi = int(level.ctx_start[ctx]), int(level.ctx_start[ctx + 1])
            dist *= t / (c + t)
            dist[level.pair_tok[lo:hi]] += level.pair_total[lo:hi] / (c + t)
        return dist

    def provenance(self, keys: Sequence[int], target: int) -> dict[int, float]:
        """P(target | contexts) split over work indices, plus key PRIOR for the prior's share."""
        mass: dict[int, float] = {}
        weight = 1.0  # product of (1 - lambda) over the levels above
        for level, ctx in reversed(self._found(keys)):
            c, t = int(level.ctx_total[ctx]), int(level.ctx_types[ctx])
            pair = level.pair_index(ctx, target, self.vocab)
            if pair >= 0:
                lo, hi = int(level.pair_start[pair]), int(level.pair_start[pair + 1])
                scale = weight / (c + t)
                for work, count in zip(level.trip_work[lo:hi].tolist(),
                                       level.trip_count[lo:hi].tolist(), strict=True):
                    mass[work] = mass.get(work, 0.0) + count * scale
            weight *= t / (c + t)
        mass[PRIOR] = weight / self.vocab
        return mass

    def followers(self, keys: Sequence[int]) -> list[IntArray]:
        """Tokens counted after each held context, longest context first."""
        return [level.pair_tok[int(level.ctx_start[ctx]):int(level.ctx_start[ctx + 1])]
                for level, ctx in reversed(self._found(keys))]


def quantise_durations(ticks: IntArray) -> IntArray:
    """Indices into DURATIONS of the nearest duration in log2 (ties to the shorter)."""
    logs = np.log2(np.maximum(ticks, 1).astype(np.float64))
    nearest: IntArray = np.abs(logs[:, None] - _LOG_DURATIONS[None, :]).argmin(axis=1)
    return nearest.astype(np.int64)


def _token_ids(melody: Melody) -> IntArray:
    """Token ids of a melody's notes: pitch index * len(DURATIONS) + duration index."""
    if not melody.notes:
        return np.zeros(0, dtype=np.int64)
    onsets = melody.onsets()
    durations = melody.durations()
    spans = durations.copy()
    gaps = np.diff(onsets)
    spans[:-1] = np.where(gaps > 0, gaps, durations[:-1])
    pitch = np.clip(melody.degrees(), PITCH_RANGE[0], PITCH_RANGE[1]) - PITCH_RANGE[0]
    return pitch * len(DURATIONS) + quantise_durations(spans)


def _token(token_id: int) -> Token:
    """The (relative pitch, duration) of a token id."""
    pitch, duration = divmod(token_id, len(DURATIONS))
    return (pitch + PITCH_RANGE[0], DURATIONS[duration])


def _member(ids: IntArray, size: int) -> NDArray[np.bool_]:
    """A boolean mask of length ``size``, true at ``ids``."""
    mask = np.zeros(size, dtype=bool)
    mask[ids] = True
    return mask


def tokens_of(melody: Melody) -> list[Token]:
    """A melody as tokens: pitch relative to the tonic (clipped) and the time to the next onset.

    A note's duration is the time to the next note's onset (a rest joins the note before it);
    the last note keeps its own. Both snap to the token grid (PITCH_RANGE, DURATIONS).
    """
    return [_token(int(t)) for t in _token_ids(melody)]


def tonic_pitch(tonic: int) -> int:
    """The MIDI pitch of relative pitch 0: the tonic nearest middle C (as Melody.degrees)."""
    return 60 + tonic if tonic < 6 else 48 + tonic


def _context_keys(padded: IntArray, starts: IntArray, order: int) -> list[IntArray]:
    """Level-k context keys (k = 0..order) of each position of START-padded sequences.

    ``starts[i]`` is the index of position i's START; a context reaching before it is -1.
    """
    base = VOCAB + 1
    positions = np.arange(len(padded), dtype=np.int64)
    keys = [np.zeros(len(padded), dtype=np.int64)]
    running = np.zeros(len(padded), dtype=np.int64)
    for k in range(1, order + 1):
        back = positions - k
        valid = back >= starts
        running = running + np.where(valid, padded[np.maximum(back, 0)], 0) * base ** (k - 1)
        keys.append(np.where(valid, running, -1))
    return keys


def _events(sequences: Sequence[IntArray], order: int) -> tuple[list[IntArray], IntArray,
                                                                 IntArray]:
    """Context keys per level, targets and sequence index of every token of the sequences."""
    lengths = np.asarray([len(s) + 1 for s in sequences], dtype=np.int64)
    padded = np.concatenate([np.concatenate(([START], s)) for s in sequences]
                            ) if len(sequences) else np.zeros(0, dtype=np.int64)
    padded = padded.astype(np.int64)
    first = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
    starts = np.repeat(first, lengths)
    owner = np.repeat(np.arange(len(sequences), dtype=np.int64), lengths)
    keys = _context_keys(padded, starts, order)
    is_token = padded != START
    return [k[is_token] for k in keys], padded[is_token], owner[is_token]


def _history_keys(history: Sequence[int], order: int) -> list[int]:
    """Level-k context keys (k = 0..order) after ``history`` (token ids, START first)."""
    base = VOCAB + 1
    keys, running = [0], 0
    for k in range(1, order + 1):
        if k > len(history):
            keys.append(-1)
            continue
        running += history[-k] * base ** (k - 1)
        keys.append(running)
    return keys


@dataclass(frozen=True)
class GeneratedNote:
    """One generated note, with how much each training work contributed to its probability.

    ``provenance`` maps work id -> probability mass (key -1: the prior's share); the values sum
    to the token's probability under the model (before temperature, guard or ending rule).
    """

    token: Token
    pitch: int
    onset: int
    duration: int
    provenance: dict[int, float]


@dataclass(frozen=True)
class Generation:
    """A generated melody, its notes' provenance, and its log2 probability under the model."""

    melody: Melody
    notes: tuple[GeneratedNote, ...]
    seed: int
    resamples: int
    log2_prob: float


def _write_npz(path: Path, arrays: Mapping[str, NDArray[np.generic]]) -> str:
    """Write arrays as an .npz with fixed timestamps (same content, same bytes); its sha256."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arrays[name]),
                                      allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, member.getvalue())
    data = buffer.getvalue()
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def _read_npz(path: Path, fmt: str) -> tuple[dict[str, object], dict[str, NDArray[np.int64]]]:
    """Read an .npz written by _write_npz: its JSON metadata and integer arrays."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: np.asarray(data[name], dtype=np.int64) for name in data.files
                  if name != "meta"}
        meta = json.loads(bytes(np.asarray(data["meta"], dtype=np.uint8)).decode())
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        raise ValueError(f"{path}: not a {fmt} file")
    return meta, arrays


def _meta_array(meta: Mapping[str, object]) -> NDArray[np.uint8]:
    """JSON metadata as bytes in an array (npz holds arrays only, and pickle is off)."""
    return np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)


class MarkovModel:
    """Variable-order Witten-Bell Markov model over tokens, with per-work counts and a copy guard.

    Train with ``MarkovModel.train(works)``; ``works`` keeps the work ids in training order.
    """

    def __init__(self, works: Sequence[int], modes: Sequence[str],
                 sequences: Sequence[IntArray], order: int) -> None:
        """Count the token sequences (one per work); use train() rather than this."""
        if not 0 <= order <= MAX_ORDER:
            raise ValueError(f"order: {order} is not in 0..{MAX_ORDER}")
        if any(w < 0 for w in works) or len(set(works)) != len(works):
            raise ValueError("works: ids must be distinct and >= 0 (-1 marks the prior)")
        self.works: tuple[int, ...] = tuple(works)
        self.modes: tuple[str, ...] = tuple(modes)
        self.order = order
        self._sequences = tuple(np.asarray(s, dtype=np.int64) for s in sequences)
        keys, targets, owner = _events(self._sequences, order)
        self._table = CountTable.build(keys, targets, owner, VOCAB)
        self._index = {w: i for i, w in enumerate(self.works)}
        self._tables: dict[bytes, CountTable] = {}
        self._windows: dict[int, set[bytes]] = {}

    @classmethod
    def train(cls, works: Mapping[int, Melody], *, order: int = 4) -> MarkovModel:
        """Count every work's tokens at context lengths 0..order, keeping per-work counts."""
        ids = sorted(works)
        return cls(ids, [works[w].mode for w in ids], [_token_ids(works[w]) for w in ids],
                   order)

    def _mask(self, subset: Collection[int] | None, mode: str) -> NDArray[np.bool_]:
        """Works counted for a melody in ``mode``: the subset's works in that mode, else all."""
        mask = np.ones(len(self.works), dtype=bool)
        if subset is not None:
            unknown = set(subset) - set(self._index)
            if unknown:
                raise ValueError(f"subset: works {sorted(unknown)[:5]} are not in the model")
            mask[:] = False
            mask[[self._index[w] for w in subset]] = True
        in_mode = mask & (np.asarray(self.modes) == mode)
        return in_mode if in_mode.any() else mask

    def _table_for(self, mask: NDArray[np.bool_]) -> CountTable:
        """The counts of the masked works (a few recent masks are kept)."""
        if mask.all():
            return self._table
        key = np.packbits(mask).tobytes()
        table = self._tables.get(key)
        if table is None:
            if len(self._tables) >= 4:
                self._tables.pop(next(iter(self._tables)))
            table = self._tables[key] = self._table.restrict(mask)
        return table

    def _melody_probs(self, melody: Melody, subset: Collection[int] | None) -> FloatArray:
        """P(token | context) of each note of a melody."""
        ids = _token_ids(melody)
        keys, targets, _ = _events([ids], self.order)
        return self._table_for(self._mask(subset, melody.mode)).probs(keys, targets)

    def log2_prob(self, melody: Melody, *, subset: Collection[int] | None = None) -> float:
        """log2 P(melody's tokens), counting only ``subset``'s works when given (exact)."""
        return float(np.log2(self._melody_probs(melody, subset)).sum())

    def bits_per_note(self, melodies: Iterable[Melody]) -> float:
        """Cross-entropy of melodies under the model: -log2 P per note, pooled over notes."""
        bits, notes = 0.0, 0
        for melody in melodies:
            bits -= self.log2_prob(melody)
            notes += len(melody)
        if not notes:
            raise ValueError("melodies: no notes to score")
        return bits / notes

    def _provenance(self, table: CountTable, keys: Sequence[int], target: int) -> dict[int, float]:
        """A token's probability split over work ids (PRIOR for the prior)."""
        return {(w if w == PRIOR else self.works[w]): m
                for w, m in table.provenance(keys, target).items()}

    def explain(self, melody: Melody) -> tuple[GeneratedNote, ...]:
        """Each note of any melody with its provenance, as generate() reports it for its own."""
        table = self._table_for(self._mask(None, melody.mode))
        ids = _token_ids(melody).tolist()
        history, explained = [START], []
        for note, token in zip(melody.notes, ids, strict=True):
            keys = _history_keys(history, self.order)
            explained.append(GeneratedNote(_token(token), note.pitch, note.onset,
                                           note.duration, self._provenance(table, keys, token)))
            history.append(token)
        return tuple(explained)

    def _verbatim(self, length: int) -> set[bytes]:
        """Every window of ``length`` tokens in the training works, as bytes."""
        windows = self._windows.get(length)
        if windows is None:
            windows = set()
            for seq in self._sequences:
                if len(seq) >= length:
                    view = np.lib.stride_tricks.sliding_window_view(seq, length)
                    windows.update(row.tobytes() for row in np.ascontiguousarray(view))
            self._windows[length] = windows
        return windows

    def generate(self, *, seed: int, length: int = 48, tonic: int = 0, mode: str = "major",
                 bar_ticks: int = 48, tempo_bpm: float = 96.0, max_verbatim: int = 8,
                 temperature: float = 1.0) -> Generation:
        """Sample a melody of ``length`` notes in the key, crediting each note to its works.

        Copy guard: a drawn token that would make the last ``max_verbatim`` tokens a verbatim
        run of a training work is rejected and redrawn (``max_verbatim`` 0 disables it). The
        last note is drawn among the tonic-pitch tokens counted after the longest context that
        has any.
        Provenance and log2_prob are the model's own probabilities, before these rules and the
        temperature reshape the sampling.
        """
        if length < 1 or temperature <= 0 or mode not in MODES or not 0 <= tonic <= 11:
            raise ValueError("generate: need length >= 1, temperature > 0, a mode and a tonic")
        rng = np.random.default_rng(seed)
        table = self._table_for(self._mask(None, mode))
        windows = self._verbatim(max_verbatim) if max_verbatim > 0 else set()
        is_tonic = (np.arange(VOCAB) // len(DURATIONS) + PITCH_RANGE[0]) % 12 == 0
        base = tonic_pitch(tonic)
        history: list[int] = [START]
        notes: list[GeneratedNote] = []
        resamples, onset, log2p = 0, 0, 0.0
        for position in range(length):
            keys = _history_keys(history, self.order)
            dist = table.distribution(keys)
            weights = dist ** (1.0 / temperature) if temperature != 1.0 else dist.copy()
            tiers = [weights]  # sampled in turn: the first whose tokens are not all rejected
            if position == length - 1:  # end on the tonic, as the longest context has it
                tiers[:0] = [np.where(_member(ending, VOCAB), weights, 0.0)
                             for followers in table.followers(keys)
                             if len(ending := followers[is_tonic[followers]])]
            token, rejected = self._draw(rng, tiers, history, windows, max_verbatim)
            resamples += rejected
            provenance = self._provenance(table, keys, token)
            log2p += math.log2(float(dist[token]))
            relative, duration = _token(token)
            notes.append(GeneratedNote((relative, duration), base + relative, onset, duration,
                                       provenance))
            onset += duration
            history.append(token)
        melody = Melody(tuple(Note(n.pitch, n.onset, n.duration, n.onset // bar_ticks + 1)
                              for n in notes), tonic, mode, bar_ticks,
                        source=f"markov:seed={seed}", tempo_bpm=tempo_bpm)
        return Generation(melody, tuple(notes), seed, resamples, log2p)

    @staticmethod
    def _draw(rng: np.random.Generator, tiers: Sequence[FloatArray], history: Sequence[int],
              windows: set[bytes], max_verbatim: int) -> tuple[int, int]:
        """A token from the first tier not exhausted by the copy guard, and how many it rejected.

        A draw that would complete a verbatim ``max_verbatim``-token run of a training work is
        rejected and redrawn without it (the last tier is the whole distribution, never empty).
        """
        recent = list(history[1:][-(max_verbatim - 1):]) if max_verbatim > 1 else []
        rejected = 0
        banned: list[int] = []
        for tier in tiers:
            weights = tier.copy()
            weights[banned] = 0.0
            while weights.sum() > 0.0:
                token = int(rng.choice(len(weights), p=weights / weights.sum()))
                run = np.asarray([*recent, token], dtype=np.int64)
                if max_verbatim <= 0 or len(run) < max_verbatim or run.tobytes() not in windows:
                    return token, rejected
                rejected += 1
                banned.append(token)
                weights[token] = 0.0
        raise ValueError("generate: the copy guard rejected every token")

    def save(self, path: Path) -> str:
        """Write the model (its works' token sequences; counts are rebuilt on load) as .npz."""
        meta = {"format": FORMAT, "order": self.order, "works": list(self.works),
                "modes": list(self.modes), "pitch_range": list(PITCH_RANGE),
                "durations": list(DURATIONS)}
        lengths = np.asarray([len(s) for s in self._sequences], dtype=np.int64)
        tokens = (np.concatenate(self._sequences) if self._sequences
                  else np.zeros(0, dtype=np.int64)).astype(np.int16)
        return _write_npz(path, {"meta": _meta_array(meta), "lengths": lengths,
                                 "tokens": tokens})

    @classmethod
    def load(cls, path: Path) -> MarkovModel:
        """Read a model written by save() (no pickle)."""
        meta, arrays = _read_npz(path, FORMAT)
        if meta.get("pitch_range") != list(PITCH_RANGE) or meta.get("durations") != list(
                DURATIONS):
            raise ValueError(f"{path}: written with another token grid")
        bounds = np.cumsum(arrays["lengths"])[:-1]
        sequences = np.split(arrays["tokens"], bounds) if len(arrays["lengths"]) else []
        works, modes, order = meta["works"], meta["modes"], meta["order"]
        if not (isinstance(works, list) and isinstance(modes, list) and isinstance(order, int)):
            raise ValueError(f"{path}: bad metadata")
        return cls([int(w) for w in works], [str(m) for m in modes], sequences, order)
