"""Batch consent decisions: one use for a whole catalog in set-based SQL, answering as decide().

A decision checks an ordered list of parties: the master owners, the main and featured artists
and the writers of the recorded work. Most recordings share that list with many others (same
label, artist and writers), so the registry keeps each distinct list once as a *party set* and
maps every recording to its set (:func:`assign_party_sets`). A batch then

1. finds the agreements that apply (use, day, territory, licensee, model-version pins) and, per
   party, the catalog-wide consent record that wins at that instant: one small row per party;
2. decides every party set in one grouped scan, keeping its first failing check;
3. reads the recordings of the failing sets with their reasons, and of the others, as lists;
4. re-decides check by check the few recordings that a listed agreement or a recording- or
   work-scoped consent record touches, and lets those answers stand instead.
"""

from __future__ import annotations

import hashlib
import json
import typing
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

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


@dataclass(frozen=True, slots=True)
class BatchDecision:
    """The answer for many recordings: the allowed ids, and the first exclusion of every other."""

    use: str
    at: datetime
    territory: str | None
    allowed: tuple[int, ...]
    excluded: dict[int, Reason]

    def __len__(self) -> int:
        """How many recordings were decided."""
        return len(self.allowed) + len(self.excluded)

    def is_allowed(self, recording_id: int) -> bool:
        """Whether this recording may be used (False for one not in the batch)."""
        i = bisect_left(self.allowed, recording_id)
        return i < len(self.allowed) and self.allowed[i] == recording_id

    def counts_by_code(self) -> dict[str, int]:
        """How many recordings each first exclusion code excludes, most frequent first."""
        return dict(Counter(r.code for r in self.excluded.values()).most_common())

    def counts_by_party(self) -> dict[int, int]:
        """How many recordings each party's missing agreement or consent excludes."""
        counts = Counter(r.party_id for r in self.excluded.values() if r.party_id is not None)
        return dict(counts.most_common())


@dataclass(frozen=True)
class _Scratch:
    """The temporary tables of one batch (created per call, dropped at its end)."""

    metadata: MetaData
    scope: Table
    agreement: Table
    party: Table
    set_fail: Table
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
            set_fail=table(
                "set_fail",
                key("party_set_id"),
                Column("reason_key", BigInteger),
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


def _split_pairs(joined: str | None) -> tuple[list[int], list[int]]:
    """The two halves of an "a,b,a,b,..." aggregate (the parsed whole is freed on return)."""
    flat = _parse_ids(joined)
    return flat[0::2], flat[1::2]


def _unpack(reason_key: int) -> tuple[str, int | None]:
    """The role and party (None for a missing-party marker) a reason key names."""
    return PARTY_SET_ROLES[reason_key % 8], reason_key // 8 or None


def _parse_ids(joined: str | None) -> list[int]:
    """Recording ids from one comma-separated aggregate (fast: one C-level JSON parse)."""
    return json.loads(f"[{joined}]") if joined else []


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
        self.what = f"{use!r} {f'in {territory}' if territory else 'worldwide'}"
        self.no_agreement = f" has no agreement covering {self.what} on {self.day.isoformat()}"
        self.no_consent = f" has no consent record for {self.what} in effect"
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
        self._sets()
        self._find_exceptions()
        ids, keys = _split_pairs(self._excluded_pairs())
        reasons = self._key_reasons(set(keys))
        excluded = dict(zip(ids, map(reasons.__getitem__, keys), strict=True))
        allowed = _parse_ids(self._allowed())
        if self.exceptions:
            touched, firsts = self._decide_exceptions()
            exact = {
                rid: self._reason(role, party_id, consent_id, name)
                for rid, role, party_id, consent_id, name in firsts
            }
            cleared = set(touched).difference(exact)
            for rid in cleared:
                excluded.pop(rid, None)
            excluded.update(exact)
            allowed = list(cleared.union(allowed).difference(exact))
        md.drop_all(self.conn)
        self._require_mapped(len(allowed) + len(excluded), expected)
        return BatchDecision(self.use, self.when, self.territory, tuple(sorted(allowed)), excluded)

    def _reason(
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

    def _sets(self) -> None:
        """Every failing party set's first failing check, as a reason key (party * 8 + role)."""
        m = MEMBERS.c
        packed = (
            cast(m.position, BigInteger) * POSITION
            + cast(func.coalesce(m.party_id, 0), BigInteger) * 8
            + case(ROLE_CODES, value=m.role)
        )
        stmt = (
            select(m.party_set_id, func.min(packed) % POSITION)
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
        self.conn.execute(insert(self.t.set_fail).from_select(["party_set_id", "reason_key"], stmt))
        self._analyze(self.t.set_fail)

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
        flags = bytearray(2 * top + 2)
        p = self.t.party.c
        for party_id, owner_ok, allows in self.conn.execute(
            select(p.party_id, p.owner_ok, p.allows)
        ):
            flags[2 * party_id] = owner_ok
            flags[2 * party_id + 1] = allows
        verdicts = bindparam("verdicts", bytes(flags), type_=LargeBinary)
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

    def _excluded_pairs(self) -> str | None:
        """Recordings of failing sets with their set's reason key, as "id,key,id,key,..."

        One streaming pass in set order: grouping by reason in SQL would sort the sets first.
        """
        f, rs = self.t.set_fail.c, MAPPING.c
        joined = self.t.set_fail.join(MAPPING, rs.party_set_id == f.party_set_id)
        if self.scoped:
            joined = joined.join(self.t.scope, self.t.scope.c.recording_id == rs.recording_id)
        pair = rs.recording_id.op("||")(",").op("||")(f.reason_key)
        return self.conn.execute(select(self._ids(pair)).select_from(joined)).scalar_one()

    def _key_reasons(self, keys: set[int]) -> dict[int, Reason]:
        """The Reason of each reason key, naming its party and its winning consent record."""
        party_ids = sorted({party for _role, party in map(_unpack, keys) if party is not None})
        p = self.t.party.c
        found: dict[int, tuple[str, int | None]] = {}
        for start in range(0, len(party_ids), CHUNK):
            stmt = (
                select(Party.id, Party.name, p.consent_id)
                .outerjoin(self.t.party, p.party_id == Party.id)
                .where(Party.id.in_(party_ids[start : start + CHUNK]))
            )
            found.update(
                (pid, (name, consent_id)) for pid, name, consent_id in self.conn.execute(stmt)
            )
        reasons = {}
        for key in keys:
            role, party_id = _unpack(key)
            name, consent_id = found.get(party_id or 0, (None, None))
            reasons[key] = self._reason(role, party_id, consent_id, name)
        return reasons

    def _allowed(self) -> str | None:
        """Recordings of the sets with no failing check, as one comma-separated list."""
        rs, f = MAPPING.c, self.t.set_fail.c
        if self.scoped:
            source = self.t.scope.join(MAPPING, rs.recording_id == self.t.scope.c.recording_id)
            passing = ~exists().where(f.party_set_id == rs.party_set_id)
        else:
            source = SETS.join(MAPPING, rs.party_set_id == SETS.c.id)
            passing = ~exists().where(f.party_set_id == SETS.c.id)
        stmt = select(self._ids(rs.recording_id)).select_from(source).where(passing)
        return self.conn.execute(stmt).scalar_one()

    def _decide_exceptions(
        self,
    ) -> tuple[list[int], list[tuple[int, str, int | None, int | None, str | None]]]:
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
        return list(touched), list(self.conn.execute(firsts))


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
