"""An on-disk fingerprint index: immutable memory-mapped segments plus a JSON manifest.

Each call to :meth:`Index.add` writes one segment: three ``.npy`` arrays sorted by hash key
(``keys`` uint32, ``rids`` uint32 recording ids, ``values`` uint32 packed anchor data), 12 bytes
per triplet. Segments are opened with ``mmap_mode="r"``, so an index larger than memory is served
from the page cache. Removing a recording writes a tombstone; :meth:`Index.compact` merges the
segments and drops removed entries. The manifest is replaced atomically after the segment files are
in place, and writers hold an exclusive lock, so readers never see a half-written index.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from attune.identify import landmarks as fp

FORMAT = 1
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
    """One recording ready to store: id, label, duration (s), hash keys and packed values."""

    recording_id: int
    label: str
    duration: float
    keys: U32
    values: U32


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


class Index:
    """A fingerprint index stored in a directory; open it with :meth:`open` or :meth:`create`."""

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self._manifest = manifest
        self._segments: list[_Segment] = []
        self._dead: list[U32] = []
        self._entries: dict[int, Entry] = {}
        self._reload(manifest)

    def _reload(self, manifest: dict[str, Any]) -> None:
        """Adopt a manifest: map its segments and cache its recordings."""
        self._manifest = manifest
        self._segments = [self._load(s) for s in manifest["segments"]]
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
    def open(cls, path: str | os.PathLike[str]) -> Index:
        """Open an existing index read-only (writes re-read the manifest under a lock)."""
        p = Path(path)
        manifest = _read_manifest(p)
        return cls(p, manifest)

    def _load(self, seg: dict[str, Any]) -> _Segment:
        """Memory-map one segment's arrays."""
        base = self.path / seg["name"]
        try:
            arrays = [np.load(f"{base}-{part}.npy", mmap_mode="r")
                      for part in ("keys", "rids", "values")]
        except (OSError, ValueError) as exc:
            msg = f"{self.path}: segment {seg['name']} is unreadable ({exc})"
            raise IndexUnavailable(msg) from exc
        if not all(a.dtype == np.uint32 and len(a) == seg["entries"] for a in arrays):
            msg = f"{self.path}: segment {seg['name']} does not match the manifest"
            raise IndexUnavailable(msg)
        return _Segment(int(seg["seq"]), *arrays)

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
        return sum(s.keys.nbytes + s.rids.nbytes + s.values.nbytes for s in self._segments)

    @property
    def entries(self) -> int:
        """Stored triplets, including removed ones not yet compacted away."""
        return sum(len(s.keys) for s in self._segments)

    def lookup(self, keys: U32) -> Candidates:
        """Every live entry whose key equals one of ``keys``."""
        probes, rids, values = [], [], []
        distinct, inverse = np.unique(keys, return_inverse=True)  # sorted probes: local searches
        for seg, dead in zip(self._segments, self._dead, strict=True):
            lo = np.searchsorted(seg.keys, distinct, side="left").astype(np.int64)
            hi = np.searchsorted(seg.keys, distinct, side="right").astype(np.int64)
            pos, owner = _expand(lo[inverse], hi[inverse])
            r = seg.rids[pos]
            live = ~np.isin(r, dead) if len(dead) else np.ones(len(r), dtype=bool)
            probes.append(owner[live])
            rids.append(r[live])
            values.append(seg.values[pos[live]])
        if not probes:
            return Candidates(np.zeros(0, np.int64), np.zeros(0, np.uint32),
                              np.zeros(0, np.uint32))
        return Candidates(np.concatenate(probes), np.concatenate(rids), np.concatenate(values))

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
        with self._writing() as manifest:
            seq = manifest["next_seq"]
            name = f"seg-{seq:06d}"
            _save_segment(self.path / name, keys[order], rids[order], values[order])
            manifest["next_seq"] = seq + 1
            manifest["segments"].append({"name": name, "seq": seq, "entries": len(keys)})
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
            seq = manifest["next_seq"]
            name = f"seg-{seq:06d}"
            _save_segment(self.path / name, k[order], r[order], v[order])
            old = [s["name"] for s in manifest["segments"]]
            manifest["next_seq"] = seq + 1
            manifest["segments"] = [{"name": name, "seq": seq, "entries": len(k)}]
            manifest["tombstones"] = {}
            for e in manifest["recordings"].values():
                e["segment"] = seq
        for stale in old:
            for part in ("keys", "rids", "values"):
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


def _save_segment(base: Path, keys: U32, rids: U32, values: U32) -> None:
    """Write a segment's three arrays, each to a temporary name first, then into place."""
    for part, arr in (("keys", keys), ("rids", rids), ("values", values)):
        tmp = Path(f"{base}-{part}.tmp.npy")
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(arr, dtype=np.uint32))
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

