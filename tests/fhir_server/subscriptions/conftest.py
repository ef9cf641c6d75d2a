"""Fixtures for the notification tests: quick retries, a rest-hook receiver, Subscription bodies."""

from __future__ import annotations

import pytest

from fhir_server.subscriptions.subscription import CONTENT, FILTER, HEARTBEAT, MAX_COUNT, SECRET
from fhir_server.subscriptions.topics import BY_URL
from tests.fhir_server.subscriptions.receiver import Receiver

TOPIC = {t.name: url for url, t in BY_URL.items()}


@pytest.fixture
def settings(settings):
    settings.notify_backoff_max_seconds = 0.3
    settings.notify_error_after = 2
    return settings


@pytest.fixture
async def receiver():
    r = await Receiver().up()
    yield r
    await r.down()


def subscription(topic: str, endpoint: str | None = None, *, content: str = "id-only", filters: tuple[str, ...] = (),
                 channel: str = "rest-hook", headers: tuple[str, ...] = (), heartbeat: int | None = None,
                 max_count: int | None = None, secret: str | None = None, status: str = "requested") -> dict:
    """A Subscription body in the R4 backport form."""
    ch: dict = {"type": channel, "payload": "application/fhir+json",
                "_payload": {"extension": [{"url": CONTENT, "valueCode": content}]}}
    if endpoint:
        ch["endpoint"] = endpoint
    if headers:
        ch["header"] = list(headers)
    ext = []
    if heartbeat:
        ext.append({"url": HEARTBEAT, "valueUnsignedInt": heartbeat})
    if max_count:
        ext.append({"url": MAX_COUNT, "valuePositiveInt": max_count})
    if secret:
        ext.append({"url": SECRET, "valueString": secret})
    if ext:
        ch["extension"] = ext
    body = {"resourceType": "Subscription", "status": status, "reason": "test", "criteria": TOPIC[topic],
            "channel": ch}
    if filters:
        body["_criteria"] = {"extension": [{"url": FILTER, "valueString": f} for f in filters]}
    return body


def task(status: str = "requested", owner: str | None = None, **extra) -> dict:
    body = {"resourceType": "Task", "status": status, "intent": "order", **extra}
    if owner:
        body["owner"] = {"reference": owner}
    return body
