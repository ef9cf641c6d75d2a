"""create_app(settings): builds every component and the ASGI application."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from fhir_server.audit import Auditor
from fhir_server.auth.keys import KeyRing
from fhir_server.auth.bearer import Bearer
from fhir_server.auth.state import PURGE_EVERY, AuthState, MongoAuthState, SQLiteAuthState
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


def open_auth_state(settings: Settings, store: Store) -> AuthState:
    if settings.store.startswith("mongodb"):
        return MongoAuthState(store.db)
    return SQLiteAuthState(settings.auth_state_path())


def open_notifications(svc: Services):
    from fhir_server.subscriptions.service import Notifications
    from fhir_server.subscriptions.state import MongoNotifyState, SQLiteNotifyState

    if svc.settings.store.startswith("mongodb"):
        return Notifications(svc, MongoNotifyState(svc.store.db))
    return Notifications(svc, SQLiteNotifyState(svc.settings.notify_state_path()))


def create_services(settings: Settings, store: Store | None = None) -> Services:
    store = store or open_store(settings)
    keys = KeyRing(settings.keys_path())
    state = open_auth_state(settings, store)
    external = None
    if settings.external_issuer:
        from fhir_server.auth.external import ExternalProvider

        external = ExternalProvider(settings, store)
    from dicomweb.proxy import open_proxy

    return Services(settings=settings, store=store, keys=keys, auth_state=state,
                    bearer=Bearer(keys, state, settings, external), auditor=Auditor(store),
                    dicomweb=open_proxy(settings))


def create_app(settings: Settings, store: Store | None = None) -> Starlette:
    svc = create_services(settings, store)
    from fhir_server.bulk.jobs import Jobs, Workers

    svc.bulk = Workers(svc, Jobs(settings.bulk_path()), settings.bulk_workers)
    svc.notify = open_notifications(svc)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if hasattr(svc.store, "start"):
            await svc.store.start()
        purger = asyncio.get_running_loop().create_task(_purge_auth_state(svc.auth_state))
        await svc.bulk.start()
        await svc.notify.start()
        from operations.consult import overdue

        stop_sweeping = asyncio.Event()
        sweeper = asyncio.get_running_loop().create_task(overdue.run(svc, stop_sweeping), name="deadline-sweeper")
        yield
        stop_sweeping.set()
        sweeper.cancel()
        await svc.notify.stop()
        await svc.bulk.stop()
        purger.cancel()
        if svc.dicomweb is not None:
            await svc.dicomweb.close()
        await svc.auditor.close()
        await svc.auth_state.close()
        await svc.store.close()

    app = Starlette(
        routes=routes(svc),
        lifespan=lifespan,
        exception_handlers={OperationOutcomeError: _outcome_error, HTTPException: _http_error, Exception: _unexpected},
    )
    app.state.services = svc
    app.add_middleware(MetricsMiddleware)
    return app


async def _purge_auth_state(state: AuthState) -> None:
    """Expired codes, refresh tokens, revocations and assertion ids are deleted now and then."""
    while True:
        try:
            await state.purge()
        except Exception:  # noqa: BLE001 - logged; the next round tries again
            log.exception("could not purge expired authorization state")
        await asyncio.sleep(PURGE_EVERY)


async def _outcome_error(request: Request, exc: OperationOutcomeError) -> Response:
    return json_response(exc.outcome(), exc.status, exc.headers or None)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    code = {404: "not-found", 405: "not-supported"}.get(exc.status_code, "processing")
    text = f"{request.method} {request.url.path} is not supported" if exc.status_code == 405 else exc.detail
    return json_response(outcome([issue(code, str(text))]), exc.status_code, exc.headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return json_response(outcome([issue("exception", "Internal server error; the incident was logged")]), 500)
