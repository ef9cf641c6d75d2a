"""Tokens of the national identity system (an external OpenID Connect provider), users matched by SNILS."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from jwcrypto import jwk, jwt

from fhir_server.app import create_app
from profiles import SNILS_SYSTEM
from tests.fhir_server.auth.smart_app import JwksServer
from tests.tokens import auth

pytestmark = pytest.mark.req("RU-7")
ISSUER = "https://esia.example.gov"
AUDIENCE = "telemed-region"


@pytest.fixture(scope="module")
def provider():
    """The provider's signing key, and its JWKS served over real HTTP."""
    key = jwk.JWK.generate(kty="RSA", size=2048, kid="esia-1", alg="RS256", use="sig")
    server = JwksServer({"keys": [json.loads(key.export_public())]})
    yield key, server.url
    server.close()


@pytest.fixture
async def external(settings, provider):
    _, url = provider
    app = create_app(settings.model_copy(update={
        "external_issuer": ISSUER, "external_audience": AUDIENCE, "external_jwks_url": url}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver/fhir") as client:
            admin = auth(app)
            for r in [
                {"resourceType": "Practitioner", "id": "doc", "identifier": [{"system": SNILS_SYSTEM, "value": "112-233-445 95"}]},
                {"resourceType": "Patient", "id": "pat", "identifier": [{"system": SNILS_SYSTEM, "value": "11223344596"}]},
                {"resourceType": "Patient", "id": "other"},
                {"resourceType": "Observation", "id": "mine", "status": "final", "code": {"text": "bp"},
                 "subject": {"reference": "Patient/pat"}},
                {"resourceType": "Observation", "id": "theirs", "status": "final", "code": {"text": "bp"},
                 "subject": {"reference": "Patient/other"}},
            ]:
                assert (await client.put(f"/{r['resourceType']}/{r['id']}", json=r, headers=admin)).status_code == 201
            yield client


def _token(key, **over) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "esia-user", "iat": now, "exp": now + 600, "snils": "112-233-445 95",
              **over}
    t = jwt.JWT(header={"alg": "RS256", "kid": key.get("kid")}, claims=claims)
    t.make_signed_token(key)
    return t.serialize()


async def test_a_practitioner_is_matched_by_snils(external, provider):
    key, _ = provider
    r = await external.get("/Observation/theirs", headers={"Authorization": f"Bearer {_token(key)}"})
    assert r.status_code == 200


async def test_a_patient_is_matched_by_snils_and_kept_in_their_compartment(external, provider):
    key, _ = provider
    h = {"Authorization": f"Bearer {_token(key, snils='11223344596')}"}
    assert (await external.get("/Observation/mine", headers=h)).status_code == 200
    assert (await external.get("/Observation/theirs", headers=h)).status_code == 404
    found = (await external.get("/Observation", headers=h)).json()
    assert [e["resource"]["id"] for e in found["entry"]] == ["mine"]


async def test_an_unmatched_user_gets_403_with_the_reason(external, provider):
    key, _ = provider
    r = await external.get("/Patient", headers={"Authorization": f"Bearer {_token(key, snils='999-999-999 99')}"})
    assert r.status_code == 403
    assert "No Practitioner or Patient is registered with SNILS 999-999-999 99" in r.json()["issue"][0]["diagnostics"]
    r = await external.get("/Patient", headers={"Authorization": f"Bearer {_token(key, snils=None)}"})
    assert r.status_code == 403 and "SNILS" in r.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize("over", [{"aud": "someone-else"}, {"exp": 1}, {"nbf": int(time.time()) + 3600}])
async def test_provider_tokens_are_checked(external, provider, over):
    key, _ = provider
    r = await external.get("/Patient", headers={"Authorization": f"Bearer {_token(key, **over)}"})
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")


async def test_a_token_signed_by_another_key_is_refused(external):
    forger = jwk.JWK.generate(kty="RSA", size=2048, kid="esia-1")
    r = await external.get("/Patient", headers={"Authorization": f"Bearer {_token(forger)}"})
    assert r.status_code == 401
