"""The one route table: a line per interaction."""

from __future__ import annotations

from typing import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fhir_server import capability, metrics
from fhir_server.interactions import create, delete, history, patch, read, search, transaction, update, vread
from fhir_server.services import Services

Handler = Callable[[Request, Services], Awaitable[Response]]


def routes(svc: Services) -> list[Route]:
    def r(path: str, handler: Handler, method: str, name: str) -> Route:
        async def endpoint(request: Request) -> Response:
            return await handler(request, svc)

        return Route(path, endpoint, methods=[method], name=name)

    return [
        r("/fhir/metadata", capability.handle, "GET", "capabilities"),
        r("/fhir", transaction.handle, "POST", "transaction"),
        r("/fhir/", transaction.handle, "POST", "transaction/"),
        r("/fhir/_history", history.handle, "GET", "history-system"),
        r("/fhir/{type}/_search", search.handle, "POST", "search-type"),
        r("/fhir/{type}/_history", history.handle, "GET", "history-type"),
        r("/fhir/{type}/{id}/_history/{vid}", vread.handle, "GET", "vread"),
        r("/fhir/{type}/{id}/_history", history.handle, "GET", "history-instance"),
        r("/fhir/{type}/{id}", read.handle, "GET", "read"),
        r("/fhir/{type}/{id}", update.handle, "PUT", "update"),
        r("/fhir/{type}/{id}", patch.handle, "PATCH", "patch"),
        r("/fhir/{type}/{id}", delete.handle, "DELETE", "delete"),
        r("/fhir/{type}", search.handle, "GET", "search-type"),
        r("/fhir/{type}", create.handle, "POST", "create"),
        r("/fhir/{type}", update.handle_conditional, "PUT", "conditional-update"),
        r("/fhir/{type}", patch.handle_conditional, "PATCH", "conditional-patch"),
        r("/fhir/{type}", delete.handle_conditional, "DELETE", "conditional-delete"),
        Route("/metrics", metrics.endpoint, methods=["GET"], name="metrics"),
    ]
