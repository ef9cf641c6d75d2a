"""One authorization's lasting state: its one-time code, its rotating refresh token, and the
grant record that links them to the access tokens issued, so that replaying a used code or a
rotated refresh token, or revoking a refresh token, revokes every token of the authorization
(OAuth 2.0 Security BCP 4.14; RFC 7009 2.1).

AuthState kinds (codes and refresh tokens are stored under their SHA-256, never as given):
- ``code``: ``{grant, client_id, redirect_uri, code_challenge, sub, fhirUser, scope, context,
  nonce}`` for ``authorization_code_seconds``; once redeemed, a ``{used, grant}`` marker for
  ``access_token_seconds``.
- ``refresh``: ``{grant, client_id, sub, fhirUser, scope, context, deadline, expires}``; once
  rotated, a ``{used, grant}`` marker until the old token would have expired.
- ``grant``: ``{client_id, sub, access: [[jti, exp], ...], refresh: digest or null}``.
"""

from __future__ import annotations

import secrets
import time
import uuid

from fhir_server.auth.oauth import digest, invalid_grant


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def new_grant_id() -> str:
    return uuid.uuid4().hex


async def put_code(svc, doc: dict) -> str:
    code = new_secret()
    await svc.auth_state.put("code", digest(code), doc, expires=time.time() + svc.settings.authorization_code_seconds)
    return code


async def redeem_code(svc, code: str) -> dict:
    """The code's authorization, exactly once. A second use revokes what the first one got."""
    key = digest(code)
    doc = await svc.auth_state.take("code", key)
    if doc is None:
        raise invalid_grant("The authorization code is unknown or has expired")
    if doc.get("used"):
        await revoke_grant(svc, doc["grant"])
        raise invalid_grant("The authorization code was already used; the tokens issued for it are revoked")
    await svc.auth_state.put("code", key, {"used": True, "grant": doc["grant"]},
                             expires=time.time() + svc.settings.access_token_seconds)
    return doc


async def put_refresh(svc, doc: dict, expires: float) -> str:
    token = new_secret()
    await svc.auth_state.put("refresh", digest(token), {**doc, "expires": expires}, expires=expires)
    return token


async def rotate_refresh(svc, token: str) -> dict:
    """The refresh token's authorization, exactly once (it is replaced by a new one). Presenting
    a rotated token again revokes the whole grant: one of the two holders is not the client."""
    key = digest(token)
    doc = await svc.auth_state.take("refresh", key)
    if doc is None:
        raise invalid_grant("The refresh token is unknown, revoked or has expired")
    if doc.get("used"):
        await revoke_grant(svc, doc["grant"])
        raise invalid_grant("The refresh token was already used; every token of its grant is revoked")
    await svc.auth_state.put("refresh", key, {"used": True, "grant": doc["grant"]}, expires=doc["expires"])
    return doc


async def find_refresh(svc, token: str) -> dict | None:
    """A live refresh token's record (introspection, revocation)."""
    doc = await svc.auth_state.get("refresh", digest(token))
    return None if doc is None or doc.get("used") else doc


async def record(svc, grant_id: str, client_id: str, sub: str, jti: str, exp: float,
                 refresh_token: str | None, refresh_expires: float | None) -> None:
    """Add an issued access token (and the grant's new refresh token) to the grant record."""
    now = time.time()
    doc = await svc.auth_state.get("grant", grant_id) or {"client_id": client_id, "sub": sub, "access": []}
    doc["access"] = [a for a in doc["access"] if a[1] > now] + [[jti, exp]]
    doc["refresh"] = digest(refresh_token) if refresh_token else None
    until = max([exp, refresh_expires or 0] + [a[1] for a in doc["access"]])
    await svc.auth_state.put("grant", grant_id, doc, expires=until)


async def revoke_grant(svc, grant_id: str) -> None:
    """Revoke every access token of the grant and delete its refresh token."""
    doc = await svc.auth_state.take("grant", grant_id)
    if doc is None:
        return
    now = time.time()
    for jti, exp in doc["access"]:
        if exp > now:
            await svc.bearer.revoke(jti, exp)
    if doc.get("refresh"):
        await svc.auth_state.delete("refresh", doc["refresh"])
