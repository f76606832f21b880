"""Validated, immutable inputs of every registry write, shared by the CLI, the API and importers."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from attune.rights.identifiers import (
    normalise_ipi_name,
    normalise_isni,
    normalise_isrc,
    normalise_iswc,
    normalise_territories,
)

HUNDRED = Decimal(100)
USE_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,39}$")

Role = Literal["artist", "songwriter", "producer", "label", "publisher", "distributor", "platform"]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


def _use(value: str) -> str:
    if not USE_PATTERN.match(value):
        raise ValueError(
            f"use {value!r} must be lower-case letters, digits and '_' (e.g. train, sample)"
        )
    return value


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Use = Annotated[str, AfterValidator(_use)]
Instant = Annotated[datetime, AfterValidator(_aware)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PartyIn(_Frozen):
    """A person or organisation to register."""

    name: Name
    kind: Literal["person", "organisation"] = "person"
    roles: tuple[Role, ...] = ()
    isni: str | None = None
    ipi: str | None = Field(default=None, description="IPI name number (11 digits)")
    aliases: tuple[Name, ...] = ()

    @field_validator("isni")
    @classmethod
    def _isni(cls, v: str | None) -> str | None:
        return normalise_isni(v) if v else None

    @field_validator("ipi")
    @classmethod
    def _ipi(cls, v: str | None) -> str | None:
        return normalise_ipi_name(v) if v else None

    @field_validator("roles")
    @classmethod
    def _roles(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted(set(v)))


class ShareIn(_Frozen):
    """A writer's or publisher's share of a work, in percent."""

    party_id: int
    role: Literal["writer", "publisher"] = "writer"
    share: Decimal = Field(gt=0, le=100, decimal_places=6)


class WorkIn(_Frozen):
    """A composition to register; its shares must total exactly 100%."""

    title: Title
    iswc: str | None = None
    shares: tuple[ShareIn, ...]
    source: str | None = Field(default=None, max_length=500)

    @field_validator("iswc")
    @classmethod
    def _iswc(cls, v: str | None) -> str | None:
        return normalise_iswc(v) if v else None

    @model_validator(mode="after")
    def _total(self) -> WorkIn:
        if not any(s.role == "writer" for s in self.shares):
            raise ValueError("shares: a work needs at least one writer")
        total = sum((s.share for s in self.shares), Decimal(0))
        if total != HUNDRED:
            raise ValueError(f"shares: writer and publisher shares total {total}%, not 100%")
        keys = [(s.party_id, s.role) for s in self.shares]
        if len(keys) != len(set(keys)):
            raise ValueError("shares: a party appears twice in the same role")
        return self


class ArtistIn(_Frozen):
    """A main or featured artist on a recording."""

    party_id: int
    role: Literal["main", "featured"] = "main"


class OwnerIn(_Frozen):
    """A master owner's share of a recording, in percent."""

    party_id: int
    share: Decimal = Field(gt=0, le=100, decimal_places=6)


class RecordingIn(_Frozen):
    """A master recording to register; master owner shares must total exactly 100%."""

    title: Title
    isrc: str
    duration_ms: int | None = Field(default=None, ge=0)
    work_id: int | None = None
    artists: tuple[ArtistIn, ...] = ()
    owners: tuple[OwnerIn, ...]
    content_hash: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    contains_ai: Literal["All", "Partly", "None", "Undeclared"] | None = None

    @field_validator("isrc")
    @classmethod
    def _isrc(cls, v: str) -> str:
        return normalise_isrc(v)

    @model_validator(mode="after")
    def _total(self) -> RecordingIn:
        total = sum((o.share for o in self.owners), Decimal(0))
        if total != HUNDRED:
            raise ValueError(f"owners: master owner shares total {total}%, not 100%")
        if len({o.party_id for o in self.owners}) != len(self.owners):
            raise ValueError("owners: a party is listed twice")
        if len({a.party_id for a in self.artists}) != len(self.artists):
            raise ValueError("artists: a party is listed twice")
        return self


class AgreementIn(_Frozen):
    """An upfront licence: who licenses what to whom, for which uses, where and when."""

    licensor_id: int
    licensee_id: int
    uses: tuple[Use, ...] = Field(min_length=1)
    worldwide: bool = False
    territories: tuple[str, ...] = ()
    excluded_territories: tuple[str, ...] = ()
    start_date: date
    end_date: date | None = None
    ai_revenue_share: Decimal = Field(default=Decimal(0), ge=0, le=1, decimal_places=6)
    minimum_guarantee: Decimal = Field(default=Decimal(0), ge=0, decimal_places=6)
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")
    model_versions: tuple[Annotated[str, StringConstraints(min_length=1, max_length=200)], ...] = ()
    covers_all: bool = True
    recording_ids: tuple[int, ...] = ()
    work_ids: tuple[int, ...] = ()
    reference: str | None = Field(default=None, max_length=200)

    @field_validator("territories", "excluded_territories")
    @classmethod
    def _territories(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return normalise_territories(v)

    @field_validator("uses")
    @classmethod
    def _uses(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted(set(v)))

    @model_validator(mode="after")
    def _coherent(self) -> AgreementIn:
        if self.worldwide and self.territories:
            raise ValueError("territories: a worldwide agreement lists exclusions, not territories")
        if not self.worldwide and not self.territories:
            raise ValueError("territories: give a territory list or mark the agreement worldwide")
        if self.excluded_territories and not self.worldwide:
            raise ValueError("excluded_territories: only a worldwide agreement has exclusions")
        if self.end_date is not None and self.end_date < self.start_date:
            raise ValueError("end_date: the agreement ends before it starts")
        if self.licensor_id == self.licensee_id:
            raise ValueError("licensee_id: licensor and licensee are the same party")
        if self.covers_all and (self.recording_ids or self.work_ids):
            raise ValueError("covers_all: an agreement covering everything lists no items")
        if not self.covers_all and not (self.recording_ids or self.work_ids):
            raise ValueError("recording_ids: an agreement that does not cover all lists its items")
        return self


class ConsentIn(_Frozen):
    """One consent record: a party's choice for one use of all its works, a recording or a work."""

    party_id: int
    use: Use
    decision: Literal["allowed", "not_allowed", "constrained"]
    scope: Literal["all", "recording", "work"] = "all"
    recording_id: int | None = None
    work_id: int | None = None
    terms: dict[str, Any] | None = None
    effective_from: Instant | None = None
    effective_until: Instant | None = None
    territories: tuple[str, ...] = ()
    recorded_by_id: int | None = None
    evidence: str | None = Field(default=None, max_length=5000)
    supersedes_id: int | None = None

    @field_validator("territories")
    @classmethod
    def _territories(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return normalise_territories(v)

    @model_validator(mode="after")
    def _coherent(self) -> ConsentIn:
        if self.scope == "recording" and (self.recording_id is None or self.work_id is not None):
            raise ValueError("recording_id: a recording-scoped consent names one recording")
        if self.scope == "work" and (self.work_id is None or self.recording_id is not None):
            raise ValueError("work_id: a work-scoped consent names one work")
        if self.scope == "all" and (self.recording_id is not None or self.work_id is not None):
            raise ValueError("scope: a consent for all works names no recording or work")
        if self.decision == "constrained" and not self.terms:
            raise ValueError("terms: a constrained consent states its terms")
        if self.decision != "constrained" and self.terms:
            raise ValueError("terms: only a constrained consent carries terms")
        if (
            self.effective_from is not None
            and self.effective_until is not None
            and self.effective_until <= self.effective_from
        ):
            raise ValueError("effective_until: must be later than effective_from")
        return self


class DelegationIn(_Frozen):
    """Lets a delegate (e.g. a label) record consent for a principal (e.g. its artist)."""

    principal_id: int
    delegate_id: int
    use: Use | None = None
    granted: bool = True
    effective_from: Instant | None = None
    effective_until: Instant | None = None
    evidence: str | None = Field(default=None, max_length=5000)

    @model_validator(mode="after")
    def _coherent(self) -> DelegationIn:
        if self.principal_id == self.delegate_id:
            raise ValueError("delegate_id: a party cannot delegate to itself")
        return self
