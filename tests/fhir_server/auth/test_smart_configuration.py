"""Discovery: .well-known/smart-configuration, openid-configuration and the JWKS, without a token."""

from __future__ import annotations

from jwcrypto import jwk

from fhir_server.auth import tokens
from tests.fhir_server.auth.smart_app import BASE, ROOT


async def test_smart_configuration_names_endpoints_and_capabilities(browser):
    response = await browser.get("/fhir/.well-known/smart-configuration")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    conf = response.json()
    assert conf["issuer"] == BASE
    assert conf["jwks_uri"] == f"{ROOT}/auth/jwks"
    assert conf["authorization_endpoint"] == f"{ROOT}/auth/authorize"
    assert conf["token_endpoint"] == f"{ROOT}/auth/token"
    assert conf["introspection_endpoint"] == f"{ROOT}/auth/introspect"
    assert conf["revocation_endpoint"] == f"{ROOT}/auth/revoke"
    assert conf["code_challenge_methods_supported"] == ["S256"]
    assert conf["response_types_supported"] == ["code"]
    assert set(conf["grant_types_supported"]) == {"authorization_code", "refresh_token", "client_credentials"}
    assert set(conf["token_endpoint_auth_methods_supported"]) == {
        "private_key_jwt", "client_secret_basic", "client_secret_post", "none"}
    assert conf["token_endpoint_auth_signing_alg_values_supported"] == ["RS384", "ES384"]
    assert {"launch-ehr", "launch-standalone", "client-public", "client-confidential-symmetric",
            "client-confidential-asymmetric", "context-ehr-patient", "context-ehr-encounter",
            "context-standalone-patient", "permission-offline", "permission-patient", "permission-user",
            "permission-v1", "permission-v2", "sso-openid-connect", "authorize-post"} <= set(conf["capabilities"])
    assert {"openid", "fhirUser", "launch", "launch/patient", "offline_access", "system/*.cruds"} <= set(
        conf["scopes_supported"])


async def test_issuer_follows_the_configured_base_url(app, settings):
    from fhir_server.app import create_app
    import httpx

    other = create_app(settings.model_copy(update={"base_url": "https://fhir.example.org/fhir"}))
    async with other.router.lifespan_context(other):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=other), base_url=ROOT) as c:
            conf = (await c.get("/fhir/.well-known/smart-configuration")).json()
    assert conf["issuer"] == "https://fhir.example.org/fhir"
    assert conf["token_endpoint"] == "https://fhir.example.org/auth/token"


async def test_openid_configuration_points_at_the_same_keys(browser):
    conf = (await browser.get("/fhir/.well-known/openid-configuration")).json()
    assert conf["issuer"] == BASE
    assert conf["jwks_uri"] == f"{ROOT}/auth/jwks"
    assert conf["id_token_signing_alg_values_supported"] == ["RS256"]
    assert conf["code_challenge_methods_supported"] == ["S256"]


async def test_jwks_holds_public_keys_that_verify_the_authority_tokens(browser, svc):
    response = await browser.get("/auth/jwks")
    assert response.status_code == 200
    keys = response.json()["keys"]
    assert keys and all("d" not in k and "p" not in k for k in keys)
    signed, _ = tokens.mint(svc.keys, {"sub": "x"}, 60)
    kid = tokens.header_of(signed)["kid"]
    public = jwk.JWK(**next(k for k in keys if k["kid"] == kid))
    assert tokens.verify_signature(signed, public, ["RS256"])["sub"] == "x"


async def test_jwks_lists_the_previous_key_after_rotation(browser, svc):
    before = {k["kid"] for k in (await browser.get("/auth/jwks")).json()["keys"]}
    new_kid = svc.keys.rotate()
    after = {k["kid"] for k in (await browser.get("/auth/jwks")).json()["keys"]}
    assert new_kid in after and before <= after
