"""Batch decisions: decide_batch answers exactly as decide() does, for every recording at once."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from attune.rights import registry
from attune.rights.batch import (
    BatchDecision,
    RecordingIds,
    assign_party_sets,
    decide_batch,
)
from attune.rights.models import (
    Party,
    PartySet,
    Recording,
    RecordingArtist,
    RecordingOwner,
    Work,
    WorkShare,
)
from attune.rights.policy import decide
from attune.store.db import session_factory, transaction
from tests import factory as f

USES = ("train", "sample", "remix_stems")
TERRITORIES = ("FR", "DE", "US", "JP")
INSTANTS = (
    datetime(2026, 1, 1),
    datetime(2026, 3, 1),
    datetime(2026, 6, 1),
    datetime(2026, 6, 1, 12),
    datetime(2026, 9, 1),
)
DAYS = (date(2025, 6, 1), date(2026, 1, 1), date(2026, 6, 1), date(2026, 7, 1))
END_DAYS = (None, None, date(2026, 5, 31), date(2026, 6, 1), date(2026, 12, 31))
UNTILS = (None, None, None, datetime(2026, 6, 1), datetime(2026, 12, 31))

Key = tuple[str, int | None, int | None, int | None]


@dataclass
class World:
    """Ids of what a randomised catalog holds, for picking targets and query arguments."""

    labels: list[Party] = field(default_factory=list)
    platforms: list[Party] = field(default_factory=list)
    people: list[Party] = field(default_factory=list)
    works: list[Work] = field(default_factory=list)
    recordings: list[int] = field(default_factory=list)


def _some(rnd: random.Random, items: Sequence[Party], low: int, high: int) -> list[Party]:
    return rnd.sample(list(items), rnd.randint(low, min(high, len(items))))


def build_world(s: Session, rnd: random.Random, n_recordings: int) -> World:
    """A catalog with co-owned recordings, varied agreements and every kind of consent record."""
    w = World()
    w.labels = [f.party(s, f"Label {i}", "label", kind="organisation") for i in range(5)]
    w.platforms = [f.party(s, f"Platform {i}", "platform", kind="organisation") for i in range(2)]
    w.people = [f.party(s, f"Person {i}", "artist", "songwriter") for i in range(16)]
    for i in range(max(3, n_recordings // 3)):
        writers = _some(rnd, w.people, 1, 3)
        publisher = rnd.choice(w.labels) if rnd.random() < 0.3 else None
        w.works.append(f.work(s, f"Work {i}", *writers, publisher=publisher))
    for i in range(n_recordings):
        owners = _some(rnd, w.labels, 1, 2) if rnd.random() < 0.25 else [rnd.choice(w.labels)]
        if rnd.random() < 0.05:
            owners = [rnd.choice(w.people)]
        mains = [] if rnd.random() < 0.06 else _some(rnd, w.people, 1, 2)
        featured = [p for p in _some(rnd, w.people, 0, 1) if p not in mains]
        work = rnd.choice(w.works) if rnd.random() < 0.93 else None
        rec = f.recording(s, f"Recording {i}", work, owners, mains, featured)
        w.recordings.append(rec.id)
    for label in w.labels:
        if rnd.random() < 0.6:
            f.agreement(s, label, w.platforms[0], uses=USES, start=date(2025, 6, 1))
        for _ in range(rnd.randint(0, 3)):
            _random_agreement(s, rnd, w, label)
    for person in w.people:
        for use in USES:
            if rnd.random() < 0.75:
                f.consent(s, person, "allowed", use, datetime(2026, 1, 1))
        for _ in range(rnd.randint(0, 4)):
            _random_consent(s, rnd, w, person)
    return w


def _random_agreement(s: Session, rnd: random.Random, w: World, label: Party) -> None:
    start = rnd.choice(DAYS)
    end = rnd.choice(END_DAYS)
    if end is not None and end < start:
        end = None
    listed = rnd.random() < 0.3
    worldwide = rnd.random() < 0.7
    extra: dict[str, object] = {"model_versions": ("m1",) if rnd.random() < 0.2 else ()}
    if listed:
        extra["covers_all"] = False
        extra["recording_ids"] = tuple(rnd.sample(w.recordings, min(3, len(w.recordings))))
        extra["work_ids"] = (
            tuple(x.id for x in rnd.sample(w.works, 1)) if rnd.random() < 0.5 else ()
        )
    f.agreement(
        s,
        label,
        rnd.choice(w.platforms),
        uses=tuple(rnd.sample(USES, rnd.randint(1, 3))),
        territories=() if worldwide else tuple(rnd.sample(TERRITORIES, rnd.randint(1, 2))),
        excluded=tuple(rnd.sample(TERRITORIES, rnd.randint(0, 1))) if worldwide else (),
        start=start,
        end=end,
        **extra,
    )


def _random_consent(s: Session, rnd: random.Random, w: World, person: Party) -> None:
    decision = rnd.choice(("allowed", "allowed", "not_allowed", "constrained"))
    since = rnd.choice(INSTANTS)
    until = rnd.choice(UNTILS)
    extra: dict[str, object] = {}
    if until is not None and until > since:
        extra["effective_until"] = until
    if decision == "constrained":
        extra["terms"] = {"no_vocals": True}
    if rnd.random() < 0.25:
        extra["territories"] = tuple(rnd.sample(TERRITORIES, rnd.randint(1, 2)))
    scope = rnd.random()
    if scope < 0.15:
        extra.update(scope="recording", recording_id=rnd.choice(w.recordings))
    elif scope < 0.3:
        extra.update(scope="work", work_id=rnd.choice(w.works).id)
    record = f.consent(s, person, decision, rnd.choice(USES), since, **extra)
    if decision != "not_allowed" and rnd.random() < 0.2:
        registry.revoke_consent(
            s, record.id, f.ACTOR, effective_from=rnd.choice(INSTANTS).replace(tzinfo=UTC)
        )


def _key(code: str, party: int | None, agreement: int | None, consent: int | None) -> Key:
    return (code, party, agreement, consent)


def expected(
    s: Session,
    ids: Sequence[int],
    use: str,
    at: datetime | date,
    territory: str | None,
    licensee_id: int | None = None,
    model_version: str | None = None,
) -> tuple[tuple[int, ...], dict[int, Key]]:
    """What decide() says recording by recording: allowed ids and each first exclusion."""
    allowed: list[int] = []
    first: dict[int, Key] = {}
    for rid in sorted(ids):
        d = decide(s, use, rid, at, territory, licensee_id=licensee_id, model_version=model_version)
        if d.allowed:
            allowed.append(rid)
        else:
            r = d.reasons[0]
            first[rid] = _key(r.code, r.party_id, r.agreement_id, r.consent_id)
    return tuple(allowed), first


def assert_same(
    s: Session,
    ids: Sequence[int],
    use: str,
    at: datetime | date,
    territory: str | None,
    *,
    subset: bool = False,
    licensee_id: int | None = None,
    model_version: str | None = None,
) -> BatchDecision:
    """decide_batch gives decide()'s allowed set and first reasons; messages name their ids."""
    batch = decide_batch(
        s,
        use,
        at,
        territory,
        recording_ids=ids if subset else None,
        licensee_id=licensee_id,
        model_version=model_version,
    )
    allowed, first = expected(s, ids, use, at, territory, licensee_id, model_version)
    got = {
        rid: _key(r.code, r.party_id, r.agreement_id, r.consent_id)
        for rid, r in batch.excluded.items()
    }
    where = (use, at, territory, licensee_id, model_version)
    assert batch.allowed == allowed, where
    assert got == first, where
    for r in batch.excluded.values():
        assert r.party_id is None or f"party {r.party_id}" in r.message
        assert r.consent_id is None or f"consent record {r.consent_id}" in r.message
    return batch


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session whose writes are rolled back at the end, so each world starts empty."""
    with session_factory(engine)() as s:
        yield s
        s.rollback()


# (use, at, territory, model version, only the first platform's agreements)
COMBOS: list[tuple[str, datetime | date, str | None, str | None, bool]] = [
    ("train", date(2026, 6, 1), "FR", None, False),
    ("train", date(2026, 6, 1), None, None, False),
    ("sample", datetime(2026, 3, 1, tzinfo=UTC), "US", None, False),
    ("remix_stems", date(2026, 9, 1), "DE", "m1", False),
    ("train", datetime(2026, 6, 1, 12, tzinfo=UTC), "JP", None, True),
]


def test_batch_equals_decide_on_a_random_catalog(session: Session) -> None:
    w = build_world(session, random.Random(20261129), 90)
    codes: Counter[str] = Counter()
    for use, at, territory, model_version, by_licensee in COMBOS:
        licensee = w.platforms[0].id if by_licensee else None
        batch = assert_same(
            session,
            w.recordings,
            use,
            at,
            territory,
            model_version=model_version,
            licensee_id=licensee,
        )
        assert len(batch) == len(w.recordings)
        codes.update(batch.counts_by_code())
        codes["allowed"] += len(batch.allowed)
    every = {
        "allowed",
        "no_agreement",
        "no_artist",
        "no_work",
        "consent_missing",
        "consent_refused",
    }
    assert every <= set(codes), codes


def test_recording_ids_restrict_the_batch(session: Session) -> None:
    w = build_world(session, random.Random(11), 40)
    subset = random.Random(3).sample(w.recordings, 17)
    batch = assert_same(session, subset, "train", date(2026, 6, 1), "FR", subset=True)
    assert set(batch.allowed) | set(batch.excluded) == set(subset)
    assert_same(session, subset, "sample", date(2026, 6, 1), None, subset=True)
    empty = decide_batch(session, "train", date(2026, 6, 1), recording_ids=[])
    assert empty.allowed == () and empty.excluded == {}
    with pytest.raises(LookupError, match="no recording with id 999999"):
        decide_batch(session, "train", recording_ids=[w.recordings[0], 999999])


def test_helpers_summarise_the_batch(session: Session) -> None:
    label = f.party(session, "L", "label", kind="organisation")
    platform = f.party(session, "P", "platform", kind="organisation")
    artist = f.party(session, "A", "artist", "songwriter")
    other = f.party(session, "B", "artist")
    w = f.work(session, "W", artist)
    ok = f.recording(session, "ok", w, [label], [artist])
    missing = f.recording(session, "missing", w, [label], [other])
    f.agreement(session, label, platform)
    f.consent(session, artist)
    batch = decide_batch(session, "train", date(2026, 6, 1), "FR")
    assert batch.allowed == (ok.id,) and batch.is_allowed(ok.id)
    assert not batch.is_allowed(missing.id) and not batch.is_allowed(10**9)
    assert batch.counts_by_code() == {"consent_missing": 1}
    assert batch.counts_by_party() == {other.id: 1}
    assert len(batch) == 2 and "'B'" in batch.excluded[missing.id].message


def test_recordings_with_the_same_parties_share_one_set(session: Session) -> None:
    label = f.party(session, "L", "label", kind="organisation")
    artist = f.party(session, "A", "artist", "songwriter")
    w = f.work(session, "W", artist)
    for i in range(5):
        f.recording(session, f"take {i}", w, [label], [artist])
    f.recording(session, "other", None, [label], [artist])
    assert session.scalar(select(func.count()).select_from(PartySet)) == 2
    assert registry.verify_state(session)[1] is None


def test_recordings_written_outside_the_registry_need_their_sets(session: Session) -> None:
    """Missing owners and writerless works only arise from direct writes; both still match."""
    label = f.party(session, "L", "label", kind="organisation")
    artist = f.party(session, "A", "artist", "songwriter")
    f.consent(session, artist)
    bare = Work(title="bare", created_at=registry.now())
    session.add(bare)
    session.flush()
    session.add(
        WorkShare(
            work_id=bare.id, position=0, party_id=label.id, role="publisher", share=Decimal(100)
        )
    )
    orphan = Recording(
        title="orphan", isrc="GBATT2699999", work_id=bare.id, created_at=registry.now()
    )
    unowned = Recording(title="unowned", isrc="GBATT2699998", created_at=registry.now())
    session.add_all([orphan, unowned])
    session.flush()
    session.add_all(
        [
            RecordingOwner(
                recording_id=orphan.id, position=0, party_id=label.id, share=Decimal(100)
            ),
            RecordingArtist(
                recording_id=orphan.id, position=0, party_id=artist.id, role="featured"
            ),
            RecordingArtist(recording_id=unowned.id, position=0, party_id=artist.id, role="main"),
        ]
    )
    session.flush()
    with pytest.raises(LookupError, match="2 recordings have no party set"):
        decide_batch(session, "train", date(2026, 6, 1), "FR")
    assert assign_party_sets(session) == 2
    batch = assert_same(session, [orphan.id, unowned.id], "train", date(2026, 6, 1), "FR")
    assert {r.code for r in batch.excluded.values()} == {"no_owner", "no_agreement"}


class RecordingSpec(NamedTuple):
    """Owners (label indexes), artists (people indexes), whether the first is main, work index."""

    owners: set[int]
    artists: list[int]
    first_main: bool
    work: int | None


class AgreementSpec(NamedTuple):
    """One agreement of a generated world (indexes into its labels and recordings)."""

    label: int
    uses: set[str]
    territories: tuple[str, ...]
    excludes_us: bool
    start: date
    end: date | None
    pinned: bool
    listed: bool
    recording: int


class ConsentSpec(NamedTuple):
    """One consent record (scope 0 all, 1 a recording, 2 a work) and an optional revocation."""

    person: int
    use: str
    decision: str
    since: datetime
    until: datetime | None
    territories: tuple[str, ...]
    scope: int
    target: int
    revoke: bool
    revoke_at: datetime


class QuerySpec(NamedTuple):
    """The batch to compare: use, instant, territory, model version, one licensee only."""

    use: str
    at: datetime
    territory: str | None
    model_version: str | None
    by_licensee: bool


class WorldSpec(NamedTuple):
    """A small generated catalog and the question asked of it."""

    works: list[set[int]]
    recordings: list[RecordingSpec]
    agreements: list[AgreementSpec]
    consents: list[ConsentSpec]
    query: QuerySpec


@st.composite
def worlds(draw: st.DrawFn) -> WorldSpec:
    """A small catalog description: recordings, agreements, consents and one query."""
    person = st.integers(0, 3)
    instant = st.sampled_from(INSTANTS)
    n_works = draw(st.integers(1, 3))
    n_recordings = draw(st.integers(1, 6))
    works = st.lists(st.sets(person, min_size=1, max_size=3), min_size=n_works, max_size=n_works)
    recordings = st.builds(
        RecordingSpec,
        st.sets(st.integers(0, 2), min_size=1, max_size=2),
        st.lists(person, max_size=2, unique=True),
        st.booleans(),
        st.one_of(st.none(), st.integers(0, n_works - 1)),
    )
    agreements = st.builds(
        AgreementSpec,
        st.integers(0, 2),
        st.sets(st.sampled_from(USES[:2]), min_size=1),
        st.sampled_from(((), ("FR",), ("FR", "US"))),
        st.booleans(),
        st.sampled_from(DAYS),
        st.sampled_from(END_DAYS),
        st.booleans(),
        st.booleans(),
        st.integers(0, n_recordings - 1),
    )
    consents = st.builds(
        ConsentSpec,
        person,
        st.sampled_from(USES[:2]),
        st.sampled_from(("allowed", "not_allowed", "constrained")),
        instant,
        st.sampled_from(UNTILS),
        st.sampled_from(((), ("FR",), ("US", "JP"))),
        st.integers(0, 2),
        st.integers(0, 5),
        st.booleans(),
        instant,
    )
    query = st.builds(
        QuerySpec,
        st.sampled_from(USES[:2]),
        instant,
        st.sampled_from((None, "FR", "US")),
        st.sampled_from((None, "m1")),
        st.booleans(),
    )
    return WorldSpec(
        draw(works),
        draw(st.lists(recordings, min_size=n_recordings, max_size=n_recordings)),
        draw(st.lists(agreements, max_size=4)),
        draw(st.lists(consents, max_size=10)),
        draw(query),
    )


def _build_small(s: Session, spec: WorldSpec) -> tuple[list[int], Party]:
    """Register a generated world through the registry; its recording ids and the licensee."""
    labels = [f.party(s, f"L{i}", "label", kind="organisation") for i in range(3)]
    platform = f.party(s, "Platform", "platform", kind="organisation")
    people = [f.party(s, f"P{i}", "artist", "songwriter") for i in range(4)]
    works = [
        f.work(s, f"W{i}", *(people[j] for j in sorted(ws))) for i, ws in enumerate(spec.works)
    ]
    ids: list[int] = []
    for i, r in enumerate(spec.recordings):
        mains = [people[j] for j in r.artists[:1]] if r.first_main else []
        featured = [people[j] for j in (r.artists[1:] if r.first_main else r.artists)]
        owners = [labels[j] for j in sorted(r.owners)]
        work = None if r.work is None else works[r.work]
        ids.append(f.recording(s, f"R{i}", work, owners, mains, featured).id)
    for a in spec.agreements:
        extra: dict[str, object] = {"model_versions": ("m1",) if a.pinned else ()}
        if a.listed:
            extra.update(covers_all=False, recording_ids=(ids[a.recording],))
        f.agreement(
            s,
            labels[a.label],
            platform,
            uses=tuple(sorted(a.uses)),
            territories=a.territories,
            excluded=("US",) if a.excludes_us and not a.territories else (),
            start=a.start,
            end=None if a.end is not None and a.end < a.start else a.end,
            **extra,
        )
    for c in spec.consents:
        more: dict[str, object] = {"territories": c.territories}
        if c.until is not None and c.until > c.since:
            more["effective_until"] = c.until
        if c.decision == "constrained":
            more["terms"] = {"limit": 1}
        if c.scope == 1:
            more.update(scope="recording", recording_id=ids[c.target % len(ids)])
        elif c.scope == 2:
            more.update(scope="work", work_id=works[c.target % len(works)].id)
        record = f.consent(s, people[c.person], c.decision, c.use, c.since, **more)
        if c.revoke and c.decision != "not_allowed":
            at = c.revoke_at.replace(tzinfo=UTC)
            registry.revoke_consent(s, record.id, f.ACTOR, effective_from=at)
    return ids, platform


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(spec=worlds())
def test_batch_equals_decide_on_generated_worlds(engine: Engine, spec: WorldSpec) -> None:
    with session_factory(engine)() as s:
        ids, platform = _build_small(s, spec)
        q = spec.query
        licensee = platform.id if q.by_licensee else None
        at = q.at.replace(tzinfo=UTC)
        version = q.model_version
        assert_same(s, ids, q.use, at, q.territory, licensee_id=licensee, model_version=version)
        assert_same(
            s,
            ids[:2],
            q.use,
            at,
            q.territory,
            subset=True,
            licensee_id=licensee,
            model_version=version,
        )
        s.rollback()


def test_batch_runs_twice_in_one_transaction(engine: Engine) -> None:
    with transaction(engine) as s:
        label = f.party(s, "L", "label", kind="organisation")
        artist = f.party(s, "A", "artist", "songwriter")
        f.recording(s, "R", f.work(s, "W", artist), [label], [artist])
        first = decide_batch(s, "train", date(2026, 6, 1), "FR")
        again = decide_batch(s, "train", date(2026, 6, 1), "FR")
    assert first == again and first.counts_by_code() == {"no_agreement": 1}


def test_recording_ids_behave_like_the_sorted_tuple_they_replace() -> None:
    ids = RecordingIds([2, 3, 5, 8, 13, 21])
    assert len(ids) == 6 and list(ids) == [2, 3, 5, 8, 13, 21]
    fib = (2, 3, 5, 8, 13, 21)
    assert ids == fib and fib == ids and ids == list(fib) and ids != (2, 3)
    assert all(type(i) is int for i in ids) and type(ids[0]) is int and ids[-1] == 21
    assert ids[1:3] == (3, 5) and isinstance(ids[1:3], RecordingIds)
    assert list(reversed(ids)) == [21, 13, 8, 5, 3, 2]
    assert 13 in ids and np.int64(13) in ids and 4 not in ids and "13" not in ids
    assert 10**30 not in ids and -(10**30) not in ids
    assert ids.index(8) == 3 and ids.count(8) == 1 and ids.count(9) == 0
    with pytest.raises(ValueError):
        ids.index(9)
    assert np.asarray(ids).dtype == np.int64 and not np.asarray(ids).flags.writeable
    assert RecordingIds() == () and not RecordingIds()
    many = RecordingIds(range(0, 30_000, 3))  # enough probes to switch to the dict
    assert [i for i in range(30_000) if i in many] == list(range(0, 30_000, 3))
    assert 29_997 in many and 29_998 not in many and np.int32(3) in many


def test_the_answer_reads_as_python_objects(session: Session) -> None:
    w = build_world(session, random.Random(7), 60)
    batch = decide_batch(session, "train", date(2026, 6, 1), "FR")
    excluded = batch.excluded
    plain = dict(excluded.items())
    assert len(plain) == len(excluded) and list(plain) == sorted(plain) == list(excluded)
    assert all(type(rid) is int for rid in plain) and all(type(i) is int for i in batch.allowed)
    assert list(excluded.values()) == list(plain.values()) and excluded == plain
    assert set(batch.allowed) | set(plain) == set(w.recordings)
    for rid in w.recordings:
        assert (rid in excluded) == (rid in plain) == (not batch.is_allowed(rid))
        assert excluded.get(rid) == plain.get(rid)
    rid, reason = next(iter(plain.items()))
    assert excluded[rid] is reason  # made once, shared by every recording with it
    with pytest.raises(KeyError):
        excluded[batch.allowed[0]]
    codes = Counter(r.code for r in plain.values())
    assert batch.counts_by_code() == dict(codes)
    assert list(batch.counts_by_code().values()) == sorted(codes.values(), reverse=True)
    parties = Counter(r.party_id for r in plain.values() if r.party_id is not None)
    assert batch.counts_by_party() == dict(parties)
    assert excluded.ids == tuple(plain) and len(batch) == len(w.recordings)
