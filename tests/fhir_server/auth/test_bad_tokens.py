"""Forged, stale and misdirected access tokens: each a 401 with a WWW-Authenticate header."""

from __future__ import annotations

import base64
import json
import time

import pytest
from jwcrypto import jwk, jws, jwt

from fhir_server.auth import tokens
from tests.tokens import BASE, token

pytestmark = pytest.mark.req("CN-4.4")


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _claims(app, **over) -> dict:
    now = int(time.time())
    return {"iss": BASE, "aud": BASE, "sub": "x", "client_id": "x", "scope": "system/*.*", "iat": now, "nbf": now,
            "exp": now + 300, "jti": f"j{now}{len(over)}", **over}


def _signed(key: jwk.JWK, claims: dict, alg: str = "RS256", kid: str | None = None) -> str:
    t = jwt.JWT(header={"alg": alg, "kid": kid or key.get("kid")}, claims=claims)
    t.make_signed_token(key)
    return t.serialize()


def _cases(app) -> dict[str, str]:
    keys = app.state.services.keys
    active = keys.active
    good = token(app)
    head, body, sig = good.split(".")
    stranger = jwk.JWK.generate(kty="RSA", size=2048, kid=active.get("kid"))
    # HS256 keyed with the server's public key (the classic algorithm-confusion forgery)
    public_pem = active.export_to_pem()
    hs_key = jwk.JWK(kty="oct", k=base64.urlsafe_b64encode(public_pem).decode().rstrip("="))
    hs = jws.JWS(json.dumps(_claims(app)).encode())
    hs.add_signature(hs_key, alg="HS256", protected=json.dumps({"alg": "HS256", "kid": active.get("kid")}))
    hs_token = hs.serialize(compact=True)
    tampered_body = _b64({**json.loads(base64.urlsafe_b64decode(body + "==")), "scope": "system/*.* extra"})
    return {
        "alg none": f"{_b64({'alg': 'none', 'kid': active.get('kid')})}.{_b64(_claims(app))}.",
        "HS256 with the public key": hs_token,
        "expired": _signed(active, _claims(app, exp=int(time.time()) - 3600, iat=int(time.time()) - 7200,
                                           nbf=int(time.time()) - 7200)),
        "not yet valid": _signed(active, _claims(app, nbf=int(time.time()) + 3600, iat=int(time.time()) + 3600)),
        "wrong aud": _signed(active, _claims(app, aud="https://elsewhere.example/fhir")),
        "wrong iss": _signed(active, _claims(app, iss="https://impostor.example")),
        "tampered signature": f"{head}.{body}.{sig[:-4]}{'AAAA' if not sig.endswith('AAAA') else 'BBBB'}",
        "tampered payload": f"{head}.{tampered_body}.{sig}",
        "unknown kid": _signed(active, _claims(app), kid="no-such-key"),
        "signed by another key with our kid": _signed(stranger, _claims(app)),
        "no exp": _signed(active, {k: v for k, v in _claims(app).items() if k != "exp"}),
        "not a JWT": "abc.def",
        "garbage segments": "!!!.???.***",
    }


@pytest.mark.parametrize("case", [
    "alg none", "HS256 with the public key", "expired", "not yet valid", "wrong aud", "wrong iss",
    "tampered signature", "tampered payload", "unknown kid", "signed by another key with our kid", "no exp",
    "not a JWT", "garbage segments"])
async def test_bad_token_is_401_with_www_authenticate(app, client, case):
    bad = _cases(app)[case]
    r = await client.get("/Patient", headers={"Authorization": f"Bearer {bad}"})
    assert r.status_code == 401, (case, r.text)
    challenge = r.headers["www-authenticate"]
    assert challenge.startswith("Bearer ") and 'error="invalid_token"' in challenge
    assert r.json()["resourceType"] == "OperationOutcome"


async def test_revoked_token_is_401(app, client):
    good = token(app)
    assert (await client.get("/Patient", headers={"Authorization": f"Bearer {good}"})).status_code == 200
    claims = json.loads(base64.urlsafe_b64decode(good.split(".")[1] + "=="))
    await app.state.services.bearer.revoke(claims["jti"], claims["exp"])
    r = await client.get("/Patient", headers={"Authorization": f"Bearer {good}"})
    assert r.status_code == 401 and "revoked" in r.json()["issue"][0]["diagnostics"]


async def test_missing_or_non_bearer_credentials_are_401(client):
    r = await client.get("/Patient", headers={"Authorization": ""})
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    r = await client.get("/Patient", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert r.status_code == 401 and 'error="invalid_request"' in r.headers["www-authenticate"]


async def test_metadata_needs_no_token(client):
    r = await client.get("/metadata", headers={"Authorization": ""})
    assert r.status_code == 200


async def test_a_token_signed_before_a_key_rotation_stays_valid(app, client):
    before = token(app)
    app.state.services.keys.rotate()
    after = token(app)
    assert before.split(".")[0] != after.split(".")[0]  # a new kid
    for t in (before, after):
        assert (await client.get("/Patient", headers={"Authorization": f"Bearer {t}"})).status_code == 200
    app.state.services.keys.rotate()  # the key of ``before`` is retired now
    app.state.services.bearer._cache.clear()  # checked tokens are remembered for a second or two
    assert (await client.get("/Patient", headers={"Authorization": f"Bearer {before}"})).status_code == 401
