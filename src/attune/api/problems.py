"""Errors as RFC 7807 problem JSON with a machine-readable code, for every failure the API has."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException

from attune.rights.catalog_import import CatalogImportError
from attune.rights.ddex import DdexError
from attune.rights.registry import RegistryError

MEDIA_TYPE = "application/problem+json"
_FIELD_PREFIX = re.compile(r"^([A-Za-z_][\w.\[\]]*): ")
_LOCATIONS = {"body", "query", "path", "header", "cookie"}


class Problem(BaseModel):
    """What went wrong: ``code`` for programs, ``title`` and ``detail`` for people."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    field: str | None = None


class ApiError(Exception):
    """A refusal the API raises on purpose (401, 403, ...), turned into problem JSON."""

    def __init__(
        self, status: int, code: str, detail: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers


def _problem(
    status: int,
    code: str,
    detail: str,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The problem response for one status, code and message."""
    body = Problem(
        type=f"urn:attune:problem:{code}",
        title=HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        code=code,
        field=field,
    )
    return JSONResponse(
        body.model_dump(exclude_none=True), status, headers=headers, media_type=MEDIA_TYPE
    )


def _located(error: Any) -> tuple[str, str]:
    """The input an error is about (its location, else the field its message names) and why."""
    if error.get("type") == "json_invalid":
        return "body", "the body is not valid JSON"
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    path = ""
    for part in error.get("loc", ()):
        if part in _LOCATIONS and not path:
            continue
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    named = _FIELD_PREFIX.match(message)
    if not path and named:
        return named.group(1), message[named.end() :]
    return path or "body", message


def _validation(errors: Sequence[Any]) -> JSONResponse:
    field, message = _located(errors[0])
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return _problem(422, "validation_error", f"{field}: {message}{more}", field)


async def _on_request_validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return _validation(exc.errors())


async def _on_model_validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ValidationError)
    return _validation(exc.errors())


async def _on_api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return _problem(exc.status, exc.code, exc.detail, headers=exc.headers)


async def _on_registry_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RegistryError)
    return _problem(422, "rejected", str(exc), exc.field)


async def _on_lookup_error(_: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, KeyError | IndexError):
        raise exc  # a bug, not a missing record: let it reach the 500 handler and the log
    return _problem(404, "not_found", str(exc))


async def _on_integrity_error(_: Request, exc: Exception) -> JSONResponse:
    return _problem(
        409, "conflict", "the write conflicts with data already stored; nothing changed"
    )


async def _on_http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
    return _problem(exc.status_code, code, str(exc.detail), headers=exc.headers)


async def _on_unexpected(_: Request, exc: Exception) -> JSONResponse:
    return _problem(
        500, "internal_error", "the server failed; the request's writes were rolled back"
    )


async def _on_import_refused(_: Request, exc: Exception) -> JSONResponse:
    return _problem(422, "import_refused", str(exc))


def install(app: FastAPI) -> None:
    """Register the problem handlers on an app."""
    app.add_exception_handler(RequestValidationError, _on_request_validation)
    app.add_exception_handler(ValidationError, _on_model_validation)
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(RegistryError, _on_registry_error)
    app.add_exception_handler(CatalogImportError, _on_import_refused)
    app.add_exception_handler(DdexError, _on_import_refused)
    app.add_exception_handler(LookupError, _on_lookup_error)
    app.add_exception_handler(IntegrityError, _on_integrity_error)
    app.add_exception_handler(HTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
