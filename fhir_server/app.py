"""create_app(settings): builds every component and the ASGI application."""

from __future__ import annotations

import contextlib
import logging

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from fhir_server.errors import OperationOutcomeError, issue, outcome
from fhir_server.http import json_response
from fhir_server.metrics import MetricsMiddleware
from fhir_server.routes import routes
from fhir_server.services import Services
from fhir_server.settings import Settings
from fhir_server.storage.port import Store

log = logging.getLogger("fhir_server")


def open_store(settings: Settings) -> Store:
    if settings.store.startswith("mongodb"):
        from fhir_server.storage.mongo import MongoStore

        return MongoStore(settings.store)
    from fhir_server.storage.sqlite import SQLiteStore

    return SQLiteStore(settings.sqlite_path())


def create_app(settings: Settings, store: Store | None = None) -> Starlette:
    svc = Services(settings=settings, store=store or open_store(settings))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if hasattr(svc.store, "start"):
            await svc.store.start()
        yield
        await svc.store.close()

    app = Starlette(
        routes=routes(svc),
        lifespan=lifespan,
        exception_handlers={OperationOutcomeError: _outcome_error, HTTPException: _http_error, Exception: _unexpected},
    )
    app.state.services = svc
    app.add_middleware(MetricsMiddleware)
    return app


async def _outcome_error(request: Request, exc: OperationOutcomeError) -> Response:
    return json_response(exc.outcome(), exc.status, exc.headers or None)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    code = {404: "not-found", 405: "not-supported"}.get(exc.status_code, "processing")
    text = f"{request.method} {request.url.path} is not supported" if exc.status_code == 405 else exc.detail
    return json_response(outcome([issue(code, str(text))]), exc.status_code, exc.headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return json_response(outcome([issue("exception", "Internal server error; the incident was logged")]), 500)
