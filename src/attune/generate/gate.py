"""The prompt gate: naming an artist for style, or remixing a recording, needs their consent.

Naming a registered artist or songwriter (by name or alias) asks to imitate their style, which
needs that party's effective ``style_reference`` opt-in, with no term forbidding use of their
name in prompts. Asking to remix a recording (by ISRC in the text, or explicitly) needs the
consent engine's full ``remix_stems`` decision for it. Public-domain composers are not parties,
so naming Bach passes. Every refusal names the party or recording and the missing consent.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from attune.rights.models import Consent, Party, PartyRole, Recording
from attune.rights.policy import Reason, as_instant, decide, winning_consent
from attune.rights.registry import find_recording

STYLE_ROLES = ("artist", "songwriter", "producer")
PASSING = ("style_consent_allowed", "remix_allowed")
ISRC_IN_TEXT = re.compile(r"\b([A-Z]{2}-?[A-Z0-9]{3}-?\d{2}-?\d{5})\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class GateDecision:
    """Whether a prompt may run, the parties and recordings it named, and every reason."""

    allowed: bool
    prompt: str
    named_parties: tuple[int, ...]
    remixed_recordings: tuple[int, ...]
    reasons: tuple[Reason, ...]

    def refusal(self) -> str:
        """The reasons that refuse, joined into one line (empty when allowed)."""
        return "; ".join(r.message for r in self.reasons if r.code not in PASSING)


def _fold(text: str) -> str:
    """Case- and accent-insensitive form of a name or prompt, spaces collapsed."""
    plain = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in plain if not unicodedata.combining(c))
    return " ".join(plain.casefold().split())


def named_parties(session: Session, prompt: str) -> dict[int, str]:
    """Artists, songwriters and producers whose name or alias appears in the prompt as words."""
    folded = _fold(prompt)
    people = session.scalars(
        select(Party).where(
            Party.id.in_(select(PartyRole.party_id).where(PartyRole.role.in_(STYLE_ROLES)))
        )
    ).all()
    found: dict[int, str] = {}
    for party in people:
        for name in (party.name, *(a.alias for a in party.aliases)):
            key = _fold(name)
            if len(key) >= 3 and re.search(rf"(?<!\w){re.escape(key)}(?!\w)", folded):
                found.setdefault(party.id, name)
    return found


def _style_reason(session: Session, party: Party, said: str, when: datetime,
                  territory: str | None) -> Reason:
    """The style_reference verdict for one named party, as a reason naming the consent record."""
    records = list(
        session.scalars(
            select(Consent).where(
                Consent.party_id == party.id,
                Consent.use == "style_reference",
                Consent.scope == "all",
                Consent.effective_from <= when,
                or_(Consent.effective_until.is_(None), Consent.effective_until > when),
            )
        )
    )
    win = winning_consent(records, territory)
    who = f"{party.name!r} (party {party.id}, named as {said!r})"
    if win is None:
        return Reason("style_consent_missing",
                      f"the prompt names {who}, who has no 'style_reference' consent in effect",
                      party_id=party.id)
    if win.decision == "not_allowed":
        return Reason("style_consent_refused",
                      f"the prompt names {who}, who refused 'style_reference' "
                      f"(consent record {win.id})", party_id=party.id, consent_id=win.id)
    terms = json.loads(win.terms) if win.terms else {}
    if terms.get("no_name_in_prompts"):
        return Reason("style_name_forbidden",
                      f"the prompt names {who}, whose 'style_reference' consent (record {win.id}) "
                      "forbids using their name in prompts", party_id=party.id, consent_id=win.id)
    return Reason("style_consent_allowed",
                  f"{who} opted in to 'style_reference' (consent record {win.id})",
                  party_id=party.id, consent_id=win.id)


def check_prompt(
    session: Session,
    prompt: str,
    *,
    at: datetime | None = None,
    territory: str | None = None,
    remix_of: str | int | None = None,
    licensee_id: int | None = None,
) -> GateDecision:
    """Whether a prompt may run: style consent of named parties, remix consent of recordings."""
    when = as_instant(at)
    reasons: list[Reason] = []
    parties = named_parties(session, prompt)
    for party_id, said in sorted(parties.items()):
        party = session.get(Party, party_id)
        assert party is not None  # found by the query above
        reasons.append(_style_reason(session, party, said, when, territory))
    refs: list[str | int] = [m.group(1) for m in ISRC_IN_TEXT.finditer(prompt)]
    if remix_of is not None:
        refs.append(remix_of)
    recordings: list[Recording] = []
    for ref in refs:
        rec = find_recording(session, ref)
        if rec.id not in {r.id for r in recordings}:
            recordings.append(rec)
    for rec in recordings:
        decision = decide(session, "remix_stems", rec, when, territory, licensee_id=licensee_id)
        if decision.allowed:
            reasons.append(Reason("remix_allowed",
                                  f"recording {rec.id} ({rec.isrc}) may be remixed: "
                                  + "; ".join(r.message for r in decision.reasons)))
        else:
            for r in decision.reasons:
                reasons.append(Reason("remix_consent_missing"
                                      if r.code != "consent_refused" else "remix_consent_refused",
                                      f"remixing recording {rec.id} ({rec.isrc}) needs "
                                      f"'remix_stems' consent: {r.message}",
                                      party_id=r.party_id, agreement_id=r.agreement_id,
                                      consent_id=r.consent_id))
    allowed = all(r.code in PASSING for r in reasons)
    return GateDecision(allowed, prompt, tuple(sorted(parties)), tuple(r.id for r in recordings),
                        tuple(reasons))
