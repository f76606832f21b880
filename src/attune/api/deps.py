"""Request dependencies: one database transaction per request, and who is calling with what role."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from attune.api.keys import authenticate
from attune.api.problems import ApiError
from attune.rights.models import ApiKey
from attune.store.db import transaction

_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="att_<prefix>_<secret>")
_bearer = HTTPBearer(auto_error=False, description="the same key as a bearer token")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="attune"'}


def _session(request: Request) -> Iterator[Session]:
    """One transaction per request: committed before the response is sent, rolled back on error."""
    with transaction(request.app.state.engine) as session:
        yield session


# scope="function": commit (or roll back) when the route returns, before the response goes out,
# so a client never sees 2xx for a write that then failed to commit.
DbSession = Annotated[Session, Depends(_session, scope="function")]


def _caller(
    session: DbSession,
    header: Annotated[str | None, Depends(_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiKey:
    """The live key presented in ``X-API-Key`` or ``Authorization: Bearer``; 401 otherwise."""
    presented = header or (bearer.credentials if bearer is not None else None)
    if not presented:
        raise ApiError(
            401, "missing_key", "send an API key in X-API-Key or Authorization: Bearer", _CHALLENGE
        )
    key = authenticate(session, presented)
    if key is None:
        raise ApiError(
            401, "invalid_key", "the API key is malformed, unknown or revoked", _CHALLENGE
        )
    return key


def _role(*roles: str) -> Callable[[ApiKey], ApiKey]:
    """A dependency admitting keys of these roles (an admin key is always admitted)."""

    def admit(key: Annotated[ApiKey, Depends(_caller)]) -> ApiKey:
        if key.role != "admin" and key.role not in roles:
            allowed = ", ".join((*roles, "admin"))
            raise ApiError(
                403, "role_forbidden", f"a {key.role} key may not do this (allowed: {allowed})"
            )
        return key

    return admit


AnyKey = Annotated[ApiKey, Depends(_caller)]
ArtistKey = Annotated[ApiKey, Depends(_role("artist"))]
ConsentKey = Annotated[ApiKey, Depends(_role("artist", "rightsholder"))]
CatalogKey = Annotated[ApiKey, Depends(_role("rightsholder"))]
RecordingReaderKey = Annotated[ApiKey, Depends(_role("rightsholder", "platform"))]
PlatformKey = Annotated[ApiKey, Depends(_role("platform"))]
AdminKey = Annotated[ApiKey, Depends(_role())]


def actor(key: ApiKey) -> str:
    """How a key's writes are named in the audit log."""
    return f"api_key:{key.prefix}"
