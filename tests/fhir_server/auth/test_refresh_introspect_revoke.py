"""Refresh tokens (rotation, reuse detection, narrower scopes, online_access), introspection
(RFC 7662) and revocation (RFC 7009), with their effect on FHIR calls."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from fhir_server.app import create_app
from fhir_server.auth import tokens
from fhir_server.auth.bearer import RECHECK
from fhir_server.auth.issue import ONLINE_ACCESS_SECONDS
from tests.fhir_server.auth.smart_app import ROOT, add_client, add_user, bearer, launch
from tests.tokens import auth

SCOPE = "offline_access openid fhirUser user/*.rs"


@pytest.fixture
async def app_client(svc) -> dict:
    return (await add_client(svc, scope="offline_access online_access openid fhirUser user/*.rs launch/patient "
                                        "patient/*.rs"))[0]


@pytest.fixture
async def resource_server(svc) -> tuple[dict, str]:
    """A confidential client that introspects tokens (e.g. another resource server)."""
    return await add_client(svc, name="Resource server", type="confidential-symmetric", redirect_uris=[],
                            grant_types=["client_credentials"], scope="system/*.rs")


@pytest.fixture
async def tokens_of_doctor(svc, browser, app_client) -> dict:
    await add_user(svc, "doctor", "Practitioner/d1")
    return await launch(browser, app_client["client_id"], SCOPE, "doctor")


async def _refresh(browser, client_id: str, refresh_token: str, **extra):
    return await browser.post("/auth/token", data={"grant_type": "refresh_token", "client_id": client_id,
                                                   "refresh_token": refresh_token, **extra})


async def test_refresh_rotates_the_refresh_token(browser, app_client, tokens_of_doctor, patient_id):
    first = tokens_of_doctor
    assert first["refresh_token"]
    second = await _refresh(browser, app_client["client_id"], first["refresh_token"])
    assert second.status_code == 200, second.text
    body = second.json()
    assert body["refresh_token"] != first["refresh_token"] and body["access_token"] != first["access_token"]
    assert body["scope"] == SCOPE and "id_token" in body
    assert (await browser.get(f"/fhir/Patient/{patient_id}", headers=bearer(body["access_token"]))).status_code == 200
    third = await _refresh(browser, app_client["client_id"], body["refresh_token"])
    assert third.status_code == 200


@pytest.mark.req("CN-4.4")
async def test_reused_refresh_token_revokes_the_whole_grant(browser, app_client, tokens_of_doctor, patient_id):
    rotated = (await _refresh(browser, app_client["client_id"], tokens_of_doctor["refresh_token"])).json()
    replay = await _refresh(browser, app_client["client_id"], tokens_of_doctor["refresh_token"])
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    for access in (tokens_of_doctor["access_token"], rotated["access_token"]):
        assert (await browser.get(f"/fhir/Patient/{patient_id}", headers=bearer(access))).status_code == 401
    assert (await _refresh(browser, app_client["client_id"], rotated["refresh_token"])).status_code == 400


@pytest.mark.req("CN-4.4")
async def test_refresh_token_of_another_client_is_refused(browser, svc, tokens_of_doctor):
    other, _ = await add_client(svc, scope=SCOPE)
    response = await _refresh(browser, other["client_id"], tokens_of_doctor["refresh_token"])
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


async def test_refresh_may_narrow_but_not_widen_the_scope(browser, app_client, tokens_of_doctor):
    wider = await _refresh(browser, app_client["client_id"], tokens_of_doctor["refresh_token"],
                           scope="user/*.cruds offline_access")
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"
    narrower = await _refresh(browser, app_client["client_id"], tokens_of_doctor["refresh_token"],
                              scope="user/Observation.rs")
    assert narrower.status_code == 200, narrower.text
    body = narrower.json()
    assert body["scope"] == "user/Observation.rs" and "id_token" not in body
    again = await _refresh(browser, app_client["client_id"], body["refresh_token"])
    assert again.json()["scope"] == SCOPE  # the grant keeps its scope


async def test_no_refresh_token_without_offline_or_online_access(browser, svc, app_client):
    await add_user(svc, "nurse", "Practitioner/n1")
    body = await launch(browser, app_client["client_id"], "user/*.rs", "nurse")
    assert "refresh_token" not in body


async def test_online_access_refresh_token_ends_with_the_login_session(app, browser, svc, app_client):
    await add_user(svc, "nurse", "Practitioner/n1")
    body = await launch(browser, app_client["client_id"], "online_access user/*.rs", "nurse")
    introspected = await browser.post("/auth/introspect", headers=auth(app), data={"token": body["refresh_token"]})
    exp = introspected.json()["exp"]
    assert tokens.unverified_claims(body["access_token"])["iat"] + ONLINE_ACCESS_SECONDS + 5 >= exp


async def test_introspection_by_an_admin(app, browser, tokens_of_doctor):
    response = await browser.post("/auth/introspect", headers=auth(app), data={"token": tokens_of_doctor["access_token"]})
    assert response.status_code == 200 and response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["active"] is True and body["scope"] == SCOPE and body["token_type"] == "Bearer"
    assert body["fhirUser"].endswith("/fhir/Practitioner/d1") and body["exp"] > body["iat"]
    refresh = await browser.post("/auth/introspect", headers=auth(app),
                                 data={"token": tokens_of_doctor["refresh_token"], "token_type_hint": "refresh_token"})
    assert refresh.json()["active"] is True and refresh.json()["token_type"] == "refresh_token"


async def test_introspection_by_a_confidential_client(browser, resource_server, tokens_of_doctor):
    record, secret = resource_server
    response = await browser.post("/auth/introspect", auth=(record["client_id"], secret),
                                  data={"token": tokens_of_doctor["access_token"]})
    assert response.status_code == 200 and response.json()["active"] is True


@pytest.mark.parametrize("token", ["garbage", "a.b.c", ""])
async def test_introspection_of_a_bad_token_is_inactive(app, browser, token):
    response = await browser.post("/auth/introspect", headers=auth(app), data={"token": token})
    if token:
        assert response.status_code == 200 and response.json() == {"active": False}
    else:
        assert response.status_code == 400 and response.json()["error"] == "invalid_request"


async def test_introspection_of_an_expired_or_foreign_token_is_inactive(app, browser):
    expired = tokens.mint(app.state.services.keys, {"iss": f"{ROOT}/fhir", "aud": f"{ROOT}/fhir", "sub": "x",
                                                    "scope": "user/*.rs"}, -120)[0]
    foreign_aud = tokens.mint(app.state.services.keys, {"iss": f"{ROOT}/fhir", "aud": "https://other/fhir", "sub": "x",
                                                        "scope": "user/*.rs"}, 300)[0]
    for token in (expired, foreign_aud):
        response = await browser.post("/auth/introspect", headers=auth(app), data={"token": token})
        assert response.json() == {"active": False}


async def test_introspection_needs_an_admin_or_a_confidential_client(app, browser, app_client, tokens_of_doctor):
    token = tokens_of_doctor["access_token"]
    anonymous = await browser.post("/auth/introspect", data={"token": token})
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "invalid_client"
    public = await browser.post("/auth/introspect", data={"token": token, "client_id": app_client["client_id"]})
    assert public.status_code == 401
    user_token = await browser.post("/auth/introspect", headers=bearer(token), data={"token": token})
    assert user_token.status_code == 403 and user_token.json()["error"] == "insufficient_scope"


async def test_revoked_access_token_fails_on_a_fhir_read(browser, app_client, tokens_of_doctor, patient_id):
    access = tokens_of_doctor["access_token"]
    assert (await browser.get(f"/fhir/Patient/{patient_id}", headers=bearer(access))).status_code == 200
    revoked = await browser.post("/auth/revoke", data={"token": access, "client_id": app_client["client_id"],
                                                       "token_type_hint": "access_token"})
    assert revoked.status_code == 200
    read = await browser.get(f"/fhir/Patient/{patient_id}", headers=bearer(access))
    assert read.status_code == 401 and "invalid_token" in read.headers["www-authenticate"]
    # The refresh token of the grant still works: revoking an access token ends only that token.
    assert (await _refresh(browser, app_client["client_id"], tokens_of_doctor["refresh_token"])).status_code == 200


async def test_revoked_refresh_token_revokes_its_access_tokens(app, browser, app_client, tokens_of_doctor, patient_id):
    revoked = await browser.post("/auth/revoke", data={"token": tokens_of_doctor["refresh_token"],
                                                       "client_id": app_client["client_id"]})
    assert revoked.status_code == 200 and revoked.headers["cache-control"] == "no-store"
    assert (await _refresh(browser, app_client["client_id"], tokens_of_doctor["refresh_token"])).status_code == 400
    read = await browser.get(f"/fhir/Patient/{patient_id}", headers=bearer(tokens_of_doctor["access_token"]))
    assert read.status_code == 401
    introspected = await browser.post("/auth/introspect", headers=auth(app),
                                      data={"token": tokens_of_doctor["access_token"]})
    assert introspected.json() == {"active": False}


async def test_revoking_an_unknown_token_answers_200(browser, app_client):
    response = await browser.post("/auth/revoke", data={"token": "never-issued", "client_id": app_client["client_id"]})
    assert response.status_code == 200


async def test_a_client_cannot_revoke_another_clients_token(browser, svc, tokens_of_doctor, patient_id):
    other, _ = await add_client(svc, scope=SCOPE)
    response = await browser.post("/auth/revoke", data={"token": tokens_of_doctor["access_token"],
                                                        "client_id": other["client_id"]})
    assert response.status_code == 400 and response.json()["error"] == "unauthorized_client"
    read = await browser.get(f"/fhir/Patient/{patient_id}", headers=bearer(tokens_of_doctor["access_token"]))
    assert read.status_code == 200


async def test_an_admin_revokes_any_token(app, browser, tokens_of_doctor, patient_id):
    response = await browser.post("/auth/revoke", headers=auth(app), data={"token": tokens_of_doctor["access_token"]})
    assert response.status_code == 200
    read = await browser.get(f"/fhir/Patient/{patient_id}", headers=bearer(tokens_of_doctor["access_token"]))
    assert read.status_code == 401


async def test_revocation_is_seen_by_another_server_process_on_the_same_store(settings, browser, app_client,
                                                                               tokens_of_doctor, patient_id):
    """A second app on the same store (another process behind the load balancer) honours it."""
    other = create_app(settings)
    async with other.router.lifespan_context(other):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=other), base_url=ROOT) as second:
            access = tokens_of_doctor["access_token"]
            assert (await second.get(f"/fhir/Patient/{patient_id}", headers=bearer(access))).status_code == 200
            await browser.post("/auth/revoke", data={"token": access, "client_id": app_client["client_id"]})
            await asyncio.sleep(RECHECK + 0.1)
            assert (await second.get(f"/fhir/Patient/{patient_id}", headers=bearer(access))).status_code == 401
