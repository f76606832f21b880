"""Royalty runs at the edge: read the registry, allocate a period, store results, post the ledger.

A run is identified by the hash of everything it reads (usage files, registry, terms, prior
recoupment), so re-running after a crash or with unchanged inputs posts nothing new; the
ledger write is one database transaction, so a run killed midway leaves no trace.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from attune.rights.models import (
    Agreement,
    AgreementItem,
    AgreementModelVersion,
    AgreementTerritory,
    Recording,
    RecordingOwner,
    WorkShare,
)
from attune.rights.outputs import Output, OutputAttribution
from attune.rights.registry import RegistryError, get_agreement, now
from attune.royalties.allocate import ALGORITHM, Allocation, Snapshot, allocate, snapshot
from attune.royalties.ingest import write_parquet
from attune.royalties.ledger import (
    PostResult,
    check_period,
    current_run,
    post_run,
    recoupable_before,
)
from attune.royalties.models import RoyaltyTerms, UsageReport
from attune.royalties.money import to_micro
from attune.store import audit
from attune.store.types import decimal_text

DEFAULT_AI_PUBLISHING = Decimal("0.5")
POLICIES = ("pro_rata", "user_centric")


def data_dir(engine: Engine) -> Path:
    """Where usage Parquet and run results live: ATTUNE_DATA, else beside an SQLite file."""
    chosen = os.environ.get("ATTUNE_DATA")
    if chosen:
        return Path(chosen)
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        db = Path(str(url.database))
        return db.with_name(f"{db.stem}.royalties")
    return Path(".attune") / f"royalties-{url.database or 'default'}"


def snapshot_from_db(session: Session) -> Snapshot:
    """The registry as Arrow tables for the allocation (splits and shares in micro-units)."""
    terms = {t.agreement_id: t for t in session.scalars(select(RoyaltyTerms))}

    def pct(value: Decimal) -> int:
        return to_micro(value)

    agreements = []
    for a in session.scalars(select(Agreement).order_by(Agreement.id)):
        t = terms.get(a.id)
        agreements.append(
            {
                "agreement_id": a.id,
                "licensor_id": a.licensor_id,
                "licensee_id": a.licensee_id,
                "start_date": a.start_date,
                "end_date": a.end_date,
                "worldwide": a.worldwide,
                "covers_all": a.covers_all,
                "ai_share": to_micro(a.ai_revenue_share),
                "minimum_guarantee": to_micro(a.minimum_guarantee),
                "currency": a.currency,
                "catalog_policy": t.catalog_policy if t else "pro_rata",
                "ai_publishing": to_micro(t.ai_publishing_share if t else DEFAULT_AI_PUBLISHING),
                "catalog_publishing": to_micro(t.catalog_publishing_share) if t else 0,
            }
        )
    return snapshot(
        recordings=[
            {"recording_id": i, "isrc": s, "work_id": w}
            for i, s, w in session.execute(select(Recording.id, Recording.isrc, Recording.work_id))
        ],
        owners=[
            {"recording_id": r, "party_id": p, "share": pct(s)}
            for r, p, s in session.execute(
                select(RecordingOwner.recording_id, RecordingOwner.party_id, RecordingOwner.share)
            )
        ],
        work_shares=[
            {"work_id": w, "party_id": p, "role": r, "share": pct(s)}
            for w, p, r, s in session.execute(
                select(WorkShare.work_id, WorkShare.party_id, WorkShare.role, WorkShare.share)
            )
        ],
        outputs=[
            {"output_id": i, "platform_id": p, "model": m}
            for i, p, m in session.execute(select(Output.id, Output.platform_id, Output.model))
        ],
        attributions=[
            {"output_id": o, "recording_id": r, "work_id": w, "share": to_micro(s)}
            for o, r, w, s in session.execute(
                select(
                    OutputAttribution.output_id,
                    OutputAttribution.recording_id,
                    OutputAttribution.work_id,
                    OutputAttribution.share,
                )
            )
        ],
        agreements=agreements,
        territories=[
            {"agreement_id": a, "territory": t, "excluded": x}
            for a, t, x in session.execute(
                select(
                    AgreementTerritory.agreement_id,
                    AgreementTerritory.territory,
                    AgreementTerritory.excluded,
                )
            )
        ],
        items=[
            {"agreement_id": a, "recording_id": r, "work_id": w}
            for a, r, w in session.execute(
                select(
                    AgreementItem.agreement_id, AgreementItem.recording_id, AgreementItem.work_id
                )
            )
        ],
        models=[
            {"agreement_id": a, "model": m}
            for a, m in session.execute(
                select(AgreementModelVersion.agreement_id, AgreementModelVersion.model_version)
            )
        ],
    )


def terms_snapshot(t: RoyaltyTerms) -> dict[str, Any]:
    """An agreement's royalty terms as plain JSON data."""
    return {
        "agreement_id": t.agreement_id,
        "catalog_policy": t.catalog_policy,
        "ai_publishing_share": decimal_text(t.ai_publishing_share),
        "catalog_publishing_share": decimal_text(t.catalog_publishing_share),
    }


def set_terms(
    session: Session,
    agreement_id: int,
    actor: str,
    *,
    catalog_policy: str | None = None,
    ai_publishing_share: Decimal | None = None,
    catalog_publishing_share: Decimal | None = None,
) -> RoyaltyTerms:
    """Set how an agreement's money is divided (catalog policy, publishing shares); audited."""
    get_agreement(session, agreement_id)
    if catalog_policy is not None and catalog_policy not in POLICIES:
        raise RegistryError("catalog_policy", f"{catalog_policy!r} is not one of {POLICIES}")
    for name, share in (
        ("ai_publishing_share", ai_publishing_share),
        ("catalog_publishing_share", catalog_publishing_share),
    ):
        if share is not None and not (0 <= share <= 1):
            raise RegistryError(name, f"{share} is not between 0 and 1")
        if share is not None and share != share.quantize(Decimal("0.000001")):
            raise RegistryError(name, f"{share} has more than six decimal places")
    terms = session.get(RoyaltyTerms, agreement_id)
    if terms is None:
        terms = RoyaltyTerms(
            agreement_id=agreement_id,
            catalog_policy="pro_rata",
            ai_publishing_share=DEFAULT_AI_PUBLISHING,
            catalog_publishing_share=Decimal(0),
            updated_at=now(),
        )
        session.add(terms)
    if catalog_policy is not None:
        terms.catalog_policy = catalog_policy
    if ai_publishing_share is not None:
        terms.ai_publishing_share = ai_publishing_share
    if catalog_publishing_share is not None:
        terms.catalog_publishing_share = catalog_publishing_share
    terms.updated_at = now()
    session.flush()
    audit.append(
        session,
        actor=actor,
        action="royalties.terms",
        entity="royalty_terms",
        entity_id=agreement_id,
        payload=terms_snapshot(terms),
    )
    return terms


def active_reports(session: Session, period: str) -> list[UsageReport]:
    """The usage reports that stand for a period (superseded ones excluded), in id order."""
    return list(
        session.scalars(
            select(UsageReport)
            .where(UsageReport.period == period, UsageReport.status == "active")
            .order_by(UsageReport.id)
        )
    )


@dataclass(frozen=True, slots=True)
class RunResult:
    """A run's outcome: the ledger effect and the allocation's summary figures."""

    period: str
    booked_period: str
    post: PostResult
    input_hash: str
    summary: dict[str, Any]


def input_hash(period: str, shas: list[str], snap_digest: str, recoup: dict[int, int]) -> str:
    """The identity of a run: every input that can change its result."""
    body = json.dumps([ALGORITHM, period, sorted(shas), snap_digest, sorted(recoup.items())])
    return hashlib.sha256(body.encode()).hexdigest()


def store_allocation(base: Path, rel: str, allocation: Allocation) -> None:
    """Write a run's pools and leaves as Parquet (atomically, file by file)."""
    write_parquet(allocation.pools, base / rel / "pools.parquet")
    write_parquet(allocation.leaves, base / rel / "leaves.parquet")
    write_parquet(allocation.coverage, base / rel / "coverage.parquet")


def run_period(
    session: Session,
    base: Path,
    period: str,
    actor: str,
    *,
    into: str | None = None,
    threads: int | None = None,
    memory_limit: str | None = None,
) -> RunResult:
    """Allocate a usage period and make it the standing result in the ledger (idempotent)."""
    check_period(period)
    booked = check_period(into) if into else period
    reports = active_reports(session, period)
    snap = snapshot_from_db(session)
    recoup = recoupable_before(session, period)
    key = input_hash(period, [r.file_sha256 for r in reports], snap.digest(), recoup)
    standing = current_run(session, period)
    if standing is not None and standing.input_hash == key:
        post = PostResult(standing.id, False, None, 0, 0)
        return RunResult(period, standing.booked_period, post, key, json.loads(standing.summary))
    allocation = allocate(
        [str(base / r.path) for r in reports],
        snap,
        period,
        recoup,
        threads=threads,
        memory_limit=memory_limit,
    )
    rel = f"runs/period={period}/{key[:16]}"
    store_allocation(base, rel, allocation)
    summary = {
        **allocation.summary,
        "reports": [r.id for r in reports],
        "totals": pool_totals(allocation),
    }
    post = post_run(
        session,
        allocation,
        input_hash=key,
        result_hash=allocation.digest(),
        path=rel,
        booked_period=booked,
        summary=json.dumps(summary),
        actor=actor,
    )
    return RunResult(period, booked, post, key, summary)


def pool_totals(allocation: Allocation) -> dict[str, dict[str, int]]:
    """Per source and currency, the pooled amount in minor units."""
    out: dict[str, dict[str, int]] = {}
    for p in allocation.pools.to_pylist():
        cur = out.setdefault(p["source"], {})
        cur[p["currency"]] = cur.get(p["currency"], 0) + int(p["amount"])
    return out
