"""The HTTP API: one FastAPI app over one database engine, OpenAPI at /openapi.json and /docs."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine
from swagger_ui_bundle import swagger_ui_path

from attune import __version__
from attune.api import (
    artists,
    datasets,
    generation,
    identify,
    ops,
    platform,
    problems,
    provenance,
    rightsholders,
    royalties,
)
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
        docs_url=None,
        redoc_url=None,
    )
    app.mount("/static/swagger", StaticFiles(directory=swagger_ui_path), name="swagger")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        """Interactive API docs, served from the package (no CDN: works offline)."""
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title="Attune API",
            swagger_js_url="/static/swagger/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger/swagger-ui.css",
            swagger_favicon_url="/static/swagger/favicon-32x32.png",
        )

    app.state.engine = engine
    problems.install(app)
    for module in (artists, rightsholders, platform, identify, provenance, royalties, ops):
        app.include_router(module.router, responses=_PROBLEMS)
    app.include_router(datasets.router, responses=_PROBLEMS)
    app.include_router(generation.router, responses=_PROBLEMS)
    return app
