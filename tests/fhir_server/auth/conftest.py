"""Fixtures of the local authorization server's tests: the app's services, a "browser" (an HTTP
client over ASGI that sends no token of its own) and an admin's FHIR client."""

from __future__ import annotations

import httpx
import pytest

from tests.fhir_server.auth.smart_app import ROOT
from tests.tokens import auth


@pytest.fixture
def svc(app):
    return app.state.services


@pytest.fixture
async def browser(app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ROOT) as c:
        yield c


@pytest.fixture
def admin(app) -> dict[str, str]:
    """Headers of an admin (``system/*.*``)."""
    return auth(app)


@pytest.fixture
async def patient_id(client) -> str:
    created = await client.post("/Patient", json={"resourceType": "Patient", "name": [{"family": "Ivanova"}]})
    assert created.status_code == 201, created.text
    return created.json()["id"]
