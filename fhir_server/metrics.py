"""Prometheus metrics: requests by route and status, and their latency, at GET /metrics."""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response

REGISTRY = CollectorRegistry()
REQUESTS = Counter("fhir_requests_total", "FHIR requests", ["route", "method", "status"], registry=REGISTRY)
LATENCY = Histogram("fhir_request_seconds", "FHIR request latency", ["route"], registry=REGISTRY,
                    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))


class MetricsMiddleware:
    """Pure ASGI middleware: counts each HTTP request under its route's name."""

    def __init__(self, app):
        self.app = app
        self._children: dict[tuple, tuple] = {}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            name = getattr(route, "name", None) or "unmatched"
            key = (name, scope["method"], status)
            children = self._children.get(key)
            if children is None:  # labels() is a locked dict lookup; keep the children at hand
                children = self._children[key] = (REQUESTS.labels(name, scope["method"], str(status)), LATENCY.labels(name))
            children[0].inc()
            children[1].observe(time.perf_counter() - start)


async def endpoint(request: Request) -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
