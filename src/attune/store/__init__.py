"""Persistence: database engine and sessions, migrations, and the hash-chained audit log."""

from attune.store.db import Base, database_url, make_engine, transaction

__all__ = ["Base", "database_url", "make_engine", "transaction"]
