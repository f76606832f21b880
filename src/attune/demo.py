"""`attune demo`: a realistic, deterministic rights world, and what each use may draw on and why.

The world is written only through the audited registry functions, so the audit chain and
``verify_state`` hold over it exactly as over real data. Its works are real public-domain scores
from the music21 corpus (Bach chorales, Palestrina masses, O'Neill's 1850, Ryan's Mammoth and
Aird's Airs; never the non-commercial Essen collection). Each work is modelled as a modern
arrangement: its writers are fictional arranger-songwriters, who hold rights in the arrangement
and therefore must consent, while the historical composer, being in the public domain, is not a
party. Work.source names the score as ``music21:<corpus path>`` with ``#<tune number>`` for one
tune of a multi-tune ABC file. Every other name is fictional, and its identifiers are valid but
fictional (ISNIs and IPIs in blocks no agency has assigned).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from random import Random
from typing import Any

from rich.table import Table
from rich.text import Text
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from stdnum.iso7064 import mod_11_2

from attune.rights import policy, registry
from attune.rights.batch import decide_batch
from attune.rights.identifiers import ipi_name_check_digits, iswc_check_digit
from attune.rights.models import USES, Consent, Party, Recording, Work
from attune.rights.records import (
    AgreementIn,
    ArtistIn,
    ConsentIn,
    DelegationIn,
    OwnerIn,
    PartyIn,
    RecordingIn,
    Role,
    ShareIn,
    WorkIn,
)
from attune.store.db import session_factory, transaction

ACTOR = "demo"
MICRO = Decimal("0.000001")
HUNDRED = Decimal(100)

# Every record of the world is in effect by this instant; the next change is at the end of 2028.
AS_OF = datetime(2026, 4, 1, tzinfo=UTC)

Progress = Callable[[int, int, str], None]
"""Called as progress(done, total, what) while a stage of the build advances."""

# Share of the catalog drawn from each corpus collection (Essen is non-commercial: never used).
COLLECTIONS: dict[str, float] = {
    "bach": 0.30,
    "palestrina": 0.10,
    "oneills1850": 0.30,
    "ryansMammoth": 0.18,
    "airdsAirs": 0.12,
}

# (name, ISRC country + registrant). Labels and distributors own masters; publishers hold shares.
LABELS = (
    ("Harbourlight Records", "GBHBL"),
    ("Northwick Sound", "USNWS"),
    ("Velvet Static", "IEVST"),
    ("Kestrel & Crane Recordings", "CAKCR"),
)
DISTRIBUTORS = (("Tidewater Digital", "NLTWD"), ("Lowtide Distribution", "SELTD"))
PUBLISHERS = ("Old Quay Music Publishing", "Bramblewood Songs", "Fernhollow Editions")
PLATFORMS = ("Chordwell AI", "Sonarium Labs")
# How many signed artists each master owner has, in LABELS + DISTRIBUTORS order.
ROSTER = (10, 9, 8, 7, 3, 3)
WRITERS_ONLY = 14
ARTIST_WRITERS = 14

FIRST_NAMES = (
    "Idris", "Noor", "Tobias", "Esme", "Caspian", "Ilse", "Rafe", "Oona", "Teodor", "Saskia",
    "Lior", "Wren", "Anouk", "Bastian", "Calla", "Dario", "Elodie", "Femi", "Greer", "Hollis",
    "Imke", "Jonah", "Kaia", "Lumi", "Matteo", "Nell", "Orrin", "Priya", "Quill", "Rosalind",
    "Soren", "Talia", "Ugo", "Vesna", "Wilder", "Xanthe", "Yara", "Aurelio", "Brisa", "Cato",
)  # fmt: skip
SURNAMES = (
    "Vellacott", "Ashgrove", "Thornquist", "Okafor-Reid", "Halvorsen", "Marchetti", "Penhallow",
    "Quarrie", "Rookwood", "Santerre", "Tregarthen", "Underhill", "Valcourt", "Westerby",
    "Yelland", "Abernethy", "Blackthorne", "Carrow", "Dunmore", "Everleigh", "Fairweather",
    "Gallimore", "Hesketh", "Ingleby", "Jessop", "Kettering", "Lisle", "Mortlake", "Norrington",
    "Ostrander", "Pryce", "Ravensworth", "Selwyn", "Varga", "Wetherell", "Ambrose-Kell",
)  # fmt: skip
STAGE_NAMES = (
    "Low Lantern", "Juniper Sway", "Glass Harbour", "The Quiet Orchard", "Neon Fjord",
    "Paper Comets", "Saltwater Choir", "Hollow Pine", "Velvet Morrow", "Cinder & Lark",
)  # fmt: skip
# Editorial headings of the tune books that are not tune titles ("A Do." means "ditto").
NOT_A_TITLE = re.compile(r"(?i)^\s*(a\s+)?(do|ditto)\.?\s*$|^do\. for\b|following tunes")
VERSIONS = ("", " (Live)", " (Acoustic)", " (Reprise)", " (Night Version)")

# Chance that a person opts in to a use for all their works (the rest refuse or stay silent).
OPT_IN = {
    "train": 0.85,
    "style_reference": 0.75,
    "voice_likeness": 0.7,
    "remix_stems": 0.8,
    "sample": 0.7,
}
CONSTRAINED_TERMS: dict[str, dict[str, Any]] = {
    "train": {"attribution": "required"},
    "style_reference": {"no_name_in_prompts": True},
    "voice_likeness": {"approval": "per_output"},
    "remix_stems": {"non_commercial": True},
    "sample": {"max_seconds": 8},
}


@dataclass(frozen=True, slots=True)
class Score:
    """A real score of the music21 corpus that becomes a work: its cleaned title and source."""

    title: str
    source: str


@dataclass(frozen=True, slots=True)
class WorldSummary:
    """What build_world registered, for the CLI to print and tests to check."""

    seed: int
    labels: int
    publishers: int
    distributors: int
    platforms: int
    artists: int
    songwriters: int
    works: int
    recordings: int
    agreements: int
    consents: int
    revocations: int
    delegations: int
    as_of: datetime
    seconds: float

    def __rich__(self) -> Text:
        """One line for `attune demo` to print after the build."""
        return Text(
            f"Demo world (seed {self.seed}) built in {self.seconds:.1f} s: {self.labels} labels, "
            f"{self.publishers} publishers, {self.distributors} distributors, {self.platforms} "
            f"AI platforms, {self.artists} artists, {self.songwriters} songwriters, {self.works} "
            f"works, {self.recordings} recordings, {self.agreements} agreements, {self.consents} "
            f"consent records ({self.revocations} revocations), {self.delegations} delegations; "
            f"all in effect from {self.as_of.date().isoformat()}."
        )


@dataclass(frozen=True, slots=True)
class ReasonCount:
    """How many recordings one reason excludes: its code and the party or agreement it names."""

    code: str
    subject: str
    count: int
    party_id: int | None
    agreement_id: int | None

    @property
    def label(self) -> str:
        """E.g. ``consent_refused: 'Wren Halvorsen' (party 12)``."""
        return f"{self.code}: {self.subject}" if self.subject else self.code


@dataclass(frozen=True, slots=True)
class UseSummary:
    """For one use at one instant and territory: recordings usable, and the top reasons not."""

    use: str
    at: datetime
    territory: str | None
    recordings: int
    usable: int
    top_reasons: tuple[ReasonCount, ...]

    @property
    def excluded(self) -> int:
        """Recordings that may not be used."""
        return self.recordings - self.usable


# --- the corpus ---


def _clean_title(raw: str) -> str:
    """Tidy a collection title: no trailing dot or comma, words in shouting capitals calmed."""
    title = " ".join(raw.replace(" -- ", " – ").split()).rstrip(".,;: ")
    if title.upper() == title:
        title = " ".join(w[:1] + w[1:].lower() for w in title.split())
    return title[:1].upper() + title[1:]


def _score(entry: Any, chorale_titles: dict[str, dict[str, Any]]) -> tuple[str, Score] | None:
    """The collection and score of one corpus metadata entry, or None when it is unusable."""
    path = entry.sourcePath.as_posix()
    collection = path.split("/", 1)[0]
    meta = entry.metadata
    if collection not in COLLECTIONS or meta is None:
        return None
    if collection == "bach":
        match = re.fullmatch(r"bach/bwv(\d+(?:\.\d+)?)\.mxl", path)
        chorale = chorale_titles.get(match.group(1)) if match else None
        if match is None or chorale is None:
            return None
        return collection, Score(f"{chorale['title']} (BWV {match.group(1)})", f"music21:{path}")
    if collection == "palestrina":
        mass, movement, section = meta.parentTitle, meta.movementName, meta.title
        if not mass or not section:
            return None
        name = f"{mass}: {movement} – {section}" if movement else f"{mass}: {section}"
        return collection, Score(name, f"music21:{path}")
    title = meta.title
    if not isinstance(title, str) or NOT_A_TITLE.search(title):
        return None
    number = f"#{entry.number}" if entry.number is not None else ""
    return collection, Score(_clean_title(title), f"music21:{path}{number}")


def corpus_scores(works: int, rng: Random) -> list[Score]:
    """Pick ``works`` scores of distinct titles from the corpus metadata, without parsing any."""
    from music21.corpus.chorales import ChoraleListRKBWV
    from music21.corpus.corpora import CoreCorpus

    listing = ChoraleListRKBWV()  # type: ignore[no-untyped-call]  # unannotated in music21
    chorale_titles: dict[str, dict[str, Any]] = listing.byBWV
    by_collection: dict[str, list[Score]] = {name: [] for name in COLLECTIONS}
    # A slice copies the entries once; iterating the bundle itself is quadratic (15,000 entries).
    for entry in CoreCorpus().metadataBundle[:]:
        found = _score(entry, chorale_titles)
        if found is not None:
            by_collection[found[0]].append(found[1])
    seen: set[str] = set()
    picked: list[Score] = []
    leftovers: list[Score] = []
    for name, fraction in COLLECTIONS.items():
        pool = sorted(by_collection[name], key=lambda s: s.source)
        rng.shuffle(pool)
        quota = round(works * fraction)
        for score in pool:
            key = score.title.casefold()
            if key in seen:
                continue
            seen.add(key)
            (picked if quota > 0 else leftovers).append(score)
            quota -= 1
    if len(picked) + len(leftovers) < works:
        raise ValueError(f"works: the corpus offers {len(picked) + len(leftovers)} scores")
    picked += leftovers[: max(0, works - len(picked))]
    return picked[:works]


# --- identifiers ---


def _isni(rng: Random, used: set[str]) -> str:
    """A fresh ISNI with a valid check character, in a block never assigned (9999 ...)."""
    while True:
        body = f"9999{rng.randrange(10**11):011d}"
        if body not in used:
            used.add(body)
            return body + str(mod_11_2.calc_check_digit(body))


def _ipi(rng: Random, used: set[str]) -> str:
    """A fresh IPI name number with valid check digits, far above any assigned (99 ...)."""
    while True:
        body = f"99{rng.randrange(10**7):07d}"
        if body not in used:
            used.add(body)
            return body + ipi_name_check_digits(body)


def _split(total: Decimal, parts: int) -> list[Decimal]:
    """Split a percentage into equal micro-unit parts that sum to it exactly."""
    each = (total / parts).quantize(MICRO, rounding=ROUND_DOWN)
    shares = [each] * parts
    shares[0] += total - each * parts
    return shares


def _instant(day: date) -> datetime:
    """Midnight UTC of a day."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


# --- the build ---


class _World:
    """The state of one build: the session, the random stream, and what has been registered."""

    def __init__(
        self, session: Session, rng: Random, scores: list[Score], progress: Progress | None
    ) -> None:
        self.s = session
        self.rng = rng
        self.scores = scores
        self.progress = progress
        self.ids: set[str] = set()
        self.isrc_next: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        self.owners: list[tuple[Party, str]] = []  # master owners with their ISRC prefixes
        self.publishers: list[Party] = []
        self.platforms: list[Party] = []
        self.artists: list[Party] = []
        self.writers: list[Party] = []
        self.home: dict[int, Party] = {}  # artist id -> the label or distributor signing them
        self.delegate: dict[int, Party] = {}  # artist id -> the label recording their consent
        self.works: dict[int, Work] = {}
        self.recordings: list[Recording] = []
        self.mastered: dict[int, list[Recording]] = {}  # master owner id -> recordings

    def step(self, what: str, items: Iterable[Any], total: int) -> Iterable[Any]:
        """Yield the items of a stage, reporting progress after each."""
        for done, item in enumerate(items, start=1):
            yield item
            if self.progress is not None:
                self.progress(done, total, what)

    def day(self, start: date, span_days: int) -> datetime:
        """A random midnight within ``span_days`` from ``start``."""
        return _instant(start + timedelta(days=self.rng.randrange(span_days)))

    def party(self, data: PartyIn) -> Party:
        """Register one party, counting it under each of its roles."""
        party = registry.add_party(self.s, data, ACTOR)
        self.counts.update(data.roles)
        return party

    def organisations(self) -> None:
        """Labels, distributors, publishers and AI platforms."""
        for name, prefix in LABELS + DISTRIBUTORS:
            role = "label" if (name, prefix) in LABELS else "distributor"
            org = self.party(
                PartyIn(
                    name=name, kind="organisation", roles=(role,), isni=_isni(self.rng, self.ids)
                )
            )
            self.owners.append((org, prefix))
            self.mastered[org.id] = []
        for name in PUBLISHERS:
            self.publishers.append(
                self.party(
                    PartyIn(
                        name=name,
                        kind="organisation",
                        roles=("publisher",),
                        ipi=_ipi(self.rng, self.ids),
                    )
                )
            )
        for name in PLATFORMS:
            self.platforms.append(
                self.party(PartyIn(name=name, kind="organisation", roles=("platform",)))
            )

    def people(self) -> None:
        """Artists (some also songwriters) signed to an owner, and writer-only songwriters."""
        names = [f"{f} {s}" for f in FIRST_NAMES for s in SURNAMES]
        total = sum(ROSTER) + WRITERS_ONLY
        chosen = self.rng.sample(names, total)
        stage_names = dict(
            zip(self.rng.sample(range(sum(ROSTER)), len(STAGE_NAMES)), STAGE_NAMES, strict=True)
        )
        homes = [owner for (owner, _), n in zip(self.owners, ROSTER, strict=True) for _ in range(n)]
        for i, name in enumerate(self.step("Registering people", chosen, total)):
            is_artist = i < len(homes)
            writes = not is_artist or i < ARTIST_WRITERS
            roles: tuple[Role, ...] = ("artist",) if is_artist else ()
            roles += ("songwriter",) if writes else ()
            person = self.party(
                PartyIn(
                    name=name,
                    roles=roles,
                    isni=_isni(self.rng, self.ids) if is_artist and i % 4 == 0 else None,
                    ipi=_ipi(self.rng, self.ids) if writes and i % 3 == 0 else None,
                    aliases=(stage_names[i],) if i in stage_names else (),
                )
            )
            if is_artist:
                self.artists.append(person)
                self.home[person.id] = homes[i]
            if writes:
                self.writers.append(person)

    def delegations(self) -> None:
        """Three Northwick artists let their label manage their consent for every use."""
        northwick = self.owners[1][0]
        signed = [a for a in self.artists if self.home[a.id].id == northwick.id]
        for artist in signed[:3]:
            registry.add_delegation(
                self.s,
                DelegationIn(
                    principal_id=artist.id,
                    delegate_id=northwick.id,
                    effective_from=_instant(date(2025, 1, 1)),
                    evidence="Artist agreement, clause 9.2: label manages AI consent",
                ),
                ACTOR,
            )
            self.delegate[artist.id] = northwick
            self.counts["delegations"] += 1

    def isrc(self, prefix: str, year: int) -> str:
        """The next ISRC of a registrant for a year."""
        self.isrc_next[f"{prefix}{year}"] += 1
        return f"{prefix}{year % 100:02d}{self.isrc_next[f'{prefix}{year}']:05d}"

    def work_shares(self) -> tuple[ShareIn, ...]:
        """One to three writers, and usually a publisher, summing to exactly 100%."""
        writers = self.rng.sample(self.writers, self.rng.choices((1, 2, 3), (55, 35, 10))[0])
        publisher = self.rng.choice(self.publishers) if self.rng.random() < 0.8 else None
        pool = HUNDRED - (Decimal(50) if publisher else 0)
        shares = [
            ShareIn(party_id=w.id, role="writer", share=sh)
            for w, sh in zip(writers, _split(pool, len(writers)), strict=True)
        ]
        if publisher is not None:
            shares.append(ShareIn(party_id=publisher.id, role="publisher", share=Decimal(50)))
        return tuple(shares)

    def recording(self, title: str, work_id: int, version: str) -> None:
        """One recording by a random artist, mastered by their owner, sometimes co-owned."""
        artist = self.rng.choice(self.artists)
        owner = self.home[artist.id]
        prefix = next(p for o, p in self.owners if o.id == owner.id)
        artists = [ArtistIn(party_id=artist.id)]
        if self.rng.random() < 0.15:
            guest = self.rng.choice([a for a in self.artists if a.id != artist.id])
            artists.append(ArtistIn(party_id=guest.id, role="featured"))
        owners = [OwnerIn(party_id=owner.id, share=HUNDRED)]
        roll = self.rng.random()
        if roll < 0.08:  # a joint venture of two labels
            partner = self.rng.choice([o for o, _ in self.owners[:4] if o.id != owner.id])
            owners = [
                OwnerIn(party_id=owner.id, share=Decimal(50)),
                OwnerIn(party_id=partner.id, share=Decimal(50)),
            ]
        elif roll < 0.12:  # the artist kept a quarter of the master
            owners = [
                OwnerIn(party_id=owner.id, share=Decimal(75)),
                OwnerIn(party_id=artist.id, share=Decimal(25)),
            ]
        rec = registry.add_recording(
            self.s,
            RecordingIn(
                title=title + version,
                isrc=self.isrc(prefix, self.rng.choice((2023, 2024, 2025))),
                duration_ms=self.rng.randrange(95_000, 330_000, 250),
                work_id=work_id,
                artists=tuple(artists),
                owners=tuple(owners),
                contains_ai="None",
            ),
            ACTOR,
        )
        self.recordings.append(rec)
        for o in owners:
            if o.party_id in self.mastered:
                self.mastered[o.party_id].append(rec)

    def catalog(self) -> None:
        """A work per score (valid ISWC) and one or two recordings of each."""
        base = self.rng.randrange(10**8, 9 * 10**8)
        scores = self.scores
        for i, score in enumerate(self.step("Registering works", scores, len(scores))):
            body = f"{base + i:09d}"
            work = registry.add_work(
                self.s,
                WorkIn(
                    title=score.title,
                    iswc=f"T{body}{iswc_check_digit(body)}",
                    shares=self.work_shares(),
                    source=score.source,
                ),
                ACTOR,
            )
            self.works[work.id] = work
            versions = 1 + (self.rng.random() < 0.5)
            for v in range(versions):
                self.recording(
                    score.title, work.id, VERSIONS[self.rng.randrange(1, 5)] if v else ""
                )

    def agreement(
        self,
        owner: int,
        platform: int,
        uses: tuple[str, ...],
        *,
        start_date: date = date(2025, 1, 1),
        ai_revenue_share: Decimal = Decimal("0.2"),
        **terms: Any,
    ) -> None:
        """Register a licence from master owner ``owner`` (index into LABELS + DISTRIBUTORS)."""
        licensor, prefix = self.owners[owner]
        licensee = self.platforms[platform]
        self.counts["agreements"] += 1
        registry.add_agreement(
            self.s,
            AgreementIn(
                licensor_id=licensor.id,
                licensee_id=licensee.id,
                uses=uses,
                reference=f"{prefix}-{licensee.name[:3].upper()}-{self.counts['agreements']:03d}",
                start_date=start_date,
                ai_revenue_share=ai_revenue_share,
                **terms,
            ),
            ACTOR,
        )

    def agreements(self) -> None:
        """Licences with partial coverage; Lowtide Distribution has licensed nothing."""
        all_but_voice = ("remix_stems", "sample", "style_reference", "train")
        # Harbourlight: everything but voice worldwide except Japan; voice everywhere since Sept.
        self.agreement(
            0,
            0,
            all_but_voice,
            worldwide=True,
            excluded_territories=("JP",),
            minimum_guarantee=Decimal(250_000),
        )
        self.agreement(
            0,
            1,
            ("voice_likeness",),
            worldwide=True,
            start_date=date(2025, 9, 1),
            ai_revenue_share=Decimal("0.35"),
        )
        # Northwick: training only in five English-speaking markets; voice pinned to one model.
        self.agreement(1, 0, ("train",), territories=("AU", "CA", "GB", "IE", "US"))
        self.agreement(1, 0, ("remix_stems", "style_reference"), worldwide=True)
        self.agreement(
            1, 0, ("voice_likeness",), worldwide=True, model_versions=("chordwell-voice-1.2",)
        )
        # Velvet Static: an expired deal for everything; now a listed part of the catalog only.
        self.agreement(
            2, 0, USES, worldwide=True, start_date=date(2023, 1, 1), end_date=date(2025, 6, 30)
        )
        velvet = self.mastered[self.owners[2][0].id]
        listed = sorted(r.id for r in self.rng.sample(velvet, max(1, len(velvet) * 2 // 5)))
        self.agreement(
            2,
            0,
            ("sample", "style_reference", "train"),
            worldwide=True,
            covers_all=False,
            recording_ids=tuple(listed),
        )
        # Kestrel & Crane: training and style in the Americas only; stems and samples everywhere.
        self.agreement(
            3, 1, ("style_reference", "train"), territories=("BR", "CA", "MX", "US"), currency="USD"
        )
        self.agreement(
            3,
            1,
            ("remix_stems", "sample"),
            worldwide=True,
            currency="USD",
            start_date=date(2025, 3, 1),
        )
        # Tidewater Digital licenses its label-services catalog worldwide.
        self.agreement(
            4, 0, ("remix_stems", "sample", "train"), worldwide=True, end_date=date(2028, 12, 31)
        )

    def recorder(self, party_id: int) -> int | None:
        """Who records a party's consent: its label where it delegated, else itself (None)."""
        delegate = self.delegate.get(party_id)
        return delegate.id if delegate is not None else None

    def consent(self, data: ConsentIn) -> Consent:
        """Append one consent record, recorded by the party or its delegate."""
        self.counts["consents"] += 1
        update = {"recorded_by_id": self.recorder(data.party_id)}
        return registry.record_consent(self.s, data.model_copy(update=update), ACTOR)

    def consents(self) -> None:
        """Opt-ins, opt-outs and silence per person and use, then narrower refusals, revocations."""
        people = self.artists + [w for w in self.writers if w.id not in self.home]
        grants: list[Consent] = []
        for person in self.step("Recording consent", people, len(people)):
            for use in USES:
                roll = self.rng.random()
                since = self.day(date(2025, 1, 1), 300)
                if roll < OPT_IN[use]:
                    constrained = self.rng.random() < 0.08
                    grants.append(
                        self.consent(
                            ConsentIn(
                                party_id=person.id,
                                use=use,
                                effective_from=since,
                                decision="constrained" if constrained else "allowed",
                                terms=CONSTRAINED_TERMS[use] if constrained else None,
                            )
                        )
                    )
                elif roll < OPT_IN[use] + (1 - OPT_IN[use]) * 0.6:
                    self.consent(
                        ConsentIn(
                            party_id=person.id,
                            use=use,
                            decision="not_allowed",
                            effective_from=since,
                        )
                    )
        for rec in self.rng.sample(self.recordings, min(12, len(self.recordings))):
            self.consent(
                ConsentIn(
                    party_id=rec.artists[0].party_id,
                    use=self.rng.choice(("train", "sample", "voice_likeness")),
                    decision="not_allowed",
                    scope="recording",
                    recording_id=rec.id,
                    effective_from=self.day(date(2025, 11, 1), 60),
                    evidence="Artist asked to withhold this recording",
                )
            )
        for work in self.rng.sample(list(self.works.values()), min(4, len(self.works))):
            self.consent(
                ConsentIn(
                    party_id=work.shares[0].party_id,
                    use="sample",
                    decision="not_allowed",
                    scope="work",
                    work_id=work.id,
                    effective_from=self.day(date(2025, 11, 1), 60),
                )
            )
        for person, places in zip(
            self.rng.sample(people, 3), (("FR",), ("AT", "DE"), ("FR",)), strict=True
        ):
            self.consent(
                ConsentIn(
                    party_id=person.id,
                    use="train",
                    decision="not_allowed",
                    territories=places,
                    effective_from=self.day(date(2025, 12, 1), 30),
                )
            )
        revocable = [g for g in grants if g.use in ("train", "voice_likeness")]
        for grant in self.rng.sample(revocable, min(6, len(revocable))):
            registry.revoke_consent(
                self.s,
                grant.id,
                ACTOR,
                effective_from=self.day(date(2026, 2, 1), 40),
                recorded_by_id=self.recorder(grant.party_id),
                evidence="Revoked by the artist in writing",
            )
            self.counts["consents"] += 1
            self.counts["revocations"] += 1


def build_world(
    engine: Engine, *, seed: int = 7, works: int = 300, progress: Progress | None = None
) -> WorldSummary:
    """Register the demo world in one transaction on an empty registry; same seed, same world."""
    started = time.perf_counter()
    with transaction(engine) as s:
        existing = s.scalar(select(func.count()).select_from(Party)) or 0
        if existing:
            raise registry.RegistryError(
                "database", f"already holds {existing} parties; the demo needs an empty registry"
            )
        if progress is not None:
            progress(0, 1, "Reading the music21 corpus")
        rng = Random(seed)
        world = _World(s, rng, corpus_scores(works, rng), progress)
        world.organisations()
        world.people()
        world.delegations()
        world.catalog()
        world.agreements()
        world.consents()
    c = world.counts
    return WorldSummary(
        seed=seed,
        labels=c["label"],
        publishers=c["publisher"],
        distributors=c["distributor"],
        platforms=c["platform"],
        artists=c["artist"],
        songwriters=c["songwriter"],
        works=len(world.works),
        recordings=len(world.recordings),
        agreements=c["agreements"],
        consents=c["consents"],
        revocations=c["revocations"],
        delegations=c["delegations"],
        as_of=AS_OF,
        seconds=round(time.perf_counter() - started, 2),
    )


# --- the summary ---


def summarise(
    engine: Engine, at: datetime, territory: str | None, *, top: int = 5
) -> list[UseSummary]:
    """Per use: how many recordings are usable, and the ``top`` reasons the rest are not."""
    summaries: list[UseSummary] = []
    with session_factory(engine)() as s:
        names = {pid: name for pid, name in s.execute(select(Party.id, Party.name))}
        for use in USES:
            batch = decide_batch(s, use, at, territory)
            grouped = Counter((r.code, r.party_id, r.agreement_id) for r in batch.excluded.values())
            counts = [
                ReasonCount(
                    code=code,
                    subject=(
                        f"{names.get(party, '?')!r} (party {party})"
                        if party is not None
                        else f"agreement {agreement}"
                        if agreement is not None
                        else ""
                    ),
                    count=n,
                    party_id=party,
                    agreement_id=agreement,
                )
                for (code, party, agreement), n in grouped.items()
            ]
            counts.sort(key=lambda rc: (-rc.count, rc.label))
            summaries.append(
                UseSummary(use, at, territory, len(batch), len(batch.allowed), tuple(counts[:top]))
            )
    return summaries


def render_summary(summaries: list[UseSummary]) -> Table:
    """A Rich table: per use, usable recordings and the most frequent reasons the rest are not."""
    title = "Recordings usable per use"
    if summaries:
        first = summaries[0]
        title += f" — {first.territory or 'every territory'}, "
        title += f"{policy.as_instant(first.at):%Y-%m-%d %H:%M} UTC"
    table = Table(title=title, title_justify="left")
    table.add_column("Use", style="bold")
    table.add_column("Usable", justify="right")
    table.add_column("Not usable", justify="right")
    table.add_column("Top reasons (count, first reason per recording)")
    for u in summaries:
        share = f"{u.usable} / {u.recordings}"
        percent = f" ({100 * u.usable / u.recordings:.0f}%)" if u.recordings else ""
        reasons = "\n".join(f"×{r.count:<4} {r.label}" for r in u.top_reasons)
        table.add_row(u.use, share + percent, str(u.excluded), Text(reasons))
    return table
