"""The FHIR-free admin API: clients, users and EHR launch contexts, for admins only."""

from __future__ import annotations

import json

import pytest

from fhir_server.auth import accounts
from tests.fhir_server.auth.smart_app import PASSWORD, REDIRECT, new_key, public_jwks
from tests.tokens import auth

PUBLIC = {"name": "Patient portal", "type": "public", "redirect_uris": [REDIRECT],
          "scope": "launch/patient openid fhirUser patient/*.rs offline_access"}


@pytest.mark.req("CN-4.4")
@pytest.mark.parametrize("method, path", [("GET", "/admin/clients"), ("POST", "/admin/clients"),
                                          ("DELETE", "/admin/clients/x"), ("GET", "/admin/users"),
                                          ("POST", "/admin/users"), ("DELETE", "/admin/users/x"),
                                          ("POST", "/admin/launch")])
async def test_needs_an_admin_token(app, browser, method, path):
    anonymous = await browser.request(method, path, json={})
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "invalid_token"
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    user = await browser.request(method, path, json={}, headers=auth(app, "user/*.cruds", fhirUser="Practitioner/1"))
    assert user.status_code == 403 and user.json()["error"] == "insufficient_scope"
    system_reader = await browser.request(method, path, json={}, headers=auth(app, "system/*.rs"))
    assert system_reader.status_code == 403


async def test_public_client_is_created_listed_read_and_deleted(browser, admin):
    created = await browser.post("/admin/clients", headers=admin, json=PUBLIC)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["type"] == "public" and body["grant_types"] == ["authorization_code", "refresh_token"]
    assert "client_secret" not in body and "secret_hash" not in body
    client_id = body["client_id"]
    listed = (await browser.get("/admin/clients", headers=admin)).json()
    assert [c["client_id"] for c in listed] == [client_id]
    assert (await browser.get(f"/admin/clients/{client_id}", headers=admin)).json()["name"] == "Patient portal"
    assert (await browser.delete(f"/admin/clients/{client_id}", headers=admin)).status_code == 204
    assert (await browser.delete(f"/admin/clients/{client_id}", headers=admin)).status_code == 404
    assert (await browser.get(f"/admin/clients/{client_id}", headers=admin)).status_code == 404


async def test_symmetric_client_secret_is_shown_once_and_stored_hashed(browser, svc, admin):
    created = await browser.post("/admin/clients", headers=admin,
                                 json={**PUBLIC, "type": "confidential-symmetric", "client_id": "portal"})
    secret = created.json()["client_secret"]
    assert len(secret) >= 40
    stored = await accounts.get_client(svc.auth_state, "portal")
    assert stored["secret_hash"].startswith("scrypt$") and secret not in stored["secret_hash"]
    assert accounts.verify_secret(secret, stored["secret_hash"])
    again = await browser.get("/admin/clients/portal", headers=admin)
    assert "client_secret" not in again.json() and "secret_hash" not in again.json()
    taken = await browser.post("/admin/clients", headers=admin,
                               json={**PUBLIC, "type": "confidential-symmetric", "client_id": "portal"})
    assert taken.status_code == 409 and taken.json()["error"] == "conflict"


async def test_asymmetric_client_keeps_only_public_keys(browser, admin):
    key = new_key("ES384")
    private = {"keys": [json.loads(key.export_private())]}
    created = await browser.post("/admin/clients", headers=admin, json={
        "name": "Registry", "type": "confidential-asymmetric", "scope": "system/*.rs", "jwks": private})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["grant_types"] == ["client_credentials"]
    assert body["jwks"] == public_jwks(key) and "d" not in body["jwks"]["keys"][0]


@pytest.mark.parametrize("change, message", [
    ({"name": ""}, "name"),
    ({"type": "trusted"}, "type"),
    ({"scope": ""}, "scope"),
    ({"scope": "patient/*.rs everything"}, "unknown scopes: everything"),
    ({"redirect_uris": ["/relative"]}, "redirect_uris"),
    ({"redirect_uris": ["https://app.example/cb#frag"]}, "redirect_uris"),
    ({"redirect_uris": []}, "redirect_uri"),
    ({"grant_types": ["client_credentials"]}, "public client cannot use client_credentials"),
    ({"grant_types": ["password"]}, "grant_types"),
    ({"jwks_url": "https://keys.example/jwks"}, "confidential-asymmetric"),
    ({"type": "confidential-asymmetric"}, "exactly one of jwks"),
    ({"type": "confidential-asymmetric", "jwks_url": "http://keys.example/jwks"}, "https"),
    ({"type": "confidential-asymmetric", "jwks": {"keys": [{"kty": "oct"}]}}, "jwks"),
    ({"client_id": "has space"}, "client_id"),
])
async def test_invalid_client_registration_is_400(browser, admin, change, message):
    response = await browser.post("/admin/clients", headers=admin, json={**PUBLIC, **change})
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request" and message in response.json()["error_description"]


async def test_admin_body_must_be_json(browser, admin):
    response = await browser.post("/admin/clients", headers=admin, data={"name": "x"})
    assert response.status_code == 415 and response.json()["error"] == "invalid_request"
    broken = await browser.post("/admin/clients", headers={**admin, "Content-Type": "application/json"}, content=b"{")
    assert broken.status_code == 400


async def test_user_is_created_listed_and_deleted_without_showing_the_hash(browser, svc, admin):
    created = await browser.post("/admin/users", headers=admin,
                                 json={"username": "dr.petrov", "password": PASSWORD, "fhirUser": "Practitioner/7"})
    assert created.status_code == 201, created.text
    assert created.json()["fhirUser"] == "Practitioner/7" and "password_hash" not in created.json()
    listed = (await browser.get("/admin/users", headers=admin)).json()
    assert [u["username"] for u in listed] == ["dr.petrov"] and "password_hash" not in listed[0]
    assert await accounts.check_password(svc.auth_state, "dr.petrov", PASSWORD)
    assert not await accounts.check_password(svc.auth_state, "dr.petrov", PASSWORD + "x")
    taken = await browser.post("/admin/users", headers=admin,
                               json={"username": "dr.petrov", "password": PASSWORD, "fhirUser": "Practitioner/8"})
    assert taken.status_code == 409
    assert (await browser.delete("/admin/users/dr.petrov", headers=admin)).status_code == 204
    assert (await browser.delete("/admin/users/dr.petrov", headers=admin)).status_code == 404


@pytest.mark.parametrize("body, message", [
    ({"username": "a b", "password": PASSWORD, "fhirUser": "Practitioner/1"}, "username"),
    ({"username": "ab", "password": "short", "fhirUser": "Practitioner/1"}, "password"),
    ({"username": "ab", "password": PASSWORD, "fhirUser": "Observation/1"}, "fhirUser"),
    ({"username": "ab", "password": PASSWORD, "fhirUser": "Practitioner"}, "fhirUser"),
])
async def test_invalid_user_is_400(browser, admin, body, message):
    response = await browser.post("/admin/users", headers=admin, json=body)
    assert response.status_code == 400 and message in response.json()["error_description"]


async def test_launch_context_is_created(browser, svc, admin):
    response = await browser.post("/admin/launch", headers=admin, json={
        "patient": "p1", "encounter": "e1", "fhirContext": [{"reference": "Task/t1"}], "need_patient_banner": False})
    assert response.status_code == 201
    body = response.json()
    assert body["launch"] and body["expires_in"] > 0
    stored = await svc.auth_state.get("launch", body["launch"])
    assert stored == {"patient": "p1", "encounter": "e1", "fhirContext": [{"reference": "Task/t1"}],
                      "need_patient_banner": False}


@pytest.mark.parametrize("body", [
    {}, {"patient": "Patient/p1"}, {"fhirContext": "Task/1"}, {"fhirContext": [{"reference": "not a ref"}]},
    {"fhirContext": [{"type": "Task"}]}, {"patient": "p1", "color": "red"}, {"patient": "p1", "need_patient_banner": "no"},
])
async def test_invalid_launch_context_is_400(browser, admin, body):
    response = await browser.post("/admin/launch", headers=admin, json=body)
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
