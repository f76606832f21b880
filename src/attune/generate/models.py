"""Dataset and model tables: signed training-set manifests, their items, and the models on them.

A dataset row keeps its manifest as canonical JSON text with the text's SHA-256, an Ed25519
signature over it and the public key; its items repeat the manifest's decisions one row per
recording so that "which datasets hold this recording" is one indexed query.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from attune.store.db import Base
from attune.store.types import UtcDateTime


class Dataset(Base):
    """A training (or other use) set decided by the consent engine at one instant, signed."""

    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    use: Mapped[str] = mapped_column(String(40))
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    territory: Mapped[str | None] = mapped_column(String(2))
    licensee_id: Mapped[int | None] = mapped_column(ForeignKey("parties.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_by: Mapped[str] = mapped_column(String(200))
    manifest: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(String(128))
    public_key: Mapped[str] = mapped_column(String(64))


class DatasetItem(Base):
    """One recording's place in a dataset: included or not, and the decision's reasons (JSON)."""

    __tablename__ = "dataset_items"
    __table_args__ = (Index("ix_dataset_items_recording", "recording_id", "dataset_id"),)

    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), primary_key=True)
    recording_id: Mapped[int] = mapped_column(ForeignKey("recordings.id"), primary_key=True)
    work_id: Mapped[int | None] = mapped_column(ForeignKey("works.id"))
    included: Mapped[bool] = mapped_column(Boolean)
    reasons: Mapped[str] = mapped_column(Text)


class Model(Base):
    """A trained model: the dataset (manifest) it was trained on, and its artifact's hash."""

    __tablename__ = "models"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), index=True)
    kind: Mapped[str] = mapped_column(String(100))
    params: Mapped[str] = mapped_column(Text)
    artifact_sha256: Mapped[str] = mapped_column(String(64))
    artifact_path: Mapped[str] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    created_by: Mapped[str] = mapped_column(String(200))
