"""The HTTP API: one FastAPI app over one database engine, OpenAPI at /openapi.json and /docs."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from sqlalchemy import Engine

from attune import __version__
from attune.api import artists, ops, platform, problems, rightsholders
from attune.api.problems import Problem

_PROBLEMS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "description": what}
    for status, what in (
        (401, "no API key, or one that is malformed, unknown or revoked"),
        (403, "the key's role or party may not do this"),
        (404, "a referenced record does not exist"),
        (409, "the write conflicts with stored data"),
        (422, "invalid input; `field` names it"),
    )
}


def create_app(engine: Engine) -> FastAPI:
    """Build the API over ``engine`` (kept in ``app.state.engine``; one transaction per request)."""
    app = FastAPI(
        title="Attune",
        version=__version__,
        description="The rights layer for generative music: catalog, agreements, consent and "
        "decisions. Authenticate with `X-API-Key` or `Authorization: Bearer`.",
    )
    app.state.engine = engine
    problems.install(app)
    for module in (artists, rightsholders, platform, ops):
        app.include_router(module.router, responses=_PROBLEMS)
    return app
