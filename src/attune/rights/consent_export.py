"""Export each recording's consent as a TDM·AI declaration or a CAWG training-mining assertion.

Both formats are derived from :func:`attune.rights.policy.decide`, so they say exactly what the
consent gate would answer: a use is declared allowed only when an agreement covers it and every
artist and writer opted in (default deny). Decisions are taken worldwide (territory None: only
worldwide grants count, any territorial refusal denies) and for any licensee. Mapping (every listed
Attune use must be allowed):

- TDM·AI ``train-ai`` and ``train-genai``; CAWG ``cawg.ai_training`` and
  ``cawg.ai_generative_training``: ``train``.
- TDM·AI ``ai-use``; CAWG ``cawg.ai_inference``: ``style_reference``, ``voice_likeness``,
  ``remix_stems`` and ``sample`` (the recording as input to a trained model).
- CAWG ``cawg.data_mining``: ``data_mining``.
- TDM·AI ``all``: every use above.
- CAWG ``attune.<use>`` (custom entries): that one Attune use.

A use allowed under consent terms is ``constrained`` in CAWG (terms in ``constraint_info``) and
``"false"`` in TDM·AI, which has no way to carry terms. TDM·AI declarations are bound to an ISCC;
Attune does not compute one, so the declaration names the recording by ISRC and content hash under
the non-standard ``x-attune`` key, with every decision's reasons (agreement and consent record ids).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from attune.rights import registry
from attune.rights.models import USES, Recording
from attune.rights.policy import Decision, as_instant, decide
from attune.store.audit import canonical_json

__all__ = ["cawg_training_mining", "iter_tdmai_declarations", "tdmai_declaration"]

TDMAI_VERSION = "1.0"
DATA_MINING = "data_mining"
INFERENCE_USES = ("style_reference", "voice_likeness", "remix_stems", "sample")
TDMAI_FLAGS: dict[str, tuple[str, ...]] = {
    "train-ai": ("train",),
    "train-genai": ("train",),
    "ai-use": INFERENCE_USES,
}
CAWG_ENTRIES: dict[str, tuple[str, ...]] = {
    "cawg.ai_generative_training": ("train",),
    "cawg.ai_training": ("train",),
    "cawg.ai_inference": INFERENCE_USES,
    "cawg.data_mining": (DATA_MINING,),
}
EXPORTED_USES = tuple(dict.fromkeys((*USES, DATA_MINING)))
ISCC_NOTE = (
    "Attune does not compute an ISCC (ISO 24138); the recording is named by ISRC and content "
    "hash. Add an 'iscc' before submitting this declaration to a TDM·AI registry."
)


def _recording(session: Session, recording: Recording | int | str) -> Recording:
    if isinstance(recording, Recording):
        return recording
    return registry.find_recording(session, recording)


def _decisions(session: Session, rec: Recording, at: datetime) -> dict[str, Decision]:
    return {use: decide(session, use, rec, at) for use in EXPORTED_USES}


def _unconditional(decisions: Sequence[Decision]) -> bool:
    return all(d.allowed and not d.terms for d in decisions)


def _tdmai(rec: Recording, at: datetime, decisions: dict[str, Decision]) -> dict[str, Any]:
    flags = {
        key: str(_unconditional([decisions[u] for u in uses])).lower()
        for key, uses in TDMAI_FLAGS.items()
    }
    return {
        "version": TDMAI_VERSION,
        "intent": "activate",
        "all": str(_unconditional(list(decisions.values()))).lower(),
        **flags,
        "x-attune": {
            "recording_id": rec.id,
            "isrc": rec.isrc,
            "content_hash": rec.content_hash,
            "iscc": None,
            "note": ISCC_NOTE,
            "at": at.isoformat(),
            "territory": None,
            "uses": {
                use: {
                    "allowed": d.allowed,
                    "reasons": [r.as_dict() for r in d.reasons],
                    "terms": list(d.terms),
                }
                for use, d in decisions.items()
            },
        },
    }


def tdmai_declaration(
    session: Session, recording: Recording | int | str, at: datetime | date | None = None
) -> dict[str, Any]:
    """A TDM·AI-style declaration of one recording's consent at ``at`` (default now).

    ``recording`` is a Recording, or its id or ISRC. The usage flags are ``"true"`` only where
    every mapped use is allowed without terms.
    """
    rec = _recording(session, recording)
    when = as_instant(at)
    return _tdmai(rec, when, _decisions(session, rec, when))


def _cawg_entry(decisions: Sequence[Decision]) -> dict[str, str]:
    if not all(d.allowed for d in decisions):
        return {"use": "notAllowed"}
    terms = [t for d in decisions for t in d.terms]
    if terms:
        return {"use": "constrained", "constraint_info": canonical_json(terms)}
    return {"use": "allowed"}


def cawg_training_mining(
    session: Session, recording: Recording | int | str, at: datetime | date | None = None
) -> dict[str, Any]:
    """The data of a ``cawg.training-mining`` assertion (CAWG v1.1) for one recording.

    The four ``cawg.`` entries follow the module's mapping; an ``attune.<use>`` entry per Attune
    use keeps the detail the standard entries lack (voice likeness, stems, ...).
    """
    rec = _recording(session, recording)
    decisions = _decisions(session, rec, as_instant(at))
    entries = {key: _cawg_entry([decisions[u] for u in uses]) for key, uses in CAWG_ENTRIES.items()}
    entries |= {f"attune.{use}": _cawg_entry([decisions[use]]) for use in USES}
    return {"entries": entries}


def iter_tdmai_declarations(
    session: Session, at: datetime | date | None = None, batch: int = 500
) -> Iterator[dict[str, Any]]:
    """One TDM·AI declaration per recording, in id order, all as of the same instant."""
    when = as_instant(at)
    last = 0
    while True:
        recs = session.scalars(
            select(Recording).where(Recording.id > last).order_by(Recording.id).limit(batch)
        ).all()
        if not recs:
            return
        for rec in recs:
            yield _tdmai(rec, when, _decisions(session, rec, when))
        last = recs[-1].id
