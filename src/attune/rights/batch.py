"""Batch consent decisions: one use for a whole catalog in set-based SQL, answering as decide().

A decision checks an ordered list of parties: the master owners, the main and featured artists
and the writers of the recorded work. Most recordings share that list with many others (same
label, artist and writers), so the registry keeps each distinct list once as a *party set* and
maps every recording to its set (:func:`assign_party_sets`). A batch then

1. finds the agreements that apply (use, day, territory, licensee, model-version pins) and, per
   party, the catalog-wide consent record that wins at that instant: one small row per party;
2. decides every party set in one grouped scan, keeping its first failing check;
3. reads the failing sets with their first failures, and every recording with its set, as
   number lists parsed straight into numpy arrays, and joins them there;
4. re-decides check by check the few recordings that a listed agreement or a recording- or
   work-scoped consent record touches, and lets those answers stand instead.

The answer stays in numpy until read: ``allowed`` is a RecordingIds sequence and ``excluded`` an
Exclusions mapping whose Reason objects (one per distinct first failure, a few ten thousand for
a million recordings) are made on first access. Turning a whole answer into Python objects costs
its reader about as much again as the batch's own Python work; most readers need far less.
"""

from __future__ import annotations

import hashlib
import json
import typing
from collections import Counter
from collections.abc import ItemsView, Iterable, Iterator, Mapping, Sequence, ValuesView
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Connection,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    and_,
    bindparam,
    case,
    cast,
    exists,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    text,
    union,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from attune.rights.models import (
    PARTY_SET_ROLES,
    Agreement,
    AgreementItem,
    AgreementModelVersion,
    AgreementTerritory,
    AgreementUse,
    Consent,
    ConsentTerritory,
    Party,
    PartySet,
    PartySetMember,
    Recording,
    RecordingArtist,
    RecordingOwner,
    RecordingPartySet,
    Work,
    WorkShare,
)
from attune.rights.policy import ALLOWING, Reason, as_instant

Entry = tuple[str, int | None]

ROLE_CODES = {role: code for code, role in enumerate(PARTY_SET_ROLES)}
STRUCTURAL = {
    "no_owner": "no master owner is registered for this recording",
    "no_artist": "no main artist is registered for this recording",
    "no_work": "the recording is not linked to a work, so its writers cannot consent",
    "no_writer": "the recorded work has no writer registered",
}
CAPACITY = {
    "owner": "master owner",
    "main": "main artist",
    "featured": "featured artist",
    "writer": "writer",
}
# A failing check is packed into one integer, position * POSITION + party_id * 8 + role code, so
# that MIN() over a set's checks yields its first failure and the remainder names it.
POSITION = 1 << 40
CHUNK = 2000

MEMBERS = typing.cast(Table, PartySetMember.__table__)
MAPPING = typing.cast(Table, RecordingPartySet.__table__)
SETS = typing.cast(Table, PartySet.__table__)


def party_set_entries(
    owner_ids: Sequence[int],
    artists: Sequence[tuple[int, str]],
    has_work: bool,
    writer_ids: Sequence[int],
) -> tuple[Entry, ...]:
    """The checks policy.decide makes for one recording, in its order, each party once."""
    entries: list[Entry] = [("owner", o) for o in owner_ids] or [("no_owner", None)]
    if not any(role == "main" for _, role in artists):
        entries.append(("no_artist", None))
    if not has_work:
        entries.append(("no_work", None))
    elif not writer_ids:
        entries.append(("no_writer", None))
    seen: set[int] = set()
    for party_id, role in [*artists, *((w, "writer") for w in writer_ids)]:
        if party_id not in seen:
            seen.add(party_id)
            entries.append((role, party_id))
    return tuple(entries)


def set_signature(entries: Sequence[Entry]) -> str:
    """A fixed-length key naming one party set (SHA-256 of its entries in order)."""
    flat = ";".join(f"{role}:{'' if party is None else party}" for role, party in entries)
    return hashlib.sha256(flat.encode()).hexdigest()


def _recording_entries(
    bind: Session | Connection, ids: Sequence[int]
) -> dict[int, tuple[Entry, ...]]:
    """Each recording's checks, read from the registry tables."""
    owners: dict[int, list[int]] = {i: [] for i in ids}
    artists: dict[int, list[tuple[int, str]]] = {i: [] for i in ids}
    writers: dict[int, list[int]] = {i: [] for i in ids}
    works = bind.execute(select(Recording.id, Recording.work_id).where(Recording.id.in_(ids))).all()
    for rid, party_id in bind.execute(
        select(RecordingOwner.recording_id, RecordingOwner.party_id)
        .where(RecordingOwner.recording_id.in_(ids))
        .order_by(RecordingOwner.recording_id, RecordingOwner.position)
    ):
        owners[rid].append(party_id)
    for rid, party_id, role in bind.execute(
        select(RecordingArtist.recording_id, RecordingArtist.party_id, RecordingArtist.role)
        .where(RecordingArtist.recording_id.in_(ids))
        .order_by(RecordingArtist.recording_id, RecordingArtist.position)
    ):
        artists[rid].append((party_id, role))
    for rid, party_id in bind.execute(
        select(Recording.id, WorkShare.party_id)
        .join(WorkShare, WorkShare.work_id == Recording.work_id)
        .where(Recording.id.in_(ids), WorkShare.role == "writer")
        .order_by(Recording.id, WorkShare.position)
    ):
        writers[rid].append(party_id)
    return {
        rid: party_set_entries(owners[rid], artists[rid], work_id is not None, writers[rid])
        for rid, work_id in works
    }


def _store_party_sets(bind: Session | Connection, entries: dict[int, tuple[Entry, ...]]) -> None:
    """Map recordings to the sets of their entries, creating the sets not yet known."""
    signatures = {rid: set_signature(e) for rid, e in entries.items()}
    known = dict(
        bind.execute(
            select(SETS.c.signature, SETS.c.id).where(
                SETS.c.signature.in_(set(signatures.values()))
            )
        ).all()
    )
    fresh = {sig: rid for rid, sig in signatures.items() if sig not in known}
    if fresh:
        created = bind.execute(
            insert(SETS).returning(SETS.c.signature, SETS.c.id, sort_by_parameter_order=True),
            [{"signature": sig} for sig in fresh],
        )
        known.update(created.all())
        bind.execute(
            insert(MEMBERS),
            [
                {"party_set_id": known[sig], "position": i, "party_id": party, "role": role}
                for sig, rid in fresh.items()
                for i, (role, party) in enumerate(entries[rid])
            ],
        )
    bind.execute(
        insert(MAPPING),
        [{"recording_id": rid, "party_set_id": known[sig]} for rid, sig in signatures.items()],
    )


def assign_party_set(session: Session, recording: Recording) -> None:
    """Map one just-registered recording to its party set (the registry calls this)."""
    work = session.get(Work, recording.work_id) if recording.work_id is not None else None
    writers = [s.party_id for s in work.shares if s.role == "writer"] if work else []
    entries = party_set_entries(
        [o.party_id for o in recording.owners],
        [(a.party_id, a.role) for a in recording.artists],
        work is not None,
        writers,
    )
    _store_party_sets(session, {recording.id: entries})


def assign_party_sets(
    bind: Session | Connection, recording_ids: Iterable[int] | None = None
) -> int:
    """Map recordings (by default every unmapped one) to their party sets; returns the count.

    For recordings written without the registry (bulk loads, migrations of existing data).
    """
    if recording_ids is None:
        unmapped = ~exists().where(MAPPING.c.recording_id == Recording.id)
        ids = list(
            bind.execute(select(Recording.id).where(unmapped).order_by(Recording.id)).scalars()
        )
    else:
        ids = sorted(set(recording_ids))
    for start in range(0, len(ids), CHUNK):
        _store_party_sets(bind, _recording_entries(bind, ids[start : start + CHUNK]))
    return len(ids)


IntArray = npt.NDArray[np.int64]
SlotArray = npt.NDArray[np.int32]
Spec = tuple[str, int | None, int | None, str | None]  # role, party, consent record, party name


def _frozen(values: npt.ArrayLike, dtype: type[np.int64] | type[np.int32]) -> Any:
    """A read-only numpy copy (the answer of a frozen BatchDecision cannot change under it)."""
    array = np.array(values, dtype=dtype)
    array.flags.writeable = False
    return array


class _SortedIds:
    """Sorted, distinct ids in a read-only numpy array, found by binary search.

    A caller probing id by id (say, for every recording of the catalog) would pay about a
    microsecond per numpy search; once the probes could have paid for it, a dict from id to
    position is built and answers instead.
    """

    __slots__ = ("_probes", "_where", "array")

    def __init__(self, ids: npt.ArrayLike) -> None:
        self.array: IntArray = _frozen(ids, np.int64)
        self._probes = 0
        self._where: dict[int, int] | None = None

    def find(self, value: object) -> int:
        """The position of ``value``, or -1 when it is not one of the ids."""
        if not isinstance(value, int | np.integer):
            return -1
        if self._where is not None:
            return self._where.get(int(value), -1)
        self._probes += 1
        if self._probes > 64 + len(self.array) // 16:
            self._where = dict(zip(self.array.tolist(), range(len(self.array)), strict=True))
            return self._where.get(int(value), -1)
        key, ids = int(value), self.array
        if not len(ids) or not int(ids[0]) <= key <= int(ids[-1]):
            return -1  # also keeps ids beyond int64 away from numpy
        i = int(ids.searchsorted(key))
        return i if int(ids[i]) == key else -1


class RecordingIds(Sequence[int]):
    """Sorted, distinct recording ids, held as one numpy int64 array; Python ints on access.

    A sequence like the tuple it replaces: len(), iteration, indexing and slicing (a slice is
    again a RecordingIds), ``in`` without a scan, and equality with any sequence (tuple, list)
    of the same ids in the same order. ``array`` (or ``numpy.asarray``) gives the read-only
    numpy array itself.
    """

    __slots__ = ("_ids",)

    def __init__(self, ids: npt.ArrayLike = ()) -> None:
        self._ids = _SortedIds(ids)

    @property
    def array(self) -> IntArray:
        """The ids as a read-only numpy array (no copy)."""
        return self._ids.array

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> IntArray:
        if copy or (dtype is not None and np.dtype(dtype) != self.array.dtype):
            return np.array(self.array, dtype=dtype)
        return self.array

    def __len__(self) -> int:
        return len(self.array)

    @typing.overload
    def __getitem__(self, index: int) -> int: ...

    @typing.overload
    def __getitem__(self, index: slice) -> RecordingIds: ...

    def __getitem__(self, index: int | slice) -> int | RecordingIds:
        if isinstance(index, slice):
            return RecordingIds(self.array[index])
        return int(self.array[index])

    def __iter__(self) -> Iterator[int]:
        return iter(self.array.tolist())

    def __reversed__(self) -> Iterator[int]:
        return iter(self.array[::-1].tolist())

    def __contains__(self, value: object) -> bool:
        return self._ids.find(value) >= 0

    def index(self, value: Any, start: int = 0, stop: int | None = None) -> int:
        """The position of ``value`` (ValueError when absent), without a scan."""
        i = self._ids.find(value)
        if i < 0 or not start <= i < (len(self) if stop is None else stop):
            raise ValueError(f"{value!r} is not in the recording ids")
        return i

    def count(self, value: Any) -> int:
        """1 when ``value`` is one of the ids, else 0 (ids are distinct)."""
        return int(value in self)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RecordingIds):
            return bool(np.array_equal(self.array, other.array))
        if isinstance(other, Sequence) and not isinstance(other, str | bytes):
            return len(other) == len(self) and list(other) == self.array.tolist()
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # equal to tuples, so not hashable like one

    def __repr__(self) -> str:
        shown = ", ".join(map(str, self.array[:8].tolist()))
        more = f", ... ({len(self):,} ids)" if len(self) > 8 else ""
        return f"RecordingIds([{shown}{more}])"


class _Reasons:
    """A batch's distinct first reasons, made into Reason objects on first use and then shared.

    The first ``len(keys)`` slots are party-set failures (a reason key, see POSITION, and the
    party's name and winning consent record); later ones are re-decided recordings' reasons.
    """

    __slots__ = ("_extra", "_found", "_keys", "_made", "_wording")

    def __init__(
        self,
        wording: _Wording,
        keys: IntArray,
        found: dict[int, tuple[str | None, int | None]],
    ) -> None:
        self._wording = wording
        self._keys: list[int] = keys.tolist()
        self._found = found
        self._extra: list[Spec] = []
        self._made: dict[int, Reason] = {}

    def __len__(self) -> int:
        return len(self._keys) + len(self._extra)

    def add(self, spec: Spec) -> int:
        """A further reason; returns its slot."""
        self._extra.append(spec)
        return len(self) - 1

    def __getitem__(self, slot: int) -> Reason:
        made = self._made.get(slot)
        if made is None:
            if slot < len(self._keys):
                role, party_id = _unpack(self._keys[slot])
                name, consent_id = self._found.get(party_id or 0, (None, None))
            else:
                role, party_id, consent_id, name = self._extra[slot - len(self._keys)]
            made = self._made[slot] = self._wording.reason(role, party_id, consent_id, name)
        return made

    def every(self) -> list[Reason]:
        """All of them, by slot."""
        return [self[slot] for slot in range(len(self))]


class Exclusions(Mapping[int, Reason]):
    """Recording id -> its first exclusion, for every recording a batch excludes.

    Held as two numpy arrays (the sorted ids, and per id the slot of its reason among the
    batch's few distinct reasons); a Reason object is made when first read and shared by every
    recording with the same first failure. Lookups need no scan; ``items()`` and ``values()``
    stream without a lookup per id.
    """

    __slots__ = ("_counts", "_ids", "_reasons", "_slots")

    def __init__(self, ids: IntArray, slots: SlotArray, reasons: _Reasons) -> None:
        self._ids = _SortedIds(ids)
        self._slots: SlotArray = _frozen(slots, np.int32)
        self._reasons = reasons
        self._counts: list[tuple[Reason, int]] | None = None

    @property
    def ids(self) -> RecordingIds:
        """The excluded recording ids, sorted."""
        return RecordingIds(self._ids.array)

    def __len__(self) -> int:
        return len(self._slots)

    def __getitem__(self, recording_id: int) -> Reason:
        i = self._ids.find(recording_id)
        if i < 0:
            raise KeyError(recording_id)
        return self._reasons[int(self._slots[i])]

    def __contains__(self, recording_id: object) -> bool:
        return self._ids.find(recording_id) >= 0

    def __iter__(self) -> Iterator[int]:
        return iter(self._ids.array.tolist())

    def _stream(self) -> Iterator[Reason]:
        return map(self._reasons.every().__getitem__, self._slots.tolist())

    def items(self) -> ItemsView[int, Reason]:
        """(recording id, first reason) pairs in id order."""
        return _Items(self)

    def values(self) -> ValuesView[Reason]:
        """First reasons in recording id order."""
        return _Values(self)

    def reason_counts(self) -> list[tuple[Reason, int]]:
        """Each distinct first reason and how many recordings it excludes, in the order of the
        first recording (by id) that each excludes."""
        if self._counts is None:
            n, slots = len(self._slots), self._slots
            counts = np.bincount(slots, minlength=len(self._reasons))
            first = np.full(len(counts), n, dtype=np.int64)
            np.minimum.at(first, slots, np.arange(n, dtype=np.int64))
            used = np.flatnonzero(counts)
            used = used[np.argsort(first[used], kind="stable")]
            self._counts = [
                (self._reasons[slot], count)
                for slot, count in zip(used.tolist(), counts[used].tolist(), strict=True)
            ]
        return self._counts

    def __repr__(self) -> str:
        shown = ", ".join(f"{rid}: {self[rid].code}" for rid in self._ids.array[:4].tolist())
        more = f", ... ({len(self):,} recordings)" if len(self) > 4 else ""
        return f"Exclusions({{{shown}{more}}})"


class _Items(ItemsView[int, Reason]):
    _mapping: Exclusions

    def __iter__(self) -> Iterator[tuple[int, Reason]]:
        m = self._mapping
        return zip(m._ids.array.tolist(), m._stream(), strict=True)


class _Values(ValuesView[Reason]):
    _mapping: Exclusions

    def __iter__(self) -> Iterator[Reason]:
        return self._mapping._stream()


@dataclass(frozen=True, slots=True)
class BatchDecision:
    """The answer for many recordings: the allowed ids, and the first exclusion of every other.

    ``allowed`` is a sorted sequence of ids (RecordingIds: a read-only numpy array underneath,
    Python ints on access); ``excluded`` a read-only mapping from id to first Reason
    (Exclusions: Reason objects are made when read).
    """

    use: str
    at: datetime
    territory: str | None
    allowed: RecordingIds
    excluded: Exclusions

    def __len__(self) -> int:
        """How many recordings were decided."""
        return len(self.allowed) + len(self.excluded)

    def is_allowed(self, recording_id: int) -> bool:
        """Whether this recording may be used (False for one not in the batch)."""
        return recording_id in self.allowed

    def counts_by_code(self) -> dict[str, int]:
        """How many recordings each first exclusion code excludes, most frequent first."""
        counts: Counter[str] = Counter()
        for reason, n in self.excluded.reason_counts():
            counts[reason.code] += n
        return dict(counts.most_common())

    def counts_by_party(self) -> dict[int, int]:
        """How many recordings each party's missing agreement or consent excludes."""
        counts: Counter[int] = Counter()
        for reason, n in self.excluded.reason_counts():
            if reason.party_id is not None:
                counts[reason.party_id] += n
        return dict(counts.most_common())


@dataclass(frozen=True, slots=True)
class _Wording:
    """How a batch words its reasons (the use, territory and day are in every message)."""

    what: str
    no_agreement: str
    no_consent: str

    @classmethod
    def of(cls, use: str, territory: str | None, day: date) -> _Wording:
        """The wording for one use, territory and day."""
        what = f"{use!r} {f'in {territory}' if territory else 'worldwide'}"
        return cls(
            what,
            f" has no agreement covering {what} on {day.isoformat()}",
            f" has no consent record for {what} in effect",
        )

    def reason(
        self, role: str, party_id: int | None, consent_id: int | None, name: str | None
    ) -> Reason:
        """The first exclusion as decide() states it (same code and ids, shorter message)."""
        if role in STRUCTURAL:
            return Reason(role, STRUCTURAL[role])
        who = f"{CAPACITY[role]} {name!r} (party {party_id})"
        if role == "owner":
            return Reason("no_agreement", who + self.no_agreement, party_id=party_id)
        if consent_id is None:
            return Reason("consent_missing", who + self.no_consent, party_id=party_id)
        return Reason(
            "consent_refused",
            f"{who} refused {self.what} (consent record {consent_id})",
            party_id=party_id,
            consent_id=consent_id,
        )


@dataclass(frozen=True)
class _Scratch:
    """The temporary tables of one batch (created per call, dropped at its end)."""

    metadata: MetaData
    scope: Table
    agreement: Table
    party: Table
    scoped: Table
    listed: Table
    pair: Table
    exception: Table

    @classmethod
    def define(cls) -> _Scratch:
        """Declare the tables on a fresh metadata."""
        md = MetaData()

        def table(name: str, *columns: Column[int] | Column[datetime] | Index) -> Table:
            return Table(f"_batch_{name}", md, *columns, prefixes=["TEMPORARY"])

        def key(name: str) -> Column[int]:
            return Column(name, Integer, primary_key=True, autoincrement=False)

        def num(name: str) -> Column[int]:
            return Column(name, Integer)

        return cls(
            md,
            scope=table("scope", key("recording_id")),
            agreement=table("agreement", key("id"), num("licensor_id"), num("covers_all")),
            party=table(
                "party",
                key("party_id"),
                num("owner_ok"),
                num("consent_id"),
                Column("effective_from", DateTime),
                num("refusal"),
                num("allows"),
            ),
            scoped=table(
                "scoped",
                num("recording_id"),
                num("party_id"),
                num("consent_id"),
                Column("effective_from", DateTime),
                num("refusal"),
                num("allows"),
            ),
            listed=table(
                "listed",
                num("recording_id"),
                num("licensor_id"),
                Index("_batch_ix_listed", "recording_id", "licensor_id"),
            ),
            pair=table(
                "pair", key("recording_id"), key("party_id"), num("consent_id"), num("allows")
            ),
            exception=table("exception", key("recording_id")),
        )


REFUSAL = case((Consent.decision == "not_allowed", 1), else_=0)
ALLOWS = case((Consent.decision.in_(ALLOWING), 1), else_=0)


def _unpack(reason_key: int) -> tuple[str, int | None]:
    """The role and party (None for a missing-party marker) a reason key names."""
    return PARTY_SET_ROLES[reason_key % 8], reason_key // 8 or None


def _int_array(joined: str | None) -> IntArray:
    """Integers from one comma-separated aggregate (one C-level parse, no Python ints)."""
    if not joined:
        return np.empty(0, dtype=np.int64)
    return np.fromstring(joined, dtype=np.int64, sep=",")


def _positions(ids: IntArray, wanted: Iterable[int]) -> IntArray:
    """Where each of ``wanted`` (all present) sits in the sorted ``ids``."""
    keys = np.fromiter(wanted, dtype=np.int64)
    at = np.searchsorted(ids, keys)
    if len(keys) and (int(at.max()) >= len(ids) or not bool(np.all(ids[at] == keys))):
        raise RuntimeError("a re-decided recording is missing from the batch")
    return at


def _lookup(keys: IntArray, values: SlotArray, wanted: IntArray) -> SlotArray:
    """For each of ``wanted``: the value of the equal key, or -1 (keys distinct).

    Party set ids are small and dense, so a table indexed by id answers in one gather; sparse
    or negative ids fall back to a binary search.
    """
    found = np.full(len(wanted), -1, dtype=np.int32)
    if not len(keys) or not len(wanted):
        return found
    low = min(int(keys.min()), int(wanted.min()))
    top = max(int(keys.max()), int(wanted.max()))
    if low >= 0 and top <= 4 * (len(keys) + len(wanted)) + 1024:
        table = np.full(top + 1, -1, dtype=np.int32)
        table[keys] = values
        return table[wanted]
    order = np.argsort(keys, kind="stable")
    keys, values = keys[order], values[order]
    at = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
    hit = keys[at] == wanted
    found[hit] = values[at[hit]]
    return found


class _Batch:
    """One batch decision, step by step, on one connection's temporary tables."""

    def __init__(
        self,
        conn: Connection,
        use: str,
        when: datetime,
        territory: str | None,
        licensee_id: int | None,
        model_version: str | None,
    ) -> None:
        self.conn = conn
        self.use = use
        self.when = when
        self.day: date = when.date()
        self.territory = territory
        self.licensee_id = licensee_id
        self.model_version = model_version
        self.wording = _Wording.of(use, territory, self.day)
        self.t = _Scratch.define()
        self.scoped = False
        self.exceptions = 0
        self.sqlite = conn.dialect.name == "sqlite"

    def run(self, recording_ids: Iterable[int] | None) -> BatchDecision:
        """Decide every recording (or only ``recording_ids``)."""
        md = self.t.metadata
        md.drop_all(self.conn, checkfirst=True)
        md.create_all(self.conn)
        expected = None if recording_ids is None else self._restrict(recording_ids)
        self._agreements()
        self._parties()
        failing, set_keys = self._set_verdicts()
        self._find_exceptions()
        ids, sets = self._mapped()
        keys, set_slots = np.unique(set_keys, return_inverse=True)
        slots = _lookup(failing, set_slots.astype(np.int32), sets)
        reasons = _Reasons(self.wording, keys, self._names(keys))
        if self.exceptions:
            touched, firsts = self._decide_exceptions()
            slots[_positions(ids, touched)] = -1
            exact = [rid for rid, *_spec in firsts]
            slots[_positions(ids, exact)] = [
                reasons.add((role, party_id, consent_id, name))
                for _rid, role, party_id, consent_id, name in firsts
            ]
        md.drop_all(self.conn)
        self._require_mapped(len(ids), expected)
        out = slots >= 0
        return BatchDecision(
            self.use,
            self.when,
            self.territory,
            RecordingIds(ids[~out]),
            Exclusions(ids[out], slots[out], reasons),
        )

    def _analyze(self, *tables: Table) -> None:
        """Give the planner row counts for filled temporary tables.

        Without them both databases guess: SQLite assumes a million rows and scans the catalog
        to probe a table of a hundred.
        """
        for table in tables:
            self.conn.execute(text(f"ANALYZE {table.name}"))

    def _restrict(self, recording_ids: Iterable[int]) -> int:
        """Decide only these recordings (returns how many); unknown ids raise LookupError."""
        self.scoped = True
        rows = [{"recording_id": i} for i in sorted(set(recording_ids))]
        if rows:
            self.conn.execute(insert(self.t.scope), rows)
        self._analyze(self.t.scope)
        sc = self.t.scope.c.recording_id
        unknown = self.conn.execute(
            select(sc).where(~exists().where(Recording.id == sc)).order_by(sc).limit(5)
        ).scalars()
        listed = ", ".join(map(str, unknown))
        if listed:
            raise LookupError(f"no recording with id {listed}")
        return len(rows)

    def _require_mapped(self, decided: int, expected: int | None) -> None:
        """Refuse an answer that misses recordings because they have no party set."""
        if expected is None:
            expected = self.conn.execute(select(func.count()).select_from(Recording)).scalar_one()
        missing = expected - decided
        if missing:
            raise LookupError(
                f"{missing} recordings have no party set (written outside the registry); "
                "run attune.rights.batch.assign_party_sets(session) first"
            )

    def _in_scope(self, column: ColumnElement[int]) -> list[ColumnElement[bool]]:
        return [column.in_(select(self.t.scope.c.recording_id))] if self.scoped else []

    def _candidate_consents(self) -> list[ColumnElement[bool]]:
        """Consent records of the use in effect at the instant that can speak for the territory.

        With no territory (everywhere) a record limited to some territories can still refuse,
        so it competes only when it is a refusal (policy.winning_consent).
        """
        conditions = [
            Consent.use == self.use,
            Consent.effective_from <= self.when,
            or_(Consent.effective_until.is_(None), Consent.effective_until > self.when),
        ]
        if self.territory is None:
            conditions.append(or_(Consent.worldwide, Consent.decision == "not_allowed"))
        else:
            listed = exists().where(
                ConsentTerritory.consent_id == Consent.id,
                ConsentTerritory.territory == self.territory,
            )
            conditions.append(or_(Consent.worldwide, listed))
        return conditions

    def _agreements(self) -> None:
        """Agreements licensing the use on the day, in the territory, to the licensee and model."""
        a = Agreement
        uses = exists().where(AgreementUse.agreement_id == a.id, AgreementUse.use == self.use)
        conditions: list[ColumnElement[bool]] = [
            uses,
            a.start_date <= self.day,
            or_(a.end_date.is_(None), a.end_date >= self.day),
        ]
        if self.licensee_id is not None:
            conditions.append(a.licensee_id == self.licensee_id)

        def territories(excluded: bool, territory: str | None) -> ColumnElement[bool]:
            t = AgreementTerritory
            match = [t.agreement_id == a.id, t.excluded.is_(excluded)]
            return exists().where(*match, *([t.territory == territory] if territory else []))

        if self.territory is None:
            conditions += [a.worldwide.is_(True), ~territories(True, None)]
        else:
            conditions.append(
                or_(
                    and_(a.worldwide.is_(True), ~territories(True, self.territory)),
                    and_(a.worldwide.is_(False), territories(False, self.territory)),
                )
            )
        pins = AgreementModelVersion
        pinned = exists().where(pins.agreement_id == a.id)
        if self.model_version is None:
            conditions.append(~pinned)
        else:
            ours = exists().where(
                pins.agreement_id == a.id, pins.model_version == self.model_version
            )
            conditions.append(or_(~pinned, ours))
        covers_all = case((a.covers_all, 1), else_=0)
        self.conn.execute(
            insert(self.t.agreement).from_select(
                ["id", "licensor_id", "covers_all"],
                select(a.id, a.licensor_id, covers_all).where(*conditions),
            )
        )

    def _parties(self) -> None:
        """Per party: whether a catalog-wide agreement covers it, and its winning consent."""
        rank = func.row_number().over(
            partition_by=Consent.party_id,
            order_by=(Consent.effective_from.desc(), REFUSAL.desc(), Consent.id.desc()),
        )
        ranked = (
            select(
                Consent.party_id,
                Consent.id.label("consent_id"),
                Consent.effective_from,
                REFUSAL.label("refusal"),
                ALLOWS.label("allows"),
                rank.label("rank"),
            )
            .where(*self._candidate_consents(), Consent.scope == "all")
            .subquery()
        )
        p = self.t.party
        winners = select(
            ranked.c.party_id,
            literal(0),
            ranked.c.consent_id,
            ranked.c.effective_from,
            ranked.c.refusal,
            ranked.c.allows,
        ).where(ranked.c.rank == 1)
        columns = ["party_id", "owner_ok", "consent_id", "effective_from", "refusal", "allows"]
        self.conn.execute(insert(p).from_select(columns, winners))
        ag = self.t.agreement.c
        licensors = select(ag.licensor_id).where(ag.covers_all == 1)
        self.conn.execute(update(p).where(p.c.party_id.in_(licensors)).values(owner_ok=1))
        self.conn.execute(
            insert(p).from_select(
                ["party_id", "owner_ok", "refusal", "allows"],
                licensors.add_columns(literal(1), literal(0), literal(0))
                .where(ag.licensor_id.not_in(select(p.c.party_id)))
                .distinct(),
            )
        )
        self._analyze(p)

    def _set_verdicts(self) -> tuple[IntArray, IntArray]:
        """Every failing party set and its first failing check as a reason key (party * 8 +
        role): one grouped scan of the members, read back as two number lists."""
        m = MEMBERS.c
        packed = (
            cast(m.position, BigInteger) * POSITION
            + cast(func.coalesce(m.party_id, 0), BigInteger) * 8
            + case(ROLE_CODES, value=m.role)
        )
        stmt = (
            select(m.party_set_id.label("set_id"), (func.min(packed) % POSITION).label("key"))
            .select_from(MEMBERS)
            .where(or_(m.party_id.is_(None), self._check_fails()))
            .group_by(m.party_set_id)
        )
        if not self.sqlite:
            p = self.t.party.c
            stmt = stmt.outerjoin(self.t.party, p.party_id == m.party_id)
        if self.scoped:
            in_scope = select(MAPPING.c.party_set_id).join(
                self.t.scope, self.t.scope.c.recording_id == MAPPING.c.recording_id
            )
            stmt = stmt.where(m.party_set_id.in_(in_scope))
        sets = stmt.subquery()
        row = self.conn.execute(select(self._ids(sets.c.set_id), self._ids(sets.c.key))).one()
        return _int_array(row[0]), _int_array(row[1])

    def _check_fails(self) -> ColumnElement[bool]:
        """Whether a party set member's check fails: its party's verdict for the member's role.

        PostgreSQL joins the verdicts. On SQLite a B-tree seek per member would cost more than
        everything else in the scan, so the verdicts travel as one parameter instead: a byte
        string with two bytes per party id (owner covered, consent allows), read with substr().
        """
        m = MEMBERS.c
        is_person = case((m.role == "owner", 0), else_=1)
        if not self.sqlite:
            p = self.t.party.c
            return func.coalesce(case((is_person == 0, p.owner_ok), else_=p.allows), 0) == 0
        top = self.conn.execute(select(func.max(Party.id))).scalar_one() or 0
        p = self.t.party.c
        row = self.conn.execute(
            select(self._ids(p.party_id), self._ids(p.owner_ok), self._ids(p.allows))
        ).one()
        party_ids = _int_array(row[0])
        flags = np.zeros(2 * top + 2, dtype=np.uint8)
        flags[2 * party_ids] = _int_array(row[1])
        flags[2 * party_ids + 1] = _int_array(row[2])
        verdicts = bindparam("verdicts", flags.tobytes(), type_=LargeBinary)
        return func.substr(verdicts, m.party_id * 2 + is_person + 1, 1) != b"\x01"

    def _find_exceptions(self) -> None:
        """Recordings that a listed agreement or a recording- or work-scoped consent touches."""
        conditions = [*self._candidate_consents(), Consent.scope != "all"]
        consent = (Consent.party_id, Consent.id, Consent.effective_from, REFUSAL, ALLOWS)
        columns = ["recording_id", "party_id", "consent_id", "effective_from", "refusal", "allows"]
        by_recording = select(Consent.recording_id, *consent).where(
            *conditions, Consent.recording_id.is_not(None)
        )
        by_work = (
            select(Recording.id, *consent)
            .join(Recording, Recording.work_id == Consent.work_id)
            .where(*conditions, Consent.work_id.is_not(None))
        )
        for stmt in (by_recording, by_work):
            self.conn.execute(insert(self.t.scoped).from_select(columns, stmt))

        ag, p = self.t.agreement.c, self.t.party.c
        uncovered = [
            ag.covers_all == 0,
            ag.licensor_id.not_in(select(p.party_id).where(p.owner_ok == 1)),
        ]
        item = AgreementItem
        listed_recordings = (
            select(item.recording_id, ag.licensor_id)
            .join(item, item.agreement_id == ag.id)
            .where(*uncovered, item.recording_id.is_not(None))
        )
        listed_works = (
            select(Recording.id, ag.licensor_id)
            .select_from(self.t.agreement)
            .join(item, item.agreement_id == ag.id)
            .join(Recording, Recording.work_id == item.work_id)
            .where(*uncovered)
        )
        for stmt in (listed_recordings, listed_works):
            self.conn.execute(
                insert(self.t.listed).from_select(["recording_id", "licensor_id"], stmt)
            )

        s, li = self.t.scoped.c, self.t.listed.c
        touched = union(
            select(s.recording_id).where(*self._in_scope(s.recording_id)),
            select(li.recording_id).where(*self._in_scope(li.recording_id)),
        )
        self.conn.execute(insert(self.t.exception).from_select(["recording_id"], touched))
        self._analyze(self.t.scoped, self.t.listed, self.t.exception)
        self.exceptions = self.conn.execute(
            select(func.count()).select_from(self.t.exception)
        ).scalar_one()
        if self.exceptions:
            self._pair_winners()

    def _pair_winners(self) -> None:
        """The winning consent per (recording, party) where a scoped record competes."""
        s, p = self.t.scoped.c, self.t.party.c
        pairs = select(s.recording_id, s.party_id).distinct().subquery()
        catalog = (
            select(
                pairs.c.recording_id,
                pairs.c.party_id,
                p.consent_id,
                p.effective_from,
                p.refusal,
                p.allows,
            )
            .join(self.t.party, p.party_id == pairs.c.party_id)
            .where(p.consent_id.is_not(None))
        )
        scoped = select(
            s.recording_id, s.party_id, s.consent_id, s.effective_from, s.refusal, s.allows
        )
        both = union_all(scoped, catalog).subquery()
        rank = func.row_number().over(
            partition_by=(both.c.recording_id, both.c.party_id),
            order_by=(
                both.c.effective_from.desc(),
                both.c.refusal.desc(),
                both.c.consent_id.desc(),
            ),
        )
        ranked = select(both, rank.label("rank")).subquery()
        self.conn.execute(
            insert(self.t.pair).from_select(
                ["recording_id", "party_id", "consent_id", "allows"],
                select(
                    ranked.c.recording_id, ranked.c.party_id, ranked.c.consent_id, ranked.c.allows
                ).where(ranked.c.rank == 1),
            )
        )
        self._analyze(self.t.pair)

    def _ids(self, column: ColumnElement[Any]) -> ColumnElement[str]:
        """Values joined by commas (SQLite's group_concat takes integers as they are)."""
        return func.aggregate_strings(column if self.sqlite else cast(column, String), ",")

    def _mapped(self) -> tuple[IntArray, IntArray]:
        """The recordings decided, sorted, and the party set of each (two number lists)."""
        rs = MAPPING.c
        stmt = select(self._ids(rs.recording_id), self._ids(rs.party_set_id))
        if self.scoped:
            sc = self.t.scope
            stmt = stmt.select_from(sc.join(MAPPING, rs.recording_id == sc.c.recording_id))
        row = self.conn.execute(stmt).one()
        ids, sets = _int_array(row[0]), _int_array(row[1])
        if len(ids) != len(sets):
            raise RuntimeError("recording and party set lists differ in length")
        if len(ids) > 1 and not bool(np.all(ids[1:] > ids[:-1])):
            order = np.argsort(ids, kind="stable")
            ids, sets = ids[order], sets[order]
        return ids, sets

    def _names(self, keys: IntArray) -> dict[int, tuple[str | None, int | None]]:
        """Name and winning consent record of each party that the reason keys name.

        The party ids travel as one parameter (a JSON array on SQLite, an array on PostgreSQL):
        tens of thousands of them, where an IN list would be compiled in chunks.
        """
        parties = np.unique(keys // 8)
        party_ids: list[int] = parties[parties > 0].tolist()
        if not party_ids:
            return {}
        if self.sqlite:
            listed = func.json_each(bindparam("ids", json.dumps(party_ids), type_=String))
            wanted = select(listed.table_valued("value").c.value)
        else:
            array = bindparam("ids", party_ids, type_=postgresql.ARRAY(BigInteger))
            wanted = select(func.unnest(array).column_valued("value"))
        p = self.t.party.c
        found = (
            select(Party.id, Party.name, p.consent_id)
            .outerjoin(self.t.party, p.party_id == Party.id)
            .where(Party.id.in_(wanted))
            .subquery()
        )
        agg = func.json_group_array if self.sqlite else func.json_agg
        lists = self.conn.execute(select(*(agg(column) for column in found.c))).one()
        ids, names, consents = (json.loads(v) if isinstance(v, str) else v or [] for v in lists)
        return dict(zip(ids, zip(names, consents, strict=True), strict=True))

    def _decide_exceptions(
        self,
    ) -> tuple[Sequence[int], list[tuple[int, str, int | None, int | None, str | None]]]:
        """Re-decide touched recordings check by check: their ids and first failures."""
        e, m, p = self.t.exception.c, MEMBERS.c, self.t.party.c
        pr, li = self.t.pair.c, self.t.listed.c
        listed = exists().where(li.recording_id == e.recording_id, li.licensor_id == m.party_id)
        ok = case(
            (m.party_id.is_(None), 0),
            (m.role == "owner", case((or_(p.owner_ok == 1, listed), 1), else_=0)),
            (pr.party_id.is_not(None), pr.allows),
            else_=func.coalesce(p.allows, 0),
        )
        consent_id = case(
            (m.role == "owner", null()),
            (pr.party_id.is_not(None), pr.consent_id),
            else_=p.consent_id,
        )
        checks = (
            select(
                e.recording_id,
                m.position,
                m.role,
                m.party_id,
                consent_id.label("consent_id"),
                ok.label("ok"),
            )
            .select_from(
                self.t.exception.join(MAPPING, MAPPING.c.recording_id == e.recording_id)
                .join(MEMBERS, m.party_set_id == MAPPING.c.party_set_id)
                .outerjoin(self.t.party, p.party_id == m.party_id)
                .outerjoin(
                    self.t.pair, and_(pr.recording_id == e.recording_id, pr.party_id == m.party_id)
                )
            )
            .subquery()
        )
        rank = func.row_number().over(
            partition_by=checks.c.recording_id, order_by=checks.c.position
        )
        failing = select(checks, rank.label("rank")).where(checks.c.ok == 0).subquery()
        firsts = (
            select(
                failing.c.recording_id,
                failing.c.role,
                failing.c.party_id,
                failing.c.consent_id,
                Party.name,
            )
            .outerjoin(Party, Party.id == failing.c.party_id)
            .where(failing.c.rank == 1)
        )
        touched = self.conn.execute(
            select(e.recording_id).join(MAPPING, MAPPING.c.recording_id == e.recording_id)
        ).scalars()
        return touched.all(), list(self.conn.execute(firsts).all())


def decide_batch(
    session: Session,
    use: str,
    at: datetime | date | None = None,
    territory: str | None = None,
    *,
    recording_ids: Iterable[int] | None = None,
    licensee_id: int | None = None,
    model_version: str | None = None,
) -> BatchDecision:
    """Decide one use for the whole catalog (or ``recording_ids``) exactly as decide() would.

    Runs in the session's transaction; temporary tables hold the intermediate steps.
    """
    batch = _Batch(session.connection(), use, as_instant(at), territory, licensee_id, model_version)
    return batch.run(recording_ids)
