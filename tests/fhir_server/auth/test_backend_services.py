"""SMART Backend Services: client_credentials with private_key_jwt, assertions signed RS384 and
ES384 with real keys, the client's JWKS registered by value or served over HTTP."""

from __future__ import annotations

import json
import time

import pytest

from fhir_server.auth import client_auth, tokens
from tests.fhir_server.auth.smart_app import (BASE, ROOT, JwksServer, add_client, assertion, bearer, client_credentials, new_key,
                                              public_jwks)

TOKEN_URL = f"{ROOT}/auth/token"


@pytest.fixture
def rs384():
    return new_key("RS384")


@pytest.fixture
def es384():
    return new_key("ES384")


@pytest.fixture
async def gateway(svc, rs384, es384) -> dict:
    """A backend client registered with its JWKS by value."""
    record, _ = await add_client(svc, name="EHR gateway", type="confidential-asymmetric", redirect_uris=[],
                                 scope="system/*.rs system/Observation.cruds", jwks=public_jwks(rs384, es384))
    return record


@pytest.fixture
def jwks_server(es384):
    server = JwksServer(public_jwks(es384))
    yield server
    server.close()


async def test_rs384_assertion_gets_a_system_token_that_reads_fhir(browser, gateway, rs384, patient_id):
    signed = assertion(rs384, gateway["client_id"], TOKEN_URL)
    response = await browser.post("/auth/token", data=client_credentials(gateway["client_id"], signed, "system/Patient.rs"))
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer" and body["scope"] == "system/Patient.rs" and "refresh_token" not in body
    claims = tokens.unverified_claims(body["access_token"])
    assert claims["sub"] == claims["client_id"] == gateway["client_id"] and claims["aud"] == BASE
    read = await browser.get(f"/fhir/Patient/{patient_id}", headers=bearer(body["access_token"]))
    assert read.status_code == 200


async def test_es384_assertion_with_jwks_by_value(browser, gateway, es384):
    signed = assertion(es384, gateway["client_id"], TOKEN_URL)
    response = await browser.post("/auth/token", data=client_credentials(gateway["client_id"], signed))
    assert response.status_code == 200, response.text


async def test_es384_assertion_with_jwks_url_fetched_over_http_and_cached(browser, svc, es384, jwks_server):
    record, _ = await add_client(svc, name="Device gateway", type="confidential-asymmetric", redirect_uris=[],
                                 scope="system/Observation.cruds", jwks_url=jwks_server.url)
    for _ in range(3):
        signed = assertion(es384, record["client_id"], TOKEN_URL)
        response = await browser.post("/auth/token", data=client_credentials(record["client_id"], signed,
                                                                               "system/Observation.cruds"))
        assert response.status_code == 200, response.text
    assert jwks_server.hits == 1


async def test_new_key_in_the_jwks_url_is_picked_up(browser, svc, es384, jwks_server, monkeypatch):
    record, _ = await add_client(svc, name="Device gateway", type="confidential-asymmetric", redirect_uris=[],
                                 scope="system/Observation.rs", jwks_url=jwks_server.url)
    ok = assertion(es384, record["client_id"], TOKEN_URL)
    assert (await browser.post("/auth/token", data=client_credentials(record["client_id"], ok, "system/Observation.rs"))).status_code == 200
    rotated = new_key("ES384")
    jwks_server.jwks = public_jwks(es384, rotated)
    signed = assertion(rotated, record["client_id"], TOKEN_URL)
    response = await browser.post("/auth/token", data=client_credentials(record["client_id"], signed, "system/Observation.rs"))
    assert response.status_code == 401  # refetched at most every JWKS_REFETCH seconds
    monkeypatch.setattr(client_auth, "JWKS_REFETCH", 0.0)
    again = assertion(rotated, record["client_id"], TOKEN_URL)
    response = await browser.post("/auth/token", data=client_credentials(record["client_id"], again, "system/Observation.rs"))
    assert response.status_code == 200, response.text
    assert jwks_server.hits == 2


async def test_only_registered_system_scopes_are_granted(browser, gateway, rs384):
    signed = assertion(rs384, gateway["client_id"], TOKEN_URL)
    response = await browser.post("/auth/token", data=client_credentials(
        gateway["client_id"], signed, "system/Patient.rs system/Patient.cud user/*.rs system/Observation.cruds"))
    assert response.json()["scope"] == "system/Patient.rs system/Observation.cruds"
    signed = assertion(rs384, gateway["client_id"], TOKEN_URL)
    response = await browser.post("/auth/token", data=client_credentials(gateway["client_id"], signed, "system/Patient.d"))
    assert response.status_code == 400 and response.json()["error"] == "invalid_scope"


@pytest.mark.req("CN-4.4")
async def test_replayed_assertion_is_refused(browser, gateway, rs384):
    signed = assertion(rs384, gateway["client_id"], TOKEN_URL)
    assert (await browser.post("/auth/token", data=client_credentials(gateway["client_id"], signed))).status_code == 200
    replay = await browser.post("/auth/token", data=client_credentials(gateway["client_id"], signed))
    assert replay.status_code == 401
    assert replay.json() == {"error": "invalid_client", "error_description": "The client assertion was already used (jti)"}


def _forge(kind: str, key, client_id: str) -> str:
    now = int(time.time())
    if kind == "wrong_aud":
        return assertion(key, client_id, f"{ROOT}/other")
    if kind == "expired":
        return assertion(key, client_id, TOKEN_URL, exp=now - 120)
    if kind == "too_long":
        return assertion(key, client_id, TOKEN_URL, lifetime=3600)
    if kind == "no_exp":
        return assertion(key, client_id, TOKEN_URL, exp=None)
    if kind == "sub_differs":
        return assertion(key, client_id, TOKEN_URL, sub="someone-else")
    if kind == "no_jti":
        return assertion(key, client_id, TOKEN_URL, jti="")
    if kind == "unknown_kid":
        return assertion(new_key("RS384", kid="unregistered"), client_id, TOKEN_URL)
    if kind == "other_key_same_kid":
        return assertion(new_key("RS384", kid=key.kid), client_id, TOKEN_URL)
    if kind == "rs256":
        return assertion(key, client_id, TOKEN_URL, alg="RS256")
    if kind == "none":
        signed = assertion(key, client_id, TOKEN_URL)
        head, body, _ = signed.split(".")
        from jwcrypto.common import base64url_encode

        return base64url_encode(json.dumps({"alg": "none", "kid": key.kid})) + "." + body + "."
    if kind == "tampered":
        head, body, sig = assertion(key, client_id, TOKEN_URL).split(".")
        from jwcrypto.common import base64url_decode, base64url_encode

        claims = json.loads(base64url_decode(body))
        claims["exp"] += 10
        return ".".join([head, base64url_encode(json.dumps(claims)), sig])
    if kind == "jku":
        return assertion(key, client_id, TOKEN_URL, header={"jku": "https://attacker.example/jwks"})
    raise AssertionError(kind)


@pytest.mark.req("CN-4.4")
@pytest.mark.parametrize("kind", ["wrong_aud", "expired", "too_long", "no_exp", "sub_differs", "no_jti", "unknown_kid",
                                  "other_key_same_kid", "rs256", "none", "tampered", "jku"])
async def test_forged_assertion_is_invalid_client(browser, gateway, rs384, kind):
    signed = _forge(kind, rs384, gateway["client_id"])
    response = await browser.post("/auth/token", data=client_credentials(gateway["client_id"], signed))
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"


async def test_unknown_issuer_is_invalid_client(browser, rs384):
    signed = assertion(rs384, "not-registered", TOKEN_URL)
    response = await browser.post("/auth/token", data=client_credentials("not-registered", signed))
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


async def test_wrong_assertion_type_is_invalid_request(browser, gateway, rs384):
    data = client_credentials(gateway["client_id"], assertion(rs384, gateway["client_id"], TOKEN_URL))
    data["client_assertion_type"] = "urn:ietf:params:oauth:client-assertion-type:saml2-bearer"
    response = await browser.post("/auth/token", data=data)
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


async def test_public_client_cannot_use_client_credentials(browser, svc):
    public, _ = await add_client(svc, scope="system/*.rs")
    response = await browser.post("/auth/token", data={"grant_type": "client_credentials", "client_id": public["client_id"],
                                                       "scope": "system/*.rs"})
    assert response.status_code == 400 and response.json()["error"] == "unauthorized_client"


async def test_unsupported_grant_type(browser, gateway, rs384):
    response = await browser.post("/auth/token", data={"grant_type": "password", "username": "a", "password": "b"})
    assert response.status_code == 400 and response.json()["error"] == "unsupported_grant_type"


async def test_token_endpoint_wants_a_form(browser):
    response = await browser.post("/auth/token", json={"grant_type": "client_credentials"})
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
