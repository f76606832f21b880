"""An on-disk fingerprint index: immutable memory-mapped segments plus a JSON manifest.

Each call to :meth:`Index.add` writes one segment: three ``.npy`` arrays sorted by hash key
(``keys`` uint32, ``rids`` uint32 recording ids, ``values`` uint32 packed anchor data), 12 bytes
per triplet, and each recording's packed spectral peaks (``peaks`` uint32 grouped by recording,
``peakrec`` rows of recording id, start, end), 4 bytes per peak, which the matcher uses to verify
candidate alignments. Segments are opened with ``mmap_mode="r"``, so an index larger than memory
is served from the page cache. Removing a recording writes a tombstone; :meth:`Index.compact`
merges the segments and drops removed entries. The manifest is replaced atomically after the
segment files are in place, and writers hold an exclusive lock, so readers never see a
half-written index.
"""

from __future__ import annotations

import fcntl
import json
import math
import mmap
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from attune.identify import landmarks as fp

FORMAT = 2
MANIFEST = "index.json"
DEFAULT_DIR = Path(".attune") / "identify"
U32 = NDArray[np.uint32]


class IndexUnavailable(Exception):
    """An index directory that is missing, locked, corrupt or built with other parameters."""


class Entry(NamedTuple):
    """A recording in the index: ``recording_id``, a display ``label``, ``duration`` in seconds,
    ``hashes`` (triplets stored) and ``segment`` (the segment holding them)."""

    recording_id: int
    label: str
    duration: float
    hashes: int
    segment: int


class Fingerprinted(NamedTuple):
    """One recording ready to store: id, label, duration (s), hash keys, packed values and
    packed peaks (:func:`~attune.identify.landmarks.pack_peaks`; None: matches of this recording
    cannot be verified and need the stricter vote-only test)."""

    recording_id: int
    label: str
    duration: float
    keys: U32
    values: U32
    peaks: U32 | None = None


class Candidates(NamedTuple):
    """Index entries matching probe keys: ``probe`` (position in the probe array), ``rids`` and
    packed ``values``."""

    probe: NDArray[np.int64]
    rids: U32
    values: U32


class _Segment(NamedTuple):
    seq: int
    keys: U32
    rids: U32
    values: U32
    peaks: U32  # packed peaks, grouped by recording
    peakrec: NDArray[np.int64]  # (n, 3): recording id, start, end in ``peaks``; sorted by id


def index_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The index directory: ``path`` if given, else ATTUNE_INDEX, else .attune/identify."""
    return Path(path or os.environ.get("ATTUNE_INDEX") or DEFAULT_DIR)


def _params() -> dict[str, Any]:
    """The fingerprint parameters an index is only valid for."""
    names = ("SR", "N_FFT", "HOP", "FMIN", "FMAX", "PEAK_FRAMES", "PEAK_BINS", "RANK_FRAMES",
             "PEAKS_PER_WINDOW", "PARTNERS", "MIN_GAP", "MAX_GAP", "MAX_INTERVAL", "RATIO_LEVELS",
             "INTERVAL_STEP", "BAND", "SPAN_STEP")
    return {name: getattr(fp, name) for name in names}


def _expand(lo: NDArray[np.int64], hi: NDArray[np.int64]) -> tuple[NDArray[np.int64],
                                                                    NDArray[np.int64]]:
    """For ranges ``[lo[i], hi[i])``: every position in them and the ``i`` it came from."""
    counts = hi - lo
    owner = np.repeat(np.arange(len(lo)), counts)
    starts = np.repeat(lo - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    return starts + np.arange(counts.sum()), owner


DIRECTORY_SLOT = 8  # a segment's key directory has a slot per this many entries (or fewer)


class _Directory(NamedTuple):
    """A segment's key directory: keys ``k`` with the same ``(k - base) >> shift`` (the slot)
    lie in ``[starts[slot], starts[slot + 1])``.

    A binary search over a 90M-entry segment costs ~1 us a key (each of its 27 steps a cache or
    TLB miss). A large segment's directory has a slot per key value (``shift`` 0; at most half a
    byte per entry), so a key's range is read off directly; a small one's slots hold a few keys,
    searched within the slot.
    """

    base: int
    shift: int
    starts: NDArray[np.integer[Any]]

    @classmethod
    def build(cls, keys: U32) -> _Directory:
        """The directory of a segment's sorted keys."""
        base = int(keys[0]) if len(keys) else 0
        span = int(keys[-1]) - base if len(keys) else 0
        shift = 0
        while (span >> shift) + 1 > max(1024, len(keys) // DIRECTORY_SLOT):
            shift += 1
        slots = (np.arange((span >> shift) + 1, dtype=np.int64) << shift) + base
        starts = np.append(np.searchsorted(keys, slots.astype(np.uint32)), len(keys))
        return cls(base, shift, starts.astype(np.uint32 if len(keys) < 2**32 else np.int64))

    def first_at_least(self, keys: U32, targets: NDArray[np.int64]) -> NDArray[np.int64]:
        """Position of the first of ``keys`` >= each target, as ``np.searchsorted(keys, targets)``:
        read off the slot, or a vectorised binary search within it."""
        rel = targets - self.base
        last = len(self.starts) - 2
        slot = np.clip(rel >> self.shift, 0, last)
        lo = self.starts[slot].astype(np.int64)
        if self.shift == 0:  # a slot per key value: its start is the answer
            found: NDArray[np.int64] = np.where(rel > last, len(keys), np.where(rel < 0, 0, lo))
            return found
        n = self.starts[slot + 1].astype(np.int64) - lo
        n[rel < 0] = 0  # below the first key: position 0, which is the first slot's start
        todo = np.flatnonzero(n > 0)
        while len(todo):
            half = n[todo] >> 1
            mid = lo[todo] + half
            below = keys[mid] < targets[todo]
            lo[todo] = np.where(below, mid + 1, lo[todo])
            n[todo] = np.where(below, n[todo] - half - 1, half)
            todo = todo[n[todo] > 0]
        return np.asarray(lo, dtype=np.int64)


class Index:
    """A fingerprint index stored in a directory; open it with :meth:`open` or :meth:`create`."""

    def __init__(self, path: Path, manifest: dict[str, Any], populate: bool = False) -> None:
        self.path = path
        self._populate = populate
        self._manifest = manifest
        self._segments: list[_Segment] = []
        self._by_seq: dict[int, _Segment] = {}
        self._dead: list[U32] = []
        self._entries: dict[int, Entry] = {}
        self._directories: dict[int, _Directory] = {}
        self._reload(manifest)

    def _reload(self, manifest: dict[str, Any]) -> None:
        """Adopt a manifest: map its segments and cache its recordings."""
        self._manifest = manifest
        self._segments = [self._load(s) for s in manifest["segments"]]
        self._by_seq = {s.seq: s for s in self._segments}
        self._directories = {q: d for q, d in self._directories.items() if q in self._by_seq}
        self._dead = self._dead_by_segment()
        self._entries = {
            int(rid): Entry(int(rid), e["label"], e["duration"], e["hashes"], e["segment"])
            for rid, e in manifest["recordings"].items()}
        self.seconds = float(sum(e.duration for e in self._entries.values()))

    # opening ------------------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike[str]) -> Index:
        """Open the index in ``path``, creating an empty one if the directory has none."""
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        with _lock(p):
            if not (p / MANIFEST).exists():
                manifest = {"format": FORMAT, "params": _params(), "next_seq": 1,
                            "segments": [], "recordings": {}, "tombstones": {}}
                _write_manifest(p, manifest)
        return cls.open(p)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, populate: bool = False) -> Index:
        """Open an existing index read-only (writes re-read the manifest under a lock).

        ``populate`` maps the segments with MAP_POPULATE (Linux): every page is mapped at open
        (seconds for GBs already in the page cache) instead of faulting in on first use, which
        costs a fresh query server 10-15 ms a query on a 1,000 h index until it is warm.
        """
        p = Path(path)
        manifest = _read_manifest(p)
        return cls(p, manifest, populate)

    def _load(self, seg: dict[str, Any]) -> _Segment:
        """Memory-map one segment's arrays."""
        base = self.path / seg["name"]
        try:
            arrays = [_map(f"{base}-{part}.npy", self._populate)
                      for part in ("keys", "rids", "values")]
        except (OSError, ValueError) as exc:
            msg = f"{self.path}: segment {seg['name']} is unreadable ({exc})"
            raise IndexUnavailable(msg) from exc
        if not all(a.dtype == np.uint32 and len(a) == seg["entries"] for a in arrays):
            msg = f"{self.path}: segment {seg['name']} does not match the manifest"
            raise IndexUnavailable(msg)
        peaks: U32 = np.zeros(0, dtype=np.uint32)
        peakrec: NDArray[np.int64] = np.zeros((0, 3), dtype=np.int64)
        if seg.get("peaks"):
            try:
                peaks = np.load(f"{base}-peaks.npy", mmap_mode="r")
                peakrec = np.load(f"{base}-peakrec.npy")
            except (OSError, ValueError) as exc:
                msg = f"{self.path}: segment {seg['name']} peaks are unreadable ({exc})"
                raise IndexUnavailable(msg) from exc
            if len(peaks) != seg["peaks"] or peakrec.ndim != 2 or peakrec.shape[1] != 3:
                msg = f"{self.path}: segment {seg['name']} peaks do not match the manifest"
                raise IndexUnavailable(msg)
        keys, rids, values = arrays
        return _Segment(int(seg["seq"]), keys, rids, values, peaks, peakrec)

    def _dead_by_segment(self) -> list[U32]:
        """Per segment, the recording ids whose entries there were removed."""
        tomb = self._manifest["tombstones"]
        return [np.array(sorted(int(r) for r, seq in tomb.items() if seq >= s.seq),
                         dtype=np.uint32) for s in self._segments]

    # reading ------------------------------------------------------------------------------

    @property
    def recordings(self) -> dict[int, Entry]:
        """The recordings in the index by id."""
        return dict(self._entries)

    def entry(self, recording_id: int) -> Entry | None:
        """One recording's entry, or None if it is not in the index."""
        return self._entries.get(recording_id)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, recording_id: object) -> bool:
        return recording_id in self._entries

    @property
    def hours(self) -> float:
        """Hours of audio in the index."""
        return self.seconds / 3600

    @property
    def nbytes(self) -> int:
        """Bytes of segment arrays on disk (the manifest aside)."""
        return sum(s.keys.nbytes + s.rids.nbytes + s.values.nbytes + s.peaks.nbytes
                   + s.peakrec.nbytes for s in self._segments)

    @property
    def entries(self) -> int:
        """Stored triplets, including removed ones not yet compacted away."""
        return sum(len(s.keys) for s in self._segments)

    def peaks(self, recording_id: int) -> U32 | None:
        """A recording's packed peaks (sorted by frame), or None if none were stored."""
        entry = self._entries.get(recording_id)
        seg = self._by_seq.get(entry.segment) if entry is not None else None
        if seg is None or len(seg.peakrec) == 0:
            return None
        i = int(np.searchsorted(seg.peakrec[:, 0], recording_id))
        if i >= len(seg.peakrec) or seg.peakrec[i, 0] != recording_id:
            return None
        return np.asarray(seg.peaks[seg.peakrec[i, 1] : seg.peakrec[i, 2]])

    def lookup(self, keys: U32, budget: int | None = None) -> Candidates:
        """Every live entry whose key equals one of ``keys``.

        With ``budget``, at most that many entries are read: the probes of the rarest keys first,
        and the commonest keys, which bring most chance entries and the least evidence, are
        skipped once it is spent. Segments are read in key order, so the memory maps are touched
        sequentially.
        """
        probes, rids, values = [], [], []
        distinct, inverse = np.unique(keys, return_inverse=True)  # sorted probes: local searches
        inverse = inverse.ravel()
        bounds = [self._bounds(seg, distinct) for seg in self._segments]
        n_probes = np.bincount(inverse, minlength=len(distinct))
        if budget is not None and bounds and len(distinct):
            cost = np.sum([hi - lo for lo, hi in bounds], axis=0) * n_probes
            if cost.sum() > budget:
                rarest = np.argsort(cost, kind="stable")
                skip = np.zeros(len(distinct), dtype=bool)
                skip[rarest[np.cumsum(cost[rarest]) > budget]] = True
                bounds = [(lo, np.where(skip, lo, hi)) for lo, hi in bounds]
        single = bool(np.all(n_probes == 1))
        by_key = np.argsort(inverse, kind="stable")  # probe positions grouped by distinct key
        first_probe = np.concatenate([[0], np.cumsum(n_probes)[:-1]])
        for seg, dead, (lo, hi) in zip(self._segments, self._dead, bounds, strict=True):
            pos, key = _expand(lo, hi)  # ascending positions
            vals = seg.values[pos]
            if single:
                probe, within = by_key[key], np.arange(len(pos))
            else:  # one row per (entry, probe of its key)
                row, within = _expand(first_probe[key], first_probe[key] + n_probes[key])
                probe = by_key[row]
            r = seg.rids[pos[within]]
            live = ~np.isin(r, dead) if len(dead) else slice(None)
            probes.append(probe[live])
            rids.append(r[live])
            values.append(vals[within][live])
        if not probes:
            return Candidates(np.zeros(0, np.int64), np.zeros(0, np.uint32),
                              np.zeros(0, np.uint32))
        return Candidates(np.concatenate(probes), np.concatenate(rids), np.concatenate(values))

    def _bounds(self, seg: _Segment, distinct: U32) -> tuple[NDArray[np.int64],
                                                             NDArray[np.int64]]:
        """Where each of the sorted ``distinct`` keys starts and ends in a segment."""
        if seg.seq not in self._directories:  # built on first use
            self._directories[seg.seq] = _Directory.build(seg.keys)
        both = self._directories[seg.seq].first_at_least(
            seg.keys, np.r_[distinct, distinct.astype(np.int64) + 1])
        return both[: len(distinct)], both[len(distinct) :]

    # writing ------------------------------------------------------------------------------

    def add(self, items: Iterable[Fingerprinted]) -> list[int]:
        """Store recordings as one new segment (replacing any already indexed); return their ids."""
        batch = list(items)
        if not batch:
            return []
        ids = [it.recording_id for it in batch]
        if len(set(ids)) != len(ids):
            raise ValueError("a batch names the same recording id twice")
        for it in batch:
            if not 0 <= it.recording_id < 2**32:
                raise ValueError(f"recording id {it.recording_id} is outside 0..2**32-1")
        keys = np.concatenate([it.keys for it in batch]).astype(np.uint32)
        values = np.concatenate([it.values for it in batch]).astype(np.uint32)
        rids = np.repeat(np.array(ids, dtype=np.uint32), [len(it.keys) for it in batch])
        order = np.argsort(keys, kind="stable")
        peaks, peakrec = _peak_table([(it.recording_id, it.peaks) for it in batch])
        with self._writing() as manifest:
            seq = manifest["next_seq"]
            name = f"seg-{seq:06d}"
            _save_segment(self.path / name, keys[order], rids[order], values[order], peaks,
                          peakrec)
            manifest["next_seq"] = seq + 1
            manifest["segments"].append({"name": name, "seq": seq, "entries": len(keys),
                                         "peaks": len(peaks)})
            for it in batch:
                if str(it.recording_id) in manifest["recordings"]:
                    manifest["tombstones"][str(it.recording_id)] = seq - 1
                manifest["recordings"][str(it.recording_id)] = {
                    "label": it.label, "duration": round(float(it.duration), 3),
                    "hashes": len(it.keys), "segment": seq}
        return ids

    def remove(self, recording_ids: Iterable[int]) -> list[int]:
        """Remove recordings; return the ids that were in the index."""
        with self._writing() as manifest:
            removed = [r for r in recording_ids if str(r) in manifest["recordings"]]
            for r in removed:
                del manifest["recordings"][str(r)]
                manifest["tombstones"][str(r)] = manifest["next_seq"] - 1
        return removed

    def compact(self) -> None:
        """Merge all segments into one, dropping removed entries and tombstones."""
        with self._writing() as manifest:
            if len(self._segments) <= 1 and not manifest["tombstones"]:
                return
            keys, rids, values = [], [], []
            for seg, dead in zip(self._segments, self._dead, strict=True):
                live = ~np.isin(seg.rids, dead) if len(dead) else slice(None)
                keys.append(np.asarray(seg.keys[live]))
                rids.append(np.asarray(seg.rids[live]))
                values.append(np.asarray(seg.values[live]))
            k, r, v = np.concatenate(keys), np.concatenate(rids), np.concatenate(values)
            order = np.argsort(k, kind="stable")
            peaks, peakrec = _peak_table([(rid, self.peaks(rid)) for rid in self._entries])
            seq = manifest["next_seq"]
            name = f"seg-{seq:06d}"
            _save_segment(self.path / name, k[order], r[order], v[order], peaks, peakrec)
            old = [s["name"] for s in manifest["segments"]]
            manifest["next_seq"] = seq + 1
            manifest["segments"] = [{"name": name, "seq": seq, "entries": len(k),
                                     "peaks": len(peaks)}]
            manifest["tombstones"] = {}
            for e in manifest["recordings"].values():
                e["segment"] = seq
        for stale in old:
            for part in ("keys", "rids", "values", "peaks", "peakrec"):
                (self.path / f"{stale}-{part}.npy").unlink(missing_ok=True)

    @contextmanager
    def _writing(self) -> Iterator[dict[str, Any]]:
        """Lock, re-read the manifest, let the caller change it, write it back and reload."""
        with _lock(self.path):
            manifest = _read_manifest(self.path)
            self._reload(manifest)
            yield manifest
            _write_manifest(self.path, manifest)
            self._reload(manifest)


def _map(path: str, populate: bool) -> NDArray[Any]:
    """A read-only memory map of a ``.npy`` file; with ``populate``, its pages mapped up front."""
    flag = getattr(mmap, "MAP_POPULATE", 0)
    plain: NDArray[Any]
    if not populate or not flag:  # a plain view: np.memmap's indexing costs ~25 us a call
        plain = np.load(path, mmap_mode="r").view(np.ndarray)
        return plain
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        offset = f.tell()
        if fortran or len(shape) != 1:
            plain = np.load(path, mmap_mode="r")
            return plain
        buf = mmap.mmap(f.fileno(), 0, flags=mmap.MAP_SHARED | flag, prot=mmap.PROT_READ)
    return np.frombuffer(buf, dtype=dtype, count=math.prod(shape), offset=offset)


def _peak_table(items: list[tuple[int, U32 | None]]) -> tuple[U32, NDArray[np.int64]]:
    """Concatenated packed peaks of recordings, and rows (id, start, end) sorted by id."""
    have = sorted((rid, p) for rid, p in items if p is not None)
    lengths = np.array([len(p) for _, p in have], dtype=np.int64)
    ends = np.cumsum(lengths)
    rec = np.stack([np.array([rid for rid, _ in have], dtype=np.int64), ends - lengths, ends],
                   axis=1) if have else np.zeros((0, 3), dtype=np.int64)
    peaks = (np.concatenate([np.asarray(p, dtype=np.uint32) for _, p in have]) if have
             else np.zeros(0, dtype=np.uint32))
    return peaks, rec


def _save_segment(base: Path, keys: U32, rids: U32, values: U32, peaks: U32 | None = None,
                  peakrec: NDArray[np.int64] | None = None) -> None:
    """Write a segment's arrays, each to a temporary name first, then into place."""
    parts: list[tuple[str, NDArray[Any]]] = [("keys", keys), ("rids", rids), ("values", values)]
    if peaks is not None and peakrec is not None and len(peaks):
        parts += [("peaks", peaks), ("peakrec", peakrec)]
    for part, arr in parts:
        tmp = Path(f"{base}-{part}.tmp.npy")
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(arr, dtype=np.int64 if part == "peakrec"
                                            else np.uint32))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, f"{base}-{part}.npy")


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    """Hold the index's exclusive writer lock."""
    with open(path / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _read_manifest(path: Path) -> dict[str, Any]:
    """Read and check an index manifest."""
    try:
        manifest: dict[str, Any] = json.loads((path / MANIFEST).read_text())
    except FileNotFoundError as exc:
        raise IndexUnavailable(f"{path}: no fingerprint index here (no {MANIFEST})") from exc
    except (OSError, ValueError) as exc:
        raise IndexUnavailable(f"{path}: the index manifest is unreadable ({exc})") from exc
    if manifest.get("format") != FORMAT:
        found = manifest.get("format")
        raise IndexUnavailable(f"{path}: index format {found!r}, expected {FORMAT}")
    if manifest.get("params") != _params():
        raise IndexUnavailable(f"{path}: index built with other fingerprint parameters; rebuild it")
    return manifest


def _write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """Replace the manifest atomically."""
    tmp = path / f"{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    os.replace(tmp, path / MANIFEST)

