"""Who may touch what: a key acts for its own party and reads or writes only what that party holds.

An admin key passes every check. Each check raises a 403 problem naming what was refused.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from attune.api.problems import ApiError
from attune.rights import registry
from attune.rights.models import Agreement, ApiKey, Recording, Work, WorkShare
from attune.rights.records import AgreementIn, ConsentIn, DelegationIn, RecordingIn, WorkIn


def _refuse(detail: str) -> ApiError:
    return ApiError(403, "party_forbidden", detail)


def _owns(key: ApiKey, rec: Recording) -> bool:
    return key.party_id in {o.party_id for o in rec.owners}


def _holds(key: ApiKey, work: Work) -> bool:
    return key.party_id in {s.party_id for s in work.shares}


def catalog_scope(key: ApiKey) -> int | None:
    """The party whose catalog a listing is limited to; None when the key may read all of it."""
    return None if key.role in ("admin", "platform") else key.party_id


def consent_for(session: Session, key: ApiKey, party_id: int, use: str) -> int | None:
    """The party to record as author of a consent write for ``party_id``; 403 if not allowed.

    An artist writes only its own consent; a rightsholder writes its own, or an artist's where a
    delegation for that use is in effect; an admin writes anyone's (None: as the party itself).
    """
    if key.role == "admin":
        return None
    assert key.party_id is not None  # create_key gives every non-admin key a party
    if key.party_id == party_id:
        return key.party_id
    if key.role != "rightsholder":
        raise _refuse(f"this key records consent only for party {key.party_id}, not {party_id}")
    if registry.delegation_allows(session, party_id, key.party_id, use, registry.now()) is None:
        raise _refuse(
            f"party {key.party_id} holds no delegation from party {party_id} "
            f"to record {use!r} consent"
        )
    return key.party_id


def consent_write(session: Session, key: ApiKey, data: ConsentIn) -> ConsentIn:
    """The consent record to write, authored by the key's party; 403 if the key may not."""
    if key.role != "admin" and data.recorded_by_id not in (None, key.party_id):
        raise _refuse(f"this key records consent as party {key.party_id} only")
    author = consent_for(session, key, data.party_id, data.use)
    return data if author is None else data.model_copy(update={"recorded_by_id": author})


def delegation_write(key: ApiKey, data: DelegationIn) -> None:
    """An artist delegates (or withdraws) only its own consent."""
    if key.role != "admin" and data.principal_id != key.party_id:
        raise _refuse(f"this key delegates only for party {key.party_id}")


def history_scope(key: ApiKey, party_id: int | None, recording: Recording | None) -> int | None:
    """The party a consent-history read is limited to; 403 if the key may not read it.

    An artist reads its own history; a rightsholder its own, or everything bearing on a recording
    it owns; an admin reads anything.
    """
    if key.role == "admin":
        return party_id
    if party_id in (None, key.party_id) and (key.role == "artist" or recording is None):
        return key.party_id
    if key.role == "rightsholder" and recording is not None and _owns(key, recording):
        return party_id
    raise _refuse(f"this key reads consent history only of party {key.party_id}")


def work_write(key: ApiKey, data: WorkIn) -> None:
    """A rightsholder registers only works it writes or publishes."""
    if key.role != "admin" and key.party_id not in {s.party_id for s in data.shares}:
        raise _refuse(f"party {key.party_id} is not a writer or publisher of this work")


def recording_write(key: ApiKey, data: RecordingIn) -> None:
    """A rightsholder registers only recordings it is a master owner of."""
    if key.role != "admin" and key.party_id not in {o.party_id for o in data.owners}:
        raise _refuse(f"party {key.party_id} is not a master owner of this recording")


def agreement_write(session: Session, key: ApiKey, data: AgreementIn) -> None:
    """A rightsholder licenses only as licensor, and only recordings and works it holds."""
    if key.role == "admin":
        return
    if data.licensor_id != key.party_id:
        raise _refuse(f"party {key.party_id} may license only as licensor, not {data.licensor_id}")
    for rid in data.recording_ids:
        rec = session.get(Recording, rid)
        if rec is not None and not _owns(key, rec):
            raise _refuse(f"party {key.party_id} does not own recording {rid}")
    for wid in data.work_ids:
        work = session.get(Work, wid)
        if work is not None and not _holds(key, work):
            raise _refuse(f"party {key.party_id} holds no share of work {wid}")


def recording_read(key: ApiKey, rec: Recording) -> None:
    """A rightsholder reads only recordings it owns; a platform reads any."""
    if catalog_scope(key) is not None and not _owns(key, rec):
        raise _refuse(f"party {key.party_id} does not own recording {rec.id}")


def work_read(key: ApiKey, work: Work) -> None:
    """A rightsholder reads only works it writes or publishes."""
    if catalog_scope(key) is not None and not _holds(key, work):
        raise _refuse(f"party {key.party_id} holds no share of work {work.id}")


def agreement_read(key: ApiKey, agreement: Agreement) -> None:
    """A rightsholder reads only agreements it is licensor or licensee of."""
    if catalog_scope(key) is not None and key.party_id not in (
        agreement.licensor_id,
        agreement.licensee_id,
    ):
        raise _refuse(f"party {key.party_id} is not a party to agreement {agreement.id}")


def works_held(session: Session, party_id: int | None, limit: int) -> Sequence[Work]:
    """Works in id order, only those a party writes or publishes unless ``party_id`` is None."""
    if party_id is None:
        return registry.list_works(session, limit=limit)
    held = select(WorkShare.work_id).where(WorkShare.party_id == party_id)
    return session.scalars(
        select(Work).where(Work.id.in_(held)).order_by(Work.id).limit(limit)
    ).all()


def licensee_scope(key: ApiKey, licensee_id: int | None) -> int | None:
    """The licensee a decision is made for: a platform's own party; an admin may name any or none.

    A platform is told what it may use under its own agreements, never under another licensee's.
    """
    if key.role == "admin":
        return licensee_id
    if licensee_id not in (None, key.party_id):
        raise _refuse(f"this key asks for decisions as licensee {key.party_id} only")
    return key.party_id
