"""Dataset manifests: what the consent engine lets a use draw on, signed so it can be proved later.

``build_dataset`` decides one use for the whole catalog (set-based), records every recording
with the reasons it is in or out, hashes each included item's audio and score, and signs the
canonical manifest with Ed25519. ``verify_dataset`` re-checks the hash, the signature, the
stored items and the content. Consent is append-only, so a dataset stays as it was built;
``stale_items`` and ``consent_impact`` find what a later revocation touches: the datasets, the
models trained on them and the outputs those models made.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import CompoundSelect, func, insert, or_, select, union
from sqlalchemy.orm import Session

from attune import __version__
from attune.generate.models import Dataset, DatasetItem, Model
from attune.rights.batch import decide_batch
from attune.rights.identifiers import normalise_territory
from attune.rights.models import (
    Agreement,
    AgreementItem,
    Consent,
    Party,
    PartySetMember,
    Recording,
    RecordingArtist,
    RecordingOwner,
    RecordingPartySet,
    Work,
    WorkShare,
)
from attune.rights.outputs import Output, OutputAttribution
from attune.rights.policy import (
    ALLOWING,
    Reason,
    agreement_gap,
    as_instant,
    decide,
    winning_consent,
)
from attune.rights.records import USE_PATTERN
from attune.rights.registry import NotFound, RegistryError
from attune.store import audit
from attune.store.secrets import create_once

FORMAT = "attune-dataset-manifest/1"
SIGNED_FORMAT = "attune-signed-dataset/1"
ENGINE = {
    "decisions": "attune.rights.batch.decide_batch",
    "reasons": "attune.rights.policy.decide",
    "default": "deny",
    "attune": __version__,
}
KEY_FILE = "dataset-ed25519.pem"
CAPACITY = {"main": "main artist", "featured": "featured artist", "writer": "writer"}
MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$")
CHUNK = 2000


def canonical(manifest: Mapping[str, Any]) -> bytes:
    """The one byte form of a manifest that is hashed and signed (sorted keys, no spaces)."""
    text = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode()


# --- the signing key ---


def default_key_dir() -> Path:
    """``ATTUNE_SIGNING_KEY_DIR`` if set, else ``~/.attune/keys``."""
    return Path(os.environ.get("ATTUNE_SIGNING_KEY_DIR", "~/.attune/keys")).expanduser()


def signing_key(key_dir: Path | None = None) -> Ed25519PrivateKey:
    """Load the local dataset-signing key, creating it (mode 0600) at first use."""
    directory = key_dir or default_key_dir()
    path = directory / KEY_FILE
    if not path.exists():
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        create_once(path, pem)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return key


def public_key_hex(key: Ed25519PrivateKey) -> str:
    """The raw 32-byte public key of a signing key, as hex."""
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw.hex()


# --- scores ---


def _corpus_sha256(path: str) -> str | None:
    """SHA-256 of a music21 corpus file's bytes, or None when the corpus has no such file."""
    from music21 import corpus
    from music21.exceptions21 import CorpusException

    try:
        found = corpus.getWork(path)
    except CorpusException:
        return None
    files = found if isinstance(found, list) else [found]
    if len(files) != 1:
        return None
    return hashlib.sha256(Path(files[0]).read_bytes()).hexdigest()


def score_sha256(source: str | None, cache: dict[str, str | None]) -> str | None:
    """The hash of the score a work's ``music21:<path>[#n]`` source names (None: no such score).

    A multi-tune file hashes whole, whichever tune ``#n`` picks; ``cache`` holds one hash per
    file for the length of one build or check.
    """
    if not source or not source.startswith("music21:"):
        return None
    path = source.removeprefix("music21:").split("#", 1)[0]
    if path not in cache:
        cache[path] = _corpus_sha256(path)
    return cache[path]


# --- building ---


def _touched(session: Session, use: str) -> set[int]:
    """Recordings an item-listing agreement or a recording- or work-scoped consent names.

    Only these can have reasons of their own; every other recording shares the reasons of its
    party set (same owners, artists and writers, hence the same agreements and consents).
    """
    by_recording = select(AgreementItem.recording_id).where(AgreementItem.recording_id.is_not(None))
    by_work = select(Recording.id).join(AgreementItem, AgreementItem.work_id == Recording.work_id)
    consent_recording = select(Consent.recording_id).where(
        Consent.use == use, Consent.recording_id.is_not(None)
    )
    consent_work = (
        select(Recording.id)
        .join(Consent, Consent.work_id == Recording.work_id)
        .where(Consent.use == use)
    )
    stmt: CompoundSelect[int | None] = union(by_recording, by_work, consent_recording, consent_work)
    return {rid for (rid,) in session.execute(stmt) if rid is not None}


def _chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]


def _decided(
    session: Session,
    use: str,
    rid: int,
    when: datetime,
    territory: str | None,
    licensee_id: int | None,
) -> tuple[Reason, ...]:
    """decide()'s reasons for one recording the batch allowed (a disagreement stops the build)."""
    decision = decide(session, use, rid, when, territory, licensee_id=licensee_id)
    if not decision.allowed:
        raise RuntimeError(
            f"recording {rid}: the batch decision allowed {use!r} but decide() refuses "
            f"({decision.reasons[0].message}); nothing was built"
        )
    return decision.reasons


@dataclass(frozen=True)
class _Grants:
    """Per-party grant reasons, worded as decide() words them, for recordings of shared sets.

    A recording no listing agreement and no recording- or work-scoped consent names is decided by
    its party set alone: each owner's first covering agreement (by id) and each person's winning
    catalog-wide consent record. Loading those once per party replaces one decide() (dozens of
    queries) per recording.
    """

    use: str
    when: datetime
    territory: str | None
    names: dict[int, str]
    agreements: dict[int, Reason]
    consents: dict[int, Consent]

    @classmethod
    def load(
        cls,
        session: Session,
        use: str,
        when: datetime,
        territory: str | None,
        licensee_id: int | None,
        probe: Recording,
        checks: Iterable[tuple[str, int | None]],
    ) -> _Grants:
        """Load the agreements, consent records and names of the parties in ``checks``."""
        owners = sorted({pid for role, pid in checks if role == "owner" and pid is not None})
        people = sorted({pid for role, pid in checks if role in CAPACITY and pid is not None})
        names: dict[int, str] = {}
        for chunk in _chunks(sorted({*owners, *people})):
            stmt = select(Party.id, Party.name).where(Party.id.in_(chunk))
            names.update({pid: f"{name!r} (party {pid})" for pid, name in session.execute(stmt)})
        where = f"in {territory}" if territory else "worldwide"
        day = when.date()
        agreements: dict[int, Reason] = {}
        for chunk in _chunks(owners):
            stmt_a = (
                select(Agreement).where(Agreement.licensor_id.in_(chunk)).order_by(Agreement.id)
            )
            for a in session.scalars(stmt_a):
                if a.licensor_id in agreements:
                    continue
                if agreement_gap(a, use, probe, day, territory, licensee_id, None) is None:
                    agreements[a.licensor_id] = Reason(
                        "agreement_covers",
                        f"agreement {a.id} with master owner {names[a.licensor_id]} covers "
                        f"{use!r} {where} on {day.isoformat()}",
                        party_id=a.licensor_id,
                        agreement_id=a.id,
                    )
        records: dict[int, list[Consent]] = {}
        for chunk in _chunks(people):
            stmt_c = select(Consent).where(
                Consent.party_id.in_(chunk),
                Consent.use == use,
                Consent.scope == "all",
                Consent.effective_from <= when,
                or_(Consent.effective_until.is_(None), Consent.effective_until > when),
            )
            for c in session.scalars(stmt_c):
                records.setdefault(c.party_id, []).append(c)
        consents = {
            pid: win
            for pid, found in records.items()
            if (win := winning_consent(found, territory)) is not None
        }
        return cls(use, when, territory, names, agreements, consents)

    def reasons(self, checks: Sequence[tuple[str, int | None]]) -> tuple[Reason, ...]:
        """The grants of one party set's checks, in order; a failing check stops the build."""
        where = f"in {self.territory}" if self.territory else "worldwide"
        out = []
        for role, pid in checks:
            if role == "owner" and pid in self.agreements:
                out.append(self.agreements[pid])
                continue
            win = self.consents.get(pid) if role in CAPACITY and pid is not None else None
            if pid is None or win is None or win.decision not in ALLOWING:
                raise RuntimeError(
                    f"the batch decision allowed {self.use!r} but check {role} of party {pid} "
                    "fails; nothing was built"
                )
            out.append(
                Reason(
                    "consent_allowed" if win.decision == "allowed" else "consent_constrained",
                    f"{CAPACITY[role]} {self.names[pid]} opted in to {self.use!r} {where} "
                    f"(consent record {win.id})" + (" under terms" if win.terms else ""),
                    party_id=pid,
                    consent_id=win.id,
                )
            )
        return tuple(out)


def _grant_reasons(
    session: Session,
    use: str,
    when: datetime,
    territory: str | None,
    licensee_id: int | None,
    allowed: Sequence[int],
) -> dict[int, tuple[Reason, ...]]:
    """The agreements and consent records that let each allowed recording in (decide()'s words).

    decide() itself for the recordings with reasons of their own; party-set composition for the
    rest, so the cost grows with parties, not recordings.
    """
    touched = _touched(session, use)
    reasons = {
        rid: _decided(session, use, rid, when, territory, licensee_id)
        for rid in allowed
        if rid in touched
    }
    shared = [rid for rid in allowed if rid not in touched]
    if not shared:
        return reasons
    set_of: dict[int, int] = {}
    for chunk in _chunks(shared):
        stmt = select(RecordingPartySet.recording_id, RecordingPartySet.party_set_id).where(
            RecordingPartySet.recording_id.in_(chunk)
        )
        set_of.update({rid: sid for rid, sid in session.execute(stmt)})
    checks: dict[int, list[tuple[str, int | None]]] = {}
    member = PartySetMember
    for chunk in _chunks(sorted(set(set_of.values()))):
        stmt_m = (
            select(member.party_set_id, member.role, member.party_id)
            .where(member.party_set_id.in_(chunk))
            .order_by(member.party_set_id, member.position)
        )
        for sid, role, pid in session.execute(stmt_m):
            checks.setdefault(sid, []).append((role, pid))
    probe = session.get(Recording, shared[0])
    assert probe is not None  # decided by the batch a moment ago
    grants = _Grants.load(
        session,
        use,
        when,
        territory,
        licensee_id,
        probe,
        [c for found in checks.values() for c in found],
    )
    by_set = {sid: grants.reasons(found) for sid, found in checks.items()}
    reasons.update({rid: by_set[set_of[rid]] for rid in shared})
    return reasons


def build_dataset(
    session: Session,
    *,
    use: str = "train",
    at: datetime,
    territory: str | None = None,
    name: str | None = None,
    actor: str,
    key: Ed25519PrivateKey | None = None,
    licensee_id: int | None = None,
) -> Dataset:
    """Select what the consent engine allows for ``use``; store, sign and audit the manifest.

    Every recording is recorded, included or not, with its reasons. ``territory`` None means
    everywhere; ``licensee_id`` limits the agreements to one licensee (a platform's own).
    """
    if not USE_PATTERN.match(use):
        raise RegistryError("use", f"{use!r} must be lower-case letters, digits and '_'")
    where = normalise_territory(territory) if territory is not None else None
    if licensee_id is not None and session.get(Party, licensee_id) is None:
        raise RegistryError("licensee_id", f"no party with id {licensee_id}")
    when = as_instant(at)
    signer = key or signing_key()
    batch = decide_batch(session, use, when, where, licensee_id=licensee_id)
    grants = _grant_reasons(session, use, when, where, licensee_id, batch.allowed)
    label = name or f"{use}-{where or 'world'}-{when:%Y-%m-%d}"
    dataset = Dataset(
        name=label[:200],
        use=use,
        at=when,
        territory=where,
        licensee_id=licensee_id,
        created_at=datetime.now(UTC),
        created_by=actor,
        manifest="",
        sha256="",
        signature="",
        public_key=public_key_hex(signer),
    )
    session.add(dataset)
    session.flush()

    included: list[dict[str, Any]] = []
    excluded: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    scores: dict[str, str | None] = {}
    rows = session.execute(
        select(
            Recording.id,
            Recording.isrc,
            Recording.title,
            Recording.work_id,
            Recording.content_hash,
            Work.iswc,
            Work.source,
        )
        .outerjoin(Work, Work.id == Recording.work_id)
        .order_by(Recording.id)
    )
    for rid, isrc, title, work_id, content_hash, iswc, source in rows:
        if rid not in grants and rid not in batch.excluded:
            continue  # registered by another transaction after the decisions were made
        if rid in grants:
            reasons = [r.as_dict() for r in grants[rid]]
            included.append(
                {
                    "recording_id": rid,
                    "isrc": isrc,
                    "work_id": work_id,
                    "iswc": iswc,
                    "title": title,
                    "content_sha256": content_hash,
                    "score_sha256": score_sha256(source, scores),
                    "source": source,
                    "reasons": reasons,
                }
            )
        else:
            reasons = [batch.excluded[rid].as_dict()]
            excluded.append(
                {"recording_id": rid, "isrc": isrc, "work_id": work_id, "reasons": reasons}
            )
        items.append(
            {
                "dataset_id": dataset.id,
                "recording_id": rid,
                "work_id": work_id,
                "included": rid in grants,
                "reasons": audit.canonical_json(reasons),
            }
        )
    manifest = {
        "format": FORMAT,
        "id": dataset.id,
        "name": dataset.name,
        "use": use,
        "at": when.isoformat(),
        "territory": where,
        "licensee_id": licensee_id,
        "created_at": dataset.created_at.isoformat(),
        "created_by": actor,
        "engine": ENGINE,
        "included": included,
        "excluded": excluded,
        "counts": {
            "included": len(included),
            "excluded": len(excluded),
            "excluded_by_code": batch.counts_by_code(),
        },
    }
    body = canonical(manifest)
    dataset.manifest = body.decode()
    dataset.sha256 = hashlib.sha256(body).hexdigest()
    dataset.signature = signer.sign(body).hex()
    for start in range(0, len(items), CHUNK):
        session.execute(insert(DatasetItem), items[start : start + CHUNK])
    session.flush()
    audit.append(
        session,
        actor=actor,
        action="dataset.build",
        entity="dataset",
        entity_id=dataset.id,
        payload=dataset_snapshots(session, [dataset])[0],
    )
    return dataset


# --- reading ---


def get_dataset(session: Session, dataset_id: int) -> Dataset:
    """The dataset with this id."""
    dataset = session.get(Dataset, dataset_id)
    if dataset is None:
        raise NotFound(f"no dataset with id {dataset_id}")
    return dataset


def list_datasets(
    session: Session, licensee_id: int | None = None, limit: int = 1000
) -> Sequence[Dataset]:
    """Datasets in id order, optionally only those built under one licensee's agreements."""
    stmt = select(Dataset).order_by(Dataset.id).limit(limit)
    if licensee_id is not None:
        stmt = stmt.where(Dataset.licensee_id == licensee_id)
    return session.scalars(stmt).all()


def manifest_of(dataset: Dataset) -> dict[str, Any]:
    """The dataset's manifest, parsed."""
    parsed: dict[str, Any] = json.loads(dataset.manifest)
    return parsed


def dataset_snapshots(session: Session, datasets: Sequence[Dataset]) -> list[dict[str, Any]]:
    """Datasets as JSON data with their included and excluded counts (the audit/CLI/API shape)."""
    counts: dict[tuple[int, bool], int] = {}
    ids = [d.id for d in datasets]
    for chunk in _chunks(ids):
        stmt = (
            select(DatasetItem.dataset_id, DatasetItem.included, func.count())
            .where(DatasetItem.dataset_id.in_(chunk))
            .group_by(DatasetItem.dataset_id, DatasetItem.included)
        )
        counts.update(((d, bool(i)), n) for d, i, n in session.execute(stmt))
    return [
        {
            "id": d.id,
            "name": d.name,
            "use": d.use,
            "at": d.at.isoformat(),
            "territory": d.territory,
            "licensee_id": d.licensee_id,
            "created_at": d.created_at.isoformat(),
            "created_by": d.created_by,
            "sha256": d.sha256,
            "signature": d.signature,
            "public_key": d.public_key,
            "included": counts.get((d.id, True), 0),
            "excluded": counts.get((d.id, False), 0),
        }
        for d in datasets
    ]


def signed_manifest(dataset: Dataset) -> dict[str, Any]:
    """The manifest with its hash, signature and public key: checkable without the database."""
    return {
        "format": SIGNED_FORMAT,
        "algorithm": "Ed25519",
        "manifest": manifest_of(dataset),
        "sha256": dataset.sha256,
        "signature": dataset.signature,
        "public_key": dataset.public_key,
    }


def training_works(dataset: Dataset) -> dict[int, list[int]]:
    """Each included work and its included recordings (a work is trained on once, credit split)."""
    works: dict[int, list[int]] = {}
    for item in manifest_of(dataset)["included"]:
        if item["work_id"] is not None:
            works.setdefault(int(item["work_id"]), []).append(int(item["recording_id"]))
    return {w: sorted(r) for w, r in sorted(works.items())}


# --- verifying ---


@dataclass(frozen=True, slots=True)
class Verification:
    """Whether a dataset (or a signed manifest file) checks out, and every problem found."""

    ok: bool
    problems: tuple[str, ...]


def _short(value: str | None) -> str:
    return "none" if value is None else f"{value[:16]}…"


def _signature_problems(body: bytes, sha256: str, signature: str, public_key: str) -> list[str]:
    """Whether the manifest bytes hash to ``sha256`` and carry a valid Ed25519 signature."""
    problems = []
    actual = hashlib.sha256(body).hexdigest()
    if actual != sha256:
        problems.append(
            f"manifest: its SHA-256 is {_short(actual)}, the dataset records {_short(sha256)} "
            "(the manifest text was altered)"
        )
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key)).verify(
            bytes.fromhex(signature), body
        )
    except (ValueError, InvalidSignature):
        problems.append(
            f"signature: does not verify over the manifest with public key {_short(public_key)}"
        )
    return problems


def verify_signed(document: Mapping[str, Any]) -> Verification:
    """Check an exported signed manifest offline: its hash and its Ed25519 signature."""
    try:
        body = canonical(document["manifest"])
        problems = _signature_problems(
            body, str(document["sha256"]), str(document["signature"]), str(document["public_key"])
        )
    except (KeyError, TypeError) as exc:
        problems = [f"document: not a signed dataset manifest (missing or bad {exc})"]
    return Verification(not problems, tuple(problems))


def _header_problems(dataset: Dataset, manifest: Mapping[str, Any]) -> list[str]:
    """Where the manifest's header disagrees with the dataset row it is stored on."""
    expected = {
        "format": FORMAT,
        "id": dataset.id,
        "use": dataset.use,
        "at": dataset.at.isoformat(),
        "territory": dataset.territory,
        "licensee_id": dataset.licensee_id,
    }
    return [
        f"manifest: {field} is {manifest.get(field)!r}, the dataset row says {value!r}"
        for field, value in expected.items()
        if manifest.get(field) != value
    ]


def _item_problems(session: Session, dataset_id: int, manifest: Mapping[str, Any]) -> list[str]:
    """Where the stored items disagree with the manifest's included and excluded lists."""
    listed: dict[int, tuple[int | None, bool, str]] = {}
    for included, key in ((True, "included"), (False, "excluded")):
        for item in manifest.get(key, []):
            reasons = audit.canonical_json(item["reasons"])
            listed[int(item["recording_id"])] = (item.get("work_id"), included, reasons)
    stored = {
        rid: (work_id, bool(included), reasons)
        for rid, work_id, included, reasons in session.execute(
            select(
                DatasetItem.recording_id,
                DatasetItem.work_id,
                DatasetItem.included,
                DatasetItem.reasons,
            ).where(DatasetItem.dataset_id == dataset_id)
        )
    }
    problems = []
    for rid in sorted(listed.keys() | stored.keys()):
        mine, theirs = stored.get(rid), listed.get(rid)
        if mine is None:
            problems.append(f"item recording {rid}: in the manifest but not stored")
        elif theirs is None:
            problems.append(f"item recording {rid}: stored but not in the manifest")
        elif mine[1] != theirs[1]:
            state = "included" if mine[1] else "excluded"
            problems.append(f"item recording {rid}: stored as {state}, the manifest says otherwise")
        elif mine[0] != theirs[0]:
            problems.append(
                f"item recording {rid}: stored with work {mine[0]}, the manifest says {theirs[0]}"
            )
        elif mine[2] != theirs[2]:
            problems.append(f"item recording {rid}: stored reasons differ from the manifest's")
    return problems


def _content_problems(session: Session, manifest: Mapping[str, Any]) -> list[str]:
    """Where an included item's audio or score no longer hashes as the manifest says."""
    items = {int(i["recording_id"]): i for i in manifest.get("included", [])}
    ids = sorted(items)
    current: dict[int, tuple[str, str | None]] = {}
    for chunk in _chunks(ids):
        stmt = select(Recording.id, Recording.isrc, Recording.content_hash).where(
            Recording.id.in_(chunk)
        )
        current.update((rid, (isrc, h)) for rid, isrc, h in session.execute(stmt))
    problems = []
    scores: dict[str, str | None] = {}
    for rid in ids:
        item = items[rid]
        label = f"item recording {rid} ({item.get('isrc')})"
        if rid not in current:
            problems.append(f"{label}: no longer in the registry")
            continue
        isrc, content = current[rid]
        if isrc != item.get("isrc"):
            problems.append(f"{label}: the registry's ISRC is now {isrc}")
        if content != item.get("content_sha256"):
            problems.append(
                f"{label}: content hash is now {_short(content)}, "
                f"the manifest says {_short(item.get('content_sha256'))}"
            )
        score = score_sha256(item.get("source"), scores)
        if score != item.get("score_sha256"):
            problems.append(
                f"{label}: score {item.get('source')} hashes to {_short(score)} now, "
                f"the manifest says {_short(item.get('score_sha256'))}"
            )
    return problems


def verify_dataset(session: Session, dataset_id: int) -> Verification:
    """Check a stored dataset: hash, signature, header, stored items, audio and score hashes."""
    dataset = get_dataset(session, dataset_id)
    body = dataset.manifest.encode()
    problems = _signature_problems(body, dataset.sha256, dataset.signature, dataset.public_key)
    try:
        manifest = manifest_of(dataset)
    except ValueError:
        problems.append("manifest: the stored text is not valid JSON")
        return Verification(False, tuple(problems))
    if not isinstance(manifest, dict):
        problems.append("manifest: the stored text is not a JSON object")
        return Verification(False, tuple(problems))
    try:
        problems += _header_problems(dataset, manifest)
        problems += _item_problems(session, dataset.id, manifest)
        problems += _content_problems(session, manifest)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        problems.append(f"manifest: malformed ({type(exc).__name__}: {exc})")
    return Verification(not problems, tuple(problems))


# --- models ---


def model_snapshot(model: Model) -> dict[str, Any]:
    """A registered model as plain JSON data."""
    return {
        "id": model.id,
        "dataset_id": model.dataset_id,
        "kind": model.kind,
        "params": json.loads(model.params),
        "artifact_sha256": model.artifact_sha256,
        "artifact_path": model.artifact_path,
        "created_at": model.created_at.isoformat(),
        "created_by": model.created_by,
    }


def list_models(session: Session, dataset_id: int | None = None) -> Sequence[Model]:
    """Registered models in id order, optionally only those trained on one dataset."""
    stmt = select(Model).order_by(Model.id)
    if dataset_id is not None:
        stmt = stmt.where(Model.dataset_id == dataset_id)
    return session.scalars(stmt).all()


def register_model(
    session: Session,
    *,
    model_id: str,
    dataset_id: int,
    kind: str,
    params: dict[str, Any],
    artifact_sha256: str,
    artifact_path: str,
    actor: str,
) -> Model:
    """Record a trained model with the dataset (manifest) it was trained on, and audit it."""
    if not MODEL_ID.match(model_id):
        raise RegistryError(
            "model_id", "1-200 letters, digits or . _ : - (a letter or digit first)"
        )
    if session.get(Model, model_id) is not None:
        raise RegistryError("model_id", f"model {model_id!r} is already registered")
    if not re.fullmatch(r"[0-9a-f]{64}", artifact_sha256):
        raise RegistryError("artifact_sha256", "expected 64 lower-case hex digits")
    get_dataset(session, dataset_id)
    model = Model(
        id=model_id,
        dataset_id=dataset_id,
        kind=kind,
        params=audit.canonical_json(params),
        artifact_sha256=artifact_sha256,
        artifact_path=artifact_path,
        created_at=datetime.now(UTC),
        created_by=actor,
    )
    session.add(model)
    session.flush()
    audit.append(
        session,
        actor=actor,
        action="model.register",
        entity="model",
        entity_id=model.id,
        payload=model_snapshot(model),
    )
    return model


# --- revocations after the fact ---


@dataclass(frozen=True, slots=True)
class StaleItem:
    """An included recording the consent engine would now refuse, with the refusal reasons."""

    recording_id: int
    isrc: str
    work_id: int | None
    refusals: tuple[Reason, ...]

    @property
    def reasons(self) -> tuple[str, ...]:
        """The refusals in words."""
        return tuple(r.message for r in self.refusals)

    def as_dict(self) -> dict[str, Any]:
        """The item as JSON data."""
        return {
            "recording_id": self.recording_id,
            "isrc": self.isrc,
            "work_id": self.work_id,
            "reasons": [r.as_dict() for r in self.refusals],
        }


def _isrcs(session: Session, ids: Sequence[int]) -> dict[int, str]:
    found: dict[int, str] = {}
    for chunk in _chunks(ids):
        stmt = select(Recording.id, Recording.isrc).where(Recording.id.in_(chunk))
        found.update({rid: isrc for rid, isrc in session.execute(stmt)})
    return found


def _redecide(
    session: Session, dataset: Dataset, items: Sequence[tuple[int, int | None]], at: datetime
) -> list[tuple[int, int | None, Reason]]:
    """Included items (recording, work) refused at ``at``, with the first refusal of each."""
    if not items:
        return []
    batch = decide_batch(
        session,
        dataset.use,
        at,
        dataset.territory,
        recording_ids=[rid for rid, _ in items],
        licensee_id=dataset.licensee_id,
    )
    return [(rid, wid, batch.excluded[rid]) for rid, wid in items if rid in batch.excluded]


def _included(
    session: Session, dataset_id: int, only: Iterable[int] | None = None
) -> list[tuple[int, int | None]]:
    stmt = (
        select(DatasetItem.recording_id, DatasetItem.work_id)
        .where(DatasetItem.dataset_id == dataset_id, DatasetItem.included.is_(True))
        .order_by(DatasetItem.recording_id)
    )
    rows = [(rid, wid) for rid, wid in session.execute(stmt)]
    if only is None:
        return rows
    keep = set(only)
    return [row for row in rows if row[0] in keep]


def stale_items(session: Session, dataset_id: int, *, at: datetime) -> list[StaleItem]:
    """Included items the engine would refuse at ``at`` (same use, territory and licensee).

    Each carries the engine's first refusal reason. A model trained on a dataset with stale
    items is flagged.
    """
    dataset = get_dataset(session, dataset_id)
    refused = _redecide(session, dataset, _included(session, dataset_id), as_instant(at))
    isrcs = _isrcs(session, [rid for rid, _, _ in refused])
    return [StaleItem(rid, isrcs[rid], wid, (reason,)) for rid, wid, reason in refused]


@dataclass(frozen=True, slots=True)
class ImpactedDataset:
    """A dataset holding items that a party's later refusal or ended agreement now excludes."""

    id: int
    name: str
    use: str
    at: datetime
    sha256: str
    items: tuple[StaleItem, ...]

    def as_dict(self) -> dict[str, Any]:
        """The dataset and its stale items as JSON data."""
        return {
            "id": self.id,
            "name": self.name,
            "use": self.use,
            "at": self.at.isoformat(),
            "sha256": self.sha256,
            "items": [i.as_dict() for i in self.items],
        }


@dataclass(frozen=True, slots=True)
class ImpactedModel:
    """A model trained on an impacted dataset: flagged, with the recordings and reasons."""

    id: str
    dataset_id: int
    kind: str
    recording_ids: tuple[int, ...]
    reasons: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        """The model as JSON data."""
        return {
            "id": self.id,
            "dataset_id": self.dataset_id,
            "kind": self.kind,
            "recording_ids": list(self.recording_ids),
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True, slots=True)
class ImpactedOutput:
    """An AI output made by an impacted model or attributed to an impacted recording or work."""

    id: str
    model: str
    recording_ids: tuple[int, ...]
    work_ids: tuple[int, ...]
    reasons: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        """The output as JSON data."""
        return {
            "id": self.id,
            "model": self.model,
            "recording_ids": list(self.recording_ids),
            "work_ids": list(self.work_ids),
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True, slots=True)
class Impact:
    """What one party's revocations (or ended agreements) touch: datasets, models, outputs."""

    party_id: int
    at: datetime
    datasets: tuple[ImpactedDataset, ...]
    models: tuple[ImpactedModel, ...]
    outputs: tuple[ImpactedOutput, ...]

    def as_dict(self) -> dict[str, Any]:
        """The impact as JSON data."""
        return {
            "party_id": self.party_id,
            "at": self.at.isoformat(),
            "datasets": [d.as_dict() for d in self.datasets],
            "models": [m.as_dict() for m in self.models],
            "outputs": [o.as_dict() for o in self.outputs],
        }


def _party_recordings(party_id: int) -> CompoundSelect[int]:
    """A query of the recordings a party is master owner, artist or writer on."""
    return union(
        select(RecordingOwner.recording_id).where(RecordingOwner.party_id == party_id),
        select(RecordingArtist.recording_id).where(RecordingArtist.party_id == party_id),
        select(Recording.id)
        .join(WorkShare, WorkShare.work_id == Recording.work_id)
        .where(WorkShare.party_id == party_id, WorkShare.role == "writer"),
    )


def _unique(texts: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(texts))


def _party_stale(
    session: Session, dataset: Dataset, recordings: Sequence[int], party_id: int, at: datetime
) -> tuple[StaleItem, ...]:
    """The dataset's included items of the party that are now refused because of that party."""
    refused = _redecide(session, dataset, _included(session, dataset.id, recordings), at)
    isrcs = _isrcs(session, [rid for rid, _, _ in refused])
    items = []
    for rid, wid, _first in refused:
        decision = decide(
            session, dataset.use, rid, at, dataset.territory, licensee_id=dataset.licensee_id
        )
        cited = tuple(r for r in decision.reasons if r.party_id == party_id)
        if not decision.allowed and cited:
            items.append(StaleItem(rid, isrcs[rid], wid, cited))
    return tuple(items)


def _outputs(
    session: Session,
    models: Sequence[ImpactedModel],
    stale: Mapping[int, StaleItem],
) -> tuple[ImpactedOutput, ...]:
    """Outputs made by an impacted model or attributed to a stale recording or its work."""
    by_model = {m.id: m for m in models}
    by_work: dict[int, list[StaleItem]] = {}
    for item in stale.values():
        if item.work_id is not None:
            by_work.setdefault(item.work_id, []).append(item)
    links = (
        select(Output.id)
        .join(OutputAttribution, OutputAttribution.output_id == Output.id)
        .where(
            or_(
                OutputAttribution.recording_id.in_(list(stale)),
                OutputAttribution.work_id.in_(list(by_work)),
            )
        )
    )
    outputs = session.scalars(
        select(Output)
        .where(or_(Output.model.in_(list(by_model)), Output.id.in_(links)))
        .order_by(Output.id)
    ).all()
    found = []
    for out in outputs:
        recordings: list[int] = []
        works: list[int] = []
        reasons: list[str] = []
        model = by_model.get(out.model)
        if model is not None:
            recordings += model.recording_ids
            reasons += model.reasons
        for a in out.attributions:
            if a.recording_id is not None and a.recording_id in stale:
                recordings.append(a.recording_id)
                reasons += stale[a.recording_id].reasons
            if a.work_id is not None and a.work_id in by_work:
                works.append(a.work_id)
                reasons += [r for item in by_work[a.work_id] for r in item.reasons]
        found.append(
            ImpactedOutput(
                out.id,
                out.model,
                tuple(sorted(set(recordings))),
                tuple(sorted(set(works))),
                _unique(reasons),
            )
        )
    return tuple(found)


def consent_impact(session: Session, party_id: int, *, at: datetime) -> Impact:
    """The datasets, models and outputs that hold a party's works which that party (or its
    agreement) no longer allows, each with the reasons citing the party."""
    if session.get(Party, party_id) is None:
        raise NotFound(f"no party with id {party_id}")
    when = as_instant(at)
    rows = session.execute(
        select(DatasetItem.dataset_id, DatasetItem.recording_id)
        .where(
            DatasetItem.included.is_(True),
            DatasetItem.recording_id.in_(_party_recordings(party_id)),
        )
        .order_by(DatasetItem.dataset_id, DatasetItem.recording_id)
    )
    by_dataset: dict[int, list[int]] = {}
    for dataset_id, rid in rows:
        by_dataset.setdefault(dataset_id, []).append(rid)
    datasets: list[ImpactedDataset] = []
    for dataset_id, recordings in by_dataset.items():
        dataset = get_dataset(session, dataset_id)
        items = _party_stale(session, dataset, recordings, party_id, when)
        if items:
            datasets.append(
                ImpactedDataset(
                    dataset.id, dataset.name, dataset.use, dataset.at, dataset.sha256, items
                )
            )
    models = tuple(
        ImpactedModel(
            m.id,
            d.id,
            m.kind,
            tuple(i.recording_id for i in d.items),
            _unique(r for i in d.items for r in i.reasons),
        )
        for d in datasets
        for m in list_models(session, d.id)
    )
    stale = {i.recording_id: i for d in datasets for i in d.items}
    outputs = _outputs(session, models, stale) if stale else ()
    return Impact(party_id, when, tuple(datasets), models, outputs)
