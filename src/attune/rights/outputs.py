"""AI-output registry: which model made an output, and how much each training item shaped it.

An output's attribution shares over recordings and works are Decimal fractions that sum to
exactly 1; royalties pay through them without needing to know how they were computed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from pydantic import model_validator as _model_validator
from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from attune.rights.models import Party, Recording, Work
from attune.rights.registry import RegistryError, find_recording, find_work, now
from attune.store import audit
from attune.store.db import Base
from attune.store.types import Micro, UtcDateTime, decimal_text

ONE = Decimal(1)
OUTPUT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")
ISRC_SHAPE = re.compile(r"^[A-Z]{2}[A-Z0-9]{3}[0-9]{7}$")


class Output(Base):
    """An AI-generated output: its id, the model and platform that made it, and its prompt."""

    __tablename__ = "outputs"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    model: Mapped[str] = mapped_column(String(200))
    platform_id: Mapped[int] = mapped_column(ForeignKey("parties.id"), index=True)
    prompt: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())

    attributions: Mapped[list[OutputAttribution]] = relationship(
        cascade="all, delete-orphan", order_by="OutputAttribution.position", lazy="selectin"
    )


class OutputAttribution(Base):
    """The share (a fraction of 1) of an output attributed to one recording or one work."""

    __tablename__ = "output_attributions"
    __table_args__ = (
        CheckConstraint("(recording_id IS NULL) <> (work_id IS NULL)", name="one_target"),
        Index("ix_output_attributions_recording", "recording_id"),
        Index("ix_output_attributions_work", "work_id"),
    )

    output_id: Mapped[str] = mapped_column(ForeignKey("outputs.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    recording_id: Mapped[int | None] = mapped_column(ForeignKey("recordings.id"))
    work_id: Mapped[int | None] = mapped_column(ForeignKey("works.id"))
    share: Mapped[Decimal] = mapped_column(Micro())


class AttributionIn(BaseModel):
    """One attribution: a recording or a work, and its fraction of the output (0 < share <= 1)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    recording_id: int | None = None
    work_id: int | None = None
    share: Decimal = Field(gt=0, le=1, decimal_places=6)

    @_model_validator(mode="after")
    def _one_target(self) -> AttributionIn:
        if (self.recording_id is None) == (self.work_id is None):
            raise ValueError("recording_id: name exactly one of recording_id and work_id")
        return self


class OutputIn(BaseModel):
    """An AI output to register; attribution shares must sum to exactly 1."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(description="output id, not shaped like an ISRC (usage reports mix both)")
    model: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    platform_id: int = Field(description="the party running the model (the AI licensee)")
    prompt: str | None = Field(default=None, max_length=20000)
    attributions: tuple[AttributionIn, ...] = Field(min_length=1)

    @_model_validator(mode="after")
    def _coherent(self) -> OutputIn:
        if not OUTPUT_ID.match(self.id):
            raise ValueError(
                "id: 1-100 letters, digits or . _ : - (starting with a letter or digit)"
            )
        if ISRC_SHAPE.match(self.id.replace("-", "").upper()):
            raise ValueError(
                f"id: {self.id!r} is shaped like an ISRC; usage reports could not tell them apart"
            )
        total = sum((a.share for a in self.attributions), Decimal(0))
        if total != ONE:
            raise ValueError(f"attributions: shares sum to {total}, not exactly 1")
        targets = [(a.recording_id, a.work_id) for a in self.attributions]
        if len(targets) != len(set(targets)):
            raise ValueError("attributions: a recording or work is listed twice")
        return self


def output_snapshot(o: Output) -> dict[str, Any]:
    """An output as plain JSON data (the audit payload and the CLI/API shape)."""
    return {
        "id": o.id,
        "model": o.model,
        "platform_id": o.platform_id,
        "prompt": o.prompt,
        "created_at": o.created_at.isoformat(),
        "attributions": [
            {"recording_id": a.recording_id, "work_id": a.work_id, "share": decimal_text(a.share)}
            for a in o.attributions
        ],
    }


def _same(o: Output, data: OutputIn) -> bool:
    mine = [(a.recording_id, a.work_id, a.share) for a in o.attributions]
    theirs = [(a.recording_id, a.work_id, a.share) for a in data.attributions]
    return (o.model, o.platform_id, o.prompt, mine) == (
        data.model,
        data.platform_id,
        data.prompt,
        theirs,
    )


def get_output(session: Session, output_id: str) -> Output:
    """The output with this id."""
    o = session.get(Output, output_id)
    if o is None:
        raise LookupError(f"no output with id {output_id!r}")
    return o


def list_outputs(
    session: Session, platform_id: int | None = None, limit: int = 1000
) -> Sequence[Output]:
    """Outputs in id order, optionally only one platform's."""
    stmt = select(Output).order_by(Output.id).limit(limit)
    if platform_id is not None:
        stmt = stmt.where(Output.platform_id == platform_id)
    return session.scalars(stmt).all()


def add_output(session: Session, data: OutputIn, actor: str) -> Output:
    """Register an output with its attributions and audit it; its references must exist."""
    if session.get(Output, data.id) is not None:
        raise RegistryError("id", f"output {data.id!r} is already registered")
    if session.get(Party, data.platform_id) is None:
        raise RegistryError("platform_id", f"no party with id {data.platform_id}")
    for i, a in enumerate(data.attributions):
        if a.recording_id is not None and session.get(Recording, a.recording_id) is None:
            raise RegistryError(f"attributions[{i}].recording_id", f"no recording {a.recording_id}")
        if a.work_id is not None and session.get(Work, a.work_id) is None:
            raise RegistryError(f"attributions[{i}].work_id", f"no work with id {a.work_id}")
    out = Output(
        id=data.id,
        model=data.model,
        platform_id=data.platform_id,
        prompt=data.prompt,
        created_at=now(),
        attributions=[
            OutputAttribution(
                position=i, recording_id=a.recording_id, work_id=a.work_id, share=a.share
            )
            for i, a in enumerate(data.attributions)
        ],
    )
    session.add(out)
    session.flush()
    audit.append(
        session,
        actor=actor,
        action="output.add",
        entity="output",
        entity_id=out.id,
        payload=output_snapshot(out),
    )
    return out


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What an import did: outputs added, and identical ones already present and skipped."""

    added: tuple[str, ...]
    skipped: tuple[str, ...]


class OutputImportError(ValueError):
    """An import refused as a whole; every problem names its file, record index and field."""

    def __init__(self, problems: Sequence[str]) -> None:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(problems[0] + more)
        self.problems = tuple(problems)


def _resolve(session: Session, raw: dict[str, Any]) -> dict[str, Any]:
    """Let an import name attributions by ISRC or ISWC instead of registry ids."""
    fixed = dict(raw)
    atts = []
    for a in raw.get("attributions") or []:
        a = dict(a) if isinstance(a, dict) else a
        if isinstance(a, dict) and "isrc" in a:
            a["recording_id"] = find_recording(session, str(a.pop("isrc"))).id
        if isinstance(a, dict) and "iswc" in a:
            a["work_id"] = find_work(session, str(a.pop("iswc"))).id
        atts.append(a)
    if "attributions" in raw:
        fixed["attributions"] = atts
    return fixed


def import_outputs(session: Session, path: Path, actor: str) -> ImportResult:
    """Import outputs from a JSON list (or {"outputs": [...]}); all or nothing.

    Records identical to ones already registered are skipped, so a generation engine may send
    the same file twice; a record that differs from a registered one is refused.
    """
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise OutputImportError([f"{path}:{exc.lineno}: not valid JSON ({exc.msg})"]) from exc
    records = doc.get("outputs") if isinstance(doc, dict) else doc
    if not isinstance(records, list):
        raise OutputImportError([f'{path}: expected a list of outputs or {{"outputs": [...]}}'])
    problems: list[str] = []
    valid: list[tuple[int, OutputIn]] = []
    for i, raw in enumerate(records):
        where = f"{path}: outputs[{i}]"
        try:
            if not isinstance(raw, dict):
                raise ValueError("not an object")
            valid.append((i, OutputIn.model_validate(_resolve(session, raw))))
        except ValidationError as exc:
            for e in exc.errors():
                loc = ".".join(str(p) for p in e["loc"])
                msg = str(e["msg"]).removeprefix("Value error, ")
                problems.append(f"{where}.{loc}: {msg}" if loc else f"{where}: {msg}")
        except (LookupError, ValueError) as exc:
            problems.append(f"{where}: {exc}")
    seen: set[str] = set()
    added: list[str] = []
    skipped: list[str] = []
    for i, data in valid:
        if data.id in seen:
            problems.append(f"{path}: outputs[{i}].id: {data.id!r} appears twice in the file")
            continue
        seen.add(data.id)
        existing = session.get(Output, data.id)
        if existing is not None:
            if _same(existing, data):
                skipped.append(data.id)
            else:
                problems.append(
                    f"{path}: outputs[{i}].id: {data.id!r} is registered with different content"
                )
            continue
        try:
            add_output(session, data, actor)
            added.append(data.id)
        except RegistryError as exc:
            problems.append(f"{path}: outputs[{i}].{exc.field}: {exc.message}")
    if problems:
        raise OutputImportError(problems)
    return ImportResult(tuple(added), tuple(skipped))
